//! The embedded store: SQLite in WAL mode, one connection for the ledger
//! writer and one for everything else, so reads never wait on a batch commit.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};
use tollgate_units::{Money, Usage};

use super::{KeyRecord, NewKey, RequestPage, RequestQuery, StoreError};
use crate::attribution::Attribution;
use crate::record::{CacheOutcome, Endpoint, LedgerRow, UsageSource};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS keys (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    hash          BLOB NOT NULL UNIQUE,
    prefix        TEXT NOT NULL,
    default_tags  TEXT NOT NULL,
    enforced_tags TEXT NOT NULL,
    models        TEXT NOT NULL,
    created_ms    INTEGER NOT NULL,
    expires_ms    INTEGER,
    revoked_ms    INTEGER
);
CREATE TABLE IF NOT EXISTS ledger (
    request_id          TEXT PRIMARY KEY,
    ts_ms               INTEGER NOT NULL,
    key_id              TEXT,
    endpoint            TEXT NOT NULL,
    requested_model     TEXT,
    model               TEXT,
    provider            TEXT,
    status              INTEGER NOT NULL,
    error_code          TEXT,
    input_uncached      INTEGER NOT NULL,
    input_audio         INTEGER NOT NULL,
    cache_read          INTEGER NOT NULL,
    cache_write_5m      INTEGER NOT NULL,
    cache_write_1h      INTEGER NOT NULL,
    output_text         INTEGER NOT NULL,
    output_audio        INTEGER NOT NULL,
    output_image        INTEGER NOT NULL,
    reasoning           INTEGER NOT NULL,
    usage_source        TEXT NOT NULL,
    cost_nanos          INTEGER,
    cache_savings_nanos INTEGER NOT NULL,
    response_cache_savings_nanos INTEGER NOT NULL DEFAULT 0,
    streamed            INTEGER NOT NULL,
    client_disconnected INTEGER NOT NULL,
    cache               TEXT NOT NULL,
    latency_ms          INTEGER NOT NULL,
    ttft_ms             INTEGER,
    attempts            INTEGER NOT NULL,
    attempt_log         TEXT,
    prefix_hash         TEXT,
    user                TEXT,
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
    web_search_requests INTEGER NOT NULL DEFAULT 0,
    tool_cost_nanos     INTEGER NOT NULL DEFAULT 0,
    provider_cost_nanos INTEGER,
    input_image_tokens  INTEGER NOT NULL DEFAULT 0,
    images              INTEGER NOT NULL DEFAULT 0,
    audio_ms            INTEGER NOT NULL DEFAULT 0,
    characters          INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS ledger_ts ON ledger (ts_ms);
CREATE INDEX IF NOT EXISTS ledger_team_ts ON ledger (team, ts_ms);
CREATE INDEX IF NOT EXISTS ledger_key_ts ON ledger (key_id, ts_ms);
-- Most rows carry no trace: they cost this index nothing.
CREATE INDEX IF NOT EXISTS ledger_trace_set ON ledger (trace_id) WHERE trace_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS budgets (
    id             TEXT PRIMARY KEY,
    scope          TEXT NOT NULL,
    limit_nanos    INTEGER NOT NULL,
    period         TEXT NOT NULL,
    action         TEXT NOT NULL,
    alert_at       TEXT NOT NULL,
    block_unpriced INTEGER NOT NULL,
    updated_ms     INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS rate_limits (
    id         TEXT PRIMARY KEY,
    scope      TEXT NOT NULL,
    kind       TEXT NOT NULL,
    amount     INTEGER NOT NULL,
    window_ms  INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    id          TEXT PRIMARY KEY,
    provider    TEXT NOT NULL,
    key_id      TEXT NOT NULL,
    attribution TEXT NOT NULL,
    created_ms  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS batch_files (
    file_id  TEXT PRIMARY KEY,
    batch_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS batch_owners (
    object_id  TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    key_id     TEXT NOT NULL,
    team       TEXT,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS alerts_fired (
    budget_id       TEXT NOT NULL,
    period_start_ms INTEGER NOT NULL,
    threshold       INTEGER NOT NULL,
    fired_ms        INTEGER NOT NULL,
    PRIMARY KEY (budget_id, period_start_ms, threshold)
);
CREATE TABLE IF NOT EXISTS price_updates (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    applied_ms INTEGER NOT NULL,
    source     TEXT NOT NULL,
    applied_by TEXT NOT NULL,
    catalog    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ms       INTEGER NOT NULL,
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
CREATE TABLE IF NOT EXISTS sessions (
    id_hash     BLOB PRIMARY KEY,
    handle      TEXT NOT NULL UNIQUE,
    subject     TEXT NOT NULL,
    name        TEXT NOT NULL,
    email       TEXT,
    groups_json TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    expires_ms  INTEGER NOT NULL,
    revoked_ms  INTEGER,
    source      TEXT
);
CREATE TABLE IF NOT EXISTS reconciliation (
    provider               TEXT NOT NULL,
    day                    TEXT NOT NULL,
    kind                   TEXT NOT NULL,
    model                  TEXT NOT NULL,
    account                TEXT NOT NULL,
    gateway_cost_nanos     INTEGER NOT NULL,
    provider_cost_nanos    INTEGER NOT NULL,
    gateway_input_tokens   INTEGER NOT NULL,
    gateway_output_tokens  INTEGER NOT NULL,
    provider_input_tokens  INTEGER NOT NULL,
    provider_output_tokens INTEGER NOT NULL,
    gateway_requests       INTEGER NOT NULL,
    provider_requests      INTEGER NOT NULL,
    cause                  TEXT,
    reconciled_ms          INTEGER NOT NULL,
    PRIMARY KEY (provider, day, kind, model, account)
);
"#;

const ROLLUP_TABLE: &str = r#"CREATE TABLE IF NOT EXISTS ledger_hourly (
    hour_ms             INTEGER NOT NULL,
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
    requests            INTEGER NOT NULL,
    input_tokens        INTEGER NOT NULL,
    cache_read_tokens   INTEGER NOT NULL,
    cache_write_tokens  INTEGER NOT NULL,
    output_tokens       INTEGER NOT NULL,
    reasoning_tokens    INTEGER NOT NULL,
    cost_nanos          INTEGER NOT NULL,
    cache_savings_nanos INTEGER NOT NULL,
    estimated           INTEGER NOT NULL,
    unpriced            INTEGER NOT NULL,
    errors              INTEGER NOT NULL,
    attempts            INTEGER NOT NULL,
    response_cache_savings_nanos INTEGER NOT NULL,
    tool_cost_nanos     INTEGER NOT NULL DEFAULT 0,
    web_search_requests INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (hour_ms, key_id, team, org, feature, env, model, requested_model, provider, agent, prompt, endpoint)
) WITHOUT ROWID;
"#;

use super::sql::{int as i, rollup_key, tags_json, RollupSums, HOUR_MS, LEDGER_COLUMNS};

pub struct SqliteStore {
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish()
    }
}

/// `sqlite://path`, `sqlite:path` or a bare path.
pub fn sqlite_path(url: &str) -> Result<PathBuf, StoreError> {
    crate::config::sqlite_file(url).ok_or_else(|| StoreError::UnsupportedUrl(url.into()))
}

/// Creates the database file readable by its owner only (0600) and tightens an
/// existing one. It holds key hashes and, unless `TOLLGATE_KEY_SECRET` is set,
/// the key-hashing secret; SQLite gives the `-wal` and `-shm` files the same mode.
fn private_file(path: &std::path::Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
        for p in [path.to_path_buf(), wal_path(path, "-wal"), wal_path(path, "-shm")] {
            if p.exists() {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))?;
            }
        }
    }
    Ok(())
}

fn wal_path(path: &std::path::Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

fn open(path: &PathBuf) -> Result<Connection, StoreError> {
    private_file(path)?;
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // WAL + NORMAL: a committed transaction survives a process crash (kill -9);
    // only an OS crash / power loss can lose the last commits.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

/// Adds a column to an existing table unless it is there already.
fn add_column(conn: &Connection, table: &str, col: &str, decl: &str) -> Result<(), StoreError> {
    let has: bool =
        conn.prepare(&format!("SELECT 1 FROM pragma_table_info('{table}') WHERE name = ?1"))?.exists(params![col])?;
    if !has {
        conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {col} {decl}"))?;
    }
    Ok(())
}

impl SqliteStore {
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    pub fn open(url: &str) -> Result<SqliteStore, StoreError> {
        let path = sqlite_path(url)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let writer = open(&path)?;
        writer.execute_batch(SCHEMA)?;
        // Key prefixes stored before they were shortened.
        writer.execute(
            "UPDATE keys SET prefix = substr(prefix, 1, ?1) WHERE length(prefix) > ?1",
            params![super::KEY_PREFIX_SHOWN as i64],
        )?;
        // Replaced by the partial index `ledger_trace_set`.
        writer.execute_batch("DROP INDEX IF EXISTS ledger_trace")?;
        // Columns added since the table was first created.
        for (col, decl) in [
            ("attempt_log", "TEXT"),
            ("response_cache_savings_nanos", "INTEGER NOT NULL DEFAULT 0"),
            ("prefix_hash", "TEXT"),
            ("web_search_requests", "INTEGER NOT NULL DEFAULT 0"),
            ("tool_cost_nanos", "INTEGER NOT NULL DEFAULT 0"),
            ("provider_cost_nanos", "INTEGER"),
            ("input_image_tokens", "INTEGER NOT NULL DEFAULT 0"),
            ("images", "INTEGER NOT NULL DEFAULT 0"),
            ("audio_ms", "INTEGER NOT NULL DEFAULT 0"),
            ("characters", "INTEGER NOT NULL DEFAULT 0"),
        ] {
            add_column(&writer, "ledger", col, decl)?;
        }
        // Key rotation: the previous secret's hash, prefix and grace period.
        for (col, decl) in [("prev_hash", "BLOB"), ("prev_prefix", "TEXT"), ("prev_valid_until_ms", "INTEGER")] {
            add_column(&writer, "keys", col, decl)?;
        }
        writer.execute_batch(
            "CREATE UNIQUE INDEX IF NOT EXISTS keys_prev_hash ON keys (prev_hash) WHERE prev_hash IS NOT NULL",
        )?;
        // Databases written before the rollup existed: build it once from the raw rows.
        let built: Option<String> =
            writer.query_row("SELECT value FROM meta WHERE name = 'rollup_v3'", [], |r| r.get(0)).optional()?;
        if built.is_none() {
            writer.execute_batch(&format!(
                "BEGIN; DROP TABLE IF EXISTS ledger_hourly; {ROLLUP_TABLE} INSERT INTO ledger_hourly SELECT (ts_ms / {HOUR_MS}) * {HOUR_MS}, \
                 COALESCE(key_id,''), COALESCE(team,''), COALESCE(org,''), COALESCE(feature,''), COALESCE(env,''), \
                 COALESCE(model,''), COALESCE(requested_model,''), COALESCE(provider,''), COALESCE(agent,''), \
                 COALESCE(prompt,''), endpoint, COUNT(*), \
                 SUM(input_uncached + input_image_tokens + input_audio + cache_read + cache_write_5m + cache_write_1h), \
                 SUM(cache_read), SUM(cache_write_5m + cache_write_1h), \
                 SUM(output_text + output_audio + output_image + reasoning), \
                 SUM(reasoning), SUM(COALESCE(cost_nanos, 0)), SUM(cache_savings_nanos), \
                 SUM(usage_source = 'estimated'), SUM(cost_nanos IS NULL), SUM(status >= 400), SUM(attempts), \
                 SUM(response_cache_savings_nanos), SUM(tool_cost_nanos), SUM(web_search_requests) \
                 FROM ledger GROUP BY 1,2,3,4,5,6,7,8,9,10,11,12; \
                 INSERT INTO meta (name, value) VALUES ('rollup_v3', 'built'); COMMIT;"
            ))?;
        }
        // Rollup sums added since the rollup was first built (its rows from
        // before summed ledger rows that had none of them: 0 is exact).
        for col in ["tool_cost_nanos", "web_search_requests"] {
            add_column(&writer, "ledger_hourly", col, "INTEGER NOT NULL DEFAULT 0")?;
        }
        let reader = open(&path)?;
        Ok(SqliteStore { writer: Mutex::new(writer), reader: Mutex::new(reader), path })
    }

    fn reader(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.reader.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs a read-only query on the reader connection (analytics).
    /// Records who owns a batch-API object (an uploaded file, a batch, a batch's
    /// output file). The first owner wins: an id is never handed to another key.
    pub fn record_batch_object(&self, id: &str, kind: &str, owner: &BatchOwner, now_ms: i64) -> Result<(), StoreError> {
        self.reader().execute(
            "INSERT OR IGNORE INTO batch_owners (object_id, kind, key_id, team, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, kind, owner.key_id, owner.team, now_ms],
        )?;
        Ok(())
    }

    /// Who owns a batch-API object, if it was created through this gateway.
    pub fn batch_object_owner(&self, id: &str) -> Result<Option<BatchOwner>, StoreError> {
        Ok(self
            .reader()
            .query_row("SELECT key_id, team FROM batch_owners WHERE object_id = ?1", params![id], |r| {
                Ok(BatchOwner { key_id: r.get(0)?, team: r.get(1)? })
            })
            .optional()?)
    }

    /// Remembers a batch (its provider and attribution price its results later).
    pub fn record_batch(
        &self,
        id: &str,
        provider: &str,
        key_id: &str,
        attribution: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.reader().execute(
            "INSERT OR IGNORE INTO batches (id, provider, key_id, attribution, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, provider, key_id, attribution, now_ms],
        )?;
        Ok(())
    }

    /// A batch's provider, owner key and attribution (JSON).
    pub fn batch(&self, id: &str) -> Result<Option<(String, String, String)>, StoreError> {
        Ok(self
            .reader()
            .query_row("SELECT provider, key_id, attribution FROM batches WHERE id = ?1", params![id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?)
    }

    /// Remembers which batch an output file belongs to.
    pub fn record_batch_file(&self, file_id: &str, batch_id: &str) -> Result<(), StoreError> {
        self.reader().execute(
            "INSERT OR IGNORE INTO batch_files (file_id, batch_id) VALUES (?1, ?2)",
            params![file_id, batch_id],
        )?;
        Ok(())
    }

    /// The batch an output file belongs to.
    pub fn batch_of_file(&self, file_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .reader()
            .query_row("SELECT batch_id FROM batch_files WHERE file_id = ?1", params![file_id], |r| r.get(0))
            .optional()?)
    }

    /// One request's row, by id.
    pub fn request(&self, id: &str) -> Result<Option<LedgerRow>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached("SELECT * FROM ledger WHERE request_id = ?1")?;
        Ok(ledger_rows(&mut stmt, &[rusqlite::types::Value::Text(id.to_owned())])?.into_iter().next())
    }

    /// Models with rows but no price: (provider, model, requests), most requests first.
    pub fn unpriced_models(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        let c = self.reader();
        let mut stmt = c.prepare(super::sql::UNPRICED_MODELS)?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    pub fn with_reader<T>(&self, f: impl FnOnce(&Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        f(&self.reader())
    }
}

/// Who owns a batch-API object: the creating key, and its team when it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchOwner {
    pub key_id: String,
    pub team: Option<String>,
}

impl BatchOwner {
    /// The owning key, or a key of the owning team.
    pub fn admits(&self, other: &BatchOwner) -> bool {
        self.key_id == other.key_id || (self.team.is_some() && self.team == other.team)
    }
}

fn parse_tags(s: &str, col: &'static str) -> Result<BTreeMap<String, String>, StoreError> {
    serde_json::from_str(s).map_err(|_| StoreError::Corrupt(col))
}

fn key_from_row(r: &rusqlite::Row<'_>) -> Result<KeyRecord, StoreError> {
    let models: String = r.get("models")?;
    Ok(KeyRecord {
        id: r.get("id")?,
        name: r.get("name")?,
        prefix: r.get("prefix")?,
        default_tags: parse_tags(&r.get::<_, String>("default_tags")?, "default_tags")?,
        enforced_tags: parse_tags(&r.get::<_, String>("enforced_tags")?, "enforced_tags")?,
        models: serde_json::from_str(&models).map_err(|_| StoreError::Corrupt("models"))?,
        created_ms: r.get("created_ms")?,
        expires_ms: r.get("expires_ms")?,
        revoked_ms: r.get("revoked_ms")?,
        previous: match (r.get::<_, Option<String>>("prev_prefix")?, r.get::<_, Option<i64>>("prev_valid_until_ms")?) {
            (Some(prefix), Some(valid_until_ms)) => Some(super::PreviousSecret { prefix, valid_until_ms }),
            _ => None,
        },
    })
}

/// Keys (the blocking calls behind [`super::KeyStore`]).
impl SqliteStore {
    pub fn insert_key(&self, key: &NewKey) -> Result<(), StoreError> {
        let k = &key.record;
        self.reader().execute(
            "INSERT INTO keys (id, name, hash, prefix, default_tags, enforced_tags, models, created_ms, expires_ms, revoked_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                k.id,
                k.name,
                &key.hash[..],
                k.prefix,
                tags_json(&k.default_tags),
                tags_json(&k.enforced_tags),
                serde_json::to_string(&k.models).unwrap_or_else(|_| "[]".into()),
                k.created_ms,
                k.expires_ms,
                k.revoked_ms
            ],
        )?;
        Ok(())
    }

    pub fn key_by_hash(&self, hash: &[u8; 32]) -> Result<Option<super::KeyMatch>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(
            "SELECT *, hash <> ?1 AS previous_secret FROM keys WHERE hash = ?1 \
             UNION ALL SELECT *, 1 FROM keys WHERE prev_hash = ?1",
        )?;
        let mut rows = stmt.query(params![&hash[..]])?;
        match rows.next()? {
            Some(r) => Ok(Some(super::KeyMatch {
                record: key_from_row(r)?,
                previous_secret: r.get::<_, bool>("previous_secret")?,
            })),
            None => Ok(None),
        }
    }

    pub fn rotate_key(
        &self,
        id: &str,
        hash: &[u8; 32],
        prefix: &str,
        previous_valid_until_ms: i64,
    ) -> Result<bool, StoreError> {
        let n = self.reader().execute(
            "UPDATE keys SET prev_hash = hash, prev_prefix = prefix, prev_valid_until_ms = ?4, hash = ?2, prefix = ?3 \
             WHERE id = ?1 AND revoked_ms IS NULL",
            params![id, &hash[..], prefix, previous_valid_until_ms],
        )?;
        Ok(n > 0)
    }

    pub fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare("SELECT * FROM keys ORDER BY created_ms, id")?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push(key_from_row(r)?);
        }
        Ok(out)
    }

    pub fn revoke_key(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        let n = self
            .reader()
            .execute("UPDATE keys SET revoked_ms = COALESCE(revoked_ms, ?2) WHERE id = ?1", params![id, now_ms])?;
        Ok(n > 0)
    }

    pub fn key_hash_secret(&self) -> Result<Vec<u8>, StoreError> {
        let conn = self.reader();
        let existing: Option<String> =
            conn.query_row("SELECT value FROM meta WHERE name = 'key_hash_secret'", [], |r| r.get(0)).optional()?;
        let hex_secret = match existing {
            Some(v) => v,
            None => {
                let fresh: [u8; 32] = rand::random();
                let v = hex::encode(fresh);
                conn.execute("INSERT OR IGNORE INTO meta (name, value) VALUES ('key_hash_secret', ?1)", params![v])?;
                conn.query_row("SELECT value FROM meta WHERE name = 'key_hash_secret'", [], |r| r.get(0))?
            }
        };
        hex::decode(hex_secret).map_err(|_| StoreError::Corrupt("meta.key_hash_secret"))
    }
}

fn u(r: &rusqlite::Row<'_>, col: usize) -> Result<u64, rusqlite::Error> {
    Ok(r.get::<_, i64>(col)?.max(0) as u64)
}

/// The ledger's columns by name, resolved to their positions once per
/// statement: rusqlite's lookup by name compares every column's name on each
/// call, which was most of the cost of reading many rows.
macro_rules! ledger_columns {
    ($($col:ident),* $(,)?) => {
        #[allow(non_snake_case)]
        pub(crate) struct LedgerCols { $($col: usize,)* }

        impl LedgerCols {
            pub(crate) fn of(stmt: &rusqlite::Statement<'_>) -> Result<LedgerCols, StoreError> {
                Ok(LedgerCols { $($col: stmt.column_index(stringify!($col))?,)* })
            }
        }
    };
}

ledger_columns!(
    tags,
    input_uncached,
    input_image_tokens,
    input_audio,
    cache_read,
    cache_write_5m,
    cache_write_1h,
    output_text,
    output_audio,
    output_image,
    reasoning,
    web_search_requests,
    images,
    audio_ms,
    characters,
    request_id,
    ts_ms,
    key_id,
    endpoint,
    requested_model,
    model,
    provider,
    status,
    error_code,
    usage_source,
    cost_nanos,
    cache_savings_nanos,
    response_cache_savings_nanos,
    tool_cost_nanos,
    provider_cost_nanos,
    streamed,
    client_disconnected,
    cache,
    latency_ms,
    ttft_ms,
    attempts,
    prefix_hash,
    attempt_log,
    trace_id,
    parent_id,
    session,
    agent,
    prompt,
);

/// Every row of a `SELECT * FROM ledger …` statement.
fn ledger_rows(
    stmt: &mut rusqlite::Statement<'_>,
    args: &[rusqlite::types::Value],
) -> Result<Vec<LedgerRow>, StoreError> {
    let c = LedgerCols::of(stmt)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(ledger_from_row(r, &c)?);
    }
    Ok(out)
}

pub(crate) fn ledger_from_row(r: &rusqlite::Row<'_>, c: &LedgerCols) -> Result<LedgerRow, StoreError> {
    let tags: String = r.get(c.tags)?;
    let usage = Usage {
        input: u(r, c.input_uncached)?,
        input_image: u(r, c.input_image_tokens)?,
        input_audio: u(r, c.input_audio)?,
        cache_read: u(r, c.cache_read)?,
        cache_write_5m: u(r, c.cache_write_5m)?,
        cache_write_1h: u(r, c.cache_write_1h)?,
        output: u(r, c.output_text)?,
        output_audio: u(r, c.output_audio)?,
        output_image: u(r, c.output_image)?,
        reasoning: u(r, c.reasoning)?,
        web_search_requests: u(r, c.web_search_requests)?,
        images: u(r, c.images)?,
        audio_ms: u(r, c.audio_ms)?,
        characters: u(r, c.characters)?,
    };
    Ok(LedgerRow {
        request_id: r.get(c.request_id)?,
        time_ms: r.get(c.ts_ms)?,
        key_id: r.get(c.key_id)?,
        endpoint: Endpoint::parse(&r.get::<_, String>(c.endpoint)?).ok_or(StoreError::Corrupt("endpoint"))?,
        requested_model: r.get(c.requested_model)?,
        model: r.get(c.model)?,
        provider: r.get(c.provider)?,
        status: r.get::<_, i64>(c.status)? as u16,
        error_code: r.get(c.error_code)?,
        usage,
        usage_source: if r.get::<_, String>(c.usage_source)? == "estimated" {
            UsageSource::Estimated
        } else {
            UsageSource::Provider
        },
        cost: r.get::<_, Option<i64>>(c.cost_nanos)?.map(Money::from_nanos),
        cache_savings: Money::from_nanos(r.get(c.cache_savings_nanos)?),
        response_cache_savings: Money::from_nanos(r.get(c.response_cache_savings_nanos)?),
        tool_cost: Money::from_nanos(r.get(c.tool_cost_nanos)?),
        provider_cost: r.get::<_, Option<i64>>(c.provider_cost_nanos)?.map(Money::from_nanos),
        streamed: r.get(c.streamed)?,
        client_disconnected: r.get(c.client_disconnected)?,
        cache: CacheOutcome::parse(&r.get::<_, String>(c.cache)?).ok_or(StoreError::Corrupt("cache"))?,
        latency_ms: u(r, c.latency_ms)?,
        ttft_ms: r.get::<_, Option<i64>>(c.ttft_ms)?.map(|v| v.max(0) as u64),
        attempts: r.get::<_, i64>(c.attempts)? as u32,
        prefix_hash: r.get(c.prefix_hash)?,
        attempt_log: r
            .get::<_, Option<String>>(c.attempt_log)?
            .and_then(|j| serde_json::from_str(&j).ok())
            .unwrap_or_default(),
        attribution: Attribution {
            tags: parse_tags(&tags, "tags")?,
            trace_id: r.get(c.trace_id)?,
            parent_id: r.get(c.parent_id)?,
            session: r.get(c.session)?,
            agent: r.get(c.agent)?,
            prompt: r.get(c.prompt)?,
        },
    })
}

/// The ledger (the blocking calls behind [`super::LedgerSink`] and [`super::RequestLog`]).
impl SqliteStore {
    pub fn append(&self, rows: &[&LedgerRow]) -> Result<(), StoreError> {
        let mut conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn.transaction()?;
        {
            let sql = format!(
                "INSERT OR IGNORE INTO ledger ({LEDGER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, \
                 ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, \
                 ?31, ?32, ?33, ?34, ?35, ?36, ?37, ?38, ?39, ?40, ?41, ?42, ?43, ?44, ?45, ?46, ?47, ?48)"
            );
            let mut stmt = tx.prepare_cached(&sql)?;
            let mut rollup: std::collections::HashMap<(i64, [String; 11]), RollupSums> =
                std::collections::HashMap::new();
            for row in rows {
                let a = &row.attribution;
                let us = &row.usage;
                let inserted = stmt.execute(params![
                    row.request_id,
                    row.time_ms,
                    row.key_id,
                    row.endpoint.as_str(),
                    row.requested_model,
                    row.model,
                    row.provider,
                    row.status,
                    row.error_code,
                    i(us.input),
                    i(us.input_audio),
                    i(us.cache_read),
                    i(us.cache_write_5m),
                    i(us.cache_write_1h),
                    i(us.output),
                    i(us.output_audio),
                    i(us.output_image),
                    i(us.reasoning),
                    row.usage_source.as_str(),
                    row.cost.map(Money::nanos),
                    row.cache_savings.nanos(),
                    row.streamed,
                    row.client_disconnected,
                    row.cache.as_str(),
                    i(row.latency_ms),
                    row.ttft_ms.map(i),
                    row.attempts,
                    a.tag("user"),
                    a.tag("team"),
                    a.tag("org"),
                    a.tag("feature"),
                    a.tag("env"),
                    tags_json(&a.tags),
                    a.trace_id,
                    a.parent_id,
                    a.session,
                    a.agent,
                    a.prompt,
                    if row.attempt_log.is_empty() { None } else { serde_json::to_string(&row.attempt_log).ok() },
                    row.response_cache_savings.nanos(),
                    row.prefix_hash,
                    i(us.web_search_requests),
                    row.tool_cost.nanos(),
                    row.provider_cost.map(Money::nanos),
                    i(us.input_image),
                    i(us.images),
                    i(us.audio_ms),
                    i(us.characters),
                ])?;
                if inserted == 0 {
                    // Already stored (a replayed row): it is in the rollup too.
                    continue;
                }
                rollup.entry(rollup_key(row)).or_default().add(row);
            }
            let mut up = tx.prepare_cached(&super::sql::rollup_upsert(super::sql::Dialect::Sqlite))?;
            for ((hour, k), r) in rollup {
                let mut args: Vec<rusqlite::types::Value> =
                    Vec::with_capacity(1 + super::sql::ROLLUP_DIMENSIONS.len() + super::sql::ROLLUP_SUMS.len());
                args.push(hour.into());
                args.extend(k.into_iter().map(rusqlite::types::Value::from));
                args.extend(r.values().into_iter().map(rusqlite::types::Value::from));
                up.execute(rusqlite::params_from_iter(args))?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub fn rows_between(
        &self,
        from_ms: i64,
        to_ms: i64,
        after: Option<(i64, String)>,
        limit: usize,
    ) -> Result<Vec<LedgerRow>, StoreError> {
        let query = super::sql::rows_between_query(super::sql::Dialect::Sqlite, from_ms, to_ms, after, limit);
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(&query.text)?;
        ledger_rows(&mut stmt, &values(&query))
    }

    pub fn requests(&self, q: &RequestQuery) -> Result<RequestPage, StoreError> {
        let (query, limit) = super::sql::requests_query(super::sql::Dialect::Sqlite, q);
        let conn = self.reader();
        let mut stmt = conn.prepare(&query.text)?;
        Ok(super::sql::page(ledger_rows(&mut stmt, &values(&query))?, limit))
    }
}

/// Budgets, rate limits, fired alerts and price updates (the governance tables).
impl SqliteStore {
    /// Deletes raw ledger rows older than `before_ms`, in small batches so
    /// writers are never held up for long; the hourly rollup keeps their sums.
    pub fn prune_raw(&self, before_ms: i64) -> Result<u64, StoreError> {
        let mut total = 0u64;
        loop {
            let n = self.writer.lock().unwrap_or_else(|p| p.into_inner()).execute(
                "DELETE FROM ledger WHERE request_id IN (SELECT request_id FROM ledger WHERE ts_ms < ?1 LIMIT 5000)",
                params![before_ms],
            )?;
            total += n as u64;
            if n == 0 {
                return Ok(total);
            }
        }
    }

    pub fn upsert_budget(&self, b: &crate::budget::BudgetSpec, now_ms: i64) -> Result<(), StoreError> {
        self.reader().execute(
            "INSERT INTO budgets (id, scope, limit_nanos, period, action, alert_at, block_unpriced, updated_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (id) DO UPDATE SET scope = excluded.scope, \
             limit_nanos = excluded.limit_nanos, period = excluded.period, action = excluded.action, \
             alert_at = excluded.alert_at, block_unpriced = excluded.block_unpriced, updated_ms = excluded.updated_ms",
            params![
                b.id,
                b.scope.to_string(),
                b.limit.nanos(),
                b.period.to_string(),
                b.action.to_string(),
                serde_json::to_string(&b.alert_at).unwrap_or_else(|_| "[]".into()),
                b.block_unpriced,
                now_ms
            ],
        )?;
        Ok(())
    }

    pub fn delete_budget(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.reader().execute("DELETE FROM budgets WHERE id = ?1", params![id])? > 0)
    }

    pub fn list_budgets(&self) -> Result<Vec<crate::budget::BudgetSpec>, StoreError> {
        use crate::budget::{Action, BudgetSpec, Period, Scope};
        let conn = self.reader();
        let mut stmt = conn.prepare(
            "SELECT id, scope, limit_nanos, period, action, alert_at, block_unpriced FROM budgets ORDER BY id",
        )?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let alert: String = r.get(5)?;
            out.push(BudgetSpec {
                id: r.get(0)?,
                scope: Scope::parse(&r.get::<_, String>(1)?).map_err(|_| StoreError::Corrupt("budgets.scope"))?,
                limit: Money::from_nanos(r.get(2)?),
                period: Period::parse(&r.get::<_, String>(3)?).map_err(|_| StoreError::Corrupt("budgets.period"))?,
                action: Action::parse(&r.get::<_, String>(4)?).map_err(|_| StoreError::Corrupt("budgets.action"))?,
                alert_at: serde_json::from_str(&alert).map_err(|_| StoreError::Corrupt("budgets.alert_at"))?,
                block_unpriced: r.get(6)?,
            });
        }
        Ok(out)
    }

    pub fn upsert_limit(&self, l: &crate::budget::RateLimitSpec, now_ms: i64) -> Result<(), StoreError> {
        let kind = match l.kind {
            crate::budget::LimitKind::Requests => "requests",
            crate::budget::LimitKind::Tokens => "tokens",
            crate::budget::LimitKind::Cost => "cost",
        };
        self.reader().execute(
            "INSERT INTO rate_limits (id, scope, kind, amount, window_ms, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
             ON CONFLICT (id) DO UPDATE SET scope = excluded.scope, kind = excluded.kind, amount = excluded.amount, \
             window_ms = excluded.window_ms, updated_ms = excluded.updated_ms",
            params![l.id, l.scope.to_string(), kind, l.amount, l.window_ms, now_ms],
        )?;
        Ok(())
    }

    pub fn list_limits(&self) -> Result<Vec<crate::budget::RateLimitSpec>, StoreError> {
        use crate::budget::{LimitKind, RateLimitSpec, Scope};
        let conn = self.reader();
        let mut stmt = conn.prepare("SELECT id, scope, kind, amount, window_ms FROM rate_limits ORDER BY id")?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let kind = match r.get::<_, String>(2)?.as_str() {
                "requests" => LimitKind::Requests,
                "tokens" => LimitKind::Tokens,
                "cost" => LimitKind::Cost,
                _ => return Err(StoreError::Corrupt("rate_limits.kind")),
            };
            out.push(RateLimitSpec {
                id: r.get(0)?,
                scope: Scope::parse(&r.get::<_, String>(1)?).map_err(|_| StoreError::Corrupt("rate_limits.scope"))?,
                kind,
                amount: r.get(3)?,
                window_ms: r.get(4)?,
            });
        }
        Ok(out)
    }

    /// A fingerprint of the governance tables, to notice changes made by other processes.
    pub fn governance_version(&self) -> Result<(i64, i64, i64, i64), StoreError> {
        Ok(self
            .reader()
            .query_row(super::sql::GOVERNANCE_VERSION, [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?)
    }

    /// Records a fired threshold; false when it had already fired this period.
    pub fn record_alert(
        &self,
        budget_id: &str,
        period_start_ms: i64,
        threshold: u32,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        Ok(self.reader().execute(
            "INSERT OR IGNORE INTO alerts_fired (budget_id, period_start_ms, threshold, fired_ms) VALUES (?1, ?2, ?3, ?4)",
            params![budget_id, period_start_ms, threshold, now_ms],
        )? > 0)
    }

    pub fn fired_alerts(
        &self,
        budget_id: &str,
        period_start_ms: i64,
    ) -> Result<std::collections::BTreeSet<u32>, StoreError> {
        let conn = self.reader();
        let mut stmt =
            conn.prepare("SELECT threshold FROM alerts_fired WHERE budget_id = ?1 AND period_start_ms = ?2")?;
        let rows = stmt.query_map(params![budget_id, period_start_ms], |r| r.get::<_, u32>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn alerts_fired_since(&self, from_ms: i64) -> Result<Vec<super::FiredAlert>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare(
            "SELECT budget_id, period_start_ms, threshold, fired_ms FROM alerts_fired WHERE period_start_ms >= ?1",
        )?;
        let rows = stmt.query_map(params![from_ms], fired_alert_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn recent_alerts(&self, limit: usize) -> Result<Vec<super::FiredAlert>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare(
            "SELECT budget_id, period_start_ms, threshold, fired_ms FROM alerts_fired \
             ORDER BY fired_ms DESC, budget_id, threshold LIMIT ?1",
        )?;
        let rows = stmt.query_map(params![i64::try_from(limit).unwrap_or(i64::MAX)], fired_alert_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Appends a price update; its id (AUTOINCREMENT: never reused, so always the newest).
    pub fn insert_price_update(
        &self,
        source: &str,
        applied_by: &str,
        catalog: &str,
        now_ms: i64,
    ) -> Result<i64, StoreError> {
        let conn = self.reader();
        conn.execute(
            "INSERT INTO price_updates (applied_ms, source, applied_by, catalog) VALUES (?1, ?2, ?3, ?4)",
            params![now_ms, source, applied_by, catalog],
        )?;
        Ok(conn.last_insert_rowid())
    }

    /// Every price update, oldest first.
    pub fn price_updates(&self) -> Result<Vec<super::PriceUpdate>, StoreError> {
        let conn = self.reader();
        let mut stmt =
            conn.prepare("SELECT id, applied_ms, source, applied_by, catalog FROM price_updates ORDER BY id")?;
        let rows = stmt.query_map([], |r| {
            Ok(super::PriceUpdate {
                id: r.get(0)?,
                applied_ms: r.get(1)?,
                source: r.get(2)?,
                applied_by: r.get(3)?,
                catalog: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The newest price update's id, 0 when there is none.
    pub fn price_update_version(&self) -> Result<i64, StoreError> {
        Ok(self.reader().query_row(super::sql::PRICE_UPDATE_VERSION, [], |r| r.get(0))?)
    }

    /// Settled spend per second since `from_ms` for rows matching `filters` (rolling budgets).
    pub fn spend_per_second(&self, filters: &[(String, String)], from_ms: i64) -> Result<Vec<(i64, i64)>, StoreError> {
        spend_per_second_on(&self.reader(), filters, from_ms)
    }

    /// Many scopes' spend per second on one connection, one statement per
    /// shape of scope (its text is cached; only the bound values change).
    pub fn spend_per_second_many(
        &self,
        asks: &[(Vec<(String, String)>, i64)],
    ) -> Result<Vec<Vec<(i64, i64)>>, StoreError> {
        let conn = self.reader();
        asks.iter().map(|(filters, from_ms)| spend_per_second_on(&conn, filters, *from_ms)).collect()
    }
}

fn spend_per_second_on(
    conn: &Connection,
    filters: &[(String, String)],
    from_ms: i64,
) -> Result<Vec<(i64, i64)>, StoreError> {
    let query = super::sql::spend_per_second_query(super::sql::Dialect::Sqlite, filters, from_ms);
    let mut stmt = conn.prepare_cached(&query.text)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(values(&query)), |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The audit log (the blocking calls behind [`super::AuditLog`]).
impl SqliteStore {
    /// Appends an entry; its id (AUTOINCREMENT: never reused, so always increasing).
    pub fn record_audit(&self, e: &crate::audit::AuditEntry) -> Result<i64, StoreError> {
        use super::sql::{audit_state, AUDIT_COLUMNS};
        let conn = self.reader();
        conn.execute(
            &format!("INSERT INTO audit_log ({AUDIT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
            params![
                e.time_ms,
                e.actor,
                e.actor_role,
                e.action,
                e.target,
                e.team,
                audit_state(&e.before),
                audit_state(&e.after),
                e.source
            ],
        )?;
        Ok(conn.last_insert_rowid())
    }

    pub fn audit(&self, q: &crate::audit::AuditQuery) -> Result<crate::audit::AuditPage, StoreError> {
        use super::sql::audit_state_of;
        let (query, limit) = super::sql::audit_query(super::sql::Dialect::Sqlite, q);
        let conn = self.reader();
        let mut stmt = conn.prepare(&query.text)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(values(&query)))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push(crate::audit::AuditEntry {
                id: Some(r.get(0)?),
                time_ms: r.get(1)?,
                actor: r.get(2)?,
                actor_role: r.get(3)?,
                action: r.get(4)?,
                target: r.get(5)?,
                team: r.get(6)?,
                before: audit_state_of(r.get(7)?, "audit_log.before_json")?,
                after: audit_state_of(r.get(8)?, "audit_log.after_json")?,
                source: r.get(9)?,
            });
        }
        Ok(crate::audit::AuditPage::cut(out, limit))
    }
}

/// A statement's arguments as SQLite values.
pub(super) fn values(q: &super::sql::Sql) -> Vec<rusqlite::types::Value> {
    q.args
        .iter()
        .map(|a| match a {
            super::sql::Arg::Int(i) => rusqlite::types::Value::Integer(*i),
            super::sql::Arg::Text(t) => rusqlite::types::Value::Text(t.clone()),
        })
        .collect()
}

/// `SELECT budget_id, period_start_ms, threshold, fired_ms FROM alerts_fired …`
fn fired_alert_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<super::FiredAlert> {
    Ok(super::FiredAlert {
        budget_id: r.get(0)?,
        period_start_ms: r.get(1)?,
        threshold: r.get(2)?,
        fired_ms: r.get(3)?,
    })
}

fn session_from_row(r: &rusqlite::Row<'_>) -> Result<crate::session::Session, StoreError> {
    let hash: Vec<u8> = r.get("id_hash")?;
    let groups: String = r.get("groups_json")?;
    Ok(crate::session::Session {
        handle: r.get("handle")?,
        id_hash: hash.try_into().map_err(|_| StoreError::Corrupt("sessions.id_hash"))?,
        subject: r.get("subject")?,
        name: r.get("name")?,
        email: r.get("email")?,
        groups: serde_json::from_str(&groups).map_err(|_| StoreError::Corrupt("sessions.groups_json"))?,
        created_ms: r.get("created_ms")?,
        expires_ms: r.get("expires_ms")?,
        revoked_ms: r.get("revoked_ms")?,
        source: r.get("source")?,
    })
}

/// Reconciliation results (the blocking calls behind [`super::ReconciliationStore`]).
impl SqliteStore {
    pub fn save_reconciliation(
        &self,
        provider: &str,
        from_day: &str,
        to_day: &str,
        lines: &[crate::reconciliation::ReconLine],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut conn = self.reader();
        let tx = conn.transaction()?;
        tx.execute(
            "DELETE FROM reconciliation WHERE provider = ?1 AND day >= ?2 AND day <= ?3",
            params![provider, from_day, to_day],
        )?;
        {
            let mut stmt = tx.prepare_cached(&format!(
                "INSERT OR REPLACE INTO reconciliation ({}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
                super::sql::RECONCILIATION_COLUMNS
            ))?;
            for l in lines {
                stmt.execute(params![
                    provider,
                    l.day,
                    l.kind.as_str(),
                    l.model,
                    l.account.as_deref().unwrap_or(""),
                    l.gateway_cost.nanos(),
                    l.provider_cost.nanos(),
                    super::sql::int(l.gateway_input_tokens),
                    super::sql::int(l.gateway_output_tokens),
                    super::sql::int(l.provider_input_tokens),
                    super::sql::int(l.provider_output_tokens),
                    super::sql::int(l.gateway_requests),
                    super::sql::int(l.provider_requests),
                    l.cause,
                    now_ms
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub fn reconciliation(
        &self,
        provider: Option<&str>,
        from_day: &str,
        to_day: &str,
    ) -> Result<Vec<crate::reconciliation::ReconLine>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {} FROM reconciliation WHERE day >= ?1 AND day <= ?2 AND (?3 IS NULL OR provider = ?3) \
             ORDER BY day, provider, kind, model, account",
            super::sql::RECONCILIATION_COLUMNS
        ))?;
        let mut rows = stmt.query(params![from_day, to_day, provider])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let kind: String = r.get(2)?;
            let account: String = r.get(4)?;
            out.push(crate::reconciliation::ReconLine {
                provider: r.get(0)?,
                day: r.get(1)?,
                kind: crate::reconciliation::LineKind::parse(&kind)
                    .ok_or(StoreError::Corrupt("reconciliation.kind"))?,
                model: r.get(3)?,
                account: (!account.is_empty()).then_some(account),
                gateway_cost: tollgate_units::Money::from_nanos(r.get(5)?),
                provider_cost: tollgate_units::Money::from_nanos(r.get(6)?),
                gateway_input_tokens: super::sql::count(r.get(7)?),
                gateway_output_tokens: super::sql::count(r.get(8)?),
                provider_input_tokens: super::sql::count(r.get(9)?),
                provider_output_tokens: super::sql::count(r.get(10)?),
                gateway_requests: super::sql::count(r.get(11)?),
                provider_requests: super::sql::count(r.get(12)?),
                cause: r.get(13)?,
                reconciled_ms: r.get(14)?,
            });
        }
        Ok(out)
    }
}

/// Sign-in sessions (the blocking calls behind [`super::SessionStore`]).
impl SqliteStore {
    pub fn insert_session(&self, s: &crate::session::Session) -> Result<(), StoreError> {
        self.reader().execute(
            "INSERT INTO sessions (id_hash, handle, subject, name, email, groups_json, created_ms, expires_ms, revoked_ms, source) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                &s.id_hash[..],
                s.handle,
                s.subject,
                s.name,
                s.email,
                serde_json::to_string(&s.groups).unwrap_or_else(|_| "[]".into()),
                s.created_ms,
                s.expires_ms,
                s.revoked_ms,
                s.source
            ],
        )?;
        Ok(())
    }

    pub fn session(&self, id_hash: &[u8; 32]) -> Result<Option<crate::session::Session>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached("SELECT * FROM sessions WHERE id_hash = ?1")?;
        let mut rows = stmt.query(params![&id_hash[..]])?;
        match rows.next()? {
            Some(r) => Ok(Some(session_from_row(r)?)),
            None => Ok(None),
        }
    }

    pub fn active_sessions(&self, now_ms: i64) -> Result<Vec<crate::session::Session>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare(
            "SELECT * FROM sessions WHERE revoked_ms IS NULL AND expires_ms > ?1 ORDER BY created_ms DESC, handle",
        )?;
        let mut rows = stmt.query(params![now_ms])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push(session_from_row(r)?);
        }
        Ok(out)
    }

    pub fn revoke_session(&self, handle: &str, now_ms: i64) -> Result<bool, StoreError> {
        let n = self.reader().execute(
            "UPDATE sessions SET revoked_ms = ?2 WHERE handle = ?1 AND revoked_ms IS NULL",
            params![handle, now_ms],
        )?;
        Ok(n > 0)
    }

    pub fn prune_sessions(&self, before_ms: i64) -> Result<u64, StoreError> {
        let n = self
            .reader()
            .execute("DELETE FROM sessions WHERE expires_ms < ?1 OR revoked_ms < ?1", params![before_ms])?;
        Ok(n as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(store: &SqliteStore, sql: &str) -> String {
        store
            .with_reader(|c| {
                let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
                let rows = stmt.query_map([], |r| r.get::<_, String>(3))?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?.join("; "))
            })
            .unwrap()
    }

    #[test]
    fn trace_lookups_use_the_partial_index_and_the_old_index_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        {
            let store = SqliteStore::open(&url).unwrap();
            // A database from before: the full index on trace_id.
            store.with_reader(|c| Ok(c.execute_batch("CREATE INDEX ledger_trace ON ledger (trace_id)")?)).unwrap();
        }
        let store = SqliteStore::open(&url).unwrap();
        let indexes: Vec<String> = store
            .with_reader(|c| {
                let mut stmt =
                    c.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'ledger'")?;
                let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .unwrap();
        assert!(!indexes.iter().any(|n| n == "ledger_trace"), "{indexes:?}");
        assert!(indexes.iter().any(|n| n == "ledger_trace_set"), "{indexes:?}");
        let p = plan(&store, "SELECT request_id FROM ledger WHERE trace_id = 'abc'");
        assert!(p.contains("ledger_trace_set"), "{p}");
    }
}
