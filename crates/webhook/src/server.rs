//! The HTTP side: the `POST /hook/{receiver-name}` route, reading the body within [`Limits`], the
//! order of checks and the status each failure gets (see the table in the crate docs), and logs.
//!
//! The body is read by hand rather than through `DefaultBodyLimit`/`RequestBodyLimitLayer`
//! because a plain limit answers 413 while the sender is still writing: the server then closes a
//! socket with unread data, the kernel resets the connection, and a sender that writes its whole
//! request before reading the answer gets "broken pipe" instead of the 413 (Python's
//! `http.client` did, every time, for a 3 MB body; reqwest and curl read early answers and
//! were fine). So an oversized body (announced by `Content-Length` or found while streaming a
//! chunked one) is drained, up to [`DRAIN_BYTES`] and [`DRAIN_TIME`], before the 413 goes out with
//! `Connection: close`; a sender that announced too much and waits for `100 Continue` gets the
//! 413 at once, without sending anything. The same draining happens when a request is refused
//! before its body was read (unknown receiver, receiver unavailable).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, EXPECT};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http_body_util::BodyExt;
use serde_json::json;

use crate::payload::{self, Event};
use crate::verify;
use crate::{Limits, Receiver};

/// Most bytes discarded after a refusal so that the sender reads the answer (see module docs):
/// above GitHub's 25 MB payload cap, so a real delivery that is too large still learns why.
/// Discarding costs no memory, and [`DRAIN_TIME`] bounds it.
pub const DRAIN_BYTES: usize = 32 * 1024 * 1024;
/// Longest time spent discarding them.
pub const DRAIN_TIME: Duration = Duration::from_secs(2);

#[derive(Clone)]
struct Hooks {
    receiver: Arc<dyn Receiver>,
    limits: Limits,
}

/// The webhook route, `POST /hook/{receiver-name}`, ready to be merged into the controller's
/// router (next to `/healthz` and `/metrics`) or served alone with `axum::serve`.
pub fn router(receiver: Arc<dyn Receiver>, limits: Limits) -> Router {
    Router::new()
        .route("/hook/{name}", post(handle))
        .with_state(Hooks { receiver, limits })
}

/// A finished answer: status and JSON body (and whether to close the connection).
struct Reply {
    status: StatusCode,
    body: serde_json::Value,
    close: bool,
}

impl Reply {
    fn ok(body: serde_json::Value) -> Self {
        Reply {
            status: StatusCode::OK,
            body,
            close: false,
        }
    }

    fn error(status: StatusCode, message: impl Into<String>) -> Self {
        Reply {
            status,
            body: json!({ "error": message.into() }),
            close: false,
        }
    }

    fn closing(mut self) -> Self {
        self.close = true;
        self
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.body.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if self.close {
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

async fn handle(
    State(hooks): State<Hooks>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Reply {
    let mut body = body;
    let config = match hooks.receiver.lookup(&name).await {
        Ok(Some(config)) => config,
        Ok(None) => {
            tracing::warn!(receiver = %name, "webhook for an unknown receiver");
            drain(&mut body, &hooks.limits).await;
            return Reply::error(
                StatusCode::NOT_FOUND,
                format!("no webhook receiver named {name:?}"),
            );
        }
        Err(err) => {
            tracing::error!(receiver = %name, error = %err, "webhook receiver lookup failed");
            drain(&mut body, &hooks.limits).await;
            return Reply::error(StatusCode::SERVICE_UNAVAILABLE, err.to_string());
        }
    };
    let provider = config.provider;

    let bytes = match read_body(&mut body, &headers, &hooks.limits).await {
        Ok(bytes) => bytes,
        Err(BodyError::TooLarge) => {
            tracing::warn!(receiver = %name, %provider, limit = hooks.limits.max_body_bytes,
                "webhook body too large; nothing triggered");
            return Reply::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "request body is larger than {} bytes",
                    hooks.limits.max_body_bytes
                ),
            )
            .closing();
        }
        Err(BodyError::Timeout) => {
            tracing::warn!(receiver = %name, %provider, timeout = ?hooks.limits.read_timeout,
                "webhook body not received in time; nothing triggered");
            return Reply::error(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "request body not received within {:?}",
                    hooks.limits.read_timeout
                ),
            )
            .closing();
        }
        Err(BodyError::Read(err)) => {
            tracing::warn!(receiver = %name, %provider, error = %err, "webhook body unreadable");
            return Reply::error(
                StatusCode::BAD_REQUEST,
                format!("could not read the request body: {err}"),
            )
            .closing();
        }
    };

    if let Err(err) = verify::verify(provider, &headers, &bytes, &config.secret) {
        tracing::warn!(receiver = %name, %provider, reason = %err,
            "webhook not authenticated; nothing triggered");
        return Reply::error(StatusCode::UNAUTHORIZED, err.to_string());
    }

    let format = match payload::classify(provider, &headers) {
        Ok(Event::Push(format)) => format,
        Ok(Event::Ignored(event)) => {
            tracing::info!(receiver = %name, %provider, event = %event, "webhook event ignored (not a push)");
            return Reply::ok(json!({ "triggered": 0, "ignored": event }));
        }
        Err(err) => {
            tracing::warn!(receiver = %name, %provider, error = %err, "webhook refused");
            return Reply::error(StatusCode::BAD_REQUEST, err.to_string());
        }
    };
    let push = match payload::parse_push(format, &headers, &bytes) {
        Ok(push) => push,
        Err(err) => {
            tracing::warn!(receiver = %name, %provider, error = %err, "webhook payload refused");
            return Reply::error(StatusCode::BAD_REQUEST, err.to_string());
        }
    };

    let repository = push.repository_urls.first().cloned().unwrap_or_default();
    let git_ref = push.git_ref.clone().unwrap_or_default();
    let after = push.after.clone().unwrap_or_default();
    match hooks.receiver.trigger(&name, push).await {
        Ok(outcome) => {
            tracing::info!(receiver = %name, %provider, %repository, git_ref = %git_ref,
                %after, triggered = outcome.triggered, "webhook push");
            Reply::ok(json!({ "triggered": outcome.triggered }))
        }
        Err(err) => {
            tracing::error!(receiver = %name, %provider, %repository, git_ref = %git_ref,
                error = %err, "webhook push could not be triggered");
            Reply::error(StatusCode::SERVICE_UNAVAILABLE, err.to_string())
        }
    }
}

enum BodyError {
    TooLarge,
    Timeout,
    Read(axum::Error),
}

/// The whole body, if it fits [`Limits::max_body_bytes`] and arrives within
/// [`Limits::read_timeout`]. An oversized body is drained (see module docs).
async fn read_body(
    body: &mut Body,
    headers: &HeaderMap,
    limits: &Limits,
) -> Result<Vec<u8>, BodyError> {
    let max = limits.max_body_bytes;
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > max as u64) {
        let waits_for_continue = headers
            .get(EXPECT)
            .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        // Reading would send `100 Continue` and invite the body we are about to refuse.
        if !waits_for_continue {
            drain(body, limits).await;
        }
        return Err(BodyError::TooLarge);
    }
    // `declared` is at most `max` here, so this allocation is bounded.
    let capacity = declared.map_or(0, |length| length as usize);
    let read = async {
        let mut collected = Vec::with_capacity(capacity);
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(BodyError::Read)?;
            if let Some(data) = frame.data_ref() {
                if collected.len() + data.len() > max {
                    return Err(BodyError::TooLarge);
                }
                collected.extend_from_slice(data);
            }
        }
        Ok(collected)
    };
    match tokio::time::timeout(limits.read_timeout, read).await {
        Ok(Err(BodyError::TooLarge)) => {
            drain(body, limits).await;
            Err(BodyError::TooLarge)
        }
        Ok(result) => result,
        Err(_) => Err(BodyError::Timeout),
    }
}

/// Reads and discards what is left of the body, within [`DRAIN_BYTES`] and [`DRAIN_TIME`] (or the
/// read timeout, if shorter), so that the sender gets to read the answer.
async fn drain(body: &mut Body, limits: &Limits) {
    let discard = async {
        let mut discarded = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                discarded += data.len();
                if discarded > DRAIN_BYTES {
                    break;
                }
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME.min(limits.read_timeout), discard).await;
}
