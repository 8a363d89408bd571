//! `tandem run`: the sidecar in this process, the app as a child with the sidecar's
//! ports in its environment and its output prefixed `== APP == `.
//!
//! The app gets its own process group, so stopping it also stops what it started
//! (`npm start` → node, a shell script → its commands). Ctrl-C or SIGTERM stops the app,
//! then the sidecar; when the app exits on its own, the sidecar stops and `run` exits
//! with the app's code.

use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use crate::cli::RunArgs;
use crate::sidecar::{self, Sidecar};

/// How long the app gets to exit after SIGTERM before it is killed.
const APP_GRACE: Duration = Duration::from_secs(5);

pub async fn run(args: RunArgs) -> u8 {
    sidecar::init_logging(&args.sidecar.log_level);
    let stop = CancellationToken::new();
    let sidecar = match sidecar::start(&args.sidecar, stop.clone()).await {
        Ok(sidecar) => sidecar,
        Err(error) => {
            tracing::error!("{error}");
            return 1;
        }
    };
    let mut sidecar = sidecar;
    let mut app = match spawn_app(&args, &sidecar) {
        Ok(app) => app,
        Err(error) => {
            tracing::error!("{error}");
            stop.cancel();
            sidecar.stopped().await;
            return 1;
        }
    };
    if let Some(registration) = &mut sidecar.registration {
        let (command, pid) = (args.command.join(" "), app.id());
        if let Err(error) = registration.update(|entry| {
            entry.command = Some(command);
            entry.app_pid = pid;
        }) {
            tracing::debug!("could not record the app in the registry: {error}");
        }
    }
    let code = tokio::select! {
        status = app.wait() => {
            let code = status.ok().and_then(|status| status.code()).unwrap_or(1);
            tracing::info!("the app exited with code {code}; stopping the sidecar");
            code
        }
        _ = sidecar::stop_signal() => {
            tracing::info!("stopping the app, then the sidecar");
            stop_app(&mut app).await;
            0
        }
        _ = stop.cancelled() => {
            tracing::info!("the sidecar is stopping; stopping the app");
            stop_app(&mut app).await;
            0
        }
    };
    stop.cancel();
    sidecar.stopped().await;
    u8::try_from(code).unwrap_or(1)
}

fn spawn_app(args: &RunArgs, sidecar: &Sidecar) -> Result<Child, String> {
    let (program, rest) = args
        .command
        .split_first()
        .ok_or("no app command given after `--`")?;
    let mut command = Command::new(program);
    command
        .args(rest)
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
        // The app has its own process group; reading the terminal from it would stop it.
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(port) = args.sidecar.app_port {
        command.env("APP_PORT", port.to_string());
    }
    let mut child = command
        .spawn()
        .map_err(|error| format!("cannot start the app `{program}`: {error}"))?;
    if let Some(stdout) = child.stdout.take() {
        tokio::spawn(prefix_lines(stdout, false));
    }
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(prefix_lines(stderr, true));
    }
    Ok(child)
}

/// Copies the app's output line by line with the `== APP == ` prefix.
async fn prefix_lines(output: impl AsyncRead + Unpin, to_stderr: bool) {
    let mut lines = BufReader::new(output).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if to_stderr {
            eprintln!("== APP == {line}");
        } else {
            println!("== APP == {line}");
        }
    }
}

/// SIGTERM to the app's process group, SIGKILL if it is still there after the grace.
async fn stop_app(app: &mut Child) {
    let Some(pid) = app.id() else { return };
    let group = Pid::from_raw(pid as i32);
    let _ = killpg(group, Signal::SIGTERM);
    if tokio::time::timeout(APP_GRACE, app.wait()).await.is_err() {
        tracing::warn!("the app did not stop within {APP_GRACE:?}; killing it");
        let _ = killpg(group, Signal::SIGKILL);
        let _ = app.wait().await;
    }
}
