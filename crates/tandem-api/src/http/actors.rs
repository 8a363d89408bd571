//! The HTTP actor API: `/v1.0/actors/{type}/{id}/...` — method calls, state, timers
//! and reminders, answered as daprd answers them.

use std::collections::HashMap;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tandem_runtime::{ActorStateOperation, ReminderRequest, TimerRequest, Turn, TurnKind};

use super::Api;
use super::extract::{Body, Path};
use crate::error::ApiError;

pub(super) fn routes() -> Router<Api> {
    Router::new()
        .route(
            "/v1.0/actors/{actor_type}/{actor_id}/method/{*method}",
            get(invoke).post(invoke).put(invoke).delete(invoke),
        )
        .route(
            "/v1.0/actors/{actor_type}/{actor_id}/state",
            post(transaction).put(transaction),
        )
        .route(
            "/v1.0/actors/{actor_type}/{actor_id}/state/{key}",
            get(get_state),
        )
        .route(
            "/v1.0/actors/{actor_type}/{actor_id}/reminders/{name}",
            post(create_reminder)
                .put(create_reminder)
                .get(get_reminder)
                .delete(delete_reminder),
        )
        .route(
            "/v1.0/actors/{actor_type}/{actor_id}/timers/{name}",
            post(create_timer).put(create_timer).delete(delete_timer),
        )
}

/// Refuses what daprd's name check refuses in a type or id.
fn check_name(what: &str, name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "invalid {what}: name must not be empty or contain control characters"
        )));
    }
    Ok(())
}

async fn invoke(
    State(api): State<Api>,
    Path((actor_type, actor_id, method)): Path<(String, String, String)>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    check_name("actorType", &actor_type)?;
    check_name("actorId", &actor_id)?;
    let method = method.trim_start_matches('/').to_owned();
    if method.is_empty() {
        return Err(ApiError::bad_request("the method name is empty"));
    }
    let answer = api
        .runtime
        .actors()
        .invoke(Turn {
            actor_type,
            actor_id,
            kind: TurnKind::Method { name: method },
            headers,
            body,
        })
        .await?;
    let mut response = (answer.status, answer.body).into_response();
    response.headers_mut().extend(answer.headers);
    Ok(response)
}

async fn get_state(
    State(api): State<Api>,
    Path((actor_type, actor_id, key)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let value = api
        .runtime
        .actors()
        .get_state(&actor_type, &actor_id, &key)
        .await?;
    Ok(match value {
        Some(value) if !value.is_empty() => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            value,
        )
            .into_response(),
        _ => StatusCode::NO_CONTENT.into_response(),
    })
}

#[derive(Deserialize)]
struct OperationFile {
    operation: String,
    request: Option<OperationRequest>,
}

#[derive(Deserialize)]
struct OperationRequest {
    key: String,
    #[serde(default)]
    value: Option<Box<RawValue>>,
    #[serde(default)]
    metadata: Option<HashMap<String, Value>>,
}

/// `metadata.ttlInSeconds` of an actor state upsert, a string or a JSON number.
fn ttl(metadata: Option<&HashMap<String, Value>>) -> Result<Option<Duration>, ApiError> {
    let Some(value) = metadata.and_then(|metadata| metadata.get("ttlInSeconds")) else {
        return Ok(None);
    };
    let text = match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    Ok(ActorStateOperation::ttl_in_seconds(&text)?)
}

async fn transaction(
    State(api): State<Api>,
    Path((actor_type, actor_id)): Path<(String, String)>,
    Body(body): Body,
) -> Result<StatusCode, ApiError> {
    let operations: Vec<OperationFile> =
        serde_json::from_slice(&body).map_err(|error| ApiError::malformed(error.to_string()))?;
    let mut checked = Vec::with_capacity(operations.len());
    for operation in operations {
        let refused = |reason: String| {
            ApiError::new(
                "ERR_ACTOR_STATE_TRANSACTION_SAVE",
                StatusCode::INTERNAL_SERVER_ERROR,
                tonic::Code::Internal,
                format!("error saving actor transaction state: {reason}"),
            )
        };
        let request = operation
            .request
            .ok_or_else(|| refused("request data is empty".into()))?;
        checked.push(match operation.operation.as_str() {
            "upsert" => ActorStateOperation::Upsert {
                ttl: ttl(request.metadata.as_ref())?,
                key: request.key,
                value: Bytes::from(
                    request
                        .value
                        .map(|value| value.get().to_owned())
                        .unwrap_or_default(),
                ),
            },
            "delete" => ActorStateOperation::Delete { key: request.key },
            other => return Err(refused(format!("operation type {other} not supported"))),
        });
    }
    api.runtime
        .actors()
        .transact_state(&actor_type, &actor_id, checked)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The body of a reminder or timer registration.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ScheduleFile {
    #[serde(default)]
    due_time: String,
    #[serde(default)]
    period: String,
    #[serde(default)]
    ttl: String,
    #[serde(default)]
    callback: String,
    #[serde(default)]
    data: Value,
}

fn schedule_file(body: &[u8]) -> Result<ScheduleFile, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(ScheduleFile::default());
    }
    serde_json::from_slice(body).map_err(|error| ApiError::malformed(error.to_string()))
}

async fn create_reminder(
    State(api): State<Api>,
    Path((actor_type, actor_id, name)): Path<(String, String, String)>,
    Body(body): Body,
) -> Result<StatusCode, ApiError> {
    let file = schedule_file(&body)?;
    api.runtime
        .actors()
        .register_reminder(ReminderRequest {
            actor_type,
            actor_id,
            name,
            due_time: file.due_time,
            period: file.period,
            ttl: file.ttl,
            data: file.data,
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn get_reminder(
    State(api): State<Api>,
    Path((actor_type, actor_id, name)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let reminder = api
        .runtime
        .actors()
        .get_reminder(&actor_type, &actor_id, &name)
        .await?;
    let Some(reminder) = reminder else {
        return Err(ApiError::from(
            tandem_runtime::Error::ActorReminderNotFound { name },
        ));
    };
    let mut answer = json!({"actorID": reminder.actor_id, "actorType": reminder.actor_type});
    if !reminder.data.is_null() {
        answer["data"] = reminder.data;
    }
    for (field, value) in [
        ("dueTime", reminder.due_time),
        ("period", reminder.period),
        ("ttl", reminder.ttl),
    ] {
        if !value.is_empty() {
            answer[field] = Value::String(value);
        }
    }
    Ok(axum::Json(answer).into_response())
}

async fn delete_reminder(
    State(api): State<Api>,
    Path((actor_type, actor_id, name)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    api.runtime
        .actors()
        .unregister_reminder(&actor_type, &actor_id, &name)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn create_timer(
    State(api): State<Api>,
    Path((actor_type, actor_id, name)): Path<(String, String, String)>,
    Body(body): Body,
) -> Result<StatusCode, ApiError> {
    let file = schedule_file(&body)?;
    api.runtime
        .actors()
        .register_timer(TimerRequest {
            actor_type,
            actor_id,
            name,
            due_time: file.due_time,
            period: file.period,
            ttl: file.ttl,
            callback: file.callback,
            data: file.data,
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_timer(
    State(api): State<Api>,
    Path((actor_type, actor_id, name)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    api.runtime
        .actors()
        .unregister_timer(&actor_type, &actor_id, &name)?;
    Ok(StatusCode::NO_CONTENT)
}
