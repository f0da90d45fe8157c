//! Spend reports and prompt-cache insight over SQLite (the statements are
//! built in `sql`, shared with PostgreSQL).

use super::sql::{self, Dialect, PromptCachePart};
use super::sqlite::{values, SqliteStore};
use super::StoreError;
use crate::query::{PromptCacheRow, SpendQuery, SpendReport, SpendRow};

impl SqliteStore {
    /// Adds up the ledger: whole hours from the hourly rollup, the rest from
    /// raw rows, exact either way (see [`sql::spend_queries`]).
    pub fn spend(&self, q: &SpendQuery) -> Result<SpendReport, StoreError> {
        spend_with(self, q, true)
    }

    /// Provider prompt-cache use grouped by `by`, since `from_ms`.
    pub fn prompt_cache(&self, by: &str, from_ms: i64) -> Result<Vec<PromptCacheRow>, StoreError> {
        let q = sql::prompt_cache_query(Dialect::Sqlite, by, from_ms);
        let parts = self.with_reader(|conn| {
            let mut stmt = conn.prepare(&q.text)?;
            let mut rows = stmt.query(rusqlite::params_from_iter(values(&q)))?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(PromptCachePart {
                    value: r.get(0)?,
                    prefix: r.get(1)?,
                    sums: [r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?],
                });
            }
            Ok(out)
        })?;
        Ok(sql::fold_prompt_cache(parts))
    }
}

/// `allow_rollup: false` reads raw rows only (the tests compare both ways).
fn spend_with(store: &SqliteStore, q: &SpendQuery, allow_rollup: bool) -> Result<SpendReport, StoreError> {
    let mut parts: Vec<SpendRow> = Vec::new();
    for part in sql::spend_queries(Dialect::Sqlite, q, allow_rollup) {
        store.with_reader(|conn| {
            let mut stmt = conn.prepare(&part.text)?;
            let mut rows = stmt.query(rusqlite::params_from_iter(values(&part)))?;
            let n_dims = q.group_by.len();
            while let Some(r) = rows.next()? {
                let mut dims = Vec::with_capacity(n_dims);
                for i in 0..n_dims {
                    dims.push(r.get::<_, Option<String>>(i)?);
                }
                let bucket_ms = if q.bucket.is_some() { Some(r.get::<_, i64>(n_dims)?) } else { None };
                let b = n_dims + usize::from(q.bucket.is_some());
                let mut sums = [None; sql::SPEND_SUM_COUNT];
                for (i, s) in sums.iter_mut().enumerate() {
                    *s = r.get::<_, Option<i64>>(b + i)?;
                }
                parts.push(sql::spend_row(dims, bucket_ms, sums));
            }
            Ok(())
        })?;
    }
    Ok(sql::merge_spend(q, parts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribution::Attribution;
    use crate::query::Bucket;
    use crate::record::{LedgerRow, UsageSource};
    use tollgate_units::{Money, Usage};

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
                web_search_requests: (i % 3) as u64,
                input_image: (i % 4) as u64 * 50,
                images: (i % 2) as u64,
                ..Usage::default()
            },
            usage_source: if i % 5 == 0 { UsageSource::Estimated } else { UsageSource::Provider },
            cost: if i % 11 == 0 { None } else { Some(Money::from_nanos(1000 + i)) },
            cache_savings: Money::from_nanos(7),
            response_cache_savings: Money::ZERO,
            tool_cost: Money::from_nanos(if i % 3 == 0 { 10_000_000 } else { 0 }),
            provider_cost: (i % 2 == 0).then(|| Money::from_nanos(900 + i)),
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
        assert_eq!(all.tool_cost().nanos(), rows.iter().map(|r| r.tool_cost.nanos()).sum::<i64>());
        assert_eq!(all.web_search_requests(), rows.iter().map(|r| r.usage.web_search_requests).sum::<u64>());
        // Input image tokens are input tokens, in the raw sums as in the rollup's.
        let input: u64 = all.rows.iter().map(|r| r.input_tokens).sum();
        assert_eq!(input, rows.iter().map(|r| r.usage.input_tokens()).sum::<u64>());
    }
}
