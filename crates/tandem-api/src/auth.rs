//! `DAPR_API_TOKEN`: when the sidecar has one, every call but the health checks must
//! carry it in the `dapr-api-token` header (HTTP) or metadata entry (gRPC).

use std::sync::Arc;

/// The token callers must present, if any.
#[derive(Clone, Default)]
pub struct ApiToken(Option<Arc<str>>);

impl ApiToken {
    pub fn new(token: Option<&str>) -> Self {
        Self(token.filter(|token| !token.is_empty()).map(Arc::from))
    }

    /// Whether callers must present a token at all.
    pub fn is_required(&self) -> bool {
        self.0.is_some()
    }

    /// Whether a caller presenting `given` may proceed.
    pub fn admits(&self, given: Option<&[u8]>) -> bool {
        match &self.0 {
            None => true,
            Some(expected) => {
                given.is_some_and(|given| constant_time_eq(given, expected.as_bytes()))
            }
        }
    }
}

/// Compares without returning early, so timing does not reveal how much matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_required_only_when_configured() {
        assert!(ApiToken::new(None).admits(None));
        assert!(ApiToken::new(Some("")).admits(None));
        let token = ApiToken::new(Some("s3cret"));
        assert!(token.admits(Some(b"s3cret")));
        assert!(!token.admits(Some(b"s3cre")));
        assert!(!token.admits(Some(b"wrong!")));
        assert!(!token.admits(None));
    }
}
