//! `run`'s own lines, written as the `dapr` CLI writes its status lines: an emoji
//! prefix per kind on stdout (failures on stderr), or one JSON object per line
//! (`time`, `status`, `msg`) with `--log-as-json`. Harnesses wait for these exact
//! lines (the readiness line above all), so their wording follows Dapr's.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};

static AS_JSON: AtomicBool = AtomicBool::new(false);

/// `--log-as-json`: every later status line is a JSON object.
pub fn log_as_json(on: bool) {
    AS_JSON.store(on, Ordering::Relaxed);
}

#[derive(Clone, Copy)]
pub enum Status {
    Success,
    Failure,
    Info,
}

impl Status {
    fn prefix(self) -> &'static str {
        match self {
            Status::Success => "✅  ",
            Status::Failure => "❌  ",
            Status::Info => "ℹ️  ",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::Failure => "failure",
            Status::Info => "info",
        }
    }
}

/// Writes one status line.
pub fn say(status: Status, message: &str) {
    let line = if AS_JSON.load(Ordering::Relaxed) {
        let time = now_rfc3339();
        serde_json::json!({ "time": time, "status": status.name(), "msg": message }).to_string()
    } else {
        format!("{}{message}", status.prefix())
    };
    // A closed pipe is no reason to fail: the line is only information.
    if matches!(status, Status::Failure) {
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    } else {
        let _ = writeln!(std::io::stdout().lock(), "{line}");
    }
}

/// A line with no prefix, bold when stdout is a terminal (Dapr's "no application
/// command" warning).
pub fn say_bold(message: &str) {
    let mut out = std::io::stdout().lock();
    let _ = if std::io::stdout().is_terminal() {
        writeln!(out, "\x1b[1;37m{message}\x1b[0m")
    } else {
        writeln!(out, "{message}")
    };
}

/// Now as RFC 3339 in UTC, as Go's `time.Time` marshals it.
fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
