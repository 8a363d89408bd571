//! The configuration stores against real servers: `configuration.redis` on a private
//! Redis (values `value||version`, keyspace notifications), `configuration.postgresql`
//! on a private PostgreSQL (the operator's table and `pg_notify` trigger, as Dapr
//! documents them).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tandem_components::configuration::{
    self, ConfigurationItem, ConfigurationRequest, ConfigurationStore, Items,
};
use tandem_spec::{Component, ComponentMetadata};
use tandem_testkit::{PostgresServer, RedisServer};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

async fn build(kind: &str, values: &[(&str, &str)]) -> Result<Arc<dyn ConfigurationStore>, String> {
    let values: BTreeMap<String, String> = values
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let component = Component {
        file: Some("components/config.yaml".into()),
        ..Component::new("configstore", kind)
    };
    configuration::registry()
        .build(&ComponentMetadata::new(component, values))
        .await
        .map_err(|error| error.to_string())
}

fn keys(keys: &[&str]) -> ConfigurationRequest {
    ConfigurationRequest {
        keys: keys.iter().map(ToString::to_string).collect(),
        metadata: BTreeMap::new(),
    }
}

fn item(value: &str, version: &str) -> ConfigurationItem {
    ConfigurationItem {
        value: value.into(),
        version: version.into(),
        metadata: BTreeMap::new(),
    }
}

/// The next change, within a few seconds.
async fn next(changes: &mut mpsc::Receiver<Items>) -> Items {
    tokio::time::timeout(Duration::from_secs(10), changes.recv())
        .await
        .expect("a change arrives")
        .expect("the watch is still on")
}

/// No change within a short while.
async fn quiet(changes: &mut mpsc::Receiver<Items>) {
    if let Ok(Some(items)) = tokio::time::timeout(Duration::from_millis(500), changes.recv()).await
    {
        panic!("no change expected, got {items:?}");
    }
}

#[tokio::test]
async fn redis_reads_values_with_versions_and_watches_changes() {
    let mut server = RedisServer::start();
    let cli = |args: &[&str]| server.cli(args).unwrap();
    cli(&["SET", "color", "blue||1"]);
    cli(&["SET", "size", "large"]);
    cli(&["SET", "empty", ""]);
    cli(&["HSET", "hash", "a", "b"]);
    let store = build("configuration.redis", &[("redisHost", &server.address())])
        .await
        .unwrap();

    let items = store
        .get(&keys(&["color", "size", "empty", "hash", "missing"]))
        .await
        .unwrap();
    assert_eq!(
        items,
        Items::from([
            ("color".into(), item("blue", "1")),
            ("size".into(), item("large", ""))
        ]),
        "empty values, other types and missing keys are left out, as Dapr's"
    );
    let all = store.get(&keys(&[])).await.unwrap();
    assert_eq!(
        all.keys().collect::<Vec<_>>(),
        ["color", "size"],
        "no keys: every key"
    );

    // One key watched: its changes, and its deletion as an empty item; others unseen.
    let stop = CancellationToken::new();
    let (sender, mut changes) = mpsc::channel(16);
    store
        .watch(&keys(&["color"]), sender, stop.clone())
        .await
        .unwrap();
    cli(&["SET", "color", "red||2"]);
    assert_eq!(
        next(&mut changes).await,
        Items::from([("color".into(), item("red", "2"))])
    );
    cli(&["SET", "size", "small"]);
    quiet(&mut changes).await;
    cli(&["DEL", "color"]);
    assert_eq!(
        next(&mut changes).await,
        Items::from([("color".into(), ConfigurationItem::default())])
    );

    // Every key watched.
    let (sender, mut everything) = mpsc::channel(16);
    store.watch(&keys(&[]), sender, stop.clone()).await.unwrap();
    cli(&["SET", "new", "v||7"]);
    assert_eq!(
        next(&mut everything).await,
        Items::from([("new".into(), item("v", "7"))])
    );

    // A restarted server (which forgot its notification setting): the watch comes back
    // by itself.
    server.restart();
    let cli = |args: &[&str]| server.cli(args).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        cli(&["SET", "color", "green||3"]);
        match tokio::time::timeout(Duration::from_millis(300), changes.recv()).await {
            Ok(Some(items)) => {
                assert_eq!(items, Items::from([("color".into(), item("green", "3"))]));
                break;
            }
            Ok(None) => panic!("the watch ended with the server"),
            Err(_) => assert!(
                tokio::time::Instant::now() < deadline,
                "the watch did not come back after a restart"
            ),
        }
    }

    // Stopped: the watch ends and its sender is dropped.
    stop.cancel();
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while changes.recv().await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "a stopped watch ends");
}

#[tokio::test]
async fn redis_errors_name_the_field_and_the_server() {
    let error = build("configuration.redis", &[("redisHost", "127.0.0.1:1")])
        .await
        .err()
        .unwrap();
    assert!(error.contains("redisHost"), "{error}");
    assert!(error.contains("components/config.yaml"), "{error}");
    let error = build(
        "configuration.redis",
        &[("redisHost", "127.0.0.1:6379"), ("redisType", "cluster")],
    )
    .await
    .err()
    .unwrap();
    assert!(error.contains("redisType"), "{error}");
}

/// The table and trigger Dapr's documentation gives for `configuration.postgresql`.
const SCHEMA: &str = r#"
CREATE TABLE config (key VARCHAR NOT NULL, value VARCHAR NOT NULL, version VARCHAR NOT NULL, metadata JSON);
CREATE OR REPLACE FUNCTION notify_config() RETURNS TRIGGER AS $$
DECLARE
    data json;
    notification json;
BEGIN
    IF (TG_OP = 'DELETE') THEN
        data = row_to_json(OLD);
    ELSE
        data = row_to_json(NEW);
    END IF;
    notification = json_build_object('table', TG_TABLE_NAME, 'action', TG_OP, 'data', data);
    PERFORM pg_notify('config_changes', notification::text);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER config AFTER INSERT OR UPDATE OR DELETE ON config
    FOR EACH ROW EXECUTE PROCEDURE notify_config();
INSERT INTO config VALUES ('color', 'blue', '1', '{"team": "web"}');
INSERT INTO config VALUES ('color', 'navy', '2', NULL);
INSERT INTO config VALUES ('size', 'large', 'x', NULL);
"#;

#[tokio::test]
async fn postgresql_reads_the_latest_version_and_watches_the_trigger() {
    let server = PostgresServer::start();
    let url = server.connection_string();
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);

    let missing = build(
        "configuration.postgresql",
        &[("connectionString", &url), ("table", "config")],
    )
    .await
    .err()
    .unwrap();
    assert!(
        missing.contains("table") && missing.contains("does not exist"),
        "{missing}"
    );
    let invalid = build(
        "configuration.postgresql",
        &[("connectionString", &url), ("table", "Config; drop")],
    )
    .await
    .err()
    .unwrap();
    assert!(invalid.contains("table"), "{invalid}");

    client.batch_execute(SCHEMA).await.unwrap();
    let store = build(
        "configuration.postgres",
        &[
            ("connectionString", &url),
            ("table", "config"),
            ("notifyChannel", "config_changes"),
        ],
    )
    .await
    .unwrap();

    let items = store.get(&keys(&["color", "missing"])).await.unwrap();
    assert_eq!(
        items,
        Items::from([("color".into(), item("navy", "2"))]),
        "the highest numeric version wins"
    );
    let all = store.get(&keys(&[])).await.unwrap();
    assert_eq!(all["size"], item("large", "x"));
    let error = store.get(&keys(&["a'b"])).await.unwrap_err();
    assert!(error.to_string().contains("invalid key"), "{error}");

    let stop = CancellationToken::new();
    let (sender, mut changes) = mpsc::channel(16);
    store
        .watch(&keys(&["color"]), sender, stop.clone())
        .await
        .unwrap();
    client
        .batch_execute(
            "UPDATE config SET value = 'red', metadata = '{\"by\": \"ops\"}' WHERE version = '2'",
        )
        .await
        .unwrap();
    let mut red = item("red", "2");
    red.metadata.insert("by".into(), "ops".into());
    assert_eq!(
        next(&mut changes).await,
        Items::from([("color".into(), red)])
    );
    client
        .batch_execute("INSERT INTO config VALUES ('other', 'x', '1', NULL)")
        .await
        .unwrap();
    quiet(&mut changes).await;

    // Without a channel, a watch is refused with Dapr's reason.
    let silent = build(
        "configuration.postgresql",
        &[("connectionString", &url), ("table", "config")],
    )
    .await
    .unwrap();
    let (sender, _changes) = mpsc::channel(16);
    let error = silent
        .watch(&keys(&[]), sender, CancellationToken::new())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("notifyChannel"), "{error}");
    // ... unless the request names it (`pgNotifyChannel`, Dapr's older way).
    let (sender, mut everything) = mpsc::channel(16);
    let request = ConfigurationRequest {
        keys: Vec::new(),
        metadata: BTreeMap::from([("pgNotifyChannel".into(), "config_changes".into())]),
    };
    silent.watch(&request, sender, stop.clone()).await.unwrap();
    client
        .batch_execute("INSERT INTO config VALUES ('late', 'y', '1', NULL)")
        .await
        .unwrap();
    assert_eq!(
        next(&mut everything).await,
        Items::from([("late".into(), item("y", "1"))])
    );
    stop.cancel();
}
