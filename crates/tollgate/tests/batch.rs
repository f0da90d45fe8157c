//! Batch API passthrough: jobs attributed like any request, results priced at
//! batch rates when they are downloaded, never counted twice.
//!
//! Expected costs are worked out by hand from the catalog
//! (`crates/tollgate-pricing/catalog/prices.toml`), never by calling
//! tollgate's pricing. Batch APIs cost half the standard rates there
//! (`[provider.openai]` / `[provider.anthropic]`: `batch = { multiplier = "0.5" }`);
//! each bucket is priced `tokens × rate` and rounded to whole nano-dollars
//! (half away from zero) on its own. Rates in nano-dollars per token
//! ($X per million tokens = X × 1_000 nanos per token):
//!
//! | model | bucket | standard | batch (× 0.5) |
//! |---|---|---|---|
//! | gpt-4o-mini | input | $0.15 → 150 | 75 |
//! | gpt-4o-mini | cache read | $0.075 → 75 | 37.5 |
//! | gpt-4o-mini | output | $0.60 → 600 | 300 |
//! | claude-haiku-4-5 | input | $1 → 1_000 | 500 |
//! | claude-haiku-4-5 | cache read | $0.10 → 100 | 50 |
//! | claude-haiku-4-5 | cache write 5m | $1.25 → 1_250 | 625 |
//! | claude-haiku-4-5 | output | $5 → 5_000 | 2_500 |
//!
//! Mock usage for `T` bytes of prompt text (`crates/tollgate-mock/src/lib.rs`,
//! integer division): prompt = `8 + T/4`, cache read = `prompt/4`, Anthropic
//! cache writes = `prompt/8` (a batch result reports them without a TTL
//! breakdown: all at the 5-minute rate), output = `min(max_tokens, 24)` or 24.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Harness;
use serde_json::{json, Value};

fn multipart(lines: &[Value]) -> (String, Vec<u8>) {
    let boundary = "tollgateboundary42";
    let jsonl: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b.jsonl\"\r\nContent-Type: application/jsonl\r\n\r\n{jsonl}\r\n--{boundary}--\r\n"
    );
    (format!("multipart/form-data; boundary={boundary}"), body.into_bytes())
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
        // "batch question number 0" / "… 1": T = 23 bytes.
        //   prompt = 8 + 23/4 = 13; cache read = 13/4 = 3; uncached = 10; output = 24.
        //   10 input × 75    =    750
        //    3 read  × 37.5  =    112.5 → 113 (half away from zero)
        //   24 out   × 300   =  7_200
        //              total =  8_063 nanos
        //   (standard: 10 × 150 + 3 × 75 + 24 × 600 = 1_500 + 225 + 14_400 = 16_125; half = 8_062.5)
        assert_eq!((r.usage.input, r.usage.cache_read, r.usage.output), (10, 3, 24), "{:?}", r.usage);
        assert_eq!(r.cost.unwrap().nanos(), 8_063);
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
    for r in a {
        // "anthropic batch 0" / 1 / 2: T = 17 bytes.
        //   prompt = 8 + 17/4 = 12; cache read = 12/4 = 3; writes = 12/8 = 1 (5-minute rate);
        //   uncached input = 12 − 3 − 1 = 8; output = min(50, 24) = 24.
        //    8 input × 500    =  4_000
        //    3 read  × 50     =    150
        //    1 w5m   × 625    =    625
        //   24 out   × 2_500  = 60_000
        //               total = 64_775 nanos
        //   (standard: 8_000 + 300 + 1_250 + 120_000 = 129_550; half = 64_775)
        assert_eq!(
            (r.usage.input, r.usage.cache_read, r.usage.cache_write_5m, r.usage.cache_write_1h, r.usage.output),
            (8, 3, 1, 0, 24),
            "{:?}",
            r.usage
        );
        assert_eq!(r.cost.unwrap().nanos(), 64_775);
    }
    // A bad key reaches nothing.
    let r = h.http.get(format!("{}/v1/batches/{batch_id}", h.base)).bearer_auth("tg_nope").send().await.unwrap();
    assert_eq!(r.status(), 401);
    h.stop().await;
}
