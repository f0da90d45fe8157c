//! Authentication: virtual keys (`tg_…`), stored only as keyed hashes.
//!
//! A key is looked up by HMAC-SHA256(server secret, key); the secret never
//! touches the database, logs or errors. Known keys are cached for a few
//! seconds; a revocation made through this process takes effect at once,
//! one made by another process within [`KEY_CACHE_TTL`].

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use http::HeaderMap;
use rand::distr::{Alphanumeric, SampleString};
use sha2::Sha256;

use crate::config::{AuthMode, Secret};
use crate::error::ApiError;
use crate::store::{KeyRecord, KeyStore};

pub const KEY_PREFIX: &str = "tg_";
const SECRET_LEN: usize = 40;
/// Under the 5 s within which a revocation must reach every replica.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(4);

/// Computes the keyed hash under which a key is stored.
#[derive(Clone)]
pub struct KeyHasher {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyHasher(***)")
    }
}

impl KeyHasher {
    pub fn new(secret: &[u8]) -> KeyHasher {
        let mac =
            Hmac::<Sha256>::new_from_slice(secret).unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        KeyHasher { mac }
    }

    pub fn hash(&self, key: &str) -> [u8; 32] {
        let mut m = self.mac.clone();
        m.update(key.as_bytes());
        m.finalize().into_bytes().into()
    }
}

/// A fresh key secret: `tg_` and 40 random alphanumerics (~238 bits).
pub fn generate_key() -> String {
    format!("{KEY_PREFIX}{}", Alphanumeric.sample_string(&mut rand::rng(), SECRET_LEN))
}

/// A fresh key id (public, used in budgets and reports).
pub fn generate_key_id() -> String {
    format!("key_{}", Alphanumeric.sample_string(&mut rand::rng(), 12).to_ascii_lowercase())
}

/// Who is calling.
#[derive(Debug, Clone)]
pub enum Principal {
    Key(Arc<KeyRecord>),
    /// Passthrough auth: the client's own provider key, forwarded upstream
    /// and attributed by its keyed hash.
    Passthrough {
        id: String,
        provider_key: Secret,
    },
}

impl Principal {
    pub fn id(&self) -> &str {
        match self {
            Principal::Key(k) => &k.id,
            Principal::Passthrough { id, .. } => id,
        }
    }
}

/// The credential a request carries: `Authorization: Bearer`, `x-api-key` or `api-key`.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        let token = v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")).unwrap_or(v).trim();
        if !token.is_empty() {
            return Some(token);
        }
    }
    // Google's SDKs send their key as `x-goog-api-key` (or `?key=`, which the
    // native Gemini route moves into that header).
    for h in ["x-api-key", "api-key", "x-goog-api-key"] {
        if let Some(v) = headers.get(h).and_then(|v| v.to_str().ok()).map(str::trim) {
            if !v.is_empty() {
                return Some(v);
            }
        }
    }
    None
}

/// A key looked up recently (and whether the secret presented was its
/// previous one), and when.
type CachedKey = (Arc<KeyRecord>, bool, Instant);

pub struct Authenticator {
    store: Arc<dyn KeyStore>,
    hasher: KeyHasher,
    mode: AuthMode,
    cache: RwLock<HashMap<[u8; 32], CachedKey>>,
}

fn denied(msg: &str) -> ApiError {
    ApiError::InvalidApiKey { message: msg.into() }
}

impl Authenticator {
    pub fn new(store: Arc<dyn KeyStore>, hasher: KeyHasher, mode: AuthMode) -> Authenticator {
        Authenticator { store, hasher, mode, cache: RwLock::new(HashMap::new()) }
    }

    pub fn hasher(&self) -> &KeyHasher {
        &self.hasher
    }

    /// Forget cached keys (after a revocation through this process).
    pub fn invalidate(&self) {
        self.cache.write().unwrap_or_else(|p| p.into_inner()).clear();
    }

    pub async fn authenticate(&self, headers: &HeaderMap, now_ms: i64) -> Result<Principal, ApiError> {
        let presented = presented_key(headers)
            .ok_or_else(|| denied("missing API key: send `Authorization: Bearer tg_…` or `x-api-key: tg_…`"))?;
        if !presented.starts_with(KEY_PREFIX) {
            return match self.mode {
                AuthMode::Passthrough => {
                    let h = self.hasher.hash(presented);
                    Ok(Principal::Passthrough {
                        id: format!("pt_{}", hex::encode(&h[..8])),
                        provider_key: Secret::new(presented.to_string()),
                    })
                }
                AuthMode::VirtualKeys => Err(denied("invalid API key: tollgate keys start with tg_")),
            };
        }
        let hash = self.hasher.hash(presented);
        let cached = {
            let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
            cache.get(&hash).map(|(k, previous, at)| (k.clone(), *previous, at.elapsed() < KEY_CACHE_TTL))
        };
        let (record, previous) = match cached {
            Some((k, previous, true)) => (k, previous),
            stale => {
                let found = match self.store.key_by_hash(hash).await {
                    Ok(found) => found,
                    // The database is unreachable: a key this process knows keeps
                    // working as last seen (a revocation made meanwhile waits for it).
                    Err(error) => match stale {
                        Some((k, previous, _)) => {
                            tracing::warn!(%error, "key lookup failed; using the key as last read");
                            return check(k, previous, now_ms);
                        }
                        None => {
                            tracing::error!(%error, "key lookup failed");
                            return Err(ApiError::StorageUnavailable {
                                message: "the key store cannot be reached to check this key; retry shortly".into(),
                            });
                        }
                    },
                };
                let Some(k) = found else {
                    return Err(denied("invalid API key"));
                };
                let previous = k.previous_secret;
                let k = Arc::new(k.record);
                let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
                if cache.len() > 100_000 {
                    cache.clear();
                }
                cache.insert(hash, (k.clone(), previous, Instant::now()));
                (k, previous)
            }
        };
        check(record, previous, now_ms)
    }
}

/// A known key may be used unless revoked or expired; a rotated key's
/// previous secret only until its grace period ends.
fn check(record: Arc<KeyRecord>, previous_secret: bool, now_ms: i64) -> Result<Principal, ApiError> {
    if record.revoked_ms.is_some() {
        return Err(denied("this API key has been revoked"));
    }
    if record.expires_ms.is_some_and(|e| e <= now_ms) {
        return Err(denied("this API key has expired"));
    }
    if previous_secret && record.previous.as_ref().is_none_or(|p| p.valid_until_ms <= now_ms) {
        return Err(denied("this API key was rotated and the grace period of its previous secret has ended"));
    }
    Ok(Principal::Key(record))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_look_right_and_hash_stably() {
        let k = generate_key();
        assert!(k.starts_with("tg_") && k.len() == 43, "{k}");
        assert_ne!(k, generate_key());
        let h = KeyHasher::new(b"secret");
        assert_eq!(h.hash(&k), h.hash(&k));
        assert_ne!(h.hash(&k), KeyHasher::new(b"other").hash(&k));
        assert!(!format!("{h:?}").contains("secret"));
    }

    #[test]
    fn presented_key_sources() {
        let mut m = HeaderMap::new();
        assert_eq!(presented_key(&m), None);
        m.insert("x-api-key", "tg_abc".parse().unwrap());
        assert_eq!(presented_key(&m), Some("tg_abc"));
        m.insert("authorization", "Bearer tg_xyz".parse().unwrap());
        assert_eq!(presented_key(&m), Some("tg_xyz"));
        let mut g = HeaderMap::new();
        g.insert("x-goog-api-key", "tg_goog".parse().unwrap());
        assert_eq!(presented_key(&g), Some("tg_goog"));
    }
}
