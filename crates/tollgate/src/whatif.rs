//! What-if replay over ledger history: re-price past requests under a
//! scenario (a model mapped to another, a candidate set of routing rules,
//! tagged traffic moved to batch prices, an exact response cache) and add up
//! the cost before and after, grouped by any dimensions.
//!
//! Pure and streaming: a [`Replay`] is fed ledger rows one at a time (oldest
//! first) and keeps only running totals per group, the price lookups it has
//! already made and, for the exact-cache estimate, one entry per distinct
//! cache key. The caller reads the rows from the store.
//!
//! # Scenario
//!
//! ```text
//! gpt-4o=gpt-4o-mini        Scenario::parse_map    rows served by (or requested as) gpt-4o → gpt-4o-mini
//! team=growth               Scenario::parse_batch  rows whose dimension team is growth → batch prices
//! 1h (or none)              Scenario::parse_cache  repeated prompts within the TTL → exact-cache hits ($0)
//! [[routing_rules]] file    Scenario::rules        the candidate rules, evaluated on each row
//! ```
//!
//! Changes compose per row: the model changes first (mappings and rule sets,
//! in the order given, each seeing the model the previous one chose), then
//! batch prices, then the exact cache.
//!
//! # How a row is re-priced
//!
//! - `before` is the row's recorded cost (an unpriced row counts as $0).
//! - A row no change applies to keeps its recorded cost exactly: it is never
//!   re-priced, so a catalog change since cannot show as a saving.
//! - A row a change applies to is priced from its recorded token counts with
//!   the catalog's prices in force on the row's own UTC day: the target
//!   model's price for a mapped or rerouted row (at the row's provider; the
//!   catalog's first-party fallback finds another vendor's model), the
//!   model's batch rates for a row moved to batch, $0 for an exact-cache hit.
//! - Tokens are kept as recorded when a row moves to another model: the other
//!   model's tokenizer and answer length would change them; the replay cannot
//!   know how.
//! - The ledger does not record the service tier. A moved row keeps the tier
//!   (standard, priority or flex) whose price of its own model reproduces its
//!   recorded cost; rows of the batch endpoints stay at batch rates.
//! - Rows the scenario cannot price keep their recorded cost and are counted
//!   in [`WhatIfReport::not_repriced`]: an unpriced row, a target model the
//!   catalog does not know, a model without batch rates, a rule's `route_to`
//!   that nothing serves.
//! - Error rows (status ≥ 400), response-cache hits (already $0) and the
//!   batch API's management calls are never changed.
//!
//! # Routing rules
//!
//! A `[[routing_rules]]` rule tests the requested model, a scope (key and
//! tags) and, optionally, the prompt's size, whether it carries tools, and
//! its complexity. The ledger has the first two but not the prompt, so a rule
//! that tests `max_prompt_bytes`, `has_tools` or `complexity` cannot be
//! decided from a row. Rules are matched as the gateway matches them (first
//! match wins); a row whose first candidate rule is such a rule is counted in
//! [`WhatIfReport::undecided`] and keeps its recorded cost. A rule's
//! `route_to` is resolved through the configuration's routes to the first
//! target (provider and model), as the gateway would route it.
//! Rows the candidate rules do not match keep their model: the replay does
//! not undo the rules that were in force when they ran.
//!
//! # Exact cache
//!
//! The ledger keeps no hash of a whole request: its only prompt hash is
//! `prefix_hash`, the hash of the stable prefix (system prompt or
//! instructions, and tools). The estimate treats a row as a repeat when an
//! earlier row of the same tenant (key, or team with `per_team`), model
//! (after the scenario's model changes) and endpoint carried the same
//! `prefix_hash`, within the TTL of the first one (as the cache expires an
//! entry from when it was filed). Two requests with one system prompt and
//! different questions share a prefix, so among rows with a prefix this
//! overstates hits; rows without a prefix are never hits. Only rows the
//! gateway's cache did not look up (`cache = off`) can become hits: a row it
//! looked up and missed was not a repeat.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use tollgate_pricing::{Catalog, PriceEntry, ServiceTier};
use tollgate_providers::ProviderKind;
use tollgate_units::Money;

use crate::budget::Facts;
use crate::config::Config;
use crate::config::Provider;
use crate::config::RoutingRule;
use crate::pricing::Pricing;
use crate::record::CacheOutcome;
use crate::record::Endpoint;
use crate::record::LedgerRow;

const DAY_MS: i64 = 86_400_000;

/// One change a scenario makes to history.
#[derive(Debug, Clone)]
pub enum Change {
    /// Rows served by `from` (or requested as `from`; `*` globs) are priced as `to`.
    MapModel { from: String, to: String },
    /// Rows whose dimension `dim` (team, feature, env, any tag; see
    /// [`dimension`]) equals `value` are priced at their model's batch rates.
    Batch { dim: String, value: String },
    /// Repeated prompts become $0 exact-cache hits (see the module's notes).
    /// `ttl_ms`: how long an answer stays in the cache (`None`: forever).
    /// `per_team`: answers are shared within a team (`[cache] per_team`),
    /// else within a key.
    ExactCache { ttl_ms: Option<i64>, per_team: bool },
    /// Candidate cost-aware routing rules ([`Scenario::rules`]).
    Rules(RuleSet),
}

impl Change {
    /// One line saying what the change does, for reports.
    pub fn describe(&self) -> String {
        match self {
            Change::MapModel { from, to } => format!("map {from} → {to}"),
            Change::Batch { dim, value } => format!("batch prices where {dim}={value}"),
            Change::ExactCache { ttl_ms, per_team } => {
                let ttl = match ttl_ms {
                    Some(ms) => format!("TTL {} s", ms / 1000),
                    None => "no TTL".to_owned(),
                };
                let shared = if *per_team { "per team" } else { "per key" };
                format!("exact cache ({ttl}, {shared})")
            }
            Change::Rules(set) => {
                let names: Vec<&str> = set.rules.iter().map(|r| r.name.as_str()).collect();
                format!("routing rules: {}", names.join(", "))
            }
        }
    }
}

/// Where a routing rule's `route_to` goes: the first target of its route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleTarget {
    /// The configured provider's name.
    pub provider: String,
    /// The catalog lookup hint for that provider (its kind, or its name for
    /// an OpenAI-compatible host), as the gateway prices it.
    pub hint: String,
    pub model: String,
}

/// Candidate routing rules with their targets resolved.
#[derive(Debug, Clone)]
pub struct RuleSet {
    rules: Vec<RoutingRule>,
    /// One per rule; `None`: nothing serves its `route_to`.
    targets: Vec<Option<RuleTarget>>,
}

/// What a rule set does with one row.
enum Decision<'s> {
    NoRule,
    /// The first candidate rule tests what the ledger does not record.
    Undecided,
    Route(Option<&'s RuleTarget>),
}

impl RuleSet {
    /// The rules of `config`, each `route_to` resolved through its routes
    /// (`[[models]]`, then implicit routes) to the first target.
    pub fn from_config(config: &Config) -> RuleSet {
        let targets = config
            .routing_rules
            .iter()
            .map(|r| {
                let plan = crate::routing::plan(config, &r.route_to, &|_, _| true);
                let first = plan.into_iter().next()?;
                let p = config.providers.get(first.provider)?;
                Some(RuleTarget { provider: p.name.clone(), hint: hint_of(p).to_owned(), model: first.model })
            })
            .collect();
        RuleSet { rules: config.routing_rules.clone(), targets }
    }

    pub fn rules(&self) -> &[RoutingRule] {
        &self.rules
    }

    /// The target of `rule` (its index), when something serves its `route_to`.
    pub fn target(&self, rule: usize) -> Option<&RuleTarget> {
        self.targets.get(rule).and_then(Option::as_ref)
    }

    /// The gateway's `routing::rule_for` over what a ledger row records: the
    /// requested model, the key and the tags (the provider is not known yet
    /// when rules run). A matching rule that also tests the prompt's size,
    /// tools or complexity leaves the row undecided.
    fn decide(&self, row: &LedgerRow, requested: &str) -> Decision<'_> {
        let facts = Facts {
            key_id: row.key_id.as_deref().unwrap_or(""),
            model: requested,
            provider: None,
            attribution: &row.attribution,
        };
        for (i, r) in self.rules.iter().enumerate() {
            let model_ok = r.models.is_empty() || r.models.iter().any(|m| crate::pattern::glob_match(m, requested));
            if !model_ok || r.route_to == requested || !r.scope.as_ref().is_none_or(|s| s.matches(&facts)) {
                continue;
            }
            if r.max_prompt_bytes.is_some() || r.has_tools.is_some() || r.complex.is_some() {
                return Decision::Undecided;
            }
            return Decision::Route(self.target(i));
        }
        Decision::NoRule
    }
}

/// What to replay: changes applied together to every row.
#[derive(Debug, Clone, Default)]
pub struct Scenario {
    pub changes: Vec<Change>,
}

impl Scenario {
    /// `gpt-4o=gpt-4o-mini`: rows served by or requested as the left model
    /// (`*` globs allowed) are priced as the right one.
    pub fn parse_map(s: &str) -> Result<Change, String> {
        let bad = || format!("model mapping {s:?} is not FROM=TO (e.g. gpt-4o=gpt-4o-mini)");
        let (from, to) = s.split_once('=').ok_or_else(bad)?;
        let (from, to) = (from.trim(), to.trim());
        if from.is_empty() || to.is_empty() {
            return Err(bad());
        }
        if to.contains('*') {
            return Err(format!("model mapping {s:?}: the target must be one model, not a pattern"));
        }
        if from == to {
            return Err(format!("model mapping {s:?} maps a model to itself"));
        }
        Ok(Change::MapModel { from: from.to_owned(), to: to.to_owned() })
    }

    /// `team=growth`: rows whose dimension (team, feature, env, any tag…) has
    /// that value are priced at their model's batch rates.
    pub fn parse_batch(s: &str) -> Result<Change, String> {
        let bad = || format!("batch selector {s:?} is not DIMENSION=VALUE (e.g. team=growth)");
        let (dim, value) = s.split_once('=').ok_or_else(bad)?;
        let (dim, value) = (dim.trim().to_ascii_lowercase(), value.trim());
        let dim_ok = !dim.is_empty()
            && dim.len() <= 64
            && dim.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b));
        if !dim_ok || value.is_empty() {
            return Err(bad());
        }
        Ok(Change::Batch { dim, value: value.to_owned() })
    }

    /// An exact cache keeping answers for `ttl` (`30m`, `1h`, `7d`; `None` or
    /// `none`: forever), shared per key.
    pub fn parse_cache(ttl: Option<&str>) -> Result<Change, String> {
        let ttl_ms = match ttl.map(str::trim) {
            None | Some("none") => None,
            Some(t) => {
                let d = crate::time::parse_duration(t)
                    .ok_or_else(|| format!("cache TTL {t:?} is not a duration like 30m, 1h or 7d"))?;
                let ms = d.num_milliseconds();
                if ms <= 0 {
                    return Err(format!("cache TTL {t:?} must be longer than zero"));
                }
                Some(ms)
            }
        };
        Ok(Change::ExactCache { ttl_ms, per_team: false })
    }

    /// The `[[routing_rules]]` of a configuration (a file may hold only them
    /// and the providers and models they route to) as a change.
    pub fn rules(config: &Config) -> Result<Change, String> {
        if config.routing_rules.is_empty() {
            return Err(format!("{} has no [[routing_rules]]", config.source));
        }
        Ok(Change::Rules(RuleSet::from_config(config)))
    }

    /// One line per change.
    pub fn describe(&self) -> Vec<String> {
        self.changes.iter().map(Change::describe).collect()
    }
}

/// One group's totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhatIfGroup {
    /// The grouped dimensions' values, in `by` order (`None`: not set).
    pub dims: Vec<Option<String>>,
    pub requests: u64,
    pub before: Money,
    pub after: Money,
}

impl WhatIfGroup {
    /// `before − after` (negative when the scenario costs more).
    pub fn savings(&self) -> Money {
        self.before.saturating_sub(self.after)
    }
}

/// A replay's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhatIfReport {
    /// Sorted by savings, largest first (then by dimensions).
    pub rows: Vec<WhatIfGroup>,
    pub before: Money,
    pub after: Money,
    pub rows_seen: u64,
    /// Rows a change applied to, priced again (exact-cache hits included).
    pub repriced: u64,
    /// Rows no change applies to: their recorded cost, unchanged.
    pub unchanged: u64,
    /// Rows a change applies to that could not be priced: recorded cost kept.
    pub not_repriced: u64,
    /// Rows a candidate routing rule might move, but whether it would
    /// depends on the prompt, which the ledger does not keep: recorded cost kept.
    pub undecided: u64,
    /// Rows that became exact-cache hits (counted in `repriced` too).
    pub cache_hits: u64,
    /// [`Scenario::describe`].
    pub scenario: Vec<String>,
    /// The assumptions the figures rest on, and what could not be replayed.
    pub notes: Vec<String>,
}

impl WhatIfReport {
    /// `before − after` over every row.
    pub fn savings(&self) -> Money {
        self.before.saturating_sub(self.after)
    }
}

/// What a scenario does to one row.
enum Outcome {
    Unchanged,
    Repriced(Money),
    NotRepriced,
    Undecided,
}

/// Catalog lookups, remembered by (provider hint, model, UTC day): the
/// catalog's lookup depends on nothing else, and a window of history has
/// few distinct ones.
struct PriceMemo<'a> {
    catalog: &'a Catalog,
    ids: crate::FastMap<String, usize>,
    memo: crate::FastMap<(usize, usize, i64), Option<&'a PriceEntry>>,
}

impl<'a> PriceMemo<'a> {
    fn id(&mut self, s: &str) -> usize {
        if let Some(&i) = self.ids.get(s) {
            return i;
        }
        let i = self.ids.len();
        self.ids.insert(s.to_owned(), i);
        i
    }

    fn entry(&mut self, hint: Option<&str>, model: &str, at_ms: i64) -> Option<&'a PriceEntry> {
        let h = match hint {
            Some(h) => self.id(h),
            None => usize::MAX,
        };
        let m = self.id(model);
        let catalog = self.catalog;
        *self.memo.entry((h, m, at_ms.div_euclid(DAY_MS))).or_insert_with(|| {
            DateTime::<Utc>::from_timestamp_millis(at_ms).and_then(|at| catalog.lookup(hint, model, at))
        })
    }
}

/// A replay in progress: feed it rows, then [`Replay::finish`].
pub struct Replay<'a> {
    scenario: &'a Scenario,
    prices: PriceMemo<'a>,
    by: Vec<String>,
    /// Provider name → catalog hint ([`Replay::with_providers`]).
    hints: crate::FastMap<String, String>,
    /// The scenario's exact cache: (TTL, per team).
    cache: Option<(Option<i64>, bool)>,
    /// Exact-cache key → when its answer was filed.
    filed: crate::FastMap<String, i64>,
    /// Encoded group dimensions → index in `groups`.
    index: crate::FastMap<String, usize>,
    groups: Vec<WhatIfGroup>,
    /// Scratch space for keys (no allocation per row).
    buf: String,
    last_ms: i64,
    out_of_order: u64,
    tier_unmatched: u64,
    before: Money,
    after: Money,
    rows_seen: u64,
    repriced: u64,
    unchanged: u64,
    not_repriced: u64,
    undecided: u64,
    cache_hits: u64,
}

impl<'a> Replay<'a> {
    /// A replay of `scenario` priced with `pricing`, grouped by the
    /// dimensions `by` (names as the analytics API takes them: `team`,
    /// `feature`, `model`, `provider`, `env`, any tag; see [`dimension`]).
    pub fn new(pricing: &'a Pricing, scenario: &'a Scenario, by: &[String]) -> Replay<'a> {
        let cache = scenario.changes.iter().find_map(|c| match c {
            Change::ExactCache { ttl_ms, per_team } => Some((*ttl_ms, *per_team)),
            _ => None,
        });
        Replay {
            scenario,
            prices: PriceMemo { catalog: pricing.catalog(), ids: Default::default(), memo: Default::default() },
            by: by.to_vec(),
            hints: Default::default(),
            cache,
            filed: Default::default(),
            index: Default::default(),
            groups: Vec::new(),
            buf: String::new(),
            last_ms: i64::MIN,
            out_of_order: 0,
            tier_unmatched: 0,
            before: Money::ZERO,
            after: Money::ZERO,
            rows_seen: 0,
            repriced: 0,
            unchanged: 0,
            not_repriced: 0,
            undecided: 0,
            cache_hits: 0,
        }
    }

    /// Looks prices up as the gateway does for the configured providers
    /// (an OpenAI-compatible host by its name, the others by their kind).
    /// Without it a row's provider name is the lookup hint, which is the
    /// same for providers named after their kind (`openai`, `anthropic`…).
    pub fn with_providers(mut self, providers: &[Provider]) -> Replay<'a> {
        for p in providers {
            self.hints.insert(p.name.clone(), hint_of(p).to_owned());
        }
        self
    }

    /// Adds one ledger row (oldest first: the exact-cache estimate depends on order).
    pub fn feed(&mut self, row: &LedgerRow) {
        self.rows_seen += 1;
        if row.time_ms < self.last_ms {
            self.out_of_order += 1;
        } else {
            self.last_ms = row.time_ms;
        }
        let before = row.cost.unwrap_or(Money::ZERO);
        let after = match self.outcome(row) {
            Outcome::Unchanged => {
                self.unchanged += 1;
                before
            }
            Outcome::Repriced(m) => {
                self.repriced += 1;
                m
            }
            Outcome::NotRepriced => {
                self.not_repriced += 1;
                before
            }
            Outcome::Undecided => {
                self.undecided += 1;
                before
            }
        };
        self.before += before;
        self.after += after;
        self.add_to_group(row, before, after);
    }

    /// The report: groups sorted by savings, totals, counts and notes.
    pub fn finish(self) -> WhatIfReport {
        let mut rows = self.groups;
        rows.sort_by(|a, b| b.savings().cmp(&a.savings()).then_with(|| a.dims.cmp(&b.dims)));
        let has = |f: fn(&Change) -> bool| self.scenario.changes.iter().any(f);
        let mut notes =
            vec!["before is each row's recorded cost; a row the scenario changes is priced again from its recorded \
             token counts at the catalog's prices in force on its own UTC day; every other row keeps its \
             recorded cost"
                .to_owned()];
        if has(|c| matches!(c, Change::MapModel { .. } | Change::Rules(_))) {
            notes.push(
                "token counts are kept as recorded when a row moves to another model (its tokenizer and \
                 answer length would differ)"
                    .to_owned(),
            );
            notes.push(
                "the ledger does not record the service tier: a moved row keeps the tier (standard, priority \
                 or flex) whose price of its own model gives its recorded cost; batch endpoints stay at batch \
                 rates"
                    .to_owned(),
            );
        }
        if self.tier_unmatched > 0 {
            notes.push(format!(
                "{} moved row(s) have a recorded cost that no tier of their own model's catalog price gives \
                 (the catalog changed since, or a price from the configuration or per image): priced at \
                 standard rates",
                self.tier_unmatched
            ));
        }
        if has(|c| matches!(c, Change::Rules(_))) {
            notes.push(
                "routing rules are matched on each row's requested model, key and tags; a rule's route_to is \
                 priced at the first target of its route"
                    .to_owned(),
            );
        }
        if self.undecided > 0 {
            notes.push(format!(
                "{} row(s) match a routing rule that tests the prompt's size, tools or complexity, which the \
                 ledger does not record: kept at their recorded cost",
                self.undecided
            ));
        }
        if self.cache.is_some() {
            notes.push(
                "exact-cache hits are estimated from the ledger's prefix_hash, which covers only the system \
                 prompt, instructions and tools (the ledger keeps no hash of the whole request): this \
                 overstates hits among rows with such a prefix, and rows without one are never hits; only \
                 rows the gateway's cache did not look up can become hits"
                    .to_owned(),
            );
            if self.out_of_order > 0 {
                notes.push(format!(
                    "{} row(s) arrived out of time order: the exact-cache estimate needs rows oldest first",
                    self.out_of_order
                ));
            }
        }
        if self.not_repriced > 0 {
            notes.push(format!(
                "{} row(s) the scenario applies to could not be priced (unpriced row, no price known for the \
                 target model, no batch price, or a route_to nothing serves): kept at their recorded cost",
                self.not_repriced
            ));
        }
        WhatIfReport {
            rows,
            before: self.before,
            after: self.after,
            rows_seen: self.rows_seen,
            repriced: self.repriced,
            unchanged: self.unchanged,
            not_repriced: self.not_repriced,
            undecided: self.undecided,
            cache_hits: self.cache_hits,
            scenario: self.scenario.describe(),
            notes,
        }
    }

    fn outcome(&mut self, row: &LedgerRow) -> Outcome {
        if row.status >= 400 || row.cache == CacheOutcome::Hit || row.endpoint == Endpoint::BatchApi {
            return Outcome::Unchanged;
        }
        let scenario = self.scenario;
        let served = row.model.as_deref().or(row.requested_model.as_deref()).unwrap_or("");
        let requested = row.requested_model.as_deref().unwrap_or(served);
        let own_hint: Option<&str> = row.provider.as_deref().map(|p| self.hints.get(p).map_or(p, String::as_str));
        let recorded_batch = is_batch_endpoint(row.endpoint);

        // Model changes, in order; then batch prices.
        let mut hint = own_hint;
        let mut model = served;
        let mut moved = false;
        let mut lost = false;
        let mut batch = false;
        for c in &scenario.changes {
            match c {
                Change::MapModel { from, to } => {
                    let applies = if moved {
                        name_matches(from, model)
                    } else {
                        name_matches(from, served) || name_matches(from, requested)
                    };
                    if applies && to.as_str() != model {
                        model = to.as_str();
                        moved = true;
                    }
                }
                Change::Rules(set) => match set.decide(row, requested) {
                    Decision::NoRule => {}
                    Decision::Undecided => return Outcome::Undecided,
                    Decision::Route(Some(t)) => {
                        hint = Some(t.hint.as_str());
                        model = t.model.as_str();
                        moved = true;
                        lost = false;
                    }
                    Decision::Route(None) => {
                        moved = true;
                        lost = true;
                    }
                },
                Change::Batch { dim, value } => {
                    if !recorded_batch && dimension(row, dim).as_deref() == Some(value.as_str()) {
                        batch = true;
                    }
                }
                Change::ExactCache { .. } => {}
            }
        }

        // Then the exact cache, keyed by the model the row would be sent to.
        let mut hit = false;
        if let (Some((ttl, per_team)), Some(prefix)) = (self.cache, row.prefix_hash.as_deref()) {
            if row.cache == CacheOutcome::Off && !lost {
                self.buf.clear();
                match (per_team, row.attribution.tag("team")) {
                    (true, Some(team)) => {
                        self.buf.push_str("team");
                        push_part(&mut self.buf, team);
                    }
                    _ => {
                        self.buf.push_str("key");
                        push_part(&mut self.buf, row.key_id.as_deref().unwrap_or(""));
                    }
                }
                push_part(&mut self.buf, model);
                push_part(&mut self.buf, row.endpoint.as_str());
                push_part(&mut self.buf, prefix);
                hit = match self.filed.get_mut(self.buf.as_str()) {
                    Some(at) => {
                        let filed = *at;
                        let fresh = row.time_ms >= filed && ttl.is_none_or(|t| row.time_ms.saturating_sub(filed) <= t);
                        if !fresh && row.time_ms >= filed {
                            // Expired: this request fills the cache again.
                            *at = row.time_ms;
                        }
                        fresh
                    }
                    None => {
                        self.filed.insert(self.buf.clone(), row.time_ms);
                        false
                    }
                };
            }
        }

        if !(moved || batch || hit) {
            return Outcome::Unchanged;
        }
        if row.cost.is_none() || lost {
            return Outcome::NotRepriced;
        }
        if hit {
            self.cache_hits += 1;
            return Outcome::Repriced(Money::ZERO);
        }
        let tier = if batch || recorded_batch {
            ServiceTier::Batch
        } else {
            recorded_tier(&mut self.prices, row, own_hint, served, &mut self.tier_unmatched)
        };
        let Some(entry) = self.prices.entry(hint, model, row.time_ms) else {
            return Outcome::NotRepriced;
        };
        if tier == ServiceTier::Batch && entry.service_tier(ServiceTier::Batch).is_none() {
            return Outcome::NotRepriced;
        }
        Outcome::Repriced(tollgate_pricing::cost(entry, &row.usage, tier).total)
    }

    fn add_to_group(&mut self, row: &LedgerRow, before: Money, after: Money) {
        self.buf.clear();
        for d in &self.by {
            match dimension(row, d) {
                Some(v) => push_part(&mut self.buf, &v),
                None => self.buf.push('-'),
            }
        }
        let i = match self.index.get(self.buf.as_str()) {
            Some(&i) => i,
            None => {
                let i = self.groups.len();
                self.index.insert(self.buf.clone(), i);
                self.groups.push(WhatIfGroup {
                    dims: self.by.iter().map(|d| dimension(row, d).map(Cow::into_owned)).collect(),
                    requests: 0,
                    before: Money::ZERO,
                    after: Money::ZERO,
                });
                i
            }
        };
        if let Some(g) = self.groups.get_mut(i) {
            g.requests += 1;
            g.before += before;
            g.after += after;
        }
    }
}

/// The tier a moved row was priced at: the batch endpoints' batch, else the
/// tier whose price of the row's own model gives its recorded cost
/// (standard when none does, counted in `unmatched`).
fn recorded_tier(
    prices: &mut PriceMemo<'_>,
    row: &LedgerRow,
    hint: Option<&str>,
    served: &str,
    unmatched: &mut u64,
) -> ServiceTier {
    if is_batch_endpoint(row.endpoint) {
        return ServiceTier::Batch;
    }
    let (Some(recorded), Some(own)) = (row.cost, prices.entry(hint, served, row.time_ms)) else {
        return ServiceTier::Standard;
    };
    for t in [ServiceTier::Standard, ServiceTier::Priority, ServiceTier::Flex] {
        let priced = t == ServiceTier::Standard || own.service_tier(t).is_some();
        if priced && tollgate_pricing::cost(own, &row.usage, t).total == recorded {
            return t;
        }
    }
    *unmatched += 1;
    ServiceTier::Standard
}

fn is_batch_endpoint(e: Endpoint) -> bool {
    matches!(
        e,
        Endpoint::BatchChatCompletions | Endpoint::BatchEmbeddings | Endpoint::BatchResponses | Endpoint::BatchMessages
    )
}

/// A model name against a mapping's `from`: equal, or a `*` glob match.
fn name_matches(pattern: &str, name: &str) -> bool {
    if pattern.contains('*') {
        crate::pattern::glob_match(pattern, name)
    } else {
        pattern == name
    }
}

/// The catalog lookup hint of a configured provider, as `Pricing` uses it.
fn hint_of(p: &Provider) -> &str {
    match p.kind {
        ProviderKind::OpenAiCompatible => p.name.as_str(),
        kind => crate::config::kind_name(kind),
    }
}

/// Appends `len:value`, so that joined parts can never be confused.
fn push_part(buf: &mut String, s: &str) {
    use std::fmt::Write;
    // Writing to a String cannot fail.
    let _ = write!(buf, "{}:", s.len());
    buf.push_str(s);
}

/// A row's value of a dimension, named as the analytics API names them
/// (`store::sql::dimension_column`): `key`/`key_id`, `model`,
/// `requested_model`, `provider`, `session`, `agent`, `prompt`,
/// `trace`/`trace_id`, `endpoint`, `status`, `error_code`, `usage_source`,
/// `cache`; any other name (`team`, `feature`, `env`, `user`, `org`…) is a tag.
pub fn dimension<'r>(row: &'r LedgerRow, dim: &str) -> Option<Cow<'r, str>> {
    let a = &row.attribution;
    let v: Option<&'r str> = match dim {
        "key" | "key_id" => row.key_id.as_deref(),
        "model" => row.model.as_deref(),
        "requested_model" => row.requested_model.as_deref(),
        "provider" => row.provider.as_deref(),
        "session" => a.session.as_deref(),
        "agent" => a.agent.as_deref(),
        "prompt" => a.prompt.as_deref(),
        "trace" | "trace_id" => a.trace_id.as_deref(),
        "endpoint" => Some(row.endpoint.as_str()),
        "status" => return Some(Cow::Owned(row.status.to_string())),
        "error_code" => row.error_code.as_deref(),
        "usage_source" => Some(row.usage_source.as_str()),
        "cache" => Some(row.cache.as_str()),
        tag => a.tag(tag),
    };
    v.map(Cow::Borrowed)
}

/// `part ÷ whole` as a percentage with two decimals (truncated); `-` when `whole` is not positive.
fn percent_of(part: Money, whole: Money) -> String {
    if whole.nanos() <= 0 {
        return "-".to_owned();
    }
    let bp = i128::from(part.nanos()) * 10_000 / i128::from(whole.nanos());
    let sign = if bp < 0 { "-" } else { "" };
    let abs = bp.unsigned_abs();
    format!("{sign}{}.{:02}%", abs / 100, abs % 100)
}

/// The report as JSON: each grouped dimension at its row's top level (as
/// `GET /api/v1/spend`), money as decimal strings with 9 decimals.
pub fn report_json(r: &WhatIfReport, by: &[String]) -> serde_json::Value {
    let rows: Vec<serde_json::Value> = r
        .rows
        .iter()
        .map(|g| {
            let mut m = serde_json::Map::new();
            for (d, v) in by.iter().zip(&g.dims) {
                m.insert(d.clone(), v.clone().map_or(serde_json::Value::Null, serde_json::Value::String));
            }
            m.insert("requests".into(), g.requests.into());
            m.insert("before_usd".into(), g.before.to_string().into());
            m.insert("after_usd".into(), g.after.to_string().into());
            m.insert("savings_usd".into(), g.savings().to_string().into());
            serde_json::Value::Object(m)
        })
        .collect();
    serde_json::json!({
        "group_by": by,
        "scenario": r.scenario,
        "rows": rows,
        "before_usd": r.before.to_string(),
        "after_usd": r.after.to_string(),
        "savings_usd": r.savings().to_string(),
        "rows_seen": r.rows_seen,
        "repriced": r.repriced,
        "unchanged": r.unchanged,
        "not_repriced": r.not_repriced,
        "undecided": r.undecided,
        "cache_hits": r.cache_hits,
        "notes": r.notes,
    })
}

/// The report as a table for the terminal, then the totals and the notes.
pub fn report_table(r: &WhatIfReport, by: &[String]) -> String {
    let mut head: Vec<String> = by.to_vec();
    head.extend(["requests", "before_usd", "after_usd", "savings_usd", "savings"].map(String::from));
    let mut lines: Vec<Vec<String>> = vec![head];
    for g in &r.rows {
        let mut l: Vec<String> =
            g.dims.iter().map(|d| d.as_deref().map_or_else(|| "-".into(), crate::analytics::printable)).collect();
        l.extend([
            g.requests.to_string(),
            g.before.to_string(),
            g.after.to_string(),
            g.savings().to_string(),
            percent_of(g.savings(), g.before),
        ]);
        lines.push(l);
    }
    let columns = lines.first().map_or(0, Vec::len);
    let widths: Vec<usize> =
        (0..columns).map(|i| lines.iter().map(|l| l.get(i).map_or(0, String::len)).max().unwrap_or(0)).collect();
    let mut s = String::new();
    for scenario in &r.scenario {
        s.push_str(&format!("scenario: {}\n", crate::analytics::printable(scenario)));
    }
    for l in &lines {
        let cells: Vec<String> = l
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| if i < by.len() { format!("{c:<w$}") } else { format!("{c:>w$}") })
            .collect();
        s.push_str(cells.join("  ").trim_end());
        s.push('\n');
    }
    s.push_str(&format!(
        "total: {} requests: before ${} → after ${}, saving ${} ({})\n",
        r.rows_seen,
        r.before,
        r.after,
        r.savings(),
        percent_of(r.savings(), r.before)
    ));
    s.push_str(&format!(
        "rows: {} re-priced ({} exact-cache hits), {} unchanged, {} not re-priced, {} undecided\n",
        r.repriced, r.cache_hits, r.unchanged, r.not_repriced, r.undecided
    ));
    for n in &r.notes {
        s.push_str(&format!("note: {n}\n"));
    }
    s
}

/// Rows read per page when replaying from a store.
pub const REPLAY_PAGE: usize = 5_000;

/// Feeds every row of `[from_ms, to_ms)` from the request log to `replay`,
/// oldest first, a page at a time, and returns its report.
pub async fn replay_window(
    log: &dyn crate::store::RequestLog,
    mut replay: Replay<'_>,
    from_ms: i64,
    to_ms: i64,
) -> Result<WhatIfReport, crate::store::StoreError> {
    let mut after: Option<(i64, String)> = None;
    loop {
        let page = log.rows_between(from_ms, to_ms, after.clone(), REPLAY_PAGE).await?;
        for row in &page {
            replay.feed(row);
        }
        match page.last() {
            Some(last) if page.len() == REPLAY_PAGE => after = Some((last.time_ms, last.request_id.clone())),
            _ => return Ok(replay.finish()),
        }
    }
}

/// The scenario a command line or a query string describes: `map`
/// (`FROM=TO`, repeatable), `batch` (`DIM=VALUE`, repeatable), `cache`
/// (a TTL like `1h`, or `none`), and a configuration holding candidate
/// `[[routing_rules]]`.
pub fn scenario_from(
    maps: &[String],
    batches: &[String],
    cache: Option<&str>,
    rules: Option<&Config>,
) -> Result<Scenario, String> {
    let mut changes = Vec::new();
    for m in maps {
        changes.push(Scenario::parse_map(m)?);
    }
    if let Some(c) = rules {
        changes.push(Scenario::rules(c)?);
    }
    for b in batches {
        changes.push(Scenario::parse_batch(b)?);
    }
    if let Some(c) = cache {
        changes.push(Scenario::parse_cache(Some(c))?);
    }
    if changes.is_empty() {
        return Err("no scenario: give --map FROM=TO, --batch DIM=VALUE, --cache TTL or --rules FILE".into());
    }
    Ok(Scenario { changes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use tollgate_units::Usage;

    /// Two models, each with a price change on 2024-10-02 (USD per million tokens):
    /// - gpt-4o: $5 in / $15 out, then $2.50 in / $1.25 cache read / $10 out;
    /// - gpt-4o-mini: $0.30 / $1.20, then $0.15 / $0.075 cache read / $0.60;
    ///
    /// and batch at half price for every OpenAI model. A token at $R per
    /// million costs R × 1000 nano-dollars (nd).
    const CATALOG: &str = r#"
format = 1

[provider.openai]
batch = { multiplier = "0.5" }

[[model]]
provider = "openai"
model = "gpt-4o"
input = "5.00"
output = "15.00"

[[model]]
provider = "openai"
model = "gpt-4o"
effective_from = "2024-10-02"
input = "2.50"
cache_read = "1.25"
output = "10.00"

[[model]]
provider = "openai"
model = "gpt-4o-mini"
input = "0.30"
output = "1.20"

[[model]]
provider = "openai"
model = "gpt-4o-mini"
effective_from = "2024-10-02"
input = "0.15"
cache_read = "0.075"
output = "0.60"
"#;

    /// 2024-10-01T12:00:00Z: the old prices.
    const DAY1: i64 = 1_727_784_000_000;
    /// 2024-10-02T12:00:00Z: the new prices.
    const DAY2: i64 = 1_727_870_400_000;
    const MINUTE: i64 = 60_000;

    fn pricing() -> Pricing {
        Pricing::new(Catalog::from_toml_str(CATALOG).unwrap())
    }

    fn usage(input: u64, cache_read: u64, output: u64) -> Usage {
        Usage { input, cache_read, output, ..Usage::default() }
    }

    fn row(at: i64, team: &str, feature: &str, model: &str, u: Usage, cost: Option<i64>) -> LedgerRow {
        let mut r = LedgerRow::new(&format!("r{at}-{team}-{model}"), at, "k1", Endpoint::ChatCompletions);
        r.provider = Some("openai".into());
        r.requested_model = Some(model.into());
        r.model = Some(model.into());
        r.status = 200;
        r.usage = u;
        r.cost = cost.map(Money::from_nanos);
        r.attribution.tags.insert("team".into(), team.into());
        r.attribution.tags.insert("feature".into(), feature.into());
        r
    }

    fn by(dims: &[&str]) -> Vec<String> {
        dims.iter().map(|d| d.to_string()).collect()
    }

    fn nd(n: i64) -> Money {
        Money::from_nanos(n)
    }

    fn seeded() -> Vec<LedgerRow> {
        let mut error = row(DAY2, "search", "rank", "gpt-4o", Usage::default(), Some(0));
        error.status = 429;
        let mut local = row(DAY1, "growth", "chat", "llama-3.1-70b", usage(800, 0, 200), None);
        local.provider = Some("vllm".into());
        vec![
            // r1: gpt-4o on day 1: 1000 × 5000 + 500 × 15000 = 5,000,000 + 7,500,000 = 12,500,000 nd.
            row(DAY1, "growth", "chat", "gpt-4o", usage(1000, 0, 500), Some(12_500_000)),
            // r2: gpt-4o on day 2: 2000 × 2500 + 3 × 1250 + 1000 × 10000 = 5,000,000 + 3,750 + 10,000,000.
            row(DAY2, "growth", "chat", "gpt-4o", usage(2000, 3, 1000), Some(15_003_750)),
            // r3: gpt-4o on day 1: 1234 × 5000 + 567 × 15000 = 6,170,000 + 8,505,000 = 14,675,000 nd.
            row(DAY1, "search", "rank", "gpt-4o", usage(1234, 0, 567), Some(14_675_000)),
            // r4: already gpt-4o-mini, recorded at 2,200,000 nd although today's
            // catalog says 10,000 × 150 + 1000 × 600 = 2,100,000: no change applies.
            row(DAY2, "search", "rank", "gpt-4o-mini", usage(10_000, 0, 1000), Some(2_200_000)),
            // r5: an error (429, $0): never changed, though it names gpt-4o.
            error,
            // r6: an unpriced self-hosted model of team growth.
            local,
            // r7: a model this catalog does not know (priced by the configuration), team growth.
            row(DAY2, "growth", "summarize", "my-finetune", usage(5000, 0, 500), Some(1_000_000)),
        ]
    }

    fn replay(scenario: &Scenario, dims: &[String], rows: &[LedgerRow]) -> WhatIfReport {
        let pricing = pricing();
        let mut r = Replay::new(&pricing, scenario, dims);
        for row in rows {
            r.feed(row);
        }
        r.finish()
    }

    #[test]
    fn a_hand_worked_scenario_gives_exact_figures() {
        let scenario = Scenario {
            changes: vec![
                Scenario::parse_map("gpt-4o=gpt-4o-mini").unwrap(),
                Scenario::parse_batch("team=growth").unwrap(),
            ],
        };
        let dims = by(&["team", "feature", "model"]);
        let r = replay(&scenario, &dims, &seeded());

        // After, row by row:
        // r1 → gpt-4o-mini on day 1 at batch (×0.5: $0.15 / $0.60):
        //      1000 × 150 + 500 × 600 = 150,000 + 300,000 = 450,000 nd.
        // r2 → gpt-4o-mini on day 2 at batch ($0.075 / $0.0375 cache read / $0.30):
        //      2000 × 75 + 3 × 37.5 + 1000 × 300 = 150,000 + 112.5 → 113 (half away
        //      from zero) + 300,000 = 450,113 nd.
        // r3 → gpt-4o-mini on day 1, standard (team search): 1234 × 300 + 567 × 1200
        //      = 370,200 + 680,400 = 1,050,600 nd.
        // r4, r5 unchanged: 2,200,000 and 0.
        // r6 unpriced, r7 unknown to the catalog: batch applies, no price → kept (0 and 1,000,000).
        let g = |team: &str, feature: &str, model: &str, requests: u64, before: i64, after: i64| WhatIfGroup {
            dims: vec![Some(team.into()), Some(feature.into()), Some(model.into())],
            requests,
            before: nd(before),
            after: nd(after),
        };
        assert_eq!(
            r.rows,
            vec![
                // 12,500,000 + 15,003,750 = 27,503,750 → 450,000 + 450,113 = 900,113 (saves 26,603,637).
                g("growth", "chat", "gpt-4o", 2, 27_503_750, 900_113),
                // r3 and the error row: 14,675,000 + 0 → 1,050,600 + 0 (saves 13,624,400).
                g("search", "rank", "gpt-4o", 2, 14_675_000, 1_050_600),
                // Saving nothing, by dimensions.
                g("growth", "chat", "llama-3.1-70b", 1, 0, 0),
                g("growth", "summarize", "my-finetune", 1, 1_000_000, 1_000_000),
                g("search", "rank", "gpt-4o-mini", 1, 2_200_000, 2_200_000),
            ]
        );
        // 27,503,750 + 14,675,000 + 0 + 1,000,000 + 2,200,000 = 45,378,750;
        // 900,113 + 1,050,600 + 0 + 1,000,000 + 2,200,000 = 5,150,713.
        assert_eq!(r.before, nd(45_378_750));
        assert_eq!(r.after, nd(5_150_713));
        assert_eq!(r.savings(), nd(40_228_037));
        assert_eq!((r.rows_seen, r.repriced, r.unchanged, r.not_repriced, r.undecided), (7, 3, 2, 2, 0));
        assert!(r.notes.iter().any(|n| n.contains("token counts are kept as recorded")));
        assert!(r.notes.iter().any(|n| n.starts_with("2 row(s) the scenario applies to could not be priced")));

        let j = report_json(&r, &dims);
        assert_eq!(j["rows"][0]["team"], "growth");
        assert_eq!(j["rows"][0]["before_usd"], "0.027503750");
        assert_eq!(j["rows"][0]["after_usd"], "0.000900113");
        assert_eq!(j["before_usd"], "0.045378750");
        assert_eq!(j["after_usd"], "0.005150713");
        assert_eq!(j["savings_usd"], "0.040228037");
        assert_eq!(j["not_repriced"], 2);
        assert_eq!(j["scenario"][0], "map gpt-4o → gpt-4o-mini");

        let t = report_table(&r, &dims);
        assert!(t.contains("0.027503750"), "{t}");
        // 40,228,037 / 45,378,750 = 88.649…%, truncated.
        assert!(t.contains("saving $0.040228037 (88.64%)"), "{t}");
    }

    #[test]
    fn rows_no_change_applies_to_keep_their_recorded_cost() {
        let scenario = Scenario { changes: vec![Scenario::parse_batch("team=nobody").unwrap()] };
        let r = replay(&scenario, &by(&["team"]), &seeded());
        assert_eq!(r.before, r.after);
        assert_eq!((r.repriced, r.unchanged, r.not_repriced), (0, 7, 0));
    }

    #[test]
    fn a_target_the_catalog_does_not_know_is_counted_not_repriced() {
        let scenario = Scenario { changes: vec![Scenario::parse_map("gpt-4o=gpt-9").unwrap()] };
        let r = replay(&scenario, &by(&["model"]), &seeded());
        // r1, r2, r3 move to an unknown model; the error row is never changed.
        assert_eq!((r.repriced, r.not_repriced, r.unchanged), (0, 3, 4));
        assert_eq!(r.before, r.after);
        assert_eq!(r.before, nd(45_378_750));
    }

    #[test]
    fn a_repeated_prompt_becomes_a_free_exact_cache_hit() {
        // gpt-4o-mini on day 2: 1000 × 150 + 100 × 600 = 150,000 + 60,000 = 210,000 nd each.
        let at = |t: i64, key: &str, prefix: Option<&str>, cache: CacheOutcome| {
            let mut r = row(t, "growth", "chat", "gpt-4o-mini", usage(1000, 0, 100), Some(210_000));
            r.key_id = Some(key.into());
            r.prefix_hash = prefix.map(str::to_owned);
            r.cache = cache;
            r
        };
        let off = CacheOutcome::Off;
        let rows = vec![
            at(DAY2, "k1", Some("p1"), off),                               // first: filed
            at(DAY2 + 10 * MINUTE, "k1", Some("p1"), off),                 // hit → $0
            at(DAY2 + 120 * MINUTE, "k1", Some("p1"), off),                // 2 h later: expired, filed again
            at(DAY2 + 121 * MINUTE, "k1", Some("p1"), off),                // hit → $0
            at(DAY2 + 122 * MINUTE, "k2", Some("p1"), off),                // another key: its own cache
            at(DAY2 + 123 * MINUTE, "k1", Some("p1"), CacheOutcome::Miss), // looked up and missed: stays
            at(DAY2 + 124 * MINUTE, "k1", None, off),                      // no prefix: never a hit
        ];
        let scenario = Scenario { changes: vec![Scenario::parse_cache(Some("1h")).unwrap()] };
        let r = replay(&scenario, &by(&["team"]), &rows);
        // 7 × 210,000 = 1,470,000 before; 5 × 210,000 = 1,050,000 after.
        assert_eq!(r.before, nd(1_470_000));
        assert_eq!(r.after, nd(1_050_000));
        assert_eq!((r.cache_hits, r.repriced, r.unchanged), (2, 2, 5));
        assert_eq!(r.rows.len(), 1);
        assert!(r.notes.iter().any(|n| n.contains("prefix_hash")));

        // Without a TTL the third row is a hit too.
        let forever = Scenario { changes: vec![Scenario::parse_cache(None).unwrap()] };
        assert_eq!(replay(&forever, &by(&["team"]), &rows).cache_hits, 3);
    }

    #[test]
    fn routing_rules_move_what_a_row_can_decide() {
        let text = r#"
[[providers]]
name = "openai"
kind = "openai"
base_url = "http://127.0.0.1:1/v1"

[[routing_rules]]
name = "short-search-prompts"
models = ["gpt-4o"]
scope = { team = "search" }
max_prompt_bytes = 2000
route_to = "gpt-4o-mini"

[[routing_rules]]
name = "growth-to-mini"
models = ["gpt-4o*"]
scope = { team = "growth" }
route_to = "gpt-4o-mini"
"#;
        let config = Config::from_toml(text, "rules.toml", &HashMap::<String, String>::new()).unwrap();
        let change = Scenario::rules(&config).unwrap();
        if let Change::Rules(set) = &change {
            let want = RuleTarget { provider: "openai".into(), hint: "openai".into(), model: "gpt-4o-mini".into() };
            assert_eq!(set.target(1), Some(&want));
        }
        let scenario = Scenario { changes: vec![change] };
        let rows = vec![
            // growth-to-mini: gpt-4o-mini on day 1, 1000 × 300 + 500 × 1200 = 900,000 nd.
            row(DAY1, "growth", "chat", "gpt-4o", usage(1000, 0, 500), Some(12_500_000)),
            // short-search-prompts tests the prompt's size: undecided, kept.
            row(DAY1, "search", "rank", "gpt-4o", usage(1234, 0, 567), Some(14_675_000)),
            // No rule for team ops.
            row(DAY1, "ops", "chat", "gpt-4o", usage(1000, 0, 500), Some(12_500_000)),
            // Already gpt-4o-mini: a rule never routes a model to itself.
            row(DAY2, "growth", "chat", "gpt-4o-mini", usage(10_000, 0, 1000), Some(2_100_000)),
        ];
        let r = replay(&scenario, &by(&["team"]), &rows);
        assert_eq!((r.repriced, r.undecided, r.unchanged), (1, 1, 2));
        assert_eq!(r.before, nd(12_500_000 + 14_675_000 + 12_500_000 + 2_100_000));
        assert_eq!(r.after, nd(900_000 + 14_675_000 + 12_500_000 + 2_100_000));
        assert!(r.notes.iter().any(|n| n.starts_with("1 row(s) match a routing rule")));
    }

    #[test]
    fn a_moved_row_keeps_the_tier_it_was_priced_at() {
        let text = r#"
[[model]]
provider = "openai"
model = "big"
input = "10"
output = "10"
priority = { multiplier = "2" }

[[model]]
provider = "openai"
model = "small"
input = "1"
output = "1"
priority = { multiplier = "2" }
"#;
        let pricing = Pricing::new(Catalog::from_toml_str(text).unwrap());
        // 100 input tokens of "big" at priority ($20/M) = 100 × 20,000 = 2,000,000 nd.
        let r1 = row(DAY1, "growth", "chat", "big", usage(100, 0, 0), Some(2_000_000));
        let scenario = Scenario { changes: vec![Scenario::parse_map("big=small").unwrap()] };
        let mut replay = Replay::new(&pricing, &scenario, &[]);
        replay.feed(&r1);
        let r = replay.finish();
        // "small" at priority ($2/M): 100 × 2,000 = 200,000 nd (not 100,000 at standard).
        assert_eq!(r.after, nd(200_000));
        assert_eq!(r.rows[0].dims, Vec::<Option<String>>::new());
    }

    #[test]
    fn scenario_syntax() {
        assert!(matches!(
            Scenario::parse_map(" gpt-4o = gpt-4o-mini "),
            Ok(Change::MapModel { from, to }) if from == "gpt-4o" && to == "gpt-4o-mini"
        ));
        assert!(Scenario::parse_map("gpt-4o").is_err());
        assert!(Scenario::parse_map("=gpt-4o-mini").is_err());
        assert!(Scenario::parse_map("gpt-4o=gpt-4o").is_err());
        assert!(Scenario::parse_map("gpt-4o=gpt-*").is_err());
        assert!(matches!(
            Scenario::parse_batch("Team=growth"),
            Ok(Change::Batch { dim, value }) if dim == "team" && value == "growth"
        ));
        assert!(Scenario::parse_batch("team=").is_err());
        assert!(Scenario::parse_batch("te am=x").is_err());
        assert!(matches!(Scenario::parse_cache(Some("30m")), Ok(Change::ExactCache { ttl_ms: Some(1_800_000), .. })));
        assert!(matches!(Scenario::parse_cache(None), Ok(Change::ExactCache { ttl_ms: None, .. })));
        assert!(Scenario::parse_cache(Some("0s")).is_err());
        assert!(Scenario::parse_cache(Some("soon")).is_err());
    }

    #[test]
    fn dimensions_read_like_the_analytics_api() {
        let mut r = row(DAY1, "growth", "chat", "gpt-4o", Usage::default(), None);
        r.attribution.tags.insert("env".into(), "prod".into());
        assert_eq!(dimension(&r, "team").as_deref(), Some("growth"));
        assert_eq!(dimension(&r, "env").as_deref(), Some("prod"));
        assert_eq!(dimension(&r, "model").as_deref(), Some("gpt-4o"));
        assert_eq!(dimension(&r, "provider").as_deref(), Some("openai"));
        assert_eq!(dimension(&r, "key").as_deref(), Some("k1"));
        assert_eq!(dimension(&r, "endpoint").as_deref(), Some("chat.completions"));
        assert_eq!(dimension(&r, "status").as_deref(), Some("200"));
        assert_eq!(dimension(&r, "org"), None);
    }
}
