//! The gRPC actor API: `InvokeActor`, actor state, timers, reminders, and the app's
//! actor stream (`SubscribeActorEventsAlpha1`) — each a translation to the runtime's
//! actor service, with daprd's conversions of `data`.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use prost::Message;
use tandem_proto::runtime as pb;
use tandem_runtime::{
    ActorEvents, ActorStateOperation, ReminderInfo, ReminderRequest, Runtime, TimerRequest, Turn,
    TurnKind,
};
use tonic::{Request, Response, Status};

use crate::error::ApiError;

fn status(error: tandem_runtime::Error) -> Status {
    ApiError::from(error).into()
}

fn invalid(message: String) -> Status {
    Status::invalid_argument(message)
}

/// Timer and reminder `data` from gRPC, as daprd keeps it: the bytes as a JSON string
/// of their base64 (what an HTTP callback's `"data"` then carries).
fn data_of(bytes: Vec<u8>) -> serde_json::Value {
    if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::Value::String(BASE64.encode(bytes))
    }
}

/// A reminder's `data` as daprd answers it over gRPC: a `BytesValue` holding the JSON.
fn any_of(data: &serde_json::Value) -> Option<prost_types::Any> {
    (!data.is_null()).then(|| prost_types::Any {
        type_url: "type.googleapis.com/google.protobuf.BytesValue".into(),
        value: data.to_string().into_bytes().encode_to_vec(),
    })
}

fn text(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

pub(super) async fn invoke(
    runtime: &Runtime,
    request: Request<pb::InvokeActorRequest>,
) -> Result<Response<pb::InvokeActorResponse>, Status> {
    let request = request.into_inner();
    for (what, value) in [
        ("actorType", &request.actor_type),
        ("actorId", &request.actor_id),
        ("actor method", &request.method),
    ] {
        if value.is_empty() {
            return Err(invalid(format!("invalid {what}: must not be empty")));
        }
    }
    // The metadata becomes the turn's headers, as daprd passes it on.
    let mut headers = HeaderMap::new();
    for (name, value) in request.metadata {
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name.to_ascii_lowercase()),
            HeaderValue::try_from(value),
        ) {
            headers.insert(name, value);
        }
    }
    let answer = runtime
        .actors()
        .invoke(Turn {
            actor_type: request.actor_type,
            actor_id: request.actor_id,
            kind: TurnKind::Method {
                name: request.method,
            },
            headers,
            body: Bytes::from(request.data),
        })
        .await
        .map_err(status)?;
    // An actor's own error comes back as an answer, as daprd returns it.
    Ok(Response::new(pb::InvokeActorResponse {
        data: answer.body.to_vec(),
    }))
}

pub(super) async fn get_state(
    runtime: &Runtime,
    request: Request<pb::GetActorStateRequest>,
) -> Result<Response<pb::GetActorStateResponse>, Status> {
    let request = request.into_inner();
    let value = runtime
        .actors()
        .get_state(&request.actor_type, &request.actor_id, &request.key)
        .await
        .map_err(status)?;
    Ok(Response::new(pb::GetActorStateResponse {
        data: value.map(|value| value.to_vec()).unwrap_or_default(),
        metadata: HashMap::new(),
    }))
}

pub(super) async fn transact_state(
    runtime: &Runtime,
    request: Request<pb::ExecuteActorStateTransactionRequest>,
) -> Result<Response<()>, Status> {
    let request = request.into_inner();
    let mut operations = Vec::with_capacity(request.operations.len());
    for operation in request.operations {
        operations.push(match operation.operation_type.as_str() {
            "upsert" => {
                let ttl = match operation.metadata.get("ttlInSeconds") {
                    None => None,
                    Some(text) => ActorStateOperation::ttl_in_seconds(text).map_err(status)?,
                };
                ActorStateOperation::Upsert {
                    key: operation.key,
                    // The Any's bytes are the value; its type is not kept, as in daprd.
                    value: Bytes::from(operation.value.map(|any| any.value).unwrap_or_default()),
                    ttl,
                }
            }
            "delete" => ActorStateOperation::Delete { key: operation.key },
            other => {
                return Err(Status::unimplemented(format!(
                    "ERR_NOT_SUPPORTED_STATE_OPERATION: operation type {other} not supported"
                )));
            }
        });
    }
    runtime
        .actors()
        .transact_state(&request.actor_type, &request.actor_id, operations)
        .await
        .map_err(status)?;
    Ok(Response::new(()))
}

pub(super) async fn register_timer(
    runtime: &Runtime,
    request: Request<pb::RegisterActorTimerRequest>,
) -> Result<Response<()>, Status> {
    let request = request.into_inner();
    runtime
        .actors()
        .register_timer(TimerRequest {
            actor_type: request.actor_type,
            actor_id: request.actor_id,
            name: request.name,
            due_time: request.due_time,
            period: request.period,
            ttl: request.ttl,
            callback: request.callback,
            data: data_of(request.data),
        })
        .await
        .map_err(status)?;
    Ok(Response::new(()))
}

pub(super) fn unregister_timer(
    runtime: &Runtime,
    request: Request<pb::UnregisterActorTimerRequest>,
) -> Result<Response<()>, Status> {
    let request = request.into_inner();
    runtime
        .actors()
        .unregister_timer(&request.actor_type, &request.actor_id, &request.name)
        .map_err(status)?;
    Ok(Response::new(()))
}

pub(super) async fn register_reminder(
    runtime: &Runtime,
    request: Request<pb::RegisterActorReminderRequest>,
) -> Result<Response<()>, Status> {
    let request = request.into_inner();
    let actors = runtime.actors();
    if request.overwrite == Some(false)
        && actors
            .get_reminder(&request.actor_type, &request.actor_id, &request.name)
            .await
            .map_err(status)?
            .is_some()
    {
        return Err(Status::already_exists(format!(
            "actor reminder already exists: {}",
            request.name
        )));
    }
    actors
        .register_reminder(ReminderRequest {
            actor_type: request.actor_type,
            actor_id: request.actor_id,
            name: request.name,
            due_time: request.due_time,
            period: request.period,
            ttl: request.ttl,
            data: data_of(request.data),
        })
        .await
        .map_err(status)?;
    Ok(Response::new(()))
}

pub(super) async fn unregister_reminder(
    runtime: &Runtime,
    request: Request<pb::UnregisterActorReminderRequest>,
) -> Result<Response<()>, Status> {
    let request = request.into_inner();
    runtime
        .actors()
        .unregister_reminder(&request.actor_type, &request.actor_id, &request.name)
        .await
        .map_err(status)?;
    Ok(Response::new(()))
}

pub(super) async fn unregister_reminders_by_type(
    runtime: &Runtime,
    request: Request<pb::UnregisterActorRemindersByTypeRequest>,
) -> Result<Response<pb::UnregisterActorRemindersByTypeResponse>, Status> {
    let request = request.into_inner();
    runtime
        .actors()
        .unregister_reminders(&request.actor_type, request.actor_id.as_deref())
        .await
        .map_err(status)?;
    Ok(Response::new(pb::UnregisterActorRemindersByTypeResponse {}))
}

fn reminder_message(reminder: ReminderInfo) -> pb::ActorReminder {
    pb::ActorReminder {
        actor_type: reminder.actor_type,
        actor_id: reminder.actor_id,
        due_time: text(reminder.due_time),
        period: text(reminder.period),
        data: any_of(&reminder.data),
        ttl: text(reminder.ttl),
    }
}

pub(super) async fn get_reminder(
    runtime: &Runtime,
    request: Request<pb::GetActorReminderRequest>,
) -> Result<Response<pb::GetActorReminderResponse>, Status> {
    let request = request.into_inner();
    let reminder = runtime
        .actors()
        .get_reminder(&request.actor_type, &request.actor_id, &request.name)
        .await
        .map_err(status)?
        .ok_or_else(|| {
            status(tandem_runtime::Error::ActorReminderNotFound {
                name: request.name.clone(),
            })
        })?;
    let reminder = reminder_message(reminder);
    Ok(Response::new(pb::GetActorReminderResponse {
        actor_type: reminder.actor_type,
        actor_id: reminder.actor_id,
        due_time: reminder.due_time,
        period: reminder.period,
        data: reminder.data,
        ttl: reminder.ttl,
    }))
}

pub(super) async fn list_reminders(
    runtime: &Runtime,
    request: Request<pb::ListActorRemindersRequest>,
) -> Result<Response<pb::ListActorRemindersResponse>, Status> {
    let request = request.into_inner();
    let reminders = runtime
        .actors()
        .list_reminders(&request.actor_type, request.actor_id.as_deref())
        .await
        .map_err(status)?;
    Ok(Response::new(pb::ListActorRemindersResponse {
        reminders: reminders
            .into_iter()
            .map(|reminder| pb::NamedActorReminder {
                name: reminder.name.clone(),
                reminder: Some(reminder_message(reminder)),
            })
            .collect(),
    }))
}

pub(super) async fn subscribe(
    runtime: &Runtime,
    request: Request<tonic::Streaming<pb::SubscribeActorEventsRequestAlpha1>>,
) -> Result<Response<ActorEvents>, Status> {
    let events = runtime
        .actors()
        .attach_stream(request.into_inner())
        .await
        .map_err(|error| match error {
            tandem_runtime::Error::Malformed(message) => Status::invalid_argument(message),
            other => status(other),
        })?;
    Ok(Response::new(events))
}
