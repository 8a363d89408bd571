//! Dapr's gRPC API (`dapr.proto.runtime.v1.Dapr`) over tonic. Each method is one
//! runtime call; the API token is checked by an interceptor.

use std::sync::Arc;

use tandem_proto::common;
use tandem_proto::runtime as pb;
use tandem_proto::runtime::dapr_server::{Dapr, DaprServer};
use tandem_runtime::{
    BulkEntry, BulkPublishRequest, Consistency, InvokeRequest, PublishRequest, Runtime, StateItem,
    StateOperation,
};
use tokio::net::{TcpListener, UnixListener};
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};

use crate::auth::ApiToken;
use crate::error::ApiError;

mod actors;
mod calls;
mod crypto;
mod proxy;
mod subscribe_stream;
mod unix_authority;

/// The gRPC service.
pub struct Service {
    runtime: Arc<Runtime>,
}

/// Serves the gRPC API on `listener` until `stop` fires.
pub async fn serve(
    listener: TcpListener,
    runtime: Arc<Runtime>,
    token: ApiToken,
    log_calls: bool,
    stop: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    serve_incoming(no_delay_stream(listener), runtime, token, log_calls, stop).await
}

/// Serves the gRPC API on a Unix socket (`--unix-domain-socket`) until `stop` fires.
pub async fn serve_unix(
    listener: UnixListener,
    runtime: Arc<Runtime>,
    token: ApiToken,
    log_calls: bool,
    stop: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    use tokio_stream::StreamExt;
    // grpc-core clients send the socket's path as `:authority`: made acceptable first.
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener)
        .map(|accepted| accepted.map(unix_authority::AuthorityFixing::new));
    serve_incoming(incoming, runtime, token, log_calls, stop).await
}

async fn serve_incoming<S, IO>(
    incoming: S,
    runtime: Arc<Runtime>,
    token: ApiToken,
    log_calls: bool,
    stop: CancellationToken,
) -> Result<(), tonic::transport::Error>
where
    S: tokio_stream::Stream<Item = std::io::Result<IO>> + Send + 'static,
    IO: tonic::transport::server::Connected
        + tokio::io::AsyncRead
        + tokio::io::AsyncWrite
        + Unpin
        + Send
        + 'static,
{
    // Dapr's `--max-body-size` limits gRPC messages both ways; a larger one is
    // refused with RESOURCE_EXHAUSTED, as grpc-go refuses it.
    let max_body_size = runtime.config().max_body_size;
    // Everything the Dapr service does not match is for gRPC proxying (`dapr-app-id`).
    let proxy = {
        let (runtime, token) = (runtime.clone(), token.clone());
        move |request: http::Request<axum::body::Body>| {
            proxy::fallback(runtime.clone(), token.clone(), request)
        }
    };
    let server = DaprServer::new(Service { runtime })
        .max_decoding_message_size(max_body_size)
        .max_encoding_message_size(max_body_size);
    let service = InterceptedService::new(server, move |request: Request<()>| {
        let given = request
            .metadata()
            .get("dapr-api-token")
            .map(tonic::metadata::MetadataValue::as_bytes);
        if token.admits(given) {
            Ok(request)
        } else {
            Err(Status::unauthenticated(
                "authentication error: api token mismatch",
            ))
        }
    });
    let routes = tonic::service::Routes::new(service)
        .into_axum_router()
        .fallback(proxy);
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .layer(tower::util::MapResponseLayer::new(daprs_size_status))
        .layer(calls::CallsLayer { log_calls })
        .add_routes(tonic::service::Routes::from(routes))
        .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
        .await
}

/// A message over `--max-body-size` is `RESOURCE_EXHAUSTED` in grpc-go (daprd), where
/// tonic says `OUT_OF_RANGE`: clients that look at the code see Dapr's.
fn daprs_size_status<B>(mut response: http::Response<B>) -> http::Response<B> {
    if response.extensions().get::<proxy::Proxied>().is_some() {
        return response;
    }
    let headers = response.headers_mut();
    let too_large = headers.get("grpc-status").is_some_and(|code| code == "11")
        && headers
            .get("grpc-message")
            .and_then(|message| message.to_str().ok())
            .is_some_and(|message| message.contains("length%20too%20large"));
    if too_large {
        headers.insert(
            "grpc-status",
            http::HeaderValue::from(tonic::Code::ResourceExhausted as i32),
        );
    }
    response
}

/// Accepted connections with `TCP_NODELAY`: tonic's own setting does not reach
/// connections from an incoming stream, and without it small answers wait for the
/// peer's delayed ACK (tens of milliseconds).
fn no_delay_stream(
    listener: TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt;
    TcpListenerStream::new(listener).map(|accepted| {
        accepted.inspect(|stream| {
            let _ = stream.set_nodelay(true);
        })
    })
}

fn metadata_text<T>(request: &Request<T>, name: &str) -> Option<String> {
    request
        .metadata()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

fn first_write(options: Option<&common::StateOptions>) -> bool {
    options.is_some_and(|options| {
        options.concurrency() == common::state_options::StateConcurrency::ConcurrencyFirstWrite
    })
}

fn state_item(item: common::StateItem) -> StateItem {
    StateItem {
        first_write: first_write(item.options.as_ref()),
        key: item.key,
        value: item.value.into(),
        etag: item.etag.map(|etag| etag.value),
        metadata: item.metadata.into_iter().collect(),
    }
}

/// The gRPC status daprd answers `InvokeService` with when an HTTP app answered
/// `status` (its `CodeFromHTTPStatus`, quirks included: a 400 is `INTERNAL`).
fn grpc_code_for(status: http::StatusCode) -> tonic::Code {
    use tonic::Code::*;
    match status.as_u16() {
        400 => Internal,
        401 => Unauthenticated,
        403 => PermissionDenied,
        404 => NotFound,
        408 => Cancelled,
        409 => AlreadyExists,
        429 => ResourceExhausted,
        501 => Unimplemented,
        503 => Unavailable,
        504 => DeadlineExceeded,
        _ => Unknown,
    }
}

/// An HTTP app's failing answer as daprd gives it to a gRPC caller: the code from the
/// status, the app's body as the message (daprd puts the status text there and the
/// body in the error details; the body says more), and the status in `dapr-http-status`.
fn app_failure(response: &tandem_runtime::InvokeResponse) -> Status {
    // A gRPC app's own error status, passed on as it was.
    if let Some(code) = response
        .headers
        .get(tandem_runtime::GRPC_CODE_HEADER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<i32>().ok())
    {
        let message = serde_json::from_slice::<serde_json::Value>(&response.body)
            .ok()
            .and_then(|body| body.get("message")?.as_str().map(str::to_owned))
            .unwrap_or_default();
        return Status::new(tonic::Code::from_i32(code), message);
    }
    let message = if response.body.is_empty() {
        response
            .status
            .canonical_reason()
            .unwrap_or_default()
            .to_owned()
    } else {
        String::from_utf8_lossy(&response.body).into_owned()
    };
    let mut metadata = tonic::metadata::MetadataMap::new();
    metadata.insert("dapr-http-status", response.status.as_u16().into());
    Status::with_metadata(grpc_code_for(response.status), message, metadata)
}

impl Service {
    /// `BulkPublishEvent(Alpha1)`: the entries' events are bytes already; entry ids must
    /// be present and unique, as daprd checks. Failed entries fail the call with
    /// `ERR_PUBSUB_PUBLISH_MESSAGE`, as daprd answers.
    async fn bulk_publish(
        &self,
        request: Request<pb::BulkPublishRequest>,
    ) -> Result<Response<pb::BulkPublishResponse>, Status> {
        let traceparent = metadata_text(&request, "traceparent");
        let tracestate = metadata_text(&request, "tracestate");
        let request = request.into_inner();
        let mut seen = std::collections::HashSet::new();
        let mut entries = Vec::with_capacity(request.entries.len());
        for entry in request.entries {
            if entry.entry_id.is_empty() || !seen.insert(entry.entry_id.clone()) {
                return Err(ApiError::new(
                    "ERR_PUBSUB_EVENTS_SER",
                    http::StatusCode::BAD_REQUEST,
                    tonic::Code::InvalidArgument,
                    format!(
                        "error marshaling events to bytes for topic {} pubsub {}. error: entryId is duplicated or not present for entry",
                        request.topic, request.pubsub_name
                    ),
                )
                .into());
            }
            entries.push(BulkEntry {
                entry_id: entry.entry_id,
                data: entry.event.into(),
                content_type: Some(entry.content_type).filter(|t| !t.is_empty()),
                metadata: entry.metadata.into_iter().collect(),
            });
        }
        let (pubsub, topic) = (request.pubsub_name, request.topic);
        let failed = self
            .runtime
            .publisher()
            .publish_bulk(BulkPublishRequest {
                pubsub: pubsub.clone(),
                topic: topic.clone(),
                entries,
                metadata: request.metadata.into_iter().collect(),
                traceparent,
                tracestate,
            })
            .await
            .map_err(ApiError::from)?;
        match failed.first() {
            None => Ok(Response::new(pb::BulkPublishResponse::default())),
            // As a single publish's failure, with its rich details (the SDKs'
            // `error_code()` reads `DAPR_PUBSUB_PUBLISH_MESSAGE`).
            Some(first) => {
                let cause: Box<dyn std::error::Error + Send + Sync> = format!(
                    "{} of the entries failed; the first, {}: {}",
                    failed.len(),
                    first.entry_id,
                    first.error
                )
                .into();
                Err(ApiError::from(tandem_runtime::Error::Publish {
                    pubsub,
                    topic,
                    cause: Arc::from(cause),
                })
                .into())
            }
        }
    }
}

#[tonic::async_trait]
impl Dapr for Service {
    type SubscribeTopicEventsAlpha1Stream = subscribe_stream::Events;

    async fn subscribe_topic_events_alpha1(
        &self,
        request: Request<tonic::Streaming<pb::SubscribeTopicEventsRequestAlpha1>>,
    ) -> Result<Response<Self::SubscribeTopicEventsAlpha1Stream>, Status> {
        subscribe_stream::subscribe(&self.runtime, request).await
    }

    async fn invoke_service(
        &self,
        request: Request<pb::InvokeServiceRequest>,
    ) -> Result<Response<common::InvokeResponse>, Status> {
        let (metadata, _, request) = request.into_parts();
        let message = request.message.unwrap_or_default();
        let extension = message.http_extension.unwrap_or_default();
        let method = match extension.verb() {
            common::http_extension::Verb::None | common::http_extension::Verb::Post => {
                http::Method::POST
            }
            verb => http::Method::from_bytes(verb.as_str_name().as_bytes())
                .unwrap_or(http::Method::POST),
        };
        let mut headers = metadata_headers(&metadata);
        if !message.content_type.is_empty()
            && let Ok(content_type) = http::HeaderValue::from_str(&message.content_type)
        {
            headers.insert(http::header::CONTENT_TYPE, content_type);
        }
        let data = message.data.unwrap_or_default();
        if !data.type_url.is_empty() {
            // A typed message goes to an HTTP app as protobuf, as daprd sends it.
            headers.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(tandem_runtime::PROTOBUF_CONTENT_TYPE),
            );
            if let Ok(type_url) = http::HeaderValue::from_str(&data.type_url) {
                headers.insert(tandem_runtime::DATA_TYPE_URL_HEADER, type_url);
            }
        }
        let response = self
            .runtime
            .invoker()
            .invoke(InvokeRequest {
                target: request.id,
                method,
                path: tandem_runtime::method_path(&message.method).map_err(ApiError::from)?,
                query: Some(
                    tandem_runtime::query_text(&extension.querystring).map_err(ApiError::from)?,
                )
                .filter(|query| !query.is_empty()),
                headers,
                body: data.value.into(),
            })
            .await
            .map_err(ApiError::from)?;
        if !response.status.is_success() {
            return Err(app_failure(&response));
        }
        let content_type = response
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let type_url = response
            .headers
            .get(tandem_runtime::DATA_TYPE_URL_HEADER)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        Ok(Response::new(common::InvokeResponse {
            data: Some(prost_types::Any {
                type_url,
                value: response.body.to_vec(),
            }),
            content_type,
        }))
    }

    async fn get_state(
        &self,
        request: Request<pb::GetStateRequest>,
    ) -> Result<Response<pb::GetStateResponse>, Status> {
        let request = request.into_inner();
        let consistency = match request.consistency() {
            common::state_options::StateConsistency::ConsistencyStrong => Consistency::Strong,
            _ => Consistency::Eventual,
        };
        let value = self
            .runtime
            .state()
            .get(&request.store_name, &request.key, consistency)
            .await
            .map_err(ApiError::from)?;
        let (data, etag) = value
            .map(|value| (value.data.to_vec(), value.etag))
            .unwrap_or_default();
        Ok(Response::new(pb::GetStateResponse {
            data,
            etag,
            metadata: Default::default(),
        }))
    }

    async fn get_bulk_state(
        &self,
        request: Request<pb::GetBulkStateRequest>,
    ) -> Result<Response<pb::GetBulkStateResponse>, Status> {
        let request = request.into_inner();
        let parallelism = usize::try_from(request.parallelism).unwrap_or(0).max(1);
        let items = self
            .runtime
            .state()
            .bulk_get(&request.store_name, request.keys, parallelism)
            .await
            .map_err(ApiError::from)?;
        let items = items
            .into_iter()
            .map(|item| {
                let (data, etag) = item
                    .value
                    .map(|value| (value.data.to_vec(), value.etag))
                    .unwrap_or_default();
                pb::BulkStateItem {
                    key: item.key,
                    data,
                    etag,
                    error: item.error.unwrap_or_default(),
                    metadata: Default::default(),
                }
            })
            .collect();
        Ok(Response::new(pb::GetBulkStateResponse { items }))
    }

    async fn save_state(
        &self,
        request: Request<pb::SaveStateRequest>,
    ) -> Result<Response<()>, Status> {
        let request = request.into_inner();
        let items = request.states.into_iter().map(state_item).collect();
        self.runtime
            .state()
            .save(&request.store_name, items)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(()))
    }

    async fn delete_state(
        &self,
        request: Request<pb::DeleteStateRequest>,
    ) -> Result<Response<()>, Status> {
        let request = request.into_inner();
        let first_write = first_write(request.options.as_ref());
        self.runtime
            .state()
            .delete(
                &request.store_name,
                &request.key,
                request.etag.map(|etag| etag.value),
                first_write,
            )
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(()))
    }

    async fn delete_bulk_state(
        &self,
        request: Request<pb::DeleteBulkStateRequest>,
    ) -> Result<Response<()>, Status> {
        let request = request.into_inner();
        let items = request.states.into_iter().map(state_item).collect();
        self.runtime
            .state()
            .delete_bulk(&request.store_name, items)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(()))
    }

    async fn execute_state_transaction(
        &self,
        request: Request<pb::ExecuteStateTransactionRequest>,
    ) -> Result<Response<()>, Status> {
        let request = request.into_inner();
        let mut operations = Vec::with_capacity(request.operations.len());
        for operation in request.operations {
            let item = state_item(operation.request.unwrap_or_default());
            operations.push(match operation.operation_type.as_str() {
                "upsert" => StateOperation::Upsert(item),
                "delete" => StateOperation::Delete(item),
                other => {
                    return Err(ApiError::malformed(format!(
                        "operation type {other} not supported (upsert or delete)"
                    ))
                    .into());
                }
            });
        }
        self.runtime
            .state()
            .transact(&request.store_name, operations)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(()))
    }

    async fn publish_event(
        &self,
        request: Request<pb::PublishEventRequest>,
    ) -> Result<Response<()>, Status> {
        let traceparent = metadata_text(&request, "traceparent");
        let tracestate = metadata_text(&request, "tracestate");
        let request = request.into_inner();
        self.runtime
            .publisher()
            .publish(PublishRequest {
                pubsub: request.pubsub_name,
                topic: request.topic,
                data: request.data.into(),
                content_type: Some(request.data_content_type).filter(|t| !t.is_empty()),
                metadata: request.metadata.into_iter().collect(),
                traceparent,
                tracestate,
            })
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(()))
    }

    async fn bulk_publish_event_alpha1(
        &self,
        request: Request<pb::BulkPublishRequest>,
    ) -> Result<Response<pb::BulkPublishResponse>, Status> {
        self.bulk_publish(request).await
    }

    async fn bulk_publish_event(
        &self,
        request: Request<pb::BulkPublishRequest>,
    ) -> Result<Response<pb::BulkPublishResponse>, Status> {
        self.bulk_publish(request).await
    }

    async fn invoke_binding(
        &self,
        request: Request<pb::InvokeBindingRequest>,
    ) -> Result<Response<pb::InvokeBindingResponse>, Status> {
        let traceparent = metadata_text(&request, "traceparent");
        let tracestate = metadata_text(&request, "tracestate");
        let request = request.into_inner();
        let mut metadata: std::collections::HashMap<String, String> =
            request.metadata.into_iter().collect();
        // The trace context travels to the binding in its metadata, as daprd passes it
        // (the request's own values first).
        for (name, value) in [("traceparent", traceparent), ("tracestate", tracestate)] {
            if let Some(value) = value {
                metadata.entry(name.to_owned()).or_insert(value);
            }
        }
        let answer = self
            .runtime
            .bindings()
            .invoke(tandem_runtime::BindingRequest {
                name: request.name,
                operation: request.operation,
                data: request.data.into(),
                metadata,
            })
            .await
            .map_err(ApiError::from)?
            .unwrap_or_default();
        Ok(Response::new(pb::InvokeBindingResponse {
            data: answer.data.to_vec(),
            metadata: answer.metadata.into_iter().collect(),
        }))
    }

    async fn try_lock_alpha1(
        &self,
        request: Request<pb::TryLockRequest>,
    ) -> Result<Response<pb::TryLockResponse>, Status> {
        let request = request.into_inner();
        let success = self
            .runtime
            .locks()
            .try_lock(
                &request.store_name,
                &request.resource_id,
                &request.lock_owner,
                request.expiry_in_seconds,
            )
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::TryLockResponse { success }))
    }

    async fn unlock_alpha1(
        &self,
        request: Request<pb::UnlockRequest>,
    ) -> Result<Response<pb::UnlockResponse>, Status> {
        let request = request.into_inner();
        let status = self
            .runtime
            .locks()
            .unlock(
                &request.store_name,
                &request.resource_id,
                &request.lock_owner,
            )
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::UnlockResponse {
            status: status as i32,
        }))
    }

    async fn query_state_alpha1(
        &self,
        request: Request<pb::QueryStateRequest>,
    ) -> Result<Response<pb::QueryStateResponse>, Status> {
        let request = request.into_inner();
        let page = self
            .runtime
            .state()
            .query(&request.store_name, request.query.as_bytes())
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::QueryStateResponse {
            results: page
                .results
                .into_iter()
                .map(|result| pb::QueryStateItem {
                    key: result.key,
                    data: result.data.to_vec(),
                    etag: result.etag,
                    error: String::new(),
                })
                .collect(),
            token: page.token.unwrap_or_default(),
            metadata: Default::default(),
        }))
    }

    async fn get_configuration_alpha1(
        &self,
        request: Request<pb::GetConfigurationRequest>,
    ) -> Result<Response<pb::GetConfigurationResponse>, Status> {
        self.get_configuration(request).await
    }

    async fn get_configuration(
        &self,
        request: Request<pb::GetConfigurationRequest>,
    ) -> Result<Response<pb::GetConfigurationResponse>, Status> {
        let request = request.into_inner();
        let items = self
            .runtime
            .configurations()
            .get(
                &request.store_name,
                request.keys,
                request.metadata.into_iter().collect(),
            )
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::GetConfigurationResponse {
            items: configuration_items(items),
        }))
    }

    type SubscribeConfigurationAlpha1Stream = ConfigurationStream;

    async fn subscribe_configuration_alpha1(
        &self,
        request: Request<pb::SubscribeConfigurationRequest>,
    ) -> Result<Response<ConfigurationStream>, Status> {
        self.subscribe_configuration(request).await
    }

    type SubscribeConfigurationStream = ConfigurationStream;

    async fn subscribe_configuration(
        &self,
        request: Request<pb::SubscribeConfigurationRequest>,
    ) -> Result<Response<ConfigurationStream>, Status> {
        let request = request.into_inner();
        let mut keys = request.keys;
        keys.sort();
        let (id, updates) = self
            .runtime
            .configurations()
            .subscribe(
                &request.store_name,
                keys,
                request.metadata.into_iter().collect(),
            )
            .await
            .map_err(ApiError::from)?;
        // First the id alone (what `UnsubscribeConfiguration` takes), then each change;
        // the subscription ends when the client goes away and the stream is dropped.
        let first = pb::SubscribeConfigurationResponse {
            id,
            items: Default::default(),
        };
        use tokio_stream::StreamExt as _;
        let changes = tokio_stream::wrappers::ReceiverStream::new(updates).map(|update| {
            Ok(pb::SubscribeConfigurationResponse {
                id: update.id,
                items: configuration_items(update.items),
            })
        });
        let stream = tokio_stream::once(Ok(first)).chain(changes);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn unsubscribe_configuration_alpha1(
        &self,
        request: Request<pb::UnsubscribeConfigurationRequest>,
    ) -> Result<Response<pb::UnsubscribeConfigurationResponse>, Status> {
        self.unsubscribe_configuration(request).await
    }

    async fn unsubscribe_configuration(
        &self,
        request: Request<pb::UnsubscribeConfigurationRequest>,
    ) -> Result<Response<pb::UnsubscribeConfigurationResponse>, Status> {
        let request = request.into_inner();
        // daprd answers an unknown id in the message, not as an error.
        let response = match self
            .runtime
            .configurations()
            .unsubscribe(&request.store_name, &request.id)
        {
            Ok(()) => pb::UnsubscribeConfigurationResponse {
                ok: true,
                message: String::new(),
            },
            Err(error @ tandem_runtime::Error::ConfigurationUnsubscribe { .. }) => {
                pb::UnsubscribeConfigurationResponse {
                    ok: false,
                    message: error.to_string(),
                }
            }
            Err(error) => return Err(ApiError::from(error).into()),
        };
        Ok(Response::new(response))
    }

    async fn converse_alpha1(
        &self,
        request: Request<pb::ConversationRequest>,
    ) -> Result<Response<pb::ConversationResponse>, Status> {
        let answer = self
            .runtime
            .conversations()
            .converse_alpha1(request.into_inner())
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(answer))
    }

    async fn converse_alpha2(
        &self,
        request: Request<pb::ConversationRequestAlpha2>,
    ) -> Result<Response<pb::ConversationResponseAlpha2>, Status> {
        let answer = self
            .runtime
            .conversations()
            .converse_alpha2(request.into_inner())
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(answer))
    }

    async fn get_secret(
        &self,
        request: Request<pb::GetSecretRequest>,
    ) -> Result<Response<pb::GetSecretResponse>, Status> {
        let request = request.into_inner();
        let metadata = request.metadata.into_iter().collect();
        let secret = self
            .runtime
            .secrets()
            .get(&request.store_name, &request.key, &metadata)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::GetSecretResponse {
            data: secret.into_iter().collect(),
        }))
    }

    async fn get_bulk_secret(
        &self,
        request: Request<pb::GetBulkSecretRequest>,
    ) -> Result<Response<pb::GetBulkSecretResponse>, Status> {
        let request = request.into_inner();
        let metadata = request.metadata.into_iter().collect();
        let secrets = self
            .runtime
            .secrets()
            .bulk(&request.store_name, &metadata)
            .await
            .map_err(ApiError::from)?;
        let data = secrets
            .into_iter()
            .map(|(name, values)| {
                let values = pb::SecretResponse {
                    secrets: values.into_iter().collect(),
                };
                (name, values)
            })
            .collect();
        Ok(Response::new(pb::GetBulkSecretResponse { data }))
    }

    async fn get_metadata(
        &self,
        _: Request<pb::GetMetadataRequest>,
    ) -> Result<Response<pb::GetMetadataResponse>, Status> {
        let snapshot = self.runtime.metadata().await;
        let protocol = snapshot.app_protocol.clone();
        let components = snapshot
            .components
            .into_iter()
            .map(|component| pb::RegisteredComponents {
                name: component.name,
                r#type: component.kind,
                version: component.version,
                capabilities: component.capabilities,
            })
            .collect();
        let subscriptions = snapshot
            .subscriptions
            .into_iter()
            .map(|subscription| pb::PubsubSubscription {
                pubsub_name: subscription.pubsub,
                topic: subscription.topic,
                metadata: subscription.metadata.into_iter().collect(),
                rules: Some(pb::PubsubSubscriptionRules {
                    rules: subscription
                        .rules
                        .into_iter()
                        .map(|rule| pb::PubsubSubscriptionRule {
                            r#match: rule.condition,
                            path: rule.path,
                        })
                        .collect(),
                }),
                dead_letter_topic: subscription.dead_letter_topic,
                r#type: match subscription.origin {
                    "DECLARATIVE" => pb::PubsubSubscriptionType::Declarative,
                    "STREAMING" => pb::PubsubSubscriptionType::Streaming,
                    _ => pb::PubsubSubscriptionType::Programmatic,
                } as i32,
            })
            .collect();
        let active_actors: Vec<pb::ActiveActorsCount> = snapshot
            .actors
            .active
            .iter()
            .map(|active| pb::ActiveActorsCount {
                r#type: active.actor_type.clone(),
                count: i32::try_from(active.count).unwrap_or(i32::MAX),
            })
            .collect();
        Ok(Response::new(pb::GetMetadataResponse {
            id: snapshot.app_id,
            active_actors_count: active_actors.clone(),
            registered_components: components,
            extended_metadata: snapshot.extended.into_iter().collect(),
            subscriptions,
            http_endpoints: snapshot
                .http_endpoints
                .iter()
                .map(|name| pb::MetadataHttpEndpoint { name: name.clone() })
                .collect(),
            app_connection_properties: Some(pb::AppConnectionProperties {
                port: snapshot.app_port.map(i32::from).unwrap_or_default(),
                protocol: protocol.clone(),
                channel_address: snapshot.app_host,
                max_concurrency: snapshot
                    .app_max_concurrency
                    .and_then(|limit| i32::try_from(limit).ok())
                    .unwrap_or_default(),
                health: snapshot
                    .app_health
                    .map(|health| pb::AppConnectionHealthProperties {
                        // Not applicable to gRPC apps, as in daprd.
                        health_check_path: if crate::http::is_http_protocol(&protocol) {
                            health.path
                        } else {
                            String::new()
                        },
                        health_probe_interval: tandem_runtime::go_duration(health.interval),
                        health_probe_timeout: tandem_runtime::go_duration(health.timeout),
                        health_threshold: i32::try_from(health.threshold).unwrap_or(i32::MAX),
                    }),
            }),
            runtime_version: snapshot.runtime_version,
            enabled_features: Vec::new(),
            // Filled in by the actors service.
            actor_runtime: Some(pb::ActorRuntime {
                runtime_status: match snapshot.actors.runtime_status {
                    "RUNNING" => pb::actor_runtime::ActorRuntimeStatus::Running,
                    "DISABLED" => pb::actor_runtime::ActorRuntimeStatus::Disabled,
                    _ => pb::actor_runtime::ActorRuntimeStatus::Initializing,
                } as i32,
                active_actors,
                host_ready: snapshot.actors.host_ready,
                placement: snapshot.actors.placement.clone(),
            }),
        }))
    }

    async fn set_metadata(
        &self,
        request: Request<pb::SetMetadataRequest>,
    ) -> Result<Response<()>, Status> {
        let request = request.into_inner();
        self.runtime
            .set_metadata(&request.key, &request.value)
            .map_err(ApiError::from)?;
        Ok(Response::new(()))
    }

    async fn shutdown(&self, _: Request<pb::ShutdownRequest>) -> Result<Response<()>, Status> {
        self.runtime.shutdown();
        Ok(Response::new(()))
    }

    // Cryptography: the streams in `crypto.rs`; the subtle calls map one to one.
    type EncryptAlpha1Stream = crypto::EncryptStream;
    type DecryptAlpha1Stream = crypto::DecryptStream;

    async fn encrypt_alpha1(
        &self,
        request: Request<tonic::Streaming<pb::EncryptRequest>>,
    ) -> Result<Response<Self::EncryptAlpha1Stream>, Status> {
        crypto::encrypt(&self.runtime, request).await
    }

    async fn decrypt_alpha1(
        &self,
        request: Request<tonic::Streaming<pb::DecryptRequest>>,
    ) -> Result<Response<Self::DecryptAlpha1Stream>, Status> {
        crypto::decrypt(&self.runtime, request).await
    }

    async fn subtle_get_key_alpha1(
        &self,
        request: Request<pb::SubtleGetKeyRequest>,
    ) -> Result<Response<pb::SubtleGetKeyResponse>, Status> {
        crypto::get_key(&self.runtime, request.into_inner()).await
    }

    async fn subtle_encrypt_alpha1(
        &self,
        request: Request<pb::SubtleEncryptRequest>,
    ) -> Result<Response<pb::SubtleEncryptResponse>, Status> {
        let r = request.into_inner();
        let (ciphertext, tag) = self
            .runtime
            .crypto()
            .encrypt(
                &r.component_name,
                &r.key_name,
                &r.algorithm,
                &r.plaintext,
                &r.nonce,
                &r.associated_data,
            )
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::SubtleEncryptResponse { ciphertext, tag }))
    }

    async fn subtle_decrypt_alpha1(
        &self,
        request: Request<pb::SubtleDecryptRequest>,
    ) -> Result<Response<pb::SubtleDecryptResponse>, Status> {
        let r = request.into_inner();
        let plaintext = self
            .runtime
            .crypto()
            .decrypt(
                &r.component_name,
                &r.key_name,
                &r.algorithm,
                &r.ciphertext,
                &r.nonce,
                &r.tag,
                &r.associated_data,
            )
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::SubtleDecryptResponse { plaintext }))
    }

    async fn subtle_wrap_key_alpha1(
        &self,
        request: Request<pb::SubtleWrapKeyRequest>,
    ) -> Result<Response<pb::SubtleWrapKeyResponse>, Status> {
        let r = request.into_inner();
        let (wrapped_key, tag) = self
            .runtime
            .crypto()
            .wrap_key(
                &r.component_name,
                &r.key_name,
                &r.algorithm,
                &r.plaintext_key,
                &r.nonce,
                &r.associated_data,
            )
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::SubtleWrapKeyResponse {
            wrapped_key,
            tag,
        }))
    }

    async fn subtle_unwrap_key_alpha1(
        &self,
        request: Request<pb::SubtleUnwrapKeyRequest>,
    ) -> Result<Response<pb::SubtleUnwrapKeyResponse>, Status> {
        let r = request.into_inner();
        let plaintext_key = self
            .runtime
            .crypto()
            .unwrap_key(
                &r.component_name,
                &r.key_name,
                &r.algorithm,
                &r.wrapped_key,
                &r.nonce,
                &r.tag,
                &r.associated_data,
            )
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::SubtleUnwrapKeyResponse { plaintext_key }))
    }

    async fn subtle_sign_alpha1(
        &self,
        request: Request<pb::SubtleSignRequest>,
    ) -> Result<Response<pb::SubtleSignResponse>, Status> {
        let r = request.into_inner();
        let signature = self
            .runtime
            .crypto()
            .sign(&r.component_name, &r.key_name, &r.algorithm, &r.digest)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::SubtleSignResponse { signature }))
    }

    async fn subtle_verify_alpha1(
        &self,
        request: Request<pb::SubtleVerifyRequest>,
    ) -> Result<Response<pb::SubtleVerifyResponse>, Status> {
        let r = request.into_inner();
        let valid = self
            .runtime
            .crypto()
            .verify(
                &r.component_name,
                &r.key_name,
                &r.algorithm,
                &r.digest,
                &r.signature,
            )
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::SubtleVerifyResponse { valid }))
    }

    // Actors: thin translations in `actors.rs`.
    type SubscribeActorEventsAlpha1Stream = tandem_runtime::ActorEvents;

    async fn invoke_actor(
        &self,
        request: Request<pb::InvokeActorRequest>,
    ) -> Result<Response<pb::InvokeActorResponse>, Status> {
        actors::invoke(&self.runtime, request).await
    }

    async fn get_actor_state(
        &self,
        request: Request<pb::GetActorStateRequest>,
    ) -> Result<Response<pb::GetActorStateResponse>, Status> {
        actors::get_state(&self.runtime, request).await
    }

    async fn execute_actor_state_transaction(
        &self,
        request: Request<pb::ExecuteActorStateTransactionRequest>,
    ) -> Result<Response<()>, Status> {
        actors::transact_state(&self.runtime, request).await
    }

    async fn register_actor_timer(
        &self,
        request: Request<pb::RegisterActorTimerRequest>,
    ) -> Result<Response<()>, Status> {
        actors::register_timer(&self.runtime, request).await
    }

    async fn unregister_actor_timer(
        &self,
        request: Request<pb::UnregisterActorTimerRequest>,
    ) -> Result<Response<()>, Status> {
        actors::unregister_timer(&self.runtime, request)
    }

    async fn register_actor_reminder(
        &self,
        request: Request<pb::RegisterActorReminderRequest>,
    ) -> Result<Response<()>, Status> {
        actors::register_reminder(&self.runtime, request).await
    }

    async fn unregister_actor_reminder(
        &self,
        request: Request<pb::UnregisterActorReminderRequest>,
    ) -> Result<Response<()>, Status> {
        actors::unregister_reminder(&self.runtime, request).await
    }

    async fn unregister_actor_reminders_by_type(
        &self,
        request: Request<pb::UnregisterActorRemindersByTypeRequest>,
    ) -> Result<Response<pb::UnregisterActorRemindersByTypeResponse>, Status> {
        actors::unregister_reminders_by_type(&self.runtime, request).await
    }

    async fn get_actor_reminder(
        &self,
        request: Request<pb::GetActorReminderRequest>,
    ) -> Result<Response<pb::GetActorReminderResponse>, Status> {
        actors::get_reminder(&self.runtime, request).await
    }

    async fn list_actor_reminders(
        &self,
        request: Request<pb::ListActorRemindersRequest>,
    ) -> Result<Response<pb::ListActorRemindersResponse>, Status> {
        actors::list_reminders(&self.runtime, request).await
    }

    async fn subscribe_actor_events_alpha1(
        &self,
        request: Request<tonic::Streaming<pb::SubscribeActorEventsRequestAlpha1>>,
    ) -> Result<Response<Self::SubscribeActorEventsAlpha1Stream>, Status> {
        actors::subscribe(&self.runtime, request).await
    }
}

/// A gRPC caller's metadata as the invocation's headers, as daprd passes it on: the
/// text entries, without gRPC's own and the sidecar's token.
fn metadata_headers(metadata: &tonic::metadata::MetadataMap) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    for entry in metadata.iter() {
        if let tonic::metadata::KeyAndValueRef::Ascii(key, value) = entry {
            let name = key.as_str();
            if name.starts_with("grpc-")
                || matches!(
                    name,
                    "content-type" | "te" | "user-agent" | "dapr-api-token" | "host"
                )
            {
                continue;
            }
            if let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(name.as_bytes()),
                http::HeaderValue::from_bytes(value.as_encoded_bytes()),
            ) {
                headers.append(name, value);
            }
        }
    }
    headers
}

/// A configuration subscription's messages.
type ConfigurationStream = std::pin::Pin<
    Box<dyn tokio_stream::Stream<Item = Result<pb::SubscribeConfigurationResponse, Status>> + Send>,
>;

/// Configuration items as the protocol carries them.
fn configuration_items(
    items: tandem_runtime::ConfigurationItems,
) -> std::collections::HashMap<String, common::ConfigurationItem> {
    items
        .into_iter()
        .map(|(key, item)| {
            (
                key,
                common::ConfigurationItem {
                    value: item.value,
                    version: item.version,
                    metadata: item.metadata.into_iter().collect(),
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_apps_failing_status_becomes_daprds_grpc_code() {
        let code = |status: u16| grpc_code_for(http::StatusCode::from_u16(status).unwrap());
        assert_eq!(code(400), tonic::Code::Internal);
        assert_eq!(code(404), tonic::Code::NotFound);
        assert_eq!(code(408), tonic::Code::Cancelled);
        assert_eq!(code(409), tonic::Code::AlreadyExists);
        assert_eq!(code(500), tonic::Code::Unknown);
        assert_eq!(code(503), tonic::Code::Unavailable);
        assert_eq!(code(418), tonic::Code::Unknown);
        let failure = app_failure(&tandem_runtime::InvokeResponse {
            status: http::StatusCode::INTERNAL_SERVER_ERROR,
            headers: http::HeaderMap::new(),
            body: bytes::Bytes::new(),
        });
        assert_eq!(failure.message(), "Internal Server Error");
        assert_eq!(failure.metadata().get("dapr-http-status").unwrap(), "500");
    }
}
