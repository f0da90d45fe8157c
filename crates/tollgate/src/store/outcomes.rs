//! The outcomes table and cost-per-outcome over SQLite.

use rusqlite::Connection;

use super::sql::{self, Dialect, OutcomeJoin};
use super::sqlite::SqliteStore;
use super::StoreError;
use crate::outcome::{CostQuery, CostReport, Outcome, Subject};

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
        let query = sql::outcome_cost_query(Dialect::Sqlite, q);
        let joined = self.with_reader(|c| {
            ensure_schema(c)?;
            let mut stmt = c.prepare(&query.text)?;
            let mut rows = stmt.query(rusqlite::params_from_iter(super::sqlite::values(&query)))?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(OutcomeJoin {
                    outcome_id: r.get(0)?,
                    success: r.get(1)?,
                    request_id: r.get(2)?,
                    cost_nanos: r.get(3)?,
                    group: r.get(4)?,
                });
            }
            Ok(out)
        })?;
        Ok(sql::fold_outcome_cost(q, joined))
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
