//! Attribution from headers and body fields: any header values (the
//! attribution headers of tollgate and of other gateways, and
//! `traceparent`), any body `user` and `metadata`, give tags or a client
//! error — never a panic, and never a tag the key enforces overridden.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

use http::{HeaderMap, HeaderName, HeaderValue};
use tollgate::attribution::{attribute, KeyTags};

const NAMES: [&str; 8] = [
    "x-tollgate-tags",
    "x-tollgate-metadata",
    "x-portkey-metadata",
    "x-litellm-tags",
    "helicone-property-team",
    "traceparent",
    "x-tollgate-trace-id",
    "x-tollgate-session-id",
];

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    let mut parts = data.split(|b| *b == 0);
    for name in NAMES {
        let Some(v) = parts.next() else { break };
        if let Ok(v) = HeaderValue::from_bytes(v) {
            headers.insert(HeaderName::from_static(name), v);
        }
    }
    let user = parts.next().and_then(|u| std::str::from_utf8(u).ok());
    let metadata: Vec<(String, String)> = parts
        .next()
        .and_then(|m| std::str::from_utf8(m).ok())
        .map(|m| m.split(',').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.into(), v.into())).collect())
        .unwrap_or_default();
    let defaults = BTreeMap::from([("env".to_string(), "dev".to_string())]);
    let enforced = BTreeMap::from([("team".to_string(), "growth".to_string())]);
    if let Ok(a) = attribute(&headers, user, &metadata, KeyTags { defaults: &defaults, enforced: &enforced }) {
        assert_eq!(a.tag("team"), Some("growth"), "an enforced tag was overridden");
    }
});
