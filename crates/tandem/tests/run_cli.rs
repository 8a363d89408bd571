//! `tandem run` takes `dapr run` lines as people write them: the app command with or
//! without `--`, every flag group of `dapr run`, comma-separated resources paths, the
//! APIs on Unix sockets with `-u`, the app's environment exactly as `dapr run` sets it,
//! Dapr's status and readiness lines, a fresh app id when none is given, and no command
//! at all (the sidecar alone).
//!
//! Every test kills what it started in a drop guard (by process group), also when it
//! fails, so nothing outlives it.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tandem_testkit::free_port;

const READY_WITH_APP: &str =
    "✅  You're up and running! Both Dapr and your app logs will appear here.\n\n";
const READY_ALONE: &str = "✅  You're up and running! Dapr logs will appear here.\n\n";

/// A folder to run in (`c1`, `c2` hold one component each), its `home`, and the `run`s
/// started there, killed with their process group on drop.
struct Place {
    dir: tempfile::TempDir,
    runs: Vec<Child>,
}

impl Drop for Place {
    fn drop(&mut self) {
        for run in &mut self.runs {
            let _ = killpg(Pid::from_raw(run.id() as i32), Signal::SIGKILL);
            let _ = run.wait();
        }
    }
}

impl Place {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for (folder, name) in [("c1", "first"), ("c2", "second")] {
            std::fs::create_dir(dir.path().join(folder)).unwrap();
            std::fs::write(
                dir.path().join(folder).join("state.yaml"),
                format!(
                    "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\n\
                     spec:\n  type: state.in-memory\n  version: v1\n"
                ),
            )
            .unwrap();
        }
        Self {
            dir,
            runs: Vec::new(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }

    /// `tandem run ARGS...` exactly as given (no `--` added), in this folder, in its
    /// own process group, output to `out-TAG`/`err-TAG`; returns its index.
    fn run(&mut self, tag: &str, args: &[&str], env: &[(&str, &str)]) -> usize {
        let child = Command::new(env!("CARGO_BIN_EXE_tandem"))
            .arg("run")
            .args(args)
            .current_dir(self.dir.path())
            .env("TANDEM_HOME", self.path("home"))
            .env_remove("DAPR_API_TOKEN")
            .env_remove("APP_API_TOKEN")
            .env_remove("DAPR_GRPC_ENDPOINT")
            .env_remove("DAPR_HTTP_ENDPOINT")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(self.path(&format!("out-{tag}"))).unwrap())
            .stderr(std::fs::File::create(self.path(&format!("err-{tag}"))).unwrap())
            .process_group(0)
            .spawn()
            .unwrap();
        self.runs.push(child);
        self.runs.len() - 1
    }

    /// SIGTERM to `run` (what `tandem stop` sends), then its exit status.
    fn stop(&mut self, index: usize) -> ExitStatus {
        let run = &mut self.runs[index];
        nix::sys::signal::kill(Pid::from_raw(run.id() as i32), Signal::SIGTERM).unwrap();
        self.wait_exit(index)
    }

    fn wait_exit(&mut self, index: usize) -> ExitStatus {
        let run = &mut self.runs[index];
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = run.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "run did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn wait_for(&self, file: &str, text: &str) {
        wait_until(&format!("{text:?} in {file}"), || {
            self.read(file).contains(text)
        });
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `NAME=value` lines (from `env`) as a map.
fn env_map(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

/// `GET path` over a Unix socket: the status line and the body.
fn get_over_socket(socket: &Path, path: &str) -> (String, String) {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    )
}

/// An app that records its environment and arguments, then waits to be stopped.
const RECORDING_APP: &str = "env > env.out; echo \"$@\" > args.out; echo recorded; \
                             while :; do sleep 0.05; done";

/// One line with a flag of every group of `dapr run`, the app command after the flags
/// without `--` (its own `-c` and `--flag` stay its own), two resources folders in one
/// comma-separated `-d`, and `-u`: the app gets exactly Dapr's environment, both
/// folders' components load, both APIs also listen on Dapr-named Unix sockets (an HTTP
/// client is answered there), and the socket files go when `run` ends.
#[test]
fn a_dapr_run_line_with_every_flag_group_and_no_dashes() {
    let mut place = Place::new();
    std::fs::create_dir(place.path("sockets")).unwrap();
    let (http, grpc, internal, metrics) = (free_port(), free_port(), free_port(), free_port());
    let ports = [http, grpc, internal, metrics].map(|port| port.to_string());
    let run = place.run(
        "flags",
        &[
            "-a",
            "flagged",
            "-H",
            &ports[0],
            "-G",
            &ports[1],
            "-I",
            &ports[2],
            "-M",
            &ports[3],
            "--enable-metrics=false",
            "-P",
            "http",
            "-d",
            "c1,c2",
            "--app-channel-address",
            "127.0.0.1",
            "--max-body-size",
            "8Mi",
            "--read-buffer-size",
            "16Ki",
            "-u",
            "sockets",
            "--enable-profiling",
            "--profile-port",
            "7777",
            "--log-level",
            "info",
            "--enable-api-logging",
            "--dapr-listen-addresses",
            "127.0.0.1",
            "--placement-host-address",
            "localhost:50005",
            "--scheduler-host-address",
            "localhost:50006",
            "--runtime-path",
            "/nowhere",
            "sh",
            "-c",
            RECORDING_APP,
            "app",
            "--flag",
            "-x",
        ],
        &[("DAPR_API_TOKEN", "secret-token")],
    );
    place.wait_for("out-flags", READY_WITH_APP);
    place.wait_for("out-flags", "== APP == recorded");
    let env = env_map(&place.read("env.out"));
    assert_eq!(place.read("args.out"), "--flag -x\n");
    for (name, value) in [
        ("APP_ID", "flagged"),
        ("APP_CHANNEL_ADDRESS", "127.0.0.1"),
        ("APP_PROTOCOL", "http"),
        ("DAPR_HTTP_PORT", &ports[0]),
        ("DAPR_GRPC_PORT", &ports[1]),
        ("DAPR_METRICS_PORT", &ports[3]),
        ("DAPR_API_TOKEN", "secret-token"),
    ] {
        assert_eq!(env.get(name).map(String::as_str), Some(value), "{name}");
    }
    // Nothing `dapr run` does not set: the Python SDK warns about an http:// gRPC
    // endpoint, and there is no app port.
    for name in ["DAPR_GRPC_ENDPOINT", "DAPR_HTTP_ENDPOINT", "APP_PORT"] {
        assert!(!env.contains_key(name), "{name} set: {env:?}");
    }

    let out = place.read("out-flags");
    let (http_socket, grpc_socket) = (
        place.path("sockets/dapr-flagged-http.socket"),
        place.path("sockets/dapr-flagged-grpc.socket"),
    );
    assert!(
        out.contains(
            "ℹ️  Starting Dapr with id flagged. HTTP Socket: sockets/dapr-flagged-http.socket. \
             gRPC Socket: sockets/dapr-flagged-grpc.socket.\n"
        ),
        "{out}"
    );
    assert!(grpc_socket.exists());
    let (status, _) = get_over_socket(&http_socket, "/v1.0/metadata");
    assert_eq!(
        status, "HTTP/1.1 401 Unauthorized",
        "the token applies on the socket"
    );
    let mut stream = UnixStream::connect(&http_socket).unwrap();
    write!(
        stream,
        "GET /v1.0/metadata HTTP/1.1\r\nHost: localhost\r\ndapr-api-token: secret-token\r\n\
         Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let metadata: serde_json::Value =
        serde_json::from_str(answer.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(metadata["id"], "flagged");
    let names: Vec<&str> = metadata["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|component| component["name"].as_str())
        .collect();
    assert!(
        names.contains(&"first") && names.contains(&"second"),
        "{names:?}"
    );
    // The same API on the TCP port given with -H.
    let (status, _) = common::raw_request(http, "GET", "/v1.0/healthz");
    assert_eq!(status, 204);

    assert!(place.stop(run).success(), "{}", place.read("err-flags"));
    let err = place.read("err-flags");
    assert_eq!(
        err.matches("tandem needs no placement or scheduler service")
            .count(),
        1,
        "{err}"
    );
    assert!(err.contains("HTTP API called: GET /v1.0/metadata"), "{err}");
    let out = place.read("out-flags");
    assert!(out.contains("✅  Exited Dapr successfully\n"), "{out}");
    assert!(!http_socket.exists() && !grpc_socket.exists());
}

/// No command: the sidecar alone, with Dapr's sidecar-only readiness line, until
/// stopped; no `--app-id`: a fresh id in Dapr's shape, not the folder's name, so two
/// runs of one example never share one. `--log-as-json` writes the status lines as
/// `dapr` does, one JSON object each, and the sidecar's log as daprd writes it.
#[test]
fn no_command_runs_the_sidecar_alone_under_a_fresh_app_id() {
    let mut place = Place::new();
    let mut ids = Vec::new();
    for tag in ["one", "two"] {
        let port = free_port();
        let run = place.run(tag, &["-H", &port.to_string(), "-d", "c1"], &[]);
        let out = format!("out-{tag}");
        place.wait_for(&out, READY_ALONE);
        assert!(
            place
                .read(&out)
                .starts_with("WARNING: no application command found.\n")
        );
        let (status, body) = common::raw_request(port, "GET", "/v1.0/metadata");
        assert_eq!(status, 200);
        let metadata: serde_json::Value = serde_json::from_str(&body).unwrap();
        let id = metadata["id"].as_str().unwrap().to_owned();
        let folder = place.dir.path().file_name().unwrap().to_str().unwrap();
        assert_ne!(id, folder);
        let (head, tail) = id.split_once('-').unwrap();
        assert!(
            !head.is_empty()
                && !tail.is_empty()
                && id.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
            "{id}"
        );
        assert!(
            place
                .read(&out)
                .contains(&format!("Starting Dapr with id {id}."))
        );
        ids.push(id);
        let status = place.stop(run);
        assert!(status.success(), "{}", place.read(&format!("err-{tag}")));
        assert!(place.read(&out).ends_with("✅  Exited Dapr successfully\n"));
    }
    assert_ne!(ids[0], ids[1]);

    let run = place.run("json", &["--app-id", "quiet", "--log-as-json"], &[]);
    place.wait_for("out-json", "up and running");
    place.stop(run);
    let out = place.read("out-json");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert!(
        lines.iter().any(|line| line["status"] == "success"
            && line["msg"] == "You're up and running! Dapr logs will appear here.\n"
            && line["time"]
                .as_str()
                .is_some_and(|time| time.ends_with('Z'))),
        "{out}"
    );
    assert!(!out.contains("✅"), "{out}");
    // The sidecar's log too, as daprd writes it with the flag.
    let err = place.read("err-json");
    let logs: Vec<serde_json::Value> = err
        .lines()
        .map(|line| serde_json::from_str(line).expect(line))
        .collect();
    assert!(
        logs.iter().any(|log| log["level"] == "info"
            && log["type"] == "log"
            && log["msg"] == "sidecar stopped"),
        "{err}"
    );
}

/// The readiness line waits for the app: not while its port is closed, at once when it
/// opens. `--` before the command works as before, and a command's own `--` is its own.
#[test]
fn the_readiness_line_waits_for_the_apps_port() {
    let mut place = Place::new();
    let app_port = free_port();
    let server = format!(
        "import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); \
         s.bind(('127.0.0.1', {app_port})); s.listen(); print('listening', flush=True); \
         [c.close() for c in iter(lambda: s.accept()[0], None)]"
    );
    let app = format!(
        "echo $$ > sh.pid; while [ ! -f go ]; do sleep 0.02; done; exec python3 -c \"{server}\""
    );
    let run = place.run(
        "wait",
        &[
            "--app-id",
            "waiter",
            "--app-port",
            &app_port.to_string(),
            "-d",
            "c1",
            "--",
            "sh",
            "-c",
            &app,
            "--",
        ],
        &[],
    );
    place.wait_for("out-wait", "Starting Dapr with id waiter.");
    wait_until("the app started", || !place.read("sh.pid").is_empty());
    // The sidecar serves and the app runs, but does not listen yet: no readiness line.
    assert!(!place.read("out-wait").contains("up and running"));
    std::fs::write(place.path("go"), "").unwrap();
    place.wait_for("out-wait", "== APP == listening");
    place.wait_for("out-wait", READY_WITH_APP);
    assert!(place.stop(run).success());
    let out = place.read("out-wait");
    assert!(
        out.contains("ℹ️  terminated signal received: shutting down\n"),
        "{out}"
    );
    assert!(out.contains("✅  Exited App successfully\n"), "{out}");
}

/// A flag `run` does not know is refused before anything starts, not taken for the
/// start of the app's command (which would run `--typo` as a program, silently).
#[test]
fn an_unknown_flag_is_refused_not_run_as_the_app() {
    let mut place = Place::new();
    let run = place.run(
        "typo",
        &[
            "--app-id",
            "typo",
            "--enabel-api-logging",
            "sh",
            "-c",
            "echo ran > ran.out",
        ],
        &[],
    );
    let status = place.wait_exit(run);
    assert_eq!(status.code(), Some(2));
    let err = place.read("err-typo");
    assert!(
        err.contains("unexpected argument '--enabel-api-logging'"),
        "{err}"
    );
    assert!(!place.path("ran.out").exists());
    assert!(!place.read("out-typo").contains("Starting Dapr"));
}
