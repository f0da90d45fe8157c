//! Table-driven pricing tests: built-in catalog lookup + cost, with every
//! expected value worked out by hand from the published per-million prices.
//!
//! Arithmetic used throughout: tokens × $R per million = tokens × R × 1000
//! nano-dollars (nd). E.g. 1,000 tokens @ $0.15/M = 1,000 × 150 = 150,000 nd.
//! Units billed apart from tokens: images × $P per image = images × P × 1e9 nd;
//! milliseconds of audio × $P per second = ms × P × 1e6 nd; characters × $P
//! per character = characters × P × 1e9 nd.

// Test helpers outside #[test] fns unwrap too: a test may panic.
#![allow(clippy::unwrap_used)]

use chrono::{DateTime, TimeZone, Utc};
use tollgate_pricing::{cost, Catalog, ServiceTier};
use tollgate_units::{Money, Usage};

use ServiceTier::{Batch, Flex, Priority, Standard};

macro_rules! usage {
    ($($f:ident : $v:expr),* $(,)?) => { Usage { $($f: $v,)* ..Usage::default() } };
}

fn day(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 12, 0, 0).single().unwrap()
}

struct Case {
    provider: Option<&'static str>,
    model: &'static str,
    at: DateTime<Utc>,
    usage: Usage,
    tier: ServiceTier,
    /// Expected total in nano-dollars; `None` = the lookup must find nothing.
    total: Option<i64>,
    /// Expected entry (provider/model) when priced.
    entry: &'static str,
}

fn c(
    provider: Option<&'static str>,
    model: &'static str,
    at: DateTime<Utc>,
    usage: Usage,
    tier: ServiceTier,
    total: Option<i64>,
    entry: &'static str,
) -> Case {
    Case { provider, model, at, usage, tier, total, entry }
}

#[test]
fn priced_by_hand() {
    let now = day(2025, 11, 1);
    let o = Some("openai");
    let a = Some("anthropic");
    let g = Some("gemini");
    let b = Some("bedrock");
    let cases = vec![
        // ── OpenAI: cached tokens are already split out of the prompt into cache_read.
        // 1,000 in @0.15 = 150,000
        c(o, "gpt-4o-mini", now, usage!(input: 1000), Standard, Some(150_000), "openai/gpt-4o-mini"),
        // 1,000 in @0.15 = 150,000; 2,000 cached @0.075 = 150,000; 500 out @0.60 = 300,000 → 600,000
        c(
            o,
            "gpt-4o-mini",
            now,
            usage!(input: 1000, cache_read: 2000, output: 500),
            Standard,
            Some(600_000),
            "openai/gpt-4o-mini",
        ),
        // 10,000 in @2.50 = 25,000,000; 1,000 out @10 = 10,000,000
        c(
            o,
            "gpt-4o",
            now,
            usage!(input: 10_000, output: 1000),
            Standard,
            Some(35_000_000),
            "openai/gpt-4o@2024-10-02",
        ),
        // before 2024-10-02 gpt-4o was $5/$15: 50,000,000 + 15,000,000
        c(
            o,
            "gpt-4o",
            day(2024, 6, 1),
            usage!(input: 10_000, output: 1000),
            Standard,
            Some(65_000_000),
            "openai/gpt-4o",
        ),
        // the dated snapshot has its own entry ($2.50/$10 from launch)
        c(
            o,
            "gpt-4o-2024-08-06",
            day(2024, 9, 1),
            usage!(input: 10_000, output: 1000),
            Standard,
            Some(35_000_000),
            "openai/gpt-4o-2024-08-06",
        ),
        // no entry for this snapshot: date stripped → gpt-4o; 1,000 @2.50 = 2,500,000
        c(o, "gpt-4o-2024-11-20", now, usage!(input: 1000), Standard, Some(2_500_000), "openai/gpt-4o@2024-10-02"),
        // the old snapshot keeps $5: 1,000 @5 = 5,000,000
        c(o, "gpt-4o-2024-05-13", now, usage!(input: 1000), Standard, Some(5_000_000), "openai/gpt-4o-2024-05-13"),
        // batch = half of 35,000,000
        c(o, "gpt-4o", now, usage!(input: 10_000, output: 1000), Batch, Some(17_500_000), "openai/gpt-4o@2024-10-02"),
        // priority: 10,000 @4.25 = 42,500,000; 1,000 cached @2.125 = 2,125,000; 1,000 out @17 = 17,000,000
        c(
            o,
            "gpt-4o",
            now,
            usage!(input: 10_000, cache_read: 1000, output: 1000),
            Priority,
            Some(61_625_000),
            "openai/gpt-4o@2024-10-02",
        ),
        // o3 at launch: 1,000 in @10 = 10,000,000; 2,000 reasoning @40 = 80,000,000; 500 out @40 = 20,000,000
        c(
            o,
            "o3",
            day(2025, 5, 1),
            usage!(input: 1000, reasoning: 2000, output: 500),
            Standard,
            Some(110_000_000),
            "openai/o3",
        ),
        // o3 on the day of the cut (2025-06-10): 2,000,000 + 16,000,000 + 4,000,000
        c(
            o,
            "o3-2025-04-16",
            day(2025, 6, 10),
            usage!(input: 1000, reasoning: 2000, output: 500),
            Standard,
            Some(22_000_000),
            "openai/o3@2025-06-10",
        ),
        // flex = half: 11,000,000
        c(
            o,
            "o3",
            now,
            usage!(input: 1000, reasoning: 2000, output: 500),
            Flex,
            Some(11_000_000),
            "openai/o3@2025-06-10",
        ),
        // o4-mini priority: 1,000 @2 = 2,000,000; 1,000 out @8 = 8,000,000
        c(o, "o4-mini", now, usage!(input: 1000, output: 1000), Priority, Some(10_000_000), "openai/o4-mini"),
        // gpt-5: 2,000 @1.25 = 2,500,000; 8,000 cached @0.125 = 1,000,000;
        // 3,000 reasoning @10 = 30,000,000; 1,000 out @10 = 10,000,000
        c(
            o,
            "gpt-5",
            now,
            usage!(input: 2000, cache_read: 8000, reasoning: 3000, output: 1000),
            Standard,
            Some(43_500_000),
            "openai/gpt-5",
        ),
        // gpt-5-nano: 1 in @0.05 = 50; 1 out @0.40 = 400
        c(o, "gpt-5-nano", now, usage!(input: 1, output: 1), Standard, Some(450), "openai/gpt-5-nano"),
        // gpt-5-mini flex: 1,000,000 @0.125 = 125,000,000
        c(o, "gpt-5-mini-2025-08-07", now, usage!(input: 1_000_000), Flex, Some(125_000_000), "openai/gpt-5-mini"),
        // alias: gpt-5-chat-latest is gpt-5; 1,000 @1.25 = 1,250,000
        c(o, "gpt-5-chat-latest", now, usage!(input: 1000), Standard, Some(1_250_000), "openai/gpt-5"),
        // embeddings: 1M @0.02 = 20,000,000
        c(
            o,
            "text-embedding-3-small",
            now,
            usage!(input: 1_000_000),
            Standard,
            Some(20_000_000),
            "openai/text-embedding-3-small",
        ),
        // batch embeddings: 1M @0.065 = 65,000,000
        c(
            o,
            "text-embedding-3-large",
            now,
            usage!(input: 1_000_000),
            Batch,
            Some(65_000_000),
            "openai/text-embedding-3-large",
        ),
        // audio: 100 text in @2.5 = 250,000; 1,000 audio in @40 = 40,000,000;
        // 50 text out @10 = 500,000; 2,000 audio out @80 = 160,000,000
        c(
            o,
            "gpt-4o-audio-preview-2024-12-17",
            now,
            usage!(input: 100, input_audio: 1000, output: 50, output_audio: 2000),
            Standard,
            Some(200_750_000),
            "openai/gpt-4o-audio-preview",
        ),
        // long context, exactly at 272,000: base 272,000 @2.5 = 680,000,000; 1,000 out @15 = 15,000,000
        c(o, "gpt-5.4", now, usage!(input: 272_000, output: 1000), Standard, Some(695_000_000), "openai/gpt-5.4"),
        // one above: 272,001 @5 = 1,360,005,000; 1,000 out @22.5 = 22,500,000
        c(o, "gpt-5.4", now, usage!(input: 272_001, output: 1000), Standard, Some(1_382_505_000), "openai/gpt-5.4"),
        // provider prefix, no provider given: 1,000 @0.15
        c(None, "openai/gpt-4o-mini", now, usage!(input: 1000), Standard, Some(150_000), "openai/gpt-4o-mini"),
        // a provider with no entries falls back to the model's home provider
        c(
            Some("openai_compatible"),
            "gpt-4o-mini",
            now,
            usage!(input: 1000),
            Standard,
            Some(150_000),
            "openai/gpt-4o-mini",
        ),
        // ── Anthropic: cache reads and writes are outside input_tokens.
        // 1,000 @3 = 3,000,000; 10,000 read @0.30 = 3,000,000; 2,000 5m-write @3.75 = 7,500,000; 500 out @15 = 7,500,000
        c(
            a,
            "claude-sonnet-4-5",
            now,
            usage!(input: 1000, cache_read: 10_000, cache_write_5m: 2000, output: 500),
            Standard,
            Some(21_000_000),
            "anthropic/claude-sonnet-4-5",
        ),
        // dated id; 1h write 1,000 @6 = 6,000,000; 100 in @3 = 300,000
        c(
            a,
            "claude-sonnet-4-5-20250929",
            now,
            usage!(input: 100, cache_write_1h: 1000),
            Standard,
            Some(6_300_000),
            "anthropic/claude-sonnet-4-5",
        ),
        // total input exactly 200,000 (150,000 + 50,000 read) → base:
        // 150,000 @3 = 450,000,000; 50,000 @0.30 = 15,000,000; 1,000 out @15 = 15,000,000
        c(
            a,
            "claude-sonnet-4-5",
            now,
            usage!(input: 150_000, cache_read: 50_000, output: 1000),
            Standard,
            Some(480_000_000),
            "anthropic/claude-sonnet-4-5",
        ),
        // 200,001 → whole request at >200K rates:
        // 150,001 @6 = 900,006,000; 50,000 @0.60 = 30,000,000; 1,000 out @22.50 = 22,500,000
        c(
            a,
            "claude-sonnet-4-5",
            now,
            usage!(input: 150_001, cache_read: 50_000, output: 1000),
            Standard,
            Some(952_506_000),
            "anthropic/claude-sonnet-4-5",
        ),
        // a cache write alone can push over the threshold: 1 in + 200,000 5m-write
        // → 1 @6 = 6,000; 200,000 @7.50 = 1,500,000,000
        c(
            a,
            "claude-sonnet-4-20250514",
            now,
            usage!(input: 1, cache_write_5m: 200_000),
            Standard,
            Some(1_500_006_000),
            "anthropic/claude-sonnet-4",
        ),
        // batch: (1,000 @3 + 1,000 @15) / 2 = 9,000,000
        c(
            a,
            "claude-sonnet-4-5",
            now,
            usage!(input: 1000, output: 1000),
            Batch,
            Some(9_000_000),
            "anthropic/claude-sonnet-4-5",
        ),
        // haiku 4.5: 2,000 @1 = 2,000,000; 1,000 1h-write @2 = 2,000,000; 5,000 read @0.10 = 500,000; 300 out @5 = 1,500,000
        c(
            a,
            "claude-haiku-4-5-20251001",
            now,
            usage!(input: 2000, cache_write_1h: 1000, cache_read: 5000, output: 300),
            Standard,
            Some(6_000_000),
            "anthropic/claude-haiku-4-5",
        ),
        // opus 4.1: 1,000 @15 + 1,000 @75
        c(
            a,
            "claude-opus-4-1-20250805",
            now,
            usage!(input: 1000, output: 1000),
            Standard,
            Some(90_000_000),
            "anthropic/claude-opus-4-1",
        ),
        // -latest: 1,000 @0.80 + 1,000 @4
        c(
            a,
            "claude-3-5-haiku-latest",
            now,
            usage!(input: 1000, output: 1000),
            Standard,
            Some(4_800_000),
            "anthropic/claude-3-5-haiku",
        ),
        // extended thinking billed as output: 500 @3 = 1,500,000; 4,000 @15 = 60,000,000; 200 @15 = 3,000,000
        c(
            a,
            "claude-3-7-sonnet-20250219",
            now,
            usage!(input: 500, reasoning: 4000, output: 200),
            Standard,
            Some(64_500_000),
            "anthropic/claude-3-7-sonnet",
        ),
        // opus 4.6 before 2026-03-13, 250,000 in → >200K: 250,000 @10 = 2,500,000,000; 1,000 out @37.50 = 37,500,000
        c(
            a,
            "claude-opus-4-6",
            day(2026, 1, 1),
            usage!(input: 250_000, output: 1000),
            Standard,
            Some(2_537_500_000),
            "anthropic/claude-opus-4-6",
        ),
        // from 2026-03-13 no long-context premium: 250,000 @5 = 1,250,000,000; 1,000 @25 = 25,000,000
        c(
            a,
            "claude-opus-4-6",
            day(2026, 3, 13),
            usage!(input: 250_000, output: 1000),
            Standard,
            Some(1_275_000_000),
            "anthropic/claude-opus-4-6@2026-03-13",
        ),
        // ── Gemini: thoughts are reported outside candidates; priced as output.
        // 10,000 @1.25 = 12,500,000; 2,000 thoughts @10 = 20,000,000; 1,000 out @10 = 10,000,000
        c(
            g,
            "gemini-2.5-pro",
            now,
            usage!(input: 10_000, reasoning: 2000, output: 1000),
            Standard,
            Some(42_500_000),
            "gemini/gemini-2.5-pro",
        ),
        // exactly 200,000 → base: 250,000,000 + 1,000 @10 = 10,000,000
        c(
            g,
            "gemini-2.5-pro",
            now,
            usage!(input: 200_000, output: 1000),
            Standard,
            Some(260_000_000),
            "gemini/gemini-2.5-pro",
        ),
        // 200,001 → 200,001 @2.50 = 500,002,500; 1,000 @15 = 15,000,000
        c(
            g,
            "gemini-2.5-pro",
            now,
            usage!(input: 200_001, output: 1000),
            Standard,
            Some(515_002_500),
            "gemini/gemini-2.5-pro",
        ),
        // batch of the long-context rates: 200,001 @1.25 = 250,001,250; 1,000 @7.50 = 7,500,000
        c(
            g,
            "gemini-2.5-pro",
            now,
            usage!(input: 200_001, output: 1000),
            Batch,
            Some(257_501_250),
            "gemini/gemini-2.5-pro",
        ),
        // priority 1.8×: 10,000 @2.25 = 22,500,000; 1,000 @18 = 18,000,000
        c(
            g,
            "gemini-2.5-pro",
            now,
            usage!(input: 10_000, output: 1000),
            Priority,
            Some(40_500_000),
            "gemini/gemini-2.5-pro",
        ),
        // `google` + `models/` prefix: 1,000 @0.30 = 300,000; 1,000 audio @1 = 1,000,000;
        // 10,000 cached @0.03 = 300,000; 5,000 thoughts @2.50 = 12,500,000; 400 out @2.50 = 1,000,000
        c(
            Some("google"),
            "models/gemini-2.5-flash",
            now,
            usage!(input: 1000, input_audio: 1000, cache_read: 10_000, reasoning: 5000, output: 400),
            Standard,
            Some(15_100_000),
            "gemini/gemini-2.5-flash",
        ),
        // tiny request: 7 @0.10 = 700; 3 @0.40 = 1,200
        c(
            g,
            "gemini-2.5-flash-lite",
            now,
            usage!(input: 7, output: 3),
            Standard,
            Some(1_900),
            "gemini/gemini-2.5-flash-lite",
        ),
        // image output: 100 @0.30 = 30,000; 1,290 image @30 = 38,700,000; 10 text @2.50 = 25,000
        c(
            g,
            "gemini-2.5-flash-image",
            now,
            usage!(input: 100, output_image: 1290, output: 10),
            Standard,
            Some(38_755_000),
            "gemini/gemini-2.5-flash-image",
        ),
        // 1,000 @0.10 = 100,000; 1,000 cached @0.025 = 25,000; 1,000 out @0.40 = 400,000
        c(
            g,
            "gemini-2.0-flash-001",
            now,
            usage!(input: 1000, cache_read: 1000, output: 1000),
            Standard,
            Some(525_000),
            "gemini/gemini-2.0-flash",
        ),
        // A newer model's long-context tier, from the generated catalog (Google's
        // Gemini API pricing page, via genai-prices): gemini-3-pro-preview costs
        // $2 in / $12 out per million up to 200,000 input tokens, $4 / $18 above.
        //   at 200,000 (not above): 200,000 @2 + 1,000 @12 = 400,000,000 + 12,000,000
        c(
            g,
            "gemini-3-pro-preview",
            now,
            usage!(input: 200_000, output: 1000),
            Standard,
            Some(412_000_000),
            "gemini/gemini-3-pro-preview",
        ),
        //   at 250,000: the whole request at the tier, 250,000 @4 + 1,000 @18 = 1,000,000,000 + 18,000,000
        c(
            g,
            "gemini-3-pro-preview",
            now,
            usage!(input: 250_000, output: 1000),
            Standard,
            Some(1_018_000_000),
            "gemini/gemini-3-pro-preview",
        ),
        // gemini 1.5 flash over its 128K tier: 128,001 @0.15 = 19,200,150
        c(g, "gemini-1.5-flash", now, usage!(input: 128_001), Standard, Some(19_200_150), "gemini/gemini-1.5-flash"),
        // ── Bedrock ids.
        // regional (+10%): 1,000 @3.30 = 3,300,000; 1,000 @16.50 = 16,500,000
        c(
            b,
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            now,
            usage!(input: 1000, output: 1000),
            Standard,
            Some(19_800_000),
            "bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0",
        ),
        // global profile: 3,000,000 + 15,000,000
        c(
            b,
            "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
            now,
            usage!(input: 1000, output: 1000),
            Standard,
            Some(18_000_000),
            "bedrock/global.anthropic.claude-sonnet-4-5-20250929-v1:0",
        ),
        // no 1h rate listed → 5m rate: 1,000 @1 = 1,000,000; 1,000 @0.80 = 800,000
        c(
            Some("aws"),
            "anthropic.claude-3-5-haiku-20241022-v1:0",
            now,
            usage!(input: 1000, cache_write_1h: 1000),
            Standard,
            Some(1_800_000),
            "bedrock/anthropic.claude-3-5-haiku-20241022-v1:0",
        ),
        // eu. prefix, batch: (1,000 @3 + 1,000 @15) / 2
        c(
            b,
            "eu.anthropic.claude-3-7-sonnet-20250219-v1:0",
            now,
            usage!(input: 1000, output: 1000),
            Batch,
            Some(9_000_000),
            "bedrock/anthropic.claude-3-7-sonnet-20250219-v1:0",
        ),
        // Bedrock's own global-profile price (AWS pricing page, via genai-prices):
        // 1,000 @5 + 1,000 @25 = 5,000,000 + 25,000,000
        c(
            b,
            "global.anthropic.claude-opus-4-6-v1",
            day(2026, 4, 1),
            usage!(input: 1000, output: 1000),
            Standard,
            Some(30_000_000),
            "bedrock/global.anthropic.claude-opus-4-6-v1:0",
        ),
        // in-region id (no `global.`): 10 % above the global profile,
        // 1,000 @5.50 + 1,000 @27.50 = 5,500,000 + 27,500,000
        c(
            b,
            "anthropic.claude-opus-4-6-v1",
            day(2026, 4, 1),
            usage!(input: 1000, output: 1000),
            Standard,
            Some(33_000_000),
            "bedrock/regional.anthropic.claude-opus-4-6-v1:0",
        ),
        // rounding: 1 cached @0.00875 = 8.75 → 9 nd; 1 in @0.035 = 35 nd
        c(
            b,
            "amazon.nova-micro-v1:0",
            now,
            usage!(input: 1, cache_read: 1),
            Standard,
            Some(44),
            "bedrock/amazon.nova-micro-v1:0",
        ),
        // ── Azure OpenAI, Mistral, DeepSeek.
        c(
            Some("azure_openai"),
            "gpt-4o-mini",
            now,
            usage!(input: 1000),
            Standard,
            Some(150_000),
            "azure_openai/gpt-4o-mini",
        ),
        c(
            Some("azure"),
            "gpt-4o-2024-05-13",
            now,
            usage!(input: 1000),
            Standard,
            Some(5_000_000),
            "azure_openai/gpt-4o-2024-05-13",
        ),
        // batch on Azure: 1,000 @1.25 = 1,250,000
        c(
            Some("azure_openai"),
            "gpt-4o-2024-11-20",
            now,
            usage!(input: 1000),
            Batch,
            Some(1_250_000),
            "azure_openai/gpt-4o",
        ),
        // 1,000 @0.50 + 1,000 @1.50
        c(
            Some("mistral"),
            "mistral-large-latest",
            now,
            usage!(input: 1000, output: 1000),
            Standard,
            Some(2_000_000),
            "mistral/mistral-large-2512",
        ),
        // V3 prices: 1,000 @0.27 = 270,000; 1,000 hit @0.07 = 70,000; 1,000 out @1.10 = 1,100,000
        c(
            Some("deepseek"),
            "deepseek-chat",
            day(2025, 8, 1),
            usage!(input: 1000, cache_read: 1000, output: 1000),
            Standard,
            Some(1_440_000),
            "deepseek/deepseek-chat",
        ),
        // V3.1 (2025-09-05..28): 1,000 @0.56 = 560,000; 1,000 reasoning @1.68 = 1,680,000
        c(
            Some("deepseek"),
            "deepseek-reasoner",
            day(2025, 9, 10),
            usage!(input: 1000, reasoning: 1000),
            Standard,
            Some(2_240_000),
            "deepseek/deepseek-reasoner@2025-09-05",
        ),
        // V3.2: 280,000 + 28,000 + 420,000
        c(
            Some("deepseek"),
            "deepseek-chat",
            now,
            usage!(input: 1000, cache_read: 1000, output: 1000),
            Standard,
            Some(728_000),
            "deepseek/deepseek-chat@2025-09-29",
        ),
        // ── Server-side web searches: billed per call at web_search_per_1k (USD per
        // 1,000; catalog/prices.toml `[provider.openai]`, `[provider.azure_openai]`
        // and `[provider.anthropic]`: "10"), added to the token cost and never
        // discounted by the service tier. One search = $10 / 1,000 = $0.01 = 10,000,000 nd.
        //
        // claude-haiku-4-5 (prices.toml [[model]] anthropic/claude-haiku-4-5: input "1",
        // output "5"; source https://docs.anthropic.com/en/docs/about-claude/pricing):
        //   1,000 in @1 = 1,000,000; 100 out @5 = 500,000; 3 searches × 10,000,000 = 30,000,000
        //   → 31,500,000
        c(
            a,
            "claude-haiku-4-5",
            now,
            usage!(input: 1000, output: 100, web_search_requests: 3),
            Standard,
            Some(31_500_000),
            "anthropic/claude-haiku-4-5",
        ),
        // the dated name prices the same
        c(
            a,
            "claude-haiku-4-5-20251001",
            now,
            usage!(input: 1000, output: 100, web_search_requests: 3),
            Standard,
            Some(31_500_000),
            "anthropic/claude-haiku-4-5",
        ),
        // batch halves the tokens only: (1,000,000 + 500,000) / 2 = 750,000; searches 30,000,000 → 30,750,000
        c(
            a,
            "claude-haiku-4-5",
            now,
            usage!(input: 1000, output: 100, web_search_requests: 3),
            Batch,
            Some(30_750_000),
            "anthropic/claude-haiku-4-5",
        ),
        // gpt-4o from 2024-10-02 (prices.toml: input "2.50", output "10.00";
        // source https://platform.openai.com/docs/pricing):
        //   1,000 in @2.50 = 2,500,000; 100 out @10 = 1,000,000; 2 searches = 20,000,000 → 23,500,000
        c(
            o,
            "gpt-4o",
            now,
            usage!(input: 1000, output: 100, web_search_requests: 2),
            Standard,
            Some(23_500_000),
            "openai/gpt-4o@2024-10-02",
        ),
        // batch: half of 35,000,000 (the 10,000-in / 1,000-out case above) = 17,500,000;
        //   2 searches at full price 20,000,000 → 37,500,000 (not 27,500,000)
        c(
            o,
            "gpt-4o",
            now,
            usage!(input: 10_000, output: 1000, web_search_requests: 2),
            Batch,
            Some(37_500_000),
            "openai/gpt-4o@2024-10-02",
        ),
        // priority raises the token rates only: 1,000 in @4.25 = 4,250,000; 100 out @17 = 1,700,000;
        //   1 search 10,000,000 → 15,950,000
        c(
            o,
            "gpt-4o",
            now,
            usage!(input: 1000, output: 100, web_search_requests: 1),
            Priority,
            Some(15_950_000),
            "openai/gpt-4o@2024-10-02",
        ),
        // Azure OpenAI gpt-4o (prices.toml: input "2.50"): 1,000 in = 2,500,000; 1 search 10,000,000 → 12,500,000
        c(
            Some("azure_openai"),
            "gpt-4o",
            now,
            usage!(input: 1000, web_search_requests: 1),
            Standard,
            Some(12_500_000),
            "azure_openai/gpt-4o",
        ),
        // searches alone (no tokens): 1,000 searches = $10 = 10,000,000,000 nd
        c(
            a,
            "claude-haiku-4-5",
            now,
            usage!(web_search_requests: 1000),
            Standard,
            Some(10_000_000_000),
            "anthropic/claude-haiku-4-5",
        ),
        // ── Images, transcription and speech (catalog/prices.toml, OpenAI's published
        // prices, source https://openai.com/api/pricing/). Per-unit prices are not
        // scaled by the service tier.
        //
        // dall-e-3, HD, 1024x1792: $0.120 per image; 2 images = $0.24 = 240,000,000 nd
        c(
            o,
            "hd/1024-x-1792/dall-e-3",
            now,
            usage!(images: 2),
            Standard,
            Some(240_000_000),
            "openai/hd/1024-x-1792/dall-e-3",
        ),
        // the batch tier does not halve a per-image price: still 240,000,000
        c(
            o,
            "hd/1024-x-1792/dall-e-3",
            now,
            usage!(images: 2),
            Batch,
            Some(240_000_000),
            "openai/hd/1024-x-1792/dall-e-3",
        ),
        // dall-e-3, standard, 1024x1024: $0.040; the size alone names the default (standard) quality:
        //   1 image = 40,000,000
        c(
            o,
            "1024-x-1024/dall-e-3",
            now,
            usage!(images: 1),
            Standard,
            Some(40_000_000),
            "openai/standard/1024-x-1024/dall-e-3",
        ),
        // Azure at OpenAI's price (prices.toml azure_openai, same source): 2 × $0.12 = 240,000,000
        c(
            Some("azure_openai"),
            "hd/1024-x-1792/dall-e-3",
            now,
            usage!(images: 2),
            Standard,
            Some(240_000_000),
            "azure_openai/hd/1024-x-1792/dall-e-3",
        ),
        // dall-e-2, 256x256: $0.016 per image; 3 images = $0.048 = 48,000,000 nd
        c(o, "256-x-256/dall-e-2", now, usage!(images: 3), Standard, Some(48_000_000), "openai/256-x-256/dall-e-2"),
        // `standard/…` is the same price (an alias): 48,000,000
        c(
            o,
            "standard/256-x-256/dall-e-2",
            now,
            usage!(images: 3),
            Standard,
            Some(48_000_000),
            "openai/256-x-256/dall-e-2",
        ),
        // The bare model name has no price (not $0): the size decides the price.
        c(o, "dall-e-3", now, usage!(images: 1), Standard, None, ""),
        c(o, "dall-e-2", now, usage!(images: 1), Standard, None, ""),
        c(Some("azure_openai"), "dall-e-3", now, usage!(images: 1), Standard, None, ""),
        // gpt-image-1: text input $5/M, input image tokens $10/M, output image tokens $40/M:
        //   50 text × 5 × 1000 = 250,000; 323 image × 10 × 1000 = 3,230,000;
        //   4,160 output image × 40 × 1000 = 166,400,000 → 169,880,000 nd ($0.16988)
        c(
            o,
            "gpt-image-1",
            now,
            usage!(input: 50, input_image: 323, output_image: 4160),
            Standard,
            Some(169_880_000),
            "openai/gpt-image-1",
        ),
        // whisper-1: $0.006 per minute = $0.0001 per second; 12,500 ms = 12.5 s × $0.0001 = $0.00125
        //   = 12,500 × 0.0001 × 1e6 = 1,250,000 nd
        c(o, "whisper-1", now, usage!(audio_ms: 12_500), Standard, Some(1_250_000), "openai/whisper-1"),
        // not halved in batch either
        c(o, "whisper-1", now, usage!(audio_ms: 12_500), Batch, Some(1_250_000), "openai/whisper-1"),
        // 1 ms = 0.001 s × $0.0001 = $0.0000001 = 100 nd exactly
        c(o, "whisper-1", now, usage!(audio_ms: 1), Standard, Some(100), "openai/whisper-1"),
        // gpt-4o-transcribe: text in $2.50/M, audio in $6/M, out $10/M:
        //   18 × 2,500 = 45,000; 125 × 6,000 = 750,000; 40 × 10,000 = 400,000 → 1,195,000 nd
        c(
            o,
            "gpt-4o-transcribe",
            now,
            usage!(input: 18, input_audio: 125, output: 40),
            Standard,
            Some(1_195_000),
            "openai/gpt-4o-transcribe",
        ),
        // gpt-4o-mini-transcribe: $1.25 / $3 audio / $5 out:
        //   18 × 1,250 = 22,500; 125 × 3,000 = 375,000; 40 × 5,000 = 200,000 → 597,500 nd
        c(
            o,
            "gpt-4o-mini-transcribe",
            now,
            usage!(input: 18, input_audio: 125, output: 40),
            Standard,
            Some(597_500),
            "openai/gpt-4o-mini-transcribe",
        ),
        // tts-1: $15 per 1M characters = $0.000015 each; 1,000 characters = $0.015 = 15,000,000 nd
        c(o, "tts-1", now, usage!(characters: 1000), Standard, Some(15_000_000), "openai/tts-1"),
        // tts-1-hd: $30 per 1M characters = $0.00003 each; 333 characters = $0.00999 = 9,990,000 nd
        c(o, "tts-1-hd", now, usage!(characters: 333), Standard, Some(9_990_000), "openai/tts-1-hd"),
        // gpt-4o-mini-tts: text in $0.60/M, audio out $12/M:
        //   20 × 600 = 12,000; 1,250 × 12,000 = 15,000,000 → 15,012,000 nd
        c(
            o,
            "gpt-4o-mini-tts",
            now,
            usage!(input: 20, output_audio: 1250),
            Standard,
            Some(15_012_000),
            "openai/gpt-4o-mini-tts",
        ),
        // ── Unknown or look-alike models are not priced.
        c(o, "gpt-4o-mini-ultra", now, usage!(input: 1000), Standard, None, ""),
        c(o, "gpt-4o-min", now, usage!(input: 1000), Standard, None, ""),
        // A name only LiteLLM's map lists is priced by it (OpenAI's page: $5 in): 1,000 @5
        c(None, "chatgpt-4o-latest", now, usage!(input: 1000), Standard, Some(5_000_000), "openai/chatgpt-4o-latest"),
        // A self-hosted model is never priced at a reseller's (Perplexity's, Groq's…) rates.
        c(Some("local-vllm"), "llama-3.1-8b-instant", now, usage!(input: 1000), Standard, None, ""),
        c(Some("openai_compatible"), "llama-3.1-70b-instruct", now, usage!(input: 1000), Standard, None, ""),
        c(a, "claude-sonnet-4-5-turbo", now, usage!(input: 1000), Standard, None, ""),
    ];
    assert!(cases.len() >= 40, "only {} cases", cases.len());

    let catalog = Catalog::builtin();
    assert!(!catalog.is_empty(), "built-in catalog failed to load");
    let mut failures = Vec::new();
    for (i, k) in cases.iter().enumerate() {
        let found = catalog.lookup(k.provider, k.model, k.at);
        let what = format!("case {} {:?}/{} {:?}", i + 1, k.provider, k.model, k.tier);
        match (found, k.total) {
            (None, None) => {}
            (Some(e), None) => failures.push(format!("{what}: expected no price, found {}", e.label())),
            (None, Some(_)) => failures.push(format!("{what}: no entry found")),
            (Some(e), Some(expected)) => {
                if e.label() != k.entry {
                    failures.push(format!("{what}: priced by {} instead of {}", e.label(), k.entry));
                }
                let got = cost(e, &k.usage, k.tier);
                if got.total.nanos() != expected {
                    failures.push(format!(
                        "{what}: total {} nd, expected {expected} nd ({:?})",
                        got.total.nanos(),
                        got.parts
                    ));
                }
                if got.parts.sum() != got.total {
                    failures.push(format!("{what}: parts do not add up"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn parts_and_cache_savings() {
    let e = Catalog::builtin().lookup(Some("openai"), "gpt-5", day(2025, 11, 1)).unwrap();
    let got = cost(e, &usage!(input: 2000, cache_read: 8000, reasoning: 3000, output: 1000), Standard);
    assert_eq!(got.parts.input.nanos(), 2_500_000);
    assert_eq!(got.parts.cache_read.nanos(), 1_000_000);
    assert_eq!(got.parts.reasoning.nanos(), 30_000_000);
    assert_eq!(got.parts.output.nanos(), 10_000_000);
    // 8,000 cached would have cost 8,000 × 1,250 = 10,000,000 uncached.
    assert_eq!(got.cache_savings.nanos(), 9_000_000);
    assert_eq!(got.total.to_string(), "0.043500000");

    // Anthropic: 10,000 read @0.30 vs @3 → savings 27,000,000.
    let e = Catalog::builtin().lookup(Some("anthropic"), "claude-sonnet-4-5", day(2025, 11, 1)).unwrap();
    let got = cost(e, &usage!(cache_read: 10_000, cache_write_5m: 2000), Standard);
    assert_eq!(got.cache_savings.nanos(), 27_000_000);
    assert_eq!(got.parts.cache_write_5m.nanos(), 7_500_000);
    // Batch halves both the price and the saving.
    let got = cost(e, &usage!(cache_read: 10_000), Batch);
    assert_eq!(got.cache_savings.nanos(), 13_500_000);
}

#[test]
fn web_searches_are_their_own_part_rounded_once() {
    let e = Catalog::builtin().lookup(Some("anthropic"), "claude-haiku-4-5", day(2025, 11, 1)).unwrap();
    // 1,000 in @1 = 1,000,000; 100 out @5 = 500,000; 3 searches × $10/1,000 = 30,000,000.
    let got = cost(e, &usage!(input: 1000, output: 100, web_search_requests: 3), Standard);
    assert_eq!(got.parts.web_search.nanos(), 30_000_000);
    assert_eq!(got.parts.input.nanos(), 1_000_000);
    assert_eq!(got.parts.output.nanos(), 500_000);
    assert_eq!(got.parts.request_fee.nanos(), 0);
    assert_eq!(got.parts.tools().nanos(), 30_000_000);
    assert_eq!(got.total.nanos(), 31_500_000);
    assert_eq!(got.total.to_string(), "0.031500000");
    // Batch: the tokens halve, the searches do not.
    let batch = cost(e, &usage!(input: 1000, output: 100, web_search_requests: 3), Batch);
    assert_eq!(batch.parts.web_search.nanos(), 30_000_000);
    assert_eq!(batch.total.nanos(), 30_750_000);
    // No searches: no part.
    assert_eq!(cost(e, &usage!(input: 1000), Standard).parts.web_search.nanos(), 0);

    // A price that is not a whole number of nanos per search: $0.0125005 per
    // 1,000 = $0.0000125005 = 12,500.5 nd per search. 3 searches = 37,501.5 nd,
    // rounded once (half away from zero) → 37,502; rounding each search first
    // would give 3 × 12,501 = 37,503. With a request fee of $0.000001 (1,000 nd),
    // tools() is both: 38,502.
    let custom = Catalog::from_toml_str(
        r#"
[[model]]
provider = "openai"
model = "searcher"
input = "1"
output = "1"
request_fee = "0.000001"
web_search_per_1k = "0.0125005"
"#,
    )
    .unwrap();
    let e = custom.lookup(Some("openai"), "searcher", day(2025, 11, 1)).unwrap();
    assert_eq!(e.web_search_per_1k.map(|d| d.to_string()).as_deref(), Some("0.0125005"));
    let got = cost(e, &usage!(web_search_requests: 3), Standard);
    assert_eq!(got.parts.web_search.nanos(), 37_502);
    assert_eq!(got.parts.request_fee.nanos(), 1_000);
    assert_eq!(got.parts.tools().nanos(), 38_502);
    assert_eq!(got.total.nanos(), 38_502);
    // An entry with no web_search_per_1k (and no provider default) charges no searches.
    let plain = Catalog::from_toml_str(
        r#"
[[model]]
provider = "local"
model = "plain"
input = "1"
output = "1"
"#,
    )
    .unwrap();
    let e = plain.lookup(Some("local"), "plain", day(2025, 11, 1)).unwrap();
    assert_eq!(e.web_search_per_1k, None);
    assert_eq!(cost(e, &usage!(input: 1000, web_search_requests: 5), Standard).total.nanos(), 1_000_000);
}

#[test]
fn per_unit_parts_are_their_own_and_rounded_once() {
    let now = day(2025, 11, 1);
    let builtin = Catalog::builtin();
    let get = |p: &str, m: &str| builtin.lookup(Some(p), m, now).unwrap();

    // dall-e-3 HD 1024x1792 (https://openai.com/api/pricing/: $0.120 per image) × 2 = 240,000,000 nd.
    let e = get("openai", "hd/1024-x-1792/dall-e-3");
    assert!(e.per_unit_priced());
    let got = cost(e, &usage!(images: 2), Standard);
    assert_eq!(got.parts.images.nanos(), 240_000_000);
    assert_eq!(got.total.to_string(), "0.240000000");
    // Not a tool fee.
    assert_eq!(got.parts.tools().nanos(), 0);

    // dall-e-2 256x256 ($0.016) × 3 = $0.048.
    let got = cost(get("openai", "256-x-256/dall-e-2"), &usage!(images: 3), Standard);
    assert_eq!(got.parts.images.nanos(), 48_000_000);
    assert_eq!(got.total.to_string(), "0.048000000");

    // gpt-image-1: 50 text in @5 = 250,000; 323 image in @10 = 3,230,000; 4,160 image out @40 = 166,400,000.
    let e = get("openai", "gpt-image-1");
    assert!(!e.per_unit_priced());
    let got = cost(e, &usage!(input: 50, input_image: 323, output_image: 4160), Standard);
    assert_eq!(got.parts.input.nanos(), 250_000);
    assert_eq!(got.parts.input_image.nanos(), 3_230_000);
    assert_eq!(got.parts.output_image.nanos(), 166_400_000);
    assert_eq!(got.total.nanos(), 169_880_000);
    // Batch halves token prices, input image tokens included: 84,940,000.
    assert_eq!(cost(e, &usage!(input: 50, input_image: 323, output_image: 4160), Batch).total.nanos(), 84_940_000);

    // whisper-1 ($0.006/min = $0.0001/s): 12,500 ms = $0.00125 = 1,250,000 nd.
    let w = get("openai", "whisper-1");
    let got = cost(w, &usage!(audio_ms: 12_500), Standard);
    assert_eq!(got.parts.audio.nanos(), 1_250_000);
    assert_eq!(got.total.to_string(), "0.001250000");
    // 1 ms = 100 nd exactly; 7 ms = 700 nd.
    assert_eq!(cost(w, &usage!(audio_ms: 1), Standard).parts.audio.nanos(), 100);
    assert_eq!(cost(w, &usage!(audio_ms: 7), Standard).parts.audio.nanos(), 700);

    // tts-1 ($15 / 1M characters): 1,000 characters = $0.015; tts-1-hd ($30 / 1M): 333 = $0.00999.
    assert_eq!(cost(get("openai", "tts-1"), &usage!(characters: 1000), Standard).parts.characters.nanos(), 15_000_000);
    assert_eq!(cost(get("openai", "tts-1-hd"), &usage!(characters: 333), Standard).parts.characters.nanos(), 9_990_000);

    // gpt-4o-transcribe: 18 text in @2.50 = 45,000; 125 audio in @6 = 750,000; 40 out @10 = 400,000.
    let got = cost(get("openai", "gpt-4o-transcribe"), &usage!(input: 18, input_audio: 125, output: 40), Standard);
    assert_eq!(
        (got.parts.input.nanos(), got.parts.input_audio.nanos(), got.parts.output.nanos()),
        (45_000, 750_000, 400_000)
    );
    assert_eq!(got.total.nanos(), 1_195_000);

    // gpt-4o-mini-tts: 20 in @0.60 = 12,000; 1,250 audio out @12 = 15,000,000.
    let got = cost(get("openai", "gpt-4o-mini-tts"), &usage!(input: 20, output_audio: 1250), Standard);
    assert_eq!((got.parts.input.nanos(), got.parts.output_audio.nanos()), (12_000, 15_000_000));
    assert_eq!(got.total.nanos(), 15_012_000);

    // A unit the entry has no price for costs nothing here (the gateway checks coverage):
    // gpt-4o with 3 images and 1,000 input tokens = the tokens only, 1,000 @2.50 = 2,500,000.
    let got = cost(get("openai", "gpt-4o"), &usage!(input: 1000, images: 3, audio_ms: 5000, characters: 40), Standard);
    assert_eq!((got.parts.images, got.parts.audio, got.parts.characters), (Money::ZERO, Money::ZERO, Money::ZERO));
    assert_eq!(got.total.nanos(), 2_500_000);

    // Rounded once per part, half away from zero: at $0.0001835 per second a millisecond is
    // 183.5 nd, so 3 ms = 550.5 nd → 551 (rounding each millisecond first would give 3 × 184 = 552),
    // 1 ms → 184, 2 ms = 367 exactly.
    let custom = Catalog::from_toml_str(
        r#"
[[model]]
provider = "local"
model = "stt"
per_audio_second = "0.0001835"
"#,
    )
    .unwrap();
    let e = custom.lookup(Some("local"), "stt", now).unwrap();
    assert_eq!((e.rates.input, e.rates.output), (Default::default(), Default::default()));
    assert_eq!(cost(e, &usage!(audio_ms: 3), Standard).parts.audio.nanos(), 551);
    assert_eq!(cost(e, &usage!(audio_ms: 1), Standard).parts.audio.nanos(), 184);
    assert_eq!(cost(e, &usage!(audio_ms: 2), Standard).parts.audio.nanos(), 367);
    // With tokens as well (none priced: the entry gives only a per-second price) the total is the part.
    assert_eq!(cost(e, &usage!(audio_ms: 3, input: 1000, output: 1000), Standard).total.nanos(), 551);
}
