//! Test support shared by tandem's crates: private service instances (`redis-server`)
//! on free loopback ports, stopped when dropped, so test runs never collide with each
//! other or with the machine's own services.
#![forbid(unsafe_code)]

use std::net::TcpListener;
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

    /// Starts (again) on the same port, empty.
    pub fn restart(&mut self) {
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
