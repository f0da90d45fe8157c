//! History at scale, one shot (not criterion: each figure is one long run):
//! loads N ledger rows into a fresh SQLite database through the ledger's own
//! batched append (the loader's path), then replays them with `whatif`
//! (model map + batch + exact cache) reading the store a page at a time.
//! Prints rows/s for the load and seconds for the replay.
//!
//! `cargo bench -p tollgate --bench whatif` (default 1,000,000 rows;
//! `WHATIF_ROWS=N` for another size). The target: the replay of
//! 1 M rows in under 5 s; the loader at 100 k rows/s or more.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::cast_precision_loss)]

use std::time::Instant;

use tollgate::ledger::LedgerRow;
use tollgate::record::Endpoint;
use tollgate::store::sqlite::SqliteStore;
use tollgate::whatif::{Replay, Scenario};
use tollgate_units::{Money, Usage};

fn main() {
    let n: usize = std::env::var("WHATIF_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("history.db").display());
    let store = SqliteStore::open(&url).expect("open");
    let start_ms = 1_764_547_200_000i64; // 2025-12-01T00:00:00Z
    let teams = ["growth", "search", "ops", "infra"];
    let features = ["chat", "rank", "summarize"];
    let models = [
        ("openai", "gpt-4o", 4_500_000i64),
        ("openai", "gpt-4o-mini", 270_000),
        ("anthropic", "claude-haiku-4-5", 2_000_000),
    ];
    let row = |i: usize| {
        let (provider, model, cost) = models[i % 3];
        let mut r = LedgerRow::new(&format!("r{i:09}"), start_ms + i as i64 * 2_000, "k1", Endpoint::ChatCompletions);
        r.provider = Some(provider.into());
        r.model = Some(model.into());
        r.requested_model = Some(model.into());
        r.status = 200;
        r.usage = Usage { input: 1_000, output: 200, ..Usage::default() };
        r.cost = Some(Money::from_nanos(cost));
        r.prefix_hash = Some(format!("p{}", i % 5_000));
        r.attribution.tags.insert("team".into(), teams[i % 4].into());
        r.attribution.tags.insert("feature".into(), features[i % 3].into());
        r
    };
    let t = Instant::now();
    let batch = 2_000;
    let mut i = 0;
    while i < n {
        let rows: Vec<LedgerRow> = (i..(i + batch).min(n)).map(row).collect();
        let refs: Vec<&LedgerRow> = rows.iter().collect();
        store.append(&refs).expect("append");
        i += batch;
    }
    let load = t.elapsed();
    println!(
        "load: {n} rows in {:.2} s = {:.0} rows/s (SQLite, batches of {batch})",
        load.as_secs_f64(),
        n as f64 / load.as_secs_f64()
    );

    // History is old: its WAL has long been checkpointed into the database.
    store.with_reader(|c| Ok(c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?)).expect("checkpoint");
    let store = std::sync::Arc::new(store);
    let stores = tollgate::store::Stores::sqlite(store);
    let pricing = tollgate::pricing::Pricing::builtin();
    let scenario = Scenario {
        changes: vec![
            Scenario::parse_map("gpt-4o=gpt-4o-mini").expect("map"),
            Scenario::parse_batch("team=growth").expect("batch"),
            Scenario::parse_cache(Some("1h")).expect("cache"),
        ],
    };
    let by: Vec<String> = ["team", "feature", "model"].map(String::from).to_vec();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    // Reports over the history (issue 19: under 1 s at 10 M rows): the
    // report `--by team,model --since 30d`, the dashboard overview's five
    // spend queries over 7 days, and the request log's first page and one
    // half-way down.
    let end = start_ms + n as i64 * 2_000;
    let spend = |group_by: &[&str], days: i64, bucket: Option<tollgate::query::Bucket>| tollgate::query::SpendQuery {
        group_by: group_by.iter().map(|d| d.to_string()).collect(),
        from_ms: Some(end - days * 86_400_000),
        to_ms: None,
        bucket,
        filters: vec![],
    };
    let t = Instant::now();
    let report = rt.block_on(stores.reports.spend(spend(&["team", "model"], 30, None))).expect("report");
    println!("report --by team,model --since 30d: {:.3} s ({} groups)", t.elapsed().as_secs_f64(), report.rows.len());
    let t = Instant::now();
    for q in [
        spend(&[], 7, None),
        spend(&["team"], 7, Some(tollgate::query::Bucket::Day)),
        spend(&["team"], 7, None),
        spend(&["feature"], 7, None),
        spend(&["model"], 7, None),
    ] {
        rt.block_on(stores.reports.spend(q)).expect("overview");
    }
    println!("dashboard overview (5 spend queries, 7 days): {:.3} s", t.elapsed().as_secs_f64());
    for (what, cursor) in [("first page", None), ("a page half-way down", Some(format!("r{:09}", n / 2)))] {
        let t = Instant::now();
        let page = rt
            .block_on(stores.requests.requests(tollgate::store::RequestQuery { filters: vec![], limit: 100, cursor }))
            .expect("requests");
        println!("request log, {what} (100 rows): {:.4} s ({} rows)", t.elapsed().as_secs_f64(), page.rows.len());
    }

    // The read alone (the store's pages, no replay), to tell the two apart.
    let t = Instant::now();
    let mut read = 0usize;
    let mut after: Option<(i64, String)> = None;
    loop {
        let end = start_ms + n as i64 * 2_000 + 1;
        let page = rt
            .block_on(stores.requests.rows_between(start_ms, end, after.clone(), tollgate::whatif::REPLAY_PAGE))
            .expect("page");
        read += page.len();
        match page.last() {
            Some(last) if page.len() == tollgate::whatif::REPLAY_PAGE => {
                after = Some((last.time_ms, last.request_id.clone()))
            }
            _ => break,
        }
    }
    println!("read: {read} rows in {:.2} s (the store's pages alone)", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let report = rt
        .block_on(tollgate::whatif::replay_window(
            stores.requests.as_ref(),
            Replay::new(&pricing, &scenario, &by),
            start_ms,
            start_ms + n as i64 * 2_000 + 1,
        ))
        .expect("replay");
    let took = t.elapsed();
    assert_eq!(report.rows_seen, n as u64);
    println!(
        "whatif: {n} rows replayed in {:.2} s ({:.0} rows/s); before ${} after ${}; target < 5 s for 1 M: {}",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64(),
        report.before,
        report.after,
        if n == 1_000_000 {
            if took.as_secs_f64() < 5.0 {
                "met"
            } else {
                "MISSED"
            }
        } else {
            "n/a (not 1 M rows)"
        }
    );
}
