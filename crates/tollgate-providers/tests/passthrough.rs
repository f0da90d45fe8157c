//! OpenAI-family and Anthropic-native relays: bytes forwarded untouched,
#![allow(clippy::unwrap_used)] // tests may unwrap
//! only the model and the stream-usage option changed, terminators held back.

mod common;

use common::*;
use serde_json::{json, Value};
use tollgate_providers::{inspect, prepare, AdapterError, ApiFormat, ProviderKind, Target};

#[test]
fn unchanged_requests_forward_the_original_bytes() {
    // Odd spacing and key order would not survive a re-serialisation.
    let body = "{ \"messages\": [{\"role\":\"user\",\"content\":\"hi\"}],\n  \"model\" : \"gpt-4o-mini\", \"temperature\": 0.70 }";
    let (p, _) = prep(ApiFormat::OpenAiChat, &target(ProviderKind::OpenAi, "gpt-4o-mini"), body);
    assert_eq!(p.body.as_ref(), body.as_bytes());
    assert!(!p.stream);

    let body = r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[]}"#;
    let (p, _) = prep(ApiFormat::OpenAiChat, &target(ProviderKind::OpenAi, "gpt-4o-mini"), body);
    assert_eq!(p.body.as_ref(), body.as_bytes());
    assert!(p.stream);

    let body = r#"{"model":"claude-sonnet-4-5","max_tokens":10,"messages":[],"stream":true}"#;
    let (p, _) = prep(ApiFormat::AnthropicMessages, &target(ProviderKind::Anthropic, "claude-sonnet-4-5"), body);
    assert_eq!(p.body.as_ref(), body.as_bytes());
}

#[test]
fn rename_keeps_unknown_fields_and_their_exact_bytes() {
    let body = r#"{"model":"fast","messages":[{"role":"user","content":"hi"}],"temperature":0.70,"x_vendor":{"a":[1,2.50,"é"]},"seed":12345678901234567890}"#;
    let (p, _) = prep(ApiFormat::OpenAiChat, &target(ProviderKind::OpenAi, "gpt-4o-mini"), body);
    let text = std::str::from_utf8(&p.body).unwrap();
    assert!(text.contains(r#""model":"gpt-4o-mini""#), "{text}");
    assert!(text.contains(r#""temperature":0.70"#), "{text}");
    assert!(text.contains(r#""x_vendor":{"a":[1,2.50,"é"]}"#), "{text}");
    assert!(text.contains(r#""seed":12345678901234567890"#), "{text}");
    assert!(!text.contains("stream_options"));

    for (format, body) in [
        (ApiFormat::OpenAiEmbeddings, r#"{"model":"e","input":"x","dimensions":256}"#),
        (ApiFormat::OpenAiResponses, r#"{"model":"r","input":"x","reasoning":{"effort":"low"}}"#),
        (
            ApiFormat::AnthropicMessages,
            r#"{"model":"a","max_tokens":1,"messages":[],"thinking":{"type":"enabled","budget_tokens":1024}}"#,
        ),
    ] {
        let kind = if format == ApiFormat::AnthropicMessages { ProviderKind::Anthropic } else { ProviderKind::OpenAi };
        let (p, _) = prep(format, &target(kind, "upstream-model"), body);
        let mut want: Value = serde_json::from_str(body).unwrap();
        want["model"] = json!("upstream-model");
        assert_eq!(body_json(&p), want);
    }
}

#[test]
fn streaming_chat_asks_for_usage_keeping_other_stream_options() {
    let body = r#"{"model":"gpt-4o","stream":true,"stream_options":{"include_obfuscation":false},"messages":[]}"#;
    let (p, _) = prep(ApiFormat::OpenAiChat, &target(ProviderKind::OpenAi, "gpt-4o"), body);
    assert_eq!(body_json(&p)["stream_options"], json!({"include_obfuscation": false, "include_usage": true}));

    let body = r#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":false},"messages":[]}"#;
    let (p, _) = prep(ApiFormat::OpenAiChat, &target(ProviderKind::OpenAi, "gpt-4o"), body);
    assert_eq!(body_json(&p)["stream_options"], json!({"include_usage": true}));

    // Responses and embeddings have no such option.
    let body = r#"{"model":"gpt-4o","stream":true,"input":"x"}"#;
    let (p, _) = prep(ApiFormat::OpenAiResponses, &target(ProviderKind::OpenAi, "gpt-4o"), body);
    assert_eq!(p.body.as_ref(), body.as_bytes());
}

#[test]
fn urls_and_headers_per_kind() {
    let body = r#"{"model":"m","messages":[]}"#;
    let header = |p: &tollgate_providers::PreparedRequest, name: &str| {
        p.headers.iter().find(|(n, _)| n.as_str() == name).map(|(_, v)| v.to_str().unwrap().to_owned())
    };
    let (p, _) = prep(ApiFormat::OpenAiChat, &target(ProviderKind::OpenAi, "m"), body);
    assert_eq!(p.url, "https://api.openai.com/v1/chat/completions");
    assert_eq!(header(&p, "authorization").as_deref(), Some("Bearer sk-test"));
    assert_eq!(header(&p, "content-type").as_deref(), Some("application/json"));
    assert!(p.headers.iter().any(|(n, v)| n == "authorization" && v.is_sensitive()));

    let (p, _) =
        prep(ApiFormat::OpenAiEmbeddings, &target(ProviderKind::OpenAiCompatible, "m"), r#"{"model":"m","input":"x"}"#);
    assert_eq!(p.url, "http://127.0.0.1:8000/v1/embeddings");
    let (p, _) = prep(ApiFormat::OpenAiResponses, &target(ProviderKind::OpenAi, "m"), r#"{"model":"m","input":"x"}"#);
    assert_eq!(p.url, "https://api.openai.com/v1/responses");

    let mut azure = target(ProviderKind::AzureOpenAi, "my-deploy");
    let (p, _) = prep(ApiFormat::OpenAiChat, &azure, body);
    assert_eq!(p.url, "https://res.openai.azure.com/openai/v1/chat/completions");
    assert_eq!(header(&p, "api-key").as_deref(), Some("sk-test"));
    assert_eq!(header(&p, "authorization"), None);
    azure.api_version = Some("2024-10-21");
    let (p, _) = prep(ApiFormat::OpenAiChat, &azure, body);
    assert_eq!(
        p.url,
        "https://res.openai.azure.com/openai/deployments/my-deploy/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(body_json(&p)["model"], "my-deploy");

    let (p, _) = prep(
        ApiFormat::AnthropicMessages,
        &target(ProviderKind::Anthropic, "m"),
        r#"{"model":"m","max_tokens":1,"messages":[]}"#,
    );
    assert_eq!(p.url, "https://api.anthropic.com/v1/messages");
    assert_eq!(header(&p, "x-api-key").as_deref(), Some("sk-test"));
    assert_eq!(header(&p, "anthropic-version").as_deref(), Some("2023-06-01"));

    let no_key = Target { api_key: None, ..target(ProviderKind::OpenAiCompatible, "m") };
    let (p, _) = prep(ApiFormat::OpenAiChat, &no_key, body);
    assert_eq!(p.headers.len(), 1);
}

#[test]
fn unsupported_combinations_name_endpoint_and_kind() {
    let cases = [
        (
            ApiFormat::OpenAiEmbeddings,
            ProviderKind::Anthropic,
            r#"{"model":"m","input":"x"}"#,
            "/v1/embeddings",
            "anthropic",
        ),
        (ApiFormat::OpenAiResponses, ProviderKind::Gemini, r#"{"model":"m","input":"x"}"#, "/v1/responses", "gemini"),
        (
            ApiFormat::AnthropicMessages,
            ProviderKind::OpenAi,
            r#"{"model":"m","max_tokens":1,"messages":[]}"#,
            "/v1/messages",
            "openai",
        ),
        (
            ApiFormat::AnthropicMessages,
            ProviderKind::Gemini,
            r#"{"model":"m","max_tokens":1,"messages":[]}"#,
            "/v1/messages",
            "gemini",
        ),
    ];
    for (format, kind, body, endpoint, name) in cases {
        let info = inspect(format, body.as_bytes()).unwrap();
        match prepare(format, &target(kind, "m"), body.as_bytes(), &info) {
            Err(AdapterError::Unsupported(msg)) => {
                assert!(msg.contains(endpoint) && msg.contains(name), "{msg}");
            }
            other => panic!("expected Unsupported, got {:?}", other.map(|(p, _)| p.url)),
        }
    }
}

const STREAM_BODY: &str = r#"{"model":"o4-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
const STREAM_BODY_USAGE: &str = r#"{"model":"o4-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#;

#[test]
fn chat_stream_relays_original_bytes_and_holds_back_done() {
    let data = fixture("openai/chat.sse");
    let (_, t) = prep(ApiFormat::OpenAiChat, &target(ProviderKind::OpenAi, "o4-mini"), STREAM_BODY_USAGE);
    let (out, end) = byte_by_byte(&t, &data);
    assert_eq!(end.terminator.as_ref(), b"data: [DONE]\n\n");
    let mut all = out.clone();
    all.extend_from_slice(&end.terminator);
    assert_eq!(all, data, "the client asked for usage: every byte relayed");
    assert_eq!(end.model.as_deref(), Some("o4-mini-2025-04-16"));
}

#[test]
fn usage_chunk_is_hidden_when_the_gateway_asked_for_it() {
    let data = fixture("openai/chat.sse");
    let (_, t) = prep(ApiFormat::OpenAiChat, &target(ProviderKind::OpenAi, "o4-mini"), STREAM_BODY);
    let (out, end) = run_stream(&t, &data, &[100, 101, 700]);
    let lines = data_lines(&out);
    assert_eq!(lines.len(), 5);
    assert!(lines.iter().all(|l| !l.contains("\"choices\":[]")));
    assert!(!String::from_utf8_lossy(&out).contains("[DONE]"));
    assert_eq!(end.usage.unwrap().cache_read, 1920);
    // Every relayed event is a prefix-exact copy of the upstream bytes.
    let text = String::from_utf8(data).unwrap();
    let usage_event_start = text.find("data: {\"id\":\"chatcmpl-C3xQk8dZ1vY2fL0pN7sR5tW9uB4e\",\"object\":\"chat.completion.chunk\",\"created\":1754827310,\"model\":\"o4-mini-2025-04-16\",\"service_tier\":\"default\",\"system_fingerprint\":null,\"choices\":[]").unwrap();
    assert_eq!(out, text.as_bytes()[..usage_event_start]);
}

#[test]
fn cut_stream_is_not_completed() {
    let data = fixture("openai/chat.sse");
    let (_, t) = prep(ApiFormat::OpenAiChat, &target(ProviderKind::OpenAi, "o4-mini"), STREAM_BODY);
    let cut = data.len() / 2;
    let (_, end) = run_stream(&t, &data[..cut], &[7, 300]);
    assert!(!end.completed);
    assert!(end.terminator.is_empty());
    assert_eq!(end.usage, None);
    assert!(end.output_text.starts_with("The capital"), "{}", end.output_text);
    let (out, _) = run_stream(&t, &data[..cut], &[]);
    let relayed = String::from_utf8(out).unwrap();
    assert!(relayed.ends_with("\n\n"), "a half event is not relayed: {relayed}");
    for l in data_lines(relayed.as_bytes()) {
        serde_json::from_str::<Value>(&l).unwrap();
    }

    // Cut right after the usage chunk: usage known, still not completed.
    let text = std::str::from_utf8(&data).unwrap();
    let done = text.find("data: [DONE]").unwrap();
    let (_, end) = run_stream(&t, &data[..done], &[]);
    assert!(!end.completed);
    assert_eq!(end.usage.unwrap().output, 44);

    // Anthropic: cut before message_stop keeps message_start's usage.
    let data = fixture("anthropic/messages.sse");
    let (_, t) = prep(
        ApiFormat::AnthropicMessages,
        &target(ProviderKind::Anthropic, "m"),
        r#"{"model":"m","max_tokens":9,"messages":[],"stream":true}"#,
    );
    let (_, end) = run_stream(&t, &data[..data.len() / 2], &[]);
    assert!(!end.completed);
    let u = end.usage.unwrap();
    assert_eq!((u.input, u.output), (21, 1));
}

#[test]
fn in_stream_error_is_relayed_and_not_completed() {
    let (_, t) = prep(ApiFormat::OpenAiChat, &target(ProviderKind::OpenAi, "m"), STREAM_BODY);
    let data = b"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}\n\ndata: [DONE]\n\n";
    let (out, end) = run_stream(&t, data, &[]);
    assert!(!end.completed);
    assert!(end.terminator.is_empty());
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("overloaded"));
    assert!(text.ends_with("data: [DONE]\n\n"), "the end marker still reaches the client");

    let (_, t) = prep(
        ApiFormat::AnthropicMessages,
        &target(ProviderKind::Anthropic, "m"),
        r#"{"model":"m","max_tokens":9,"messages":[],"stream":true}"#,
    );
    let data = b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
    let (out, end) = run_stream(&t, data, &[]);
    assert_eq!(out, data);
    assert!(!end.completed);
}

#[test]
fn anthropic_native_stream_relays_and_holds_back_message_stop() {
    let data = fixture("anthropic/messages.sse");
    let (_, t) = prep(
        ApiFormat::AnthropicMessages,
        &target(ProviderKind::Anthropic, "m"),
        r#"{"model":"m","max_tokens":9,"messages":[],"stream":true}"#,
    );
    let (out, end) = byte_by_byte(&t, &data);
    assert_eq!(end.terminator.as_ref(), b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    let mut all = out;
    all.extend_from_slice(&end.terminator);
    assert_eq!(all, data);
}

#[test]
fn responses_stream_holds_back_response_completed() {
    let data = fixture("openai/responses.sse");
    let (_, t) = prep(
        ApiFormat::OpenAiResponses,
        &target(ProviderKind::OpenAi, "m"),
        r#"{"model":"m","input":"x","stream":true}"#,
    );
    let (out, end) = run_stream(&t, &data, &[1, 2, 3, 50, 51]);
    assert!(end.terminator.starts_with(b"event: response.completed\n"));
    let mut all = out.clone();
    all.extend_from_slice(&end.terminator);
    assert_eq!(all, data);
    assert_eq!(end.model.as_deref(), Some("gpt-5-mini-2025-08-07"));

    // Without the final event: no usage, the text is kept for estimation.
    let text = std::str::from_utf8(&data).unwrap();
    let cut = text.find("event: response.completed").unwrap();
    let (_, end) = run_stream(&t, &data[..cut], &[]);
    assert!(!end.completed);
    assert_eq!(end.usage, None);
    assert_eq!(end.output_text, "Paris.");
}

#[test]
fn comment_lines_are_relayed() {
    let (_, t) = prep(ApiFormat::OpenAiChat, &target(ProviderKind::OpenAiCompatible, "m"), STREAM_BODY);
    let data = b": OPENROUTER PROCESSING\n\ndata: {\"model\":\"m\",\"choices\":[]}\n\ndata: [DONE]\n\n";
    let (out, end) = run_stream(&t, data, &[5]);
    assert!(out.starts_with(b": OPENROUTER PROCESSING\n\n"));
    assert!(end.completed);
}

#[test]
fn error_messages_of_each_provider() {
    let (_, t) = prep(ApiFormat::OpenAiChat, &target(ProviderKind::OpenAi, "m"), STREAM_BODY);
    let cases: [(&[u8], Option<&str>); 6] = [
        (br#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#, Some("Incorrect API key provided")),
        (br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}"#, Some("Overloaded")),
        (br#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT"}}"#, Some("API key not valid. Please pass a valid API key.")),
        (br#"[{"error":{"code":429,"message":"Resource exhausted","status":"RESOURCE_EXHAUSTED"}}]"#, Some("Resource exhausted")),
        (br#"{"error":"model not found"}"#, Some("model not found")),
        (b"<html>Bad Gateway</html>", None),
    ];
    for (body, want) in cases {
        assert_eq!(t.error_message(body).as_deref(), want);
    }
}
