//! Virtual key management shared by the CLI and the admin API: create (the
//! secret is returned once and stored only as a keyed hash), list, revoke.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::auth::{generate_key, generate_key_id, KeyHasher};
use crate::error::ApiError;
use crate::store::{KeyRecord, KeyStore, NewKey};

pub use crate::store::KEY_PREFIX_SHOWN;

/// What the caller asks for.
#[derive(Debug, Clone, Default)]
pub struct KeySpec {
    pub name: String,
    pub team: Option<String>,
    pub user: Option<String>,
    /// Default tags (the request may override).
    pub tags: Vec<(String, String)>,
    /// Enforced tags (the request cannot override).
    pub enforce_tags: Vec<(String, String)>,
    pub models: Vec<String>,
    pub expires_ms: Option<i64>,
    /// `USD/PERIOD`, e.g. `50/month`: a blocking budget on this key alone.
    pub budget: Option<String>,
    pub rpm: Option<i64>,
    pub tpm: Option<i64>,
}

/// The budget and limits a key asks for, scoped to that key.
pub fn key_governance(
    key_id: &str,
    spec: &KeySpec,
) -> Result<(Option<crate::budget::BudgetSpec>, Vec<crate::budget::RateLimitSpec>), ApiError> {
    use crate::budget::{Action, BudgetSpec, LimitKind, Period, RateLimitSpec, Scope, DEFAULT_ALERTS};
    let scope = Scope::parse(&format!("key={key_id}")).map_err(ApiError::invalid)?;
    let budget = match &spec.budget {
        None => None,
        Some(b) => {
            let (usd, period) = b.split_once('/').ok_or_else(|| {
                ApiError::invalid_param(format!("budget {b:?} must be USD/PERIOD, e.g. 50/month"), "budget")
            })?;
            let limit: tollgate_units::Money =
                usd.parse().map_err(|e| ApiError::invalid_param(format!("{e}"), "budget"))?;
            if limit.nanos() <= 0 {
                return Err(ApiError::invalid_param("the budget must be positive", "budget"));
            }
            let period = Period::parse(period).map_err(|e| ApiError::invalid_param(e, "budget"))?;
            Some(BudgetSpec {
                id: format!("key:{key_id}"),
                scope: scope.clone(),
                limit,
                period,
                action: Action::Block,
                alert_at: DEFAULT_ALERTS.to_vec(),
                block_unpriced: false,
            })
        }
    };
    let mut limits = Vec::new();
    for (n, kind, name) in [(spec.rpm, LimitKind::Requests, "rpm"), (spec.tpm, LimitKind::Tokens, "tpm")] {
        if let Some(n) = n {
            if n <= 0 {
                return Err(ApiError::invalid_param(format!("{name} must be positive"), name));
            }
            limits.push(RateLimitSpec {
                id: format!("key:{key_id}/{name}"),
                scope: scope.clone(),
                kind,
                amount: n,
                window_ms: 60_000,
            });
        }
    }
    Ok((budget, limits))
}

/// A created key: the record and its secret, shown this once.
#[derive(Debug)]
pub struct CreatedKey {
    pub record: KeyRecord,
    pub secret: String,
    /// The budget stored with it ([`create_with_limits`]).
    pub budget: Option<crate::budget::BudgetSpec>,
    /// The rate limits stored with it ([`create_with_limits`]).
    pub limits: Vec<crate::budget::RateLimitSpec>,
}

fn check_tag(k: &str, v: &str) -> Result<(), ApiError> {
    let ok_key = !k.is_empty()
        && k.len() <= crate::attribution::MAX_TAG_KEY_LEN
        && k.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b));
    if !ok_key {
        return Err(ApiError::invalid(format!("tag name {k:?} may only use letters, digits, '_', '-', '.', ':'")));
    }
    if v.is_empty() || v.len() > crate::attribution::MAX_TAG_VALUE_LEN || v.chars().any(char::is_control) {
        return Err(ApiError::invalid(format!("tag {k:?} needs a printable value of 1 to 256 bytes")));
    }
    Ok(())
}

pub async fn create(
    store: &dyn KeyStore,
    hasher: &KeyHasher,
    spec: KeySpec,
    now_ms: i64,
) -> Result<CreatedKey, ApiError> {
    if spec.name.trim().is_empty() {
        return Err(ApiError::invalid_param("a key needs a name", "name"));
    }
    // Identity tags (team, user, org) are always enforced: a request cannot move itself to another team.
    let mut default_tags = BTreeMap::new();
    let mut enforced_tags = BTreeMap::new();
    for (k, v) in spec.tags {
        check_tag(&k, &v)?;
        let k = k.to_ascii_lowercase();
        if crate::attribution::IDENTITY_TAGS.contains(&k.as_str()) {
            enforced_tags.insert(k, v);
        } else {
            default_tags.insert(k, v);
        }
    }
    for (k, v) in spec.enforce_tags {
        check_tag(&k, &v)?;
        enforced_tags.insert(k.to_ascii_lowercase(), v);
    }
    if let Some(t) = spec.team {
        check_tag("team", &t)?;
        enforced_tags.insert("team".into(), t);
    }
    if let Some(u) = spec.user {
        check_tag("user", &u)?;
        enforced_tags.insert("user".into(), u);
    }
    if spec.expires_ms.is_some_and(|e| e <= now_ms) {
        return Err(ApiError::invalid_param("the expiry is in the past", "expires_at"));
    }
    let secret = generate_key();
    let record = KeyRecord {
        id: generate_key_id(),
        name: spec.name,
        prefix: secret.chars().take(KEY_PREFIX_SHOWN).collect(),
        default_tags,
        enforced_tags,
        models: spec.models,
        created_ms: now_ms,
        expires_ms: spec.expires_ms,
        revoked_ms: None,
        previous: None,
    };
    store
        .insert_key(NewKey { record: record.clone(), hash: hasher.hash(&secret) })
        .await
        .map_err(|e| ApiError::Internal { message: format!("cannot store the key: {e}") })?;
    Ok(CreatedKey { record, secret, budget: None, limits: Vec::new() })
}

/// Creates a key and the budget and rate limits it asks for (stored, and put
/// in force on `governor` when the gateway is running in this process).
pub async fn create_governed(
    stores: &crate::store::Stores,
    governor: &crate::govern::Governor,
    hasher: &KeyHasher,
    spec: KeySpec,
    now_ms: i64,
) -> Result<CreatedKey, ApiError> {
    let created = create_with_limits(stores, hasher, spec, now_ms).await?;
    let internal = |e: crate::store::StoreError| ApiError::Internal { message: e.to_string() };
    let budgets = stores.governance.list_budgets().await.map_err(internal)?;
    for b in budgets.into_iter().filter(|b| b.id == format!("key:{}", created.record.id)) {
        crate::govern::install_budget(stores, governor, b, now_ms).await.map_err(internal)?;
    }
    for l in stores
        .governance
        .list_limits()
        .await
        .map_err(internal)?
        .into_iter()
        .filter(|l| l.id.starts_with(&format!("key:{}/", created.record.id)))
    {
        governor.set_limit(l, now_ms);
    }
    Ok(created)
}

/// Creates a key and stores the budget and limits it asks for.
pub async fn create_with_limits(
    stores: &crate::store::Stores,
    hasher: &KeyHasher,
    spec: KeySpec,
    now_ms: i64,
) -> Result<CreatedKey, ApiError> {
    // Validate the limits before anything is written.
    key_governance("key_check", &spec)?;
    let spec2 = spec.clone();
    let mut created = create(stores.keys.as_ref(), hasher, spec, now_ms).await?;
    let (budget, limits) = key_governance(&created.record.id, &spec2)?;
    let internal = |e: crate::store::StoreError| ApiError::Internal { message: e.to_string() };
    if let Some(b) = &budget {
        stores.governance.upsert_budget(b.clone(), now_ms).await.map_err(internal)?;
    }
    for l in &limits {
        stores.governance.upsert_limit(l.clone(), now_ms).await.map_err(internal)?;
    }
    created.budget = budget;
    created.limits = limits;
    Ok(created)
}

fn ms_to_rfc3339(ms: Option<i64>) -> Option<String> {
    ms.and_then(chrono::DateTime::<chrono::Utc>::from_timestamp_millis)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// A key without its secret.
pub fn record_json(k: &KeyRecord) -> Value {
    json!({
        "id": k.id,
        "name": k.name,
        "prefix": k.prefix,
        "tags": k.default_tags,
        "enforced_tags": k.enforced_tags,
        "models": k.models,
        "created_at": ms_to_rfc3339(Some(k.created_ms)),
        "expires_at": ms_to_rfc3339(k.expires_ms),
        "revoked_at": ms_to_rfc3339(k.revoked_ms),
        "previous_prefix": k.previous.as_ref().map(|p| &p.prefix),
        "previous_valid_until": k.previous.as_ref().and_then(|p| ms_to_rfc3339(Some(p.valid_until_ms))),
    })
}

/// The longest grace period a rotated key's previous secret may keep working.
pub const MAX_GRACE_MS: i64 = 30 * 86_400_000;

/// A rotated key: the record after rotation, and its new secret (shown once).
#[derive(Debug)]
pub struct RotatedKey {
    pub before: KeyRecord,
    pub record: KeyRecord,
    pub secret: String,
}

/// Gives the key `before` (as the caller just read it) a new secret; the
/// current one keeps working for `grace_ms` (0: refused at once). A revoked
/// key cannot be rotated.
pub async fn rotate(
    store: &dyn KeyStore,
    hasher: &KeyHasher,
    before: KeyRecord,
    grace_ms: i64,
    now_ms: i64,
) -> Result<RotatedKey, ApiError> {
    if !(0..=MAX_GRACE_MS).contains(&grace_ms) {
        return Err(ApiError::invalid_param("the grace period must be from 0 seconds to 30 days", "grace_seconds"));
    }
    let internal = |e: crate::store::StoreError| ApiError::Internal { message: format!("key store: {e}") };
    let id = before.id.as_str();
    if before.revoked_ms.is_some() {
        return Err(ApiError::invalid(format!("key {id:?} is revoked: a revoked key cannot be rotated")));
    }
    let secret = generate_key();
    let prefix: String = secret.chars().take(KEY_PREFIX_SHOWN).collect();
    let valid_until = now_ms.saturating_add(grace_ms);
    let done =
        store.rotate_key(id.to_string(), hasher.hash(&secret), prefix.clone(), valid_until).await.map_err(internal)?;
    if !done {
        // Revoked (or deleted) between the read and the update.
        return Err(ApiError::invalid(format!("key {id:?} is revoked: a revoked key cannot be rotated")));
    }
    let record = KeyRecord {
        prefix,
        previous: Some(crate::store::PreviousSecret { prefix: before.prefix.clone(), valid_until_ms: valid_until }),
        ..before.clone()
    };
    Ok(RotatedKey { before, record, secret })
}

/// The team a key belongs to (enforced, else default tag).
pub fn key_team(k: &KeyRecord) -> Option<&str> {
    k.enforced_tags.get("team").or_else(|| k.default_tags.get("team")).map(String::as_str)
}

/// A key as the audit log shows it: [`record_json`] (never the secret or
/// its hash), with the budget and limits it was created with, if any.
pub fn audit_state(
    k: &KeyRecord,
    budget: Option<&crate::budget::BudgetSpec>,
    limits: &[crate::budget::RateLimitSpec],
) -> Value {
    let mut v = record_json(k);
    if let Some(b) = budget {
        v["budget"] = crate::audit::budget_state(b);
    }
    if !limits.is_empty() {
        v["limits"] = Value::Array(limits.iter().map(crate::audit::limit_state).collect());
    }
    v
}

/// A new key with its secret (shown once).
pub fn created_json(c: &CreatedKey) -> Value {
    let mut v = record_json(&c.record);
    v["key"] = Value::String(c.secret.clone());
    v
}
