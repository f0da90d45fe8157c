//! Gemini `models/{model}:generateContent` and `:streamGenerateContent` (SSE or JSON array).

use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, Uri};
use serde_json::{json, Map, Value};

use crate::errors::{error_body, error_response, invalid_request, Family};
use crate::exchange::{admit, query_param, Admitted, App, Auth};
use crate::stream::{Inserted, Script};
use crate::usage::{split_deltas, MockUsage};

/// Gemini separates SSE events with CRLF pairs.
const SSE_END: &str = "\r\n\r\n";

/// Gemini reports thoughts outside `candidatesTokenCount`, and leaves zero
/// counts out. `candidates` is the visible output reported so far.
fn usage_metadata(u: &MockUsage, candidates: u64) -> Value {
    let mut m = Map::new();
    m.insert("promptTokenCount".into(), json!(u.prompt_tokens));
    if candidates > 0 {
        m.insert("candidatesTokenCount".into(), json!(candidates));
    }
    m.insert("totalTokenCount".into(), json!(u.prompt_tokens + candidates + u.reasoning_tokens));
    if u.cache_read_tokens > 0 {
        m.insert("cachedContentTokenCount".into(), json!(u.cache_read_tokens));
    }
    m.insert("promptTokensDetails".into(), json!([{"modality": "TEXT", "tokenCount": u.prompt_tokens}]));
    if u.reasoning_tokens > 0 {
        m.insert("thoughtsTokenCount".into(), json!(u.reasoning_tokens));
    }
    Value::Object(m)
}

/// `POST /v1beta/models/{model}:{method}`; `rest` is `{model}:{method}`.
pub(crate) async fn generate(app: App, uri: Uri, headers: HeaderMap, body: Bytes, rest: String) -> Response {
    let req = match admit(&app, Family::Gemini, Auth::Google, &uri, &headers, &body) {
        Ok(req) => req,
        Err(response) => return response,
    };
    let Some((model, method)) = rest.rsplit_once(':') else {
        return error_response(Family::Gemini, 404, &format!("models/{rest} is not found or has no method"), None);
    };
    let streaming = match method {
        "generateContent" => false,
        "streamGenerateContent" => true,
        other => {
            return error_response(Family::Gemini, 404, &format!("method {other} is not supported by the mock"), None)
        }
    };
    answer(&app, req, &uri, model, streaming).await
}

/// Everything after the credential check and the body parse, shared with
/// Vertex AI's `publishers/google` routes: checks the body, then answers
/// `generateContent` (`streaming` false) or `streamGenerateContent` (SSE with
/// `?alt=sse`, else one JSON array) for `model`.
pub(crate) async fn answer(app: &App, req: Admitted, uri: &Uri, model: &str, streaming: bool) -> Response {
    app.stats().record_model(model);
    app.stats().record_output_limit(crate::usage::max_output_limit(&req.json));
    if !req.json.get("contents").is_some_and(Value::is_array) {
        return invalid_request(Family::Gemini, "* GenerateContentRequest.contents: contents is not specified");
    }
    if let Some(response) = req.before_answer().await {
        return response;
    }
    let reply = req.reply(model);
    let response_id = format!("mock{:016}", req.sequence());
    let no_usage = req.no_usage();
    let visible = reply.usage.visible_output_tokens();
    let chunk = |text: &str, finished: bool, candidates: u64| {
        let mut candidate = json!({"content": {"parts": [{"text": text}], "role": "model"}, "index": 0});
        if finished {
            candidate["finishReason"] = json!("STOP");
        }
        let mut c = json!({"candidates": [candidate]});
        if !no_usage {
            c["usageMetadata"] = usage_metadata(&reply.usage, candidates);
        }
        c["modelVersion"] = json!(model);
        c["responseId"] = json!(response_id);
        c
    };
    if !streaming {
        return req.json_answer(&chunk(&reply.text, true, visible));
    }

    let pieces = split_deltas(&reply.text, req.knobs.chunks);
    let count = pieces.len() as u64;
    let values: Vec<Value> = pieces
        .iter()
        .enumerate()
        .map(|(i, piece)| {
            let i = i as u64;
            chunk(piece, i + 1 == count, visible * (i + 1) / count)
        })
        .collect();
    let error = error_body(Family::Gemini, 503, "The model is overloaded. Please try again later. (mock stream_error)");
    const MALFORMED: &str = "{\"candidates\": [{\"content\": {\"parts\": [{\"text\": ";

    let mut response = if query_param(uri, "alt") == Some("sse") {
        let script = Script {
            deltas: values.iter().map(|v| Bytes::from(format!("data: {v}{SSE_END}"))).collect(),
            ..Script::default()
        };
        script.into_response(&req.knobs, "text/event-stream", |inserted| match inserted {
            Inserted::Error => Bytes::from(format!("data: {error}{SSE_END}")),
            Inserted::Malformed => Bytes::from(format!("data: {MALFORMED}{SSE_END}")),
        })
    } else {
        // Without alt=sse Gemini streams one JSON array, element by element.
        let script = Script {
            head: vec![Bytes::from_static(b"[")],
            deltas: values
                .iter()
                .enumerate()
                .map(|(i, v)| Bytes::from(format!("{}{v}", if i == 0 { "" } else { ",\r\n" })))
                .collect(),
            tail: vec![Bytes::from_static(b"]")],
        };
        // The inserted element needs a separator unless it comes first.
        let separator = if values.len() / 2 == 0 { "" } else { ",\r\n" };
        script.into_response(&req.knobs, "application/json", |inserted| match inserted {
            Inserted::Error => Bytes::from(format!("{separator}{error}]")),
            Inserted::Malformed => Bytes::from(format!("{separator}{MALFORMED}")),
        })
    };
    req.add_request_id(&mut response);
    response
}
