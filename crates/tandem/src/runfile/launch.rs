//! Running a run file: every app at once, each as its own `tandem run` (or `tandem
//! sidecar`), and `tandem stop -f`.
//!
//! Each app runs as `tandem __guard -- tandem run [its flags] -- [its command]`, in its
//! folder, with its `env` added: the child `run` already ties its app's life to itself,
//! and the guard (see `guard.rs`) ties the child's life to this process through its
//! lifeline — when this process dies, however it dies (SIGKILL included), every guard
//! reads EOF and stops its `run` and everything under it. A clean stop (Ctrl-C,
//! SIGTERM) sends SIGTERM to each `run`, which stops its app, then its sidecar.
//!
//! Output, as the Dapr CLI writes it in run-file mode: an app's lines are prefixed
//! `== APP - <appID> == ` and go to the console, to
//! `<appDirPath>/.dapr/logs/<appID>_app_<timestamp>.log`, or both
//! (`appLogDestination`); the sidecar's lines go to `<appID>_daprd_<timestamp>.log`
//! and/or the console, prefixed `== DAPR - <appID> == ` there so that the two apps'
//! sidecars can be told apart. Colour codes are kept out of the files.
//!
//! One app ending does not stop the others (as with Dapr); `run -f` ends when every app
//! has ended, or on Ctrl-C/SIGTERM, which stops them all.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tandem_nameresolution::{Entry, list as registered};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{AppSpec, LogDestination, RunFile};
use crate::guard::{self, APP_GRACE};
use crate::sidecar::tandem_home;

/// How long an app's `run` gets to stop its app and its sidecar after SIGTERM before its
/// guard is told to stop everything.
const STOP_PATIENCE: Duration = Duration::from_secs(15);

/// How long the guard gets after that, before it is killed.
const GUARD_PATIENCE: Duration = Duration::from_secs(5);

/// How often the registry is read while an app's sidecar starts.
const POLL: Duration = Duration::from_millis(50);

/// What the Dapr CLI prints before its lines.
const INFO: &str = "ℹ️  ";
const SUCCESS: &str = "✅  ";
const WARNING: &str = "⚠  ";
const FAILURE: &str = "❌  ";

/// `tandem run -f FILE`.
pub async fn run(given: &Path) -> u8 {
    let file = match RunFile::read(given) {
        Ok(file) => file,
        Err(error) => {
            tracing::error!("{error}");
            return 1;
        }
    };
    for warning in &file.warnings {
        tracing::warn!("{warning}");
    }
    let program = crate::run::this_program();
    let stop = CancellationToken::new();
    let mut running = JoinSet::new();
    let mut failed = false;
    for spec in file.apps {
        println!(
            "{INFO}Validating config and starting app \"{}\"",
            spec.app_id
        );
        if spec.command.is_empty() {
            println!(
                "{WARNING}No application command found for app \"{}\" present in {}",
                spec.app_id, file.shown
            );
        }
        match Launched::start(&program, spec) {
            Ok(app) => {
                running.spawn(app.supervise(stop.clone()));
            }
            Err(error) => {
                tracing::error!("{error}");
                failed = true;
                break;
            }
        }
    }
    let mut codes = Vec::new();
    let mut signalled = false;
    if !failed {
        loop {
            tokio::select! {
                ended = running.join_next() => match ended {
                    Some(Ok(code)) => codes.push(code),
                    Some(Err(error)) => {
                        tracing::error!("an app's supervisor failed: {error}");
                        codes.push(1);
                    }
                    None => break,
                },
                () = crate::sidecar::stop_signal() => {
                    println!();
                    println!("{INFO}Received signal to stop Dapr and app processes. Shutting down Dapr and app processes.");
                    signalled = true;
                    break;
                }
            }
        }
    }
    stop.cancel();
    while let Some(ended) = running.join_next().await {
        codes.push(ended.unwrap_or(1));
    }
    // Stopped on request: a success, whatever the apps answered, as with Dapr; ended on
    // their own: a failure if one of them failed.
    u8::from(failed || (!signalled && codes.iter().any(|code| *code != 0)))
}

/// Where one stream of an app's lines goes.
#[derive(Clone)]
struct Sink {
    /// Printed before a line on the console.
    console: Option<String>,
    /// The log file, and what goes before a line there.
    file: Option<(Arc<File>, String)>,
}

impl Sink {
    fn open(
        spec: &AppSpec,
        kind: &str,
        destination: LogDestination,
        console_prefix: String,
        file_prefix: String,
        stamp: &str,
    ) -> Result<(Self, Option<PathBuf>), String> {
        let file = if destination.to_file() {
            let dir = spec.logs_dir();
            std::fs::create_dir_all(&dir).map_err(|error| {
                format!(
                    "app \"{}\": cannot create the log folder {}: {error}",
                    spec.app_id,
                    dir.display()
                )
            })?;
            let path = dir.join(format!("{}_{kind}_{stamp}.log", spec.app_id));
            let file = File::create(&path).map_err(|error| {
                format!(
                    "app \"{}\": cannot create the log file {}: {error}",
                    spec.app_id,
                    path.display()
                )
            })?;
            Some((Arc::new(file), path))
        } else {
            None
        };
        let path = file.as_ref().map(|(_, path)| path.clone());
        Ok((
            Self {
                console: destination.to_console().then_some(console_prefix),
                file: file.map(|(file, _)| (file, file_prefix)),
            },
            path,
        ))
    }

    /// One line to the console (stdout, as the Dapr CLI writes everything there) and/or
    /// the file, each in a single write so that lines of several apps never interleave.
    fn line(&self, line: &str) {
        if let Some(prefix) = &self.console {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{prefix}{line}");
        }
        if let Some((file, prefix)) = &self.file {
            let text = format!("{prefix}{}\n", strip_colours(line));
            let _ = (&**file).write_all(text.as_bytes());
        }
    }
}

/// One app of the run file, started.
struct Launched {
    spec: AppSpec,
    guard: Child,
    /// The write end of the guard's stdin: dropping it (or this process dying) makes the
    /// guard stop the app's `run` and everything under it.
    lifeline: Option<ChildStdin>,
    app: Sink,
    daprd: Sink,
    logs: Vec<PathBuf>,
    readers: JoinSet<()>,
}

impl Launched {
    fn start(program: &Path, spec: AppSpec) -> Result<Self, String> {
        let stamp = timestamp();
        let id = &spec.app_id;
        let (daprd, daprd_log) = Sink::open(
            &spec,
            "daprd",
            spec.daprd_log,
            format!("== DAPR - {id} == "),
            String::new(),
            &stamp,
        )?;
        let (app, app_log) = if spec.command.is_empty() {
            // No app: nothing of it to log.
            (daprd.clone(), None)
        } else {
            let prefix = format!("== APP - {id} == ");
            Sink::open(&spec, "app", spec.app_log, prefix.clone(), prefix, &stamp)?
        };
        let mut command = Command::new(program);
        command
            .arg0("tandem")
            .arg("__guard")
            .arg("--")
            .arg(program)
            .arg(spec.subcommand())
            .args(spec.args());
        if !spec.command.is_empty() {
            command.arg("--").args(&spec.command);
        }
        command
            .current_dir(&spec.dir)
            .envs(&spec.env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group: Ctrl-C at the terminal reaches `run -f` alone, which stops
            // the apps in order.
            .process_group(0);
        let mut guard = command
            .spawn()
            .map_err(|error| format!("app \"{id}\": cannot start it: {error}"))?;
        let mut readers = JoinSet::new();
        if let Some(stdout) = guard.stdout.take() {
            readers.spawn(pump(stdout, app.clone(), daprd.clone(), id.clone()));
        }
        if let Some(stderr) = guard.stderr.take() {
            readers.spawn(pump(stderr, app.clone(), daprd.clone(), id.clone()));
        }
        Ok(Self {
            lifeline: guard.stdin.take(),
            guard,
            app,
            daprd,
            logs: [daprd_log, app_log].into_iter().flatten().collect(),
            readers,
            spec,
        })
    }

    /// Runs until the app ends, or `stop` fires; returns the app's exit code.
    async fn supervise(mut self, stop: CancellationToken) -> u8 {
        let mut child = None;
        let mut announced = false;
        let started = Instant::now();
        let code = loop {
            tokio::select! {
                status = self.guard.wait() => {
                    break match status.ok().and_then(|status| status.code()) {
                        Some(code) => u8::try_from(code).unwrap_or(1),
                        None => 1,
                    };
                }
                () = stop.cancelled() => {
                    break self.stop(child).await;
                }
                () = tokio::time::sleep(POLL), if !announced => {
                    if child.is_none() {
                        child = self.guard.id().and_then(guard::app_of);
                    }
                    if let Some(pid) = child
                        && let Some(entry) = registered(&tandem_home())
                            .into_iter()
                            .find(|entry| entry.pid == pid)
                    {
                        self.announce(&entry, started.elapsed());
                        announced = true;
                    }
                }
            }
        };
        // What is left in the pipes; the guard has stopped every process that held them.
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while self.readers.join_next().await.is_some() {}
        })
        .await;
        let what = if self.spec.command.is_empty() {
            "Dapr"
        } else {
            "App"
        };
        let sink = &self.app;
        if code == 0 {
            sink.line(&format!("{SUCCESS}Exited {what} successfully"));
        } else {
            sink.line(&format!(
                "{FAILURE}The {what} process exited with error code: exit status {code}"
            ));
        }
        code
    }

    /// Says where the app's sidecar listens and where its logs go, once it is up.
    fn announce(&self, entry: &Entry, took: Duration) {
        println!(
            "{INFO}Started Dapr with app id \"{}\". HTTP Port: {}. gRPC Port: {}",
            self.spec.app_id, entry.http_port, entry.grpc_port
        );
        if !self.logs.is_empty() {
            println!(
                "{INFO}Writing log files to directory : {}",
                self.spec.logs_dir().display()
            );
        }
        tracing::debug!(app_id = %self.spec.app_id, "sidecar up in {took:?}");
        self.daprd.line(&format!(
            "{SUCCESS}You're up and running! Dapr logs will appear here."
        ));
    }

    /// SIGTERM to the app's `run` (which stops its app, then its sidecar); if it is not
    /// gone in time, the lifeline is closed (its guard stops everything under it), and
    /// at last the guard and the `run`'s group are killed.
    async fn stop(&mut self, child: Option<u32>) -> u8 {
        let child = child.or_else(|| self.guard.id().and_then(guard::app_of));
        if let Some(pid) = child.and_then(|pid| i32::try_from(pid).ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            if let Ok(Ok(status)) = tokio::time::timeout(STOP_PATIENCE, self.guard.wait()).await {
                return status
                    .code()
                    .map_or(1, |code| u8::try_from(code).unwrap_or(1));
            }
        }
        drop(self.lifeline.take());
        if let Ok(Ok(status)) =
            tokio::time::timeout(APP_GRACE + GUARD_PATIENCE, self.guard.wait()).await
        {
            return status
                .code()
                .map_or(1, |code| u8::try_from(code).unwrap_or(1));
        }
        tracing::warn!(app_id = %self.spec.app_id, "the app's guard did not stop it in time; killing it");
        let _ = self.guard.start_kill();
        let _ = self.guard.wait().await;
        if let Some(pid) = child.and_then(|pid| i32::try_from(pid).ok()) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        1
    }
}

/// Copies one of a child's streams: lines of its app (`== APP == ` from the child
/// `run`) to the app's sink, the guard's notes to this process's log, the rest — the
/// sidecar's log — to the sidecar's sink. Bytes that are not UTF-8 are replaced, never
/// a reason to stop reading (a full pipe would block the app).
async fn pump(output: impl AsyncRead + Unpin, app: Sink, daprd: Sink, app_id: String) {
    let mut reader = BufReader::new(output);
    let mut buffer = Vec::new();
    loop {
        buffer.clear();
        match reader.read_until(b'\n', &mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&buffer);
        let line = text.trim_end_matches(['\n', '\r']);
        if let Some(rest) = line.strip_prefix("== APP == ") {
            app.line(rest);
        } else if let Some(note) = line.strip_prefix(guard::NOTE) {
            tracing::warn!(app_id = %app_id, "{note}");
        } else {
            daprd.line(line);
        }
    }
}

/// `20060102150405` as the Dapr CLI names log files (in UTC here: tandem does not read
/// the local time zone).
fn timestamp() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

/// The line without ANSI escape sequences (colours), as the Dapr CLI writes log files.
fn strip_colours(line: &str) -> std::borrow::Cow<'_, str> {
    if !line.contains('\u{1b}') {
        return line.into();
    }
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        if chars.next_if_eq(&'[').is_some() {
            // CSI: parameters and intermediates, then one final byte in @..~.
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        } else {
            chars.next();
        }
    }
    out.into()
}

/// `tandem stop -f FILE`: stops every app the run file lists that runs on this machine.
pub async fn stop(given: &Path, timeout: Duration) -> u8 {
    let file = match RunFile::read(given) {
        Ok(file) => file,
        Err(error) => {
            eprintln!("{error}");
            return 1;
        }
    };
    let home = tandem_home();
    let me = std::process::id();
    let ids: Vec<&str> = file.apps.iter().map(|app| app.app_id.as_str()).collect();
    let instances: Vec<Entry> = registered(&home)
        .into_iter()
        .filter(|entry| ids.contains(&entry.app_id.as_str()) && entry.pid != me)
        .collect();
    if instances.is_empty() {
        eprintln!(
            "no app of {} is running on this machine (tandem list shows the running ones)",
            file.shown
        );
        return 1;
    }
    let mut stopping = Vec::new();
    let mut failed = false;
    for entry in instances {
        match entry.terminate() {
            Ok(true) => stopping.push(entry),
            Ok(false) => {}
            Err(error) => {
                eprintln!(
                    "cannot stop app '{}' (pid {}): {error}",
                    entry.app_id, entry.pid
                );
                failed = true;
            }
        }
    }
    let deadline = Instant::now() + timeout;
    while stopping.iter().any(Entry::is_alive) && Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
    }
    for entry in &stopping {
        if entry.is_alive() {
            eprintln!(
                "app '{}' (pid {}) is still running after {} s; `kill -9 {}` ends it at once",
                entry.app_id,
                entry.pid,
                timeout.as_secs(),
                entry.pid
            );
            failed = true;
        } else {
            println!("app '{}' stopped (pid {})", entry.app_id, entry.pid);
        }
    }
    let _ = registered(&home);
    if !failed {
        println!("{SUCCESS}Dapr and app processes stopped successfully");
    }
    u8::from(failed)
}

#[cfg(test)]
mod tests {
    use super::strip_colours;

    #[test]
    fn colours_are_kept_out_of_files() {
        assert_eq!(strip_colours("plain"), "plain");
        assert_eq!(
            strip_colours("\u{1b}[34m== APP == hi\u{1b}[0m"),
            "== APP == hi"
        );
        assert_eq!(strip_colours("a\u{1b}[1;31mb\u{1b}"), "ab");
    }
}
