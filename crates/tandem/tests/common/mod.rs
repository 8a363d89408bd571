//! What the binary's tests share: a `tandem sidecar` process on free ports.
#![allow(dead_code)] // each test file uses its own part

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tandem_proto::runtime::dapr_client::DaprClient;
use tandem_testkit::free_port;

/// A `tandem sidecar` process, killed on drop.
pub struct Sidecar {
    pub process: Child,
    pub http: u16,
    pub grpc: u16,
    /// Where its log goes when the test asked for none: read if it fails to start.
    _stderr: Option<tempfile::NamedTempFile>,
}

impl Sidecar {
    /// A sidecar for app `api-test` on `resources`.
    pub fn start(resources: &Path, app_port: Option<u16>, token: Option<&str>) -> Self {
        Self::start_as("api-test", resources, app_port, token)
    }

    /// A sidecar for app `app_id`; its `TANDEM_HOME` is `resources/home`.
    pub fn start_as(
        app_id: &str,
        resources: &Path,
        app_port: Option<u16>,
        token: Option<&str>,
    ) -> Self {
        Self::start_in(&resources.join("home"), app_id, resources, app_port, token)
    }

    /// A sidecar whose `TANDEM_HOME` is `home`: sidecars sharing one find each other.
    pub fn start_in(
        home: &Path,
        app_id: &str,
        resources: &Path,
        app_port: Option<u16>,
        token: Option<&str>,
    ) -> Self {
        Self::start_with(home, app_id, resources, app_port, token, &[], None, &[])
    }

    /// A sidecar with `extra` flags and `env` variables, its log written to `log`
    /// when given.
    #[allow(clippy::too_many_arguments)]
    pub fn start_with(
        home: &Path,
        app_id: &str,
        resources: &Path,
        app_port: Option<u16>,
        token: Option<&str>,
        extra: &[&str],
        log: Option<&Path>,
        env: &[(&str, &str)],
    ) -> Self {
        Self::start_on_free_ports(log, |http, grpc| {
            let mut command = Command::new(env!("CARGO_BIN_EXE_tandem"));
            command
                .args(["sidecar", "--app-id", app_id, "--resources-path"])
                .arg(resources)
                .args([
                    "--dapr-http-port",
                    &http.to_string(),
                    "--dapr-grpc-port",
                    &grpc.to_string(),
                ])
                .args(extra)
                .env("TANDEM_HOME", home)
                .env_remove("DAPR_API_TOKEN")
                .env_remove("TANDEM_INTERNAL_KEY")
                .envs(env.iter().copied());
            if let Some(port) = app_port {
                command.args(["--app-port", &port.to_string()]);
            }
            if let Some(token) = token {
                command.env("DAPR_API_TOKEN", token);
            }
            command
        })
    }

    /// The sidecar `command_for(http, grpc)` starts, waited for until ready; its
    /// stderr goes to `log` when given.
    ///
    /// Its ports are picked free before it starts, so another test may take one in
    /// between: a sidecar that exits because a port was taken is started again on
    /// fresh ones instead of failing the test. Any other exit fails it, with the log.
    pub fn start_on_free_ports(
        log: Option<&Path>,
        command_for: impl Fn(u16, u16) -> Command,
    ) -> Self {
        for _attempt in 0..5 {
            let (http, grpc) = (free_port(), free_port());
            let stderr = match log {
                Some(_) => None,
                None => Some(tempfile::NamedTempFile::new().unwrap()),
            };
            let log_path = log
                .unwrap_or_else(|| stderr.as_ref().unwrap().path())
                .to_owned();
            let mut command = command_for(http, grpc);
            command
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log_path).unwrap());
            let mut sidecar = Self {
                process: command.spawn().unwrap(),
                http,
                grpc,
                _stderr: stderr,
            };
            if let Err(exited) = sidecar.wait_started() {
                let written = std::fs::read_to_string(&log_path).unwrap_or_default();
                assert!(
                    port_taken(&written),
                    "the sidecar exited ({exited}) instead of starting:\n{written}"
                );
                continue;
            }
            return sidecar;
        }
        panic!("the sidecar lost its ports to other processes five times in a row");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http)
    }

    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            let status = get_status(&self.url("/v1.0/healthz"));
            if status == Some(204) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the sidecar did not become ready");
    }

    /// Waits until the sidecar is ready, or answers how it exited instead.
    fn wait_started(&mut self) -> Result<(), std::process::ExitStatus> {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Some(status) = self.process.try_wait().unwrap() {
                return Err(status);
            }
            if get_status(&self.url("/v1.0/healthz")) == Some(204) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the sidecar did not become ready");
    }

    pub async fn grpc(&self) -> DaprClient<tonic::transport::Channel> {
        let channel =
            tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{}", self.grpc))
                .unwrap()
                .connect()
                .await
                .unwrap();
        DaprClient::new(channel)
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// Whether a sidecar's log says it could not listen because its port was taken.
pub fn port_taken(log: &str) -> bool {
    log.contains("Address already in use")
}

/// The status of a plain blocking GET: readiness is polled from a blocking thread.
pub fn get_status(url: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let address = url.trim_start_matches("http://");
    let (host, path) = address.split_once('/')?;
    let mut stream = std::net::TcpStream::connect(host).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.split_whitespace().nth(1)?.parse().ok()
}

/// Checks a Dapr error answer: its status and `errorCode`; returns its body.
pub async fn assert_error(
    response: reqwest::Response,
    status: u16,
    code: &str,
) -> serde_json::Value {
    assert_eq!(response.status(), status);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["errorCode"], code, "{body}");
    body
}

/// Sends `method path` exactly as written (HTTP clients normalise `..` away) and
/// returns the status and body.
pub fn raw_request(port: u16, method: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}
