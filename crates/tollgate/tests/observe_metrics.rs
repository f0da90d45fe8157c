//! `GET /metrics` after real requests through the gateway: the exposition
//! parses, its counters agree with the ledger, and labels stay bounded.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns (and `common`) unwrap too

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{chat, Harness};
use tollgate_units::Money;

/// `series → value` for every sample line; panics on a malformed line.
fn parse(text: &str) -> BTreeMap<String, String> {
    let mut typed = BTreeSet::new();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut p = rest.split(' ');
            let name = p.next().unwrap();
            let kind = p.next().unwrap();
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(typed.insert(name.to_string()), "TYPE twice for {name}");
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
        assert!(value.parse::<f64>().is_ok(), "value of {line}");
        let name = series.split('{').next().unwrap();
        assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'), "{line}");
        let family = name.trim_end_matches("_bucket").trim_end_matches("_sum").trim_end_matches("_count");
        assert!(typed.contains(name) || typed.contains(family), "sample before its TYPE: {line}");
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
            }
        }
        assert!(out.insert(series.to_string(), value.to_string()).is_none(), "duplicate series {series}");
    }
    out
}

fn sum(m: &BTreeMap<String, String>, prefix: &str, needle: &str) -> f64 {
    m.iter().filter(|(k, _)| k.starts_with(prefix) && k.contains(needle)).map(|(_, v)| v.parse::<f64>().unwrap()).sum()
}

fn money_sum(m: &BTreeMap<String, String>, prefix: &str) -> Money {
    m.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(_, v)| v.parse::<Money>().unwrap()).sum()
}

#[tokio::test]
async fn metrics_agree_with_the_ledger_and_labels_are_bounded() {
    let h = Harness::start().await;
    for i in 0..2 {
        let r = h
            .post("/v1/chat/completions")
            .header("x-tollgate-tags", format!("feature=summarize,customer=c-{i}"))
            .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .json(&chat("gpt-4o-mini", "hello there", false))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let r = h.post("/v1/chat/completions").json(&chat("gpt-4o-mini", "stream me", true)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let _ = r.text().await.unwrap();
    let r = h.post("/v1/chat/completions").json(&chat("no-such-model-xyz", "hi", false)).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = h
        .http
        .post(format!("{}/v1/chat/completions", h.base))
        .bearer_auth("tg_not_a_real_key_at_all_0000000000000000")
        .json(&chat("gpt-4o-mini", "hi", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let rows = h.wait_rows(4).await;
    assert_eq!(rows.len(), 4);
    let resp = h.http.get(format!("{}/metrics", h.base)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = resp.text().await.unwrap();
    let m = parse(&text);

    assert_eq!(sum(&m, "tollgate_requests_total{", ""), 4.0);
    assert_eq!(sum(&m, "tollgate_requests_total{", "status_class=\"2xx\""), 3.0);
    assert_eq!(
        m.get("tollgate_requests_total{endpoint=\"chat.completions\",provider=\"none\",model=\"none\",status_class=\"4xx\",code=\"model_not_found\"}")
            .map(String::as_str),
        Some("1"),
        "{text}"
    );
    assert_eq!(
        m.get("tollgate_errors_total{code=\"model_not_found\",provider=\"none\"}").map(String::as_str),
        Some("1")
    );
    assert_eq!(m.get("tollgate_auth_refused_total").map(String::as_str), Some("1"));

    // Tokens and money add up to the ledger's, exactly.
    let input: u64 = rows.iter().map(|r| r.usage.input).sum();
    let cache_read: u64 = rows.iter().map(|r| r.usage.cache_read).sum();
    let output: u64 = rows.iter().map(|r| r.usage.output).sum();
    assert!(input > 0 && cache_read > 0 && output > 0);
    assert_eq!(sum(&m, "tollgate_tokens_total{", "bucket=\"input\""), input as f64);
    assert_eq!(sum(&m, "tollgate_tokens_total{", "bucket=\"cache_read\""), cache_read as f64);
    assert_eq!(sum(&m, "tollgate_tokens_total{", "bucket=\"output\""), output as f64);
    let cost: Money = rows.iter().filter_map(|r| r.cost).sum();
    assert!(cost > Money::ZERO);
    assert_eq!(money_sum(&m, "tollgate_cost_usd_total{"), cost);

    // Histograms: one observation per row; TTFT only for the stream.
    assert_eq!(sum(&m, "tollgate_request_duration_seconds_count{", ""), 4.0);
    assert_eq!(sum(&m, "tollgate_request_duration_seconds_bucket{", "le=\"+Inf\""), 4.0);
    assert_eq!(sum(&m, "tollgate_time_to_first_token_seconds_count{", ""), 1.0);
    assert_eq!(sum(&m, "tollgate_cache_requests_total{", "result=\"off\""), 4.0);
    assert!(m.contains_key("tollgate_ledger_spool_backlog_bytes"));
    assert_eq!(sum(&m, "tollgate_upstream_attempts_total{", "provider=\"openai\""), 3.0);

    // No tag values, key ids or trace ids as labels.
    let values: BTreeSet<&str> = m.keys().flat_map(|k| k.split('"').skip(1).step_by(2)).collect();
    assert!(values.contains("openai") && values.contains("chat.completions"));
    for forbidden in [
        "c-0",
        "c-1",
        "summarize",
        "growth",
        "test",
        h.key_id.as_str(),
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "no-such-model-xyz",
    ] {
        assert!(!values.contains(forbidden), "{forbidden:?} leaked into a label");
    }
    h.stop().await;
}
