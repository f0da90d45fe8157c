//! The money path end to end: what each request costs, what is reserved for
//! it before it goes upstream, what is given back when it fails or its client
//! leaves, and what the reports add up to.
//!
//! Every expected figure is worked out by hand in this file from the mock's
//! documented usage formulas (`crates/tollgate-mock/src/lib.rs`) and the
//! catalog's per-million-token prices (`crates/tollgate-pricing/catalog/prices.toml`),
//! never by calling tollgate's pricing. Rates used, in nano-dollars per token
//! ($X per million tokens = X × 1_000 nanos per token):
//!
//! | model | input | cache read | cache write 5m | cache write 1h | output |
//! |---|---|---|---|---|---|
//! | gpt-4o-mini | $0.15 → 150 | $0.075 → 75 | — | — | $0.60 → 600 |
//! | gpt-4o (from 2024-10-02) | $2.50 → 2_500 | $1.25 → 1_250 | — | — | $10.00 → 10_000 |
//! | claude-haiku-4-5 | $1 → 1_000 | $0.10 → 100 | $1.25 → 1_250 | $2 → 2_000 | $5 → 5_000 |
//! | gemini-2.5-flash | $0.30 → 300 | $0.03 → 30 | — | — | $2.50 → 2_500 |
//!
//! Mock usage, for `T` bytes of prompt text (integer division): prompt =
//! `8 + T/4`, cache read = `prompt/4`, Anthropic cache writes = `prompt/8`
//! (5-minute TTL `write/2`, 1-hour the rest), output = `min(max_tokens, 24)`
//! or 24.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{chat, header, row_of, sub_dollar_usd, Harness};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tollgate::ledger::UsageSource;
use tollgate_units::Money;

fn nanos(n: i64) -> Money {
    Money::from_nanos(n)
}

async fn budgets(h: &Harness) -> Vec<Value> {
    let v: Value = h.http.get(format!("{}/api/v1/budgets", h.base)).send().await.unwrap().json().await.unwrap();
    v["budgets"].as_array().unwrap().clone()
}

async fn budget(h: &Harness, id: &str) -> Value {
    budgets(h).await.into_iter().find(|b| b["id"] == id).unwrap_or_else(|| panic!("no budget {id}"))
}

/// Tokens of `text` in OpenAI's `o200k_base` (the GPT-4o family's tokenizer),
/// counted with tiktoken directly.
fn o200k_tokens(text: &str) -> i64 {
    tiktoken_rs::o200k_base().unwrap().encode_ordinary(text).len() as i64
}

/// Framing tokens tollgate adds to a locally counted chat prompt (role
/// markers and separators: `PROMPT_OVERHEAD` in `metering.rs`).
const PROMPT_FRAMING: i64 = 7;

const DAY_MS: i64 = 86_400_000;

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn rfc3339_ms(v: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap().timestamp_millis()
}

// ---------------------------------------------------------------------------
// 1. Cost per provider family.
// ---------------------------------------------------------------------------

/// Anthropic Messages (native, streamed and not) with cache reads and both
/// cache-write TTLs, Gemini (chat translated), and OpenAI chat translated to
/// an Anthropic model: each row costs the hand-worked figure.
#[tokio::test]
async fn anthropic_gemini_and_translated_requests_cost_the_hand_worked_figure() {
    let h = Harness::start().await;

    // Anthropic native. T = 8 ("be brief") + 392 = 400 bytes.
    //   prompt = 8 + 400/4 = 108; cache read = 108/4 = 27; writes = 108/8 = 13
    //   → 5m = 13/2 = 6, 1h = 7; uncached input = 108 − 27 − 13 = 68; output = min(64, 24) = 24.
    //   68 input × $1/M        =  68_000
    //   27 read  × $0.10/M     =   2_700
    //    6 w5m   × $1.25/M     =   7_500
    //    7 w1h   × $2/M        =  14_000
    //   24 out   × $5/M        = 120_000
    //                     total = 212_200 nanos = $0.000212200
    //   cache savings: 27 × ($1 − $0.10)/M = 27 × 900 = 24_300 nanos
    let user = "x".repeat(392);
    let body = json!({
        "model": "claude-haiku-4-5",
        "max_tokens": 64,
        "system": "be brief",
        "messages": [{"role": "user", "content": user}],
    });
    let r = h.post("/v1/messages").header("anthropic-version", "2023-06-01").json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-tollgate-cost-usd"), "0.000212200");
    let id = header(&r, "x-tollgate-request-id");
    let _ = r.bytes().await.unwrap();
    let row = h.row(&id);
    assert_eq!(row.provider.as_deref(), Some("anthropic"));
    assert_eq!(row.usage_source, UsageSource::Provider);
    assert_eq!(
        (row.usage.input, row.usage.cache_read, row.usage.cache_write_5m, row.usage.cache_write_1h, row.usage.output),
        (68, 27, 6, 7, 24)
    );
    assert_eq!(row.cost, Some(nanos(212_200)));
    assert_eq!(row.cache_savings, nanos(24_300));

    // The same request streamed: the same figure, in the cost comment and the row.
    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    let r = h.post("/v1/messages").header("anthropic-version", "2023-06-01").json(&sbody).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let sid = header(&r, "x-tollgate-request-id");
    let text = r.text().await.unwrap();
    assert!(text.contains(": x-tollgate-cost-usd=0.000212200"), "{text}");
    assert_eq!(row_of(&h, &sid).await.cost, Some(nanos(212_200)));

    // Gemini, from an OpenAI chat request. T = 200 bytes.
    //   prompt = 8 + 200/4 = 58; cached = 58/4 = 14; uncached = 44; output = 24.
    //   44 input × $0.30/M  = 13_200
    //   14 read  × $0.03/M  =    420
    //   24 out   × $2.50/M  = 60_000
    //                 total = 73_620 nanos = $0.000073620
    let r =
        h.post("/v1/chat/completions").json(&chat("gemini-2.5-flash", &"z".repeat(200), false)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-tollgate-cost-usd"), "0.000073620");
    let gid = header(&r, "x-tollgate-request-id");
    let _ = r.bytes().await.unwrap();
    let grow = h.row(&gid);
    assert_eq!(grow.provider.as_deref(), Some("gemini"));
    assert_eq!((grow.usage.input, grow.usage.cache_read, grow.usage.output_tokens()), (44, 14, 24));
    assert_eq!(grow.cost, Some(nanos(73_620)));
    // Streamed: the same figure.
    let r =
        h.post("/v1/chat/completions").json(&chat("gemini-2.5-flash", &"z".repeat(200), true)).send().await.unwrap();
    let gsid = header(&r, "x-tollgate-request-id");
    let text = r.text().await.unwrap();
    assert!(text.contains(": x-tollgate-cost-usd=0.000073620"), "{text}");
    assert_eq!(row_of(&h, &gsid).await.cost, Some(nanos(73_620)));

    // OpenAI chat to an Anthropic model (translated; max_tokens defaults to 4096 → output 24).
    // T = 8 (system "be brief") + 192 = 200 bytes.
    //   prompt = 58; cache read = 14; writes = 58/8 = 7 → 5m = 3, 1h = 4; uncached = 58 − 14 − 7 = 37.
    //   37 input × $1/M     =  37_000
    //   14 read  × $0.10/M  =   1_400
    //    3 w5m   × $1.25/M  =   3_750
    //    4 w1h   × $2/M     =   8_000
    //   24 out   × $5/M     = 120_000
    //                 total = 170_150 nanos = $0.000170150
    let body = json!({
        "model": "claude-haiku-4-5",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "y".repeat(192)}],
    });
    let r = h.post("/v1/chat/completions").json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-tollgate-cost-usd"), "0.000170150");
    let tid = header(&r, "x-tollgate-request-id");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    let trow = h.row(&tid);
    assert_eq!(trow.provider.as_deref(), Some("anthropic"));
    assert_eq!(
        (trow.usage.input, trow.usage.cache_read, trow.usage.cache_write_5m, trow.usage.cache_write_1h),
        (37, 14, 3, 4)
    );
    assert_eq!(trow.cost, Some(nanos(170_150)));
    h.stop().await;
}

// ---------------------------------------------------------------------------
// 2. Tokens per minute.
// ---------------------------------------------------------------------------

/// A `tpm` limit reserves each request's token upper bound (prompt bytes + 64
/// framing + max output), settles it to the provider's count, and refuses
/// with 429 `rate_limited` the request that no longer fits.
#[tokio::test]
async fn a_tokens_per_minute_limit_counts_settled_tokens_and_refuses_the_request_over_it() {
    // 1_200 tokens a minute: the bucket refills 20 tokens a second.
    let h =
        Harness::start_with("[[rate_limits]]\nid = \"tpm\"\nscope = { team = \"growth\" }\ntpm = 1200\n", |c| c).await;
    let send = |text: String, max_tokens: u64| {
        let mut body = chat("gpt-4o-mini", &text, false);
        body["max_tokens"] = json!(max_tokens);
        h.post("/v1/chat/completions").json(&body).send()
    };
    // A and B: 400 bytes, max_tokens 24.
    //   reserved: 400 + 64 + 24 = 488 tokens each (fits 1_200, then 1_200 − 132 = 1_068);
    //   settled:  prompt 8 + 400/4 = 108, output 24 → 132 tokens each.
    // After both: 1_200 − 2 × 132 = 936 left (plus a refill of 20 a second).
    // Had the reservations not been settled: 1_200 − 2 × 488 = 224 left.
    let mut served = Vec::new();
    for _ in 0..2 {
        let r = send("a".repeat(400), 24).await.unwrap();
        assert_eq!(r.status(), 200);
        served.push(header(&r, "x-tollgate-request-id"));
        let _ = r.bytes().await.unwrap();
    }
    // C: "hi" (2 bytes), max_tokens 970 → 2 + 64 + 970 = 1_036 tokens > 936: refused
    // (fitting it would take 100 tokens of refill, 5 s at 20 a second).
    let r = send("hi".into(), 970).await.unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = header(&r, "retry-after").parse().unwrap();
    assert!((1..=5).contains(&retry), "at most (1_036 − 936) / 20 = 5 s: {retry}");
    let refused_id = header(&r, "x-tollgate-request-id");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "rate_limited", "{v}");
    // D: "hi", max_tokens 734 → 2 + 64 + 734 = 800 ≤ 936: served (it would not
    // fit the 224 left had A and B kept their reservations).
    let r = send("hi".into(), 734).await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    let rows = h.wait_rows(4).await;
    assert_eq!(rows.len(), 4);
    for id in &served {
        let row = rows.iter().find(|r| &r.request_id == id).unwrap();
        assert_eq!(row.usage.total_tokens(), 132);
    }
    let refused = rows.iter().find(|r| r.request_id == refused_id).unwrap();
    assert_eq!((refused.status, refused.error_code.as_deref()), (429, Some("rate_limited")));
    assert_eq!(refused.cost, Some(Money::ZERO));
    assert_eq!(refused.attempts, 0);
    assert_eq!(h.mock_total().await, 3, "the refused request reached no provider");
    h.stop().await;
}

// ---------------------------------------------------------------------------
// 3. The reservation of a request without an output cap.
// ---------------------------------------------------------------------------

/// A request with no max tokens on a route of a cheap and a costly target
/// reserves the input bound plus the models' maximum output (from the
/// catalog) at the costlier target, while it is in flight; then settles to
/// what it cost.
#[tokio::test]
async fn an_uncapped_request_reserves_its_upper_bound_at_the_costliest_target() {
    let extra = "[[models]]\nname = \"duo\"\ntargets = [{ provider = \"openai\", model = \"gpt-4o-mini\" }, \
                 { provider = \"openai\", model = \"gpt-4o\" }]\n\n\
                 [[budgets]]\nid = \"growth-day\"\nscope = { team = \"growth\" }\nlimit_usd = \"1\"\nperiod = \"day\"\n";
    let h = Harness::start_with(extra, |c| c).await;
    let prompt = "[mock latency_ms=1500]";
    assert_eq!(prompt.len(), 22, "5 + 1 + 15 + 1 bytes");
    // Upper bound, at gpt-4o (the costlier target). No cap in the request: the
    // most both targets can write, 16,384 tokens each (OpenAI's model pages; the catalog).
    //   input  = 22 prompt bytes + 64 framing = 86 tokens × $2.50/M =     215_000
    //   output = 16,384 (gpt-4o's maximum output) × $10/M          = 163_840_000
    //                                                         total = 164_055_000 nanos
    let req = h.post("/v1/chat/completions").json(&chat("duo", prompt, false));
    let task = tokio::spawn(async move { req.send().await.unwrap() });
    let started = Instant::now();
    let held = loop {
        let b = budget(&h, "growth-day").await;
        if b["reserved_usd"] != "0.000000000" {
            break b;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "nothing was ever reserved: {b}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(!task.is_finished(), "read while the request is in flight");
    assert_eq!(held["reserved_usd"], "0.164055000", "{held}");
    assert_eq!(held["spent_usd"], "0.000000000");
    // remaining = $1 − $0.164055 = $0.835945
    assert_eq!(held["remaining_usd"], "0.835945000");

    let r = task.await.unwrap();
    assert_eq!(r.status(), 200);
    // The reservation covers the models' own maximum: nothing is capped.
    assert!(r.headers().get("x-tollgate-max-tokens-capped").is_none());
    assert_eq!(header(&r, "x-tollgate-budget-remaining-usd"), "0.835945000");
    let id = header(&r, "x-tollgate-request-id");
    let _ = r.bytes().await.unwrap();
    // Served by gpt-4o-mini (the first target). T = 22 → prompt 8 + 22/4 = 13,
    // cached 13/4 = 3, uncached 10, output 24:
    //   10 × 150 + 3 × 75 + 24 × 600 = 1_500 + 225 + 14_400 = 16_125 nanos
    let row = h.row(&id);
    assert!(row.model.as_deref().unwrap().starts_with("gpt-4o-mini"), "{:?}", row.model);
    assert_eq!(row.cost, Some(nanos(16_125)));
    let after = budget(&h, "growth-day").await;
    assert_eq!(after["reserved_usd"], "0.000000000", "{after}");
    assert_eq!(after["spent_usd"], "0.000016125", "{after}");
    h.stop().await;
}

/// An Anthropic request that asks for prompt caching (`cache_control` on a
/// block) reserves its input at the dearest input-side rate of the model:
/// the 1-hour cache write ($2/M for claude-haiku-4-5), which covers the
/// 5-minute write ($1.25/M, 1.25 × input) and plain input ($1/M). The same
/// request without `cache_control` reserves its input at the input rate.
/// Either settles to the cache reads and writes the provider reports.
#[tokio::test]
async fn a_prompt_caching_request_reserves_input_at_the_cache_write_rate_and_settles_to_the_reported_writes() {
    let h = Harness::start_with(
        "[[budgets]]\nid = \"growth-day\"\nscope = { team = \"growth\" }\nlimit_usd = \"1\"\nperiod = \"day\"\n",
        |c| c,
    )
    .await;
    let system = "s".repeat(200);
    let user = "[mock latency_ms=1500]";
    assert_eq!(user.len(), 22, "5 + 1 + 15 + 1 bytes");
    let body = json!({
        "model": "claude-haiku-4-5",
        "max_tokens": 100,
        "system": [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": user}],
    });
    // Upper bound (claude-haiku-4-5, catalog prices.toml: input $1, cache_write_5m $1.25,
    // cache_write_1h $2, output $5 per million tokens):
    //   input bytes: system 200 + "\n" 1 + user 22 = 223; + 64 framing = 287 tokens
    //   287 input × $2/M (1-hour cache write, the dearest input rate) =   574_000
    //   100 output (max_tokens) × $5/M                                =   500_000
    //                                                           total = 1_074_000 nanos = $0.001074000
    //   (at the 5-minute write rate the input would be 287 × 1_250 = 358_750 ≤ 574_000)
    // remaining = $1 − $0.001074 = $0.998926
    let req = h.post("/v1/messages").header("anthropic-version", "2023-06-01").json(&body);
    let task = tokio::spawn(async move { req.send().await.unwrap() });
    let started = Instant::now();
    let held = loop {
        let b = budget(&h, "growth-day").await;
        if b["reserved_usd"] != "0.000000000" {
            break b;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "nothing was ever reserved: {b}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(!task.is_finished(), "read while the request is in flight");
    assert_eq!(held["reserved_usd"], "0.001074000", "{held}");
    assert_eq!(held["remaining_usd"], "0.998926000", "{held}");
    let r = task.await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-tollgate-budget-remaining-usd"), "0.998926000");
    // Settled (mock: T = 200 + 22 = 222 bytes of text):
    //   prompt = 8 + 222/4 = 63; cache read = 63/4 = 15; writes = 63/8 = 7 → 5m = 7/2 = 3, 1h = 4;
    //   uncached input = 63 − 15 − 7 = 41; output = min(100, 24) = 24.
    //   41 input × $1/M     =  41_000
    //   15 read  × $0.10/M  =   1_500
    //    3 w5m   × $1.25/M  =   3_750
    //    4 w1h   × $2/M     =   8_000
    //   24 out   × $5/M     = 120_000
    //                 total = 174_250 nanos = $0.000174250
    //   cache savings: 15 × ($1 − $0.10)/M = 15 × 900 = 13_500 nanos
    assert_eq!(header(&r, "x-tollgate-cost-usd"), "0.000174250");
    let id = header(&r, "x-tollgate-request-id");
    let _ = r.bytes().await.unwrap();
    let row = h.row(&id);
    assert_eq!(row.usage_source, UsageSource::Provider);
    assert_eq!(
        (row.usage.input, row.usage.cache_read, row.usage.cache_write_5m, row.usage.cache_write_1h, row.usage.output),
        (41, 15, 3, 4, 24)
    );
    assert_eq!(row.cost, Some(nanos(174_250)));
    assert_eq!(row.cache_savings, nanos(13_500));
    let after = budget(&h, "growth-day").await;
    assert_eq!(after["reserved_usd"], "0.000000000", "{after}");
    assert_eq!(after["spent_usd"], "0.000174250", "{after}");

    // The same text without `cache_control`: input reserved at $1/M.
    //   287 × $1/M + 100 × $5/M = 287_000 + 500_000 = 787_000 nanos
    //   remaining = 1_000_000_000 − 174_250 spent − 787_000 = 999_038_750 nanos = $0.999038750
    // It settles to the same usage (the mock reports writes either way): 174_250 nanos.
    let plain = json!({
        "model": "claude-haiku-4-5",
        "max_tokens": 100,
        "system": system,
        "messages": [{"role": "user", "content": user}],
    });
    let r = h.post("/v1/messages").header("anthropic-version", "2023-06-01").json(&plain).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-tollgate-budget-remaining-usd"), "0.999038750");
    assert_eq!(header(&r, "x-tollgate-cost-usd"), "0.000174250");
    let _ = r.bytes().await.unwrap();
    // 174_250 × 2 = 348_500 nanos spent, nothing held.
    let after = budget(&h, "growth-day").await;
    assert_eq!(after["reserved_usd"], "0.000000000", "{after}");
    assert_eq!(after["spent_usd"], "0.000348500", "{after}");
    h.stop().await;
}

// ---------------------------------------------------------------------------
// 4. A client that hangs up mid-stream.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_client_that_hangs_up_mid_stream_gets_its_reservation_released_and_pays_what_was_counted() {
    let h = Harness::start_with(
        "[[budgets]]\nid = \"growth-day\"\nscope = { team = \"growth\" }\nlimit_usd = \"1\"\nperiod = \"day\"\n",
        |c| c,
    )
    .await;
    let prompt = "[mock chunks=50 chunk_delay_ms=40 output_tokens=200]";
    assert_eq!(prompt.len(), 52, "5 + 10 + 18 + 18 + 1 bytes");
    let r = h.post("/v1/chat/completions").json(&chat("gpt-4o-mini", prompt, true)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let id = header(&r, "x-tollgate-request-id");
    let mut s = r.bytes_stream();
    // Read until the first words of the answer (after the role-only chunk) arrived.
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("mock reply") {
        seen.extend_from_slice(&s.next().await.unwrap().unwrap());
    }
    // While the stream runs, its upper bound is held: (52 bytes + 64) × $0.15/M
    // + 16,384 (gpt-4o-mini's maximum output) × $0.60/M = 17_400 + 9_830_400 = 9_847_800 nanos.
    let held = budget(&h, "growth-day").await;
    assert_eq!(held["reserved_usd"], "0.009847800", "{held}");
    drop(s);

    let row = row_of(&h, &id).await;
    assert!(row.client_disconnected && row.streamed);
    assert_eq!(row.error_code.as_deref(), Some("client_disconnected"));
    assert_eq!(row.usage_source, UsageSource::Estimated);
    // Estimated: the prompt recounted with o200k plus the chat framing; output as relayed.
    assert_eq!(row.usage.input as i64, o200k_tokens(prompt) + PROMPT_FRAMING, "{:?}", row.usage);
    assert_eq!(row.usage.cache_read, 0);
    assert!(row.usage.output > 0, "what was relayed is counted: {:?}", row.usage);
    let want = row.usage.input as i64 * 150 + row.usage.output as i64 * 600;
    assert_eq!(row.cost, Some(nanos(want)));

    let mut b = budget(&h, "growth-day").await;
    for _ in 0..100 {
        if b["reserved_usd"] == "0.000000000" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        b = budget(&h, "growth-day").await;
    }
    assert_eq!(b["reserved_usd"], "0.000000000", "the reservation is released: {b}");
    assert_eq!(b["spent_usd"], sub_dollar_usd(want), "spent is what the row cost: {b}");
    h.stop().await;
}

// ---------------------------------------------------------------------------
// 5. Upstream timeout, and an answer without usage.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn an_upstream_timeout_costs_nothing_and_releases_its_reservation() {
    let h = Harness::start_with(
        "[[budgets]]\nid = \"growth-day\"\nscope = { team = \"growth\" }\nlimit_usd = \"1\"\nperiod = \"day\"\n",
        |mut c| {
            c.providers[0].timeout = Duration::from_millis(300);
            c
        },
    )
    .await;
    for stream in [false, true] {
        let r = h
            .post("/v1/chat/completions")
            .json(&chat("gpt-4o-mini", "[mock fault=timeout]", stream))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 504, "stream {stream}");
        let id = header(&r, "x-tollgate-request-id");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "upstream_timeout", "{v}");
        let row = row_of(&h, &id).await;
        assert_eq!((row.status, row.error_code.as_deref()), (504, Some("upstream_timeout")));
        assert_eq!(row.attempts, 1, "a timeout is not retried on the same target");
        assert_eq!(row.cost, Some(Money::ZERO), "stream {stream}: {:?}", row.usage);
    }
    let b = budget(&h, "growth-day").await;
    assert_eq!(b["reserved_usd"], "0.000000000", "{b}");
    assert_eq!(b["spent_usd"], "0.000000000", "{b}");
    h.stop().await;
}

#[tokio::test]
async fn an_answer_without_usage_is_priced_from_a_local_count() {
    let h = Harness::start().await;
    let prompt = "[mock fault=no_usage] tell me about metering";
    let r = h.post("/v1/chat/completions").json(&chat("gpt-4o-mini", prompt, false)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-tollgate-usage"), "estimated");
    let cost_header = header(&r, "x-tollgate-cost-usd");
    let id = header(&r, "x-tollgate-request-id");
    let v: Value = r.json().await.unwrap();
    assert!(v["usage"].is_null(), "the mock left usage out: {v}");
    let reply = v["choices"][0]["message"]["content"].as_str().unwrap();
    // Recounted here with tiktoken's o200k_base (gpt-4o-mini's tokenizer):
    // input = prompt tokens + 7 framing, output = reply tokens, no cache split.
    let input = o200k_tokens(prompt) + PROMPT_FRAMING;
    let output = o200k_tokens(reply);
    // cost = input × $0.15/M + output × $0.60/M
    let want = input * 150 + output * 600;
    let row = h.row(&id);
    assert_eq!(row.usage_source, UsageSource::Estimated);
    assert_eq!((row.usage.input as i64, row.usage.output as i64), (input, output), "{:?}", row.usage);
    assert_eq!(row.usage.cache_read, 0);
    assert_eq!(row.cost, Some(nanos(want)));
    assert_eq!(cost_header, sub_dollar_usd(want));
    h.stop().await;
}

// ---------------------------------------------------------------------------
// 6. A full spool with `on_full = "block"`.
// ---------------------------------------------------------------------------

/// Holds the SQLite write lock on the gateway's database until dropped.
struct DbLock(rusqlite::Connection);

impl DbLock {
    fn take(h: &Harness) -> DbLock {
        let conn = rusqlite::Connection::open(h._dir.path().join("t.db")).unwrap();
        conn.busy_timeout(Duration::from_secs(10)).unwrap();
        conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
        DbLock(conn)
    }

    fn release(self) {
        self.0.execute_batch("ROLLBACK").unwrap();
    }
}

/// While the database refuses writes, rows wait in the spool; at the bound,
/// the next acknowledgement waits until the database catches up; no row is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_holds_acknowledgements_until_the_database_catches_up() {
    // One request's row (~980 bytes) exceeds 900 bytes, its intent (~395
    // bytes) does not: the first request is acknowledged, and the spool is
    // then full. (The loader drains a batch holding only the intent at once,
    // as it has nothing to write; when it takes the intent before the row
    // arrives, the row alone waits.)
    let h = Harness::start_with("[ledger]\nspool_max_bytes = 900\non_full = \"block\"\n", |c| c).await;
    let lock = DbLock::take(&h);
    // T = 8 bytes ("first!!!" / "second!!"): prompt 8 + 2 = 10, cached 2, uncached 8, output 24:
    //   8 × 150 + 2 × 75 + 24 × 600 = 1_200 + 150 + 14_400 = 15_750 nanos each.
    let first = tokio::time::timeout(
        Duration::from_secs(10),
        h.post("/v1/chat/completions").json(&chat("gpt-4o-mini", "first!!!", false)).send(),
    )
    .await
    .expect("the first row fits the spool")
    .unwrap();
    assert_eq!(first.status(), 200);
    let first_id = header(&first, "x-tollgate-request-id");
    let spooled = h.backlog.bytes();
    assert!(spooled >= 900, "the first request's lines wait in the spool: {spooled} bytes");

    let req = h.post("/v1/chat/completions").json(&chat("gpt-4o-mini", "second!!", false));
    let second = tokio::spawn(async move { req.send().await.unwrap() });
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!second.is_finished(), "the acknowledgement waits while the spool is full");
    assert_eq!(h.backlog.bytes(), spooled, "nothing was loaded while the database is locked");

    lock.release();
    let second = tokio::time::timeout(Duration::from_secs(15), second)
        .await
        .expect("answered once the database caught up")
        .unwrap();
    assert_eq!(second.status(), 200);
    let second_id = header(&second, "x-tollgate-request-id");
    let rows = h.wait_rows(2).await;
    assert_eq!(rows.len(), 2);
    for id in [&first_id, &second_id] {
        let row = rows.iter().find(|r| &r.request_id == id).unwrap();
        assert_eq!(row.cost, Some(nanos(15_750)));
    }
    h.stop().await;
}

#[tokio::test]
async fn a_spool_bound_smaller_than_one_request_still_serves_it() {
    let h = Harness::start_with("[ledger]\nspool_max_bytes = 1\non_full = \"block\"\n", |c| c).await;
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        h.post("/v1/chat/completions").json(&chat("gpt-4o-mini", "hello", false)).send(),
    )
    .await
    .expect("a healthy database drains the spool: the request is answered")
    .unwrap();
    assert_eq!(r.status(), 200);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_whose_intents_fill_the_spool_are_still_served() {
    // Room for about ten intents (395 bytes each here).
    let h = Harness::start_with("[ledger]\nspool_max_bytes = 4096\non_full = \"block\"\n", |c| c).await;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let req =
            h.post("/v1/chat/completions").json(&chat("gpt-4o-mini", &format!("[mock latency_ms=300] {i}"), false));
        tasks.push(tokio::spawn(async move { req.send().await.unwrap().status().as_u16() }));
    }
    for t in tasks {
        let status = tokio::time::timeout(Duration::from_secs(10), t)
            .await
            .expect("a healthy database drains the spool: every request is answered")
            .unwrap();
        assert_eq!(status, 200);
    }
    assert_eq!(h.wait_rows(16).await.len(), 16);
    h.stop().await;
}

// ---------------------------------------------------------------------------
// 7. Budget forecast.
// ---------------------------------------------------------------------------

/// The forecast the docs define: when spending at this period's average rate
/// reaches the limit (`now` if already reached), or `None` past the period's end.
fn forecast(spent: i64, limit: i64, now: i64) -> Option<i64> {
    let start = now - now.rem_euclid(DAY_MS);
    let end = start + DAY_MS;
    let remaining = i128::from(limit - spent);
    if remaining <= 0 {
        return Some(now);
    }
    let elapsed = i128::from((now - start).max(1));
    let at = i128::from(now) + remaining * elapsed / i128::from(spent);
    (at < i128::from(end)).then_some(at as i64)
}

#[tokio::test]
async fn budget_forecasts_follow_the_average_spending_rate() {
    let extra = "[[budgets]]\nid = \"over\"\nscope = { team = \"growth\" }\nlimit_usd = \"0.00001\"\nperiod = \"day\"\naction = \"alert\"\n\n\
                 [[budgets]]\nid = \"near\"\nscope = { team = \"growth\" }\nlimit_usd = \"0.000015766\"\nperiod = \"day\"\naction = \"alert\"\n\n\
                 [[budgets]]\nid = \"far\"\nscope = { team = \"growth\" }\nlimit_usd = \"100000\"\nperiod = \"day\"\naction = \"alert\"\n";
    let h = Harness::start_with(extra, |c| c).await;
    // "forecast me": T = 11 → prompt 8 + 11/4 = 10, cached 2, uncached 8, output 24:
    //   8 × 150 + 2 × 75 + 24 × 600 = 1_200 + 150 + 14_400 = 15_750 nanos.
    let spent = 15_750;
    let r = h.post("/v1/chat/completions").json(&chat("gpt-4o-mini", "forecast me", false)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-tollgate-cost-usd"), "0.000015750");
    let _ = r.bytes().await.unwrap();

    let t0 = now_ms();
    let all = budgets(&h).await;
    let t1 = now_ms();
    // limits: 10_000 (already passed), 15_766 (16 nanos left), 100_000 × 10⁹.
    for (id, limit, remaining) in [
        ("over", 10_000i64, "0.000000000"),
        ("near", 15_766, "0.000000016"),
        ("far", 100_000_000_000_000, "99999.999984250"),
    ] {
        let b = all.iter().find(|b| b["id"] == id).unwrap();
        assert_eq!(b["spent_usd"], "0.000015750", "{b}");
        assert_eq!(b["reserved_usd"], "0.000000000", "{b}");
        assert_eq!(b["remaining_usd"], remaining, "{b}");
        let day = t0 - t0.rem_euclid(DAY_MS);
        if day != t1 - t1.rem_euclid(DAY_MS) {
            continue; // the UTC day turned during the call: nothing to compare against
        }
        assert_eq!(rfc3339_ms(&b["period_start"]), day, "{b}");
        assert_eq!(rfc3339_ms(&b["period_end"]), day + DAY_MS, "{b}");
        // The gateway's clock read lies in [t0, t1]; the forecast grows with it
        // and is printed to the second.
        match (forecast(spent, limit, t0), forecast(spent, limit, t1), &b["forecast_exhaustion"]) {
            (Some(lo), Some(hi), got) => {
                let got = rfc3339_ms(got);
                assert!(lo - lo.rem_euclid(1000) <= got && got <= hi, "{id}: {got} not in [{lo}, {hi}]: {b}");
            }
            (None, None, got) => assert!(got.is_null(), "{id}: {b}"),
            _ => {} // the forecast crosses the period's end between t0 and t1
        }
    }
    // Over its limit, the forecast is now; far from it, none this period.
    let over = all.iter().find(|b| b["id"] == "over").unwrap();
    assert!(over["forecast_exhaustion"].is_string(), "{over}");
    let far = all.iter().find(|b| b["id"] == "far").unwrap();
    assert!(far["forecast_exhaustion"].is_null(), "{far}");
    h.stop().await;
}

// ---------------------------------------------------------------------------
// 8. `tollgate report`.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn the_report_cli_totals_equal_the_hand_worked_sum() {
    let h = Harness::start().await;
    // gpt-4o-mini "report me" ×2: T = 9 → prompt 10, cached 2, uncached 8, output 24:
    //   8 × 150 + 2 × 75 + 24 × 600 = 15_750 nanos each → 31_500
    for _ in 0..2 {
        let r = h.post("/v1/chat/completions").json(&chat("gpt-4o-mini", "report me", false)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let _ = r.bytes().await.unwrap();
    }
    // claude-haiku-4-5 native, T = 400: 212_200 nanos (worked out in the first test).
    let body = json!({
        "model": "claude-haiku-4-5", "max_tokens": 64, "system": "be brief",
        "messages": [{"role": "user", "content": "x".repeat(392)}],
    });
    let r = h.post("/v1/messages").json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let _ = r.bytes().await.unwrap();
    // gemini-2.5-flash, T = 200: 73_620 nanos (worked out in the first test).
    let r =
        h.post("/v1/chat/completions").json(&chat("gemini-2.5-flash", &"z".repeat(200), false)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let _ = r.bytes().await.unwrap();
    // Total: 31_500 + 212_200 + 73_620 = 317_320 nanos = $0.000317320 over 4 requests.
    // Input tokens: 10 + 10 + 108 + 58 = 186; output: 4 × 24 = 96.
    h.wait_rows(4).await;

    let db = h._dir.path().join("t.db");
    let run = |format: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(["--db", db.to_str().unwrap(), "report", "--by", "model", "--since", "1d", "--format", format])
            .env("TOLLGATE_LOG", "warn")
            .env_remove("TOLLGATE_KEY_SECRET")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };

    let v: Value = serde_json::from_str(&run("json")).unwrap();
    assert_eq!(v["total_cost_usd"], "0.000317320", "{v}");
    assert_eq!(v["total_requests"], 4);
    assert_eq!(v["unpriced_requests"], 0);
    let rows = v["rows"].as_array().unwrap();
    let by = |m: &str| rows.iter().find(|r| r["model"] == m).unwrap_or_else(|| panic!("no {m} in {v}"));
    assert_eq!(
        (by("gpt-4o-mini")["requests"].as_u64(), by("gpt-4o-mini")["cost_usd"].as_str()),
        (Some(2), Some("0.000031500"))
    );
    assert_eq!(by("claude-haiku-4-5")["cost_usd"], "0.000212200");
    assert_eq!(by("gemini-2.5-flash")["cost_usd"], "0.000073620");
    let input: u64 = rows.iter().map(|r| r["input_tokens"].as_u64().unwrap()).sum();
    let output: u64 = rows.iter().map(|r| r["output_tokens"].as_u64().unwrap()).sum();
    assert_eq!((input, output), (186, 96));

    let table = run("table");
    assert!(table.lines().any(|l| l == "total: 4 requests, $0.000317320 (0 unpriced)"), "{table}");
    h.stop().await;
}

// ---------------------------------------------------------------------------
// 3b. No silent truncation: a request without an output cap is capped only
//     when a budget binds.
// ---------------------------------------------------------------------------

async fn last_output_limit(h: &Harness) -> Value {
    let v: Value = h.http.get(format!("{}/mock/stats", h.mock)).send().await.unwrap().json().await.unwrap();
    v["last_output_limit"].clone()
}

#[tokio::test]
async fn an_uncapped_request_reaches_the_provider_uncapped_unless_a_budget_binds() {
    // gpt-4o-mini: $0.15 in, $0.60 out per million tokens (150 and 600 nanos a
    // token); maximum output 16,384 tokens (OpenAI's model page; the catalog).
    let extra = "[[budgets]]\nid = \"roomy\"\nscope = { team = \"growth\" }\nlimit_usd = \"10\"\nperiod = \"day\"\n\n\
                 [[budgets]]\nid = \"tight\"\nscope = { team = \"search\" }\nlimit_usd = \"0.0006\"\nperiod = \"day\"\n";
    let h = Harness::start_with(extra, |c| c).await;
    let search = h.add_key("search-app", Some("search")).await;

    // Plenty of room: 16,384 × 600 = 9,830,400 nanos of output fits in $10, so the
    // request goes as it came (no cap), and a 5,000-token answer is not cut at 4,096.
    let prompt = "[mock output_tokens=5000] go";
    assert_eq!(prompt.len(), 28, "25 + 3 bytes");
    let r = h.post("/v1/chat/completions").json(&chat("gpt-4o-mini", prompt, false)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-tollgate-max-tokens-capped").is_none());
    let id = header(&r, "x-tollgate-request-id");
    let _ = r.bytes().await.unwrap();
    assert_eq!(last_output_limit(&h).await, Value::Null, "no cap was added");
    assert_eq!(row_of(&h, &id).await.usage.output, 5_000);

    // Nearly spent: the $0.0006 budget (600,000 nanos) cannot hold 16,384 tokens.
    //   input bound = (28 bytes + 64 framing) × 150 = 13,800 nanos
    //   output that fits = (600,000 − 13,800) / 600 = 977 tokens (exactly)
    // so the request is capped at 977, says so, and reserves 13,800 + 977 × 600 = 600,000.
    let r = h
        .http
        .post(format!("{}/v1/chat/completions", h.base))
        .bearer_auth(&search)
        .json(&chat("gpt-4o-mini", prompt, false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-tollgate-max-tokens-capped"), "977");
    let id = header(&r, "x-tollgate-request-id");
    let _ = r.bytes().await.unwrap();
    assert_eq!(last_output_limit(&h).await, json!(977), "the provider got the cap");
    let _ = row_of(&h, &id).await;
    let tight = budget(&h, "tight").await;
    assert_eq!(tight["reserved_usd"], "0.000000000", "{tight}");
    h.stop().await;
}
