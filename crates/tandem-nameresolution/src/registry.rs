//! The machine's registry of running sidecars: one JSON file per sidecar under
//! `<tandem home>/apps/`.
//!
//! Files instead of a daemon or a shared database: nothing has to be started first, any
//! process (a sidecar, `tandem list`, `tandem stop`) can read them, and a file is written
//! in one atomic rename, so a reader never sees half of one. A sidecar removes its file
//! when it stops ([`Registration`]'s `Drop`); one that was killed (`SIGKILL`, a crash)
//! cannot, so every reader checks that the registered process is still alive and deletes
//! the file when it is not ([`list`]).
//!
//! A pid alone can lie: after a process exits, the system may give its pid to a new,
//! unrelated process. On Linux the entry also records the process's start time
//! (`/proc/<pid>/stat`), so a reused pid is recognised as a different process — which
//! matters most to `tandem stop`, which must never signal a stranger.

use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// The folder under the tandem home that holds the registry.
pub const APPS_DIR: &str = "apps";

/// One running sidecar, as its file describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// The app's id.
    pub app_id: String,
    /// The sidecar's namespace (`NAMESPACE`), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The `tandem` process (`tandem run` or `tandem sidecar`): SIGTERM to it stops the
    /// app and the sidecar.
    pub pid: u32,
    /// When that process started, in clock ticks since boot (Linux), to tell it from a
    /// later process that got the same pid. Filled in by [`Registration::register`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_start: Option<u64>,
    /// The HTTP API's port.
    pub http_port: u16,
    /// The gRPC API's port.
    pub grpc_port: u16,
    /// The port other sidecars call this one on (service invocation).
    pub internal_port: u16,
    /// The port the app listens on, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_port: Option<u16>,
    /// The app's process, when `tandem run` started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_pid: Option<u32>,
    /// The app's command line, when `tandem run` started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// The app failed its health checks (`--enable-app-health-check`): name resolution
    /// passes this instance over while another is healthy.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub app_unhealthy: bool,
    /// When the sidecar started, in seconds since the Unix epoch.
    pub started: u64,
    /// The tandem version that wrote the entry.
    pub version: String,
    /// The largest request body the APIs accept, in bytes (`--max-body-size`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_size: Option<u64>,
    /// The HTTP API's read buffer, in bytes (`--read-buffer-size`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_buffer_size: Option<u64>,
    /// Whether the sidecar serves metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_enabled: Option<bool>,
    /// The run file (`tandem run -f`) that started the app, absolute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_template_path: Option<String>,
    /// The run file's `name`, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_template_name: Option<String>,
    /// Where the app's output is written, when it goes to a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_log_path: Option<String>,
    /// Where the sidecar's log is written, when it goes to a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daprd_log_path: Option<String>,
}

impl Entry {
    /// An entry for this process, started now, with this crate's (the workspace's)
    /// version; set the optional fields directly.
    pub fn new(
        app_id: impl Into<String>,
        http_port: u16,
        grpc_port: u16,
        internal_port: u16,
    ) -> Self {
        Self {
            app_id: app_id.into(),
            namespace: None,
            pid: std::process::id(),
            process_start: None,
            http_port,
            grpc_port,
            internal_port,
            app_port: None,
            app_pid: None,
            command: None,
            app_unhealthy: false,
            started: unix_now(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            max_body_size: None,
            read_buffer_size: None,
            metrics_enabled: None,
            run_template_path: None,
            run_template_name: None,
            app_log_path: None,
            daprd_log_path: None,
        }
    }

    /// Where other sidecars on this machine reach this one.
    pub fn internal_address(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.internal_port))
    }

    /// How long ago the sidecar started.
    pub fn age(&self) -> Duration {
        Duration::from_secs(unix_now().saturating_sub(self.started))
    }

    /// The start time as RFC 3339 in UTC, e.g. `2025-01-31T09:12:44Z`.
    pub fn created(&self) -> String {
        i64::try_from(self.started)
            .ok()
            .and_then(|seconds| time::OffsetDateTime::from_unix_timestamp(seconds).ok())
            .and_then(|at| {
                at.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default()
    }

    /// Whether the registered process is still running (and is still the same process).
    pub fn is_alive(&self) -> bool {
        process_is_alive(self.pid, self.process_start)
    }

    /// Asks the registered process to stop (SIGTERM), as Ctrl-C would. Returns `false`
    /// when it is already gone; never signals a process that merely reuses its pid.
    pub fn terminate(&self) -> io::Result<bool> {
        let Some(pid) = signalable(self.pid) else {
            return Ok(false);
        };
        if !self.is_alive() {
            return Ok(false);
        }
        match kill(pid, Signal::SIGTERM) {
            Ok(()) => Ok(true),
            Err(Errno::ESRCH) => Ok(false),
            Err(errno) => Err(io::Error::from(errno)),
        }
    }

    /// Whether this entry answers for `app_id` in `namespace`. No namespace asked:
    /// any; an entry without a namespace is in Dapr's `default` one.
    pub fn matches(&self, app_id: &str, namespace: Option<&str>) -> bool {
        self.app_id == app_id
            && namespace.is_none_or(|wanted| {
                self.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE) == wanted
            })
    }
}

/// The namespace of a sidecar that names none, as in Dapr.
pub const DEFAULT_NAMESPACE: &str = "default";

/// A sidecar's place in the registry: its file exists while this value does.
#[derive(Debug)]
pub struct Registration {
    path: PathBuf,
    /// Behind a lock so the sidecar's tasks (e.g. the app's health) can update it
    /// through a shared handle; held only while the file is written.
    entry: Mutex<Entry>,
    removed: bool,
}

/// Tells apart several registrations made by one process (tests, or several sidecars
/// in one process), whose pid is the same.
static SEQUENCE: AtomicU32 = AtomicU32::new(0);

impl Registration {
    /// Writes `entry` to `<home>/apps/` (creating the folder) and returns the handle
    /// that removes it again on drop. `entry.process_start` is filled in from the
    /// system when it is not set.
    pub fn register(home: &Path, mut entry: Entry) -> io::Result<Self> {
        let dir = home.join(APPS_DIR);
        fs::create_dir_all(&dir)?;
        if entry.process_start.is_none() {
            entry.process_start = process_start(entry.pid);
        }
        let name = format!(
            "{}-{}-{}.json",
            file_safe(&entry.app_id),
            entry.pid,
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        );
        let path = dir.join(name);
        write_atomically(&path, &entry)?;
        Ok(Self {
            path,
            entry: Mutex::new(entry),
            removed: false,
        })
    }

    /// What the file says.
    pub fn entry(&self) -> Entry {
        self.entry.lock().clone()
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Changes the entry and rewrites the file, e.g. to add the app's pid once
    /// `tandem run` has started it.
    pub fn update(&self, change: impl FnOnce(&mut Entry)) -> io::Result<()> {
        let mut entry = self.entry.lock();
        change(&mut entry);
        write_atomically(&self.path, &entry)
    }

    /// Removes the file now (dropping the registration does the same, silently).
    pub fn remove(mut self) -> io::Result<()> {
        self.removed = true;
        match fs::remove_file(&self.path) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if !self.removed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// The sidecars registered under `home` whose process is alive, sorted by app id, then
/// start time. Files of dead processes, and files that cannot be read as an entry, are
/// deleted on the way.
pub fn list(home: &Path) -> Vec<Entry> {
    let Ok(files) = fs::read_dir(home.join(APPS_DIR)) else {
        return Vec::new();
    };
    let mut entries = Vec::new();
    for file in files.filter_map(Result::ok) {
        let path = file.path();
        let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
            continue;
        };
        if name.starts_with('.') {
            remove_if_stale_temp(&path);
            continue;
        }
        if !name.ends_with(".json") {
            continue;
        }
        let text = match fs::read(&path) {
            Ok(text) => text,
            // Its sidecar removed it since the folder was read.
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(_) => {
                let _ = fs::remove_file(&path);
                continue;
            }
        };
        match serde_json::from_slice::<Entry>(&text) {
            Ok(entry) if entry.is_alive() => entries.push(entry),
            Ok(entry) => {
                tracing::debug!(app_id = %entry.app_id, pid = entry.pid, "pruning the registry entry of a process that is gone");
                let _ = fs::remove_file(&path);
            }
            Err(error) => {
                tracing::debug!(file = %path.display(), "pruning an unreadable registry entry: {error}");
                let _ = fs::remove_file(&path);
            }
        }
    }
    entries.sort_by(|a, b| {
        (&a.app_id, a.started, a.pid, a.internal_port).cmp(&(
            &b.app_id,
            b.started,
            b.pid,
            b.internal_port,
        ))
    });
    entries
}

/// Writes the entry to a temporary file beside `path`, then renames it over `path`:
/// readers see the old file or the new one, never a part of one.
fn write_atomically(path: &Path, entry: &Entry) -> io::Result<()> {
    let name = path
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("entry");
    let temp = path.with_file_name(format!(".{name}.tmp"));
    let text = serde_json::to_vec_pretty(entry).map_err(io::Error::other)?;
    fs::write(&temp, text)?;
    fs::rename(&temp, path).inspect_err(|_| {
        let _ = fs::remove_file(&temp);
    })
}

/// A temporary file left by a writer that died between write and rename.
fn remove_if_stale_temp(path: &Path) {
    let stale = fs::metadata(path)
        .and_then(|metadata| metadata.modified())
        .ok()
        .and_then(|modified| modified.elapsed().ok())
        .is_some_and(|age| age > Duration::from_secs(60));
    if stale && path.extension().is_some_and(|ext| ext == "tmp") {
        let _ = fs::remove_file(path);
    }
}

/// The app id as a file name part: letters, digits, `-` and `_`; anything else `_`.
fn file_safe(app_id: &str) -> String {
    let safe: String = app_id
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe.is_empty() { "app".into() } else { safe }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// A pid that may be signalled: 0 and negative numbers address process groups, and 1
/// is init — never a sidecar.
fn signalable(pid: u32) -> Option<Pid> {
    i32::try_from(pid)
        .ok()
        .filter(|pid| *pid > 1)
        .map(Pid::from_raw)
}

/// Whether `pid` runs, and — when `start` is known and the system tells start times —
/// is the process that started then. A zombie (exited, not yet reaped) counts as gone.
pub(crate) fn process_is_alive(pid: u32, start: Option<u64>) -> bool {
    let Some(signal_pid) = signalable(pid) else {
        return false;
    };
    if let Some((state, started)) = proc_stat(pid) {
        return !matches!(state, 'Z' | 'X' | 'x') && start.is_none_or(|start| start == started);
    }
    // No /proc (macOS), or this process may not read it: ask the kernel. EPERM means
    // the process exists but belongs to someone else.
    matches!(kill(signal_pid, None), Ok(()) | Err(Errno::EPERM))
}

/// When `pid` started, in clock ticks since boot (Linux only).
pub(crate) fn process_start(pid: u32) -> Option<u64> {
    proc_stat(pid).map(|(_, started)| started)
}

/// The state letter and start time of `pid` from `/proc/<pid>/stat`.
fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// `/proc/<pid>/stat` is `pid (comm) state ppid ...`; `comm` may hold spaces and
/// parentheses, so the fields are counted from the last `)`. The state is field 3,
/// the start time field 22.
fn parse_stat(text: &str) -> Option<(char, u64)> {
    let (_, rest) = text.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let started = fields.nth(22 - 4)?.parse().ok()?;
    Some((state, started))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(app_id: &str, internal_port: u16) -> Entry {
        Entry::new(app_id, 3500, 50001, internal_port)
    }

    #[test]
    fn register_list_and_drop() {
        let home = tempfile::tempdir().unwrap();
        assert!(list(home.path()).is_empty(), "no folder yet: nothing");
        let mut orders = entry("orders", 40001);
        orders.app_port = Some(8000);
        orders.command = Some("python app.py".into());
        let registration = Registration::register(home.path(), orders.clone()).unwrap();
        assert!(registration.path().starts_with(home.path().join(APPS_DIR)));
        let listed = list(home.path());
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].app_id, "orders");
        assert_eq!(listed[0].app_port, Some(8000));
        assert_eq!(listed[0].command.as_deref(), Some("python app.py"));
        assert_eq!(listed[0].pid, std::process::id());
        assert!(
            listed[0].process_start.is_some() || !Path::new("/proc/self/stat").exists(),
            "the start time is recorded where the system tells it"
        );
        drop(registration);
        assert!(list(home.path()).is_empty(), "dropping removes the file");
    }

    #[test]
    fn remove_and_update() {
        let home = tempfile::tempdir().unwrap();
        let registration = Registration::register(home.path(), entry("cart", 1)).unwrap();
        registration
            .update(|entry| entry.app_pid = Some(4242))
            .unwrap();
        assert_eq!(list(home.path())[0].app_pid, Some(4242));
        let path = registration.path().to_owned();
        registration.remove().unwrap();
        assert!(!path.exists());
        let leftovers: Vec<_> = fs::read_dir(home.path().join(APPS_DIR)).unwrap().collect();
        assert!(leftovers.is_empty(), "no temporary files left behind");
    }

    #[test]
    fn sorted_by_app_id_then_start() {
        let home = tempfile::tempdir().unwrap();
        let mut late = entry("b", 2);
        late.started += 10;
        let _r1 = Registration::register(home.path(), late).unwrap();
        let _r2 = Registration::register(home.path(), entry("b", 1)).unwrap();
        let _r3 = Registration::register(home.path(), entry("a", 3)).unwrap();
        let ports: Vec<u16> = list(home.path())
            .iter()
            .map(|entry| entry.internal_port)
            .collect();
        assert_eq!(ports, [3, 1, 2]);
    }

    #[test]
    fn a_dead_process_is_pruned() {
        let home = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let mut dead = entry("gone", 5);
        dead.pid = pid;
        let registration = Registration::register(home.path(), dead).unwrap();
        let path = registration.path().to_owned();
        std::mem::forget(registration); // as if the process had been killed
        assert!(path.exists());
        assert!(list(home.path()).is_empty());
        assert!(!path.exists(), "the dead process's file is deleted");
    }

    #[test]
    fn a_reused_pid_is_not_the_registered_process() {
        let mut me = entry("me", 1);
        me.process_start = process_start(me.pid);
        if me.process_start.is_none() {
            return; // no /proc: pids are all there is
        }
        assert!(me.is_alive());
        me.process_start = me.process_start.map(|start| start + 1);
        assert!(
            !me.is_alive(),
            "same pid, other start time: another process"
        );
    }

    #[test]
    fn unreadable_files_are_pruned_and_others_ignored() {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join(APPS_DIR);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("broken.json"), "{ not json").unwrap();
        fs::write(dir.join("notes.txt"), "mine").unwrap();
        let _alive = Registration::register(home.path(), entry("ok", 7)).unwrap();
        let listed = list(home.path());
        assert_eq!(listed.len(), 1);
        assert!(!dir.join("broken.json").exists());
        assert!(dir.join("notes.txt").exists(), "not ours: left alone");
    }

    #[test]
    fn never_signals_group_or_init_pids() {
        for pid in [0, 1, u32::MAX] {
            let mut odd = entry("odd", 1);
            odd.pid = pid;
            assert!(!odd.is_alive());
            assert!(!odd.terminate().unwrap());
        }
    }

    #[test]
    fn namespaces() {
        let mut prod = entry("orders", 1);
        prod.namespace = Some("prod".into());
        let plain = entry("orders", 2);
        assert!(prod.matches("orders", None));
        assert!(prod.matches("orders", Some("prod")));
        assert!(!prod.matches("orders", Some("default")));
        assert!(plain.matches("orders", Some("default")));
        assert!(!plain.matches("cart", None));
    }

    #[test]
    fn stat_lines() {
        let line = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_stat(line), Some(('S', 987654)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn created_is_rfc3339() {
        let mut at = entry("a", 1);
        at.started = 1_700_000_000;
        assert_eq!(at.created(), "2023-11-14T22:13:20Z");
    }
}
