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
