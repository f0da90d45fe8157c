//! A fake OpenAI-, Anthropic- and Gemini-shaped upstream with deterministic usage.
//!
//! The gateway's tests, `tollgate demo`, `tollgate mock-provider` and the
//! benchmarks run against it. It answers in the providers' real wire shapes
//! (the official SDKs parse them), is cheap per request (no per-request
//! logging, no lock held across an await), and can misbehave on request.
//!
//! # Endpoints
//!
//! | route | shape |
//! |---|---|
//! | `POST /v1/chat/completions` | OpenAI chat, streamed (`stream: true`) or not |
//! | `POST /openai/deployments/{deployment}/chat/completions`, `POST /openai/v1/chat/completions` | Azure OpenAI chat (model = deployment) |
//! | `POST /v1/embeddings` (+ Azure's) | OpenAI embeddings, `float` or `base64` |
//! | `POST /v1/responses` (+ `/openai/v1/responses`) | OpenAI Responses, streamed or not |
//! | `GET /v1/models`, `GET /v1/models/{id}` | OpenAI's model list (Anthropic's when `anthropic-version` is sent) |
//! | `POST /v1/messages` | Anthropic Messages, streamed or not |
//! | `POST /v1beta/models/{model}:generateContent`, `:streamGenerateContent[?alt=sse]` (also under `/v1/models/`) | Gemini |
//! | `GET /mock/stats`, `POST /mock/reset` | request counters: `{"total","paths":{path:n},"models":{model:n},"last_auth":"present"\|"absent"\|null,"last_output_limit":n\|null}` (the last request's output cap) |
//!
//! The response's `model` echoes the requested model. The reply text is
//! `mock reply <8 hex digits of a prompt digest> tokens flow through …`, one
//! word per visible output token (capped at 4096 words), split into `chunks`
//! content deltas when streamed.
//!
//! # Usage formulas
//!
//! Let `T` be the number of bytes of all textual prompt content: every string
//! under a `content`, `text`, `system`, `instructions` or `input` key at any
//! depth (message contents and text parts, system prompts, Responses
//! instructions/input, Gemini parts, embeddings input; each token id of a
//! token-array input counts 4 bytes). Then, identically for streamed and
//! non-streamed answers:
//!
//! | quantity | formula |
//! |---|---|
//! | prompt (all input) | `8 + T/4` |
//! | cache read | `prompt/4` |
//! | cache write (Anthropic only) | `prompt/8`: 5-minute TTL `write/2`, 1-hour TTL the rest |
//! | output (all output) | the `output_tokens` knob, else `min(smallest of max_tokens / max_completion_tokens / max_output_tokens / maxOutputTokens, 24)`, else 24 |
//! | reasoning | `output/2` if the model name contains `o1`, `o3`, `o4`, `gpt-5`, `reason` or `think` (case-insensitive), else 0 |
//!
//! (Integer division throughout.) Each provider reports them in its own convention:
//! - OpenAI chat: `prompt_tokens` = prompt, `prompt_tokens_details.cached_tokens`
//!   = cache read, `completion_tokens` = output,
//!   `completion_tokens_details.reasoning_tokens` = reasoning (inside output).
//! - OpenAI Responses: `input_tokens` = prompt, `input_tokens_details.cached_tokens`,
//!   `output_tokens` = output, `output_tokens_details.reasoning_tokens`.
//! - Embeddings: `prompt_tokens` = `total_tokens` = prompt.
//! - Anthropic: `input_tokens` = prompt − cache read − cache write,
//!   `cache_read_input_tokens`, `cache_creation_input_tokens` (+ `cache_creation`
//!   by TTL), `output_tokens` = output (reasoning not reported separately).
//!   Streams: `message_start` carries the input fields and `output_tokens: 1`;
//!   `message_delta` carries the final `output_tokens` and the input fields again.
//! - Gemini: `promptTokenCount` = prompt (cache included),
//!   `cachedContentTokenCount` = cache read, `candidatesTokenCount` = output −
//!   reasoning, `thoughtsTokenCount` = reasoning (zero counts are omitted),
//!   `totalTokenCount` = prompt + output. Every streamed chunk carries
//!   `usageMetadata` with the output so far; the last one (with
//!   `finishReason: "STOP"`) has the final numbers. SSE events end in `\r\n\r\n`.
//!
//! [`usage_for`] and [`usage_for_request`] compute the same numbers for tests.
//!
//! # Knobs
//!
//! Per request, from headers `x-mock-latency-ms`, `x-mock-chunk-delay-ms`,
//! `x-mock-chunks`, `x-mock-output-tokens`, `x-mock-fault`, `x-mock-retry-after`,
//! `x-mock-web-searches`, `x-mock-reported-cost`, or from a directive anywhere
//! in the raw body, `[mock latency_ms=5 fault=429]`, with the same names
//! (`latency_ms`, `chunk_delay_ms`, `chunks`, `output_tokens`, `fault`,
//! `retry_after`, `web_searches`, `reported_cost`). Precedence: [`MockConfig`],
//! then headers, then body. An unknown knob or fault, or a bad value, answers
//! 400 (provider-shaped) naming it.
//!
//! | knob | effect |
//! |---|---|
//! | `latency_ms` | waited before any answer |
//! | `chunk_delay_ms` | waited between stream events |
//! | `chunks` | content deltas per stream (default 4, 1–10,000) |
//! | `output_tokens` | the output count of the usage formulas |
//! | `fault`, `retry_after` | see *Faults* below |
//! | `web_searches=N` | server-side web searches (whole number, capped at 1,000): Anthropic answers add `"server_tool_use": {"web_search_requests": N}` to `usage` (the whole body's, and the stream's `message_delta` usage; `message_start` has none); OpenAI Responses answers get N `{"type": "web_search_call", "id": "ws_mock…", "status": "completed", "action": {"type": "search", "query": …}}` items before the message item in `output` (whole body and `response.completed`), and a stream has, per search, `response.output_item.added` (status `in_progress`), `response.web_search_call.in_progress` / `.searching` / `.completed` and `response.output_item.done` events ahead of the message's, whose `output_index` becomes N. Other endpoints ignore it. |
//! | `reported_cost=DECIMAL` | a JSON number of USD (e.g. `0.000123`, `1.5e-05`), written exactly as given as `usage.cost` in OpenAI chat completions answers (also Azure's; the whole body, and a stream's final usage chunk when `include_usage` is on), as OpenRouter reports its charge. Not a JSON number: 400. Other endpoints ignore it. |
//!
//! Faults:
//! - a status `400`–`599` (e.g. `429`, `500`, `503`, `529`): that status with the
//!   provider's error body; `429`/`503`/`529` carry `Retry-After: retry_after`
//!   (default 1).
//! - `timeout`: waits an hour, then answers (other requests are unaffected).
//! - `malformed`: a 200 whose JSON body does not parse; in a stream, one
//!   unparseable event half-way (the stream then completes normally).
//! - `truncate`: non-streamed, the body cut in half; streamed, half the deltas
//!   and then a clean end: no finish/terminal event and no usage.
//! - `no_usage`: usage left out everywhere.
//! - `stream_error`: half the deltas, then the provider's in-stream error
//!   event, then the end. `stall`: half the deltas, then an hour of silence.
//!   Both leave non-streamed answers untouched.
//! - `garbage`: a 200 whose body is an HTML error page; in a stream, that page
//!   as the first `data:` event (before any real event).
//! - `reset`: the connection is closed before any byte of the answer.
//! - `reset_mid`: half the body (half the deltas of a stream), then the
//!   connection breaks mid-body (no terminal chunk).
//!
//! # Auth
//!
//! With [`MockConfig::require_api_key`] set, a request without that key in
//! its provider's header (`authorization: Bearer` for OpenAI; `api-key` or
//! bearer for Azure; `x-api-key` for Anthropic; `x-goog-api-key` or `?key=`
//! for Gemini) gets a provider-shaped 401. Either way, `/mock/stats` records
//! whether the last request carried a credential, never its value.

mod anthropic;
mod batches;
mod errors;
mod exchange;
mod gemini;
mod knobs;
mod openai;
mod stats;
mod stream;
mod usage;

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt as _;
use axum::Router;
use bytes::Bytes;
use http::{HeaderMap, Method, Uri};

use crate::errors::{error_response, Family};
use crate::exchange::App;

pub use crate::openai::embed;
pub use crate::usage::{
    is_reasoning_model, usage_for, usage_for_request, MockUsage, DEFAULT_OUTPUT_TOKENS, REASONING_MARKERS,
};

/// Server-wide defaults; per-request knobs override the timing ones.
#[derive(Debug, Clone, Default)]
pub struct MockConfig {
    /// Wait before every answer, in milliseconds.
    pub latency_ms: u64,
    /// Wait between stream events, in milliseconds.
    pub chunk_delay_ms: u64,
    /// When set, requests must carry this key in their provider's auth header.
    pub require_api_key: Option<String>,
}

/// Bodies up to this size are read; the gateway's own limit is smaller.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// The mock's routes, with fresh counters.
pub fn router(config: MockConfig) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/openai/v1/chat/completions", post(chat))
        .route("/openai/deployments/{deployment}/chat/completions", post(azure_chat))
        .route("/v1/embeddings", post(embeddings))
        .route("/openai/v1/embeddings", post(embeddings))
        .route("/openai/deployments/{deployment}/embeddings", post(azure_embeddings))
        .route("/v1/responses", post(responses))
        .route("/openai/v1/responses", post(responses))
        .route("/v1/models", get(models))
        .route("/v1/models/{*rest}", get(model).post(gemini))
        .route("/v1/messages", post(messages))
        .route("/v1beta/models/{*rest}", post(gemini))
        .route("/mock/stats", get(stats))
        .route("/mock/reset", post(reset))
        .route("/mock/fault", post(set_fault))
        .route("/v1/files", post(batches::upload))
        .route("/v1/files/{id}/content", get(batches::file_content))
        .route("/v1/batches", post(batches::create_openai))
        .route("/v1/batches/{id}", get(batches::get_openai))
        .route("/v1/messages/batches", post(batches::create_anthropic))
        .route("/v1/messages/batches/{id}", get(batches::get_anthropic))
        .route("/v1/messages/batches/{id}/results", get(batches::anthropic_results))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(App::new(config))
}

/// Serves the mock on `listener` until the process ends, with `TCP_NODELAY`
/// on every accepted socket (small answers must not wait for delayed ACKs).
pub async fn serve(listener: tokio::net::TcpListener, config: MockConfig) -> std::io::Result<()> {
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
    });
    axum::serve(listener, router(config)).await
}

/// `POST /mock/fault` with `{"fault":"503"}` makes every request fail that
/// way until `{"fault":null}`; per-request knobs still win.
async fn set_fault(State(app): State<App>, body: Bytes) -> Response {
    let v: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return (http::StatusCode::BAD_REQUEST, format!("mock: {e}")).into_response(),
    };
    let fault = v.get("fault").and_then(|f| f.as_str()).map(String::from);
    app.set_fault(fault.clone());
    axum::Json(serde_json::json!({ "fault": fault })).into_response()
}

async fn chat(State(app): State<App>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    openai::chat(app, uri, headers, body, None).await
}

async fn azure_chat(
    State(app): State<App>,
    Path(deployment): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    openai::chat(app, uri, headers, body, Some(deployment)).await
}

async fn embeddings(State(app): State<App>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    openai::embeddings(app, uri, headers, body, None).await
}

async fn azure_embeddings(
    State(app): State<App>,
    Path(deployment): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    openai::embeddings(app, uri, headers, body, Some(deployment)).await
}

async fn responses(State(app): State<App>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    openai::responses(app, uri, headers, body).await
}

async fn models(State(app): State<App>, uri: Uri, headers: HeaderMap) -> Response {
    openai::models(app, uri, headers).await
}

async fn model(State(app): State<App>, Path(id): Path<String>, uri: Uri, headers: HeaderMap) -> Response {
    openai::model(app, uri, headers, id).await
}

async fn messages(State(app): State<App>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    anthropic::messages(app, uri, headers, body).await
}

async fn gemini(
    State(app): State<App>,
    Path(rest): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    gemini::generate(app, uri, headers, body, rest).await
}

async fn stats(State(app): State<App>) -> Response {
    axum::Json(app.stats().snapshot()).into_response()
}

async fn reset(State(app): State<App>) -> Response {
    app.stats().reset();
    axum::Json(serde_json::json!({"reset": true})).into_response()
}

async fn not_found(State(app): State<App>, method: Method, uri: Uri) -> Response {
    app.stats().record_request(uri.path(), false);
    let family = if uri.path().starts_with("/v1beta/") { Family::Gemini } else { Family::OpenAi };
    error_response(family, 404, &format!("Unknown request URL: {method} {}", uri.path()), None)
}
