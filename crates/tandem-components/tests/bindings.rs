//! The output bindings, each run against its real backend.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use tandem_components::bindings::{self, Binding, BindingError, InvokeRequest, InvokeResponse};
use tandem_spec::{Component, ComponentMetadata, ResourceError};

async fn try_build(kind: &str, values: &[(&str, &str)]) -> Result<Arc<dyn Binding>, ResourceError> {
    let component = Component::new("binding", kind);
    let values: BTreeMap<String, String> = values
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    bindings::registry()
        .build(&ComponentMetadata::new(component, values))
        .await
}

async fn build(kind: &str, values: &[(&str, &str)]) -> Arc<dyn Binding> {
    try_build(kind, values)
        .await
        .unwrap_or_else(|error| panic!("{kind} builds: {error}"))
}

async fn invoke(
    binding: &Arc<dyn Binding>,
    operation: &str,
    data: &[u8],
    metadata: &[(&str, &str)],
) -> Result<Option<InvokeResponse>, BindingError> {
    binding
        .invoke(InvokeRequest {
            operation: operation.into(),
            data: Bytes::copy_from_slice(data),
            metadata: metadata
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
        })
        .await
}

async fn answer(
    binding: &Arc<dyn Binding>,
    operation: &str,
    data: &[u8],
    metadata: &[(&str, &str)],
) -> InvokeResponse {
    invoke(binding, operation, data, metadata)
        .await
        .unwrap_or_else(|error| panic!("{operation} succeeds: {error}"))
        .unwrap_or_else(|| panic!("{operation} answers"))
}

fn json(data: &[u8]) -> serde_json::Value {
    serde_json::from_slice(data).expect("the answer is JSON")
}

mod localstorage {
    use super::*;

    #[tokio::test]
    async fn creates_gets_lists_and_deletes_files_as_dapr() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap().join("store");
        let root_text = root.to_str().unwrap();
        let binding = build("bindings.localstorage", &[("rootPath", root_text)]).await;
        assert!(root.is_dir(), "the root is made at start");
        let mut operations = binding.operations().to_vec();
        operations.sort_unstable();
        assert_eq!(operations, ["create", "delete", "get", "list"]);

        // The HTTP API hands a JSON string with its quotes: it is unquoted.
        let created = answer(&binding, "create", b"\"hello\"", &[("fileName", "a/b.txt")]).await;
        assert_eq!(
            json(&created.data),
            serde_json::json!({"fileName": "a/b.txt"})
        );
        assert_eq!(std::fs::read(root.join("a/b.txt")).unwrap(), b"hello");
        let got = answer(&binding, "get", b"", &[("fileName", "a/b.txt")]).await;
        assert_eq!(got.data, Bytes::from("hello"));

        // Valid base64 is decoded, as Dapr does for any data.
        answer(&binding, "create", b"aGk=", &[("fileName", "b64")]).await;
        assert_eq!(std::fs::read(root.join("b64")).unwrap(), b"hi");

        // No name: a UUID.
        let created = answer(&binding, "create", b"{\"x\":1}", &[]).await;
        let name = json(&created.data)["fileName"].as_str().unwrap().to_owned();
        assert!(uuid::Uuid::parse_str(&name).is_ok(), "{name}");
        assert_eq!(std::fs::read(root.join(&name)).unwrap(), b"{\"x\":1}");

        // `..` cannot leave the root.
        let created = answer(&binding, "create", b"x", &[("fileName", "../../escape")]).await;
        assert_eq!(
            json(&created.data),
            serde_json::json!({"fileName": "escape"})
        );
        assert!(root.join("escape").is_file());
        assert!(!root.parent().unwrap().join("escape").exists());

        let listed = answer(&binding, "list", b"", &[]).await;
        let mut wanted = [
            root.join("a/b.txt"),
            root.join("b64"),
            root.join("escape"),
            root.join(&name),
        ];
        wanted.sort();
        let wanted: Vec<String> = wanted.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(json(&listed.data), serde_json::json!(wanted));
        let listed = answer(&binding, "list", b"", &[("fileName", "a")]).await;
        assert_eq!(
            json(&listed.data),
            serde_json::json!([root.join("a/b.txt").display().to_string()])
        );
        std::fs::create_dir(root.join("empty")).unwrap();
        let listed = answer(&binding, "list", b"", &[("fileName", "empty")]).await;
        assert_eq!(json(&listed.data), serde_json::Value::Null);
        assert!(matches!(
            invoke(&binding, "list", b"", &[("fileName", "b64")]).await,
            Err(BindingError::Invalid(_))
        ));

        assert_eq!(
            invoke(&binding, "delete", b"", &[("fileName", "a/b.txt")])
                .await
                .unwrap(),
            None
        );
        assert!(!root.join("a/b.txt").exists());
        for operation in ["get", "delete"] {
            assert!(matches!(
                invoke(&binding, operation, b"", &[("fileName", "a/b.txt")]).await,
                Err(BindingError::Invalid(message)) if message.contains("not found")
            ));
            assert!(matches!(
                invoke(&binding, operation, b"", &[]).await,
                Err(BindingError::Invalid(_))
            ));
        }
    }

    #[tokio::test]
    async fn refuses_bad_roots() {
        assert!(try_build("bindings.localstorage", &[]).await.is_err());
        assert!(
            try_build("bindings.localstorage", &[("rootPath", "/proc/x")])
                .await
                .is_err()
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        assert!(
            try_build(
                "bindings.localstorage",
                &[("rootPath", file.to_str().unwrap())]
            )
            .await
            .is_err()
        );
    }
}

mod redis {
    use super::*;
    use tandem_testkit::RedisServer;

    #[tokio::test]
    async fn sets_gets_increments_and_deletes_keys_as_dapr() {
        let server = RedisServer::start();
        let address = server.address();
        let binding = build("bindings.redis", &[("redisHost", &address)]).await;

        assert_eq!(
            invoke(&binding, "create", b"\"value\"", &[("key", "k")])
                .await
                .unwrap(),
            None
        );
        assert_eq!(server.cli(&["GET", "k"]).as_deref(), Some("\"value\""));
        let got = answer(&binding, "get", b"", &[("key", "k")]).await;
        assert_eq!(got.data, Bytes::from("\"value\""));

        // GETDEL with `delete: true`.
        let got = answer(&binding, "get", b"", &[("key", "k"), ("delete", "true")]).await;
        assert_eq!(got.data, Bytes::from("\"value\""));
        let got = answer(&binding, "get", b"", &[("key", "k")]).await;
        assert!(got.data.is_empty(), "a missing key answers empty data");

        invoke(
            &binding,
            "create",
            b"1",
            &[("key", "t"), ("ttlInSeconds", "100")],
        )
        .await
        .unwrap();
        let ttl: i64 = server.cli(&["TTL", "t"]).unwrap().trim().parse().unwrap();
        assert!((1..=100).contains(&ttl), "{ttl}");
        assert!(matches!(
            invoke(
                &binding,
                "create",
                b"2",
                &[("key", "t"), ("ttlInSeconds", "-1")]
            )
            .await,
            Err(BindingError::Invalid(_))
        ));
        assert_eq!(
            server.cli(&["GET", "t"]).as_deref(),
            Some("1"),
            "nothing written"
        );

        for _ in 0..3 {
            invoke(&binding, "increment", b"", &[("key", "n")])
                .await
                .unwrap();
        }
        invoke(&binding, "increment", b"", &[("key", "n"), ("ttl", "1h")])
            .await
            .unwrap();
        assert_eq!(server.cli(&["GET", "n"]).as_deref(), Some("4"));
        let ttl: i64 = server.cli(&["TTL", "n"]).unwrap().trim().parse().unwrap();
        assert!((3500..=3600).contains(&ttl), "{ttl}");
        // INCR of a value that is not a number is Redis's refusal.
        invoke(&binding, "create", b"text", &[("key", "s")])
            .await
            .unwrap();
        assert!(matches!(
            invoke(&binding, "increment", b"", &[("key", "s")]).await,
            Err(BindingError::Failed { .. })
        ));

        assert_eq!(
            invoke(&binding, "delete", b"", &[("key", "n")])
                .await
                .unwrap(),
            None
        );
        assert_eq!(server.cli(&["EXISTS", "n"]).as_deref(), Some("0"));
        for operation in ["create", "get", "delete", "increment"] {
            assert!(matches!(
                invoke(&binding, operation, b"", &[]).await,
                Err(BindingError::Invalid(message)) if message.contains("missing key")
            ));
        }
    }

    #[tokio::test]
    async fn refuses_tls_and_an_unreachable_server() {
        let server = RedisServer::start();
        let address = server.address();
        let refused = try_build(
            "bindings.redis",
            &[("redisHost", &address), ("enableTLS", "true")],
        )
        .await;
        assert!(refused.is_err());
        let port = tandem_testkit::free_port();
        let refused = try_build(
            "bindings.redis",
            &[
                ("redisHost", &format!("127.0.0.1:{port}")),
                ("redisPassword", "hunter2"),
                ("dialTimeout", "1s"),
            ],
        )
        .await
        .err()
        .expect("an unreachable server is refused at start");
        assert!(!refused.to_string().contains("hunter2"), "{refused}");
    }
}

mod postgresql {
    use super::*;
    use tandem_testkit::PostgresServer;

    #[tokio::test]
    async fn execs_and_queries_with_dapr_answers() {
        let server = PostgresServer::start();
        let connection = server.connection_string();
        let binding = build("bindings.postgresql", &[("connectionString", &connection)]).await;
        let exec = |sql: &'static str, params: &'static str| {
            let binding = binding.clone();
            async move { invoke(&binding, "exec", b"", &[("sql", sql), ("params", params)]).await }
        };

        let created = exec(
            "CREATE TABLE items (id integer PRIMARY KEY, name text, price numeric(10,2), \
             tags text[], doc jsonb, seen timestamptz, ok boolean, ratio float8, raw bytea, \
             uid uuid, day date)",
            "",
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(created.metadata["operation"], "exec");
        assert_eq!(created.metadata["rows-affected"], "0");
        for key in ["sql", "start-time", "end-time", "duration"] {
            assert!(created.metadata.contains_key(key), "{key}");
        }
        assert!(created.metadata["start-time"].ends_with('Z'));

        let inserted = exec(
            "INSERT INTO items VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11), \
             (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
            r#"[1, "one", "12.5", ["a", "b\"c"], {"k": [1, 2]}, "2026-12-04T07:20:00.5Z",
                true, 0.25, "\\x0102", "6f1c3b4e-0000-4000-8000-000000000001", "2026-01-02"]"#,
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(inserted.metadata["rows-affected"], "2");

        let queried = answer(
            &binding,
            "query",
            b"",
            &[
                ("sql", "SELECT id, name, price, doc, seen, ok, ratio, raw, uid, day FROM items ORDER BY id"),
            ],
        )
        .await;
        assert_eq!(queried.metadata["operation"], "query");
        assert!(!queried.metadata.contains_key("rows-affected"));
        assert_eq!(
            json(&queried.data),
            serde_json::json!([
                [1, "one", 12.5, {"k": [1, 2]}, "2026-12-04T07:20:00.5Z", true, 0.25, "AQI=",
                 "6f1c3b4e-0000-4000-8000-000000000001", "2026-01-02T00:00:00Z"],
                [2, null, null, null, null, null, null, null, null, null]
            ])
        );
        // numeric keeps its scale, as a JSON number.
        assert!(
            String::from_utf8_lossy(&queried.data).contains(",12.50,"),
            "{:?}",
            queried.data
        );
        let tags = answer(
            &binding,
            "query",
            b"",
            &[
                (
                    "sql",
                    "SELECT tags[2], count(*) OVER () FROM items WHERE id = $1",
                ),
                ("params", "[\"1\"]"),
            ],
        )
        .await;
        assert_eq!(json(&tags.data), serde_json::json!([["b\"c", 1]]));
        let none = answer(
            &binding,
            "query",
            b"",
            &[("sql", "SELECT id FROM items WHERE id > 5")],
        )
        .await;
        assert_eq!(json(&none.data), serde_json::json!([]));
        // A type with no JSON form here: refused, asking for a cast.
        assert!(matches!(
            invoke(&binding, "query", b"", &[("sql", "SELECT interval '1 day'")]).await,
            Err(BindingError::Invalid(message)) if message.contains("cast")
        ));

        // The caller's mistakes.
        assert!(matches!(
            invoke(&binding, "exec", b"", &[]).await,
            Err(BindingError::Invalid(message)) if message.contains("sql")
        ));
        assert!(matches!(
            exec("SELECT 1", "{\"a\": 1}").await,
            Err(BindingError::Invalid(message)) if message.contains("params")
        ));
        assert!(matches!(
            exec("INSERT INTO items (id) VALUES (1)", "").await,
            Err(BindingError::Invalid(message)) if message.contains("duplicate")
        ));
        assert!(matches!(
            exec("SELEC 1", "").await,
            Err(BindingError::Invalid(_))
        ));
        assert!(matches!(
            exec("SELECT $1::int", "[1, 2]").await,
            Err(BindingError::Invalid(_))
        ));

        assert_eq!(invoke(&binding, "close", b"", &[]).await.unwrap(), None);
        assert!(matches!(
            exec("SELECT 1", "").await,
            Err(BindingError::Invalid(message)) if message.contains("closed")
        ));
    }

    #[tokio::test]
    async fn a_wrong_password_is_refused_without_showing_it() {
        let server = PostgresServer::start();
        let connection = format!(
            "{} password=sekrit99 user=nobody",
            server.connection_string()
        );
        let error = try_build("bindings.postgres", &[("connectionString", &connection)])
            .await
            .err()
            .expect("an unknown user is refused at start");
        let text = error.to_string();
        assert!(!text.contains("sekrit99"), "{text}");
        assert!(text.contains("connectionString"), "{text}");
    }
}

mod http {
    use super::*;
    use axum::body::Body;
    use axum::extract::Request;
    use axum::response::Response;

    /// Answers every request with what it received: method, path, some headers, body.
    /// `X-Status` picks the status; `/big` answers 10 000 bytes.
    async fn echo(request: Request) -> Response {
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        if parts.uri.path() == "/big" {
            return Response::new(Body::from(vec![b'x'; 10_000]));
        }
        if let Some(code) = parts.uri.path().strip_prefix("/redirect") {
            return Response::builder()
                .status(code.parse::<u16>().unwrap())
                .header("location", "landed")
                .body(Body::empty())
                .unwrap();
        }
        if parts.uri.path() == "/loop" {
            return Response::builder()
                .status(302)
                .header("location", "/loop")
                .body(Body::empty())
                .unwrap();
        }
        if parts.uri.path() == "/slow" {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        }
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let seen = serde_json::json!({
            "method": parts.method.as_str(),
            "path": parts.uri.path(),
            "contentType": header("content-type"),
            "accept": header("accept"),
            "custom": header("x-custom"),
            "lower": header("lower"),
            "token": header("x-token"),
            "traceparent": header("traceparent"),
            "authorization": header("authorization"),
            "body": String::from_utf8_lossy(&body),
        });
        let status: u16 = header("x-status").map_or(200, |s| s.parse().unwrap());
        Response::builder()
            .status(status)
            .header("x-multi", "a")
            .header("x-multi", "b")
            .header("content-type", "application/json")
            .body(Body::from(seen.to_string()))
            .unwrap()
    }

    async fn serve() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, axum::Router::new().fallback(echo))
                .await
                .unwrap();
        });
        format!("http://{address}")
    }

    #[tokio::test]
    async fn calls_with_dapr_methods_headers_and_answers() {
        let base = serve().await;
        let url = format!("{base}/api/");
        let binding = build(
            "bindings.http",
            &[
                ("url", &url),
                ("securityToken", "s3cr3t"),
                ("securityTokenHeader", "X-Token"),
            ],
        )
        .await;

        let posted = answer(
            &binding,
            "create",
            b"{\"a\":1}",
            &[
                ("path", "/items/1"),
                ("X-Custom", "yes"),
                ("lower", "not a header"),
                (
                    "traceparent",
                    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                ),
            ],
        )
        .await;
        let seen = json(&posted.data);
        assert_eq!(seen["method"], "POST");
        assert_eq!(seen["path"], "/api/items/1");
        assert_eq!(seen["body"], "{\"a\":1}");
        assert_eq!(seen["contentType"], "application/json; charset=utf-8");
        assert_eq!(seen["accept"], "application/json; charset=utf-8");
        assert_eq!(seen["custom"], "yes");
        assert_eq!(seen["lower"], serde_json::Value::Null);
        assert_eq!(seen["token"], "s3cr3t");
        assert_eq!(
            seen["traceparent"],
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        );
        assert_eq!(posted.metadata["statusCode"], "200");
        assert_eq!(posted.metadata["status"], "200 OK");
        assert_eq!(posted.metadata["X-Multi"], "a, b");
        assert_eq!(posted.metadata["Content-Type"], "application/json");

        // No body for a GET, whatever the data; the caller's Content-Type wins.
        let got = answer(
            &binding,
            "get",
            b"ignored",
            &[("Content-Type", "text/plain")],
        )
        .await;
        let seen = json(&got.data);
        assert_eq!(
            (&seen["method"], &seen["body"], &seen["path"]),
            (&"GET".into(), &"".into(), &"/api/".into())
        );
        for (operation, method) in [
            ("put", "PUT"),
            ("patch", "PATCH"),
            ("delete", "DELETE"),
            ("options", "OPTIONS"),
            ("post", "POST"),
        ] {
            let seen = json(&answer(&binding, operation, b"x", &[]).await.data);
            assert_eq!(seen["method"], method);
        }
        let head = answer(&binding, "head", b"", &[]).await;
        assert!(head.data.is_empty());
        assert_eq!(head.metadata["statusCode"], "200");

        // A status outside 2xx fails the call, unless errorIfNot2XX is false.
        let failed = invoke(&binding, "get", b"", &[("X-Status", "404")]).await;
        assert!(
            matches!(
                &failed,
                Err(BindingError::Failed { action, .. }) if action == "received status code 404"
            ),
            "{failed:?}"
        );
        let not_found = answer(
            &binding,
            "get",
            b"",
            &[("X-Status", "404"), ("errorIfNot2XX", "false")],
        )
        .await;
        assert_eq!(not_found.metadata["statusCode"], "404");
        assert_eq!(not_found.metadata["status"], "404 Not Found");
        let lenient = build(
            "bindings.http",
            &[("url", &url), ("errorIfNot2XX", "false")],
        )
        .await;
        let teapot = answer(&lenient, "get", b"", &[("X-Status", "418")]).await;
        assert_eq!(teapot.metadata["statusCode"], "418");
    }

    #[tokio::test]
    async fn follows_redirects_and_sends_url_credentials_as_go_does() {
        let base = serve().await;
        let with_user = base.replacen("http://", "http://us%40er:p%3Ass@", 1);
        let binding = build("bindings.http", &[("url", &with_user)]).await;
        // 302 and 303 turn a POST into a GET without body; 307 repeats it.
        for (code, method, body) in [
            ("302", "POST", ""),
            ("303", "POST", ""),
            ("307", "POST", "data"),
        ] {
            let seen = json(
                &answer(
                    &binding,
                    "post",
                    b"data",
                    &[("path", &format!("redirect{code}"))],
                )
                .await
                .data,
            );
            let wanted_method = if code == "307" { method } else { "GET" };
            assert_eq!(seen["method"], wanted_method, "{code}");
            assert_eq!(seen["path"], "/landed", "{code}");
            assert_eq!(seen["body"], body, "{code}");
            // `us@er:p:ss`, percent-decoded, as Basic credentials.
            assert_eq!(seen["authorization"], "Basic dXNAZXI6cDpzcw==", "{code}");
        }
        let looping = invoke(&binding, "get", b"", &[("path", "loop")]).await;
        let Err(BindingError::Failed { action, source }) = looping else {
            panic!("a redirect loop fails: {looping:?}");
        };
        assert!(source.to_string().contains("10 redirects"), "{source}");
        // Messages never show the password.
        assert!(!action.contains("p%3Ass"), "{action}");
    }

    #[tokio::test]
    async fn cuts_big_answers_and_times_out() {
        let base = serve().await;
        let binding = build(
            "bindings.http",
            &[
                ("url", &base),
                ("maxResponseBodySize", "1Ki"),
                ("responseTimeout", "300ms"),
            ],
        )
        .await;
        let big = answer(&binding, "get", b"", &[("path", "big")]).await;
        assert_eq!(big.data.len(), 1024);
        let started = std::time::Instant::now();
        assert!(matches!(
            invoke(&binding, "get", b"", &[("path", "slow")]).await,
            Err(BindingError::Failed { .. })
        ));
        assert!(started.elapsed() < std::time::Duration::from_secs(3));
        let port = tandem_testkit::free_port();
        let closed = build(
            "bindings.http",
            &[("url", &format!("http://127.0.0.1:{port}"))],
        )
        .await;
        assert!(matches!(
            invoke(&closed, "get", b"", &[]).await,
            Err(BindingError::Failed { .. })
        ));
    }

    #[tokio::test]
    async fn refuses_bad_settings() {
        for values in [
            vec![],
            vec![("url", "http://x"), ("maxResponseBodySize", "lots")],
            vec![("url", "http://x"), ("MTLSRootCA", "/no/such/file.pem")],
            vec![
                ("url", "http://x"),
                (
                    "MTLSRootCA",
                    "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n",
                ),
            ],
            vec![("url", "http://x"), ("MTLSRenegotiation", "Sometimes")],
            vec![("url", "http://x"), ("responseTimeout", "soon")],
        ] {
            assert!(
                try_build("bindings.http", &values).await.is_err(),
                "{values:?}"
            );
        }
        assert!(
            try_build(
                "bindings.http",
                &[
                    ("url", "http://x"),
                    ("MTLSRenegotiation", "RenegotiateOnceAsClient")
                ]
            )
            .await
            .is_ok()
        );
    }
}

mod mysql {
    use super::*;

    const URL: &str = "root:@tcp(127.0.0.1:3306)/test";

    /// A table name no other run uses.
    fn table() -> String {
        format!("tandem_binding_{}", uuid::Uuid::new_v4().simple())
    }

    #[tokio::test]
    async fn execs_and_queries_with_dapr_answers() {
        let binding = build("bindings.mysql", &[("url", URL), ("maxOpenConns", "4")]).await;
        let table = table();
        let exec = |sql: String, params: &'static str| {
            let binding = binding.clone();
            async move { invoke(&binding, "exec", b"", &[("sql", &sql), ("params", params)]).await }
        };
        let query = |sql: String, params: &'static str| {
            let binding = binding.clone();
            async move { answer(&binding, "query", b"", &[("sql", &sql), ("params", params)]).await }
        };

        let created = exec(
            format!(
                "CREATE TABLE {table} (id INT PRIMARY KEY, name VARCHAR(20), price DECIMAL(10,2), \
                 big BIGINT UNSIGNED, ratio DOUBLE, small FLOAT, ok BOOLEAN, raw VARBINARY(8), \
                 seen DATETIME(3), day DATE, clock TIME, note TEXT)"
            ),
            "",
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(created.metadata["operation"], "exec");
        assert_eq!(created.metadata["rows-affected"], "0");
        for key in ["sql", "start-time", "end-time", "duration"] {
            assert!(created.metadata.contains_key(key), "{key}");
        }

        let outcome = async {
            let inserted = exec(
                format!("INSERT INTO {table} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?), (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"),
                r#"[1, "one", "12.5", 18446744073709551615, 0.25, 1.5, true, "ab", "2026-12-04 07:20:00.5", "2026-01-02", "12:34:56", "long text"]"#,
            )
            .await
            .unwrap()
            .unwrap();
            assert_eq!(inserted.metadata["rows-affected"], "2");

            // With parameters (binary protocol) and without (text protocol): the same.
            let wanted = serde_json::json!([
                {"id": 1, "name": "one", "price": "12.50", "big": 18446744073709551615u64,
                 "ratio": 0.25, "small": 1.5, "ok": 1, "raw": "YWI=",
                 "seen": "2026-12-04T07:20:00.5Z", "day": "2026-01-02T00:00:00Z",
                 "clock": "12:34:56", "note": "long text"},
                {"id": 2}
            ]);
            let typed = query(
                format!("SELECT * FROM {table} WHERE id > ? ORDER BY id"),
                "[0]",
            )
            .await;
            assert_eq!(json(&typed.data), wanted);
            assert_eq!(typed.metadata["operation"], "query");
            let text = query(format!("SELECT * FROM {table} ORDER BY id"), "").await;
            assert_eq!(json(&text.data), wanted);

            // No rows: Go's nil slice, `null`.
            let none = query(format!("SELECT id FROM {table} WHERE id > 5"), "").await;
            assert_eq!(json(&none.data), serde_json::Value::Null);

            let updated = exec(
                format!("UPDATE {table} SET name = ? WHERE id = ?"),
                r#"["two", "2"]"#,
            )
            .await
            .unwrap()
            .unwrap();
            assert_eq!(updated.metadata["rows-affected"], "1");

            // The caller's mistakes.
            assert!(matches!(
                invoke(&binding, "query", b"", &[]).await,
                Err(BindingError::Invalid(message)) if message.contains("sql")
            ));
            assert!(matches!(
                exec(format!("SELECT * FROM {table}"), "nope").await,
                Err(BindingError::Invalid(message)) if message.contains("params")
            ));
            assert!(matches!(
                exec(format!("INSERT INTO {table} (id) VALUES (1)"), "").await,
                Err(BindingError::Invalid(message)) if message.contains("Duplicate")
            ));
            assert!(matches!(
                exec("SELEC 1".into(), "").await,
                Err(BindingError::Invalid(_))
            ));
        };
        // The table goes whatever happened.
        let result =
            futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(outcome)).await;
        exec(format!("DROP TABLE {table}"), "").await.unwrap();
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }

        assert_eq!(invoke(&binding, "close", b"", &[]).await.unwrap(), None);
        assert!(matches!(
            exec("SELECT 1".into(), "").await,
            Err(BindingError::Invalid(message)) if message.contains("closed")
        ));
    }

    #[tokio::test]
    async fn bad_settings_are_refused_without_showing_the_password() {
        let error = try_build(
            "bindings.mysql",
            &[("url", "nobody:sekrit99@tcp(127.0.0.1:3306)/test")],
        )
        .await
        .err()
        .expect("an unknown user is refused at start");
        let text = error.to_string();
        assert!(!text.contains("sekrit99"), "{text}");
        assert!(text.contains("url"), "{text}");
        for url in [
            "sekrit99 without slash",
            "u:sekrit99@tcp(127.0.0.1:3306/db",
            "u:sekrit99@udp(x)/db",
        ] {
            let text = try_build("bindings.mysql", &[("url", url)])
                .await
                .err()
                .unwrap()
                .to_string();
            assert!(!text.contains("sekrit99"), "{text}");
        }
        let port = tandem_testkit::free_port();
        let url = format!("root:@tcp(127.0.0.1:{port})/test?timeout=2s");
        assert!(try_build("bindings.mysql", &[("url", &url)]).await.is_err());
    }
}

mod http_tls {
    use super::*;
    use std::path::Path;
    use std::process::Command;

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn openssl(dir: &Path, args: &[&str]) {
        let status = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .expect("openssl runs");
        assert!(status.status.success(), "openssl {args:?}: {status:?}");
    }

    /// A CA, a server certificate for 127.0.0.1 and a client certificate, both signed
    /// by the CA.
    fn certificates(dir: &Path) {
        // Extensions make version-3 certificates, the only ones webpki takes.
        std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
        std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "1",
                "-subj",
                "/CN=test-ca",
            ],
        );
        for name in ["server", "client"] {
            openssl(
                dir,
                &[
                    "req",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-keyout",
                    &format!("{name}.key"),
                    "-out",
                    &format!("{name}.csr"),
                    "-subj",
                    &format!("/CN={name}"),
                ],
            );
            let mut args = vec![
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{name}.pem"),
                "-days",
                "1",
            ]
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>();
            args.extend(["-extfile".to_owned(), format!("{name}.ext")]);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            openssl(dir, &args);
        }
    }

    /// A TLS server that requires a client certificate from the CA and answers each
    /// connection `200` with the body `secure`.
    async fn serve(dir: &Path) -> String {
        let ca = CertificateDer::from_pem_file(dir.join("ca.pem")).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .unwrap();
        let chain = CertificateDer::pem_file_iter(dir.join("server.pem"))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buffer = vec![0; 4096];
                    let _ = tls.read(&mut buffer).await;
                    let _ = tls
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nsecure")
                        .await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        format!("https://{address}")
    }

    #[tokio::test]
    async fn mutual_tls_with_a_private_root() {
        let dir = tempfile::tempdir().unwrap();
        certificates(dir.path());
        let url = serve(dir.path()).await;
        let path = |name: &str| dir.path().join(name).display().to_string();
        let ca_text = std::fs::read_to_string(dir.path().join("ca.pem")).unwrap();

        // The CA as a path, the client's certificate and key as PEM text.
        let cert_text = std::fs::read_to_string(dir.path().join("client.pem")).unwrap();
        let key_text = std::fs::read_to_string(dir.path().join("client.key")).unwrap();
        let binding = build(
            "bindings.http",
            &[
                ("url", &url),
                ("MTLSRootCA", &path("ca.pem")),
                ("MTLSClientCert", &cert_text),
                ("MTLSClientKey", &key_text),
            ],
        )
        .await;
        let answer = answer(&binding, "get", b"", &[]).await;
        assert_eq!(answer.data, Bytes::from("secure"));

        // Without a client certificate the server refuses the handshake.
        let anonymous = build("bindings.http", &[("url", &url), ("MTLSRootCA", &ca_text)]).await;
        assert!(matches!(
            invoke(&anonymous, "get", b"", &[]).await,
            Err(BindingError::Failed { .. })
        ));
        // Without the private root the server's certificate is not trusted.
        let untrusting = build(
            "bindings.http",
            &[
                ("url", &url),
                ("MTLSClientCert", &path("client.pem")),
                ("MTLSClientKey", &path("client.key")),
            ],
        )
        .await;
        assert!(matches!(
            invoke(&untrusting, "get", b"", &[]).await,
            Err(BindingError::Failed { .. })
        ));
        // A key that is not PEM is refused at start, without its text.
        let error = try_build(
            "bindings.http",
            &[
                ("url", &url),
                ("MTLSClientCert", &cert_text),
                (
                    "MTLSClientKey",
                    "-----BEGIN PRIVATE KEY-----\nc2VrcmV0\n-----END PRIVATE KEY-----\n",
                ),
            ],
        )
        .await
        .err()
        .expect("a bad key is refused");
        assert!(!error.to_string().contains("c2VrcmV0"), "{error}");
    }
}
