//! Criterion microbenchmarks of the provider layer's per-request work: body inspection, request preparation, whole-body translation, and per-chunk SSE parsing with usage extraction.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use tollgate_providers::{inspect, prepare, sse, ApiFormat, ProviderKind, ResponseTranslator, Target};

fn fixture(path: &str) -> Vec<u8> {
    let full = format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

fn target(kind: ProviderKind, model: &'static str) -> Target<'static> {
    let base_url = match kind {
        ProviderKind::Anthropic | ProviderKind::Gemini => "http://127.0.0.1:9999",
        _ => "http://127.0.0.1:9999/v1",
    };
    Target { kind, base_url, api_key: Some("sk-bench"), model, api_version: None }
}

/// The request the load benchmark sends (bench/compare.sh).
const SMALL_CHAT: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello in one short sentence."}],"max_tokens":64}"#;

/// A multi-turn conversation of about `turns` × 400 bytes, as agents send.
fn long_chat(turns: usize, stream: bool) -> String {
    let mut msgs = Vec::with_capacity(turns);
    for i in 0..turns {
        let role = if i % 2 == 0 { "user" } else { "assistant" };
        let text = format!("Turn {i}: {}", "the quick brown fox jumps over the lazy dog, ".repeat(8));
        msgs.push(serde_json::json!({"role": role, "content": text}));
    }
    serde_json::json!({
        "model": "gpt-4o-mini",
        "messages": msgs,
        "stream": stream,
        "user": "u-42",
        "metadata": {"feature": "summarize", "env": "prod"},
        "max_tokens": 256
    })
    .to_string()
}

fn translator(format: ApiFormat, kind: ProviderKind, model: &'static str, body: &str) -> ResponseTranslator {
    let info = inspect(format, body.as_bytes()).unwrap();
    prepare(format, &target(kind, model), body.as_bytes(), &info).unwrap().1
}

/// Splits an SSE fixture at its event boundaries, the way a provider's writes usually arrive.
fn events_of(data: &[u8]) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + 1 < data.len() {
        let sep = if data[i] == b'\n' && data[i + 1] == b'\n' {
            2
        } else if i + 3 < data.len() && &data[i..i + 4] == b"\r\n\r\n" {
            4
        } else {
            0
        };
        if sep > 0 {
            out.push(Bytes::copy_from_slice(&data[start..i + sep]));
            i += sep;
            start = i;
        } else {
            i += 1;
        }
    }
    if start < data.len() {
        out.push(Bytes::copy_from_slice(&data[start..]));
    }
    out
}

fn bench_inspect(c: &mut Criterion) {
    let mut g = c.benchmark_group("inspect");
    let long = long_chat(40, false);
    for (name, format, body) in [
        ("openai_chat_small", ApiFormat::OpenAiChat, SMALL_CHAT.to_string()),
        ("openai_chat_16k", ApiFormat::OpenAiChat, long.clone()),
        (
            "anthropic_messages_small",
            ApiFormat::AnthropicMessages,
            r#"{"model":"claude-haiku-4-5","max_tokens":64,"system":"You are terse.","messages":[{"role":"user","content":"Say hello."}],"metadata":{"user_id":"u-1"}}"#.to_string(),
        ),
    ] {
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(name), &body, |b, body| {
            b.iter(|| inspect(format, black_box(body.as_bytes())).unwrap())
        });
    }
    g.finish();
}

fn bench_prepare(c: &mut Criterion) {
    let mut g = c.benchmark_group("prepare");
    for (name, body) in [("openai_chat_small", SMALL_CHAT.to_string()), ("openai_chat_16k", long_chat(40, false))] {
        let info = inspect(ApiFormat::OpenAiChat, body.as_bytes()).unwrap();
        let t = target(ProviderKind::OpenAi, "gpt-4o-mini");
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(BenchmarkId::new("openai_to_openai", name), |b| {
            b.iter(|| prepare(ApiFormat::OpenAiChat, &t, black_box(body.as_bytes()), &info).unwrap())
        });
        let ta = target(ProviderKind::Anthropic, "claude-haiku-4-5");
        g.bench_function(BenchmarkId::new("openai_to_anthropic", name), |b| {
            b.iter(|| prepare(ApiFormat::OpenAiChat, &ta, black_box(body.as_bytes()), &info).unwrap())
        });
    }
    g.finish();
}

fn bench_translate_body(c: &mut Criterion) {
    let mut g = c.benchmark_group("translate_body");
    let cases = [
        ("openai_chat", ApiFormat::OpenAiChat, ProviderKind::OpenAi, "o4-mini", SMALL_CHAT, "openai/chat.json"),
        (
            "anthropic_native",
            ApiFormat::AnthropicMessages,
            ProviderKind::Anthropic,
            "claude-haiku-4-5",
            r#"{"model":"claude-haiku-4-5","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}"#,
            "anthropic/messages.json",
        ),
        (
            "gemini_to_chat",
            ApiFormat::OpenAiChat,
            ProviderKind::Gemini,
            "gemini-2.5-flash",
            SMALL_CHAT,
            "gemini/generate.json",
        ),
    ];
    for (name, format, kind, model, req, fix) in cases {
        let t = translator(format, kind, model, req);
        let body = fixture(fix);
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(name, |b| b.iter(|| t.translate_body(black_box(&body)).unwrap()));
    }
    g.finish();
}

/// Whole fixture streams, fed one upstream event per `push` (per-element time = per chunk).
fn bench_stream(c: &mut Criterion) {
    let mut g = c.benchmark_group("stream_per_chunk");
    let stream_req = SMALL_CHAT.replace("\"max_tokens\":64", "\"max_tokens\":64,\"stream\":true");
    let cases = [
        ("openai_chat", ApiFormat::OpenAiChat, ProviderKind::OpenAi, "o4-mini", stream_req.clone(), "openai/chat.sse"),
        (
            "openai_responses",
            ApiFormat::OpenAiResponses,
            ProviderKind::OpenAi,
            "gpt-4o-mini",
            r#"{"model":"gpt-4o-mini","input":"hi","stream":true}"#.to_string(),
            "openai/responses.sse",
        ),
        (
            "anthropic_native",
            ApiFormat::AnthropicMessages,
            ProviderKind::Anthropic,
            "claude-haiku-4-5",
            r#"{"model":"claude-haiku-4-5","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#
                .to_string(),
            "anthropic/messages.sse",
        ),
        (
            "anthropic_to_chat",
            ApiFormat::OpenAiChat,
            ProviderKind::Anthropic,
            "claude-haiku-4-5",
            stream_req.clone(),
            "anthropic/messages.sse",
        ),
        (
            "gemini_to_chat",
            ApiFormat::OpenAiChat,
            ProviderKind::Gemini,
            "gemini-2.5-flash",
            stream_req.clone(),
            "gemini/generate.sse",
        ),
    ];
    for (name, format, kind, model, req, fix) in cases {
        let t = translator(format, kind, model, &req);
        let data = fixture(fix);
        let chunks = events_of(&data);
        g.throughput(Throughput::Elements(chunks.len() as u64));
        g.bench_function(name, |b| {
            b.iter_batched_ref(
                || (t.stream(), Vec::<Bytes>::with_capacity(8)),
                |(s, out)| {
                    for ch in &chunks {
                        s.push(black_box(ch), out).unwrap();
                        out.clear();
                    }
                    let end = s.finish(out);
                    assert!(end.usage.is_some(), "{name}: the fixture stream reports usage");
                    end
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();

    // The SSE framing alone, without JSON: what the parser costs per event.
    let mut g = c.benchmark_group("sse_parser");
    let data = fixture("openai/chat.sse");
    let chunks = events_of(&data);
    g.throughput(Throughput::Elements(chunks.len() as u64));
    g.bench_function("openai_chat_events", |b| {
        b.iter_batched_ref(
            || (sse::Parser::new(), Vec::with_capacity(16)),
            |(p, events)| {
                for ch in &chunks {
                    p.push(black_box(ch), events);
                }
                p.finish(events);
                events.len()
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench_inspect, bench_prepare, bench_translate_body, bench_stream);
criterion_main!(benches);
