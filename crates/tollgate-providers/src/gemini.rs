//! Gemini `generateContent` / `streamGenerateContent`: OpenAI chat requests
//! translated in, answers and SSE streams translated back to OpenAI chat
//! shape, and usage (cached tokens are *inside* `promptTokenCount`, thoughts
//! *outside* `candidatesTokenCount`).

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::anthropic::{content_text, data_url, image_url_of, max_tokens, parse_chat_body, stop_list, tool_call_parts};
use crate::inspect::invalid;
use crate::openai::{self, base, chat_completion, chunk, json_content_type, secret_header, ChatHead, ToolCall};
use crate::sse::Event;
use crate::{AdapterError, Meter, PreparedRequest, RequestInfo, ResponseTranslator, Target, TranslatedBody, Usage};

fn mime_from_url(url: &str) -> &'static str {
    let path = url.split(['?', '#']).next().unwrap_or(url).to_ascii_lowercase();
    if path.ends_with(".png") {
        "image/png"
    } else if path.ends_with(".gif") {
        "image/gif"
    } else if path.ends_with(".webp") {
        "image/webp"
    } else if path.ends_with(".pdf") {
        "application/pdf"
    } else {
        "image/jpeg"
    }
}

fn user_parts(content: &Value, param: &str, parts: &mut Vec<Value>) -> Result<(), AdapterError> {
    match content {
        Value::String(s) => {
            if !s.is_empty() {
                parts.push(json!({ "text": s }));
            }
        }
        Value::Array(items) => {
            for (i, p) in items.iter().enumerate() {
                let param = format!("{param}[{i}]");
                match p["type"].as_str().unwrap_or("text") {
                    "text" | "input_text" => {
                        let t = p["text"].as_str().ok_or_else(|| invalid(&format!("{param}.text"), "a string"))?;
                        if !t.is_empty() {
                            parts.push(json!({ "text": t }));
                        }
                    }
                    "image_url" => {
                        let url = image_url_of(p, &param)?;
                        parts.push(match data_url(url) {
                            Some((mime, data)) => json!({ "inlineData": { "mimeType": mime, "data": data } }),
                            None => json!({ "fileData": { "mimeType": mime_from_url(url), "fileUri": url } }),
                        });
                    }
                    "input_audio" => {
                        let a = &p["input_audio"];
                        let data = a["data"]
                            .as_str()
                            .ok_or_else(|| invalid(&format!("{param}.input_audio.data"), "a string"))?;
                        let fmt = a["format"].as_str().unwrap_or("wav");
                        parts.push(json!({ "inlineData": { "mimeType": format!("audio/{fmt}"), "data": data } }));
                    }
                    other => {
                        return Err(AdapterError::Unsupported(format!(
                            "content part type `{other}` cannot be sent to a provider of kind `gemini`"
                        )))
                    }
                }
            }
        }
        Value::Null => {}
        _ => return Err(invalid(param, "a string or an array")),
    }
    Ok(())
}

fn push_turn(turns: &mut Vec<(&'static str, Vec<Value>)>, role: &'static str, parts: Vec<Value>) {
    if parts.is_empty() {
        return;
    }
    match turns.last_mut() {
        Some((r, p)) if *r == role => p.extend(parts),
        _ => turns.push((role, parts)),
    }
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
    // functionResponse needs the function name; OpenAI tool messages only
    // carry the call id.
    let mut call_names: Vec<(String, String)> = Vec::new();
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
            "user" => {
                let mut parts = Vec::new();
                user_parts(content, &format!("{param}.content"), &mut parts)?;
                push_turn(&mut turns, "user", parts);
            }
            "assistant" => {
                let mut parts = Vec::new();
                let t = content_text(content);
                if !t.is_empty() {
                    parts.push(json!({ "text": t }));
                }
                for (j, tc) in m["tool_calls"].as_array().into_iter().flatten().enumerate() {
                    let (id, name, args) = tool_call_parts(tc, &format!("{param}.tool_calls[{j}]"))?;
                    call_names.push((id, name.clone()));
                    parts.push(json!({ "functionCall": { "name": name, "args": args } }));
                }
                push_turn(&mut turns, "model", parts);
            }
            "tool" => {
                let id = m["tool_call_id"].as_str().unwrap_or_default();
                let name = call_names.iter().find(|(c, _)| c == id).map(|(_, n)| n.clone()).unwrap_or_default();
                let text = content_text(content);
                let response = match serde_json::from_str::<Value>(&text) {
                    Ok(v @ Value::Object(_)) => v,
                    _ => json!({ "content": text }),
                };
                push_turn(
                    &mut turns,
                    "user",
                    vec![json!({ "functionResponse": { "name": name, "response": response } })],
                );
            }
            other => {
                return Err(AdapterError::Unsupported(format!(
                    "message role `{other}` cannot be sent to a provider of kind `gemini`"
                )))
            }
        }
    }

    let mut out = Map::new();
    out.insert(
        "contents".into(),
        turns.into_iter().map(|(role, parts)| json!({ "role": role, "parts": parts })).collect(),
    );
    if !system.is_empty() {
        out.insert("systemInstruction".into(), json!({ "parts": system }));
    }
    let mut config = Map::new();
    if let Some(n) = max_tokens(&b)? {
        config.insert("maxOutputTokens".into(), n.into());
    }
    for (from, to) in [
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
        ("n", "candidateCount"),
    ] {
        if let Some(v) = b.get(from).filter(|v| v.is_number()) {
            config.insert(to.into(), v.clone());
        }
    }
    if let Some(stop) = stop_list(b.get("stop").unwrap_or(&Value::Null))? {
        config.insert("stopSequences".into(), Value::Array(stop));
    }
    let format = b.get("response_format").unwrap_or(&Value::Null);
    match format["type"].as_str() {
        Some("json_object") => {
            config.insert("responseMimeType".into(), "application/json".into());
        }
        Some("json_schema") => {
            config.insert("responseMimeType".into(), "application/json".into());
            if let Some(s) = format["json_schema"].get("schema") {
                config.insert("responseJsonSchema".into(), s.clone());
            }
        }
        _ => {}
    }
    if !config.is_empty() {
        out.insert("generationConfig".into(), Value::Object(config));
    }
    if let Some(tools) = b.get("tools").and_then(Value::as_array) {
        let mut decls = Vec::new();
        for (i, t) in tools.iter().enumerate() {
            let f = &t["function"];
            let name = f["name"].as_str().ok_or_else(|| invalid(&format!("tools[{i}].function.name"), "a string"))?;
            let mut d = json!({ "name": name });
            if let Some(desc) = f["description"].as_str() {
                d["description"] = desc.into();
            }
            // `parametersJsonSchema` takes JSON Schema as OpenAI clients
            // write it (`parameters` only takes Gemini's OpenAPI subset).
            if !f["parameters"].is_null() {
                d["parametersJsonSchema"] = f["parameters"].clone();
            }
            decls.push(d);
        }
        if !decls.is_empty() {
            out.insert("tools".into(), json!([{ "functionDeclarations": decls }]));
        }
    }
    let choice = match b.get("tool_choice") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => Some(json!({ "mode": "AUTO" })),
            "none" => Some(json!({ "mode": "NONE" })),
            "required" => Some(json!({ "mode": "ANY" })),
            _ => return Err(invalid("tool_choice", "`auto`, `none`, `required` or a function")),
        },
        Some(v) => match v["function"]["name"].as_str() {
            Some(name) => Some(json!({ "mode": "ANY", "allowedFunctionNames": [name] })),
            None => return Err(invalid("tool_choice", "`auto`, `none`, `required` or a function")),
        },
    };
    if let Some(c) = choice {
        out.insert("toolConfig".into(), json!({ "functionCallingConfig": c }));
    }

    let model = crate::openai::path_segment(target.model.strip_prefix("models/").unwrap_or(target.model));
    let url = if info.stream {
        format!("{}/v1beta/models/{model}:streamGenerateContent?alt=sse", base(target))
    } else {
        format!("{}/v1beta/models/{model}:generateContent", base(target))
    };
    let mut headers = vec![json_content_type()];
    if let Some(key) = target.api_key {
        headers.push(secret_header("x-goog-api-key", key)?);
    }
    let body = serde_json::to_vec(&out).map_err(|e| AdapterError::Unsupported(e.to_string()))?;
    Ok(PreparedRequest { url, headers, body: Bytes::from(body), stream: info.stream })
}

// ------------------------------------------------------------------- usage

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UsageMetadata {
    prompt_token_count: Option<u64>,
    cached_content_token_count: Option<u64>,
    candidates_token_count: Option<u64>,
    thoughts_token_count: Option<u64>,
    tool_use_prompt_token_count: Option<u64>,
}

impl UsageMetadata {
    pub(crate) fn to_usage(&self) -> Usage {
        let prompt = self.prompt_token_count.unwrap_or(0);
        let cached = self.cached_content_token_count.unwrap_or(0).min(prompt);
        Usage {
            // Tool-use prompt tokens are counted apart from the prompt but billed as input.
            input: prompt - cached + self.tool_use_prompt_token_count.unwrap_or(0),
            cache_read: cached,
            output: self.candidates_token_count.unwrap_or(0),
            reasoning: self.thoughts_token_count.unwrap_or(0),
            ..Usage::default()
        }
    }
}

// --------------------------------------------------------------- responses

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Response {
    #[serde(default)]
    candidates: Vec<Candidate>,
    usage_metadata: Option<UsageMetadata>,
    model_version: Option<String>,
    response_id: Option<String>,
    prompt_feedback: Option<PromptFeedback>,
    error: Option<ErrorBody>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PromptFeedback {
    block_reason: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    message: Option<String>,
    status: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    content: Option<Content>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Content {
    #[serde(default)]
    parts: Vec<Part>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Part {
    text: Option<String>,
    #[serde(default)]
    thought: bool,
    function_call: Option<FunctionCall>,
}

#[derive(Deserialize)]
struct FunctionCall {
    id: Option<String>,
    name: Option<String>,
    args: Option<Value>,
}

fn finish_reason(reason: &str, has_tool_calls: bool) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => "content_filter",
        _ if has_tool_calls => "tool_calls",
        _ => "stop",
    }
}

fn tool_call(f: FunctionCall, index: usize) -> ToolCall {
    ToolCall {
        // Gemini names calls only sometimes; OpenAI clients need an id to answer.
        id: f.id.unwrap_or_else(|| format!("call_{index}")),
        name: f.name.unwrap_or_default(),
        arguments: f.args.map_or_else(|| "{}".to_owned(), |a| a.to_string()),
    }
}

pub(crate) fn translate_to_chat_body(t: &ResponseTranslator, body: &[u8]) -> Result<TranslatedBody, AdapterError> {
    let r: Response = serde_json::from_slice(body).map_err(|e| AdapterError::MalformedUpstream(e.to_string()))?;
    if let Some(e) = r.error {
        return Err(AdapterError::MalformedUpstream(format!(
            "error in a success answer: {} {}",
            e.status.unwrap_or_default(),
            e.message.unwrap_or_default()
        )));
    }
    let usage = r.usage_metadata.as_ref().map(UsageMetadata::to_usage);
    let mut text: Option<String> = None;
    let mut calls = Vec::new();
    let mut reason = None;
    if let Some(c) = r.candidates.into_iter().next() {
        reason = c.finish_reason;
        for p in c.content.map(|c| c.parts).unwrap_or_default() {
            if let Some(f) = p.function_call {
                calls.push(tool_call(f, calls.len()));
            } else if let Some(s) = p.text.filter(|_| !p.thought) {
                text.get_or_insert_with(String::new).push_str(&s);
            }
        }
    }
    let finish = match (&reason, r.prompt_feedback.and_then(|f| f.block_reason)) {
        (None, Some(_)) => "content_filter",
        (r, _) => finish_reason(r.as_deref().unwrap_or("STOP"), !calls.is_empty()),
    };
    let head = ChatHead {
        id: r.response_id.unwrap_or_else(|| "chatcmpl-gemini".into()),
        created: t.created,
        model: r.model_version.clone().unwrap_or_else(|| t.model.clone()),
    };
    let output_text = if usage.is_none() {
        let mut s = text.clone().unwrap_or_default();
        calls.iter().for_each(|c| s.push_str(&c.arguments));
        s
    } else {
        String::new()
    };
    let out = chat_completion(&head, text, &calls, finish, usage.as_ref());
    Ok(TranslatedBody {
        body: out,
        usage,
        model: r.model_version,
        service_tier: None,
        output_text,
        provider_cost: None,
    })
}

/// Gemini SSE (each event a whole `GenerateContentResponse`) → OpenAI chunks.
#[derive(Debug)]
pub(crate) struct ChatStream {
    head: ChatHead,
    include_usage: bool,
    started: bool,
    tool_calls: usize,
    finished: bool,
}

impl ChatStream {
    pub(crate) fn new(t: &ResponseTranslator) -> Self {
        ChatStream {
            head: ChatHead { id: "chatcmpl-gemini".into(), created: t.created, model: t.model.clone() },
            include_usage: t.client_wants_stream_usage,
            started: false,
            tool_calls: 0,
            finished: false,
        }
    }

    pub(crate) fn on_event(&mut self, ev: Event, m: &mut Meter, out: &mut Vec<Bytes>) -> Result<(), AdapterError> {
        if !ev.has_data || ev.data.trim() == "[DONE]" {
            return Ok(());
        }
        let r: Response = serde_json::from_str(&ev.data)
            .map_err(|e| AdapterError::MalformedUpstream(format!("stream event: {e}")))?;
        if let Some(e) = r.error {
            m.failed = true;
            out.push(openai::error_chunk(
                e.message.as_deref().unwrap_or("upstream stream error"),
                e.status.as_deref().unwrap_or("api_error"),
            ));
            return Ok(());
        }
        if let Some(id) = r.response_id {
            if !self.started {
                self.head.id = id;
            }
        }
        if let Some(v) = r.model_version {
            if !self.started {
                self.head.model.clone_from(&v);
            }
            m.model = Some(v);
        }
        if let Some(u) = &r.usage_metadata {
            m.usage = Some(u.to_usage());
        }
        if !self.started {
            self.started = true;
            out.push(chunk(&self.head, json!({ "role": "assistant", "content": "" }), None));
        }
        let mut reason = None;
        if let Some(c) = r.candidates.into_iter().next() {
            for p in c.content.map(|c| c.parts).unwrap_or_default() {
                if let Some(f) = p.function_call {
                    let index = self.tool_calls;
                    self.tool_calls += 1;
                    let call = tool_call(f, index);
                    m.output_text.push_str(&call.arguments);
                    out.push(chunk(
                        &self.head,
                        json!({ "tool_calls": [{
                            "index": index,
                            "id": call.id,
                            "type": "function",
                            "function": { "name": call.name, "arguments": call.arguments },
                        }] }),
                        None,
                    ));
                } else if let Some(s) = p.text.filter(|s| !p.thought && !s.is_empty()) {
                    m.output_text.push_str(&s);
                    out.push(chunk(&self.head, json!({ "content": s }), None));
                }
            }
            reason = c.finish_reason;
        }
        if reason.is_none() && r.prompt_feedback.and_then(|f| f.block_reason).is_some() {
            reason = Some("PROHIBITED_CONTENT".into());
        }
        if let Some(reason) = reason.filter(|_| !self.finished) {
            self.finished = true;
            m.completed = true;
            let fr = finish_reason(&reason, self.tool_calls > 0);
            out.push(chunk(&self.head, json!({}), Some(fr)));
        }
        Ok(())
    }

    pub(crate) fn finish(&mut self, m: &mut Meter, out: &mut Vec<Bytes>) {
        openai::finish_translated(&self.head, self.include_usage, m, out);
    }
}

// ------------------------------------------------------ the native API (client)

/// Reads a native `generateContent` body: the prompt text (contents, system
/// instruction, tools) and `generationConfig.maxOutputTokens`. The model and
/// whether it streams are in the URL, so the gateway sets them.
pub(crate) fn inspect_native(body: &[u8]) -> Result<RequestInfo, AdapterError> {
    let text = crate::inspect::object_body(body)?;
    let v: Map<String, Value> = serde_json::from_str(text).map_err(|e| crate::inspect::not_json(&e))?;
    let contents = v.get("contents").and_then(Value::as_array).ok_or_else(|| invalid("contents", "an array"))?;
    let mut prompt = String::new();
    let mut push_parts = |parts: &Value| {
        for p in parts.as_array().into_iter().flatten() {
            if let Some(t) = p["text"].as_str() {
                if !prompt.is_empty() {
                    prompt.push('\n');
                }
                prompt.push_str(t);
            }
        }
    };
    if let Some(s) = v.get("systemInstruction") {
        push_parts(&s["parts"]);
    }
    for c in contents {
        if !c.is_object() {
            return Err(invalid("contents[]", "an object"));
        }
        push_parts(&c["parts"]);
    }
    if let Some(t) = v.get("tools").filter(|t| !t.is_null()) {
        prompt.push('\n');
        prompt.push_str(&t.to_string());
    }
    let max_output_tokens = match v.get("generationConfig").and_then(|g| g.get("maxOutputTokens")) {
        None | Some(Value::Null) => None,
        Some(n) => Some(n.as_u64().ok_or_else(|| invalid("generationConfig.maxOutputTokens", "an integer"))?),
    };
    Ok(RequestInfo { prompt_text: prompt, max_output_tokens, ..RequestInfo::default() })
}

/// A native body to AI Studio, as it came (the model is in the URL).
pub(crate) fn prepare_native(
    target: &Target<'_>,
    body: &[u8],
    info: &RequestInfo,
) -> Result<PreparedRequest, AdapterError> {
    let model = crate::openai::path_segment(target.model.strip_prefix("models/").unwrap_or(target.model));
    let url = if info.stream {
        format!("{}/v1beta/models/{model}:streamGenerateContent?alt=sse", base(target))
    } else {
        format!("{}/v1beta/models/{model}:generateContent", base(target))
    };
    let mut headers = vec![json_content_type()];
    if let Some(key) = target.api_key {
        headers.push(secret_header("x-goog-api-key", key)?);
    }
    Ok(PreparedRequest { url, headers, body: Bytes::copy_from_slice(body), stream: info.stream })
}

/// A native answer, relayed as it is; its usage and model read.
pub(crate) fn translate_native_body(body: &[u8]) -> Result<TranslatedBody, AdapterError> {
    let r: Response = serde_json::from_slice(body).map_err(|e| AdapterError::MalformedUpstream(e.to_string()))?;
    let usage = r.usage_metadata.as_ref().map(UsageMetadata::to_usage);
    let mut output_text = String::new();
    if usage.is_none() {
        for c in r.candidates {
            for p in c.content.map(|c| c.parts).unwrap_or_default() {
                output_text.push_str(p.text.as_deref().unwrap_or(""));
            }
        }
    }
    Ok(TranslatedBody {
        body: Bytes::copy_from_slice(body),
        usage,
        model: r.model_version,
        service_tier: None,
        output_text,
        provider_cost: None,
    })
}

/// A native SSE stream, relayed event by event as it came, metered from
/// `usageMetadata` (the last one wins); complete once a candidate finished.
#[derive(Debug, Default)]
pub(crate) struct NativeStream;

impl NativeStream {
    pub(crate) fn on_event(&mut self, ev: Event, m: &mut Meter, out: &mut Vec<Bytes>) -> Result<(), AdapterError> {
        if !ev.has_data {
            out.push(ev.raw);
            return Ok(());
        }
        let r: Response = serde_json::from_str(&ev.data)
            .map_err(|e| AdapterError::MalformedUpstream(format!("stream event: {e}")))?;
        if r.error.is_some() {
            m.failed = true;
        }
        if let Some(u) = &r.usage_metadata {
            m.usage = Some(u.to_usage());
        }
        if let Some(v) = r.model_version {
            m.model = Some(v);
        }
        for c in r.candidates {
            if m.usage.is_none() {
                for p in c.content.iter().flat_map(|c| c.parts.iter()) {
                    m.output_text.push_str(p.text.as_deref().unwrap_or(""));
                }
            }
            if c.finish_reason.is_some() {
                m.completed = true;
            }
        }
        out.push(ev.raw);
        Ok(())
    }
}
