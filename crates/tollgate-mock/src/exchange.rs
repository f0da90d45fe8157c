//! The steps every provider endpoint shares: count, authenticate, read knobs
//! and body, wait, fault, and answer a non-streamed JSON body.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Uri};
use serde_json::Value;

use crate::errors::{error_response, fault_message, invalid_request, Family};
use crate::knobs::{Fault, Knobs};
use crate::stats::Stats;
use crate::stream::{GARBAGE, HANG};
use crate::usage::{max_output_limit, measure_prompt, reply_text, usage_for, MockUsage, PromptText};
use crate::MockConfig;

/// Shared state of one mock server.
#[derive(Debug, Clone)]
pub(crate) struct App(Arc<Inner>);

#[derive(Debug)]
pub(crate) struct Inner {
    pub config: MockConfig,
    pub stats: Stats,
    sequence: AtomicU64,
    pub batches: crate::batches::Batches,
    /// A fault applied to every request until cleared (`POST /mock/fault`).
    pub fault: std::sync::RwLock<Option<String>>,
    /// The OAuth token endpoint's issued access tokens (Vertex AI).
    pub tokens: crate::service_account::Tokens,
    /// What the served calls billed (the organization cost and usage reports).
    pub billing: crate::billing::Book,
}

impl App {
    pub(crate) fn new(config: MockConfig) -> Self {
        let tokens = crate::service_account::Tokens::new(config.token_failures);
        Self(Arc::new(Inner {
            config,
            tokens,
            stats: Stats::default(),
            sequence: AtomicU64::new(1),
            fault: std::sync::RwLock::new(None),
            batches: Default::default(),
            billing: Default::default(),
        }))
    }

    pub(crate) fn batches(&self) -> &crate::batches::Batches {
        &self.0.batches
    }

    pub(crate) fn set_fault(&self, fault: Option<String>) {
        if let Ok(mut w) = self.0.fault.write() {
            *w = fault;
        }
    }

    pub(crate) fn billing(&self) -> &crate::billing::Book {
        &self.0.billing
    }

    pub(crate) fn tokens(&self) -> &crate::service_account::Tokens {
        &self.0.tokens
    }

    pub(crate) fn stats(&self) -> &Stats {
        &self.0.stats
    }

    pub(crate) fn config(&self) -> &MockConfig {
        &self.0.config
    }

    fn next_sequence(&self) -> u64 {
        self.0.sequence.fetch_add(1, Ordering::Relaxed)
    }
}

/// Where a provider expects its credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Auth {
    /// `Authorization: Bearer <key>` (OpenAI).
    Bearer,
    /// `api-key: <key>` or a bearer token (Azure OpenAI).
    Azure,
    /// `x-api-key: <key>` (Anthropic).
    ApiKeyHeader,
    /// `x-goog-api-key: <key>` or `?key=<key>` (Gemini).
    Google,
}

impl Auth {
    fn credential<'a>(self, headers: &'a HeaderMap, uri: &'a Uri) -> Option<&'a str> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let bearer = || header("authorization").and_then(|v| v.strip_prefix("Bearer "));
        match self {
            Self::Bearer => bearer(),
            Self::Azure => header("api-key").or_else(bearer),
            Self::ApiKeyHeader => header("x-api-key"),
            Self::Google => header("x-goog-api-key").or_else(|| query_param(uri, "key")),
        }
    }
}

pub(crate) fn query_param<'a>(uri: &'a Uri, name: &str) -> Option<&'a str> {
    uri.query()?.split('&').filter_map(|pair| pair.split_once('=')).find_map(|(k, v)| (k == name).then_some(v))
}

/// A request that passed the shared checks.
#[derive(Debug)]
pub(crate) struct Admitted {
    pub json: Value,
    pub knobs: Knobs,
    pub prompt: PromptText,
    pub family: Family,
    sequence: u64,
}

/// Counts the request, checks its credential, reads knobs and parses the body.
// The error is the finished response, handed straight back to axum.
#[allow(clippy::result_large_err)]
pub(crate) fn admit(
    app: &App,
    family: Family,
    auth: Auth,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Admitted, Response> {
    gate(app, family, auth, uri, headers)?;
    admit_body(app, family, headers, body)
}

/// The rest of [`admit`] once the request is counted and its credential
/// checked (Bedrock checks a signature over the body instead of a key):
/// reads knobs and parses the body as a JSON object.
#[allow(clippy::result_large_err)]
pub(crate) fn admit_body(app: &App, family: Family, headers: &HeaderMap, body: &[u8]) -> Result<Admitted, Response> {
    let knobs = read_knobs(app, family, headers, body)?;
    let json: Value = serde_json::from_slice(body)
        .map_err(|e| invalid_request(family, &format!("could not parse the JSON body of the request: {e}")))?;
    if !json.is_object() {
        return Err(invalid_request(family, "the request body must be a JSON object"));
    }
    Ok(Admitted::new(app, json, knobs, family))
}

/// The first step of every endpoint: counts the request and checks its credential.
#[allow(clippy::result_large_err)]
pub(crate) fn gate(app: &App, family: Family, auth: Auth, uri: &Uri, headers: &HeaderMap) -> Result<(), Response> {
    let credential = auth.credential(headers, uri);
    app.stats().record_request(uri.path(), credential.is_some());
    if let Some(expected) = &app.0.config.require_api_key {
        if credential != Some(expected.as_str()) {
            app.stats().record_refused(refusal_name(family));
            return Err(error_response(family, 401, unauthorized_message(family), None));
        }
    }
    Ok(())
}

/// [`admit`] for a body that is not JSON (a multipart form), after [`gate`]:
/// `fields` (a JSON object) stands in for the parsed body, and knob
/// directives are read from `knob_text` (the form's text fields; file
/// contents are never scanned).
#[allow(clippy::result_large_err)]
pub(crate) fn admit_form(
    app: &App,
    family: Family,
    headers: &HeaderMap,
    knob_text: &[u8],
    fields: Value,
) -> Result<Admitted, Response> {
    let knobs = read_knobs(app, family, headers, knob_text)?;
    Ok(Admitted::new(app, fields, knobs, family))
}

/// Config, headers, body directives, then the standing fault (if the request names none).
#[allow(clippy::result_large_err)]
fn read_knobs(app: &App, family: Family, headers: &HeaderMap, body: &[u8]) -> Result<Knobs, Response> {
    let mut knobs = Knobs::read(&app.0.config, headers, body).map_err(|e| invalid_request(family, &e.to_string()))?;
    let standing = app.0.fault.read().map(|f| f.clone()).unwrap_or(None);
    if let Some(f) = standing {
        knobs.apply_standing_fault(&f).map_err(|e| invalid_request(family, &e.to_string()))?;
    }
    Ok(knobs)
}

fn unauthorized_message(family: Family) -> &'static str {
    match family {
        Family::OpenAi => "Incorrect API key provided.",
        Family::Anthropic => "invalid x-api-key",
        Family::Gemini => "API key not valid. Please pass a valid API key.",
        Family::Bedrock => "The security token included in the request is invalid.",
    }
}

/// The provider's name for a refused credential, for `/mock/stats`.
fn refusal_name(family: Family) -> &'static str {
    match family {
        Family::OpenAi => "invalid_api_key",
        Family::Anthropic => "authentication_error",
        Family::Gemini => "UNAUTHENTICATED",
        Family::Bedrock => "UnrecognizedClientException",
    }
}

impl Admitted {
    fn new(app: &App, json: Value, knobs: Knobs, family: Family) -> Self {
        let prompt = measure_prompt(&json);
        Self { json, knobs, prompt, family, sequence: app.next_sequence() }
    }

    /// A per-server unique number for ids.
    pub(crate) fn sequence(&self) -> u64 {
        self.sequence
    }

    pub(crate) fn str_field(&self, key: &str) -> Option<&str> {
        self.json.get(key).and_then(Value::as_str)
    }

    pub(crate) fn flag(&self, key: &str) -> bool {
        self.json.get(key).and_then(Value::as_bool) == Some(true)
    }

    pub(crate) fn no_usage(&self) -> bool {
        self.knobs.has(Fault::NoUsage)
    }

    /// The usage this request gets from `model` (that of [`Self::reply`]).
    pub(crate) fn usage(&self, model: &str) -> MockUsage {
        usage_for(self.prompt.bytes, model, max_output_limit(&self.json), self.knobs.output_tokens)
    }

    /// The usage and reply text this request gets from `model`.
    pub(crate) fn reply(&self, model: &str) -> Reply {
        let usage = self.usage(model);
        let text = reply_text(usage.visible_output_tokens(), self.prompt.digest);
        Reply { usage, text }
    }

    /// Waits the configured latency, then performs a status or timeout fault.
    /// `Some` is the response to send instead of a normal answer.
    pub(crate) async fn before_answer(&self) -> Option<Response> {
        if self.knobs.latency_ms > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(self.knobs.latency_ms)).await;
        }
        match self.knobs.fault {
            Some(Fault::Status(status)) => {
                let retry_after = matches!(status, 429 | 503 | 529).then_some(self.knobs.retry_after);
                Some(error_response(self.family, status, &fault_message(status), retry_after))
            }
            Some(Fault::Timeout) => {
                tokio::time::sleep(HANG).await;
                None
            }
            // Unwinding ends this connection's task: the socket closes with
            // no response at all (no panic message: `resume_unwind` skips the hook).
            Some(Fault::Reset) => std::panic::resume_unwind(Box::new("mock fault=reset")),
            _ => None,
        }
    }

    /// A complete JSON answer, or the malformed/truncated body a fault asks for.
    pub(crate) fn json_answer(&self, body: &Value) -> Response {
        self.json_text_answer(body.to_string())
    }

    /// [`Self::json_answer`] for a body already written as JSON text.
    pub(crate) fn json_text_answer(&self, text: String) -> Response {
        self.text_answer("application/json", text)
    }

    /// A complete body of `content_type` (JSON, or plain text such as a
    /// transcript), bent by the request's body fault: `malformed` (a body
    /// that does not parse as JSON), `garbage`, `reset_mid`, `truncate`.
    pub(crate) fn text_answer(&self, content_type: &'static str, text: String) -> Response {
        let bytes = match self.knobs.fault {
            Some(Fault::Malformed) => String::from("{\"mock\": this is not json"),
            Some(Fault::Garbage) => {
                return ([(header::CONTENT_TYPE, HeaderValue::from_static("text/html"))], GARBAGE).into_response()
            }
            Some(Fault::ResetMid) => {
                let mut cut = text.len() / 2;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                let half = Bytes::copy_from_slice(&text.as_bytes()[..cut]);
                // The half, then (after a pause, so the half is on the wire) the break.
                let parts = futures_util::stream::unfold(Some(half), |half| async move {
                    match half {
                        Some(h) => Some((Ok(h), None)),
                        None => {
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                            Some((Err(std::io::Error::other("mock fault=reset_mid")), None))
                        }
                    }
                });
                let parts = futures_util::StreamExt::take(parts, 2);
                let body = axum::body::Body::from_stream(parts);
                return ([(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], body).into_response();
            }
            Some(Fault::Truncate) => {
                let mut cut = text.len() / 2;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text[..cut].to_owned()
            }
            _ => text,
        };
        let mut response = ([(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], bytes).into_response();
        self.add_request_id(&mut response);
        response
    }

    /// The request-id header the provider sends (none for Gemini).
    pub(crate) fn add_request_id(&self, response: &mut Response) {
        let name = match self.family {
            Family::OpenAi => HeaderName::from_static("x-request-id"),
            Family::Anthropic => HeaderName::from_static("request-id"),
            Family::Bedrock => HeaderName::from_static("x-amzn-requestid"),
            Family::Gemini => return,
        };
        let id = match self.family {
            // AWS request ids are UUIDs.
            Family::Bedrock => format!("00000000-0000-4000-8000-{:012x}", self.sequence),
            _ => format!("req_mock{:016}", self.sequence),
        };
        if let Ok(value) = HeaderValue::try_from(id) {
            response.headers_mut().insert(name, value);
        }
    }
}

/// `value` as compact JSON text (as `Value::to_string` writes it), except
/// that the value at `path` (a chain of object keys, the last one present)
/// is `raw`, written verbatim: how a JSON number keeps the exact text a knob
/// gave it (`serde_json` without `arbitrary_precision` would go through `f64`).
/// `raw` must be valid JSON (knobs check it).
pub(crate) fn json_text_with_raw(value: &Value, path: &[&str], raw: &str) -> String {
    fn write(value: &Value, path: &[&str], raw: &str, out: &mut String) {
        match (path.split_first(), value) {
            (None, _) => out.push_str(raw),
            (Some((key, rest)), Value::Object(map)) => {
                out.push('{');
                for (i, (k, v)) in map.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::from(k.as_str()).to_string());
                    out.push(':');
                    if k == key {
                        write(v, rest, raw, out);
                    } else {
                        out.push_str(&v.to_string());
                    }
                }
                out.push('}');
            }
            _ => out.push_str(&value.to_string()),
        }
    }
    let mut out = String::new();
    write(value, path, raw, &mut out);
    out
}

/// What the mock model "generated" for one request.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub usage: MockUsage,
    pub text: String,
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
