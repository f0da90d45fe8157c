//! Spend queries shared by `tollgate report`, `GET /api/v1/spend` and the
//! dashboard: group the ledger by any set of dimensions (well-known columns
//! or any custom tag), optionally by time bucket, with filters and totals.

use rusqlite::types::Value as SqlValue;
use serde::Serialize;
use tollgate_units::Money;

use crate::error::ApiError;
use crate::store::sqlite::{dimension_column, SqliteStore};
use crate::store::StoreError;

pub const MAX_GROUP_BY: usize = 6;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Hour,
    Day,
}

impl Bucket {
    pub fn parse(s: &str) -> Result<Bucket, ApiError> {
        match s {
            "hour" => Ok(Bucket::Hour),
            "day" => Ok(Bucket::Day),
            _ => Err(ApiError::invalid_param(format!("bucket {s:?} must be hour or day"), "bucket")),
        }
    }

    fn millis(self) -> i64 {
        match self {
            Bucket::Hour => 3_600_000,
            Bucket::Day => 86_400_000,
        }
    }
}

/// What to add up, and how to slice it.
#[derive(Debug, Clone, Default)]
pub struct SpendQuery {
    pub group_by: Vec<String>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub bucket: Option<Bucket>,
    pub filters: Vec<(String, String)>,
}

/// One group's totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpendRow {
    /// The grouped dimensions' values, in `group_by` order (`None`: not set).
    pub dims: Vec<Option<String>>,
    /// Bucket start, Unix ms.
    pub bucket_ms: Option<i64>,
    pub requests: u64,
    pub input_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    pub output_tokens: u64,
    pub reasoning_tokens: u64,
    pub cost: Money,
    pub cache_savings: Money,
    pub estimated_requests: u64,
    pub unpriced_requests: u64,
    pub error_requests: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendReport {
    pub group_by: Vec<String>,
    pub rows: Vec<SpendRow>,
    pub total_cost: Money,
    pub total_requests: u64,
    pub unpriced_requests: u64,
}

/// A dimension name users may type: the well-known ones or a tag name.
pub fn check_dimension(d: &str) -> Result<(), ApiError> {
    let ok = !d.is_empty() && d.len() <= 64 && d.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid_param(format!("{d:?} is not a dimension or tag name"), "group_by"))
    }
}

/// SQL for one dimension: its column, or the tag from the JSON tags.
fn dim_sql(d: &str, args: &mut Vec<SqlValue>) -> String {
    match dimension_column(d) {
        Some(c) => format!("CAST({c} AS TEXT)"),
        None => {
            args.push(SqlValue::Text(format!("$.\"{d}\"")));
            format!("json_extract(tags, ?{})", args.len())
        }
    }
}

pub fn spend(store: &SqliteStore, q: &SpendQuery) -> Result<SpendReport, StoreError> {
    let mut args: Vec<SqlValue> = Vec::new();
    let mut select = Vec::new();
    for d in &q.group_by {
        select.push(dim_sql(d, &mut args));
    }
    if let Some(b) = q.bucket {
        select.push(format!("(ts_ms / {0}) * {0}", b.millis()));
    }
    let mut wh = vec!["1=1".to_string()];
    if let Some(f) = q.from_ms {
        args.push(SqlValue::Integer(f));
        wh.push(format!("ts_ms >= ?{}", args.len()));
    }
    if let Some(t) = q.to_ms {
        args.push(SqlValue::Integer(t));
        wh.push(format!("ts_ms < ?{}", args.len()));
    }
    for (d, v) in &q.filters {
        let expr = dim_sql(d, &mut args);
        args.push(SqlValue::Text(v.clone()));
        wh.push(format!("{expr} = ?{}", args.len()));
    }
    let n_keys = select.len();
    let sums = "COUNT(*), \
        SUM(input_uncached + input_audio + cache_read + cache_write_5m + cache_write_1h), \
        SUM(cache_read), SUM(cache_write_5m + cache_write_1h), \
        SUM(output_text + output_audio + output_image + reasoning), SUM(reasoning), \
        SUM(COALESCE(cost_nanos, 0)), SUM(cache_savings_nanos), \
        SUM(usage_source = 'estimated'), SUM(cost_nanos IS NULL), SUM(status >= 400)";
    let group = if n_keys == 0 {
        String::new()
    } else {
        format!(" GROUP BY {}", (1..=n_keys).map(|i| i.to_string()).collect::<Vec<_>>().join(", "))
    };
    let keys_sql = if n_keys == 0 { String::new() } else { format!("{}, ", select.join(", ")) };
    let order = if q.bucket.is_some() { format!(" ORDER BY {n_keys}, {} DESC", n_keys + 7) } else { format!(" ORDER BY {} DESC", n_keys + 7) };
    let sql = format!("SELECT {keys_sql}{sums} FROM ledger WHERE {}{group}{order}", wh.join(" AND "));

    store.with_reader(|conn| {
        let mut stmt = conn.prepare(&sql)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(args.iter()))?;
        let mut out = Vec::new();
        let n_dims = q.group_by.len();
        let u = |r: &rusqlite::Row<'_>, i: usize| -> Result<u64, rusqlite::Error> {
            Ok(r.get::<_, Option<i64>>(i)?.unwrap_or(0).max(0) as u64)
        };
        while let Some(r) = rows.next()? {
            let mut dims = Vec::with_capacity(n_dims);
            for i in 0..n_dims {
                dims.push(r.get::<_, Option<String>>(i)?);
            }
            let bucket_ms = if q.bucket.is_some() { Some(r.get::<_, i64>(n_dims)?) } else { None };
            let b = n_keys;
            out.push(SpendRow {
                dims,
                bucket_ms,
                requests: u(r, b)?,
                input_tokens: u(r, b + 1)?,
                cache_read_tokens: u(r, b + 2)?,
                cache_write_tokens: u(r, b + 3)?,
                output_tokens: u(r, b + 4)?,
                reasoning_tokens: u(r, b + 5)?,
                cost: Money::from_nanos(r.get::<_, Option<i64>>(b + 6)?.unwrap_or(0)),
                cache_savings: Money::from_nanos(r.get::<_, Option<i64>>(b + 7)?.unwrap_or(0)),
                estimated_requests: u(r, b + 8)?,
                unpriced_requests: u(r, b + 9)?,
                error_requests: u(r, b + 10)?,
            });
        }
        // An empty ledger aggregates to one all-zero row without GROUP BY; drop it.
        out.retain(|r| r.requests > 0);
        let total_cost = out.iter().map(|r| r.cost).sum();
        let total_requests = out.iter().map(|r| r.requests).sum();
        let unpriced_requests = out.iter().map(|r| r.unpriced_requests).sum();
        Ok(SpendReport { group_by: q.group_by.clone(), rows: out, total_cost, total_requests, unpriced_requests })
    })
}

fn rfc3339(ms: i64) -> Option<String> {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// The `GET /api/v1/spend` body (DESIGN §2): each grouped dimension at the row's top level.
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
    })
}

/// Text table for the terminal.
pub fn report_table(r: &SpendReport) -> String {
    let mut head: Vec<String> = r.group_by.clone();
    if r.rows.iter().any(|x| x.bucket_ms.is_some()) {
        head.push("bucket".into());
    }
    head.extend(
        ["requests", "input", "cache_read", "cache_write", "output", "reasoning", "cost_usd", "saved_usd", "estimated", "unpriced"]
            .map(String::from),
    );
    let mut lines: Vec<Vec<String>> = vec![head];
    for row in &r.rows {
        let mut l: Vec<String> = row.dims.iter().map(|d| d.clone().unwrap_or_else(|| "-".into())).collect();
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
        ]);
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
    s.push_str(&format!(
        "total: {} requests, ${} ({} unpriced)\n",
        r.total_requests, r.total_cost, r.unpriced_requests
    ));
    s
}

/// RFC 4180 CSV.
pub fn report_csv(r: &SpendReport) -> String {
    let esc = |s: &str| {
        if s.contains([',', '"', '\n']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    let mut head: Vec<String> = r.group_by.iter().map(|d| esc(d)).collect();
    head.extend(
        ["bucket", "requests", "input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens", "cost_usd", "cache_savings_usd", "estimated_requests", "unpriced_requests"]
            .map(String::from),
    );
    let mut s = head.join(",") + "\n";
    for row in &r.rows {
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
        ]);
        s.push_str(&l.join(","));
        s.push('\n');
    }
    s
}

/// `7d`, `24h`, or an RFC 3339 time → Unix ms.
pub fn parse_since(s: &str, now_ms: i64) -> Result<i64, ApiError> {
    if let Some(d) = crate::cli::parse_duration(s) {
        return Ok(now_ms - d.num_milliseconds());
    }
    parse_time(s, "since")
}

pub fn parse_time(s: &str, param: &str) -> Result<i64, ApiError> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| ApiError::invalid_param(format!("{param} {s:?} must be an RFC 3339 time or a duration like 7d"), param))
}
