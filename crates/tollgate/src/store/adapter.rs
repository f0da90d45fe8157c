//! The async capability traits over the blocking [`SqliteStore`]: each call
//! runs on tokio's blocking pool.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::sqlite::{BatchOwner, SqliteStore};
use super::{
    AuditLog, BatchStore, GovernanceStore, KeyRecord, KeyStore, LedgerSink, NewKey, OutcomeStore, PriceUpdate, Reports,
    RequestLog, RequestPage, RequestQuery, StoreError, StoreFuture,
};
use crate::audit::{AuditEntry, AuditPage, AuditQuery};
use crate::budget::{BudgetSpec, RateLimitSpec};
use crate::outcome::{CostQuery, CostReport, Outcome};
use crate::query::{PromptCacheRow, SpendQuery, SpendReport};
use crate::record::LedgerRow;

/// A SQLite database as every storage capability.
#[derive(Debug, Clone)]
pub struct Sqlite(pub Arc<SqliteStore>);

/// Runs `f` on the database off the async runtime.
fn blocking<'a, T: Send + 'static>(
    db: &Arc<SqliteStore>,
    f: impl FnOnce(&SqliteStore) -> Result<T, StoreError> + Send + 'static,
) -> StoreFuture<'a, T> {
    let db = db.clone();
    Box::pin(
        async move { tokio::task::spawn_blocking(move || f(&db)).await.map_err(|e| StoreError::Task(e.to_string()))? },
    )
}

impl KeyStore for Sqlite {
    fn insert_key(&self, key: NewKey) -> StoreFuture<'_, ()> {
        blocking(&self.0, move |db| db.insert_key(&key))
    }
    fn key_by_hash(&self, hash: [u8; 32]) -> StoreFuture<'_, Option<super::KeyMatch>> {
        blocking(&self.0, move |db| db.key_by_hash(&hash))
    }
    fn rotate_key(
        &self,
        id: String,
        hash: [u8; 32],
        prefix: String,
        previous_valid_until_ms: i64,
    ) -> StoreFuture<'_, bool> {
        blocking(&self.0, move |db| db.rotate_key(&id, &hash, &prefix, previous_valid_until_ms))
    }
    fn list_keys(&self) -> StoreFuture<'_, Vec<KeyRecord>> {
        blocking(&self.0, |db| db.list_keys())
    }
    fn revoke_key(&self, id: String, now_ms: i64) -> StoreFuture<'_, bool> {
        blocking(&self.0, move |db| db.revoke_key(&id, now_ms))
    }
    fn key_hash_secret(&self) -> StoreFuture<'_, Vec<u8>> {
        blocking(&self.0, |db| db.key_hash_secret())
    }
}

impl LedgerSink for Sqlite {
    fn append(&self, rows: &[&LedgerRow]) -> Result<(), StoreError> {
        self.0.append(rows)
    }
}

impl RequestLog for Sqlite {
    fn requests(&self, q: RequestQuery) -> StoreFuture<'_, RequestPage> {
        blocking(&self.0, move |db| db.requests(&q))
    }
    fn rows_between(
        &self,
        from_ms: i64,
        to_ms: i64,
        after: Option<(i64, String)>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<LedgerRow>> {
        blocking(&self.0, move |db| db.rows_between(from_ms, to_ms, after, limit))
    }
    fn request(&self, id: String) -> StoreFuture<'_, Option<LedgerRow>> {
        blocking(&self.0, move |db| db.request(&id))
    }
    fn prune_raw(&self, before_ms: i64) -> StoreFuture<'_, u64> {
        blocking(&self.0, move |db| db.prune_raw(before_ms))
    }
}

impl Reports for Sqlite {
    fn spend(&self, q: SpendQuery) -> StoreFuture<'_, SpendReport> {
        blocking(&self.0, move |db| db.spend(&q))
    }
    fn prompt_cache(&self, by: String, from_ms: i64) -> StoreFuture<'_, Vec<PromptCacheRow>> {
        blocking(&self.0, move |db| db.prompt_cache(&by, from_ms))
    }
    fn spend_per_second(&self, filters: Vec<(String, String)>, from_ms: i64) -> StoreFuture<'_, Vec<(i64, i64)>> {
        blocking(&self.0, move |db| db.spend_per_second(&filters, from_ms))
    }
    fn spend_per_second_many(&self, asks: Vec<(Vec<(String, String)>, i64)>) -> StoreFuture<'_, Vec<Vec<(i64, i64)>>> {
        blocking(&self.0, move |db| db.spend_per_second_many(&asks))
    }
    fn unpriced_models(&self) -> StoreFuture<'_, Vec<(String, String, i64)>> {
        blocking(&self.0, |db| db.unpriced_models())
    }
}

impl GovernanceStore for Sqlite {
    fn upsert_budget(&self, b: BudgetSpec, now_ms: i64) -> StoreFuture<'_, ()> {
        blocking(&self.0, move |db| db.upsert_budget(&b, now_ms))
    }
    fn delete_budget(&self, id: String) -> StoreFuture<'_, bool> {
        blocking(&self.0, move |db| db.delete_budget(&id))
    }
    fn list_budgets(&self) -> StoreFuture<'_, Vec<BudgetSpec>> {
        blocking(&self.0, |db| db.list_budgets())
    }
    fn upsert_limit(&self, l: RateLimitSpec, now_ms: i64) -> StoreFuture<'_, ()> {
        blocking(&self.0, move |db| db.upsert_limit(&l, now_ms))
    }
    fn list_limits(&self) -> StoreFuture<'_, Vec<RateLimitSpec>> {
        blocking(&self.0, |db| db.list_limits())
    }
    fn governance_version(&self) -> StoreFuture<'_, (i64, i64, i64, i64)> {
        blocking(&self.0, |db| db.governance_version())
    }
    fn record_alert(
        &self,
        budget_id: String,
        period_start_ms: i64,
        threshold: u32,
        now_ms: i64,
    ) -> StoreFuture<'_, bool> {
        blocking(&self.0, move |db| db.record_alert(&budget_id, period_start_ms, threshold, now_ms))
    }
    fn fired_alerts(&self, budget_id: String, period_start_ms: i64) -> StoreFuture<'_, BTreeSet<u32>> {
        blocking(&self.0, move |db| db.fired_alerts(&budget_id, period_start_ms))
    }
    fn recent_alerts(&self, limit: usize) -> StoreFuture<'_, Vec<super::FiredAlert>> {
        blocking(&self.0, move |db| db.recent_alerts(limit))
    }
    fn alerts_fired_since(&self, from_ms: i64) -> StoreFuture<'_, Vec<super::FiredAlert>> {
        blocking(&self.0, move |db| db.alerts_fired_since(from_ms))
    }
    fn insert_price_update(
        &self,
        source: String,
        applied_by: String,
        catalog: String,
        now_ms: i64,
    ) -> StoreFuture<'_, i64> {
        blocking(&self.0, move |db| db.insert_price_update(&source, &applied_by, &catalog, now_ms))
    }
    fn price_updates(&self) -> StoreFuture<'_, Vec<PriceUpdate>> {
        blocking(&self.0, |db| db.price_updates())
    }
    fn price_update_version(&self) -> StoreFuture<'_, i64> {
        blocking(&self.0, |db| db.price_update_version())
    }
}

impl OutcomeStore for Sqlite {
    fn insert_outcome(&self, o: Outcome) -> StoreFuture<'_, ()> {
        blocking(&self.0, move |db| db.insert_outcome(&o))
    }
    fn list_outcomes(&self, limit: usize) -> StoreFuture<'_, Vec<Outcome>> {
        blocking(&self.0, move |db| db.list_outcomes(limit))
    }
    fn outcome_cost(&self, q: CostQuery) -> StoreFuture<'_, CostReport> {
        blocking(&self.0, move |db| db.outcome_cost(&q))
    }
}

impl BatchStore for Sqlite {
    fn record_batch_object(
        &self,
        id: String,
        kind: &'static str,
        owner: BatchOwner,
        now_ms: i64,
    ) -> StoreFuture<'_, ()> {
        blocking(&self.0, move |db| db.record_batch_object(&id, kind, &owner, now_ms))
    }
    fn batch_object_owner(&self, id: String) -> StoreFuture<'_, Option<BatchOwner>> {
        blocking(&self.0, move |db| db.batch_object_owner(&id))
    }
    fn record_batch(
        &self,
        id: String,
        provider: String,
        key_id: String,
        attribution: String,
        now_ms: i64,
    ) -> StoreFuture<'_, ()> {
        blocking(&self.0, move |db| db.record_batch(&id, &provider, &key_id, &attribution, now_ms))
    }
    fn batch(&self, id: String) -> StoreFuture<'_, Option<(String, String, String)>> {
        blocking(&self.0, move |db| db.batch(&id))
    }
    fn record_batch_file(&self, file_id: String, batch_id: String) -> StoreFuture<'_, ()> {
        blocking(&self.0, move |db| db.record_batch_file(&file_id, &batch_id))
    }
    fn batch_of_file(&self, file_id: String) -> StoreFuture<'_, Option<String>> {
        blocking(&self.0, move |db| db.batch_of_file(&file_id))
    }
}

impl AuditLog for Sqlite {
    fn record(&self, entry: AuditEntry) -> StoreFuture<'_, i64> {
        blocking(&self.0, move |db| db.record_audit(&entry))
    }
    fn list(&self, q: AuditQuery) -> StoreFuture<'_, AuditPage> {
        blocking(&self.0, move |db| db.audit(&q))
    }
}

/// The loader can also write straight into the database (same call, no wrapper).
impl LedgerSink for SqliteStore {
    fn append(&self, rows: &[&LedgerRow]) -> Result<(), StoreError> {
        SqliteStore::append(self, rows)
    }
}

impl super::SessionStore for Sqlite {
    fn insert_session(&self, s: crate::session::Session) -> StoreFuture<'_, ()> {
        blocking(&self.0, move |db| db.insert_session(&s))
    }
    fn session(&self, id_hash: [u8; 32]) -> StoreFuture<'_, Option<crate::session::Session>> {
        blocking(&self.0, move |db| db.session(&id_hash))
    }
    fn active_sessions(&self, now_ms: i64) -> StoreFuture<'_, Vec<crate::session::Session>> {
        blocking(&self.0, move |db| db.active_sessions(now_ms))
    }
    fn revoke_session(&self, handle: String, now_ms: i64) -> StoreFuture<'_, bool> {
        blocking(&self.0, move |db| db.revoke_session(&handle, now_ms))
    }
    fn prune_sessions(&self, before_ms: i64) -> StoreFuture<'_, u64> {
        blocking(&self.0, move |db| db.prune_sessions(before_ms))
    }
}

impl super::ReconciliationStore for Sqlite {
    fn save_reconciliation(
        &self,
        provider: String,
        from_day: String,
        to_day: String,
        lines: Vec<crate::reconciliation::ReconLine>,
        now_ms: i64,
    ) -> StoreFuture<'_, ()> {
        blocking(&self.0, move |db| db.save_reconciliation(&provider, &from_day, &to_day, &lines, now_ms))
    }
    fn reconciliation(
        &self,
        provider: Option<String>,
        from_day: String,
        to_day: String,
    ) -> StoreFuture<'_, Vec<crate::reconciliation::ReconLine>> {
        blocking(&self.0, move |db| db.reconciliation(provider.as_deref(), &from_day, &to_day))
    }
}
