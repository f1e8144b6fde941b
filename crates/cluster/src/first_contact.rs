//! Saying what a connection waits for: until the API server has answered once, a request that gets
//! no answer within a few seconds logs (once) a warning naming the server and the connect timeout,
//! so a command against an unresponsive server does not wait in silence. After the first answer the
//! layer only checks a flag.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

/// The longest a first contact waits before the notice.
const NOTICE_AFTER: Duration = Duration::from_secs(5);

/// Shared by every clone of a connection and the connections derived from it.
#[derive(Debug)]
pub(crate) struct FirstContact {
    server: String,
    connect_timeout: Option<Duration>,
    notice_after: Duration,
    answered: AtomicBool,
    noticed: AtomicBool,
}

impl FirstContact {
    /// The notice comes after 5 s, or after half the connect timeout when that is shorter, so it
    /// always comes before the connection attempt gives up.
    pub(crate) fn new(server: String, connect_timeout: Option<Duration>) -> Arc<Self> {
        Arc::new(Self {
            server,
            notice_after: connect_timeout.map_or(NOTICE_AFTER, |t| NOTICE_AFTER.min(t / 2)),
            connect_timeout,
            answered: AtomicBool::new(false),
            noticed: AtomicBool::new(false),
        })
    }

    /// The notice, once per connection.
    fn notice(&self) {
        if self.answered.load(Ordering::Relaxed) || self.noticed.swap(true, Ordering::Relaxed) {
            return;
        }
        let timeout = match self.connect_timeout {
            Some(timeout) => format!("connect timeout {timeout:?}"),
            None => "no connect timeout".to_owned(),
        };
        tracing::warn!("waiting for the API server at {} ({timeout})", self.server);
    }
}

/// Tower layer around the client's service; see the module documentation.
#[derive(Clone, Debug)]
pub(crate) struct FirstContactLayer(pub(crate) Arc<FirstContact>);

impl<S> tower::Layer<S> for FirstContactLayer {
    type Service = FirstContactService<S>;

    fn layer(&self, inner: S) -> FirstContactService<S> {
        FirstContactService {
            inner,
            state: Arc::clone(&self.0),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct FirstContactService<S> {
    inner: S,
    state: Arc<FirstContact>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, R> tower::Service<R> for FirstContactService<S>
where
    S: tower::Service<R>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let response = self.inner.call(request);
        let state = Arc::clone(&self.state);
        Box::pin(async move {
            if state.answered.load(Ordering::Relaxed) {
                return response.await;
            }
            tokio::pin!(response);
            let result = tokio::select! {
                biased;
                result = &mut response => result,
                () = tokio::time::sleep(state.notice_after) => {
                    state.notice();
                    response.await
                }
            };
            if result.is_ok() {
                state.answered.store(true, Ordering::Relaxed);
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_notice_comes_before_the_connect_timeout() {
        let after = |timeout: Option<u64>| {
            FirstContact::new("https://x".into(), timeout.map(Duration::from_secs)).notice_after
        };
        assert_eq!(after(None), Duration::from_secs(5));
        assert_eq!(after(Some(30)), Duration::from_secs(5));
        assert_eq!(after(Some(4)), Duration::from_secs(2));
    }
}
