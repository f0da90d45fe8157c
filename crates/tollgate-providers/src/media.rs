//! OpenAI's media endpoints: image generation and editing, audio
//! transcription and translation, and text to speech.
//!
//! What the gateway reads of a request to bound its cost before the call
//! ([`MediaRequest`]: images asked for and their size and quality, input
//! images, the uploaded audio's length, the characters to speak), and the
//! units the provider bills in its answer:
//!
//! - images: `data` holds one item per image made (`images`); gpt-image
//!   models also report tokens (`usage.input_tokens_details.text_tokens` /
//!   `image_tokens`, `usage.output_tokens` — all image tokens);
//! - transcriptions: `usage` is `{"type":"duration","seconds":S}` (whisper,
//!   billed by the second) or `{"type":"tokens", …}` (gpt-4o transcribe
//!   models, billed by text and audio tokens); `verbose_json` also gives
//!   `duration`; text formats (`text`, `srt`, `vtt`) carry no usage;
//! - speech: the answer is audio and carries no usage; tts models are billed
//!   by the input's characters, which the request tells exactly. With
//!   `stream_format: "sse"` the final `speech.audio.done` event has token usage.
//!
//! Multipart bodies (edits, transcriptions, translations) are not parsed
//! here: the gateway streams them and hands over the small fields it read
//! ([`info_from_fields`]) and the first bytes of the audio ([`wav_duration_ms`]).

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::inspect::{invalid, not_json, object_body};
use crate::{AdapterError, RequestInfo, TranslatedBody, Usage};

/// One of OpenAI's media endpoints, as the client called it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaEndpoint {
    /// `POST /v1/images/generations` (JSON)
    ImageGenerations,
    /// `POST /v1/images/edits` (multipart)
    ImageEdits,
    /// `POST /v1/audio/transcriptions` (multipart)
    Transcriptions,
    /// `POST /v1/audio/translations` (multipart)
    Translations,
    /// `POST /v1/audio/speech` (JSON in, audio out)
    Speech,
}

impl MediaEndpoint {
    /// The path under the provider's `/v1` (or an Azure deployment).
    pub fn path(self) -> &'static str {
        match self {
            MediaEndpoint::ImageGenerations => "images/generations",
            MediaEndpoint::ImageEdits => "images/edits",
            MediaEndpoint::Transcriptions => "audio/transcriptions",
            MediaEndpoint::Translations => "audio/translations",
            MediaEndpoint::Speech => "audio/speech",
        }
    }

    /// The body is `multipart/form-data` (a file upload).
    pub fn multipart(self) -> bool {
        matches!(self, MediaEndpoint::ImageEdits | MediaEndpoint::Transcriptions | MediaEndpoint::Translations)
    }

    /// The endpoint makes images.
    pub fn images(self) -> bool {
        matches!(self, MediaEndpoint::ImageGenerations | MediaEndpoint::ImageEdits)
    }

    /// The endpoint reads audio.
    pub fn reads_audio(self) -> bool {
        matches!(self, MediaEndpoint::Transcriptions | MediaEndpoint::Translations)
    }
}

/// What a media request asks for, as far as its cost depends on it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaRequest {
    /// The endpoint called (always set by the readers of this module).
    pub endpoint: Option<MediaEndpoint>,
    /// Images asked for (`n`, 1 when absent).
    pub n: u64,
    /// `size` as sent (`1024x1792`, `auto`…).
    pub size: Option<String>,
    /// `quality` as sent (`standard`, `hd`, `low`, `medium`, `high`, `auto`).
    pub quality: Option<String>,
    /// Image file parts of an edit (`image`, `image[]`; the mask excluded).
    pub input_images: u64,
    /// Characters of the text to speak (Unicode scalar values, as billed).
    pub characters: u64,
    /// The uploaded audio's length, when its header tells it exactly (WAV).
    pub audio_ms: Option<u64>,
    /// The most bytes the uploaded audio can have (the request's declared
    /// length, else the gateway's body limit).
    pub audio_bytes_at_most: Option<u64>,
    /// `response_format` as sent.
    pub response_format: Option<String>,
    /// Speech asked for `stream_format: "sse"` (events with token usage).
    pub speech_events: bool,
}

/// The largest `n` the images API accepts.
pub const MAX_IMAGES: u64 = 10;

fn string(raw: Option<&RawValue>, param: &str) -> Result<Option<String>, AdapterError> {
    match raw {
        None => Ok(None),
        Some(r) if r.get() == "null" => Ok(None),
        Some(r) => serde_json::from_str::<String>(r.get()).map(Some).map_err(|_| invalid(param, "a string")),
    }
}

fn count_of_images(n: Option<u64>) -> Result<u64, AdapterError> {
    match n {
        None => Ok(1),
        Some(n) if (1..=MAX_IMAGES).contains(&n) => Ok(n),
        Some(_) => Err(invalid("n", "an integer from 1 to 10")),
    }
}

/// Reads a JSON media body (image generations, speech).
pub(crate) fn inspect_json(endpoint: MediaEndpoint, body: &[u8]) -> Result<RequestInfo, AdapterError> {
    #[derive(Deserialize)]
    struct Top<'a> {
        #[serde(borrow)]
        model: Option<&'a RawValue>,
        #[serde(borrow)]
        prompt: Option<&'a RawValue>,
        #[serde(borrow)]
        input: Option<&'a RawValue>,
        #[serde(borrow)]
        instructions: Option<&'a RawValue>,
        #[serde(borrow)]
        n: Option<&'a RawValue>,
        #[serde(borrow)]
        size: Option<&'a RawValue>,
        #[serde(borrow)]
        quality: Option<&'a RawValue>,
        #[serde(borrow)]
        response_format: Option<&'a RawValue>,
        #[serde(borrow)]
        stream_format: Option<&'a RawValue>,
        #[serde(borrow)]
        stream: Option<&'a RawValue>,
        #[serde(borrow)]
        user: Option<&'a RawValue>,
    }
    let text = object_body(body)?;
    let top: Top<'_> = serde_json::from_str(text).map_err(|e| not_json(&e))?;
    if top.stream.is_some_and(|s| s.get() == "true") {
        return Err(AdapterError::Unsupported(format!(
            "streaming `{}` answers is not supported by the gateway; send the request without `stream`",
            endpoint.path()
        )));
    }
    let mut media = MediaRequest {
        endpoint: Some(endpoint),
        response_format: string(top.response_format, "response_format")?,
        ..MediaRequest::default()
    };
    let mut prompt_text = String::new();
    match endpoint {
        MediaEndpoint::Speech => {
            let input = string(top.input, "input")?.ok_or_else(|| invalid("input", "a string"))?;
            media.characters = input.chars().count() as u64;
            prompt_text.push_str(&input);
            if let Some(i) = string(top.instructions, "instructions")? {
                prompt_text.push('\n');
                prompt_text.push_str(&i);
            }
            media.speech_events = string(top.stream_format, "stream_format")?.as_deref() == Some("sse");
        }
        _ => {
            let prompt = string(top.prompt, "prompt")?.ok_or_else(|| invalid("prompt", "a string"))?;
            prompt_text.push_str(&prompt);
            let n = match top.n {
                None => None,
                Some(r) if r.get() == "null" => None,
                Some(r) => {
                    Some(serde_json::from_str::<u64>(r.get()).map_err(|_| invalid("n", "an integer from 1 to 10"))?)
                }
            };
            media.n = count_of_images(n)?;
            media.size = string(top.size, "size")?;
            media.quality = string(top.quality, "quality")?;
        }
    }
    Ok(RequestInfo {
        model: string(top.model, "model")?,
        user: string(top.user, "user")?,
        prompt_text,
        media: Some(media),
        ..RequestInfo::default()
    })
}

/// A file part of a multipart body, as its headers describe it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilePart {
    pub name: String,
    pub file_name: Option<String>,
    pub content_type: Option<String>,
}

/// The request info of a multipart media body, from its text fields (in
/// order) and the file parts seen. `audio_ms` and `audio_bytes_at_most` are
/// the gateway's to fill (it reads the audio's first bytes).
pub fn info_from_fields(
    endpoint: MediaEndpoint,
    fields: &[(String, String)],
    files: &[FilePart],
) -> Result<RequestInfo, AdapterError> {
    let field = |name: &str| fields.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let mut media =
        MediaRequest { endpoint: Some(endpoint), response_format: field("response_format"), ..MediaRequest::default() };
    let mut prompt_text = field("prompt").unwrap_or_default();
    match endpoint {
        MediaEndpoint::ImageEdits => {
            if prompt_text.is_empty() {
                return Err(invalid("prompt", "a string"));
            }
            media.input_images = files.iter().filter(|f| f.name == "image" || f.name == "image[]").count() as u64;
            if media.input_images == 0 {
                return Err(invalid("image", "one or more image files"));
            }
            let n = match field("n") {
                None => None,
                Some(s) => Some(s.trim().parse::<u64>().map_err(|_| invalid("n", "an integer from 1 to 10"))?),
            };
            media.n = count_of_images(n)?;
            media.size = field("size");
            media.quality = field("quality");
        }
        MediaEndpoint::Transcriptions | MediaEndpoint::Translations => {
            if !files.iter().any(|f| f.name == "file") {
                return Err(invalid("file", "an audio file"));
            }
            if field("stream").as_deref() == Some("true") {
                return Err(AdapterError::Unsupported(
                    "streaming transcriptions is not supported by the gateway; send the request without `stream`"
                        .into(),
                ));
            }
        }
        MediaEndpoint::ImageGenerations | MediaEndpoint::Speech => {
            return Err(AdapterError::InvalidRequest {
                message: format!("`{}` takes a JSON body, not multipart/form-data", endpoint.path()),
                param: None,
            })
        }
    }
    if prompt_text.len() > 1 << 20 {
        prompt_text.truncate(1 << 20);
    }
    Ok(RequestInfo {
        model: field("model"),
        user: field("user"),
        prompt_text,
        media: Some(media),
        ..RequestInfo::default()
    })
}

/// What the first bytes of an uploaded audio file tell about its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioProbe {
    /// A RIFF/WAVE file: its length, exactly (data bytes / byte rate).
    Wav { ms: u64 },
    /// A WAVE file whose header is not complete in the bytes given yet.
    NeedMore,
    /// Not a WAVE file, or one whose header does not tell its length
    /// (streamed WAVE with an unknown data size).
    Unknown,
}

/// Bytes of a WAVE file's header read at most to find its data chunk.
pub const WAV_HEADER_LIMIT: usize = 64 * 1024;

/// Walks a WAVE file's chunks to its `fmt ` (byte rate) and `data` (size)
/// chunks. Length in milliseconds, rounded up.
pub fn wav_duration_ms(head: &[u8]) -> AudioProbe {
    if head.len() < 12 {
        return if b"RIFF".starts_with(&head[..head.len().min(4)]) {
            AudioProbe::NeedMore
        } else {
            AudioProbe::Unknown
        };
    }
    if &head[0..4] != b"RIFF" || &head[8..12] != b"WAVE" {
        return AudioProbe::Unknown;
    }
    let u32_at = |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
    let mut at = 12usize;
    let mut byte_rate: Option<u32> = None;
    loop {
        if at + 8 > head.len() {
            return if head.len() >= WAV_HEADER_LIMIT { AudioProbe::Unknown } else { AudioProbe::NeedMore };
        }
        let id = &head[at..at + 4];
        let size = u32_at(at + 4);
        let body = at + 8;
        match id {
            b"fmt " => {
                if body + 12 > head.len() {
                    return AudioProbe::NeedMore;
                }
                byte_rate = Some(u32_at(body + 8));
            }
            b"data" => {
                return match byte_rate {
                    Some(rate) if rate > 0 && size != u32::MAX && size != 0 => {
                        let ms = (u64::from(size) * 1000).div_ceil(u64::from(rate));
                        AudioProbe::Wav { ms }
                    }
                    _ => AudioProbe::Unknown,
                };
            }
            _ => {}
        }
        // Chunks are padded to an even size.
        at = body.saturating_add(size as usize).saturating_add(size as usize & 1);
        if at >= WAV_HEADER_LIMIT {
            return AudioProbe::Unknown;
        }
    }
}

#[derive(Deserialize)]
struct ImageUsage {
    #[serde(default)]
    input_tokens: u64,
    input_tokens_details: Option<ImageInputDetails>,
    #[serde(default)]
    output_tokens: u64,
}

#[derive(Deserialize)]
struct ImageInputDetails {
    text_tokens: Option<u64>,
    image_tokens: Option<u64>,
}

/// An images answer: one `data` item per image made, and token usage from
/// the models that report it (all output tokens are image tokens).
pub(crate) fn translate_images(body: &[u8]) -> Result<TranslatedBody, AdapterError> {
    #[derive(Deserialize)]
    struct Answer {
        data: Vec<serde::de::IgnoredAny>,
        usage: Option<ImageUsage>,
    }
    let a: Answer = serde_json::from_slice(body).map_err(|e| AdapterError::MalformedUpstream(e.to_string()))?;
    let mut usage = Usage { images: a.data.len() as u64, ..Usage::default() };
    if let Some(u) = a.usage {
        let (text, image) = match u.input_tokens_details {
            Some(d) => {
                let image = d.image_tokens.unwrap_or(0);
                (d.text_tokens.unwrap_or_else(|| u.input_tokens.saturating_sub(image)), image)
            }
            None => (u.input_tokens, 0),
        };
        usage.input = text;
        usage.input_image = image;
        usage.output_image = u.output_tokens;
    }
    Ok(TranslatedBody {
        body: Bytes::copy_from_slice(body),
        usage: Some(usage),
        model: None,
        service_tier: None,
        output_text: String::new(),
        provider_cost: None,
    })
}

/// Transcription and translation usage, either kind.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum AudioUsage {
    Duration {
        seconds: serde_json::Number,
    },
    Tokens {
        #[serde(default)]
        input_tokens: u64,
        input_token_details: Option<AudioInputDetails>,
        #[serde(default)]
        output_tokens: u64,
    },
}

#[derive(Deserialize)]
struct AudioInputDetails {
    text_tokens: Option<u64>,
    audio_tokens: Option<u64>,
}

/// Seconds as the provider wrote them (`3`, `2.5`) → milliseconds, rounded
/// to the nearest. Read from the number's decimal text: no float rounding.
fn seconds_to_ms(n: &serde_json::Number) -> Option<u64> {
    if let Some(s) = n.as_u64() {
        return s.checked_mul(1000);
    }
    let text = n.to_string();
    let (whole, frac) = text.split_once('.')?;
    if whole.starts_with('-') || frac.contains(['e', 'E']) {
        return None;
    }
    let whole: u64 = whole.parse().ok()?;
    let mut digits = frac.bytes().map(|b| u64::from(b - b'0'));
    let ms = digits.by_ref().take(3).chain(std::iter::repeat(0)).take(3).fold(0, |a, d| a * 10 + d);
    let round_up = digits.next().is_some_and(|d| d >= 5);
    whole.checked_mul(1000)?.checked_add(ms + u64::from(round_up))
}

/// A transcription or translation answer: JSON (`json`, `verbose_json`)
/// with `usage` or `duration`, or text (`text`, `srt`, `vtt`) with neither.
pub(crate) fn translate_audio(body: &[u8]) -> Result<TranslatedBody, AdapterError> {
    #[derive(Deserialize)]
    struct Answer {
        text: Option<String>,
        duration: Option<serde_json::Number>,
        usage: Option<AudioUsage>,
    }
    let looks_json = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let parsed: Option<Answer> = if looks_json { serde_json::from_slice(body).ok() } else { None };
    let (usage, text) = match parsed {
        Some(a) => {
            let usage = match a.usage {
                Some(AudioUsage::Duration { seconds }) => {
                    let ms = seconds_to_ms(&seconds).ok_or_else(|| {
                        AdapterError::MalformedUpstream(format!("usage.seconds {seconds} is not a duration"))
                    })?;
                    Some(Usage { audio_ms: ms, ..Usage::default() })
                }
                Some(AudioUsage::Tokens { input_tokens, input_token_details, output_tokens }) => {
                    let (text, audio) = match input_token_details {
                        Some(d) => {
                            let audio = d.audio_tokens.unwrap_or(0);
                            (d.text_tokens.unwrap_or_else(|| input_tokens.saturating_sub(audio)), audio)
                        }
                        None => (0, input_tokens),
                    };
                    Some(Usage { input: text, input_audio: audio, output: output_tokens, ..Usage::default() })
                }
                None => {
                    a.duration.as_ref().and_then(seconds_to_ms).map(|ms| Usage { audio_ms: ms, ..Usage::default() })
                }
            };
            (usage, a.text.unwrap_or_default())
        }
        None if looks_json => {
            return Err(AdapterError::MalformedUpstream("a transcription answer that is not JSON".into()))
        }
        None => (None, String::from_utf8_lossy(body).into_owned()),
    };
    let output_text = if usage.is_none() { text } else { String::new() };
    Ok(TranslatedBody {
        body: Bytes::copy_from_slice(body),
        usage,
        model: None,
        service_tier: None,
        output_text,
        provider_cost: None,
    })
}

/// Reads a speech answer sent as events (`stream_format: "sse"`): the
/// `speech.audio.done` event's token usage (audio tokens out).
#[derive(Debug, Default)]
pub struct SpeechEvents {
    parser: crate::sse::Parser,
    events: Vec<crate::sse::Event>,
    /// The usage of the final event, once seen.
    pub usage: Option<Usage>,
}

impl SpeechEvents {
    pub fn push(&mut self, chunk: &[u8]) {
        #[derive(Deserialize)]
        struct Event {
            #[serde(rename = "type")]
            kind: String,
            usage: Option<SpeechUsage>,
        }
        #[derive(Deserialize)]
        struct SpeechUsage {
            #[serde(default)]
            input_tokens: u64,
            #[serde(default)]
            output_tokens: u64,
        }
        self.parser.push(chunk, &mut self.events);
        for ev in self.events.drain(..) {
            // Only the small final event is parsed; audio deltas are skipped by a prefix check.
            if !ev.data.contains("speech.audio.done") {
                continue;
            }
            if let Ok(Event { kind, usage: Some(u) }) = serde_json::from_str::<Event>(&ev.data) {
                if kind == "speech.audio.done" {
                    self.usage =
                        Some(Usage { input: u.input_tokens, output_audio: u.output_tokens, ..Usage::default() });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(data_bytes: u32, byte_rate: u32, extra_chunk: bool) -> Vec<u8> {
        let mut v = b"RIFF\0\0\0\0WAVE".to_vec();
        v.extend_from_slice(b"fmt ");
        v.extend_from_slice(&16u32.to_le_bytes());
        v.extend_from_slice(&1u16.to_le_bytes()); // PCM
        v.extend_from_slice(&1u16.to_le_bytes()); // mono
        v.extend_from_slice(&(byte_rate / 2).to_le_bytes()); // sample rate
        v.extend_from_slice(&byte_rate.to_le_bytes());
        v.extend_from_slice(&2u16.to_le_bytes());
        v.extend_from_slice(&16u16.to_le_bytes());
        if extra_chunk {
            v.extend_from_slice(b"LIST");
            v.extend_from_slice(&3u32.to_le_bytes());
            v.extend_from_slice(b"abc\0"); // odd size, one pad byte
        }
        v.extend_from_slice(b"data");
        v.extend_from_slice(&data_bytes.to_le_bytes());
        v
    }

    #[test]
    fn a_wav_header_tells_the_length_exactly() {
        // 16 kHz 16-bit mono: 32,000 bytes a second; 80,000 bytes = 2.5 s.
        assert_eq!(wav_duration_ms(&wav(80_000, 32_000, false)), AudioProbe::Wav { ms: 2_500 });
        // A chunk before `data` (odd size, padded) is walked over.
        assert_eq!(wav_duration_ms(&wav(80_000, 32_000, true)), AudioProbe::Wav { ms: 2_500 });
        // Rounded up to the millisecond: 33 bytes at 32,000 B/s = 1.03 ms → 2.
        assert_eq!(wav_duration_ms(&wav(33, 32_000, false)), AudioProbe::Wav { ms: 2 });
        let full = wav(80_000, 32_000, false);
        assert_eq!(wav_duration_ms(&full[..20]), AudioProbe::NeedMore);
        assert_eq!(wav_duration_ms(&full[..3]), AudioProbe::NeedMore);
        assert_eq!(wav_duration_ms(b"ID3\x04\0\0\0\0\0\0\0\0\0"), AudioProbe::Unknown, "an mp3");
        assert_eq!(wav_duration_ms(&wav(u32::MAX, 32_000, false)), AudioProbe::Unknown, "streamed WAVE");
    }

    #[test]
    fn image_answers_count_images_and_tokens() {
        let dalle = br#"{"created":1,"data":[{"url":"https://x/1.png"},{"url":"https://x/2.png"}]}"#;
        let t = translate_images(dalle).unwrap();
        assert_eq!(t.usage, Some(Usage { images: 2, ..Usage::default() }));
        let gpt = br#"{"created":1,"data":[{"b64_json":"AA=="}],"usage":{"input_tokens":373,"input_tokens_details":{"text_tokens":50,"image_tokens":323},"output_tokens":4160,"total_tokens":4533}}"#;
        let u = translate_images(gpt).unwrap().usage.unwrap();
        assert_eq!((u.input, u.input_image, u.output_image, u.images), (50, 323, 4160, 1));
        assert!(translate_images(b"{\"data\":3}").is_err());
    }

    #[test]
    fn transcription_answers_give_seconds_or_tokens() {
        let whisper = br#"{"text":"hi","usage":{"type":"duration","seconds":3}}"#;
        assert_eq!(translate_audio(whisper).unwrap().usage.unwrap().audio_ms, 3_000);
        let frac = br#"{"text":"hi","usage":{"type":"duration","seconds":2.5}}"#;
        assert_eq!(translate_audio(frac).unwrap().usage.unwrap().audio_ms, 2_500);
        let tokens = br#"{"text":"hi","usage":{"type":"tokens","input_tokens":143,"input_token_details":{"text_tokens":18,"audio_tokens":125},"output_tokens":40,"total_tokens":183}}"#;
        let u = translate_audio(tokens).unwrap().usage.unwrap();
        assert_eq!((u.input, u.input_audio, u.output, u.audio_ms), (18, 125, 40, 0));
        let verbose = br#"{"task":"transcribe","duration":12.3456,"text":"hi","segments":[]}"#;
        assert_eq!(translate_audio(verbose).unwrap().usage.unwrap().audio_ms, 12_346);
        let text = translate_audio(b"hello there\n").unwrap();
        assert_eq!((text.usage, text.output_text.as_str()), (None, "hello there\n"));
        assert!(translate_audio(b"{not json").is_err());
    }

    #[test]
    fn seconds_are_read_without_float_rounding() {
        let n = |s: &str| serde_json::from_str::<serde_json::Number>(s).unwrap();
        assert_eq!(seconds_to_ms(&n("0.1")), Some(100));
        assert_eq!(seconds_to_ms(&n("1.0005")), Some(1_001));
        assert_eq!(seconds_to_ms(&n("1.0004")), Some(1_000));
        assert_eq!(seconds_to_ms(&n("-1.5")), None);
    }

    #[test]
    fn json_media_bodies_are_read_and_checked() {
        let i = inspect_json(
            MediaEndpoint::ImageGenerations,
            br#"{"model":"dall-e-3","prompt":"a cat","n":2,"size":"1024x1792","quality":"hd","user":"u1"}"#,
        )
        .unwrap();
        let m = i.media.clone().unwrap();
        assert_eq!(
            (i.model.as_deref(), i.user.as_deref(), i.prompt_text.as_str()),
            (Some("dall-e-3"), Some("u1"), "a cat")
        );
        assert_eq!((m.n, m.size.as_deref(), m.quality.as_deref()), (2, Some("1024x1792"), Some("hd")));
        assert!(inspect_json(MediaEndpoint::ImageGenerations, br#"{"model":"dall-e-3","prompt":"x","n":11}"#).is_err());
        assert!(inspect_json(MediaEndpoint::ImageGenerations, br#"{"model":"dall-e-3"}"#).is_err());
        assert!(inspect_json(
            MediaEndpoint::ImageGenerations,
            br#"{"model":"gpt-image-1","prompt":"x","stream":true}"#
        )
        .is_err());
        let s = inspect_json(MediaEndpoint::Speech, r#"{"model":"tts-1","input":"héllo","voice":"alloy"}"#.as_bytes())
            .unwrap();
        assert_eq!(s.media.unwrap().characters, 5, "characters, not bytes");
        assert!(inspect_json(MediaEndpoint::Speech, br#"{"model":"tts-1","voice":"alloy"}"#).is_err());
    }

    #[test]
    fn multipart_fields_are_read_and_checked() {
        let f = |k: &str, v: &str| (k.to_string(), v.to_string());
        let file = |name: &str| FilePart { name: name.into(), ..FilePart::default() };
        let i = info_from_fields(
            MediaEndpoint::ImageEdits,
            &[f("model", "gpt-image-1"), f("prompt", "add a hat"), f("n", "2")],
            &[file("image[]"), file("image[]"), file("mask")],
        )
        .unwrap();
        let m = i.media.unwrap();
        assert_eq!((m.input_images, m.n), (2, 2));
        assert!(info_from_fields(MediaEndpoint::ImageEdits, &[f("prompt", "x")], &[file("mask")]).is_err());
        let t = info_from_fields(MediaEndpoint::Transcriptions, &[f("model", "whisper-1")], &[file("file")]).unwrap();
        assert_eq!(t.model.as_deref(), Some("whisper-1"));
        assert!(info_from_fields(MediaEndpoint::Transcriptions, &[f("model", "whisper-1")], &[]).is_err());
    }

    #[test]
    fn speech_events_give_the_final_usage() {
        let mut s = SpeechEvents::default();
        s.push(b"data: {\"type\":\"speech.audio.delta\",\"audio\":\"AAAA\"}\n\ndata: {\"type\":\"speech.audio.do");
        assert_eq!(s.usage, None);
        s.push(b"ne\",\"usage\":{\"input_tokens\":20,\"output_tokens\":1250,\"total_tokens\":1270}}\n\n");
        assert_eq!(s.usage, Some(Usage { input: 20, output_audio: 1250, ..Usage::default() }));
    }
}
