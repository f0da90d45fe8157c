//! The Vertex AI routes: the OAuth token endpoint (JWT-bearer grant verified
//! against the test service account), bearer-token auth, Gemini and Claude
//! (rawPredict) wire shapes and usage.

// Test helpers outside #[test] fns may unwrap too.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::Router;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use serde_json::{json, Value};
use tollgate_mock::{
    router, test_service_account_json, usage_for_request, MockConfig, CLOUD_PLATFORM_SCOPE, JWT_BEARER_GRANT_TYPE,
    TEST_SERVICE_ACCOUNT_EMAIL, TEST_SERVICE_ACCOUNT_JSON, VERTEX_ANTHROPIC_VERSION,
};
use tower::ServiceExt;

/// The host the in-process requests claim to reach the mock at.
const HOST: &str = "mock.test:8080";
const TOKEN_URI: &str = "http://mock.test:8080/token";
const GEMINI: &str = "/v1/projects/tollgate-mock/locations/us-central1/publishers/google/models/gemini-2.0-flash";
const CLAUDE: &str =
    "/v1/projects/tollgate-mock/locations/global/publishers/anthropic/models/claude-3-5-haiku@20241022";

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// `(event name, data JSON)` of an SSE body (events end in a blank line, LF or CRLF).
    fn events(&self) -> Vec<(Option<String>, Value)> {
        let normalized = self.body.replace("\r\n", "\n");
        assert!(normalized.ends_with("\n\n"), "stream does not end with a blank line: {:?}", self.body);
        normalized
            .split("\n\n")
            .filter(|block| !block.is_empty())
            .map(|block| {
                let mut name = None;
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        name = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push_str(v);
                    } else {
                        panic!("unexpected SSE line {line:?}");
                    }
                }
                (name, serde_json::from_str(&data).unwrap())
            })
            .collect()
    }
}

async fn send(app: &Router, path: &str, headers: &[(&str, &str)], body: String) -> Answer {
    let mut request = Request::builder().method("POST").uri(path).header("host", HOST);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = app.clone().oneshot(request.body(Body::from(body)).unwrap()).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Answer { status, headers, body: String::from_utf8(bytes.to_vec()).unwrap() }
}

async fn stats(app: &Router) -> Value {
    let request = Request::builder().uri("/mock/stats").body(Body::empty()).unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap()
}

fn account() -> Value {
    serde_json::from_str(TEST_SERVICE_ACCOUNT_JSON).unwrap()
}

fn pem_to_der(pem: &str) -> Vec<u8> {
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(b64).unwrap()
}

/// The fixture's private key as PKCS#8 DER.
fn pkcs8() -> Vec<u8> {
    pem_to_der(account()["private_key"].as_str().unwrap())
}

/// A JWT signed RS256 with `der` (a PKCS#8 RSA key).
fn sign_jwt(der: &[u8], header: &Value, claims: &Value) -> String {
    let key = RsaKeyPair::from_pkcs8(der).unwrap();
    let signing_input =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), signing_input.as_bytes(), &mut signature).unwrap();
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn header() -> Value {
    json!({"alg": "RS256", "typ": "JWT", "kid": account()["private_key_id"]})
}

/// The claims a Google client library sends for `aud`.
fn claims(aud: &str) -> Value {
    let iat = now();
    json!({"iss": TEST_SERVICE_ACCOUNT_EMAIL, "scope": CLOUD_PLATFORM_SCOPE, "aud": aud, "iat": iat, "exp": iat + 3600})
}

fn assertion_with(claims: &Value) -> String {
    sign_jwt(&pkcs8(), &header(), claims)
}

fn form(assertion: &str) -> String {
    let grant = JWT_BEARER_GRANT_TYPE.replace(':', "%3A");
    format!("grant_type={grant}&assertion={assertion}")
}

async fn token_request(app: &Router, assertion: &str) -> Answer {
    send(app, "/token", &[("content-type", "application/x-www-form-urlencoded")], form(assertion)).await
}

/// A fresh access token from `app`.
async fn access_token(app: &Router) -> String {
    let a = token_request(app, &assertion_with(&claims(TOKEN_URI))).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    a.json()["access_token"].as_str().unwrap().to_owned()
}

fn gemini_body() -> Value {
    json!({
        "systemInstruction": {"parts": [{"text": "You are terse."}]},
        "contents": [{"role": "user", "parts": [{"text": "Summarise the quarterly report in two sentences please."}]}],
        "generationConfig": {"maxOutputTokens": 20},
    })
}

fn claude_body(stream: bool) -> Value {
    json!({
        "anthropic_version": VERTEX_ANTHROPIC_VERSION,
        "system": "You are terse.",
        "messages": [{"role": "user", "content": "Summarise the quarterly report in two sentences please."}],
        "max_tokens": 512,
        "stream": stream,
    })
}

async fn call(app: &Router, path: &str, token: Option<&str>, body: &Value) -> Answer {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(b) = &bearer {
        headers.push(("authorization", b.as_str()));
    }
    send(app, path, &headers, body.to_string()).await
}

#[tokio::test]
async fn the_token_endpoint_trades_a_signed_jwt_for_an_access_token() {
    let app = router(MockConfig::default());
    let a = token_request(&app, &assertion_with(&claims(TOKEN_URI))).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(a.headers["content-type"].to_str().unwrap().starts_with("application/json"));
    assert_eq!(a.json(), json!({"access_token": "ya29.mock-1", "expires_in": 3600, "token_type": "Bearer"}));
    // Without `kid` and `typ` too (both optional), and a scope list.
    let mut c = claims(TOKEN_URI);
    c["scope"] = json!(format!("https://www.googleapis.com/auth/userinfo.email {CLOUD_PLATFORM_SCOPE}"));
    let bare = sign_jwt(&pkcs8(), &json!({"alg": "RS256"}), &c);
    assert_eq!(token_request(&app, &bare).await.json()["access_token"], "ya29.mock-2");
    let s = stats(&app).await;
    assert_eq!((s["token_requests"].clone(), s["tokens_issued"].clone()), (json!(2), json!(2)));
    assert_eq!(s["total"], 0, "token requests are not model calls");
    assert_eq!(s["last_token_error"], Value::Null);
}

#[tokio::test]
async fn bad_assertions_are_invalid_grants() {
    let app = router(MockConfig::default());
    let expect = |a: Answer, error: &str, description: &str| {
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
        let j = a.json();
        assert_eq!(j["error"], error, "{j}");
        assert!(j["error_description"].as_str().unwrap().contains(description), "{j}");
    };

    // Signed with another key.
    let other = rsa_key_other_than_the_fixture();
    let forged = sign_jwt(&other, &header(), &claims(TOKEN_URI));
    expect(token_request(&app, &forged).await, "invalid_grant", "Invalid JWT Signature.");
    // A claim changed after signing.
    let good = assertion_with(&claims(TOKEN_URI));
    let parts: Vec<&str> = good.split('.').collect();
    let mut tampered_claims = claims(TOKEN_URI);
    tampered_claims["exp"] = json!(now() + 3000);
    let tampered = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(tampered_claims.to_string()), parts[2]);
    expect(token_request(&app, &tampered).await, "invalid_grant", "Invalid JWT Signature.");
    // Expired.
    let mut expired = claims(TOKEN_URI);
    expired["iat"] = json!(now() - 7200);
    expired["exp"] = json!(now() - 3600);
    expect(token_request(&app, &assertion_with(&expired)).await, "invalid_grant", "short-lived");
    // Living longer than an hour.
    let mut long = claims(TOKEN_URI);
    long["exp"] = json!(now() + 7200);
    expect(token_request(&app, &assertion_with(&long)).await, "invalid_grant", "short-lived");
    // Another audience (Google's own token URI, another port).
    for aud in ["https://oauth2.googleapis.com/token", "http://mock.test:8081/token"] {
        expect(token_request(&app, &assertion_with(&claims(aud))).await, "invalid_grant", "audience");
    }
    // Another issuer.
    let mut stranger = claims(TOKEN_URI);
    stranger["iss"] = json!("someone@else.iam.gserviceaccount.com");
    expect(token_request(&app, &assertion_with(&stranger)).await, "invalid_grant", "account not found");
    // Not HS256, not garbage.
    let hs = sign_jwt(&pkcs8(), &json!({"alg": "HS256", "typ": "JWT"}), &claims(TOKEN_URI));
    expect(token_request(&app, &hs).await, "invalid_grant", "RS256");
    expect(token_request(&app, "not-a-jwt").await, "invalid_grant", "three");
    // No cloud-platform scope.
    let mut unscoped = claims(TOKEN_URI);
    unscoped["scope"] = json!("https://www.googleapis.com/auth/userinfo.email");
    expect(token_request(&app, &assertion_with(&unscoped)).await, "invalid_scope", "scope");
    // Another grant type, no assertion.
    let a = send(&app, "/token", &[], "grant_type=client_credentials".into()).await;
    expect(a, "unsupported_grant_type", "client_credentials");
    let grant = JWT_BEARER_GRANT_TYPE.replace(':', "%3A");
    expect(send(&app, "/token", &[], format!("grant_type={grant}")).await, "invalid_request", "assertion");

    let s = stats(&app).await;
    assert_eq!((s["token_requests"].clone(), s["tokens_issued"].clone()), (json!(12), json!(0)));
    assert_eq!(s["last_token_error"], "Missing required parameter: assertion");
}

/// A second test-only RSA-2048 key (PKCS#8 DER), not the service account's.
fn rsa_key_other_than_the_fixture() -> Vec<u8> {
    pem_to_der(include_str!("../fixtures/other-test-key.pem"))
}

#[tokio::test]
async fn vertex_gemini_answers_like_ai_studio() {
    let app = router(MockConfig::default());
    let token = access_token(&app).await;
    let body = gemini_body();
    let a = call(&app, &format!("{GEMINI}:generateContent"), Some(&token), &body).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let j = a.json();
    let u = usage_for_request(body.to_string().as_bytes(), "gemini-2.0-flash").unwrap();
    assert_eq!(u.output_tokens, 20);
    assert_eq!(j["modelVersion"], "gemini-2.0-flash");
    assert_eq!(j["candidates"][0]["finishReason"], "STOP");
    assert_eq!(
        j["usageMetadata"],
        json!({
            "promptTokenCount": u.prompt_tokens,
            "candidatesTokenCount": 20,
            "totalTokenCount": u.prompt_tokens + 20,
            "cachedContentTokenCount": u.cache_read_tokens,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": u.prompt_tokens}],
        })
    );
    // The same request on AI Studio gets the same answer body.
    let studio = send(&app, "/v1beta/models/gemini-2.0-flash:generateContent", &[], body.to_string()).await.json();
    assert_eq!(studio["usageMetadata"], j["usageMetadata"]);
    assert_eq!(studio["candidates"], j["candidates"]);

    // SSE stream: the last chunk has the same usage; `global`, v1beta1 too.
    let path = GEMINI.replace("/v1/", "/v1beta1/").replace("us-central1", "global");
    let sse = call(&app, &format!("{path}:streamGenerateContent?alt=sse"), Some(&token), &body).await;
    assert_eq!(sse.status, StatusCode::OK, "{}", sse.body);
    assert!(sse.headers["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    assert!(sse.body.ends_with("}\r\n\r\n"));
    let events = sse.events();
    assert_eq!(events.len(), 4);
    let last = &events.last().unwrap().1;
    assert_eq!(last["usageMetadata"], j["usageMetadata"]);
    let text: String =
        events.iter().filter_map(|(_, c)| c["candidates"][0]["content"]["parts"][0]["text"].as_str()).collect();
    assert_eq!(text, j["candidates"][0]["content"]["parts"][0]["text"].as_str().unwrap());
    // Without alt=sse: one JSON array.
    let array = call(&app, &format!("{GEMINI}:streamGenerateContent"), Some(&token), &body).await.json();
    assert_eq!(array[3]["usageMetadata"], j["usageMetadata"]);

    let s = stats(&app).await;
    assert_eq!(s["last_path"], format!("{GEMINI}:streamGenerateContent"));
    assert_eq!(s["paths"][format!("{path}:streamGenerateContent")], 1, "the path keeps the query out");
    assert_eq!(s["models"]["gemini-2.0-flash"], 4);
    assert_eq!(s["paths"][format!("{GEMINI}:generateContent")], 1);
    assert_eq!(s["last_auth"], "present");

    // Unknown methods and publishers: Google's 404.
    let embed = call(&app, &format!("{GEMINI}:embedContent"), Some(&token), &body).await;
    assert_eq!((embed.status, embed.json()["error"]["status"].clone()), (StatusCode::NOT_FOUND, json!("NOT_FOUND")));
    let meta = GEMINI.replace("/google/", "/meta/");
    assert_eq!(call(&app, &format!("{meta}:generateContent"), Some(&token), &body).await.status, StatusCode::NOT_FOUND);
    // A body without contents: Google's 400.
    let bad = call(&app, &format!("{GEMINI}:generateContent"), Some(&token), &json!({})).await;
    assert_eq!(
        (bad.status, bad.json()["error"]["status"].clone()),
        (StatusCode::BAD_REQUEST, json!("INVALID_ARGUMENT"))
    );
}

#[tokio::test]
async fn vertex_claude_answers_like_anthropic_messages() {
    let app = router(MockConfig::default());
    let token = access_token(&app).await;
    let model = "claude-3-5-haiku@20241022";
    let body = claude_body(false);
    let u = usage_for_request(body.to_string().as_bytes(), model).unwrap();
    let expected_usage = json!({
        "input_tokens": u.anthropic_input_tokens(),
        "cache_creation_input_tokens": u.cache_write_tokens(),
        "cache_read_input_tokens": u.cache_read_tokens,
        "cache_creation": {
            "ephemeral_5m_input_tokens": u.cache_write_5m_tokens,
            "ephemeral_1h_input_tokens": u.cache_write_1h_tokens,
        },
        "output_tokens": 24,
        "service_tier": "standard",
    });

    let a = call(&app, &format!("{CLAUDE}:rawPredict"), Some(&token), &body).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let j = a.json();
    assert_eq!((j["type"].clone(), j["model"].clone()), (json!("message"), json!(model)));
    assert_eq!(j["content"][0]["type"], "text");
    assert_eq!(j["usage"], expected_usage);
    // The same body (with a model, without the version) on /v1/messages.
    let mut anthropic_body = body.clone();
    anthropic_body.as_object_mut().unwrap().remove("anthropic_version");
    anthropic_body["model"] = json!(model);
    let direct = send(&app, "/v1/messages", &[], anthropic_body.to_string()).await.json();
    assert_eq!(direct["usage"], j["usage"]);
    assert_eq!(direct["content"], j["content"]);

    let s = call(&app, &format!("{CLAUDE}:streamRawPredict"), Some(&token), &claude_body(true)).await;
    assert_eq!(s.status, StatusCode::OK, "{}", s.body);
    assert!(s.headers["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let events = s.events();
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_deref().unwrap()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names.last(), Some(&"message_stop"));
    let start = &events[0].1["message"]["usage"];
    assert_eq!(
        (start["input_tokens"].clone(), start["output_tokens"].clone()),
        (json!(u.anthropic_input_tokens()), json!(1))
    );
    let delta = &events.iter().find(|(n, _)| n.as_deref() == Some("message_delta")).unwrap().1["usage"];
    assert_eq!(delta["output_tokens"], 24);
    assert_eq!(delta["cache_read_input_tokens"], u.cache_read_tokens);
    assert_eq!(delta["cache_creation_input_tokens"], u.cache_write_tokens());
    let text: String = events.iter().filter_map(|(_, e)| e["delta"]["text"].as_str()).collect();
    assert_eq!(text, j["content"][0]["text"].as_str().unwrap());

    let st = stats(&app).await;
    assert_eq!(st["last_path"], format!("{CLAUDE}:streamRawPredict"));
    assert_eq!(st["last_model"], model);

    // As Vertex: no anthropic_version, another one, or a model in the body → Anthropic's 400.
    let mut missing = claude_body(false);
    missing.as_object_mut().unwrap().remove("anthropic_version");
    let mut wrong = claude_body(false);
    wrong["anthropic_version"] = json!("2023-06-01");
    let mut with_model = claude_body(false);
    with_model["model"] = json!(model);
    for (bad, message) in [(missing, "anthropic_version"), (wrong, "anthropic_version"), (with_model, "model")] {
        let a = call(&app, &format!("{CLAUDE}:rawPredict"), Some(&token), &bad).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
        let j = a.json();
        assert_eq!(j["error"]["type"], "invalid_request_error");
        assert!(j["error"]["message"].as_str().unwrap().starts_with(message), "{j}");
    }
    // Knobs and faults work as on the Anthropic route.
    let mut faulty = claude_body(false);
    faulty["messages"][0]["content"] = json!("hello [mock fault=529]");
    let a = call(&app, &format!("{CLAUDE}:rawPredict"), Some(&token), &faulty).await;
    assert_eq!((a.status.as_u16(), a.json()["error"]["type"].clone()), (529, json!("overloaded_error")));
}

#[tokio::test]
async fn vertex_routes_refuse_missing_unknown_and_expired_tokens() {
    let app = router(MockConfig { token_ttl_secs: 1, ..MockConfig::default() });
    let path = format!("{GEMINI}:generateContent");
    let refused = |a: &Answer, reason: &str| {
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
        let j = a.json();
        assert_eq!((j["error"]["code"].clone(), j["error"]["status"].clone()), (json!(401), json!("UNAUTHENTICATED")));
        assert_eq!(j["error"]["details"][0]["reason"], reason);
        assert!(a.headers.contains_key("www-authenticate"));
    };
    let none = call(&app, &path, None, &gemini_body()).await;
    refused(&none, "CREDENTIALS_MISSING");
    assert!(none.json()["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("Request is missing required authentication credential"));
    let unknown = call(&app, &path, Some("ya29.not-issued-here"), &gemini_body()).await;
    refused(&unknown, "ACCESS_TOKEN_TYPE_UNSUPPORTED");
    assert!(unknown.json()["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("Request had invalid authentication credentials."));
    // An AI Studio API key is no Vertex credential.
    let keyed = send(&app, &path, &[("x-goog-api-key", "AIza-mock")], gemini_body().to_string()).await;
    refused(&keyed, "CREDENTIALS_MISSING");

    let token = access_token(&app).await;
    let issued = token_request(&app, &assertion_with(&claims(TOKEN_URI))).await.json();
    assert_eq!(issued["expires_in"], 1);
    assert_eq!(call(&app, &path, Some(&token), &gemini_body()).await.status, StatusCode::OK);
    assert_eq!(
        call(&app, &format!("{CLAUDE}:rawPredict"), Some(&token), &claude_body(false)).await.status,
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    refused(&call(&app, &path, Some(&token), &gemini_body()).await, "ACCESS_TOKEN_EXPIRED");
    refused(
        &call(&app, &format!("{CLAUDE}:rawPredict"), Some(&token), &claude_body(false)).await,
        "ACCESS_TOKEN_EXPIRED",
    );

    let s = stats(&app).await;
    assert_eq!(s["refused"], 5);
    assert_eq!(s["last_refusal"], "ACCESS_TOKEN_EXPIRED");
    assert_eq!(s["last_path"], format!("{CLAUDE}:rawPredict"));
    assert_eq!(s["total"], 7);
    // A fresh token works again.
    let fresh = access_token(&app).await;
    assert_eq!(call(&app, &path, Some(&fresh), &gemini_body()).await.status, StatusCode::OK);
}

#[tokio::test]
async fn token_failures_answer_503_then_succeed() {
    let app = router(MockConfig { token_failures: 2, ..MockConfig::default() });
    let assertion = assertion_with(&claims(TOKEN_URI));
    for _ in 0..2 {
        let a = token_request(&app, &assertion).await;
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.body);
        assert_eq!(a.json()["error"], "temporarily_unavailable");
    }
    let ok = token_request(&app, &assertion).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.json()["access_token"], "ya29.mock-1");
    let s = stats(&app).await;
    assert_eq!((s["token_requests"].clone(), s["tokens_issued"].clone()), (json!(3), json!(1)));
}

/// Over a real socket, the audience is the URL the client used, and the
/// rewritten service-account JSON names it.
#[tokio::test]
async fn a_real_client_gets_a_token_at_the_token_uri_it_was_given() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(tollgate_mock::serve(listener, MockConfig::default()));
    let token_uri = format!("http://{addr}/token");
    let account: Value = serde_json::from_str(&test_service_account_json(&token_uri)).unwrap();
    assert_eq!(account["token_uri"], token_uri);
    let assertion = assertion_with(&claims(account["token_uri"].as_str().unwrap()));
    let client = reqwest::Client::new();
    let response = client
        .post(&token_uri)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&assertion))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let token: Value = response.json().await.unwrap();
    let answer = client
        .post(format!("http://{addr}{CLAUDE}:rawPredict"))
        .bearer_auth(token["access_token"].as_str().unwrap())
        .json(&claude_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
}
