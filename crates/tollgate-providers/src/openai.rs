//! OpenAI wire format (chat, embeddings, responses), shared by the `openai`,
//! `openai_compatible` and `azure_openai` kinds: passthrough with the model
//! renamed, usage extraction, and the OpenAI-shaped answers that the
//! Anthropic and Gemini translations build.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::inspect::{not_json, object_body};
use crate::sse::{data_event, Event};
use crate::{
    AdapterError, ApiFormat, Meter, Mode, PreparedRequest, ProviderKind, RequestInfo, Target, TranslatedBody, Usage,
};

// ---------------------------------------------------------------- requests

pub(crate) fn prepare(
    format: ApiFormat,
    target: &Target<'_>,
    body: &[u8],
    info: &RequestInfo,
) -> Result<PreparedRequest, AdapterError> {
    let endpoint = match format {
        ApiFormat::OpenAiEmbeddings => "embeddings",
        ApiFormat::OpenAiResponses => "responses",
        ApiFormat::OpenAiChat | ApiFormat::AnthropicMessages | ApiFormat::GeminiNative => "chat/completions",
        ApiFormat::Media(m) => m.path(),
    };
    // A multipart upload is streamed by the gateway, which rewrites its
    // model field and sets its content type; only the URL and auth are made here.
    let upload = format.media().is_some_and(|m| m.multipart());
    // Without it, an OpenAI stream carries no usage at all.
    let inject_usage = format == ApiFormat::OpenAiChat && info.stream && !info.client_wants_stream_usage;
    let rename = info.model.as_deref() != Some(target.model) && !upload;
    let body = if upload {
        Bytes::new()
    } else if rename || inject_usage {
        rewrite_top(body, |top| {
            if rename {
                top.insert("model".into(), raw_json(&Value::from(target.model))?);
            }
            if inject_usage {
                let mut opts = match top.get("stream_options") {
                    Some(r) => match serde_json::from_str::<Value>(r.get()) {
                        Ok(Value::Object(m)) => m,
                        _ => serde_json::Map::new(),
                    },
                    None => serde_json::Map::new(),
                };
                opts.insert("include_usage".into(), Value::Bool(true));
                top.insert("stream_options".into(), raw_json(&Value::Object(opts))?);
            }
            Ok(())
        })?
    } else {
        Bytes::copy_from_slice(body)
    };

    let base = base(target);
    let url = match (target.kind, target.api_version) {
        (ProviderKind::AzureOpenAi, Some(v)) if format == ApiFormat::OpenAiResponses => {
            format!("{base}/openai/responses?api-version={v}")
        }
        (ProviderKind::AzureOpenAi, Some(v)) => {
            format!("{base}/openai/deployments/{}/{endpoint}?api-version={v}", path_segment(target.model))
        }
        (ProviderKind::AzureOpenAi, None) => format!("{base}/openai/v1/{endpoint}"),
        _ => format!("{base}/{endpoint}"),
    };
    let mut headers = if upload { Vec::with_capacity(1) } else { vec![json_content_type()] };
    if let Some(key) = target.api_key {
        headers.push(if target.kind == ProviderKind::AzureOpenAi {
            secret_header("api-key", key)?
        } else {
            secret_header("authorization", &format!("Bearer {key}"))?
        });
    }
    Ok(PreparedRequest { url, headers, body, stream: info.stream })
}

pub(crate) fn base<'a>(target: &Target<'a>) -> &'a str {
    target.base_url.trim_end_matches('/')
}

/// One URL path segment from a model or deployment name: every byte but
/// `A-Z a-z 0-9 - . _ ~` percent-encoded, so a name can never add a path
/// segment, a query or a fragment to the provider URL.
pub fn path_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    // "." and ".." would still be resolved as relative segments.
    match out.as_str() {
        "." => "%2E".into(),
        ".." => "%2E%2E".into(),
        _ => out,
    }
}

pub(crate) fn json_content_type() -> (http::HeaderName, http::HeaderValue) {
    (http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"))
}

pub(crate) fn secret_header(
    name: &'static str,
    value: &str,
) -> Result<(http::HeaderName, http::HeaderValue), AdapterError> {
    let mut v = http::HeaderValue::from_str(value)
        .map_err(|_| AdapterError::Unsupported(format!("the provider key cannot be sent as the `{name}` header")))?;
    v.set_sensitive(true);
    Ok((http::HeaderName::from_static(name), v))
}

pub(crate) fn raw_json(v: &Value) -> Result<Box<RawValue>, AdapterError> {
    serde_json::value::to_raw_value(v).map_err(|e| AdapterError::Unsupported(e.to_string()))
}

/// Change top-level fields only; every other value keeps its exact bytes.
pub(crate) fn rewrite_top(
    body: &[u8],
    edit: impl FnOnce(&mut BTreeMap<String, Box<RawValue>>) -> Result<(), AdapterError>,
) -> Result<Bytes, AdapterError> {
    let text = object_body(body)?;
    let mut top: BTreeMap<String, Box<RawValue>> = serde_json::from_str(text).map_err(|e| not_json(&e))?;
    edit(&mut top)?;
    serde_json::to_vec(&top).map(Bytes::from).map_err(|e| AdapterError::Unsupported(e.to_string()))
}

// ------------------------------------------------------------------- usage

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ChatUsage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    prompt_tokens_details: Option<PromptDetails>,
    completion_tokens_details: Option<CompletionDetails>,
    /// What the host charged, in USD (OpenRouter and hosts that copy it).
    cost: Option<Box<serde_json::value::RawValue>>,
}

#[derive(Debug, Default, Deserialize)]
struct PromptDetails {
    cached_tokens: Option<u64>,
    audio_tokens: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
struct CompletionDetails {
    reasoning_tokens: Option<u64>,
    audio_tokens: Option<u64>,
}

impl ChatUsage {
    /// The cost the host reported, read exactly from the JSON number's text.
    pub(crate) fn reported_cost(&self) -> Option<tollgate_units::Money> {
        self.cost.as_ref().and_then(|c| tollgate_units::Money::from_json_number(c.get()))
    }

    /// Cached and audio tokens are inside `prompt_tokens`; reasoning and
    /// audio inside `completion_tokens`: take them out so buckets are disjoint.
    pub(crate) fn to_usage(&self) -> Usage {
        let prompt = self.prompt_tokens.unwrap_or(0);
        let completion = self.completion_tokens.unwrap_or(0);
        let pd = self.prompt_tokens_details.as_ref();
        let cd = self.completion_tokens_details.as_ref();
        let cached = pd.and_then(|d| d.cached_tokens).unwrap_or(0).min(prompt);
        let audio_in = pd.and_then(|d| d.audio_tokens).unwrap_or(0).min(prompt - cached);
        let reasoning = cd.and_then(|d| d.reasoning_tokens).unwrap_or(0).min(completion);
        let audio_out = cd.and_then(|d| d.audio_tokens).unwrap_or(0).min(completion - reasoning);
        Usage {
            input: prompt - cached - audio_in,
            input_audio: audio_in,
            cache_read: cached,
            output: completion - reasoning - audio_out,
            output_audio: audio_out,
            reasoning,
            ..Usage::default()
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ResponsesUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    input_tokens_details: Option<PromptDetails>,
    output_tokens_details: Option<CompletionDetails>,
}

impl ResponsesUsage {
    pub(crate) fn to_usage(&self) -> Usage {
        let input = self.input_tokens.unwrap_or(0);
        let output = self.output_tokens.unwrap_or(0);
        let cached = self.input_tokens_details.as_ref().and_then(|d| d.cached_tokens).unwrap_or(0).min(input);
        let reasoning = self.output_tokens_details.as_ref().and_then(|d| d.reasoning_tokens).unwrap_or(0).min(output);
        Usage { input: input - cached, cache_read: cached, output: output - reasoning, reasoning, ..Usage::default() }
    }
}

/// One item of a Responses API answer's `output`, by type only.
#[derive(Debug, Deserialize)]
pub(crate) struct OutputItem {
    #[serde(rename = "type", default)]
    kind: String,
}

/// Web searches the Responses API ran: its `web_search_call` output items.
pub(crate) fn web_searches(output: &[OutputItem]) -> u64 {
    output.iter().filter(|i| i.kind == "web_search_call").count() as u64
}

/// `usage` as an OpenAI chat answer reports it, from disjoint buckets.
pub(crate) fn chat_usage_json(u: &Usage) -> Value {
    json!({
        "prompt_tokens": u.input_tokens(),
        "completion_tokens": u.output_tokens(),
        "total_tokens": u.total_tokens(),
        "prompt_tokens_details": { "cached_tokens": u.cache_read, "audio_tokens": u.input_audio },
        "completion_tokens_details": { "reasoning_tokens": u.reasoning, "audio_tokens": u.output_audio },
    })
}

// ------------------------------------------------------------ whole bodies

pub(crate) fn translate_body(mode: Mode, body: &[u8]) -> Result<TranslatedBody, AdapterError> {
    #[derive(Deserialize)]
    struct Head<U> {
        model: Option<String>,
        usage: Option<U>,
        service_tier: Option<String>,
    }
    let malformed = |e: serde_json::Error| AdapterError::MalformedUpstream(e.to_string());
    let (usage, model, service_tier, provider_cost) = match mode {
        Mode::OpenAiResponses => {
            #[derive(Deserialize)]
            struct ResponsesHead {
                model: Option<String>,
                usage: Option<ResponsesUsage>,
                service_tier: Option<String>,
                output: Option<Vec<OutputItem>>,
            }
            let h: ResponsesHead = serde_json::from_slice(body).map_err(malformed)?;
            let searches = web_searches(h.output.as_deref().unwrap_or_default());
            let usage = h.usage.map(|u| Usage { web_search_requests: searches, ..u.to_usage() });
            (usage, h.model, h.service_tier, None)
        }
        _ => {
            let h: Head<ChatUsage> = serde_json::from_slice(body).map_err(malformed)?;
            let cost = h.usage.as_ref().and_then(ChatUsage::reported_cost);
            (h.usage.map(|u| u.to_usage()), h.model, h.service_tier, cost)
        }
    };
    let output_text = if usage.is_none() { body_text(mode, body) } else { String::new() };
    Ok(TranslatedBody { body: Bytes::copy_from_slice(body), usage, model, service_tier, output_text, provider_cost })
}

/// Generated text, only needed when the provider reported no usage.
fn body_text(mode: Mode, body: &[u8]) -> String {
    let mut out = String::new();
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return out;
    };
    match mode {
        Mode::OpenAiResponses => {
            for item in v["output"].as_array().into_iter().flatten() {
                for c in item["content"].as_array().into_iter().flatten() {
                    if let Some(t) = c["text"].as_str() {
                        out.push_str(t);
                    }
                }
                if let Some(a) = item["arguments"].as_str() {
                    out.push_str(a);
                }
            }
        }
        Mode::OpenAiEmbeddings => {}
        _ => {
            for choice in v["choices"].as_array().into_iter().flatten() {
                let m = &choice["message"];
                if let Some(t) = m["content"].as_str() {
                    out.push_str(t);
                }
                for tc in m["tool_calls"].as_array().into_iter().flatten() {
                    if let Some(a) = tc["function"]["arguments"].as_str() {
                        out.push_str(a);
                    }
                }
            }
        }
    }
    out
}

// ----------------------------------------------------------------- streams

/// True when `"<key>"` appears with a value other than `null`: a cheap test
/// that spares parsing the many chunks that cannot carry the field.
pub(crate) fn has_non_null(data: &str, key: &str) -> bool {
    let mut rest = data;
    while let Some(i) = rest.find(key) {
        let after = rest[i + key.len()..].trim_start();
        if let Some(v) = after.strip_prefix(':') {
            if !v.trim_start().starts_with("null") {
                return true;
            }
        }
        rest = &rest[i + key.len()..];
    }
    false
}

/// An upstream error object inside a stream (`{"error":{…}}`).
fn is_error_event(ev: &Event) -> bool {
    if ev.name() == "error" {
        return true;
    }
    if !has_non_null(&ev.data, "\"error\"") {
        return false;
    }
    #[derive(Deserialize)]
    struct E {
        error: Option<IgnoredAny>,
    }
    matches!(serde_json::from_str::<E>(&ev.data), Ok(E { error: Some(_) }))
}

/// Relays OpenAI chat chunks byte for byte; reads usage from the one chunk
/// that carries it.
#[derive(Debug)]
pub(crate) struct ChatStream {
    hide_usage_chunk: bool,
    /// Chunks kept (not parsed) while no usage is known: parsed for their
    /// text only if the stream ends without usage.
    pending: Vec<String>,
}

impl ChatStream {
    pub(crate) fn new(hide_usage_chunk: bool) -> Self {
        ChatStream { hide_usage_chunk, pending: Vec::new() }
    }

    pub(crate) fn on_event(&mut self, ev: Event, m: &mut Meter, out: &mut Vec<Bytes>) -> Result<(), AdapterError> {
        if !ev.has_data {
            out.push(ev.raw);
            return Ok(());
        }
        if ev.data.trim() == "[DONE]" {
            m.completed = true;
            m.terminator = ev.raw.to_vec();
            return Ok(());
        }
        if is_error_event(&ev) {
            m.failed = true;
            out.push(ev.raw);
            return Ok(());
        }
        if m.model.is_none() {
            #[derive(Deserialize)]
            struct M {
                model: Option<String>,
                service_tier: Option<String>,
            }
            if let Ok(M { model: Some(model), service_tier }) = serde_json::from_str::<M>(&ev.data) {
                m.model = Some(model);
                m.service_tier = service_tier;
            }
        }
        if has_non_null(&ev.data, "\"usage\"") {
            #[derive(Deserialize)]
            struct U {
                usage: Option<ChatUsage>,
                choices: Option<Vec<IgnoredAny>>,
            }
            let u: U = serde_json::from_str(&ev.data)
                .map_err(|e| AdapterError::MalformedUpstream(format!("stream chunk: {e}")))?;
            if let Some(usage) = u.usage {
                m.provider_cost = usage.reported_cost().or(m.provider_cost);
                m.usage = Some(usage.to_usage());
                self.pending = Vec::new();
                if self.hide_usage_chunk && u.choices.is_none_or(|c| c.is_empty()) {
                    return Ok(());
                }
            }
        } else if m.usage.is_none() {
            self.pending.push(ev.data);
        }
        out.push(ev.raw);
        Ok(())
    }

    pub(crate) fn finish(&mut self, m: &mut Meter) {
        if m.usage.is_some() {
            return;
        }
        #[derive(Deserialize)]
        struct Chunk {
            choices: Option<Vec<Choice>>,
        }
        #[derive(Deserialize)]
        struct Choice {
            delta: Option<Delta>,
        }
        #[derive(Deserialize)]
        struct Delta {
            content: Option<String>,
            tool_calls: Option<Vec<ToolCallDelta>>,
        }
        #[derive(Deserialize)]
        struct ToolCallDelta {
            function: Option<FunctionDelta>,
        }
        #[derive(Deserialize)]
        struct FunctionDelta {
            arguments: Option<String>,
        }
        for data in self.pending.drain(..) {
            let Ok(c) = serde_json::from_str::<Chunk>(&data) else {
                continue;
            };
            for d in c.choices.into_iter().flatten().filter_map(|c| c.delta) {
                if let Some(t) = d.content {
                    m.output_text.push_str(&t);
                }
                for tc in d.tool_calls.into_iter().flatten() {
                    if let Some(a) = tc.function.and_then(|f| f.arguments) {
                        m.output_text.push_str(&a);
                    }
                }
            }
        }
    }
}

/// Relays Responses API events; `response.completed` (or
/// `response.incomplete`) carries the usage and is held back as terminator.
#[derive(Debug, Default)]
pub(crate) struct ResponsesStream {
    pending: Vec<String>,
}

impl ResponsesStream {
    pub(crate) fn on_event(&mut self, ev: Event, m: &mut Meter, out: &mut Vec<Bytes>) -> Result<(), AdapterError> {
        if !ev.has_data {
            out.push(ev.raw);
            return Ok(());
        }
        if ev.data.trim() == "[DONE]" {
            if m.completed {
                m.terminator.extend_from_slice(&ev.raw);
            } else {
                out.push(ev.raw);
            }
            return Ok(());
        }
        let kind = event_type(&ev);
        match kind.as_str() {
            "response.completed" | "response.incomplete" | "response.failed" => {
                #[derive(Deserialize)]
                struct Done {
                    response: Option<Resp>,
                }
                #[derive(Deserialize)]
                struct Resp {
                    model: Option<String>,
                    usage: Option<ResponsesUsage>,
                    service_tier: Option<String>,
                    output: Option<Vec<OutputItem>>,
                }
                let d: Done = serde_json::from_str(&ev.data)
                    .map_err(|e| AdapterError::MalformedUpstream(format!("{kind} event: {e}")))?;
                if let Some(r) = d.response {
                    if r.model.is_some() {
                        m.model = r.model;
                    }
                    if r.service_tier.is_some() {
                        m.service_tier = r.service_tier;
                    }
                    if let Some(u) = r.usage {
                        m.usage = Some(Usage {
                            web_search_requests: web_searches(r.output.as_deref().unwrap_or_default()),
                            ..u.to_usage()
                        });
                    }
                }
                if kind == "response.failed" {
                    m.failed = true;
                    out.push(ev.raw);
                } else {
                    m.completed = true;
                    m.terminator = ev.raw.to_vec();
                }
            }
            "error" => {
                m.failed = true;
                out.push(ev.raw);
            }
            "response.created" => {
                if m.model.is_none() {
                    if let Ok(v) = serde_json::from_str::<Value>(&ev.data) {
                        m.model = v["response"]["model"].as_str().map(str::to_owned);
                    }
                }
                out.push(ev.raw);
            }
            "response.output_text.delta" | "response.function_call_arguments.delta" => {
                if m.usage.is_none() {
                    self.pending.push(ev.data.clone());
                }
                out.push(ev.raw);
            }
            _ => out.push(ev.raw),
        }
        Ok(())
    }

    pub(crate) fn finish(&mut self, m: &mut Meter) {
        if m.usage.is_some() {
            return;
        }
        #[derive(Deserialize)]
        struct Delta {
            delta: Option<String>,
        }
        for data in self.pending.drain(..) {
            if let Ok(Delta { delta: Some(d) }) = serde_json::from_str::<Delta>(&data) {
                m.output_text.push_str(&d);
            }
        }
    }
}

/// The `event:` name, else the JSON `type` (read only when the name is absent).
fn event_type(ev: &Event) -> String {
    if let Some(name) = ev.event.as_deref().filter(|n| !n.is_empty()) {
        return name.to_owned();
    }
    #[derive(Deserialize)]
    struct T {
        #[serde(rename = "type")]
        kind: Option<String>,
    }
    serde_json::from_str::<T>(&ev.data).ok().and_then(|t| t.kind).unwrap_or_default()
}

pub(crate) fn anthropic_event_type(ev: &Event) -> String {
    event_type(ev)
}

// ------------------------------------------- OpenAI-shaped translated output

/// A tool call in an assistant answer (whole or streamed).
#[derive(Debug, Clone)]
pub(crate) struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// The fields every translated chat answer repeats.
#[derive(Debug, Clone)]
pub(crate) struct ChatHead {
    pub id: String,
    pub created: u64,
    pub model: String,
}

pub(crate) fn chat_completion(
    head: &ChatHead,
    text: Option<String>,
    tool_calls: &[ToolCall],
    finish_reason: &str,
    usage: Option<&Usage>,
) -> Bytes {
    let mut message = json!({ "role": "assistant", "content": text, "refusal": null });
    if !tool_calls.is_empty() {
        message["tool_calls"] = tool_calls
            .iter()
            .map(
                |t| json!({ "id": t.id, "type": "function", "function": { "name": t.name, "arguments": t.arguments } }),
            )
            .collect();
    }
    let mut v = json!({
        "id": head.id,
        "object": "chat.completion",
        "created": head.created,
        "model": head.model,
        "choices": [{ "index": 0, "message": message, "logprobs": null, "finish_reason": finish_reason }],
    });
    if let Some(u) = usage {
        v["usage"] = chat_usage_json(u);
    }
    Bytes::from(v.to_string())
}

pub(crate) fn chunk(head: &ChatHead, delta: Value, finish_reason: Option<&str>) -> Bytes {
    let v = json!({
        "id": head.id,
        "object": "chat.completion.chunk",
        "created": head.created,
        "model": head.model,
        "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason }],
    });
    data_event(v.to_string().as_bytes())
}

pub(crate) fn usage_chunk(head: &ChatHead, usage: &Usage) -> Bytes {
    let v = json!({
        "id": head.id,
        "object": "chat.completion.chunk",
        "created": head.created,
        "model": head.model,
        "choices": [],
        "usage": chat_usage_json(usage),
    });
    data_event(v.to_string().as_bytes())
}

/// The end of a chat stream translated from another format (Gemini,
/// Bedrock): once it completed, the usage chunk the client asked for (usage
/// can follow the finish reason, so it is sent only now), then `[DONE]`.
pub(crate) fn finish_translated(head: &ChatHead, include_usage: bool, m: &mut crate::Meter, out: &mut Vec<Bytes>) {
    if !m.completed || m.failed {
        return;
    }
    if include_usage {
        if let Some(u) = &m.usage {
            out.push(usage_chunk(head, u));
        }
    }
    m.terminator = DONE.to_vec();
}

/// An error inside a translated stream, in the shape OpenAI streams use.
pub(crate) fn error_chunk(message: &str, kind: &str) -> Bytes {
    let v = json!({ "error": { "message": message, "type": kind, "code": null, "param": null } });
    data_event(v.to_string().as_bytes())
}

pub(crate) const DONE: &[u8] = b"data: [DONE]\n\n";
