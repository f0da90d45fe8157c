//! The semantic cache (opt-in): an answer to a question close enough in
//! meaning to one already answered, for the same tenant, model and endpoint.
//!
//! Embeddings come from a configured embeddings route called *through the
//! gateway itself* (so the embedding call is authenticated, budgeted,
//! metered and ledgered like any request, tagged `purpose=semantic_cache`).
//! The index is exact nearest-neighbour search (cosine over normalised
//! vectors) per tenant, bounded in entries: at the sizes one tenant's cache
//! holds (≤ tens of thousands) a linear scan takes well under a millisecond
//! and needs no approximate index.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tollgate_providers::ApiFormat;

use crate::cache::Entry;

pub use crate::config::SemanticConfig;

struct Item {
    vector: Vec<f32>,
    entry: Arc<Entry>,
    format: ApiFormat,
    stream: bool,
    model: String,
}

pub struct SemanticCache {
    pub config: SemanticConfig,
    tenants: Mutex<HashMap<String, Vec<Item>>>,
}

fn normalise(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
    v
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

impl SemanticCache {
    pub fn new(config: SemanticConfig) -> SemanticCache {
        SemanticCache { config, tenants: Mutex::new(HashMap::new()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Item>>> {
        self.tenants.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn excluded(&self, model: &str) -> bool {
        self.config.exclude_models.iter().any(|p| crate::pattern::glob_match(p, model))
    }

    /// The closest fresh answer at or above the threshold, with its similarity.
    pub fn lookup(
        &self,
        tenant: &str,
        format: ApiFormat,
        stream: bool,
        model: &str,
        vector: &[f32],
        now_ms: i64,
    ) -> Option<(Arc<Entry>, f32)> {
        let v = normalise(vector.to_vec());
        let t = self.lock();
        t.get(tenant)?
            .iter()
            .filter(|i| i.format == format && i.stream == stream && i.model == model)
            .filter(|i| now_ms - i.entry.created_ms <= self.config.max_age_ms)
            .map(|i| (i, cosine(&i.vector, &v)))
            .filter(|(_, s)| *s >= self.config.threshold)
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(i, s)| (i.entry.clone(), s))
    }

    pub fn insert(
        &self,
        tenant: &str,
        format: ApiFormat,
        stream: bool,
        model: &str,
        vector: Vec<f32>,
        entry: Arc<Entry>,
    ) {
        let mut t = self.lock();
        let items = t.entry(tenant.to_string()).or_default();
        if items.len() >= self.config.max_entries_per_tenant.max(1) {
            items.remove(0);
        }
        items.push(Item { vector: normalise(vector), entry, format, stream, model: model.to_string() });
    }
}

/// Asks the gateway's own embeddings route for `text`'s embedding, with the
/// caller's credentials (so the call is metered and budgeted as theirs).
pub async fn embed(
    http: &reqwest::Client,
    gateway: std::net::SocketAddr,
    headers: &http::HeaderMap,
    model: &str,
    text: &str,
) -> Option<Vec<f32>> {
    let mut req = http
        .post(format!("http://{gateway}/v1/embeddings"))
        .json(&serde_json::json!({ "model": model, "input": text, "encoding_format": "float" }));
    for h in [
        "authorization",
        "x-api-key",
        "traceparent",
        "x-tollgate-trace-id",
        "x-tollgate-session-id",
        "x-tollgate-agent",
    ] {
        if let Some(v) = headers.get(h) {
            req = req.header(h, v);
        }
    }
    let tags = headers.get("x-tollgate-tags").and_then(|v| v.to_str().ok()).unwrap_or("");
    let tags =
        if tags.is_empty() { "purpose=semantic_cache".to_string() } else { format!("{tags},purpose=semantic_cache") };
    req = req.header("x-tollgate-tags", tags);
    let resp = req.send().await.ok()?;
    if !resp.status().is_success() {
        tracing::warn!(
            status = resp.status().as_u16(),
            "semantic cache: embedding call failed; skipping the semantic lookup"
        );
        return None;
    }
    let v: serde_json::Value = resp.json().await.ok()?;
    let arr = v["data"][0]["embedding"].as_array()?;
    let out: Vec<f32> = arr.iter().filter_map(|x| x.as_f64().map(|f| f as f32)).collect();
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use tollgate_units::Usage;

    fn entry(at: i64) -> Arc<Entry> {
        Arc::new(Entry {
            body: Some(Bytes::from_static(b"{}")),
            events: vec![],
            terminator: Bytes::new(),
            usage: Usage::default(),
            model: "m".into(),
            provider: "p".into(),
            cost: None,
            created_ms: at,
        })
    }

    #[test]
    fn nearest_above_threshold_within_tenant_and_age() {
        let c = SemanticCache::new(SemanticConfig {
            embeddings_model: "e".into(),
            threshold: 0.9,
            max_age_ms: 1000,
            max_entries_per_tenant: 2,
            exclude_models: vec!["gpt-4o-*".into()],
        });
        let f = ApiFormat::OpenAiChat;
        c.insert("t1", f, false, "m", vec![1.0, 0.0], entry(0));
        assert!(c.lookup("t1", f, false, "m", &[0.99, 0.1], 10).is_some());
        assert!(c.lookup("t1", f, false, "m", &[0.5, 0.5], 10).is_none(), "below the threshold");
        assert!(c.lookup("t2", f, false, "m", &[1.0, 0.0], 10).is_none(), "another tenant");
        assert!(c.lookup("t1", f, true, "m", &[1.0, 0.0], 10).is_none(), "streams apart");
        assert!(c.lookup("t1", f, false, "other", &[1.0, 0.0], 10).is_none(), "another model");
        assert!(c.lookup("t1", f, false, "m", &[1.0, 0.0], 5000).is_none(), "too old");
        c.insert("t1", f, false, "m", vec![0.0, 1.0], entry(0));
        c.insert("t1", f, false, "m", vec![-1.0, 0.0], entry(0));
        assert!(c.lookup("t1", f, false, "m", &[1.0, 0.0], 10).is_none(), "bounded: the oldest went");
        assert!(c.excluded("gpt-4o-mini") && !c.excluded("claude-haiku-4-5"));
    }
}
