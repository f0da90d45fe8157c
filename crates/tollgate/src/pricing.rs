//! Pricing at the gateway: find the price in force for the served model and
//! turn usage into money. The catalog and the arithmetic live in the
//! `tollgate-pricing` crate; this module only picks the lookup hints.

use chrono::{DateTime, Utc};
use tollgate_pricing::{Catalog, ServiceTier};
use tollgate_providers::{MediaRequest, ProviderKind};
use tollgate_units::{Money, Usage};

use crate::config::{kind_name, Provider};

/// A request's price, or the honest absence of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Priced {
    /// `None`: no price is known for this model (never silently $0).
    pub cost: Option<Money>,
    pub cache_savings: Money,
    /// The part of `cost` for tool calls (web search) and per-request fees.
    pub tool_cost: Money,
}

pub struct Pricing {
    catalog: Catalog,
}

impl Pricing {
    pub fn new(catalog: Catalog) -> Pricing {
        Pricing { catalog }
    }

    pub fn builtin() -> Pricing {
        Pricing::new(Catalog::builtin().clone())
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn price(&self, provider: &Provider, model: &str, usage: &Usage, at_ms: i64) -> Priced {
        self.price_tier(provider, model, usage, at_ms, ServiceTier::Standard)
    }

    /// The catalog has a price for `model` at `provider`.
    pub fn knows(&self, provider: &Provider, model: &str, at_ms: i64) -> bool {
        self.entry(provider, model, at_ms).is_some()
    }

    /// The most output tokens `model` at `provider` writes in one answer, when the catalog says.
    pub fn max_output_tokens(&self, provider: &Provider, model: &str, at_ms: i64) -> Option<u64> {
        self.entry(provider, model, at_ms).and_then(|e| e.max_output_tokens)
    }

    /// The catalog's name for `model` at `provider` (a dated snapshot such
    /// as `gpt-4o-mini-2024-07-18` → `gpt-4o-mini`); the name as given when
    /// the catalog does not know it.
    pub fn canonical_model(&self, provider: &Provider, model: &str, at_ms: i64) -> String {
        self.entry(provider, model, at_ms).map_or_else(|| model.to_owned(), |e| e.model.clone())
    }

    fn entry(&self, provider: &Provider, model: &str, at_ms: i64) -> Option<&tollgate_pricing::PriceEntry> {
        let at = DateTime::<Utc>::from_timestamp_millis(at_ms).unwrap_or_else(Utc::now);
        // OpenAI-compatible hosts are named after their vendor (mistral, deepseek…).
        let hint = match provider.kind {
            ProviderKind::OpenAiCompatible => provider.name.as_str(),
            kind => kind_name(kind),
        };
        self.catalog.lookup(Some(hint), model, at)
    }

    /// A request's price, media included: an image answer that reports only
    /// how many images it made is priced per image at its size and quality
    /// (the catalog's `QUALITY/W-x-H/MODEL`, then `W-x-H/MODEL` entries);
    /// one that reports image tokens is priced by its tokens.
    pub fn price_request(
        &self,
        provider: &Provider,
        model: &str,
        usage: &Usage,
        at_ms: i64,
        tier: ServiceTier,
        media: Option<&MediaRequest>,
    ) -> Priced {
        if let Some(m) = media {
            let by_tokens = usage.output_image > 0 || usage.input_image > 0;
            if usage.images > 0 && !by_tokens {
                for name in image_variants(model, m) {
                    if let Some(e) = self.entry(provider, &name, at_ms) {
                        return priced(e, usage, tier);
                    }
                }
            }
        }
        self.price_tier(provider, model, usage, at_ms, tier)
    }

    /// Whether `model` at `provider` is billed by the character (text to speech).
    pub fn bills_characters(&self, provider: &Provider, model: &str, at_ms: i64) -> bool {
        self.entry(provider, model, at_ms).is_some_and(|e| e.per_character.is_some())
    }

    /// The same at a service tier (batch results are priced at batch rates).
    pub fn price_tier(&self, provider: &Provider, model: &str, usage: &Usage, at_ms: i64, tier: ServiceTier) -> Priced {
        match self.entry(provider, model, at_ms) {
            Some(e) => priced(e, usage, tier),
            None => Priced { cost: None, cache_savings: Money::ZERO, tool_cost: Money::ZERO },
        }
    }
}

fn priced(e: &tollgate_pricing::PriceEntry, usage: &Usage, tier: ServiceTier) -> Priced {
    let c = tollgate_pricing::cost(e, usage, tier);
    Priced { cost: Some(c.total), cache_savings: c.cache_savings, tool_cost: c.parts.tools() }
}

/// The catalog names of a per-image price, most specific first:
/// `hd/1024-x-1792/dall-e-3`, then `1024-x-1792/dall-e-3`. Absent size and
/// quality are the API's defaults (1024x1024; `standard`); `auto` is priced
/// as the costliest (`high`, and the largest size is the estimator's to pick).
pub fn image_variants(model: &str, m: &MediaRequest) -> Vec<String> {
    let size = match m.size.as_deref() {
        None | Some("auto") => "1024x1024",
        Some(s) => s,
    };
    let size = size.to_ascii_lowercase().replace('x', "-x-");
    let quality = match m.quality.as_deref() {
        None => {
            if model.starts_with("gpt-image") {
                "high"
            } else {
                "standard"
            }
        }
        Some("auto") => "high",
        Some(q) => q,
    };
    vec![format!("{quality}/{size}/{model}"), format!("{size}/{model}")]
}

/// The tier a request is priced at: the one the provider says it served,
/// else the one the request asked for, else standard. (`auto` and `default`
/// are standard; `scale` is a commitment billed outside per-token prices.)
pub fn tier(served: Option<&str>, requested: Option<&str>) -> ServiceTier {
    fn parse(s: &str) -> Option<ServiceTier> {
        match s {
            "priority" => Some(ServiceTier::Priority),
            "flex" => Some(ServiceTier::Flex),
            "default" | "auto" | "standard" | "scale" => Some(ServiceTier::Standard),
            _ => None,
        }
    }
    served.and_then(parse).or_else(|| requested.and_then(parse)).unwrap_or(ServiceTier::Standard)
}

#[cfg(test)]
mod tier_tests {
    use super::*;

    #[test]
    fn the_served_tier_wins_then_the_requested_one() {
        assert_eq!(tier(Some("priority"), Some("auto")), ServiceTier::Priority);
        assert_eq!(tier(Some("default"), Some("priority")), ServiceTier::Standard, "asked priority, got default");
        assert_eq!(tier(None, Some("flex")), ServiceTier::Flex);
        assert_eq!(tier(None, None), ServiceTier::Standard);
        assert_eq!(tier(Some("unknown"), Some("nonsense")), ServiceTier::Standard);
    }
}

/// The prices in force at the gateway: the built-in catalog, the price
/// updates applied so far (in the store, oldest first), then the
/// configuration's `[[prices]]`. Swapped whole when an update arrives, so no
/// request sees half of one; a request reads one version for all its pricing.
pub struct Prices {
    current: arc_swap::ArcSwap<Pricing>,
    /// The configuration's `[[prices]]`, laid over everything else (replaced by a reload).
    config: arc_swap::ArcSwapOption<Catalog>,
    /// The newest update applied (0: none).
    applied: std::sync::atomic::AtomicI64,
}

/// A price update that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("price update #{id}: {message}")]
pub struct BadUpdate {
    pub id: i64,
    pub message: String,
}

impl Prices {
    pub fn new(config: Option<Catalog>) -> Prices {
        let p = Prices {
            current: arc_swap::ArcSwap::from_pointee(Pricing::builtin()),
            config: arc_swap::ArcSwapOption::from_pointee(config),
            applied: std::sync::atomic::AtomicI64::new(0),
        };
        if let Some(extra) = p.config.load().as_deref() {
            p.current.store(std::sync::Arc::new(Pricing::new(Catalog::builtin().merged(extra))));
        }
        p
    }

    /// The prices in force now.
    pub fn load(&self) -> arc_swap::Guard<std::sync::Arc<Pricing>> {
        self.current.load()
    }

    /// The newest update applied (0: none).
    pub fn version(&self) -> i64 {
        self.applied.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The built-in catalog with `updates` applied in order, each from its UTC day.
    pub fn base_with(updates: &[crate::store::PriceUpdate]) -> Result<Catalog, BadUpdate> {
        let mut catalog = Catalog::builtin().clone();
        for u in updates {
            let parsed =
                Catalog::from_toml_str(&u.catalog).map_err(|e| BadUpdate { id: u.id, message: e.to_string() })?;
            catalog = catalog.with_update(&parsed, day_of(u.applied_ms)).0;
        }
        Ok(catalog)
    }

    /// A reloaded configuration's `[[prices]]`, in force once `install` rebuilds.
    pub fn set_config(&self, config: Option<Catalog>) {
        self.config.store(config.map(std::sync::Arc::new));
    }

    /// Rebuilds from every update (all of them, oldest first) and swaps.
    pub fn install(&self, updates: &[crate::store::PriceUpdate]) -> Result<(), BadUpdate> {
        let base = Prices::base_with(updates)?;
        let catalog = match self.config.load().as_deref() {
            Some(extra) => base.merged(extra),
            None => base,
        };
        self.current.store(std::sync::Arc::new(Pricing::new(catalog)));
        let newest = updates.last().map_or(0, |u| u.id);
        self.applied.store(newest, std::sync::atomic::Ordering::Release);
        Ok(())
    }
}

/// The UTC day of a time in milliseconds.
pub fn day_of(ms: i64) -> chrono::NaiveDate {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_else(Utc::now).date_naive()
}

/// Whether our price and the one a provider reported for the same request
/// disagree: by more than 1 % of the larger, and by more than 1,000
/// nano-dollars (rounding at the provider's side is not a disagreement).
pub fn disagrees(ours: Money, theirs: Money) -> bool {
    let diff = (i128::from(ours.nanos()) - i128::from(theirs.nanos())).abs();
    let larger = i128::from(ours.nanos().abs().max(theirs.nanos().abs()));
    diff > 1_000 && diff * 100 > larger
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disagreement_is_over_one_percent_and_over_a_microdollar() {
        let m = Money::from_nanos;
        assert!(!disagrees(m(1_000_000), m(1_000_000)));
        assert!(!disagrees(m(1_000_000), m(1_009_000)), "0.9 %");
        assert!(disagrees(m(1_000_000), m(1_020_000)), "2 %");
        assert!(!disagrees(m(10_000), m(10_900)), "9 % but 900 nanos");
        assert!(disagrees(m(10_000), m(11_001)), "over 1,000 nanos and 1 %");
        assert!(disagrees(m(0), m(5_000)), "we say free, they charged");
    }
}
