//! The monitoring files in `deploy/` use only metrics the gateway exports:
//! every metric name in the Grafana dashboard's queries
//! (`deploy/grafana/tollgate.json`), in the Prometheus alerting rules
//! (`deploy/prometheus/tollgate-rules.yml`) and in the input series of their
//! unit tests (`tollgate-rules.test.yml`) must be a family in `GET /metrics`
//! of a gateway that has served some traffic (or `up`, which Prometheus
//! itself writes for every scrape). A misspelt or removed metric fails here
//! rather than as an empty panel or an alert that can never fire.
//!
//! The traffic makes every conditional family appear: budget gauges (a
//! budget exists), time to first token (a stream), a response-cache hit, a
//! fallback to another provider, an upstream error. Its counts are checked
//! against the ledger too. `promtool check rules` / `promtool test rules`
//! (run by `.ci/run`) check the rules' syntax and behaviour.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use common::{chat, Harness};
use serde_json::{json, Value};
use tollgate::attribution::Attribution;
use tollgate::config::Config;
use tollgate::ledger::{CacheOutcome, Endpoint, LedgerRow, UsageSource};
use tollgate::observe::metrics::{Extra, Metrics};
use tollgate::record::AttemptRecord;
use tollgate_units::{Money, Usage};

/// Written by Prometheus for each scrape, not by the gateway.
const SCRAPE_METRICS: [&str; 1] = ["up"];

fn deploy_file(rel: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy").join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// PromQL words that are not metric names (aggregations, operators, modifiers).
const KEYWORDS: &str = "sum min max avg count stddev stdvar topk bottomk quantile count_values group \
                        bool and or unless offset atan2 inf nan";
/// Keywords followed by a list of label names: `by (le, model)`.
const LABEL_LISTS: [&str; 6] = ["by", "without", "on", "ignoring", "group_left", "group_right"];

/// The metric names a PromQL expression selects: identifiers that are not
/// functions (followed by `(`), keywords, label names (inside `{…}` or a
/// `by (…)` list), strings, durations, numbers or Grafana variables (`$x`).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let b = expr.as_bytes();
    let mut out = BTreeSet::new();
    let mut i = 0;
    // Skips from an opening byte to its closer, over quoted strings.
    let skip_to = |mut i: usize, close: u8| -> usize {
        while i < b.len() && b[i] != close {
            if matches!(b[i], b'"' | b'\'' | b'`') {
                let q = b[i];
                i += 1;
                while i < b.len() && b[i] != q {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
            }
            i += 1;
        }
        assert!(i < b.len(), "unbalanced {:?} in {expr:?}", close as char);
        i + 1
    };
    let word_byte = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' | b'\'' | b'`' => {
                i += 1;
                while i < b.len() && b[i] != c {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'{' => i = skip_to(i + 1, b'}'),
            b'[' => i = skip_to(i + 1, b']'),
            b'$' => {
                i += 1;
                if b.get(i) == Some(&b'{') {
                    i = skip_to(i + 1, b'}');
                } else {
                    while i < b.len() && word_byte(b[i]) {
                        i += 1;
                    }
                }
            }
            _ if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) => {
                // A number or a duration (`0.95`, `1e6`, `1d`).
                while i < b.len() && (word_byte(b[i]) || b[i] == b'.') {
                    i += 1;
                }
            }
            _ if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {
                let start = i;
                while i < b.len() && word_byte(b[i]) {
                    i += 1;
                }
                let word = &expr[start..i];
                let rest = expr[i..].trim_start();
                if LABEL_LISTS.contains(&word) {
                    if rest.starts_with('(') {
                        let open = expr.len() - rest.len();
                        i = skip_to(open + 1, b')');
                    }
                } else if !KEYWORDS.split_whitespace().any(|k| k == word) && !rest.starts_with('(') {
                    out.insert(word.to_string());
                }
            }
            _ => i += 1,
        }
    }
    out
}

/// Every `expr` in the dashboard (panel targets, rows included) and the
/// PromQL inside its query variables.
fn dashboard_exprs(dashboard: &Value) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(e)) = m.get("expr") {
                    out.push(e.clone());
                }
                for (k, x) in m {
                    if k != "templating" {
                        walk(x, out);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(dashboard, &mut out);
    for var in dashboard["templating"]["list"].as_array().unwrap() {
        if var["type"] != "query" {
            continue;
        }
        let q = match &var["query"] {
            Value::String(s) => s.as_str(),
            v => v["query"].as_str().unwrap(),
        };
        assert_eq!(var["definition"].as_str(), Some(q), "variable {}: definition and query differ", var["name"]);
        let q = q.trim();
        let inner = if let Some(args) = q.strip_prefix("label_values(").and_then(|a| a.strip_suffix(')')) {
            // label_values(SELECTOR, label) or label_values(label).
            match args.rsplit_once(',') {
                Some((selector, _label)) => selector,
                None => continue,
            }
        } else if let Some(e) = q.strip_prefix("query_result(").and_then(|a| a.strip_suffix(')')) {
            e
        } else {
            panic!("variable {}: a query form this test does not read: {q}", var["name"]);
        };
        out.push(inner.to_string());
    }
    out
}

fn unquote(v: &str) -> String {
    if let Some(s) = v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
        s.replace("''", "'")
    } else if let Some(s) = v.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        s.replace("\\\"", "\"").replace("\\\\", "\\")
    } else {
        v.to_string()
    }
}

/// The values of `key:` in a YAML file, read as text: plain or quoted on
/// the key's line, or a `|` / `>` block on the lines indented below it.
fn yaml_values(text: &str, key: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let prefix = format!("{key}:");
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        let body = trimmed.strip_prefix("- ").unwrap_or(trimmed);
        let indent = line.len() - body.len();
        i += 1;
        let Some(value) = body.strip_prefix(&prefix) else { continue };
        let value = value.trim();
        if value.starts_with('|') || value.starts_with('>') {
            let mut block = Vec::new();
            while i < lines.len() {
                let l = lines[i];
                if !l.trim().is_empty() && l.len() - l.trim_start().len() <= indent {
                    break;
                }
                block.push(l.trim());
                i += 1;
            }
            out.push(block.join("\n").trim().to_string());
        } else {
            out.push(unquote(value));
        }
    }
    assert!(out.iter().all(|v| !v.is_empty()), "an empty {key}: {out:?}");
    out
}

/// `family → type` from the `# TYPE` lines.
fn families(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let (name, kind) = l.split_once(' ').unwrap();
            (name.to_string(), kind.to_string())
        })
        .collect()
}

/// A name a query may use: a family, a histogram's `_bucket`, `_sum` or
/// `_count`, or a metric Prometheus writes itself.
fn exported(families: &BTreeMap<String, String>, name: &str) -> bool {
    SCRAPE_METRICS.contains(&name)
        || families.contains_key(name)
        || ["_bucket", "_sum", "_count"]
            .iter()
            .any(|s| name.strip_suffix(s).is_some_and(|base| families.get(base).is_some_and(|k| k == "histogram")))
}

/// `series → value` of the sample lines.
fn samples(text: &str) -> BTreeMap<&str, &str> {
    text.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.rsplit_once(' ')).collect()
}

async fn set_fault(http: &reqwest::Client, mock: &str, fault: Option<&str>) {
    let r = http.post(format!("{mock}/mock/fault")).json(&json!({ "fault": fault })).send().await.unwrap();
    assert!(r.status().is_success());
}

fn deterministic(model: &str, text: &str) -> Value {
    let mut b = chat(model, text, false);
    b["temperature"] = json!(0);
    b
}

#[test]
fn metric_names_are_read_from_promql() {
    let e = r#"histogram_quantile(0.95, sum by (le, model) (rate(a_bucket{job=~"$job", x="y}"}[$__rate_interval])))
        / on (instance) group_left (team) b:recorded
        > 2 * sum without (instance) (rate(c_total[1h] offset 1d)) and absent(up{job="tollgate"}) or vector(1e3) unless ${DS}"#;
    let names: Vec<String> = metric_names(e).into_iter().collect();
    assert_eq!(names, ["a_bucket", "b:recorded", "c_total", "up"]);
    let yaml = "groups:\n  - rules:\n      - expr: 'x > 1'\n      - expr: |\n          y\n            and z\n        for: 1m\n";
    assert_eq!(yaml_values(yaml, "expr"), ["x > 1", "y\nand z"]);
}

fn row(model: &str, team: Option<&str>, attempts: &[(&str, u64)], latency_ms: u64) -> LedgerRow {
    let mut attribution = Attribution::default();
    if let Some(t) = team {
        attribution.tags.insert("team".into(), t.into());
    }
    LedgerRow {
        request_id: "r".into(),
        time_ms: 0,
        key_id: None,
        endpoint: Endpoint::ChatCompletions,
        requested_model: Some(model.into()),
        model: Some(model.into()),
        provider: Some("openai".into()),
        status: 200,
        error_code: None,
        usage: Usage { input: 10, output: 5, ..Usage::default() },
        usage_source: UsageSource::Provider,
        cost: Some(Money::from_nanos(1_500)),
        cache_savings: Money::ZERO,
        response_cache_savings: Money::ZERO,
        tool_cost: Money::ZERO,
        provider_cost: None,
        streamed: false,
        client_disconnected: false,
        cache: CacheOutcome::Off,
        latency_ms,
        ttft_ms: None,
        attempts: attempts.len() as u32,
        prefix_hash: None,
        attempt_log: attempts
            .iter()
            .map(|(m, ms)| AttemptRecord {
                provider: "openai".into(),
                model: (*m).into(),
                status: Some(200),
                error: None,
                latency_ms: *ms,
            })
            .collect(),
        attribution,
    }
}

/// The series added for the dashboard, on rows made by hand: a team is a
/// label only when the configuration names it; a fallback is a move to
/// another target (a retry of the same one is not); the gateway's overhead
/// is observed for non-streamed answers only.
#[test]
fn team_fallback_and_overhead_series_follow_their_rules() {
    let text = r#"
[[providers]]
name = "openai"
kind = "openai"
base_url = "http://127.0.0.1:9/v1"

[[budgets]]
scope = { team = "growth" }
limit_usd = "10"
period = "month"
"#;
    let config = Config::from_toml(text, "t.toml", &std::collections::HashMap::<String, String>::new()).unwrap();
    let m = Metrics::new(Some(&config));
    let before = m.render(&Extra::default());
    for line in [
        "tollgate_team_cost_usd_total{team=\"growth\"} 0.000000000",
        "tollgate_fallback_requests_total{provider=\"openai\"} 0",
        "tollgate_gateway_overhead_seconds_bucket{le=\"+Inf\"} 0",
        "tollgate_gateway_overhead_seconds_count 0",
    ] {
        assert!(before.lines().any(|l| l == line), "{line} in:\n{before}");
    }

    // A fallback from gpt-4o to gpt-4o-mini, 3 ms of overhead (120 − 40 − 77).
    m.record(&row("gpt-4o-mini", Some("growth"), &[("gpt-4o", 40), ("gpt-4o-mini", 77)], 120));
    // A retry of the same target, streamed, a team the config does not name.
    let mut r = row("gpt-4o-mini", Some("someone-else"), &[("gpt-4o-mini", 50), ("gpt-4o-mini", 70)], 900);
    r.streamed = true;
    r.response_cache_savings = Money::from_nanos(2_000);
    m.record(&r);
    // No team tag, no upstream call.
    m.record(&row("gpt-4o-mini", None, &[], 2));

    let text = m.render(&Extra::default());
    let l = "provider=\"openai\",model=\"gpt-4o-mini\"";
    for line in [
        "tollgate_team_cost_usd_total{team=\"growth\"} 0.000001500".to_string(),
        "tollgate_team_cost_usd_total{team=\"other\"} 0.000001500".to_string(),
        "tollgate_team_cost_usd_total{team=\"none\"} 0.000001500".to_string(),
        "tollgate_fallback_requests_total{provider=\"openai\"} 1".to_string(),
        "tollgate_gateway_overhead_seconds_bucket{le=\"0.002\"} 0".to_string(),
        "tollgate_gateway_overhead_seconds_bucket{le=\"0.005\"} 1".to_string(),
        "tollgate_gateway_overhead_seconds_bucket{le=\"+Inf\"} 1".to_string(),
        "tollgate_gateway_overhead_seconds_sum 0.003".to_string(),
        "tollgate_gateway_overhead_seconds_count 1".to_string(),
        format!("tollgate_response_cache_savings_usd_total{{{l}}} 0.000002000"),
    ] {
        assert!(text.lines().any(|x| x == line), "{line} in:\n{text}");
    }
    assert!(!text.contains("someone-else"), "an unconfigured team became a label");
}

#[tokio::test]
async fn every_metric_the_dashboard_and_the_alerts_use_is_exported() {
    let b = common::start_mock().await;
    let extra = format!(
        r#"
[[providers]]
name = "backup"
kind = "openai"
base_url = "http://{b}/v1"
max_retries = 0

[[models]]
name = "duo"
targets = [{{ provider = "openai", model = "gpt-4o-mini" }}]
fallbacks = ["spare"]

[[models]]
name = "spare"
targets = [{{ provider = "backup", model = "gpt-4o-mini" }}]

[[budgets]]
scope = {{ team = "growth" }}
limit_usd = "100"
period = "month"
"#
    );
    let h = Harness::start_with(&extra, |c| c).await;

    // A cache miss then a hit, a stream, then with the first mock failing:
    // a fallback to the second, and an upstream error.
    for _ in 0..2 {
        let r = h.post("/v1/chat/completions").json(&deterministic("gpt-4o-mini", "cache me")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let _ = r.bytes().await.unwrap();
    }
    let r = h.post("/v1/chat/completions").json(&chat("gpt-4o-mini", "stream me", true)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let _ = r.text().await.unwrap();
    set_fault(&h.http, &h.mock, Some("500")).await;
    let r = h.post("/v1/chat/completions").json(&chat("duo", "fall back", false)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let _ = r.bytes().await.unwrap();
    let r = h.post("/v1/chat/completions").json(&chat("gpt-4o-mini", "fail", false)).send().await.unwrap();
    assert_eq!(r.status(), 502);
    let _ = r.bytes().await.unwrap();
    set_fault(&h.http, &h.mock, None).await;

    let rows = h.wait_rows(5).await;
    assert_eq!(rows.len(), 5);
    let text = h.http.get(format!("{}/metrics", h.base)).send().await.unwrap().text().await.unwrap();
    let fams = families(&text);
    let m = samples(&text);

    // The series the dashboard's panels are about, against the ledger.
    let money = |series: &str| m.get(series).map(|v| v.parse::<Money>().unwrap());
    let cost: Money = rows.iter().filter_map(|r| r.cost).sum();
    let growth = money("tollgate_team_cost_usd_total{team=\"growth\"}");
    assert_eq!(growth, Some(cost), "the harness key's team is growth: {text}");
    let hit = rows.iter().find(|r| r.cache == "hit").expect("a cache hit");
    assert!(hit.response_cache_savings > Money::ZERO);
    let saved: Money = m
        .iter()
        .filter(|(k, _)| k.starts_with("tollgate_response_cache_savings_usd_total{"))
        .map(|(_, v)| v.parse::<Money>().unwrap())
        .sum();
    assert_eq!(saved, hit.response_cache_savings);
    let fell_back = rows.iter().find(|r| r.requested_model.as_deref() == Some("duo")).unwrap();
    assert_eq!(fell_back.provider.as_deref(), Some("backup"), "{:?}", fell_back.attempt_log);
    assert_eq!(m.get("tollgate_fallback_requests_total{provider=\"openai\"}"), Some(&"1"), "{text}");
    assert_eq!(m.get("tollgate_fallback_requests_total{provider=\"backup\"}"), Some(&"0"));
    let answered = rows.iter().filter(|r| r.status < 400 && !r.streamed && !r.attempt_log.is_empty()).count();
    assert_eq!(answered, 2, "the cache miss and the fallback");
    assert_eq!(m.get("tollgate_gateway_overhead_seconds_count"), Some(&answered.to_string().as_str()));
    assert_eq!(m.get("tollgate_gateway_overhead_seconds_bucket{le=\"+Inf\"}"), Some(&answered.to_string().as_str()));
    assert!(m.contains_key("tollgate_budget_utilisation_ratio{budget=\"cfg:team=growth/month\"}"), "{text}");
    assert!(m.contains_key("tollgate_errors_total{code=\"upstream_error\",provider=\"openai\"}"), "{text}");

    // Every metric name the deploy files use is exported.
    let dashboard: Value = serde_json::from_str(&deploy_file("grafana/tollgate.json")).expect("the dashboard is JSON");
    let rules = deploy_file("prometheus/tollgate-rules.yml");
    let rule_tests = deploy_file("prometheus/tollgate-rules.test.yml");
    let dashboard_exprs = dashboard_exprs(&dashboard);
    let rule_exprs = yaml_values(&rules, "expr");
    assert_eq!(rule_exprs.len(), rules.lines().filter(|l| l.trim_start().starts_with("- alert:")).count());
    let test_series = yaml_values(&rule_tests, "series");
    assert!(dashboard_exprs.len() >= 20 && !test_series.is_empty());

    let mut used: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    for (source, exprs) in [("dashboard", &dashboard_exprs), ("rules", &rule_exprs), ("rule tests", &test_series)] {
        for e in exprs {
            let names = metric_names(e);
            assert!(!names.is_empty(), "{source}: no metric in {e:?}");
            for n in names {
                used.entry(n).or_default().insert(source);
            }
        }
    }
    let missing: Vec<String> = used
        .iter()
        .filter(|(n, _)| !exported(&fams, n))
        .map(|(n, sources)| format!("{n} (in the {})", sources.iter().copied().collect::<Vec<_>>().join(", ")))
        .collect();
    assert!(
        missing.is_empty(),
        "metrics used in deploy/ that /metrics does not export: {missing:?}\nexported: {:?}",
        fams.keys().collect::<Vec<_>>()
    );

    // What the issue asks the dashboard and the alerts to show.
    let dash_names: BTreeSet<String> = dashboard_exprs.iter().flat_map(|e| metric_names(e)).collect();
    for n in [
        "tollgate_team_cost_usd_total",
        "tollgate_cost_usd_total",
        "tollgate_budget_utilisation_ratio",
        "tollgate_errors_total",
        "tollgate_fallback_requests_total",
        "tollgate_gateway_overhead_seconds_bucket",
        "tollgate_cache_savings_usd_total",
        "tollgate_response_cache_savings_usd_total",
        "tollgate_ledger_spool_backlog_bytes",
    ] {
        assert!(dash_names.contains(n), "the dashboard does not chart {n}");
    }
    let rule_names: BTreeSet<String> = rule_exprs.iter().flat_map(|e| metric_names(e)).collect();
    for n in [
        "up",
        "tollgate_budget_utilisation_ratio",
        "tollgate_cost_usd_total",
        "tollgate_errors_total",
        "tollgate_ledger_spool_backlog_bytes",
    ] {
        assert!(rule_names.contains(n), "no alert on {n}");
    }
    h.stop().await;
}
