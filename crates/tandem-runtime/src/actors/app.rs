//! Calls into the app that hosts actors: one turn (a method, a reminder, a timer) or a
//! deactivation. Over HTTP as daprd makes them (`PUT /actors/{type}/{id}/method/...`,
//! `DELETE /actors/{type}/{id}`); the gRPC actor stream implements the same trait.

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::json;

use crate::app_channel::{AppCallError, AppChannel};

/// The header carrying a reentrant call chain's id.
pub const REENTRANCY_HEADER: &str = "dapr-reentrancy-id";

/// What a turn does.
#[derive(Debug, Clone, PartialEq)]
pub enum TurnKind {
    /// A method call from a client or another actor.
    Method { name: String },
    /// A reminder firing; `data` is the JSON value it was registered with.
    Reminder {
        name: String,
        data: serde_json::Value,
        due_time: String,
        period: String,
    },
    /// A timer firing.
    Timer {
        name: String,
        callback: String,
        data: serde_json::Value,
        due_time: String,
        period: String,
    },
}

/// One turn of an actor.
#[derive(Debug, Clone)]
pub struct Turn {
    pub actor_type: String,
    pub actor_id: String,
    pub kind: TurnKind,
    /// The caller's headers (content type, tracing, the reentrancy id).
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Turn {
    /// The method path daprd calls on the app, below `/actors/{type}/{id}/method/`.
    pub fn method_path(&self) -> String {
        match &self.kind {
            TurnKind::Method { name } => name.clone(),
            TurnKind::Reminder { name, .. } => format!("remind/{name}"),
            TurnKind::Timer { name, .. } => format!("timer/{name}"),
        }
    }

    /// The body daprd sends: the caller's for a method, a JSON document for reminders
    /// and timers.
    pub fn app_body(&self) -> Bytes {
        match &self.kind {
            TurnKind::Method { .. } => self.body.clone(),
            TurnKind::Reminder {
                data,
                due_time,
                period,
                ..
            } => {
                // As daprd: no `data` key for a reminder registered without data.
                let mut body = json!({"dueTime": due_time, "period": period});
                if !data.is_null() {
                    body["data"] = data.clone();
                }
                Bytes::from(body.to_string())
            }
            TurnKind::Timer {
                callback,
                data,
                due_time,
                period,
                ..
            } => Bytes::from(
                json!({"callback": callback, "data": data, "dueTime": due_time, "period": period})
                    .to_string(),
            ),
        }
    }
}

/// The app's answer to a turn.
#[derive(Debug, Clone)]
pub struct ActorAnswer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Why a turn got no answer from the app.
#[derive(Debug)]
pub(crate) struct TurnError {
    pub reason: String,
    /// The turn never reached the app (its port refused the connection): running it
    /// elsewhere, or again, cannot run it twice.
    pub undelivered: bool,
}

impl From<String> for TurnError {
    fn from(reason: String) -> Self {
        TurnError {
            reason,
            undelivered: false,
        }
    }
}

/// An app that hosts actors.
#[async_trait]
pub(crate) trait ActorApp: Send + Sync {
    /// Runs one turn in the app.
    async fn turn(&self, turn: &Turn) -> Result<ActorAnswer, TurnError>;
    /// Tells the app an actor is deactivated.
    async fn deactivate(&self, actor_type: &str, actor_id: &str) -> Result<(), String>;
}

/// What an actor path segment percent-encodes: everything but RFC 3986's unreserved
/// characters, so an actor id with `/` or `?` stays one segment.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Encodes one path segment.
pub(crate) fn segment(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, SEGMENT).to_string()
}

/// Actors hosted by an HTTP app.
pub(crate) struct HttpActorApp {
    pub channel: AppChannel,
}

#[async_trait]
impl ActorApp for HttpActorApp {
    async fn turn(&self, turn: &Turn) -> Result<ActorAnswer, TurnError> {
        let path = format!(
            "/actors/{}/{}/method/{}",
            segment(&turn.actor_type),
            segment(&turn.actor_id),
            turn.method_path()
                .split('/')
                .map(segment)
                .collect::<Vec<_>>()
                .join("/")
        );
        let mut headers = crate::invoke::forwardable(&turn.headers);
        if !matches!(turn.kind, TurnKind::Method { .. }) {
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        let answer = self
            .channel
            .call(Method::PUT, &path, headers, turn.app_body())
            .await
            .map_err(|error| TurnError {
                undelivered: matches!(&error,
                    AppCallError::Unreachable { source, .. } if source.is_connect()),
                reason: error.to_string(),
            })?;
        Ok(ActorAnswer {
            status: answer.status,
            headers: crate::invoke::forwardable(&answer.headers),
            body: answer.body,
        })
    }

    async fn deactivate(&self, actor_type: &str, actor_id: &str) -> Result<(), String> {
        let path = format!("/actors/{}/{}", segment(actor_type), segment(actor_id));
        let answer = self
            .channel
            .call(Method::DELETE, &path, HeaderMap::new(), Bytes::new())
            .await
            .map_err(|error| error.to_string())?;
        if answer.status.is_success() || answer.status == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(format!("the app answered {}", answer.status))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reminders_and_timers_reach_the_app_as_daprd_sends_them() {
        let turn = Turn {
            actor_type: "T".into(),
            actor_id: "a/b".into(),
            kind: TurnKind::Reminder {
                name: "r".into(),
                data: json!({"x": 1}),
                due_time: "1s".into(),
                period: "R3/PT1S".into(),
            },
            headers: HeaderMap::new(),
            body: Bytes::new(),
        };
        assert_eq!(turn.method_path(), "remind/r");
        let body: serde_json::Value = serde_json::from_slice(&turn.app_body()).unwrap();
        assert_eq!(
            body,
            json!({"data": {"x": 1}, "dueTime": "1s", "period": "R3/PT1S"})
        );
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
    }
}
