//! Amazon Bedrock's Converse and ConverseStream APIs: one wire format for
//! every Bedrock model family. OpenAI chat and Anthropic Messages requests
//! are translated in; answers are translated back to the client's format;
//! streams arrive in AWS's binary event-stream framing ([`crate::eventstream`])
//! and leave as the client's SSE events.
//!
//! Usage: Converse's `inputTokens` counts the input *outside* the prompt
//! cache; `cacheReadInputTokens` and `cacheWriteInputTokens` are apart (as
//! Anthropic's are), `outputTokens` includes any reasoning.
//!
//! Requests are signed by the gateway (AWS Signature V4, [`crate::sigv4`]),
//! which holds the credentials and the clock: nothing here signs.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::anthropic::{content_text, data_url, image_url_of, max_tokens, parse_chat_body, stop_list, tool_call_parts};
use crate::eventstream::Message;
use crate::inspect::invalid;
use crate::openai::{self, base, chat_completion, chunk, json_content_type, ChatHead, ToolCall};
use crate::sse::data_event;
use crate::{AdapterError, Meter, PreparedRequest, RequestInfo, ResponseTranslator, Target, TranslatedBody, Usage};

/// `POST {base}/model/{id}/converse` or `/converse-stream` (the model id,
/// `:` included, percent-encoded as one path segment).
fn request(target: &Target<'_>, out: &Map<String, Value>, stream: bool) -> Result<PreparedRequest, AdapterError> {
    let model = openai::path_segment(target.model);
    let url = format!("{}/model/{model}/{}", base(target), if stream { "converse-stream" } else { "converse" });
    let mut headers = vec![json_content_type()];
    if stream {
        headers.push((http::header::ACCEPT, http::HeaderValue::from_static("application/vnd.amazon.eventstream")));
    }
    let body = serde_json::to_vec(out).map_err(|e| AdapterError::Unsupported(e.to_string()))?;
    Ok(PreparedRequest { url, headers, body: Bytes::from(body), stream })
}

fn unsupported(what: &str) -> AdapterError {
    AdapterError::Unsupported(format!("{what} cannot be sent to a provider of kind `bedrock`"))
}

/// An image from its MIME type and base64 data (Converse's `image` block).
fn image_block(mime: &str, data: &str, param: &str) -> Result<Value, AdapterError> {
    let format = match mime.to_ascii_lowercase().as_str() {
        "image/png" => "png",
        "image/jpeg" | "image/jpg" => "jpeg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        _ => return Err(invalid(param, "a PNG, JPEG, GIF or WebP image")),
    };
    Ok(json!({ "image": { "format": format, "source": { "bytes": data } } }))
}

/// Converse wants turns that alternate, starting with the user: consecutive
/// blocks of one role are merged into one turn.
fn push_turn(turns: &mut Vec<(&'static str, Vec<Value>)>, role: &'static str, blocks: Vec<Value>) {
    if blocks.is_empty() {
        return;
    }
    match turns.last_mut() {
        Some((r, b)) if *r == role => b.extend(blocks),
        _ => turns.push((role, blocks)),
    }
}

fn inference_config(
    b: &Map<String, Value>,
    max: Option<u64>,
    stop_key: &str,
) -> Result<Map<String, Value>, AdapterError> {
    let mut config = Map::new();
    if let Some(n) = max {
        config.insert("maxTokens".into(), n.into());
    }
    for (from, to) in [("temperature", "temperature"), ("top_p", "topP")] {
        if let Some(v) = b.get(from).filter(|v| v.is_number()) {
            config.insert(to.into(), v.clone());
        }
    }
    if let Some(stop) = stop_list(b.get(stop_key).unwrap_or(&Value::Null))? {
        config.insert("stopSequences".into(), Value::Array(stop));
    }
    Ok(config)
}

fn finish(
    out: &mut Map<String, Value>,
    turns: Vec<(&'static str, Vec<Value>)>,
    system: Vec<Value>,
    config: Map<String, Value>,
) {
    out.insert(
        "messages".into(),
        turns.into_iter().map(|(role, content)| json!({ "role": role, "content": content })).collect(),
    );
    if !system.is_empty() {
        out.insert("system".into(), Value::Array(system));
    }
    if !config.is_empty() {
        out.insert("inferenceConfig".into(), Value::Object(config));
    }
}

// ------------------------------------------------------------ OpenAI chat in

fn chat_user_blocks(content: &Value, param: &str) -> Result<Vec<Value>, AdapterError> {
    let mut blocks = Vec::new();
    match content {
        Value::String(s) if !s.is_empty() => blocks.push(json!({ "text": s })),
        Value::String(_) | Value::Null => {}
        Value::Array(items) => {
            for (i, p) in items.iter().enumerate() {
                let param = format!("{param}[{i}]");
                match p["type"].as_str().unwrap_or("text") {
                    "text" => {
                        let t = p["text"].as_str().ok_or_else(|| invalid(&format!("{param}.text"), "a string"))?;
                        if !t.is_empty() {
                            blocks.push(json!({ "text": t }));
                        }
                    }
                    "image_url" => {
                        let url = image_url_of(p, &param)?;
                        let (mime, data) = data_url(url)
                            .ok_or_else(|| unsupported("an image by URL (send it as a base64 data URL)"))?;
                        blocks.push(image_block(mime, data, &format!("{param}.image_url"))?);
                    }
                    other => return Err(unsupported(&format!("content part type `{other}`"))),
                }
            }
        }
        _ => return Err(invalid(param, "a string or an array")),
    }
    Ok(blocks)
}

/// OpenAI chat completions → Converse.
pub(crate) fn prepare_from_chat(
    target: &Target<'_>,
    body: &[u8],
    info: &RequestInfo,
) -> Result<PreparedRequest, AdapterError> {
    let b = parse_chat_body(body)?;
    let messages = b.get("messages").and_then(Value::as_array).ok_or_else(|| invalid("messages", "an array"))?;
    let mut system = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let param = format!("messages[{i}]");
        let role = m["role"].as_str().ok_or_else(|| invalid(&format!("{param}.role"), "a string"))?;
        let content = &m["content"];
        match role {
            "system" | "developer" => {
                let t = content_text(content);
                if !t.is_empty() {
                    system.push(json!({ "text": t }));
                }
            }
            "user" => push_turn(&mut turns, "user", chat_user_blocks(content, &format!("{param}.content"))?),
            "assistant" => {
                let mut blocks = Vec::new();
                let t = content_text(content);
                if !t.is_empty() {
                    blocks.push(json!({ "text": t }));
                }
                for (j, tc) in m["tool_calls"].as_array().into_iter().flatten().enumerate() {
                    let (id, name, args) = tool_call_parts(tc, &format!("{param}.tool_calls[{j}]"))?;
                    blocks.push(json!({ "toolUse": { "toolUseId": id, "name": name, "input": args } }));
                }
                push_turn(&mut turns, "assistant", blocks);
            }
            "tool" => {
                let id = m["tool_call_id"].as_str().unwrap_or_default();
                let text = content_text(content);
                let result = match serde_json::from_str::<Value>(&text) {
                    Ok(v @ Value::Object(_)) => json!({ "json": v }),
                    _ => json!({ "text": text }),
                };
                push_turn(&mut turns, "user", vec![json!({ "toolResult": { "toolUseId": id, "content": [result] } })]);
            }
            other => return Err(unsupported(&format!("message role `{other}`"))),
        }
    }
    let mut out = Map::new();
    let config = inference_config(&b, max_tokens(&b)?, "stop")?;
    finish(&mut out, turns, system, config);
    if let Some(tools) = b.get("tools").and_then(Value::as_array) {
        let mut specs = Vec::new();
        for (i, t) in tools.iter().enumerate() {
            let f = &t["function"];
            let name = f["name"].as_str().ok_or_else(|| invalid(&format!("tools[{i}].function.name"), "a string"))?;
            let schema = if f["parameters"].is_null() {
                json!({ "type": "object", "properties": {} })
            } else {
                f["parameters"].clone()
            };
            let mut spec = json!({ "name": name, "inputSchema": { "json": schema } });
            if let Some(d) = f["description"].as_str() {
                spec["description"] = d.into();
            }
            specs.push(json!({ "toolSpec": spec }));
        }
        let choice = match b.get("tool_choice") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => match s.as_str() {
                "auto" => Some(json!({ "auto": {} })),
                "required" => Some(json!({ "any": {} })),
                // Converse has no "none": the tools are not offered at all.
                "none" => {
                    specs.clear();
                    None
                }
                _ => return Err(invalid("tool_choice", "`auto`, `none`, `required` or a function")),
            },
            Some(v) => match v["function"]["name"].as_str() {
                Some(name) => Some(json!({ "tool": { "name": name } })),
                None => return Err(invalid("tool_choice", "`auto`, `none`, `required` or a function")),
            },
        };
        if !specs.is_empty() {
            let mut tc = json!({ "tools": specs });
            if let Some(c) = choice {
                tc["toolChoice"] = c;
            }
            out.insert("toolConfig".into(), tc);
        }
    }
    request(target, &out, info.stream)
}

// ------------------------------------------------------- Anthropic Messages in

const CACHE_POINT: &str = r#"{"cachePoint":{"type":"default"}}"#;

fn cache_point() -> Value {
    serde_json::from_str(CACHE_POINT).unwrap_or(Value::Null)
}

/// One Anthropic content block → Converse blocks (a block marked with
/// `cache_control` is followed by a cache point).
fn anthropic_block(block: &Value, param: &str, out: &mut Vec<Value>) -> Result<(), AdapterError> {
    let kind = block["type"].as_str().unwrap_or("text");
    match kind {
        "text" => {
            let t = block["text"].as_str().ok_or_else(|| invalid(&format!("{param}.text"), "a string"))?;
            out.push(json!({ "text": t }));
        }
        "image" => {
            let s = &block["source"];
            if s["type"] != "base64" {
                return Err(unsupported("an image by URL (send it as base64)"));
            }
            let mime = s["media_type"].as_str().unwrap_or_default();
            let data = s["data"].as_str().ok_or_else(|| invalid(&format!("{param}.source.data"), "a string"))?;
            out.push(image_block(mime, data, &format!("{param}.source"))?);
        }
        "tool_use" => {
            let id = block["id"].as_str().unwrap_or_default();
            let name = block["name"].as_str().ok_or_else(|| invalid(&format!("{param}.name"), "a string"))?;
            out.push(json!({ "toolUse": { "toolUseId": id, "name": name, "input": block["input"].clone() } }));
        }
        "tool_result" => {
            let id = block["tool_use_id"].as_str().unwrap_or_default();
            let mut content = Vec::new();
            match &block["content"] {
                Value::String(s) => content.push(json!({ "text": s })),
                Value::Array(items) => {
                    for (i, it) in items.iter().enumerate() {
                        anthropic_block(it, &format!("{param}.content[{i}]"), &mut content)?;
                    }
                }
                _ => {}
            }
            let mut r = json!({ "toolUseId": id, "content": content });
            if block["is_error"] == true {
                r["status"] = "error".into();
            }
            out.push(json!({ "toolResult": r }));
        }
        // Earlier turns' thinking is the model's own; Converse takes it back only signed, as reasoningContent.
        "thinking" | "redacted_thinking" => return Ok(()),
        other => return Err(unsupported(&format!("content block type `{other}`"))),
    }
    if !block["cache_control"].is_null() {
        out.push(cache_point());
    }
    Ok(())
}

fn anthropic_content(content: &Value, param: &str) -> Result<Vec<Value>, AdapterError> {
    let mut blocks = Vec::new();
    match content {
        Value::String(s) => blocks.push(json!({ "text": s })),
        Value::Array(items) => {
            for (i, b) in items.iter().enumerate() {
                anthropic_block(b, &format!("{param}[{i}]"), &mut blocks)?;
            }
        }
        _ => return Err(invalid(param, "a string or an array")),
    }
    Ok(blocks)
}

/// Anthropic Messages → Converse (prompt-cache breakpoints become cache points).
pub(crate) fn prepare_from_messages(
    target: &Target<'_>,
    body: &[u8],
    info: &RequestInfo,
) -> Result<PreparedRequest, AdapterError> {
    let b = parse_chat_body(body)?;
    let messages = b.get("messages").and_then(Value::as_array).ok_or_else(|| invalid("messages", "an array"))?;
    let system = match b.get("system") {
        None | Some(Value::Null) => Vec::new(),
        Some(s) => anthropic_content(s, "system")?,
    };
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let param = format!("messages[{i}]");
        let role = match m["role"].as_str() {
            Some("user") => "user",
            Some("assistant") => "assistant",
            _ => return Err(invalid(&format!("{param}.role"), "`user` or `assistant`")),
        };
        push_turn(&mut turns, role, anthropic_content(&m["content"], &format!("{param}.content"))?);
    }
    let max = b.get("max_tokens").and_then(Value::as_u64);
    let mut out = Map::new();
    let config = inference_config(&b, max, "stop_sequences")?;
    finish(&mut out, turns, system, config);
    let mut extra = Map::new();
    for key in ["top_k", "thinking"] {
        if let Some(v) = b.get(key).filter(|v| !v.is_null()) {
            extra.insert(key.into(), v.clone());
        }
    }
    if !extra.is_empty() {
        out.insert("additionalModelRequestFields".into(), Value::Object(extra));
    }
    if let Some(tools) = b.get("tools").and_then(Value::as_array) {
        let mut specs = Vec::new();
        for (i, t) in tools.iter().enumerate() {
            let name = t["name"].as_str().ok_or_else(|| invalid(&format!("tools[{i}].name"), "a string"))?;
            if t.get("input_schema").is_none() {
                // Anthropic's server tools (web search, code execution) are not Bedrock tools.
                return Err(unsupported(&format!("the server tool `{name}`")));
            }
            let mut spec = json!({ "name": name, "inputSchema": { "json": t["input_schema"].clone() } });
            if let Some(d) = t["description"].as_str() {
                spec["description"] = d.into();
            }
            specs.push(json!({ "toolSpec": spec }));
            if !t["cache_control"].is_null() {
                specs.push(cache_point());
            }
        }
        let mut none = false;
        let choice = match b.get("tool_choice").map(|c| c["type"].as_str()) {
            None | Some(None) | Some(Some("auto")) => None,
            Some(Some("any")) => Some(json!({ "any": {} })),
            Some(Some("none")) => {
                none = true;
                None
            }
            Some(Some("tool")) => {
                let name = b["tool_choice"]["name"].as_str().ok_or_else(|| invalid("tool_choice.name", "a string"))?;
                Some(json!({ "tool": { "name": name } }))
            }
            Some(Some(_)) => return Err(invalid("tool_choice.type", "`auto`, `any`, `tool` or `none`")),
        };
        if !specs.is_empty() && !none {
            let mut tc = json!({ "tools": specs });
            if let Some(c) = choice {
                tc["toolChoice"] = c;
            }
            out.insert("toolConfig".into(), tc);
        }
    }
    request(target, &out, info.stream)
}

// ------------------------------------------------------------------- answers

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BedrockUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    cache_read_input_tokens: Option<u64>,
    cache_write_input_tokens: Option<u64>,
}

impl BedrockUsage {
    pub(crate) fn to_usage(self) -> Usage {
        Usage {
            input: self.input_tokens,
            cache_read: self.cache_read_input_tokens.unwrap_or(0),
            // Bedrock's cache entries live five minutes (its default, and the only TTL it reports).
            cache_write_5m: self.cache_write_input_tokens.unwrap_or(0),
            output: self.output_tokens,
            ..Usage::default()
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConverseAnswer {
    output: Option<Output>,
    stop_reason: Option<String>,
    usage: Option<BedrockUsage>,
}

#[derive(Deserialize)]
struct Output {
    message: Option<OutMessage>,
}

#[derive(Deserialize)]
struct OutMessage {
    #[serde(default)]
    content: Vec<Block>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Block {
    text: Option<String>,
    tool_use: Option<ToolUse>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolUse {
    tool_use_id: String,
    name: String,
    #[serde(default)]
    input: Value,
}

fn chat_finish(reason: &str) -> &'static str {
    match reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "guardrail_intervened" | "content_filtered" => "content_filter",
        _ => "stop",
    }
}

fn anthropic_stop(reason: &str) -> &'static str {
    match reason {
        "max_tokens" | "model_context_window_exceeded" => "max_tokens",
        "tool_use" => "tool_use",
        "stop_sequence" => "stop_sequence",
        "guardrail_intervened" | "content_filtered" => "refusal",
        _ => "end_turn",
    }
}

fn parse_answer(body: &[u8]) -> Result<ConverseAnswer, AdapterError> {
    serde_json::from_slice(body).map_err(|e| AdapterError::MalformedUpstream(e.to_string()))
}

/// A Converse answer → an OpenAI chat completion.
pub(crate) fn translate_to_chat_body(t: &ResponseTranslator, body: &[u8]) -> Result<TranslatedBody, AdapterError> {
    let a = parse_answer(body)?;
    let usage = a.usage.map(BedrockUsage::to_usage);
    let mut text: Option<String> = None;
    let mut calls = Vec::new();
    for b in a.output.and_then(|o| o.message).map(|m| m.content).unwrap_or_default() {
        if let Some(s) = b.text {
            text.get_or_insert_with(String::new).push_str(&s);
        }
        if let Some(u) = b.tool_use {
            calls.push(ToolCall { id: u.tool_use_id, name: u.name, arguments: u.input.to_string() });
        }
    }
    let finish = chat_finish(a.stop_reason.as_deref().unwrap_or("end_turn"));
    let head = ChatHead { id: "chatcmpl-bedrock".into(), created: t.created, model: t.model.clone() };
    let output_text = if usage.is_none() { text.clone().unwrap_or_default() } else { String::new() };
    Ok(TranslatedBody {
        body: chat_completion(&head, text, &calls, finish, usage.as_ref()),
        usage,
        model: None,
        service_tier: None,
        output_text,
        provider_cost: None,
    })
}

fn anthropic_usage_json(u: &Usage) -> Value {
    json!({
        "input_tokens": u.input,
        "output_tokens": u.output_tokens(),
        "cache_read_input_tokens": u.cache_read,
        "cache_creation_input_tokens": u.cache_write_tokens(),
    })
}

/// A Converse answer → an Anthropic message.
pub(crate) fn translate_to_messages_body(t: &ResponseTranslator, body: &[u8]) -> Result<TranslatedBody, AdapterError> {
    let a = parse_answer(body)?;
    let usage = a.usage.map(BedrockUsage::to_usage);
    let mut content = Vec::new();
    let mut text = String::new();
    for b in a.output.and_then(|o| o.message).map(|m| m.content).unwrap_or_default() {
        if let Some(s) = b.text {
            text.push_str(&s);
            content.push(json!({ "type": "text", "text": s }));
        }
        if let Some(u) = b.tool_use {
            content.push(json!({ "type": "tool_use", "id": u.tool_use_id, "name": u.name, "input": u.input }));
        }
    }
    let v = json!({
        "id": "msg_bedrock",
        "type": "message",
        "role": "assistant",
        "model": t.model,
        "content": content,
        "stop_reason": anthropic_stop(a.stop_reason.as_deref().unwrap_or("end_turn")),
        "stop_sequence": null,
        "usage": anthropic_usage_json(&usage.unwrap_or_default()),
    });
    Ok(TranslatedBody {
        body: Bytes::from(v.to_string()),
        usage,
        model: None,
        service_tier: None,
        output_text: if usage.is_none() { text } else { String::new() },
        provider_cost: None,
    })
}

// -------------------------------------------------------------------- streams

/// One ConverseStream event: its type and JSON payload, or the error an
/// exception message carries.
enum Event {
    Event(String, Value),
    Exception(String, String),
}

fn read_event(msg: &Message) -> Result<Event, AdapterError> {
    let payload: Value = serde_json::from_slice(&msg.payload)
        .map_err(|e| AdapterError::MalformedUpstream(format!("stream event payload: {e}")))?;
    match msg.header_str(":message-type") {
        Some("event") => {
            let kind = msg
                .header_str(":event-type")
                .ok_or_else(|| AdapterError::MalformedUpstream("a stream event without :event-type".into()))?;
            Ok(Event::Event(kind.to_owned(), payload))
        }
        Some("exception") | Some("error") => {
            let kind = msg.header_str(":exception-type").or(msg.header_str(":error-code")).unwrap_or("exception");
            let message =
                payload["message"].as_str().or(payload["Message"].as_str()).unwrap_or("upstream stream error");
            Ok(Event::Exception(kind.to_owned(), message.to_owned()))
        }
        other => Err(AdapterError::MalformedUpstream(format!("a stream message of type {other:?}"))),
    }
}

/// ConverseStream → OpenAI `chat.completion.chunk` events.
#[derive(Debug)]
pub(crate) struct ChatStream {
    head: ChatHead,
    include_usage: bool,
    started: bool,
    /// Converse content-block index → OpenAI tool-call index.
    tools: Vec<(u64, usize)>,
    stop: Option<String>,
}

impl ChatStream {
    pub(crate) fn new(t: &ResponseTranslator) -> Self {
        ChatStream {
            head: ChatHead { id: "chatcmpl-bedrock".into(), created: t.created, model: t.model.clone() },
            include_usage: t.client_wants_stream_usage,
            started: false,
            tools: Vec::new(),
            stop: None,
        }
    }

    fn start(&mut self, out: &mut Vec<Bytes>) {
        if !self.started {
            self.started = true;
            out.push(chunk(&self.head, json!({ "role": "assistant", "content": "" }), None));
        }
    }

    pub(crate) fn on_message(
        &mut self,
        msg: &Message,
        m: &mut Meter,
        out: &mut Vec<Bytes>,
    ) -> Result<(), AdapterError> {
        let (kind, p) = match read_event(msg)? {
            Event::Event(k, p) => (k, p),
            Event::Exception(kind, message) => {
                m.failed = true;
                out.push(openai::error_chunk(&message, &kind));
                return Ok(());
            }
        };
        match kind.as_str() {
            "messageStart" => self.start(out),
            "contentBlockStart" => {
                self.start(out);
                if let Some(tu) = p["start"].get("toolUse") {
                    let index = self.tools.len();
                    self.tools.push((p["contentBlockIndex"].as_u64().unwrap_or(0), index));
                    out.push(chunk(
                        &self.head,
                        json!({ "tool_calls": [{
                            "index": index, "id": tu["toolUseId"], "type": "function",
                            "function": { "name": tu["name"], "arguments": "" },
                        }] }),
                        None,
                    ));
                }
            }
            "contentBlockDelta" => {
                self.start(out);
                let d = &p["delta"];
                if let Some(s) = d["text"].as_str() {
                    m.output_text.push_str(s);
                    out.push(chunk(&self.head, json!({ "content": s }), None));
                } else if let Some(args) = d["toolUse"]["input"].as_str() {
                    let block = p["contentBlockIndex"].as_u64().unwrap_or(0);
                    let index = self.tools.iter().find(|(b, _)| *b == block).map_or(0, |(_, i)| *i);
                    m.output_text.push_str(args);
                    out.push(chunk(
                        &self.head,
                        json!({ "tool_calls": [{ "index": index, "function": { "arguments": args } }] }),
                        None,
                    ));
                }
            }
            "messageStop" => {
                self.stop = Some(p["stopReason"].as_str().unwrap_or("end_turn").to_owned());
                out.push(chunk(&self.head, json!({}), Some(chat_finish(self.stop.as_deref().unwrap_or("end_turn")))));
            }
            "metadata" => {
                if let Ok(u) = serde_json::from_value::<BedrockUsage>(p["usage"].clone()) {
                    m.usage = Some(u.to_usage());
                }
                // The last event of a complete stream.
                m.completed = self.stop.is_some();
            }
            _ => {}
        }
        Ok(())
    }

    pub(crate) fn finish(&mut self, m: &mut Meter, out: &mut Vec<Bytes>) {
        openai::finish_translated(&self.head, self.include_usage, m, out);
    }
}

fn anthropic_event(kind: &str, v: &Value) -> Bytes {
    let mut s = Vec::with_capacity(64);
    s.extend_from_slice(b"event: ");
    s.extend_from_slice(kind.as_bytes());
    s.extend_from_slice(b"\n");
    let mut rest = data_event(v.to_string().as_bytes()).to_vec();
    s.append(&mut rest);
    Bytes::from(s)
}

/// ConverseStream → Anthropic Messages stream events. Converse reports usage
/// only at the end, so `message_start` carries zeros and the final
/// `message_delta` carries the whole usage.
#[derive(Debug)]
pub(crate) struct MessagesStream {
    model: String,
    started: bool,
    open_block: Option<u64>,
    stop: Option<String>,
}

impl MessagesStream {
    pub(crate) fn new(t: &ResponseTranslator) -> Self {
        MessagesStream { model: t.model.clone(), started: false, open_block: None, stop: None }
    }

    fn start(&mut self, out: &mut Vec<Bytes>) {
        if !self.started {
            self.started = true;
            let msg = json!({ "type": "message_start", "message": {
                "id": "msg_bedrock", "type": "message", "role": "assistant", "model": self.model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": { "input_tokens": 0, "output_tokens": 0 },
            } });
            out.push(anthropic_event("message_start", &msg));
        }
    }

    fn open(&mut self, index: u64, block: Value, out: &mut Vec<Bytes>) {
        self.close(out);
        self.open_block = Some(index);
        out.push(anthropic_event(
            "content_block_start",
            &json!({ "type": "content_block_start", "index": index, "content_block": block }),
        ));
    }

    fn close(&mut self, out: &mut Vec<Bytes>) {
        if let Some(i) = self.open_block.take() {
            out.push(anthropic_event("content_block_stop", &json!({ "type": "content_block_stop", "index": i })));
        }
    }

    pub(crate) fn on_message(
        &mut self,
        msg: &Message,
        m: &mut Meter,
        out: &mut Vec<Bytes>,
    ) -> Result<(), AdapterError> {
        let (kind, p) = match read_event(msg)? {
            Event::Event(k, p) => (k, p),
            Event::Exception(kind, message) => {
                m.failed = true;
                out.push(anthropic_event(
                    "error",
                    &json!({ "type": "error", "error": { "type": "api_error", "message": format!("{kind}: {message}") } }),
                ));
                return Ok(());
            }
        };
        let index = p["contentBlockIndex"].as_u64().unwrap_or(0);
        match kind.as_str() {
            "messageStart" => self.start(out),
            "contentBlockStart" => {
                self.start(out);
                if let Some(tu) = p["start"].get("toolUse") {
                    let block = json!({ "type": "tool_use", "id": tu["toolUseId"], "name": tu["name"], "input": {} });
                    self.open(index, block, out);
                }
            }
            "contentBlockDelta" => {
                self.start(out);
                let d = &p["delta"];
                if let Some(s) = d["text"].as_str() {
                    if self.open_block != Some(index) {
                        self.open(index, json!({ "type": "text", "text": "" }), out);
                    }
                    m.output_text.push_str(s);
                    out.push(anthropic_event(
                        "content_block_delta",
                        &json!({ "type": "content_block_delta", "index": index, "delta": { "type": "text_delta", "text": s } }),
                    ));
                } else if let Some(args) = d["toolUse"]["input"].as_str() {
                    m.output_text.push_str(args);
                    out.push(anthropic_event(
                        "content_block_delta",
                        &json!({ "type": "content_block_delta", "index": index, "delta": { "type": "input_json_delta", "partial_json": args } }),
                    ));
                }
            }
            "contentBlockStop" => self.close(out),
            "messageStop" => {
                self.close(out);
                self.stop = Some(p["stopReason"].as_str().unwrap_or("end_turn").to_owned());
            }
            "metadata" => {
                let usage = serde_json::from_value::<BedrockUsage>(p["usage"].clone()).ok().map(BedrockUsage::to_usage);
                if let Some(u) = usage {
                    m.usage = Some(u);
                }
                if let Some(stop) = self.stop.as_deref() {
                    out.push(anthropic_event(
                        "message_delta",
                        &json!({
                            "type": "message_delta",
                            "delta": { "stop_reason": anthropic_stop(stop), "stop_sequence": null },
                            "usage": anthropic_usage_json(&usage.unwrap_or_default()),
                        }),
                    ));
                    m.completed = true;
                }
            }
            _ => {}
        }
        Ok(())
    }

    pub(crate) fn finish(&mut self, m: &mut Meter, _out: &mut Vec<Bytes>) {
        if m.completed && !m.failed {
            m.terminator = anthropic_event("message_stop", &json!({ "type": "message_stop" })).to_vec();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eventstream::{encode, Decoder, HeaderValue};

    fn target(model: &str) -> Target<'_> {
        Target {
            kind: crate::ProviderKind::Bedrock,
            base_url: "https://bedrock-runtime.us-east-1.amazonaws.com/",
            api_key: None,
            model,
            api_version: None,
        }
    }

    #[test]
    fn chat_becomes_converse_with_the_model_id_as_one_segment() {
        let body = br#"{"model":"claude","max_tokens":100,"temperature":0.5,"stop":"END","messages":[
            {"role":"system","content":"be brief"},
            {"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]},
            {"role":"assistant","content":null,"tool_calls":[{"id":"t1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},
            {"role":"tool","tool_call_id":"t1","content":"{\"ok\":true}"}],
            "tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],"tool_choice":"required"}"#;
        let info = RequestInfo { stream: true, ..RequestInfo::default() };
        let p = prepare_from_chat(&target("us.anthropic.claude-3-5-haiku-20241022-v1:0"), body, &info).unwrap();
        assert_eq!(
            p.url,
            "https://bedrock-runtime.us-east-1.amazonaws.com/model/us.anthropic.claude-3-5-haiku-20241022-v1%3A0/converse-stream"
        );
        let v: Value = serde_json::from_slice(&p.body).unwrap();
        assert_eq!(v["system"], json!([{ "text": "be brief" }]));
        assert_eq!(v["inferenceConfig"], json!({ "maxTokens": 100, "temperature": 0.5, "stopSequences": ["END"] }));
        assert_eq!(
            v["messages"][0]["content"][1],
            json!({ "image": { "format": "png", "source": { "bytes": "AAAA" } } })
        );
        assert_eq!(
            v["messages"][1]["content"][0]["toolUse"],
            json!({ "toolUseId": "t1", "name": "f", "input": { "a": 1 } })
        );
        assert_eq!(v["messages"][2]["content"][0]["toolResult"]["content"][0], json!({ "json": { "ok": true } }));
        assert_eq!(v["toolConfig"]["toolChoice"], json!({ "any": {} }));
    }

    #[test]
    fn anthropic_cache_breakpoints_become_cache_points() {
        let body = br#"{"model":"m","max_tokens":64,"system":[{"type":"text","text":"long rules","cache_control":{"type":"ephemeral"}}],
            "messages":[{"role":"user","content":[{"type":"text","text":"q","cache_control":{"type":"ephemeral"}}]}]}"#;
        let p = prepare_from_messages(&target("anthropic.claude-3-haiku-20240307-v1:0"), body, &RequestInfo::default())
            .unwrap();
        let v: Value = serde_json::from_slice(&p.body).unwrap();
        assert_eq!(v["system"], json!([{ "text": "long rules" }, { "cachePoint": { "type": "default" } }]));
        assert_eq!(v["messages"][0]["content"], json!([{ "text": "q" }, { "cachePoint": { "type": "default" } }]));
        assert!(p.url.ends_with("/converse"));
    }

    #[test]
    fn answers_translate_with_exact_usage() {
        let body = br#"{"output":{"message":{"role":"assistant","content":[{"text":"Hello"}]}},"stopReason":"max_tokens",
            "usage":{"inputTokens":30,"outputTokens":5,"totalTokens":55,"cacheReadInputTokens":12,"cacheWriteInputTokens":8}}"#;
        let t = ResponseTranslator {
            mode: crate::Mode::BedrockToChat,
            client_wants_stream_usage: false,
            model: "m".into(),
            created: 7,
        };
        let c = translate_to_chat_body(&t, body).unwrap();
        assert_eq!(
            c.usage,
            Some(Usage { input: 30, cache_read: 12, cache_write_5m: 8, output: 5, ..Usage::default() })
        );
        let v: Value = serde_json::from_slice(&c.body).unwrap();
        assert_eq!(v["choices"][0]["finish_reason"], "length");
        assert_eq!(v["usage"]["prompt_tokens"], 50);
        let a = translate_to_messages_body(&t, body).unwrap();
        let v: Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(
            v["usage"],
            json!({ "input_tokens": 30, "output_tokens": 5, "cache_read_input_tokens": 12, "cache_creation_input_tokens": 8 })
        );
        assert_eq!(v["stop_reason"], "max_tokens");
    }

    fn frames() -> Vec<u8> {
        let ev = |kind: &str, payload: Value| {
            encode(
                &[
                    (":event-type", HeaderValue::String(kind.into())),
                    (":content-type", HeaderValue::String("application/json".into())),
                    (":message-type", HeaderValue::String("event".into())),
                ],
                payload.to_string().as_bytes(),
            )
        };
        [
            ev("messageStart", json!({ "role": "assistant" })),
            ev("contentBlockDelta", json!({ "contentBlockIndex": 0, "delta": { "text": "Hel" } })),
            ev("contentBlockDelta", json!({ "contentBlockIndex": 0, "delta": { "text": "lo" } })),
            ev("contentBlockStop", json!({ "contentBlockIndex": 0 })),
            ev("messageStop", json!({ "stopReason": "end_turn" })),
            ev("metadata", json!({ "usage": { "inputTokens": 30, "outputTokens": 5, "totalTokens": 35 }, "metrics": { "latencyMs": 9 } })),
        ]
        .concat()
    }

    #[test]
    fn streams_translate_to_both_client_formats_with_the_final_usage() {
        for mode in [crate::Mode::BedrockToChat, crate::Mode::BedrockToMessages] {
            let t = ResponseTranslator { mode, client_wants_stream_usage: true, model: "m".into(), created: 0 };
            let mut s = t.stream();
            let mut out = Vec::new();
            // Byte by byte: frames split anywhere.
            for b in frames() {
                s.push(&[b], &mut out).unwrap();
            }
            let end = s.finish(&mut out);
            assert!(end.completed, "{mode:?}");
            assert_eq!(end.usage, Some(Usage { input: 30, output: 5, ..Usage::default() }));
            let text: String = out.iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect();
            assert!(text.contains("Hel") && text.contains("lo"), "{text}");
            if mode == crate::Mode::BedrockToMessages {
                assert!(
                    text.contains("message_delta") && String::from_utf8_lossy(&end.terminator).contains("message_stop")
                );
            } else {
                assert_eq!(&end.terminator[..], openai::DONE);
            }
        }
        // A corrupt frame is an error, never a silent truncation.
        let mut bad = frames();
        let n = bad.len();
        bad[n / 2] ^= 0x40;
        let t = ResponseTranslator {
            mode: crate::Mode::BedrockToChat,
            client_wants_stream_usage: false,
            model: "m".into(),
            created: 0,
        };
        let mut s = t.stream();
        let mut out = Vec::new();
        assert!(s.push(&bad, &mut out).is_err());
        let _ = Decoder::new();
    }
}
