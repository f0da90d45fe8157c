//! The state every request shares: configuration, stores, the key
//! authenticator, the governor, caches, the ledger writer and observers.
//! Built by `server::Gateway::build`; read by the request path and the HTTP
//! handlers.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::task::TaskTracker;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::govern::Governor;
use crate::ledger::LedgerWriter;
use crate::pricing::Prices;
use crate::store::Stores;

/// What a reload swaps: the configuration and what is built from it. A
/// request takes one snapshot when it starts and keeps it to its end, so its
/// route (provider indices), its provider's credentials and its prices all
/// come from the same configuration, whatever reloads happen meanwhile.
pub struct Live {
    pub config: Arc<Config>,
    /// Access tokens of the Vertex providers (by provider index).
    pub tokens: crate::upstream::ProviderTokens,
    /// Removes secrets and internal URLs from upstream text shown to clients.
    pub redactor: crate::redact::Redactor,
}

/// Everything a request needs, shared by all requests.
pub struct AppState {
    /// The configuration in force, swapped whole by a reload (`server::reload`).
    pub live: arc_swap::ArcSwap<Live>,
    pub auth: Authenticator,
    pub stores: Stores,
    /// Permits for requests in flight (`[server] max_in_flight`); the listener takes one per request.
    pub in_flight: Arc<tokio::sync::Semaphore>,
    pub ledger: LedgerWriter,
    /// The prices in force (swapped whole by a price update).
    pub pricing: Arc<Prices>,
    /// For calls other than the proxied request (webhooks, embeddings for the semantic cache).
    pub http: reqwest::Client,
    /// Provider calls on the request path.
    pub upstream: crate::upstream::Client,
    pub tasks: TaskTracker,
    pub observer: Arc<crate::observe::Observer>,
    pub governor: Arc<Governor>,
    pub health: crate::upstream::Health,
    pub cache: crate::cache::Store,
    pub semantic: Option<crate::semantic::SemanticCache>,
    /// Where this gateway listens (for calls it makes to itself).
    pub self_addr: std::sync::OnceLock<SocketAddr>,
    pub alerts_fired: Arc<std::sync::atomic::AtomicU64>,
    pub empty_tags: BTreeMap<String, String>,
    /// Budget reservations of batches awaiting their results.
    pub batch_holds: crate::govern::Holds,
    /// Fired when the shutdown deadline passes: requests still running are cut (and ledgered).
    pub cut: tokio_util::sync::CancellationToken,
    /// Dashboard sign-in: the OpenID Connect relying party (used when `[oidc]` is set).
    pub oidc: crate::oidc::Oidc,
    /// Signs session cookies and derives CSRF tokens (from the server's key secret,
    /// so every replica on the same database accepts the same cookies).
    pub cookie_key: crate::session::CookieKey,
    /// The configuration file the gateway started with (what a reload re-reads).
    pub config_path: Option<std::path::PathBuf>,
}

impl AppState {
    /// The configuration in force now (a reload may replace it for later calls).
    pub fn config(&self) -> Arc<Config> {
        self.live.load().config.clone()
    }

    /// The whole snapshot a request keeps to its end.
    pub fn live(&self) -> Arc<Live> {
        self.live.load_full()
    }
}
