//! The HTTP server: shared state, routes, and graceful shutdown.
//!
//! Routes only parse the HTTP envelope and hand over to [`pipeline::proxy`]
//! (proxy endpoints) or to `api` (analytics and admin). HTTP-generic layers
//! only: nothing of the business logic hides in middleware.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;
use tollgate_providers::ApiFormat;

use crate::api;
use crate::auth::{Authenticator, KeyHasher};
use crate::config::Config;
use crate::ledger::{LedgerDrain, LedgerWriter};
use crate::pipeline;
use crate::pricing::Pricing;
use crate::store::sqlite::SqliteStore;
use crate::store::KeyStore;

/// Everything a request needs, shared by all requests.
pub struct AppState {
    pub config: Arc<Config>,
    pub auth: Authenticator,
    pub store: Arc<SqliteStore>,
    pub ledger: LedgerWriter,
    pub pricing: Pricing,
    pub http: reqwest::Client,
    pub tasks: TaskTracker,
    pub observer: Arc<crate::observe::Observer>,
    pub empty_tags: BTreeMap<String, String>,
}

/// A built gateway: its state and the handle that drains the ledger on shutdown.
pub struct Gateway {
    pub state: Arc<AppState>,
    drain: LedgerDrain,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("cannot build the upstream HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Refused(String),
}

pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_idle_timeout(std::time::Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .connect_timeout(std::time::Duration::from_secs(10))
        .user_agent(concat!("tollgate/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// The key hasher for this database: the configured secret, else one kept in the database.
pub fn key_hasher(config: &Config, store: &dyn KeyStore) -> Result<KeyHasher, crate::store::StoreError> {
    Ok(match &config.server.key_secret {
        Some(s) => KeyHasher::new(s.expose().as_bytes()),
        None => KeyHasher::new(&store.key_hash_secret()?),
    })
}

impl Gateway {
    pub fn build(config: Config, store: Arc<SqliteStore>) -> Result<Gateway, StartError> {
        let admin_open = config.server.admin_token.is_none();
        if admin_open && !config.server.listen.ip().is_loopback() {
            return Err(StartError::Refused(format!(
                "refusing to listen on {} with an unauthenticated admin API: set {} (server.admin_token_env)",
                config.server.listen, "TOLLGATE_ADMIN_TOKEN"
            )));
        }
        let hasher = key_hasher(&config, store.as_ref())?;
        let spool = config.ledger.clone().unwrap_or_else(|| crate::ledger::SpoolConfig::beside(store.path()));
        let (ledger, drain) = LedgerWriter::start(store.clone(), spool)?;
        let auth = Authenticator::new(store.clone(), hasher, config.server.auth);
        std::thread::spawn(crate::metering::warm_up);
        let pricing = match &config.prices {
            Some(extra) => Pricing::new(tollgate_pricing::Catalog::builtin().merged(extra)),
            None => Pricing::builtin(),
        };
        let state = AppState {
            config: Arc::new(config),
            auth,
            store,
            ledger,
            pricing,
            http: http_client()?,
            tasks: TaskTracker::new(),
            observer: Arc::new(crate::observe::Observer::new()),
            empty_tags: BTreeMap::new(),
        };
        Ok(Gateway { state: Arc::new(state), drain })
    }

    pub fn router(&self) -> Router {
        router(self.state.clone())
    }

    /// Serves until `shutdown` resolves, then stops accepting, finishes every
    /// request in flight and drains the ledger.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        use axum::serve::ListenerExt;
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let app = self.router();
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(shutdown)
            .await?;
        self.shutdown().await;
        Ok(())
    }

    /// Waits for in-flight requests (streams included), then drains the ledger.
    pub async fn shutdown(self) {
        let Gateway { state, drain } = self;
        state.tasks.close();
        state.tasks.wait().await;
        drop(state);
        // The writer thread exits once every `LedgerWriter` clone is gone.
        let _ = tokio::task::spawn_blocking(move || drain.wait()).await;
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/responses", post(responses))
        .route("/v1/messages", post(messages))
        .route("/v1/models", get(api::models))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ready" }))
        .route("/metrics", get(metrics))
        .merge(api::routes())
        .merge(crate::dashboard::routes())
        .merge(crate::observe::routes())
        .fallback(not_found)
        .with_state(state)
}

async fn chat(State(s): State<Arc<AppState>>, req: Request<Body>) -> Response {
    pipeline::proxy(s, ApiFormat::OpenAiChat, req).await
}

async fn embeddings(State(s): State<Arc<AppState>>, req: Request<Body>) -> Response {
    pipeline::proxy(s, ApiFormat::OpenAiEmbeddings, req).await
}

async fn responses(State(s): State<Arc<AppState>>, req: Request<Body>) -> Response {
    pipeline::proxy(s, ApiFormat::OpenAiResponses, req).await
}

async fn messages(State(s): State<Arc<AppState>>, req: Request<Body>) -> Response {
    pipeline::proxy(s, ApiFormat::AnthropicMessages, req).await
}

async fn metrics(State(s): State<Arc<AppState>>) -> Response {
    let text = s.observer.render(s.ledger.backlog_bytes());
    ([(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn not_found(headers: HeaderMap, uri: axum::http::Uri) -> Response {
    let shape = if headers.contains_key("anthropic-version") {
        crate::error::ErrorShape::Anthropic
    } else {
        crate::error::ErrorShape::OpenAi
    };
    crate::error::ApiError::invalid(format!("no such endpoint: {}", uri.path())).into_response_for(shape)
}
