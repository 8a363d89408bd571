//! `bindings.aws.sqs` against an AWS emulator: a private `moto_server` per test on a free
//! loopback port (any credentials).

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use tandem_components::bindings::{Binding, Outcome};
use tandem_testkit::MotoServer;
use tokio_util::sync::CancellationToken;

mod support;
use support::bindings::{Events, create, next_event};

/// Creates `queue` on the emulator with one AWS JSON call, as an operator would have
/// before the app starts. moto picks the service from the credential scope of the
/// `Authorization` header and does not check the signature.
fn create_queue(server: &MotoServer, queue: &str, visibility_seconds: u32) {
    let body = format!(
        r#"{{"QueueName":"{queue}","Attributes":{{"VisibilityTimeout":"{visibility_seconds}"}}}}"#
    );
    let address = server.endpoint().trim_start_matches("http://").to_owned();
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    write!(
        stream,
        "POST / HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/x-amz-json-1.0\r\n\
         X-Amz-Target: AmazonSQS.CreateQueue\r\nAuthorization: AWS4-HMAC-SHA256 \
         Credential=test-access/20261204/us-east-1/sqs/aws4_request, SignedHeaders=host, \
         Signature=0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

async fn binding(server: &MotoServer, queue: &str) -> Result<Arc<dyn Binding>, String> {
    let endpoint = server.endpoint();
    support::bindings::binding(
        "bindings.aws.sqs",
        "jobs",
        &[
            ("queueName", queue),
            ("endpoint", &endpoint),
            ("region", "us-east-1"),
            ("accessKey", "test-access"),
            ("secretKey", "test-secret"),
        ],
    )
    .await
}

#[tokio::test]
async fn create_sends_and_reading_deletes_only_what_the_app_took() {
    let server = MotoServer::start();
    create_queue(&server, "jobs", 1);
    let binding = binding(&server, "jobs").await.unwrap();
    assert_eq!(
        binding.invoke(create(r#"{"n":1}"#, &[])).await.unwrap(),
        None
    );

    let (recorder, mut received) = Events::new(vec![Outcome::Retry]);
    let stop = CancellationToken::new();
    let reader = binding.read(recorder, stop.clone()).await.unwrap();
    let first = next_event(&mut received, Duration::from_secs(5))
        .await
        .expect("the message");
    assert_eq!(first.data, r#"{"n":1}"#);
    // Refused: it comes back after the queue's one-second visibility timeout.
    let again = next_event(&mut received, Duration::from_secs(5))
        .await
        .expect("the message again");
    assert_eq!(again.data, r#"{"n":1}"#);
    // Taken: deleted, so it does not come back.
    assert!(
        next_event(&mut received, Duration::from_secs(3))
            .await
            .is_none()
    );
    stop.cancel();
    reader.await.unwrap();
}

#[tokio::test]
async fn a_missing_queue_stops_the_start_naming_the_field() {
    let server = MotoServer::start();
    let error = binding(&server, "nowhere").await.err().unwrap();
    assert!(error.contains("queueName"), "{error}");
    assert!(!error.contains("test-secret"), "{error}");
}
