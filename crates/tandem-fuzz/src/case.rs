//! One fuzz case: the request to send, the endpoint it aims at (for grouping), what was
//! done to it, and which server-side failure the oracle may accept for it.

use std::fmt::Write as _;

use bytes::Bytes;

/// What a case may legitimately get back as a 5xx (HTTP) or `INTERNAL` (gRPC): the
/// situations where Dapr itself answers so and the caller did nothing wrong. Everything
/// else that is a 5xx/`INTERNAL`/`UNKNOWN` is a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allow {
    /// No server-side failure is acceptable.
    Nothing,
    /// An invocation of an app id nobody runs, or of an endpoint that refuses the
    /// connection.
    UnreachableTarget,
    /// A secret the store does not hold.
    MissingSecret,
    /// gRPC bytes that are not the method's message, or a broken gRPC frame.
    Undecodable,
    /// An actor call to a sidecar with no actor state store (the fuzz world has none).
    NoActorRuntime,
    /// An output binding call: daprd answers every failure of one alike.
    BindingRefused,
    /// A lock or unlock whose resource id holds `||`.
    LockNameRefused,
    /// A conversation offering tools: the echo component refuses a tool whose schema's
    /// `properties` is not an object.
    ConversationRefused,
    /// A state query daprd's query language does not accept (or a store without
    /// queries).
    QueryRefused,
    /// A crypto call: daprd answers every failed operation alike, whoever's fault.
    CryptoRefused,
}

/// The allow-list, with Dapr's answer for each entry and why it is not the caller's fault.
pub struct Allowance {
    pub allow: Allow,
    /// Dapr's `errorCode` on HTTP (`None`: the oracle does not look at HTTP for it).
    pub error_code: Option<&'static str>,
    pub http_status: Option<u16>,
    /// The gRPC status code (13 = `INTERNAL`).
    pub grpc_code: Option<i32>,
    pub reason: &'static str,
}

pub const INTERNAL: i32 = 13;
pub const UNKNOWN: i32 = 2;

pub const ALLOWANCES: &[Allowance] = &[
    Allowance {
        allow: Allow::UnreachableTarget,
        error_code: Some("ERR_DIRECT_INVOKE"),
        http_status: Some(500),
        grpc_code: Some(INTERNAL),
        reason: "daprd answers ErrDirectInvoke (500 / INTERNAL, pkg/messages/predefined.go) when \
                 the target app or endpoint cannot be reached: the request was well formed",
    },
    Allowance {
        allow: Allow::MissingSecret,
        error_code: Some("ERR_SECRET_GET"),
        http_status: Some(500),
        grpc_code: Some(INTERNAL),
        reason: "daprd answers ErrSecretGet (500 / INTERNAL) when the store has no such secret",
    },
    Allowance {
        allow: Allow::Undecodable,
        error_code: None,
        http_status: None,
        grpc_code: Some(INTERNAL),
        reason: "grpc-go answers INTERNAL itself for a message that does not unmarshal \
                 (\"grpc: error unmarshalling request\", also for invalid UTF-8 in a string \
                 field) and for a broken frame, before any Dapr code runs",
    },
    Allowance {
        allow: Allow::NoActorRuntime,
        error_code: Some("ERR_ACTOR_RUNTIME_NOT_FOUND"),
        http_status: Some(500),
        grpc_code: Some(INTERNAL),
        reason: "daprd answers ErrActorRuntimeNotFound (500 / INTERNAL) to any actor call when \
                 no state store is the actor state store: a deployment's state, not the \
                 caller's mistake",
    },
    Allowance {
        allow: Allow::BindingRefused,
        error_code: Some("ERR_INVOKE_OUTPUT_BINDING"),
        http_status: Some(500),
        grpc_code: Some(INTERNAL),
        reason: "daprd answers ErrInvokeOutputBinding (500 / INTERNAL, pkg/api/http/http.go \
                 onOutputBindingMessage) to every failed output binding call — a missing or \
                 unsupported operation, an unknown binding, a file that is not there — \
                 whoever's fault it is",
    },
    Allowance {
        allow: Allow::LockNameRefused,
        error_code: Some("ERR_TRY_LOCK"),
        http_status: Some(500),
        grpc_code: Some(INTERNAL),
        reason: "daprd answers ErrTryLockFailed (500 / INTERNAL) when the resource id holds \
                 `||`, which its lock names reserve (GetModifiedLockKey)",
    },
    Allowance {
        allow: Allow::LockNameRefused,
        error_code: Some("ERR_UNLOCK"),
        http_status: Some(500),
        grpc_code: Some(INTERNAL),
        reason: "daprd answers ErrUnlockFailed (500 / INTERNAL) when the resource id holds `||`",
    },
    Allowance {
        allow: Allow::ConversationRefused,
        error_code: Some("ERR_CONVERSATION_INVOKE"),
        http_status: Some(500),
        grpc_code: Some(INTERNAL),
        reason: "daprd answers ErrConversationInvoke (500 / INTERNAL) to every failure of the \
                 component; conversation.echo fails a tool whose parameters' `properties` is \
                 not an object",
    },
    Allowance {
        allow: Allow::QueryRefused,
        error_code: Some("ERR_STATE_QUERY"),
        http_status: Some(500),
        grpc_code: Some(INTERNAL),
        reason: "daprd answers QueryFailed (500 / INTERNAL, pkg/api/errors/state.go) to a query \
                 that does not parse, whoever's fault it is",
    },
    Allowance {
        allow: Allow::CryptoRefused,
        error_code: Some("ERR_CRYPTO"),
        http_status: Some(500),
        grpc_code: Some(INTERNAL),
        reason: "daprd answers ErrCryptoOperation (500 / INTERNAL) to every failed crypto \
                 operation — an unknown algorithm, a missing key, a message that is not \
                 Dapr's format or does not verify, a wrong sequence number",
    },
    Allowance {
        allow: Allow::CryptoRefused,
        error_code: Some("ERR_CRYPTO_KEY"),
        http_status: Some(500),
        grpc_code: Some(INTERNAL),
        reason: "daprd answers ErrCryptoGetKey (500 / INTERNAL) for a key the component does \
                 not have or that has no public half",
    },
];

impl Allow {
    /// Whether an HTTP answer with this status and `errorCode` is acceptable (`None`:
    /// any code — the answer to a `HEAD` has no body to read it from).
    pub fn admits_http(self, status: u16, error_code: Option<&str>) -> bool {
        ALLOWANCES.iter().any(|entry| {
            entry.allow == self
                && entry.http_status == Some(status)
                && entry.error_code.is_some()
                && (error_code.is_none() || entry.error_code == error_code)
        })
    }

    /// Whether a gRPC status code is acceptable.
    pub fn admits_grpc(self, code: i32) -> bool {
        ALLOWANCES
            .iter()
            .any(|entry| entry.allow == self && entry.grpc_code == Some(code))
    }
}

/// Which door of the sidecar a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Door {
    /// The public HTTP API (HTTP/1.1, written byte by byte).
    Http,
    /// The public gRPC API (HTTP/2).
    Grpc,
    /// The internal port other sidecars call (HTTP/2).
    Internal,
}

/// An HTTP/1.1 request as bytes: the method, target and headers may be anything.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: Vec<u8>,
    pub target: Vec<u8>,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Bytes,
}

/// A gRPC call: the method's path, metadata, and the request body (framing included).
#[derive(Debug, Clone)]
pub struct GrpcRequest {
    /// `/dapr.proto.runtime.v1.Dapr/GetState`.
    pub path: String,
    pub content_type: String,
    pub metadata: Vec<(String, Vec<u8>)>,
    pub body: Bytes,
}

/// An HTTP/2 request to the internal port.
#[derive(Debug, Clone)]
pub struct InternalRequest {
    pub method: String,
    pub path_and_query: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Bytes,
}

#[derive(Debug, Clone)]
pub enum Request {
    Http(HttpRequest),
    Grpc(GrpcRequest),
    Internal(InternalRequest),
}

/// One generated case.
#[derive(Debug, Clone)]
pub struct Case {
    /// Its number in the run: with the seed, all it takes to make it again.
    pub index: u64,
    /// The endpoint it aims at, as a route: `POST /v1.0/state/{store}`, `gRPC SaveState`.
    pub endpoint: String,
    /// What was done to the request (`truncated JSON`, `ttlInSeconds out of range`).
    pub mutation: String,
    pub request: Request,
    pub allow: Allow,
    /// Not valid HTTP at all (raw bytes in the request line): the server's HTTP layer
    /// may answer in its own words, but must not fail or fall over.
    pub not_http: bool,
    /// A secrets API call: its own successful answer may hold secret values.
    pub reads_secrets: bool,
}

impl Case {
    /// Whether the request is a `HEAD`: its answers have no body to judge.
    pub fn is_head(&self) -> bool {
        match &self.request {
            Request::Http(request) => request.method == b"HEAD",
            Request::Internal(request) => request.method == "HEAD",
            Request::Grpc(_) => false,
        }
    }

    pub fn door(&self) -> Door {
        match self.request {
            Request::Http(_) => Door::Http,
            Request::Grpc(_) => Door::Grpc,
            Request::Internal(_) => Door::Internal,
        }
    }

    /// The request written out for a person to replay: method, target, headers, and the
    /// first bytes of the body (escaped).
    pub fn reproducer(&self) -> String {
        let mut out = String::new();
        match &self.request {
            Request::Http(request) => {
                let _ = writeln!(
                    out,
                    "HTTP  {} {}",
                    escape(&request.method, 200),
                    escape(&request.target, 300)
                );
                let shown = request.headers.len().min(MAX_HEADERS_SHOWN);
                for (name, value) in &request.headers[..shown] {
                    let _ = writeln!(out, "      {}: {}", escape(name, 100), escape(value, 200));
                }
                if request.headers.len() > shown {
                    let _ = writeln!(
                        out,
                        "      … {} more headers, the next: {}: {}",
                        request.headers.len() - shown,
                        escape(&request.headers[shown].0, 100),
                        escape(&request.headers[shown].1, 100)
                    );
                }
                body_line(&mut out, &request.body);
            }
            Request::Grpc(request) => {
                let _ = writeln!(out, "gRPC  POST {}", request.path);
                let _ = writeln!(out, "      content-type: {}", request.content_type);
                for (name, value) in &request.metadata {
                    let _ = writeln!(out, "      {name}: {}", escape(value, 200));
                }
                body_line(&mut out, &request.body);
            }
            Request::Internal(request) => {
                let _ = writeln!(
                    out,
                    "HTTP/2 (internal port)  {} /{}",
                    request.method,
                    request.path_and_query.trim_start_matches('/')
                );
                for (name, value) in &request.headers {
                    let _ = writeln!(out, "      {name}: {}", escape(value, 200));
                }
                body_line(&mut out, &request.body);
            }
        }
        out
    }
}

/// Headers written out in a reproducer; the rest are summed up.
const MAX_HEADERS_SHOWN: usize = 10;

fn body_line(out: &mut String, body: &[u8]) {
    if body.is_empty() {
        let _ = writeln!(out, "      (no body)");
    } else {
        let _ = writeln!(
            out,
            "      body ({} bytes): {}",
            body.len(),
            escape(body, 240)
        );
    }
}

/// Printable text for any bytes: ASCII as it is, the rest as `\xNN`, cut after `limit`
/// bytes.
pub fn escape(bytes: &[u8], limit: usize) -> String {
    let mut out = String::new();
    for &byte in bytes.iter().take(limit) {
        match byte {
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(byte as char),
            _ => {
                let _ = write!(out, "\\x{byte:02x}");
            }
        }
    }
    if bytes.len() > limit {
        let _ = write!(out, "… ({} more bytes)", bytes.len() - limit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allow_list_admits_only_its_own_entries() {
        assert!(Allow::UnreachableTarget.admits_http(500, Some("ERR_DIRECT_INVOKE")));
        assert!(!Allow::UnreachableTarget.admits_http(500, Some("ERR_STATE_SAVE")));
        assert!(!Allow::Nothing.admits_http(500, Some("ERR_DIRECT_INVOKE")));
        assert!(Allow::MissingSecret.admits_http(500, None));
        assert!(!Allow::MissingSecret.admits_http(503, None));
        assert!(Allow::Undecodable.admits_grpc(INTERNAL));
        assert!(!Allow::Undecodable.admits_http(500, None));
        assert!(!Allow::Nothing.admits_grpc(INTERNAL));
        assert!(!Allow::MissingSecret.admits_grpc(UNKNOWN));
    }

    #[test]
    fn escaping_keeps_ascii_and_shows_the_rest() {
        assert_eq!(escape(b"a\xffb\n", 10), "a\\xffb\\n");
        assert_eq!(escape(b"abcdef", 2), "ab… (4 more bytes)");
    }
}
