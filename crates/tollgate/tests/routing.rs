//! Failover, retries, circuit breaking and fallbacks across providers, against
//! two mock-provider targets with injected faults; every attempt in the ledger.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{chat, Harness};
use serde_json::{json, Value};

async fn set_fault(http: &reqwest::Client, mock: &str, fault: Option<&str>) {
    let r = http.post(format!("{mock}/mock/fault")).json(&json!({ "fault": fault })).send().await.unwrap();
    assert!(r.status().is_success());
}

async fn hits(http: &reqwest::Client, mock: &str) -> u64 {
    let v: Value = http.get(format!("{mock}/mock/stats")).send().await.unwrap().json().await.unwrap();
    v["total"].as_u64().unwrap()
}

#[tokio::test]
async fn failover_retries_circuit_breaking_and_translated_fallback() {
    let b = common::start_mock().await;
    let extra = format!(
        r#"
[routing]
circuit_failures = 2
# Long enough that no step below can outlast it, however slow the machine:
# the cooldown and the probe are tested on an explicit clock
# (upstream::tests::the_circuit_opens_cools_down_and_lets_one_probe_through).
circuit_cooldown_ms = 600000

[[providers]]
name = "backup"
kind = "openai"
base_url = "http://{b}/v1"
max_retries = 0

[[providers]]
name = "backup-anthropic"
kind = "anthropic"
base_url = "http://{b}"
max_retries = 0

[[models]]
name = "duo"
targets = [{{ provider = "openai", model = "gpt-4o-mini" }}, {{ provider = "backup", model = "gpt-4o-mini" }}]

[[models]]
name = "smart"
targets = [{{ provider = "openai", model = "gpt-4o" }}]
fallbacks = ["haiku"]

[[models]]
name = "haiku"
targets = [{{ provider = "backup-anthropic", model = "claude-haiku-4-5" }}]
"#
    );
    let h = Harness::start_with(&extra, |c| c).await;
    let (a, b) = (h.mock.clone(), format!("http://{b}"));
    let http = h.http.clone();

    // 1. Target A answers 503: retried (max_retries = 2 → 3 tries), then B serves.
    set_fault(&http, &a, Some("503")).await;
    let r = h.post("/v1/chat/completions").json(&chat("duo", "fail over please", false)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let id = r.headers()["x-tollgate-request-id"].to_str().unwrap().to_string();
    let _ = r.bytes().await.unwrap();
    let row = h.row(&id);
    assert_eq!(row.provider.as_deref(), Some("backup"));
    assert_eq!(row.attempts, 4, "3 tries on A, 1 on B: {:?}", row.attempt_log);
    let statuses: Vec<_> = row.attempt_log.iter().map(|x| (x.provider.as_str(), x.status)).collect();
    assert_eq!(
        statuses,
        vec![("openai", Some(503)), ("openai", Some(503)), ("openai", Some(503)), ("backup", Some(200))]
    );
    assert!(row.attempt_log[..3].iter().all(|x| x.error.as_deref() == Some("upstream_error")));
    assert!(row.cost.unwrap().nanos() > 0, "the serving attempt is priced");

    // 2. A is now ejected (2+ consecutive failures): the next request goes straight to B.
    let a_before = hits(&http, &a).await;
    let r = h.post("/v1/chat/completions").json(&chat("duo", "skip the broken one", false)).send().await.unwrap();
    let id = r.headers()["x-tollgate-request-id"].to_str().unwrap().to_string();
    let _ = r.bytes().await.unwrap();
    assert_eq!(hits(&http, &a).await, a_before, "an open circuit sends nothing to A");
    assert_eq!(h.row(&id).attempts, 1);

    // 3. gpt-4o on OpenAI fails with 500 → fallback to Claude on Anthropic, translated both ways.
    set_fault(&http, &a, Some("500")).await;
    for stream in [false, true] {
        let r = h.post("/v1/chat/completions").json(&chat("smart", "translate me", stream)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let id = r.headers()["x-tollgate-request-id"].to_str().unwrap().to_string();
        let text = r.text().await.unwrap();
        if stream {
            assert!(text.contains("chat.completion.chunk") && text.ends_with("data: [DONE]\n\n"), "{text}");
        } else {
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["object"], "chat.completion");
        }
        let row = h.row(&id);
        assert_eq!(row.provider.as_deref(), Some("backup-anthropic"));
        assert_eq!(row.requested_model.as_deref(), Some("smart"));
        if stream {
            // The first request's three failures opened gpt-4o's circuit: straight to the fallback.
            assert_eq!(row.attempt_log.len(), 1, "{:?}", row.attempt_log);
        } else {
            assert!(row.attempt_log.first().is_some_and(|x| x.provider == "openai" && x.status == Some(500)));
        }
        assert_eq!(row.attempt_log.last().map(|x| x.provider.as_str()), Some("backup-anthropic"));
    }
    set_fault(&http, &a, None).await;

    // The report shows the extra attempts.
    let v: Value = http
        .get(format!("{}/api/v1/spend?group_by=requested_model", h.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let duo = v["rows"].as_array().unwrap().iter().find(|r| r["requested_model"] == "duo").unwrap();
    assert_eq!(duo["requests"], 2);
    assert_eq!(duo["attempts"], 5, "4 for the first (3 on A, 1 on B), 1 for the second");
    let _ = b;
    h.stop().await;
}

#[tokio::test]
async fn cost_aware_rules_send_simple_requests_to_a_cheaper_model() {
    let extra = r#"
[routing]
complex_patterns = ["(?i)\\bprove\\b", "(?i)step by step"]

[[routing_rules]]
name = "simple-summaries-to-mini"
models = ["gpt-4o"]
scope = { feature = "summarize" }
max_prompt_bytes = 200
complexity = "low"
route_to = "gpt-4o-mini"
"#;
    let h = Harness::start_with(extra, |c| c).await;
    let send = |text: &str, feature: &str, tools: bool| {
        let mut body = chat("gpt-4o", text, false);
        if tools {
            body["tools"] = json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);
        }
        h.post("/v1/chat/completions").header("x-tollgate-tags", format!("feature={feature}")).json(&body).send()
    };
    let cases = [
        ("summarise this short note", "summarize", false, "gpt-4o-mini"),
        ("summarise this short note", "chat", false, "gpt-4o"),
        (&*"a long document to summarise ".repeat(20), "summarize", false, "gpt-4o"),
        ("prove that the sum is exact", "summarize", false, "gpt-4o"),
        ("summarise with a tool", "summarize", true, "gpt-4o"),
    ];
    for (text, feature, tools, want) in cases {
        let r = send(text, feature, tools).await.unwrap();
        assert_eq!(r.status(), 200);
        let served = r.headers()["x-tollgate-model"].to_str().unwrap().to_string();
        let routed = r.headers().get("x-tollgate-routed-by").map(|v| v.to_str().unwrap().to_string());
        let id = r.headers()["x-tollgate-request-id"].to_str().unwrap().to_string();
        let _ = r.bytes().await.unwrap();
        assert!(
            served.starts_with(want) && !(want == "gpt-4o" && served.starts_with("gpt-4o-mini")),
            "{text}: served {served}"
        );
        assert_eq!(routed.is_some(), want == "gpt-4o-mini", "{text}");
        let row = h.row(&id);
        assert_eq!(row.requested_model.as_deref(), Some("gpt-4o"), "the ledger keeps what was asked");
    }
    h.stop().await;
}

#[tokio::test]
async fn a_provider_at_its_max_connections_sheds_to_the_next_target_or_answers_503_at_once() {
    let (narrow, wide) = (common::start_mock().await, common::start_mock().await);
    let extra = format!(
        r#"
[[providers]]
name = "narrow"
kind = "openai"
base_url = "http://{narrow}/v1"
max_retries = 0
max_connections = 1

[[providers]]
name = "wide"
kind = "openai"
base_url = "http://{wide}/v1"
max_retries = 0

[[models]]
name = "solo"
targets = [{{ provider = "narrow", model = "gpt-4o-mini" }}]

[[models]]
name = "pair"
targets = [{{ provider = "narrow", model = "gpt-4o-mini" }}, {{ provider = "wide", model = "gpt-4o-mini" }}]
"#
    );
    let h = Harness::start_with(&extra, |c| c).await;
    let (narrow, wide) = (format!("http://{narrow}"), format!("http://{wide}"));
    let http = h.http.clone();

    // A stream holds narrow's only slot while its body flows (events 300 ms apart).
    let held = h
        .post("/v1/chat/completions")
        .json(&chat("solo", "[mock chunk_delay_ms=300] a long stream holds the slot", true))
        .send()
        .await
        .unwrap();
    assert_eq!(held.status(), 200);
    let narrow_calls = hits(&http, &narrow).await;
    assert_eq!(narrow_calls, 1);

    // A route with only narrow: 503 overloaded at once, nothing sent, one row.
    let r = h.post("/v1/chat/completions").json(&chat("solo", "no room", false)).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let id = r.headers()["x-tollgate-request-id"].to_str().unwrap().to_string();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "overloaded");
    assert!(v["error"]["message"].as_str().unwrap().contains("narrow"), "{v}");
    assert_eq!(hits(&http, &narrow).await, narrow_calls, "a full provider is not called");
    let row = h.row(&id);
    assert_eq!((row.status, row.error_code.as_deref()), (503, Some("overloaded")));
    assert_eq!(row.cost.map(|c| c.nanos()), Some(0), "nothing was sent, nothing is owed");

    // A route with a second target: shed to it, both attempts in the row.
    let r = h.post("/v1/chat/completions").json(&chat("pair", "go wide", false)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let id = r.headers()["x-tollgate-request-id"].to_str().unwrap().to_string();
    let _ = r.bytes().await.unwrap();
    let row = h.row(&id);
    assert_eq!(row.provider.as_deref(), Some("wide"));
    let log: Vec<_> = row.attempt_log.iter().map(|a| (a.provider.as_str(), a.status, a.error.as_deref())).collect();
    assert_eq!(log, vec![("narrow", None, Some("overloaded")), ("wide", Some(200), None)]);
    assert_eq!(hits(&http, &wide).await, 1);

    // The stream ends: its slot is free again.
    let text = held.text().await.unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let r = h.post("/v1/chat/completions").json(&chat("solo", "room again", false)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let _ = r.bytes().await.unwrap();
    assert_eq!(hits(&http, &narrow).await, narrow_calls + 1);
    h.stop().await;
}
