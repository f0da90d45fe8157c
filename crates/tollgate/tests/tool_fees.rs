//! Server-side tool fees and provider-reported costs, end to end: web searches
//! an Anthropic or OpenAI (Responses API) answer reports are priced per call on
//! top of the tokens, land in the ledger row (`usage.web_search_requests`,
//! `tool_cost`, included in `cost`), in `/metrics` and in `/api/v1/spend`; a
//! cost the provider reports itself (OpenRouter's `usage.cost`) is kept beside
//! ours and compared.
//!
//! The mock provider reports searches with `[mock web_searches=N]` and a cost
//! with `[mock reported_cost=DECIMAL]` (`crates/tollgate-mock/src/lib.rs`).
//!
//! Every expected figure is worked out by hand in this file from the mock's
//! documented usage formulas and the catalog's prices
//! (`crates/tollgate-pricing/catalog/prices.toml`), never by calling tollgate's
//! pricing. Rates used, in nano-dollars per token ($X per million tokens =
//! X × 1_000 nanos per token):
//!
//! | model | input | cache read | cache write 5m | cache write 1h | output |
//! |---|---|---|---|---|---|
//! | claude-haiku-4-5 | $1 → 1_000 | $0.10 → 100 | $1.25 → 1_250 | $2 → 2_000 | $5 → 5_000 |
//! | gpt-4o (from 2024-10-02) | $2.50 → 2_500 | $1.25 → 1_250 | — | — | $10.00 → 10_000 |
//! | gpt-4o-mini | $0.15 → 150 | $0.075 → 75 | — | — | $0.60 → 600 |
//!
//! Web searches: `web_search_per_1k = "10"` for `[provider.anthropic]` and
//! `[provider.openai]`: $10 per 1,000 = $0.01 = 10_000_000 nanos a search.
//!
//! Mock usage, for `T` bytes of prompt text (integer division): prompt =
//! `8 + T/4`, cache read = `prompt/4`, Anthropic cache writes = `prompt/8`
//! (5-minute TTL `write/2`, 1-hour the rest), output = `min(max_tokens, 24)`
//! or 24. The `[mock …]` directive is prompt text like any other.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{chat, header, row_of, sub_dollar_usd, Harness};
use serde_json::{json, Value};
use tollgate::ledger::{LedgerRow, UsageSource};
use tollgate_units::Money;

/// One web search: $10 / 1,000.
const SEARCH: i64 = 10_000_000;

fn nanos(n: i64) -> Money {
    Money::from_nanos(n)
}

/// The value of one exact series in `/metrics` (`None` when absent).
async fn metric(h: &Harness, series: &str) -> Option<String> {
    let text = h.http.get(format!("{}/metrics", h.base)).send().await.unwrap().text().await.unwrap();
    text.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')).map(str::to_owned))
}

/// The token cost of an Anthropic claude-haiku-4-5 row, from its own counts.
fn haiku_token_cost(r: &LedgerRow) -> i64 {
    let u = &r.usage;
    u.input as i64 * 1_000
        + u.cache_read as i64 * 100
        + u.cache_write_5m as i64 * 1_250
        + u.cache_write_1h as i64 * 2_000
        + (u.output + u.reasoning) as i64 * 5_000
}

/// The token cost of a gpt-4o row, from its own counts.
fn gpt4o_token_cost(r: &LedgerRow) -> i64 {
    let u = &r.usage;
    u.input as i64 * 2_500 + u.cache_read as i64 * 1_250 + (u.output + u.reasoning) as i64 * 10_000
}

/// `POST /v1/messages` to claude-haiku-4-5 with three web searches.
/// T = 8 ("be brief") + 22 ("[mock web_searches=3] ") + 370 = 400 bytes:
///   prompt = 8 + 400/4 = 108; cache read = 108/4 = 27; writes = 108/8 = 13
///   → 5m = 13/2 = 6, 1h = 7; uncached input = 108 − 27 − 13 = 68; output = min(64, 24) = 24.
///   68 input × $1/M     =     68_000
///   27 read  × $0.10/M  =      2_700
///    6 w5m   × $1.25/M  =      7_500
///    7 w1h   × $2/M     =     14_000
///   24 out   × $5/M     =    120_000
///   tokens              =    212_200
///   3 searches × $0.01  = 30_000_000
///   total               = 30_212_200 nanos = $0.030212200
fn anthropic_search_body(stream: bool) -> Value {
    let user = format!("[mock web_searches=3] {}", "x".repeat(370));
    assert_eq!(8 + user.len(), 400);
    json!({
        "model": "claude-haiku-4-5",
        "max_tokens": 64,
        "stream": stream,
        "system": "be brief",
        "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 5}],
        "messages": [{"role": "user", "content": user}],
    })
}
const ANTHROPIC_TOKENS: i64 = 212_200;
const ANTHROPIC_TOTAL: i64 = 30_212_200;

/// `POST /v1/responses` to gpt-4o with two web searches.
/// T = 22 ("[mock web_searches=2] ") + 378 = 400 bytes of `input`:
///   prompt = 108; cached = 27; uncached = 81; output = 24 (no limit named).
///   81 input × $2.50/M  =    202_500
///   27 read  × $1.25/M  =     33_750
///   24 out   × $10/M    =    240_000
///   tokens              =    476_250
///   2 searches × $0.01  = 20_000_000
///   total               = 20_476_250 nanos = $0.020476250
fn responses_search_body(stream: bool) -> Value {
    let input = format!("[mock web_searches=2] {}", "z".repeat(378));
    assert_eq!(input.len(), 400);
    json!({"model": "gpt-4o", "stream": stream, "tools": [{"type": "web_search"}], "input": input})
}
const RESPONSES_TOKENS: i64 = 476_250;
const RESPONSES_TOTAL: i64 = 20_476_250;

/// Chat to gpt-4o-mini whose answer reports `"cost": <reported>` (USD).
/// T = 30 ("[mock reported_cost=0.000123] ", or any other 8-character figure) + 170 = 200 bytes:
///   prompt = 8 + 200/4 = 58; cached = 58/4 = 14; uncached = 44; output = 24.
///   44 input × $0.15/M  =  6_600
///   14 read  × $0.075/M =  1_050
///   24 out   × $0.60/M  = 14_400
///   total               = 22_050 nanos = $0.000022050
fn reported_cost_body(reported: &str, stream: bool) -> Value {
    let text = format!("[mock reported_cost={reported}] {}", "w".repeat(170));
    assert_eq!(text.len(), 200, "{reported} must be 8 characters long");
    chat("gpt-4o-mini", &text, stream)
}
const MINI_TOTAL: i64 = 22_050;

/// Sends an Anthropic Messages request; returns its request id after reading the body.
async fn send_messages(h: &Harness, body: &Value) -> (String, String, String) {
    let r = h.post("/v1/messages").header("anthropic-version", "2023-06-01").json(body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (id, cost) = (header(&r, "x-tollgate-request-id"), header(&r, "x-tollgate-cost-usd"));
    (id, cost, r.text().await.unwrap())
}

async fn send(h: &Harness, path: &str, body: &Value) -> (String, String, String) {
    let r = h.post(path).json(body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (id, cost) = (header(&r, "x-tollgate-request-id"), header(&r, "x-tollgate-cost-usd"));
    (id, cost, r.text().await.unwrap())
}

// ---------------------------------------------------------------------------
// 1. Anthropic web searches: native, streamed, and translated from chat.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn anthropic_web_searches_cost_a_cent_each_native_streamed_and_translated() {
    let h = Harness::start().await;

    // (a) native, not streamed.
    let (id, cost_header, body) = send_messages(&h, &anthropic_search_body(false)).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["usage"]["server_tool_use"]["web_search_requests"], 3, "the client sees the provider's body");
    assert_eq!(cost_header, sub_dollar_usd(ANTHROPIC_TOTAL));
    let row = row_of(&h, &id).await;
    assert_eq!(row.provider.as_deref(), Some("anthropic"));
    assert_eq!(row.usage_source, UsageSource::Provider);
    assert_eq!(
        (row.usage.input, row.usage.cache_read, row.usage.cache_write_5m, row.usage.cache_write_1h, row.usage.output),
        (68, 27, 6, 7, 24)
    );
    assert_eq!(row.usage.web_search_requests, 3);
    assert_eq!(haiku_token_cost(&row), ANTHROPIC_TOKENS);
    assert_eq!(row.tool_cost, nanos(3 * SEARCH));
    assert_eq!(row.cost, Some(nanos(haiku_token_cost(&row) + 3 * SEARCH)));
    assert_eq!(row.cost, Some(nanos(ANTHROPIC_TOTAL)));
    assert_eq!(row.provider_cost, None, "Anthropic reports no cost of its own");

    // (a) streamed: message_start says nothing of searches, message_delta says 3.
    let (sid, _, text) = send_messages(&h, &anthropic_search_body(true)).await;
    assert!(text.contains(r#""server_tool_use":{"web_search_requests":3}"#), "{text}");
    assert!(text.contains(&format!(": x-tollgate-cost-usd={}", sub_dollar_usd(ANTHROPIC_TOTAL))), "{text}");
    let srow = row_of(&h, &sid).await;
    assert!(srow.streamed);
    assert_eq!(srow.usage, row.usage);
    assert_eq!(srow.tool_cost, nanos(3 * SEARCH));
    assert_eq!(srow.cost, Some(nanos(ANTHROPIC_TOTAL)));

    // (b) OpenAI chat to the same model, translated to Anthropic (max_tokens
    // defaults high → output 24). user = "[mock web_searches=3] " (22) + 170 = 192
    // bytes; T = 8 (system "be brief") + 192 = 200.
    //   prompt = 58; cache read = 14; writes = 58/8 = 7 → 5m = 3, 1h = 4; uncached = 58 − 14 − 7 = 37.
    //   37 input × $1/M     =     37_000
    //   14 read  × $0.10/M  =      1_400
    //    3 w5m   × $1.25/M  =      3_750
    //    4 w1h   × $2/M     =      8_000
    //   24 out   × $5/M     =    120_000
    //   tokens              =    170_150
    //   3 searches          = 30_000_000
    //   total               = 30_170_150 nanos = $0.030170150
    let user = format!("[mock web_searches=3] {}", "y".repeat(170));
    let body = json!({
        "model": "claude-haiku-4-5",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": user}],
    });
    let (tid, cost_header, text) = send(&h, "/v1/chat/completions", &body).await;
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(cost_header, sub_dollar_usd(30_170_150));
    let trow = row_of(&h, &tid).await;
    assert_eq!(trow.provider.as_deref(), Some("anthropic"));
    assert_eq!(
        (trow.usage.input, trow.usage.cache_read, trow.usage.cache_write_5m, trow.usage.cache_write_1h),
        (37, 14, 3, 4)
    );
    assert_eq!(trow.usage.web_search_requests, 3);
    assert_eq!(haiku_token_cost(&trow), 170_150);
    assert_eq!(trow.tool_cost, nanos(3 * SEARCH));
    assert_eq!(trow.cost, Some(nanos(30_170_150)));

    // /metrics: 3 + 3 + 3 searches at Anthropic, none elsewhere.
    assert_eq!(metric(&h, r#"tollgate_web_search_requests_total{provider="anthropic"}"#).await.as_deref(), Some("9"));
    assert_eq!(metric(&h, r#"tollgate_web_search_requests_total{provider="openai"}"#).await, None);
    assert_eq!(metric(&h, r#"tollgate_provider_cost_checks_total{provider="anthropic"}"#).await, None);
    h.stop().await;
}

// ---------------------------------------------------------------------------
// 2. OpenAI Responses API web_search_call items.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn responses_web_search_calls_cost_a_cent_each_whole_and_streamed() {
    let h = Harness::start().await;

    // (c) not streamed.
    let (id, cost_header, body) = send(&h, "/v1/responses", &responses_search_body(false)).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    let kinds: Vec<&str> = v["output"].as_array().unwrap().iter().map(|i| i["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["web_search_call", "web_search_call", "message"]);
    assert_eq!(cost_header, sub_dollar_usd(RESPONSES_TOTAL));
    let row = row_of(&h, &id).await;
    assert_eq!(row.provider.as_deref(), Some("openai"));
    assert_eq!(row.usage_source, UsageSource::Provider);
    assert_eq!((row.usage.input, row.usage.cache_read, row.usage.output, row.usage.reasoning), (81, 27, 24, 0));
    assert_eq!(row.usage.web_search_requests, 2);
    assert_eq!(gpt4o_token_cost(&row), RESPONSES_TOKENS);
    assert_eq!(row.tool_cost, nanos(2 * SEARCH));
    assert_eq!(row.cost, Some(nanos(gpt4o_token_cost(&row) + 2 * SEARCH)));
    assert_eq!(row.cost, Some(nanos(RESPONSES_TOTAL)));

    // (c) streamed: the count comes from response.completed's output.
    let (sid, _, text) = send(&h, "/v1/responses", &responses_search_body(true)).await;
    assert_eq!(text.matches("event: response.web_search_call.completed").count(), 2, "{text}");
    let srow = row_of(&h, &sid).await;
    assert!(srow.streamed);
    assert_eq!(srow.usage, row.usage);
    assert_eq!(srow.tool_cost, nanos(2 * SEARCH));
    assert_eq!(srow.cost, Some(nanos(RESPONSES_TOTAL)));

    // A Responses answer without searches has no tool cost.
    let (pid, cost_header, _) = send(&h, "/v1/responses", &json!({"model": "gpt-4o", "input": "z".repeat(400)})).await;
    let prow = row_of(&h, &pid).await;
    assert_eq!(prow.usage.web_search_requests, 0);
    assert_eq!(prow.tool_cost, Money::ZERO);
    // Same token counts as above (T = 400): 476_250 nanos.
    assert_eq!(cost_header, sub_dollar_usd(RESPONSES_TOKENS));

    assert_eq!(metric(&h, r#"tollgate_web_search_requests_total{provider="openai"}"#).await.as_deref(), Some("4"));
    assert_eq!(metric(&h, r#"tollgate_web_search_requests_total{provider="anthropic"}"#).await, None);
    h.stop().await;
}

// ---------------------------------------------------------------------------
// 3. A cost the provider reports itself.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_reported_cost_is_kept_beside_ours_and_disagreements_are_counted() {
    let h = Harness::start().await;

    // (d) the provider says $0.000123 = 123_000 nanos; we say 22_050.
    //   |123_000 − 22_050| = 100_950 > 1_000 nanos, and > 1 % of 123_000 (1_230): a disagreement.
    let (id, cost_header, body) = send(&h, "/v1/chat/completions", &reported_cost_body("0.000123", false)).await;
    assert!(body.contains(r#""cost":0.000123"#), "{body}");
    assert_eq!(cost_header, sub_dollar_usd(MINI_TOTAL), "our price, not theirs");
    let row = row_of(&h, &id).await;
    assert_eq!(row.provider.as_deref(), Some("openai"));
    assert_eq!((row.usage.input, row.usage.cache_read, row.usage.output), (44, 14, 24));
    assert_eq!(row.provider_cost, Some(nanos(123_000)));
    assert_eq!(row.cost, Some(nanos(MINI_TOTAL)));
    assert_eq!(row.tool_cost, Money::ZERO);
    let ours = row.cost.unwrap().nanos();
    assert!((123_000 - ours) > 1_000 && (123_000 - ours) * 100 > 123_000, "{ours}");
    assert_eq!(metric(&h, r#"tollgate_provider_cost_checks_total{provider="openai"}"#).await.as_deref(), Some("1"));
    assert_eq!(
        metric(&h, r#"tollgate_provider_cost_disagreements_total{provider="openai"}"#).await.as_deref(),
        Some("1")
    );

    // The provider agrees to the nano: 2.205e-5 USD = $0.00002205 = 22_050 nanos.
    // Checked, no disagreement.
    let (aid, _, body) = send(&h, "/v1/chat/completions", &reported_cost_body("2.205e-5", false)).await;
    assert!(body.contains(r#""cost":2.205e-5"#), "{body}");
    assert_eq!(row_of(&h, &aid).await.provider_cost, Some(nanos(22_050)));
    // Within 1,000 nanos: 2.25e-05 USD = 22_500 nanos (450 over ours, 2 %): not a disagreement.
    let (nid, _, _) = send(&h, "/v1/chat/completions", &reported_cost_body("2.25e-05", false)).await;
    let near = row_of(&h, &nid).await;
    assert_eq!((near.provider_cost, near.cost), (Some(nanos(22_500)), Some(nanos(MINI_TOTAL))));
    assert_eq!(metric(&h, r#"tollgate_provider_cost_checks_total{provider="openai"}"#).await.as_deref(), Some("3"));
    assert_eq!(
        metric(&h, r#"tollgate_provider_cost_disagreements_total{provider="openai"}"#).await.as_deref(),
        Some("1")
    );

    // Streamed: the gateway asks for usage itself; the last usage chunk carries the cost.
    let (sid, _, text) = send(&h, "/v1/chat/completions", &reported_cost_body("0.000123", true)).await;
    assert!(text.contains(&format!(": x-tollgate-cost-usd={}", sub_dollar_usd(MINI_TOTAL))), "{text}");
    let srow = row_of(&h, &sid).await;
    assert!(srow.streamed);
    assert_eq!((srow.provider_cost, srow.cost), (Some(nanos(123_000)), Some(nanos(MINI_TOTAL))));
    assert_eq!(metric(&h, r#"tollgate_provider_cost_checks_total{provider="openai"}"#).await.as_deref(), Some("4"));
    assert_eq!(
        metric(&h, r#"tollgate_provider_cost_disagreements_total{provider="openai"}"#).await.as_deref(),
        Some("2")
    );

    // No reported cost: nothing to check.
    let (plain, _, _) = send(&h, "/v1/chat/completions", &chat("gpt-4o-mini", "hi", false)).await;
    assert_eq!(row_of(&h, &plain).await.provider_cost, None);
    assert_eq!(metric(&h, r#"tollgate_provider_cost_checks_total{provider="openai"}"#).await.as_deref(), Some("4"));
    h.stop().await;
}

// ---------------------------------------------------------------------------
// 4. All together: metrics and spend by provider.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn tool_costs_add_up_in_metrics_and_spend() {
    let h = Harness::start().await;
    let (a, _, _) = send_messages(&h, &anthropic_search_body(false)).await;
    let (c, _, _) = send(&h, "/v1/responses", &responses_search_body(false)).await;
    let (d, _, _) = send(&h, "/v1/chat/completions", &reported_cost_body("0.000123", false)).await;
    let rows = h.wait_rows(3).await;
    assert_eq!(rows.len(), 3);
    let tool: Money = rows.iter().map(|r| r.tool_cost).sum();
    // 3 + 2 searches = 50_000_000 nanos.
    assert_eq!(tool, nanos(5 * SEARCH));
    assert_eq!(row_of(&h, &a).await.cost, Some(nanos(ANTHROPIC_TOTAL)));
    assert_eq!(row_of(&h, &c).await.cost, Some(nanos(RESPONSES_TOTAL)));
    assert_eq!(row_of(&h, &d).await.cost, Some(nanos(MINI_TOTAL)));

    assert_eq!(metric(&h, r#"tollgate_web_search_requests_total{provider="anthropic"}"#).await.as_deref(), Some("3"));
    assert_eq!(metric(&h, r#"tollgate_web_search_requests_total{provider="openai"}"#).await.as_deref(), Some("2"));
    assert_eq!(metric(&h, r#"tollgate_provider_cost_checks_total{provider="openai"}"#).await.as_deref(), Some("1"));
    assert_eq!(
        metric(&h, r#"tollgate_provider_cost_disagreements_total{provider="openai"}"#).await.as_deref(),
        Some("1")
    );
    // The money counter includes the searches: 30_212_200 + 20_476_250 + 22_050 = 50_710_500.
    let text = h.http.get(format!("{}/metrics", h.base)).send().await.unwrap().text().await.unwrap();
    let cost: Money = text
        .lines()
        .filter(|l| l.starts_with("tollgate_cost_usd_total{"))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<Money>().unwrap())
        .sum();
    assert_eq!(cost, nanos(50_710_500));

    // Spend by provider: tool cost and searches per provider and in total.
    let v: Value =
        h.http.get(format!("{}/api/v1/spend?group_by=provider", h.base)).send().await.unwrap().json().await.unwrap();
    let by = |p: &str| v["rows"].as_array().unwrap().iter().find(|r| r["provider"] == p).cloned().unwrap();
    let (anthropic, openai) = (by("anthropic"), by("openai"));
    assert_eq!(v["total_cost_usd"], sub_dollar_usd(50_710_500), "{v}");
    assert_eq!(anthropic["cost_usd"], sub_dollar_usd(ANTHROPIC_TOTAL));
    // 20_476_250 + 22_050 = 20_498_300.
    assert_eq!(openai["cost_usd"], sub_dollar_usd(20_498_300));
    assert_eq!(anthropic["tool_cost_usd"], "0.030000000", "{v}");
    assert_eq!(anthropic["web_search_requests"], 3);
    assert_eq!(openai["tool_cost_usd"], "0.020000000");
    assert_eq!(openai["web_search_requests"], 2);
    assert_eq!(v["tool_cost_usd"], "0.050000000");
    assert_eq!(v["web_search_requests"], 5);
    h.stop().await;
}
