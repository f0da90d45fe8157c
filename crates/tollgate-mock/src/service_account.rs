//! The test service account of the Vertex AI routes, and the token
//! endpoint's state: the access tokens it issued and when each expires.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Value};

/// A TEST-ONLY Google service-account key file (RSA-2048, generated once with
/// `openssl genpkey`; the account and project exist nowhere). Its
/// `token_uri` is a placeholder: use [`test_service_account_json`] to point it
/// at a running mock.
pub const TEST_SERVICE_ACCOUNT_JSON: &str = include_str!("../fixtures/test-service-account.json");

/// The `client_email` of [`TEST_SERVICE_ACCOUNT_JSON`]: the only `iss` the token endpoint accepts.
pub const TEST_SERVICE_ACCOUNT_EMAIL: &str = "tollgate-test@tollgate-mock.iam.gserviceaccount.com";

/// The `project_id` of [`TEST_SERVICE_ACCOUNT_JSON`].
pub const TEST_PROJECT_ID: &str = "tollgate-mock";

/// The OAuth scope a Vertex AI token must be requested for.
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// The `grant_type` of a service account's token request (RFC 7523).
pub const JWT_BEARER_GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// The `anthropic_version` Claude on Vertex AI requires in the request body.
pub const VERTEX_ANTHROPIC_VERSION: &str = "vertex-2023-10-16";

/// Issued access tokens are this prefix and a per-server sequence number.
pub const ACCESS_TOKEN_PREFIX: &str = "ya29.mock-";

/// The longest a JWT assertion may live (`exp − iat`), as Google allows.
pub const MAX_ASSERTION_LIFETIME_SECS: u64 = 3600;

/// How far in the future an assertion's `iat` may be (clock skew).
pub const ASSERTION_CLOCK_SKEW_SECS: u64 = 300;

/// [`TEST_SERVICE_ACCOUNT_JSON`] with `token_uri` set to `token_uri` (e.g.
/// `http://127.0.0.1:PORT/token`, the mock's token endpoint; the JWT's `aud`
/// must be that same string).
pub fn test_service_account_json(token_uri: &str) -> String {
    match serde_json::from_str::<Value>(TEST_SERVICE_ACCOUNT_JSON) {
        Ok(mut account) => {
            account["token_uri"] = json!(token_uri);
            serde_json::to_string_pretty(&account).unwrap_or_default()
        }
        Err(_) => String::new(),
    }
}

/// The DER `RSAPublicKey` of the test service account's key, derived from
/// its private key (`None` if the fixture does not parse, which a unit test rules out).
pub(crate) fn test_public_key() -> Option<Vec<u8>> {
    let account: Value = serde_json::from_str(TEST_SERVICE_ACCOUNT_JSON).ok()?;
    let pem = account.get("private_key")?.as_str()?;
    let base64: String = pem.lines().filter(|line| !line.starts_with("-----")).collect::<Vec<_>>().concat();
    let der = STANDARD.decode(base64.trim()).ok()?;
    let key_pair = ring::signature::RsaKeyPair::from_pkcs8(&der).ok()?;
    Some(key_pair.public().as_ref().to_vec())
}

/// The `private_key_id` of the test service account (a JWT's `kid`, when sent, must match it).
pub(crate) fn test_key_id() -> Option<String> {
    let account: Value = serde_json::from_str(TEST_SERVICE_ACCOUNT_JSON).ok()?;
    Some(account.get("private_key_id")?.as_str()?.to_owned())
}

/// The token endpoint's state: the issued access tokens and when each expires.
#[derive(Debug)]
pub(crate) struct Tokens {
    pub(crate) public_key: Option<Vec<u8>>,
    pub(crate) key_id: Option<String>,
    /// Access token → its expiry.
    issued: Mutex<HashMap<String, Instant>>,
    next: AtomicU64,
    /// Token requests still to be answered 503 (`MockConfig::token_failures`).
    failures_left: AtomicU64,
}

impl Tokens {
    pub(crate) fn new(failures: u64) -> Self {
        Self {
            public_key: test_public_key(),
            key_id: test_key_id(),
            issued: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
            failures_left: AtomicU64::new(failures),
        }
    }

    pub(crate) fn issued(&self) -> MutexGuard<'_, HashMap<String, Instant>> {
        self.issued.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes one of the remaining failures, if any.
    pub(crate) fn take_failure(&self) -> bool {
        self.failures_left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok()
    }

    pub(crate) fn issue(&self, ttl: Duration) -> String {
        let token = format!("{ACCESS_TOKEN_PREFIX}{}", self.next.fetch_add(1, Ordering::Relaxed));
        let now = Instant::now();
        let mut issued = self.issued();
        // Long-expired tokens are forgotten, so the map stays small.
        issued.retain(|_, expiry| now.saturating_duration_since(*expiry) < Duration::from_secs(3600));
        issued.insert(token.clone(), now + ttl);
        token
    }

    /// Whether `token` was issued here, and if so whether it is still valid.
    pub(crate) fn check(&self, token: &str) -> TokenState {
        match self.issued().get(token) {
            Some(expiry) if Instant::now() < *expiry => TokenState::Valid,
            Some(_) => TokenState::Expired,
            None => TokenState::Unknown,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenState {
    Valid,
    Expired,
    Unknown,
}
