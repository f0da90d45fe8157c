//! Storage, by capability: virtual keys ([`KeyStore`]) and the ledger
//! ([`LedgerStore`]). SQLite (embedded) is always available.
//!
//! The traits are blocking on purpose: implementations run on the ledger
//! writer thread or inside `spawn_blocking`, never on the async request path.

mod outcomes;
mod reports;
pub mod sqlite;

use std::collections::BTreeMap;

use crate::record::LedgerRow;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("storage url {0:?} is not supported (use sqlite://PATH)")]
    UnsupportedUrl(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("corrupt value in column {0}")]
    Corrupt(&'static str),
}

/// Characters of a key's secret kept (and shown) to recognise it: `tg_` and
/// two of the 40 random ones, so the stored prefix gives almost nothing away.
pub const KEY_PREFIX_SHOWN: usize = 5;

/// A virtual key as stored: never the secret, only its keyed hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub id: String,
    pub name: String,
    /// The first characters of the secret, for people to recognise it (`tg_AbC1…`).
    pub prefix: String,
    /// Tags the request may override (team, user, env, …).
    pub default_tags: BTreeMap<String, String>,
    /// Tags the request cannot override.
    pub enforced_tags: BTreeMap<String, String>,
    /// Allowed model names or patterns (`claude-*`); empty = all.
    pub models: Vec<String>,
    pub created_ms: i64,
    pub expires_ms: Option<i64>,
    pub revoked_ms: Option<i64>,
}

/// A key to create (the secret's hash is computed by `auth`).
#[derive(Debug, Clone)]
pub struct NewKey {
    pub record: KeyRecord,
    pub hash: [u8; 32],
}

pub trait KeyStore: Send + Sync {
    fn insert_key(&self, key: &NewKey) -> Result<(), StoreError>;
    fn key_by_hash(&self, hash: &[u8; 32]) -> Result<Option<KeyRecord>, StoreError>;
    fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError>;
    /// Marks the key revoked; false when no such key.
    fn revoke_key(&self, id: &str, now_ms: i64) -> Result<bool, StoreError>;
    /// The server-side secret that keys the key hashes, created on first use.
    fn key_hash_secret(&self) -> Result<Vec<u8>, StoreError>;
}

pub trait LedgerStore: Send + Sync {
    /// Stores the rows in one transaction; a row whose request id is already
    /// present is skipped (idempotent replay).
    fn append(&self, rows: &[&LedgerRow]) -> Result<(), StoreError>;
    /// Newest first, with an opaque cursor from the previous page.
    fn requests(&self, q: &RequestQuery) -> Result<RequestPage, StoreError>;
}

pub use crate::query::{RequestPage, RequestQuery};
