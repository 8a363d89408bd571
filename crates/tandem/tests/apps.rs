//! `tandem list` and `tandem stop` through the binary, against a registry in a
//! private `TANDEM_HOME`.
//!
//! The registered "app" is a `sleep` process with a registry entry written by the test:
//! `stop` must signal it and wait for it to exit, exactly as it does a `tandem` process.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use tandem_nameresolution::{Entry, Registration};

fn tandem(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(args)
        .env("TANDEM_HOME", home)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A process that runs until signalled, reaped by a thread so that it does not stay a
/// zombie; the returned receiver hears when it has exited.
fn sleeper() -> (u32, std::sync::mpsc::Receiver<()>) {
    let mut child = Command::new("sleep")
        .arg("60")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (exited, exit) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = child.wait();
        let _ = exited.send(());
    });
    (pid, exit)
}

#[test]
fn list_shows_nothing_when_nothing_runs() {
    let home = tempfile::tempdir().unwrap();
    let output = tandem(home.path(), &["list"]);
    assert!(output.status.success());
    assert_eq!(text(&output.stdout).trim(), "No Dapr instances found.");
    let output = tandem(home.path(), &["list", "-o", "json"]);
    assert!(output.status.success());
    let rows: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(rows, serde_json::json!([]));
}

#[test]
fn list_shows_registered_apps_and_stop_stops_them() {
    let home = tempfile::tempdir().unwrap();
    let (pid, exited) = sleeper();
    let mut entry = Entry::new("orders", 3511, 50011, 50012);
    entry.pid = pid;
    entry.app_port = Some(8011);
    entry.command = Some("uvicorn app:app".into());
    let registration = Registration::register(home.path(), entry).unwrap();

    let output = tandem(home.path(), &["list"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let table = text(&output.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    let header: Vec<&str> = lines[0]
        .split("  ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(
        header,
        [
            "APP ID",
            "HTTP PORT",
            "GRPC PORT",
            "APP PORT",
            "COMMAND",
            "AGE",
            "CREATED",
            "DAPRD PID",
            "CLI PID",
            "APP PID"
        ],
        "dapr list's columns, the empty ones left out"
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        row[..5],
        ["orders", "3511", "50011", "8011", "uvicorn"],
        "{table}"
    );
    assert_eq!(row[5], "app:app");
    assert!(row[6].ends_with('s'), "age in seconds: {table}");
    assert_eq!(row[8..], [pid.to_string(), pid.to_string(), "0".into()]);

    let output = tandem(home.path(), &["list", "--output", "json"]);
    assert!(output.status.success());
    let rows: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let app = &rows[0];
    assert_eq!(app["appId"], "orders");
    assert_eq!(app["httpPort"], 3511);
    assert_eq!(app["grpcPort"], 50011);
    assert_eq!(app["appPort"], 8011);
    assert_eq!(app["internalPort"], 50012);
    assert_eq!(app["daprdPid"], pid);
    assert_eq!(app["command"], "uvicorn app:app");
    assert!(app["created"].as_str().unwrap().ends_with('Z'));
    assert_eq!(app["cliPid"], pid);
    assert_eq!(app["appPid"], 0);
    assert_eq!(app["metricsEnabled"], false);
    assert_eq!(app["maxRequestBodySize"], 4 << 20);
    assert_eq!(app["httpReadBufferSize"], 4 << 10);
    for empty in [
        "runTemplatePath",
        "appLogPath",
        "daprdLogPath",
        "runTemplateName",
    ] {
        assert_eq!(app[empty], "", "{empty}");
    }

    let output = tandem(home.path(), &["list", "-o", "yaml"]);
    assert!(output.status.success());
    let yaml = text(&output.stdout);
    assert!(
        yaml.starts_with("- appId: orders\n  httpPort: 3511\n"),
        "{yaml}"
    );
    assert!(yaml.contains("\n  command: uvicorn app:app\n"), "{yaml}");
    assert!(yaml.contains(&format!("\n  daprdPid: {pid}\n")), "{yaml}");

    let output = tandem(home.path(), &["stop", "--app-id", "orders"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout) == "✅  app stopped successfully: orders\n",
        "{}",
        text(&output.stdout)
    );
    exited
        .recv_timeout(Duration::from_secs(5))
        .expect("the process got SIGTERM and exited");
    let output = tandem(home.path(), &["list"]);
    assert_eq!(text(&output.stdout).trim(), "No Dapr instances found.");
    assert!(
        !registration.path().exists(),
        "the stopped process's entry is pruned"
    );
}

/// As the Dapr CLI: said, but exit 0 — a clean-up script may stop what already stopped.
#[test]
fn stop_of_an_unknown_app_says_so() {
    let home = tempfile::tempdir().unwrap();
    let output = tandem(home.path(), &["stop", "--app-id", "nope"]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        text(&output.stderr),
        "❌  failed to stop app id nope: couldn't find app id nope\n"
    );
}

#[test]
fn list_refuses_an_unknown_format() {
    let home = tempfile::tempdir().unwrap();
    let output = tandem(home.path(), &["list", "-o", "xml"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        text(&output.stderr),
        "❌  An invalid output format was specified.\n"
    );
}

/// Several ids at once: the flag repeated, ids separated by commas, or after the flags.
#[test]
fn stop_stops_several_apps() {
    for args in [
        &["stop", "--app-id", "one", "--app-id", "two", "three"][..],
        &["stop", "--app-id", "one,two,three"],
        &["stop", "-a", "one", "two", "three"],
    ] {
        let home = tempfile::tempdir().unwrap();
        let mut registrations = Vec::new();
        let mut exits = Vec::new();
        for app_id in ["one", "two", "three"] {
            let (pid, exited) = sleeper();
            let mut entry = Entry::new(app_id, 1, 2, 3);
            entry.pid = pid;
            registrations.push(Registration::register(home.path(), entry).unwrap());
            exits.push(exited);
        }
        let output = tandem(home.path(), args);
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        assert_eq!(
            text(&output.stdout),
            "✅  app stopped successfully: one\n✅  app stopped successfully: two\n\
             ✅  app stopped successfully: three\n",
            "{args:?}"
        );
        for exited in exits {
            exited
                .recv_timeout(Duration::from_secs(5))
                .expect("the process got SIGTERM and exited");
        }
    }
}

#[test]
fn stop_needs_an_app_id() {
    let home = tempfile::tempdir().unwrap();
    let output = tandem(home.path(), &["stop"]);
    assert!(!output.status.success());
    assert!(text(&output.stderr).contains("--app-id"));
}

/// A real sidecar registers itself while it runs, `tandem list` shows it and `tandem
/// stop` ends it (SIGTERM: the sidecar leaves the registry, then exits).
#[test]
fn a_real_sidecar_is_listed_and_stopped() {
    let resources = tempfile::tempdir().unwrap();
    let home = resources.path().join("home");
    let mut sidecar = common::Sidecar::start_as("listed", resources.path(), None, None);
    let output = tandem(&home, &["list", "-o", "json"]);
    let rows: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(rows[0]["appId"], "listed", "{rows}");
    assert_eq!(rows[0]["httpPort"], sidecar.http);
    assert_eq!(rows[0]["grpcPort"], sidecar.grpc);
    assert_eq!(rows[0]["daprdPid"], sidecar.process.id());

    let output = tandem(&home, &["stop", "--app-id", "listed"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        sidecar.process.try_wait().unwrap().is_some(),
        "the sidecar exited"
    );
    let output = tandem(&home, &["list"]);
    assert_eq!(text(&output.stdout).trim(), "No Dapr instances found.");
}
