//! Durability: SIGKILL the gateway in the middle of concurrent streaming and
//! non-streaming load against a slow upstream, restart it, and find a ledger
//! row for every request whose client received the last byte and for every
//! call the upstream received (requests cut at the provider come back as
//! `interrupted` rows, counted in spend and budgets) — none missing, none
//! twice. Then SIGTERM: requests in flight finish and everything is drained.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tollgate::store::sqlite::SqliteStore;
use tollgate::store::RequestQuery;

const KILL_CYCLES: usize = 20;

struct Proc {
    child: Child,
    base: String,
}

fn start_gateway(config: &std::path::Path, key_secret: &str) -> Proc {
    let (child, base) = common::spawn_serve(config, &[("TOLLGATE_KEY_SECRET", key_secret)]);
    Proc { child, base }
}

fn all_rows(db: &str) -> Vec<tollgate::ledger::LedgerRow> {
    let store = SqliteStore::open(db).unwrap();
    let mut rows = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.requests(&RequestQuery { filters: vec![], limit: 1000, cursor: cursor.clone() }).unwrap();
        rows.extend(page.rows);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return rows,
        }
    }
}

/// Chat calls the mock upstream has received so far.
async fn upstream_calls(mock: std::net::SocketAddr) -> u64 {
    let v: serde_json::Value = reqwest::get(format!("http://{mock}/mock/stats")).await.unwrap().json().await.unwrap();
    v["paths"]["/v1/chat/completions"].as_u64().unwrap_or(0)
}

/// One client loop: alternate streaming and non-streaming; record the ids
/// of requests whose last byte arrived.
async fn client(base: String, key: String, acked: Arc<Mutex<Vec<String>>>, n: usize) {
    let http = reqwest::Client::new();
    for i in 0.. {
        let stream = (i + n).is_multiple_of(2);
        // A slow provider: every request spends 60–200 ms upstream, so each
        // kill finds several at the provider.
        let slow = if stream { "chunks=6 chunk_delay_ms=10" } else { "latency_ms=60" };
        let body = serde_json::json!({
            "model": "gpt-4o-mini",
            "stream": stream,
            "max_tokens": 64,
            "messages": [{"role": "user", "content": format!("[mock {slow}] crash test {n} {i}")}],
        });
        let Ok(r) = http.post(format!("{base}/v1/chat/completions")).bearer_auth(&key).json(&body).send().await else {
            return;
        };
        let Some(id) = r.headers().get("x-tollgate-request-id").and_then(|v| v.to_str().ok()).map(String::from) else {
            return;
        };
        let ok = r.status().is_success();
        let Ok(bytes) = r.bytes().await else {
            return;
        };
        let complete = if stream {
            bytes.ends_with(b"data: [DONE]\n\n")
        } else {
            ok && serde_json::from_slice::<serde_json::Value>(&bytes).is_ok()
        };
        if complete {
            acked.lock().unwrap().push(id);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_no_row_and_accounts_every_upstream_call() {
    let mock = common::start_mock().await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("crash.db").display());
    let config = dir.path().join("tollgate.toml");
    let budget = "[[budgets]]\nid = \"crash\"\nscope = { team = \"crash\" }\nlimit_usd = \"1000\"\nperiod = \"month\"\naction = \"block\"\n";
    std::fs::write(&config, common::config_text(mock, &format!("[storage]\nurl = \"{db}\"\n\n{budget}"))).unwrap();
    let key_secret = "crash-test-secret";
    let key = {
        let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args([
                "--config",
                config.to_str().unwrap(),
                "keys",
                "create",
                "--name",
                "crash",
                "--team",
                "crash",
                "--json",
            ])
            .env("TOLLGATE_KEY_SECRET", key_secret)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["key"].as_str().unwrap().to_string()
    };

    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut interrupted_seen = Vec::new();
    for cycle in 0..=KILL_CYCLES {
        let mut gw = start_gateway(&config, key_secret);
        // Listening means the spool was replayed and every intent left by the
        // last kill has its row: the ledger now accounts for every upstream call.
        let rows = all_rows(&db);
        let calls = upstream_calls(mock).await;
        let interrupted = rows.iter().filter(|r| r.error_code.as_deref() == Some("interrupted")).count();
        let completed = rows.len() - interrupted;
        let unique: HashSet<&str> = rows.iter().map(|r| r.request_id.as_str()).collect();
        assert_eq!(unique.len(), rows.len(), "cycle {cycle}: a request stored twice");
        // Every upstream call has a row. An intent is written just before its
        // request goes out, so a kill between the two leaves an interrupted
        // row for a call that never happened: rows may exceed calls by those
        // only, and no completed row exists without its call.
        assert!(
            rows.len() as u64 >= calls && completed as u64 <= calls,
            "cycle {cycle}: {calls} upstream calls, {completed} completed + {interrupted} interrupted rows"
        );
        interrupted_seen.push((calls, completed, interrupted));
        if cycle == KILL_CYCLES {
            Command::new("kill").args(["-TERM", &gw.child.id().to_string()]).status().unwrap();
            assert!(gw.child.wait().unwrap().success());
            break;
        }
        let clients: Vec<_> =
            (0..8).map(|n| tokio::spawn(client(gw.base.clone(), key.clone(), acked.clone(), n))).collect();
        // Kill at a different moment each cycle.
        tokio::time::sleep(Duration::from_millis(150 + (cycle as u64 * 37) % 300)).await;
        gw.child.kill().unwrap(); // SIGKILL
        gw.child.wait().unwrap();
        for c in clients {
            let _ = c.await;
        }
        // Requests the dead gateway had already written reach the mock's counter.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let acked = acked.lock().unwrap().clone();
    let rows = all_rows(&db);
    let ids: HashSet<&str> = rows.iter().map(|r| r.request_id.as_str()).collect();
    let missing: Vec<&String> = acked.iter().filter(|id| !ids.contains(id.as_str())).collect();
    let (calls, completed, interrupted) = *interrupted_seen.last().unwrap();
    let never_sent = (completed + interrupted) as u64 - calls;
    eprintln!(
        "crash test: {KILL_CYCLES} SIGKILL cycles, {} acknowledged requests, {calls} upstream calls, \
         {completed} completed + {interrupted} interrupted rows ({never_sent} intents killed before the send), \
         {} acknowledged without a row; per restart (calls, completed, interrupted): {interrupted_seen:?}",
        acked.len(),
        missing.len()
    );
    assert!(acked.len() > KILL_CYCLES * 10, "the load was real: {} acknowledged", acked.len());
    assert!(missing.is_empty(), "acknowledged requests without a row: {missing:?}");
    assert!(interrupted >= KILL_CYCLES / 2, "kills found requests at the provider: {interrupted} interrupted rows");
    for r in rows.iter().filter(|r| r.error_code.as_deref() == Some("interrupted")) {
        assert_eq!((r.status, r.usage_source), (500, tollgate::ledger::UsageSource::Estimated));
        assert!(r.cost.is_some_and(|c| c > tollgate_units::Money::ZERO), "costed at the upper bound: {r:?}");
    }

    // The interrupted rows count in spend reports and in the budget: both
    // equal the ledger's own sum (every row is this month's, unless the
    // test straddles a month boundary — then only the budget is skipped).
    let total: i64 = rows.iter().filter_map(|r| r.cost).map(|c| c.nanos()).sum();
    let gw = start_gateway(&config, key_secret);
    let http = reqwest::Client::new();
    let spend: serde_json::Value = http
        .get(format!("{}/api/v1/spend?from=2000-01-01T00:00:00Z", gw.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(spend["total_cost_usd"], tollgate_units::Money::from_nanos(total).to_string(), "{spend}");
    let budgets: serde_json::Value =
        http.get(format!("{}/api/v1/budgets", gw.base)).send().await.unwrap().json().await.unwrap();
    let b = &budgets["budgets"][0];
    let first = rows.iter().map(|r| r.time_ms).min().unwrap();
    let start = chrono::DateTime::parse_from_rfc3339(b["period_start"].as_str().unwrap()).unwrap().timestamp_millis();
    if first >= start {
        assert_eq!(b["spent_usd"], tollgate_units::Money::from_nanos(total).to_string(), "{b}");
    }
    stop(gw);
}

fn stop(mut gw: Proc) {
    Command::new("kill").args(["-TERM", &gw.child.id().to_string()]).status().unwrap();
    assert!(gw.child.wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_requests_in_flight_and_drains() {
    let mock = common::start_mock().await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("term.db").display());
    let config = dir.path().join("tollgate.toml");
    std::fs::write(&config, common::config_text(mock, &format!("[storage]\nurl = \"{db}\"\n"))).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["--config", config.to_str().unwrap(), "keys", "create", "--name", "t", "--json"])
        .env("TOLLGATE_KEY_SECRET", "s")
        .output()
        .unwrap();
    let key = serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["key"].as_str().unwrap().to_string();
    let mut gw = start_gateway(&config, "s");
    let http = reqwest::Client::new();
    let mut streams = Vec::new();
    for i in 0..4 {
        let body = serde_json::json!({
            "model": "gpt-4o-mini", "stream": true,
            "messages": [{"role": "user", "content": format!("[mock chunks=10 chunk_delay_ms=60] slow {i}")}],
        });
        let r =
            http.post(format!("{}/v1/chat/completions", gw.base)).bearer_auth(&key).json(&body).send().await.unwrap();
        streams.push(tokio::spawn(async move { r.bytes().await.unwrap() }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    Command::new("kill").args(["-TERM", &gw.child.id().to_string()]).status().unwrap();
    for s in streams {
        let body = s.await.unwrap();
        assert!(body.ends_with(b"data: [DONE]\n\n"), "a stream in flight completes during shutdown");
    }
    assert!(gw.child.wait().unwrap().success());
    assert_eq!(all_rows(&db).len(), 4, "every row drained before exit");
    let spool = dir.path().join("term.db.spool");
    let left: Vec<_> = std::fs::read_dir(&spool).unwrap().collect();
    assert!(left.is_empty(), "the spool is empty after a graceful stop");
}
