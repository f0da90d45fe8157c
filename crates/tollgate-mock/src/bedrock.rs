//! Amazon Bedrock Runtime's Converse API: `POST /model/{modelId}/converse`
//! and `POST /model/{modelId}/converse-stream`, every request verified as
//! AWS Signature Version 4 for service `bedrock`; the stream is AWS
//! event-stream framed (`application/vnd.amazon.eventstream`).

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap, HeaderValue, Uri};
use serde_json::{json, Value};
use tollgate_providers::eventstream::{self, HeaderValue as FrameValue};
use tollgate_providers::sigv4::{self, SigV4Error};

use crate::errors::{bedrock_error, invalid_request, Family};
use crate::exchange::{admit_body, unix_now, App};
use crate::knobs::Fault;
use crate::stream::{paced_body, Inserted, Script, GARBAGE};
use crate::usage::{max_output_limit, measure_prompt, split_deltas, MockUsage, PromptText, DEFAULT_OUTPUT_TOKENS};

/// The SigV4 service name Bedrock Runtime requests are signed for.
pub const SIGV4_SERVICE: &str = "bedrock";

/// How far a request's `X-Amz-Date` may be from the mock's clock.
pub const MAX_CLOCK_SKEW_SECS: u64 = 300;

/// The stream's content type.
const EVENT_STREAM: &str = "application/vnd.amazon.eventstream";

/// Pause between a stream's chunks unless `chunk_delay_ms` says otherwise,
/// so the chunks (some ending mid-message) reach the client separately.
const CHUNK_DELAY_MS: u64 = 2;

/// The `x-amzn-ErrorType` suffix AWS's front end adds to its auth errors.
const CORAL: &str = ":http://internal.amazon.com/coral/com.amazon.coral.service/";

/// Bedrock's usage: cache reads and writes outside `inputTokens` (only when
/// the request used the cache), `totalTokens` the sum of all four.
fn usage_json(u: &MockUsage, cached: bool) -> Value {
    let total = u.prompt_tokens + u.output_tokens;
    if cached {
        json!({
            "inputTokens": u.anthropic_input_tokens(),
            "outputTokens": u.output_tokens,
            "totalTokens": total,
            "cacheReadInputTokens": u.cache_read_tokens,
            "cacheWriteInputTokens": u.cache_write_tokens(),
        })
    } else {
        json!({"inputTokens": u.prompt_tokens, "outputTokens": u.output_tokens, "totalTokens": total})
    }
}

/// Whether any `system`, message or tool block is a `cachePoint`.
fn has_cache_point(json: &Value) -> bool {
    let is_point = |block: &Value| block.get("cachePoint").is_some();
    let blocks = |v: Option<&Value>| v.and_then(Value::as_array).map(|a| a.iter().any(is_point)).unwrap_or(false);
    blocks(json.get("system"))
        || blocks(json.get("toolConfig").and_then(|t| t.get("tools")))
        || json
            .get("messages")
            .and_then(Value::as_array)
            .is_some_and(|messages| messages.iter().any(|m| blocks(m.get("content"))))
}

/// The prompt text of a Converse request: the text of `system` and `messages`
/// only (the same walk as the other shapes: `text` strings, tool results'
/// text, never images, tool specs or inference settings).
fn converse_prompt(json: &Value) -> PromptText {
    let system = json.get("system").map(measure_prompt).unwrap_or_default();
    let messages = json.get("messages").map(measure_prompt).unwrap_or_default();
    PromptText { bytes: system.bytes + messages.bytes, digest: system.digest.wrapping_add(messages.digest) }
}

/// An event message: `:event-type`, `:content-type: application/json`,
/// `:message-type: event`, and the JSON payload.
fn event(kind: &str, payload: &[u8]) -> Bytes {
    let headers = [
        (":event-type", FrameValue::String(kind.to_owned())),
        (":content-type", FrameValue::String("application/json".to_owned())),
        (":message-type", FrameValue::String("event".to_owned())),
    ];
    Bytes::from(eventstream::encode(&headers, payload))
}

fn json_event(kind: &str, payload: &Value) -> Bytes {
    event(kind, payload.to_string().as_bytes())
}

/// An exception message: `:exception-type`, `:content-type`,
/// `:message-type: exception`, and `{"message"}`.
fn exception(kind: &str, message: &str) -> Bytes {
    let headers = [
        (":exception-type", FrameValue::String(kind.to_owned())),
        (":content-type", FrameValue::String("application/json".to_owned())),
        (":message-type", FrameValue::String("exception".to_owned())),
    ];
    Bytes::from(eventstream::encode(&headers, json!({"message": message}).to_string().as_bytes()))
}

/// Flips one byte in the middle of a message's payload: its prelude stays
/// valid, its message CRC no longer matches.
fn corrupt_payload(message: &Bytes) -> Bytes {
    let mut bytes = message.to_vec();
    let headers_len = bytes.get(4..8).map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize);
    let (start, end) = (12 + headers_len, bytes.len().saturating_sub(4));
    if start < end {
        bytes[start + (end - start) / 2] ^= 0x01;
    }
    Bytes::from(bytes)
}

/// The messages as the chunks the body is written in: the 2nd, 5th, 8th, …
/// message is split in the middle, its second half sent with the next
/// message, so some chunks end mid-message and some start mid-message.
fn chunks(messages: &[Bytes]) -> Vec<Bytes> {
    let mut out = Vec::with_capacity(messages.len() + 1);
    let mut carry: Option<Bytes> = None;
    for (i, message) in messages.iter().enumerate() {
        let (send, keep) = if i % 3 == 1 {
            let mid = message.len() / 2;
            (message.slice(..mid), Some(message.slice(mid..)))
        } else {
            (message.clone(), None)
        };
        out.push(match carry.take() {
            Some(first) => {
                let mut joined = BytesMut::with_capacity(first.len() + send.len());
                joined.extend_from_slice(&first);
                joined.extend_from_slice(&send);
                joined.freeze()
            }
            None => send,
        });
        carry = keep;
    }
    out.extend(carry);
    out
}

/// [`chunks`] of `messages`, and where event index `at` (a stall or break
/// point, if any) falls among them (each side chunked on its own).
fn chunks_around(messages: &[Bytes], at: Option<usize>) -> (Vec<Bytes>, Option<usize>) {
    match at {
        Some(at) => {
            let at = at.min(messages.len());
            let mut out = chunks(&messages[..at]);
            let index = out.len();
            out.extend(chunks(&messages[at..]));
            (out, Some(index))
        }
        None => (chunks(messages), None),
    }
}

/// Counts the request and verifies its SigV4 signature against the mock's
/// AWS credentials; a refusal is Bedrock's 403, counted as refused.
#[allow(clippy::result_large_err)]
fn authenticate(app: &App, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Result<(), Response> {
    let signed = headers.contains_key(header::AUTHORIZATION);
    app.stats().record_request(uri.path(), signed);
    let refuse = |name: &'static str, message: &str| {
        app.stats().record_refused(name);
        Err(bedrock_error(403, &format!("{name}{CORAL}"), message))
    };
    if !signed {
        return refuse("MissingAuthenticationTokenException", "Missing Authentication Token");
    }
    let config = app.config();
    let secret_for = |key_id: &str| (key_id == config.aws_access_key_id).then(|| config.aws_secret_access_key.clone());
    // The path and query exactly as received: SigV4 signs the encoded form.
    let path_and_query = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let now = unix_now();
    match sigv4::verify("POST", path_and_query, headers, body, &secret_for, now, MAX_CLOCK_SKEW_SECS) {
        Ok(scope) => {
            app.stats().record_aws_region(&scope.region);
            if scope.service != SIGV4_SERVICE {
                return refuse(
                    "InvalidSignatureException",
                    &format!("Credential should be scoped to correct service: '{SIGV4_SERVICE}'. "),
                );
            }
            Ok(())
        }
        Err(error) => {
            let (name, message) = refusal(&error, now);
            refuse(name, &message)
        }
    }
}

/// AWS's error name and message for a request whose signature does not verify.
fn refusal(error: &SigV4Error, now: u64) -> (&'static str, String) {
    const MISMATCH: &str = "The request signature we calculated does not match the signature you provided. \
                            Check your AWS Secret Access Key and signing method. \
                            Consult the service documentation for details.";
    const INVALID: &str = "InvalidSignatureException";
    match error {
        SigV4Error::MissingAuthorization => {
            ("MissingAuthenticationTokenException", "Missing Authentication Token".into())
        }
        SigV4Error::UnknownAccessKey(_) => {
            ("UnrecognizedClientException", "The security token included in the request is invalid.".into())
        }
        SigV4Error::Skewed { amz_date, .. } => {
            let earliest = sigv4::amz_date(now.saturating_sub(MAX_CLOCK_SKEW_SECS));
            let (latest, now) = (sigv4::amz_date(now + MAX_CLOCK_SKEW_SECS), sigv4::amz_date(now));
            // Both are YYYYMMDDTHHMMSSZ, so they compare as strings.
            let message = if amz_date.as_str() < earliest.as_str() {
                format!("Signature expired: {amz_date} is now earlier than {earliest} ({now} - 5 min.)")
            } else {
                format!("Signature not yet current: {amz_date} is still later than {latest} ({now} + 5 min.)")
            };
            (INVALID, message)
        }
        SigV4Error::ScopeDateMismatch { scope_date, amz_date } => {
            let day = amz_date.get(..8).unwrap_or(amz_date);
            let message = format!(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: \
                 '{scope_date}' != '{day}', from '{amz_date}'."
            );
            (INVALID, message)
        }
        SigV4Error::MalformedAuthorization(_) | SigV4Error::MissingSignedHeader(_) | SigV4Error::BadDate => (
            "IncompleteSignatureException",
            format!("The request signature does not conform to AWS standards: {error}"),
        ),
        _ => (INVALID, MISMATCH.to_owned()),
    }
}

/// `POST /model/{modelId}/converse` (`streaming` false) and
/// `/converse-stream` (true); `model_id` is the path segment, decoded.
pub(crate) async fn converse(
    app: App,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    model_id: String,
    streaming: bool,
) -> Response {
    if let Err(response) = authenticate(&app, &uri, &headers, &body) {
        return response;
    }
    let mut req = match admit_body(&app, Family::Bedrock, &headers, &body) {
        Ok(req) => req,
        Err(response) => return response,
    };
    app.stats().record_model(&model_id);
    app.stats().record_output_limit(max_output_limit(&req.json));
    if !req.json.get("messages").is_some_and(Value::is_array) {
        return invalid_request(
            Family::Bedrock,
            "1 validation error detected: Value null at 'messages' failed to satisfy constraint: \
             Member must not be null",
        );
    }
    if req.json.get("inferenceConfig").and_then(|c| c.get("maxTokens")).is_some_and(|m| m.as_u64().unwrap_or(0) < 1) {
        return invalid_request(
            Family::Bedrock,
            "1 validation error detected: Value at 'inferenceConfig.maxTokens' failed to satisfy constraint: \
             Member must have value greater than or equal to 1",
        );
    }
    req.prompt = converse_prompt(&req.json);
    if let Some(response) = req.before_answer().await {
        return response;
    }
    let reply = req.reply(&model_id);
    let cached = req.knobs.bedrock_cache || has_cache_point(&req.json);
    // Capped: the answer stopped at maxTokens before its natural length.
    let capped =
        req.knobs.output_tokens.is_none() && max_output_limit(&req.json).is_some_and(|m| m < DEFAULT_OUTPUT_TOKENS);
    let stop_reason = if capped { "max_tokens" } else { "end_turn" };
    let metrics = json!({"latencyMs": req.knobs.latency_ms});
    let usage = (!req.no_usage()).then(|| usage_json(&reply.usage, cached));

    if !streaming {
        let mut answer = json!({
            "output": {"message": {"role": "assistant", "content": [{"text": reply.text}]}},
            "stopReason": stop_reason,
        });
        if let Some(usage) = usage {
            answer["usage"] = usage;
        }
        answer["metrics"] = metrics;
        return req.json_answer(&answer);
    }

    let mut script = Script::default();
    script.head.push(json_event("messageStart", &json!({"role": "assistant"})));
    for piece in split_deltas(&reply.text, req.knobs.chunks) {
        script.deltas.push(json_event("contentBlockDelta", &json!({"contentBlockIndex": 0, "delta": {"text": piece}})));
    }
    script.tail.push(json_event("contentBlockStop", &json!({"contentBlockIndex": 0})));
    script.tail.push(json_event("messageStop", &json!({"stopReason": stop_reason})));
    let mut metadata = json!({});
    if let Some(usage) = usage {
        metadata["usage"] = usage;
    }
    metadata["metrics"] = metrics;
    script.tail.push(json_event("metadata", &metadata));

    let mut knobs = req.knobs.clone();
    if knobs.chunk_delay_ms == 0 {
        knobs.chunk_delay_ms = CHUNK_DELAY_MS;
    }
    // An HTML page before the first message (not an SSE `data:` line).
    let garbage = knobs.has(Fault::Garbage);
    if garbage {
        knobs.fault = None;
    }
    let exception_type = knobs.exception_type;
    let mut plan = script.plan(&knobs, |inserted| match inserted {
        Inserted::Error => exception(
            exception_type,
            "The system encountered an unexpected error during processing. Try your request again. \
             (mock stream_error)",
        ),
        Inserted::Malformed => event("contentBlockDelta", b"{\"contentBlockIndex\":0,\"delta\":{\"text\":"),
    });
    if knobs.has(Fault::CorruptFrame) {
        if let Some(second) = plan.events.get_mut(1) {
            *second = corrupt_payload(second);
        }
    }
    if garbage {
        // (The fault was cleared above, so nothing stalls or breaks.)
        plan.events.insert(0, Bytes::from_static(GARBAGE.as_bytes()));
    }
    let (body_chunks, at) = chunks_around(&plan.events, plan.stall_at.or(plan.broken_at));
    let (stall_at, broken_at) = (plan.stall_at.and(at), plan.broken_at.and(at));
    let body = paced_body(body_chunks, Duration::from_millis(knobs.chunk_delay_ms), stall_at, broken_at);
    let mut response = ([(header::CONTENT_TYPE, HeaderValue::from_static(EVENT_STREAM))], body).into_response();
    req.add_request_id(&mut response);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_split_some_messages_and_keep_every_byte() {
        let messages: Vec<Bytes> = (0..7u8).map(|i| Bytes::from(vec![i; 10 + usize::from(i)])).collect();
        let all: Vec<u8> = messages.iter().flat_map(|m| m.iter().copied()).collect();
        let out = chunks(&messages);
        assert_eq!(out.iter().flat_map(|c| c.iter().copied()).collect::<Vec<u8>>(), all);
        assert_eq!(out.len(), messages.len(), "each carried half rides with the next message");
        // The second chunk is the first half of the second message.
        assert_eq!(out[1], messages[1].slice(..5));
        let (around, at) = chunks_around(&messages, Some(3));
        assert_eq!(at, Some(3));
        assert_eq!(around.iter().map(Bytes::len).sum::<usize>(), all.len());
    }

    #[test]
    fn cache_points_anywhere_count() {
        assert!(!has_cache_point(&json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}]})));
        assert!(has_cache_point(&json!({"system": [{"text": "s"}, {"cachePoint": {"type": "default"}}]})));
        assert!(has_cache_point(
            &json!({"messages": [{"role": "user", "content": [{"cachePoint": {"type": "default"}}]}]})
        ));
        assert!(has_cache_point(&json!({"toolConfig": {"tools": [{"cachePoint": {"type": "default"}}]}})));
    }

    #[test]
    fn prompt_counts_system_and_message_text_only() {
        let body = json!({
            "system": [{"text": "abcd"}, {"cachePoint": {"type": "default"}}],
            "messages": [
                {"role": "user", "content": [{"text": "efgh"}, {"image": {"format": "png", "source": {"bytes": "AAAA"}}}]},
                {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "f", "input": {"q": "zz"}}}]},
                {"role": "user", "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "ijkl"}]}}]},
            ],
            "toolConfig": {"tools": [{"toolSpec": {"name": "f", "description": "never counted", "inputSchema": {"json": {}}}}]},
            "additionalModelRequestFields": {"text": "not counted either"},
        });
        assert_eq!(converse_prompt(&body).bytes, 12);
    }
}
