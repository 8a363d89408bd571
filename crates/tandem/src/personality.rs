//! Who this binary is: `tandem`, or — invoked under the name `dapr` (a symlink) — the
//! Dapr CLI's stand-in, so that scripts, Makefiles and READMEs full of `dapr ...` lines
//! run unchanged.
//!
//! The personality only changes names and the few things only the Dapr CLI does: help
//! and errors say `dapr`, a usage error exits 255 as cobra's does (`os.Exit(-1)`), and
//! `dapr init` / `dapr uninstall` — whatever their flags — say that nothing needs
//! installing. Every subcommand means the same under both names. Also here: the Dapr
//! CLI's status lines (`✅  ...` on stdout, `❌  ...` on stderr), which it prints
//! whether or not the output is a terminal, and `version`.

use std::ffi::OsString;
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Args, CommandFactory, FromArgMatches};

use crate::cli::{Cli, Command};

/// The name the binary answers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Personality {
    Tandem,
    Dapr,
}

static PERSONALITY: OnceLock<Personality> = OnceLock::new();

impl Personality {
    /// From `argv[0]`'s file name: `dapr` (or `dapr.exe`) is the Dapr CLI's stand-in.
    fn from_program(program: Option<&OsString>) -> Self {
        let name = program
            .and_then(|program| Path::new(program).file_name())
            .and_then(|name| name.to_str())
            .map(|name| name.strip_suffix(".exe").unwrap_or(name));
        if name == Some("dapr") {
            Self::Dapr
        } else {
            Self::Tandem
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Tandem => "tandem",
            Self::Dapr => "dapr",
        }
    }
}

/// This process's personality (`tandem` until [`parse`] has looked at `argv[0]`).
pub fn current() -> Personality {
    PERSONALITY.get().copied().unwrap_or(Personality::Tandem)
}

/// The command line's parser, named as this personality names itself.
pub fn command() -> clap::Command {
    let command = Cli::command();
    match current() {
        Personality::Tandem => command,
        Personality::Dapr => command.name("dapr").bin_name("dapr").about(
            "Dapr CLI, answered by tandem: `dapr run`, `list`, `stop`, `publish`, `invoke` and \
             `version` mean what they mean to Dapr; `init` and `uninstall` have nothing to do.",
        ),
    }
}

/// What `main` does with the command line.
pub enum Parsed {
    /// Run this.
    Cli(Box<Cli>),
    /// Already answered (help, a usage error, `dapr init`): exit with this code.
    Done(u8),
}

/// Reads the command line (`args` starts with the program, as `std::env::args_os`).
pub fn parse(args: Vec<OsString>) -> Parsed {
    let personality = *PERSONALITY.get_or_init(|| Personality::from_program(args.first()));
    if let Some(code) = nothing_to_install(&args) {
        return Parsed::Done(code);
    }
    let matches = match command().try_get_matches_from(args) {
        Ok(matches) => matches,
        Err(error) => return Parsed::Done(usage_error(error, personality)),
    };
    match Cli::from_arg_matches(&matches) {
        Ok(cli) => Parsed::Cli(Box::new(cli)),
        Err(error) => Parsed::Done(usage_error(error, personality)),
    }
}

/// Prints clap's message; help and version exit 0, a usage error 2 — or 255 under the
/// name `dapr`, as the Dapr CLI exits on one.
fn usage_error(error: clap::Error, personality: Personality) -> u8 {
    let _ = error.print();
    if !error.use_stderr() {
        0
    } else if personality == Personality::Dapr {
        255
    } else {
        2
    }
}

/// `init` and `uninstall`, with any flags: tandem is one binary that starts its sidecar
/// itself — no daprd to download, no containers, no placement or scheduler service.
fn nothing_to_install(args: &[OsString]) -> Option<u8> {
    let mut words = args.iter().skip(1).filter_map(|arg| arg.to_str());
    let mut first = words.next()?;
    if first == "--log-as-json" {
        LOG_AS_JSON.store(true, Ordering::Relaxed);
        first = words.next()?;
    }
    if args.iter().any(|arg| arg == "--log-as-json") {
        LOG_AS_JSON.store(true, Ordering::Relaxed);
    }
    let name = current().name();
    match first {
        "init" => {
            success(&format!(
                "Nothing to install: tandem starts the sidecar itself (`{name} run`), with an \
                 embedded pub/sub `pubsub` and state store `statestore` until you give components; \
                 no daprd binary, containers, placement or scheduler service are needed."
            ));
            Some(0)
        }
        "uninstall" => {
            success(&format!(
                "Nothing to uninstall: tandem installed nothing but its own binary. Its data (the \
                 embedded stores, the registry of running apps) is in {}.",
                crate::sidecar::tandem_home().display()
            ));
            Some(0)
        }
        _ => None,
    }
}

/// The help `dapr` with no command prints, on stdout, exit 0.
pub fn print_help() -> u8 {
    match command().print_help() {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

/// `version -o ...`.
#[derive(Args, Clone)]
pub struct VersionArgs {
    /// The output format: json, or the default text.
    #[arg(short = 'o', long = "output", default_value = "")]
    pub output: String,
    #[command(flatten)]
    pub log: LogFormat,
}

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `version` and `--version`: the Dapr CLI's two lines (its template's trailing space
/// after the CLI version included). tandem is both the CLI and the runtime.
pub fn print_version() -> u8 {
    print!("CLI version: {VERSION} \nRuntime version: {VERSION}\n");
    0
}

/// `version [-o json]`.
pub fn version(args: &VersionArgs) -> u8 {
    match args.output.as_str() {
        "" => print_version(),
        "json" => {
            let versions = serde_json::json!({
                "Cli version": VERSION,
                "Runtime version": VERSION,
            });
            println!("{versions}");
            0
        }
        _ => {
            failure("An invalid output format was specified.");
            1
        }
    }
}

/// The Dapr CLI's `--log-as-json`: its status lines as JSON objects.
#[derive(Args, Clone, Default)]
pub struct LogFormat {
    /// Print the status lines as JSON (`{"time":...,"status":...,"msg":...}`).
    #[arg(long = "log-as-json")]
    pub log_as_json: bool,
}

static LOG_AS_JSON: AtomicBool = AtomicBool::new(false);

/// Whether `--log-as-json` was given, before the command (as the Dapr CLI's root flag)
/// or after it; the status lines are JSON from then on.
pub fn use_log_format(cli: &Cli) {
    let after = match &cli.command {
        Some(Command::List(args)) => args.log.log_as_json,
        Some(Command::Stop(args)) => args.log.log_as_json,
        Some(Command::Publish(args)) => args.log.log_as_json,
        Some(Command::Invoke(args)) => args.log.log_as_json,
        Some(Command::Version(args)) => args.log.log_as_json,
        _ => false,
    };
    LOG_AS_JSON.store(cli.log.log_as_json || after, Ordering::Relaxed);
}

/// One status line: `<mark>  message`, or with `--log-as-json` the Dapr CLI's JSON
/// object with the time in UTC.
fn status(mark: &str, status: &str, message: &str) -> String {
    if !LOG_AS_JSON.load(Ordering::Relaxed) {
        return format!("{mark}  {message}");
    }
    let time = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    #[derive(serde::Serialize)]
    struct Line<'a> {
        time: String,
        status: &'a str,
        msg: &'a str,
    }
    let line = Line {
        time,
        status,
        msg: message,
    };
    serde_json::to_string(&line).unwrap_or_else(|_| message.to_owned())
}

/// `✅  message` on stdout.
pub fn success(message: &str) {
    println!("{}", status("✅", "success", message));
}

/// `❌  message` on stderr.
pub fn failure(message: &str) {
    eprintln!("{}", status("❌", "failure", message));
}

/// `⚠  message` on stdout (where the Dapr CLI prints its warnings).
pub fn warning(message: &str) {
    println!("{}", status("⚠", "warning", message));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_name_picks_the_personality() {
        let named = |name: &str| Personality::from_program(Some(&OsString::from(name)));
        assert_eq!(named("dapr"), Personality::Dapr);
        assert_eq!(named("/home/me/.local/bin/dapr"), Personality::Dapr);
        assert_eq!(named("dapr.exe"), Personality::Dapr);
        assert_eq!(named("tandem"), Personality::Tandem);
        assert_eq!(named("/usr/bin/daprd"), Personality::Tandem);
        assert_eq!(named("/x/dapr/tandem"), Personality::Tandem);
        assert_eq!(Personality::from_program(None), Personality::Tandem);
    }
}
