//! Batch API passthrough: jobs attributed like any request, results priced at
//! batch rates when they are downloaded, never counted twice.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Harness;
use serde_json::{json, Value};
use tollgate_pricing::{Catalog, ServiceTier};

fn multipart(lines: &[Value]) -> (String, Vec<u8>) {
    let boundary = "tollgateboundary42";
    let jsonl: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b.jsonl\"\r\nContent-Type: application/jsonl\r\n\r\n{jsonl}\r\n--{boundary}--\r\n"
    );
    (format!("multipart/form-data; boundary={boundary}"), body.into_bytes())
}

fn standard_and_batch(model: &str, u: &tollgate_units::Usage) -> (i64, i64) {
    let e = Catalog::builtin().lookup(Some("openai"), model, chrono::Utc::now()).unwrap();
    (
        tollgate_pricing::cost(e, u, ServiceTier::Standard).total.nanos(),
        tollgate_pricing::cost(e, u, ServiceTier::Batch).total.nanos(),
    )
}

#[tokio::test]
async fn openai_and_anthropic_batches_are_attributed_and_priced_at_batch_rates() {
    let h = Harness::start().await;
    let lines: Vec<Value> = (0..2)
        .map(|i| json!({"custom_id": format!("req-{i}"), "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": format!("batch question number {i}")}]}}))
        .collect();
    let (ct, body) = multipart(&lines);
    let file: Value =
        h.post("/v1/files").header("content-type", ct).body(body).send().await.unwrap().json().await.unwrap();
    let file_id = file["id"].as_str().unwrap();
    let r = h
        .post("/v1/batches")
        .header("x-tollgate-tags", "feature=nightly-eval")
        .json(&json!({"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let batch: Value = r.json().await.unwrap();
    let batch_id = batch["id"].as_str().unwrap().to_string();
    let status: Value = h
        .http
        .get(format!("{}/v1/batches/{batch_id}", h.base))
        .bearer_auth(&h.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let out_file = status["output_file_id"].as_str().unwrap().to_string();
    for _ in 0..2 {
        let r = h.http.get(format!("{}/v1/files/{out_file}/content", h.base)).bearer_auth(&h.key).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap().lines().count(), 2);
    }
    let rows = h.rows();
    let calls = rows.iter().filter(|r| r.endpoint == "batch_api").count();
    assert_eq!(calls, 5, "upload, create, status, 2 downloads: one row each");
    let results: Vec<_> = rows.iter().filter(|r| r.endpoint == "batch.chat.completions").collect();
    assert_eq!(results.len(), 2, "downloading twice does not count twice");
    for r in &results {
        assert_eq!(r.attribution.tag("feature"), Some("nightly-eval"), "attributed to who created the batch");
        assert_eq!(r.key_id.as_deref(), Some(h.key_id.as_str()));
        assert!(r.request_id.starts_with(&format!("batch:{batch_id}:req-")));
        let (standard, batch_cost) = standard_and_batch("gpt-4o-mini", &r.usage);
        assert!(r.usage.input_tokens() > 0);
        assert_eq!(r.cost.unwrap().nanos(), batch_cost);
        assert!((standard - 2 * batch_cost).abs() <= 2, "batch is half price: {standard} vs {batch_cost}");
    }

    // Anthropic message batches.
    let reqs: Vec<Value> = (0..3)
        .map(|i| {
            json!({"custom_id": format!("a-{i}"), "params": {"model": "claude-haiku-4-5", "max_tokens": 50,
            "messages": [{"role": "user", "content": format!("anthropic batch {i}")}]}})
        })
        .collect();
    let b: Value =
        h.post("/v1/messages/batches").json(&json!({"requests": reqs})).send().await.unwrap().json().await.unwrap();
    let id = b["id"].as_str().unwrap();
    let r =
        h.http.get(format!("{}/v1/messages/batches/{id}/results", h.base)).bearer_auth(&h.key).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let _ = r.bytes().await.unwrap();
    let rows = h.rows();
    let a: Vec<_> = rows.iter().filter(|r| r.endpoint == "batch.messages").collect();
    assert_eq!(a.len(), 3);
    let e = Catalog::builtin().lookup(Some("anthropic"), "claude-haiku-4-5", chrono::Utc::now()).unwrap();
    for r in a {
        assert!(r.usage.cache_read > 0 && r.usage.cache_write_tokens() > 0);
        assert_eq!(r.cost.unwrap(), tollgate_pricing::cost(e, &r.usage, ServiceTier::Batch).total);
    }
    // A bad key reaches nothing.
    let r = h.http.get(format!("{}/v1/batches/{batch_id}", h.base)).bearer_auth("tg_nope").send().await.unwrap();
    assert_eq!(r.status(), 401);
    h.stop().await;
}
