//! Request counters behind `GET /mock/stats` and `POST /mock/reset`.
//!
//! Tests use them to assert how many upstream calls the gateway made. The
//! lock is held only for a map update, never across an await.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use serde_json::{json, Value};

#[derive(Debug, Default)]
pub(crate) struct Stats {
    total: AtomicU64,
    /// Requests refused for their credentials (401s, Bedrock's SigV4 403s).
    refused: AtomicU64,
    /// `POST /token` requests (Vertex AI's OAuth endpoint), whatever their outcome.
    token_requests: AtomicU64,
    /// Access tokens the token endpoint issued.
    tokens_issued: AtomicU64,
    inner: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    paths: HashMap<String, u64>,
    models: HashMap<String, u64>,
    last_auth: Option<bool>,
    /// The output cap of the last request (its smallest `max_tokens`-like field), if any.
    last_output_limit: Option<u64>,
    /// The path of the last request.
    last_path: Option<String>,
    /// The model the last request named, if `last_model_fresh` (kept across
    /// requests otherwise, so a repeated model allocates nothing).
    last_model: Option<String>,
    last_model_fresh: bool,
    /// The file parts of the last request if it was a multipart form
    /// (`{"field","filename","content_type","bytes"}` each), so tests can see
    /// that an upload arrived whole.
    last_files: Option<Value>,
    /// Why the last request was refused for its credentials (the provider's
    /// error name, e.g. `InvalidSignatureException`), if it was.
    last_refusal: Option<&'static str>,
    /// The region of the last verified AWS SigV4 credential scope (Bedrock).
    last_aws_region: Option<String>,
    /// Why the last refused token request was refused (its `error_description`).
    last_token_error: Option<String>,
}

fn bump(map: &mut HashMap<String, u64>, key: &str) {
    // get_mut first: the common case allocates nothing.
    match map.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            map.insert(key.to_owned(), 1);
        }
    }
}

/// `*slot = Some(value)`, allocating only when the value changes.
fn set_last(slot: &mut Option<String>, value: &str) {
    match slot {
        Some(last) if last == value => {}
        last => *last = Some(value.to_owned()),
    }
}

impl Stats {
    fn counts(&self) -> MutexGuard<'_, Counts> {
        // A panic elsewhere cannot leave counters inconsistent enough to matter.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts one request to `path`; `auth_present` says whether it carried
    /// the provider's credential (its value is never stored).
    pub(crate) fn record_request(&self, path: &str, auth_present: bool) {
        self.total.fetch_add(1, Ordering::Relaxed);
        let mut counts = self.counts();
        bump(&mut counts.paths, path);
        counts.last_auth = Some(auth_present);
        set_last(&mut counts.last_path, path);
        counts.last_model_fresh = false;
        counts.last_files = None;
        counts.last_refusal = None;
    }

    /// Marks the request just counted as refused for its credentials;
    /// `reason` is the provider's name for the error.
    pub(crate) fn record_refused(&self, reason: &'static str) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        self.counts().last_refusal = Some(reason);
    }

    /// Records the region of a verified AWS SigV4 credential scope.
    pub(crate) fn record_aws_region(&self, region: &str) {
        set_last(&mut self.counts().last_aws_region, region);
    }

    /// Counts one `POST /token` request (not in `total` or `paths`, so the
    /// counters of the model routes stay the gateway's model calls).
    pub(crate) fn record_token_request(&self) {
        self.token_requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one access token issued.
    pub(crate) fn record_token_issued(&self) {
        self.tokens_issued.fetch_add(1, Ordering::Relaxed);
    }

    /// Records why the last token request was refused.
    pub(crate) fn record_token_error(&self, description: &str) {
        set_last(&mut self.counts().last_token_error, description);
    }

    pub(crate) fn record_model(&self, model: &str) {
        let mut counts = self.counts();
        bump(&mut counts.models, model);
        set_last(&mut counts.last_model, model);
        counts.last_model_fresh = true;
    }

    /// Records the file parts of the last (multipart) request.
    pub(crate) fn record_files(&self, files: Value) {
        self.counts().last_files = Some(files);
    }

    /// Records the output cap the last request carried (`None`: no cap).
    pub(crate) fn record_output_limit(&self, limit: Option<u64>) {
        self.counts().last_output_limit = limit;
    }

    pub(crate) fn snapshot(&self) -> Value {
        let counts = self.counts();
        let last_auth = counts.last_auth.map(|present| if present { "present" } else { "absent" });
        json!({
            "total": self.total.load(Ordering::Relaxed),
            "paths": counts.paths,
            "models": counts.models,
            "last_auth": last_auth,
            "last_output_limit": counts.last_output_limit,
            "last_path": counts.last_path,
            "last_model": counts.last_model.as_deref().filter(|_| counts.last_model_fresh),
            "last_files": counts.last_files,
            "refused": self.refused.load(Ordering::Relaxed),
            "last_refusal": counts.last_refusal,
            "last_aws_region": counts.last_aws_region,
            "token_requests": self.token_requests.load(Ordering::Relaxed),
            "tokens_issued": self.tokens_issued.load(Ordering::Relaxed),
            "last_token_error": counts.last_token_error,
        })
    }

    pub(crate) fn reset(&self) {
        let mut counts = self.counts();
        self.total.store(0, Ordering::Relaxed);
        self.refused.store(0, Ordering::Relaxed);
        self.token_requests.store(0, Ordering::Relaxed);
        self.tokens_issued.store(0, Ordering::Relaxed);
        *counts = Counts::default();
    }
}
