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
    assert_eq!(
        empty,
        json!({"total": 0, "paths": {}, "models": {}, "last_auth": null, "last_output_limit": null,
               "last_path": null, "last_model": null, "last_files": null, "refused": 0, "last_refusal": null,
               "last_aws_region": null, "token_requests": 0, "tokens_issued": 0, "last_token_error": null})
    );

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
    assert_eq!(stats["last_path"], "/v1beta/models/gemini-2.0-flash:generateContent");
    assert_eq!(stats["last_model"], "gemini-2.0-flash");

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

    // rejected requests still count as upstream calls, and as refused
    let stats = send(&app, "GET", "/mock/stats", &[], None).await.json();
    assert_eq!(stats["total"], 10);
    assert_eq!(stats["refused"], 5);
    assert_eq!(stats["last_refusal"], Value::Null, "the last request was accepted");
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

// ---------------------------------------------------------------- media: images and audio

/// A multipart part: a text field, or a file `(name, filename, bytes)`.
enum Part<'a> {
    Text(&'a str, &'a str),
    File(&'a str, &'a str, &'a [u8]),
}

const BOUNDARY: &str = "mock-form-boundary-7MA4YWxkTrZu0gW";

fn form_body(parts: &[Part<'_>]) -> Vec<u8> {
    let mut body = Vec::new();
    for part in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        match part {
            Part::Text(name, value) => {
                body.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes());
                body.extend_from_slice(value.as_bytes());
            }
            Part::File(name, filename, bytes) => {
                body.extend_from_slice(
                    format!(
                        "Content-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n\
                         Content-Type: application/octet-stream\r\n\r\n"
                    )
                    .as_bytes(),
                );
                body.extend_from_slice(bytes);
            }
        }
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// A response whose body is kept as the data frames it arrived in.
struct Frames {
    status: StatusCode,
    headers: HeaderMap,
    frames: Vec<bytes::Bytes>,
}

impl Frames {
    fn bytes(&self) -> Vec<u8> {
        self.frames.concat()
    }

    fn text(&self) -> String {
        String::from_utf8(self.bytes()).unwrap()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes()).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

async fn send_raw(app: &Router, path: &str, headers: &[(&str, &str)], content_type: &str, body: Vec<u8>) -> Frames {
    let mut request = Request::builder().method("POST").uri(path).header("content-type", content_type);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = app.clone().oneshot(request.body(Body::from(body)).unwrap()).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let mut body = response.into_body();
    let mut frames = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            frames.push(data);
        }
    }
    Frames { status, headers, frames }
}

async fn send_form(app: &Router, path: &str, headers: &[(&str, &str)], parts: &[Part<'_>]) -> Frames {
    let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
    send_raw(app, path, headers, &content_type, form_body(parts)).await
}

async fn send_json(app: &Router, path: &str, headers: &[(&str, &str)], body: Value) -> Frames {
    send_raw(app, path, headers, "application/json", body.to_string().into_bytes()).await
}

/// OpenAI's 400 naming `param`.
fn expect_param_error(a: &Frames, param: &str, code: &str) {
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text());
    let e = a.json();
    assert_eq!(e["error"]["type"], "invalid_request_error");
    assert_eq!(e["error"]["param"], param, "{e}");
    assert_eq!(e["error"]["code"], code, "{e}");
    assert!(e["error"]["message"].as_str().unwrap().len() > 10);
}

/// CRC-32 (IEEE), to check the mock's PNG chunk by chunk.
fn crc32(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(!0u32, |crc, &b| {
        (0..8).fold(crc ^ u32::from(b), |c, _| if c & 1 == 1 { (c >> 1) ^ 0xEDB8_8320 } else { c >> 1 })
    })
}

fn expect_valid_png(b64: &str) {
    let png = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let mut at = 8;
    let mut kinds = Vec::new();
    while at < png.len() {
        let len = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
        let kind_and_data = &png[at + 4..at + 8 + len];
        let crc = u32::from_be_bytes(png[at + 8 + len..at + 12 + len].try_into().unwrap());
        assert_eq!(crc32(kind_and_data), crc, "chunk CRC");
        kinds.push(String::from_utf8(kind_and_data[..4].to_vec()).unwrap());
        at += 12 + len;
    }
    assert_eq!(kinds, ["IHDR", "IDAT", "IEND"]);
}

/// A RIFF/WAVE file: PCM `rate` Hz, 16-bit, mono, `data_bytes` of silence, with
/// an odd-sized `LIST` chunk (padded) between `fmt ` and `data`.
fn wav(rate: u32, data_bytes: u32) -> Vec<u8> {
    let mut w = Vec::new();
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(4 + 24 + 14 + 8 + data_bytes).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&rate.to_le_bytes());
    w.extend_from_slice(&(rate * 2).to_le_bytes());
    w.extend_from_slice(&2u16.to_le_bytes());
    w.extend_from_slice(&16u16.to_le_bytes());
    w.extend_from_slice(b"LIST");
    w.extend_from_slice(&5u32.to_le_bytes());
    w.extend_from_slice(b"INFO\x01\x00");
    w.extend_from_slice(b"data");
    w.extend_from_slice(&data_bytes.to_le_bytes());
    w.resize(w.len() + data_bytes as usize, 0);
    w
}

#[tokio::test]
async fn gpt_image_generations_report_the_per_image_token_table() {
    let app = mock();
    let prompt = "a red fox in the snow"; // 21 bytes: 8 + 21/4 = 13 text tokens
    let body = json!({"model": "gpt-image-1", "prompt": prompt, "n": 2, "size": "1024x1536", "quality": "high"});
    let a = send_json(&app, "/v1/images/generations", &[], body).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.headers["content-type"], "application/json");
    assert!(a.headers.contains_key("x-request-id"));
    let j = a.json();
    assert!(j["created"].as_u64().unwrap() > 1_700_000_000);
    let data = j["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    for item in data {
        assert_eq!(item.as_object().unwrap().len(), 1, "only b64_json: {item}");
        expect_valid_png(item["b64_json"].as_str().unwrap());
    }
    assert_eq!(
        j["usage"],
        json!({"input_tokens": 13, "input_tokens_details": {"text_tokens": 13, "image_tokens": 0},
               "output_tokens": 12_480, "total_tokens": 12_493})
    );
    assert_eq!(tollgate_mock::text_tokens(prompt), 13);

    // gpt-image answers b64_json even when asked for URLs; auto/auto is high at 1024x1024.
    let auto = json!({"model": "gpt-image-1", "prompt": prompt, "size": "auto", "response_format": "url"});
    let j = send_json(&app, "/v1/images/generations", &[], auto).await.json();
    assert!(j["data"][0]["b64_json"].is_string() && j["data"][0].get("url").is_none());
    assert_eq!(j["usage"]["output_tokens"], 4160);
    for (quality, size, n, output) in
        [("low", "1536x1024", 3, 1200), ("medium", "1024x1024", 1, 1056), ("medium", "1536x1024", 2, 3136)]
    {
        let body = json!({"model": "gpt-image-1-mini", "prompt": "x", "n": n, "size": size, "quality": quality});
        let j = send_json(&app, "/v1/images/generations", &[], body).await.json();
        assert_eq!(j["usage"]["output_tokens"], output, "{quality} {size} ×{n}");
        assert_eq!(j["usage"]["total_tokens"], 8 + output);
        assert_eq!(tollgate_mock::gpt_image_output_tokens(quality, size) * n, output);
    }
}

#[tokio::test]
async fn dall_e_generations_answer_urls_or_b64_without_usage() {
    let app = mock();
    let body =
        json!({"model": "dall-e-3", "prompt": "a lighthouse", "size": "1792x1024", "quality": "hd", "user": "u1"});
    let j = send_json(&app, "/v1/images/generations", &[], body).await.json();
    assert!(j.get("usage").is_none(), "{j}");
    let item = &j["data"][0];
    assert_eq!(j["data"].as_array().unwrap().len(), 1);
    assert!(item["url"].as_str().unwrap().starts_with("https://mock.invalid/images/"));
    assert!(item["url"].as_str().unwrap().ends_with("-0.png"));
    assert_eq!(item["revised_prompt"], "A mock illustration of: a lighthouse");

    // No model: dall-e-2 (OpenAI's default), no revised_prompt.
    let j =
        send_json(&app, "/v1/images/generations", &[], json!({"prompt": "p", "n": 3, "response_format": "b64_json"}))
            .await
            .json();
    assert_eq!(j["data"].as_array().unwrap().len(), 3);
    assert!(j["data"].as_array().unwrap().iter().all(|d| d.as_object().unwrap().keys().eq(["b64_json"])));
    assert!(j.get("usage").is_none());
    let stats = send(&app, "GET", "/mock/stats", &[], None).await.json();
    assert_eq!(stats["models"], json!({"dall-e-3": 1, "dall-e-2": 1}));
    assert_eq!(stats["paths"]["/v1/images/generations"], 2);
    assert_eq!(stats["last_model"], "dall-e-2");
    assert_eq!(stats["last_path"], "/v1/images/generations");
}

#[tokio::test]
async fn image_edits_read_the_form_and_bill_194_tokens_per_input_image() {
    let app = mock();
    let png = base64::engine::general_purpose::STANDARD.decode(tollgate_mock::MOCK_PNG_BASE64).unwrap();
    let prompt = "add a hat"; // 9 bytes: 8 + 2 = 10 text tokens
    let parts = [
        Part::File("image[]", "a.png", &png),
        Part::File("image[]", "b.png", &png),
        Part::File("mask", "mask.png", &png),
        Part::Text("model", "gpt-image-1"),
        Part::Text("prompt", prompt),
        Part::Text("n", "2"),
        Part::Text("quality", "low"),
        Part::Text("size", "1536x1024"),
    ];
    let a = send_form(&app, "/v1/images/edits", &[], &parts).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let j = a.json();
    assert_eq!(j["data"].as_array().unwrap().len(), 2);
    expect_valid_png(j["data"][1]["b64_json"].as_str().unwrap());
    assert_eq!(
        j["usage"],
        json!({"input_tokens": 10 + 388, "input_tokens_details": {"text_tokens": 10, "image_tokens": 388},
               "output_tokens": 800, "total_tokens": 10 + 388 + 800})
    );
    let stats = send(&app, "GET", "/mock/stats", &[], None).await.json();
    assert_eq!(stats["paths"]["/v1/images/edits"], 1);
    assert_eq!(stats["last_model"], "gpt-image-1");
    assert_eq!(
        stats["last_files"],
        json!([
            {"field": "image[]", "filename": "a.png", "content_type": "application/octet-stream", "bytes": png.len()},
            {"field": "image[]", "filename": "b.png", "content_type": "application/octet-stream", "bytes": png.len()},
            {"field": "mask", "filename": "mask.png", "content_type": "application/octet-stream", "bytes": png.len()},
        ])
    );

    // One `image` part, no model: dall-e-2, a URL, no usage.
    let parts = [Part::File("image", "a.png", &png), Part::Text("prompt", prompt)];
    let j = send_form(&app, "/v1/images/edits", &[], &parts).await.json();
    assert!(j["data"][0]["url"].is_string() && j.get("usage").is_none(), "{j}");

    // No image part at all.
    let a = send_form(&app, "/v1/images/edits", &[], &[Part::Text("prompt", prompt)]).await;
    expect_param_error(&a, "image", "missing_required_parameter");
    // Not a form.
    let a = send_json(&app, "/v1/images/edits", &[], json!({"prompt": prompt})).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.json()["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn image_requests_with_bad_values_get_openai_400s() {
    let app = mock();
    let gen = |body: Value| send_json(&app, "/v1/images/generations", &[], body);
    expect_param_error(&gen(json!({"model": "dall-e-2"})).await, "prompt", "missing_required_parameter");
    expect_param_error(&gen(json!({"prompt": "p", "n": 0})).await, "n", "integer_below_min_value");
    expect_param_error(&gen(json!({"prompt": "p", "n": 11})).await, "n", "integer_above_max_value");
    expect_param_error(&gen(json!({"prompt": "p", "n": "two"})).await, "n", "invalid_type");
    expect_param_error(&gen(json!({"model": "dall-e-3", "prompt": "p", "n": 2})).await, "n", "invalid_value");
    expect_param_error(
        &gen(json!({"model": "dall-e-2", "prompt": "p", "size": "1792x1024"})).await,
        "size",
        "invalid_value",
    );
    expect_param_error(
        &gen(json!({"model": "dall-e-3", "prompt": "p", "size": "512x512"})).await,
        "size",
        "invalid_value",
    );
    expect_param_error(
        &gen(json!({"model": "gpt-image-1", "prompt": "p", "size": "512x512"})).await,
        "size",
        "invalid_value",
    );
    expect_param_error(
        &gen(json!({"model": "dall-e-3", "prompt": "p", "quality": "high"})).await,
        "quality",
        "invalid_value",
    );
    expect_param_error(
        &gen(json!({"model": "gpt-image-1", "prompt": "p", "quality": "hd"})).await,
        "quality",
        "invalid_value",
    );
    expect_param_error(
        &gen(json!({"prompt": "p", "response_format": "png"})).await,
        "response_format",
        "invalid_value",
    );
    let form = [Part::File("image", "a.png", b"x"), Part::Text("prompt", "p"), Part::Text("n", "11")];
    expect_param_error(&send_form(&app, "/v1/images/edits", &[], &form).await, "n", "integer_above_max_value");
}

#[tokio::test]
async fn transcriptions_measure_wav_headers_and_bill_by_model() {
    let app = mock();
    let audio = wav(16_000, 80_000); // 80,000 bytes at 32,000 bytes/s: 2.5 s
    assert_eq!(tollgate_mock::audio_duration_ms(&audio), 2500);
    let text = tollgate_mock::MOCK_TRANSCRIPT;
    assert_eq!(tollgate_mock::text_tokens(text), 19);

    let parts = [Part::File("file", "speech.wav", &audio), Part::Text("model", "whisper-1")];
    let a = send_form(&app, "/v1/audio/transcriptions", &[], &parts).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.headers["content-type"], "application/json");
    assert_eq!(a.json(), json!({"text": text, "usage": {"type": "duration", "seconds": 3}}));

    let prompt = "Names: Ada"; // 10 bytes: 8 + 2 = 10 text tokens
    let parts = [
        Part::File("file", "speech.wav", &audio),
        Part::Text("model", "gpt-4o-transcribe"),
        Part::Text("prompt", prompt),
        Part::Text("language", "en"),
        Part::Text("temperature", "0.2"),
    ];
    let j = send_form(&app, "/v1/audio/transcriptions", &[], &parts).await.json();
    assert_eq!(
        j,
        json!({"text": text, "usage": {"type": "tokens", "input_tokens": 35,
               "input_token_details": {"text_tokens": 10, "audio_tokens": 25},
               "output_tokens": 19, "total_tokens": 54}})
    );
    let parts = [Part::File("file", "speech.wav", &audio), Part::Text("model", "gpt-4o-mini-transcribe")];
    let j = send_form(&app, "/v1/audio/transcriptions", &[], &parts).await.json();
    assert_eq!(j["usage"]["input_token_details"], json!({"text_tokens": 0, "audio_tokens": 25}));
    assert_eq!(j["usage"]["total_tokens"], 25 + 19);

    let parts = [
        Part::File("file", "speech.wav", &audio),
        Part::Text("model", "whisper-1"),
        Part::Text("response_format", "verbose_json"),
    ];
    let j = send_form(&app, "/v1/audio/transcriptions", &[], &parts).await.json();
    assert_eq!(
        j,
        json!({"task": "transcribe", "language": "english", "duration": 2.5, "text": text, "segments": [],
               "usage": {"type": "duration", "seconds": 3}})
    );

    // Not a WAV: 16,000 bytes a second; 40,001 bytes is 2,501 ms.
    let mp3 = vec![0xFFu8; 40_001];
    assert_eq!(tollgate_mock::audio_duration_ms(&mp3), 2501);
    let parts = [Part::File("file", "speech.mp3", &mp3), Part::Text("model", "whisper-1")];
    let j = send_form(&app, "/v1/audio/transcriptions", &[], &parts).await.json();
    assert_eq!(j["usage"]["seconds"], 3);

    let stats = send(&app, "GET", "/mock/stats", &[], None).await.json();
    assert_eq!(stats["paths"]["/v1/audio/transcriptions"], 5);
    assert_eq!(stats["models"]["whisper-1"], 3);
    assert_eq!(
        stats["last_files"],
        json!([{"field": "file", "filename": "speech.mp3", "content_type": "application/octet-stream", "bytes": 40_001}])
    );
}

#[test]
fn wav_durations_walk_the_chunks_and_round_up() {
    use tollgate_mock::{audio_duration_ms, billed_seconds, speech_output_tokens, transcription_audio_tokens};
    // 44.1 kHz: one sample (2 bytes of 88,200/s) is 0.0227 ms, rounded up to 1 ms.
    assert_eq!(audio_duration_ms(&wav(44_100, 2)), 1);
    assert_eq!(audio_duration_ms(&wav(16_000, 32_000)), 1000);
    assert_eq!(billed_seconds(1000), 1);
    assert_eq!(billed_seconds(1001), 2);
    assert_eq!(transcription_audio_tokens(2501), 26);
    assert_eq!(speech_output_tokens(660), 14);
    // A data chunk declared longer than the file counts what is there.
    let mut short = wav(16_000, 32_000);
    short.truncate(short.len() - 16_000);
    assert_eq!(audio_duration_ms(&short), 500);
    // `data` before `fmt `: not a usable WAV, so 16,000 bytes a second.
    let mut odd = b"RIFF\0\0\0\0WAVEdata\x04\0\0\0\0\0\0\0".to_vec();
    odd.resize(16_000, 0);
    assert_eq!(audio_duration_ms(&odd), 1000);
    assert_eq!(audio_duration_ms(b""), 0);
}

#[tokio::test]
async fn transcription_text_formats_are_plain_text_without_usage() {
    let app = mock();
    let audio = wav(16_000, 80_000);
    let text = tollgate_mock::MOCK_TRANSCRIPT;
    let ask = |format: &'static str| {
        let audio = audio.clone();
        let app = app.clone();
        async move {
            let parts = [
                Part::File("file", "a.wav", &audio),
                Part::Text("model", "whisper-1"),
                Part::Text("response_format", format),
            ];
            send_form(&app, "/v1/audio/transcriptions", &[], &parts).await
        }
    };
    let a = ask("text").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(a.text(), format!("{text}\n"));
    assert_eq!(ask("srt").await.text(), format!("1\n00:00:00,000 --> 00:00:02,500\n{text}\n\n"));
    assert_eq!(ask("vtt").await.text(), format!("WEBVTT\n\n00:00:00.000 --> 00:00:02.500\n{text}\n\n"));

    // gpt-4o transcription models answer json (or text) only.
    let parts = [
        Part::File("file", "a.wav", &audio),
        Part::Text("model", "gpt-4o-transcribe"),
        Part::Text("response_format", "verbose_json"),
    ];
    expect_param_error(
        &send_form(&app, "/v1/audio/transcriptions", &[], &parts).await,
        "response_format",
        "invalid_value",
    );
    let parts = [
        Part::File("file", "a.wav", &audio),
        Part::Text("model", "gpt-4o-transcribe"),
        Part::Text("response_format", "text"),
    ];
    assert_eq!(send_form(&app, "/v1/audio/transcriptions", &[], &parts).await.text(), format!("{text}\n"));
}

#[tokio::test]
async fn translations_answer_only_the_text() {
    let app = mock();
    let audio = wav(16_000, 80_000);
    let parts = [Part::File("file", "a.wav", &audio), Part::Text("model", "whisper-1"), Part::Text("prompt", "hi")];
    let a = send_form(&app, "/v1/audio/translations", &[], &parts).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.json(), json!({"text": tollgate_mock::MOCK_TRANSCRIPT}));
    let parts =
        [Part::File("file", "a.wav", &audio), Part::Text("model", "whisper-1"), Part::Text("response_format", "srt")];
    let a = send_form(&app, "/v1/audio/translations", &[], &parts).await;
    assert_eq!(a.headers["content-type"], "text/plain; charset=utf-8");
    assert!(a.text().starts_with("1\n00:00:00,000 --> 00:00:02,500\n"));
    let parts = [
        Part::File("file", "a.wav", &audio),
        Part::Text("model", "whisper-1"),
        Part::Text("response_format", "verbose_json"),
    ];
    let j = send_form(&app, "/v1/audio/translations", &[], &parts).await.json();
    assert_eq!(j["task"], "translate");
    assert!(j.get("usage").is_none());
}

#[tokio::test]
async fn audio_uploads_with_missing_parts_get_openai_400s() {
    let app = mock();
    let audio = wav(16_000, 3200);
    for path in ["/v1/audio/transcriptions", "/v1/audio/translations"] {
        let a = send_form(&app, path, &[], &[Part::Text("model", "whisper-1")]).await;
        expect_param_error(&a, "file", "missing_required_parameter");
        let a = send_form(&app, path, &[], &[Part::File("file", "a.wav", &audio)]).await;
        expect_param_error(&a, "model", "missing_required_parameter");
        let parts = [
            Part::File("file", "a.wav", &audio),
            Part::Text("model", "whisper-1"),
            Part::Text("response_format", "xml"),
        ];
        expect_param_error(&send_form(&app, path, &[], &parts).await, "response_format", "invalid_value");
    }
    let stats = send(&app, "GET", "/mock/stats", &[], None).await.json();
    assert_eq!(stats["paths"]["/v1/audio/transcriptions"], 3, "rejected requests count too");

    // Uploads beyond axum's 2 MB default are read whole: 3,200,000 bytes is 200 s.
    let big = vec![1u8; 3_200_000];
    let parts = [Part::File("file", "long.mp3", &big), Part::Text("model", "whisper-1")];
    let j = send_form(&app, "/v1/audio/transcriptions", &[], &parts).await.json();
    assert_eq!(j["usage"], json!({"type": "duration", "seconds": 200}));
}

#[tokio::test]
async fn speech_streams_wav_of_60_ms_per_character_in_chunks() {
    let app = mock();
    let body =
        json!({"model": "tts-1", "input": "0123456789", "voice": "alloy", "response_format": "wav", "speed": 1.0});
    let started = Instant::now();
    let a = send_json(&app, "/v1/audio/speech", &[], body).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.headers["content-type"], "audio/wav");
    assert!(a.frames.len() >= 3, "{} chunks", a.frames.len());
    assert!(started.elapsed() >= Duration::from_millis(5 * (a.frames.len() as u64 - 1)));
    let wav_bytes = a.bytes();
    assert_eq!(wav_bytes.len(), 44 + 28_800, "header + 0.6 s × 48,000 bytes/s");
    assert_eq!(&wav_bytes[..4], b"RIFF");
    assert_eq!(&wav_bytes[8..16], b"WAVEfmt ");
    assert_eq!(u32::from_le_bytes(wav_bytes[24..28].try_into().unwrap()), 24_000, "sample rate");
    assert_eq!(u16::from_le_bytes(wav_bytes[34..36].try_into().unwrap()), 16, "bits per sample");
    assert_eq!(tollgate_mock::audio_duration_ms(&wav_bytes), 600, "the mock reads its own WAV back");
    assert!(wav_bytes[44..].iter().all(|&b| b == 0));

    for (format, content_type, len) in
        [("pcm", "audio/pcm", 28_800), ("mp3", "audio/mpeg", 28_800), ("flac", "audio/flac", 28_800)]
    {
        let body = json!({"model": "tts-1-hd", "input": "0123456789", "voice": "nova", "response_format": format});
        let a = send_json(&app, "/v1/audio/speech", &[], body).await;
        assert_eq!(a.headers["content-type"], content_type);
        assert_eq!(a.bytes().len(), len, "{format}");
    }
    // mp3 is the default; `chunks` sets the number of pieces.
    let body = json!({"model": "tts-1", "input": "héllo", "voice": "alloy"});
    let a = send_json(&app, "/v1/audio/speech", &[("x-mock-chunks", "6")], body).await;
    assert_eq!(a.headers["content-type"], "audio/mpeg");
    assert_eq!(a.frames.len(), 6);
    assert_eq!(a.bytes().len(), 5 * 60 * 48, "characters, not bytes");
    let stats = send(&app, "GET", "/mock/stats", &[], None).await.json();
    assert_eq!(stats["paths"]["/v1/audio/speech"], 5);
    assert_eq!(stats["last_model"], "tts-1");
}

#[tokio::test]
async fn speech_sse_streams_base64_deltas_and_usage_at_the_end() {
    let app = mock();
    let input = "Hello there"; // 11 chars: 660 ms; 8 + 11/4 = 10 input tokens; ceil(660/50) = 14 output
    let body = json!({"model": "gpt-4o-mini-tts", "input": input, "voice": "coral", "instructions": "Cheerful.",
                      "response_format": "pcm", "stream_format": "sse"});
    let a = send_json(&app, "/v1/audio/speech", &[], body).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.headers["content-type"], "text/event-stream");
    let answer = Answer { status: a.status, headers: a.headers.clone(), body: a.text() };
    let events = answer.event_jsons();
    assert_eq!(events.len(), 4 + 1);
    let mut audio = Vec::new();
    for delta in &events[..4] {
        assert_eq!(delta["type"], "speech.audio.delta");
        audio.extend(base64::engine::general_purpose::STANDARD.decode(delta["audio"].as_str().unwrap()).unwrap());
    }
    assert_eq!(audio.len(), 660 * 48);
    assert_eq!(
        events[4],
        json!({"type": "speech.audio.done", "usage": {"input_tokens": 10, "output_tokens": 14, "total_tokens": 24}})
    );

    let tts1 = json!({"model": "tts-1", "input": input, "voice": "coral", "stream_format": "sse"});
    expect_param_error(&send_json(&app, "/v1/audio/speech", &[], tts1).await, "stream_format", "invalid_value");
    let no_usage = json!({"model": "gpt-4o-mini-tts", "input": input, "voice": "coral", "stream_format": "sse"});
    let a = send_json(&app, "/v1/audio/speech", &[("x-mock-fault", "no_usage")], no_usage).await;
    let answer = Answer { status: a.status, headers: a.headers.clone(), body: a.text() };
    assert_eq!(answer.event_jsons().last().unwrap(), &json!({"type": "speech.audio.done"}));
}

#[tokio::test]
async fn speech_requests_with_bad_values_get_openai_400s() {
    let app = mock();
    let speech = |body: Value| send_json(&app, "/v1/audio/speech", &[], body);
    expect_param_error(&speech(json!({"input": "hi", "voice": "alloy"})).await, "model", "missing_required_parameter");
    expect_param_error(
        &speech(json!({"model": "tts-1", "voice": "alloy"})).await,
        "input",
        "missing_required_parameter",
    );
    expect_param_error(&speech(json!({"model": "tts-1", "input": "hi"})).await, "voice", "missing_required_parameter");
    let long = "a".repeat(4097);
    expect_param_error(
        &speech(json!({"model": "tts-1", "input": long, "voice": "alloy"})).await,
        "input",
        "string_above_max_length",
    );
    let body = json!({"model": "tts-1", "input": "hi", "voice": "alloy", "response_format": "ogg"});
    expect_param_error(&speech(body).await, "response_format", "invalid_value");
    let body = json!({"model": "tts-1", "input": "hi", "voice": "alloy", "speed": 5});
    expect_param_error(&speech(body).await, "speed", "invalid_value");
}

#[tokio::test]
async fn media_endpoints_take_auth_knobs_and_faults_like_the_others() {
    let app = router(MockConfig { require_api_key: Some("sk-mock".into()), ..MockConfig::default() });
    let key = [("authorization", "Bearer sk-mock")];
    let image = json!({"model": "gpt-image-1", "prompt": "p"});
    let none = send_json(&app, "/v1/images/generations", &[], image.clone()).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(none.json()["error"]["code"], "invalid_api_key");
    assert_eq!(send_json(&app, "/v1/images/generations", &key, image.clone()).await.status, StatusCode::OK);
    let audio = wav(16_000, 3200);
    let upload = [Part::File("file", "a.wav", &audio), Part::Text("model", "whisper-1")];
    assert_eq!(send_form(&app, "/v1/audio/transcriptions", &[], &upload).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(send_form(&app, "/v1/audio/transcriptions", &key, &upload).await.status, StatusCode::OK);
    let stats = send(&app, "GET", "/mock/stats", &[], None).await.json();
    assert_eq!(stats["last_auth"], "present");

    let app = mock();
    // A status fault from a header, from a JSON directive, from a form field's directive.
    let a = send_json(&app, "/v1/images/generations", &[("x-mock-fault", "503")], image.clone()).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.headers["retry-after"], "1");
    let speech = json!({"model": "tts-1", "input": "hi [mock fault=429 retry_after=4]", "voice": "alloy"});
    let a = send_json(&app, "/v1/audio/speech", &[], speech).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(a.headers["retry-after"], "4");
    assert_eq!(a.json()["error"]["code"], "rate_limit_exceeded");
    let upload = [
        Part::File("file", "a.wav", &audio),
        Part::Text("model", "whisper-1"),
        Part::Text("prompt", "[mock fault=500]"),
    ];
    assert_eq!(
        send_form(&app, "/v1/audio/transcriptions", &[], &upload).await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    // A directive in the file's bytes is not a knob.
    let sneaky = b"[mock fault=500]".repeat(100);
    let upload = [Part::File("file", "a.bin", &sneaky), Part::Text("model", "whisper-1")];
    assert_eq!(send_form(&app, "/v1/audio/transcriptions", &[], &upload).await.status, StatusCode::OK);
    // no_usage and truncate bend the answers as elsewhere.
    let a = send_json(&app, "/v1/images/generations", &[("x-mock-fault", "no_usage")], image.clone()).await;
    assert!(a.json().get("usage").is_none());
    let a = send_json(&app, "/v1/images/generations", &[("x-mock-fault", "truncate")], image.clone()).await;
    assert!(serde_json::from_slice::<Value>(&a.bytes()).is_err());
    let speech = json!({"model": "tts-1", "input": "0123456789", "voice": "alloy", "response_format": "pcm"});
    let a = send_json(&app, "/v1/audio/speech", &[("x-mock-fault", "truncate")], speech).await;
    assert_eq!(a.bytes().len(), 28_800 / 2, "half the chunks");
    let speech = json!({"model": "tts-1", "input": "0123456789", "voice": "alloy", "response_format": "pcm"});
    let a = send_json(&app, "/v1/audio/speech", &[("x-mock-fault", "stream_error")], speech).await;
    assert_eq!(a.bytes().len(), 28_800 / 2, "raw audio has no error event: it ends half-way");
    let started = Instant::now();
    let a = send_json(&app, "/v1/images/generations", &[("x-mock-latency-ms", "40")], image).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(40));
}
