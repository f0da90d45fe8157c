//! OpenAI audio: `POST /v1/audio/transcriptions` and `/v1/audio/translations`
//! (multipart uploads) and `POST /v1/audio/speech` (JSON in, audio or SSE
//! out). The parameters, answers and usage formulas are documented at the
//! crate root.

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Uri};
use serde_json::{json, Value};

use crate::errors::{error_body, invalid_request, invalid_value, missing_param, openai_param_error, Family};
use crate::exchange::{admit, admit_form, gate, Admitted, App, Auth};
use crate::form::Form;
use crate::knobs::Fault;
use crate::params;
use crate::stream::{self, Inserted, Script, GARBAGE};
use crate::usage::{
    audio_duration_ms, billed_seconds, speech_output_tokens, text_tokens, transcription_audio_tokens,
    SPEECH_BYTES_PER_MS, SPEECH_MS_PER_CHAR,
};

/// What every transcription and translation "hears" (44 bytes: `text_tokens` 19).
pub const MOCK_TRANSCRIPT: &str = "The quick brown fox jumps over the lazy dog.";

/// The longest speech input OpenAI accepts, in characters.
const MAX_SPEECH_CHARS: usize = 4096;
/// The pause between chunks of a speech answer unless `chunk_delay_ms` is set.
const SPEECH_CHUNK_DELAY_MS: u64 = 5;
/// The mock's speech: 24 kHz, 16-bit, mono.
const SPEECH_SAMPLE_RATE: u32 = 24_000;
const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Task {
    Transcribe,
    Translate,
}

/// `POST /v1/audio/transcriptions`.
pub(crate) async fn transcriptions(app: App, request: Request) -> Response {
    upload(app, request, Task::Transcribe).await
}

/// `POST /v1/audio/translations`.
pub(crate) async fn translations(app: App, request: Request) -> Response {
    upload(app, request, Task::Translate).await
}

async fn upload(app: App, request: Request, task: Task) -> Response {
    let uri = request.uri().clone();
    let headers = request.headers().clone();
    if let Err(response) = gate(&app, Family::OpenAi, Auth::Bearer, &uri, &headers) {
        return response;
    }
    let mut form = match Form::read(request, &["file"]).await {
        Ok(form) => form,
        Err(message) => return invalid_request(Family::OpenAi, &message),
    };
    app.stats().record_files(form.files_summary());
    let file = form.files_named(&["file"]).next().map(|f| f.bytes.clone());
    let knob_text = form.knob_text();
    let fields = Value::Object(std::mem::take(&mut form.fields));
    let req = match admit_form(&app, Family::OpenAi, &headers, knob_text.as_bytes(), fields) {
        Ok(req) => req,
        Err(response) => return response,
    };
    match transcribe(&app, &req, task, file).await {
        Ok(response) | Err(response) => response,
    }
}

#[allow(clippy::result_large_err)]
async fn transcribe(app: &App, req: &Admitted, task: Task, file: Option<Bytes>) -> Result<Response, Response> {
    let json = &req.json;
    let model = params::required(json, "model")?;
    app.stats().record_model(model);
    let file = file.ok_or_else(|| missing_param("file"))?;
    if file.is_empty() {
        return Err(invalid_value("file", "<empty file>", "The audio file is empty."));
    }
    // gpt-4o transcription models bill tokens and answer only json (or text).
    let tokens = task == Task::Transcribe && model.starts_with("gpt-4o");
    let formats: &[&str] = if tokens { &["json", "text"] } else { &["json", "text", "srt", "verbose_json", "vtt"] };
    let format = params::one_of(json, "response_format", formats)?.unwrap_or("json");
    params::number(json, "temperature", 0.0, 1.0)?;
    params::string(json, "language")?;
    let prompt = params::string(json, "prompt")?;
    if let Some(response) = req.before_answer().await {
        return Ok(response);
    }

    let ms = audio_duration_ms(&file);
    let text = MOCK_TRANSCRIPT;
    let usage = if tokens {
        let audio = transcription_audio_tokens(ms);
        let prompt = prompt.map_or(0, text_tokens);
        let output = text_tokens(text);
        json!({
            "type": "tokens",
            "input_tokens": audio + prompt,
            "input_token_details": {"text_tokens": prompt, "audio_tokens": audio},
            "output_tokens": output,
            "total_tokens": audio + prompt + output,
        })
    } else {
        json!({"type": "duration", "seconds": billed_seconds(ms)})
    };
    // OpenAI reports no usage for translations.
    let usage = (task == Task::Transcribe && !req.no_usage()).then_some(usage);
    let mut body = match format {
        "text" => return Ok(req.text_answer(TEXT_PLAIN, format!("{text}\n"))),
        "srt" => {
            let cue = format!("1\n{} --> {}\n{text}\n\n", timestamp(0, ','), timestamp(ms, ','));
            return Ok(req.text_answer(TEXT_PLAIN, cue));
        }
        "vtt" => {
            let cue = format!("WEBVTT\n\n{} --> {}\n{text}\n\n", timestamp(0, '.'), timestamp(ms, '.'));
            return Ok(req.text_answer(TEXT_PLAIN, cue));
        }
        "verbose_json" => {
            let name = if task == Task::Transcribe { "transcribe" } else { "translate" };
            #[allow(clippy::cast_precision_loss)] // durations are far below 2^52 ms
            let seconds = ms as f64 / 1000.0;
            json!({"task": name, "language": "english", "duration": seconds, "text": text, "segments": []})
        }
        _ => json!({"text": text}),
    };
    if let Some(usage) = usage {
        body["usage"] = usage;
    }
    Ok(req.json_answer(&body))
}

/// `HH:MM:SS<sep>mmm` (SRT uses `,`, WebVTT `.`).
fn timestamp(ms: u64, sep: char) -> String {
    let (h, m, s) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60);
    format!("{h:02}:{m:02}:{s:02}{sep}{:03}", ms % 1000)
}

/// A speech `response_format` and its content type.
const SPEECH_FORMATS: [(&str, &str); 6] = [
    ("mp3", "audio/mpeg"),
    ("opus", "audio/opus"),
    ("aac", "audio/aac"),
    ("flac", "audio/flac"),
    ("wav", "audio/wav"),
    ("pcm", "audio/pcm"),
];

/// `POST /v1/audio/speech`.
pub(crate) async fn speech(app: App, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let req = match admit(&app, Family::OpenAi, Auth::Bearer, &uri, &headers, &body) {
        Ok(req) => req,
        Err(response) => return response,
    };
    match speak(&app, &req).await {
        Ok(response) | Err(response) => response,
    }
}

#[allow(clippy::result_large_err)]
async fn speak(app: &App, req: &Admitted) -> Result<Response, Response> {
    let json = &req.json;
    let model = params::required(json, "model")?;
    app.stats().record_model(model);
    let input = params::required(json, "input")?;
    let chars = input.chars().count();
    if chars > MAX_SPEECH_CHARS {
        return Err(openai_param_error(
            &format!(
                "Invalid 'input': string too long. Expected a string with maximum length {MAX_SPEECH_CHARS}, but got a string with length {chars} instead."
            ),
            "input",
            "string_above_max_length",
        ));
    }
    // A built-in voice's name, or a custom voice object.
    if matches!(json.get("voice"), None | Some(Value::Null)) || json.get("voice") == Some(&json!("")) {
        return Err(missing_param("voice"));
    }
    let names: Vec<&str> = SPEECH_FORMATS.iter().map(|(name, _)| *name).collect();
    let format = params::one_of(json, "response_format", &names)?.unwrap_or("mp3");
    params::number(json, "speed", 0.25, 4.0)?;
    params::string(json, "instructions")?;
    let sse = params::one_of(json, "stream_format", &["audio", "sse"])? == Some("sse");
    if sse && !model.starts_with("gpt-4o-mini-tts") {
        return Err(invalid_value(
            "stream_format",
            "sse",
            &format!("Streaming with stream_format 'sse' is not supported for model '{model}'."),
        ));
    }
    if let Some(response) = req.before_answer().await {
        return Ok(response);
    }

    let ms = SPEECH_MS_PER_CHAR * chars as u64;
    let audio = speech_audio(format, ms);
    let mut knobs = req.knobs.clone();
    if knobs.chunk_delay_ms == 0 {
        knobs.chunk_delay_ms = SPEECH_CHUNK_DELAY_MS;
    }
    let size = audio.len().div_ceil(knobs.chunks).max(1);
    let pieces = (0..audio.len()).step_by(size).map(|at| audio.slice(at..(at + size).min(audio.len())));
    let mut script = Script::default();
    let mut response = if sse {
        let b64 = base64::engine::general_purpose::STANDARD;
        script.deltas = pieces
            .map(|piece| stream::data(&json!({"type": "speech.audio.delta", "audio": b64.encode(&piece)})))
            .collect();
        let mut done = json!({"type": "speech.audio.done"});
        if !req.no_usage() {
            let (input, output) = (text_tokens(input), speech_output_tokens(ms));
            done["usage"] = json!({"input_tokens": input, "output_tokens": output, "total_tokens": input + output});
        }
        script.tail.push(stream::data(&done));
        script.into_response(&knobs, "text/event-stream", |inserted| match inserted {
            Inserted::Error => stream::data(&error_body(
                Family::OpenAi,
                500,
                "The server had an error while processing your request (mock stream_error).",
            )),
            Inserted::Malformed => Bytes::from_static(b"data: {\"type\":\"speech.audio.delta\",\"audio\":\n\n"),
        })
    } else {
        if knobs.has(Fault::Garbage) {
            return Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("text/html"))], GARBAGE).into_response());
        }
        let content_type = SPEECH_FORMATS.iter().find(|(name, _)| *name == format).map_or("audio/mpeg", |(_, ct)| *ct);
        script.deltas = pieces.collect();
        // Raw audio has no error event: `stream_error` just ends it half-way.
        if knobs.has(Fault::StreamError) {
            knobs.fault = Some(Fault::Truncate);
        }
        script.into_response(&knobs, content_type, |_| Bytes::from_static(b"mock: malformed audio"))
    };
    req.add_request_id(&mut response);
    Ok(response)
}

/// `ms` of speech in `format`: for `wav` a 44-byte RIFF/WAVE header (PCM,
/// 24 kHz, 16-bit, mono) and `48 × ms` bytes of silence; for `pcm` just the
/// silence; for the compressed formats `48 × ms` deterministic bytes (not
/// decodable audio).
fn speech_audio(format: &str, ms: u64) -> Bytes {
    let data_len = usize::try_from(SPEECH_BYTES_PER_MS * ms).unwrap_or(0);
    match format {
        "wav" => {
            let data = u32::try_from(data_len).unwrap_or(u32::MAX);
            let mut out = Vec::with_capacity(44 + data_len);
            out.extend_from_slice(b"RIFF");
            out.extend_from_slice(&(36 + data).to_le_bytes());
            out.extend_from_slice(b"WAVEfmt ");
            out.extend_from_slice(&16u32.to_le_bytes());
            out.extend_from_slice(&1u16.to_le_bytes()); // PCM
            out.extend_from_slice(&1u16.to_le_bytes()); // mono
            out.extend_from_slice(&SPEECH_SAMPLE_RATE.to_le_bytes());
            out.extend_from_slice(&(SPEECH_SAMPLE_RATE * 2).to_le_bytes()); // byte rate
            out.extend_from_slice(&2u16.to_le_bytes()); // block align
            out.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
            out.extend_from_slice(b"data");
            out.extend_from_slice(&data.to_le_bytes());
            out.resize(44 + data_len, 0);
            Bytes::from(out)
        }
        "pcm" => Bytes::from(vec![0u8; data_len]),
        other => {
            let tag = other.bytes().fold(0u8, |h, b| h.wrapping_mul(31).wrapping_add(b));
            Bytes::from((0..data_len).map(|i| (i % 251) as u8 ^ tag).collect::<Vec<u8>>())
        }
    }
}
