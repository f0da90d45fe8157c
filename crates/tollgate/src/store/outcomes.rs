//! The outcomes table and cost-per-outcome over SQLite.

use std::collections::BTreeMap;

use rusqlite::types::Value as SqlValue;
use rusqlite::Connection;

use super::sqlite::{dimension_column, SqliteStore};
use super::StoreError;
use crate::outcome::{Acc, CostQuery, CostReport, CostRow, Outcome, Subject};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS outcomes (
    id         TEXT PRIMARY KEY,
    ts_ms      INTEGER NOT NULL,
    request_id TEXT,
    trace_id   TEXT,
    session    TEXT,
    name       TEXT NOT NULL,
    value      TEXT,
    success    INTEGER NOT NULL,
    -- "admin" or the id of the virtual key that reported it
    reported_by TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS outcomes_ts ON outcomes (ts_ms);
CREATE INDEX IF NOT EXISTS ledger_session ON ledger (session);
"#;

/// Creates the table (idempotent); run before any outcome query.
fn ensure_schema(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(SCHEMA)?;
    Ok(())
}

impl SqliteStore {
    pub fn insert_outcome(&self, o: &Outcome) -> Result<(), StoreError> {
        let store = self;
        let (r, t, s) = match &o.subject {
            Subject::Request(v) => (Some(v), None, None),
            Subject::Trace(v) => (None, Some(v), None),
            Subject::Session(v) => (None, None, Some(v)),
        };
        store.with_reader(|c| {
            ensure_schema(c)?;
            c.execute(
                "INSERT INTO outcomes (id, ts_ms, request_id, trace_id, session, name, value, success, reported_by) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                rusqlite::params![o.id, o.time_ms, r, t, s, o.name, o.value, o.success, o.reported_by],
            )?;
            Ok(())
        })
    }

    pub fn outcome_cost(&self, q: &CostQuery) -> Result<CostReport, StoreError> {
        let store = self;
        let mut args: Vec<SqlValue> = Vec::new();
        let group = match dimension_column(&q.by) {
            Some(c) => format!("CAST(l.{c} AS TEXT)"),
            None => {
                args.push(SqlValue::Text(format!("$.\"{}\"", q.by.replace('"', ""))));
                format!("json_extract(l.tags, ?{})", args.len())
            }
        };
        let mut wh = String::new();
        if let Some(n) = &q.name {
            args.push(SqlValue::Text(n.clone()));
            wh.push_str(&format!(" AND o.name = ?{}", args.len()));
        }
        if let Some(f) = q.from_ms {
            args.push(SqlValue::Integer(f));
            wh.push_str(&format!(" AND o.ts_ms >= ?{}", args.len()));
        }
        if let Some(t) = q.to_ms {
            args.push(SqlValue::Integer(t));
            wh.push_str(&format!(" AND o.ts_ms < ?{}", args.len()));
        }
        if let Some(t) = &q.team {
            args.push(SqlValue::Text(t.clone()));
            wh.push_str(&format!(" AND l.team = ?{}", args.len()));
        }
        // One join per subject kind, so each uses its own index.
        let part = |col: &str, lcol: &str| {
            format!(
                "SELECT o.id, o.success, l.request_id, l.cost_nanos, {group} FROM outcomes o \
             JOIN ledger l ON l.{lcol} = o.{col} WHERE o.{col} IS NOT NULL{wh}"
            )
        };
        let sql = format!(
            "{} UNION ALL {} UNION ALL {}",
            part("request_id", "request_id"),
            part("trace_id", "trace_id"),
            part("session", "session")
        );
        store.with_reader(|c| {
            ensure_schema(c)?;
            let mut stmt = c.prepare(&sql)?;
            let mut rows = stmt.query(rusqlite::params_from_iter(args.iter()))?;
            let mut groups: BTreeMap<Option<String>, Acc> = BTreeMap::new();
            let mut all = Acc::default();
            while let Some(r) = rows.next()? {
                let oid: String = r.get(0)?;
                let success: bool = r.get(1)?;
                let rid: String = r.get(2)?;
                let cost: Option<i64> = r.get(3)?;
                let g: Option<String> = r.get(4)?;
                let acc = groups.entry(g).or_default();
                acc.rows.insert(rid.clone(), cost);
                acc.outcomes.insert(oid.clone(), success);
                all.rows.insert(rid, cost);
                all.outcomes.insert(oid, success);
            }
            let mut out: Vec<CostRow> = groups.iter().map(|(g, a)| a.finish(g.clone())).collect();
            out.sort_by(|a, b| b.cost.cmp(&a.cost).then_with(|| a.group.cmp(&b.group)));
            Ok(CostReport { by: q.by.clone(), rows: out, total: all.finish(None) })
        })
    }

    /// Recent outcomes, newest first.
    pub fn list_outcomes(&self, limit: usize) -> Result<Vec<Outcome>, StoreError> {
        let store = self;
        store.with_reader(|c| {
            ensure_schema(c)?;
            let mut stmt = c.prepare(
                "SELECT id, ts_ms, request_id, trace_id, session, name, value, success, reported_by FROM outcomes \
             ORDER BY ts_ms DESC, id DESC LIMIT ?1",
            )?;
            let mut rows = stmt.query([limit.clamp(1, 1000) as i64])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                let subject = match (
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, Option<String>>(4)?,
                ) {
                    (Some(v), _, _) => Subject::Request(v),
                    (None, Some(v), _) => Subject::Trace(v),
                    (None, None, Some(v)) => Subject::Session(v),
                    _ => return Err(StoreError::Corrupt("outcomes")),
                };
                out.push(Outcome {
                    id: r.get(0)?,
                    time_ms: r.get(1)?,
                    subject,
                    name: r.get(5)?,
                    value: r.get(6)?,
                    success: r.get(7)?,
                    reported_by: r.get(8)?,
                });
            }
            Ok(out)
        })
    }
}
