//! A generated corpus of malformed requests (not one typed by hand: each is
//! a mutation of a valid body, crossed with every API family): every case
//! gets a 4xx in its family's error shape with a stable code, none reaches
//! the provider, the gateway stays up, and each (authenticated) request
//! leaves exactly one ledger row.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// The API families: endpoint, a valid body, and how its errors look.
fn families() -> Vec<(&'static str, Value, Shape)> {
    vec![
        (
            "/v1/chat/completions",
            json!({"model": "gpt-4o-mini", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}),
            Shape::OpenAi,
        ),
        ("/v1/embeddings", json!({"model": "text-embedding-3-small", "input": "hi"}), Shape::OpenAi),
        ("/v1/responses", json!({"model": "gpt-4o-mini", "max_output_tokens": 16, "input": "hi"}), Shape::OpenAi),
        (
            "/v1/messages",
            json!({"model": "claude-haiku-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}),
            Shape::Anthropic,
        ),
    ]
}

#[derive(Clone, Copy, Debug)]
enum Shape {
    /// `{"error": {"message", "type", "code", "param"}}`
    OpenAi,
    /// `{"type": "error", "error": {"type", "message"}}`
    Anthropic,
}

/// Values of every JSON type that are wrong for some field.
fn wrong_values() -> Vec<Value> {
    vec![
        Value::Null,
        json!(true),
        json!(-1),
        json!(1.5),
        json!(1e300),
        json!(18446744073709551616u128 as f64),
        json!(""),
        json!("text"),
        json!([]),
        json!([1, 2]),
        json!({}),
        json!({"a": "b"}),
    ]
}

/// Model names the edge must refuse (control characters, quoting, paths,
/// lengths, spaces, non-ASCII).
fn bad_models() -> Vec<String> {
    let mut v: Vec<String> = [
        "",
        " ",
        "gpt-4o-mini\u{0}",
        "gpt\"4o",
        "gpt'4o",
        "gpt-4o; DROP TABLE ledger",
        "../../etc/passwd",
        "gpt/../x",
        "gpt//x",
        "a b",
        "gpt\n4o",
        "gpt\t4o",
        "gpt-4o-mini\r\nx-injected: 1",
        "ģpt-4o",
        "💸",
        "gpt%2F4o",
        "gpt?4o",
        "gpt#4o",
        "gpt\\4o",
        "<script>",
        "${jndi:ldap://x}",
        "./gpt",
        "openai/",
        "/gpt",
        "gpt*",
        "gpt|4o",
        "gpt`4o`",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push("g".repeat(257));
    v.push("a/".repeat(200));
    v
}

/// Bodies that are not a JSON object at all.
fn not_objects(valid: &Value) -> Vec<Vec<u8>> {
    let text = valid.to_string();
    let mut v: Vec<Vec<u8>> = [
        "",
        " ",
        "{",
        "}",
        "[",
        "null",
        "42",
        "\"x\"",
        "true",
        "[]",
        "[{}]",
        "{,}",
        "{\"model\":}",
        "{\"model\" \"x\"}",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    // The valid body cut at several points: never a whole object.
    for cut in [1, 2, 5, 10, text.len() / 3, text.len() / 2, text.len() - 2, text.len() - 1] {
        v.push(text.as_bytes()[..cut].to_vec());
    }
    // Invalid UTF-8 inside a string, a stray byte after the object, a lone surrogate.
    v.push(text.replacen("hi", "h\u{FFFD}", 1).replace('\u{FFFD}', "\u{0}").into_bytes());
    let mut bad_utf8 = text.clone().into_bytes();
    let at = bad_utf8.len() - 3;
    bad_utf8.splice(at..at, [0xff, 0xfe]);
    v.push(bad_utf8);
    v.push(format!("{text}x").into_bytes());
    v.push(format!("{text}{text}").into_bytes());
    v.push(text.replacen("hi", "\\ud800", 1).into_bytes());
    // Pseudo-random bytes (fixed seed: the same corpus every run).
    let mut seed: u64 = 0x5eed;
    for n in [1usize, 7, 64, 500] {
        let bytes = (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed >> 24) as u8
            })
            .collect();
        v.push(bytes);
    }
    v
}

/// Says whether a value is of the wrong type for a field.
type Wrong = fn(&Value) -> bool;

/// The whole corpus for one family: (label, body bytes).
fn corpus(valid: &Value, endpoint: &str) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    for (i, b) in not_objects(valid).into_iter().enumerate() {
        out.push((format!("not an object #{i}"), b));
    }
    let with = |field: &str, value: Value| {
        let mut v = valid.clone();
        v[field] = value;
        serde_json::to_vec(&v).unwrap()
    };
    let without = |field: &str| {
        let mut v = valid.clone();
        v.as_object_mut().unwrap().remove(field);
        serde_json::to_vec(&v).unwrap()
    };
    // The fields the gateway reads, each with every wrong type.
    let mut typed: Vec<(&str, Wrong)> = vec![
        ("model", |v| !v.is_string()),
        ("stream", |v| !v.is_boolean() && !v.is_null()),
        ("service_tier", |v| !v.is_string() && !v.is_null()),
    ];
    if endpoint != "/v1/messages" {
        // OpenAI's `user` (Anthropic's is `metadata.user_id`).
        typed.push(("user", |v| !v.is_string() && !v.is_null()));
    }
    match endpoint {
        "/v1/chat/completions" => {
            typed.push(("messages", |v| !v.is_array() || v.as_array().is_some_and(|a| !a.is_empty())));
            typed.push(("max_tokens", |v| !v.is_u64() && !v.is_null()));
            typed.push(("max_completion_tokens", |v| !v.is_u64() && !v.is_null()));
            typed.push(("metadata", |v| !v.is_object() && !v.is_null()));
        }
        "/v1/messages" => {
            typed.push(("messages", |v| !v.is_array() || v.as_array().is_some_and(|a| !a.is_empty())));
            typed.push(("max_tokens", |v| !v.is_u64()));
            typed.push(("system", |v| !v.is_string() && !v.is_array() && !v.is_null()));
        }
        "/v1/responses" => typed.push(("max_output_tokens", |v| !v.is_u64() && !v.is_null())),
        _ => typed.push(("input", |v| !v.is_string() && !v.is_array())),
    }
    for (field, wrong) in typed {
        for value in wrong_values().into_iter().filter(wrong) {
            out.push((format!("{field} = {value}"), with(field, value)));
        }
    }
    out.push(("no model".into(), without("model")));
    if endpoint == "/v1/chat/completions" || endpoint == "/v1/messages" {
        out.push(("no messages".into(), without("messages")));
        out.push(("a message that is a number".into(), with("messages", json!([7]))));
        out.push(("a message without content".into(), with("messages", json!([{"role": "user"}]))));
        out.push(("content of the wrong type".into(), with("messages", json!([{"role": "user", "content": 5}]))));
    }
    for m in bad_models() {
        out.push((format!("model {m:?}"), with("model", json!(m))));
    }
    // Deep nesting in an unknown field: refused at the edge, never forwarded.
    for depth in [65usize, 200, 5_000, 20_000] {
        let mut body = valid.to_string();
        body.pop();
        body.push_str(&format!(",\"deep\":{}{}}}", "[".repeat(depth), "]".repeat(depth)));
        out.push((format!("nested {depth} deep"), body.into_bytes()));
        let mut body = valid.to_string();
        body.pop();
        body.push_str(&format!(",\"deep\":{}1{}}}", "{\"a\":".repeat(depth), "}".repeat(depth)));
        out.push((format!("objects nested {depth} deep"), body.into_bytes()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_corpus_of_malformed_requests_is_refused_at_the_edge_in_each_familys_shape() {
    let h = common::Harness::start().await;
    let before = h.mock_total().await;
    let mut total = 0usize;
    let mut codes: BTreeMap<String, usize> = BTreeMap::new();
    let mut wrong = Vec::new();
    for (endpoint, valid, shape) in families() {
        // The valid body itself goes through (the corpus is of mutations of a working request).
        let r = h.post(endpoint).json(&valid).send().await.unwrap();
        assert_eq!(r.status(), 200, "{endpoint}: {}", r.text().await.unwrap());
        for (label, body) in corpus(&valid, endpoint) {
            total += 1;
            let upstream_before = h.mock_total().await;
            let r = h
                .post(endpoint)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{endpoint} {label}: the gateway dropped the connection: {e}"));
            let status = r.status().as_u16();
            let id = r.headers().get("x-tollgate-request-id").map(|v| v.to_str().unwrap().to_string());
            let text = r.text().await.unwrap();
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let code = match shape {
                Shape::OpenAi => v["error"]["code"].as_str(),
                Shape::Anthropic => (v["type"] == "error").then(|| v["error"]["type"].as_str()).flatten(),
            };
            let message_ok = v["error"]["message"].as_str().is_some_and(|m| !m.is_empty());
            match (status, code, id) {
                (400..=499, Some(code), Some(id)) if message_ok => {
                    if h.mock_total().await != upstream_before {
                        wrong
                            .push(format!("{endpoint} {label}: refused ({status} {code}) but it reached the provider"));
                    }
                    *codes.entry(format!("{endpoint} {status} {code}")).or_default() += 1;
                    // Its row says the same.
                    let row = h.row(&id);
                    if row.status != status || row.cost != Some(tollgate_units::Money::ZERO) {
                        wrong.push(format!("{endpoint} {label}: row {} {:?}", row.status, row.cost));
                    }
                }
                (s, _, id) => wrong.push(format!("{endpoint} {label}: {s} (request id {id:?}) {text:.200}")),
            }
        }
    }
    assert!(wrong.is_empty(), "{} of {total} cases not refused as documented:\n{}", wrong.len(), wrong.join("\n"));
    eprintln!("malformed corpus: {total} cases, every one a 4xx in its family's shape: {codes:#?}");
    assert!(total >= 500, "the corpus has {total} cases");
    assert_eq!(h.mock_total().await - before, 4, "only the four valid bodies reached the provider");
    let rows = h.rows();
    assert_eq!(rows.len(), total + 4, "exactly one row per request");
    // Still serving.
    let r = h.post("/v1/chat/completions").json(&common::chat("gpt-4o-mini", "still up", false)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    h.stop().await;
}
