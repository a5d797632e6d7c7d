//! Per-token limits: a request rate (token bucket) and a number of open subscription sockets.
//!
//! Both are kept in the memory of one server, so with several servers behind a balancer each
//! enforces its own share. Rejections carry a Russian message and a stable code.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use uuid::Uuid;

/// Code of a request over the token's rate.
pub const RATE_LIMITED: &str = "RATE_LIMITED";
/// Code of a subscription socket over the token's number.
pub const TOO_MANY_CONNECTIONS: &str = "TOO_MANY_CONNECTIONS";

/// The limits of each token.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    /// Requests per second a token may keep up; 0 turns the rate limit off.
    pub requests_per_second: u32,
    /// Requests a token may send at once before the rate applies.
    pub burst: u32,
    /// Open subscription sockets per token; 0 turns the limit off.
    pub connections_per_token: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { requests_per_second: 50, burst: 200, connections_per_token: 20 }
    }
}

/// A token's bucket: requests left and when it was last refilled.
struct Bucket {
    tokens: f64,
    refilled_at: Instant,
}

/// The state of every token's limits in this server.
pub struct Limiter {
    limits: Limits,
    buckets: Mutex<HashMap<Uuid, Bucket>>,
    connections: Mutex<HashMap<Uuid, u32>>,
}

/// A request the limits reject.
#[derive(Debug, PartialEq)]
pub enum LimitExceeded {
    /// The token sent too many requests; it may retry after this time.
    Rate { retry_after: Duration },
    /// The token has the maximum of open subscription sockets.
    Connections { limit: u32 },
}

impl LimitExceeded {
    pub fn code(&self) -> &'static str {
        match self {
            LimitExceeded::Rate { .. } => RATE_LIMITED,
            LimitExceeded::Connections { .. } => TOO_MANY_CONNECTIONS,
        }
    }

    pub fn message(&self) -> String {
        match self {
            LimitExceeded::Rate { retry_after } => format!(
                "Слишком много запросов с этим токеном. Повторите через {} с или уменьшите частоту запросов.",
                retry_after.as_secs().max(1)
            ),
            LimitExceeded::Connections { limit } => format!(
                "С этим токеном уже открыто {limit} подписок (WebSocket) — это предел. Закройте ненужные \
                 соединения или объедините подписки в одном соединении."
            ),
        }
    }
}

impl LimitExceeded {
    /// Returns a short Russian reason, which fits a WebSocket close frame with the code.
    pub fn short_message(&self) -> &'static str {
        match self {
            LimitExceeded::Rate { .. } => "слишком много запросов с этим токеном",
            LimitExceeded::Connections { .. } => "у токена открыто предельное число подписок",
        }
    }
}

impl IntoResponse for LimitExceeded {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "data": null,
            "errors": [{ "message": self.message(), "extensions": { "code": self.code() } }],
        });
        let mut response = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
        if let LimitExceeded::Rate { retry_after } = self {
            let seconds = retry_after.as_secs().max(1).to_string();
            if let Ok(value) = HeaderValue::from_str(&seconds) {
                response.headers_mut().insert(RETRY_AFTER, value);
            }
        }
        response
    }
}

impl Limiter {
    pub fn new(limits: Limits) -> Limiter {
        Limiter { limits, buckets: Mutex::new(HashMap::new()), connections: Mutex::new(HashMap::new()) }
    }

    /// Takes one request from the token's bucket, or returns how long to wait.
    pub fn check_rate(&self, token: Uuid) -> Result<(), LimitExceeded> {
        self.check_rate_at(token, Instant::now())
    }

    fn check_rate_at(&self, token: Uuid, now: Instant) -> Result<(), LimitExceeded> {
        let rate = f64::from(self.limits.requests_per_second);
        if rate == 0.0 {
            return Ok(());
        }
        let capacity = f64::from(self.limits.burst.max(1));
        let mut buckets = self.buckets.lock().expect("rate limiter lock");
        let bucket = buckets.entry(token).or_insert(Bucket { tokens: capacity, refilled_at: now });
        let elapsed = now.saturating_duration_since(bucket.refilled_at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(capacity);
        bucket.refilled_at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let retry_after = Duration::from_secs_f64((1.0 - bucket.tokens) / rate);
        Err(LimitExceeded::Rate { retry_after })
    }

    /// Counts one more open socket of the token until the returned guard is dropped.
    pub fn open_connection(self: &Arc<Self>, token: Uuid) -> Result<ConnectionGuard, LimitExceeded> {
        let limit = self.limits.connections_per_token;
        let mut connections = self.connections.lock().expect("connection counter lock");
        let open = connections.entry(token).or_insert(0);
        if limit != 0 && *open >= limit {
            return Err(LimitExceeded::Connections { limit });
        }
        *open += 1;
        Ok(ConnectionGuard { limiter: self.clone(), token })
    }
}

/// One open subscription socket of a token; dropping it frees the place.
pub struct ConnectionGuard {
    limiter: Arc<Limiter>,
    token: Uuid,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let mut connections = self.limiter.connections.lock().expect("connection counter lock");
        if let Some(open) = connections.get_mut(&self.token) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                connections.remove(&self.token);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_refills() {
        let limiter = Limiter::new(Limits { requests_per_second: 2, burst: 3, connections_per_token: 0 });
        let token = Uuid::new_v4();
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.check_rate_at(token, start), Ok(()));
        }
        let rejected = limiter.check_rate_at(token, start).expect_err("over the burst");
        assert!(matches!(rejected, LimitExceeded::Rate { retry_after } if retry_after <= Duration::from_millis(500)));

        // Half a second later one request is back, and another token has its own bucket.
        assert_eq!(limiter.check_rate_at(token, start + Duration::from_millis(500)), Ok(()));
        assert_eq!(limiter.check_rate_at(Uuid::new_v4(), start), Ok(()));
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let limiter = Limiter::new(Limits { requests_per_second: 0, burst: 0, connections_per_token: 0 });
        let token = Uuid::new_v4();
        let now = Instant::now();
        assert!((0..10_000).all(|_| limiter.check_rate_at(token, now).is_ok()));
    }

    #[test]
    fn connections_are_counted_until_dropped() {
        let limiter = Arc::new(Limiter::new(Limits { requests_per_second: 0, burst: 0, connections_per_token: 2 }));
        let token = Uuid::new_v4();
        let first = limiter.open_connection(token).expect("first");
        let _second = limiter.open_connection(token).expect("second");
        assert_eq!(limiter.open_connection(token).err(), Some(LimitExceeded::Connections { limit: 2 }));
        drop(first);
        assert!(limiter.open_connection(token).is_ok());
    }
}
