//! `[storage] on_counters_down = "local"`: shared counters that keep
//! admitting, within bounds, while the shared store is unreachable.
//!
//! While the shared store (Redis) answers, every call goes to it, and each
//! granted reservation tells this replica how much room each counter had
//! left. When a call fails, this replica carries on alone on counters in its
//! own memory: each budget may take at most `share_percent` of the room it
//! had left when last seen (seen less than [`FRESH_MS`] ago; a budget not
//! seen recently refuses, as `fail_closed` would), each rate limit at most
//! that share of its capacity. What is spent meanwhile is kept as debt and
//! booked on the shared counters once they answer again, before this replica
//! goes back to them. With N replicas and a share of at most 100/N percent,
//! the replicas together cannot take more than the room there was.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use super::counters::{
    CounterAsk, CounterError, CounterFuture, CounterRefusal, CounterRule, CounterStore, CounterView, Granted, LeaseId,
    MemoryCounters,
};

/// How old a counter's last seen room may be to size its local share.
pub const FRESH_MS: i64 = 60_000;

pub struct FallbackCounters {
    shared: Arc<dyn CounterStore>,
    /// This replica's own counters during an outage (fresh for each one).
    local: Mutex<Arc<MemoryCounters>>,
    share_percent: i64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Since when the shared store has not answered (`None`: it answers).
    degraded_since: Option<i64>,
    /// Per counter: the room it had left after this replica's last grant, and when.
    last_room: HashMap<Arc<str>, (i64, i64)>,
    /// Per counter, during an outage: the limit of its local share.
    local_limits: HashMap<Arc<str>, i64>,
    /// Leases granted from the local counters.
    local_leases: HashSet<LeaseId>,
    /// Spend booked locally, to be booked on the shared counters: (asks, amounts).
    debts: Vec<(Vec<CounterAsk>, Vec<i64>)>,
}

impl FallbackCounters {
    pub fn new(shared: Arc<dyn CounterStore>, share_percent: u8) -> FallbackCounters {
        FallbackCounters {
            shared,
            local: Mutex::new(Arc::new(MemoryCounters::default())),
            share_percent: i64::from(share_percent.clamp(1, 100)),
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn local(&self) -> Arc<MemoryCounters> {
        self.local.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// True while this replica counts on its own.
    pub fn degraded(&self) -> bool {
        self.lock().degraded_since.is_some()
    }

    /// The asks as the local counters take them: each budget limited to its
    /// share of the room last seen, each rate limit to its share of capacity.
    /// `None` when a budget's room was not seen recently enough.
    fn local_asks(&self, st: &mut State, asks: &[CounterAsk], now_ms: i64) -> Option<Vec<CounterAsk>> {
        let mut out = Vec::with_capacity(asks.len());
        for a in asks {
            let rule = match a.rule {
                CounterRule::Rate { capacity, window_ms } => {
                    CounterRule::Rate { capacity: (capacity * self.share_percent / 100).max(1), window_ms }
                }
                CounterRule::Window { limit: None, .. } | CounterRule::Rolling { limit: None, .. } => a.rule,
                CounterRule::Window { start_ms, end_ms, limit: Some(_) } => {
                    CounterRule::Window { start_ms, end_ms, limit: Some(self.local_limit(st, &a.key, now_ms)?) }
                }
                CounterRule::Rolling { len_ms, limit: Some(_) } => {
                    CounterRule::Rolling { len_ms, limit: Some(self.local_limit(st, &a.key, now_ms)?) }
                }
            };
            out.push(CounterAsk { key: a.key.clone(), rule, amount: a.amount });
        }
        Some(out)
    }

    fn local_limit(&self, st: &mut State, key: &Arc<str>, now_ms: i64) -> Option<i64> {
        if let Some(l) = st.local_limits.get(key) {
            return Some(*l);
        }
        let (room, seen_ms) = *st.last_room.get(key)?;
        if now_ms - seen_ms > FRESH_MS {
            return None;
        }
        let limit = room.max(0) * self.share_percent / 100;
        st.local_limits.insert(key.clone(), limit);
        Some(limit)
    }

    fn reserve_locally(
        &self,
        asks: &[CounterAsk],
        lease_ms: i64,
        now_ms: i64,
    ) -> Result<Result<Granted, CounterRefusal>, CounterError> {
        let local = {
            let mut st = self.lock();
            st.degraded_since.get_or_insert(now_ms);
            self.local_asks(&mut st, asks, now_ms)
        };
        let Some(local) = local else {
            return Err(CounterError::Unavailable(
                "the counter store is unreachable and this budget's room was not seen recently enough to admit \
                 on a local share"
                    .into(),
            ));
        };
        let counters = self.local();
        for a in &local {
            if !matches!(a.rule, CounterRule::Rate { .. }) {
                // The local share starts from nothing spent: the room it was cut from already counts the rest.
                counters.seed_now(&a.key, a.rule, Vec::new(), now_ms);
            }
        }
        let granted = counters.reserve_now(&local, lease_ms, now_ms);
        if let Ok(g) = &granted {
            self.lock().local_leases.insert(g.lease);
        }
        Ok(granted)
    }

    /// Books the debts on the shared counters; true when none is left.
    async fn pay_debts(&self, now_ms: i64) -> bool {
        loop {
            let Some((asks, used)) = self.lock().debts.first().cloned() else { return true };
            // A lease that does not exist: `settle` books the spend and gives nothing back.
            let dead: LeaseId = rand::random();
            if self.shared.settle(dead, &asks, &used, now_ms).await.is_err() {
                return false;
            }
            self.lock().debts.remove(0);
        }
    }
}

impl CounterStore for FallbackCounters {
    fn reserve<'a>(
        &'a self,
        asks: &'a [CounterAsk],
        lease_ms: i64,
        now_ms: i64,
    ) -> CounterFuture<'a, Result<Granted, CounterRefusal>> {
        Box::pin(async move {
            if !self.degraded() {
                match self.shared.reserve(asks, lease_ms, now_ms).await {
                    Ok(Ok(g)) => {
                        let mut st = self.lock();
                        for (a, room) in asks.iter().zip(&g.remaining) {
                            if let Some(room) = room {
                                st.last_room.insert(a.key.clone(), (*room, now_ms));
                            }
                        }
                        return Ok(Ok(g));
                    }
                    Ok(refused) => return Ok(refused),
                    Err(CounterError::Unavailable(why)) => {
                        tracing::warn!(%why, "counter store unreachable: admitting on this replica's local share");
                    }
                }
            }
            self.reserve_locally(asks, lease_ms, now_ms)
        })
    }

    fn settle<'a>(
        &'a self,
        lease: LeaseId,
        asks: &'a [CounterAsk],
        actual: &'a [i64],
        now_ms: i64,
    ) -> CounterFuture<'a, Vec<CounterView>> {
        Box::pin(async move {
            let was_local = self.lock().local_leases.remove(&lease);
            if was_local {
                // Booked on the shared counters later, once; here only on the local share.
                let local = {
                    let mut st = self.lock();
                    st.debts.push((asks.to_vec(), actual.to_vec()));
                    self.local_asks(&mut st, asks, now_ms)
                };
                return Ok(match local {
                    Some(local) => self.local().settle_now(lease, &local, actual, now_ms),
                    None => vec![CounterView::default(); asks.len()],
                });
            }
            match self.shared.settle(lease, asks, actual, now_ms).await {
                Ok(views) => Ok(views),
                Err(e) => {
                    // Its reservation is given back by its lease; the spend is booked later.
                    self.lock().debts.push((asks.to_vec(), actual.to_vec()));
                    Err(e)
                }
            }
        })
    }

    fn release(&self, lease: LeaseId, now_ms: i64) -> CounterFuture<'_, ()> {
        Box::pin(async move {
            if self.lock().local_leases.remove(&lease) {
                self.local().release_now(lease, now_ms);
                return Ok(());
            }
            self.shared.release(lease, now_ms).await
        })
    }

    fn release_detached(&self, lease: LeaseId) {
        if self.lock().local_leases.remove(&lease) {
            self.local().release_now(lease, crate::time::now_ms());
        } else {
            self.shared.release_detached(lease);
        }
    }

    fn seed<'a>(
        &'a self,
        key: &'a str,
        rule: CounterRule,
        spent_per_second: Vec<(i64, i64)>,
        now_ms: i64,
    ) -> CounterFuture<'a, ()> {
        self.shared.seed(key, rule, spent_per_second, now_ms)
    }

    fn view<'a>(&'a self, key: &'a str, rule: CounterRule, now_ms: i64) -> CounterFuture<'a, CounterView> {
        Box::pin(async move {
            match self.shared.view(key, rule, now_ms).await {
                Ok(v) => Ok(v),
                Err(_) => Ok(self.local().view_now(key, rule, now_ms)),
            }
        })
    }

    /// Also the way back: while degraded, each call (every replica sweeps
    /// once a second) asks the shared store; when it answers, the debts are
    /// booked there and this replica uses it again.
    fn expire_leases(&self, now_ms: i64) -> CounterFuture<'_, usize> {
        Box::pin(async move {
            let local = self.local().expire_leases(now_ms).await.unwrap_or(0);
            let shared = self.shared.expire_leases(now_ms).await;
            if shared.is_ok() && (self.degraded() || !self.lock().debts.is_empty()) && self.pay_debts(now_ms).await {
                let mut st = self.lock();
                if st.degraded_since.take().is_some() {
                    st.local_limits.clear();
                    *self.local.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(MemoryCounters::default());
                    tracing::warn!("counter store reachable again: local spend booked there, back to shared counters");
                }
            }
            Ok(local + shared?)
        })
    }
}
