//! Google Vertex AI as a provider and the native Gemini route, end to end
//! against the mock provider, which issues access tokens for its test
//! service account (a JWT signed with the account's key, RS256) and refuses
//! Vertex calls without a valid one (401).
//!
//! Expected figures are worked out by hand from the mock's formulas
//! (`crates/tollgate-mock/src/lib.rs`: prompt `P = 8 + T/4` for `T` bytes of
//! text; Gemini reports `P/4` of it cached; Anthropic reports cache reads
//! `P/4` and writes `P/8` (5-minute `write/2`, 1-hour the rest) outside its
//! `input_tokens`; output `min(max tokens, 24)`) and the catalog's Vertex
//! prices (<https://cloud.google.com/vertex-ai/generative-ai/pricing>), in
//! nanos a token:
//!
//! | model | input | cache read | write 5m | write 1h | output |
//! |---|---|---|---|---|---|
//! | gemini-2.5-flash | 300 | 30 | — | — | 2,500 |
//! | claude-sonnet-4-5@20250929 | 3,000 | 300 | 3,750 | 6,000 | 15,000 |

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{chat, header, Harness};
use serde_json::{json, Value};
use tollgate::ledger::UsageSource;
use tollgate_units::{Money, Usage};

const PROMPT: &str = "Summarise toll roads."; // 21 bytes: P = 13

/// "Summarise toll roads." on gemini-2.5-flash: P = 13, 3 cached, 10 uncached, 24 out:
///   10 × 300 + 3 × 30 + 24 × 2_500 = 3_000 + 90 + 60_000 = 63_090 nanos.
const GEMINI_COST: i64 = 63_090;
fn gemini_usage() -> Usage {
    Usage { input: 10, cache_read: 3, output: 24, ..Usage::default() }
}

async fn harness(mock: tollgate_mock::MockConfig) -> Harness {
    Harness::start_with_mock(mock, "", |mut c| {
        let mock = c.providers[0].base_url.trim_end_matches("/v1").to_string();
        c.providers.push(tollgate::config::Provider {
            name: "vertex".into(),
            kind: tollgate_providers::ProviderKind::Vertex,
            base_url: format!("{mock}/v1/projects/tollgate-mock/locations/us-central1"),
            api_key: None,
            api_version: None,
            timeout: std::time::Duration::from_secs(5),
            max_retries: 0,
            slots: None,
            aws: None,
            vertex: Some(tollgate::config::VertexAuth {
                project: "tollgate-mock".into(),
                location: "us-central1".into(),
                service_account_json: tollgate::config::Secret::new(tollgate_mock::test_service_account_json(
                    &format!("{mock}/token"),
                )),
            }),
            admin_key_env: None,
            admin_key: None,
            billing_accounts: Vec::new(),
        });
        let idx = c.providers.len() - 1;
        for (name, model) in [("vg", "gemini-2.5-flash"), ("vc", "claude-sonnet-4-5@20250929")] {
            c.routes.insert(
                name.into(),
                tollgate::config::Route {
                    name: name.into(),
                    targets: vec![tollgate::config::RouteTarget { provider: idx, model: model.into(), weight: 1 }],
                    fallbacks: vec![],
                    strategy: tollgate::config::Strategy::Ordered,
                },
            );
        }
        c
    })
    .await
}

async fn stats(h: &Harness) -> Value {
    h.http.get(format!("{}/mock/stats", h.mock)).send().await.unwrap().json().await.unwrap()
}

fn nanos(n: i64) -> Option<Money> {
    Some(Money::from_nanos(n))
}

#[tokio::test]
async fn chat_and_messages_reach_vertex_with_one_token_for_many_requests() {
    let h = harness(tollgate_mock::MockConfig::default()).await;
    for _ in 0..3 {
        let r = h.post("/v1/chat/completions").json(&chat("vg", PROMPT, false)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let id = header(&r, "x-tollgate-request-id");
        let row = h.row(&id);
        assert_eq!((row.provider.as_deref(), row.usage_source), (Some("vertex"), UsageSource::Provider));
        assert_eq!(row.usage, gemini_usage());
        assert_eq!(row.cost, nanos(GEMINI_COST));
    }
    let s = stats(&h).await;
    assert_eq!(s["token_requests"], 1, "one token for many requests: {s}");
    assert_eq!(s["refused"], 0, "{s}");
    assert_eq!(
        s["last_path"],
        "/v1/projects/tollgate-mock/locations/us-central1/publishers/google/models/gemini-2.5-flash:generateContent",
        "{s}"
    );

    // Claude on Vertex through the Messages API, streamed and not: P = 13,
    // reads 3, writes 1 (5m 0, 1h 1), input 9, output 24:
    //   9 × 3_000 + 3 × 300 + 1 × 6_000 + 24 × 15_000 = 27_000 + 900 + 6_000 + 360_000 = 393_900.
    for stream in [false, true] {
        let body = json!({"model": "vc", "max_tokens": 64, "stream": stream,
                          "messages": [{"role": "user", "content": PROMPT}]});
        let r = h.post("/v1/messages").header("anthropic-version", "2023-06-01").json(&body).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let id = header(&r, "x-tollgate-request-id");
        let _ = r.text().await.unwrap();
        let row = h.row(&id);
        assert_eq!(
            row.usage,
            Usage { input: 9, cache_read: 3, cache_write_1h: 1, output: 24, ..Usage::default() },
            "stream: {stream}"
        );
        assert_eq!(row.cost, nanos(393_900), "stream: {stream}");
    }
    let s = stats(&h).await;
    assert!(
        s["last_path"]
            .as_str()
            .unwrap()
            .ends_with("/publishers/anthropic/models/claude-sonnet-4-5@20250929:streamRawPredict"),
        "{s}"
    );
    assert_eq!(s["token_requests"], 1, "{s}");
    h.stop().await;
}

#[tokio::test]
async fn the_native_gemini_route_takes_google_keys_and_streams_the_same_usage() {
    let h = harness(tollgate_mock::MockConfig::default()).await;
    let body = json!({"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]});
    let r = h
        .http
        .post(format!("{}/v1beta/models/vg:generateContent", h.base))
        .header("x-goog-api-key", &h.key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = header(&r, "x-tollgate-request-id");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["usageMetadata"]["promptTokenCount"], 13);
    let row = h.row(&id);
    assert_eq!(row.endpoint, "generate_content");
    assert_eq!((row.usage, row.cost), (gemini_usage(), nanos(GEMINI_COST)));

    // Streamed, the key in the query string as Google's SDKs may send it.
    let r = h
        .http
        .post(format!("{}/v1beta/models/vg:streamGenerateContent?alt=sse&key={}", h.base, h.key))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = header(&r, "x-tollgate-request-id");
    let text = r.text().await.unwrap();
    assert!(text.contains("usageMetadata") && text.contains("finishReason"), "{text}");
    let row = h.row(&id);
    assert!(row.streamed);
    assert_eq!((row.usage, row.cost), (gemini_usage(), nanos(GEMINI_COST)));

    // A Gemini name without a [[models]] entry goes to the AI Studio provider,
    // its body as it came; the same prices there (gemini-2.5-flash: $0.30 in,
    // $0.03 cached, $2.50 out, https://ai.google.dev/gemini-api/docs/pricing).
    let r = h
        .http
        .post(format!("{}/v1beta/models/gemini-2.5-flash:generateContent", h.base))
        .header("x-goog-api-key", &h.key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let row = h.row(&header(&r, "x-tollgate-request-id"));
    assert_eq!(row.provider.as_deref(), Some("gemini"));
    assert_eq!((row.usage, row.cost), (gemini_usage(), nanos(GEMINI_COST)));
    let s = stats(&h).await;
    assert_eq!(s["last_path"], "/v1beta/models/gemini-2.5-flash:generateContent", "{s}");

    // Errors come in Google's shape, with tollgate's code as the reason.
    let r = h
        .http
        .post(format!("{}/v1beta/models/vg:generateContent", h.base))
        .header("x-goog-api-key", "tg_not_a_key")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["status"], "UNAUTHENTICATED");
    assert_eq!(v["error"]["details"][0]["reason"], "invalid_api_key");
    let r = h
        .http
        .post(format!("{}/v1beta/models/vg:countTokens", h.base))
        .header("x-goog-api-key", &h.key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    h.stop().await;
}

#[tokio::test]
async fn a_token_endpoint_that_fails_gives_a_clear_502_at_once_then_recovers() {
    let mock = tollgate_mock::MockConfig { token_failures: 1, ..tollgate_mock::MockConfig::default() };
    let h = harness(mock).await;
    let started = std::time::Instant::now();
    let r = h.post("/v1/chat/completions").json(&chat("vg", PROMPT, false)).send().await.unwrap();
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "upstream_error");
    assert!(v["error"]["message"].as_str().unwrap().contains("access token"), "{v}");
    assert!(started.elapsed() < std::time::Duration::from_secs(8), "no hang");
    assert_eq!(stats(&h).await["total"], 0, "nothing reached Vertex without a token");
    // After the failure, a later request gets a token and goes through.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let r = h.post("/v1/chat/completions").json(&chat("vg", PROMPT, false)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    h.stop().await;
}
