//! Dashboard sign-in with OpenID Connect, end to end against an identity
//! provider run in the test (discovery, authorize, token with PKCE and
//! client secret checks, JWKS, userinfo; ID tokens signed ES256), and the
//! sessions it opens: roles from groups, CSRF on every state-changing call,
//! tampered, expired and revoked cookies refused. Also key rotation with a
//! grace period. (`tests/ui/sso.test.mjs` drives the same flow in Chromium
//! against the npm `oidc-provider`.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use common::{chat, Harness};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tollgate::config::{OidcConfig, Role, Secret};
use tollgate::session::{self, CookieKey};

const SECRET: &str = "client-secret-for-tests";

/// A user of the test identity provider.
#[derive(Clone)]
struct User {
    sub: &'static str,
    name: &'static str,
    groups: &'static [&'static str],
}

const ALICE: User = User { sub: "alice", name: "Alice Admin", groups: &["platform-admins"] };
const BOB: User = User { sub: "bob", name: "Bob Growth", groups: &["growth-leads", "staff"] };
const VERA: User = User { sub: "vera", name: "Vera Viewer", groups: &["finance"] };
const NOBODY: User = User { sub: "nobody", name: "No Body", groups: &["staff"] };

struct Idp {
    issuer: String,
    key: EcdsaKeyPair,
    /// Who the next authorization signs in as.
    next_user: Mutex<User>,
    /// code → (user, nonce, PKCE challenge, redirect_uri)
    codes: Mutex<HashMap<String, (User, String, String, String)>>,
    /// access token → user
    tokens: Mutex<HashMap<String, User>>,
    /// Put the groups in the ID token (else only at userinfo).
    groups_in_id_token: bool,
}

async fn discovery(State(idp): State<Arc<Idp>>) -> Json<Value> {
    let i = &idp.issuer;
    Json(json!({
        "issuer": i,
        "authorization_endpoint": format!("{i}/authorize"),
        "token_endpoint": format!("{i}/token"),
        "jwks_uri": format!("{i}/jwks"),
        "userinfo_endpoint": format!("{i}/userinfo"),
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
    }))
}

async fn jwks(State(idp): State<Arc<Idp>>) -> Json<Value> {
    let pt = idp.key.public_key().as_ref();
    Json(json!({"keys": [{
        "kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig", "alg": "ES256",
        "x": URL_SAFE_NO_PAD.encode(&pt[1..33]), "y": URL_SAFE_NO_PAD.encode(&pt[33..65]),
    }]}))
}

/// Signs the user in at once (no login page) and sends the browser back.
async fn authorize(State(idp): State<Arc<Idp>>, Query(q): Query<HashMap<String, String>>) -> Response {
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], "tollgate");
    assert_eq!(q["code_challenge_method"], "S256", "PKCE with S256");
    assert!(q["scope"].split(' ').any(|s| s == "openid"));
    let user = idp.next_user.lock().unwrap().clone();
    let code = session::random_token();
    idp.codes
        .lock()
        .unwrap()
        .insert(code.clone(), (user, q["nonce"].clone(), q["code_challenge"].clone(), q["redirect_uri"].clone()));
    Redirect::to(&format!("{}?code={code}&state={}", q["redirect_uri"], q["state"])).into_response()
}

async fn token(State(idp): State<Arc<Idp>>, headers: HeaderMap, body: String) -> Response {
    let f: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    let basic = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    let want = format!("Basic {}", STANDARD.encode(format!("tollgate:{SECRET}")));
    if basic != want {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_client"}))).into_response();
    }
    let Some((user, nonce, challenge, redirect)) = idp.codes.lock().unwrap().remove(&f["code"]) else {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "invalid_grant"}))).into_response();
    };
    let verifier_ok = URL_SAFE_NO_PAD.encode(Sha256::digest(f["code_verifier"].as_bytes())) == challenge;
    if !verifier_ok || f["redirect_uri"] != redirect || f["grant_type"] != "authorization_code" {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "invalid_grant", "error_description": "PKCE"})))
            .into_response();
    }
    let now = tollgate::pipeline::now_ms() / 1000;
    let mut claims = json!({"iss": idp.issuer, "aud": "tollgate", "sub": user.sub, "name": user.name,
                            "exp": now + 300, "iat": now, "nonce": nonce});
    if idp.groups_in_id_token {
        claims["groups"] = json!(user.groups);
    }
    let h = URL_SAFE_NO_PAD.encode(json!({"alg": "ES256", "kid": "k1", "typ": "JWT"}).to_string());
    let c = URL_SAFE_NO_PAD.encode(claims.to_string());
    let input = format!("{h}.{c}");
    let sig = idp.key.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
    let access = session::random_token();
    idp.tokens.lock().unwrap().insert(access.clone(), user);
    Json(json!({"access_token": access, "token_type": "Bearer", "expires_in": 300,
                "id_token": format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))}))
    .into_response()
}

async fn userinfo(State(idp): State<Arc<Idp>>, headers: HeaderMap) -> Response {
    let t = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match t.and_then(|t| idp.tokens.lock().unwrap().get(t).cloned()) {
        Some(u) => Json(json!({"sub": u.sub, "name": u.name, "groups": u.groups})).into_response(),
        None => StatusCode::UNAUTHORIZED.into_response(),
    }
}

async fn start_idp(groups_in_id_token: bool) -> Arc<Idp> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let idp = Arc::new(Idp {
        issuer: format!("http://{}", l.local_addr().unwrap()),
        key: EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap(),
        next_user: Mutex::new(ALICE),
        codes: Mutex::default(),
        tokens: Mutex::default(),
        groups_in_id_token,
    });
    let app = Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .route("/authorize", get(authorize))
        .route("/token", post(token))
        .route("/userinfo", get(userinfo))
        .with_state(idp.clone());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    idp
}

/// A gateway (with an admin token for scripts) whose dashboard signs in through `idp`.
async fn gateway(idp: &Idp) -> Harness {
    let issuer = idp.issuer.clone();
    let h = Harness::start_with("", move |mut c| {
        c.server.admin_token = Some(Secret::new("root-token-123".into()));
        let addr = c.server.listen;
        c.oidc = Some(OidcConfig {
            issuer,
            client_id: "tollgate".into(),
            client_secret: Secret::new(SECRET.into()),
            // The port is only known once listening; the callback URL is
            // what the IdP sends the browser to, and the test follows it
            // against the real base itself.
            redirect_url: format!("http://{addr}/ui/auth/callback"),
            scopes: vec!["openid".into(), "profile".into(), "groups".into()],
            groups_claim: "groups".into(),
            session_ttl: Duration::from_secs(3600),
            roles: vec![
                ("platform-admins".into(), Role::Admin),
                ("growth-leads".into(), Role::TeamAdmin("growth".into())),
                ("finance".into(), Role::Viewer),
            ],
        });
        c
    })
    .await;
    h
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

fn set_cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with(&format!("{name}=")))
        .map(String::from)
}

fn cookie_value(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().split_once('=').unwrap().1.to_string()
}

/// Signs `user` in as a browser would; the session cookie's value.
async fn sign_in(h: &Harness, idp: &Idp, user: User) -> Result<String, String> {
    *idp.next_user.lock().unwrap() = user;
    let http = no_redirects();
    let r = http.get(format!("{}/ui/auth/login?return_to=/ui/%23/keys", h.base)).send().await.unwrap();
    assert_eq!(r.status(), 302);
    let login = set_cookie(&r, session::LOGIN_COOKIE).expect("a login cookie");
    assert!(login.contains("HttpOnly") && login.contains("SameSite=Lax"), "{login}");
    let to_idp = r.headers()["location"].to_str().unwrap().to_string();
    assert!(to_idp.starts_with(&idp.issuer), "{to_idp}");
    let r = http.get(&to_idp).send().await.unwrap();
    assert_eq!(r.status(), 303);
    // Back to the gateway's callback (on its real address).
    let back = r.headers()["location"].to_str().unwrap().to_string();
    let path = &back[back.find("/ui/auth/callback").unwrap()..];
    let r = http
        .get(format!("{}{path}", h.base))
        .header("cookie", format!("{}={}", session::LOGIN_COOKIE, cookie_value(&login)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    match set_cookie(&r, session::SESSION_COOKIE) {
        Some(c) => {
            assert_eq!(location, "/ui/#/keys", "back where the sign-in started");
            assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Path=/"), "{c}");
            assert!(!c.contains("Secure"), "no Secure flag over plain http");
            Ok(cookie_value(&c))
        }
        None => Err(location),
    }
}

async fn status(h: &Harness, cookie: &str) -> Value {
    h.http
        .get(format!("{}/ui/auth/status", h.base))
        .header("cookie", format!("tollgate_session={cookie}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn with_session(rb: reqwest::RequestBuilder, cookie: &str, csrf: Option<&str>) -> reqwest::RequestBuilder {
    let rb = rb.header("cookie", format!("tollgate_session={cookie}"));
    match csrf {
        Some(t) => rb.header("x-csrf-token", t),
        None => rb,
    }
}

async fn error_code(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    (status, v["error"]["code"].as_str().unwrap_or("").to_string())
}

#[tokio::test]
async fn admin_signs_in_and_manages_keys_with_csrf_tokens() {
    let idp = start_idp(true).await;
    let h = gateway(&idp).await;
    let cookie = sign_in(&h, &idp, ALICE).await.unwrap();
    let st = status(&h, &cookie).await;
    assert_eq!(st["signed_in"], true, "{st}");
    assert_eq!(st["user"]["role"], "admin");
    assert_eq!(st["user"]["name"], "Alice Admin");
    let csrf = st["csrf_token"].as_str().unwrap().to_string();

    // Reads need only the cookie.
    let r = with_session(h.http.get(format!("{}/admin/v1/keys", h.base)), &cookie, None).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // A write without the CSRF token, with a wrong one, from another origin, or marked cross-site: refused.
    let create = |csrf: Option<&str>| {
        with_session(h.http.post(format!("{}/admin/v1/keys", h.base)), &cookie, csrf)
            .json(&json!({"name": "ui key", "team": "platform"}))
    };
    assert_eq!(error_code(create(None).send().await.unwrap()).await, (403, "csrf_failed".into()));
    assert_eq!(error_code(create(Some("forged")).send().await.unwrap()).await, (403, "csrf_failed".into()));
    let r = create(Some(&csrf)).header("origin", "http://evil.example").send().await.unwrap();
    assert_eq!(error_code(r).await, (403, "csrf_failed".into()));
    let r = create(Some(&csrf)).header("sec-fetch-site", "cross-site").send().await.unwrap();
    assert_eq!(error_code(r).await, (403, "csrf_failed".into()));
    // Another session's token does not fit this one.
    let other = sign_in(&h, &idp, ALICE).await.unwrap();
    let other_csrf = status(&h, &other).await["csrf_token"].as_str().unwrap().to_string();
    assert_eq!(error_code(create(Some(&other_csrf)).send().await.unwrap()).await, (403, "csrf_failed".into()));
    let listed: Value = h
        .http
        .get(format!("{}/admin/v1/keys", h.base))
        .bearer_auth("root-token-123")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["keys"].as_array().unwrap().len(), 1, "no refused call created a key");

    // The right token from the same origin: created, and the key works.
    let r = create(Some(&csrf)).header("origin", h.base.clone()).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    let secret = created["key"].as_str().unwrap().to_string();
    let r = h
        .http
        .post(format!("{}/v1/chat/completions", h.base))
        .bearer_auth(&secret)
        .json(&chat("gpt-4o-mini", "hi", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The audit log names the signed-in user.
    let audit: Value = h
        .http
        .get(format!("{}/api/v1/audit", h.base))
        .bearer_auth("root-token-123")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entries = audit["entries"].as_array().unwrap();
    let creates: Vec<&Value> = entries.iter().filter(|e| e["action"] == "key.create").collect();
    assert_eq!(creates.len(), 1, "{audit}");
    assert_eq!(creates[0]["actor"], "oidc:alice");
    assert_eq!(creates[0]["actor_role"], "admin");
    assert_eq!(entries.iter().filter(|e| e["action"] == "session.start").count(), 2);

    // Sign out: the cookie stops working at once.
    let r = with_session(h.http.post(format!("{}/ui/auth/logout", h.base)), &cookie, None).send().await.unwrap();
    assert_eq!(error_code(r).await, (403, "csrf_failed".into()), "logging out needs the token too");
    let r = with_session(h.http.post(format!("{}/ui/auth/logout", h.base)), &cookie, Some(&csrf)).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let r = with_session(h.http.get(format!("{}/admin/v1/keys", h.base)), &cookie, None).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(status(&h, &cookie).await["signed_in"], false);
    // The other session is untouched; an admin revokes it.
    let r = with_session(h.http.get(format!("{}/admin/v1/keys", h.base)), &other, None).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let sessions: Value = h
        .http
        .get(format!("{}/admin/v1/sessions", h.base))
        .bearer_auth("root-token-123")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let list = sessions["sessions"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{sessions}");
    let handle = list[0]["session"].as_str().unwrap();
    let r = h
        .http
        .post(format!("{}/admin/v1/sessions/{handle}/revoke", h.base))
        .bearer_auth("root-token-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = with_session(h.http.get(format!("{}/admin/v1/keys", h.base)), &other, None).send().await.unwrap();
    assert_eq!(r.status(), 401);
    h.stop().await;
}

#[tokio::test]
async fn tampered_expired_and_unknown_session_cookies_are_refused() {
    let idp = start_idp(true).await;
    let h = gateway(&idp).await;
    let cookie = sign_in(&h, &idp, ALICE).await.unwrap();
    let get = |c: String| with_session(h.http.get(format!("{}/admin/v1/keys", h.base)), &c, None).send();
    assert_eq!(get(cookie.clone()).await.unwrap().status(), 200);
    // One character changed, anywhere: id, expiry or signature.
    for at in [3, cookie.find('.').unwrap() + 5, cookie.len() - 2] {
        let mut b = cookie.clone().into_bytes();
        b[at] = if b[at] == b'1' { b'2' } else { b'1' };
        let tampered = String::from_utf8(b).unwrap();
        let r = get(tampered.clone()).await.unwrap();
        assert_eq!(r.status(), 401, "{tampered}");
    }
    // A correctly signed cookie whose time is up (signed with the gateway's own key).
    let hasher = tollgate::auth::KeyHasher::new(&h.stores.keys.key_hash_secret().await.unwrap());
    let key = CookieKey::new(&hasher.hash("tollgate session cookies v1"));
    let id = cookie.split('.').nth(1).unwrap();
    let past = session::seal_session(&key, id, tollgate::pipeline::now_ms() - 1);
    let r = get(past).await.unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("expired"), "{v}");
    // Signed, unexpired, but no such session.
    let made_up = session::seal_session(&key, &session::random_token(), tollgate::pipeline::now_ms() + 60_000);
    assert_eq!(get(made_up).await.unwrap().status(), 401);
    // The stored session's expiry rules too: a session that ended is refused
    // even with a cookie signed to last longer.
    let now = tollgate::pipeline::now_ms();
    let ended = session::random_token();
    let hash = hasher.hash(&format!("session:{ended}"));
    h.stores
        .sessions
        .insert_session(session::Session {
            handle: session::handle_of(&hash),
            id_hash: hash,
            subject: "alice".into(),
            name: "Alice".into(),
            email: None,
            groups: vec!["platform-admins".into()],
            created_ms: now - 7_200_000,
            expires_ms: now - 1,
            revoked_ms: None,
            source: None,
        })
        .await
        .unwrap();
    let r = get(session::seal_session(&key, &ended, now + 3_600_000)).await.unwrap();
    assert_eq!(r.status(), 401);
    h.stop().await;
}

#[tokio::test]
async fn roles_come_from_groups_and_team_admins_keep_to_their_team() {
    // Groups only at the userinfo endpoint (the common default of providers).
    let idp = start_idp(false).await;
    let h = gateway(&idp).await;
    // The harness's key belongs to team growth; one more for team platform.
    let admin = |rb: reqwest::RequestBuilder| rb.bearer_auth("root-token-123");
    let r = admin(h.http.post(format!("{}/admin/v1/keys", h.base)))
        .json(&json!({"name": "p", "team": "platform"}))
        .send()
        .await
        .unwrap();
    let platform_key: Value = r.json().await.unwrap();
    let platform_id = platform_key["id"].as_str().unwrap();

    let bob = sign_in(&h, &idp, BOB).await.unwrap();
    let st = status(&h, &bob).await;
    assert_eq!(
        (st["user"]["role"].as_str(), st["user"]["team"].as_str()),
        (Some("team_admin"), Some("growth")),
        "{st}"
    );
    let csrf = st["csrf_token"].as_str().unwrap().to_string();
    let keys: Value = with_session(h.http.get(format!("{}/admin/v1/keys", h.base)), &bob, None)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = keys["keys"].as_array().unwrap().iter().map(|k| k["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [h.key_id.as_str()], "only team growth's keys");
    let r = with_session(h.http.post(format!("{}/admin/v1/keys/{platform_id}/revoke", h.base)), &bob, Some(&csrf))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (403, "forbidden".into()));
    let r = with_session(h.http.post(format!("{}/admin/v1/keys/{platform_id}/rotate", h.base)), &bob, Some(&csrf))
        .json(&json!({"grace_seconds": 60}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (403, "forbidden".into()));
    // A key bob creates is his team's: another team is refused, as name or tag.
    for body in [json!({"name": "b", "team": "platform"}), json!({"name": "b", "tags": {"team": "platform"}})] {
        let r = with_session(h.http.post(format!("{}/admin/v1/keys", h.base)), &bob, Some(&csrf))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(error_code(r).await, (403, "forbidden".into()), "{body}");
    }
    let r = with_session(h.http.post(format!("{}/admin/v1/keys", h.base)), &bob, Some(&csrf))
        .json(&json!({"name": "b"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let k: Value = r.json().await.unwrap();
    assert_eq!(k["enforced_tags"]["team"], "growth", "{k}");
    let r = with_session(h.http.get(format!("{}/admin/v1/sessions", h.base)), &bob, None).send().await.unwrap();
    assert_eq!(r.status(), 403, "sessions are for admins");

    // A viewer reads and changes nothing.
    let vera = sign_in(&h, &idp, VERA).await.unwrap();
    let vcsrf = status(&h, &vera).await["csrf_token"].as_str().unwrap().to_string();
    assert_eq!(
        with_session(h.http.get(format!("{}/api/v1/budgets", h.base)), &vera, None).send().await.unwrap().status(),
        200
    );
    let r = with_session(h.http.post(format!("{}/admin/v1/keys", h.base)), &vera, Some(&vcsrf))
        .json(&json!({"name": "v"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (403, "forbidden".into()));

    // Someone in no mapped group gets no session.
    let refused = sign_in(&h, &idp, NOBODY).await.unwrap_err();
    assert!(refused.starts_with("/ui/#/signin?error="), "{refused}");
    assert!(refused.contains("not+in+any+group"), "{refused}");
    h.stop().await;
}

#[tokio::test]
async fn a_callback_without_its_sign_in_or_with_another_state_opens_no_session() {
    let idp = start_idp(true).await;
    let h = gateway(&idp).await;
    let http = no_redirects();
    // No login cookie in this browser.
    let r = http.get(format!("{}/ui/auth/callback?code=x&state=y", h.base)).send().await.unwrap();
    assert_eq!(r.status(), 302);
    assert!(set_cookie(&r, session::SESSION_COOKIE).is_none());
    assert!(r.headers()["location"].to_str().unwrap().starts_with("/ui/#/signin?error="));
    // A real sign-in started, but the callback carries another state (login CSRF).
    let r = http.get(format!("{}/ui/auth/login", h.base)).send().await.unwrap();
    let login = cookie_value(&set_cookie(&r, session::LOGIN_COOKIE).unwrap());
    let r = http
        .get(format!("{}/ui/auth/callback?code=x&state=forged", h.base))
        .header("cookie", format!("tollgate_login={login}"))
        .send()
        .await
        .unwrap();
    assert!(set_cookie(&r, session::SESSION_COOKIE).is_none());
    assert!(r.headers()["location"].to_str().unwrap().contains("state"), "{:?}", r.headers()["location"]);
    // The provider's own refusal is shown, not a session.
    let r = http.get(format!("{}/ui/auth/callback?error=access_denied", h.base)).send().await.unwrap();
    assert!(set_cookie(&r, session::SESSION_COOKIE).is_none());
    // return_to never leaves the dashboard.
    let r = http.get(format!("{}/ui/auth/login?return_to=https://evil.example/", h.base)).send().await.unwrap();
    let login = cookie_value(&set_cookie(&r, session::LOGIN_COOKIE).unwrap());
    let hasher = tollgate::auth::KeyHasher::new(&h.stores.keys.key_hash_secret().await.unwrap());
    let key = CookieKey::new(&hasher.hash("tollgate session cookies v1"));
    let state = session::open_login(&key, &login, tollgate::pipeline::now_ms()).unwrap();
    assert_eq!(state.return_to, "/ui/");
    h.stop().await;
}

#[tokio::test]
async fn a_rotated_key_keeps_its_old_secret_for_the_grace_period_only() {
    let h = Harness::start_with("", |mut c| {
        c.server.admin_token = Some(Secret::new("root-token-123".into()));
        c
    })
    .await;
    let call = |secret: String| {
        h.http
            .post(format!("{}/v1/chat/completions", h.base))
            .bearer_auth(secret)
            .json(&chat("gpt-4o-mini", "hi", false))
            .send()
    };
    let r = h
        .http
        .post(format!("{}/admin/v1/keys/{}/rotate", h.base, h.key_id))
        .bearer_auth("root-token-123")
        .json(&json!({"grace_seconds": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let rotated: Value = r.json().await.unwrap();
    let new_secret = rotated["key"].as_str().unwrap().to_string();
    assert_ne!(new_secret, h.key);
    assert_eq!(rotated["id"], h.key_id.as_str(), "the same key: budgets and history stay");
    assert_eq!(rotated["previous_prefix"], &h.key[..5]);
    assert!(rotated["previous_valid_until"].is_string());
    assert_eq!(call(new_secret.clone()).await.unwrap().status(), 200);
    assert_eq!(call(h.key.clone()).await.unwrap().status(), 200, "the old secret works during the grace period");
    tokio::time::sleep(Duration::from_millis(2_300)).await;
    let r = call(h.key.clone()).await.unwrap();
    assert_eq!(r.status(), 401, "the grace period is over");
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("rotated"), "{v}");
    assert_eq!(call(new_secret.clone()).await.unwrap().status(), 200);
    // Every call was ledgered under the one key id.
    let rows = h.wait_rows(3).await;
    assert!(rows.iter().all(|r| r.key_id.as_deref() == Some(h.key_id.as_str())));
    // Out-of-range grace, a missing key.
    let r = h
        .http
        .post(format!("{}/admin/v1/keys/{}/rotate", h.base, h.key_id))
        .bearer_auth("root-token-123")
        .json(&json!({"grace_seconds": -1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = h
        .http
        .post(format!("{}/admin/v1/keys/key_nope/rotate", h.base))
        .bearer_auth("root-token-123")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // Revoked: the new secret stops, and the key cannot be rotated again.
    let r = h
        .http
        .post(format!("{}/admin/v1/keys/{}/revoke", h.base, h.key_id))
        .bearer_auth("root-token-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(call(new_secret).await.unwrap().status(), 401);
    let r = h
        .http
        .post(format!("{}/admin/v1/keys/{}/rotate", h.base, h.key_id))
        .bearer_auth("root-token-123")
        .json(&json!({"grace_seconds": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let audit: Value = h
        .http
        .get(format!("{}/api/v1/audit?action=key.rotate", h.base))
        .bearer_auth("root-token-123")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let e = &audit["entries"][0];
    assert_eq!(audit["entries"].as_array().unwrap().len(), 1);
    assert_eq!(e["before"]["prefix"], &h.key[..5]);
    assert_eq!(e["after"]["previous_prefix"], &h.key[..5]);
    assert!(!audit.to_string().contains(&h.key), "no secret in the audit log");
    h.stop().await;
}
