//! Reads the few fields the gateway needs from a client body, borrowing
//! everything else as unparsed JSON so the hot path allocates little.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::{AdapterError, ApiFormat, RequestInfo};

/// The top-level fields any of the four endpoints may carry; each stays raw
/// until it is type-checked with a message naming the parameter.
#[derive(Deserialize)]
struct Top<'a> {
    #[serde(borrow)]
    model: Option<&'a RawValue>,
    #[serde(borrow)]
    stream: Option<&'a RawValue>,
    #[serde(borrow)]
    stream_options: Option<&'a RawValue>,
    #[serde(borrow)]
    user: Option<&'a RawValue>,
    #[serde(borrow)]
    metadata: Option<&'a RawValue>,
    #[serde(borrow)]
    max_tokens: Option<&'a RawValue>,
    #[serde(borrow)]
    service_tier: Option<&'a RawValue>,
    #[serde(borrow)]
    max_completion_tokens: Option<&'a RawValue>,
    #[serde(borrow)]
    max_output_tokens: Option<&'a RawValue>,
    #[serde(borrow)]
    messages: Option<&'a RawValue>,
    #[serde(borrow)]
    system: Option<&'a RawValue>,
    #[serde(borrow)]
    instructions: Option<&'a RawValue>,
    #[serde(borrow)]
    tools: Option<&'a RawValue>,
    #[serde(borrow)]
    input: Option<&'a RawValue>,
}

/// A message or content block: only what can hold prompt text.
#[derive(Deserialize)]
struct Piece<'a> {
    #[serde(borrow)]
    content: Option<&'a RawValue>,
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow)]
    tool_calls: Option<&'a RawValue>,
    /// Anthropic `tool_use.input`, OpenAI `function_call.arguments`.
    #[serde(borrow)]
    input: Option<&'a RawValue>,
    #[serde(borrow)]
    arguments: Option<Cow<'a, str>>,
    /// Responses API `function_call_output.output`.
    #[serde(borrow)]
    output: Option<&'a RawValue>,
}

pub(crate) fn invalid(param: &str, expected: &str) -> AdapterError {
    AdapterError::InvalidRequest { message: format!("`{param}` must be {expected}"), param: Some(param.to_owned()) }
}

/// `null` counts as absent, as the OpenAI API treats it.
fn typed<T: DeserializeOwned>(raw: Option<&RawValue>, param: &str, expected: &str) -> Result<Option<T>, AdapterError> {
    match raw {
        None => Ok(None),
        Some(r) if r.get() == "null" => Ok(None),
        Some(r) => serde_json::from_str::<T>(r.get()).map(Some).map_err(|_| invalid(param, expected)),
    }
}

fn first_byte(raw: &RawValue) -> u8 {
    raw.get().as_bytes().first().copied().unwrap_or(b'n')
}

/// Parse the body as a JSON object, with errors a client can act on.
/// Deepest JSON nesting a request body may have. Provider APIs need a few
/// levels (tool schemas a dozen or so); a body nested thousands deep is an
/// attack on whoever parses it next, and is refused at the edge.
pub const MAX_JSON_DEPTH: usize = 64;

/// Whether `body`'s arrays and objects nest at most `max` deep. A body with
/// at most `max` brackets in all cannot nest deeper, which a SIMD count
/// tells at once; only others are scanned (outside strings).
pub fn nesting_within(body: &[u8], max: usize) -> bool {
    if memchr::memchr2_iter(b'{', b'[', body).count() <= max {
        return true;
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in body {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return false;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

pub(crate) fn object_body(body: &[u8]) -> Result<&str, AdapterError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| AdapterError::InvalidRequest { message: "request body is not valid UTF-8".into(), param: None })?;
    if !nesting_within(body, MAX_JSON_DEPTH) {
        return Err(AdapterError::InvalidRequest {
            message: format!("request body nests JSON deeper than {MAX_JSON_DEPTH} levels"),
            param: None,
        });
    }
    let first = text.trim_start().as_bytes().first().copied();
    if first != Some(b'{') {
        // Still tell "not JSON" apart from "JSON but not an object".
        return Err(match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Ok(_) => AdapterError::InvalidRequest { message: "request body must be a JSON object".into(), param: None },
            Err(e) => not_json(&e),
        });
    }
    Ok(text)
}

pub(crate) fn not_json(e: &serde_json::Error) -> AdapterError {
    AdapterError::InvalidRequest { message: format!("request body is not valid JSON: {e}"), param: None }
}

pub(crate) fn inspect(format: ApiFormat, body: &[u8]) -> Result<RequestInfo, AdapterError> {
    let text = object_body(body)?;
    let top: Top<'_> = serde_json::from_str(text).map_err(|e| not_json(&e))?;
    let mut info = RequestInfo {
        model: typed(top.model, "model", "a string")?,
        stream: typed(top.stream, "stream", "a boolean")?.unwrap_or(false),
        service_tier: typed(top.service_tier, "service_tier", "a string")?,
        ..RequestInfo::default()
    };
    if let Some(opts) = top.stream_options {
        #[derive(Deserialize)]
        struct StreamOptions {
            include_usage: Option<bool>,
        }
        let o: Option<StreamOptions> = typed(Some(opts), "stream_options", "an object")?;
        info.client_wants_stream_usage = o.and_then(|o| o.include_usage) == Some(true);
    }
    info.max_output_tokens = match format {
        ApiFormat::OpenAiChat => match typed(top.max_completion_tokens, "max_completion_tokens", "an integer")? {
            Some(n) => Some(n),
            None => typed(top.max_tokens, "max_tokens", "an integer")?,
        },
        // Required by the Messages API: refused here rather than by the provider.
        ApiFormat::AnthropicMessages => match typed(top.max_tokens, "max_tokens", "an integer")? {
            Some(n) => Some(n),
            None => return Err(invalid("max_tokens", "an integer")),
        },
        ApiFormat::OpenAiResponses => typed(top.max_output_tokens, "max_output_tokens", "an integer")?,
        ApiFormat::OpenAiEmbeddings | ApiFormat::Media(_) | ApiFormat::GeminiNative => None,
    };

    let mut prompt = String::new();
    match format {
        ApiFormat::OpenAiChat | ApiFormat::AnthropicMessages => {
            let messages = match top.messages {
                Some(m) if first_byte(m) != b'n' => m,
                _ => return Err(invalid("messages", "an array")),
            };
            let list: Vec<&RawValue> =
                serde_json::from_str(messages.get()).map_err(|_| invalid("messages", "an array"))?;
            if format == ApiFormat::AnthropicMessages {
                if let Some(sys) = top.system {
                    if first_byte(sys) == b'{' {
                        return Err(invalid("system", "a string or an array"));
                    }
                    collect_content(sys, "system", &mut prompt)?;
                }
            }
            for (i, m) in list.iter().enumerate() {
                if first_byte(m) != b'{' {
                    return Err(invalid(&format!("messages[{i}]"), "an object"));
                }
                check_turn(format, m, i)?;
                collect_piece(m, &format!("messages[{i}]"), &mut prompt)?;
            }
        }
        ApiFormat::OpenAiResponses => {
            if let Some(ins) = top.instructions {
                if let Some(s) = typed::<String>(Some(ins), "instructions", "a string")? {
                    push_text(&mut prompt, &s);
                }
            }
            if let Some(input) = top.input {
                collect_content(input, "input", &mut prompt)?;
            }
        }
        ApiFormat::OpenAiEmbeddings => match top.input {
            Some(input) if first_byte(input) != b'n' => collect_embedding_input(input, &mut prompt)?,
            // Nothing to embed: refused here rather than by the provider.
            _ => return Err(invalid("input", "a string or an array")),
        },
        ApiFormat::Media(_) | ApiFormat::GeminiNative => {}
    }
    if let Some(tools) = top.tools {
        if first_byte(tools) != b'n' {
            if first_byte(tools) != b'[' {
                return Err(invalid("tools", "an array"));
            }
            push_text(&mut prompt, tools.get());
        }
    }
    info.prompt_text = prompt;

    match format {
        ApiFormat::AnthropicMessages => {
            #[derive(Deserialize)]
            struct AnthropicMetadata {
                user_id: Option<String>,
            }
            let m: Option<AnthropicMetadata> = typed(top.metadata, "metadata", "an object")?;
            info.user = m.and_then(|m| m.user_id);
        }
        _ => {
            info.user = typed(top.user, "user", "a string")?;
            let m: Option<BTreeMap<String, serde_json::Value>> = typed(top.metadata, "metadata", "an object")?;
            info.metadata = m
                .unwrap_or_default()
                .into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| {
                    let v = match v {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (k, v)
                })
                .collect();
        }
    }
    Ok(info)
}

/// A conversation turn names its `role`, and carries `content` (an OpenAI
/// assistant turn may leave it out: its tool calls are the content).
fn check_turn(format: ApiFormat, m: &RawValue, i: usize) -> Result<(), AdapterError> {
    #[derive(Deserialize)]
    struct Turn<'a> {
        #[serde(borrow)]
        role: Option<&'a RawValue>,
        #[serde(borrow)]
        content: Option<&'a RawValue>,
    }
    let t: Turn<'_> = serde_json::from_str(m.get()).map_err(|_| invalid(&format!("messages[{i}]"), "an object"))?;
    let role: Option<Cow<'_, str>> = match t.role {
        Some(r) if first_byte(r) == b'"' => serde_json::from_str(r.get()).ok(),
        _ => None,
    };
    let Some(role) = role else { return Err(invalid(&format!("messages[{i}].role"), "a string")) };
    let content_absent = t.content.is_none_or(|c| first_byte(c) == b'n');
    if content_absent && !(format == ApiFormat::OpenAiChat && role == "assistant") {
        return Err(invalid(&format!("messages[{i}].content"), "a string or an array"));
    }
    Ok(())
}

fn push_text(out: &mut String, s: &str) {
    if s.is_empty() {
        return;
    }
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(s);
}

/// A string, an array of blocks/items, or an object with content.
fn collect_content(raw: &RawValue, param: &str, out: &mut String) -> Result<(), AdapterError> {
    match first_byte(raw) {
        b'"' => {
            let s: String = serde_json::from_str(raw.get()).map_err(|_| invalid(param, "a string"))?;
            push_text(out, &s);
        }
        b'[' => {
            let items: Vec<&RawValue> =
                serde_json::from_str(raw.get()).map_err(|_| invalid(param, "a string or an array"))?;
            for (i, item) in items.iter().enumerate() {
                match first_byte(item) {
                    b'{' => collect_piece(item, &format!("{param}[{i}]"), out)?,
                    b'"' => collect_content(item, param, out)?,
                    _ => {}
                }
            }
        }
        b'{' => collect_piece(raw, param, out)?,
        b'n' => {}
        _ => return Err(invalid(param, "a string or an array")),
    }
    Ok(())
}

fn collect_piece(raw: &RawValue, param: &str, out: &mut String) -> Result<(), AdapterError> {
    let p: Piece<'_> = serde_json::from_str(raw.get()).map_err(|_| invalid(param, "an object"))?;
    if let Some(t) = &p.text {
        push_text(out, t);
    }
    if let Some(c) = p.content {
        collect_content(c, &format!("{param}.content"), out)?;
    }
    if let Some(tc) = p.tool_calls {
        if first_byte(tc) != b'n' {
            #[derive(Deserialize)]
            struct Call<'a> {
                #[serde(borrow)]
                function: Option<Function<'a>>,
            }
            #[derive(Deserialize)]
            struct Function<'a> {
                #[serde(borrow)]
                name: Option<Cow<'a, str>>,
                #[serde(borrow)]
                arguments: Option<Cow<'a, str>>,
            }
            let param = format!("{param}.tool_calls");
            let calls: Vec<Call<'_>> = serde_json::from_str(tc.get()).map_err(|_| invalid(&param, "an array"))?;
            for f in calls.into_iter().filter_map(|c| c.function) {
                push_text(out, f.name.as_deref().unwrap_or(""));
                push_text(out, f.arguments.as_deref().unwrap_or(""));
            }
        }
    }
    if let Some(input) = p.input {
        push_text(out, input.get());
    }
    if let Some(a) = &p.arguments {
        push_text(out, a);
    }
    if let Some(o) = p.output {
        if first_byte(o) == b'"' {
            collect_content(o, &format!("{param}.output"), out)?;
        }
    }
    Ok(())
}

fn collect_embedding_input(raw: &RawValue, out: &mut String) -> Result<(), AdapterError> {
    match first_byte(raw) {
        b'"' => collect_content(raw, "input", out),
        b'[' => {
            let items: Vec<&RawValue> =
                serde_json::from_str(raw.get()).map_err(|_| invalid("input", "a string or an array"))?;
            for item in items {
                // Token-id arrays carry no text to count.
                if first_byte(item) == b'"' {
                    collect_content(item, "input", out)?;
                }
            }
            Ok(())
        }
        _ => Err(invalid("input", "a string or an array")),
    }
}
