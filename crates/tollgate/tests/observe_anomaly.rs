//! Anomaly detection: the pure detector on synthetic series (daily rhythm
//! learnt, spikes flagged, loops, token growth, retry spirals), then the
//! same signals through the gateway at `GET /api/v1/anomalies`.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns (and `common`) unwrap too

mod common;

use std::collections::BTreeSet;

use common::{chat, Harness};
use serde_json::Value;
use tollgate::attribution::Attribution;
use tollgate::ledger::{LedgerRow, UsageSource};
use tollgate::observe::{Anomaly, Detector, DetectorConfig, Kind, ObserveOptions, Observer};
use tollgate_units::{Money, Usage};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
/// 2025-01-06 00:00 UTC.
const T0: i64 = 1_736_121_600_000;
const USD: f64 = 1e9;

fn row(id: &str, t: i64, cost_nanos: i64) -> LedgerRow {
    let mut a = Attribution::default();
    a.tags.insert("team".into(), "growth".into());
    LedgerRow {
        request_id: id.into(),
        time_ms: t,
        key_id: Some("key_1".into()),
        endpoint: tollgate::record::Endpoint::ChatCompletions,
        requested_model: Some("gpt-4o".into()),
        model: Some("gpt-4o".into()),
        provider: Some("openai".into()),
        status: 200,
        error_code: None,
        usage: Usage { input: 500, output: 50, ..Usage::default() },
        usage_source: UsageSource::Provider,
        cost: Some(Money::from_nanos(cost_nanos)),
        cache_savings: Money::ZERO,
        response_cache_savings: Money::ZERO,
        tool_cost: Money::ZERO,
        provider_cost: None,
        streamed: false,
        client_disconnected: false,
        cache: tollgate::record::CacheOutcome::Off,
        latency_ms: 100,
        ttft_ms: None,
        attempts: 1,
        prefix_hash: None,
        attempt_log: Vec::new(),
        attribution: a,
    }
}

/// Deterministic noise in [-1, 1).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }
}

/// Hourly spend in USD with a strong daily rhythm: ~$0.2 at night, ~$1.8 mid-afternoon.
fn profile(hour_of_day: i64) -> f64 {
    1.0 + 0.8 * (2.0 * std::f64::consts::PI * (hour_of_day - 9) as f64 / 24.0).sin()
}

/// Feeds `hours` hours of normal traffic from `start`, six rows an hour; returns spend spikes seen.
fn play(d: &mut Detector, noise: &mut Lcg, start: i64, hours: i64) -> Vec<Anomaly> {
    let mut spikes = Vec::new();
    for h in 0..hours {
        let t = start + h * HOUR;
        let usd = profile((t / HOUR) % 24) * (1.0 + 0.15 * noise.next());
        for i in 0..6 {
            let found = d.observe(&row(&format!("r{t}-{i}"), t + i * 600_000, (usd * USD / 6.0) as i64));
            spikes.extend(found.into_iter().filter(|a| a.kind == Kind::SpendSpike));
        }
    }
    spikes
}

#[test]
fn daily_seasonality_is_learnt_and_not_flagged() {
    let mut d = Detector::new(DetectorConfig::default());
    let mut noise = Lcg(7);
    let spikes = play(&mut d, &mut noise, T0, 21 * 24);
    assert!(spikes.is_empty(), "normal days flagged: {:?}", spikes.iter().map(|a| &a.message).collect::<Vec<_>>());
}

#[test]
fn a_spike_is_flagged_once_per_series_with_the_seasonal_expectation() {
    let mut d = Detector::new(DetectorConfig::default());
    let mut noise = Lcg(11);
    assert!(play(&mut d, &mut noise, T0, 14 * 24 + 15).is_empty());
    // 15:00 on day 15: five times the usual afternoon spend, in twelve rows.
    let t = T0 + 14 * DAY + 15 * HOUR;
    let usual = profile(15);
    let mut found = Vec::new();
    for i in 0..12 {
        found.extend(d.observe(&row(&format!("spike-{i}"), t + i * 300_000, (5.0 * usual * USD / 12.0) as i64)));
    }
    let dims: BTreeSet<&str> = found.iter().map(|a| a.dimension).collect();
    assert_eq!(dims, BTreeSet::from(["key", "model", "team"]), "{found:#?}");
    assert_eq!(found.len(), 3, "once per series");
    assert!(found.iter().all(|a| a.kind == Kind::SpendSpike));
    let team = found.iter().find(|a| a.dimension == "team").unwrap();
    assert_eq!(team.value, "growth");
    assert_eq!(team.filter, "team:growth");
    assert_eq!(team.unit, "usd");
    assert_eq!(team.window_ms, Some((t, t + HOUR)));
    let expected: Money = team.expected.parse().unwrap();
    let observed: Money = team.observed.parse().unwrap();
    let usual_nanos = (usual * USD) as i64;
    assert!((expected.nanos() - usual_nanos).abs() < usual_nanos / 5, "expected {expected} vs usual {usual}");
    assert!(observed > expected);
    assert!(observed.nanos() < 3 * usual_nanos, "flagged while it happens, before the hour ends: {observed}");
}

#[test]
fn a_night_spike_below_the_daily_peak_is_still_flagged() {
    // The night spike is $0.40 above the usual: under the default minimum
    // excess ($1.00), which is not what this test is about.
    let mut d =
        Detector::new(DetectorConfig { min_excess: Money::from_nanos(10_000_000), ..DetectorConfig::default() });
    let mut noise = Lcg(3);
    assert!(play(&mut d, &mut noise, T0, 10 * 24 + 3).is_empty());
    // 03:00: three times the night level, yet less than a normal afternoon hour.
    let night = profile(3);
    assert!(3.0 * night < profile(15));
    let t = T0 + 10 * DAY + 3 * HOUR;
    let found: Vec<Anomaly> = (0..6)
        .flat_map(|i| d.observe(&row(&format!("n{i}"), t + i * 600_000, (3.0 * night * USD / 6.0) as i64)))
        .collect();
    assert!(found.iter().any(|a| a.kind == Kind::SpendSpike && a.dimension == "team"), "{found:#?}");
}

#[test]
fn a_new_series_does_not_flag_before_it_has_history() {
    let mut d = Detector::new(DetectorConfig::default());
    let mut found = Vec::new();
    for day in 0..2 {
        for i in 0..6 {
            found.extend(d.observe(&row(&format!("x{day}{i}"), T0 + day * DAY + i * 60_000, 50 * 1_000_000_000)));
        }
    }
    assert!(found.is_empty());
}

fn traced(id: &str, t: i64, trace: &str, input: u64) -> LedgerRow {
    let mut r = row(id, t, 1_000);
    r.attribution.trace_id = Some(trace.into());
    r.usage = Usage { input, output: 20, ..Usage::default() };
    r
}

#[test]
fn the_same_prompt_repeated_in_a_trace_is_a_loop() {
    let mut d = Detector::new(DetectorConfig::default());
    let mut found = Vec::new();
    for i in 0..7 {
        found.extend(d.observe(&traced(&format!("loop-{i}"), T0 + i * 10_000, "run-1", 1_200)));
        // Four repeats elsewhere: below the threshold.
        if i < 4 {
            found.extend(d.observe(&traced(&format!("ok-{i}"), T0 + i * 10_000, "run-2", 900)));
        }
        // Five repeats, but spread far apart: not a loop.
        found.extend(d.observe(&traced(&format!("slow-{i}"), T0 + i * 20 * 60_000, "run-3", 700)));
    }
    let loops: Vec<&Anomaly> = found.iter().filter(|a| a.kind == Kind::Loop).collect();
    assert_eq!(loops.len(), 1, "{found:#?}");
    let l = loops[0];
    assert_eq!((l.dimension, l.value.as_str(), l.filter.as_str()), ("trace", "run-1", "trace:run-1"));
    assert_eq!(l.request_ids, (0..5).map(|i| format!("loop-{i}")).collect::<Vec<_>>());
    assert_eq!(l.observed, "5");
}

#[test]
fn context_growing_turn_over_turn_is_flagged_but_a_short_agent_run_is_not() {
    let mut d = Detector::new(DetectorConfig::default());
    let mut found = Vec::new();
    // A normal five-step run.
    for (i, n) in [800, 1_500, 2_300, 3_000, 3_900].iter().enumerate() {
        found.extend(d.observe(&traced(&format!("a{i}"), T0 + i as i64 * 5_000, "short", *n)));
    }
    assert!(found.is_empty());
    // A runaway: twelve turns, each with a bigger context.
    for i in 0..12u64 {
        found.extend(d.observe(&traced(&format!("g{i}"), T0 + i as i64 * 5_000, "runaway", 1_000 + i * 600)));
    }
    let g: Vec<&Anomaly> = found.iter().filter(|a| a.kind == Kind::TokenGrowth).collect();
    assert_eq!(g.len(), 1, "{found:#?}");
    assert_eq!(g[0].value, "runaway");
    assert_eq!(g[0].expected, "1000");
    // Flagged at the tenth rising turn (1000 + 9 × 600), which is over 4× the first.
    assert_eq!(g[0].observed, "6400");
    assert_eq!(g[0].request_ids.len(), 10);
}

#[test]
fn failed_retries_piling_up_for_a_key_are_a_retry_spiral() {
    let mut d = Detector::new(DetectorConfig::default());
    let fail = |i: i64, attempts: u32| {
        let mut r = row(&format!("f{i}-{attempts}"), T0 + i * 2_000, 0);
        r.status = 502;
        r.error_code = Some("upstream_error".into());
        r.attempts = attempts;
        r
    };
    let mut found = Vec::new();
    for i in 0..20 {
        // Errors that needed no retry do not count.
        found.extend(d.observe(&fail(i, 1)));
    }
    assert!(found.is_empty());
    for i in 0..9 {
        found.extend(d.observe(&fail(i, 3)));
    }
    assert!(found.is_empty(), "nine is below the threshold");
    found.extend(d.observe(&fail(9, 3)));
    assert_eq!(found.len(), 1);
    let a = &found[0];
    assert_eq!((a.kind, a.dimension, a.value.as_str()), (Kind::RetrySpiral, "key", "key_1"));
    assert_eq!(a.request_ids.len(), 10);
    // Quiet during the cool-down.
    assert!(d.observe(&fail(10, 3)).is_empty());
}

#[tokio::test]
async fn anomalies_are_broadcast_to_subscribers() {
    let o = Observer::with_options(None, ObserveOptions::default());
    let mut rx = o.subscribe_anomalies();
    for i in 0..5 {
        o.record(&traced(&format!("b{i}"), T0 + i, "bcast", 4_000));
    }
    let a = rx.try_recv().unwrap();
    assert_eq!((a.kind, a.value.as_str()), (Kind::Loop, "bcast"));
    assert_eq!(o.anomalies().len(), 1);
    assert!(o.render(0).contains("tollgate_anomalies_total{kind=\"loop\"} 1"));
}

#[tokio::test]
async fn the_gateway_reports_loops_and_retry_spirals() {
    let h = Harness::start().await;
    let mut loop_ids = Vec::new();
    for _ in 0..5 {
        let r = h
            .post("/v1/chat/completions")
            .header("x-tollgate-trace-id", "agent-run-7")
            .json(&chat("gpt-4o-mini", "search the docs again", false))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        loop_ids.push(r.headers()["x-tollgate-request-id"].to_str().unwrap().to_string());
    }
    let storm: Vec<_> = (0..10)
        .map(|_| h.post("/v1/chat/completions").json(&chat("gpt-4o-mini", "[mock fault=500]", false)).send())
        .collect();
    for r in futures_util::future::join_all(storm).await {
        assert_eq!(r.unwrap().status(), 502);
    }

    let v: Value = h.http.get(format!("{}/api/v1/anomalies", h.base)).send().await.unwrap().json().await.unwrap();
    let list = v["anomalies"].as_array().unwrap();
    let l = list.iter().find(|a| a["kind"] == "loop").unwrap_or_else(|| panic!("{v}"));
    assert_eq!(l["dimension"], "trace");
    assert_eq!(l["value"], "agent-run-7");
    assert_eq!(l["filter"], "trace:agent-run-7");
    let ids: Vec<String> =
        l["request_ids"].as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect();
    assert_eq!(ids, loop_ids);
    assert!(l["detected_at"].as_str().unwrap().ends_with('Z'));
    let s = list.iter().find(|a| a["kind"] == "retry_spiral").unwrap_or_else(|| panic!("{v}"));
    assert_eq!(s["value"], h.key_id.as_str());
    assert_eq!(s["request_ids"].as_array().unwrap().len(), 10);
    // The loop and the retry spiral share no request: two incidents, each named after its cause.
    let incidents = v["incidents"].as_array().unwrap();
    let names: BTreeSet<&str> = incidents.iter().map(|i| i["name"].as_str().unwrap()).collect();
    let key = format!("key {}", h.key_id);
    assert_eq!(names, BTreeSet::from(["trace agent-run-7", key.as_str()]), "{v}");
    let looped = incidents.iter().find(|i| i["name"] == "trace agent-run-7").unwrap();
    assert_eq!(looped["kinds"], serde_json::json!(["loop"]));
    assert_eq!(looped["excess_usd"], Value::Null);
    assert_eq!(looped["anomalies"], serde_json::json!([l["id"]]));

    let only: Value =
        h.http.get(format!("{}/api/v1/anomalies?kind=loop", h.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(only["anomalies"].as_array().unwrap().len(), 1);
    let bad = h.http.get(format!("{}/api/v1/anomalies?nope=1", h.base)).send().await.unwrap();
    assert_eq!(bad.status(), 400);
    h.stop().await;
}

#[tokio::test]
async fn baselines_and_findings_survive_a_restart_through_the_ledger() {
    let h = Harness::start().await;
    for _ in 0..5 {
        let r = h
            .post("/v1/chat/completions")
            .header("x-tollgate-trace-id", "before-restart")
            .json(&chat("gpt-4o-mini", "same again", false))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    h.wait_rows(5).await;
    let o = Observer::with_options(None, ObserveOptions::default());
    assert_eq!(o.warm_up(h.stores.requests.as_ref(), tollgate::pipeline::now_ms()).await.unwrap(), 5);
    let found = o.anomalies();
    assert_eq!(found.len(), 1);
    assert_eq!((found[0].kind, found[0].value.as_str()), (Kind::Loop, "before-restart"));
    h.stop().await;
}
