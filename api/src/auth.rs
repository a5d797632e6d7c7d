//! Bearer-token authentication of GraphQL requests over HTTP and WebSocket.
//!
//! Every request to `/graphql` (except the GraphiQL page) and every WebSocket subscription
//! carries a token created by `opencity tokens create`: in the `Authorization: Bearer` header,
//! or for browsers, which cannot set headers on a WebSocket, in the `connection_init` payload
//! (`{"Authorization": "Bearer <секрет>"}`). The authenticated [`Principal`] is put into the
//! GraphQL request data, and mutations write its subject and role into the events' metadata.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_graphql::Data;
use axum::http::header::WWW_AUTHENTICATE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use opencity_domain::access::Role;
use opencity_store::tokens::{is_well_formed, secret_hash, TokenRejection};
use opencity_store::{Store, StoreError};

use crate::limits::{ConnectionGuard, Limiter};
use uuid::Uuid;

/// The sender of a request: the token's id, role and subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub token_id: Uuid,
    pub role: Role,
    pub subject: String,
}

/// The reason a request is not authenticated.
#[derive(Debug)]
pub enum AuthFailure {
    /// No `Authorization` header and no token in `connection_init`.
    Missing,
    /// A header that is not `Bearer <secret>`.
    Malformed,
    /// No token has this secret.
    Unknown,
    Revoked,
    Expired,
    /// The token table cannot be read.
    Unavailable(StoreError),
}

impl AuthFailure {
    /// Returns the stable error code clients match on.
    pub fn code(&self) -> &'static str {
        match self {
            AuthFailure::Missing => "UNAUTHENTICATED",
            AuthFailure::Malformed => "AUTHORIZATION_MALFORMED",
            AuthFailure::Unknown => "TOKEN_INVALID",
            AuthFailure::Revoked => "TOKEN_REVOKED",
            AuthFailure::Expired => "TOKEN_EXPIRED",
            AuthFailure::Unavailable(_) => "STORE_UNAVAILABLE",
        }
    }

    /// Returns the Russian message with what to do next.
    pub fn message(&self) -> String {
        match self {
            AuthFailure::Missing => "Нужен токен доступа: передайте его в заголовке «Authorization: Bearer <секрет>». \
                 Токен выпускает администратор командой opencity tokens create."
                .to_string(),
            AuthFailure::Malformed => "Заголовок Authorization должен иметь вид «Bearer <секрет>», где секрет начинается с oc_. \
                 Проверьте, что токен скопирован целиком."
                .to_string(),
            AuthFailure::Unknown => "Токен не найден: проверьте, что он скопирован целиком, или попросите администратора выпустить новый."
                .to_string(),
            AuthFailure::Revoked => "Токен отозван администратором. Попросите выпустить новый.".to_string(),
            AuthFailure::Expired => "Срок действия токена истёк. Попросите администратора выпустить новый.".to_string(),
            AuthFailure::Unavailable(_) => "Хранилище недоступно, токен не проверен. Повторите запрос позже.".to_string(),
        }
    }

    /// Returns a short Russian reason, which fits a WebSocket close frame with the code.
    pub fn short_message(&self) -> &'static str {
        match self {
            AuthFailure::Missing => "нужен токен доступа",
            AuthFailure::Malformed => "токен должен иметь вид Bearer oc_…",
            AuthFailure::Unknown => "токен не найден",
            AuthFailure::Revoked => "токен отозван",
            AuthFailure::Expired => "срок действия токена истёк",
            AuthFailure::Unavailable(_) => "хранилище недоступно, повторите позже",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            AuthFailure::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        }
    }
}

impl IntoResponse for AuthFailure {
    fn into_response(self) -> Response {
        if let AuthFailure::Unavailable(error) = &self {
            tracing::warn!(%error, "token check failed: store unavailable");
        }
        let body = serde_json::json!({
            "data": null,
            "errors": [{ "message": self.message(), "extensions": { "code": self.code() } }],
        });
        let mut response = (self.status(), Json(body)).into_response();
        if self.status() == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"opencity\""));
        }
        response
    }
}

/// How long a verified token is trusted without asking the store again. Revocation and expiry
/// take effect within this time, and requests keep working through a short database outage.
pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(30);

/// Verified tokens at most: the cache is cleared when it is full.
const TOKEN_CACHE_CAPACITY: usize = 10_000;

/// Tokens verified recently, by the hash of their secret.
#[derive(Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<String, (Principal, Instant)>>,
}

impl TokenCache {
    /// Authenticates the value of an `Authorization` header (or of the same key in a WebSocket
    /// `connection_init` payload); `None` means it is absent.
    pub async fn authenticate(&self, store: &Store, authorization: Option<&[u8]>) -> Result<Principal, AuthFailure> {
        let secret = bearer_secret(authorization)?;
        let hash = secret_hash(secret);
        if let Some(principal) = self.cached(&hash) {
            return Ok(principal);
        }
        let principal = match store.authenticate_token(secret, Utc::now()).await {
            Ok(Ok(record)) => Principal { token_id: record.id, role: record.role, subject: record.subject },
            Ok(Err(TokenRejection::Unknown)) => return Err(AuthFailure::Unknown),
            Ok(Err(TokenRejection::Revoked)) => return Err(AuthFailure::Revoked),
            Ok(Err(TokenRejection::Expired)) => return Err(AuthFailure::Expired),
            Err(error) => return Err(AuthFailure::Unavailable(error)),
        };
        let mut entries = self.entries.lock().expect("token cache lock");
        if entries.len() >= TOKEN_CACHE_CAPACITY {
            entries.clear();
        }
        entries.insert(hash, (principal.clone(), Instant::now()));
        Ok(principal)
    }

    fn cached(&self, hash: &str) -> Option<Principal> {
        let entries = self.entries.lock().expect("token cache lock");
        let (principal, verified_at) = entries.get(hash)?;
        (verified_at.elapsed() < TOKEN_CACHE_TTL).then(|| principal.clone())
    }
}

/// Returns the secret of a `Bearer <secret>` value.
fn bearer_secret(authorization: Option<&[u8]>) -> Result<&str, AuthFailure> {
    let value = authorization.ok_or(AuthFailure::Missing)?;
    let value = std::str::from_utf8(value).map_err(|_| AuthFailure::Malformed)?.trim();
    let (scheme, secret) = value.split_once(' ').ok_or(AuthFailure::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthFailure::Malformed);
    }
    let secret = secret.trim();
    if !is_well_formed(secret) {
        return Err(AuthFailure::Malformed);
    }
    Ok(secret)
}

/// Authenticates a WebSocket's `connection_init` payload, unless the upgrade request already
/// carried a valid header. The key is matched without regard to case.
pub async fn authenticate_connection_init(
    tokens: Arc<TokenCache>,
    limiter: Arc<Limiter>,
    store: Store,
    from_header: Option<(Principal, ConnectionGuard)>,
    payload: serde_json::Value,
) -> async_graphql::Result<Data> {
    let (principal, guard) = match from_header {
        Some(authenticated) => authenticated,
        None => {
            let value = payload.as_object().and_then(|fields| {
                fields
                    .iter()
                    .find(|(key, _)| key.eq_ignore_ascii_case("authorization"))
                    .and_then(|(_, value)| value.as_str())
            });
            let principal = tokens.authenticate(&store, value.map(str::as_bytes)).await.map_err(|failure| {
                tracing::info!(code = failure.code(), "subscription connection rejected");
                async_graphql::Error::new(close_reason(failure.code(), failure.short_message()))
            })?;
            let guard = limiter.open_connection(principal.token_id).map_err(|exceeded| {
                tracing::info!(token = %principal.token_id, code = exceeded.code(), "subscription socket rejected by a limit");
                async_graphql::Error::new(close_reason(exceeded.code(), exceeded.short_message()))
            })?;
            (principal, guard)
        }
    };
    // The guard lives as long as the connection's data, so the place is freed when it closes.
    let mut data = Data::default();
    data.insert(principal);
    data.insert(guard);
    Ok(data)
}

/// Maximum length of a WebSocket close frame's reason, in bytes (RFC 6455, section 5.5).
const MAX_CLOSE_REASON_BYTES: usize = 123;

/// Returns `CODE: reason`, cut at a character boundary to fit a close frame, where the
/// graphql-transport-ws protocol puts the error of `connection_init`.
fn close_reason(code: &str, reason: &str) -> String {
    let mut text = format!("{code}: {reason}");
    while text.len() > MAX_CLOSE_REASON_BYTES {
        text.pop();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use opencity_store::testing::temp_sqlite;

    #[tokio::test]
    async fn header_forms_are_checked() {
        let (_dir, config) = temp_sqlite();
        let store = Store::open(&config).await.expect("store");
        let issued = store.create_token(Role::Analyst, "Иванова", None, None).await.expect("token");

        let header = format!("Bearer {}", issued.secret);
        let tokens = TokenCache::default();
        let principal = tokens.authenticate(&store, Some(header.as_bytes())).await.expect("authenticated");
        assert_eq!(principal.role, Role::Analyst);
        assert_eq!(principal.subject, "Иванова");

        let lower = format!("bearer  {}", issued.secret);
        assert!(tokens.authenticate(&store, Some(lower.as_bytes())).await.is_ok());

        let cases: [(Option<&[u8]>, &str); 4] = [
            (None, "UNAUTHENTICATED"),
            (Some(issued.secret.as_bytes()), "AUTHORIZATION_MALFORMED"),
            (Some(b"Basic dXNlcjpwYXNz"), "AUTHORIZATION_MALFORMED"),
            (Some(b"Bearer oc_0000000000000000000000000000000000000000000000000000000000000000"), "TOKEN_INVALID"),
        ];
        for (header, code) in cases {
            let failure = tokens.authenticate(&store, header).await.expect_err("rejected");
            assert_eq!(failure.code(), code, "{header:?}");
        }
    }

    #[test]
    fn close_reasons_fit_a_frame() {
        let failures = [AuthFailure::Missing, AuthFailure::Malformed, AuthFailure::Unknown, AuthFailure::Revoked, AuthFailure::Expired];
        for failure in failures {
            let reason = close_reason(failure.code(), failure.short_message());
            assert!(reason.len() <= MAX_CLOSE_REASON_BYTES, "{reason}");
            assert!(reason.starts_with(failure.code()), "{reason}");
        }
        assert_eq!(close_reason("X", &"я".repeat(100)).len(), 123);
    }

    #[tokio::test]
    async fn revoked_token_is_rejected() {
        let (_dir, config) = temp_sqlite();
        let store = Store::open(&config).await.expect("store");
        let issued = store.create_token(Role::Admin, "admin", None, None).await.expect("token");
        assert!(store.revoke_token(issued.record.id, Utc::now()).await.expect("revoke"));
        assert!(!store.revoke_token(issued.record.id, Utc::now()).await.expect("revoke again"));

        let header = format!("Bearer {}", issued.secret);
        let failure = TokenCache::default().authenticate(&store, Some(header.as_bytes())).await.expect_err("rejected");
        assert_eq!(failure.code(), "TOKEN_REVOKED");
    }
}
