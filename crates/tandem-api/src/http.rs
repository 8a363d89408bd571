//! Dapr's HTTP API (`/v1.0/...`) over axum. Each handler is one call to a building
//! block's service. Every answer the API itself writes is Dapr's JSON error on
//! failure: the extractors in [`extract`] refuse in that shape, and anything no route
//! serves (an unknown path or method) is Dapr's fallback, the `dapr-app-id` form of
//! invocation.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::{Value, json};
use tandem_runtime::{MetadataSnapshot, PublishRequest, Runtime};
use tokio::net::{TcpListener, UnixListener};
use tokio_util::sync::CancellationToken;

mod actors;
mod bindings;
mod bulk_publish;
mod configuration;
mod conversation;
mod crypto;
pub(crate) mod extract;
mod invoke;
mod lock;
mod state;

use crate::auth::ApiToken;
use crate::error::ApiError;
use extract::{Body, Path, Query};

#[derive(Clone)]
struct Api {
    runtime: Arc<Runtime>,
    token: ApiToken,
    /// `--max-body-size`.
    max_body_size: usize,
}

/// The HTTP API's routes.
pub fn router(runtime: Arc<Runtime>, token: ApiToken, log_calls: bool) -> Router {
    let max_body_size = runtime.config().max_body_size;
    let api = Api {
        runtime,
        token: token.clone(),
        max_body_size,
    };
    let protected = Router::new()
        .route(
            "/v1.0/publish/{pubsub}/{*topic}",
            post(publish).put(publish),
        )
        .route(
            "/v1.0/publish/bulk/{pubsub}/{*topic}",
            post(bulk_publish::bulk_publish).put(bulk_publish::bulk_publish),
        )
        .route(
            "/v1.0-alpha1/publish/bulk/{pubsub}/{*topic}",
            post(bulk_publish::bulk_publish).put(bulk_publish::bulk_publish),
        )
        .route("/v1.0/secrets/{store}/bulk", get(bulk_secrets))
        .route("/v1.0/secrets/{store}/{key}", get(get_secret))
        .route("/v1.0/metadata", get(metadata))
        .route("/v1.0/metadata/{key}", put(set_metadata))
        .route("/v1.0/shutdown", post(shutdown))
        .merge(state::routes())
        .merge(invoke::routes())
        .merge(actors::routes())
        .merge(bindings::routes())
        .merge(lock::routes())
        .merge(configuration::routes())
        .merge(conversation::routes())
        .merge(crypto::routes())
        // As in daprd, whatever no route serves — an unknown path, or a known path
        // with another method — is the `dapr-app-id` form of invocation; it needs the
        // token too.
        .fallback(fallback)
        .method_not_allowed_fallback(fallback);
    // Checked only when a token is configured: no per-request cost otherwise.
    let protected = if token.is_required() {
        protected.layer(middleware::from_fn_with_state(token, require_token))
    } else {
        protected
    };
    let router = Router::new()
        .route("/v1.0/healthz", get(healthz))
        .route("/v1.0/healthz/outbound", get(healthz_outbound))
        .merge(protected)
        // A health route with another method is the fallback too.
        .method_not_allowed_fallback(fallback)
        .with_state(api);
    if log_calls {
        router.layer(middleware::from_fn(log_call))
    } else {
        router
    }
}

/// Serves `router` on `listener` until `stop` fires.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    stop: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
}

/// Serves `router` on a Unix socket (`--unix-domain-socket`) until `stop` fires.
pub async fn serve_unix(
    listener: UnixListener,
    router: Router,
    stop: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
}

async fn require_token(State(token): State<ApiToken>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get("dapr-api-token")
        .map(http::HeaderValue::as_bytes);
    if !token.admits(given) {
        return (StatusCode::UNAUTHORIZED, "invalid api token").into_response();
    }
    next.run(request).await
}

async fn log_call(request: Request, next: Next) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let response = next.run(request).await;
    tracing::info!(target: "tandem::api", "HTTP API called: {method} {path} -> {}", response.status().as_u16());
    response
}

/// daprd's fallback: a request no route serves is an invocation of the app named by
/// `dapr-app-id`; without that header, Dapr's "no app id" error.
async fn fallback(State(api): State<Api>, request: Request) -> Result<Response, ApiError> {
    // Checked here as well as by the layer: the health routes' wrong-method fallback
    // is outside it, and an invocation always needs the token.
    let given = request
        .headers()
        .get("dapr-api-token")
        .map(http::HeaderValue::as_bytes);
    if !api.token.admits(given) {
        return Ok((StatusCode::UNAUTHORIZED, "invalid api token").into_response());
    }
    if request.headers().contains_key("dapr-app-id") {
        return invoke::invoke_by_header(&api, request).await;
    }
    tracing::debug!(
        "{} {} is not an API tandem serves, and has no dapr-app-id header",
        request.method(),
        request.uri().path()
    );
    Err(tandem_runtime::Error::InvokeNoAppId.into())
}

async fn healthz(State(api): State<Api>) -> Result<StatusCode, ApiError> {
    if api.runtime.is_ready() {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            "ERR_HEALTH_NOT_READY",
            StatusCode::INTERNAL_SERVER_ERROR,
            tonic::Code::Internal,
            "dapr is not ready",
        ))
    }
}

async fn healthz_outbound(State(api): State<Api>) -> Result<StatusCode, ApiError> {
    if api.runtime.is_outbound_ready() {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            "ERR_OUTBOUND_HEALTH_NOT_READY",
            StatusCode::INTERNAL_SERVER_ERROR,
            tonic::Code::Internal,
            "dapr outbound is not ready",
        ))
    }
}

/// `metadata.*` query parameters, without their prefix.
fn request_metadata(query: HashMap<String, String>) -> HashMap<String, String> {
    query
        .into_iter()
        .filter_map(|(key, value)| {
            key.strip_prefix("metadata.")
                .map(|key| (key.to_owned(), value))
        })
        .collect()
}

fn header_text(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

async fn publish(
    State(api): State<Api>,
    Path((pubsub, topic)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<StatusCode, ApiError> {
    api.runtime
        .publisher()
        .publish(PublishRequest {
            pubsub,
            // `/v1.0/publish/pubsub//` names no topic, not the topic "/".
            topic: if topic.trim_matches('/').is_empty() {
                String::new()
            } else {
                topic
            },
            data: body,
            content_type: header_text(&headers, header::CONTENT_TYPE),
            metadata: request_metadata(query),
            traceparent: header_text(&headers, "traceparent"),
            tracestate: header_text(&headers, "tracestate"),
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn get_secret(
    State(api): State<Api>,
    Path((store, key)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let secret = api
        .runtime
        .secrets()
        .get(&store, &key, &request_metadata(query))
        .await?;
    Ok(axum::Json(secret).into_response())
}

async fn bulk_secrets(
    State(api): State<Api>,
    Path(store): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let secrets = api
        .runtime
        .secrets()
        .bulk(&store, &request_metadata(query))
        .await?;
    Ok(axum::Json(secrets).into_response())
}

async fn metadata(State(api): State<Api>) -> Response {
    axum::Json(metadata_json(&api.runtime.metadata().await)).into_response()
}

/// The metadata document in the shape `daprd` answers it: as there, empty lists and
/// maps are left out, and a subscription always has its `deadLetterTopic`.
fn metadata_json(snapshot: &MetadataSnapshot) -> Value {
    let subscriptions: Vec<Value> = snapshot
        .subscriptions
        .iter()
        .map(|subscription| {
            let mut entry = json!({
                "pubsubname": subscription.pubsub,
                "topic": subscription.topic,
                "deadLetterTopic": subscription.dead_letter_topic,
                "type": subscription.origin,
            });
            if !subscription.metadata.is_empty() {
                entry["metadata"] = json!(subscription.metadata);
            }
            // As daprd: each rule's `match` and `path` only when not empty (the
            // default route is the last rule, without `match`).
            let rules: Vec<Value> = subscription
                .rules
                .iter()
                .map(|rule| {
                    let mut shown = serde_json::Map::new();
                    if !rule.condition.is_empty() {
                        shown.insert("match".into(), json!(rule.condition));
                    }
                    if !rule.path.is_empty() {
                        shown.insert("path".into(), json!(rule.path));
                    }
                    Value::Object(shown)
                })
                .collect();
            if !rules.is_empty() {
                entry["rules"] = json!(rules);
            }
            entry
        })
        .collect();
    let mut connection = json!({
        "protocol": snapshot.app_protocol,
        "channelAddress": snapshot.app_host,
    });
    // As daprd's `omitempty`: no port, no limit, no health checks — no field.
    if let Some(port) = snapshot.app_port {
        connection["port"] = json!(port);
    }
    if let Some(limit) = snapshot.app_max_concurrency {
        connection["maxConcurrency"] = json!(limit);
    }
    if let Some(health) = &snapshot.app_health {
        let mut properties = json!({
            "healthProbeInterval": tandem_runtime::go_duration(health.interval),
            "healthProbeTimeout": tandem_runtime::go_duration(health.timeout),
            "healthThreshold": health.threshold,
        });
        if is_http_protocol(&snapshot.app_protocol) && !health.path.is_empty() {
            properties["healthCheckPath"] = json!(health.path);
        }
        connection["health"] = properties;
    }
    let mut document = json!({
        "id": snapshot.app_id,
        "runtimeVersion": snapshot.runtime_version,
        "appConnectionProperties": connection,
    });
    // As daprd: the deprecated `actors` list and the `actorRuntime` section.
    let active: Vec<Value> = snapshot
        .actors
        .active
        .iter()
        .map(|active| json!({"type": active.actor_type, "count": active.count}))
        .collect();
    if !active.is_empty() {
        document["actors"] = json!(active);
    }
    let mut runtime = json!({
        "runtimeStatus": snapshot.actors.runtime_status,
        "hostReady": snapshot.actors.host_ready,
        "placement": snapshot.actors.placement,
    });
    if !active.is_empty() {
        runtime["activeActors"] = json!(active);
    }
    document["actorRuntime"] = runtime;
    if !snapshot.components.is_empty() {
        document["components"] = json!(snapshot.components);
    }
    if !snapshot.extended.is_empty() {
        document["extended"] = json!(snapshot.extended);
    }
    if !subscriptions.is_empty() {
        document["subscriptions"] = json!(subscriptions);
    }
    if !snapshot.http_endpoints.is_empty() {
        let endpoints: Vec<Value> = snapshot
            .http_endpoints
            .iter()
            .map(|name| json!({ "name": name }))
            .collect();
        document["httpEndpoints"] = json!(endpoints);
    }
    document
}

/// The app protocols daprd counts as HTTP: only those have a health-check path.
pub(crate) fn is_http_protocol(protocol: &str) -> bool {
    matches!(protocol, "http" | "https" | "h2c")
}

async fn set_metadata(
    State(api): State<Api>,
    Path(key): Path<String>,
    Body(body): Body,
) -> Result<StatusCode, ApiError> {
    let value = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::malformed("the metadata value must be UTF-8 text"))?;
    api.runtime.set_metadata(&key, &value)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn shutdown(State(api): State<Api>) -> StatusCode {
    api.runtime.shutdown();
    StatusCode::NO_CONTENT
}
