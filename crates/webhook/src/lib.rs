//! The Git push webhook receiver of the Capstan controller.
//!
//! A Git host calls `POST /hook/{receiver-name}` after a push. Each *receiver* is named, has a
//! [`Provider`] (which headers and payload shape to expect) and a [`Secret`], like Flux's `Receiver`
//! objects. This crate owns everything between the socket and a typed [`PushEvent`]: reading the body
//! within [`Limits`], verifying the signature or token, filtering events, and parsing the payload. It
//! knows nothing of Kubernetes: the controller implements [`Receiver`] (where receivers come from,
//! which sources a push triggers) and mounts [`router`] in its HTTP server.
//!
//! - [`verify`]: signature and token checks per provider (HMAC-SHA256 or token, constant time).
//! - [`payload`]: which events are pushes, and push payloads → [`PushEvent`].
//! - [`server`]: the axum route, body limits, status codes and logging.
//! - [`url`]: [`same_repository`], to match payload URLs against `GitRepository` URLs.
//!
//! What a request gets, in the order the checks run:
//!
//! | situation | status | body |
//! | --- | --- | --- |
//! | no receiver of that name ([`Receiver::lookup`] → `None`) | 404 | `{"error": …}` |
//! | body over [`Limits::max_body_bytes`] (declared or streamed) | 413 | `{"error": …}` |
//! | body not read within [`Limits::read_timeout`] | 408 | `{"error": …}` |
//! | signature/token missing, malformed or wrong; empty secret | 401 | `{"error": …}` |
//! | signed, but not a push event (GitHub `ping`, issues, …) | 200 | `{"triggered": 0, "ignored": "<event>"}` |
//! | signed push whose payload is not understood | 400 | `{"error": …}` naming the field |
//! | signed push | 200 | `{"triggered": N}` ([`TriggerOutcome::triggered`]) |
//! | [`Receiver`] failed (lookup or trigger) | 503 | `{"error": …}` with the receiver's message |
//!
//! Nothing is triggered unless the signature was verified and the payload parsed. Logs name the
//! receiver, provider, repository, ref and outcome; never the secret, a signature or a token.
//!
//! ```no_run
//! use std::sync::Arc;
//! use capstan_webhook::{
//!     BoxFuture, Limits, Provider, PushEvent, Receiver, ReceiverConfig, ReceiverError, Secret,
//!     TriggerOutcome, same_repository,
//! };
//!
//! struct Sources { repository: String, secret: String }
//!
//! impl Receiver for Sources {
//!     fn lookup<'a>(&'a self, name: &'a str)
//!         -> BoxFuture<'a, Result<Option<ReceiverConfig>, ReceiverError>> {
//!         Box::pin(async move {
//!             Ok((name == "github").then(|| ReceiverConfig {
//!                 provider: Provider::GitHub,
//!                 secret: Secret::new(self.secret.as_bytes()),
//!             }))
//!         })
//!     }
//!     fn trigger<'a>(&'a self, _name: &'a str, event: PushEvent)
//!         -> BoxFuture<'a, Result<TriggerOutcome, ReceiverError>> {
//!         Box::pin(async move {
//!             let matched = event.repository_urls.iter()
//!                 .any(|url| same_repository(url, &self.repository));
//!             Ok(TriggerOutcome { triggered: usize::from(matched) })
//!         })
//!     }
//! }
//!
//! # async fn serve() -> std::io::Result<()> {
//! let sources = Arc::new(Sources { repository: "https://github.com/org/app".into(), secret: "s".into() });
//! let app = capstan_webhook::router(sources, Limits::default());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9292").await?;
//! axum::serve(listener, app).await
//! # }
//! ```

pub mod payload;
pub mod server;
pub mod url;
pub mod verify;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use server::router;
pub use url::same_repository;

/// A boxed, `Send` future: what [`Receiver`]'s methods return, so the trait stays usable as
/// `Arc<dyn Receiver>` (async trait methods are not object safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The kind of Git host a receiver accepts hooks from: it decides the signature header, the event
/// header and the payload shape (see [`verify`] and [`payload`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// `X-Hub-Signature-256: sha256=<hex>`, `X-GitHub-Event: push`.
    GitHub,
    /// `X-Gitlab-Token: <secret>`, `X-Gitlab-Event: Push Hook` or `Tag Push Hook`.
    GitLab,
    /// Gitea and Forgejo: `X-Gitea-Signature: <hex>`, `X-Gitea-Event: push`.
    Gitea,
    /// Bitbucket Cloud (`X-Event-Key: repo:push`) and Bitbucket Server/Data Center
    /// (`repo:refs_changed`), both `X-Hub-Signature: sha256=<hex>`.
    Bitbucket,
    /// Any sender that can compute an HMAC: `X-Signature: sha256=<hex>` over
    /// `{"repository": "<url>", "ref": "<ref>", "after": "<sha>"}`.
    Generic,
}

impl Provider {
    pub const ALL: [Provider; 5] = [
        Provider::GitHub,
        Provider::GitLab,
        Provider::Gitea,
        Provider::Bitbucket,
        Provider::Generic,
    ];

    /// The lower-case name used in configuration (`github`, `gitlab`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::GitHub => "github",
            Provider::GitLab => "gitlab",
            Provider::Gitea => "gitea",
            Provider::Bitbucket => "bitbucket",
            Provider::Generic => "generic",
        }
    }

    /// The name people know it by, for messages.
    pub fn display_name(self) -> &'static str {
        match self {
            Provider::GitHub => "GitHub",
            Provider::GitLab => "GitLab",
            Provider::Gitea => "Gitea",
            Provider::Bitbucket => "Bitbucket",
            Provider::Generic => "generic",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown webhook provider {0:?}: expected github, gitlab, gitea, bitbucket or generic")]
pub struct UnknownProvider(pub String);

impl FromStr for Provider {
    type Err = UnknownProvider;

    /// Case-insensitive; `forgejo` is accepted as Gitea (same headers and payload).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "github" => Ok(Provider::GitHub),
            "gitlab" => Ok(Provider::GitLab),
            "gitea" | "forgejo" => Ok(Provider::Gitea),
            "bitbucket" => Ok(Provider::Bitbucket),
            "generic" => Ok(Provider::Generic),
            _ => Err(UnknownProvider(s.to_owned())),
        }
    }
}

/// A verified push, as the controller sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushEvent {
    pub provider: Provider,
    /// Every URL the payload names for the repository (https and ssh clone URLs, `git://`, the web
    /// page), de-duplicated, in payload order, with any password replaced by `***`. Match them with
    /// [`same_repository`].
    pub repository_urls: Vec<String>,
    /// The pushed ref, e.g. `refs/heads/main` or `refs/tags/v1.2.0`. `None` when the payload names
    /// none, or several different refs (a Bitbucket push of many branches): then any ref may have
    /// moved.
    pub git_ref: Option<String>,
    /// The commit the ref points to now. `None` when unknown, for several refs, or when the ref was
    /// deleted (the all-zero id).
    pub after: Option<String>,
}

/// A webhook secret: the HMAC key, or the GitLab token. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Secret(bytes.into())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// One named receiver: what it accepts and the secret it checks with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiverConfig {
    pub provider: Provider,
    /// An empty secret refuses every request (an HMAC with an empty key proves nothing).
    pub secret: Secret,
}

/// What a push did: the number of sources it triggered (0 when none matched).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TriggerOutcome {
    pub triggered: usize,
}

/// A failure of the controller's side (the API server is unreachable, this replica is not the
/// leader, …). The request gets 503 with this message, so it must not contain secrets.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ReceiverError {
    message: String,
}

impl ReceiverError {
    pub fn new(message: impl Into<String>) -> Self {
        ReceiverError {
            message: message.into(),
        }
    }
}

/// The controller's side of the webhook: where named receivers come from and what a push does.
///
/// Both methods are async (boxed, see [`BoxFuture`]) because an implementation may read a Secret
/// or patch objects through the API server. The router calls [`lookup`](Receiver::lookup) once per
/// request, before reading the body, and [`trigger`](Receiver::trigger) only for a push whose
/// signature was verified and whose payload parsed; it never calls `trigger` twice for one request.
pub trait Receiver: Send + Sync + 'static {
    /// The receiver called `name` (the `{receiver-name}` of `/hook/{receiver-name}`), or `None` if
    /// there is none (the request gets 404).
    fn lookup<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<ReceiverConfig>, ReceiverError>>;

    /// Triggers what `event` concerns, e.g. every `GitRepository` whose URL is the
    /// [`same_repository`] as one of `event.repository_urls` (a receiver may restrict itself to
    /// some sources; that is the implementation's choice). Should return quickly: Git hosts time
    /// hooks out after about 10 s, so queue the fetch rather than waiting for it.
    fn trigger<'a>(
        &'a self,
        name: &'a str,
        event: PushEvent,
    ) -> BoxFuture<'a, Result<TriggerOutcome, ReceiverError>>;
}

/// Bounds on what one request may cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest body accepted (default 1 MiB; GitHub caps payloads at 25 MB, but a push payload
    /// that large lists thousands of commits, none of which this receiver reads). Larger bodies,
    /// announced by `Content-Length` or streamed chunked, get 413.
    pub max_body_bytes: usize,
    /// Time allowed for reading the whole body (default 10 s); slower senders get 408.
    pub read_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 1024 * 1024,
            read_timeout: Duration::from_secs(10),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_names_round_trip() {
        for provider in Provider::ALL {
            assert_eq!(provider.as_str().parse::<Provider>().ok(), Some(provider));
            assert_eq!(
                serde_json::to_string(&provider).ok(),
                Some(format!("\"{provider}\""))
            );
        }
        assert_eq!("GitHub".parse::<Provider>().ok(), Some(Provider::GitHub));
        assert_eq!("forgejo".parse::<Provider>().ok(), Some(Provider::Gitea));
        let err = "svn".parse::<Provider>().expect_err("unknown");
        assert!(err.to_string().contains("\"svn\""), "{err}");
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let config = ReceiverConfig {
            provider: Provider::GitHub,
            secret: Secret::new("hunter2"),
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("Secret(***)"), "{shown}");
    }
}
