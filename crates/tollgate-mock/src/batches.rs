//! Batch APIs: OpenAI `/v1/files` + `/v1/batches`, Anthropic
//! `/v1/messages/batches`. Batches complete at once; their results carry
//! the same deterministic usage as the synchronous endpoints.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::StatusCode;
use serde_json::{json, Value};

use crate::exchange::App;
use crate::usage::usage_for_request;

#[derive(Debug, Default)]
pub(crate) struct Batches {
    files: Mutex<HashMap<String, Vec<u8>>>,
    openai: Mutex<HashMap<String, Value>>,
    anthropic: Mutex<HashMap<String, (Value, Vec<u8>)>>,
    seq: std::sync::atomic::AtomicU64,
}

impl Batches {
    fn next(&self, prefix: &str) -> String {
        let n = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        format!("{prefix}{n:06}")
    }
}

fn not_found(what: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({"error": {"message": format!("no such {what}"), "type": "invalid_request_error"}})),
    )
        .into_response()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `POST /v1/files` (multipart): keeps the JSONL lines of the uploaded file.
pub(crate) async fn upload(State(app): State<App>, body: Bytes) -> Response {
    app.stats().record_request("/v1/files", true);
    let text = String::from_utf8_lossy(&body);
    let lines: Vec<&str> = text.lines().filter(|l| l.trim_start().starts_with('{')).collect();
    let content = lines.join("\n").into_bytes();
    let id = app.batches().next("file-");
    let bytes = content.len();
    lock(&app.batches().files).insert(id.clone(), content);
    axum::Json(json!({"id": id, "object": "file", "bytes": bytes, "created_at": 1_700_000_000, "filename": "batch.jsonl", "purpose": "batch"}))
        .into_response()
}

pub(crate) async fn file_content(State(app): State<App>, Path(id): Path<String>) -> Response {
    app.stats().record_request("/v1/files/content", true);
    match lock(&app.batches().files).get(&id) {
        Some(c) => ([(http::header::CONTENT_TYPE, "application/jsonl")], c.clone()).into_response(),
        None => not_found("file"),
    }
}

fn chat_answer(custom_id: &str, body: &Value, n: usize) -> Value {
    let model = body["model"].as_str().unwrap_or("gpt-4o-mini");
    let raw = serde_json::to_vec(body).unwrap_or_default();
    let u = usage_for_request(&raw, model).unwrap_or_default();
    json!({
        "id": format!("batch_req_{n}"),
        "custom_id": custom_id,
        "response": {"status_code": 200, "request_id": format!("req_{n}"), "body": {
            "id": format!("chatcmpl-batch-{n}"), "object": "chat.completion", "created": 1_700_000_000, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "mock batch reply"}, "finish_reason": "stop", "logprobs": null}],
            "usage": {
                "prompt_tokens": u.prompt_tokens, "completion_tokens": u.output_tokens,
                "total_tokens": u.prompt_tokens + u.output_tokens,
                "prompt_tokens_details": {"cached_tokens": u.cache_read_tokens},
                "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens}
            }
        }},
        "error": null
    })
}

/// `POST /v1/batches`: runs every line of the input file at once.
pub(crate) async fn create_openai(State(app): State<App>, body: Bytes) -> Response {
    app.stats().record_request("/v1/batches", true);
    let Ok(req) = serde_json::from_slice::<Value>(&body) else { return not_found("batch request") };
    let input = req["input_file_id"].as_str().unwrap_or("").to_string();
    let Some(content) = lock(&app.batches().files).get(&input).cloned() else { return not_found("input file") };
    let mut out = Vec::new();
    for (n, line) in String::from_utf8_lossy(&content).lines().enumerate() {
        let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
        let custom = v["custom_id"].as_str().unwrap_or("");
        out.push(chat_answer(custom, &v["body"], n).to_string());
    }
    let output_id = app.batches().next("file-out-");
    let count = out.len();
    lock(&app.batches().files).insert(output_id.clone(), out.join("\n").into_bytes());
    let id = app.batches().next("batch_");
    let batch = json!({
        "id": id, "object": "batch", "endpoint": req["endpoint"], "input_file_id": input,
        "completion_window": req["completion_window"], "status": "completed", "output_file_id": output_id,
        "error_file_id": null, "created_at": 1_700_000_000, "completed_at": 1_700_000_060,
        "request_counts": {"total": count, "completed": count, "failed": 0}, "metadata": req.get("metadata").cloned().unwrap_or(Value::Null)
    });
    lock(&app.batches().openai).insert(id, batch.clone());
    axum::Json(batch).into_response()
}

pub(crate) async fn get_openai(State(app): State<App>, Path(id): Path<String>) -> Response {
    app.stats().record_request("/v1/batches/get", true);
    match lock(&app.batches().openai).get(&id) {
        Some(b) => axum::Json(b.clone()).into_response(),
        None => not_found("batch"),
    }
}

/// `POST /v1/messages/batches`.
pub(crate) async fn create_anthropic(State(app): State<App>, body: Bytes) -> Response {
    app.stats().record_request("/v1/messages/batches", true);
    let Ok(req) = serde_json::from_slice::<Value>(&body) else { return not_found("batch request") };
    let mut lines = Vec::new();
    for (n, r) in req["requests"].as_array().cloned().unwrap_or_default().iter().enumerate() {
        let params = &r["params"];
        let model = params["model"].as_str().unwrap_or("claude-haiku-4-5");
        let raw = serde_json::to_vec(params).unwrap_or_default();
        let u = usage_for_request(&raw, model).unwrap_or_default();
        lines.push(
            json!({"custom_id": r["custom_id"], "result": {"type": "succeeded", "message": {
                "id": format!("msg_batch_{n}"), "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": "mock batch reply"}], "stop_reason": "end_turn", "stop_sequence": null,
                "usage": {"input_tokens": u.anthropic_input_tokens(), "cache_read_input_tokens": u.cache_read_tokens,
                          "cache_creation_input_tokens": u.cache_write_tokens(), "output_tokens": u.output_tokens}
            }}})
            .to_string(),
        );
    }
    let id = app.batches().next("msgbatch_");
    let count = lines.len();
    let batch = json!({
        "id": id, "type": "message_batch", "processing_status": "ended",
        "request_counts": {"processing": 0, "succeeded": count, "errored": 0, "canceled": 0, "expired": 0},
        "created_at": "2026-01-01T00:00:00Z", "ended_at": "2026-01-01T00:01:00Z", "expires_at": "2026-01-02T00:00:00Z",
        "cancel_initiated_at": null, "archived_at": null,
        "results_url": format!("/v1/messages/batches/{id}/results")
    });
    lock(&app.batches().anthropic).insert(id, (batch.clone(), lines.join("\n").into_bytes()));
    axum::Json(batch).into_response()
}

pub(crate) async fn get_anthropic(State(app): State<App>, Path(id): Path<String>) -> Response {
    app.stats().record_request("/v1/messages/batches/get", true);
    match lock(&app.batches().anthropic).get(&id) {
        Some((b, _)) => axum::Json(b.clone()).into_response(),
        None => not_found("message batch"),
    }
}

pub(crate) async fn anthropic_results(State(app): State<App>, Path(id): Path<String>) -> Response {
    app.stats().record_request("/v1/messages/batches/results", true);
    match lock(&app.batches().anthropic).get(&id) {
        Some((_, r)) => ([(http::header::CONTENT_TYPE, "application/x-jsonl")], r.clone()).into_response(),
        None => not_found("message batch"),
    }
}
