//! Reconciliation against the providers' own numbers: reads what a provider
//! says it billed (OpenAI's organization Costs and Usage APIs, Anthropic's
//! cost and usage report APIs, with the provider's admin key), reads the
//! ledger's spend for the same provider over the same whole UTC days, and
//! matches the two ([`crate::reconciliation::reconcile`]).
//!
//! Wire formats read here:
//! - OpenAI `GET {base_url}/organization/costs?start_time=S&end_time=E&bucket_width=1d&group_by=project_id&group_by=line_item&limit=N[&page=P]`:
//!   daily buckets of `{"amount":{"value":NUMBER,"currency":"usd"},"project_id","line_item"}`;
//!   a line item is `"<model>, <kind>"` (input, cached input, output…).
//!   `GET {base_url}/organization/usage/completions?…&group_by=project_id&group_by=model&group_by=batch`:
//!   `input_tokens` (cached included), `input_cached_tokens`, `output_tokens`,
//!   `num_model_requests`, `project_id`, `model`, `batch`; and
//!   `…/organization/usage/embeddings` (grouped by `project_id`, `model`).
//!   A line item without a model ("web search tool calls") is a tool charge.
//! - Anthropic `GET {base_url}/v1/organizations/cost_report?starting_at=T&ending_at=T&group_by[]=workspace_id&group_by[]=description`:
//!   `{"amount":"<decimal string, in cents>","currency":"USD","workspace_id","model","cost_type","service_tier"}`;
//!   `GET {base_url}/v1/organizations/usage_report/messages?…&bucket_width=1d&group_by[]=workspace_id&group_by[]=model&group_by[]=service_tier`:
//!   `uncached_input_tokens`, `cache_creation.ephemeral_{5m,1h}_input_tokens`,
//!   `cache_read_input_tokens`, `output_tokens`, `workspace_id`, `model`, `service_tier`.
//!
//! Both page with `has_more` / `next_page` (passed back as `page`).
//! Amounts are read from their decimal text (never through a float).

use std::time::Duration;

use serde_json::Value;
use tollgate_providers::ProviderKind;
use tollgate_units::Money;

use crate::config::{kind_name, Provider, ReconcileConfig, Secret, Webhook};
use crate::pricing::Pricing;
use crate::query::{Bucket, SpendQuery};
use crate::reconciliation::{self, CostLine, GatewayLine, LineKind, ProviderReport, ReconLine, UsageLine};
use crate::store::{Reports, StoreError, Stores};

const DAY_MS: i64 = 86_400_000;
/// Buckets asked for per page (OpenAI's usage API takes at most 31 daily buckets).
const PAGE_BUCKETS: u32 = 31;
/// Pages read at most for one report (a year of daily buckets is 12).
const MAX_PAGES: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("provider {0:?} is not in [[providers]]")]
    UnknownProvider(String),
    #[error(
        "provider {0:?} is of kind {1}: only openai and anthropic providers publish cost reports tollgate can read"
    )]
    Unsupported(String, &'static str),
    #[error("provider {provider:?}: {reason} (set admin_key_env to the environment variable holding an organization admin key)")]
    NoAdminKey { provider: String, reason: String },
    #[error("provider {provider:?}: {what} answered HTTP {status}: {message}")]
    Refused { provider: String, what: &'static str, status: u16, message: String },
    #[error("provider {provider:?}: cannot reach {what} ({reason})")]
    Unreachable { provider: String, what: &'static str, reason: &'static str },
    #[error("provider {provider:?}: {what} sent an answer tollgate cannot read: {detail}")]
    Malformed { provider: String, what: &'static str, detail: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Whole UTC days: from the start of `since_ms`'s day to the end of `until_ms`'s day.
pub fn whole_days(since_ms: i64, until_ms: i64) -> (i64, i64) {
    let from = since_ms.div_euclid(DAY_MS) * DAY_MS;
    let to = (until_ms.div_euclid(DAY_MS) + 1) * DAY_MS;
    (from, to)
}

/// `YYYY-MM-DD` of a UTC time in milliseconds.
pub fn day_text(ms: i64) -> String {
    crate::pricing::day_of(ms).format("%Y-%m-%d").to_string()
}

/// The admin key of a provider, from the environment variable it names.
pub fn admin_key(provider: &Provider) -> Result<Secret, ReconcileError> {
    match (&provider.admin_key, &provider.admin_key_env) {
        (Some(k), _) => Ok(k.clone()),
        (None, Some(var)) => Err(ReconcileError::NoAdminKey {
            provider: provider.name.clone(),
            reason: format!("environment variable {var} (admin_key_env) is not set"),
        }),
        (None, None) => {
            Err(ReconcileError::NoAdminKey { provider: provider.name.clone(), reason: "no admin_key_env".into() })
        }
    }
}

/// Reconciles one provider over `[from_ms, to_ms)` (whole UTC days): its
/// reports against the ledger, with model names made canonical on both sides.
pub async fn reconcile_provider(
    http: &reqwest::Client,
    reports: &dyn Reports,
    pricing: &Pricing,
    provider: &Provider,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<ReconLine>, ReconcileError> {
    let key = admin_key(provider)?;
    let mut report = fetch_report(http, provider, &key, from_ms, to_ms).await?;
    let canon = |model: &str, day: &str| {
        let at = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(12, 0, 0))
            .map_or(from_ms, |t| t.and_utc().timestamp_millis());
        pricing.canonical_model(provider, model, at)
    };
    for c in report.costs.iter_mut().filter(|c| c.model != reconciliation::TOOLS) {
        c.model = canon(&c.model, &c.day);
    }
    for u in &mut report.usage {
        u.model = canon(&u.model, &u.day);
    }
    let gateway = gateway_lines(reports, pricing, provider, from_ms, to_ms).await?;
    Ok(reconciliation::reconcile(&provider.name, &report, &gateway, &provider.billing_accounts))
}

/// Reconciles one provider over the whole UTC days from `since_ms` to
/// `until_ms`, saves the lines (replacing those days' earlier lines), and
/// posts the lines whose drift is beyond `[reconcile]`'s tolerance and
/// changed since the last run to the alert webhooks. Returns the lines.
#[allow(clippy::too_many_arguments)]
pub async fn run_and_save(
    http: &reqwest::Client,
    stores: &Stores,
    pricing: &Pricing,
    provider: &Provider,
    since_ms: i64,
    until_ms: i64,
    alerting: Option<(&ReconcileConfig, &[Webhook])>,
    now_ms: i64,
) -> Result<Vec<ReconLine>, ReconcileError> {
    let (from_ms, to_ms) = whole_days(since_ms, until_ms);
    let (from_day, to_day) = (day_text(from_ms), day_text(to_ms - 1));
    let mut lines = reconcile_provider(http, stores.reports.as_ref(), pricing, provider, from_ms, to_ms).await?;
    for l in &mut lines {
        l.reconciled_ms = now_ms;
    }
    let before =
        stores.reconciliation.reconciliation(Some(provider.name.clone()), from_day.clone(), to_day.clone()).await?;
    stores.reconciliation.save_reconciliation(provider.name.clone(), from_day, to_day, lines.clone(), now_ms).await?;
    if let Some((tolerance, hooks)) = alerting {
        let news: Vec<&ReconLine> = lines
            .iter()
            .filter(|l| l.kind == LineKind::Matched && tolerance.beyond(l))
            .filter(|l| {
                !before
                    .iter()
                    .any(|b| b.kind == l.kind && b.day == l.day && b.model == l.model && b.drift() == l.drift())
            })
            .collect();
        if !news.is_empty() {
            let message = format!(
                "tollgate: reconciliation of {} found {} line(s) where the ledger and the provider's report differ beyond the tolerance; the largest: {} {} drift ${}",
                provider.name,
                news.len(),
                news[0].day,
                news[0].model,
                news[0].drift()
            );
            tracing::warn!(provider = %provider.name, lines = news.len(), "{message}");
            for hook in hooks {
                let payload = if hook.slack {
                    serde_json::json!({ "text": message })
                } else {
                    serde_json::json!({
                        "type": "reconciliation_drift",
                        "provider": provider.name,
                        "message": message,
                        "lines": news.iter().map(|l| reconciliation::line_json(l)).collect::<Vec<_>>(),
                    })
                };
                tokio::spawn(crate::govern::alerts::post_with_retries(http.clone(), hook.clone(), payload));
            }
        }
    }
    Ok(lines)
}

/// The ledger's spend for one provider, per UTC day × canonical model.
pub async fn gateway_lines(
    reports: &dyn Reports,
    pricing: &Pricing,
    provider: &Provider,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<GatewayLine>, StoreError> {
    let report = reports
        .spend(SpendQuery {
            group_by: vec!["model".into()],
            from_ms: Some(from_ms),
            to_ms: Some(to_ms),
            bucket: Some(Bucket::Day),
            filters: vec![("provider".into(), provider.name.clone())],
        })
        .await?;
    let mut lines = Vec::with_capacity(report.rows.len());
    for r in report.rows {
        let day_ms = r.bucket_ms.unwrap_or(from_ms);
        let model = r.dims.first().cloned().flatten().unwrap_or_default();
        // Providers bill server-side tool calls (web search) and request
        // fees on lines of their own, without a model: so does the ledger here.
        if !r.tool_cost.is_zero() {
            lines.push(GatewayLine {
                day: day_text(day_ms),
                model: reconciliation::TOOLS.to_owned(),
                cost: r.tool_cost,
                ..GatewayLine::default()
            });
        }
        lines.push(GatewayLine {
            day: day_text(day_ms),
            model: pricing.canonical_model(provider, &model, day_ms + DAY_MS / 2),
            cost: Money::from_nanos(r.cost.nanos().saturating_sub(r.tool_cost.nanos())),
            input_tokens: r.input_tokens,
            cache_read_tokens: r.cache_read_tokens,
            output_tokens: r.output_tokens,
            // Failed requests are not billed: the provider does not count them.
            requests: r.requests.saturating_sub(r.error_requests),
            estimated_requests: r.estimated_requests,
            unpriced_requests: r.unpriced_requests,
        });
    }
    Ok(lines)
}

/// Reads the provider's cost and usage reports over `[from_ms, to_ms)`.
pub async fn fetch_report(
    http: &reqwest::Client,
    provider: &Provider,
    admin_key: &Secret,
    from_ms: i64,
    to_ms: i64,
) -> Result<ProviderReport, ReconcileError> {
    let reader = Reader { http, provider, admin_key };
    match provider.kind {
        ProviderKind::OpenAi => reader.openai(from_ms, to_ms).await,
        ProviderKind::Anthropic => reader.anthropic(from_ms, to_ms).await,
        kind => Err(ReconcileError::Unsupported(provider.name.clone(), kind_name(kind))),
    }
}

struct Reader<'a> {
    http: &'a reqwest::Client,
    provider: &'a Provider,
    admin_key: &'a Secret,
}

impl Reader<'_> {
    fn malformed(&self, what: &'static str, detail: impl Into<String>) -> ReconcileError {
        ReconcileError::Malformed { provider: self.provider.name.clone(), what, detail: detail.into() }
    }

    /// Every page of one report: each page's `data` buckets, in order.
    async fn pages(
        &self,
        what: &'static str,
        url: &str,
        query: &[(&str, String)],
    ) -> Result<Vec<Value>, ReconcileError> {
        let mut buckets = Vec::new();
        let mut page: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut req = self.http.get(url).query(query).timeout(Duration::from_secs(60));
            if let Some(p) = &page {
                req = req.query(&[("page", p)]);
            }
            req = match self.provider.kind {
                ProviderKind::Anthropic => {
                    req.header("x-api-key", self.admin_key.expose()).header("anthropic-version", "2023-06-01")
                }
                _ => req.bearer_auth(self.admin_key.expose()),
            };
            let resp = req.send().await.map_err(|e| ReconcileError::Unreachable {
                provider: self.provider.name.clone(),
                what,
                reason: if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "connection failed"
                } else {
                    "request failed"
                },
            })?;
            let status = resp.status();
            let body: Value = resp.json().await.map_err(|_| self.malformed(what, "not JSON"))?;
            if !status.is_success() {
                let message = body["error"]["message"].as_str().unwrap_or("no message").chars().take(300).collect();
                return Err(ReconcileError::Refused {
                    provider: self.provider.name.clone(),
                    what,
                    status: status.as_u16(),
                    message,
                });
            }
            let data = body["data"].as_array().ok_or_else(|| self.malformed(what, "no data array"))?;
            buckets.extend(data.iter().cloned());
            match (body["has_more"].as_bool(), body["next_page"].as_str()) {
                (Some(true), Some(next)) => page = Some(next.to_owned()),
                (Some(true), None) => return Err(self.malformed(what, "has_more without next_page")),
                _ => return Ok(buckets),
            }
        }
        Err(self.malformed(what, format!("more than {MAX_PAGES} pages")))
    }

    async fn openai(&self, from_ms: i64, to_ms: i64) -> Result<ProviderReport, ReconcileError> {
        let base = self.provider.base_url.trim_end_matches('/');
        let window = [
            ("start_time", (from_ms / 1000).to_string()),
            ("end_time", (to_ms / 1000).to_string()),
            ("bucket_width", "1d".to_owned()),
            ("limit", PAGE_BUCKETS.to_string()),
        ];
        let mut q: Vec<(&str, String)> = window.to_vec();
        q.push(("group_by", "project_id".into()));
        q.push(("group_by", "line_item".into()));
        let mut report = ProviderReport::default();
        const COSTS: &str = "the organization costs API";
        for bucket in self.pages(COSTS, &format!("{base}/organization/costs"), &q).await? {
            let day = openai_day(&bucket).ok_or_else(|| self.malformed(COSTS, "a bucket without start_time"))?;
            for r in bucket["results"].as_array().into_iter().flatten() {
                let amount = &r["amount"];
                let currency = amount["currency"].as_str().unwrap_or("usd");
                if !currency.eq_ignore_ascii_case("usd") {
                    return Err(self.malformed(COSTS, format!("an amount in {currency}, not USD")));
                }
                let cost = match &amount["value"] {
                    Value::Number(n) => Money::from_json_number(&n.to_string()),
                    Value::String(s) => Money::from_json_number(s),
                    Value::Null => Some(Money::ZERO),
                    _ => None,
                }
                .ok_or_else(|| self.malformed(COSTS, "an amount that is not a number"))?;
                // "<model>, <kind>"; a line item without a model (web
                // search tool calls) is a tool charge.
                let line_item = r["line_item"].as_str().unwrap_or(reconciliation::TOOLS);
                let model = line_item.rsplit_once(", ").map_or(reconciliation::TOOLS, |(m, _)| m);
                report.costs.push(CostLine {
                    day: day.clone(),
                    account: r["project_id"].as_str().map(str::to_owned),
                    model: model.to_owned(),
                    cost,
                });
            }
        }
        let mut q: Vec<(&str, String)> = window.to_vec();
        for g in ["project_id", "model", "batch"] {
            q.push(("group_by", g.into()));
        }
        const USAGE: &str = "the organization usage API";
        let mut buckets = self.pages(USAGE, &format!("{base}/organization/usage/completions"), &q).await?;
        let mut q: Vec<(&str, String)> = window.to_vec();
        for g in ["project_id", "model"] {
            q.push(("group_by", g.into()));
        }
        buckets.extend(self.pages(USAGE, &format!("{base}/organization/usage/embeddings"), &q).await?);
        for bucket in buckets {
            let day = openai_day(&bucket).ok_or_else(|| self.malformed(USAGE, "a bucket without start_time"))?;
            for r in bucket["results"].as_array().into_iter().flatten() {
                let n = |k: &str| r[k].as_u64().unwrap_or(0);
                report.usage.push(UsageLine {
                    day: day.clone(),
                    account: r["project_id"].as_str().map(str::to_owned),
                    model: r["model"].as_str().unwrap_or("(other)").to_owned(),
                    input_tokens: n("input_tokens"),
                    cache_read_tokens: n("input_cached_tokens"),
                    output_tokens: n("output_tokens"),
                    requests: n("num_model_requests"),
                    tier: (r["batch"].as_bool() == Some(true)).then(|| "batch".to_owned()),
                });
            }
        }
        Ok(report)
    }

    async fn anthropic(&self, from_ms: i64, to_ms: i64) -> Result<ProviderReport, ReconcileError> {
        let base = self.provider.base_url.trim_end_matches('/');
        let base = base.strip_suffix("/v1").unwrap_or(base);
        let window = [("starting_at", rfc3339(from_ms)), ("ending_at", rfc3339(to_ms))];
        let mut q: Vec<(&str, String)> = window.to_vec();
        q.push(("group_by[]", "workspace_id".into()));
        q.push(("group_by[]", "description".into()));
        q.push(("limit", PAGE_BUCKETS.to_string()));
        let mut report = ProviderReport::default();
        const COSTS: &str = "the cost report API";
        for bucket in self.pages(COSTS, &format!("{base}/v1/organizations/cost_report"), &q).await? {
            let day = anthropic_day(&bucket).ok_or_else(|| self.malformed(COSTS, "a bucket without starting_at"))?;
            for r in bucket["results"].as_array().into_iter().flatten() {
                let currency = r["currency"].as_str().unwrap_or("USD");
                if !currency.eq_ignore_ascii_case("usd") {
                    return Err(self.malformed(COSTS, format!("an amount in {currency}, not USD")));
                }
                // In cents, as a decimal string: "123.45" is $1.2345.
                let cost = match &r["amount"] {
                    Value::String(s) => Money::from_json_number(&format!("{s}e-2")),
                    Value::Number(n) => Money::from_json_number(&format!("{n}e-2")),
                    _ => None,
                }
                .ok_or_else(|| self.malformed(COSTS, "an amount that is not a decimal number"))?;
                report.costs.push(CostLine {
                    day: day.clone(),
                    account: r["workspace_id"].as_str().map(str::to_owned),
                    // Tool charges (web search, code execution) name no model.
                    model: match r["cost_type"].as_str() {
                        Some("tokens") | None => r["model"].as_str().unwrap_or(reconciliation::TOOLS),
                        Some(_) => reconciliation::TOOLS,
                    }
                    .to_owned(),
                    cost,
                });
            }
        }
        let mut q: Vec<(&str, String)> = window.to_vec();
        q.push(("bucket_width", "1d".into()));
        for g in ["workspace_id", "model", "service_tier"] {
            q.push(("group_by[]", g.into()));
        }
        q.push(("limit", PAGE_BUCKETS.to_string()));
        const USAGE: &str = "the usage report API";
        for bucket in self.pages(USAGE, &format!("{base}/v1/organizations/usage_report/messages"), &q).await? {
            let day = anthropic_day(&bucket).ok_or_else(|| self.malformed(USAGE, "a bucket without starting_at"))?;
            for r in bucket["results"].as_array().into_iter().flatten() {
                let n = |v: &Value| v.as_u64().unwrap_or(0);
                let cache_read = n(&r["cache_read_input_tokens"]);
                let writes = n(&r["cache_creation"]["ephemeral_5m_input_tokens"])
                    + n(&r["cache_creation"]["ephemeral_1h_input_tokens"]);
                let tier = r["service_tier"].as_str().filter(|t| *t != "standard").map(str::to_owned);
                report.usage.push(UsageLine {
                    day: day.clone(),
                    account: r["workspace_id"].as_str().map(str::to_owned),
                    model: r["model"].as_str().unwrap_or("(other)").to_owned(),
                    input_tokens: n(&r["uncached_input_tokens"]) + writes + cache_read,
                    cache_read_tokens: cache_read,
                    output_tokens: n(&r["output_tokens"]),
                    // The usage report does not count requests.
                    requests: 0,
                    tier,
                });
            }
        }
        Ok(report)
    }
}

fn openai_day(bucket: &Value) -> Option<String> {
    bucket["start_time"].as_i64().map(|s| day_text(s * 1000))
}

fn anthropic_day(bucket: &Value) -> Option<String> {
    let t = bucket["starting_at"].as_str()?;
    chrono::DateTime::parse_from_rfc3339(t).ok().map(|t| day_text(t.timestamp_millis()))
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// A provider report read from a CSV file (`tollgate reconcile --from-csv`):
/// one line per day × model (× account), with a header naming the columns
/// as the providers' cost and usage APIs name their fields, so an export of
/// those reports (or a console export with these headers) reads as the API
/// would. Recognised columns (case-insensitive; unknown ones are ignored):
///
/// - the day: `day`, `date`, `start_time` (Unix seconds), `starting_at`
///   (RFC 3339) — a `YYYY-MM-DD`, an RFC 3339 time or Unix seconds;
/// - the model: `model`, or `line_item` (`"<model>, <kind>"`);
/// - the account: `project_id`, `workspace_id` or `account`;
/// - the cost: `cost_usd`, `amount_usd` or `amount_value` in dollars,
///   `amount_cents` in cents, and `amount` in the provider's own unit
///   (dollars for OpenAI, cents for Anthropic);
/// - tokens: `input_tokens` (all input), or Anthropic's
///   `uncached_input_tokens` + `cache_creation_input_tokens` +
///   `cache_read_input_tokens`; `input_cached_tokens` /
///   `cache_read_input_tokens`; `output_tokens`; `num_model_requests` or
///   `requests`; `service_tier` or `batch` (`true`).
///
/// A line with a cost becomes a cost line; a line with tokens, a usage line.
pub fn report_from_csv(text: &str, kind: ProviderKind) -> Result<ProviderReport, String> {
    let mut lines = parse_csv(text).into_iter();
    let header: Vec<String> =
        lines.next().ok_or("the file is empty")?.iter().map(|h| h.trim().to_lowercase()).collect();
    let col = |names: &[&str]| names.iter().find_map(|n| header.iter().position(|h| h == n));
    let day_col = col(&["day", "date", "start_time", "starting_at"])
        .ok_or("no day column (day, date, start_time or starting_at)")?;
    let model_col = col(&["model", "line_item"]).ok_or("no model column (model or line_item)")?;
    let account_col = col(&["project_id", "workspace_id", "account"]);
    let usd_col = col(&["cost_usd", "amount_usd", "amount_value"]);
    let cents_col = col(&["amount_cents"]);
    let native_col = col(&["amount"]);
    let n = |row: &[String], names: &[&str]| -> Result<Option<u64>, String> {
        match col(names).and_then(|i| row.get(i)).map(|v| v.trim()).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v.parse::<u64>().map(Some).map_err(|_| format!("{v:?} is not a whole number of tokens")),
        }
    };
    let mut report = ProviderReport::default();
    for (i, row) in lines.enumerate() {
        let line = i + 2;
        if row.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        let at = |c: usize| row.get(c).map_or("", |v| v.trim());
        let day = csv_day(at(day_col)).ok_or_else(|| format!("line {line}: {:?} is not a day", at(day_col)))?;
        let raw_model = at(model_col);
        let model = raw_model.rsplit_once(", ").map_or(raw_model, |(m, _)| m).to_owned();
        let account = account_col.map(at).filter(|a| !a.is_empty()).map(str::to_owned);
        let money = |text: &str, cents: bool| {
            let t = if cents { format!("{text}e-2") } else { text.to_owned() };
            Money::from_json_number(&t).ok_or_else(|| format!("line {line}: {text:?} is not an amount"))
        };
        let cost = if let Some(c) = usd_col.filter(|c| !at(*c).is_empty()) {
            Some(money(at(c), false)?)
        } else if let Some(c) = cents_col.filter(|c| !at(*c).is_empty()) {
            Some(money(at(c), true)?)
        } else if let Some(c) = native_col.filter(|c| !at(*c).is_empty()) {
            Some(money(at(c), kind == ProviderKind::Anthropic)?)
        } else {
            None
        };
        if let Some(cost) = cost {
            report.costs.push(CostLine { day: day.clone(), account: account.clone(), model: model.clone(), cost });
        }
        let e = |r: Result<Option<u64>, String>| r.map_err(|m| format!("line {line}: {m}"));
        let cache_read = e(n(&row, &["input_cached_tokens", "cache_read_input_tokens"]))?;
        let input = match e(n(&row, &["input_tokens"]))? {
            Some(v) => Some(v),
            None => match e(n(&row, &["uncached_input_tokens"]))? {
                Some(u) => {
                    Some(u + e(n(&row, &["cache_creation_input_tokens"]))?.unwrap_or(0) + cache_read.unwrap_or(0))
                }
                None => None,
            },
        };
        let output = e(n(&row, &["output_tokens"]))?;
        if input.is_some() || output.is_some() {
            let tier = match col(&["service_tier"]).map(at) {
                Some(t) if !t.is_empty() && t != "standard" && t != "default" => Some(t.to_owned()),
                _ => col(&["batch"]).map(at).filter(|b| b.eq_ignore_ascii_case("true")).map(|_| "batch".to_owned()),
            };
            report.usage.push(UsageLine {
                day,
                account,
                model,
                input_tokens: input.unwrap_or(0),
                cache_read_tokens: cache_read.unwrap_or(0),
                output_tokens: output.unwrap_or(0),
                requests: e(n(&row, &["num_model_requests", "requests"]))?.unwrap_or(0),
                tier,
            });
        }
    }
    Ok(report)
}

/// RFC 4180 records: quoted fields may hold commas, doubled quotes and line breaks.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let (mut rows, mut row, mut field) = (Vec::new(), Vec::new(), String::new());
    let (mut quoted, mut chars) = (false, text.trim_start_matches('\u{feff}').chars().peekable());
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) if field.is_empty() => quoted = true,
            (',', false) => row.push(std::mem::take(&mut field)),
            ('\r', false) if chars.peek() == Some(&'\n') => {}
            ('\n', false) => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (c, _) => field.push(c),
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

fn csv_day(v: &str) -> Option<String> {
    if let Ok(d) = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        return Some(d.format("%Y-%m-%d").to_string());
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(v) {
        return Some(day_text(t.timestamp_millis()));
    }
    v.parse::<i64>().ok().map(|s| day_text(s * 1000))
}

/// Reconciles one provider against a report read from a file (`--from-csv`)
/// instead of its API; saved like an API run.
pub async fn reconcile_from_report(
    stores: &Stores,
    pricing: &Pricing,
    provider: &Provider,
    mut report: ProviderReport,
    since_ms: i64,
    until_ms: i64,
    now_ms: i64,
) -> Result<Vec<ReconLine>, ReconcileError> {
    let (from_ms, to_ms) = whole_days(since_ms, until_ms);
    let (from_day, to_day) = (day_text(from_ms), day_text(to_ms - 1));
    report.costs.retain(|c| c.day >= from_day && c.day <= to_day);
    report.usage.retain(|u| u.day >= from_day && u.day <= to_day);
    let at = |day: &str| {
        chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(12, 0, 0))
            .map_or(from_ms, |t| t.and_utc().timestamp_millis())
    };
    for c in report.costs.iter_mut().filter(|c| c.model != reconciliation::TOOLS) {
        c.model = pricing.canonical_model(provider, &c.model, at(&c.day));
    }
    for u in &mut report.usage {
        u.model = pricing.canonical_model(provider, &u.model, at(&u.day));
    }
    let gateway = gateway_lines(stores.reports.as_ref(), pricing, provider, from_ms, to_ms).await?;
    let mut lines = reconciliation::reconcile(&provider.name, &report, &gateway, &provider.billing_accounts);
    for l in &mut lines {
        l.reconciled_ms = now_ms;
    }
    stores.reconciliation.save_reconciliation(provider.name.clone(), from_day, to_day, lines.clone(), now_ms).await?;
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csv_export_reads_as_the_api_would() {
        // OpenAI's units: amount in dollars; the line item names the model.
        let text = "\u{feff}date,project_id,line_item,amount,input_tokens,input_cached_tokens,output_tokens,num_model_requests\r\n\
                    2026-12-01,proj_a,\"gpt-4o-2024-08-06, input\",0.0025,1000,0,200,2\r\n\
                    1796169600,proj_b,gpt-4o,4.5,,,,\r\n\r\n";
        let r = report_from_csv(text, ProviderKind::OpenAi).unwrap();
        assert_eq!(r.costs.len(), 2);
        assert_eq!((r.costs[0].day.as_str(), r.costs[0].model.as_str()), ("2026-12-01", "gpt-4o-2024-08-06"));
        assert_eq!(r.costs[0].cost, Money::from_nanos(2_500_000));
        // 1796169600 is 2026-12-02T00:00:00Z (1,764,633,600 + 365 × 86,400).
        assert_eq!((r.costs[1].day.as_str(), r.costs[1].account.as_deref()), ("2026-12-02", Some("proj_b")));
        assert_eq!(r.costs[1].cost, Money::from_nanos(4_500_000_000));
        assert_eq!(r.usage.len(), 1, "the second line has no tokens");
        assert_eq!((r.usage[0].input_tokens, r.usage[0].output_tokens, r.usage[0].requests), (1000, 200, 2));
        // Anthropic's units: amount in cents; input is uncached + writes + reads.
        let text = "starting_at,workspace_id,model,amount,uncached_input_tokens,cache_creation_input_tokens,cache_read_input_tokens,output_tokens,service_tier\n\
                    2026-12-01T00:00:00Z,wrkspc_a,claude-haiku-4-5,123.45,100,20,30,40,batch\n";
        let r = report_from_csv(text, ProviderKind::Anthropic).unwrap();
        assert_eq!(r.costs[0].cost, Money::from_nanos(1_234_500_000));
        assert_eq!((r.usage[0].input_tokens, r.usage[0].cache_read_tokens), (150, 30));
        assert_eq!(r.usage[0].tier.as_deref(), Some("batch"));
        assert!(report_from_csv("model,amount\nx,1\n", ProviderKind::OpenAi).unwrap_err().contains("no day column"));
        assert!(report_from_csv("day,model,amount\n2026-12-01,x,lots\n", ProviderKind::OpenAi)
            .unwrap_err()
            .contains("line 2"));
    }
}
