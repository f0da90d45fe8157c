//! Dashboard sign-in sessions as values: the session cookie (a random id,
//! its expiry and an HMAC over both), the CSRF token derived from the
//! session, and the short-lived login cookie that carries one sign-in's
//! `state`, `nonce` and PKCE verifier from `/ui/auth/login` to
//! `/ui/auth/callback`. No I/O: the key is given by the caller.
//!
//! A session cookie is checked in this order, cheapest first: its form, its
//! MAC (a tampered cookie never reaches the database), its expiry, and then,
//! by the caller, the stored session (revocation).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const SESSION_COOKIE: &str = "tollgate_session";
pub const LOGIN_COOKIE: &str = "tollgate_login";
/// The header a signed-in browser sends on every state-changing call.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// A sign-in must come back from the identity provider within this time.
pub const LOGIN_TTL_MS: i64 = 10 * 60 * 1000;

/// A stored session: who signed in, with which groups, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The public handle (listing, revoking): hex of the id hash's first 8 bytes.
    pub handle: String,
    /// The keyed hash of the cookie's id; the id itself is never stored.
    pub id_hash: [u8; 32],
    /// The identity provider's `sub`.
    pub subject: String,
    pub name: String,
    pub email: Option<String>,
    /// The groups the provider reported at sign-in; the role is mapped from
    /// them on every request, with the configuration in force.
    pub groups: Vec<String>,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub revoked_ms: Option<i64>,
    /// The address the sign-in came from.
    pub source: Option<String>,
}

impl Session {
    pub fn active(&self, now_ms: i64) -> bool {
        self.revoked_ms.is_none() && self.expires_ms > now_ms
    }
}

/// The public handle of a session id hash.
pub fn handle_of(id_hash: &[u8; 32]) -> String {
    hex::encode(&id_hash[..8])
}

/// Why a cookie was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Malformed,
    Tampered,
    Expired,
}

impl Refused {
    pub fn message(self) -> &'static str {
        match self {
            Refused::Malformed => "the session cookie is malformed; sign in again",
            Refused::Tampered => "the session cookie's signature does not match; sign in again",
            Refused::Expired => "the session has expired; sign in again",
        }
    }
}

/// The key that signs cookies and derives CSRF tokens (from the server's secret).
#[derive(Clone)]
pub struct CookieKey {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CookieKey(***)")
    }
}

impl CookieKey {
    pub fn new(secret: &[u8]) -> CookieKey {
        let mac =
            Hmac::<Sha256>::new_from_slice(secret).unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        CookieKey { mac }
    }

    fn tag(&self, purpose: &str, parts: &[&str]) -> Hmac<Sha256> {
        let mut m = self.mac.clone();
        m.update(purpose.as_bytes());
        for p in parts {
            m.update(b"\n");
            m.update(p.as_bytes());
        }
        m
    }

    fn sign(&self, purpose: &str, parts: &[&str]) -> String {
        URL_SAFE_NO_PAD.encode(self.tag(purpose, parts).finalize().into_bytes())
    }

    /// Constant-time check of a signature made by [`CookieKey::sign`].
    fn verify(&self, purpose: &str, parts: &[&str], sig_b64: &str) -> bool {
        let Ok(sig) = URL_SAFE_NO_PAD.decode(sig_b64) else { return false };
        self.tag(purpose, parts).verify_slice(&sig).is_ok()
    }
}

/// 32 random bytes, base64url: session ids, `state`, `nonce`, PKCE verifiers.
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// The PKCE `code_challenge` of a verifier (method `S256`).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// The session cookie's value: `v1.<id>.<expires_ms>.<mac>`.
pub fn seal_session(key: &CookieKey, id: &str, expires_ms: i64) -> String {
    let exp = expires_ms.to_string();
    format!("v1.{id}.{exp}.{}", key.sign("session", &[id, &exp]))
}

/// A session cookie's id and expiry, when its MAC holds and it has not expired.
pub fn open_session(key: &CookieKey, value: &str, now_ms: i64) -> Result<(String, i64), Refused> {
    let mut parts = value.split('.');
    let (Some("v1"), Some(id), Some(exp), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Refused::Malformed);
    };
    if id.is_empty() || id.len() > 64 {
        return Err(Refused::Malformed);
    }
    if !key.verify("session", &[id, exp], sig) {
        return Err(Refused::Tampered);
    }
    let exp: i64 = exp.parse().map_err(|_| Refused::Malformed)?;
    if exp <= now_ms {
        return Err(Refused::Expired);
    }
    Ok((id.to_string(), exp))
}

/// The CSRF token of a session: a MAC of its id, so it needs no storage and
/// no cross-site page can compute it.
pub fn csrf_token(key: &CookieKey, session_id: &str) -> String {
    key.sign("csrf", &[session_id])
}

pub fn csrf_ok(key: &CookieKey, session_id: &str, presented: &str) -> bool {
    key.verify("csrf", &[session_id], presented)
}

/// One sign-in in progress, carried by the login cookie (signed, 10 minutes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginState {
    pub state: String,
    pub nonce: String,
    pub verifier: String,
    /// Where the dashboard goes after sign-in (a path under `/ui`).
    pub return_to: String,
    pub expires_ms: i64,
}

pub fn seal_login(key: &CookieKey, login: &LoginState) -> String {
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(login).unwrap_or_default());
    let sig = key.sign("login", &[&body]);
    format!("{body}.{sig}")
}

pub fn open_login(key: &CookieKey, value: &str, now_ms: i64) -> Result<LoginState, Refused> {
    let (body, sig) = value.split_once('.').ok_or(Refused::Malformed)?;
    if !key.verify("login", &[body], sig) {
        return Err(Refused::Tampered);
    }
    let bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| Refused::Malformed)?;
    let login: LoginState = serde_json::from_slice(&bytes).map_err(|_| Refused::Malformed)?;
    if login.expires_ms <= now_ms {
        return Err(Refused::Expired);
    }
    Ok(login)
}

/// Where to go after sign-in: a dashboard path (`/ui…`), never another site.
pub fn safe_return_to(asked: Option<&str>) -> String {
    match asked {
        Some(p)
            if (p == "/ui" || p.starts_with("/ui/") || p.starts_with("/ui#"))
                && !p.contains("//")
                && !p.contains('\\')
                && !p.chars().any(char::is_control)
                && p.len() <= 2048 =>
        {
            p.to_string()
        }
        _ => "/ui/".to_string(),
    }
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// `Set-Cookie` for the session: whole site, script-proof, never sent by
/// another site's pages (`SameSite=Strict`), `Secure` over https.
pub fn session_set_cookie(value: &str, max_age_s: i64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure}")
}

/// `Set-Cookie` for a sign-in in progress: `SameSite=Lax`, since the
/// identity provider's redirect back is a cross-site navigation.
pub fn login_set_cookie(value: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{LOGIN_COOKIE}={value}; Path=/ui/auth; HttpOnly; SameSite=Lax; Max-Age={}{secure}", LOGIN_TTL_MS / 1000)
}

pub fn clear_session_cookie(secure: bool) -> String {
    session_set_cookie("", 0, secure)
}

pub fn clear_login_cookie(secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{LOGIN_COOKIE}=; Path=/ui/auth; HttpOnly; SameSite=Lax; Max-Age=0{secure}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_cookie_opens_until_it_expires_and_not_when_altered() {
        let key = CookieKey::new(b"server secret");
        let id = random_token();
        let c = seal_session(&key, &id, 10_000);
        assert_eq!(open_session(&key, &c, 9_999), Ok((id.clone(), 10_000)));
        assert_eq!(open_session(&key, &c, 10_000), Err(Refused::Expired));
        // Another key, a moved expiry, a changed id, a flipped signature byte.
        assert_eq!(open_session(&CookieKey::new(b"other"), &c, 0), Err(Refused::Tampered));
        let later = c.replace(".10000.", ".99999.");
        assert_eq!(open_session(&key, &later, 0), Err(Refused::Tampered));
        let mut other_id = c.clone().into_bytes();
        other_id[3] = if other_id[3] == b'A' { b'B' } else { b'A' };
        assert_eq!(open_session(&key, std::str::from_utf8(&other_id).unwrap(), 0), Err(Refused::Tampered));
        let mut sig = c.clone();
        let last = sig.pop().unwrap();
        sig.push(if last == 'A' { 'B' } else { 'A' });
        assert_eq!(open_session(&key, &sig, 0), Err(Refused::Tampered));
        for bad in ["", "v1", "v2.a.1.b", "v1.a.1", "v1.a.1.b.c", "v1..1.sig"] {
            assert!(open_session(&key, bad, 0).is_err(), "{bad}");
        }
    }

    #[test]
    fn csrf_tokens_belong_to_one_session() {
        let key = CookieKey::new(b"k");
        let t = csrf_token(&key, "session-a");
        assert!(csrf_ok(&key, "session-a", &t));
        assert!(!csrf_ok(&key, "session-b", &t));
        assert!(!csrf_ok(&key, "session-a", ""));
        assert!(!csrf_ok(&CookieKey::new(b"other"), "session-a", &t));
    }

    #[test]
    fn login_state_round_trips_and_refuses_changes() {
        let key = CookieKey::new(b"k");
        let l = LoginState {
            state: random_token(),
            nonce: random_token(),
            verifier: random_token(),
            return_to: "/ui/#/keys".into(),
            expires_ms: 5_000,
        };
        let c = seal_login(&key, &l);
        assert_eq!(open_login(&key, &c, 4_999), Ok(l));
        assert_eq!(open_login(&key, &c, 5_000), Err(Refused::Expired));
        let (body, sig) = c.split_once('.').unwrap();
        assert_eq!(open_login(&key, &format!("{body}x.{sig}"), 0), Err(Refused::Tampered));
    }

    #[test]
    fn pkce_challenge_matches_rfc_7636_example() {
        // RFC 7636, appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn return_to_stays_on_the_dashboard() {
        assert_eq!(safe_return_to(Some("/ui/#/keys")), "/ui/#/keys");
        assert_eq!(safe_return_to(Some("/ui")), "/ui");
        for bad in ["https://evil.example/", "//evil.example", "/ui//evil", "/admin/v1/keys", "/ui\\x", "/uix"] {
            assert_eq!(safe_return_to(Some(bad)), "/ui/", "{bad}");
        }
        assert_eq!(safe_return_to(None), "/ui/");
    }

    #[test]
    fn cookies_are_read_from_any_cookie_header() {
        let mut h = HeaderMap::new();
        h.append(http::header::COOKIE, "a=1; tollgate_session=v1.x.2.s".parse().unwrap());
        h.append(http::header::COOKIE, "b=2".parse().unwrap());
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("v1.x.2.s"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "c"), None);
        let set = session_set_cookie("v", 60, true);
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.ends_with("; Secure"), "{set}");
        assert!(!session_set_cookie("v", 60, false).contains("Secure"));
    }
}
