//! Multipart uploads (image edits, transcriptions, translations), relayed as
//! streams: an upload is never held whole in memory.
//!
//! [`read_head`] reads the parts in order until it knows what routing,
//! policy and the reservation need: the small text fields (model, prompt, n,
//! size…) and the first bytes of the audio file (a WAVE header tells its
//! length exactly). It stops at the first file part once the model is
//! known; a file part that comes *before* the model field has to be held
//! (bounded by the upload limit) to reach it. `Upload::into_body` then
//! re-encodes the parts read so far — with the routed model's name in the
//! `model` field — followed by the rest of the client's body as it arrives,
//! with the client's own boundary (which its content cannot contain).
//!
//! The whole body is bounded by `max_upload_bytes`; past it the stream ends
//! with an error (the provider sees an incomplete request and bills
//! nothing) and [`Upload::too_large`] says so, for a 413.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Body;
use bytes::{BufMut, Bytes, BytesMut};
use tollgate_providers::media::{self, AudioProbe, FilePart, MediaEndpoint};
use tollgate_providers::RequestInfo;

use crate::error::ApiError;

/// Text fields (all of them together) larger than this are refused: they
/// are parameters, not content.
const MAX_TEXT_FIELDS: usize = 1 << 20;

/// A part already read from the client.
enum Part {
    Text {
        name: String,
        value: String,
    },
    /// A file part held whole (it came before the model field) or the
    /// first bytes of the part being streamed.
    File {
        meta: FilePart,
        chunks: Vec<Bytes>,
    },
}

/// An upload whose head has been read; the rest is still on the wire.
pub struct Upload {
    boundary: String,
    parts: Vec<Part>,
    /// The file part being read when the head was complete (its first
    /// bytes are the last `Part::File`); its rest, then the other parts.
    streaming: Option<multer::Field<'static>>,
    rest: Option<multer::Multipart<'static>>,
    too_large: Arc<AtomicBool>,
}

/// The request info of a multipart request, and its upload.
pub async fn read_head(
    endpoint: MediaEndpoint,
    content_type: Option<&str>,
    declared_len: Option<u64>,
    body: Body,
    limit: usize,
) -> Result<(RequestInfo, Upload), ApiError> {
    let too_large_error = || ApiError::RequestTooLarge { message: format!("the upload is larger than {limit} bytes") };
    if declared_len.is_some_and(|n| n > limit as u64) {
        return Err(too_large_error());
    }
    let ct = content_type.unwrap_or_default();
    if !ct.to_ascii_lowercase().starts_with("multipart/form-data") {
        return Err(ApiError::invalid(format!("{} takes a multipart/form-data body", endpoint_path(endpoint))));
    }
    let boundary = multer::parse_boundary(ct)
        .map_err(|_| ApiError::invalid("the multipart/form-data content type has no valid boundary"))?;
    let limits = multer::SizeLimit::new().whole_stream(limit as u64);
    let mut mp = multer::Multipart::with_constraints(
        Paced { inner: body.into_data_stream(), yielded: false },
        boundary.clone(),
        multer::Constraints::new().size_limit(limits),
    );
    let too_large = Arc::new(AtomicBool::new(false));
    let fail = |e: multer::Error| match e {
        multer::Error::StreamSizeExceeded { .. } | multer::Error::FieldSizeExceeded { .. } => too_large_error(),
        e => ApiError::invalid(format!("the multipart body cannot be read: {e}")),
    };
    let mut parts: Vec<Part> = Vec::new();
    let mut text_bytes = 0usize;
    let mut streaming = None;
    let mut audio_ms = None;
    while let Some(mut field) = mp.next_field().await.map_err(fail)? {
        let name = field.name().unwrap_or_default().to_string();
        let Some(file_name) = field.file_name().map(str::to_string) else {
            let value = field.text().await.map_err(fail)?;
            text_bytes += name.len() + value.len();
            if text_bytes > MAX_TEXT_FIELDS {
                return Err(ApiError::invalid(format!(
                    "the upload's text fields are larger than {MAX_TEXT_FIELDS} bytes"
                )));
            }
            parts.push(Part::Text { name, value });
            continue;
        };
        let meta = FilePart {
            name: name.clone(),
            file_name: Some(file_name),
            content_type: field.content_type().map(|m| m.to_string()),
        };
        let model_known = parts.iter().any(|p| matches!(p, Part::Text { name, .. } if name == "model"));
        let mut chunks = Vec::new();
        if model_known {
            // The audio's first bytes: a WAVE header gives its length.
            if endpoint.reads_audio() && name == "file" {
                let mut head = BytesMut::new();
                loop {
                    match media::wav_duration_ms(&head) {
                        AudioProbe::NeedMore => {}
                        AudioProbe::Wav { ms } => {
                            audio_ms = Some(ms);
                            break;
                        }
                        AudioProbe::Unknown => break,
                    }
                    match field.chunk().await.map_err(fail)? {
                        Some(c) => {
                            head.put_slice(&c);
                            chunks.push(c);
                        }
                        None => break,
                    }
                }
            }
            parts.push(Part::File { meta, chunks });
            streaming = Some(field);
            break;
        }
        // A file before the model field: held (bounded) to read on.
        while let Some(c) = field.chunk().await.map_err(fail)? {
            chunks.push(c);
        }
        if endpoint.reads_audio() && name == "file" {
            let whole: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).take(media::WAV_HEADER_LIMIT).collect();
            if let AudioProbe::Wav { ms } = media::wav_duration_ms(&whole) {
                audio_ms = Some(ms);
            }
        }
        parts.push(Part::File { meta, chunks });
    }
    let fields: Vec<(String, String)> = parts
        .iter()
        .filter_map(|p| match p {
            Part::Text { name, value } => Some((name.clone(), value.clone())),
            Part::File { .. } => None,
        })
        .collect();
    let files: Vec<FilePart> = parts
        .iter()
        .filter_map(|p| match p {
            Part::File { meta, .. } => Some(meta.clone()),
            Part::Text { .. } => None,
        })
        .collect();
    let mut info = media::info_from_fields(endpoint, &fields, &files).map_err(crate::upstream::adapter_error)?;
    if let Some(m) = info.media.as_mut() {
        m.audio_ms = audio_ms;
        m.audio_bytes_at_most = Some(declared_len.unwrap_or(limit as u64));
    }
    let rest = if streaming.is_some() { Some(mp) } else { None };
    Ok((info, Upload { boundary, parts, streaming, rest, too_large }))
}

/// Hands the multipart reader one chunk per poll. It reads everything a
/// stream has ready into its buffer, so a client faster than the provider
/// would otherwise pile its upload up in memory; paced, the buffer holds
/// about a chunk beyond what the relay has taken.
struct Paced<S> {
    inner: S,
    yielded: bool,
}

impl<S: futures_util::Stream + Unpin> futures_util::Stream for Paced<S> {
    type Item = S::Item;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<S::Item>> {
        if self.yielded {
            // Let the reader use what it has before it asks again.
            self.yielded = false;
            cx.waker().wake_by_ref();
            return std::task::Poll::Pending;
        }
        let next = std::pin::Pin::new(&mut self.inner).poll_next(cx);
        if matches!(next, std::task::Poll::Ready(Some(_))) {
            self.yielded = true;
        }
        next
    }
}

fn endpoint_path(m: MediaEndpoint) -> &'static str {
    tollgate_providers::ApiFormat::Media(m).endpoint()
}

/// A part's header lines, after its boundary line.
fn part_head(out: &mut BytesMut, boundary: &str, name: &str, file: Option<&FilePart>) {
    out.put_slice(b"--");
    out.put_slice(boundary.as_bytes());
    out.put_slice(b"\r\nContent-Disposition: form-data; name=\"");
    out.put_slice(quoted(name).as_bytes());
    out.put_slice(b"\"");
    if let Some(f) = file {
        out.put_slice(b"; filename=\"");
        out.put_slice(quoted(f.file_name.as_deref().unwrap_or("file")).as_bytes());
        out.put_slice(b"\"\r\nContent-Type: ");
        out.put_slice(f.content_type.as_deref().unwrap_or("application/octet-stream").as_bytes());
    }
    out.put_slice(b"\r\n\r\n");
}

/// A name in a quoted header parameter: quotes and line breaks escaped as
/// browsers do (percent-encoded), so a name cannot end the header.
fn quoted(s: &str) -> String {
    s.replace('"', "%22").replace('\r', "%0D").replace('\n', "%0A")
}

impl Upload {
    /// Whether the client's body went past the upload limit while it was relayed.
    pub fn too_large(&self) -> Arc<AtomicBool> {
        self.too_large.clone()
    }
}

impl crate::upstream::Upload for Upload {
    /// The content type to send upstream.
    fn content_type(&self) -> String {
        format!("multipart/form-data; boundary={}", self.boundary)
    }

    /// The body to send upstream: the parts read so far (the `model` field
    /// set to `model`), then the rest of the client's body as it arrives.
    fn into_body(self: Box<Self>, model: &str) -> crate::upstream::Body {
        use http_body_util::BodyExt;
        let Upload { boundary, parts, streaming, rest, too_large } = *self;
        let mut queue: VecDeque<Bytes> = VecDeque::new();
        let last = parts.len();
        for (i, part) in parts.into_iter().enumerate() {
            let mut head = BytesMut::new();
            match part {
                Part::Text { name, value } => {
                    part_head(&mut head, &boundary, &name, None);
                    head.put_slice(if name == "model" { model.as_bytes() } else { value.as_bytes() });
                    head.put_slice(b"\r\n");
                    queue.push_back(head.freeze());
                }
                Part::File { meta, chunks } => {
                    part_head(&mut head, &boundary, &meta.name, Some(&meta));
                    queue.push_back(head.freeze());
                    queue.extend(chunks);
                    // The part being streamed ends when its field does.
                    if !(i + 1 == last && streaming.is_some()) {
                        queue.push_back(Bytes::from_static(b"\r\n"));
                    }
                }
            }
        }
        let state = Relay { boundary, queue, field: streaming, rest, too_large, done: false };
        let stream = futures_util::stream::unfold(state, |mut s| async move {
            let item = s.next().await?;
            Some((item, s))
        });
        http_body_util::StreamBody::new(futures_util::StreamExt::map(stream, |r| r.map(http_body::Frame::data)))
            .boxed_unsync()
    }
}

struct Relay {
    boundary: String,
    queue: VecDeque<Bytes>,
    field: Option<multer::Field<'static>>,
    rest: Option<multer::Multipart<'static>>,
    too_large: Arc<AtomicBool>,
    done: bool,
}

impl Relay {
    async fn next(&mut self) -> Option<Result<Bytes, crate::upstream::BoxError>> {
        loop {
            if let Some(b) = self.queue.pop_front() {
                return Some(Ok(b));
            }
            if self.done {
                return None;
            }
            if let Some(field) = self.field.as_mut() {
                match field.chunk().await {
                    Ok(Some(c)) => return Some(Ok(c)),
                    Ok(None) => {
                        self.field = None;
                        self.queue.push_back(Bytes::from_static(b"\r\n"));
                        continue;
                    }
                    Err(e) => return Some(Err(self.failed(e))),
                }
            }
            let next = match self.rest.as_mut() {
                Some(mp) => mp.next_field().await,
                None => Ok(None),
            };
            match next {
                Ok(Some(field)) => {
                    let name = field.name().unwrap_or_default().to_string();
                    let file = field.file_name().map(|f| FilePart {
                        name: name.clone(),
                        file_name: Some(f.to_string()),
                        content_type: field.content_type().map(|m| m.to_string()),
                    });
                    let mut head = BytesMut::new();
                    part_head(&mut head, &self.boundary, &name, file.as_ref());
                    self.queue.push_back(head.freeze());
                    self.field = Some(field);
                }
                Ok(None) => {
                    self.done = true;
                    self.rest = None;
                    return Some(Ok(Bytes::from(format!("--{}--\r\n", self.boundary))));
                }
                Err(e) => return Some(Err(self.failed(e))),
            }
        }
    }

    fn failed(&mut self, e: multer::Error) -> crate::upstream::BoxError {
        self.done = true;
        self.queue.clear();
        if matches!(e, multer::Error::StreamSizeExceeded { .. } | multer::Error::FieldSizeExceeded { .. }) {
            self.too_large.store(true, Ordering::Release);
        }
        Box::new(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::Upload as _;
    use http_body_util::BodyExt;

    fn form(boundary: &str, parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
        let mut v = Vec::new();
        for (name, file, data) in parts {
            v.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"").as_bytes());
            if let Some(f) = file {
                v.extend_from_slice(format!("; filename=\"{f}\"\r\nContent-Type: audio/wav").as_bytes());
            }
            v.extend_from_slice(b"\r\n\r\n");
            v.extend_from_slice(data);
            v.extend_from_slice(b"\r\n");
        }
        v.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        v
    }

    fn wav(data_bytes: usize) -> Vec<u8> {
        let mut v = b"RIFF\0\0\0\0WAVEfmt ".to_vec();
        v.extend_from_slice(&16u32.to_le_bytes());
        v.extend_from_slice(&[1, 0, 1, 0]);
        v.extend_from_slice(&16_000u32.to_le_bytes());
        v.extend_from_slice(&32_000u32.to_le_bytes());
        v.extend_from_slice(&[2, 0, 16, 0]);
        v.extend_from_slice(b"data");
        v.extend_from_slice(&(data_bytes as u32).to_le_bytes());
        v.extend(std::iter::repeat_n(7u8, data_bytes));
        v
    }

    /// A body that arrives in small chunks, as a slow client sends it.
    fn chunked(bytes: Vec<u8>, size: usize) -> Body {
        let chunks: Vec<Result<Bytes, std::io::Error>> =
            bytes.chunks(size).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        Body::from_stream(futures_util::stream::iter(chunks))
    }

    async fn collect(b: crate::upstream::Body) -> Result<Vec<u8>, String> {
        b.collect().await.map(|c| c.to_bytes().to_vec()).map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn the_upload_is_relayed_with_the_routed_model_and_its_audio_measured() {
        let audio = wav(80_000);
        let sent = form(
            "XyZ",
            &[("model", None, b"whisper"), ("file", Some("a.wav"), &audio), ("response_format", None, b"json")],
        );
        let len = sent.len() as u64;
        let ct = "multipart/form-data; boundary=XyZ";
        let (info, up) =
            read_head(MediaEndpoint::Transcriptions, Some(ct), Some(len), chunked(sent, 7), 1 << 20).await.unwrap();
        assert_eq!(info.model.as_deref(), Some("whisper"));
        let m = info.media.unwrap();
        assert_eq!(m.audio_ms, Some(2_500), "80,000 bytes at 32,000 B/s");
        assert_eq!(m.audio_bytes_at_most, Some(len));
        assert_eq!(up.content_type(), ct);
        let relayed = collect(Box::new(up).into_body("whisper-1")).await.unwrap();
        let expected = form(
            "XyZ",
            &[("model", None, b"whisper-1"), ("file", Some("a.wav"), &audio), ("response_format", None, b"json")],
        );
        assert_eq!(relayed, expected, "same parts, the model renamed, the audio byte for byte");
    }

    #[tokio::test]
    async fn a_file_before_the_model_is_held_to_find_the_model() {
        let sent = form("b1", &[("file", Some("a.wav"), &wav(3_200)), ("model", None, b"whisper-1")]);
        let (info, up) = read_head(
            MediaEndpoint::Transcriptions,
            Some("multipart/form-data; boundary=b1"),
            None,
            chunked(sent.clone(), 100),
            1 << 20,
        )
        .await
        .unwrap();
        assert_eq!(info.model.as_deref(), Some("whisper-1"));
        assert_eq!(info.media.unwrap().audio_ms, Some(100));
        assert_eq!(collect(Box::new(up).into_body("whisper-1")).await.unwrap(), sent);
    }

    #[tokio::test]
    async fn an_upload_past_the_limit_is_refused_or_cut() {
        let sent = form("b", &[("model", None, b"whisper-1"), ("file", Some("a.wav"), &wav(50_000))]);
        let ct = Some("multipart/form-data; boundary=b");
        // Declared too large: refused before anything is read.
        let e =
            read_head(MediaEndpoint::Transcriptions, ct, Some(sent.len() as u64), chunked(sent.clone(), 1000), 10_000)
                .await
                .err()
                .unwrap();
        assert_eq!(e.code(), "request_too_large");
        // Not declared: the head is read, and the relay fails at the limit.
        let (_, up) = read_head(MediaEndpoint::Transcriptions, ct, None, chunked(sent, 1000), 10_000).await.unwrap();
        let flag = up.too_large();
        assert!(collect(Box::new(up).into_body("whisper-1")).await.is_err());
        assert!(flag.load(Ordering::Acquire));
    }

    #[tokio::test]
    async fn bad_multipart_bodies_are_clear_errors() {
        let e = read_head(MediaEndpoint::Transcriptions, Some("application/json"), None, Body::from("{}"), 1000)
            .await
            .err()
            .unwrap();
        assert_eq!(e.code(), "invalid_request");
        let no_file = form("b", &[("model", None, b"whisper-1")]);
        let e = read_head(
            MediaEndpoint::Transcriptions,
            Some("multipart/form-data; boundary=b"),
            None,
            Body::from(no_file),
            1000,
        )
        .await
        .err()
        .unwrap();
        assert_eq!(e.code(), "invalid_request");
    }
}
