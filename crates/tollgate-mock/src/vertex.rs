//! Google Vertex AI: the OAuth 2.0 token endpoint a service account trades a
//! signed JWT at (`POST /token`), and the `projects/*/locations/*/publishers/*/models/*`
//! routes that accept only the access tokens it issued: Gemini
//! (`publishers/google`, `:generateContent` / `:streamGenerateContent`) and
//! Claude (`publishers/anthropic`, `:rawPredict` / `:streamRawPredict`).
//! The answers are the AI Studio Gemini and Anthropic Messages ones.

use std::collections::HashMap;
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use serde_json::{json, Value};

use crate::errors::{error_response, invalid_request, Family};
use crate::exchange::{admit_body, unix_now, App};
use crate::service_account::{
    TokenState, Tokens, ASSERTION_CLOCK_SKEW_SECS, CLOUD_PLATFORM_SCOPE, JWT_BEARER_GRANT_TYPE,
    MAX_ASSERTION_LIFETIME_SECS, TEST_SERVICE_ACCOUNT_EMAIL, VERTEX_ANTHROPIC_VERSION,
};

/// An OAuth error answer: `status` and `{"error": code, "error_description": description}`.
fn oauth_error(status: StatusCode, code: &str, description: &str) -> Response {
    let body = json!({"error": code, "error_description": description}).to_string();
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"))], body)
        .into_response()
}

/// Decodes one `application/x-www-form-urlencoded` component (`+` is a space).
fn form_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() && bytes[i + 1].is_ascii_hexdigit() && bytes[i + 2].is_ascii_hexdigit() => {
                let hex = |b: u8| (b as char).to_digit(16).unwrap_or(0) as u8;
                out.push(hex(bytes[i + 1]) << 4 | hex(bytes[i + 2]));
                i += 2;
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The decoded fields of a form body (the first of a repeated name wins).
fn form_fields(body: &[u8]) -> HashMap<String, String> {
    let mut fields = HashMap::new();
    for pair in String::from_utf8_lossy(body).split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        fields.entry(form_decode(key)).or_insert_with(|| form_decode(value));
    }
    fields
}

/// Why an assertion was refused: the OAuth error code and Google's description.
#[derive(Debug)]
struct Refusal {
    code: &'static str,
    description: String,
}

fn invalid_grant(description: impl Into<String>) -> Refusal {
    Refusal { code: "invalid_grant", description: description.into() }
}

const TIMEFRAME: &str = "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. \
                         Check your iat and exp values in the JWT claim.";

fn segment_json(segment: &str, what: &str) -> Result<Value, Refusal> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| invalid_grant(format!("Invalid JWT: the {what} is not unpadded base64url")))?;
    let value: Value =
        serde_json::from_slice(&bytes).map_err(|_| invalid_grant(format!("Invalid JWT: the {what} is not JSON")))?;
    if value.is_object() {
        Ok(value)
    } else {
        Err(invalid_grant(format!("Invalid JWT: the {what} is not a JSON object")))
    }
}

fn seconds(claims: &Value, name: &str) -> Option<u64> {
    let v = claims.get(name)?;
    v.as_u64().or_else(|| v.as_f64().filter(|f| f.is_finite() && *f >= 0.0).map(|f| f as u64))
}

/// Verifies a service account's JWT assertion: header, RS256 signature with
/// the test key, `iss`, `aud` (= `audience`), `scope`, `iat` / `exp`.
fn verify_assertion(tokens: &Tokens, assertion: &str, audience: &str, now: u64) -> Result<(), Refusal> {
    let parts: Vec<&str> = assertion.split('.').collect();
    let [head, claims, signature] = parts[..] else {
        return Err(invalid_grant("Invalid JWT: the assertion must be three dot-separated segments"));
    };
    let head_json = segment_json(head, "header")?;
    if head_json.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Err(invalid_grant("Invalid JWT: the header's alg must be RS256"));
    }
    if head_json.get("typ").is_some_and(|t| t.as_str() != Some("JWT")) {
        return Err(invalid_grant("Invalid JWT: the header's typ must be JWT"));
    }
    if let Some(kid) = head_json.get("kid") {
        if kid.as_str() != tokens.key_id.as_deref() {
            return Err(invalid_grant("Invalid JWT Signature."));
        }
    }
    let claims_json = segment_json(claims, "claim set")?;
    let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| invalid_grant("Invalid JWT Signature."))?;
    let Some(public_key) = &tokens.public_key else {
        return Err(invalid_grant("mock: the test service account key does not parse"));
    };
    let key = ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, public_key);
    let signed = &assertion[..head.len() + 1 + claims.len()];
    key.verify(signed.as_bytes(), &signature).map_err(|_| invalid_grant("Invalid JWT Signature."))?;

    if claims_json.get("iss").and_then(Value::as_str) != Some(TEST_SERVICE_ACCOUNT_EMAIL) {
        return Err(invalid_grant("Invalid grant: account not found"));
    }
    if claims_json.get("aud").and_then(Value::as_str) != Some(audience) {
        return Err(invalid_grant(format!("Invalid JWT: Failed audience check. The right audience is {audience}")));
    }
    let (Some(iat), Some(exp)) = (seconds(&claims_json, "iat"), seconds(&claims_json, "exp")) else {
        return Err(invalid_grant(TIMEFRAME));
    };
    if exp <= iat || exp - iat > MAX_ASSERTION_LIFETIME_SECS || exp <= now || iat > now + ASSERTION_CLOCK_SKEW_SECS {
        return Err(invalid_grant(TIMEFRAME));
    }
    let scoped = claims_json
        .get("scope")
        .and_then(Value::as_str)
        .is_some_and(|scope| scope.split_whitespace().any(|s| s == CLOUD_PLATFORM_SCOPE));
    if !scoped {
        return Err(Refusal {
            code: "invalid_scope",
            description: "Invalid OAuth scope or ID token audience provided.".to_owned(),
        });
    }
    Ok(())
}

/// The token URI the client reached the mock at: `http://<Host>/token`.
fn token_uri(uri: &Uri, headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| uri.authority().map(|a| a.as_str().to_owned()))
        .unwrap_or_default();
    format!("http://{host}/token")
}

/// `POST /token`: trades a service account's signed JWT for an access token.
pub(crate) async fn token(app: App, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let tokens = app.tokens();
    app.stats().record_token_request();
    if tokens.take_failure() {
        const UNAVAILABLE: &str = "The token service is temporarily unavailable (mock token_failures).";
        let mut response = oauth_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", UNAVAILABLE);
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(1));
        app.stats().record_token_error(UNAVAILABLE);
        return response;
    }
    let fields = form_fields(&body);
    let refuse = |status: StatusCode, code: &str, description: &str| {
        app.stats().record_token_error(description);
        oauth_error(status, code, description)
    };
    match fields.get("grant_type").map(String::as_str) {
        Some(JWT_BEARER_GRANT_TYPE) => {}
        Some(other) => {
            return refuse(StatusCode::BAD_REQUEST, "unsupported_grant_type", &format!("Invalid grant_type: {other}"))
        }
        None => return refuse(StatusCode::BAD_REQUEST, "unsupported_grant_type", "Invalid grant_type: "),
    }
    let Some(assertion) = fields.get("assertion").filter(|a| !a.is_empty()) else {
        return refuse(StatusCode::BAD_REQUEST, "invalid_request", "Missing required parameter: assertion");
    };
    if let Err(refusal) = verify_assertion(tokens, assertion, &token_uri(&uri, &headers), unix_now()) {
        return refuse(StatusCode::BAD_REQUEST, refusal.code, &refusal.description);
    }
    let ttl = app.config().token_ttl_secs;
    let access_token = tokens.issue(Duration::from_secs(ttl));
    app.stats().record_token_issued();
    let body = json!({"access_token": access_token, "expires_in": ttl, "token_type": "Bearer"}).to_string();
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache, no-store, max-age=0, must-revalidate")),
        ],
        body,
    )
        .into_response()
}

/// Google's 401 for a Vertex AI request without a valid access token: the
/// `UNAUTHENTICATED` error with an `ErrorInfo` detail whose `reason` says why.
fn unauthenticated(reason: &'static str) -> Response {
    let message = if reason == "CREDENTIALS_MISSING" {
        "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or \
         other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project."
    } else {
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other \
         valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project."
    };
    let body = json!({"error": {
        "code": 401,
        "message": message,
        "status": "UNAUTHENTICATED",
        "details": [{
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": reason,
            "domain": "googleapis.com",
            "metadata": {"service": "aiplatform.googleapis.com"},
        }],
    }});
    (
        StatusCode::UNAUTHORIZED,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=UTF-8")),
            (header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"https://accounts.google.com/\"")),
        ],
        body.to_string(),
    )
        .into_response()
}

/// Counts the request and checks its bearer token against the issued ones;
/// a refusal is Google's 401, counted as refused (named by its reason).
#[allow(clippy::result_large_err)]
fn authenticate(app: &App, uri: &Uri, headers: &HeaderMap) -> Result<(), Response> {
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    app.stats().record_request(uri.path(), authorization.is_some());
    let token = authorization.and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    let reason = match token.map(|t| app.tokens().check(t.trim())) {
        Some(TokenState::Valid) => return Ok(()),
        None if authorization.is_none() => "CREDENTIALS_MISSING",
        Some(TokenState::Expired) => "ACCESS_TOKEN_EXPIRED",
        // Not a token this mock issued (or not a bearer credential).
        _ => "ACCESS_TOKEN_TYPE_UNSUPPORTED",
    };
    app.stats().record_refused(reason);
    Err(unauthenticated(reason))
}

/// The path parameters of a Vertex AI model route.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct ModelPath {
    project: String,
    location: String,
    publisher: String,
    /// `{model}:{method}` (axum cannot split a segment at a `:`).
    model_action: String,
}

/// `POST /v1/projects/{project}/locations/{location}/publishers/{publisher}/models/{model}:{method}`
/// (also under `/v1beta1/`).
pub(crate) async fn model(app: App, uri: Uri, headers: HeaderMap, body: Bytes, path: ModelPath) -> Response {
    if let Err(response) = authenticate(&app, &uri, &headers) {
        return response;
    }
    let ModelPath { project, location, publisher, model_action } = path;
    let not_found = |what: &str| {
        error_response(
            Family::Gemini,
            404,
            &format!("Publisher Model `projects/{project}/locations/{location}/publishers/{publisher}/models/{what}` not found."),
            None,
        )
    };
    let Some((model, method)) = model_action.rsplit_once(':').filter(|(model, _)| !model.is_empty()) else {
        return not_found(&model_action);
    };
    match (publisher.as_str(), method) {
        ("google", "generateContent" | "streamGenerateContent") => {
            let req = match admit_body(&app, Family::Gemini, &headers, &body) {
                Ok(req) => req,
                Err(response) => return response,
            };
            crate::gemini::answer(&app, req, &uri, model, method == "streamGenerateContent").await
        }
        ("anthropic", "rawPredict" | "streamRawPredict") => {
            let req = match admit_body(&app, Family::Anthropic, &headers, &body) {
                Ok(req) => req,
                Err(response) => return response,
            };
            match req.json.get("anthropic_version") {
                None => return invalid_request(Family::Anthropic, "anthropic_version: Field required"),
                Some(v) if v.as_str() != Some(VERTEX_ANTHROPIC_VERSION) => {
                    return invalid_request(
                        Family::Anthropic,
                        &format!("anthropic_version: Input should be '{VERTEX_ANTHROPIC_VERSION}'"),
                    )
                }
                Some(_) => {}
            }
            if req.json.get("model").is_some() {
                return invalid_request(Family::Anthropic, "model: Extra inputs are not permitted");
            }
            // As on Anthropic's API (which Vertex relays), the body's
            // `stream` decides; clients send `stream: true` to :streamRawPredict.
            let streaming = req.flag("stream");
            crate::anthropic::answer(&app, req, model, streaming).await
        }
        ("google" | "anthropic", other) => error_response(
            Family::Gemini,
            404,
            &format!("Method {other} is not supported for publisher {publisher} by the mock."),
            None,
        ),
        _ => not_found(model),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service_account::{
        test_public_key, test_service_account_json, TEST_PROJECT_ID, TEST_SERVICE_ACCOUNT_JSON,
    };

    #[test]
    fn the_fixture_parses_and_names_the_documented_account() {
        assert!(test_public_key().is_some_and(|k| k.len() > 256));
        let account: Value = serde_json::from_str(TEST_SERVICE_ACCOUNT_JSON).unwrap_or_default();
        assert_eq!(account["type"], "service_account");
        assert_eq!(account["client_email"], TEST_SERVICE_ACCOUNT_EMAIL);
        assert_eq!(account["project_id"], TEST_PROJECT_ID);
        let rewritten: Value =
            serde_json::from_str(&test_service_account_json("http://127.0.0.1:1234/token")).unwrap_or_default();
        assert_eq!(rewritten["token_uri"], "http://127.0.0.1:1234/token");
        assert_eq!(rewritten["private_key"], account["private_key"]);
    }

    #[test]
    fn forms_decode_percent_escapes_and_plus() {
        let fields =
            form_fields(b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=a.b-c_d&x=1+2%2");
        assert_eq!(fields["grant_type"], JWT_BEARER_GRANT_TYPE);
        assert_eq!(fields["assertion"], "a.b-c_d");
        assert_eq!(fields["x"], "1 2%2");
    }

    #[test]
    fn failures_count_down() {
        let tokens = Tokens::new(2);
        assert!(tokens.take_failure());
        assert!(tokens.take_failure());
        assert!(!tokens.take_failure());
        let token = tokens.issue(Duration::from_secs(60));
        assert_eq!(tokens.check(&token), TokenState::Valid);
        assert_eq!(tokens.check("ya29.other"), TokenState::Unknown);
        let expired = tokens.issue(Duration::ZERO);
        assert_eq!(tokens.check(&expired), TokenState::Expired);
    }
}
