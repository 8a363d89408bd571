//! The Dapr CLI's other commands through the binary — `publish`, `invoke`, `version` —
//! and the `dapr` personality: the binary invoked through a symlink named `dapr` runs an
//! unchanged `dapr run ...` line, and `dapr init` has nothing to do.
//!
//! The apps are axum servers in the test process; their sidecars are `tandem sidecar`
//! processes sharing a private `TANDEM_HOME` (the registry `publish` and `invoke` look
//! the app up in), killed on drop.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::routing::any;
use common::Sidecar;
use parking_lot::Mutex;
use serde_json::{Value, json};

const PUBSUB: &str = "\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: pubsub
spec:
  type: pubsub.in-memory
  version: v1
";

/// What the app was sent: (method, path, query, content type, body).
type Calls = Arc<Mutex<Vec<(String, String, Option<String>, String, Value)>>>;

/// An app subscribed to `pubsub`/`orders` (route `/orders`) that records every call,
/// answers `fail` with a 500 and everything else with what it was sent.
async fn handle(
    State(calls): State<Calls>,
    method: Method,
    UrlPath(path): UrlPath<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, axum::Json<Value>) {
    if path == "dapr/subscribe" {
        return (
            StatusCode::OK,
            axum::Json(json!([{"pubsubname": "pubsub", "topic": "orders", "route": "/orders"}])),
        );
    }
    if path == "dapr/config" {
        // The sidecar asks at start, as daprd does; this app hosts no actors.
        return (StatusCode::NOT_FOUND, axum::Json(json!(null)));
    }
    let content_type = headers
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body: Value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    calls.lock().push((
        method.to_string(),
        path.clone(),
        query.clone(),
        content_type,
        body.clone(),
    ));
    if path == "fail" {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({"app": "failed"})),
        );
    }
    (
        StatusCode::OK,
        axum::Json(json!({"method": method.as_str(), "path": path, "query": query, "body": body})),
    )
}

async fn app() -> (u16, Calls) {
    let calls = Calls::default();
    let router = Router::new()
        .route("/{*path}", any(handle))
        .with_state(calls.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (port, calls)
}

/// A folder with the in-memory pub/sub `pubsub` in `resources/` and a `home/`.
fn place() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("resources")).unwrap();
    std::fs::write(dir.path().join("resources/pubsub.yaml"), PUBSUB).unwrap();
    dir
}

async fn sidecar(dir: &Path, app_id: &str, app_port: u16) -> Sidecar {
    let (dir, app_id) = (dir.to_owned(), app_id.to_owned());
    tokio::task::spawn_blocking(move || {
        Sidecar::start_in(
            &dir.join("home"),
            &app_id,
            &dir.join("resources"),
            Some(app_port),
            None,
        )
    })
    .await
    .unwrap()
}

/// `program args...` with `TANDEM_HOME` at `dir/home`.
async fn cli(program: &Path, dir: &Path, args: &[&str]) -> Output {
    tokio::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("TANDEM_HOME", dir.join("home"))
        .env_remove("DAPR_API_TOKEN")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap()
}

fn tandem() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tandem"))
}

/// A symlink named `dapr` to the binary, in `dir/bin`.
fn dapr(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let link = bin.join("dapr");
    std::os::unix::fs::symlink(tandem(), &link).unwrap();
    link
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn publish_reaches_the_running_app_and_says_so_as_dapr_does() {
    let dir = place();
    let (port, calls) = app().await;
    let _sidecar = sidecar(dir.path(), "orders-app", port).await;

    let output = cli(
        &tandem(),
        dir.path(),
        &[
            "publish",
            "--publish-app-id",
            "orders-app",
            "--pubsub",
            "pubsub",
            "--topic",
            "orders",
            "--data",
            r#"{"n":1}"#,
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "✅  Event published successfully\n");
    wait_for("the event", || !calls.lock().is_empty()).await;
    let (method, path, _, content_type, event) = calls.lock()[0].clone();
    assert_eq!((method.as_str(), path.as_str()), ("POST", "orders"));
    assert_eq!(content_type, "application/cloudevents+json");
    assert_eq!(event["data"], json!({"n": 1}), "{event}");
    assert_eq!(event["source"], "orders-app");

    // The short flags, a CloudEvent from a file (kept as it is, its id included), and
    // metadata as query parameters (`rawPayload` is read by the sidecar).
    let file = dir.path().join("event.json");
    std::fs::write(
        &file,
        r#"{"id":"my-id","source":"me","specversion":"1.0","type":"t","data":{"n":2}}"#,
    )
    .unwrap();
    let output = cli(
        &tandem(),
        dir.path(),
        &[
            "publish",
            "-i",
            "orders-app",
            "-p",
            "pubsub",
            "-t",
            "orders",
            "-f",
            file.to_str().unwrap(),
            "-m",
            r#"{"ttlInSeconds": 60}"#,
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    wait_for("the second event", || calls.lock().len() == 2).await;
    let event = calls.lock()[1].4.clone();
    assert_eq!(event["id"], "my-id", "{event}");
    assert_eq!(event["data"], json!({"n": 2}));
}

#[tokio::test(flavor = "multi_thread")]
async fn publish_fails_as_dapr_does() {
    let dir = place();
    let (port, _calls) = app().await;
    let _sidecar = sidecar(dir.path(), "orders-app", port).await;
    let publish = |extra: &'static [&'static str]| {
        let dir = dir.path().to_owned();
        async move {
            let mut args = vec!["publish", "--pubsub", "pubsub", "--topic", "orders"];
            args.extend_from_slice(extra);
            cli(&tandem(), &dir, &args).await
        }
    };

    let output = publish(&["--publish-app-id", "nobody", "--data", "{}"]).await;
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        text(&output.stderr),
        "❌  Error publishing topic orders: couldn't find a running Dapr instance\n"
    );

    let output = publish(&["-i", "orders-app", "-d", "{}", "-f", "event.json"]).await;
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        text(&output.stderr),
        "❌  Only one of --data and --data-file allowed in the same publish command\n"
    );

    let output = publish(&["-i", "orders-app", "-m", "[1]"]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).starts_with("❌  Error parsing metadata as JSON. Error: "),
        "{}",
        text(&output.stderr)
    );

    let output = cli(
        &tandem(),
        dir.path(),
        &["publish", "-i", "orders-app", "-p", "nope", "-t", "orders"],
    )
    .await;
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with(
            "❌  Error publishing topic orders: unexpected status code 404 on publishing to orders in nope: {"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("ERR_PUBSUB_NOT_FOUND"), "{stderr}");

    let output = cli(&tandem(), dir.path(), &["publish", "--pubsub", "pubsub"]).await;
    assert_eq!(output.status.code(), Some(2), "a usage error");
    assert!(text(&output.stderr).contains("--publish-app-id"));
}

#[tokio::test(flavor = "multi_thread")]
async fn invoke_prints_the_answer_then_dapr_s_success_line() {
    let dir = place();
    let (port, calls) = app().await;
    let _sidecar = sidecar(dir.path(), "echo", port).await;

    let output = cli(
        &tandem(),
        dir.path(),
        &[
            "invoke",
            "--app-id",
            "echo",
            "--method",
            "greet",
            "--data",
            r#"{"hi":1}"#,
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let (answer, rest) = stdout.split_once('\n').unwrap();
    let answer: Value = serde_json::from_str(answer).unwrap();
    assert_eq!(
        answer,
        json!({"method": "POST", "path": "greet", "query": null, "body": {"hi": 1}})
    );
    assert_eq!(rest, "✅  App invoked successfully\n");
    assert_eq!(calls.lock()[0].3, "application/json");

    // The verb, a query string in the method, no body.
    let output = cli(
        &tandem(),
        dir.path(),
        &[
            "invoke",
            "-a",
            "echo",
            "-m",
            "orders/7?full=true",
            "-v",
            "GET",
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let answer: Value = serde_json::from_str(text(&output.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(answer["method"], "GET");
    assert_eq!(answer["path"], "orders/7");
    assert_eq!(answer["query"], "full=true");

    // The app's error: its status, as Dapr says it, exit 1.
    let output = cli(
        &tandem(),
        dir.path(),
        &["invoke", "-a", "echo", "-m", "fail"],
    )
    .await;
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        text(&output.stderr),
        "❌  error invoking app echo: 500 Internal Server Error\n"
    );
    assert_eq!(text(&output.stdout), "");

    // An app that does not run here: asked through the running sidecar, which says why.
    let output = cli(&tandem(), dir.path(), &["invoke", "-a", "ghost", "-m", "x"]).await;
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with("❌  error invoking app ghost: "),
        "{stderr}"
    );
    assert!(stderr.contains("ERR_DIRECT_INVOKE"), "{stderr}");

    // No sidecar running at all.
    let empty = tempfile::tempdir().unwrap();
    let output = cli(
        &tandem(),
        empty.path(),
        &["invoke", "-a", "ghost", "-m", "x"],
    )
    .await;
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        text(&output.stderr),
        "❌  error invoking app ghost: app ID ghost not found\n"
    );
}

#[tokio::test]
async fn version_as_dapr_prints_it() {
    let dir = tempfile::tempdir().unwrap();
    let lines = format!(
        "CLI version: {0} \nRuntime version: {0}\n",
        env!("CARGO_PKG_VERSION")
    );
    for args in [&["--version"][..], &["-v"], &["version"]] {
        let output = cli(&tandem(), dir.path(), args).await;
        assert_eq!(output.status.code(), Some(0));
        assert_eq!(text(&output.stdout), lines, "{args:?}");
    }
    let output = cli(&dapr(dir.path()), dir.path(), &["version", "-o", "json"]).await;
    assert_eq!(output.status.code(), Some(0));
    let versions: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        versions,
        json!({"Cli version": env!("CARGO_PKG_VERSION"), "Runtime version": env!("CARGO_PKG_VERSION")})
    );
    let output = cli(&tandem(), dir.path(), &["version", "-o", "xml"]).await;
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        text(&output.stderr),
        "❌  An invalid output format was specified.\n"
    );
}

#[tokio::test]
async fn dapr_init_and_uninstall_have_nothing_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let dapr = dapr(dir.path());
    for args in [
        &["init", "--slim"][..],
        &["init", "--runtime-version", "1.14.4", "--dev"],
        &["uninstall", "--all"],
    ] {
        let output = cli(&dapr, dir.path(), args).await;
        assert_eq!(output.status.code(), Some(0), "{args:?}");
        assert!(
            text(&output.stdout).starts_with("✅  Nothing to "),
            "{}",
            text(&output.stdout)
        );
    }
    assert!(
        !dir.path().join("home").exists(),
        "nothing was installed or created"
    );
}

#[tokio::test]
async fn dapr_names_itself_dapr_and_exits_as_the_dapr_cli_does_on_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let dapr = dapr(dir.path());
    let output = cli(&dapr, dir.path(), &["publish", "--pubsub", "pubsub"]).await;
    assert_eq!(output.status.code(), Some(255));
    assert!(
        text(&output.stderr).contains("Usage: dapr publish"),
        "{}",
        text(&output.stderr)
    );
    let output = cli(&dapr, dir.path(), &[]).await;
    assert_eq!(output.status.code(), Some(0));
    assert!(text(&output.stdout).contains("Usage: dapr [OPTIONS] [COMMAND]"));
    let output = cli(&dapr, dir.path(), &["list"]).await;
    assert_eq!(text(&output.stdout), "No Dapr instances found.\n");
}

/// An app that reads the sidecar's metadata and prints its app id, then exits.
const METADATA_APP: &str = "\
import json, os, urllib.request
port = os.environ['DAPR_HTTP_PORT']
with urllib.request.urlopen(f'http://127.0.0.1:{port}/v1.0/metadata') as answer:
    print('sidecar of', json.load(answer)['id'], 'on', port, flush=True)
";

#[tokio::test(flavor = "multi_thread")]
async fn an_unchanged_dapr_run_line_runs_through_the_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let dapr = dapr(dir.path());
    let port = tandem_testkit::free_port();
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        cli(
            &dapr,
            dir.path(),
            &[
                "run",
                "--app-id",
                "x",
                "--dapr-http-port",
                &port.to_string(),
                "--",
                "python3",
                "-c",
                METADATA_APP,
            ],
        ),
    )
    .await
    .expect("dapr run ends when the app does");
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        text(&output.stderr)
    );
    assert!(
        stdout.contains(&format!("== APP == sidecar of x on {port}")),
        "{stdout}"
    );
}

/// `-u DIR`: the sidecar is reached on its Unix socket `DIR/dapr-<app id>-http.socket`
/// (here a stand-in recording what it is sent), with Dapr's warning first.
#[tokio::test(flavor = "multi_thread")]
async fn publish_and_invoke_reach_the_sidecar_on_its_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let requests: Arc<Mutex<Vec<String>>> = Arc::default();
    let router = Router::new()
        .route(
            "/{*path}",
            any(
                |State(requests): State<Arc<Mutex<Vec<String>>>>,
                 method: Method,
                 uri: axum::http::Uri| async move {
                    requests.lock().push(format!("{method} {uri}"));
                    "answered on the socket"
                },
            ),
        )
        .with_state(requests.clone());
    let socket = dir.path().join("dapr-sock-app-http.socket");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    // Registered as this process, which is alive; the ports are never used.
    let _registration = tandem_nameresolution::Registration::register(
        &dir.path().join("home"),
        tandem_nameresolution::Entry::new("sock-app", 1, 2, 3),
    )
    .unwrap();
    let socket_dir = dir.path().to_str().unwrap();

    let output = cli(
        &tandem(),
        dir.path(),
        &[
            "publish",
            "-u",
            socket_dir,
            "-i",
            "sock-app",
            "-p",
            "pubsub",
            "-t",
            "orders",
            "-d",
            "{}",
            "-m",
            r#"{"rawPayload":"true"}"#,
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        "⚠  Unix domain sockets are currently a preview feature\n✅  Event published successfully\n"
    );
    let output = cli(
        &tandem(),
        dir.path(),
        &[
            "invoke", "-u", socket_dir, "-a", "sock-app", "-m", "hello", "-v", "GET",
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains("answered on the socket\n✅  App invoked successfully\n")
    );
    assert_eq!(
        *requests.lock(),
        [
            "POST /v1.0/publish/pubsub/orders?metadata.rawPayload=true",
            "GET /v1.0/invoke/sock-app/method/hello"
        ]
    );
}

/// The Dapr CLI's `--log-as-json`, before or after the command: status lines as JSON.
#[tokio::test]
async fn log_as_json_makes_the_status_lines_json() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["--log-as-json", "stop", "ghost"][..],
        &["stop", "ghost", "--log-as-json"],
    ] {
        let output = cli(&tandem(), dir.path(), args).await;
        let line: Value = serde_json::from_slice(&output.stderr).unwrap();
        assert_eq!(line["status"], "failure", "{args:?}");
        assert_eq!(
            line["msg"],
            "failed to stop app id ghost: couldn't find app id ghost"
        );
        assert!(line["time"].as_str().unwrap().ends_with('Z'));
    }
    let output = cli(&dapr(dir.path()), dir.path(), &["init", "--log-as-json"]).await;
    let line: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(line["status"], "success");
}
