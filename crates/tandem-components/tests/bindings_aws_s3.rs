//! `bindings.aws.s3` against an AWS emulator: a private `moto_server` per test on a free
//! loopback port (any credentials).

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::sync::Arc;

use base64::Engine as _;
use serde_json::Value;
use tandem_components::bindings::{self, Binding, BindingError, InvokeRequest};
use tandem_spec::{Component, ComponentMetadata};
use tandem_testkit::MotoServer;

/// One raw HTTP/1.1 exchange with the emulator; returns the status line's code and the
/// body. moto picks the service from the credential scope of the `Authorization`
/// header and does not check the signature.
fn raw(server: &MotoServer, method: &str, target: &str, signed: bool) -> (u16, Vec<u8>) {
    let address = server.endpoint().trim_start_matches("http://").to_owned();
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    let authorization = if signed {
        "Authorization: AWS4-HMAC-SHA256 Credential=test-access/20261204/us-east-1/s3/aws4_request, \
         SignedHeaders=host, Signature=0\r\n"
    } else {
        ""
    };
    write!(
        stream,
        "{method} {target} HTTP/1.1\r\nHost: {address}\r\n{authorization}\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not HTTP: {text}"));
    let at = answer
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("headers end");
    (status, answer[at + 4..].to_vec())
}

/// Creates `bucket` on the emulator (CreateBucket, `PUT /{bucket}`), as an operator
/// would have before the app starts.
fn create_bucket(server: &MotoServer, bucket: &str) {
    let (status, body) = raw(server, "PUT", &format!("/{bucket}"), true);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
}

async fn binding_with(
    server: &MotoServer,
    extra: &[(&str, &str)],
) -> Result<Arc<dyn Binding>, String> {
    let mut values: BTreeMap<String, String> = [
        ("endpoint", server.endpoint()),
        ("region", "us-east-1".to_owned()),
        ("accessKey", "test-access".to_owned()),
        ("secretKey", "test-secret".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (name, value) in extra {
        values.insert((*name).to_owned(), (*value).to_owned());
    }
    let metadata = ComponentMetadata::new(Component::new("files", "bindings.aws.s3"), values);
    bindings::registry()
        .build(&metadata)
        .await
        .map_err(|error| error.to_string())
}

async fn binding(server: &MotoServer, bucket: &str) -> Arc<dyn Binding> {
    binding_with(server, &[("bucket", bucket)]).await.unwrap()
}

fn request(operation: &str, data: &[u8], metadata: &[(&str, &str)]) -> InvokeRequest {
    InvokeRequest {
        operation: operation.into(),
        data: data.to_vec().into(),
        metadata: metadata
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<HashMap<_, _>>(),
    }
}

async fn get(binding: &Arc<dyn Binding>, key: &str) -> Result<Vec<u8>, BindingError> {
    binding
        .invoke(request("get", b"", &[("key", key)]))
        .await
        .map(|answer| answer.expect("get answers").data.to_vec())
}

#[tokio::test]
async fn create_then_get_round_trips_with_a_given_key_and_a_generated_one() {
    let server = MotoServer::start();
    create_bucket(&server, "files");
    let binding = binding(&server, "files").await;

    // Through the HTTP API the data is JSON: a string arrives with its quotes.
    let answer = binding
        .invoke(request(
            "create",
            br#""hello, s3""#,
            &[("key", "notes/été 1+1.txt"), ("contentType", "text/plain")],
        ))
        .await
        .unwrap()
        .expect("create answers");
    assert_eq!(answer.metadata["key"], "notes/été 1+1.txt");
    let body: Value = serde_json::from_slice(&answer.data).unwrap();
    assert_eq!(
        body["location"],
        format!("{}/files/notes/été 1+1.txt", server.endpoint())
    );
    assert!(body.get("versionID").is_some(), "{body}");
    assert!(body.get("presignURL").is_none(), "{body}");
    assert_eq!(
        get(&binding, "notes/été 1+1.txt").await.unwrap(),
        b"hello, s3"
    );
    let (status, head) = raw(
        &server,
        "HEAD",
        "/files/notes/%C3%A9t%C3%A9%201%2B1.txt",
        true,
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&head));

    // Tags and a storage class go with the object.
    binding
        .invoke(request(
            "create",
            b"tagged",
            &[
                ("key", "tagged.txt"),
                ("tags", "team=a b,env=prod"),
                ("storageClass", "STANDARD_IA"),
            ],
        ))
        .await
        .unwrap();
    let (status, tags) = raw(&server, "GET", "/files/tagged.txt?tagging", true);
    let tags = String::from_utf8_lossy(&tags);
    assert_eq!(status, 200, "{tags}");
    assert!(
        tags.contains("<Key>team</Key><Value>a b</Value>") && tags.contains("<Key>env</Key>"),
        "{tags}"
    );
    let listed = binding
        .invoke(request("list", br#"{"prefix":"tagged"}"#, &[]))
        .await
        .unwrap()
        .unwrap();
    let listed: Value = serde_json::from_slice(&listed.data).unwrap();
    assert_eq!(
        listed["Contents"][0]["StorageClass"], "STANDARD_IA",
        "{listed}"
    );
    let error = binding
        .invoke(request("create", b"x", &[("key", "k"), ("tags", "oops")]))
        .await
        .unwrap_err();
    assert!(matches!(error, BindingError::Invalid(_)), "{error}");

    // A JSON document is stored as it came.
    let answer = binding
        .invoke(request("create", br#"{"n":1}"#, &[]))
        .await
        .unwrap()
        .expect("create answers");
    let key = answer.metadata["key"].clone();
    assert!(
        uuid::Uuid::parse_str(&key).is_ok(),
        "a generated key: {key}"
    );
    assert_eq!(get(&binding, &key).await.unwrap(), br#"{"n":1}"#);
}

#[tokio::test]
async fn binary_data_travels_as_base64_with_decode_and_encode() {
    let server = MotoServer::start();
    create_bucket(&server, "blobs");
    let bytes: Vec<u8> = (0..=255u8).rev().collect();
    let encoded = base64::engine::general_purpose::STANDARD.encode(&bytes);

    // Per request, as Dapr's request metadata.
    let binding = binding(&server, "blobs").await;
    binding
        .invoke(request(
            "create",
            format!("\"{encoded}\"").as_bytes(),
            &[("key", "one.bin"), ("decodeBase64", "true")],
        ))
        .await
        .unwrap();
    assert_eq!(get(&binding, "one.bin").await.unwrap(), bytes);
    let answer = binding
        .invoke(request(
            "get",
            b"",
            &[("key", "one.bin"), ("encodeBase64", "true")],
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer.data, encoded.as_bytes());

    // For the component, as its metadata.
    let both = binding_with(
        &server,
        &[
            ("bucket", "blobs"),
            ("decodeBase64", "true"),
            ("encodeBase64", "true"),
        ],
    )
    .await
    .unwrap();
    both.invoke(request("create", encoded.as_bytes(), &[("key", "two.bin")]))
        .await
        .unwrap();
    assert_eq!(get(&binding, "two.bin").await.unwrap(), bytes);
    assert_eq!(get(&both, "two.bin").await.unwrap(), encoded.as_bytes());

    let error = both
        .invoke(request("create", b"not base64!", &[("key", "three.bin")]))
        .await
        .unwrap_err();
    assert!(matches!(error, BindingError::Invalid(_)), "{error}");
    assert!(error.to_string().contains("decodeBase64"), "{error}");
}

#[tokio::test]
async fn list_answers_dapr_s_shape_with_prefix_delimiter_and_pages() {
    let server = MotoServer::start();
    create_bucket(&server, "listing");
    let binding = binding(&server, "listing").await;
    for key in ["a/1.txt", "a/2.txt", "a/d/3.txt", "b/4.txt"] {
        binding
            .invoke(request("create", b"x", &[("key", key)]))
            .await
            .unwrap();
    }
    let list = |data: &'static str| {
        let binding = binding.clone();
        async move {
            let answer = binding
                .invoke(request("list", data.as_bytes(), &[]))
                .await
                .unwrap()
                .expect("list answers");
            serde_json::from_slice::<Value>(&answer.data).unwrap()
        }
    };
    let keys = |answer: &Value| -> Vec<String> {
        answer["Contents"]
            .as_array()
            .map(|objects| {
                objects
                    .iter()
                    .map(|object| object["Key"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };

    let all = list("").await;
    assert_eq!(
        keys(&all),
        ["a/1.txt", "a/2.txt", "a/d/3.txt", "b/4.txt"],
        "{all}"
    );
    assert_eq!(all["Name"], "listing");
    assert_eq!(all["MaxKeys"], 1000);
    assert_eq!(all["IsTruncated"], false);
    assert_eq!(all["Contents"][0]["Size"], 1);
    assert!(
        all["Contents"][0]["ETag"]
            .as_str()
            .unwrap()
            .starts_with('"')
    );

    let prefixed = list(r#"{"prefix": "a/"}"#).await;
    assert_eq!(keys(&prefixed), ["a/1.txt", "a/2.txt", "a/d/3.txt"]);
    assert_eq!(prefixed["Prefix"], "a/");

    let folders = list(r#"{"prefix": "a/", "delimiter": "/"}"#).await;
    assert_eq!(keys(&folders), ["a/1.txt", "a/2.txt"]);
    assert_eq!(folders["CommonPrefixes"][0]["Prefix"], "a/d/");

    let page = list(r#"{"maxResults": 2}"#).await;
    assert_eq!(keys(&page), ["a/1.txt", "a/2.txt"]);
    assert_eq!(page["IsTruncated"], true);
    let next = list(r#"{"maxResults": 2, "marker": "a/2.txt"}"#).await;
    assert_eq!(keys(&next), ["a/d/3.txt", "b/4.txt"]);

    let none = list(r#"{"prefix": "zzz"}"#).await;
    assert_eq!(none["Contents"], Value::Null);

    let error = binding
        .invoke(request("list", b"[1]", &[]))
        .await
        .unwrap_err();
    assert!(matches!(error, BindingError::Invalid(_)), "{error}");
}

#[tokio::test]
async fn delete_removes_the_object_and_get_then_fails_clearly() {
    let server = MotoServer::start();
    create_bucket(&server, "gone");
    let binding = binding(&server, "gone").await;
    binding
        .invoke(request("create", b"bye", &[("key", "old.txt")]))
        .await
        .unwrap();
    assert_eq!(get(&binding, "old.txt").await.unwrap(), b"bye");
    let answer = binding
        .invoke(request("delete", b"", &[("key", "old.txt")]))
        .await
        .unwrap();
    assert_eq!(answer, None, "delete has no answer (204)");
    let error = get(&binding, "old.txt").await.unwrap_err().to_string();
    assert!(error.contains("object not found"), "{error}");
    assert!(error.contains("old.txt"), "{error}");

    for operation in ["get", "delete", "presign"] {
        let error = binding
            .invoke(request(operation, b"", &[]))
            .await
            .unwrap_err();
        assert!(matches!(error, BindingError::Invalid(_)), "{error}");
        assert!(error.to_string().contains("'key'"), "{error}");
    }
}

#[tokio::test]
async fn presign_answers_a_url_that_gets_the_object() {
    let server = MotoServer::start();
    create_bucket(&server, "shared");
    let binding = binding(&server, "shared").await;
    let answer = binding
        .invoke(request(
            "create",
            b"for you",
            &[("key", "gift box.txt"), ("presignTTL", "15m")],
        ))
        .await
        .unwrap()
        .unwrap();
    let body: Value = serde_json::from_slice(&answer.data).unwrap();
    let created = body["presignURL"].as_str().expect("presignURL").to_owned();
    assert!(created.contains("X-Amz-Expires=900"), "{created}");

    let answer = binding
        .invoke(request(
            "presign",
            b"",
            &[("key", "gift box.txt"), ("presignTTL", "1h")],
        ))
        .await
        .unwrap()
        .unwrap();
    let body: Value = serde_json::from_slice(&answer.data).unwrap();
    let url = body["presignURL"].as_str().expect("presignURL");
    assert!(
        url.starts_with(&format!("{}/shared/gift%20box.txt?", server.endpoint())),
        "{url}"
    );
    assert!(url.contains("X-Amz-Signature="), "{url}");
    assert!(!url.contains("test-secret"), "{url}");
    // Anyone with the URL, without credentials of their own.
    let target = url.trim_start_matches(&server.endpoint()).to_owned();
    let (status, data) = raw(&server, "GET", &target, false);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&data));
    assert_eq!(data, b"for you");

    let error = binding
        .invoke(request("presign", b"", &[("key", "gift box.txt")]))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("presignTTL"), "{error}");
    let error = binding
        .invoke(request(
            "presign",
            b"",
            &[("key", "gift box.txt"), ("presignTTL", "8d")],
        ))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("presignTTL"), "{error}");
}

#[tokio::test]
async fn a_missing_bucket_stops_the_start_naming_the_field() {
    let server = MotoServer::start();
    let error = binding_with(&server, &[("bucket", "nowhere")])
        .await
        .err()
        .unwrap();
    assert!(
        error.contains("bucket") && error.contains("nowhere"),
        "{error}"
    );
    assert!(error.contains("does not exist"), "{error}");
    assert!(!error.contains("test-secret"), "{error}");

    let error = binding_with(&server, &[]).await.err().unwrap();
    assert!(error.contains("(bucket)"), "{error}");
}

#[tokio::test]
async fn a_bucket_removed_after_the_start_is_named_in_the_call_s_error() {
    let server = MotoServer::start();
    create_bucket(&server, "brief");
    let binding = binding(&server, "brief").await;
    let (status, body) = raw(&server, "DELETE", "/brief", true);
    assert_eq!(status, 204, "{}", String::from_utf8_lossy(&body));
    let error = binding
        .invoke(request("create", b"x", &[("key", "k")]))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("'brief'") && error.contains("metadata field bucket"),
        "{error}"
    );
}

#[tokio::test]
async fn bad_settings_are_refused_by_field_without_secrets() {
    let server = MotoServer::start();
    create_bucket(&server, "files");
    let refused = [
        (("insecureSSL", "true"), "insecureSSL"),
        (("forcePathStyle", "maybe"), "forcePathStyle"),
        (("decodeBase64", "sometimes"), "decodeBase64"),
        (("encodeBase64", "2"), "encodeBase64"),
        (("disableSSL", "perhaps"), "disableSSL"),
        (("endpoint", "ftp://127.0.0.1:1"), "endpoint"),
        (("endpoint", "http://127.0.0.1:1/some/path"), "endpoint"),
        (("region", "us east"), "region"),
        (("bucket", "a/b"), "bucket"),
    ];
    for ((name, value), field) in refused {
        let mut settings = vec![("bucket", "files"), ("secretKey", "hunter2-secret")];
        settings.push((name, value));
        let error = binding_with(&server, &settings).await.err().unwrap();
        assert!(error.contains(&format!("({field})")), "{name}: {error}");
        assert!(!error.contains("hunter2"), "{name}: {error}");
    }
    // An endpoint nobody answers at: the start fails naming the bucket, not the keys.
    let error = binding_with(
        &server,
        &[("bucket", "files"), ("endpoint", "http://127.0.0.1:1")],
    )
    .await
    .err()
    .unwrap();
    assert!(error.contains("(bucket)"), "{error}");
    assert!(!error.contains("test-secret"), "{error}");
    // insecureSSL false is fine, and the operations are Dapr's (bulk ones aside).
    let binding = binding_with(&server, &[("bucket", "files"), ("insecureSSL", "false")])
        .await
        .unwrap();
    assert_eq!(
        binding.operations(),
        ["create", "get", "delete", "list", "presign"]
    );
}
