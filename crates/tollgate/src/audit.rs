//! The audit log's values: one [`AuditEntry`] per change to keys, budgets,
//! limits, prices or the configuration — who made it, what it was before
//! and after (never a secret: see [`scrub`]), when, and from where — and the
//! questions asked of the log ([`AuditQuery`], [`AuditPage`]).
//!
//! Stored by `store::AuditLog`; written through `store::Stores::record_audit`,
//! which scrubs and never fails the change it records.

use serde_json::{json, Value};

use crate::budget::{BudgetSpec, LimitKind, RateLimitSpec};

/// A key created (with the budget and limits it asked for).
pub const KEY_CREATE: &str = "key.create";
/// A key revoked.
pub const KEY_REVOKE: &str = "key.revoke";
/// A key given a new secret (the old one valid for a grace period).
pub const KEY_ROTATE: &str = "key.rotate";
/// A user signed in to the dashboard (a session opened).
pub const SESSION_START: &str = "session.start";
/// A session revoked by an admin.
pub const SESSION_REVOKE: &str = "session.revoke";
/// A budget created or replaced.
pub const BUDGET_SET: &str = "budget.set";
/// A budget deleted.
pub const BUDGET_DELETE: &str = "budget.delete";
/// A price catalog applied.
pub const PRICE_UPDATE: &str = "price.update";
/// The configuration reloaded (routes, limits, roles and admin tokens come from it).
pub const CONFIG_RELOAD: &str = "config.reload";

/// The most entries one page may hold.
pub const MAX_PAGE: usize = 1000;

/// One change, as the audit log keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// Given by the store, increasing; `None` until stored.
    pub id: Option<i64>,
    pub time_ms: i64,
    /// Who: `admin-token:<name>` (`admin-token:main` for `TOLLGATE_ADMIN_TOKEN`),
    /// `loopback` (the open admin API), `cli:<OS user>`, `reload`.
    pub actor: String,
    /// The actor's role: `admin`, `viewer`, `team_admin:<team>`, `cli`, `system`.
    pub actor_role: String,
    /// What: one of the action constants of this module (`key.create`, …).
    pub action: String,
    /// What it was done to: a key id, a budget id, a price update id, a config file.
    pub target: String,
    /// The team the target belongs to (a key's team, a budget's `team=` scope),
    /// so a team admin can be shown its own team's entries.
    pub team: Option<String>,
    /// The target before the change (`None`: it did not exist).
    pub before: Option<Value>,
    /// The target after the change (`None`: it is gone).
    pub after: Option<Value>,
    /// From where: the client's address for API calls, `cli` for the command line.
    pub source: Option<String>,
}

impl AuditEntry {
    /// An entry with no state attached yet (see the `with_…` methods).
    pub fn new(
        time_ms: i64,
        actor: impl Into<String>,
        actor_role: impl Into<String>,
        action: impl Into<String>,
        target: impl Into<String>,
    ) -> AuditEntry {
        AuditEntry {
            id: None,
            time_ms,
            actor: actor.into(),
            actor_role: actor_role.into(),
            action: action.into(),
            target: target.into(),
            team: None,
            before: None,
            after: None,
            source: None,
        }
    }

    pub fn with_team(mut self, team: Option<impl Into<String>>) -> AuditEntry {
        self.team = team.map(Into::into);
        self
    }

    pub fn with_before(mut self, before: Option<Value>) -> AuditEntry {
        self.before = before;
        self
    }

    pub fn with_after(mut self, after: Option<Value>) -> AuditEntry {
        self.after = after;
        self
    }

    pub fn with_source(mut self, source: Option<impl Into<String>>) -> AuditEntry {
        self.source = source.map(Into::into);
        self
    }

    /// The same entry with every secret-looking field dropped from `before` and `after`.
    pub fn scrubbed(mut self) -> AuditEntry {
        self.before = self.before.map(scrub);
        self.after = self.after.map(scrub);
        self
    }

    /// The entry as `GET /api/v1/audit` and `tollgate audit export` show it
    /// (docs/http-api.md, "Audit log").
    pub fn to_json(&self) -> Value {
        let time = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(self.time_ms)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        json!({
            "id": self.id,
            "time": time,
            "time_ms": self.time_ms,
            "actor": self.actor,
            "actor_role": self.actor_role,
            "action": self.action,
            "target": self.target,
            "team": self.team,
            "before": self.before,
            "after": self.after,
            "source": self.source,
        })
    }
}

/// A question to the audit log. Filters combine with AND.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    /// Entries at or after this time.
    pub since_ms: Option<i64>,
    /// Entries before this time.
    pub until_ms: Option<i64>,
    /// This actor exactly.
    pub actor: Option<String>,
    /// This action exactly, or every action under a prefix given as
    /// `budget.*` (or `budget.`).
    pub action: Option<String>,
    /// Entries about this team only.
    pub team: Option<String>,
    /// Entries per page, 1 to [`MAX_PAGE`].
    pub limit: usize,
    /// The previous page's `next_cursor`.
    pub cursor: Option<i64>,
    /// Oldest first (an export) instead of newest first.
    pub oldest_first: bool,
}

impl Default for AuditQuery {
    fn default() -> AuditQuery {
        AuditQuery {
            since_ms: None,
            until_ms: None,
            actor: None,
            action: None,
            team: None,
            limit: 100,
            cursor: None,
            oldest_first: false,
        }
    }
}

impl AuditQuery {
    /// The action filter as (text, is a prefix).
    pub fn action_filter(&self) -> Option<(&str, bool)> {
        let a = self.action.as_deref()?;
        Some(match a.strip_suffix('*') {
            Some(prefix) => (prefix, true),
            None if a.ends_with('.') => (a, true),
            None => (a, false),
        })
    }

    /// The page size actually used.
    pub fn page_size(&self) -> usize {
        self.limit.clamp(1, MAX_PAGE)
    }
}

/// A page of entries, and the cursor of the next one (`None`: this was the last).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    pub next_cursor: Option<i64>,
}

impl AuditPage {
    /// Cuts entries read one past `limit` to a page with its next cursor.
    pub fn cut(mut entries: Vec<AuditEntry>, limit: usize) -> AuditPage {
        let next_cursor = if entries.len() > limit {
            entries.truncate(limit);
            entries.last().and_then(|e| e.id)
        } else {
            None
        };
        AuditPage { entries, next_cursor }
    }
}

/// True for a field name that may hold a secret: `key`, `secret`, `hash`,
/// `token`, `password`, `api_key`, `authorization`, `credentials`, and names
/// ending in `_key`, `_secret`, `_hash`, `_token`, `_password` or holding
/// `secret` or `password` anywhere. (`key_id` is an identifier, not a secret.)
pub fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase().replace('-', "_");
    const EXACT: &[&str] = &[
        "key",
        "secret",
        "hash",
        "token",
        "password",
        "passwd",
        "api_key",
        "apikey",
        "authorization",
        "credential",
        "credentials",
    ];
    const SUFFIXES: &[&str] = &["_key", "_secret", "_hash", "_token", "_password"];
    EXACT.contains(&n.as_str())
        || SUFFIXES.iter().any(|s| n.ends_with(s))
        || n.contains("secret")
        || n.contains("password")
}

/// `v` without any object field whose name may hold a secret ([`is_secret_name`]), at any depth.
pub fn scrub(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            Value::Object(m.into_iter().filter(|(k, _)| !is_secret_name(k)).map(|(k, v)| (k, scrub(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(scrub).collect()),
        v => v,
    }
}

/// A budget as the audit log shows it. (Its scope is written `k=v,k=v`: as
/// an object, a `key=<id>` scope would lose its `key` field to [`scrub`].)
pub fn budget_state(b: &BudgetSpec) -> Value {
    json!({
        "id": b.id,
        "scope": b.scope.to_string(),
        "limit_usd": b.limit.to_string(),
        "period": b.period.to_string(),
        "action": b.action.to_string(),
        "alert_at": b.alert_at.iter().map(|t| format!("{}.{:03}", t / 1000, t % 1000)).collect::<Vec<_>>(),
        "block_unpriced": b.block_unpriced,
    })
}

/// A rate limit as the audit log shows it.
pub fn limit_state(l: &RateLimitSpec) -> Value {
    let (kind, amount) = match l.kind {
        LimitKind::Requests => ("requests", json!(l.amount)),
        LimitKind::Tokens => ("tokens", json!(l.amount)),
        LimitKind::Cost => ("cost", json!(tollgate_units::Money::from_nanos(l.amount).to_string())),
    };
    json!({
        "id": l.id,
        "scope": l.scope.to_string(),
        "kind": kind,
        "amount": amount,
        "window_ms": l.window_ms,
    })
}

/// Models listed per side of a price update's entry; the counts are always whole.
pub const MAX_PRICE_MODELS: usize = 200;

/// A price update's `before` and `after`, from its diff as
/// `price_update::diff_json` writes it: before, the old rates of the models
/// it changed; after, the update's id and source, the models it added and
/// the new rates of those it changed (at most [`MAX_PRICE_MODELS`] of each,
/// with their counts).
pub fn price_update_states(id: i64, source: &str, diff: &Value) -> (Value, Value) {
    let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
    let (added, changed) = (list(&diff["added"]), list(&diff["changed"]));
    let rates = |c: &Value, side: &str| -> Value {
        let mut m = serde_json::Map::new();
        for r in c["rates"].as_array().into_iter().flatten() {
            if let Some(what) = r["what"].as_str() {
                m.insert(what.to_owned(), r[side].clone());
            }
        }
        Value::Object(m)
    };
    let model = |c: &Value, side: &str| {
        json!({
            "provider": c["provider"],
            "model": c["model"],
            "effective_from": c["effective_from"],
            "rates": rates(c, side),
        })
    };
    let before = json!({
        "changed": changed.iter().take(MAX_PRICE_MODELS).map(|c| model(c, "old")).collect::<Vec<_>>(),
    });
    let after = json!({
        "id": id,
        "source": source,
        "added_count": added.len(),
        "changed_count": changed.len(),
        "added": added.iter().take(MAX_PRICE_MODELS).cloned().collect::<Vec<_>>(),
        "changed": changed.iter().take(MAX_PRICE_MODELS).map(|c| model(c, "new")).collect::<Vec<_>>(),
        "truncated": added.len() > MAX_PRICE_MODELS || changed.len() > MAX_PRICE_MODELS,
    });
    (before, after)
}

/// The team a budget or limit scope names, if it names one.
pub fn scope_team(scope: &crate::budget::Scope) -> Option<String> {
    scope.get("team").map(str::to_string)
}

/// A time bound of an audit question: milliseconds since the epoch
/// (`1750000000000`), an RFC 3339 time, or a duration back from `now_ms` (`24h`, `7d`).
pub fn parse_instant(s: &str, now_ms: i64) -> Result<i64, String> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().map_err(|_| format!("{s:?} is out of range"));
    }
    if let Some(d) = crate::time::parse_duration(s) {
        return Ok(now_ms - d.num_milliseconds());
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| format!("{s:?} must be milliseconds since the epoch, an RFC 3339 time or a duration like 24h"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_drops_secret_fields_at_any_depth_and_keeps_identifiers() {
        let v = json!({
            "id": "key_1", "key_id": "key_1", "name": "ci", "prefix": "tg_Ab",
            "key": "tg_secret", "hash": "ab12", "api_key": "sk-1", "Secret-Value": "x",
            "tags": {"team": "growth", "access_token": "t", "password": "p"},
            "list": [{"token": "t", "keep": 1}],
        });
        let s = scrub(v);
        assert_eq!(
            s,
            json!({
                "id": "key_1", "key_id": "key_1", "name": "ci", "prefix": "tg_Ab",
                "tags": {"team": "growth"},
                "list": [{"keep": 1}],
            })
        );
    }

    #[test]
    fn action_filter_takes_exact_names_and_prefixes() {
        let q = |a: &str| AuditQuery { action: Some(a.into()), ..AuditQuery::default() };
        assert_eq!(q("key.create").action_filter(), Some(("key.create", false)));
        assert_eq!(q("budget.*").action_filter(), Some(("budget.", true)));
        assert_eq!(q("budget.").action_filter(), Some(("budget.", true)));
        assert_eq!(AuditQuery::default().action_filter(), None);
        assert_eq!(AuditQuery { limit: 5000, ..AuditQuery::default() }.page_size(), MAX_PAGE);
        assert_eq!(AuditQuery { limit: 0, ..AuditQuery::default() }.page_size(), 1);
    }

    #[test]
    fn instants_are_milliseconds_rfc3339_or_durations_back() {
        let now = 1_750_000_000_000;
        assert_eq!(parse_instant("1700000000000", now), Ok(1_700_000_000_000));
        assert_eq!(parse_instant("2025-06-15T15:06:40Z", now), Ok(1_750_000_000_000));
        assert_eq!(parse_instant("1h", now), Ok(now - 3_600_000));
        assert!(parse_instant("yesterday", now).is_err());
        assert!(parse_instant("", now).is_err());
    }

    #[test]
    fn price_updates_show_old_rates_before_and_new_ones_after() {
        let diff = json!({
            "added": [{"provider": "openai", "model": "new-model", "input": "1", "output": "2"}],
            "changed": [{"provider": "openai", "model": "gpt-4o", "effective_from": "2025-06-15",
                "rates": [{"what": "input", "old": "2.5", "new": "2"}]}],
            "unchanged": 10, "not_in_update": 3,
        });
        let (before, after) = price_update_states(7, "prices.toml", &diff);
        assert_eq!(before["changed"][0]["rates"], json!({"input": "2.5"}));
        assert_eq!(after["changed"][0]["rates"], json!({"input": "2"}));
        assert_eq!(after["id"], 7);
        assert_eq!(after["added_count"], 1);
        assert_eq!(after["added"][0]["model"], "new-model");
        assert_eq!(after["truncated"], false);
    }

    #[test]
    fn entries_show_their_time_in_rfc3339() {
        let e = AuditEntry::new(1_750_000_000_123, "cli:ops", "cli", KEY_REVOKE, "key_1").with_source(Some("cli"));
        let v = e.to_json();
        assert_eq!(v["time"], "2025-06-15T15:06:40.123Z");
        assert_eq!(v["source"], "cli");
        assert_eq!(v["before"], Value::Null);
    }
}
