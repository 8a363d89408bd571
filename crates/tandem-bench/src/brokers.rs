//! Brokers: publishing through the sidecar (`POST /v1.0/publish`, keep-alive HTTP/1.1)
//! against the same broker's client used in this process without a sidecar — the very
//! component the sidecar runs (lapin with publisher confirms, async-nats waiting for the
//! JetStream ack, rumqttc waiting for the PUBACK, krafka waiting for the Kafka produce
//! acknowledgement), built from the same metadata and
//! publishing a CloudEvent of the same size. The difference is the sidecar's hop: the
//! HTTP request, the CloudEvent envelope, the policy.
//!
//! RabbitMQ is the machine's on 127.0.0.1:5672 when it listens (each run on exchanges of
//! its own, none bound), NATS, Mosquitto and Kafka (tansu, from `.venv/bin` where
//! `scripts/test` unpacks it, or `TANDEM_TANSU`) private servers on free ports; a broker
//! whose server is not installed is skipped with a note.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tandem_components::pubsub::PubSub;
use tandem_spec::{Component, ComponentMetadata};

use crate::load::{self, Outcome, Shape, Target, Watch};
use crate::procs::{SidecarSpec, free_port};
use crate::startup;

/// The component's name in each broker's resources folder.
const PUBSUB: &str = "bench-broker";

/// One broker's figures.
pub struct BrokerResult {
    pub broker: &'static str,
    pub sidecar: Outcome,
    pub direct: Outcome,
}

/// A broker server this run started; killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn listening(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// Starts `binary args...`, logging to `log`, and waits until `port` accepts connections.
fn start(binary: &Path, args: &[String], port: u16, log: &Path) -> Result<Server> {
    let (stdout, stderr) = crate::procs::log_file(log)?;
    let child = Command::new(binary)
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let mut server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !listening(port) {
        if let Some(status) = server.0.try_wait()? {
            bail!(
                "{} exited ({status}); see {}",
                binary.display(),
                log.display()
            );
        }
        if Instant::now() > deadline {
            bail!("{} did not listen on {port} within 15 s", binary.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(server)
}

/// A broker ready to publish to: its component metadata and the server started for it.
struct Broker {
    name: &'static str,
    kind: &'static str,
    metadata: BTreeMap<String, String>,
    _server: Option<Server>,
}

fn broker(name: &'static str, kind: &'static str, dir: &Path) -> Result<Option<Broker>> {
    let found = |path: &str| Some(PathBuf::from(path)).filter(|path| path.exists());
    let run_id = std::process::id();
    let metadata = |pairs: &[(&str, String)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect::<BTreeMap<_, _>>()
    };
    Ok(match name {
        "rabbitmq" => listening(5672).then(|| Broker {
            name,
            kind,
            metadata: metadata(&[
                (
                    "connectionString",
                    "amqp://guest:guest@127.0.0.1:5672".into(),
                ),
                ("consumerID", format!("bench-{run_id}")),
                ("deletedWhenUnused", "true".into()),
            ]),
            _server: None,
        }),
        "jetstream" => match found("/usr/sbin/nats-server") {
            None => None,
            Some(binary) => {
                let port = free_port()?;
                let store = dir.join("nats");
                let args = ["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"]
                    .iter()
                    .map(ToString::to_string)
                    .chain([store.display().to_string()])
                    .collect::<Vec<_>>();
                let server = start(&binary, &args, port, &dir.join("nats.log"))?;
                Some(Broker {
                    name,
                    kind,
                    metadata: metadata(&[
                        ("natsURL", format!("nats://127.0.0.1:{port}")),
                        ("consumerID", "bench".into()),
                    ]),
                    _server: Some(server),
                })
            }
        },
        "mqtt" => match found("/usr/sbin/mosquitto") {
            None => None,
            Some(binary) => {
                let port = free_port()?;
                let config = dir.join("mosquitto.conf");
                std::fs::write(
                    &config,
                    format!("listener {port} 127.0.0.1\nallow_anonymous true\n"),
                )?;
                let args = vec!["-c".to_owned(), config.display().to_string()];
                let server = start(&binary, &args, port, &dir.join("mosquitto.log"))?;
                Some(Broker {
                    name,
                    kind,
                    metadata: metadata(&[
                        ("url", format!("tcp://127.0.0.1:{port}")),
                        ("consumerID", "bench".into()),
                    ]),
                    _server: Some(server),
                })
            }
        },
        "kafka" => {
            let tansu = std::env::var_os("TANDEM_TANSU").map_or_else(
                || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/tansu"),
                PathBuf::from,
            );
            match Some(tansu).filter(|path| path.exists()) {
                None => None,
                Some(binary) => {
                    let port = free_port()?;
                    let listener = format!("tcp://127.0.0.1:{port}");
                    let args = [
                        "broker",
                        "--listener-url",
                        &listener,
                        "--advertised-listener-url",
                        &listener,
                    ]
                    .map(ToString::to_string);
                    let server = start(&binary, &args, port, &dir.join("tansu.log"))?;
                    Some(Broker {
                        name,
                        kind,
                        metadata: metadata(&[
                            ("brokers", format!("127.0.0.1:{port}")),
                            ("authType", "none".into()),
                            ("consumerID", "bench".into()),
                        ]),
                        _server: Some(server),
                    })
                }
            }
        }
        other => unreachable!("run() names only known brokers, not '{other}'"),
    })
}

/// A CloudEvent like the one the sidecar wraps `payload` in, for the direct client.
fn cloud_event(payload: &[u8], topic: &str) -> Vec<u8> {
    let data = String::from_utf8_lossy(payload);
    format!(
        r#"{{"data":{data},"datacontenttype":"application/json","id":"0d6f5a3e-8c1b-4f8e-9a51-2b7c3d4e5f60","pubsubname":"{PUBSUB}","source":"bench","specversion":"1.0","time":"2026-12-04T07:00:00Z","topic":"{topic}","traceid":"00-00000000000000000000000000000000-0000000000000000-00","traceparent":"00-00000000000000000000000000000000-0000000000000000-00","tracestate":"","type":"com.dapr.event.sent"}}"#
    )
    .into_bytes()
}

/// Runs the section for each of `names` (comma separated).
pub fn run(
    names: &str,
    tandem: &Path,
    scratch: &Path,
    runtime: &tokio::runtime::Runtime,
    shape: Shape,
    payload: &Arc<Vec<u8>>,
    poll: Duration,
) -> Result<(Vec<BrokerResult>, Vec<String>)> {
    let mut results = Vec::new();
    let mut skipped = Vec::new();
    for name in names
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
    {
        let dir = scratch.join(format!("broker-{name}"));
        let resources = dir.join("resources");
        std::fs::create_dir_all(&resources)?;
        let (name, kind) = match name {
            "rabbitmq" => ("rabbitmq", "pubsub.rabbitmq"),
            "jetstream" => ("jetstream", "pubsub.jetstream"),
            "mqtt" => ("mqtt", "pubsub.mqtt3"),
            "kafka" => ("kafka", "pubsub.kafka"),
            other => {
                bail!("--brokers: unknown broker '{other}' (rabbitmq, jetstream, mqtt, kafka)")
            }
        };
        if !tandem_components::pubsub::registry()
            .kinds()
            .any(|known| known == kind)
        {
            skipped.push(format!("{name}: this build has no {kind}"));
            continue;
        }
        let Some(broker) = broker(name, kind, &dir)? else {
            skipped.push(format!(
                "{name}: its server is not installed or not running"
            ));
            continue;
        };
        let mut yaml = format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {PUBSUB}\nspec:\n  type: {}\n  version: v1\n  metadata:\n",
            broker.kind
        );
        for (key, value) in &broker.metadata {
            let _ = writeln!(yaml, "  - name: {key}\n    value: \"{value}\"");
        }
        std::fs::write(resources.join("pubsub.yaml"), yaml)?;
        let spec = SidecarSpec {
            binary: tandem.to_path_buf(),
            resources,
            home: dir.join("home"),
            log: dir.join("sidecar.log"),
            app_id: "bench".into(),
            extra_args: Vec::new(),
        };
        std::fs::create_dir_all(&spec.home)?;
        let (_, _, sidecar) = startup::start_one(&spec, poll)?;
        let component =
            ComponentMetadata::new(Component::new(PUBSUB, broker.kind), broker.metadata.clone());
        let direct: Arc<dyn PubSub> = runtime
            .block_on(tandem_components::pubsub::registry().build(&component))
            .with_context(|| format!("the {} client", broker.kind))?;
        let topic = format!("bench-{}", std::process::id());
        let sidecar_target = Target::Http {
            port: sidecar.http_port,
            pubsub: PUBSUB.into(),
            topic: format!("{topic}-sidecar"),
            payload: payload.clone(),
        };
        let direct_target = Target::InProcess {
            pubsub: direct,
            topic: format!("{topic}-direct"),
            event: Arc::new(cloud_event(payload, &topic)),
        };
        crate::progress(&format!(
            "broker {name}: sidecar HTTP publish, then the same component in-process — {} clients, {:?} warm-up + {:?} measured each",
            shape.clients, shape.warmup, shape.duration
        ));
        let through = runtime.block_on(load::run(
            &sidecar_target,
            shape,
            Watch {
                sidecar: Some(sidecar.pid()),
                redis: None,
            },
        ))?;
        let direct = runtime.block_on(load::run(&direct_target, shape, Watch::default()))?;
        sidecar.stop();
        results.push(BrokerResult {
            broker: broker.name,
            sidecar: through,
            direct,
        });
    }
    Ok((results, skipped))
}

/// The section's rows in the report.
pub fn table(out: &mut String, results: &[BrokerResult], skipped: &[String]) {
    if results.is_empty() && skipped.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\nPublish per broker: sidecar (HTTP) vs. the same client in-process"
    );
    let _ = writeln!(
        out,
        "  {:<10} {:>12} {:>9} {:>9} {:>12} {:>9} {:>9} {:>7} {:>8}",
        "broker",
        "sidecar/s",
        "p50 ms",
        "p99 ms",
        "direct/s",
        "p50 ms",
        "p99 ms",
        "ratio",
        "errors"
    );
    for result in results {
        let ms = |outcome: &Outcome, p: f64| outcome.latencies.percentile_ms(p);
        let _ = writeln!(
            out,
            "  {:<10} {:>12.0} {:>9.2} {:>9.2} {:>12.0} {:>9.2} {:>9.2} {:>6.2}x {:>8}",
            result.broker,
            result.sidecar.rate(),
            ms(&result.sidecar, 50.0),
            ms(&result.sidecar, 99.0),
            result.direct.rate(),
            ms(&result.direct, 50.0),
            ms(&result.direct, 99.0),
            result.sidecar.rate() / result.direct.rate().max(f64::MIN_POSITIVE),
            result.sidecar.errors + result.direct.errors,
        );
        for outcome in [&result.sidecar, &result.direct] {
            if let Some(error) = &outcome.first_error {
                let _ = writeln!(out, "    first error: {error}");
            }
        }
    }
    for note in skipped {
        let _ = writeln!(out, "  skipped {note}");
    }
}
