//! `tollgate.toml`: the raw file as written, and the validated [`Config`] built from it.
//!
//! `RawConfig` mirrors the file (unknown keys are errors that name the file,
//! line and key); `Config::resolve` checks every value and turns it into
//! typed, ready-to-use settings. A `Config` that exists is valid.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tollgate_providers::ProviderKind;
use tollgate_units::Money;

/// A configuration problem, always naming where it is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// A secret read from the environment. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Secret {
        Secret(s)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    storage: RawStorage,
    #[serde(default)]
    providers: Vec<RawProvider>,
    #[serde(default)]
    models: Vec<RawModel>,
    #[serde(default)]
    budgets: Vec<toml::Spanned<RawBudget>>,
    #[serde(default)]
    rate_limits: Vec<toml::Spanned<RawRateLimit>>,
    #[serde(default)]
    alerts: Vec<RawAlert>,
    #[serde(default)]
    governance: RawGovernance,
    /// When spend is unusual enough to report (`GET /api/v1/anomalies`, alerts).
    #[serde(default)]
    anomalies: RawAnomalies,
    #[serde(default)]
    guardrails: RawGuardrails,
    #[serde(default)]
    routing: RawRouting,
    #[serde(default)]
    cache: RawCache,
    #[serde(default)]
    routing_rules: Vec<RawRoutingRule>,
    semantic_cache: Option<RawSemantic>,
    #[serde(default)]
    access: Vec<RawAccess>,
    #[serde(default)]
    admin_tokens: Vec<RawAdminToken>,
    /// Sign-in to the dashboard and the admin API with an OpenID Connect provider.
    oidc: Option<RawOidc>,
    #[serde(default)]
    ledger: RawLedger,
    /// Extra or overriding prices (self-hosted models, negotiated rates).
    #[serde(default)]
    prices: Vec<tollgate_pricing::RawPriceEntry>,
    /// Scheduled reconciliation against the providers' cost reports.
    reconcile: Option<RawReconcile>,
    /// Markups and discounts that turn cost into the amount billed to a team or customer.
    #[serde(default)]
    rate_cards: Vec<crate::chargeback::RawRateCard>,
    /// One CloudEvent per ledger row, posted in batches to a webhook.
    usage_events: Option<RawUsageEvents>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUsageEvents {
    /// A literal URL: loopback only (a remote one, which may carry a token, comes from `url_env`).
    url: Option<String>,
    url_env: Option<String>,
    batch_max: Option<u64>,
    flush_ms: Option<u64>,
    queue_max: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReconcile {
    /// How often (default `24h`).
    every: Option<String>,
    /// The days each run covers, back from today (default `7d`).
    since: Option<String>,
    /// A line alerts when its drift exceeds both: this share of the
    /// provider's cost (default `"1"` %) and this amount (default `"0.01"` USD).
    tolerance_percent: Option<String>,
    tolerance_usd: Option<String>,
    /// Default: every provider with `admin_key_env`.
    #[serde(default)]
    providers: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBudget {
    id: Option<String>,
    scope: std::collections::BTreeMap<String, String>,
    limit_usd: String,
    period: String,
    action: Option<String>,
    alert_at: Option<Vec<f64>>,
    #[serde(default)]
    block_unpriced: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    id: Option<String>,
    scope: std::collections::BTreeMap<String, String>,
    rpm: Option<i64>,
    tpm: Option<i64>,
    usd_per_minute: Option<String>,
    usd_per_hour: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlert {
    url: Option<String>,
    url_env: Option<String>,
    /// `json` (default) or `slack`.
    format: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCache {
    /// `on` (default), `off`, `read`, `write`; `x-tollgate-cache` overrides per request.
    mode: Option<String>,
    max_bytes: Option<u64>,
    ttl_ms: Option<u64>,
    /// `key` (default) or `team`: who may share answers.
    scope: Option<String>,
    /// Also cache requests that are not deterministic (temperature > 0).
    non_deterministic: Option<bool>,
    /// Share the cache across replicas in Redis (`redis://…`); or name an env var.
    redis_url: Option<String>,
    redis_url_env: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRouting {
    /// Consecutive failures that eject a target (default 5).
    circuit_failures: Option<u32>,
    /// How long an ejected target rests before one probe (default 30000).
    circuit_cooldown_ms: Option<u64>,
    /// Prompt text patterns that make a request `high` complexity.
    #[serde(default)]
    complex_patterns: Vec<String>,
    /// Prompts longer than this many bytes are `high` complexity (default 8000).
    complex_prompt_bytes: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSemantic {
    #[serde(default)]
    enabled: bool,
    /// An embeddings model name the gateway routes (e.g. text-embedding-3-small).
    embeddings_model: String,
    /// Cosine similarity for a hit, as a decimal string (default "0.95").
    threshold: Option<String>,
    max_age_ms: Option<u64>,
    max_entries_per_tenant: Option<usize>,
    #[serde(default)]
    exclude_models: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoutingRule {
    name: String,
    /// Requested model names (globs) the rule applies to; empty = any.
    #[serde(default)]
    models: Vec<String>,
    /// Tags (and `key`) the request must carry.
    #[serde(default)]
    scope: std::collections::BTreeMap<String, String>,
    max_prompt_bytes: Option<u64>,
    has_tools: Option<bool>,
    /// `low` or `high`, by the complexity classifier.
    complexity: Option<String>,
    route_to: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGuardrails {
    max_input_tokens: Option<u64>,
    max_output_tokens: Option<u64>,
    #[serde(default)]
    required_tags: Vec<String>,
    /// `reject` (default) or `unattributed`.
    untagged: Option<String>,
    #[serde(default)]
    deny_patterns: Vec<String>,
    max_calls_per_trace: Option<u64>,
    max_usd_per_trace: Option<String>,
    max_calls_per_session: Option<u64>,
    max_usd_per_session: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccess {
    scope: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdminToken {
    name: String,
    token_env: String,
    /// `admin`, `team_admin` or `viewer`.
    role: String,
    team: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGovernance {
    /// IANA time zone for calendar budget periods (default UTC).
    timezone: Option<String>,
    /// Output tokens assumed for a request that sets no max tokens when a
    /// budget must reserve its cost; such requests are capped at it.
    default_max_output_tokens: Option<u64>,
    /// How long a reservation outlives the replica that took it (default 15 min).
    lease_ms: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAnomalies {
    /// Days of history an hour of the day needs before its spend can be a spike.
    min_history_days: Option<u32>,
    /// A spike must exceed the usual spend by at least this many dollars (decimal string).
    min_excess_usd: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLedger {
    /// Default: `<database path>.spool` beside the database.
    spool_dir: Option<String>,
    spool_max_bytes: Option<u64>,
    /// Keep raw ledger rows this many days; hourly rollups are kept for ever.
    retention_days: Option<u32>,
    /// `block` (default) or `reject`.
    on_full: Option<String>,
    fsync: Option<bool>,
    /// `false` records nothing: only for measuring the ledger's own cost
    /// (bench/compare.sh's ablation). The gateway warns loudly at start.
    enabled: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOidc {
    issuer: String,
    client_id: String,
    /// Environment variable holding the client secret (never the file).
    client_secret_env: String,
    /// Where the provider sends the browser back: `https://gateway.example/ui/auth/callback`.
    redirect_url: String,
    scopes: Option<Vec<String>>,
    /// The claim (in the ID token or from the userinfo endpoint) listing the user's groups.
    groups_claim: Option<String>,
    /// How long a session lasts (`8h`, `30m`).
    session_ttl: Option<String>,
    /// Plain http to a non-loopback issuer (tests on a private network only).
    #[serde(default)]
    allow_http: bool,
    #[serde(default)]
    roles: Vec<RawOidcRole>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOidcRole {
    group: String,
    /// `admin`, `team_admin` or `viewer`.
    role: String,
    team: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    admin_token_env: Option<String>,
    max_body_bytes: Option<u64>,
    /// The largest multipart upload (image edits, audio), relayed as a stream.
    max_upload_bytes: Option<u64>,
    /// `virtual_keys` (default) or `passthrough`.
    auth: Option<String>,
    key_secret_env: Option<String>,
    /// Route `gpt-*`, `claude-*`, `gemini-*`, `provider/model` without a `[[models]]` entry:
    /// `true` / `"prefix"`, `"known_models"` (only names the price catalog knows), or `false`.
    implicit_routes: Option<toml::Value>,
    /// Environment variable holding the token `/metrics` requires (open when unset).
    metrics_token_env: Option<String>,
    /// A client must send a request's headers within this time once it has started.
    header_read_timeout_ms: Option<u64>,
    /// A keep-alive connection with no request in progress is closed after this time.
    idle_timeout_ms: Option<u64>,
    /// A request body must arrive within this time.
    body_read_timeout_ms: Option<u64>,
    /// A client that accepts no bytes of its response for this long is cut.
    write_timeout_ms: Option<u64>,
    /// Open client connections at most; more are answered 503 and closed.
    max_connections: Option<u64>,
    /// Requests being served at most; more are answered 503 `overloaded`.
    max_in_flight: Option<u64>,
    /// After a shutdown signal, requests still running after this long are cut (and ledgered).
    shutdown_timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    url: Option<String>,
    /// Read from the environment variable this names (a Redis URL may carry a password).
    counters_url_env: Option<String>,
    counters_url: Option<String>,
    counters_prefix: Option<String>,
    on_counters_down: Option<String>,
    /// With `on_counters_down = "local"`: the percentage of each budget's room a replica may take alone.
    local_share_percent: Option<u8>,
    /// `clickhouse://HOST:PORT/DATABASE`: the ledger also goes there, and the request log and reports read it.
    analytics_url: Option<String>,
    /// Read from the environment variable this names (a URL with a password).
    analytics_url_env: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    name: String,
    kind: toml::Spanned<String>,
    base_url: Option<toml::Spanned<String>>,
    api_key_env: Option<String>,
    /// Refused with a clear message: secrets never live in the file.
    api_key: Option<toml::Spanned<toml::Value>>,
    api_version: Option<String>,
    /// `bedrock`: the AWS region (`us-east-1`…); the endpoint and the signature's scope.
    region: Option<String>,
    /// `bedrock`: the environment variables holding the AWS credentials
    /// (defaults: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`).
    aws_access_key_id_env: Option<String>,
    aws_secret_access_key_env: Option<String>,
    aws_session_token_env: Option<String>,
    /// `vertex`: the Google Cloud project and location (`us-central1`, `global`…).
    project: Option<String>,
    location: Option<String>,
    /// `vertex`: the environment variable naming the service account's key
    /// file (default `GOOGLE_APPLICATION_CREDENTIALS`).
    credentials_env: Option<String>,
    timeout_ms: Option<u64>,
    max_retries: Option<u32>,
    /// At most this many requests in flight to this provider at once.
    max_connections: Option<u32>,
    #[serde(default)]
    allow_http: bool,
    /// With `server.auth = "passthrough"`: keep this provider's configured key
    /// for `tg_` virtual keys (passthrough callers still send only their own).
    #[serde(default)]
    allow_key_with_passthrough: bool,
    /// The environment variable holding an organization admin key, which
    /// reads the provider's own cost and usage reports (`tollgate reconcile`).
    admin_key_env: Option<String>,
    /// The provider's accounts (OpenAI project ids, Anthropic workspace ids)
    /// that the gateway's keys belong to; spend on others is "outside the
    /// gateway". Empty: every account is the gateway's.
    #[serde(default)]
    billing_accounts: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    name: String,
    targets: Vec<RawTarget>,
    /// `ordered` (default), `weighted`, `least_latency`, `least_cost`.
    strategy: Option<String>,
    #[serde(default)]
    fallbacks: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    provider: String,
    model: String,
    weight: Option<u32>,
}

/// Where budget alerts go.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub url: Secret,
    pub slack: bool,
}

#[derive(Debug, Clone)]
pub struct GovernanceConfig {
    pub tz: chrono_tz::Tz,
    pub default_max_output_tokens: u64,
    pub budgets: Vec<crate::budget::BudgetSpec>,
    pub limits: Vec<crate::budget::RateLimitSpec>,
    pub webhooks: Vec<Webhook>,
    /// A reservation not settled or released within this long (its replica
    /// died) is given back. Longer than any request may run.
    pub lease_ms: i64,
}

/// Days of history an hour-of-day baseline needs before it can report a
/// spend spike. Three days is the least that gives both a usual level and a
/// spread worth comparing with (one day is a single sample; two cannot tell
/// a habit from a coincidence); more would delay detection on a new
/// deployment by as many days. A series seen for the first time has none.
pub const DEFAULT_ANOMALY_MIN_DAYS: u32 = 3;
/// How far above the usual spend an hour must be before it is reported.
/// The statistics flag any hour far outside its habits, which for a small
/// series is a few cents: $1.00 an hour is about the least anyone acts on,
/// and a burst worth acting on crosses it within minutes.
pub const DEFAULT_ANOMALY_MIN_EXCESS: Money = Money::from_usd(1);

/// `[anomalies]`: when spend is unusual enough to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnomalyConfig {
    /// Days of history an hour-of-day baseline needs (`min_history_days`).
    pub min_history_days: u32,
    /// The least excess over the usual spend that is reported (`min_excess_usd`).
    pub min_excess: Money,
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        AnomalyConfig { min_history_days: DEFAULT_ANOMALY_MIN_DAYS, min_excess: DEFAULT_ANOMALY_MIN_EXCESS }
    }
}

/// A cost-aware routing rule: requests that match go to `route_to`.
#[derive(Debug, Clone)]
pub struct RoutingRule {
    pub name: String,
    pub models: Vec<String>,
    pub scope: Option<crate::budget::Scope>,
    pub max_prompt_bytes: Option<u64>,
    pub has_tools: Option<bool>,
    /// `Some(true)`: only complex requests; `Some(false)`: only simple ones.
    pub complex: Option<bool>,
    pub route_to: String,
}

/// The request-complexity classifier used by routing rules.
#[derive(Debug, Clone, Default)]
pub struct Complexity {
    pub patterns: Vec<regex::Regex>,
    pub long_prompt_bytes: u64,
}

/// The response cache.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub mode: CacheMode,
    pub max_bytes: usize,
    pub ttl_ms: i64,
    /// Share answers within a team rather than only within a key.
    pub per_team: bool,
    pub non_deterministic: bool,
    /// Redis URL for a shared cache (may hold a password).
    pub redis_url: Option<Secret>,
}

/// Request guardrails (all optional).
#[derive(Debug, Clone, Default)]
pub struct Guardrails {
    pub max_input_tokens: Option<u64>,
    pub max_output_tokens: Option<u64>,
    pub required_tags: Vec<String>,
    /// Fill missing required tags with `unattributed` instead of refusing.
    pub untagged_as_unattributed: bool,
    pub deny_patterns: Vec<regex::Regex>,
    pub max_calls_per_trace: Option<u64>,
    pub max_usd_per_trace: Option<Money>,
    pub max_calls_per_session: Option<u64>,
    pub max_usd_per_session: Option<Money>,
}

/// Which models requests in a scope may use.
#[derive(Debug, Clone)]
pub struct AccessRule {
    pub scope: crate::budget::Scope,
    pub allow: Vec<String>,
    pub deny: Vec<String>,
}

/// A role on the admin and analytics API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Admin,
    /// Administers one team: its keys, budgets and spend only.
    TeamAdmin(String),
    /// Reads analytics; changes nothing.
    Viewer,
}

impl Role {
    /// `admin`, `viewer` or `team_admin:<team>` (the audit log's and the reload summary's form).
    pub fn label(&self) -> String {
        match self {
            Role::Admin => "admin".to_owned(),
            Role::Viewer => "viewer".to_owned(),
            Role::TeamAdmin(t) => format!("team_admin:{t}"),
        }
    }
}

/// Sign-in with an OpenID Connect provider (authorization code with PKCE).
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// The issuer, exactly as the provider's ID tokens name it (no trailing slash added or removed).
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub redirect_url: String,
    pub scopes: Vec<String>,
    pub groups_claim: String,
    pub session_ttl: Duration,
    /// Group → role, in the file's order.
    pub roles: Vec<(String, Role)>,
}

impl OidcConfig {
    /// The role of a user in `groups`: the most privileged that any of its
    /// groups maps to (admin, then team admin — the first such rule in the
    /// file — then viewer); `None` when no group maps to a role.
    pub fn role_for(&self, groups: &[String]) -> Option<Role> {
        let mapped = || self.roles.iter().filter(|(g, _)| groups.iter().any(|x| x == g)).map(|(_, r)| r);
        if mapped().any(|r| *r == Role::Admin) {
            return Some(Role::Admin);
        }
        if let Some(r) = mapped().find(|r| matches!(r, Role::TeamAdmin(_))) {
            return Some(r.clone());
        }
        mapped().find(|r| **r == Role::Viewer).cloned()
    }

    /// Cookies get `Secure` when the gateway is reached over https.
    pub fn secure_cookies(&self) -> bool {
        self.redirect_url.starts_with("https://")
    }
}

#[derive(Debug, Clone)]
pub struct AdminToken {
    pub name: String,
    pub token: Secret,
    pub role: Role,
}

/// How clients authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Only tollgate virtual keys (`tg_…`).
    VirtualKeys,
    /// Virtual keys, or the client's own provider key, which is forwarded
    /// upstream and attributed by its keyed hash (metering before adoption).
    Passthrough,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub admin_token: Option<Secret>,
    pub max_body_bytes: usize,
    /// The largest multipart upload (image edits, transcriptions,
    /// translations); streamed to the provider, never held whole.
    pub max_upload_bytes: usize,
    pub auth: AuthMode,
    pub key_secret: Option<Secret>,
    pub implicit_routes: ImplicitRoutes,
    pub metrics_token: Option<Secret>,
    pub limits: ServerLimits,
}

/// Protection of the listener against slow, idle and greedy clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub body_read_timeout: Duration,
    pub write_timeout: Duration,
    pub max_connections: usize,
    pub max_in_flight: usize,
    pub shutdown_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            body_read_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            max_connections: 4096,
            max_in_flight: 2048,
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// `sqlite://PATH` (embedded, one node) or `postgres://USER@HOST:PORT/DB` (shared by replicas).
    pub url: String,
    /// Redis for budget and rate counters shared by every replica; `None` = this process's own.
    pub counters_url: Option<Secret>,
    /// Namespaces the counters' Redis keys (`tg:`); replicas that share budgets share it.
    pub counters_prefix: String,
    /// What a request does when the counters cannot be reached.
    pub on_counters_down: CountersDown,
    /// ClickHouse (`clickhouse://HOST:PORT/DATABASE`, its HTTP interface) as the
    /// analytics store: every ledger row goes there too, and the request log
    /// and the reports read it. `None`: the database above serves them.
    pub analytics_url: Option<String>,
}

/// `[server] implicit_routes`: how a model name without a `[[models]]` entry is routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImplicitRoutes {
    /// Only `[[models]]` entries are served.
    Off,
    /// `provider/model` and the well-known families (`gpt-*`, `claude-*`, …), whatever follows the prefix.
    Prefix,
    /// The same, but only names the price catalog knows for that provider;
    /// others are refused with 404 `model_not_found` before any provider call.
    KnownModels,
}

/// `[storage] on_counters_down`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountersDown {
    /// Refuse governed requests (503 `governance_unavailable`).
    FailClosed,
    /// Admit on this replica's own counters, within `share_percent` of each
    /// budget's room last seen, and book that spend when the counters return.
    Local { share_percent: u8 },
}

impl StorageConfig {
    /// The database URL without its password, for logs and errors.
    pub fn url_shown(&self) -> String {
        without_password(&self.url)
    }
}

/// A URL with any password replaced by `***`.
pub fn without_password(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// A `[storage]` URL given in the file (`KEY`) or by the variable it names (`KEY_env`), one of the two.
fn url_or_env(key: &str, url: &Option<String>, var: &Option<String>, env: &dyn Env) -> Result<Option<String>, String> {
    match (url, var) {
        (Some(_), Some(_)) => Err(format!("set one of storage.{key} and storage.{key}_env")),
        (Some(u), None) => Ok(Some(u.clone())),
        (None, Some(var)) => {
            env.var(var).map(Some).ok_or_else(|| format!("storage.{key}_env names {var:?}, which is not set"))
        }
        (None, None) => Ok(None),
    }
}

/// `[storage]`: which database, and where budget and rate counters live.
fn resolve_storage(raw: &RawStorage, env: &dyn Env) -> Result<StorageConfig, String> {
    let url = raw.url.clone().unwrap_or_else(|| DEFAULT_DB.into());
    let postgres = url.starts_with("postgres://") || url.starts_with("postgresql://");
    if !postgres && sqlite_file(&url).is_none() {
        return Err(format!(
            "storage.url {:?} is not supported: use sqlite://PATH or postgres://USER@HOST:PORT/DB",
            without_password(&url)
        ));
    }
    let counters_url = url_or_env("counters_url", &raw.counters_url, &raw.counters_url_env, env)?;
    if let Some(u) = &counters_url {
        if !u.starts_with("redis://") {
            return Err(format!("storage.counters_url {:?} is not a redis://HOST:PORT/DB URL", without_password(u)));
        }
    }
    let on_counters_down = match (raw.on_counters_down.as_deref(), raw.local_share_percent) {
        (None | Some("fail_closed"), None) => CountersDown::FailClosed,
        (Some("local"), Some(p)) if (1..=100).contains(&p) => CountersDown::Local { share_percent: p },
        (Some("local"), _) => {
            return Err("storage.on_counters_down = \"local\" needs storage.local_share_percent, 1 to 100 \
                 (at most 100 / replicas to never overspend during an outage)"
                .into())
        }
        (None | Some("fail_closed"), Some(_)) => {
            return Err("storage.local_share_percent applies only with on_counters_down = \"local\"".into())
        }
        (Some(other), _) => {
            return Err(format!("storage.on_counters_down {other:?} is not one of \"fail_closed\", \"local\""))
        }
    };
    let counters_prefix = raw.counters_prefix.clone().unwrap_or_else(|| "tg:".into());
    if counters_prefix.is_empty() || counters_prefix.len() > 64 {
        return Err("storage.counters_prefix must be 1 to 64 characters".into());
    }
    let analytics_url = url_or_env("analytics_url", &raw.analytics_url, &raw.analytics_url_env, env)?;
    if let Some(u) = &analytics_url {
        if !u.starts_with("clickhouse://") {
            return Err(format!(
                "storage.analytics_url {:?} is not a clickhouse://HOST:PORT/DATABASE URL (ClickHouse's HTTP interface, \
                 port 8123 by default)",
                without_password(u)
            ));
        }
    }
    Ok(StorageConfig { url, counters_url: counters_url.map(Secret), counters_prefix, on_counters_down, analytics_url })
}

/// One configured upstream.
#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    pub base_url: String,
    pub api_key: Option<Secret>,
    pub api_version: Option<String>,
    pub timeout: Duration,
    pub max_retries: u32,
    /// `max_connections`: a permit per request in flight to this provider
    /// (with HTTP/1.1, one open connection each). `None`: unbounded.
    pub slots: Option<Arc<tokio::sync::Semaphore>>,
    /// `bedrock`: the region and credentials its requests are signed with (SigV4).
    pub aws: Option<AwsSigning>,
    /// `vertex`: the service account whose access tokens authorise its requests.
    pub vertex: Option<VertexAuth>,
    /// `admin_key_env`, and the admin key it held when the file was read
    /// (`None` when the variable is not set: reconciliation says so).
    pub admin_key_env: Option<String>,
    pub admin_key: Option<Secret>,
    /// `billing_accounts`: the provider accounts that are the gateway's.
    pub billing_accounts: Vec<String>,
}

/// How a Vertex AI provider's requests are authorised: the service account's
/// key (the JSON Google issues), exchanged for short-lived access tokens.
#[derive(Debug, Clone)]
pub struct VertexAuth {
    pub project: String,
    pub location: String,
    /// The key file's contents (it holds the private key: never printed).
    pub service_account_json: Secret,
}

/// How a Bedrock provider's requests are signed (AWS Signature Version 4).
#[derive(Debug, Clone)]
pub struct AwsSigning {
    pub region: String,
    pub access_key_id: Secret,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
}

/// A client-facing model name and where it goes.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub targets: Vec<RouteTarget>,
    pub fallbacks: Vec<String>,
    pub strategy: Strategy,
}

/// How a route orders its targets for each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// As written; the next target only when one fails.
    Ordered,
    /// First target drawn by weight, the rest in order.
    Weighted,
    /// Fastest recent responder first.
    LeastLatency,
    /// Cheapest target (by the price catalog) first.
    LeastCost,
}

#[derive(Debug, Clone)]
pub struct RouteTarget {
    /// Index into `Config::providers`.
    pub provider: usize,
    pub model: String,
    pub weight: u32,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    /// `[reconcile]`: the scheduled reconciliation, when configured.
    pub reconcile: Option<ReconcileConfig>,
    /// `[[rate_cards]]`, in file order (chargeback exports apply them).
    pub rate_cards: Vec<crate::chargeback::RateCard>,
    /// `[usage_events]`: the usage-event stream, when configured (applies at start).
    pub usage_events: Option<UsageEventsConfig>,
    pub storage: StorageConfig,
    pub providers: Vec<Provider>,
    pub routes: HashMap<String, Route>,
    /// Raw ledger rows older than this are deleted (rollups stay).
    pub retention_days: Option<u32>,
    /// The ledger spool; `None` until resolved against the database path.
    pub ledger: Option<SpoolConfig>,
    /// `[ledger] enabled = false`: no row is recorded (benchmark ablation only).
    pub ledger_enabled: bool,
    pub governance: GovernanceConfig,
    /// `[anomalies]`: the spend anomaly detector's thresholds.
    pub anomalies: AnomalyConfig,
    pub guardrails: Guardrails,
    pub cache: CacheConfig,
    pub routing_rules: Vec<RoutingRule>,
    pub semantic: Option<SemanticConfig>,
    pub complexity: Complexity,
    /// Circuit breaker: failures that eject a target, and its rest time.
    pub circuit_failures: u32,
    pub circuit_cooldown: Duration,
    pub access: Vec<AccessRule>,
    pub admin_tokens: Vec<AdminToken>,
    /// Dashboard and admin-API sign-in through an identity provider.
    pub oidc: Option<OidcConfig>,
    /// Prices from the file, merged over the built-in catalog.
    pub prices: Option<tollgate_pricing::Catalog>,
    /// Where the settings came from (a file path, or "built-in defaults").
    pub source: String,
}

/// `[reconcile]`: compare the ledger with the providers' cost reports on a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileConfig {
    pub every: Duration,
    /// The days each run covers, back from today.
    pub since: chrono::Duration,
    /// Alert when a line's drift exceeds this share of the provider's cost
    /// (basis points: 100 = 1 %) and `tolerance` in dollars.
    pub tolerance_bp: i64,
    pub tolerance: Money,
    /// The providers reconciled (names in `[[providers]]`).
    pub providers: Vec<String>,
}

impl ReconcileConfig {
    /// Whether a line's drift is beyond the tolerance.
    pub fn beyond(&self, line: &crate::reconciliation::ReconLine) -> bool {
        let drift = line.drift().nanos().unsigned_abs();
        let share_beyond = match line.drift_bp() {
            Some(bp) => bp.unsigned_abs() > self.tolerance_bp.unsigned_abs(),
            None => drift > 0,
        };
        drift > self.tolerance.nanos().unsigned_abs() && share_beyond
    }
}

/// What the process environment supplies (injected so tests need no globals).
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl<S: std::hash::BuildHasher> Env for HashMap<String, String, S> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DB: &str = "sqlite://tollgate.db";
pub const DEFAULT_MAX_BODY: usize = 8 * 1024 * 1024;
/// OpenAI takes audio files up to 25 MB; the form's other parts need a little more.
pub const DEFAULT_MAX_UPLOAD: usize = 26 * 1024 * 1024;

fn reconcile_config(r: RawReconcile, providers: &[Provider]) -> Result<ReconcileConfig, String> {
    let invalid = |message: String| message;
    let duration = |what: &str, v: Option<&str>, default: &str| {
        let text = v.unwrap_or(default);
        crate::time::parse_duration(text)
            .filter(|d| d.num_seconds() > 0)
            .ok_or_else(|| invalid(format!("reconcile.{what} {text:?} is not a duration like 24h or 7d")))
    };
    let every = duration("every", r.every.as_deref(), "24h")?;
    if every.num_minutes() < 1 {
        return Err(invalid("reconcile.every must be at least 1m (the providers' reports change once a day)".into()));
    }
    let since = duration("since", r.since.as_deref(), "7d")?;
    let percent = r.tolerance_percent.as_deref().unwrap_or("1");
    let tolerance_bp = rust_decimal::Decimal::from_str_exact(percent)
        .ok()
        .filter(|d| !d.is_sign_negative())
        .and_then(|d| (d * rust_decimal::Decimal::from(100)).round().to_string().parse::<i64>().ok())
        .ok_or_else(|| {
            invalid(format!("reconcile.tolerance_percent {percent:?} is not a percentage like \"1\" or \"0.5\""))
        })?;
    let usd = r.tolerance_usd.as_deref().unwrap_or("0.01");
    let tolerance: Money = usd
        .parse()
        .ok()
        .filter(|m: &Money| m.nanos() >= 0)
        .ok_or_else(|| invalid(format!("reconcile.tolerance_usd {usd:?} is not an amount like \"0.01\"")))?;
    let names: Vec<String> = if r.providers.is_empty() {
        providers.iter().filter(|p| p.admin_key_env.is_some()).map(|p| p.name.clone()).collect()
    } else {
        r.providers
    };
    for name in &names {
        let p = providers
            .iter()
            .find(|p| &p.name == name)
            .ok_or_else(|| invalid(format!("reconcile.providers: {name:?} is not defined in [[providers]]")))?;
        if !matches!(p.kind, ProviderKind::OpenAi | ProviderKind::Anthropic) {
            return Err(invalid(format!(
                "reconcile.providers: {name:?} is of kind {}; only openai and anthropic providers publish cost reports tollgate can read",
                kind_name(p.kind)
            )));
        }
        if p.admin_key_env.is_none() {
            return Err(invalid(format!(
                "reconcile.providers: {name:?} has no admin_key_env (the environment variable holding an organization admin key)"
            )));
        }
    }
    if names.is_empty() {
        return Err(invalid("[reconcile] has no provider to reconcile: give a provider admin_key_env".into()));
    }
    Ok(ReconcileConfig {
        every: Duration::from_secs(u64::try_from(every.num_seconds()).unwrap_or(86_400)),
        since,
        tolerance_bp,
        tolerance,
        providers: names,
    })
}

/// `[usage_events]`: one CloudEvent per ledger row, posted to a webhook in batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageEventsConfig {
    /// Where batches are posted (may carry a token: never logged).
    pub url: Secret,
    /// Events per POST at most.
    pub batch_max: usize,
    /// How long the first event of a batch waits for more before the batch goes.
    pub flush: Duration,
    /// Events waiting to be sent at most; past it, new ones are dropped and counted.
    pub queue_max: usize,
}

pub const DEFAULT_USAGE_EVENTS_BATCH: usize = 100;
pub const DEFAULT_USAGE_EVENTS_FLUSH_MS: u64 = 1_000;
pub const DEFAULT_USAGE_EVENTS_QUEUE: usize = 100_000;

fn usage_events_config(r: RawUsageEvents, env: &dyn Env) -> Result<UsageEventsConfig, String> {
    // The URL may carry a token: no message below repeats it.
    let url = match (r.url, r.url_env) {
        (Some(u), None) => {
            let parsed = reqwest::Url::parse(&u).map_err(|_| "usage_events.url is not a URL".to_string())?;
            let loopback =
                matches!(parsed.scheme(), "http" | "https") && is_loopback_host(parsed.host_str().unwrap_or(""));
            if !loopback {
                return Err("usage_events.url is accepted only for a loopback address (http://127.0.0.1:…); \
                            name the variable holding any other URL with usage_events.url_env"
                    .into());
            }
            u
        }
        (None, Some(var)) => {
            let u = env.var(&var).ok_or_else(|| format!("usage_events.url_env names {var:?}, which is not set"))?;
            let parsed = reqwest::Url::parse(&u)
                .map_err(|_| format!("usage_events.url_env: the value of {var} is not a URL"))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(format!("usage_events.url_env: the value of {var} is not an http:// or https:// URL"));
            }
            u
        }
        _ => return Err("[usage_events] needs exactly one of url, url_env".into()),
    };
    let batch_max = r.batch_max.unwrap_or(DEFAULT_USAGE_EVENTS_BATCH as u64);
    if !(1..=1000).contains(&batch_max) {
        return Err(format!("usage_events.batch_max {batch_max} must be between 1 and 1000"));
    }
    let flush_ms = r.flush_ms.unwrap_or(DEFAULT_USAGE_EVENTS_FLUSH_MS);
    if !(1..=60_000).contains(&flush_ms) {
        return Err(format!("usage_events.flush_ms {flush_ms} must be between 1 and 60000"));
    }
    let queue_max = r.queue_max.unwrap_or(DEFAULT_USAGE_EVENTS_QUEUE as u64);
    if !(batch_max..=10_000_000).contains(&queue_max) {
        return Err(format!("usage_events.queue_max {queue_max} must be between batch_max ({batch_max}) and 10000000"));
    }
    Ok(UsageEventsConfig {
        url: Secret(url),
        batch_max: usize::try_from(batch_max).unwrap_or(DEFAULT_USAGE_EVENTS_BATCH),
        flush: Duration::from_millis(flush_ms),
        queue_max: usize::try_from(queue_max).unwrap_or(DEFAULT_USAGE_EVENTS_QUEUE),
    })
}

/// Providers built from the environment when there is no config file.
const ZERO_CONFIG: &[(&str, &str, &str, &str)] = &[
    // (env var, provider name, kind, base url)
    ("OPENAI_API_KEY", "openai", "openai", "https://api.openai.com/v1"),
    ("ANTHROPIC_API_KEY", "anthropic", "anthropic", "https://api.anthropic.com"),
    ("GEMINI_API_KEY", "gemini", "gemini", "https://generativelanguage.googleapis.com"),
    ("MISTRAL_API_KEY", "mistral", "openai_compatible", "https://api.mistral.ai/v1"),
    ("DEEPSEEK_API_KEY", "deepseek", "openai_compatible", "https://api.deepseek.com/v1"),
    ("GROQ_API_KEY", "groq", "openai_compatible", "https://api.groq.com/openai/v1"),
    ("TOGETHER_API_KEY", "together", "openai_compatible", "https://api.together.xyz/v1"),
    ("OPENROUTER_API_KEY", "openrouter", "openai_compatible", "https://openrouter.ai/api/v1"),
];

impl Config {
    /// Load `path`, or `./tollgate.toml` when present, else built-in defaults.
    pub fn load(path: Option<&Path>, env: &dyn Env) -> Result<Config, ConfigError> {
        let default = Path::new("tollgate.toml");
        let chosen = match path {
            Some(p) => Some(p),
            None if default.exists() => Some(default),
            None => None,
        };
        match chosen {
            Some(p) => {
                let shown = p.display().to_string();
                let text =
                    std::fs::read_to_string(p).map_err(|source| ConfigError::Read { path: shown.clone(), source })?;
                Config::from_toml(&text, &shown, env)
            }
            None => Config::zero_config(env),
        }
    }

    /// Providers from `OPENAI_API_KEY`, `ANTHROPIC_API_KEY`, … with implicit routes.
    pub fn zero_config(env: &dyn Env) -> Result<Config, ConfigError> {
        let mut raw = RawConfig::default();
        for (var, name, kind, url) in ZERO_CONFIG {
            if env.var(var).is_some() {
                raw.providers.push(RawProvider {
                    name: (*name).into(),
                    kind: toml::Spanned::new(0..0, (*kind).into()),
                    base_url: Some(toml::Spanned::new(0..0, (*url).into())),
                    api_key_env: Some((*var).into()),
                    api_key: None,
                    api_version: None,
                    region: None,
                    aws_access_key_id_env: None,
                    aws_secret_access_key_env: None,
                    aws_session_token_env: None,
                    project: None,
                    location: None,
                    credentials_env: None,
                    timeout_ms: None,
                    max_retries: None,
                    max_connections: None,
                    allow_http: false,
                    allow_key_with_passthrough: false,
                    admin_key_env: None,
                    billing_accounts: Vec::new(),
                });
            }
        }
        // Gemini also answers to GOOGLE_API_KEY.
        if env.var("GEMINI_API_KEY").is_none() && env.var("GOOGLE_API_KEY").is_some() {
            raw.providers.push(RawProvider {
                name: "gemini".into(),
                kind: toml::Spanned::new(0..0, "gemini".into()),
                base_url: None,
                api_key_env: Some("GOOGLE_API_KEY".into()),
                api_key: None,
                api_version: None,
                region: None,
                aws_access_key_id_env: None,
                aws_secret_access_key_env: None,
                aws_session_token_env: None,
                project: None,
                location: None,
                credentials_env: None,
                timeout_ms: None,
                max_retries: None,
                max_connections: None,
                allow_http: false,
                allow_key_with_passthrough: false,
                admin_key_env: None,
                billing_accounts: Vec::new(),
            });
        }
        resolve(raw, "built-in defaults", "", env)
    }

    pub fn from_toml(text: &str, path: &str, env: &dyn Env) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: path.into(), message: e.to_string().trim_end().into() })?;
        resolve(raw, path, text, env)
    }

    pub fn provider(&self, name: &str) -> Option<(usize, &Provider)> {
        self.providers.iter().enumerate().find(|(_, p)| p.name == name)
    }
}

fn line_of(text: &str, span: std::ops::Range<usize>) -> String {
    if text.is_empty() {
        return String::new();
    }
    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
    format!("line {line}: ")
}

fn parse_kind(s: &str) -> Option<ProviderKind> {
    Some(match s {
        "openai" => ProviderKind::OpenAi,
        "openai_compatible" => ProviderKind::OpenAiCompatible,
        "azure_openai" => ProviderKind::AzureOpenAi,
        "anthropic" => ProviderKind::Anthropic,
        "gemini" => ProviderKind::Gemini,
        "bedrock" => ProviderKind::Bedrock,
        "vertex" => ProviderKind::Vertex,
        _ => return None,
    })
}

/// The provider kind's name as written in the config.
pub fn kind_name(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::OpenAi => "openai",
        ProviderKind::OpenAiCompatible => "openai_compatible",
        ProviderKind::AzureOpenAi => "azure_openai",
        ProviderKind::Anthropic => "anthropic",
        ProviderKind::Gemini => "gemini",
        ProviderKind::Bedrock => "bedrock",
        ProviderKind::Vertex => "vertex",
    }
}

fn default_base_url(kind: ProviderKind) -> Option<&'static str> {
    match kind {
        ProviderKind::OpenAi => Some("https://api.openai.com/v1"),
        ProviderKind::Anthropic => Some("https://api.anthropic.com"),
        ProviderKind::Gemini => Some("https://generativelanguage.googleapis.com"),
        // Bedrock's endpoint depends on the region (`bedrock_endpoint`).
        ProviderKind::AzureOpenAi | ProviderKind::OpenAiCompatible | ProviderKind::Bedrock | ProviderKind::Vertex => {
            None
        }
    }
}

/// A Vertex provider's project, location and service-account key (the key
/// file named by an environment variable; never the configuration file).
fn vertex_auth(p: &RawProvider, env: &dyn Env) -> Result<VertexAuth, String> {
    let name = |s: &Option<String>, what: &str| {
        s.clone()
            .filter(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .ok_or_else(|| format!("provider {:?}: kind vertex needs a {what} (letters, digits, - and _)", p.name))
    };
    let project = name(&p.project, "project")?;
    let location = name(&p.location, "location")?;
    let var = p.credentials_env.clone().unwrap_or_else(|| "GOOGLE_APPLICATION_CREDENTIALS".to_owned());
    let path = env.var(&var).filter(|s| !s.is_empty()).ok_or_else(|| {
        format!(
            "provider {:?}: environment variable {var} (the service account key file for vertex) is not set",
            p.name
        )
    })?;
    let json = std::fs::read_to_string(&path).map_err(|e| {
        format!("provider {:?}: cannot read the service account key file {path:?} ({var}): {e}", p.name)
    })?;
    Ok(VertexAuth { project, location, service_account_json: Secret(json) })
}

/// A Bedrock provider's region and credentials (from the environment; never the file).
fn aws_signing(p: &RawProvider, env: &dyn Env) -> Result<AwsSigning, String> {
    let region = p.region.clone().ok_or_else(|| format!("provider {:?}: kind bedrock needs a region", p.name))?;
    if region.is_empty() || !region.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
        return Err(format!("provider {:?}: region {region:?} is not an AWS region like us-east-1", p.name));
    }
    let var = |name: &Option<String>, default: &str| name.clone().unwrap_or_else(|| default.to_owned());
    let key_var = var(&p.aws_access_key_id_env, "AWS_ACCESS_KEY_ID");
    let secret_var = var(&p.aws_secret_access_key_env, "AWS_SECRET_ACCESS_KEY");
    let token_var = var(&p.aws_session_token_env, "AWS_SESSION_TOKEN");
    let get = |v: &str| {
        env.var(v).filter(|s| !s.is_empty()).ok_or_else(|| {
            format!("provider {:?}: environment variable {v} (the AWS credentials for bedrock) is not set", p.name)
        })
    };
    Ok(AwsSigning {
        region,
        access_key_id: Secret(get(&key_var)?),
        secret_access_key: Secret(get(&secret_var)?),
        session_token: env.var(&token_var).filter(|s| !s.is_empty()).map(Secret),
    })
}

fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h == "localhost" || h.parse::<std::net::IpAddr>().map(|ip| ip.is_loopback()).unwrap_or(false)
}

/// Checks an upstream URL: https anywhere; http only for loopback or with `allow_http`.
fn check_base_url(url: &str, allow_http: bool) -> Result<String, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("base_url {url:?} is not a URL: {e}"))?;
    match parsed.scheme() {
        "https" => {}
        "http" => {
            let host = parsed.host_str().unwrap_or("");
            if !allow_http && !is_loopback_host(host) {
                return Err(format!(
                    "base_url {url:?} uses plain http to a non-loopback host; use https or set allow_http = true"
                ));
            }
        }
        other => return Err(format!("base_url {url:?} has unsupported scheme {other:?}")),
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!("base_url {url:?} must not carry a query or fragment"));
    }
    Ok(url.trim_end_matches('/').to_string())
}

fn parse_role(role: &str, team: Option<String>, what: &str) -> Result<Role, String> {
    match (role, team) {
        ("admin", None) => Ok(Role::Admin),
        ("viewer", None) => Ok(Role::Viewer),
        ("team_admin", Some(team)) if !team.is_empty() => Ok(Role::TeamAdmin(team)),
        ("team_admin", _) => Err(format!("{what}: team_admin needs a team")),
        (r, _) => Err(format!("{what}: role {r:?} is not admin, team_admin or viewer (team only with team_admin)")),
    }
}

fn resolve_oidc(o: RawOidc, env: &dyn Env) -> Result<OidcConfig, String> {
    let issuer = check_base_url(&o.issuer, o.allow_http).map_err(|e| format!("[oidc] issuer: {e}"))?;
    // The issuer is compared with the ID token's `iss` as written.
    let issuer = if o.issuer.ends_with('/') { format!("{issuer}/") } else { issuer };
    let redirect = reqwest::Url::parse(&o.redirect_url)
        .map_err(|e| format!("[oidc] redirect_url {:?} is not a URL: {e}", o.redirect_url))?;
    if !matches!(redirect.scheme(), "http" | "https") || !redirect.path().ends_with("/ui/auth/callback") {
        return Err(format!(
            "[oidc] redirect_url {:?} must be the gateway's http(s) address ending in /ui/auth/callback",
            o.redirect_url
        ));
    }
    if o.client_id.is_empty() {
        return Err("[oidc] client_id is empty".into());
    }
    let client_secret = env
        .var(&o.client_secret_env)
        .ok_or_else(|| format!("[oidc] client_secret_env: environment variable {} is not set", o.client_secret_env))?;
    let scopes = o.scopes.unwrap_or_else(|| vec!["openid".into(), "profile".into(), "email".into()]);
    if !scopes.iter().any(|s| s == "openid") {
        return Err("[oidc] scopes must include \"openid\"".into());
    }
    let ttl_text = o.session_ttl.unwrap_or_else(|| "8h".into());
    let session_ttl = crate::time::parse_duration(&ttl_text)
        .and_then(|d| d.to_std().ok())
        .filter(|d| *d >= Duration::from_secs(60) && *d <= Duration::from_secs(30 * 86_400))
        .ok_or_else(|| format!("[oidc] session_ttl {ttl_text:?} must be a duration from 1m to 30d, like 8h"))?;
    if o.roles.is_empty() {
        return Err("[oidc] needs at least one [[oidc.roles]] (group = \"…\", role = \"admin\")".into());
    }
    let mut roles = Vec::new();
    for r in o.roles {
        let role = parse_role(&r.role, r.team, &format!("[[oidc.roles]] group {:?}", r.group))?;
        if r.group.is_empty() {
            return Err("[[oidc.roles]]: group is empty".into());
        }
        roles.push((r.group, role));
    }
    Ok(OidcConfig {
        issuer,
        client_id: o.client_id,
        client_secret: Secret(client_secret),
        redirect_url: o.redirect_url,
        scopes,
        groups_claim: o.groups_claim.unwrap_or_else(|| "groups".into()),
        session_ttl,
        roles,
    })
}

fn resolve(raw: RawConfig, path: &str, text: &str, env: &dyn Env) -> Result<Config, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid { path: path.into(), message };

    let governance =
        resolve_governance(&raw.governance, raw.budgets, raw.rate_limits, raw.alerts, text, env).map_err(invalid)?;

    let storage = resolve_storage(&raw.storage, env).map_err(invalid)?;

    let limits = resolve_limits(&raw.server).map_err(invalid)?;
    let listen_s = raw.server.listen.unwrap_or_else(|| DEFAULT_LISTEN.into());
    let listen: SocketAddr = listen_s
        .parse()
        .map_err(|_| invalid(format!("server.listen {listen_s:?} is not an address like 127.0.0.1:8080")))?;
    let admin_env = raw.server.admin_token_env.unwrap_or_else(|| "TOLLGATE_ADMIN_TOKEN".into());
    let admin_token = env.var(&admin_env).map(Secret);
    let key_secret_env = raw.server.key_secret_env.unwrap_or_else(|| "TOLLGATE_KEY_SECRET".into());
    let key_secret = env.var(&key_secret_env).map(Secret);
    let max_body_bytes = match raw.server.max_body_bytes {
        None => DEFAULT_MAX_BODY,
        Some(0) => return Err(invalid("server.max_body_bytes must be greater than 0".into())),
        Some(n) => usize::try_from(n).map_err(|_| invalid("server.max_body_bytes is too large".into()))?,
    };
    let max_upload_bytes = match raw.server.max_upload_bytes {
        None => DEFAULT_MAX_UPLOAD,
        Some(0) => return Err(invalid("server.max_upload_bytes must be greater than 0".into())),
        Some(n) => usize::try_from(n).map_err(|_| invalid("server.max_upload_bytes is too large".into()))?,
    };
    let metrics_token = match &raw.server.metrics_token_env {
        Some(var) => Some(Secret(
            env.var(var)
                .ok_or_else(|| invalid(format!("server.metrics_token_env: environment variable {var} is not set")))?,
        )),
        None => None,
    };
    let auth = match raw.server.auth.as_deref() {
        None | Some("virtual_keys") => AuthMode::VirtualKeys,
        Some("passthrough") => AuthMode::Passthrough,
        Some(other) => {
            return Err(invalid(format!("server.auth {other:?} is not one of \"virtual_keys\", \"passthrough\"")))
        }
    };

    let mut providers: Vec<Provider> = Vec::new();
    for p in raw.providers {
        if let Some(lit) = &p.api_key {
            return Err(invalid(format!(
                "{}provider {:?}: a literal api_key is refused (secrets never live in the file); set api_key_env to the name of an environment variable",
                line_of(text, lit.span()),
                p.name
            )));
        }
        if p.name.is_empty() || !p.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(invalid(format!("provider name {:?} must be non-empty [A-Za-z0-9._-]", p.name)));
        }
        if providers.iter().any(|q| q.name == p.name) {
            return Err(invalid(format!("provider {:?} is defined twice", p.name)));
        }
        let kind = parse_kind(p.kind.get_ref()).ok_or_else(|| {
            invalid(format!(
                "{}provider {:?}: kind {:?} is not one of openai, openai_compatible, azure_openai, anthropic, gemini, bedrock, vertex",
                line_of(text, p.kind.span()),
                p.name,
                p.kind.get_ref()
            ))
        })?;
        let aws = if kind == ProviderKind::Bedrock {
            Some(aws_signing(&p, env).map_err(invalid)?)
        } else {
            if p.region.is_some() || p.aws_access_key_id_env.is_some() || p.aws_secret_access_key_env.is_some() {
                return Err(invalid(format!(
                    "provider {:?}: region and aws_*_env are for kind = \"bedrock\" only",
                    p.name
                )));
            }
            None
        };
        let vertex = if kind == ProviderKind::Vertex {
            Some(vertex_auth(&p, env).map_err(invalid)?)
        } else {
            if p.project.is_some() || p.location.is_some() || p.credentials_env.is_some() {
                return Err(invalid(format!(
                    "provider {:?}: project, location and credentials_env are for kind = \"vertex\" only",
                    p.name
                )));
            }
            None
        };
        let base_url = match &p.base_url {
            Some(u) => check_base_url(u.get_ref(), p.allow_http)
                .map_err(|m| invalid(format!("{}provider {:?}: {m}", line_of(text, u.span()), p.name)))?,
            None if kind == ProviderKind::Vertex => match vertex.as_ref().map(|v| v.location.as_str()) {
                Some("global") => "https://aiplatform.googleapis.com".to_owned(),
                Some(l) => format!("https://{l}-aiplatform.googleapis.com"),
                None => String::new(),
            },
            None if kind == ProviderKind::Bedrock => {
                format!("https://bedrock-runtime.{}.amazonaws.com", aws.as_ref().map_or("", |a| a.region.as_str()))
            }
            None => default_base_url(kind)
                .ok_or_else(|| invalid(format!("provider {:?}: kind {} needs a base_url", p.name, kind_name(kind))))?
                .to_string(),
        };
        // Vertex requests go to the project's and location's path under the endpoint.
        let base_url = match &vertex {
            Some(v) => format!("{}/v1/projects/{}/locations/{}", base_url.trim_end_matches('/'), v.project, v.location),
            None => base_url,
        };
        let api_key = match &p.api_key_env {
            Some(var) => Some(Secret(env.var(var).ok_or_else(|| {
                invalid(format!("provider {:?}: environment variable {var} (api_key_env) is not set", p.name))
            })?)),
            None => None,
        };
        if auth == AuthMode::Passthrough && api_key.is_some() && !p.allow_key_with_passthrough {
            return Err(invalid(format!(
                "provider {:?}: server.auth = \"passthrough\" forwards each caller's own provider key, but this provider also has a configured key (api_key_env); remove it, or set allow_key_with_passthrough = true to keep it for tg_ virtual keys only",
                p.name
            )));
        }
        if kind == ProviderKind::AzureOpenAi && p.api_version.is_some() && api_key.is_none() {
            return Err(invalid(format!("provider {:?}: azure_openai needs api_key_env", p.name)));
        }
        let slots = match p.max_connections {
            Some(0) => return Err(invalid(format!("provider {:?}: max_connections must be at least 1", p.name))),
            Some(n) => Some(Arc::new(tokio::sync::Semaphore::new(n as usize))),
            None => None,
        };
        providers.push(Provider {
            name: p.name,
            kind,
            base_url,
            api_key,
            api_version: p.api_version,
            timeout: Duration::from_millis(p.timeout_ms.unwrap_or(60_000).max(1)),
            max_retries: p.max_retries.unwrap_or(2).min(10),
            slots,
            aws,
            vertex,
            admin_key: p.admin_key_env.as_deref().and_then(|var| env.var(var)).map(Secret),
            admin_key_env: p.admin_key_env,
            billing_accounts: p.billing_accounts,
        });
    }

    let mut routes = HashMap::new();
    for m in raw.models {
        if m.targets.is_empty() {
            return Err(invalid(format!("model {:?} has no targets", m.name)));
        }
        let mut targets = Vec::new();
        for t in m.targets {
            let idx = providers.iter().position(|p| p.name == t.provider).ok_or_else(|| {
                invalid(format!("model {:?}: target provider {:?} is not defined in [[providers]]", m.name, t.provider))
            })?;
            targets.push(RouteTarget { provider: idx, model: t.model, weight: t.weight.unwrap_or(1) });
        }
        let strategy = match m.strategy.as_deref() {
            None | Some("ordered") => Strategy::Ordered,
            Some("weighted") => Strategy::Weighted,
            Some("least_latency") => Strategy::LeastLatency,
            Some("least_cost") => Strategy::LeastCost,
            Some(o) => {
                return Err(invalid(format!(
                    "model {:?}: strategy {o:?} is not ordered, weighted, least_latency or least_cost",
                    m.name
                )))
            }
        };
        if strategy == Strategy::Weighted && targets.iter().all(|t| t.weight == 0) {
            return Err(invalid(format!("model {:?}: weighted strategy needs a positive weight", m.name)));
        }
        if routes.contains_key(&m.name) {
            return Err(invalid(format!("model {:?} is defined twice", m.name)));
        }
        routes.insert(m.name.clone(), Route { name: m.name, targets, fallbacks: m.fallbacks, strategy });
    }
    for r in routes.values() {
        for f in &r.fallbacks {
            if !routes.contains_key(f) && f != &r.name {
                // A fallback may also be an implicitly routed name; checked at request time.
                tracing::debug!(model = %r.name, fallback = %f, "fallback is not an explicit [[models]] entry");
            }
        }
    }

    let on_full = match raw.ledger.on_full.as_deref() {
        None | Some("block") => OnFull::Block,
        Some("reject") => OnFull::Reject,
        Some(o) => return Err(invalid(format!("ledger.on_full {o:?} is not one of \"block\", \"reject\""))),
    };
    let ledger_enabled = raw.ledger.enabled.unwrap_or(true);
    let shared_db = sqlite_file(&storage.url).is_none();
    if shared_db && raw.ledger.spool_dir.is_none() {
        return Err(invalid(
            "ledger.spool_dir is required with a PostgreSQL storage.url: each replica keeps its own local spool \
             (acknowledged rows are durable there before they reach the database)"
                .into(),
        ));
    }
    let ledger = if raw.ledger.spool_dir.is_some()
        || raw.ledger.spool_max_bytes.is_some()
        || raw.ledger.on_full.is_some()
        || raw.ledger.fsync.is_some()
    {
        let mut s = SpoolConfig::beside(&sqlite_file(&storage.url).unwrap_or_default());
        if let Some(d) = raw.ledger.spool_dir {
            s.dir = d.into();
        }
        if let Some(m) = raw.ledger.spool_max_bytes {
            if m == 0 {
                return Err(invalid("ledger.spool_max_bytes must be greater than 0".into()));
            }
            s.max_bytes = m;
        }
        s.on_full = on_full;
        s.fsync = raw.ledger.fsync.unwrap_or(false);
        Some(s)
    } else {
        None
    };

    let prices = if raw.prices.is_empty() {
        None
    } else {
        Some(tollgate_pricing::Catalog::from_raw_entries(raw.prices).map_err(|e| invalid(format!("[[prices]]: {e}")))?)
    };

    let guardrails = resolve_guardrails(raw.guardrails).map_err(invalid)?;
    let mut access = Vec::new();
    for a in raw.access {
        let scope = scope_of(a.scope).map_err(|e| invalid(format!("[[access]] scope: {e}")))?;
        if a.allow.is_empty() && a.deny.is_empty() {
            return Err(invalid(format!("[[access]] for {scope} needs allow or deny")));
        }
        access.push(AccessRule { scope, allow: a.allow, deny: a.deny });
    }
    let mut admin_tokens = Vec::new();
    for t in raw.admin_tokens {
        let token = env.var(&t.token_env).ok_or_else(|| {
            invalid(format!(
                "[[admin_tokens]] {:?}: environment variable {} (token_env) is not set",
                t.name, t.token_env
            ))
        })?;
        let role = parse_role(&t.role, t.team, &format!("[[admin_tokens]] {:?}", t.name)).map_err(invalid)?;
        admin_tokens.push(AdminToken { name: t.name, token: Secret(token), role });
    }

    let oidc = match raw.oidc {
        None => None,
        Some(o) => Some(resolve_oidc(o, env).map_err(invalid)?),
    };

    let cache = CacheConfig {
        mode: match raw.cache.mode.as_deref() {
            None => CacheMode::On,
            Some(m) => {
                CacheMode::parse(m).ok_or_else(|| invalid(format!("cache.mode {m:?} is not on, off, read or write")))?
            }
        },
        max_bytes: usize::try_from(raw.cache.max_bytes.unwrap_or(64 * 1024 * 1024)).unwrap_or(usize::MAX),
        ttl_ms: i64::try_from(raw.cache.ttl_ms.unwrap_or(3_600_000)).unwrap_or(i64::MAX),
        per_team: match raw.cache.scope.as_deref() {
            None | Some("key") => false,
            Some("team") => true,
            Some(o) => return Err(invalid(format!("cache.scope {o:?} is not key or team"))),
        },
        non_deterministic: raw.cache.non_deterministic.unwrap_or(false),
        redis_url: match (raw.cache.redis_url, raw.cache.redis_url_env) {
            (Some(u), None) => Some(Secret(u)),
            (None, Some(var)) => Some(Secret(
                env.var(&var)
                    .ok_or_else(|| invalid(format!("cache.redis_url_env: environment variable {var} is not set")))?,
            )),
            (None, None) => None,
            (Some(_), Some(_)) => return Err(invalid("cache: set redis_url or redis_url_env, not both".into())),
        },
    };

    let mut complexity =
        Complexity { patterns: Vec::new(), long_prompt_bytes: raw.routing.complex_prompt_bytes.unwrap_or(8000) };
    for p in &raw.routing.complex_patterns {
        complexity
            .patterns
            .push(regex::Regex::new(p).map_err(|e| invalid(format!("routing.complex_patterns {p:?}: {e}")))?);
    }
    let mut routing_rules = Vec::new();
    for r in raw.routing_rules {
        let scope = if r.scope.is_empty() {
            None
        } else {
            Some(scope_of(r.scope).map_err(|e| invalid(format!("[[routing_rules]] {:?} scope: {e}", r.name)))?)
        };
        let complex = match r.complexity.as_deref() {
            None => None,
            Some("high") => Some(true),
            Some("low") => Some(false),
            Some(o) => {
                return Err(invalid(format!("[[routing_rules]] {:?}: complexity {o:?} is not low or high", r.name)))
            }
        };
        if r.route_to.is_empty() {
            return Err(invalid(format!("[[routing_rules]] {:?} needs route_to", r.name)));
        }
        routing_rules.push(RoutingRule {
            name: r.name,
            models: r.models,
            scope,
            max_prompt_bytes: r.max_prompt_bytes,
            has_tools: r.has_tools,
            complex,
            route_to: r.route_to,
        });
    }

    let semantic = match raw.semantic_cache {
        Some(sc) if sc.enabled => {
            let t = sc.threshold.unwrap_or_else(|| "0.95".into());
            let threshold: f32 =
                t.parse::<f32>().ok().filter(|x| (0.0..=1.0).contains(x)).ok_or_else(|| {
                    invalid(format!("semantic_cache.threshold {t:?} must be a number between 0 and 1"))
                })?;
            Some(SemanticConfig {
                embeddings_model: sc.embeddings_model,
                threshold,
                max_age_ms: i64::try_from(sc.max_age_ms.unwrap_or(86_400_000)).unwrap_or(i64::MAX),
                max_entries_per_tenant: sc.max_entries_per_tenant.unwrap_or(10_000),
                exclude_models: sc.exclude_models,
            })
        }
        _ => None,
    };

    if raw.ledger.retention_days == Some(0) {
        return Err(invalid("ledger.retention_days must be at least 1".into()));
    }
    let reconcile = match raw.reconcile {
        None => None,
        Some(r) => Some(reconcile_config(r, &providers).map_err(invalid)?),
    };
    let rate_cards = crate::chargeback::rate_cards_from_raw(raw.rate_cards).map_err(invalid)?;
    let usage_events = match raw.usage_events {
        None => None,
        Some(u) => Some(usage_events_config(u, env).map_err(invalid)?),
    };
    Ok(Config {
        reconcile,
        rate_cards,
        usage_events,
        retention_days: raw.ledger.retention_days,
        semantic,
        routing_rules,
        complexity,
        cache,
        circuit_failures: raw.routing.circuit_failures.unwrap_or(5).max(1),
        circuit_cooldown: Duration::from_millis(raw.routing.circuit_cooldown_ms.unwrap_or(30_000)),
        guardrails,
        access,
        admin_tokens,
        oidc,
        governance,
        anomalies: resolve_anomalies(&raw.anomalies).map_err(invalid)?,
        prices,
        ledger,
        ledger_enabled,
        server: ServerConfig {
            listen,
            admin_token,
            max_body_bytes,
            max_upload_bytes,
            auth,
            key_secret,
            implicit_routes: match &raw.server.implicit_routes {
                None => ImplicitRoutes::Prefix,
                Some(toml::Value::Boolean(true)) => ImplicitRoutes::Prefix,
                Some(toml::Value::Boolean(false)) => ImplicitRoutes::Off,
                Some(toml::Value::String(s)) if s == "prefix" => ImplicitRoutes::Prefix,
                Some(toml::Value::String(s)) if s == "known_models" => ImplicitRoutes::KnownModels,
                Some(other) => {
                    return Err(invalid(format!(
                        "server.implicit_routes {other} is not one of true, false, \"prefix\", \"known_models\""
                    )))
                }
            },
            metrics_token,
            limits,
        },
        storage,
        providers,
        routes,
        source: path.into(),
    })
}

fn resolve_anomalies(a: &RawAnomalies) -> Result<AnomalyConfig, String> {
    let min_history_days = a.min_history_days.unwrap_or(DEFAULT_ANOMALY_MIN_DAYS);
    if !(1..=60).contains(&min_history_days) {
        return Err(format!("anomalies.min_history_days {min_history_days} must be between 1 and 60"));
    }
    let min_excess = match a.min_excess_usd.as_deref() {
        None => DEFAULT_ANOMALY_MIN_EXCESS,
        Some(text) => text
            .parse::<Money>()
            .ok()
            .filter(|m| m.nanos() >= 0)
            .ok_or_else(|| format!("anomalies.min_excess_usd {text:?} is not an amount like \"1.00\""))?,
    };
    Ok(AnomalyConfig { min_history_days, min_excess })
}

fn resolve_limits(s: &RawServer) -> Result<ServerLimits, String> {
    let d = ServerLimits::default();
    let ms = |v: Option<u64>, name: &str, default: Duration| -> Result<Duration, String> {
        match v {
            None => Ok(default),
            Some(0) => Err(format!("server.{name} must be greater than 0")),
            Some(n) => Ok(Duration::from_millis(n)),
        }
    };
    let count = |v: Option<u64>, name: &str, default: usize| -> Result<usize, String> {
        match v {
            None => Ok(default),
            Some(0) => Err(format!("server.{name} must be greater than 0")),
            Some(n) => usize::try_from(n).map_err(|_| format!("server.{name} is too large")),
        }
    };
    Ok(ServerLimits {
        header_read_timeout: ms(s.header_read_timeout_ms, "header_read_timeout_ms", d.header_read_timeout)?,
        idle_timeout: ms(s.idle_timeout_ms, "idle_timeout_ms", d.idle_timeout)?,
        body_read_timeout: ms(s.body_read_timeout_ms, "body_read_timeout_ms", d.body_read_timeout)?,
        write_timeout: ms(s.write_timeout_ms, "write_timeout_ms", d.write_timeout)?,
        max_connections: count(s.max_connections, "max_connections", d.max_connections)?,
        max_in_flight: count(s.max_in_flight, "max_in_flight", d.max_in_flight)?,
        shutdown_timeout: ms(s.shutdown_timeout_ms, "shutdown_timeout_ms", d.shutdown_timeout)?,
    })
}

fn resolve_guardrails(g: RawGuardrails) -> Result<Guardrails, String> {
    let usd = |s: Option<String>, what: &str| -> Result<Option<Money>, String> {
        s.map(|v| v.parse::<Money>().map_err(|e| format!("guardrails.{what}: {e}"))).transpose()
    };
    let mut deny_patterns = Vec::new();
    for p in &g.deny_patterns {
        deny_patterns.push(regex::Regex::new(p).map_err(|e| format!("guardrails.deny_patterns {p:?}: {e}"))?);
    }
    let untagged_as_unattributed = match g.untagged.as_deref() {
        None | Some("reject") => false,
        Some("unattributed") => true,
        Some(o) => return Err(format!("guardrails.untagged {o:?} is not reject or unattributed")),
    };
    for t in &g.required_tags {
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b)) {
            return Err(format!("guardrails.required_tags: {t:?} is not a tag name"));
        }
    }
    Ok(Guardrails {
        max_input_tokens: g.max_input_tokens,
        max_output_tokens: g.max_output_tokens,
        required_tags: g.required_tags.iter().map(|t| t.to_ascii_lowercase()).collect(),
        untagged_as_unattributed,
        deny_patterns,
        max_calls_per_trace: g.max_calls_per_trace,
        max_usd_per_trace: usd(g.max_usd_per_trace, "max_usd_per_trace")?,
        max_calls_per_session: g.max_calls_per_session,
        max_usd_per_session: usd(g.max_usd_per_session, "max_usd_per_session")?,
    })
}

fn scope_of(m: std::collections::BTreeMap<String, String>) -> Result<crate::budget::Scope, String> {
    let s: Vec<String> = m.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    crate::budget::Scope::parse(&s.join(","))
}

fn resolve_governance(
    g: &RawGovernance,
    budgets: Vec<toml::Spanned<RawBudget>>,
    limits: Vec<toml::Spanned<RawRateLimit>>,
    alerts: Vec<RawAlert>,
    text: &str,
    env: &dyn Env,
) -> Result<GovernanceConfig, String> {
    use crate::budget::{parse_alert_at, Action, BudgetSpec, LimitKind, Period, RateLimitSpec, DEFAULT_ALERTS};
    let tz_name = g.timezone.clone().unwrap_or_else(|| "UTC".into());
    let tz: chrono_tz::Tz = tz_name
        .parse()
        .map_err(|_| format!("governance.timezone {tz_name:?} is not an IANA time zone (e.g. Europe/Berlin)"))?;
    let mut out = GovernanceConfig {
        tz,
        default_max_output_tokens: g.default_max_output_tokens.unwrap_or(4096).max(1),
        budgets: Vec::new(),
        limits: Vec::new(),
        webhooks: Vec::new(),
        lease_ms: match g.lease_ms {
            None => crate::budget::LEASE_MS,
            Some(ms) if (1_000..=86_400_000).contains(&ms) => ms as i64,
            Some(_) => return Err("governance.lease_ms must be between 1000 (1 s) and 86400000 (1 day)".into()),
        },
    };
    for sb in budgets {
        let at = line_of(text, sb.span());
        let b = sb.into_inner();
        let scope = scope_of(b.scope).map_err(|e| format!("{at}[[budgets]] scope: {e}"))?;
        let limit: Money = b.limit_usd.parse().map_err(|e| format!("{at}[[budgets]] limit_usd: {e}"))?;
        if limit.nanos() <= 0 {
            return Err(format!("{at}[[budgets]] limit_usd must be positive"));
        }
        let period = Period::parse(&b.period).map_err(|e| format!("{at}[[budgets]] {e}"))?;
        let action =
            Action::parse(b.action.as_deref().unwrap_or("block")).map_err(|e| format!("{at}[[budgets]] {e}"))?;
        let alert_at = match b.alert_at {
            None => DEFAULT_ALERTS.to_vec(),
            Some(v) => {
                let s: Vec<String> = v.iter().map(|f| f.to_string()).collect();
                parse_alert_at(&s.join(",")).map_err(|e| format!("{at}[[budgets]] {e}"))?
            }
        };
        let id = b.id.unwrap_or_else(|| format!("cfg:{scope}/{period}"));
        if out.budgets.iter().any(|x: &BudgetSpec| x.id == id) {
            return Err(format!("{at}[[budgets]] id {id:?} is defined twice"));
        }
        out.budgets.push(BudgetSpec { id, scope, limit, period, action, alert_at, block_unpriced: b.block_unpriced });
    }
    for sl in limits {
        let at = line_of(text, sl.span());
        let l = sl.into_inner();
        let scope = scope_of(l.scope).map_err(|e| format!("{at}[[rate_limits]] scope: {e}"))?;
        let base = l.id.unwrap_or_else(|| format!("cfg:{scope}"));
        let usd = |s: &str, what: &str| -> Result<i64, String> {
            let m: Money = s.parse().map_err(|e| format!("{at}[[rate_limits]] {what}: {e}"))?;
            if m.nanos() <= 0 {
                return Err(format!("{at}[[rate_limits]] {what} must be positive"));
            }
            Ok(m.nanos())
        };
        let mut specs = Vec::new();
        if let Some(n) = l.rpm {
            specs.push((LimitKind::Requests, n, 60_000, "rpm"));
        }
        if let Some(n) = l.tpm {
            specs.push((LimitKind::Tokens, n, 60_000, "tpm"));
        }
        if let Some(s) = &l.usd_per_minute {
            specs.push((LimitKind::Cost, usd(s, "usd_per_minute")?, 60_000, "usd_per_minute"));
        }
        if let Some(s) = &l.usd_per_hour {
            specs.push((LimitKind::Cost, usd(s, "usd_per_hour")?, 3_600_000, "usd_per_hour"));
        }
        if specs.is_empty() {
            return Err(format!("{at}[[rate_limits]] needs rpm, tpm, usd_per_minute or usd_per_hour"));
        }
        for (kind, amount, window_ms, name) in specs {
            if amount <= 0 {
                return Err(format!("{at}[[rate_limits]] {name} must be positive"));
            }
            out.limits.push(RateLimitSpec {
                id: format!("{base}/{name}"),
                scope: scope.clone(),
                kind,
                amount,
                window_ms,
            });
        }
    }
    for a in alerts {
        let url = match (a.url, a.url_env) {
            (Some(u), None) => u,
            (None, Some(var)) => {
                env.var(&var).ok_or_else(|| format!("[[alerts]] environment variable {var} (url_env) is not set"))?
            }
            _ => return Err("[[alerts]] needs exactly one of url, url_env".into()),
        };
        reqwest::Url::parse(&url).map_err(|_| "[[alerts]] url is not a URL".to_string())?;
        let slack = match a.format.as_deref() {
            None | Some("json") => false,
            Some("slack") => true,
            Some(f) => return Err(format!("[[alerts]] format {f:?} is not json or slack")),
        };
        out.webhooks.push(Webhook { url: Secret(url), slack });
    }
    Ok(out)
}

/// What to do when the spool holds `max_bytes` not yet in the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFull {
    /// Hold each new row's acknowledgement (and so its response's last
    /// byte) until the database catches up.
    Block,
    /// Refuse new requests with 429 `rate_limited` until it catches up.
    Reject,
}

#[derive(Debug, Clone)]
pub struct SpoolConfig {
    pub dir: std::path::PathBuf,
    pub max_bytes: u64,
    pub on_full: OnFull,
    /// `fdatasync` each batch (survives power loss, not only process death).
    pub fsync: bool,
}

impl SpoolConfig {
    pub fn beside(db_path: &std::path::Path) -> SpoolConfig {
        let mut dir = db_path.as_os_str().to_owned();
        dir.push(".spool");
        SpoolConfig {
            dir: std::path::PathBuf::from(dir),
            max_bytes: 256 * 1024 * 1024,
            on_full: OnFull::Block,
            fsync: false,
        }
    }
}

/// What a request asks of the cache (`x-tollgate-cache`, else the configured default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheMode {
    Off,
    /// Read and write.
    On,
    Read,
    Write,
}

impl CacheMode {
    pub fn parse(s: &str) -> Option<CacheMode> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" => Some(CacheMode::Off),
            "on" => Some(CacheMode::On),
            "read" => Some(CacheMode::Read),
            "write" => Some(CacheMode::Write),
            _ => None,
        }
    }
    pub fn reads(self) -> bool {
        matches!(self, CacheMode::On | CacheMode::Read)
    }
    pub fn writes(self) -> bool {
        matches!(self, CacheMode::On | CacheMode::Write)
    }
}

/// The opt-in semantic cache (`[semantic_cache]`).
#[derive(Debug, Clone)]
pub struct SemanticConfig {
    pub embeddings_model: String,
    /// Cosine similarity at or above which a cached answer is reused.
    pub threshold: f32,
    pub max_age_ms: i64,
    pub max_entries_per_tenant: usize,
    /// Requested models never answered from the semantic cache.
    pub exclude_models: Vec<String>,
}

/// The file of a SQLite storage URL: `sqlite://path`, `sqlite:path` or a bare path.
pub fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    if let Some(p) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
        return (!p.is_empty()).then(|| std::path::PathBuf::from(p));
    }
    (!url.contains("://")).then(|| std::path::PathBuf::from(url))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect()
    }

    #[test]
    fn prices_from_the_file_override_the_catalog() {
        let text = "[[prices]]\nprovider = \"local\"\nmodel = \"llama-3.1-8b\"\ngpu_hour_usd = \"2.00\"\ntokens_per_gpu_hour = 4000000\n";
        let c = Config::from_toml(text, "p.toml", &env(&[])).unwrap();
        let cat = c.prices.unwrap();
        let e = cat.lookup(Some("local"), "llama-3.1-8b", chrono::Utc::now()).unwrap();
        let u = tollgate_units::Usage { input: 1_000_000, ..Default::default() };
        // $2.00 per GPU-hour / 4M tokens per hour = $0.50 per million tokens.
        assert_eq!(
            tollgate_pricing::cost(e, &u, tollgate_pricing::ServiceTier::Standard).total.to_string(),
            "0.500000000"
        );
        let bad = "[[prices]]\nprovider = \"x\"\nmodel = \"y\"\ninput = \"abc\"\n";
        assert!(Config::from_toml(bad, "p.toml", &env(&[])).is_err());
    }

    const FULL: &str = r#"
[server]
listen = "127.0.0.1:9090"
max_body_bytes = 1024

[storage]
url = "sqlite://x.db"

[[providers]]
name = "openai"
kind = "openai"
api_key_env = "OPENAI_API_KEY"
timeout_ms = 5000
max_retries = 1

[[providers]]
name = "local"
kind = "openai_compatible"
base_url = "http://127.0.0.1:11434/v1/"

[[models]]
name = "gpt-4o-mini"
targets = [{ provider = "openai", model = "gpt-4o-mini" }]
fallbacks = ["llama"]

[[models]]
name = "llama"
targets = [{ provider = "local", model = "llama3.1:8b" }]
"#;

    #[test]
    fn full_file_resolves() {
        let c = Config::from_toml(FULL, "t.toml", &env(&[("OPENAI_API_KEY", "sk-test")])).unwrap();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:9090");
        assert_eq!(c.server.max_body_bytes, 1024);
        assert_eq!(c.storage.url, "sqlite://x.db");
        assert_eq!(c.providers[0].base_url, "https://api.openai.com/v1");
        assert_eq!(c.providers[0].api_key.as_ref().unwrap().expose(), "sk-test");
        assert_eq!(c.providers[0].timeout, Duration::from_millis(5000));
        assert_eq!(c.providers[1].base_url, "http://127.0.0.1:11434/v1");
        assert_eq!(c.routes["gpt-4o-mini"].fallbacks, vec!["llama".to_string()]);
        assert_eq!(c.routes["llama"].targets[0].provider, 1);
        assert!(!format!("{:?}", c).contains("sk-test"), "secrets never in Debug");
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let text = "[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n";
        let e = Config::from_toml(text, "my.toml", &env(&[])).unwrap_err().to_string();
        assert!(e.starts_with("my.toml: "), "{e}");
        assert!(e.contains("line 3"), "{e}");
        assert!(e.contains("lisen"), "{e}");
    }

    #[test]
    fn refusals_are_clear() {
        let cases = [
            (
                "[[providers]]\nname = \"o\"\nkind = \"openai\"\napi_key = \"sk-live\"\n",
                "line 4: provider \"o\": a literal api_key is refused",
            ),
            ("[[providers]]\nname = \"o\"\nkind = \"opnai\"\n", "line 3: provider \"o\": kind \"opnai\" is not one of"),
            (
                "[[providers]]\nname = \"o\"\nkind = \"openai_compatible\"\nbase_url = \"http://10.0.0.1/v1\"\n",
                "plain http to a non-loopback host",
            ),
            ("[[providers]]\nname = \"o\"\nkind = \"openai_compatible\"\n", "needs a base_url"),
            (
                "[[providers]]\nname = \"o\"\nkind = \"openai\"\napi_key_env = \"NOPE\"\n",
                "environment variable NOPE (api_key_env) is not set",
            ),
            (
                "[[models]]\nname = \"m\"\ntargets = [{ provider = \"x\", model = \"y\" }]\n",
                "target provider \"x\" is not defined",
            ),
            ("[server]\nauth = \"open\"\n", "server.auth \"open\""),
            ("[server]\nlisten = \"nope\"\n", "server.listen \"nope\""),
            (
                "[[budgets]]\nscope = { team = \"g\" }\nlimit_usd = \"-5\"\nperiod = \"month\"\n",
                "line 1: [[budgets]] limit_usd must be positive",
            ),
            (
                "[[budgets]]\nscope = { team = \"g\" }\nlimit_usd = \"5\"\nperiod = \"year\"\n",
                "is not day, week, month or rolling",
            ),
            ("[governance]\ntimezone = \"Mars/Olympus\"\n", "not an IANA time zone"),
            ("[[rate_limits]]\nscope = { team = \"g\" }\n", "needs rpm, tpm"),
            (
                "[storage]\ncounters_url = \"redis://127.0.0.1:6379\"\ncounters_url_env = \"R\"\n",
                "set one of storage.counters_url and storage.counters_url_env",
            ),
            ("[storage]\ncounters_url_env = \"NOPE\"\n", "storage.counters_url_env names \"NOPE\", which is not set"),
            ("[storage]\ncounters_url = \"memcached://h:1\"\n", "is not a redis://HOST:PORT/DB URL"),
            ("[storage]\non_counters_down = \"local\"\n", "needs storage.local_share_percent, 1 to 100"),
            ("[storage]\non_counters_down = \"open\"\n", "is not one of \"fail_closed\", \"local\""),
            ("[storage]\nurl = \"postgres://tg:pw@10.0.0.5:5432/tg\"\n", "ledger.spool_dir is required"),
            ("[storage]\nurl = \"mysql://tg:hunter2@h/db\"\n", "\"mysql://tg:***@h/db\" is not supported"),
            ("[governance]\nlease_ms = 10\n", "governance.lease_ms must be between 1000"),
            (
                "[storage]\nanalytics_url = \"http://u:sk-live@127.0.0.1:8123/db\"\n",
                "storage.analytics_url \"http://u:***@127.0.0.1:8123/db\" is not a clickhouse://HOST:PORT/DATABASE URL",
            ),
        ];
        for (text, want) in cases {
            let e = Config::from_toml(text, "c.toml", &env(&[])).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: got {e}");
            assert!(!e.contains("sk-live"), "secret echoed: {e}");
        }
        let ok = "[[providers]]\nname = \"o\"\nkind = \"openai_compatible\"\nbase_url = \"http://10.0.0.1/v1\"\nallow_http = true\n";
        assert!(Config::from_toml(ok, "c.toml", &env(&[])).is_ok());
        let ch = "[storage]\nanalytics_url = \"clickhouse://127.0.0.1:8123/tollgate\"\n";
        let c = Config::from_toml(ch, "c.toml", &env(&[])).unwrap();
        assert_eq!(c.storage.analytics_url.as_deref(), Some("clickhouse://127.0.0.1:8123/tollgate"));
        assert!(Config::from_toml("", "c.toml", &env(&[])).unwrap().storage.analytics_url.is_none());
    }

    #[test]
    fn oidc_sign_in_is_read_and_checked() {
        let base = |extra: &str| {
            format!(
                "[oidc]\nissuer = \"https://idp.example.com/realms/acme\"\nclient_id = \"tollgate\"\n\
                 client_secret_env = \"OIDC_SECRET\"\nredirect_url = \"https://gw.example/ui/auth/callback\"\n{extra}"
            )
        };
        let roles = "[[oidc.roles]]\ngroup = \"admins\"\nrole = \"admin\"\n\
                     [[oidc.roles]]\ngroup = \"growth\"\nrole = \"team_admin\"\nteam = \"growth\"\n\
                     [[oidc.roles]]\ngroup = \"fin\"\nrole = \"viewer\"\n";
        let c = Config::from_toml(&base(roles), "c.toml", &env(&[("OIDC_SECRET", "s3cret")])).unwrap();
        let o = c.oidc.unwrap();
        assert_eq!(o.issuer, "https://idp.example.com/realms/acme");
        assert_eq!(o.scopes, ["openid", "profile", "email"]);
        assert_eq!(o.groups_claim, "groups");
        assert_eq!(o.session_ttl, Duration::from_secs(8 * 3600));
        assert!(o.secure_cookies());
        assert!(!format!("{o:?}").contains("s3cret"));
        let g = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // The most privileged role wins, whatever the order of groups.
        assert_eq!(o.role_for(&g(&["fin", "admins"])), Some(Role::Admin));
        assert_eq!(o.role_for(&g(&["fin", "growth"])), Some(Role::TeamAdmin("growth".into())));
        assert_eq!(o.role_for(&g(&["fin"])), Some(Role::Viewer));
        assert_eq!(o.role_for(&g(&["other"])), None);
        let cases = [
            (base(roles), vec![], "OIDC_SECRET is not set"),
            (base(""), vec![("OIDC_SECRET", "s")], "at least one [[oidc.roles]]"),
            (base(&format!("session_ttl = \"10s\"\n{roles}")), vec![("OIDC_SECRET", "s")], "session_ttl"),
            (base(&format!("scopes = [\"profile\"]\n{roles}")), vec![("OIDC_SECRET", "s")], "must include \"openid\""),
            (
                base("[[oidc.roles]]\ngroup = \"x\"\nrole = \"team_admin\"\n"),
                vec![("OIDC_SECRET", "s")],
                "team_admin needs a team",
            ),
            (
                base(roles).replace("https://idp.example.com", "http://idp.example.com"),
                vec![("OIDC_SECRET", "s")],
                "plain http to a non-loopback host",
            ),
            (
                base(roles).replace("/ui/auth/callback", "/callback"),
                vec![("OIDC_SECRET", "s")],
                "ending in /ui/auth/callback",
            ),
        ];
        for (text, vars, want) in cases {
            let e = Config::from_toml(&text, "c.toml", &env(&vars)).unwrap_err().to_string();
            assert!(e.contains(want), "{want}: got {e}");
        }
    }

    #[test]
    fn zero_config_reads_the_environment() {
        let c = Config::zero_config(&env(&[("OPENAI_API_KEY", "a"), ("ANTHROPIC_API_KEY", "b")])).unwrap();
        let names: Vec<_> = c.providers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["openai", "anthropic"]);
        assert_eq!(c.server.implicit_routes, ImplicitRoutes::Prefix);
        assert_eq!(c.server.listen.to_string(), DEFAULT_LISTEN);
        assert!(Config::zero_config(&env(&[])).unwrap().providers.is_empty());
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    /// The example file in the repository stays valid.
    #[test]
    fn example_config_resolves() {
        let text = include_str!("../../../examples/tollgate.toml");
        let env: HashMap<String, String> = [
            ("OPENAI_API_KEY", "sk-x"),
            ("ANTHROPIC_API_KEY", "sk-y"),
            ("SLACK_WEBHOOK_URL", "https://hooks.slack.com/services/T/B/X"),
            ("GROWTH_ADMIN_TOKEN", "t"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect();
        let c = Config::from_toml(text, "examples/tollgate.toml", &env).unwrap();
        assert_eq!(c.governance.budgets.len(), 1);
        assert_eq!(c.governance.limits.len(), 2);
        assert_eq!(c.access.len(), 1);
        assert_eq!(c.admin_tokens[0].role, Role::TeamAdmin("growth".into()));
        assert!(c.prices.is_some());
    }
}

#[cfg(test)]
mod anomaly_config_tests {
    use super::*;

    #[test]
    fn anomaly_thresholds_default_and_parse() {
        let env: HashMap<String, String> = HashMap::new();
        let c = Config::from_toml("", "c.toml", &env).unwrap();
        assert_eq!(c.anomalies, AnomalyConfig { min_history_days: 3, min_excess: Money::from_usd(1) });
        assert_eq!(c.anomalies, AnomalyConfig::default());
        let text = "[anomalies]\nmin_history_days = 7\nmin_excess_usd = \"2.50\"\n";
        let c = Config::from_toml(text, "c.toml", &env).unwrap();
        assert_eq!(c.anomalies, AnomalyConfig { min_history_days: 7, min_excess: Money::from_nanos(2_500_000_000) });
        for (text, want) in [
            ("[anomalies]\nmin_history_days = 0\n", "anomalies.min_history_days"),
            ("[anomalies]\nmin_excess_usd = \"-1\"\n", "anomalies.min_excess_usd"),
            ("[anomalies]\nmin_excess_usd = \"lots\"\n", "anomalies.min_excess_usd"),
            ("[anomalies]\nmin_excess = \"1\"\n", "min_excess"),
        ] {
            let e = Config::from_toml(text, "c.toml", &env).unwrap_err().to_string();
            assert!(e.contains(want), "{want}: got {e}");
        }
    }
}
