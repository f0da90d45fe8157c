//! The built-in catalog generated from the two reference catalogs.
//!
//! The rule, applied per (provider, model), for the first-party providers in
//! [`FIRST_PARTY`] only (resellers and aggregators price by the provider's
//! name and the configuration's `[[prices]]`):
//!
//! 1. A model that genai-prices lists is priced by genai-prices, with its whole
//!    dated history: it is curated per provider from the pricing pages and
//!    keeps the dates prices changed. Where LiteLLM prices the same model
//!    differently, genai-prices is kept and the difference is a [`Conflict`]
//!    in the generated report.
//! 2. From LiteLLM's entry for the same model, only what genai-prices does not
//!    say is taken: the maximum output tokens always (a model limit, not a
//!    price); service tiers (batch, flex, priority), buckets, web search and
//!    per-unit prices genai-prices leaves out only when both agree on the
//!    input and output rates, so two price lists are never mixed in one entry.
//! 3. A model that only LiteLLM lists is priced by LiteLLM (but for its
//!    region and data-zone routing keys, see [`routing_only`]). A
//!    `QUALITY/WIDTH-x-HEIGHT/MODEL` per-image entry is left out when MODEL
//!    is billed by image tokens at the same provider: its per-image price is
//!    LiteLLM's estimate of those tokens, and a lookup of the sized name then
//!    finds MODEL's token prices. So is an image model that LiteLLM gives no
//!    usable price (see [`Catalog::left_out`]); both are listed in the report.
//! 4. Batch APIs cost half at OpenAI, Azure OpenAI, Anthropic, Gemini,
//!    Vertex AI and Bedrock: an entry with no batch tier gets a 0.5 multiplier.
//! 5. Web searches cost $10 per 1,000 at OpenAI, Azure OpenAI and Anthropic
//!    where the references give no price of their own.
//! 6. Hand-written entries (`catalog/prices.toml`) replace the generated
//!    ones of the same model ([`Catalog::overlaid`]); each says why.
//!
//! Every entry keeps its `source` (the price page the reference cites, or the
//! reference itself) and its `effective_from` where the reference dates it.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::LeftOut;
use crate::catalog::{Bucket, Catalog, PriceEntry, ServiceTier, ServiceTierPricing};

/// Providers whose own price lists are generated into the built-in catalog
/// (canonical ids).
pub const FIRST_PARTY: &[&str] = &[
    "openai",
    "azure_openai",
    "anthropic",
    "gemini",
    "vertex_ai",
    "bedrock",
    "mistral",
    "deepseek",
    "xai",
    "cohere",
    "groq",
    "together",
    "fireworks",
    "perplexity",
];

/// Web search at $10 per 1,000 calls: Anthropic's web search tool, OpenAI's
/// `web_search` tool (Azure's the same).
const TEN_DOLLAR_WEB_SEARCH: &[&str] = &["openai", "azure_openai", "anthropic"];

const HALF_PRICE_BATCH: &[&str] = &["openai", "azure_openai", "anthropic", "gemini", "vertex_ai", "bedrock"];

/// One rate on which the references disagree for a model both list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub provider: String,
    pub model: String,
    /// LiteLLM's name for the model, when it differs.
    pub litellm_model: String,
    /// Bucket name (`input`, `output`, `cache_read`, …).
    pub what: String,
    pub genai: Decimal,
    pub litellm: Decimal,
}

/// The generated catalog and what the generator decided.
pub struct Generated {
    pub catalog: Catalog,
    /// Differences between the references on models both list (genai-prices kept).
    pub conflicts: Vec<Conflict>,
    /// Models priced from genai-prices.
    pub from_genai: usize,
    /// Models priced from LiteLLM alone.
    pub from_litellm: usize,
    /// genai-prices models that took service tiers or buckets from LiteLLM.
    pub filled: usize,
    /// Reference models in scope that are not in the catalog for want of a
    /// usable price (or whose per-image price is an estimate), by provider and model.
    pub left_out: Vec<LeftOut>,
}

fn in_scope(provider: &str) -> bool {
    FIRST_PARTY.contains(&provider)
}

/// LiteLLM's keys for a deployment region or data zone (`eu/gpt-4o`,
/// `us-gov-west-1/anthropic.claude-…`): routing names of LiteLLM's own that
/// no provider reports and no client sends, so not catalog entries. An
/// image size (`1024-x-1024/gpt-image-1.5`) is not a region.
pub fn routing_only(model: &str) -> bool {
    let Some((first, _)) = model.split_once('/') else { return false };
    let aws_region = first.starts_with(|c: char| c.is_ascii_alphabetic())
        && first.contains('-')
        && first.ends_with(|c: char| c.is_ascii_digit());
    aws_region || matches!(first, "us" | "eu" | "global" | "apac" | "jp" | "au")
}

/// Applies the rule above to two imported references.
pub fn generate(genai: &Catalog, litellm: &Catalog) -> Generated {
    let latest = DateTime::<Utc>::MAX_UTC;
    // genai-prices, grouped by model (entries are sorted by provider, model, date).
    let mut groups: BTreeMap<(String, String), Vec<PriceEntry>> = BTreeMap::new();
    for e in genai.entries().filter(|e| in_scope(&e.provider)) {
        groups.entry((e.provider.clone(), e.model.clone())).or_default().push(e.clone());
    }
    let mut out: Vec<PriceEntry> = Vec::new();
    let mut conflicts = Vec::new();
    let mut filled = 0;
    for ((provider, model), mut history) in std::mem::take(&mut groups) {
        let theirs = litellm.lookup(Some(&provider), &model, latest).filter(|e| e.provider == provider);
        if let Some(theirs) = theirs {
            let newest = history.len() - 1;
            let mine = &history[newest];
            for bucket in Bucket::ALL {
                if let (Some(a), Some(b)) = (mine.rates.explicit(bucket), theirs.rates.explicit(bucket)) {
                    if a != b {
                        conflicts.push(Conflict {
                            provider: provider.clone(),
                            model: model.clone(),
                            litellm_model: theirs.model.clone(),
                            what: bucket.name().to_owned(),
                            genai: a,
                            litellm: b,
                        });
                    }
                }
            }
            let agree = mine.rates.input == theirs.rates.input && mine.rates.output == theirs.rates.output;
            for e in &mut history {
                e.max_output_tokens = e.max_output_tokens.or(theirs.max_output_tokens);
                e.context_window = e.context_window.or(theirs.context_window);
            }
            if agree && fill_from(&mut history[newest], theirs) {
                filled += 1;
            }
        }
        out.extend(history);
    }
    let from_genai = out.iter().map(|e| (&e.provider, &e.model)).collect::<HashSet<_>>().len();

    // LiteLLM's models that genai-prices does not list (under any of its names).
    let genai_scope = Catalog::from_entries_lenient(out.clone());
    let mut from_litellm = HashSet::new();
    let mut left_out: Vec<LeftOut> = litellm
        .left_out()
        .iter()
        .filter(|l| in_scope(&l.provider) && !routing_only(&l.model))
        // A name genai-prices prices (or a form of it) is not missing.
        .filter(|l| genai_scope.lookup(Some(&l.provider), &l.model, latest).is_none_or(|g| g.provider != l.provider))
        .cloned()
        .collect();
    for e in litellm.entries().filter(|e| in_scope(&e.provider) && !routing_only(&e.model)) {
        let known = genai_scope.lookup(Some(&e.provider), &e.model, latest).is_some_and(|g| g.provider == e.provider);
        if !known && e.per_image.is_some() {
            let token_billed = sized_image_model(&e.model).and_then(|base| {
                [&genai_scope, litellm].into_iter().find_map(|c| {
                    c.lookup(Some(&e.provider), base, latest)
                        .filter(|b| b.provider == e.provider && b.model != e.model && b.per_image.is_none())
                        .filter(|b| b.rates.output_image.is_some() || b.rates.input_image.is_some())
                        .map(|b| b.model.clone())
                })
            });
            if let Some(base) = token_billed {
                left_out.push(LeftOut {
                    provider: e.provider.clone(),
                    model: e.model.clone(),
                    reason: format!("per-image estimate of {base}, which is billed by image tokens (priced as {base})"),
                });
                continue;
            }
        }
        if !known {
            from_litellm.insert((e.provider.clone(), e.model.clone()));
            let mut e = e.clone();
            if e.source.is_none() {
                e.source = Some("LiteLLM model price map".to_owned());
            }
            out.push(e);
        }
    }
    for e in &mut out {
        if e.web_search_per_1k.is_none() && TEN_DOLLAR_WEB_SEARCH.contains(&e.provider.as_str()) {
            e.web_search_per_1k = Some(Decimal::from(10));
        }
        if e.batch.is_none() && HALF_PRICE_BATCH.contains(&e.provider.as_str()) {
            e.batch = Some(ServiceTierPricing {
                multiplier: Some(Decimal::new(5, 1)),
                rates: None,
                long_context: Vec::new(),
            });
        }
    }
    conflicts.sort_by(|a, b| (&a.provider, &a.model, &a.what).cmp(&(&b.provider, &b.model, &b.what)));
    left_out.sort_by(|a, b| (&a.provider, &a.model).cmp(&(&b.provider, &b.model)));
    left_out.dedup_by(|a, b| a.provider == b.provider && a.model == b.model);
    Generated {
        catalog: Catalog::from_entries_lenient(out),
        conflicts,
        from_genai,
        from_litellm: from_litellm.len(),
        filled,
        left_out,
    }
}

/// MODEL of a `QUALITY/WIDTH-x-HEIGHT/MODEL` or `WIDTH-x-HEIGHT/MODEL` name.
fn sized_image_model(name: &str) -> Option<&str> {
    let is_size = |s: &str| {
        s.split_once("-x-").is_some_and(|(w, h)| {
            !w.is_empty() && !h.is_empty() && w.bytes().chain(h.bytes()).all(|b| b.is_ascii_digit())
        })
    };
    let parts: Vec<&str> = name.split('/').collect();
    match parts.as_slice() {
        [size, model] | [_, size, model] if is_size(size) => Some(model),
        _ => None,
    }
}

/// Takes from `theirs` what `mine` does not price; says whether it took any.
fn fill_from(mine: &mut PriceEntry, theirs: &PriceEntry) -> bool {
    let mut took = false;
    for tier in [ServiceTier::Batch, ServiceTier::Flex, ServiceTier::Priority] {
        let slot = match tier {
            ServiceTier::Batch => &mut mine.batch,
            ServiceTier::Flex => &mut mine.flex,
            ServiceTier::Priority => &mut mine.priority,
            ServiceTier::Standard => continue,
        };
        if slot.is_none() {
            if let Some(t) = theirs.service_tier(tier) {
                *slot = Some(t.clone());
                took = true;
            }
        }
    }
    for (slot, theirs) in [
        (&mut mine.web_search_per_1k, theirs.web_search_per_1k),
        (&mut mine.per_image, theirs.per_image),
        (&mut mine.per_audio_second, theirs.per_audio_second),
        (&mut mine.per_character, theirs.per_character),
    ] {
        if slot.is_none() && theirs.is_some() {
            *slot = theirs;
            took = true;
        }
    }
    let r = &mut mine.rates;
    for (slot, theirs) in [
        (&mut r.cache_read, theirs.rates.cache_read),
        (&mut r.cache_write_5m, theirs.rates.cache_write_5m),
        (&mut r.cache_write_1h, theirs.rates.cache_write_1h),
        (&mut r.input_image, theirs.rates.input_image),
        (&mut r.input_audio, theirs.rates.input_audio),
        (&mut r.output_audio, theirs.rates.output_audio),
        (&mut r.reasoning, theirs.rates.reasoning),
        (&mut r.output_image, theirs.rates.output_image),
    ] {
        if slot.is_none() && theirs.is_some() {
            *slot = theirs;
            took = true;
        }
    }
    took
}

/// The generated report: what came from where, and every conflict.
pub fn report_markdown(g: &Generated, genai_label: &str, litellm_label: &str, overrides: &[String]) -> String {
    let mut s = String::new();
    s.push_str("# Generated price catalog: sources and conflicts\n\n");
    s.push_str("Written by `tollgate prices generate`; do not edit by hand.\n\n");
    s.push_str(&format!("- genai-prices: {genai_label}\n- LiteLLM: {litellm_label}\n"));
    s.push_str(&format!(
        "- {} entries for {} models: {} from genai-prices ({} completed from LiteLLM), {} from LiteLLM alone\n",
        g.catalog.len(),
        g.from_genai + g.from_litellm,
        g.from_genai,
        g.filled,
        g.from_litellm
    ));
    s.push_str(&format!("- {} conflicts (genai-prices kept, see the rule in `docs/pricing.md`)\n", g.conflicts.len()));
    s.push_str(&format!("- {} reference models left out (listed below)\n\n", g.left_out.len()));
    if !overrides.is_empty() {
        s.push_str("## Hand-written entries that differ from the references\n\n");
        for o in overrides {
            s.push_str(&format!("- {o}\n"));
        }
        s.push('\n');
    }
    if !g.left_out.is_empty() {
        s.push_str(
            "## Left out\n\nReference models that are not entries of the generated catalog, and why \
            (an entry in `prices.toml` or `[[prices]]` can price them).\n\n| provider | model | why |\n|---|---|---|\n",
        );
        for l in &g.left_out {
            s.push_str(&format!("| {} | {} | {} |\n", l.provider, l.model, l.reason));
        }
        s.push('\n');
    }
    s.push_str("## Conflicts\n\n| provider | model | LiteLLM name | rate | genai-prices (kept) | LiteLLM |\n|---|---|---|---|---|---|\n");
    for c in &g.conflicts {
        let other = if c.litellm_model == c.model { String::new() } else { c.litellm_model.clone() };
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            c.provider,
            c.model,
            other,
            c.what,
            c.genai.normalize(),
            c.litellm.normalize()
        ));
    }
    s
}
