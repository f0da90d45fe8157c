//! The `prices.toml` format as written by people: raw serde types, their
//! validation into [`PriceEntry`], and the writer for imported catalogs.
//!
//! ```toml
//! format = 1
//!
//! [provider.openai]                 # defaults for every openai entry
//! batch = { multiplier = "0.5" }
//!
//! [[model]]
//! provider = "openai"
//! model = "gpt-4o"
//! aliases = ["gpt-4o-2024-11-20"]
//! effective_from = "2024-10-02"     # optional; absent = since always
//! source = "https://openai.com/api/pricing/"
//! input = "2.50"                    # USD per million tokens, decimal strings
//! cache_read = "1.25"
//! output = "10.00"
//! priority = { input = "4.25", cache_read = "2.125", output = "17.00" }
//!
//! [[model.long_context]]            # whole request at these rates when
//! above_input_tokens = 200000       # total input tokens > threshold
//! input = "6"
//! output = "22.50"
//!
//! [[model]]
//! provider = "openai"
//! model = "gpt-image-1"
//! input = "5"                       # text input tokens
//! input_image = "10"                # input image tokens counted apart
//! output = "40"
//! output_image = "40"
//!
//! [[model]]                         # billed per unit, not per token:
//! provider = "openai"               # input/output may be left out (then 0)
//! model = "hd/1024-x-1792/dall-e-3" # QUALITY/WIDTH-x-HEIGHT/MODEL
//! per_image = "0.12"                # USD per image generated
//!
//! [[model]]
//! provider = "openai"
//! model = "whisper-1"
//! per_audio_second = "0.0001"       # USD per second of input audio
//!
//! [[model]]
//! provider = "openai"
//! model = "tts-1"
//! per_character = "0.000015"        # USD per input character
//! ```
//!
//! `input` and `output` are required unless the entry sets a per-unit price
//! (`per_image`, `per_audio_second`, `per_character`); then a missing one is 0.
//! Per-unit prices are not scaled by the service tier.
//!
//! A self-hosted model may give `gpu_hour_usd` and `tokens_per_gpu_hour`
//! (optionally `output_tokens_per_gpu_hour`) instead of `input`/`output`.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::catalog::{Bucket, Catalog, CatalogError, GpuHour, LongContextTier, PriceEntry, Rates, ServiceTierPricing};
use crate::names;

/// Decimal rates are written as strings (`"2.50"`), never TOML floats, so the
/// file says exactly the number the provider published.
mod opt_dec {
    use rust_decimal::Decimal;
    use serde::{Deserialize, Deserializer, Serializer};
    use std::str::FromStr;

    pub fn serialize<S: Serializer>(v: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(d) => s.serialize_str(&d.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
        let s = String::deserialize(d)
            .map_err(|e| serde::de::Error::custom(format!("{e} (rates are decimal strings like \"2.50\")")))?;
        Decimal::from_str(s.trim())
            .map(Some)
            .map_err(|e| serde::de::Error::custom(format!("{s:?} is not a decimal number: {e}")))
    }
}

/// One `[[model]]` table of the catalog format. Public so that a
/// configuration file can carry entries in the same format (self-hosted
/// models priced by config) and hand them to [`Catalog::from_raw_entries`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPriceEntry {
    pub provider: String,
    pub model: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    #[serde(default, with = "opt_dec", skip_serializing_if = "Option::is_none")]
    pub input: Option<Decimal>,
    #[serde(default, with = "opt_dec", skip_serializing_if = "Option::is_none")]
    pub input_image: Option<Decimal>,
    #[serde(default, with = "opt_dec", skip_serializing_if = "Option::is_none")]
    pub input_audio: Option<Decimal>,
    #[serde(default, with = "opt_dec", skip_serializing_if = "Option::is_none")]
    pub cache_read: Option<Decimal>,
    #[serde(default, with = "opt_dec", skip_serializing_if = "Option::is_none")]
    pub cache_write_5m: Option<Decimal>,
    #[serde(default, with = "opt_dec", skip_serializing_if = "Option::is_none")]
    pub cache_write_1h: Option<Decimal>,
    #[serde(default, with = "opt_dec", skip_serializing_if = "Option::is_none")]
    pub output: Option<Decimal>,
    #[serde(default, with = "opt_dec", skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<Decimal>,
    #[serde(default, with = "opt_dec", skip_serializing_if = "Option::is_none")]
    pub output_audio: Option<Decimal>,
    #[serde(default, with = "opt_dec", skip_serializing_if = "Option::is_none")]
    pub output_image: Option<Decimal>,
    /// USD per request.
    #[serde(default, with = "opt_dec", skip_serializing_if = "Option::is_none")]
    pub request_fee: Option<Decimal>,
    /// USD per image generated.
    #[serde(default, with = "opt_dec", skip_serializing_if = "Option::is_none")]
    pub per_image: Option<Decimal>,
    /// USD per second of input audio.
    #[serde(default, with = "opt_dec", skip_serializing_if = "Option::is_none")]
    pub per_audio_second: Option<Decimal>,
    /// USD per input character.
    #[serde(default, with = "opt_dec", skip_serializing_if = "Option::is_none")]
    pub per_character: Option<Decimal>,
    #[serde(default, with = "opt_dec", skip_serializing_if = "Option::is_none")]
    pub gpu_hour_usd: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_gpu_hour: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens_per_gpu_hour: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<RawServiceTier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flex: Option<RawServiceTier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<RawServiceTier>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub long_context: Vec<RawLongContext>,
    /// USD per 1,000 server-side web searches.
    #[serde(default, with = "opt_dec", skip_serializing_if = "Option::is_none")]
    pub web_search_per_1k: Option<Decimal>,
    /// Tokens the model reads at most (prompt and output).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_window: Option<u64>,
    /// Tokens the model writes at most in one answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u64>,
}

/// `batch = { multiplier = "0.5" }` or explicit rates (or both).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServiceTier {
    #[serde(default, with = "opt_dec", skip_serializing_if = "Option::is_none")]
    pub multiplier: Option<Decimal>,
    #[serde(default, with = "opt_dec", skip_serializing_if = "Option::is_none")]
    pub input: Option<Decimal>,
    #[serde(default, with = "opt_dec", skip_serializing_if = "Option::is_none")]
    pub input_image: Option<Decimal>,
    #[serde(default, with = "opt_dec", skip_serializing_if = "Option::is_none")]
    pub input_audio: Option<Decimal>,
    #[serde(default, with = "opt_dec", skip_serializing_if = "Option::is_none")]
    pub cache_read: Option<Decimal>,
    #[serde(default, with = "opt_dec", skip_serializing_if = "Option::is_none")]
    pub cache_write_5m: Option<Decimal>,
    #[serde(default, with = "opt_dec", skip_serializing_if = "Option::is_none")]
    pub cache_write_1h: Option<Decimal>,
    #[serde(default, with = "opt_dec", skip_serializing_if = "Option::is_none")]
    pub output: Option<Decimal>,
    #[serde(default, with = "opt_dec", skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<Decimal>,
    #[serde(default, with = "opt_dec", skip_serializing_if = "Option::is_none")]
    pub output_audio: Option<Decimal>,
    #[serde(default, with = "opt_dec", skip_serializing_if = "Option::is_none")]
    pub output_image: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub long_context: Vec<RawLongContext>,
}

/// One `[[model.long_context]]` table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLongContext {
    pub above_input_tokens: u64,
    #[serde(default, with = "opt_dec", skip_serializing_if = "Option::is_none")]
    pub input: Option<Decimal>,
    #[serde(default, with = "opt_dec", skip_serializing_if = "Option::is_none")]
    pub input_image: Option<Decimal>,
    #[serde(default, with = "opt_dec", skip_serializing_if = "Option::is_none")]
    pub input_audio: Option<Decimal>,
    #[serde(default, with = "opt_dec", skip_serializing_if = "Option::is_none")]
    pub cache_read: Option<Decimal>,
    #[serde(default, with = "opt_dec", skip_serializing_if = "Option::is_none")]
    pub cache_write_5m: Option<Decimal>,
    #[serde(default, with = "opt_dec", skip_serializing_if = "Option::is_none")]
    pub cache_write_1h: Option<Decimal>,
    #[serde(default, with = "opt_dec", skip_serializing_if = "Option::is_none")]
    pub output: Option<Decimal>,
    #[serde(default, with = "opt_dec", skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<Decimal>,
    #[serde(default, with = "opt_dec", skip_serializing_if = "Option::is_none")]
    pub output_audio: Option<Decimal>,
    #[serde(default, with = "opt_dec", skip_serializing_if = "Option::is_none")]
    pub output_image: Option<Decimal>,
}

/// `[provider.<id>]`: service-tier defaults for every entry of a provider
/// that does not set its own.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProviderDefaults {
    #[serde(default)]
    pub batch: Option<RawServiceTier>,
    #[serde(default)]
    pub flex: Option<RawServiceTier>,
    #[serde(default)]
    pub priority: Option<RawServiceTier>,
    /// USD per 1,000 web searches, for the provider's models that set none.
    #[serde(default, with = "opt_dec")]
    pub web_search_per_1k: Option<Decimal>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDoc {
    #[serde(default)]
    format: Option<u32>,
    #[serde(default)]
    provider: BTreeMap<String, RawProviderDefaults>,
    #[serde(default)]
    model: Vec<toml::Table>,
}

#[derive(Serialize)]
struct WriteDoc<'a> {
    format: u32,
    model: &'a [RawPriceEntry],
}

/// The ten rate fields of a raw table, in [`Bucket::ALL`] order.
type RateFields = [Option<Decimal>; 10];

/// Where `output` is in [`RateFields`] (`input` is first).
const OUTPUT_FIELD: usize = 6;
const _: () = assert!(matches!(Bucket::ALL[0], Bucket::Input) && matches!(Bucket::ALL[OUTPUT_FIELD], Bucket::Output));

macro_rules! rate_fields_impl {
    ($t:ty) => {
        impl $t {
            fn rate_fields(&self) -> RateFields {
                [
                    self.input,
                    self.input_image,
                    self.input_audio,
                    self.cache_read,
                    self.cache_write_5m,
                    self.cache_write_1h,
                    self.output,
                    self.output_audio,
                    self.output_image,
                    self.reasoning,
                ]
            }

            fn set_rates(&mut self, r: &Rates) {
                self.input = Some(r.input);
                self.input_image = r.input_image;
                self.input_audio = r.input_audio;
                self.cache_read = r.cache_read;
                self.cache_write_5m = r.cache_write_5m;
                self.cache_write_1h = r.cache_write_1h;
                self.output = Some(r.output);
                self.output_audio = r.output_audio;
                self.output_image = r.output_image;
                self.reasoning = r.reasoning;
            }
        }
    };
}
rate_fields_impl!(RawPriceEntry);
rate_fields_impl!(RawServiceTier);
rate_fields_impl!(RawLongContext);

fn rates_from(f: RateFields, what: &str) -> Result<Rates, String> {
    for (b, v) in Bucket::ALL.iter().zip(f.iter()) {
        if let Some(d) = v {
            if d.is_sign_negative() && !d.is_zero() {
                return Err(format!("{what}: rate {} is negative ({d})", b.name()));
            }
        }
    }
    let [input, input_image, input_audio, cache_read, cache_write_5m, cache_write_1h, output, output_audio, output_image, reasoning] =
        f;
    let input = input.ok_or_else(|| format!("{what}: missing `input` rate"))?;
    let output = output.ok_or_else(|| {
        format!("{what}: missing `output` rate (write output = \"0\" for a model without output tokens)")
    })?;
    Ok(Rates {
        input,
        input_image,
        input_audio,
        cache_read,
        cache_write_5m,
        cache_write_1h,
        output,
        reasoning,
        output_audio,
        output_image,
    })
}

fn long_context_from(raw: &[RawLongContext], what: &str) -> Result<Vec<LongContextTier>, String> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for t in raw {
        if t.above_input_tokens == 0 {
            return Err(format!("{what}: long_context threshold must be above 0"));
        }
        if !seen.insert(t.above_input_tokens) {
            return Err(format!("{what}: long_context threshold {} listed twice", t.above_input_tokens));
        }
        let label = format!("{what} long_context above {}", t.above_input_tokens);
        out.push(LongContextTier {
            above_input_tokens: t.above_input_tokens,
            rates: rates_from(t.rate_fields(), &label)?,
        });
    }
    out.sort_by_key(|t| t.above_input_tokens);
    Ok(out)
}

fn service_tier_from(raw: &RawServiceTier, what: &str) -> Result<ServiceTierPricing, String> {
    let fields = raw.rate_fields();
    let rates = if fields.iter().any(Option::is_some) { Some(rates_from(fields, what)?) } else { None };
    if rates.is_none() && !raw.long_context.is_empty() {
        return Err(format!("{what}: long_context needs the tier's own input and output rates"));
    }
    if let Some(m) = raw.multiplier {
        if m.is_sign_negative() && !m.is_zero() {
            return Err(format!("{what}: multiplier is negative ({m})"));
        }
    } else if rates.is_none() {
        return Err(format!("{what}: needs a `multiplier` or its own rates"));
    }
    Ok(ServiceTierPricing {
        multiplier: raw.multiplier,
        rates,
        long_context: long_context_from(&raw.long_context, what)?,
    })
}

impl RawPriceEntry {
    /// Validates this raw entry; `index` and the names identify it in errors.
    pub(crate) fn into_entry(
        self,
        index: usize,
        defaults: &BTreeMap<String, RawProviderDefaults>,
    ) -> Result<PriceEntry, CatalogError> {
        let entry = format!("#{} ({}/{})", index + 1, self.provider, self.model);
        let err = |message: String| CatalogError::Entry { entry: entry.clone(), message };
        if self.provider.trim().is_empty() || self.model.trim().is_empty() {
            return Err(err("`provider` and `model` must not be empty".into()));
        }
        let provider = names::canonical_provider(&self.provider);
        let effective_from = match &self.effective_from {
            None => None,
            Some(s) => Some(
                NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
                    .map_err(|e| err(format!("effective_from {s:?} is not a YYYY-MM-DD date: {e}")))?,
            ),
        };

        for (name, price) in [
            ("per_image", self.per_image),
            ("per_audio_second", self.per_audio_second),
            ("per_character", self.per_character),
        ] {
            if price.is_some_and(|d| d.is_sign_negative() && !d.is_zero()) {
                return Err(err(format!("{name} is negative")));
            }
        }
        let per_unit = self.per_image.is_some() || self.per_audio_second.is_some() || self.per_character.is_some();

        let uses_gpu = self.gpu_hour_usd.is_some()
            || self.tokens_per_gpu_hour.is_some()
            || self.output_tokens_per_gpu_hour.is_some();
        let (rates, gpu) = if uses_gpu {
            if self.input.is_some() || self.output.is_some() {
                return Err(err("give either input/output rates or gpu_hour_usd/tokens_per_gpu_hour, not both".into()));
            }
            let (Some(usd), Some(tph)) = (self.gpu_hour_usd, self.tokens_per_gpu_hour) else {
                return Err(err("GPU-hour pricing needs both gpu_hour_usd and tokens_per_gpu_hour".into()));
            };
            if usd.is_sign_negative() && !usd.is_zero() {
                return Err(err("gpu_hour_usd is negative".into()));
            }
            let gpu = GpuHour {
                gpu_hour_usd: usd,
                tokens_per_gpu_hour: tph,
                output_tokens_per_gpu_hour: self.output_tokens_per_gpu_hour,
            };
            let rate = |t: u64| gpu.per_million(t).ok_or_else(|| err("tokens per GPU-hour must be above 0".into()));
            let mut fields = self.rate_fields();
            fields[0] = Some(rate(tph)?);
            fields[OUTPUT_FIELD] = Some(rate(self.output_tokens_per_gpu_hour.unwrap_or(tph))?);
            (rates_from(fields, "rates").map_err(err)?, Some(gpu))
        } else {
            let mut fields = self.rate_fields();
            if per_unit {
                // Billed per image, second or character: tokens cost nothing
                // unless the entry says otherwise.
                fields[0] = fields[0].or(Some(Decimal::ZERO));
                fields[OUTPUT_FIELD] = fields[OUTPUT_FIELD].or(Some(Decimal::ZERO));
            }
            (rates_from(fields, "rates").map_err(err)?, None)
        };

        let long_context = long_context_from(&self.long_context, "rates").map_err(err)?;
        let provider_defaults = defaults.get(&provider).or_else(|| defaults.get(&self.provider));
        let tier = |own: &Option<RawServiceTier>, dflt: Option<&RawServiceTier>, name: &str| {
            own.as_ref().or(dflt).map(|t| service_tier_from(t, name)).transpose().map_err(err)
        };
        let batch = tier(&self.batch, provider_defaults.and_then(|d| d.batch.as_ref()), "batch")?;
        let flex = tier(&self.flex, provider_defaults.and_then(|d| d.flex.as_ref()), "flex")?;
        let priority = tier(&self.priority, provider_defaults.and_then(|d| d.priority.as_ref()), "priority")?;
        if let Some(f) = self.request_fee {
            if f.is_sign_negative() && !f.is_zero() {
                return Err(err("request_fee is negative".into()));
            }
        }
        let mut aliases: Vec<String> = Vec::new();
        for a in self.aliases {
            let a = a.trim().to_owned();
            if a.is_empty() {
                return Err(err("an alias is empty".into()));
            }
            if !aliases.contains(&a) && a != self.model {
                aliases.push(a);
            }
        }
        Ok(PriceEntry {
            provider,
            model: self.model.trim().to_owned(),
            aliases,
            effective_from,
            source: self.source,
            notes: self.notes,
            rates,
            long_context,
            batch,
            flex,
            priority,
            request_fee: self.request_fee,
            per_image: self.per_image,
            per_audio_second: self.per_audio_second,
            per_character: self.per_character,
            gpu,
            web_search_per_1k: self.web_search_per_1k.or(provider_defaults.and_then(|d| d.web_search_per_1k)),
            context_window: self.context_window.filter(|&n| n > 0),
            max_output_tokens: self.max_output_tokens.filter(|&n| n > 0),
        })
    }

    /// The raw form of an entry (for writing a catalog).
    pub fn from_entry(e: &PriceEntry) -> RawPriceEntry {
        let mut r = RawPriceEntry {
            provider: e.provider.clone(),
            model: e.model.clone(),
            aliases: e.aliases.clone(),
            effective_from: e.effective_from.map(|d| d.format("%Y-%m-%d").to_string()),
            source: e.source.clone(),
            notes: e.notes.clone(),
            request_fee: e.request_fee,
            per_image: e.per_image,
            per_audio_second: e.per_audio_second,
            per_character: e.per_character,
            batch: e.batch.as_ref().map(raw_tier),
            flex: e.flex.as_ref().map(raw_tier),
            priority: e.priority.as_ref().map(raw_tier),
            long_context: e.long_context.iter().map(raw_long).collect(),
            web_search_per_1k: e.web_search_per_1k,
            context_window: e.context_window,
            max_output_tokens: e.max_output_tokens,
            ..RawPriceEntry::default()
        };
        r.set_rates(&e.rates);
        if let Some(g) = &e.gpu {
            r.input = None;
            r.output = None;
            r.gpu_hour_usd = Some(g.gpu_hour_usd);
            r.tokens_per_gpu_hour = Some(g.tokens_per_gpu_hour);
            r.output_tokens_per_gpu_hour = g.output_tokens_per_gpu_hour;
        }
        r
    }
}

fn raw_long(t: &LongContextTier) -> RawLongContext {
    let mut r = RawLongContext { above_input_tokens: t.above_input_tokens, ..RawLongContext::default() };
    r.set_rates(&t.rates);
    r
}

fn raw_tier(t: &ServiceTierPricing) -> RawServiceTier {
    let mut r = RawServiceTier {
        multiplier: t.multiplier,
        long_context: t.long_context.iter().map(raw_long).collect(),
        ..RawServiceTier::default()
    };
    if let Some(rates) = &t.rates {
        r.set_rates(rates);
    }
    r
}

pub(crate) fn parse_catalog(s: &str) -> Result<Catalog, CatalogError> {
    let doc: RawDoc = toml::from_str(s).map_err(|e| CatalogError::Toml(e.to_string()))?;
    if let Some(f) = doc.format {
        if f != 1 {
            return Err(CatalogError::Toml(format!("unsupported catalog format {f} (this build reads format 1)")));
        }
    }
    let defaults: BTreeMap<String, RawProviderDefaults> =
        doc.provider.into_iter().map(|(k, v)| (names::canonical_provider(&k), v)).collect();
    let mut entries = Vec::with_capacity(doc.model.len());
    for (i, table) in doc.model.into_iter().enumerate() {
        let label = format!(
            "#{} ({}/{})",
            i + 1,
            table.get("provider").and_then(|v| v.as_str()).unwrap_or("?"),
            table.get("model").and_then(|v| v.as_str()).unwrap_or("?"),
        );
        let raw: RawPriceEntry = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| CatalogError::Entry { entry: label, message: e.message().to_owned() })?;
        entries.push(raw.into_entry(i, &defaults)?);
    }
    Catalog::from_entries(entries)
}

pub(crate) fn write_catalog(c: &Catalog) -> String {
    let model: Vec<RawPriceEntry> = c.entries().map(RawPriceEntry::from_entry).collect();
    let doc = WriteDoc { format: 1, model: &model };
    let body = toml::to_string(&doc).unwrap_or_else(|e| format!("# could not write catalog: {e}\n"));
    format!("# tollgate price catalog: USD per million tokens, decimal strings.\n{body}")
}
