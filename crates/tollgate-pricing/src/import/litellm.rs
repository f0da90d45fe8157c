//! Importer for LiteLLM's model price map
//! (`model_prices_and_context_window.json`).
//!
//! Shape: `{ "<model key>": { "litellm_provider": "...", "input_cost_per_token":
//! 2.5e-06, ... } }` with USD per TOKEN; multiplied by 1e6 exactly.
//!
//! Mapping of the base fields:
//! `input_cost_per_token` → input, `output_cost_per_token` → output,
//! `cache_read_input_token_cost` → cache_read,
//! `cache_creation_input_token_cost` → cache_write_5m,
//! `cache_creation_input_token_cost_above_1hr` → cache_write_1h,
//! `input_cost_per_audio_token` / `output_cost_per_audio_token` → audio,
//! `output_cost_per_reasoning_token` → reasoning,
//! `output_cost_per_image_token` → output_image,
//! `input_cost_per_request` → request fee.
//! A field may carry `_above_<N>k_tokens` (a long-context tier above N×1000
//! input tokens; buckets the tier does not list keep their base rate) and/or
//! `_batches`, `_flex`, `_priority` (service tiers). A service tier whose
//! rates are all one multiple of the standard ones becomes a multiplier,
//! otherwise explicit rates. Everything else (per image, per second, per
//! query, other tiers…) is skipped and counted.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde_json::value::RawValue;

use super::{decimal_from_json_number, dedupe, rates_from_map, ImportError, ImportReport};
use crate::catalog::{Bucket, Catalog, LongContextTier, PriceEntry, Rates, ServiceTier, ServiceTierPricing};
use crate::names;

/// Where a LiteLLM field's value goes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    Bucket(Bucket),
    RequestFee,
}

fn base_target(name: &str) -> Option<Target> {
    Some(match name {
        "input_cost_per_token" => Target::Bucket(Bucket::Input),
        "output_cost_per_token" => Target::Bucket(Bucket::Output),
        "cache_read_input_token_cost" => Target::Bucket(Bucket::CacheRead),
        "cache_creation_input_token_cost" => Target::Bucket(Bucket::CacheWrite5m),
        "cache_creation_input_token_cost_above_1hr" => Target::Bucket(Bucket::CacheWrite1h),
        "input_cost_per_audio_token" => Target::Bucket(Bucket::InputAudio),
        "output_cost_per_audio_token" => Target::Bucket(Bucket::OutputAudio),
        "output_cost_per_reasoning_token" => Target::Bucket(Bucket::Reasoning),
        "output_cost_per_image_token" => Target::Bucket(Bucket::OutputImage),
        "input_cost_per_request" => Target::RequestFee,
        _ => return None,
    })
}

/// `cache_read_input_token_cost_above_200k_tokens_priority` →
/// (`cache_read_input_token_cost`, Some(200000), Some(Priority)).
fn decompose(key: &str) -> Option<(Target, Option<u64>, Option<ServiceTier>)> {
    let mut name = key;
    let mut tier = None;
    for (suffix, t) in
        [("_batches", ServiceTier::Batch), ("_flex", ServiceTier::Flex), ("_priority", ServiceTier::Priority)]
    {
        if let Some(rest) = name.strip_suffix(suffix) {
            name = rest;
            tier = Some(t);
            break;
        }
    }
    let mut threshold = None;
    if let Some(rest) = name.strip_suffix("k_tokens") {
        if let Some(idx) = rest.rfind("_above_") {
            let n: u64 = rest[idx + "_above_".len()..].parse().ok()?;
            threshold = Some(n.checked_mul(1000)?);
            name = &rest[..idx];
        }
    }
    let target = base_target(name)?;
    if target == Target::RequestFee && (threshold.is_some() || tier.is_some()) {
        return None;
    }
    Some((target, threshold, tier))
}

/// The model name without LiteLLM's routing prefix (`gemini/`, `mistral/`…).
fn model_name(key: &str, provider_raw: &str, provider: &str) -> String {
    if let Some((first, rest)) = key.split_once('/') {
        if first == provider_raw || names::canonical_provider(first) == provider || first == "vertex_ai" {
            return rest.to_owned();
        }
    }
    key.to_owned()
}

fn provider_id(raw: &str) -> String {
    if raw.starts_with("vertex_ai") {
        return "vertex_ai".to_owned();
    }
    match raw {
        "text-completion-openai" => "openai".to_owned(),
        "bedrock" | "bedrock_converse" => "bedrock".to_owned(),
        _ => names::canonical_provider(raw),
    }
}

type Levels = BTreeMap<(Option<ServiceTier>, Option<u64>), BTreeMap<Bucket, Decimal>>;

pub(super) fn import(json: &str) -> Result<(Catalog, ImportReport), ImportError> {
    let map: BTreeMap<String, Box<RawValue>> =
        serde_json::from_str(json).map_err(|e| ImportError::Json(e.to_string()))?;
    let mut report = ImportReport::default();
    let mut entries = Vec::new();
    for (key, raw) in map {
        if key == "sample_spec" {
            continue;
        }
        report.models_read += 1;
        let Ok(fields) = serde_json::from_str::<BTreeMap<String, Box<RawValue>>>(raw.get()) else {
            report.skipped_models.push((key, "not an object".to_owned()));
            continue;
        };
        let provider_raw: String =
            fields.get("litellm_provider").and_then(|v| serde_json::from_str(v.get()).ok()).unwrap_or_default();
        if provider_raw.is_empty() {
            report.skipped_models.push((key, "no litellm_provider".to_owned()));
            continue;
        }
        let provider = provider_id(&provider_raw);
        let source: Option<String> = fields.get("source").and_then(|v| serde_json::from_str(v.get()).ok());

        let mut levels: Levels = BTreeMap::new();
        let mut request_fee = None;
        for (name, value) in &fields {
            if !name.contains("cost") {
                continue;
            }
            let Some((target, threshold, tier)) = decompose(name) else {
                report.skip_field(name);
                continue;
            };
            let Some(per_token) = decimal_from_json_number(value.get()) else {
                report.skip_field(name);
                continue;
            };
            match target {
                Target::RequestFee => request_fee = Some(per_token),
                Target::Bucket(b) => {
                    let per_million = per_token.checked_mul(Decimal::from(1_000_000)).map(|d| d.normalize());
                    let Some(per_million) = per_million else {
                        report.skip_field(name);
                        continue;
                    };
                    levels.entry((tier, threshold)).or_default().insert(b, per_million);
                }
            }
        }
        match entry_from_levels(&provider, model_name(&key, &provider_raw, &provider), &levels, &mut report) {
            Some(mut e) => {
                e.source = source;
                e.request_fee = request_fee;
                let count = |name: &str| -> Option<u64> {
                    fields.get(name).and_then(|v| serde_json::from_str::<u64>(v.get().trim()).ok()).filter(|&n| n > 0)
                };
                e.context_window = count("max_input_tokens");
                e.max_output_tokens = count("max_output_tokens");
                entries.push(e);
            }
            None => report.skipped_models.push((key, "no per-token input or output price".to_owned())),
        }
    }
    let entries = dedupe(entries, &mut report);
    Ok((Catalog::from_entries_lenient(entries), report))
}

fn entry_from_levels(provider: &str, model: String, levels: &Levels, report: &mut ImportReport) -> Option<PriceEntry> {
    let base = levels.get(&(None, None))?;
    if !base.contains_key(&Bucket::Input) && !base.contains_key(&Bucket::Output) {
        return None;
    }
    let rates = rates_from_map(base)?;
    let long_map = |tier: Option<ServiceTier>| -> BTreeMap<u64, BTreeMap<Bucket, Decimal>> {
        levels
            .iter()
            .filter_map(|((t, th), m)| (*t == tier).then_some((*th, m)))
            .filter_map(|(th, m)| th.map(|th| (th, m.clone())))
            .collect()
    };
    let base_long = long_map(None);
    let long_context = tiers_over(base, &base_long);

    let mut service = |tier: ServiceTier| -> Option<ServiceTierPricing> {
        let own = levels.get(&(Some(tier), None));
        let own_long = long_map(Some(tier));
        if own.is_none() && own_long.is_empty() {
            return None;
        }
        let own_base = own.cloned().unwrap_or_default();
        let ratio = [Bucket::Input, Bucket::Output].iter().find_map(|b| {
            let (t, s) = (own_base.get(b)?, base.get(b)?);
            (!s.is_zero()).then(|| t / s)
        });
        let Some(m) = ratio else {
            report.skip_field(&format!("{}_without_input_or_output", tier.as_str()));
            return None;
        };
        let scaled = |x: &Decimal| (x * m).normalize();
        let consistent = own_base.iter().all(|(b, v)| base.get(b).is_some_and(|s| scaled(s) == *v))
            && own_long.iter().all(|(th, lm)| {
                base_long.get(th).is_some_and(|bl| {
                    lm.iter().all(|(b, v)| bl.get(b).or(base.get(b)).is_some_and(|s| scaled(s) == *v))
                })
            });
        if consistent {
            return Some(ServiceTierPricing { multiplier: Some(m.normalize()), rates: None, long_context: Vec::new() });
        }
        // Explicit rates: what the tier lists, the rest scaled from standard.
        let mut filled: BTreeMap<Bucket, Decimal> = base.iter().map(|(b, v)| (*b, scaled(v))).collect();
        filled.extend(own_base.iter().map(|(b, v)| (*b, *v)));
        let mut long_filled = BTreeMap::new();
        for (th, bl) in &base_long {
            let mut merged: BTreeMap<Bucket, Decimal> =
                base.iter().chain(bl.iter()).map(|(b, v)| (*b, scaled(v))).collect();
            if let Some(lm) = own_long.get(th) {
                merged.extend(lm.iter().map(|(b, v)| (*b, *v)));
            }
            long_filled.insert(*th, merged);
        }
        for (th, lm) in &own_long {
            long_filled.entry(*th).or_insert_with(|| lm.clone());
        }
        Some(ServiceTierPricing {
            multiplier: None,
            rates: rates_from_map(&filled),
            long_context: tiers_over(&filled, &long_filled),
        })
    };
    let batch = service(ServiceTier::Batch);
    let flex = service(ServiceTier::Flex);
    let priority = service(ServiceTier::Priority);

    Some(PriceEntry {
        provider: provider.to_owned(),
        model,
        aliases: Vec::new(),
        effective_from: None,
        source: None,
        notes: None,
        rates,
        long_context,
        batch,
        flex,
        priority,
        request_fee: None,
        gpu: None,
        web_search_per_1k: None,
        context_window: None,
        max_output_tokens: None,
    })
}

/// Long-context tiers: each threshold's listed rates over the base ones.
fn tiers_over(
    base: &BTreeMap<Bucket, Decimal>,
    long: &BTreeMap<u64, BTreeMap<Bucket, Decimal>>,
) -> Vec<LongContextTier> {
    long.iter()
        .filter_map(|(th, m)| {
            let mut merged = base.clone();
            merged.extend(m.iter().map(|(b, v)| (*b, *v)));
            let rates: Rates = rates_from_map(&merged)?;
            Some(LongContextTier { above_input_tokens: *th, rates })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_decompose() {
        let b = |x| Target::Bucket(x);
        assert!(decompose("input_cost_per_token") == Some((b(Bucket::Input), None, None)));
        assert!(
            decompose("cache_read_input_token_cost_above_200k_tokens_priority")
                == Some((b(Bucket::CacheRead), Some(200_000), Some(ServiceTier::Priority)))
        );
        assert!(
            decompose("cache_creation_input_token_cost_above_1hr_above_200k_tokens")
                == Some((b(Bucket::CacheWrite1h), Some(200_000), None))
        );
        assert!(
            decompose("output_cost_per_token_batches") == Some((b(Bucket::Output), None, Some(ServiceTier::Batch)))
        );
        assert!(decompose("input_cost_per_token_ultrafast").is_none());
        assert!(decompose("output_cost_per_image").is_none());
        assert!(decompose("input_cost_per_token_cache_hit").is_none());
    }
}
