//! The axum router and server start-up.

use std::net::SocketAddr;
use std::sync::Arc;

use async_graphql::http::{GraphiQLSource, ALL_WEBSOCKET_PROTOCOLS};
use async_graphql::parser::types::{DocumentOperations, OperationType};
use async_graphql::ParseRequestError;
use async_graphql_axum::{GraphQLProtocol, GraphQLRequest, GraphQLResponse, GraphQLWebSocket};
use axum::extract::{FromRequestParts, State, WebSocketUpgrade};
use axum::http::request::Parts;
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Json, Router};
use opencity_domain::TicketServices;
use opencity_projections::runner::ReadModel;
use opencity_store::Store;
use tokio::sync::watch;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;

use crate::auth::{self, Principal, TokenCache};
use crate::limits::{Limiter, Limits};
use crate::graphql::localize::{localize_errors, PARSE_FAILED};
use crate::graphql::{build_schema, ApiState, HeaderIdempotencyKey, OpenCitySchema, MAX_IDEMPOTENCY_KEY_BYTES};

/// State of the HTTP routes.
#[derive(Clone)]
struct AppState {
    api: ApiState,
    schema: OpenCitySchema,
    tokens: Arc<TokenCache>,
    limiter: Arc<Limiter>,
}

/// The principal of a request whose `Authorization` header carries a token in force. As an
/// extractor it runs before the body is read, so an unauthenticated request learns nothing
/// about the schema.
struct Authenticated(Principal);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = axum::response::Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(AUTHORIZATION).map(HeaderValue::as_bytes);
        let principal = state
            .tokens
            .authenticate(&state.api.store, header)
            .await
            .map_err(IntoResponse::into_response)?;
        state.limiter.check_rate(principal.token_id).map_err(|exceeded| {
            tracing::info!(token = %principal.token_id, code = exceeded.code(), "request rejected by a limit");
            exceeded.into_response()
        })?;
        Ok(Authenticated(principal))
    }
}

/// Maximum size of a request body, in bytes.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Builds the router with the default per-token limits.
pub fn router(state: ApiState) -> Router {
    router_with_limits(state, Limits::default())
}

/// Builds the router: GraphQL over HTTP and WebSocket at `/graphql`, GraphiQL on GET, health.
pub fn router_with_limits(state: ApiState, limits: Limits) -> Router {
    let schema = build_schema(state.clone());
    Router::new()
        .route(
            "/graphql",
            get(graphiql).post(graphql_handler),
        )
        .route("/graphql/ws", get(graphql_ws))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(AppState {
            api: state,
            schema,
            tokens: Arc::new(TokenCache::default()),
            limiter: Arc::new(Limiter::new(limits)),
        })
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(TraceLayer::new_for_http())
}

/// The HTTP header that carries a mutation's idempotency key.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// Read buffer of a subscription socket, in bytes. tungstenite zero-fills its whole read buffer
/// on every read attempt, and a subscription socket is polled for reading each time it sends an
/// event. With axum's default of 128 KiB that was a 128 KiB memset per subscriber and event,
/// measured at a third of the server's CPU time with 1,000 subscribers. Clients send only small
/// control messages, and a larger one still arrives over several reads.
const WS_READ_BUFFER_BYTES: usize = 4 * 1024;

/// Upgrades `/graphql/ws` to a GraphQL WebSocket (`graphql-transport-ws` or `graphql-ws`).
/// The token comes in the upgrade request's `Authorization` header or in the
/// `connection_init` payload; without a valid one no subscription starts.
async fn graphql_ws(
    State(state): State<AppState>,
    headers: HeaderMap,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> axum::response::Response {
    let from_header = match headers.get(AUTHORIZATION) {
        Some(value) => match state.tokens.authenticate(&state.api.store, Some(value.as_bytes())).await {
            Ok(principal) => match state.limiter.open_connection(principal.token_id) {
                Ok(guard) => Some((principal, guard)),
                Err(exceeded) => {
                    tracing::info!(token = %principal.token_id, code = exceeded.code(), "subscription socket rejected by a limit");
                    return exceeded.into_response();
                }
            },
            Err(failure) => return failure.into_response(),
        },
        None => None,
    };
    let store = state.api.store.clone();
    let tokens = state.tokens.clone();
    let limiter = state.limiter.clone();
    upgrade
        .read_buffer_size(WS_READ_BUFFER_BYTES)
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |stream| {
            GraphQLWebSocket::new(stream, state.schema, protocol)
                .on_connection_init(move |payload| auth::authenticate_connection_init(tokens, limiter, store, from_header, payload))
                .serve()
        })
}

/// Executes a GraphQL request over HTTP; library errors are localized before they leave.
async fn graphql_handler(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    headers: HeaderMap,
    request: GraphQLRequest<MalformedRequest>,
) -> axum::response::Response {
    let mut request = request.into_inner().data(principal);
    if let Some(value) = headers.get(IDEMPOTENCY_KEY_HEADER) {
        match header_idempotency_key(value, &request) {
            Ok(Some(key)) => request = request.data(HeaderIdempotencyKey(key)),
            Ok(None) => {}
            Err((code, message)) => return request_error(StatusCode::BAD_REQUEST, code, message),
        }
    }
    let mut response = state.schema.execute(request).await;
    localize_errors(&mut response.errors);
    GraphQLResponse::from(response).into_response()
}

/// Reads the `Idempotency-Key` header. It applies to a request with exactly one mutation field;
/// on queries it is ignored, since they change nothing. A request the parser rejects is left
/// for the schema to report.
fn header_idempotency_key(
    value: &HeaderValue,
    request: &async_graphql::Request,
) -> Result<Option<String>, (&'static str, String)> {
    let invalid = || {
        (
            "IDEMPOTENCY_KEY_INVALID",
            format!(
                "Заголовок Idempotency-Key должен содержать от 1 до {MAX_IDEMPOTENCY_KEY_BYTES} \
                 печатных символов ASCII. Используйте, например, UUID запроса."
            ),
        )
    };
    let key = value.to_str().map_err(|_| invalid())?.trim();
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_BYTES {
        return Err(invalid());
    }
    let Ok(document) = async_graphql::parser::parse_query(&request.query) else {
        return Ok(None);
    };
    let operation = match (&document.operations, request.operation_name.as_deref()) {
        (DocumentOperations::Single(operation), _) => Some(&operation.node),
        (DocumentOperations::Multiple(operations), Some(name)) => {
            operations.get(name).map(|operation| &operation.node)
        }
        (DocumentOperations::Multiple(_), None) => None,
    };
    let Some(operation) = operation else {
        return Ok(None);
    };
    if operation.ty != OperationType::Mutation {
        return Ok(None);
    }
    if operation.selection_set.node.items.len() != 1 {
        return Err((
            "IDEMPOTENCY_KEY_AMBIGUOUS",
            "Заголовок Idempotency-Key относится к одной мутации, а в запросе их несколько. \
             Отправьте мутации отдельными запросами или передайте каждой свой аргумент idempotencyKey."
                .to_string(),
        ));
    }
    Ok(Some(key.to_string()))
}

/// Builds the response to a request rejected before execution, in the GraphQL response shape.
fn request_error(status: StatusCode, code: &str, message: String) -> axum::response::Response {
    let body = serde_json::json!({
        "data": null,
        "errors": [{ "message": message, "extensions": { "code": code } }],
    });
    (status, Json(body)).into_response()
}

/// A body that is not a GraphQL request: a Russian error with a code replaces the library's
/// plain-text rejection.
struct MalformedRequest(ParseRequestError);

impl From<ParseRequestError> for MalformedRequest {
    fn from(error: ParseRequestError) -> Self {
        MalformedRequest(error)
    }
}

impl IntoResponse for MalformedRequest {
    fn into_response(self) -> axum::response::Response {
        let (status, code, message) = match &self.0 {
            ParseRequestError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                format!("Тело запроса больше {MAX_BODY_BYTES} байт. Уменьшите запрос или разбейте его на несколько."),
            ),
            other => (
                StatusCode::BAD_REQUEST,
                PARSE_FAILED,
                format!(
                    "Тело запроса не является запросом GraphQL ({other}). Отправьте JSON вида \
                     {{\"query\": \"{{ ... }}\", \"variables\": {{}}}} с заголовком Content-Type: application/json."
                ),
            ),
        };
        tracing::debug!(error = %self.0, "malformed GraphQL request body");
        request_error(status, code, message)
    }
}

async fn graphiql() -> Html<String> {
    Html(
        GraphiQLSource::build()
            .endpoint("/graphql")
            .subscription_endpoint("/graphql/ws")
            .title("Открытый город — GraphQL")
            .finish(),
    )
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(AppState { api: state, .. }): State<AppState>) -> impl IntoResponse {
    // While the database refuses connections, the store's pool keeps reconnecting until its
    // acquire timeout runs out, but a readiness probe must get its response sooner.
    const STORE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
    match tokio::time::timeout(STORE_TIMEOUT, state.store.last_position()).await {
        Ok(Ok(head)) => {
            let checkpoint = state.read_model.checkpoint();
            (
                StatusCode::OK,
                Json(serde_json::json!({
                    "status": "ready",
                    "logHead": head,
                    "projectedPosition": checkpoint.position,
                    "projectionLeader": state.read_model.is_leader(),
                    "readModelGeneration": state.read_model.generation(),
                })),
            )
        }
        Ok(Err(error)) => {
            tracing::error!(error.cause_chain = ?error, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({ "status": "not_ready", "reason": "хранилище событий недоступно" })),
            )
        }
        Err(_) => {
            tracing::error!(
                timeout_seconds = STORE_TIMEOUT.as_secs(),
                "readiness check failed: the event store did not answer in time"
            );
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({
                    "status": "not_ready",
                    "reason": "хранилище событий не ответило за 2 секунды",
                })),
            )
        }
    }
}

/// Resolves on Ctrl-C (SIGINT) or, on Unix, SIGTERM, which service managers send.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "listening for Ctrl-C failed");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "listening for SIGTERM failed");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
    tracing::info!("shutdown requested");
}

/// Options of [`serve`].
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    /// Period of the deadline watcher; zero turns it off.
    pub deadline_check_interval: std::time::Duration,
    pub limits: Limits,
}

/// Starts the projection runner and the deadline watcher, and serves HTTP until Ctrl-C or
/// SIGTERM.
pub async fn serve(store: Store, services: TicketServices, read_model: Arc<ReadModel>, options: ServeOptions) -> anyhow::Result<()> {
    let listen = options.listen;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let runner = tokio::spawn(read_model.clone().run(shutdown_rx.clone()));
    let watcher = tokio::spawn(crate::deadlines::watch_deadlines(
        store.clone(),
        services.clone(),
        read_model.clone(),
        options.deadline_check_interval,
        shutdown_rx,
    ));

    let state = ApiState { store, services, read_model };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|error| anyhow::anyhow!("не удалось открыть адрес {listen}: {error}"))?;
    let local = listener.local_addr()?;
    tracing::info!(address = %local, "server listening");
    println!("Сервер запущен: http://{local}/graphql (GraphiQL в браузере), проверка: http://{local}/healthz");

    axum::serve(listener, router_with_limits(state, options.limits))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    let _ = shutdown_tx.send(true);
    let _ = runner.await;
    let _ = watcher.await;
    Ok(())
}
