//! SQL shared by the relational stores (SQLite and PostgreSQL): the ledger's
//! columns and hourly rollup, and the report queries. Each store runs the
//! text and arguments built here with its own driver; the few places where
//! the two dialects differ (placeholders, reading a tag from the JSON tags,
//! glob matching) are [`Dialect`] methods.

use std::collections::BTreeMap;

use tollgate_units::Money;

use crate::outcome::{Acc, CostQuery, CostReport, CostRow};
use crate::query::{PromptCacheRow, SpendQuery, SpendReport, SpendRow};
use crate::record::{LedgerRow, UsageSource};

pub const HOUR_MS: i64 = 3_600_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A bound argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    Int(i64),
    Text(String),
}

/// A statement and its arguments, in placeholder order.
#[derive(Debug, Clone, Default)]
pub struct Sql {
    pub text: String,
    pub args: Vec<Arg>,
}

impl Dialect {
    /// The placeholder of the `n`th argument (1-based).
    pub fn param(self, n: usize) -> String {
        match self {
            Dialect::Sqlite => format!("?{n}"),
            Dialect::Postgres => format!("${n}"),
        }
    }

    /// Binds `a` and returns its placeholder.
    fn bind(self, args: &mut Vec<Arg>, a: Arg) -> String {
        args.push(a);
        self.param(args.len())
    }

    /// A tag's value read from the JSON `tags` column of `table` ("" = unqualified).
    fn tag(self, table: &str, name: &str, args: &mut Vec<Arg>) -> String {
        let name = name.replace('"', "");
        match self {
            Dialect::Sqlite => {
                let p = self.bind(args, Arg::Text(format!("$.\"{name}\"")));
                format!("json_extract({table}tags, {p})")
            }
            Dialect::Postgres => {
                let p = self.bind(args, Arg::Text(name));
                format!("(CAST({table}tags AS jsonb) ->> CAST({p} AS TEXT))")
            }
        }
    }

    /// `expr` matches `pattern`, where `*` is any run of characters.
    fn glob(self, expr: &str, pattern: &str, args: &mut Vec<Arg>) -> String {
        match self {
            Dialect::Sqlite => {
                let p = self.bind(args, Arg::Text(pattern.to_string()));
                format!("{expr} GLOB {p}")
            }
            Dialect::Postgres => {
                let like: String = pattern
                    .chars()
                    .flat_map(|c| match c {
                        '*' => vec!['%'],
                        '%' | '_' | '\\' => vec!['\\', c],
                        c => vec![c],
                    })
                    .collect();
                let p = self.bind(args, Arg::Text(like));
                format!("{expr} LIKE {p}")
            }
        }
    }
}

/// Dimensions that have a column of their own; other names are tags.
/// (`user` is quoted: it is a reserved word in PostgreSQL.)
pub fn dimension_column(dim: &str) -> Option<&'static str> {
    Some(match dim {
        "key" | "key_id" => "key_id",
        "user" => "\"user\"",
        "team" => "team",
        "org" => "org",
        "feature" => "feature",
        "env" => "env",
        "model" => "model",
        "requested_model" => "requested_model",
        "provider" => "provider",
        "session" => "session",
        "agent" => "agent",
        "prompt" => "prompt",
        "trace" | "trace_id" => "trace_id",
        "endpoint" => "endpoint",
        "status" => "status",
        "error_code" => "error_code",
        "usage_source" => "usage_source",
        "cache" => "cache",
        _ => return None,
    })
}

/// The ledger's columns in insert order (48 of them).
pub const LEDGER_COLUMNS: &str = "request_id, ts_ms, key_id, endpoint, requested_model, model, provider, status, \
    error_code, input_uncached, input_audio, cache_read, cache_write_5m, cache_write_1h, output_text, \
    output_audio, output_image, reasoning, usage_source, cost_nanos, cache_savings_nanos, streamed, \
    client_disconnected, cache, latency_ms, ttft_ms, attempts, \"user\", team, org, feature, env, tags, \
    trace_id, parent_id, session, agent, prompt, attempt_log, response_cache_savings_nanos, prefix_hash, \
    web_search_requests, tool_cost_nanos, provider_cost_nanos, input_image_tokens, images, audio_ms, characters";

pub const LEDGER_COLUMN_COUNT: usize = 48;

/// How many sums a spend statement selects (and the hourly rollup keeps).
pub const SPEND_SUM_COUNT: usize = 15;

/// Dimensions kept in the hourly rollup (`ledger_hourly`); NULL is stored as ''.
pub const ROLLUP_DIMENSIONS: &[&str] =
    &["key_id", "team", "org", "feature", "env", "model", "requested_model", "provider", "agent", "prompt", "endpoint"];

/// Sums kept per hour and rollup group.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RollupSums {
    pub requests: i64,
    pub input: i64,
    pub cache_read: i64,
    pub cache_write: i64,
    pub output: i64,
    pub reasoning: i64,
    pub cost: i64,
    pub savings: i64,
    pub estimated: i64,
    pub unpriced: i64,
    pub errors: i64,
    pub attempts: i64,
    pub response_savings: i64,
    pub tool_cost: i64,
    pub web_search_requests: i64,
}

impl RollupSums {
    pub fn add(&mut self, row: &LedgerRow) {
        let us = &row.usage;
        self.requests += 1;
        self.input += int(us.input_tokens());
        self.cache_read += int(us.cache_read);
        self.cache_write += int(us.cache_write_tokens());
        self.output += int(us.output_tokens());
        self.reasoning += int(us.reasoning);
        self.cost += row.cost.map_or(0, Money::nanos);
        self.savings += row.cache_savings.nanos();
        self.estimated += i64::from(row.usage_source == UsageSource::Estimated);
        self.unpriced += i64::from(row.cost.is_none());
        self.errors += i64::from(row.status >= 400);
        self.attempts += i64::from(row.attempts);
        self.response_savings += row.response_cache_savings.nanos();
        self.tool_cost += row.tool_cost.nanos();
        self.web_search_requests += int(us.web_search_requests);
    }

    pub fn values(&self) -> [i64; SPEND_SUM_COUNT] {
        [
            self.requests,
            self.input,
            self.cache_read,
            self.cache_write,
            self.output,
            self.reasoning,
            self.cost,
            self.savings,
            self.estimated,
            self.unpriced,
            self.errors,
            self.attempts,
            self.response_savings,
            self.tool_cost,
            self.web_search_requests,
        ]
    }
}

/// The rollup's sum columns, in [`RollupSums::values`] order.
pub const ROLLUP_SUMS: &[&str] = &[
    "requests",
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost_nanos",
    "cache_savings_nanos",
    "estimated",
    "unpriced",
    "errors",
    "attempts",
    "response_cache_savings_nanos",
    "tool_cost_nanos",
    "web_search_requests",
];

/// The rollup group a row adds to: its hour and its rollup dimensions.
pub fn rollup_key(row: &LedgerRow) -> (i64, [String; 11]) {
    let a = &row.attribution;
    let s = |v: Option<&str>| v.unwrap_or("").to_string();
    (
        row.time_ms.div_euclid(HOUR_MS) * HOUR_MS,
        [
            s(row.key_id.as_deref()),
            s(a.tag("team")),
            s(a.tag("org")),
            s(a.tag("feature")),
            s(a.tag("env")),
            s(row.model.as_deref()),
            s(row.requested_model.as_deref()),
            s(row.provider.as_deref()),
            s(a.agent.as_deref()),
            s(a.prompt.as_deref()),
            row.endpoint.as_str().to_string(),
        ],
    )
}

/// The rollup's upsert: one group's sums added to what is there.
pub fn rollup_upsert(d: Dialect) -> String {
    let n = 1 + ROLLUP_DIMENSIONS.len() + ROLLUP_SUMS.len();
    let values = match d {
        Dialect::Sqlite => format!("VALUES ({})", (1..=n).map(|i| d.param(i)).collect::<Vec<_>>().join(", ")),
        // One statement for every group of a batch: an array per column.
        Dialect::Postgres => {
            let arrays: Vec<String> = (1..=n)
                .map(|i| {
                    let ty = if (2..2 + ROLLUP_DIMENSIONS.len()).contains(&i) { "text" } else { "bigint" };
                    format!("${i}::{ty}[]")
                })
                .collect();
            format!("SELECT * FROM UNNEST({})", arrays.join(", "))
        }
    };
    let set: Vec<String> = ROLLUP_SUMS.iter().map(|c| format!("{c} = ledger_hourly.{c} + excluded.{c}")).collect();
    format!(
        "INSERT INTO ledger_hourly (hour_ms, {}, {}) {values} ON CONFLICT (hour_ms, {}) DO UPDATE SET {}",
        ROLLUP_DIMENSIONS.join(", "),
        ROLLUP_SUMS.join(", "),
        ROLLUP_DIMENSIONS.join(", "),
        set.join(", ")
    )
}

/// Sums over raw rows, in [`RollupSums::values`] order.
const RAW_SUMS: &str = "COUNT(*), \
    CAST(SUM(input_uncached + input_image_tokens + input_audio + cache_read + cache_write_5m + cache_write_1h) AS BIGINT), \
    CAST(SUM(cache_read) AS BIGINT), CAST(SUM(cache_write_5m + cache_write_1h) AS BIGINT), \
    CAST(SUM(output_text + output_audio + output_image + reasoning) AS BIGINT), CAST(SUM(reasoning) AS BIGINT), \
    CAST(SUM(COALESCE(cost_nanos, 0)) AS BIGINT), CAST(SUM(cache_savings_nanos) AS BIGINT), \
    CAST(SUM(CASE WHEN usage_source = 'estimated' THEN 1 ELSE 0 END) AS BIGINT), \
    CAST(SUM(CASE WHEN cost_nanos IS NULL THEN 1 ELSE 0 END) AS BIGINT), \
    CAST(SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END) AS BIGINT), CAST(SUM(attempts) AS BIGINT), \
    CAST(SUM(response_cache_savings_nanos) AS BIGINT), CAST(SUM(tool_cost_nanos) AS BIGINT), \
    CAST(SUM(web_search_requests) AS BIGINT)";

/// The same sums over the rollup.
fn hourly_sums() -> String {
    ROLLUP_SUMS.iter().map(|c| format!("CAST(SUM({c}) AS BIGINT)")).collect::<Vec<_>>().join(", ")
}

/// Which table a part of a spend report reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// One row per request.
    Raw,
    /// `ledger_hourly`: sums per hour and rollup dimensions.
    Hourly,
}

/// The rollup column of a dimension, when the hourly rollup keeps it.
pub fn rollup_column(d: &str) -> Option<&'static str> {
    let c = dimension_column(d)?;
    ROLLUP_DIMENSIONS.iter().find(|r| **r == c).copied()
}

/// SQL for one dimension: its column, or the tag from the JSON tags.
fn dim_sql(d: Dialect, dim: &str, source: Source, args: &mut Vec<Arg>) -> String {
    match (source, dimension_column(dim)) {
        (Source::Hourly, Some(c)) => format!("NULLIF({c}, '')"),
        (_, Some(c)) => format!("CAST({c} AS TEXT)"),
        (_, None) => d.tag("", dim, args),
    }
}

/// The statements a spend report runs. Whole hours come from the hourly
/// rollup when every grouped and filtered dimension is kept there; the
/// partial hours at the edges of the range (and any other query) read the
/// raw rows, so the answer is exact either way. Each statement selects the
/// group's dimensions, then its bucket (when asked), then the
/// [`SPEND_SUM_COUNT`] sums.
pub fn spend_queries(d: Dialect, q: &SpendQuery, allow_rollup: bool) -> Vec<Sql> {
    let rollable =
        allow_rollup && q.group_by.iter().chain(q.filters.iter().map(|(d, _)| d)).all(|d| rollup_column(d).is_some());
    if !rollable {
        return vec![spend_part(d, q, Source::Raw, q.from_ms, q.to_ms)];
    }
    let (mid_from, mid_to) = whole_hours(q);
    if matches!((mid_from, mid_to), (Some(a), Some(b)) if a >= b) {
        return vec![spend_part(d, q, Source::Raw, q.from_ms, q.to_ms)];
    }
    let mut parts = vec![spend_part(d, q, Source::Hourly, mid_from, mid_to)];
    if let (Some(f), Some(m)) = (q.from_ms, mid_from) {
        if f < m {
            parts.push(spend_part(d, q, Source::Raw, Some(f), Some(m)));
        }
    }
    if let (Some(m), Some(t)) = (mid_to, q.to_ms) {
        if m < t {
            parts.push(spend_part(d, q, Source::Raw, Some(m), Some(t)));
        }
    }
    parts
}

/// The whole hours inside a query's range: from its first hour boundary to its last.
pub fn whole_hours(q: &SpendQuery) -> (Option<i64>, Option<i64>) {
    let from =
        q.from_ms.map(|f| f.div_euclid(HOUR_MS) * HOUR_MS + if f.rem_euclid(HOUR_MS) == 0 { 0 } else { HOUR_MS });
    (from, q.to_ms.map(|t| t.div_euclid(HOUR_MS) * HOUR_MS))
}

fn spend_part(d: Dialect, q: &SpendQuery, source: Source, from_ms: Option<i64>, to_ms: Option<i64>) -> Sql {
    let (table, ts) = match source {
        Source::Raw => ("ledger", "ts_ms"),
        Source::Hourly => ("ledger_hourly", "hour_ms"),
    };
    let mut args = Vec::new();
    let mut select: Vec<String> = q.group_by.iter().map(|g| dim_sql(d, g, source, &mut args)).collect();
    if let Some(b) = q.bucket {
        select.push(format!("({ts} / {0}) * {0}", b.millis()));
    }
    let mut wh = vec!["1=1".to_string()];
    if let Some(f) = from_ms {
        wh.push(format!("{ts} >= {}", d.bind(&mut args, Arg::Int(f))));
    }
    if let Some(t) = to_ms {
        wh.push(format!("{ts} < {}", d.bind(&mut args, Arg::Int(t))));
    }
    for (dim, v) in &q.filters {
        let expr = dim_sql(d, dim, source, &mut args);
        wh.push(format!("{expr} = {}", d.bind(&mut args, Arg::Text(v.clone()))));
    }
    let sums = match source {
        Source::Raw => RAW_SUMS.to_string(),
        Source::Hourly => hourly_sums(),
    };
    let n_keys = select.len();
    let group = if n_keys == 0 {
        String::new()
    } else {
        format!(" GROUP BY {}", (1..=n_keys).map(|i| i.to_string()).collect::<Vec<_>>().join(", "))
    };
    let keys_sql = if n_keys == 0 { String::new() } else { format!("{}, ", select.join(", ")) };
    // SQLite: the raw table is read whole-row; a full scan beats an index lookup per row.
    let hint = if d == Dialect::Sqlite && source == Source::Raw && from_ms.is_none() { " NOT INDEXED" } else { "" };
    Sql { text: format!("SELECT {keys_sql}{sums} FROM {table}{hint} WHERE {}{group}", wh.join(" AND ")), args }
}

/// One result row of a spend statement, as read by a driver.
pub fn spend_row(dims: Vec<Option<String>>, bucket_ms: Option<i64>, sums: [Option<i64>; SPEND_SUM_COUNT]) -> SpendRow {
    let s = sums.map(|v| v.unwrap_or(0));
    let u = |v: i64| v.max(0) as u64;
    SpendRow {
        dims,
        bucket_ms,
        requests: u(s[0]),
        input_tokens: u(s[1]),
        cache_read_tokens: u(s[2]),
        cache_write_tokens: u(s[3]),
        output_tokens: u(s[4]),
        reasoning_tokens: u(s[5]),
        cost: Money::from_nanos(s[6]),
        cache_savings: Money::from_nanos(s[7]),
        estimated_requests: u(s[8]),
        unpriced_requests: u(s[9]),
        error_requests: u(s[10]),
        attempts: u(s[11]),
        response_cache_savings: Money::from_nanos(s[12]),
        tool_cost: Money::from_nanos(s[13]),
        web_search_requests: u(s[14]),
    }
}

/// Merges the parts' rows group by group, and orders and totals the report.
pub fn merge_spend(q: &SpendQuery, parts: Vec<SpendRow>) -> SpendReport {
    let mut merged: BTreeMap<(Vec<Option<String>>, Option<i64>), SpendRow> = BTreeMap::new();
    for r in parts {
        match merged.entry((r.dims.clone(), r.bucket_ms)) {
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(r);
            }
            std::collections::btree_map::Entry::Occupied(mut o) => {
                let m = o.get_mut();
                m.requests += r.requests;
                m.input_tokens += r.input_tokens;
                m.cache_read_tokens += r.cache_read_tokens;
                m.cache_write_tokens += r.cache_write_tokens;
                m.output_tokens += r.output_tokens;
                m.reasoning_tokens += r.reasoning_tokens;
                m.cost += r.cost;
                m.cache_savings += r.cache_savings;
                m.estimated_requests += r.estimated_requests;
                m.unpriced_requests += r.unpriced_requests;
                m.error_requests += r.error_requests;
                m.attempts += r.attempts;
                m.response_cache_savings += r.response_cache_savings;
                m.tool_cost += r.tool_cost;
                m.web_search_requests += r.web_search_requests;
            }
        }
    }
    let mut rows: Vec<SpendRow> = merged.into_values().filter(|r| r.requests > 0).collect();
    if q.bucket.is_some() {
        rows.sort_by(|a, b| a.bucket_ms.cmp(&b.bucket_ms).then(b.cost.cmp(&a.cost)));
    } else {
        rows.sort_by(|a, b| b.cost.cmp(&a.cost).then(a.dims.cmp(&b.dims)));
    }
    let total_cost = rows.iter().map(|r| r.cost).sum();
    let total_requests = rows.iter().map(|r| r.requests).sum();
    let unpriced_requests = rows.iter().map(|r| r.unpriced_requests).sum();
    SpendReport { group_by: q.group_by.clone(), rows, total_cost, total_requests, unpriced_requests }
}

/// Prompt-cache use grouped by `by` and prefix: selects the group's value,
/// the prefix hash, then requests, input, cache-read and cache-write tokens
/// and the savings.
pub fn prompt_cache_query(d: Dialect, by: &str, from_ms: i64) -> Sql {
    let mut args = Vec::new();
    let dim = dim_sql(d, by, Source::Raw, &mut args);
    let from = d.bind(&mut args, Arg::Int(from_ms));
    Sql {
        text: format!(
            "SELECT {dim}, prefix_hash, COUNT(*), \
             CAST(SUM(input_uncached + input_image_tokens + input_audio + cache_read + cache_write_5m + cache_write_1h) AS BIGINT), \
             CAST(SUM(cache_read) AS BIGINT), CAST(SUM(cache_write_5m + cache_write_1h) AS BIGINT), \
             CAST(SUM(cache_savings_nanos) AS BIGINT) \
             FROM ledger WHERE ts_ms >= {from} AND cache != 'hit' GROUP BY 1, 2"
        ),
        args,
    }
}

/// One row of [`prompt_cache_query`], as read by a driver.
pub struct PromptCachePart {
    pub value: Option<String>,
    pub prefix: Option<String>,
    pub sums: [Option<i64>; 5],
}

/// Folds prefix groups into one row per value, most input first.
pub fn fold_prompt_cache(parts: Vec<PromptCachePart>) -> Vec<PromptCacheRow> {
    let mut groups: BTreeMap<Option<String>, PromptCacheRow> = BTreeMap::new();
    for p in parts {
        let [n, input, read, write, saved] = p.sums.map(|v| v.unwrap_or(0).max(0));
        let (n, input, read, write) = (n as u64, input as u64, read as u64, write as u64);
        let g = groups.entry(p.value.clone()).or_insert_with(|| PromptCacheRow {
            value: p.value,
            requests: 0,
            input_tokens: 0,
            cache_read_tokens: 0,
            cache_write_tokens: 0,
            saved: Money::ZERO,
            writes_never_read: 0,
            prefixed_requests: 0,
            distinct_prefixes: 0,
        });
        g.requests += n;
        g.input_tokens += input;
        g.cache_read_tokens += read;
        g.cache_write_tokens += write;
        g.saved += Money::from_nanos(saved);
        if p.prefix.is_some() {
            g.prefixed_requests += n;
            g.distinct_prefixes += 1;
            if read == 0 {
                g.writes_never_read += write;
            }
        }
    }
    let mut out: Vec<PromptCacheRow> = groups.into_values().collect();
    out.sort_by_key(|r| std::cmp::Reverse(r.input_tokens));
    out
}

/// Settled spend per second since `from_ms` for rows matching `filters`
/// (`*` in a value matches any run of characters): (second, nanos).
pub fn spend_per_second_query(d: Dialect, filters: &[(String, String)], from_ms: i64) -> Sql {
    let mut args = Vec::new();
    let from = d.bind(&mut args, Arg::Int(from_ms));
    let mut text =
        format!("SELECT ts_ms / 1000, CAST(SUM(COALESCE(cost_nanos, 0)) AS BIGINT) FROM ledger WHERE ts_ms >= {from}");
    for (dim, v) in filters {
        match dimension_column(dim) {
            Some(c) if v.contains('*') => {
                text.push_str(&format!(" AND {}", d.glob(c, v, &mut args)));
            }
            Some(c) => text.push_str(&format!(" AND {c} = {}", d.bind(&mut args, Arg::Text(v.clone())))),
            None => {
                let tag = d.tag("", dim, &mut args);
                text.push_str(&format!(" AND {tag} = {}", d.bind(&mut args, Arg::Text(v.clone()))));
            }
        }
    }
    text.push_str(" GROUP BY 1 ORDER BY 1");
    Sql { text, args }
}

/// A page of the request log: rows newest first, one more than `limit` to
/// tell whether another page follows.
pub fn requests_query(d: Dialect, q: &crate::query::RequestQuery) -> (Sql, usize) {
    let mut args = Vec::new();
    let mut text = String::from("SELECT * FROM ledger WHERE 1=1");
    for (dim, value) in &q.filters {
        let expr = match dimension_column(dim) {
            Some(col) => col.to_string(),
            None => d.tag("", dim, &mut args),
        };
        text.push_str(&format!(" AND {expr} = {}", d.bind(&mut args, Arg::Text(value.clone()))));
    }
    if let Some(c) = &q.cursor {
        text.push_str(&format!(" AND request_id < {}", d.bind(&mut args, Arg::Text(c.clone()))));
    }
    let limit = q.limit.clamp(1, 1000);
    text.push_str(&format!(" ORDER BY request_id DESC LIMIT {}", limit + 1));
    (Sql { text, args }, limit)
}

/// Rows of `[from_ms, to_ms)` oldest first, after the `(time, request id)`
/// of the previous page's last row ([`super::RequestLog::rows_between`]).
pub fn rows_between_query(d: Dialect, from_ms: i64, to_ms: i64, after: Option<(i64, String)>, limit: usize) -> Sql {
    let mut args = Vec::new();
    // One lower bound, the cursor's time when there is one: the index range
    // then starts at the cursor (with two lower bounds the planner may start
    // at `from_ms` and walk every earlier row again on each page).
    let lower = after.as_ref().map_or(from_ms, |(t, _)| (*t).max(from_ms));
    let mut text = format!(
        "SELECT * FROM ledger WHERE ts_ms >= {} AND ts_ms < {}",
        d.bind(&mut args, Arg::Int(lower)),
        d.bind(&mut args, Arg::Int(to_ms))
    );
    if let Some((t, id)) = after {
        let t1 = d.bind(&mut args, Arg::Int(t));
        let id = d.bind(&mut args, Arg::Text(id));
        text.push_str(&format!(" AND (ts_ms > {t1} OR request_id > {id})"));
    }
    text.push_str(&format!(" ORDER BY ts_ms, request_id LIMIT {}", limit.clamp(1, 100_000)));
    Sql { text, args }
}

/// Cuts a page read with [`requests_query`] to `limit`, with the next cursor.
pub fn page(mut rows: Vec<LedgerRow>, limit: usize) -> crate::query::RequestPage {
    let next_cursor = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|r| r.request_id.clone())
    } else {
        None
    };
    crate::query::RequestPage { rows, next_cursor }
}

/// Outcomes joined to the ledger rows they are about, one join per subject
/// kind (each uses its own index): outcome id, success, request id, cost, group.
pub fn outcome_cost_query(d: Dialect, q: &CostQuery) -> Sql {
    let mut args = Vec::new();
    let group = match dimension_column(&q.by) {
        Some(c) => format!("CAST(l.{c} AS TEXT)"),
        None => d.tag("l.", &q.by, &mut args),
    };
    let mut wh = String::new();
    if let Some(n) = &q.name {
        wh.push_str(&format!(" AND o.name = {}", d.bind(&mut args, Arg::Text(n.clone()))));
    }
    if let Some(f) = q.from_ms {
        wh.push_str(&format!(" AND o.ts_ms >= {}", d.bind(&mut args, Arg::Int(f))));
    }
    if let Some(t) = q.to_ms {
        wh.push_str(&format!(" AND o.ts_ms < {}", d.bind(&mut args, Arg::Int(t))));
    }
    if let Some(t) = &q.team {
        wh.push_str(&format!(" AND l.team = {}", d.bind(&mut args, Arg::Text(t.clone()))));
    }
    let part = |col: &str| {
        format!(
            "SELECT o.id, o.success, l.request_id, l.cost_nanos, {group} FROM outcomes o \
             JOIN ledger l ON l.{col} = o.{col} WHERE o.{col} IS NOT NULL{wh}"
        )
    };
    Sql { text: format!("{} UNION ALL {} UNION ALL {}", part("request_id"), part("trace_id"), part("session")), args }
}

/// One row of [`outcome_cost_query`], as read by a driver.
pub struct OutcomeJoin {
    pub outcome_id: String,
    pub success: bool,
    pub request_id: String,
    pub cost_nanos: Option<i64>,
    pub group: Option<String>,
}

/// Cost per outcome from the joined rows.
pub fn fold_outcome_cost(q: &CostQuery, rows: Vec<OutcomeJoin>) -> CostReport {
    let mut groups: BTreeMap<Option<String>, Acc> = BTreeMap::new();
    let mut all = Acc::default();
    for r in rows {
        let acc = groups.entry(r.group).or_default();
        acc.rows.insert(r.request_id.clone(), r.cost_nanos);
        acc.outcomes.insert(r.outcome_id.clone(), r.success);
        all.rows.insert(r.request_id, r.cost_nanos);
        all.outcomes.insert(r.outcome_id, r.success);
    }
    let mut out: Vec<CostRow> = groups.iter().map(|(g, a)| a.finish(g.clone())).collect();
    out.sort_by(|a, b| b.cost.cmp(&a.cost).then_with(|| a.group.cmp(&b.group)));
    CostReport { by: q.by.clone(), rows: out, total: all.finish(None) }
}

/// Models with rows but no price: (provider, model, requests), most requests first.
pub const UNPRICED_MODELS: &str = "SELECT COALESCE(provider, '-'), COALESCE(model, requested_model, '-'), COUNT(*) \
     FROM ledger WHERE cost_nanos IS NULL GROUP BY 1, 2 ORDER BY 3 DESC";

/// A fingerprint of the governance tables, to notice changes made by other processes.
pub const GOVERNANCE_VERSION: &str =
    "SELECT (SELECT COUNT(*) FROM budgets), (SELECT COALESCE(MAX(updated_ms), 0) FROM budgets), \
     (SELECT COUNT(*) FROM rate_limits), (SELECT COALESCE(MAX(updated_ms), 0) FROM rate_limits)";

/// The newest price update's id, 0 when there is none (the primary key's index answers it).
pub const PRICE_UPDATE_VERSION: &str = "SELECT COALESCE(MAX(id), 0) FROM price_updates";

/// A token count as a signed column value.
pub fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A count column read back (never negative).
pub fn count(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// The reconciliation table's columns, in insert and select order.
pub const RECONCILIATION_COLUMNS: &str = "provider, day, kind, model, account, gateway_cost_nanos, \
     provider_cost_nanos, gateway_input_tokens, gateway_output_tokens, provider_input_tokens, \
     provider_output_tokens, gateway_requests, provider_requests, cause, reconciled_ms";

/// Serialises tags (or any string map) for a TEXT column.
pub fn tags_json(m: &BTreeMap<String, String>) -> String {
    serde_json::to_string(m).unwrap_or_else(|_| "{}".into())
}

/// The audit log's columns, in insert and select order (after `id`).
pub const AUDIT_COLUMNS: &str = "ts_ms, actor, actor_role, action, target, team, before_json, after_json, source";

/// An audit entry's `before`/`after` state for a TEXT column.
pub fn audit_state(v: &Option<serde_json::Value>) -> Option<String> {
    v.as_ref().map(|v| serde_json::to_string(v).unwrap_or_else(|_| "null".into()))
}

/// A stored `before`/`after` state read back.
pub fn audit_state_of(s: Option<String>, col: &'static str) -> Result<Option<serde_json::Value>, super::StoreError> {
    s.map(|s| serde_json::from_str(&s).map_err(|_| super::StoreError::Corrupt(col))).transpose()
}

/// One page of the audit log: `id, AUDIT_COLUMNS` for the entries `q`
/// asks for, one past its page size (see [`crate::audit::AuditPage::cut`]).
pub fn audit_query(d: Dialect, q: &crate::audit::AuditQuery) -> (Sql, usize) {
    let mut args = Vec::new();
    let mut text = format!("SELECT id, {AUDIT_COLUMNS} FROM audit_log WHERE 1=1");
    if let Some(t) = q.since_ms {
        text.push_str(&format!(" AND ts_ms >= {}", d.bind(&mut args, Arg::Int(t))));
    }
    if let Some(t) = q.until_ms {
        text.push_str(&format!(" AND ts_ms < {}", d.bind(&mut args, Arg::Int(t))));
    }
    if let Some(a) = &q.actor {
        text.push_str(&format!(" AND actor = {}", d.bind(&mut args, Arg::Text(a.clone()))));
    }
    match q.action_filter() {
        Some((prefix, true)) => {
            // substr (not LIKE): no wildcard in the prefix to escape, case-sensitive in both dialects.
            // The length is a number of ours, written in (PostgreSQL wants an int4 there).
            let n = prefix.chars().count();
            let p = d.bind(&mut args, Arg::Text(prefix.to_string()));
            text.push_str(&format!(" AND substr(action, 1, {n}) = {p}"));
        }
        Some((exact, false)) => {
            text.push_str(&format!(" AND action = {}", d.bind(&mut args, Arg::Text(exact.to_string()))));
        }
        None => {}
    }
    if let Some(t) = &q.team {
        text.push_str(&format!(" AND team = {}", d.bind(&mut args, Arg::Text(t.clone()))));
    }
    let (cmp, order) = if q.oldest_first { (">", "ASC") } else { ("<", "DESC") };
    if let Some(c) = q.cursor {
        text.push_str(&format!(" AND id {cmp} {}", d.bind(&mut args, Arg::Int(c))));
    }
    let limit = q.page_size();
    text.push_str(&format!(" ORDER BY id {order} LIMIT {}", limit + 1));
    (Sql { text, args }, limit)
}
