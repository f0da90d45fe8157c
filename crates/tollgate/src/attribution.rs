//! Attribution: who and what a request is for, from headers, body and key.
//!
//! Sources, weakest first (a later source overrides an earlier one for the
//! same tag): the key's default tags; drop-in headers of other gateways
//! (`Helicone-Property-*`, `x-portkey-metadata`, `x-litellm-tags`); body
//! `metadata` and `user`; `x-tollgate-metadata`; `x-tollgate-tags`; and last
//! the key's *enforced* tags, which no request can override. A key's identity
//! tags (`team`, `user`, `org`) are always enforced, wherever they are stored:
//! a request may add any tag its key does not carry, never change who it is.
//! Pure: headers and values in, [`Attribution`] out.

use std::collections::BTreeMap;

use http::HeaderMap;

use crate::error::ApiError;

pub const MAX_TAGS: usize = 32;
pub const MAX_TAG_KEY_LEN: usize = 64;
pub const MAX_TAG_VALUE_LEN: usize = 256;
const MAX_ID_LEN: usize = 256;
/// Tags that say who a request is: when a key carries one, the request cannot change it.
pub const IDENTITY_TAGS: &[&str] = &["team", "user", "org"];

/// The tag a request's row carries when shadow budgets would have refused
/// it (their ids, comma separated). Set by the gateway only: dropped from
/// what a request or its key sends.
pub const SHADOW_TAG: &str = "shadow_refused";

/// Who and what one request is for.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Attribution {
    /// All tags, `team`, `feature`, `env`, `org`, `user` included.
    pub tags: BTreeMap<String, String>,
    pub trace_id: Option<String>,
    pub parent_id: Option<String>,
    pub session: Option<String>,
    pub agent: Option<String>,
    /// `name@version`
    pub prompt: Option<String>,
}

impl Attribution {
    pub fn tag(&self, k: &str) -> Option<&str> {
        self.tags.get(k).map(String::as_str)
    }
}

/// The tags a key brings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyTags<'a> {
    pub defaults: &'a BTreeMap<String, String>,
    pub enforced: &'a BTreeMap<String, String>,
}

static NO_TAGS: BTreeMap<String, String> = BTreeMap::new();

impl Default for KeyTags<'_> {
    fn default() -> Self {
        KeyTags { defaults: &NO_TAGS, enforced: &NO_TAGS }
    }
}

fn bad(msg: String) -> ApiError {
    ApiError::invalid(msg)
}

fn check_key(k: &str, source: &str) -> Result<String, ApiError> {
    let k = k.trim().to_ascii_lowercase();
    if k.is_empty() || k.len() > MAX_TAG_KEY_LEN {
        return Err(bad(format!("tag name {k:?} from {source} must be 1 to {MAX_TAG_KEY_LEN} characters")));
    }
    if !k.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b)) {
        return Err(bad(format!("tag name {k:?} from {source} may only use letters, digits, '_', '-', '.', ':'")));
    }
    Ok(k)
}

fn check_value(k: &str, v: &str, source: &str) -> Result<String, ApiError> {
    let v = v.trim();
    if v.len() > MAX_TAG_VALUE_LEN {
        return Err(bad(format!("tag {k:?} from {source} is longer than {MAX_TAG_VALUE_LEN} bytes")));
    }
    if v.chars().any(char::is_control) {
        return Err(bad(format!("tag {k:?} from {source} contains control characters")));
    }
    Ok(v.to_string())
}

fn insert(tags: &mut BTreeMap<String, String>, k: &str, v: &str, source: &str) -> Result<(), ApiError> {
    let k = check_key(k, source)?;
    let v = check_value(&k, v, source)?;
    if v.is_empty() {
        return Ok(());
    }
    tags.insert(k, v);
    Ok(())
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, ApiError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.trim()).filter(|s| !s.is_empty()))
            .map_err(|_| bad(format!("header {name} must be visible ASCII"))),
    }
}

/// `k=v,k=v` (also `k:v`).
fn parse_pairs(tags: &mut BTreeMap<String, String>, s: &str, source: &str) -> Result<(), ApiError> {
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .or_else(|| part.split_once(':'))
            .ok_or_else(|| bad(format!("{source}: {part:?} is not key=value")))?;
        insert(tags, k, v, source)?;
    }
    Ok(())
}

/// A JSON object of scalars; nested values are refused.
fn parse_json_object(tags: &mut BTreeMap<String, String>, s: &str, source: &str) -> Result<(), ApiError> {
    let v: serde_json::Value =
        serde_json::from_str(s).map_err(|e| bad(format!("{source} is not a JSON object: {e}")))?;
    let obj = v.as_object().ok_or_else(|| bad(format!("{source} must be a JSON object")))?;
    for (k, v) in obj {
        let s = match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            serde_json::Value::Null => continue,
            _ => return Err(bad(format!("{source}: tag {k:?} must be a string, number or boolean"))),
        };
        insert(tags, k, &s, source)?;
    }
    Ok(())
}

fn check_id(v: &str, name: &str) -> Result<String, ApiError> {
    if v.len() > MAX_ID_LEN || v.chars().any(char::is_control) {
        return Err(bad(format!("header {name} must be at most {MAX_ID_LEN} printable characters")));
    }
    Ok(v.to_string())
}

/// W3C `traceparent`: `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`.
fn parse_traceparent(v: &str) -> Result<(String, String), ApiError> {
    let parts: Vec<&str> = v.split('-').collect();
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    if parts.len() < 4 || !hex(parts[0], 2) || !hex(parts[1], 32) || !hex(parts[2], 16) || !hex(parts[3], 2) {
        return Err(bad("header traceparent is not a W3C trace context (00-<trace id>-<parent id>-<flags>)".into()));
    }
    if parts[1].bytes().all(|b| b == b'0') || parts[2].bytes().all(|b| b == b'0') {
        return Err(bad("header traceparent has an all-zero id".into()));
    }
    Ok((parts[1].to_ascii_lowercase(), parts[2].to_ascii_lowercase()))
}

/// Builds the request's attribution. `body_user` and `body_metadata` come from
/// the request body (already parsed by the provider layer).
pub fn attribute(
    headers: &HeaderMap,
    body_user: Option<&str>,
    body_metadata: &[(String, String)],
    key: KeyTags<'_>,
) -> Result<Attribution, ApiError> {
    let mut tags = key.defaults.clone();

    for (name, value) in headers {
        let n = name.as_str();
        if let Some(prop) = n.strip_prefix("helicone-property-") {
            let v = value.to_str().map_err(|_| bad(format!("header {n} must be visible ASCII")))?;
            insert(&mut tags, prop, v, n)?;
        }
    }
    if let Some(s) = header_str(headers, "x-portkey-metadata")? {
        parse_json_object(&mut tags, s, "x-portkey-metadata")?;
    }
    if let Some(s) = header_str(headers, "x-litellm-tags")? {
        // LiteLLM tags are a plain list; `k:v` / `k=v` entries become tags, bare words `tag=<word>`.
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.split_once('=').or_else(|| part.split_once(':')) {
                Some((k, v)) => insert(&mut tags, k, v, "x-litellm-tags")?,
                None => insert(&mut tags, "tag", part, "x-litellm-tags")?,
            }
        }
    }
    for (k, v) in body_metadata {
        insert(&mut tags, k, v, "body metadata")?;
    }
    if let Some(u) = body_user {
        insert(&mut tags, "user", u, "body user")?;
    }
    if let Some(s) = header_str(headers, "x-tollgate-metadata")? {
        parse_json_object(&mut tags, s, "x-tollgate-metadata")?;
    }
    if let Some(s) = header_str(headers, "x-tollgate-tags")? {
        parse_pairs(&mut tags, s, "x-tollgate-tags")?;
    }
    for (k, v) in key.enforced {
        tags.insert(k.clone(), v.clone());
    }
    // A key's identity is never the request's to change, even when it was
    // stored as a default (keys made before identity tags were enforced).
    for k in IDENTITY_TAGS {
        if let (Some(v), false) = (key.defaults.get(*k), key.enforced.contains_key(*k)) {
            tags.insert((*k).to_string(), v.clone());
        }
    }
    // Set by the gateway only (shadow budgets that would have refused the
    // request), never by the request or its key.
    tags.remove(SHADOW_TAG);
    if tags.len() > MAX_TAGS {
        return Err(bad(format!("a request may carry at most {MAX_TAGS} tags; this one has {}", tags.len())));
    }

    let (mut trace_id, mut parent_id) = (None, None);
    if let Some(tp) = header_str(headers, "traceparent")? {
        let (t, p) = parse_traceparent(tp)?;
        trace_id = Some(t);
        parent_id = Some(p);
    }
    if let Some(t) = header_str(headers, "x-tollgate-trace-id")? {
        trace_id = Some(check_id(t, "x-tollgate-trace-id")?);
    }
    if let Some(p) = header_str(headers, "x-tollgate-parent-id")? {
        parent_id = Some(check_id(p, "x-tollgate-parent-id")?);
    }
    let opt = |name: &str| -> Result<Option<String>, ApiError> {
        header_str(headers, name)?.map(|v| check_id(v, name)).transpose()
    };
    let session = opt("x-tollgate-session-id")?;
    let agent = opt("x-tollgate-agent")?;
    let prompt = opt("x-tollgate-prompt")?;
    if let Some(p) = &prompt {
        match p.split_once('@') {
            Some((n, v)) if !n.is_empty() && !v.is_empty() => {}
            _ => return Err(bad(format!("header x-tollgate-prompt {p:?} must be name@version"))),
        }
    }
    Ok(Attribution { tags, trace_id, parent_id, session, agent, prompt })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        m
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
    }

    #[test]
    fn merges_sources_in_order() {
        let defaults = map(&[("team", "default-team"), ("env", "dev"), ("org", "acme")]);
        let enforced = map(&[("org", "acme-enforced")]);
        let headers = h(&[
            ("helicone-property-feature", "helicone-feature"),
            ("x-portkey-metadata", r#"{"feature":"portkey","cost_center":"cc1"}"#),
            ("x-litellm-tags", "nightly,region:eu"),
            ("x-tollgate-metadata", r#"{"env":"staging","n":3}"#),
            ("x-tollgate-tags", "team=growth, env=prod,org=hacker"),
            ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            ("x-tollgate-session-id", "sess-1"),
            ("x-tollgate-agent", "researcher"),
            ("x-tollgate-prompt", "summarize@v3"),
        ]);
        let body_md = vec![("feature".to_string(), "summarize".to_string())];
        let a =
            attribute(&headers, Some("alice"), &body_md, KeyTags { defaults: &defaults, enforced: &enforced }).unwrap();
        assert_eq!(
            a.tags,
            map(&[
                // The key's team is its identity: `team=growth` in the request cannot move it.
                ("team", "default-team"),
                ("env", "prod"),
                ("org", "acme-enforced"),
                ("feature", "summarize"),
                ("cost_center", "cc1"),
                ("tag", "nightly"),
                ("region", "eu"),
                ("n", "3"),
                ("user", "alice"),
            ])
        );
        assert_eq!(a.trace_id.as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(a.parent_id.as_deref(), Some("00f067aa0ba902b7"));
        assert_eq!(a.session.as_deref(), Some("sess-1"));
        assert_eq!(a.agent.as_deref(), Some("researcher"));
        assert_eq!(a.prompt.as_deref(), Some("summarize@v3"));
    }

    #[test]
    fn tollgate_trace_headers_override_traceparent() {
        let a = attribute(
            &h(&[
                ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
                ("x-tollgate-trace-id", "run-42"),
                ("x-tollgate-parent-id", "step-3"),
            ]),
            None,
            &[],
            KeyTags::default(),
        )
        .unwrap();
        assert_eq!(a.trace_id.as_deref(), Some("run-42"));
        assert_eq!(a.parent_id.as_deref(), Some("step-3"));
    }

    #[test]
    fn bad_inputs_are_400_with_a_clear_message() {
        let long = "x".repeat(MAX_TAG_VALUE_LEN + 1);
        let many: String = (0..=MAX_TAGS).map(|i| format!("k{i}=v,")).collect();
        let long_tag = format!("team={long}");
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (vec![("x-tollgate-tags", "team")], "\"team\" is not key=value"),
            (vec![("x-tollgate-tags", "te am=x")], "may only use letters"),
            (vec![("x-tollgate-tags", &long_tag)], "longer than 256 bytes"),
            (vec![("x-tollgate-tags", &many)], "at most 32 tags"),
            (vec![("x-tollgate-metadata", "[1]")], "must be a JSON object"),
            (vec![("x-tollgate-metadata", "{nope")], "is not a JSON object"),
            (vec![("x-tollgate-metadata", r#"{"a":{"b":1}}"#)], "must be a string, number or boolean"),
            (vec![("traceparent", "00-zz-yy-01")], "not a W3C trace context"),
            (vec![("traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01")], "all-zero"),
            (vec![("x-tollgate-prompt", "noversion")], "must be name@version"),
        ];
        for (headers, want) in cases {
            let e = attribute(&h(&headers), None, &[], KeyTags::default()).unwrap_err();
            assert_eq!(e.code(), "invalid_request");
            assert!(e.to_string().contains(want), "{headers:?}: {e}");
        }
    }
}
