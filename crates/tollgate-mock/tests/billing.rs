//! The organization cost and usage report routes (OpenAI's and Anthropic's
//! admin APIs) over a real socket: what the mock served, injected usage,
//! price adjustments, paging and admin auth.

// Test helpers outside #[test] fns may unwrap too.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tollgate_mock::{billing_api_key_id, serve, MockConfig};

const DAY: i64 = 86_400;
/// 2026-12-05T00:00:00Z .. 2026-12-09T00:00:00Z as Unix seconds.
const DEC_05: i64 = 1_796_428_800;
const DEC_06: i64 = DEC_05 + DAY;
const DEC_07: i64 = DEC_05 + 2 * DAY;
const DEC_08: i64 = DEC_05 + 3 * DAY;
const DEC_09: i64 = DEC_05 + 4 * DAY;

const OPENAI_KEY: &str = "sk-test-openai";
const ANTHROPIC_KEY: &str = "sk-ant-test";

struct Mock {
    addr: SocketAddr,
    client: reqwest::Client,
}

async fn start(config: MockConfig) -> Mock {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, config));
    Mock { addr, client: reqwest::Client::new() }
}

impl Mock {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A model call; the whole body as text.
    async fn call(&self, path: &str, headers: &[(&str, &str)], body: Value) -> String {
        let mut request = self.client.post(self.url(path)).json(&body);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        response.text().await.unwrap()
    }

    /// An OpenAI admin GET: (status, raw body).
    async fn openai(&self, path_and_query: &str, key: &str) -> (u16, String) {
        let response = self.client.get(self.url(path_and_query)).bearer_auth(key).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// An Anthropic admin GET: (status, raw body).
    async fn anthropic(&self, path_and_query: &str, key: &str, version: bool) -> (u16, String) {
        let mut request = self.client.get(self.url(path_and_query)).header("x-api-key", key);
        if version {
            request = request.header("anthropic-version", "2023-06-01");
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    async fn ok_openai(&self, path_and_query: &str) -> (Value, String) {
        let (status, body) = self.openai(path_and_query, "sk-admin").await;
        assert_eq!(status, 200, "{path_and_query}: {body}");
        (serde_json::from_str(&body).unwrap(), body)
    }

    async fn ok_anthropic(&self, path_and_query: &str) -> Value {
        let (status, body) = self.anthropic(path_and_query, "sk-ant-admin", true).await;
        assert_eq!(status, 200, "{path_and_query}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    async fn inject(&self, body: Value) {
        let response = self.client.post(self.url("/mock/billing")).json(&body).send().await.unwrap();
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    }
}

fn today_midnight() -> i64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    now - now % DAY
}

fn rfc3339(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0).unwrap().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Every result of every bucket of a report page.
fn results(page: &Value) -> Vec<Value> {
    page["data"].as_array().unwrap().iter().flat_map(|b| b["results"].as_array().unwrap().clone()).collect()
}

/// The `data:` JSON of an SSE body's events (not `[DONE]`).
fn sse_jsons(body: &str) -> Vec<Value> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

fn chat_body(stream: bool) -> Value {
    let mut body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x".repeat(400)}]});
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

fn messages_body(stream: bool) -> Value {
    json!({"model": "claude-haiku-4-5", "max_tokens": 1024, "stream": stream,
           "messages": [{"role": "user", "content": "y".repeat(800)}]})
}

#[tokio::test]
async fn served_calls_show_in_the_four_reports_with_the_answers_tokens_and_catalog_cost() {
    let mock = start(MockConfig::default()).await;
    let openai_headers = [("authorization", "Bearer sk-test-openai"), ("x-mock-output-tokens", "1000")];
    let anthropic_headers =
        [("x-api-key", ANTHROPIC_KEY), ("anthropic-version", "2023-06-01"), ("x-mock-output-tokens", "500")];

    // What the clients saw: OpenAI (prompt, cached, completion) and
    // Anthropic (input, cache read, 5m write, 1h write, output).
    let whole: Value =
        serde_json::from_str(&mock.call("/v1/chat/completions", &openai_headers, chat_body(false)).await).unwrap();
    let streamed = sse_jsons(&mock.call("/v1/chat/completions", &openai_headers, chat_body(true)).await);
    let last = streamed.last().unwrap();
    let mut seen_openai = (0u64, 0u64, 0u64);
    for usage in [&whole["usage"], &last["usage"]] {
        seen_openai.0 += usage["prompt_tokens"].as_u64().unwrap();
        seen_openai.1 += usage["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap();
        seen_openai.2 += usage["completion_tokens"].as_u64().unwrap();
    }
    // 400 bytes of prompt text: prompt 8 + 400/4 = 108, cached 108/4 = 27; output knob 1000; twice.
    assert_eq!(seen_openai, (216, 54, 2000));

    let whole: Value =
        serde_json::from_str(&mock.call("/v1/messages", &anthropic_headers, messages_body(false)).await).unwrap();
    let events = sse_jsons(&mock.call("/v1/messages", &anthropic_headers, messages_body(true)).await);
    let start_usage = &events.iter().find(|e| e["type"] == "message_start").unwrap()["message"]["usage"];
    let delta_usage = &events.iter().find(|e| e["type"] == "message_delta").unwrap()["usage"];
    let mut seen_anthropic = [0u64; 5];
    for (u, creation) in
        [(&whole["usage"], &whole["usage"]["cache_creation"]), (delta_usage, &start_usage["cache_creation"])]
    {
        seen_anthropic[0] += u["input_tokens"].as_u64().unwrap();
        seen_anthropic[1] += u["cache_read_input_tokens"].as_u64().unwrap();
        seen_anthropic[2] += creation["ephemeral_5m_input_tokens"].as_u64().unwrap();
        seen_anthropic[3] += creation["ephemeral_1h_input_tokens"].as_u64().unwrap();
        seen_anthropic[4] += u["output_tokens"].as_u64().unwrap();
    }
    // 800 bytes: prompt 208, read 52, writes 26 (13 + 13), input 208 − 52 − 26 = 130; output 500; twice.
    assert_eq!(seen_anthropic, [260, 104, 26, 26, 1000]);

    // Yesterday to tomorrow, so a run across midnight still finds the calls.
    let (from, to) = (today_midnight() - DAY, today_midnight() + DAY);
    let openai_key_id = billing_api_key_id(Some(OPENAI_KEY));
    assert!(openai_key_id.starts_with("key_") && !openai_key_id.contains("test"));

    let (page, _) = mock
        .ok_openai(&format!(
            "/v1/organization/usage/completions?start_time={from}&end_time={to}&group_by=model&group_by=api_key_id&group_by=project_id"
        ))
        .await;
    assert_eq!(page["object"], "page");
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    let r = results(&page);
    assert_eq!(r.len(), 1, "{page}");
    let r = &r[0];
    assert_eq!(r["object"], "organization.usage.completions.result");
    assert_eq!(r["input_tokens"], seen_openai.0); // cached included, as OpenAI counts
    assert_eq!(r["input_cached_tokens"], seen_openai.1);
    assert_eq!(r["output_tokens"], seen_openai.2);
    assert_eq!(r["num_model_requests"], 2);
    assert_eq!((r["model"].as_str(), r["project_id"].as_str()), (Some("gpt-4o-mini"), Some("proj_tollgate")));
    assert_eq!(r["api_key_id"], openai_key_id);
    assert_eq!((r["user_id"].clone(), r["batch"].clone()), (Value::Null, Value::Null));

    // gpt-4o-mini (prices.toml): input $0.15/M = 150 nd/token, cached $0.075/M = 75 nd,
    // output $0.60/M = 600 nd. Uncached input 2 × (108 − 27) = 162 → 24,300 nd;
    // cached 54 → 4,050 nd; output 2,000 → 1,200,000 nd; total 1,228,350 nd = $0.00122835.
    let (page, raw) =
        mock.ok_openai(&format!("/v1/organization/costs?start_time={from}&end_time={to}&group_by=line_item")).await;
    let lines: Vec<(String, f64)> = results(&page)
        .iter()
        .map(|r| (r["line_item"].as_str().unwrap().to_owned(), r["amount"]["value"].as_f64().unwrap()))
        .collect();
    assert_eq!(
        lines,
        [
            ("gpt-4o-mini, cached input".to_owned(), 0.00000405),
            ("gpt-4o-mini, input".to_owned(), 0.0000243),
            ("gpt-4o-mini, output".to_owned(), 0.0012),
        ]
    );
    // The numbers are written exactly (no float on the way).
    for text in [r#""value":0.00000405,"currency":"usd""#, r#""value":0.0000243,"#, r#""value":0.0012,"#] {
        assert!(raw.contains(text), "{text} not in {raw}");
    }
    let (page, raw) = mock.ok_openai(&format!("/v1/organization/costs?start_time={from}&end_time={to}")).await;
    assert!(raw.contains(r#"{"object":"organization.costs.result","amount":{"value":0.00122835,"currency":"usd"},"line_item":null,"project_id":null}"#), "{raw}");
    assert_eq!(results(&page).len(), 1);

    let q = format!("starting_at={}&ending_at={}", rfc3339(from), rfc3339(to));
    let page = mock
        .ok_anthropic(&format!(
            "/v1/organizations/usage_report/messages?{q}&group_by[]=model&group_by[]=api_key_id&group_by[]=workspace_id"
        ))
        .await;
    let r = results(&page);
    assert_eq!(r.len(), 1, "{page}");
    let r = &r[0];
    assert_eq!(r["uncached_input_tokens"], seen_anthropic[0]);
    assert_eq!(r["cache_read_input_tokens"], seen_anthropic[1]);
    assert_eq!(r["cache_creation"]["ephemeral_5m_input_tokens"], seen_anthropic[2]);
    assert_eq!(r["cache_creation"]["ephemeral_1h_input_tokens"], seen_anthropic[3]);
    assert_eq!(r["output_tokens"], seen_anthropic[4]);
    assert_eq!(r["server_tool_use"]["web_search_requests"], 0);
    assert_eq!((r["model"].as_str(), r["workspace_id"].as_str()), (Some("claude-haiku-4-5"), Some("wrkspc_tollgate")));
    assert_eq!(r["api_key_id"], billing_api_key_id(Some(ANTHROPIC_KEY)));
    assert_eq!((r["service_tier"].clone(), r["context_window"].clone()), (Value::Null, Value::Null));

    // claude-haiku-4-5 (prices.toml), in nd/token: input 1,000, 5m write 1,250, 1h write 2,000,
    // read 100, output 5,000. Input 260 → 260,000 nd = 0.026 ¢; output 1,000 → 5,000,000 nd
    // = 0.5 ¢; read 104 → 10,400 nd = 0.00104 ¢; 5m 26 → 32,500 nd = 0.00325 ¢;
    // 1h 26 → 52,000 nd = 0.0052 ¢. Total 5,354,900 nd = 0.53549 ¢ (1 ¢ = 10^7 nd).
    let page = mock.ok_anthropic(&format!("/v1/organizations/cost_report?{q}&group_by[]=description")).await;
    let mut lines: Vec<(String, String)> = results(&page)
        .iter()
        .map(|r| {
            assert_eq!((r["currency"].as_str(), r["cost_type"].as_str()), (Some("USD"), Some("tokens")));
            assert_eq!((r["model"].as_str(), r["service_tier"].as_str()), (Some("claude-haiku-4-5"), Some("standard")));
            assert_eq!(r["context_window"], "0-200k");
            (r["token_type"].as_str().unwrap().to_owned(), r["amount"].as_str().unwrap().to_owned())
        })
        .collect();
    lines.sort();
    let want = [
        ("cache_creation.ephemeral_1h_input_tokens", "0.0052"),
        ("cache_creation.ephemeral_5m_input_tokens", "0.00325"),
        ("cache_read_input_tokens", "0.00104"),
        ("output_tokens", "0.5"),
        ("uncached_input_tokens", "0.026"),
    ];
    assert_eq!(lines, want.map(|(a, b)| (a.to_owned(), b.to_owned())));
    let page = mock.ok_anthropic(&format!("/v1/organizations/cost_report?{q}")).await;
    let r = results(&page);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["amount"], "0.53549");
    assert_eq!((r[0]["workspace_id"].clone(), r[0]["description"].clone()), (Value::Null, Value::Null));

    // POST /mock/reset empties the book.
    mock.client.post(mock.url("/mock/reset")).send().await.unwrap();
    let (page, _) = mock.ok_openai(&format!("/v1/organization/costs?start_time={from}&end_time={to}")).await;
    assert!(results(&page).is_empty());
    let book: Value = mock.client.get(mock.url("/mock/billing")).send().await.unwrap().json().await.unwrap();
    assert_eq!(book["rows"], json!([]));
}

#[tokio::test]
async fn responses_embeddings_and_web_searches_are_billed_but_azure_is_not() {
    let mock = start(MockConfig::default()).await;
    let auth = [("authorization", "Bearer sk-test-openai")];
    mock.call(
        "/v1/responses",
        &[auth[0], ("x-mock-web-searches", "2"), ("x-mock-output-tokens", "100")],
        json!({"model": "gpt-4o-mini", "input": "w".repeat(400)}),
    )
    .await;
    mock.call("/v1/embeddings", &auth, json!({"model": "text-embedding-3-small", "input": "z".repeat(400)})).await;
    mock.call("/openai/deployments/gpt-4o-mini/chat/completions", &[("api-key", "azure")], chat_body(false)).await;

    let (from, to) = (today_midnight() - DAY, today_midnight() + DAY);
    // Responses: uncached 81 × 150 = 12,150 nd, cached 27 × 75 = 2,025 nd, output 100 × 600
    // = 60,000 nd; 2 web searches at $10 per 1,000 = 20,000,000 nd = $0.02. Embeddings:
    // 108 tokens × $0.02/M (20 nd) = 2,160 nd. Azure's call is Azure's bill: not here.
    let (page, raw) =
        mock.ok_openai(&format!("/v1/organization/costs?start_time={from}&end_time={to}&group_by[]=line_item")).await;
    let lines: Vec<String> = results(&page).iter().map(|r| r["line_item"].as_str().unwrap().to_owned()).collect();
    assert_eq!(
        lines,
        [
            "gpt-4o-mini, cached input",
            "gpt-4o-mini, input",
            "gpt-4o-mini, output",
            "text-embedding-3-small, input",
            "web search tool calls"
        ]
    );
    for text in [
        r#""value":0.000002025,"currency":"usd"},"line_item":"gpt-4o-mini, cached input""#,
        r#""value":0.00001215,"currency":"usd"},"line_item":"gpt-4o-mini, input""#,
        r#""value":0.00006,"currency":"usd"},"line_item":"gpt-4o-mini, output""#,
        r#""value":0.00000216,"currency":"usd"},"line_item":"text-embedding-3-small, input""#,
        r#""value":0.02,"currency":"usd"},"line_item":"web search tool calls""#,
    ] {
        assert!(raw.contains(text), "{text} not in {raw}");
    }
    let (page, _) =
        mock.ok_openai(&format!("/v1/organization/usage/completions?start_time={from}&end_time={to}")).await;
    let r = results(&page);
    assert_eq!((r.len(), r[0]["input_tokens"].as_u64(), r[0]["num_model_requests"].as_u64()), (1, Some(108), Some(1)));
    let (page, _) = mock
        .ok_openai(&format!("/v1/organization/usage/embeddings?start_time={from}&end_time={to}&group_by=model"))
        .await;
    let r = results(&page);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["object"], "organization.usage.embeddings.result");
    assert_eq!((r[0]["model"].as_str(), r[0]["input_tokens"].as_u64()), (Some("text-embedding-3-small"), Some(108)));
}

fn extra(family: &str, day: &str, model: &str) -> Value {
    let owner = if family == "openai" { "project_id" } else { "workspace_id" };
    let mut e = json!({"family": family, "day": day, "api_key_id": "key_outside", "model": model,
                       "input_tokens": 1_000_000, "output_tokens": 200_000, "cached_input_tokens": 0, "requests": 10});
    e[owner] = json!(if family == "openai" { "proj_outside" } else { "wrkspc_outside" });
    e
}

#[tokio::test]
async fn limit_one_pages_a_three_day_range_and_empty_days_are_buckets() {
    let mock = start(MockConfig::default()).await;
    let days = ["2026-12-05", "2026-12-06", "2026-12-07"];
    let extras: Vec<Value> =
        days.iter().flat_map(|d| [extra("openai", d, "gpt-4o"), extra("anthropic", d, "claude-haiku-4-5")]).collect();
    mock.inject(json!({"extra": extras})).await;

    for path in ["/v1/organization/costs", "/v1/organization/usage/completions"] {
        let mut page_param = String::new();
        let mut starts = Vec::new();
        for n in 1..=3 {
            let (page, _) =
                mock.ok_openai(&format!("{path}?start_time={DEC_05}&end_time={DEC_08}&limit=1{page_param}")).await;
            let data = page["data"].as_array().unwrap();
            assert_eq!(data.len(), 1, "{path} page {n}: {page}");
            assert_eq!(data[0]["end_time"].as_i64().unwrap() - data[0]["start_time"].as_i64().unwrap(), DAY);
            assert_eq!(data[0]["results"].as_array().unwrap().len(), 1);
            starts.push(data[0]["start_time"].as_i64().unwrap());
            assert_eq!(page["has_more"], n < 3, "{path} page {n}");
            match page["next_page"].as_str() {
                Some(next) => page_param = format!("&page={}", urlencode(next)),
                None => assert_eq!(n, 3),
            }
        }
        assert_eq!(starts, [DEC_05, DEC_06, DEC_07]);
    }

    let mut page_param = String::new();
    let mut starts = Vec::new();
    for n in 1..=3 {
        let page = mock
            .ok_anthropic(&format!(
                "/v1/organizations/cost_report?starting_at={}&ending_at={}&limit=1{page_param}",
                rfc3339(DEC_05),
                rfc3339(DEC_08)
            ))
            .await;
        let data = page["data"].as_array().unwrap();
        assert_eq!(data.len(), 1, "page {n}: {page}");
        starts.push(data[0]["starting_at"].as_str().unwrap().to_owned());
        assert_eq!(page["has_more"], n < 3);
        if let Some(next) = page["next_page"].as_str() {
            assert!(next.starts_with("page_"));
            page_param = format!("&page={}", urlencode(next));
        } else {
            assert_eq!(n, 3);
        }
    }
    assert_eq!(starts, ["2026-12-05T00:00:00Z", "2026-12-06T00:00:00Z", "2026-12-07T00:00:00Z"]);

    // A day without usage (12-08) is still a bucket; days outside [start, end) are not.
    let (page, _) = mock.ok_openai(&format!("/v1/organization/costs?start_time={DEC_06}&end_time={DEC_09}")).await;
    let counts: Vec<usize> =
        page["data"].as_array().unwrap().iter().map(|b| b["results"].as_array().unwrap().len()).collect();
    assert_eq!(
        (counts, page["has_more"].clone(), page["next_page"].clone()),
        (vec![1, 1, 0], json!(false), Value::Null)
    );
    let page = mock
        .ok_anthropic(&format!(
            "/v1/organizations/usage_report/messages?starting_at={}&ending_at={}",
            rfc3339(DEC_06),
            rfc3339(DEC_09)
        ))
        .await;
    let counts: Vec<usize> =
        page["data"].as_array().unwrap().iter().map(|b| b["results"].as_array().unwrap().len()).collect();
    assert_eq!(counts, [1, 1, 0]);
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn a_price_adjustment_shows_on_its_day_only() {
    let mock = start(MockConfig::default()).await;
    mock.inject(json!({
        "extra": [extra("openai", "2026-12-05", "gpt-4o"), extra("openai", "2026-12-06", "gpt-4o"),
                  extra("openai", "2026-12-07", "gpt-4o"), extra("anthropic", "2026-12-06", "claude-haiku-4-5")],
        "price_adjustments": [
            {"family": "openai", "day": "2026-12-06", "model": "gpt-4o", "percent": "125"},
            {"family": "anthropic", "day": "2026-12-06", "model": "claude-haiku-4-5", "percent": 50}
        ]
    }))
    .await;

    // gpt-4o from 2024-10-02 (prices.toml): input $2.50/M, output $10/M. 1,000,000 input →
    // $2.50, 200,000 output → $2.00: $4.50 a day. On 12-06 at 125 %: $3.125 + $2.50 = $5.625.
    let (_, raw) = mock
        .ok_openai(&format!("/v1/organization/costs?start_time={DEC_05}&end_time={DEC_08}&group_by=line_item"))
        .await;
    let expected = format!(
        concat!(
            r#"{{"object":"bucket","start_time":{},"end_time":{},"results":["#,
            r#"{{"object":"organization.costs.result","amount":{{"value":{},"currency":"usd"}},"line_item":"gpt-4o, input","project_id":null}},"#,
            r#"{{"object":"organization.costs.result","amount":{{"value":{},"currency":"usd"}},"line_item":"gpt-4o, output","project_id":null}}]}}"#
        ),
        DEC_06, DEC_07, "3.125", "2.5"
    );
    assert!(raw.contains(&expected), "{expected}\nnot in\n{raw}");
    for (day, next) in [(DEC_05, DEC_06), (DEC_07, DEC_08)] {
        let plain = format!(
            r#"{{"object":"bucket","start_time":{day},"end_time":{next},"results":[{{"object":"organization.costs.result","amount":{{"value":2.5,"currency":"usd"}},"line_item":"gpt-4o, input","project_id":null}},{{"object":"organization.costs.result","amount":{{"value":2.0,"currency":"usd"}},"line_item":"gpt-4o, output","project_id":null}}]}}"#
        );
        assert!(raw.contains(&plain), "{plain}\nnot in\n{raw}");
    }
    // Tokens are not adjusted.
    let (page, _) =
        mock.ok_openai(&format!("/v1/organization/usage/completions?start_time={DEC_06}&end_time={DEC_07}")).await;
    assert_eq!(results(&page)[0]["input_tokens"], 1_000_000);

    // claude-haiku-4-5: 1,000,000 × $1/M + 200,000 × $5/M = $2.00 = 200 ¢; at 50 %: 100 ¢.
    let page = mock
        .ok_anthropic(&format!(
            "/v1/organizations/cost_report?starting_at={}&ending_at={}",
            rfc3339(DEC_06),
            rfc3339(DEC_07)
        ))
        .await;
    assert_eq!(results(&page)[0]["amount"], "100");
    let book: Value = mock.client.get(mock.url("/mock/billing")).send().await.unwrap().json().await.unwrap();
    let adjusted: Vec<&Value> = book["rows"].as_array().unwrap().iter().filter(|r| !r["percent"].is_null()).collect();
    assert_eq!(adjusted.len(), 2, "{book}");
    assert_eq!(book["price_adjustments"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn extra_usage_shows_under_its_own_project_workspace_and_key() {
    let mock = start(MockConfig::default()).await;
    mock.call("/v1/chat/completions", &[("authorization", "Bearer sk-test-openai")], chat_body(false)).await;
    mock.call(
        "/v1/messages",
        &[("x-api-key", ANTHROPIC_KEY), ("anthropic-version", "2023-06-01")],
        messages_body(false),
    )
    .await;
    let today = chrono::DateTime::from_timestamp(today_midnight(), 0).unwrap().format("%Y-%m-%d").to_string();
    mock.inject(json!({"extra": [extra("openai", &today, "gpt-4o"), extra("anthropic", &today, "claude-haiku-4-5")]}))
        .await;
    let (from, to) = (today_midnight(), today_midnight() + DAY);

    let (page, raw) =
        mock.ok_openai(&format!("/v1/organization/costs?start_time={from}&end_time={to}&group_by=project_id")).await;
    let projects: Vec<String> = results(&page).iter().map(|r| r["project_id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(projects, ["proj_outside", "proj_tollgate"]);
    assert!(raw.contains(r#""value":4.5,"currency":"usd"},"line_item":null,"project_id":"proj_outside""#), "{raw}");

    let (page, _) = mock
        .ok_openai(&format!(
            "/v1/organization/usage/completions?start_time={from}&end_time={to}&group_by=project_id&group_by=api_key_id&project_ids=proj_outside"
        ))
        .await;
    let r = results(&page);
    assert_eq!(r.len(), 1);
    assert_eq!((r[0]["project_id"].as_str(), r[0]["api_key_id"].as_str()), (Some("proj_outside"), Some("key_outside")));
    assert_eq!((r[0]["input_tokens"].as_u64(), r[0]["output_tokens"].as_u64()), (Some(1_000_000), Some(200_000)));
    assert_eq!(r[0]["num_model_requests"], 10);

    let page = mock
        .ok_anthropic(&format!(
            "/v1/organizations/usage_report/messages?starting_at={}&ending_at={}&group_by[]=workspace_id&group_by[]=api_key_id",
            rfc3339(from),
            rfc3339(to)
        ))
        .await;
    // Results sort by the grouping fields in the documented order (api_key_id first).
    let owners: Vec<(String, String)> = results(&page)
        .iter()
        .map(|r| (r["workspace_id"].as_str().unwrap().to_owned(), r["api_key_id"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        owners,
        [
            ("wrkspc_tollgate".to_owned(), billing_api_key_id(Some(ANTHROPIC_KEY))),
            ("wrkspc_outside".to_owned(), "key_outside".to_owned()),
        ]
    );
    let page = mock
        .ok_anthropic(&format!(
            "/v1/organizations/cost_report?starting_at={}&ending_at={}&group_by[]=workspace_id",
            rfc3339(from),
            rfc3339(to)
        ))
        .await;
    // The outside workspace: 1,000,000 × $1/M + 200,000 × $5/M = $2.00 = 200 ¢. Ours: the
    // call above (prompt 208: input 130, read 52, writes 13 + 13; output min(1024, 24) = 24):
    // 130 × 1,000 + 52 × 100 + 13 × 1,250 + 13 × 2,000 + 24 × 5,000 = 297,450 nd = 0.029745 ¢.
    let amounts: Vec<(String, String)> = results(&page)
        .iter()
        .map(|r| (r["workspace_id"].as_str().unwrap().to_owned(), r["amount"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        amounts,
        [("wrkspc_outside".to_owned(), "200".to_owned()), ("wrkspc_tollgate".to_owned(), "0.029745".to_owned())]
    );
}

#[tokio::test]
async fn admin_routes_refuse_other_keys_when_an_admin_key_is_configured() {
    let mock = start(MockConfig { admin_api_key: Some("sk-admin-right".into()), ..MockConfig::default() }).await;
    let costs = format!("/v1/organization/costs?start_time={DEC_05}&end_time={DEC_06}");
    let (status, body) = mock.openai(&costs, "sk-admin-wrong").await;
    assert_eq!(status, 401);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["code"], "invalid_api_key");
    let no_key = mock.client.get(mock.url(&costs)).send().await.unwrap();
    assert_eq!(no_key.status(), 401);
    assert_eq!(mock.openai(&costs, "sk-admin-right").await.0, 200);
    let usage = format!("/v1/organization/usage/completions?start_time={DEC_05}");
    assert_eq!(mock.openai(&usage, "sk-admin-wrong").await.0, 401);

    let report = format!("/v1/organizations/cost_report?starting_at={}", rfc3339(DEC_05));
    let (status, body) = mock.anthropic(&report, "sk-admin-wrong", true).await;
    assert_eq!(status, 401);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((body["type"].as_str(), body["error"]["type"].as_str()), (Some("error"), Some("authentication_error")));
    assert_eq!(mock.anthropic(&report, "sk-admin-right", false).await.0, 400, "anthropic-version is required");
    assert_eq!(mock.anthropic(&report, "sk-admin-right", true).await.0, 200);
    let messages = format!("/v1/organizations/usage_report/messages?starting_at={}", rfc3339(DEC_05));
    assert_eq!(mock.anthropic(&messages, "sk-admin-wrong", true).await.0, 401);

    // Without an admin key configured, any key is accepted.
    let open = start(MockConfig::default()).await;
    assert_eq!(open.openai(&costs, "anything").await.0, 200);
    assert_eq!(open.anthropic(&report, "anything", true).await.0, 200);
}

#[tokio::test]
async fn bad_report_parameters_and_knob_bodies_are_refused() {
    let mock = start(MockConfig::default()).await;
    for (query, param) in [
        ("", "start_time"),
        (&*format!("start_time={DEC_05}&limit=181"), "limit"),
        (&*format!("start_time={DEC_05}&group_by=model"), "group_by"),
        (&*format!("start_time={DEC_05}&bucket_width=1h"), "bucket_width"),
        (&*format!("start_time={DEC_05}&page=not-a-cursor"), "page"),
    ] {
        let (status, body) = mock.openai(&format!("/v1/organization/costs?{query}"), "k").await;
        assert_eq!(status, 400, "{query}: {body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"]["param"], param, "{query}");
    }
    assert_eq!(
        mock.openai(&format!("/v1/organization/usage/completions?start_time={DEC_05}&limit=32"), "k").await.0,
        400
    );
    assert_eq!(mock.openai(&format!("/v1/organization/costs?start_time={DEC_05}&limit=180"), "k").await.0, 200);
    for query in [
        "",
        "starting_at=yesterday",
        "starting_at=2026-12-05T00:00:00Z&group_by[]=model",
        "starting_at=2026-12-05T00:00:00Z&limit=32",
    ] {
        let (status, body) = mock.anthropic(&format!("/v1/organizations/cost_report?{query}"), "k", true).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["error"]["type"], "invalid_request_error");
    }
    for bad in [
        json!({"extra": [{"family": "gemini", "day": "2026-12-05", "model": "m"}]}),
        json!({"extra": [{"family": "openai", "day": "05/12/2026", "model": "m"}]}),
        json!({"extra": [{"family": "openai", "day": "2026-12-05", "model": "m", "input_tokens": -1}]}),
        json!({"extra": [{"family": "openai", "day": "2026-12-05", "model": "m", "typo_tokens": 1}]}),
        json!({"price_adjustments": [{"family": "openai", "day": "2026-12-05", "model": "m", "percent": "-10"}]}),
        json!({"surprise": true}),
    ] {
        let response = mock.client.post(mock.url("/mock/billing")).json(&bad).send().await.unwrap();
        assert_eq!(response.status(), 400, "{bad}");
    }
    // Nothing of a refused body was kept; an unpriced model keeps its tokens at cost 0.
    mock.inject(
        json!({"extra": [{"family": "openai", "day": "2026-12-05", "model": "no-such-model", "input_tokens": 5}]}),
    )
    .await;
    let book: Value = mock.client.get(mock.url("/mock/billing")).send().await.unwrap().json().await.unwrap();
    let rows = book["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{book}");
    assert_eq!((rows[0]["priced"].as_bool(), rows[0]["billed_nanos"]["total"].as_i64()), (Some(false), Some(0)));
    let (_, raw) = mock
        .ok_openai(&format!("/v1/organization/costs?start_time={DEC_05}&end_time={DEC_06}&group_by=line_item"))
        .await;
    assert!(raw.contains(r#""value":0.0,"currency":"usd"},"line_item":"no-such-model, input""#), "{raw}");
}
