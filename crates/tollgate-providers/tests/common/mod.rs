//! Shared helpers for the adapter integration tests: fixtures, targets, stream runs.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use serde_json::Value;
use tollgate_providers::{
    inspect, prepare, ApiFormat, PreparedRequest, ProviderKind, ResponseTranslator, StreamEnd, Target,
};

pub fn fixture(path: &str) -> Vec<u8> {
    let full = format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

pub fn target(kind: ProviderKind, model: &'static str) -> Target<'static> {
    let base_url = match kind {
        ProviderKind::OpenAi => "https://api.openai.com/v1/",
        ProviderKind::OpenAiCompatible => "http://127.0.0.1:8000/v1",
        ProviderKind::AzureOpenAi => "https://res.openai.azure.com",
        ProviderKind::Anthropic => "https://api.anthropic.com",
        ProviderKind::Gemini => "https://generativelanguage.googleapis.com",
        ProviderKind::Bedrock => "https://bedrock-runtime.us-east-1.amazonaws.com",
        ProviderKind::Vertex => "https://us-east5-aiplatform.googleapis.com/v1/projects/p/locations/us-east5",
    };
    Target { kind, base_url, api_key: Some("sk-test"), model, api_version: None }
}

/// `inspect` + `prepare`, as the gateway calls them.
pub fn prep(format: ApiFormat, t: &Target<'_>, body: &str) -> (PreparedRequest, ResponseTranslator) {
    let info = inspect(format, body.as_bytes()).unwrap();
    prepare(format, t, body.as_bytes(), &info).unwrap()
}

pub fn body_json(p: &PreparedRequest) -> Value {
    serde_json::from_slice(&p.body).unwrap()
}

/// Feed `data` cut at `cuts` (sorted or not, out-of-range ignored); return
/// the concatenated client bytes (terminator excluded) and the end report.
pub fn run_stream(t: &ResponseTranslator, data: &[u8], cuts: &[usize]) -> (Vec<u8>, StreamEnd) {
    let mut points: Vec<usize> = cuts.iter().copied().filter(|&c| c > 0 && c < data.len()).collect();
    points.sort_unstable();
    points.dedup();
    let mut s = t.stream();
    let mut out: Vec<Bytes> = Vec::new();
    let mut prev = 0;
    for p in points.into_iter().chain(std::iter::once(data.len())) {
        s.push(&data[prev..p], &mut out).unwrap();
        prev = p;
    }
    let end = s.finish(&mut out);
    (out.concat(), end)
}

pub fn byte_by_byte(t: &ResponseTranslator, data: &[u8]) -> (Vec<u8>, StreamEnd) {
    let cuts: Vec<usize> = (1..data.len()).collect();
    run_stream(t, data, &cuts)
}

/// The `data:` payloads of an SSE byte string, `[DONE]` included.
pub fn data_lines(bytes: &[u8]) -> Vec<String> {
    std::str::from_utf8(bytes)
        .unwrap()
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| e.lines().filter_map(|l| l.strip_prefix("data: ")).collect::<Vec<_>>().join("\n"))
        .collect()
}

/// What the OpenAI SDKs require of a `chat.completion` object.
pub fn assert_chat_completion(v: &Value) {
    assert!(v["id"].is_string(), "id: {v}");
    assert_eq!(v["object"], "chat.completion");
    assert!(v["created"].is_u64(), "created: {v}");
    assert!(v["model"].is_string(), "model: {v}");
    let choices = v["choices"].as_array().unwrap();
    assert!(!choices.is_empty());
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], i);
        assert_eq!(c["message"]["role"], "assistant");
        assert!(c["message"]["content"].is_string() || c["message"]["content"].is_null());
        assert!(c["finish_reason"].is_string(), "finish_reason: {v}");
    }
}

/// What the OpenAI SDKs require of a `chat.completion.chunk` object.
pub fn assert_chunk(v: &Value) {
    assert!(v["id"].is_string(), "id: {v}");
    assert_eq!(v["object"], "chat.completion.chunk");
    assert!(v["created"].is_u64());
    assert!(v["model"].is_string());
    for c in v["choices"].as_array().unwrap() {
        assert_eq!(c["index"], 0);
        assert!(c["delta"].is_object());
        assert!(c["finish_reason"].is_null() || c["finish_reason"].is_string());
    }
}
