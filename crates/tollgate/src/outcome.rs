//! Cost per outcome: callers report what a request, trace or session
//! achieved (`POST /api/v1/outcomes`), and reports divide the ledger's spend
//! by the successful outcomes it bought (`GET /api/v1/outcomes/cost`).
//!
//! An outcome covers the ledger rows it names: one request, every request of
//! a trace, or every request of a session. For each group (feature, prompt
//! version, model, or any tag) the report adds up the distinct rows covered
//! by at least one outcome — failed attempts included, since they were paid
//! for — and divides by the distinct successful outcomes touching that group.
//! Money stays integer nano-dollars; an outcome's `value` is kept as the
//! decimal text the caller sent. Values only: the table and its queries are
//! in `store`.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{json, Value};
use tollgate_units::Money;

pub const MAX_NAME_LEN: usize = 128;
pub const MAX_ID_LEN: usize = 256;

/// What an outcome is recorded against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Request(String),
    Trace(String),
    Session(String),
}

/// A validated outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub id: String,
    pub time_ms: i64,
    pub subject: Subject,
    pub name: String,
    /// The caller's number, as decimal text (never stored as a float).
    pub value: Option<String>,
    pub success: bool,
    /// `admin`, or the virtual key id that reported it.
    pub reported_by: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OutcomeError {
    #[error("invalid outcome: {0}")]
    Body(String),
    #[error("give exactly one of request_id, trace_id or session_id")]
    Subject,
    #[error("{0} must be 1 to {1} printable characters")]
    Field(&'static str, usize),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutcome {
    request_id: Option<String>,
    trace_id: Option<String>,
    session_id: Option<String>,
    name: String,
    value: Option<serde_json::Number>,
    success: bool,
}

fn check(v: &str, field: &'static str, max: usize) -> Result<(), OutcomeError> {
    if v.is_empty() || v.len() > max || v.chars().any(char::is_control) {
        return Err(OutcomeError::Field(field, max));
    }
    Ok(())
}

impl Outcome {
    /// Parses a `POST /api/v1/outcomes` body.
    pub fn parse(body: &[u8], id: String, time_ms: i64, reported_by: String) -> Result<Outcome, OutcomeError> {
        let raw: RawOutcome = serde_json::from_slice(body).map_err(|e| OutcomeError::Body(e.to_string()))?;
        let subject = match (raw.request_id, raw.trace_id, raw.session_id) {
            (Some(r), None, None) => {
                check(&r, "request_id", MAX_ID_LEN)?;
                Subject::Request(r)
            }
            (None, Some(t), None) => {
                check(&t, "trace_id", MAX_ID_LEN)?;
                Subject::Trace(t)
            }
            (None, None, Some(s)) => {
                check(&s, "session_id", MAX_ID_LEN)?;
                Subject::Session(s)
            }
            _ => return Err(OutcomeError::Subject),
        };
        check(&raw.name, "name", MAX_NAME_LEN)?;
        Ok(Outcome {
            id,
            time_ms,
            subject,
            name: raw.name,
            value: raw.value.map(|n| n.to_string()),
            success: raw.success,
            reported_by,
        })
    }

    pub fn to_json(&self) -> Value {
        let (r, t, s) = match &self.subject {
            Subject::Request(v) => (Some(v), None, None),
            Subject::Trace(v) => (None, Some(v), None),
            Subject::Session(v) => (None, None, Some(v)),
        };
        let value: Value = match &self.value {
            Some(v) => serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.clone())),
            None => Value::Null,
        };
        json!({
            "id": self.id,
            "time": chrono::DateTime::<chrono::Utc>::from_timestamp_millis(self.time_ms)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            "request_id": r,
            "trace_id": t,
            "session_id": s,
            "name": self.name,
            "value": value,
            "success": self.success,
            "reported_by": self.reported_by,
        })
    }
}

/// Which outcomes a report covers.
#[derive(Debug, Clone, Default)]
pub struct CostQuery {
    /// A dimension: `feature`, `prompt`, `model`, any ledger column or tag name.
    pub by: String,
    /// Only outcomes with this name.
    pub name: Option<String>,
    /// Outcome time range, Unix ms, `[from, to)`.
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    /// Only ledger rows of this team (a team admin's view).
    pub team: Option<String>,
}

/// One group's cost per successful outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CostRow {
    /// The group's value (`None`: the dimension was not set on those rows).
    pub group: Option<String>,
    pub outcomes: u64,
    pub successes: u64,
    /// Distinct ledger rows covered.
    pub requests: u64,
    pub unpriced_requests: u64,
    pub cost: Money,
    /// `None` when the group has no successful outcome.
    pub cost_per_success: Option<Money>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CostReport {
    pub by: String,
    pub rows: Vec<CostRow>,
    pub total: CostRow,
}

/// `cost / n` to the nearest nano-dollar (halves away from zero).
pub fn per_success(cost: Money, n: u64) -> Option<Money> {
    if n == 0 {
        return None;
    }
    let (c, n) = (i128::from(cost.nanos()), i128::from(n));
    let q = (c.abs() * 2 + n) / (2 * n);
    let q = if c < 0 { -q } else { q };
    Some(Money::from_nanos(i64::try_from(q).unwrap_or(i64::MAX)))
}

#[derive(Default)]
pub(crate) struct Acc {
    pub(crate) rows: HashMap<String, Option<i64>>,
    pub(crate) outcomes: HashMap<String, bool>,
}

impl Acc {
    pub(crate) fn finish(&self, group: Option<String>) -> CostRow {
        let cost = Money::from_nanos(self.rows.values().flatten().sum());
        let successes = self.outcomes.values().filter(|s| **s).count() as u64;
        CostRow {
            group,
            outcomes: self.outcomes.len() as u64,
            successes,
            requests: self.rows.len() as u64,
            unpriced_requests: self.rows.values().filter(|c| c.is_none()).count() as u64,
            cost,
            cost_per_success: per_success(cost, successes),
        }
    }
}

fn row_json(r: &CostRow) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("outcomes".into(), r.outcomes.into());
    m.insert("successes".into(), r.successes.into());
    m.insert("failures".into(), (r.outcomes - r.successes).into());
    m.insert("requests".into(), r.requests.into());
    m.insert("unpriced_requests".into(), r.unpriced_requests.into());
    m.insert("cost_usd".into(), r.cost.to_string().into());
    m.insert("cost_per_success_usd".into(), r.cost_per_success.map(|c| c.to_string()).into());
    m
}

/// The `GET /api/v1/outcomes/cost` body: each row carries the group under the dimension's name.
pub fn report_json(r: &CostReport) -> Value {
    let rows: Vec<Value> = r
        .rows
        .iter()
        .map(|row| {
            let mut m = serde_json::Map::new();
            m.insert(r.by.clone(), row.group.clone().into());
            m.extend(row_json(row));
            Value::Object(m)
        })
        .collect();
    json!({"by": r.by, "rows": rows, "total": Value::Object(row_json(&r.total))})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_needs_exactly_one_subject_and_keeps_value_as_text() {
        let o = Outcome::parse(
            br#"{"trace_id":"t1","name":"ticket_resolved","value":0.1,"success":true}"#,
            "o1".into(),
            5,
            "admin".into(),
        )
        .unwrap();
        assert_eq!(o.subject, Subject::Trace("t1".into()));
        assert_eq!(o.value.as_deref(), Some("0.1"));
        assert_eq!(
            Outcome::parse(br#"{"name":"x","success":true}"#, "o".into(), 0, "admin".into()),
            Err(OutcomeError::Subject)
        );
        assert_eq!(
            Outcome::parse(
                br#"{"request_id":"a","session_id":"b","name":"x","success":true}"#,
                "o".into(),
                0,
                "admin".into()
            ),
            Err(OutcomeError::Subject)
        );
        assert!(matches!(
            Outcome::parse(br#"{"request_id":"a","name":"","success":true}"#, "o".into(), 0, "admin".into()),
            Err(OutcomeError::Field("name", _))
        ));
        assert!(matches!(
            Outcome::parse(br#"{"request_id":"a","name":"x"}"#, "o".into(), 0, "admin".into()),
            Err(OutcomeError::Body(_))
        ));
    }

    #[test]
    fn per_success_rounds_to_the_nearest_nano() {
        assert_eq!(per_success(Money::from_nanos(10), 3), Some(Money::from_nanos(3)));
        assert_eq!(per_success(Money::from_nanos(11), 2), Some(Money::from_nanos(6)));
        assert_eq!(per_success(Money::from_nanos(5), 0), None);
    }
}
