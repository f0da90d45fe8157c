//! `GET /api/v1/audit`: the audit log, newest first, a page at a time, and
//! [`Actor`], who is calling, as the entries the admin handlers record name it.
//!
//! Admins and viewers see every entry; a team admin sees the entries about
//! its own team's keys and budgets only (entries carry the team of their
//! target), never price updates or reloads.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::json;

use super::{internal, team_of, Caller};
use crate::audit::{parse_instant, AuditEntry, AuditQuery, MAX_PAGE};
use crate::config::Role;
use crate::error::ApiError;
use crate::state::AppState;
use crate::time::now_ms;

/// Who is calling, for the audit log: set by `admin_gate` beside [`Caller`].
#[derive(Debug, Clone)]
pub struct Actor {
    /// `admin-token:<name>` (`admin-token:main` for the server's own admin
    /// token), `loopback` (no admin token configured), or `key:<id>`.
    pub name: String,
    /// `admin`, `viewer`, `team_admin:<team>` or `key`.
    pub role: String,
    /// The client's IP address, as the connection gives it.
    pub source: Option<String>,
}

impl Actor {
    pub(crate) fn admin(name: String, role: &Role, source: Option<String>) -> Actor {
        Actor { name, role: role.label(), source }
    }

    /// An entry by this actor, from its address (states and team to be added).
    pub fn entry(&self, time_ms: i64, action: &str, target: impl Into<String>) -> AuditEntry {
        AuditEntry::new(time_ms, self.name.clone(), self.role.clone(), action, target).with_source(self.source.clone())
    }
}

/// The client's IP address, from the connection the listener put in the request.
pub(crate) fn peer_of(req: &axum::extract::Request) -> Option<String> {
    req.extensions().get::<crate::listener::Connection>().map(|c| c.0.peer().ip().to_string())
}

/// `GET /api/v1/audit?since=&until=&actor=&action=&limit=&cursor=`.
pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(raw): Query<Vec<(String, String)>>,
) -> Response {
    let run = async {
        let role = caller.role()?;
        let now = now_ms();
        let mut q = AuditQuery { team: team_of(&role).map(String::from), ..AuditQuery::default() };
        for (k, v) in &raw {
            match k.as_str() {
                "since" => {
                    q.since_ms = Some(
                        parse_instant(v, now).map_err(|e| ApiError::invalid_param(format!("since: {e}"), "since"))?,
                    )
                }
                "until" => {
                    q.until_ms = Some(
                        parse_instant(v, now).map_err(|e| ApiError::invalid_param(format!("until: {e}"), "until"))?,
                    )
                }
                "actor" => q.actor = Some(v.clone()),
                "action" => q.action = Some(v.clone()),
                "limit" => {
                    let n: usize = v.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        ApiError::invalid_param(format!("limit must be a number from 1 to {MAX_PAGE}"), "limit")
                    })?;
                    q.limit = n.min(MAX_PAGE);
                }
                "cursor" => {
                    q.cursor = Some(v.parse().map_err(|_| {
                        ApiError::invalid_param("cursor must be a next_cursor this API returned", "cursor")
                    })?)
                }
                other => return Err(ApiError::invalid_param(format!("unknown query parameter {other:?}"), other)),
            }
        }
        let page = state.stores.audit.list(q).await.map_err(internal)?;
        Ok::<_, ApiError>(Json(json!({
            "entries": page.entries.iter().map(AuditEntry::to_json).collect::<Vec<_>>(),
            "next_cursor": page.next_cursor.map(|c| c.to_string()),
        })))
    };
    match run.await {
        Ok(j) => j.into_response(),
        Err(e) => e.into_response(),
    }
}
