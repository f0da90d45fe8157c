//! The money path across a restart: spend and budgets rebuilt from the
//! ledger, calendar periods that already ended, budget alerts that fire once
//! per threshold and period (also across a restart), webhook retries and the
//! Slack format, the ledger row of a request whose handling panics, and
//! `[ledger] retention_days`.
//!
//! Most tests run a real `tollgate serve` process (as `crash.rs` does), stop
//! it with SIGTERM and start it again on the same SQLite database.
//!
//! Every expected figure is worked out by hand in this file from the mock's
//! documented usage formulas (`crates/tollgate-mock/src/lib.rs`) and the
//! catalog's per-million-token prices (`crates/tollgate-pricing/catalog/prices.toml`),
//! never by calling tollgate's pricing. gpt-4o-mini, in nano-dollars per
//! token: input $0.15/M → 150, cache read $0.075/M → 75, output $0.60/M → 600.
//!
//! Mock usage, for `T` bytes of prompt text (integer division): prompt =
//! `8 + T/4`, cache read = `prompt/4`, output = `min(max_tokens, 24)` or 24.
//! Costs used below (uncached = prompt − cache read):
//!
//! | T | max_tokens | prompt | cached | uncached | output | cost (nanos) |
//! |---|---|---|---|---|---|---|
//! | 40 | — or 24 | 18 | 4 | 14 | 24 | 14 × 150 + 4 × 75 + 24 × 600 = 2_100 + 300 + 14_400 = **16_800** |
//! | 40 | 1 | 18 | 4 | 14 | 1 | 2_100 + 300 + 600 = **3_000** |
//! | 100 | — | 33 | 8 | 25 | 24 | 3_750 + 600 + 14_400 = **18_750** |
//! | 400 | — | 108 | 27 | 81 | 24 | 12_150 + 2_025 + 14_400 = **28_575** |
//!
//! A budget reservation for a request with `max_tokens` is its upper bound:
//! (prompt bytes + 64 framing tokens) × the input rate + max_tokens × the
//! output rate (see `money_path.rs`).
//!
//! Rows written straight into the store (old rows, before a gateway starts)
//! carry the cost they are given; those figures are round on purpose.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/services.rs"]
mod services;

use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{Datelike, TimeZone};
use serde_json::{json, Value};
use tollgate::ledger::LedgerRow;
use tollgate::record::Endpoint;
use tollgate::store::counters::{
    CounterAsk, CounterFuture, CounterRefusal, CounterRule, CounterStore, CounterView, Granted, LeaseId, MemoryCounters,
};
use tollgate::store::sqlite::SqliteStore;
use tollgate_units::{Money, Usage};

const ADMIN_TOKEN: &str = "restart-test-admin-token";
const KEY_SECRET: &str = "restart-test-key-secret";
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;

fn usd(nanos: i64) -> String {
    Money::from_nanos(nanos).to_string()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn rfc3339(ms: i64) -> String {
    chrono::Utc.timestamp_millis_opt(ms).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Start of the UTC calendar month, week (from Monday) and day holding `ms`,
/// worked out here with chrono (the gateway's `[governance] timezone` is UTC
/// by default).
fn month_start(ms: i64) -> i64 {
    let t = chrono::Utc.timestamp_millis_opt(ms).unwrap();
    chrono::Utc.with_ymd_and_hms(t.year(), t.month(), 1, 0, 0, 0).unwrap().timestamp_millis()
}

fn next_month_start(ms: i64) -> i64 {
    let t = chrono::Utc.timestamp_millis_opt(ms).unwrap();
    let (y, m) = if t.month() == 12 { (t.year() + 1, 1) } else { (t.year(), t.month() + 1) };
    chrono::Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).unwrap().timestamp_millis()
}

fn week_start(ms: i64) -> i64 {
    let t = chrono::Utc.timestamp_millis_opt(ms).unwrap();
    let day = ms - ms.rem_euclid(DAY_MS);
    day - i64::from(t.weekday().num_days_from_monday()) * DAY_MS
}

// ---------------------------------------------------------------------------
// A real `tollgate serve` process on a database that outlives it.
// ---------------------------------------------------------------------------

/// A gateway's home: mock provider, config file, SQLite database, one key.
struct Site {
    _dir: tempfile::TempDir,
    db: String,
    config: std::path::PathBuf,
    key: String,
    key_id: String,
    http: reqwest::Client,
}

impl Site {
    /// A mock provider, a config with `extra`, and a key whose team is `team`.
    async fn new(team: &str, extra: &str) -> Site {
        let mock = common::start_mock().await;
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("restart.db").display());
        let config = dir.path().join("tollgate.toml");
        std::fs::write(&config, common::config_text(mock, &format!("[storage]\nurl = \"{db}\"\n\n{extra}"))).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(["--config", config.to_str().unwrap(), "keys", "create", "--name", team, "--team", team, "--json"])
            .env("TOLLGATE_KEY_SECRET", KEY_SECRET)
            .env("TOLLGATE_LOG", "warn")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        Site {
            _dir: dir,
            db,
            config,
            key: v["key"].as_str().unwrap().to_string(),
            key_id: v["id"].as_str().unwrap().to_string(),
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
        }
    }

    /// Rows written straight into the database (the gateway is not running).
    fn insert(&self, rows: &[LedgerRow]) {
        let store = SqliteStore::open(&self.db).unwrap();
        let refs: Vec<&LedgerRow> = rows.iter().collect();
        store.append(&refs).unwrap();
    }

    /// A synthetic ledger row of this site's key, at `time_ms`, costing `cost_nanos`.
    fn row(&self, id: &str, time_ms: i64, team: &str, cost_nanos: i64) -> LedgerRow {
        let mut row = LedgerRow::new(id, time_ms, &self.key_id, Endpoint::ChatCompletions);
        row.requested_model = Some("gpt-4o-mini".into());
        row.model = Some("gpt-4o-mini".into());
        row.provider = Some("openai".into());
        row.status = 200;
        row.usage = Usage { input: 1_000, output: 100, ..Usage::default() };
        row.cost = Some(Money::from_nanos(cost_nanos));
        row.attempts = 1;
        row.attribution.tags.insert("team".into(), team.into());
        row
    }

    fn start(&self) -> Gw {
        let (child, base) = common::spawn_serve(
            &self.config,
            &[("TOLLGATE_KEY_SECRET", KEY_SECRET), ("TOLLGATE_ADMIN_TOKEN", ADMIN_TOKEN)],
        );
        Gw { child, base, http: self.http.clone(), key: self.key.clone() }
    }
}

/// A running `tollgate serve`.
struct Gw {
    child: Child,
    base: String,
    http: reqwest::Client,
    key: String,
}

/// What the client saw of one proxied request.
struct Sent {
    status: u16,
    id: String,
    /// `x-tollgate-cost-usd`, or a stream's cost comment.
    cost: String,
    /// `x-tollgate-budget-remaining-usd`.
    remaining: String,
    body: String,
}

impl Gw {
    /// SIGTERM, then a clean exit (the ledger drained).
    fn stop(mut self) {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(self.child.wait().unwrap().success(), "a clean exit on SIGTERM");
    }

    async fn get(&self, path_and_query: &str) -> Value {
        let r =
            self.http.get(format!("{}{}", self.base, path_and_query)).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path_and_query}");
        r.json().await.unwrap()
    }

    async fn budget(&self, id: &str) -> Value {
        let v = self.get("/api/v1/budgets").await;
        v["budgets"].as_array().unwrap().iter().find(|b| b["id"] == id).cloned().unwrap_or_else(|| panic!("{v}"))
    }

    async fn request_ids(&self) -> Vec<String> {
        let v = self.get("/api/v1/requests?limit=1000").await;
        v["rows"].as_array().unwrap().iter().map(|r| r["request_id"].as_str().unwrap().to_string()).collect()
    }

    /// Waits until the request log holds `id` (a response's row reaches the
    /// database through the spool just after the last byte).
    async fn wait_for_row(&self, id: &str) {
        for _ in 0..250 {
            if self.request_ids().await.iter().any(|r| r == id) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no row {id} in the request log");
    }

    async fn chat(&self, text: &str, max_tokens: Option<u64>, stream: bool) -> Sent {
        let mut body = common::chat("gpt-4o-mini", text, stream);
        if let Some(m) = max_tokens {
            body["max_tokens"] = json!(m);
        }
        let r = self
            .http
            .post(format!("{}/v1/chat/completions", self.base))
            .bearer_auth(&self.key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let h = |n: &str| r.headers().get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let (status, id, mut cost, remaining) = (
            r.status().as_u16(),
            h("x-tollgate-request-id"),
            h("x-tollgate-cost-usd"),
            h("x-tollgate-budget-remaining-usd"),
        );
        let body = r.text().await.unwrap();
        if stream {
            cost = body
                .lines()
                .find_map(|l| l.strip_prefix(": x-tollgate-cost-usd="))
                .unwrap_or_else(|| panic!("no cost comment in {body}"))
                .trim()
                .to_string();
        }
        Sent { status, id, cost, remaining, body }
    }
}

impl Drop for Gw {
    fn drop(&mut self) {
        // A failed assertion must not leave the process behind.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------
// 1. Spend and budgets rebuilt after a restart; periods that already ended.
// ---------------------------------------------------------------------------

/// A month and a week budget on team `restart`. Before the first start, two
/// rows are written straight into the database: one an hour before this
/// month began, one an hour before this week began. Three requests are
/// served, the gateway is stopped (SIGTERM) and started again: both budgets
/// show the same spend, rebuilt from the ledger, rows of an ended period
/// left out; the next request is charged on top.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spend_and_budgets_are_rebuilt_from_the_ledger_after_a_restart() {
    let t0 = now_ms();
    let (month, week) = (month_start(t0), week_start(t0));
    if next_month_start(t0) - t0 < 120_000 || week + 7 * DAY_MS - t0 < 120_000 {
        services::skipped("restart budgets: a calendar period ends within two minutes; run again");
        return;
    }
    let extra =
        "[[budgets]]\nid = \"month\"\nscope = { team = \"restart\" }\nlimit_usd = \"10\"\nperiod = \"month\"\n\n\
                 [[budgets]]\nid = \"week\"\nscope = { team = \"restart\" }\nlimit_usd = \"5\"\nperiod = \"week\"\n";
    let site = Site::new("restart", extra).await;

    // Rows of ended periods: $0.007 an hour before this month, $0.003 an hour
    // before this week. Whether the one also falls in the other's period
    // depends on today's date (a month may start mid-week), worked out here.
    let last_month = month - HOUR_MS;
    let last_week = week - HOUR_MS;
    site.insert(&[
        site.row("old-last-month", last_month, "restart", 7_000_000),
        site.row("old-last-week", last_week, "restart", 3_000_000),
    ]);
    let carried_into_week = if last_month >= week { 7_000_000 } else { 0 };
    let carried_into_month = if last_week >= month { 3_000_000 } else { 0 };

    let gw = site.start();
    let b = gw.budget("month").await;
    assert_eq!(b["period_start"], rfc3339(month), "{b}");
    assert_eq!(b["period_end"], rfc3339(next_month_start(t0)), "{b}");
    assert_eq!(b["spent_usd"], usd(carried_into_month), "only rows of this month count: {b}");
    let b = gw.budget("week").await;
    assert_eq!(b["period_start"], rfc3339(week), "{b}");
    assert_eq!(b["period_end"], rfc3339(week + 7 * DAY_MS), "{b}");
    assert_eq!(b["spent_usd"], usd(carried_into_week), "only rows of this week count: {b}");

    // A: T = 40 → 16_800; B: T = 100 → 18_750; C: T = 400, streamed → 28_575.
    // Served: 16_800 + 18_750 + 28_575 = 64_125 nanos.
    let a = gw.chat(&"a".repeat(40), None, false).await;
    let b = gw.chat(&"b".repeat(100), None, false).await;
    let c = gw.chat(&"c".repeat(400), None, true).await;
    for (s, cost) in [(&a, "0.000016800"), (&b, "0.000018750"), (&c, "0.000028575")] {
        assert_eq!(s.status, 200, "{}", s.body);
        assert_eq!(s.cost, cost);
    }
    gw.wait_for_row(&c.id).await;
    let served = 64_125;
    let month_spent = served + carried_into_month;
    let week_spent = served + carried_into_week;
    let check = |gw_budget: Value, spent: i64| {
        assert_eq!(gw_budget["spent_usd"], usd(spent), "{gw_budget}");
        assert_eq!(gw_budget["reserved_usd"], "0.000000000", "{gw_budget}");
    };
    check(gw.budget("month").await, month_spent);
    check(gw.budget("week").await, week_spent);
    // The spend report covers all history: 64_125 + 7_000_000 + 3_000_000 = 10_064_125.
    let spend = gw.get("/api/v1/spend").await;
    assert_eq!((spend["total_cost_usd"].as_str(), spend["total_requests"].as_u64()), (Some("0.010064125"), Some(5)));
    gw.stop();

    // Started again on the same database: nothing in memory survived, the
    // ledger alone gives the same figures.
    let gw = site.start();
    check(gw.budget("month").await, month_spent);
    check(gw.budget("week").await, week_spent);
    let b = gw.budget("month").await;
    assert_eq!(b["period_start"], rfc3339(month), "{b}");

    // D: T = 40, max_tokens 24 → costs 16_800. Its reservation:
    //   (40 bytes + 64 framing) × 150 + 24 × 600 = 15_600 + 14_400 = 30_000 nanos,
    // held on both budgets; the header gives the tightest remaining after it.
    let d = gw.chat(&"d".repeat(40), Some(24), false).await;
    assert_eq!(d.status, 200, "{}", d.body);
    assert_eq!(d.cost, "0.000016800");
    let month_left = 10_000_000_000 - month_spent - 30_000;
    let week_left = 5_000_000_000 - week_spent - 30_000;
    assert_eq!(d.remaining, usd(month_left.min(week_left)), "reserved on top of the rebuilt spend");
    gw.wait_for_row(&d.id).await;
    check(gw.budget("month").await, month_spent + 16_800);
    check(gw.budget("week").await, week_spent + 16_800);
    // 10_064_125 + 16_800 = 10_080_925 over 6 requests.
    let spend = gw.get("/api/v1/spend").await;
    assert_eq!((spend["total_cost_usd"].as_str(), spend["total_requests"].as_u64()), (Some("0.010080925"), Some(6)));
    gw.stop();
}

// ---------------------------------------------------------------------------
// 2. Alerts: once per threshold and period, across a restart; retries; Slack.
// ---------------------------------------------------------------------------

/// Budget alerts the receiver got (anomaly notices, which share the
/// webhooks, are left out).
fn budget_alerts(got: &Arc<Mutex<Vec<Value>>>) -> Vec<Value> {
    got.lock().unwrap().iter().filter(|a| a["type"] == "budget_alert").cloned().collect()
}

async fn wait_for_alerts(got: &Arc<Mutex<Vec<Value>>>, n: usize) -> Vec<Value> {
    for _ in 0..250 {
        if budget_alerts(got).len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Posts are concurrent: give one that would come late a moment to arrive.
    tokio::time::sleep(Duration::from_millis(200)).await;
    budget_alerts(got)
}

/// A month budget of $0.0001 (100_000 nanos) alerting at 25 % (25_000) and
/// 50 % (50_000). The first run crosses 25 %: one webhook. After a restart,
/// more spend inside the 25–50 % band sends nothing; crossing 50 % then
/// sends exactly one more (which also fences off a repeated 25 %: alerts are
/// dispatched in order).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_alert_fires_once_per_threshold_and_period_across_a_restart() {
    let t0 = now_ms();
    if next_month_start(t0) - t0 < 120_000 {
        services::skipped("restart alerts: the month ends within two minutes; run again");
        return;
    }
    let (hook, got) = services::webhook().await;
    let extra = format!(
        "[[budgets]]\nid = \"alerts\"\nscope = {{ team = \"alerts\" }}\nlimit_usd = \"0.0001\"\nperiod = \"month\"\n\
         action = \"alert\"\nalert_at = [0.25, 0.5]\n\n[[alerts]]\nurl = \"{hook}\"\n"
    );
    let site = Site::new("alerts", &extra).await;

    let gw = site.start();
    // A: T = 40 → 16_800 (< 25_000: no alert). B: T = 40 → 16_800; 33_600 ≥ 25_000: 25 %.
    let a = gw.chat(&"a".repeat(40), None, false).await;
    assert_eq!((a.status, a.cost.as_str()), (200, "0.000016800"));
    let b = gw.chat(&"b".repeat(40), None, false).await;
    assert_eq!((b.status, b.cost.as_str()), (200, "0.000016800"));
    let alerts = wait_for_alerts(&got, 1).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["budget_id"], "alerts");
    assert_eq!(alerts[0]["threshold"], "0.250");
    assert_eq!(alerts[0]["spent_usd"], "0.000033600");
    assert_eq!(alerts[0]["limit_usd"], "0.000100000");
    assert_eq!(alerts[0]["period_start"], rfc3339(month_start(t0)));
    gw.wait_for_row(&b.id).await;
    gw.stop();

    let gw = site.start();
    assert_eq!(gw.budget("alerts").await["spent_usd"], "0.000033600", "rebuilt from the ledger");
    // C: T = 40, max_tokens 1 → 3_000; 36_600 is still between 25 % and 50 %.
    let c = gw.chat(&"c".repeat(40), Some(1), false).await;
    assert_eq!((c.status, c.cost.as_str()), (200, "0.000003000"));
    // D: T = 40 → 16_800; 53_400 ≥ 50_000: 50 %.
    let d = gw.chat(&"d".repeat(40), None, false).await;
    assert_eq!((d.status, d.cost.as_str()), (200, "0.000016800"));
    let alerts = wait_for_alerts(&got, 2).await;
    let mut seen: Vec<(String, String)> = alerts
        .iter()
        .map(|a| (a["threshold"].as_str().unwrap().to_string(), a["spent_usd"].as_str().unwrap().to_string()))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![("0.250".to_string(), "0.000033600".to_string()), ("0.500".to_string(), "0.000053400".to_string())],
        "25 % once (before the restart), 50 % once: {alerts:?}"
    );
    assert_eq!(gw.budget("alerts").await["spent_usd"], "0.000053400");
    gw.stop();
}

/// A rolling-window budget alerts once when spend crosses a threshold and
/// again only once spend has fallen back below it. A restart while spend is
/// still above it must not repeat the alert (`alerts_fired`: "each threshold
/// fires once per period, also across restarts").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_budget_alert_is_not_repeated_by_a_restart() {
    let (hook, got) = services::webhook().await;
    let extra = format!(
        "[[budgets]]\nid = \"rolling\"\nscope = {{ team = \"rolling\" }}\nlimit_usd = \"0.0001\"\nperiod = \"rolling:1d\"\n\
         action = \"alert\"\nalert_at = [0.25, 0.5]\n\n[[alerts]]\nurl = \"{hook}\"\n"
    );
    let site = Site::new("rolling", &extra).await;
    let gw = site.start();
    // A + B: 16_800 × 2 = 33_600 ≥ 25_000: 25 %.
    for text in ["a".repeat(40), "b".repeat(40)] {
        let s = gw.chat(&text, None, false).await;
        assert_eq!((s.status, s.cost.as_str()), (200, "0.000016800"));
        gw.wait_for_row(&s.id).await;
    }
    assert_eq!(wait_for_alerts(&got, 1).await.len(), 1);
    gw.stop();

    let gw = site.start();
    assert_eq!(gw.budget("rolling").await["spent_usd"], "0.000033600", "rebuilt from the ledger");
    // C: 3_000 → 36_600, still between 25 % and 50 %; D: 16_800 → 53_400 ≥ 50 %.
    let c = gw.chat(&"c".repeat(40), Some(1), false).await;
    assert_eq!((c.status, c.cost.as_str()), (200, "0.000003000"));
    let d = gw.chat(&"d".repeat(40), None, false).await;
    assert_eq!((d.status, d.cost.as_str()), (200, "0.000016800"));
    let alerts = wait_for_alerts(&got, 2).await;
    let mut thresholds: Vec<&str> = alerts.iter().map(|a| a["threshold"].as_str().unwrap()).collect();
    thresholds.sort_unstable();
    assert_eq!(thresholds, vec!["0.250", "0.500"], "25 % once, 50 % once: {alerts:?}");
    gw.stop();
}

/// A webhook receiver that answers 500 to its first `failures` posts, then 200.
async fn flaky_webhook(failures: usize) -> (String, Arc<Mutex<Vec<(u16, Value)>>>) {
    let got: Arc<Mutex<Vec<(u16, Value)>>> = Default::default();
    let g = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::Json<Value>| {
            let g = g.clone();
            async move {
                let mut g = g.lock().unwrap();
                let status = if g.len() < failures { 500 } else { 200 };
                g.push((status, body.0));
                axum::http::StatusCode::from_u16(status).unwrap()
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (format!("http://{addr}/hook"), got)
}

/// One alert, two webhooks: a JSON one that answers 500 twice before taking
/// it (the alert arrives once, after two retries, each post the same), and
/// a Slack one whose payload is `{"text": …}`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_is_retried_until_its_webhook_takes_it_and_slack_gets_a_text_payload() {
    let (flaky, attempts) = flaky_webhook(2).await;
    let (slack, slack_got) = services::webhook().await;
    let extra = format!(
        "[[budgets]]\nid = \"retry\"\nscope = {{ team = \"growth\" }}\nlimit_usd = \"0.0001\"\nperiod = \"day\"\n\
         action = \"alert\"\nalert_at = [0.25]\n\n\
         [[alerts]]\nurl = \"{flaky}\"\n\n[[alerts]]\nurl = \"{slack}\"\nformat = \"slack\"\n"
    );
    let h = common::Harness::start_with(&extra, |c| c).await;
    let t0 = now_ms();
    // Two requests of T = 40: 16_800 × 2 = 33_600 ≥ 25_000 (25 % of 100_000).
    for text in ["a".repeat(40), "b".repeat(40)] {
        let r = h.post("/v1/chat/completions").json(&common::chat("gpt-4o-mini", &text, false)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-tollgate-cost-usd"], "0.000016800");
        let _ = r.bytes().await.unwrap();
    }
    let alert_posts = || -> Vec<(u16, Value)> {
        attempts.lock().unwrap().iter().filter(|(_, v)| v["type"] == "budget_alert").cloned().collect()
    };
    for _ in 0..500 {
        if alert_posts().iter().any(|(s, _)| *s == 200) && !slack_got.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Nothing is posted after the webhook took it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let posts = alert_posts();
    let statuses: Vec<u16> = posts.iter().map(|(s, _)| *s).collect();
    assert_eq!(statuses, vec![500, 500, 200], "refused twice, then taken once: {posts:?}");
    assert!(posts.iter().all(|(_, v)| *v == posts[0].1), "every retry posts the same alert: {posts:?}");
    let alert = &posts[0].1;
    assert_eq!(alert["budget_id"], "retry");
    assert_eq!(alert["threshold"], "0.250");
    assert_eq!(alert["spent_usd"], "0.000033600");
    assert_eq!(alert["limit_usd"], "0.000100000");
    let day = t0 - t0.rem_euclid(DAY_MS);
    if day == now_ms() - now_ms().rem_euclid(DAY_MS) {
        assert_eq!(alert["period_start"], rfc3339(day), "{alert}");
        assert_eq!(alert["period_end"], rfc3339(day + DAY_MS), "{alert}");
    }

    // Slack: one post, a JSON object whose only field is `text`.
    let slack_posts: Vec<Value> = slack_got
        .lock()
        .unwrap()
        .iter()
        .filter(|v| !v["text"].as_str().is_some_and(|t| t.starts_with("tollgate anomaly")))
        .cloned()
        .collect();
    assert_eq!(slack_posts.len(), 1, "{slack_posts:?}");
    let obj = slack_posts[0].as_object().unwrap();
    assert_eq!(obj.keys().collect::<Vec<_>>(), vec!["text"], "{obj:?}");
    let text = obj["text"].as_str().unwrap();
    assert!(text.contains("retry") && text.contains("0.000033600"), "names the budget and its spend: {text}");
    h.stop().await;
}

// ---------------------------------------------------------------------------
// 3. A request whose handling panics still leaves its row.
// ---------------------------------------------------------------------------

/// In-process counters that panic, once, when armed: a panic inside the
/// request's own task, through the public `Stores::with_counters` seam
/// (tollgate has no panic hook of its own).
#[derive(Default)]
struct PanickyCounters {
    inner: MemoryCounters,
    on_reserve: AtomicBool,
    on_settle: AtomicBool,
}

impl CounterStore for PanickyCounters {
    fn reserve<'a>(
        &'a self,
        asks: &'a [CounterAsk],
        lease_ms: i64,
        now_ms: i64,
    ) -> CounterFuture<'a, Result<Granted, CounterRefusal>> {
        if self.on_reserve.swap(false, Ordering::SeqCst) {
            panic!("test: the counter store panics while reserving");
        }
        self.inner.reserve(asks, lease_ms, now_ms)
    }

    fn settle<'a>(
        &'a self,
        lease: LeaseId,
        asks: &'a [CounterAsk],
        actual: &'a [i64],
        now_ms: i64,
    ) -> CounterFuture<'a, Vec<CounterView>> {
        if self.on_settle.swap(false, Ordering::SeqCst) {
            panic!("test: the counter store panics while settling");
        }
        self.inner.settle(lease, asks, actual, now_ms)
    }

    fn release(&self, lease: LeaseId, now_ms: i64) -> CounterFuture<'_, ()> {
        self.inner.release(lease, now_ms)
    }

    fn release_detached(&self, lease: LeaseId) {
        self.inner.release_detached(lease)
    }

    fn seed<'a>(
        &'a self,
        key: &'a str,
        rule: CounterRule,
        spent_per_second: Vec<(i64, i64)>,
        now_ms: i64,
    ) -> CounterFuture<'a, ()> {
        self.inner.seed(key, rule, spent_per_second, now_ms)
    }

    fn view<'a>(&'a self, key: &'a str, rule: CounterRule, now_ms: i64) -> CounterFuture<'a, CounterView> {
        self.inner.view(key, rule, now_ms)
    }

    fn expire_leases(&self, now_ms: i64) -> CounterFuture<'_, usize> {
        self.inner.expire_leases(now_ms)
    }
}

/// The harness's gateway (mock provider, SQLite, key of team `growth`), on
/// the given counters.
struct InProcess(common::Harness);

impl InProcess {
    async fn start(extra: &str, counters: Arc<dyn CounterStore>) -> InProcess {
        InProcess(common::Harness::start_with_stores(extra, |s| s.with_counters(counters)).await)
    }

    async fn chat(&self, text: &str) -> reqwest::Response {
        self.0.post("/v1/chat/completions").json(&common::chat("gpt-4o-mini", text, false)).send().await.unwrap()
    }

    fn rows(&self) -> Vec<LedgerRow> {
        self.0.rows()
    }

    /// The row of `id`, waiting for it to come through the spool.
    async fn row_of(&self, id: &str) -> Option<LedgerRow> {
        for _ in 0..250 {
            if let Some(r) = self.rows().into_iter().find(|r| r.request_id == id) {
                return Some(r);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    async fn upstream_calls(&self) -> u64 {
        self.0.mock_total().await
    }

    async fn budget_spent(&self, id: &str) -> (String, String) {
        let h = &self.0;
        let v: Value = h.http.get(format!("{}/api/v1/budgets", h.base)).send().await.unwrap().json().await.unwrap();
        let b = v["budgets"].as_array().unwrap().iter().find(|b| b["id"] == id).unwrap().clone();
        (b["spent_usd"].as_str().unwrap().to_string(), b["reserved_usd"].as_str().unwrap().to_string())
    }

    async fn stop(self) {
        self.0.stop().await;
    }
}

const DAY_BUDGET: &str =
    "[[budgets]]\nid = \"day\"\nscope = { team = \"growth\" }\nlimit_usd = \"1\"\nperiod = \"day\"\n";

/// The counter store panics while the request reserves its budget: the
/// client gets 500 `internal_error` with the request id, and the ledger has
/// that request's row (500, `internal_error`, $0: nothing went upstream).
/// The gateway keeps serving and charging normally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_panics_before_going_upstream_leaves_one_row() {
    let counters = Arc::new(PanickyCounters::default());
    let g = InProcess::start(DAY_BUDGET, counters.clone()).await;

    counters.on_reserve.store(true, Ordering::SeqCst);
    let r = g.chat(&"p".repeat(40)).await;
    assert_eq!(r.status(), 500);
    let id = r.headers()["x-tollgate-request-id"].to_str().unwrap().to_string();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "internal_error", "{v}");
    let row = g.row_of(&id).await.expect("the panicking request's row");
    assert_eq!((row.status, row.error_code.as_deref()), (500, Some("internal_error")));
    assert_eq!(row.cost, Some(Money::ZERO), "nothing was sent upstream");
    assert_eq!(row.attempts, 0);
    assert_eq!(row.requested_model.as_deref(), Some("gpt-4o-mini"));
    assert_eq!(row.attribution.tag("team"), Some("growth"));
    assert_eq!(g.upstream_calls().await, 0);
    assert_eq!(g.budget_spent("day").await, ("0.000000000".into(), "0.000000000".into()));

    // The next request: T = 40 → 16_800 nanos, charged as usual.
    let r = g.chat(&"q".repeat(40)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-tollgate-cost-usd"], "0.000016800");
    let next = r.headers()["x-tollgate-request-id"].to_str().unwrap().to_string();
    let _ = r.bytes().await.unwrap();
    assert!(g.row_of(&next).await.is_some());
    assert_eq!(g.rows().len(), 2, "one row per request");
    assert_eq!(g.budget_spent("day").await, ("0.000016800".into(), "0.000000000".into()));
    g.stop().await;
}

/// The counter store panics while the request settles its reservation,
/// after the provider answered: the provider billed T = 40 → 16_800 nanos,
/// so the ledger must have the row, at that cost ("every proxied request …
/// leaves exactly one row: … even a panic inside the gateway").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_panics_after_the_provider_answered_leaves_its_row() {
    let counters = Arc::new(PanickyCounters::default());
    let g = InProcess::start(DAY_BUDGET, counters.clone()).await;
    counters.on_settle.store(true, Ordering::SeqCst);
    let r = g.chat(&"s".repeat(40)).await;
    let status = r.status();
    let id = r.headers()["x-tollgate-request-id"].to_str().unwrap().to_string();
    let _ = r.bytes().await.unwrap();
    assert_eq!(g.upstream_calls().await, 1, "the provider answered");
    let row = g.row_of(&id).await.unwrap_or_else(|| panic!("no ledger row for {id} (client got {status})"));
    assert_eq!(row.cost, Some(Money::from_nanos(16_800)), "{row:?}");
    assert_eq!(g.rows().len(), 1);
    g.stop().await;
}

// ---------------------------------------------------------------------------
// 4. `[ledger] retention_days`.
// ---------------------------------------------------------------------------

/// The hour that started three days ago, and two old rows inside it.
fn old_rows(site: &Site, team: &str) -> (i64, Vec<LedgerRow>) {
    let now = now_ms();
    let hour = (now - 3 * DAY_MS).div_euclid(HOUR_MS) * HOUR_MS;
    let rows = vec![
        site.row("old-1", hour + 10 * 60_000, team, 4_000_000),
        site.row("old-2", hour + 40 * 60_000, team, 6_000_000),
    ];
    (hour, rows)
}

/// Waits until the request log no longer has any of `gone`.
async fn wait_pruned(gw: &Gw, gone: &[&str]) -> Vec<String> {
    for _ in 0..250 {
        let ids = gw.request_ids().await;
        if !ids.iter().any(|id| gone.contains(&id.as_str())) {
            return ids;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("rows {gone:?} are still in the request log past retention");
}

/// `retention_days = 1`: rows of three days ago (written into the database
/// before the gateway starts) are deleted from the raw ledger at start —
/// gone from the request log and from reports by a dimension the rollup does
/// not keep — while reports by rollup dimensions over whole hours still
/// count them, to the nano-dollar.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_old_raw_rows_at_start_and_the_hourly_rollup_keeps_their_spend() {
    let site = Site::new("keep", "[ledger]\nretention_days = 1\n").await;
    let (hour, old) = old_rows(&site, "keep");
    // Old: 4_000_000 + 6_000_000 = 10_000_000 nanos; recent (two hours ago): 500_000.
    let recent = site.row("recent", now_ms() - 2 * HOUR_MS, "keep", 500_000);
    site.insert(&[old[0].clone(), old[1].clone(), recent]);

    let gw = site.start();
    let ids = wait_pruned(&gw, &["old-1", "old-2"]).await;
    assert!(ids.iter().any(|id| id == "recent"), "a row inside the retention is kept: {ids:?}");
    // E: T = 100 → 18_750.
    let e = gw.chat(&"e".repeat(100), None, false).await;
    assert_eq!((e.status, e.cost.as_str()), (200, "0.000018750"));
    gw.wait_for_row(&e.id).await;
    let ids = gw.request_ids().await;
    assert_eq!(ids.len(), 2, "{ids:?}");

    // By team, from an hour boundary: whole hours, all from the rollup.
    //   10_000_000 + 500_000 + 18_750 = 10_518_750 over 4 requests.
    let from = rfc3339(hour - HOUR_MS);
    let v = gw.get(&format!("/api/v1/spend?group_by=team&from={from}")).await;
    assert_eq!((v["total_cost_usd"].as_str(), v["total_requests"].as_u64()), (Some("0.010518750"), Some(4)), "{v}");
    // The old hour alone: the two pruned rows, 10_000_000.
    let v =
        gw.get(&format!("/api/v1/spend?group_by=model&from={}&to={}", rfc3339(hour), rfc3339(hour + HOUR_MS))).await;
    assert_eq!((v["total_cost_usd"].as_str(), v["total_requests"].as_u64()), (Some("0.010000000"), Some(2)), "{v}");
    // By user (not a rollup dimension): raw rows only, the retained ones:
    //   500_000 + 18_750 = 518_750 over 2 requests.
    let v = gw.get(&format!("/api/v1/spend?group_by=user&from={from}")).await;
    assert_eq!((v["total_cost_usd"].as_str(), v["total_requests"].as_u64()), (Some("0.000518750"), Some(2)), "{v}");
    gw.stop();

    // A restart does not bring them back, nor lose the rollup.
    let gw = site.start();
    let ids = gw.request_ids().await;
    assert_eq!(ids.len(), 2, "{ids:?}");
    let v = gw.get(&format!("/api/v1/spend?group_by=team&from={from}")).await;
    assert_eq!((v["total_cost_usd"].as_str(), v["total_requests"].as_u64()), (Some("0.010518750"), Some(4)), "{v}");
    gw.stop();
}

/// A budget whose window reaches further back than `retention_days`: the
/// spend of pruned rows must still count after a restart. Here a
/// `rolling:7d` budget of $0.01 is exhausted by rows of three days ago
/// (10_000_000 nanos); `retention_days = 1` prunes them. The first run
/// refuses the next request (402); after a restart the budget must still be
/// exhausted — the spend report over the same window still shows $0.01.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_does_not_lower_a_budget_rebuilt_after_a_restart() {
    let extra = "[ledger]\nretention_days = 1\n\n[[budgets]]\nid = \"week-rolling\"\nscope = { team = \"keep\" }\n\
                 limit_usd = \"0.01\"\nperiod = \"rolling:7d\"\n";
    let site = Site::new("keep", extra).await;
    let (hour, old) = old_rows(&site, "keep");
    site.insert(&old);

    // And one row older than the budget's window: retention may take that one.
    let ancient = site.row("ancient", now_ms() - 8 * DAY_MS, "keep", 1_000);
    site.insert(&[ancient]);
    let gw = site.start();
    assert_eq!(gw.budget("week-rolling").await["spent_usd"], "0.010000000");
    // Retention ran (the row older than every budget window is gone) and kept
    // the rows the rolling week still counts, though they are past retention_days.
    let left = wait_pruned(&gw, &["ancient"]).await;
    assert!(left.iter().any(|id| id == "old-1") && left.iter().any(|id| id == "old-2"), "{left:?}");
    // T = 40, max_tokens 24: reserves (40 + 64) × 150 + 24 × 600 = 30_000 > $0 remaining.
    let refused = gw.chat(&"f".repeat(40), Some(24), false).await;
    assert_eq!(refused.status, 402, "{}", refused.body);
    gw.wait_for_row(&refused.id).await;
    gw.stop();

    let gw = site.start();
    let v = gw.get(&format!("/api/v1/spend?group_by=team&from={}", rfc3339(hour))).await;
    assert_eq!(v["total_cost_usd"], "0.010000000", "the rollup still has the spend: {v}");
    assert_eq!(gw.budget("week-rolling").await["spent_usd"], "0.010000000", "the budget still has it too");
    let again = gw.chat(&"g".repeat(40), Some(24), false).await;
    assert_eq!(again.status, 402, "the exhausted budget still refuses: {}", again.body);
    gw.stop();
}
