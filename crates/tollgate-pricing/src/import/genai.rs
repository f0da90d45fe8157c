//! Importer for pydantic genai-prices v2 `data.json`.
//!
//! Shape: a list of providers `{id, pricing_urls, models: [{id, match,
//! prices}]}`; `prices` is either one price object or a list of conditional
//! prices `[{constraint?, prices}]`. A price field is a number (USD per
//! million) or `{base, tiers: [{start, price}]}`.
//!
//! Mapping: `input_mtok`, `cache_read_mtok`, `cache_write_mtok` (5-minute),
//! `cache_write_1h_mtok`, `output_mtok`, `input_image_mtok`,
//! `input_audio_mtok`, `output_audio_mtok`, `output_image_mtok`,
//! `output_reasoning_mtok` map to the bucket of that name; `requests_kcount` (USD per thousand requests)
//! becomes the request fee, `web_searches_kcount` the price of 1,000 web
//! searches. A tier `start` becomes a long-context threshold
//! (the whole request at the tier's prices above `start` input tokens).
//! A `start_date` constraint becomes a dated entry; other constraints (time
//! of day) are skipped and counted. Aliases come from the model's `equals`,
//! `starts_with` and `contains` match values, used as exact names.
//!
//! genai-prices prices tokens (and requests) only: it has no price per image,
//! per second of audio or per character, so no entry from it sets one.
//! Cached image and audio reads (`cache_image_read_mtok`,
//! `cache_audio_read_mtok`) have no bucket and are skipped and counted.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{decimal_from_json_number, dedupe, rates_from_map, ImportError, ImportReport};
use crate::catalog::{Bucket, Catalog, LongContextTier, PriceEntry};
use crate::names;

#[derive(Deserialize)]
struct GProvider {
    id: String,
    #[serde(default)]
    pricing_urls: Vec<String>,
    #[serde(default)]
    models: Vec<GModel>,
}

#[derive(Deserialize)]
struct GModel {
    id: String,
    #[serde(default)]
    context_window: Option<u64>,
    #[serde(rename = "match", default)]
    matcher: Option<serde_json::Value>,
    prices: Box<RawValue>,
}

#[derive(Deserialize)]
struct GConditional {
    #[serde(default)]
    constraint: Option<serde_json::Value>,
    prices: BTreeMap<String, Box<RawValue>>,
}

#[derive(Deserialize)]
struct GTiered {
    base: Box<RawValue>,
    #[serde(default)]
    tiers: Vec<GTier>,
}

#[derive(Deserialize)]
struct GTier {
    start: u64,
    price: Box<RawValue>,
}

fn bucket_of(field: &str) -> Option<Bucket> {
    Some(match field {
        "input_mtok" => Bucket::Input,
        "input_image_mtok" => Bucket::InputImage,
        "input_audio_mtok" => Bucket::InputAudio,
        "cache_read_mtok" => Bucket::CacheRead,
        "cache_write_mtok" => Bucket::CacheWrite5m,
        "cache_write_1h_mtok" => Bucket::CacheWrite1h,
        "output_mtok" => Bucket::Output,
        "output_audio_mtok" => Bucket::OutputAudio,
        "output_image_mtok" => Bucket::OutputImage,
        "output_reasoning_mtok" => Bucket::Reasoning,
        _ => return None,
    })
}

pub(super) fn import(json: &str) -> Result<(Catalog, ImportReport), ImportError> {
    let providers: Vec<GProvider> = serde_json::from_str(json).map_err(|e| ImportError::Json(e.to_string()))?;
    let mut report = ImportReport::default();
    let mut entries = Vec::new();
    for p in providers {
        let provider = names::canonical_provider(&p.id);
        let source = p.pricing_urls.first().cloned();
        for m in p.models {
            report.models_read += 1;
            let label = format!("{}/{}", p.id, m.id);
            let mut aliases = Vec::new();
            if let Some(v) = &m.matcher {
                collect_match_names(v, &mut aliases);
            }
            aliases.retain(|a| a != &m.id);
            aliases.dedup();

            let text = m.prices.get().trim_start();
            let conditional: Vec<GConditional> = if text.starts_with('[') {
                serde_json::from_str(text).map_err(|e| ImportError::Shape(format!("{label}: {e}")))?
            } else {
                let prices = serde_json::from_str(text).map_err(|e| ImportError::Shape(format!("{label}: {e}")))?;
                vec![GConditional { constraint: None, prices }]
            };
            let mut produced = 0;
            for c in conditional {
                let effective_from = match &c.constraint {
                    None => None,
                    Some(v) => match start_date(v) {
                        Some(d) => Some(d),
                        None => {
                            report.skipped_conditions += 1;
                            continue;
                        }
                    },
                };
                match entry_from_prices(&provider, &m.id, &c.prices, &mut report) {
                    Ok(Some(mut e)) => {
                        e.aliases = aliases.clone();
                        e.context_window = m.context_window.filter(|&n| n > 0);
                        e.effective_from = effective_from;
                        e.source = source.clone();
                        entries.push(e);
                        produced += 1;
                    }
                    Ok(None) => {}
                    Err(why) => report.skipped_models.push((label.clone(), why)),
                }
            }
            if produced == 0 && !report.skipped_models.iter().any(|(l, _)| l == &label) {
                report.skipped_models.push((label, "no token prices".to_owned()));
            }
        }
    }
    let entries = dedupe(entries, &mut report);
    Ok((Catalog::from_entries_lenient(entries), report))
}

/// `{"start_date": "2026-03-13"}` (or a datetime) → the date.
fn start_date(v: &serde_json::Value) -> Option<NaiveDate> {
    let obj = v.as_object()?;
    if obj.keys().any(|k| k != "start_date" && k != "start" && k != "type") {
        return None;
    }
    let s = obj.get("start_date").or_else(|| obj.get("start"))?.as_str()?;
    NaiveDate::parse_from_str(s.get(..10)?, "%Y-%m-%d").ok()
}

fn collect_match_names(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(o) => {
            for (k, val) in o {
                match (k.as_str(), val) {
                    ("equals" | "starts_with" | "contains", serde_json::Value::String(s)) => {
                        let s = s.trim().to_ascii_lowercase();
                        if !s.is_empty() && !out.contains(&s) {
                            out.push(s);
                        }
                    }
                    ("or", serde_json::Value::Array(items)) => {
                        for i in items {
                            collect_match_names(i, out);
                        }
                    }
                    _ => {}
                }
            }
        }
        serde_json::Value::Array(items) => {
            for i in items {
                collect_match_names(i, out);
            }
        }
        _ => {}
    }
}

/// One genai price object → an entry (without names, dates, source), or
/// `None` when it prices no token bucket (free or per-request-only models).
fn entry_from_prices(
    provider: &str,
    model: &str,
    prices: &BTreeMap<String, Box<RawValue>>,
    report: &mut ImportReport,
) -> Result<Option<PriceEntry>, String> {
    let mut base: BTreeMap<Bucket, Decimal> = BTreeMap::new();
    // bucket → [(start, price)] ascending.
    let mut tiered: BTreeMap<Bucket, Vec<(u64, Decimal)>> = BTreeMap::new();
    let mut request_fee = None;
    let mut web_search = None;
    for (field, raw) in prices {
        let text = raw.get().trim();
        if field == "requests_kcount" {
            let per_k = decimal_from_json_number(text).ok_or_else(|| format!("{field} is not a number"))?;
            request_fee = Some((per_k / Decimal::from(1000)).normalize());
            continue;
        }
        if field == "web_searches_kcount" {
            web_search = Some(decimal_from_json_number(text).ok_or_else(|| format!("{field} is not a number"))?);
            continue;
        }
        let Some(bucket) = bucket_of(field) else {
            report.skip_field(field);
            continue;
        };
        if text.starts_with('{') {
            let t: GTiered = serde_json::from_str(text).map_err(|e| format!("{field}: {e}"))?;
            let b = decimal_from_json_number(t.base.get()).ok_or_else(|| format!("{field}.base is not a number"))?;
            base.insert(bucket, b);
            let mut list = Vec::new();
            for tier in t.tiers {
                let p = decimal_from_json_number(tier.price.get())
                    .ok_or_else(|| format!("{field} tier price is not a number"))?;
                list.push((tier.start, p));
            }
            list.sort_by_key(|(s, _)| *s);
            tiered.insert(bucket, list);
        } else {
            let d = decimal_from_json_number(text).ok_or_else(|| format!("{field} is not a number"))?;
            base.insert(bucket, d);
        }
    }
    if !base.contains_key(&Bucket::Input) && !base.contains_key(&Bucket::Output) {
        return Ok(None);
    }
    let Some(rates) = rates_from_map(&base) else {
        return Ok(None);
    };

    let mut thresholds: Vec<u64> = tiered.values().flatten().map(|(s, _)| *s).collect();
    thresholds.sort_unstable();
    thresholds.dedup();
    let mut long_context = Vec::new();
    for t in thresholds.into_iter().filter(|t| *t > 0) {
        let mut m = base.clone();
        for (bucket, list) in &tiered {
            if let Some((_, p)) = list.iter().rev().find(|(s, _)| *s <= t) {
                m.insert(*bucket, *p);
            }
        }
        if let Some(r) = rates_from_map(&m) {
            long_context.push(LongContextTier { above_input_tokens: t, rates: r });
        }
    }
    Ok(Some(PriceEntry {
        provider: provider.to_owned(),
        model: model.to_owned(),
        aliases: Vec::new(),
        effective_from: None,
        source: None,
        notes: None,
        rates,
        long_context,
        batch: None,
        flex: None,
        priority: None,
        request_fee,
        per_image: None,
        per_audio_second: None,
        per_character: None,
        gpu: None,
        web_search_per_1k: web_search,
        context_window: None,
        max_output_tokens: None,
    }))
}
