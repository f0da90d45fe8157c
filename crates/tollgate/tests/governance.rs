//! Governance end to end: budgets that never overspend under concurrency,
//! rate limits, each budget action, and alerts delivered to a webhook.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/services.rs"]
mod services;

use common::{chat, Harness};
use serde_json::{json, Value};
use tollgate_units::Money;

async fn budgets(h: &Harness) -> Vec<Value> {
    let v: Value = h.http.get(format!("{}/api/v1/budgets", h.base)).send().await.unwrap().json().await.unwrap();
    v["budgets"].as_array().unwrap().clone()
}

fn usd(v: &Value) -> Money {
    v.as_str().unwrap().parse().unwrap()
}

/// 500 concurrent requests, streaming and not, of mixed sizes, against a
/// budget that covers only some of them.
async fn fire_500(h: &Harness) -> (usize, usize, usize) {
    let mut tasks = Vec::new();
    for i in 0..500 {
        let stream = i % 2 == 0;
        let mut body = chat("gpt-4o-mini", &"spend ".repeat(1 + (i % 40)), stream);
        body["max_tokens"] = json!(8 + (i % 5) * 8);
        let b = h.post("/v1/chat/completions").json(&body);
        tasks.push(tokio::spawn(async move {
            let r = b.send().await.unwrap();
            let status = r.status().as_u16();
            let _ = r.bytes().await.unwrap();
            status
        }));
    }
    let (mut ok, mut payment, mut limited) = (0, 0, 0);
    for t in tasks {
        match t.await.unwrap() {
            200 => ok += 1,
            402 => payment += 1,
            429 => limited += 1,
            s => panic!("unexpected status {s}"),
        }
    }
    (ok, payment, limited)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_never_overspend_a_budget() {
    // A rolling day, not a calendar one: a run that straddles midnight UTC
    // would otherwise see the budget's window start again half-way (calendar
    // windows are tested on an explicit clock in `budget::tests`).
    let h = Harness::start_with(
        "[[budgets]]\nid = \"growth-day\"\nscope = { team = \"growth\" }\nlimit_usd = \"0.002\"\nperiod = \"rolling:24h\"\naction = \"block\"\n",
        |c| c,
    )
    .await;
    let (ok, refused, _) = fire_500(&h).await;
    let rows = h.rows();
    assert_eq!(rows.len(), 500, "one row per request, refused ones included");
    let spent: i64 = rows.iter().map(|r| r.cost.unwrap().nanos()).sum();
    let b = budgets(&h).await;
    let limit = Money::from_usd(0).saturating_add("0.002".parse().unwrap());
    eprintln!("budget test: {ok} served, {refused} refused with 402, spent ${} of ${limit}", Money::from_nanos(spent));
    assert!(ok > 0 && refused > 0, "the budget covers only some: {ok} served, {refused} refused");
    assert!(spent <= limit.nanos(), "overspent: {} > {}", spent, limit.nanos());
    assert_eq!(usd(&b[0]["spent_usd"]).nanos(), spent, "the governor's spend equals the ledger's");
    assert_eq!(usd(&b[0]["reserved_usd"]), Money::ZERO, "no reservation left outstanding");
    assert!(rows
        .iter()
        .filter(|r| r.status == 402)
        .all(|r| r.error_code.as_deref() == Some("budget_exceeded") && r.cost == Some(Money::ZERO)));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dollar_per_minute_limit_holds_under_concurrency() {
    let h = Harness::start_with("[[rate_limits]]\nscope = { team = \"growth\" }\nusd_per_minute = \"0.002\"\n", |c| c)
        .await;
    let (ok, _, limited) = fire_500(&h).await;
    let rows = h.rows();
    let spent: i64 = rows.iter().map(|r| r.cost.unwrap().nanos()).sum();
    eprintln!("rate test: {ok} served, {limited} limited with 429, spent ${}", Money::from_nanos(spent));
    assert!(ok > 0 && limited > 0);
    // Everything ran within a few seconds: at most one minute's allowance plus its refill.
    let elapsed_ms = rows.iter().map(|r| r.time_ms).max().unwrap() - rows.iter().map(|r| r.time_ms).min().unwrap();
    let allowance = 2_000_000 + 2_000_000 * (elapsed_ms + 1000) / 60_000;
    assert!(spent <= allowance, "spent {spent} > allowance {allowance}");
    let r = h.post("/v1/chat/completions").json(&chat("gpt-4o-mini", "one more", false)).send().await.unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "rate_limited");
    h.stop().await;
}

#[tokio::test]
async fn downgrade_clamp_and_alert_actions() {
    let (hook, got) = services::webhook().await;
    let extra = format!(
        "[[budgets]]\nid = \"down\"\nscope = {{ team = \"growth\", feature = \"down\" }}\nlimit_usd = \"0.001\"\nperiod = \"day\"\naction = \"downgrade:gpt-4o-mini\"\n\n\
         [[budgets]]\nid = \"clamp\"\nscope = {{ team = \"growth\", feature = \"clamp\" }}\nlimit_usd = \"0.0002\"\nperiod = \"month\"\naction = \"clamp\"\n\n\
         [[budgets]]\nid = \"watch\"\nscope = {{ team = \"growth\", feature = \"watch\" }}\nlimit_usd = \"0.00003\"\nperiod = \"week\"\naction = \"alert\"\nalert_at = [0.5, 0.8, 1.0]\n\n\
         [[alerts]]\nurl = \"{hook}\"\n"
    );
    let h = Harness::start_with(&extra, |c| c).await;

    // Downgrade: gpt-4o with 1,000 max tokens cannot fit $0.001 ($10/M output); gpt-4o-mini can.
    let mut body = chat("gpt-4o", "downgrade me", false);
    body["max_tokens"] = json!(1000);
    let r = h.post("/v1/chat/completions").header("x-tollgate-tags", "feature=down").json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-tollgate-downgraded-to"], "gpt-4o-mini");
    let id = r.headers()["x-tollgate-request-id"].to_str().unwrap().to_string();
    let v: Value = r.json().await.unwrap();
    assert!(v["model"].as_str().unwrap().starts_with("gpt-4o-mini"));
    let row = h.row(&id);
    assert_eq!(row.requested_model.as_deref(), Some("gpt-4o"));
    assert!(row.model.as_deref().unwrap().starts_with("gpt-4o-mini"));

    // Clamp: max_tokens lowered to what $0.0002 covers at gpt-4o-mini's $0.60/M output.
    let mut body = chat("gpt-4o-mini", "clamp me", false);
    body["max_tokens"] = json!(100_000);
    let r = h.post("/v1/chat/completions").header("x-tollgate-tags", "feature=clamp").json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let clamped: u64 = r.headers()["x-tollgate-clamped-max-tokens"].to_str().unwrap().parse().unwrap();
    assert!(clamped > 16 && clamped < 100_000, "{clamped}");
    let remaining: Money = r.headers()["x-tollgate-budget-remaining-usd"].to_str().unwrap().parse().unwrap();
    assert!(remaining >= Money::ZERO);

    // Alert-only: never refuses; 50/80/100 % each fire once and reach the webhook.
    for _ in 0..6 {
        let r = h
            .post("/v1/chat/completions")
            .header("x-tollgate-tags", "feature=watch")
            .json(&chat("gpt-4o-mini", "watch", false))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let _ = r.bytes().await.unwrap();
    }
    for _ in 0..100 {
        if got.lock().unwrap().len() >= 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let alerts = got.lock().unwrap().clone();
    // Webhook posts are concurrent: they may arrive in any order.
    let mut thresholds: Vec<&str> = alerts.iter().map(|a| a["threshold"].as_str().unwrap()).collect();
    thresholds.sort_unstable();
    assert_eq!(thresholds, vec!["0.500", "0.800", "1.000"], "{alerts:?}");
    assert!(alerts.iter().all(|a| a["budget_id"] == "watch" && a["type"] == "budget_alert"));
    let b: Vec<Value> = budgets(&h).await;
    let watch = b.iter().find(|x| x["id"] == "watch").unwrap();
    assert!(usd(&watch["spent_usd"]) > usd(&watch["limit_usd"]), "alert budgets let spend through");
    h.stop().await;
}

#[tokio::test]
async fn budgets_set_through_the_admin_api_apply_at_once() {
    let h = Harness::start().await;
    let r = h
        .http
        .post(format!("{}/admin/v1/budgets", h.base))
        .json(&json!({"scope": format!("key={}", h.key_id), "limit_usd": "0.000001", "period": "rolling:1h"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let r = h.post("/v1/chat/completions").json(&chat("gpt-4o-mini", "too expensive", false)).send().await.unwrap();
    assert_eq!(r.status(), 402);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "budget_exceeded");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!("key={}", h.key_id)) && msg.contains("remaining") && msg.contains("resets at"),
        "{msg}"
    );
    // Anthropic-shaped on /v1/messages.
    let r = h
        .post("/v1/messages")
        .json(&json!({"model": "claude-haiku-4-5", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 402);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["code"], "budget_exceeded");
    let bad = h
        .http
        .post(format!("{}/admin/v1/budgets", h.base))
        .json(&json!({"scope": "team", "limit_usd": "1", "period": "day"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    // Budget utilisation is a Prometheus gauge.
    let m = h.http.get(format!("{}/metrics", h.base)).send().await.unwrap().text().await.unwrap();
    let id = format!("key={}/rolling:1h", h.key_id);
    assert!(m.contains(&format!("tollgate_budget_limit_usd{{budget=\"{id}\"}}")), "{m}");
    h.stop().await;
}
