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
//! `input_cost_per_image_token` → input_image,
//! `output_cost_per_image_token` → output_image,
//! `input_cost_per_request` → request fee.
//! A field may carry `_above_<N>k_tokens` (a long-context tier above N×1000
//! input tokens; buckets the tier does not list keep their base rate) and/or
//! `_batches`, `_flex`, `_priority` (service tiers). A service tier whose
//! rates are all one multiple of the standard ones becomes a multiplier,
//! otherwise explicit rates.
//!
//! Prices per unit, each only for the kind of model it bills in tollgate's
//! usage (LiteLLM also lists per-image prices of *input* images for
//! embedding and chat models, per-second prices of Bedrock's provisioned
//! throughput and per-character prices of Vertex's older chat billing; those
//! are skipped):
//! - image generation and editing (`mode` `image_generation`, `image_edit`):
//!   `output_cost_per_image`, else `input_cost_per_image` (LiteLLM's name for
//!   the price of a generated image), else `input_cost_per_pixel` (or
//!   `output_cost_per_pixel`) × width × height of a key
//!   `QUALITY/WIDTH-x-HEIGHT/MODEL` or `WIDTH-x-HEIGHT/MODEL` → per_image.
//!   Not when the model has a per-token image price
//!   (`output_cost_per_image_token`): it is billed by tokens, and the
//!   per-image figure is LiteLLM's estimate of them.
//! - transcription (`audio_transcription`): `input_cost_per_second` →
//!   per_audio_second, only when the model has no per-token audio price
//!   (`input_cost_per_audio_token`): for a token-billed transcription model the
//!   per-second figure is an estimate, not the bill.
//! - text to speech (`audio_speech`): `input_cost_per_character` → per_character.
//!
//! A zero per-unit price counts as none. An entry priced only per unit gets
//! token rates of 0. An image model left with no per-image price and no
//! image-token price (only zeros, or per-pixel prices on a key without a size)
//! would price every image at $0: it is left out, in the report's skipped
//! models and in [`Catalog::left_out`].
//!
//! Everything else (per query, per second of video or output, other
//! tiers…) is skipped and counted.

use std::collections::BTreeMap;

use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::value::RawValue;

use super::{decimal_from_json_number, dedupe, rates_from_map, ImportError, ImportReport, LeftOut};
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
        "input_cost_per_image_token" => Target::Bucket(Bucket::InputImage),
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
    let mut left_out = Vec::new();
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
        let mode: String = fields.get("mode").and_then(|v| serde_json::from_str(v.get()).ok()).unwrap_or_default();
        let model = model_name(&key, &provider_raw, &provider);

        let mut levels: Levels = BTreeMap::new();
        let mut request_fee = None;
        let mut unit_fields: BTreeMap<&str, Decimal> = BTreeMap::new();
        for (name, value) in &fields {
            if !name.contains("cost") {
                continue;
            }
            if UNIT_FIELDS.contains(&name.as_str()) {
                match decimal_from_json_number(value.get()) {
                    Some(d) => {
                        unit_fields.insert(name.as_str(), d);
                    }
                    None => report.skip_field(name),
                }
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
        let units = per_unit_prices(&model, &mode, &fields, &unit_fields, &mut report);
        let image_model = IMAGE_MODES.contains(&mode.as_str());
        let entry = entry_from_levels(&provider, model.clone(), &levels, units.any(), &mut report).map(|mut e| {
            e.source = source;
            e.request_fee = request_fee;
            e.per_image = units.per_image;
            e.per_audio_second = units.per_audio_second;
            e.per_character = units.per_character;
            let count = |name: &str| -> Option<u64> {
                fields.get(name).and_then(|v| serde_json::from_str::<u64>(v.get().trim()).ok()).filter(|&n| n > 0)
            };
            e.context_window = count("max_input_tokens");
            e.max_output_tokens = count("max_output_tokens");
            e
        });
        match entry {
            // An image model that would price every image at $0 is left out.
            Some(e) if image_model && e.per_image.is_none() && e.rates.rate(Bucket::OutputImage).is_zero() => {
                let reason = NO_IMAGE_PRICE.to_owned();
                left_out.push(LeftOut { provider: e.provider, model: e.model, reason: reason.clone() });
                report.skipped_models.push((key, reason));
            }
            Some(e) => entries.push(e),
            None if image_model => {
                let reason = NO_IMAGE_PRICE.to_owned();
                left_out.push(LeftOut { provider, model, reason: reason.clone() });
                report.skipped_models.push((key, reason));
            }
            None => report.skipped_models.push((key, "no per-token input or output price".to_owned())),
        }
    }
    let entries = dedupe(entries, &mut report);
    Ok((Catalog::from_entries_lenient(entries).with_left_out(left_out), report))
}

/// Why an image model is left out.
const NO_IMAGE_PRICE: &str = "image generation without a per-image or image-token price (it would price images at $0)";

/// LiteLLM modes whose models are billed per image generated (or edited).
const IMAGE_MODES: &[&str] = &["image_generation", "image_edit"];

/// LiteLLM's per-unit price fields that may become a per-unit price.
const UNIT_FIELDS: &[&str] = &[
    "input_cost_per_image",
    "output_cost_per_image",
    "input_cost_per_pixel",
    "output_cost_per_pixel",
    "input_cost_per_second",
    "input_cost_per_character",
];

/// The per-unit prices of one LiteLLM entry.
#[derive(Default)]
struct Units {
    per_image: Option<Decimal>,
    per_audio_second: Option<Decimal>,
    per_character: Option<Decimal>,
}

impl Units {
    fn any(&self) -> bool {
        self.per_image.is_some() || self.per_audio_second.is_some() || self.per_character.is_some()
    }
}

/// The per-unit prices of an entry by the rules in the module docs; every
/// unit field found that does not become one is counted as skipped.
fn per_unit_prices(
    model: &str,
    mode: &str,
    fields: &BTreeMap<String, Box<RawValue>>,
    found: &BTreeMap<&str, Decimal>,
    report: &mut ImportReport,
) -> Units {
    let positive = |name: &'static str| found.get(name).copied().filter(|d| *d > Decimal::ZERO).map(|d| (name, d));
    let mut units = Units::default();
    let mut used: Vec<&str> = Vec::new();
    if IMAGE_MODES.contains(&mode) && !fields.contains_key("output_cost_per_image_token") {
        let per_image = positive("output_cost_per_image").or_else(|| positive("input_cost_per_image"));
        let from_pixels = || {
            let (w, h) = pixel_size(model)?;
            let (name, per_pixel) = positive("input_cost_per_pixel").or_else(|| positive("output_cost_per_pixel"))?;
            // LiteLLM's per-pixel figures are the per-image prices divided by
            // the pixels and rounded as floats (hd 1024x1792 dall-e-3 at
            // Azure: 7.19343e-08 × 1,835,008 = 0.131999…), so the product is
            // not the price: it is rounded back to 4 decimal places (a
            // hundredth of a cent, finer than any published per-image price).
            let pixels = Decimal::from(w).checked_mul(Decimal::from(h))?;
            let price =
                per_pixel.checked_mul(pixels)?.round_dp_with_strategy(4, RoundingStrategy::MidpointAwayFromZero);
            (!price.is_zero()).then(|| (name, price.normalize()))
        };
        if let Some((name, d)) = per_image.or_else(from_pixels) {
            used.push(name);
            units.per_image = Some(d);
        }
    }
    if mode == "audio_transcription" && !fields.contains_key("input_cost_per_audio_token") {
        if let Some((name, d)) = positive("input_cost_per_second") {
            used.push(name);
            units.per_audio_second = Some(d);
        }
    }
    if mode == "audio_speech" {
        if let Some((name, d)) = positive("input_cost_per_character") {
            used.push(name);
            units.per_character = Some(d);
        }
    }
    for name in found.keys().filter(|n| !used.contains(n)) {
        report.skip_field(name);
    }
    units
}

/// Width and height of a `QUALITY/WIDTH-x-HEIGHT/MODEL` or
/// `WIDTH-x-HEIGHT/MODEL` name.
fn pixel_size(model: &str) -> Option<(u64, u64)> {
    let parts: Vec<&str> = model.split('/').collect();
    let size = match parts.as_slice() {
        [size, _] | [_, size, _] => *size,
        _ => return None,
    };
    let (w, h) = size.split_once("-x-")?;
    let (w, h): (u64, u64) = (w.parse().ok()?, h.parse().ok()?);
    (w > 0 && h > 0).then_some((w, h))
}

/// The entry of one model's price levels; `None` when it has no per-token
/// input or output price, unless it is priced per unit (`per_unit`: then
/// tokens it does not price cost 0).
fn entry_from_levels(
    provider: &str,
    model: String,
    levels: &Levels,
    per_unit: bool,
    report: &mut ImportReport,
) -> Option<PriceEntry> {
    let no_tokens = BTreeMap::new();
    let base = match levels.get(&(None, None)) {
        Some(b) => b,
        None if per_unit => &no_tokens,
        None => return None,
    };
    if !per_unit && !base.contains_key(&Bucket::Input) && !base.contains_key(&Bucket::Output) {
        return None;
    }
    let rates = rates_from_map(base).unwrap_or_else(|| Rates::new(Decimal::ZERO, Decimal::ZERO));
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
        per_image: None,
        per_audio_second: None,
        per_character: None,
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
        assert!(decompose("input_cost_per_image_token") == Some((b(Bucket::InputImage), None, None)));
        assert!(
            decompose("input_cost_per_image_token_batches")
                == Some((b(Bucket::InputImage), None, Some(ServiceTier::Batch)))
        );
    }

    #[test]
    fn sizes_are_read_from_image_keys() {
        assert_eq!(pixel_size("hd/1024-x-1792/dall-e-3"), Some((1024, 1792)));
        assert_eq!(pixel_size("256-x-256/dall-e-2"), Some((256, 256)));
        assert_eq!(pixel_size("dall-e-3"), None);
        assert_eq!(pixel_size("1024-x-1024/50-steps/stability.stable-diffusion-xl-v1"), None);
        assert_eq!(pixel_size("hd/1024x1792/dall-e-3"), None);
        assert_eq!(pixel_size("0-x-1024/m"), None);
    }
}
