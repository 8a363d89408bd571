//! The guard: what ties an app's life to its `tandem run`, however `run` ends.
//!
//! `run` does not start the app itself. It starts this binary again as
//! `tandem __guard -- CMD ARGS...`, in a process group of its own, and the guard starts
//! the app:
//!
//! - The app runs in a process group of its own too, so one signal reaches everything it
//!   started (`npm start` → node, a shell script → its commands). Its stdin is
//!   `/dev/null`; its stdout and stderr are the guard's, the pipes `run` prefixes with
//!   `== APP == `.
//! - The guard is a *child subreaper*: a process the app started and then left (a
//!   daemon that double-forks, a `setsid` child, a grandchild whose parent died) becomes
//!   the guard's child instead of init's, so the guard still finds and stops it.
//! - **The lifeline.** The guard's stdin is a pipe whose only write end is held by
//!   `run` (std's pipes are close-on-exec, so no other process inherits it). The
//!   kernel closes that end when `run` exits, *however* it exits — SIGKILL, a crash,
//!   the OOM killer, its whole process group killed — and the guard reads EOF. Nothing
//!   has to run in the dying process, and there is no startup window: the pipe exists
//!   before the guard does.
//! - When the lifeline closes, or the guard gets SIGTERM/SIGINT/SIGHUP, or the app
//!   exits on its own, the guard stops what is left: SIGTERM to the app's group and to
//!   every process descending from the guard, [`APP_GRACE`] to exit, then SIGKILL. Then
//!   it exits with the app's exit code (1 if a signal ended the app).
//!
//! `run` stops the app cleanly (Ctrl-C, SIGTERM, `tandem stop`, `/v1.0/shutdown`) by
//! closing the lifeline itself: the clean stop and the stop after `run` was killed are
//! one code path, exercised by every ordinary stop. If the guard itself is killed, `run`
//! kills the app's process group.
//!
//! Not chosen: `PR_SET_PDEATHSIG` on the app needs code between fork and exec
//! (`pre_exec`, unsafe), and it fires when the *thread* that forked exits, not the
//! process — with tokio's pools, a blocking thread retiring after 10 s idle would stop a
//! healthy app. A signal handler in `run` does nothing when `run` gets SIGKILL.
//!
//! The guard is small on purpose: plain threads and a channel, no async runtime.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal, kill, killpg};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;

/// How long the app gets to exit after SIGTERM before it is killed.
pub const APP_GRACE: Duration = Duration::from_secs(5);

/// How long the guard keeps killing after SIGKILL before it gives up on a process (one
/// stuck in the kernel, in uninterruptible sleep).
const KILL_PATIENCE: Duration = Duration::from_secs(3);

/// A line the guard writes to stderr for `run` to log, not to show as the app's output.
pub const NOTE: &str = "tandem-guard: ";

/// How often the guard looks for what is left while it stops the app.
const POLL: Duration = Duration::from_millis(20);

/// Exit codes for an app that could not be started, as a shell gives them.
const NOT_FOUND: u8 = 127;
const CANNOT_EXECUTE: u8 = 126;

/// How the app ended.
#[derive(Clone, Copy)]
enum AppEnd {
    Code(i32),
    Signal(Signal),
}

impl AppEnd {
    fn exit_code(self) -> u8 {
        match self {
            Self::Code(code) => u8::try_from(code).unwrap_or(1),
            Self::Signal(_) => 1,
        }
    }
}

enum Event {
    AppExited(AppEnd),
    /// `run` closed the lifeline, or died.
    LifelineClosed,
    /// SIGTERM, SIGINT or SIGHUP reached the guard itself.
    StopSignal,
}

/// `tandem __guard -- CMD ARGS...`: starts the app and stops it with `run`.
pub fn run(command: &[String]) -> u8 {
    let Some((program, args)) = command.split_first() else {
        note(format_args!("no app command given"));
        return 1;
    };
    if let Err(error) = nix::sys::prctl::set_child_subreaper(true) {
        note(format_args!(
            "cannot become a subreaper ({error}): processes the app leaves behind may outlive it"
        ));
    }
    // Started first: the app inherits the guard's signal mask (std does not reset it),
    // and the stop signals are blocked just below.
    let app = match Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
    {
        Ok(app) => app,
        Err(error) => {
            note(format_args!("cannot start the app `{program}`: {error}"));
            return match error.kind() {
                std::io::ErrorKind::NotFound => NOT_FOUND,
                _ => CANNOT_EXECUTE,
            };
        }
    };
    // Pids fit in an i32; the app leads its own group, so its pid is the group's id.
    let app = Pid::from_raw(app.id() as i32);
    // Blocked before any thread starts, so that every thread inherits the mask and the
    // signals wait for the watcher's `sigwait` instead of ending the guard. (Should one
    // come before this line, the guard ends and `run` stops the app's group itself.)
    let stop_signals = stop_signals();
    if let Err(error) = stop_signals.thread_block() {
        note(format_args!("cannot block the stop signals: {error}"));
    }
    let (events, next) = channel();
    watch_signals(stop_signals, events.clone());
    watch_lifeline(events.clone());
    // Started after the app: std waits for a child whose exec failed, and a reaper
    // waiting for any child could take that status first.
    reap_children(app, events);

    let mut end = None;
    match next.recv() {
        Ok(Event::AppExited(how)) => {
            if let AppEnd::Signal(signal) = how {
                note(format_args!("the app was killed by {signal}"));
            }
            end = Some(how);
        }
        Ok(Event::LifelineClosed | Event::StopSignal) | Err(_) => {}
    }
    stop_everything(app, &next, &mut end);
    end.map_or(1, AppEnd::exit_code)
}

fn stop_signals() -> SigSet {
    let mut signals = SigSet::empty();
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        signals.add(signal);
    }
    signals
}

/// Writes one note for `run` in a single write, so that it does not interleave with the
/// app's lines. Errors are ignored: with `run` gone there is nobody to tell.
fn note(message: std::fmt::Arguments) {
    let line = format!("{NOTE}{message}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// A thread with a small stack: these only wait.
fn spawn_thread(name: &str, work: impl FnOnce() + Send + 'static) {
    if let Err(error) = thread::Builder::new()
        .name(name.into())
        .stack_size(64 * 1024)
        .spawn(work)
    {
        note(format_args!("cannot start the {name} thread: {error}"));
    }
}

fn watch_signals(signals: SigSet, events: Sender<Event>) {
    spawn_thread("signals", move || {
        while signals.wait().is_ok() {
            if events.send(Event::StopSignal).is_err() {
                return;
            }
        }
    });
}

/// Reads stdin until EOF: `run` closed the lifeline, or died.
fn watch_lifeline(events: Sender<Event>) {
    spawn_thread("lifeline", move || {
        let mut stdin = std::io::stdin().lock();
        let mut buffer = [0u8; 64];
        loop {
            match stdin.read(&mut buffer) {
                Ok(0) => break,
                Ok(_) => {}
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = events.send(Event::LifelineClosed);
    });
}

/// Waits for every child — the app, and the orphans this subreaper inherits — so that
/// none stays a zombie, and reports the app's end.
fn reap_children(app: Pid, events: Sender<Event>) {
    spawn_thread("reaper", move || {
        loop {
            let end = match waitpid(Option::<Pid>::None, None) {
                Ok(WaitStatus::Exited(pid, code)) if pid == app => AppEnd::Code(code),
                Ok(WaitStatus::Signaled(pid, signal, _)) if pid == app => AppEnd::Signal(signal),
                Ok(_) | Err(Errno::EINTR) => continue,
                // No child right now; an orphan may still be handed over later.
                Err(_) => {
                    thread::sleep(POLL);
                    continue;
                }
            };
            let _ = events.send(Event::AppExited(end));
        }
    });
}

/// Stops the app's group and every process descending from the guard: SIGTERM, the
/// grace, then SIGKILL until none is left. Records the app's end when it comes.
fn stop_everything(app: Pid, events: &Receiver<Event>, end: &mut Option<AppEnd>) {
    let me = Pid::this();
    let started = Instant::now();
    let mut signal = Signal::SIGTERM;
    // Who got `signal` already; SIGTERM goes once to each process, SIGKILL on every look.
    let mut signalled = HashSet::new();
    let mut group_signalled = false;
    loop {
        let left = leftovers(me, app);
        if left.is_empty() {
            break;
        }
        if signal == Signal::SIGTERM && started.elapsed() >= APP_GRACE {
            note(format_args!(
                "the app did not stop within {APP_GRACE:?}; killing it"
            ));
            signal = Signal::SIGKILL;
        }
        if signal == Signal::SIGKILL && started.elapsed() >= APP_GRACE + KILL_PATIENCE {
            note(format_args!(
                "processes {left:?} are still there after SIGKILL; leaving them"
            ));
            break;
        }
        // The group as a whole catches a process forked since the last look; the group
        // is signalled only while it has members, so that a reused id is never hit.
        if signal == Signal::SIGKILL {
            signalled.clear();
            group_signalled = false;
        }
        if left.iter().any(|(_, in_group)| *in_group) && !group_signalled {
            let _ = killpg(app, signal);
            group_signalled = true;
        }
        for (pid, _) in &left {
            if signalled.insert(*pid) {
                let _ = kill(*pid, signal);
            }
        }
        note_app_end(events.recv_timeout(POLL), end);
    }
    // The reaper reports the app's status once it has waited for it.
    if end.is_none() {
        note_app_end(events.recv_timeout(Duration::from_secs(1)), end);
    }
}

fn note_app_end(event: Result<Event, RecvTimeoutError>, end: &mut Option<AppEnd>) {
    if let Ok(Event::AppExited(how)) = event {
        *end = Some(how);
    }
}

/// The live processes in the app's group or descending from the guard, each with
/// whether it is in the group.
fn leftovers(me: Pid, group: Pid) -> Vec<(Pid, bool)> {
    let processes = processes();
    let descendants = descendants(&processes, me);
    processes
        .iter()
        .filter(|process| !process.zombie && process.pid != me)
        .filter_map(|process| {
            let in_group = process.group == group;
            (in_group || descendants.contains(&process.pid)).then_some((process.pid, in_group))
        })
        .collect()
}

/// The app the guard `guard` started: its child that leads a process group of its own.
/// `None` until the guard has started it (or when it has already exited).
pub fn app_of(guard: u32) -> Option<u32> {
    let guard = Pid::from_raw(guard as i32);
    // The guard starts the app from its main thread, so the app is listed in that
    // thread's `children` — one small file instead of all of /proc, when the kernel
    // has it.
    let candidates: Vec<Pid> =
        match std::fs::read_to_string(format!("/proc/{guard}/task/{guard}/children")) {
            Ok(text) => text
                .split_whitespace()
                .filter_map(|pid| pid.parse().ok().map(Pid::from_raw))
                .collect(),
            Err(_) => processes()
                .iter()
                .filter(|process| process.parent == guard)
                .map(|process| process.pid)
                .collect(),
        };
    candidates
        .into_iter()
        .filter_map(process)
        .find(|process| process.parent == guard && process.group == process.pid && !process.zombie)
        .map(|process| process.pid.as_raw() as u32)
}

/// One line of `/proc/PID/stat`, the fields the guard needs.
#[derive(Debug, PartialEq)]
struct Process {
    pid: Pid,
    parent: Pid,
    group: Pid,
    zombie: bool,
}

fn process(pid: Pid) -> Option<Process> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(pid, &stat)
}

/// Every process on the machine (that this user may see).
fn processes() -> Vec<Process> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let pid: i32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            process(Pid::from_raw(pid))
        })
        .collect()
}

/// `PID (COMM) STATE PPID PGRP ...`: the command name may hold spaces and parentheses,
/// so the fields are read after the last `)`.
fn parse_stat(pid: Pid, stat: &str) -> Option<Process> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    let parent = Pid::from_raw(fields.next()?.parse().ok()?);
    let group = Pid::from_raw(fields.next()?.parse().ok()?);
    Some(Process {
        pid,
        parent,
        group,
        zombie: matches!(state, "Z" | "X"),
    })
}

/// The processes descending from `root`.
fn descendants(processes: &[Process], root: Pid) -> HashSet<Pid> {
    let mut children: HashMap<Pid, Vec<Pid>> = HashMap::new();
    for process in processes {
        children
            .entry(process.parent)
            .or_default()
            .push(process.pid);
    }
    let mut found = HashSet::new();
    let mut next = vec![root];
    while let Some(parent) = next.pop() {
        for child in children.get(&parent).into_iter().flatten() {
            if found.insert(*child) {
                next.push(*child);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_command_names() {
        let process = parse_stat(
            Pid::from_raw(42),
            "42 (a) (b c) S 7 42 42 0 -1 4194560 101 0 0 0",
        )
        .unwrap();
        assert_eq!(
            process,
            Process {
                pid: Pid::from_raw(42),
                parent: Pid::from_raw(7),
                group: Pid::from_raw(42),
                zombie: false
            }
        );
        assert!(
            parse_stat(Pid::from_raw(9), "9 (sh) Z 1 9 9")
                .unwrap()
                .zombie
        );
        assert_eq!(parse_stat(Pid::from_raw(9), "garbage"), None);
    }

    #[test]
    fn descendants_follow_the_tree() {
        let process = |pid, parent| Process {
            pid: Pid::from_raw(pid),
            parent: Pid::from_raw(parent),
            group: Pid::from_raw(pid),
            zombie: false,
        };
        let tree = [
            process(10, 1),
            process(11, 10),
            process(12, 11),
            process(13, 1),
        ];
        let found = descendants(&tree, Pid::from_raw(10));
        let expected: HashSet<Pid> = [11, 12].into_iter().map(Pid::from_raw).collect();
        assert_eq!(found, expected);
    }

    #[test]
    fn this_process_is_found_in_proc() {
        let me = process(Pid::this()).unwrap();
        assert_eq!(me.parent, nix::unistd::getppid());
        assert!(!me.zombie);
    }
}
