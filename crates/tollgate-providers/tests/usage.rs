//! Usage from real payload shapes: whole bodies and streams (cut anywhere)
#![allow(clippy::unwrap_used)] // tests may unwrap
//! give the same disjoint buckets.

mod common;

use common::*;
use proptest::prelude::*;
use tollgate_providers::{ApiFormat, ProviderKind, ResponseTranslator, Usage};
use tollgate_units::Money;

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

// ------------------------------------------- web searches and reported costs
//
// Literal provider bodies (as the APIs document them) for server-side web
// searches and for a host-reported cost (OpenRouter's `usage.cost`).

/// SSE text from `(event name, data)` pairs; no name = a bare `data:` event,
/// no data = an SSE comment line (`: …`).
fn sse(events: &[(Option<&str>, &str)]) -> String {
    events
        .iter()
        .map(|(name, data)| match (name, data.strip_prefix(':')) {
            (_, Some(comment)) => format!(":{comment}\n\n"),
            (Some(name), None) => format!("event: {name}\ndata: {data}\n\n"),
            (None, None) => format!("data: {data}\n\n"),
        })
        .collect()
}

struct Literal {
    name: &'static str,
    format: ApiFormat,
    kind: ProviderKind,
    request: &'static str,
    json: String,
    sse: String,
    expect: Usage,
    /// The provider's own cost, in nanos, as read from `usage.cost`.
    cost: Option<i64>,
}

const CHAT_WITH_USAGE: &str = r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}"#;

/// Anthropic with the web search tool: a `server_tool_use` block, its
/// `web_search_tool_result`, then text; three searches in `usage.server_tool_use`.
const ANTHROPIC_SEARCH_JSON: &str = r#"{"id":"msg_01WsA","type":"message","role":"assistant","model":"claude-haiku-4-5-20251001","content":[{"type":"server_tool_use","id":"srvtoolu_01","name":"web_search","input":{"query":"tollgate llm gateway"}},{"type":"web_search_tool_result","tool_use_id":"srvtoolu_01","content":[{"type":"web_search_result","url":"https://example.com/a","title":"A","encrypted_content":"EqgfCioIARgBIiQ3","page_age":"April 30, 2025"}]},{"type":"text","text":"Here is what I found."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":1200,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":150,"server_tool_use":{"web_search_requests":3},"service_tier":"standard"}}"#;

fn anthropic_search_sse() -> String {
    sse(&[
        (
            Some("message_start"),
            r#"{"type":"message_start","message":{"id":"msg_01WsA","type":"message","role":"assistant","model":"claude-haiku-4-5-20251001","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":1200,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1,"server_tool_use":{"web_search_requests":0},"service_tier":"standard"}}}"#,
        ),
        (
            Some("content_block_start"),
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"server_tool_use","id":"srvtoolu_01","name":"web_search","input":{}}}"#,
        ),
        (
            Some("content_block_delta"),
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"query\": \"tollgate llm gateway\"}"}}"#,
        ),
        (Some("content_block_stop"), r#"{"type":"content_block_stop","index":0}"#),
        (
            Some("content_block_start"),
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"web_search_tool_result","tool_use_id":"srvtoolu_01","content":[{"type":"web_search_result","url":"https://example.com/a","title":"A","encrypted_content":"EqgfCioIARgBIiQ3","page_age":null}]}}"#,
        ),
        (Some("content_block_stop"), r#"{"type":"content_block_stop","index":1}"#),
        (
            Some("content_block_start"),
            r#"{"type":"content_block_start","index":2,"content_block":{"type":"text","text":""}}"#,
        ),
        (
            Some("content_block_delta"),
            r#"{"type":"content_block_delta","index":2,"delta":{"type":"text_delta","text":"Here is what I found."}}"#,
        ),
        (Some("content_block_stop"), r#"{"type":"content_block_stop","index":2}"#),
        (
            Some("message_delta"),
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"input_tokens":1200,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":150,"server_tool_use":{"web_search_requests":3}}}"#,
        ),
        (Some("message_stop"), r#"{"type":"message_stop"}"#),
    ])
}

/// Two `web_search_call` items, then the message.
const RESPONSES_OUTPUT: &str = r#"[{"id":"ws_68a1f5b0c1d08193a1","type":"web_search_call","status":"completed","action":{"type":"search","query":"tollgate gateway"}},{"id":"ws_68a1f5b0c1d08193a2","type":"web_search_call","status":"completed","action":{"type":"search","query":"tollgate pricing"}},{"id":"msg_68a1f5b0c1d08193a3","type":"message","status":"completed","role":"assistant","content":[{"type":"output_text","annotations":[{"type":"url_citation","start_index":0,"end_index":5,"url":"https://example.com/a","title":"A"}],"logprobs":[],"text":"Found two sources."}]}]"#;

const RESPONSES_USAGE: &str = r#"{"input_tokens":2500,"input_tokens_details":{"cached_tokens":500},"output_tokens":300,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":2800}"#;

fn responses_search_json() -> String {
    format!(
        r#"{{"id":"resp_68a1f5b0","object":"response","created_at":1755378100,"status":"completed","model":"gpt-4o-2024-08-06","output":{RESPONSES_OUTPUT},"service_tier":"default","tools":[{{"type":"web_search"}}],"usage":{RESPONSES_USAGE}}}"#
    )
}

fn responses_search_sse() -> String {
    let created = r#"{"type":"response.created","sequence_number":0,"response":{"id":"resp_68a1f5b0","object":"response","status":"in_progress","model":"gpt-4o-2024-08-06","output":[],"usage":null}}"#;
    let completed = format!(
        r#"{{"type":"response.completed","sequence_number":14,"response":{{"id":"resp_68a1f5b0","object":"response","status":"completed","model":"gpt-4o-2024-08-06","output":{RESPONSES_OUTPUT},"service_tier":"default","usage":{RESPONSES_USAGE}}}}}"#
    );
    let mut events: Vec<(Option<&str>, &str)> = vec![(Some("response.created"), created)];
    let search_events = [
        (
            Some("response.output_item.added"),
            r#"{"type":"response.output_item.added","sequence_number":1,"output_index":0,"item":{"id":"ws_68a1f5b0c1d08193a1","type":"web_search_call","status":"in_progress","action":{"type":"search"}}}"#,
        ),
        (
            Some("response.web_search_call.in_progress"),
            r#"{"type":"response.web_search_call.in_progress","sequence_number":2,"output_index":0,"item_id":"ws_68a1f5b0c1d08193a1"}"#,
        ),
        (
            Some("response.web_search_call.searching"),
            r#"{"type":"response.web_search_call.searching","sequence_number":3,"output_index":0,"item_id":"ws_68a1f5b0c1d08193a1"}"#,
        ),
        (
            Some("response.web_search_call.completed"),
            r#"{"type":"response.web_search_call.completed","sequence_number":4,"output_index":0,"item_id":"ws_68a1f5b0c1d08193a1"}"#,
        ),
        (
            Some("response.output_item.done"),
            r#"{"type":"response.output_item.done","sequence_number":5,"output_index":0,"item":{"id":"ws_68a1f5b0c1d08193a1","type":"web_search_call","status":"completed","action":{"type":"search","query":"tollgate gateway"}}}"#,
        ),
        (
            Some("response.output_item.added"),
            r#"{"type":"response.output_item.added","sequence_number":6,"output_index":1,"item":{"id":"ws_68a1f5b0c1d08193a2","type":"web_search_call","status":"in_progress","action":{"type":"search"}}}"#,
        ),
        (
            Some("response.output_item.done"),
            r#"{"type":"response.output_item.done","sequence_number":7,"output_index":1,"item":{"id":"ws_68a1f5b0c1d08193a2","type":"web_search_call","status":"completed","action":{"type":"search","query":"tollgate pricing"}}}"#,
        ),
        (
            Some("response.output_item.added"),
            r#"{"type":"response.output_item.added","sequence_number":8,"output_index":2,"item":{"id":"msg_68a1f5b0c1d08193a3","type":"message","status":"in_progress","role":"assistant","content":[]}}"#,
        ),
        (
            Some("response.output_text.delta"),
            r#"{"type":"response.output_text.delta","sequence_number":9,"item_id":"msg_68a1f5b0c1d08193a3","output_index":2,"content_index":0,"delta":"Found two","logprobs":[]}"#,
        ),
        (
            Some("response.output_text.delta"),
            r#"{"type":"response.output_text.delta","sequence_number":10,"item_id":"msg_68a1f5b0c1d08193a3","output_index":2,"content_index":0,"delta":" sources.","logprobs":[]}"#,
        ),
        (
            Some("response.output_item.done"),
            r#"{"type":"response.output_item.done","sequence_number":13,"output_index":2,"item":{"id":"msg_68a1f5b0c1d08193a3","type":"message","status":"completed","role":"assistant","content":[]}}"#,
        ),
    ];
    events.extend(search_events);
    events.push((Some("response.completed"), completed.as_str()));
    sse(&events)
}

/// An OpenAI-shaped chat answer whose `usage` carries `cost` as `cost_text`
/// (OpenRouter's shape: `cost`, `is_byok`, `cost_details`), or none.
fn chat_cost_json(cost_text: Option<&str>) -> String {
    let cost = cost_text.map(|c| format!(r#""cost":{c},"is_byok":false,"#)).unwrap_or_default();
    format!(
        r#"{{"id":"gen-1755378200-AbCdEf","provider":"OpenAI","model":"openai/gpt-4o-mini","object":"chat.completion","created":1755378200,"choices":[{{"logprobs":null,"finish_reason":"stop","native_finish_reason":"stop","index":0,"message":{{"role":"assistant","content":"Hello there.","refusal":null,"reasoning":null}}}}],"usage":{{"prompt_tokens":1000,"completion_tokens":50,"total_tokens":1050,{cost}"prompt_tokens_details":{{"cached_tokens":200,"audio_tokens":0}},"cost_details":{{"upstream_inference_cost":null}},"completion_tokens_details":{{"reasoning_tokens":0,"image_tokens":0}}}}}}"#
    )
}

/// The same streamed: OpenRouter's keep-alive comment, content chunks, and
/// the usage on a last chunk that still has a (finished) choice.
fn chat_cost_sse(cost_text: Option<&str>) -> String {
    let cost = cost_text.map(|c| format!(r#""cost":{c},"is_byok":false,"#)).unwrap_or_default();
    let head = r#""id":"gen-1755378200-AbCdEf","provider":"OpenAI","model":"openai/gpt-4o-mini","object":"chat.completion.chunk","created":1755378200"#;
    let first = format!(
        r#"{{{head},"choices":[{{"index":0,"delta":{{"role":"assistant","content":"Hello"}},"finish_reason":null,"native_finish_reason":null,"logprobs":null}}]}}"#
    );
    let second = format!(
        r#"{{{head},"choices":[{{"index":0,"delta":{{"role":"assistant","content":" there."}},"finish_reason":"stop","native_finish_reason":"stop","logprobs":null}}]}}"#
    );
    let last = format!(
        r#"{{{head},"choices":[{{"index":0,"delta":{{"role":"assistant","content":""}},"finish_reason":null,"native_finish_reason":null,"logprobs":null}}],"usage":{{"prompt_tokens":1000,"completion_tokens":50,"total_tokens":1050,{cost}"prompt_tokens_details":{{"cached_tokens":200}},"cost_details":{{"upstream_inference_cost":null}},"completion_tokens_details":{{"reasoning_tokens":0}}}}}}"#
    );
    sse(&[(None, ": OPENROUTER PROCESSING"), (None, &first), (None, &second), (None, &last), (None, "[DONE]")])
}

fn literal_cases() -> Vec<Literal> {
    let anthropic = Usage { input: 1200, output: 150, web_search_requests: 3, ..Usage::default() };
    let responses = Usage { input: 2000, cache_read: 500, output: 300, web_search_requests: 2, ..Usage::default() };
    let chat = Usage { input: 800, cache_read: 200, output: 50, ..Usage::default() };
    let native = r#"{"model":"m","max_tokens":256,"messages":[{"role":"user","content":"hi"}],"stream":true}"#;
    let chat_case = |name, kind, cost_text: Option<&'static str>, cost| Literal {
        name,
        format: ApiFormat::OpenAiChat,
        kind,
        request: CHAT_WITH_USAGE,
        json: chat_cost_json(cost_text),
        sse: chat_cost_sse(cost_text),
        expect: chat,
        cost,
    };
    vec![
        Literal {
            name: "anthropic native web search",
            format: ApiFormat::AnthropicMessages,
            kind: ProviderKind::Anthropic,
            request: native,
            json: ANTHROPIC_SEARCH_JSON.to_owned(),
            sse: anthropic_search_sse(),
            expect: anthropic,
            cost: None,
        },
        Literal {
            name: "anthropic web search via chat",
            format: ApiFormat::OpenAiChat,
            kind: ProviderKind::Anthropic,
            request: CHAT_WITH_USAGE,
            json: ANTHROPIC_SEARCH_JSON.to_owned(),
            sse: anthropic_search_sse(),
            expect: anthropic,
            cost: None,
        },
        Literal {
            name: "responses web_search_call items",
            format: ApiFormat::OpenAiResponses,
            kind: ProviderKind::OpenAi,
            request: r#"{"model":"m","input":"hi","tools":[{"type":"web_search"}],"stream":true}"#,
            json: responses_search_json(),
            sse: responses_search_sse(),
            expect: responses,
            cost: None,
        },
        // $0.000123 = 123,000 nanos.
        chat_case("openrouter cost 0.000123", ProviderKind::OpenAiCompatible, Some("0.000123"), Some(123_000)),
        // 1.5e-05 USD = $0.000015 = 15,000 nanos.
        chat_case("openrouter cost 1.5e-05", ProviderKind::OpenAiCompatible, Some("1.5e-05"), Some(15_000)),
        // More digits than an f64 keeps: 0.0001234565 USD rounds half away from zero to 123,457 nanos.
        chat_case("cost with many digits", ProviderKind::OpenAi, Some("0.00012345650000000000001"), Some(123_457)),
        chat_case("chat without cost", ProviderKind::OpenAi, None, None),
        // A cost of null or a string is not a number of dollars: no cost.
        chat_case("cost null", ProviderKind::OpenAiCompatible, Some("null"), None),
        chat_case("cost as a string", ProviderKind::OpenAiCompatible, Some(r#""0.000123""#), None),
    ]
}

fn literal_translator(c: &Literal) -> ResponseTranslator {
    prep(c.format, &target(c.kind, "m"), c.request).1
}

fn nanos(n: Option<i64>) -> Option<Money> {
    n.map(Money::from_nanos)
}

#[test]
fn web_searches_and_reported_costs_from_whole_bodies() {
    assert_eq!(literal_cases().len(), 9, "the proptest below draws from 0..9");
    for c in literal_cases() {
        let t = literal_translator(&c).translate_body(c.json.as_bytes()).unwrap_or_else(|e| panic!("{}: {e}", c.name));
        assert_eq!(t.usage, Some(c.expect), "{}", c.name);
        assert_eq!(t.provider_cost, nanos(c.cost), "{}", c.name);
        assert!(t.model.is_some(), "{}", c.name);
    }
}

#[test]
fn web_searches_and_reported_costs_from_streams_cut_anywhere() {
    for c in literal_cases() {
        let t = literal_translator(&c);
        let data = c.sse.as_bytes();
        let (whole, end) = run_stream(&t, data, &[]);
        assert_eq!(end.usage, Some(c.expect), "{}", c.name);
        assert_eq!(end.provider_cost, nanos(c.cost), "{}", c.name);
        assert!(end.completed, "{}", c.name);
        let (bytes, end_bytes) = byte_by_byte(&t, data);
        assert_eq!(end_bytes.usage, Some(c.expect), "{}: byte by byte", c.name);
        assert_eq!(end_bytes.provider_cost, nanos(c.cost), "{}: byte by byte", c.name);
        assert_eq!(bytes, whole, "{}", c.name);
        // Cut inside the very fields that carry the count and the cost, and
        // between the two bytes of each event's blank line.
        let text = c.sse.as_str();
        let mut cuts = Vec::new();
        for needle in ["web_search_requests\":", "web_search_call", "\"cost\":", "\n\n"] {
            for (at, _) in text.match_indices(needle) {
                cuts.extend([at + 1, at + needle.len() / 2, at + needle.len() - 1, at + needle.len() + 1]);
            }
        }
        let (split, end_split) = run_stream(&t, data, &cuts);
        assert_eq!(end_split.usage, Some(c.expect), "{}: awkward cuts", c.name);
        assert_eq!(end_split.provider_cost, nanos(c.cost), "{}: awkward cuts", c.name);
        assert_eq!(split, whole, "{}", c.name);
    }
}

#[test]
fn anthropic_server_tool_use_later_wins_and_a_missing_one_keeps_the_earlier() {
    let (_, t) = prep(
        ApiFormat::AnthropicMessages,
        &target(ProviderKind::Anthropic, "m"),
        r#"{"model":"m","max_tokens":5,"messages":[],"stream":true}"#,
    );
    let stream = |start_searches: &str, delta_usage: &str| {
        sse(&[
            (
                Some("message_start"),
                &format!(
                    r#"{{"type":"message_start","message":{{"id":"msg_1","model":"claude-haiku-4-5","content":[],"usage":{{"input_tokens":10,"output_tokens":1{start_searches}}}}}}}"#
                ),
            ),
            (
                Some("message_delta"),
                &format!(r#"{{"type":"message_delta","delta":{{"stop_reason":"end_turn"}},"usage":{delta_usage}}}"#),
            ),
            (Some("message_stop"), r#"{"type":"message_stop"}"#),
        ])
    };
    let searches = |start: &str, delta: &str| {
        let (_, end) = byte_by_byte(&t, stream(start, delta).as_bytes());
        end.usage.unwrap().web_search_requests
    };
    let with_two = r#","server_tool_use":{"web_search_requests":2}"#;
    // message_delta's count replaces message_start's.
    assert_eq!(searches(with_two, r#"{"output_tokens":7,"server_tool_use":{"web_search_requests":5}}"#), 5);
    // A message_delta without server_tool_use keeps what message_start said.
    assert_eq!(searches(with_two, r#"{"output_tokens":7}"#), 2);
    // Neither says anything: none.
    assert_eq!(searches("", r#"{"output_tokens":7}"#), 0);
    // server_tool_use without web searches (another server tool): none.
    assert_eq!(searches("", r#"{"output_tokens":7,"server_tool_use":{}}"#), 0);
}

#[test]
fn responses_without_web_search_calls_count_none() {
    let (_, t) = prep(ApiFormat::OpenAiResponses, &target(ProviderKind::OpenAi, "m"), r#"{"model":"m","input":"hi"}"#);
    // The existing fixture has reasoning and message items only.
    let b = t.translate_body(&fixture("openai/responses.json")).unwrap();
    assert_eq!(b.usage.unwrap().web_search_requests, 0);
    assert_eq!(b.provider_cost, None);
    // A `web_search_call` mentioned only inside text is not an item.
    let body = format!(
        r#"{{"model":"gpt-4o","output":[{{"type":"message","role":"assistant","content":[{{"type":"output_text","text":"\"type\":\"web_search_call\""}}]}}],"usage":{RESPONSES_USAGE}}}"#
    );
    assert_eq!(t.translate_body(body.as_bytes()).unwrap().usage.unwrap().web_search_requests, 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn literal_streams_any_split_gives_the_same_searches_and_cost(
        case in 0usize..9,
        cuts in prop::collection::vec(0usize..4000, 0..60),
    ) {
        let c = &literal_cases()[case];
        let t = literal_translator(c);
        let (whole, _) = run_stream(&t, c.sse.as_bytes(), &[]);
        let (split, end) = run_stream(&t, c.sse.as_bytes(), &cuts);
        prop_assert_eq!(end.usage, Some(c.expect));
        prop_assert_eq!(end.provider_cost, nanos(c.cost));
        prop_assert_eq!(split, whole);
    }
}
