//! What the gateway tells the outside about each finished request: metrics
//! (Prometheus at `/metrics`), and later traces and anomaly signals.
//!
//! The pipeline calls [`Observer::record`] once per ledger row, just before
//! the row is handed to the ledger; nothing here may block or fail the request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::Router;

use crate::server::AppState;

use crate::ledger::LedgerRow;

#[derive(Debug, Default)]
pub struct Observer {
    auth_refused: AtomicU64,
    requests: AtomicU64,
}

impl Observer {
    pub fn new() -> Observer {
        Observer::default()
    }

    /// A request refused at authentication (it has no ledger row).
    pub fn auth_refused(&self) {
        self.auth_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// One finished request, success or not.
    pub fn record(&self, _row: &LedgerRow) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Prometheus text exposition.
    pub fn render(&self, spool_backlog_bytes: u64) -> String {
        format!(
            "# HELP tollgate_auth_refused_total Requests refused at authentication (no ledger row).\n\
             # TYPE tollgate_auth_refused_total counter\n\
             tollgate_auth_refused_total {}\n\
             # HELP tollgate_requests_total Requests that passed authentication.\n\
             # TYPE tollgate_requests_total counter\n\
             tollgate_requests_total {}\n\
             # HELP tollgate_ledger_spool_backlog_bytes Acknowledged ledger bytes not yet in the database.\n\
             # TYPE tollgate_ledger_spool_backlog_bytes gauge\n\
             tollgate_ledger_spool_backlog_bytes {}\n",
            self.auth_refused.load(Ordering::Relaxed),
            self.requests.load(Ordering::Relaxed),
            spool_backlog_bytes
        )
    }
}

/// Routes this module serves (anomalies, outcomes); merged into the server's router.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
}
