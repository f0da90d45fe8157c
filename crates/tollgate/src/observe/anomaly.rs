//! Anomaly detection over finished requests: a pure state machine fed one
//! ledger row at a time (its clock is the rows' own timestamps).
//!
//! - **Spend spikes**, per key, team, feature, model and agent: each series
//!   keeps, for every hour of the day (UTC), an EWMA of that hour's spend and
//!   an EWMA of the absolute deviation from it, so a normal daily rhythm is
//!   learnt instead of flagged. The running spend of the current hour is
//!   compared with `expected + k × max(deviation, floor × expected)` as rows
//!   arrive, so a spike is reported while it happens, once per hour. Hours
//!   with no rows count as zero spend; a slot needs `min_days` of history
//!   before it can flag, and the value fed back into a slot is clipped at the
//!   threshold so one spike does not teach the baseline to expect the next.
//! - **Loops**: the same (model, input tokens) repeated `loop_repeats` times
//!   within one trace inside `loop_window_ms` — the same prompt sent again.
//! - **Token growth**: input tokens rising turn over turn within one trace
//!   for `growth_turns` turns and by `growth_factor` or more.
//! - **Retry spirals**: `retry_errors` failed rows that needed retries
//!   (attempts > 1, status 429 or 5xx) for one key within `retry_window_ms`.
//!
//! Memory is bounded: at most `max_series` series per dimension and
//! `max_traces` traces; the idlest are forgotten first.

use std::collections::VecDeque;
use std::hash::BuildHasher;

use tollgate_units::Money;

use crate::ledger::LedgerRow;

const HOUR_MS: i64 = 3_600_000;
/// Request ids kept per finding.
const MAX_IDS: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    SpendSpike,
    Loop,
    TokenGrowth,
    RetrySpiral,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::SpendSpike, Kind::Loop, Kind::TokenGrowth, Kind::RetrySpiral];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::SpendSpike => "spend_spike",
            Kind::Loop => "loop",
            Kind::TokenGrowth => "token_growth",
            Kind::RetrySpiral => "retry_spiral",
        }
    }
}

/// The dimensions spend baselines are kept for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dim {
    Key,
    Team,
    Feature,
    Model,
    Agent,
}

impl Dim {
    pub const ALL: [Dim; 5] = [Dim::Key, Dim::Team, Dim::Feature, Dim::Model, Dim::Agent];

    /// The name used by `filter=` in the analytics API.
    pub fn as_str(self) -> &'static str {
        match self {
            Dim::Key => "key",
            Dim::Team => "team",
            Dim::Feature => "feature",
            Dim::Model => "model",
            Dim::Agent => "agent",
        }
    }

    fn of(self, row: &LedgerRow) -> Option<&str> {
        match self {
            Dim::Key => row.key_id.as_deref(),
            Dim::Team => row.attribution.tag("team"),
            Dim::Feature => row.attribution.tag("feature"),
            Dim::Model => row.model.as_deref(),
            Dim::Agent => row.attribution.agent.as_deref(),
        }
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anomaly {
    pub id: String,
    pub kind: Kind,
    /// `key`, `team`, `feature`, `model`, `agent` or `trace`.
    pub dimension: &'static str,
    pub value: String,
    /// The `team` tag of the request that revealed it (team admins see their own).
    pub team: Option<String>,
    pub detected_at_ms: i64,
    /// What was seen and what the baseline or rule expected, as decimal text
    /// in `unit` (`usd` for spend, else a count).
    pub observed: String,
    pub expected: String,
    pub unit: &'static str,
    pub message: String,
    /// The requests behind it (at most 50), when it is about a few requests.
    pub request_ids: Vec<String>,
    /// A request-log filter (`team:growth`, `trace:abc`) selecting the requests behind it.
    pub filter: String,
    /// For spend spikes: the hour, `[from, to)` Unix ms.
    pub window_ms: Option<(i64, i64)>,
}

/// Thresholds; the defaults suit hourly spend and agent traffic.
#[derive(Debug, Clone)]
pub struct DetectorConfig {
    /// EWMA weight of a new day in an hour-of-day slot.
    pub alpha: f64,
    /// Deviations above the expected value that make a spike.
    pub k: f64,
    /// The deviation is at least this fraction of the expected value.
    pub rel_floor: f64,
    /// Days of history an hour-of-day slot needs before it can flag.
    pub min_days: u32,
    /// A spike must also exceed the expected spend by this much.
    pub min_excess: Money,
    pub loop_repeats: u32,
    pub loop_window_ms: i64,
    pub growth_turns: u32,
    pub growth_factor: u64,
    pub retry_errors: usize,
    pub retry_window_ms: i64,
    /// After a retry spiral is reported for a key, quiet for this long.
    pub retry_cooldown_ms: i64,
    pub max_series: usize,
    pub max_traces: usize,
    /// A trace idle this long is forgotten.
    pub trace_idle_ms: i64,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            alpha: 0.3,
            k: 4.0,
            rel_floor: 0.1,
            min_days: 3,
            min_excess: Money::from_nanos(10_000_000),
            loop_repeats: 5,
            loop_window_ms: 10 * 60_000,
            growth_turns: 10,
            growth_factor: 4,
            retry_errors: 10,
            retry_window_ms: 60_000,
            retry_cooldown_ms: 10 * 60_000,
            max_series: 5_000,
            max_traces: 10_000,
            trace_idle_ms: 30 * 60_000,
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    mean: f64,
    dev: f64,
    n: u32,
}

#[derive(Debug, Clone)]
struct Series {
    /// Current hour (Unix ms / 1 h).
    hour: i64,
    /// Nano-dollars spent so far in `hour`.
    spend: i64,
    slots: [Slot; 24],
    flagged_hour: Option<i64>,
    last_ms: i64,
}

impl Series {
    fn new(hour: i64, now_ms: i64) -> Series {
        Series { hour, spend: 0, slots: [Slot::default(); 24], flagged_hour: None, last_ms: now_ms }
    }
}

#[derive(Debug, Clone)]
struct Sig {
    model: u64,
    input: u64,
    count: u32,
    first_ms: i64,
    ids: Vec<String>,
    flagged: bool,
}

#[derive(Debug, Clone, Default)]
struct TraceState {
    last_ms: i64,
    sigs: VecDeque<Sig>,
    last_input: u64,
    run_start: u64,
    run_len: u32,
    run_ids: VecDeque<String>,
    growth_flagged: bool,
}

#[derive(Debug, Clone, Default)]
struct Retries {
    recent: VecDeque<(i64, String)>,
    quiet_until: i64,
}

/// The detector. Feed it rows with [`Detector::observe`].
#[derive(Debug)]
pub struct Detector {
    cfg: DetectorConfig,
    series: [crate::FastMap<String, Series>; 5],
    traces: crate::FastMap<String, TraceState>,
    retries: crate::FastMap<String, Retries>,
    hasher: std::collections::hash_map::RandomState,
    seq: u64,
}

fn hour_of_day(hour: i64) -> usize {
    hour.rem_euclid(24) as usize
}

fn usd(nanos: f64) -> Money {
    Money::from_nanos(nanos.round() as i64)
}

fn hhmm(hour: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(hour * HOUR_MS)
        .map(|t| t.format("%Y-%m-%d %H:00 UTC").to_string())
        .unwrap_or_default()
}

impl Detector {
    pub fn new(cfg: DetectorConfig) -> Detector {
        Detector {
            cfg,
            series: Default::default(),
            traces: Default::default(),
            retries: Default::default(),
            hasher: Default::default(),
            seq: 0,
        }
    }

    pub fn config(&self) -> &DetectorConfig {
        &self.cfg
    }

    fn next_id(&mut self, at_ms: i64) -> String {
        self.seq += 1;
        format!("an_{at_ms:x}_{}", self.seq)
    }

    /// Feeds one finished request; returns what it revealed (usually nothing).
    pub fn observe(&mut self, row: &LedgerRow) -> Vec<Anomaly> {
        let mut out = Vec::new();
        let cost = row.cost.map_or(0, Money::nanos);
        for d in Dim::ALL {
            if let Some(v) = d.of(row) {
                if let Some((observed, expected, hour)) = self.spend(d, v, row.time_ms, cost) {
                    let id = self.next_id(row.time_ms);
                    out.push(Anomaly {
                        id,
                        kind: Kind::SpendSpike,
                        dimension: d.as_str(),
                        value: v.to_string(),
                        team: row.attribution.tag("team").map(String::from),
                detected_at_ms: row.time_ms,
                        observed: observed.to_string(),
                        expected: expected.to_string(),
                        unit: "usd",
                        message: format!(
                            "{} {v} spent ${observed} in the hour from {}, against about ${expected} usual for that hour of the day",
                            d.as_str(),
                            hhmm(hour)
                        ),
                        request_ids: Vec::new(),
                        filter: format!("{}:{v}", d.as_str()),
                        window_ms: Some((hour * HOUR_MS, (hour + 1) * HOUR_MS)),
                    });
                }
            }
        }
        if let Some(t) = row.attribution.trace_id.as_deref() {
            self.trace(t, row, &mut out);
        }
        if let Some(k) = row.key_id.as_deref() {
            self.retry(k, row, &mut out);
        }
        out
    }

    /// Adds spend to a series; `Some((observed, expected, hour))` when it just became a spike.
    fn spend(&mut self, d: Dim, v: &str, now_ms: i64, cost: i64) -> Option<(Money, Money, i64)> {
        let cfg = &self.cfg;
        let hour = now_ms.div_euclid(HOUR_MS);
        let map = &mut self.series[d as usize];
        if !map.contains_key(v) {
            if map.len() >= cfg.max_series {
                evict_oldest(map, |s| s.last_ms);
            }
            map.insert(v.to_string(), Series::new(hour, now_ms));
        }
        let s = map.get_mut(v)?;
        s.last_ms = s.last_ms.max(now_ms);
        if hour > s.hour {
            roll(cfg, s, hour);
        }
        s.spend = s.spend.saturating_add(cost);
        let slot = s.slots[hour_of_day(s.hour)];
        if slot.n < cfg.min_days || s.flagged_hour == Some(s.hour) {
            return None;
        }
        let x = s.spend as f64;
        let threshold = slot.mean + cfg.k * slot.dev.max(cfg.rel_floor * slot.mean);
        if x > threshold && x - slot.mean >= cfg.min_excess.nanos() as f64 {
            s.flagged_hour = Some(s.hour);
            return Some((Money::from_nanos(s.spend), usd(slot.mean), s.hour));
        }
        None
    }

    fn trace(&mut self, t: &str, row: &LedgerRow, out: &mut Vec<Anomaly>) {
        let input = row.usage.input_tokens();
        if input == 0 {
            return;
        }
        if !self.traces.contains_key(t) {
            if self.traces.len() >= self.cfg.max_traces {
                let idle = row.time_ms - self.cfg.trace_idle_ms;
                self.traces.retain(|_, s| s.last_ms >= idle);
                if self.traces.len() >= self.cfg.max_traces {
                    evict_oldest(&mut self.traces, |s| s.last_ms);
                }
            }
            self.traces.insert(t.to_string(), TraceState::default());
        }
        let model = self.hasher.hash_one(&row.model);
        let cfg = self.cfg.clone();
        let Some(s) = self.traces.get_mut(t) else { return };
        s.last_ms = s.last_ms.max(row.time_ms);
        let mut found = Vec::new();

        // The same prompt again.
        let pos = s.sigs.iter().position(|g| g.model == model && g.input == input);
        let sig = match pos {
            Some(i) => &mut s.sigs[i],
            None => {
                if s.sigs.len() >= 64 {
                    s.sigs.pop_front();
                }
                s.sigs.push_back(Sig {
                    model,
                    input,
                    count: 0,
                    first_ms: row.time_ms,
                    ids: Vec::new(),
                    flagged: false,
                });
                let last = s.sigs.len() - 1;
                &mut s.sigs[last]
            }
        };
        if row.time_ms - sig.first_ms > cfg.loop_window_ms {
            *sig = Sig { model, input, count: 0, first_ms: row.time_ms, ids: Vec::new(), flagged: false };
        }
        sig.count += 1;
        if sig.ids.len() < MAX_IDS {
            sig.ids.push(row.request_id.clone());
        }
        if sig.count >= cfg.loop_repeats && !sig.flagged {
            sig.flagged = true;
            found.push((
                Kind::Loop,
                sig.count.to_string(),
                "1".to_string(),
                "requests",
                format!(
                    "trace {t}: the same prompt ({input} input tokens, model {}) was sent {} times in {} s",
                    row.model.as_deref().unwrap_or("?"),
                    sig.count,
                    (row.time_ms - sig.first_ms) / 1000
                ),
                sig.ids.clone(),
            ));
        }

        // Context growing turn over turn.
        if s.run_len > 0 && input > s.last_input {
            s.run_len += 1;
        } else {
            s.run_start = input;
            s.run_len = 1;
            s.run_ids.clear();
        }
        s.last_input = input;
        if s.run_ids.len() >= MAX_IDS {
            s.run_ids.pop_front();
        }
        s.run_ids.push_back(row.request_id.clone());
        if !s.growth_flagged && s.run_len >= cfg.growth_turns && input >= s.run_start.saturating_mul(cfg.growth_factor)
        {
            s.growth_flagged = true;
            found.push((
                Kind::TokenGrowth,
                input.to_string(),
                s.run_start.to_string(),
                "input_tokens",
                format!(
                    "trace {t}: input grew from {} to {input} tokens over {} consecutive turns",
                    s.run_start, s.run_len
                ),
                s.run_ids.iter().cloned().collect(),
            ));
        }

        for (kind, observed, expected, unit, message, request_ids) in found {
            let id = self.next_id(row.time_ms);
            out.push(Anomaly {
                id,
                kind,
                dimension: "trace",
                value: t.to_string(),
                team: row.attribution.tag("team").map(String::from),
                detected_at_ms: row.time_ms,
                observed,
                expected,
                unit,
                message,
                request_ids,
                filter: format!("trace:{t}"),
                window_ms: None,
            });
        }
    }

    fn retry(&mut self, key: &str, row: &LedgerRow, out: &mut Vec<Anomaly>) {
        let failed = row.attempts > 1 && (row.status == 429 || row.status >= 500);
        if !failed {
            return;
        }
        if !self.retries.contains_key(key) {
            if self.retries.len() >= self.cfg.max_series {
                evict_oldest(&mut self.retries, |r| r.recent.back().map_or(i64::MIN, |x| x.0));
            }
            self.retries.insert(key.to_string(), Retries::default());
        }
        let cfg = &self.cfg;
        let Some(r) = self.retries.get_mut(key) else { return };
        let since = row.time_ms - cfg.retry_window_ms;
        while r.recent.front().is_some_and(|(t, _)| *t < since) {
            r.recent.pop_front();
        }
        r.recent.push_back((row.time_ms, row.request_id.clone()));
        while r.recent.len() > MAX_IDS {
            r.recent.pop_front();
        }
        if r.recent.len() >= cfg.retry_errors && row.time_ms >= r.quiet_until {
            r.quiet_until = row.time_ms + cfg.retry_cooldown_ms;
            let n = r.recent.len();
            let ids = r.recent.iter().map(|(_, id)| id.clone()).collect();
            let message = format!(
                "key {key}: {n} failed requests that needed retries in the last {} s (last error: {})",
                cfg.retry_window_ms / 1000,
                row.error_code.as_deref().unwrap_or("?")
            );
            let expected = (cfg.retry_errors - 1).to_string();
            let id = self.next_id(row.time_ms);
            out.push(Anomaly {
                id,
                kind: Kind::RetrySpiral,
                dimension: "key",
                value: key.to_string(),
                team: row.attribution.tag("team").map(String::from),
                detected_at_ms: row.time_ms,
                observed: n.to_string(),
                expected,
                unit: "failed_requests",
                message,
                request_ids: ids,
                filter: format!("key:{key}"),
                window_ms: Some((since, row.time_ms + 1)),
            });
        }
    }
}

/// Closes the series' current hour and any empty hours up to `hour`.
fn roll(cfg: &DetectorConfig, s: &mut Series, hour: i64) {
    let closed = s.spend as f64;
    learn(cfg, &mut s.slots[hour_of_day(s.hour)], closed);
    // Hours without a row spent nothing; a week of them is all a slot can learn from.
    let first_empty = (s.hour + 1).max(hour - 24 * 7);
    for h in first_empty..hour {
        learn(cfg, &mut s.slots[hour_of_day(h)], 0.0);
    }
    s.hour = hour;
    s.spend = 0;
}

fn learn(cfg: &DetectorConfig, slot: &mut Slot, x: f64) {
    if slot.n == 0 {
        *slot = Slot { mean: x, dev: 0.0, n: 1 };
        return;
    }
    // Early days weigh equally; later ones decay with `alpha`.
    let a = (1.0 / f64::from(slot.n + 1)).max(cfg.alpha);
    let x = if slot.n >= cfg.min_days { x.min(slot.mean + cfg.k * slot.dev.max(cfg.rel_floor * slot.mean)) } else { x };
    slot.dev = (1.0 - a) * slot.dev + a * (x - slot.mean).abs();
    slot.mean = (1.0 - a) * slot.mean + a * x;
    slot.n = slot.n.saturating_add(1);
}

/// Forgets the idlest tenth of a full map at once, so a flood of new names
/// costs one scan per many insertions rather than one per insertion.
fn evict_oldest<V>(map: &mut crate::FastMap<String, V>, age: impl Fn(&V) -> i64) {
    let mut ages: Vec<i64> = map.values().map(&age).collect();
    if ages.is_empty() {
        return;
    }
    let n = (ages.len() / 10).max(1);
    let (_, cut, _) = ages.select_nth_unstable(n - 1);
    let cut = *cut;
    let mut left = n;
    map.retain(|_, v| {
        if left > 0 && age(v) <= cut {
            left -= 1;
            false
        } else {
            true
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribution::Attribution;
    use crate::ledger::UsageSource;
    use tollgate_units::Usage;

    fn row(id: &str, t: i64, cost_nanos: i64) -> LedgerRow {
        let mut a = Attribution::default();
        a.tags.insert("team".into(), "growth".into());
        LedgerRow {
            request_id: id.into(),
            time_ms: t,
            key_id: Some("key_1".into()),
            endpoint: crate::record::Endpoint::ChatCompletions,
            requested_model: Some("gpt-4o".into()),
            model: Some("gpt-4o".into()),
            provider: Some("openai".into()),
            status: 200,
            error_code: None,
            usage: Usage { input: 100, output: 10, ..Usage::default() },
            usage_source: UsageSource::Provider,
            cost: Some(Money::from_nanos(cost_nanos)),
            cache_savings: Money::ZERO,
            response_cache_savings: Money::ZERO,
            tool_cost: Money::ZERO,
            provider_cost: None,
            streamed: false,
            client_disconnected: false,
            cache: crate::record::CacheOutcome::Off,
            latency_ms: 10,
            ttft_ms: None,
            attempts: 1,
            prefix_hash: None,
            attempt_log: Vec::new(),
            attribution: a,
        }
    }

    #[test]
    fn the_first_hour_of_a_new_series_never_flags() {
        let mut d = Detector::new(DetectorConfig::default());
        assert!(d.observe(&row("a", 0, 1_000_000_000_000)).is_empty());
    }

    #[test]
    fn a_full_map_forgets_its_idlest_tenth() {
        let mut m: crate::FastMap<String, i64> = (0..20).map(|i| (format!("k{i}"), i)).collect();
        evict_oldest(&mut m, |v| *v);
        assert_eq!(m.len(), 18);
        assert!(!m.contains_key("k0") && !m.contains_key("k1") && m.contains_key("k2"));
    }

    #[test]
    fn empty_hours_teach_zero_spend() {
        let cfg = DetectorConfig::default();
        let mut s = Series::new(0, 0);
        s.spend = 100;
        roll(&cfg, &mut s, 3);
        assert_eq!(s.slots[0].mean, 100.0);
        assert_eq!((s.slots[1].n, s.slots[1].mean), (1, 0.0));
        assert_eq!((s.slots[2].n, s.slots[3].n), (1, 0));
        assert_eq!((s.hour, s.spend), (3, 0));
    }
}
