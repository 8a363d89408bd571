//! The oracle: what makes an answer (or a log line) a finding.
//!
//! 1. The sidecar never panics (no `panicked at` in its stderr) and keeps answering: a
//!    probe after every window of cases, and at the end (see `probe`).
//! 2. Every non-2xx HTTP answer of the sidecar's own API is Dapr's error shape: a JSON
//!    object with string `errorCode` and `message`, `Content-Type: application/json`.
//!    Exceptions: answers passed through from the app, Dapr's plain-text
//!    `401 invalid api token`, and answers to bytes that are not HTTP at all.
//! 3. No 5xx unless the case's [`Allow`](crate::case::Allow) admits that status and
//!    `errorCode` (the allow-list in [`crate::case::ALLOWANCES`]).
//! 4. gRPC: a `grpc-status` on every answer, and no `INTERNAL`/`UNKNOWN` unless admitted.
//! 5. No secret value in any answer but the secrets API's own successful ones, nor in
//!    the sidecars' logs.

use std::fmt;

use crate::case::{Case, Door, INTERNAL, UNKNOWN};
use crate::send::{Answer, GrpcAnswer, HttpAnswer, code_name};
use crate::world;

/// What kind of wrong a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Panic,
    Died,
    Unhealthy,
    SecretInAnswer,
    SecretInLog,
    ServerError,
    GrpcInternal,
    NoAnswer,
    TimedOut,
    ErrorShape,
    GrpcNoStatus,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Panic => "panic in the sidecar",
            Kind::Died => "sidecar process exited",
            Kind::Unhealthy => "sidecar stopped working (probe failed)",
            Kind::SecretInAnswer => "secret value in an answer",
            Kind::SecretInLog => "secret value in the log",
            Kind::ServerError => "5xx for a request the caller got wrong",
            Kind::GrpcInternal => "gRPC INTERNAL/UNKNOWN for a caller error",
            Kind::NoAnswer => "connection closed without an answer",
            Kind::TimedOut => "no answer in time",
            Kind::ErrorShape => "error answer without Dapr's error shape",
            Kind::GrpcNoStatus => "gRPC answer without grpc-status",
        })
    }
}

/// One rule broken by one answer: its kind and a short signature (status, code, first
/// words) that groups answers failing the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub kind: Kind,
    pub signature: String,
}

fn verdict(kind: Kind, signature: impl Into<String>) -> Verdict {
    Verdict {
        kind,
        signature: signature.into(),
    }
}

/// Every rule `answer` breaks for `case`.
pub fn judge(case: &Case, answer: &Answer) -> Vec<Verdict> {
    match answer {
        Answer::Http(answer) => judge_http(case, answer),
        Answer::Grpc(answer) => judge_grpc(case, answer),
        Answer::NoAnswer(reason) => vec![verdict(Kind::NoAnswer, first_words(reason, 60))],
        Answer::TimedOut => vec![verdict(Kind::TimedOut, "no answer in time")],
        Answer::Unsendable(_) => Vec::new(),
    }
}

fn judge_http(case: &Case, answer: &HttpAnswer) -> Vec<Verdict> {
    let mut found = Vec::new();
    let success = (200..300).contains(&answer.status);
    if !(case.reads_secrets && success) {
        let headers = answer.headers.iter().map(|(_, value)| value.as_slice());
        if let Some(which) = secret_in(std::iter::once(&answer.body[..]).chain(headers)) {
            found.push(verdict(
                Kind::SecretInAnswer,
                format!("HTTP {} carries secret #{which}", answer.status),
            ));
        }
    }
    if answer.header(world::ECHO_HEADER).is_some() {
        // The app's own answer, passed through: not the sidecar's to shape.
        return found;
    }
    if case.door() == Door::Internal && matches!(answer.status, 401 | 403) {
        // The internal port is about to require sidecars to authenticate.
        return found;
    }
    if success {
        return found;
    }
    let shape = if case.is_head() {
        // No body: the content type is all there is to judge.
        dapr_content_type(answer).map(|()| None)
    } else {
        dapr_error(answer).map(Some)
    };
    let token_refused = answer.status == 401 && &answer.body[..] == b"invalid api token";
    // 431: the HTTP layer's header limits, before any route; daprd's Go server answers
    // it in plain text too.
    let http_layer = case.not_http || answer.status == 431;
    if let Err(problem) = &shape
        && !token_refused
        && !http_layer
    {
        found.push(verdict(
            Kind::ErrorShape,
            format!("{} {problem}", answer.status),
        ));
    }
    if answer.status >= 500 {
        let admitted = match &shape {
            Ok(code) => case.allow.admits_http(answer.status, code.as_deref()),
            Err(_) => false,
        };
        if !admitted {
            let code = match &shape {
                Ok(Some(code)) => code.as_str(),
                Ok(None) => "(HEAD: no body)",
                Err(_) => "(no errorCode)",
            };
            found.push(verdict(
                Kind::ServerError,
                format!("{} {code}", answer.status),
            ));
        }
    }
    found
}

fn body_start(answer: &HttpAnswer) -> String {
    if answer.body.is_empty() {
        "(empty body)".to_owned()
    } else {
        format!(
            "\"{}\"",
            first_words(&String::from_utf8_lossy(&answer.body), 40)
        )
    }
}

/// Whether an answer says it is JSON, as Dapr's errors do.
fn dapr_content_type(answer: &HttpAnswer) -> Result<(), String> {
    let content_type = answer
        .header("content-type")
        .map(|value| String::from_utf8_lossy(value).to_ascii_lowercase());
    match content_type.as_deref() {
        Some(value) if value.starts_with("application/json") => Ok(()),
        Some(value) => Err(format!("content-type {value}, body {}", body_start(answer))),
        None => Err(format!("no content-type, body {}", body_start(answer))),
    }
}

/// The `errorCode` of an answer in Dapr's error shape, or what is wrong with its shape.
pub fn dapr_error(answer: &HttpAnswer) -> Result<String, String> {
    dapr_content_type(answer)?;
    let body_start = body_start(answer);
    let json: serde_json::Value = serde_json::from_slice(&answer.body)
        .map_err(|_| format!("body is not JSON: {body_start}"))?;
    match (json.get("errorCode"), json.get("message")) {
        (Some(serde_json::Value::String(code)), Some(serde_json::Value::String(_))) => {
            Ok(code.clone())
        }
        _ => Err(format!(
            "JSON without string errorCode and message: {body_start}"
        )),
    }
}

fn judge_grpc(case: &Case, answer: &GrpcAnswer) -> Vec<Verdict> {
    let mut found = Vec::new();
    if !(case.reads_secrets && answer.code == Some(0)) {
        let headers = answer.headers.iter().map(|(_, value)| value.as_slice());
        let texts = [&answer.body[..], answer.message.as_bytes()];
        if let Some(which) = secret_in(texts.into_iter().chain(headers)) {
            found.push(verdict(
                Kind::SecretInAnswer,
                format!(
                    "{} carries secret #{which}",
                    answer.code.map_or("(no status)", code_name)
                ),
            ));
        }
    }
    match answer.code {
        None => found.push(verdict(
            Kind::GrpcNoStatus,
            format!("HTTP {}", answer.http_status),
        )),
        Some(code @ (INTERNAL | UNKNOWN)) => {
            // The app's own failure, passed through: its mark in the message, or (an
            // answer without a body, such as HEAD's) daprd's `dapr-http-status`.
            let from_app = answer.message.contains(world::ECHO_MARK)
                || answer
                    .headers
                    .iter()
                    .any(|(name, _)| name.eq_ignore_ascii_case("dapr-http-status"));
            if !from_app && !case.allow.admits_grpc(code) {
                found.push(verdict(
                    Kind::GrpcInternal,
                    format!("{} {}", code_name(code), root_cause(&answer.message)),
                ));
            }
        }
        Some(_) => {}
    }
    found
}

/// Which secret (1-based, in [`world::SECRET_VALUES`]) appears in any of `texts`.
pub fn secret_in<'a>(texts: impl IntoIterator<Item = &'a [u8]>) -> Option<usize> {
    let texts: Vec<&[u8]> = texts.into_iter().collect();
    world::SECRET_VALUES
        .iter()
        .position(|secret| {
            texts.iter().any(|text| {
                text.windows(secret.len())
                    .any(|window| window == secret.as_bytes())
            })
        })
        .map(|at| at + 1)
}

/// The start of a message, cut at a word boundary: enough to group like answers, with
/// the parts that vary per request (names, numbers) mostly cut off.
pub fn first_words(text: &str, limit: usize) -> String {
    let text = text.trim();
    let cut = text.find([':', '\n']).unwrap_or(text.len()).min(limit);
    let mut end = cut;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// The last part of an error message (`a: b: root cause` → `root cause`), where the
/// names of the request (ids, keys) rarely are: like failures group together.
pub fn root_cause(message: &str) -> String {
    let last = message.rsplit(": ").next().unwrap_or(message);
    first_words(last, 60)
}

/// One panic as the Rust runtime writes it to stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Panic {
    /// `crates/.../file.rs:64:52: message` — the first frame in tandem's own code when
    /// the panic was raised in the standard library.
    pub signature: String,
    /// The `panicked at` line and the few after it.
    pub excerpt: String,
}

/// The panics in a piece of stderr.
pub fn panics(text: &str) -> Vec<Panic> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (at, line) in lines.iter().enumerate() {
        let Some(start) = line.find("panicked at ") else {
            continue;
        };
        let location = line[start + "panicked at ".len()..].trim_end_matches(':');
        let message = lines.get(at + 1).copied().unwrap_or_default().trim();
        let own_frame = lines[at + 1..]
            .iter()
            .take(120)
            .take_while(|line| !line.contains("panicked at "))
            .filter_map(|line| line.trim().strip_prefix("at "))
            .find_map(|place| place.find("crates/").map(|at| &place[at..]));
        // Paths relative to the workspace (`crates/...`) or to the standard library
        // (`library/std/...`, without the toolchain's hash).
        let location = location
            .find("crates/")
            .or_else(|| location.find("library/"))
            .map_or(location, |at| &location[at..]);
        let signature = match own_frame {
            Some(frame) if !location.starts_with("crates/") => {
                format!("{frame}: {message} (raised at {location})")
            }
            _ => format!("{location}: {message}"),
        };
        let excerpt = lines[at..lines.len().min(at + 2)].join("\n");
        found.push(Panic { signature, excerpt });
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::{Allow, HttpRequest, Request};
    use bytes::Bytes;

    fn http_case(allow: Allow) -> Case {
        Case {
            index: 0,
            endpoint: "GET /x".into(),
            mutation: "valid".into(),
            request: Request::Http(HttpRequest {
                method: b"GET".to_vec(),
                target: b"/x".to_vec(),
                headers: Vec::new(),
                body: Bytes::new(),
            }),
            allow,
            not_http: false,
            reads_secrets: false,
        }
    }

    fn answer(status: u16, content_type: Option<&str>, body: &str) -> Answer {
        Answer::Http(HttpAnswer {
            status,
            headers: content_type
                .map(|value| vec![("content-type".to_owned(), value.as_bytes().to_vec())])
                .unwrap_or_default(),
            body: Bytes::from(body.to_owned()),
        })
    }

    fn kinds(case: &Case, answer: &Answer) -> Vec<Kind> {
        judge(case, answer)
            .into_iter()
            .map(|found| found.kind)
            .collect()
    }

    #[test]
    fn dapr_shaped_errors_pass_and_others_do_not() {
        let case = http_case(Allow::Nothing);
        let good = r#"{"errorCode":"ERR_MALFORMED_REQUEST","message":"bad"}"#;
        assert!(kinds(&case, &answer(400, Some("application/json"), good)).is_empty());
        assert_eq!(kinds(&case, &answer(405, None, "")), vec![Kind::ErrorShape]);
        assert_eq!(
            kinds(&case, &answer(413, Some("text/plain"), "too big")),
            vec![Kind::ErrorShape]
        );
        assert_eq!(
            kinds(
                &case,
                &answer(400, Some("application/json"), r#"{"error":"x"}"#)
            ),
            vec![Kind::ErrorShape]
        );
        assert!(kinds(&case, &answer(401, Some("text/plain"), "invalid api token")).is_empty());
        assert!(kinds(&case, &answer(204, None, "")).is_empty());
    }

    #[test]
    fn a_5xx_passes_only_when_its_case_allows_that_code() {
        let invoke = r#"{"errorCode":"ERR_DIRECT_INVOKE","message":"no"}"#;
        let save = r#"{"errorCode":"ERR_STATE_SAVE","message":"no"}"#;
        let json = Some("application/json");
        assert!(
            kinds(
                &http_case(Allow::UnreachableTarget),
                &answer(500, json, invoke)
            )
            .is_empty()
        );
        assert_eq!(
            kinds(&http_case(Allow::Nothing), &answer(500, json, invoke)),
            vec![Kind::ServerError]
        );
        assert_eq!(
            kinds(
                &http_case(Allow::UnreachableTarget),
                &answer(500, json, save)
            ),
            vec![Kind::ServerError]
        );
        assert_eq!(
            kinds(
                &http_case(Allow::Nothing),
                &answer(502, Some("text/plain"), "x")
            ),
            vec![Kind::ErrorShape, Kind::ServerError]
        );
    }

    #[test]
    fn the_apps_answers_are_passed_through_unjudged() {
        let answer = Answer::Http(HttpAnswer {
            status: 503,
            headers: vec![(world::ECHO_HEADER.to_owned(), b"echo".to_vec())],
            body: Bytes::from_static(b"fuzz-echo status 503"),
        });
        assert!(kinds(&http_case(Allow::Nothing), &answer).is_empty());
    }

    #[test]
    fn secrets_may_appear_only_in_the_secrets_apis_own_answers() {
        let body = format!("{{\"x\":\"{}\"}}", world::SECRET_VALUES[1]);
        let mut case = http_case(Allow::Nothing);
        assert_eq!(
            kinds(&case, &answer(200, Some("application/json"), &body)),
            vec![Kind::SecretInAnswer]
        );
        case.reads_secrets = true;
        assert!(kinds(&case, &answer(200, Some("application/json"), &body)).is_empty());
        let error = format!(
            "{{\"errorCode\":\"ERR_SECRET_GET\",\"message\":\"{}\"}}",
            world::SECRET_VALUES[0]
        );
        case.allow = Allow::MissingSecret;
        assert_eq!(
            kinds(&case, &answer(500, Some("application/json"), &error)),
            vec![Kind::SecretInAnswer]
        );
    }

    #[test]
    fn grpc_internal_needs_an_allowance() {
        let mut case = http_case(Allow::Nothing);
        let grpc = |code: Option<i32>, message: &str| {
            Answer::Grpc(GrpcAnswer {
                http_status: 200,
                code,
                message: message.into(),
                headers: Vec::new(),
                body: Bytes::new(),
            })
        };
        assert_eq!(
            kinds(&case, &grpc(Some(INTERNAL), "boom")),
            vec![Kind::GrpcInternal]
        );
        assert_eq!(
            kinds(&case, &grpc(Some(UNKNOWN), "boom")),
            vec![Kind::GrpcInternal]
        );
        assert!(kinds(&case, &grpc(Some(UNKNOWN), "fuzz-echo status 500")).is_empty());
        assert!(kinds(&case, &grpc(Some(3), "bad")).is_empty());
        assert_eq!(kinds(&case, &grpc(None, "")), vec![Kind::GrpcNoStatus]);
        case.allow = Allow::Undecodable;
        assert!(kinds(&case, &grpc(Some(INTERNAL), "decode")).is_empty());
    }

    #[test]
    fn root_causes_are_the_last_part_of_a_message() {
        assert_eq!(
            root_cause("failed to invoke, id: a, err: bad request: invalid uri character"),
            "invalid uri character"
        );
        assert_eq!(root_cause("plain"), "plain");
    }

    #[test]
    fn panics_are_found_with_tandems_own_frame() {
        let stderr = "\
2026 INFO ok
thread 'tokio-rt-worker' (5958) panicked at /rustc/abc/library/std/src/time.rs:429:33:
overflow when adding duration to instant
stack backtrace:
   5: <std::time::Instant as core::ops::arith::Add<core::time::Duration>>::add
             at /rustc/abc/library/std/src/time.rs:429:33
   6: tandem_components::state::in_memory::Table::apply::{{closure}}
             at /work/x/crates/tandem-components/src/state/in_memory.rs:64:52
thread 'tokio-rt-worker' (5959) panicked at crates/tandem-components/src/state/in_memory.rs:105:43:
state table lock: PoisonError { .. }
";
        let found = panics(stderr);
        assert_eq!(found.len(), 2);
        assert_eq!(
            found[0].signature,
            "crates/tandem-components/src/state/in_memory.rs:64:52: overflow when adding duration to instant (raised at library/std/src/time.rs:429:33)"
        );
        assert_eq!(
            found[1].signature,
            "crates/tandem-components/src/state/in_memory.rs:105:43: state table lock: PoisonError { .. }"
        );
        assert!(panics("all fine\n").is_empty());
    }
}
