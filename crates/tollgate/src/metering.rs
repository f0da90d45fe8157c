//! Metering: what a request used. The provider's own usage when it gave it
//! ([`of_answer`], [`of_stream`]); otherwise local token counting, for when a
//! provider reports no usage (it omitted it, the stream was cut, or the
//! client hung up first).
//!
//! OpenAI models are counted with their real tokenizer (tiktoken's
//! `o200k_base` for the GPT-4o / 4.1 / 5 and o-series families,
//! `cl100k_base` for GPT-4, GPT-3.5 and the embedding models). Other
//! families have no public tokenizer we can run offline; they are counted
//! with `cl100k_base` and scaled: Claude ×1.15 (Anthropic's tokenizer yields
//! more tokens than cl100k on English text), everything else ×1.0. Rows
//! priced from these counts are marked `estimated`.

use std::sync::OnceLock;

use tiktoken_rs::CoreBPE;
use tollgate_providers::StreamEnd;
use tollgate_units::Usage;

use crate::record::UsageSource;

/// Per-request framing tokens (role markers, separators) a chat prompt adds.
const PROMPT_OVERHEAD: u64 = 7;

fn o200k() -> Option<&'static CoreBPE> {
    static BPE: OnceLock<Option<CoreBPE>> = OnceLock::new();
    BPE.get_or_init(|| tiktoken_rs::o200k_base().ok()).as_ref()
}

fn cl100k() -> Option<&'static CoreBPE> {
    static BPE: OnceLock<Option<CoreBPE>> = OnceLock::new();
    BPE.get_or_init(|| tiktoken_rs::cl100k_base().ok()).as_ref()
}

/// Loads the tokenizers ahead of the first estimate (they take ~100 ms).
pub fn warm_up() {
    let _ = (o200k(), cl100k());
}

enum Family {
    O200k,
    Cl100k,
    Claude,
    Other,
}

fn family(model: &str) -> Family {
    let m = model.rsplit('/').next().unwrap_or(model);
    let b = m.as_bytes();
    let o_series = b.len() >= 2 && b[0] == b'o' && b[1].is_ascii_digit();
    if m.starts_with("gpt-4o")
        || m.starts_with("gpt-4.1")
        || m.starts_with("gpt-5")
        || m.starts_with("chatgpt-")
        || o_series
    {
        Family::O200k
    } else if m.starts_with("gpt-4") || m.starts_with("gpt-3.5") || m.starts_with("text-embedding-") {
        Family::Cl100k
    } else if m.contains("claude") {
        Family::Claude
    } else {
        Family::Other
    }
}

/// Tokens in `text` for `model`, by the rules in the module doc.
pub fn count_tokens(model: &str, text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    let bytes_fallback = || (text.len() as u64).div_ceil(3);
    let count = |bpe: Option<&CoreBPE>| bpe.map(|b| count_in_pieces(b, text)).unwrap_or_else(bytes_fallback);
    match family(model) {
        Family::O200k => count(o200k()),
        Family::Cl100k | Family::Other => count(cl100k()),
        Family::Claude => (count(cl100k()) * 115).div_ceil(100),
    }
}

/// Longest piece handed to the tokenizer at once. tiktoken's pre-split
/// regex backtracks without bound on a long run of one character class
/// (4,000 letters overflow its backtracking limit and it panics), so text is
/// counted in pieces cut at whitespace where possible: the count can differ
/// from a single pass by a token at a cut, never by a panic.
const MAX_PIECE: usize = 256;

fn count_in_pieces(bpe: &CoreBPE, text: &str) -> u64 {
    let mut total = 0u64;
    let mut rest = text;
    while !rest.is_empty() {
        let mut cut = rest.len().min(MAX_PIECE);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        if cut < rest.len() {
            // Prefer to cut just after the last whitespace of the window.
            if let Some(ws) = rest[..cut].rfind(char::is_whitespace).filter(|&i| i > 0) {
                cut = ws + rest[ws..].chars().next().map_or(1, char::len_utf8);
            }
        }
        let (piece, tail) = rest.split_at(cut);
        total += bpe.encode_ordinary(piece).len() as u64;
        rest = tail;
    }
    total
}

/// A whole request's usage counted locally (no cache or reasoning split is
/// knowable without the provider, so all input is uncached and all output visible).
pub fn estimate(model: &str, prompt_text: &str, output_text: &str) -> Usage {
    Usage {
        input: count_tokens(model, prompt_text) + PROMPT_OVERHEAD,
        output: count_tokens(model, output_text),
        ..Usage::default()
    }
}

/// A whole (non-streaming) answer's usage: the provider's, else counted here.
pub fn of_answer(model: &str, prompt_text: &str, reported: Option<Usage>, output_text: &str) -> (Usage, UsageSource) {
    match reported {
        Some(u) => (u, UsageSource::Provider),
        None => (estimate(model, prompt_text, output_text), UsageSource::Estimated),
    }
}

/// A media answer's usage. Images report how many were made (and tokens,
/// for token-billed models); transcriptions report seconds or tokens except
/// in the text formats; speech reports nothing unless it was asked for as
/// events. Without a report, the request's own units stand in, flagged
/// estimated — except the characters of a model billed by the character,
/// which the request tells exactly (the provider bills that very count).
pub fn of_media(
    model: &str,
    info: &tollgate_providers::RequestInfo,
    reported: Option<Usage>,
    output_text: &str,
    bills_characters: bool,
) -> (Usage, UsageSource) {
    use crate::govern::estimate;
    let Some(m) = info.media.as_ref() else { return of_answer(model, &info.prompt_text, reported, output_text) };
    let speech = m.endpoint == Some(tollgate_providers::MediaEndpoint::Speech);
    if speech {
        return match reported {
            Some(u) => (Usage { characters: m.characters, ..u }, UsageSource::Provider),
            None if bills_characters => (Usage { characters: m.characters, ..Usage::default() }, UsageSource::Provider),
            None => (
                Usage {
                    characters: m.characters,
                    input: count_tokens(model, &info.prompt_text),
                    output_audio: m.characters.saturating_mul(estimate::SPEECH_AUDIO_TOKENS_PER_CHARACTER),
                    ..Usage::default()
                },
                UsageSource::Estimated,
            ),
        };
    }
    match reported {
        Some(u) => (u, UsageSource::Provider),
        None if m.endpoint.is_some_and(|e| e.images()) => {
            (Usage { images: m.n, ..Usage::default() }, UsageSource::Estimated)
        }
        None => {
            let ms = estimate::audio_ms_bound(m);
            let u = Usage {
                audio_ms: ms,
                input_audio: ms.div_ceil(1000).saturating_mul(estimate::AUDIO_TOKENS_PER_SECOND),
                input: count_tokens(model, &info.prompt_text),
                output: count_tokens(model, output_text),
                ..Usage::default()
            };
            (u, UsageSource::Estimated)
        }
    }
}

/// A stream's usage. One that reached its final event has the provider's
/// usage; one that did not (cut, timed out, client gone) has no trustworthy
/// final usage: what the provider said of the input is kept and the output
/// seen is counted, never less than the provider had reported.
pub fn of_stream(model: &str, prompt_text: &str, end: &StreamEnd) -> (Usage, UsageSource) {
    match (&end.usage, end.completed) {
        (Some(u), true) => (*u, UsageSource::Provider),
        (reported, _) => {
            let est = estimate(model, prompt_text, &end.output_text);
            let u = match reported {
                Some(r) if r.input_tokens() > 0 => Usage { output: r.output.max(est.output), ..*r },
                _ => est,
            };
            (u, UsageSource::Estimated)
        }
    }
}

/// The provider was called but its answer is unusable (broken, too large,
/// timed out): it may still bill the prompt, so the prompt is counted here.
pub fn unusable_answer(model: &str, prompt_text: &str, output_text: &str) -> (Usage, UsageSource) {
    (estimate(model, prompt_text, output_text), UsageSource::Estimated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_runs_of_one_character_are_counted_not_panicked_on() {
        for text in ["x".repeat(100_000), " ".repeat(50_000), "ab1".repeat(30_000), "é".repeat(20_000)] {
            for model in ["gpt-4o-mini", "gpt-4", "claude-haiku-4-5"] {
                let n = count_tokens(model, &text);
                assert!(n > 0 && n <= text.len() as u64 + 1, "{model}: {n}");
            }
        }
        // Ordinary text counts the same as one pass would (within a token per cut).
        let prose = "The quick brown fox jumps over the lazy dog. ".repeat(40);
        let whole = o200k().unwrap().encode_ordinary(&prose).len() as u64;
        let pieces = count_tokens("gpt-4o", &prose);
        assert!(pieces.abs_diff(whole) <= (prose.len() / MAX_PIECE) as u64 + 1, "{pieces} vs {whole}");
    }

    #[test]
    fn counts_with_the_real_tokenizers() {
        // Known counts: "hello world" is 2 tokens in both cl100k and o200k.
        assert_eq!(count_tokens("gpt-4o-mini", "hello world"), 2);
        assert_eq!(count_tokens("gpt-4", "hello world"), 2);
        assert_eq!(count_tokens("openai/gpt-4o", "hello world"), 2);
        // Claude is scaled up from cl100k: ceil(2 * 1.15) = 3.
        assert_eq!(count_tokens("claude-sonnet-4-5", "hello world"), 3);
        assert_eq!(count_tokens("gpt-4o", ""), 0);
        let long = "The quick brown fox jumps over the lazy dog. ".repeat(50);
        let n = count_tokens("gpt-4o", &long);
        assert!((400..=600).contains(&n), "{n}");
    }

    #[test]
    fn estimate_puts_everything_in_plain_buckets() {
        let u = estimate("gpt-4o", "hello world", "hello world");
        assert_eq!(u, Usage { input: 2 + PROMPT_OVERHEAD, output: 2, ..Usage::default() });
    }
}
