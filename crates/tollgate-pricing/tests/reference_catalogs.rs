//! Cross-check of the built-in catalog against the two public reference
//! catalogs (genai-prices' `genai-prices-v2-data.json` and LiteLLM's
//! `litellm-model-prices.json`), which are not part of the repository: set
//! `TOLLGATE_REFERENCE_CATALOGS` to the folder holding copies of them. Unset
//! or incomplete, the test says that it skipped (and `scripts/test.sh` lists
//! it among the skipped tests) and passes.

// Test helpers outside #[test] fns unwrap too: a test may panic.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use chrono::{DateTime, TimeZone, Utc};
use tollgate_pricing::import::{self, Discrepancy};
use tollgate_pricing::{cost, Catalog, ServiceTier};
use tollgate_units::Usage;

/// Models whose prices all three catalogs must agree on, bucket by bucket.
const HEADLINE: &[(&str, &str)] = &[
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
    ("anthropic", "claude-opus-4-5"),
    ("anthropic", "claude-opus-4-6"),
    ("anthropic", "claude-sonnet-4-6"),
    ("anthropic", "claude-haiku-4-5"),
    ("gemini", "gemini-2.5-pro"),
    ("gemini", "gemini-2.5-flash"),
    ("gemini", "gemini-2.5-flash-lite"),
    ("mistral", "mistral-large-2512"),
];

fn reference_dir() -> Option<PathBuf> {
    std::env::var_os("TOLLGATE_REFERENCE_CATALOGS").map(PathBuf::from)
}

/// Says a test skipped, on stderr and in `$TOLLGATE_SKIP_LOG` (which `scripts/test.sh` prints).
fn skipped(what: &str) {
    eprintln!("\n*** SKIPPED {what} ***\n");
    if let Some(log) = std::env::var_os("TOLLGATE_SKIP_LOG") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(log) {
            let _ = writeln!(f, "{what}");
        }
    }
}

fn when() -> DateTime<Utc> {
    // The reference snapshots date from 2026-08; compare what was in force then.
    Utc.with_ymd_and_hms(2026, 8, 21, 0, 0, 0).single().unwrap()
}

#[test]
fn builtin_agrees_with_reference_catalogs() {
    let Some(dir) = reference_dir() else {
        skipped("reference-catalog cross-check: TOLLGATE_REFERENCE_CATALOGS is not set");
        return;
    };
    let (genai_path, litellm_path) = (dir.join("genai-prices-v2-data.json"), dir.join("litellm-model-prices.json"));
    if !genai_path.exists() || !litellm_path.exists() {
        skipped(&format!("reference-catalog cross-check: the catalogs are not in {}", dir.display()));
        return;
    }
    let genai_json = std::fs::read_to_string(&genai_path).unwrap();
    let litellm_json = std::fs::read_to_string(&litellm_path).unwrap();
    let (genai, gr) = import::genai_prices_with_report(&genai_json).unwrap();
    let (litellm, lr) = import::litellm_with_report(&litellm_json).unwrap();
    eprintln!(
        "genai-prices: {} models read, {} entries, {} models skipped, {} conditional prices skipped, fields skipped: {:?}",
        gr.models_read, gr.entries_imported, gr.skipped_models.len(), gr.skipped_conditions, gr.skipped_fields
    );
    eprintln!(
        "litellm: {} models read, {} entries, {} models skipped, {} duplicates, {} kinds of fields skipped",
        lr.models_read,
        lr.entries_imported,
        lr.skipped_models.len(),
        lr.duplicates,
        lr.skipped_fields.len()
    );
    assert!(genai.len() > 1000 && litellm.len() > 3000, "imports look truncated");

    // Both imports can be written in our format and read back strictly.
    for c in [&genai, &litellm] {
        let back = Catalog::from_toml_str(&c.to_toml_string()).unwrap();
        assert_eq!(back.len(), c.len());
    }

    let ours = Catalog::builtin();
    let at = when();
    let mut problems = Vec::new();
    for (name, theirs) in [("genai-prices", &genai), ("litellm", &litellm)] {
        let found: Vec<Discrepancy> = import::discrepancies_at(ours, theirs, at);
        eprintln!("--- {} discrepancies with {name}:", found.len());
        for d in &found {
            eprintln!("    {d}   (their model {})", d.their_model);
        }
        for (p, m) in HEADLINE {
            let Some(mine) = ours.lookup(Some(p), m, at) else {
                problems.push(format!("{p}/{m} missing from the built-in catalog"));
                continue;
            };
            let Some(other) = theirs.lookup(Some(p), m, at).filter(|e| e.provider == *p) else {
                problems.push(format!("{p}/{m} not found in {name}"));
                continue;
            };
            for d in found.iter().filter(|d| d.provider == *p && d.model == mine.model) {
                problems.push(format!("{name}: {d}"));
            }
            // And the money agrees on a request touching the common buckets.
            let u = Usage { input: 12_345, cache_read: 6_789, output: 2_345, reasoning: 1_111, ..Usage::default() };
            let (a, b) = (cost(mine, &u, ServiceTier::Standard), cost(other, &u, ServiceTier::Standard));
            if a.total != b.total {
                problems.push(format!("{name}: {p}/{m} costs {} here, {} there", a.total, b.total));
            }
        }
    }
    assert!(problems.is_empty(), "headline models disagree:\n{}", problems.join("\n"));
}

/// Both references, imported; `None` (after saying so) when they are not there.
fn references(what: &str) -> Option<(Catalog, Catalog)> {
    let Some(dir) = reference_dir() else {
        skipped(&format!("{what}: TOLLGATE_REFERENCE_CATALOGS is not set"));
        return None;
    };
    let (g, l) = (dir.join("genai-prices-v2-data.json"), dir.join("litellm-model-prices.json"));
    if !g.exists() || !l.exists() {
        skipped(&format!("{what}: the catalogs are not in {}", dir.display()));
        return None;
    }
    let genai = import::genai_prices(&std::fs::read_to_string(g).unwrap()).unwrap();
    let litellm = import::litellm(&std::fs::read_to_string(l).unwrap()).unwrap();
    Some((genai, litellm))
}

/// Hand-written entries that differ from the references on purpose; each
/// has `notes` in `prices.toml` saying why.
fn hand_written(entry: &tollgate_pricing::PriceEntry) -> bool {
    let hand = Catalog::from_toml_str(Catalog::builtin_toml()).unwrap();
    let found = hand.entries().any(|h| h.provider == entry.provider && h.model == entry.model && h.notes.is_some());
    found
}

#[test]
fn builtin_prices_the_first_party_models_of_both_references() {
    let Some((genai, litellm)) = references("first-party coverage") else { return };
    let ours = Catalog::builtin();
    let at = when();
    // Per-image estimates of a token-billed model, left out by the generator (GENERATED.md lists them).
    let left_out = import::reference::generate(&genai, &litellm).left_out;
    for (name, theirs) in [("genai-prices", &genai), ("litellm", &litellm)] {
        let mut models = std::collections::BTreeSet::new();
        for e in theirs.entries().filter(|e| {
            import::reference::FIRST_PARTY.contains(&e.provider.as_str()) && !import::reference::routing_only(&e.model)
        }) {
            models.insert((e.provider.clone(), e.model.clone()));
        }
        let (mut same, mut other_reference, mut hand, mut missing) = (0, Vec::new(), Vec::new(), Vec::new());
        let (mut neither, mut by_tokens) = (Vec::new(), Vec::new());
        for (p, m) in &models {
            // The entry in force at the snapshot's date; a model priced only from a later date is not current.
            let Some(reference) = theirs.lookup(Some(p), m, at).filter(|e| &e.provider == p) else { continue };
            let Some(mine) = ours.lookup(Some(p), m, at) else {
                missing.push(format!("{p}/{m}"));
                continue;
            };
            if mine.rates.input == reference.rates.input && mine.rates.output == reference.rates.output {
                same += 1;
            } else if hand_written(mine) {
                hand.push(format!("{p}/{m}"));
            } else if reference.per_image.is_some()
                && mine.model != *m
                && (mine.rates.output_image.is_some() || mine.rates.input_image.is_some())
                && left_out.iter().any(|l| &l.provider == p && &l.model == m)
            {
                // A per-image estimate of a model billed by image tokens: priced by that model's tokens.
                by_tokens.push(format!("{p}/{m} as {}", mine.label()));
            } else if name == "litellm"
                && genai.lookup(Some(p), m, at).is_some_and(|g| {
                    &g.provider == p && g.rates.input == mine.rates.input && g.rates.output == mine.rates.output
                })
            {
                // A conflict, decided for genai-prices by the rule (GENERATED.md lists it).
                other_reference.push(format!(
                    "{p}/{m}: genai-prices' {}/{} here, {}/{} in litellm",
                    mine.rates.input, mine.rates.output, reference.rates.input, reference.rates.output
                ));
            } else {
                neither.push(format!(
                    "{p}/{m}: {}/{} here, {}/{} in {name}",
                    mine.rates.input, mine.rates.output, reference.rates.input, reference.rates.output
                ));
            }
        }
        let total = same + other_reference.len() + hand.len() + by_tokens.len() + missing.len() + neither.len();
        eprintln!(
            "{name}: {total} first-party models; {same} at its price, {} at genai-prices' price (conflicts, listed in GENERATED.md), {} hand-written (with notes), {} by the image tokens of the model they estimate (left out, listed in GENERATED.md), {} at neither, {} unpriced",
            other_reference.len(),
            hand.len(),
            by_tokens.len(),
            neither.len(),
            missing.len()
        );
        for l in hand.iter().chain(&by_tokens).chain(&neither).chain(&missing) {
            eprintln!("    {l}");
        }
        assert!(missing.is_empty(), "{name}: unpriced first-party models: {missing:?}");
        // Every price is a reference's, or a hand-written one that says why.
        assert!(neither.is_empty(), "{name}: priced at neither reference's price: {neither:?}");
        if name == "genai-prices" {
            // At least 95 % at genai-prices' own price (it decides conflicts).
            assert!(same * 100 >= total * 95, "{name}: only {same} of {total} at the reference's price");
        } else {
            // At least 95 % at a reference's price.
            let at_a_reference = same + other_reference.len();
            assert!(
                at_a_reference * 100 >= total * 95,
                "{name}: only {at_a_reference} of {total} at a reference's price"
            );
        }
    }
}

#[test]
fn the_generated_catalog_is_what_the_generator_makes_of_the_references() {
    let Some((genai, litellm)) = references("generated catalog freshness") else { return };
    let generated = import::reference::generate(&genai, &litellm).catalog;
    let committed = Catalog::from_toml_str(Catalog::generated_toml()).unwrap();
    assert_eq!(
        committed.to_toml_string(),
        generated.to_toml_string(),
        "crates/tollgate-pricing/catalog/generated.toml is stale or edited by hand: run `tollgate prices generate`"
    );
}

/// No image model of LiteLLM's map (`mode` `image_generation` or
/// `image_edit`) at a first-party provider is priced at $0 per image by the
/// built-in catalog: its name finds an entry that prices images (per image,
/// or by output image tokens), or none at all (unpriced, never $0).
#[test]
fn no_image_model_is_priced_at_zero() {
    let Some(dir) = reference_dir() else {
        skipped("image models at $0: TOLLGATE_REFERENCE_CATALOGS is not set");
        return;
    };
    let path = dir.join("litellm-model-prices.json");
    if !path.exists() {
        skipped(&format!("image models at $0: the catalogs are not in {}", dir.display()));
        return;
    }
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let ours = Catalog::builtin();
    let at = when();
    let (mut checked, mut priced, mut problems) = (0, 0, Vec::new());
    for (key, v) in &map {
        let mode = v.get("mode").and_then(|m| m.as_str()).unwrap_or("");
        if mode != "image_generation" && mode != "image_edit" {
            continue;
        }
        let raw = v.get("litellm_provider").and_then(|p| p.as_str()).unwrap_or("");
        let provider = match raw {
            "azure" => "azure_openai",
            "bedrock_converse" => "bedrock",
            p if p.starts_with("vertex_ai") => "vertex_ai",
            p => p,
        };
        if !import::reference::FIRST_PARTY.contains(&provider) {
            continue;
        }
        // The key, and the key without LiteLLM's routing prefix (`azure/…`).
        let names = [Some(key.as_str()), key.split_once('/').map(|(_, rest)| rest)];
        for name in names.into_iter().flatten().filter(|n| !import::reference::routing_only(n)) {
            checked += 1;
            // No entry: unpriced, never $0 (the key with its prefix is not a name providers use).
            let Some(e) = ours.lookup(Some(provider), name, at) else { continue };
            priced += 1;
            let per_image = e.per_image.unwrap_or_default();
            let image_tokens = e.rates.rate(tollgate_pricing::Bucket::OutputImage);
            if per_image.is_zero() && image_tokens.is_zero() {
                problems.push(format!("{provider}/{name} ({key}) → {}: an image at $0", e.label()));
            }
        }
    }
    eprintln!("{checked} image-model names looked up, {priced} priced, {} at $0", problems.len());
    assert!(checked > 100, "only {checked} image models found");
    assert!(problems.is_empty(), "image models priced at $0:\n{}", problems.join("\n"));
}
