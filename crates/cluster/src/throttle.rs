//! The client-side rate limit (`--kube-api-qps`, `--kube-api-burst`): a token bucket like client-go's.
//! Every request to the API server takes a token; tokens come back at `qps` per second, up to `burst`.
//! One bucket serves a connection and every connection derived from it (impersonation), so parallel
//! plans and applies never exceed the limit together.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// Requests per second and how many may go at once after a quiet spell.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    pub qps: f64,
    pub burst: u32,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Shared by every clone. A request that finds the bucket empty still takes the next token (the count
/// goes below zero) and waits until it is due, so waiting requests go in the order they asked.
#[derive(Clone, Debug)]
pub(crate) struct TokenBucket {
    qps: f64,
    burst: f64,
    bucket: Arc<Mutex<Bucket>>,
}

impl TokenBucket {
    /// `None` when `limit` does not limit anything (a QPS that is not a positive number).
    pub(crate) fn new(limit: RateLimit) -> Option<Self> {
        if !(limit.qps.is_finite() && limit.qps > 0.0) {
            return None;
        }
        let burst = f64::from(limit.burst.max(1));
        Some(Self {
            qps: limit.qps,
            burst,
            bucket: Arc::new(Mutex::new(Bucket {
                tokens: burst,
                updated: Instant::now(),
            })),
        })
    }

    /// Takes a token; returns how long to wait before it may be used.
    fn reserve(&self) -> Duration {
        let mut bucket = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let refilled = now.duration_since(bucket.updated).as_secs_f64() * self.qps;
        bucket.tokens = (bucket.tokens + refilled).min(self.burst) - 1.0;
        bucket.updated = now;
        if bucket.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-bucket.tokens / self.qps)
        }
    }
}

/// Tower layer: the wrapped service is not ready until the request it is about to send has a token.
#[derive(Clone, Debug)]
pub(crate) struct ThrottleLayer(pub(crate) TokenBucket);

impl<S> tower::Layer<S> for ThrottleLayer {
    type Service = Throttle<S>;

    fn layer(&self, inner: S) -> Throttle<S> {
        Throttle {
            inner,
            bucket: self.0.clone(),
            state: Reservation::None,
        }
    }
}

enum Reservation {
    None,
    Waiting(Pin<Box<Sleep>>),
    Granted,
}

pub(crate) struct Throttle<S> {
    inner: S,
    bucket: TokenBucket,
    state: Reservation,
}

impl<S: Clone> Clone for Throttle<S> {
    fn clone(&self) -> Self {
        // A clone has not reserved anything yet.
        Self {
            inner: self.inner.clone(),
            bucket: self.bucket.clone(),
            state: Reservation::None,
        }
    }
}

impl<S, R> tower::Service<R> for Throttle<S>
where
    S: tower::Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        loop {
            match &mut self.state {
                Reservation::None => {
                    let wait = self.bucket.reserve();
                    self.state = if wait.is_zero() {
                        Reservation::Granted
                    } else {
                        Reservation::Waiting(Box::pin(tokio::time::sleep(wait)))
                    };
                }
                Reservation::Waiting(sleep) => {
                    ready!(sleep.as_mut().poll(cx));
                    self.state = Reservation::Granted;
                }
                Reservation::Granted => return self.inner.poll_ready(cx),
            }
        }
    }

    fn call(&mut self, request: R) -> S::Future {
        self.state = Reservation::None;
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{Layer, Service, ServiceExt};

    fn bucket(qps: f64, burst: u32) -> TokenBucket {
        TokenBucket::new(RateLimit { qps, burst }).expect("a limit")
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_goes_at_once_then_requests_follow_at_the_rate() {
        let bucket = bucket(10.0, 3);
        let waits: Vec<Duration> = (0..5).map(|_| bucket.reserve()).collect();
        let ms: Vec<u128> = waits.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, vec![0, 0, 0, 100, 200]);
        // After a quiet second the bucket is full again, never fuller than the burst.
        tokio::time::advance(Duration::from_secs(10)).await;
        let ms: Vec<u128> = (0..4).map(|_| bucket.reserve().as_millis()).collect();
        assert_eq!(ms, vec![0, 0, 0, 100]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_service_sends_no_faster_than_the_limit() {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&sent);
        let service = tower::service_fn(move |_: ()| {
            record.lock().expect("log").push(Instant::now());
            async { Ok::<_, std::convert::Infallible>(()) }
        });
        let start = Instant::now();
        let mut throttled = ThrottleLayer(bucket(4.0, 2)).layer(service);
        for _ in 0..6 {
            throttled
                .ready()
                .await
                .expect("ready")
                .call(())
                .await
                .expect("call");
        }
        let offsets: Vec<u128> = sent
            .lock()
            .expect("log")
            .iter()
            .map(|t| t.duration_since(start).as_millis())
            .collect();
        assert_eq!(offsets, vec![0, 0, 250, 500, 750, 1000]);
    }

    #[test]
    fn no_positive_qps_means_no_limit() {
        for qps in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(TokenBucket::new(RateLimit { qps, burst: 10 }).is_none());
        }
    }
}
