//! End-to-end behaviour of the gateway against the mock provider over real
//! loopback sockets: metering, errors, one ledger row per request.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{chat, Harness};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tollgate::ledger::UsageSource;

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// Reads an SSE body into its `data:` payloads (comments kept apart).
async fn sse(r: reqwest::Response) -> (Vec<String>, Vec<String>) {
    let text = r.text().await.unwrap();
    let mut data = Vec::new();
    let mut comments = Vec::new();
    for line in text.lines() {
        if let Some(d) = line.strip_prefix("data: ") {
            data.push(d.to_string());
        } else if let Some(c) = line.strip_prefix(':') {
            comments.push(c.trim().to_string());
        }
    }
    (data, comments)
}

#[tokio::test]
async fn chat_non_streaming_is_metered_exactly() {
    let h = Harness::start().await;
    let r = h
        .post("/v1/chat/completions")
        .header("x-tollgate-tags", "feature=summarize")
        .json(&chat("gpt-4o-mini", "hello there, summarise this please", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = header(&r, "x-tollgate-request-id").to_string();
    let body: Value = r.json().await.unwrap();
    let u = &body["usage"];
    let row = h.row(&id);
    assert_eq!(row.usage_source, UsageSource::Provider);
    assert_eq!(row.usage.input_tokens(), u["prompt_tokens"].as_u64().unwrap());
    assert_eq!(row.usage.cache_read, u["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap());
    assert_eq!(row.usage.output_tokens(), u["completion_tokens"].as_u64().unwrap());
    assert!(row.usage.cache_read > 0, "the mock reports cached tokens");
    assert_eq!(row.status, 200);
    assert_eq!(row.provider.as_deref(), Some("openai"));
    assert_eq!(row.attribution.tag("team"), Some("growth"));
    assert_eq!(row.attribution.tag("feature"), Some("summarize"));
    assert_eq!(row.attribution.tag("env"), Some("test"));
    assert_eq!(h.rows().len(), 1);
    h.stop().await;
}

#[tokio::test]
async fn streaming_equals_non_streaming_and_hides_the_usage_chunk() {
    let h = Harness::start().await;
    let text = "count the tokens of this prompt the same way twice";
    let r = h.post("/v1/chat/completions").json(&chat("o4-mini", text, false)).send().await.unwrap();
    let plain_id = header(&r, "x-tollgate-request-id").to_string();
    let _ = r.bytes().await.unwrap();

    // Client did not ask for usage: it must not see a usage chunk.
    let r = h.post("/v1/chat/completions").json(&chat("o4-mini", text, true)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "text/event-stream");
    let stream_id = header(&r, "x-tollgate-request-id").to_string();
    let (data, comments) = sse(r).await;
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    for d in &data[..data.len() - 1] {
        let v: Value = serde_json::from_str(d).unwrap();
        assert!(v["usage"].is_null(), "usage leaked to a client that did not ask: {d}");
        assert!(!v["choices"].as_array().unwrap().is_empty(), "usage-only chunk leaked: {d}");
    }
    assert!(
        comments.iter().any(|c| c.starts_with("x-tollgate-cost-usd=") || c.starts_with("x-tollgate-priced=")),
        "{comments:?}"
    );

    // Client asked: it sees the usage chunk, equal to the ledger.
    let mut body = chat("o4-mini", text, true);
    body["stream_options"] = json!({"include_usage": true});
    let r = h.post("/v1/chat/completions").json(&body).send().await.unwrap();
    let asked_id = header(&r, "x-tollgate-request-id").to_string();
    let (data, _) = sse(r).await;
    let usage_chunk: Value = data
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .find(|v| v["usage"].is_object())
        .expect("usage chunk");
    let plain = h.row(&plain_id);
    let streamed = h.row(&stream_id);
    let asked = h.row(&asked_id);
    assert_eq!(plain.usage, streamed.usage);
    assert_eq!(plain.usage, asked.usage);
    assert!(plain.usage.reasoning > 0, "o4-mini reports reasoning tokens");
    assert_eq!(asked.usage.output_tokens(), usage_chunk["usage"]["completion_tokens"].as_u64().unwrap());
    assert!(streamed.streamed && !plain.streamed);
    assert_eq!(streamed.usage_source, UsageSource::Provider);
    assert!(streamed.ttft_ms.is_some());
    h.stop().await;
}

#[tokio::test]
async fn anthropic_native_and_translated_are_metered() {
    let h = Harness::start().await;
    let body = json!({
        "model": "claude-haiku-4-5",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "hello from the anthropic sdk"}]
    });
    let r = h.post("/v1/messages").header("anthropic-version", "2023-06-01").json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let id = header(&r, "x-tollgate-request-id").to_string();
    let v: Value = r.json().await.unwrap();
    let u = &v["usage"];
    let row = h.row(&id);
    assert_eq!(row.usage.input, u["input_tokens"].as_u64().unwrap());
    assert_eq!(row.usage.cache_read, u["cache_read_input_tokens"].as_u64().unwrap());
    assert_eq!(row.usage.cache_write_tokens(), u["cache_creation_input_tokens"].as_u64().unwrap());
    assert_eq!(row.usage.output_tokens(), u["output_tokens"].as_u64().unwrap());

    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    let r = h.post("/v1/messages").json(&sbody).send().await.unwrap();
    let sid = header(&r, "x-tollgate-request-id").to_string();
    let text = r.text().await.unwrap();
    assert!(text.contains("event: message_stop"), "{text}");
    let cost_at = text.find(": x-tollgate-").unwrap();
    assert!(cost_at < text.find("event: message_stop").unwrap(), "cost comment comes before the terminator");
    assert_eq!(h.row(&sid).usage, row.usage);

    // OpenAI chat format to an Anthropic model: translated both ways.
    let r = h
        .post("/v1/chat/completions")
        .json(&chat("claude-haiku-4-5", "hello from the anthropic sdk", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let tid = header(&r, "x-tollgate-request-id").to_string();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert!(v["choices"][0]["message"]["content"].as_str().is_some());
    let trow = h.row(&tid);
    assert_eq!(trow.usage.input_tokens(), v["usage"]["prompt_tokens"].as_u64().unwrap());
    assert_eq!(trow.provider.as_deref(), Some("anthropic"));
    h.stop().await;
}

#[tokio::test]
async fn unknown_revoked_or_missing_keys_get_401_and_reach_no_provider() {
    let h = Harness::start().await;
    let before = h.mock_total().await;
    let cases = [Some("tg_nope"), Some("sk-not-a-tollgate-key"), None];
    for key in cases {
        let mut b = h.http.post(format!("{}/v1/chat/completions", h.base)).json(&chat("gpt-4o-mini", "hi", false));
        if let Some(k) = key {
            b = b.bearer_auth(k);
        }
        let r = b.send().await.unwrap();
        assert_eq!(r.status(), 401);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "invalid_api_key");
    }
    // Anthropic shape on /v1/messages.
    let r = h
        .http
        .post(format!("{}/v1/messages", h.base))
        .header("x-api-key", "tg_bad")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "authentication_error");
    assert_eq!(v["error"]["code"], "invalid_api_key");

    // Revoke through the admin API: the next request is refused at once.
    let r = h.http.post(format!("{}/admin/v1/keys/{}/revoke", h.base, h.key_id)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = h.post("/v1/chat/completions").json(&chat("gpt-4o-mini", "hi", false)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(h.mock_total().await, before, "no upstream call for a refused key");
    assert!(h.rows().is_empty(), "a refused request leaves no ledger row");
    h.stop().await;
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_one_row_each() {
    let h = Harness::start_with("[server]\nmax_body_bytes = 2048\n", |c| c).await;
    let before = h.mock_total().await;
    let big = "x".repeat(4096);
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            h.post("/v1/chat/completions").header("content-type", "application/json").body("{not json"),
            400,
            "invalid_request",
        ),
        (h.post("/v1/chat/completions").body(vec![0xff, 0xfe, 0x7b]), 400, "invalid_request"),
        (h.post("/v1/chat/completions").json(&json!({"model": 42, "messages": []})), 400, "invalid_request"),
        (h.post("/v1/chat/completions").json(&json!({"messages": []})), 400, "invalid_request"),
        (h.post("/v1/chat/completions").json(&chat("no-such-model", "hi", false)), 404, "model_not_found"),
        (h.post("/v1/chat/completions").json(&chat("gpt-4o-mini", &big, false)), 413, "request_too_large"),
        (
            h.post("/v1/chat/completions").header("x-tollgate-tags", "broken").json(&chat("gpt-4o-mini", "hi", false)),
            400,
            "invalid_request",
        ),
        (h.post("/v1/embeddings").json(&json!({"model": "claude-haiku-4-5", "input": "x"})), 400, "invalid_request"),
    ];
    let n = cases.len();
    for (b, status, code) in cases {
        let r = b.send().await.unwrap();
        assert_eq!(r.status().as_u16(), status);
        assert!(!header(&r, "x-tollgate-request-id").is_empty());
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], code, "{v}");
        assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let rows = h.rows();
    assert_eq!(rows.len(), n, "one ledger row per authenticated request");
    assert!(rows.iter().all(|r| r.status >= 400 && r.error_code.is_some()));
    assert!(rows.iter().all(|r| r.cost == Some(tollgate_units::Money::ZERO)), "nothing was spent");
    assert_eq!(h.mock_total().await, before, "no bad request reached a provider");
    h.stop().await;
}

#[tokio::test]
async fn upstream_failures_map_to_stable_codes_after_retries() {
    let h = Harness::start().await;
    let cases = [
        ("[mock fault=500]", 502, "upstream_error", 3u32),
        ("[mock fault=429 retry_after=1]", 429, "upstream_rate_limited", 3),
        ("[mock fault=malformed]", 502, "upstream_error", 1),
        ("[mock fault=400]", 400, "invalid_request", 1),
    ];
    for (directive, status, code, attempts) in cases {
        let r = h.post("/v1/chat/completions").json(&chat("gpt-4o-mini", directive, false)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{directive}");
        if code == "upstream_rate_limited" {
            assert_eq!(header(&r, "retry-after"), "1");
        }
        let id = header(&r, "x-tollgate-request-id").to_string();
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], code, "{directive}: {v}");
        let row = h.row(&id);
        assert_eq!(row.error_code.as_deref(), Some(code));
        assert_eq!(row.attempts, attempts, "{directive}");
    }
    h.stop().await;
}

#[tokio::test]
async fn a_cut_stream_and_a_vanished_client_each_leave_one_marked_row() {
    let h = Harness::start().await;
    // Upstream cuts the stream mid-way.
    let r = h
        .post("/v1/chat/completions")
        .json(&chat("gpt-4o-mini", "[mock fault=truncate chunks=8]", true))
        .send()
        .await
        .unwrap();
    let cut_id = header(&r, "x-tollgate-request-id").to_string();
    let (data, _) = sse(r).await;
    assert!(!data.contains(&"[DONE]".to_string()), "a cut stream must not look complete");
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_error", "the client is told in-band");
    let row = h.row(&cut_id);
    assert_eq!(row.error_code.as_deref(), Some("upstream_error"));
    assert_eq!(row.usage_source, UsageSource::Estimated);
    assert!(row.usage.input > 0 && row.usage.output > 0, "{:?}", row.usage);

    // The client reads one chunk and hangs up while the upstream is still sending.
    let r = h
        .post("/v1/chat/completions")
        .json(&chat("gpt-4o-mini", "[mock chunks=50 chunk_delay_ms=40]", true))
        .send()
        .await
        .unwrap();
    let gone_id = header(&r, "x-tollgate-request-id").to_string();
    let mut s = r.bytes_stream();
    let _first = s.next().await.unwrap().unwrap();
    drop(s);
    let rows = h.wait_rows(2).await;
    let mut gone = None;
    for _ in 0..100 {
        gone = h.rows().into_iter().find(|r| r.request_id == gone_id);
        if gone.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let gone = gone.expect("row for the disconnected client");
    assert!(gone.client_disconnected);
    assert!(gone.streamed);
    assert_eq!(gone.usage_source, UsageSource::Estimated);
    assert!(gone.usage.input > 0);
    assert_eq!(rows.len(), 2);
    h.stop().await;
    // After shutdown nothing more was written: still exactly one row each.
}

#[tokio::test]
async fn concurrent_requests_leave_exactly_one_row_each() {
    let h = Harness::start().await;
    let mut tasks = Vec::new();
    for i in 0..60 {
        let b = h.post("/v1/chat/completions").json(&chat("gpt-4o-mini", &format!("request {i}"), i % 2 == 0));
        tasks.push(tokio::spawn(async move {
            let r = b.send().await.unwrap();
            let id = r.headers()["x-tollgate-request-id"].to_str().unwrap().to_string();
            let _ = r.bytes().await.unwrap();
            id
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    let rows = h.rows();
    assert_eq!(rows.len(), 60);
    let mut seen: Vec<_> = rows.iter().map(|r| r.request_id.clone()).collect();
    seen.sort();
    ids.sort();
    assert_eq!(seen, ids);
    h.stop().await;
}

#[tokio::test]
async fn embeddings_responses_and_gemini_are_metered() {
    let h = Harness::start().await;
    let r = h
        .post("/v1/embeddings")
        .json(&json!({"model": "text-embedding-3-small", "input": ["one two", "three"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = header(&r, "x-tollgate-request-id").to_string();
    let v: Value = r.json().await.unwrap();
    assert_eq!(h.row(&id).usage.input_tokens(), v["usage"]["prompt_tokens"].as_u64().unwrap());

    let body = json!({"model": "gpt-4o-mini", "input": "write a haiku"});
    let r = h.post("/v1/responses").json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let id = header(&r, "x-tollgate-request-id").to_string();
    let v: Value = r.json().await.unwrap();
    let row = h.row(&id);
    assert_eq!(row.usage.input_tokens(), v["usage"]["input_tokens"].as_u64().unwrap());
    assert_eq!(row.usage.output_tokens(), v["usage"]["output_tokens"].as_u64().unwrap());
    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    let r = h.post("/v1/responses").json(&sbody).send().await.unwrap();
    let sid = header(&r, "x-tollgate-request-id").to_string();
    let text = r.text().await.unwrap();
    assert!(text.contains("response.completed"));
    assert_eq!(h.row(&sid).usage, row.usage);

    let r = h.post("/v1/chat/completions").json(&chat("gemini-2.5-flash", "hello gemini", false)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let gid = header(&r, "x-tollgate-request-id").to_string();
    let v: Value = r.json().await.unwrap();
    let grow = h.row(&gid);
    assert_eq!(grow.provider.as_deref(), Some("gemini"));
    assert_eq!(grow.usage.input_tokens(), v["usage"]["prompt_tokens"].as_u64().unwrap());
    let r = h.post("/v1/chat/completions").json(&chat("gemini-2.5-flash", "hello gemini", true)).send().await.unwrap();
    let gsid = header(&r, "x-tollgate-request-id").to_string();
    let _ = r.text().await.unwrap();
    assert_eq!(h.row(&gsid).usage, grow.usage);
    h.stop().await;
}

#[tokio::test]
async fn request_log_api_pages_and_filters() {
    let h = Harness::start().await;
    // A key without a team: each request says which team it is for.
    let shared = h.add_key("shared", None).await;
    for i in 0..5 {
        let team = if i % 2 == 0 { "growth" } else { "search" };
        let r = h
            .http
            .post(format!("{}/v1/chat/completions", h.base))
            .bearer_auth(&shared)
            .header("x-tollgate-tags", format!("team={team}"))
            .json(&chat("gpt-4o-mini", "hi", false))
            .send()
            .await
            .unwrap();
        let _ = r.bytes().await.unwrap();
    }
    assert_eq!(h.rows().len(), 5, "every row has left the spool");
    let v: Value = h
        .http
        .get(format!("{}/api/v1/requests?limit=2&filter=team:growth", h.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["rows"].as_array().unwrap().len(), 2);
    let cursor = v["next_cursor"].as_str().unwrap().to_string();
    let v2: Value = h
        .http
        .get(format!("{}/api/v1/requests?limit=2&filter=team:growth&cursor={cursor}", h.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v2["rows"].as_array().unwrap().len(), 1);
    assert!(v2["next_cursor"].is_null());
    let row = &v["rows"][0];
    for field in [
        "request_id",
        "time",
        "key_id",
        "input_tokens",
        "cache_read_tokens",
        "output_tokens",
        "usage_source",
        "priced",
        "tags",
    ] {
        assert!(!row[field].is_null(), "{field} missing in {row}");
    }
    assert_eq!(row["tags"]["team"], "growth");
    h.stop().await;
}

#[tokio::test]
async fn spend_api_groups_by_columns_and_custom_tags() {
    let h = Harness::start().await;
    let shared = h.add_key("shared", None).await;
    let plan = [
        ("growth", "summarize", "gpt-4o-mini"),
        ("growth", "summarize", "gpt-4o-mini"),
        ("search", "rerank", "claude-haiku-4-5"),
    ];
    for (team, feature, model) in plan {
        let r = h
            .http
            .post(format!("{}/v1/chat/completions", h.base))
            .bearer_auth(&shared)
            .header("x-tollgate-tags", format!("team={team},cost_center=cc-{feature}"))
            .json(&chat(model, "hello", false))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let _ = r.bytes().await.unwrap();
    }
    assert_eq!(h.rows().len(), 3);
    let get = |q: &str| {
        let url = format!("{}/api/v1/spend?{q}", h.base);
        let http = h.http.clone();
        async move { http.get(url).send().await.unwrap() }
    };
    let v: Value = get("group_by=team,model").await.json().await.unwrap();
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{v}");
    let growth = rows.iter().find(|r| r["team"] == "growth").unwrap();
    assert_eq!(growth["model"], "gpt-4o-mini");
    assert_eq!(growth["requests"], 2);
    let ledger = h.rows();
    let growth_input: u64 =
        ledger.iter().filter(|r| r.attribution.tag("team") == Some("growth")).map(|r| r.usage.input_tokens()).sum();
    assert_eq!(growth["input_tokens"].as_u64().unwrap(), growth_input);
    let total: i64 = ledger.iter().map(|r| r.cost.map_or(0, |c| c.nanos())).sum();
    assert_eq!(v["total_cost_usd"], tollgate_units::Money::from_nanos(total).to_string());

    let v: Value = get("group_by=cost_center&filter=team:search&bucket=day").await.json().await.unwrap();
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["cost_center"], "cc-rerank");
    assert!(rows[0]["bucket"].as_str().unwrap().ends_with("T00:00:00Z"));

    let r = get("group_by=te%20am").await;
    assert_eq!(r.status(), 400);
    let r = get("bucket=week").await;
    assert_eq!(r.status(), 400);
    h.stop().await;
}

#[tokio::test]
async fn key_policies_model_allow_list_expiry_and_enforced_tags() {
    let h = Harness::start().await;
    let hasher = tollgate::server::key_hasher(
        &tollgate::config::Config::zero_config(&std::collections::HashMap::<String, String>::new()).unwrap(),
        h.stores.keys.as_ref(),
    )
    .await
    .unwrap();
    let now = tollgate::pipeline::now_ms();
    let spec = tollgate::keys::KeySpec {
        name: "limited".into(),
        models: vec!["claude-*".into()],
        enforce_tags: vec![("team".into(), "search".into())],
        ..Default::default()
    };
    let limited = tollgate::keys::create(h.stores.keys.as_ref(), &hasher, spec, now).await.unwrap().secret;
    let r = h
        .http
        .post(format!("{}/v1/chat/completions", h.base))
        .bearer_auth(&limited)
        .json(&chat("gpt-4o-mini", "hi", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "model_not_allowed");
    let r = h
        .http
        .post(format!("{}/v1/chat/completions", h.base))
        .bearer_auth(&limited)
        .header("x-tollgate-tags", "team=growth")
        .json(&chat("claude-haiku-4-5", "hi", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = header(&r, "x-tollgate-request-id").to_string();
    let _ = r.bytes().await.unwrap();
    assert_eq!(h.row(&id).attribution.tag("team"), Some("search"), "an enforced tag wins over the request");

    let spec = tollgate::keys::KeySpec { name: "short".into(), expires_ms: Some(now + 300), ..Default::default() };
    let short = tollgate::keys::create(h.stores.keys.as_ref(), &hasher, spec, now).await.unwrap().secret;
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let r = h
        .http
        .post(format!("{}/v1/chat/completions", h.base))
        .bearer_auth(&short)
        .json(&chat("gpt-4o-mini", "hi", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("expired"));
    h.stop().await;
}

#[tokio::test]
async fn a_switched_off_ledger_serves_and_records_nothing() {
    // Benchmark-only: `[ledger] enabled = false` (bench/compare.sh's ablation).
    let h = Harness::start_with("[ledger]\nenabled = false\n", |c| c).await;
    for _ in 0..3 {
        let r = h.post("/v1/chat/completions").json(&chat("gpt-4o-mini", "hi", false)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(!header(&r, "x-tollgate-cost-usd").is_empty(), "still metered and priced");
        let _ = r.bytes().await.unwrap();
    }
    assert_eq!(h.mock_total().await, 3);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(h.rows().is_empty(), "no row is written");
    h.stop().await;
}

#[tokio::test]
async fn passthrough_auth_forwards_the_clients_provider_key() {
    let h = Harness::start_with("[server]\nauth = \"passthrough\"\n", |c| c).await;
    let r = h
        .http
        .post(format!("{}/v1/chat/completions", h.base))
        .bearer_auth("sk-client-own-key")
        .json(&chat("gpt-4o-mini", "hi", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = header(&r, "x-tollgate-request-id").to_string();
    let _ = r.bytes().await.unwrap();
    let row = h.row(&id);
    let key_id = row.key_id.unwrap();
    assert!(key_id.starts_with("pt_") && !key_id.contains("sk-client"), "{key_id}");
    let stats: Value = h.http.get(format!("{}/mock/stats", h.mock)).send().await.unwrap().json().await.unwrap();
    assert_eq!(stats["last_auth"], "present", "the client's key went upstream");
    // Virtual keys still work in passthrough mode.
    let r = h.post("/v1/chat/completions").json(&chat("gpt-4o-mini", "hi", false)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    h.stop().await;
}

#[tokio::test]
async fn cost_is_exact_in_headers_stream_comments_and_ledger() {
    let h = Harness::start().await;
    let r = h
        .post("/v1/chat/completions")
        .json(&chat("gpt-4o-mini", "price this request exactly", false))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "x-tollgate-priced"), "true");
    assert_eq!(header(&r, "x-tollgate-usage"), "provider");
    let cost_header = header(&r, "x-tollgate-cost-usd").to_string();
    let id = header(&r, "x-tollgate-request-id").to_string();
    let v: Value = r.json().await.unwrap();
    let u = &v["usage"];
    let prompt = u["prompt_tokens"].as_u64().unwrap() as i64;
    let cached = u["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap() as i64;
    let out = u["completion_tokens"].as_u64().unwrap() as i64;
    // gpt-4o-mini: $0.15 / $0.075 cached / $0.60 per million = 150 / 75 / 600 nano-dollars per token.
    let want = (prompt - cached) * 150 + cached * 75 + out * 600;
    assert_eq!(cost_header, tollgate_units::Money::from_nanos(want).to_string());
    let row = h.row(&id);
    assert_eq!(row.cost, Some(tollgate_units::Money::from_nanos(want)));
    assert_eq!(row.cache_savings, tollgate_units::Money::from_nanos(cached * (150 - 75)));

    let r = h
        .post("/v1/chat/completions")
        .json(&chat("gpt-4o-mini", "price this request exactly", true))
        .send()
        .await
        .unwrap();
    let sid = header(&r, "x-tollgate-request-id").to_string();
    let (_, comments) = sse(r).await;
    assert_eq!(comments, vec![format!("x-tollgate-cost-usd={cost_header}")]);
    assert_eq!(h.row(&sid).cost, row.cost);

    // A model with no known price is never $0: unpriced in header, row and report.
    let r = h.post("/v1/chat/completions").json(&chat("openai/house-model-x", "hi", false)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-tollgate-priced"), "false");
    assert!(r.headers().get("x-tollgate-cost-usd").is_none());
    let uid = header(&r, "x-tollgate-request-id").to_string();
    let _ = r.bytes().await.unwrap();
    assert_eq!(h.row(&uid).cost, None);
    let v: Value =
        h.http.get(format!("{}/api/v1/spend?group_by=model", h.base)).send().await.unwrap().json().await.unwrap();
    let unpriced = v["rows"].as_array().unwrap().iter().find(|r| r["model"] == "house-model-x").unwrap();
    assert_eq!(unpriced["unpriced_requests"], 1);
    assert_eq!(v["unpriced_requests"], 1);
    h.stop().await;
}

#[tokio::test]
async fn azure_openai_deployments_are_proxied_with_their_api_key() {
    let h = Harness::start_with("", |mut c| {
        let mock = c.providers[0].base_url.trim_end_matches("/v1").to_string();
        c.providers.push(tollgate::config::Provider {
            name: "azure".into(),
            kind: tollgate_providers::ProviderKind::AzureOpenAi,
            base_url: mock,
            api_key: Some(tollgate::config::Secret::new("azure-key".into())),
            api_version: Some("2024-10-21".into()),
            timeout: std::time::Duration::from_secs(5),
            max_retries: 0,
            slots: None,
            aws: None,
            vertex: None,
            admin_key_env: None,
            admin_key: None,
            billing_accounts: Vec::new(),
        });
        let idx = c.providers.len() - 1;
        c.routes.insert(
            "corp-gpt".into(),
            tollgate::config::Route {
                name: "corp-gpt".into(),
                targets: vec![tollgate::config::RouteTarget { provider: idx, model: "gpt-4o-mini".into(), weight: 1 }],
                fallbacks: vec![],
                strategy: tollgate::config::Strategy::Ordered,
            },
        );
        c
    })
    .await;
    for stream in [false, true] {
        let r = h.post("/v1/chat/completions").json(&chat("corp-gpt", "hello azure", stream)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let id = header(&r, "x-tollgate-request-id").to_string();
        let _ = r.bytes().await.unwrap();
        let row = h.row(&id);
        assert_eq!(row.provider.as_deref(), Some("azure"));
        assert!(row.usage.input_tokens() > 0 && row.usage_source == UsageSource::Provider);
        assert!(row.cost.is_some(), "an Azure deployment of gpt-4o-mini is priced");
    }
    let stats: Value = h.http.get(format!("{}/mock/stats", h.mock)).send().await.unwrap().json().await.unwrap();
    assert!(stats["paths"].to_string().contains("/openai/deployments/gpt-4o-mini/chat/completions"), "{stats}");
    assert_eq!(stats["last_auth"], "present");
    h.stop().await;
}

#[tokio::test]
async fn a_wrong_method_on_a_proxy_route_gets_405_in_the_familys_shape() {
    let h = Harness::start().await;
    for path in ["/v1/chat/completions", "/v1/embeddings", "/v1/responses", "/v1/messages"] {
        for method in ["GET", "PUT", "DELETE"] {
            let r = h.http.request(method.parse().unwrap(), format!("{}{path}", h.base)).send().await.unwrap();
            assert_eq!(r.status(), 405, "{method} {path}");
            assert_eq!(r.headers()["allow"], "POST");
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["error"]["code"], "method_not_allowed", "{method} {path}: {v}");
            if path == "/v1/messages" {
                assert_eq!(v["type"], "error", "Anthropic's shape: {v}");
            } else {
                assert_eq!(v["error"]["type"], "invalid_request_error", "OpenAI's shape: {v}");
            }
        }
    }
    assert!(h.rows().is_empty(), "refused before auth: no row");
    h.stop().await;
}

#[tokio::test]
async fn a_model_the_provider_does_not_know_is_404_model_not_found_on_every_family() {
    let h = Harness::start().await;
    let cases = [
        ("/v1/chat/completions", chat("gpt-4o-mini", "[mock fault=404] hi", false)),
        ("/v1/chat/completions", chat("claude-haiku-4-5", "[mock fault=404] hi", false)),
        (
            "/v1/messages",
            serde_json::json!({"model": "claude-haiku-4-5", "max_tokens": 10,
                "messages": [{"role": "user", "content": "[mock fault=404] hi"}]}),
        ),
    ];
    for (path, body) in cases {
        let r = h.post(path).header("anthropic-version", "2023-06-01").json(&body).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path} {body}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "model_not_found", "{path}: {v}");
    }
    h.stop().await;
}

#[tokio::test]
async fn a_body_nested_thousands_deep_is_refused_at_the_edge() {
    let h = Harness::start().await;
    let before = h.mock_total().await;
    let deep = format!(
        r#"{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"hi"}}],"extra":{}{}}}"#,
        "[".repeat(20_000),
        "]".repeat(20_000)
    );
    let r = h.post("/v1/chat/completions").header("content-type", "application/json").body(deep).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_request");
    assert!(v["error"]["message"].as_str().unwrap().contains("deeper than 64"), "{v}");
    assert_eq!(h.mock_total().await, before, "never forwarded");
    assert_eq!(h.wait_rows(1).await.len(), 1, "the authenticated request has its row");
    h.stop().await;
}

/// Priority and flex requests cost what the provider's price list says for
/// their tier. The rates are typed here from OpenAI's price list, not read from
/// the catalog, so the test checks the catalog and the pipeline together.
#[tokio::test]
async fn priority_and_flex_requests_are_priced_at_their_tier() {
    let h = Harness::start().await;
    // (model, tier, nano-dollars per token: uncached input, cached input, output and reasoning)
    let cases = [
        ("gpt-4o-mini", "priority", (250, 125, 1_000)), // $0.25 / $0.125 / $1.00 per million
        ("gpt-4o-mini", "default", (150, 75, 600)),     // standard: $0.15 / $0.075 / $0.60
        ("openai/o3", "flex", (1_000, 250, 4_000)),     // half of $2.00 / $0.50 / $8.00
    ];
    for stream in [false, true] {
        for (model, tier, (input, cached, output)) in cases {
            let mut body = chat(model, "price me by my tier", stream);
            body["service_tier"] = json!(tier);
            let r = h.post("/v1/chat/completions").json(&body).send().await.unwrap();
            assert_eq!(r.status(), 200, "{model} {tier}");
            let id = header(&r, "x-tollgate-request-id").to_string();
            let _ = r.bytes().await.unwrap();
            let row = h.wait_rows(1).await.into_iter().find(|x| x.request_id == id).unwrap_or_else(|| h.row(&id));
            let u = row.usage;
            assert!(u.input > 0 && u.output > 0, "{u:?}");
            let want = u.input as i64 * input + u.cache_read as i64 * cached + (u.output + u.reasoning) as i64 * output;
            assert_eq!(row.cost.unwrap().nanos(), want, "{model} at {tier} (stream {stream}): {u:?}");
        }
    }
    h.stop().await;
}

/// An upstream whose streams fail before their first event: garbage, or an
/// immediate end. Requests whose prompt says `garbage` get the first.
async fn failing_stream_upstream() -> String {
    use axum::routing::post;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        post(|body: String| async move {
            let events = if body.contains("garbage") { "data: {this is not json\n\n" } else { "" };
            ([("content-type", "text/event-stream")], events)
        }),
    );
    tokio::spawn(async move { axum::serve(l, app).await });
    format!("http://{a}/v1")
}

#[tokio::test]
async fn a_stream_that_fails_before_its_first_event_gets_an_error_status_not_200() {
    let upstream = failing_stream_upstream().await;
    let h = Harness::start_with("", move |mut c| {
        c.providers[0].base_url = upstream;
        c.providers[0].max_retries = 0;
        c
    })
    .await;
    for prompt in ["garbage please", "nothing at all"] {
        let r = h.post("/v1/chat/completions").json(&chat("gpt-4o-mini", prompt, true)).send().await.unwrap();
        assert_eq!(r.status(), 502, "{prompt}: the response had not started, so it carries the failure's status");
        let id = header(&r, "x-tollgate-request-id").to_string();
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "upstream_error", "{prompt}: {v}");
        let row = h.wait_rows(1).await.into_iter().find(|x| x.request_id == id).unwrap();
        assert_eq!((row.status, row.error_code.as_deref()), (502, Some("upstream_error")));
        assert!(row.streamed && row.usage.input > 0, "the prompt is counted as possibly billed: {:?}", row.usage);
    }
    h.stop().await;
}
