//! The price catalog: entries per provider and model, and the lookup that
//! picks the entry in force for a request.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use tollgate_units::Usage;

use crate::names;

/// The catalog tollgate ships with (`catalog/prices.toml`).
/// Generated from the reference catalogs by `tollgate prices generate`.
const GENERATED_TOML: &str = include_str!("../catalog/generated.toml");
/// Written by hand; replaces the generated entries of the models it lists.
const BUILTIN_TOML: &str = include_str!("../catalog/prices.toml");

/// Which price list of a provider a request was served under.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceTier {
    #[default]
    Standard,
    /// Asynchronous batch APIs (OpenAI, Anthropic, Gemini, Bedrock: half price).
    Batch,
    /// OpenAI's `service_tier: "flex"`, Gemini's flex inference.
    Flex,
    /// OpenAI's `service_tier: "priority"`, Gemini's priority inference.
    Priority,
}

impl ServiceTier {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceTier::Standard => "standard",
            ServiceTier::Batch => "batch",
            ServiceTier::Flex => "flex",
            ServiceTier::Priority => "priority",
        }
    }
}

/// One of the disjoint token buckets of [`Usage`], as priced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Bucket {
    Input,
    /// Input image tokens counted apart (image generation and editing models).
    InputImage,
    InputAudio,
    CacheRead,
    CacheWrite5m,
    CacheWrite1h,
    Output,
    OutputAudio,
    OutputImage,
    Reasoning,
}

impl Bucket {
    pub const ALL: [Bucket; 10] = [
        Bucket::Input,
        Bucket::InputImage,
        Bucket::InputAudio,
        Bucket::CacheRead,
        Bucket::CacheWrite5m,
        Bucket::CacheWrite1h,
        Bucket::Output,
        Bucket::OutputAudio,
        Bucket::OutputImage,
        Bucket::Reasoning,
    ];

    /// The key used for this bucket in `prices.toml`.
    pub fn name(self) -> &'static str {
        match self {
            Bucket::Input => "input",
            Bucket::InputImage => "input_image",
            Bucket::InputAudio => "input_audio",
            Bucket::CacheRead => "cache_read",
            Bucket::CacheWrite5m => "cache_write_5m",
            Bucket::CacheWrite1h => "cache_write_1h",
            Bucket::Output => "output",
            Bucket::OutputAudio => "output_audio",
            Bucket::OutputImage => "output_image",
            Bucket::Reasoning => "reasoning",
        }
    }

    pub fn tokens(self, u: &Usage) -> u64 {
        match self {
            Bucket::Input => u.input,
            Bucket::InputImage => u.input_image,
            Bucket::InputAudio => u.input_audio,
            Bucket::CacheRead => u.cache_read,
            Bucket::CacheWrite5m => u.cache_write_5m,
            Bucket::CacheWrite1h => u.cache_write_1h,
            Bucket::Output => u.output,
            Bucket::OutputAudio => u.output_audio,
            Bucket::OutputImage => u.output_image,
            Bucket::Reasoning => u.reasoning,
        }
    }
}

/// USD per million tokens for each bucket. `input` and `output` are always
/// known; every other bucket may be absent and then falls back (see
/// [`Rates::rate`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rates {
    pub input: Decimal,
    /// Input image tokens counted apart (`input_tokens_details.image_tokens`
    /// of image generation and editing models).
    pub input_image: Option<Decimal>,
    pub input_audio: Option<Decimal>,
    pub cache_read: Option<Decimal>,
    pub cache_write_5m: Option<Decimal>,
    pub cache_write_1h: Option<Decimal>,
    pub output: Decimal,
    /// Defaults to the output rate: every major provider bills reasoning as output.
    pub reasoning: Option<Decimal>,
    pub output_audio: Option<Decimal>,
    pub output_image: Option<Decimal>,
}

impl Rates {
    /// Rates with only input and output known.
    pub fn new(input: Decimal, output: Decimal) -> Rates {
        Rates {
            input,
            input_image: None,
            input_audio: None,
            cache_read: None,
            cache_write_5m: None,
            cache_write_1h: None,
            output,
            reasoning: None,
            output_audio: None,
            output_image: None,
        }
    }

    /// The rate written for `bucket`, if any (no fallback).
    pub fn explicit(&self, bucket: Bucket) -> Option<Decimal> {
        match bucket {
            Bucket::Input => Some(self.input),
            Bucket::InputImage => self.input_image,
            Bucket::InputAudio => self.input_audio,
            Bucket::CacheRead => self.cache_read,
            Bucket::CacheWrite5m => self.cache_write_5m,
            Bucket::CacheWrite1h => self.cache_write_1h,
            Bucket::Output => Some(self.output),
            Bucket::OutputAudio => self.output_audio,
            Bucket::OutputImage => self.output_image,
            Bucket::Reasoning => self.reasoning,
        }
    }

    /// The rate that prices `bucket`, with the fallbacks for buckets the
    /// catalog does not list. A provider that lists no separate price for a
    /// bucket bills those tokens like the nearest listed kind, so:
    /// - `cache_write_1h` → `cache_write_5m` → `input`
    /// - `cache_write_5m` → `input`; `cache_read` → `input` (no cache discount)
    /// - `input_image`, `input_audio` → `input`
    /// - `reasoning`, `output_audio`, `output_image` → `output`
    pub fn rate(&self, bucket: Bucket) -> Decimal {
        match bucket {
            Bucket::Input => self.input,
            Bucket::Output => self.output,
            Bucket::InputImage => self.input_image.unwrap_or(self.input),
            Bucket::InputAudio => self.input_audio.unwrap_or(self.input),
            Bucket::CacheRead => self.cache_read.unwrap_or(self.input),
            Bucket::CacheWrite5m => self.cache_write_5m.unwrap_or(self.input),
            Bucket::CacheWrite1h => self.cache_write_1h.or(self.cache_write_5m).unwrap_or(self.input),
            Bucket::Reasoning => self.reasoning.unwrap_or(self.output),
            Bucket::OutputAudio => self.output_audio.unwrap_or(self.output),
            Bucket::OutputImage => self.output_image.unwrap_or(self.output),
        }
    }

    fn scaled(&self, m: Decimal) -> Rates {
        let s = |d: Decimal| d.checked_mul(m).unwrap_or(Decimal::MAX);
        Rates {
            input: s(self.input),
            input_image: self.input_image.map(s),
            input_audio: self.input_audio.map(s),
            cache_read: self.cache_read.map(s),
            cache_write_5m: self.cache_write_5m.map(s),
            cache_write_1h: self.cache_write_1h.map(s),
            output: s(self.output),
            reasoning: self.reasoning.map(s),
            output_audio: self.output_audio.map(s),
            output_image: self.output_image.map(s),
        }
    }
}

/// Long-context pricing: when a request's total input tokens (uncached,
/// audio, cache reads and writes) are *strictly more than*
/// `above_input_tokens`, the whole request — output included — is priced at
/// these rates instead of the base ones. The tier is a complete rate set; the
/// bucket fallbacks of [`Rates::rate`] apply within it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LongContextTier {
    pub above_input_tokens: u64,
    pub rates: Rates,
}

/// How a non-standard service tier is priced: either a multiplier of the
/// standard rates (batch = 0.5), or its own rate set (with its own
/// long-context tiers), optionally multiplied as well.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceTierPricing {
    pub multiplier: Option<Decimal>,
    pub rates: Option<Rates>,
    pub long_context: Vec<LongContextTier>,
}

/// A self-hosted model priced by GPU time: a GPU-hour costs `gpu_hour_usd`
/// and serves `tokens_per_gpu_hour` tokens (input tokens, and output tokens
/// too unless `output_tokens_per_gpu_hour` says otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuHour {
    pub gpu_hour_usd: Decimal,
    pub tokens_per_gpu_hour: u64,
    pub output_tokens_per_gpu_hour: Option<u64>,
}

impl GpuHour {
    /// USD per million tokens for a throughput: gpu_hour_usd × 1e6 / tokens.
    /// Exact when the division terminates; otherwise rounded at the 28th
    /// significant digit, far below a nano-dollar for any request.
    pub fn per_million(&self, tokens_per_hour: u64) -> Option<Decimal> {
        if tokens_per_hour == 0 {
            return None;
        }
        self.gpu_hour_usd
            .checked_mul(Decimal::from(1_000_000u64))?
            .checked_div(Decimal::from(tokens_per_hour))
            .map(|d| d.normalize())
    }
}

/// The price of one model at one provider from one date on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceEntry {
    /// Canonical provider id (`openai`, `anthropic`, `gemini`, `bedrock`,
    /// `azure_openai`, `mistral`, `deepseek`, or a configured provider name).
    pub provider: String,
    pub model: String,
    pub aliases: Vec<String>,
    /// First UTC day these prices apply; `None` = since always.
    pub effective_from: Option<NaiveDate>,
    pub source: Option<String>,
    pub notes: Option<String>,
    pub rates: Rates,
    /// Sorted by threshold, ascending.
    pub long_context: Vec<LongContextTier>,
    pub batch: Option<ServiceTierPricing>,
    pub flex: Option<ServiceTierPricing>,
    pub priority: Option<ServiceTierPricing>,
    /// USD charged once per request, on top of the tokens.
    pub request_fee: Option<Decimal>,
    /// Set when the rates were derived from GPU-hour amortisation.
    pub gpu: Option<GpuHour>,
    /// USD per 1,000 server-side web searches (Anthropic's web search
    /// tool, OpenAI's `web_search` tool calls), when the model can run them.
    pub web_search_per_1k: Option<Decimal>,
    /// USD per image generated, for models billed per image (`dall-e-3`;
    /// the price depends on size and quality, so such entries are named
    /// `QUALITY/WIDTH-x-HEIGHT/MODEL` or `WIDTH-x-HEIGHT/MODEL`).
    pub per_image: Option<Decimal>,
    /// USD per second of input audio (transcription billed by duration, `whisper-1`).
    pub per_audio_second: Option<Decimal>,
    /// USD per input character (text to speech billed by length, `tts-1`).
    pub per_character: Option<Decimal>,
    /// Tokens the model reads at most (prompt and output), when published.
    pub context_window: Option<u64>,
    /// Tokens the model writes at most in one answer, when published.
    pub max_output_tokens: Option<u64>,
}

impl PriceEntry {
    /// How `tier` is priced for this model, if the catalog says.
    pub fn service_tier(&self, tier: ServiceTier) -> Option<&ServiceTierPricing> {
        match tier {
            ServiceTier::Standard => None,
            ServiceTier::Batch => self.batch.as_ref(),
            ServiceTier::Flex => self.flex.as_ref(),
            ServiceTier::Priority => self.priority.as_ref(),
        }
    }

    /// The rates that price a request with `input_tokens` total input tokens
    /// under `tier`. A tier the entry does not price is billed at standard
    /// rates (check [`PriceEntry::service_tier`] to tell).
    pub fn rates_for(&self, input_tokens: u64, tier: ServiceTier) -> Rates {
        let (base, tiers, multiplier) = match self.service_tier(tier) {
            Some(ServiceTierPricing { rates: Some(r), long_context, multiplier }) => {
                (r, long_context.as_slice(), *multiplier)
            }
            Some(ServiceTierPricing { rates: None, multiplier, .. }) => {
                (&self.rates, self.long_context.as_slice(), *multiplier)
            }
            None => (&self.rates, self.long_context.as_slice(), None),
        };
        let chosen = select_tier(base, tiers, input_tokens);
        match multiplier {
            Some(m) => chosen.scaled(m),
            None => chosen.clone(),
        }
    }

    /// True when the entry prices a unit other than tokens: images
    /// generated, seconds of input audio or input characters. Such a model's
    /// request is only priced in full when its usage counts those units.
    pub fn per_unit_priced(&self) -> bool {
        self.per_image.is_some() || self.per_audio_second.is_some() || self.per_character.is_some()
    }

    /// `provider/model@date` for messages.
    pub fn label(&self) -> String {
        match self.effective_from {
            Some(d) => format!("{}/{}@{}", self.provider, self.model, d),
            None => format!("{}/{}", self.provider, self.model),
        }
    }
}

fn select_tier<'a>(base: &'a Rates, tiers: &'a [LongContextTier], input_tokens: u64) -> &'a Rates {
    tiers
        .iter()
        .filter(|t| input_tokens > t.above_input_tokens)
        .max_by_key(|t| t.above_input_tokens)
        .map_or(base, |t| &t.rates)
}

/// An invalid catalog; every variant names the entry at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("price catalog is not valid TOML: {0}")]
    Toml(String),
    #[error("price catalog entry {entry}: {message}")]
    Entry { entry: String, message: String },
    #[error("price catalog lists {entry} twice (same provider, model and effective_from)")]
    Duplicate { entry: String },
    #[error("price catalog: name {name:?} of provider {provider} is used by both {first} and {second}")]
    NameConflict { provider: String, name: String, first: String, second: String },
}

/// Price entries indexed for lookup.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Sorted by (provider, model, effective_from).
    entries: Vec<PriceEntry>,
    /// provider → lowercase model name or alias → model name.
    names: crate::FastMap<String, crate::FastMap<String, String>>,
    /// lowercase name or alias → providers having it, in fallback order.
    providers_by_name: crate::FastMap<String, Vec<String>>,
    /// provider → model → indices into `entries`, oldest first.
    groups: crate::FastMap<String, crate::FastMap<String, Vec<usize>>>,
    /// What an importer read but could not make an entry of (see
    /// [`Catalog::left_out`]); empty for any other catalog.
    left_out: Vec<LeftOut>,
}

impl Catalog {
    /// The built-in catalog, parsed on first use. The data file is checked by
    /// a test, so a parse failure here would be a build defect; it degrades
    /// to an empty catalog (every request unpriced) rather than a panic.
    pub fn builtin() -> &'static Catalog {
        static BUILTIN: OnceLock<Catalog> = OnceLock::new();
        BUILTIN.get_or_init(|| {
            let generated = Catalog::from_toml_str(GENERATED_TOML).unwrap_or_default();
            let hand = Catalog::from_toml_str(BUILTIN_TOML).unwrap_or_default();
            generated.overlaid(&hand)
        })
    }

    /// The text of the generated part of the built-in catalog.
    pub fn generated_toml() -> &'static str {
        GENERATED_TOML
    }

    /// The text of the hand-written part of the built-in catalog.
    pub fn builtin_toml() -> &'static str {
        BUILTIN_TOML
    }

    /// Parses a catalog in the `prices.toml` format.
    pub fn from_toml_str(s: &str) -> Result<Catalog, CatalogError> {
        crate::raw::parse_catalog(s)
    }

    /// Builds a catalog from entries, checking duplicates and name clashes.
    pub fn from_entries(entries: Vec<PriceEntry>) -> Result<Catalog, CatalogError> {
        Catalog::build(entries, true)
    }

    /// Builds a catalog without failing: a repeated (provider, model, date)
    /// keeps the first, and where names clash the later entry wins.
    pub(crate) fn from_entries_lenient(entries: Vec<PriceEntry>) -> Catalog {
        Catalog::build(entries, false).unwrap_or_default()
    }

    /// The entries `keep` accepts, as a catalog of their own.
    pub fn filtered(&self, keep: impl Fn(&PriceEntry) -> bool) -> Catalog {
        Catalog::from_entries_lenient(self.entries.iter().filter(|e| keep(e)).cloned().collect())
    }

    /// Builds a catalog from entries as written in a config file
    /// (`[[prices]]` tables in the same format as `prices.toml`).
    pub fn from_raw_entries(raw: Vec<crate::RawPriceEntry>) -> Result<Catalog, CatalogError> {
        let entries = raw
            .into_iter()
            .enumerate()
            .map(|(i, r)| r.into_entry(i, &BTreeMap::new()))
            .collect::<Result<Vec<_>, _>>()?;
        Catalog::from_entries(entries)
    }

    /// This catalog with `overrides` laid over it: an override replaces the
    /// entry with the same (provider, model, effective_from) and adds the
    /// rest; where names clash, the override's names win.
    pub fn merged(&self, overrides: &Catalog) -> Catalog {
        let key = |e: &PriceEntry| (e.provider.clone(), e.model.clone(), e.effective_from);
        let replaced: std::collections::HashSet<_> = overrides.entries.iter().map(key).collect();
        let mut entries: Vec<PriceEntry> =
            self.entries.iter().filter(|e| !replaced.contains(&key(e))).cloned().collect();
        entries.extend(overrides.entries.iter().cloned());
        // Lenient build: later (override) names overwrite earlier ones, and
        // the keys are unique by construction, so it cannot fail.
        Catalog::build(entries, false).unwrap_or_default()
    }

    /// This catalog with `hand` laid over it model by model: every
    /// (provider, model) that `hand` lists keeps only `hand`'s entries (its
    /// whole price history), the rest stay; where names clash, `hand` wins.
    /// This is how the hand-written catalog overrides the generated one.
    pub fn overlaid(&self, hand: &Catalog) -> Catalog {
        // Every name `hand` uses (model or alias) is `hand`'s alone: a base
        // entry named so is dropped, a base alias so spelled is removed.
        let mut claimed: std::collections::HashSet<(&str, String)> = std::collections::HashSet::new();
        for e in &hand.entries {
            claimed.insert((e.provider.as_str(), e.model.to_ascii_lowercase()));
            for a in &e.aliases {
                claimed.insert((e.provider.as_str(), a.to_ascii_lowercase()));
            }
        }
        // So is a base model that `hand` would price under its name
        // (`claude-3-5-haiku-latest`, `us.anthropic.…`).
        // A replaced model's other names stay with the hand-written entry.
        let mut inherited: HashMap<(String, String), Vec<String>> = HashMap::new();
        let mut limits: HashMap<(String, String), (Option<u64>, Option<u64>)> = HashMap::new();
        let mut entries: Vec<PriceEntry> = Vec::with_capacity(self.entries.len());
        for e in &self.entries {
            let replaced_by = hand
                .lookup(Some(&e.provider), &e.model, DateTime::<Utc>::MAX_UTC)
                .filter(|h| h.provider == e.provider)
                .map(|h| h.model.clone());
            if let Some(model) = replaced_by {
                // Limits are the model's, not a price: kept where `hand` has none.
                let l = limits.entry((e.provider.clone(), model.clone())).or_default();
                l.0 = l.0.max(e.context_window);
                l.1 = l.1.max(e.max_output_tokens);
                let names = inherited.entry((e.provider.clone(), model)).or_default();
                for n in std::iter::once(&e.model).chain(&e.aliases) {
                    if !claimed.contains(&(e.provider.as_str(), n.to_ascii_lowercase())) && !names.contains(n) {
                        names.push(n.clone());
                    }
                }
                continue;
            }
            if claimed.contains(&(e.provider.as_str(), e.model.to_ascii_lowercase())) {
                continue;
            }
            let mut e = e.clone();
            let provider = e.provider.clone();
            e.aliases.retain(|a| !claimed.contains(&(provider.as_str(), a.to_ascii_lowercase())));
            entries.push(e);
        }
        // A name inherited by two hand-written models is nobody's.
        let mut owners: HashMap<(String, String), usize> = HashMap::new();
        for ((p, _), names) in &inherited {
            for n in names {
                *owners.entry((p.clone(), n.to_ascii_lowercase())).or_default() += 1;
            }
        }
        entries.extend(hand.entries.iter().cloned().map(|mut h| {
            if let Some((cw, mo)) = limits.get(&(h.provider.clone(), h.model.clone())) {
                h.context_window = h.context_window.or(*cw);
                h.max_output_tokens = h.max_output_tokens.or(*mo);
            }
            if let Some(names) = inherited.get(&(h.provider.clone(), h.model.clone())) {
                for n in names {
                    if owners.get(&(h.provider.clone(), n.to_ascii_lowercase())) == Some(&1) && !h.aliases.contains(n) {
                        h.aliases.push(n.clone());
                    }
                }
            }
            h
        }));
        Catalog::build(entries, false).unwrap_or_default()
    }

    fn build(mut entries: Vec<PriceEntry>, strict: bool) -> Result<Catalog, CatalogError> {
        // Stable sort keeps insertion order among equal keys: in lenient mode
        // overrides come after base entries and so win the name index.
        let mut seq: Vec<(usize, PriceEntry)> = entries.drain(..).enumerate().collect();
        seq.sort_by(|(ia, a), (ib, b)| {
            (&a.provider, &a.model, a.effective_from, ia).cmp(&(&b.provider, &b.model, b.effective_from, ib))
        });
        let insertion: Vec<usize> = seq.iter().map(|(i, _)| *i).collect();
        let entries: Vec<PriceEntry> = seq.into_iter().map(|(_, e)| e).collect();

        // A repeated (provider, model, date) is an error; in lenient mode the
        // first one (in sorted order: the earliest inserted) is kept.
        let mut kept: Vec<PriceEntry> = Vec::with_capacity(entries.len());
        let mut kept_insertion: Vec<usize> = Vec::with_capacity(entries.len());
        for (e, ins) in entries.into_iter().zip(insertion) {
            if let Some(last) = kept.last() {
                if last.provider == e.provider && last.model == e.model && last.effective_from == e.effective_from {
                    if strict {
                        return Err(CatalogError::Duplicate { entry: e.label() });
                    }
                    continue;
                }
            }
            kept.push(e);
            kept_insertion.push(ins);
        }
        let entries = kept;
        let insertion = kept_insertion;

        let mut groups: HashMap<(String, String), Vec<usize>> = HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            groups.entry((e.provider.clone(), e.model.clone())).or_default().push(i);
        }

        // Aliases first, then model names, so a model's own name always wins;
        // within each pass, later-inserted entries win in lenient mode.
        let mut by_insertion: Vec<usize> = (0..entries.len()).collect();
        by_insertion.sort_by_key(|&i| insertion[i]);
        let mut names: HashMap<(String, String), String> = HashMap::new();
        for pass_aliases in [true, false] {
            for &i in &by_insertion {
                let e = &entries[i];
                let list: Vec<&String> = if pass_aliases { e.aliases.iter().collect() } else { vec![&e.model] };
                for n in list {
                    let k = (e.provider.clone(), n.to_ascii_lowercase());
                    if let Some(prev) = names.get(&k) {
                        if strict && prev != &e.model {
                            return Err(CatalogError::NameConflict {
                                provider: e.provider.clone(),
                                name: n.clone(),
                                first: prev.clone(),
                                second: e.model.clone(),
                            });
                        }
                    }
                    names.insert(k, e.model.clone());
                }
            }
        }

        let mut providers_by_name: crate::FastMap<String, Vec<String>> = Default::default();
        for (p, n) in names.keys() {
            providers_by_name.entry(n.clone()).or_default().push(p.clone());
        }
        for v in providers_by_name.values_mut() {
            v.sort_by_key(|p| (names::fallback_rank(p), p.clone()));
        }

        // Nested maps so that a lookup borrows its keys instead of allocating.
        let mut nested_names: crate::FastMap<String, crate::FastMap<String, String>> = Default::default();
        for ((p, n), m) in names {
            nested_names.entry(p).or_default().insert(n, m);
        }
        let mut nested_groups: crate::FastMap<String, crate::FastMap<String, Vec<usize>>> = Default::default();
        for ((p, m), g) in groups {
            nested_groups.entry(p).or_default().insert(m, g);
        }
        Ok(Catalog { entries, names: nested_names, providers_by_name, groups: nested_groups, left_out: Vec::new() })
    }

    /// Every entry, sorted by provider, model and date.
    pub fn entries(&self) -> impl Iterator<Item = &PriceEntry> {
        self.entries.iter()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Models of an imported reference catalog that were left out for want of
    /// a usable price (an image-generation model whose only prices are zeros,
    /// which would otherwise price every image at $0). Only an import sets
    /// them; a catalog built any other way has none.
    pub fn left_out(&self) -> &[LeftOut] {
        &self.left_out
    }

    pub(crate) fn with_left_out(mut self, left_out: Vec<LeftOut>) -> Catalog {
        self.left_out = left_out;
        self
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry that prices `model` at `provider` at time `at`.
    ///
    /// The name is tried as given (model name or alias, case-insensitive),
    /// then in successively normalised forms: a `vendor/` path prefix
    /// removed, a Bedrock region (`us.`, `eu.`, `apac.`, `global.`, …) and
    /// vendor (`anthropic.`) prefix and `-v1:0` suffix removed, `@` → `-`,
    /// `-latest` removed, a date suffix (`-2024-08-06`, `-20250929`) removed.
    /// Each form must equal a catalog name exactly, so a model is never
    /// priced as a different one. `provider` (a provider kind or name;
    /// `google`, `aws`, `azure` are understood) narrows the search; when it
    /// has no entry for any form, every provider is searched, first-party
    /// providers first. Of a model's entries, the one with the latest
    /// `effective_from` not after `at` applies.
    pub fn lookup(&self, provider: Option<&str>, model: &str, at: DateTime<Utc>) -> Option<&PriceEntry> {
        let day = at.date_naive();
        let forms = names::candidates(model);
        if let Some(p) = provider {
            let p = names::canonical_provider(p);
            for f in &forms {
                if let Some(e) = self.in_force(&p, f, day) {
                    return Some(e);
                }
            }
        }
        for f in &forms {
            if let Some(providers) = self.providers_by_name.get(f) {
                for p in providers {
                    // A self-hosted or unknown provider's model is not priced at a reseller's rates.
                    if provider.is_some() && names::fallback_rank(p) >= names::RESELLER_RANK {
                        continue;
                    }
                    if let Some(e) = self.in_force(p, f, day) {
                        return Some(e);
                    }
                }
            }
        }
        None
    }

    fn in_force(&self, provider: &str, name: &str, day: NaiveDate) -> Option<&PriceEntry> {
        let model = self.names.get(provider)?.get(name)?;
        let group = self.groups.get(provider)?.get(model)?;
        group.iter().rev().map(|&i| &self.entries[i]).find(|e| e.effective_from.is_none_or(|d| d <= day))
    }

    /// All entries of one provider and model, oldest first.
    pub fn history(&self, provider: &str, model: &str) -> Vec<&PriceEntry> {
        let p = names::canonical_provider(provider);
        self.groups
            .get(&p)
            .and_then(|m| m.get(model))
            .map(|g| g.iter().map(|&i| &self.entries[i]).collect())
            .unwrap_or_default()
    }

    /// Writes the catalog in the `prices.toml` format.
    pub fn to_toml_string(&self) -> String {
        crate::raw::write_catalog(self)
    }
}

/// A model of a reference catalog that was not made an entry for want of a
/// usable price ([`Catalog::left_out`]), or that the generator left out
/// (`import::reference::Generated::left_out`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftOut {
    /// Canonical provider id.
    pub provider: String,
    /// The model name as the catalog would have named it.
    pub model: String,
    pub reason: String,
}
