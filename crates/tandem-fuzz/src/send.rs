//! Sending cases: HTTP/1.1 written byte by byte on a fresh connection (so the method,
//! target and headers can be anything), and HTTP/2 for gRPC and the internal port, one
//! connection per request so a case that breaks a connection cannot fail its neighbours.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::case::{GrpcRequest, HttpRequest, InternalRequest, escape};

/// What came back.
#[derive(Debug, Clone)]
pub enum Answer {
    /// An HTTP answer: from the API (HTTP/1.1) or the internal port (HTTP/2).
    Http(HttpAnswer),
    Grpc(GrpcAnswer),
    /// The connection ended, or failed, before a whole answer arrived.
    NoAnswer(String),
    /// Nothing within the time allowed.
    TimedOut,
    /// The request could not even be put on the wire (the fuzzer's own limitation, e.g.
    /// a header name HTTP/2 cannot carry): not judged.
    Unsendable(String),
}

#[derive(Debug, Clone)]
pub struct HttpAnswer {
    pub status: u16,
    /// Names in lower case.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Bytes,
}

impl HttpAnswer {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(candidate, _)| candidate == name)
            .map(|(_, value)| value.as_slice())
    }
}

#[derive(Debug, Clone)]
pub struct GrpcAnswer {
    pub http_status: u16,
    /// `grpc-status`, from the trailers or a trailers-only answer.
    pub code: Option<i32>,
    /// `grpc-message`, percent-decoded.
    pub message: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Bytes,
}

impl Answer {
    /// A short description for reports.
    pub fn describe(&self) -> String {
        match self {
            Answer::Http(answer) => format!(
                "HTTP {}, content-type {}, body ({} bytes): {}",
                answer.status,
                answer
                    .header("content-type")
                    .map_or_else(|| "(none)".to_owned(), |value| escape(value, 80)),
                answer.body.len(),
                escape(&answer.body, 300)
            ),
            Answer::Grpc(answer) => format!(
                "gRPC status {} {} (HTTP {}): {}",
                answer
                    .code
                    .map_or_else(|| "(none)".to_owned(), |code| code.to_string()),
                answer.code.map_or("", code_name),
                answer.http_status,
                escape(answer.message.as_bytes(), 300)
            ),
            Answer::NoAnswer(reason) => format!("no answer: {reason}"),
            Answer::TimedOut => "no answer in time".into(),
            Answer::Unsendable(reason) => format!("not sent: {reason}"),
        }
    }

    /// The status as tallied per endpoint: `204`, `INVALID_ARGUMENT`, `no answer`.
    pub fn status_label(&self) -> String {
        match self {
            Answer::Http(answer) => answer.status.to_string(),
            Answer::Grpc(answer) => answer.code.map_or_else(
                || format!("HTTP {}", answer.http_status),
                |code| code_name(code).to_owned(),
            ),
            Answer::NoAnswer(_) => "no answer".into(),
            Answer::TimedOut => "timeout".into(),
            Answer::Unsendable(_) => "not sent".into(),
        }
    }
}

/// gRPC's name for a status code.
pub fn code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "(not a gRPC code)",
    }
}

/// Sends an HTTP/1.1 request to `127.0.0.1:port` and reads the answer.
pub async fn http(port: u16, request: &HttpRequest, timeout: Duration) -> Answer {
    tokio::time::timeout(timeout, http_once(port, request))
        .await
        .unwrap_or(Answer::TimedOut)
}

/// The request head: method, target and headers exactly as given, plus `Host`,
/// `Connection: close` (the answer ends with the connection) and the body's length.
fn head(port: u16, request: &HttpRequest) -> Vec<u8> {
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(&request.method);
    head.push(b' ');
    head.extend_from_slice(&request.target);
    head.extend_from_slice(b" HTTP/1.1\r\n");
    head.extend_from_slice(format!("host: 127.0.0.1:{port}\r\nconnection: close\r\n").as_bytes());
    if !request.body.is_empty() || matches!(request.method.as_slice(), b"POST" | b"PUT" | b"PATCH")
    {
        head.extend_from_slice(format!("content-length: {}\r\n", request.body.len()).as_bytes());
    }
    for (name, value) in &request.headers {
        head.extend_from_slice(name);
        head.extend_from_slice(b": ");
        head.extend_from_slice(value);
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

async fn http_once(port: u16, request: &HttpRequest) -> Answer {
    let stream = match TcpStream::connect(("127.0.0.1", port)).await {
        Ok(stream) => stream,
        Err(error) => return Answer::NoAnswer(format!("cannot connect: {error}")),
    };
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let head = head(port, request);
    // Writing and reading at once: a server may answer (413, 400) before it has read
    // the whole body. The write half stays open until the answer is read: a half-closed
    // connection is one the server may drop mid-request.
    let write = async {
        writer.write_all(&head).await?;
        writer.write_all(&request.body).await?;
        writer.flush().await
    };
    let read = async {
        let mut received = Vec::new();
        let error = loop {
            match reader.read_buf(&mut received).await {
                Ok(0) => break None,
                Ok(_) => {}
                Err(error) => break Some(error),
            }
        };
        (received, error)
    };
    let (_, (received, error)) = tokio::join!(write, read);
    drop(writer);
    match parse_http(&received) {
        Ok(answer) => Answer::Http(answer),
        Err(problem) => Answer::NoAnswer(match error {
            Some(error) => format!("{problem} ({error})"),
            None => problem,
        }),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// Parses an HTTP/1.1 answer read to the end of the connection; interim (1xx) answers
/// are skipped.
pub fn parse_http(mut bytes: &[u8]) -> Result<HttpAnswer, String> {
    loop {
        if bytes.is_empty() {
            return Err("connection closed before any answer".into());
        }
        let end = find(bytes, b"\r\n\r\n").ok_or_else(|| {
            format!(
                "connection closed inside the answer's head: {}",
                escape(bytes, 120)
            )
        })?;
        let head = &bytes[..end];
        let rest = &bytes[end + 4..];
        let mut lines = head
            .split(|&byte| byte == b'\n')
            .map(|line| line.strip_suffix(b"\r").unwrap_or(line));
        let status_line = lines.next().unwrap_or_default();
        let status = std::str::from_utf8(status_line)
            .ok()
            .and_then(|line| line.split(' ').nth(1))
            .and_then(|code| code.parse::<u16>().ok())
            .ok_or_else(|| format!("not an HTTP status line: {}", escape(status_line, 80)))?;
        let mut headers = Vec::new();
        for line in lines {
            if let Some(colon) = line.iter().position(|&byte| byte == b':') {
                let name = String::from_utf8_lossy(&line[..colon]).to_ascii_lowercase();
                let value = line[colon + 1..].trim_ascii().to_vec();
                headers.push((name, value));
            }
        }
        if (100..200).contains(&status) {
            bytes = rest;
            continue;
        }
        let value_of = |name: &str| {
            headers
                .iter()
                .find(|(candidate, _)| candidate == name)
                .map(|(_, value)| value.clone())
        };
        let body = if value_of("transfer-encoding")
            .is_some_and(|value| value.eq_ignore_ascii_case(b"chunked"))
        {
            dechunk(rest)?
        } else if let Some(length) = value_of("content-length")
            .and_then(|value| String::from_utf8(value).ok())
            .and_then(|value| value.parse::<usize>().ok())
        {
            rest[..length.min(rest.len())].to_vec()
        } else {
            rest.to_vec()
        };
        return Ok(HttpAnswer {
            status,
            headers,
            body: Bytes::from(body),
        });
    }
}

fn dechunk(mut bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let Some(end) = find(bytes, b"\r\n") else {
            // Cut short: what arrived is the body.
            return Ok(body);
        };
        let size_text = String::from_utf8_lossy(&bytes[..end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size '{size_text}'"))?;
        bytes = &bytes[end + 2..];
        if size == 0 {
            return Ok(body);
        }
        let take = size.min(bytes.len());
        body.extend_from_slice(&bytes[..take]);
        bytes = &bytes[take..];
        bytes = bytes.strip_prefix(b"\r\n").unwrap_or(bytes);
    }
}

type Exchange = (http::response::Parts, Bytes, Option<http::HeaderMap>);

/// One HTTP/2 request (prior knowledge, cleartext) on its own connection.
async fn h2(port: u16, request: http::Request<Full<Bytes>>) -> Result<Exchange, String> {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|error| format!("cannot connect: {error}"))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(|error| format!("HTTP/2 handshake: {error}"))?;
    let connection = tokio::spawn(connection);
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|error| format!("{error}"))?;
        let (parts, body) = response.into_parts();
        let collected = body
            .collect()
            .await
            .map_err(|error| format!("reading the answer: {error}"))?;
        let trailers = collected.trailers().cloned();
        Ok((parts, collected.to_bytes(), trailers))
    }
    .await;
    connection.abort();
    result
}

fn headers_of(map: &http::HeaderMap) -> Vec<(String, Vec<u8>)> {
    map.iter()
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect()
}

/// Sends a gRPC call to the gRPC port.
pub async fn grpc(port: u16, request: &GrpcRequest, timeout: Duration) -> Answer {
    let mut builder = http::Request::builder()
        .method("POST")
        .uri(format!("http://127.0.0.1:{port}{}", request.path))
        .header("content-type", request.content_type.as_str())
        .header("te", "trailers");
    for (name, value) in &request.metadata {
        builder = builder.header(name.as_str(), value.as_slice());
    }
    let built = match builder.body(Full::new(request.body.clone())) {
        Ok(built) => built,
        Err(error) => return Answer::Unsendable(error.to_string()),
    };
    let exchange = match tokio::time::timeout(timeout, h2(port, built)).await {
        Err(_) => return Answer::TimedOut,
        Ok(Err(reason)) => return Answer::NoAnswer(reason),
        Ok(Ok(exchange)) => exchange,
    };
    let (parts, body, trailers) = exchange;
    let find = |name: &str| {
        trailers
            .as_ref()
            .and_then(|trailers| trailers.get(name))
            .or_else(|| parts.headers.get(name))
            .map(|value| value.as_bytes().to_vec())
    };
    let code = find("grpc-status")
        .and_then(|value| String::from_utf8(value).ok())
        .and_then(|value| value.trim().parse::<i32>().ok());
    let message = find("grpc-message")
        .map(|value| percent_decode(&value))
        .unwrap_or_default();
    let mut headers = headers_of(&parts.headers);
    if let Some(trailers) = &trailers {
        headers.extend(headers_of(trailers));
    }
    Answer::Grpc(GrpcAnswer {
        http_status: parts.status.as_u16(),
        code,
        message,
        headers,
        body,
    })
}

/// Sends a request to the internal port.
pub async fn internal(port: u16, request: &InternalRequest, timeout: Duration) -> Answer {
    let mut builder = http::Request::builder()
        .method(request.method.as_str())
        .uri(format!("http://127.0.0.1:{port}{}", request.path_and_query));
    for (name, value) in &request.headers {
        builder = builder.header(name.as_str(), value.as_slice());
    }
    let built = match builder.body(Full::new(request.body.clone())) {
        Ok(built) => built,
        Err(error) => return Answer::Unsendable(error.to_string()),
    };
    match tokio::time::timeout(timeout, h2(port, built)).await {
        Err(_) => Answer::TimedOut,
        Ok(Err(reason)) => Answer::NoAnswer(reason),
        Ok(Ok((parts, body, _))) => Answer::Http(HttpAnswer {
            status: parts.status.as_u16(),
            headers: headers_of(&parts.headers),
            body,
        }),
    }
}

/// `grpc-message` is percent-encoded (gRPC over HTTP/2, "Responses").
fn percent_decode(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%'
            && let Some(hex) = bytes.get(at + 1..at + 3)
            && let Ok(value) = u8::from_str_radix(&String::from_utf8_lossy(hex), 16)
        {
            out.push(value);
            at += 3;
            continue;
        }
        out.push(bytes[at]);
        at += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_with_length_chunks_or_nothing_are_read() {
        let answer = parse_http(
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: a/b\r\ncontent-length: 2\r\n\r\nokEXTRA",
        )
        .unwrap();
        assert_eq!(answer.status, 400);
        assert_eq!(answer.header("content-type"), Some(&b"a/b"[..]));
        assert_eq!(answer.body, "ok");

        let chunked = parse_http(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(chunked.body, "abcde");

        let interim =
            parse_http(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n").unwrap();
        assert_eq!(interim.status, 204);

        assert!(parse_http(b"").is_err());
        assert!(parse_http(b"HTTP/1.1 200 OK\r\ncontent-le").is_err());
    }

    #[test]
    fn the_head_carries_the_request_as_given() {
        let request = HttpRequest {
            method: b"FOO".to_vec(),
            target: b"/a\xff?b=%FF".to_vec(),
            headers: vec![(b"x-a".to_vec(), b"\xe9".to_vec())],
            body: Bytes::from_static(b"xy"),
        };
        assert_eq!(
            head(8080, &request),
            b"FOO /a\xff?b=%FF HTTP/1.1\r\nhost: 127.0.0.1:8080\r\nconnection: close\r\ncontent-length: 2\r\nx-a: \xe9\r\n\r\n"
        );
    }

    #[test]
    fn grpc_messages_are_percent_decoded() {
        assert_eq!(percent_decode(b"a%20b%zz%"), "a b%zz%");
    }
}
