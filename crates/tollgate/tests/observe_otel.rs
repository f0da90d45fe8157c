//! OTLP export: a local OTLP/HTTP receiver gets one protobuf span per
//! request, with the GenAI attributes, cost and tags, parented to the
//! caller's `traceparent`.
//!
//! Its own test binary: it sets `TOLLGATE_OTLP_ENDPOINT` for the process.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns (and `common`) unwrap too

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use common::{chat, Harness};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

type Received = Arc<Mutex<Vec<(Option<String>, Span, Vec<(String, Any)>)>>>;

/// A minimal OTLP/HTTP collector: decodes each export, keeps every span with its resource attributes.
async fn collector() -> (String, Received) {
    let got: Received = Arc::default();
    let sink = got.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |headers: HeaderMap, body: Bytes| {
            let sink = sink.clone();
            async move {
                let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).map(String::from);
                let Ok(req) = ExportTraceServiceRequest::decode(body) else {
                    return StatusCode::BAD_REQUEST;
                };
                let mut g = sink.lock().unwrap();
                for rs in req.resource_spans {
                    let res: Vec<(String, Any)> = rs
                        .resource
                        .map(|r| r.attributes.into_iter().filter_map(|kv| Some((kv.key, kv.value?.value?))).collect())
                        .unwrap_or_default();
                    for ss in rs.scope_spans {
                        for s in ss.spans {
                            g.push((ct.clone(), s, res.clone()));
                        }
                    }
                }
                StatusCode::OK
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (format!("http://{addr}"), got)
}

fn attrs(s: &Span) -> HashMap<String, Any> {
    s.attributes.iter().filter_map(|kv| Some((kv.key.clone(), kv.value.clone()?.value?))).collect()
}

fn string(a: &HashMap<String, Any>, k: &str) -> String {
    match a.get(k) {
        Some(Any::StringValue(s)) => s.clone(),
        other => panic!("{k}: {other:?}"),
    }
}

fn int(a: &HashMap<String, Any>, k: &str) -> i64 {
    match a.get(k) {
        Some(Any::IntValue(n)) => *n,
        other => panic!("{k}: {other:?}"),
    }
}

#[tokio::test]
async fn one_span_per_request_reaches_the_otlp_endpoint() {
    let (endpoint, got) = collector().await;
    std::env::set_var("TOLLGATE_OTLP_ENDPOINT", &endpoint);
    let h = Harness::start().await;

    let traced = h
        .post("/v1/chat/completions")
        .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .header("x-tollgate-tags", "feature=summarize")
        .header("x-tollgate-prompt", "sum@v3")
        .json(&chat("gpt-4o-mini", "hello there", false))
        .send()
        .await
        .unwrap();
    assert_eq!(traced.status(), 200);
    let traced_id = traced.headers()["x-tollgate-request-id"].to_str().unwrap().to_string();
    let own = h
        .post("/v1/chat/completions")
        .header("x-tollgate-trace-id", "run-42")
        .json(&chat("gpt-4o-mini", "stream please", true))
        .send()
        .await
        .unwrap();
    let own_id = own.headers()["x-tollgate-request-id"].to_str().unwrap().to_string();
    let _ = own.text().await.unwrap();
    let failed = h.post("/v1/chat/completions").json(&chat("no-such-model", "hi", false)).send().await.unwrap();
    assert_eq!(failed.status(), 404);
    let failed_id = failed.headers()["x-tollgate-request-id"].to_str().unwrap().to_string();

    let mut spans = Vec::new();
    for _ in 0..200 {
        spans = got.lock().unwrap().clone();
        if spans.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(spans.len(), 3, "one span per request");
    let rows = h.wait_rows(3).await;
    let find = |id: &str| {
        spans
            .iter()
            .find(|(_, s, _)| string(&attrs(s), "tollgate.request_id") == id)
            .unwrap_or_else(|| panic!("no span for {id}"))
    };

    // Parented to the caller's trace, with GenAI and tollgate attributes.
    let (ct, s, resource) = find(&traced_id);
    assert_eq!(ct.as_deref(), Some("application/x-protobuf"));
    assert!(resource.iter().any(|(k, v)| k == "service.name" && *v == Any::StringValue("tollgate".into())));
    assert_eq!(hex::encode(&s.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(hex::encode(&s.parent_span_id), "00f067aa0ba902b7");
    assert_eq!(s.span_id.len(), 8);
    assert_ne!(s.span_id, vec![0; 8]);
    let row = rows.iter().find(|r| r.request_id == traced_id).unwrap();
    let a = attrs(s);
    assert_eq!(string(&a, "gen_ai.system"), "openai");
    assert_eq!(string(&a, "gen_ai.operation.name"), "chat");
    assert_eq!(string(&a, "gen_ai.request.model"), "gpt-4o-mini");
    assert_eq!(string(&a, "gen_ai.response.model"), *row.model.as_ref().unwrap());
    assert_eq!(int(&a, "gen_ai.usage.input_tokens"), row.usage.input_tokens() as i64);
    assert_eq!(int(&a, "gen_ai.usage.output_tokens"), row.usage.output_tokens() as i64);
    assert_eq!(int(&a, "gen_ai.usage.cache_read.input_tokens"), row.usage.cache_read as i64);
    assert!(row.usage.input_tokens() > 0 && row.usage.cache_read > 0);
    assert_eq!(string(&a, "tollgate.cost_usd"), row.cost.unwrap().to_string());
    assert_eq!(string(&a, "tollgate.tag.feature"), "summarize");
    assert_eq!(string(&a, "tollgate.tag.team"), "growth");
    assert_eq!(string(&a, "tollgate.prompt"), "sum@v3");
    assert_eq!(s.name, "chat gpt-4o-mini");
    assert_eq!(s.start_time_unix_nano, row.time_ms as u64 * 1_000_000);
    assert_eq!(s.end_time_unix_nano - s.start_time_unix_nano, row.latency_ms * 1_000_000);

    // A caller id that is not W3C: a new trace, the id kept as an attribute.
    let (_, s, _) = find(&own_id);
    assert_eq!(s.trace_id.len(), 16);
    assert_ne!(hex::encode(&s.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert!(s.parent_span_id.is_empty(), "a root span");
    assert_eq!(string(&attrs(s), "tollgate.trace_id"), "run-42");
    assert_eq!(string(&attrs(s), "tollgate.usage_source"), "provider");

    // Errors are spans too, with the public code.
    let (_, s, _) = find(&failed_id);
    assert_eq!(string(&attrs(s), "error.type"), "model_not_found");
    assert_eq!(int(&attrs(s), "http.response.status_code"), 404);
    assert_eq!(s.status.as_ref().map(|st| st.code), Some(2), "STATUS_CODE_ERROR");

    // The exporter counts a batch once the collector has answered.
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = h.http.get(format!("{}/metrics", h.base)).send().await.unwrap().text().await.unwrap();
        if metrics.contains("tollgate_otel_spans_exported_total 3") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(metrics.contains("tollgate_otel_spans_exported_total 3"), "{metrics}");
    assert!(metrics.contains("tollgate_otel_spans_dropped_total 0"), "{metrics}");
    h.stop().await;
}
