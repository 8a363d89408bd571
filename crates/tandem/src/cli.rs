//! Command-line flags, named as `dapr run` and `daprd` name them.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "tandem",
    about = "A Dapr-compatible application runtime: your app's sidecar, faster and smaller.",
    disable_version_flag = true
)]
pub struct Cli {
    /// Print the CLI and runtime versions (as `dapr --version`).
    #[arg(short = 'v', long = "version")]
    pub version: bool,
    #[command(flatten)]
    pub log: crate::personality::LogFormat,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the sidecar and your app next to it (like `dapr run`).
    Run(RunArgs),
    /// Run the sidecar alone; another process starts the app (like `daprd`).
    Sidecar(SidecarArgs),
    /// List the apps running on this machine (like `dapr list`).
    List(crate::apps::ListArgs),
    /// Stop running apps and their sidecars by app id (like `dapr stop`).
    Stop(crate::apps::StopArgs),
    /// Publish an event through a running app's sidecar (like `dapr publish`).
    Publish(crate::client::PublishArgs),
    /// Invoke a method of a running app (like `dapr invoke`).
    Invoke(crate::client::InvokeArgs),
    /// Print the CLI and runtime versions (like `dapr version`).
    Version(crate::personality::VersionArgs),
    /// Internal: started by `run` to start the app and stop it when `run` ends.
    #[command(name = "__guard", hide = true)]
    Guard(GuardArgs),
}

#[derive(Args, Clone)]
pub struct GuardArgs {
    /// The app's command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Args, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    pub sidecar: SidecarArgs,
    /// A run file (`dapr.yaml`, or a folder holding one): start every app it lists.
    #[arg(short = 'f', long = "run-file", value_name = "FILE")]
    pub run_file: Option<PathBuf>,
    /// Where `dapr run` looks for daprd (accepted; tandem is its own runtime).
    #[arg(long = "runtime-path", value_name = "PATH")]
    pub runtime_path: Option<PathBuf>,
    /// The app's command and its arguments: after `--`, or simply after the flags, as
    /// `dapr run` takes it (everything from the first argument that is not a flag of
    /// `run` on is the app's). Without one, the sidecar runs alone until stopped.
    #[arg(trailing_var_arg = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Args, Clone)]
pub struct SidecarArgs {
    /// The app's id: how other apps and components know it (default: a fresh random
    /// name, as `dapr run` makes one).
    #[arg(short = 'a', long = "app-id")]
    pub app_id: Option<String>,
    /// The port the app listens on; leave out for an app that only calls the sidecar.
    #[arg(short = 'p', long = "app-port")]
    pub app_port: Option<u16>,
    /// The app's protocol: http, or grpc (accepted for apps that only call the sidecar).
    #[arg(short = 'P', long = "app-protocol", default_value = "http",
          value_parser = ["http", "https", "grpc", "grpcs", "h2c"])]
    pub app_protocol: String,
    /// The address the app listens on: the sidecar calls it there.
    #[arg(
        long = "app-channel-address",
        default_value = "127.0.0.1",
        value_name = "HOST"
    )]
    pub app_channel_address: String,
    /// Deprecated in Dapr: https (or grpcs with `--app-protocol grpc`) to reach the app.
    #[arg(long = "app-ssl", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false", action = ArgAction::Set)]
    pub app_ssl: bool,
    /// The HTTP API's port (default: a free one).
    #[arg(short = 'H', long = "dapr-http-port")]
    pub http_port: Option<u16>,
    /// The gRPC API's port (default: a free one).
    #[arg(short = 'G', long = "dapr-grpc-port")]
    pub grpc_port: Option<u16>,
    /// The port other sidecars call this one on (default: a free one).
    #[arg(short = 'I', long = "dapr-internal-grpc-port")]
    pub internal_port: Option<u16>,
    /// A folder (or file) of resource YAML; repeat, or separate with commas, for several.
    /// Default: ~/.tandem/components if it exists, else the embedded defaults.
    #[arg(
        long = "resources-path",
        visible_alias = "components-path",
        short = 'd',
        value_name = "PATH",
        value_delimiter = ','
    )]
    pub resources_paths: Vec<PathBuf>,
    /// A Dapr Configuration file: `spec.nameResolution` picks how other apps are found.
    #[arg(short = 'c', long = "config")]
    pub config: Option<PathBuf>,
    /// Log level: debug, info, warn or error.
    #[arg(long = "log-level", default_value = "info")]
    pub log_level: String,
    /// The log as JSON lines, as daprd writes it; `run`'s own lines as JSON objects
    /// (`time`, `status`, `msg`), as `dapr` writes them.
    #[arg(long = "log-as-json", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false", action = ArgAction::Set)]
    pub log_as_json: bool,
    /// Log every API call.
    #[arg(long = "enable-api-logging", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false", action = ArgAction::Set)]
    pub enable_api_logging: bool,
    /// Addresses the APIs listen on, comma-separated.
    #[arg(long = "dapr-listen-addresses", default_value = "127.0.0.1")]
    pub listen_addresses: String,
    /// A folder where the HTTP and gRPC APIs also listen on Unix sockets, named as
    /// Dapr names them: `dapr-http-<app id>.socket` and `dapr-grpc-<app id>.socket`.
    #[arg(short = 'u', long = "unix-domain-socket", value_name = "DIR")]
    pub unix_domain_socket: Option<PathBuf>,
    /// The metrics port, told to the app as `DAPR_METRICS_PORT` (default: a free one).
    /// tandem serves no metrics yet.
    #[arg(short = 'M', long = "metrics-port")]
    pub metrics_port: Option<u16>,
    /// Dapr's metrics switch (accepted; tandem serves no metrics yet).
    #[arg(long = "enable-metrics", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "true", action = ArgAction::Set)]
    pub enable_metrics: bool,
    /// Dapr's pprof endpoint (accepted; tandem has no profiling endpoint).
    #[arg(long = "enable-profiling", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false", action = ArgAction::Set)]
    pub enable_profiling: bool,
    /// The pprof endpoint's port (accepted with `--enable-profiling`).
    #[arg(long = "profile-port")]
    pub profile_port: Option<u16>,
    /// The actor placement service (accepted; tandem needs no placement service).
    #[arg(long = "placement-host-address", value_name = "HOST[:PORT]")]
    pub placement_host_address: Option<String>,
    /// The scheduler service (accepted; tandem needs no scheduler service).
    #[arg(long = "scheduler-host-address", value_name = "HOST[:PORT]")]
    pub scheduler_host_address: Option<String>,
    /// The largest request body the APIs accept, and the largest answer read from the
    /// app or another sidecar, in Dapr's units: `4Mi`, `16Mi`, `512Ki`, `10M`, or bytes.
    #[arg(long = "max-body-size", default_value = "4Mi", value_parser = parse_size)]
    pub max_body_size: usize,
    /// Dapr's HTTP read buffer (the largest request head), in Dapr's units (`4Ki`,
    /// `16Ki`): checked and accepted; tandem's HTTP server sizes its buffers itself.
    #[arg(long = "read-buffer-size", default_value = "4Ki", value_parser = parse_size)]
    pub read_buffer_size: usize,
    /// Addresses the internal port (where other sidecars call this one) listens on,
    /// comma-separated. Default: loopback only; every address when name resolution is
    /// by DNS (Kubernetes), where the callers are on other machines.
    #[arg(long = "internal-listen-addresses", value_name = "ADDRESSES")]
    pub internal_listen_addresses: Option<String>,
    /// At most this many deliveries and invocations in flight to the app at once; the
    /// others wait. -1: no limit.
    #[arg(long = "app-max-concurrency", default_value_t = -1, allow_negative_numbers = true)]
    pub app_max_concurrency: i64,
    /// Probe the app's health; while it is unhealthy, pub/sub delivery to it pauses
    /// and invocations of it are refused.
    #[arg(long = "enable-app-health-check")]
    pub enable_app_health_check: bool,
    /// The path probed with `GET` (HTTP apps).
    #[arg(long = "app-health-check-path", default_value = "/healthz")]
    pub app_health_check_path: String,
    /// Seconds between health probes (0 or less: the default).
    #[arg(
        long = "app-health-probe-interval",
        default_value_t = 5,
        allow_negative_numbers = true
    )]
    pub app_health_probe_interval: i64,
    /// Milliseconds one health probe may take (0 or less: the default).
    #[arg(
        long = "app-health-probe-timeout",
        default_value_t = 500,
        allow_negative_numbers = true
    )]
    pub app_health_probe_timeout: i64,
    /// Failed probes in a row before the app is unhealthy (below 1: the default).
    #[arg(
        long = "app-health-threshold",
        default_value_t = 3,
        allow_negative_numbers = true
    )]
    pub app_health_threshold: i64,
}

/// A size as Dapr's `--max-body-size` takes it (a Kubernetes quantity): a number with
/// an optional suffix, binary (`Ki`, `Mi`, `Gi`, `Ti`) or decimal (`k`, `M`, `G`, `T`).
pub fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let unit: f64 = match suffix {
        "" => 1.0,
        "k" | "K" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "unknown unit '{other}' in '{text}': use a number of bytes or a suffix such as Ki, Mi, Gi (e.g. 4Mi)"
            ));
        }
    };
    let number: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a size such as 4Mi"))?;
    let bytes = (number * unit).round();
    if !(1.0..=usize::MAX as f64).contains(&bytes) {
        return Err(format!("'{text}' is not a usable size: at least 1 byte"));
    }
    Ok(bytes as usize)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_in_daprs_units() {
        assert_eq!(parse_size("4Mi"), Ok(4 << 20));
        assert_eq!(parse_size("16Mi"), Ok(16 << 20));
        assert_eq!(parse_size("512Ki"), Ok(512 << 10));
        assert_eq!(parse_size("10M"), Ok(10_000_000));
        assert_eq!(parse_size("1.5Gi"), Ok(3 << 29));
        assert_eq!(parse_size("4194304"), Ok(4194304));
        for bad in [
            "",
            "Mi",
            "4MB",
            "-1",
            "0",
            "4 Mi",
            "99999999999999999999999Ti",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
