//! Normalized token usage: every bucket is disjoint from every other.

use serde::{Deserialize, Serialize};

/// Token counts of one request, split into buckets that do not overlap, so
/// that pricing can multiply each by its own rate and add them up.
///
/// Providers report usage with different conventions (OpenAI's cached tokens
/// are *inside* `prompt_tokens`, Anthropic's cache tokens are *outside*
/// `input_tokens`, reasoning is inside OpenAI's `completion_tokens`, Gemini's
/// thoughts are outside `candidatesTokenCount`); each adapter undoes its
/// provider's convention when it builds a `Usage`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct Usage {
    /// Input tokens read without any cache discount (text, and images where
    /// the provider does not count them apart), audio excluded.
    pub input: u64,
    /// Input image tokens that the provider counts apart (image generation
    /// and editing models: `input_tokens_details.image_tokens`).
    pub input_image: u64,
    /// Uncached input audio tokens.
    pub input_audio: u64,
    /// Input tokens served from the provider's prompt cache.
    pub cache_read: u64,
    /// Input tokens written to the provider's cache with a ~5 minute TTL
    /// (Anthropic's default; the bucket for cache writes of unknown TTL).
    pub cache_write_5m: u64,
    /// Input tokens written to the provider's cache with a 1 hour TTL.
    pub cache_write_1h: u64,
    /// Visible output tokens (text, tool calls), reasoning and audio excluded.
    pub output: u64,
    /// Output audio tokens.
    pub output_audio: u64,
    /// Output image tokens (image-generating models).
    pub output_image: u64,
    /// Reasoning / thinking tokens (billed as output by most providers).
    pub reasoning: u64,
    /// Server-side web searches the provider ran for the request (Anthropic's
    /// `server_tool_use.web_search_requests`, OpenAI's `web_search_call`
    /// items): not tokens, billed per call.
    pub web_search_requests: u64,
    /// Images generated, for models billed per image (the price depends on
    /// the image's size and quality; token-billed image models use
    /// `output_image` instead).
    pub images: u64,
    /// Input audio in milliseconds, for models billed by the second of audio
    /// (transcription and translation).
    pub audio_ms: u64,
    /// Input characters, for models billed by the character (text to speech).
    pub characters: u64,
}

impl Usage {
    /// All input tokens, cache reads and writes included (the API's `input_tokens`).
    pub fn input_tokens(&self) -> u64 {
        self.input
            .saturating_add(self.input_image)
            .saturating_add(self.input_audio)
            .saturating_add(self.cache_read)
            .saturating_add(self.cache_write_tokens())
    }

    /// Cache writes of every TTL (the API's `cache_write_tokens`).
    pub fn cache_write_tokens(&self) -> u64 {
        self.cache_write_5m.saturating_add(self.cache_write_1h)
    }

    /// All output tokens, reasoning included (the API's `output_tokens`).
    pub fn output_tokens(&self) -> u64 {
        self.output.saturating_add(self.output_audio).saturating_add(self.output_image).saturating_add(self.reasoning)
    }

    /// Input plus output.
    pub fn total_tokens(&self) -> u64 {
        self.input_tokens().saturating_add(self.output_tokens())
    }

    /// True when no bucket holds a token.
    pub fn is_zero(&self) -> bool {
        *self == Usage::default()
    }

    /// Bucket-wise sum (for adding up attempts or stream parts).
    pub fn saturating_add(self, o: Usage) -> Usage {
        Usage {
            input: self.input.saturating_add(o.input),
            input_image: self.input_image.saturating_add(o.input_image),
            input_audio: self.input_audio.saturating_add(o.input_audio),
            cache_read: self.cache_read.saturating_add(o.cache_read),
            cache_write_5m: self.cache_write_5m.saturating_add(o.cache_write_5m),
            cache_write_1h: self.cache_write_1h.saturating_add(o.cache_write_1h),
            output: self.output.saturating_add(o.output),
            output_audio: self.output_audio.saturating_add(o.output_audio),
            output_image: self.output_image.saturating_add(o.output_image),
            reasoning: self.reasoning.saturating_add(o.reasoning),
            web_search_requests: self.web_search_requests.saturating_add(o.web_search_requests),
            images: self.images.saturating_add(o.images),
            audio_ms: self.audio_ms.saturating_add(o.audio_ms),
            characters: self.characters.saturating_add(o.characters),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_follow_the_api_convention() {
        let u = Usage {
            input: 100,
            input_image: 7,
            input_audio: 5,
            cache_read: 1000,
            cache_write_5m: 20,
            cache_write_1h: 30,
            output: 40,
            output_audio: 2,
            output_image: 0,
            reasoning: 60,
            web_search_requests: 2,
            images: 3,
            audio_ms: 1500,
            characters: 40,
        };
        // Web searches, images, seconds and characters are not tokens: in no token total.
        assert_eq!(u.input_tokens(), 1162);
        assert_eq!(u.cache_write_tokens(), 50);
        assert_eq!(u.output_tokens(), 102);
        assert_eq!(u.total_tokens(), 1264);
        assert_eq!(u.saturating_add(u).audio_ms, 3000);
        assert!(!u.is_zero());
        assert!(Usage::default().is_zero());
        assert_eq!(u.saturating_add(u).reasoning, 120);
    }
}
