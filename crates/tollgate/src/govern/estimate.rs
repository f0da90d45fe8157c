//! The numbers a reservation needs, computed cheaply before the provider is
//! called: an upper bound of the request's cost and tokens, the output that
//! still fits a budget, and the body rewrite that caps output tokens.
//!
//! Upper bound of input tokens: the prompt's UTF-8 byte length (a byte-level
//! BPE token is at least one byte) plus a framing allowance, plus a fixed
//! allowance per image part. Output: the request's own max tokens, else the
//! model's maximum output from the catalog (the most of the route's targets),
//! else the configured default (and the request is then capped at it under a
//! budget, since nothing else bounds it). Input is priced
//! at the cache-write rate when the request asks for prompt caching (writes
//! cost more than plain input), and at the costliest target of the route.
//! Web searches: the web search tools' `max_uses`, else
//! [`DEFAULT_WEB_SEARCHES`] when the request offers web search.
//!
//! Media ([`media_cost`]): images at `n` × the per-image price of their size
//! and quality, or `n` × the image tokens of that size and quality for
//! token-billed models (whichever of the two the catalog knows, the larger);
//! audio at its exact length when a WAVE header tells it, else at the
//! longest the upload's size allows at [`MIN_AUDIO_BITS_PER_SECOND`]; speech
//! at its characters, or [`SPEECH_AUDIO_TOKENS_PER_CHARACTER`] audio tokens
//! per character for token-billed models.

use bytes::Bytes;
use tollgate_providers::{inspect, ApiFormat, ProviderKind};
use tollgate_units::{Money, Usage};

use crate::config::Config;
use crate::error::ApiError;
use crate::govern::Ask;
use crate::pricing::Pricing;
use crate::routing::Attempt;
use crate::time::now_ms;

const FRAMING_TOKENS: u64 = 64;
const TOKENS_PER_IMAGE: u64 = 2_000;
/// Below this many output tokens a clamped answer is not worth serving.
pub const MIN_CLAMPED_OUTPUT: u64 = 16;

/// Whether the body mentions `needle` at all (cheap pre-checks).
pub fn mentions(body: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(body, needle).is_some()
}

fn count(body: &[u8], needle: &[u8]) -> u64 {
    memchr::memmem::find_iter(body, needle).count() as u64
}

pub(crate) fn input_upper_bound(prompt_text: &str, body: &[u8]) -> u64 {
    // One fast scan decides whether the image markers need counting at all.
    let maybe_images =
        memchr::memmem::find(body, b"image").is_some() || memchr::memmem::find(body, b"inline_data").is_some();
    let images = if maybe_images {
        count(body, b"image_url")
            + count(body, b"\"image\"")
            + count(body, b"inline_data")
            + count(body, b"input_image")
    } else {
        0
    };
    prompt_text.len() as u64 + FRAMING_TOKENS + images * TOKENS_PER_IMAGE
}

fn usage(input: u64, output: u64, caching: bool, searches: u64) -> Usage {
    if caching {
        Usage { cache_write_1h: input, output, web_search_requests: searches, ..Usage::default() }
    } else {
        Usage { input, output, web_search_requests: searches, ..Usage::default() }
    }
}

/// Web searches assumed for a request that offers a web search tool without
/// a cap (OpenAI's `web_search` has none; Anthropic's `max_uses` is optional).
pub const DEFAULT_WEB_SEARCHES: u64 = 10;

/// The most server-side web searches a request can run: the `max_uses` of
/// Anthropic's web search tools, else [`DEFAULT_WEB_SEARCHES`] when it offers
/// one (a `web_search*` tool, or chat's `web_search_options`); 0 otherwise.
pub fn web_search_bound(body: &[u8]) -> u64 {
    if !mentions(body, b"web_search") {
        return 0;
    }
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(default)]
        tools: Vec<Tool>,
        web_search_options: Option<serde::de::IgnoredAny>,
    }
    #[derive(serde::Deserialize)]
    struct Tool {
        #[serde(rename = "type", default)]
        kind: String,
        max_uses: Option<u64>,
    }
    let Ok(b) = serde_json::from_slice::<Body>(body) else { return 0 };
    let mut offered = b.web_search_options.is_some();
    let mut most = 0u64;
    for t in b.tools.iter().filter(|t| t.kind.starts_with("web_search")) {
        offered = true;
        most = most.saturating_add(t.max_uses.unwrap_or(DEFAULT_WEB_SEARCHES));
    }
    if offered && most == 0 {
        DEFAULT_WEB_SEARCHES
    } else {
        most
    }
}

/// The most any target of the plan could charge: `None` when no target has a price.
/// Priced at the tier the request asks for (priority costs more: it reserves more).
fn worst_cost(
    config: &Config,
    pricing: &Pricing,
    plan: &[Attempt],
    info: &tollgate_providers::RequestInfo,
    u: &Usage,
) -> Option<Money> {
    let now = now_ms();
    let tier = crate::pricing::tier(None, info.service_tier.as_deref());
    plan.iter().filter_map(|a| pricing.price_tier(&config.providers[a.provider], &a.model, u, now, tier).cost).max()
}

/// The most output tokens the request can produce, and what bounds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputBound {
    /// The request's own cap.
    Request(u64),
    /// No cap in the request: the largest maximum output of the route's
    /// targets, from the catalog (every target's is known).
    Model(u64),
    /// Neither: `default_max_output_tokens`, which only holds if the request
    /// is capped at it.
    Default(u64),
}

impl OutputBound {
    pub fn tokens(self) -> u64 {
        match self {
            OutputBound::Request(n) | OutputBound::Model(n) | OutputBound::Default(n) => n,
        }
    }
}

pub fn output_bound(
    config: &Config,
    pricing: &Pricing,
    plan: &[Attempt],
    info: &tollgate_providers::RequestInfo,
    default_out: u64,
) -> OutputBound {
    if let Some(n) = info.max_output_tokens {
        return OutputBound::Request(n);
    }
    let now = now_ms();
    let mut most = None;
    for a in plan {
        match pricing.max_output_tokens(&config.providers[a.provider], &a.model, now) {
            Some(n) => most = Some(most.map_or(n, |m: u64| m.max(n))),
            None => return OutputBound::Default(default_out),
        }
    }
    most.map_or(OutputBound::Default(default_out), OutputBound::Model)
}

/// Output image tokens of one gpt-image answer by quality and size
/// (OpenAI's published table for gpt-image-1; `auto` counted as the largest).
pub fn image_output_tokens(quality: Option<&str>, size: Option<&str>) -> u64 {
    let q = match quality {
        Some("low") => 0,
        Some("medium") => 1,
        _ => 2,
    };
    let s = match size {
        Some("1024x1024") => 0,
        Some("1536x1024") => 2,
        _ => 1,
    };
    [[272, 408, 400], [1056, 1584, 1568], [4160, 6240, 6208]][q][s]
}

/// Input image tokens assumed for each image an edit uploads (a bound of
/// what an image model reads of one input image; settled at what it reports).
pub const INPUT_IMAGE_TOKENS: u64 = 6_500;
/// The lowest bit rate assumed of compressed audio whose length the gateway
/// cannot read: its longest possible length is its size at this rate.
pub const MIN_AUDIO_BITS_PER_SECOND: u64 = 6_000;
/// Audio tokens per second of input audio (OpenAI's audio models: one token per 100 ms).
pub const AUDIO_TOKENS_PER_SECOND: u64 = 10;
/// Output audio tokens reserved per character of text to speak (token-billed speech models).
pub const SPEECH_AUDIO_TOKENS_PER_CHARACTER: u64 = 2;

/// The longest an upload's audio can be: exact from its header, else its size at the lowest bit rate.
pub fn audio_ms_bound(m: &tollgate_providers::MediaRequest) -> u64 {
    match (m.audio_ms, m.audio_bytes_at_most) {
        (Some(ms), _) => ms,
        (None, Some(bytes)) => bytes.saturating_mul(8_000) / MIN_AUDIO_BITS_PER_SECOND,
        (None, None) => 0,
    }
}

/// The most a media request can cost on its route's costliest target.
fn media_cost(
    config: &Config,
    pricing: &Pricing,
    plan: &[Attempt],
    info: &tollgate_providers::RequestInfo,
    m: &tollgate_providers::MediaRequest,
    default_out: u64,
) -> Ask {
    let now = now_ms();
    let tier = crate::pricing::tier(None, info.service_tier.as_deref());
    let input = info.prompt_text.len() as u64 + FRAMING_TOKENS;
    let mut shapes: Vec<Usage> = Vec::with_capacity(2);
    let images = m.endpoint.is_some_and(|e| e.images());
    let speech = m.endpoint == Some(tollgate_providers::MediaEndpoint::Speech);
    if images {
        // Images: by tokens, or by count (the estimator cannot know which the target reports).
        let per_image = image_output_tokens(m.quality.as_deref(), m.size.as_deref());
        shapes.push(Usage {
            input,
            input_image: m.input_images.saturating_mul(INPUT_IMAGE_TOKENS),
            output_image: m.n.saturating_mul(per_image),
            images: m.n,
            ..Usage::default()
        });
        shapes.push(Usage { input, images: m.n, ..Usage::default() });
    } else if speech {
        shapes.push(Usage {
            input: input.max(m.characters),
            characters: m.characters,
            output_audio: m.characters.saturating_mul(SPEECH_AUDIO_TOKENS_PER_CHARACTER),
            ..Usage::default()
        });
    } else {
        let ms = audio_ms_bound(m);
        let output = output_bound(config, pricing, plan, info, default_out).tokens();
        shapes.push(Usage {
            input,
            audio_ms: ms,
            input_audio: ms.div_ceil(1000).saturating_mul(AUDIO_TOKENS_PER_SECOND),
            output,
            ..Usage::default()
        });
    }
    let cost = plan
        .iter()
        .flat_map(|a| {
            let p = &config.providers[a.provider];
            shapes.iter().filter_map(move |u| pricing.price_request(p, &a.model, u, now, tier, Some(m)).cost)
        })
        .max();
    let tokens = shapes.iter().map(Usage::total_tokens).max().unwrap_or(0);
    Ask { cost, tokens }
}

pub fn max_cost(
    config: &Config,
    pricing: &Pricing,
    plan: &[Attempt],
    info: &tollgate_providers::RequestInfo,
    body: &[u8],
    default_out: u64,
) -> Ask {
    if let Some(m) = info.media.as_ref() {
        return media_cost(config, pricing, plan, info, m, default_out);
    }
    let input = input_upper_bound(&info.prompt_text, body);
    let output = output_bound(config, pricing, plan, info, default_out).tokens();
    let caching = count(body, b"cache_control") > 0;
    let searches = web_search_bound(body);
    Ask {
        cost: worst_cost(config, pricing, plan, info, &usage(input, output, caching, searches)),
        tokens: input.saturating_add(output),
    }
}

/// How many output tokens fit in `remaining` after the input, on the costliest target.
pub fn output_tokens_within(
    config: &Config,
    pricing: &Pricing,
    plan: &[Attempt],
    info: &tollgate_providers::RequestInfo,
    body: &[u8],
    remaining: Money,
) -> u64 {
    let input = input_upper_bound(&info.prompt_text, body);
    let caching = count(body, b"cache_control") > 0;
    let searches = web_search_bound(body);
    let Some(input_cost) = worst_cost(config, pricing, plan, info, &usage(input, 0, caching, searches)) else {
        return 0;
    };
    let per_million = worst_cost(config, pricing, plan, info, &usage(input, 1_000_000, caching, searches))
        .map_or(0, |c| c.nanos() - input_cost.nanos());
    let left = remaining.nanos() - input_cost.nanos();
    if left <= 0 || per_million <= 0 {
        return 0;
    }
    (i128::from(left) * 1_000_000 / i128::from(per_million)).min(i128::from(u32::MAX)) as u64
}

/// Sets the request's output cap to `n` in its own wire format and re-reads
/// `info` from the new body. `first_target` is the kind of the route's first
/// provider (OpenAI's reasoning models only take the newer field name).
pub fn set_max_tokens(
    format: ApiFormat,
    info: &mut tollgate_providers::RequestInfo,
    first_target: ProviderKind,
    body: &Bytes,
    n: u64,
) -> Result<Bytes, ApiError> {
    let mut v: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))?;
    let field = match format {
        ApiFormat::OpenAiEmbeddings | ApiFormat::Media(_) => return Ok(body.clone()),
        ApiFormat::GeminiNative => {
            // Nested: `generationConfig.maxOutputTokens`.
            let config = v.entry("generationConfig").or_insert_with(|| serde_json::json!({}));
            match config.as_object_mut() {
                Some(c) => c.insert("maxOutputTokens".into(), serde_json::Value::from(n)),
                None => return Err(ApiError::invalid_param("generationConfig must be an object", "generationConfig")),
            };
            ""
        }
        ApiFormat::OpenAiResponses => "max_output_tokens",
        ApiFormat::AnthropicMessages => "max_tokens",
        ApiFormat::OpenAiChat => {
            if v.contains_key("max_completion_tokens") {
                "max_completion_tokens"
            } else if v.contains_key("max_tokens") {
                "max_tokens"
            } else {
                match first_target {
                    // OpenAI's reasoning models only take the newer name.
                    ProviderKind::OpenAi | ProviderKind::AzureOpenAi => "max_completion_tokens",
                    _ => "max_tokens",
                }
            }
        }
    };
    if !field.is_empty() {
        v.insert(field.to_string(), serde_json::Value::from(n));
    }
    let new = Bytes::from(serde_json::to_vec(&v).map_err(|e| ApiError::Internal { message: e.to_string() })?);
    let prompt = std::mem::take(&mut info.prompt_text);
    let mut fresh = inspect(format, &new).map_err(crate::upstream::adapter_error)?;
    fresh.prompt_text = prompt;
    if format == ApiFormat::GeminiNative {
        // The model and the streaming are in the URL, not the body.
        fresh.model = info.model.take();
        fresh.stream = info.stream;
    }
    *info = fresh;
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn web_searches_are_bounded_by_max_uses_or_the_default() {
        assert_eq!(web_search_bound(br#"{"messages":[]}"#), 0);
        // Anthropic's tool with a cap; two tools add up.
        let a = br#"{"tools":[{"type":"web_search_20250305","name":"web_search","max_uses":3}],"messages":[]}"#;
        assert_eq!(web_search_bound(a), 3);
        let two =
            br#"{"tools":[{"type":"web_search_20250305","max_uses":3},{"type":"web_search_20260209","max_uses":2}]}"#;
        assert_eq!(web_search_bound(two), 5);
        // No cap: OpenAI's Responses tool, Anthropic's without max_uses, chat's search options.
        assert_eq!(web_search_bound(br#"{"tools":[{"type":"web_search"}],"input":"x"}"#), DEFAULT_WEB_SEARCHES);
        assert_eq!(web_search_bound(br#"{"tools":[{"type":"web_search_20250305"}]}"#), DEFAULT_WEB_SEARCHES);
        assert_eq!(web_search_bound(br#"{"web_search_options":{},"messages":[]}"#), DEFAULT_WEB_SEARCHES);
        // A prompt that only talks about web_search offers no tool.
        assert_eq!(web_search_bound(br#"{"messages":[{"role":"user","content":"what is web_search?"}]}"#), 0);
        // A function tool is not a search.
        assert_eq!(web_search_bound(br#"{"tools":[{"type":"function","function":{"name":"web_search"}}]}"#), 0);
    }
}
