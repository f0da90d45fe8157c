//! AWS Signature Version 4 (`AWS4-HMAC-SHA256`), as pure functions: no clock,
//! no I/O. The gateway signs its Amazon Bedrock calls with [`sign`] (service
//! `bedrock`). The mock provider checks them with [`verify`].
//!
//! Written from AWS's description of the process:
//!
//! 1. The canonical request is: method, canonical URI, canonical query,
//!    canonical headers, signed header names, and the payload's hex SHA-256,
//!    one per line ([`canonical_request`]).
//! 2. The string to sign is: `AWS4-HMAC-SHA256`, the request time, the
//!    credential scope `DATE/REGION/SERVICE/aws4_request`, and the hex SHA-256
//!    of the canonical request ([`string_to_sign`]).
//! 3. The signing key is `HMAC("AWS4" + secret, DATE)`, then HMAC'd with the
//!    region, the service and `aws4_request`. The signature is the hex HMAC of
//!    the string to sign under that key ([`signature`]).
//!
//! **Paths are encoded twice.** Every service except S3 URI-encodes the path
//! of the request *as sent*, and that path is already percent-encoded. A
//! Bedrock model id `…-v1:0` is sent as `/model/…-v1%3A0/converse`, and its
//! canonical URI is `/model/…-v1%253A0/converse`. botocore does the same: for
//! non-S3 services its `SigV4Auth` runs `quote(path, safe='/~')` on the URL's
//! path. [`canonical_request`] therefore encodes the `path` it is given once.
//! [`sign`] and [`verify`] pass it the path as it appears on the wire. The
//! published test vectors pass the raw path from their `.req` files. Paths are
//! not normalized (no `.`/`..` removal, no merging of `//`).
//!
//! Query parameters are encoded once. The query is split on `&` and `=`. Each
//! name and value is percent-decoded, then URI-encoded by AWS's rules. The
//! pairs are sorted by name, then by value. A literal `+` stays a `+` and is
//! encoded as `%2B`.

use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, HeaderValue};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const TERMINATOR: &str = "aws4_request";
const X_AMZ_DATE: &str = "x-amz-date";
const X_AMZ_SECURITY_TOKEN: &str = "x-amz-security-token";

/// Credentials to sign with. `session_token` is set for temporary
/// credentials (STS, instance roles). When set it is sent as
/// `x-amz-security-token` and signed.
#[derive(Clone, Copy)]
pub struct Credentials<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    pub session_token: Option<&'a str>,
}

impl std::fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("session_token", &self.session_token.map(|_| "<redacted>"))
            .finish()
    }
}

/// The credential scope of a request that [`verify`] accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub access_key_id: String,
    /// `YYYYMMDD`
    pub date: String,
    pub region: String,
    pub service: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigV4Error {
    /// The URL given to [`sign`] is not an absolute `http(s)://host/path` URL.
    #[error("cannot sign a request to `{url}`: {reason}")]
    BadUrl { url: String, reason: String },
    /// A header value cannot be signed or sent: not visible ASCII (with
    /// spaces and tabs), or not valid as an HTTP header value.
    #[error("header `{name}` cannot be signed: {reason}")]
    BadHeader { name: String, reason: &'static str },
    /// [`sign`] was given a header that it adds itself (`authorization`,
    /// `x-amz-date`, `x-amz-security-token`).
    #[error("header `{0}` is added by the signer and must not be passed in")]
    ReservedHeader(String),
    /// An access key id, region or service that cannot be part of a
    /// credential scope (empty, or holding `/`, `,` or whitespace).
    #[error("invalid credential scope: {0}")]
    BadScope(&'static str),
    /// The request to verify has no `authorization` header.
    #[error("the request has no `authorization` header")]
    MissingAuthorization,
    /// The `authorization` header is not `AWS4-HMAC-SHA256 Credential=…,
    /// SignedHeaders=…, Signature=…`.
    #[error("malformed `authorization` header: {0}")]
    MalformedAuthorization(&'static str),
    /// A header named in `SignedHeaders` is not in the request.
    #[error("header `{0}` is listed in SignedHeaders but missing from the request")]
    MissingSignedHeader(String),
    /// `x-amz-date` is missing or is not a valid `YYYYMMDDTHHMMSSZ` time.
    #[error("missing or malformed `x-amz-date` header (expected YYYYMMDDTHHMMSSZ)")]
    BadDate,
    /// The credential scope's date is not the date of `x-amz-date`.
    #[error("credential scope date {scope_date} does not match x-amz-date {amz_date}")]
    ScopeDateMismatch { scope_date: String, amz_date: String },
    /// `secret_for` knows no secret for this access key id.
    #[error("unknown access key id `{0}`")]
    UnknownAccessKey(String),
    /// The request time is too far from now, in the past (expired) or in the
    /// future (skewed clock).
    #[error("request time {amz_date} is more than {max_skew_secs}s away from now (unix {now_unix_secs})")]
    Skewed { amz_date: String, now_unix_secs: u64, max_skew_secs: u64 },
    /// The signature does not match the one computed for this request.
    #[error("signature does not match")]
    SignatureMismatch,
}

/// Signs a request. Returns the headers to ADD to it, in this order:
/// `x-amz-date`, `x-amz-security-token` (only when the credentials have a
/// session token) and `authorization`.
///
/// `url` is the absolute URL that will be requested, with its path already
/// percent-encoded (as `http::Uri` requires). Its path is encoded again for
/// the canonical URI; see the module docs.
///
/// `headers` are the request's other headers. Every one of them is signed,
/// so pass only headers that go out unchanged. Leave out `content-length`
/// and `user-agent` if a client or proxy may rewrite them. Names are
/// lowercased. Values are trimmed and runs of inner whitespace become one
/// space. Repeated names are joined with `,` in the order given. If `host`
/// is absent it is derived from the URL: the host, plus `:port` when the
/// port is not the scheme's default. HTTP clients such as hyper send the
/// same value.
///
/// `unix_secs` is the signing time (seconds since the Unix epoch, UTC).
#[allow(clippy::too_many_arguments)]
pub fn sign(
    method: &str,
    url: &str,
    headers: &[(HeaderName, HeaderValue)],
    body: &[u8],
    creds: &Credentials<'_>,
    region: &str,
    service: &str,
    unix_secs: u64,
) -> Result<Vec<(HeaderName, HeaderValue)>, SigV4Error> {
    check_scope_part(creds.access_key_id, "access key id is empty or holds '/', ',' or whitespace")?;
    check_scope_part(region, "region is empty or holds '/', ',' or whitespace")?;
    check_scope_part(service, "service is empty or holds '/', ',' or whitespace")?;

    let bad_url = |reason: &str| SigV4Error::BadUrl { url: url.to_owned(), reason: reason.to_owned() };
    let uri: http::Uri = url.parse().map_err(|e: http::uri::InvalidUri| bad_url(&e.to_string()))?;
    let default_port = match uri.scheme_str() {
        Some("https") => 443,
        Some("http") => 80,
        _ => return Err(bad_url("the scheme must be http or https")),
    };
    let host = uri.host().filter(|h| !h.is_empty()).ok_or_else(|| bad_url("no host"))?;
    let path = match uri.path() {
        "" => "/",
        p => p,
    };
    let query = uri.query().unwrap_or("");

    let mut canonical: Vec<(String, String)> = Vec::with_capacity(headers.len() + 3);
    for (name, value) in headers {
        let name = name.as_str();
        if name == http::header::AUTHORIZATION.as_str() || name == X_AMZ_DATE || name == X_AMZ_SECURITY_TOKEN {
            return Err(SigV4Error::ReservedHeader(name.to_owned()));
        }
        let value = value
            .to_str()
            .map_err(|_| SigV4Error::BadHeader { name: name.to_owned(), reason: "the value is not visible ASCII" })?;
        canonical.push((name.to_owned(), value.to_owned()));
    }
    if !canonical.iter().any(|(n, _)| n == "host") {
        let host = match uri.port_u16() {
            Some(port) if port != default_port => format!("{host}:{port}"),
            _ => host.to_owned(),
        };
        canonical.push(("host".to_owned(), host));
    }
    let amz = amz_date(unix_secs);
    canonical.push((X_AMZ_DATE.to_owned(), amz.clone()));
    let token_value = match creds.session_token {
        Some(token) => {
            let value = HeaderValue::from_str(token).map_err(|_| SigV4Error::BadHeader {
                name: X_AMZ_SECURITY_TOKEN.to_owned(),
                reason: "the session token is not a valid header value",
            })?;
            canonical.push((X_AMZ_SECURITY_TOKEN.to_owned(), token.to_owned()));
            Some(value)
        }
        None => None,
    };

    let signed = signed_names(canonical.iter().map(|(n, _)| n.as_str()));
    let creq = canonical_request(method, path, query, &canonical, &signed, &payload_hash(body));
    // `amz` is DATE, `T`, HHMMSS, `Z`.
    let date = &amz[..amz.len() - 8];
    let scope = format!("{date}/{region}/{service}/{TERMINATOR}");
    let sts = string_to_sign(&amz, &scope, &creq);
    let sig = signature(creds.secret_access_key, date, region, service, &sts);
    let authorization = format!(
        "{ALGORITHM} Credential={}/{scope}, SignedHeaders={}, Signature={sig}",
        creds.access_key_id,
        signed.join(";")
    );

    let mut out = Vec::with_capacity(3);
    out.push((HeaderName::from_static(X_AMZ_DATE), HeaderValue::from_str(&amz).map_err(|_| SigV4Error::BadDate)?));
    if let Some(value) = token_value {
        out.push((HeaderName::from_static(X_AMZ_SECURITY_TOKEN), value));
    }
    let authorization = HeaderValue::from_str(&authorization).map_err(|_| SigV4Error::BadHeader {
        name: http::header::AUTHORIZATION.as_str().to_owned(),
        reason: "the access key id is not a valid header value",
    })?;
    out.push((http::header::AUTHORIZATION, authorization));
    Ok(out)
}

/// Verifies a signed request, as a server would. It parses `authorization`
/// (`AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request,
/// SignedHeaders=…, Signature=…`) and recomputes the signature with
/// `secret_for(access_key_id)`'s secret, comparing in constant time. It also
/// checks that `x-amz-date` is within `max_skew_secs` of `now_unix_secs` and
/// falls on the credential scope's date.
///
/// `path_and_query` is the request target as received (still
/// percent-encoded). Only the headers named in `SignedHeaders` are read, and
/// `host` must be among them. For HTTP/2 requests the caller inserts `host`
/// from `:authority`. The payload hash is the SHA-256 of `body`.
///
/// On success returns the credential scope. Checking that its region and
/// service are the expected ones is the caller's job.
pub fn verify(
    method: &str,
    path_and_query: &str,
    headers: &HeaderMap,
    body: &[u8],
    secret_for: &dyn Fn(&str) -> Option<String>,
    now_unix_secs: u64,
    max_skew_secs: u64,
) -> Result<Scope, SigV4Error> {
    let mut auth_values = headers.get_all(http::header::AUTHORIZATION).iter();
    let auth = auth_values.next().ok_or(SigV4Error::MissingAuthorization)?;
    if auth_values.next().is_some() {
        return Err(SigV4Error::MalformedAuthorization("more than one authorization header"));
    }
    let auth = auth.to_str().map_err(|_| SigV4Error::MalformedAuthorization("not visible ASCII"))?;
    let parsed = parse_authorization(auth)?;

    let amz = headers.get(X_AMZ_DATE).and_then(|v| v.to_str().ok()).ok_or(SigV4Error::BadDate)?;
    let request_time = parse_amz_date(amz).ok_or(SigV4Error::BadDate)?;
    if &amz[..8] != parsed.date {
        return Err(SigV4Error::ScopeDateMismatch { scope_date: parsed.date.to_owned(), amz_date: amz.to_owned() });
    }
    if now_unix_secs.abs_diff(request_time) > max_skew_secs {
        return Err(SigV4Error::Skewed { amz_date: amz.to_owned(), now_unix_secs, max_skew_secs });
    }
    let secret = secret_for(parsed.access_key_id)
        .ok_or_else(|| SigV4Error::UnknownAccessKey(parsed.access_key_id.to_owned()))?;

    let mut canonical: Vec<(String, String)> = Vec::new();
    for &name in &parsed.signed {
        let before = canonical.len();
        for value in headers.get_all(name) {
            let value = value.to_str().map_err(|_| SigV4Error::BadHeader {
                name: name.to_owned(),
                reason: "the value is not visible ASCII",
            })?;
            canonical.push((name.to_owned(), value.to_owned()));
        }
        if canonical.len() == before {
            return Err(SigV4Error::MissingSignedHeader(name.to_owned()));
        }
    }
    let signed: Vec<String> = parsed.signed.iter().map(|&n| n.to_owned()).collect();
    let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
    let creq = canonical_request(method, path, query, &canonical, &signed, &payload_hash(body));
    let scope = format!("{}/{}/{}/{TERMINATOR}", parsed.date, parsed.region, parsed.service);
    let sts = string_to_sign(amz, &scope, &creq);

    let key = signing_key(&secret, parsed.date, parsed.region, parsed.service);
    let mut mac = new_mac(&key);
    mac.update(sts.as_bytes());
    // `verify_slice` compares in constant time.
    mac.verify_slice(&parsed.signature).map_err(|_| SigV4Error::SignatureMismatch)?;

    Ok(Scope {
        access_key_id: parsed.access_key_id.to_owned(),
        date: parsed.date.to_owned(),
        region: parsed.region.to_owned(),
        service: parsed.service.to_owned(),
    })
}

/// The canonical request.
///
/// - `path`: the request path as it will be sent. Every byte other than
///   `A-Z a-z 0-9 - _ . ~` and `/` is percent-encoded (uppercase hex), so an
///   already-encoded path comes out encoded twice. An empty path is `/`.
/// - `query`: the query string without `?`. See the module docs.
/// - `headers`: (lowercased name, raw value) pairs. Repeated names are joined
///   with `,` in the order given.
/// - `signed`: the names to sign. They are lowercased, sorted and
///   deduplicated here. A name with no entry in `headers` gets an empty value.
pub fn canonical_request(
    method: &str,
    path: &str,
    query: &str,
    headers: &[(String, String)],
    signed: &[String],
    payload_hash_hex: &str,
) -> String {
    let mut out = String::with_capacity(256 + path.len() + query.len());
    out.push_str(method);
    out.push('\n');
    if path.is_empty() {
        out.push('/');
    } else {
        uri_encode_into(path.as_bytes(), true, &mut out);
    }
    out.push('\n');
    canonical_query_into(query, &mut out);
    out.push('\n');

    let names = signed_names(signed.iter().map(String::as_str));
    for name in &names {
        out.push_str(name);
        out.push(':');
        let mut first = true;
        for (_, value) in headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)) {
            if !first {
                out.push(',');
            }
            first = false;
            trim_all_into(value, &mut out);
        }
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&names.join(";"));
    out.push('\n');
    out.push_str(payload_hash_hex);
    out
}

/// `AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hex SHA-256 of canonical_request}`.
/// `scope` is `DATE/REGION/SERVICE/aws4_request`.
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!("{ALGORITHM}\n{amz_date}\n{scope}\n{}", hex::encode(Sha256::digest(canonical_request.as_bytes())))
}

/// The hex signature of `string_to_sign`, under the signing key derived from
/// the secret and the scope (`date` is `YYYYMMDD`).
pub fn signature(secret_access_key: &str, date: &str, region: &str, service: &str, string_to_sign: &str) -> String {
    let key = signing_key(secret_access_key, date, region, service);
    hex::encode(hmac(&key, string_to_sign.as_bytes()))
}

/// `YYYYMMDDTHHMMSSZ` (UTC) for a Unix time, e.g. `20150830T123600Z` for
/// 1440938160.
pub fn amz_date(unix_secs: u64) -> String {
    let days = unix_secs / 86_400;
    let secs = unix_secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}

// ---------------------------------------------------------------------------

fn payload_hash(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

fn new_mac(key: &[u8]) -> HmacSha256 {
    HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"))
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = new_mac(key);
    mac.update(data);
    mac.finalize().into_bytes().into()
}

fn signing_key(secret_access_key: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let mut seed = Vec::with_capacity(4 + secret_access_key.len());
    seed.extend_from_slice(b"AWS4");
    seed.extend_from_slice(secret_access_key.as_bytes());
    let k_date = hmac(&seed, date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, TERMINATOR.as_bytes())
}

/// Lowercased, sorted, deduplicated.
fn signed_names<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut names: Vec<String> = names.map(str::to_ascii_lowercase).collect();
    names.sort_unstable();
    names.dedup();
    names
}

fn check_scope_part(part: &str, reason: &'static str) -> Result<(), SigV4Error> {
    if part.is_empty()
        || part.bytes().any(|b| b == b'/' || b == b',' || b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(SigV4Error::BadScope(reason));
    }
    Ok(())
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

/// AWS URI encoding: unreserved bytes are kept (and `/` when `keep_slash`),
/// every other byte becomes `%XX` with uppercase hex.
fn uri_encode_into(bytes: &[u8], keep_slash: bool, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if is_unreserved(b) || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
}

fn uri_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    uri_encode_into(bytes, false, &mut out);
    out
}

/// `%XX` becomes the byte 0xXX. Anything else, including a `%` not followed
/// by two hex digits and `+`, is kept as it is.
fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex_val(bytes[i + 1]), hex_val(bytes[i + 2])) {
                out.push((hi << 4) | lo);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn canonical_query_into(query: &str, out: &mut String) {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (name, value) = p.split_once('=').unwrap_or((p, ""));
            (uri_encode(&percent_decode(name)), uri_encode(&percent_decode(value)))
        })
        .collect();
    pairs.sort_unstable();
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(name);
        out.push('=');
        out.push_str(value);
    }
}

/// Trims the value and turns every run of whitespace inside it into one
/// space.
fn trim_all_into(value: &str, out: &mut String) {
    for (i, word) in value.split_ascii_whitespace().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(word);
    }
}

struct Authorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed: Vec<&'a str>,
    signature: [u8; 32],
}

fn parse_authorization(value: &str) -> Result<Authorization<'_>, SigV4Error> {
    use SigV4Error::MalformedAuthorization as Bad;
    let rest = value
        .strip_prefix(ALGORITHM)
        .filter(|r| r.starts_with(' '))
        .ok_or(Bad("the algorithm is not AWS4-HMAC-SHA256"))?;
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (key, val) = part.trim().split_once('=').ok_or(Bad("a component is not Key=Value"))?;
        let slot = match key {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            _ => return Err(Bad("unknown component")),
        };
        if slot.replace(val).is_some() {
            return Err(Bad("a component appears twice"));
        }
    }
    let credential = credential.ok_or(Bad("no Credential"))?;
    let signed_headers = signed_headers.ok_or(Bad("no SignedHeaders"))?;
    let signature = signature.ok_or(Bad("no Signature"))?;

    let mut scope = credential.split('/');
    let (Some(access_key_id), Some(date), Some(region), Some(service), Some(terminator), None) =
        (scope.next(), scope.next(), scope.next(), scope.next(), scope.next(), scope.next())
    else {
        return Err(Bad("Credential is not AKID/DATE/REGION/SERVICE/aws4_request"));
    };
    if terminator != TERMINATOR {
        return Err(Bad("the credential scope does not end with aws4_request"));
    }
    if access_key_id.is_empty() || region.is_empty() || service.is_empty() {
        return Err(Bad("empty access key id, region or service"));
    }
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Bad("the credential scope date is not YYYYMMDD"));
    }

    let signed: Vec<&str> = signed_headers.split(';').collect();
    let well_formed = signed.iter().all(|n| {
        !n.is_empty()
            && n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b))
    });
    if !well_formed || signed.windows(2).any(|w| w[0] >= w[1]) {
        return Err(Bad("SignedHeaders is not a sorted list of distinct lowercase names"));
    }
    if !signed.contains(&"host") {
        return Err(Bad("SignedHeaders must include host"));
    }

    let mut sig = [0u8; 32];
    hex::decode_to_slice(signature, &mut sig).map_err(|_| Bad("Signature is not 64 hex digits"))?;
    Ok(Authorization { access_key_id, date, region, service, signed, signature: sig })
}

/// The Unix time of a `YYYYMMDDTHHMMSSZ` string, `None` if it is not one or
/// names no real instant (month 13, 30 February, hour 24…) or lies before
/// 1970.
fn parse_amz_date(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u64> {
        b[range].iter().try_fold(0u64, |acc, &c| c.is_ascii_digit().then(|| acc * 10 + u64::from(c - b'0')))
    };
    let (year, month, day) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hour, minute, second) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if year < 1970 || !(1..=12).contains(&month) || day == 0 || day > 31 || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let t = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    // 31 April and the like roll over into the next month: reject them.
    (amz_date(t) == s).then_some(t)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// calendar. The era/day-of-era method: a 400-year era has 146097 days, and
/// years are counted from 1 March so the leap day comes last.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift the epoch from 1970-01-01 to 0000-03-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365], from 1 March
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = era * 400 + yoe + u64::from(month <= 2);
    (year, month, day)
}

/// The inverse of [`civil_from_days`], for years from 1970.
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let y = year - u64::from(month <= 2);
    let era = y / 400;
    let yoe = y % 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    const AKID: &str = "AKIDEXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const T0: u64 = 1_440_938_160; // 20150830T123600Z

    fn creds(token: Option<&'static str>) -> Credentials<'static> {
        Credentials { access_key_id: AKID, secret_access_key: SECRET, session_token: token }
    }

    fn secrets(akid: &str) -> Option<String> {
        (akid == AKID).then(|| SECRET.to_owned())
    }

    fn h(name: &'static str, value: &'static str) -> (HeaderName, HeaderValue) {
        (HeaderName::from_static(name), HeaderValue::from_static(value))
    }

    /// What a server receives: the caller's headers, the signer's headers,
    /// and `host` as an HTTP client derives it.
    fn received(url: &str, headers: &[(HeaderName, HeaderValue)], added: &[(HeaderName, HeaderValue)]) -> HeaderMap {
        let uri: http::Uri = url.parse().unwrap_or_else(|e| panic!("{url}: {e}"));
        let mut map = HeaderMap::new();
        if !headers.iter().any(|(n, _)| n == http::header::HOST) {
            let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
            map.insert(http::header::HOST, HeaderValue::from_str(authority).unwrap_or_else(|e| panic!("{e}")));
        }
        for (n, v) in headers.iter().chain(added) {
            map.append(n.clone(), v.clone());
        }
        map
    }

    fn path_and_query(url: &str) -> String {
        let uri: http::Uri = url.parse().unwrap_or_else(|e| panic!("{url}: {e}"));
        uri.path_and_query().map(|pq| pq.as_str().to_owned()).unwrap_or_else(|| "/".to_owned())
    }

    fn header<'a>(added: &'a [(HeaderName, HeaderValue)], name: &str) -> Option<&'a str> {
        added.iter().find(|(n, _)| n == name).and_then(|(_, v)| v.to_str().ok())
    }

    #[test]
    fn amz_date_of_known_instants() {
        assert_eq!(amz_date(0), "19700101T000000Z");
        assert_eq!(amz_date(T0), "20150830T123600Z");
        assert_eq!(amz_date(94_694_399), "19721231T235959Z"); // last second of a leap year
        assert_eq!(amz_date(951_782_400), "20000229T000000Z"); // leap day of a century leap year
        assert_eq!(amz_date(1_709_251_199), "20240229T235959Z");
        assert_eq!(amz_date(1_709_251_200), "20240301T000000Z");
        assert_eq!(amz_date(1_729_598_400), "20241022T120000Z");
        assert_eq!(amz_date(2_147_483_648), "20380119T031408Z"); // past i32
        assert_eq!(amz_date(4_107_542_400), "21000301T000000Z"); // 2100 is not a leap year
        assert_eq!(amz_date(4_107_542_399), "21000228T235959Z");
    }

    #[test]
    fn amz_date_round_trips_through_the_parser() {
        for t in [0, 59, 86_399, 86_400, T0, 951_782_399, 951_782_400, 1_709_251_199, 4_107_542_399, 253_402_300_799] {
            assert_eq!(parse_amz_date(&amz_date(t)), Some(t), "{t}");
        }
        // Every day boundary over 1970–2500, one per 400 years' worth of steps.
        let mut t = 0;
        while t < 16_725_225_600 {
            assert_eq!(parse_amz_date(&amz_date(t)), Some(t));
            t += 86_400 * 37 + 3_601;
        }
        for bad in [
            "20150830T123600",
            "20150830 123600Z",
            "2015083OT123600Z",
            "20150230T000000Z",
            "20150431T000000Z",
            "20151301T000000Z",
            "20150830T240000Z",
            "20150830T126000Z",
            "19691231T235959Z",
            "21000229T000000Z",
        ] {
            assert_eq!(parse_amz_date(bad), None, "{bad}");
        }
        assert_eq!(parse_amz_date("20000229T000000Z"), Some(951_782_400));
    }

    #[test]
    fn sign_then_verify_round_trips() {
        let url = "https://bedrock-runtime.us-east-1.amazonaws.com/model/m%3A0/converse?b=2&a=1";
        let headers = [h("content-type", "application/json"), h("accept", "application/json")];
        let body = br#"{"messages":[]}"#;
        let added = sign("POST", url, &headers, body, &creds(None), "us-east-1", "bedrock", T0)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(added.len(), 2);
        assert_eq!(header(&added, "x-amz-date"), Some("20150830T123600Z"));
        let auth = header(&added, "authorization").unwrap_or_default();
        assert!(
            auth.starts_with(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/bedrock/aws4_request, \
                 SignedHeaders=accept;content-type;host;x-amz-date, Signature="
            ),
            "{auth}"
        );
        let map = received(url, &headers, &added);
        let scope =
            verify("POST", &path_and_query(url), &map, body, &secrets, T0 + 30, 300).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            scope,
            Scope {
                access_key_id: AKID.into(),
                date: "20150830".into(),
                region: "us-east-1".into(),
                service: "bedrock".into()
            }
        );
    }

    #[test]
    fn a_session_token_is_sent_and_signed() {
        let url = "https://example.amazonaws.com/";
        let added = sign("GET", url, &[], b"", &creds(Some("TOKEN/with+chars==")), "us-east-1", "service", T0)
            .unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<&str> = added.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["x-amz-date", "x-amz-security-token", "authorization"]);
        assert_eq!(header(&added, "x-amz-security-token"), Some("TOKEN/with+chars=="));
        let auth = header(&added, "authorization").unwrap_or_default();
        assert!(auth.contains("SignedHeaders=host;x-amz-date;x-amz-security-token,"), "{auth}");

        let map = received(url, &[], &added);
        assert!(verify("GET", "/", &map, b"", &secrets, T0, 300).is_ok());
        // Swapping the token breaks the signature.
        let mut swapped = map.clone();
        swapped.insert("x-amz-security-token", HeaderValue::from_static("OTHER"));
        assert_eq!(verify("GET", "/", &swapped, b"", &secrets, T0, 300), Err(SigV4Error::SignatureMismatch));
    }

    /// A Bedrock model id with `:` is `%3A` in the URL and `%253A` in the
    /// canonical URI. The expected values are botocore 1.43's, for the same
    /// request made by `bedrock-runtime`'s `converse`: its canonical request
    /// (`SigV4Auth.canonical_request`) and its `Authorization` header, signed
    /// at 2024-10-22T12:00:00Z.
    #[test]
    fn bedrock_model_ids_are_encoded_twice_like_botocore() {
        let url = "https://bedrock-runtime.us-east-1.amazonaws.com/model/us.anthropic.claude-3-5-haiku-20241022-v1%3A0/converse";
        let body = br#"{"messages": [{"role": "user", "content": [{"text": "Hi"}]}]}"#;
        let headers = [h("content-type", "application/json")];
        let creds = Credentials { session_token: Some("SESSIONTOKENEXAMPLE"), ..creds(None) };

        let canonical = vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            ("host".to_owned(), "bedrock-runtime.us-east-1.amazonaws.com".to_owned()),
            ("x-amz-date".to_owned(), "20241022T120000Z".to_owned()),
            ("x-amz-security-token".to_owned(), "SESSIONTOKENEXAMPLE".to_owned()),
        ];
        let signed: Vec<String> = canonical.iter().map(|(n, _)| n.clone()).collect();
        let creq = canonical_request(
            "POST",
            "/model/us.anthropic.claude-3-5-haiku-20241022-v1%3A0/converse",
            "",
            &canonical,
            &signed,
            &payload_hash(body),
        );
        assert_eq!(
            creq,
            "POST\n/model/us.anthropic.claude-3-5-haiku-20241022-v1%253A0/converse\n\n\
             content-type:application/json\nhost:bedrock-runtime.us-east-1.amazonaws.com\n\
             x-amz-date:20241022T120000Z\nx-amz-security-token:SESSIONTOKENEXAMPLE\n\n\
             content-type;host;x-amz-date;x-amz-security-token\n\
             b00b27ae96cce295b9d6456bac8d08b3e3114022bfcf26610ff22e99a58513c3"
        );

        let added = sign("POST", url, &headers, body, &creds, "us-east-1", "bedrock", 1_729_598_400)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            header(&added, "authorization"),
            Some(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20241022/us-east-1/bedrock/aws4_request, \
                 SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, \
                 Signature=e71a9e1d40610d9d595de3ab64a5e4e48ca287c8cdde985d9ca75f4c63961e7d"
            )
        );
        let map = received(url, &headers, &added);
        let scope = verify("POST", &path_and_query(url), &map, body, &secrets, 1_729_598_400, 300)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((scope.region.as_str(), scope.service.as_str()), ("us-east-1", "bedrock"));
        // Signing the once-encoded path (the classic bug) gives another signature.
        let decoded = "https://bedrock-runtime.us-east-1.amazonaws.com/model/us.anthropic.claude-3-5-haiku-20241022-v1:0/converse";
        let wrong = sign("POST", decoded, &headers, body, &creds, "us-east-1", "bedrock", 1_729_598_400)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(header(&wrong, "authorization"), header(&added, "authorization"));
        assert_eq!(
            verify("POST", &path_and_query(url), &received(url, &headers, &wrong), body, &secrets, 1_729_598_400, 300),
            Err(SigV4Error::SignatureMismatch)
        );
    }

    fn signed_request() -> (String, Vec<(HeaderName, HeaderValue)>, Vec<u8>, HeaderMap) {
        let url = "https://bedrock-runtime.us-west-2.amazonaws.com/model/a.b-v1%3A0/invoke".to_owned();
        let headers = vec![h("content-type", "application/json"), h("x-custom", "one")];
        let body = br#"{"x":1}"#.to_vec();
        let added = sign("POST", &url, &headers, &body, &creds(None), "us-west-2", "bedrock", T0)
            .unwrap_or_else(|e| panic!("{e}"));
        let map = received(&url, &headers, &added);
        (path_and_query(&url), headers, body, map)
    }

    #[test]
    fn verify_rejects_a_changed_body_header_path_or_method() {
        let (pq, _, body, map) = signed_request();
        assert!(verify("POST", &pq, &map, &body, &secrets, T0, 300).is_ok());
        let err = |r: Result<Scope, SigV4Error>| r.err();
        let mismatch = Some(SigV4Error::SignatureMismatch);

        assert_eq!(err(verify("POST", &pq, &map, br#"{"x":2}"#, &secrets, T0, 300)), mismatch);
        assert_eq!(err(verify("PUT", &pq, &map, &body, &secrets, T0, 300)), mismatch);
        assert_eq!(
            err(verify("POST", "/model/a.b-v1%3A0/invoke-with-response-stream", &map, &body, &secrets, T0, 300)),
            mismatch
        );
        assert_eq!(err(verify("POST", "/model/a.b-v1:0/invoke", &map, &body, &secrets, T0, 300)), mismatch);
        assert_eq!(err(verify("POST", &format!("{pq}?x=1"), &map, &body, &secrets, T0, 300)), mismatch);

        let mut changed = map.clone();
        changed.insert("x-custom", HeaderValue::from_static("two"));
        assert_eq!(err(verify("POST", &pq, &changed, &body, &secrets, T0, 300)), mismatch);
        let mut added = map.clone();
        added.append("x-custom", HeaderValue::from_static("two"));
        assert_eq!(err(verify("POST", &pq, &added, &body, &secrets, T0, 300)), mismatch);
        let mut host = map.clone();
        host.insert(http::header::HOST, HeaderValue::from_static("bedrock-runtime.us-east-1.amazonaws.com"));
        assert_eq!(err(verify("POST", &pq, &host, &body, &secrets, T0, 300)), mismatch);
        // An unsigned header may change freely.
        let mut unsigned = map.clone();
        unsigned.insert("user-agent", HeaderValue::from_static("anything"));
        assert!(verify("POST", &pq, &unsigned, &body, &secrets, T0, 300).is_ok());
        // A signed header that went missing.
        let mut removed = map.clone();
        removed.remove("x-custom");
        assert_eq!(
            err(verify("POST", &pq, &removed, &body, &secrets, T0, 300)),
            Some(SigV4Error::MissingSignedHeader("x-custom".into()))
        );
        // Another secret for the same key id.
        let other = |_: &str| Some("another-secret".to_owned());
        assert_eq!(err(verify("POST", &pq, &map, &body, &other, T0, 300)), mismatch);
        let unknown = |_: &str| None;
        assert_eq!(
            err(verify("POST", &pq, &map, &body, &unknown, T0, 300)),
            Some(SigV4Error::UnknownAccessKey(AKID.into()))
        );
    }

    #[test]
    fn verify_rejects_expired_and_future_dates() {
        let (pq, _, body, map) = signed_request();
        assert!(verify("POST", &pq, &map, &body, &secrets, T0 + 300, 300).is_ok());
        assert!(verify("POST", &pq, &map, &body, &secrets, T0 - 300, 300).is_ok());
        for now in [T0 + 301, T0 - 301, T0 + 86_400, 0] {
            assert!(
                matches!(verify("POST", &pq, &map, &body, &secrets, now, 300), Err(SigV4Error::Skewed { .. })),
                "{now}"
            );
        }
        // Moving x-amz-date (within the skew) breaks the signature.
        let mut moved = map.clone();
        moved.insert("x-amz-date", HeaderValue::from_static("20150830T123700Z"));
        assert_eq!(verify("POST", &pq, &moved, &body, &secrets, T0, 300), Err(SigV4Error::SignatureMismatch));
        // …and to another day, the credential scope.
        let mut next_day = map.clone();
        next_day.insert("x-amz-date", HeaderValue::from_static("20150831T000100Z"));
        assert!(matches!(
            verify("POST", &pq, &next_day, &body, &secrets, T0, 86_400),
            Err(SigV4Error::ScopeDateMismatch { .. })
        ));
        let mut bad = map.clone();
        bad.insert("x-amz-date", HeaderValue::from_static("2015-08-30T12:36:00Z"));
        assert_eq!(verify("POST", &pq, &bad, &body, &secrets, T0, 300), Err(SigV4Error::BadDate));
        let mut none = map.clone();
        none.remove("x-amz-date");
        assert_eq!(verify("POST", &pq, &none, &body, &secrets, T0, 300), Err(SigV4Error::BadDate));
    }

    #[test]
    fn verify_rejects_malformed_authorization() {
        let (pq, _, body, map) = signed_request();
        let good = map.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let with = |auth: &str| {
            let mut m = map.clone();
            m.insert(http::header::AUTHORIZATION, HeaderValue::from_str(auth).unwrap_or_else(|e| panic!("{e}")));
            verify("POST", &pq, &m, &body, &secrets, T0, 300)
        };
        assert!(with(&good).is_ok());
        // Components may be separated by "," without the space.
        assert!(with(&good.replace(", ", ",")).is_ok());
        let cases = [
            good.replacen("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA512", 1),
            good.replacen("AWS4-HMAC-SHA256 ", "AWS4-HMAC-SHA256", 1),
            good.replace("/aws4_request", "/aws5_request"),
            good.replace("Credential=AKIDEXAMPLE/", "Credential=AKIDEXAMPLE/x/"),
            good.replace("/20150830/", "/2015083/"),
            good.replace("SignedHeaders=content-type;host;", "SignedHeaders=host;content-type;"),
            good.replace("SignedHeaders=content-type;host;", "SignedHeaders=Content-Type;host;"),
            good.replace("SignedHeaders=content-type;host;", "SignedHeaders=content-type;"),
            good.replace("SignedHeaders=content-type;", "SignedHeaders=content-type;content-type;"),
            good.replace("Signature=", "Signature=ab"),
            good.replace("Signature=", "Signature=zz").chars().take(good.len()).collect(),
            format!("{good}, Signature=00"),
            format!("{good}, Extra=1"),
            good.split(", Signature=").next().unwrap_or_default().to_owned(),
        ];
        for auth in &cases {
            assert!(matches!(with(auth), Err(SigV4Error::MalformedAuthorization(_))), "{auth}: {:?}", with(auth));
        }
        let mut none = map.clone();
        none.remove(http::header::AUTHORIZATION);
        assert_eq!(verify("POST", &pq, &none, &body, &secrets, T0, 300), Err(SigV4Error::MissingAuthorization));
        let mut two = map.clone();
        two.append(http::header::AUTHORIZATION, HeaderValue::from_str(&good).unwrap_or_else(|e| panic!("{e}")));
        assert!(matches!(
            verify("POST", &pq, &two, &body, &secrets, T0, 300),
            Err(SigV4Error::MalformedAuthorization(_))
        ));
        // A signature that is well-formed but wrong.
        let (head, sig) = good.split_once("Signature=").unwrap_or_default();
        let other = if sig.starts_with('0') { '1' } else { '0' };
        let flipped = format!("{head}Signature={other}{}", &sig[1..]);
        assert_eq!(with(&flipped), Err(SigV4Error::SignatureMismatch));
    }

    #[test]
    fn sign_checks_its_inputs() {
        let c = creds(None);
        let sign_url = |url: &str| sign("GET", url, &[], b"", &c, "us-east-1", "bedrock", T0);
        assert!(matches!(sign_url("/relative/path"), Err(SigV4Error::BadUrl { .. })));
        assert!(matches!(sign_url("ftp://example.com/"), Err(SigV4Error::BadUrl { .. })));
        assert!(matches!(sign_url("https://exa mple.com/"), Err(SigV4Error::BadUrl { .. })));
        for reserved in ["authorization", "x-amz-date", "x-amz-security-token"] {
            let headers = [(HeaderName::from_static(reserved), HeaderValue::from_static("x"))];
            assert_eq!(
                sign("GET", "https://example.com/", &headers, b"", &c, "us-east-1", "bedrock", T0),
                Err(SigV4Error::ReservedHeader(reserved.into()))
            );
        }
        let non_ascii = [(
            HeaderName::from_static("x-a"),
            HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap_or_else(|e| panic!("{e}")),
        )];
        assert!(matches!(
            sign("GET", "https://example.com/", &non_ascii, b"", &c, "us-east-1", "bedrock", T0),
            Err(SigV4Error::BadHeader { .. })
        ));
        assert!(matches!(
            sign("GET", "https://example.com/", &[], b"", &c, "us east-1", "bedrock", T0),
            Err(SigV4Error::BadScope(_))
        ));
        assert!(matches!(
            sign("GET", "https://example.com/", &[], b"", &c, "us-east-1", "", T0),
            Err(SigV4Error::BadScope(_))
        ));
        let bad_key = Credentials { access_key_id: "AK/ID", ..c };
        assert!(matches!(
            sign("GET", "https://example.com/", &[], b"", &bad_key, "us-east-1", "bedrock", T0),
            Err(SigV4Error::BadScope(_))
        ));
        let bad_token = Credentials { session_token: Some("line\nbreak"), ..c };
        assert!(matches!(
            sign("GET", "https://example.com/", &[], b"", &bad_token, "us-east-1", "bedrock", T0),
            Err(SigV4Error::BadHeader { .. })
        ));
    }

    #[test]
    fn host_comes_from_the_url_without_a_default_port() {
        let authz = |url: &str, headers: &[(HeaderName, HeaderValue)]| {
            sign("GET", url, headers, b"", &creds(None), "us-east-1", "bedrock", T0)
                .map(|a| header(&a, "authorization").unwrap_or_default().to_owned())
                .unwrap_or_else(|e| panic!("{e}"))
        };
        let plain = authz("https://example.com/", &[]);
        assert_eq!(authz("https://example.com:443/", &[]), plain);
        assert_eq!(authz("https://user@example.com/", &[]), plain);
        assert_eq!(authz("https://example.com", &[]), plain);
        assert_eq!(authz("https://other.com/", &[h("host", "example.com")]), plain);
        assert_ne!(authz("https://example.com:8443/", &[]), plain);
        assert_eq!(
            authz("https://example.com:8443/", &[]),
            authz("https://example.com/", &[h("host", "example.com:8443")])
        );
        assert_eq!(authz("http://example.com:80/", &[]), authz("http://example.com/", &[]));
        assert_ne!(authz("http://example.com:443/", &[]), authz("http://example.com/", &[]));
        // A local mock on a port verifies with the Host header a client sends.
        let url = "http://127.0.0.1:9123/model/m%3A0/converse";
        let added =
            sign("POST", url, &[], b"{}", &creds(None), "us-east-1", "bedrock", T0).unwrap_or_else(|e| panic!("{e}"));
        let map = received(url, &[], &added);
        assert_eq!(map.get(http::header::HOST).and_then(|v| v.to_str().ok()), Some("127.0.0.1:9123"));
        assert!(verify("POST", "/model/m%3A0/converse", &map, b"{}", &secrets, T0, 300).is_ok());
    }

    #[test]
    fn canonical_uri_and_query_encoding() {
        // (canonical URI, canonical query) of a request.
        let creq = |path: &str, query: &str| {
            let c = canonical_request("GET", path, query, &[], &[], "h");
            let lines: Vec<&str> = c.split('\n').collect();
            (lines[1].to_owned(), lines[2].to_owned())
        };
        let uri = |path: &str| creq(path, "").0;
        let query = |query: &str| creq("/", query).1;
        assert_eq!(uri(""), "/");
        assert_eq!(uri("/a b/ሴ"), "/a%20b/%E1%88%B4");
        assert_eq!(uri("/a%20b/x%2Fy"), "/a%2520b/x%252Fy");
        assert_eq!(uri("/-._~AZaz09!$&'()*+,;=:@"), "/-._~AZaz09%21%24%26%27%28%29%2A%2B%2C%3B%3D%3A%40");
        assert_eq!(uri("//a/./b/../"), "//a/./b/../"); // not normalized
        assert_eq!(query("b=2&a=1&a=0"), "a=0&a=1&b=2");
        assert_eq!(query("c+d"), "c%2Bd=");
        assert_eq!(query("k=a%20b&k2=%e1%88%b4&k3=a b"), "k=a%20b&k2=%E1%88%B4&k3=a%20b");
        assert_eq!(query("x=%zz&&y=&z=%4"), "x=%25zz&y=&z=%254");
        assert_eq!(query("Param1=value2&Param1=Value1"), "Param1=Value1&Param1=value2");
        assert_eq!(query("b=%2F&a=%3A"), "a=%3A&b=%2F");
        assert_eq!(query("a=b=c"), "a=b%3Dc");
    }

    #[test]
    fn canonical_headers_are_trimmed_joined_and_sorted() {
        let headers = vec![
            ("x-b".to_owned(), "  two   words\there ".to_owned()),
            ("X-A".to_owned(), "first".to_owned()),
            ("x-a".to_owned(), "second".to_owned()),
            ("x-unsigned".to_owned(), "no".to_owned()),
        ];
        let signed = vec!["x-b".to_owned(), "X-A".to_owned(), "x-a".to_owned(), "x-missing".to_owned()];
        assert_eq!(
            canonical_request("PUT", "/", "", &headers, &signed, "h"),
            "PUT\n/\n\nx-a:first,second\nx-b:two words here\nx-missing:\n\nx-a;x-b;x-missing\nh"
        );
    }

    #[test]
    fn credentials_debug_hides_secrets() {
        let shown = format!("{:?}", creds(Some("SESSIONTOKEN123")));
        assert!(shown.contains(AKID) && !shown.contains(SECRET) && !shown.contains("SESSIONTOKEN123"), "{shown}");
    }
}
