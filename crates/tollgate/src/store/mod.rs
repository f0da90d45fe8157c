//! Storage, by capability: keys, the ledger sink, the request log, reports,
//! governance, outcomes, batches and the audit log, each a trait.
//!
//! Every capability is a trait of async calls (boxed futures, so a store can
//! sit behind `Arc<dyn …>`), except the ledger sink, which is called only
//! from the ledger loader's own thread. [`Stores`] holds one of each, opened
//! from `[storage] url`. SQLite is the embedded implementation: its blocking
//! calls run on tokio's blocking pool. With `[storage] analytics_url`, a
//! ClickHouse database also gets every ledger row ([`Tee`]) and serves the
//! request log and the reports. All SQL lives under this module.

mod adapter;
pub mod clickhouse;
pub mod counters;
pub mod fallback_counters;
mod outcomes;
pub mod postgres;
mod reports;
pub mod sql;
pub mod sqlite;

use std::collections::BTreeMap;

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::audit::{AuditEntry, AuditPage, AuditQuery};
use crate::budget::{BudgetSpec, RateLimitSpec};
use crate::outcome::{CostQuery, CostReport, Outcome};
use crate::query::{PromptCacheRow, SpendQuery, SpendReport};
use crate::reconciliation::ReconLine;
use crate::record::LedgerRow;
use crate::session::Session;
pub use adapter::Sqlite;
pub use sqlite::BatchOwner;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(
        "storage url {0:?} is not supported (use sqlite://PATH or postgres://USER@HOST:PORT/DB; \
         analytics_url: clickhouse://HOST:PORT/DATABASE)"
    )]
    UnsupportedUrl(String),
    #[error("PostgreSQL: {0}")]
    Postgres(String),
    #[error("ClickHouse: {0}")]
    ClickHouse(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("corrupt value in column {0}")]
    Corrupt(&'static str),
    #[error("storage task failed: {0}")]
    Task(String),
    #[error(transparent)]
    Counters(#[from] counters::CounterError),
}

/// Characters of a key's secret kept (and shown) to recognise it: `tg_` and
/// two of the 40 random ones, so the stored prefix gives almost nothing away.
pub const KEY_PREFIX_SHOWN: usize = 5;

/// A virtual key as stored: never the secret, only its keyed hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub id: String,
    pub name: String,
    /// The first characters of the secret, for people to recognise it (`tg_AbC1…`).
    pub prefix: String,
    /// Tags the request may override (team, user, env, …).
    pub default_tags: BTreeMap<String, String>,
    /// Tags the request cannot override.
    pub enforced_tags: BTreeMap<String, String>,
    /// Allowed model names or patterns (`claude-*`); empty = all.
    pub models: Vec<String>,
    pub created_ms: i64,
    pub expires_ms: Option<i64>,
    pub revoked_ms: Option<i64>,
    /// The secret it had before its last rotation, while that one still works.
    pub previous: Option<PreviousSecret>,
}

/// A rotated key's former secret: accepted until `valid_until_ms` (the grace
/// period chosen at rotation), then refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviousSecret {
    pub prefix: String,
    pub valid_until_ms: i64,
}

/// A key found by the hash of a presented secret, and which of its secrets
/// that was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMatch {
    pub record: KeyRecord,
    /// The secret presented is the key's previous one (valid only within its grace period).
    pub previous_secret: bool,
}

/// An alert recorded as fired: a budget crossed a threshold in a period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FiredAlert {
    pub budget_id: String,
    pub period_start_ms: i64,
    /// Thousandths of the limit (800 = 80 %).
    pub threshold: u32,
    pub fired_ms: i64,
}

/// A key to create (the secret's hash is computed by `auth`).
#[derive(Debug, Clone)]
pub struct NewKey {
    pub record: KeyRecord,
    pub hash: [u8; 32],
}

/// A price catalog applied to the running gateways (`tollgate prices update`,
/// `POST /admin/v1/prices`), kept in order so every gateway, and a later
/// re-price, rebuilds the same catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceUpdate {
    /// Assigned by the store, increasing.
    pub id: i64,
    pub applied_ms: i64,
    /// Where the catalog came from (a file name or URL).
    pub source: String,
    /// Who applied it: "cli" or the admin token's name.
    pub applied_by: String,
    /// The catalog's text, in tollgate's catalog TOML format.
    pub catalog: String,
}

/// What a store call returns: a boxed future, so stores can sit behind `Arc<dyn …>`.
pub type StoreFuture<'a, T> = futures_util::future::BoxFuture<'a, Result<T, StoreError>>;

/// Virtual keys.
pub trait KeyStore: Send + Sync {
    fn insert_key(&self, key: NewKey) -> StoreFuture<'_, ()>;
    /// The key whose current secret, or previous secret (kept after a
    /// rotation until its grace period ends), hashes to `hash`.
    fn key_by_hash(&self, hash: [u8; 32]) -> StoreFuture<'_, Option<KeyMatch>>;
    fn list_keys(&self) -> StoreFuture<'_, Vec<KeyRecord>>;
    /// Marks the key revoked; false when no such key.
    fn revoke_key(&self, id: String, now_ms: i64) -> StoreFuture<'_, bool>;
    /// Gives a key a new secret (`hash`, shown as `prefix`); its current
    /// secret becomes the previous one, accepted until `previous_valid_until_ms`
    /// (an older previous secret is forgotten). False when there is no such
    /// key, or it is revoked.
    fn rotate_key(
        &self,
        id: String,
        hash: [u8; 32],
        prefix: String,
        previous_valid_until_ms: i64,
    ) -> StoreFuture<'_, bool>;
    /// The server-side secret that keys the key hashes, created on first use.
    fn key_hash_secret(&self) -> StoreFuture<'_, Vec<u8>>;
}

/// Where the ledger loader puts rows. Blocking on purpose: it is called only
/// from the loader's own thread, which exists to wait on the database.
pub trait LedgerSink: Send + Sync {
    /// Stores the rows in one transaction; a row whose request id is already
    /// present is skipped (idempotent replay).
    fn append(&self, rows: &[&LedgerRow]) -> Result<(), StoreError>;
}

/// Two sinks that both get every row: the primary store first, then the
/// analytics store. An error from either fails the batch, and the loader
/// sends the whole batch again; both sides take a replay in their stride (the
/// primary skips request ids it has, ClickHouse collapses copies).
pub struct Tee {
    pub primary: Arc<dyn LedgerSink>,
    pub analytics: Arc<dyn LedgerSink>,
}

impl LedgerSink for Tee {
    fn append(&self, rows: &[&LedgerRow]) -> Result<(), StoreError> {
        self.primary.append(rows)?;
        self.analytics.append(rows)
    }
}

/// Told of rows once they are durable (the usage-event stream). Called on
/// the ledger loader's thread: it must never block (queue, don't send).
pub trait RowTap: Send + Sync {
    fn stored(&self, rows: &[&LedgerRow]);
}

/// A sink whose rows, once `inner` has stored them, go to a [`RowTap`]. A
/// batch `inner` refuses reaches the tap only when the loader's retry stores
/// it; a batch replayed from the spool reaches it again (consumers dedup by
/// request id).
pub struct Tapped {
    pub inner: Arc<dyn LedgerSink>,
    pub tap: Arc<dyn RowTap>,
}

impl LedgerSink for Tapped {
    fn append(&self, rows: &[&LedgerRow]) -> Result<(), StoreError> {
        self.inner.append(rows)?;
        self.tap.stored(rows);
        Ok(())
    }
}

/// The request log: rows as they were written.
pub trait RequestLog: Send + Sync {
    /// Newest first, with an opaque cursor from the previous page.
    fn requests(&self, q: RequestQuery) -> StoreFuture<'_, RequestPage>;
    /// One request's row.
    fn request(&self, id: String) -> StoreFuture<'_, Option<LedgerRow>>;
    /// Deletes raw rows older than `before_ms` (aggregates kept); the number deleted.
    fn prune_raw(&self, before_ms: i64) -> StoreFuture<'_, u64>;
    /// Rows with `from_ms <= time < to_ms`, oldest first (by time, then
    /// request id), after `after` (the last row of the previous page), at
    /// most `limit`: every row of a window, a page at a time (what-if replay).
    fn rows_between(
        &self,
        from_ms: i64,
        to_ms: i64,
        after: Option<(i64, String)>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<LedgerRow>>;
}

/// Spend reports over the ledger.
pub trait Reports: Send + Sync {
    fn spend(&self, q: SpendQuery) -> StoreFuture<'_, SpendReport>;
    fn prompt_cache(&self, by: String, from_ms: i64) -> StoreFuture<'_, Vec<PromptCacheRow>>;
    /// Settled spend per second since `from_ms` for rows matching `filters`.
    fn spend_per_second(&self, filters: Vec<(String, String)>, from_ms: i64) -> StoreFuture<'_, Vec<(i64, i64)>>;
    /// [`Reports::spend_per_second`] for many scopes at once (budgets seeded
    /// at start-up), answers in the order asked. A store that can answer them
    /// in one trip overrides this; the default asks one at a time.
    fn spend_per_second_many(&self, asks: Vec<(Vec<(String, String)>, i64)>) -> StoreFuture<'_, Vec<Vec<(i64, i64)>>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(asks.len());
            for (filters, from_ms) in asks {
                out.push(self.spend_per_second(filters, from_ms).await?);
            }
            Ok(out)
        })
    }
    /// Models with rows but no price: (provider, model, requests).
    fn unpriced_models(&self) -> StoreFuture<'_, Vec<(String, String, i64)>>;
}

/// Budgets, rate limits, the alerts fired and the price updates, as set through the API or CLI.
pub trait GovernanceStore: Send + Sync {
    fn upsert_budget(&self, b: BudgetSpec, now_ms: i64) -> StoreFuture<'_, ()>;
    fn delete_budget(&self, id: String) -> StoreFuture<'_, bool>;
    fn list_budgets(&self) -> StoreFuture<'_, Vec<BudgetSpec>>;
    fn upsert_limit(&self, l: RateLimitSpec, now_ms: i64) -> StoreFuture<'_, ()>;
    fn list_limits(&self) -> StoreFuture<'_, Vec<RateLimitSpec>>;
    /// Changes whenever a budget or limit changes (for replicas to notice).
    fn governance_version(&self) -> StoreFuture<'_, (i64, i64, i64, i64)>;
    /// Records an alert once per budget, period and threshold; false when already recorded.
    fn record_alert(
        &self,
        budget_id: String,
        period_start_ms: i64,
        threshold: u32,
        now_ms: i64,
    ) -> StoreFuture<'_, bool>;
    fn fired_alerts(&self, budget_id: String, period_start_ms: i64) -> StoreFuture<'_, BTreeSet<u32>>;
    /// The alerts fired most recently, newest first.
    fn recent_alerts(&self, limit: usize) -> StoreFuture<'_, Vec<FiredAlert>>;
    /// Every alert fired for a period starting at `period_start_from_ms` or
    /// later (one read for many budgets at start-up).
    fn alerts_fired_since(&self, period_start_from_ms: i64) -> StoreFuture<'_, Vec<FiredAlert>>;
    /// Appends a price update; returns its id.
    fn insert_price_update(
        &self,
        source: String,
        applied_by: String,
        catalog: String,
        now_ms: i64,
    ) -> StoreFuture<'_, i64>;
    /// Every price update, oldest first.
    fn price_updates(&self) -> StoreFuture<'_, Vec<PriceUpdate>>;
    /// The id of the newest price update, 0 when there is none (cheap: polled every 2 s by every gateway).
    fn price_update_version(&self) -> StoreFuture<'_, i64>;
}

/// Reported outcomes and cost per outcome.
pub trait OutcomeStore: Send + Sync {
    fn insert_outcome(&self, o: Outcome) -> StoreFuture<'_, ()>;
    fn list_outcomes(&self, limit: usize) -> StoreFuture<'_, Vec<Outcome>>;
    fn outcome_cost(&self, q: CostQuery) -> StoreFuture<'_, CostReport>;
}

/// Owners and bookkeeping of batch-API objects.
pub trait BatchStore: Send + Sync {
    fn record_batch_object(
        &self,
        id: String,
        kind: &'static str,
        owner: BatchOwner,
        now_ms: i64,
    ) -> StoreFuture<'_, ()>;
    fn batch_object_owner(&self, id: String) -> StoreFuture<'_, Option<BatchOwner>>;
    fn record_batch(
        &self,
        id: String,
        provider: String,
        key_id: String,
        attribution: String,
        now_ms: i64,
    ) -> StoreFuture<'_, ()>;
    /// A batch's provider, owner key and attribution (JSON).
    fn batch(&self, id: String) -> StoreFuture<'_, Option<(String, String, String)>>;
    fn record_batch_file(&self, file_id: String, batch_id: String) -> StoreFuture<'_, ()>;
    fn batch_of_file(&self, file_id: String) -> StoreFuture<'_, Option<String>>;
}

/// Who changed keys, budgets, limits, prices and the configuration: an
/// append-only log, kept by the primary store (never the analytics store).
pub trait AuditLog: Send + Sync {
    /// Appends an entry as given (its `id` is ignored; callers scrub it
    /// first, see [`Stores::record_audit`]); returns the id it was given.
    fn record(&self, entry: AuditEntry) -> StoreFuture<'_, i64>;
    /// The entries `q` asks for, newest first (oldest first with
    /// `q.oldest_first`), a page at a time.
    fn list(&self, q: AuditQuery) -> StoreFuture<'_, AuditPage>;
}

/// Dashboard sign-in sessions (shared by every replica on the database, so
/// a session works on any of them and a revocation reaches them all).
pub trait SessionStore: Send + Sync {
    fn insert_session(&self, s: Session) -> StoreFuture<'_, ()>;
    /// The session whose id hashes to `id_hash`, revoked or not.
    fn session(&self, id_hash: [u8; 32]) -> StoreFuture<'_, Option<Session>>;
    /// Sessions not revoked and not expired at `now_ms`, newest first.
    fn active_sessions(&self, now_ms: i64) -> StoreFuture<'_, Vec<Session>>;
    /// Revokes the session with this handle; false when there is none or it
    /// was already revoked.
    fn revoke_session(&self, handle: String, now_ms: i64) -> StoreFuture<'_, bool>;
    /// Deletes sessions that expired or were revoked before `before_ms`.
    fn prune_sessions(&self, before_ms: i64) -> StoreFuture<'_, u64>;
}

/// Reconciliation results: the latest run's lines per provider and UTC day
/// (a new run over some days replaces those days' lines).
pub trait ReconciliationStore: Send + Sync {
    /// Replaces `provider`'s lines of the days `from_day..=to_day`
    /// (`YYYY-MM-DD`) with `lines`, stamped `now_ms`.
    fn save_reconciliation(
        &self,
        provider: String,
        from_day: String,
        to_day: String,
        lines: Vec<ReconLine>,
        now_ms: i64,
    ) -> StoreFuture<'_, ()>;
    /// The lines of the days `from_day..=to_day`, of one provider or all,
    /// sorted by day, provider, kind, model and account.
    fn reconciliation(
        &self,
        provider: Option<String>,
        from_day: String,
        to_day: String,
    ) -> StoreFuture<'_, Vec<ReconLine>>;
}

/// Every capability, each behind its trait, opened from `[storage] url`.
#[derive(Clone)]
pub struct Stores {
    pub keys: Arc<dyn KeyStore>,
    pub ledger: Arc<dyn LedgerSink>,
    pub requests: Arc<dyn RequestLog>,
    /// Where `[ledger] retention_days` deletes raw rows: the primary store
    /// (whose hourly rollup keeps their sums). An analytics store, when there
    /// is one, keeps its history.
    pub retained: Arc<dyn RequestLog>,
    pub reports: Arc<dyn Reports>,
    pub governance: Arc<dyn GovernanceStore>,
    pub outcomes: Arc<dyn OutcomeStore>,
    pub batches: Arc<dyn BatchStore>,
    /// The audit log (always the primary store).
    pub audit: Arc<dyn AuditLog>,
    /// Dashboard sign-in sessions (always the primary store).
    pub sessions: Arc<dyn SessionStore>,
    /// Reconciliation results (always the primary store).
    pub reconciliation: Arc<dyn ReconciliationStore>,
    /// The analytics store, when `[storage] analytics_url` names one (its
    /// hourly rollup is kept up to date by the server).
    pub analytics: Option<Arc<clickhouse::ClickHouse>>,
    /// Budget and rate counters (`[storage] counters_url`; in this process when unset).
    pub counters: Arc<dyn counters::CounterStore>,
    /// The embedded database's file, when there is one (the spool goes beside it).
    pub file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores").field("file", &self.file).finish()
    }
}

impl Stores {
    /// Opens the storage a URL names: `postgres://USER@HOST:PORT/DB` (the
    /// shared store of several replicas) or `sqlite://PATH` (or a bare path).
    /// Counters are this process's own; see [`Stores::with_counters`].
    pub async fn open(url: &str) -> Result<Stores, StoreError> {
        if postgres::is_postgres_url(url) {
            return Ok(Stores::postgres(Arc::new(postgres::Postgres::open(url).await?)));
        }
        let url = url.to_string();
        let db = tokio::task::spawn_blocking(move || sqlite::SqliteStore::open(&url))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))??;
        Ok(Stores::sqlite(Arc::new(db)))
    }

    /// Opens `[storage]`: the database, the shared counters when
    /// `counters_url` names a Redis, and the analytics store when
    /// `analytics_url` names a ClickHouse.
    pub async fn open_config(storage: &crate::config::StorageConfig) -> Result<Stores, StoreError> {
        let mut stores = Stores::open(&storage.url).await?;
        if let Some(url) = &storage.counters_url {
            let redis: Arc<dyn counters::CounterStore> =
                Arc::new(counters::RedisCounters::new(url.expose(), &storage.counters_prefix)?);
            stores = stores.with_counters(match storage.on_counters_down {
                crate::config::CountersDown::FailClosed => redis,
                crate::config::CountersDown::Local { share_percent } => {
                    Arc::new(fallback_counters::FallbackCounters::new(redis, share_percent))
                }
            });
        }
        if let Some(url) = &storage.analytics_url {
            stores = stores.with_analytics(Arc::new(clickhouse::ClickHouse::open(url).await?));
        }
        Ok(stores)
    }

    /// The same stores with an analytics store: every ledger row goes to the
    /// primary and then to `analytics` ([`Tee`]), and the request log and the
    /// reports read `analytics`; keys, governance, outcomes, batches and the
    /// audit log stay on the primary (outcome costs join the primary's own ledger).
    pub fn with_analytics(mut self, analytics: Arc<clickhouse::ClickHouse>) -> Stores {
        self.ledger = Arc::new(Tee { primary: self.ledger, analytics: analytics.clone() });
        self.requests = analytics.clone();
        self.reports = analytics.clone();
        self.analytics = Some(analytics);
        self
    }

    /// The same stores with every ledger row, once stored (in the primary
    /// and the analytics store alike), also handed to `tap` ([`Tapped`]): the
    /// usage-event stream (`[usage_events]`).
    pub fn with_usage_events(mut self, tap: Arc<dyn RowTap>) -> Stores {
        self.ledger = Arc::new(Tapped { inner: self.ledger, tap });
        self
    }

    /// Records a change in the audit log, with secret-looking fields scrubbed
    /// from its states ([`crate::audit::scrub`]). Never fails the change it
    /// records: an entry the store cannot take is logged (a warning with the
    /// entry's who, what and target) and dropped. Returns the id when stored.
    pub async fn record_audit(&self, entry: AuditEntry) -> Option<i64> {
        let entry = entry.scrubbed();
        let (actor, action, target) = (entry.actor.clone(), entry.action.clone(), entry.target.clone());
        match self.audit.record(entry).await {
            Ok(id) => Some(id),
            Err(error) => {
                tracing::warn!(%error, %actor, %action, %target, "cannot write the audit log entry");
                None
            }
        }
    }

    /// The same stores with other budget and rate counters.
    pub fn with_counters(mut self, counters: Arc<dyn counters::CounterStore>) -> Stores {
        self.counters = counters;
        self
    }

    /// Every capability served by one PostgreSQL database (no local file:
    /// the ledger spool's directory comes from `[ledger] spool_dir`).
    pub fn postgres(db: Arc<postgres::Postgres>) -> Stores {
        Stores {
            keys: db.clone(),
            ledger: db.clone(),
            requests: db.clone(),
            retained: db.clone(),
            reports: db.clone(),
            governance: db.clone(),
            outcomes: db.clone(),
            batches: db.clone(),
            audit: db.clone(),
            sessions: db.clone(),
            reconciliation: db,
            counters: Arc::new(counters::MemoryCounters::default()),
            analytics: None,
            file: None,
        }
    }

    /// Every capability served by one embedded SQLite database.
    pub fn sqlite(db: Arc<sqlite::SqliteStore>) -> Stores {
        let file = Some(db.path().to_path_buf());
        let s = Arc::new(adapter::Sqlite(db));
        Stores {
            keys: s.clone(),
            ledger: s.clone(),
            requests: s.clone(),
            retained: s.clone(),
            reports: s.clone(),
            governance: s.clone(),
            outcomes: s.clone(),
            batches: s.clone(),
            audit: s.clone(),
            sessions: s.clone(),
            reconciliation: s,
            counters: Arc::new(counters::MemoryCounters::default()),
            analytics: None,
            file,
        }
    }
}

pub use crate::query::{RequestPage, RequestQuery};
