//! Run files: `tandem run -f dapr.yaml` reads Dapr's multi-app run template, checks all
//! of it, and turns every app into the `tandem run` (or, for an app without a command,
//! `tandem sidecar`) that `launch.rs` starts.
//!
//! The schema, defaults and precedence are those of the Dapr CLI (`pkg/runfileconfig`):
//!
//! - `version` (required), `name`, `common` (the settings every app shares) and `apps`.
//! - Paths in `common` and `appDirPath` are relative to the run file's folder; every
//!   other path of an app is relative to its `appDirPath`; `~/` is the home folder; every
//!   path must exist.
//! - An app's value wins over `common`'s when it is set (a zero, `false` or empty value is
//!   "not set", as Dapr merges), `env` is merged key by key.
//! - Resources: the app's `resourcesPath(s)`, else `<appDirPath>/.dapr/resources` if it
//!   exists, else `common`'s, else tandem's default. The Configuration likewise: the app's
//!   `configFilePath`, `<appDirPath>/.dapr/config.yaml`, `common`'s, none.
//! - `appID` defaults to the name of `appDirPath`; `appLogDestination` to
//!   `fileAndConsole`, `daprdLogDestination` to `file`.
//!
//! Everything is checked before anything starts, and an error names the file, the app
//! (its index and `appID`) and the field. A field tandem does not know is warned about
//! with the closest known name; a valid Dapr field tandem does not apply (yet) is
//! accepted with one warning. Whether tandem applies a field is asked of the `run`
//! command's own flags (clap), so a flag added to `tandem run` is used here at once.

pub mod launch;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use tandem_spec::{YamlNode as Node, closest};

/// The file `-f` looks for in a folder.
pub const DEFAULT_FILE_NAME: &str = "dapr.yaml";

/// A run file that cannot be used: where, and why.
#[derive(Debug)]
pub struct RunFileError {
    /// The run file, as the user named it.
    file: String,
    /// The app's index in `apps`, and its `appID` when the file gives one.
    app: Option<(usize, Option<String>)>,
    /// `common`, when the field is there.
    common: bool,
    field: Option<String>,
    message: String,
}

impl fmt::Display for RunFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.file)?;
        match &self.app {
            Some((index, Some(id))) => write!(f, "apps[{index}] (appID \"{id}\"): ")?,
            Some((index, None)) => write!(f, "apps[{index}]: ")?,
            None if self.common => write!(f, "common: ")?,
            None => {}
        }
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for RunFileError {}

/// Where an app's output, or its sidecar's, goes (Dapr's `appLogDestination` and
/// `daprdLogDestination`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogDestination {
    Console,
    File,
    FileAndConsole,
}

impl LogDestination {
    fn parse(text: &str) -> Option<Self> {
        // Dapr compares them exactly.
        match text {
            "console" => Some(Self::Console),
            "file" => Some(Self::File),
            "fileAndConsole" => Some(Self::FileAndConsole),
            _ => None,
        }
    }

    pub fn to_console(self) -> bool {
        matches!(self, Self::Console | Self::FileAndConsole)
    }

    pub fn to_file(self) -> bool {
        matches!(self, Self::File | Self::FileAndConsole)
    }
}

/// A run file, checked, with every app's settings merged and resolved.
#[derive(Debug)]
pub struct RunFile {
    /// The file as the user named it (for messages).
    pub shown: String,
    pub apps: Vec<AppSpec>,
    /// One line per thing tandem ignores or guesses at; shown before anything starts.
    pub warnings: Vec<String>,
}

/// One app of a run file.
#[derive(Debug)]
pub struct AppSpec {
    pub app_id: String,
    /// `appDirPath`, absolute: the app and its sidecar run there, its logs go to
    /// `<dir>/.dapr/logs`.
    pub dir: PathBuf,
    /// Empty: the sidecar alone.
    pub command: Vec<String>,
    /// `common.env` and the app's `env`, the app's winning.
    pub env: BTreeMap<String, String>,
    pub app_log: LogDestination,
    pub daprd_log: LogDestination,
    /// The flags of `tandem run`/`tandem sidecar` that carry the other settings:
    /// (flag without `--`, value; `None` for a switch).
    pub flags: Vec<(String, Option<String>)>,
}

impl AppSpec {
    /// `<appDirPath>/.dapr/logs`, where Dapr writes an app's log files.
    pub fn logs_dir(&self) -> PathBuf {
        self.dir.join(".dapr").join("logs")
    }

    /// The arguments after the subcommand, up to (not including) `--` and the command.
    pub fn args(&self) -> Vec<String> {
        let mut args = Vec::with_capacity(self.flags.len() * 2);
        for (flag, value) in &self.flags {
            args.push(format!("--{flag}"));
            args.extend(value.clone());
        }
        args
    }

    /// The subcommand that runs this app: `run` with a command, `sidecar` without.
    pub fn subcommand(&self) -> &'static str {
        if self.command.is_empty() {
            "sidecar"
        } else {
            "run"
        }
    }
}

/// How a field's value is read and passed on.
#[derive(Clone, Copy)]
enum Kind {
    /// `true`/`false`; passed as the bare flag when true.
    Switch,
    /// A whole number of 1 or more; 0 and less mean "not set", as in Dapr.
    Count,
    /// A port; 0 and less mean "not set" (Dapr's default is -1).
    Port,
    /// A size such as `4Mi`.
    Size,
    /// Dapr's log levels.
    LogLevel,
    Text,
}

/// Settings an app or `common` may give, passed on as the flag of the same meaning.
const SHARED: &[(&str, &str, Kind)] = &[
    ("apiListenAddresses", "dapr-listen-addresses", Kind::Text),
    ("enableProfiling", "enable-profiling", Kind::Switch),
    ("logLevel", "log-level", Kind::LogLevel),
    ("appMaxConcurrency", "app-max-concurrency", Kind::Count),
    ("placementHostAddress", "placement-host-address", Kind::Text),
    ("schedulerHostAddress", "scheduler-host-address", Kind::Text),
    ("maxBodySize", "max-body-size", Kind::Size),
    ("readBufferSize", "read-buffer-size", Kind::Size),
    (
        "enableAppHealthCheck",
        "enable-app-health-check",
        Kind::Switch,
    ),
    ("appHealthCheckPath", "app-health-check-path", Kind::Text),
    (
        "appHealthProbeInterval",
        "app-health-probe-interval",
        Kind::Count,
    ),
    (
        "appHealthProbeTimeout",
        "app-health-probe-timeout",
        Kind::Count,
    ),
    ("appHealthThreshold", "app-health-threshold", Kind::Count),
    ("enableApiLogging", "enable-api-logging", Kind::Switch),
    ("runtimePath", "runtime-path", Kind::Text),
];

/// Settings only an app gives (Dapr ignores them in `common`).
const APP_ONLY: &[(&str, &str, Kind)] = &[
    ("appChannelAddress", "app-channel-address", Kind::Text),
    ("appPort", "app-port", Kind::Port),
    ("daprHTTPPort", "dapr-http-port", Kind::Port),
    ("daprGRPCPort", "dapr-grpc-port", Kind::Port),
    (
        "daprInternalGRPCPort",
        "dapr-internal-grpc-port",
        Kind::Port,
    ),
    ("metricsPort", "metrics-port", Kind::Port),
    ("profilePort", "profile-port", Kind::Port),
    ("unixDomainSocket", "unix-domain-socket", Kind::Text),
];

/// Fields read by hand, shared by apps and `common`.
const SHARED_SPECIAL: &[&str] = &[
    "configFilePath",
    "resourcesPath",
    "resourcesPaths",
    "appProtocol",
    "appSSL",
    "env",
    "appLogDestination",
    "daprdLogDestination",
    // Dapr CLI before 1.15: `maxBodySize` in MB and `readBufferSize` in KB.
    "daprHTTPMaxRequestSize",
    "daprHTTPReadBufferSize",
];

/// Fields read by hand, only in an app.
const APP_SPECIAL: &[&str] = &[
    "appID",
    "appDirPath",
    "command",
    "containerImage",
    "containerImagePullPolicy",
    "createService",
];

const TOP: &[&str] = &["version", "name", "common", "apps"];

const PROTOCOLS: &[&str] = &["http", "grpc", "https", "grpcs", "h2c"];
const LOG_LEVELS: &[&str] = &["debug", "info", "warn", "error", "fatal", "panic"];
const PULL_POLICIES: &[&str] = &["Always", "Never", "IfNotPresent"];

/// One section's settings (`common`, or an app's own) as the file gives them.
#[derive(Default)]
struct Section {
    config: Option<PathBuf>,
    resources: Vec<PathBuf>,
    env: BTreeMap<String, String>,
    app_log: Option<LogDestination>,
    daprd_log: Option<LogDestination>,
    protocol: Option<String>,
    app_ssl: bool,
    /// Field → its value for the flag (`None`: a switch that is on), in table order.
    values: BTreeMap<&'static str, Option<String>>,
}

/// Where errors and warnings point.
struct Place<'a> {
    file: &'a str,
    app: Option<(usize, Option<String>)>,
    /// In `common` (then `app` is `None`).
    common: bool,
}

impl Place<'_> {
    fn error(&self, field: Option<&str>, message: impl Into<String>) -> RunFileError {
        RunFileError {
            file: self.file.to_owned(),
            app: self.app.clone(),
            common: self.common,
            field: field.map(str::to_owned),
            message: message.into(),
        }
    }

    fn field(&self, field: &str, message: impl Into<String>) -> RunFileError {
        self.error(Some(field), message)
    }

    fn warning(&self, field: &str, message: &str) -> String {
        self.field(field, message).to_string()
    }
}

/// The run file `-f` names: the file itself (`.yaml`/`.yml`), `dapr.yaml` in a folder,
/// or `-` for standard input.
pub fn locate(given: &Path) -> Result<PathBuf, String> {
    if given == Path::new("-") {
        return Ok(given.to_owned());
    }
    let metadata = std::fs::metadata(given)
        .map_err(|error| format!("cannot read the run file {}: {error}", given.display()))?;
    if metadata.is_dir() {
        let file = given.join(DEFAULT_FILE_NAME);
        if !file.is_file() {
            return Err(format!(
                "{} holds no {DEFAULT_FILE_NAME}: give the run file itself, or its folder",
                given.display()
            ));
        }
        return Ok(file);
    }
    let yaml = given
        .extension()
        .is_some_and(|extension| extension == "yaml" || extension == "yml");
    if !yaml {
        return Err(format!(
            "the run file {} is not a YAML file (.yaml or .yml)",
            given.display()
        ));
    }
    Ok(given.to_owned())
}

impl RunFile {
    /// Reads and checks the run file `-f` names.
    pub fn read(given: &Path) -> Result<Self, RunFileError> {
        let bare = |message: String| RunFileError {
            file: given.display().to_string(),
            app: None,
            common: false,
            field: None,
            message,
        };
        let path = locate(given).map_err(bare)?;
        let shown = if path == Path::new("-") {
            "<stdin>".to_owned()
        } else {
            path.display().to_string()
        };
        let text = if path == Path::new("-") {
            std::io::read_to_string(std::io::stdin())
        } else {
            std::fs::read_to_string(&path)
        }
        .map_err(|error| RunFileError {
            file: shown.clone(),
            ..bare(format!("cannot read it: {error}"))
        })?;
        // Standard input: relative paths are relative to the current folder.
        let folder = match path.parent() {
            Some(parent) if path != Path::new("-") => parent.to_owned(),
            _ => PathBuf::from("."),
        };
        let base = std::path::absolute(&folder).unwrap_or(folder);
        parse(&shown, &text, &base)
    }
}

/// Parses a run file's `text`; `base` is its folder.
fn parse(shown: &str, text: &str, base: &Path) -> Result<RunFile, RunFileError> {
    let top = Place {
        file: shown,
        app: None,
        common: false,
    };
    let root: Node = yaml_serde::from_str(text)
        .map_err(|error| top.error(None, format!("YAML syntax error: {error}")))?;
    let Node::Map(entries) = &root else {
        return Err(top.error(
            None,
            "expected a mapping with `version`, `common` and `apps`",
        ));
    };
    let mut warnings = Vec::new();
    for (key, _) in entries {
        let name = key.scalar_text().unwrap_or_default();
        if !TOP.contains(&name.as_str()) {
            warnings.push(unknown(&top, &name, TOP.iter().copied()));
        }
    }
    match root.get("version") {
        None | Some(Node::Null) => {
            return Err(top.field("version", "required, and missing (write `version: 1`)"));
        }
        Some(Node::Unsigned(version)) if *version > 0 => {}
        Some(other) => {
            return Err(top.field(
                "version",
                format!(
                    "expected a version number such as 1, found {}",
                    found(other)
                ),
            ));
        }
    }
    if let Some(name) = root.get("name") {
        text_of(name).map_err(|message| top.field("name", message))?;
    }
    let common_place = Place {
        file: shown,
        app: None,
        common: true,
    };
    let common = match root.get("common") {
        None | Some(Node::Null) => Section::default(),
        Some(node) => read_section(node, &common_place, base, false, &mut warnings)?,
    };
    let apps = match root.get("apps") {
        Some(Node::List(apps)) if !apps.is_empty() => apps,
        None | Some(Node::Null | Node::List(_)) => {
            return Err(top.field("apps", "no apps to run: list at least one"));
        }
        Some(other) => {
            return Err(top.field(
                "apps",
                format!("expected a list of apps, found {}", found(other)),
            ));
        }
    };
    let mut specs = Vec::with_capacity(apps.len());
    for (index, node) in apps.iter().enumerate() {
        let app_id = node.get("appID").and_then(|id| text_of(id).ok().flatten());
        let place = Place {
            file: shown,
            app: Some((index, app_id)),
            common: false,
        };
        specs.push(read_app(node, &place, base, &common, &mut warnings)?);
    }
    check_distinct(shown, &specs, &mut warnings)?;
    warnings.extend(unapplied(shown, &mut specs));
    Ok(RunFile {
        shown: shown.to_owned(),
        apps: specs,
        warnings,
    })
}

/// One app: its own section merged over `common`, then its flags.
fn read_app(
    node: &Node,
    place: &Place,
    base: &Path,
    common: &Section,
    warnings: &mut Vec<String>,
) -> Result<AppSpec, RunFileError> {
    if !matches!(node, Node::Map(_)) {
        return Err(place.error(
            None,
            format!(
                "expected a mapping of the app's fields (appID, appDirPath, command, ...), found {}",
                found(node)
            ),
        ));
    }
    let dir_text = match node.get("appDirPath") {
        Some(value) => text_of(value).map_err(|message| place.field("appDirPath", message))?,
        None => None,
    };
    let Some(dir_text) = dir_text else {
        return Err(place.field(
            "appDirPath",
            "required, and missing: the app's folder, relative to the run file",
        ));
    };
    let dir = resolve(base, &dir_text).map_err(|message| place.field("appDirPath", message))?;
    if !dir.is_dir() {
        return Err(place.field("appDirPath", format!("{} is not a folder", dir.display())));
    }
    // Every other path of an app is relative to its folder.
    let own = read_section(node, place, &dir, true, warnings)?;
    let app_id = match node.get("appID") {
        Some(value) => text_of(value).map_err(|message| place.field("appID", message))?,
        None => None,
    };
    let app_id = match app_id {
        Some(id) => {
            if id.chars().any(char::is_whitespace) {
                return Err(place.field("appID", format!("\"{id}\" holds a space")));
            }
            id
        }
        None => dir
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .ok_or_else(|| {
                place.field(
                    "appID",
                    "missing, and the app's folder has no name to take it from",
                )
            })?,
    };
    let command = match node.get("command") {
        None | Some(Node::Null) => Vec::new(),
        Some(Node::List(items)) => {
            let mut command = Vec::with_capacity(items.len());
            for item in items {
                match item.scalar_text() {
                    Some(text) => command.push(text),
                    None => {
                        return Err(place.field(
                            "command",
                            format!("expected words, found {} among them", found(item)),
                        ));
                    }
                }
            }
            command
        }
        Some(other) => {
            return Err(place.field(
                "command",
                format!(
                    "expected a list such as [\"python3\", \"app.py\"], found {}",
                    found(other)
                ),
            ));
        }
    };
    if command
        .first()
        .is_some_and(|program| program.trim().is_empty())
    {
        return Err(place.field("command", "the program (its first word) is empty"));
    }
    if let Some(policy) = node.get("containerImagePullPolicy") {
        let policy = text_of(policy)
            .map_err(|message| place.field("containerImagePullPolicy", message))?
            .unwrap_or_default();
        if !policy.is_empty() && !PULL_POLICIES.contains(&policy.as_str()) {
            return Err(place.field(
                "containerImagePullPolicy",
                format!("\"{policy}\" is not one of {}", PULL_POLICIES.join(", ")),
            ));
        }
    }
    for field in [
        "containerImage",
        "containerImagePullPolicy",
        "createService",
    ] {
        if node.get(field).is_some() {
            warnings.push(place.warning(
                field,
                "used only when the run file deploys to Kubernetes (`dapr run -f -k`); ignored",
            ));
        }
    }

    let mut flags = vec![("app-id".to_owned(), Some(app_id.clone()))];
    // Resources and Configuration: the app's own, its `.dapr` folder, then `common`'s.
    let local = dir.join(".dapr");
    let resources = if !own.resources.is_empty() {
        own.resources.clone()
    } else if local.join("resources").is_dir() {
        vec![local.join("resources")]
    } else {
        common.resources.clone()
    };
    for path in resources {
        flags.push((
            "resources-path".to_owned(),
            Some(path.display().to_string()),
        ));
    }
    let config = own
        .config
        .clone()
        .or_else(|| Some(local.join("config.yaml")).filter(|file| file.is_file()))
        .or_else(|| common.config.clone());
    if let Some(config) = config {
        flags.push(("config".to_owned(), Some(config.display().to_string())));
    }
    // `appSSL` turns http into https and grpc into grpcs, as the Dapr CLI does.
    let protocol = own.protocol.clone().or_else(|| common.protocol.clone());
    let app_ssl = own.app_ssl || common.app_ssl;
    let protocol = match (protocol.as_deref(), app_ssl) {
        (None | Some("http"), true) => Some("https".to_owned()),
        (Some("grpc"), true) => Some("grpcs".to_owned()),
        (other, _) => other.map(str::to_owned),
    };
    if let Some(protocol) = protocol {
        flags.push(("app-protocol".to_owned(), Some(protocol)));
    }
    for (field, flag, _) in SHARED.iter().chain(APP_ONLY) {
        let value = own.values.get(field).or_else(|| common.values.get(field));
        if let Some(value) = value {
            flags.push(((*flag).to_owned(), value.clone()));
        }
    }
    let mut env = common.env.clone();
    env.extend(own.env);
    Ok(AppSpec {
        app_id,
        dir,
        command,
        env,
        app_log: own
            .app_log
            .or(common.app_log)
            .unwrap_or(LogDestination::FileAndConsole),
        daprd_log: own
            .daprd_log
            .or(common.daprd_log)
            .unwrap_or(LogDestination::File),
        flags,
    })
}

/// The settings of `common` (`in_app` false) or of one app; paths resolved from `base`.
fn read_section(
    node: &Node,
    place: &Place,
    base: &Path,
    in_app: bool,
    warnings: &mut Vec<String>,
) -> Result<Section, RunFileError> {
    let Node::Map(entries) = node else {
        return Err(place.error(
            None,
            format!("expected a mapping of settings, found {}", found(node)),
        ));
    };
    let mut section = Section::default();
    let mut single_resources = Vec::new();
    for (key, value) in entries {
        let Some(name) = key.scalar_text() else {
            return Err(place.error(None, "a field's name must be a word"));
        };
        let field = name.as_str();
        let error = |message: String| place.field(field, message);
        if let Some((field, _, kind)) = SHARED
            .iter()
            .chain(if in_app { APP_ONLY } else { &[] })
            .find(|(known, _, _)| *known == field)
        {
            if let Some(value) = read_value(*kind, value).map_err(error)? {
                section.values.insert(field, value);
            }
            continue;
        }
        match field {
            "configFilePath" => {
                if let Some(text) = text_of(value).map_err(error)? {
                    section.config = Some(resolve(base, &text).map_err(error)?);
                }
            }
            "resourcesPaths" => {
                let paths = match value {
                    Node::Null => Vec::new(),
                    Node::List(items) => items
                        .iter()
                        .map(text_of)
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(error)?
                        .into_iter()
                        .flatten()
                        .collect(),
                    other => {
                        return Err(error(format!(
                            "expected a list of folders, found {}",
                            found(other)
                        )));
                    }
                };
                for path in paths {
                    section.resources.push(resolve(base, &path).map_err(error)?);
                }
            }
            "resourcesPath" => {
                // Dapr adds it after `resourcesPaths`.
                if let Some(text) = text_of(value).map_err(error)? {
                    let path = resolve(base, &text).map_err(error)?;
                    single_resources.push(("resourcesPath", path));
                }
            }
            "appProtocol" => {
                if let Some(text) = text_of(value).map_err(error)? {
                    let protocol = text.to_ascii_lowercase();
                    if !PROTOCOLS.contains(&protocol.as_str()) {
                        return Err(error(format!(
                            "\"{text}\" is not one of {}",
                            PROTOCOLS.join(", ")
                        )));
                    }
                    section.protocol = Some(protocol);
                }
            }
            "appSSL" => section.app_ssl = switch(value).map_err(error)?,
            "env" => match value {
                Node::Null => {}
                Node::Map(pairs) => {
                    for (key, value) in pairs {
                        let Some(key) = key.scalar_text() else {
                            return Err(error("a variable's name must be a word".into()));
                        };
                        let value = match value {
                            Node::Null => String::new(),
                            other => other.scalar_text().ok_or_else(|| {
                                error(format!("{key}: expected a value, found {}", found(other)))
                            })?,
                        };
                        section.env.insert(key, value);
                    }
                }
                other => {
                    return Err(error(format!(
                        "expected a mapping of variables (NAME: value), found {}",
                        found(other)
                    )));
                }
            },
            "appLogDestination" | "daprdLogDestination" => {
                if let Some(text) = text_of(value).map_err(error)? {
                    let destination = LogDestination::parse(&text).ok_or_else(|| {
                        error(format!(
                            "\"{text}\" is not one of console, file, fileAndConsole"
                        ))
                    })?;
                    if field == "appLogDestination" {
                        section.app_log = Some(destination);
                    } else {
                        section.daprd_log = Some(destination);
                    }
                }
            }
            "daprHTTPMaxRequestSize" | "daprHTTPReadBufferSize" => {
                let (new, flag_field, unit) = if field == "daprHTTPMaxRequestSize" {
                    ("maxBodySize", "maxBodySize", "Mi")
                } else {
                    ("readBufferSize", "readBufferSize", "Ki")
                };
                if let Some(Some(count)) = read_value(Kind::Count, value).map_err(error)? {
                    warnings.push(place.warning(
                        field,
                        &format!(
                            "the Dapr CLI's older name of `{new}` ({count}{unit}); use `{new}`"
                        ),
                    ));
                    section
                        .values
                        .entry(flag_field)
                        .or_insert(Some(format!("{count}{unit}")));
                }
            }
            _ if APP_SPECIAL.contains(&field) && in_app => {}
            _ if !in_app
                && (APP_SPECIAL.contains(&field)
                    || APP_ONLY.iter().any(|(known, _, _)| *known == field)) =>
            {
                warnings.push(place.warning(
                    field,
                    "set per app, not in `common` (Dapr ignores it there too); ignored",
                ));
            }
            _ => {
                let known = SHARED
                    .iter()
                    .chain(if in_app { APP_ONLY } else { &[] })
                    .map(|(name, _, _)| *name)
                    .chain(SHARED_SPECIAL.iter().copied())
                    .chain(if in_app { APP_SPECIAL } else { &[] }.iter().copied());
                warnings.push(unknown(place, field, known));
            }
        }
    }
    section
        .resources
        .extend(single_resources.into_iter().map(|(_, path)| path));
    Ok(section)
}

/// Reads a field of a table kind: `Ok(None)` when it is not set; else the flag's value
/// (`None` for a switch that is on).
fn read_value(kind: Kind, value: &Node) -> Result<Option<Option<String>>, String> {
    Ok(match kind {
        Kind::Switch => switch(value)?.then_some(None),
        Kind::Count => match whole(value) {
            Some(Ok(count)) if count > 0 => {
                if count > u128::from(u32::MAX) {
                    return Err(format!("{count} is too large"));
                }
                Some(Some(count.to_string()))
            }
            Some(Ok(_)) | None => None,
            Some(Err(())) => {
                return Err(format!("expected a whole number, found {}", found(value)));
            }
        },
        Kind::Port => match whole(value) {
            Some(Ok(port)) if port > 65535 => {
                return Err(format!("expected a port number (1 to 65535), found {port}"));
            }
            Some(Ok(0)) | None => None,
            Some(Ok(port)) => Some(Some(port.to_string())),
            Some(Err(())) => {
                return Err(format!("expected a port number, found {}", found(value)));
            }
        },
        Kind::Size => match text_of(value)? {
            Some(text) => {
                crate::cli::parse_size(&text)
                    .map_err(|_| format!("expected a size such as 4Mi, found {}", found(value)))?;
                Some(Some(text))
            }
            None => None,
        },
        Kind::LogLevel => match text_of(value)? {
            Some(text) => {
                let level = text.to_ascii_lowercase();
                if !LOG_LEVELS.contains(&level.as_str()) {
                    return Err(format!(
                        "\"{text}\" is not one of {}",
                        LOG_LEVELS.join(", ")
                    ));
                }
                Some(Some(level))
            }
            None => None,
        },
        Kind::Text => text_of(value)?.map(Some),
    })
}

/// A whole number: `None` when not set (null, or a negative number: Dapr's "unset"
/// default is -1), `Err` when the value is not a number.
fn whole(value: &Node) -> Option<Result<u128, ()>> {
    match value {
        Node::Null | Node::Negative(_) => None,
        Node::Unsigned(number) => Some(Ok(*number)),
        Node::Text(text) => {
            let text = text.trim();
            if let Some(negative) = text.strip_prefix('-')
                && !negative.is_empty()
                && negative.bytes().all(|byte| byte.is_ascii_digit())
            {
                return None;
            }
            Some(text.parse().map_err(|_| ()))
        }
        _ => Some(Err(())),
    }
}

/// `true`/`false` (and YAML 1.1's yes/no/on/off, which the Dapr CLI's parser reads).
fn switch(value: &Node) -> Result<bool, String> {
    match value {
        Node::Null => Ok(false),
        Node::Bool(flag) => Ok(*flag),
        Node::Text(text) => match text.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" => Ok(true),
            "false" | "no" | "off" => Ok(false),
            _ => Err(format!("expected true or false, found {}", found(value))),
        },
        _ => Err(format!("expected true or false, found {}", found(value))),
    }
}

/// A scalar as text (`Ok(None)` for null or empty); lists and mappings are refused.
fn text_of(value: &Node) -> Result<Option<String>, String> {
    match value {
        Node::Null => Ok(None),
        Node::List(_) | Node::Map(_) => Err(format!("expected a text, found {}", found(value))),
        scalar => Ok(scalar.scalar_text().filter(|text| !text.is_empty())),
    }
}

/// How a value reads in a message: `"abc"`, `70000`, `a list`.
fn found(value: &Node) -> String {
    match value {
        Node::Null => "nothing".to_owned(),
        Node::Text(text) => format!("\"{text}\""),
        Node::List(_) => "a list".to_owned(),
        Node::Map(_) => "a mapping".to_owned(),
        scalar => scalar.scalar_text().unwrap_or_default(),
    }
}

fn unknown<'a>(place: &Place, field: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    let message = match closest(field, known) {
        Some(near) => format!("unknown field (did you mean `{near}`?); ignored"),
        None => "unknown field; ignored".to_owned(),
    };
    place.warning(field, &message)
}

/// A path of the run file: `~/` is the home folder, a relative path is relative to
/// `base`; it must exist.
fn resolve(base: &Path, text: &str) -> Result<PathBuf, String> {
    let path = match text.strip_prefix("~/") {
        Some(rest) => dirs::home_dir()
            .ok_or_else(|| format!("{text}: there is no home folder to resolve `~` in"))?
            .join(rest),
        None => PathBuf::from(text),
    };
    let path = if path.is_absolute() {
        path
    } else {
        base.join(path)
    };
    // `a/../b` kept as written would depend on `a` existing; Dapr cleans the path.
    let path = clean(&path);
    if !path.exists() {
        return Err(format!("{} does not exist", path.display()));
    }
    Ok(path)
}

/// The path without `.` and with `..` applied, as Go's `filepath.Clean`.
fn clean(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut cleaned = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !cleaned.pop() {
                    cleaned.push("..");
                }
            }
            other => cleaned.push(other),
        }
    }
    cleaned
}

/// Two apps of one file must not claim the same port; the same app id twice is allowed
/// (Dapr starts both) but almost always a slip, so it is warned about.
fn check_distinct(
    shown: &str,
    apps: &[AppSpec],
    warnings: &mut Vec<String>,
) -> Result<(), RunFileError> {
    let mut ids = BTreeMap::new();
    let mut ports: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for (index, app) in apps.iter().enumerate() {
        let place = Place {
            file: shown,
            app: Some((index, Some(app.app_id.clone()))),
            common: false,
        };
        if let Some(first) = ids.insert(app.app_id.clone(), index) {
            warnings.push(place.warning(
                "appID",
                &format!("apps[{first}] has this id too: the two are one app, started twice"),
            ));
        }
        for (flag, value) in &app.flags {
            let Some((field, _, _)) = APP_ONLY
                .iter()
                .find(|(_, name, kind)| matches!(kind, Kind::Port) && name == flag)
            else {
                continue;
            };
            let Some(value) = value else { continue };
            if let Some((other, other_field)) =
                ports.insert(value.clone(), (index, (*field).to_owned()))
            {
                return Err(place.field(
                    field,
                    format!("port {value} is also apps[{other}]'s {other_field}"),
                ));
            }
        }
    }
    Ok(())
}

/// Drops the flags the command that runs an app does not have (yet), with one warning
/// per field; a switch is passed as `--flag=true` when the flag takes a value.
fn unapplied(shown: &str, apps: &mut [AppSpec]) -> Vec<String> {
    let cli = crate::cli::Cli::command();
    let mut warned = BTreeSet::new();
    let mut warnings = Vec::new();
    for app in apps {
        let Some(command) = cli.find_subcommand(app.subcommand()) else {
            continue;
        };
        let mut kept = Vec::with_capacity(app.flags.len());
        for (name, mut value) in std::mem::take(&mut app.flags) {
            let known = command.get_arguments().find(|candidate| {
                candidate.get_long() == Some(name.as_str())
                    || candidate
                        .get_all_aliases()
                        .is_some_and(|aliases| aliases.contains(&name.as_str()))
            });
            let field = SHARED
                .iter()
                .chain(APP_ONLY)
                .find(|(_, flag, _)| *flag == name)
                .map_or(name.as_str(), |(field, _, _)| *field)
                .to_owned();
            match known {
                Some(argument) => {
                    // A switch given to a flag that takes a value (`--flag true`).
                    if value.is_none() && argument.get_action().takes_values() {
                        value = Some("true".to_owned());
                    }
                    kept.push((name, value));
                }
                None => {
                    let message = match field.as_str() {
                        "placementHostAddress" | "schedulerHostAddress" => {
                            "tandem needs no placement or scheduler service; ignored"
                        }
                        "runtimePath" => "tandem is one program, with no daprd to find; ignored",
                        _ => "a Dapr setting tandem does not apply yet; ignored",
                    };
                    if warned.insert(field.clone()) {
                        warnings.push(format!("{shown}: {field}: {message}"));
                    }
                }
            }
        }
        app.flags = kept;
    }
    warnings
}

#[cfg(test)]
mod tests;
