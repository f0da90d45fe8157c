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
    assert_eq!(report.models_read, 9);
    assert_eq!(report.entries_imported, 9);
    assert_eq!(c.len(), 9);
    assert_eq!(report.skipped_models, vec![("openai/omni-moderation".to_owned(), "no token prices".to_owned())]);
    assert_eq!(report.skipped_conditions, 1, "the time-of-day price");
    assert_eq!(report.skipped_fields.get("cache_audio_read_mtok"), Some(&1));
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
    assert_eq!(report.models_read, 9);
    assert_eq!(report.entries_imported, 8);
    assert_eq!(report.skipped_models.len(), 1);
    assert_eq!(report.skipped_models[0].0, "dall-e-3");
    assert_eq!(report.skipped_fields.get("search_context_cost_per_query"), Some(&1));
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
