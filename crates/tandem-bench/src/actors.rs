//! Actors: method calls through the sidecar to an actor host app, against the same app
//! serving the same handler as a plain route. Activation: each call a new actor id, at a
//! fixed rate (open loop), so every call claims an owner record in the embedded store
//! and activates the actor; warm calls: a closed loop over ids already active.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::body::Bytes;
use axum::routing::{get, put};

use crate::load::HttpConnection;
use crate::procs::{self, SidecarSpec};
use crate::startup;
use crate::stats::Latencies;

/// daprd's published activation p99 at 500 calls/s is 6.89 ms; tandem's target.
const ACTIVATION_P99_MAX_MS: f64 = 2.0;
/// The actor method's body, echoed.
const BODY: &[u8] = br#"{"n":12345678}"#;

pub struct ActorResults {
    pub rate: f64,
    pub clients: usize,
    pub activation_sidecar: Latencies,
    pub activation_direct: Latencies,
    pub activation_errors: u64,
    pub warm_sidecar: Latencies,
    pub warm_direct: Latencies,
    pub warm_secs: f64,
    pub sidecar_rss_kib: Option<u64>,
}

/// The actor host: `/dapr/config`, the actor method route and the same handler as a
/// plain route.
fn start_app(runtime: &tokio::runtime::Runtime) -> Result<u16> {
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let port = listener.local_addr()?.port();
        let echo = |body: Bytes| async move { body };
        let app = Router::new()
            .route(
                "/dapr/config",
                get(|| async { r#"{"entities":["BenchActor"],"actorIdleTimeout":"1h"}"# }),
            )
            .route(
                "/actors/BenchActor/{id}/method/{method}",
                put(echo).delete(|| async { "" }),
            )
            .route(
                "/actors/BenchActor/{id}",
                axum::routing::delete(|| async { "" }),
            )
            .route("/plain/{id}/method/{method}", put(echo));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok::<_, anyhow::Error>(port)
    })
}

fn put_request(port: u16, path: &str) -> Arc<Vec<u8>> {
    let mut request = format!(
        "PUT {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        BODY.len()
    )
    .into_bytes();
    request.extend_from_slice(BODY);
    Arc::new(request)
}

/// Open loop: `clients` connections share `rate` calls/s for `duration`, each call to
/// the path `path(client, k)` (a new actor id each time); latency from send to answer.
async fn paced(
    port: u16,
    clients: usize,
    rate: f64,
    duration: Duration,
    path: fn(usize, u64) -> String,
) -> Result<(Latencies, u64)> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let start = Instant::now() + Duration::from_millis(50);
    let end = start + duration;
    let mut tasks = Vec::new();
    for index in 0..clients {
        let mut connection =
            HttpConnection::connect(address, put_request(port, &path(index, 0)), 200).await?;
        tasks.push(tokio::spawn(async move {
            let (mut nanos, mut errors) = (Vec::new(), 0u64);
            for k in 0u64.. {
                let offset = (index as f64 + (k * clients as u64) as f64) / rate;
                let scheduled = start + Duration::from_secs_f64(offset);
                if scheduled >= end {
                    break;
                }
                connection.set_request(put_request(port, &path(index, k)));
                tokio::time::sleep_until(scheduled.into()).await;
                let sent = Instant::now();
                match connection.publish().await {
                    Ok(()) => nanos.push(sent.elapsed().as_nanos() as u64),
                    Err(_) => errors += 1,
                }
            }
            (nanos, errors)
        }));
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    for task in tasks {
        let (nanos, e) = task.await.context("a client task panicked")?;
        all.extend(nanos);
        errors += e;
    }
    Ok((Latencies::from_nanos(all), errors))
}

/// Closed loop: each client calls its own already active actor as fast as it can.
async fn closed(port: u16, clients: usize, duration: Duration, prefix: &str) -> Result<Latencies> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut tasks = Vec::new();
    for index in 0..clients {
        let request = put_request(port, &format!("{prefix}/warm-{index}/method/Echo"));
        let mut connection = HttpConnection::connect(address, request, 200).await?;
        // Activate (and warm) first, unmeasured.
        for _ in 0..20 {
            connection.publish().await.map_err(anyhow::Error::msg)?;
        }
        tasks.push(tokio::spawn(async move {
            let end = Instant::now() + duration;
            let mut nanos = Vec::new();
            while Instant::now() < end {
                let sent = Instant::now();
                if connection.publish().await.is_ok() {
                    nanos.push(sent.elapsed().as_nanos() as u64);
                }
            }
            nanos
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.context("a client task panicked")?);
    }
    Ok(Latencies::from_nanos(all))
}

#[allow(clippy::too_many_arguments)]
pub fn run(
    runtime: &tokio::runtime::Runtime,
    tandem: &Path,
    scratch: &Path,
    clients: usize,
    rate: f64,
    duration: Duration,
    poll: Duration,
) -> Result<ActorResults> {
    let apps = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let app_port = start_app(&apps)?;
    let home = scratch.join("actors-home");
    let resources = scratch.join("actors-resources");
    for dir in [&home, &resources] {
        std::fs::create_dir_all(dir)?;
    }
    // The embedded default's kind of store, in the scratch folder: the actor state store.
    std::fs::write(
        resources.join("actorstore.yaml"),
        format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {{name: actorstore}}\n\
             spec:\n  type: state.sqlite\n  version: v1\n  metadata:\n  \
             - {{name: connectionString, value: \"{}\"}}\n  \
             - {{name: actorStateStore, value: \"true\"}}\n",
            home.join("actors.db").display()
        ),
    )?;
    let spec = SidecarSpec {
        binary: tandem.to_path_buf(),
        resources,
        home,
        log: scratch.join("actors-sidecar.log"),
        app_id: "bench-actors".into(),
        extra_args: vec!["--app-port".into(), app_port.to_string()],
    };
    let (_, _, sidecar) = startup::start_one(&spec, poll)?;
    let port = sidecar.http_port;
    // Wait until the app's actor type is hosted.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = procs::http_request(
            port,
            "PUT",
            "/v1.0/actors/BenchActor/probe/method/Echo",
            BODY,
        )?;
        if status == 200 {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the actor type was never hosted (last answer {status}); see {}",
                spec.log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    crate::progress(&format!(
        "actors: activation at {rate:.0} calls/s (a new id each call) via the sidecar, then the plain route — {duration:?} each"
    ));
    let (activation_sidecar, activation_errors) =
        runtime.block_on(paced(port, clients, rate, duration, |client, k| {
            format!("/v1.0/actors/BenchActor/new-{client}-{k}/method/Echo")
        }))?;
    let (activation_direct, _) =
        runtime.block_on(paced(app_port, clients, rate, duration, |client, k| {
            format!("/plain/new-{client}-{k}/method/Echo")
        }))?;
    crate::progress(&format!(
        "actors: warm calls, {clients} clients each on its own active actor, full speed — {duration:?} each way"
    ));
    let warm_sidecar =
        runtime.block_on(closed(port, clients, duration, "/v1.0/actors/BenchActor"))?;
    let warm_direct = runtime.block_on(closed(app_port, clients, duration, "/plain"))?;
    let sidecar_rss_kib = procs::hwm_kib(sidecar.pid());
    sidecar.stop();
    drop(apps);
    Ok(ActorResults {
        rate,
        clients,
        activation_sidecar,
        activation_direct,
        activation_errors,
        warm_sidecar,
        warm_direct,
        warm_secs: duration.as_secs_f64(),
        sidecar_rss_kib,
    })
}

pub fn table(out: &mut String, r: &ActorResults) {
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Actors: PUT method calls ({} B echoed) through the sidecar to an actor host vs. the same handler as a plain route; actor state store: SQLite (the embedded default's kind)",
        BODY.len()
    );
    let _ = writeln!(
        out,
        "{:<44} {:>9} {:>9} {:>9} {:>10}",
        "", "p50 ms", "p90 ms", "p99 ms", "calls/s"
    );
    let rows = [
        (
            format!("activation @{:.0}/s, sidecar", r.rate),
            &r.activation_sidecar,
            None,
        ),
        (
            format!("activation @{:.0}/s, plain route", r.rate),
            &r.activation_direct,
            None,
        ),
        (
            format!("warm, {} clients, sidecar", r.clients),
            &r.warm_sidecar,
            Some(r.warm_secs),
        ),
        (
            format!("warm, {} clients, plain route", r.clients),
            &r.warm_direct,
            Some(r.warm_secs),
        ),
    ];
    for (name, latencies, secs) in rows {
        let rate = secs.map_or_else(
            || "-".into(),
            |s| format!("{:.0}", latencies.len() as f64 / s),
        );
        let _ = writeln!(
            out,
            "{:<44} {:>9.3} {:>9.3} {:>9.3} {:>10}",
            name,
            latencies.percentile_ms(50.0),
            latencies.percentile_ms(90.0),
            latencies.percentile_ms(99.0),
            rate
        );
    }
    let p99 = r.activation_sidecar.percentile_ms(99.0);
    let warm_ratio = r.warm_sidecar.len() as f64 / r.warm_direct.len().max(1) as f64;
    let _ = writeln!(
        out,
        "activation p99 {p99:.3} ms (target <= {ACTIVATION_P99_MAX_MS} ms; daprd publishes 6.89 ms): {}; errors {}; warm rate vs plain {warm_ratio:.2}x; sidecar peak RSS {}",
        if p99 <= ACTIVATION_P99_MAX_MS {
            "PASS"
        } else {
            "MISS"
        },
        r.activation_errors,
        r.sidecar_rss_kib
            .map_or_else(|| "-".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0)),
    );
}
