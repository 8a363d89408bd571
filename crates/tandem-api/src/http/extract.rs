//! Extractors whose every refusal is a Dapr error: axum's own answer malformed paths,
//! queries and bodies with plain text (and over-limit bodies with 413), which Dapr's
//! clients cannot read.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The request body, read up to the limit (`--max-body-size`, from the API's state:
/// a layer carrying it would be cloned into every route, and routes are cloned per
/// request).
pub(crate) struct Body(pub Bytes);

impl FromRequest<super::Api> for Body {
    type Rejection = ApiError;

    async fn from_request(request: Request, api: &super::Api) -> Result<Self, ApiError> {
        read_body(request.into_body(), api.max_body_size)
            .await
            .map(Body)
    }
}

/// How much of an oversized body is read and thrown away before answering: a client
/// still sending when the answer comes and the connection closes sees a broken
/// connection instead of the error, so a reasonable excess is drained first.
const DRAIN_AT_MOST: usize = 64 << 20;

/// Reads `body` whole, refusing more than `limit` bytes with Dapr's `ERR_BODY_READ`.
pub(crate) async fn read_body(body: axum::body::Body, limit: usize) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut read = bytes::BytesMut::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(ApiError::body_read)?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        total = total.saturating_add(data.len());
        if total > limit {
            if total > limit.saturating_add(DRAIN_AT_MOST) {
                break;
            }
            continue;
        }
        read.extend_from_slice(&data);
    }
    if total > limit {
        return Err(ApiError::body_read(format!(
            "the request body is larger than the {limit}-byte limit (--max-body-size)"
        )));
    }
    Ok(read.freeze())
}

/// Path parameters; a path that does not decode (`%FF`) is a malformed request.
pub(crate) struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Path(value))
            .map_err(|rejection| {
                ApiError::malformed(format!("invalid request path: {}", rejection.body_text()))
            })
    }
}

/// Query parameters; a query that does not decode is a malformed request.
pub(crate) struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Query(value))
            .map_err(|rejection| {
                ApiError::malformed(format!("invalid query string: {}", rejection.body_text()))
            })
    }
}
