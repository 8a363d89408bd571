//! `bindings.influx` against a stand-in InfluxDB 2 server (`support/influx_stub.rs`: no
//! InfluxDB 2 is installable here). The stub checks the token, org and bucket and parses
//! line protocol as InfluxDB does, but understands only one Flux query:
//! `from(bucket:"<b>") |> range(start: 0)`.

#[path = "support/influx_stub.rs"]
mod influx_stub;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use influx_stub::{FieldValue, InfluxStub, NOW, rfc3339};
use tandem_components::bindings::{self, Binding, BindingError, InvokeRequest, InvokeResponse};
use tandem_spec::{Component, ComponentMetadata, ResourceError};

const TOKEN: &str = "s3cr3t-t0ken";

async fn try_build(values: &[(&str, &str)]) -> Result<Arc<dyn Binding>, ResourceError> {
    let values: BTreeMap<String, String> = values
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    bindings::registry()
        .build(&ComponentMetadata::new(
            Component::new("influx", "bindings.influx"),
            values,
        ))
        .await
}

async fn binding(stub: &InfluxStub, token: &str, bucket: &str) -> Arc<dyn Binding> {
    try_build(&[
        ("url", &stub.url),
        ("token", token),
        ("org", "my-org"),
        ("bucket", bucket),
    ])
    .await
    .expect("bindings.influx builds")
}

async fn invoke(
    binding: &Arc<dyn Binding>,
    operation: &str,
    data: &str,
    metadata: &[(&str, &str)],
) -> Result<Option<InvokeResponse>, BindingError> {
    binding
        .invoke(InvokeRequest {
            operation: operation.into(),
            data: Bytes::copy_from_slice(data.as_bytes()),
            metadata: metadata
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
        })
        .await
}

const ALL: &str = r#"from(bucket:"my-bucket") |> range(start: 0)"#;

#[tokio::test]
async fn create_writes_dapr_s_line_and_query_answers_the_csv() {
    let stub = InfluxStub::start(TOKEN, "my-org", "my-bucket").await;
    let binding = binding(&stub, TOKEN, "my-bucket").await;
    assert_eq!(binding.operations(), ["create", "query"]);

    // The parking-sensor example's shape: measurement, tags and values as strings.
    let answer = invoke(
        &binding,
        "create",
        r#"{"measurement":"sensor-states","tags":"sensor=P1,garage=west","values":"occupied=true,lat=47.64"}"#,
        &[],
    )
    .await
    .expect("create succeeds");
    assert!(answer.is_none(), "create answers nothing, as Dapr");
    // With a timestamp in `values`, as Dapr's Sprintf passes it through.
    invoke(
        &binding,
        "create",
        r#"{"measurement":"cpu","tags":"host=a","values":"load=0.5,n=3i 1700000000123000000"}"#,
        &[],
    )
    .await
    .expect("create with a timestamp succeeds");

    let writes = stub.writes();
    assert_eq!(writes.len(), 2);
    // Exactly the line Dapr writes, no trailing newline (WriteRecord joins with "\n").
    assert_eq!(
        writes[0].body,
        "sensor-states,sensor=P1,garage=west occupied=true,lat=47.64"
    );
    assert_eq!(
        writes[1].body,
        "cpu,host=a load=0.5,n=3i 1700000000123000000"
    );
    assert_eq!(writes[0].query, "bucket=my-bucket&org=my-org&precision=ns");
    assert_eq!(writes[0].authorization, format!("Token {TOKEN}"));
    assert!(writes[0].content_type.starts_with("text/plain"));
    let points = stub.points("my-bucket");
    assert_eq!(points[0].tags["garage"], "west");
    assert_eq!(
        points[0].fields[0],
        ("occupied".into(), FieldValue::Boolean(true))
    );
    assert_eq!(points[1].time, 1_700_000_000_123_000_000);

    let answer = invoke(&binding, "query", "", &[("raw", ALL)])
        .await
        .expect("query succeeds")
        .expect("query answers");
    assert_eq!(
        answer.metadata,
        HashMap::from([
            ("operation".to_owned(), "query".to_owned()),
            ("raw".to_owned(), ALL.to_owned()),
        ])
    );
    let stop = rfc3339(NOW);
    // The server's annotated CSV, unchanged: one table per series and field.
    let expected = format!(
        "#datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,dateTime:RFC3339,double,string,string,string\r\n\
         #group,false,false,true,true,false,false,true,true,true\r\n\
         #default,_result,,,,,,,,\r\n\
         ,result,table,_start,_stop,_time,_value,_field,_measurement,host\r\n\
         ,,0,1970-01-01T00:00:00Z,{stop},2023-11-14T22:13:20.123Z,0.5,load,cpu,a\r\n\
         \r\n\
         #datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,dateTime:RFC3339,long,string,string,string\r\n\
         #group,false,false,true,true,false,false,true,true,true\r\n\
         #default,_result,,,,,,,,\r\n\
         ,result,table,_start,_stop,_time,_value,_field,_measurement,host\r\n\
         ,,1,1970-01-01T00:00:00Z,{stop},2023-11-14T22:13:20.123Z,3,n,cpu,a\r\n"
    );
    let csv = String::from_utf8(answer.data.to_vec()).unwrap();
    assert!(csv.starts_with(&expected), "{csv}");
    assert!(csv.contains(&format!(
        ",,2,1970-01-01T00:00:00Z,{stop},{stop},47.64,lat,sensor-states,west,P1\r\n"
    )));

    // What went on the wire: the default dialect, Flux, the org only.
    let queries = stub.queries();
    assert_eq!(queries[0].query, "org=my-org");
    let body: serde_json::Value = serde_json::from_str(&queries[0].body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({
            "query": ALL,
            "type": "flux",
            "dialect": {
                "annotations": ["datatype", "group", "default"],
                "delimiter": ",",
                "header": true,
            },
        })
    );
}

#[tokio::test]
async fn non_string_parts_are_written_as_go_prints_them() {
    let stub = InfluxStub::start(TOKEN, "my-org", "my-bucket").await;
    let binding = binding(&stub, TOKEN, "my-bucket").await;
    // Dapr formats with %s: a missing `tags` is `%!s(<nil>)`, which InfluxDB refuses.
    let error = invoke(
        &binding,
        "create",
        r#"{"measurement":"m","values":"v=1"}"#,
        &[],
    )
    .await
    .expect_err("a line without tags is malformed");
    assert_eq!(stub.writes()[0].body, "m,%!s(<nil>) v=1");
    assert_eq!(
        error.to_string(),
        "influx error: Cannot write point: invalid: unable to parse 'm,%!s(<nil>) v=1': missing tag value"
    );
}

#[tokio::test]
async fn errors_carry_the_server_s_message_and_never_the_token() {
    let stub = InfluxStub::start(TOKEN, "my-org", "my-bucket").await;
    let point = r#"{"measurement":"m","tags":"t=1","values":"v=1"}"#;

    let wrong = binding(&stub, "wrong-token", "my-bucket").await;
    let error = invoke(&wrong, "create", point, &[]).await.unwrap_err();
    assert!(matches!(error, BindingError::Failed { .. }));
    assert_eq!(
        error.to_string(),
        "influx error: Cannot write point: unauthorized: unauthorized access"
    );
    let error = invoke(&wrong, "query", "", &[("raw", ALL)])
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "do query influx err: unauthorized: unauthorized access"
    );
    assert!(!error.to_string().contains("wrong-token"));

    let elsewhere = binding(&stub, TOKEN, "nope").await;
    let error = invoke(&elsewhere, "create", point, &[]).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "influx error: Cannot write point: not found: bucket \"nope\" not found"
    );

    let binding = binding(&stub, TOKEN, "my-bucket").await;
    for (values, why) in [
        ("v=", "missing field value"),
        ("v=abc", "invalid boolean"),
        ("v=1 notatime", "bad timestamp"),
    ] {
        let data = serde_json::json!({"measurement": "m", "tags": "t=1", "values": values});
        let error = invoke(&binding, "create", &data.to_string(), &[])
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "influx error: Cannot write point: invalid: unable to parse 'm,t=1 {values}': {why}"
            )
        );
        assert!(!error.to_string().contains(TOKEN));
    }
    assert!(
        stub.points("my-bucket").is_empty(),
        "nothing malformed is stored"
    );

    let error = invoke(&binding, "query", "", &[("raw", "buckets()")])
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("do query influx err: invalid: "),
        "{error}"
    );
    let error = invoke(
        &binding,
        "query",
        "",
        &[("raw", r#"from(bucket:"other") |> range(start: 0)"#)],
    )
    .await
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "do query influx err: not found: failed to initialize execute state: could not find bucket \"other\""
    );
}

#[tokio::test]
async fn requests_dapr_refuses_are_refused_with_dapr_s_words() {
    let stub = InfluxStub::start(TOKEN, "my-org", "my-bucket").await;
    let binding = binding(&stub, TOKEN, "my-bucket").await;
    for data in ["not json", "[1,2]", "\"text\""] {
        let error = invoke(&binding, "create", data, &[]).await.unwrap_err();
        assert!(matches!(error, BindingError::Invalid(_)));
        assert_eq!(
            error.to_string(),
            "influx error: Cannot convert request data"
        );
    }
    let error = invoke(&binding, "query", "", &[]).await.unwrap_err();
    assert_eq!(error.to_string(), "metadata required");
    let error = invoke(&binding, "query", "", &[("raw", "")])
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "required metadata not set: raw");
    let error = invoke(&binding, "query", "", &[("other", "x")])
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "required metadata not set: raw");
    let error = invoke(&binding, "delete", "", &[]).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid operation type. Expected query or create"
    );
    assert!(stub.writes().is_empty() && stub.queries().is_empty());
}

#[tokio::test]
async fn every_required_field_is_named_when_missing() {
    let full = [
        ("url", "http://127.0.0.1:1"),
        ("token", TOKEN),
        ("org", "o"),
        ("bucket", "b"),
    ];
    for missing in ["url", "token", "org", "bucket"] {
        let values: Vec<(&str, &str)> = full
            .iter()
            .copied()
            .filter(|(name, _)| *name != missing)
            .collect();
        let error = match try_build(&values).await {
            Err(error) => error.to_string(),
            Ok(_) => panic!("builds without {missing}"),
        };
        assert!(error.contains(&format!("({missing})")), "{error}");
        assert!(error.contains("is required"), "{error}");
        assert!(!error.contains(TOKEN), "{error}");
    }
    let error = match try_build(&[
        ("url", "localhost:8086"),
        ("token", TOKEN),
        ("org", "o"),
        ("bucket", "b"),
    ])
    .await
    {
        Err(error) => error.to_string(),
        Ok(_) => panic!("builds with a URL without a scheme"),
    };
    assert!(error.contains("(url)"), "{error}");

    // Nothing listens on port 1: the failure names the server, not the token.
    let binding = try_build(&full).await.unwrap();
    let error = invoke(
        &binding,
        "create",
        r#"{"measurement":"m","tags":"t=1","values":"v=1"}"#,
        &[],
    )
    .await
    .unwrap_err();
    let text = error.to_string();
    assert!(
        text.starts_with(
            "influx error: Cannot write point: cannot reach InfluxDB at http://127.0.0.1:1"
        ),
        "{text}"
    );
    assert!(!text.contains(TOKEN));
}
