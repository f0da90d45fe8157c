//! Overload driver for `bench/overload.sh`: an open-loop load (requests are
//! sent on a schedule, whether or not earlier ones have answered, as real
//! clients do) against a running gateway, in three phases:
//!
//! 1. `base`: 50 % of the capacity, the latency to compare with;
//! 2. `over`: 5× the capacity;
//! 3. `after`: 50 % again — how long until the latency is back.
//!
//! Usage: `overload URL KEY CAPACITY_RPS [SECONDS_PER_PHASE]`. Prints one
//! JSON object: per phase, the offered and served rates, refusals by
//! status, and the p50/p99 latency of the requests that were served (200);
//! and `recovered_after_ms`: from the end of the overload to the start of
//! the first 250 ms window of the `after` phase whose p99 is within 2× the
//! base p99 and that sheds nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// The request; `{LATENCY}` becomes the mock's upstream latency (`OVERLOAD_LATENCY_MS`, default 50).
const BODY: &str = r#"{"model":"gpt-4o-mini","max_tokens":64,"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"[mock latency_ms={LATENCY}] Summarise: tolls are fees."}]}"#;

/// One finished request: when it was sent (since the start), its latency, its status (0: transport error).
type Sample = (Duration, Duration, u16);

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: overload URL KEY CAPACITY_RPS [SECONDS_PER_PHASE]");
        std::process::exit(2);
    }
    let url: hyper::Uri = args[1].parse().expect("URL");
    let key = args[2].clone();
    let capacity: f64 = args[3].parse().expect("CAPACITY_RPS");
    let secs: u64 = args.get(4).map_or(10, |s| s.parse().expect("SECONDS_PER_PHASE"));
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.set_nodelay(true);
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(100_000)
        .pool_idle_timeout(Duration::from_secs(30))
        .build(http);
    let latency = std::env::var("OVERLOAD_LATENCY_MS").unwrap_or_else(|_| "50".into());
    let body = Bytes::from(BODY.replace("{LATENCY}", &latency));
    // Clients that have sent and not yet heard back, at most (a client with
    // none left gives up on that request: counted as `not_sent`).
    let max_outstanding: usize =
        std::env::var("OVERLOAD_MAX_OUTSTANDING").ok().and_then(|v| v.parse().ok()).unwrap_or(3000);
    let outstanding = Arc::new(tokio::sync::Semaphore::new(max_outstanding));
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let start = Instant::now();
    // `OVERLOAD_ONLY_BASE=1`: the first phase alone (how bench/overload.sh finds the capacity).
    let phases: &[(&str, f64)] = if std::env::var_os("OVERLOAD_ONLY_BASE").is_some() {
        &[("base", 0.5)]
    } else {
        &[("base", 0.5), ("over", 5.0), ("after", 0.5)]
    };
    let mut bounds = Vec::new();
    for &(name, factor) in phases {
        let rate = capacity * factor;
        let from = start.elapsed();
        let gap = Duration::from_secs_f64(1.0 / rate);
        let phase_start = Instant::now();
        let mut sent = 0u64;
        let mut not_sent = 0u64;
        while phase_start.elapsed() < Duration::from_secs(secs) {
            // Open loop: every request due by now goes out now.
            let due = (phase_start.elapsed().as_secs_f64() * rate) as u64;
            while sent + not_sent < due {
                let Ok(permit) = outstanding.clone().try_acquire_owned() else {
                    not_sent += 1;
                    continue;
                };
                sent += 1;
                let (client, url, key, samples, body) =
                    (client.clone(), url.clone(), key.clone(), samples.clone(), body.clone());
                let at = start.elapsed();
                tokio::spawn(async move {
                    let req = hyper::Request::post(url)
                        .header("authorization", format!("Bearer {key}"))
                        .header("content-type", "application/json")
                        .header("x-tollgate-tags", "feature=summarize,env=prod,customer=acme")
                        .body(Full::new(body))
                        .expect("request");
                    let t = Instant::now();
                    let status = match client.request(req).await {
                        Ok(resp) => {
                            let s = resp.status().as_u16();
                            match resp.into_body().collect().await {
                                Ok(_) => s,
                                Err(_) => 0,
                            }
                        }
                        Err(_) => 0,
                    };
                    samples.lock().unwrap_or_else(|p| p.into_inner()).push((at, t.elapsed(), status));
                    drop(permit);
                });
            }
            tokio::time::sleep(gap.min(Duration::from_millis(1))).await;
        }
        bounds.push((name, rate, from, start.elapsed(), sent, not_sent));
    }
    // Let the stragglers finish (bounded).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let all = samples.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut report = Vec::new();
    let mut base_p99 = Duration::ZERO;
    for (name, rate, from, to, sent, not_sent) in &bounds {
        let mine: Vec<&Sample> = all.iter().filter(|s| s.0 >= *from && s.0 < *to).collect();
        let mut ok: Vec<Duration> = mine.iter().filter(|s| s.2 == 200).map(|s| s.1).collect();
        ok.sort();
        let pct = |p: f64| {
            ok.get(((ok.len() as f64 * p) as usize).min(ok.len().saturating_sub(1))).copied().unwrap_or_default()
        };
        let mut by_status = std::collections::BTreeMap::<u16, u64>::new();
        for s in &mine {
            *by_status.entry(s.2).or_default() += 1;
        }
        let span = (*to - *from).as_secs_f64();
        if *name == "base" {
            base_p99 = pct(0.99);
        }
        report.push(format!(
            "\"{name}\":{{\"offered_rps\":{:.0},\"sent\":{sent},\"not_sent\":{not_sent},\"answered\":{},\"served_rps\":{:.0},\"by_status\":{},\"served_p50_ms\":{:.3},\"served_p99_ms\":{:.3}}}",
            rate,
            mine.len(),
            ok.len() as f64 / span,
            serde_json::to_string(&by_status.iter().map(|(k, v)| (k.to_string(), *v)).collect::<std::collections::BTreeMap<_, _>>()).unwrap_or_default(),
            pct(0.5).as_secs_f64() * 1000.0,
            pct(0.99).as_secs_f64() * 1000.0,
        ));
    }
    // Recovery: 250 ms windows of the `after` phase.
    let (after_from, after_to) = bounds.get(2).map_or((Duration::ZERO, Duration::ZERO), |b| (b.2, b.3));
    let window = Duration::from_millis(250);
    let mut recovered = None;
    let mut w = after_from;
    while w + window <= after_to {
        let mut lat: Vec<Duration> =
            all.iter().filter(|s| s.0 >= w && s.0 < w + window && s.2 == 200).map(|s| s.1).collect();
        let shed = all.iter().any(|s| s.0 >= w && s.0 < w + window && s.2 != 200);
        lat.sort();
        let p99 = lat.get(((lat.len() as f64 * 0.99) as usize).min(lat.len().saturating_sub(1))).copied();
        if !shed && p99.is_some_and(|p| p <= base_p99 * 2) {
            recovered = Some(w - after_from);
            break;
        }
        w += window;
    }
    println!(
        "{{{},\"recovered_after_ms\":{}}}",
        report.join(","),
        recovered.map_or("null".to_string(), |d| d.as_millis().to_string())
    );
}
