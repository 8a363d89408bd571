//! `POST /v1.0-alpha1/lock/{store}` and `POST /v1.0-alpha1/unlock/{store}`: the
//! distributed lock API, answered as daprd answers it — `200 {"success": bool}` and
//! `200 {"status": n}` (Dapr's numbers: 0 success, 1 no such lock, 2 another owner's),
//! errors with daprd's codes.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::Api;
use super::extract::{Body, Path};
use crate::error::ApiError;

pub(super) fn routes() -> Router<Api> {
    Router::new()
        .route("/v1.0-alpha1/lock/{store}", post(try_lock))
        .route("/v1.0-alpha1/unlock/{store}", post(unlock))
}

/// A request body, as daprd reads it (absent fields are empty).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct LockRequest {
    resource_id: String,
    lock_owner: String,
    expiry_in_seconds: i32,
}

fn read(body: &[u8]) -> Result<LockRequest, ApiError> {
    serde_json::from_slice(body).map_err(|error| ApiError::malformed(error.to_string()))
}

async fn try_lock(
    State(api): State<Api>,
    Path(store): Path<String>,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let request = read(&body)?;
    let success = api
        .runtime
        .locks()
        .try_lock(
            &store,
            &request.resource_id,
            &request.lock_owner,
            request.expiry_in_seconds,
        )
        .await?;
    Ok(Json(json!({ "success": success })).into_response())
}

async fn unlock(
    State(api): State<Api>,
    Path(store): Path<String>,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let request = read(&body)?;
    let status = api
        .runtime
        .locks()
        .unlock(&store, &request.resource_id, &request.lock_owner)
        .await?;
    Ok(Json(json!({ "status": status as i32 })).into_response())
}
