//! Hot reload, on a real `tollgate serve` process: under continuous traffic,
//! `tollgate reload` (and `SIGHUP`) picks up a new route and a changed price
//! with no request failing; a bad file changes nothing, and the command says
//! why and exits non-zero.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};

fn config(mock: std::net::SocketAddr, db: &str, extra: &str) -> String {
    format!(
        r#"
[storage]
url = "{db}"

[[providers]]
name = "openai"
kind = "openai"
base_url = "http://{mock}/v1"

[[models]]
name = "alpha"
targets = [{{ provider = "openai", model = "gpt-4o-mini" }}]
{extra}"#
    )
}

const BETA_AND_PRICE: &str = r#"
[[models]]
name = "beta"
targets = [{ provider = "openai", model = "gpt-4o-mini" }]

[[prices]]
provider = "openai"
model = "gpt-4o-mini"
source = "reload test"
input = "1"
output = "2"
"#;

fn reload(cfg: &std::path::Path, base: &str) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["--config", cfg.to_str().unwrap(), "--url", base, "reload"])
        .env_remove("TOLLGATE_ADMIN_TOKEN")
        .output()
        .unwrap()
}

async fn chat(http: &reqwest::Client, base: &str, key: &str, model: &str) -> reqwest::Response {
    http.post(format!("{base}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "hello"}]}))
        .send()
        .await
        .unwrap()
}

async fn row(http: &reqwest::Client, base: &str, id: &str) -> Value {
    for _ in 0..200 {
        let v: Value =
            http.get(format!("{base}/api/v1/requests?limit=1000")).send().await.unwrap().json().await.unwrap();
        if let Some(r) = v["rows"].as_array().unwrap().iter().find(|r| r["request_id"] == id) {
            return r.clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("no row {id}");
}

fn nanos(usd: &str) -> i64 {
    let (whole, frac) = usd.split_once('.').unwrap_or((usd, "0"));
    whole.parse::<i64>().unwrap() * 1_000_000_000 + format!("{frac:0<9}")[..9].parse::<i64>().unwrap()
}

#[tokio::test]
async fn a_reload_under_load_adds_a_route_and_a_price_without_failing_a_request() {
    let mock = common::start_mock().await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("t.db").display());
    let cfg = dir.path().join("tollgate.toml");
    std::fs::write(&cfg, config(mock, &db, "")).unwrap();
    let (mut child, base) = common::spawn_serve(&cfg, &[]);
    let http = reqwest::Client::new();
    let key: Value = http
        .post(format!("{base}/admin/v1/keys"))
        .json(&json!({"name": "reload"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = key["key"].as_str().unwrap().to_string();

    // Continuous traffic on the existing route, four at a time, until told to stop (bounded).
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (stop, sent, failed, http, base, key) =
            (stop.clone(), sent.clone(), failed.clone(), http.clone(), base.clone(), key.clone());
        load.push(tokio::spawn(async move {
            for _ in 0..2_000 {
                if stop.load(Ordering::Acquire) {
                    break;
                }
                let r = chat(&http, &base, &key, "alpha").await;
                sent.fetch_add(1, Ordering::Relaxed);
                if r.status() != 200 {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                let _ = r.bytes().await;
            }
        }));
    }
    while sent.load(Ordering::Relaxed) < 50 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }

    // Not there yet.
    assert_eq!(chat(&http, &base, &key, "beta").await.status(), 404);
    // A new route and a changed price.
    std::fs::write(&cfg, config(mock, &db, BETA_AND_PRICE)).unwrap();
    let out = reload(&cfg, &base);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("reloaded"), "{}", String::from_utf8_lossy(&out.stdout));
    let r = chat(&http, &base, &key, "beta").await;
    assert_eq!(r.status(), 200, "the new route is picked up");
    let id = r.headers()["x-tollgate-request-id"].to_str().unwrap().to_string();
    let beta = row(&http, &base, &id).await;
    // The reloaded price: $1 per million input tokens (1,000 nanos a token;
    // no cache price, so cached input at the same rate), $2 out (2,000 nanos).
    let u = &beta["usage"];
    let expected = (u["input"].as_i64().unwrap() + u["cache_read"].as_i64().unwrap()) * 1_000
        + (u["output"].as_i64().unwrap() + u["reasoning"].as_i64().unwrap()) * 2_000;
    assert!(expected > 0);
    assert_eq!(nanos(beta["cost_usd"].as_str().unwrap()), expected, "{beta}");

    // A bad file: the reload says why (file and line) and exits non-zero; nothing changes.
    std::fs::write(&cfg, config(mock, &db, &format!("{BETA_AND_PRICE}\n[[models]]\nname = \"gamma\"\ntargets = 7\n")))
        .unwrap();
    let out = reload(&cfg, &base);
    assert!(!out.status.success(), "a bad file must fail the reload");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tollgate.toml") && err.contains("line"), "{err}");
    assert_eq!(chat(&http, &base, &key, "beta").await.status(), 200, "the running configuration is untouched");
    assert_eq!(chat(&http, &base, &key, "gamma").await.status(), 404);

    // SIGHUP does the same as `tollgate reload`.
    std::fs::write(
        &cfg,
        config(mock, &db, &format!("{BETA_AND_PRICE}\n[[models]]\nname = \"delta\"\ntargets = [{{ provider = \"openai\", model = \"gpt-4o-mini\" }}]\n")),
    )
    .unwrap();
    let kill = std::process::Command::new("kill").args(["-HUP", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let mut picked = false;
    for _ in 0..100 {
        if chat(&http, &base, &key, "delta").await.status() == 200 {
            picked = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(picked, "SIGHUP reloads the file");

    // Each reload that changed something is in the audit log once (the refused one is not).
    // (The SIGHUP's entry is written just after its swap: wait for it, bounded.)
    let mut audit = Value::Null;
    for _ in 0..100 {
        audit =
            http.get(format!("{base}/api/v1/audit?action=config.reload")).send().await.unwrap().json().await.unwrap();
        if audit["entries"].as_array().is_some_and(|e| e.len() >= 2) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let entries = audit["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{audit}");
    let actors: Vec<&str> = entries.iter().map(|e| e["actor"].as_str().unwrap()).collect();
    assert!(actors.contains(&"signal:SIGHUP") && actors.contains(&"loopback"), "{audit}");
    let by_cli = entries.iter().find(|e| e["actor"] == "loopback").unwrap();
    assert_eq!(by_cli["before"]["routes"], json!(["alpha"]), "{by_cli}");
    assert_eq!(by_cli["after"]["routes"], json!(["alpha", "beta"]), "{by_cli}");

    stop.store(true, Ordering::Release);
    for l in load {
        l.await.unwrap();
    }
    let (sent, failed) = (sent.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert!(sent >= 50, "{sent}");
    assert_eq!(failed, 0, "no request failed during the reloads ({sent} sent)");
    // A gateway that has reloaded still stops cleanly on SIGTERM (nothing holds its state).
    let term = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(term.success());
    assert!(child.wait().unwrap().success(), "stopped and drained");
}
