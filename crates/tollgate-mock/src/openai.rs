//! OpenAI-shaped endpoints (also Azure OpenAI): chat completions, embeddings, Responses, models.

use axum::response::Response;
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, Uri};
use serde_json::{json, Value};

use crate::errors::{error_body, invalid_request, Family};
use crate::exchange::{admit, json_text_with_raw, unix_now, Admitted, App, Auth};
use crate::stream::{self, Inserted, Script};
use crate::usage::{split_deltas, MockUsage};

const FINGERPRINT: &str = "fp_mock";
const MAX_DIMENSIONS: u64 = 8192;
const DEFAULT_DIMENSIONS: u64 = 64;

fn auth_for(uri: &Uri) -> Auth {
    if uri.path().starts_with("/openai/") {
        Auth::Azure
    } else {
        Auth::Bearer
    }
}

/// Admits the request and resolves the model (an Azure deployment wins over the body).
#[allow(clippy::result_large_err)]
fn admit_with_model(
    app: &App,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    deployment: Option<String>,
) -> Result<(Admitted, String), Response> {
    let req = admit(app, Family::OpenAi, auth_for(uri), uri, headers, body)?;
    let model = match deployment.or_else(|| req.str_field("model").map(str::to_owned)) {
        Some(model) if !model.is_empty() => model,
        _ => return Err(invalid_request(Family::OpenAi, "you must provide a model parameter")),
    };
    app.stats().record_model(&model);
    app.stats().record_output_limit(crate::usage::max_output_limit(&req.json));
    Ok((req, model))
}

fn chat_usage(u: &MockUsage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.prompt_tokens + u.output_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cache_read_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": u.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    })
}

/// `body` as JSON text, with the `reported_cost` knob's number (if any) as
/// `usage.cost`, written as given: what OpenRouter reports (USD) beside the tokens.
fn with_reported_cost(mut body: Value, cost: Option<&str>) -> String {
    match cost {
        Some(raw) if body.get("usage").is_some_and(Value::is_object) => {
            body["usage"]["cost"] = Value::Null;
            json_text_with_raw(&body, &["usage", "cost"], raw)
        }
        _ => body.to_string(),
    }
}

/// `POST /v1/chat/completions` and the Azure chat routes.
pub(crate) async fn chat(app: App, uri: Uri, headers: HeaderMap, body: Bytes, deployment: Option<String>) -> Response {
    let (req, model) = match admit_with_model(&app, &uri, &headers, &body, deployment) {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    if !req.json.get("messages").is_some_and(Value::is_array) {
        return invalid_request(Family::OpenAi, "'messages' is a required property");
    }
    if let Some(response) = req.before_answer().await {
        return response;
    }
    let reply = req.reply(&model);
    // The tier asked for is the tier served (as OpenAI does when capacity allows).
    let tier = match req.json.get("service_tier").and_then(Value::as_str) {
        Some("priority") => "priority",
        Some("flex") => "flex",
        _ => "default",
    };
    crate::billing::served_completion(&app, &uri, &headers, &model, tier, &reply.usage, 0);
    let id = format!("chatcmpl-mock{:016}", req.sequence());
    let created = unix_now();
    if !req.flag("stream") {
        let mut body = json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": reply.text, "refusal": null, "annotations": []},
                "logprobs": null,
                "finish_reason": "stop",
            }],
            "service_tier": tier,
            "system_fingerprint": FINGERPRINT,
        });
        if !req.no_usage() {
            body["usage"] = chat_usage(&reply.usage);
        }
        return req.json_text_answer(with_reported_cost(body, req.knobs.reported_cost.as_deref()));
    }

    // Real OpenAI sends usage only when asked, and then `"usage": null` on
    // every chunk plus one final chunk with empty `choices`.
    let include_usage =
        req.json.pointer("/stream_options/include_usage").and_then(Value::as_bool) == Some(true) && !req.no_usage();
    let chunk_json = |choices: Value, usage: Option<Value>| {
        let mut c = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "service_tier": tier,
            "system_fingerprint": FINGERPRINT,
            "choices": choices,
        });
        if include_usage {
            c["usage"] = usage.unwrap_or(Value::Null);
        }
        c
    };
    let chunk = |choices: Value, usage: Option<Value>| stream::data(&chunk_json(choices, usage));
    let choice =
        |delta: Value, finish: Value| json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]);

    let mut script = Script {
        head: vec![chunk(choice(json!({"role": "assistant", "content": "", "refusal": null}), Value::Null), None)],
        ..Script::default()
    };
    script.deltas = split_deltas(&reply.text, req.knobs.chunks)
        .into_iter()
        .map(|piece| chunk(choice(json!({"content": piece}), Value::Null), None))
        .collect();
    script.tail.push(chunk(choice(json!({}), json!("stop")), None));
    if include_usage {
        let last = chunk_json(json!([]), Some(chat_usage(&reply.usage)));
        script.tail.push(stream::data_text(&with_reported_cost(last, req.knobs.reported_cost.as_deref())));
    }
    script.tail.push(Bytes::from_static(b"data: [DONE]\n\n"));

    let mut response = script.into_response(&req.knobs, "text/event-stream", |inserted| match inserted {
        Inserted::Error => stream::data(&error_body(
            Family::OpenAi,
            500,
            "The server had an error while processing your request (mock stream_error).",
        )),
        Inserted::Malformed => Bytes::from(format!(
            "data: {{\"id\":\"{id}\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":\n\n"
        )),
    });
    req.add_request_id(&mut response);
    response
}

/// `POST /v1/embeddings` (and Azure's).
pub(crate) async fn embeddings(
    app: App,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    deployment: Option<String>,
) -> Response {
    let (req, model) = match admit_with_model(&app, &uri, &headers, &body, deployment) {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    let inputs: Vec<String> = match req.json.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
            items.iter().filter_map(Value::as_str).map(str::to_owned).collect()
        }
        // Token ids: one input, or one input per inner array.
        Some(Value::Array(items)) if items.iter().all(Value::is_number) => vec![token_words(items)],
        Some(Value::Array(items)) if items.iter().all(Value::is_array) => {
            items.iter().map(|inner| token_words(inner.as_array().map_or(&[][..], Vec::as_slice))).collect()
        }
        _ => return invalid_request(Family::OpenAi, "'input' must be a string or an array of strings or token arrays"),
    };
    let dimensions =
        req.json.get("dimensions").and_then(Value::as_u64).unwrap_or(DEFAULT_DIMENSIONS).clamp(1, MAX_DIMENSIONS)
            as usize;
    let base64 = req.str_field("encoding_format") == Some("base64");
    if let Some(response) = req.before_answer().await {
        return response;
    }
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let vector = embed(text, dimensions);
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|f| f.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let mut body = json!({"object": "list", "data": data, "model": model});
    let prompt = req.usage(&model).prompt_tokens;
    crate::billing::served_embedding(&app, &uri, &headers, &model, prompt);
    if !req.no_usage() {
        body["usage"] = json!({"prompt_tokens": prompt, "total_tokens": prompt});
    }
    req.json_answer(&body)
}

fn token_words(tokens: &[Value]) -> String {
    tokens.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(" ")
}

/// Bag-of-words hashing: each lower-cased alphanumeric word adds ±1 to one
/// dimension, then the vector is L2-normalised. Texts sharing words get a
/// high cosine similarity; unrelated texts land near zero.
pub fn embed(text: &str, dimensions: usize) -> Vec<f32> {
    let dimensions = dimensions.max(1);
    let mut vector = vec![0f32; dimensions];
    let lower = text.to_lowercase();
    for word in lower.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        let h = crate::usage::fnv1a(word.as_bytes());
        let slot = (h % dimensions as u64) as usize;
        vector[slot] += if h >> 63 == 1 { -1.0 } else { 1.0 };
    }
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        vector.iter_mut().for_each(|x| *x /= norm);
    } else {
        // A zero vector would make every cosine NaN downstream.
        vector[0] = 1.0;
    }
    vector
}

fn responses_usage(u: &MockUsage) -> Value {
    json!({
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": u.cache_read_tokens},
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u.prompt_tokens + u.output_tokens,
    })
}

/// `POST /v1/responses`.
pub(crate) async fn responses(app: App, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let (req, model) = match admit_with_model(&app, &uri, &headers, &body, None) {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    if let Some(response) = req.before_answer().await {
        return response;
    }
    let reply = req.reply(&model);
    crate::billing::served_completion(&app, &uri, &headers, &model, "default", &reply.usage, req.knobs.web_searches);
    let id = format!("resp_mock{:016}", req.sequence());
    let item_id = format!("msg_mock{:016}", req.sequence());
    let created = unix_now();
    let usage = (!req.no_usage()).then(|| responses_usage(&reply.usage));
    let text_part = |text: &str| json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []});
    let message = |status: &str, content: Value| json!({"id": item_id, "type": "message", "status": status, "role": "assistant", "content": content});
    let response_object = |status: &str, output: Value, usage: Option<&Value>| {
        let mut r = json!({
            "id": id,
            "object": "response",
            "created_at": created,
            "status": status,
            "background": false,
            "error": null,
            "incomplete_details": null,
            "instructions": req.json.get("instructions").cloned().unwrap_or(Value::Null),
            "max_output_tokens": req.json.get("max_output_tokens").cloned().unwrap_or(Value::Null),
            "model": model,
            "output": output,
            "parallel_tool_calls": true,
            "previous_response_id": req.json.get("previous_response_id").cloned().unwrap_or(Value::Null),
            "reasoning": {"effort": null, "summary": null},
            "service_tier": "default",
            "store": true,
            "temperature": 1.0,
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": 1.0,
            "truncation": "disabled",
            "user": null,
            "metadata": {},
        });
        r["usage"] = usage.cloned().unwrap_or(Value::Null);
        r
    };
    let done_item = message("completed", json!([text_part(&reply.text)]));
    // The `web_searches` knob: that many `web_search_call` items before the
    // message (as the `web_search` tool leaves them), so the message's
    // `output_index` is the number of searches.
    let searches = req.knobs.web_searches;
    let search_id = |i: u64| format!("ws_mock{:016}_{i}", req.sequence());
    let search_item = |i: u64, status: &str| {
        json!({
            "type": "web_search_call",
            "id": search_id(i),
            "status": status,
            "action": {"type": "search", "query": format!("mock search {} of {searches}", i + 1)},
        })
    };
    let output: Vec<Value> =
        (0..searches).map(|i| search_item(i, "completed")).chain(std::iter::once(done_item.clone())).collect();
    let at = searches;
    if !req.flag("stream") {
        let mut body = response_object("completed", json!(output), usage.as_ref());
        if usage.is_none() {
            if let Some(map) = body.as_object_mut() {
                map.remove("usage");
            }
        }
        return req.json_answer(&body);
    }

    let mut sequence = 0u64;
    let mut next = |name: &str, mut payload: Value| {
        payload["type"] = json!(name);
        payload["sequence_number"] = json!(sequence);
        sequence += 1;
        stream::event(name, &payload)
    };
    let in_progress = response_object("in_progress", json!([]), None);
    let mut script = Script::default();
    script.head.push(next("response.created", json!({"response": in_progress})));
    script.head.push(next("response.in_progress", json!({"response": in_progress})));
    for i in 0..searches {
        script.head.push(next(
            "response.output_item.added",
            json!({"output_index": i, "item": search_item(i, "in_progress")}),
        ));
        for phase in ["in_progress", "searching", "completed"] {
            script.head.push(next(
                &format!("response.web_search_call.{phase}"),
                json!({"output_index": i, "item_id": search_id(i)}),
            ));
        }
        script
            .head
            .push(next("response.output_item.done", json!({"output_index": i, "item": search_item(i, "completed")})));
    }
    script.head.push(next(
        "response.output_item.added",
        json!({"output_index": at, "item": message("in_progress", json!([]))}),
    ));
    script.head.push(next(
        "response.content_part.added",
        json!({"item_id": item_id, "output_index": at, "content_index": 0, "part": text_part("")}),
    ));
    for piece in split_deltas(&reply.text, req.knobs.chunks) {
        script.deltas.push(next(
            "response.output_text.delta",
            json!({"item_id": item_id, "output_index": at, "content_index": 0, "delta": piece, "logprobs": []}),
        ));
    }
    script.tail.push(next(
        "response.output_text.done",
        json!({"item_id": item_id, "output_index": at, "content_index": 0, "text": reply.text, "logprobs": []}),
    ));
    script.tail.push(next(
        "response.content_part.done",
        json!({"item_id": item_id, "output_index": at, "content_index": 0, "part": text_part(&reply.text)}),
    ));
    script.tail.push(next("response.output_item.done", json!({"output_index": at, "item": done_item})));
    let mut completed = response_object("completed", json!(output), usage.as_ref());
    if usage.is_none() {
        if let Some(map) = completed.as_object_mut() {
            map.remove("usage");
        }
    }
    script.tail.push(next("response.completed", json!({"response": completed})));

    let cut = script.cut_position();
    let mut response = script.into_response(&req.knobs, "text/event-stream", |inserted| match inserted {
        Inserted::Error => stream::event(
            "error",
            &json!({"type": "error", "code": "server_error", "message": "The server had an error while processing your request (mock stream_error).", "param": null, "sequence_number": cut}),
        ),
        Inserted::Malformed => Bytes::from(format!(
            "event: response.output_text.delta\ndata: {{\"type\":\"response.output_text.delta\",\"item_id\":\"{item_id}\",\"delta\":\n\n"
        )),
    });
    req.add_request_id(&mut response);
    response
}

/// Models the mock lists; any other name is accepted just the same.
const OPENAI_MODELS: [&str; 8] = [
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-5",
    "o3-mini",
    "text-embedding-3-small",
    "text-embedding-3-large",
];
const ANTHROPIC_MODELS: [(&str, &str); 3] = [
    ("claude-opus-4-1", "Claude Opus 4.1"),
    ("claude-sonnet-4-5", "Claude Sonnet 4.5"),
    ("claude-haiku-4-5", "Claude Haiku 4.5"),
];
/// A fixed creation time for listed models (2024-05-13).
const MODEL_CREATED: u64 = 1_715_558_400;

/// `GET /v1/models`: OpenAI's list, or Anthropic's when `anthropic-version` is sent.
pub(crate) async fn models(app: App, uri: Uri, headers: HeaderMap) -> Response {
    let anthropic = headers.contains_key("anthropic-version");
    let (family, auth) =
        if anthropic { (Family::Anthropic, Auth::ApiKeyHeader) } else { (Family::OpenAi, Auth::Bearer) };
    let req = match admit(&app, family, auth, &uri, &headers, b"{}") {
        Ok(req) => req,
        Err(response) => return response,
    };
    if let Some(response) = req.before_answer().await {
        return response;
    }
    let body = if anthropic {
        let data: Vec<Value> = ANTHROPIC_MODELS
            .iter()
            .map(|(id, name)| json!({"type": "model", "id": id, "display_name": name, "created_at": "2025-01-01T00:00:00Z"}))
            .collect();
        json!({"data": data, "has_more": false, "first_id": ANTHROPIC_MODELS[0].0, "last_id": ANTHROPIC_MODELS[2].0})
    } else {
        let data: Vec<Value> = OPENAI_MODELS.iter().map(|id| openai_model(id)).collect();
        json!({"object": "list", "data": data})
    };
    req.json_answer(&body)
}

/// `GET /v1/models/{id}`: OpenAI's model object for any id.
pub(crate) async fn model(app: App, uri: Uri, headers: HeaderMap, id: String) -> Response {
    let req = match admit(&app, Family::OpenAi, Auth::Bearer, &uri, &headers, b"{}") {
        Ok(req) => req,
        Err(response) => return response,
    };
    if let Some(response) = req.before_answer().await {
        return response;
    }
    req.json_answer(&openai_model(&id))
}

fn openai_model(id: &str) -> Value {
    json!({"id": id, "object": "model", "created": MODEL_CREATED, "owned_by": "system"})
}
