//! Reading bodies with a limit: an app, another sidecar or an outside service can
//! answer with anything, and an answer larger than `--max-body-size` must not be read
//! into memory whole before it is refused.

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the body is larger than the {limit}-byte limit (--max-body-size)")]
    TooLarge { limit: usize },
    #[error("reading the body failed: {0}")]
    Broken(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Reads all of `body`, refusing more than `limit` bytes.
pub async fn read_limited<B>(body: B, limit: usize) -> Result<Bytes, BodyError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            Err(BodyError::TooLarge { limit })
        }
        Err(error) => Err(BodyError::Broken(error)),
    }
}
