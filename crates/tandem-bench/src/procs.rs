//! The processes the benchmark runs — a private `redis-server` and `tandem sidecar`s —
//! plus a scratch directory, free ports, tiny blocking HTTP/RESP probes and `/proc` readings.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A temporary directory removed on drop (kept when `keep` is set).
pub struct ScratchDir {
    pub path: PathBuf,
    pub keep: bool,
}

impl ScratchDir {
    pub fn create() -> Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path =
            std::env::temp_dir().join(format!("tandem-bench-{}-{nanos:x}", std::process::id()));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self { path, keep: false })
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("cannot bind a port")?;
    Ok(listener.local_addr()?.port())
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

pub fn log_file(path: &Path) -> Result<(File, File)> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    Ok((file.try_clone()?, file))
}

/// Kills `child` if it is still running and reaps it.
fn kill(child: &mut Child) {
    if matches!(child.try_wait(), Ok(None)) {
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// A private `redis-server` on a free loopback port, without persistence.
pub struct Redis {
    child: Child,
    pub port: u16,
}

impl Redis {
    pub fn start(binary: &Path, dir: &Path) -> Result<Self> {
        let port = free_port()?;
        let (stdout, stderr) = log_file(&dir.join("redis.log"))?;
        let child = Command::new(binary)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let mut redis = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = redis.child.try_wait()? {
                bail!(
                    "redis-server exited ({status}) on port {port}; see {}",
                    dir.join("redis.log").display()
                );
            }
            if redis
                .command("PING\r\n")
                .is_ok_and(|r| r.starts_with("+PONG"))
            {
                return Ok(redis);
            }
            if Instant::now() > deadline {
                bail!("redis-server did not answer PING on port {port} within 10 s");
            }
            sleep(Duration::from_millis(5));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends one inline RESP command and returns the first chunk of the reply.
    pub fn command(&self, inline: &str) -> io::Result<String> {
        let mut stream = TcpStream::connect_timeout(&loopback(self.port), Duration::from_secs(1))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(inline.as_bytes())?;
        let mut buf = [0u8; 512];
        let n = stream.read(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// How to start `tandem sidecar` for the benchmark.
pub struct SidecarSpec {
    pub binary: PathBuf,
    pub resources: PathBuf,
    pub home: PathBuf,
    pub log: PathBuf,
    pub app_id: String,
    /// More `tandem sidecar` arguments (e.g. `--app-port N`).
    pub extra_args: Vec<String>,
}

impl SidecarSpec {
    /// Spawns a sidecar on two fresh free ports; returns at once (not yet ready).
    pub fn spawn(&self) -> Result<Sidecar> {
        let http_port = free_port()?;
        let mut grpc_port = free_port()?;
        while grpc_port == http_port {
            grpc_port = free_port()?;
        }
        let (stdout, stderr) = log_file(&self.log)?;
        let spawned = Instant::now();
        let child = Command::new(&self.binary)
            .arg("sidecar")
            .args(["--app-id", &self.app_id])
            .args(["--dapr-http-port", &http_port.to_string()])
            .args(["--dapr-grpc-port", &grpc_port.to_string()])
            .arg("--resources-path")
            .arg(&self.resources)
            .args(&self.extra_args)
            .env("TANDEM_HOME", &self.home)
            .env_remove("DAPR_API_TOKEN")
            .env_remove("APP_API_TOKEN")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("cannot start {}", self.binary.display()))?;
        Ok(Sidecar {
            child,
            http_port,
            grpc_port,
            spawned,
        })
    }
}

/// A running `tandem sidecar`; killed on drop if [`Sidecar::stop`] was not called.
pub struct Sidecar {
    child: Child,
    pub http_port: u16,
    pub grpc_port: u16,
    /// Taken just before the spawn.
    pub spawned: Instant,
}

impl Sidecar {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails when the process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        match self.child.try_wait()? {
            Some(status) => bail!("the sidecar exited early ({status})"),
            None => Ok(()),
        }
    }

    /// Polls `path` every `interval` until it answers 204; returns the time since the spawn.
    pub fn wait_for(
        &mut self,
        path: &str,
        interval: Duration,
        timeout: Duration,
    ) -> Result<Duration> {
        loop {
            if http_status(self.http_port, "GET", path).is_ok_and(|status| status == 204) {
                return Ok(self.spawned.elapsed());
            }
            self.check_alive()?;
            if self.spawned.elapsed() > timeout {
                bail!("GET {path} did not answer 204 within {timeout:?}");
            }
            sleep(interval);
        }
    }

    /// Asks the sidecar to stop (`POST /v1.0/shutdown`), then kills it after 5 s.
    pub fn stop(mut self) {
        let _ = http_status(self.http_port, "POST", "/v1.0/shutdown");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                break;
            }
            sleep(Duration::from_millis(2));
        }
        kill(&mut self.child);
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// One blocking HTTP/1.1 request without a body on a new connection; the status code.
pub fn http_status(port: u16, method: &str, path: &str) -> io::Result<u16> {
    http_request(port, method, path, b"")
}

/// One blocking HTTP/1.1 request on a new connection (a JSON body when not empty);
/// the status code.
pub fn http_request(port: u16, method: &str, path: &str, body: &[u8]) -> io::Result<u16> {
    let mut stream = TcpStream::connect_timeout(&loopback(port), Duration::from_millis(200))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    stream.write_all(&request)?;
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 256];
    while head.len() < 12 {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "no response"));
        }
        head.extend_from_slice(&buf[..n]);
    }
    parse_status(&head).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad status line"))
}

/// The status code of an `HTTP/1.x NNN ...` status line.
pub fn parse_status(head: &[u8]) -> Option<u16> {
    if !head.starts_with(b"HTTP/1.") || head.len() < 12 {
        return None;
    }
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// `VmRSS` of a process, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_field(pid, "VmRSS:")
}

/// `VmHWM` (peak RSS) of a process, in KiB.
pub fn hwm_kib(pid: u32) -> Option<u64> {
    status_field(pid, "VmHWM:")
}

fn status_field(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// User + system CPU time of a process (all its threads), in clock ticks.
pub fn cpu_ticks(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the `(comm)`: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The whole machine's CPU time (all cores), in clock ticks, from `/proc/stat`.
#[derive(Clone, Copy, Default)]
pub struct MachineTicks {
    /// Everything but idle and iowait.
    pub busy: u64,
    /// Interrupt and softirq work (loopback TCP is processed in softirq).
    pub irq: u64,
    /// Time the hypervisor ran something else on our virtual CPUs.
    pub steal: u64,
}

/// See [`MachineTicks`].
pub fn machine_ticks() -> Option<MachineTicks> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .map(|field| field.parse().unwrap_or(0))
        .collect();
    let field = |i: usize| fields.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    Some(MachineTicks {
        busy: [0, 1, 2, 5, 6, 7].iter().map(|&i| field(i)).sum(),
        irq: field(5) + field(6),
        steal: field(7),
    })
}

/// Clock ticks per second for [`cpu_ticks`] (`getconf CLK_TCK`, else 100).
pub fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .filter(|&ticks| ticks > 0)
        .unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(parse_status(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(parse_status(b"HTTP/1.1 500 Internal"), Some(500));
        assert_eq!(parse_status(b"garbage"), None);
    }

    #[test]
    fn own_proc_readings() {
        let pid = std::process::id();
        assert!(rss_kib(pid).is_some_and(|kib| kib > 0));
        assert!(cpu_ticks(None).is_some());
        assert!(machine_ticks().is_some());
    }
}
