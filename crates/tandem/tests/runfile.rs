//! Run files through the binary: `tandem run -f` starts every app of a `dapr.yaml`, each
//! with its own sidecar, prefixes their output, writes Dapr's log files, and `tandem
//! stop -f`, Ctrl-C or the death of `run -f` itself stop them all; a bad file is refused
//! before anything starts.
//!
//! Every test kills what it started in a drop guard (by pid and process group), also
//! when it fails, so nothing outlives it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tandem_testkit::free_port;

/// A scratch project: a run file's folder with a `home` (TANDEM_HOME) and the output of
/// `run -f`; kills what it saw on drop.
struct Project {
    dir: tempfile::TempDir,
    run: Option<Child>,
    seen: HashSet<i32>,
}

impl Drop for Project {
    fn drop(&mut self) {
        if let Some(run) = &mut self.run {
            self.seen.extend(descendants(run.id() as i32));
            let _ = run.kill();
            let _ = run.wait();
        }
        for pid in &self.seen {
            let _ = killpg(Pid::from_raw(*pid), Signal::SIGKILL);
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
    }
}

impl Project {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("components")).unwrap();
        Self {
            dir,
            run: None,
            seen: HashSet::new(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) {
        let path = self.path(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }

    fn tandem(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tandem"));
        command
            .args(args)
            .env("TANDEM_HOME", self.path("home"))
            .env_remove("DAPR_API_TOKEN")
            .env_remove("TANDEM_INTERNAL_KEY");
        command
    }

    /// `tandem run -f <target>` in the background, output to `out`/`err`.
    fn start(&mut self, target: &Path) {
        let run = self
            .tandem(&["run", "-f"])
            .arg(target)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(self.path("out")).unwrap())
            .stderr(std::fs::File::create(self.path("err")).unwrap())
            .spawn()
            .unwrap();
        self.run = Some(run);
    }

    fn output(&self, args: &[&str]) -> Output {
        self.tandem(args).output().unwrap()
    }

    /// The one log file of `app` of this `kind` (`app` or `daprd`) under `folder`.
    fn log(&self, folder: &str, app: &str, kind: &str) -> Option<String> {
        let dir = self.path(folder).join(".dapr/logs");
        let prefix = format!("{app}_{kind}_");
        let entry = std::fs::read_dir(dir).ok()?.find_map(|entry| {
            let entry = entry.ok()?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let stamp = name.strip_prefix(&prefix)?.strip_suffix(".log")?;
            (stamp.len() == 14 && stamp.bytes().all(|b| b.is_ascii_digit())).then_some(entry)
        })?;
        std::fs::read_to_string(entry.path()).ok()
    }

    fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let run = self.run.as_mut().unwrap();
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = run.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "tandem run -f did not exit\n{}",
                self.read("err")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Remembers every process under `run -f` as it is now.
    fn remember_tree(&mut self) -> HashSet<i32> {
        let tree = descendants(self.run.as_ref().unwrap().id() as i32);
        self.seen.extend(&tree);
        tree
    }
}

fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `/proc/PID/stat`: (state, parent).
fn stat(pid: i32) -> Option<(String, i32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = text[text.rfind(')')? + 1..].split_whitespace();
    Some((fields.next()?.to_owned(), fields.next()?.parse().ok()?))
}

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

fn assert_all_gone(pids: &HashSet<i32>, limit: Duration) {
    let deadline = Instant::now() + limit;
    while pids.iter().any(|pid| alive(*pid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left: Vec<i32> = pids.iter().copied().filter(|pid| alive(*pid)).collect();
    assert!(left.is_empty(), "still running: {left:?}");
}

/// Answers `POST /ping` with `pong`, printing what it got.
const RECEIVER: &str = r#"
import http.server, os, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        print("got " + body + " (" + os.environ.get("GREETING", "") + ")", flush=True)
        self.send_response(200)
        self.send_header("Content-Length", "4")
        self.end_headers()
        self.wfile.write(b"pong")
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(os.environ["APP_PORT"])), Handler).serve_forever()
"#;

/// Invokes `receiver` through its own sidecar until it answers, says so, then waits.
const SENDER: &str = r#"
import os, time, urllib.request
url = "http://127.0.0.1:%s/v1.0/invoke/receiver/method/ping" % os.environ["DAPR_HTTP_PORT"]
while True:
    try:
        answer = urllib.request.urlopen(urllib.request.Request(url, data=b"hello", method="POST"), timeout=2).read()
        print("answer: " + answer.decode(), flush=True)
        break
    except Exception:
        time.sleep(0.1)
time.sleep(1000)
"#;

#[test]
fn two_apps_exchange_a_message_and_stop_together() {
    let mut project = Project::new();
    project.write("receiver/receiver.py", RECEIVER);
    project.write("sender/sender.py", SENDER);
    let app_port = free_port();
    project.write(
        "dapr.yaml",
        &format!(
            r#"version: 1
common:
  resourcesPath: ./components
  env:
    GREETING: common
apps:
  - appID: receiver
    appDirPath: ./receiver
    appPort: {app_port}
    command: ["python3", "receiver.py"]
    appLogDestination: file
    env:
      GREETING: own
  - appID: sender
    appDirPath: sender/
    command: ["python3", "sender.py"]
    appLogDestnation: console
"#
        ),
    );
    // A folder means its dapr.yaml.
    let folder = project.dir.path().to_owned();
    project.start(&folder);
    wait_until(Duration::from_secs(30), "the sender's answer", || {
        project
            .read("out")
            .contains("== APP - sender == answer: pong")
    });
    let tree = project.remember_tree();

    let out = project.read("out");
    let err = project.read("err");
    // The receiver's lines go to its log file only, prefixed there as on a console.
    assert!(!out.contains("got hello"), "{out}");
    let receiver_log = project
        .log("receiver", "receiver", "app")
        .unwrap_or_default();
    assert!(
        receiver_log.contains("== APP - receiver == got hello (own)"),
        "{receiver_log}"
    );
    // The sender's go to both (fileAndConsole, the default).
    let sender_log = project.log("sender", "sender", "app").unwrap_or_default();
    assert!(
        sender_log.contains("== APP - sender == answer: pong"),
        "{sender_log}"
    );
    // The sidecars' logs go to their files (`file`, the default), not the console.
    let daprd_log = project.log("sender", "sender", "daprd").unwrap_or_default();
    assert!(
        daprd_log.contains("You're up and running! Dapr logs will appear here."),
        "{daprd_log}"
    );
    assert!(!out.contains("== DAPR - "), "{out}");
    for app in ["receiver", "sender"] {
        assert!(
            out.contains(&format!("Started Dapr with app id \"{app}\". HTTP Port: ")),
            "{out}"
        );
    }
    assert!(
        err.contains("apps[1] (appID \"sender\"): appLogDestnation: unknown field (did you mean `appLogDestination`?)"),
        "{err}"
    );

    // Both are in the registry, and `stop -f` stops both.
    let list = project.output(&["list", "-o", "json"]);
    let rows: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let mut ids: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|row| row["appId"].as_str())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["receiver", "sender"]);
    let stop = project.output(&["stop", "-f", project.path("dapr.yaml").to_str().unwrap()]);
    assert!(
        stop.status.success(),
        "{}",
        String::from_utf8_lossy(&stop.stderr)
    );
    let stopped = String::from_utf8_lossy(&stop.stdout).into_owned();
    assert!(
        stopped.contains("app 'receiver' stopped") && stopped.contains("app 'sender' stopped"),
        "{stopped}"
    );
    // With every app stopped, `run -f` ends too, and nothing it started is left.
    let status = project.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "{}", project.read("err"));
    assert_all_gone(&tree, Duration::from_secs(5));
    assert!(
        project
            .read("out")
            .contains("== APP - sender == ✅  Exited App successfully"),
        "{}",
        project.read("out")
    );
}

#[test]
fn a_bad_run_file_is_refused_before_anything_starts() {
    let mut project = Project::new();
    std::fs::create_dir_all(project.path("first")).unwrap();
    std::fs::create_dir_all(project.path("orders")).unwrap();
    project.write(
        "dapr.yaml",
        "version: 1\napps:\n  - appDirPath: first\n    command: [\"sleep\", \"100\"]\n  - appID: orders\n    appDirPath: orders\n    appPort: abc\n    command: [\"sleep\", \"100\"]\n",
    );
    let file = project.path("dapr.yaml");
    project.start(&file);
    let status = project.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(1));
    let err = project.read("err");
    assert!(
        err.contains(
            "dapr.yaml: apps[1] (appID \"orders\"): appPort: expected a port number, found \"abc\""
        ),
        "{err}"
    );
    assert!(!project.path("first/.dapr").exists(), "nothing started");
    let list = project.output(&["list", "-o", "json"]);
    assert_eq!(String::from_utf8_lossy(&list.stdout).trim(), "[]");

    // `stop -f` reads the file the same way.
    let stop = project.output(&["stop", "-f", project.path("dapr.yaml").to_str().unwrap()]);
    assert_eq!(stop.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&stop.stderr).contains("appPort: expected a port number"));
}

/// Two shell apps that write their pids and wait on a child.
fn two_sleepers(project: &mut Project) -> HashSet<i32> {
    let app = r#"["sh", "-c", "echo $$ > app.pid; sleep 1000 & wait"]"#;
    project.write(
        "dapr.yaml",
        &format!(
            "version: 1\ncommon:\n  resourcesPath: components\napps:\n  - appDirPath: one\n    command: {app}\n  - appDirPath: two\n    command: {app}\n    appLogDestination: console\n"
        ),
    );
    std::fs::create_dir_all(project.path("one")).unwrap();
    std::fs::create_dir_all(project.path("two")).unwrap();
    let file = project.path("dapr.yaml");
    project.start(&file);
    wait_until(Duration::from_secs(30), "both apps up", || {
        let out = project.read("out");
        !project.read("one/app.pid").trim().is_empty()
            && !project.read("two/app.pid").trim().is_empty()
            && out.contains("app id \"one\"")
            && out.contains("app id \"two\"")
    });
    // The apps' `sleep`s may be a moment behind their pid files.
    wait_until(Duration::from_secs(5), "the apps' children", || {
        ["one", "two"].iter().all(|app| {
            let pid: i32 = project
                .read(&format!("{app}/app.pid"))
                .trim()
                .parse()
                .unwrap();
            !descendants(pid).is_empty()
        })
    });
    let tree = project.remember_tree();
    // Two guards, two `tandem run`s, their two app guards, two shells, two sleeps.
    assert!(tree.len() >= 10, "{tree:?}");
    tree
}

#[test]
fn sigkill_of_run_f_leaves_nothing_running() {
    let mut project = Project::new();
    let tree = two_sleepers(&mut project);
    let run = project.run.as_ref().unwrap().id() as i32;
    kill(Pid::from_raw(run), Signal::SIGKILL).unwrap();
    let _ = project.wait_exit(Duration::from_secs(5));
    assert_all_gone(&tree, Duration::from_secs(10));
}

#[test]
fn ctrl_c_stops_every_app() {
    let mut project = Project::new();
    let tree = two_sleepers(&mut project);
    let run = project.run.as_ref().unwrap().id() as i32;
    kill(Pid::from_raw(run), Signal::SIGINT).unwrap();
    let status = project.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "{}", project.read("err"));
    assert_all_gone(&tree, Duration::from_secs(5));
    let out = project.read("out");
    assert!(
        out.contains("Received signal to stop Dapr and app processes."),
        "{out}"
    );
    // `appLogDestination: console`: no app log file, the sidecar's log file as ever.
    assert!(project.log("two", "two", "app").is_none());
    assert!(project.log("two", "two", "daprd").is_some());
}
