//! A newer catalog applied over the one in force, keeping history.
//!
//! [`Catalog::with_update`] compares each model of the update with the price
//! the current catalog has for it today:
//!
//! - **added** (the current catalog has no price for it at that provider):
//!   its entries join as written, so an earlier request that went unpriced
//!   can be re-priced;
//! - **changed** (any rate, tier, long-context tier or request fee differs):
//!   the new price joins the model's history from the update's UTC day (or
//!   the update's own later `effective_from`), so rows before it keep the
//!   price they were charged and a re-price gives the same figures;
//! - **unchanged**: nothing happens.
//!
//! A changed model keeps what the update does not state: its service tiers,
//! long-context tiers, request fee and per-unit prices (an update that omits
//! them is taken as silent on them, not as removing them), and its limits.
//!
//! Nothing is ever removed: a model the update does not list keeps its price
//! (it is reported as "not in the update").

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use rust_decimal::Decimal;

use crate::catalog::{Bucket, Catalog, PriceEntry, ServiceTier};

/// One rate that an update changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateChange {
    /// `input`, `output`, `cache_read`, …, `batch.input`, `long_context>200000.output`, `request_fee`,
    /// `per_image`, `per_audio_second`, `per_character`.
    pub what: String,
    pub old: Option<Decimal>,
    pub new: Option<Decimal>,
}

/// A model whose price an update changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelChange {
    pub provider: String,
    pub model: String,
    /// The first day of the new price.
    pub effective_from: NaiveDate,
    pub rates: Vec<RateChange>,
}

/// What an update adds and changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogDiff {
    /// Models the current catalog had no price for.
    pub added: Vec<PriceEntry>,
    pub changed: Vec<ModelChange>,
    pub unchanged: usize,
    /// Models of the update's providers that the update does not list (kept as they are).
    pub not_in_update: Vec<(String, String)>,
}

impl CatalogDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty()
    }
}

impl Catalog {
    /// This catalog with `update` applied on `day` (see the module docs), and
    /// what changed.
    pub fn with_update(&self, update: &Catalog, day: NaiveDate) -> (Catalog, CatalogDiff) {
        let at = DateTime::<Utc>::from_naive_utc_and_offset(day.and_time(NaiveTime::MIN), Utc);
        let mut diff = CatalogDiff::default();
        let mut new_entries: Vec<PriceEntry> = Vec::new();
        let mut seen_models = std::collections::HashSet::new();
        for e in update.entries() {
            if !seen_models.insert((e.provider.clone(), e.model.clone())) {
                continue;
            }
            // The update's price in force on the day (or its first one, if all are later).
            let Some(theirs) = update
                .lookup(Some(&e.provider), &e.model, at)
                .filter(|t| t.provider == e.provider)
                .or_else(|| update.history(&e.provider, &e.model).into_iter().next())
            else {
                continue;
            };
            match self.lookup(Some(&e.provider), &e.model, at).filter(|c| c.provider == e.provider) {
                None => {
                    diff.added.push(theirs.clone());
                    new_entries.extend(update.history(&e.provider, &e.model).into_iter().cloned());
                }
                Some(current) => {
                    // What the update does not state (a service tier, a
                    // long-context tier, a request fee) is not taken as gone.
                    let mut stated = theirs.clone();
                    stated.batch = stated.batch.or_else(|| current.batch.clone());
                    stated.flex = stated.flex.or_else(|| current.flex.clone());
                    stated.priority = stated.priority.or_else(|| current.priority.clone());
                    if stated.long_context.is_empty() {
                        stated.long_context = current.long_context.clone();
                    }
                    stated.request_fee = stated.request_fee.or(current.request_fee);
                    stated.web_search_per_1k = stated.web_search_per_1k.or(current.web_search_per_1k);
                    stated.per_image = stated.per_image.or(current.per_image);
                    stated.per_audio_second = stated.per_audio_second.or(current.per_audio_second);
                    stated.per_character = stated.per_character.or(current.per_character);
                    let theirs = &stated;
                    let rates = rate_changes(current, theirs);
                    if rates.is_empty() {
                        diff.unchanged += 1;
                        continue;
                    }
                    let effective_from = theirs.effective_from.map_or(day, |d| d.max(day));
                    let mut entry = theirs.clone();
                    // Joins the history of the model as the current catalog names it.
                    entry.model = current.model.clone();
                    entry.aliases = current.aliases.clone();
                    for a in std::iter::once(&theirs.model).chain(&theirs.aliases) {
                        if !a.eq_ignore_ascii_case(&entry.model)
                            && !entry.aliases.iter().any(|x| x.eq_ignore_ascii_case(a))
                        {
                            entry.aliases.push(a.clone());
                        }
                    }
                    entry.effective_from = Some(effective_from);
                    entry.context_window = entry.context_window.or(current.context_window);
                    entry.max_output_tokens = entry.max_output_tokens.or(current.max_output_tokens);
                    diff.changed.push(ModelChange {
                        provider: current.provider.clone(),
                        model: current.model.clone(),
                        effective_from,
                        rates,
                    });
                    new_entries.push(entry);
                }
            }
        }
        let providers: std::collections::HashSet<&str> = update.entries().map(|e| e.provider.as_str()).collect();
        let mut listed = std::collections::HashSet::new();
        for e in self.entries().filter(|e| providers.contains(e.provider.as_str())) {
            if !listed.insert((e.provider.clone(), e.model.clone())) {
                continue;
            }
            if update.lookup(Some(&e.provider), &e.model, at).filter(|t| t.provider == e.provider).is_none()
                && update.history(&e.provider, &e.model).is_empty()
            {
                diff.not_in_update.push((e.provider.clone(), e.model.clone()));
            }
        }
        let overlay = Catalog::from_entries_lenient(new_entries);
        (self.merged(&overlay), diff)
    }
}

/// Every effective rate that differs between two entries.
fn rate_changes(old: &PriceEntry, new: &PriceEntry) -> Vec<RateChange> {
    let mut out = Vec::new();
    let mut push = |what: String, a: Option<Decimal>, b: Option<Decimal>| {
        if a.map(|d| d.normalize()) != b.map(|d| d.normalize()) {
            out.push(RateChange { what, old: a, new: b });
        }
    };
    // Input and output always; another bucket where either side states it
    // (its effective rate, fallback included, on both sides).
    for bucket in Bucket::ALL {
        let stated = matches!(bucket, Bucket::Input | Bucket::Output)
            || old.rates.explicit(bucket).is_some()
            || new.rates.explicit(bucket).is_some();
        if stated {
            push(bucket.name().to_owned(), Some(old.rates.rate(bucket)), Some(new.rates.rate(bucket)));
        }
    }
    for tier in [ServiceTier::Batch, ServiceTier::Flex, ServiceTier::Priority] {
        let rate = |e: &PriceEntry, b: Bucket| e.service_tier(tier).map(|_| e.rates_for(0, tier).rate(b));
        for b in [Bucket::Input, Bucket::Output] {
            push(format!("{}.{}", tier.as_str(), b.name()), rate(old, b), rate(new, b));
        }
    }
    let thresholds: std::collections::BTreeSet<u64> =
        old.long_context.iter().chain(&new.long_context).map(|t| t.above_input_tokens).collect();
    for th in thresholds {
        let rate = |e: &PriceEntry, b: Bucket| {
            e.long_context.iter().find(|t| t.above_input_tokens == th).map(|t| t.rates.rate(b))
        };
        for b in [Bucket::Input, Bucket::Output] {
            push(format!("long_context>{th}.{}", b.name()), rate(old, b), rate(new, b));
        }
    }
    push("request_fee".to_owned(), old.request_fee, new.request_fee);
    push("web_search_per_1k".to_owned(), old.web_search_per_1k, new.web_search_per_1k);
    push("per_image".to_owned(), old.per_image, new.per_image);
    push("per_audio_second".to_owned(), old.per_audio_second, new.per_audio_second);
    push("per_character".to_owned(), old.per_character, new.per_character);
    out
}
