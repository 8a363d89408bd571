//! `tandem run`: the sidecar in this process, the app next to it with the sidecar's
//! ports in its environment and its output prefixed `== APP == `.
//!
//! The app is started by a guard (`tandem __guard`, see `guard.rs`) that ties its life
//! to this process: when `run` ends — stopped, or killed by any signal, SIGKILL
//! included — the app and everything it started stop too. Ctrl-C, SIGTERM, `tandem
//! stop` or `POST /v1.0/shutdown` stop the app (SIGTERM to its process group, a grace,
//! then SIGKILL), then the sidecar; when the app exits on its own, what it left running
//! is stopped, the sidecar stops, and `run` exits with the app's code.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio_util::sync::CancellationToken;

use crate::cli::RunArgs;
use crate::guard::{self, APP_GRACE};
use crate::sidecar::{self, Sidecar};

/// How much longer than the app's grace `run` waits for the guard to finish stopping it.
const GUARD_PATIENCE: Duration = Duration::from_secs(5);

/// How long `run` looks for the app's pid once the guard has started.
const LOCATE_PATIENCE: Duration = Duration::from_secs(2);

pub async fn run(args: RunArgs) -> u8 {
    sidecar::init_logging(&args.sidecar.log_level);
    if let Some(file) = &args.run_file {
        return crate::runfile::launch::run(file).await;
    }
    let stop = CancellationToken::new();
    let sidecar = match sidecar::start(&args.sidecar, stop.clone()).await {
        Ok(sidecar) => sidecar,
        Err(error) => {
            tracing::error!("{error:#}");
            return 1;
        }
    };
    let mut sidecar = sidecar;
    let mut app = match App::start(&args, &sidecar) {
        Ok(app) => app,
        Err(error) => {
            tracing::error!("{error}");
            stop.cancel();
            sidecar.stopped().await;
            return 1;
        }
    };
    app.locate().await;
    if let Some(registration) = &mut sidecar.registration {
        let (command, pid) = (args.command.join(" "), app.pid);
        if let Err(error) = registration.update(|entry| {
            entry.command = Some(command);
            entry.app_pid = pid;
        }) {
            tracing::debug!("could not record the app in the registry: {error}");
        }
    }
    let code = tokio::select! {
        code = app.exited() => {
            tracing::info!("the app exited with code {code}; stopping the sidecar");
            code
        }
        _ = sidecar::stop_signal() => {
            tracing::info!("stopping the app, then the sidecar");
            app.stop().await;
            0
        }
        _ = stop.cancelled() => {
            tracing::info!("the sidecar is stopping; stopping the app");
            app.stop().await;
            0
        }
    };
    stop.cancel();
    sidecar.stopped().await;
    code
}

/// The app, through its guard.
struct App {
    guard: Child,
    /// The write end of the guard's stdin. Closing it — here, or by the kernel when this
    /// process dies — tells the guard to stop the app.
    lifeline: Option<ChildStdin>,
    /// The app's pid, which is also its process group's id, once found.
    pid: Option<u32>,
}

impl App {
    /// Starts the guard, which starts the app; the guard's output is the app's.
    fn start(args: &RunArgs, sidecar: &Sidecar) -> Result<Self, String> {
        if args.command.is_empty() {
            return Err("no app command given after `--`".into());
        }
        let mut command = Command::new(this_program());
        command
            .arg0("tandem")
            .arg("__guard")
            .arg("--")
            .args(&args.command)
            .env("APP_ID", sidecar.runtime.app_id())
            .env("APP_PROTOCOL", &args.sidecar.app_protocol)
            .env("DAPR_HTTP_PORT", sidecar.http_port.to_string())
            .env("DAPR_GRPC_PORT", sidecar.grpc_port.to_string())
            .env(
                "DAPR_GRPC_ENDPOINT",
                format!("http://127.0.0.1:{}", sidecar.grpc_port),
            )
            .env(
                "DAPR_HTTP_ENDPOINT",
                format!("http://127.0.0.1:{}", sidecar.http_port),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group: Ctrl-C at the terminal reaches `run` alone, which stops the
            // app in order, app first, then the sidecar.
            .process_group(0);
        if let Some(port) = args.sidecar.app_port {
            command.env("APP_PORT", port.to_string());
        }
        let mut guard = command
            .spawn()
            .map_err(|error| format!("cannot start the app's guard: {error}"))?;
        if let Some(stdout) = guard.stdout.take() {
            tokio::spawn(prefix_lines(stdout, false));
        }
        if let Some(stderr) = guard.stderr.take() {
            tokio::spawn(prefix_lines(stderr, true));
        }
        Ok(Self {
            lifeline: guard.stdin.take(),
            guard,
            pid: None,
        })
    }

    /// Finds the app's pid (for `tandem list`, and to stop its group should the guard
    /// die): the guard's child leading its own group.
    async fn locate(&mut self) {
        let Some(guard) = self.guard.id() else { return };
        let deadline = Instant::now() + LOCATE_PATIENCE;
        while Instant::now() < deadline {
            if let Some(pid) = guard::app_of(guard) {
                self.pid = Some(pid);
                return;
            }
            if matches!(self.guard.try_wait(), Ok(Some(_))) {
                return; // the app could not start, or was quick
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tracing::debug!("the app's pid was not found; `tandem list` will not show it");
    }

    /// Resolves when the app has exited, with its exit code.
    async fn exited(&mut self) -> u8 {
        let status = self.guard.wait().await;
        match status.as_ref().ok().and_then(ExitStatus::code) {
            // The guard exits with the app's code once it has stopped what the app left.
            Some(code) => u8::try_from(code).unwrap_or(1),
            None => {
                self.guard_died(status).await;
                1
            }
        }
    }

    /// Stops the app: closes the lifeline, and waits for the guard to stop it.
    async fn stop(&mut self) {
        drop(self.lifeline.take());
        match tokio::time::timeout(APP_GRACE + GUARD_PATIENCE, self.guard.wait()).await {
            Ok(Ok(status)) if status.code().is_some() => {}
            Ok(status) => self.guard_died(status).await,
            Err(_) => {
                tracing::warn!("the app's guard did not stop it in time; killing both");
                let _ = self.guard.start_kill();
                let _ = self.guard.wait().await;
                self.stop_group(Duration::ZERO).await;
            }
        }
    }

    /// The guard was killed: the app is on its own, stop its process group from here.
    async fn guard_died(&mut self, status: std::io::Result<ExitStatus>) {
        let status = status.map_or_else(|error| error.to_string(), |status| status.to_string());
        tracing::warn!("the app's guard ended ({status}); stopping the app's process group");
        self.stop_group(APP_GRACE).await;
    }

    /// SIGTERM to the app's group, `grace` to exit, then SIGKILL.
    async fn stop_group(&self, grace: Duration) {
        let Some(pid) = self.pid else { return };
        let group = Pid::from_raw(pid as i32);
        let alive = || !matches!(killpg(group, None), Err(Errno::ESRCH));
        if !grace.is_zero() {
            let _ = killpg(group, Signal::SIGTERM);
            let deadline = Instant::now() + grace;
            while alive() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        if alive() {
            let _ = killpg(group, Signal::SIGKILL);
        }
    }
}

/// This program, to start it again as the guard: its path while that is still this very
/// file (so that `ps` and `pgrep` name the guard `tandem`), else `/proc/self/exe`, which
/// still reaches it when it was replaced or deleted since `run` started (a rebuild, an
/// upgrade): the guard is always the same version as `run`.
pub(crate) fn this_program() -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let proc_self = PathBuf::from("/proc/self/exe");
    let Ok(running) = std::fs::metadata(&proc_self) else {
        return std::env::current_exe().unwrap_or_else(|_| PathBuf::from("tandem"));
    };
    std::env::current_exe()
        .ok()
        .filter(|path| {
            std::fs::metadata(path)
                .is_ok_and(|file| (file.dev(), file.ino()) == (running.dev(), running.ino()))
        })
        .unwrap_or(proc_self)
}

/// Copies the app's output line by line with the `== APP == ` prefix; the guard's own
/// notes (on stderr) are logged instead.
async fn prefix_lines(output: impl AsyncRead + Unpin, to_stderr: bool) {
    let mut lines = BufReader::new(output).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if to_stderr {
            match line.strip_prefix(guard::NOTE) {
                Some(note) => tracing::warn!("{note}"),
                None => eprintln!("== APP == {line}"),
            }
        } else {
            println!("== APP == {line}");
        }
    }
}
