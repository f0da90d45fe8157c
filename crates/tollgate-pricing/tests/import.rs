//! Importers against small fixtures written in each outside format, the
//! catalog writer on imported data, and the discrepancy report.

// Test helpers outside #[test] fns unwrap too: a test may panic.
#![allow(clippy::unwrap_used)]

use chrono::{DateTime, TimeZone, Utc};
use rust_decimal::Decimal;
use tollgate_pricing::import::{self, Discrepancy};
use tollgate_pricing::{cost, Catalog, ServiceTier};
use tollgate_units::Usage;

const GENAI: &str = include_str!("fixtures/genai-prices/data.json");
const LITELLM: &str = include_str!("fixtures/litellm/model_prices.json");

fn day(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).single().unwrap()
}

fn dec(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn usage(input: u64, cache_read: u64, output: u64) -> Usage {
    Usage { input, cache_read, output, ..Usage::default() }
}

#[test]
fn genai_prices_fixture() {
    let (c, report) = import::genai_prices_with_report(GENAI).unwrap();
    assert_eq!(report.models_read, 10);
    assert_eq!(report.entries_imported, 10);
    assert_eq!(c.len(), 10);
    assert_eq!(report.skipped_models, vec![("openai/omni-moderation".to_owned(), "no token prices".to_owned())]);
    assert_eq!(report.skipped_conditions, 1, "the time-of-day price");
    assert_eq!(report.skipped_fields.get("cache_audio_read_mtok"), Some(&1));
    assert_eq!(report.skipped_fields.get("cache_image_read_mtok"), Some(&1));
    // Input image tokens have their own bucket; genai-prices has no per-unit prices.
    let mini = c.lookup(Some("openai"), "gpt-image-1-mini", day(2025, 11, 1)).unwrap();
    assert_eq!(mini.rates.input_image, Some(dec("2.5")));
    assert!(!mini.per_unit_priced());
    assert!(c.entries().all(|e| !e.per_unit_priced()));
    // Web searches are priced: $10 per 1,000.
    assert_eq!(report.skipped_fields.get("web_searches_kcount"), None);
    let sonnet = c.lookup(Some("anthropic"), "claude-sonnet-4-5", day(2025, 11, 1)).unwrap();
    assert_eq!(sonnet.web_search_per_1k, Some(dec("10")));

    // Dated conditional prices.
    let o3 = |at| c.lookup(Some("openai"), "o3", at).unwrap().rates.input;
    assert_eq!(o3(day(2025, 5, 1)), dec("10"));
    assert_eq!(o3(day(2025, 6, 10)), dec("2"));
    // Aliases from `equals`.
    assert_eq!(c.lookup(Some("openai"), "gpt-4o-2024-08-06", day(2025, 1, 1)).unwrap().model, "gpt-4o");
    // Embedding without an output price → output 0.
    let e = c.lookup(None, "text-embedding-3-small", day(2025, 1, 1)).unwrap();
    assert_eq!((e.rates.input, e.rates.output), (dec("0.02"), Decimal::ZERO));
    // requests_kcount 5 → $0.005 per request = 5,000,000 nd.
    let e = c.lookup(None, "search-model", day(2025, 1, 1)).unwrap();
    assert_eq!(cost(e, &Usage::default(), ServiceTier::Standard).total.nanos(), 5_000_000);

    // Tiers: the untiered cache-write price carries into the tier.
    let s = c.lookup(Some("anthropic"), "claude-sonnet-4-5-20250929", day(2025, 11, 1)).unwrap();
    assert_eq!(s.long_context.len(), 1);
    let t = &s.long_context[0];
    assert_eq!(t.above_input_tokens, 200_000);
    assert_eq!(
        (t.rates.input, t.rates.cache_read, t.rates.cache_write_5m, t.rates.cache_write_1h, t.rates.output),
        (dec("6"), Some(dec("0.6")), Some(dec("3.75")), Some(dec("6")), dec("22.5"))
    );
    // 200,001 input tokens @ $6 = 1,200,006,000 nd.
    assert_eq!(cost(s, &usage(200_001, 0, 0), ServiceTier::Standard).total.nanos(), 1_200_006_000);
    // `google` is the gemini provider; DeepSeek keeps only the unconditional price.
    assert!(c.lookup(Some("gemini"), "gemini-2.5-pro", day(2025, 1, 1)).is_some());
    assert_eq!(c.lookup(Some("deepseek"), "deepseek-chat", day(2025, 1, 1)).unwrap().rates.input, dec("0.135"));
}

#[test]
fn litellm_fixture() {
    let (c, report) = import::litellm_with_report(LITELLM).unwrap();
    assert_eq!(report.models_read, 19);
    assert_eq!(report.entries_imported, 17);
    let skipped: Vec<&str> = report.skipped_models.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        skipped,
        ["azure/standard/1024-x-1024/dall-e-2", "bedrock/*/1-month-commitment/cohere.command-text-v14"]
    );
    assert_eq!(report.skipped_fields.get("search_context_cost_per_query"), Some(&1));
    // gemini-2.5-flash-image's per-image figure (it is billed by image tokens).
    assert_eq!(report.skipped_fields.get("output_cost_per_image"), Some(&1));
    let now = day(2025, 11, 1);

    // 1.1e-06 per token is exactly $1.10 per million (a float product would
    // give 1.0999999999999999).
    let e = c.lookup(Some("openai"), "o3-mini", now).unwrap();
    assert_eq!(e.rates.input.to_string(), "1.1");
    assert_eq!(e.rates.output.to_string(), "4.4");
    assert_eq!(e.rates.cache_read.map(|d| d.to_string()).as_deref(), Some("0.55"));

    // Service tiers that are one multiple of standard become multipliers.
    let g = c.lookup(Some("openai"), "gpt-4o", now).unwrap();
    assert_eq!(g.batch.as_ref().and_then(|t| t.multiplier), Some(dec("0.5")));
    assert_eq!(g.priority.as_ref().and_then(|t| t.multiplier), Some(dec("1.7")));
    // priority: 1,000 in @4.25 = 4,250,000; 1,000 cached @2.125 = 2,125,000
    assert_eq!(cost(g, &usage(1000, 1000, 0), ServiceTier::Priority).total.nanos(), 6_375_000);

    // Long context with every bucket, including the 1-hour write.
    let s = c.lookup(Some("anthropic"), "claude-sonnet-4-5", now).unwrap();
    let t = &s.long_context[0];
    assert_eq!(t.above_input_tokens, 200_000);
    assert_eq!(
        (t.rates.input, t.rates.cache_write_5m, t.rates.cache_write_1h, t.rates.cache_read, t.rates.output),
        (dec("6"), Some(dec("7.5")), Some(dec("12")), Some(dec("0.6")), dec("22.5"))
    );

    // Gemini batch does not halve cache reads: explicit tier rates.
    let p = c.lookup(Some("gemini"), "gemini-2.5-pro", now).unwrap();
    let b = p.batch.as_ref().unwrap();
    assert!(b.multiplier.is_none());
    // 1,000 in @0.625 = 625,000; 1,000 cached @0.125 = 125,000; 1,000 out @5 = 5,000,000
    assert_eq!(cost(p, &usage(1000, 1000, 1000), ServiceTier::Batch).total.nanos(), 5_750_000);
    // Long context within the batch tier: 200,001 @1.25 = 250,001,250
    assert_eq!(cost(p, &usage(200_001, 0, 0), ServiceTier::Batch).total.nanos(), 250_001_250);
    assert_eq!(p.priority.as_ref().and_then(|t| t.multiplier), Some(dec("1.8")));

    // Routing prefixes are removed, provider names mapped.
    assert!(c.lookup(Some("mistral"), "mistral-large-latest", now).is_some_and(|e| e.provider == "mistral"));
    assert!(c
        .lookup(Some("bedrock"), "us.anthropic.claude-3-5-haiku-20241022-v1:0", now)
        .is_some_and(|e| e.provider == "bedrock"));
    let s = c.lookup(Some("perplexity"), "sonar", now).unwrap();
    assert_eq!(s.request_fee, Some(dec("0.005")));
}

#[test]
fn imported_catalogs_are_written_in_our_format_and_read_back() {
    for c in [import::genai_prices(GENAI).unwrap(), import::litellm(LITELLM).unwrap()] {
        let text = c.to_toml_string();
        let back = Catalog::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(c.entries().collect::<Vec<_>>(), back.entries().collect::<Vec<_>>());
    }
}

#[test]
fn discrepancies_name_model_and_bucket() {
    let ours = Catalog::from_toml_str(
        r#"
[provider.openai]
batch = { multiplier = "0.5" }

[[model]]
provider = "openai"
model = "gpt-4o"
input = "2.50"
cache_read = "1.25"
output = "12.00"

[[model]]
provider = "openai"
model = "o3-mini"
input = "1.10"
cache_read = "0.55"
output = "4.40"

[[model]]
provider = "openai"
model = "not-in-theirs"
input = "1"
output = "1"

[[model]]
provider = "anthropic"
model = "claude-sonnet-4-5"
input = "3"
output = "15"
"#,
    )
    .unwrap();
    let theirs = import::litellm(LITELLM).unwrap();
    let found = import::discrepancies(&ours, &theirs);
    let summary: Vec<(String, String, Option<Decimal>, Option<Decimal>)> =
        found.iter().map(|d: &Discrepancy| (d.model.clone(), d.what.clone(), d.ours, d.theirs)).collect();
    assert_eq!(
        summary,
        vec![
            // Our sonnet lists no long-context tier; theirs does.
            ("claude-sonnet-4-5".to_owned(), "long_context>200000".to_owned(), None, Some(dec("6"))),
            ("gpt-4o".to_owned(), "output".to_owned(), Some(dec("12.00")), Some(dec("10"))),
            ("gpt-4o".to_owned(), "batch.output".to_owned(), Some(dec("6.000")), Some(dec("5"))),
        ]
    );
    assert_eq!(found[1].to_string(), "openai/gpt-4o output: ours 12 vs theirs 10");
    // A catalog agrees with itself.
    assert!(import::discrepancies(&theirs, &theirs).is_empty());
}

#[test]
fn malformed_input_is_an_error() {
    assert!(matches!(import::genai_prices("{"), Err(import::ImportError::Json(_))));
    assert!(matches!(import::litellm("[1,2]"), Err(import::ImportError::Json(_))));
    assert!(import::genai_prices(r#"[{"id":"x","models":[{"id":"m","prices":{"input_mtok":"cheap"}}]}]"#)
        .is_ok_and(|c| c.is_empty()));
}

#[test]
fn litellm_per_unit_prices() {
    let (c, report) = import::litellm_with_report(LITELLM).unwrap();
    let now = day(2025, 11, 1);
    let get = |p: &str, m: &str| c.lookup(Some(p), m, now).filter(|e| e.provider == p && e.model == m).unwrap();

    // An image model priced per image only: token rates 0.
    let d = get("openai", "dall-e-3");
    assert_eq!(d.per_image, Some(dec("0.04")));
    assert_eq!((d.rates.input, d.rates.output), (Decimal::ZERO, Decimal::ZERO));
    assert!(d.per_unit_priced());
    // Per pixel on a sized key: 7.19343e-08 × 1024 × 1792 = 0.1319999… → 0.132 (4 places).
    assert_eq!(get("azure_openai", "hd/1024-x-1792/dall-e-3").per_image, Some(dec("0.132")));
    // A per-image price wins over the per-pixel one.
    assert_eq!(get("openai", "high/1024-x-1024/gpt-image-1").per_image, Some(dec("0.167")));
    // Only zeros: left out rather than an image at $0, and said so.
    assert!(c.lookup(Some("azure_openai"), "standard/1024-x-1024/dall-e-2", now).is_none());
    let left: Vec<(&str, &str)> = c.left_out().iter().map(|l| (l.provider.as_str(), l.model.as_str())).collect();
    assert_eq!(left, [("azure_openai", "standard/1024-x-1024/dall-e-2")]);
    assert!(c.left_out()[0].reason.contains("$0"), "{}", c.left_out()[0].reason);
    assert!(report.skipped_models[0].1.contains("per-image"));
    assert_eq!(report.skipped_fields.get("input_cost_per_pixel"), Some(&2));
    assert_eq!(report.skipped_fields.get("output_cost_per_pixel"), Some(&1));

    // Token-billed image models: input image tokens and output image tokens, no per-image price.
    let g = get("openai", "gpt-image-1");
    assert_eq!(
        (g.rates.input, g.rates.input_image, g.rates.output_image),
        (dec("5"), Some(dec("10")), Some(dec("40")))
    );
    assert_eq!(g.per_image, None);
    assert_eq!(report.skipped_fields.get("cache_read_input_image_token_cost"), Some(&1));
    let f = get("gemini", "gemini-2.5-flash-image");
    assert_eq!((f.rates.output_image, f.per_image), (Some(dec("30")), None));

    // Transcription: per second only without a per-token audio price.
    let w = get("openai", "whisper-1");
    assert_eq!(w.per_audio_second, Some(dec("0.0001")));
    assert_eq!(report.skipped_fields.get("output_cost_per_second"), Some(&1));
    let t = get("openai", "gpt-4o-transcribe");
    assert_eq!((t.rates.input_audio, t.per_audio_second), (Some(dec("6")), None));
    // (and Bedrock's provisioned throughput per second is not audio)
    assert_eq!(report.skipped_fields.get("input_cost_per_second"), Some(&2));

    // Text to speech per character; an embedding model's input image price is not per image generated.
    assert_eq!(get("openai", "tts-1").per_character, Some(dec("0.000015")));
    let e = get("cohere", "embed-english-v3.0");
    assert!(!e.per_unit_priced());
    assert_eq!(report.skipped_fields.get("input_cost_per_image"), Some(&1));

    // 2 images at $0.04 = 80,000,000 nd; 12,500 ms at $0.0001/s = 1,250,000 nd; 1,000 characters at
    // $0.000015 = 15,000,000 nd.
    assert_eq!(cost(d, &Usage { images: 2, ..Usage::default() }, ServiceTier::Standard).total.nanos(), 80_000_000);
    assert_eq!(
        cost(w, &Usage { audio_ms: 12_500, ..Usage::default() }, ServiceTier::Standard).total.nanos(),
        1_250_000
    );
    let tts = get("openai", "tts-1");
    assert_eq!(
        cost(tts, &Usage { characters: 1000, ..Usage::default() }, ServiceTier::Standard).total.nanos(),
        15_000_000
    );
}

#[test]
fn generated_catalog_leaves_out_images_it_cannot_price() {
    let genai = import::genai_prices(GENAI).unwrap();
    let litellm = import::litellm(LITELLM).unwrap();
    let g = import::reference::generate(&genai, &litellm);
    let left: Vec<(&str, &str)> = g.left_out.iter().map(|l| (l.provider.as_str(), l.model.as_str())).collect();
    assert_eq!(
        left,
        [
            // only zeros in LiteLLM
            ("azure_openai", "standard/1024-x-1024/dall-e-2"),
            // a per-image estimate of a model billed by image tokens
            ("openai", "high/1024-x-1024/gpt-image-1"),
        ]
    );
    assert!(g.left_out[1].reason.contains("gpt-image-1"), "{}", g.left_out[1].reason);
    let now = day(2025, 11, 1);
    // The sized gpt-image-1 name is then priced by gpt-image-1's tokens.
    let e = g.catalog.lookup(Some("openai"), "high/1024-x-1024/gpt-image-1", now).unwrap();
    assert_eq!((e.model.as_str(), e.per_image), ("gpt-image-1", None));
    // The zero-priced dall-e-2 is not priced at all (not at $0).
    assert!(g.catalog.lookup(Some("azure_openai"), "standard/1024-x-1024/dall-e-2", now).is_none());
    // Every image model in the catalog prices an image.
    for e in g.catalog.entries() {
        if e.model.contains("dall-e") || e.model.contains("image") {
            assert!(
                e.per_image.is_some_and(|p| p > Decimal::ZERO)
                    || e.rates.rate(tollgate_pricing::Bucket::OutputImage) > Decimal::ZERO,
                "{} prices an image at $0",
                e.label()
            );
        }
    }
    assert_eq!(
        g.catalog.lookup(Some("azure_openai"), "hd/1024-x-1792/dall-e-3", now).unwrap().per_image,
        Some(dec("0.132"))
    );
    // The input image rate of genai-prices' gpt-image-1-mini is kept.
    assert_eq!(g.catalog.lookup(Some("openai"), "gpt-image-1-mini", now).unwrap().rates.input_image, Some(dec("2.5")));
    // The report lists what was left out.
    let md = import::reference::report_markdown(&g, "g", "l", &[]);
    assert!(md.contains("- 2 reference models left out"), "{md}");
    assert!(md.contains("| azure_openai | standard/1024-x-1024/dall-e-2 | image generation without"), "{md}");
    // Written and read back, per-unit prices included.
    let back = Catalog::from_toml_str(&g.catalog.to_toml_string()).unwrap();
    assert_eq!(back.entries().collect::<Vec<_>>(), g.catalog.entries().collect::<Vec<_>>());
}

#[test]
fn discrepancies_compare_per_unit_prices() {
    let ours = Catalog::from_toml_str(
        r#"
[[model]]
provider = "azure_openai"
model = "hd/1024-x-1792/dall-e-3"
per_image = "0.12"
"#,
    )
    .unwrap();
    let theirs = import::litellm(LITELLM).unwrap();
    let found = import::discrepancies(&ours, &theirs);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].to_string(), "azure_openai/hd/1024-x-1792/dall-e-3 per_image: ours 0.12 vs theirs 0.132");
}
