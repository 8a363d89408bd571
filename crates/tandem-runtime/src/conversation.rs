//! The conversation building block: `POST /v1.0-alpha1|alpha2/conversation/{name}/converse`,
//! gRPC `ConverseAlpha1`/`ConverseAlpha2`. [`Conversations`] owns the loaded
//! conversation components and answers both versions as daprd's universal API does:
//! it checks the request in daprd's order, turns it into one component request
//! (scrubbing inputs that ask for it), calls the component under its outbound
//! resiliency policy, and shapes the answer (scrubbing outputs when asked).
//!
//! Both doors hand over the protobuf request, so HTTP and gRPC share every check and
//! every message.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::{Map, Value};
use tandem_components::conversation::{
    Conversation, ConversationError, Message, Part, Request, Response, Role, Tool, ToolCall, Usage,
    pii,
};
use tandem_proto::runtime as pb;
use tandem_resiliency::{Policy, Verdict};

use crate::error::Error;

/// One loaded conversation component.
pub(crate) struct ConversationHandle {
    pub component: Arc<dyn Conversation>,
    /// Its outbound resiliency policy, as daprd's `ComponentOutboundPolicy`.
    pub outbound: Policy,
}

/// The conversation components of one sidecar, by name.
pub struct Conversations {
    components: HashMap<String, ConversationHandle>,
}

impl Conversations {
    pub(crate) fn new(components: HashMap<String, ConversationHandle>) -> Self {
        Self { components }
    }

    fn component(&self, name: &str) -> Result<&ConversationHandle, Error> {
        self.components
            .get(name)
            .ok_or_else(|| Error::ConversationNotFound(name.to_owned()))
    }

    /// Calls the component under its policy; a failure is daprd's
    /// `ERR_CONVERSATION_INVOKE`.
    async fn call(
        &self,
        name: &str,
        handle: &ConversationHandle,
        request: Request,
    ) -> Result<Response, Error> {
        let invoke = |reason: String| Error::ConversationInvoke {
            name: name.to_owned(),
            reason,
        };
        if handle.outbound.is_none() {
            return handle
                .component
                .converse(request)
                .await
                .map_err(|error| invoke(error.to_string()));
        }
        handle
            .outbound
            .run(
                || handle.component.converse(request.clone()),
                |error: &ConversationError| Verdict::retry_if(error.is_retryable()),
            )
            .await
            .map_err(|failure| invoke(failure.to_string()))
    }

    /// `ConverseAlpha1`: text inputs with roles; one result per output, the text of its
    /// first choice, with the request's parameters echoed.
    pub async fn converse_alpha1(
        &self,
        request: pb::ConversationRequest,
    ) -> Result<pb::ConversationResponse, Error> {
        let name = request.name.as_str();
        let handle = self.component(name)?;
        if request.inputs.is_empty() {
            return Err(Error::ConversationMissingInputs(name.to_owned()));
        }
        let messages = request
            .inputs
            .iter()
            .map(|input| {
                let text = if input.scrub_pii.unwrap_or(false) {
                    pii::scrub(&input.content)
                } else {
                    input.content.clone()
                };
                Message {
                    role: Role::from_alpha1(input.role.as_deref().unwrap_or_default()),
                    parts: vec![Part::Text(text)],
                }
            })
            .collect();
        let component_request = Request {
            messages,
            // As daprd: alpha1 offers no tools, but says so with an empty list.
            tools: Some(Vec::new()),
            temperature: request.temperature.unwrap_or_default(),
            ..Request::default()
        };
        let answer = self.call(name, handle, component_request).await?;
        let scrub = request.scrub_pii.unwrap_or(false);
        let outputs = answer
            .outputs
            .into_iter()
            .map(|output| {
                let content = output
                    .choices
                    .into_iter()
                    .next()
                    .map(|choice| choice.content)
                    .unwrap_or_default();
                pb::ConversationResult {
                    result: if scrub { pii::scrub(&content) } else { content },
                    parameters: request.parameters.clone(),
                }
            })
            .collect();
        Ok(pb::ConversationResponse {
            context_id: request.context_id.filter(|id| !id.is_empty()),
            outputs,
        })
    }

    /// `ConverseAlpha2`: typed messages, tools and tool calls; every choice of every
    /// output, with the model and its token usage.
    pub async fn converse_alpha2(
        &self,
        request: pb::ConversationRequestAlpha2,
    ) -> Result<pb::ConversationResponseAlpha2, Error> {
        let name = request.name.clone();
        let handle = self.component(&name)?;
        if request.inputs.is_empty() {
            return Err(Error::ConversationMissingInputs(name));
        }
        let invalid = |reason: &str| Error::ConversationInvalidParams {
            name: name.clone(),
            reason: reason.to_owned(),
        };
        let mut messages = Vec::new();
        for input in &request.inputs {
            let scrub = input.scrub_pii.unwrap_or(false);
            let clean = |text: &str| {
                if scrub {
                    pii::scrub(text)
                } else {
                    text.to_owned()
                }
            };
            let texts = |content: &[pb::ConversationMessageContent]| -> Vec<Part> {
                content
                    .iter()
                    .map(|part| Part::Text(clean(&part.text)))
                    .collect()
            };
            for message in &input.messages {
                use pb::conversation_message::MessageTypes;
                let Some(kind) = &message.message_types else {
                    return Err(invalid("message type cannot be nil"));
                };
                messages.push(match kind {
                    // A developer's instructions are the user's words to the model, as
                    // daprd maps them.
                    MessageTypes::OfDeveloper(message) => Message {
                        role: Role::Human,
                        parts: texts(&message.content),
                    },
                    MessageTypes::OfSystem(message) => Message {
                        role: Role::System,
                        parts: texts(&message.content),
                    },
                    MessageTypes::OfUser(message) => Message {
                        role: Role::Human,
                        parts: texts(&message.content),
                    },
                    MessageTypes::OfAssistant(message) => {
                        let mut parts = texts(&message.content);
                        for call in &message.tool_calls {
                            let Some(pb::conversation_tool_calls::ToolTypes::Function(function)) =
                                &call.tool_types
                            else {
                                return Err(invalid("tool types cannot be nil"));
                            };
                            parts.push(Part::ToolCall(ToolCall {
                                id: call.id.clone().unwrap_or_default(),
                                name: function.name.clone(),
                                arguments: function.arguments.clone(),
                            }));
                        }
                        Message {
                            role: Role::Ai,
                            parts,
                        }
                    }
                    MessageTypes::OfTool(message) => Message {
                        role: Role::Tool,
                        parts: message
                            .content
                            .iter()
                            .map(|part| Part::ToolResponse {
                                tool_call_id: message.tool_id.clone().unwrap_or_default(),
                                name: message.name.clone(),
                                content: clean(&part.text),
                            })
                            .collect(),
                    },
                });
            }
        }
        let functions: Vec<&pb::ConversationToolsFunction> = request
            .tools
            .iter()
            .filter_map(|tool| {
                tool.tool_types
                    .as_ref()
                    .map(|pb::conversation_tools::ToolTypes::Function(function)| function)
            })
            .collect();
        // daprd's tool choice: `auto` when tools are offered and none is chosen;
        // `required` needs tools; a tool's name must be one offered.
        let mut tool_choice = request.tool_choice.clone().unwrap_or_default();
        if tool_choice.is_empty() && !request.tools.is_empty() {
            tool_choice = "auto".to_owned();
        }
        match tool_choice.as_str() {
            "auto" | "none" | "" => {}
            "required" => {
                if request.tools.is_empty() {
                    return Err(invalid(
                        "tool choice must be 'auto', 'none', 'required', or a specific tool name matching the tools available to be used",
                    ));
                }
            }
            chosen => {
                if !request.tools.is_empty()
                    && !functions.iter().any(|function| function.name == chosen)
                {
                    return Err(invalid(
                        "tool choice selected was not found. Must be 'auto', 'none', 'required', or a specific tool name matching the tools available to be used",
                    ));
                }
            }
        }
        let tools = (!request.tools.is_empty()).then(|| {
            functions
                .iter()
                .map(|function| Tool {
                    name: function.name.clone(),
                    description: function.description.clone(),
                    // An absent schema is an empty one, as daprd's `AsMap`.
                    parameters: Some(Value::Object(
                        function
                            .parameters
                            .as_ref()
                            .map(struct_to_json)
                            .unwrap_or_default(),
                    )),
                })
                .collect()
        });
        let component_request = Request {
            messages,
            tools,
            tool_choice: (!tool_choice.is_empty()).then_some(tool_choice),
            temperature: request.temperature.unwrap_or_default(),
            metadata: request.metadata.clone(),
            response_format: request
                .response_format
                .as_ref()
                .map(|format| Value::Object(struct_to_json(format))),
            prompt_cache_retention: request
                .prompt_cache_retention
                .and_then(|retention| std::time::Duration::try_from(retention).ok()),
        };
        let answer = self.call(&name, handle, component_request).await?;
        let scrub = request.scrub_pii.unwrap_or(false);
        let usage = answer.usage.as_ref().map(usage_of);
        let model = (!answer.model.is_empty()).then(|| answer.model.clone());
        let outputs = answer
            .outputs
            .into_iter()
            .map(|output| pb::ConversationResultAlpha2 {
                choices: output
                    .choices
                    .into_iter()
                    .map(|choice| pb::ConversationResultChoices {
                        finish_reason: choice.finish_reason,
                        index: choice.index,
                        message: Some(pb::ConversationResultMessage {
                            content: if scrub && !choice.content.is_empty() {
                                pii::scrub(&choice.content)
                            } else {
                                choice.content
                            },
                            tool_calls: choice
                                .tool_calls
                                .into_iter()
                                .map(|call| pb::ConversationToolCalls {
                                    id: (!call.id.is_empty()).then_some(call.id),
                                    tool_types: Some(
                                        pb::conversation_tool_calls::ToolTypes::Function(
                                            pb::ConversationToolCallsOfFunction {
                                                name: call.name,
                                                arguments: call.arguments,
                                            },
                                        ),
                                    ),
                                })
                                .collect(),
                        }),
                    })
                    .collect(),
                model: model.clone(),
                usage,
            })
            .collect();
        Ok(pb::ConversationResponseAlpha2 {
            context_id: request.context_id.filter(|id| !id.is_empty()),
            outputs,
        })
    }
}

fn usage_of(usage: &Usage) -> pb::ConversationResultAlpha2CompletionUsage {
    pb::ConversationResultAlpha2CompletionUsage {
        completion_tokens: usage.completion_tokens,
        prompt_tokens: usage.prompt_tokens,
        total_tokens: usage.total_tokens,
        completion_tokens_details: usage.completion_details.as_ref().map(|details| {
            pb::ConversationResultAlpha2CompletionUsageCompletionTokensDetails {
                accepted_prediction_tokens: details.accepted_prediction_tokens,
                audio_tokens: details.audio_tokens,
                reasoning_tokens: details.reasoning_tokens,
                rejected_prediction_tokens: details.rejected_prediction_tokens,
            }
        }),
        prompt_tokens_details: usage.prompt_details.as_ref().map(|details| {
            pb::ConversationResultAlpha2CompletionUsagePromptTokensDetails {
                audio_tokens: details.audio_tokens,
                cached_tokens: details.cached_tokens,
            }
        }),
    }
}

/// A protobuf `Struct` as the JSON object it stands for.
pub fn struct_to_json(value: &prost_types::Struct) -> Map<String, Value> {
    // Sorted, so the same schema always reads (and caches) the same.
    let sorted: BTreeMap<&String, &prost_types::Value> = value.fields.iter().collect();
    sorted
        .into_iter()
        .map(|(name, value)| (name.clone(), value_to_json(value)))
        .collect()
}

fn value_to_json(value: &prost_types::Value) -> Value {
    use prost_types::value::Kind;
    match &value.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(flag)) => Value::Bool(*flag),
        Some(Kind::NumberValue(number)) => {
            // A whole number reads as one (`1`, not `1.0`), as Go's JSON writes it.
            if number.fract() == 0.0 && number.abs() < 9_007_199_254_740_992.0 {
                Value::from(*number as i64)
            } else {
                serde_json::Number::from_f64(*number).map_or(Value::Null, Value::Number)
            }
        }
        Some(Kind::StringValue(text)) => Value::String(text.clone()),
        Some(Kind::ListValue(list)) => {
            Value::Array(list.values.iter().map(value_to_json).collect())
        }
        Some(Kind::StructValue(object)) => Value::Object(struct_to_json(object)),
    }
}

/// A JSON object as a protobuf `Struct` (for the HTTP door, which reads JSON).
pub fn json_to_struct(object: &Map<String, Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: object
            .iter()
            .map(|(name, value)| (name.clone(), json_to_value(value)))
            .collect(),
    }
}

fn json_to_value(value: &Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(flag) => Kind::BoolValue(*flag),
        Value::Number(number) => Kind::NumberValue(number.as_f64().unwrap_or_default()),
        Value::String(text) => Kind::StringValue(text.clone()),
        Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.iter().map(json_to_value).collect(),
        }),
        Value::Object(object) => Kind::StructValue(json_to_struct(object)),
    };
    prost_types::Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;
    use tandem_spec::{Component, ComponentMetadata};

    use super::*;

    async fn echo() -> Conversations {
        let metadata =
            ComponentMetadata::new(Component::new("echo", "conversation.echo"), BTreeMap::new());
        let component = tandem_components::conversation::registry()
            .build(&metadata)
            .await
            .unwrap();
        Conversations::new(HashMap::from([(
            "echo".to_owned(),
            ConversationHandle {
                component,
                outbound: Policy::none(),
            },
        )]))
    }

    fn user(text: &str) -> pb::ConversationMessage {
        pb::ConversationMessage {
            message_types: Some(pb::conversation_message::MessageTypes::OfUser(
                pb::ConversationMessageOfUser {
                    name: None,
                    content: vec![pb::ConversationMessageContent { text: text.into() }],
                },
            )),
        }
    }

    fn request(messages: Vec<pb::ConversationMessage>) -> pb::ConversationRequestAlpha2 {
        pb::ConversationRequestAlpha2 {
            name: "echo".into(),
            inputs: vec![pb::ConversationInputAlpha2 {
                messages,
                scrub_pii: None,
            }],
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn checks_come_in_daprds_order_with_its_messages() {
        let conversations = echo().await;
        let error =
            |result: Result<pb::ConversationResponseAlpha2, Error>| result.unwrap_err().to_string();
        let mut unknown = request(vec![]);
        unknown.name = "nope".into();
        unknown.inputs.clear();
        assert_eq!(
            error(conversations.converse_alpha2(unknown).await),
            "failed finding conversation component nope"
        );
        let mut empty = request(vec![]);
        empty.inputs.clear();
        assert_eq!(
            error(conversations.converse_alpha2(empty).await),
            "failed conversing with component echo: missing inputs in request"
        );
        let untyped = request(vec![pb::ConversationMessage {
            message_types: None,
        }]);
        assert_eq!(
            error(conversations.converse_alpha2(untyped).await),
            "failed conversing with component echo: invalid params: message type cannot be nil"
        );
        // A tool choice naming a tool is checked only when tools are offered, as daprd.
        let mut named = request(vec![user("hi")]);
        named.tool_choice = Some("get_weather".into());
        assert!(conversations.converse_alpha2(named).await.is_ok());
    }

    #[tokio::test]
    async fn the_scrubbed_answer_carries_every_choice_with_usage() {
        let conversations = echo().await;
        let mut asked = request(vec![user("mail ada@example.com")]);
        asked.scrub_pii = Some(true);
        asked.context_id = Some("c-1".into());
        let answer = conversations.converse_alpha2(asked).await.unwrap();
        assert_eq!(answer.context_id.as_deref(), Some("c-1"));
        let output = &answer.outputs[0];
        assert_eq!(output.model, None, "echo has no model");
        let choice = &output.choices[0];
        assert_eq!(choice.finish_reason, "stop");
        assert_eq!(
            choice.message.as_ref().unwrap().content,
            "mail <EMAIL_ADDRESS>"
        );
        assert_eq!(output.usage.unwrap().total_tokens, 4);
    }

    #[test]
    fn structs_and_json_convert_both_ways() {
        let schema = json!({"type": "object", "required": ["a"], "n": 1, "f": 1.5,
                            "nested": {"ok": true, "none": null}});
        let Value::Object(object) = schema.clone() else {
            unreachable!()
        };
        assert_eq!(
            Value::Object(struct_to_json(&json_to_struct(&object))),
            schema
        );
    }
}
