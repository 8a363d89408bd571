//! Conversation: an app sends a conversation (messages with roles, and optionally tools
//! the model may ask to call) to a large language model and gets its answer back.
//!
//! The runtime turns both API versions (alpha1's text inputs, alpha2's typed messages)
//! into one [`Request`], as daprd turns them into one component request, so a component
//! speaks to its model once, whatever the version the app used.

mod echo;
mod ollama;
mod openai;
pub mod pii;

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;

use crate::registry::{Entry, Registry};

/// Who said a message, as daprd's components know them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The user (alpha1's `user`/`human`, alpha2's user and developer messages).
    Human,
    System,
    /// The model itself, earlier in the conversation (`assistant`/`ai`).
    Ai,
    /// The answer of a tool the model asked to call.
    Tool,
    Function,
    Generic,
}

impl Role {
    /// Reads an alpha1 role as daprd does: an unknown (or absent) role is the user's.
    pub fn from_alpha1(role: &str) -> Self {
        match role {
            "system" => Self::System,
            "assistant" | "ai" => Self::Ai,
            "tool" => Self::Tool,
            "function" => Self::Function,
            "generic" => Self::Generic,
            _ => Self::Human,
        }
    }
}

/// A call of a tool: asked by the model in an answer, or repeated by the app in the
/// history of a multi-turn conversation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ToolCall {
    pub id: String,
    /// The function's name.
    pub name: String,
    /// Its arguments, as the model wrote them (usually a JSON object).
    pub arguments: String,
}

/// One part of a message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Part {
    Text(String),
    /// A call the assistant asked for earlier.
    ToolCall(ToolCall),
    /// What a tool answered to call `tool_call_id`.
    ToolResponse {
        tool_call_id: String,
        name: String,
        content: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Message {
    pub role: Role,
    pub parts: Vec<Part>,
}

/// A function the model may ask the app to call.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub name: String,
    pub description: Option<String>,
    /// Its arguments, as a JSON schema (an object), when given.
    pub parameters: Option<serde_json::Value>,
}

/// One conversation turn, sent to a model.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Request {
    pub messages: Vec<Message>,
    /// `None` when the API version has no tools (alpha1); may be empty.
    pub tools: Option<Vec<Tool>>,
    /// `auto`, `none`, `required` or a tool's name; checked by the runtime.
    pub tool_choice: Option<String>,
    /// 0: the model's default.
    pub temperature: f64,
    /// Passed to the model as the request's metadata.
    pub metadata: HashMap<String, String>,
    /// A JSON schema the answer must follow.
    pub response_format: Option<serde_json::Value>,
    /// How long the model's provider may keep the prompt cached.
    pub prompt_cache_retention: Option<Duration>,
}

/// One of the model's answers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Choice {
    /// Why the model stopped: `stop`, `tool_calls`, `length`, ...
    pub finish_reason: String,
    pub index: i64,
    pub content: String,
    /// The calls the model asks the app to make.
    pub tool_calls: Vec<ToolCall>,
}

/// One output: the choices of one answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    pub choices: Vec<Choice>,
}

/// Token counts, as OpenAI reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    pub completion_tokens: u64,
    pub prompt_tokens: u64,
    pub total_tokens: u64,
    pub completion_details: Option<CompletionTokensDetails>,
    pub prompt_details: Option<PromptTokensDetails>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompletionTokensDetails {
    pub accepted_prediction_tokens: u64,
    pub audio_tokens: u64,
    pub reasoning_tokens: u64,
    pub rejected_prediction_tokens: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PromptTokensDetails {
    pub audio_tokens: u64,
    pub cached_tokens: u64,
}

/// What the model answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    pub outputs: Vec<Output>,
    /// The model that answered; empty when the component has no model (echo).
    pub model: String,
    pub usage: Option<Usage>,
}

/// Why a conversation component could not answer.
#[derive(Debug, thiserror::Error)]
pub enum ConversationError {
    /// The request cannot be sent as it is; sending it again will not help.
    #[error("{0}")]
    Invalid(String),
    /// The model's endpoint could not be reached.
    #[error("request to {endpoint} failed: {reason}")]
    Unreachable { endpoint: String, reason: String },
    /// The model's endpoint answered with an error.
    #[error("API returned unexpected status code: {status}: {message}")]
    Status { status: u16, message: String },
    /// The model's endpoint answered something that is not a chat completion.
    #[error("unexpected answer from {endpoint}: {reason}")]
    Answer { endpoint: String, reason: String },
    /// A tool had to be called, and the model answered neither text nor a call.
    #[error("LLM returned empty response with no tool calls despite {tools} tools being available")]
    EmptyAnswer { tools: usize },
}

impl ConversationError {
    /// Whether sending the same request again may succeed (for resiliency retries).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Invalid(_) | Self::Answer { .. } => false,
            // As Dapr's: another try may well answer.
            Self::Unreachable { .. } | Self::EmptyAnswer { .. } => true,
            Self::Status { status, .. } => *status == 429 || *status >= 500,
        }
    }
}

/// A conversation component: one model behind one API.
#[async_trait]
pub trait Conversation: Send + Sync {
    async fn converse(&self, request: Request) -> Result<Response, ConversationError>;
}

/// The conversation components tandem offers.
pub fn registry() -> Registry<dyn Conversation> {
    Registry::new(
        "conversation",
        vec![
            Entry {
                kind: "conversation.echo",
                versions: &["v1"],
                metadata: echo::METADATA,
                build: |metadata| Box::pin(echo::Echo::build(metadata)),
            },
            Entry {
                kind: "conversation.openai",
                versions: &["v1"],
                metadata: openai::METADATA,
                build: |metadata| Box::pin(openai::OpenAi::build(metadata)),
            },
            Entry {
                kind: "conversation.ollama",
                versions: &["v1"],
                metadata: ollama::METADATA,
                build: |metadata| Box::pin(ollama::Ollama::build(metadata)),
            },
        ],
    )
}
