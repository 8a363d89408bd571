//! Dapr's gRPC API (`dapr.proto.runtime.v1.Dapr`) over tonic. Each method is one
//! runtime call; the API token is checked by an interceptor.

use std::sync::Arc;

use tandem_proto::runtime as pb;
use tandem_proto::runtime::dapr_server::{Dapr, DaprServer};
use tandem_runtime::{PublishRequest, Runtime};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::auth::ApiToken;
use crate::error::ApiError;

/// The gRPC service.
pub struct Service {
    runtime: Arc<Runtime>,
}

/// Serves the gRPC API on `listener` until `stop` fires.
pub async fn serve(
    listener: TcpListener,
    runtime: Arc<Runtime>,
    token: ApiToken,
    stop: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let service = DaprServer::with_interceptor(Service { runtime }, move |request: Request<()>| {
        let given = request
            .metadata()
            .get("dapr-api-token")
            .map(|value| value.as_bytes());
        if token.admits(given) {
            Ok(request)
        } else {
            Err(Status::unauthenticated(
                "authentication error: api token mismatch",
            ))
        }
    });
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(service)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), stop.cancelled_owned())
        .await
}

fn metadata_text<T>(request: &Request<T>, name: &str) -> Option<String> {
    request
        .metadata()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

#[tonic::async_trait]
impl Dapr for Service {
    async fn publish_event(
        &self,
        request: Request<pb::PublishEventRequest>,
    ) -> Result<Response<()>, Status> {
        let traceparent = metadata_text(&request, "traceparent");
        let tracestate = metadata_text(&request, "tracestate");
        let request = request.into_inner();
        self.runtime
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

    async fn get_secret(
        &self,
        request: Request<pb::GetSecretRequest>,
    ) -> Result<Response<pb::GetSecretResponse>, Status> {
        let request = request.into_inner();
        let metadata = request.metadata.into_iter().collect();
        let secret = self
            .runtime
            .get_secret(&request.store_name, &request.key, &metadata)
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
            .bulk_secrets(&request.store_name, &metadata)
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
        let snapshot = self.runtime.metadata();
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
                    rules: vec![pb::PubsubSubscriptionRule {
                        r#match: String::new(),
                        path: subscription.route,
                    }],
                }),
                dead_letter_topic: subscription.dead_letter_topic,
                r#type: match subscription.origin {
                    "DECLARATIVE" => pb::PubsubSubscriptionType::Declarative,
                    _ => pb::PubsubSubscriptionType::Programmatic,
                } as i32,
            })
            .collect();
        Ok(Response::new(pb::GetMetadataResponse {
            id: snapshot.app_id,
            active_actors_count: Vec::new(),
            registered_components: components,
            extended_metadata: snapshot.extended.into_iter().collect(),
            subscriptions,
            http_endpoints: Vec::new(),
            app_connection_properties: Some(pb::AppConnectionProperties {
                port: snapshot.app_port.map(i32::from).unwrap_or_default(),
                protocol: snapshot.app_protocol,
                channel_address: snapshot.app_host,
                max_concurrency: 0,
                health: None,
            }),
            runtime_version: snapshot.runtime_version,
            enabled_features: Vec::new(),
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
}
