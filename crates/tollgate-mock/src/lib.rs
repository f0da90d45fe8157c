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
//! | `POST /v1/images/generations` (JSON), `POST /v1/images/edits` (multipart) | OpenAI images; see *Media endpoints* |
//! | `POST /v1/audio/transcriptions`, `POST /v1/audio/translations` (multipart), `POST /v1/audio/speech` (JSON) | OpenAI audio; see *Media endpoints* |
//! | `GET /mock/stats`, `POST /mock/reset` | request counters: `{"total","paths":{path:n},"models":{model:n},"last_auth":"present"\|"absent"\|null,"last_output_limit":n\|null,"last_path":p\|null,"last_model":m\|null,"last_files":[…]\|null}` (the last request's output cap, path, model if it named one, and, for a multipart request, its file parts as `{"field","filename","content_type","bytes"}`) |
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
//! # Media endpoints
//!
//! OpenAI's image and audio endpoints, with OpenAI's bearer auth, counted in
//! `/mock/stats` (path, model, and the file parts of multipart uploads), and
//! taking the knobs like the other endpoints: headers, or `[mock …]`
//! directives in the JSON body or in a form's text fields (never in file
//! contents). `latency_ms`, the status faults, `timeout` and `reset` work
//! everywhere; `malformed`, `truncate`, `garbage`, `reset_mid` bend the
//! JSON/text bodies; `no_usage` drops `usage`; speech answers stream (see
//! below), so `chunks`, `chunk_delay_ms` and the stream faults apply to
//! them. `output_tokens` does not affect them.
//!
//! One string's token count is `tokens(s) = 8 + bytes(s)/4`, integer division
//! (the chat prompt formula for a prompt of just that text; a `[mock …]`
//! directive in it counts like any other text). Bad requests get OpenAI's 400
//! `{"error": {"message", "type": "invalid_request_error", "param", "code"}}`
//! naming the parameter (`code` `missing_required_parameter`, `invalid_value`,
//! `invalid_type`, `integer_below_min_value` / `integer_above_max_value`).
//!
//! **Images** (`/v1/images/generations` JSON; `/v1/images/edits` multipart
//! with one or more `image` / `image[]` file parts, an optional `mask`, and
//! the same parameters as text fields). `model` defaults to `dall-e-2` (as
//! OpenAI's does); `prompt` is required; `n` is 1–10 (default 1; `dall-e-3`:
//! only 1); `size` must be one of the model's sizes (`dall-e-2`: 256x256,
//! 512x512, 1024x1024; `dall-e-3`: 1024x1024, 1792x1024, 1024x1792;
//! `gpt-image*`: 1024x1024, 1536x1024, 1024x1536, auto; other names: any),
//! default 1024x1024; `quality`: `dall-e-2` standard|auto, `dall-e-3`
//! standard|hd|auto, `gpt-image*` low|medium|high|auto (default auto), other
//! names any of those; `response_format` url|b64_json (default url;
//! `gpt-image*` always b64_json). An edit without an `image` part is a 400.
//! The answer is `{"created", "data": [n items]}`, each item
//! `{"b64_json": <a 1×1 PNG>}` or
//! `{"url": "https://mock.invalid/images/<request sequence>-<index>.png"}`,
//! plus `"revised_prompt": "A mock illustration of: <prompt>"` for
//! `dall-e-3`. Only `gpt-image*` models add `usage`:
//!
//! | field | value |
//! |---|---|
//! | `input_tokens_details.text_tokens` | `T = tokens(prompt)` |
//! | `input_tokens_details.image_tokens` | `194 × input image parts` (edits; the mask does not count; 0 for generations) |
//! | `input_tokens` | text + image tokens |
//! | `output_tokens` | `n ×` gpt-image-1's per-image table: low 272 / 408 / 400, medium 1056 / 1584 / 1568, high 4160 / 6240 / 6208 for 1024x1024 / 1024x1536 / 1536x1024; quality `auto` counts as high, size `auto` as 1024x1024 |
//! | `total_tokens` | input + output |
//!
//! **Transcriptions and translations** (multipart: `file` (required), `model`
//! (required), `prompt`, `language`, `response_format`, `temperature` 0–1).
//! The audio's duration `ms`: for a RIFF/WAVE file,
//! `ceil(data chunk bytes × 1000 / fmt byte rate)` (chunks walked, a data
//! chunk longer than the file counted as what is present); any other file,
//! `ceil(bytes × 1000 / 16,000)`; an empty file is a 400. The text is always
//! `The quick brown fox jumps over the lazy dog.` (44 bytes, `tokens` = 19).
//! `response_format` (default `json`): `json` → `{"text", "usage"}`;
//! `verbose_json` → `{"task": "transcribe"|"translate", "language": "english",
//! "duration": ms/1000 (a float), "text", "segments": [], "usage"}`; `text` →
//! the text and a newline; `srt` / `vtt` → one cue from 0 to `ms`; the
//! three text formats are `text/plain; charset=utf-8`, without usage.
//! Translations never carry `usage` (as OpenAI's). Transcription usage:
//! - models starting `gpt-4o` (`gpt-4o-transcribe`, `gpt-4o-mini-transcribe`;
//!   only `json` and `text` accepted): `{"type": "tokens", "input_tokens":
//!   A+P, "input_token_details": {"text_tokens": P, "audio_tokens": A},
//!   "output_tokens": O, "total_tokens": A+P+O}` with `A = ceil(ms/100)`
//!   (10 a second), `P = tokens(prompt)` (0 without a prompt), `O = 19`.
//! - any other model (`whisper-1`): `{"type": "duration", "seconds":
//!   ceil(ms/1000)}` (whole seconds, rounded up, as whisper is billed).
//!
//! **Speech** (JSON: `model`, `input` (at most 4096 characters) and `voice`
//! required; `response_format` mp3 (default)|opus|aac|flac|wav|pcm; `speed`
//! 0.25–4; `instructions`; `stream_format` audio (default)|sse, sse only for
//! `gpt-4o-mini-tts*`). The speech lasts `ms = 60 × characters of input`
//! (Unicode scalars; `speed` ignored) of 24 kHz 16-bit mono, i.e. `48 × ms`
//! bytes: `wav` is a 44-byte RIFF/WAVE header plus that much silence, `pcm`
//! the silence alone, the others that many deterministic (undecodable) bytes,
//! as `audio/mpeg`, `audio/opus`, `audio/aac`, `audio/flac`, `audio/wav`,
//! `audio/pcm`. The body streams in `chunks` pieces (default 4) with
//! `chunk_delay_ms` between them (5 ms unless set), without usage
//! (`stream_error` there just ends it half-way: raw audio has no error
//! event). With
//! `stream_format: "sse"` it is `text/event-stream`: one
//! `data: {"type":"speech.audio.delta","audio":<base64 of a piece>}` per
//! piece, then `data: {"type":"speech.audio.done","usage":{"input_tokens":
//! I,"output_tokens":O,"total_tokens":I+O}}` with `I = tokens(input)` and
//! `O = ceil(ms/50)` (20 audio tokens a second).
//!
//! [`text_tokens`], [`gpt_image_output_tokens`], [`audio_duration_ms`],
//! [`billed_seconds`], [`transcription_audio_tokens`] and
//! [`speech_output_tokens`] compute the same numbers for tests.
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
mod audio;
mod batches;
mod errors;
mod exchange;
mod form;
mod gemini;
mod images;
mod knobs;
mod openai;
mod params;
mod stats;
mod stream;
mod usage;

use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt as _;
use axum::Router;
use bytes::Bytes;
use http::{HeaderMap, Method, Uri};

use crate::errors::{error_response, Family};
use crate::exchange::App;

pub use crate::audio::MOCK_TRANSCRIPT;
pub use crate::images::MOCK_PNG_BASE64;
pub use crate::openai::embed;
pub use crate::usage::{
    audio_duration_ms, billed_seconds, gpt_image_output_tokens, is_reasoning_model, speech_output_tokens, text_tokens,
    transcription_audio_tokens, usage_for, usage_for_request, MockUsage, DEFAULT_OUTPUT_TOKENS,
    GPT_IMAGE_INPUT_IMAGE_TOKENS, NON_WAV_BYTES_PER_SECOND, REASONING_MARKERS, SPEECH_BYTES_PER_MS, SPEECH_MS_PER_CHAR,
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
        .route("/v1/images/generations", post(image_generations))
        .route("/v1/images/edits", post(image_edits))
        .route("/v1/audio/transcriptions", post(transcriptions))
        .route("/v1/audio/translations", post(translations))
        .route("/v1/audio/speech", post(speech))
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

async fn image_generations(State(app): State<App>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    images::generations(app, uri, headers, body).await
}

// Multipart handlers take the whole request (the form is read inside, so a
// bad form still counts and gets an OpenAI-shaped 400).
async fn image_edits(State(app): State<App>, request: Request) -> Response {
    images::edits(app, request).await
}

async fn transcriptions(State(app): State<App>, request: Request) -> Response {
    audio::transcriptions(app, request).await
}

async fn translations(State(app): State<App>, request: Request) -> Response {
    audio::translations(app, request).await
}

async fn speech(State(app): State<App>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    audio::speech(app, uri, headers, body).await
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
