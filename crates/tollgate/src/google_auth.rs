//! Access tokens for Google Vertex AI from a service account's key.
//!
//! Google's OAuth 2.0 for server-to-server applications: the service account
//! signs a JWT (RS256) that asks for the `cloud-platform` scope, posts it to
//! the key's `token_uri`, and gets an access token good for about an hour.
//! [`TokenSource`] keeps that token and fetches a new one ahead of expiry on
//! a background task, so requests never wait for a refresh unless there is no
//! usable token at all; then concurrent callers share one fetch.
//!
//! Neither the private key nor an access token is ever printed: `Debug`
//! hides them and error messages never carry them.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use serde_json::Value;
use tokio::sync::watch;

use crate::config::Secret;

/// The scope Vertex AI needs.
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// Where a key without a `token_uri` exchanges its assertion.
pub const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`, form-encoded.
const GRANT_TYPE: &str = "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer";
/// How long an assertion is valid (Google's maximum).
const ASSERTION_LIFETIME_SECS: u64 = 3600;
/// A token with this little left (or less) is not handed out.
const MIN_LEFT_SECS: u64 = 60;
/// A token with less than this left is refreshed in the background.
const REFRESH_LEFT_SECS: u64 = 300;
/// At most one fetch per this many seconds while fetches fail.
const RETRY_AFTER_SECS: u64 = 1;
/// How long a caller waits for a token, and how long one fetch may take.
const WAIT: Duration = Duration::from_secs(10);
/// Longest piece of the token endpoint's error text put in a message.
const MAX_DETAIL: usize = 200;

/// A Google service account's key (the JSON file Google issues).
#[derive(Clone)]
pub struct ServiceAccount {
    pub client_email: String,
    pub token_uri: String,
    pub project_id: Option<String>,
    /// Sent as the JWT's `kid` when the key names it.
    private_key_id: Option<String>,
    key: Arc<RsaKeyPair>,
}

impl fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .field("project_id", &self.project_id)
            .field("private_key", &"***")
            .finish()
    }
}

impl ServiceAccount {
    /// Parses the JSON (type "service_account", client_email, private_key (PEM PKCS#8
    /// "-----BEGIN PRIVATE KEY-----"), token_uri, project_id); errors name the
    /// missing/bad field, never print the key. A missing `token_uri` is Google's
    /// ([`DEFAULT_TOKEN_URI`]); `private_key_id`, when present, becomes the JWT's `kid`.
    pub fn from_json(text: &str) -> Result<ServiceAccount, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("service account key: not JSON ({e})"))?;
        let Value::Object(map) = v else {
            return Err("service account key: not a JSON object".to_string());
        };
        let field = |name: &str| -> Result<Option<String>, String> {
            match map.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(format!("service account key: \"{name}\" is not a string")),
            }
        };
        let required = |name: &str| -> Result<String, String> {
            match field(name)? {
                Some(s) if !s.trim().is_empty() => Ok(s),
                Some(_) => Err(format!("service account key: \"{name}\" is empty")),
                None => Err(format!("service account key: \"{name}\" is missing")),
            }
        };
        let kind = required("type")?;
        if kind != "service_account" {
            let shown: String = kind.chars().take(40).collect();
            return Err(format!("service account key: \"type\" is \"{shown}\", expected \"service_account\""));
        }
        let client_email = required("client_email")?;
        let token_uri = field("token_uri")?.unwrap_or_else(|| DEFAULT_TOKEN_URI.to_string());
        if !(token_uri.starts_with("https://") || token_uri.starts_with("http://")) {
            return Err("service account key: \"token_uri\" is not an http(s) URL".to_string());
        }
        let project_id = field("project_id")?.filter(|s| !s.is_empty());
        let private_key_id = field("private_key_id")?.filter(|s| !s.is_empty());
        let pem = required("private_key")?;
        let key = key_from_pem(&pem).map_err(|e| format!("service account key: \"private_key\" {e}"))?;
        Ok(ServiceAccount { client_email, token_uri, project_id, private_key_id, key: Arc::new(key) })
    }

    /// The signed JWT assertion (RS256) for the cloud-platform scope at `now_secs`, valid one hour.
    pub fn assertion(&self, now_secs: u64) -> Result<String, String> {
        let mut header = serde_json::json!({ "alg": "RS256", "typ": "JWT" });
        if let Some(kid) = &self.private_key_id {
            header["kid"] = Value::String(kid.clone());
        }
        let claims = serde_json::json!({
            "iss": self.client_email,
            "scope": CLOUD_PLATFORM_SCOPE,
            "aud": self.token_uri,
            "iat": now_secs,
            "exp": now_secs + ASSERTION_LIFETIME_SECS,
        });
        let mut jwt =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let mut signature = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &ring::rand::SystemRandom::new(), jwt.as_bytes(), &mut signature)
            .map_err(|_| "signing the token request failed".to_string())?;
        jwt.push('.');
        jwt.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(jwt)
    }
}

/// The RSA key of a PEM block: PKCS#8 (`BEGIN PRIVATE KEY`, what Google
/// issues) or PKCS#1 (`BEGIN RSA PRIVATE KEY`). Errors never quote the key.
fn key_from_pem(pem: &str) -> Result<RsaKeyPair, String> {
    // A key pasted through an environment variable may keep its `\n` escapes.
    let pem = pem.replace("\\n", "\n");
    let block = |label: &str| -> Option<String> {
        let begin = format!("-----BEGIN {label}-----");
        let end = format!("-----END {label}-----");
        let start = pem.find(&begin)? + begin.len();
        let stop = start + pem[start..].find(&end)?;
        Some(pem[start..stop].chars().filter(|c| !c.is_ascii_whitespace()).collect())
    };
    let (body, pkcs8) = match (block("PRIVATE KEY"), block("RSA PRIVATE KEY")) {
        (Some(body), _) => (body, true),
        (None, Some(body)) => (body, false),
        (None, None) => return Err("is not a PEM private key (-----BEGIN PRIVATE KEY-----)".to_string()),
    };
    let der = STANDARD.decode(body.as_bytes()).map_err(|_| "is not valid PEM (bad base64)".to_string())?;
    let key = if pkcs8 { RsaKeyPair::from_pkcs8(&der) } else { RsaKeyPair::from_der(&der) };
    key.map_err(|e| format!("is not a usable RSA key ({e})"))
}

/// A token fetch failed (or none came in time). The message names the token
/// endpoint and what went wrong, never a key or a token.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct TokenError(pub String);

/// Seconds since the Unix epoch (injectable for tests).
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Fetches and caches an access token; refreshes it ahead of expiry without blocking requests.
pub struct TokenSource {
    account: ServiceAccount,
    http: reqwest::Client,
    clock: Clock,
    /// How long a caller waits for a fetch.
    wait: Duration,
    /// Lets `&self` hand an owned handle to the fetch task.
    me: Weak<TokenSource>,
    state: Mutex<State>,
}

/// What one fetch ends with, as its waiters see it.
type Outcome = Option<Result<Secret, TokenError>>;

#[derive(Default)]
struct State {
    token: Option<Held>,
    /// The fetch under way (at most one): its waiters watch for its outcome.
    inflight: Option<watch::Receiver<Outcome>>,
    /// When the last fetch started.
    last_fetch: Option<u64>,
    /// The last fetch failed: when it ended, and why.
    failed: Option<(u64, TokenError)>,
}

struct Held {
    value: Secret,
    expires_at: u64,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.lock();
        f.debug_struct("TokenSource")
            .field("client_email", &self.account.client_email)
            .field("token_uri", &self.account.token_uri)
            .field("token_expires_at", &st.token.as_ref().map(|h| h.expires_at))
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    pub fn new(account: ServiceAccount, http: reqwest::Client) -> Arc<TokenSource> {
        Self::with_clock(account, http, Arc::new(unix_now))
    }

    /// As [`TokenSource::new`], reading the time (seconds since the epoch) from `clock`.
    pub fn with_clock(account: ServiceAccount, http: reqwest::Client, clock: Clock) -> Arc<TokenSource> {
        Self::build(account, http, clock, WAIT)
    }

    fn build(account: ServiceAccount, http: reqwest::Client, clock: Clock, wait: Duration) -> Arc<TokenSource> {
        Arc::new_cyclic(|me| TokenSource {
            account,
            http,
            clock,
            wait,
            me: me.clone(),
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A valid access token: the cached one while it has more than 60 s left. When it has
    /// less than 5 minutes left, ONE background refresh starts (single flight) and callers
    /// keep using the current token; when there is no token or it has expired, callers wait
    /// for one fetch (single flight: concurrent callers share it), bounded by 10 s. A failed
    /// fetch → Err(TokenError) with a message (no secret in it), and the next call tries
    /// again (with at most one fetch per second while failing).
    pub async fn token(&self) -> Result<String, TokenError> {
        let mut waiting = {
            let mut st = self.lock();
            let now = (self.clock)();
            if let Some(held) = &st.token {
                let left = held.expires_at.saturating_sub(now);
                if left > MIN_LEFT_SECS {
                    let value = held.value.expose().to_string();
                    let fetched_a_second_ago = st.last_fetch.is_none_or(|t| now >= t + RETRY_AFTER_SECS);
                    if left < REFRESH_LEFT_SECS && fetched_a_second_ago && self.may_fetch(&st, now) {
                        // The caller keeps the current token; the fetch runs on its own task.
                        drop(self.start_fetch(&mut st, now));
                    }
                    return Ok(value);
                }
            }
            match st.inflight.clone() {
                // A fetch whose task is gone (runtime shut down) is no fetch.
                Some(rx) if rx.has_changed().is_ok() => rx,
                _ => {
                    st.inflight = None;
                    if let Some((_, error)) = st.failed.as_ref().filter(|_| !self.may_fetch(&st, now)) {
                        return Err(error.clone());
                    }
                    self.start_fetch(&mut st, now)
                }
            }
        };
        let outcome = match tokio::time::timeout(self.wait, waiting.wait_for(Option::is_some)).await {
            Ok(Ok(outcome)) => outcome.clone(),
            Ok(Err(_)) => None,
            Err(_) => {
                return Err(TokenError(format!(
                    "no access token from {} within {} s",
                    self.account.token_uri,
                    self.wait.as_secs_f32()
                )))
            }
        };
        match outcome {
            Some(Ok(token)) => Ok(token.expose().to_string()),
            Some(Err(e)) => Err(e),
            None => Err(TokenError(format!("the access token fetch from {} was abandoned", self.account.token_uri))),
        }
    }

    /// Not within a second of a failed fetch, and no fetch under way.
    fn may_fetch(&self, st: &State, now: u64) -> bool {
        st.inflight.as_ref().is_none_or(|rx| rx.has_changed().is_err())
            && st.failed.as_ref().is_none_or(|(at, _)| now >= at + RETRY_AFTER_SECS)
    }

    /// Starts the one fetch on its own task (so a caller that gives up does not
    /// cancel it) and returns what its waiters watch.
    fn start_fetch(&self, st: &mut State, now: u64) -> watch::Receiver<Outcome> {
        let (tx, rx) = watch::channel(None);
        st.inflight = Some(rx.clone());
        st.last_fetch = Some(now);
        if let Some(me) = self.me.upgrade() {
            tokio::spawn(async move {
                let result = me.fetch(now).await;
                {
                    let mut st = me.lock();
                    st.inflight = None;
                    match &result {
                        Ok(held) => {
                            st.token = Some(Held { value: held.value.clone(), expires_at: held.expires_at });
                            st.failed = None;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "no Google access token");
                            st.failed = Some(((me.clock)(), e.clone()));
                        }
                    }
                }
                tx.send_replace(Some(result.map(|held| held.value)));
            });
        }
        // Without an owner (impossible while `&self` lives) the sender is dropped: the fetch reads as abandoned.
        rx
    }

    /// One exchange of a fresh assertion for an access token, bounded by 10 s.
    async fn fetch(&self, now: u64) -> Result<Held, TokenError> {
        let uri = &self.account.token_uri;
        let assertion = self.account.assertion(now).map_err(TokenError)?;
        let exchange = async {
            let response = self
                .http
                .post(uri)
                .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(http::header::ACCEPT, "application/json")
                .timeout(WAIT)
                .body(format!("grant_type={GRANT_TYPE}&assertion={assertion}"))
                .send()
                .await?;
            let status = response.status();
            Ok::<_, reqwest::Error>((status, response.bytes().await?))
        };
        let (status, body) = match tokio::time::timeout(WAIT, exchange).await {
            Err(_) => {
                return Err(TokenError(format!("token endpoint {uri} did not answer within {} s", WAIT.as_secs())))
            }
            Ok(Err(e)) => return Err(TokenError(format!("token endpoint {uri}: {}", error_chain(&e)))),
            Ok(Ok(answer)) => answer,
        };
        let json: Option<Value> = serde_json::from_slice(&body).ok();
        if !status.is_success() {
            let text = |name: &str| json.as_ref().and_then(|j| j.get(name)).and_then(Value::as_str).map(clip);
            let detail = match (text("error"), text("error_description")) {
                (Some(e), Some(d)) => format!(": {e} ({d})"),
                (Some(e), None) | (None, Some(e)) => format!(": {e}"),
                (None, None) => String::new(),
            };
            return Err(TokenError(format!("token endpoint {uri} answered {status}{detail}")));
        }
        let bad = |what: &str| TokenError(format!("token endpoint {uri} answered {status} with {what}"));
        let json = json.ok_or_else(|| bad("a body that is not JSON"))?;
        let token = json.get("access_token").and_then(Value::as_str).filter(|t| !t.is_empty());
        let token = token.ok_or_else(|| bad("no \"access_token\""))?;
        let expires_in = json.get("expires_in").and_then(Value::as_u64).ok_or_else(|| bad("no \"expires_in\""))?;
        if let Some(kind) = json.get("token_type").and_then(Value::as_str) {
            if !kind.eq_ignore_ascii_case("bearer") {
                return Err(bad("a token type other than Bearer"));
            }
        }
        Ok(Held { value: Secret::new(token.to_string()), expires_at: now.saturating_add(expires_in) })
    }
}

/// An error with its causes (reqwest's own message leaves them out).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

fn clip(s: &str) -> String {
    s.chars().take(MAX_DETAIL).collect()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering::SeqCst};

    use axum::extract::State as AxumState;
    use axum::response::IntoResponse;
    use ring::signature::{KeyPair as _, UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};

    use super::*;

    /// A throwaway RSA key made for these tests only (`openssl genpkey -algorithm RSA
    /// -pkeyopt rsa_keygen_bits:2048`). It belongs to no service account.
    const TEST_ONLY_PRIVATE_KEY: &str = "-----BEGIN PRIVATE KEY-----\n\
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCaqjCu/FRWDQOA\n\
HQQf1M/MSfXlsHn5o0TveFyDl20xV8NmdSRAVyEawBq5qMeb2qILBi3qvVLpZtX0\n\
AIq5mGgp/FAff/ZbhW3zVG2GksVlwt5gOsJ5DHtcFvqb2SEtwwskT5c/QRvqzvYZ\n\
uEnLriYXffKrW7lHRuJKS9ZTPAbkkc83db7yhvrIhoiMOooprNpE264AJ1mUZZnH\n\
0KXjphcZwOAOS0peUHVIgcI7NAgxGqY41rgcs+jimGqlLl/jp81liqt5x3SR3TMz\n\
SPpIO2J94qp/QuezahIG7KV1KuUkeOndb6Hoqb0asFyh7SG42M6qDaA5YYN/CQU2\n\
p4/7iLPLAgMBAAECggEAFqEyMFhBKroKuhMEyHeF0/k6Xloc7rbB3lv5BVQBqQeT\n\
UolvPW7CLDzRbDrSwe4SaZSE4WTEHdxrD6GIqrEvBH2jZ4h8jlWOidzfjaIp+cKy\n\
cNgIHlgCMK44CteRMDXqimyOz7WCFTAk+Axr175qWmOWPxZTnKc1cvN3r4QH6idl\n\
HB6TITdapfeq3OCpFh/GNd3Gm4t/1Gl6JKm4rw6dgA+LUmfqFxRWt0QJDC4M6/Pa\n\
7/OxkSHPyzFf+aenZYuRNnnmzjTrVzeiTXA9fZTvbqrPqUMitpJT9xPPxb/eKDFV\n\
b2zICU0Y6ZmcsFu/UzKjkYQ2CkIxluUKgYqWhxvPUQKBgQDSvrYgPFntZ/8XBCRZ\n\
5a0p3DZwGIuJEEf2Ygyvi/OfHauGRCVv1qXTBojp1nHzw2HpvW1RfjCh1jt5PttA\n\
0nanUQQSB5qgDaWP/bpX4AUIZdAGpAPwP7s9WHVDUP1U2cTCUNp7BAx6PO5reG5b\n\
VUEphA/9Yf8i065GweL2yH0wSQKBgQC74JUjUo474AbY6l87sqLM54LeqsNDV+Wc\n\
04WCFPkDwOT3EIP5lDrARqaVKgWDrQ2wm2DRMwUAYWqALQP9Q1tqvo68CvG1Mmro\n\
uhg1D1Nl7njUEdjnVaW9SKz4ATbUgG6lDzTeio+WJJ/y3xrh3KpW5QP5pfYf0cFH\n\
BhQgsjHrcwKBgHDLvGUSiDtGD0U9ZUtsX7to7wYeTQjGWw3nOsz2hiVi1vxdGwB6\n\
DXUeKUenDISgzZYyWgFlHhhwtpJVbzqJqxIwjZIs2bjStQuVjRgdgfQVsjrrrGP5\n\
aHkUEGdAQOcaS3KJnfZ7m0YNuLpy0fY2clMLKRfATLNSQxQCED1v33lpAoGAapo5\n\
xTsYnXy2JeqGctcfbOiH51Q5S0LadCvI+1BvIuQWhuGGIN0soOD1sHmRe2977xOa\n\
0dkDI34i8euY8eGAQ4cwch47m7ap1reQ+LpjddjkEmC2FD0St94+1tHJjLX7EgkY\n\
1JUGeAj8AND67eFJfdigcszqZI+d/XDDhvHVRWUCgYEAumpGyPnJVvOTl7xp2mrN\n\
bSukgFNW8d/ChLvklizpFvsoIICrsLbUfwJADqOBS4uiY/oc723rzTYtQtPyQYQW\n\
2hVCiuKJg+PWQAA6L9dHFFAG6WmAQyDvydu6XFQ3MS9ebAdG4/7Tg8XMNkuBR4zD\n\
rg939kdF2eDRflJJwDz2eAM=\n\
-----END PRIVATE KEY-----";

    fn key_json(token_uri: &str) -> String {
        serde_json::json!({
            "type": "service_account",
            "project_id": "tollgate-test",
            "private_key_id": "test-key-1",
            "private_key": TEST_ONLY_PRIVATE_KEY,
            "client_email": "gateway@tollgate-test.iam.gserviceaccount.com",
            "client_id": "1234567890",
            "token_uri": token_uri,
        })
        .to_string()
    }

    fn account(token_uri: &str) -> ServiceAccount {
        ServiceAccount::from_json(&key_json(token_uri)).expect("the test key parses")
    }

    fn decode_part(part: &str) -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("JSON")
    }

    /// Verifies `jwt`'s RS256 signature with the test key's public key; returns header and claims.
    fn verified(account: &ServiceAccount, jwt: &str) -> (Value, Value) {
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3, "header.claims.signature");
        assert!(!jwt.contains('='), "no padding");
        let signed = format!("{}.{}", parts[0], parts[1]);
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).expect("signature base64url");
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, account.key.public_key().as_ref())
            .verify(signed.as_bytes(), &signature)
            .expect("the signature verifies with the public key");
        (decode_part(parts[0]), decode_part(parts[1]))
    }

    #[test]
    fn the_assertion_is_a_jwt_signed_with_the_key_and_carrying_the_claims() {
        let account = account("https://oauth2.googleapis.com/token");
        assert_eq!(account.project_id.as_deref(), Some("tollgate-test"));
        let jwt = account.assertion(1_700_000_000).expect("signs");
        let (header, claims) = verified(&account, &jwt);
        assert_eq!(header, serde_json::json!({ "alg": "RS256", "typ": "JWT", "kid": "test-key-1" }));
        assert_eq!(
            claims,
            serde_json::json!({
                "iss": "gateway@tollgate-test.iam.gserviceaccount.com",
                "scope": "https://www.googleapis.com/auth/cloud-platform",
                "aud": "https://oauth2.googleapis.com/token",
                "iat": 1_700_000_000u64,
                "exp": 1_700_003_600u64,
            })
        );
        // A tampered claim no longer verifies.
        let parts: Vec<&str> = jwt.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(claims.to_string().replace("1700003600", "1800003600"));
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).expect("base64url");
        let key = UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, account.key.public_key().as_ref());
        assert!(key.verify(format!("{}.{forged}", parts[0]).as_bytes(), &signature).is_err());
    }

    #[test]
    fn a_key_without_key_id_or_token_uri_gets_no_kid_and_googles_endpoint() {
        let mut v: Value = serde_json::from_str(&key_json("x")).expect("JSON");
        let map = v.as_object_mut().expect("object");
        map.remove("private_key_id");
        map.remove("token_uri");
        map.remove("project_id");
        let account = ServiceAccount::from_json(&v.to_string()).expect("parses");
        assert_eq!(account.token_uri, DEFAULT_TOKEN_URI);
        assert_eq!(account.project_id, None);
        let (header, claims) = verified(&account, &account.assertion(10).expect("signs"));
        assert_eq!(header, serde_json::json!({ "alg": "RS256", "typ": "JWT" }));
        assert_eq!(claims["aud"], DEFAULT_TOKEN_URI);
    }

    #[test]
    fn a_bad_key_file_names_the_field_and_never_shows_the_key() {
        let good: Value = serde_json::from_str(&key_json("https://oauth2.googleapis.com/token")).expect("JSON");
        let with = |field: &str, value: Value| {
            let mut v = good.clone();
            if value.is_null() {
                v.as_object_mut().expect("object").remove(field);
            } else {
                v[field] = value;
            }
            ServiceAccount::from_json(&v.to_string()).expect_err("refused")
        };
        let body_line = TEST_ONLY_PRIVATE_KEY.lines().nth(5).expect("a body line");
        let cases = [
            (with("client_email", Value::Null), "\"client_email\" is missing"),
            (with("private_key", Value::Null), "\"private_key\" is missing"),
            (with("type", Value::Null), "\"type\" is missing"),
            (with("type", "authorized_user".into()), "\"type\" is \"authorized_user\""),
            (with("client_email", 7.into()), "\"client_email\" is not a string"),
            (with("token_uri", "ftp://x".into()), "\"token_uri\" is not an http(s) URL"),
            (with("private_key", "not a key".into()), "\"private_key\" is not a PEM private key"),
            (
                with("private_key", TEST_ONLY_PRIVATE_KEY.replace(body_line, "!!!!").into()),
                "\"private_key\" is not valid PEM",
            ),
            (
                with("private_key", TEST_ONLY_PRIVATE_KEY.replace(body_line, &body_line[..40]).into()),
                "\"private_key\" is not a usable RSA key",
            ),
        ];
        for (error, expected) in cases {
            assert!(error.contains(expected), "{error:?} should contain {expected:?}");
            assert!(!error.contains(&body_line[..20]), "the key leaked: {error}");
        }
        assert!(ServiceAccount::from_json("{").expect_err("not JSON").contains("not JSON"));
        assert!(ServiceAccount::from_json("[]").expect_err("not an object").contains("not a JSON object"));

        // Escaped newlines (a key pasted through an environment variable) still parse.
        let escaped = with_escaped_newlines(&good);
        assert!(ServiceAccount::from_json(&escaped).is_ok());

        let shown = format!("{:?}", account("https://oauth2.googleapis.com/token"));
        assert!(shown.contains("gateway@tollgate-test") && shown.contains("***"), "{shown}");
        assert!(!shown.contains(&body_line[..20]) && !shown.contains("PRIVATE KEY"), "{shown}");
    }

    fn with_escaped_newlines(good: &Value) -> String {
        let mut v = good.clone();
        v["private_key"] = TEST_ONLY_PRIVATE_KEY.replace('\n', "\\n").into();
        v.to_string()
    }

    /// A token endpoint on 127.0.0.1 that counts requests. Answer `n` is the token `tok-n`.
    struct Endpoint {
        hits: AtomicUsize,
        status: AtomicU16,
        expires_in: AtomicU64,
        /// Answers wait while this is false.
        open: watch::Sender<bool>,
        /// Requests whose form or assertion was wrong.
        malformed: AtomicUsize,
        account: ServiceAccount,
    }

    impl Endpoint {
        fn hits(&self) -> usize {
            self.hits.load(SeqCst)
        }
        fn hold(&self) {
            self.open.send_replace(false);
        }
        fn release(&self) {
            self.open.send_replace(true);
        }
    }

    async fn token_endpoint(
        AxumState(ep): AxumState<Arc<Endpoint>>,
        headers: http::HeaderMap,
        body: String,
    ) -> axum::response::Response {
        let n = ep.hits.fetch_add(1, SeqCst) + 1;
        let form_ok = headers.get(http::header::CONTENT_TYPE).is_some_and(|v| v == "application/x-www-form-urlencoded");
        let assertion =
            body.strip_prefix("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=");
        match assertion {
            Some(jwt) if form_ok => {
                let (_, claims) = verified(&ep.account, jwt);
                if claims["aud"] != ep.account.token_uri.as_str() {
                    ep.malformed.fetch_add(1, SeqCst);
                }
            }
            _ => {
                ep.malformed.fetch_add(1, SeqCst);
            }
        }
        let mut open = ep.open.subscribe();
        let _ = open.wait_for(|o| *o).await;
        let status = http::StatusCode::from_u16(ep.status.load(SeqCst)).expect("a status");
        if !status.is_success() {
            let body = serde_json::json!({ "error": "internal_failure", "error_description": "try later" });
            return (status, axum::Json(body)).into_response();
        }
        let body = serde_json::json!({
            "access_token": format!("tok-{n}"),
            "expires_in": ep.expires_in.load(SeqCst),
            "token_type": "Bearer",
        });
        axum::Json(body).into_response()
    }

    /// The endpoint, a token source pointed at it, and the source's clock (seconds).
    async fn setup(wait: Duration) -> (Arc<Endpoint>, Arc<TokenSource>, Arc<AtomicU64>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let uri = format!("http://{}/token", listener.local_addr().expect("addr"));
        let ep = Arc::new(Endpoint {
            hits: AtomicUsize::new(0),
            status: AtomicU16::new(200),
            expires_in: AtomicU64::new(3600),
            open: watch::channel(true).0,
            malformed: AtomicUsize::new(0),
            account: account(&uri),
        });
        let router = axum::Router::new().route("/token", axum::routing::post(token_endpoint)).with_state(ep.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        let now = Arc::new(AtomicU64::new(1_000_000));
        let clock = now.clone();
        let http = crate::upstream::http_client().expect("client");
        let source = TokenSource::build(account(&uri), http, Arc::new(move || clock.load(SeqCst)), wait);
        (ep, source, now)
    }

    /// Waits (bounded) until `done` holds.
    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        for _ in 0..1000 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("never happened: {what}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_share_one_fetch() {
        let (ep, source, _) = setup(WAIT).await;
        ep.hold();
        let started = Arc::new(AtomicUsize::new(0));
        let callers: Vec<_> = (0..50)
            .map(|_| {
                let (source, started) = (source.clone(), started.clone());
                tokio::spawn(async move {
                    started.fetch_add(1, SeqCst);
                    source.token().await
                })
            })
            .collect();
        until("every caller asked while the fetch is held", || started.load(SeqCst) == 50 && ep.hits() == 1).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        ep.release();
        for caller in callers {
            assert_eq!(caller.await.expect("joined").expect("a token"), "tok-1");
        }
        assert_eq!(ep.hits(), 1);
        assert_eq!(ep.malformed.load(SeqCst), 0, "the request is the jwt-bearer form with a valid assertion");
        assert_eq!(source.token().await.expect("cached"), "tok-1");
        assert_eq!(ep.hits(), 1);
        let shown = format!("{source:?}");
        assert!(!shown.contains("tok-1"), "{shown}");
    }

    #[tokio::test]
    async fn a_token_with_ten_minutes_left_is_reused_without_a_fetch() {
        let (ep, source, now) = setup(WAIT).await;
        assert_eq!(source.token().await.expect("a token"), "tok-1");
        now.fetch_add(3600 - 600, SeqCst);
        for _ in 0..5 {
            assert_eq!(source.token().await.expect("a token"), "tok-1");
        }
        tokio::task::yield_now().await;
        assert_eq!(ep.hits(), 1);
    }

    #[tokio::test]
    async fn under_five_minutes_left_the_current_token_is_served_while_one_refresh_runs() {
        let (ep, source, now) = setup(WAIT).await;
        assert_eq!(source.token().await.expect("a token"), "tok-1");
        ep.hold();
        now.fetch_add(3600 - 200, SeqCst);
        // The refresh is held at the endpoint, so a token returned now was not waited for.
        for _ in 0..10 {
            assert_eq!(source.token().await.expect("the current token"), "tok-1");
        }
        until("the background refresh reached the endpoint", || ep.hits() == 2).await;
        now.fetch_add(5, SeqCst);
        assert_eq!(source.token().await.expect("the current token"), "tok-1");
        ep.release();
        until("the refreshed token is served", || {
            source.lock().token.as_ref().is_some_and(|h| h.value.expose() == "tok-2")
        })
        .await;
        assert_eq!(source.token().await.expect("the new token"), "tok-2");
        assert_eq!(ep.hits(), 2, "one background refresh");
    }

    #[tokio::test]
    async fn an_expired_token_makes_callers_wait_for_a_new_one() {
        let (ep, source, now) = setup(WAIT).await;
        assert_eq!(source.token().await.expect("a token"), "tok-1");
        for (step, expected) in [(3600 - 50, "tok-2"), (3600 + 1000, "tok-3")] {
            // 50 s left is too little to hand out; then well past expiry.
            ep.hold();
            now.fetch_add(step, SeqCst);
            let before = ep.hits();
            let waiting = {
                let source = source.clone();
                tokio::spawn(async move { source.token().await })
            };
            let second = {
                let source = source.clone();
                tokio::spawn(async move { source.token().await })
            };
            until("the fetch reached the endpoint", || ep.hits() == before + 1).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(!waiting.is_finished() && !second.is_finished(), "callers wait for the new token");
            ep.release();
            assert_eq!(waiting.await.expect("joined").expect("a token"), expected);
            assert_eq!(second.await.expect("joined").expect("a token"), expected);
        }
        assert_eq!(ep.hits(), 3);
    }

    #[tokio::test]
    async fn a_failing_endpoint_is_an_error_and_a_later_call_recovers() {
        let (ep, source, now) = setup(WAIT).await;
        ep.status.store(500, SeqCst);
        let error = tokio::time::timeout(Duration::from_secs(5), source.token())
            .await
            .expect("well within the 10 s bound")
            .expect_err("a 500 is no token");
        assert!(error.0.contains("500") && error.0.contains("internal_failure"), "{error}");
        assert!(!error.0.contains("eyJ"), "no assertion in the message: {error}");
        // Within the same second the failure is repeated, not refetched.
        assert!(source.token().await.is_err());
        assert_eq!(ep.hits(), 1);
        // A second later the endpoint is asked again; it works now.
        ep.status.store(200, SeqCst);
        now.fetch_add(1, SeqCst);
        assert_eq!(source.token().await.expect("recovered"), "tok-2");
        assert_eq!(ep.hits(), 2);
    }

    #[tokio::test]
    async fn a_failed_background_refresh_keeps_the_current_token_and_retries() {
        let (ep, source, now) = setup(WAIT).await;
        assert_eq!(source.token().await.expect("a token"), "tok-1");
        ep.status.store(500, SeqCst);
        now.fetch_add(3600 - 200, SeqCst);
        assert_eq!(source.token().await.expect("the current token"), "tok-1");
        until("the refresh failed", || source.lock().failed.is_some()).await;
        assert_eq!(source.token().await.expect("still the current token"), "tok-1");
        assert_eq!(ep.hits(), 2, "no retry within the second");
        ep.status.store(200, SeqCst);
        now.fetch_add(1, SeqCst);
        assert_eq!(source.token().await.expect("the current token"), "tok-1");
        until("the retry succeeded", || source.lock().token.as_ref().is_some_and(|h| h.value.expose() == "tok-3"))
            .await;
        assert_eq!(source.token().await.expect("the new token"), "tok-3");
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_is_an_error_not_a_hang() {
        let closed = {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            listener.local_addr().expect("addr")
        };
        let http = crate::upstream::http_client().expect("client");
        let source = TokenSource::new(account(&format!("http://{closed}/token")), http);
        let error = tokio::time::timeout(Duration::from_secs(15), source.token())
            .await
            .expect("bounded")
            .expect_err("nobody listens");
        assert!(error.0.contains(&closed.to_string()), "{error}");
    }

    #[tokio::test]
    async fn a_silent_endpoint_ends_the_wait_at_the_bound_and_is_asked_once() {
        let (ep, source, _) = setup(Duration::from_millis(200)).await;
        ep.hold();
        let error = source.token().await.expect_err("no answer in time");
        assert!(error.0.contains("within"), "{error}");
        // The fetch still runs; a second caller joins it rather than asking again.
        assert!(source.token().await.is_err());
        assert_eq!(ep.hits(), 1);
        ep.release();
        until("the held fetch landed", || source.lock().token.is_some()).await;
        assert_eq!(source.token().await.expect("a token"), "tok-1");
        assert_eq!(ep.hits(), 1);
    }
}
