//! Durability: SIGKILL the gateway in the middle of concurrent streaming and
//! non-streaming load, restart it, and find a ledger row for every request
//! whose client received the last byte — none missing, none twice. Then
//! SIGTERM: requests in flight finish and everything is drained.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
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
    let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["--config", config.to_str().unwrap(), "serve", "--listen", "127.0.0.1:0"])
        .env("TOLLGATE_LOG", "warn")
        .env("TOLLGATE_KEY_SECRET", key_secret)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let base = loop {
        let line = lines.next().expect("gateway exited before listening").unwrap();
        if let Some(addr) = line.strip_prefix("tollgate listening on ") {
            break addr.trim().to_string();
        }
    };
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.by_ref() {});
    Proc { child, base }
}

fn all_ids(db: &str) -> Vec<String> {
    let store = SqliteStore::open(db).unwrap();
    let mut ids = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.requests(&RequestQuery { filters: vec![], limit: 1000, cursor: cursor.clone() }).unwrap();
        ids.extend(page.rows.into_iter().map(|r| r.request_id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return ids,
        }
    }
}

/// One client loop: alternate streaming and non-streaming; record the ids
/// of requests whose last byte arrived.
async fn client(base: String, key: String, acked: Arc<Mutex<Vec<String>>>, n: usize) {
    let http = reqwest::Client::new();
    for i in 0.. {
        let stream = (i + n).is_multiple_of(2);
        let body = serde_json::json!({
            "model": "gpt-4o-mini",
            "stream": stream,
            "messages": [{"role": "user", "content": format!("[mock chunks=6 chunk_delay_ms=3] crash test {n} {i}")}],
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
async fn sigkill_under_load_loses_no_acknowledged_row() {
    let mock = common::start_mock().await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("crash.db").display());
    let config = dir.path().join("tollgate.toml");
    std::fs::write(&config, common::config_text(mock, &format!("[storage]\nurl = \"{db}\"\n"))).unwrap();
    let key_secret = "crash-test-secret";
    let key = {
        let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(["--config", config.to_str().unwrap(), "keys", "create", "--name", "crash", "--json"])
            .env("TOLLGATE_KEY_SECRET", key_secret)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["key"].as_str().unwrap().to_string()
    };

    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    for cycle in 0..KILL_CYCLES {
        let mut gw = start_gateway(&config, key_secret);
        let clients: Vec<_> =
            (0..8).map(|n| tokio::spawn(client(gw.base.clone(), key.clone(), acked.clone(), n))).collect();
        // Kill at a different moment each cycle.
        tokio::time::sleep(Duration::from_millis(150 + (cycle as u64 * 37) % 300)).await;
        gw.child.kill().unwrap(); // SIGKILL
        gw.child.wait().unwrap();
        for c in clients {
            let _ = c.await;
        }
    }
    // One more start replays whatever the last kill left in the spool.
    let mut gw = start_gateway(&config, key_secret);
    tokio::time::sleep(Duration::from_millis(300)).await;
    Command::new("kill").args(["-TERM", &gw.child.id().to_string()]).status().unwrap();
    assert!(gw.child.wait().unwrap().success());

    let acked = acked.lock().unwrap().clone();
    let ids = all_ids(&db);
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "no request is stored twice");
    let missing: Vec<&String> = acked.iter().filter(|id| !unique.contains(id)).collect();
    eprintln!(
        "crash test: {KILL_CYCLES} SIGKILL cycles, {} acknowledged requests, {} ledger rows, {} missing",
        acked.len(),
        ids.len(),
        missing.len()
    );
    assert!(acked.len() > KILL_CYCLES * 10, "the load was real: {} acknowledged", acked.len());
    assert!(missing.is_empty(), "acknowledged requests without a row: {missing:?}");
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
    assert_eq!(all_ids(&db).len(), 4, "every row drained before exit");
    let spool = dir.path().join("term.db.spool");
    let left: Vec<_> = std::fs::read_dir(&spool).unwrap().collect();
    assert!(left.is_empty(), "the spool is empty after a graceful stop");
}
