//! An app's life is tied to its `tandem run`: the app, and whatever it started, dies
//! with `run` however `run` dies (SIGKILL, its process group killed), `run` ends when the
//! app does and takes what the app left behind with it, and the ordinary behaviour stays
//! — exit code, stop order, prefixed output, `tandem list`/`stop`.
//!
//! Every test kills what it started in a drop guard (by PID and process group), also when
//! it fails, so nothing outlives it.

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tandem_testkit::{RedisServer, free_port};

/// How long a process may take to go once its `run` is gone.
const GONE_WITHIN: Duration = Duration::from_secs(2);

/// Kills, on drop, `tandem run` and every process and group a test has seen.
#[derive(Default)]
struct Cleanup {
    runs: Vec<Child>,
    pids: Vec<i32>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for run in &mut self.runs {
            let pid = Pid::from_raw(run.id() as i32);
            let _ = killpg(pid, Signal::SIGKILL);
            let _ = run.kill();
            let _ = run.wait();
        }
        for pid in &self.pids {
            let pid = Pid::from_raw(*pid);
            let _ = killpg(pid, Signal::SIGKILL);
            let _ = kill(pid, Signal::SIGKILL);
        }
    }
}

impl Cleanup {
    /// Remembers `run`'s descendants as they are now (the guard, the app, its children).
    fn remember_tree(&mut self, root: u32) {
        self.pids.extend(descendants(root as i32));
    }
}

/// A folder with an empty `components` folder, a `home` and the run's output files.
struct Place {
    dir: tempfile::TempDir,
}

impl Place {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("components")).unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }

    /// `tandem run [flags] -- app`, in `self`'s folder, output to `out-N`/`err-N`.
    fn run(&self, tag: &str, flags: &[&str], app: &[&str], own_group: bool) -> Child {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tandem"));
        command
            .arg("run")
            .args(flags)
            .arg("--")
            .args(app)
            .current_dir(self.dir.path())
            .env("TANDEM_HOME", self.path("home"))
            .env_remove("DAPR_API_TOKEN")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(self.path(&format!("out-{tag}"))).unwrap())
            .stderr(std::fs::File::create(self.path(&format!("err-{tag}"))).unwrap());
        if own_group {
            command.process_group(0);
        }
        command.spawn().unwrap()
    }

    /// The pid a file holds once the app wrote it whole.
    fn wait_pid(&self, name: &str) -> i32 {
        let mut pid = None;
        wait_until(Duration::from_secs(20), &format!("{name} written"), || {
            pid = self.read(name).trim().parse().ok();
            pid.is_some()
        });
        pid.unwrap()
    }
}

fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `/proc/PID/stat`: (state, parent).
fn stat(pid: i32) -> Option<(String, i32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = text[text.rfind(')')? + 1..].split_whitespace();
    Some((fields.next()?.to_owned(), fields.next()?.parse().ok()?))
}

/// Running: it exists and is not a zombie.
fn alive(pid: i32) -> bool {
    stat(pid).is_some_and(|(state, _)| state != "Z" && state != "X")
}

fn descendants(root: i32) -> HashSet<i32> {
    let parents: Vec<(i32, i32)> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| {
            let pid: i32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            Some((pid, stat(pid)?.1))
        })
        .collect();
    let mut found = HashSet::new();
    let mut next = vec![root];
    while let Some(parent) = next.pop() {
        for (pid, _) in parents.iter().filter(|(_, p)| *p == parent) {
            if found.insert(*pid) {
                next.push(*pid);
            }
        }
    }
    found
}

fn assert_gone(pids: &[(&str, i32)]) {
    let deadline = Instant::now() + GONE_WITHIN;
    while pids.iter().any(|(_, pid)| alive(*pid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    for (name, pid) in pids {
        assert!(!alive(*pid), "{name} (pid {pid}) is still running");
    }
}

fn wait_exit(run: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = run.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "tandem run did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A shell app that starts a long `sleep` in the background and waits for it; both
/// write their pids.
const SHELL_WITH_CHILD: &str = "echo $$ > sh.pid; sleep 1000 & echo $! > sleep.pid; wait";

/// `tandem run` of [`SHELL_WITH_CHILD`]; returns (run, sh pid, sleep pid).
fn run_shell(place: &Place, cleanup: &mut Cleanup, own_group: bool) -> (u32, i32, i32) {
    let components = place.path("components");
    let run = place.run(
        "shell",
        &[
            "--app-id",
            "shell",
            "--resources-path",
            components.to_str().unwrap(),
        ],
        &["sh", "-c", SHELL_WITH_CHILD],
        own_group,
    );
    let run_pid = run.id();
    cleanup.runs.push(run);
    let sh = place.wait_pid("sh.pid");
    let sleep = place.wait_pid("sleep.pid");
    cleanup.pids.extend([sh, sleep]);
    cleanup.remember_tree(run_pid);
    (run_pid, sh, sleep)
}

#[test]
fn sigkill_of_run_takes_the_app_and_its_children() {
    let place = Place::new();
    let mut cleanup = Cleanup::default();
    let (run, sh, sleep) = run_shell(&place, &mut cleanup, false);
    kill(Pid::from_raw(run as i32), Signal::SIGKILL).unwrap();
    assert_gone(&[("the app (sh)", sh), ("its child (sleep)", sleep)]);
}

#[test]
fn sigkill_of_runs_process_group_takes_the_app_and_its_children() {
    let place = Place::new();
    let mut cleanup = Cleanup::default();
    let (run, sh, sleep) = run_shell(&place, &mut cleanup, true);
    killpg(Pid::from_raw(run as i32), Signal::SIGKILL).unwrap();
    assert_gone(&[("the app (sh)", sh), ("its child (sleep)", sleep)]);
}

#[test]
fn when_the_app_dies_run_exits_and_what_it_started_goes_too() {
    let place = Place::new();
    let mut cleanup = Cleanup::default();
    let (_, sh, sleep) = run_shell(&place, &mut cleanup, false);
    kill(Pid::from_raw(sh), Signal::SIGKILL).unwrap();
    let status = wait_exit(&mut cleanup.runs[0], Duration::from_secs(15));
    assert_eq!(status.code(), Some(1), "{}", place.read("err-shell"));
    assert_gone(&[("the app's child (sleep)", sleep)]);
}

#[test]
fn the_apps_exit_code_is_runs_and_its_output_is_prefixed() {
    let place = Place::new();
    let mut cleanup = Cleanup::default();
    let components = place.path("components");
    cleanup.runs.push(place.run(
        "code",
        &["--resources-path", components.to_str().unwrap()],
        &["sh", "-c", "echo hello; echo oops >&2; exit 7"],
        false,
    ));
    let status = wait_exit(&mut cleanup.runs[0], Duration::from_secs(20));
    assert_eq!(status.code(), Some(7), "{}", place.read("err-code"));
    assert!(
        place.read("out-code").contains("== APP == hello\n"),
        "{}",
        place.read("out-code")
    );
    assert!(
        place.read("err-code").contains("== APP == oops\n"),
        "{}",
        place.read("err-code")
    );

    // An app that cannot start: `run` says why, and fails as a shell would.
    cleanup.runs.push(place.run(
        "missing",
        &["--resources-path", components.to_str().unwrap()],
        &["./no-such-app"],
        false,
    ));
    let status = wait_exit(&mut cleanup.runs[1], Duration::from_secs(20));
    assert_eq!(status.code(), Some(127));
    let log = place.read("err-missing");
    assert!(
        log.contains("cannot start the app `./no-such-app`") && !log.contains("== APP =="),
        "{log}"
    );
}

/// An app that says when SIGTERM reaches it, then exits.
const POLITE_APP: &str = "trap 'echo got SIGTERM >&2; exit 0' TERM; echo $$ > sh.pid; \
                          while :; do sleep 0.05; done";

/// Ctrl-C (SIGINT) or `tandem stop` (SIGTERM to `run`) stops the app with SIGTERM first,
/// then the sidecar, and `run` exits 0.
fn stops_app_then_sidecar(stop: impl FnOnce(&Place, u32)) {
    let place = Place::new();
    let mut cleanup = Cleanup::default();
    let components = place.path("components");
    let run = place.run(
        "polite",
        &[
            "--app-id",
            "polite",
            "--resources-path",
            components.to_str().unwrap(),
        ],
        &["sh", "-c", POLITE_APP],
        false,
    );
    let run_pid = run.id();
    cleanup.runs.push(run);
    let sh = place.wait_pid("sh.pid");
    cleanup.pids.push(sh);
    cleanup.remember_tree(run_pid);
    wait_until(Duration::from_secs(10), "the sidecar ready", || {
        place.read("err-polite").contains("sidecar ready")
    });
    // `tandem list` knows the app's pid (recorded once `run` has found it, which may
    // come just after the sidecar's ready line).
    let list = || {
        let output = Command::new(env!("CARGO_BIN_EXE_tandem"))
            .args(["list", "-o", "json"])
            .env("TANDEM_HOME", place.path("home"))
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()
    };
    wait_until(
        Duration::from_secs(5),
        "the app's pid in the registry",
        || list()[0]["appPid"] == sh,
    );
    let rows = list();
    assert_eq!(rows[0]["appPid"], sh, "{rows}");
    assert_eq!(rows[0]["cliPid"], run_pid, "{rows}");

    stop(&place, run_pid);
    let status = wait_exit(&mut cleanup.runs[0], Duration::from_secs(15));
    let log = place.read("err-polite");
    assert_eq!(status.code(), Some(0), "{log}");
    let app_stopped = log.find("== APP == got SIGTERM").expect(&log);
    let sidecar_stopped = log.find("sidecar stopped").expect(&log);
    assert!(app_stopped < sidecar_stopped, "{log}");
    assert!(!alive(sh));
}

#[test]
fn ctrl_c_stops_the_app_then_the_sidecar() {
    stops_app_then_sidecar(|_, run| {
        kill(Pid::from_raw(run as i32), Signal::SIGINT).unwrap();
    });
}

#[test]
fn tandem_stop_stops_the_app_then_the_sidecar() {
    stops_app_then_sidecar(|place, _| {
        let stop = Command::new(env!("CARGO_BIN_EXE_tandem"))
            .args(["stop", "--app-id", "polite"])
            .env("TANDEM_HOME", place.path("home"))
            .output()
            .unwrap();
        assert!(
            stop.status.success(),
            "{}",
            String::from_utf8_lossy(&stop.stderr)
        );
    });
}

/// A subscriber on Python's standard library: records `n` of every event of
/// `pubsub`/`numbers` to RECORD_FILE (one O_APPEND write per line, so a process killed
/// at any moment leaves whole lines), and its pid to PID_FILE.
const SUBSCRIBER: &str = r#"
import json, os, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

record = os.open(os.environ["RECORD_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.reply([{"pubsubname": "pubsub", "topic": "numbers", "route": "/numbers"}])

    def do_POST(self):
        event = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        time.sleep(0.002)
        os.write(record, f"{event['data']['n']}\n".encode())
        self.reply({"status": "SUCCESS"})

    def reply(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["APP_PORT"])), Handler)
with open(os.environ["PID_FILE"], "w") as pid_file:
    pid_file.write(str(os.getpid()))
server.serve_forever()
"#;

const MESSAGES: usize = 1000;

fn recorded(place: &Place) -> HashSet<usize> {
    place
        .read("record")
        .lines()
        .filter_map(|line| line.parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_of_run_mid_flow_frees_the_apps_port_and_no_message_is_lost() {
    let redis = RedisServer::start();
    let place = Place::new();
    let mut cleanup = Cleanup::default();
    let components = place.path("components");
    std::fs::write(
        components.join("pubsub.yaml"),
        format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: pubsub\nspec:\n  type: pubsub.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: \"{}\"\n  - name: processingTimeout\n    value: 1s\n  - name: redeliverInterval\n    value: 1s\n",
            redis.address()
        ),
    )
    .unwrap();
    std::fs::File::create(place.path("app.py"))
        .unwrap()
        .write_all(SUBSCRIBER.as_bytes())
        .unwrap();
    let publisher = tokio::task::spawn_blocking({
        let (home, components) = (place.path("home"), components.clone());
        move || common::Sidecar::start_in(&home, "publisher", &components, None, None)
    })
    .await
    .unwrap();

    let (app_port, http_port, grpc_port) = (free_port(), free_port(), free_port());
    let subscriber = |tag: &str| {
        let mut run = Command::new(env!("CARGO_BIN_EXE_tandem"));
        run.args(["run", "--app-id", "subscriber"])
            .args(["--app-port", &app_port.to_string()])
            .args(["--dapr-http-port", &http_port.to_string()])
            .args(["--dapr-grpc-port", &grpc_port.to_string()])
            .arg("--resources-path")
            .arg(&components)
            .args(["--", "python3", "app.py"])
            .current_dir(place.dir.path())
            .env("TANDEM_HOME", place.path("home"))
            .env("RECORD_FILE", place.path("record"))
            .env("PID_FILE", place.path(&format!("app-{tag}.pid")))
            .env_remove("DAPR_API_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(place.path(&format!("err-{tag}"))).unwrap());
        run.spawn().unwrap()
    };
    let ready = |tag: &str| {
        let url = format!("http://127.0.0.1:{http_port}/v1.0/healthz");
        wait_until(
            Duration::from_secs(20),
            &format!("subscriber {tag} ready"),
            || common::get_status(&url) == Some(204),
        );
    };

    let first = subscriber("first");
    let first_pid = first.id();
    cleanup.runs.push(first);
    let app = place.wait_pid("app-first.pid");
    cleanup.pids.push(app);
    cleanup.remember_tree(first_pid);
    tokio::task::block_in_place(|| ready("first"));

    // Published through the publisher's sidecar, while the subscriber is killed and
    // started again: what it had in flight and what was published meanwhile must all
    // arrive.
    let publish_url = publisher.url("/v1.0/publish/pubsub/numbers");
    let publishing = tokio::spawn(async move {
        let http = reqwest::Client::new();
        for n in 0..MESSAGES {
            let answer = http
                .post(&publish_url)
                .json(&serde_json::json!({"n": n}))
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), 204);
            if n % 100 == 99 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    tokio::task::block_in_place(|| {
        wait_until(Duration::from_secs(20), "deliveries under way", || {
            recorded(&place).len() >= 100
        });
    });
    kill(Pid::from_raw(first_pid as i32), Signal::SIGKILL).unwrap();
    tokio::task::block_in_place(|| {
        assert_gone(&[("the subscriber app", app)]);
        wait_until(GONE_WITHIN, "the app's port free", || {
            std::net::TcpListener::bind(("127.0.0.1", app_port)).is_ok()
        });
    });
    let delivered_before = recorded(&place).len();
    assert!(
        delivered_before < MESSAGES,
        "killed too late to prove anything"
    );

    let second = subscriber("second");
    let second_pid = second.id();
    cleanup.runs.push(second);
    let app = place.wait_pid("app-second.pid");
    cleanup.pids.push(app);
    cleanup.remember_tree(second_pid);
    tokio::task::block_in_place(|| ready("second"));
    publishing.await.unwrap();
    tokio::task::block_in_place(|| {
        wait_until(Duration::from_secs(30), "every message delivered", || {
            recorded(&place).len() == MESSAGES
        });
    });
    let all: HashSet<usize> = (0..MESSAGES).collect();
    assert_eq!(recorded(&place), all);
}
