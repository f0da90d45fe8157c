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
    inner: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    paths: HashMap<String, u64>,
    models: HashMap<String, u64>,
    last_auth: Option<bool>,
    /// The output cap of the last request (its smallest `max_tokens`-like field), if any.
    last_output_limit: Option<u64>,
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
    }

    pub(crate) fn record_model(&self, model: &str) {
        bump(&mut self.counts().models, model);
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
        })
    }

    pub(crate) fn reset(&self) {
        let mut counts = self.counts();
        self.total.store(0, Ordering::Relaxed);
        *counts = Counts::default();
    }
}
