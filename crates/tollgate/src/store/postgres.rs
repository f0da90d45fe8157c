//! The shared store for several replicas: PostgreSQL, through tokio-postgres
//! with a deadpool pool for reads and API writes, and one connection of its
//! own for the ledger loader (on a private runtime, since the loader is a
//! plain thread that exists to wait on the database).
//!
//! The schema is created by versioned migrations run at start under an
//! advisory lock, so replicas that start together apply each one once.
//! Statements shared with SQLite come from `sql`.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row};
use tollgate_units::{Money, Usage};

use super::sql::{self, int, Arg, Dialect, OutcomeJoin, PromptCachePart, Sql, LEDGER_COLUMNS, LEDGER_COLUMN_COUNT};
use super::{
    AuditLog, BatchOwner, BatchStore, GovernanceStore, KeyRecord, KeyStore, LedgerSink, NewKey, OutcomeStore,
    PriceUpdate, Reports, RequestLog, RequestPage, RequestQuery, StoreError, StoreFuture,
};
use crate::attribution::Attribution;
use crate::audit::{AuditEntry, AuditPage, AuditQuery};
use crate::budget::{Action, BudgetSpec, LimitKind, Period, RateLimitSpec, Scope};
use crate::outcome::{CostQuery, CostReport, Outcome, Subject};
use crate::query::{PromptCacheRow, SpendQuery, SpendReport};
use crate::record::{CacheOutcome, Endpoint, LedgerRow, UsageSource};

/// Schema versions, applied in order, each once (recorded in `schema_migrations`).
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        r#"
CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE keys (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    hash          BYTEA NOT NULL UNIQUE,
    prefix        TEXT NOT NULL,
    default_tags  TEXT NOT NULL,
    enforced_tags TEXT NOT NULL,
    models        TEXT NOT NULL,
    created_ms    BIGINT NOT NULL,
    expires_ms    BIGINT,
    revoked_ms    BIGINT
);
CREATE TABLE ledger (
    request_id          TEXT PRIMARY KEY,
    ts_ms               BIGINT NOT NULL,
    key_id              TEXT,
    endpoint            TEXT NOT NULL,
    requested_model     TEXT,
    model               TEXT,
    provider            TEXT,
    status              BIGINT NOT NULL,
    error_code          TEXT,
    input_uncached      BIGINT NOT NULL,
    input_audio         BIGINT NOT NULL,
    cache_read          BIGINT NOT NULL,
    cache_write_5m      BIGINT NOT NULL,
    cache_write_1h      BIGINT NOT NULL,
    output_text         BIGINT NOT NULL,
    output_audio        BIGINT NOT NULL,
    output_image        BIGINT NOT NULL,
    reasoning           BIGINT NOT NULL,
    usage_source        TEXT NOT NULL,
    cost_nanos          BIGINT,
    cache_savings_nanos BIGINT NOT NULL,
    streamed            BOOLEAN NOT NULL,
    client_disconnected BOOLEAN NOT NULL,
    cache               TEXT NOT NULL,
    latency_ms          BIGINT NOT NULL,
    ttft_ms             BIGINT,
    attempts            BIGINT NOT NULL,
    "user"              TEXT,
    team                TEXT,
    org                 TEXT,
    feature             TEXT,
    env                 TEXT,
    tags                TEXT NOT NULL,
    trace_id            TEXT,
    parent_id           TEXT,
    session             TEXT,
    agent               TEXT,
    prompt              TEXT,
    attempt_log         TEXT,
    response_cache_savings_nanos BIGINT NOT NULL,
    prefix_hash         TEXT
);
CREATE INDEX ledger_ts ON ledger (ts_ms);
CREATE INDEX ledger_team_ts ON ledger (team, ts_ms);
CREATE INDEX ledger_key_ts ON ledger (key_id, ts_ms);
CREATE INDEX ledger_trace_set ON ledger (trace_id) WHERE trace_id IS NOT NULL;
CREATE INDEX ledger_session ON ledger (session) WHERE session IS NOT NULL;
CREATE TABLE ledger_hourly (
    hour_ms             BIGINT NOT NULL,
    key_id              TEXT NOT NULL,
    team                TEXT NOT NULL,
    org                 TEXT NOT NULL,
    feature             TEXT NOT NULL,
    env                 TEXT NOT NULL,
    model               TEXT NOT NULL,
    requested_model     TEXT NOT NULL,
    provider            TEXT NOT NULL,
    agent               TEXT NOT NULL,
    prompt              TEXT NOT NULL,
    endpoint            TEXT NOT NULL,
    requests            BIGINT NOT NULL,
    input_tokens        BIGINT NOT NULL,
    cache_read_tokens   BIGINT NOT NULL,
    cache_write_tokens  BIGINT NOT NULL,
    output_tokens       BIGINT NOT NULL,
    reasoning_tokens    BIGINT NOT NULL,
    cost_nanos          BIGINT NOT NULL,
    cache_savings_nanos BIGINT NOT NULL,
    estimated           BIGINT NOT NULL,
    unpriced            BIGINT NOT NULL,
    errors              BIGINT NOT NULL,
    attempts            BIGINT NOT NULL,
    response_cache_savings_nanos BIGINT NOT NULL,
    PRIMARY KEY (hour_ms, key_id, team, org, feature, env, model, requested_model, provider, agent, prompt, endpoint)
);
CREATE TABLE budgets (
    id             TEXT PRIMARY KEY,
    scope          TEXT NOT NULL,
    limit_nanos    BIGINT NOT NULL,
    period         TEXT NOT NULL,
    action         TEXT NOT NULL,
    alert_at       TEXT NOT NULL,
    block_unpriced BOOLEAN NOT NULL,
    updated_ms     BIGINT NOT NULL
);
CREATE TABLE rate_limits (
    id         TEXT PRIMARY KEY,
    scope      TEXT NOT NULL,
    kind       TEXT NOT NULL,
    amount     BIGINT NOT NULL,
    window_ms  BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);
CREATE TABLE batches (
    id          TEXT PRIMARY KEY,
    provider    TEXT NOT NULL,
    key_id      TEXT NOT NULL,
    attribution TEXT NOT NULL,
    created_ms  BIGINT NOT NULL
);
CREATE TABLE batch_files (
    file_id  TEXT PRIMARY KEY,
    batch_id TEXT NOT NULL
);
CREATE TABLE batch_owners (
    object_id  TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    key_id     TEXT NOT NULL,
    team       TEXT,
    created_ms BIGINT NOT NULL
);
CREATE TABLE alerts_fired (
    budget_id       TEXT NOT NULL,
    period_start_ms BIGINT NOT NULL,
    threshold       BIGINT NOT NULL,
    fired_ms        BIGINT NOT NULL,
    PRIMARY KEY (budget_id, period_start_ms, threshold)
);
CREATE TABLE outcomes (
    id          TEXT PRIMARY KEY,
    ts_ms       BIGINT NOT NULL,
    request_id  TEXT,
    trace_id    TEXT,
    session     TEXT,
    name        TEXT NOT NULL,
    value       TEXT,
    success     BOOLEAN NOT NULL,
    reported_by TEXT NOT NULL
);
CREATE INDEX outcomes_ts ON outcomes (ts_ms);
"#,
    ),
    (
        2,
        r#"
CREATE TABLE price_updates (
    id         BIGSERIAL PRIMARY KEY,
    applied_ms BIGINT NOT NULL,
    source     TEXT NOT NULL,
    applied_by TEXT NOT NULL,
    catalog    TEXT NOT NULL
);
"#,
    ),
    (
        3,
        // Server-side tool use (web searches), the cost of tools and
        // per-request fees, and the cost the provider reported. Rows and
        // rollup sums from before had none: 0 (and no provider cost) is exact.
        r#"
ALTER TABLE ledger ADD COLUMN IF NOT EXISTS web_search_requests BIGINT NOT NULL DEFAULT 0;
ALTER TABLE ledger ADD COLUMN IF NOT EXISTS tool_cost_nanos BIGINT NOT NULL DEFAULT 0;
ALTER TABLE ledger ADD COLUMN IF NOT EXISTS provider_cost_nanos BIGINT;
ALTER TABLE ledger_hourly ADD COLUMN IF NOT EXISTS tool_cost_nanos BIGINT NOT NULL DEFAULT 0;
ALTER TABLE ledger_hourly ADD COLUMN IF NOT EXISTS web_search_requests BIGINT NOT NULL DEFAULT 0;
"#,
    ),
    (
        4,
        // Input image tokens counted apart, and the units of models billed
        // per image, per second of input audio and per input character.
        // Rows from before had none: 0 is exact. (The rollup's input_tokens
        // sum takes image tokens in; it needs no column of its own.)
        r#"
ALTER TABLE ledger ADD COLUMN IF NOT EXISTS input_image_tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE ledger ADD COLUMN IF NOT EXISTS images BIGINT NOT NULL DEFAULT 0;
ALTER TABLE ledger ADD COLUMN IF NOT EXISTS audio_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE ledger ADD COLUMN IF NOT EXISTS characters BIGINT NOT NULL DEFAULT 0;
"#,
    ),
    (
        5,
        // The audit log: who changed keys, budgets, limits, prices or the
        // configuration, what before and after (JSON text), when, from where.
        r#"
CREATE TABLE IF NOT EXISTS audit_log (
    id          BIGSERIAL PRIMARY KEY,
    ts_ms       BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    actor_role  TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    team        TEXT,
    before_json TEXT,
    after_json  TEXT,
    source      TEXT
);
CREATE INDEX IF NOT EXISTS audit_log_ts ON audit_log (ts_ms);
"#,
    ),
    (
        6,
        // Key rotation (the previous secret, accepted until its grace period
        // ends) and the dashboard's sign-in sessions.
        r#"
ALTER TABLE keys ADD COLUMN IF NOT EXISTS prev_hash BYTEA;
ALTER TABLE keys ADD COLUMN IF NOT EXISTS prev_prefix TEXT;
ALTER TABLE keys ADD COLUMN IF NOT EXISTS prev_valid_until_ms BIGINT;
CREATE UNIQUE INDEX IF NOT EXISTS keys_prev_hash ON keys (prev_hash) WHERE prev_hash IS NOT NULL;
CREATE TABLE IF NOT EXISTS sessions (
    id_hash     BYTEA PRIMARY KEY,
    handle      TEXT NOT NULL UNIQUE,
    subject     TEXT NOT NULL,
    name        TEXT NOT NULL,
    email       TEXT,
    groups_json TEXT NOT NULL,
    created_ms  BIGINT NOT NULL,
    expires_ms  BIGINT NOT NULL,
    revoked_ms  BIGINT,
    source      TEXT
);
"#,
    ),
    (
        7,
        // Reconciliation results: the latest run's lines per provider and day.
        r#"
CREATE TABLE IF NOT EXISTS reconciliation (
    provider               TEXT NOT NULL,
    day                    TEXT NOT NULL,
    kind                   TEXT NOT NULL,
    model                  TEXT NOT NULL,
    account                TEXT NOT NULL,
    gateway_cost_nanos     BIGINT NOT NULL,
    provider_cost_nanos    BIGINT NOT NULL,
    gateway_input_tokens   BIGINT NOT NULL,
    gateway_output_tokens  BIGINT NOT NULL,
    provider_input_tokens  BIGINT NOT NULL,
    provider_output_tokens BIGINT NOT NULL,
    gateway_requests       BIGINT NOT NULL,
    provider_requests      BIGINT NOT NULL,
    cause                  TEXT,
    reconciled_ms          BIGINT NOT NULL,
    PRIMARY KEY (provider, day, kind, model, account)
);
"#,
    ),
];

/// Serialises migrations across replicas starting at once (any constant, ours).
const MIGRATION_LOCK: i64 = 0x746f_6c6c_6761_7465; // "tollgate"

/// Rows per INSERT statement (48 array parameters, whatever the rows).
const INSERT_CHUNK: usize = 5_000;

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> StoreError {
        StoreError::Postgres(e.to_string())
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> StoreError {
        StoreError::Postgres(e.to_string())
    }
}

/// A PostgreSQL database as every storage capability.
pub struct Postgres {
    pool: Pool,
    config: tokio_postgres::Config,
    /// The ledger loader's connection and the runtime that drives it.
    writer: Mutex<Writer>,
}

struct Writer {
    /// Always `Some` until dropped.
    runtime: Option<tokio::runtime::Runtime>,
    client: Option<Client>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.client = None;
        // The store may be dropped on an async task, where a runtime cannot block to shut down.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres").field("hosts", &self.config.get_hosts()).finish()
    }
}

/// True for the URL schemes this store serves.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

async fn connect(config: &tokio_postgres::Config) -> Result<Client, StoreError> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "PostgreSQL connection closed");
        }
    });
    Ok(client)
}

impl Postgres {
    /// Connects, and brings the schema up to date (once across replicas).
    pub async fn open(url: &str) -> Result<Postgres, StoreError> {
        let mut config = tokio_postgres::Config::from_str(url)
            .map_err(|_| StoreError::UnsupportedUrl("postgres://… (the URL does not parse)".into()))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        config.application_name("tollgate");
        let mut client = connect(&config).await?;
        migrate(&mut client).await?;
        drop(client);
        let manager =
            Manager::from_config(config.clone(), NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(16)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(5)))
            .create_timeout(Some(Duration::from_secs(5)))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(|e| StoreError::Postgres(e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        Ok(Postgres { pool, config, writer: Mutex::new(Writer { runtime: Some(runtime), client: None }) })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        Ok(self.pool.get().await?)
    }

    async fn query(&self, q: &Sql) -> Result<Vec<Row>, StoreError> {
        let c = self.client().await?;
        Ok(c.query(q.text.as_str(), &params(&q.args)).await?)
    }
}

/// Applies the migrations not yet applied, each in its own transaction,
/// holding a session advisory lock so concurrent starts wait for each other.
async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    // "already exists, skipping" notices are not news to anyone.
    client.batch_execute("SET client_min_messages TO warning").await?;
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await?;
    let result = async {
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_ms BIGINT NOT NULL)",
            )
            .await?;
        for (version, ddl) in MIGRATIONS {
            let done = client.query_opt("SELECT 1 FROM schema_migrations WHERE version = $1", &[version]).await?;
            if done.is_some() {
                continue;
            }
            let tx = client.transaction().await?;
            tx.batch_execute(ddl).await?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_ms) VALUES ($1, $2)",
                &[version, &crate::time::now_ms()],
            )
            .await?;
            tx.commit().await?;
            tracing::info!(version, "applied PostgreSQL schema migration");
        }
        Ok::<(), StoreError>(())
    }
    .await;
    client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await?;
    result
}

fn params(args: &[Arg]) -> Vec<&(dyn ToSql + Sync)> {
    args.iter()
        .map(|a| match a {
            Arg::Int(i) => i as &(dyn ToSql + Sync),
            Arg::Text(t) => t as &(dyn ToSql + Sync),
        })
        .collect()
}

fn corrupt(col: &'static str) -> impl Fn(tokio_postgres::Error) -> StoreError {
    move |_| StoreError::Corrupt(col)
}

fn tags(s: &str, col: &'static str) -> Result<BTreeMap<String, String>, StoreError> {
    serde_json::from_str(s).map_err(|_| StoreError::Corrupt(col))
}

fn key_from_row(r: &Row) -> Result<KeyRecord, StoreError> {
    let models: String = r.try_get("models")?;
    Ok(KeyRecord {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        prefix: r.try_get("prefix")?,
        default_tags: tags(&r.try_get::<_, String>("default_tags")?, "default_tags")?,
        enforced_tags: tags(&r.try_get::<_, String>("enforced_tags")?, "enforced_tags")?,
        models: serde_json::from_str(&models).map_err(|_| StoreError::Corrupt("models"))?,
        created_ms: r.try_get("created_ms")?,
        expires_ms: r.try_get("expires_ms")?,
        revoked_ms: r.try_get("revoked_ms")?,
        previous: match (
            r.try_get::<_, Option<String>>("prev_prefix")?,
            r.try_get::<_, Option<i64>>("prev_valid_until_ms")?,
        ) {
            (Some(prefix), Some(valid_until_ms)) => Some(super::PreviousSecret { prefix, valid_until_ms }),
            _ => None,
        },
    })
}

/// `SELECT budget_id, period_start_ms, threshold, fired_ms FROM alerts_fired …`
fn fired_alert_from_row(r: &Row) -> Result<super::FiredAlert, StoreError> {
    Ok(super::FiredAlert {
        budget_id: r.try_get(0)?,
        period_start_ms: r.try_get(1)?,
        threshold: u32::try_from(r.try_get::<_, i64>(2)?).map_err(|_| StoreError::Corrupt("alerts_fired.threshold"))?,
        fired_ms: r.try_get(3)?,
    })
}

fn session_from_row(r: &Row) -> Result<crate::session::Session, StoreError> {
    let hash: Vec<u8> = r.try_get("id_hash")?;
    let groups: String = r.try_get("groups_json")?;
    Ok(crate::session::Session {
        handle: r.try_get("handle")?,
        id_hash: hash.try_into().map_err(|_| StoreError::Corrupt("sessions.id_hash"))?,
        subject: r.try_get("subject")?,
        name: r.try_get("name")?,
        email: r.try_get("email")?,
        groups: serde_json::from_str(&groups).map_err(|_| StoreError::Corrupt("sessions.groups_json"))?,
        created_ms: r.try_get("created_ms")?,
        expires_ms: r.try_get("expires_ms")?,
        revoked_ms: r.try_get("revoked_ms")?,
        source: r.try_get("source")?,
    })
}

fn ledger_from_row(r: &Row) -> Result<LedgerRow, StoreError> {
    let u = |col: &'static str| -> Result<u64, StoreError> {
        Ok(r.try_get::<_, i64>(col).map_err(corrupt(col))?.max(0) as u64)
    };
    let usage = Usage {
        input: u("input_uncached")?,
        input_image: u("input_image_tokens")?,
        input_audio: u("input_audio")?,
        cache_read: u("cache_read")?,
        cache_write_5m: u("cache_write_5m")?,
        cache_write_1h: u("cache_write_1h")?,
        output: u("output_text")?,
        output_audio: u("output_audio")?,
        output_image: u("output_image")?,
        reasoning: u("reasoning")?,
        web_search_requests: u("web_search_requests")?,
        images: u("images")?,
        audio_ms: u("audio_ms")?,
        characters: u("characters")?,
    };
    Ok(LedgerRow {
        request_id: r.try_get("request_id")?,
        time_ms: r.try_get("ts_ms")?,
        key_id: r.try_get("key_id")?,
        endpoint: Endpoint::parse(r.try_get("endpoint")?).ok_or(StoreError::Corrupt("endpoint"))?,
        requested_model: r.try_get("requested_model")?,
        model: r.try_get("model")?,
        provider: r.try_get("provider")?,
        status: u16::try_from(r.try_get::<_, i64>("status")?).map_err(|_| StoreError::Corrupt("status"))?,
        error_code: r.try_get("error_code")?,
        usage,
        usage_source: if r.try_get::<_, &str>("usage_source")? == "estimated" {
            UsageSource::Estimated
        } else {
            UsageSource::Provider
        },
        cost: r.try_get::<_, Option<i64>>("cost_nanos")?.map(Money::from_nanos),
        cache_savings: Money::from_nanos(r.try_get("cache_savings_nanos")?),
        response_cache_savings: Money::from_nanos(r.try_get("response_cache_savings_nanos")?),
        tool_cost: Money::from_nanos(r.try_get("tool_cost_nanos")?),
        provider_cost: r.try_get::<_, Option<i64>>("provider_cost_nanos")?.map(Money::from_nanos),
        streamed: r.try_get("streamed")?,
        client_disconnected: r.try_get("client_disconnected")?,
        cache: CacheOutcome::parse(r.try_get("cache")?).ok_or(StoreError::Corrupt("cache"))?,
        latency_ms: u("latency_ms")?,
        ttft_ms: r.try_get::<_, Option<i64>>("ttft_ms")?.map(|v| v.max(0) as u64),
        attempts: u32::try_from(r.try_get::<_, i64>("attempts")?).map_err(|_| StoreError::Corrupt("attempts"))?,
        prefix_hash: r.try_get("prefix_hash")?,
        attempt_log: r
            .try_get::<_, Option<String>>("attempt_log")?
            .and_then(|j| serde_json::from_str(&j).ok())
            .unwrap_or_default(),
        attribution: Attribution {
            tags: tags(r.try_get("tags")?, "tags")?,
            trace_id: r.try_get("trace_id")?,
            parent_id: r.try_get("parent_id")?,
            session: r.try_get("session")?,
            agent: r.try_get("agent")?,
            prompt: r.try_get("prompt")?,
        },
    })
}

/// The SQL type of each of the 48 ledger columns, in [`LEDGER_COLUMNS`] order.
const LEDGER_TYPES: [&str; LEDGER_COLUMN_COUNT] = [
    "text", "bigint", "text", "text", "text", "text", "text", "bigint", "text", // request … error_code
    "bigint", "bigint", "bigint", "bigint", "bigint", "bigint", "bigint", "bigint", "bigint", // tokens
    "text", "bigint", "bigint", "boolean", "boolean", "text", "bigint", "bigint",
    "bigint", // usage_source … attempts
    "text", "text", "text", "text", "text", "text", // user, team, org, feature, env, tags
    "text", "text", "text", "text", "text", "text", "bigint", "text", // trace_id … prefix_hash
    "bigint", "bigint", "bigint", // web_search_requests, tool_cost_nanos, provider_cost_nanos
    "bigint", "bigint", "bigint", "bigint", // input_image_tokens, images, audio_ms, characters
];

/// `n` empty columns with room for `len` values each.
fn columns<T>(n: usize, len: usize) -> Vec<Vec<T>> {
    (0..n).map(|_| Vec::with_capacity(len)).collect()
}

/// A batch's values column by column: one array parameter per column, so a
/// whole batch is one statement, `INSERT … SELECT * FROM UNNEST(…)`.
struct Columns<'a> {
    texts: Vec<Vec<Option<&'a str>>>,
    owned: Vec<Vec<Option<String>>>,
    ints: Vec<Vec<Option<i64>>>,
    bools: Vec<Vec<bool>>,
}

impl<'a> Columns<'a> {
    fn of(rows: &[&'a LedgerRow]) -> Columns<'a> {
        let mut c = Columns {
            texts: columns(20, rows.len()),
            owned: columns(2, rows.len()),
            ints: columns(24, rows.len()),
            bools: columns(2, rows.len()),
        };
        for row in rows {
            let (a, us) = (&row.attribution, &row.usage);
            let texts = [
                Some(row.request_id.as_str()),
                row.key_id.as_deref(),
                Some(row.endpoint.as_str()),
                row.requested_model.as_deref(),
                row.model.as_deref(),
                row.provider.as_deref(),
                row.error_code.as_deref(),
                Some(row.usage_source.as_str()),
                Some(row.cache.as_str()),
                a.tag("user"),
                a.tag("team"),
                a.tag("org"),
                a.tag("feature"),
                a.tag("env"),
                a.trace_id.as_deref(),
                a.parent_id.as_deref(),
                a.session.as_deref(),
                a.agent.as_deref(),
                a.prompt.as_deref(),
                row.prefix_hash.as_deref(),
            ];
            for (col, v) in c.texts.iter_mut().zip(texts) {
                col.push(v);
            }
            c.owned[0].push(Some(sql::tags_json(&a.tags)));
            c.owned[1].push(if row.attempt_log.is_empty() {
                None
            } else {
                serde_json::to_string(&row.attempt_log).ok()
            });
            let ints = [
                Some(row.time_ms),
                Some(i64::from(row.status)),
                Some(int(us.input)),
                Some(int(us.input_audio)),
                Some(int(us.cache_read)),
                Some(int(us.cache_write_5m)),
                Some(int(us.cache_write_1h)),
                Some(int(us.output)),
                Some(int(us.output_audio)),
                Some(int(us.output_image)),
                Some(int(us.reasoning)),
                row.cost.map(Money::nanos),
                Some(row.cache_savings.nanos()),
                Some(int(row.latency_ms)),
                row.ttft_ms.map(int),
                Some(i64::from(row.attempts)),
                Some(row.response_cache_savings.nanos()),
                Some(int(us.web_search_requests)),
                Some(row.tool_cost.nanos()),
                row.provider_cost.map(Money::nanos),
                Some(int(us.input_image)),
                Some(int(us.images)),
                Some(int(us.audio_ms)),
                Some(int(us.characters)),
            ];
            for (col, v) in c.ints.iter_mut().zip(ints) {
                col.push(v);
            }
            c.bools[0].push(row.streamed);
            c.bools[1].push(row.client_disconnected);
        }
        c
    }

    /// The 48 array parameters, in [`LEDGER_COLUMNS`] order.
    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        let t = |i: usize| &self.texts[i] as &(dyn ToSql + Sync);
        let n = |i: usize| &self.ints[i] as &(dyn ToSql + Sync);
        vec![
            t(0),
            n(0),
            t(1),
            t(2),
            t(3),
            t(4),
            t(5),
            n(1),
            t(6), // request_id … error_code
            n(2),
            n(3),
            n(4),
            n(5),
            n(6),
            n(7),
            n(8),
            n(9),
            n(10), // tokens
            t(7),
            n(11),
            n(12),
            &self.bools[0],
            &self.bools[1],
            t(8),
            n(13),
            n(14),
            n(15),
            t(9),
            t(10),
            t(11),
            t(12),
            t(13),
            &self.owned[0], // user … tags
            t(14),
            t(15),
            t(16),
            t(17),
            t(18),
            &self.owned[1],
            n(16),
            t(19), // response_cache_savings_nanos, prefix_hash
            n(17),
            n(18),
            n(19), // web_search_requests, tool_cost_nanos, provider_cost_nanos
            n(20),
            n(21),
            n(22),
            n(23), // input_image_tokens, images, audio_ms, characters
        ]
    }
}

/// Inserts the rows not yet present and adds exactly those to the hourly
/// rollup, in one transaction. Rollup groups are upserted in key order, so
/// loaders of several replicas never deadlock on them.
async fn append_rows(client: &mut Client, rows: &[&LedgerRow]) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    let mut rollup: BTreeMap<(i64, [String; 11]), sql::RollupSums> = BTreeMap::new();
    let arrays: Vec<String> = LEDGER_TYPES.iter().enumerate().map(|(i, t)| format!("${}::{t}[]", i + 1)).collect();
    let insert = tx
        .prepare(&format!(
            "INSERT INTO ledger ({LEDGER_COLUMNS}) SELECT * FROM UNNEST({}) \
             ON CONFLICT (request_id) DO NOTHING RETURNING request_id",
            arrays.join(", ")
        ))
        .await?;
    for chunk in rows.chunks(INSERT_CHUNK) {
        let columns = Columns::of(chunk);
        let inserted: BTreeSet<String> =
            tx.query(&insert, &columns.params()).await?.iter().map(|r| r.get::<_, String>(0)).collect();
        // A replayed row (already stored) is in the rollup too; a request id
        // twice in one chunk is inserted once.
        let mut seen = BTreeSet::new();
        for row in chunk {
            if inserted.contains(&row.request_id) && seen.insert(row.request_id.as_str()) {
                rollup.entry(sql::rollup_key(row)).or_default().add(row);
            }
        }
    }
    if !rollup.is_empty() {
        // Every group in one statement, in key order (so loaders of several replicas take row locks alike).
        let mut hours = Vec::with_capacity(rollup.len());
        let mut dims: Vec<Vec<String>> = columns(sql::ROLLUP_DIMENSIONS.len(), rollup.len());
        let mut sums: Vec<Vec<i64>> = columns(sql::ROLLUP_SUMS.len(), rollup.len());
        for ((hour, key), group) in rollup {
            hours.push(hour);
            for (col, v) in dims.iter_mut().zip(key) {
                col.push(v);
            }
            for (col, v) in sums.iter_mut().zip(group.values()) {
                col.push(v);
            }
        }
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&hours];
        params.extend(dims.iter().map(|c| c as &(dyn ToSql + Sync)));
        params.extend(sums.iter().map(|c| c as &(dyn ToSql + Sync)));
        tx.execute(&sql::rollup_upsert(Dialect::Postgres), &params).await?;
    }
    tx.commit().await?;
    Ok(())
}

impl LedgerSink for Postgres {
    fn append(&self, rows: &[&LedgerRow]) -> Result<(), StoreError> {
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let Writer { runtime, client } = &mut *w;
        let Some(runtime) = runtime.as_ref() else {
            return Err(StoreError::Postgres("the ledger writer is closed".into()));
        };
        runtime.block_on(async {
            if client.as_ref().is_none_or(Client::is_closed) {
                *client = Some(connect(&self.config).await?);
            }
            let Some(c) = client.as_mut() else { return Err(StoreError::Postgres("no connection".into())) };
            let result = append_rows(c, rows).await;
            if result.is_err() && c.is_closed() {
                *client = None;
            }
            result
        })
    }
}

impl KeyStore for Postgres {
    fn insert_key(&self, key: NewKey) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let k = &key.record;
            self.client()
                .await?
                .execute(
                    "INSERT INTO keys (id, name, hash, prefix, default_tags, enforced_tags, models, created_ms, \
                     expires_ms, revoked_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                    &[
                        &k.id,
                        &k.name,
                        &&key.hash[..],
                        &k.prefix,
                        &sql::tags_json(&k.default_tags),
                        &sql::tags_json(&k.enforced_tags),
                        &serde_json::to_string(&k.models).unwrap_or_else(|_| "[]".into()),
                        &k.created_ms,
                        &k.expires_ms,
                        &k.revoked_ms,
                    ],
                )
                .await?;
            Ok(())
        })
    }

    fn key_by_hash(&self, hash: [u8; 32]) -> StoreFuture<'_, Option<super::KeyMatch>> {
        Box::pin(async move {
            let c = self.client().await?;
            let stmt = c
                .prepare_cached(
                    "SELECT *, false AS previous_secret FROM keys WHERE hash = $1 \
                     UNION ALL SELECT *, true FROM keys WHERE prev_hash = $1 LIMIT 1",
                )
                .await?;
            match c.query_opt(&stmt, &[&&hash[..]]).await? {
                Some(r) => Ok(Some(super::KeyMatch {
                    record: key_from_row(&r)?,
                    previous_secret: r.try_get("previous_secret")?,
                })),
                None => Ok(None),
            }
        })
    }

    fn rotate_key(
        &self,
        id: String,
        hash: [u8; 32],
        prefix: String,
        previous_valid_until_ms: i64,
    ) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let n = self
                .client()
                .await?
                .execute(
                    "UPDATE keys SET prev_hash = hash, prev_prefix = prefix, prev_valid_until_ms = $4, hash = $2, \
                     prefix = $3 WHERE id = $1 AND revoked_ms IS NULL",
                    &[&id, &&hash[..], &prefix, &previous_valid_until_ms],
                )
                .await?;
            Ok(n > 0)
        })
    }

    fn list_keys(&self) -> StoreFuture<'_, Vec<KeyRecord>> {
        Box::pin(async move {
            let rows = self.client().await?.query("SELECT * FROM keys ORDER BY created_ms, id", &[]).await?;
            rows.iter().map(key_from_row).collect()
        })
    }

    fn revoke_key(&self, id: String, now_ms: i64) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let n = self
                .client()
                .await?
                .execute("UPDATE keys SET revoked_ms = COALESCE(revoked_ms, $2) WHERE id = $1", &[&id, &now_ms])
                .await?;
            Ok(n > 0)
        })
    }

    fn key_hash_secret(&self) -> StoreFuture<'_, Vec<u8>> {
        Box::pin(async move {
            let c = self.client().await?;
            let fresh = hex::encode(rand::random::<[u8; 32]>());
            // The first replica's secret wins; every replica reads the same one.
            c.execute(
                "INSERT INTO meta (name, value) VALUES ('key_hash_secret', $1) ON CONFLICT (name) DO NOTHING",
                &[&fresh],
            )
            .await?;
            let v: String = c.query_one("SELECT value FROM meta WHERE name = 'key_hash_secret'", &[]).await?.get(0);
            hex::decode(v).map_err(|_| StoreError::Corrupt("meta.key_hash_secret"))
        })
    }
}

impl RequestLog for Postgres {
    fn requests(&self, q: RequestQuery) -> StoreFuture<'_, RequestPage> {
        Box::pin(async move {
            let (query, limit) = sql::requests_query(Dialect::Postgres, &q);
            let rows = self.query(&query).await?;
            Ok(sql::page(rows.iter().map(ledger_from_row).collect::<Result<_, _>>()?, limit))
        })
    }

    fn rows_between(
        &self,
        from_ms: i64,
        to_ms: i64,
        after: Option<(i64, String)>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<LedgerRow>> {
        Box::pin(async move {
            let query = sql::rows_between_query(Dialect::Postgres, from_ms, to_ms, after, limit);
            let rows = self.query(&query).await?;
            rows.iter().map(ledger_from_row).collect()
        })
    }

    fn request(&self, id: String) -> StoreFuture<'_, Option<LedgerRow>> {
        Box::pin(async move {
            let c = self.client().await?;
            c.query_opt("SELECT * FROM ledger WHERE request_id = $1", &[&id])
                .await?
                .as_ref()
                .map(ledger_from_row)
                .transpose()
        })
    }

    fn prune_raw(&self, before_ms: i64) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let mut total = 0;
            loop {
                let n = self
                    .client()
                    .await?
                    .execute(
                        "DELETE FROM ledger WHERE request_id IN \
                         (SELECT request_id FROM ledger WHERE ts_ms < $1 LIMIT 5000)",
                        &[&before_ms],
                    )
                    .await?;
                total += n;
                if n == 0 {
                    return Ok(total);
                }
            }
        })
    }
}

impl Reports for Postgres {
    fn spend(&self, q: SpendQuery) -> StoreFuture<'_, SpendReport> {
        Box::pin(async move {
            let mut parts = Vec::new();
            let n_dims = q.group_by.len();
            let sums_at = n_dims + usize::from(q.bucket.is_some());
            for part in sql::spend_queries(Dialect::Postgres, &q, true) {
                for r in self.query(&part).await? {
                    let dims = (0..n_dims).map(|i| r.try_get::<_, Option<String>>(i)).collect::<Result<_, _>>()?;
                    let bucket = if q.bucket.is_some() { Some(r.try_get::<_, i64>(n_dims)?) } else { None };
                    let mut sums = [None; sql::SPEND_SUM_COUNT];
                    for (i, s) in sums.iter_mut().enumerate() {
                        *s = r.try_get::<_, Option<i64>>(sums_at + i)?;
                    }
                    parts.push(sql::spend_row(dims, bucket, sums));
                }
            }
            Ok(sql::merge_spend(&q, parts))
        })
    }

    fn prompt_cache(&self, by: String, from_ms: i64) -> StoreFuture<'_, Vec<PromptCacheRow>> {
        Box::pin(async move {
            let rows = self.query(&sql::prompt_cache_query(Dialect::Postgres, &by, from_ms)).await?;
            let mut parts = Vec::with_capacity(rows.len());
            for r in rows {
                parts.push(PromptCachePart {
                    value: r.try_get(0)?,
                    prefix: r.try_get(1)?,
                    sums: [r.try_get(2)?, r.try_get(3)?, r.try_get(4)?, r.try_get(5)?, r.try_get(6)?],
                });
            }
            Ok(sql::fold_prompt_cache(parts))
        })
    }

    fn spend_per_second(&self, filters: Vec<(String, String)>, from_ms: i64) -> StoreFuture<'_, Vec<(i64, i64)>> {
        Box::pin(async move {
            let rows = self.query(&sql::spend_per_second_query(Dialect::Postgres, &filters, from_ms)).await?;
            rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get::<_, Option<i64>>(1)?.unwrap_or(0)))).collect()
        })
    }

    fn spend_per_second_many(&self, asks: Vec<(Vec<(String, String)>, i64)>) -> StoreFuture<'_, Vec<Vec<(i64, i64)>>> {
        Box::pin(async move {
            let queries: Vec<Sql> = asks
                .iter()
                .map(|(filters, from_ms)| sql::spend_per_second_query(Dialect::Postgres, filters, *from_ms))
                .collect();
            // Every query on one connection, all sent before the first answer
            // is read (tokio-postgres pipelines concurrent queries): a batch of
            // budgets costs a few round trips, not one per budget.
            let c = self.client().await?;
            let answers = futures_util::future::try_join_all(queries.iter().map(|q| {
                let c = &c;
                async move { c.query(q.text.as_str(), &params(&q.args)).await }
            }))
            .await?;
            answers
                .iter()
                .map(|rows| {
                    rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get::<_, Option<i64>>(1)?.unwrap_or(0)))).collect()
                })
                .collect()
        })
    }

    fn unpriced_models(&self) -> StoreFuture<'_, Vec<(String, String, i64)>> {
        Box::pin(async move {
            let rows = self.client().await?.query(sql::UNPRICED_MODELS, &[]).await?;
            rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?))).collect()
        })
    }
}

fn limit_kind(k: LimitKind) -> &'static str {
    match k {
        LimitKind::Requests => "requests",
        LimitKind::Tokens => "tokens",
        LimitKind::Cost => "cost",
    }
}

impl GovernanceStore for Postgres {
    fn upsert_budget(&self, b: BudgetSpec, now_ms: i64) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.client()
                .await?
                .execute(
                    "INSERT INTO budgets (id, scope, limit_nanos, period, action, alert_at, block_unpriced, updated_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO UPDATE SET scope = excluded.scope, \
                     limit_nanos = excluded.limit_nanos, period = excluded.period, action = excluded.action, \
                     alert_at = excluded.alert_at, block_unpriced = excluded.block_unpriced, \
                     updated_ms = GREATEST(excluded.updated_ms, budgets.updated_ms + 1)",
                    &[
                        &b.id,
                        &b.scope.to_string(),
                        &b.limit.nanos(),
                        &b.period.to_string(),
                        &b.action.to_string(),
                        &serde_json::to_string(&b.alert_at).unwrap_or_else(|_| "[]".into()),
                        &b.block_unpriced,
                        &now_ms,
                    ],
                )
                .await?;
            Ok(())
        })
    }

    fn delete_budget(&self, id: String) -> StoreFuture<'_, bool> {
        Box::pin(
            async move { Ok(self.client().await?.execute("DELETE FROM budgets WHERE id = $1", &[&id]).await? > 0) },
        )
    }

    fn list_budgets(&self) -> StoreFuture<'_, Vec<BudgetSpec>> {
        Box::pin(async move {
            let rows = self
                .client()
                .await?
                .query(
                    "SELECT id, scope, limit_nanos, period, action, alert_at, block_unpriced FROM budgets ORDER BY id",
                    &[],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(BudgetSpec {
                        id: r.try_get(0)?,
                        scope: Scope::parse(r.try_get(1)?).map_err(|_| StoreError::Corrupt("budgets.scope"))?,
                        limit: Money::from_nanos(r.try_get(2)?),
                        period: Period::parse(r.try_get(3)?).map_err(|_| StoreError::Corrupt("budgets.period"))?,
                        action: Action::parse(r.try_get(4)?).map_err(|_| StoreError::Corrupt("budgets.action"))?,
                        alert_at: serde_json::from_str(r.try_get(5)?)
                            .map_err(|_| StoreError::Corrupt("budgets.alert_at"))?,
                        block_unpriced: r.try_get(6)?,
                    })
                })
                .collect()
        })
    }

    fn upsert_limit(&self, l: RateLimitSpec, now_ms: i64) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.client()
                .await?
                .execute(
                    "INSERT INTO rate_limits (id, scope, kind, amount, window_ms, updated_ms) VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (id) DO UPDATE SET scope = excluded.scope, kind = excluded.kind, \
                     amount = excluded.amount, window_ms = excluded.window_ms, \
                     updated_ms = GREATEST(excluded.updated_ms, rate_limits.updated_ms + 1)",
                    &[&l.id, &l.scope.to_string(), &limit_kind(l.kind), &l.amount, &l.window_ms, &now_ms],
                )
                .await?;
            Ok(())
        })
    }

    fn list_limits(&self) -> StoreFuture<'_, Vec<RateLimitSpec>> {
        Box::pin(async move {
            let rows = self
                .client()
                .await?
                .query("SELECT id, scope, kind, amount, window_ms FROM rate_limits ORDER BY id", &[])
                .await?;
            rows.iter()
                .map(|r| {
                    let kind = match r.try_get::<_, &str>(2)? {
                        "requests" => LimitKind::Requests,
                        "tokens" => LimitKind::Tokens,
                        "cost" => LimitKind::Cost,
                        _ => return Err(StoreError::Corrupt("rate_limits.kind")),
                    };
                    Ok(RateLimitSpec {
                        id: r.try_get(0)?,
                        scope: Scope::parse(r.try_get(1)?).map_err(|_| StoreError::Corrupt("rate_limits.scope"))?,
                        kind,
                        amount: r.try_get(3)?,
                        window_ms: r.try_get(4)?,
                    })
                })
                .collect()
        })
    }

    fn governance_version(&self) -> StoreFuture<'_, (i64, i64, i64, i64)> {
        Box::pin(async move {
            let r = self.client().await?.query_one(sql::GOVERNANCE_VERSION, &[]).await?;
            Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?))
        })
    }

    fn record_alert(
        &self,
        budget_id: String,
        period_start_ms: i64,
        threshold: u32,
        now_ms: i64,
    ) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            // The primary key makes this once per budget, period and threshold across every replica.
            let n = self
                .client()
                .await?
                .execute(
                    "INSERT INTO alerts_fired (budget_id, period_start_ms, threshold, fired_ms) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT DO NOTHING",
                    &[&budget_id, &period_start_ms, &i64::from(threshold), &now_ms],
                )
                .await?;
            Ok(n > 0)
        })
    }

    fn fired_alerts(&self, budget_id: String, period_start_ms: i64) -> StoreFuture<'_, BTreeSet<u32>> {
        Box::pin(async move {
            let rows = self
                .client()
                .await?
                .query(
                    "SELECT threshold FROM alerts_fired WHERE budget_id = $1 AND period_start_ms = $2",
                    &[&budget_id, &period_start_ms],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    u32::try_from(r.try_get::<_, i64>(0)?).map_err(|_| StoreError::Corrupt("alerts_fired.threshold"))
                })
                .collect()
        })
    }

    fn alerts_fired_since(&self, from_ms: i64) -> StoreFuture<'_, Vec<super::FiredAlert>> {
        Box::pin(async move {
            let rows = self
                .client()
                .await?
                .query(
                    "SELECT budget_id, period_start_ms, threshold, fired_ms FROM alerts_fired WHERE period_start_ms >= $1",
                    &[&from_ms],
                )
                .await?;
            rows.iter().map(fired_alert_from_row).collect()
        })
    }

    fn recent_alerts(&self, limit: usize) -> StoreFuture<'_, Vec<super::FiredAlert>> {
        Box::pin(async move {
            let rows = self
                .client()
                .await?
                .query(
                    "SELECT budget_id, period_start_ms, threshold, fired_ms FROM alerts_fired \
                     ORDER BY fired_ms DESC, budget_id, threshold LIMIT $1",
                    &[&i64::try_from(limit).unwrap_or(i64::MAX)],
                )
                .await?;
            rows.iter().map(fired_alert_from_row).collect()
        })
    }

    fn insert_price_update(
        &self,
        source: String,
        applied_by: String,
        catalog: String,
        now_ms: i64,
    ) -> StoreFuture<'_, i64> {
        Box::pin(async move {
            let mut c = self.client().await?;
            let tx = c.transaction().await?;
            // One writer at a time (readers are not held up), so ids are
            // committed in the order they are drawn: a replica that has seen
            // id N never misses a smaller id committed after it.
            tx.batch_execute("LOCK TABLE price_updates IN SHARE ROW EXCLUSIVE MODE").await?;
            let row = tx
                .query_one(
                    "INSERT INTO price_updates (applied_ms, source, applied_by, catalog) VALUES ($1, $2, $3, $4) \
                     RETURNING id",
                    &[&now_ms, &source, &applied_by, &catalog],
                )
                .await?;
            let id: i64 = row.try_get(0)?;
            tx.commit().await?;
            Ok(id)
        })
    }

    fn price_updates(&self) -> StoreFuture<'_, Vec<PriceUpdate>> {
        Box::pin(async move {
            let rows = self
                .client()
                .await?
                .query("SELECT id, applied_ms, source, applied_by, catalog FROM price_updates ORDER BY id", &[])
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(PriceUpdate {
                        id: r.try_get(0)?,
                        applied_ms: r.try_get(1)?,
                        source: r.try_get(2)?,
                        applied_by: r.try_get(3)?,
                        catalog: r.try_get(4)?,
                    })
                })
                .collect()
        })
    }

    fn price_update_version(&self) -> StoreFuture<'_, i64> {
        Box::pin(async move { Ok(self.client().await?.query_one(sql::PRICE_UPDATE_VERSION, &[]).await?.try_get(0)?) })
    }
}

impl AuditLog for Postgres {
    fn record(&self, e: AuditEntry) -> StoreFuture<'_, i64> {
        Box::pin(async move {
            let row = self
                .client()
                .await?
                .query_one(
                    &format!(
                        "INSERT INTO audit_log ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
                        sql::AUDIT_COLUMNS
                    ),
                    &[
                        &e.time_ms,
                        &e.actor,
                        &e.actor_role,
                        &e.action,
                        &e.target,
                        &e.team,
                        &sql::audit_state(&e.before),
                        &sql::audit_state(&e.after),
                        &e.source,
                    ],
                )
                .await?;
            Ok(row.try_get(0)?)
        })
    }

    fn list(&self, q: AuditQuery) -> StoreFuture<'_, AuditPage> {
        Box::pin(async move {
            let (query, limit) = sql::audit_query(Dialect::Postgres, &q);
            let rows = self.query(&query).await?;
            let entries = rows
                .iter()
                .map(|r| {
                    Ok(AuditEntry {
                        id: Some(r.try_get(0)?),
                        time_ms: r.try_get(1)?,
                        actor: r.try_get(2)?,
                        actor_role: r.try_get(3)?,
                        action: r.try_get(4)?,
                        target: r.try_get(5)?,
                        team: r.try_get(6)?,
                        before: sql::audit_state_of(r.try_get(7)?, "audit_log.before_json")?,
                        after: sql::audit_state_of(r.try_get(8)?, "audit_log.after_json")?,
                        source: r.try_get(9)?,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            Ok(AuditPage::cut(entries, limit))
        })
    }
}

impl OutcomeStore for Postgres {
    fn insert_outcome(&self, o: Outcome) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let (r, t, s) = match &o.subject {
                Subject::Request(v) => (Some(v), None, None),
                Subject::Trace(v) => (None, Some(v), None),
                Subject::Session(v) => (None, None, Some(v)),
            };
            self.client()
                .await?
                .execute(
                    "INSERT INTO outcomes (id, ts_ms, request_id, trace_id, session, name, value, success, reported_by) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    &[&o.id, &o.time_ms, &r, &t, &s, &o.name, &o.value, &o.success, &o.reported_by],
                )
                .await?;
            Ok(())
        })
    }

    fn list_outcomes(&self, limit: usize) -> StoreFuture<'_, Vec<Outcome>> {
        Box::pin(async move {
            let rows = self
                .client()
                .await?
                .query(
                    "SELECT id, ts_ms, request_id, trace_id, session, name, value, success, reported_by FROM outcomes \
                     ORDER BY ts_ms DESC, id DESC LIMIT $1",
                    &[&(limit.clamp(1, 1000) as i64)],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    let subject = match (
                        r.try_get::<_, Option<String>>(2)?,
                        r.try_get::<_, Option<String>>(3)?,
                        r.try_get::<_, Option<String>>(4)?,
                    ) {
                        (Some(v), _, _) => Subject::Request(v),
                        (None, Some(v), _) => Subject::Trace(v),
                        (None, None, Some(v)) => Subject::Session(v),
                        _ => return Err(StoreError::Corrupt("outcomes")),
                    };
                    Ok(Outcome {
                        id: r.try_get(0)?,
                        time_ms: r.try_get(1)?,
                        subject,
                        name: r.try_get(5)?,
                        value: r.try_get(6)?,
                        success: r.try_get(7)?,
                        reported_by: r.try_get(8)?,
                    })
                })
                .collect()
        })
    }

    fn outcome_cost(&self, q: CostQuery) -> StoreFuture<'_, CostReport> {
        Box::pin(async move {
            let rows = self.query(&sql::outcome_cost_query(Dialect::Postgres, &q)).await?;
            let joined = rows
                .iter()
                .map(|r| {
                    Ok(OutcomeJoin {
                        outcome_id: r.try_get(0)?,
                        success: r.try_get(1)?,
                        request_id: r.try_get(2)?,
                        cost_nanos: r.try_get(3)?,
                        group: r.try_get(4)?,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            Ok(sql::fold_outcome_cost(&q, joined))
        })
    }
}

impl BatchStore for Postgres {
    fn record_batch_object(
        &self,
        id: String,
        kind: &'static str,
        owner: BatchOwner,
        now_ms: i64,
    ) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            // The first owner wins: an id is never handed to another key.
            self.client()
                .await?
                .execute(
                    "INSERT INTO batch_owners (object_id, kind, key_id, team, created_ms) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT DO NOTHING",
                    &[&id, &kind, &owner.key_id, &owner.team, &now_ms],
                )
                .await?;
            Ok(())
        })
    }

    fn batch_object_owner(&self, id: String) -> StoreFuture<'_, Option<BatchOwner>> {
        Box::pin(async move {
            let row = self
                .client()
                .await?
                .query_opt("SELECT key_id, team FROM batch_owners WHERE object_id = $1", &[&id])
                .await?;
            row.map(|r| Ok(BatchOwner { key_id: r.try_get(0)?, team: r.try_get(1)? })).transpose()
        })
    }

    fn record_batch(
        &self,
        id: String,
        provider: String,
        key_id: String,
        attribution: String,
        now_ms: i64,
    ) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.client()
                .await?
                .execute(
                    "INSERT INTO batches (id, provider, key_id, attribution, created_ms) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT DO NOTHING",
                    &[&id, &provider, &key_id, &attribution, &now_ms],
                )
                .await?;
            Ok(())
        })
    }

    fn batch(&self, id: String) -> StoreFuture<'_, Option<(String, String, String)>> {
        Box::pin(async move {
            let row = self
                .client()
                .await?
                .query_opt("SELECT provider, key_id, attribution FROM batches WHERE id = $1", &[&id])
                .await?;
            row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?))).transpose()
        })
    }

    fn record_batch_file(&self, file_id: String, batch_id: String) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.client()
                .await?
                .execute(
                    "INSERT INTO batch_files (file_id, batch_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    &[&file_id, &batch_id],
                )
                .await?;
            Ok(())
        })
    }

    fn batch_of_file(&self, file_id: String) -> StoreFuture<'_, Option<String>> {
        Box::pin(async move {
            let row = self
                .client()
                .await?
                .query_opt("SELECT batch_id FROM batch_files WHERE file_id = $1", &[&file_id])
                .await?;
            row.map(|r| Ok(r.try_get(0)?)).transpose()
        })
    }
}

impl super::SessionStore for Postgres {
    fn insert_session(&self, s: crate::session::Session) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.client()
                .await?
                .execute(
                    "INSERT INTO sessions (id_hash, handle, subject, name, email, groups_json, created_ms, expires_ms, \
                     revoked_ms, source) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                    &[
                        &&s.id_hash[..],
                        &s.handle,
                        &s.subject,
                        &s.name,
                        &s.email,
                        &serde_json::to_string(&s.groups).unwrap_or_else(|_| "[]".into()),
                        &s.created_ms,
                        &s.expires_ms,
                        &s.revoked_ms,
                        &s.source,
                    ],
                )
                .await?;
            Ok(())
        })
    }

    fn session(&self, id_hash: [u8; 32]) -> StoreFuture<'_, Option<crate::session::Session>> {
        Box::pin(async move {
            let c = self.client().await?;
            let stmt = c.prepare_cached("SELECT * FROM sessions WHERE id_hash = $1").await?;
            c.query_opt(&stmt, &[&&id_hash[..]]).await?.as_ref().map(session_from_row).transpose()
        })
    }

    fn active_sessions(&self, now_ms: i64) -> StoreFuture<'_, Vec<crate::session::Session>> {
        Box::pin(async move {
            let rows = self
                .client()
                .await?
                .query(
                    "SELECT * FROM sessions WHERE revoked_ms IS NULL AND expires_ms > $1 ORDER BY created_ms DESC, handle",
                    &[&now_ms],
                )
                .await?;
            rows.iter().map(session_from_row).collect()
        })
    }

    fn revoke_session(&self, handle: String, now_ms: i64) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let n = self
                .client()
                .await?
                .execute(
                    "UPDATE sessions SET revoked_ms = $2 WHERE handle = $1 AND revoked_ms IS NULL",
                    &[&handle, &now_ms],
                )
                .await?;
            Ok(n > 0)
        })
    }

    fn prune_sessions(&self, before_ms: i64) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            Ok(self
                .client()
                .await?
                .execute("DELETE FROM sessions WHERE expires_ms < $1 OR revoked_ms < $1", &[&before_ms])
                .await?)
        })
    }
}

impl super::ReconciliationStore for Postgres {
    fn save_reconciliation(
        &self,
        provider: String,
        from_day: String,
        to_day: String,
        lines: Vec<crate::reconciliation::ReconLine>,
        now_ms: i64,
    ) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut c = self.client().await?;
            let tx = c.transaction().await?;
            tx.execute(
                "DELETE FROM reconciliation WHERE provider = $1 AND day >= $2 AND day <= $3",
                &[&provider, &from_day, &to_day],
            )
            .await?;
            let stmt = tx
                .prepare_cached(&format!(
                    "INSERT INTO reconciliation ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
                     ON CONFLICT (provider, day, kind, model, account) DO UPDATE SET \
                     gateway_cost_nanos = EXCLUDED.gateway_cost_nanos, provider_cost_nanos = EXCLUDED.provider_cost_nanos, \
                     gateway_input_tokens = EXCLUDED.gateway_input_tokens, gateway_output_tokens = EXCLUDED.gateway_output_tokens, \
                     provider_input_tokens = EXCLUDED.provider_input_tokens, provider_output_tokens = EXCLUDED.provider_output_tokens, \
                     gateway_requests = EXCLUDED.gateway_requests, provider_requests = EXCLUDED.provider_requests, \
                     cause = EXCLUDED.cause, reconciled_ms = EXCLUDED.reconciled_ms",
                    sql::RECONCILIATION_COLUMNS
                ))
                .await?;
            for l in &lines {
                tx.execute(
                    &stmt,
                    &[
                        &provider,
                        &l.day,
                        &l.kind.as_str(),
                        &l.model,
                        &l.account.as_deref().unwrap_or(""),
                        &l.gateway_cost.nanos(),
                        &l.provider_cost.nanos(),
                        &sql::int(l.gateway_input_tokens),
                        &sql::int(l.gateway_output_tokens),
                        &sql::int(l.provider_input_tokens),
                        &sql::int(l.provider_output_tokens),
                        &sql::int(l.gateway_requests),
                        &sql::int(l.provider_requests),
                        &l.cause,
                        &now_ms,
                    ],
                )
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    fn reconciliation(
        &self,
        provider: Option<String>,
        from_day: String,
        to_day: String,
    ) -> StoreFuture<'_, Vec<crate::reconciliation::ReconLine>> {
        Box::pin(async move {
            let c = self.client().await?;
            let rows = c
                .query(
                    &format!(
                        "SELECT {} FROM reconciliation WHERE day >= $1 AND day <= $2 AND ($3::TEXT IS NULL OR provider = $3) \
                         ORDER BY day, provider, kind, model, account",
                        sql::RECONCILIATION_COLUMNS
                    ),
                    &[&from_day, &to_day, &provider],
                )
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                let kind: String = r.try_get(2)?;
                let account: String = r.try_get(4)?;
                out.push(crate::reconciliation::ReconLine {
                    provider: r.try_get(0)?,
                    day: r.try_get(1)?,
                    kind: crate::reconciliation::LineKind::parse(&kind)
                        .ok_or(StoreError::Corrupt("reconciliation.kind"))?,
                    model: r.try_get(3)?,
                    account: (!account.is_empty()).then_some(account),
                    gateway_cost: tollgate_units::Money::from_nanos(r.try_get(5)?),
                    provider_cost: tollgate_units::Money::from_nanos(r.try_get(6)?),
                    gateway_input_tokens: sql::count(r.try_get(7)?),
                    gateway_output_tokens: sql::count(r.try_get(8)?),
                    provider_input_tokens: sql::count(r.try_get(9)?),
                    provider_output_tokens: sql::count(r.try_get(10)?),
                    gateway_requests: sql::count(r.try_get(11)?),
                    provider_requests: sql::count(r.try_get(12)?),
                    cause: r.try_get(13)?,
                    reconciled_ms: r.try_get(14)?,
                });
            }
            Ok(out)
        })
    }
}
