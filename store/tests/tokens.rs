//! API tokens on both backends: only the secret's hash is stored, and revoked or expired
//! tokens do not authenticate.

mod common;

use chrono::{Duration, Utc};
use opencity_domain::access::Role;
use opencity_store::tokens::{secret_hash, TokenError, TokenRejection};
use opencity_store::{BackendKind, DbPool, Store};

use common::TestStore;

#[tokio::test]
async fn sqlite_tokens_authenticate_until_revoked() {
    let test = TestStore::open(BackendKind::Sqlite).await;
    tokens_authenticate_until_revoked(&test.store).await;
    test.cleanup().await;
}

#[tokio::test]
async fn postgres_tokens_authenticate_until_revoked() {
    let test = TestStore::open(BackendKind::Postgres).await;
    tokens_authenticate_until_revoked(&test.store).await;
    test.cleanup().await;
}

async fn stored_hashes(store: &Store) -> Vec<String> {
    match store.pool() {
        DbPool::Postgres(pool) => sqlx::query_scalar("SELECT secret_hash FROM api_tokens").fetch_all(pool).await,
        DbPool::Sqlite(pool) => sqlx::query_scalar("SELECT secret_hash FROM api_tokens").fetch_all(pool).await,
    }
    .expect("token hashes")
}

async fn tokens_authenticate_until_revoked(store: &Store) {
    let now = Utc::now();
    let resident = store
        .create_token(Role::Resident, "resident-17", Some("мобильное приложение"), None)
        .await
        .expect("resident token");
    let expiring = store
        .create_token(Role::Contractor, "contractor-3", None, Some(now + Duration::days(1)))
        .await
        .expect("contractor token");

    // The secret itself is nowhere in the table, only its hash.
    let hashes = stored_hashes(store).await;
    assert_eq!(hashes.len(), 2);
    assert!(hashes.contains(&secret_hash(&resident.secret)));
    assert!(!hashes.iter().any(|hash| hash.contains(&resident.secret[3..])));

    let found = store.authenticate_token(&resident.secret, now).await.expect("lookup");
    let record = found.expect("resident token in force");
    assert_eq!(record.role, Role::Resident);
    assert_eq!(record.subject, "resident-17");
    assert_eq!(record.label.as_deref(), Some("мобильное приложение"));

    let later = now + Duration::days(2);
    let expired = store.authenticate_token(&expiring.secret, later).await.expect("lookup");
    assert_eq!(expired, Err(TokenRejection::Expired));

    let unknown = format!("oc_{}", "0".repeat(64));
    assert_eq!(store.authenticate_token(&unknown, now).await.expect("lookup"), Err(TokenRejection::Unknown));
    assert_eq!(store.authenticate_token("not a token", now).await.expect("lookup"), Err(TokenRejection::Unknown));

    assert!(store.revoke_token(resident.record.id, now).await.expect("revoke"));
    let revoked = store.authenticate_token(&resident.secret, now).await.expect("lookup");
    assert_eq!(revoked, Err(TokenRejection::Revoked));

    let listed = store.list_tokens().await.expect("list");
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().any(|token| token.id == resident.record.id && token.revoked_at.is_some()));
}

#[tokio::test]
async fn invalid_token_requests_are_rejected() {
    let test = TestStore::open(BackendKind::Sqlite).await;
    let store = &test.store;
    let empty = store.create_token(Role::Admin, "  ", None, None).await;
    assert!(matches!(empty, Err(TokenError::InvalidSubject)), "{empty:?}");
    let past = store.create_token(Role::Admin, "admin", None, Some(Utc::now() - Duration::hours(1))).await;
    assert!(matches!(past, Err(TokenError::ExpiresInPast)), "{past:?}");
    assert!(store.list_tokens().await.expect("list").is_empty());
    test.cleanup().await;
}
