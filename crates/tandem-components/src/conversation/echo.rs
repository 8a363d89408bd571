//! `conversation.echo`: a model that answers with what it was told, compatible with
//! Dapr's (for tests and examples, no model needed).
//!
//! As Dapr's, it answers one output with one choice: the text of every message joined
//! with newlines (a tool's answer as `Tool Response for tool ID '…' with name '…': …`);
//! each tool offered becomes a call of it (id: its position, arguments: the names of its
//! parameters, sorted, comma separated), followed by the tool calls in the history; with
//! any tool call the finish reason is `tool_calls`, otherwise `stop`. Usage counts words.

use std::sync::Arc;

use async_trait::async_trait;
use tandem_spec::{ComponentMetadata, ResourceError};

use super::{
    Choice, Conversation, ConversationError, Output, Part, Request, Response, ToolCall, Usage,
};

/// Dapr's echo reads no metadata.
pub const METADATA: &[&str] = &[];

pub struct Echo;

impl Echo {
    pub async fn build(
        _metadata: &ComponentMetadata,
    ) -> Result<Arc<dyn Conversation>, ResourceError> {
        Ok(Arc::new(Self))
    }
}

#[async_trait]
impl Conversation for Echo {
    async fn converse(&self, request: Request) -> Result<Response, ConversationError> {
        let mut tool_calls = Vec::new();
        for (position, tool) in request.tools.iter().flatten().enumerate() {
            let mut names: Vec<&str> = match &tool.parameters {
                None => Vec::new(),
                Some(serde_json::Value::Object(schema)) => match schema.get("properties") {
                    None => Vec::new(),
                    Some(serde_json::Value::Object(properties)) => {
                        properties.keys().map(String::as_str).collect()
                    }
                    Some(_) => {
                        return Err(ConversationError::Invalid(
                            "tool function properties must be an object".into(),
                        ));
                    }
                },
                Some(_) => {
                    return Err(ConversationError::Invalid(
                        "tool function parameters must be an object".into(),
                    ));
                }
            };
            names.sort_unstable();
            tool_calls.push(ToolCall {
                id: position.to_string(),
                name: tool.name.clone(),
                arguments: names.join(","),
            });
        }
        let mut texts = Vec::new();
        for part in request
            .messages
            .into_iter()
            .flat_map(|message| message.parts)
        {
            match part {
                Part::Text(text) => texts.push(text),
                Part::ToolCall(call) => tool_calls.push(call),
                Part::ToolResponse {
                    tool_call_id,
                    name,
                    content,
                } => texts.push(format!(
                    "Tool Response for tool ID '{tool_call_id}' with name '{name}': {content}"
                )),
            }
        }
        let content = texts.join("\n");
        let finish_reason = if tool_calls.is_empty() {
            "stop"
        } else {
            "tool_calls"
        };
        // Dapr's approximation: one token a word.
        let tokens = content.split_whitespace().count() as u64;
        Ok(Response {
            outputs: vec![Output {
                choices: vec![Choice {
                    finish_reason: finish_reason.into(),
                    index: 0,
                    content,
                    tool_calls,
                }],
            }],
            model: String::new(),
            usage: Some(Usage {
                completion_tokens: tokens,
                prompt_tokens: tokens,
                total_tokens: tokens * 2,
                ..Usage::default()
            }),
        })
    }
}
