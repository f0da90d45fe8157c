//! Benchmark: `tollgate report --by team,model --since 30d` over a large
//! ledger, and how fast the ledger loader writes rows.
//!
//! `cargo run --release -p tollgate --example report_bench -- [ROWS] [DB]`
//! seeds ROWS (default 1,000,000) synthetic rows spread over 30 days through
//! the ledger sink the loader uses, in batches of 10,000 (reused if DB
//! already holds them), prints rows per second, then runs the report query 5
//! times and prints each time and the median. DB is a SQLite path (default: a
//! file in the temp directory), a `postgres://` URL (the database must
//! exist; the schema is created), or a `clickhouse://` URL (the analytics
//! store, beside a SQLite primary in the temp directory: its hourly rollup is
//! brought up to date and timed before the report runs). A third argument,
//! Unix ms, is the report's "now" (default: the clock), for a ledger seeded
//! in the past.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use tollgate::analytics::SpendQuery;
use tollgate::attribution::Attribution;
use tollgate::ledger::{LedgerRow, UsageSource};
use tollgate::store::Stores;
use tollgate_units::{Money, Usage};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rows: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let path = args
        .get(2)
        .cloned()
        .unwrap_or_else(|| std::env::temp_dir().join("tollgate-report-bench.db").display().to_string());
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let store = if path.starts_with("clickhouse://") {
        let primary = std::env::temp_dir().join("tollgate-report-bench-primary.db");
        let mut storage = tollgate::config::Config::from_toml("", "bench.toml", &std::collections::HashMap::new())
            .expect("defaults")
            .storage;
        storage.url = format!("sqlite://{}", primary.display());
        storage.analytics_url = Some(path.clone());
        rt.block_on(Stores::open_config(&storage)).expect("open db")
    } else {
        rt.block_on(Stores::open(&path)).expect("open db")
    };
    let now = args.get(3).and_then(|s| s.parse().ok()).unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
    let existing = rt.block_on(store.reports.spend(SpendQuery::default())).expect("count").total_requests as usize;
    if existing < rows {
        let teams = ["growth", "search", "support", "platform", "data", "infra", "sales", "legal"];
        let models = ["gpt-4o-mini", "gpt-4o", "claude-sonnet-4-5", "claude-haiku-4-5", "gemini-2.5-flash", "o4-mini"];
        let features =
            ["summarize", "rerank", "triage", "draft", "review", "eval", "chat", "extract", "classify", "translate"];
        let t0 = Instant::now();
        let span_ms: i64 = 30 * 86_400_000;
        let mut batch = Vec::with_capacity(10_000);
        for i in existing..rows {
            let mut a = Attribution::default();
            a.tags.insert("team".into(), teams[i % teams.len()].into());
            a.tags.insert("feature".into(), features[(i / 7) % features.len()].into());
            a.tags.insert("env".into(), ["prod", "staging", "dev"][i % 3].into());
            a.tags.insert("user".into(), format!("user-{}", i % 5000));
            a.trace_id = Some(format!("trace-{}", i / 6));
            batch.push(LedgerRow {
                request_id: format!("{:016x}-{i:012}", now - (i as i64 * span_ms / rows as i64)),
                time_ms: now - 1000 - (i as i64 * (span_ms - 60_000) / rows as i64),
                key_id: Some(format!("key_{}", i % 40)),
                endpoint: tollgate::record::Endpoint::ChatCompletions,
                requested_model: Some(models[i % models.len()].into()),
                model: Some(models[i % models.len()].into()),
                provider: Some("openai".into()),
                status: 200,
                error_code: None,
                usage: Usage {
                    input: 800 + (i % 400) as u64,
                    cache_read: (i % 5) as u64 * 100,
                    output: 200,
                    ..Usage::default()
                },
                usage_source: UsageSource::Provider,
                cost: Some(Money::from_nanos(150_000 + (i % 1000) as i64)),
                cache_savings: Money::ZERO,
                response_cache_savings: Money::ZERO,
                tool_cost: Money::ZERO,
                provider_cost: None,
                streamed: i % 2 == 0,
                client_disconnected: false,
                cache: tollgate::record::CacheOutcome::Off,
                latency_ms: 300,
                ttft_ms: Some(80),
                attempts: 1,
                prefix_hash: None,
                attempt_log: Vec::new(),
                attribution: a,
            });
            if batch.len() == 10_000 {
                let refs: Vec<&LedgerRow> = batch.iter().collect();
                store.ledger.append(&refs).expect("append");
                batch.clear();
            }
        }
        let refs: Vec<&LedgerRow> = batch.iter().collect();
        store.ledger.append(&refs).expect("append");
        let took = t0.elapsed();
        println!(
            "loader: {} rows in {:.1?}: {:.0} rows/s",
            rows - existing,
            took,
            (rows - existing) as f64 / took.as_secs_f64()
        );
    }
    if let Some(analytics) = &store.analytics {
        let t = Instant::now();
        let hours = rt.block_on(analytics.roll_up(chrono::Utc::now().timestamp_millis(), usize::MAX)).expect("roll up");
        println!("hourly rollup: {hours} hours computed in {:.1?}", t.elapsed());
    }
    let q = SpendQuery {
        group_by: vec!["team".into(), "model".into()],
        from_ms: Some(now - 30 * 86_400_000),
        ..SpendQuery::default()
    };
    let mut times = Vec::new();
    for run in 0..5 {
        let t = Instant::now();
        let r = rt.block_on(store.reports.spend(q.clone())).expect("report");
        let d = t.elapsed();
        eprintln!("run {run}: {:.1?} ({} groups, {} requests, ${})", d, r.rows.len(), r.total_requests, r.total_cost);
        times.push(d);
    }
    times.sort();
    println!("report --by team,model --since 30d over {rows} rows: median {:.1?}", times[2]);
}
