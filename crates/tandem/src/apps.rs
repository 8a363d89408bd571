//! `tandem list` and `tandem stop`: the apps running on this machine, from the registry
//! every sidecar keeps its entry in (`~/.tandem/apps/`, see `tandem-nameresolution`).
//!
//! `list` prints what `dapr list` prints: its table (the columns of its `ListOutput`,
//! those with nothing to show left out, laid out as its table writer lays them out), or
//! `-o json` / `-o yaml` with its field names. `stop --app-id ID` (several ids: repeat
//! the flag, separate them with commas, or list them after the flags) sends SIGTERM to
//! the `tandem` process of each instance of each app — which stops the app, then the
//! sidecar, as Ctrl-C would — waits for them to exit, and says so in the Dapr CLI's
//! words.

use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;
use tandem_nameresolution::{Entry, list as registered};

use crate::personality::{failure, success};
use crate::sidecar::tandem_home;

#[derive(Args, Clone)]
pub struct ListArgs {
    /// The output format: json, yaml, or table (the default).
    #[arg(short = 'o', long = "output", default_value = "")]
    pub output: String,
    #[command(flatten)]
    pub log: crate::personality::LogFormat,
}

#[derive(Args, Clone)]
pub struct StopArgs {
    /// The id of an app to stop (every instance of it on this machine); repeat the flag
    /// or separate ids with commas to stop several.
    #[arg(short = 'a', long = "app-id", value_name = "ID", value_delimiter = ',',
          required_unless_present_any = ["run_file", "ids"])]
    pub app_ids: Vec<String>,
    /// More ids of apps to stop, as `dapr stop` also takes them.
    #[arg(value_name = "ID")]
    pub ids: Vec<String>,
    /// A run file: stop every app it lists.
    #[arg(short = 'f', long = "run-file", value_name = "FILE")]
    pub run_file: Option<std::path::PathBuf>,
    /// How many seconds to wait for the apps and their sidecars to exit.
    #[arg(long = "timeout", default_value_t = 15, value_name = "SECONDS")]
    pub timeout: u64,
    #[command(flatten)]
    pub log: crate::personality::LogFormat,
}

/// `tandem list`.
pub fn list(args: &ListArgs) -> u8 {
    let format = args.output.as_str();
    if !matches!(format, "" | "table" | "json" | "yaml") {
        failure("An invalid output format was specified.");
        return 1;
    }
    let rows: Vec<Row> = registered(&tandem_home()).iter().map(Row::of).collect();
    let text = match format {
        "json" => serde_json::to_string_pretty(&rows)
            .map(|text| text + "\n")
            .map_err(|error| error.to_string()),
        "yaml" => yaml_serde::to_string(&rows).map_err(|error| error.to_string()),
        _ if rows.is_empty() => Ok("No Dapr instances found.\n".to_owned()),
        _ => Ok(table(&rows)),
    };
    match text {
        Ok(text) => {
            print!("{text}");
            0
        }
        Err(error) => {
            failure(&error);
            1
        }
    }
}

/// Dapr's default for `maxRequestBodySize` (4 MiB) and `httpReadBufferSize` (4 KiB).
const DEFAULT_MAX_BODY_SIZE: u64 = 4 << 20;
const DEFAULT_READ_BUFFER_SIZE: u64 = 4 << 10;

/// The longest command `dapr list` shows (in the table and in JSON alike).
const COMMAND_WIDTH: usize = 20;

/// One app as `dapr list` shows it, in its fields' order. tandem runs the CLI and the
/// sidecar in one process, so `cliPid` and `daprdPid` are the same; the last fields are
/// tandem's own.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Row {
    app_id: String,
    http_port: u16,
    grpc_port: u16,
    app_port: u16,
    metrics_enabled: bool,
    command: String,
    age: String,
    created: String,
    daprd_pid: u32,
    cli_pid: u32,
    app_pid: u32,
    max_request_body_size: u64,
    http_read_buffer_size: u64,
    run_template_path: String,
    app_log_path: String,
    daprd_log_path: String,
    run_template_name: String,
    internal_port: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<String>,
    version: String,
}

impl Row {
    fn of(entry: &Entry) -> Self {
        let text = |value: &Option<String>| value.clone().unwrap_or_default();
        Self {
            app_id: entry.app_id.clone(),
            http_port: entry.http_port,
            grpc_port: entry.grpc_port,
            app_port: entry.app_port.unwrap_or(0),
            metrics_enabled: entry.metrics_enabled.unwrap_or(false),
            command: truncate(entry.command.as_deref().unwrap_or(""), COMMAND_WIDTH),
            age: age(entry.age()),
            created: entry.created(),
            daprd_pid: entry.pid,
            cli_pid: entry.pid,
            app_pid: entry.app_pid.unwrap_or(0),
            max_request_body_size: entry.max_body_size.unwrap_or(DEFAULT_MAX_BODY_SIZE),
            http_read_buffer_size: entry.read_buffer_size.unwrap_or(DEFAULT_READ_BUFFER_SIZE),
            run_template_path: text(&entry.run_template_path),
            app_log_path: text(&entry.app_log_path),
            daprd_log_path: text(&entry.daprd_log_path),
            run_template_name: text(&entry.run_template_name),
            internal_port: entry.internal_port,
            namespace: entry.namespace.clone(),
            version: entry.version.clone(),
        }
    }

    /// The table's cells, in [`HEADER`]'s order.
    fn cells(&self) -> [String; 14] {
        [
            self.app_id.clone(),
            self.http_port.to_string(),
            self.grpc_port.to_string(),
            self.app_port.to_string(),
            self.command.clone(),
            self.age.clone(),
            self.created.clone(),
            self.daprd_pid.to_string(),
            self.cli_pid.to_string(),
            self.app_pid.to_string(),
            self.run_template_path.clone(),
            self.app_log_path.clone(),
            self.daprd_log_path.clone(),
            self.run_template_name.clone(),
        ]
    }
}

/// The table's columns, as `dapr list` heads them (its CSV names, upper-cased, `_` as
/// a space).
const HEADER: [&str; 14] = [
    "APP ID",
    "HTTP PORT",
    "GRPC PORT",
    "APP PORT",
    "COMMAND",
    "AGE",
    "CREATED",
    "DAPRD PID",
    "CLI PID",
    "APP PID",
    "RUN TEMPLATE PATH",
    "APP LOG PATH",
    "DAPRD LOG PATH",
    "RUNTEMPLATENAME",
];

/// The table as `dapr list` prints it: columns with no value in any row left out, every
/// cell left-aligned and padded to its column, two spaces between columns; the header
/// line ends in two spaces, a row in one (its table writer's borders, trimmed on the
/// left only).
fn table(rows: &[Row]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| row.cells().iter().map(|cell| one_line(cell)).collect())
        .collect();
    let kept: Vec<usize> = (0..HEADER.len())
        .filter(|&column| rows.iter().any(|row| !row[column].is_empty()))
        .collect();
    let width = |column: usize| {
        rows.iter()
            .map(|row| row[column].chars().count())
            .chain([HEADER[column].len()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = kept.iter().map(|&column| width(column)).collect();
    let line = |cells: &mut dyn Iterator<Item = &str>, end: &str| {
        let padded: Vec<String> = cells
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        format!("{}{end}\n", padded.join("  "))
    };
    let mut text = line(&mut kept.iter().map(|&column| HEADER[column]), "  ");
    for row in &rows {
        text.push_str(&line(
            &mut kept.iter().map(|&column| row[column].as_str()),
            " ",
        ));
    }
    text
}

/// A cell on one line, its runs of white space made one space.
fn one_line(cell: &str) -> String {
    cell.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `5s`, `12m`, `3h`, `2d`, as `dapr list` counts: up to 60 seconds in seconds, up to
/// 60 minutes in minutes, up to 24 hours in hours.
fn age(age: Duration) -> String {
    let seconds = age.as_secs();
    if age <= Duration::from_secs(60) {
        format!("{seconds}s")
    } else if age <= Duration::from_secs(3600) {
        format!("{}m", seconds / 60)
    } else if age <= Duration::from_secs(86400) {
        format!("{}h", seconds / 3600)
    } else {
        format!("{}d", seconds / 86400)
    }
}

/// `text` cut to `width` characters, the last three of them `...`.
fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let kept: String = text.chars().take(width.saturating_sub(3)).collect();
    format!("{kept}...")
}

/// `tandem stop --app-id ID...`.
pub async fn stop(args: StopArgs) -> u8 {
    if let Some(file) = &args.run_file {
        return crate::runfile::launch::stop(file, Duration::from_secs(args.timeout)).await;
    }
    let mut app_ids: Vec<String> = Vec::new();
    for app_id in args.app_ids.iter().chain(&args.ids) {
        let app_id = app_id.trim();
        if !app_id.is_empty() && !app_ids.iter().any(|known| known == app_id) {
            app_ids.push(app_id.to_owned());
        }
    }
    let home = tandem_home();
    let me = std::process::id();
    let running: Vec<Entry> = registered(&home)
        .into_iter()
        .filter(|entry| entry.pid != me)
        .collect();
    // Every app is asked to stop first, then waited for: they stop side by side.
    let mut outcomes = Vec::new();
    for app_id in &app_ids {
        let mut outcome = Outcome::default();
        for entry in running.iter().filter(|entry| &entry.app_id == app_id) {
            outcome.found = true;
            match entry.terminate() {
                Ok(true) => outcome.stopping.push(entry.clone()),
                Ok(false) => {} // it exited on its own meanwhile
                Err(error) => outcome
                    .errors
                    .push(format!("cannot signal pid {}: {error}", entry.pid)),
            }
        }
        outcomes.push((app_id, outcome));
    }
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let still_running = |outcomes: &[(&String, Outcome)]| {
        outcomes
            .iter()
            .flat_map(|(_, outcome)| &outcome.stopping)
            .any(Entry::is_alive)
    };
    while still_running(&outcomes) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut failed = false;
    for (app_id, mut outcome) in outcomes {
        for entry in outcome.stopping.iter().filter(|entry| entry.is_alive()) {
            outcome.errors.push(format!(
                "pid {} is still running after {} s; `kill -9 {}` ends it at once",
                entry.pid, args.timeout, entry.pid
            ));
        }
        if !outcome.found {
            // As the Dapr CLI: said, but not a failure (a clean-up script stops what
            // may have stopped already).
            failure(&format!(
                "failed to stop app id {app_id}: couldn't find app id {app_id}"
            ));
        } else if outcome.errors.is_empty() {
            success(&format!("app stopped successfully: {app_id}"));
        } else {
            failure(&format!(
                "failed to stop app id {app_id}: {}",
                outcome.errors.join("; ")
            ));
            failed = true;
        }
    }
    // The registry lists the instances that are gone no more.
    let _ = registered(&home);
    u8::from(failed)
}

/// What became of one app id's instances.
#[derive(Default)]
struct Outcome {
    found: bool,
    stopping: Vec<Entry>,
    errors: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_as_dapr_counts_them() {
        assert_eq!(age(Duration::from_secs(5)), "5s");
        assert_eq!(age(Duration::from_secs(60)), "60s");
        assert_eq!(age(Duration::from_secs(125)), "2m");
        assert_eq!(age(Duration::from_secs(3600)), "60m");
        assert_eq!(age(Duration::from_secs(7300)), "2h");
        assert_eq!(age(Duration::from_secs(200_000)), "2d");
    }

    #[test]
    fn the_table_is_laid_out_as_dapr_lays_it_out() {
        let mut entry = Entry::new("orders", 3500, 50001, 50002);
        entry.pid = 42;
        entry.app_pid = Some(43);
        entry.app_port = Some(8000);
        entry.command = Some("uvicorn app:app --port 8000 --reload".into());
        let mut other = Entry::new("a-much-longer-app-id", 1, 2, 3);
        other.pid = 7;
        let text = table(&[Row::of(&entry), Row::of(&other)]);
        let lines: Vec<&str> = text.lines().collect();
        let created = entry.created();
        let pad = " ".repeat(created.len() - "CREATED".len());
        assert_eq!(
            lines[0],
            format!(
                "APP ID                HTTP PORT  GRPC PORT  APP PORT  COMMAND               AGE  \
                 CREATED{pad}  DAPRD PID  CLI PID  APP PID  "
            )
        );
        assert_eq!(
            lines[1],
            format!(
                "orders                3500       50001      8000      uvicorn app:app -...  0s   \
                 {created}  42         42       43      "
            )
        );
        assert!(lines[2].starts_with("a-much-longer-app-id  1          2          0         "));
        assert_eq!(truncate("short", 20), "short");
        assert_eq!(one_line(" a \n b\t c "), "a b c");
    }

    #[test]
    fn run_file_columns_show_when_an_app_has_them() {
        let mut entry = Entry::new("orders", 3500, 50001, 50002);
        entry.run_template_path = Some("/work/dapr.yaml".into());
        let text = table(&[Row::of(&entry)]);
        assert!(text.lines().next().unwrap().contains("RUN TEMPLATE PATH"));
        assert!(!text.contains("APP LOG PATH"), "{text}");
    }
}
