//! `conversation.ollama`: a model served by Ollama, through its OpenAI-compatible API,
//! as Dapr's component reaches it — `endpoint` defaults to `http://localhost:11434/v1`,
//! `model` to `OLLAMA_MODEL` (when set, it wins), then the metadata, then
//! `llama3.2:latest`; the key, which Ollama ignores, defaults to `ollama`. Everything
//! else (`cacheTTL`/`responseCacheTTL`, tool calls, the answer's reading) is
//! `conversation.openai`'s.

use std::sync::Arc;

use tandem_spec::{ComponentMetadata, ResourceError};

use super::Conversation;
use super::openai::{Defaults, OpenAi};

pub const METADATA: &[&str] = &["key", "model", "endpoint", "cacheTTL", "responseCacheTTL"];

const OLLAMA: Defaults = Defaults {
    model_variable: "OLLAMA_MODEL",
    model: "llama3.2:latest",
    key_variable: None,
    endpoint_variable: None,
    endpoint: "http://localhost:11434/v1",
    key: Some("ollama"),
};

pub struct Ollama;

impl Ollama {
    pub async fn build(
        metadata: &ComponentMetadata,
    ) -> Result<Arc<dyn Conversation>, ResourceError> {
        if metadata.get("apiType").is_some() {
            return Err(metadata.field_error(
                "apiType",
                "is an option of conversation.openai, not of conversation.ollama",
            ));
        }
        OpenAi::build_with(metadata, &OLLAMA).await
    }
}
