//! Sign-in with an OpenID Connect provider, as a relying party: discovery
//! (`/.well-known/openid-configuration`), the authorization URL (code flow
//! with PKCE `S256`, `state` and `nonce`), the code exchange at the token
//! endpoint (client secret by HTTP Basic), verification of the ID token
//! (signature RS256, PS256 or ES256 against the provider's JWKS; `iss`,
//! `aud`, `azp`, `exp`, `iat` and `nonce`), and the userinfo call when the
//! groups are not in the ID token.
//!
//! Discovery and the key set are cached for an hour; a token signed with a
//! key id not in the cached set fetches the set again once (key rotation).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::signature::{self, UnparsedPublicKey};
use serde::Deserialize;
use serde_json::Value;

use crate::config::OidcConfig;

/// How long discovery and the key set are trusted.
const CACHE_FOR: Duration = Duration::from_secs(3600);
/// Each call to the provider must finish within this time.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Clock skew tolerated on `exp` and `iat`.
const SKEW_MS: i64 = 60_000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OidcError {
    /// The provider could not be reached or answered with an error.
    #[error("identity provider: {0}")]
    Provider(String),
    /// The ID token (or userinfo) did not pass a check.
    #[error("the identity provider's token was refused: {0}")]
    Token(String),
}

/// Who signed in, from the verified ID token (and userinfo).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub subject: String,
    /// `name`, else `preferred_username`, else `email`, else the subject.
    pub name: String,
    pub email: Option<String>,
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct Metadata {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    userinfo_endpoint: Option<String>,
}

/// One public key of the provider's JWKS.
#[derive(Debug, Clone, Deserialize)]
pub struct Jwk {
    pub kty: String,
    pub kid: Option<String>,
    #[serde(rename = "use")]
    pub use_: Option<String>,
    pub n: Option<String>,
    pub e: Option<String>,
    pub crv: Option<String>,
    pub x: Option<String>,
    pub y: Option<String>,
}

#[derive(Debug, Clone)]
struct Provider {
    issuer: String,
    metadata: Metadata,
    keys: Vec<Jwk>,
    fetched: Instant,
}

/// The relying party: an HTTP client and the provider's cached metadata and keys.
pub struct Oidc {
    http: reqwest::Client,
    cache: Mutex<Option<Provider>>,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Oidc")
    }
}

fn provider_err(what: &str, e: impl std::fmt::Display) -> OidcError {
    OidcError::Provider(format!("{what}: {e}"))
}

/// An endpoint the provider names: https, or the issuer's own scheme and host
/// (a provider on loopback in tests).
fn check_endpoint(issuer: &str, url: &str) -> Result<(), OidcError> {
    let u = reqwest::Url::parse(url).map_err(|e| provider_err("discovery names an invalid endpoint", e))?;
    let i = reqwest::Url::parse(issuer).map_err(|e| provider_err("issuer", e))?;
    let same_host = u.scheme() == i.scheme() && u.host_str() == i.host_str();
    if u.scheme() == "https" || same_host {
        Ok(())
    } else {
        Err(OidcError::Provider(format!("discovery names endpoint {url:?}: not https and not on the issuer's host")))
    }
}

impl Oidc {
    pub fn new(http: reqwest::Client) -> Oidc {
        Oidc { http, cache: Mutex::new(None) }
    }

    async fn get_json(&self, url: &str, bearer: Option<&str>) -> Result<Value, OidcError> {
        let mut req = self.http.get(url).timeout(CALL_TIMEOUT).header("accept", "application/json");
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| provider_err(&format!("GET {url}"), e))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(OidcError::Provider(format!("GET {url} answered {status}")));
        }
        resp.json().await.map_err(|e| provider_err(&format!("GET {url} answered no JSON"), e))
    }

    /// The provider's metadata and keys, fetched when missing, stale, for
    /// another issuer (after a reload), or when `refresh_keys` asks.
    async fn provider(&self, cfg: &OidcConfig, refresh_keys: bool) -> Result<Provider, OidcError> {
        let cached = self.cache.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(p) = cached.filter(|p| p.issuer == cfg.issuer && p.fetched.elapsed() < CACHE_FOR) {
            if !refresh_keys {
                return Ok(p);
            }
            let keys = self.keys(&p.metadata.jwks_uri).await?;
            let p = Provider { keys, fetched: Instant::now(), ..p };
            *self.cache.lock().unwrap_or_else(|p| p.into_inner()) = Some(p.clone());
            return Ok(p);
        }
        let url = format!("{}/.well-known/openid-configuration", cfg.issuer.trim_end_matches('/'));
        let metadata: Metadata = serde_json::from_value(self.get_json(&url, None).await?)
            .map_err(|e| provider_err("discovery document", e))?;
        if metadata.issuer != cfg.issuer {
            return Err(OidcError::Provider(format!(
                "discovery says the issuer is {:?}, the configuration {:?}",
                metadata.issuer, cfg.issuer
            )));
        }
        for u in [&metadata.authorization_endpoint, &metadata.token_endpoint, &metadata.jwks_uri] {
            check_endpoint(&cfg.issuer, u)?;
        }
        if let Some(u) = &metadata.userinfo_endpoint {
            check_endpoint(&cfg.issuer, u)?;
        }
        let keys = self.keys(&metadata.jwks_uri).await?;
        let p = Provider { issuer: cfg.issuer.clone(), metadata, keys, fetched: Instant::now() };
        *self.cache.lock().unwrap_or_else(|p| p.into_inner()) = Some(p.clone());
        Ok(p)
    }

    async fn keys(&self, jwks_uri: &str) -> Result<Vec<Jwk>, OidcError> {
        #[derive(Deserialize)]
        struct Jwks {
            keys: Vec<Value>,
        }
        let set: Jwks =
            serde_json::from_value(self.get_json(jwks_uri, None).await?).map_err(|e| provider_err("JWKS", e))?;
        // Keys of a kind we cannot read are skipped, not fatal.
        Ok(set.keys.into_iter().filter_map(|k| serde_json::from_value(k).ok()).collect())
    }

    /// Where to send the browser to sign in.
    pub async fn authorize_url(
        &self,
        cfg: &OidcConfig,
        state: &str,
        nonce: &str,
        challenge: &str,
    ) -> Result<String, OidcError> {
        let p = self.provider(cfg, false).await?;
        let mut u = reqwest::Url::parse(&p.metadata.authorization_endpoint)
            .map_err(|e| provider_err("authorization_endpoint", e))?;
        u.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &cfg.client_id)
            .append_pair("redirect_uri", &cfg.redirect_url)
            .append_pair("scope", &cfg.scopes.join(" "))
            .append_pair("state", state)
            .append_pair("nonce", nonce)
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256");
        Ok(u.into())
    }

    /// Exchanges the authorization code and verifies what comes back.
    pub async fn sign_in(
        &self,
        cfg: &OidcConfig,
        code: &str,
        verifier: &str,
        nonce: &str,
        now_ms: i64,
    ) -> Result<Identity, OidcError> {
        let p = self.provider(cfg, false).await?;
        // RFC 6749 §2.3.1: the client id and secret are form-encoded inside Basic.
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let resp = self
            .http
            .post(&p.metadata.token_endpoint)
            .timeout(CALL_TIMEOUT)
            .basic_auth(enc(&cfg.client_id), Some(enc(cfg.client_secret.expose())))
            .header("accept", "application/json")
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", &cfg.redirect_url),
                ("code_verifier", verifier),
            ])
            .send()
            .await
            .map_err(|e| provider_err("token endpoint", e))?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let why = body.get("error_description").or_else(|| body.get("error")).and_then(Value::as_str);
            return Err(OidcError::Provider(format!(
                "the token endpoint answered {status}{}",
                why.map(|w| format!(": {}", clip(w))).unwrap_or_default()
            )));
        }
        let id_token = body
            .get("id_token")
            .and_then(Value::as_str)
            .ok_or_else(|| OidcError::Provider("the token endpoint returned no id_token".into()))?;
        let claims = match verify_id_token(id_token, &p.keys, cfg, nonce, now_ms) {
            Err(UnknownKey) => {
                let p = self.provider(cfg, true).await?;
                verify_id_token(id_token, &p.keys, cfg, nonce, now_ms).map_err(|e| e.into_error())?
            }
            other => other.map_err(|e| e.into_error())?,
        };
        let mut identity = identity_of(&claims, &cfg.groups_claim)?;
        if claims.get(&cfg.groups_claim).is_none() {
            if let (Some(url), Some(token)) =
                (&p.metadata.userinfo_endpoint, body.get("access_token").and_then(Value::as_str))
            {
                let info = self.get_json(url, Some(token)).await?;
                // OIDC Core §5.3.2: the userinfo's `sub` must be the ID token's.
                if info.get("sub").and_then(Value::as_str) != Some(identity.subject.as_str()) {
                    return Err(OidcError::Token("userinfo is about another subject".into()));
                }
                let info = info.as_object().cloned().unwrap_or_default();
                let from_info = identity_of(&info, &cfg.groups_claim)?;
                identity.groups = from_info.groups;
                if identity.email.is_none() {
                    identity.email = from_info.email;
                }
                if identity.name == identity.subject {
                    identity.name = from_info.name;
                }
            }
        }
        Ok(identity)
    }
}

/// At most 200 characters of a provider's text, for messages.
pub(crate) fn clip(s: &str) -> String {
    s.chars().take(200).collect()
}

/// Why a token failed: the key it names is unknown (fetch the set again), or anything else.
#[derive(Debug, PartialEq, Eq)]
enum Failure {
    UnknownKey,
    Bad(String),
}
use Failure::UnknownKey;

impl Failure {
    fn into_error(self) -> OidcError {
        match self {
            Failure::UnknownKey => OidcError::Token("signed with a key the provider does not publish".into()),
            Failure::Bad(m) => OidcError::Token(m),
        }
    }
}

fn bad(m: impl Into<String>) -> Failure {
    Failure::Bad(m.into())
}

fn b64(s: &str, what: &str) -> Result<Vec<u8>, Failure> {
    URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).map_err(|_| bad(format!("{what} is not base64url")))
}

/// Checks one signature with one key.
type Verifier = fn(&Jwk, &[u8], &[u8]) -> Result<(), Failure>;

/// Checks the ID token's signature and claims; its claims when they hold.
fn verify_id_token(
    token: &str,
    keys: &[Jwk],
    cfg: &OidcConfig,
    nonce: &str,
    now_ms: i64,
) -> Result<serde_json::Map<String, Value>, Failure> {
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(bad("not a signed JWT"));
    };
    let header: Value = serde_json::from_slice(&b64(h, "the header")?).map_err(|_| bad("the header is not JSON"))?;
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
    let kid = header.get("kid").and_then(Value::as_str);
    let (kty, verify): (&str, Verifier) = match alg {
        "RS256" => ("RSA", |k, m, s| rsa(k, &signature::RSA_PKCS1_2048_8192_SHA256, m, s)),
        "PS256" => ("RSA", |k, m, s| rsa(k, &signature::RSA_PSS_2048_8192_SHA256, m, s)),
        "ES256" => ("EC", ec_p256),
        // `none` and shared-secret algorithms are never accepted.
        other => return Err(bad(format!("algorithm {other:?} is not accepted (RS256, PS256, ES256)"))),
    };
    let candidates: Vec<&Jwk> = keys
        .iter()
        .filter(|k| k.kty == kty && k.use_.as_deref().is_none_or(|u| u == "sig"))
        .filter(|k| kid.is_none() || k.kid.as_deref() == kid)
        .collect();
    if candidates.is_empty() {
        return Err(UnknownKey);
    }
    let sig = b64(s, "the signature")?;
    let message = &token.as_bytes()[..h.len() + 1 + c.len()];
    if !candidates.iter().any(|k| verify(k, message, &sig).is_ok()) {
        return Err(bad("the signature does not verify"));
    }
    let claims: Value = serde_json::from_slice(&b64(c, "the claims")?).map_err(|_| bad("the claims are not JSON"))?;
    let Value::Object(claims) = claims else { return Err(bad("the claims are not an object")) };
    if claims.get("iss").and_then(Value::as_str) != Some(cfg.issuer.as_str()) {
        return Err(bad("iss is not the configured issuer"));
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => *a == cfg.client_id,
        Some(Value::Array(a)) => a.iter().any(|x| x.as_str() == Some(&cfg.client_id)),
        _ => false,
    };
    if !aud_ok {
        return Err(bad("aud does not name this client"));
    }
    if let Some(azp) = claims.get("azp").and_then(Value::as_str) {
        if azp != cfg.client_id {
            return Err(bad("azp names another client"));
        }
    }
    let exp = claims.get("exp").and_then(Value::as_i64).ok_or_else(|| bad("exp is missing"))?;
    if exp.saturating_mul(1000) + SKEW_MS <= now_ms {
        return Err(bad("the token has expired"));
    }
    if claims.get("iat").and_then(Value::as_i64).is_some_and(|iat| iat.saturating_mul(1000) > now_ms + SKEW_MS) {
        return Err(bad("the token is issued in the future"));
    }
    if claims.get("nonce").and_then(Value::as_str) != Some(nonce) {
        return Err(bad("the nonce does not match this sign-in"));
    }
    Ok(claims)
}

fn rsa(k: &Jwk, alg: &'static signature::RsaParameters, message: &[u8], sig: &[u8]) -> Result<(), Failure> {
    let (Some(n), Some(e)) = (&k.n, &k.e) else { return Err(bad("an RSA key without n or e")) };
    let (n, e) = (b64(n, "n")?, b64(e, "e")?);
    signature::RsaPublicKeyComponents { n: &n, e: &e }.verify(alg, message, sig).map_err(|_| bad("bad signature"))
}

fn ec_p256(k: &Jwk, message: &[u8], sig: &[u8]) -> Result<(), Failure> {
    let (Some("P-256"), Some(x), Some(y)) = (k.crv.as_deref(), &k.x, &k.y) else {
        return Err(bad("an EC key that is not P-256"));
    };
    let mut point = vec![0x04];
    point.extend(b64(x, "x")?);
    point.extend(b64(y, "y")?);
    UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
        .verify(message, sig)
        .map_err(|_| bad("bad signature"))
}

/// The identity in a set of claims (ID token or userinfo).
fn identity_of(claims: &serde_json::Map<String, Value>, groups_claim: &str) -> Result<Identity, OidcError> {
    let str_of = |k: &str| claims.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(String::from);
    let subject = str_of("sub").ok_or_else(|| OidcError::Token("sub is missing".into()))?;
    let email = str_of("email");
    let name =
        str_of("name").or_else(|| str_of("preferred_username")).or_else(|| email.clone()).unwrap_or(subject.clone());
    let groups = match claims.get(groups_claim) {
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(String::from).collect(),
        Some(Value::String(s)) => s.split([',', ' ']).filter(|g| !g.is_empty()).map(String::from).collect(),
        _ => Vec::new(),
    };
    Ok(Identity { subject, name, email, groups })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Role, Secret};
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    use serde_json::json;

    fn cfg() -> OidcConfig {
        OidcConfig {
            issuer: "https://idp.example".into(),
            client_id: "tollgate".into(),
            client_secret: Secret::new("s".into()),
            redirect_url: "https://gw.example/ui/auth/callback".into(),
            scopes: vec!["openid".into()],
            groups_claim: "groups".into(),
            session_ttl: Duration::from_secs(3600),
            roles: vec![("admins".into(), Role::Admin)],
        }
    }

    /// A P-256 key pair and its JWK, and a signer of JWTs with it.
    fn es256() -> (EcdsaKeyPair, Jwk) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        let pt = pair.public_key().as_ref();
        let jwk = Jwk {
            kty: "EC".into(),
            kid: Some("k1".into()),
            use_: Some("sig".into()),
            n: None,
            e: None,
            crv: Some("P-256".into()),
            x: Some(URL_SAFE_NO_PAD.encode(&pt[1..33])),
            y: Some(URL_SAFE_NO_PAD.encode(&pt[33..65])),
        };
        (pair, jwk)
    }

    fn sign(pair: &EcdsaKeyPair, kid: &str, claims: &Value) -> String {
        let h = URL_SAFE_NO_PAD.encode(json!({"alg": "ES256", "kid": kid, "typ": "JWT"}).to_string());
        let c = URL_SAFE_NO_PAD.encode(claims.to_string());
        let input = format!("{h}.{c}");
        let sig = pair.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }

    fn claims(now_s: i64) -> Value {
        json!({"iss": "https://idp.example", "aud": "tollgate", "sub": "alice", "exp": now_s + 300,
               "iat": now_s, "nonce": "n1", "groups": ["admins", "x"], "name": "Alice"})
    }

    #[test]
    fn a_good_token_verifies_and_yields_the_identity() {
        let (pair, jwk) = es256();
        let now_s = 1_800_000_000;
        let t = sign(&pair, "k1", &claims(now_s));
        let c = verify_id_token(&t, &[jwk], &cfg(), "n1", now_s * 1000).unwrap();
        let id = identity_of(&c, "groups").unwrap();
        assert_eq!(id.subject, "alice");
        assert_eq!(id.name, "Alice");
        assert_eq!(id.groups, ["admins", "x"]);
    }

    #[test]
    fn every_claim_check_refuses() {
        let (pair, jwk) = es256();
        let now_s = 1_800_000_000;
        let keys = [jwk];
        let try_with = |patch: Value, nonce: &str| {
            let mut c = claims(now_s);
            for (k, v) in patch.as_object().unwrap() {
                c[k] = v.clone();
            }
            verify_id_token(&sign(&pair, "k1", &c), &keys, &cfg(), nonce, now_s * 1000)
        };
        assert!(try_with(json!({}), "n1").is_ok());
        assert!(try_with(json!({"aud": ["other", "tollgate"]}), "n1").is_ok());
        for (patch, why) in [
            (json!({"iss": "https://evil.example"}), "iss"),
            (json!({"aud": "other"}), "aud"),
            (json!({"azp": "other"}), "azp"),
            (json!({"exp": now_s - 120}), "expired"),
            (json!({"iat": now_s + 600}), "future"),
            (json!({"nonce": "n2"}), "nonce"),
        ] {
            let r = try_with(patch, "n1");
            assert!(
                matches!(&r, Err(Failure::Bad(m)) if m.contains(why) || why == "expired" && m.contains("expired")),
                "{why}: {r:?}"
            );
        }
    }

    #[test]
    fn signatures_algorithms_and_keys_are_checked() {
        let (pair, jwk) = es256();
        let (_, other) = es256();
        let now_s = 1_800_000_000;
        let t = sign(&pair, "k1", &claims(now_s));
        // Another key under the same id: the signature fails.
        let r = verify_id_token(&t, &[other], &cfg(), "n1", now_s * 1000);
        assert_eq!(r.unwrap_err(), bad("the signature does not verify"));
        // A key id the set does not hold: fetch the set again.
        let t2 = sign(&pair, "k2", &claims(now_s));
        assert_eq!(verify_id_token(&t2, std::slice::from_ref(&jwk), &cfg(), "n1", now_s * 1000), Err(UnknownKey));
        // Changed claims under the old signature.
        let mut parts: Vec<&str> = t.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(claims(now_s).to_string().replace("alice", "admin0"));
        parts[1] = &forged;
        let r = verify_id_token(&parts.join("."), std::slice::from_ref(&jwk), &cfg(), "n1", now_s * 1000);
        assert_eq!(r.unwrap_err(), bad("the signature does not verify"));
        // alg none and HS256 are refused whatever the key set.
        for alg in ["none", "HS256"] {
            let h = URL_SAFE_NO_PAD.encode(json!({"alg": alg}).to_string());
            let c = URL_SAFE_NO_PAD.encode(claims(now_s).to_string());
            let r = verify_id_token(&format!("{h}.{c}."), std::slice::from_ref(&jwk), &cfg(), "n1", now_s * 1000);
            assert!(matches!(r, Err(Failure::Bad(m)) if m.contains("not accepted")), "{alg}");
        }
    }

    #[test]
    fn endpoints_must_be_https_or_on_the_issuers_host() {
        assert!(check_endpoint("http://127.0.0.1:9000", "http://127.0.0.1:9000/token").is_ok());
        assert!(check_endpoint("https://idp.example", "https://other.example/jwks").is_ok());
        assert!(check_endpoint("https://idp.example", "http://idp.example/jwks").is_err());
        assert!(check_endpoint("http://127.0.0.1:9000", "http://10.0.0.1/token").is_err());
    }

    #[test]
    fn groups_as_a_list_or_a_string() {
        let m = |v: Value| v.as_object().unwrap().clone();
        let id = identity_of(&m(json!({"sub": "s", "roles": "a b,c"})), "roles").unwrap();
        assert_eq!(id.groups, ["a", "b", "c"]);
        assert_eq!(id.name, "s");
        assert!(identity_of(&m(json!({"groups": []})), "groups").is_err());
    }
}
