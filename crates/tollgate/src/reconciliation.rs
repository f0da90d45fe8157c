//! Reconciliation as values: what a provider says it billed, next to what
//! the ledger recorded for the same provider, matched per UTC day × model,
//! with the difference ("drift") and, where the lines tell it, its cause.
//! Spend the provider reports on accounts (projects, workspaces) that are not
//! the gateway's is kept apart, as "outside the gateway" lines.
//!
//! No I/O: `reconcile::` fetches the provider's reports and reads the ledger,
//! then calls [`reconcile`]. Model names arrive already made canonical (the
//! price catalog's name for a dated snapshot), so `gpt-4o-mini-2024-07-18` on
//! the provider's side meets `gpt-4o-mini` in the ledger.

use std::collections::BTreeMap;

use serde::Serialize;
use tollgate_units::Money;

/// The model name of tool charges (web search, code execution, request
/// fees): providers bill them on lines of their own, without a model.
pub const TOOLS: &str = "(tools)";

/// One cost line of a provider's cost report: what it charged one account
/// for one model on one UTC day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CostLine {
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    /// The project (OpenAI) or workspace (Anthropic); `None` when the report
    /// does not say (the default project or workspace).
    pub account: Option<String>,
    pub model: String,
    pub cost: Money,
}

/// One usage line of a provider's usage report.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UsageLine {
    pub day: String,
    pub account: Option<String>,
    pub model: String,
    /// Every input token, cache reads and writes included (the ledger's convention).
    pub input_tokens: u64,
    pub cache_read_tokens: u64,
    pub output_tokens: u64,
    pub requests: u64,
    /// A tier other than the standard one (`batch`, `flex`, `priority`).
    pub tier: Option<String>,
}

/// A provider's side, as read from its reports (or imported from its CSV export).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProviderReport {
    pub costs: Vec<CostLine>,
    pub usage: Vec<UsageLine>,
}

/// The ledger's side for one day × model (rows of the reconciled provider only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GatewayLine {
    pub day: String,
    pub model: String,
    pub cost: Money,
    pub input_tokens: u64,
    pub cache_read_tokens: u64,
    pub output_tokens: u64,
    pub requests: u64,
    pub estimated_requests: u64,
    pub unpriced_requests: u64,
}

/// Whether a line compares both sides or is spend the gateway never saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LineKind {
    /// The gateway's accounts: ledger and provider side by side.
    Matched,
    /// An account that is not the gateway's: the provider's figures only.
    Outside,
}

impl LineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LineKind::Matched => "matched",
            LineKind::Outside => "outside",
        }
    }

    pub fn parse(s: &str) -> Option<LineKind> {
        match s {
            "matched" => Some(LineKind::Matched),
            "outside" => Some(LineKind::Outside),
            _ => None,
        }
    }
}

/// One reconciled line: a day × model of one provider (and, for outside
/// spend, one account).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconLine {
    /// The `[[providers]]` name.
    pub provider: String,
    pub day: String,
    pub model: String,
    pub kind: LineKind,
    /// The account of an outside line; `None` on matched lines.
    pub account: Option<String>,
    pub gateway_cost: Money,
    pub provider_cost: Money,
    pub gateway_input_tokens: u64,
    pub gateway_output_tokens: u64,
    pub provider_input_tokens: u64,
    pub provider_output_tokens: u64,
    pub gateway_requests: u64,
    pub provider_requests: u64,
    /// Why the two sides differ, when the lines tell; `None` when they agree
    /// (or for outside lines, whose cause is their kind).
    pub cause: Option<String>,
    /// When the line was worked out (Unix ms; 0 until it is saved).
    pub reconciled_ms: i64,
}

impl ReconLine {
    /// Gateway − provider: positive when the ledger holds more.
    pub fn drift(&self) -> Money {
        Money::from_nanos(self.gateway_cost.nanos().saturating_sub(self.provider_cost.nanos()))
    }

    /// The drift as a share of the provider's cost, in basis points (1 % =
    /// 100), rounded toward zero; `None` when the provider's cost is zero.
    pub fn drift_bp(&self) -> Option<i64> {
        let p = i128::from(self.provider_cost.nanos());
        if p == 0 {
            return None;
        }
        i64::try_from(i128::from(self.drift().nanos()) * 10_000 / p).ok()
    }
}

/// The totals of a set of lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReconTotals {
    pub gateway_cost: Money,
    pub provider_cost: Money,
    /// Gateway − provider over the matched lines.
    pub drift: Money,
    /// Provider cost on accounts that are not the gateway's.
    pub outside: Money,
    /// Matched lines whose two sides differ.
    pub drifting_lines: u64,
}

pub fn totals(lines: &[ReconLine]) -> ReconTotals {
    let mut t = ReconTotals::default();
    for l in lines {
        match l.kind {
            LineKind::Matched => {
                t.gateway_cost += l.gateway_cost;
                t.provider_cost += l.provider_cost;
                t.drift += l.drift();
                if !l.drift().is_zero() {
                    t.drifting_lines += 1;
                }
            }
            LineKind::Outside => t.outside += l.provider_cost,
        }
    }
    t
}

/// Matches a provider's report against the ledger's lines.
///
/// `gateway_accounts` are the provider accounts (projects, workspaces) the
/// gateway's keys belong to; lines on any other account are outside spend.
/// Empty: every account is the gateway's (no outside spend can be told).
/// The result is sorted by day, kind, model, account.
pub fn reconcile(
    provider: &str,
    report: &ProviderReport,
    gateway: &[GatewayLine],
    gateway_accounts: &[String],
) -> Vec<ReconLine> {
    let ours = |account: &Option<String>| {
        gateway_accounts.is_empty() || account.as_ref().is_some_and(|a| gateway_accounts.contains(a))
    };
    let side = |account: &Option<String>| {
        if ours(account) {
            (LineKind::Matched, None)
        } else {
            (LineKind::Outside, account.clone())
        }
    };
    let mut lines: Lines = BTreeMap::new();
    let mut tiers: BTreeMap<(String, String), BTreeMap<String, u64>> = BTreeMap::new();
    for c in &report.costs {
        let (kind, account) = side(&c.account);
        slot(&mut lines, provider, &c.day, &c.model, kind, account).provider_cost += c.cost;
    }
    for u in &report.usage {
        let (kind, account) = side(&u.account);
        let l = slot(&mut lines, provider, &u.day, &u.model, kind, account);
        l.provider_input_tokens += u.input_tokens;
        l.provider_output_tokens += u.output_tokens;
        l.provider_requests += u.requests;
        if kind == LineKind::Matched {
            if let Some(t) = &u.tier {
                *tiers.entry((u.day.clone(), u.model.clone())).or_default().entry(t.clone()).or_default() +=
                    u.input_tokens + u.output_tokens;
            }
        }
    }
    let mut gateway_detail: BTreeMap<(String, String), GatewayLine> = BTreeMap::new();
    for g in gateway {
        let l = slot(&mut lines, provider, &g.day, &g.model, LineKind::Matched, None);
        l.gateway_cost += g.cost;
        l.gateway_input_tokens += g.input_tokens;
        l.gateway_output_tokens += g.output_tokens;
        l.gateway_requests += g.requests;
        let d = gateway_detail.entry((g.day.clone(), g.model.clone())).or_default();
        d.unpriced_requests += g.unpriced_requests;
        d.estimated_requests += g.estimated_requests;
    }
    let mut out: Vec<ReconLine> = lines.into_values().collect();
    for l in out.iter_mut().filter(|l| l.kind == LineKind::Matched) {
        let key = (l.day.clone(), l.model.clone());
        l.cause = cause(l, gateway_detail.get(&key), tiers.get(&key));
    }
    out
}

type Lines = BTreeMap<(String, LineKind, String, Option<String>), ReconLine>;

/// The line for a day × kind × model × account, created empty when new.
fn slot<'a>(
    lines: &'a mut Lines,
    provider: &str,
    day: &str,
    model: &str,
    kind: LineKind,
    account: Option<String>,
) -> &'a mut ReconLine {
    lines.entry((day.to_owned(), kind, model.to_owned(), account.clone())).or_insert_with(|| ReconLine {
        provider: provider.to_owned(),
        day: day.to_owned(),
        model: model.to_owned(),
        kind,
        account,
        gateway_cost: Money::ZERO,
        provider_cost: Money::ZERO,
        gateway_input_tokens: 0,
        gateway_output_tokens: 0,
        provider_input_tokens: 0,
        provider_output_tokens: 0,
        gateway_requests: 0,
        provider_requests: 0,
        cause: None,
        reconciled_ms: 0,
    })
}

/// Why a matched line's two sides differ, from what the lines carry.
fn cause(l: &ReconLine, g: Option<&GatewayLine>, tiers: Option<&BTreeMap<String, u64>>) -> Option<String> {
    if l.drift().is_zero()
        && l.gateway_input_tokens == l.provider_input_tokens
        && l.gateway_output_tokens == l.provider_output_tokens
    {
        return None;
    }
    let mut causes = Vec::new();
    if let Some(g) = g {
        if g.unpriced_requests > 0 {
            causes.push(format!("unpriced: {} ledger rows have no price in the catalog", g.unpriced_requests));
        }
        if g.estimated_requests > 0 {
            causes.push(format!(
                "estimated: {} ledger rows were counted locally (the provider reported no usage)",
                g.estimated_requests
            ));
        }
    }
    if let Some(tiers) = tiers {
        for (tier, tokens) in tiers {
            causes.push(format!("tier: the provider billed {tokens} tokens at its {tier} rates"));
        }
    }
    let provider_usage = l.provider_input_tokens + l.provider_output_tokens + l.provider_requests > 0;
    let same_tokens =
        l.gateway_input_tokens == l.provider_input_tokens && l.gateway_output_tokens == l.provider_output_tokens;
    if !provider_usage && l.gateway_input_tokens + l.gateway_output_tokens > 0 {
        if l.provider_cost.is_zero() {
            causes
                .push("the provider reports nothing for this model on this day (its reports may lag by a day)".into());
        } else if !l.drift().is_zero() {
            causes.push(
                "the provider's usage report has no tokens for this model, so only the costs can be compared".into(),
            );
        }
    } else if same_tokens && causes.is_empty() {
        let pct = match l.drift_bp() {
            Some(bp) => format!(" ({}{}.{:02} %)", if bp < 0 { "-" } else { "+" }, bp.abs() / 100, bp.abs() % 100),
            None => String::new(),
        };
        causes.push(format!(
            "price: the same tokens on both sides, but the provider billed ${} where the catalog prices them at ${}{pct}",
            l.provider_cost, l.gateway_cost
        ));
    } else if !same_tokens {
        let more_in = l.provider_input_tokens as i128 - l.gateway_input_tokens as i128;
        let more_out = l.provider_output_tokens as i128 - l.gateway_output_tokens as i128;
        if more_in > 0 || more_out > 0 {
            causes.push(format!(
                "usage missing from the ledger: the provider reports {} more input and {} more output tokens on the gateway's accounts{}",
                more_in.max(0),
                more_out.max(0),
                if l.provider_requests > 0 {
                    format!(" ({} requests against the ledger's {})", l.provider_requests, l.gateway_requests)
                } else {
                    String::new()
                }
            ));
        }
        if more_in < 0 || more_out < 0 {
            causes.push(format!(
                "the ledger holds {} more input and {} more output tokens than the provider reports (its report may lag by a day)",
                (-more_in).max(0),
                (-more_out).max(0)
            ));
        }
    }
    if causes.is_empty() {
        None
    } else {
        Some(causes.join("; "))
    }
}

/// A basis-point share as a signed percentage with two decimals (`"+25.00"`).
pub fn percent_text(bp: i64) -> String {
    format!("{}{}.{:02}", if bp < 0 { "-" } else { "+" }, bp.unsigned_abs() / 100, bp.unsigned_abs() % 100)
}

fn rfc3339(ms: i64) -> Option<String> {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// One line as the API and `tollgate reconcile --format json` show it.
pub fn line_json(l: &ReconLine) -> serde_json::Value {
    serde_json::json!({
        "provider": l.provider,
        "day": l.day,
        "model": l.model,
        "kind": l.kind.as_str(),
        "account": l.account,
        "gateway_cost_usd": l.gateway_cost.to_string(),
        "provider_cost_usd": l.provider_cost.to_string(),
        "drift_usd": l.drift().to_string(),
        "drift_percent": l.drift_bp().map(percent_text),
        "gateway_input_tokens": l.gateway_input_tokens,
        "gateway_output_tokens": l.gateway_output_tokens,
        "provider_input_tokens": l.provider_input_tokens,
        "provider_output_tokens": l.provider_output_tokens,
        "gateway_requests": l.gateway_requests,
        "provider_requests": l.provider_requests,
        "cause": l.cause,
        "reconciled_at": (l.reconciled_ms > 0).then(|| rfc3339(l.reconciled_ms)).flatten(),
    })
}

/// A set of lines: the matched ones under `rows`, outside spend under
/// `outside`, with the totals.
pub fn report_json(lines: &[ReconLine]) -> serde_json::Value {
    let t = totals(lines);
    let (matched, outside): (Vec<&ReconLine>, Vec<&ReconLine>) =
        lines.iter().partition(|l| l.kind == LineKind::Matched);
    serde_json::json!({
        "rows": matched.iter().map(|l| line_json(l)).collect::<Vec<_>>(),
        "outside": outside.iter().map(|l| line_json(l)).collect::<Vec<_>>(),
        "gateway_cost_usd": t.gateway_cost.to_string(),
        "provider_cost_usd": t.provider_cost.to_string(),
        "drift_usd": t.drift.to_string(),
        "drifting_lines": t.drifting_lines,
        "outside_gateway_usd": t.outside.to_string(),
    })
}

/// A set of lines as a table for the terminal.
pub fn report_table(lines: &[ReconLine]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<10}  {:<12}  {:<28}  {:>16}  {:>16}  {:>16}  {:>8}  cause",
        "day", "provider", "model", "gateway_usd", "provider_usd", "drift_usd", "drift%"
    );
    for l in lines.iter().filter(|l| l.kind == LineKind::Matched) {
        let _ = writeln!(
            out,
            "{:<10}  {:<12}  {:<28}  {:>16}  {:>16}  {:>16}  {:>8}  {}",
            l.day,
            l.provider,
            l.model,
            l.gateway_cost.to_string(),
            l.provider_cost.to_string(),
            l.drift().to_string(),
            l.drift_bp().map(percent_text).unwrap_or_default(),
            l.cause.as_deref().unwrap_or("")
        );
    }
    let outside: Vec<&ReconLine> = lines.iter().filter(|l| l.kind == LineKind::Outside).collect();
    if !outside.is_empty() {
        let _ = writeln!(out, "\noutside the gateway (accounts that are not the gateway's):");
        for l in outside {
            let _ = writeln!(
                out,
                "{:<10}  {:<12}  {:<28}  {:>16}  account {}",
                l.day,
                l.provider,
                l.model,
                l.provider_cost.to_string(),
                l.account.as_deref().unwrap_or("(none)")
            );
        }
    }
    let t = totals(lines);
    let _ = writeln!(
        out,
        "\nmatched: gateway ${} · provider ${} · drift ${} on {} line(s) · outside the gateway ${}",
        t.gateway_cost, t.provider_cost, t.drift, t.drifting_lines, t.outside
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cost(day: &str, account: &str, model: &str, nanos: i64) -> CostLine {
        CostLine { day: day.into(), account: Some(account.into()), model: model.into(), cost: Money::from_nanos(nanos) }
    }

    fn usage(day: &str, account: &str, model: &str, input: u64, output: u64, requests: u64) -> UsageLine {
        UsageLine {
            day: day.into(),
            account: Some(account.into()),
            model: model.into(),
            input_tokens: input,
            output_tokens: output,
            requests,
            ..Default::default()
        }
    }

    fn ledger(day: &str, model: &str, nanos: i64, input: u64, output: u64, requests: u64) -> GatewayLine {
        GatewayLine {
            day: day.into(),
            model: model.into(),
            cost: Money::from_nanos(nanos),
            input_tokens: input,
            output_tokens: output,
            requests,
            ..Default::default()
        }
    }

    fn ours() -> Vec<String> {
        vec!["proj_gw".into()]
    }

    #[test]
    fn a_clean_day_has_no_drift_and_no_cause() {
        // 2 requests: 1,000 input and 200 output tokens, $0.000270 both sides.
        let report = ProviderReport {
            costs: vec![cost("2026-12-01", "proj_gw", "gpt-4o-mini", 270_000)],
            usage: vec![usage("2026-12-01", "proj_gw", "gpt-4o-mini", 1_000, 200, 2)],
        };
        let lines =
            reconcile("openai", &report, &[ledger("2026-12-01", "gpt-4o-mini", 270_000, 1_000, 200, 2)], &ours());
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].kind, LineKind::Matched);
        assert_eq!(lines[0].drift(), Money::ZERO);
        assert_eq!(lines[0].cause, None);
        assert_eq!(totals(&lines).drifting_lines, 0);
    }

    #[test]
    fn the_same_tokens_billed_higher_is_a_price_difference() {
        // The ledger says $1.000000000, the provider billed $1.250000000 for
        // the same tokens: drift −$0.25, −0.25 / 1.25 = −20.00 %.
        let report = ProviderReport {
            costs: vec![cost("2026-12-02", "proj_gw", "gpt-4o", 1_250_000_000)],
            usage: vec![usage("2026-12-02", "proj_gw", "gpt-4o", 200_000, 50_000, 40)],
        };
        let lines = reconcile(
            "openai",
            &report,
            &[ledger("2026-12-02", "gpt-4o", 1_000_000_000, 200_000, 50_000, 40)],
            &ours(),
        );
        let l = &lines[0];
        assert_eq!(l.drift(), Money::from_nanos(-250_000_000));
        assert_eq!(l.drift_bp(), Some(-2_000));
        assert_eq!(percent_text(-2_000), "-20.00");
        let cause = l.cause.as_deref().unwrap();
        assert!(cause.starts_with("price: the same tokens on both sides"), "{cause}");
        assert!(
            cause.contains("$1.250000000") && cause.contains("$1.000000000") && cause.contains("-20.00 %"),
            "{cause}"
        );
    }

    #[test]
    fn spend_on_another_account_is_its_own_outside_line() {
        let report = ProviderReport {
            costs: vec![
                cost("2026-12-03", "proj_gw", "gpt-4o-mini", 270_000),
                cost("2026-12-03", "proj_other", "gpt-4o", 4_500_000_000),
            ],
            usage: vec![
                usage("2026-12-03", "proj_gw", "gpt-4o-mini", 1_000, 200, 2),
                usage("2026-12-03", "proj_other", "gpt-4o", 1_000_000, 200_000, 10),
            ],
        };
        let lines =
            reconcile("openai", &report, &[ledger("2026-12-03", "gpt-4o-mini", 270_000, 1_000, 200, 2)], &ours());
        assert_eq!(lines.len(), 2);
        let outside = lines.iter().find(|l| l.kind == LineKind::Outside).unwrap();
        assert_eq!(outside.account.as_deref(), Some("proj_other"));
        assert_eq!(outside.model, "gpt-4o");
        assert_eq!(outside.provider_cost, Money::from_nanos(4_500_000_000));
        assert_eq!(outside.gateway_cost, Money::ZERO);
        let t = totals(&lines);
        // Outside spend is not drift: the matched line agrees.
        assert_eq!((t.drift, t.outside, t.drifting_lines), (Money::ZERO, Money::from_nanos(4_500_000_000), 0));
        let json = report_json(&lines);
        assert_eq!(json["outside_gateway_usd"], "4.500000000");
        assert_eq!(json["rows"].as_array().unwrap().len(), 1);
        assert_eq!(json["outside"][0]["account"], "proj_other");
    }

    #[test]
    fn without_accounts_every_account_is_the_gateways() {
        let report = ProviderReport {
            costs: vec![cost("2026-12-03", "proj_a", "m", 10), cost("2026-12-03", "proj_b", "m", 5)],
            usage: vec![],
        };
        let lines = reconcile("openai", &report, &[ledger("2026-12-03", "m", 15, 0, 0, 1)], &[]);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].provider_cost, Money::from_nanos(15));
        assert_eq!(lines[0].drift(), Money::ZERO);
    }

    #[test]
    fn more_tokens_at_the_provider_is_usage_missing_from_the_ledger() {
        let report = ProviderReport {
            costs: vec![cost("2026-12-04", "proj_gw", "gpt-4o-mini", 405_000)],
            usage: vec![usage("2026-12-04", "proj_gw", "gpt-4o-mini", 1_500, 300, 3)],
        };
        let lines =
            reconcile("openai", &report, &[ledger("2026-12-04", "gpt-4o-mini", 270_000, 1_000, 200, 2)], &ours());
        let cause = lines[0].cause.as_deref().unwrap();
        assert!(
            cause.contains(
                "usage missing from the ledger: the provider reports 500 more input and 100 more output tokens"
            ),
            "{cause}"
        );
        assert!(cause.contains("(3 requests against the ledger's 2)"), "{cause}");
    }

    #[test]
    fn unpriced_and_estimated_rows_are_named_as_causes() {
        let mut g = ledger("2026-12-05", "new-model", 0, 1_000, 100, 4);
        g.unpriced_requests = 3;
        g.estimated_requests = 1;
        let report = ProviderReport {
            costs: vec![cost("2026-12-05", "proj_gw", "new-model", 9_000)],
            usage: vec![usage("2026-12-05", "proj_gw", "new-model", 1_000, 100, 4)],
        };
        let cause = reconcile("openai", &report, &[g], &ours())[0].cause.clone().unwrap();
        assert!(cause.contains("unpriced: 3 ledger rows"), "{cause}");
        assert!(cause.contains("estimated: 1 ledger rows"), "{cause}");
        assert!(!cause.contains("price:"), "{cause}");
    }

    #[test]
    fn batch_tokens_are_named_as_a_tier_cause() {
        let mut u = usage("2026-12-05", "proj_gw", "gpt-4o-mini", 1_000, 200, 2);
        u.tier = Some("batch".into());
        let report =
            ProviderReport { costs: vec![cost("2026-12-05", "proj_gw", "gpt-4o-mini", 135_000)], usage: vec![u] };
        let lines =
            reconcile("openai", &report, &[ledger("2026-12-05", "gpt-4o-mini", 270_000, 1_000, 200, 2)], &ours());
        let cause = lines[0].cause.as_deref().unwrap();
        assert_eq!(cause, "tier: the provider billed 1200 tokens at its batch rates");
    }
}
