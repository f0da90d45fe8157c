//! Amazon Bedrock as a provider, end to end against the mock provider, which
//! verifies every request's AWS Signature V4 (403 on a bad one): OpenAI chat
//! and Anthropic Messages clients, translated to Converse and back, streams
//! decoded from AWS's event-stream framing.
//!
//! Expected figures are worked out by hand from the mock's formulas
//! (`crates/tollgate-mock/src/lib.rs`, *Bedrock*: prompt `P = 8 + T/4` for `T`
//! bytes of system and message text; with a cache point, reads `P/4`, writes
//! `P/8`, `inputTokens` the rest; output `min(maxTokens, 24)`) and the
//! catalog's Bedrock price of `anthropic.claude-3-5-haiku-20241022-v1:0`
//! (<https://aws.amazon.com/bedrock/pricing/>): input $0.80/M = 800 nanos a
//! token, cache read $0.08/M = 80, cache write $1/M = 1,000, output $4/M = 4,000.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{chat, header, Harness};
use serde_json::{json, Value};
use tollgate::ledger::UsageSource;
use tollgate_units::{Money, Usage};

const MODEL: &str = "us.anthropic.claude-3-5-haiku-20241022-v1:0";

async fn harness(secret: &str) -> Harness {
    let secret = secret.to_string();
    Harness::start_with("", move |mut c| {
        let mock = c.providers[0].base_url.trim_end_matches("/v1").to_string();
        c.providers.push(tollgate::config::Provider {
            name: "bedrock".into(),
            kind: tollgate_providers::ProviderKind::Bedrock,
            base_url: mock,
            api_key: None,
            api_version: None,
            timeout: std::time::Duration::from_secs(5),
            max_retries: 0,
            slots: None,
            aws: Some(tollgate::config::AwsSigning {
                region: "us-east-1".into(),
                access_key_id: tollgate::config::Secret::new(tollgate_mock::DEFAULT_AWS_ACCESS_KEY_ID.into()),
                secret_access_key: tollgate::config::Secret::new(secret),
                session_token: None,
            }),
            vertex: None,
            admin_key_env: None,
            admin_key: None,
            billing_accounts: Vec::new(),
        });
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

/// "Summarise toll roads." (21 bytes): P = 8 + 21/4 = 13 input, 24 output
///   13 × 800 + 24 × 4_000 = 10_400 + 96_000 = 106_400 nanos.
const PLAIN: &str = "Summarise toll roads.";
const PLAIN_COST: i64 = 106_400;

#[tokio::test]
async fn openai_chat_reaches_bedrock_signed_and_is_priced_from_converse_usage() {
    let h = harness(tollgate_mock::DEFAULT_AWS_SECRET_ACCESS_KEY).await;
    let r = h.post("/v1/chat/completions").json(&chat(MODEL, PLAIN, false)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let id = header(&r, "x-tollgate-request-id");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["usage"]["prompt_tokens"], 13);
    assert_eq!(v["usage"]["completion_tokens"], 24);
    assert!(v["choices"][0]["message"]["content"].as_str().is_some_and(|s| !s.is_empty()));
    let row = h.row(&id);
    assert_eq!(row.provider.as_deref(), Some("bedrock"));
    assert_eq!(row.usage_source, UsageSource::Provider);
    assert_eq!(row.usage, Usage { input: 13, output: 24, ..Usage::default() });
    assert_eq!(row.cost, nanos(PLAIN_COST));
    let s = stats(&h).await;
    assert_eq!((s["refused"].as_u64(), s["last_aws_region"].as_str()), (Some(0), Some("us-east-1")), "{s}");
    assert_eq!(s["last_path"], "/model/us.anthropic.claude-3-5-haiku-20241022-v1%3A0/converse", "{s}");

    // The same request streamed: the same usage, decoded from the event stream.
    let r = h
        .post("/v1/chat/completions")
        .json(&json!({"model": MODEL, "stream": true, "stream_options": {"include_usage": true},
                      "messages": [{"role": "user", "content": PLAIN}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = header(&r, "x-tollgate-request-id");
    let text = r.text().await.unwrap();
    assert!(text.contains("chat.completion.chunk") && text.contains("data: [DONE]"), "{text}");
    assert!(text.contains("\"prompt_tokens\":13"), "the usage chunk the client asked for: {text}");
    let row = h.row(&id);
    assert!(row.streamed);
    assert_eq!(row.usage, Usage { input: 13, output: 24, ..Usage::default() });
    assert_eq!(row.cost, nanos(PLAIN_COST));
    h.stop().await;
}

/// A system prompt of 399 bytes with a cache breakpoint, and "q": T = 400,
/// P = 108, reads 27, writes 13, input 68, output 24:
///   68 × 800 + 27 × 80 + 13 × 1_000 + 24 × 4_000
///   = 54_400 + 2_160 + 13_000 + 96_000 = 165_560 nanos.
#[tokio::test]
async fn anthropic_messages_reach_bedrock_with_cache_points_and_the_same_usage_streamed() {
    let h = harness(tollgate_mock::DEFAULT_AWS_SECRET_ACCESS_KEY).await;
    let system = "a".repeat(399);
    for stream in [false, true] {
        let body = json!({
            "model": MODEL, "max_tokens": 64, "stream": stream,
            "system": [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": "q"}],
        });
        let r = h.post("/v1/messages").header("anthropic-version", "2023-06-01").json(&body).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let id = header(&r, "x-tollgate-request-id");
        let text = r.text().await.unwrap();
        if stream {
            assert!(text.contains("event: message_start") && text.contains("event: message_stop"), "{text}");
            assert!(text.contains("\"cache_read_input_tokens\":27"), "{text}");
        } else {
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["type"], "message");
            assert_eq!(
                v["usage"],
                json!({"input_tokens": 68, "output_tokens": 24, "cache_read_input_tokens": 27, "cache_creation_input_tokens": 13})
            );
        }
        let row = h.row(&id);
        assert_eq!(
            row.usage,
            Usage { input: 68, cache_read: 27, cache_write_5m: 13, output: 24, ..Usage::default() },
            "stream: {stream}"
        );
        assert_eq!(row.cost, nanos(165_560), "stream: {stream}");
    }
    h.stop().await;
}

#[tokio::test]
async fn a_bad_signature_is_refused_by_bedrock_and_a_corrupt_frame_is_an_error() {
    let h = harness("not-the-secret").await;
    let r = h.post("/v1/chat/completions").json(&chat(MODEL, PLAIN, false)).send().await.unwrap();
    assert_eq!(r.status(), 502, "the provider refused the gateway's credentials");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "upstream_error");
    let s = stats(&h).await;
    assert_eq!(s["refused"], 1, "{s}");
    h.stop().await;

    let h = harness(tollgate_mock::DEFAULT_AWS_SECRET_ACCESS_KEY).await;
    let r = h
        .post("/v1/chat/completions")
        .json(&chat(MODEL, "[mock corrupt_frame] Summarise toll roads.", true))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let id = header(&r, "x-tollgate-request-id");
    let text = r.text().await.unwrap();
    // The first frame primes the stream (200); the corrupt second one ends it with an error event.
    assert_eq!(status, 200);
    assert!(text.contains("upstream_error") && !text.contains("data: [DONE]"), "{text}");
    let row = h.row(&id);
    assert_eq!(row.error_code.as_deref(), Some("upstream_error"));
    assert_eq!(row.usage_source, UsageSource::Estimated, "no final usage: estimated, never silently complete");
    h.stop().await;
}
