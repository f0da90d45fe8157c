//! Deterministic token usage and reply text, derived only from the request.
//!
//! The formulas are documented at the crate root; this module is the one
//! place they are computed, so every provider shape reports the same numbers.

use serde_json::Value;

/// Output tokens when the request names no limit and no `output_tokens` knob.
pub const DEFAULT_OUTPUT_TOKENS: u64 = 24;

/// Model-name fragments (matched case-insensitively) that mark a reasoning model.
pub const REASONING_MARKERS: [&str; 6] = ["o1", "o3", "o4", "gpt-5", "reason", "think"];

/// Keys whose string values count as prompt text, at any depth. Arrays inherit
/// the key that holds them, objects start afresh (so `{"type":"text"}` does not
/// count but its `"text"` does).
const TEXT_KEYS: [&str; 5] = ["content", "text", "system", "instructions", "input"];

/// Words beyond the first three ("mock reply <digest>") cycle through these.
const VOCAB: [&str; 10] = ["tokens", "flow", "through", "the", "gateway", "and", "each", "one", "is", "metered"];

/// Generated text is capped so a huge `output_tokens` knob cannot exhaust
/// memory; the reported usage is not capped.
const MAX_REPLY_WORDS: u64 = 4096;

/// The usage the mock reports for one request, in one provider-neutral
/// convention: `prompt_tokens` counts all input (cache reads and writes
/// included), `output_tokens` all output (reasoning included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MockUsage {
    /// All input tokens: `8 + T/4`.
    pub prompt_tokens: u64,
    /// Provider cache reads, part of `prompt_tokens`: `prompt/4`.
    pub cache_read_tokens: u64,
    /// Anthropic cache writes with 5-minute TTL, part of `prompt_tokens`.
    pub cache_write_5m_tokens: u64,
    /// Anthropic cache writes with 1-hour TTL, part of `prompt_tokens`.
    pub cache_write_1h_tokens: u64,
    /// All output tokens, reasoning included.
    pub output_tokens: u64,
    /// Reasoning tokens, part of `output_tokens`.
    pub reasoning_tokens: u64,
}

impl MockUsage {
    /// Anthropic cache writes of both TTLs (`prompt/8`); only Anthropic (and
    /// Bedrock, for a request that uses the cache) reports them.
    pub fn cache_write_tokens(&self) -> u64 {
        self.cache_write_5m_tokens + self.cache_write_1h_tokens
    }

    /// Anthropic's `input_tokens`: the part of the prompt neither read from
    /// nor written to the cache.
    pub fn anthropic_input_tokens(&self) -> u64 {
        self.prompt_tokens - self.cache_read_tokens - self.cache_write_tokens()
    }

    /// Output tokens that show up as text (output minus reasoning).
    pub fn visible_output_tokens(&self) -> u64 {
        self.output_tokens - self.reasoning_tokens
    }
}

/// The usage for a prompt of `prompt_text_bytes` bytes of text, sent to
/// `model`, with the request's smallest output limit (`max_tokens`,
/// `max_completion_tokens`, `max_output_tokens`, Gemini's `maxOutputTokens`,
/// Bedrock's `inferenceConfig.maxTokens`)
/// and the `output_tokens` knob if any.
pub fn usage_for(
    prompt_text_bytes: u64,
    model: &str,
    max_tokens: Option<u64>,
    output_tokens: Option<u64>,
) -> MockUsage {
    let prompt = 8 + prompt_text_bytes / 4;
    let write = prompt / 8;
    let write_5m = write / 2;
    let output =
        output_tokens.unwrap_or_else(|| max_tokens.map_or(DEFAULT_OUTPUT_TOKENS, |m| m.min(DEFAULT_OUTPUT_TOKENS)));
    let reasoning = if is_reasoning_model(model) { output / 2 } else { 0 };
    MockUsage {
        prompt_tokens: prompt,
        cache_read_tokens: prompt / 4,
        cache_write_5m_tokens: write_5m,
        cache_write_1h_tokens: write - write_5m,
        output_tokens: output,
        reasoning_tokens: reasoning,
    }
}

/// The usage the mock would report for this raw request body (any of the
/// supported request formats) sent to `model`, `[mock output_tokens=N]`
/// directive included. `None` if the body is not JSON.
pub fn usage_for_request(body: &[u8], model: &str) -> Option<MockUsage> {
    let json: Value = serde_json::from_slice(body).ok()?;
    let knob = crate::knobs::body_output_tokens(body);
    Some(usage_for(measure_prompt(&json).bytes, model, max_output_limit(&json), knob))
}

/// The mock's token count of one string (an image prompt, a transcription
/// prompt or transcript, a speech input): `8 + bytes/4`, the chat prompt
/// formula for a prompt of just that text.
pub fn text_tokens(text: &str) -> u64 {
    8 + text.len() as u64 / 4
}

/// Image tokens a `gpt-image-*` edit bills per input image part (`image` /
/// `image[]`; the mask is not counted).
pub const GPT_IMAGE_INPUT_IMAGE_TOKENS: u64 = 194;

/// Output tokens of one `gpt-image-*` image, from OpenAI's gpt-image-1 table:
/// rows by `quality` (`low`, `medium`, `high`; `auto` and anything else count
/// as `high`), columns by `size` (`1024x1024`, `1024x1536`, `1536x1024`;
/// `auto` and anything else count as `1024x1024`).
pub fn gpt_image_output_tokens(quality: &str, size: &str) -> u64 {
    let (square, portrait, landscape) = match quality {
        "low" => (272, 408, 400),
        "medium" => (1056, 1584, 1568),
        _ => (4160, 6240, 6208),
    };
    match size {
        "1024x1536" => portrait,
        "1536x1024" => landscape,
        _ => square,
    }
}

/// Bytes a second of audio the mock assumes for an upload that is not a WAV file.
pub const NON_WAV_BYTES_PER_SECOND: u64 = 16_000;

/// The duration of an uploaded audio file, in milliseconds. A RIFF/WAVE file:
/// `ceil(data chunk size × 1000 / byte rate)`, the byte rate from its `fmt `
/// chunk, walking the chunks (sizes little-endian, odd sizes padded to even);
/// a data chunk declared longer than the file counts only the bytes present.
/// Anything else (or a WAV without a `fmt ` chunk before `data`, or with a
/// zero byte rate): `ceil(bytes × 1000 / 16,000)`, i.e. 16,000 bytes a second.
pub fn audio_duration_ms(file: &[u8]) -> u64 {
    let fallback = || (file.len() as u64 * 1000).div_ceil(NON_WAV_BYTES_PER_SECOND);
    wav_duration_ms(file).unwrap_or_else(fallback)
}

fn wav_duration_ms(file: &[u8]) -> Option<u64> {
    if file.len() < 12 || &file[..4] != b"RIFF" || &file[8..12] != b"WAVE" {
        return None;
    }
    let le32 = |at: usize| -> Option<u64> {
        let b = file.get(at..at + 4)?;
        Some(u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
    };
    let mut at = 12usize;
    let mut byte_rate = None;
    while at + 8 <= file.len() {
        let id = &file[at..at + 4];
        let size = le32(at + 4)?;
        let body = at + 8;
        match id {
            b"fmt " => byte_rate = Some(le32(body + 8)?),
            b"data" => {
                let present = (file.len() - body) as u64;
                let rate = byte_rate.filter(|&r| r > 0)?;
                return Some((size.min(present) * 1000).div_ceil(rate));
            }
            _ => {}
        }
        at = body.checked_add(usize::try_from(size + size % 2).ok()?)?;
    }
    None
}

/// Whisper-style billing: whole seconds, rounded up (`ceil(ms / 1000)`).
pub fn billed_seconds(duration_ms: u64) -> u64 {
    duration_ms.div_ceil(1000)
}

/// Audio input tokens of a `gpt-4o*` transcription: 10 a second, `ceil(ms / 100)`.
pub fn transcription_audio_tokens(duration_ms: u64) -> u64 {
    duration_ms.div_ceil(100)
}

/// Milliseconds of speech the mock generates per character (Unicode scalar) of input.
pub const SPEECH_MS_PER_CHAR: u64 = 60;

/// Bytes a millisecond of the mock's speech: 24 kHz, 16-bit, mono PCM.
pub const SPEECH_BYTES_PER_MS: u64 = 48;

/// Audio output tokens of a streamed (`sse`) speech answer: 20 a second, `ceil(ms / 50)`.
pub fn speech_output_tokens(duration_ms: u64) -> u64 {
    duration_ms.div_ceil(50)
}

/// Whether the mock treats `model` as a reasoning model.
pub fn is_reasoning_model(model: &str) -> bool {
    let lower = model.to_ascii_lowercase();
    REASONING_MARKERS.iter().any(|m| lower.contains(m))
}

/// Size and an order-independent digest of a request's prompt text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PromptText {
    pub bytes: u64,
    /// Sum of per-string hashes, so moving the system prompt between
    /// formats (OpenAI message vs Anthropic `system`) keeps the same reply.
    pub digest: u64,
}

pub(crate) fn measure_prompt(json: &Value) -> PromptText {
    let mut acc = PromptText::default();
    walk(json, false, &mut acc);
    acc
}

fn walk(value: &Value, counted: bool, acc: &mut PromptText) {
    match value {
        Value::String(s) if counted => {
            acc.bytes += s.len() as u64;
            acc.digest = acc.digest.wrapping_add(fnv1a(s.as_bytes()));
        }
        // Token-id arrays (embeddings input) count as four bytes a token.
        Value::Number(n) if counted => {
            acc.bytes += 4;
            acc.digest = acc.digest.wrapping_add(fnv1a(&n.as_u64().unwrap_or(0).to_le_bytes()));
        }
        Value::Array(items) => items.iter().for_each(|item| walk(item, counted, acc)),
        Value::Object(map) => map.iter().for_each(|(k, v)| walk(v, TEXT_KEYS.contains(&k.as_str()), acc)),
        _ => {}
    }
}

/// The smallest output limit the request names, in any provider's spelling.
pub(crate) fn max_output_limit(json: &Value) -> Option<u64> {
    let candidates = [
        json.get("max_tokens"),
        json.get("max_completion_tokens"),
        json.get("max_output_tokens"),
        json.get("generationConfig").and_then(|g| g.get("maxOutputTokens")),
        json.get("generation_config").and_then(|g| g.get("max_output_tokens")),
        json.get("inferenceConfig").and_then(|c| c.get("maxTokens")),
    ];
    candidates.into_iter().flatten().filter_map(Value::as_u64).min()
}

pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// The deterministic reply: `words` words, the first three being
/// `mock reply <8 hex digits of the prompt digest>`.
pub(crate) fn reply_text(words: u64, digest: u64) -> String {
    let words = words.min(MAX_REPLY_WORDS) as usize;
    let mut text = String::with_capacity(words * 7);
    let tag = format!("{:08x}", digest >> 32);
    for i in 0..words {
        if i > 0 {
            text.push(' ');
        }
        match i {
            0 => text.push_str("mock"),
            1 => text.push_str("reply"),
            2 => text.push_str(&tag),
            _ => text.push_str(VOCAB[(i - 3) % VOCAB.len()]),
        }
    }
    text
}

/// Splits `text` at word boundaries into exactly `parts` pieces (some may be
/// empty) whose concatenation is `text`; a piece after the first word keeps
/// its leading space, as real token deltas do.
pub(crate) fn split_deltas(text: &str, parts: usize) -> Vec<&str> {
    let parts = parts.max(1);
    let starts: Vec<usize> = std::iter::once(0).chain(text.match_indices(' ').map(|(i, _)| i)).collect();
    let words = if text.is_empty() { 0 } else { starts.len() };
    let boundary = |k: usize| -> usize {
        let w = k * words / parts;
        if w >= words {
            text.len()
        } else {
            starts[w]
        }
    };
    (0..parts).map(|k| &text[boundary(k)..boundary(k + 1)]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn formulas_follow_the_documented_table() {
        let u = usage_for(400, "gpt-4o-mini", None, None);
        assert_eq!(u.prompt_tokens, 108);
        assert_eq!(u.cache_read_tokens, 27);
        assert_eq!(u.cache_write_5m_tokens, 6);
        assert_eq!(u.cache_write_1h_tokens, 7);
        assert_eq!(u.anthropic_input_tokens(), 108 - 27 - 13);
        assert_eq!(u.output_tokens, 24);
        assert_eq!(u.reasoning_tokens, 0);

        let r = usage_for(0, "o3-mini", Some(10), None);
        assert_eq!((r.prompt_tokens, r.output_tokens, r.reasoning_tokens), (8, 10, 5));
        let k = usage_for(0, "claude-think", Some(10), Some(99));
        assert_eq!((k.output_tokens, k.reasoning_tokens), (99, 49));
    }

    #[test]
    fn prompt_text_counts_only_textual_fields() {
        let chat = json!({"model":"m","messages":[
            {"role":"system","content":"abcd"},
            {"role":"user","content":[{"type":"text","text":"efgh"},{"type":"image_url","image_url":{"url":"data:zzzz"}}]}
        ]});
        assert_eq!(measure_prompt(&chat).bytes, 8);
        let anthropic = json!({"model":"m","system":"abcd","messages":[{"role":"user","content":"efgh"}]});
        assert_eq!(measure_prompt(&anthropic), measure_prompt(&chat));
        let gemini = json!({"systemInstruction":{"parts":[{"text":"abcd"}]},"contents":[{"role":"user","parts":[{"text":"efgh"}]}]});
        assert_eq!(measure_prompt(&gemini), measure_prompt(&chat));
        let tokens = json!({"input":[1,2,3]});
        assert_eq!(measure_prompt(&tokens).bytes, 12);
    }

    #[test]
    fn deltas_concatenate_to_the_text() {
        let text = reply_text(11, 42);
        assert!(text.starts_with("mock reply 00000000 tokens"));
        assert_eq!(text.split(' ').count(), 11);
        for parts in 1..15 {
            let pieces = split_deltas(&text, parts);
            assert_eq!(pieces.len(), parts);
            assert_eq!(pieces.concat(), text);
        }
        assert_eq!(split_deltas("", 3), vec!["", "", ""]);
    }

    #[test]
    fn max_output_limit_takes_the_smallest() {
        assert_eq!(max_output_limit(&json!({"max_tokens":50,"max_completion_tokens":7})), Some(7));
        assert_eq!(max_output_limit(&json!({"generationConfig":{"maxOutputTokens":3}})), Some(3));
        assert_eq!(max_output_limit(&json!({"inferenceConfig":{"maxTokens":9,"temperature":0.5}})), Some(9));
        assert_eq!(max_output_limit(&json!({})), None);
    }
}
