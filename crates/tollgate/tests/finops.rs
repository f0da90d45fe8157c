//! FinOps end to end: traffic through the gateway to the mock provider, then
//! reconciliation against the mock's organization cost and usage reports
//! (OpenAI's and Anthropic's shapes), and the FOCUS chargeback export beside
//! `/api/v1/spend`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/services.rs"]
mod services;

use common::{chat, Harness};
use serde_json::{json, Value};
use tollgate::ledger::LedgerRow;
use tollgate::record::Endpoint;
use tollgate_units::{Money, Usage};

const DAY_MS: i64 = 86_400_000;

fn day(offset_days: i64) -> String {
    let ms = (tollgate::pipeline::now_ms().div_euclid(DAY_MS) + offset_days) * DAY_MS;
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms).unwrap().format("%Y-%m-%d").to_string()
}

/// A gateway whose OpenAI and Anthropic providers have admin keys and name
/// the mock's default project and workspace as the gateway's accounts.
async fn harness(extra: &str) -> Harness {
    Harness::start_with(extra, |mut c| {
        for p in &mut c.providers {
            match p.name.as_str() {
                "openai" => p.billing_accounts = vec!["proj_tollgate".into()],
                "anthropic" => p.billing_accounts = vec!["wrkspc_tollgate".into()],
                _ => continue,
            }
            p.admin_key = Some(tollgate::config::Secret::new("admin-key".into()));
        }
        c
    })
    .await
}

async fn send(h: &Harness, path: &str, body: Value) {
    let r = h.post(path).json(&body).send().await.unwrap();
    let status = r.status();
    let _ = r.bytes().await.unwrap();
    assert_eq!(status, 200, "{path} {body}");
}

async fn messages(h: &Harness, model: &str) {
    send(
        h,
        "/v1/messages",
        json!({"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": "hello there"}]}),
    )
    .await;
}

async fn mock_billing(h: &Harness, body: Value) {
    let r = h.http.post(format!("{}/mock/billing", h.mock)).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

async fn run(h: &Harness, provider: &str, since: &str) -> Value {
    let r = h
        .http
        .post(format!("{}/admin/v1/reconciliation/run", h.base))
        .query(&[("provider", provider), ("since", since)])
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{v}");
    v
}

fn line<'a>(report: &'a Value, list: &str, day: &str, model: &str) -> &'a Value {
    report[list]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["day"] == day && l["model"] == model)
        .unwrap_or_else(|| panic!("no {list} line {day} {model} in {report:#}"))
}

fn nanos(v: &Value) -> i64 {
    v.as_str().unwrap().parse::<Money>().unwrap().nanos()
}

/// A ledger row of an earlier day, as the gateway would have written it.
fn past_row(id: &str, days_ago: i64, model: &str, input: u64, output: u64, cost_nanos: i64) -> LedgerRow {
    let t = (tollgate::pipeline::now_ms().div_euclid(DAY_MS) - days_ago) * DAY_MS + 3_600_000;
    let mut row = LedgerRow::new(id, t, "k1", Endpoint::ChatCompletions);
    row.requested_model = Some(model.into());
    row.model = Some(model.into());
    row.provider = Some("openai".into());
    row.status = 200;
    row.usage = Usage { input, output, ..Usage::default() };
    row.cost = Some(Money::from_nanos(cost_nanos));
    row.attribution.tags.insert("team".into(), "growth".into());
    row
}

#[tokio::test]
async fn reconciliation_finds_clean_days_a_price_difference_with_its_cause_and_outside_spend() {
    let h = harness("").await;
    // Two days ago: one request the ledger holds and the provider billed
    // alike. gpt-4o-mini at $0.15 / $0.60 per million: 1,000 × 150 +
    // 200 × 600 = 270,000 nanos.
    h.store.append(&[&past_row("past-1", 2, "gpt-4o-mini", 1_000, 200, 270_000)]).unwrap();
    mock_billing(
        &h,
        json!({"extra": [{"family": "openai", "day": day(-2), "project_id": "proj_tollgate", "api_key_id": "key_gateway",
            "model": "gpt-4o-mini", "input_tokens": 1000, "output_tokens": 200, "cached_input_tokens": 0, "requests": 1}]}),
    )
    .await;
    // Today, through the gateway: gpt-4o-mini (plain and streamed), gpt-4o, and Claude.
    for stream in [false, true, false] {
        send(&h, "/v1/chat/completions", chat("gpt-4o-mini", "what is a ledger", stream)).await;
    }
    for stream in [false, true] {
        send(&h, "/v1/chat/completions", chat("gpt-4o", "explain reconciliation", stream)).await;
    }
    messages(&h, "claude-haiku-4-5").await;
    messages(&h, "claude-haiku-4-5").await;
    let rows = h.wait_rows(8).await;
    // Today the provider bills gpt-4o at 125 % of the catalog; yesterday,
    // $4.50 of gpt-4o went through a project that is not the gateway's.
    mock_billing(
        &h,
        json!({
            "price_adjustments": [{"family": "openai", "day": day(0), "model": "gpt-4o", "percent": "125"}],
            "extra": [{"family": "openai", "day": day(-1), "project_id": "proj_outside", "api_key_id": "key_outside",
                "model": "gpt-4o", "input_tokens": 1_000_000, "output_tokens": 200_000, "cached_input_tokens": 0, "requests": 10}]
        }),
    )
    .await;

    let report = run(&h, "openai", "3d").await;
    // The clean days: both sides equal to the nano-dollar.
    let past = line(&report, "rows", &day(-2), "gpt-4o-mini");
    assert_eq!(
        (past["gateway_cost_usd"].as_str(), past["drift_usd"].as_str()),
        (Some("0.000270000"), Some("0.000000000"))
    );
    assert_eq!(past["cause"], Value::Null);
    let mini = line(&report, "rows", &day(0), "gpt-4o-mini");
    assert_eq!(mini["drift_usd"], "0.000000000", "{mini}");
    assert_eq!(mini["gateway_requests"], 3);
    assert_eq!(mini["provider_requests"], 3);
    assert_eq!(mini["cause"], Value::Null);
    // gpt-4o: the gateway's cost worked out from the rows' own tokens at
    // $2.50 in / $1.25 cached / $10 out per million (2,500 / 1,250 / 10,000
    // nanos a token); the provider billed 5/4 of it.
    let by_hand: i64 = rows
        .iter()
        .filter(|r| r.model.as_deref().is_some_and(|m| m.starts_with("gpt-4o") && !m.starts_with("gpt-4o-mini")))
        .map(|r| {
            let u = &r.usage;
            (u.input as i64) * 2_500 + (u.cache_read as i64) * 1_250 + (u.output as i64 + u.reasoning as i64) * 10_000
        })
        .sum();
    assert!(by_hand > 0);
    let big = line(&report, "rows", &day(0), "gpt-4o");
    assert_eq!(nanos(&big["gateway_cost_usd"]), by_hand, "{big}");
    assert_eq!(nanos(&big["provider_cost_usd"]), by_hand / 4 * 5, "{big}");
    assert_eq!(nanos(&big["drift_usd"]), -by_hand / 4);
    assert_eq!(big["drift_percent"], "-20.00");
    let cause = big["cause"].as_str().unwrap();
    assert!(cause.starts_with("price: the same tokens on both sides"), "{cause}");
    assert_eq!(big["gateway_input_tokens"], big["provider_input_tokens"]);
    // Outside the gateway: its own line, not drift. 1,000,000 × $2.50/M +
    // 200,000 × $10/M = $4.50.
    let outside = line(&report, "outside", &day(-1), "gpt-4o");
    assert_eq!(outside["account"], "proj_outside");
    assert_eq!(outside["provider_cost_usd"], "4.500000000");
    assert_eq!(report["outside_gateway_usd"], "4.500000000");
    assert_eq!(report["drifting_lines"], 1, "{report:#}");
    assert_eq!(nanos(&report["drift_usd"]), -by_hand / 4);

    // Anthropic's reports, read the same way: clean.
    let anthropic = run(&h, "anthropic", "1d").await;
    let claude = line(&anthropic, "rows", &day(0), "claude-haiku-4-5");
    assert_eq!(claude["drift_usd"], "0.000000000", "{claude}");
    assert!(nanos(&claude["gateway_cost_usd"]) > 0);
    assert_eq!(claude["gateway_input_tokens"], claude["provider_input_tokens"]);
    assert_eq!(anthropic["outside"].as_array().unwrap().len(), 0);

    // Saved: the API serves both providers' lines.
    let saved: Value = h
        .http
        .get(format!("{}/api/v1/reconciliation", h.base))
        .query(&[("since", "3d")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let providers: std::collections::BTreeSet<&str> =
        saved["rows"].as_array().unwrap().iter().map(|l| l["provider"].as_str().unwrap()).collect();
    assert_eq!(providers.into_iter().collect::<Vec<_>>(), ["anthropic", "openai"]);
    assert_eq!(saved["outside_gateway_usd"], "4.500000000");
    assert!(saved["rows"][0]["reconciled_at"].is_string());
    h.stop().await;
}

#[tokio::test]
async fn reconciliation_errors_are_clear() {
    let h = Harness::start().await;
    // No admin key configured.
    let r = h
        .http
        .post(format!("{}/admin/v1/reconciliation/run", h.base))
        .query(&[("provider", "openai")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("admin_key_env"), "{v}");
    // A provider kind without cost reports.
    let r = h
        .http
        .post(format!("{}/admin/v1/reconciliation/run", h.base))
        .query(&[("provider", "nope")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    h.stop().await;
}

/// The FOCUS export's rows, as maps from column to value.
fn parse_csv(text: &str) -> Vec<std::collections::BTreeMap<String, String>> {
    let mut lines = text.split("\r\n").filter(|l| !l.is_empty());
    let header: Vec<String> = split_csv(lines.next().unwrap());
    lines.map(|l| header.iter().cloned().zip(split_csv(l)).collect()).collect()
}

fn split_csv(line: &str) -> Vec<String> {
    let (mut out, mut cur, mut quoted, mut chars) = (Vec::new(), String::new(), false, line.chars().peekable());
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    out.push(cur);
    out
}

#[tokio::test]
async fn the_focus_export_adds_up_to_spend_and_bills_the_rate_card() {
    let h = harness(
        r#"
[[rate_cards]]
name = "growth markup"
when = { team = "growth" }
markup_percent = "15"
"#,
    )
    .await;
    let search = h.add_key("search", Some("search")).await;
    for stream in [false, true] {
        send(&h, "/v1/chat/completions", chat("gpt-4o-mini", "growth question", stream)).await;
    }
    send(&h, "/v1/chat/completions", chat("gpt-4o", "growth question two", false)).await;
    let r = h
        .http
        .post(format!("{}/v1/chat/completions", h.base))
        .bearer_auth(&search)
        .json(&chat("gpt-4o-mini", "search question", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let _ = r.bytes().await;
    // Seeded history: two days ago, growth, $0.000270000.
    h.store.append(&[&past_row("past-1", 2, "gpt-4o-mini", 1_000, 200, 270_000)]).unwrap();
    let rows = h.wait_rows(5).await;
    assert_eq!(rows.len(), 5);
    let since = day(-3);
    let csv = h
        .http
        .get(format!("{}/api/v1/export/focus", h.base))
        .query(&[("since", since.as_str()), ("by", "team")])
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), 200);
    assert!(csv.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let text = csv.text().await.unwrap();
    let focus = parse_csv(&text);
    for column in tollgate::chargeback::MANDATORY_COLUMNS {
        assert!(focus[0].contains_key(*column), "missing {column}");
    }
    // The same window through /api/v1/spend.
    let from = format!("{since}T00:00:00Z");
    let spend: Value = h
        .http
        .get(format!("{}/api/v1/spend", h.base))
        .query(&[("from", from.as_str())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let total = |col: &str| focus.iter().map(|r| r[col].parse::<Money>().unwrap().nanos()).sum::<i64>();
    assert_eq!(total("EffectiveCost"), nanos(&spend["total_cost_usd"]), "to the nano-dollar");
    // Each row: valid FOCUS values; billed = effective × 1.15 for growth
    // (halves away from zero), = effective for search.
    let (mut growth_effective, mut growth_billed) = (0i64, 0i64);
    for r in &focus {
        assert_eq!(r["ChargeCategory"], "Usage");
        assert_eq!(r["BillingCurrency"], "USD");
        assert!(chrono::DateTime::parse_from_rfc3339(&r["ChargePeriodStart"]).is_ok(), "{r:?}");
        assert!(r["ChargePeriodStart"].ends_with("T00:00:00Z"));
        let effective = r["EffectiveCost"].parse::<Money>().unwrap().nanos();
        let billed = r["BilledCost"].parse::<Money>().unwrap().nanos();
        assert!(r["ListCost"].parse::<Money>().unwrap().nanos() >= effective);
        match r["x_Team"].as_str() {
            "growth" => {
                assert_eq!(billed, (effective * 115 + 50) / 100, "{r:?}");
                assert_eq!(r["x_RateCard"], "growth markup");
                growth_effective += effective;
                growth_billed += billed;
            }
            "search" => assert_eq!(billed, effective, "{r:?}"),
            other => panic!("unexpected team {other:?}"),
        }
    }
    assert!(growth_billed > growth_effective);
    // /api/v1/spend shows the billed amount beside the cost, each row priced
    // by its card: at the export's grain, the same total to the nano-dollar.
    let spend: Value = h
        .http
        .get(format!("{}/api/v1/spend", h.base))
        .query(&[("from", from.as_str()), ("group_by", "team,provider,model"), ("bucket", "day")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let billed_rows: i64 = spend["rows"].as_array().unwrap().iter().map(|r| nanos(&r["billed_usd"])).sum();
    assert_eq!(billed_rows, total("BilledCost"));
    assert_eq!(nanos(&spend["total_billed_usd"]), total("BilledCost"));
    let search_row = spend["rows"].as_array().unwrap().iter().find(|r| r["team"] == "search").unwrap();
    assert_eq!(search_row["billed_usd"], search_row["cost_usd"], "no card for search");
    // The seeded day's row: 270,000 × 1.15 = 310,500 nanos.
    let past = focus.iter().find(|r| r["ChargePeriodStart"].starts_with(&day(-2))).unwrap();
    assert_eq!((past["EffectiveCost"].as_str(), past["BilledCost"].as_str()), ("0.000270000", "0.000310500"));
    h.stop().await;
}

#[tokio::test]
async fn whatif_reprices_history_under_a_model_map() {
    let h = Harness::start().await;
    // Two seeded gpt-4o rows of 1,000 input and 200 output tokens:
    // 1,000 × 2,500 + 200 × 10,000 = 4,500,000 nanos each at $2.50 / $10 per
    // million. As gpt-4o-mini ($0.15 / $0.60): 1,000 × 150 + 200 × 600 =
    // 270,000 each. A gpt-4o-mini row the map does not touch keeps its
    // recorded 270,000.
    h.store
        .append(&[
            &past_row("w1", 2, "gpt-4o", 1_000, 200, 4_500_000),
            &past_row("w2", 1, "gpt-4o", 1_000, 200, 4_500_000),
            &past_row("w3", 1, "gpt-4o-mini", 1_000, 200, 270_000),
        ])
        .unwrap();
    let v: Value = h
        .http
        .get(format!("{}/api/v1/whatif", h.base))
        .query(&[("since", "3d"), ("map", "gpt-4o=gpt-4o-mini"), ("by", "model")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["before_usd"], "0.009270000", "{v:#}");
    assert_eq!(v["after_usd"], "0.000810000", "{v:#}");
    assert_eq!(v["rows_seen"], 3);
    assert_eq!(v["repriced"], 2);
    let r = h.http.get(format!("{}/api/v1/whatif", h.base)).query(&[("since", "3d")]).send().await.unwrap();
    assert_eq!(r.status(), 400, "no scenario is a clear error");
    h.stop().await;
}

/// The same request sequence to two gateways: one whose team budget blocks,
/// one whose same budget only shadows. The shadow gateway serves everything
/// and marks exactly the requests the blocking one refused.
#[tokio::test]
async fn a_shadow_budget_marks_exactly_what_the_same_budget_in_block_mode_refuses() {
    let budget = |action: &str| {
        format!(
            "[[budgets]]\nid = \"growth-day\"\nscope = {{ team = \"growth\" }}\nlimit_usd = \"0.002\"\nperiod = \"day\"\naction = \"{action}\"\n"
        )
    };
    let block = Harness::start_with(&budget("block"), |c| c).await;
    let shadow = Harness::start_with(&budget("shadow"), |c| c).await;
    // A mixed sequence, as the demo sends: small and large prompts, cheap and
    // dearer models, output caps that bound each reservation.
    let models = ["gpt-4o-mini", "gpt-4o", "gpt-4o-mini", "claude-haiku-4-5"];
    let sequence: Vec<Value> = (0..24)
        .map(|i| {
            let text = "tell me about budgets ".repeat(1 + (i % 5) * 8);
            json!({"model": models[i % 4], "max_tokens": 40 + (i % 3) * 30,
                   "messages": [{"role": "user", "content": format!("{i}: {text}")}]})
        })
        .collect();
    let (mut refused, mut marked) = (Vec::new(), Vec::new());
    for (i, body) in sequence.iter().enumerate() {
        let r = block.post("/v1/chat/completions").json(body).send().await.unwrap();
        let status = r.status().as_u16();
        let _ = r.bytes().await;
        assert!(status == 200 || status == 402, "{status}");
        if status == 402 {
            refused.push(i);
        }
        let r = shadow.post("/v1/chat/completions").json(body).send().await.unwrap();
        assert_eq!(r.status(), 200, "a shadow budget never refuses");
        let id = common::header(&r, "x-tollgate-request-id");
        let _ = r.bytes().await;
        let row = common::row_of(&shadow, &id).await;
        if let Some(ids) = row.attribution.tags.get("shadow_refused") {
            assert_eq!(ids, "growth-day");
            marked.push(i);
        }
    }
    assert!(!refused.is_empty() && refused.len() < sequence.len(), "the budget runs out part way: {refused:?}");
    assert_eq!(marked, refused, "the shadow budget marks what block refuses");
    // /api/v1/budgets shows what it would have refused this period.
    let v: Value =
        shadow.http.get(format!("{}/api/v1/budgets", shadow.base)).send().await.unwrap().json().await.unwrap();
    let b = v["budgets"].as_array().unwrap().iter().find(|b| b["id"] == "growth-day").unwrap();
    assert_eq!(b["action"], "shadow");
    assert_eq!(b["shadow"]["would_refuse_requests"], refused.len());
    // A request cannot mark itself.
    let r = shadow
        .post("/v1/chat/completions")
        .header("x-tollgate-tags", "shadow_refused=nobody")
        .json(&chat("gpt-4o-mini", "hi", false))
        .send()
        .await
        .unwrap();
    let id = common::header(&r, "x-tollgate-request-id");
    let _ = r.bytes().await;
    let row = common::row_of(&shadow, &id).await;
    assert_ne!(row.attribution.tags.get("shadow_refused").map(String::as_str), Some("nobody"));
    block.stop().await;
    shadow.stop().await;
}

/// Drift beyond `[reconcile]`'s tolerance goes to the alert webhooks, once
/// per drift: running again with the same drift sends nothing new.
#[tokio::test]
async fn drift_beyond_the_tolerance_is_posted_to_the_webhooks_once() {
    let (hook, got) = services::webhook().await;
    let h = Harness::start_with(&format!("[[alerts]]\nurl = \"{hook}\"\n"), |mut c| {
        for p in c.providers.iter_mut().filter(|p| p.name == "openai") {
            p.admin_key = Some(tollgate::config::Secret::new("admin-key".into()));
            p.billing_accounts = vec!["proj_tollgate".into()];
        }
        c.reconcile = Some(tollgate::config::ReconcileConfig {
            every: std::time::Duration::from_secs(86_400),
            since: chrono::Duration::days(1),
            tolerance_bp: 100,
            tolerance: Money::from_nanos(1),
            providers: vec!["openai".into()],
        });
        c
    })
    .await;
    send(&h, "/v1/chat/completions", chat("gpt-4o", "a question worth some tokens", false)).await;
    h.wait_rows(1).await;
    mock_billing(
        &h,
        json!({"price_adjustments": [{"family": "openai", "day": day(0), "model": "gpt-4o", "percent": "150"}]}),
    )
    .await;
    let report = run(&h, "openai", "1d").await;
    assert_eq!(report["drifting_lines"], 1);
    let mut alert = None;
    for _ in 0..100 {
        if let Some(a) = got.lock().unwrap().iter().find(|a| a["type"] == "reconciliation_drift").cloned() {
            alert = Some(a);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let alert = alert.expect("the drift is posted to the webhook");
    assert_eq!(alert["provider"], "openai");
    assert_eq!(alert["lines"][0]["model"], "gpt-4o");
    assert_eq!(alert["lines"][0]["drift_percent"], "-33.33");
    // The same drift again: no second alert.
    run(&h, "openai", "1d").await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let n = got.lock().unwrap().iter().filter(|a| a["type"] == "reconciliation_drift").count();
    assert_eq!(n, 1);
    h.stop().await;
}

/// The FinOps commands as a user runs them, on a database with seeded rows:
/// `report` bills beside the cost, `budgets simulate`, `export`, `whatif`.
#[test]
fn the_finops_commands_run_on_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("f.db");
    let config = dir.path().join("tollgate.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\nurl = \"sqlite://{}\"\n\n[[rate_cards]]\nname = \"growth markup\"\nwhen = {{ team = \"growth\" }}\nmarkup_percent = \"15\"\n",
            db.display()
        ),
    )
    .unwrap();
    {
        let store = tollgate::store::sqlite::SqliteStore::open(&format!("sqlite://{}", db.display())).unwrap();
        let mut search = past_row("c3", 1, "gpt-4o-mini", 1_000, 200, 270_000);
        search.attribution.tags.insert("team".into(), "search".into());
        store
            .append(&[
                &past_row("c1", 2, "gpt-4o-mini", 1_000, 200, 270_000),
                &past_row("c2", 1, "gpt-4o", 1_000, 200, 4_500_000),
                &search,
            ])
            .unwrap();
    }
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .arg("--config")
            .arg(&config)
            .args(args)
            .env("TOLLGATE_LOG", "warn")
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    // growth: 270,000 + 4,500,000 = 4,770,000 nanos, billed × 1.15 =
    // 5,485,500; search: 270,000, no card.
    let csv = run(&["report", "--by", "team", "--since", "7d", "--format", "csv"]);
    let head: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let billed = head.iter().position(|c| *c == "billed_usd").expect("a billed_usd column");
    let growth: Vec<&str> = csv.lines().find(|l| l.starts_with("growth,")).unwrap().split(',').collect();
    assert_eq!(growth[billed], "0.005485500");
    let search: Vec<&str> = csv.lines().find(|l| l.starts_with("search,")).unwrap().split(',').collect();
    assert_eq!(search[billed], "0.000270000");
    // A $0.001 daily budget on growth: 270,000 fits two days ago; yesterday's
    // 4,500,000 does not (refused, nothing booked).
    let sim: Value = serde_json::from_str(&run(&[
        "budgets",
        "simulate",
        "--scope",
        "team=growth",
        "--limit",
        "0.001",
        "--period",
        "day",
        "--since",
        "7d",
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!((sim["rows_covered"].as_u64(), sim["refused_requests"].as_u64()), (Some(2), Some(1)));
    assert_eq!(sim["refused_usd"], "0.004500000");
    // The FOCUS file: effective 5,040,000 in all; billed 5,485,500 + 270,000.
    let out = dir.path().join("focus.csv");
    run(&["export", "--format", "focus", "--since", &day(-7), "--by", "team", "--output", out.to_str().unwrap()]);
    let focus = parse_csv(&std::fs::read_to_string(&out).unwrap());
    let sum = |col: &str| focus.iter().map(|r| r[col].parse::<Money>().unwrap().nanos()).sum::<i64>();
    assert_eq!((sum("EffectiveCost"), sum("BilledCost")), (5_040_000, 5_755_500));
    // What-if: gpt-4o → gpt-4o-mini turns 4,500,000 into 270,000.
    let w: Value =
        serde_json::from_str(&run(&["whatif", "--since", "7d", "--map", "gpt-4o=gpt-4o-mini", "--format", "json"]))
            .unwrap();
    assert_eq!((w["before_usd"].as_str(), w["after_usd"].as_str()), (Some("0.005040000"), Some("0.000810000")));
}

/// The demo's own traffic (its generator's requests, in its seeded order)
/// fed to two gateways: one whose `env=prod` day budget blocks, one whose
/// same budget only shadows. Row by row, in order, the shadow marks exactly
/// the requests the blocking gateway refused.
#[tokio::test]
async fn under_the_demos_traffic_the_shadow_budget_marks_what_block_refuses() {
    let budget = |action: &str| {
        format!(
            "[[budgets]]\nid = \"prod-day\"\nscope = {{ env = \"prod\" }}\nlimit_usd = \"0.05\"\nperiod = \"day\"\naction = \"{action}\"\n"
        )
    };
    let block = Harness::start_with(&budget("block"), |c| c).await;
    let shadow = Harness::start_with(&budget("shadow"), |c| c).await;
    let mut outcomes = Vec::new();
    for (h, marked) in [(&block, false), (&shadow, true)] {
        let mut keys = Vec::new();
        for team in ["growth", "search", "support", "platform"] {
            keys.push((team.to_owned(), h.add_key(&format!("{team}-service"), Some(team)).await));
        }
        let sent = tollgate::demo::send_demo_sample(&h.base, &keys, 60).await;
        let mut rows = h.wait_rows(usize::try_from(sent).unwrap()).await;
        assert_eq!(rows.len() as u64, sent, "one row per request");
        rows.sort_by(|a, b| (a.time_ms, &a.request_id).cmp(&(b.time_ms, &b.request_id)));
        let flags: Vec<bool> = rows
            .iter()
            .map(|r| {
                if marked {
                    r.attribution.tags.get("shadow_refused").is_some_and(|ids| ids == "prod-day")
                } else {
                    r.error_code.as_deref() == Some("budget_exceeded")
                }
            })
            .collect();
        outcomes.push(flags);
    }
    let (refused, marked) = (&outcomes[0], &outcomes[1]);
    let n = refused.iter().filter(|f| **f).count();
    assert!(n > 0 && n < refused.len(), "the budget runs out part way: {n} of {}", refused.len());
    eprintln!("demo traffic: {} requests, {n} refused by block, the same {n} marked by the shadow", refused.len());
    assert_eq!(marked, refused, "the shadow marks, in order, exactly what block refused");
    block.stop().await;
    shadow.stop().await;
}
