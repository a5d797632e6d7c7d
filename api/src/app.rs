//! The axum router and server start-up.

use std::net::SocketAddr;
use std::sync::Arc;

use async_graphql::http::GraphiQLSource;
use async_graphql::ParseRequestError;
use async_graphql_axum::{GraphQLRequest, GraphQLResponse, GraphQLSubscription};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Json, Router};
use opencity_domain::TicketServices;
use opencity_projections::runner::ReadModel;
use opencity_store::Store;
use tokio::sync::watch;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;

use crate::graphql::localize::{localize_errors, PARSE_FAILED};
use crate::graphql::{build_schema, ApiState, OpenCitySchema};

/// State of the HTTP routes.
#[derive(Clone)]
struct AppState {
    api: ApiState,
    schema: OpenCitySchema,
}

/// Maximum size of a request body, in bytes.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Builds the router: GraphQL over HTTP and WebSocket at `/graphql`, GraphiQL on GET, health.
pub fn router(state: ApiState) -> Router {
    let schema = build_schema(state.clone());
    Router::new()
        .route(
            "/graphql",
            get(graphiql).post(graphql_handler),
        )
        .route_service("/graphql/ws", GraphQLSubscription::new(schema.clone()))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(AppState { api: state, schema })
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(TraceLayer::new_for_http())
}

/// Executes a GraphQL request over HTTP; library errors are localized before they leave.
async fn graphql_handler(
    State(state): State<AppState>,
    request: GraphQLRequest<MalformedRequest>,
) -> GraphQLResponse {
    let mut response = state.schema.execute(request.into_inner()).await;
    localize_errors(&mut response.errors);
    response.into()
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
        let body = serde_json::json!({
            "data": null,
            "errors": [{ "message": message, "extensions": { "code": code } }],
        });
        (status, Json(body)).into_response()
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
    match state.store.last_position().await {
        Ok(head) => {
            let checkpoint = state.read_model.checkpoint();
            (
                StatusCode::OK,
                Json(serde_json::json!({
                    "status": "ready",
                    "logHead": head,
                    "projectedPosition": checkpoint.position,
                })),
            )
        }
        Err(error) => {
            tracing::error!(error.cause_chain = ?error, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({ "status": "not_ready", "reason": "хранилище событий недоступно" })),
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

/// Starts the projection runner and serves HTTP until Ctrl-C or SIGTERM.
pub async fn serve(store: Store, services: TicketServices, read_model: Arc<ReadModel>, listen: SocketAddr) -> anyhow::Result<()> {
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let runner = tokio::spawn(read_model.clone().run(shutdown_rx));

    let state = ApiState { store, services, read_model };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|error| anyhow::anyhow!("не удалось открыть адрес {listen}: {error}"))?;
    let local = listener.local_addr()?;
    tracing::info!(address = %local, "server listening");
    println!("Сервер запущен: http://{local}/graphql (GraphiQL в браузере), проверка: http://{local}/healthz");

    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    let _ = shutdown_tx.send(true);
    let _ = runner.await;
    Ok(())
}
