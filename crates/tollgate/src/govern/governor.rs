//! Spend governance at run time: budgets and rate limits, enforced *before*
//! the provider is called, by reserve → settle.
//!
//! The governor holds the rules (which budgets and limits exist, their
//! alert thresholds) and decides which counters a request touches; the
//! numbers live in a [`CounterStore`]: in this process ([`MemoryCounters`])
//! or shared by replicas. Flow of one request:
//! 1. `reserve` gets the request's maximum possible cost and tokens (an upper
//!    bound computed by `estimate`). Every applicable budget and limit is
//!    reserved in one atomic call of the counter store, all or nothing, so
//!    concurrent requests cannot together overspend; a reservation is held
//!    under a lease, so one whose owner died is released.
//! 2. The returned [`Reservation`] is `#[must_use]`; `settle(actual)` replaces
//!    the reserved amount by the actual one; dropping it unsettled (error,
//!    panic, cancelled task) releases it.
//! 3. Crossing an alert threshold sends one [`AlertEvent`] per threshold per period.
//!
//! Spend already in the ledger for the current period is loaded into the
//! counters when a budget is installed.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use chrono_tz::Tz;
use tokio::sync::mpsc;
use tollgate_units::Money;

use crate::budget::{Action, BudgetSpec, Facts, LimitKind, Period, RateLimitSpec};
use crate::store::counters::{
    CounterAsk, CounterError, CounterRefusal, CounterRule, CounterStore, LeaseId, MemoryCounters,
};

pub use crate::budget::LEASE_MS;

/// A threshold crossed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertEvent {
    pub budget_id: String,
    pub scope: String,
    pub threshold_permille: u32,
    pub spent: Money,
    pub limit: Money,
    pub period_start_ms: i64,
    pub period_end_ms: i64,
}

struct BudgetRule {
    spec: BudgetSpec,
    key: Arc<str>,
    /// Thresholds alerted in the window `fired_window`.
    fired: BTreeSet<u32>,
    fired_window: (i64, i64),
    /// The calendar window in force, computed again only when it ends (time zones are not cheap).
    window: std::cell::Cell<(i64, i64)>,
}

impl BudgetRule {
    fn counter(&self, now_ms: i64, tz: Tz) -> CounterRule {
        let limit = (self.spec.action != Action::Alert).then(|| self.spec.limit.nanos());
        match self.spec.period {
            Period::Rolling(len_ms) => CounterRule::Rolling { len_ms, limit },
            _ => {
                let (start_ms, end_ms) = self.window(now_ms, tz);
                CounterRule::Window { start_ms, end_ms, limit }
            }
        }
    }

    fn window(&self, now_ms: i64, tz: Tz) -> (i64, i64) {
        let (start, end) = self.window.get();
        if start <= now_ms && now_ms < end {
            return (start, end);
        }
        let w = self.spec.period.window(now_ms, tz);
        self.window.set(w);
        w
    }
}

struct LimitRule {
    spec: RateLimitSpec,
    key: Arc<str>,
}

impl LimitRule {
    fn counter(&self) -> CounterRule {
        CounterRule::Rate { capacity: self.spec.amount, window_ms: self.spec.window_ms }
    }
}

#[derive(Default)]
struct Rules {
    budgets: crate::FastMap<Arc<str>, BudgetRule>,
    limits: crate::FastMap<Arc<str>, LimitRule>,
    /// Budgets and limits by an exact part of their scope: a request looks
    /// only at those that can cover it (flat cost with many per-user budgets).
    budget_index: crate::budget::ScopeIndex,
    limit_index: crate::budget::ScopeIndex,
    /// Calls and settled spend per agent run (`t:` trace id, `s:` session id).
    runs: crate::FastMap<String, Run>,
}

#[derive(Default)]
struct Run {
    calls: u64,
    spent: i64,
    last_ms: i64,
}

/// Caps per trace and per session that stop runaway agent loops.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunCaps {
    pub max_calls_per_trace: Option<u64>,
    pub max_usd_per_trace: Option<Money>,
    pub max_calls_per_session: Option<u64>,
    pub max_usd_per_session: Option<Money>,
}

const MAX_RUNS: usize = 200_000;
const RUN_IDLE_MS: i64 = 24 * 3_600_000;

/// What a request asks to reserve.
#[derive(Debug, Clone, Copy)]
pub struct Ask {
    /// Upper bound of the request's cost; `None` when the model has no price.
    pub cost: Option<Money>,
    /// Upper bound of its tokens (input + output).
    pub tokens: u64,
}

/// Why a request may not proceed as asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Budget {
        budget_id: String,
        scope: String,
        action: Action,
        remaining: Money,
        resets_at_ms: i64,
        unpriced: bool,
    },
    RateLimited {
        limit_id: String,
        scope: String,
        retry_after_ms: i64,
    },
    /// The counter store cannot be reached: nothing can be reserved, so nothing is sent.
    Unavailable(String),
}

impl Refusal {
    /// The client's error for a refusal. `why` says what a budget cannot do
    /// ("cannot cover this request"); an unpriced model's refusal says so itself.
    pub fn into_error(self, why: &str) -> crate::error::ApiError {
        use crate::error::ApiError;
        match self {
            Refusal::Unavailable(reason) => ApiError::GovernanceUnavailable {
                message: format!("budgets and rate limits cannot be checked right now ({reason}); retry shortly"),
            },
            Refusal::RateLimited { limit_id, scope, retry_after_ms } => {
                let secs = (retry_after_ms.max(1) as u64).div_ceil(1000);
                ApiError::RateLimited {
                    message: format!("rate limit {limit_id} ({scope}) reached; retry in {secs} s"),
                    retry_after_secs: secs,
                }
            }
            Refusal::Budget { budget_id, scope, remaining, resets_at_ms, unpriced, .. } => {
                let resets = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(resets_at_ms)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_default();
                let why = if unpriced { "does not allow models without a known price" } else { why };
                ApiError::BudgetExceeded {
                    message: format!("budget {budget_id} ({scope}) {why}: ${remaining} remaining, resets at {resets}"),
                }
            }
        }
    }
}

pub struct Governor {
    rules: Mutex<Rules>,
    counters: Arc<dyn CounterStore>,
    tz: Tz,
    alerts: mpsc::UnboundedSender<AlertEvent>,
    /// Seeds budget counters that the counter store lost (see [`Governor::with_ledger`]).
    ledger: Option<Arc<dyn crate::store::Reports>>,
    /// How long a reservation outlives its replica ([`LEASE_MS`] unless configured).
    lease_ms: i64,
    /// Held while a budget counter is seeded again from the ledger.
    reseeding: tokio::sync::Mutex<()>,
}

/// A budget's figures for the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetStatus {
    pub spec: BudgetSpec,
    pub spent: Money,
    pub reserved: Money,
    pub period_start_ms: i64,
    pub period_end_ms: i64,
}

/// A budget as `status` reads it: its spec, counter key and rule, and window.
type BudgetView = (BudgetSpec, Arc<str>, CounterRule, (i64, i64));

/// What one counter of a reservation is for.
#[derive(Debug, Clone)]
enum Held {
    /// A budget, by id.
    Budget(Arc<str>),
    /// A rate limit, by id, and what it counts.
    Limit(Arc<str>, LimitKind),
}

impl Governor {
    /// A governor over counters in this process.
    pub fn new(tz: Tz) -> (Governor, mpsc::UnboundedReceiver<AlertEvent>) {
        Governor::with_counters(tz, Arc::new(MemoryCounters::default()))
    }

    /// A governor over the given counter store (shared by replicas, or in process).
    pub fn with_counters(tz: Tz, counters: Arc<dyn CounterStore>) -> (Governor, mpsc::UnboundedReceiver<AlertEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Governor {
                rules: Mutex::new(Rules::default()),
                counters,
                tz,
                alerts: tx,
                ledger: None,
                lease_ms: LEASE_MS,
                reseeding: tokio::sync::Mutex::new(()),
            },
            rx,
        )
    }

    /// Where budget counters are seeded from again when the counter store
    /// lost them (a Redis restarted without persistence).
    pub fn with_ledger(mut self, ledger: Arc<dyn crate::store::Reports>) -> Governor {
        self.ledger = Some(ledger);
        self
    }

    /// Sets how long a reservation outlives the process that took it.
    pub fn with_lease(mut self, lease_ms: i64) -> Governor {
        self.lease_ms = lease_ms.max(1);
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Rules> {
        self.rules.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn counters(&self) -> &Arc<dyn CounterStore> {
        &self.counters
    }

    pub fn time_zone(&self) -> Tz {
        self.tz
    }

    /// Installs or replaces a budget. `spent` is what the ledger already holds
    /// for its current window (per second); `fired` the thresholds already
    /// alerted this period. Outstanding reservations are kept.
    pub async fn set_budget(
        &self,
        spec: BudgetSpec,
        spent: Vec<(i64, i64)>,
        fired: BTreeSet<u32>,
        now_ms: i64,
    ) -> Result<(), CounterError> {
        let key = budget_key(&spec);
        let window = spec.period.window(now_ms, self.tz);
        let rule =
            BudgetRule { fired_window: window, spec, key: key.clone(), fired, window: std::cell::Cell::new(window) };
        let counter = rule.counter(now_ms, self.tz);
        self.counters.seed(&key, counter, spent, now_ms).await?;
        let id: Arc<str> = Arc::from(rule.spec.id.as_str());
        let mut st = self.lock();
        st.budget_index.insert(id.clone(), &rule.spec.scope);
        st.budgets.insert(id, rule);
        Ok(())
    }

    /// Books spend that reached the ledger without passing through these
    /// counters: the `interrupted` rows written at start-up for requests that
    /// died with an earlier run. Call it *before* the budgets are installed:
    /// a counter not yet seeded takes the ledger's total (rows included) when
    /// it is, and this booking is overwritten; a counter the counter store
    /// already holds (Redis, seeded by a replica earlier) keeps it. Rows
    /// outside a budget's current window are not booked to it.
    pub async fn book_interrupted(
        &self,
        specs: &[BudgetSpec],
        rows: &[crate::record::LedgerRow],
        now_ms: i64,
    ) -> Result<(), CounterError> {
        if rows.is_empty() {
            return Ok(());
        }
        for spec in specs {
            let key = budget_key(spec);
            let rule = BudgetRule {
                fired_window: (0, 0),
                spec: spec.clone(),
                key: key.clone(),
                fired: BTreeSet::new(),
                window: std::cell::Cell::new(spec.period.window(now_ms, self.tz)),
            };
            let counter = rule.counter(now_ms, self.tz);
            let (from, to) = match spec.period {
                Period::Rolling(len) => (now_ms - len, now_ms + 1),
                _ => rule.window.get(),
            };
            for row in rows {
                let Some(cost) = row.cost.filter(|c| c.nanos() > 0) else { continue };
                if row.time_ms < from || row.time_ms >= to {
                    continue;
                }
                let facts = Facts {
                    key_id: row.key_id.as_deref().unwrap_or(""),
                    model: row.requested_model.as_deref().or(row.model.as_deref()).unwrap_or(""),
                    provider: row.provider.as_deref(),
                    attribution: &row.attribution,
                };
                if !spec.scope.matches(&facts) {
                    continue;
                }
                let ask = [CounterAsk { key: key.clone(), rule: counter, amount: 0 }];
                self.counters.settle(NO_LEASE, &ask, &[cost.nanos()], now_ms).await?;
            }
        }
        Ok(())
    }

    pub fn remove_budget(&self, id: &str) -> bool {
        let mut st = self.lock();
        st.budget_index.remove(id);
        st.budgets.remove(id).is_some()
    }

    pub fn budget_ids(&self) -> Vec<String> {
        self.lock().budgets.keys().map(|k| k.to_string()).collect()
    }

    pub fn set_limit(&self, spec: RateLimitSpec, _now_ms: i64) {
        let mut st = self.lock();
        if st.limits.get(spec.id.as_str()).is_some_and(|l| l.spec == spec) {
            return;
        }
        let key: Arc<str> = Arc::from(format!("limit:{}", spec.id));
        let id: Arc<str> = Arc::from(spec.id.as_str());
        st.limit_index.insert(id.clone(), &spec.scope);
        st.limits.insert(id, LimitRule { spec, key });
    }

    pub async fn status(&self, now_ms: i64) -> Vec<BudgetStatus> {
        let rules: Vec<BudgetView> = {
            let st = self.lock();
            st.budgets
                .values()
                .map(|b| {
                    let window = match b.spec.period {
                        Period::Rolling(len) => (now_ms - len, now_ms),
                        _ => b.window(now_ms, self.tz),
                    };
                    (b.spec.clone(), b.key.clone(), b.counter(now_ms, self.tz), window)
                })
                .collect()
        };
        let mut out = Vec::with_capacity(rules.len());
        for (spec, key, rule, (start, end)) in rules {
            let v = self.counters.view(&key, rule, now_ms).await.unwrap_or_default();
            out.push(BudgetStatus {
                spec,
                spent: Money::from_nanos(v.spent),
                reserved: Money::from_nanos(v.reserved),
                period_start_ms: start,
                period_end_ms: end,
            });
        }
        out.sort_by(|a, b| a.spec.id.cmp(&b.spec.id));
        out
    }

    /// Counts one more call of this trace / session, refusing it when the run
    /// has reached its call or dollar cap (a runaway agent loop).
    pub fn admit_run(
        &self,
        trace: Option<&str>,
        session: Option<&str>,
        caps: &RunCaps,
        now_ms: i64,
    ) -> Result<(), String> {
        let mut st = self.lock();
        if st.runs.len() > MAX_RUNS {
            st.runs.retain(|_, r| now_ms - r.last_ms < RUN_IDLE_MS);
        }
        let checks = [
            (trace.map(|t| format!("t:{t}")), caps.max_calls_per_trace, caps.max_usd_per_trace, "trace"),
            (session.map(|s| format!("s:{s}")), caps.max_calls_per_session, caps.max_usd_per_session, "session"),
        ];
        for (key, max_calls, max_usd, what) in &checks {
            let Some(key) = key else { continue };
            if max_calls.is_none() && max_usd.is_none() {
                continue;
            }
            if let Some(r) = st.runs.get(key) {
                if max_calls.is_some_and(|m| r.calls >= m) {
                    return Err(format!(
                        "{what} {} reached its cap of {} calls (runaway agent loop?)",
                        &key[2..],
                        r.calls
                    ));
                }
                if max_usd.is_some_and(|m| r.spent >= m.nanos()) {
                    return Err(format!(
                        "{what} {} reached its cap of ${} (runaway agent loop?)",
                        &key[2..],
                        Money::from_nanos(r.spent)
                    ));
                }
            }
        }
        for (key, max_calls, max_usd, _) in checks {
            let Some(key) = key else { continue };
            if max_calls.is_none() && max_usd.is_none() {
                continue;
            }
            let r = st.runs.entry(key).or_default();
            r.calls += 1;
            r.last_ms = now_ms;
        }
        Ok(())
    }

    /// Adds a settled cost to its trace and session.
    pub fn charge_run(&self, trace: Option<&str>, session: Option<&str>, cost: Money) {
        let mut st = self.lock();
        for key in [trace.map(|t| format!("t:{t}")), session.map(|s| format!("s:{s}"))].into_iter().flatten() {
            if let Some(r) = st.runs.get_mut(&key) {
                r.spent += cost.nanos();
            }
        }
    }

    /// Reserves `ask` against every budget and limit that covers `facts`, all
    /// or nothing. Budgets whose action is `alert` never refuse.
    pub async fn reserve(self: &Arc<Self>, facts: &Facts<'_>, ask: Ask, now_ms: i64) -> Result<Reservation, Refusal> {
        self.reserve_with(facts, ask, now_ms, None).await
    }

    /// [`Governor::reserve`], with what `block` does before it refuses a
    /// request whose output is not capped: `fits(room)` says whether the
    /// request, its output capped to what the room allows, would still be
    /// sent. A shadow budget that cannot hold the whole upper bound then
    /// books the room instead, as `block` books the capped request.
    pub async fn reserve_with(
        self: &Arc<Self>,
        facts: &Facts<'_>,
        ask: Ask,
        now_ms: i64,
        fits: Option<&(dyn Fn(Money) -> bool + Sync)>,
    ) -> Result<Reservation, Refusal> {
        let cost = ask.cost.map_or(0, |c| c.nanos().max(0));
        let tokens = i64::try_from(ask.tokens).unwrap_or(i64::MAX);
        let mut asks: Vec<CounterAsk> = Vec::new();
        let mut held: Vec<Held> = Vec::new();
        let mut unpriced_refusal: Option<(BudgetSpec, Arc<str>, CounterRule)> = None;
        // Shadow budgets: reserved on their own after the rest, never refusing.
        let mut shadows: Vec<(CounterAsk, Held)> = Vec::new();
        {
            let st = self.lock();
            let mut budgets: Vec<(&Arc<str>, &BudgetRule)> = Vec::new();
            st.budget_index.candidates(facts, |id| {
                if let Some(b) = st.budgets.get(id).filter(|b| b.spec.scope.matches(facts)) {
                    budgets.push((id, b));
                }
            });
            for (id, b) in budgets {
                let rule = b.counter(now_ms, self.tz);
                if b.spec.action == Action::Shadow {
                    shadows.push((CounterAsk { key: b.key.clone(), rule, amount: cost }, Held::Budget(id.clone())));
                    continue;
                }
                if ask.cost.is_none() && b.spec.block_unpriced && b.spec.action != Action::Alert {
                    unpriced_refusal = Some((b.spec.clone(), b.key.clone(), rule));
                    break;
                }
                asks.push(CounterAsk { key: b.key.clone(), rule, amount: cost });
                held.push(Held::Budget(id.clone()));
            }
            if unpriced_refusal.is_none() {
                let mut limits: Vec<(&Arc<str>, &LimitRule)> = Vec::new();
                st.limit_index.candidates(facts, |id| {
                    if let Some(l) = st.limits.get(id).filter(|l| l.spec.scope.matches(facts)) {
                        limits.push((id, l));
                    }
                });
                for (id, l) in limits {
                    let amount = match l.spec.kind {
                        LimitKind::Requests => 1,
                        LimitKind::Tokens => tokens,
                        LimitKind::Cost => cost,
                    };
                    asks.push(CounterAsk { key: l.key.clone(), rule: l.counter(), amount });
                    held.push(Held::Limit(id.clone(), l.spec.kind));
                }
            }
        }
        if let Some((spec, key, rule)) = unpriced_refusal {
            let v = self.counters.view(&key, rule, now_ms).await.unwrap_or_default();
            return Err(self.budget_refusal(
                &spec,
                spec.limit.nanos() - v.spent - v.reserved,
                end_of(rule, now_ms),
                true,
            ));
        }
        if asks.is_empty() {
            let r = Reservation::new(self.clone(), None, asks, held, cost, tokens, None);
            return Ok(self.reserve_shadows(r, shadows, fits, now_ms).await);
        }
        let mut answer = self.counters.reserve(&asks, self.lease_ms, now_ms).await;
        // A budget counter the counter store does not have (Redis restarted
        // without its data): seed it from the ledger, then ask again, once.
        if let Ok(Err(CounterRefusal::Unseeded { .. })) = answer {
            // One reseed at a time: requests that found the same counter missing
            // wait for it, then find it seeded, instead of each reading the ledger.
            let _one = self.reseeding.lock().await;
            answer = self.counters.reserve(&asks, self.lease_ms, now_ms).await;
            if let Ok(Err(CounterRefusal::Unseeded { index })) = answer {
                let Some(spec) = self.spec_of(&held[index], &asks[index].key) else {
                    return Err(Refusal::Unavailable("a budget changed while it was being reserved".into()));
                };
                if let Err(error) = self.reseed(&spec, &asks[index].key, asks[index].rule, now_ms).await {
                    return Err(Refusal::Unavailable(format!(
                        "cannot seed budget {} from the ledger: {error}",
                        spec.id
                    )));
                }
                answer = self.counters.reserve(&asks, self.lease_ms, now_ms).await;
            }
        }
        match answer {
            Ok(Err(CounterRefusal::Unseeded { .. })) => {
                Err(Refusal::Unavailable("budget counters are being seeded; retry".into()))
            }
            Ok(Ok(granted)) => {
                let tightest = granted.remaining.iter().flatten().min().copied().map(Money::from_nanos);
                let r = Reservation::new(self.clone(), Some(granted.lease), asks, held, cost, tokens, tightest);
                Ok(self.reserve_shadows(r, shadows, fits, now_ms).await)
            }
            Ok(Err(CounterRefusal::Exhausted { index, remaining, resets_at_ms })) => {
                let spec = self.spec_of(&held[index], &asks[index].key);
                match spec {
                    Some(spec) => Err(self.budget_refusal(&spec, remaining, resets_at_ms, ask.cost.is_none())),
                    None => Err(Refusal::Unavailable("a budget changed while it was being reserved".into())),
                }
            }
            Ok(Err(CounterRefusal::Wait { index, retry_after_ms })) => {
                let st = self.lock();
                let l = match &held[index] {
                    Held::Limit(id, _) => st.limits.get(id).filter(|l| l.key == asks[index].key),
                    Held::Budget(_) => None,
                };
                Err(Refusal::RateLimited {
                    limit_id: l.map(|l| l.spec.id.clone()).unwrap_or_default(),
                    scope: l.map(|l| l.spec.scope.to_string()).unwrap_or_default(),
                    retry_after_ms,
                })
            }
            Err(CounterError::Unavailable(why)) => Err(Refusal::Unavailable(why)),
        }
    }

    /// Reserves on each shadow budget that covers an admitted request, as
    /// `block` would: granted, the hold is settled with the request; refused,
    /// nothing is booked (as `block` books nothing for a refused request) and
    /// the reservation names the budget in [`Reservation::shadow_refused`].
    /// A counter store that cannot answer leaves the request unmarked.
    async fn reserve_shadows(
        self: &Arc<Self>,
        mut r: Reservation,
        shadows: Vec<(CounterAsk, Held)>,
        fits: Option<&(dyn Fn(Money) -> bool + Sync)>,
        now_ms: i64,
    ) -> Reservation {
        for (mut ask, held) in shadows {
            let Held::Budget(id) = &held else { continue };
            let mut answer = self.counters.reserve(std::slice::from_ref(&ask), self.lease_ms, now_ms).await;
            if let Ok(Err(CounterRefusal::Unseeded { .. })) = answer {
                let _one = self.reseeding.lock().await;
                if let Some(spec) = self.spec_of(&held, &ask.key) {
                    if let Err(error) = self.reseed(&spec, &ask.key, ask.rule, now_ms).await {
                        tracing::warn!(budget = %spec.id, %error, "cannot seed a shadow budget from the ledger");
                    }
                }
                answer = self.counters.reserve(std::slice::from_ref(&ask), self.lease_ms, now_ms).await;
            }
            // Block would cap the output to the room left and send it.
            if let (Ok(Err(CounterRefusal::Exhausted { remaining, .. })), Some(fits)) = (&answer, fits) {
                let room = (*remaining).max(0);
                if room > 0 && room < ask.amount && fits(Money::from_nanos(room)) {
                    ask.amount = room;
                    answer = self.counters.reserve(std::slice::from_ref(&ask), self.lease_ms, now_ms).await;
                }
            }
            match answer {
                Ok(Ok(granted)) => r.shadows.push((granted.lease, ask, held)),
                Ok(Err(CounterRefusal::Exhausted { .. })) => r.shadow_refused.push(id.to_string()),
                Ok(Err(_)) | Err(_) => {
                    tracing::debug!(budget = %id, "shadow budget not checked (counters unavailable)")
                }
            }
        }
        r
    }

    /// Seeds one budget's counter from the ledger's spend in its window.
    async fn reseed(&self, spec: &BudgetSpec, key: &str, rule: CounterRule, now_ms: i64) -> Result<(), String> {
        let Some(ledger) = &self.ledger else { return Err("no ledger to seed from".into()) };
        let (start, _) = spec.period.window(now_ms, self.tz);
        let spent = ledger.spend_per_second(spec.scope.ledger_filters(), start).await.map_err(|e| e.to_string())?;
        tracing::warn!(budget = %spec.id, "budget counter missing from the counter store: seeded again from the ledger");
        self.counters.seed(key, rule, spent, now_ms).await.map_err(|e| e.to_string())
    }

    /// The budget a held counter belongs to (`None`: not a budget, or
    /// replaced by one with another counter meanwhile).
    fn spec_of(&self, held: &Held, key: &Arc<str>) -> Option<BudgetSpec> {
        let Held::Budget(id) = held else { return None };
        let st = self.lock();
        st.budgets.get(id).filter(|b| &b.key == key).map(|b| b.spec.clone())
    }

    fn budget_refusal(&self, spec: &BudgetSpec, remaining: i64, resets_at_ms: i64, unpriced: bool) -> Refusal {
        Refusal::Budget {
            budget_id: spec.id.clone(),
            scope: spec.scope.to_string(),
            action: spec.action.clone(),
            remaining: Money::from_nanos(remaining.max(0)),
            resets_at_ms,
            unpriced,
        }
    }

    /// Books what a reservation actually used (`None`: nothing, give it all
    /// back) and sends the alerts it crosses.
    async fn finish(
        &self,
        lease: LeaseId,
        asks: &[CounterAsk],
        held: &[Held],
        actual: Option<(i64, i64)>,
        now_ms: i64,
    ) {
        let Some((cost, tokens)) = actual else {
            if let Err(error) = self.counters.release(lease, now_ms).await {
                tracing::warn!(%error, "cannot release a reservation (its lease will)");
            }
            return;
        };
        // A calendar window that ended while the request was in flight: settle
        // against the window in force now, so the spend is booked there (and
        // its thresholds checked against it) whether or not the counter has
        // been rolled to it yet; the hold is given back all the same.
        let renewed: Option<Vec<CounterAsk>> =
            asks.iter().any(|a| matches!(a.rule, CounterRule::Window { end_ms, .. } if now_ms >= end_ms)).then(|| {
                let st = self.lock();
                asks.iter()
                    .zip(held)
                    .map(|(a, h)| {
                        let mut a = a.clone();
                        if let (Held::Budget(id), CounterRule::Window { end_ms, .. }) = (h, a.rule) {
                            if let Some(b) = st.budgets.get(id).filter(|b| b.key == a.key && now_ms >= end_ms) {
                                a.rule = b.counter(now_ms, self.tz);
                            }
                        }
                        a
                    })
                    .collect()
            });
        let asks = renewed.as_deref().unwrap_or(asks);
        let used: Vec<i64> = asks
            .iter()
            .zip(held)
            .map(|(a, h)| match h {
                Held::Budget(_) | Held::Limit(_, LimitKind::Cost) => cost,
                Held::Limit(_, LimitKind::Tokens) => tokens,
                Held::Limit(_, LimitKind::Requests) => a.amount,
            })
            .collect();
        let views = match self.counters.settle(lease, asks, &used, now_ms).await {
            Ok(v) => v,
            Err(error) => {
                tracing::error!(%error, "cannot settle a reservation: its spend is in the ledger, not in the counters");
                return;
            }
        };
        let mut fired = Vec::new();
        {
            let mut st = self.lock();
            for ((a, h), v) in asks.iter().zip(held).zip(views) {
                let Held::Budget(id) = h else { continue };
                // A budget replaced meanwhile keeps its key; one removed is skipped.
                let Some(b) = st.budgets.get_mut(id).filter(|b| b.key == a.key) else { continue };
                let window = match b.spec.period {
                    Period::Rolling(len) => (now_ms - len, now_ms),
                    _ => b.window(now_ms, self.tz),
                };
                let limit = b.spec.limit.nanos().max(1);
                match b.spec.period {
                    // A rolling window re-arms a threshold once spend falls back below it.
                    Period::Rolling(_) => {
                        b.fired.retain(|t| i128::from(v.spent) * 1000 >= i128::from(limit) * i128::from(*t))
                    }
                    _ if b.fired_window != window => {
                        b.fired.clear();
                        b.fired_window = window;
                    }
                    _ => {}
                }
                for i in 0..b.spec.alert_at.len() {
                    let t = b.spec.alert_at[i];
                    let crossed = i128::from(v.spent) * 1000 >= i128::from(limit) * i128::from(t);
                    if crossed && b.fired.insert(t) {
                        fired.push(AlertEvent {
                            budget_id: b.spec.id.clone(),
                            scope: b.spec.scope.to_string(),
                            threshold_permille: t,
                            spent: Money::from_nanos(v.spent),
                            limit: b.spec.limit,
                            period_start_ms: window.0,
                            period_end_ms: window.1,
                        });
                    }
                }
            }
        }
        for e in fired {
            let _ = self.alerts.send(e);
        }
    }
}

/// A lease id no reservation has: settling it books spend without a reservation.
const NO_LEASE: LeaseId = 0;

/// A budget's counter key. Scope and period are part of it: changing either
/// starts a counter seeded afresh; changing the limit keeps the live one.
fn budget_key(spec: &BudgetSpec) -> Arc<str> {
    Arc::from(format!("budget:{}:{}:{}", spec.id, spec.scope, spec.period))
}

/// When a counter's refusal lifts, as far as the governor can tell without its figures.
fn end_of(rule: CounterRule, now_ms: i64) -> i64 {
    match rule {
        CounterRule::Window { end_ms, .. } => end_ms,
        _ => now_ms,
    }
}

/// Money and tokens held for one request until it settles.
#[must_use = "a reservation must be settled with the actual cost (dropping it releases it)"]
pub struct Reservation {
    governor: Arc<Governor>,
    lease: Option<LeaseId>,
    asks: Vec<CounterAsk>,
    held: Vec<Held>,
    cost: i64,
    tokens: i64,
    remaining: Option<Money>,
    /// Holds on shadow budgets, each under its own lease.
    shadows: Vec<(LeaseId, CounterAsk, Held)>,
    /// Shadow budgets that would have refused this request.
    pub shadow_refused: Vec<String>,
}

impl Reservation {
    fn new(
        governor: Arc<Governor>,
        lease: Option<LeaseId>,
        asks: Vec<CounterAsk>,
        held: Vec<Held>,
        cost: i64,
        tokens: i64,
        remaining: Option<Money>,
    ) -> Reservation {
        Reservation {
            governor,
            lease,
            asks,
            held,
            cost,
            tokens,
            remaining,
            shadows: Vec::new(),
            shadow_refused: Vec::new(),
        }
    }

    pub fn governor(&self) -> &Governor {
        &self.governor
    }

    /// The tightest remaining budget after this reservation (for the response header).
    pub fn remaining(&self) -> Option<Money> {
        self.remaining
    }

    pub fn reserved_cost(&self) -> Money {
        Money::from_nanos(self.cost)
    }

    pub fn reserved_tokens(&self) -> i64 {
        self.tokens
    }

    /// Replaces the reservation by what the request actually cost
    /// (`None`: unpriced, nothing charged to budgets).
    pub async fn settle(mut self, cost: Option<Money>, tokens: u64, now_ms: i64) {
        let tokens = i64::try_from(tokens).unwrap_or(i64::MAX);
        let actual = Some((cost.map_or(0, Money::nanos), tokens));
        if let Some(lease) = self.lease.take() {
            let (asks, held) = (std::mem::take(&mut self.asks), std::mem::take(&mut self.held));
            self.governor.finish(lease, &asks, &held, actual, now_ms).await;
        }
        for (lease, ask, held) in std::mem::take(&mut self.shadows) {
            self.governor.finish(lease, &[ask], &[held], actual, now_ms).await;
        }
    }

    /// Gives everything back: nothing was spent.
    pub async fn release(mut self, now_ms: i64) {
        if let Some(lease) = self.lease.take() {
            self.governor.finish(lease, &[], &[], None, now_ms).await;
        }
        for (lease, _, _) in std::mem::take(&mut self.shadows) {
            self.governor.finish(lease, &[], &[], None, now_ms).await;
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take() {
            self.governor.counters.release_detached(lease);
        }
        for (lease, _, _) in self.shadows.drain(..) {
            self.governor.counters.release_detached(lease);
        }
    }
}

/// Puts a budget in force with what the ledger already holds for its window.
pub async fn install_budget(
    stores: &crate::store::Stores,
    governor: &Governor,
    spec: BudgetSpec,
    now_ms: i64,
) -> Result<(), crate::store::StoreError> {
    install(stores, governor, spec, None, None, now_ms).await
}

/// Installs many budgets (at start-up, or when replicas notice a change):
/// the alerts they already fired this period are read once for all of them,
/// not once per budget.
pub async fn install_budgets(
    stores: &crate::store::Stores,
    governor: &Governor,
    specs: Vec<BudgetSpec>,
    now_ms: i64,
) -> Result<(), crate::store::StoreError> {
    let Some(from) = specs.iter().map(|s| s.period.window(now_ms, governor.time_zone()).0).min() else {
        return Ok(());
    };
    let mut fired: std::collections::HashMap<(String, i64), BTreeSet<u32>> = std::collections::HashMap::new();
    for a in stores.governance.alerts_fired_since(from).await? {
        fired.entry((a.budget_id, a.period_start_ms)).or_default().insert(a.threshold);
    }
    // Every budget is tried; the first failure is returned (the rest are installed).
    let mut first_error = None;
    let mut specs = specs.into_iter().peekable();
    while specs.peek().is_some() {
        let batch: Vec<BudgetSpec> = specs.by_ref().take(SEED_BATCH).collect();
        // What the ledger holds for each, read in one trip to the store.
        let asks =
            batch.iter().map(|s| (s.scope.ledger_filters(), s.period.window(now_ms, governor.time_zone()).0)).collect();
        let spent = match stores.reports.spend_per_second_many(asks).await {
            Ok(spent) if spent.len() == batch.len() => spent.into_iter().map(Some).collect(),
            // Asked again one by one, so each failure is told with its budget.
            _ => vec![None; batch.len()],
        };
        for (spec, spent) in batch.into_iter().zip(spent) {
            let id = spec.id.clone();
            if let Err(error) = install(stores, governor, spec, spent, Some(&mut fired), now_ms).await {
                tracing::error!(%error, budget = %id, "cannot install budget");
                first_error.get_or_insert(error);
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Budgets whose ledger spend is read in one trip at start-up.
const SEED_BATCH: usize = 1000;

async fn install(
    stores: &crate::store::Stores,
    governor: &Governor,
    spec: BudgetSpec,
    spent: Option<Vec<(i64, i64)>>,
    prefetched: Option<&mut std::collections::HashMap<(String, i64), BTreeSet<u32>>>,
    now_ms: i64,
) -> Result<(), crate::store::StoreError> {
    let (start, _) = spec.period.window(now_ms, governor.time_zone());
    let spent = match spent {
        Some(spent) => spent,
        None => stores.reports.spend_per_second(spec.scope.ledger_filters(), start).await?,
    };
    let fired = match spec.period {
        // A rolling window keeps no alert record of its own (its start moves):
        // a threshold the seeded spend is already past was alerted when it was
        // crossed, so it is not sent again by a restart (it re-arms once the
        // spend falls back below it).
        Period::Rolling(_) => {
            let total: i128 = spent.iter().map(|(_, n)| i128::from(*n)).sum();
            let limit = i128::from(spec.limit.nanos().max(1));
            spec.alert_at.iter().copied().filter(|t| total * 1000 >= limit * i128::from(*t)).collect()
        }
        _ => match prefetched {
            Some(map) => map.remove(&(spec.id.clone(), start)).unwrap_or_default(),
            None => stores.governance.fired_alerts(spec.id.clone(), start).await?,
        },
    };
    governor.set_budget(spec, spent, fired, now_ms).await?;
    Ok(())
}

/// Reservations held beyond one request, by the id of what holds them
/// (batches created and not yet priced).
#[derive(Default)]
pub struct Holds(std::sync::Mutex<std::collections::HashMap<String, Vec<(String, Reservation)>>>);

impl Holds {
    pub fn put(&self, batch: String, held: Vec<(String, Reservation)>) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(batch, held);
    }

    pub fn take(&self, batch: &str) -> Option<Vec<(String, Reservation)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribution::Attribution;
    use crate::budget::Scope;

    fn gov() -> (Arc<Governor>, mpsc::UnboundedReceiver<AlertEvent>) {
        let (g, rx) = Governor::new("UTC".parse().unwrap());
        (Arc::new(g), rx)
    }

    fn budget(limit: i64, action: Action) -> BudgetSpec {
        BudgetSpec {
            id: "b1".into(),
            scope: Scope::parse("team=growth").unwrap(),
            limit: Money::from_nanos(limit),
            period: Period::Day,
            action,
            alert_at: vec![500, 800, 1000],
            block_unpriced: false,
        }
    }

    fn attr(team: &str) -> Attribution {
        let mut a = Attribution::default();
        a.tags.insert("team".into(), team.into());
        a
    }

    fn facts<'a>(a: &'a Attribution) -> Facts<'a> {
        Facts { key_id: "k", model: "gpt-4o", provider: Some("openai"), attribution: a }
    }

    fn ask(n: i64) -> Ask {
        Ask { cost: Some(Money::from_nanos(n)), tokens: 10 }
    }

    #[tokio::test]
    async fn reserve_settle_release_and_refuse() {
        let (g, _rx) = gov();
        let now = 1_000_000;
        g.set_budget(budget(1000, Action::Block), vec![], BTreeSet::new(), now).await.unwrap();
        let a = attr("growth");
        let r1 = g.reserve(&facts(&a), ask(600), now).await.unwrap();
        assert_eq!(r1.remaining(), Some(Money::from_nanos(400)));
        let refused = g.reserve(&facts(&a), ask(600), now).await.err().unwrap();
        assert!(matches!(refused, Refusal::Budget { remaining, .. } if remaining == Money::from_nanos(400)));
        r1.settle(Some(Money::from_nanos(100)), 5, now).await;
        // 900 left now.
        let r2 = g.reserve(&facts(&a), ask(900), now).await.unwrap();
        drop(r2); // released
        let st = g.status(now).await;
        assert_eq!(st[0].spent, Money::from_nanos(100));
        assert_eq!(st[0].reserved, Money::ZERO);
        // Other teams are not covered.
        let other = attr("search");
        assert!(g.reserve(&facts(&other), ask(10_000), now).await.is_ok());
    }

    #[tokio::test]
    async fn thresholds_fire_once_per_period_and_reset_next_period() {
        let (g, mut rx) = gov();
        let day = 86_400_000;
        let now = 10 * day + 1000;
        g.set_budget(budget(1000, Action::Alert), vec![], BTreeSet::new(), now).await.unwrap();
        let a = attr("growth");
        for _ in 0..4 {
            g.reserve(&facts(&a), ask(300), now).await.unwrap().settle(Some(Money::from_nanos(300)), 1, now).await;
        }
        let mut got = Vec::new();
        while let Ok(e) = rx.try_recv() {
            got.push(e.threshold_permille);
        }
        assert_eq!(got, vec![500, 800, 1000], "each threshold once");
        // Alert-only budgets never refuse, even over the limit.
        assert!(g.reserve(&facts(&a), ask(5000), now).await.is_ok());
        // Next day: spend resets, thresholds re-arm.
        let tomorrow = now + day;
        g.reserve(&facts(&a), ask(600), tomorrow)
            .await
            .unwrap()
            .settle(Some(Money::from_nanos(600)), 1, tomorrow)
            .await;
        assert_eq!(rx.try_recv().unwrap().threshold_permille, 500);
        assert_eq!(g.status(tomorrow).await[0].spent, Money::from_nanos(600));
    }

    #[tokio::test]
    async fn unpriced_requests_pass_unless_the_budget_blocks_them() {
        let (g, _rx) = gov();
        let mut b = budget(1000, Action::Block);
        g.set_budget(b.clone(), vec![], BTreeSet::new(), 0).await.unwrap();
        let a = attr("growth");
        assert!(g.reserve(&facts(&a), Ask { cost: None, tokens: 1 }, 0).await.is_ok());
        b.block_unpriced = true;
        g.set_budget(b, vec![], BTreeSet::new(), 0).await.unwrap();
        assert!(matches!(
            g.reserve(&facts(&a), Ask { cost: None, tokens: 1 }, 0).await,
            Err(Refusal::Budget { unpriced: true, .. })
        ));
    }

    #[tokio::test]
    async fn rate_limits_are_all_or_nothing_with_exact_retry_after() {
        let (g, _rx) = gov();
        g.set_budget(budget(1_000_000, Action::Block), vec![], BTreeSet::new(), 0).await.unwrap();
        g.set_limit(
            RateLimitSpec {
                id: "rpm".into(),
                scope: Scope::parse("team=growth").unwrap(),
                kind: LimitKind::Requests,
                amount: 2,
                window_ms: 60_000,
            },
            0,
        );
        let a = attr("growth");
        let r1 = g.reserve(&facts(&a), ask(10), 0).await.unwrap();
        let r2 = g.reserve(&facts(&a), ask(10), 0).await.unwrap();
        match g.reserve(&facts(&a), ask(10), 0).await {
            Err(Refusal::RateLimited { retry_after_ms, .. }) => assert_eq!(retry_after_ms, 30_000),
            _ => panic!("third request in the minute must be limited"),
        }
        // The refused request reserved nothing from the budget.
        assert_eq!(g.status(0).await[0].reserved, Money::from_nanos(20));
        r1.settle(Some(Money::from_nanos(5)), 1, 0).await;
        r2.release(0).await;
        assert_eq!(g.status(0).await[0].reserved, Money::ZERO);
        assert_eq!(g.status(0).await[0].spent, Money::from_nanos(5));
    }

    #[tokio::test]
    async fn rolling_dollar_window_slides() {
        let (g, _rx) = gov();
        let mut b = budget(1000, Action::Block);
        b.period = Period::Rolling(60_000);
        g.set_budget(b, vec![], BTreeSet::new(), 0).await.unwrap();
        let a = attr("growth");
        g.reserve(&facts(&a), ask(800), 1_000).await.unwrap().settle(Some(Money::from_nanos(800)), 1, 1_000).await;
        assert!(g.reserve(&facts(&a), ask(300), 30_000).await.is_err());
        // 61 s later the first spend has left the window.
        assert!(g.reserve(&facts(&a), ask(300), 62_000).await.is_ok());
    }

    // -------------------------------------------------- a reservation across midnight
    //
    // A `day` budget in UTC: day N after the epoch is [N × 86_400_000, (N + 1) × 86_400_000) ms.
    // A reservation taken at 23:59:59 on day 10 and settled at 00:00:01 on day 11
    // gives its hold back and books its spend in the window in force when it
    // settles: day 11 (`counters.rs`: "a late settlement for an old window is
    // booked in the current one"); day 11's thresholds are checked against
    // day 11's spend only. Figures are nano-dollars, by hand:
    //   limit 1_000; day 10 spent 850 (alerts at 50 % = 500 and 80 % = 800 fire);
    //   held at 23:59:59: 100 (1_000 − 850 = 150 left, fits; 150 − 100 = 50 remain);
    //   settled at 00:00:01: 60 → day 11 spent 60, held 0, 1_000 − 60 = 940 left;
    //   60 < 500: no alert in day 11.

    const DAY_MS: i64 = 86_400_000;
    const DAY_10: i64 = 10 * DAY_MS;
    const DAY_11: i64 = 11 * DAY_MS;
    /// 23:59:59 on day 10.
    const BEFORE_MIDNIGHT: i64 = DAY_11 - 1_000;
    /// 00:00:01 on day 11.
    const AFTER_MIDNIGHT: i64 = DAY_11 + 1_000;

    fn drain(rx: &mut mpsc::UnboundedReceiver<AlertEvent>) -> Vec<(u32, i64, i64)> {
        let mut got = Vec::new();
        while let Ok(e) = rx.try_recv() {
            got.push((e.threshold_permille, e.spent.nanos(), e.period_start_ms));
        }
        got
    }

    /// Day 10 with 850 spent and 100 held at 23:59:59 (the reservation returned).
    async fn day_10_with_a_hold_at_midnight(
        g: &Arc<Governor>,
        rx: &mut mpsc::UnboundedReceiver<AlertEvent>,
    ) -> Reservation {
        g.set_budget(budget(1_000, Action::Block), vec![], BTreeSet::new(), DAY_10).await.unwrap();
        let a = attr("growth");
        let noon = DAY_10 + DAY_MS / 2;
        g.reserve(&facts(&a), ask(850), noon).await.unwrap().settle(Some(Money::from_nanos(850)), 1, noon).await;
        assert_eq!(drain(rx), vec![(500, 850, DAY_10), (800, 850, DAY_10)]);
        let r = g.reserve(&facts(&a), ask(100), BEFORE_MIDNIGHT).await.unwrap();
        assert_eq!(r.remaining(), Some(Money::from_nanos(50)), "1_000 − 850 − 100");
        let st = &g.status(BEFORE_MIDNIGHT).await[0];
        assert_eq!((st.period_start_ms, st.period_end_ms), (DAY_10, DAY_11));
        assert_eq!((st.spent, st.reserved), (Money::from_nanos(850), Money::from_nanos(100)));
        r
    }

    /// Nothing touches the budget between midnight and the settlement.
    #[tokio::test]
    async fn a_reservation_settled_after_midnight_is_booked_in_the_new_day() {
        let (g, mut rx) = gov();
        let r = day_10_with_a_hold_at_midnight(&g, &mut rx).await;
        r.settle(Some(Money::from_nanos(60)), 1, AFTER_MIDNIGHT).await;
        assert_eq!(drain(&mut rx), vec![], "day 11 has spent 60 of 1_000: under its first threshold (500)");
        let st = &g.status(AFTER_MIDNIGHT).await[0];
        assert_eq!((st.period_start_ms, st.period_end_ms), (DAY_11, DAY_11 + DAY_MS));
        assert_eq!(st.reserved, Money::ZERO, "the hold is given back");
        assert_eq!(st.spent, Money::from_nanos(60), "the late settlement is booked in day 11");
        // Day 11 has 1_000 − 60 = 940 left: 940 fits, 941 does not.
        let a = attr("growth");
        let refused = g.reserve(&facts(&a), ask(941), AFTER_MIDNIGHT).await.err().unwrap();
        assert!(matches!(refused, Refusal::Budget { remaining, .. } if remaining == Money::from_nanos(940)));
        let r = g.reserve(&facts(&a), ask(940), AFTER_MIDNIGHT).await.unwrap();
        assert_eq!(r.remaining(), Some(Money::ZERO));
        r.release(AFTER_MIDNIGHT).await;
    }

    /// The budget is read (and so its counter rolled to day 11) while the
    /// request is still in flight: the hold still counts against day 11 until
    /// it settles, and the settlement lands in day 11 just the same.
    #[tokio::test]
    async fn a_hold_carried_into_the_new_day_counts_there_until_it_settles() {
        let (g, mut rx) = gov();
        let r = day_10_with_a_hold_at_midnight(&g, &mut rx).await;
        let st = &g.status(AFTER_MIDNIGHT).await[0];
        assert_eq!((st.period_start_ms, st.period_end_ms), (DAY_11, DAY_11 + DAY_MS));
        assert_eq!(
            (st.spent, st.reserved),
            (Money::ZERO, Money::from_nanos(100)),
            "day 11 starts at 0, the hold outstanding"
        );
        // 1_000 − 0 − 100 = 900 left in day 11 while the hold is outstanding.
        let a = attr("growth");
        let refused = g.reserve(&facts(&a), ask(901), AFTER_MIDNIGHT).await.err().unwrap();
        assert!(matches!(refused, Refusal::Budget { remaining, .. } if remaining == Money::from_nanos(900)));
        r.settle(Some(Money::from_nanos(60)), 1, AFTER_MIDNIGHT + 1_000).await;
        assert_eq!(drain(&mut rx), vec![]);
        let st = &g.status(AFTER_MIDNIGHT + 1_000).await[0];
        assert_eq!((st.spent, st.reserved), (Money::from_nanos(60), Money::ZERO));
    }

    /// A reservation released (its request failed) after midnight gives its
    /// hold back and books nothing, in either day.
    #[tokio::test]
    async fn a_reservation_released_after_midnight_leaves_nothing_held() {
        let (g, mut rx) = gov();
        let r = day_10_with_a_hold_at_midnight(&g, &mut rx).await;
        r.release(AFTER_MIDNIGHT).await;
        let st = &g.status(AFTER_MIDNIGHT).await[0];
        assert_eq!((st.spent, st.reserved), (Money::ZERO, Money::ZERO));
        assert_eq!(drain(&mut rx), vec![]);
    }
}

#[cfg(test)]
mod run_tests {
    use super::*;

    #[test]
    fn runaway_runs_are_stopped_by_calls_and_dollars() {
        let (g, _rx) = Governor::new("UTC".parse().unwrap());
        let caps = RunCaps {
            max_calls_per_trace: Some(3),
            max_usd_per_session: Some(Money::from_nanos(100)),
            ..Default::default()
        };
        for _ in 0..3 {
            g.admit_run(Some("t1"), None, &caps, 0).unwrap();
        }
        assert!(g.admit_run(Some("t1"), None, &caps, 0).unwrap_err().contains("cap of 3 calls"));
        assert!(g.admit_run(Some("t2"), None, &caps, 0).is_ok(), "other traces are not affected");
        g.admit_run(None, Some("s1"), &caps, 0).unwrap();
        g.charge_run(None, Some("s1"), Money::from_nanos(100));
        assert!(g.admit_run(None, Some("s1"), &caps, 0).unwrap_err().contains("session s1"));
        assert!(g.admit_run(None, None, &caps, 0).is_ok());
    }
}
