//! What is fuzzed: two real `tandem sidecar` processes on free loopback ports, their
//! stderr captured to files, over a resources folder of components that need no outside
//! service, and an echo app in this process behind both.
//!
//! `fuzz-app`'s sidecar takes the cases; `fuzz-peer`'s sidecar (same echo app) is there
//! so invocations of `fuzz-peer` travel sidecar to sidecar over the internal port.

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use tempfile::TempDir;

use crate::case::HttpRequest;
use crate::send::{self, Answer};
use crate::world::{self, World};

/// Why the run could not start.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("cannot prepare the scratch folder {}: {source}", path.display())]
    Scratch {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot find a free loopback port: {0}")]
    Port(#[source] io::Error),
    #[error("the echo app cannot listen: {0}")]
    Echo(#[source] io::Error),
    #[error("cannot start {}: {source}", program.display())]
    Spawn {
        program: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "sidecar {app_id} did not become ready within {seconds} s; its stderr ends with:\n{tail}"
    )]
    NotReady {
        app_id: &'static str,
        seconds: u64,
        tail: String,
    },
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> Result<u16, TargetError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(TargetError::Port)
}

/// One `tandem sidecar` process.
pub struct Sidecar {
    pub app_id: &'static str,
    pub http: u16,
    pub grpc: u16,
    pub internal: u16,
    child: Child,
    /// This process's stderr (and stdout) files; every start gets new ones.
    pub stderr: PathBuf,
    pub stdout: PathBuf,
}

impl Sidecar {
    /// `None` while it runs; how it ended otherwise.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(None) => None,
            Ok(Some(status)) => Some(status.to_string()),
            Err(error) => Some(format!("cannot tell: {error}")),
        }
    }

    fn stop(&mut self) {
        // Only the process this run started, by its own id.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The two sidecars, the echo app and the scratch folder.
pub struct Target {
    pub world: World,
    pub main: Sidecar,
    pub peer: Sidecar,
    tandem: PathBuf,
    dir: TempDir,
    echo: tokio::task::JoinHandle<()>,
    starts: u32,
    /// Every stderr/stdout file written so far (restarts add files).
    pub logs: Vec<PathBuf>,
}

impl Drop for Target {
    fn drop(&mut self) {
        self.echo.abort();
    }
}

impl Target {
    /// Writes the resources, starts the echo app and both sidecars, and waits until both
    /// answer `/v1.0/healthz`.
    pub async fn start(tandem: &Path) -> Result<Self, TargetError> {
        // The sidecars run in the scratch folder: a relative path would not find the binary.
        let tandem = &std::path::absolute(tandem).map_err(|source| TargetError::Spawn {
            program: tandem.to_owned(),
            source,
        })?;
        let dir = tempfile::Builder::new()
            .prefix("tandem-fuzz-")
            .tempdir()
            .map_err(|source| TargetError::Scratch {
                path: std::env::temp_dir(),
                source,
            })?;
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(TargetError::Echo)?;
        let echo_port = listener.local_addr().map_err(TargetError::Echo)?.port();
        let echo = tokio::spawn(async move {
            let _ = axum::serve(listener, echo_app()).await;
        });
        let world = World {
            echo_port,
            closed_port: free_port()?,
        };
        write_resources(dir.path(), &world).map_err(|source| TargetError::Scratch {
            path: dir.path().to_owned(),
            source,
        })?;
        let mut logs = Vec::new();
        let main = spawn(tandem, dir.path(), world::APP_ID, echo_port, 0, &mut logs)?;
        let peer = spawn(
            tandem,
            dir.path(),
            world::PEER_APP_ID,
            echo_port,
            0,
            &mut logs,
        )?;
        let mut target = Self {
            world,
            main,
            peer,
            tandem: tandem.to_owned(),
            dir,
            echo,
            starts: 0,
            logs,
        };
        target.wait_ready().await?;
        Ok(target)
    }

    /// The scratch folder (resources, logs, the SQLite file).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Keeps the scratch folder after the run (its logs, resources and SQLite file).
    pub fn keep(&mut self) {
        self.dir.disable_cleanup(true);
    }

    /// Stops both sidecars and starts them again on new ports, with new log files:
    /// after a panic, so what one case broke does not fail the cases after it.
    pub async fn restart(&mut self) -> Result<(), TargetError> {
        self.starts += 1;
        self.main.stop();
        self.peer.stop();
        let port = self.world.echo_port;
        self.main = spawn(
            &self.tandem,
            self.dir.path(),
            world::APP_ID,
            port,
            self.starts,
            &mut self.logs,
        )?;
        self.peer = spawn(
            &self.tandem,
            self.dir.path(),
            world::PEER_APP_ID,
            port,
            self.starts,
            &mut self.logs,
        )?;
        self.wait_ready().await
    }

    async fn wait_ready(&mut self) -> Result<(), TargetError> {
        const SECONDS: u64 = 30;
        let deadline = Instant::now() + Duration::from_secs(SECONDS);
        for sidecar in [&mut self.main, &mut self.peer] {
            loop {
                if healthy(sidecar.http).await {
                    break;
                }
                if sidecar.exited().is_some() || Instant::now() > deadline {
                    return Err(TargetError::NotReady {
                        app_id: sidecar.app_id,
                        seconds: SECONDS,
                        tail: tail(&sidecar.stderr, 2000),
                    });
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
        Ok(())
    }
}

/// Whether `GET /v1.0/healthz` answers 204.
pub async fn healthy(port: u16) -> bool {
    let request = HttpRequest {
        method: b"GET".to_vec(),
        target: b"/v1.0/healthz".to_vec(),
        headers: Vec::new(),
        body: Bytes::new(),
    };
    matches!(
        send::http(port, &request, Duration::from_secs(2)).await,
        Answer::Http(answer) if answer.status == 204
    )
}

/// The last `bytes` of a file, as text.
pub fn tail(path: &Path, bytes: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let start = text.len().saturating_sub(bytes);
    String::from_utf8_lossy(&text[start..]).into_owned()
}

fn spawn(
    tandem: &Path,
    dir: &Path,
    app_id: &'static str,
    app_port: u16,
    generation: u32,
    logs: &mut Vec<PathBuf>,
) -> Result<Sidecar, TargetError> {
    let (http, grpc, internal) = (free_port()?, free_port()?, free_port()?);
    let stderr = dir.join(format!("{app_id}-{generation}.stderr.log"));
    let stdout = dir.join(format!("{app_id}-{generation}.stdout.log"));
    let scratch = |source| TargetError::Scratch {
        path: dir.to_owned(),
        source,
    };
    let stderr_file = File::create(&stderr).map_err(scratch)?;
    let stdout_file = File::create(&stdout).map_err(scratch)?;
    logs.push(stderr.clone());
    logs.push(stdout.clone());
    let child = Command::new(tandem)
        .args(["sidecar", "--app-id", app_id, "--resources-path"])
        .arg(dir.join("resources"))
        .args(["--app-port", &app_port.to_string()])
        .args(["--dapr-http-port", &http.to_string()])
        .args(["--dapr-grpc-port", &grpc.to_string()])
        .args(["--dapr-internal-grpc-port", &internal.to_string()])
        .args(["--log-level", "debug", "--enable-api-logging"])
        .current_dir(dir)
        .env("TANDEM_HOME", dir.join("home"))
        .env(
            format!("{}TOKEN", world::ENV_PREFIX),
            world::ENV_SECRET_VALUE,
        )
        .env("RUST_BACKTRACE", "1")
        .env_remove("RUST_LOG")
        .env_remove("DAPR_API_TOKEN")
        .env_remove("APP_API_TOKEN")
        .env_remove("NAMESPACE")
        .stdin(Stdio::null())
        .stdout(stdout_file)
        .stderr(stderr_file)
        .spawn()
        .map_err(|source| TargetError::Spawn {
            program: tandem.to_owned(),
            source,
        })?;
    Ok(Sidecar {
        app_id,
        http,
        grpc,
        internal,
        child,
        stderr,
        stdout,
    })
}

fn write_resources(dir: &Path, world: &World) -> io::Result<()> {
    let resources = dir.join("resources");
    std::fs::create_dir_all(&resources)?;
    std::fs::create_dir_all(dir.join("home"))?;
    std::fs::create_dir_all(dir.join("files"))?;
    std::fs::create_dir_all(dir.join("keys"))?;
    std::fs::write(
        dir.join("keys").join(world::CRYPTO_KEYS[0]),
        world::CRYPTO_AES_KEY,
    )?;
    let secrets = dir.join("secrets.json");
    std::fs::write(&secrets, world::SECRETS_FILE)?;
    let components = format!(
        "\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: {memory}
spec:
  type: state.in-memory
  version: v1
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: {sqlite}
spec:
  type: state.sqlite
  version: v1
  metadata:
  - name: connectionString
    value: {db}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: {pubsub}
spec:
  type: pubsub.in-memory
  version: v1
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: {files}
spec:
  type: bindings.localstorage
  version: v1
  metadata:
  - name: rootPath
    value: {files_root}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: {locks}
spec:
  type: lock.sqlite
  version: v1
  metadata:
  - name: connectionString
    value: {db}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: {llm}
spec:
  type: conversation.echo
  version: v1
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: {crypto}
spec:
  type: crypto.dapr.localstorage
  version: v1
  metadata:
  - name: path
    value: {keys}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: {tick}
spec:
  type: bindings.cron
  version: v1
  metadata:
  - name: schedule
    value: '@every 1h'
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: {file_store}
spec:
  type: secretstores.local.file
  version: v1
  metadata:
  - name: secretsFile
    value: {secrets}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: {env_store}
spec:
  type: secretstores.local.env
  version: v1
  metadata:
  - name: prefix
    value: {prefix}
",
        memory = world::STATE_STORES[0],
        sqlite = world::STATE_STORES[1],
        db = dir.join("state.db").display(),
        pubsub = world::PUBSUB,
        files = world::BINDINGS[0],
        files_root = dir.join("files").display(),
        tick = world::BINDINGS[1],
        locks = world::LOCK_STORE,
        llm = world::CONVERSATION,
        crypto = world::CRYPTO,
        keys = dir.join("keys").display(),
        file_store = world::FILE_SECRET_STORE,
        secrets = secrets.display(),
        env_store = world::ENV_SECRET_STORE,
        prefix = world::ENV_PREFIX,
    );
    std::fs::write(resources.join("components.yaml"), components)?;
    let endpoints = format!(
        "\
apiVersion: dapr.io/v1alpha1
kind: HTTPEndpoint
metadata:
  name: {up}
spec:
  baseUrl: http://127.0.0.1:{echo}
  headers:
  - name: x-fuzz-auth
    secretKeyRef:
      name: \"db:password\"
      key: \"db:password\"
auth:
  secretStore: {file_store}
---
apiVersion: dapr.io/v1alpha1
kind: HTTPEndpoint
metadata:
  name: {down}
spec:
  baseUrl: http://127.0.0.1:{closed}
",
        up = world::ENDPOINT_UP,
        echo = world.echo_port,
        file_store = world::FILE_SECRET_STORE,
        down = world::ENDPOINT_DOWN,
        closed = world.closed_port,
    );
    std::fs::write(resources.join("endpoints.yaml"), endpoints)?;
    // Dapr retries a call to an app nobody runs three times, a second apart; the run
    // calls many such apps on purpose, so the built-in policy waits 5 ms instead (same
    // retries, same outcome, same error).
    let resiliency = "\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: fuzz-quick-retries
spec:
  policies:
    retries:
      DaprBuiltInServiceRetries:
        policy: constant
        duration: 5ms
        maxRetries: 3
";
    std::fs::write(resources.join("resiliency.yaml"), resiliency)?;
    Ok(())
}

/// The app behind both sidecars: subscribes `orders`, answers `/status/{code}` with that
/// status, and echoes everything else. Every answer carries [`world::ECHO_HEADER`].
fn echo_app() -> Router {
    Router::new()
        .route(
            "/dapr/subscribe",
            get(|| async {
                axum::Json(serde_json::json!([
                    {"pubsubname": world::PUBSUB, "topic": world::TOPICS[0], "route": "/events"}
                ]))
            }),
        )
        .route(
            "/events",
            post(|| async { axum::Json(serde_json::json!({"status": "SUCCESS"})) }),
        )
        .route("/status/{code}", any(status))
        .fallback(echo)
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::map_response(mark))
}

async fn mark(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(world::ECHO_HEADER, HeaderValue::from_static("echo"));
    response
}

/// Reads the whole body before answering, as an app's framework does: an app that
/// answers while the sidecar is still sending a large body and then closes the
/// connection makes the kernel reset it, which throws the answer away on the way back
/// (TCP, not the sidecar — daprd fails the same way). That is an app's mistake, not the
/// input's, so the echo app does not make it.
async fn status(uri: axum::http::Uri, _body: Bytes) -> Response {
    // Read from the raw path, so that a code that does not decode is still answered
    // after the body is read (a `Path` extractor would refuse it first).
    let code = uri.path().rsplit('/').next().unwrap_or_default().to_owned();
    let status = code
        .parse::<u16>()
        .ok()
        .and_then(|code| StatusCode::from_u16(code).ok())
        .filter(|status| status.as_u16() >= 200)
        .unwrap_or(StatusCode::BAD_REQUEST);
    (
        status,
        format!("{} status {}", world::ECHO_MARK, status.as_u16()),
    )
        .into_response()
}

async fn echo(headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], body).into_response()
}
