//! The Bedrock Converse routes: SigV4 verification, Converse and
//! ConverseStream wire shapes, usage, and the event-stream faults.

// Test helpers outside #[test] fns may unwrap too.
#![allow(clippy::unwrap_used)]

use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::Router;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tollgate_mock::{
    router, usage_for, MockConfig, MockUsage, DEFAULT_AWS_ACCESS_KEY_ID, DEFAULT_AWS_SECRET_ACCESS_KEY,
};
use tollgate_providers::eventstream::{Decoder, EventStreamError, Message};
use tollgate_providers::sigv4::{self, Credentials};
use tower::ServiceExt;

const HOST: &str = "bedrock-runtime.us-east-1.amazonaws.com";
/// The model id as it travels in the path (`:` percent-encoded).
const MODEL_IN_PATH: &str = "us.anthropic.claude-3-5-haiku-20241022-v1%3A0";
const MODEL: &str = "us.anthropic.claude-3-5-haiku-20241022-v1:0";
const SYSTEM: &str = "You are terse.";
const USER: &str = "Summarise the quarterly report in two sentences please.";

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn path(operation: &str) -> String {
    format!("/model/{MODEL_IN_PATH}/{operation}")
}

fn converse_body(user: &str) -> Value {
    json!({
        "system": [{"text": SYSTEM}],
        "messages": [{"role": "user", "content": [{"text": user}]}],
        "inferenceConfig": {"maxTokens": 512, "temperature": 0.2, "topP": 0.9, "stopSequences": ["\n\nHuman:"]},
    })
}

/// How a test signs: which key, secret, region, service and clock.
struct Signer<'a> {
    key_id: &'a str,
    secret: &'a str,
    region: &'a str,
    service: &'a str,
    unix_secs: u64,
}

impl Default for Signer<'_> {
    fn default() -> Self {
        Self {
            key_id: DEFAULT_AWS_ACCESS_KEY_ID,
            secret: DEFAULT_AWS_SECRET_ACCESS_KEY,
            region: "us-east-1",
            service: "bedrock",
            unix_secs: now(),
        }
    }
}

impl Signer<'_> {
    /// The request headers (content type, host and the signature's) for `body` sent to `path`.
    fn headers(&self, path: &str, body: &[u8]) -> HeaderMap {
        let base = vec![
            (HeaderName::from_static("content-type"), HeaderValue::from_static("application/json")),
            (HeaderName::from_static("host"), HeaderValue::from_static(HOST)),
        ];
        let creds = Credentials { access_key_id: self.key_id, secret_access_key: self.secret, session_token: None };
        let url = format!("https://{HOST}{path}");
        let added = sigv4::sign("POST", &url, &base, body, &creds, self.region, self.service, self.unix_secs).unwrap();
        let mut headers = HeaderMap::new();
        for (name, value) in base.into_iter().chain(added) {
            headers.insert(name, value);
        }
        headers
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    /// The body's chunks as the mock wrote them.
    chunks: Vec<Bytes>,
}

impl Answer {
    fn bytes(&self) -> Vec<u8> {
        self.chunks.concat()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes())
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.bytes())))
    }

    fn error_type(&self) -> &str {
        let value = self.headers["x-amzn-errortype"].to_str().unwrap();
        value.split(':').next().unwrap()
    }

    /// Decodes the chunks one by one: the messages, the first error, and
    /// whether some chunk ended mid-message (a push that completed nothing
    /// though bytes were left over).
    fn decode(&self) -> (Vec<Message>, Option<EventStreamError>, bool) {
        let mut decoder = Decoder::new();
        let mut messages = Vec::new();
        let mut split = false;
        for chunk in &self.chunks {
            let before = messages.len();
            if let Err(e) = decoder.push(chunk, &mut messages) {
                return (messages, Some(e), split);
            }
            split |= messages.len() == before || !decoder.is_idle();
        }
        assert!(decoder.is_idle(), "the stream ended mid-message");
        (messages, None, split)
    }
}

async fn send_raw(app: &Router, path: &str, headers: HeaderMap, body: Vec<u8>) -> Answer {
    let mut request = Request::builder().method("POST").uri(path);
    *request.headers_mut().unwrap() = headers;
    let response = app.clone().oneshot(request.body(Body::from(body)).unwrap()).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let mut body = response.into_body();
    let mut chunks = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            chunks.push(data);
        }
    }
    Answer { status, headers, chunks }
}

/// `body` signed with the mock's credential and sent to `path`.
async fn send_signed(app: &Router, path: &str, body: &Value) -> Answer {
    let bytes = serde_json::to_vec(body).unwrap();
    send_raw(app, path, Signer::default().headers(path, &bytes), bytes).await
}

async fn stats(app: &Router) -> Value {
    let request = Request::get("/mock/stats").body(Body::empty()).unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap()
}

fn mock() -> Router {
    router(MockConfig::default())
}

/// The mock's usage for a Converse request whose text is `SYSTEM` and `user`.
fn usage_of(user: &str, max_tokens: Option<u64>) -> MockUsage {
    usage_for((SYSTEM.len() + user.len()) as u64, MODEL, max_tokens, None)
}

fn payload(message: &Message) -> Value {
    serde_json::from_slice(&message.payload).unwrap()
}

// ---------------------------------------------------------------- Converse

#[tokio::test]
async fn signed_converse_answers_with_the_documented_usage() {
    let app = mock();
    let a = send_signed(&app, &path("converse"), &converse_body(USER)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", String::from_utf8_lossy(&a.bytes()));
    assert_eq!(a.headers["content-type"], "application/json");
    assert!(a.headers.contains_key("x-amzn-requestid"));
    let j = a.json();
    let message = &j["output"]["message"];
    assert_eq!(message["role"], "assistant");
    let text = message["content"][0]["text"].as_str().unwrap();
    assert!(text.starts_with("mock reply "), "{text}");
    assert_eq!(j["stopReason"], "end_turn");
    assert_eq!(j["metrics"], json!({"latencyMs": 0}));

    let u = usage_of(USER, Some(512));
    let p = 8 + (SYSTEM.len() + USER.len()) as u64 / 4;
    assert_eq!(u.prompt_tokens, p);
    assert_eq!(j["usage"], json!({"inputTokens": p, "outputTokens": 24, "totalTokens": p + 24}));
    assert_eq!(text.split(' ').count(), 24);

    let s = stats(&app).await;
    assert_eq!(s["paths"][path("converse")], 1, "the path as received");
    assert_eq!(s["models"][MODEL], 1, "the model id decoded");
    assert_eq!(s["last_model"], MODEL);
    assert_eq!(s["last_auth"], "present");
    assert_eq!(s["last_output_limit"], 512);
    assert_eq!(s["last_aws_region"], "us-east-1");
    assert_eq!((s["refused"].clone(), s["last_refusal"].clone()), (json!(0), Value::Null));
}

#[tokio::test]
async fn any_region_verifies_and_is_remembered() {
    let app = mock();
    let bytes = serde_json::to_vec(&converse_body(USER)).unwrap();
    let signer = Signer { region: "eu-central-1", ..Signer::default() };
    let a = send_raw(&app, &path("converse"), signer.headers(&path("converse"), &bytes), bytes).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(stats(&app).await["last_aws_region"], "eu-central-1");
}

#[tokio::test]
async fn bad_signatures_are_refused_with_bedrock_403s() {
    let app = mock();
    let target = path("converse");
    let body = serde_json::to_vec(&converse_body(USER)).unwrap();

    let mut unsigned = HeaderMap::new();
    unsigned.insert("content-type", HeaderValue::from_static("application/json"));
    unsigned.insert("host", HeaderValue::from_static(HOST));
    let a = send_raw(&app, &target, unsigned, body.clone()).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(a.error_type(), "MissingAuthenticationTokenException");
    assert_eq!(a.json(), json!({"message": "Missing Authentication Token"}));
    assert_eq!(stats(&app).await["last_auth"], "absent");

    let wrong_secret = Signer { secret: "not-the-mock-secret", ..Signer::default() };
    let a = send_raw(&app, &target, wrong_secret.headers(&target, &body), body.clone()).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(a.error_type(), "InvalidSignatureException");
    assert!(a.json()["message"].as_str().unwrap().starts_with("The request signature we calculated"));

    // One byte of the body changed after signing.
    let headers = Signer::default().headers(&target, &body);
    let mut changed = body.clone();
    let at = changed.windows(9).position(|w| w == b"quarterly").unwrap();
    changed[at] = b'Q';
    let a = send_raw(&app, &target, headers, changed).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(a.error_type(), "InvalidSignatureException");

    let unknown_key = Signer { key_id: "AKIDSOMEONEELSE", ..Signer::default() };
    let a = send_raw(&app, &target, unknown_key.headers(&target, &body), body.clone()).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(a.error_type(), "UnrecognizedClientException");

    let other_service = Signer { service: "s3", ..Signer::default() };
    let a = send_raw(&app, &target, other_service.headers(&target, &body), body.clone()).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(a.error_type(), "InvalidSignatureException");

    let stale = Signer { unix_secs: now() - 3600, ..Signer::default() };
    let a = send_raw(&app, &target, stale.headers(&target, &body), body.clone()).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(a.error_type(), "InvalidSignatureException");
    assert!(a.json()["message"].as_str().unwrap().starts_with("Signature expired: "), "{}", a.json());

    // Signed for another path (the model id decoded) than the one sent.
    let other_path = Signer::default().headers(&format!("/model/{MODEL}/converse"), &body);
    let a = send_raw(&app, &target, other_path, body.clone()).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);

    // Within the 300 s of allowed skew, a clock ahead is fine; beyond it, not.
    let ahead = Signer { unix_secs: now() + 200, ..Signer::default() };
    assert_eq!(send_raw(&app, &target, ahead.headers(&target, &body), body.clone()).await.status, StatusCode::OK);
    let future = Signer { unix_secs: now() + 900, ..Signer::default() };
    let a = send_raw(&app, &target, future.headers(&target, &body), body.clone()).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(a.json()["message"].as_str().unwrap().starts_with("Signature not yet current: "), "{}", a.json());

    let s = stats(&app).await;
    assert_eq!(s["total"], 9, "refused requests still count");
    assert_eq!(s["refused"], 8);
    assert_eq!(s["last_refusal"], "InvalidSignatureException");
    assert_eq!(s["paths"][&target], 9);

    // A good request afterwards clears `last_refusal` but not the count.
    assert_eq!(send_signed(&app, &target, &converse_body(USER)).await.status, StatusCode::OK);
    let s = stats(&app).await;
    assert_eq!((s["refused"].clone(), s["last_refusal"].clone()), (json!(8), Value::Null));
}

#[tokio::test]
async fn cache_points_report_cache_reads_and_writes_outside_input_tokens() {
    let app = mock();
    let mut body = converse_body(USER);
    body["system"] = json!([{"text": SYSTEM}, {"cachePoint": {"type": "default"}}]);
    let j = send_signed(&app, &path("converse"), &body).await.json();
    let u = usage_of(USER, Some(512));
    let p = u.prompt_tokens;
    let (read, write) = (p / 4, p / 8);
    assert_eq!(
        j["usage"],
        json!({
            "inputTokens": p - read - write,
            "outputTokens": 24,
            "totalTokens": p + 24,
            "cacheReadInputTokens": read,
            "cacheWriteInputTokens": write,
        })
    );

    // The knob does the same without a cachePoint (the directive's text counts).
    let knob_text = format!("{USER} [mock bedrock_cache]");
    let j = send_signed(&app, &path("converse"), &converse_body(&knob_text)).await.json();
    let p = usage_of(&knob_text, None).prompt_tokens;
    assert_eq!(j["usage"]["cacheReadInputTokens"], p / 4);
    assert_eq!(j["usage"]["cacheWriteInputTokens"], p / 8);
    assert_eq!(j["usage"]["inputTokens"], p - p / 4 - p / 8);
}

#[tokio::test]
async fn max_tokens_caps_the_output_and_says_so() {
    let app = mock();
    let mut body = converse_body(USER);
    body["inferenceConfig"]["maxTokens"] = json!(10);
    let j = send_signed(&app, &path("converse"), &body).await.json();
    assert_eq!(j["stopReason"], "max_tokens");
    assert_eq!(j["usage"]["outputTokens"], 10);
    assert_eq!(j["output"]["message"]["content"][0]["text"].as_str().unwrap().split(' ').count(), 10);

    body["inferenceConfig"]["maxTokens"] = json!(0);
    let a = send_signed(&app, &path("converse"), &body).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.error_type(), "ValidationException");
}

#[tokio::test]
async fn tool_and_image_blocks_are_accepted_and_not_counted() {
    let app = mock();
    let body = json!({
        "messages": [
            {"role": "user", "content": [{"text": "abcd"}, {"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}}]},
            {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "lookup", "input": {"q": "toll"}}}]},
            {"role": "user", "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "efgh"}], "status": "success"}}]},
        ],
        "toolConfig": {"tools": [{"toolSpec": {"name": "lookup", "description": "Looks things up.",
            "inputSchema": {"json": {"type": "object", "properties": {"q": {"type": "string"}}}}}}]},
        "additionalModelRequestFields": {"top_k": 5},
    });
    let j = send_signed(&app, &path("converse"), &body).await.json();
    assert_eq!(j["usage"]["inputTokens"], 8 + 8 / 4);
}

#[tokio::test]
async fn bedrock_errors_are_bedrock_shaped() {
    let app = mock();
    let a = send_signed(&app, &path("converse"), &json!({"system": [{"text": "no messages"}]})).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.error_type(), "ValidationException");
    assert!(a.json()["message"].as_str().unwrap().contains("messages"));

    let a = send_signed(&app, &path("converse"), &converse_body("[mock fault=429]")).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(a.error_type(), "ThrottlingException");
    assert!(a.json()["message"].is_string());

    let a = send_signed(&app, &path("converse-stream"), &converse_body("[mock fault=503]")).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.error_type(), "ServiceUnavailableException");

    let a = send_signed(&app, &path("converse"), &converse_body("[mock frobnicate]")).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.json()["message"].as_str().unwrap().contains("frobnicate"));
}

// ---------------------------------------------------------------- ConverseStream

#[tokio::test]
async fn converse_stream_sends_every_event_in_order_with_the_same_usage() {
    let app = mock();
    let plain = send_signed(&app, &path("converse"), &converse_body(USER)).await.json();
    let a = send_signed(&app, &path("converse-stream"), &converse_body(USER)).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.headers["content-type"], "application/vnd.amazon.eventstream");
    assert!(a.headers.contains_key("x-amzn-requestid"));
    assert!(a.chunks.len() > 4, "sent in several chunks: {}", a.chunks.len());

    let (messages, error, split) = a.decode();
    assert_eq!(error, None);
    assert!(split, "some chunk ends mid-message");
    let kinds: Vec<&str> = messages.iter().map(|m| m.header_str(":event-type").unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "messageStart",
            "contentBlockDelta",
            "contentBlockDelta",
            "contentBlockDelta",
            "contentBlockDelta",
            "contentBlockStop",
            "messageStop",
            "metadata",
        ]
    );
    for m in &messages {
        assert_eq!(m.header_str(":content-type"), Some("application/json"));
        assert_eq!(m.header_str(":message-type"), Some("event"));
    }
    assert_eq!(payload(&messages[0]), json!({"role": "assistant"}));
    let mut text = String::new();
    for m in &messages[1..5] {
        let p = payload(m);
        assert_eq!(p["contentBlockIndex"], 0);
        text.push_str(p["delta"]["text"].as_str().unwrap());
    }
    assert_eq!(text, plain["output"]["message"]["content"][0]["text"].as_str().unwrap());
    assert_eq!(payload(&messages[5]), json!({"contentBlockIndex": 0}));
    assert_eq!(payload(&messages[6]), json!({"stopReason": "end_turn"}));
    let metadata = payload(&messages[7]);
    assert_eq!(metadata["usage"], plain["usage"]);
    assert_eq!(metadata["metrics"], json!({"latencyMs": 0}));

    let s = stats(&app).await;
    assert_eq!(s["paths"][path("converse-stream")], 1);
    assert_eq!(s["models"][MODEL], 2);
}

#[tokio::test]
async fn corrupt_frame_breaks_the_second_message_crc() {
    let app = mock();
    let a = send_signed(&app, &path("converse-stream"), &converse_body(&format!("{USER} [mock corrupt_frame]"))).await;
    assert_eq!(a.status, StatusCode::OK);
    let (messages, error, _) = a.decode();
    assert!(matches!(error, Some(EventStreamError::MessageCrc { .. })), "{error:?}");
    assert_eq!(messages.len(), 1, "only messageStart decodes");
    assert_eq!(messages[0].header_str(":event-type"), Some("messageStart"));
}

#[tokio::test]
async fn stream_error_sends_an_exception_message_and_ends() {
    let app = mock();
    let a = send_signed(&app, &path("converse-stream"), &converse_body("[mock fault=stream_error]")).await;
    let (messages, error, _) = a.decode();
    assert_eq!(error, None);
    let last = messages.last().unwrap();
    assert_eq!(last.header_str(":message-type"), Some("exception"));
    assert_eq!(last.header_str(":exception-type"), Some("internalServerException"));
    assert_eq!(last.header_str(":content-type"), Some("application/json"));
    assert!(payload(last)["message"].is_string());
    // messageStart and half the deltas came first; no stop, no metadata.
    assert_eq!(messages.len(), 1 + 2 + 1);

    let body = converse_body("[mock fault=stream_error exception_type=modelStreamErrorException]");
    let (messages, _, _) = send_signed(&app, &path("converse-stream"), &body).await.decode();
    assert_eq!(messages.last().unwrap().header_str(":exception-type"), Some("modelStreamErrorException"));
}

#[tokio::test]
async fn stream_faults_cut_or_bend_the_event_stream() {
    let app = mock();
    let kinds = |messages: &[Message]| -> Vec<String> {
        messages.iter().map(|m| m.header_str(":event-type").unwrap_or("?").to_owned()).collect()
    };

    let (messages, error, _) =
        send_signed(&app, &path("converse-stream"), &converse_body("[mock fault=truncate]")).await.decode();
    assert_eq!(error, None);
    assert_eq!(kinds(&messages), ["messageStart", "contentBlockDelta", "contentBlockDelta"]);

    let (messages, _, _) =
        send_signed(&app, &path("converse-stream"), &converse_body("[mock fault=no_usage]")).await.decode();
    let metadata = payload(messages.last().unwrap());
    assert!(metadata.get("usage").is_none() && metadata["metrics"].is_object(), "{metadata}");

    let (messages, _, _) =
        send_signed(&app, &path("converse-stream"), &converse_body("[mock fault=malformed]")).await.decode();
    assert_eq!(messages.len(), 9, "one extra, well-framed message");
    assert!(serde_json::from_slice::<Value>(&messages[3].payload).is_err());

    let a = send_signed(&app, &path("converse-stream"), &converse_body("[mock fault=garbage]")).await;
    assert!(a.bytes().starts_with(b"<html>"));
    assert!(a.decode().1.is_some(), "an HTML page is not an event stream");

    let a = send_signed(&app, &path("converse-stream"), &converse_body("[mock chunks=1 chunk_delay_ms=0]")).await;
    let (messages, error, _) = a.decode();
    assert_eq!((error, messages.len()), (None, 5));
}
