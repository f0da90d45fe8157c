//! In-process tests of every mock endpoint's wire shape, usage, knobs, faults, stats and auth.

// Test helpers outside #[test] fns may unwrap too.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::Router;
use base64::Engine as _;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tollgate_mock::{embed, router, usage_for, usage_for_request, MockConfig, MockUsage};
use tower::ServiceExt;

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// `(event name, data)` pairs of an SSE body; events end in a blank line
    /// (LF or CRLF).
    fn events(&self) -> Vec<(Option<String>, String)> {
        let normalized = self.body.replace("\r\n", "\n");
        assert!(normalized.ends_with("\n\n"), "stream does not end with a blank line: {:?}", self.body);
        normalized
            .split("\n\n")
            .filter(|block| !block.is_empty())
            .map(|block| {
                let mut name = None;
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        name = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push_str(v);
                    } else {
                        panic!("unexpected SSE line {line:?}");
                    }
                }
                (name, data)
            })
            .collect()
    }

    /// The JSON of every event except OpenAI's `[DONE]`.
    fn event_jsons(&self) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|(_, data)| data != "[DONE]")
            .map(|(_, data)| serde_json::from_str(&data).unwrap_or_else(|e| panic!("bad event JSON ({e}): {data}")))
            .collect()
    }
}

async fn send(app: &Router, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&Value>) -> Answer {
    let mut request = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
    let response = app.clone().oneshot(request.body(body).unwrap()).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Answer { status, headers, body: String::from_utf8(bytes.to_vec()).unwrap() }
}

async fn post(app: &Router, path: &str, body: Value) -> Answer {
    send(app, "POST", path, &[], Some(&body)).await
}

fn mock() -> Router {
    router(MockConfig::default())
}

fn chat_body(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": [{"type": "text", "text": text}]},
    ]})
}

fn with(mut body: Value, key: &str, value: Value) -> Value {
    body[key] = value;
    body
}

fn chat_text_bytes(text: &str) -> u64 {
    ("You are terse.".len() + text.len()) as u64
}

fn expect_openai_usage(usage: &Value, u: &MockUsage) {
    assert_eq!(usage["prompt_tokens"], u.prompt_tokens);
    assert_eq!(usage["completion_tokens"], u.output_tokens);
    assert_eq!(usage["total_tokens"], u.prompt_tokens + u.output_tokens);
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], u.cache_read_tokens);
    assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], u.reasoning_tokens);
}

// ---------------------------------------------------------------- OpenAI chat

#[tokio::test]
async fn chat_completion_has_the_full_openai_shape_and_documented_usage() {
    let app = mock();
    let text = "Summarise the quarterly report in two sentences please.";
    let a = post(&app, "/v1/chat/completions", chat_body("gpt-4o-mini", text)).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.headers["content-type"], "application/json");
    assert!(a.headers.contains_key("x-request-id"));
    let j = a.json();
    assert!(j["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(j["object"], "chat.completion");
    assert!(j["created"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(j["model"], "gpt-4o-mini");
    let choice = &j["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["finish_reason"], "stop");
    assert!(choice["logprobs"].is_null());
    assert_eq!(choice["message"]["role"], "assistant");
    let content = choice["message"]["content"].as_str().unwrap();
    assert!(content.starts_with("mock reply "), "{content}");

    let expected = usage_for(chat_text_bytes(text), "gpt-4o-mini", None, None);
    assert_eq!(expected.prompt_tokens, 8 + chat_text_bytes(text) / 4);
    assert_eq!(expected.output_tokens, 24);
    expect_openai_usage(&j["usage"], &expected);
    assert_eq!(content.split(' ').count() as u64, expected.output_tokens);
    assert_eq!(
        usage_for_request(&serde_json::to_vec(&chat_body("gpt-4o-mini", text)).unwrap(), "gpt-4o-mini"),
        Some(expected)
    );
}

#[tokio::test]
async fn reasoning_models_report_reasoning_inside_completion_tokens() {
    let app = mock();
    for (model, reasoning) in [("o3-mini", 5), ("gpt-5", 5), ("my-Thinking-model", 5), ("gpt-4o", 0)] {
        let body = with(chat_body(model, "hi"), "max_completion_tokens", json!(10));
        let usage = post(&app, "/v1/chat/completions", body).await.json()["usage"].clone();
        assert_eq!(usage["completion_tokens"], 10, "{model}");
        assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], reasoning, "{model}");
    }
}

#[tokio::test]
async fn chat_stream_without_include_usage_has_no_usage_anywhere() {
    let app = mock();
    let body = with(chat_body("gpt-4o-mini", "stream me"), "stream", json!(true));
    let a = post(&app, "/v1/chat/completions", body).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.headers["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let events = a.events();
    assert_eq!(events.last().unwrap().1, "[DONE]");
    let chunks = a.event_jsons();
    // role chunk + 4 content deltas + finish chunk
    assert_eq!(chunks.len(), 6);
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert!(c.get("usage").is_none(), "usage leaked: {c}");
        assert_eq!(c["choices"][0]["index"], 0);
        assert!(c["choices"][0]["logprobs"].is_null());
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(chunks[5]["choices"][0]["finish_reason"], "stop");
    assert!(chunks[..5].iter().all(|c| c["choices"][0]["finish_reason"].is_null()));
    let ids: Vec<&Value> = chunks.iter().map(|c| &c["id"]).collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]));
}

#[tokio::test]
async fn chat_stream_with_include_usage_matches_the_non_streamed_usage_and_text() {
    let app = mock();
    let plain = post(&app, "/v1/chat/completions", chat_body("o4-mini", "same prompt")).await.json();
    let body = json!({
        "model": "o4-mini", "stream": true, "stream_options": {"include_usage": true},
        "messages": chat_body("o4-mini", "same prompt")["messages"].clone(),
    });
    let chunks = post(&app, "/v1/chat/completions", body).await.event_jsons();
    let (last, rest) = chunks.split_last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"], plain["usage"]);
    for c in rest {
        assert!(c["usage"].is_null() && c.as_object().unwrap().contains_key("usage"), "{c}");
    }
    let streamed: String = rest.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(streamed, plain["choices"][0]["message"]["content"].as_str().unwrap());
}

#[tokio::test]
async fn azure_routes_answer_like_openai_with_the_deployment_as_model() {
    let app = mock();
    let a = post(
        &app,
        "/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21",
        json!({"messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.json()["model"], "prod-4o");
    let v1 = post(&app, "/openai/v1/chat/completions", chat_body("gpt-4.1", "hi")).await;
    assert_eq!(v1.json()["model"], "gpt-4.1");
    let missing = post(&app, "/v1/chat/completions", json!({"messages": []})).await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert_eq!(missing.json()["error"]["type"], "invalid_request_error");
}

// ---------------------------------------------------------------- embeddings

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

#[tokio::test]
async fn embeddings_are_deterministic_normalised_and_similar_for_paraphrases() {
    let app = mock();
    let inputs = ["How do I reset my password?", "how do i reset my PASSWORD", "Quarterly revenue grew in Europe"];
    let a = post(
        &app,
        "/v1/embeddings",
        json!({"model": "text-embedding-3-small", "input": inputs, "encoding_format": "float"}),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let j = a.json();
    assert_eq!(j["object"], "list");
    assert_eq!(j["model"], "text-embedding-3-small");
    let data = j["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    let vectors: Vec<Vec<f32>> = data.iter().map(|d| floats(&d["embedding"])).collect();
    for (i, d) in data.iter().enumerate() {
        assert_eq!(d["object"], "embedding");
        assert_eq!(d["index"], i);
        assert_eq!(vectors[i].len(), 64);
        assert!((cosine(&vectors[i], &vectors[i]) - 1.0).abs() < 1e-4);
    }
    assert!(cosine(&vectors[0], &vectors[1]) > 0.99);
    assert!(cosine(&vectors[0], &vectors[2]) < 0.5);
    assert_eq!(vectors[0], embed(inputs[0], 64));

    let bytes: u64 = inputs.iter().map(|s| s.len() as u64).sum();
    let prompt = 8 + bytes / 4;
    assert_eq!(j["usage"], json!({"prompt_tokens": prompt, "total_tokens": prompt}));
}

#[tokio::test]
async fn embeddings_support_base64_and_dimensions() {
    let app = mock();
    let a = post(
        &app,
        "/v1/embeddings",
        json!({"model": "e", "input": "hello world", "encoding_format": "base64", "dimensions": 16}),
    )
    .await;
    let encoded = a.json()["data"][0]["embedding"].as_str().unwrap().to_owned();
    let raw = base64::engine::general_purpose::STANDARD.decode(encoded).unwrap();
    let decoded: Vec<f32> = raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    assert_eq!(decoded, embed("hello world", 16));
    let float = post(&app, "/v1/embeddings", json!({"model": "e", "input": "hello world", "dimensions": 16})).await;
    assert_eq!(floats(&float.json()["data"][0]["embedding"]), decoded);
    let bad = post(&app, "/v1/embeddings", json!({"model": "e", "input": {"no": 1}})).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

// ---------------------------------------------------------------- Responses API

#[tokio::test]
async fn responses_api_streams_the_documented_events_with_the_same_usage() {
    let app = mock();
    let req =
        json!({"model": "gpt-4.1", "instructions": "Be brief.", "input": "Tell me a fact.", "max_output_tokens": 12});
    let plain = post(&app, "/v1/responses", req.clone()).await.json();
    assert!(plain["id"].as_str().unwrap().starts_with("resp_"));
    assert_eq!(plain["object"], "response");
    assert_eq!(plain["status"], "completed");
    assert_eq!(plain["instructions"], "Be brief.");
    let item = &plain["output"][0];
    assert_eq!(
        (item["type"].as_str(), item["role"].as_str(), item["status"].as_str()),
        (Some("message"), Some("assistant"), Some("completed"))
    );
    assert_eq!(item["content"][0]["type"], "output_text");
    let text = item["content"][0]["text"].as_str().unwrap();
    let u = usage_for(("Be brief.".len() + "Tell me a fact.".len()) as u64, "gpt-4.1", Some(12), None);
    assert_eq!(
        plain["usage"],
        json!({
            "input_tokens": u.prompt_tokens, "input_tokens_details": {"cached_tokens": u.cache_read_tokens},
            "output_tokens": 12, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": u.prompt_tokens + 12,
        })
    );

    let a = post(&app, "/v1/responses", with(req, "stream", json!(true))).await;
    let events = a.events();
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_deref().unwrap()).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    let jsons = a.event_jsons();
    for (i, (j, name)) in jsons.iter().zip(&names).enumerate() {
        assert_eq!(j["type"], *name);
        assert_eq!(j["sequence_number"], i);
    }
    assert_eq!(jsons[0]["response"]["status"], "in_progress");
    let deltas: String = jsons.iter().filter_map(|j| j.get("delta").and_then(Value::as_str)).collect();
    assert_eq!(deltas, text);
    assert!(jsons[4]["logprobs"].is_array());
    assert_eq!(jsons[8]["text"], text);
    let completed = &jsons[11]["response"];
    assert_eq!(completed["usage"], plain["usage"]);
    assert_eq!(completed["output"][0]["content"], plain["output"][0]["content"]);
}

// ---------------------------------------------------------------- Anthropic

fn anthropic_body(model: &str) -> Value {
    json!({"model": model, "max_tokens": 1024, "system": "You are terse.", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "Summarise the quarterly report in two sentences please."}]}
    ]})
}

#[tokio::test]
async fn anthropic_messages_report_cache_outside_input_tokens() {
    let app = mock();
    let a = post(&app, "/v1/messages", anthropic_body("claude-sonnet-4-5")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(a.headers.contains_key("request-id"));
    let j = a.json();
    assert!(j["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(j["type"], "message");
    assert_eq!(j["role"], "assistant");
    assert_eq!(j["model"], "claude-sonnet-4-5");
    assert_eq!(j["content"][0]["type"], "text");
    assert!(j["content"][0]["text"].as_str().unwrap().starts_with("mock reply"));
    assert_eq!(j["stop_reason"], "end_turn");
    assert!(j["stop_sequence"].is_null());
    let u = usage_for(
        chat_text_bytes("Summarise the quarterly report in two sentences please."),
        "claude-sonnet-4-5",
        Some(1024),
        None,
    );
    let usage = &j["usage"];
    assert_eq!(usage["input_tokens"], u.anthropic_input_tokens());
    assert_eq!(usage["cache_read_input_tokens"], u.cache_read_tokens);
    assert_eq!(usage["cache_creation_input_tokens"], u.cache_write_tokens());
    assert_eq!(usage["cache_creation"]["ephemeral_5m_input_tokens"], u.cache_write_5m_tokens);
    assert_eq!(usage["cache_creation"]["ephemeral_1h_input_tokens"], u.cache_write_1h_tokens);
    assert_eq!(usage["output_tokens"], 24);
    let sum = usage["input_tokens"].as_u64().unwrap()
        + usage["cache_read_input_tokens"].as_u64().unwrap()
        + usage["cache_creation_input_tokens"].as_u64().unwrap();
    assert_eq!(sum, u.prompt_tokens);
}

#[tokio::test]
async fn anthropic_stream_has_every_event_and_the_same_usage() {
    let app = mock();
    let plain = post(&app, "/v1/messages", anthropic_body("claude-haiku-4-5")).await.json();
    let a = post(&app, "/v1/messages", with(anthropic_body("claude-haiku-4-5"), "stream", json!(true))).await;
    let events = a.events();
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_deref().unwrap()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    let jsons = a.event_jsons();
    for (j, name) in jsons.iter().zip(&names) {
        assert_eq!(j["type"], *name);
    }
    let start = &jsons[0]["message"];
    assert_eq!(start["content"], json!([]));
    assert!(start["stop_reason"].is_null());
    assert_eq!(start["usage"]["output_tokens"], 1);
    for field in ["input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens", "cache_creation"] {
        assert_eq!(start["usage"][field], plain["usage"][field], "{field}");
    }
    let delta = &jsons[8];
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    for field in ["input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens", "output_tokens"] {
        assert_eq!(delta["usage"][field], plain["usage"][field], "{field}");
    }
    let text: String = jsons.iter().filter_map(|j| j["delta"]["text"].as_str()).collect();
    assert_eq!(text, plain["content"][0]["text"].as_str().unwrap());
}

#[tokio::test]
async fn anthropic_requires_max_tokens() {
    let app = mock();
    let mut body = anthropic_body("claude-haiku-4-5");
    body.as_object_mut().unwrap().remove("max_tokens");
    let a = post(&app, "/v1/messages", body).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let j = a.json();
    assert_eq!(j["type"], "error");
    assert_eq!(j["error"]["type"], "invalid_request_error");
}

// ---------------------------------------------------------------- Gemini

fn gemini_body() -> Value {
    json!({
        "systemInstruction": {"parts": [{"text": "You are terse."}]},
        "contents": [{"role": "user", "parts": [{"text": "Summarise the quarterly report in two sentences please."}]}],
        "generationConfig": {"maxOutputTokens": 20},
    })
}

#[tokio::test]
async fn gemini_generate_content_reports_thoughts_outside_candidates() {
    let app = mock();
    let a = post(&app, "/v1beta/models/gemini-think-pro:generateContent", gemini_body()).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let j = a.json();
    let c = &j["candidates"][0];
    assert_eq!(c["finishReason"], "STOP");
    assert_eq!(c["content"]["role"], "model");
    assert!(c["content"]["parts"][0]["text"].as_str().unwrap().starts_with("mock reply"));
    assert_eq!(j["modelVersion"], "gemini-think-pro");
    let u = usage_for(
        chat_text_bytes("Summarise the quarterly report in two sentences please."),
        "gemini-think-pro",
        Some(20),
        None,
    );
    let m = &j["usageMetadata"];
    assert_eq!(m["promptTokenCount"], u.prompt_tokens);
    assert_eq!(m["cachedContentTokenCount"], u.cache_read_tokens);
    assert_eq!(m["candidatesTokenCount"], 10);
    assert_eq!(m["thoughtsTokenCount"], 10);
    assert_eq!(m["totalTokenCount"], u.prompt_tokens + 20);
}

#[tokio::test]
async fn gemini_sse_stream_uses_crlf_and_ends_with_the_full_usage() {
    let app = mock();
    let plain = post(&app, "/v1beta/models/gemini-2.0-flash:generateContent", gemini_body()).await.json();
    let a = post(&app, "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse", gemini_body()).await;
    assert!(a.headers["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    assert!(a.body.ends_with("}\r\n\r\n"));
    let chunks = a.event_jsons();
    assert_eq!(chunks.len(), 4);
    for c in &chunks[..3] {
        assert!(c["candidates"][0].get("finishReason").is_none());
        assert_eq!(c["usageMetadata"]["promptTokenCount"], plain["usageMetadata"]["promptTokenCount"]);
    }
    let last = chunks.last().unwrap();
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    assert_eq!(last["usageMetadata"], plain["usageMetadata"]);
    assert!(plain["usageMetadata"].get("thoughtsTokenCount").is_none());
    let text: String =
        chunks.iter().filter_map(|c| c["candidates"][0]["content"]["parts"][0]["text"].as_str()).collect();
    assert_eq!(text, plain["candidates"][0]["content"]["parts"][0]["text"].as_str().unwrap());

    let array = post(&app, "/v1beta/models/gemini-2.0-flash:streamGenerateContent", gemini_body()).await;
    let elements = array.json();
    assert_eq!(elements.as_array().unwrap().len(), 4);
    assert_eq!(elements[3]["usageMetadata"], plain["usageMetadata"]);

    let unknown = post(&app, "/v1beta/models/gemini-2.0-flash:embedText", gemini_body()).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.json()["error"]["status"], "NOT_FOUND");
}

#[tokio::test]
async fn models_lists_openai_or_anthropic_shapes() {
    let app = mock();
    let openai = send(&app, "GET", "/v1/models", &[], None).await.json();
    assert_eq!(openai["object"], "list");
    assert!(openai["data"].as_array().unwrap().iter().all(|m| m["object"] == "model" && m["id"].is_string()));
    let anthropic = send(&app, "GET", "/v1/models", &[("anthropic-version", "2023-06-01")], None).await.json();
    assert_eq!(anthropic["has_more"], false);
    assert_eq!(anthropic["data"][0]["type"], "model");
    let one = send(&app, "GET", "/v1/models/gpt-4o", &[], None).await.json();
    assert_eq!(one["id"], "gpt-4o");
}

// ---------------------------------------------------------------- knobs

#[tokio::test]
async fn knobs_work_from_headers_and_from_body_directives() {
    let app = mock();
    let body = with(chat_body("gpt-4o", "hi"), "stream", json!(true));
    let headers = [("x-mock-chunks", "2"), ("x-mock-output-tokens", "6")];
    let via_header = send(&app, "POST", "/v1/chat/completions", &headers, Some(&body)).await.event_jsons();
    assert_eq!(via_header.len(), 1 + 2 + 1);

    let directive = with(chat_body("gpt-4o", "hi [mock chunks=7 output_tokens=40]"), "stream", json!(true));
    let via_body = post(&app, "/v1/chat/completions", directive).await.event_jsons();
    assert_eq!(via_body.len(), 1 + 7 + 1);
    let text: String = via_body.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text.split(' ').count(), 40);

    // the body directive wins over the header
    let both = send(&app, "POST", "/v1/chat/completions", &headers, Some(&directive_body())).await.json();
    assert_eq!(both["usage"]["completion_tokens"], 3);

    let started = Instant::now();
    let slow =
        send(&app, "POST", "/v1/chat/completions", &[("x-mock-latency-ms", "60")], Some(&chat_body("gpt-4o", "hi")))
            .await;
    assert_eq!(slow.status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(60));

    let started = Instant::now();
    let paced = post(
        &app,
        "/v1/messages",
        with(anthropic_body("claude [mock chunk_delay_ms=10 chunks=3]"), "stream", json!(true)),
    )
    .await;
    assert_eq!(paced.events().len(), 9);
    assert!(started.elapsed() >= Duration::from_millis(80), "{:?}", started.elapsed());
}

fn directive_body() -> Value {
    chat_body("gpt-4o", "[mock output_tokens=3]")
}

#[tokio::test]
async fn bad_knobs_answer_400_naming_the_problem() {
    let app = mock();
    let a = post(&app, "/v1/chat/completions", chat_body("gpt-4o", "[mock fault=explode]")).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.json()["error"]["message"].as_str().unwrap().contains("explode"));
}

// ---------------------------------------------------------------- tool and cost knobs

#[tokio::test]
async fn web_searches_knob_adds_server_tool_use_to_anthropic_usage() {
    let app = mock();
    let plain = post(&app, "/v1/messages", anthropic_body("claude-haiku-4-5")).await.json();
    assert!(plain["usage"].get("server_tool_use").is_none(), "no searches, no server_tool_use: {plain}");

    let body = with(anthropic_body("claude-haiku-4-5"), "system", json!("[mock web_searches=3] You are terse."));
    let whole = post(&app, "/v1/messages", body.clone()).await.json();
    assert_eq!(whole["usage"]["server_tool_use"], json!({"web_search_requests": 3}));
    // The token counts follow the formulas as ever (the directive is prompt text).
    let u = usage_for(
        chat_text_bytes("Summarise the quarterly report in two sentences please.") + 22,
        "c",
        Some(1024),
        None,
    );
    assert_eq!(whole["usage"]["input_tokens"], u.anthropic_input_tokens());
    assert_eq!(whole["usage"]["output_tokens"], 24);

    // Streamed: message_start (before the searches ran) has none, message_delta the total.
    let a = post(&app, "/v1/messages", with(body, "stream", json!(true))).await;
    let jsons = a.event_jsons();
    let start = jsons.iter().find(|j| j["type"] == "message_start").unwrap();
    assert!(start["message"]["usage"].get("server_tool_use").is_none(), "{start}");
    let delta = jsons.iter().find(|j| j["type"] == "message_delta").unwrap();
    assert_eq!(delta["usage"]["server_tool_use"], json!({"web_search_requests": 3}));
    assert_eq!(delta["usage"]["output_tokens"], 24);

    // From the header too; the body directive wins over it.
    let headers = [("x-mock-web-searches", "2")];
    let via_header =
        send(&app, "POST", "/v1/messages", &headers, Some(&anthropic_body("claude-haiku-4-5"))).await.json();
    assert_eq!(via_header["usage"]["server_tool_use"]["web_search_requests"], 2);
    let both = with(anthropic_body("claude-haiku-4-5"), "system", json!("[mock web_searches=5]"));
    let both = send(&app, "POST", "/v1/messages", &headers, Some(&both)).await.json();
    assert_eq!(both["usage"]["server_tool_use"]["web_search_requests"], 5);

    // no_usage wins: no usage, so no count either.
    let none = with(anthropic_body("claude-haiku-4-5"), "system", json!("[mock web_searches=3 fault=no_usage]"));
    assert!(!post(&app, "/v1/messages", with(none, "stream", json!(true))).await.body.contains("server_tool_use"));

    // A non-number is refused.
    let bad = post(&app, "/v1/messages", with(anthropic_body("c"), "system", json!("[mock web_searches=many]"))).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.json()["error"]["message"].as_str().unwrap().contains("web_searches"));
}

/// `output` with each item's `id` blanked (ids carry the request's sequence number).
fn without_ids(output: &Value) -> Value {
    let mut items = output.as_array().unwrap().clone();
    for item in &mut items {
        item.as_object_mut().unwrap().remove("id");
    }
    Value::Array(items)
}

#[tokio::test]
async fn web_searches_knob_adds_web_search_call_items_to_responses() {
    let app = mock();
    let req = json!({"model": "gpt-4o", "input": "[mock web_searches=2] What happened today?", "max_output_tokens": 8});
    let plain = post(&app, "/v1/responses", req.clone()).await.json();
    let output = plain["output"].as_array().unwrap();
    assert_eq!(output.len(), 3, "{plain}");
    for (i, item) in output[..2].iter().enumerate() {
        assert_eq!(item["type"], "web_search_call");
        assert_eq!(item["status"], "completed");
        assert!(item["id"].as_str().unwrap().starts_with("ws_"), "{item}");
        assert_eq!(item["action"]["type"], "search");
        assert_eq!(item["action"]["query"], format!("mock search {} of 2", i + 1));
    }
    assert_ne!(output[0]["id"], output[1]["id"]);
    assert_eq!((output[2]["type"].as_str(), output[2]["role"].as_str()), (Some("message"), Some("assistant")));
    // Usage is unchanged by the searches.
    let u = usage_for("[mock web_searches=2] What happened today?".len() as u64, "gpt-4o", Some(8), None);
    assert_eq!(plain["usage"]["input_tokens"], u.prompt_tokens);
    assert_eq!(plain["usage"]["output_tokens"], 8);

    let a = post(&app, "/v1/responses", with(req, "stream", json!(true))).await;
    let events = a.events();
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_deref().unwrap()).collect();
    let search_events = [
        "response.output_item.added",
        "response.web_search_call.in_progress",
        "response.web_search_call.searching",
        "response.web_search_call.completed",
        "response.output_item.done",
    ];
    let mut expected = vec!["response.created", "response.in_progress"];
    expected.extend(search_events);
    expected.extend(search_events);
    expected.extend(["response.output_item.added", "response.content_part.added"]);
    expected.extend(["response.output_text.delta"; 4]);
    expected.extend([
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]);
    assert_eq!(names, expected);
    let jsons = a.event_jsons();
    for (i, (j, name)) in jsons.iter().zip(&names).enumerate() {
        assert_eq!(j["type"], *name);
        assert_eq!(j["sequence_number"], i);
    }
    // Per search: added in progress, done completed, at output_index 0 and 1.
    for (search, at) in [(0, 2), (1, 7)] {
        assert_eq!(jsons[at]["output_index"], search);
        assert_eq!(jsons[at]["item"]["type"], "web_search_call");
        assert_eq!(jsons[at]["item"]["status"], "in_progress");
        let id = jsons[at]["item"]["id"].clone();
        for k in 1..=3 {
            assert_eq!((&jsons[at + k]["output_index"], &jsons[at + k]["item_id"]), (&json!(search), &id));
        }
        assert_eq!(jsons[at + 4]["item"]["status"], "completed");
        assert_eq!(jsons[at + 4]["item"]["id"], id);
    }
    // The message's events sit at output_index 2, after the searches.
    assert!(jsons[12..21].iter().all(|j| j["output_index"] == 2), "{jsons:?}");
    let completed = &jsons[21]["response"];
    assert_eq!(without_ids(&completed["output"]), without_ids(&plain["output"]));
    assert_eq!(completed["usage"], plain["usage"]);

    // Chat completions have no such items: the knob leaves them as they were.
    let chat = post(&app, "/v1/chat/completions", chat_body("gpt-4o", "[mock web_searches=2]")).await.json();
    assert!(!chat.to_string().contains("web_search"), "{chat}");
}

#[tokio::test]
async fn reported_cost_knob_writes_the_number_as_given_into_chat_usage() {
    let app = mock();
    let text = "[mock reported_cost=0.000123] hello";
    let a = post(&app, "/v1/chat/completions", chat_body("gpt-4o-mini", text)).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.body.contains(r#""cost":0.000123,"#), "{}", a.body);
    let j = a.json();
    assert_eq!(j["usage"]["cost"].as_f64(), Some(0.000123));
    // The token fields are as without the knob.
    expect_openai_usage(&j["usage"], &usage_for(chat_text_bytes(text), "gpt-4o-mini", None, None));
    let plain = post(&app, "/v1/chat/completions", chat_body("gpt-4o-mini", "hello")).await.json();
    assert!(plain["usage"].get("cost").is_none(), "{plain}");

    // Exponent form and more digits than an f64 holds, verbatim (from a header, on Azure's route).
    for written in ["1.5e-05", "0.00012345678901234567891"] {
        let a = send(
            &app,
            "POST",
            "/openai/deployments/d/chat/completions",
            &[("x-mock-reported-cost", written)],
            Some(&chat_body("gpt-4o", "hi")),
        )
        .await;
        assert!(a.body.contains(&format!(r#""cost":{written},"#)), "{written}: {}", a.body);
        assert!(a.json()["usage"]["cost"].is_number());
    }

    // Streamed with include_usage: only the final usage chunk carries it.
    let body = json!({"model": "gpt-4o", "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "[mock reported_cost=0.000123]"}]});
    let s = post(&app, "/v1/chat/completions", body).await;
    let events = s.events();
    assert_eq!(events.last().unwrap().1, "[DONE]");
    let usage_chunk = &events[events.len() - 2].1;
    assert!(usage_chunk.contains(r#""cost":0.000123,"#), "{usage_chunk}");
    let chunks = s.event_jsons();
    let (last, rest) = chunks.split_last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["cost"].as_f64(), Some(0.000123));
    assert!(last["usage"]["prompt_tokens"].is_u64());
    assert!(rest.iter().all(|c| c["usage"].is_null()));
    // Without include_usage (or with no_usage) there is no usage to put it in.
    let quiet = post(
        &app,
        "/v1/chat/completions",
        with(chat_body("gpt-4o", "[mock reported_cost=0.000123]"), "stream", json!(true)),
    )
    .await;
    assert!(!quiet.body.contains("cost"), "{}", quiet.body);
    let none = post(&app, "/v1/chat/completions", chat_body("gpt-4o", "[mock reported_cost=0.1 fault=no_usage]")).await;
    assert!(none.json().get("usage").is_none());

    // Other endpoints ignore it.
    let anthropic =
        post(&app, "/v1/messages", with(anthropic_body("c"), "system", json!("[mock reported_cost=0.5]"))).await;
    assert!(anthropic.json()["usage"].get("cost").is_none());

    // What is not a JSON number would break the body: refused, naming the knob.
    for bad in ["$0.01", ".5", "1e", "abc"] {
        let a = post(&app, "/v1/chat/completions", chat_body("gpt-4o", &format!("[mock reported_cost={bad}]"))).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(a.json()["error"]["message"].as_str().unwrap().contains("reported_cost"), "{bad}");
    }
}

// ---------------------------------------------------------------- faults

#[tokio::test]
async fn status_faults_use_each_provider_error_shape_and_retry_after() {
    let app = mock();
    let openai = post(&app, "/v1/chat/completions", chat_body("gpt-4o", "[mock fault=429 retry_after=7]")).await;
    assert_eq!(openai.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(openai.headers["retry-after"], "7");
    let e = openai.json();
    assert_eq!(e["error"]["code"], "rate_limit_exceeded");
    assert!(e["error"]["message"].is_string() && e["error"].as_object().unwrap().contains_key("param"));

    let mut anthropic_req = anthropic_body("claude-haiku-4-5");
    anthropic_req["messages"][0]["content"][0]["text"] = json!("[mock fault=429]");
    let anthropic = post(&app, "/v1/messages", anthropic_req).await;
    assert_eq!(anthropic.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(anthropic.headers["retry-after"], "1");
    assert_eq!(anthropic.json()["type"], "error");
    assert_eq!(anthropic.json()["error"]["type"], "rate_limit_error");

    let mut gemini_req = gemini_body();
    gemini_req["contents"][0]["parts"][0]["text"] = json!("[mock fault=429]");
    let gemini = post(&app, "/v1beta/models/gemini-2.0-flash:generateContent", gemini_req).await;
    assert_eq!(gemini.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        gemini.json()["error"],
        json!({"code": 429, "message": gemini.json()["error"]["message"], "status": "RESOURCE_EXHAUSTED"})
    );

    for (fault, status, kind) in
        [("500", 500, "server_error"), ("503", 503, "server_error"), ("400", 400, "invalid_request_error")]
    {
        let a =
            send(&app, "POST", "/v1/chat/completions", &[("x-mock-fault", fault)], Some(&chat_body("gpt-4o", "hi")))
                .await;
        assert_eq!(a.status.as_u16(), status);
        assert_eq!(a.json()["error"]["type"], kind);
    }
    let overloaded =
        send(&app, "POST", "/v1/messages", &[("x-mock-fault", "529")], Some(&anthropic_body("claude-haiku-4-5"))).await;
    assert_eq!(overloaded.status.as_u16(), 529);
    assert_eq!(overloaded.json()["error"]["type"], "overloaded_error");
}

#[tokio::test]
async fn malformed_and_truncated_bodies_do_not_parse() {
    let app = mock();
    let malformed = post(&app, "/v1/chat/completions", chat_body("gpt-4o", "[mock fault=malformed]")).await;
    assert_eq!(malformed.status, StatusCode::OK);
    assert!(serde_json::from_str::<Value>(&malformed.body).is_err());

    let truncated =
        post(&app, "/v1/messages", with(anthropic_body("claude-haiku-4-5"), "system", json!("[mock fault=truncate]")))
            .await;
    assert_eq!(truncated.status, StatusCode::OK);
    assert!(serde_json::from_str::<Value>(&truncated.body).is_err());
    assert!(truncated.body.starts_with("{\""));
}

#[tokio::test]
async fn truncated_streams_stop_half_way_without_terminal_event_or_usage() {
    let app = mock();
    let body = json!({"model": "gpt-4o", "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "[mock fault=truncate chunks=6]"}]});
    let chat = post(&app, "/v1/chat/completions", body).await;
    assert!(!chat.body.contains("[DONE]"));
    let chunks = chat.event_jsons();
    assert_eq!(chunks.len(), 1 + 3);
    assert!(chunks.iter().all(|c| c["usage"].is_null() && c["choices"][0]["finish_reason"].is_null()));

    let anthropic =
        post(&app, "/v1/messages", with(anthropic_body("claude [mock fault=truncate]"), "stream", json!(true))).await;
    let names: Vec<String> = anthropic.events().into_iter().filter_map(|(n, _)| n).collect();
    assert_eq!(names, ["message_start", "content_block_start", "ping", "content_block_delta", "content_block_delta"]);

    let mut gemini_req = gemini_body();
    gemini_req["contents"][0]["parts"][0]["text"] = json!("[mock fault=truncate]");
    let gemini = post(&app, "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse", gemini_req).await;
    let chunks = gemini.event_jsons();
    assert_eq!(chunks.len(), 2);
    assert!(chunks.iter().all(|c| c["candidates"][0].get("finishReason").is_none()));

    let responses =
        post(&app, "/v1/responses", json!({"model": "gpt-4o", "stream": true, "input": "[mock fault=truncate]"})).await;
    assert!(!responses.body.contains("response.completed"));
}

#[tokio::test]
async fn malformed_stream_event_is_inserted_mid_way() {
    let app = mock();
    let body = with(chat_body("gpt-4o", "[mock fault=malformed]"), "stream", json!(true));
    let a = post(&app, "/v1/chat/completions", body).await;
    let events = a.events();
    let bad: Vec<&String> =
        events.iter().map(|(_, d)| d).filter(|d| *d != "[DONE]" && serde_json::from_str::<Value>(d).is_err()).collect();
    assert_eq!(bad.len(), 1);
    assert_eq!(events.last().unwrap().1, "[DONE]");
}

#[tokio::test]
async fn no_usage_fault_leaves_usage_out_everywhere() {
    let app = mock();
    let chat = post(&app, "/v1/chat/completions", chat_body("gpt-4o", "[mock fault=no_usage]")).await.json();
    assert!(chat.get("usage").is_none());
    let body = json!({"model": "gpt-4o", "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "[mock fault=no_usage]"}]});
    let chunks = post(&app, "/v1/chat/completions", body).await.event_jsons();
    assert!(chunks.iter().all(|c| c.get("usage").is_none()));
    assert!(chunks.iter().all(|c| !c["choices"].as_array().unwrap().is_empty()));

    let anthropic =
        post(&app, "/v1/messages", with(anthropic_body("claude [mock fault=no_usage]"), "stream", json!(true))).await;
    assert!(!anthropic.body.contains("\"usage\""));
    let mut gemini_req = gemini_body();
    gemini_req["contents"][0]["parts"][0]["text"] = json!("[mock fault=no_usage]");
    let gemini = post(&app, "/v1beta/models/gemini-2.0-flash:generateContent", gemini_req).await.json();
    assert!(gemini.get("usageMetadata").is_none());
    let responses =
        post(&app, "/v1/responses", json!({"model": "gpt-4o", "input": "[mock fault=no_usage]"})).await.json();
    assert!(responses.get("usage").is_none());
}

#[tokio::test]
async fn stream_error_sends_each_provider_error_event() {
    let app = mock();
    let chat = post(
        &app,
        "/v1/chat/completions",
        with(chat_body("gpt-4o", "[mock fault=stream_error]"), "stream", json!(true)),
    )
    .await;
    let chunks = chat.event_jsons();
    assert_eq!(chunks.len(), 1 + 2 + 1);
    assert_eq!(chunks.last().unwrap()["error"]["type"], "server_error");
    assert!(!chat.body.contains("[DONE]"));

    let anthropic =
        post(&app, "/v1/messages", with(anthropic_body("claude [mock fault=stream_error]"), "stream", json!(true)))
            .await;
    let (name, data) = anthropic.events().pop().unwrap();
    assert_eq!(name.as_deref(), Some("error"));
    let data: Value = serde_json::from_str(&data).unwrap();
    assert_eq!((data["type"].as_str(), data["error"]["type"].as_str()), (Some("error"), Some("overloaded_error")));

    let responses =
        post(&app, "/v1/responses", json!({"model": "gpt-4o", "stream": true, "input": "[mock fault=stream_error]"}))
            .await;
    let (name, data) = responses.events().pop().unwrap();
    assert_eq!(name.as_deref(), Some("error"));
    let data: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(data["sequence_number"], 6);

    let mut gemini_req = gemini_body();
    gemini_req["contents"][0]["parts"][0]["text"] = json!("[mock fault=stream_error]");
    let gemini = post(&app, "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse", gemini_req).await;
    let last = gemini.event_jsons().pop().unwrap();
    assert_eq!(last["error"]["status"], "UNAVAILABLE");

    // stream-only faults leave non-streamed answers alone
    let plain = post(&app, "/v1/chat/completions", chat_body("gpt-4o", "[mock fault=stream_error]")).await;
    assert_eq!(plain.status, StatusCode::OK);
    assert!(plain.json()["usage"].is_object());
}

// ---------------------------------------------------------------- stats and auth

#[tokio::test]
async fn stats_count_requests_per_path_and_reset_zeroes_them() {
    let app = mock();
    let empty = send(&app, "GET", "/mock/stats", &[], None).await.json();
    assert_eq!(empty, json!({"total": 0, "paths": {}, "models": {}, "last_auth": null, "last_output_limit": null}));

    send(
        &app,
        "POST",
        "/v1/chat/completions",
        &[("authorization", "Bearer sk-secret-value")],
        Some(&chat_body("gpt-4o", "hi")),
    )
    .await;
    post(&app, "/v1/chat/completions", chat_body("gpt-4o", "hi")).await;
    post(&app, "/v1beta/models/gemini-2.0-flash:generateContent", gemini_body()).await;
    let stats = send(&app, "GET", "/mock/stats", &[], None).await;
    assert!(!stats.body.contains("sk-secret-value"));
    let stats = stats.json();
    assert_eq!(stats["total"], 3);
    assert_eq!(stats["paths"]["/v1/chat/completions"], 2);
    assert_eq!(stats["paths"]["/v1beta/models/gemini-2.0-flash:generateContent"], 1);
    assert_eq!(stats["models"]["gpt-4o"], 2);
    assert_eq!(stats["last_auth"], "absent");
    assert_eq!(stats["last_output_limit"], 20, "the last request's maxOutputTokens");

    send(&app, "POST", "/v1/messages", &[("x-api-key", "k")], Some(&anthropic_body("claude-haiku-4-5"))).await;
    let stats = send(&app, "GET", "/mock/stats", &[], None).await.json();
    assert_eq!(stats["last_auth"], "present");
    assert_eq!(stats["last_output_limit"], 1024, "the request's max_tokens");

    let reset = send(&app, "POST", "/mock/reset", &[], None).await;
    assert_eq!(reset.status, StatusCode::OK);
    assert_eq!(send(&app, "GET", "/mock/stats", &[], None).await.json(), empty);
}

#[tokio::test]
async fn required_api_key_is_checked_in_each_provider_header() {
    let app = router(MockConfig { require_api_key: Some("sk-mock".into()), ..MockConfig::default() });
    let chat = chat_body("gpt-4o", "hi");
    let none = post(&app, "/v1/chat/completions", chat.clone()).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(none.json()["error"]["code"], "invalid_api_key");
    let wrong = send(&app, "POST", "/v1/chat/completions", &[("authorization", "Bearer sk-other")], Some(&chat)).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let right = send(&app, "POST", "/v1/chat/completions", &[("authorization", "Bearer sk-mock")], Some(&chat)).await;
    assert_eq!(right.status, StatusCode::OK);

    let azure = "/openai/deployments/d/chat/completions";
    assert_eq!(send(&app, "POST", azure, &[("api-key", "sk-mock")], Some(&chat)).await.status, StatusCode::OK);
    assert_eq!(send(&app, "POST", azure, &[("api-key", "nope")], Some(&chat)).await.status, StatusCode::UNAUTHORIZED);

    let msg = anthropic_body("claude-haiku-4-5");
    let bearer = send(&app, "POST", "/v1/messages", &[("authorization", "Bearer sk-mock")], Some(&msg)).await;
    assert_eq!(bearer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(bearer.json()["error"]["type"], "authentication_error");
    assert_eq!(
        send(&app, "POST", "/v1/messages", &[("x-api-key", "sk-mock")], Some(&msg)).await.status,
        StatusCode::OK
    );

    let gem = "/v1beta/models/gemini-2.0-flash:generateContent";
    let missing = post(&app, gem, gemini_body()).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(missing.json()["error"]["status"], "UNAUTHENTICATED");
    assert_eq!(
        send(&app, "POST", gem, &[("x-goog-api-key", "sk-mock")], Some(&gemini_body())).await.status,
        StatusCode::OK
    );
    assert_eq!(post(&app, &format!("{gem}?key=sk-mock"), gemini_body()).await.status, StatusCode::OK);

    // rejected requests still count as upstream calls
    assert_eq!(send(&app, "GET", "/mock/stats", &[], None).await.json()["total"], 10);
}

#[tokio::test]
async fn unknown_routes_and_bad_json_get_provider_shaped_errors() {
    let app = mock();
    let a = post(&app, "/v2/whatever", json!({})).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(a.json()["error"]["message"].as_str().unwrap().contains("/v2/whatever"));
    let request = Request::post("/v1/messages").body(Body::from("{not json")).unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["type"], "error");
}
