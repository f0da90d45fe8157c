//! The optional analytics store: the ledger in ClickHouse, over its HTTP
//! interface (`[storage] analytics_url = "clickhouse://HOST:8123/DATABASE"`).
//! It serves the request log and the reports; the primary store keeps
//! everything else (keys, governance, outcomes, batches) and its own copy of
//! the ledger (see [`super::Tee`]).
//!
//! Written for ClickHouse 18.16 (Debian's package) and later:
//! - `ledger` is a ReplacingMergeTree sorted by `(ts_ms, request_id)`. A
//!   replayed row is an identical copy with the same key; copies collapse at
//!   merge time, whenever that is, so every read says `FINAL` to be exact.
//! - There are no query parameters before 19.x: values are put in the SQL as
//!   literals, always through [`lit`] (strings) or formatted from integers.
//!   Table and column names come only from this code: dimensions go through
//!   [`sql::dimension_column`], and any other dimension is a tag, whose name
//!   is itself an escaped literal (an argument of `visitParamExtractString`).
//! - Inserts are `JSONEachRow` with every column (18.16 gives an omitted
//!   field its type's default, not the column's DEFAULT) and `tags` as a JSON
//!   string. Reads ask for plain 64-bit integers and `wait_end_of_query=1`
//!   (else an error in the middle of a result arrives with HTTP 200).
//! - The server drops keep-alive connections idle for 3 s: the pools let go
//!   of them after 2 s, and a request that fails on a stale connection is
//!   sent once more (every statement here is idempotent).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tollgate_units::{Money, Usage};

use super::sql::{self, int, PromptCachePart};
use super::{LedgerSink, Reports, RequestLog, RequestPage, RequestQuery, StoreError, StoreFuture};
use crate::attribution::Attribution;
use crate::query::{PromptCacheRow, SpendQuery, SpendReport};
use crate::record::{CacheOutcome, Endpoint, LedgerRow, UsageSource};

/// The table, as in the research notes (works unchanged on 18.16 and current versions).
const LEDGER_DDL: &str = "CREATE TABLE IF NOT EXISTS ledger
(
    request_id                   String,
    ts_ms                        Int64,
    key_id                       Nullable(String),
    endpoint                     String,
    requested_model              Nullable(String),
    model                        Nullable(String),
    provider                     Nullable(String),
    status                       UInt16,
    error_code                   Nullable(String),
    input_uncached               Int64,
    input_audio                  Int64,
    cache_read                   Int64,
    cache_write_5m               Int64,
    cache_write_1h               Int64,
    output_text                  Int64,
    output_audio                 Int64,
    output_image                 Int64,
    reasoning                    Int64,
    usage_source                 String,
    cost_nanos                   Nullable(Int64),
    cache_savings_nanos          Int64,
    response_cache_savings_nanos Int64 DEFAULT 0,
    streamed                     UInt8,
    client_disconnected          UInt8,
    cache                        String,
    latency_ms                   Int64,
    ttft_ms                      Nullable(Int64),
    attempts                     UInt32,
    attempt_log                  Nullable(String),
    prefix_hash                  Nullable(String),
    user                         Nullable(String),
    team                         Nullable(String),
    org                          Nullable(String),
    feature                      Nullable(String),
    env                          Nullable(String),
    tags                         String,
    trace_id                     Nullable(String),
    parent_id                    Nullable(String),
    session                      Nullable(String),
    agent                        Nullable(String),
    prompt                       Nullable(String),
    web_search_requests          Int64 DEFAULT 0,
    tool_cost_nanos              Int64 DEFAULT 0,
    provider_cost_nanos          Nullable(Int64),
    input_image_tokens           Int64 DEFAULT 0,
    images                       Int64 DEFAULT 0,
    audio_ms                     Int64 DEFAULT 0,
    characters                   Int64 DEFAULT 0
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(toDateTime(intDiv(ts_ms, 1000), 'UTC'))
ORDER BY (ts_ms, request_id)
SETTINGS index_granularity = 8192";

/// Columns added since the tables were first created, in the order they were
/// added (each goes at the end, as in the DDL above): (table, column, type).
/// Rows from before get the default, which is exact (they had none).
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("ledger", "web_search_requests", "Int64 DEFAULT 0"),
    ("ledger", "tool_cost_nanos", "Int64 DEFAULT 0"),
    ("ledger", "provider_cost_nanos", "Nullable(Int64)"),
    ("ledger_hourly", "tool_cost_nanos", "Int64 DEFAULT 0"),
    ("ledger_hourly", "web_search_requests", "Int64 DEFAULT 0"),
    ("ledger", "input_image_tokens", "Int64 DEFAULT 0"),
    ("ledger", "images", "Int64 DEFAULT 0"),
    ("ledger", "audio_ms", "Int64 DEFAULT 0"),
    ("ledger", "characters", "Int64 DEFAULT 0"),
];

/// Exact hourly sums of closed hours, computed from the deduplicated ledger
/// (`FINAL`) by [`ClickHouse::roll_up`]; each computation of an hour has its
/// own id, and reports use only the latest complete one of a clean hour.
const HOURLY_DDL: &str = "CREATE TABLE IF NOT EXISTS ledger_hourly
(
    hour_ms Int64, computation Int64,
    key_id String, team String, org String, feature String, env String, model String,
    requested_model String, provider String, agent String, prompt String, endpoint String,
    requests Int64, input_tokens Int64, cache_read_tokens Int64, cache_write_tokens Int64, output_tokens Int64,
    reasoning_tokens Int64, cost_nanos Int64, cache_savings_nanos Int64, estimated Int64, unpriced Int64,
    errors Int64, attempts Int64, response_cache_savings_nanos Int64,
    tool_cost_nanos Int64 DEFAULT 0, web_search_requests Int64 DEFAULT 0
)
ENGINE = MergeTree()
PARTITION BY toYYYYMM(toDateTime(intDiv(hour_ms, 1000), 'UTC'))
ORDER BY (hour_ms, computation)";

/// One row per computation of an hour, written after its sums: `marks` is how
/// many marks the hour had when the computation began.
const ROLLED_DDL: &str = "CREATE TABLE IF NOT EXISTS ledger_hours_rolled
(hour_ms Int64, computed_ms Int64, computation Int64, marks Int64)
ENGINE = MergeTree() ORDER BY (hour_ms, computed_ms)";

/// A mark (`n` = 1) per hour of every ledger batch, written after the batch:
/// an hour whose marks outnumber its latest computation's `marks` has rows
/// the computation may not have seen (a late or replayed row), and is read
/// raw. Summing merges fold an hour's marks into one row; `sum(n)` counts
/// them the same before and after.
const TOUCHED_DDL: &str = "CREATE TABLE IF NOT EXISTS ledger_hours_touched
(hour_ms Int64, n Int64)
ENGINE = SummingMergeTree() ORDER BY hour_ms";

/// An hour is rolled up this long after it ends (rows still arriving for it
/// would only make it dirty again).
const ROLL_UP_AFTER_MS: i64 = 5 * 60_000;

/// The sums of a spend report, in [`sql::RollupSums::values`] order (the
/// same meaning as the relational stores' raw sums).
const SPEND_SUMS: &str = "toInt64(count()) AS s_0, \
    toInt64(sum(input_uncached + input_image_tokens + input_audio + cache_read + cache_write_5m + cache_write_1h)) AS s_1, \
    toInt64(sum(cache_read)) AS s_2, toInt64(sum(cache_write_5m + cache_write_1h)) AS s_3, \
    toInt64(sum(output_text + output_audio + output_image + reasoning)) AS s_4, toInt64(sum(reasoning)) AS s_5, \
    toInt64(sum(ifNull(cost_nanos, 0))) AS s_6, toInt64(sum(cache_savings_nanos)) AS s_7, \
    toInt64(countIf(usage_source = 'estimated')) AS s_8, toInt64(countIf(isNull(cost_nanos))) AS s_9, \
    toInt64(countIf(status >= 400)) AS s_10, toInt64(sum(attempts)) AS s_11, \
    toInt64(sum(response_cache_savings_nanos)) AS s_12, toInt64(sum(tool_cost_nanos)) AS s_13, \
    toInt64(sum(web_search_requests)) AS s_14";

/// A request id made by `Uuid::now_v7` carries its time: rows are looked up
/// within this much of it (the row's `ts_ms` is taken at the same moment).
const ID_TIME_WINDOW_MS: i64 = 10 * 60_000;

/// How long `prune_raw` waits for its delete (a background mutation) to finish.
const PRUNE_WAIT: Duration = Duration::from_secs(60);

/// Where the server is, and who we are to it.
#[derive(Clone)]
struct Target {
    /// `http://HOST:PORT/`
    base: reqwest::Url,
    database: String,
    user: Option<String>,
    password: Option<String>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target").field("base", &self.base.as_str()).field("database", &self.database).finish()
    }
}

/// `clickhouse://[USER[:PASSWORD]@]HOST[:PORT]/DATABASE` (HTTP, port 8123 by default).
fn parse_url(url: &str) -> Result<Target, StoreError> {
    let bad = || StoreError::UnsupportedUrl(crate::config::without_password(url));
    let u = reqwest::Url::parse(url).map_err(|_| bad())?;
    if u.scheme() != "clickhouse" || u.query().is_some() || u.fragment().is_some() {
        return Err(bad());
    }
    let host = u.host_str().filter(|h| !h.is_empty()).ok_or_else(bad)?;
    let port = u.port().unwrap_or(8123);
    let database = u.path().strip_prefix('/').unwrap_or_default();
    // The name is an identifier in `CREATE DATABASE`: a plain one only.
    let plain = database.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if database.is_empty() || !plain || database.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(bad());
    }
    let base = reqwest::Url::parse(&format!("http://{host}:{port}/")).map_err(|_| bad())?;
    let user = Some(percent_decode(u.username())).filter(|s| !s.is_empty());
    let password = u.password().map(percent_decode);
    Ok(Target { base, database: database.to_string(), user, password })
}

/// `%XX` escapes of a URL's user or password, decoded (others left as they are).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (b[i], b.get(i + 1).copied().and_then(hex), b.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A string as a ClickHouse literal: quoted, with `\` and `'` (and the
/// control characters that could confuse a reader of the SQL) escaped.
pub fn lit(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\0' => out.push_str("\\0"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A tag's value from the JSON `tags` column; NULL when the row has no such tag.
/// The name is matched against the stored JSON text, so it is JSON-escaped
/// first (as `serde_json` wrote it), then made a literal.
fn tag_expr(name: &str) -> String {
    let json = serde_json::to_string(name).unwrap_or_default();
    let key = lit(json.get(1..json.len().saturating_sub(1)).unwrap_or_default());
    format!("if(visitParamHas(tags, {key}), visitParamExtractString(tags, {key}), NULL)")
}

/// A column as text (`status` is the only number among the dimensions).
fn column_text(col: &'static str) -> String {
    if col == "status" {
        "toString(status)".into()
    } else {
        col.into()
    }
}

/// SQL for a dimension: its column, or the tag of that name.
fn dim_expr(dim: &str) -> String {
    match sql::dimension_column(dim) {
        Some(c) => column_text(c),
        None => tag_expr(dim),
    }
}

/// `expr` matches `pattern`, where `*` is any run of characters (as the
/// relational stores' glob): a LIKE with `%`, `_` and `\` escaped.
fn glob(expr: &str, pattern: &str) -> String {
    let mut like = String::with_capacity(pattern.len());
    for c in pattern.chars() {
        match c {
            '*' => like.push('%'),
            '%' | '_' | '\\' => {
                like.push('\\');
                like.push(c);
            }
            c => like.push(c),
        }
    }
    format!("{expr} LIKE {}", lit(&like))
}

/// A spend report's statement: the group's dimensions (`g_0`…), its bucket
/// (`g_b`, when asked), then the sums, over the deduplicated ledger.
fn spend_sql(q: &SpendQuery, ranges: &[(Option<i64>, Option<i64>)]) -> String {
    let mut select = Vec::new();
    let mut group = Vec::new();
    for (i, d) in q.group_by.iter().enumerate() {
        select.push(format!("{} AS g_{i}", dim_expr(d)));
        group.push(format!("g_{i}"));
    }
    if let Some(b) = q.bucket {
        select.push(format!("intDiv(ts_ms, {0}) * {0} AS g_b", b.millis()));
        group.push("g_b".to_string());
    }
    select.push(SPEND_SUMS.to_string());
    let mut wh = vec![ts_ranges("ts_ms", ranges)];
    for (d, v) in &q.filters {
        wh.push(format!("{} = {}", dim_expr(d), lit(v)));
    }
    let group = if group.is_empty() { String::new() } else { format!(" GROUP BY {}", group.join(", ")) };
    format!("SELECT {} FROM ledger FINAL WHERE {}{group}", select.join(", "), wh.join(" AND "))
}

/// `col` within any of the half-open ranges (a missing bound is open).
fn ts_ranges(col: &str, ranges: &[(Option<i64>, Option<i64>)]) -> String {
    let one = |(from, to): &(Option<i64>, Option<i64>)| match (from, to) {
        (Some(f), Some(t)) => format!("({col} >= {f} AND {col} < {t})"),
        (Some(f), None) => format!("{col} >= {f}"),
        (None, Some(t)) => format!("{col} < {t}"),
        (None, None) => "1 = 1".into(),
    };
    match ranges {
        [] => "0 = 1".into(),
        [r] => one(r),
        _ => format!("({})", ranges.iter().map(one).collect::<Vec<_>>().join(" OR ")),
    }
}

/// The same sums from the hourly rollup, for the chosen computations of
/// clean hours in `[lo, hi)` (rollup dimensions only).
fn hourly_sql(q: &SpendQuery, computations: &[i64], lo: Option<i64>, hi: Option<i64>) -> String {
    let mut select = Vec::new();
    let mut group = Vec::new();
    for (i, d) in q.group_by.iter().enumerate() {
        select.push(format!("nullIf({}, '') AS g_{i}", sql::rollup_column(d).unwrap_or("endpoint")));
        group.push(format!("g_{i}"));
    }
    if let Some(b) = q.bucket {
        select.push(format!("intDiv(hour_ms, {0}) * {0} AS g_b", b.millis()));
        group.push("g_b".to_string());
    }
    for (i, c) in sql::ROLLUP_SUMS.iter().enumerate() {
        select.push(format!("toInt64(sum({c})) AS s_{i}"));
    }
    let ids: Vec<String> = computations.iter().map(i64::to_string).collect();
    let mut wh = vec![ts_ranges("hour_ms", &[(lo, hi)]), format!("computation IN ({})", ids.join(", "))];
    for (d, v) in &q.filters {
        wh.push(format!("nullIf({}, '') = {}", sql::rollup_column(d).unwrap_or("endpoint"), lit(v)));
    }
    let group = if group.is_empty() { String::new() } else { format!(" GROUP BY {}", group.join(", ")) };
    format!("SELECT {} FROM ledger_hourly WHERE {}{group}", select.join(", "), wh.join(" AND "))
}

/// `[from, to)` without the given (sorted) whole hours.
fn ranges_without(from: Option<i64>, to: Option<i64>, hours: &[i64]) -> Vec<(Option<i64>, Option<i64>)> {
    let mut out = Vec::new();
    let mut start = from;
    for &h in hours {
        if start.is_none_or(|s| s < h) {
            out.push((start, Some(h)));
        }
        start = Some(h + sql::HOUR_MS);
    }
    if to.is_none() || matches!((start, to), (Some(s), Some(t)) if s < t) || (start.is_none() && to.is_some()) {
        out.push((start, to));
    }
    out
}

/// What the rollup knows of one hour.
#[derive(Debug, Default, Clone, Copy)]
struct HourState {
    /// Marks written for the hour (one per ledger batch that had rows in it).
    marks: i64,
    /// The latest complete computation: the marks it began with, and its id.
    rolled: Option<(i64, i64)>,
}

impl HourState {
    /// Its latest computation saw every row written for it.
    fn clean(&self) -> Option<i64> {
        self.rolled.filter(|(marks, _)| *marks >= self.marks).map(|(_, id)| id)
    }
}

fn prompt_cache_sql(by: &str, from_ms: i64) -> String {
    format!(
        "SELECT {} AS g_v, prefix_hash AS g_p, toInt64(count()) AS s_0, \
         toInt64(sum(input_uncached + input_image_tokens + input_audio + cache_read + cache_write_5m + cache_write_1h)) AS s_1, \
         toInt64(sum(cache_read)) AS s_2, toInt64(sum(cache_write_5m + cache_write_1h)) AS s_3, \
         toInt64(sum(cache_savings_nanos)) AS s_4 \
         FROM ledger FINAL WHERE ts_ms >= {from_ms} AND cache != 'hit' GROUP BY g_v, g_p",
        dim_expr(by)
    )
}

fn spend_per_second_sql(filters: &[(String, String)], from_ms: i64) -> String {
    let mut wh = format!("ts_ms >= {from_ms}");
    for (d, v) in filters {
        let cond = match sql::dimension_column(d) {
            Some(c) if v.contains('*') => glob(&column_text(c), v),
            Some(c) => format!("{} = {}", column_text(c), lit(v)),
            None => format!("{} = {}", tag_expr(d), lit(v)),
        };
        wh.push_str(" AND ");
        wh.push_str(&cond);
    }
    format!(
        "SELECT intDiv(ts_ms, 1000) AS g_s, toInt64(sum(ifNull(cost_nanos, 0))) AS s \
         FROM ledger FINAL WHERE {wh} GROUP BY g_s ORDER BY g_s"
    )
}

const UNPRICED_SQL: &str = "SELECT ifNull(provider, '-') AS g_p, coalesce(model, requested_model, '-') AS g_m, \
    toInt64(count()) AS n FROM ledger FINAL WHERE isNull(cost_nanos) GROUP BY g_p, g_m ORDER BY n DESC";

/// A page of the request log: newest first by request id, one more row than
/// `limit` (see [`sql::page`]). The page's ids are found first, reading only
/// the key and the filtered columns; then only their rows are read whole
/// (PREWHERE: 18.16 does not move a condition there by itself under FINAL).
/// Measured on 10M synthetic rows (18.16, 2 cores): 2.8 s a page, against
/// 13 s for the plain `SELECT * … ORDER BY request_id DESC LIMIT`.
fn requests_sql(q: &RequestQuery) -> (String, usize) {
    let mut wh = String::from("1 = 1");
    for (d, v) in &q.filters {
        wh.push_str(&format!(" AND {} = {}", dim_expr(d), lit(v)));
    }
    if let Some(c) = &q.cursor {
        wh.push_str(&format!(" AND request_id < {}", lit(c)));
    }
    let limit = q.limit.clamp(1, 1000);
    let n = limit + 1;
    let text = format!(
        "SELECT * FROM ledger FINAL PREWHERE request_id IN \
         (SELECT request_id FROM ledger FINAL WHERE {wh} ORDER BY request_id DESC LIMIT {n}) \
         ORDER BY request_id DESC LIMIT {n}"
    );
    (text, limit)
}

/// The Unix ms in a UUIDv7's first 48 bits; `None` for any other id.
fn uuid_v7_ms(id: &str) -> Option<i64> {
    let u = uuid::Uuid::parse_str(id).ok()?;
    if u.get_version_num() != 7 {
        return None;
    }
    let b = u.as_bytes();
    Some(b[..6].iter().fold(0i64, |acc, x| (acc << 8) | i64::from(*x)))
}

fn request_sql(id: &str) -> String {
    let window = match uuid_v7_ms(id) {
        Some(t) => format!(
            " AND ts_ms >= {} AND ts_ms <= {}",
            t.saturating_sub(ID_TIME_WINDOW_MS),
            t.saturating_add(ID_TIME_WINDOW_MS)
        ),
        None => String::new(),
    };
    format!("SELECT * FROM ledger FINAL PREWHERE request_id = {} WHERE 1 = 1{window} LIMIT 1", lit(id))
}

/// One ledger row as ClickHouse sends and receives it (`JSONEachRow`): every column.
#[derive(Debug, Serialize, Deserialize)]
struct Wire {
    request_id: String,
    ts_ms: i64,
    key_id: Option<String>,
    endpoint: String,
    requested_model: Option<String>,
    model: Option<String>,
    provider: Option<String>,
    status: u16,
    error_code: Option<String>,
    input_uncached: i64,
    input_audio: i64,
    cache_read: i64,
    cache_write_5m: i64,
    cache_write_1h: i64,
    output_text: i64,
    output_audio: i64,
    output_image: i64,
    reasoning: i64,
    usage_source: String,
    cost_nanos: Option<i64>,
    cache_savings_nanos: i64,
    response_cache_savings_nanos: i64,
    streamed: u8,
    client_disconnected: u8,
    cache: String,
    latency_ms: i64,
    ttft_ms: Option<i64>,
    attempts: u32,
    attempt_log: Option<String>,
    prefix_hash: Option<String>,
    user: Option<String>,
    team: Option<String>,
    org: Option<String>,
    feature: Option<String>,
    env: Option<String>,
    /// The tags as a JSON object's text (compact, as `visitParamExtractString` needs).
    tags: String,
    trace_id: Option<String>,
    parent_id: Option<String>,
    session: Option<String>,
    agent: Option<String>,
    prompt: Option<String>,
    #[serde(default)]
    web_search_requests: i64,
    #[serde(default)]
    tool_cost_nanos: i64,
    #[serde(default)]
    provider_cost_nanos: Option<i64>,
    #[serde(default)]
    input_image_tokens: i64,
    #[serde(default)]
    images: i64,
    #[serde(default)]
    audio_ms: i64,
    #[serde(default)]
    characters: i64,
}

impl Wire {
    fn of(row: &LedgerRow) -> Wire {
        let a = &row.attribution;
        let us = &row.usage;
        let tag = |k: &str| a.tag(k).map(str::to_string);
        Wire {
            request_id: row.request_id.clone(),
            ts_ms: row.time_ms,
            key_id: row.key_id.clone(),
            endpoint: row.endpoint.as_str().to_string(),
            requested_model: row.requested_model.clone(),
            model: row.model.clone(),
            provider: row.provider.clone(),
            status: row.status,
            error_code: row.error_code.clone(),
            input_uncached: int(us.input),
            input_audio: int(us.input_audio),
            cache_read: int(us.cache_read),
            cache_write_5m: int(us.cache_write_5m),
            cache_write_1h: int(us.cache_write_1h),
            output_text: int(us.output),
            output_audio: int(us.output_audio),
            output_image: int(us.output_image),
            reasoning: int(us.reasoning),
            usage_source: row.usage_source.as_str().to_string(),
            cost_nanos: row.cost.map(Money::nanos),
            cache_savings_nanos: row.cache_savings.nanos(),
            response_cache_savings_nanos: row.response_cache_savings.nanos(),
            streamed: u8::from(row.streamed),
            client_disconnected: u8::from(row.client_disconnected),
            cache: row.cache.as_str().to_string(),
            latency_ms: int(row.latency_ms),
            ttft_ms: row.ttft_ms.map(int),
            attempts: row.attempts,
            attempt_log: if row.attempt_log.is_empty() { None } else { serde_json::to_string(&row.attempt_log).ok() },
            prefix_hash: row.prefix_hash.clone(),
            user: tag("user"),
            team: tag("team"),
            org: tag("org"),
            feature: tag("feature"),
            env: tag("env"),
            tags: sql::tags_json(&a.tags),
            trace_id: a.trace_id.clone(),
            parent_id: a.parent_id.clone(),
            session: a.session.clone(),
            agent: a.agent.clone(),
            prompt: a.prompt.clone(),
            web_search_requests: int(us.web_search_requests),
            tool_cost_nanos: row.tool_cost.nanos(),
            provider_cost_nanos: row.provider_cost.map(Money::nanos),
            input_image_tokens: int(us.input_image),
            images: int(us.images),
            audio_ms: int(us.audio_ms),
            characters: int(us.characters),
        }
    }

    fn into_row(self) -> Result<LedgerRow, StoreError> {
        let u = |v: i64| v.max(0) as u64;
        Ok(LedgerRow {
            request_id: self.request_id,
            time_ms: self.ts_ms,
            key_id: self.key_id,
            endpoint: Endpoint::parse(&self.endpoint).ok_or(StoreError::Corrupt("endpoint"))?,
            requested_model: self.requested_model,
            model: self.model,
            provider: self.provider,
            status: self.status,
            error_code: self.error_code,
            usage: Usage {
                input: u(self.input_uncached),
                input_image: u(self.input_image_tokens),
                input_audio: u(self.input_audio),
                cache_read: u(self.cache_read),
                cache_write_5m: u(self.cache_write_5m),
                cache_write_1h: u(self.cache_write_1h),
                output: u(self.output_text),
                output_audio: u(self.output_audio),
                output_image: u(self.output_image),
                reasoning: u(self.reasoning),
                web_search_requests: u(self.web_search_requests),
                images: u(self.images),
                audio_ms: u(self.audio_ms),
                characters: u(self.characters),
            },
            usage_source: if self.usage_source == "estimated" { UsageSource::Estimated } else { UsageSource::Provider },
            cost: self.cost_nanos.map(Money::from_nanos),
            cache_savings: Money::from_nanos(self.cache_savings_nanos),
            response_cache_savings: Money::from_nanos(self.response_cache_savings_nanos),
            tool_cost: Money::from_nanos(self.tool_cost_nanos),
            provider_cost: self.provider_cost_nanos.map(Money::from_nanos),
            streamed: self.streamed != 0,
            client_disconnected: self.client_disconnected != 0,
            cache: CacheOutcome::parse(&self.cache).ok_or(StoreError::Corrupt("cache"))?,
            latency_ms: u(self.latency_ms),
            ttft_ms: self.ttft_ms.map(u),
            attempts: self.attempts,
            prefix_hash: self.prefix_hash,
            attempt_log: self.attempt_log.and_then(|j| serde_json::from_str(&j).ok()).unwrap_or_default(),
            attribution: Attribution {
                tags: serde_json::from_str::<BTreeMap<String, String>>(&self.tags)
                    .map_err(|_| StoreError::Corrupt("tags"))?,
                trace_id: self.trace_id,
                parent_id: self.parent_id,
                session: self.session,
                agent: self.agent,
                prompt: self.prompt,
            },
        })
    }
}

/// The HTTP client for one runtime's use (pooled connections belong to the
/// runtime that opened them).
fn http_client() -> Result<reqwest::Client, StoreError> {
    reqwest::Client::builder()
        // The server closes keep-alive connections idle for 3 s.
        .pool_idle_timeout(Duration::from_secs(2))
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(300))
        // A database is reached directly, as PostgreSQL and Redis are.
        .no_proxy()
        .build()
        .map_err(|e| StoreError::ClickHouse(e.to_string()))
}

/// Runs one statement; the response body. `query` goes in the URL (an
/// INSERT's data then follows in `body`); else the statement is the body.
async fn send(
    client: &reqwest::Client,
    t: &Target,
    in_database: bool,
    query: Option<&str>,
    body: Bytes,
) -> Result<String, StoreError> {
    let mut url = t.base.clone();
    {
        let mut p = url.query_pairs_mut();
        if in_database {
            p.append_pair("database", &t.database);
        }
        p.append_pair("output_format_json_quote_64bit_integers", "0");
        p.append_pair("wait_end_of_query", "1");
        if let Some(q) = query {
            p.append_pair("query", q);
        }
    }
    let mut retried = false;
    loop {
        let mut req = client.post(url.clone()).body(body.clone());
        if let Some(u) = &t.user {
            req = req.header("X-ClickHouse-User", u);
        }
        if let Some(p) = &t.password {
            req = req.header("X-ClickHouse-Key", p);
        }
        match req.send().await {
            Ok(resp) => {
                let status = resp.status();
                let text = resp.text().await.map_err(|e| StoreError::ClickHouse(e.to_string()))?;
                if status.is_success() {
                    return Ok(text);
                }
                let text: String = text.trim().chars().take(600).collect();
                return Err(StoreError::ClickHouse(format!("HTTP {}: {text}", status.as_u16())));
            }
            // A keep-alive connection the server closed as we sent: once more, on a new one.
            Err(e) if !retried && !e.is_timeout() => retried = true,
            Err(e) => return Err(StoreError::ClickHouse(with_causes(&e))),
        }
    }
}

/// An error and its causes (reqwest's own message leaves out why: refused, reset…).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// The rows to insert, one JSON object per line.
fn insert_body(rows: &[&LedgerRow]) -> Result<Bytes, StoreError> {
    let mut body = Vec::with_capacity(rows.len() * 1024);
    for row in rows {
        serde_json::to_writer(&mut body, &Wire::of(row)).map_err(|e| StoreError::ClickHouse(e.to_string()))?;
        body.push(b'\n');
    }
    Ok(Bytes::from(body))
}

/// Adds the [`ADDED_COLUMNS`] a table created by an older version lacks.
/// Checked in `system.columns` first (18.16 has no `ADD COLUMN IF NOT
/// EXISTS`); a replica that added one at the same moment is no error.
async fn add_columns(client: &reqwest::Client, t: &Target) -> Result<(), StoreError> {
    let present = |table: &str| {
        format!(
            "SELECT name FROM system.columns WHERE database = {} AND table = {} FORMAT TSV",
            lit(&t.database),
            lit(table)
        )
    };
    let mut tables: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (table, col, ty) in ADDED_COLUMNS {
        if !tables.contains_key(table) {
            let names = send(client, t, true, None, Bytes::from(present(table))).await?;
            tables.insert(table, names.lines().map(str::to_string).collect());
        }
        if tables.get(table).is_some_and(|names| names.iter().any(|n| n == col)) {
            continue;
        }
        let alter = format!("ALTER TABLE {table} ADD COLUMN {col} {ty}");
        if let Err(e) = send(client, t, true, None, Bytes::from(alter)).await {
            let names = send(client, t, true, None, Bytes::from(present(table))).await?;
            if !names.lines().any(|n| n == *col) {
                return Err(e);
            }
        }
        tracing::info!(table, column = col, "added a ClickHouse column");
    }
    Ok(())
}

const INSERT: &str = "INSERT INTO ledger FORMAT JSONEachRow";
const MARK: &str = "INSERT INTO ledger_hours_touched FORMAT JSONEachRow";

/// A ClickHouse database as the ledger sink, the request log and the reports.
pub struct ClickHouse {
    target: Target,
    /// For the async calls (on the caller's runtime).
    client: reqwest::Client,
    /// The ledger loader's client and the runtime that drives it.
    writer: Mutex<Writer>,
}

struct Writer {
    /// Always `Some` until dropped.
    runtime: Option<tokio::runtime::Runtime>,
    client: reqwest::Client,
}

impl Drop for Writer {
    fn drop(&mut self) {
        // The store may be dropped on an async task, where a runtime cannot block to shut down.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl std::fmt::Debug for ClickHouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouse").field("target", &self.target).finish()
    }
}

impl ClickHouse {
    /// Connects, and creates the database and the ledger table when missing.
    pub async fn open(url: &str) -> Result<ClickHouse, StoreError> {
        let target = parse_url(url)?;
        let client = http_client()?;
        let create = format!("CREATE DATABASE IF NOT EXISTS {}", target.database);
        let named = |e: StoreError| match e {
            StoreError::ClickHouse(m) => {
                StoreError::ClickHouse(format!("{}: {m}", crate::config::without_password(url)))
            }
            other => other,
        };
        send(&client, &target, false, None, Bytes::from(create)).await.map_err(named)?;
        for ddl in [LEDGER_DDL, HOURLY_DDL, ROLLED_DDL, TOUCHED_DDL] {
            send(&client, &target, true, None, Bytes::from_static(ddl.as_bytes())).await.map_err(named)?;
        }
        add_columns(&client, &target).await.map_err(named)?;
        // A ledger written before the rollup existed: mark its hours once, so they get rolled up.
        let marks = "SELECT toInt64(count()) FROM ledger_hours_touched FORMAT TSV";
        let unmarked = send(&client, &target, true, None, Bytes::from_static(marks.as_bytes())).await.map_err(named)?;
        if unmarked.trim() == "0" {
            let mark_all =
                "INSERT INTO ledger_hours_touched SELECT DISTINCT intDiv(ts_ms, 3600000) * 3600000, 1 FROM ledger";
            send(&client, &target, true, None, Bytes::from_static(mark_all.as_bytes())).await.map_err(named)?;
        }
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let writer = Writer { runtime: Some(runtime), client: http_client()? };
        Ok(ClickHouse { target, client, writer: Mutex::new(writer) })
    }

    /// Runs a statement that returns nothing.
    async fn execute(&self, sql: String) -> Result<(), StoreError> {
        send(&self.client, &self.target, true, None, Bytes::from(sql)).await.map(drop)
    }

    /// Rows of a SELECT as arrays of values, in the select list's order.
    async fn select(&self, sql: String) -> Result<Vec<Vec<Value>>, StoreError> {
        #[derive(Deserialize)]
        struct Compact {
            data: Vec<Vec<Value>>,
        }
        let text =
            send(&self.client, &self.target, true, None, Bytes::from(format!("{sql} FORMAT JSONCompact"))).await?;
        let c: Compact =
            serde_json::from_str(&text).map_err(|e| StoreError::ClickHouse(format!("unreadable result: {e}")))?;
        Ok(c.data)
    }

    /// Whole ledger rows.
    async fn select_rows(&self, sql: String) -> Result<Vec<LedgerRow>, StoreError> {
        let text =
            send(&self.client, &self.target, true, None, Bytes::from(format!("{sql} FORMAT JSONEachRow"))).await?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str::<Wire>(l).map_err(|_| StoreError::Corrupt("ledger"))?.into_row())
            .collect()
    }

    /// The marks and latest computation of every hour in `[lo, hi)` that has either.
    async fn hour_state(&self, lo: Option<i64>, hi: Option<i64>) -> Result<BTreeMap<i64, HourState>, StoreError> {
        let range = ts_ranges("hour_ms", &[(lo, hi)]);
        let mut out: BTreeMap<i64, HourState> = BTreeMap::new();
        let marks = format!("SELECT hour_ms, toInt64(sum(n)) FROM ledger_hours_touched WHERE {range} GROUP BY hour_ms");
        for r in self.select(marks).await? {
            out.entry(int_value(at(&r, 0, "hour")?, "hour")?).or_default().marks =
                int_value(at(&r, 1, "marks")?, "marks")?;
        }
        // One argMax of both fields, so they come from the same computation.
        let rolled = format!(
            "SELECT hour_ms, argMax(concat(toString(marks), ':', toString(computation)), computed_ms) \
             FROM ledger_hours_rolled WHERE {range} GROUP BY hour_ms"
        );
        for r in self.select(rolled).await? {
            let hour = int_value(at(&r, 0, "hour")?, "hour")?;
            let pair = opt_string(at(&r, 1, "rolled")?, "rolled")?.unwrap_or_default();
            let (m, id) = pair.split_once(':').ok_or(StoreError::Corrupt("ledger_hours_rolled"))?;
            let parse = |v: &str| v.parse::<i64>().map_err(|_| StoreError::Corrupt("ledger_hours_rolled"));
            out.entry(hour).or_default().rolled = Some((parse(m)?, parse(id)?));
        }
        Ok(out)
    }

    /// Computes the exact hourly sums of closed hours that have none or whose
    /// rows changed since (a late or replayed row), oldest first, at most
    /// `max_hours` of them; how many it computed. Any replica may run it: a
    /// computation that races another is as good as it.
    pub async fn roll_up(&self, now_ms: i64, max_hours: usize) -> Result<usize, StoreError> {
        let closed_before = (now_ms - ROLL_UP_AFTER_MS).div_euclid(sql::HOUR_MS) * sql::HOUR_MS;
        let state = self.hour_state(None, Some(closed_before)).await?;
        let dirty: Vec<i64> =
            state.iter().filter(|(_, h)| h.clean().is_none()).map(|(hour, _)| *hour).take(max_hours).collect();
        for hour in &dirty {
            self.roll_up_hour(*hour, now_ms).await?;
        }
        Ok(dirty.len())
    }

    async fn roll_up_hour(&self, hour: i64, now_ms: i64) -> Result<(), StoreError> {
        // The marks first: a batch marked later may be missing from the sums, and makes the hour dirty again.
        let marks = first_int(
            &self.select(format!("SELECT toInt64(sum(n)) FROM ledger_hours_touched WHERE hour_ms = {hour}")).await?,
        )?;
        let id = (rand::random::<u64>() >> 1) as i64;
        let dims: Vec<String> = sql::ROLLUP_DIMENSIONS
            .iter()
            .map(|d| if *d == "endpoint" { (*d).to_string() } else { format!("ifNull({d}, '')") })
            .collect();
        self.execute(format!(
            "INSERT INTO ledger_hourly (hour_ms, computation, {}, {}) SELECT {hour}, {id}, {}, {SPEND_SUMS} \
             FROM ledger FINAL WHERE ts_ms >= {hour} AND ts_ms < {} GROUP BY {}",
            sql::ROLLUP_DIMENSIONS.join(", "),
            sql::ROLLUP_SUMS.join(", "),
            dims.join(", "),
            hour + sql::HOUR_MS,
            sql::ROLLUP_DIMENSIONS.join(", ")
        ))
        .await?;
        // After the sums: a computation is used only once complete.
        self.execute(format!(
            "INSERT INTO ledger_hours_rolled (hour_ms, computed_ms, computation, marks) VALUES ({hour}, {now_ms}, {id}, {marks})"
        ))
        .await
    }

    /// Waits (bounded) until no mutation of the ledger is running.
    async fn wait_for_mutations(&self) -> Result<bool, StoreError> {
        let sql = format!(
            "SELECT toInt64(count()) FROM system.mutations WHERE database = {} AND table = 'ledger' AND is_done = 0",
            lit(&self.target.database)
        );
        let deadline = tokio::time::Instant::now() + PRUNE_WAIT;
        loop {
            let rows = self.select(sql.clone()).await?;
            if first_int(&rows)? == 0 {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn int_value(v: &Value, col: &'static str) -> Result<i64, StoreError> {
    match v {
        Value::Number(n) => n.as_i64().ok_or(StoreError::Corrupt(col)),
        // 64-bit integers arrive quoted when the setting is not honoured.
        Value::String(s) => s.parse().map_err(|_| StoreError::Corrupt(col)),
        _ => Err(StoreError::Corrupt(col)),
    }
}

fn opt_int_value(v: &Value, col: &'static str) -> Result<Option<i64>, StoreError> {
    if v.is_null() {
        Ok(None)
    } else {
        int_value(v, col).map(Some)
    }
}

fn opt_string(v: &Value, col: &'static str) -> Result<Option<String>, StoreError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(StoreError::Corrupt(col)),
    }
}

fn at<'a>(row: &'a [Value], i: usize, col: &'static str) -> Result<&'a Value, StoreError> {
    row.get(i).ok_or(StoreError::Corrupt(col))
}

fn first_int(rows: &[Vec<Value>]) -> Result<i64, StoreError> {
    let row = rows.first().ok_or(StoreError::Corrupt("count"))?;
    int_value(at(row, 0, "count")?, "count")
}

impl LedgerSink for ClickHouse {
    /// One INSERT of every row. A row already there is inserted again and
    /// collapses with its copy (reads say FINAL), so a replay is harmless.
    fn append(&self, rows: &[&LedgerRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let body = insert_body(rows)?;
        let w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let Some(runtime) = w.runtime.as_ref() else {
            return Err(StoreError::ClickHouse("the ledger writer is closed".into()));
        };
        runtime.block_on(async {
            send(&w.client, &self.target, true, Some(INSERT), body).await?;
            // After the rows: a computation that missed them sees the mark.
            let hours: std::collections::BTreeSet<i64> =
                rows.iter().map(|r| r.time_ms.div_euclid(sql::HOUR_MS) * sql::HOUR_MS).collect();
            let marks: String = hours.iter().map(|h| format!("{{\"hour_ms\":{h},\"n\":1}}\n")).collect();
            send(&w.client, &self.target, true, Some(MARK), Bytes::from(marks)).await.map(drop)
        })
    }
}

impl RequestLog for ClickHouse {
    fn requests(&self, q: RequestQuery) -> StoreFuture<'_, RequestPage> {
        Box::pin(async move {
            let (text, limit) = requests_sql(&q);
            Ok(sql::page(self.select_rows(text).await?, limit))
        })
    }

    fn request(&self, id: String) -> StoreFuture<'_, Option<LedgerRow>> {
        Box::pin(async move { Ok(self.select_rows(request_sql(&id)).await?.into_iter().next()) })
    }

    fn rows_between(
        &self,
        from_ms: i64,
        to_ms: i64,
        after: Option<(i64, String)>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<LedgerRow>> {
        Box::pin(async move {
            let mut wh = format!("ts_ms >= {from_ms} AND ts_ms < {to_ms}");
            if let Some((t, id)) = &after {
                wh.push_str(&format!(" AND (ts_ms > {t} OR (ts_ms = {t} AND request_id > {}))", lit(id)));
            }
            let n = limit.clamp(1, 100_000);
            self.select_rows(format!("SELECT * FROM ledger FINAL WHERE {wh} ORDER BY ts_ms, request_id LIMIT {n}"))
                .await
        })
    }

    /// Deletes the rows older than `before_ms` (a mutation, waited for); the
    /// number of requests that matched. ClickHouse keeps no rollup: reports
    /// over the deleted time are gone with them.
    fn prune_raw(&self, before_ms: i64) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let n = first_int(
                &self.select(format!("SELECT toInt64(count()) FROM ledger FINAL WHERE ts_ms < {before_ms}")).await?,
            )?;
            if n == 0 {
                return Ok(0);
            }
            self.execute(format!("ALTER TABLE ledger DELETE WHERE ts_ms < {before_ms}")).await?;
            if !self.wait_for_mutations().await? {
                tracing::warn!(
                    seconds = PRUNE_WAIT.as_secs(),
                    "ClickHouse is still deleting old ledger rows; the delete goes on in the background"
                );
            }
            Ok(n.max(0) as u64)
        })
    }
}

impl Reports for ClickHouse {
    /// Whole clean hours from the hourly rollup (when every grouped and
    /// filtered dimension is kept there), everything else from the raw rows
    /// read with `FINAL`: exact either way.
    fn spend(&self, q: SpendQuery) -> StoreFuture<'_, SpendReport> {
        Box::pin(async move {
            let n_dims = q.group_by.len();
            let sums_at = n_dims + usize::from(q.bucket.is_some());
            let mut statements = Vec::new();
            let rollable =
                q.group_by.iter().chain(q.filters.iter().map(|(d, _)| d)).all(|d| sql::rollup_column(d).is_some());
            let (lo, hi) = sql::whole_hours(&q);
            let mut clean: Vec<(i64, i64)> = Vec::new();
            if rollable && !matches!((lo, hi), (Some(a), Some(b)) if a >= b) {
                clean =
                    self.hour_state(lo, hi).await?.into_iter().filter_map(|(h, st)| Some((h, st.clean()?))).collect();
            }
            if clean.is_empty() {
                statements.push(spend_sql(&q, &[(q.from_ms, q.to_ms)]));
            } else {
                let ids: Vec<i64> = clean.iter().map(|(_, id)| *id).collect();
                statements.push(hourly_sql(&q, &ids, lo, hi));
                let hours: Vec<i64> = clean.iter().map(|(h, _)| *h).collect();
                let raw = ranges_without(q.from_ms, q.to_ms, &hours);
                if !raw.is_empty() {
                    statements.push(spend_sql(&q, &raw));
                }
            }
            let mut parts = Vec::new();
            for statement in statements {
                for r in self.select(statement).await? {
                    let dims =
                        (0..n_dims).map(|i| opt_string(at(&r, i, "group")?, "group")).collect::<Result<_, _>>()?;
                    let bucket = match q.bucket {
                        Some(_) => Some(int_value(at(&r, n_dims, "bucket")?, "bucket")?),
                        None => None,
                    };
                    let mut sums = [None; sql::SPEND_SUM_COUNT];
                    for (i, s) in sums.iter_mut().enumerate() {
                        *s = opt_int_value(at(&r, sums_at + i, "sum")?, "sum")?;
                    }
                    parts.push(sql::spend_row(dims, bucket, sums));
                }
            }
            Ok(sql::merge_spend(&q, parts))
        })
    }

    fn prompt_cache(&self, by: String, from_ms: i64) -> StoreFuture<'_, Vec<PromptCacheRow>> {
        Box::pin(async move {
            let mut parts = Vec::new();
            for r in self.select(prompt_cache_sql(&by, from_ms)).await? {
                let mut sums = [None; 5];
                for (i, s) in sums.iter_mut().enumerate() {
                    *s = opt_int_value(at(&r, 2 + i, "sum")?, "sum")?;
                }
                parts.push(PromptCachePart {
                    value: opt_string(at(&r, 0, "group")?, "group")?,
                    prefix: opt_string(at(&r, 1, "prefix_hash")?, "prefix_hash")?,
                    sums,
                });
            }
            Ok(sql::fold_prompt_cache(parts))
        })
    }

    fn spend_per_second(&self, filters: Vec<(String, String)>, from_ms: i64) -> StoreFuture<'_, Vec<(i64, i64)>> {
        Box::pin(async move {
            let rows = self.select(spend_per_second_sql(&filters, from_ms)).await?;
            rows.iter()
                .map(|r| {
                    Ok((
                        int_value(at(r, 0, "second")?, "second")?,
                        opt_int_value(at(r, 1, "cost")?, "cost")?.unwrap_or(0),
                    ))
                })
                .collect()
        })
    }

    fn unpriced_models(&self) -> StoreFuture<'_, Vec<(String, String, i64)>> {
        Box::pin(async move {
            let rows = self.select(UNPRICED_SQL.to_string()).await?;
            rows.iter()
                .map(|r| {
                    Ok((
                        opt_string(at(r, 0, "provider")?, "provider")?.unwrap_or_else(|| "-".into()),
                        opt_string(at(r, 1, "model")?, "model")?.unwrap_or_else(|| "-".into()),
                        int_value(at(r, 2, "requests")?, "requests")?,
                    ))
                })
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_escaped() {
        assert_eq!(lit("plain"), "'plain'");
        assert_eq!(lit("o'brien"), r"'o\'brien'");
        assert_eq!(lit(r"a\'b"), r"'a\\\'b'");
        assert_eq!(lit("x') OR 1=1 --"), r"'x\') OR 1=1 --'");
        assert_eq!(lit("l1\nl2\t\0"), r"'l1\nl2\t\0'");
    }

    #[test]
    fn tag_names_are_json_escaped_literals() {
        assert_eq!(
            tag_expr("cost_center"),
            "if(visitParamHas(tags, 'cost_center'), visitParamExtractString(tags, 'cost_center'), NULL)"
        );
        // `a"b'c` is stored as the JSON key "a\"b'c": the literal matches that text.
        assert!(tag_expr("a\"b'c").contains(r#"visitParamHas(tags, 'a\\"b\'c')"#), "{}", tag_expr("a\"b'c"));
    }

    #[test]
    fn dimensions_are_columns_or_tags_and_values_literals() {
        let q = SpendQuery {
            group_by: vec!["team".into(), "status".into(), "cc".into()],
            from_ms: Some(5),
            to_ms: Some(9),
            bucket: Some(crate::query::Bucket::Day),
            filters: vec![("model".into(), "gpt'4".into()), ("user".into(), "u".into())],
        };
        let s = spend_sql(&q, &[(q.from_ms, q.to_ms)]);
        assert!(s.starts_with("SELECT team AS g_0, toString(status) AS g_1, if(visitParamHas(tags, 'cc')"), "{s}");
        assert!(s.contains("intDiv(ts_ms, 86400000) * 86400000 AS g_b"), "{s}");
        assert!(s.contains("FROM ledger FINAL WHERE (ts_ms >= 5 AND ts_ms < 9) AND"), "{s}");
        assert!(s.contains(r#"model = 'gpt\'4' AND "user" = 'u'"#), "{s}");
        assert!(s.ends_with("GROUP BY g_0, g_1, g_2, g_b"), "{s}");
        let p = spend_per_second_sql(&[("model".into(), "claude-*_x%".into())], 1);
        assert!(p.contains(r"model LIKE 'claude-%\\_x\\%'"), "{p}");
    }

    #[test]
    fn raw_ranges_are_the_range_without_the_clean_hours() {
        let h = sql::HOUR_MS;
        assert_eq!(
            ranges_without(Some(10), Some(5 * h + 7), &[h, 2 * h, 4 * h]),
            vec![(Some(10), Some(h)), (Some(3 * h), Some(4 * h)), (Some(5 * h), Some(5 * h + 7))]
        );
        assert_eq!(ranges_without(None, None, &[h]), vec![(None, Some(h)), (Some(2 * h), None)]);
        assert_eq!(ranges_without(Some(h), Some(2 * h), &[h]), vec![]);
        assert_eq!(ranges_without(None, None, &[]), vec![(None, None)]);
        assert_eq!(ts_ranges("t", &[(Some(1), Some(2)), (Some(5), None)]), "((t >= 1 AND t < 2) OR t >= 5)");
    }

    #[test]
    fn urls_name_host_port_and_database() {
        let t = parse_url("clickhouse://127.0.0.1:8123/analytics").unwrap();
        assert_eq!(t.base.as_str(), "http://127.0.0.1:8123/");
        assert_eq!(t.database, "analytics");
        assert!(t.user.is_none() && t.password.is_none());
        let t = parse_url("clickhouse://tg:p%40ss@ch.internal/tollgate").unwrap();
        assert_eq!(t.base.as_str(), "http://ch.internal:8123/");
        assert_eq!((t.user.as_deref(), t.password.as_deref()), (Some("tg"), Some("p@ss")));
        for bad in [
            "http://127.0.0.1:8123/db",
            "clickhouse://127.0.0.1:8123/",
            "clickhouse://127.0.0.1:8123/my-db",
            "clickhouse://127.0.0.1:8123/db;DROP",
            "clickhouse://127.0.0.1:8123/a/b",
            "clickhouse:///db",
        ] {
            assert!(matches!(parse_url(bad), Err(StoreError::UnsupportedUrl(_))), "{bad}");
        }
        let e = parse_url("clickhouse://u:secret@h/x-y").unwrap_err().to_string();
        assert!(!e.contains("secret"), "{e}");
    }

    #[test]
    fn request_ids_made_by_now_v7_give_their_time() {
        let id = uuid::Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, 1_750_000_000, 123_000_000));
        assert_eq!(uuid_v7_ms(&id.to_string()), Some(1_750_000_000_123));
        assert!(request_sql(&id.to_string()).contains("ts_ms >= 1749999400123 AND ts_ms <= 1750000600123"));
        assert_eq!(uuid_v7_ms("r000042"), None);
        assert_eq!(uuid_v7_ms("6ba7b810-9dad-11d1-80b4-00c04fd430c8"), None, "a v1 id");
        assert!(!request_sql("batch:b1:x'y").contains("ts_ms"));
        assert!(request_sql("batch:b1:x'y").contains(r"PREWHERE request_id = 'batch:b1:x\'y' WHERE 1 = 1 LIMIT 1"));
    }

    #[test]
    fn wire_rows_round_trip() {
        let mut row = LedgerRow::new("r1", 1_750_000_000_000, "key_1", Endpoint::Messages);
        row.attribution.tags.insert("team".into(), "a\"b\\c\nd".into());
        row.attribution.tags.insert("env".into(), "prod".into());
        row.cost = None;
        row.ttft_ms = Some(12);
        row.streamed = true;
        row.usage.input_image = 11;
        row.usage.images = 2;
        row.usage.audio_ms = 1500;
        row.usage.characters = 42;
        let json = serde_json::to_string(&Wire::of(&row)).unwrap();
        let back: Wire = serde_json::from_str(&json).unwrap();
        assert_eq!(back.team.as_deref(), Some("a\"b\\c\nd"));
        assert_eq!(back.into_row().unwrap(), row);
    }
}
