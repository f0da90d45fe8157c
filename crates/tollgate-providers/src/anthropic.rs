//! Anthropic Messages: native passthrough, OpenAI chat → Messages request
//! translation, Messages answers and streams → OpenAI chat shape, and usage
//! (cache tokens are *outside* Anthropic's `input_tokens`).

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::inspect::{invalid, not_json, object_body};
use crate::openai::{
    self, anthropic_event_type, base, chat_completion, chunk, json_content_type, raw_json, rewrite_top, secret_header,
    usage_chunk, ChatHead, ToolCall,
};
use crate::sse::Event;
use crate::{AdapterError, Meter, PreparedRequest, RequestInfo, ResponseTranslator, Target, TranslatedBody, Usage};

const VERSION: &str = "2023-06-01";
/// Anthropic requires `max_tokens`; OpenAI clients usually leave it out.
const DEFAULT_MAX_TOKENS: u64 = 4096;

fn request(target: &Target<'_>, body: Bytes, stream: bool) -> Result<PreparedRequest, AdapterError> {
    let mut headers = vec![
        json_content_type(),
        (http::HeaderName::from_static("anthropic-version"), http::HeaderValue::from_static(VERSION)),
    ];
    if let Some(key) = target.api_key {
        headers.push(secret_header("x-api-key", key)?);
    }
    Ok(PreparedRequest { url: format!("{}/v1/messages", base(target)), headers, body, stream })
}

pub(crate) fn prepare_native(
    target: &Target<'_>,
    body: &[u8],
    info: &RequestInfo,
) -> Result<PreparedRequest, AdapterError> {
    let body = if info.model.as_deref() == Some(target.model) {
        Bytes::copy_from_slice(body)
    } else {
        rewrite_top(body, |top| {
            top.insert("model".into(), raw_json(&Value::from(target.model))?);
            Ok(())
        })?
    };
    request(target, body, info.stream)
}

// ------------------------------------------------- OpenAI chat → Messages

pub(crate) fn parse_chat_body(body: &[u8]) -> Result<Map<String, Value>, AdapterError> {
    let text = object_body(body)?;
    serde_json::from_str(text).map_err(|e| not_json(&e))
}

/// The text of a message's `content` (string, or the `text` of its parts).
pub(crate) fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => {
            let mut s = String::new();
            for p in parts {
                if let Some(t) = p.get("text").and_then(Value::as_str) {
                    if !s.is_empty() {
                        s.push('\n');
                    }
                    s.push_str(t);
                }
            }
            s
        }
        _ => String::new(),
    }
}

/// `data:image/png;base64,XXXX` → (`image/png`, `XXXX`).
pub(crate) fn data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let mime = meta.strip_suffix(";base64")?;
    Some((mime, data))
}

pub(crate) fn image_url_of<'a>(part: &'a Value, param: &str) -> Result<&'a str, AdapterError> {
    let u = &part["image_url"];
    u.as_str().or_else(|| u["url"].as_str()).ok_or_else(|| invalid(&format!("{param}.image_url.url"), "a string"))
}

fn user_blocks(content: &Value, param: &str, blocks: &mut Vec<Value>) -> Result<(), AdapterError> {
    match content {
        Value::String(s) => {
            if !s.is_empty() {
                blocks.push(json!({ "type": "text", "text": s }));
            }
        }
        Value::Array(parts) => {
            for (i, p) in parts.iter().enumerate() {
                let param = format!("{param}[{i}]");
                let mut block = match p["type"].as_str().unwrap_or("text") {
                    "text" | "input_text" => {
                        let t = p["text"].as_str().ok_or_else(|| invalid(&format!("{param}.text"), "a string"))?;
                        if t.is_empty() {
                            continue;
                        }
                        json!({ "type": "text", "text": t })
                    }
                    "image_url" => {
                        let url = image_url_of(p, &param)?;
                        let source = match data_url(url) {
                            Some((mime, data)) => json!({ "type": "base64", "media_type": mime, "data": data }),
                            None => json!({ "type": "url", "url": url }),
                        };
                        json!({ "type": "image", "source": source })
                    }
                    other => {
                        return Err(AdapterError::Unsupported(format!(
                            "content part type `{other}` cannot be sent to a provider of kind `anthropic`"
                        )))
                    }
                };
                // Lets OpenAI-format clients still mark Anthropic cache breakpoints.
                if let Some(cc) = p.get("cache_control") {
                    block["cache_control"] = cc.clone();
                }
                blocks.push(block);
            }
        }
        Value::Null => {}
        _ => return Err(invalid(param, "a string or an array")),
    }
    Ok(())
}

fn push_turn(turns: &mut Vec<(&'static str, Vec<Value>)>, role: &'static str, blocks: Vec<Value>) {
    if blocks.is_empty() {
        return;
    }
    match turns.last_mut() {
        // Anthropic wants alternating turns; tool results and the user text
        // after them become one user turn.
        Some((r, b)) if *r == role => b.extend(blocks),
        _ => turns.push((role, blocks)),
    }
}

pub(crate) fn stop_list(stop: &Value) -> Result<Option<Vec<Value>>, AdapterError> {
    Ok(match stop {
        Value::Null => None,
        Value::String(s) => Some(vec![Value::String(s.clone())]),
        Value::Array(a) if a.iter().all(Value::is_string) => Some(a.clone()),
        _ => return Err(invalid("stop", "a string or an array of strings")),
    })
}

pub(crate) fn max_tokens(body: &Map<String, Value>) -> Result<Option<u64>, AdapterError> {
    for key in ["max_completion_tokens", "max_tokens"] {
        match body.get(key) {
            None | Some(Value::Null) => {}
            Some(v) => return v.as_u64().map(Some).ok_or_else(|| invalid(key, "an integer")),
        }
    }
    Ok(None)
}

/// `function.arguments` is a JSON string in OpenAI; Anthropic wants the object.
pub(crate) fn tool_call_parts(tc: &Value, param: &str) -> Result<(String, String, Value), AdapterError> {
    let id = tc["id"].as_str().unwrap_or_default().to_owned();
    let f = &tc["function"];
    let name = f["name"].as_str().ok_or_else(|| invalid(&format!("{param}.function.name"), "a string"))?;
    let args = match &f["arguments"] {
        Value::String(s) if s.trim().is_empty() => json!({}),
        Value::String(s) => serde_json::from_str(s)
            .map_err(|_| invalid(&format!("{param}.function.arguments"), "a JSON object encoded as a string"))?,
        Value::Null => json!({}),
        other => other.clone(),
    };
    Ok((id, name.to_owned(), args))
}

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
                    system.push(t);
                }
            }
            "user" => {
                let mut blocks = Vec::new();
                user_blocks(content, &format!("{param}.content"), &mut blocks)?;
                push_turn(&mut turns, "user", blocks);
            }
            "assistant" => {
                let mut blocks = Vec::new();
                let t = match content {
                    Value::Array(parts) => parts
                        .iter()
                        .filter_map(|p| p["text"].as_str().or_else(|| p["refusal"].as_str()))
                        .collect::<Vec<_>>()
                        .join(""),
                    other => content_text(other),
                };
                if !t.is_empty() {
                    blocks.push(json!({ "type": "text", "text": t }));
                }
                for (j, tc) in m["tool_calls"].as_array().into_iter().flatten().enumerate() {
                    let (id, name, input) = tool_call_parts(tc, &format!("{param}.tool_calls[{j}]"))?;
                    blocks.push(json!({ "type": "tool_use", "id": id, "name": name, "input": input }));
                }
                push_turn(&mut turns, "assistant", blocks);
            }
            "tool" => {
                let id =
                    m["tool_call_id"].as_str().ok_or_else(|| invalid(&format!("{param}.tool_call_id"), "a string"))?;
                let block = json!({ "type": "tool_result", "tool_use_id": id, "content": content_text(content) });
                push_turn(&mut turns, "user", vec![block]);
            }
            other => {
                return Err(AdapterError::Unsupported(format!(
                    "message role `{other}` cannot be sent to a provider of kind `anthropic`"
                )))
            }
        }
    }

    let mut out = Map::new();
    out.insert("model".into(), target.model.into());
    out.insert("max_tokens".into(), max_tokens(&b)?.unwrap_or(DEFAULT_MAX_TOKENS).into());
    if !system.is_empty() {
        out.insert("system".into(), system.join("\n\n").into());
    }
    out.insert(
        "messages".into(),
        turns.into_iter().map(|(role, content)| json!({ "role": role, "content": content })).collect(),
    );
    if let Some(t) = b.get("temperature").and_then(Value::as_f64) {
        // OpenAI allows 0–2, Anthropic 0–1.
        out.insert("temperature".into(), json!(t.clamp(0.0, 1.0)));
    }
    if let Some(p) = b.get("top_p").filter(|v| v.is_number()) {
        out.insert("top_p".into(), p.clone());
    }
    if let Some(stop) = stop_list(b.get("stop").unwrap_or(&Value::Null))? {
        out.insert("stop_sequences".into(), Value::Array(stop));
    }
    if info.stream {
        out.insert("stream".into(), true.into());
    }
    if let Some(user) = b.get("user").and_then(Value::as_str) {
        out.insert("metadata".into(), json!({ "user_id": user }));
    }
    if let Some(tools) = b.get("tools").and_then(Value::as_array) {
        let mut list = Vec::new();
        for (i, t) in tools.iter().enumerate() {
            let f = &t["function"];
            let name = f["name"].as_str().ok_or_else(|| invalid(&format!("tools[{i}].function.name"), "a string"))?;
            let mut tool = json!({ "name": name });
            if let Some(d) = f["description"].as_str() {
                tool["description"] = d.into();
            }
            tool["input_schema"] = match &f["parameters"] {
                Value::Null => json!({ "type": "object", "properties": {} }),
                p => p.clone(),
            };
            list.push(tool);
        }
        if !list.is_empty() {
            out.insert("tools".into(), Value::Array(list));
        }
    }
    let mut choice = match b.get("tool_choice") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => Some(json!({ "type": "auto" })),
            "none" => Some(json!({ "type": "none" })),
            "required" => Some(json!({ "type": "any" })),
            _ => return Err(invalid("tool_choice", "`auto`, `none`, `required` or a function")),
        },
        Some(v) => match v["function"]["name"].as_str() {
            Some(name) => Some(json!({ "type": "tool", "name": name })),
            None => return Err(invalid("tool_choice", "`auto`, `none`, `required` or a function")),
        },
    };
    if b.get("parallel_tool_calls") == Some(&Value::Bool(false)) && out.contains_key("tools") {
        let c = choice.get_or_insert_with(|| json!({ "type": "auto" }));
        if c["type"] != "none" {
            c["disable_parallel_tool_use"] = true.into();
        }
    }
    if let Some(c) = choice {
        out.insert("tool_choice".into(), c);
    }
    let body = serde_json::to_vec(&out).map_err(|e| AdapterError::Unsupported(e.to_string()))?;
    request(target, Bytes::from(body), info.stream)
}

// ------------------------------------------------------------------- usage

/// Anthropic's usage object; in a stream, `message_delta` repeats it
/// cumulatively, so fields it carries replace those of `message_start`.
#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct AnthropicUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_creation: Option<CacheCreation>,
    server_tool_use: Option<ServerToolUse>,
}

/// Server-side tools the request used, billed per call.
#[derive(Debug, Default, Clone, Deserialize)]
struct ServerToolUse {
    web_search_requests: Option<u64>,
}

#[derive(Debug, Default, Clone, Deserialize)]
struct CacheCreation {
    ephemeral_5m_input_tokens: Option<u64>,
    ephemeral_1h_input_tokens: Option<u64>,
}

impl AnthropicUsage {
    fn merge(&mut self, d: AnthropicUsage) {
        self.input_tokens = d.input_tokens.or(self.input_tokens);
        self.output_tokens = d.output_tokens.or(self.output_tokens);
        self.cache_read_input_tokens = d.cache_read_input_tokens.or(self.cache_read_input_tokens);
        self.cache_creation_input_tokens = d.cache_creation_input_tokens.or(self.cache_creation_input_tokens);
        self.cache_creation = d.cache_creation.or(self.cache_creation.take());
        self.server_tool_use = d.server_tool_use.or(self.server_tool_use.take());
    }

    pub(crate) fn to_usage(&self) -> Usage {
        let writes = self.cache_creation_input_tokens.unwrap_or(0);
        let (w5, w1) = match &self.cache_creation {
            Some(c) => {
                let w1 = c.ephemeral_1h_input_tokens.unwrap_or(0);
                let w5 = c.ephemeral_5m_input_tokens.unwrap_or(0);
                // Writes the breakdown does not explain count at the default TTL.
                (w5.max(writes.saturating_sub(w1)), w1)
            }
            None => (writes, 0),
        };
        Usage {
            input: self.input_tokens.unwrap_or(0),
            cache_read: self.cache_read_input_tokens.unwrap_or(0),
            cache_write_5m: w5,
            cache_write_1h: w1,
            // Thinking is billed inside `output_tokens` and not reported apart.
            output: self.output_tokens.unwrap_or(0),
            web_search_requests: self.server_tool_use.as_ref().and_then(|t| t.web_search_requests).unwrap_or(0),
            ..Usage::default()
        }
    }
}

// ------------------------------------------------------------ whole bodies

#[derive(Deserialize)]
struct Message {
    id: Option<String>,
    model: Option<String>,
    #[serde(default)]
    content: Vec<Block>,
    stop_reason: Option<String>,
    usage: Option<AnthropicUsage>,
}

#[derive(Deserialize)]
struct Block {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
    id: Option<String>,
    name: Option<String>,
    input: Option<Value>,
}

fn malformed(e: serde_json::Error) -> AdapterError {
    AdapterError::MalformedUpstream(e.to_string())
}

pub(crate) fn translate_native_body(body: &[u8]) -> Result<TranslatedBody, AdapterError> {
    let m: Message = serde_json::from_slice(body).map_err(malformed)?;
    let usage = m.usage.map(|u| u.to_usage());
    let output_text = if usage.is_none() { blocks_text(&m.content) } else { String::new() };
    Ok(TranslatedBody {
        body: Bytes::copy_from_slice(body),
        usage,
        model: m.model,
        service_tier: None,
        output_text,
        provider_cost: None,
    })
}

fn blocks_text(blocks: &[Block]) -> String {
    let mut s = String::new();
    for b in blocks {
        if let Some(t) = &b.text {
            s.push_str(t);
        }
        if let Some(i) = &b.input {
            s.push_str(&i.to_string());
        }
    }
    s
}

pub(crate) fn finish_reason(stop: Option<&str>) -> &'static str {
    match stop {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        _ => "stop",
    }
}

pub(crate) fn translate_to_chat_body(t: &ResponseTranslator, body: &[u8]) -> Result<TranslatedBody, AdapterError> {
    let m: Message = serde_json::from_slice(body).map_err(malformed)?;
    let usage = m.usage.as_ref().map(AnthropicUsage::to_usage);
    let mut text: Option<String> = None;
    let mut calls = Vec::new();
    for b in &m.content {
        match b.kind.as_str() {
            "text" => text.get_or_insert_with(String::new).push_str(b.text.as_deref().unwrap_or("")),
            "tool_use" => calls.push(ToolCall {
                id: b.id.clone().unwrap_or_default(),
                name: b.name.clone().unwrap_or_default(),
                arguments: b.input.as_ref().map_or_else(|| "{}".to_owned(), Value::to_string),
            }),
            _ => {}
        }
    }
    let head = ChatHead {
        id: m.id.clone().unwrap_or_else(|| "chatcmpl-anthropic".into()),
        created: t.created,
        model: m.model.clone().unwrap_or_else(|| t.model.clone()),
    };
    let out = chat_completion(&head, text, &calls, finish_reason(m.stop_reason.as_deref()), usage.as_ref());
    let output_text = if usage.is_none() { blocks_text(&m.content) } else { String::new() };
    Ok(TranslatedBody { body: out, usage, model: m.model, service_tier: None, output_text, provider_cost: None })
}

// ----------------------------------------------------------------- streams

#[derive(Deserialize)]
struct StreamMessage {
    message: Option<StartMessage>,
}

#[derive(Deserialize)]
struct StartMessage {
    id: Option<String>,
    model: Option<String>,
    usage: Option<AnthropicUsage>,
}

#[derive(Deserialize)]
struct DeltaEvent {
    index: Option<usize>,
    delta: Option<Delta>,
    usage: Option<AnthropicUsage>,
    content_block: Option<Block>,
    error: Option<ErrorBody>,
}

#[derive(Deserialize)]
struct Delta {
    #[serde(rename = "type")]
    kind: Option<String>,
    text: Option<String>,
    partial_json: Option<String>,
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(rename = "type")]
    kind: Option<String>,
    message: Option<String>,
}

fn parse<'a, T: Deserialize<'a>>(ev: &'a Event, kind: &str) -> Result<T, AdapterError> {
    serde_json::from_str(&ev.data).map_err(|e| AdapterError::MalformedUpstream(format!("{kind} event: {e}")))
}

/// Native Messages stream: relayed unchanged, `message_stop` held back.
#[derive(Debug, Default)]
pub(crate) struct NativeStream {
    usage: Option<AnthropicUsage>,
}

impl NativeStream {
    pub(crate) fn on_event(&mut self, ev: Event, m: &mut Meter, out: &mut Vec<Bytes>) -> Result<(), AdapterError> {
        if !ev.has_data {
            out.push(ev.raw);
            return Ok(());
        }
        let kind = anthropic_event_type(&ev);
        match kind.as_str() {
            "message_start" => {
                let s: StreamMessage = parse(&ev, &kind)?;
                if let Some(msg) = s.message {
                    m.model = msg.model.or(m.model.take());
                    if let Some(u) = msg.usage {
                        m.usage = Some(u.to_usage());
                        self.usage = Some(u);
                    }
                }
            }
            "message_delta" => {
                let d: DeltaEvent = parse(&ev, &kind)?;
                if let Some(u) = d.usage {
                    let acc = self.usage.get_or_insert_with(AnthropicUsage::default);
                    acc.merge(u);
                    m.usage = Some(acc.to_usage());
                }
            }
            "content_block_delta" if m.usage.is_none() => {
                if let Ok(DeltaEvent { delta: Some(d), .. }) = serde_json::from_str(&ev.data) {
                    m.output_text.push_str(d.text.as_deref().or(d.partial_json.as_deref()).unwrap_or(""));
                }
            }
            "message_stop" => {
                m.completed = true;
                m.terminator = ev.raw.to_vec();
                return Ok(());
            }
            "error" => m.failed = true,
            _ => {}
        }
        out.push(ev.raw);
        Ok(())
    }

    pub(crate) fn finish(&mut self, _m: &mut Meter) {}
}

/// Messages stream → OpenAI `chat.completion.chunk` events.
#[derive(Debug)]
pub(crate) struct ChatStream {
    head: ChatHead,
    include_usage: bool,
    usage: Option<AnthropicUsage>,
    started: bool,
    /// Anthropic content-block index → OpenAI tool-call index.
    tools: Vec<(usize, usize)>,
}

impl ChatStream {
    pub(crate) fn new(t: &ResponseTranslator) -> Self {
        ChatStream {
            head: ChatHead { id: "chatcmpl-anthropic".into(), created: t.created, model: t.model.clone() },
            include_usage: t.client_wants_stream_usage,
            usage: None,
            started: false,
            tools: Vec::new(),
        }
    }

    fn start(&mut self, out: &mut Vec<Bytes>) {
        if !self.started {
            self.started = true;
            out.push(chunk(&self.head, json!({ "role": "assistant", "content": "" }), None));
        }
    }

    pub(crate) fn on_event(&mut self, ev: Event, m: &mut Meter, out: &mut Vec<Bytes>) -> Result<(), AdapterError> {
        if !ev.has_data {
            return Ok(());
        }
        let kind = anthropic_event_type(&ev);
        if kind.is_empty() {
            // Every Anthropic event names its type; new types are skipped below,
            // but data that is not an event at all (an HTML error page) is not.
            return Err(AdapterError::MalformedUpstream("a stream event with no type".into()));
        }
        match kind.as_str() {
            "message_start" => {
                let s: StreamMessage = parse(&ev, &kind)?;
                if let Some(msg) = s.message {
                    if let Some(id) = msg.id {
                        self.head.id = id;
                    }
                    if let Some(model) = msg.model {
                        self.head.model.clone_from(&model);
                        m.model = Some(model);
                    }
                    if let Some(u) = msg.usage {
                        m.usage = Some(u.to_usage());
                        self.usage = Some(u);
                    }
                }
                self.start(out);
            }
            "content_block_start" => {
                self.start(out);
                let d: DeltaEvent = parse(&ev, &kind)?;
                if let Some(b) = d.content_block {
                    match b.kind.as_str() {
                        "tool_use" => {
                            let tool_index = self.tools.len();
                            self.tools.push((d.index.unwrap_or(0), tool_index));
                            out.push(chunk(
                                &self.head,
                                json!({ "tool_calls": [{
                                    "index": tool_index,
                                    "id": b.id.unwrap_or_default(),
                                    "type": "function",
                                    "function": { "name": b.name.unwrap_or_default(), "arguments": "" },
                                }] }),
                                None,
                            ));
                        }
                        "text" => {
                            if let Some(t) = b.text.filter(|t| !t.is_empty()) {
                                self.text(&t, m, out);
                            }
                        }
                        _ => {}
                    }
                }
            }
            "content_block_delta" => {
                self.start(out);
                let d: DeltaEvent = parse(&ev, &kind)?;
                if let Some(delta) = d.delta {
                    match delta.kind.as_deref() {
                        Some("text_delta") => self.text(delta.text.as_deref().unwrap_or(""), m, out),
                        Some("input_json_delta") => {
                            let idx = d.index.unwrap_or(0);
                            let args = delta.partial_json.unwrap_or_default();
                            if m.usage.is_none() {
                                m.output_text.push_str(&args);
                            }
                            if let Some(&(_, tool_index)) = self.tools.iter().find(|(b, _)| *b == idx) {
                                out.push(chunk(
                                    &self.head,
                                    json!({ "tool_calls": [{ "index": tool_index, "function": { "arguments": args } }] }),
                                    None,
                                ));
                            }
                        }
                        _ => {}
                    }
                }
            }
            "message_delta" => {
                let d: DeltaEvent = parse(&ev, &kind)?;
                if let Some(u) = d.usage {
                    let acc = self.usage.get_or_insert_with(AnthropicUsage::default);
                    acc.merge(u);
                    m.usage = Some(acc.to_usage());
                }
                if let Some(delta) = d.delta {
                    self.start(out);
                    let reason = finish_reason(delta.stop_reason.as_deref());
                    out.push(chunk(&self.head, json!({}), Some(reason)));
                }
            }
            "message_stop" => {
                if self.include_usage {
                    if let Some(u) = &m.usage {
                        out.push(usage_chunk(&self.head, u));
                    }
                }
                m.completed = true;
                m.terminator = openai::DONE.to_vec();
            }
            "error" => {
                m.failed = true;
                let d: DeltaEvent = parse(&ev, &kind)?;
                let e = d.error.unwrap_or(ErrorBody { kind: None, message: None });
                out.push(openai::error_chunk(
                    e.message.as_deref().unwrap_or("upstream stream error"),
                    e.kind.as_deref().unwrap_or("api_error"),
                ));
            }
            _ => {}
        }
        Ok(())
    }

    fn text(&self, t: &str, m: &mut Meter, out: &mut Vec<Bytes>) {
        if m.usage.is_none() {
            m.output_text.push_str(t);
        }
        out.push(chunk(&self.head, json!({ "content": t }), None));
    }

    pub(crate) fn finish(&mut self, _m: &mut Meter, _out: &mut Vec<Bytes>) {}
}
