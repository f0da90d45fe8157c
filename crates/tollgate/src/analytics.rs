//! Spend queries shared by `tollgate report`, `GET /api/v1/spend` and the
//! dashboard: group the ledger by any set of dimensions (well-known columns
//! or any custom tag), optionally by time bucket, with filters and totals.

use crate::error::ApiError;
pub use crate::query::{Bucket, PromptCacheRow, SpendQuery, SpendReport, SpendRow, MAX_GROUP_BY};

/// A dimension name users may type: the well-known ones or a tag name.
pub fn check_dimension(d: &str) -> Result<(), ApiError> {
    let ok = !d.is_empty() && d.len() <= 64 && d.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid_param(format!("{d:?} is not a dimension or tag name"), "group_by"))
    }
}

fn rfc3339(ms: i64) -> Option<String> {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// The `GET /api/v1/spend` body (docs/http-api.md): each grouped dimension at the row's top level.
pub fn report_json(r: &SpendReport) -> serde_json::Value {
    let rows: Vec<serde_json::Value> = r
        .rows
        .iter()
        .map(|row| {
            let mut m = serde_json::Map::new();
            for (d, v) in r.group_by.iter().zip(&row.dims) {
                m.insert(d.clone(), v.clone().map(serde_json::Value::String).unwrap_or(serde_json::Value::Null));
            }
            if let Some(b) = row.bucket_ms {
                m.insert("bucket".into(), rfc3339(b).into());
            }
            let obj = serde_json::json!({
                "requests": row.requests,
                "input_tokens": row.input_tokens,
                "cache_read_tokens": row.cache_read_tokens,
                "cache_write_tokens": row.cache_write_tokens,
                "output_tokens": row.output_tokens,
                "reasoning_tokens": row.reasoning_tokens,
                "cost_usd": row.cost.to_string(),
                "cache_savings_usd": row.cache_savings.to_string(),
                "estimated_requests": row.estimated_requests,
                "unpriced_requests": row.unpriced_requests,
                "error_requests": row.error_requests,
                "attempts": row.attempts,
                "response_cache_savings_usd": row.response_cache_savings.to_string(),
                "tool_cost_usd": row.tool_cost.to_string(),
                "web_search_requests": row.web_search_requests,
            });
            if let serde_json::Value::Object(o) = obj {
                m.extend(o);
            }
            serde_json::Value::Object(m)
        })
        .collect();
    serde_json::json!({
        "rows": rows,
        "total_cost_usd": r.total_cost.to_string(),
        "total_requests": r.total_requests,
        "unpriced_requests": r.unpriced_requests,
        "response_cache_savings_usd": r.response_cache_savings().to_string(),
        "tool_cost_usd": r.tool_cost().to_string(),
        "web_search_requests": r.web_search_requests(),
    })
}

/// Text table for the terminal.
/// `billed`: each row's amount under `[[rate_cards]]` ([`billed_per_row`]),
/// shown beside the cost when there are cards.
pub fn report_table(r: &SpendReport, billed: Option<&[tollgate_units::Money]>) -> String {
    let mut head: Vec<String> = r.group_by.clone();
    if r.rows.iter().any(|x| x.bucket_ms.is_some()) {
        head.push("bucket".into());
    }
    head.extend(
        [
            "requests",
            "input",
            "cache_read",
            "cache_write",
            "output",
            "reasoning",
            "cost_usd",
            "saved_usd",
            "estimated",
            "unpriced",
            "tool_cost_usd",
            "web_search_requests",
        ]
        .map(String::from),
    );
    if billed.is_some() {
        head.push("billed_usd".into());
    }
    let mut lines: Vec<Vec<String>> = vec![head];
    for (i, row) in r.rows.iter().enumerate() {
        let mut l: Vec<String> = row.dims.iter().map(|d| d.as_deref().map_or_else(|| "-".into(), printable)).collect();
        if let Some(b) = row.bucket_ms {
            l.push(rfc3339(b).unwrap_or_default());
        }
        l.extend([
            row.requests.to_string(),
            row.input_tokens.to_string(),
            row.cache_read_tokens.to_string(),
            row.cache_write_tokens.to_string(),
            row.output_tokens.to_string(),
            row.reasoning_tokens.to_string(),
            row.cost.to_string(),
            row.cache_savings.to_string(),
            row.estimated_requests.to_string(),
            row.unpriced_requests.to_string(),
            row.tool_cost.to_string(),
            row.web_search_requests.to_string(),
        ]);
        if let Some(b) = billed.and_then(|b| b.get(i)) {
            l.push(b.to_string());
        }
        lines.push(l);
    }
    let widths: Vec<usize> =
        (0..lines[0].len()).map(|i| lines.iter().map(|l| l.get(i).map_or(0, String::len)).max().unwrap_or(0)).collect();
    let mut s = String::new();
    for l in &lines {
        let cells: Vec<String> = l.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        s.push_str(cells.join("  ").trim_end());
        s.push('\n');
    }
    s.push_str(&format!("total: {} requests, ${} ({} unpriced)", r.total_requests, r.total_cost, r.unpriced_requests));
    if let Some(b) = billed {
        s.push_str(&format!(", billed ${}", b.iter().copied().sum::<tollgate_units::Money>()));
    }
    s.push('\n');
    s
}

/// A stored value as a terminal shows it: control characters (ANSI escapes
/// in a model name) become `?`, so a report cannot rewrite the screen.
pub fn printable(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

/// A text cell for CSV: a leading `=`, `+`, `-`, `@`, tab or carriage return
/// is what spreadsheets run as a formula, so such a cell gets a leading `'`.
pub fn csv_text(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{s}") } else { s.to_string() };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// RFC 4180 CSV; text cells neutralised against formula injection ([`csv_text`]).
pub fn report_csv(r: &SpendReport, billed: Option<&[tollgate_units::Money]>) -> String {
    let esc = |s: &str| csv_text(s);
    let mut head: Vec<String> = r.group_by.iter().map(|d| esc(d)).collect();
    head.extend(
        [
            "bucket",
            "requests",
            "input_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
            "output_tokens",
            "reasoning_tokens",
            "cost_usd",
            "cache_savings_usd",
            "estimated_requests",
            "unpriced_requests",
            "tool_cost_usd",
            "web_search_requests",
        ]
        .map(String::from),
    );
    if billed.is_some() {
        head.push("billed_usd".into());
    }
    let mut s = head.join(",") + "\n";
    for (i, row) in r.rows.iter().enumerate() {
        let mut l: Vec<String> = row.dims.iter().map(|d| esc(d.as_deref().unwrap_or(""))).collect();
        l.push(row.bucket_ms.and_then(rfc3339).unwrap_or_default());
        l.extend([
            row.requests.to_string(),
            row.input_tokens.to_string(),
            row.cache_read_tokens.to_string(),
            row.cache_write_tokens.to_string(),
            row.output_tokens.to_string(),
            row.reasoning_tokens.to_string(),
            row.cost.to_string(),
            row.cache_savings.to_string(),
            row.estimated_requests.to_string(),
            row.unpriced_requests.to_string(),
            row.tool_cost.to_string(),
            row.web_search_requests.to_string(),
        ]);
        if let Some(b) = billed.and_then(|b| b.get(i)) {
            l.push(b.to_string());
        }
        s.push_str(&l.join(","));
        s.push('\n');
    }
    s
}

/// `7d`, `24h`, or an RFC 3339 time → Unix ms.
pub fn parse_since(s: &str, now_ms: i64) -> Result<i64, ApiError> {
    if let Some(d) = crate::time::parse_duration(s) {
        return Ok(now_ms - d.num_milliseconds());
    }
    parse_time(s, "since")
}

pub fn parse_time(s: &str, param: &str) -> Result<i64, ApiError> {
    chrono::DateTime::parse_from_rfc3339(s).map(|t| t.timestamp_millis()).map_err(|_| {
        ApiError::invalid_param(format!("{param} {s:?} must be an RFC 3339 time or a duration like 7d"), param)
    })
}

pub fn prompt_cache_json(by: &str, rows: &[PromptCacheRow]) -> serde_json::Value {
    let rows: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            let bp = r.hit_ratio_bp();
            serde_json::json!({
                by: r.value,
                "requests": r.requests,
                "input_tokens": r.input_tokens,
                "cache_read_tokens": r.cache_read_tokens,
                "cache_write_tokens": r.cache_write_tokens,
                "hit_ratio": format!("{}.{:04}", bp / 10_000, bp % 10_000),
                "saved_usd": r.saved.to_string(),
                "writes_never_read_tokens": r.writes_never_read,
                "distinct_prefixes": r.distinct_prefixes,
                "unstable_prefix": r.unstable_prefix(),
            })
        })
        .collect();
    serde_json::json!({ "by": by, "rows": rows })
}

/// The FOCUS chargeback export of `[from_ms, to_ms)`: spend in daily
/// buckets, grouped by provider, model, `by` and every dimension a rate card
/// names (so each card is chosen per group), then folded to one row per day ×
/// provider × model × `by` value (`crate::chargeback::focus_rows`).
pub async fn focus_export(
    reports: &dyn crate::store::Reports,
    cards: &[crate::chargeback::RateCard],
    by: Option<&str>,
    from_ms: i64,
    to_ms: i64,
    filters: Vec<(String, String)>,
) -> Result<Vec<crate::chargeback::FocusRow>, ApiError> {
    if let Some(b) = by {
        check_dimension(b)?;
    }
    let group_by = crate::chargeback::export_group_by(by, cards);
    if group_by.len() > MAX_GROUP_BY {
        return Err(ApiError::invalid_param(
            format!(
                "the export groups by {} (provider, model, by and the rate cards' dimensions); at most {MAX_GROUP_BY} can be grouped at once",
                group_by.join(", ")
            ),
            "by",
        ));
    }
    let report = reports
        .spend(SpendQuery {
            group_by: group_by.clone(),
            from_ms: Some(from_ms),
            to_ms: Some(to_ms),
            bucket: Some(Bucket::Day),
            filters,
        })
        .await
        .map_err(|e| ApiError::Internal { message: format!("storage error: {e}") })?;
    Ok(crate::chargeback::focus_rows(crate::chargeback::ExportInput {
        group_by: &group_by,
        rows: &report.rows,
        by,
        cards,
    }))
}

/// What each row of `report` bills under the rate cards: the same query
/// grouped also by the dimensions the cards name, each fine row priced by
/// its own card, added up to `report`'s rows (by their dimensions and
/// bucket). `None` without rate cards, or when the cards' dimensions do not
/// fit in one query beside the report's own.
pub async fn billed_per_row(
    reports: &dyn crate::store::Reports,
    q: &SpendQuery,
    report: &SpendReport,
    cards: &[crate::chargeback::RateCard],
) -> Result<Option<Vec<tollgate_units::Money>>, crate::store::StoreError> {
    if cards.is_empty() {
        return Ok(None);
    }
    let mut group_by = q.group_by.clone();
    for d in crate::chargeback::dims_needed(cards) {
        if !group_by.contains(&d) {
            group_by.push(d);
        }
    }
    if group_by.len() > MAX_GROUP_BY {
        return Ok(None);
    }
    let n = q.group_by.len();
    let fine = reports.spend(SpendQuery { group_by: group_by.clone(), ..q.clone() }).await?;
    let mut billed: std::collections::HashMap<(Vec<Option<String>>, Option<i64>), i64> = Default::default();
    for row in &fine.rows {
        let dim = |name: &str| group_by.iter().position(|g| g == name).and_then(|i| row.dims.get(i)?.as_deref());
        let amount = crate::chargeback::rate_card_for(cards, dim).map_or(row.cost, |c| c.billed(row.cost));
        *billed.entry((row.dims[..n].to_vec(), row.bucket_ms)).or_default() += amount.nanos();
    }
    Ok(Some(
        report
            .rows
            .iter()
            .map(|r| {
                tollgate_units::Money::from_nanos(billed.get(&(r.dims.clone(), r.bucket_ms)).copied().unwrap_or(0))
            })
            .collect(),
    ))
}

/// `report_json` with each row's billed amount (`billed_usd`) and the total.
pub fn report_json_billed(r: &SpendReport, billed: Option<&[tollgate_units::Money]>) -> serde_json::Value {
    let mut v = report_json(r);
    if let Some(billed) = billed {
        if let Some(rows) = v["rows"].as_array_mut() {
            for (row, b) in rows.iter_mut().zip(billed) {
                row["billed_usd"] = b.to_string().into();
            }
        }
        v["total_billed_usd"] = billed.iter().copied().sum::<tollgate_units::Money>().to_string().into();
    }
    v
}

/// A start or end given as a date (`2026-11-01`, UTC midnight), an RFC 3339
/// time, or (for a start) a duration back from now (`30d`).
pub fn parse_day_or_time(s: &str, now_ms: i64, param: &str) -> Result<i64, ApiError> {
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return d
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp_millis())
            .ok_or_else(|| ApiError::invalid_param(format!("{param} {s:?} is not a date"), param));
    }
    if let Some(d) = crate::time::parse_duration(s) {
        return Ok(now_ms - d.num_milliseconds());
    }
    parse_time(s, param)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_cannot_be_formulas_and_table_cells_cannot_be_escapes() {
        assert_eq!(csv_text("=HYPERLINK(\"http://x\")"), "\"'=HYPERLINK(\"\"http://x\"\")\"");
        for f in ["+1", "-2+3", "@SUM(A1)", "\tx"] {
            assert!(csv_text(f).trim_start_matches('"').starts_with('\''), "{f}");
        }
        assert_eq!(csv_text("gpt-4o-mini"), "gpt-4o-mini");
        assert_eq!(printable("gpt\u{1b}[31mred"), "gpt?[31mred");
    }
}
