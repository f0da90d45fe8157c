//! Budget and rate counters, behind [`CounterStore`]: the state the governor
//! reserves against. The governor decides *which* counters a request touches
//! and what each may hold; a counter store only keeps the numbers, atomically:
//!
//! - `reserve` takes an amount on every counter of a request, all or nothing,
//!   under a lease: a reservation whose owner never settles it (its process
//!   died) is released when the lease runs out;
//! - `settle` replaces a reservation by what was actually spent (and still
//!   books the spend if the lease already ran out); `release` gives it back.
//!
//! Counters are exact integers (nano-dollars, tokens, requests). The
//! in-process [`MemoryCounters`] serves one gateway; a shared store (Redis)
//! serves several replicas with the same semantics, held to them by the
//! conformance suite.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;

/// What a counter store call returns.
pub type CounterFuture<'a, T> = BoxFuture<'a, Result<T, CounterError>>;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CounterError {
    /// The store cannot be reached; nothing was reserved.
    #[error("counter store unavailable: {0}")]
    Unavailable(String),
}

/// How a counter counts, and what it may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterRule {
    /// A sum over a calendar window `[start_ms, end_ms)`; a new window starts
    /// from zero. `limit: None` never refuses (an alert-only budget).
    Window { start_ms: i64, end_ms: i64, limit: Option<i64> },
    /// A sum over the trailing `len_ms`, kept per second.
    Rolling { len_ms: i64, limit: Option<i64> },
    /// A token bucket of `capacity` units, refilled evenly over `window_ms`.
    Rate { capacity: i64, window_ms: i64 },
}

/// One counter a reservation takes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterAsk {
    pub key: Arc<str>,
    pub rule: CounterRule,
    pub amount: i64,
}

pub type LeaseId = u64;

/// A reservation taken: its lease and, per ask, what the counter has left
/// after it (`None` for counters without a limit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    pub lease: LeaseId,
    pub remaining: Vec<Option<i64>>,
}

/// Why a reservation was not taken (nothing was).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CounterRefusal {
    /// A sum counter cannot hold the amount: `remaining` is what it can, and
    /// `resets_at_ms` when it frees up (window end, or the oldest spend leaving a rolling window).
    Exhausted { index: usize, remaining: i64, resets_at_ms: i64 },
    /// A rate counter has not refilled enough: retry after this long.
    Wait { index: usize, retry_after_ms: i64 },
    /// A sum counter has never been seeded from the ledger (new, or the
    /// shared store lost its state, as a Redis restarted without persistence
    /// does): the caller seeds it and asks again. Counting it from zero
    /// would forget what was already spent.
    Unseeded { index: usize },
}

/// A counter's figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterView {
    /// Settled (window and rolling counters) or used units (rate counters).
    pub spent: i64,
    pub reserved: i64,
}

pub trait CounterStore: Send + Sync {
    /// Takes `amount` on every counter, all or nothing, under a lease of `lease_ms`.
    fn reserve<'a>(
        &'a self,
        asks: &'a [CounterAsk],
        lease_ms: i64,
        now_ms: i64,
    ) -> CounterFuture<'a, Result<Granted, CounterRefusal>>;
    /// Replaces the lease's reservation (`asks`, as reserved) by what was
    /// used on each counter (`actual`, in the same order); returns each
    /// counter's figures after. The spend is booked even if the lease ran out.
    fn settle<'a>(
        &'a self,
        lease: LeaseId,
        asks: &'a [CounterAsk],
        actual: &'a [i64],
        now_ms: i64,
    ) -> CounterFuture<'a, Vec<CounterView>>;
    /// Gives the lease's reservation back.
    fn release(&self, lease: LeaseId, now_ms: i64) -> CounterFuture<'_, ()>;
    /// The same without waiting for it (a reservation dropped on an error path).
    fn release_detached(&self, lease: LeaseId);
    /// Sets what a sum counter has already spent in its current window (from
    /// the ledger, per second), keeping its outstanding reservations, unless
    /// it has been seeded before: a counter in use is ahead of the ledger
    /// (settled spend reaches the ledger through the spool), so replicas that
    /// start, or budgets whose limit changes, never set it back.
    fn seed<'a>(
        &'a self,
        key: &'a str,
        rule: CounterRule,
        spent_per_second: Vec<(i64, i64)>,
        now_ms: i64,
    ) -> CounterFuture<'a, ()>;
    fn view<'a>(&'a self, key: &'a str, rule: CounterRule, now_ms: i64) -> CounterFuture<'a, CounterView>;
    /// Releases every reservation whose lease has run out; how many.
    fn expire_leases(&self, now_ms: i64) -> CounterFuture<'_, usize>;
}

// ------------------------------------------------------------------ in process

#[derive(Debug, Default)]
struct Counter {
    /// The calendar window the sum belongs to.
    window: (i64, i64),
    spent: i64,
    /// Rolling counters: spend per second, oldest first.
    seconds: VecDeque<(i64, i64)>,
    reserved: i64,
    /// Rate counters: level in unit·ms (exact), and when it was last refilled.
    level: i128,
    at_ms: i64,
    rate_ready: bool,
    /// Sum counters: seeded from the ledger (see [`CounterStore::seed`]).
    seeded: bool,
}

impl Counter {
    /// Brings the counter to `now`: a new calendar window, the rolling window
    /// slid, the bucket refilled.
    fn roll(&mut self, rule: CounterRule, now_ms: i64) {
        match rule {
            CounterRule::Window { start_ms, end_ms, .. } => {
                if self.window != (start_ms, end_ms) {
                    // Windows only move forward; a late settlement for an old window is booked in the current one.
                    if start_ms >= self.window.0 {
                        self.window = (start_ms, end_ms);
                        self.spent = 0;
                    }
                }
            }
            CounterRule::Rolling { len_ms, .. } => {
                // `spent` is the seconds' running total: only what leaves the window is subtracted.
                while let Some(&(sec, n)) = self.seconds.front() {
                    if sec * 1000 >= now_ms - len_ms {
                        break;
                    }
                    self.spent -= n;
                    self.seconds.pop_front();
                }
            }
            CounterRule::Rate { capacity, window_ms } => {
                let cap = i128::from(capacity) * i128::from(window_ms);
                if !self.rate_ready {
                    self.level = cap;
                    self.at_ms = now_ms;
                    self.rate_ready = true;
                }
                let dt = i128::from((now_ms - self.at_ms).max(0));
                self.level = (self.level + dt * i128::from(capacity)).min(cap);
                self.at_ms = self.at_ms.max(now_ms);
            }
        }
    }

    fn limit(rule: CounterRule) -> Option<i64> {
        match rule {
            CounterRule::Window { limit, .. } | CounterRule::Rolling { limit, .. } => limit,
            CounterRule::Rate { .. } => None,
        }
    }

    fn add_spent(&mut self, rule: CounterRule, n: i64, now_ms: i64) {
        match rule {
            CounterRule::Rate { window_ms, capacity } => {
                self.level -= i128::from(n) * i128::from(window_ms);
                self.level = self.level.min(i128::from(capacity) * i128::from(window_ms));
            }
            CounterRule::Rolling { .. } => {
                self.spent += n;
                let sec = now_ms.div_euclid(1000);
                match self.seconds.back_mut() {
                    Some((s, v)) if *s == sec => *v += n,
                    _ => self.seconds.push_back((sec, n)),
                }
            }
            CounterRule::Window { .. } => self.spent += n,
        }
    }

    fn view(&self, rule: CounterRule) -> CounterView {
        match rule {
            CounterRule::Rate { capacity, window_ms } => {
                let cap = i128::from(capacity) * i128::from(window_ms);
                let used = (cap - self.level) / i128::from(window_ms.max(1));
                CounterView { spent: used.clamp(0, i128::from(i64::MAX)) as i64, reserved: 0 }
            }
            _ => CounterView { spent: self.spent, reserved: self.reserved },
        }
    }
}

#[derive(Debug)]
struct Lease {
    takes: Vec<(Arc<str>, CounterRule, i64)>,
    expires_ms: i64,
}

#[derive(Debug, Default)]
struct Counters {
    counters: crate::FastMap<Arc<str>, Counter>,
    leases: crate::FastMap<LeaseId, Lease>,
    next_lease: LeaseId,
    /// The earliest expiry among the leases (a scan is only due past it).
    next_expiry: i64,
}

impl Counters {
    fn give_back(&mut self, lease: Lease, now_ms: i64) {
        for (key, rule, amount) in lease.takes {
            if let Some(c) = self.counters.get_mut(&key) {
                c.roll(rule, now_ms);
                match rule {
                    CounterRule::Rate { .. } => c.add_spent(rule, -amount, now_ms),
                    _ => c.reserved -= amount,
                }
            }
        }
    }

    fn expire(&mut self, now_ms: i64) -> usize {
        if now_ms < self.next_expiry {
            return 0;
        }
        let expired: Vec<LeaseId> =
            self.leases.iter().filter(|(_, l)| l.expires_ms <= now_ms).map(|(id, _)| *id).collect();
        for id in &expired {
            if let Some(l) = self.leases.remove(id) {
                self.give_back(l, now_ms);
            }
        }
        self.next_expiry = self.leases.values().map(|l| l.expires_ms).min().unwrap_or(i64::MAX);
        expired.len()
    }
}

/// Counters in this process: exact and atomic under one lock (one gateway).
#[derive(Debug)]
pub struct MemoryCounters {
    state: Mutex<Counters>,
    /// Reservations outstanding (a cheap look for tests).
    outstanding: AtomicI64,
}

impl Default for MemoryCounters {
    fn default() -> Self {
        MemoryCounters {
            state: Mutex::new(Counters { next_expiry: i64::MAX, ..Counters::default() }),
            outstanding: AtomicI64::new(0),
        }
    }
}

impl MemoryCounters {
    fn lock(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The blocking core of `reserve` (no I/O: it never waits).
    pub fn reserve_now(&self, asks: &[CounterAsk], lease_ms: i64, now_ms: i64) -> Result<Granted, CounterRefusal> {
        let mut st = self.lock();
        let expired = st.expire(now_ms);
        if expired > 0 {
            self.outstanding.fetch_sub(expired as i64, Ordering::Relaxed);
        }
        for (index, a) in asks.iter().enumerate() {
            let c = st.counters.entry(a.key.clone()).or_default();
            c.roll(a.rule, now_ms);
            match a.rule {
                CounterRule::Rate { capacity, window_ms } => {
                    let need = i128::from(a.amount) * i128::from(window_ms);
                    if a.amount > capacity {
                        return Err(CounterRefusal::Wait { index, retry_after_ms: window_ms });
                    }
                    if need > c.level {
                        let per_ms = i128::from(capacity.max(1));
                        let wait = ((need - c.level) + per_ms - 1) / per_ms;
                        return Err(CounterRefusal::Wait {
                            index,
                            retry_after_ms: wait.min(i128::from(i64::MAX)) as i64,
                        });
                    }
                }
                rule => {
                    if !c.seeded {
                        return Err(CounterRefusal::Unseeded { index });
                    }
                    if let Some(limit) = Counter::limit(rule) {
                        let remaining = limit - c.spent - c.reserved;
                        if remaining < a.amount {
                            let resets_at_ms = match rule {
                                CounterRule::Window { end_ms, .. } => end_ms,
                                CounterRule::Rolling { len_ms, .. } => {
                                    c.seconds.front().map_or(now_ms, |(s, _)| s * 1000 + len_ms)
                                }
                                CounterRule::Rate { .. } => now_ms,
                            };
                            return Err(CounterRefusal::Exhausted { index, remaining, resets_at_ms });
                        }
                    }
                }
            }
        }
        // Everything fits: take it.
        let mut remaining = Vec::with_capacity(asks.len());
        let mut takes = Vec::with_capacity(asks.len());
        for a in asks {
            let c = st.counters.entry(a.key.clone()).or_default();
            match a.rule {
                CounterRule::Rate { .. } => {
                    c.add_spent(a.rule, a.amount, now_ms);
                    remaining.push(None);
                }
                rule => {
                    c.reserved += a.amount;
                    remaining.push(Counter::limit(rule).map(|l| l - c.spent - c.reserved));
                }
            }
            takes.push((a.key.clone(), a.rule, a.amount));
        }
        st.next_lease += 1;
        let lease = st.next_lease;
        let expires_ms = now_ms.saturating_add(lease_ms);
        st.next_expiry = st.next_expiry.min(expires_ms);
        st.leases.insert(lease, Lease { takes, expires_ms });
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        Ok(Granted { lease, remaining })
    }

    pub fn settle_now(&self, lease: LeaseId, asks: &[CounterAsk], actual: &[i64], now_ms: i64) -> Vec<CounterView> {
        let mut st = self.lock();
        // An expired lease was already given back: only the spend is booked.
        let live = st.leases.remove(&lease).is_some();
        if live {
            self.outstanding.fetch_sub(1, Ordering::Relaxed);
        }
        asks.iter()
            .zip(actual)
            .map(|(a, &used)| {
                let c = st.counters.entry(a.key.clone()).or_default();
                c.roll(a.rule, now_ms);
                match a.rule {
                    CounterRule::Rate { .. } => {
                        let already = if live { a.amount } else { 0 };
                        c.add_spent(a.rule, used - already, now_ms);
                    }
                    rule => {
                        if live {
                            c.reserved -= a.amount;
                        }
                        c.add_spent(rule, used, now_ms);
                    }
                }
                c.view(a.rule)
            })
            .collect()
    }

    pub fn release_now(&self, lease: LeaseId, now_ms: i64) {
        let mut st = self.lock();
        if let Some(l) = st.leases.remove(&lease) {
            self.outstanding.fetch_sub(1, Ordering::Relaxed);
            st.give_back(l, now_ms);
        }
    }

    pub fn seed_now(&self, key: &str, rule: CounterRule, spent_per_second: Vec<(i64, i64)>, now_ms: i64) {
        let mut st = self.lock();
        let c = st.counters.entry(Arc::from(key)).or_default();
        if c.seeded {
            return;
        }
        c.seeded = true;
        c.roll(rule, now_ms);
        c.spent = spent_per_second.iter().map(|(_, n)| n).sum();
        if let CounterRule::Rolling { .. } = rule {
            c.seconds = spent_per_second.into_iter().collect();
            c.roll(rule, now_ms);
        }
    }

    pub fn view_now(&self, key: &str, rule: CounterRule, now_ms: i64) -> CounterView {
        let mut st = self.lock();
        match st.counters.get_mut(key) {
            Some(c) => {
                c.roll(rule, now_ms);
                c.view(rule)
            }
            None => CounterView::default(),
        }
    }

    /// Reservations outstanding.
    pub fn outstanding(&self) -> i64 {
        self.outstanding.load(Ordering::Relaxed)
    }
}

impl CounterStore for MemoryCounters {
    fn reserve<'a>(
        &'a self,
        asks: &'a [CounterAsk],
        lease_ms: i64,
        now_ms: i64,
    ) -> CounterFuture<'a, Result<Granted, CounterRefusal>> {
        Box::pin(std::future::ready(Ok(self.reserve_now(asks, lease_ms, now_ms))))
    }

    fn settle<'a>(
        &'a self,
        lease: LeaseId,
        asks: &'a [CounterAsk],
        actual: &'a [i64],
        now_ms: i64,
    ) -> CounterFuture<'a, Vec<CounterView>> {
        Box::pin(std::future::ready(Ok(self.settle_now(lease, asks, actual, now_ms))))
    }

    fn release(&self, lease: LeaseId, now_ms: i64) -> CounterFuture<'_, ()> {
        self.release_now(lease, now_ms);
        Box::pin(std::future::ready(Ok(())))
    }

    fn release_detached(&self, lease: LeaseId) {
        self.release_now(lease, crate::time::now_ms());
    }

    fn seed<'a>(
        &'a self,
        key: &'a str,
        rule: CounterRule,
        spent_per_second: Vec<(i64, i64)>,
        now_ms: i64,
    ) -> CounterFuture<'a, ()> {
        self.seed_now(key, rule, spent_per_second, now_ms);
        Box::pin(std::future::ready(Ok(())))
    }

    fn view<'a>(&'a self, key: &'a str, rule: CounterRule, now_ms: i64) -> CounterFuture<'a, CounterView> {
        Box::pin(std::future::ready(Ok(self.view_now(key, rule, now_ms))))
    }

    fn expire_leases(&self, now_ms: i64) -> CounterFuture<'_, usize> {
        let n = self.lock().expire(now_ms);
        self.outstanding.fetch_sub(n as i64, Ordering::Relaxed);
        Box::pin(std::future::ready(Ok(n)))
    }
}

// ------------------------------------------------------------------ Redis

/// Counters in Redis, shared by every replica: each call is one atomic
/// script (`counters.lua`), so a reservation across several counters is all
/// or nothing for the whole cluster. Keys live under a prefix (one per
/// deployment, or per test run). Leases are a sorted set by expiry; every
/// reserve first gives back the reservations whose lease ran out.
///
/// One Redis primary holds every counter (a script's keys must share a node).
pub struct RedisCounters {
    client: redis::Client,
    /// Shared with the tasks that release dropped reservations.
    conn: Arc<tokio::sync::OnceCell<redis::aio::ConnectionManager>>,
    prefix: String,
    /// Sent by its SHA1 (`EVALSHA`), loaded again when Redis does not know it.
    script: Arc<redis::Script>,
}

/// A counter call that takes longer is failed (Redis unreachable or stuck):
/// the request is refused rather than left waiting.
const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

impl std::fmt::Debug for RedisCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedisCounters({})", self.prefix)
    }
}

const SCRIPT: &str = include_str!("counters.lua");

fn kind_args(rule: CounterRule) -> (&'static str, i64, i64, i64) {
    match rule {
        CounterRule::Window { start_ms, end_ms, limit } => ("W", start_ms, end_ms, limit.unwrap_or(-1)),
        CounterRule::Rolling { len_ms, limit } => ("R", len_ms, 0, limit.unwrap_or(-1)),
        CounterRule::Rate { capacity, window_ms } => ("T", capacity, window_ms, -1),
    }
}

fn unavailable(e: redis::RedisError) -> CounterError {
    CounterError::Unavailable(e.to_string())
}

impl RedisCounters {
    /// `url`: `redis://host:port/db`; `prefix` namespaces the keys (`tg:` by default).
    pub fn new(url: &str, prefix: &str) -> Result<RedisCounters, CounterError> {
        Ok(RedisCounters {
            client: redis::Client::open(url).map_err(unavailable)?,
            conn: Arc::new(tokio::sync::OnceCell::new()),
            prefix: prefix.to_string(),
            script: Arc::new(redis::Script::new(SCRIPT)),
        })
    }

    async fn call(&self, args: Vec<String>) -> Result<redis::Value, CounterError> {
        let work = async {
            let conn = self
                .conn
                .get_or_try_init(|| async {
                    let config = redis::aio::ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(std::time::Duration::from_secs(1)))
                        .set_response_timeout(Some(CALL_TIMEOUT))
                        .set_number_of_retries(1);
                    redis::aio::ConnectionManager::new_with_config(self.client.clone(), config).await
                })
                .await
                .map_err(unavailable)?;
            let mut conn = conn.clone();
            let mut invocation = self.script.key(&self.prefix);
            for a in &args {
                invocation.arg(a);
            }
            invocation.invoke_async(&mut conn).await.map_err(unavailable)
        };
        match tokio::time::timeout(CALL_TIMEOUT, work).await {
            Ok(answer) => answer,
            Err(_) => Err(CounterError::Unavailable(format!(
                "the counter store did not answer within {} ms",
                CALL_TIMEOUT.as_millis()
            ))),
        }
    }
}

fn push_ask(args: &mut Vec<String>, key: &str, rule: CounterRule, amount: i64) {
    let (kind, a, b, limit) = kind_args(rule);
    args.extend([
        key.to_string(),
        kind.to_string(),
        a.to_string(),
        b.to_string(),
        limit.to_string(),
        amount.to_string(),
    ]);
}

fn int(v: &redis::Value) -> i64 {
    match v {
        redis::Value::Int(n) => *n,
        redis::Value::BulkString(b) => std::str::from_utf8(b).ok().and_then(|s| s.parse().ok()).unwrap_or(0),
        redis::Value::SimpleString(s) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

fn text(v: &redis::Value) -> String {
    match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        redis::Value::SimpleString(s) => s.clone(),
        redis::Value::Int(n) => n.to_string(),
        _ => String::new(),
    }
}

fn items(v: redis::Value) -> Vec<redis::Value> {
    match v {
        redis::Value::Array(a) => a,
        other => vec![other],
    }
}

impl CounterStore for RedisCounters {
    fn reserve<'a>(
        &'a self,
        asks: &'a [CounterAsk],
        lease_ms: i64,
        now_ms: i64,
    ) -> CounterFuture<'a, Result<Granted, CounterRefusal>> {
        Box::pin(async move {
            let mut args =
                vec!["reserve".to_string(), now_ms.to_string(), lease_ms.to_string(), asks.len().to_string()];
            for a in asks {
                push_ask(&mut args, &a.key, a.rule, a.amount);
            }
            // Never 0: that id books spend without a reservation (the governor's `NO_LEASE`).
            let lease: LeaseId = rand::random::<LeaseId>().max(1);
            args.push(lease.to_string());
            let v = items(self.call(args).await?);
            let tag = v.first().map(text).unwrap_or_default();
            let index = |i: usize| v.get(i).map(int).unwrap_or(0).max(0) as usize;
            Ok(match tag.as_str() {
                "ok" => Ok(Granted {
                    lease,
                    remaining: v[2..].iter().map(|r| if text(r) == "none" { None } else { Some(int(r)) }).collect(),
                }),
                "wait" => Err(CounterRefusal::Wait { index: index(1), retry_after_ms: v.get(2).map(int).unwrap_or(0) }),
                "unseeded" => Err(CounterRefusal::Unseeded { index: index(1) }),
                "full" => Err(CounterRefusal::Exhausted {
                    index: index(1),
                    remaining: v.get(2).map(int).unwrap_or(0),
                    resets_at_ms: v.get(3).map(int).unwrap_or(now_ms),
                }),
                other => {
                    return Err(CounterError::Unavailable(format!(
                        "unexpected answer from the counter script: {other}"
                    )))
                }
            })
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
            let mut args = vec!["settle".to_string(), now_ms.to_string(), lease.to_string(), asks.len().to_string()];
            for a in asks {
                push_ask(&mut args, &a.key, a.rule, a.amount);
            }
            args.extend(actual.iter().map(|n| n.to_string()));
            let v = items(self.call(args).await?);
            Ok(v.chunks(2)
                .map(|p| CounterView { spent: int(&p[0]), reserved: p.get(1).map(int).unwrap_or(0) })
                .collect())
        })
    }

    fn release(&self, lease: LeaseId, now_ms: i64) -> CounterFuture<'_, ()> {
        Box::pin(async move {
            self.call(vec!["release".into(), now_ms.to_string(), lease.to_string()]).await?;
            Ok(())
        })
    }

    fn release_detached(&self, lease: LeaseId) {
        // No waiting in `Drop`: the release runs on its own task (the lease is the backstop).
        let (client, conn, prefix, script) =
            (self.client.clone(), self.conn.clone(), self.prefix.clone(), self.script.clone());
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let me = RedisCounters { client, conn, prefix, script };
                if let Err(error) = me.release(lease, crate::time::now_ms()).await {
                    tracing::warn!(%error, "cannot release a reservation (its lease will)");
                }
            });
        }
    }

    fn seed<'a>(
        &'a self,
        key: &'a str,
        rule: CounterRule,
        spent_per_second: Vec<(i64, i64)>,
        now_ms: i64,
    ) -> CounterFuture<'a, ()> {
        Box::pin(async move {
            let (kind, a, b, limit) = kind_args(rule);
            let mut args = vec![
                "seed".into(),
                now_ms.to_string(),
                key.to_string(),
                kind.into(),
                a.to_string(),
                b.to_string(),
                limit.to_string(),
            ];
            for (sec, n) in spent_per_second {
                args.extend([sec.to_string(), n.to_string()]);
            }
            self.call(args).await?;
            Ok(())
        })
    }

    fn view<'a>(&'a self, key: &'a str, rule: CounterRule, now_ms: i64) -> CounterFuture<'a, CounterView> {
        Box::pin(async move {
            let (kind, a, b, limit) = kind_args(rule);
            let args = vec![
                "view".into(),
                now_ms.to_string(),
                key.to_string(),
                kind.into(),
                a.to_string(),
                b.to_string(),
                limit.to_string(),
            ];
            let v = items(self.call(args).await?);
            Ok(CounterView { spent: v.first().map(int).unwrap_or(0), reserved: v.get(1).map(int).unwrap_or(0) })
        })
    }

    fn expire_leases(&self, now_ms: i64) -> CounterFuture<'_, usize> {
        Box::pin(async move { Ok(int(&self.call(vec!["expire".into(), now_ms.to_string()]).await?).max(0) as usize) })
    }
}
