//! OpenAI's media endpoints through the gateway, end to end against the mock
//! provider: images (generations; edits as a streamed multipart upload),
//! transcriptions and translations (streamed uploads, audio measured from its
//! WAVE header), speech (audio relayed as it arrives). Each is budget-checked
//! before the call, metered from the provider's answer, and leaves one row.
//!
//! Every expected figure is worked out by hand here from the mock's documented
//! formulas (`crates/tollgate-mock/src/lib.rs`, "Media endpoints") and the
//! catalog's hand-written prices (`crates/tollgate-pricing/catalog/prices.toml`,
//! OpenAI's published prices), never by calling tollgate's pricing:
//!
//! | model | price | in nanos |
//! |---|---|---|
//! | dall-e-3 hd 1024x1792 | $0.12 an image | 120_000_000 |
//! | dall-e-2 256x256 | $0.016 an image | 16_000_000 |
//! | gpt-image-1 | text in $5/M, image in $10/M, image out $40/M | 5_000 / 10_000 / 40_000 a token |
//! | whisper-1 | $0.006 a minute = $0.0001 a second | 100 a millisecond |
//! | gpt-4o-transcribe | text in $2.50/M, audio in $6/M, out $10/M | 2_500 / 6_000 / 10_000 a token |
//! | tts-1 | $15 per million characters | 15_000 a character |
//! | gpt-4o-mini-tts | text in $0.60/M, audio out $12/M | 600 / 12_000 a token |
//!
//! Mock: `tokens(s) = 8 + bytes(s)/4`; gpt-image output tokens by quality and
//! size (high 1024x1536: 6,240; low 1536x1024: 400), 194 image tokens per
//! input image; whisper bills `ceil(seconds)`; gpt-4o transcribe models
//! report `ceil(ms/100)` audio tokens and 19 output tokens (the fixed
//! transcript); speech lasts 60 ms a character, SSE usage `ceil(ms/50)`
//! audio tokens.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{header, Harness};
use serde_json::{json, Value};
use tollgate::ledger::UsageSource;
use tollgate_units::Money;

/// A WAVE file: 16 kHz, 16-bit, mono (32,000 bytes a second) of `data_bytes` of silence.
fn wav(data_bytes: u32) -> Vec<u8> {
    let mut v = b"RIFF".to_vec();
    v.extend_from_slice(&(36 + data_bytes).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&16_000u32.to_le_bytes());
    v.extend_from_slice(&32_000u32.to_le_bytes());
    v.extend_from_slice(&2u16.to_le_bytes());
    v.extend_from_slice(&16u16.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&data_bytes.to_le_bytes());
    v.resize(v.len() + data_bytes as usize, 0);
    v
}

/// A multipart/form-data body with boundary `tgb`: `(name, Some(filename), bytes)` for files.
fn form(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut v = Vec::new();
    for (name, file, data) in parts {
        v.extend_from_slice(format!("--tgb\r\nContent-Disposition: form-data; name=\"{name}\"").as_bytes());
        if let Some(f) = file {
            v.extend_from_slice(format!("; filename=\"{f}\"\r\nContent-Type: application/octet-stream").as_bytes());
        }
        v.extend_from_slice(b"\r\n\r\n");
        v.extend_from_slice(data);
        v.extend_from_slice(b"\r\n");
    }
    v.extend_from_slice(b"--tgb--\r\n");
    v
}

async fn upload(h: &Harness, path: &str, key: &str, body: Vec<u8>) -> reqwest::Response {
    h.http
        .post(format!("{}{path}", h.base))
        .bearer_auth(key)
        .header("content-type", "multipart/form-data; boundary=tgb")
        .body(body)
        .send()
        .await
        .unwrap()
}

fn nanos(n: i64) -> Option<Money> {
    Some(Money::from_nanos(n))
}

#[tokio::test]
async fn images_are_priced_per_image_at_their_size_and_quality_or_by_their_tokens() {
    let h = Harness::start().await;
    // dall-e-3, hd, 1024x1792, one image: $0.12.
    let r = h
        .post("/v1/images/generations")
        .json(&json!({"model": "dall-e-3", "prompt": "a toll booth at dawn", "size": "1024x1792", "quality": "hd"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = header(&r, "x-tollgate-request-id");
    assert_eq!(header(&r, "x-tollgate-cost-usd"), "0.120000000");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    let row = h.row(&id);
    assert_eq!(row.endpoint, "images.generations");
    assert_eq!((row.usage.images, row.usage_source), (1, UsageSource::Provider));
    assert_eq!(row.cost, nanos(120_000_000));

    // dall-e-2, 256x256, three images: 3 × $0.016 = $0.048.
    let r = h
        .post("/v1/images/generations")
        .json(&json!({"model": "dall-e-2", "prompt": "a toll booth", "size": "256x256", "n": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let row = h.row(&header(&r, "x-tollgate-request-id"));
    assert_eq!((row.usage.images, row.cost), (3, nanos(48_000_000)));

    // gpt-image-1, high, 1024x1536, two images, "a red fox in the snow" (21 bytes):
    //   text in  = 8 + 21/4 = 13 tokens × 5_000  =      65_000
    //   image out = 2 × 6_240 = 12_480 × 40_000  = 499_200_000
    //   total                                     = 499_265_000
    let r = h
        .post("/v1/images/generations")
        .json(&json!({"model": "gpt-image-1", "prompt": "a red fox in the snow", "size": "1024x1536", "quality": "high", "n": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let row = h.row(&header(&r, "x-tollgate-request-id"));
    assert_eq!((row.usage.input, row.usage.output_image, row.usage.images), (13, 12_480, 2));
    assert_eq!(row.cost, nanos(499_265_000));
    h.stop().await;
}

#[tokio::test]
async fn an_image_edit_is_streamed_upstream_and_priced_by_its_tokens() {
    let h = Harness::start().await;
    let png = vec![0x89u8; 3000];
    let body = form(&[
        ("model", None, b"gpt-image-1"),
        ("prompt", None, b"add a hat"),
        ("quality", None, b"low"),
        ("size", None, b"1536x1024"),
        ("n", None, b"2"),
        ("image[]", Some("a.png"), &png),
        ("image[]", Some("b.png"), &png),
    ]);
    let r = upload(&h, "/v1/images/edits", &h.key, body).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let row = h.row(&header(&r, "x-tollgate-request-id"));
    // text 8 + 9/4 = 10 × 5_000 = 50_000; images 2 × 194 = 388 × 10_000 = 3_880_000;
    // out 2 × 400 = 800 × 40_000 = 32_000_000; total 35_930_000.
    assert_eq!(row.endpoint, "images.edits");
    assert_eq!((row.usage.input, row.usage.input_image, row.usage.output_image), (10, 388, 800));
    assert_eq!(row.cost, nanos(35_930_000));
    // Both files reached the provider whole.
    let stats: Value = h.http.get(format!("{}/mock/stats", h.mock)).send().await.unwrap().json().await.unwrap();
    let files = stats["last_files"].as_array().unwrap();
    assert_eq!(files.len(), 2, "{stats}");
    assert!(files.iter().all(|f| f["bytes"] == 3000), "{stats}");
    h.stop().await;
}

#[tokio::test]
async fn transcriptions_are_priced_by_the_second_or_by_their_tokens() {
    let h = Harness::start().await;
    let audio = wav(80_000); // 2.5 s
                             // whisper-1: the mock bills ceil(2.5) = 3 s → 3_000 ms × 100 = 300_000.
    let body = form(&[("model", None, b"whisper-1"), ("file", Some("a.wav"), &audio)]);
    let r = upload(&h, "/v1/audio/transcriptions", &h.key, body).await;
    assert_eq!(r.status(), 200);
    let row = h.row(&header(&r, "x-tollgate-request-id"));
    assert_eq!(row.endpoint, "audio.transcriptions");
    assert_eq!((row.usage.audio_ms, row.usage_source), (3_000, UsageSource::Provider));
    assert_eq!(row.cost, nanos(300_000));

    // gpt-4o-transcribe: audio 25 × 6_000 = 150_000; output 19 × 10_000 = 190_000; total 340_000.
    let body = form(&[("file", Some("a.wav"), &audio), ("model", None, b"gpt-4o-transcribe")]);
    let r = upload(&h, "/v1/audio/transcriptions", &h.key, body).await;
    assert_eq!(r.status(), 200, "a file before the model field is read too");
    let row = h.row(&header(&r, "x-tollgate-request-id"));
    assert_eq!((row.usage.input_audio, row.usage.output), (25, 19));
    assert_eq!(row.cost, nanos(340_000));

    // A text answer carries no usage: the WAVE header's 2_500 ms, flagged estimated: 250_000.
    let body =
        form(&[("model", None, b"whisper-1"), ("response_format", None, b"text"), ("file", Some("a.wav"), &audio)]);
    let r = upload(&h, "/v1/audio/transcriptions", &h.key, body).await;
    assert_eq!(r.status(), 200);
    assert!(header(&r, "content-type").starts_with("text/plain"), "the provider's own content type");
    let id = header(&r, "x-tollgate-request-id");
    assert_eq!(r.text().await.unwrap().trim(), "The quick brown fox jumps over the lazy dog.");
    let row = h.row(&id);
    assert_eq!((row.usage.audio_ms, row.usage_source), (2_500, UsageSource::Estimated));
    assert_eq!(row.cost, nanos(250_000));

    // Translations answer only text: priced the same way from the header.
    let body = form(&[("model", None, b"whisper-1"), ("file", Some("a.wav"), &audio)]);
    let r = upload(&h, "/v1/audio/translations", &h.key, body).await;
    assert_eq!(r.status(), 200);
    let row = h.row(&header(&r, "x-tollgate-request-id"));
    assert_eq!((row.endpoint.as_str(), row.usage.audio_ms, row.cost), ("audio.translations", 2_500, nanos(250_000)));
    h.stop().await;
}

#[tokio::test]
async fn speech_is_relayed_as_it_arrives_and_priced_per_character() {
    let h = Harness::start().await;
    // tts-1, "Hello there" (11 characters): 11 × 15_000 = 165_000; 660 ms of WAV = 44 + 48 × 660 bytes.
    let r = h
        .post("/v1/audio/speech")
        .json(&json!({"model": "tts-1", "input": "Hello there", "voice": "alloy", "response_format": "wav"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "audio/wav");
    let id = header(&r, "x-tollgate-request-id");
    let audio = r.bytes().await.unwrap();
    assert_eq!(audio.len(), 44 + 48 * 660);
    assert_eq!(&audio[..4], b"RIFF");
    let row = h.row(&id);
    assert_eq!(row.endpoint, "audio.speech");
    assert_eq!((row.usage.characters, row.usage_source), (11, UsageSource::Provider));
    assert_eq!(row.cost, nanos(165_000));

    // gpt-4o-mini-tts as events: the final event's usage, 10 text tokens in, ceil(660/50) = 14 audio tokens out:
    //   10 × 600 + 14 × 12_000 = 6_000 + 168_000 = 174_000.
    let r = h
        .post("/v1/audio/speech")
        .json(&json!({"model": "gpt-4o-mini-tts", "input": "Hello there", "voice": "alloy", "stream_format": "sse"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = header(&r, "x-tollgate-request-id");
    let text = r.text().await.unwrap();
    assert!(text.contains("speech.audio.done"), "{text}");
    let row = h.row(&id);
    assert_eq!((row.usage.input, row.usage.output_audio, row.usage_source), (10, 14, UsageSource::Provider));
    assert_eq!(row.cost, nanos(174_000));
    h.stop().await;
}

#[tokio::test]
async fn a_budget_refuses_each_media_call_before_the_provider_when_it_cannot_afford_it() {
    let h = Harness::start().await;
    let key = h.add_key("media", Some("media-budget")).await;
    // $0.0001 = 100_000 nanos a day for the team.
    let r = h
        .http
        .post(format!("{}/admin/v1/budgets", h.base))
        .json(&json!({"scope": {"team": "media-budget"}, "limit_usd": "0.0001", "period": "day"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let before = h.mock_total().await;
    let refused = |r: &reqwest::Response| assert_eq!(r.status(), 402, "refused");

    // An image: $0.12 reserved.
    let r = h
        .http
        .post(format!("{}/v1/images/generations", h.base))
        .bearer_auth(&key)
        .json(&json!({"model": "dall-e-3", "prompt": "x", "size": "1024x1792", "quality": "hd"}))
        .send()
        .await
        .unwrap();
    refused(&r);
    // 2.5 s of whisper: 250_000 reserved.
    let body = form(&[("model", None, b"whisper-1"), ("file", Some("a.wav"), &wav(80_000))]);
    let r = upload(&h, "/v1/audio/transcriptions", &key, body).await;
    refused(&r);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "budget_exceeded");
    // 11 characters of tts-1: 165_000 reserved.
    let r = h
        .http
        .post(format!("{}/v1/audio/speech", h.base))
        .bearer_auth(&key)
        .json(&json!({"model": "tts-1", "input": "Hello there", "voice": "alloy"}))
        .send()
        .await
        .unwrap();
    refused(&r);
    assert_eq!(h.mock_total().await, before, "no media call reached the provider");
    // 6 characters of tts-1 fit: 90_000.
    let r = h
        .http
        .post(format!("{}/v1/audio/speech", h.base))
        .bearer_auth(&key)
        .json(&json!({"model": "tts-1", "input": "Hello!", "voice": "alloy"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = header(&r, "x-tollgate-request-id");
    let _ = r.bytes().await.unwrap();
    assert_eq!(h.row(&id).cost, nanos(90_000));
    let refused_rows = h.rows().into_iter().filter(|r| r.status == 402).count();
    assert_eq!(refused_rows, 3, "each refused call left one row");
    h.stop().await;
}

#[tokio::test]
async fn an_upload_past_the_limit_is_refused_with_413_and_leaves_one_row() {
    let h = Harness::start_with("[server]\nmax_upload_bytes = 50000\n", |c| c).await;
    let before = h.mock_total().await;
    // Declared too large: refused before anything is sent.
    let body = form(&[("model", None, b"whisper-1"), ("file", Some("a.wav"), &wav(80_000))]);
    let r = upload(&h, "/v1/audio/transcriptions", &h.key, body.clone()).await;
    assert_eq!(r.status(), 413);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "request_too_large");
    assert_eq!(h.mock_total().await, before);
    // Not declared (chunked): cut at the limit while it is relayed.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = body.chunks(4096).map(|c| Ok(c.to_vec())).collect();
    let r = h
        .http
        .post(format!("{}/v1/audio/transcriptions", h.base))
        .bearer_auth(&h.key)
        .header("content-type", "multipart/form-data; boundary=tgb")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let rows = h.wait_rows(2).await;
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.status == 413 && r.error_code.as_deref() == Some("request_too_large")));
    h.stop().await;
}

#[tokio::test]
async fn bad_media_requests_are_clear_errors_and_never_reach_the_provider() {
    let h = Harness::start().await;
    let before = h.mock_total().await;
    // A JSON body on an upload endpoint.
    let r = h.post("/v1/audio/transcriptions").json(&json!({"model": "whisper-1"})).send().await.unwrap();
    assert_eq!(r.status(), 400);
    // No file.
    let r = upload(&h, "/v1/audio/transcriptions", &h.key, form(&[("model", None, b"whisper-1")])).await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["param"], "file");
    // Too many images.
    let r = h
        .post("/v1/images/generations")
        .json(&json!({"model": "dall-e-2", "prompt": "x", "n": 11}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // A model whose provider has no images API.
    let r = h
        .post("/v1/images/generations")
        .json(&json!({"model": "claude-haiku-4-5", "prompt": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(h.mock_total().await, before, "none reached the provider");
    // No size or quality: the API's defaults (standard, 1024x1024) are what is priced: $0.04.
    let r = h.post("/v1/images/generations").json(&json!({"model": "dall-e-3", "prompt": "x"})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(h.row(&header(&r, "x-tollgate-request-id")).cost, nanos(40_000_000));
    h.stop().await;
}
