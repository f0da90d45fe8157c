//! The fault matrix: every provider kind × streaming and not × each way an
//! upstream call can fail, with and without a fallback. For each case the
//! client's status and error code, the attempts made (retries, fallbacks)
//! and the request's one ledger row are as docs/http-api.md ("Upstream
//! failures") documents; no 200 is sent for a call that failed before its
//! first byte.
//!
//! The failing provider is a second mock with a standing fault (`POST
//! /mock/fault`); the fallback (`gpt-4o-mini` on the harness's own mock) is
//! healthy. Every failing provider has `max_retries = 1` and a 700 ms timeout.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use serde_json::{json, Value};

const KINDS: [(&str, &str, &str); 5] = [
    // (kind, base URL path on the mock, upstream model)
    ("openai", "/v1", "gpt-4o-mini"),
    ("openai_compatible", "/v1", "gpt-4o-mini"),
    ("azure_openai", "", "gpt-4o-mini"),
    ("anthropic", "", "claude-haiku-4-5"),
    ("gemini", "", "gemini-2.0-flash"),
];

/// What the client and the ledger see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Outcome {
    /// The HTTP status the client got.
    status: u16,
    /// The error code: of the response, or (status 200) of the stream's error event.
    code: Option<&'static str>,
    /// Upstream attempts, retries and fallbacks included.
    attempts: u32,
}

const fn ok(attempts: u32) -> Outcome {
    Outcome { status: 200, code: None, attempts }
}

const fn failed(status: u16, code: &'static str, attempts: u32) -> Outcome {
    Outcome { status, code: Some(code), attempts }
}

/// The documented outcome of `fault` (retries = 1, so 2 attempts per target).
fn expected(fault: &str, stream: bool, fallback: bool) -> Outcome {
    // Failed before the client got a byte, retried on the same target, then
    // (with a fallback) served by the fallback's target.
    let retried = |status, code| if fallback { ok(3) } else { failed(status, code, 2) };
    match (fault, stream) {
        ("garbage", true) => retried(502, "upstream_error"),
        // A whole 200 body that cannot be read: not retried (the provider may
        // have billed it; the prompt is estimated).
        ("garbage", false) => failed(502, "upstream_error", 1),
        ("reset", _) => retried(502, "upstream_error"),
        // The stream had started: it ends with the family's error event.
        ("reset_mid", true) => failed(200, "upstream_error", 1),
        ("reset_mid", false) => failed(502, "upstream_error", 1),
        ("429", _) => retried(429, "upstream_rate_limited"),
        ("500", _) | ("503", _) => retried(502, "upstream_error"),
        // A timeout already waited the whole budget: no retry on that target.
        ("timeout", _) => {
            if fallback {
                ok(2)
            } else {
                failed(504, "upstream_timeout", 1)
            }
        }
        ("stall", true) => failed(200, "upstream_timeout", 1),
        // `stall` only stalls streams.
        ("stall", false) => ok(1),
        _ => unreachable!("{fault}"),
    }
}

const FAULTS: [&str; 8] = ["garbage", "reset", "reset_mid", "429", "500", "503", "timeout", "stall"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_provider_kind_fails_as_documented_before_and_after_the_first_byte() {
    let bad = common::start_mock().await;
    let mut extra = String::from("[routing]\ncircuit_failures = 100000\n\n");
    for (kind, path, model) in KINDS {
        extra += &format!(
            "[[providers]]\nname = \"bad-{kind}\"\nkind = \"{kind}\"\nbase_url = \"http://{bad}{path}\"\n\
             max_retries = 1\ntimeout_ms = 700\n\n\
             [[models]]\nname = \"plain-{kind}\"\ntargets = [{{ provider = \"bad-{kind}\", model = \"{model}\" }}]\n\n\
             [[models]]\nname = \"rescued-{kind}\"\ntargets = [{{ provider = \"bad-{kind}\", model = \"{model}\" }}]\n\
             fallbacks = [\"gpt-4o-mini\"]\n\n"
        );
    }
    let h = common::Harness::start_with(&extra, |c| c).await;
    let http = reqwest::Client::new();
    let mut checked = 0;
    let mut mismatches = Vec::new();
    for fault in FAULTS {
        let r = http.post(format!("http://{bad}/mock/fault")).json(&json!({ "fault": fault })).send().await.unwrap();
        assert!(r.status().is_success());
        for (kind, _, _) in KINDS {
            for stream in [false, true] {
                for fallback in [false, true] {
                    let model = format!("{}-{kind}", if fallback { "rescued" } else { "plain" });
                    let want = expected(fault, stream, fallback);
                    let got = run(&h, &model, stream).await;
                    let case = format!("{kind} {fault} stream={stream} fallback={fallback}");
                    if got.0 != want {
                        mismatches.push(format!("{case}: expected {want:?}, got {:?}", got.0));
                        continue;
                    }
                    // The one row agrees with what the client saw.
                    let row = h.row(&got.1);
                    let row_code = row.error_code.as_deref();
                    if (row.status, row_code, row.attempts) != (want.status, want.code, want.attempts)
                        || row.attempt_log.len() != want.attempts as usize
                        // A provider stream that answered 200 is `streamed`, even one
                        // that failed before its first event.
                        || row.streamed != (stream && (want.status == 200 || fault == "garbage"))
                    {
                        mismatches.push(format!("{case}: row {row:?}"));
                    }
                    if fallback && want.code.is_none() && want.attempts > 1 {
                        let last = row.attempt_log.last().unwrap();
                        assert_eq!(last.provider, "openai", "{case}: served by the fallback");
                        assert!(row.attempt_log[..row.attempt_log.len() - 1]
                            .iter()
                            .all(|a| a.provider == format!("bad-{kind}")));
                    }
                    checked += 1;
                }
            }
        }
    }
    eprintln!("fault matrix: {checked} cases as documented, {} not", mismatches.len());
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    let rows = h.rows();
    assert_eq!(rows.len(), FAULTS.len() * KINDS.len() * 4, "exactly one row per request");
    h.stop().await;
}

/// Sends one chat request; the outcome and the request id.
async fn run(h: &common::Harness, model: &str, stream: bool) -> (Outcome, String) {
    let r = h.post("/v1/chat/completions").json(&common::chat(model, "fault matrix", stream)).send().await.unwrap();
    let status = r.status().as_u16();
    let id = r.headers()["x-tollgate-request-id"].to_str().unwrap().to_string();
    let body = r.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
    let text = String::from_utf8_lossy(&body).to_string();
    let code = if status != 200 {
        let v: Value = serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{model}: {status} {text}: {e}"));
        Some(v["error"]["code"].as_str().unwrap_or("?").to_string())
    } else if stream {
        // An error event, in the OpenAI family's shape, ends a failed stream.
        text.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .find_map(|v| v["error"]["code"].as_str().map(String::from))
    } else {
        None
    };
    let row = h.wait_rows(0).await;
    drop(row);
    let attempts = h.row(&id).attempts;
    let code: Option<&'static str> = code.map(|c| &*Box::leak(c.into_boxed_str()));
    (Outcome { status, code, attempts }, id)
}
