//! The usage-event stream (`[usage_events]`): a local webhook gets one
//! CloudEvent per ledger row, in batches; the first POST is answered 500
//! and the same batch comes again; after dedup by id every row arrived
//! exactly once, with its exact cost.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns (and `common`) unwrap too

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use common::{chat, header, Harness};
use serde_json::Value;

/// One POST the receiver got: content type, idempotency key, body, what it answered.
#[derive(Debug, Clone)]
struct Post {
    content_type: String,
    key: String,
    body: Value,
    status: u16,
}

type Received = Arc<Mutex<Vec<Post>>>;

/// A webhook that records every POST and answers 500 to the first `fail_first`.
async fn receiver(fail_first: usize) -> (String, Received) {
    let got: Received = Arc::default();
    let sink = got.clone();
    let seen = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new().route(
        "/events",
        post(move |headers: HeaderMap, body: Bytes| {
            let (sink, seen) = (sink.clone(), seen.clone());
            async move {
                let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                let fail = seen.fetch_add(1, Ordering::SeqCst) < fail_first;
                let status = if fail { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::OK };
                sink.lock().unwrap().push(Post {
                    content_type: h("content-type"),
                    key: h("idempotency-key"),
                    body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                    status: status.as_u16(),
                });
                status
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (format!("http://{addr}/events"), got)
}

/// Every event received, in order of arrival (a retried batch's events twice).
fn events(got: &Received) -> Vec<Value> {
    got.lock().unwrap().iter().flat_map(|p| p.body.as_array().cloned().unwrap_or_default()).collect()
}

async fn wait_for_ids(got: &Received, ids: &BTreeSet<String>) {
    for _ in 0..300 {
        let seen: BTreeSet<String> = events(got).iter().filter_map(|e| e["id"].as_str().map(String::from)).collect();
        if ids.is_subset(&seen) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn every_ledger_row_arrives_once_by_id_as_a_cloudevent_after_a_retry() {
    let (url, got) = receiver(1).await;
    let extra = format!("[usage_events]\nurl = \"{url}\"\nbatch_max = 3\nflush_ms = 50\n");
    let h = Harness::start_with(&extra, |c| c).await;

    let mut ids = BTreeSet::new();
    for (model, stream) in [
        ("gpt-4o-mini", false),
        ("gpt-4o-mini", true),
        ("claude-haiku-4-5", false),
        ("gpt-4o-mini", false),
        ("openai/house-model-x", false),
    ] {
        let r = h
            .post("/v1/chat/completions")
            .header("x-tollgate-tags", "feature=usage-stream,customer=acme")
            .json(&chat(model, "meter this request for the billing system", stream))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{model}");
        ids.insert(header(&r, "x-tollgate-request-id"));
        let _ = r.bytes().await.unwrap();
    }
    let rows = h.wait_rows(ids.len()).await;
    let rows: BTreeMap<String, tollgate::ledger::LedgerRow> =
        rows.into_iter().map(|r| (r.request_id.clone(), r)).collect();
    assert_eq!(rows.keys().cloned().collect::<BTreeSet<_>>(), ids, "one ledger row per request");
    assert!(rows.values().any(|r| r.cost.is_none()), "one row is unpriced");
    wait_for_ids(&got, &ids).await;

    let posts = got.lock().unwrap().clone();
    // The first POST failed; the same batch (same body, same key) came again.
    assert!(posts.len() >= 2, "{posts:?}");
    assert_eq!(posts[0].status, 500);
    assert_eq!(posts[1].status, 200);
    assert_eq!(posts[1].body, posts[0].body, "a failed batch is sent again as it was");
    assert_eq!(posts[1].key, posts[0].key);
    for p in &posts {
        assert_eq!(p.content_type, "application/cloudevents-batch+json");
        let batch = p.body.as_array().unwrap();
        assert!(!batch.is_empty() && batch.len() <= 3, "batch_max = 3: {}", batch.len());
        let batch_ids: Vec<&str> = batch.iter().map(|e| e["id"].as_str().unwrap()).collect();
        assert_eq!(p.key, tollgate::usage_events::idempotency_key(batch_ids), "Idempotency-Key hashes the ids");
    }

    // Dedup by id: duplicates are identical, and every row arrived exactly once.
    let mut by_id: BTreeMap<String, Value> = BTreeMap::new();
    for e in events(&got) {
        let id = e["id"].as_str().unwrap().to_string();
        if let Some(earlier) = by_id.get(&id) {
            assert_eq!(earlier, &e, "a duplicate carries the identical event");
        }
        by_id.insert(id, e);
    }
    assert_eq!(by_id.keys().cloned().collect::<BTreeSet<_>>(), ids, "exactly the ledger's rows");

    // As the request log renders the same rows.
    let api: Value =
        h.http.get(format!("{}/api/v1/requests?limit=100", h.base)).send().await.unwrap().json().await.unwrap();
    let api: BTreeMap<String, Value> = api["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["request_id"].as_str().unwrap().to_string(), r.clone()))
        .collect();

    for (id, e) in &by_id {
        let row = &rows[id];
        // CloudEvents 1.0 required attributes, and ours.
        assert_eq!(e["specversion"], "1.0");
        assert_eq!(e["type"], "dev.tollgate.usage.v1");
        assert!(e["source"].as_str().unwrap().starts_with("tollgate/") && e["source"].as_str().unwrap().len() > 9);
        assert_eq!(e["id"], id.as_str());
        assert_eq!(e["datacontenttype"], "application/json");
        assert_eq!(e["subject"], h.key_id.as_str());
        let time = e["time"].as_str().unwrap();
        assert!(time.ends_with('Z'), "{time}");
        let t = chrono::DateTime::parse_from_rfc3339(time).unwrap();
        assert_eq!(t.timestamp_millis(), row.time_ms);

        let d = &e["data"];
        // Money exact: the row's cost string, or null when unpriced.
        match row.cost {
            Some(c) => assert_eq!(d["cost_usd"], c.to_string().as_str()),
            None => assert_eq!(d["cost_usd"], Value::Null),
        }
        assert_eq!(d["request_id"], id.as_str());
        assert_eq!(d["key_id"], h.key_id.as_str());
        assert_eq!(d["team"], "growth");
        assert_eq!(d["env"], "test");
        assert_eq!(d["feature"], "usage-stream");
        assert_eq!(d["user"], Value::Null);
        assert_eq!(d["org"], Value::Null);
        assert_eq!(d["tags"]["customer"], "acme");
        assert_eq!(d["input_tokens"], row.usage.input_tokens());
        assert_eq!(d["output_tokens"], row.usage.output_tokens());
        assert!(row.usage.input_tokens() > 0 && row.usage.output_tokens() > 0);
        // The request log's fields and token convention, value for value.
        let a = &api[id];
        for k in [
            "key_id",
            "provider",
            "model",
            "requested_model",
            "endpoint",
            "status",
            "input_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
            "output_tokens",
            "reasoning_tokens",
            "cost_usd",
            "usage_source",
            "cache",
            "streamed",
            "tags",
        ] {
            assert_eq!(d[k], a[k], "{k} of {id}");
        }
    }
    assert!(by_id.values().any(|e| e["data"]["streamed"] == true));
    assert!(by_id.values().any(|e| e["data"]["provider"] == "anthropic"));

    let metrics = h.http.get(format!("{}/metrics", h.base)).send().await.unwrap().text().await.unwrap();
    let value = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    assert_eq!(value("tollgate_usage_events_sent_total "), ids.len() as u64);
    assert!(value("tollgate_usage_events_failed_posts_total ") >= 1);
    assert_eq!(value("tollgate_usage_events_dropped_total "), 0);
    h.stop().await;
}

#[tokio::test]
async fn a_stopping_gateway_flushes_the_queued_events() {
    let (url, got) = receiver(0).await;
    // Nothing would go for a minute: only the shutdown flush sends it.
    let extra = format!("[usage_events]\nurl = \"{url}\"\nbatch_max = 1000\nflush_ms = 60000\n");
    let h = Harness::start_with(&extra, |c| c).await;
    let mut ids = BTreeSet::new();
    for _ in 0..3 {
        let r = h.post("/v1/chat/completions").json(&chat("gpt-4o-mini", "hi", false)).send().await.unwrap();
        ids.insert(header(&r, "x-tollgate-request-id"));
        let _ = r.bytes().await.unwrap();
    }
    h.wait_rows(3).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(got.lock().unwrap().is_empty(), "batched until flush_ms");
    h.stop().await;
    let seen: BTreeSet<String> = events(&got).iter().map(|e| e["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(seen, ids);
}

#[test]
fn the_section_is_checked_and_its_url_never_shown() {
    use std::collections::HashMap;
    use tollgate::config::Config;
    let env: HashMap<String, String> =
        [("USAGE_HOOK".to_string(), "https://metering.example.com/in?token=s3cret-token".to_string())].into();
    let parse = |section: &str| Config::from_toml(&format!("[usage_events]\n{section}"), "t.toml", &env);

    let c = parse("url_env = \"USAGE_HOOK\"\n").unwrap();
    let u = c.usage_events.as_ref().unwrap();
    assert_eq!(u.url.expose(), "https://metering.example.com/in?token=s3cret-token");
    assert_eq!((u.batch_max, u.flush, u.queue_max), (100, Duration::from_millis(1000), 100_000));
    assert!(!format!("{c:?}").contains("s3cret"), "Debug hides the URL");
    assert!(parse("url = \"http://127.0.0.1:9/e\"\nbatch_max = 1000\nflush_ms = 5\nqueue_max = 1000\n").is_ok());
    assert!(parse("url = \"http://[::1]:9/e\"\n").is_ok());
    assert!(Config::from_toml("", "t.toml", &env).unwrap().usage_events.is_none());

    for (section, says) in [
        ("url = \"https://metering.example.com/in?token=s3cret-token\"\n", "url_env"),
        ("url = \"http://127.0.0.1:9/e\"\nurl_env = \"USAGE_HOOK\"\n", "exactly one of url, url_env"),
        ("batch_max = 10\n", "exactly one of url, url_env"),
        ("url_env = \"NOT_SET\"\n", "NOT_SET"),
        ("url_env = \"USAGE_HOOK\"\nbatch_max = 0\n", "batch_max"),
        ("url_env = \"USAGE_HOOK\"\nbatch_max = 1001\n", "batch_max"),
        ("url_env = \"USAGE_HOOK\"\nflush_ms = 0\n", "flush_ms"),
        ("url_env = \"USAGE_HOOK\"\nbatch_max = 50\nqueue_max = 10\n", "queue_max"),
        ("url_env = \"USAGE_HOOK\"\nsecret = 1\n", "secret"),
    ] {
        let e = parse(section).unwrap_err().to_string();
        assert!(e.contains(says), "{section}: {e}");
        assert!(!e.contains("s3cret"), "{section}: the URL is not repeated: {e}");
    }
}
