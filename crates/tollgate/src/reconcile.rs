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
            requests: r.requests,
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
