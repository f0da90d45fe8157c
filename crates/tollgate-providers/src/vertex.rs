//! Google Vertex AI: Gemini models (`publishers/google`, the
//! `generateContent` wire format) and Anthropic's Claude models
//! (`publishers/anthropic`, the Messages body with `anthropic_version` in it
//! and the model in the URL, `rawPredict` / `streamRawPredict`).
//!
//! The target's `base_url` is the regional (or global) endpoint with the
//! project and location: `https://LOCATION-aiplatform.googleapis.com/v1/projects/P/locations/L`.
//! Requests carry no credential here: the gateway adds the service
//! account's access token (`Authorization: Bearer …`).

use bytes::Bytes;
use serde_json::Value;

use crate::openai::{base, json_content_type, path_segment};
use crate::{anthropic, gemini, AdapterError, PreparedRequest, RequestInfo, Target};

/// The Messages API version Vertex takes in the body.
pub const ANTHROPIC_VERSION: &str = "vertex-2023-10-16";

/// Claude models are Anthropic's publisher; everything else is Google's.
pub fn is_claude(model: &str) -> bool {
    model.starts_with("claude")
}

fn model_url(target: &Target<'_>, publisher: &str, method: &str) -> String {
    // `@` (Claude's version separator on Vertex) is a legal path character
    // and is sent as it is, as Google's own clients send it.
    let model = path_segment(target.model).replace("%40", "@");
    format!("{}/publishers/{publisher}/models/{model}:{method}", base(target))
}

/// A Gemini body (already in `generateContent` form) to Vertex.
pub(crate) fn gemini_request(target: &Target<'_>, body: Bytes, stream: bool) -> PreparedRequest {
    let url = if stream {
        format!("{}?alt=sse", model_url(target, "google", "streamGenerateContent"))
    } else {
        model_url(target, "google", "generateContent")
    };
    PreparedRequest { url, headers: vec![json_content_type()], body, stream }
}

/// OpenAI chat → Gemini on Vertex.
pub(crate) fn prepare_gemini_from_chat(
    target: &Target<'_>,
    body: &[u8],
    info: &RequestInfo,
) -> Result<PreparedRequest, AdapterError> {
    let ai_studio = gemini::prepare_from_chat(&Target { api_key: None, ..*target }, body, info)?;
    Ok(gemini_request(target, ai_studio.body, info.stream))
}

/// A Messages body (as Anthropic's API takes it) → Vertex's rawPredict body:
/// no `model` (it is in the URL), `anthropic_version` instead.
fn to_raw_predict(target: &Target<'_>, messages: PreparedRequest) -> Result<PreparedRequest, AdapterError> {
    let mut v: serde_json::Map<String, Value> = serde_json::from_slice(&messages.body)
        .map_err(|e| AdapterError::Unsupported(format!("cannot rewrite the body for Vertex: {e}")))?;
    v.remove("model");
    v.insert("anthropic_version".into(), Value::from(ANTHROPIC_VERSION));
    let body = serde_json::to_vec(&v).map_err(|e| AdapterError::Unsupported(e.to_string()))?;
    let method = if messages.stream { "streamRawPredict" } else { "rawPredict" };
    // Only the content type: Anthropic's own auth and version headers are not Vertex's.
    Ok(PreparedRequest {
        url: model_url(target, "anthropic", method),
        headers: vec![json_content_type()],
        body: Bytes::from(body),
        stream: messages.stream,
    })
}

/// Anthropic Messages → Claude on Vertex.
pub(crate) fn prepare_claude_native(
    target: &Target<'_>,
    body: &[u8],
    info: &RequestInfo,
) -> Result<PreparedRequest, AdapterError> {
    let native = anthropic::prepare_native(&Target { api_key: None, ..*target }, body, info)?;
    to_raw_predict(target, native)
}

/// OpenAI chat → Claude on Vertex.
pub(crate) fn prepare_claude_from_chat(
    target: &Target<'_>,
    body: &[u8],
    info: &RequestInfo,
) -> Result<PreparedRequest, AdapterError> {
    let messages = anthropic::prepare_from_chat(&Target { api_key: None, ..*target }, body, info)?;
    to_raw_predict(target, messages)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(model: &str) -> Target<'_> {
        Target {
            kind: crate::ProviderKind::Vertex,
            base_url: "https://us-east5-aiplatform.googleapis.com/v1/projects/p1/locations/us-east5",
            api_key: None,
            model,
            api_version: None,
        }
    }

    #[test]
    fn claude_goes_to_raw_predict_without_model_and_with_the_vertex_version() {
        let body = br#"{"model":"claude-x","max_tokens":10,"messages":[{"role":"user","content":"hi"}],"stream":true}"#;
        let info = RequestInfo { model: Some("claude-x".into()), stream: true, ..RequestInfo::default() };
        let p = prepare_claude_native(&target("claude-sonnet-4-5@20250929"), body, &info).unwrap();
        assert_eq!(
            p.url,
            "https://us-east5-aiplatform.googleapis.com/v1/projects/p1/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5@20250929:streamRawPredict"
        );
        let v: Value = serde_json::from_slice(&p.body).unwrap();
        assert!(v.get("model").is_none());
        assert_eq!(v["anthropic_version"], ANTHROPIC_VERSION);
        assert!(p.headers.iter().all(|(k, _)| k != "x-api-key" && k != "anthropic-version"));
    }

    #[test]
    fn gemini_goes_to_generate_content() {
        let body = br#"{"model":"g","messages":[{"role":"user","content":"hi"}]}"#;
        let info = RequestInfo { model: Some("g".into()), ..RequestInfo::default() };
        let p = prepare_gemini_from_chat(&target("gemini-2.5-flash"), body, &info).unwrap();
        assert!(p.url.ends_with("/publishers/google/models/gemini-2.5-flash:generateContent"), "{}", p.url);
        assert!(p.headers.iter().all(|(k, _)| k != "x-goog-api-key"));
        let v: Value = serde_json::from_slice(&p.body).unwrap();
        assert_eq!(v["contents"][0]["parts"][0]["text"], "hi");
    }
}
