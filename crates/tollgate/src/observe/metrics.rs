//! Prometheus metrics: a few fixed-shape maps behind one mutex, updated once
//! per ledger row and rendered as the text exposition format.
//!
//! Labels are bounded by construction: endpoints, status classes, error
//! codes and token buckets are closed sets; providers come from the config;
//! a served model gets its own label only when it is configured or priced by
//! the catalog on a successful answer, and only up to [`MAX_MODELS`] names
//! (the rest are `other`). A team gets its own `team` label value only when
//! the configuration file names it (a `[[budgets]]` scope or a team admin
//! token), up to [`MAX_TEAMS`]; other team tags count as `other`.
//! Other tag values, users, keys and trace ids are never labels.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::sync::Mutex;

use tollgate_units::Money;

use crate::config::Config;
use crate::ledger::{LedgerRow, UsageSource};

/// Distinct served-model label values before new names become `other`.
pub const MAX_MODELS: usize = 64;
/// Distinct provider label values (providers come from the config).
pub const MAX_PROVIDERS: usize = 32;
/// Distinct budgets reported as gauges.
pub const MAX_BUDGETS: usize = 256;
/// Distinct team label values (teams named in the configuration file).
pub const MAX_TEAMS: usize = 64;

const ENDPOINTS: [&str; 5] = ["chat.completions", "embeddings", "responses", "messages", "other"];
const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];
/// The public error codes (docs/http-api.md), `none` for success, `other` for anything else.
const CODES: [&str; 15] = [
    "none",
    "invalid_request",
    "guardrail_violation",
    "invalid_api_key",
    "budget_exceeded",
    "model_not_allowed",
    "model_not_found",
    "forbidden",
    "request_too_large",
    "rate_limited",
    "upstream_rate_limited",
    "upstream_error",
    "upstream_timeout",
    "internal_error",
    "other",
];
const CACHE: [&str; 3] = ["hit", "miss", "off"];
/// The disjoint usage buckets, named after `Usage`'s fields.
const TOKEN_BUCKETS: [&str; 9] = [
    "input",
    "input_audio",
    "cache_read",
    "cache_write_5m",
    "cache_write_1h",
    "output",
    "output_audio",
    "output_image",
    "reasoning",
];
/// Histogram upper bounds in milliseconds (rendered in seconds).
const BOUNDS_MS: [u64; 14] = [5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 120_000];
/// Upper bounds of the gateway-overhead histogram, in milliseconds (the
/// ledger's latencies are whole milliseconds: `0.001` holds "under 1 ms").
const OVERHEAD_BOUNDS_MS: [u64; 12] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000];

const NONE: u16 = 0;
const OTHER: u16 = 1;

fn index_of(set: &[&str], v: &str) -> u8 {
    let last = set.len() - 1;
    set.iter().position(|s| *s == v).unwrap_or(last) as u8
}

fn class_of(status: u16) -> u8 {
    match status {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        500..=599 => 4,
        _ => 5,
    }
}

/// Interned label values: index 0 is `none`, 1 is `other`.
#[derive(Debug)]
struct Names {
    names: Vec<Box<str>>,
    cap: usize,
}

impl Names {
    fn new(cap: usize) -> Names {
        Names { names: vec!["none".into(), "other".into()], cap: cap + 2 }
    }

    /// The label index for `v`; no allocation unless `v` is new and admitted.
    fn index(&mut self, v: Option<&str>, admit: bool) -> u16 {
        let Some(v) = v else { return NONE };
        if let Some(i) = self.names.iter().skip(2).position(|n| &**n == v) {
            return (i + 2) as u16;
        }
        if !admit || self.names.len() >= self.cap {
            return OTHER;
        }
        self.names.push(v.into());
        (self.names.len() - 1) as u16
    }

    fn get(&self, i: u16) -> &str {
        self.names.get(i as usize).map_or("other", |n| n)
    }
}

#[derive(Debug, Clone, Copy)]
struct Hist<const N: usize> {
    buckets: [u64; N],
    count: u64,
    sum_ms: u64,
}

impl<const N: usize> Default for Hist<N> {
    fn default() -> Self {
        Hist { buckets: [0; N], count: 0, sum_ms: 0 }
    }
}

impl<const N: usize> Hist<N> {
    fn observe(&mut self, bounds: &[u64; N], ms: u64) {
        if let Some(i) = bounds.iter().position(|b| ms <= *b) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum_ms = self.sum_ms.saturating_add(ms);
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct ModelStats {
    tokens: [u64; TOKEN_BUCKETS.len()],
    cost_nanos: i64,
    cache_savings_nanos: i64,
    response_cache_savings_nanos: i64,
    unpriced: u64,
    estimated: u64,
    latency: Hist<{ BOUNDS_MS.len() }>,
    ttft: Hist<{ BOUNDS_MS.len() }>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct ReqKey {
    endpoint: u8,
    provider: u16,
    model: u16,
    class: u8,
    code: u8,
}

#[derive(Debug)]
struct Inner {
    providers: Names,
    models: Names,
    requests: crate::FastMap<ReqKey, u64>,
    /// By (provider, model).
    per_model: crate::FastMap<(u16, u16), ModelStats>,
    /// By (code, provider); success rows are not counted.
    errors: crate::FastMap<(u8, u16), u64>,
    cache: [u64; CACHE.len()],
    /// By provider: upstream attempts, and attempts beyond the first.
    attempts: crate::FastMap<u16, (u64, u64)>,
    client_disconnects: u64,
    budgets: BTreeMap<String, (Money, Money)>,
    /// Per provider: rows whose provider reported a cost, and those where it
    /// disagreed with ours (`pricing::disagrees`).
    provider_costs: crate::FastMap<u16, (u64, u64)>,
    /// Per provider: server-side web searches.
    web_searches: crate::FastMap<u16, u64>,
    teams: Names,
    /// Priced spend in nanos by team label.
    team_cost: crate::FastMap<u16, i64>,
    /// By the provider of the first attempt: requests that moved on to
    /// another target (provider or model).
    fallbacks: crate::FastMap<u16, u64>,
    /// Gateway overhead of non-streamed answered requests.
    overhead: Hist<{ OVERHEAD_BOUNDS_MS.len() }>,
}

/// The gateway's counters.
#[derive(Debug)]
pub struct Metrics {
    inner: Mutex<Inner>,
    /// Served-model names that always get their own label (configured routes and targets).
    known_models: HashSet<String>,
    /// The usage-event stream's counters, once `[usage_events]` starts it.
    usage_events: std::sync::OnceLock<std::sync::Arc<UsageEventCounters>>,
}

/// What the usage-event stream (`[usage_events]`) did since start.
#[derive(Debug, Default)]
pub struct UsageEventCounters {
    /// Events in batches the webhook accepted (2xx).
    pub sent: std::sync::atomic::AtomicU64,
    /// POSTs that failed (an error or a non-2xx answer; the batch is retried).
    pub failed_posts: std::sync::atomic::AtomicU64,
    /// Events dropped: the queue was full, or the gateway stopped before they went.
    pub dropped: std::sync::atomic::AtomicU64,
}

/// Numbers from other parts of the observer, rendered with the metrics.
#[derive(Debug, Default, Clone)]
pub struct Extra {
    pub auth_refused: u64,
    pub spool_backlog_bytes: u64,
    pub anomalies: Vec<(&'static str, u64)>,
    pub otel: Option<crate::observe::otel::ExportStats>,
}

impl Metrics {
    pub fn new(config: Option<&Config>) -> Metrics {
        let mut known_models = HashSet::new();
        let mut providers = Names::new(MAX_PROVIDERS);
        let mut teams = Names::new(MAX_TEAMS);
        if let Some(c) = config {
            for p in &c.providers {
                providers.index(Some(&p.name), true);
            }
            for r in c.routes.values() {
                known_models.insert(r.name.clone());
                known_models.extend(r.targets.iter().map(|t| t.model.clone()));
            }
            // The teams the configuration names: budget scopes, team admins.
            let budget_teams = c.governance.budgets.iter().filter_map(|b| b.scope.get("team"));
            let admin_teams = c.admin_tokens.iter().filter_map(|t| match &t.role {
                crate::config::Role::TeamAdmin(team) => Some(team.as_str()),
                _ => None,
            });
            for t in budget_teams.chain(admin_teams) {
                teams.index(Some(t), true);
            }
        }
        Metrics {
            inner: Mutex::new(Inner {
                providers,
                models: Names::new(MAX_MODELS),
                requests: Default::default(),
                per_model: Default::default(),
                errors: Default::default(),
                cache: [0; CACHE.len()],
                attempts: Default::default(),
                client_disconnects: 0,
                budgets: BTreeMap::new(),
                provider_costs: Default::default(),
                web_searches: Default::default(),
                teams,
                team_cost: Default::default(),
                fallbacks: Default::default(),
                overhead: Hist::default(),
            }),
            known_models,
            usage_events: std::sync::OnceLock::new(),
        }
    }

    /// Renders the usage-event stream's counters from now on (the first call wins).
    pub fn track_usage_events(&self, counters: std::sync::Arc<UsageEventCounters>) {
        let _ = self.usage_events.set(counters);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn record(&self, row: &LedgerRow) {
        // A priced success means the catalog knows the model; a failed call to
        // an implicit route could carry any name a client typed.
        let admit_model = (row.status < 400 && row.cost.is_some())
            || row.model.as_deref().is_some_and(|m| self.known_models.contains(m));
        let u = &row.usage;
        let tokens = [
            u.input,
            u.input_audio,
            u.cache_read,
            u.cache_write_5m,
            u.cache_write_1h,
            u.output,
            u.output_audio,
            u.output_image,
            u.reasoning,
        ];
        let code = row.error_code.as_deref().map_or(0, |c| index_of(&CODES, c));
        let mut g = self.lock();
        let provider = g.providers.index(row.provider.as_deref(), true);
        let model = g.models.index(row.model.as_deref(), admit_model);
        let key = ReqKey {
            endpoint: index_of(&ENDPOINTS, row.endpoint.as_str()),
            provider,
            model,
            class: class_of(row.status),
            code,
        };
        *g.requests.entry(key).or_default() += 1;
        if code != 0 {
            *g.errors.entry((code, provider)).or_default() += 1;
        }
        g.cache[index_of(&CACHE, row.cache.as_str()) as usize] += 1;
        if row.attempts > 0 {
            let a = g.attempts.entry(provider).or_default();
            a.0 += u64::from(row.attempts);
            a.1 += u64::from(row.attempts - 1);
        }
        if row.client_disconnected {
            g.client_disconnects += 1;
        }
        if let (Some(theirs), Some(ours)) = (row.provider_cost, row.cost) {
            let c = g.provider_costs.entry(provider).or_default();
            c.0 += 1;
            c.1 += u64::from(crate::pricing::disagrees(ours, theirs));
        }
        if u.web_search_requests > 0 {
            *g.web_searches.entry(provider).or_default() += u.web_search_requests;
        }
        // Teams outside the configuration share `other` (no allocation).
        let team = g.teams.index(row.attribution.tag("team"), false);
        let spent = g.team_cost.entry(team).or_default();
        if let Some(c) = row.cost {
            *spent = spent.saturating_add(c.nanos());
        }
        if let Some((first, rest)) = row.attempt_log.split_first() {
            if rest.iter().any(|a| a.provider != first.provider || a.model != first.model) {
                let p = g.providers.index(Some(&first.provider), true);
                *g.fallbacks.entry(p).or_default() += 1;
            }
            // What the gateway added to a non-streamed answer: the whole
            // request less the upstream calls (a stream's duration is the
            // model's, so streams are left out).
            if row.status < 400 && !row.streamed {
                let upstream = row.attempt_log.iter().fold(0u64, |t, a| t.saturating_add(a.latency_ms));
                g.overhead.observe(&OVERHEAD_BOUNDS_MS, row.latency_ms.saturating_sub(upstream));
            }
        }
        let s = g.per_model.entry((provider, model)).or_default();
        for (t, n) in s.tokens.iter_mut().zip(tokens) {
            *t += n;
        }
        match row.cost {
            Some(c) => s.cost_nanos = s.cost_nanos.saturating_add(c.nanos()),
            None => s.unpriced += 1,
        }
        s.cache_savings_nanos = s.cache_savings_nanos.saturating_add(row.cache_savings.nanos());
        s.response_cache_savings_nanos =
            s.response_cache_savings_nanos.saturating_add(row.response_cache_savings.nanos());
        if row.usage_source == UsageSource::Estimated {
            s.estimated += 1;
        }
        s.latency.observe(&BOUNDS_MS, row.latency_ms);
        if let Some(t) = row.ttft_ms {
            s.ttft.observe(&BOUNDS_MS, t);
        }
    }

    /// A budget's current standing, for `tollgate_budget_*` gauges. `name`
    /// must come from the configuration (it becomes a label value).
    pub fn set_budget(&self, name: &str, spent: Money, limit: Money) {
        let mut g = self.lock();
        if g.budgets.len() >= MAX_BUDGETS && !g.budgets.contains_key(name) {
            return;
        }
        g.budgets.insert(name.to_string(), (spent, limit));
    }

    pub fn render(&self, extra: &Extra) -> String {
        let g = self.lock();
        let mut out = String::with_capacity(16 * 1024);
        let o = &mut out;

        head(
            o,
            "tollgate_requests_total",
            "counter",
            "Requests that passed authentication, by endpoint, provider, served model, status class and error code.",
        );
        let mut reqs: Vec<_> = g.requests.iter().collect();
        reqs.sort();
        for (k, n) in reqs {
            let _ = writeln!(
                o,
                "tollgate_requests_total{{endpoint=\"{}\",provider=\"{}\",model=\"{}\",status_class=\"{}\",code=\"{}\"}} {n}",
                ENDPOINTS[k.endpoint as usize],
                esc(g.providers.get(k.provider)),
                esc(g.models.get(k.model)),
                CLASSES[k.class as usize],
                CODES[k.code as usize],
            );
        }

        head(
            o,
            "tollgate_errors_total",
            "counter",
            "Requests answered with an error, by public error code and provider.",
        );
        let mut errs: Vec<_> = g.errors.iter().collect();
        errs.sort();
        for ((code, p), n) in errs {
            let _ = writeln!(
                o,
                "tollgate_errors_total{{code=\"{}\",provider=\"{}\"}} {n}",
                CODES[*code as usize],
                esc(g.providers.get(*p))
            );
        }

        let mut models: Vec<_> = g.per_model.iter().collect();
        models.sort_by_key(|(k, _)| **k);
        let pm = |o: &mut String, g: &Inner, (p, m): (u16, u16)| {
            let _ = write!(o, "provider=\"{}\",model=\"{}\"", esc(g.providers.get(p)), esc(g.models.get(m)));
        };

        head(
            o,
            "tollgate_tokens_total",
            "counter",
            "Tokens by disjoint usage bucket (input excludes cache reads and writes; output excludes reasoning).",
        );
        for (k, s) in &models {
            for (b, n) in TOKEN_BUCKETS.iter().zip(s.tokens) {
                o.push_str("tollgate_tokens_total{");
                pm(o, &g, **k);
                let _ = writeln!(o, ",bucket=\"{b}\"}} {n}");
            }
        }
        head(o, "tollgate_cost_usd_total", "counter", "Priced spend in USD (exact nano-dollar sum).");
        for (k, s) in &models {
            o.push_str("tollgate_cost_usd_total{");
            pm(o, &g, **k);
            let _ = writeln!(o, "}} {}", Money::from_nanos(s.cost_nanos));
        }
        head(
            o,
            "tollgate_team_cost_usd_total",
            "counter",
            "Priced spend in USD by team (teams named in the configuration; `other` for the rest, `none` without a team tag).",
        );
        // Configured teams from the start (at 0), `none` and `other` once seen.
        for i in 0..g.teams.names.len() as u16 {
            let nanos = g.team_cost.get(&i).copied();
            if i > OTHER || nanos.is_some() {
                let _ = writeln!(
                    o,
                    "tollgate_team_cost_usd_total{{team=\"{}\"}} {}",
                    esc(g.teams.get(i)),
                    Money::from_nanos(nanos.unwrap_or(0))
                );
            }
        }
        head(
            o,
            "tollgate_cache_savings_usd_total",
            "counter",
            "What provider cache reads saved against the uncached input rate, in USD.",
        );
        for (k, s) in &models {
            o.push_str("tollgate_cache_savings_usd_total{");
            pm(o, &g, **k);
            let _ = writeln!(o, "}} {}", Money::from_nanos(s.cache_savings_nanos));
        }
        head(
            o,
            "tollgate_response_cache_savings_usd_total",
            "counter",
            "What gateway response-cache hits avoided paying (the cached answer's original cost), in USD.",
        );
        for (k, s) in &models {
            o.push_str("tollgate_response_cache_savings_usd_total{");
            pm(o, &g, **k);
            let _ = writeln!(o, "}} {}", Money::from_nanos(s.response_cache_savings_nanos));
        }
        head(
            o,
            "tollgate_unpriced_requests_total",
            "counter",
            "Requests whose model has no known price (cost unknown, not zero).",
        );
        for (k, s) in &models {
            o.push_str("tollgate_unpriced_requests_total{");
            pm(o, &g, **k);
            let _ = writeln!(o, "}} {}", s.unpriced);
        }
        head(
            o,
            "tollgate_estimated_usage_requests_total",
            "counter",
            "Requests whose usage was counted locally (the provider reported none).",
        );
        for (k, s) in &models {
            o.push_str("tollgate_estimated_usage_requests_total{");
            pm(o, &g, **k);
            let _ = writeln!(o, "}} {}", s.estimated);
        }
        head(
            o,
            "tollgate_request_duration_seconds",
            "histogram",
            "Time from arrival to the ledger row (whole request, stream included).",
        );
        for (k, s) in &models {
            hist(o, "tollgate_request_duration_seconds", &BOUNDS_MS, &s.latency, |o| pm(o, &g, **k));
        }
        head(
            o,
            "tollgate_time_to_first_token_seconds",
            "histogram",
            "Time from arrival to the first streamed byte sent to the client.",
        );
        for (k, s) in &models {
            if s.ttft.count > 0 {
                hist(o, "tollgate_time_to_first_token_seconds", &BOUNDS_MS, &s.ttft, |o| pm(o, &g, **k));
            }
        }
        head(
            o,
            "tollgate_gateway_overhead_seconds",
            "histogram",
            "Time the gateway added to a non-streamed answered request: the whole request less its upstream calls.",
        );
        hist_unlabelled(o, "tollgate_gateway_overhead_seconds", &OVERHEAD_BOUNDS_MS, &g.overhead);

        head(o, "tollgate_cache_requests_total", "counter", "Requests by gateway response-cache result.");
        for (c, n) in CACHE.iter().zip(g.cache) {
            let _ = writeln!(o, "tollgate_cache_requests_total{{result=\"{c}\"}} {n}");
        }
        let mut att: Vec<_> = g.attempts.iter().collect();
        att.sort();
        head(o, "tollgate_upstream_attempts_total", "counter", "Upstream calls made, retries and fallbacks included.");
        for (p, (a, _)) in &att {
            let _ = writeln!(o, "tollgate_upstream_attempts_total{{provider=\"{}\"}} {a}", esc(g.providers.get(**p)));
        }
        head(
            o,
            "tollgate_upstream_retries_total",
            "counter",
            "Upstream calls beyond the first of a request (retries and fallbacks).",
        );
        for (p, (_, r)) in &att {
            let _ = writeln!(o, "tollgate_upstream_retries_total{{provider=\"{}\"}} {r}", esc(g.providers.get(**p)));
        }
        head(
            o,
            "tollgate_fallback_requests_total",
            "counter",
            "Requests that moved on from their first target to another provider or model, by the first target's provider.",
        );
        // Configured providers from the start (at 0), `none` and `other` once seen.
        for i in 0..g.providers.names.len() as u16 {
            let n = g.fallbacks.get(&i).copied();
            if i > OTHER || n.is_some() {
                let _ = writeln!(
                    o,
                    "tollgate_fallback_requests_total{{provider=\"{}\"}} {}",
                    esc(g.providers.get(i)),
                    n.unwrap_or(0)
                );
            }
        }
        head(o, "tollgate_client_disconnects_total", "counter", "Requests whose client hung up before the end.");
        let _ = writeln!(o, "tollgate_client_disconnects_total {}", g.client_disconnects);
        let mut pc: Vec<_> = g.provider_costs.iter().collect();
        pc.sort();
        head(
            o,
            "tollgate_provider_cost_checks_total",
            "counter",
            "Priced requests whose provider reported its own cost (OpenRouter's usage.cost and the like).",
        );
        for (p, (n, _)) in &pc {
            let _ =
                writeln!(o, "tollgate_provider_cost_checks_total{{provider=\"{}\"}} {n}", esc(g.providers.get(**p)));
        }
        head(
            o,
            "tollgate_provider_cost_disagreements_total",
            "counter",
            "Of those, requests where the provider's cost and tollgate's differ by over 1 % and $0.000001.",
        );
        for (p, (_, d)) in &pc {
            let _ = writeln!(
                o,
                "tollgate_provider_cost_disagreements_total{{provider=\"{}\"}} {d}",
                esc(g.providers.get(**p))
            );
        }
        let mut ws: Vec<_> = g.web_searches.iter().collect();
        ws.sort();
        head(
            o,
            "tollgate_web_search_requests_total",
            "counter",
            "Server-side web searches the providers ran (billed per call).",
        );
        for (p, n) in &ws {
            let _ = writeln!(o, "tollgate_web_search_requests_total{{provider=\"{}\"}} {n}", esc(g.providers.get(**p)));
        }

        if !g.budgets.is_empty() {
            head(o, "tollgate_budget_spent_usd", "gauge", "Spend counted against each budget in its current period.");
            for (b, (s, _)) in &g.budgets {
                let _ = writeln!(o, "tollgate_budget_spent_usd{{budget=\"{}\"}} {s}", esc(b));
            }
            head(o, "tollgate_budget_limit_usd", "gauge", "Each budget's limit.");
            for (b, (_, l)) in &g.budgets {
                let _ = writeln!(o, "tollgate_budget_limit_usd{{budget=\"{}\"}} {l}", esc(b));
            }
            head(o, "tollgate_budget_utilisation_ratio", "gauge", "Spent / limit.");
            for (b, (s, l)) in &g.budgets {
                let _ = writeln!(o, "tollgate_budget_utilisation_ratio{{budget=\"{}\"}} {}", esc(b), ratio(*s, *l));
            }
        }
        drop(g);

        head(o, "tollgate_auth_refused_total", "counter", "Requests refused at authentication (no ledger row).");
        let _ = writeln!(o, "tollgate_auth_refused_total {}", extra.auth_refused);
        head(o, "tollgate_ledger_spool_backlog_bytes", "gauge", "Acknowledged ledger bytes not yet in the database.");
        let _ = writeln!(o, "tollgate_ledger_spool_backlog_bytes {}", extra.spool_backlog_bytes);
        head(o, "tollgate_anomalies_total", "counter", "Anomalies detected since start, by kind.");
        for (k, n) in &extra.anomalies {
            let _ = writeln!(o, "tollgate_anomalies_total{{kind=\"{k}\"}} {n}");
        }
        if let Some(s) = &extra.otel {
            head(o, "tollgate_otel_spans_exported_total", "counter", "Spans accepted by the OTLP endpoint.");
            let _ = writeln!(o, "tollgate_otel_spans_exported_total {}", s.exported);
            head(o, "tollgate_otel_spans_dropped_total", "counter", "Spans dropped (queue full or export failed).");
            let _ = writeln!(o, "tollgate_otel_spans_dropped_total {}", s.dropped);
        }
        if let Some(u) = self.usage_events.get() {
            use std::sync::atomic::Ordering::Relaxed;
            head(o, "tollgate_usage_events_sent_total", "counter", "Usage events the webhook accepted.");
            let _ = writeln!(o, "tollgate_usage_events_sent_total {}", u.sent.load(Relaxed));
            head(o, "tollgate_usage_events_failed_posts_total", "counter", "Usage-event POSTs that failed (retried).");
            let _ = writeln!(o, "tollgate_usage_events_failed_posts_total {}", u.failed_posts.load(Relaxed));
            head(
                o,
                "tollgate_usage_events_dropped_total",
                "counter",
                "Usage events dropped (queue full, or unsent at shutdown).",
            );
            let _ = writeln!(o, "tollgate_usage_events_dropped_total {}", u.dropped.load(Relaxed));
        }
        out
    }
}

fn head(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn hist<const N: usize>(o: &mut String, name: &str, bounds: &[u64; N], h: &Hist<N>, labels: impl Fn(&mut String)) {
    let mut cum = 0;
    for (b, n) in bounds.iter().zip(h.buckets) {
        cum += n;
        let _ = write!(o, "{name}_bucket{{");
        labels(o);
        let _ = writeln!(o, ",le=\"{}\"}} {cum}", seconds(*b));
    }
    let _ = write!(o, "{name}_bucket{{");
    labels(o);
    let _ = writeln!(o, ",le=\"+Inf\"}} {}", h.count);
    let _ = write!(o, "{name}_sum{{");
    labels(o);
    let _ = writeln!(o, "}} {}", seconds(h.sum_ms));
    let _ = write!(o, "{name}_count{{");
    labels(o);
    let _ = writeln!(o, "}} {}", h.count);
}

/// A histogram without labels of its own.
fn hist_unlabelled<const N: usize>(o: &mut String, name: &str, bounds: &[u64; N], h: &Hist<N>) {
    let mut cum = 0;
    for (b, n) in bounds.iter().zip(h.buckets) {
        cum += n;
        let _ = writeln!(o, "{name}_bucket{{le=\"{}\"}} {cum}", seconds(*b));
    }
    let _ = writeln!(o, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(o, "{name}_sum {}", seconds(h.sum_ms));
    let _ = writeln!(o, "{name}_count {}", h.count);
}

/// Milliseconds as a decimal number of seconds, without going through a float.
fn seconds(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// spent/limit with 6 decimals, integer arithmetic.
fn ratio(spent: Money, limit: Money) -> String {
    if limit.nanos() <= 0 {
        return "0".into();
    }
    let micro = i128::from(spent.nanos()) * 1_000_000 / i128::from(limit.nanos());
    let sign = if micro < 0 { "-" } else { "" };
    let m = micro.unsigned_abs();
    format!("{sign}{}.{:06}", m / 1_000_000, m % 1_000_000)
}

/// Label value escaping (backslash, double quote, newline).
fn esc(v: &str) -> std::borrow::Cow<'_, str> {
    if v.contains(['\\', '"', '\n']) {
        v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n").into()
    } else {
        v.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribution::Attribution;
    use tollgate_units::Usage;

    fn row(model: &str, priced: bool) -> LedgerRow {
        LedgerRow {
            request_id: "r".into(),
            time_ms: 0,
            key_id: None,
            endpoint: crate::record::Endpoint::ChatCompletions,
            requested_model: Some(model.into()),
            model: Some(model.into()),
            provider: Some("openai".into()),
            status: 200,
            error_code: None,
            usage: Usage { input: 10, output: 5, ..Usage::default() },
            usage_source: UsageSource::Provider,
            cost: priced.then(|| Money::from_nanos(1_500)),
            cache_savings: Money::ZERO,
            response_cache_savings: Money::ZERO,
            tool_cost: Money::ZERO,
            provider_cost: None,
            streamed: false,
            client_disconnected: false,
            cache: crate::record::CacheOutcome::Off,
            latency_ms: 120,
            ttft_ms: None,
            attempts: 1,
            prefix_hash: None,
            attempt_log: Vec::new(),
            attribution: Attribution::default(),
        }
    }

    #[test]
    fn unknown_models_share_the_other_label_and_the_model_set_is_capped() {
        let m = Metrics::new(None);
        for i in 0..(MAX_MODELS + 20) {
            m.record(&row(&format!("priced-{i}"), true));
        }
        m.record(&row("random-unpriced", false));
        let text = m.render(&Extra::default());
        let distinct: HashSet<&str> = text
            .lines()
            .filter(|l| l.starts_with("tollgate_requests_total{"))
            .filter_map(|l| l.split("model=\"").nth(1)?.split('"').next())
            .collect();
        assert_eq!(distinct.len(), MAX_MODELS + 1, "capped names plus `other`");
        assert!(distinct.contains("other"));
        assert!(!distinct.contains("random-unpriced"));
        assert!(text.contains("tollgate_requests_total{endpoint=\"chat.completions\",provider=\"openai\",model=\"other\",status_class=\"2xx\",code=\"none\"} 21"));
    }

    #[test]
    fn histogram_is_cumulative_and_money_is_exact() {
        let m = Metrics::new(None);
        m.record(&row("gpt-4o-mini", true));
        let mut r = row("gpt-4o-mini", true);
        r.latency_ms = 7_000;
        r.ttft_ms = Some(40);
        m.record(&r);
        let text = m.render(&Extra::default());
        let l = "provider=\"openai\",model=\"gpt-4o-mini\"";
        assert!(text.contains(&format!("tollgate_request_duration_seconds_bucket{{{l},le=\"0.100\"}} 0")));
        assert!(text.contains(&format!("tollgate_request_duration_seconds_bucket{{{l},le=\"0.250\"}} 1")));
        assert!(text.contains(&format!("tollgate_request_duration_seconds_bucket{{{l},le=\"10.000\"}} 2")));
        assert!(text.contains(&format!("tollgate_request_duration_seconds_bucket{{{l},le=\"+Inf\"}} 2")));
        assert!(text.contains(&format!("tollgate_request_duration_seconds_sum{{{l}}} 7.120")));
        assert!(text.contains(&format!("tollgate_time_to_first_token_seconds_count{{{l}}} 1")));
        assert!(text.contains(&format!("tollgate_cost_usd_total{{{l}}} 0.000003000")));
    }

    #[test]
    fn label_values_are_escaped_and_ratio_is_exact() {
        assert_eq!(esc("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(ratio(Money::from_usd(1), Money::from_usd(3)), "0.333333");
        assert_eq!(ratio(Money::from_usd(5), Money::ZERO), "0");
    }
}
