//! `tollgate audit export`: the audit log as JSON lines, oldest first, read
//! from the database; and the audit entries of the commands that change
//! keys, budgets and prices in the database directly (actor `cli:<OS user>`,
//! source `cli`).

use std::io::Write;

use anyhow::{bail, Context};
use clap::Subcommand;

use crate::audit::{budget_state, parse_instant, scope_team, AuditEntry, AuditQuery, MAX_PAGE};
use crate::budget::BudgetSpec;
use crate::keys::{self, CreatedKey};
use crate::store::{KeyRecord, StoreError, Stores};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Print the audit log as JSON lines (one entry per line, oldest first).
    Export {
        /// From: milliseconds since the epoch, an RFC 3339 time, or a duration back from now (7d, 24h).
        #[arg(long)]
        since: Option<String>,
        /// Until (exclusive), in the same forms.
        #[arg(long)]
        until: Option<String>,
        /// Only this actor (e.g. admin-token:ops, cli:alice).
        #[arg(long)]
        actor: Option<String>,
        /// Only this action (key.create) or family (budget.*).
        #[arg(long)]
        action: Option<String>,
    },
}

/// Runs an `audit` subcommand against the database of `config` (`--db` /
/// `--config`); `remote` is `--url`, which this command does not use.
pub async fn run(config: &crate::config::Config, remote: Option<&str>, cmd: &AuditCommand) -> anyhow::Result<()> {
    if remote.is_some() {
        bail!("`audit export` reads the database (--db or --config); from a running gateway use GET /api/v1/audit");
    }
    let stores = Stores::open_config(&config.storage)
        .await
        .with_context(|| format!("cannot open the database {}", config.storage.url_shown()))?;
    match cmd {
        AuditCommand::Export { since, until, actor, action } => {
            let now = crate::time::now_ms();
            let bound = |v: &Option<String>, name: &str| {
                v.as_deref().map(|s| parse_instant(s, now).map_err(|e| anyhow::anyhow!("--{name}: {e}"))).transpose()
            };
            let q = AuditQuery {
                since_ms: bound(since, "since")?,
                until_ms: bound(until, "until")?,
                actor: actor.clone(),
                action: action.clone(),
                limit: MAX_PAGE,
                oldest_first: true,
                ..AuditQuery::default()
            };
            export(&stores, q, &mut std::io::stdout().lock()).await
        }
    }
}

/// Writes every entry `q` selects to `out`, one JSON object per line, a page at a time.
pub async fn export(stores: &Stores, mut q: AuditQuery, out: &mut impl Write) -> anyhow::Result<()> {
    loop {
        let page = stores.audit.list(q.clone()).await?;
        for e in &page.entries {
            writeln!(out, "{}", serde_json::to_string(&e.to_json())?)?;
        }
        match page.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => break,
        }
    }
    out.flush()?;
    Ok(())
}

/// Who runs the command line: `cli:` and the OS user.
pub fn cli_actor() -> String {
    let user = ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "unknown".into());
    format!("cli:{user}")
}

/// An entry by the command line's user.
pub fn cli_entry(time_ms: i64, action: &str, target: impl Into<String>) -> AuditEntry {
    AuditEntry::new(time_ms, cli_actor(), "cli", action, target).with_source(Some("cli"))
}

/// `keys create`: records the key created (never its secret).
pub async fn key_created(stores: &Stores, created: &CreatedKey, now_ms: i64) {
    let after = keys::audit_state(&created.record, created.budget.as_ref(), &created.limits);
    let entry = cli_entry(now_ms, crate::audit::KEY_CREATE, &created.record.id)
        .with_team(keys::key_team(&created.record))
        .with_after(Some(after));
    stores.record_audit(entry).await;
}

/// `keys revoke`: revokes the key and records it; false when there is no such key.
pub async fn revoke_key(stores: &Stores, id: &str, now_ms: i64) -> Result<bool, StoreError> {
    let before = stores.keys.list_keys().await?.into_iter().find(|k| k.id == id);
    if !stores.keys.revoke_key(id.to_owned(), now_ms).await? {
        return Ok(false);
    }
    if let Some(k) = before.filter(|k| k.revoked_ms.is_none()) {
        let after = KeyRecord { revoked_ms: Some(now_ms), ..k.clone() };
        let entry = cli_entry(now_ms, crate::audit::KEY_REVOKE, id)
            .with_team(keys::key_team(&k))
            .with_before(Some(keys::audit_state(&k, None, &[])))
            .with_after(Some(keys::audit_state(&after, None, &[])));
        stores.record_audit(entry).await;
    }
    Ok(true)
}

/// `budgets set`: stores the budget and records what it replaced.
pub async fn set_budget(stores: &Stores, spec: &BudgetSpec, now_ms: i64) -> Result<(), StoreError> {
    let before = stores.governance.list_budgets().await?.into_iter().find(|b| b.id == spec.id);
    stores.governance.upsert_budget(spec.clone(), now_ms).await?;
    if before.as_ref() != Some(spec) {
        let entry = cli_entry(now_ms, crate::audit::BUDGET_SET, &spec.id)
            .with_team(scope_team(&spec.scope))
            .with_before(before.as_ref().map(budget_state))
            .with_after(Some(budget_state(spec)));
        stores.record_audit(entry).await;
    }
    Ok(())
}

/// `budgets delete`: deletes the budget and records it; false when there is none.
pub async fn delete_budget(stores: &Stores, id: &str, now_ms: i64) -> Result<bool, StoreError> {
    let before = stores.governance.list_budgets().await?.into_iter().find(|b| b.id == id);
    if !stores.governance.delete_budget(id.to_owned()).await? {
        return Ok(false);
    }
    let entry = cli_entry(now_ms, crate::audit::BUDGET_DELETE, id)
        .with_team(before.as_ref().and_then(|b| scope_team(&b.scope)))
        .with_before(before.as_ref().map(budget_state));
    stores.record_audit(entry).await;
    Ok(true)
}

/// `prices update`: records the update applied (`diff` as `price_update::diff_json` writes it).
pub async fn price_updated(stores: &Stores, id: i64, source: &str, diff: &serde_json::Value, now_ms: i64) {
    let (before, after) = crate::audit::price_update_states(id, source, diff);
    let entry = cli_entry(now_ms, crate::audit::PRICE_UPDATE, format!("price_update:{id}"))
        .with_before(Some(before))
        .with_after(Some(after));
    stores.record_audit(entry).await;
}
