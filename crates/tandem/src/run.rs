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
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio_util::sync::CancellationToken;

use tandem_runtime::Runtime;

use crate::cli::RunArgs;
use crate::guard::{self, APP_GRACE};
use crate::sidecar::{self, Sidecar};
use crate::status::{self, Status};

/// How much longer than the app's grace `run` waits for the guard to finish stopping it.
const GUARD_PATIENCE: Duration = Duration::from_secs(5);

/// How long `run` waits for the app's last output lines once it has exited.
const OUTPUT_PATIENCE: Duration = Duration::from_secs(1);

/// How often `run` looks whether the app and the sidecar are up, for the readiness line.
const POLL: Duration = Duration::from_millis(50);

/// How long `run` looks for the app's pid once the guard has started.
const LOCATE_PATIENCE: Duration = Duration::from_secs(2);

pub async fn run(args: RunArgs) -> u8 {
    sidecar::init_logging_with(&args.sidecar.log_level, args.sidecar.log_as_json);
    status::log_as_json(args.sidecar.log_as_json);
    if let Some(file) = &args.run_file {
        return crate::runfile::launch::run(file).await;
    }
    if let Some(path) = &args.runtime_path {
        tracing::debug!(
            "--runtime-path {} accepted: tandem is its own runtime",
            path.display()
        );
    }
    if args.command.is_empty() {
        status::say_bold("WARNING: no application command found.");
    }
    let stop = CancellationToken::new();
    let mut sidecar = match sidecar::start(&args.sidecar, stop.clone()).await {
        Ok(sidecar) => sidecar,
        Err(error) => {
            tracing::error!("{error:#}");
            return 1;
        }
    };
    let app_id = sidecar.runtime.app_id().to_owned();
    match &args.sidecar.unix_domain_socket {
        Some(dir) => status::say(
            Status::Info,
            &format!(
                "Starting Dapr with id {app_id}. HTTP Socket: {}. gRPC Socket: {}.",
                sidecar::socket_path(dir, &app_id, "http").display(),
                sidecar::socket_path(dir, &app_id, "grpc").display()
            ),
        ),
        None => status::say(
            Status::Info,
            &format!(
                "Starting Dapr with id {app_id}. HTTP Port: {}. gRPC Port: {}",
                sidecar.http_port, sidecar.grpc_port
            ),
        ),
    }
    if args.command.is_empty() {
        return sidecar_alone(sidecar, &stop).await;
    }
    let mut app = match App::start(&args, &sidecar) {
        Ok(app) => app,
        Err(error) => {
            status::say(Status::Failure, &error);
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
    let up = announce_when_up(sidecar.runtime.clone(), stop.clone());
    tokio::pin!(up);
    let mut announced = false;
    let code = loop {
        tokio::select! {
            _ = &mut up, if !announced => announced = true,
            code = app.exited() => {
                tracing::info!("the app exited with code {code}; stopping the sidecar");
                break code;
            }
            _ = sidecar::stop_signal() => {
                status::say(Status::Info, "terminated signal received: shutting down");
                app.stop().await;
                status::say(Status::Success, "Exited App successfully");
                break 0;
            }
            _ = stop.cancelled() => {
                tracing::info!("the sidecar is stopping; stopping the app");
                app.stop().await;
                status::say(Status::Success, "Exited App successfully");
                break 0;
            }
        }
    };
    stop.cancel();
    sidecar.stopped().await;
    status::say(Status::Success, "Exited Dapr successfully");
    code
}

/// `run` without an app command: the sidecar alone, until stopped (`dapr run --app-id
/// x` does the same; the app, if any, is started some other way).
async fn sidecar_alone(sidecar: Sidecar, stop: &CancellationToken) -> u8 {
    status::say(
        Status::Success,
        "You're up and running! Dapr logs will appear here.\n",
    );
    tokio::select! {
        _ = sidecar::stop_signal() => {
            status::say(Status::Info, "terminated signal received: shutting down");
        }
        _ = stop.cancelled() => {}
    }
    stop.cancel();
    sidecar.stopped().await;
    status::say(Status::Success, "Exited Dapr successfully");
    0
}

/// Prints Dapr's readiness line once the app and the sidecar are both up: the app's
/// port accepts connections (when it has one) and the sidecar has finished its start
/// (subscriptions read from an HTTP app).
async fn announce_when_up(runtime: Arc<Runtime>, stop: CancellationToken) {
    let config = runtime.config();
    if let Some(port) = config.app_port {
        let address = format!("{}:{port}", config.app_host);
        while tokio::net::TcpStream::connect(&address).await.is_err() {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }
    while !runtime.is_ready() {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(POLL) => {}
        }
    }
    status::say(
        Status::Success,
        "You're up and running! Both Dapr and your app logs will appear here.\n",
    );
}

/// The app, through its guard.
struct App {
    guard: Child,
    /// The write end of the guard's stdin. Closing it — here, or by the kernel when this
    /// process dies — tells the guard to stop the app.
    lifeline: Option<ChildStdin>,
    /// The app's pid, which is also its process group's id, once found.
    pid: Option<u32>,
    /// The tasks copying the app's output.
    output: Vec<tokio::task::JoinHandle<()>>,
}

impl App {
    /// Starts the guard, which starts the app; the guard's output is the app's.
    fn start(args: &RunArgs, sidecar: &Sidecar) -> Result<Self, String> {
        let config = sidecar.runtime.config();
        let mut command = Command::new(this_program());
        command
            .arg0("tandem")
            .arg("__guard")
            .arg("--")
            .args(&args.command)
            // Exactly what `dapr run` adds to the app's environment; the API tokens,
            // when set, are in `run`'s own environment and so in the app's.
            .env("APP_ID", sidecar.runtime.app_id())
            .env("APP_CHANNEL_ADDRESS", &config.app_host)
            .env("APP_PROTOCOL", &config.app_protocol)
            .env("DAPR_HTTP_PORT", sidecar.http_port.to_string())
            .env("DAPR_GRPC_PORT", sidecar.grpc_port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group: Ctrl-C at the terminal reaches `run` alone, which stops the
            // app in order, app first, then the sidecar.
            .process_group(0);
        if let Some(port) = config.app_port {
            command.env("APP_PORT", port.to_string());
        }
        if sidecar.metrics_port != 0 {
            command.env("DAPR_METRICS_PORT", sidecar.metrics_port.to_string());
        }
        let mut guard = command
            .spawn()
            .map_err(|error| format!("cannot start the app's guard: {error}"))?;
        let mut output = Vec::new();
        if let Some(stdout) = guard.stdout.take() {
            output.push(tokio::spawn(prefix_lines(stdout, false)));
        }
        if let Some(stderr) = guard.stderr.take() {
            output.push(tokio::spawn(prefix_lines(stderr, true)));
        }
        Ok(Self {
            lifeline: guard.stdin.take(),
            guard,
            pid: None,
            output,
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

    /// Resolves when the app has exited, with its exit code, and its last lines are out.
    async fn exited(&mut self) -> u8 {
        let status = self.guard.wait().await;
        let code = match status.as_ref().ok().and_then(ExitStatus::code) {
            // The guard exits with the app's code once it has stopped what the app left.
            Some(code) => u8::try_from(code).unwrap_or(1),
            None => {
                self.guard_died(status).await;
                1
            }
        };
        self.output_copied().await;
        code
    }

    /// Waits for the app's last lines to be copied out: its pipes close once the guard
    /// has stopped everything the app started.
    async fn output_copied(&mut self) {
        for task in self.output.drain(..) {
            let _ = tokio::time::timeout(OUTPUT_PATIENCE, task).await;
        }
    }

    /// Stops the app: closes the lifeline, and waits for the guard to stop it.
    async fn stop(&mut self) {
        self.stop_now().await;
        self.output_copied().await;
    }

    async fn stop_now(&mut self) {
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
