//! Budgets and rate limits as plain values: scopes, periods, actions, and the
//! arithmetic on them (period windows, forecasts, token buckets). Pure: time
//! is a parameter.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{Datelike, Duration, NaiveDate, TimeZone};
use chrono_tz::Tz;
use tollgate_units::Money;

use crate::attribution::Attribution;

/// How long a reservation may be held before the counter store gives it
/// back on its own (its owner died): the default of `[governance] lease_ms`.
/// Longer than any request may run.
pub const LEASE_MS: i64 = 15 * 60_000;

/// Which requests a budget or limit covers: every pair must match. Keys are
/// `key` (key id), `model` (requested model), `provider`, or any tag
/// (`team`, `user`, `org`, `env`, `feature`, custom…).
///
/// Held as pairs sorted by name (names unique): a budget's scope has one or
/// two pairs, and a map node for them cost ~600 bytes per copy, for each of
/// a hundred thousand budgets.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Scope(Vec<(String, String)>);

/// What a request is, for scope matching.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub key_id: &'a str,
    pub model: &'a str,
    pub provider: Option<&'a str>,
    pub attribution: &'a Attribution,
}

impl Scope {
    /// `team=growth,env=prod`
    pub fn parse(s: &str) -> Result<Scope, String> {
        let mut m = BTreeMap::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').ok_or_else(|| format!("scope part {part:?} is not key=value"))?;
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
            if k.is_empty() || v.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b)) {
                return Err(format!("scope part {part:?} needs a name and a value"));
            }
            m.insert(k, v);
        }
        if m.is_empty() {
            return Err("a scope needs at least one key=value".into());
        }
        Ok(Scope(m.into_iter().collect()))
    }

    /// The scope of these pairs (a name given twice keeps its last value).
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Scope {
        let m: BTreeMap<String, String> = pairs.into_iter().collect();
        Scope(m.into_iter().collect())
    }

    /// The value a scope requires for `name` (`team`, `key`, `model`…).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(name)).ok().map(|i| self.0[i].1.as_str())
    }

    /// The pairs, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn matches(&self, f: &Facts<'_>) -> bool {
        self.0.iter().all(|(k, v)| match k.as_str() {
            "key" => f.key_id == v,
            "model" => crate::pattern::glob_match(v, f.model),
            "provider" => f.provider == Some(v.as_str()),
            tag => f.attribution.tag(tag) == Some(v.as_str()),
        })
    }

    /// Ledger filters that select the same rows (for loading spend at start).
    pub fn ledger_filters(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .map(|(k, v)| (if k == "model" { "requested_model".to_string() } else { k.clone() }, v.clone()))
            .collect()
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
        f.write_str(&parts.join(","))
    }
}

/// A JSON object of the pairs (`{"team": "growth"}`).
impl serde::Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day,
    Week,
    Month,
    /// A sliding window of this many milliseconds.
    Rolling(i64),
}

impl Period {
    /// `day`, `week`, `month`, `rolling:30m` / `rolling:24h` / `rolling:7d`.
    pub fn parse(s: &str) -> Result<Period, String> {
        match s {
            "day" => Ok(Period::Day),
            "week" => Ok(Period::Week),
            "month" => Ok(Period::Month),
            _ => {
                let d = s
                    .strip_prefix("rolling:")
                    .and_then(crate::time::parse_duration)
                    .filter(|d| d.num_milliseconds() > 0)
                    .ok_or_else(|| {
                        format!("period {s:?} is not day, week, month or rolling:DURATION (e.g. rolling:1h)")
                    })?;
                Ok(Period::Rolling(d.num_milliseconds()))
            }
        }
    }

    /// The calendar window holding `now` in `tz`, as Unix ms `[start, end)`;
    /// for a rolling period, `[now - length, now]`.
    pub fn window(&self, now_ms: i64, tz: Tz) -> (i64, i64) {
        let local = tz.timestamp_millis_opt(now_ms).single().unwrap_or_else(|| tz.timestamp_millis_opt(0).unwrap());
        let date = local.date_naive();
        let midnight = |d: NaiveDate| -> i64 {
            let naive = d.and_hms_opt(0, 0, 0).unwrap_or_default();
            // A DST gap at midnight: take the first valid instant after it.
            tz.from_local_datetime(&naive)
                .earliest()
                .or_else(|| tz.from_local_datetime(&(naive + Duration::hours(1))).earliest())
                .map(|t| t.timestamp_millis())
                .unwrap_or(now_ms)
        };
        match self {
            Period::Day => (midnight(date), midnight(date + Duration::days(1))),
            Period::Week => {
                let monday = date - Duration::days(i64::from(date.weekday().num_days_from_monday()));
                (midnight(monday), midnight(monday + Duration::days(7)))
            }
            Period::Month => {
                let first = date.with_day(1).unwrap_or(date);
                let next = if first.month() == 12 {
                    NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
                } else {
                    NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
                }
                .unwrap_or(first);
                (midnight(first), midnight(next))
            }
            Period::Rolling(len) => (now_ms - len, now_ms),
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Period::Day => f.write_str("day"),
            Period::Week => f.write_str("week"),
            Period::Month => f.write_str("month"),
            Period::Rolling(ms) => {
                let (n, u) = if ms % 86_400_000 == 0 {
                    (ms / 86_400_000, "d")
                } else if ms % 3_600_000 == 0 {
                    (ms / 3_600_000, "h")
                } else if ms % 60_000 == 0 {
                    (ms / 60_000, "m")
                } else {
                    (ms / 1000, "s")
                };
                write!(f, "rolling:{n}{u}")
            }
        }
    }
}

/// What happens when a budget cannot cover a request's reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// 402 `budget_exceeded`.
    Block,
    /// Let it through; only alert.
    Alert,
    /// Lower the request's max output tokens to what remains.
    Clamp,
    /// Serve it with this (cheaper) model instead.
    Downgrade(String),
    /// Act as `block` would, without acting: the request goes through, and
    /// its row records that this budget would have refused it. The budget's
    /// counter books only what `block` would have let through, so it refuses
    /// exactly what the same budget in `block` mode would.
    Shadow,
}

impl Action {
    pub fn parse(s: &str) -> Result<Action, String> {
        match s {
            "block" => Ok(Action::Block),
            "alert" => Ok(Action::Alert),
            "clamp" => Ok(Action::Clamp),
            "shadow" => Ok(Action::Shadow),
            _ => match s.strip_prefix("downgrade:") {
                Some(m) if !m.is_empty() => Ok(Action::Downgrade(m.to_string())),
                _ => Err(format!("action {s:?} is not block, alert, clamp, shadow or downgrade:MODEL")),
            },
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Block => f.write_str("block"),
            Action::Alert => f.write_str("alert"),
            Action::Clamp => f.write_str("clamp"),
            Action::Downgrade(m) => write!(f, "downgrade:{m}"),
            Action::Shadow => f.write_str("shadow"),
        }
    }
}

/// A budget as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetSpec {
    pub id: String,
    pub scope: Scope,
    pub limit: Money,
    pub period: Period,
    pub action: Action,
    /// Alert thresholds in per-mille of the limit (500 = 50 %).
    pub alert_at: Vec<u32>,
    /// Refuse requests to models with no known price (their cost cannot be reserved).
    pub block_unpriced: bool,
}

pub const DEFAULT_ALERTS: [u32; 3] = [500, 800, 1000];

/// `0.5,0.8,1.0` or `50%,80%` → per-mille.
pub fn parse_alert_at(s: &str) -> Result<Vec<u32>, String> {
    let mut out = Vec::new();
    for p in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let permille = match p.strip_suffix('%') {
            Some(pct) => pct.parse::<Money>().map(|m| m.nanos() / 100_000_000),
            None => p.parse::<Money>().map(|m| m.nanos() / 1_000_000),
        }
        .map_err(|_| format!("alert threshold {p:?} is not a number like 0.8 or 80%"))?;
        if !(1..=10_000).contains(&permille) {
            return Err(format!("alert threshold {p:?} must be between 0 and 10 (1000%)"));
        }
        out.push(permille as u32);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// When spending at the average rate so far in this period reaches the limit
/// (Unix ms), or `None` if it will not within the period (or nothing was spent).
pub fn forecast_exhaustion(spent: Money, limit: Money, start_ms: i64, now_ms: i64, end_ms: i64) -> Option<i64> {
    let elapsed = (now_ms - start_ms).max(1) as i128;
    let spent = i128::from(spent.nanos());
    let remaining = i128::from(limit.nanos()) - spent;
    if remaining <= 0 {
        return Some(now_ms);
    }
    if spent <= 0 {
        return None;
    }
    let at = now_ms as i128 + remaining * elapsed / spent;
    (at < end_ms as i128).then_some(at as i64)
}

/// What a rate limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    Requests,
    Tokens,
    /// Nano-dollars.
    Cost,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitSpec {
    pub id: String,
    pub scope: Scope,
    pub kind: LimitKind,
    /// Units allowed per window (requests, tokens or nano-dollars).
    pub amount: i64,
    pub window_ms: i64,
}

/// A token bucket in exact integers: holds up to `amount` units and refills
/// `amount` per `window_ms`. Levels are kept in units × `window_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    level: i128,
    at_ms: i64,
}

impl Bucket {
    pub fn full(spec: &RateLimitSpec, now_ms: i64) -> Bucket {
        Bucket { level: i128::from(spec.amount) * i128::from(spec.window_ms), at_ms: now_ms }
    }

    fn refill(&mut self, spec: &RateLimitSpec, now_ms: i64) {
        let cap = i128::from(spec.amount) * i128::from(spec.window_ms);
        let dt = i128::from((now_ms - self.at_ms).max(0));
        self.level = (self.level + dt * i128::from(spec.amount)).min(cap);
        self.at_ms = self.at_ms.max(now_ms);
    }

    /// Milliseconds until `units` fit, 0 if they fit now.
    pub fn wait_ms(&mut self, spec: &RateLimitSpec, units: i64, now_ms: i64) -> i64 {
        self.refill(spec, now_ms);
        let need = i128::from(units) * i128::from(spec.window_ms);
        if need <= self.level {
            return 0;
        }
        let amount = i128::from(spec.amount.max(1));
        (((need - self.level) + amount - 1) / amount).min(i128::from(i64::MAX)) as i64
    }

    /// Takes `units` (may go below zero when a settlement charges extra).
    pub fn take(&mut self, spec: &RateLimitSpec, units: i64, now_ms: i64) {
        self.refill(spec, now_ms);
        self.level -= i128::from(units) * i128::from(spec.window_ms);
    }

    /// Gives `units` back (a settlement below the reservation).
    pub fn give(&mut self, spec: &RateLimitSpec, units: i64, now_ms: i64) {
        self.take(spec, -units, now_ms);
        let cap = i128::from(spec.amount) * i128::from(spec.window_ms);
        self.level = self.level.min(cap);
    }
}

/// Rules (budgets or rate limits, by id) indexed by one exact part of their
/// scope, so a request looks only at the rules that can cover it instead of
/// every rule: with 100 000 per-user budgets, a request checks the few whose
/// anchor it carries. The anchor is the most selective exact part: `key`,
/// then a tag, then `provider`, then an exact `model`; a scope whose only
/// parts are model globs (`claude-*`) is checked on every request. A
/// candidate still has to match its whole scope ([`Scope::matches`]).
#[derive(Debug, Default)]
pub struct ScopeIndex {
    /// dimension → value → ids anchored there.
    by_part: crate::FastMap<String, crate::FastMap<String, Vec<std::sync::Arc<str>>>>,
    /// Scopes of model globs only.
    unanchored: Vec<std::sync::Arc<str>>,
    /// Where each id is filed (`None`: unanchored).
    anchor_of: crate::FastMap<std::sync::Arc<str>, Option<(String, String)>>,
}

impl ScopeIndex {
    fn anchor(scope: &Scope) -> Option<(String, String)> {
        let rank = |k: &str, v: &str| match k {
            "key" => Some(0),
            "model" if v.contains('*') => None,
            "model" => Some(3),
            "provider" => Some(2),
            _ => Some(1),
        };
        scope
            .0
            .iter()
            .filter_map(|(k, v)| rank(k, v).map(|r| (r, k, v)))
            .min_by_key(|(r, _, _)| *r)
            .map(|(_, k, v)| (k.clone(), v.clone()))
    }

    /// Files `id` under its scope (replacing where it was filed before).
    pub fn insert(&mut self, id: std::sync::Arc<str>, scope: &Scope) {
        self.remove(&id);
        let anchor = Self::anchor(scope);
        match &anchor {
            Some((k, v)) => self.by_part.entry(k.clone()).or_default().entry(v.clone()).or_default().push(id.clone()),
            None => self.unanchored.push(id.clone()),
        }
        self.anchor_of.insert(id, anchor);
    }

    pub fn remove(&mut self, id: &str) {
        let Some(anchor) = self.anchor_of.remove(id) else { return };
        match anchor {
            Some((k, v)) => {
                if let Some(values) = self.by_part.get_mut(&k) {
                    if let Some(ids) = values.get_mut(&v) {
                        ids.retain(|x| &**x != id);
                        if ids.is_empty() {
                            values.remove(&v);
                        }
                    }
                    if values.is_empty() {
                        self.by_part.remove(&k);
                    }
                }
            }
            None => self.unanchored.retain(|x| &**x != id),
        }
    }

    /// Calls `f` with every id that may cover `facts` (each once); the
    /// caller checks the whole scope.
    pub fn candidates<'a>(&'a self, facts: &Facts<'_>, mut f: impl FnMut(&'a std::sync::Arc<str>)) {
        for (dim, values) in &self.by_part {
            let value = match dim.as_str() {
                "key" => Some(facts.key_id),
                "model" => Some(facts.model),
                "provider" => facts.provider,
                tag => facts.attribution.tag(tag),
            };
            if let Some(ids) = value.and_then(|v| values.get(v)) {
                ids.iter().for_each(&mut f);
            }
        }
        self.unanchored.iter().for_each(f);
    }

    pub fn len(&self) -> usize {
        self.anchor_of.len()
    }

    pub fn is_empty(&self) -> bool {
        self.anchor_of.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    #[test]
    fn calendar_windows_follow_the_time_zone() {
        let utc: Tz = "UTC".parse().unwrap();
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let now = ms("2026-03-29T12:00:00Z"); // a Sunday; DST starts in Berlin that night
        assert_eq!(Period::Day.window(now, utc), (ms("2026-03-29T00:00:00Z"), ms("2026-03-30T00:00:00Z")));
        assert_eq!(Period::Day.window(now, berlin), (ms("2026-03-28T23:00:00Z"), ms("2026-03-29T22:00:00Z")));
        assert_eq!(Period::Week.window(now, utc), (ms("2026-03-23T00:00:00Z"), ms("2026-03-30T00:00:00Z")));
        assert_eq!(Period::Month.window(now, utc), (ms("2026-03-01T00:00:00Z"), ms("2026-04-01T00:00:00Z")));
        assert_eq!(Period::Month.window(ms("2026-12-31T23:59:59Z"), utc).1, ms("2027-01-01T00:00:00Z"));
        assert_eq!(Period::parse("rolling:90m").unwrap().window(now, utc), (now - 5_400_000, now));
        assert_eq!(Period::parse("rolling:1h").unwrap().to_string(), "rolling:1h");
        assert!(Period::parse("rolling:0m").is_err() && Period::parse("year").is_err());
    }

    #[test]
    fn a_scope_is_its_pairs_by_name_whatever_the_order_given() {
        let s = Scope::parse("team=growth, env=prod,Team=search").unwrap();
        // Names are lower-cased; the later `team` wins; pairs come sorted by name.
        assert_eq!(s.iter().collect::<Vec<_>>(), [("env", "prod"), ("team", "search")]);
        assert_eq!((s.get("team"), s.get("env"), s.get("user")), (Some("search"), Some("prod"), None));
        assert_eq!(s.to_string(), "env=prod,team=search");
        assert_eq!(serde_json::to_string(&s).unwrap(), r#"{"env":"prod","team":"search"}"#);
        let same = Scope::from_pairs([
            ("team".into(), "x".into()),
            ("env".into(), "prod".into()),
            ("team".into(), "search".into()),
        ]);
        assert_eq!(same, s);
        assert!(Scope::parse("env=prod") < Scope::parse("team=a"), "ordered as the sorted pairs are");
    }

    #[test]
    fn scopes_match_tags_keys_models() {
        let mut a = Attribution::default();
        a.tags.insert("team".into(), "growth".into());
        a.tags.insert("env".into(), "prod".into());
        let f = Facts { key_id: "key_1", model: "claude-opus-4-1", provider: Some("anthropic"), attribution: &a };
        for (s, want) in [
            ("team=growth", true),
            ("team=growth,env=prod", true),
            ("team=growth,env=dev", false),
            ("key=key_1", true),
            ("model=claude-opus-*", true),
            ("model=gpt-*", false),
            ("provider=anthropic,team=growth", true),
            ("user=bob", false),
        ] {
            assert_eq!(Scope::parse(s).unwrap().matches(&f), want, "{s}");
        }
        assert!(Scope::parse("").is_err() && Scope::parse("team").is_err());
    }

    #[test]
    fn thresholds_actions_and_forecast() {
        assert_eq!(parse_alert_at("0.5, 0.8,1.0").unwrap(), vec![500, 800, 1000]);
        assert_eq!(parse_alert_at("80%,50%").unwrap(), vec![500, 800]);
        assert!(parse_alert_at("0").is_err() && parse_alert_at("x").is_err());
        assert_eq!(Action::parse("downgrade:gpt-4o-mini").unwrap(), Action::Downgrade("gpt-4o-mini".into()));
        assert!(Action::parse("downgrade:").is_err());
        // $25 spent in 10 days of a 30-day month with a $100 limit: $75 more at $2.5/day → 30 more days: beyond the period.
        let day = 86_400_000;
        assert_eq!(forecast_exhaustion(Money::from_usd(25), Money::from_usd(100), 0, 10 * day, 30 * day), None);
        // $50 in 10 days → $50 more takes 10 days → day 20.
        assert_eq!(
            forecast_exhaustion(Money::from_usd(50), Money::from_usd(100), 0, 10 * day, 30 * day),
            Some(20 * day)
        );
        assert_eq!(forecast_exhaustion(Money::from_usd(100), Money::from_usd(100), 0, 5, 30), Some(5));
    }

    #[test]
    fn token_bucket_waits_exactly() {
        let spec = RateLimitSpec {
            id: "r".into(),
            scope: Scope::default(),
            kind: LimitKind::Requests,
            amount: 60,
            window_ms: 60_000,
        };
        let mut b = Bucket::full(&spec, 0);
        for _ in 0..60 {
            assert_eq!(b.wait_ms(&spec, 1, 0), 0);
            b.take(&spec, 1, 0);
        }
        // One request per second refills.
        assert_eq!(b.wait_ms(&spec, 1, 0), 1000);
        assert_eq!(b.wait_ms(&spec, 1, 400), 600);
        assert_eq!(b.wait_ms(&spec, 1, 1000), 0);
        b.give(&spec, 100, 1000);
        assert_eq!(b.wait_ms(&spec, 60, 1000), 0, "never above capacity");
        assert!(b.wait_ms(&spec, 61, 1000) > 0);
    }

    mod index {
        use super::*;
        use proptest::prelude::*;
        use std::sync::Arc;

        fn part() -> impl Strategy<Value = (String, String)> {
            prop_oneof![
                (0..4u8).prop_map(|i| ("key".to_string(), format!("key_{i}"))),
                (0..3u8).prop_map(|i| ("team".to_string(), format!("t{i}"))),
                (0..3u8).prop_map(|i| ("user".to_string(), format!("u{i}"))),
                (0..2u8).prop_map(|i| ("provider".to_string(), ["openai", "anthropic"][i as usize].to_string())),
                prop_oneof![Just("gpt-4o"), Just("gpt-*"), Just("claude-*"), Just("*")]
                    .prop_map(|m| ("model".to_string(), m.to_string())),
            ]
        }

        fn scope() -> impl Strategy<Value = Scope> {
            proptest::collection::btree_map(part().prop_map(|(k, v)| (k, v)), Just(()), 1..4)
                .prop_map(|m| Scope::from_pairs(m.into_keys()))
        }

        proptest! {
            /// The index finds exactly the rules a scan of every rule finds.
            #[test]
            fn index_equals_a_full_scan(
                scopes in proptest::collection::vec(scope(), 0..40),
                removed in proptest::collection::vec(0..40usize, 0..10),
                key in 0..4u8, team in 0..4u8, user in 0..4u8, provider in 0..3u8, model in 0..3u8,
            ) {
                let mut index = ScopeIndex::default();
                let mut live: Vec<(Arc<str>, Scope)> = Vec::new();
                for (i, s) in scopes.iter().enumerate() {
                    let id: Arc<str> = Arc::from(format!("r{}", i % 30)); // some ids replaced
                    index.insert(id.clone(), s);
                    live.retain(|(x, _)| *x != id);
                    live.push((id, s.clone()));
                }
                for r in removed {
                    let id = format!("r{r}");
                    index.remove(&id);
                    live.retain(|(x, _)| **x != *id);
                }
                prop_assert_eq!(index.len(), live.len());
                let mut a = Attribution::default();
                a.tags.insert("team".into(), format!("t{team}"));
                if user < 3 {
                    a.tags.insert("user".into(), format!("u{user}"));
                }
                let key_id = format!("key_{key}");
                let model = ["gpt-4o", "gpt-4o-mini", "claude-opus-4-1"][model as usize];
                let provider = ["openai", "anthropic", "none"][provider as usize];
                let f = Facts { key_id: &key_id, model, provider: (provider != "none").then_some(provider), attribution: &a };
                let mut found: Vec<String> = Vec::new();
                index.candidates(&f, |id| found.push(id.to_string()));
                let mut unique = found.clone();
                unique.sort();
                unique.dedup();
                prop_assert_eq!(unique.len(), found.len(), "each candidate once");
                let lookup: std::collections::HashMap<_, _> = live.iter().map(|(id, s)| (id.to_string(), s)).collect();
                let mut matched: Vec<String> = found.into_iter().filter(|id| lookup[id].matches(&f)).collect();
                matched.sort();
                let mut want: Vec<String> = live.iter().filter(|(_, s)| s.matches(&f)).map(|(id, _)| id.to_string()).collect();
                want.sort();
                prop_assert_eq!(matched, want);
            }
        }
    }
}
