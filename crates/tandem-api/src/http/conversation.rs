//! `POST /v1.0-alpha1/conversation/{name}/converse` and
//! `POST /v1.0-alpha2/conversation/{name}/converse`: the conversation API over HTTP.
//!
//! daprd serves these with its protobuf messages read and written as protobuf JSON, so
//! this door does the same by hand: fields by their JSON name (`contextId`) or their
//! proto name (`context_id`), unknown fields ignored, `null` as absent, 64-bit numbers
//! written as strings (`"totalTokens": "16"`) and zero values left out. The request
//! becomes the gRPC request, so both doors share the runtime's checks and messages.
//!
//! Alpha1's `parameters` (protobuf `Any`s) are echoed back with every result, as daprd
//! does; this door keeps them as the JSON the app sent and echoes that.

use std::collections::HashMap;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use tandem_proto::runtime as pb;

use super::Api;
use super::extract::{Body, Path};
use crate::error::ApiError;

pub(super) fn routes() -> Router<Api> {
    Router::new()
        .route("/v1.0-alpha1/conversation/{name}/converse", post(alpha1))
        .route("/v1.0-alpha2/conversation/{name}/converse", post(alpha2))
}

/// The body as `T`; an empty body is an empty request, as daprd reads it.
fn read<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Ok(T::default());
    }
    // serde would also read a struct from a JSON array; protobuf JSON takes an object.
    if body.iter().find(|byte| !byte.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::malformed("the request body is not a JSON object"));
    }
    serde_json::from_slice(body).map_err(|error| ApiError::malformed(error.to_string()))
}

/// A protobuf JSON number: a JSON number or a string holding one.
#[derive(Deserialize)]
#[serde(untagged)]
enum Number {
    Number(f64),
    Text(String),
}

impl Number {
    fn float(&self) -> Result<f64, ApiError> {
        match self {
            Self::Number(number) => Ok(*number),
            Self::Text(text) => text
                .trim()
                .parse()
                .map_err(|_| ApiError::malformed(format!("invalid number: {text:?}"))),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Alpha1Request {
    #[serde(rename = "contextID")]
    context_id: Option<String>,
    inputs: Option<Vec<Alpha1Input>>,
    parameters: Option<Map<String, Value>>,
    metadata: Option<HashMap<String, String>>,
    #[serde(rename = "scrubPII")]
    scrub_pii: Option<bool>,
    temperature: Option<Number>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Alpha1Input {
    content: Option<String>,
    role: Option<String>,
    #[serde(rename = "scrubPII")]
    scrub_pii: Option<bool>,
}

async fn alpha1(
    State(api): State<Api>,
    Path(name): Path<String>,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let request: Alpha1Request = read(&body)?;
    let parameters = request.parameters.unwrap_or_default();
    let request = pb::ConversationRequest {
        name,
        context_id: request.context_id,
        inputs: request
            .inputs
            .unwrap_or_default()
            .into_iter()
            .map(|input| pb::ConversationInput {
                content: input.content.unwrap_or_default(),
                role: input.role,
                scrub_pii: input.scrub_pii,
            })
            .collect(),
        parameters: HashMap::new(),
        metadata: request.metadata.unwrap_or_default(),
        scrub_pii: request.scrub_pii,
        temperature: request
            .temperature
            .as_ref()
            .map(Number::float)
            .transpose()?,
    };
    let answer = api.runtime.conversations().converse_alpha1(request).await?;
    let mut out = Map::new();
    if let Some(id) = answer.context_id {
        out.insert("contextID".into(), json!(id));
    }
    let outputs: Vec<Value> = answer
        .outputs
        .into_iter()
        .map(|output| {
            let mut result = Map::new();
            if !output.result.is_empty() {
                result.insert("result".into(), json!(output.result));
            }
            if !parameters.is_empty() {
                result.insert("parameters".into(), Value::Object(parameters.clone()));
            }
            Value::Object(result)
        })
        .collect();
    if !outputs.is_empty() {
        out.insert("outputs".into(), Value::Array(outputs));
    }
    Ok(Json(Value::Object(out)).into_response())
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Alpha2Request {
    #[serde(alias = "context_id")]
    context_id: Option<String>,
    inputs: Option<Vec<Alpha2Input>>,
    metadata: Option<HashMap<String, String>>,
    #[serde(alias = "scrub_pii")]
    scrub_pii: Option<bool>,
    temperature: Option<Number>,
    tools: Option<Vec<ToolJson>>,
    #[serde(alias = "tool_choice")]
    tool_choice: Option<String>,
    #[serde(alias = "response_format")]
    response_format: Option<Map<String, Value>>,
    #[serde(alias = "prompt_cache_retention")]
    prompt_cache_retention: Option<String>,
    #[serde(alias = "max_tokens")]
    max_tokens: Option<Number>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Alpha2Input {
    messages: Option<Vec<MessageJson>>,
    #[serde(alias = "scrub_pii")]
    scrub_pii: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct MessageJson {
    #[serde(alias = "of_developer")]
    of_developer: Option<TextMessage>,
    #[serde(alias = "of_system")]
    of_system: Option<TextMessage>,
    #[serde(alias = "of_user")]
    of_user: Option<TextMessage>,
    #[serde(alias = "of_assistant")]
    of_assistant: Option<AssistantMessage>,
    #[serde(alias = "of_tool")]
    of_tool: Option<ToolMessage>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Content {
    text: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TextMessage {
    name: Option<String>,
    content: Option<Vec<Content>>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct AssistantMessage {
    name: Option<String>,
    content: Option<Vec<Content>>,
    #[serde(alias = "tool_calls")]
    tool_calls: Option<Vec<ToolCallJson>>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct ToolMessage {
    #[serde(alias = "tool_id")]
    tool_id: Option<String>,
    name: Option<String>,
    content: Option<Vec<Content>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ToolCallJson {
    id: Option<String>,
    function: Option<FunctionCallJson>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct FunctionCallJson {
    name: Option<String>,
    arguments: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ToolJson {
    function: Option<FunctionJson>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct FunctionJson {
    name: Option<String>,
    description: Option<String>,
    parameters: Option<Map<String, Value>>,
}

fn contents(content: Option<Vec<Content>>) -> Vec<pb::ConversationMessageContent> {
    content
        .unwrap_or_default()
        .into_iter()
        .map(|part| pb::ConversationMessageContent {
            text: part.text.unwrap_or_default(),
        })
        .collect()
}

fn message(message: MessageJson) -> Result<pb::ConversationMessage, ApiError> {
    use pb::conversation_message::MessageTypes;
    let text = |message: TextMessage| (message.name, contents(message.content));
    let mut kinds = Vec::new();
    if let Some(of) = message.of_developer {
        let (name, content) = text(of);
        kinds.push(MessageTypes::OfDeveloper(
            pb::ConversationMessageOfDeveloper { name, content },
        ));
    }
    if let Some(of) = message.of_system {
        let (name, content) = text(of);
        kinds.push(MessageTypes::OfSystem(pb::ConversationMessageOfSystem {
            name,
            content,
        }));
    }
    if let Some(of) = message.of_user {
        let (name, content) = text(of);
        kinds.push(MessageTypes::OfUser(pb::ConversationMessageOfUser {
            name,
            content,
        }));
    }
    if let Some(of) = message.of_assistant {
        kinds.push(MessageTypes::OfAssistant(
            pb::ConversationMessageOfAssistant {
                name: of.name,
                content: contents(of.content),
                tool_calls: of
                    .tool_calls
                    .unwrap_or_default()
                    .into_iter()
                    .map(|call| pb::ConversationToolCalls {
                        id: call.id,
                        tool_types: call.function.map(|function| {
                            pb::conversation_tool_calls::ToolTypes::Function(
                                pb::ConversationToolCallsOfFunction {
                                    name: function.name.unwrap_or_default(),
                                    arguments: function.arguments.unwrap_or_default(),
                                },
                            )
                        }),
                    })
                    .collect(),
            },
        ));
    }
    if let Some(of) = message.of_tool {
        kinds.push(MessageTypes::OfTool(pb::ConversationMessageOfTool {
            tool_id: of.tool_id,
            name: of.name.unwrap_or_default(),
            content: contents(of.content),
        }));
    }
    // A oneof takes one member, as protobuf JSON reads it.
    if kinds.len() > 1 {
        return Err(ApiError::malformed(
            "a message sets more than one of ofDeveloper, ofSystem, ofUser, ofAssistant, ofTool",
        ));
    }
    Ok(pb::ConversationMessage {
        message_types: kinds.pop(),
    })
}

/// A protobuf JSON duration: seconds with an `s` (`"86400s"`, `"1.5s"`).
fn duration(text: &str) -> Result<prost_types::Duration, ApiError> {
    let invalid =
        || ApiError::malformed(format!("invalid google.protobuf.Duration value {text:?}"));
    let number = text.strip_suffix('s').ok_or_else(invalid)?;
    let (negative, number) = match number.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, number),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() || fraction.len() > 9 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let seconds: i64 = whole.parse().map_err(|_| invalid())?;
    let nanos: i32 = if fraction.is_empty() {
        0
    } else {
        format!("{fraction:0<9}").parse().map_err(|_| invalid())?
    };
    Ok(if negative {
        prost_types::Duration {
            seconds: -seconds,
            nanos: -nanos,
        }
    } else {
        prost_types::Duration { seconds, nanos }
    })
}

async fn alpha2(
    State(api): State<Api>,
    Path(name): Path<String>,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let request: Alpha2Request = read(&body)?;
    let mut inputs = Vec::new();
    for input in request.inputs.unwrap_or_default() {
        inputs.push(pb::ConversationInputAlpha2 {
            messages: input
                .messages
                .unwrap_or_default()
                .into_iter()
                .map(message)
                .collect::<Result<_, _>>()?,
            scrub_pii: input.scrub_pii,
        });
    }
    let max_tokens = match &request.max_tokens {
        None => None,
        Some(number) => {
            let value = number.float()?;
            if value.fract() != 0.0 || value.abs() > i64::MAX as f64 {
                return Err(ApiError::malformed(format!("invalid maxTokens: {value}")));
            }
            Some(value as i64)
        }
    };
    let request = pb::ConversationRequestAlpha2 {
        name,
        context_id: request.context_id,
        inputs,
        parameters: HashMap::new(),
        metadata: request.metadata.unwrap_or_default(),
        scrub_pii: request.scrub_pii,
        temperature: request
            .temperature
            .as_ref()
            .map(Number::float)
            .transpose()?,
        tools: request
            .tools
            .unwrap_or_default()
            .into_iter()
            .map(|tool| pb::ConversationTools {
                tool_types: tool.function.map(|function| {
                    pb::conversation_tools::ToolTypes::Function(pb::ConversationToolsFunction {
                        name: function.name.unwrap_or_default(),
                        description: function.description,
                        parameters: function
                            .parameters
                            .as_ref()
                            .map(tandem_runtime::json_to_struct),
                    })
                }),
            })
            .collect(),
        tool_choice: request.tool_choice,
        response_format: request
            .response_format
            .as_ref()
            .map(tandem_runtime::json_to_struct),
        prompt_cache_retention: request
            .prompt_cache_retention
            .as_deref()
            .map(duration)
            .transpose()?,
        max_tokens,
    };
    let answer = api.runtime.conversations().converse_alpha2(request).await?;
    Ok(Json(alpha2_json(answer)).into_response())
}

/// Sets `name` to `value` unless it is protobuf's zero value (an empty text or list).
fn put(object: &mut Map<String, Value>, name: &str, value: Value) {
    let zero = match &value {
        Value::String(text) => text.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    };
    if !zero {
        object.insert(name.to_owned(), value);
    }
}

/// Sets `name` to a 64-bit number, unless 0; protobuf JSON writes it as a string.
fn put_count(object: &mut Map<String, Value>, name: &str, value: impl Into<i128>) {
    let value = value.into();
    if value != 0 {
        object.insert(name.to_owned(), json!(value.to_string()));
    }
}

fn tool_call_json(call: pb::ConversationToolCalls) -> Value {
    let mut out = Map::new();
    if let Some(id) = call.id {
        out.insert("id".into(), json!(id));
    }
    if let Some(pb::conversation_tool_calls::ToolTypes::Function(function)) = call.tool_types {
        let mut inner = Map::new();
        put(&mut inner, "name", json!(function.name));
        put(&mut inner, "arguments", json!(function.arguments));
        out.insert("function".into(), Value::Object(inner));
    }
    Value::Object(out)
}

fn usage_json(usage: pb::ConversationResultAlpha2CompletionUsage) -> Value {
    let mut out = Map::new();
    put_count(&mut out, "completionTokens", usage.completion_tokens);
    put_count(&mut out, "promptTokens", usage.prompt_tokens);
    put_count(&mut out, "totalTokens", usage.total_tokens);
    if let Some(details) = usage.completion_tokens_details {
        let mut inner = Map::new();
        put_count(
            &mut inner,
            "acceptedPredictionTokens",
            details.accepted_prediction_tokens,
        );
        put_count(&mut inner, "audioTokens", details.audio_tokens);
        put_count(&mut inner, "reasoningTokens", details.reasoning_tokens);
        put_count(
            &mut inner,
            "rejectedPredictionTokens",
            details.rejected_prediction_tokens,
        );
        out.insert("completionTokensDetails".into(), Value::Object(inner));
    }
    if let Some(details) = usage.prompt_tokens_details {
        let mut inner = Map::new();
        put_count(&mut inner, "audioTokens", details.audio_tokens);
        put_count(&mut inner, "cachedTokens", details.cached_tokens);
        out.insert("promptTokensDetails".into(), Value::Object(inner));
    }
    Value::Object(out)
}

/// The alpha2 answer as protobuf JSON.
fn alpha2_json(answer: pb::ConversationResponseAlpha2) -> Value {
    let mut out = Map::new();
    if let Some(id) = answer.context_id {
        out.insert("contextId".into(), json!(id));
    }
    let outputs = answer
        .outputs
        .into_iter()
        .map(|output| {
            let mut result = Map::new();
            let choices = output
                .choices
                .into_iter()
                .map(|choice| {
                    let mut inner = Map::new();
                    put(&mut inner, "finishReason", json!(choice.finish_reason));
                    put_count(&mut inner, "index", choice.index);
                    if let Some(message) = choice.message {
                        let mut text = Map::new();
                        put(&mut text, "content", json!(message.content));
                        let calls: Vec<Value> =
                            message.tool_calls.into_iter().map(tool_call_json).collect();
                        put(&mut text, "toolCalls", Value::Array(calls));
                        inner.insert("message".into(), Value::Object(text));
                    }
                    Value::Object(inner)
                })
                .collect();
            put(&mut result, "choices", Value::Array(choices));
            if let Some(model) = output.model {
                result.insert("model".into(), json!(model));
            }
            if let Some(usage) = output.usage {
                result.insert("usage".into(), usage_json(usage));
            }
            Value::Object(result)
        })
        .collect();
    put(&mut out, "outputs", Value::Array(outputs));
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::duration;

    #[test]
    fn durations_read_as_protobuf_json_writes_them() {
        let d = duration("86400s").unwrap();
        assert_eq!((d.seconds, d.nanos), (86400, 0));
        let d = duration("1.5s").unwrap();
        assert_eq!((d.seconds, d.nanos), (1, 500_000_000));
        let d = duration("-0.25s").unwrap();
        assert_eq!((d.seconds, d.nanos), (0, -250_000_000));
        assert!(duration("10m").is_err());
        assert!(duration("s").is_err());
        assert!(duration("1.x s").is_err());
    }
}
