//! The Anthropic Messages endpoint, `POST /v1/messages`, streamed or not.

use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, Uri};
use serde_json::{json, Value};

use crate::errors::{error_body, invalid_request, Family};
use crate::exchange::{admit, Admitted, App, Auth};
use crate::stream::{self, Inserted, Script};
use crate::usage::{split_deltas, MockUsage};

/// Anthropic reports cache reads and writes outside `input_tokens`, and
/// server-side tool calls (the `web_searches` knob) under `server_tool_use`.
fn usage_json(u: &MockUsage, output_tokens: u64, web_searches: u64) -> Value {
    let mut usage = json!({
        "input_tokens": u.anthropic_input_tokens(),
        "cache_creation_input_tokens": u.cache_write_tokens(),
        "cache_read_input_tokens": u.cache_read_tokens,
        "cache_creation": {
            "ephemeral_5m_input_tokens": u.cache_write_5m_tokens,
            "ephemeral_1h_input_tokens": u.cache_write_1h_tokens,
        },
        "output_tokens": output_tokens,
        "service_tier": "standard",
    });
    add_server_tool_use(&mut usage, web_searches);
    usage
}

/// `server_tool_use`, only when the knob asks for searches (as Anthropic
/// leaves it out of answers that used no server tool).
fn add_server_tool_use(usage: &mut Value, web_searches: u64) {
    if web_searches > 0 {
        usage["server_tool_use"] = json!({"web_search_requests": web_searches});
    }
}

pub(crate) async fn messages(app: App, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let req = match admit(&app, Family::Anthropic, Auth::ApiKeyHeader, &uri, &headers, &body) {
        Ok(req) => req,
        Err(response) => return response,
    };
    let model = match req.str_field("model") {
        Some(model) if !model.is_empty() => model.to_owned(),
        _ => return invalid_request(Family::Anthropic, "model: Field required"),
    };
    let streaming = req.flag("stream");
    let (usage, web_searches) = (req.usage(&model), req.knobs.web_searches);
    let response = answer(&app, req, &model, streaming).await;
    if response.status().is_success() {
        crate::billing::served_message(&app, &headers, &model, &usage, web_searches);
    }
    response
}

/// Everything after the credential check, the body parse and the model,
/// shared with Vertex AI's `publishers/anthropic` routes (whose model comes
/// from the URL): checks the body, then answers as a Messages response,
/// streamed (`event:` SSE) when `streaming`.
pub(crate) async fn answer(app: &App, req: Admitted, model: &str, streaming: bool) -> Response {
    app.stats().record_model(model);
    app.stats().record_output_limit(crate::usage::max_output_limit(&req.json));
    if !req.json.get("messages").is_some_and(Value::is_array) {
        return invalid_request(Family::Anthropic, "messages: Field required");
    }
    // Anthropic refuses requests without max_tokens; so does the mock, to
    // catch translations that forget it.
    if req.json.get("max_tokens").and_then(Value::as_u64).is_none() {
        return invalid_request(Family::Anthropic, "max_tokens: Field required");
    }
    if let Some(response) = req.before_answer().await {
        return response;
    }
    let reply = req.reply(model);
    let id = format!("msg_mock{:016}", req.sequence());
    let no_usage = req.no_usage();
    let web_searches = req.knobs.web_searches;
    let message = |content: Value, stop_reason: Value, output_tokens: u64, searches: u64| {
        let mut m = json!({
            "id": id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": null,
        });
        if !no_usage {
            m["usage"] = usage_json(&reply.usage, output_tokens, searches);
        }
        m
    };
    if !streaming {
        let body = message(
            json!([{"type": "text", "text": reply.text}]),
            json!("end_turn"),
            reply.usage.output_tokens,
            web_searches,
        );
        return req.json_answer(&body);
    }

    // The searches run after `message_start`: only `message_delta` counts them.
    let mut script = Script::default();
    script.head.push(stream::event(
        "message_start",
        &json!({"type": "message_start", "message": message(json!([]), Value::Null, 1, 0)}),
    ));
    script.head.push(stream::event(
        "content_block_start",
        &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ));
    script.head.push(stream::event("ping", &json!({"type": "ping"})));
    for piece in split_deltas(&reply.text, req.knobs.chunks) {
        script.deltas.push(stream::event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}),
        ));
    }
    script.tail.push(stream::event("content_block_stop", &json!({"type": "content_block_stop", "index": 0})));
    let mut delta = json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}});
    if !no_usage {
        let u = &reply.usage;
        delta["usage"] = json!({
            "input_tokens": u.anthropic_input_tokens(),
            "cache_creation_input_tokens": u.cache_write_tokens(),
            "cache_read_input_tokens": u.cache_read_tokens,
            "output_tokens": u.output_tokens,
        });
        add_server_tool_use(&mut delta["usage"], web_searches);
    }
    script.tail.push(stream::event("message_delta", &delta));
    script.tail.push(stream::event("message_stop", &json!({"type": "message_stop"})));

    let mut response = script.into_response(&req.knobs, "text/event-stream", |inserted| match inserted {
        Inserted::Error => {
            stream::event("error", &error_body(Family::Anthropic, 529, "Overloaded (mock stream_error)"))
        }
        Inserted::Malformed => Bytes::from_static(
            b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\n\n",
        ),
    });
    req.add_request_id(&mut response);
    response
}
