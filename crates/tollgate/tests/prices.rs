//! Price updates: `tollgate prices update` (on the database, and through a
//! gateway's admin API with --url) shows what changes, applies it to the
//! running gateway without a restart, prices the next request at the new
//! price, and leaves earlier rows at theirs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{chat, Harness};
use serde_json::Value;
use tokio::process::Command;

/// gpt-4o-mini at a lower input and cached-input price, and a model the
/// built-in catalog does not know.
const NEWER: &str = r#"
format = 1

[[model]]
provider = "openai"
model = "gpt-4o-mini"
source = "https://example.test/newer-prices"
input = "0.10"
cache_read = "0.05"
output = "0.60"

[[model]]
provider = "openai"
model = "gpt-tollgate-test"
source = "https://example.test/newer-prices"
input = "1"
output = "2"
"#;

/// Runs the CLI without blocking the runtime the gateway under test runs on.
async fn tollgate(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate")).args(args).output().await.unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn request(h: &Harness, model: &str) -> tollgate::ledger::LedgerRow {
    let r = h.post("/v1/chat/completions").json(&chat(model, "price me", false)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let id = r.headers()["x-tollgate-request-id"].to_str().unwrap().to_string();
    let _ = r.bytes().await.unwrap();
    h.wait_rows(1).await;
    let started = Instant::now();
    loop {
        if let Some(row) = h.rows().into_iter().find(|r| r.request_id == id) {
            return row;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no row for {id}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The row's cost at the given rates (nano-dollars per token), worked out
/// from its token counts: uncached input, cache reads, output.
fn at_rates(row: &tollgate::ledger::LedgerRow, input: i64, cache_read: i64, output: i64) -> i64 {
    row.usage.input as i64 * input + row.usage.cache_read as i64 * cache_read + row.usage.output as i64 * output
}

#[tokio::test]
async fn a_price_update_is_previewed_applied_without_restart_and_keeps_earlier_rows() {
    let h = Harness::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("newer.toml");
    std::fs::write(&file, NEWER).unwrap();
    let file = file.to_str().unwrap();

    // Before: gpt-4o-mini at $0.15 in, $0.075 cached, $0.60 out per million
    // tokens = 150, 75 and 600 nanos a token.
    let before = request(&h, "gpt-4o-mini").await;
    assert!(before.usage.input > 0 && before.usage.output > 0, "{:?}", before.usage);
    assert_eq!(before.cost.unwrap().nanos(), at_rates(&before, 150, 75, 600));
    // gpt-tollgate-test has no price yet.
    let unknown = request(&h, "gpt-tollgate-test").await;
    assert_eq!(unknown.cost, None, "unpriced, never $0");

    // `prices check` lists it, with what it used and no price yet.
    h.wait_rows(2).await;
    let (ok, out, err) = tollgate(&["--db", &h.db_url(), "prices", "check"]).await;
    assert!(ok, "{err}");
    let line = out.lines().find(|l| l.contains("gpt-tollgate-test")).unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("no price yet"), "{line}");
    assert!(line.contains(&unknown.usage.input_tokens().to_string()), "{line}");

    // A dry run through the gateway's admin API shows the diff and applies nothing.
    let (ok, out, err) = tollgate(&["--url", &h.base, "prices", "update", "--from", file, "--dry-run", "--json"]).await;
    assert!(ok, "{err}");
    let diff: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(diff["applied"], false);
    assert_eq!(diff["added"][0]["model"], "gpt-tollgate-test");
    assert_eq!(diff["added"][0]["input"], "1");
    assert_eq!(diff["changed"][0]["model"], "gpt-4o-mini");
    let rates: Vec<(String, String, String)> = diff["changed"][0]["rates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (r["what"].as_str().unwrap().into(), r["old"].as_str().unwrap().into(), r["new"].as_str().unwrap().into())
        })
        .collect();
    assert!(rates.contains(&("input".into(), "0.15".into(), "0.1".into())), "{rates:?}");
    assert!(rates.contains(&("cache_read".into(), "0.075".into(), "0.05".into())), "{rates:?}");
    // The batch tier (half price) is kept: its input follows, 0.075 → 0.05.
    assert!(rates.contains(&("batch.input".into(), "0.075".into(), "0.05".into())), "{rates:?}");
    assert!(!rates.iter().any(|(w, _, _)| w == "output"), "output is unchanged: {rates:?}");
    let same = request(&h, "gpt-4o-mini").await;
    assert_eq!(same.cost.unwrap().nanos(), at_rates(&same, 150, 75, 600), "a dry run changes nothing");

    // Applied on the database (as an operator would, beside the running gateway):
    // the gateway takes it within seconds, without a restart.
    let (ok, out, err) = tollgate(&["--db", &h.db_url(), "prices", "update", "--from", file]).await;
    assert!(ok, "{err}");
    assert!(out.contains("1 added, 1 changed") && out.contains("applied as price update #1"), "{out}");
    let started = Instant::now();
    loop {
        let v: Value = h.http.get(format!("{}/admin/v1/prices", h.base)).send().await.unwrap().json().await.unwrap();
        if v["in_force"] == 1 {
            assert_eq!(v["updates"][0]["applied_by"], "cli");
            assert_eq!(v["updates"][0]["entries"], 2);
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the gateway never took the update: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The next requests: gpt-4o-mini at 100, 50 and 600 nanos a token; the new
    // model at $1 in and $2 out = 1,000 and 2,000 nanos a token.
    let after = request(&h, "gpt-4o-mini").await;
    assert_eq!(after.cost.unwrap().nanos(), at_rates(&after, 100, 50, 600));
    assert!(after.cost.unwrap().nanos() < at_rates(&after, 150, 75, 600));
    let known = request(&h, "gpt-tollgate-test").await;
    assert_eq!(known.cost.unwrap().nanos(), at_rates(&known, 1_000, 1_000, 2_000));

    // `prices check` now says what the earlier unpriced request would cost at
    // the new price: its tokens at $1 in and $2 out.
    let (ok, out, err) = tollgate(&["--db", &h.db_url(), "prices", "check"]).await;
    assert!(ok, "{err}");
    let line = out.lines().find(|l| l.contains("gpt-tollgate-test")).unwrap_or_else(|| panic!("{out}"));
    let would = tollgate_units::Money::from_nanos(at_rates(&unknown, 1_000, 1_000, 2_000));
    assert!(line.contains(&format!("would cost ${would}")), "{line}");

    // Earlier rows keep the cost they were charged.
    assert_eq!(h.row(&before.request_id).cost, before.cost);
    assert_eq!(h.row(&unknown.request_id).cost, None);

    // The same update again changes nothing and is not stored twice.
    let (ok, out, err) = tollgate(&["--url", &h.base, "prices", "update", "--from", file]).await;
    assert!(ok, "{err}");
    assert!(out.contains("nothing changes"), "{out}");
    let v: Value = h.http.get(format!("{}/admin/v1/prices", h.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["updates"].as_array().unwrap().len(), 1);

    // `prices show` on the database shows the new price and its history.
    let (ok, out, err) =
        tollgate(&["--db", &h.db_url(), "prices", "show", "gpt-4o-mini", "--provider", "openai", "--format", "json"])
            .await;
    assert!(ok, "{err}");
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["in_force"]["rates"]["input"], "0.1");
    assert_eq!(shown["history"].as_array().unwrap().len(), 2, "{shown}");
    assert_eq!(shown["history"][0]["rates"]["input"], "0.15");
    h.stop().await;
}

#[tokio::test]
async fn a_bad_price_update_is_refused_and_changes_nothing() {
    let h = Harness::start().await;
    let post = |body: Value| h.http.post(format!("{}/admin/v1/prices", h.base)).json(&body).send();
    for (catalog, why) in [
        ("format = 1\n[[model]]\nprovider = \"openai\"\nmodel = \"x\"\ninput = \"-1\"\noutput = \"1\"\n", "negative"),
        ("not toml at all [[[", "TOML"),
        ("format = 1\n", "no prices"),
    ] {
        let r = post(serde_json::json!({ "catalog": catalog })).await.unwrap();
        assert_eq!(r.status(), 400, "{why}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "invalid_request", "{why}: {v}");
    }
    let r = post(serde_json::json!({ "catalog": NEWER, "surprise": 1 })).await.unwrap();
    assert_eq!(r.status(), 400, "unknown fields are refused");
    let v: Value = h.http.get(format!("{}/admin/v1/prices", h.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["in_force"], 0);
    assert!(v["updates"].as_array().unwrap().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn prices_check_compares_the_costs_providers_report_with_ours() {
    let h = Harness::start().await;
    // Two requests whose provider reports a cost: one far from ours ($0.50
    // against a few thousandths of a cent), one equal to ours.
    let far = {
        let r = h
            .post("/v1/chat/completions")
            .json(&chat("gpt-4o-mini", "[mock reported_cost=0.5] price me", false))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let id = r.headers()["x-tollgate-request-id"].to_str().unwrap().to_string();
        let _ = r.bytes().await.unwrap();
        id
    };
    h.wait_rows(1).await;
    let ours = h.row(&far).cost.unwrap();
    assert_eq!(h.row(&far).provider_cost, Some(tollgate_units::Money::from_nanos(500_000_000)));
    // Another, the provider reporting the first one's price: its prompt is a
    // little longer, so ours is a little higher, but within the tolerance.
    let exact = format!("[mock reported_cost={ours}] price me");
    let r = h.post("/v1/chat/completions").json(&chat("gpt-4o-mini", &exact, false)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let second = r.headers()["x-tollgate-request-id"].to_str().unwrap().to_string();
    let _ = r.bytes().await.unwrap();
    h.wait_rows(2).await;
    let ours2 = h.row(&second).cost.unwrap();
    assert!(ours2.nanos() - ours.nanos() < 1_000, "{ours} {ours2}");

    let (ok, out, err) = tollgate(&["--db", &h.db_url(), "prices", "check"]).await;
    assert!(ok, "{err}");
    let line = out.lines().find(|l| l.contains("gpt-4o-mini") && l.contains('$')).unwrap_or_else(|| panic!("{out}"));
    let cols: Vec<&str> = line.split_whitespace().collect();
    // provider, model, reported, disagreeing, ours, theirs
    assert_eq!(&cols[..4], &["openai", cols[1], "2", "1"], "{line}");
    assert!(cols[1].starts_with("gpt-4o-mini"), "{line}");
    let theirs = tollgate_units::Money::from_nanos(500_000_000).saturating_add(ours);
    assert_eq!(cols[4], format!("${}", ours.saturating_add(ours2)), "{line}");
    assert_eq!(cols[5], format!("${theirs}"), "{line}");
    h.stop().await;
}
