//! The catalog file format: the built-in data file, validation errors,
//! writing, merging, effective dates and config-priced self-hosted models.

// Test helpers outside #[test] fns unwrap too: a test may panic.
#![allow(clippy::unwrap_used)]

use chrono::{DateTime, TimeZone, Utc};
use tollgate_pricing::{cost, Catalog, CatalogError, RawPriceEntry, ServiceTier};
use tollgate_units::Usage;

fn day(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).single().unwrap()
}

fn usage(input: u64, output: u64) -> Usage {
    Usage { input, output, ..Usage::default() }
}

#[test]
fn builtin_file_is_valid_and_sourced() {
    let parsed = Catalog::from_toml_str(Catalog::builtin_toml());
    let parsed = match parsed {
        Ok(c) => c,
        Err(e) => panic!("catalog/prices.toml is invalid: {e}"),
    };
    assert!(parsed.len() >= 100, "only {} hand-written entries", parsed.len());
    let generated = match Catalog::from_toml_str(Catalog::generated_toml()) {
        Ok(c) => c,
        Err(e) => panic!("catalog/generated.toml is invalid: {e}"),
    };
    assert!(generated.len() >= 1500, "only {} generated entries", generated.len());
    // The built-in catalog is both: every hand-written entry, and the generated ones of other models.
    let builtin = Catalog::builtin();
    assert!(builtin.len() >= 1500 && builtin.len() < generated.len() + parsed.len(), "{} entries", builtin.len());
    for e in parsed.entries() {
        // With the names of the generated model it replaces added to its aliases.
        let kept = builtin.entries().any(|b| {
            let mut b = b.clone();
            b.aliases.retain(|a| e.aliases.contains(a));
            // And the generated model's limits where it gives none.
            b.context_window = e.context_window.and(b.context_window);
            b.max_output_tokens = e.max_output_tokens.and(b.max_output_tokens);
            &b == e
        });
        assert!(kept, "{} is not in the built-in catalog", e.label());
    }
    for e in builtin.entries() {
        assert!(e.source.as_deref().is_some_and(|s| !s.is_empty()), "{} has no source", e.label());
    }
    for e in parsed.entries() {
        let src = e.source.as_deref().unwrap_or("");
        assert!(src.starts_with("https://"), "{} has no source URL", e.label());
        assert!(
            e.batch.is_some() || e.provider == "mistral" || e.provider == "deepseek",
            "{} has no batch price",
            e.label()
        );
    }
    for p in ["openai", "anthropic", "gemini", "mistral", "deepseek", "bedrock", "azure_openai"] {
        assert!(parsed.entries().any(|e| e.provider == p), "no {p} entries");
    }
    let now = day(2025, 11, 1);
    for (p, m) in [
        ("openai", "gpt-4o"),
        ("openai", "gpt-4o-mini"),
        ("openai", "gpt-4.1"),
        ("openai", "gpt-4.1-mini"),
        ("openai", "gpt-4.1-nano"),
        ("openai", "o1"),
        ("openai", "o3"),
        ("openai", "o3-mini"),
        ("openai", "o4-mini"),
        ("openai", "gpt-5"),
        ("openai", "gpt-5-mini"),
        ("openai", "gpt-5-nano"),
        ("openai", "text-embedding-3-small"),
        ("openai", "text-embedding-3-large"),
        ("anthropic", "claude-opus-4-1"),
        ("anthropic", "claude-opus-4-5"),
        ("anthropic", "claude-sonnet-4"),
        ("anthropic", "claude-sonnet-4-5"),
        ("anthropic", "claude-haiku-4-5"),
        ("anthropic", "claude-3-5-haiku"),
        ("anthropic", "claude-3-7-sonnet"),
        ("gemini", "gemini-2.5-pro"),
        ("gemini", "gemini-2.5-flash"),
        ("gemini", "gemini-2.5-flash-lite"),
        ("gemini", "gemini-2.0-flash"),
        ("mistral", "mistral-large-latest"),
        ("deepseek", "deepseek-chat"),
        ("bedrock", "anthropic.claude-sonnet-4-5-20250929-v1:0"),
        ("azure_openai", "gpt-4o"),
    ] {
        let e = parsed.lookup(Some(p), m, now);
        assert!(e.is_some_and(|e| e.provider == p), "{p}/{m} missing");
    }
}

#[test]
fn written_catalog_reads_back_identically() {
    let c = Catalog::builtin();
    let text = c.to_toml_string();
    let back = Catalog::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let a: Vec<_> = c.entries().collect();
    let b: Vec<_> = back.entries().collect();
    assert_eq!(a, b);
}

fn entry_error(toml: &str) -> String {
    match Catalog::from_toml_str(toml) {
        Ok(_) => panic!("accepted:\n{toml}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn errors_name_the_entry() {
    let missing_output = r#"
[[model]]
provider = "openai"
model = "ok"
input = "1"
output = "2"

[[model]]
provider = "openai"
model = "broken"
input = "1"
"#;
    let e = entry_error(missing_output);
    assert!(e.contains("#2 (openai/broken)") && e.contains("output"), "{e}");

    let float = "[[model]]\nprovider = \"openai\"\nmodel = \"f\"\ninput = 2.5\noutput = \"1\"\n";
    let e = entry_error(float);
    assert!(e.contains("openai/f") && e.contains("decimal strings"), "{e}");

    let unknown = "[[model]]\nprovider = \"openai\"\nmodel = \"u\"\ninput = \"1\"\noutput = \"1\"\ncached = \"1\"\n";
    let e = entry_error(unknown);
    assert!(e.contains("openai/u") && e.contains("cached"), "{e}");

    let bad_date = "[[model]]\nprovider = \"openai\"\nmodel = \"d\"\ninput = \"1\"\noutput = \"1\"\neffective_from = \"2025-13-01\"\n";
    let e = entry_error(bad_date);
    assert!(e.contains("openai/d") && e.contains("effective_from"), "{e}");

    let negative = "[[model]]\nprovider = \"openai\"\nmodel = \"n\"\ninput = \"-1\"\noutput = \"1\"\n";
    assert!(entry_error(negative).contains("negative"));

    let dup = "[[model]]\nprovider = \"openai\"\nmodel = \"x\"\ninput = \"1\"\noutput = \"1\"\n\n[[model]]\nprovider = \"openai\"\nmodel = \"x\"\ninput = \"2\"\noutput = \"2\"\n";
    assert!(matches!(Catalog::from_toml_str(dup), Err(CatalogError::Duplicate { ref entry }) if entry == "openai/x"));

    let clash = "[[model]]\nprovider = \"openai\"\nmodel = \"x\"\naliases = [\"y\"]\ninput = \"1\"\noutput = \"1\"\n\n[[model]]\nprovider = \"openai\"\nmodel = \"y\"\ninput = \"2\"\noutput = \"2\"\n";
    // A model's own name is a different model's alias.
    assert!(matches!(Catalog::from_toml_str(clash), Err(CatalogError::NameConflict { .. })));

    let tier = "[[model]]\nprovider = \"openai\"\nmodel = \"t\"\ninput = \"1\"\noutput = \"1\"\nbatch = {}\n";
    assert!(entry_error(tier).contains("multiplier"));

    let gpu_and_rates = "[[model]]\nprovider = \"x\"\nmodel = \"g\"\ninput = \"1\"\noutput = \"1\"\ngpu_hour_usd = \"2\"\ntokens_per_gpu_hour = 10\n";
    assert!(entry_error(gpu_and_rates).contains("not both"));

    assert!(matches!(Catalog::from_toml_str("[[model]\n"), Err(CatalogError::Toml(_))));

    let negative_unit = "[[model]]\nprovider = \"openai\"\nmodel = \"p\"\nper_image = \"-0.04\"\n";
    let e = entry_error(negative_unit);
    assert!(e.contains("openai/p") && e.contains("per_image is negative"), "{e}");
    let float_unit = "[[model]]\nprovider = \"openai\"\nmodel = \"q\"\nper_character = 0.000015\n";
    assert!(entry_error(float_unit).contains("decimal strings"));
    // Without a per-unit price, input and output are still required.
    let nothing = "[[model]]\nprovider = \"openai\"\nmodel = \"z\"\n";
    assert!(entry_error(nothing).contains("missing `input`"));
}

#[test]
fn per_unit_prices_need_no_token_rates() {
    let c = Catalog::from_toml_str(
        r#"
[[model]]
provider = "openai"
model = "hd/1024-x-1792/dall-e-3"
per_image = "0.12"

[[model]]
provider = "openai"
model = "whisper-1"
per_audio_second = "0.0001"

[[model]]
provider = "openai"
model = "tts-1"
per_character = "0.000015"
input = "1"

[[model]]
provider = "openai"
model = "gpt-image-1"
input = "5"
input_image = "10"
output = "40"
batch = { input = "2.5", input_image = "5", output = "20" }
"#,
    )
    .unwrap();
    let now = day(2025, 11, 1);
    let d = c.lookup(Some("openai"), "hd/1024-x-1792/dall-e-3", now).unwrap();
    assert_eq!((d.rates.input, d.rates.output), (Default::default(), Default::default()));
    assert_eq!(d.per_image.map(|p| p.to_string()).as_deref(), Some("0.12"));
    assert!(d.per_unit_priced());
    let w = c.lookup(Some("openai"), "whisper-1", now).unwrap();
    assert!(w.per_unit_priced() && w.per_image.is_none() && w.per_audio_second.is_some());
    // A token rate given beside a per-unit price is kept; the other is 0.
    let t = c.lookup(Some("openai"), "tts-1", now).unwrap();
    assert_eq!((t.rates.input.to_string(), t.rates.output.to_string()), ("1".to_owned(), "0".to_owned()));
    let g = c.lookup(Some("openai"), "gpt-image-1", now).unwrap();
    assert!(!g.per_unit_priced());
    // input_image falls back to input when absent, and has its own batch rate here.
    assert_eq!(g.rates_for(0, ServiceTier::Batch).input_image.map(|d| d.to_string()).as_deref(), Some("5"));
    let u = Usage { input_image: 1000, ..Usage::default() };
    // 1,000 image tokens @10 = 10,000,000 nd; batch @5 = 5,000,000.
    assert_eq!(cost(g, &u, ServiceTier::Standard).total.nanos(), 10_000_000);
    assert_eq!(cost(g, &u, ServiceTier::Batch).total.nanos(), 5_000_000);
    let plain =
        Catalog::from_toml_str("[[model]]\nprovider = \"x\"\nmodel = \"m\"\ninput = \"3\"\noutput = \"4\"\n").unwrap();
    let m = plain.lookup(Some("x"), "m", now).unwrap();
    assert_eq!(m.rates.rate(tollgate_pricing::Bucket::InputImage).to_string(), "3");
    // 1,000 image tokens at the input rate @3 = 3,000,000.
    assert_eq!(cost(m, &u, ServiceTier::Standard).total.nanos(), 3_000_000);
    // Written and read back: the per-unit prices survive (token rates written as 0).
    let text = c.to_toml_string();
    assert!(text.contains("per_image = \"0.12\"") && text.contains("per_audio_second = \"0.0001\""), "{text}");
    let back = Catalog::from_toml_str(&text).unwrap();
    assert_eq!(back.entries().collect::<Vec<_>>(), c.entries().collect::<Vec<_>>());
}

#[test]
fn effective_dates_pick_the_entry_in_force() {
    let c = Catalog::from_toml_str(
        r#"
[[model]]
provider = "p"
model = "m"
effective_from = "2025-01-01"
input = "1"
output = "1"

[[model]]
provider = "p"
model = "m"
effective_from = "2025-06-01"
input = "2"
output = "2"
"#,
    )
    .unwrap();
    // Before the first entry: no price (not a guess from a later one).
    assert!(c.lookup(Some("p"), "m", day(2024, 12, 31)).is_none());
    let rate = |at| c.lookup(Some("p"), "m", at).unwrap().rates.input.to_string();
    assert_eq!(rate(day(2025, 1, 1)), "1");
    assert_eq!(rate(Utc.with_ymd_and_hms(2025, 5, 31, 23, 59, 59).single().unwrap()), "1");
    assert_eq!(rate(day(2025, 6, 1)), "2");
    assert_eq!(c.history("p", "m").len(), 2);
}

#[test]
fn overrides_win_per_provider_model_and_date() {
    let overrides = Catalog::from_toml_str(
        r#"
[[model]]
provider = "openai"
model = "gpt-4o-mini"
aliases = ["house-mini"]
source = "negotiated"
input = "0.10"
output = "0.40"

[[model]]
provider = "local"
model = "my-model"
input = "0"
output = "0"
"#,
    )
    .unwrap();
    let merged = Catalog::builtin().merged(&overrides);
    let now = day(2025, 11, 1);
    let e = merged.lookup(Some("openai"), "gpt-4o-mini", now).unwrap();
    assert_eq!(e.rates.input.to_string(), "0.10");
    assert_eq!(merged.lookup(None, "house-mini", now).unwrap().model, "gpt-4o-mini");
    assert!(merged.lookup(Some("local"), "my-model", now).is_some());
    // Other entries stay, dated history of another model too.
    assert_eq!(merged.history("openai", "gpt-4o").len(), 2);
    assert_eq!(merged.len(), Catalog::builtin().len() + 1);
    // The built-in catalog itself is untouched.
    let b = Catalog::builtin().lookup(Some("openai"), "gpt-4o-mini", now).unwrap();
    assert_eq!(b.rates.input.to_string(), "0.15");
}

#[test]
fn self_hosted_models_priced_by_config() {
    // What the gateway's config carries: [[prices]] tables in the catalog format.
    #[derive(serde::Deserialize)]
    struct Config {
        prices: Vec<RawPriceEntry>,
    }
    let cfg: Config = toml::from_str(
        r#"
[[prices]]
provider = "local-vllm"
model = "llama-3.1-8b-instruct"
gpu_hour_usd = "2.00"
tokens_per_gpu_hour = 4000000

[[prices]]
provider = "local-vllm"
model = "qwen-odd"
gpu_hour_usd = "1.00"
tokens_per_gpu_hour = 3000000
output_tokens_per_gpu_hour = 1000000

[[prices]]
provider = "openai_compatible"
model = "mixtral-8x7b"
input = "0.24"
output = "0.24"
request_fee = "0.001"
"#,
    )
    .unwrap();
    let c = Catalog::from_raw_entries(cfg.prices).unwrap();
    let now = day(2025, 11, 1);

    // $2.00 / 4,000,000 tokens = $0.50 per million; 1,000 + 1,000 tokens = 1,000,000 nd.
    let e = c.lookup(Some("local-vllm"), "llama-3.1-8b-instruct", now).unwrap();
    assert_eq!(e.rates.input.to_string(), "0.5");
    assert_eq!(cost(e, &usage(1000, 1000), ServiceTier::Standard).total.nanos(), 1_000_000);

    // $1 / 3M tokens = $0.333…/M: 3,000,000 input tokens cost exactly $1 after
    // rounding; output at $1 / 1M tokens: 500 tokens = 500,000 nd.
    let e = c.lookup(Some("local-vllm"), "qwen-odd", now).unwrap();
    assert_eq!(cost(e, &usage(3_000_000, 0), ServiceTier::Standard).total.nanos(), 1_000_000_000);
    assert_eq!(cost(e, &usage(0, 500), ServiceTier::Standard).total.nanos(), 500_000);

    // Per-request fee: 1,000 @0.24 = 240,000 nd + $0.001 = 1,000,000 nd.
    let e = c.lookup(Some("openai_compatible"), "mixtral-8x7b", now).unwrap();
    let got = cost(e, &usage(1000, 0), ServiceTier::Standard);
    assert_eq!(got.parts.request_fee.nanos(), 1_000_000);
    assert_eq!(got.total.nanos(), 1_240_000);

    // Written back out, GPU pricing stays GPU pricing.
    let text = c.to_toml_string();
    assert!(text.contains("gpu_hour_usd = \"2.00\""), "{text}");
    assert!(text.contains("tokens_per_gpu_hour = 4000000"), "{text}");
}

#[test]
fn service_tier_without_a_price_bills_standard() {
    // Anthropic lists no flex tier: flex is billed at standard rates.
    let e = Catalog::builtin().lookup(Some("anthropic"), "claude-haiku-4-5", day(2025, 11, 1)).unwrap();
    assert!(e.service_tier(ServiceTier::Flex).is_none());
    let u = usage(1000, 1000);
    assert_eq!(cost(e, &u, ServiceTier::Flex), cost(e, &u, ServiceTier::Standard));
}
