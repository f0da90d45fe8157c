//! AWS's published Signature Version 4 test suite, run against
//! `tollgate_providers::sigv4`. Where the data comes from, and which cases
//! are left out and why, is in `tests/sigv4/README.md`.
//!
//! Each case's `.req` is a raw HTTP request. Its path and query are passed to
//! `canonical_request` as written, unencoded, and the suite's canonical URIs
//! are those paths encoded once. A Bedrock URL's path is already encoded, so
//! `sign` gets it encoded twice; see the unit tests in `sigv4.rs`. The
//! canonical request, string to sign and `Authorization` value must equal
//! `.creq`, `.sts` and `.authz` byte for byte. Then the signed request must
//! pass `verify`, and `sign` must give the same `Authorization` when the
//! request can be written as a URL.
//!
//! Left out: the suite's `normalize-path` cases (`get-relative`,
//! `get-relative-relative`, `get-slash`, `get-slash-dot-slash`,
//! `get-slash-pointless-dot`, `get-slashes`). They expect `.` and `..`
//! segments removed and `//` merged before signing. This signer signs the
//! path as sent, and Bedrock paths (`/model/{id}/converse…`) have no such
//! segments.

use std::path::PathBuf;

use http::{HeaderMap, HeaderName, HeaderValue};
use sha2::{Digest, Sha256};
use tollgate_providers::sigv4::{self, Credentials, Scope, SigV4Error};

const ACCESS_KEY_ID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const REGION: &str = "us-east-1";
const SERVICE: &str = "service";
const AMZ_DATE: &str = "20150830T123600Z";
const SCOPE: &str = "20150830/us-east-1/service/aws4_request";
/// 2015-08-30T12:36:00Z
const NOW: u64 = 1_440_938_160;

/// Cases with `.req`, `.creq`, `.sts` and `.authz`.
const FULL_CASES: &[&str] = &[
    "get-header-key-duplicate",
    "get-header-value-multiline",
    "get-header-value-order",
    "get-header-value-trim",
    "get-space",
    "get-unreserved",
    "get-utf8",
    "get-vanilla",
    "get-vanilla-empty-query-key",
    "get-vanilla-query",
    "get-vanilla-query-order-key",
    "get-vanilla-query-order-key-case",
    "get-vanilla-query-order-value",
    "get-vanilla-query-unreserved",
    "get-vanilla-utf8-query",
    "post-header-key-case",
    "post-header-key-sort",
    "post-header-value-case",
    "post-sts-header-after",
    "post-sts-header-before",
    "post-vanilla",
    "post-vanilla-empty-query-value",
    "post-vanilla-query",
];

/// aws-c-auth's corrected versions: only `.req` and `.authz` are published.
const AUTHZ_ONLY_CASES: &[&str] = &["post-x-www-form-urlencoded", "post-x-www-form-urlencoded-parameters"];

/// Raw paths and queries (a space, non-ASCII) cannot be written as a URL
/// without encoding them. Encoded, `sign` encodes them a second time, as it
/// must for a real request, so its signature differs from the suite's.
const NOT_A_URL: &[&str] = &["get-space", "get-utf8", "get-vanilla-utf8-query"];

fn case_file(case: &str, ext: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sigv4").join(case).join(format!("{case}.{ext}"))
}

fn read(case: &str, ext: &str) -> String {
    let path = case_file(case, ext);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A `.req` file, parsed.
struct Request {
    method: String,
    path: String,
    query: String,
    /// (lowercased name, raw value), in file order.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Parses `METHOD TARGET HTTP/1.1`, then `Name:value` lines up to a blank
/// line, then the body. The target can hold spaces (`get-space`), so it runs
/// to the last space of the line. A line that starts with whitespace
/// continues the header above it. `get-header-value-multiline` does this, and
/// the suite's `.creq` joins such lines with commas, as it joins repeated
/// headers. So each continuation line is taken as one more value of the same
/// header.
fn parse_req(text: &str) -> Request {
    let (head, body) = match text.split_once("\n\n") {
        Some((head, body)) => (head, body),
        None => (text.trim_end_matches('\n'), ""),
    };
    let mut lines = head.lines();
    let request_line = lines.next().unwrap_or_default();
    let (method, rest) = request_line.split_once(' ').unwrap_or_else(|| panic!("request line: {request_line}"));
    let (target, _version) = rest.rsplit_once(' ').unwrap_or_else(|| panic!("request line: {request_line}"));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));

    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.starts_with([' ', '\t']) {
            let name = headers.last().map(|(n, _)| n.clone()).unwrap_or_else(|| panic!("continuation first: {line}"));
            headers.push((name, line.to_owned()));
        } else {
            let (name, value) = line.split_once(':').unwrap_or_else(|| panic!("header line: {line}"));
            headers.push((name.to_ascii_lowercase(), value.to_owned()));
        }
    }
    Request {
        method: method.to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        headers,
        body: body.as_bytes().to_vec(),
    }
}

fn signed_names(headers: &[(String, String)]) -> Vec<String> {
    let mut names: Vec<String> = headers.iter().map(|(n, _)| n.clone()).collect();
    names.sort();
    names.dedup();
    names
}

fn authorization(signed: &[String], signature: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/{SCOPE}, SignedHeaders={}, Signature={signature}",
        signed.join(";")
    )
}

/// Canonical request, string to sign and `Authorization` for a `.req`.
fn compute(req: &Request) -> (String, String, String) {
    let signed = signed_names(&req.headers);
    let payload_hash = hex::encode(Sha256::digest(&req.body));
    let creq = sigv4::canonical_request(&req.method, &req.path, &req.query, &req.headers, &signed, &payload_hash);
    let sts = sigv4::string_to_sign(AMZ_DATE, SCOPE, &creq);
    let signature = sigv4::signature(SECRET, &AMZ_DATE[..8], REGION, SERVICE, &sts);
    (creq, sts, authorization(&signed, &signature))
}

fn secret_for(access_key_id: &str) -> Option<String> {
    (access_key_id == ACCESS_KEY_ID).then(|| SECRET.to_owned())
}

fn header_map(headers: &[(String, String)], authorization: &str) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let value = HeaderValue::from_str(value).unwrap_or_else(|e| panic!("{value}: {e}"));
        map.append(name, value);
    }
    map.insert(http::header::AUTHORIZATION, HeaderValue::from_str(authorization).unwrap_or_else(|e| panic!("{e}")));
    map
}

fn expected_scope() -> Scope {
    Scope {
        access_key_id: ACCESS_KEY_ID.into(),
        date: "20150830".into(),
        region: REGION.into(),
        service: SERVICE.into(),
    }
}

/// `sign` with the `.req`'s headers, minus the ones it adds itself:
/// `x-amz-date` comes from the time, and `x-amz-security-token` from the
/// credentials.
fn sign_req(req: &Request) -> Result<String, SigV4Error> {
    let url = if req.query.is_empty() {
        format!("https://example.amazonaws.com{}", req.path)
    } else {
        format!("https://example.amazonaws.com{}?{}", req.path, req.query)
    };
    let mut headers = Vec::new();
    let mut token = None;
    for (name, value) in &req.headers {
        match name.as_str() {
            "x-amz-date" => assert_eq!(value, AMZ_DATE),
            "x-amz-security-token" => token = Some(value.as_str()),
            _ => headers.push((
                HeaderName::from_bytes(name.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}")),
                HeaderValue::from_str(value).unwrap_or_else(|e| panic!("{value}: {e}")),
            )),
        }
    }
    let creds = Credentials { access_key_id: ACCESS_KEY_ID, secret_access_key: SECRET, session_token: token };
    let added = sigv4::sign(&req.method, &url, &headers, &req.body, &creds, REGION, SERVICE, NOW)?;
    let get = |name: &str| added.iter().find(|(n, _)| n == name).and_then(|(_, v)| v.to_str().ok()).map(str::to_owned);
    assert_eq!(get("x-amz-date").as_deref(), Some(AMZ_DATE));
    assert_eq!(get("x-amz-security-token").as_deref(), token);
    Ok(get("authorization").unwrap_or_default())
}

#[test]
fn suite_cases_match_creq_sts_and_authz_exactly() {
    for &case in FULL_CASES {
        let req = parse_req(&read(case, "req"));
        let (creq, sts, authz) = compute(&req);
        assert_eq!(creq, read(case, "creq"), "{case}: canonical request");
        assert_eq!(sts, read(case, "sts"), "{case}: string to sign");
        assert_eq!(authz, read(case, "authz"), "{case}: authorization");
    }
}

#[test]
fn corrected_form_urlencoded_cases_match_authz() {
    for &case in AUTHZ_ONLY_CASES {
        let req = parse_req(&read(case, "req"));
        assert_eq!(req.body, b"Param1=value1", "{case}");
        let (creq, _, authz) = compute(&req);
        // The payload hash is the body's, and the request says the same in x-amz-content-sha256.
        let body_hash = hex::encode(Sha256::digest(b"Param1=value1"));
        assert!(creq.ends_with(&format!("\n{body_hash}")), "{case}: {creq}");
        assert!(creq.contains(&format!("\nx-amz-content-sha256:{body_hash}\n")), "{case}: {creq}");
        assert_eq!(authz, read(case, "authz"), "{case}: authorization");
    }
}

#[test]
fn suite_requests_pass_verify_and_fail_when_tampered() {
    for &case in FULL_CASES.iter().chain(AUTHZ_ONLY_CASES) {
        let req = parse_req(&read(case, "req"));
        let authz = read(case, "authz");
        let map = header_map(&req.headers, &authz);
        let target = if req.query.is_empty() { req.path.clone() } else { format!("{}?{}", req.path, req.query) };
        let verified = sigv4::verify(&req.method, &target, &map, &req.body, &secret_for, NOW + 60, 300);
        assert_eq!(verified, Ok(expected_scope()), "{case}");

        let mut body = req.body.clone();
        body.push(b'x');
        assert_eq!(
            sigv4::verify(&req.method, &target, &map, &body, &secret_for, NOW, 300),
            Err(SigV4Error::SignatureMismatch),
            "{case}: changed body"
        );
        assert!(
            matches!(
                sigv4::verify(&req.method, &target, &map, &req.body, &secret_for, NOW + 301, 300),
                Err(SigV4Error::Skewed { .. })
            ),
            "{case}: expired"
        );
    }
}

#[test]
fn sign_reproduces_the_suite_where_the_request_is_a_url() {
    let mut signed = 0;
    for &case in FULL_CASES.iter().chain(AUTHZ_ONLY_CASES) {
        if NOT_A_URL.contains(&case) {
            continue;
        }
        let req = parse_req(&read(case, "req"));
        assert_eq!(sign_req(&req).as_deref(), Ok(read(case, "authz").as_str()), "{case}");
        signed += 1;
    }
    assert_eq!(signed, FULL_CASES.len() + AUTHZ_ONLY_CASES.len() - NOT_A_URL.len());
}

/// aws-c-auth's `get-vanilla-with-session-token`: `sign` adds `x-amz-date`,
/// `x-amz-security-token` and `authorization`, and signs the token. The
/// result must equal the published signed request.
#[test]
fn sign_with_a_session_token_matches_aws_c_auth() {
    let case = "get-vanilla-with-session-token";
    let context: serde_json::Value =
        serde_json::from_str(&read_context(case)).unwrap_or_else(|e| panic!("context.json: {e}"));
    let token = context["credentials"]["token"].as_str().unwrap_or_default();
    assert_eq!(context["credentials"]["access_key_id"], ACCESS_KEY_ID);
    assert_eq!(context["timestamp"], "2015-08-30T12:36:00Z");
    assert_eq!(sigv4::amz_date(NOW), AMZ_DATE);

    let req = parse_req(&read(case, "req"));
    assert_eq!(req.headers, [("host".to_owned(), "example.amazonaws.com".to_owned())]);
    let creds = Credentials { access_key_id: ACCESS_KEY_ID, secret_access_key: SECRET, session_token: Some(token) };
    let added = sigv4::sign("GET", "https://example.amazonaws.com/", &[], b"", &creds, REGION, SERVICE, NOW)
        .unwrap_or_else(|e| panic!("{e}"));
    let added: Vec<(String, String)> =
        added.iter().map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned())).collect();

    let published = parse_req(&read(case, "sreq"));
    let published_value =
        |name: &str| published.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()).unwrap_or_default();
    assert_eq!(
        added,
        [
            ("x-amz-date".to_owned(), published_value("x-amz-date")),
            ("x-amz-security-token".to_owned(), published_value("x-amz-security-token")),
            ("authorization".to_owned(), published_value("authorization")),
        ]
    );
    assert_eq!(published_value("authorization"), read(case, "authz"));

    // The published signed request passes verify as it stands.
    let without_authz: Vec<(String, String)> =
        published.headers.iter().filter(|(n, _)| n != "authorization").cloned().collect();
    let map = header_map(&without_authz, &read(case, "authz"));
    assert_eq!(sigv4::verify("GET", "/", &map, b"", &secret_for, NOW, 300), Ok(expected_scope()));
}

fn read_context(case: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sigv4").join(case).join("context.json");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_case_folder_is_tested() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sigv4");
    let mut folders: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    folders.sort();
    let mut tested: Vec<String> = FULL_CASES
        .iter()
        .chain(AUTHZ_ONLY_CASES)
        .chain(&["get-vanilla-with-session-token"])
        .map(|c| (*c).to_owned())
        .collect();
    tested.sort();
    assert_eq!(folders, tested);
}
