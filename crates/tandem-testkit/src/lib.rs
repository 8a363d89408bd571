//! Test support shared by tandem's crates: private service instances (`redis-server`,
//! PostgreSQL, RabbitMQ, Mosquitto, `nats-server`, the moto AWS emulator, the tansu
//! Kafka broker, the Azurite Azure Storage emulator, a MongoDB wire-protocol server over
//! mongomock) on free loopback ports, stopped
//! when dropped, so test runs never collide with each other or with the machine's own
//! services.
#![forbid(unsafe_code)]

use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A TCP port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `redis-server` that lives as long as this value (or until [`RedisServer::stop`]).
pub struct RedisServer {
    port: u16,
    process: Option<Child>,
}

impl RedisServer {
    pub fn start() -> Self {
        let mut server = Self {
            port: free_port(),
            process: None,
        };
        server.restart();
        server
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port, empty; a running server is stopped first.
    pub fn restart(&mut self) {
        self.stop();
        let process = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (the test command installs it)");
        self.process = Some(process);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.cli(&["PING"]).as_deref() == Some("PONG") {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }

    /// Runs one command with `redis-cli`, returning its trimmed output.
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        let output = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// How many messages of `group` on `stream` are delivered but not acknowledged.
    pub fn pending(&self, stream: &str, group: &str) -> usize {
        let summary = self.cli(&["XPENDING", stream, group]).unwrap_or_default();
        summary
            .lines()
            .next()
            .and_then(|count| count.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A private PostgreSQL cluster: `initdb` into a temporary directory, the server on a
/// free loopback port (and its socket in that directory), stopped when this value is
/// dropped. Never the machine's own server on 5432.
pub struct PostgresServer {
    port: u16,
    /// Holds `data/` (the cluster), the socket and `server.log`; removed on drop.
    dir: tempfile::TempDir,
    bin: PathBuf,
    running: bool,
}

impl PostgresServer {
    pub fn start() -> Self {
        let bin = postgres_bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("tandem-pg-")
            .tempdir()
            .unwrap();
        if running_as_root() {
            // initdb and postgres refuse to run as root: the cluster belongs to the
            // `postgres` user, and so must its directory.
            let chown = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(dir.path())
                .status()
                .expect("chown runs");
            assert!(
                chown.success(),
                "chown -R postgres {}",
                dir.path().display()
            );
        }
        let mut server = Self {
            port: free_port(),
            dir,
            bin,
            running: false,
        };
        let output = server
            .command("initdb")
            .arg("-D")
            .arg(server.data())
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .output()
            .expect("initdb runs");
        assert!(
            output.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        server.start_again();
        server
    }

    /// A libpq connection string for the `postgres` database as the `postgres` user.
    pub fn connection_string(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        )
    }

    /// Starts the server (again) on the same port and data: what was stored is kept.
    pub fn start_again(&mut self) {
        // Without fsync (the OS keeps what an immediate stop leaves), but with
        // synchronous commits: a test that stops the server must not lose what was
        // acknowledged before.
        let options = format!(
            "-p {} -h 127.0.0.1 -k {} -c fsync=off -c full_page_writes=off",
            self.port,
            self.dir.path().display()
        );
        let output = self
            .command("pg_ctl")
            .arg("start")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.path().join("server.log"))
            .args(["-w", "-t", "60", "-o", &options])
            .output()
            .expect("pg_ctl runs");
        if !output.status.success() {
            let log =
                std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
            panic!(
                "PostgreSQL did not start on port {}: {}{}\n{log}",
                self.port,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        self.running = true;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "PostgreSQL does not accept connections on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server at once, as a crash would (`pg_ctl stop -m immediate`).
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        self.running = false;
        let _ = self
            .command("pg_ctl")
            .arg("stop")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `program` from PostgreSQL's bin directory, run as `postgres` when we are root.
    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if running_as_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn running_as_root() -> bool {
    // `/proc/self` belongs to the effective user of this process.
    std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

/// Where `initdb` and `pg_ctl` are: Debian keeps them out of `PATH`, under
/// `/usr/lib/postgresql/<version>/bin` (the newest wins).
fn postgres_bin_dir() -> PathBuf {
    let mut candidates: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    candidates.sort();
    if let Some((_, bin)) = candidates.pop() {
        return bin;
    }
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .find(|dir| dir.join("initdb").exists() && dir.join("pg_ctl").exists())
    });
    on_path.unwrap_or_else(|| {
        panic!(
            "PostgreSQL's initdb was not found (under /usr/lib/postgresql/*/bin or on PATH): \
             install the Debian package `postgresql` (apt-get install postgresql)"
        )
    })
}

/// A RabbitMQ broker for a test: the machine's own on 127.0.0.1:5672 when it runs (tests
/// then use uniquely named exchanges and queues), otherwise a private node.
pub enum RabbitMq {
    Machine,
    Private(RabbitMqServer),
}

impl RabbitMq {
    pub fn shared() -> Self {
        if std::net::TcpStream::connect_timeout(
            &"127.0.0.1:5672".parse().unwrap(),
            Duration::from_millis(500),
        )
        .is_ok()
        {
            Self::Machine
        } else {
            Self::Private(RabbitMqServer::start())
        }
    }

    /// `amqp://guest:guest@127.0.0.1:port`.
    pub fn url(&self) -> String {
        match self {
            Self::Machine => "amqp://guest:guest@127.0.0.1:5672".to_owned(),
            Self::Private(server) => server.url(),
        }
    }
}

/// A private RabbitMQ node (`rabbitmq-server` from Debian's package) on free loopback
/// ports, its files in a temporary directory, stopped — its whole process group — when
/// dropped. Starting one takes a few seconds: tests that need to stop and start a broker
/// use it; the others use [`RabbitMq::shared`].
pub struct RabbitMqServer {
    port: u16,
    dist_port: u16,
    dir: tempfile::TempDir,
    /// The running node's script, which leads the node's process group (the script,
    /// beam and its helpers).
    process: Option<Child>,
}

impl RabbitMqServer {
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("tandem-rabbitmq-")
            .tempdir()
            .unwrap();
        let port = free_port();
        std::fs::write(
            dir.path().join("rabbitmq.conf"),
            format!("listeners.tcp.default = 127.0.0.1:{port}\nloopback_users = none\n"),
        )
        .unwrap();
        std::fs::write(dir.path().join("enabled_plugins"), "[].\n").unwrap();
        std::fs::write(dir.path().join("env.conf"), "").unwrap();
        let mut server = Self {
            port,
            dist_port: free_port(),
            dir,
            process: None,
        };
        server.start_again();
        server
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}", self.port)
    }

    /// Starts the node (again) on the same ports with the data it had.
    pub fn start_again(&mut self) {
        use std::os::unix::process::CommandExt;
        self.stop();
        let dir = self.dir.path();
        let child = Command::new("/usr/lib/rabbitmq/bin/rabbitmq-server")
            .env("HOME", dir)
            .env(
                "RABBITMQ_NODENAME",
                format!("tandem-test-{}@localhost", self.port),
            )
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .env("RABBITMQ_CONF_ENV_FILE", dir.join("env.conf"))
            .env("RABBITMQ_PID_FILE", dir.join("pid"))
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("rabbitmq-server is installed (the test command installs it)");
        self.process = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.stop();
        panic!("rabbitmq-server did not start on port {}", self.port);
    }

    /// Kills the node at once, as a crash would.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", process.id())])
                .status();
            let _ = process.wait();
            // Wait until the port is free again, so a restart can take it.
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline
                && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Drop for RabbitMqServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A private Mosquitto broker (`/usr/sbin/mosquitto`) on a free loopback port, with
/// persistence in a temporary directory so that a restart keeps persistent sessions and
/// their queued messages; killed when dropped.
pub struct MosquittoServer {
    port: u16,
    /// Holds `mosquitto.conf`, the persistence file and the log; removed on drop.
    dir: tempfile::TempDir,
    process: Option<Child>,
}

impl MosquittoServer {
    pub fn start() -> Self {
        Self::start_with("")
    }

    /// Starts one whose listener takes the extra configuration lines `listener` (TLS
    /// files, say).
    pub fn start_with(listener: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("tandem-mosquitto-")
            .tempdir()
            .unwrap();
        let port = free_port();
        std::fs::write(
            dir.path().join("mosquitto.conf"),
            format!(
                // `user root`: run as root, mosquitto would otherwise become the
                // `mosquitto` user, who cannot write to this directory.
                "listener {port} 127.0.0.1\n{listener}\nallow_anonymous true\nuser root\n\
                 persistence true\npersistence_location {}/\n\
                 log_dest file {}/mosquitto.log\n",
                dir.path().display(),
                dir.path().display()
            ),
        )
        .unwrap();
        let mut server = Self {
            port,
            dir,
            process: None,
        };
        server.start_again();
        server
    }

    /// `127.0.0.1:port`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The directory of its configuration, persistence and log.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Starts the broker (again) on the same port with what it persisted.
    pub fn start_again(&mut self) {
        self.stop();
        let process = Command::new("/usr/sbin/mosquitto")
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto is installed (the test command installs it)");
        self.process = Some(process);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Some(Ok(Some(status))) = self.process.as_mut().map(Child::try_wait) {
                let log = std::fs::read_to_string(self.dir.path().join("mosquitto.log"))
                    .unwrap_or_default();
                panic!("mosquitto exited with {status}:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stop();
        panic!("mosquitto did not start on port {}", self.port);
    }

    /// Stops the broker with SIGTERM, on which it writes its persistence file (a
    /// SIGKILL would lose everything since its last autosave), and waits for it to go.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &process.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = process.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = process.kill();
            let _ = process.wait();
        }
    }

    pub fn restart(&mut self) {
        self.start_again();
    }
}

impl Drop for MosquittoServer {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}

/// A private AWS emulator (`moto_server` from the `moto[server]` Python package) on a
/// free loopback port, serving SNS, SQS and STS at one endpoint with any credentials,
/// killed when dropped. It keeps everything in memory: [`MotoServer::start_again`]
/// starts it empty, as a lost emulator (or region) would be.
///
/// The program is `TANDEM_MOTO_SERVER` if set, else the repository's
/// `.venv/bin/moto_server` (which `scripts/test` installs), else `moto_server` on `PATH`.
pub struct MotoServer {
    port: u16,
    program: PathBuf,
    env: Vec<(String, String)>,
    process: Option<Child>,
}

impl MotoServer {
    pub fn start() -> Self {
        Self::start_with_env(&[])
    }

    /// Starts it with moto's settings in its environment, e.g.
    /// `INITIAL_NO_AUTH_ACTION_COUNT`: after that many requests, moto checks every
    /// request's signature against the IAM access keys it holds.
    pub fn start_with_env(env: &[(&str, &str)]) -> Self {
        let mut server = Self {
            port: free_port(),
            program: moto_program(),
            env: env
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
            process: None,
        };
        server.start_again();
        server
    }

    /// `http://127.0.0.1:port`, the `endpoint` a component uses.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the emulator (again) on the same port, empty; a running one is stopped
    /// first.
    pub fn start_again(&mut self) {
        self.stop();
        let process = Command::new(&self.program)
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .envs(self.env.iter().map(|(name, value)| (name, value)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|why| {
                panic!("cannot start {}: {why}", self.program.display());
            });
        self.process = Some(process);
        if !wait_listening(
            &mut self.process,
            self.port,
            &self.program,
            Duration::from_secs(30),
        ) {
            self.stop();
            panic!("moto_server did not start on port {}", self.port);
        }
    }

    /// Kills the emulator at once; what it held is gone.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline
                && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits up to `within` for `process` (running `program`) to accept connections on
/// `port`; panics, naming the program, if it exits first. `false` if it never listened.
fn wait_listening(
    process: &mut Option<Child>,
    port: u16,
    program: &Path,
    within: Duration,
) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        if let Some(process) = process
            && let Ok(Some(status)) = process.try_wait()
        {
            panic!("{} exited with {status} on port {port}", program.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn moto_program() -> PathBuf {
    if let Some(program) = std::env::var_os("TANDEM_MOTO_SERVER") {
        return PathBuf::from(program);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/moto_server");
    if venv.exists() {
        return venv;
    }
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("moto_server"))
            .find(|program| program.exists())
    });
    on_path.unwrap_or_else(|| {
        panic!(
            "moto_server (the AWS emulator of the SNS/SQS tests) was not found: run \
             scripts/test once, which installs moto[server] into .venv \
             (or set TANDEM_MOTO_SERVER to its path)"
        )
    })
}

/// A private MongoDB stand-in on a free loopback port, killed when dropped:
/// `tests/mongo/server.py`, a MongoDB wire-protocol front over mongomock (no MongoDB
/// server can be installed where tandem is tested). It answers as the primary of the
/// one-member replica set [`MongoServer::REPLICA_SET`], so drivers run transactions, and
/// keeps everything in memory.
///
/// The Python is `TANDEM_MONGO_PYTHON` if set, else the repository's `.venv/bin/python`
/// (where `scripts/test` installs mongomock and pymongo from `tests/e2e/requirements.txt`).
pub struct MongoServer {
    port: u16,
    process: Option<Child>,
}

impl MongoServer {
    /// The `setName` the server reports.
    pub const REPLICA_SET: &'static str = "rs0";

    pub fn start() -> Self {
        let port = free_port();
        let python = mongo_python();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/mongo/server.py");
        let process = Command::new(&python)
            .arg(&script)
            .args(["--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|why| panic!("cannot start {}: {why}", python.display()));
        let mut server = Self {
            port,
            process: Some(process),
        };
        if !wait_listening(&mut server.process, port, &script, Duration::from_secs(30)) {
            panic!("the MongoDB test server did not start on port {port}");
        }
        server
    }

    /// `127.0.0.1:port`, the `host` a component uses.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The `params` that reach it as the replica-set primary it reports.
    pub fn params() -> String {
        format!("?directConnection=true&replicaSet={}", Self::REPLICA_SET)
    }

    /// A connection string for it.
    pub fn uri(&self) -> String {
        format!("mongodb://{}/{}", self.host(), Self::params())
    }
}

impl Drop for MongoServer {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}

fn mongo_python() -> PathBuf {
    if let Some(program) = std::env::var_os("TANDEM_MONGO_PYTHON") {
        return PathBuf::from(program);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    if venv.exists() {
        return venv;
    }
    panic!(
        "the Python of the MongoDB test server was not found: run scripts/test once, which \
         installs mongomock and pymongo into .venv (or set TANDEM_MONGO_PYTHON to a Python \
         that has them)"
    )
}

/// A private Azure Storage emulator (Azurite, from npm) serving Blob, Queue and Table
/// storage on free loopback ports for its well-known development account
/// ([`AzuriteServer::ACCOUNT`], [`AzuriteServer::KEY`]), in memory, killed (with its
/// process group) when dropped.
///
/// The program is `TANDEM_AZURITE` if set (Azurite's `azurite.js`, run with `node`, or
/// an executable such as `azurite`), else `tests/azurite/node_modules/azurite` of this
/// repository, which `scripts/test` installs from its lock file.
pub struct AzuriteServer {
    blob_port: u16,
    table_port: u16,
    location: PathBuf,
    process: Option<Child>,
}

impl AzuriteServer {
    /// Azurite's development account name.
    pub const ACCOUNT: &'static str = "devstoreaccount1";
    /// Azurite's development account key, published by Microsoft: not a secret.
    pub const KEY: &'static str =
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    pub fn start() -> Self {
        use std::os::unix::process::CommandExt;
        let (blob_port, queue_port, table_port) = (free_port(), free_port(), free_port());
        let (program, script) = azurite_program();
        let mut command = Command::new(&program);
        if let Some(script) = &script {
            command.arg(script);
        }
        let location =
            std::env::temp_dir().join(format!("tandem-azurite-{}-{blob_port}", std::process::id()));
        std::fs::create_dir_all(&location).expect("a temporary folder for Azurite");
        let process = command
            .args(["--blobHost", "127.0.0.1", "--queueHost", "127.0.0.1"])
            .args(["--tableHost", "127.0.0.1"])
            .args(["--blobPort", &blob_port.to_string()])
            .args(["--queuePort", &queue_port.to_string()])
            .args(["--tablePort", &table_port.to_string()])
            .args(["--silent", "--inMemoryPersistence", "--skipApiVersionCheck"])
            // In memory, but run in a private folder (its default workspace), so
            // nothing it might write lands in the working tree.
            .current_dir(&location)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own group, so a kill reaches any worker it starts.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|why| panic!("cannot start {}: {why}", program.display()));
        let mut server = Self {
            blob_port,
            table_port,
            location,
            process: Some(process),
        };
        for port in [blob_port, table_port] {
            if !wait_listening(&mut server.process, port, &program, Duration::from_secs(30)) {
                server.stop();
                panic!("Azurite did not start on port {port}");
            }
        }
        server
    }

    /// `http://127.0.0.1:port`, the Blob service's `endpoint` (the account follows in
    /// request paths, as on Azurite).
    pub fn blob_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.blob_port)
    }

    /// `http://127.0.0.1:port`, the Table service's endpoint.
    pub fn table_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.table_port)
    }

    fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            // The whole group: `node` may have started workers.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", process.id())])
                .stderr(Stdio::null())
                .status();
            let _ = process.kill();
            let _ = process.wait();
        }
        let _ = std::fs::remove_dir_all(&self.location);
    }
}

impl Drop for AzuriteServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The program to run and, for `azurite.js`, the script `node` runs.
fn azurite_program() -> (PathBuf, Option<PathBuf>) {
    let script = match std::env::var_os("TANDEM_AZURITE") {
        Some(program) => {
            let program = PathBuf::from(program);
            if program
                .extension()
                .is_none_or(|extension| extension != "js")
            {
                return (program, None);
            }
            program
        }
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/azurite/node_modules/azurite/dist/src/azurite.js"),
    };
    if !script.exists() {
        panic!(
            "Azurite (the Azure Storage emulator of the Azure state store tests) was not \
             found at {}: run scripts/test once, which installs it into \
             tests/azurite/node_modules (or set TANDEM_AZURITE to its azurite.js)",
            script.display()
        );
    }
    (PathBuf::from("node"), Some(script))
}

/// A private Kafka-protocol broker (`tansu`, Apache-2.0) on a free loopback port, killed
/// when dropped. (Its own TLS and SASL user store do not work in the build `scripts/test`
/// installs: TLS tests put a proxy before it, see [`KafkaServer::start_advertising`].) By default it keeps topics and offsets in memory, so
/// [`KafkaServer::start_again`] starts it empty; [`KafkaServer::start_durable`] keeps
/// them in an S3 bucket of a [`MotoServer`], so they survive a restart as a real
/// broker's log does.
///
/// The program is `TANDEM_TANSU` if set, else the repository's `.venv/bin/tansu` (which
/// `scripts/test` installs), else `tansu` on `PATH`.
pub struct KafkaServer {
    port: u16,
    /// The port clients are told to connect to: `port`, unless a proxy stands before it.
    advertised: u16,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    process: Option<Child>,
}

impl KafkaServer {
    pub fn start() -> Self {
        Self::start_with(&[], &[])
    }

    /// Starts with extra arguments, such as `["--authentication"]`.
    pub fn start_with_args(args: &[&str]) -> Self {
        Self::start_with(args, &[])
    }

    /// Starts it telling clients to connect to `advertised` on loopback instead of its
    /// own port: for a test's proxy (a TLS front, say) listening there.
    pub fn start_advertising(advertised: u16) -> Self {
        let mut server = Self::new(&[], &[]);
        server.advertised = advertised;
        server.start_again();
        server
    }

    /// Starts it keeping its data in a new bucket of `moto`, which outlives restarts.
    pub fn start_durable(moto: &MotoServer) -> Self {
        // Its own port makes the name unique among the tests of this run.
        let bucket = format!("tansu-{}-{}", std::process::id(), free_port());
        create_bucket(moto.port, &bucket);
        let storage = format!("s3://{bucket}/");
        let endpoint = moto.endpoint();
        Self::start_with(
            &["--storage-engine", &storage],
            &[
                ("AWS_ACCESS_KEY_ID", "tandem"),
                ("AWS_SECRET_ACCESS_KEY", "tandem"),
                ("AWS_DEFAULT_REGION", "us-east-1"),
                ("AWS_ENDPOINT", &endpoint),
                ("AWS_ALLOW_HTTP", "true"),
            ],
        )
    }

    fn start_with(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut server = Self::new(args, env);
        server.start_again();
        server
    }

    fn new(args: &[&str], env: &[(&str, &str)]) -> Self {
        let port = free_port();
        Self {
            port,
            advertised: port,
            program: tansu_program(),
            args: args.iter().map(ToString::to_string).collect(),
            env: env
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
            process: None,
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`, the `brokers` a component uses.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the broker (again) on the same port; a running one is stopped first.
    pub fn start_again(&mut self) {
        self.stop();
        let listener = format!("tcp://127.0.0.1:{}", self.port);
        let advertised = format!("tcp://127.0.0.1:{}", self.advertised);
        let process = Command::new(&self.program)
            .arg("broker")
            .args([
                "--listener-url",
                &listener,
                "--advertised-listener-url",
                &advertised,
            ])
            .args(&self.args)
            .envs(self.env.iter().map(|(name, value)| (name, value)))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|why| panic!("cannot start {}: {why}", self.program.display()));
        self.process = Some(process);
        if !wait_listening(
            &mut self.process,
            self.port,
            &self.program,
            Duration::from_secs(20),
        ) {
            self.stop();
            panic!("tansu did not start on port {}", self.port);
        }
    }

    /// Kills the broker at once, as a crash would.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}

impl Drop for KafkaServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether a Kafka-protocol broker program is at hand, for tests that run only then.
pub fn kafka_available() -> bool {
    std::panic::catch_unwind(tansu_program).is_ok()
}

fn tansu_program() -> PathBuf {
    if let Some(program) = std::env::var_os("TANDEM_TANSU") {
        return PathBuf::from(program);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/tansu");
    if venv.exists() {
        return venv;
    }
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("tansu"))
            .find(|program| program.exists())
    });
    on_path.unwrap_or_else(|| {
        panic!(
            "tansu (the Kafka-protocol broker of the Kafka tests) was not found: run \
             scripts/test once, which installs it into .venv \
             (or set TANDEM_TANSU to its path)"
        )
    })
}

/// Creates an S3 bucket on the emulator at `port` (moto takes unsigned requests as S3).
fn create_bucket(port: u16, bucket: &str) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "creating bucket {bucket}: {answer}"
    );
}

/// A private `nats-server -js` on a free loopback port, its JetStream store in a
/// temporary directory, killed when dropped. [`NatsServer::start_again`] uses the same
/// port and store, so streams and consumers survive a restart.
pub struct NatsServer {
    port: u16,
    dir: tempfile::TempDir,
    /// Extra arguments (`--auth`, `--user`, `--pass`), given again on every start.
    args: Vec<String>,
    process: Option<Child>,
}

impl NatsServer {
    pub fn start() -> Self {
        Self::start_with_args(&[])
    }

    /// Starts with extra command-line arguments, such as `["--auth", "token"]` or
    /// `["--user", "u", "--pass", "p"]`.
    pub fn start_with_args(args: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("tandem-nats-")
            .tempdir()
            .unwrap();
        let mut server = Self {
            port: free_port(),
            dir,
            args: args.iter().map(ToString::to_string).collect(),
            process: None,
        };
        server.start_again();
        server
    }

    /// `nats://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts the server (again) on the same port with the same store; a running server
    /// is stopped first.
    pub fn start_again(&mut self) {
        self.stop();
        let process = Command::new("/usr/sbin/nats-server")
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.dir.path())
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server is installed (apt-get install nats-server)");
        self.process = Some(process);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stop();
        panic!("nats-server did not start on port {}", self.port);
    }

    /// Kills the server at once, as a crash would.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}
