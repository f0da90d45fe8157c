//! Real-socket tests of `serve`: hanging faults stay per-request, streams are paced.

// Test helpers outside #[test] fns may unwrap too.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};
use tollgate_mock::{serve, MockConfig};

async fn start(config: MockConfig) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, config));
    addr
}

fn chat(content: &str, stream: bool) -> Value {
    json!({"model": "gpt-4o-mini", "stream": stream, "messages": [{"role": "user", "content": content}]})
}

#[tokio::test]
async fn timeout_fault_hangs_only_its_own_request() {
    let addr = start(MockConfig::default()).await;
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/v1/chat/completions");
    let hanging = tokio::spawn(client.post(&url).json(&chat("[mock fault=timeout]", false)).send());

    let started = Instant::now();
    let ok = client.post(&url).json(&chat("hello", false)).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    let body: Value = ok.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert!(started.elapsed() < Duration::from_secs(2));

    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!hanging.is_finished());
    hanging.abort();
    let stats: Value = client.get(format!("http://{addr}/mock/stats")).send().await.unwrap().json().await.unwrap();
    assert_eq!(stats["paths"]["/v1/chat/completions"], 2);
}

#[tokio::test]
async fn chunk_delay_paces_the_stream_and_stall_goes_silent_half_way() {
    let addr = start(MockConfig { chunk_delay_ms: 40, ..MockConfig::default() }).await;
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/v1/chat/completions");

    // 1 role + 2 deltas + 1 finish + [DONE] = 5 events, 4 gaps of 40 ms.
    let started = Instant::now();
    let mut stream = client.post(&url).json(&chat("[mock chunks=2]", true)).send().await.unwrap().bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    let first_at = started.elapsed();
    assert!(first.starts_with(b"data: {"));
    let mut all = first.to_vec();
    while let Some(chunk) = stream.next().await {
        all.extend_from_slice(&chunk.unwrap());
    }
    let total = started.elapsed();
    assert!(total >= Duration::from_millis(160), "{total:?}");
    assert!(total - first_at >= Duration::from_millis(150), "first {first_at:?}, total {total:?}");
    assert!(String::from_utf8(all).unwrap().ends_with("data: [DONE]\n\n"));

    // stall: role + 2 of 4 deltas, then nothing.
    let mut stream = client
        .post(&url)
        .json(&chat("[mock fault=stall chunks=4 chunk_delay_ms=0]", true))
        .send()
        .await
        .unwrap()
        .bytes_stream();
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_millis(300), stream.next()).await {
            Ok(Some(chunk)) => seen.extend_from_slice(&chunk.unwrap()),
            Ok(None) => panic!("stalled stream ended"),
            Err(_) => break,
        }
    }
    let text = String::from_utf8(seen).unwrap();
    assert_eq!(text.matches("data: ").count(), 3, "{text}");
}

#[tokio::test]
async fn configured_latency_delays_every_answer() {
    let addr = start(MockConfig { latency_ms: 80, ..MockConfig::default() }).await;
    let client = reqwest::Client::new();
    let started = Instant::now();
    let response = client
        .post(format!("http://{addr}/v1/messages"))
        .json(&json!({"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(80));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["usage"]["output_tokens"], 5);
}

#[tokio::test]
async fn speech_audio_arrives_in_paced_chunks_over_the_wire() {
    let addr = start(MockConfig::default()).await;
    let client = reqwest::Client::new();
    let started = Instant::now();
    let response = client
        .post(format!("http://{addr}/v1/audio/speech"))
        .json(&json!({"model": "tts-1", "input": "0123456789", "voice": "alloy", "response_format": "wav"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "audio/wav");
    let mut stream = response.bytes_stream();
    let (mut reads, mut total) = (0, 0);
    while let Some(chunk) = stream.next().await {
        reads += 1;
        total += chunk.unwrap().len();
    }
    // 4 chunks 5 ms apart (the default pause): several reads, and at least 15 ms.
    assert_eq!(total, 44 + 28_800);
    assert!(reads >= 3, "{reads} reads");
    assert!(started.elapsed() >= Duration::from_millis(15), "{:?}", started.elapsed());
}
