//! Shared set-up for the integration tests: stores on both backends, imports of the real data
//! files in `../shared/data`, and a server on an ephemeral port.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use opencity_api::graphql::ApiState;
use opencity_api::limits::Limits;
use opencity_api::import::{write_tickets, ImportSummary};
use opencity_domain::access::Role;
use opencity_domain::TicketServices;
use opencity_fixtures::import::{parse_file, ImportFormat};
use opencity_projections::runner::ReadModel;
use opencity_store::Store;

/// Returns the path of a third-party data file; tests read them in place, never copy them.
pub fn shared_data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data").join(name)
}

pub fn services() -> TicketServices {
    let catalogue = opencity_fixtures::sla::default_catalogue().expect("default SLA catalogue loads");
    TicketServices { sla: Arc::new(catalogue) }
}

/// Imports a real data file; panics if the file has whole-file errors.
pub async fn import(store: &Store, services: &TicketServices, format: ImportFormat, name: &str) -> ImportSummary {
    let bytes = std::fs::read(shared_data(name)).expect("shared data file is readable");
    let mut parsed = parse_file(format, &bytes).expect("file parses");
    parsed.fit_to_catalogue(&services.sla);
    let mut summary = write_tickets(store, services, parsed.tickets, "import").await.expect("import writes");
    summary.rejected += parsed.errors.len();
    summary
}

/// Opens the read model and applies the whole log.
pub async fn projected(store: &Store) -> Arc<ReadModel> {
    let read_model = ReadModel::open(store.clone()).await.expect("read model opens");
    read_model.catch_up().await.expect("projections catch up");
    read_model
}

/// Creates an administrator token in `store` and returns its secret.
pub async fn admin_token(store: &Store) -> String {
    let issued = store.create_token(Role::Admin, "tests", None, None).await.expect("token created");
    issued.secret
}

/// Returns an HTTP client that sends `token` as a bearer token with every request.
pub fn authorized_client(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let value = format!("Bearer {token}").parse().expect("header value");
    headers.insert(reqwest::header::AUTHORIZATION, value);
    reqwest::Client::builder().default_headers(headers).build().expect("HTTP client")
}

/// A running server on 127.0.0.1 with an ephemeral port.
pub struct TestServer {
    pub base_url: String,
    pub read_model: Arc<ReadModel>,
    /// Secret of an administrator token in the server's store.
    pub token: String,
    shutdown: tokio::sync::watch::Sender<bool>,
}

impl TestServer {
    pub async fn start(store: Store, services: TicketServices) -> TestServer {
        TestServer::start_with_limits(store, services, Limits::default()).await
    }

    /// Starts a server whose per-token limits are `limits`.
    pub async fn start_with_limits(store: Store, services: TicketServices, limits: Limits) -> TestServer {
        let token = admin_token(&store).await;
        let read_model = projected(&store).await;
        let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(read_model.clone().run(shutdown_rx));
        let state = ApiState { store, services, read_model: read_model.clone() };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a free port");
        let address = listener.local_addr().expect("local address");
        tokio::spawn(async move {
            axum_serve(listener, state, limits).await;
        });
        TestServer { base_url: format!("http://{address}"), read_model, token, shutdown }
    }

    pub fn graphql_url(&self) -> String {
        format!("{}/graphql", self.base_url)
    }

    pub fn ws_url(&self) -> String {
        format!("{}/graphql/ws", self.base_url.replace("http://", "ws://"))
    }

    /// Returns an HTTP client that sends the administrator token with every request.
    pub fn client(&self) -> reqwest::Client {
        authorized_client(&self.token)
    }

    /// Posts a GraphQL request and returns the whole JSON response.
    pub async fn graphql(&self, query: &str, variables: serde_json::Value) -> serde_json::Value {
        let response = self
            .client()
            .post(self.graphql_url())
            .json(&serde_json::json!({ "query": query, "variables": variables }))
            .send()
            .await
            .expect("server answers");
        response.json().await.expect("response is JSON")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

async fn axum_serve(listener: tokio::net::TcpListener, state: ApiState, limits: Limits) {
    let router = opencity_api::app::router_with_limits(state, limits);
    if let Err(error) = axum_server(listener, router).await {
        eprintln!("test server stopped: {error}");
    }
}

async fn axum_server(listener: tokio::net::TcpListener, router: axum::Router) -> std::io::Result<()> {
    axum::serve(listener, router).await
}
