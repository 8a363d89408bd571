//! The conversation components: `conversation.echo` answers as Dapr's echo does, and
//! `conversation.openai` speaks OpenAI's chat completions API — here to a small stub
//! of that API, which checks the key, records what it was sent, and asks for a tool
//! call when offered a tool.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tandem_components::conversation::{
    self, Conversation, ConversationError, Message, Part, Request, Role, Tool, ToolCall,
};
use tandem_spec::{Component, ComponentMetadata};

async fn build(kind: &str, values: &[(&str, &str)]) -> Result<Arc<dyn Conversation>, String> {
    let values: BTreeMap<String, String> = values
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let component = Component {
        file: Some("components/conversation.yaml".into()),
        ..Component::new("llm", kind)
    };
    conversation::registry()
        .build(&ComponentMetadata::new(component, values))
        .await
        .map_err(|error| error.to_string())
}

fn user(text: &str) -> Message {
    Message {
        role: Role::Human,
        parts: vec![Part::Text(text.into())],
    }
}

fn weather_tool() -> Tool {
    Tool {
        name: "get_weather".into(),
        description: Some("The weather in a city".into()),
        parameters: Some(json!({
            "type": "object",
            "properties": {"location": {"type": "string"}, "unit": {"type": "string"}},
            "required": ["location"],
        })),
    }
}

#[tokio::test]
async fn echo_answers_with_what_it_was_told() {
    let echo = build("conversation.echo", &[]).await.unwrap();
    let answer = echo
        .converse(Request {
            messages: vec![user("What's Dapr?"), user("Give a brief overview.")],
            ..Request::default()
        })
        .await
        .unwrap();
    assert_eq!(answer.outputs.len(), 1);
    let choice = &answer.outputs[0].choices[0];
    assert_eq!(choice.content, "What's Dapr?\nGive a brief overview.");
    assert_eq!(choice.finish_reason, "stop");
    assert!(choice.tool_calls.is_empty());
    let usage = answer.usage.unwrap();
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.total_tokens
        ),
        (6, 6, 12)
    );
    assert_eq!(answer.model, "");
}

#[tokio::test]
async fn echo_calls_every_tool_offered_and_shows_tool_answers() {
    let echo = build("conversation.echo", &[]).await.unwrap();
    let earlier = ToolCall {
        id: "call_1".into(),
        name: "get_weather".into(),
        arguments: r#"{"location":"Paris"}"#.into(),
    };
    let answer = echo
        .converse(Request {
            messages: vec![
                user("weather?"),
                Message {
                    role: Role::Ai,
                    parts: vec![Part::ToolCall(earlier.clone())],
                },
                Message {
                    role: Role::Tool,
                    parts: vec![Part::ToolResponse {
                        tool_call_id: "call_1".into(),
                        name: "get_weather".into(),
                        content: "sunny".into(),
                    }],
                },
            ],
            tools: Some(vec![weather_tool()]),
            ..Request::default()
        })
        .await
        .unwrap();
    let choice = &answer.outputs[0].choices[0];
    assert_eq!(choice.finish_reason, "tool_calls");
    assert_eq!(
        choice.content,
        "weather?\nTool Response for tool ID 'call_1' with name 'get_weather': sunny"
    );
    assert_eq!(
        choice.tool_calls,
        vec![
            ToolCall {
                id: "0".into(),
                name: "get_weather".into(),
                arguments: "location,unit".into(),
            },
            earlier,
        ]
    );
}

/// What the stub was sent, in order.
type Seen = Arc<Mutex<Vec<Value>>>;

/// A chat completions endpoint: refuses any key but `sk-test` (and `ollama`, the key
/// Dapr's Ollama component sends); answers a request
/// offering tools (whose last message is not a tool's answer) with a call of the first
/// tool, a request whose model is `broken` with 500 (`garbage`: not JSON; `silent`: an
/// empty answer), and anything else with `you said: {the last message's text}`.
async fn completions(
    State(seen): State<Seen>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> axum::response::Response {
    seen.lock().push(body.clone());
    let key = headers.get("authorization").and_then(|v| v.to_str().ok());
    if key != Some("Bearer sk-test") && key != Some("Bearer ollama") {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}})),
        )
            .into_response();
    }
    if body["model"] == "broken" {
        return (StatusCode::INTERNAL_SERVER_ERROR, "upstream exploded").into_response();
    }
    if body["model"] == "garbage" {
        return "this is not JSON".into_response();
    }
    if body["model"] == "silent" {
        return Json(
            json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": ""},
                                        "finish_reason": "stop"}]}),
        )
        .into_response();
    }
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let last = messages.last().cloned().unwrap_or(Value::Null);
    let usage = json!({
        "prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18,
        "completion_tokens_details": {"reasoning_tokens": 2},
        "prompt_tokens_details": {"cached_tokens": 3}
    });
    if body.get("tools").is_some() && last["role"] != "tool" {
        let name = body["tools"][0]["function"]["name"].clone();
        return Json(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "model": "stub-model",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": null, "tool_calls": [{
                    "id": "call_abc", "type": "function",
                    "function": {"name": name, "arguments": "{\"location\":\"Paris\"}"}
                }]},
                "finish_reason": "tool_calls"
            }],
            "usage": usage,
        }))
        .into_response();
    }
    let text = match &last["content"] {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    Json(json!({
        "id": "chatcmpl-2", "object": "chat.completion", "model": "stub-model",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": format!("you said: {text}")},
            "finish_reason": "stop"
        }],
        "usage": usage,
    }))
    .into_response()
}

async fn stub() -> (String, Seen) {
    let seen = Seen::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/v1/chat/completions", post(completions))
        .with_state(seen.clone());
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://{address}/v1"), seen)
}

#[tokio::test]
async fn openai_sends_the_conversation_and_reads_the_answer() {
    let (endpoint, seen) = stub().await;
    let model = build(
        "conversation.openai",
        &[
            ("key", "sk-test"),
            ("model", "gpt-test"),
            ("endpoint", &endpoint),
        ],
    )
    .await
    .unwrap();
    let answer = model
        .converse(Request {
            messages: vec![
                Message {
                    role: Role::System,
                    parts: vec![Part::Text("be brief".into())],
                },
                user("hello"),
            ],
            temperature: 0.5,
            metadata: [("team".to_owned(), "blue".to_owned())].into(),
            ..Request::default()
        })
        .await
        .unwrap();
    let sent = seen.lock()[0].clone();
    assert_eq!(sent["model"], "gpt-test");
    assert_eq!(sent["temperature"], 0.5);
    assert_eq!(sent["metadata"], json!({"team": "blue"}));
    assert_eq!(
        sent["messages"],
        json!([
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello"},
        ])
    );
    assert!(sent.get("tools").is_none());
    assert_eq!(answer.model, "gpt-test", "the configured model, as Dapr's");
    let choice = &answer.outputs[0].choices[0];
    assert_eq!(choice.content, "you said: hello");
    assert_eq!(choice.finish_reason, "stop");
    let usage = answer.usage.unwrap();
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.total_tokens
        ),
        (11, 7, 18)
    );
    assert_eq!(usage.completion_details.unwrap().reasoning_tokens, 2);
    assert_eq!(usage.prompt_details.unwrap().cached_tokens, 3);
}

#[tokio::test]
async fn openai_asks_for_a_tool_call_and_takes_its_answer() {
    let (endpoint, seen) = stub().await;
    let model = build(
        "conversation.openai",
        &[
            ("key", "sk-test"),
            ("model", "gpt-test"),
            ("endpoint", &endpoint),
        ],
    )
    .await
    .unwrap();
    let question = user("What's the weather in Paris?");
    let first = model
        .converse(Request {
            messages: vec![question.clone()],
            tools: Some(vec![weather_tool()]),
            tool_choice: Some("auto".into()),
            ..Request::default()
        })
        .await
        .unwrap();
    let choice = &first.outputs[0].choices[0];
    assert_eq!(choice.finish_reason, "tool_calls");
    assert_eq!(choice.content, "");
    let call = choice.tool_calls[0].clone();
    assert_eq!(call.id, "call_abc");
    assert_eq!(call.name, "get_weather");
    assert_eq!(call.arguments, r#"{"location":"Paris"}"#);
    {
        let sent = seen.lock()[0].clone();
        assert_eq!(sent["tool_choice"], "auto");
        assert_eq!(sent["tools"][0]["type"], "function");
        assert_eq!(sent["tools"][0]["function"]["name"], "get_weather");
        assert_eq!(
            sent["tools"][0]["function"]["parameters"]["required"],
            json!(["location"])
        );
    }

    // The app runs the tool and sends the history back with its answer.
    let second = model
        .converse(Request {
            messages: vec![
                question,
                Message {
                    role: Role::Ai,
                    parts: vec![Part::ToolCall(call)],
                },
                Message {
                    role: Role::Tool,
                    parts: vec![Part::ToolResponse {
                        tool_call_id: "call_abc".into(),
                        name: "get_weather".into(),
                        content: "sunny, 22C".into(),
                    }],
                },
            ],
            tools: Some(vec![weather_tool()]),
            tool_choice: Some("get_weather".into()),
            ..Request::default()
        })
        .await
        .unwrap();
    assert_eq!(second.outputs[0].choices[0].content, "you said: sunny, 22C");
    let sent = seen.lock()[1].clone();
    assert_eq!(
        sent["tool_choice"],
        json!({"type": "function", "function": {"name": "get_weather"}})
    );
    assert_eq!(
        sent["messages"][1],
        json!({"role": "assistant", "content": null, "tool_calls": [{
            "id": "call_abc", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}
        }]})
    );
    assert_eq!(
        sent["messages"][2],
        json!({"role": "tool", "tool_call_id": "call_abc", "name": "get_weather", "content": "sunny, 22C"})
    );
}

#[tokio::test]
async fn openai_errors_say_why_without_the_key() {
    let (endpoint, _) = stub().await;
    let wrong = build(
        "conversation.openai",
        &[("key", "sk-wrong-secret"), ("endpoint", &endpoint)],
    )
    .await
    .unwrap();
    let error = wrong
        .converse(Request {
            messages: vec![user("hi")],
            ..Request::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(error, ConversationError::Status { status: 401, .. }),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(text.contains("Incorrect API key provided"), "{text}");
    assert!(!text.contains("sk-wrong-secret"), "{text}");
    assert!(!error.is_retryable());

    let broken = build(
        "conversation.openai",
        &[
            ("key", "sk-test"),
            ("model", "broken"),
            ("endpoint", &endpoint),
        ],
    )
    .await
    .unwrap();
    let error = broken
        .converse(Request {
            messages: vec![user("hi")],
            ..Request::default()
        })
        .await
        .unwrap_err();
    assert!(error.to_string().contains("500"), "{error}");
    assert!(error.to_string().contains("upstream exploded"), "{error}");
    assert!(error.is_retryable());

    let garbage = build(
        "conversation.openai",
        &[
            ("key", "sk-test"),
            ("model", "garbage"),
            ("endpoint", &endpoint),
        ],
    )
    .await
    .unwrap();
    let error = garbage
        .converse(Request {
            messages: vec![user("hi")],
            ..Request::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(error, ConversationError::Answer { .. }),
        "{error:?}"
    );

    // A tool had to be called and the model said nothing: a failure worth retrying.
    let silent = build(
        "conversation.openai",
        &[
            ("key", "sk-test"),
            ("model", "silent"),
            ("endpoint", &endpoint),
        ],
    )
    .await
    .unwrap();
    let request = |choice: &str| Request {
        messages: vec![user("hi")],
        tools: Some(vec![weather_tool()]),
        tool_choice: Some(choice.into()),
        ..Request::default()
    };
    let error = silent.converse(request("required")).await.unwrap_err();
    assert!(
        matches!(error, ConversationError::EmptyAnswer { tools: 1 }),
        "{error:?}"
    );
    assert!(error.is_retryable());
    let answer = silent.converse(request("auto")).await.unwrap();
    assert_eq!(answer.outputs[0].choices[0].content, "");

    // Nobody listening.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = format!("http://{}/v1", listener.local_addr().unwrap());
    drop(listener);
    let unreachable = build(
        "conversation.openai",
        &[("key", "sk-test"), ("endpoint", &closed)],
    )
    .await
    .unwrap();
    let error = unreachable
        .converse(Request {
            messages: vec![user("hi")],
            ..Request::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(error, ConversationError::Unreachable { .. }),
        "{error:?}"
    );
    assert!(error.is_retryable());
}

#[tokio::test]
async fn openai_answers_a_repeated_request_from_its_cache() {
    let (endpoint, seen) = stub().await;
    let model = build(
        "conversation.openai",
        &[
            ("key", "sk-test"),
            ("endpoint", &endpoint),
            ("cacheTTL", "300ms"),
        ],
    )
    .await
    .unwrap();
    let ask = |text: &str| Request {
        messages: vec![user(text)],
        ..Request::default()
    };
    let first = model.converse(ask("same")).await.unwrap();
    let again = model.converse(ask("same")).await.unwrap();
    assert_eq!(first, again);
    assert_eq!(seen.lock().len(), 1, "the repeat came from the cache");
    model.converse(ask("other")).await.unwrap();
    assert_eq!(seen.lock().len(), 2);
    tokio::time::sleep(Duration::from_millis(400)).await;
    model.converse(ask("same")).await.unwrap();
    assert_eq!(seen.lock().len(), 3, "expired answers are asked again");
}

#[tokio::test]
async fn openai_metadata_is_checked_at_start() {
    let error = build(
        "conversation.openai",
        &[("key", "k"), ("endpoint", "not a url")],
    )
    .await
    .err()
    .unwrap();
    assert!(error.contains("endpoint"), "{error}");
    let error = build(
        "conversation.openai",
        &[("key", "k"), ("endpoint", "ftp://example.com/v1")],
    )
    .await
    .err()
    .unwrap();
    assert!(error.contains("http(s)"), "{error}");
    let error = build(
        "conversation.openai",
        &[
            ("key", "k"),
            ("apiType", "azure"),
            ("endpoint", "https://x.openai.azure.com"),
        ],
    )
    .await
    .err()
    .unwrap();
    assert!(error.contains("apiVersion"), "{error}");
    let error = build("conversation.openai", &[("key", "k"), ("cacheTTL", "soon")])
        .await
        .err()
        .unwrap();
    assert!(error.contains("cacheTTL"), "{error}");
    let error = build("conversation.echoo", &[]).await.err().unwrap();
    assert!(
        error.contains("Did you mean 'conversation.echo'?"),
        "{error}"
    );
}

/// `conversation.ollama` is the OpenAI API with Ollama's defaults: the key `ollama`
/// (which the stub requires when no key is configured) and the configured model.
#[tokio::test]
async fn ollama_speaks_the_openai_api_with_its_own_defaults() {
    let (endpoint, seen) = stub().await;
    let model = build(
        "conversation.ollama",
        &[("model", "llama-test"), ("endpoint", &endpoint)],
    )
    .await
    .unwrap();
    let answer = model
        .converse(Request {
            messages: vec![user("hello")],
            ..Request::default()
        })
        .await
        .unwrap();
    assert_eq!(seen.lock()[0]["model"], "llama-test");
    assert_eq!(answer.outputs[0].choices[0].content, "you said: hello");
    let error = build("conversation.ollama", &[("apiType", "azure")])
        .await
        .err()
        .unwrap();
    assert!(error.contains("apiType"), "{error}");
}
