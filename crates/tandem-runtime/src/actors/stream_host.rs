//! Actors hosted over the app's gRPC actor stream (`SubscribeActorEventsAlpha1`, the
//! Python SDK's `ActorGrpcHost`): the app opens the stream, registers its types in the
//! first message, and the sidecar sends each turn and deactivation down the stream as a
//! request with an id of its own; the app answers each by that id, in any order.
//! When the stream ends, its pending calls fail and its actors leave this host.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use parking_lot::Mutex;
use prost::Message;
use tandem_proto::runtime::{
    SubscribeActorEventsRequestAlpha1, SubscribeActorEventsResponseAlpha1,
    SubscribeActorEventsResponseDeactivateRequestAlpha1, SubscribeActorEventsResponseInitialAlpha1,
    SubscribeActorEventsResponseInvokeRequestAlpha1,
    SubscribeActorEventsResponseReminderRequestAlpha1,
    SubscribeActorEventsResponseTimerRequestAlpha1,
    subscribe_actor_events_request_alpha1::RequestType,
    subscribe_actor_events_response_alpha1::ResponseType,
};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use super::app::{ActorAnswer, ActorApp, Turn, TurnError, TurnKind};
use super::host_config::HostConfig;
use super::reminders::CANCEL_HEADER;
use super::{ACTOR_ERROR_HEADER, Actors};
use crate::error::Error;

/// How many callbacks may wait to be sent to the app (as daprd's outbox).
const OUTBOX: usize = 128;

/// What the app answered to one callback.
enum Reply {
    Invoked {
        data: Vec<u8>,
        metadata: HashMap<String, String>,
        error: bool,
    },
    Ticked {
        cancel: bool,
    },
    Deactivated,
    Failed {
        code: u32,
        message: String,
    },
}

/// One open actor stream.
pub(crate) struct StreamHost {
    outbound: mpsc::Sender<Result<SubscribeActorEventsResponseAlpha1, Status>>,
    pending: Mutex<HashMap<String, oneshot::Sender<Reply>>>,
    next_id: AtomicU64,
}

/// The callbacks sent to the app, as the gRPC door streams them.
pub type ActorEvents = ReceiverStream<Result<SubscribeActorEventsResponseAlpha1, Status>>;

/// `data` as daprd sends it on the stream: a `BytesValue` holding the registered JSON.
fn bytes_value(data: &serde_json::Value) -> Option<prost_types::Any> {
    if data.is_null() {
        return None;
    }
    Some(prost_types::Any {
        type_url: "type.googleapis.com/google.protobuf.BytesValue".into(),
        value: data.to_string().into_bytes().encode_to_vec(),
    })
}

impl StreamHost {
    /// Sends one callback and waits for the app's answer.
    async fn call(&self, request: impl FnOnce(String) -> ResponseType) -> Result<Reply, String> {
        let id = (self.next_id.fetch_add(1, Ordering::Relaxed) + 1).to_string();
        let (reply, answer) = oneshot::channel();
        self.pending.lock().insert(id.clone(), reply);
        let message = SubscribeActorEventsResponseAlpha1 {
            response_type: Some(request(id.clone())),
        };
        if self.outbound.send(Ok(message)).await.is_err() {
            self.pending.lock().remove(&id);
            return Err("the app's actor stream is closed".into());
        }
        answer
            .await
            .map_err(|_| "actor host disconnected before responding".to_owned())
    }

    /// Routes one answer from the app to the call waiting for it.
    fn answer(&self, id: &str, reply: Reply) {
        if let Some(waiting) = self.pending.lock().remove(id) {
            let _ = waiting.send(reply);
        }
    }

    /// Fails every call still waiting (the stream ended).
    fn close(&self) {
        self.pending.lock().clear();
    }
}

#[async_trait]
impl ActorApp for StreamHost {
    async fn turn(&self, turn: &Turn) -> Result<ActorAnswer, TurnError> {
        let (actor_type, actor_id) = (turn.actor_type.clone(), turn.actor_id.clone());
        let reply = match &turn.kind {
            TurnKind::Method { name } => {
                let mut metadata = HashMap::new();
                for (header, value) in &turn.headers {
                    if let Ok(value) = value.to_str() {
                        metadata
                            .entry(header.as_str().to_owned())
                            .or_insert_with(|| value.to_owned());
                    }
                }
                let (method, data) = (name.clone(), turn.body.to_vec());
                self.call(move |id| {
                    ResponseType::InvokeRequest(SubscribeActorEventsResponseInvokeRequestAlpha1 {
                        id,
                        actor_type,
                        actor_id,
                        method,
                        data,
                        metadata,
                    })
                })
                .await?
            }
            TurnKind::Reminder {
                name,
                data,
                due_time,
                period,
            } => {
                let (name, due_time, period, data) = (
                    name.clone(),
                    due_time.clone(),
                    period.clone(),
                    bytes_value(data),
                );
                self.call(move |id| {
                    ResponseType::ReminderRequest(
                        SubscribeActorEventsResponseReminderRequestAlpha1 {
                            id,
                            actor_type,
                            actor_id,
                            name,
                            due_time,
                            period,
                            data,
                        },
                    )
                })
                .await?
            }
            TurnKind::Timer {
                name,
                callback,
                data,
                due_time,
                period,
            } => {
                let (name, callback, due_time, period, data) = (
                    name.clone(),
                    callback.clone(),
                    due_time.clone(),
                    period.clone(),
                    bytes_value(data),
                );
                self.call(move |id| {
                    ResponseType::TimerRequest(SubscribeActorEventsResponseTimerRequestAlpha1 {
                        id,
                        actor_type,
                        actor_id,
                        name,
                        due_time,
                        period,
                        callback,
                        data,
                    })
                })
                .await?
            }
        };
        Ok(answer_of(reply))
    }

    async fn deactivate(&self, actor_type: &str, actor_id: &str) -> Result<(), String> {
        let (actor_type, actor_id) = (actor_type.to_owned(), actor_id.to_owned());
        match self
            .call(move |id| {
                ResponseType::DeactivateRequest(
                    SubscribeActorEventsResponseDeactivateRequestAlpha1 {
                        id,
                        actor_type,
                        actor_id,
                    },
                )
            })
            .await?
        {
            Reply::Failed { message, .. } => Err(message),
            _ => Ok(()),
        }
    }
}

/// An app's answer as the HTTP shape the runtime judges: an invoke answer is 200 (or
/// the actor's own error when `error` is set), a reminder that cancels itself says so
/// with daprd's header, a refusal with NOT_FOUND is a missing method.
fn answer_of(reply: Reply) -> ActorAnswer {
    let mut headers = HeaderMap::new();
    match reply {
        Reply::Invoked {
            data,
            metadata,
            error,
        } => {
            for (name, value) in metadata {
                if let (Ok(name), Ok(value)) =
                    (HeaderName::try_from(name), HeaderValue::try_from(value))
                {
                    headers.insert(name, value);
                }
            }
            if error {
                headers.insert(ACTOR_ERROR_HEADER, HeaderValue::from_static("true"));
            }
            ActorAnswer {
                status: StatusCode::OK,
                headers,
                body: Bytes::from(data),
            }
        }
        Reply::Ticked { cancel } => {
            if cancel {
                headers.insert(CANCEL_HEADER, HeaderValue::from_static("true"));
            }
            ActorAnswer {
                status: StatusCode::OK,
                headers,
                body: Bytes::new(),
            }
        }
        Reply::Deactivated => ActorAnswer {
            status: StatusCode::OK,
            headers,
            body: Bytes::new(),
        },
        Reply::Failed { code, message } => ActorAnswer {
            // gRPC NOT_FOUND: no such method or type, as an HTTP app's 404.
            status: if code == 5 {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            },
            headers,
            body: Bytes::from(message),
        },
    }
}

impl Actors {
    /// Serves an app's actor stream: reads its registration, hosts its types, and
    /// returns the stream of callbacks for the gRPC door to send. The app's answers
    /// are read until the stream ends; then its actors leave this host.
    pub async fn attach_stream(
        self: &Arc<Self>,
        mut inbound: Streaming<SubscribeActorEventsRequestAlpha1>,
    ) -> Result<ActorEvents, Error> {
        let first = inbound
            .message()
            .await
            .map_err(|status| Error::Malformed(format!("reading the actor stream: {status}")))?;
        let Some(SubscribeActorEventsRequestAlpha1 {
            request_type: Some(RequestType::InitialRequest(initial)),
        }) = first
        else {
            return Err(Error::Malformed(
                "first message must be SubscribeActorEventsRequestInitialAlpha1".into(),
            ));
        };
        self.store()?;
        let config = HostConfig::from_stream(&initial);
        let (outbound, callbacks) = mpsc::channel(OUTBOX);
        let host = Arc::new(StreamHost {
            outbound: outbound.clone(),
            pending: Mutex::default(),
            next_id: AtomicU64::new(0),
        });
        let app: Arc<dyn ActorApp> = host.clone();
        self.host(config, app.clone()).await;
        let accepted = SubscribeActorEventsResponseAlpha1 {
            response_type: Some(ResponseType::InitialResponse(
                SubscribeActorEventsResponseInitialAlpha1 {},
            )),
        };
        let _ = outbound.send(Ok(accepted)).await;
        let actors = self.clone();
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    _ = actors.shutdown.cancelled() => break,
                    message = inbound.message() => message,
                };
                let Ok(Some(message)) = message else { break };
                let Some(request) = message.request_type else {
                    continue;
                };
                match request {
                    RequestType::InvokeResponse(answer) => host.answer(
                        &answer.id,
                        Reply::Invoked {
                            data: answer.data,
                            metadata: answer.metadata,
                            error: answer.error,
                        },
                    ),
                    RequestType::ReminderResponse(answer) | RequestType::TimerResponse(answer) => {
                        host.answer(
                            &answer.id,
                            Reply::Ticked {
                                cancel: answer.cancel,
                            },
                        );
                    }
                    RequestType::DeactivateResponse(answer) => {
                        host.answer(&answer.id, Reply::Deactivated);
                    }
                    RequestType::RequestFailed(failed) => host.answer(
                        &failed.id,
                        Reply::Failed {
                            code: failed.code,
                            message: failed.message,
                        },
                    ),
                    RequestType::InitialRequest(_) => {
                        tracing::warn!("an actor stream sent a second registration; ignored");
                    }
                }
            }
            host.close();
            actors.unhost(&app).await;
            tracing::info!("the app's actor stream ended: its actors left this host");
        });
        Ok(ReceiverStream::new(callbacks))
    }
}
