//! Spend reports and prompt-cache insight over SQLite: whole hours from the
//! hourly rollup, edge hours and other dimensions from the raw rows.

use rusqlite::types::Value as SqlValue;
use tollgate_units::Money;

use super::sqlite::{dimension_column, SqliteStore};
use super::StoreError;
use crate::query::{PromptCacheRow, SpendQuery, SpendReport, SpendRow};

impl SqliteStore {
    /// Adds up the ledger. Whole hours come from the hourly rollup when every
    /// grouped and filtered dimension is kept there; the partial hours at the
    /// edges of the range (and any other query) read the raw rows — so the
    /// answer is exact either way.
    pub fn spend(&self, q: &SpendQuery) -> Result<SpendReport, StoreError> {
        spend_with(self, q, true)
    }

    /// Provider prompt-cache use grouped by `by`, since `from_ms`.
    pub fn prompt_cache(&self, by: &str, from_ms: i64) -> Result<Vec<PromptCacheRow>, StoreError> {
        prompt_cache(self, by, from_ms)
    }
}

/// Which table a query part reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    /// One row per request.
    Raw,
    /// `ledger_hourly`: sums per hour and rollup dimensions.
    Hourly,
}

fn rollup_column(d: &str) -> Option<&'static str> {
    let c = dimension_column(d)?;
    crate::store::sqlite::ROLLUP_DIMENSIONS.iter().find(|r| **r == c).copied()
}

/// SQL for one dimension: its column, or the tag from the JSON tags.
fn dim_sql(d: &str, source: Source, args: &mut Vec<SqlValue>) -> String {
    match (source, dimension_column(d)) {
        (Source::Hourly, Some(c)) => format!("NULLIF({c}, '')"),
        (_, Some(c)) => format!("CAST({c} AS TEXT)"),
        (_, None) => {
            args.push(SqlValue::Text(format!("$.\"{d}\"")));
            format!("json_extract(tags, ?{})", args.len())
        }
    }
}

const HOUR_MS: i64 = 3_600_000;

/// `allow_rollup: false` reads raw rows only (the tests compare both ways).
fn spend_with(store: &SqliteStore, q: &SpendQuery, allow_rollup: bool) -> Result<SpendReport, StoreError> {
    let rollable =
        allow_rollup && q.group_by.iter().chain(q.filters.iter().map(|(d, _)| d)).all(|d| rollup_column(d).is_some());
    let mut parts: Vec<SpendRow> = Vec::new();
    if rollable {
        let mid_from =
            q.from_ms.map(|f| f.div_euclid(HOUR_MS) * HOUR_MS + if f.rem_euclid(HOUR_MS) == 0 { 0 } else { HOUR_MS });
        let mid_to = q.to_ms.map(|t| t.div_euclid(HOUR_MS) * HOUR_MS);
        let empty_mid = matches!((mid_from, mid_to), (Some(a), Some(b)) if a >= b);
        if empty_mid {
            parts.extend(query(store, q, Source::Raw, q.from_ms, q.to_ms)?);
        } else {
            parts.extend(query(store, q, Source::Hourly, mid_from, mid_to)?);
            if let (Some(f), Some(m)) = (q.from_ms, mid_from) {
                if f < m {
                    parts.extend(query(store, q, Source::Raw, Some(f), Some(m))?);
                }
            }
            if let (Some(m), Some(t)) = (mid_to, q.to_ms) {
                if m < t {
                    parts.extend(query(store, q, Source::Raw, Some(m), Some(t))?);
                }
            }
        }
    } else {
        parts.extend(query(store, q, Source::Raw, q.from_ms, q.to_ms)?);
    }
    // Merge the parts group by group.
    let mut merged: std::collections::BTreeMap<(Vec<Option<String>>, Option<i64>), SpendRow> =
        std::collections::BTreeMap::new();
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
    Ok(SpendReport { group_by: q.group_by.clone(), rows, total_cost, total_requests, unpriced_requests })
}

fn query(
    store: &SqliteStore,
    q: &SpendQuery,
    source: Source,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
) -> Result<Vec<SpendRow>, StoreError> {
    let (table, ts) = match source {
        Source::Raw => ("ledger", "ts_ms"),
        Source::Hourly => ("ledger_hourly", "hour_ms"),
    };
    let mut args: Vec<SqlValue> = Vec::new();
    let mut select = Vec::new();
    for d in &q.group_by {
        select.push(dim_sql(d, source, &mut args));
    }
    if let Some(b) = q.bucket {
        select.push(format!("({ts} / {0}) * {0}", b.millis()));
    }
    let mut wh = vec!["1=1".to_string()];
    if let Some(f) = from_ms {
        args.push(SqlValue::Integer(f));
        wh.push(format!("{ts} >= ?{}", args.len()));
    }
    if let Some(t) = to_ms {
        args.push(SqlValue::Integer(t));
        wh.push(format!("{ts} < ?{}", args.len()));
    }
    for (d, v) in &q.filters {
        let expr = dim_sql(d, source, &mut args);
        args.push(SqlValue::Text(v.clone()));
        wh.push(format!("{expr} = ?{}", args.len()));
    }
    let n_keys = select.len();
    let sums = match source {
        Source::Raw => {
            "COUNT(*), \
            SUM(input_uncached + input_audio + cache_read + cache_write_5m + cache_write_1h), \
            SUM(cache_read), SUM(cache_write_5m + cache_write_1h), \
            SUM(output_text + output_audio + output_image + reasoning), SUM(reasoning), \
            SUM(COALESCE(cost_nanos, 0)), SUM(cache_savings_nanos), \
            SUM(usage_source = 'estimated'), SUM(cost_nanos IS NULL), SUM(status >= 400), SUM(attempts), SUM(response_cache_savings_nanos)"
        }
        Source::Hourly => {
            "SUM(requests), SUM(input_tokens), SUM(cache_read_tokens), SUM(cache_write_tokens), \
            SUM(output_tokens), SUM(reasoning_tokens), SUM(cost_nanos), SUM(cache_savings_nanos), \
            SUM(estimated), SUM(unpriced), SUM(errors), SUM(attempts), SUM(response_cache_savings_nanos)"
        }
    };
    let group = if n_keys == 0 {
        String::new()
    } else {
        format!(" GROUP BY {}", (1..=n_keys).map(|i| i.to_string()).collect::<Vec<_>>().join(", "))
    };
    let keys_sql = if n_keys == 0 { String::new() } else { format!("{}, ", select.join(", ")) };
    // The raw table is read whole-row; a full scan beats an index lookup per row.
    let hint = if source == Source::Raw && from_ms.is_none() { " NOT INDEXED" } else { "" };
    let sql = format!("SELECT {keys_sql}{sums} FROM {table}{hint} WHERE {}{group}", wh.join(" AND "));

    store.with_reader(|conn| {
        let mut stmt = conn.prepare(&sql)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(args.iter()))?;
        let mut out = Vec::new();
        let n_dims = q.group_by.len();
        let u = |r: &rusqlite::Row<'_>, i: usize| -> Result<u64, rusqlite::Error> {
            Ok(r.get::<_, Option<i64>>(i)?.unwrap_or(0).max(0) as u64)
        };
        while let Some(r) = rows.next()? {
            let mut dims = Vec::with_capacity(n_dims);
            for i in 0..n_dims {
                dims.push(r.get::<_, Option<String>>(i)?);
            }
            let bucket_ms = if q.bucket.is_some() { Some(r.get::<_, i64>(n_dims)?) } else { None };
            let b = n_keys;
            out.push(SpendRow {
                dims,
                bucket_ms,
                requests: u(r, b)?,
                input_tokens: u(r, b + 1)?,
                cache_read_tokens: u(r, b + 2)?,
                cache_write_tokens: u(r, b + 3)?,
                output_tokens: u(r, b + 4)?,
                reasoning_tokens: u(r, b + 5)?,
                cost: Money::from_nanos(r.get::<_, Option<i64>>(b + 6)?.unwrap_or(0)),
                cache_savings: Money::from_nanos(r.get::<_, Option<i64>>(b + 7)?.unwrap_or(0)),
                estimated_requests: u(r, b + 8)?,
                unpriced_requests: u(r, b + 9)?,
                error_requests: u(r, b + 10)?,
                attempts: u(r, b + 11)?,
                response_cache_savings: Money::from_nanos(r.get::<_, Option<i64>>(b + 12)?.unwrap_or(0)),
            });
        }
        Ok(out)
    })
}

fn prompt_cache(store: &SqliteStore, by: &str, from_ms: i64) -> Result<Vec<PromptCacheRow>, StoreError> {
    let mut args: Vec<SqlValue> = Vec::new();
    let dim = dim_sql(by, Source::Raw, &mut args);
    args.push(SqlValue::Integer(from_ms));
    let sql = format!(
        "SELECT {dim}, prefix_hash, COUNT(*), \
         SUM(input_uncached + input_audio + cache_read + cache_write_5m + cache_write_1h), SUM(cache_read), \
         SUM(cache_write_5m + cache_write_1h), SUM(cache_savings_nanos) \
         FROM ledger WHERE ts_ms >= ?{} AND cache != 'hit' GROUP BY 1, 2",
        args.len()
    );
    let mut groups: std::collections::BTreeMap<Option<String>, PromptCacheRow> = std::collections::BTreeMap::new();
    store.with_reader(|conn| {
        let mut stmt = conn.prepare(&sql)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(args.iter()))?;
        let u = |r: &rusqlite::Row<'_>, i: usize| -> Result<u64, rusqlite::Error> {
            Ok(r.get::<_, Option<i64>>(i)?.unwrap_or(0).max(0) as u64)
        };
        while let Some(r) = rows.next()? {
            let value: Option<String> = r.get(0)?;
            let prefix: Option<String> = r.get(1)?;
            let (n, input, read, write) = (u(r, 2)?, u(r, 3)?, u(r, 4)?, u(r, 5)?);
            let saved = Money::from_nanos(r.get::<_, Option<i64>>(6)?.unwrap_or(0));
            let g = groups.entry(value.clone()).or_insert_with(|| PromptCacheRow {
                value,
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
            g.saved += saved;
            if prefix.is_some() {
                g.prefixed_requests += n;
                g.distinct_prefixes += 1;
                if read == 0 {
                    g.writes_never_read += write;
                }
            }
        }
        Ok(())
    })?;
    let mut out: Vec<PromptCacheRow> = groups.into_values().collect();
    out.sort_by_key(|r| std::cmp::Reverse(r.input_tokens));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribution::Attribution;
    use crate::query::Bucket;
    use crate::record::{LedgerRow, UsageSource};
    use tollgate_units::Usage;

    fn row(i: i64, t: i64) -> LedgerRow {
        let mut a = Attribution::default();
        a.tags.insert("team".into(), ["growth", "search", "ops"][(i % 3) as usize].into());
        a.tags.insert("env".into(), ["prod", "dev"][(i % 2) as usize].into());
        a.tags.insert("user".into(), format!("u{}", i % 5));
        if i % 4 != 0 {
            a.tags.insert("feature".into(), "summarize".into());
        }
        LedgerRow {
            request_id: format!("r{i:06}"),
            time_ms: t,
            key_id: Some(format!("key_{}", i % 2)),
            endpoint: crate::record::Endpoint::ChatCompletions,
            requested_model: Some("m".into()),
            model: Some(["gpt-4o", "claude"][(i % 2) as usize].into()),
            provider: Some("p".into()),
            status: if i % 7 == 0 { 502 } else { 200 },
            error_code: None,
            usage: Usage {
                input: 10 + i as u64,
                cache_read: 3,
                cache_write_5m: 1,
                output: 5,
                reasoning: 2,
                ..Usage::default()
            },
            usage_source: if i % 5 == 0 { UsageSource::Estimated } else { UsageSource::Provider },
            cost: if i % 11 == 0 { None } else { Some(Money::from_nanos(1000 + i)) },
            cache_savings: Money::from_nanos(7),
            response_cache_savings: Money::ZERO,
            streamed: false,
            client_disconnected: false,
            cache: crate::record::CacheOutcome::Off,
            latency_ms: 1,
            ttft_ms: None,
            attempts: 1,
            prefix_hash: None,
            attempt_log: Vec::new(),
            attribution: a,
        }
    }

    /// The hourly rollup and the raw rows give the same answer, to the nano-dollar,
    /// for ranges that cut hours in the middle.
    #[test]
    fn rollup_answers_equal_raw_answers() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&format!("sqlite://{}", dir.path().join("a.db").display())).unwrap();
        let base = 1_750_000_000_000_i64; // some hour, not aligned
        let rows: Vec<LedgerRow> = (0..600).map(|i| row(i, base + i * 997_331)).collect();
        let refs: Vec<&LedgerRow> = rows.iter().collect();
        store.append(&refs).unwrap();
        store.append(&refs[..50]).unwrap(); // replayed rows are not counted twice
        let queries = vec![
            SpendQuery { group_by: vec!["team".into(), "model".into()], ..Default::default() },
            SpendQuery {
                group_by: vec!["team".into()],
                from_ms: Some(base + 12_345_678),
                to_ms: Some(base + 400_000_000),
                bucket: Some(Bucket::Hour),
                ..Default::default()
            },
            SpendQuery {
                group_by: vec!["feature".into(), "env".into()],
                from_ms: Some(base + 1),
                bucket: Some(Bucket::Day),
                filters: vec![("team".into(), "growth".into())],
                ..Default::default()
            },
            SpendQuery {
                group_by: vec!["key".into()],
                from_ms: Some(base + 100),
                to_ms: Some(base + 200),
                ..Default::default()
            },
            SpendQuery { group_by: vec!["user".into()], ..Default::default() },
        ];
        for q in queries {
            let fast = spend_with(&store, &q, true).unwrap();
            let raw = spend_with(&store, &q, false).unwrap();
            assert_eq!(fast, raw, "{q:?}");
        }
        let all = store.spend(&SpendQuery::default()).unwrap();
        assert_eq!(all.total_requests, 600);
        // Retention drops raw rows; whole-hour reports still come from the rollup.
        let cut = base + 300 * 997_331;
        let by_team = SpendQuery {
            group_by: vec!["team".into()],
            to_ms: Some((cut / 3_600_000) * 3_600_000),
            ..Default::default()
        };
        let before = store.spend(&by_team).unwrap();
        assert!(store.prune_raw(cut).unwrap() > 250);
        assert_eq!(store.spend(&by_team).unwrap(), before, "rollup-answered reports are unchanged");
        let want: i64 = rows.iter().map(|r| r.cost.map_or(0, |c| c.nanos())).sum();
        assert_eq!(all.total_cost.nanos(), want);
        assert_eq!(all.unpriced_requests, rows.iter().filter(|r| r.cost.is_none()).count() as u64);
    }
}
