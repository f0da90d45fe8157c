//! Usage from real payload shapes: whole bodies and streams (cut anywhere)
#![allow(clippy::unwrap_used)] // tests may unwrap
//! give the same disjoint buckets.

mod common;

use common::*;
use proptest::prelude::*;
use tollgate_providers::{ApiFormat, ProviderKind, ResponseTranslator, Usage};

struct Case {
    name: &'static str,
    format: ApiFormat,
    kind: ProviderKind,
    body: &'static str,
    json: &'static str,
    sse: &'static str,
    expect: Usage,
}

const CHAT: &str = r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}"#;

fn cases() -> Vec<Case> {
    let openai_chat = Usage { input: 86, cache_read: 1920, output: 44, reasoning: 256, ..Usage::default() };
    let responses = Usage { input: 476, cache_read: 1024, output: 80, reasoning: 320, ..Usage::default() };
    let anthropic = Usage {
        input: 21,
        cache_read: 12000,
        cache_write_5m: 1000,
        cache_write_1h: 2000,
        output: 150,
        ..Usage::default()
    };
    let anthropic_tools = Usage { input: 472, cache_write_5m: 1800, output: 89, ..Usage::default() };
    let gemini = Usage { input: 1104, cache_read: 4096, output: 12, reasoning: 258, ..Usage::default() };
    let native = r#"{"model":"m","max_tokens":256,"messages":[{"role":"user","content":"hi"}],"stream":true}"#;
    vec![
        Case {
            name: "openai chat",
            format: ApiFormat::OpenAiChat,
            kind: ProviderKind::OpenAi,
            body: CHAT,
            json: "openai/chat.json",
            sse: "openai/chat.sse",
            expect: openai_chat,
        },
        Case {
            name: "openai responses",
            format: ApiFormat::OpenAiResponses,
            kind: ProviderKind::OpenAi,
            body: r#"{"model":"m","input":"hi","stream":true}"#,
            json: "openai/responses.json",
            sse: "openai/responses.sse",
            expect: responses,
        },
        Case {
            name: "anthropic native",
            format: ApiFormat::AnthropicMessages,
            kind: ProviderKind::Anthropic,
            body: native,
            json: "anthropic/messages.json",
            sse: "anthropic/messages.sse",
            expect: anthropic,
        },
        Case {
            name: "anthropic native tools",
            format: ApiFormat::AnthropicMessages,
            kind: ProviderKind::Anthropic,
            body: native,
            json: "anthropic/tool_use.json",
            sse: "anthropic/tool_use.sse",
            expect: anthropic_tools,
        },
        Case {
            name: "anthropic via chat",
            format: ApiFormat::OpenAiChat,
            kind: ProviderKind::Anthropic,
            body: CHAT,
            json: "anthropic/messages.json",
            sse: "anthropic/messages.sse",
            expect: anthropic,
        },
        Case {
            name: "anthropic tools via chat",
            format: ApiFormat::OpenAiChat,
            kind: ProviderKind::Anthropic,
            body: CHAT,
            json: "anthropic/tool_use.json",
            sse: "anthropic/tool_use.sse",
            expect: anthropic_tools,
        },
        Case {
            name: "gemini via chat",
            format: ApiFormat::OpenAiChat,
            kind: ProviderKind::Gemini,
            body: CHAT,
            json: "gemini/generate.json",
            sse: "gemini/generate.sse",
            expect: gemini,
        },
    ]
}

fn translator(c: &Case) -> ResponseTranslator {
    prep(c.format, &target(c.kind, "m"), c.body).1
}

#[test]
fn whole_bodies_give_the_expected_buckets() {
    for c in cases() {
        let t = translator(&c).translate_body(&fixture(c.json)).unwrap();
        assert_eq!(t.usage, Some(c.expect), "{}", c.name);
        assert!(t.output_text.is_empty(), "{}: text kept although usage is known", c.name);
        assert!(t.model.is_some(), "{}", c.name);
    }
}

#[test]
fn streams_whole_and_byte_by_byte_match_the_body() {
    for c in cases() {
        let t = translator(&c);
        let data = fixture(c.sse);
        let (out_whole, end) = run_stream(&t, &data, &[]);
        assert_eq!(end.usage, Some(c.expect), "{}", c.name);
        assert!(end.completed, "{}", c.name);
        assert!(!end.terminator.is_empty(), "{}", c.name);
        assert!(end.model.is_some(), "{}", c.name);
        let (out_bytes, end_bytes) = byte_by_byte(&t, &data);
        assert_eq!(end_bytes.usage, Some(c.expect), "{}", c.name);
        assert_eq!(out_bytes, out_whole, "{}", c.name);
        assert_eq!(end_bytes.terminator, end.terminator, "{}", c.name);
    }
}

#[test]
fn usage_so_far_tracks_the_stream() {
    let c = &cases()[2];
    let t = translator(c);
    let data = fixture(c.sse);
    let mut s = t.stream();
    let mut out = Vec::new();
    assert_eq!(s.usage_so_far(), None);
    // Up to the end of message_start: input side known, output 1 so far.
    let first_event_end = data.windows(2).position(|w| w == b"\n\n").unwrap() + 2;
    s.push(&data[..first_event_end], &mut out).unwrap();
    let u = s.usage_so_far().unwrap();
    assert_eq!((u.input, u.cache_read, u.cache_write_1h, u.output), (21, 12000, 2000, 1));
    s.push(&data[first_event_end..], &mut out).unwrap();
    assert_eq!(s.usage_so_far(), Some(c.expect));
}

#[test]
fn embeddings_and_gemini_function_call_bodies() {
    let (_, t) = prep(ApiFormat::OpenAiEmbeddings, &target(ProviderKind::OpenAi, "m"), r#"{"model":"m","input":"hi"}"#);
    let b = t.translate_body(&fixture("openai/embeddings.json")).unwrap();
    assert_eq!(b.usage, Some(Usage { input: 8, ..Usage::default() }));
    assert_eq!(b.body.as_ref(), fixture("openai/embeddings.json").as_slice());

    let (_, t) = prep(ApiFormat::OpenAiChat, &target(ProviderKind::Gemini, "m"), CHAT);
    let b = t.translate_body(&fixture("gemini/function_call.json")).unwrap();
    assert_eq!(b.usage, Some(Usage { input: 112, output: 17, reasoning: 60, ..Usage::default() }));
    assert_eq!(b.model.as_deref(), Some("gemini-2.5-pro"));
}

#[test]
fn audio_tokens_leave_the_text_buckets() {
    let (_, t) = prep(ApiFormat::OpenAiChat, &target(ProviderKind::OpenAi, "m"), CHAT);
    let body = br#"{"model":"gpt-4o-audio-preview","choices":[],"usage":{"prompt_tokens":500,"completion_tokens":300,
        "prompt_tokens_details":{"cached_tokens":100,"audio_tokens":250},
        "completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":280}}}"#;
    let u = t.translate_body(body).unwrap().usage.unwrap();
    assert_eq!(
        u,
        Usage { input: 150, input_audio: 250, cache_read: 100, output: 20, output_audio: 280, ..Usage::default() }
    );
    assert_eq!(u.input_tokens(), 500);
    assert_eq!(u.output_tokens(), 300);
}

#[test]
fn anthropic_writes_without_breakdown_are_5m() {
    let (_, t) = prep(
        ApiFormat::AnthropicMessages,
        &target(ProviderKind::Anthropic, "m"),
        r#"{"model":"m","max_tokens":5,"messages":[]}"#,
    );
    let b = t
        .translate_body(br#"{"id":"msg_1","model":"claude","content":[],"usage":{"input_tokens":3,"cache_creation_input_tokens":700,"cache_read_input_tokens":0,"output_tokens":9}}"#)
        .unwrap();
    assert_eq!(b.usage, Some(Usage { input: 3, cache_write_5m: 700, output: 9, ..Usage::default() }));
}

#[test]
fn no_usage_means_none_and_text_for_estimation() {
    let (_, t) = prep(ApiFormat::OpenAiChat, &target(ProviderKind::OpenAiCompatible, "m"), CHAT);
    let (out, end) = byte_by_byte(&t, &fixture("openai/chat_no_usage.sse"));
    assert_eq!(end.usage, None);
    assert!(end.completed);
    assert_eq!(end.output_text, "Hello world");
    assert_eq!(data_lines(&out).len(), 4);

    let b = t
        .translate_body(br#"{"id":"x","object":"chat.completion","model":"llama","choices":[{"index":0,"message":{"role":"assistant","content":"Hi there"},"finish_reason":"stop"}]}"#)
        .unwrap();
    assert_eq!(b.usage, None);
    assert_eq!(b.output_text, "Hi there");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn any_split_gives_the_same_usage_and_bytes(case in 0usize..7, cuts in prop::collection::vec(0usize..6000, 0..60)) {
        let c = &cases()[case];
        let t = translator(c);
        let data = fixture(c.sse);
        let (whole, end_whole) = run_stream(&t, &data, &[]);
        let (split, end) = run_stream(&t, &data, &cuts);
        prop_assert_eq!(end.usage, Some(c.expect));
        prop_assert!(end.completed);
        prop_assert_eq!(split, whole);
        prop_assert_eq!(end.terminator, end_whole.terminator);
    }
}
