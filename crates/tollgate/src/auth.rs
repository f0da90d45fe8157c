//! Authentication: virtual keys (`tg_…`), stored only as keyed hashes.
//!
//! A key is looked up by HMAC-SHA256(server secret, key); the secret never
//! touches the database, logs or errors. Known keys are cached for a few
//! seconds; a revocation made through this process takes effect at once,
//! one made by another process within [`KEY_CACHE_TTL`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
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

/// What the request path needs of a virtual key, as the authenticator
/// caches it: its id, its policy and the dates that end it. Name and
/// prefix are left out (the request path never reads them), and keys with
/// the same tags and models share one [`KeyPolicy`], so a cached key costs
/// about 200 bytes (`bench/RESULTS.md`) instead of its whole record's ~1.8 KB.
#[derive(Debug)]
pub struct KeyGrant {
    pub id: Box<str>,
    pub policy: Arc<KeyPolicy>,
    expires_ms: Option<i64>,
    revoked: bool,
    /// Until when the secret before the last rotation still works.
    previous_valid_until_ms: Option<i64>,
}

/// The tags a key brings and the models it may use.
#[derive(Debug, Default, PartialEq, Eq, Hash)]
pub struct KeyPolicy {
    /// Tags the request may override (team, user, env, …).
    pub default_tags: BTreeMap<String, String>,
    /// Tags the request cannot override.
    pub enforced_tags: BTreeMap<String, String>,
    /// Allowed model names or patterns; empty = all.
    pub models: Vec<String>,
}

/// Who is calling.
#[derive(Debug, Clone)]
pub enum Principal {
    Key(Arc<KeyGrant>),
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

/// A key looked up recently: its grant, and when it was read (milliseconds
/// since the authenticator started) with, in the top bit, whether the secret
/// presented was its previous one. 16 bytes.
type CachedKey = (Arc<KeyGrant>, u64);

const PREVIOUS_SECRET: u64 = 1 << 63;

/// The cache's key: the first 128 bits of the presented secret's HMAC (a
/// truncated HMAC under the server secret: no one without it can make two
/// secrets meet, and by chance that takes ~2^64 keys).
fn cache_key(hash: &[u8; 32]) -> [u8; 16] {
    let mut k = [0u8; 16];
    k.copy_from_slice(&hash[..16]);
    k
}

/// Keys the cache holds at most; beyond, it starts again empty.
const KEY_CACHE_MAX: usize = 100_000;

pub struct Authenticator {
    store: Arc<dyn KeyStore>,
    hasher: KeyHasher,
    mode: AuthMode,
    cache: RwLock<HashMap<[u8; 16], CachedKey>>,
    /// The policies of the cached keys, each held once.
    policies: Mutex<HashSet<Arc<KeyPolicy>>>,
    started: Instant,
}

fn denied(msg: &str) -> ApiError {
    ApiError::InvalidApiKey { message: msg.into() }
}

impl Authenticator {
    pub fn new(store: Arc<dyn KeyStore>, hasher: KeyHasher, mode: AuthMode) -> Authenticator {
        Authenticator {
            store,
            hasher,
            mode,
            cache: RwLock::new(HashMap::new()),
            policies: Mutex::new(HashSet::new()),
            started: Instant::now(),
        }
    }

    pub fn hasher(&self) -> &KeyHasher {
        &self.hasher
    }

    /// Forget cached keys (after a revocation through this process).
    pub fn invalidate(&self) {
        self.cache.write().unwrap_or_else(|p| p.into_inner()).clear();
        self.policies.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The compact form a key is cached in, its policy shared with the
    /// cached keys that have the same.
    fn grant(&self, k: KeyRecord) -> Arc<KeyGrant> {
        let policy = KeyPolicy { default_tags: k.default_tags, enforced_tags: k.enforced_tags, models: k.models };
        let policy = {
            let mut set = self.policies.lock().unwrap_or_else(|p| p.into_inner());
            match set.get(&policy) {
                Some(shared) => shared.clone(),
                None => {
                    // Policies of keys edited again and again must not pile up:
                    // grants keep theirs; new ones just stop sharing with them.
                    if set.len() >= KEY_CACHE_MAX {
                        set.clear();
                    }
                    let p = Arc::new(policy);
                    set.insert(p.clone());
                    p
                }
            }
        };
        Arc::new(KeyGrant {
            id: k.id.into_boxed_str(),
            policy,
            expires_ms: k.expires_ms,
            revoked: k.revoked_ms.is_some(),
            previous_valid_until_ms: k.previous.map(|p| p.valid_until_ms),
        })
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
        let now = self.elapsed_ms();
        let ttl = KEY_CACHE_TTL.as_millis() as u64;
        let cached = {
            let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
            cache.get(&cache_key(&hash)).map(|(k, stamp)| {
                let at = stamp & !PREVIOUS_SECRET;
                (k.clone(), stamp & PREVIOUS_SECRET != 0, now.saturating_sub(at) < ttl)
            })
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
                let full = {
                    let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
                    cache.len() >= KEY_CACHE_MAX
                };
                if full {
                    self.invalidate();
                }
                let k = self.grant(k.record);
                let stamp = (now & !PREVIOUS_SECRET) | if previous { PREVIOUS_SECRET } else { 0 };
                self.cache.write().unwrap_or_else(|p| p.into_inner()).insert(cache_key(&hash), (k.clone(), stamp));
                (k, previous)
            }
        };
        check(record, previous, now_ms)
    }
}

/// A known key may be used unless revoked or expired; a rotated key's
/// previous secret only until its grace period ends.
fn check(record: Arc<KeyGrant>, previous_secret: bool, now_ms: i64) -> Result<Principal, ApiError> {
    if record.revoked {
        return Err(denied("this API key has been revoked"));
    }
    if record.expires_ms.is_some_and(|e| e <= now_ms) {
        return Err(denied("this API key has expired"));
    }
    if previous_secret && record.previous_valid_until_ms.is_none_or(|until| until <= now_ms) {
        return Err(denied("this API key was rotated and the grace period of its previous secret has ended"));
    }
    Ok(Principal::Key(record))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cached_keys_share_their_policy_and_keep_their_own_id_and_dates() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let stores = crate::store::Stores::open(&url).await.unwrap();
        let hasher = KeyHasher::new(b"s");
        let spec = |name: &str, team: &str| crate::keys::KeySpec {
            name: name.into(),
            team: Some(team.into()),
            tags: vec![("env".into(), "prod".into())],
            models: vec!["gpt-4o*".into()],
            ..Default::default()
        };
        let now = 1_000;
        let mut made = Vec::new();
        for (name, team) in [("a", "growth"), ("b", "growth"), ("c", "search")] {
            made.push(crate::keys::create(stores.keys.as_ref(), &hasher, spec(name, team), now).await.unwrap());
        }
        let auth = Authenticator::new(stores.keys.clone(), hasher, AuthMode::VirtualKeys);
        let mut grants = Vec::new();
        for m in &made {
            let mut h = HeaderMap::new();
            h.insert(http::header::AUTHORIZATION, format!("Bearer {}", m.secret).parse().unwrap());
            let Principal::Key(g) = auth.authenticate(&h, now).await.unwrap() else { panic!("a virtual key") };
            assert_eq!(&*g.id, m.record.id.as_str());
            grants.push(g);
        }
        // a and b have the same tags and models: one policy between them; c has its own team.
        assert!(Arc::ptr_eq(&grants[0].policy, &grants[1].policy));
        assert!(!Arc::ptr_eq(&grants[0].policy, &grants[2].policy));
        assert_eq!(grants[2].policy.enforced_tags.get("team").map(String::as_str), Some("search"));
        assert_eq!(grants[0].policy.default_tags.get("env").map(String::as_str), Some("prod"));
        assert_eq!(grants[0].policy.models, ["gpt-4o*"]);
        // A cached grant still ends where its key does.
        let expired = Arc::new(KeyGrant { expires_ms: Some(now), ..clone_grant(&grants[0]) });
        assert!(check(expired, false, now).is_err());
        let revoked = Arc::new(KeyGrant { revoked: true, ..clone_grant(&grants[0]) });
        assert!(check(revoked, false, now).is_err());
        let rotated = Arc::new(KeyGrant { previous_valid_until_ms: Some(now + 1), ..clone_grant(&grants[0]) });
        assert!(check(rotated.clone(), true, now).is_ok() && check(rotated, true, now + 1).is_err());
        assert!(check(grants[0].clone(), true, now).is_err(), "no previous secret to accept");

        // Through the cache: a rotated key's old secret works in its grace
        // period, the first time (read from the store) and the second (cached).
        let rotated = crate::keys::rotate(stores.keys.as_ref(), auth.hasher(), made[0].record.clone(), 60_000, now)
            .await
            .unwrap();
        auth.invalidate();
        let with = |secret: &str| {
            let mut h = HeaderMap::new();
            h.insert(http::header::AUTHORIZATION, format!("Bearer {secret}").parse().unwrap());
            h
        };
        for _ in 0..2 {
            assert!(auth.authenticate(&with(&made[0].secret), now + 1).await.is_ok(), "old secret in its grace");
            assert!(auth.authenticate(&with(&rotated.secret), now + 1).await.is_ok(), "new secret");
        }
        // Cached as the previous secret: refused once the grace has ended.
        assert!(auth.authenticate(&with(&made[0].secret), now + 60_000).await.is_err());
        assert!(auth.authenticate(&with(&rotated.secret), now + 60_000).await.is_ok());
    }

    fn clone_grant(g: &KeyGrant) -> KeyGrant {
        KeyGrant {
            id: g.id.clone(),
            policy: g.policy.clone(),
            expires_ms: g.expires_ms,
            revoked: g.revoked,
            previous_valid_until_ms: g.previous_valid_until_ms,
        }
    }

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
