//! `conversation.openai`: a model behind OpenAI's chat completions API, compatible with
//! Dapr's component — and so with every server speaking that API (vLLM, llama.cpp,
//! LocalAI, Ollama's `/v1`, ...) through `endpoint`.
//!
//! Metadata, as Dapr's:
//! - `key`: the API key (else `OPENAI_API_KEY`); sent as a bearer token (`api-key` for
//!   Azure) and never logged;
//! - `model`: `OPENAI_MODEL` when set wins, as in Dapr, then this, then `gpt-5-nano`;
//! - `endpoint`: the API's base URL (else `OPENAI_BASE_URL`, else
//!   `https://api.openai.com/v1`); `/chat/completions` is appended;
//! - `cacheTTL` (or `responseCacheTTL`): answers are kept this long and the same request
//!   is answered from memory, without calling the model;
//! - `apiType: azure` with `apiVersion` (and `endpoint`): Azure OpenAI, where `model` is
//!   the deployment (default `AZURE_OPENAI_MODEL`, then `gpt-4.1-nano`).
//!
//! The answer is read as Dapr reads it: one output per choice, a choice without a
//! finish reason finishes `unknown`, the model reported is the configured one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, Request as HttpRequest, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use parking_lot::Mutex;
use serde_json::{Map, Value, json};
use tandem_spec::{ComponentMetadata, ResourceError};

use super::{
    Choice, CompletionTokensDetails, Conversation, ConversationError, Output, Part,
    PromptTokensDetails, Request, Response, Role, ToolCall, Usage,
};

pub const METADATA: &[&str] = &[
    "key",
    "model",
    "endpoint",
    "cacheTTL",
    "responseCacheTTL",
    "apiType",
    "apiVersion",
];

const DEFAULT_ENDPOINT: &str = "https://api.openai.com/v1";
const DEFAULT_MODEL: &str = "gpt-5-nano";
const DEFAULT_AZURE_MODEL: &str = "gpt-4.1-nano";

/// The most of an answer read: a chat completion is far smaller; more is a broken or
/// hostile server, refused rather than held in memory.
const MAX_ANSWER: usize = 32 << 20;

pub struct OpenAi {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// Where requests go: `{endpoint}/chat/completions` (with Azure's query).
    url: Uri,
    /// The header carrying the key, marked sensitive so no log shows it.
    auth: Option<(http::HeaderName, HeaderValue)>,
    model: String,
    cache: Option<Cache>,
}

/// Answers by request body, each until it expires.
struct Cache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Response)>>,
}

impl Cache {
    fn get(&self, key: &str) -> Option<Response> {
        let entries = self.entries.lock();
        entries
            .get(key)
            .filter(|(expires, _)| *expires > Instant::now())
            .map(|(_, response)| response.clone())
    }

    fn put(&self, key: String, response: Response) {
        let now = Instant::now();
        let mut entries = self.entries.lock();
        // Expired answers go when a new one comes, so the cache never outgrows what one
        // TTL's worth of distinct requests holds.
        entries.retain(|_, (expires, _)| *expires > now);
        entries.insert(key, (now + self.ttl, response));
    }
}

/// What a component speaking the OpenAI API assumes when its metadata is silent:
/// OpenAI's own service, or another server with the same API (`conversation.ollama`).
pub(crate) struct Defaults {
    /// The variable that names the model, winning over the metadata (as in Dapr).
    pub model_variable: &'static str,
    pub model: &'static str,
    /// The variables read for the key and the endpoint when the metadata has none.
    pub key_variable: Option<&'static str>,
    pub endpoint_variable: Option<&'static str>,
    pub endpoint: &'static str,
    /// A key sent when none is configured (Ollama ignores it; Dapr sends one).
    pub key: Option<&'static str>,
}

/// OpenAI's service.
const OPENAI: Defaults = Defaults {
    model_variable: "OPENAI_MODEL",
    model: DEFAULT_MODEL,
    key_variable: Some("OPENAI_API_KEY"),
    endpoint_variable: Some("OPENAI_BASE_URL"),
    endpoint: DEFAULT_ENDPOINT,
    key: None,
};

impl OpenAi {
    pub async fn build(
        metadata: &ComponentMetadata,
    ) -> Result<Arc<dyn Conversation>, ResourceError> {
        Self::build_with(metadata, &OPENAI).await
    }

    /// A component speaking the OpenAI API, with `defaults` for what its metadata
    /// leaves out.
    pub(crate) async fn build_with(
        metadata: &ComponentMetadata,
        defaults: &Defaults,
    ) -> Result<Arc<dyn Conversation>, ResourceError> {
        let azure = metadata
            .get("apiType")
            .is_some_and(|kind| kind.eq_ignore_ascii_case("azure"));
        let configured = metadata.get("model").unwrap_or_default();
        let model = if azure {
            env_or("AZURE_OPENAI_MODEL", configured, DEFAULT_AZURE_MODEL)
        } else {
            env_or(defaults.model_variable, configured, defaults.model)
        };
        let variable = |name: Option<&str>| {
            name.and_then(|name| std::env::var(name).ok())
                .filter(|value| !value.is_empty())
        };
        let key = match metadata.get("key").filter(|key| !key.is_empty()) {
            Some(key) => Some(key.to_owned()),
            None => variable(defaults.key_variable).or(defaults.key.map(str::to_owned)),
        };
        let endpoint = match metadata.get("endpoint").filter(|url| !url.is_empty()) {
            Some(endpoint) => endpoint.to_owned(),
            None if azure => String::new(),
            None => {
                variable(defaults.endpoint_variable).unwrap_or_else(|| defaults.endpoint.to_owned())
            }
        };
        let base = endpoint.trim_end_matches('/');
        let url = if azure {
            let version = metadata.get("apiVersion").unwrap_or_default();
            if base.is_empty() || version.is_empty() {
                return Err(metadata.field_error(
                    "apiType",
                    "endpoint and apiVersion must be provided when apiType is set to 'azure'",
                ));
            }
            let encode = |text: &str| {
                percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC)
                    .to_string()
            };
            format!(
                "{base}/openai/deployments/{}/chat/completions?api-version={}",
                encode(&model),
                encode(version)
            )
        } else {
            format!("{base}/chat/completions")
        };
        let url: Uri = url.parse().map_err(|error| {
            metadata.field_error("endpoint", format!("'{endpoint}' is not a URL: {error}"))
        })?;
        if !matches!(url.scheme_str(), Some("http" | "https")) || url.host().is_none() {
            return Err(
                metadata.field_error("endpoint", format!("'{endpoint}' is not an http(s) URL"))
            );
        }
        let auth = match key {
            None if azure => {
                return Err(metadata.field_error("key", "is required but not set"));
            }
            None => None,
            Some(key) => {
                let (name, value) = if azure {
                    (http::HeaderName::from_static("api-key"), key)
                } else {
                    (AUTHORIZATION, format!("Bearer {key}"))
                };
                let mut value = HeaderValue::try_from(value)
                    .map_err(|_| metadata.field_error("key", "cannot be sent in a header"))?;
                value.set_sensitive(true);
                Some((name, value))
            }
        };
        let ttl = match metadata.get("cacheTTL") {
            Some(_) => metadata.duration_or("cacheTTL", Duration::ZERO)?,
            None => metadata.duration_or("responseCacheTTL", Duration::ZERO)?,
        };
        let cache = (!ttl.is_zero()).then(|| Cache {
            ttl,
            entries: Mutex::default(),
        });
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(Duration::from_secs(15)));
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|error| metadata.field_error("endpoint", error.to_string()))?
        .with_root_certificates(rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        })
        .with_no_client_auth();
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(tcp);
        Ok(Arc::new(Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            url,
            auth,
            model,
            cache,
        }))
    }

    /// The chat completion request for `request`, as OpenAI's API takes it.
    fn body(&self, request: &Request) -> Value {
        let mut body = Map::new();
        body.insert("model".into(), json!(self.model));
        body.insert("messages".into(), Value::Array(messages(request)));
        if request.temperature > 0.0 {
            body.insert("temperature".into(), json!(request.temperature));
        }
        let tools = request.tools.as_deref().unwrap_or_default();
        if !tools.is_empty() {
            let tools = tools
                .iter()
                .map(|tool| {
                    let mut function = Map::new();
                    function.insert("name".into(), json!(tool.name));
                    if let Some(description) = &tool.description {
                        function.insert("description".into(), json!(description));
                    }
                    if let Some(parameters) = &tool.parameters {
                        function.insert("parameters".into(), parameters.clone());
                    }
                    json!({ "type": "function", "function": function })
                })
                .collect();
            body.insert("tools".into(), Value::Array(tools));
        }
        match request.tool_choice.as_deref() {
            None | Some("") => {}
            Some(choice @ ("auto" | "none" | "required")) => {
                body.insert("tool_choice".into(), json!(choice));
            }
            Some(name) => {
                body.insert(
                    "tool_choice".into(),
                    json!({ "type": "function", "function": { "name": name } }),
                );
            }
        }
        if let Some(schema) = &request.response_format {
            body.insert(
                "response_format".into(),
                json!({
                    "type": "json_schema",
                    "json_schema": { "name": "response", "schema": schema, "strict": true },
                }),
            );
        }
        let mut metadata = request.metadata.clone();
        if let Some(retention) = request.prompt_cache_retention {
            // As daprd: the retention travels in the metadata, written as Go writes
            // durations.
            metadata.insert("prompt_cache_retention".into(), go_duration(retention));
        }
        if !metadata.is_empty() {
            body.insert("metadata".into(), json!(metadata));
        }
        Value::Object(body)
    }

    async fn call(&self, body: String) -> Result<Value, ConversationError> {
        let endpoint = self.url.to_string();
        let unreachable = |reason: String| ConversationError::Unreachable {
            endpoint: endpoint.clone(),
            reason,
        };
        let mut http = HttpRequest::builder()
            .method(Method::POST)
            .uri(self.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|error| unreachable(error.to_string()))?;
        if let Some((name, value)) = &self.auth {
            http.headers_mut().insert(name.clone(), value.clone());
        }
        let answer = self
            .client
            .request(http)
            .await
            .map_err(|error| unreachable(error_chain(&error)))?;
        let status = answer.status();
        let bytes = Limited::new(answer.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|error| unreachable(format!("reading the answer: {error}")))?
            .to_bytes();
        if !status.is_success() {
            // OpenAI's error shape: `{"error": {"message": ...}}`; otherwise the text.
            let message = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|value| {
                    value
                        .pointer("/error/message")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(512).collect());
            return Err(ConversationError::Status {
                status: status.as_u16(),
                message,
            });
        }
        serde_json::from_slice(&bytes).map_err(|error| ConversationError::Answer {
            endpoint: endpoint.clone(),
            reason: format!("not JSON: {error}"),
        })
    }

    fn answer(&self, value: &Value) -> Result<Response, ConversationError> {
        let malformed = |reason: &str| ConversationError::Answer {
            endpoint: self.url.to_string(),
            reason: reason.to_owned(),
        };
        let choices = match value.get("choices") {
            Some(Value::Array(choices)) => choices,
            Some(Value::Null) | None => &Vec::new(),
            Some(_) => return Err(malformed("`choices` is not a list")),
        };
        let mut outputs = Vec::with_capacity(choices.len());
        for (index, choice) in choices.iter().enumerate() {
            let message = choice.get("message").unwrap_or(&Value::Null);
            let content = message
                .get("content")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let mut tool_calls = Vec::new();
            for call in message
                .get("tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let function = call.get("function").unwrap_or(&Value::Null);
                let text = |value: Option<&Value>| {
                    value.and_then(Value::as_str).unwrap_or_default().to_owned()
                };
                tool_calls.push(ToolCall {
                    id: text(call.get("id")),
                    name: text(function.get("name")),
                    arguments: text(function.get("arguments")),
                });
            }
            let finish_reason = choice
                .get("finish_reason")
                .and_then(Value::as_str)
                .filter(|reason| !reason.is_empty())
                .unwrap_or("unknown")
                .to_owned();
            outputs.push(Output {
                choices: vec![Choice {
                    finish_reason,
                    index: i64::try_from(index).unwrap_or(i64::MAX),
                    content,
                    tool_calls,
                }],
            });
        }
        let usage = value
            .get("usage")
            .filter(|usage| usage.is_object())
            .map(|usage| {
                let count = |value: &Value, name: &str| {
                    value.get(name).and_then(Value::as_u64).unwrap_or_default()
                };
                Usage {
                    completion_tokens: count(usage, "completion_tokens"),
                    prompt_tokens: count(usage, "prompt_tokens"),
                    total_tokens: count(usage, "total_tokens"),
                    completion_details: usage
                        .get("completion_tokens_details")
                        .filter(|details| details.is_object())
                        .map(|details| CompletionTokensDetails {
                            accepted_prediction_tokens: count(
                                details,
                                "accepted_prediction_tokens",
                            ),
                            audio_tokens: count(details, "audio_tokens"),
                            reasoning_tokens: count(details, "reasoning_tokens"),
                            rejected_prediction_tokens: count(
                                details,
                                "rejected_prediction_tokens",
                            ),
                        }),
                    prompt_details: usage
                        .get("prompt_tokens_details")
                        .filter(|details| details.is_object())
                        .map(|details| PromptTokensDetails {
                            audio_tokens: count(details, "audio_tokens"),
                            cached_tokens: count(details, "cached_tokens"),
                        }),
                }
            });
        Ok(Response {
            outputs,
            model: self.model.clone(),
            usage,
        })
    }
}

#[async_trait]
impl Conversation for OpenAi {
    async fn converse(&self, request: Request) -> Result<Response, ConversationError> {
        let body = self.body(&request).to_string();
        if let Some(cached) = self.cache.as_ref().and_then(|cache| cache.get(&body)) {
            return Ok(cached);
        }
        let answer = self.call(body.clone()).await?;
        let response = self.answer(&answer)?;
        // As Dapr's: when a tool must be called, an answer with neither text nor a
        // call is a failure (worth retrying), not an empty success.
        let must_call = matches!(request.tool_choice.as_deref(), Some("required" | "any"))
            && request
                .tools
                .as_ref()
                .is_some_and(|tools| !tools.is_empty());
        let useful = response
            .outputs
            .iter()
            .flat_map(|o| &o.choices)
            .any(|choice| !choice.content.is_empty() || !choice.tool_calls.is_empty());
        if must_call && !useful {
            return Err(ConversationError::EmptyAnswer {
                tools: request.tools.as_ref().map_or(0, Vec::len),
            });
        }
        if let Some(cache) = &self.cache {
            cache.put(body, response.clone());
        }
        Ok(response)
    }
}

/// The messages of `request` as chat completion messages: a tool's answers are one
/// `tool` message each; the rest one message with its text and its tool calls.
fn messages(request: &Request) -> Vec<Value> {
    let mut out = Vec::new();
    for message in &request.messages {
        let role = match message.role {
            Role::Human | Role::Generic => "user",
            Role::System => "system",
            Role::Ai => "assistant",
            Role::Tool => "tool",
            Role::Function => "function",
        };
        let mut texts = Vec::new();
        let mut calls = Vec::new();
        for part in &message.parts {
            match part {
                Part::Text(text) => texts.push(text.as_str()),
                Part::ToolCall(call) => calls.push(json!({
                    "id": call.id,
                    "type": "function",
                    "function": { "name": call.name, "arguments": call.arguments },
                })),
                Part::ToolResponse {
                    tool_call_id,
                    name,
                    content,
                } => {
                    let mut answer = Map::new();
                    answer.insert("role".into(), json!("tool"));
                    answer.insert("tool_call_id".into(), json!(tool_call_id));
                    if !name.is_empty() {
                        answer.insert("name".into(), json!(name));
                    }
                    answer.insert("content".into(), json!(content));
                    out.push(Value::Object(answer));
                }
            }
        }
        if texts.is_empty() && calls.is_empty() {
            continue;
        }
        let mut entry = Map::new();
        entry.insert("role".into(), json!(role));
        entry.insert(
            "content".into(),
            match texts.as_slice() {
                [] => Value::Null,
                [text] => json!(text),
                several => Value::Array(
                    several
                        .iter()
                        .map(|text| json!({ "type": "text", "text": text }))
                        .collect(),
                ),
            },
        );
        if !calls.is_empty() {
            entry.insert("tool_calls".into(), Value::Array(calls));
        }
        out.push(Value::Object(entry));
    }
    out
}

/// `var`'s value when set, else `configured`, else `default` (Dapr's order).
fn env_or(var: &str, configured: &str, default: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|value| !value.is_empty())
        .or_else(|| (!configured.is_empty()).then(|| configured.to_owned()))
        .unwrap_or_else(|| default.to_owned())
}

/// A duration as Go's `time.Duration.String` writes it: `24h0m0s`, `1m30.5s`, `5s`, and
/// under a second in the largest unit that keeps it whole-ish (`500ms`, `1.5µs`, `0s`).
fn go_duration(duration: Duration) -> String {
    /// `whole.fraction` with the fraction's trailing zeros dropped.
    fn decimal(whole: u128, fraction: u128, digits: usize) -> String {
        let fraction = format!("{fraction:0digits$}");
        let fraction = fraction.trim_end_matches('0');
        if fraction.is_empty() {
            whole.to_string()
        } else {
            format!("{whole}.{fraction}")
        }
    }
    let nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", decimal(nanos / 1_000, nanos % 1_000, 3));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", decimal(nanos / 1_000_000, nanos % 1_000_000, 6));
    }
    let seconds = decimal(
        u128::from(duration.as_secs() % 60),
        u128::from(duration.subsec_nanos()),
        9,
    );
    let (hours, minutes) = (duration.as_secs() / 3600, duration.as_secs() / 60 % 60);
    if hours > 0 {
        format!("{hours}h{minutes}m{seconds}s")
    } else if minutes > 0 {
        format!("{minutes}m{seconds}s")
    } else {
        format!("{seconds}s")
    }
}

/// An error with its causes, as one line (hyper's top error alone says little).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::go_duration;
    use std::time::Duration;

    #[test]
    fn durations_are_written_as_go_writes_them() {
        assert_eq!(go_duration(Duration::from_secs(86400)), "24h0m0s");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_secs(5)), "5s");
        assert_eq!(go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(go_duration(Duration::from_millis(90_500)), "1m30.5s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_nanos(1500)), "1.5µs");
        assert_eq!(go_duration(Duration::ZERO), "0s");
    }
}
