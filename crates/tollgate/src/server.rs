//! The HTTP server: shared state, routes, and graceful shutdown.
//!
//! Routes only parse the HTTP envelope and hand over to [`pipeline::proxy`]
//! (proxy endpoints) or to `api` (analytics and admin). HTTP-generic layers
//! only: nothing of the business logic hides in middleware.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;
use tollgate_providers::{ApiFormat, MediaEndpoint};

use crate::api;
use crate::auth::{Authenticator, KeyHasher};
use crate::budget::BudgetSpec;
use crate::config::Config;
use crate::govern::Governor;
use crate::ledger::{LedgerDrain, LedgerWriter};
use crate::pipeline;
use crate::pricing::Prices;
use crate::store::{KeyStore, Stores};

pub use crate::state::AppState;

/// A built gateway: its state and the handle that drains the ledger on shutdown.
pub struct Gateway {
    pub state: Arc<AppState>,
    drain: LedgerDrain,
    background: Vec<tokio::task::JoinHandle<()>>,
    /// `[usage_events]`: flushed after the ledger drains.
    usage_events: Option<crate::usage_events::UsageEvents>,
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

pub use crate::upstream::http_client;

/// The key hasher for this database: the configured secret, else one kept in the database.
pub async fn key_hasher(config: &Config, store: &dyn KeyStore) -> Result<KeyHasher, crate::store::StoreError> {
    Ok(match &config.server.key_secret {
        Some(s) => KeyHasher::new(s.expose().as_bytes()),
        None => KeyHasher::new(&store.key_hash_secret().await?),
    })
}

impl Gateway {
    pub async fn build(config: Config, stores: Stores) -> Result<Gateway, StartError> {
        // A configuration read from a file can be reloaded from it.
        let config_path = Some(std::path::PathBuf::from(&config.source)).filter(|p| p.is_file());
        let admin_open = config.server.admin_token.is_none() && config.admin_tokens.is_empty() && config.oidc.is_none();
        if admin_open && !config.server.listen.ip().is_loopback() {
            return Err(StartError::Refused(format!(
                "refusing to listen on {} with an unauthenticated admin API: set {} (server.admin_token_env), \
                 [[admin_tokens]] or [oidc] sign-in",
                config.server.listen, "TOLLGATE_ADMIN_TOKEN"
            )));
        }
        let hasher = key_hasher(&config, stores.keys.as_ref()).await?;
        let spool = match (&config.ledger, &stores.file) {
            (Some(s), _) => s.clone(),
            (None, Some(file)) => crate::ledger::SpoolConfig::beside(file),
            (None, None) => {
                return Err(StartError::Refused(
                    "[ledger] spool_dir is needed when the database is not a local file".into(),
                ))
            }
        };
        // Before the ledger starts, so rows replayed from the spool are streamed too.
        let usage_events = match &config.usage_events {
            Some(u) => Some(crate::usage_events::UsageEvents::start(
                u,
                crate::usage_events::source(config.server.listen),
                http_client()?,
            )),
            None => None,
        };
        let stores = match &usage_events {
            Some(u) => stores.with_usage_events(u.tap()),
            None => stores,
        };
        let (ledger, drain, recovered) = if config.ledger_enabled {
            LedgerWriter::start(stores.ledger.clone(), spool)?
        } else {
            tracing::warn!(
                "[ledger] enabled = false: requests are NOT recorded (no spend history, no reports); \
                 this setting exists only to measure the ledger's cost in benchmarks"
            );
            let (w, d) = LedgerWriter::disabled();
            (w, d, Default::default())
        };
        let interrupted = interrupted_rows(&stores, &recovered.intents).await?;
        // Cookies are signed with a key derived from the key-hash secret, never with it directly.
        let cookie_key = crate::session::CookieKey::new(&hasher.hash("tollgate session cookies v1"));
        let auth = Authenticator::new(stores.keys.clone(), hasher, config.server.auth);
        // Tokenizers load on first use (~60 MiB): most deployments never need them.
        if std::env::var_os("TOLLGATE_WARM_TOKENIZERS").is_some() {
            std::thread::spawn(crate::metering::warm_up);
        }
        // The built-in prices, the price updates applied so far, the configuration's [[prices]].
        let pricing = Arc::new(Prices::new(config.prices.clone()));
        let updates = stores.governance.price_updates().await?;
        pricing.install(&updates).map_err(|e| StartError::Refused(e.to_string()))?;
        let observer = Arc::new(crate::observe::Observer::new(&config));
        if let Some(u) = &usage_events {
            observer.metrics().track_usage_events(u.counters());
        }
        if let Err(error) = observer.warm_up(stores.requests.as_ref(), crate::time::now_ms()).await {
            tracing::warn!(%error, "cannot read the ledger to warm up anomaly baselines");
        }
        let http = http_client()?;
        let upstream = crate::upstream::Client::new()?;
        let (governor, alert_rx) = Governor::with_counters(config.governance.tz, stores.counters.clone());
        let governor = Arc::new(governor.with_ledger(stores.reports.clone()).with_lease(config.governance.lease_ms));
        let now = crate::time::now_ms();
        for l in config.governance.limits.iter().cloned().chain(stores.governance.list_limits().await?) {
            governor.set_limit(l, now);
        }
        let budgets: Vec<_> =
            config.governance.budgets.iter().cloned().chain(stores.governance.list_budgets().await?).collect();
        // Before the budgets are seeded (see `book_interrupted`).
        governor.book_interrupted(&budgets, &interrupted, now).await.map_err(crate::store::StoreError::from)?;
        crate::govern::install_budgets(&stores, &governor, budgets.clone(), now).await?;
        let installed = budgets;
        // Every intent now has its row (its own, or an `interrupted` one).
        recovered.finish()?;
        let alerts_fired = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut background = vec![
            tokio::spawn(crate::govern::alerts::dispatch(
                alert_rx,
                stores.governance.clone(),
                config.governance.webhooks.clone(),
                http.clone(),
                alerts_fired.clone(),
            )),
            tokio::spawn(crate::govern::alerts::forward_anomalies(
                observer.subscribe_incidents(),
                config.governance.webhooks.clone(),
                http.clone(),
            )),
            tokio::spawn(watch_governance(
                stores.clone(),
                governor.clone(),
                config.governance.budgets.clone(),
                installed,
            )),
        ];
        background.push(tokio::spawn(watch_prices(stores.clone(), pricing.clone())));
        background.push(tokio::spawn(sweep_leases(stores.counters.clone())));
        background.push(tokio::spawn(prune_sessions(stores.sessions.clone())));
        if let Some(analytics) = stores.analytics.clone() {
            background.push(tokio::spawn(roll_up_analytics(analytics)));
        }
        if let Some(days) = config.retention_days {
            background.push(tokio::spawn(retention(stores.retained.clone(), days, governor.clone())));
        }
        let state = AppState {
            cache: match &config.cache.redis_url {
                None => crate::cache::Store::Memory(crate::cache::MemoryCache::new(
                    config.cache.max_bytes,
                    config.cache.ttl_ms,
                )),
                Some(url) => crate::cache::Store::Redis(Box::new(
                    crate::cache::RedisCache::new(url.expose(), config.cache.ttl_ms, config.cache.max_bytes / 8)
                        .map_err(|e| StartError::Refused(format!("cache.redis_url is not a Redis URL: {e}")))?,
                )),
            },
            semantic: config.semantic.clone().map(crate::semantic::SemanticCache::new),
            in_flight: Arc::new(tokio::sync::Semaphore::new(config.server.limits.max_in_flight)),
            cut: tokio_util::sync::CancellationToken::new(),
            batch_holds: crate::govern::Holds::default(),
            self_addr: std::sync::OnceLock::new(),
            health: crate::upstream::Health::new(config.circuit_failures, config.circuit_cooldown),
            governor,
            alerts_fired,
            live: arc_swap::ArcSwap::from_pointee(crate::state::Live {
                tokens: crate::upstream::ProviderTokens::new(&config.providers, &http, None)
                    .map_err(StartError::Refused)?,
                redactor: crate::redact::Redactor::new(&config),
                config: Arc::new(config),
            }),
            config_path,
            oidc: crate::oidc::Oidc::new(http.clone()),
            cookie_key,
            auth,
            stores,
            ledger,
            pricing,
            http,
            upstream,
            tasks: TaskTracker::new(),
            observer,
            empty_tags: BTreeMap::new(),
        };
        let state = Arc::new(state);
        background.push(tokio::spawn(reconcile_on_schedule(Arc::downgrade(&state))));
        Ok(Gateway { state, drain, background, usage_events })
    }

    pub fn router(&self) -> Router {
        router(self.state.clone())
    }

    /// Serves until `shutdown` resolves, then stops accepting and lets the
    /// requests in flight finish, for at most `[server] shutdown_timeout_ms`:
    /// past it, what still runs is cut (each cut request keeps its ledger row).
    /// Then the ledger is drained.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        if let Ok(addr) = listener.local_addr() {
            let _ = self.state.self_addr.set(addr);
        }
        let limits = self.state.config().server.limits;
        let stop = crate::listener::Stop::default();
        let graceful = stop.graceful.clone();
        tokio::spawn(async move {
            shutdown.await;
            graceful.cancel();
        });
        let in_flight = self.state.in_flight.clone();
        let connections = crate::listener::serve(listener, self.router(), limits, in_flight, stop.clone()).await;
        let state = self.state.clone();
        let finished = async {
            connections.wait().await;
            state.tasks.close();
            state.tasks.wait().await;
        };
        if tokio::time::timeout(limits.shutdown_timeout, finished).await.is_err() {
            tracing::warn!(
                timeout_ms = limits.shutdown_timeout.as_millis() as u64,
                "requests still running at the shutdown deadline: cutting them (their ledger rows are kept)"
            );
            state.cut.cancel();
            stop.hard.cancel();
            // Cut requests write their rows; give them a moment, then stop waiting for clients.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), connections.wait()).await;
        }
        drop(state);
        self.shutdown().await;
        Ok(())
    }

    /// Waits for in-flight requests (streams included), then drains the ledger.
    pub async fn shutdown(self) {
        let Gateway { state, drain, background, usage_events } = self;
        for b in background {
            b.abort();
        }
        state.tasks.close();
        state.tasks.wait().await;
        drop(state);
        // The writer thread exits once every `LedgerWriter` clone is gone.
        let _ = tokio::task::spawn_blocking(move || drain.wait()).await;
        // Every stored row is queued now: a last, bounded flush.
        if let Some(u) = usage_events {
            u.finish().await;
        }
    }
}

/// `[reconcile]`: reconciles each configured provider against its cost
/// reports every `every` (the first time a minute after start), with the
/// configuration in force at each round (a reload can add, change or remove
/// the section). A failed round is a warning; the next one tries again.
async fn reconcile_on_schedule(state: std::sync::Weak<AppState>) {
    tokio::time::sleep(std::time::Duration::from_secs(60)).await;
    loop {
        let Some(s) = state.upgrade() else { return };
        let config = s.config();
        let every = match &config.reconcile {
            None => std::time::Duration::from_secs(60),
            Some(rc) => {
                let now = crate::time::now_ms();
                let pricing: Arc<crate::pricing::Pricing> = Arc::clone(&s.pricing.load());
                for name in &rc.providers {
                    let Some(provider) = config.providers.iter().find(|p| &p.name == name) else { continue };
                    let since = now - rc.since.num_milliseconds();
                    let alerting = Some((rc, config.governance.webhooks.as_slice()));
                    match crate::reconcile::run_and_save(
                        &s.http, &s.stores, &pricing, provider, since, now, alerting, now,
                    )
                    .await
                    {
                        Ok(lines) => {
                            let t = crate::reconciliation::totals(&lines);
                            tracing::info!(provider = %name, drift = %t.drift, outside = %t.outside, "reconciled with the provider's cost report");
                        }
                        Err(error) => {
                            tracing::warn!(provider = %name, %error, "reconciliation failed; it runs again next round")
                        }
                    }
                }
                rc.every
            }
        };
        drop(config);
        drop(s);
        tokio::time::sleep(every).await;
    }
}

/// Gives back reservations whose lease ran out (their replica died) every
/// second, so budgets show them released even when no request comes to do it.
async fn sweep_leases(counters: Arc<dyn crate::store::counters::CounterStore>) {
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        match counters.expire_leases(crate::time::now_ms()).await {
            Ok(n) if n > 0 => tracing::warn!(reservations = n, "released reservations whose lease ran out"),
            Err(error) => tracing::debug!(%error, "cannot sweep reservation leases"),
            _ => {}
        }
    }
}

/// Deletes sign-in sessions a day after they expired or were revoked (the
/// audit log keeps who signed in), once an hour, the first time ten minutes
/// after start (never in the way of a start-up that must read the database).
async fn prune_sessions(sessions: Arc<dyn crate::store::SessionStore>) {
    tokio::time::sleep(std::time::Duration::from_secs(600)).await;
    loop {
        match sessions.prune_sessions(crate::time::now_ms() - 86_400_000).await {
            Ok(n) if n > 0 => tracing::debug!(sessions = n, "ended sessions deleted"),
            Err(error) => tracing::warn!(%error, "cannot delete ended sessions"),
            _ => {}
        }
        tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
    }
}

/// Keeps the analytics store's hourly rollup up to date: every minute, the
/// closed hours with new rows (60 at most per round).
async fn roll_up_analytics(analytics: Arc<crate::store::clickhouse::ClickHouse>) {
    loop {
        match analytics.roll_up(crate::time::now_ms(), 60).await {
            Ok(n) if n > 0 => tracing::debug!(hours = n, "analytics hourly rollup computed"),
            Err(error) => tracing::warn!(%error, "analytics hourly rollup failed; reports read raw rows meanwhile"),
            _ => {}
        }
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
    }
}

/// The rows for intents an earlier run left unresolved: each intent whose
/// request has no row in the database becomes an `interrupted` row, stored
/// now (before budgets are seeded from the ledger).
async fn interrupted_rows(
    stores: &Stores,
    intents: &[crate::ledger::Intent],
) -> Result<Vec<crate::ledger::LedgerRow>, StartError> {
    let mut rows = Vec::new();
    for intent in intents {
        if stores.requests.request(intent.request_id.clone()).await?.is_none() {
            rows.push(intent.clone().interrupted());
        }
    }
    if rows.is_empty() {
        return Ok(rows);
    }
    let sink = stores.ledger.clone();
    let refs: Vec<&crate::ledger::LedgerRow> = rows.iter().collect();
    // On a thread of its own, as the replay: a sink may block on its own runtime.
    std::thread::scope(|s| s.spawn(|| sink.append(&refs)).join())
        .map_err(|_| crate::store::StoreError::Task("writing interrupted rows panicked".into()))??;
    tracing::warn!(
        rows = rows.len(),
        "requests were at the provider when the gateway stopped: recorded as `interrupted`, costed at their \
         reservation's upper bound"
    );
    Ok(rows)
}

/// Deletes raw ledger rows past the retention period, at start and every ten
/// minutes — never a row that a budget in force still counts: budgets are
/// seeded from raw rows when a gateway starts, so the cut-off stops at the
/// start of the oldest budget window (a month budget keeps its month).
async fn retention(log: Arc<dyn crate::store::RequestLog>, days: u32, governor: Arc<Governor>) {
    loop {
        let now = crate::time::now_ms();
        let oldest_window = governor.status(now).await.iter().map(|b| b.period_start_ms).min();
        let before = (now - i64::from(days) * 86_400_000).min(oldest_window.unwrap_or(i64::MAX));
        match log.prune_raw(before).await {
            Ok(n) if n > 0 => {
                tracing::info!(rows = n, days, "deleted raw ledger rows past retention (rollups kept)")
            }
            Err(error) => tracing::warn!(%error, "ledger retention failed"),
            _ => {}
        }
        tokio::time::sleep(std::time::Duration::from_secs(600)).await;
    }
}

/// Picks up price updates applied through another gateway or the CLI.
async fn watch_prices(stores: Stores, pricing: Arc<Prices>) {
    let mut refused = 0;
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let Ok(version) = stores.governance.price_update_version().await else { continue };
        if version == pricing.version() || version == refused {
            continue;
        }
        match stores.governance.price_updates().await {
            Ok(updates) => match pricing.install(&updates) {
                Ok(()) => tracing::info!(update = version, "price update applied"),
                Err(error) => {
                    refused = version;
                    tracing::error!(%error, "cannot apply the price updates; the prices in force are kept");
                }
            },
            Err(error) => tracing::warn!(%error, "cannot read the price updates"),
        }
    }
}

/// Picks up budgets and limits changed by other processes (`tollgate budgets set` on the database).
async fn watch_governance(
    stores: Stores,
    governor: Arc<Governor>,
    from_config: Vec<BudgetSpec>,
    mut installed: Vec<BudgetSpec>,
) {
    let g = stores.governance.clone();
    let mut seen = g.governance_version().await.ok();
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let Ok(version) = g.governance_version().await else { continue };
        if Some(version) == seen {
            continue;
        }
        seen = Some(version);
        let (Ok(budgets), Ok(limits)) = (g.list_budgets().await, g.list_limits().await) else { continue };
        let now = crate::time::now_ms();
        let wanted: Vec<BudgetSpec> = from_config.iter().cloned().chain(budgets).collect();
        // By id, so that a change among 100 000 budgets costs a pass, not a pass per budget.
        let wanted_ids: std::collections::HashSet<&str> = wanted.iter().map(|w| w.id.as_str()).collect();
        for old in &installed {
            if !wanted_ids.contains(old.id.as_str()) {
                governor.remove_budget(&old.id);
            }
        }
        let before: std::collections::HashMap<&str, &BudgetSpec> =
            installed.iter().map(|b| (b.id.as_str(), b)).collect();
        let changed: Vec<BudgetSpec> =
            wanted.iter().filter(|b| before.get(b.id.as_str()) != Some(b)).cloned().collect();
        if let Err(error) = crate::govern::install_budgets(&stores, &governor, changed, now).await {
            tracing::error!(%error, "cannot install the budgets that changed");
        }
        installed = wanted;
        for l in limits {
            governor.set_limit(l, now);
        }
    }
}

/// The route table, in three groups by who may call:
///
/// - **anyone** (no credential): [`PUBLIC_ROUTES`], the health checks, the
///   dashboard's static files, and `/metrics` unless `[server]
///   metrics_token_env` is set; the sign-in routes ([`SIGN_IN_ROUTES`]);
/// - **a virtual key** (checked by the request path itself, which ledgers
///   every request that passes): the proxy, `GET /v1/models`, batch passthrough;
/// - **an admin token or a dashboard session**: every `/api/v1/*`, `/admin/v1/*` and `/ui/api/*`
///   route, behind `api::admin_gate`, which authorises before any handler
///   (and so before any body is read) and hands the handler its `Caller`.
pub fn router(state: Arc<AppState>) -> Router {
    let public = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(crate::dashboard::routes())
        .merge(api::session::routes());
    let virtual_key = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/responses", post(responses))
        .route("/v1/messages", post(messages))
        .route("/v1/images/generations", post(images_generations))
        .route("/v1/images/edits", post(images_edits))
        .route("/v1/audio/transcriptions", post(audio_transcriptions))
        .route("/v1/audio/translations", post(audio_translations))
        .route("/v1/audio/speech", post(audio_speech))
        .route("/v1beta/models/{model_call}", post(gemini_native))
        .route("/v1/models", get(api::models))
        .merge(crate::batch::routes());
    let admin = api::routes()
        .merge(crate::dashboard::api_routes())
        .merge(crate::api::observe::routes())
        .route("/admin/v1/reload", post(reload_route))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), api::admin_gate))
        .layer(axum::extract::DefaultBodyLimit::max(ADMIN_MAX_BODY));
    // A price update carries a whole catalog: its own, larger body limit.
    let prices = api::prices::routes()
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), api::admin_gate))
        .layer(axum::extract::DefaultBodyLimit::max(api::prices::MAX_BODY));
    public
        .merge(virtual_key)
        .merge(admin)
        .merge(prices)
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .with_state(state)
}

/// Routes that answer without any credential.
pub const PUBLIC_ROUTES: &[&str] =
    &["/healthz", "/readyz", "/metrics", "/ui", "/ui/", "/ui/{*path}", "/ui/auth/status"];

/// The sign-in routes, also without a credential: each carries its own
/// checks (`api::session`): a signed state, a session and its CSRF token.
pub const SIGN_IN_ROUTES: &[&str] = &["/ui/auth/login", "/ui/auth/callback", "/ui/auth/logout"];

async fn chat(State(s): State<Arc<AppState>>, req: Request<Body>) -> Response {
    pipeline::proxy(s, ApiFormat::OpenAiChat, req).await
}

async fn images_generations(State(s): State<Arc<AppState>>, req: Request<Body>) -> Response {
    pipeline::proxy(s, ApiFormat::Media(MediaEndpoint::ImageGenerations), req).await
}

async fn images_edits(State(s): State<Arc<AppState>>, req: Request<Body>) -> Response {
    pipeline::proxy(s, ApiFormat::Media(MediaEndpoint::ImageEdits), req).await
}

async fn audio_transcriptions(State(s): State<Arc<AppState>>, req: Request<Body>) -> Response {
    pipeline::proxy(s, ApiFormat::Media(MediaEndpoint::Transcriptions), req).await
}

async fn audio_translations(State(s): State<Arc<AppState>>, req: Request<Body>) -> Response {
    pipeline::proxy(s, ApiFormat::Media(MediaEndpoint::Translations), req).await
}

async fn audio_speech(State(s): State<Arc<AppState>>, req: Request<Body>) -> Response {
    pipeline::proxy(s, ApiFormat::Media(MediaEndpoint::Speech), req).await
}

/// Google's native Gemini API: `/v1beta/models/{model}:generateContent` and `:streamGenerateContent`.
async fn gemini_native(State(s): State<Arc<AppState>>, req: Request<Body>) -> Response {
    pipeline::proxy(s, ApiFormat::GeminiNative, req).await
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

/// Largest body an admin or analytics call may send.
const ADMIN_MAX_BODY: usize = 256 * 1024;

/// What a reload re-reads and swaps; every other section keeps its running
/// value until a restart (listeners, storage, ledger, auth, caches, budgets
/// and limits from the file, telemetry).
pub const RELOADED_SECTIONS: &str =
    "[[providers]], [[models]], [[routing_rules]], [guardrails] and complexity routing, [[access]], [[prices]], [oidc]";

/// Re-reads the configuration file the gateway started with, validates it
/// completely, and swaps the providers, routes, routing rules, guardrails,
/// access rules and prices at once. A request already running keeps the
/// configuration it started with to its end. A bad file changes nothing, and
/// the error says why (file, line, key).
/// `who` is the audit entry to record (actor, role, source); the reload adds
/// what changed (providers and routes, before and after) and its target.
pub async fn reload(state: &AppState, who: crate::audit::AuditEntry) -> Result<String, String> {
    let path = state
        .config_path
        .as_ref()
        .ok_or("the gateway was started without a configuration file: there is nothing to reload")?;
    let fresh = Config::load(Some(path), &crate::config::ProcessEnv).map_err(|e| e.to_string())?;
    let old = state.live();
    let summary = |c: &Config| {
        let mut routes: Vec<&str> = c.routes.keys().map(String::as_str).collect();
        routes.sort_unstable();
        serde_json::json!({
            "providers": c.providers.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            "routes": routes,
            "routing_rules": c.routing_rules.len(),
            "access_rules": c.access.len(),
            "prices": c.prices.as_ref().map_or(0, |p| p.entries().count()),
            "oidc_roles": c.oidc.as_ref().map(|o| {
                o.roles.iter().map(|(group, role)| serde_json::json!({"group": group, "role": role.label()})).collect::<Vec<_>>()
            }),
        })
    };
    let before = summary(&old.config);
    let mut next = (*old.config).clone();
    next.providers = fresh.providers;
    next.routes = fresh.routes;
    next.routing_rules = fresh.routing_rules;
    next.guardrails = fresh.guardrails;
    next.complexity = fresh.complexity;
    next.access = fresh.access;
    next.prices = fresh.prices;
    // Sign-in: a group removed from [[oidc.roles]] loses its role at once
    // (sessions map their groups to a role on every request).
    next.oidc = fresh.oidc;
    // Read at each use: the next scheduled reconciliation and the next export
    // follow the new file.
    next.reconcile = fresh.reconcile;
    next.rate_cards = fresh.rate_cards;
    let tokens =
        crate::upstream::ProviderTokens::new(&next.providers, &state.http, Some((&old.tokens, &old.config.providers)))?;
    let redactor = crate::redact::Redactor::new(&next);
    // Prices: the stored updates again, with the new file's [[prices]] over them.
    let updates =
        state.stores.governance.price_updates().await.map_err(|e| format!("cannot read the price updates: {e}"))?;
    let (providers, routes) = (next.providers.len(), next.routes.len());
    let prices = next.prices.clone();
    let after = summary(&next);
    state.live.store(Arc::new(crate::state::Live { config: Arc::new(next), tokens, redactor }));
    state.pricing.set_config(prices);
    state.pricing.install(&updates).map_err(|e| e.to_string())?;
    // Circuit state is kept by provider index, which the new file may renumber.
    state.health.reset();
    let entry = crate::audit::AuditEntry { target: path.display().to_string(), ..who }
        .with_before(Some(before))
        .with_after(Some(after));
    state.stores.record_audit(entry).await;
    let done = format!(
        "reloaded {}: {providers} providers, {routes} routes; swapped {RELOADED_SECTIONS} (other sections apply at restart)",
        path.display()
    );
    tracing::info!("{done}");
    Ok(done)
}

/// `POST /admin/v1/reload` (admin role): the same as `SIGHUP`.
async fn reload_route(
    State(s): State<Arc<AppState>>,
    axum::Extension(caller): axum::Extension<crate::api::Caller>,
    axum::Extension(actor): axum::Extension<crate::api::audit::Actor>,
) -> Response {
    match caller.role() {
        Ok(crate::config::Role::Admin) => {}
        Ok(_) => {
            return crate::error::ApiError::Forbidden {
                message: "only an admin token may reload the configuration".into(),
            }
            .into_response()
        }
        Err(e) => return e.into_response(),
    }
    let who = actor.entry(crate::time::now_ms(), crate::audit::CONFIG_RELOAD, "");
    match reload(&s, who).await {
        Ok(message) => axum::Json(serde_json::json!({ "reloaded": true, "message": message })).into_response(),
        Err(message) => {
            tracing::warn!(error = %message, "reload refused: the running configuration is unchanged");
            crate::error::ApiError::invalid(format!("the configuration was not reloaded (nothing changed): {message}"))
                .into_response()
        }
    }
}

/// `/metrics`: open, or behind `[server] metrics_token_env` when configured.
async fn metrics(State(s): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Some(token) = &s.config().server.metrics_token {
        let h = s.auth.hasher();
        let ok = crate::auth::presented_key(&headers).is_some_and(|p| h.hash(p) == h.hash(token.expose()));
        if !ok {
            return crate::error::ApiError::InvalidApiKey {
                message: "/metrics needs `Authorization: Bearer <metrics token>`".into(),
            }
            .into_response();
        }
    }
    // Budget utilisation as of this scrape.
    for b in s.governor.status(crate::time::now_ms()).await {
        s.observer.metrics().set_budget(&b.spec.id, b.spent, b.spec.limit);
    }
    let text = s.observer.render(s.ledger.backlog_bytes());
    ([(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// Readiness for a load balancer: 503 while the gateway is saturated (every
/// in-flight permit taken) or its ledger refuses new requests (spool full
/// with `on_full = "reject"`), so traffic goes to another replica.
async fn readyz(State(s): State<Arc<AppState>>) -> Response {
    let max = s.config().server.limits.max_in_flight;
    let in_flight = max.saturating_sub(s.in_flight.available_permits());
    let probe = std::time::Duration::from_secs(1);
    // The shared services, each probed with a short deadline.
    let counters_ok =
        matches!(tokio::time::timeout(probe, s.stores.counters.expire_leases(crate::time::now_ms())).await, Ok(Ok(_)));
    let database_ok = matches!(tokio::time::timeout(probe, s.stores.governance.governance_version()).await, Ok(Ok(_)));
    let local_share = matches!(s.config().storage.on_counters_down, crate::config::CountersDown::Local { .. });
    let why = if s.in_flight.available_permits() == 0 {
        Some(format!("saturated: {in_flight} of {max} requests in flight"))
    } else if s.ledger.refusing() {
        Some(format!("ledger backed up: {} bytes waiting for the database", s.ledger.backlog_bytes()))
    } else if !counters_ok && !local_share {
        Some("budget and rate counters unreachable: governed requests are refused (503 governance_unavailable)".into())
    } else {
        None
    };
    // Still serving: known keys and budgets are in memory, rows wait in the spool,
    // and with `on_counters_down = "local"` budgets are kept on a local share.
    let mut degraded = Vec::new();
    if !database_ok {
        degraded.push(format!(
            "database unreachable; keys as last read, {} bytes of ledger rows waiting in the spool",
            s.ledger.backlog_bytes()
        ));
    }
    if !counters_ok && local_share {
        degraded.push("budget and rate counters unreachable; admitting on this replica's local share".to_string());
    }
    match why {
        None if degraded.is_empty() => "ready".into_response(),
        None => format!("ready (degraded: {})\n", degraded.join("; ")).into_response(),
        Some(why) => {
            (http::StatusCode::SERVICE_UNAVAILABLE, [(http::header::RETRY_AFTER, "1")], format!("not ready: {why}\n"))
                .into_response()
        }
    }
}

/// The proxy endpoints (POST only).
const PROXY_ROUTES: [&str; 4] = ["/v1/chat/completions", "/v1/embeddings", "/v1/responses", "/v1/messages"];

/// A known route called with the wrong method: 405 in the API family's shape.
async fn method_not_allowed(method: http::Method, headers: HeaderMap, uri: axum::http::Uri) -> Response {
    let anthropic = uri.path().starts_with("/v1/messages") || headers.contains_key("anthropic-version");
    let shape = if anthropic { crate::error::ErrorShape::Anthropic } else { crate::error::ErrorShape::OpenAi };
    let mut r =
        crate::error::ApiError::MethodNotAllowed { message: format!("{} does not accept {method}", uri.path()) }
            .into_response_for(shape);
    if PROXY_ROUTES.contains(&uri.path()) {
        r.headers_mut().insert(http::header::ALLOW, http::HeaderValue::from_static("POST"));
    }
    r
}

async fn not_found(headers: HeaderMap, uri: axum::http::Uri) -> Response {
    let shape = if headers.contains_key("anthropic-version") {
        crate::error::ErrorShape::Anthropic
    } else {
        crate::error::ErrorShape::OpenAi
    };
    crate::error::ApiError::invalid(format!("no such endpoint: {}", uri.path())).into_response_for(shape)
}

/// Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing requests in flight and draining the ledger");
}
