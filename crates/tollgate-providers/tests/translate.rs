//! OpenAI chat ↔ Anthropic Messages and ↔ Gemini generateContent.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use common::*;
use serde_json::{json, Value};
use tollgate_providers::{inspect, prepare, AdapterError, ApiFormat, ProviderKind};

const RICH: &str = r#"{
  "model": "smart",
  "messages": [
    {"role": "system", "content": "You are terse."},
    {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
    {"role": "user", "content": [
      {"type": "text", "text": "Weather where this photo was taken?"},
      {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
      {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"}}
    ]},
    {"role": "assistant", "content": null, "tool_calls": [
      {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
      {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}
    ]},
    {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp_c\":21}"},
    {"role": "tool", "tool_call_id": "call_2", "content": "14:05"},
    {"role": "user", "content": "Thanks!"}
  ],
  "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Current weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": false}}},
    {"type": "function", "function": {"name": "get_time"}}],
  "tool_choice": "required",
  "max_completion_tokens": 300,
  "temperature": 0.2,
  "top_p": 0.9,
  "stop": "END",
  "user": "user-42",
  "logit_bias": {"50256": -100},
  "stream": true
}"#;

#[test]
fn chat_to_anthropic_request() {
    let (p, _) = prep(ApiFormat::OpenAiChat, &target(ProviderKind::Anthropic, "claude-sonnet-4-5"), RICH);
    assert_eq!(p.url, "https://api.anthropic.com/v1/messages");
    assert!(p.stream);
    let want = json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 300,
        "system": "You are terse.\n\nUse metric units.",
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Weather where this photo was taken?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}
            ]},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "call_2", "name": "get_time", "input": {}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "{\"temp_c\":21}"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": "14:05"},
                {"type": "text", "text": "Thanks!"}
            ]}
        ],
        "temperature": 0.2,
        "top_p": 0.9,
        "stop_sequences": ["END"],
        "stream": true,
        "metadata": {"user_id": "user-42"},
        "tools": [
            {"name": "get_weather", "description": "Current weather",
             "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": false}},
            {"name": "get_time", "input_schema": {"type": "object", "properties": {}}}
        ],
        "tool_choice": {"type": "any"}
    });
    assert_eq!(body_json(&p), want);
}

#[test]
fn anthropic_defaults_and_tool_choice_variants() {
    let t = target(ProviderKind::Anthropic, "c");
    let (p, _) = prep(
        ApiFormat::OpenAiChat,
        &t,
        r#"{"model":"x","messages":[{"role":"user","content":"hi"}],"stop":["a","b"]}"#,
    );
    let b = body_json(&p);
    assert_eq!(b["max_tokens"], 4096);
    assert_eq!(b["stop_sequences"], json!(["a", "b"]));
    assert!(b.get("stream").is_none() && b.get("system").is_none() && b.get("tool_choice").is_none());

    for (choice, want) in [
        (json!("auto"), json!({"type": "auto"})),
        (json!("none"), json!({"type": "none"})),
        (json!({"type": "function", "function": {"name": "f"}}), json!({"type": "tool", "name": "f"})),
    ] {
        let body = json!({"model": "x", "max_tokens": 7, "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": choice})
        .to_string();
        let (p, _) = prep(ApiFormat::OpenAiChat, &t, &body);
        let b = body_json(&p);
        assert_eq!(b["tool_choice"], want);
        assert_eq!(b["max_tokens"], 7);
    }
    let body = r#"{"model":"x","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f"}}],"parallel_tool_calls":false}"#;
    let (p, _) = prep(ApiFormat::OpenAiChat, &t, body);
    assert_eq!(body_json(&p)["tool_choice"], json!({"type": "auto", "disable_parallel_tool_use": true}));
}

#[test]
fn bad_tool_arguments_are_invalid_request() {
    let body = r#"{"model":"x","messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{not json"}}]}]}"#;
    let info = inspect(ApiFormat::OpenAiChat, body.as_bytes()).unwrap();
    match prepare(ApiFormat::OpenAiChat, &target(ProviderKind::Anthropic, "c"), body.as_bytes(), &info) {
        Err(AdapterError::InvalidRequest { param, .. }) => {
            assert_eq!(param.as_deref(), Some("messages[0].tool_calls[0].function.arguments"));
        }
        other => panic!("{:?}", other.map(|(p, _)| p.url)),
    }
}

#[test]
fn anthropic_answer_becomes_a_chat_completion() {
    let (_, t) = prep(ApiFormat::OpenAiChat, &target(ProviderKind::Anthropic, "c"), RICH);
    let t = t.with_created(1_700_000_000);
    let b = t.translate_body(&fixture("anthropic/tool_use.json")).unwrap();
    let v: Value = serde_json::from_slice(&b.body).unwrap();
    assert_chat_completion(&v);
    assert_eq!(v["id"], "msg_01Aq9w938a90dw8q");
    assert_eq!(v["created"], 1_700_000_000);
    assert_eq!(v["model"], "claude-opus-4-1-20250805");
    let c = &v["choices"][0];
    assert_eq!(c["finish_reason"], "tool_calls");
    assert_eq!(c["message"]["content"], "I'll check the weather.");
    let call = &c["message"]["tool_calls"][0];
    assert_eq!(call["id"], "toolu_01T1x1fJ34qAmk2tNTrN7Up6");
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"location": "San Francisco, CA", "unit": "celsius"}));
    // 472 uncached + 1800 written to cache.
    assert_eq!(v["usage"]["prompt_tokens"], 2272);
    assert_eq!(v["usage"]["completion_tokens"], 89);
    assert_eq!(v["usage"]["total_tokens"], 2361);

    let b = t.translate_body(&fixture("anthropic/messages.json")).unwrap();
    let v: Value = serde_json::from_slice(&b.body).unwrap();
    assert_chat_completion(&v);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["choices"][0]["message"].get("tool_calls").is_none());
    assert_eq!(v["usage"]["prompt_tokens"], 15021);
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 12000);
}

/// A tool call as an SDK accumulates it: (id, name, arguments).
type Call = (String, String, String);

/// Rebuild what an OpenAI SDK would accumulate from chunk events:
/// (text, tool calls, finish_reason, usage).
fn accumulate(out: &[u8]) -> (String, Vec<Call>, Option<String>, Option<Value>) {
    let mut text = String::new();
    let mut calls: Vec<Call> = Vec::new();
    let mut finish = None;
    let mut usage = None;
    let lines = data_lines(out);
    assert!(!lines.is_empty());
    for (i, l) in lines.iter().enumerate() {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert_chunk(&v);
        if i == 0 {
            assert_eq!(v["choices"][0]["delta"]["role"], "assistant");
        }
        if !v["usage"].is_null() {
            assert_eq!(v["choices"], json!([]));
            usage = Some(v["usage"].clone());
        }
        for c in v["choices"].as_array().unwrap() {
            let d = &c["delta"];
            if let Some(t) = d["content"].as_str() {
                text.push_str(t);
            }
            for tc in d["tool_calls"].as_array().into_iter().flatten() {
                let idx = tc["index"].as_u64().unwrap() as usize;
                if idx == calls.len() {
                    calls.push((
                        tc["id"].as_str().unwrap().into(),
                        tc["function"]["name"].as_str().unwrap().into(),
                        String::new(),
                    ));
                }
                calls[idx].2.push_str(tc["function"]["arguments"].as_str().unwrap_or(""));
            }
            if let Some(f) = c["finish_reason"].as_str() {
                finish = Some(f.to_owned());
            }
        }
    }
    (text, calls, finish, usage)
}

#[test]
fn anthropic_stream_becomes_chat_chunks() {
    let body_usage = r#"{"model":"x","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#;
    let (_, t) = prep(ApiFormat::OpenAiChat, &target(ProviderKind::Anthropic, "c"), body_usage);
    let (out, end) = byte_by_byte(&t, &fixture("anthropic/tool_use.sse"));
    assert_eq!(end.terminator.as_ref(), b"data: [DONE]\n\n");
    assert!(end.completed);
    let (text, calls, finish, usage) = accumulate(&out);
    assert_eq!(text, "I'll check the weather.");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].0, "toolu_01T1x1fJ34qAmk2tNTrN7Up6");
    assert_eq!(calls[0].1, "get_weather");
    let args: Value = serde_json::from_str(&calls[0].2).unwrap();
    assert_eq!(args, json!({"location": "San Francisco, CA", "unit": "celsius"}));
    assert_eq!(finish.as_deref(), Some("tool_calls"));
    let usage = usage.unwrap();
    assert_eq!(usage["prompt_tokens"], 2272);
    assert_eq!(usage["completion_tokens"], 89);

    // Without include_usage: no usage chunk, same content.
    let (_, t) = prep(
        ApiFormat::OpenAiChat,
        &target(ProviderKind::Anthropic, "c"),
        r#"{"model":"x","stream":true,"messages":[]}"#,
    );
    let (out, end) = run_stream(&t, &fixture("anthropic/messages.sse"), &[33, 400]);
    let (text, calls, finish, usage) = accumulate(&out);
    assert_eq!(text, "Hello! How can I help you today? ☕");
    assert!(calls.is_empty());
    assert_eq!(finish.as_deref(), Some("stop"));
    assert!(usage.is_none());
    assert_eq!(end.usage.unwrap().cache_write_1h, 2000);
    assert_eq!(end.model.as_deref(), Some("claude-sonnet-4-5-20250929"));
}

#[test]
fn anthropic_stream_error_becomes_openai_error_event() {
    let (_, t) = prep(
        ApiFormat::OpenAiChat,
        &target(ProviderKind::Anthropic, "c"),
        r#"{"model":"x","stream":true,"messages":[]}"#,
    );
    let data = fixture("anthropic/messages.sse");
    let text = std::str::from_utf8(&data).unwrap();
    let cut = text.find("event: content_block_stop").unwrap();
    let mut cutdata = data[..cut].to_vec();
    cutdata.extend_from_slice(b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n");
    let (out, end) = run_stream(&t, &cutdata, &[]);
    assert!(!end.completed);
    assert!(end.terminator.is_empty());
    let last = data_lines(&out).pop().unwrap();
    let v: Value = serde_json::from_str(&last).unwrap();
    assert_eq!(v["error"]["message"], "Overloaded");
    assert_eq!(v["error"]["type"], "overloaded_error");
}

#[test]
fn chat_to_gemini_request() {
    let t = target(ProviderKind::Gemini, "gemini-2.5-flash");
    let (p, _) = prep(ApiFormat::OpenAiChat, &t, RICH);
    assert_eq!(
        p.url,
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    );
    assert!(p.headers.iter().any(|(n, v)| n == "x-goog-api-key" && v == "sk-test"));
    let want = json!({
        "contents": [
            {"role": "user", "parts": [
                {"text": "Weather where this photo was taken?"},
                {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/cat.jpg"}}
            ]},
            {"role": "model", "parts": [
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                {"functionCall": {"name": "get_time", "args": {}}}
            ]},
            {"role": "user", "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"temp_c": 21}}},
                {"functionResponse": {"name": "get_time", "response": {"content": "14:05"}}},
                {"text": "Thanks!"}
            ]}
        ],
        "systemInstruction": {"parts": [{"text": "You are terse."}, {"text": "Use metric units."}]},
        "generationConfig": {"maxOutputTokens": 300, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"]},
        "tools": [{"functionDeclarations": [
            {"name": "get_weather", "description": "Current weather",
             "parametersJsonSchema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": false}},
            {"name": "get_time"}
        ]}],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY"}}
    });
    assert_eq!(body_json(&p), want);

    let (p, _) = prep(ApiFormat::OpenAiChat, &t, r#"{"model":"x","messages":[{"role":"user","content":"hi"}]}"#);
    assert_eq!(p.url, "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent");
    assert!(!p.stream);
    assert_eq!(body_json(&p), json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}));
}

#[test]
fn gemini_answers_become_chat_completions() {
    let (_, t) = prep(ApiFormat::OpenAiChat, &target(ProviderKind::Gemini, "g"), r#"{"model":"x","messages":[]}"#);
    let b = t.translate_body(&fixture("gemini/generate.json")).unwrap();
    let v: Value = serde_json::from_slice(&b.body).unwrap();
    assert_chat_completion(&v);
    assert_eq!(v["id"], "mKZ4aN2bH6Wz1MkP1s2ZyAo");
    assert_eq!(v["model"], "gemini-2.5-flash");
    assert_eq!(v["choices"][0]["message"]["content"], "Paris is the capital of France.");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    // promptTokenCount already includes the cached part; thoughts are output.
    assert_eq!(v["usage"]["prompt_tokens"], 5200);
    assert_eq!(v["usage"]["completion_tokens"], 270);
    assert_eq!(v["usage"]["total_tokens"], 5470);
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 4096);
    assert_eq!(v["usage"]["completion_tokens_details"]["reasoning_tokens"], 258);

    let b = t.translate_body(&fixture("gemini/function_call.json")).unwrap();
    let v: Value = serde_json::from_slice(&b.body).unwrap();
    assert_chat_completion(&v);
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert!(v["choices"][0]["message"]["content"].is_null());
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(call["function"]["arguments"], "{\"location\":\"Boston\"}");
    assert!(call["id"].as_str().is_some_and(|s| !s.is_empty()));
}

#[test]
fn gemini_stream_becomes_chat_chunks() {
    let body = r#"{"model":"x","stream":true,"stream_options":{"include_usage":true},"messages":[]}"#;
    let (_, t) = prep(ApiFormat::OpenAiChat, &target(ProviderKind::Gemini, "g"), body);
    let (out, end) = byte_by_byte(&t, &fixture("gemini/generate.sse"));
    assert!(end.completed);
    assert_eq!(end.terminator.as_ref(), b"data: [DONE]\n\n");
    let (text, calls, finish, usage) = accumulate(&out);
    assert_eq!(text, "Paris is the capital of France.");
    assert!(calls.is_empty());
    assert_eq!(finish.as_deref(), Some("stop"));
    assert_eq!(usage.unwrap()["completion_tokens"], 270);

    // Cut before the finishReason: not completed, no terminator.
    let data = fixture("gemini/generate.sse");
    let text = std::str::from_utf8(&data).unwrap();
    let cut = text.rfind("data: ").unwrap();
    let (_, end) = run_stream(&t, &data[..cut], &[]);
    assert!(!end.completed);
    assert!(end.terminator.is_empty());
    assert_eq!(end.usage.unwrap().output, 8, "last usageMetadata seen wins");
}
