//! The exact response cache: hits for repeated requests (streaming and not),
//! never across tenants, per-request modes, and savings equal to avoided cost.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/services.rs"]
mod services;

use common::{chat, Harness};
use serde_json::{json, Value};
use tollgate_units::Money;

fn det(model: &str, text: &str, stream: bool) -> Value {
    let mut b = chat(model, text, stream);
    b["temperature"] = json!(0);
    b
}

fn h<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

#[tokio::test]
async fn repeated_requests_hit_the_cache_and_save_their_cost() {
    let g = Harness::start().await;
    let before = g.mock_total().await;

    // Non-streaming: miss, then hit with the same body at $0.
    let r1 = g.post("/v1/chat/completions").json(&det("gpt-4o-mini", "cache me", false)).send().await.unwrap();
    assert_eq!(h(&r1, "x-tollgate-cache"), "miss");
    let id1 = h(&r1, "x-tollgate-request-id").to_string();
    let body1 = r1.text().await.unwrap();
    let r2 = g
        .post("/v1/chat/completions")
        .header("x-tollgate-tags", "feature=other")
        .json(&det("gpt-4o-mini", "cache me", false))
        .send()
        .await
        .unwrap();
    assert_eq!(h(&r2, "x-tollgate-cache"), "hit", "tags do not change the key");
    assert_eq!(h(&r2, "x-tollgate-cost-usd"), "0.000000000");
    let id2 = h(&r2, "x-tollgate-request-id").to_string();
    assert_eq!(r2.text().await.unwrap(), body1);
    assert_eq!(g.mock_total().await, before + 1, "the hit reached no provider");
    let (row1, row2) = (g.row(&id1), g.row(&id2));
    assert_eq!(row1.cache, "miss");
    assert_eq!((row2.cache.as_str(), row2.cost), ("hit", Some(Money::ZERO)));
    assert_eq!(Some(row2.response_cache_savings), row1.cost);

    // Streaming: miss, then the same events replayed.
    let s1 = g.post("/v1/chat/completions").json(&det("gpt-4o-mini", "stream me", true)).send().await.unwrap();
    assert_eq!(h(&s1, "x-tollgate-cache"), "miss");
    let sid1 = h(&s1, "x-tollgate-request-id").to_string();
    let t1 = s1.text().await.unwrap();
    let s2 = g.post("/v1/chat/completions").json(&det("gpt-4o-mini", "stream me", true)).send().await.unwrap();
    assert_eq!(h(&s2, "x-tollgate-cache"), "hit");
    let sid2 = h(&s2, "x-tollgate-request-id").to_string();
    let t2 = s2.text().await.unwrap();
    let strip = |t: &str| t.lines().filter(|l| !l.starts_with(':')).collect::<Vec<_>>().join("\n");
    assert_eq!(strip(&t1), strip(&t2));
    assert!(t2.contains(": x-tollgate-cost-usd=0.000000000") && t2.ends_with("data: [DONE]\n\n"));
    assert!(g.row(&sid2).streamed);
    assert_eq!(Some(g.row(&sid2).response_cache_savings), g.row(&sid1).cost);

    // Anthropic Messages are cached in their own format too.
    let m = json!({"model": "claude-haiku-4-5", "max_tokens": 30, "temperature": 0, "messages": [{"role": "user", "content": "hi"}]});
    let a1 = g.post("/v1/messages").json(&m).send().await.unwrap();
    let a1_body = a1.text().await.unwrap();
    let a2 = g.post("/v1/messages").json(&m).send().await.unwrap();
    assert_eq!(h(&a2, "x-tollgate-cache"), "hit");
    assert_eq!(a2.text().await.unwrap(), a1_body);

    // The report's savings equal the sum of the avoided costs.
    let rows = g.rows();
    let avoided: i64 = rows.iter().filter(|r| r.cache == "hit").map(|r| r.response_cache_savings.nanos()).sum();
    let originals: i64 = [&id1, &sid1].iter().map(|id| g.row(id).cost.unwrap().nanos()).sum::<i64>()
        + rows
            .iter()
            .filter(|r| r.endpoint == "messages" && r.cache == "miss")
            .map(|r| r.cost.unwrap().nanos())
            .sum::<i64>();
    assert_eq!(avoided, originals);
    let v: Value = g.http.get(format!("{}/api/v1/spend", g.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["response_cache_savings_usd"], Money::from_nanos(avoided).to_string());
    g.stop().await;
}

#[tokio::test]
async fn no_hit_across_tenants_and_per_request_modes() {
    let g = Harness::start().await;
    let hasher = tollgate::server::key_hasher(
        &tollgate::config::Config::zero_config(&std::collections::HashMap::<String, String>::new()).unwrap(),
        g.stores.keys.as_ref(),
    )
    .await
    .unwrap();
    let other = tollgate::keys::create(
        g.stores.keys.as_ref(),
        &hasher,
        tollgate::keys::KeySpec { name: "other".into(), team: Some("growth".into()), ..Default::default() },
        tollgate::pipeline::now_ms(),
    )
    .await
    .unwrap()
    .secret;
    let body = det("gpt-4o-mini", "tenant secret answer", false);
    let r = g.post("/v1/chat/completions").json(&body).send().await.unwrap();
    assert_eq!(h(&r, "x-tollgate-cache"), "miss");
    let _ = r.bytes().await.unwrap();
    let r =
        g.http.post(format!("{}/v1/chat/completions", g.base)).bearer_auth(&other).json(&body).send().await.unwrap();
    assert_eq!(h(&r, "x-tollgate-cache"), "miss", "another key never sees this key's answers");
    let _ = r.bytes().await.unwrap();

    let before = g.mock_total().await;
    let r = g.post("/v1/chat/completions").header("x-tollgate-cache", "off").json(&body).send().await.unwrap();
    assert_eq!(h(&r, "x-tollgate-cache"), "");
    let _ = r.bytes().await.unwrap();
    assert_eq!(g.mock_total().await, before + 1, "off: no lookup");

    let fresh = det("gpt-4o-mini", "read only", false);
    for _ in 0..2 {
        let r = g.post("/v1/chat/completions").header("x-tollgate-cache", "read").json(&fresh).send().await.unwrap();
        assert_eq!(h(&r, "x-tollgate-cache"), "miss", "read never writes");
        let _ = r.bytes().await.unwrap();
    }
    let r = g.post("/v1/chat/completions").header("x-tollgate-cache", "write").json(&fresh).send().await.unwrap();
    assert_eq!(h(&r, "x-tollgate-cache"), "miss", "write never reads");
    let _ = r.bytes().await.unwrap();
    let r = g.post("/v1/chat/completions").json(&fresh).send().await.unwrap();
    assert_eq!(h(&r, "x-tollgate-cache"), "hit");
    let _ = r.bytes().await.unwrap();

    // Not deterministic (default temperature): never cached.
    for _ in 0..2 {
        let r = g.post("/v1/chat/completions").json(&chat("gpt-4o-mini", "creative", false)).send().await.unwrap();
        assert_eq!(h(&r, "x-tollgate-cache"), "");
        let _ = r.bytes().await.unwrap();
    }
    let r = g.post("/v1/chat/completions").header("x-tollgate-cache", "sometimes").json(&body).send().await.unwrap();
    assert_eq!(r.status(), 400);
    g.stop().await;
}

#[tokio::test]
async fn prompt_cache_insight_flags_a_changing_prefix() {
    let g = Harness::start().await;
    for i in 0..6 {
        // Stable system prompt for one prompt version…
        let stable = json!({"model": "claude-haiku-4-5", "max_tokens": 20, "system": "You are the billing assistant.",
            "messages": [{"role": "user", "content": format!("question {i}")}]});
        let r = g.post("/v1/messages").header("x-tollgate-prompt", "billing@v1").json(&stable).send().await.unwrap();
        let _ = r.bytes().await.unwrap();
        // …and one that embeds the time in its system prompt, so no two calls share a prefix.
        let moving = json!({"model": "claude-haiku-4-5", "max_tokens": 20, "system": format!("You are the billing assistant. Now: 12:0{i}"),
            "messages": [{"role": "user", "content": format!("question {i}")}]});
        let r = g.post("/v1/messages").header("x-tollgate-prompt", "billing@v2").json(&moving).send().await.unwrap();
        let _ = r.bytes().await.unwrap();
    }
    assert_eq!(g.rows().len(), 12);
    let v: Value =
        g.http.get(format!("{}/api/v1/prompt-cache?by=prompt", g.base)).send().await.unwrap().json().await.unwrap();
    let rows = v["rows"].as_array().unwrap();
    let find = |p: &str| rows.iter().find(|r| r["prompt"] == p).unwrap().clone();
    let (v1, v2) = (find("billing@v1"), find("billing@v2"));
    assert_eq!(v1["unstable_prefix"], false);
    assert_eq!(v1["distinct_prefixes"], 1);
    assert_eq!(v2["unstable_prefix"], true);
    assert_eq!(v2["distinct_prefixes"], 6);
    // The ratio is the ledger's cached reads over all input, to four decimals.
    let ledger: Vec<_> =
        g.rows().into_iter().filter(|r| r.attribution.prompt.as_deref() == Some("billing@v1")).collect();
    let read: u64 = ledger.iter().map(|r| r.usage.cache_read).sum();
    let input: u64 = ledger.iter().map(|r| r.usage.input_tokens()).sum();
    let bp = read * 10_000 / input;
    assert_eq!(v1["hit_ratio"], format!("{}.{:04}", bp / 10_000, bp % 10_000));
    let saved: i64 = ledger.iter().map(|r| r.cache_savings.nanos()).sum();
    assert_eq!(v1["saved_usd"], Money::from_nanos(saved).to_string());
    g.stop().await;
}

fn cosine(a: &str, b: &str) -> f32 {
    let (x, y) = (tollgate_mock::embed(a, 64), tollgate_mock::embed(b, 64));
    x.iter().zip(&y).map(|(p, q)| p * q).sum()
}

async fn semantic_harness(threshold: f32) -> Harness {
    let extra = format!(
        "[semantic_cache]\nenabled = true\nembeddings_model = \"text-embedding-3-small\"\nthreshold = \"{threshold:.4}\"\n"
    );
    Harness::start_with(&extra, |c| c).await
}

#[tokio::test]
async fn semantic_cache_hits_a_paraphrase_above_the_threshold_only() {
    let first = "please tell me the capital city of france";
    let reordered = "tell me please, the capital city of France?";
    let related = "please tell me the largest city of france";
    let s = cosine(first, related);
    assert!(s > 0.3 && s < 0.97, "the test needs a partial paraphrase: {s}");
    assert!(cosine(first, reordered) > 0.999);

    for (threshold, related_hits) in [(s + 0.01, false), (s - 0.01, true)] {
        let g = semantic_harness(threshold).await;
        let ask = |text: &str| g.post("/v1/chat/completions").json(&det("gpt-4o-mini", text, false)).send();
        let r = ask(first).await.unwrap();
        assert_eq!(h(&r, "x-tollgate-cache"), "miss");
        let first_body = r.text().await.unwrap();
        let r = ask(reordered).await.unwrap();
        assert_eq!(h(&r, "x-tollgate-cache"), "hit", "same words, other order and punctuation");
        assert!(
            h(&r, "x-tollgate-cache-similarity").starts_with("1.0")
                || h(&r, "x-tollgate-cache-similarity").starts_with("0.99")
        );
        assert_eq!(r.text().await.unwrap(), first_body);
        let r = ask(related).await.unwrap();
        let got = h(&r, "x-tollgate-cache").to_string();
        let _ = r.bytes().await.unwrap();
        assert_eq!(got == "hit", related_hits, "threshold {threshold}, similarity {s}");
        // Each lookup's embedding call went through the gateway and is in the ledger.
        let rows = g.rows();
        let embeds = rows
            .iter()
            .filter(|r| r.endpoint == "embeddings" && r.attribution.tag("purpose") == Some("semantic_cache"))
            .count();
        assert_eq!(embeds, 3);
        assert!(rows.iter().filter(|r| r.endpoint == "embeddings").all(|r| r.cost.is_some_and(|c| c.nanos() > 0)));
        g.stop().await;
    }
}

/// Two replicas share answers through Redis (a real server: TOLLGATE_TEST_REDIS_URL).
#[tokio::test]
async fn redis_cache_is_shared_by_replicas() {
    let Some(url) = services::service_url("TOLLGATE_TEST_REDIS_URL", "Redis") else { return };
    let extra = format!("[cache]\nscope = \"team\"\nredis_url = \"{url}\"\n");
    let (a, b) = (Harness::start_with(&extra, |c| c).await, Harness::start_with(&extra, |c| c).await);
    let text = format!("shared answer {}", uuid::Uuid::now_v7());
    let r = a.post("/v1/chat/completions").json(&det("gpt-4o-mini", &text, false)).send().await.unwrap();
    assert_eq!(h(&r, "x-tollgate-cache"), "miss");
    let body = r.text().await.unwrap();
    let mut got = String::new();
    for _ in 0..50 {
        let r = b
            .post("/v1/chat/completions")
            .header("x-tollgate-cache", "read")
            .json(&det("gpt-4o-mini", &text, false))
            .send()
            .await
            .unwrap();
        got = h(&r, "x-tollgate-cache").to_string();
        let t = r.text().await.unwrap();
        if got == "hit" {
            assert_eq!(t, body);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(got, "hit", "the second replica reads the first one's answer from Redis");
    a.stop().await;
    b.stop().await;
}
