//! Readers for outside price catalogs, and comparison between catalogs.
//!
//! - [`genai_prices`]: pydantic genai-prices, v2 `data.json`.
//! - [`litellm`]: LiteLLM's `model_prices_and_context_window.json`.
//! - [`discrepancies`]: where two catalogs price the same model differently.
//! - [`reference::generate`]: the built-in catalog from both references, by a
//!   documented rule.
//!
//! Numbers are read from the JSON *text* (`serde_json::value::RawValue`) and
//! parsed as exact decimals — `2.5e-06` becomes exactly 0.0000025 — so no
//! float rounding can creep in. What the catalog format cannot represent is
//! skipped and counted in an [`ImportReport`].

mod genai;
mod litellm;
pub mod reference;

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::catalog::{Bucket, Catalog, PriceEntry, Rates, ServiceTier};
use crate::names;

/// An outside catalog that could not be read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    #[error("not valid JSON: {0}")]
    Json(String),
    #[error("unexpected shape: {0}")]
    Shape(String),
}

/// What an import kept and what it left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Models (or model keys) read from the file.
    pub models_read: usize,
    /// Catalog entries produced (a model with dated prices yields several).
    pub entries_imported: usize,
    /// Models left out entirely, with the reason.
    pub skipped_models: Vec<(String, String)>,
    /// Price fields that have no tollgate bucket, by field name → count.
    pub skipped_fields: BTreeMap<String, usize>,
    /// Conditional prices that are not a plain start date (e.g. time of day).
    pub skipped_conditions: usize,
    /// Entries dropped because an earlier one had the same provider, model and date.
    pub duplicates: usize,
}

impl ImportReport {
    fn skip_field(&mut self, name: &str) {
        *self.skipped_fields.entry(name.to_owned()).or_default() += 1;
    }
}

pub use crate::catalog::LeftOut;

/// Reads pydantic genai-prices v2 `data.json`.
pub fn genai_prices(json: &str) -> Result<Catalog, ImportError> {
    genai::import(json).map(|(c, _)| c)
}

/// Like [`genai_prices`], with the report of what was left out.
pub fn genai_prices_with_report(json: &str) -> Result<(Catalog, ImportReport), ImportError> {
    genai::import(json)
}

/// Reads LiteLLM's model price map.
pub fn litellm(json: &str) -> Result<Catalog, ImportError> {
    litellm::import(json).map(|(c, _)| c)
}

/// Like [`litellm`], with the report of what was left out.
pub fn litellm_with_report(json: &str) -> Result<(Catalog, ImportReport), ImportError> {
    litellm::import(json)
}

/// Parses a JSON number's text exactly (`0.135`, `2.5e-06`, `1E-7`).
pub(crate) fn decimal_from_json_number(text: &str) -> Option<Decimal> {
    let t = text.trim();
    let d = if t.contains(['e', 'E']) { Decimal::from_scientific(t).ok()? } else { Decimal::from_str(t).ok()? };
    Some(d.normalize())
}

/// One rate that differs between two catalogs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discrepancy {
    pub provider: String,
    pub model: String,
    /// The model name in the other catalog, when it differs.
    pub their_model: String,
    /// `input`, `output`, `cache_read`, … or `long_context>200000.output`,
    /// `batch.input`; `long_context>N` alone when one side lacks the tier;
    /// `per_image`, `per_audio_second`, `per_character`.
    pub what: String,
    pub ours: Option<Decimal>,
    pub theirs: Option<Decimal>,
}

impl std::fmt::Display for Discrepancy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |d: &Option<Decimal>| d.map_or_else(|| "-".to_owned(), |d| d.normalize().to_string());
        write!(
            f,
            "{}/{} {}: ours {} vs theirs {}",
            self.provider,
            self.model,
            self.what,
            show(&self.ours),
            show(&self.theirs)
        )
    }
}

/// Rates that differ for the same model at the same provider, comparing the
/// most recent prices on both sides. See [`discrepancies_at`].
pub fn discrepancies(ours: &Catalog, theirs: &Catalog) -> Vec<Discrepancy> {
    discrepancies_at(ours, theirs, DateTime::<Utc>::MAX_UTC)
}

/// Rates that differ for the same model at the same provider, comparing
/// the entries in force at `at`. Each of our (provider, model) is looked up
/// in `theirs` with the same name normalisation as [`Catalog::lookup`], but
/// only at the same provider. A bucket is compared when both sides list it
/// (input and output always); long-context tiers are compared by threshold;
/// batch/flex/priority input and output when both sides price the tier;
/// per-unit prices (per image, second of audio, character) when both give one.
pub fn discrepancies_at(ours: &Catalog, theirs: &Catalog, at: DateTime<Utc>) -> Vec<Discrepancy> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for e in ours.entries() {
        if !seen.insert((e.provider.clone(), e.model.clone())) {
            continue;
        }
        let Some(mine) = ours.lookup(Some(&e.provider), &e.model, at) else {
            continue;
        };
        if mine.provider != e.provider || mine.model != e.model {
            continue;
        }
        let Some(other) = theirs.lookup(Some(&e.provider), &e.model, at) else {
            continue;
        };
        if names::canonical_provider(&other.provider) != mine.provider {
            continue;
        }
        compare_entries(mine, other, &mut out);
    }
    out
}

fn compare_entries(a: &PriceEntry, b: &PriceEntry, out: &mut Vec<Discrepancy>) {
    let mut push = |what: String, ours: Option<Decimal>, theirs: Option<Decimal>| {
        out.push(Discrepancy {
            provider: a.provider.clone(),
            model: a.model.clone(),
            their_model: b.model.clone(),
            what,
            ours,
            theirs,
        });
    };
    compare_rates("", &a.rates, &b.rates, &mut push);
    for (what, x, y) in [
        ("per_image", a.per_image, b.per_image),
        ("per_audio_second", a.per_audio_second, b.per_audio_second),
        ("per_character", a.per_character, b.per_character),
    ] {
        if let (Some(x), Some(y)) = (x, y) {
            if x != y {
                push(what.to_owned(), Some(x), Some(y));
            }
        }
    }
    for t in &a.long_context {
        let prefix = format!("long_context>{}", t.above_input_tokens);
        match b.long_context.iter().find(|x| x.above_input_tokens == t.above_input_tokens) {
            Some(u) => compare_rates(&format!("{prefix}."), &t.rates, &u.rates, &mut push),
            None => push(prefix, Some(t.rates.input), None),
        }
    }
    for u in &b.long_context {
        if !a.long_context.iter().any(|t| t.above_input_tokens == u.above_input_tokens) {
            push(format!("long_context>{}", u.above_input_tokens), None, Some(u.rates.input));
        }
    }
    for tier in [ServiceTier::Batch, ServiceTier::Flex, ServiceTier::Priority] {
        if a.service_tier(tier).is_some() && b.service_tier(tier).is_some() {
            let ra = a.rates_for(0, tier);
            let rb = b.rates_for(0, tier);
            for bucket in [Bucket::Input, Bucket::Output] {
                let (x, y) = (ra.rate(bucket), rb.rate(bucket));
                if x != y {
                    push(format!("{}.{}", tier.as_str(), bucket.name()), Some(x), Some(y));
                }
            }
        }
    }
}

fn compare_rates(prefix: &str, a: &Rates, b: &Rates, push: &mut impl FnMut(String, Option<Decimal>, Option<Decimal>)) {
    for bucket in Bucket::ALL {
        let (x, y) = (a.explicit(bucket), b.explicit(bucket));
        if let (Some(x), Some(y)) = (x, y) {
            if x != y {
                push(format!("{prefix}{}", bucket.name()), Some(x), Some(y));
            }
        }
    }
}

/// Builds rates from a bucket → rate map; input/output default to zero when
/// the other one is present (embedding models list no output price).
pub(crate) fn rates_from_map(m: &BTreeMap<Bucket, Decimal>) -> Option<Rates> {
    if m.is_empty() {
        return None;
    }
    let get = |b: Bucket| m.get(&b).copied();
    Some(Rates {
        input: get(Bucket::Input).unwrap_or(Decimal::ZERO),
        input_image: get(Bucket::InputImage),
        input_audio: get(Bucket::InputAudio),
        cache_read: get(Bucket::CacheRead),
        cache_write_5m: get(Bucket::CacheWrite5m),
        cache_write_1h: get(Bucket::CacheWrite1h),
        output: get(Bucket::Output).unwrap_or(Decimal::ZERO),
        reasoning: get(Bucket::Reasoning),
        output_audio: get(Bucket::OutputAudio),
        output_image: get(Bucket::OutputImage),
    })
}

/// Makes imported entries a catalog that the strict reader accepts again
/// (so `to_toml_string` output loads): drops repeated (provider, model,
/// date) keys — model names compared case-insensitively — counting them,
/// and drops aliases that name another model or were claimed by one first.
pub(crate) fn dedupe(entries: Vec<PriceEntry>, report: &mut ImportReport) -> Vec<PriceEntry> {
    use std::collections::{HashMap, HashSet};
    let mut seen = HashSet::new();
    let mut canonical: HashMap<(String, String), String> = HashMap::new();
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let lower = e.model.to_ascii_lowercase();
        let spelled = canonical.entry((e.provider.clone(), lower.clone())).or_insert_with(|| e.model.clone());
        if spelled != &e.model || !seen.insert((e.provider.clone(), lower, e.effective_from)) {
            report.duplicates += 1;
            continue;
        }
        out.push(e);
    }
    let mut claimed: HashMap<(String, String), String> =
        canonical.iter().map(|((p, lower), model)| ((p.clone(), lower.clone()), model.clone())).collect();
    for e in &mut out {
        let (provider, model) = (e.provider.clone(), e.model.clone());
        e.aliases.retain(|a| {
            let owner = claimed.entry((provider.clone(), a.to_ascii_lowercase())).or_insert_with(|| model.clone());
            owner == &model && !a.eq_ignore_ascii_case(&model)
        });
    }
    report.entries_imported = out.len();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_numbers_are_exact() {
        for (t, s) in [
            ("2.5e-06", "0.0000025"),
            ("1e-05", "0.00001"),
            ("1.25E-7", "0.000000125"),
            ("0.135", "0.135"),
            ("3", "3"),
            ("1.875e-05", "0.00001875"),
            ("6e+00", "6"),
        ] {
            assert_eq!(decimal_from_json_number(t).map(|d| d.to_string()).as_deref(), Some(s), "{t}");
        }
        assert_eq!(decimal_from_json_number("\"x\""), None);
    }
}
