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
//!
//! **Incidents.** One burst shows in several series at once (its key, its
//! team, its feature, its model, its agent), so the detector files every
//! finding under an incident: a finding revealed by a row that already
//! belongs to an incident of the same hour (a series of that row was reported
//! this hour, or its trace's or key's loop or retry finding was) joins it;
//! otherwise it opens a new one. [`IncidentBook`] keeps each incident's
//! summary: named after its most specific cause (see [`specificity`]), the
//! other dimensions listed, and its excess: the largest `spend − usual` among
//! its series, which keeps growing while the burst goes on (the dimensions
//! describe the same dollars, so they are never summed).

use std::collections::VecDeque;
use std::hash::BuildHasher;

use tollgate_units::Money;

use crate::ledger::LedgerRow;

const HOUR_MS: i64 = 3_600_000;
/// Request ids kept per finding (and per incident).
const MAX_IDS: usize = 50;
/// Request ids a spend series keeps of its current hour: the latest rows
/// that came while its spend was above the usual, so a spike can name the
/// requests behind it. Small, as every series keeps them.
const SPIKE_IDS: usize = 16;
/// Incidents an [`IncidentBook`] keeps by default (the oldest go first).
pub const MAX_INCIDENTS: usize = 1_000;

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
    /// Most specific first; see [`specificity`].
    pub const BY_SPECIFICITY: [Dim; 5] = [Dim::Key, Dim::Feature, Dim::Agent, Dim::Team, Dim::Model];

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

/// How closely a dimension points at what to act on: lower is more
/// specific, and an incident is named after its most specific dimension.
///
/// - `trace`: one agent run, the narrowest thing a finding can be about.
/// - `key`: one credential of one deployed application, the thing that can be
///   revoked, rate-limited or given a budget at once.
/// - `feature`: one code path, which may run under several keys (staging and
///   production, or a shared service key).
/// - `agent`: one agent program, which may serve several features.
/// - `team`: an organisational unit owning many keys and features.
/// - `model`: shared by everyone; a spike there says little about who.
pub fn specificity(dimension: &str) -> usize {
    match dimension {
        "trace" => 0,
        "key" => 1,
        "feature" => 2,
        "agent" => 3,
        "team" => 4,
        "model" => 5,
        _ => 6,
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
    /// For spend spikes: `observed − expected` when it was reported.
    pub excess: Option<Money>,
    /// The incident it is filed under (findings revealed by the same
    /// requests in the same hour share one).
    pub incident: String,
}

/// A spend spike already reported this hour that a later row added to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Growth {
    pub incident: String,
    /// The series' `spend − expected` so far this hour (the largest, when
    /// the row added to several series of the incident).
    pub excess: Money,
    pub at_ms: i64,
    pub request_id: String,
}

/// What one row revealed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    /// New findings (usually none).
    pub anomalies: Vec<Anomaly>,
    /// Incidents whose spend this row added to.
    pub growth: Vec<Growth>,
}

impl Findings {
    pub fn is_empty(&self) -> bool {
        self.anomalies.is_empty() && self.growth.is_empty()
    }
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
    /// Days of history an hour-of-day slot needs before it can flag (a
    /// series seen for the first time has none: it never flags at once).
    /// `[anomalies] min_history_days`.
    pub min_days: u32,
    /// A spike must also exceed the expected spend by this much.
    /// `[anomalies] min_excess_usd`.
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
            min_days: crate::config::DEFAULT_ANOMALY_MIN_DAYS,
            min_excess: crate::config::DEFAULT_ANOMALY_MIN_EXCESS,
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
    /// The latest rows of `hour` that came while its spend was above the usual.
    over_ids: VecDeque<String>,
    /// While `flagged_hour` is `hour`: the incident its spike was filed
    /// under, and the expected spend it was compared with (nano-dollars).
    incident: Option<String>,
    expected: i64,
}

impl Series {
    fn new(hour: i64, now_ms: i64) -> Series {
        Series {
            hour,
            spend: 0,
            slots: [Slot::default(); 24],
            flagged_hour: None,
            last_ms: now_ms,
            over_ids: VecDeque::new(),
            incident: None,
            expected: 0,
        }
    }
}

/// What adding a row's cost did to one series.
enum Spend {
    Quiet,
    /// It just crossed its threshold.
    Spike {
        observed: Money,
        expected: Money,
        hour: i64,
        ids: Vec<String>,
    },
    /// It was reported earlier this hour: its incident and excess now.
    Over {
        incident: String,
        excess: Money,
    },
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
    /// The hour and incident of its last finding.
    incident: Option<(i64, String)>,
}

#[derive(Debug, Clone, Default)]
struct Retries {
    recent: VecDeque<(i64, String)>,
    quiet_until: i64,
    /// The hour and incident of its last finding.
    incident: Option<(i64, String)>,
}

/// The incident id recorded for `hour`, if that is the hour it was recorded in.
fn this_hour(recorded: Option<&(i64, String)>, hour: i64) -> Option<String> {
    recorded.filter(|(h, _)| *h == hour).map(|(_, id)| id.clone())
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

    /// The incident the row already belongs to, else a new one (which the
    /// rest of the row's findings then join).
    fn link_or_open(&mut self, link: &mut Option<String>, at_ms: i64) -> String {
        if let Some(id) = link {
            return id.clone();
        }
        self.seq += 1;
        let id = format!("inc_{at_ms:x}_{}", self.seq);
        *link = Some(id.clone());
        id
    }

    /// Feeds one finished request; returns what it revealed (usually nothing).
    pub fn observe(&mut self, row: &LedgerRow) -> Vec<Anomaly> {
        self.findings(row).anomalies
    }

    /// Feeds one finished request; returns the findings it revealed, each
    /// filed under an incident, and the incidents whose spend it added to.
    pub fn findings(&mut self, row: &LedgerRow) -> Findings {
        let mut out = Findings::default();
        let cost = row.cost.map_or(0, Money::nanos);
        let hour = row.time_ms.div_euclid(HOUR_MS);
        // The incident this row already belongs to: one of its series was
        // reported earlier this hour (the most specific first), else its
        // trace's or its key's finding of this hour.
        let mut link: Option<String> = None;
        let mut spikes = Vec::new();
        for d in Dim::BY_SPECIFICITY {
            let Some(v) = d.of(row) else { continue };
            match self.spend(d, v, row, cost) {
                Spend::Quiet => {}
                Spend::Spike { observed, expected, hour, ids } => spikes.push((d, v, observed, expected, hour, ids)),
                Spend::Over { incident, excess } => {
                    match out.growth.iter_mut().find(|g| g.incident == incident) {
                        Some(g) => g.excess = g.excess.max(excess),
                        None => out.growth.push(Growth {
                            incident: incident.clone(),
                            excess,
                            at_ms: row.time_ms,
                            request_id: row.request_id.clone(),
                        }),
                    }
                    if link.is_none() {
                        link = Some(incident);
                    }
                }
            }
        }
        if link.is_none() {
            let trace = row.attribution.trace_id.as_deref().and_then(|t| self.traces.get(t));
            link = trace.and_then(|s| this_hour(s.incident.as_ref(), hour));
        }
        if link.is_none() {
            let retries = row.key_id.as_deref().and_then(|k| self.retries.get(k));
            link = retries.and_then(|r| this_hour(r.incident.as_ref(), hour));
        }
        for (d, v, observed, expected, spike_hour, ids) in spikes {
            let incident = self.link_or_open(&mut link, row.time_ms);
            if let Some(s) = self.series[d as usize].get_mut(v) {
                s.incident = Some(incident.clone());
            }
            let id = self.next_id(row.time_ms);
            out.anomalies.push(Anomaly {
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
                    hhmm(spike_hour)
                ),
                request_ids: ids,
                filter: format!("{}:{v}", d.as_str()),
                window_ms: Some((spike_hour * HOUR_MS, (spike_hour + 1) * HOUR_MS)),
                excess: Some(observed.saturating_sub(expected)),
                incident,
            });
        }
        if let Some(t) = row.attribution.trace_id.as_deref() {
            self.trace(t, row, &mut link, &mut out.anomalies);
        }
        if let Some(k) = row.key_id.as_deref() {
            self.retry(k, row, &mut link, &mut out.anomalies);
        }
        out
    }

    /// Adds spend to a series.
    fn spend(&mut self, d: Dim, v: &str, row: &LedgerRow, cost: i64) -> Spend {
        let cfg = &self.cfg;
        let now_ms = row.time_ms;
        let hour = now_ms.div_euclid(HOUR_MS);
        let map = &mut self.series[d as usize];
        if !map.contains_key(v) {
            if map.len() >= cfg.max_series {
                evict_oldest(map, |s| s.last_ms);
            }
            map.insert(v.to_string(), Series::new(hour, now_ms));
        }
        let Some(s) = map.get_mut(v) else { return Spend::Quiet };
        s.last_ms = s.last_ms.max(now_ms);
        if hour > s.hour {
            roll(cfg, s, hour);
        }
        s.spend = s.spend.saturating_add(cost);
        if s.flagged_hour == Some(s.hour) {
            return match &s.incident {
                Some(incident) => Spend::Over {
                    incident: incident.clone(),
                    excess: Money::from_nanos(s.spend.saturating_sub(s.expected)),
                },
                None => Spend::Quiet,
            };
        }
        // Without `min_days` of history for this hour of the day there is no
        // baseline to compare with (a series seen for the first time has none).
        let slot = s.slots[hour_of_day(s.hour)];
        if slot.n < cfg.min_days {
            return Spend::Quiet;
        }
        let x = s.spend as f64;
        if x > slot.mean {
            if s.over_ids.len() >= SPIKE_IDS {
                s.over_ids.pop_front();
            }
            s.over_ids.push_back(row.request_id.clone());
        }
        // The statistics are floats; the dollars compared and reported are not.
        let threshold = slot.mean + cfg.k * slot.dev.max(cfg.rel_floor * slot.mean);
        let observed = Money::from_nanos(s.spend);
        let expected = usd(slot.mean);
        if x > threshold && observed.saturating_sub(expected) >= cfg.min_excess {
            s.flagged_hour = Some(s.hour);
            s.expected = expected.nanos();
            return Spend::Spike { observed, expected, hour: s.hour, ids: s.over_ids.iter().cloned().collect() };
        }
        Spend::Quiet
    }

    fn trace(&mut self, t: &str, row: &LedgerRow, link: &mut Option<String>, out: &mut Vec<Anomaly>) {
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
        let hour = row.time_ms.div_euclid(HOUR_MS);
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
        if found.is_empty() {
            return;
        }
        if link.is_none() {
            *link = this_hour(s.incident.as_ref(), hour);
        }
        let incident = self.link_or_open(link, row.time_ms);
        if let Some(s) = self.traces.get_mut(t) {
            s.incident = Some((hour, incident.clone()));
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
                excess: None,
                incident: incident.clone(),
            });
        }
    }

    fn retry(&mut self, key: &str, row: &LedgerRow, link: &mut Option<String>, out: &mut Vec<Anomaly>) {
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
        let hour = row.time_ms.div_euclid(HOUR_MS);
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
            if link.is_none() {
                *link = this_hour(r.incident.as_ref(), hour);
            }
            let incident = self.link_or_open(link, row.time_ms);
            if let Some(r) = self.retries.get_mut(key) {
                r.incident = Some((hour, incident.clone()));
            }
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
                excess: None,
                incident,
            });
        }
    }
}

/// Findings revealed by the same requests in the same hour, as one thing to
/// act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incident {
    pub id: String,
    /// Its most specific dimension (see [`specificity`]) and that
    /// dimension's value: what drove it.
    pub dimension: &'static str,
    pub value: String,
    /// `"{dimension} {value}"`: `key key_ab12`, `feature search`.
    pub name: String,
    /// Every `(dimension, value)` involved, most specific first.
    pub dimensions: Vec<(&'static str, String)>,
    /// Its kinds of finding, in the order they were seen.
    pub kinds: Vec<Kind>,
    /// The `team` tag of the first request that revealed it.
    pub team: Option<String>,
    /// The largest `spend − usual` among its spend spikes, so far this hour;
    /// `None` without a spend spike. The dimensions describe the same
    /// dollars, so they are never summed.
    pub excess: Option<Money>,
    /// The message of the finding that names it.
    pub message: String,
    /// A request-log filter (`key:key_ab12`) selecting the requests of its cause.
    pub filter: String,
    /// The requests behind it (at most 50).
    pub requests: Vec<String>,
    /// Its findings' ids (at most 50).
    pub anomalies: Vec<String>,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    /// The span its findings cover, `[from, to)` Unix ms, when they have one.
    pub window_ms: Option<(i64, i64)>,
}

impl Incident {
    fn open(a: &Anomaly) -> Incident {
        let mut i = Incident {
            id: a.incident.clone(),
            dimension: a.dimension,
            value: a.value.clone(),
            name: format!("{} {}", a.dimension, a.value),
            dimensions: Vec::new(),
            kinds: Vec::new(),
            team: None,
            excess: None,
            message: a.message.clone(),
            filter: a.filter.clone(),
            requests: Vec::new(),
            anomalies: Vec::new(),
            first_seen_ms: a.detected_at_ms,
            last_seen_ms: a.detected_at_ms,
            window_ms: None,
        };
        i.absorb(a);
        i
    }

    fn absorb(&mut self, a: &Anomaly) {
        if specificity(a.dimension) < specificity(self.dimension) {
            self.dimension = a.dimension;
            self.value = a.value.clone();
            self.name = format!("{} {}", a.dimension, a.value);
            self.message = a.message.clone();
            self.filter = a.filter.clone();
        }
        if !self.dimensions.iter().any(|(d, v)| *d == a.dimension && *v == a.value) {
            self.dimensions.push((a.dimension, a.value.clone()));
            // Stable: values of one dimension stay in the order they were seen.
            self.dimensions.sort_by_key(|(d, _)| specificity(d));
        }
        if !self.kinds.contains(&a.kind) {
            self.kinds.push(a.kind);
        }
        if self.team.is_none() {
            self.team = a.team.clone();
        }
        if let Some(x) = a.excess {
            self.raise(x);
        }
        for id in &a.request_ids {
            self.add_request(id);
        }
        if self.anomalies.len() < MAX_IDS {
            self.anomalies.push(a.id.clone());
        }
        self.first_seen_ms = self.first_seen_ms.min(a.detected_at_ms);
        self.last_seen_ms = self.last_seen_ms.max(a.detected_at_ms);
        if let Some((from, to)) = a.window_ms {
            self.window_ms = Some(match self.window_ms {
                Some((f, t)) => (f.min(from), t.max(to)),
                None => (from, to),
            });
        }
    }

    fn raise(&mut self, excess: Money) {
        self.excess = Some(self.excess.map_or(excess, |e| e.max(excess)));
    }

    fn add_request(&mut self, id: &str) {
        if self.requests.len() < MAX_IDS && !self.requests.iter().any(|r| r == id) {
            self.requests.push(id.to_string());
        }
    }

    /// One line: its name, excess and the other dimensions involved.
    pub fn summary(&self) -> String {
        let mut s = match self.excess {
            Some(e) => format!("{}: {} above the usual spend", self.name, dollars(e)),
            None => {
                let kinds: Vec<&str> = self.kinds.iter().map(|k| k.as_str()).collect();
                format!("{}: {}", self.name, kinds.join(", "))
            }
        };
        let also: Vec<String> = self
            .dimensions
            .iter()
            .filter(|(d, v)| !(*d == self.dimension && *v == self.value))
            .map(|(d, v)| format!("{d} {v}"))
            .collect();
        if !also.is_empty() {
            s.push_str(" (also ");
            s.push_str(&also.join(", "));
            s.push(')');
        }
        s
    }
}

/// Dollars to the cent, for messages (`$3.50`); the exact amount is in the fields.
fn dollars(m: Money) -> String {
    let cents = (i128::from(m.nanos()) + 5_000_000).div_euclid(10_000_000);
    format!("${}.{:02}", cents.div_euclid(100), cents.rem_euclid(100))
}

/// Largest excess first (incidents without a spend spike count as $0), then
/// the most recent.
pub fn rank(incidents: &mut [Incident]) {
    incidents.sort_by(|a, b| {
        let excess = |i: &Incident| i.excess.unwrap_or(Money::ZERO);
        excess(b).cmp(&excess(a)).then(b.last_seen_ms.cmp(&a.last_seen_ms))
    });
}

/// The recent incidents, built from the detector's findings as they come.
#[derive(Debug)]
pub struct IncidentBook {
    list: VecDeque<Incident>,
    cap: usize,
}

impl Default for IncidentBook {
    fn default() -> Self {
        IncidentBook::new(MAX_INCIDENTS)
    }
}

impl IncidentBook {
    /// Keeps at most `cap` incidents (at least one).
    pub fn new(cap: usize) -> IncidentBook {
        IncidentBook { list: VecDeque::new(), cap: cap.max(1) }
    }

    /// Files a finding under its incident. Returns whether it opened the
    /// incident, and the incident as it now stands.
    pub fn file(&mut self, a: &Anomaly) -> (bool, Incident) {
        if let Some(i) = self.list.iter_mut().rev().find(|i| i.id == a.incident) {
            i.absorb(a);
            return (false, i.clone());
        }
        if self.list.len() >= self.cap {
            self.list.pop_front();
        }
        let i = Incident::open(a);
        self.list.push_back(i.clone());
        (true, i)
    }

    /// Spend added to an incident's series after it was reported.
    pub fn grow(&mut self, g: &Growth) {
        if let Some(i) = self.list.iter_mut().rev().find(|i| i.id == g.incident) {
            i.raise(g.excess);
            i.last_seen_ms = i.last_seen_ms.max(g.at_ms);
            i.add_request(&g.request_id);
        }
    }

    /// Files one row's findings: its new findings, then the growth of
    /// incidents filed before. Returns, for each new finding, whether it
    /// opened its incident and the incident as it then stood.
    pub fn apply(&mut self, f: &Findings) -> Vec<(bool, Incident)> {
        let filed = f.anomalies.iter().map(|a| self.file(a)).collect();
        for g in &f.growth {
            self.grow(g);
        }
        filed
    }

    pub fn get(&self, id: &str) -> Option<&Incident> {
        self.list.iter().rev().find(|i| i.id == id)
    }

    /// Newest first.
    pub fn recent(&self) -> Vec<Incident> {
        self.list.iter().rev().cloned().collect()
    }

    /// Largest excess first (see [`rank`]).
    pub fn ranked(&self) -> Vec<Incident> {
        let mut v = self.recent();
        rank(&mut v);
        v
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
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
    s.over_ids.clear();
    s.incident = None;
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

    const HOUR: i64 = HOUR_MS;
    const DAY: i64 = 24 * HOUR;
    /// 2025-01-06 00:00 UTC.
    const T0: i64 = 1_736_121_600_000;
    /// Nano-dollars in a cent.
    const CENT: i64 = 10_000_000;

    /// Who a row is attributed to.
    #[derive(Clone, Copy)]
    struct Who {
        key: &'static str,
        team: &'static str,
        feature: &'static str,
        model: &'static str,
        agent: Option<&'static str>,
    }

    const K1: Who = Who { key: "key_1", team: "growth", feature: "search", model: "gpt-4o", agent: Some("a1") };
    const K2: Who = Who { key: "key_2", team: "growth", feature: "other", model: "gpt-4o", agent: None };

    fn paid(id: &str, t: i64, cents: i64, w: Who) -> LedgerRow {
        let mut r = row(id, t, cents * CENT);
        r.key_id = Some(w.key.into());
        r.model = Some(w.model.into());
        r.requested_model = Some(w.model.into());
        r.attribution.tags.insert("team".into(), w.team.into());
        r.attribution.tags.insert("feature".into(), w.feature.into());
        r.attribution.agent = w.agent.map(String::from);
        r
    }

    /// Feeds a row to the detector and files what it found; returns the new findings.
    fn feed(d: &mut Detector, book: &mut IncidentBook, r: &LedgerRow) -> Vec<Anomaly> {
        let f = d.findings(r);
        book.apply(&f);
        f.anomalies
    }

    /// Days 0 to 3 at 10:00 UTC: key_1 (feature search, agent a1) spends
    /// $0.50 at 10:00 and key_2 (feature other, no agent) $1.00 at 10:30,
    /// both team growth and model gpt-4o. Every day the same, so each 10:00
    /// slot learns a deviation of 0 and, after 4 days, a usual of:
    /// key_1, search, a1: $0.50; growth, gpt-4o: $1.50; key_2, other: $1.00.
    /// Thresholds (usual + k × max(deviation, 10 % of usual), k = 4):
    /// $0.70, $2.10 and $1.40.
    fn baseline(d: &mut Detector, book: &mut IncidentBook) {
        for day in 0..4 {
            let t = T0 + day * DAY + 10 * HOUR;
            assert!(feed(d, book, &paid(&format!("a{day}"), t, 50, K1)).is_empty());
            assert!(feed(d, book, &paid(&format!("b{day}"), t + 30 * 60_000, 100, K2)).is_empty());
        }
    }

    fn money(cents: i64) -> Money {
        Money::from_nanos(cents * CENT)
    }

    #[test]
    fn a_burst_on_one_key_is_one_incident_named_after_the_key() {
        let cfg = DetectorConfig::default();
        assert_eq!((cfg.min_days, cfg.min_excess, cfg.k, cfg.rel_floor), (3, Money::from_usd(1), 4.0, 0.1));
        let mut d = Detector::new(cfg);
        let mut book = IncidentBook::default();
        baseline(&mut d, &mut book);
        assert!(book.is_empty());

        // Day 4, 10:01 to 10:05: key_1 sends five rows of $0.80.
        //   key_1, search, a1 (usual $0.50, threshold $0.70, and the excess must reach $1.00):
        //     r1 $0.80 (excess $0.30: no), r2 $1.60 (excess $1.10: spike, three series at once).
        //   growth, gpt-4o (usual $1.50, threshold $2.10):
        //     r2 $1.60, r3 $2.40 (above $2.10 but excess $0.90: no), r4 $3.20 (excess $1.70: spike).
        //   After r5: key_1 spent $4.00, excess $4.00 − $0.50 = $3.50;
        //             growth spent $4.00, excess $4.00 − $1.50 = $2.50.
        // The incident's excess is the largest, $3.50 (summed over the five
        // series it would be 3 × $3.50 + 2 × $2.50 = $15.50 for $4.00 spent).
        let burst = T0 + 4 * DAY + 10 * HOUR;
        let mut found: Vec<Vec<Anomaly>> = Vec::new();
        for i in 1..=5 {
            found.push(feed(&mut d, &mut book, &paid(&format!("burst-{i}"), burst + i * 60_000, 80, K1)));
        }
        let dims = |v: &Vec<Anomaly>| v.iter().map(|a| a.dimension).collect::<Vec<_>>();
        assert_eq!(
            found.iter().map(dims).collect::<Vec<_>>(),
            [vec![], vec!["key", "feature", "agent"], vec![], vec!["team", "model"], vec![]]
        );
        let all: Vec<&Anomaly> = found.iter().flatten().collect();
        assert!(all.iter().all(|a| a.kind == Kind::SpendSpike && a.incident == all[0].incident));
        let key = all[0];
        assert_eq!((key.observed.as_str(), key.expected.as_str()), ("1.600000000", "0.500000000"));
        assert_eq!(key.excess, Some(money(110)));
        assert_eq!(key.request_ids, ["burst-1", "burst-2"]);
        let team = all[3];
        assert_eq!(
            (team.dimension, team.observed.as_str(), team.expected.as_str()),
            ("team", "3.200000000", "1.500000000")
        );

        assert_eq!(book.len(), 1);
        let inc = &book.ranked()[0];
        assert_eq!(inc.id, key.incident);
        assert_eq!((inc.name.as_str(), inc.dimension, inc.value.as_str()), ("key key_1", "key", "key_1"));
        assert_eq!(inc.filter, "key:key_1");
        let pairs: Vec<(&str, &str)> = inc.dimensions.iter().map(|(d, v)| (*d, v.as_str())).collect();
        assert_eq!(
            pairs,
            [("key", "key_1"), ("feature", "search"), ("agent", "a1"), ("team", "growth"), ("model", "gpt-4o")]
        );
        assert_eq!(inc.excess, Some(money(400).saturating_sub(money(50))));
        assert_eq!(inc.excess, Some(money(350)));
        assert_eq!(inc.kinds, [Kind::SpendSpike]);
        assert_eq!(inc.anomalies.len(), 5);
        assert_eq!(inc.requests, ["burst-1", "burst-2", "burst-3", "burst-4", "burst-5"]);
        assert_eq!((inc.first_seen_ms, inc.last_seen_ms), (burst + 2 * 60_000, burst + 5 * 60_000));
        assert_eq!(inc.window_ms, Some((burst, burst + HOUR)));
        assert_eq!(inc.team.as_deref(), Some("growth"));
        assert_eq!(
            inc.summary(),
            "key key_1: $3.50 above the usual spend (also feature search, agent a1, team growth, model gpt-4o)"
        );
    }

    #[test]
    fn a_new_series_with_no_baseline_raises_no_spend_spike() {
        // Everything new: $100 an hour for two days on a key, team, feature,
        // model and agent never seen before. No hour-of-day slot has the 3
        // days of history a baseline needs, so nothing is flagged.
        let mut d = Detector::new(DetectorConfig::default());
        let mut book = IncidentBook::default();
        let new = Who { key: "key_new", team: "ops", feature: "backfill", model: "new-model", agent: Some("bot") };
        for h in 0..48 {
            assert!(feed(&mut d, &mut book, &paid(&format!("n{h}"), T0 + h * HOUR, 100 * 100, new)).is_empty());
        }

        // A new key in an established team and model: after the baseline,
        // key_new (feature backfill, both first seen now) sends four rows of
        // $0.80 at 10:01..10:04. key_new and backfill have no history: no
        // spike. growth and gpt-4o (usual $1.50, threshold $2.10) reach
        // $3.20 at the fourth row, excess $1.70: they spike, and the incident
        // is named after the most specific of them, the team.
        let mut d = Detector::new(DetectorConfig::default());
        let mut book = IncidentBook::default();
        baseline(&mut d, &mut book);
        let newcomer = Who { key: "key_new", team: "growth", feature: "backfill", model: "gpt-4o", agent: None };
        let burst = T0 + 4 * DAY + 10 * HOUR;
        let found: Vec<Anomaly> = (1..=4)
            .flat_map(|i| feed(&mut d, &mut book, &paid(&format!("x{i}"), burst + i * 60_000, 80, newcomer)))
            .collect();
        assert_eq!(found.iter().map(|a| a.dimension).collect::<Vec<_>>(), ["team", "model"]);
        let inc = &book.recent()[0];
        assert_eq!((book.len(), inc.name.as_str(), inc.excess), (1, "team growth", Some(money(170))));
    }

    #[test]
    fn an_excess_below_the_minimum_raises_nothing() {
        // Day 4 at 10:01, key_1 spends $1.40: above its threshold ($0.70) but
        // only $1.40 − $0.50 = $0.90 above the usual, under the $1.00 minimum.
        // growth and gpt-4o: $1.40, under their threshold of $2.10.
        let mut d = Detector::new(DetectorConfig::default());
        let mut book = IncidentBook::default();
        baseline(&mut d, &mut book);
        let t = T0 + 4 * DAY + 10 * HOUR + 60_000;
        assert!(feed(&mut d, &mut book, &paid("r", t, 140, K1)).is_empty());
        assert!(book.is_empty());

        // With a $0.50 minimum the same row is a spike on key_1, search and
        // a1, excess $0.90.
        let mut d = Detector::new(DetectorConfig { min_excess: money(50), ..DetectorConfig::default() });
        let mut book = IncidentBook::default();
        baseline(&mut d, &mut book);
        let found = feed(&mut d, &mut book, &paid("r", t, 140, K1));
        assert_eq!(found.iter().map(|a| a.dimension).collect::<Vec<_>>(), ["key", "feature", "agent"]);
        assert_eq!(book.recent()[0].excess, Some(money(90)));
    }

    #[test]
    fn incidents_are_ranked_by_excess_dollars() {
        // Two unrelated keys, each with a usual of $0.50 (threshold $0.70)
        // in its own hour: a at 10:00, b at 09:00.
        let a = Who { key: "key_a", team: "ta", feature: "fa", model: "ma", agent: None };
        let b = Who { key: "key_b", team: "tb", feature: "fb", model: "mb", agent: None };
        let mut d = Detector::new(DetectorConfig::default());
        let mut book = IncidentBook::default();
        for day in 0..4 {
            feed(&mut d, &mut book, &paid(&format!("a{day}"), T0 + day * DAY + 10 * HOUR, 50, a));
            feed(&mut d, &mut book, &paid(&format!("b{day}"), T0 + day * DAY + 9 * HOUR, 50, b));
        }
        assert!(book.is_empty());
        // Day 4: b spends five rows of $0.80 from 09:01: $4.00, excess $3.50;
        // then a three rows of $0.80 from 10:01: $2.40, excess $1.90.
        for i in 1..=5 {
            feed(&mut d, &mut book, &paid(&format!("b-{i}"), T0 + 4 * DAY + 9 * HOUR + i * 60_000, 80, b));
        }
        for i in 1..=3 {
            feed(&mut d, &mut book, &paid(&format!("a-{i}"), T0 + 4 * DAY + 10 * HOUR + i * 60_000, 80, a));
        }
        let newest: Vec<(String, Option<Money>)> = book.recent().into_iter().map(|i| (i.name, i.excess)).collect();
        assert_eq!(newest, [("key key_a".to_string(), Some(money(190))), ("key key_b".to_string(), Some(money(350)))]);
        let ranked: Vec<String> = book.ranked().into_iter().map(|i| i.name).collect();
        assert_eq!(ranked, ["key key_b", "key key_a"]);
    }

    #[test]
    fn a_loop_and_the_spend_of_its_rows_are_one_incident() {
        // A trace repeating the same prompt five times is a loop; its rows
        // also push key_1 over its usual: both findings share the rows, so
        // they are one incident, named after the trace.
        let mut d = Detector::new(DetectorConfig::default());
        let mut book = IncidentBook::default();
        baseline(&mut d, &mut book);
        let burst = T0 + 4 * DAY + 10 * HOUR;
        for i in 1..=5 {
            let mut r = paid(&format!("l{i}"), burst + i * 1_000, 80, K1);
            r.attribution.trace_id = Some("run-1".into());
            feed(&mut d, &mut book, &r);
        }
        assert_eq!(book.len(), 1);
        let inc = &book.recent()[0];
        assert_eq!(inc.name, "trace run-1");
        assert_eq!(inc.kinds, [Kind::SpendSpike, Kind::Loop]);
        // key_1 spent $4.00 against $0.50.
        assert_eq!(inc.excess, Some(money(350)));
    }

    #[test]
    fn dollars_round_to_the_cent() {
        assert_eq!(dollars(Money::from_nanos(3_504_999_999)), "$3.50");
        assert_eq!(dollars(Money::from_nanos(3_505_000_000)), "$3.51");
        assert_eq!(dollars(Money::ZERO), "$0.00");
    }
}
