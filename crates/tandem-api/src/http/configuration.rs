//! `GET /v1.0(-alpha1)/configuration/{store}?key=..&key=..`, `.../{store}/subscribe` and
//! `.../{store}/{id}/unsubscribe`: the configuration API, answered as daprd answers it —
//! the items as `{"key": {"value", "version", "metadata"}}` (`204` when none exist),
//! `{"id": ..}` for a subscription (its changes go to the app's
//! `POST /configuration/{store}/{key}`), `{"ok": true}` or `500 {"message": ..}` for an
//! unsubscribe.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::Api;
use super::extract::{Path, Query};
use crate::error::ApiError;

pub(super) fn routes() -> Router<Api> {
    let mut router = Router::new();
    for version in ["v1.0", "v1.0-alpha1"] {
        router = router
            .route(&format!("/{version}/configuration/{{store}}"), get(read))
            .route(
                &format!("/{version}/configuration/{{store}}/subscribe"),
                get(subscribe),
            )
            .route(
                &format!("/{version}/configuration/{{store}}/{{id}}/unsubscribe"),
                get(unsubscribe),
            );
    }
    router
}

/// The `key` parameters, in order, and the `metadata.*` ones without their prefix.
fn keys_and_metadata(query: Vec<(String, String)>) -> (Vec<String>, BTreeMap<String, String>) {
    let mut keys = Vec::new();
    let mut metadata = BTreeMap::new();
    for (name, value) in query {
        if name == "key" {
            keys.push(value);
        } else if let Some(name) = name.strip_prefix("metadata.") {
            metadata.insert(name.to_owned(), value);
        }
    }
    (keys, metadata)
}

async fn read(
    State(api): State<Api>,
    Path(store): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let (keys, metadata) = keys_and_metadata(query);
    let items = api
        .runtime
        .configurations()
        .get(&store, keys, metadata)
        .await?;
    if items.is_empty() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok(Json(tandem_runtime::items_json(&items)).into_response())
}

async fn subscribe(
    State(api): State<Api>,
    Path(store): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let (keys, metadata) = keys_and_metadata(query);
    let id = api
        .runtime
        .configurations()
        .subscribe_app(&store, keys, metadata)
        .await?;
    Ok(Json(json!({ "id": id })).into_response())
}

async fn unsubscribe(
    State(api): State<Api>,
    Path((store, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    match api.runtime.configurations().unsubscribe(&store, &id) {
        Ok(()) => Ok(Json(json!({ "ok": true })).into_response()),
        // daprd answers an unknown id with its unsubscribe shape, not an error body.
        Err(error @ tandem_runtime::Error::ConfigurationUnsubscribe { .. }) => Ok((
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "message": error.to_string() })),
        )
            .into_response()),
        Err(error) => Err(error.into()),
    }
}
