//! Spend governance at run time: budgets and rate limits, enforced *before*
//! the provider is called, by reserve → settle.
//!
//! Flow of one request:
//! 1. `reserve` computes nothing itself: the pipeline passes the request's
//!    maximum possible cost and tokens (an upper bound). Under one lock, every
//!    applicable budget and limit is checked; only if all pass is the amount
//!    added to each (all or nothing), so concurrent requests cannot together
//!    overspend.
//! 2. The returned [`Reservation`] is `#[must_use]`; `settle(actual)` replaces
//!    the reserved amount by the actual one; dropping it unsettled (error,
//!    panic, cancelled task) releases it.
//! 3. Crossing an alert threshold sends one [`AlertEvent`] per threshold per period.
//!
//! Counters live in this process (single-node mode). Spend already in the
//! ledger for the current period is loaded when a budget is installed.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};

use chrono_tz::Tz;
use tokio::sync::mpsc;
use tollgate_units::Money;

use crate::budget::{Action, Bucket, BudgetSpec, Facts, LimitKind, Period, RateLimitSpec};

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

struct BudgetState {
    spec: BudgetSpec,
    start_ms: i64,
    end_ms: i64,
    /// Settled spend in the current calendar period.
    spent: i64,
    /// Rolling periods: settled spend per second, oldest first.
    rolling: VecDeque<(i64, i64)>,
    reserved: i64,
    fired: BTreeSet<u32>,
}

impl BudgetState {
    fn roll(&mut self, now_ms: i64, tz: Tz) {
        match self.spec.period {
            Period::Rolling(len) => {
                while self.rolling.front().is_some_and(|(sec, _)| sec * 1000 < now_ms - len) {
                    self.rolling.pop_front();
                }
                let spent: i64 = self.rolling.iter().map(|(_, n)| *n).sum();
                self.spent = spent;
                self.start_ms = now_ms - len;
                self.end_ms = now_ms;
                // A rolling window re-arms a threshold once spend falls back below it.
                let limit = self.spec.limit.nanos().max(1);
                self.fired.retain(|t| i128::from(spent) * 1000 >= i128::from(limit) * i128::from(*t));
            }
            _ => {
                if now_ms >= self.end_ms || now_ms < self.start_ms {
                    let (s, e) = self.spec.period.window(now_ms, tz);
                    self.start_ms = s;
                    self.end_ms = e;
                    self.spent = 0;
                    self.fired.clear();
                }
            }
        }
    }

    fn add_spent(&mut self, nanos: i64, now_ms: i64) {
        self.spent += nanos;
        if let Period::Rolling(_) = self.spec.period {
            let sec = now_ms.div_euclid(1000);
            match self.rolling.back_mut() {
                Some((s, n)) if *s == sec => *n += nanos,
                _ => self.rolling.push_back((sec, nanos)),
            }
        }
    }

    fn remaining(&self) -> i64 {
        self.spec.limit.nanos() - self.spent - self.reserved
    }
}

struct LimitState {
    spec: RateLimitSpec,
    bucket: Bucket,
}

#[derive(Default)]
struct State {
    budgets: crate::FastMap<Arc<str>, BudgetState>,
    limits: crate::FastMap<Arc<str>, LimitState>,
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
    Budget { budget_id: String, scope: String, action: Action, remaining: Money, resets_at_ms: i64, unpriced: bool },
    RateLimited { limit_id: String, scope: String, retry_after_ms: i64 },
}

pub struct Governor {
    state: Mutex<State>,
    tz: Tz,
    alerts: mpsc::UnboundedSender<AlertEvent>,
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

impl Governor {
    pub fn new(tz: Tz) -> (Governor, mpsc::UnboundedReceiver<AlertEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Governor { state: Mutex::new(State::default()), tz, alerts: tx }, rx)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// No budget and no rate limit is installed (requests need no estimate).
    pub fn is_idle(&self) -> bool {
        let st = self.lock();
        st.budgets.is_empty() && st.limits.is_empty()
    }

    pub fn time_zone(&self) -> Tz {
        self.tz
    }

    /// Installs or replaces a budget. `spent` is what the ledger already holds
    /// for its current window (per second for rolling windows); `fired` the
    /// thresholds already alerted this period. A replaced budget keeps its
    /// outstanding reservations.
    pub fn set_budget(&self, spec: BudgetSpec, spent: Vec<(i64, i64)>, fired: BTreeSet<u32>, now_ms: i64) {
        let (start_ms, end_ms) = spec.period.window(now_ms, self.tz);
        let mut st = self.lock();
        let reserved = st.budgets.get(spec.id.as_str()).map_or(0, |b| b.reserved);
        let total: i64 = spent.iter().map(|(_, n)| n).sum();
        let b = BudgetState {
            rolling: if matches!(spec.period, Period::Rolling(_)) {
                spent.into_iter().collect()
            } else {
                VecDeque::new()
            },
            spec,
            start_ms,
            end_ms,
            spent: total,
            reserved,
            fired,
        };
        st.budgets.insert(Arc::from(b.spec.id.as_str()), b);
    }

    pub fn remove_budget(&self, id: &str) -> bool {
        self.lock().budgets.remove(id).is_some()
    }

    pub fn budget_ids(&self) -> Vec<String> {
        self.lock().budgets.keys().map(|k| k.to_string()).collect()
    }

    pub fn set_limit(&self, spec: RateLimitSpec, now_ms: i64) {
        let mut st = self.lock();
        if st.limits.get(spec.id.as_str()).is_some_and(|l| l.spec == spec) {
            return;
        }
        let bucket = Bucket::full(&spec, now_ms);
        st.limits.insert(Arc::from(spec.id.as_str()), LimitState { spec, bucket });
    }

    pub fn status(&self, now_ms: i64) -> Vec<BudgetStatus> {
        let mut st = self.lock();
        let tz = self.tz;
        let mut out: Vec<BudgetStatus> = st
            .budgets
            .values_mut()
            .map(|b| {
                b.roll(now_ms, tz);
                BudgetStatus {
                    spec: b.spec.clone(),
                    spent: Money::from_nanos(b.spent),
                    reserved: Money::from_nanos(b.reserved),
                    period_start_ms: b.start_ms,
                    period_end_ms: b.end_ms,
                }
            })
            .collect();
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
    pub fn reserve(self: &Arc<Self>, facts: &Facts<'_>, ask: Ask, now_ms: i64) -> Result<Reservation, Refusal> {
        let mut st = self.lock();
        let tz = self.tz;
        let cost = ask.cost.map_or(0, |c| c.nanos().max(0));
        let tokens = i64::try_from(ask.tokens).unwrap_or(i64::MAX);

        let mut budget_ids: Vec<Arc<str>> = Vec::new();
        let mut tightest: Option<i64> = None;
        for (id, b) in st.budgets.iter_mut() {
            if !b.spec.scope.matches(facts) {
                continue;
            }
            b.roll(now_ms, tz);
            if b.spec.action != Action::Alert {
                let refuse = (ask.cost.is_none() && b.spec.block_unpriced) || b.remaining() < cost;
                if refuse {
                    return Err(Refusal::Budget {
                        budget_id: b.spec.id.clone(),
                        scope: b.spec.scope.to_string(),
                        action: b.spec.action.clone(),
                        remaining: Money::from_nanos(b.remaining().max(0)),
                        resets_at_ms: match b.spec.period {
                            Period::Rolling(_) => {
                                b.rolling.front().map_or(now_ms, |(s, _)| s * 1000 + (b.end_ms - b.start_ms))
                            }
                            _ => b.end_ms,
                        },
                        unpriced: ask.cost.is_none(),
                    });
                }
            }
            budget_ids.push(id.clone());
        }
        let mut limit_ids: Vec<(Arc<str>, i64)> = Vec::new();
        for (id, l) in st.limits.iter_mut() {
            if !l.spec.scope.matches(facts) {
                continue;
            }
            let units = match l.spec.kind {
                LimitKind::Requests => 1,
                LimitKind::Tokens => tokens,
                LimitKind::Cost => cost,
            };
            let wait = if units > l.spec.amount {
                // Larger than the whole window allows: it can never pass.
                l.spec.window_ms
            } else {
                l.bucket.wait_ms(&l.spec, units, now_ms)
            };
            if wait > 0 {
                return Err(Refusal::RateLimited {
                    limit_id: l.spec.id.clone(),
                    scope: l.spec.scope.to_string(),
                    retry_after_ms: wait,
                });
            }
            limit_ids.push((id.clone(), units));
        }
        // Everything fits: take it.
        for id in &budget_ids {
            if let Some(b) = st.budgets.get_mut(id) {
                b.reserved += cost;
                if b.spec.action != Action::Alert {
                    let r = b.remaining();
                    tightest = Some(tightest.map_or(r, |t: i64| t.min(r)));
                }
            }
        }
        for (id, units) in &limit_ids {
            if let Some(l) = st.limits.get_mut(id) {
                l.bucket.take(&l.spec, *units, now_ms);
            }
        }
        Ok(Reservation {
            governor: self.clone(),
            budgets: budget_ids,
            limits: limit_ids,
            cost,
            tokens,
            remaining: tightest.map(Money::from_nanos),
            done: false,
        })
    }

    fn finish(&self, r: &Reservation, actual: Option<(i64, i64)>, now_ms: i64) {
        let mut fired = Vec::new();
        {
            let mut st = self.lock();
            let tz = self.tz;
            for id in &r.budgets {
                let Some(b) = st.budgets.get_mut(id) else { continue };
                b.reserved -= r.cost;
                if let Some((cost, _)) = actual {
                    b.roll(now_ms, tz);
                    b.add_spent(cost, now_ms);
                    let limit = b.spec.limit.nanos().max(1);
                    for t in b.spec.alert_at.clone() {
                        let crossed = i128::from(b.spent) * 1000 >= i128::from(limit) * i128::from(t);
                        if crossed && b.fired.insert(t) {
                            fired.push(AlertEvent {
                                budget_id: b.spec.id.clone(),
                                scope: b.spec.scope.to_string(),
                                threshold_permille: t,
                                spent: Money::from_nanos(b.spent),
                                limit: b.spec.limit,
                                period_start_ms: b.start_ms,
                                period_end_ms: b.end_ms,
                            });
                        }
                    }
                }
            }
            for (id, units) in &r.limits {
                let Some(l) = st.limits.get_mut(id) else { continue };
                let actual_units = match (l.spec.kind, actual) {
                    (LimitKind::Requests, _) => *units,
                    (LimitKind::Tokens, Some((_, tokens))) => tokens,
                    (LimitKind::Cost, Some((cost, _))) => cost,
                    (_, None) => 0,
                };
                if actual_units >= *units {
                    l.bucket.take(&l.spec, actual_units - units, now_ms);
                } else {
                    l.bucket.give(&l.spec, units - actual_units, now_ms);
                }
            }
        }
        for e in fired {
            let _ = self.alerts.send(e);
        }
    }
}

/// Money and tokens held for one request until it settles.
#[must_use = "a reservation must be settled with the actual cost (dropping it releases it)"]
pub struct Reservation {
    governor: Arc<Governor>,
    budgets: Vec<Arc<str>>,
    limits: Vec<(Arc<str>, i64)>,
    cost: i64,
    tokens: i64,
    remaining: Option<Money>,
    done: bool,
}

impl Reservation {
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
    pub fn settle(mut self, cost: Option<Money>, tokens: u64, now_ms: i64) {
        self.done = true;
        let tokens = i64::try_from(tokens).unwrap_or(i64::MAX);
        self.governor.finish(&self, Some((cost.map_or(0, Money::nanos), tokens)), now_ms);
    }

    /// Gives everything back: nothing was spent.
    pub fn release(mut self, now_ms: i64) {
        self.done = true;
        self.governor.finish(&self, None, now_ms);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.done {
            self.governor.finish(self, None, chrono::Utc::now().timestamp_millis());
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
    let (start, _) = spec.period.window(now_ms, governor.time_zone());
    let spent = stores.reports.spend_per_second(spec.scope.ledger_filters(), start).await?;
    let fired = match spec.period {
        Period::Rolling(_) => Default::default(),
        _ => stores.governance.fired_alerts(spec.id.clone(), start).await?,
    };
    governor.set_budget(spec, spent, fired, now_ms);
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

    #[test]
    fn reserve_settle_release_and_refuse() {
        let (g, _rx) = gov();
        let now = 1_000_000;
        g.set_budget(budget(1000, Action::Block), vec![], BTreeSet::new(), now);
        let a = attr("growth");
        let r1 = g.reserve(&facts(&a), ask(600), now).unwrap();
        assert_eq!(r1.remaining(), Some(Money::from_nanos(400)));
        let refused = g.reserve(&facts(&a), ask(600), now).err().unwrap();
        assert!(matches!(refused, Refusal::Budget { remaining, .. } if remaining == Money::from_nanos(400)));
        r1.settle(Some(Money::from_nanos(100)), 5, now);
        // 900 left now.
        let r2 = g.reserve(&facts(&a), ask(900), now).unwrap();
        drop(r2); // released
        let st = g.status(now);
        assert_eq!(st[0].spent, Money::from_nanos(100));
        assert_eq!(st[0].reserved, Money::ZERO);
        // Other teams are not covered.
        let other = attr("search");
        assert!(g.reserve(&facts(&other), ask(10_000), now).is_ok());
    }

    #[test]
    fn thresholds_fire_once_per_period_and_reset_next_period() {
        let (g, mut rx) = gov();
        let day = 86_400_000;
        let now = 10 * day + 1000;
        g.set_budget(budget(1000, Action::Alert), vec![], BTreeSet::new(), now);
        let a = attr("growth");
        for _ in 0..4 {
            g.reserve(&facts(&a), ask(300), now).unwrap().settle(Some(Money::from_nanos(300)), 1, now);
        }
        let mut got = Vec::new();
        while let Ok(e) = rx.try_recv() {
            got.push(e.threshold_permille);
        }
        assert_eq!(got, vec![500, 800, 1000], "each threshold once");
        // Alert-only budgets never refuse, even over the limit.
        assert!(g.reserve(&facts(&a), ask(5000), now).is_ok());
        // Next day: spend resets, thresholds re-arm.
        let tomorrow = now + day;
        g.reserve(&facts(&a), ask(600), tomorrow).unwrap().settle(Some(Money::from_nanos(600)), 1, tomorrow);
        assert_eq!(rx.try_recv().unwrap().threshold_permille, 500);
        assert_eq!(g.status(tomorrow)[0].spent, Money::from_nanos(600));
    }

    #[test]
    fn unpriced_requests_pass_unless_the_budget_blocks_them() {
        let (g, _rx) = gov();
        let mut b = budget(1000, Action::Block);
        g.set_budget(b.clone(), vec![], BTreeSet::new(), 0);
        let a = attr("growth");
        assert!(g.reserve(&facts(&a), Ask { cost: None, tokens: 1 }, 0).is_ok());
        b.block_unpriced = true;
        g.set_budget(b, vec![], BTreeSet::new(), 0);
        assert!(matches!(
            g.reserve(&facts(&a), Ask { cost: None, tokens: 1 }, 0),
            Err(Refusal::Budget { unpriced: true, .. })
        ));
    }

    #[test]
    fn rate_limits_are_all_or_nothing_with_exact_retry_after() {
        let (g, _rx) = gov();
        g.set_budget(budget(1_000_000, Action::Block), vec![], BTreeSet::new(), 0);
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
        let r1 = g.reserve(&facts(&a), ask(10), 0).unwrap();
        let r2 = g.reserve(&facts(&a), ask(10), 0).unwrap();
        match g.reserve(&facts(&a), ask(10), 0) {
            Err(Refusal::RateLimited { retry_after_ms, .. }) => assert_eq!(retry_after_ms, 30_000),
            _ => panic!("third request in the minute must be limited"),
        }
        // The refused request reserved nothing from the budget.
        assert_eq!(g.status(0)[0].reserved, Money::from_nanos(20));
        r1.settle(Some(Money::from_nanos(5)), 1, 0);
        r2.release(0);
        assert_eq!(g.status(0)[0].reserved, Money::ZERO);
        assert_eq!(g.status(0)[0].spent, Money::from_nanos(5));
    }

    #[test]
    fn rolling_dollar_window_slides() {
        let (g, _rx) = gov();
        let mut b = budget(1000, Action::Block);
        b.period = Period::Rolling(60_000);
        g.set_budget(b, vec![], BTreeSet::new(), 0);
        let a = attr("growth");
        g.reserve(&facts(&a), ask(800), 1_000).unwrap().settle(Some(Money::from_nanos(800)), 1, 1_000);
        assert!(g.reserve(&facts(&a), ask(300), 30_000).is_err());
        // 61 s later the first spend has left the window.
        assert!(g.reserve(&facts(&a), ask(300), 62_000).is_ok());
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
