//! Virtual key management shared by the CLI and the admin API: create (the
//! secret is returned once and stored only as a keyed hash), list, revoke.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::auth::{generate_key, generate_key_id, KeyHasher};
use crate::error::ApiError;
use crate::store::{KeyRecord, KeyStore, NewKey};

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
}

/// A created key: the record and its secret, shown this once.
#[derive(Debug)]
pub struct CreatedKey {
    pub record: KeyRecord,
    pub secret: String,
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

pub fn create(store: &dyn KeyStore, hasher: &KeyHasher, spec: KeySpec, now_ms: i64) -> Result<CreatedKey, ApiError> {
    if spec.name.trim().is_empty() {
        return Err(ApiError::invalid_param("a key needs a name", "name"));
    }
    let mut default_tags = BTreeMap::new();
    for (k, v) in spec.tags {
        check_tag(&k, &v)?;
        default_tags.insert(k.to_ascii_lowercase(), v);
    }
    if let Some(t) = spec.team {
        check_tag("team", &t)?;
        default_tags.insert("team".into(), t);
    }
    if let Some(u) = spec.user {
        check_tag("user", &u)?;
        default_tags.insert("user".into(), u);
    }
    let mut enforced_tags = BTreeMap::new();
    for (k, v) in spec.enforce_tags {
        check_tag(&k, &v)?;
        enforced_tags.insert(k.to_ascii_lowercase(), v);
    }
    if spec.expires_ms.is_some_and(|e| e <= now_ms) {
        return Err(ApiError::invalid_param("the expiry is in the past", "expires_at"));
    }
    let secret = generate_key();
    let record = KeyRecord {
        id: generate_key_id(),
        name: spec.name,
        prefix: secret.chars().take(7).collect(),
        default_tags,
        enforced_tags,
        models: spec.models,
        created_ms: now_ms,
        expires_ms: spec.expires_ms,
        revoked_ms: None,
    };
    store
        .insert_key(&NewKey { record: record.clone(), hash: hasher.hash(&secret) })
        .map_err(|e| ApiError::Internal { message: format!("cannot store the key: {e}") })?;
    Ok(CreatedKey { record, secret })
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
    })
}

/// A new key with its secret (shown once).
pub fn created_json(c: &CreatedKey) -> Value {
    let mut v = record_json(&c.record);
    v["key"] = Value::String(c.secret.clone());
    v
}
