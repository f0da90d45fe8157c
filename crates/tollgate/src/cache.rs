//! The exact response cache: never pay twice for the same answer.
//!
//! The key is a SHA-256 over the tenant (key or team, so answers never cross
//! tenants), the endpoint, and the request body in canonical form (sorted
//! keys, with fields that do not change the answer removed: `user`,
//! `metadata`, tags live in headers anyway). Only deterministic requests
//! (`temperature` 0, one choice) are cached unless configured otherwise.
//! Streamed answers are kept as their client-format events and replayed as a
//! stream. In-process storage is an LRU bounded in bytes, with a TTL.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tollgate_providers::ApiFormat;
use tollgate_units::{Money, Usage};

pub use crate::config::CacheMode as Mode;

/// A cached answer.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Non-streaming: the whole client-format body.
    pub body: Option<Bytes>,
    /// Streaming: the client-format events, then the terminator.
    pub events: Vec<Bytes>,
    pub terminator: Bytes,
    pub usage: Usage,
    pub model: String,
    pub provider: String,
    /// What the original request cost (what each hit avoids).
    pub cost: Option<Money>,
    pub created_ms: i64,
}

impl Entry {
    fn size(&self) -> usize {
        self.body.as_ref().map_or(0, Bytes::len)
            + self.events.iter().map(Bytes::len).sum::<usize>()
            + self.terminator.len()
            + 256
    }
}

/// Fields that never change an answer.
const IGNORED: &[&str] = &["user", "metadata", "store", "service_tier", "safety_identifier", "prompt_cache_key"];

fn deterministic(v: &serde_json::Map<String, serde_json::Value>) -> bool {
    let t0 = v.get("temperature").and_then(serde_json::Value::as_f64) == Some(0.0);
    let one = v.get("n").and_then(serde_json::Value::as_u64).is_none_or(|n| n == 1);
    t0 && one
}

/// The cache key, or `None` when the request must not be cached.
pub fn key(tenant: &str, format: ApiFormat, body: &[u8], cache_non_deterministic: bool) -> Option<[u8; 32]> {
    // Most requests leave the temperature at its (non-zero) default: skip them before parsing.
    if !cache_non_deterministic
        && format != ApiFormat::OpenAiEmbeddings
        && !crate::govern::estimate::mentions(body, b"\"temperature\"")
    {
        return None;
    }
    let mut v: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body).ok()?;
    if !cache_non_deterministic && format != ApiFormat::OpenAiEmbeddings && !deterministic(&v) {
        return None;
    }
    for f in IGNORED {
        v.remove(*f);
    }
    // serde_json's map is ordered by key: this serialisation is canonical.
    let canonical = serde_json::to_vec(&v).ok()?;
    let mut h = Sha256::new();
    h.update(tenant.as_bytes());
    h.update([0]);
    h.update(format!("{format:?}").as_bytes());
    h.update([0]);
    h.update(&canonical);
    Some(h.finalize().into())
}

/// In-process store: LRU by entry, bounded in bytes, with a TTL.
pub struct MemoryCache {
    inner: Mutex<Inner>,
    max_bytes: usize,
    max_entry_bytes: usize,
    ttl_ms: i64,
}

struct Inner {
    lru: lru::LruCache<[u8; 32], Arc<Entry>>,
    bytes: usize,
}

impl MemoryCache {
    pub fn new(max_bytes: usize, ttl_ms: i64) -> MemoryCache {
        MemoryCache {
            inner: Mutex::new(Inner { lru: lru::LruCache::unbounded(), bytes: 0 }),
            max_bytes,
            max_entry_bytes: (max_bytes / 8).max(1),
            ttl_ms,
        }
    }

    /// Largest answer worth keeping (bigger ones are not cached).
    pub fn max_entry_bytes(&self) -> usize {
        self.max_entry_bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, key: &[u8; 32], now_ms: i64) -> Option<Arc<Entry>> {
        let mut g = self.lock();
        let e = g.lru.get(key)?.clone();
        if now_ms - e.created_ms > self.ttl_ms {
            if let Some(old) = g.lru.pop(key) {
                g.bytes -= old.size();
            }
            return None;
        }
        Some(e)
    }

    pub fn put(&self, key: [u8; 32], entry: Entry) {
        let size = entry.size();
        if size > self.max_entry_bytes {
            return;
        }
        let mut g = self.lock();
        if let Some(old) = g.lru.put(key, Arc::new(entry)) {
            g.bytes -= old.size();
        }
        g.bytes += size;
        while g.bytes > self.max_bytes {
            match g.lru.pop_lru() {
                Some((_, old)) => g.bytes -= old.size(),
                None => break,
            }
        }
    }

    pub fn len(&self) -> usize {
        self.lock().lru.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn _bytes(&self) -> usize {
        self.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: usize, at: i64) -> Entry {
        Entry {
            body: Some(Bytes::from(vec![b'x'; n])),
            events: vec![],
            terminator: Bytes::new(),
            usage: Usage::default(),
            model: "m".into(),
            provider: "p".into(),
            cost: None,
            created_ms: at,
        }
    }

    #[test]
    fn keys_ignore_what_does_not_change_the_answer() {
        let a = br#"{"model":"m","temperature":0,"messages":[{"role":"user","content":"hi"}],"user":"u1","metadata":{"x":"1"}}"#;
        let b = br#"{"messages":[{"content":"hi","role":"user"}],"temperature":0,"model":"m","user":"u2"}"#;
        let c = br#"{"model":"m","temperature":0,"messages":[{"role":"user","content":"hello"}]}"#;
        let f = ApiFormat::OpenAiChat;
        assert_eq!(key("k1", f, a, false), key("k1", f, b, false), "field order, user and metadata do not matter");
        assert_ne!(key("k1", f, a, false), key("k1", f, c, false));
        assert_ne!(key("k1", f, a, false), key("k2", f, a, false), "tenants never share");
        let stream = br#"{"model":"m","temperature":0,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
        assert_ne!(key("k1", f, a, false), key("k1", f, stream, false), "streams are kept apart");
        let hot = br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
        assert_eq!(key("k1", f, hot, false), None, "non-deterministic requests are not cached");
        assert!(key("k1", f, hot, true).is_some(), "unless configured");
        let n2 = br#"{"model":"m","temperature":0,"n":2,"messages":[]}"#;
        assert_eq!(key("k1", f, n2, false), None);
        let emb = br#"{"model":"e","input":"x"}"#;
        assert!(key("k1", ApiFormat::OpenAiEmbeddings, emb, false).is_some(), "embeddings are deterministic");
    }

    #[test]
    fn lru_is_bounded_in_bytes_and_expires() {
        let c = MemoryCache::new(8_000, 1_000);
        for i in 0u8..20 {
            c.put([i; 32], entry(700, 0));
        }
        assert!(c._bytes() <= 8_000);
        assert!(c.get(&[0; 32], 10).is_none(), "oldest evicted");
        assert!(c.get(&[19; 32], 10).is_some());
        assert!(c.get(&[19; 32], 2_000).is_none(), "expired after the TTL");
        c.put([1; 32], entry(5_000, 0));
        assert!(c.get(&[1; 32], 0).is_none(), "entries over the per-entry bound are not kept");
    }
}

/// A short hash of the request's stable prefix (system prompt / instructions
/// and tools): what a provider's prompt cache can reuse between calls. `None`
/// when there is no such prefix.
pub fn prefix_hash(format: ApiFormat, body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Msg<'a> {
        #[serde(borrow)]
        role: Option<&'a serde_json::value::RawValue>,
        #[serde(borrow)]
        content: Option<&'a serde_json::value::RawValue>,
    }
    #[derive(serde::Deserialize)]
    struct Prefix<'a> {
        #[serde(borrow, default)]
        messages: Option<Vec<Msg<'a>>>,
        #[serde(borrow, default)]
        system: Option<&'a serde_json::value::RawValue>,
        #[serde(borrow, default)]
        instructions: Option<&'a serde_json::value::RawValue>,
        #[serde(borrow, default)]
        tools: Option<&'a serde_json::value::RawValue>,
    }
    let has_prefix = [&b"\"system\""[..], b"\"developer\"", b"\"tools\"", b"\"instructions\""]
        .iter()
        .any(|n| crate::govern::estimate::mentions(body, n));
    if !has_prefix {
        return None;
    }
    let p: Prefix<'_> = serde_json::from_slice(body).ok()?;
    let mut h = Sha256::new();
    let mut any = false;
    let mut feed = |r: &serde_json::value::RawValue| {
        h.update(r.get().as_bytes());
        h.update([0]);
        any = true;
    };
    match format {
        ApiFormat::OpenAiChat => {
            for m in p.messages.iter().flatten() {
                let role = m.role.map(|r| r.get()).unwrap_or("");
                if role != "\"system\"" && role != "\"developer\"" {
                    break;
                }
                if let Some(c) = m.content {
                    feed(c);
                }
            }
        }
        ApiFormat::AnthropicMessages => {
            if let Some(s) = p.system {
                feed(s);
            }
        }
        ApiFormat::OpenAiResponses => {
            if let Some(s) = p.instructions {
                feed(s);
            }
        }
        ApiFormat::OpenAiEmbeddings | ApiFormat::Media(_) | ApiFormat::GeminiNative => return None,
    }
    if let Some(t) = p.tools {
        feed(t);
    }
    any.then(|| hex::encode(&h.finalize()[..8]))
}

#[cfg(test)]
mod prefix_tests {
    use super::*;

    #[test]
    fn prefix_hash_sees_system_and_tools_only() {
        let f = ApiFormat::OpenAiChat;
        let a =
            br#"{"model":"m","messages":[{"role":"system","content":"You are X."},{"role":"user","content":"q1"}]}"#;
        let b =
            br#"{"model":"m","messages":[{"role":"system","content":"You are X."},{"role":"user","content":"q2"}]}"#;
        let c = br#"{"model":"m","messages":[{"role":"system","content":"You are X. Now: 12:01"},{"role":"user","content":"q1"}]}"#;
        assert_eq!(prefix_hash(f, a), prefix_hash(f, b));
        assert_ne!(prefix_hash(f, a), prefix_hash(f, c));
        assert_eq!(prefix_hash(f, br#"{"messages":[{"role":"user","content":"q"}]}"#), None);
        let m = br#"{"system":"S","messages":[],"tools":[{"name":"t"}]}"#;
        assert!(prefix_hash(ApiFormat::AnthropicMessages, m).is_some());
    }
}

/// Where cached answers live: this process, or Redis shared by replicas.
pub enum Store {
    Memory(MemoryCache),
    Redis(Box<RedisCache>),
}

impl Store {
    /// Never fails a request: a store error is logged and counts as a miss.
    pub async fn get(&self, key: &[u8; 32], now_ms: i64) -> Option<Arc<Entry>> {
        match self {
            Store::Memory(m) => m.get(key, now_ms),
            Store::Redis(r) => r.get(key).await.map(Arc::new),
        }
    }

    pub fn put(&self, key: [u8; 32], entry: Entry) {
        match self {
            Store::Memory(m) => m.put(key, entry),
            Store::Redis(r) => r.put(key, entry),
        }
    }

    pub fn max_entry_bytes(&self) -> usize {
        match self {
            Store::Memory(m) => m.max_entry_bytes(),
            Store::Redis(r) => r.max_entry_bytes,
        }
    }
}

/// Redis-backed cache: entries as JSON under `tollgate:cache:<key>`, expiring by TTL.
pub struct RedisCache {
    client: redis::Client,
    conn: tokio::sync::OnceCell<redis::aio::ConnectionManager>,
    ttl_ms: i64,
    max_entry_bytes: usize,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct WireEntry {
    body: Option<String>,
    events: Vec<String>,
    terminator: String,
    usage: Usage,
    model: String,
    provider: String,
    cost: Option<Money>,
    created_ms: i64,
}

impl RedisCache {
    pub fn new(url: &str, ttl_ms: i64, max_entry_bytes: usize) -> Result<RedisCache, redis::RedisError> {
        Ok(RedisCache {
            client: redis::Client::open(url)?,
            conn: tokio::sync::OnceCell::new(),
            ttl_ms,
            max_entry_bytes,
        })
    }

    async fn conn(&self) -> Option<redis::aio::ConnectionManager> {
        self.conn
            .get_or_try_init(|| self.client.get_connection_manager())
            .await
            .map_err(|error| tracing::warn!(%error, "response cache: cannot reach Redis"))
            .ok()
            .cloned()
    }

    fn redis_key(key: &[u8; 32]) -> String {
        format!("tollgate:cache:{}", hex::encode(key))
    }

    async fn get(&self, key: &[u8; 32]) -> Option<Entry> {
        let mut c = self.conn().await?;
        let raw: Option<Vec<u8>> = redis::cmd("GET")
            .arg(Self::redis_key(key))
            .query_async(&mut c)
            .await
            .map_err(|error| tracing::warn!(%error, "response cache: Redis GET failed"))
            .ok()?;
        let w: WireEntry = serde_json::from_slice(&raw?).ok()?;
        Some(Entry {
            body: w.body.map(Bytes::from),
            events: w.events.into_iter().map(Bytes::from).collect(),
            terminator: Bytes::from(w.terminator),
            usage: w.usage,
            model: w.model,
            provider: w.provider,
            cost: w.cost,
            created_ms: w.created_ms,
        })
    }

    fn put(&self, key: [u8; 32], e: Entry) {
        if e.size() > self.max_entry_bytes {
            return;
        }
        let text = |b: &Bytes| String::from_utf8(b.to_vec()).ok();
        // Answers are JSON or SSE text; anything else is simply not cached.
        let (Some(events), Some(terminator)) =
            (e.events.iter().map(text).collect::<Option<Vec<_>>>(), text(&e.terminator))
        else {
            return;
        };
        let body = match &e.body {
            Some(b) => match text(b) {
                Some(s) => Some(s),
                None => return,
            },
            None => None,
        };
        let w = WireEntry {
            body,
            events,
            terminator,
            usage: e.usage,
            model: e.model,
            provider: e.provider,
            cost: e.cost,
            created_ms: e.created_ms,
        };
        let Ok(json) = serde_json::to_vec(&w) else { return };
        let ttl = self.ttl_ms.max(1);
        let redis_key = Self::redis_key(&key);
        let conn = self.conn.get().cloned();
        let client = self.client.clone();
        // Off the request path: the client does not wait for the cache write.
        tokio::spawn(async move {
            let mut c = match conn {
                Some(c) => c,
                None => match client.get_connection_manager().await {
                    Ok(c) => c,
                    Err(_) => return,
                },
            };
            let r: Result<(), redis::RedisError> =
                redis::cmd("SET").arg(redis_key).arg(json).arg("PX").arg(ttl).query_async(&mut c).await;
            if let Err(error) = r {
                tracing::warn!(%error, "response cache: Redis SET failed");
            }
        });
    }
}
