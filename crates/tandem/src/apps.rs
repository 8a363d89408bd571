//! `tandem list` and `tandem stop`: the apps running on this machine, from the registry
//! every sidecar keeps its entry in (`~/.tandem/apps/`, see `tandem-nameresolution`).
//!
//! `list` prints what `dapr list` prints (a table, or `-o json` with Dapr's field names);
//! `stop --app-id ID` sends SIGTERM to the `tandem` process of each instance of the app
//! — which stops the app, then the sidecar, as Ctrl-C would — and waits for them to exit.

use std::time::{Duration, Instant};

use clap::Args;
use tandem_nameresolution::{Entry, list as registered};

use crate::sidecar::tandem_home;

#[derive(Args, Clone)]
pub struct ListArgs {
    /// Output format: table or json.
    #[arg(short = 'o', long = "output", default_value = "table",
          value_parser = ["table", "json"])]
    pub output: String,
}

#[derive(Args, Clone)]
pub struct StopArgs {
    /// The id of the app to stop (every instance of it on this machine).
    #[arg(short = 'a', long = "app-id", required_unless_present = "run_file")]
    pub app_id: Option<String>,
    /// A run file: stop every app it lists.
    #[arg(short = 'f', long = "run-file", value_name = "FILE")]
    pub run_file: Option<std::path::PathBuf>,
    /// How many seconds to wait for the app and its sidecar to exit.
    #[arg(long = "timeout", default_value_t = 15, value_name = "SECONDS")]
    pub timeout: u64,
}

/// `tandem list`.
pub fn list(args: ListArgs) -> u8 {
    let entries = registered(&tandem_home());
    if args.output == "json" {
        let rows: Vec<serde_json::Value> = entries.iter().map(json_row).collect();
        match serde_json::to_string_pretty(&rows) {
            Ok(text) => println!("{text}"),
            Err(error) => {
                eprintln!("cannot write the list as JSON: {error}");
                return 1;
            }
        }
        return 0;
    }
    if entries.is_empty() {
        println!("No tandem apps are running.");
        return 0;
    }
    print!("{}", table(&entries));
    0
}

/// One app as `dapr list -o json` shows it (tandem runs the CLI and the sidecar in one
/// process, so `cliPid` and `daprdPid` are the same), plus tandem's own fields.
fn json_row(entry: &Entry) -> serde_json::Value {
    let mut row = serde_json::json!({
        "appId": entry.app_id,
        "httpPort": entry.http_port,
        "grpcPort": entry.grpc_port,
        "appPort": entry.app_port.unwrap_or(0),
        "command": entry.command.clone().unwrap_or_default(),
        "age": age(entry.age()),
        "created": entry.created(),
        "daprdPid": entry.pid,
        "cliPid": entry.pid,
        "appPid": entry.app_pid.unwrap_or(0),
        "internalPort": entry.internal_port,
        "version": entry.version,
    });
    if let Some(namespace) = &entry.namespace {
        row["namespace"] = namespace.clone().into();
    }
    row
}

/// The longest command shown in the table; `-o json` has it whole.
const COMMAND_WIDTH: usize = 40;

fn table(entries: &[Entry]) -> String {
    let header = [
        "APP ID",
        "HTTP PORT",
        "GRPC PORT",
        "APP PORT",
        "AGE",
        "PID",
        "COMMAND",
    ];
    let rows: Vec<[String; 7]> = entries
        .iter()
        .map(|entry| {
            [
                entry.app_id.clone(),
                entry.http_port.to_string(),
                entry.grpc_port.to_string(),
                entry
                    .app_port
                    .map(|port| port.to_string())
                    .unwrap_or_default(),
                age(entry.age()),
                entry.pid.to_string(),
                shorten(entry.command.as_deref().unwrap_or(""), COMMAND_WIDTH),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (cell, width) in cells.zip(widths) {
            out.push_str(&format!("{cell:<width$}  "));
        }
        text.push_str(out.trim_end());
        text.push('\n');
    };
    line(&mut header.iter().copied());
    for row in &rows {
        line(&mut row.iter().map(String::as_str));
    }
    text
}

/// `5s`, `12m`, `3h`, `2d`: the unit `dapr list` would show.
fn age(age: Duration) -> String {
    let seconds = age.as_secs();
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m", seconds / 60),
        3600..86400 => format!("{}h", seconds / 3600),
        _ => format!("{}d", seconds / 86400),
    }
}

fn shorten(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let kept: String = text.chars().take(width.saturating_sub(3)).collect();
    format!("{kept}...")
}

/// `tandem stop --app-id ID`.
pub async fn stop(args: StopArgs) -> u8 {
    if let Some(file) = &args.run_file {
        return crate::runfile::launch::stop(file, Duration::from_secs(args.timeout)).await;
    }
    let Some(app_id) = args.app_id.as_deref() else {
        eprintln!("tandem stop: give --app-id or --run-file");
        return 2;
    };
    let home = tandem_home();
    let me = std::process::id();
    let instances: Vec<Entry> = registered(&home)
        .into_iter()
        .filter(|entry| entry.app_id == app_id && entry.pid != me)
        .collect();
    if instances.is_empty() {
        eprintln!(
            "no app with id '{app_id}' is running on this machine (tandem list shows the running ones)"
        );
        return 1;
    }
    let mut stopping = Vec::new();
    let mut failed = false;
    for entry in instances {
        match entry.terminate() {
            Ok(true) => stopping.push(entry),
            Ok(false) => {} // it exited on its own meanwhile
            Err(error) => {
                eprintln!(
                    "cannot stop app '{}' (pid {}): {error}",
                    entry.app_id, entry.pid
                );
                failed = true;
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    while stopping.iter().any(Entry::is_alive) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for entry in &stopping {
        if entry.is_alive() {
            eprintln!(
                "app '{}' (pid {}) is still running after {} s; `kill -9 {}` ends it at once",
                entry.app_id, entry.pid, args.timeout, entry.pid
            );
            failed = true;
        } else {
            println!("app '{}' stopped (pid {})", entry.app_id, entry.pid);
        }
    }
    // The registry lists the instances that are gone no more.
    let _ = registered(&home);
    u8::from(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        assert_eq!(age(Duration::from_secs(5)), "5s");
        assert_eq!(age(Duration::from_secs(125)), "2m");
        assert_eq!(age(Duration::from_secs(7300)), "2h");
        assert_eq!(age(Duration::from_secs(200_000)), "2d");
    }

    #[test]
    fn table_columns_line_up() {
        let mut entry = Entry::new("orders", 3500, 50001, 50002);
        entry.app_port = Some(8000);
        entry.command = Some("uvicorn app:app --port 8000 --reload --log-level debug".into());
        let text = table(&[entry, Entry::new("a-much-longer-app-id", 1, 2, 3)]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("APP ID                HTTP PORT  GRPC PORT  APP PORT"));
        let column = lines[0].find("HTTP PORT").unwrap();
        assert_eq!(&lines[1][column..column + 4], "3500");
        assert!(lines[1].ends_with("..."), "{}", lines[1]);
        assert_eq!(shorten("short", 40), "short");
    }
}
