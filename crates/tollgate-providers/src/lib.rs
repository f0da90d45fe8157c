//! Provider wire formats, as pure functions (no I/O, no clock).
//!
//! In: the client's request body in one of the client-facing API formats
//! ([`ApiFormat`]) and a resolved [`Target`]. Out: a [`PreparedRequest`] to
//! send upstream, and a [`ResponseTranslator`] that turns the upstream answer
//! (a whole body, or a stream chunk by chunk) back into the client's format
//! together with the exact [`Usage`] the provider reported.
//!
//! Adapters know nothing about keys, budgets, caching or the ledger.
//!
//! Layout: `sse` (incremental SSE parser), `openai` (chat, embeddings,
//! responses; also `openai_compatible` and `azure_openai`), `anthropic`
//! (native Messages and OpenAI-chat translation), `gemini`
//! (`generateContent` / `streamGenerateContent` translation), `media`
//! (OpenAI's images and audio endpoints: what bounds their cost, and the
//! units their answers bill).

mod anthropic;
mod bedrock;
pub mod eventstream;
mod gemini;
mod inspect;
pub mod media;
mod openai;
pub mod sigv4;
pub mod sse;
pub mod vertex;

pub use media::{MediaEndpoint, MediaRequest};

use bytes::Bytes;
pub use tollgate_units::Usage;

/// The API family and endpoint the *client* called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiFormat {
    /// `POST /v1/chat/completions`
    OpenAiChat,
    /// `POST /v1/embeddings`
    OpenAiEmbeddings,
    /// `POST /v1/responses`
    OpenAiResponses,
    /// `POST /v1/messages` (Anthropic Messages)
    AnthropicMessages,
    /// OpenAI's images and audio endpoints (`/v1/images/…`, `/v1/audio/…`).
    Media(MediaEndpoint),
    /// `POST /v1beta/models/{model}:generateContent` and
    /// `:streamGenerateContent` (Google's native Gemini API; the model and
    /// whether it streams come from the URL).
    GeminiNative,
}

/// The kind of upstream, as configured (`kind = "…"` in `[[providers]]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    OpenAi,
    OpenAiCompatible,
    AzureOpenAi,
    Anthropic,
    Gemini,
    /// Amazon Bedrock's Converse API (requests signed with AWS SigV4 by the gateway).
    Bedrock,
    /// Google Vertex AI: Gemini and Claude models (the gateway adds a service account's access token).
    Vertex,
}

/// Where and how to send one attempt. Borrowed from the gateway's config.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub kind: ProviderKind,
    /// OpenAI-style: with `/v1` (`https://api.openai.com/v1`); Anthropic:
    /// without (`https://api.anthropic.com`); Gemini:
    /// `https://generativelanguage.googleapis.com`; Azure: the resource
    /// endpoint `https://NAME.openai.azure.com`.
    pub base_url: &'a str,
    /// The provider secret, if any (never logged; sent as the provider's auth header).
    pub api_key: Option<&'a str>,
    /// The model name to send upstream (Azure: the deployment name).
    pub model: &'a str,
    /// Azure `api-version` query value; `None` means Azure's `/openai/v1/` API.
    pub api_version: Option<&'a str>,
}

/// What the gateway needs to know about a client request before routing.
/// Parsed once from the body by [`inspect`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestInfo {
    pub model: Option<String>,
    /// The service tier asked for (`service_tier`: `priority`, `flex`, `auto`…).
    pub service_tier: Option<String>,
    pub stream: bool,
    /// The client itself asked for `stream_options.include_usage`.
    pub client_wants_stream_usage: bool,
    /// Body `user` (OpenAI) or `metadata.user_id` (Anthropic).
    pub user: Option<String>,
    /// Body `metadata` object, flattened to string values (OpenAI only;
    /// Anthropic's metadata holds only `user_id`).
    pub metadata: Vec<(String, String)>,
    /// `max_tokens` / `max_completion_tokens` / `max_output_tokens`.
    pub max_output_tokens: Option<u64>,
    /// All prompt text (messages, system, tools, input) concatenated, for
    /// local token counting when the provider reports no usage.
    pub prompt_text: String,
    /// What a media request asks for (images, audio, speech); `None` otherwise.
    pub media: Option<MediaRequest>,
}

/// A request ready to send upstream.
#[derive(Debug, Clone)]
pub struct PreparedRequest {
    /// `POST` to this URL (query string included).
    pub url: String,
    /// Auth and protocol headers (e.g. `authorization`, `x-api-key` +
    /// `anthropic-version`, `api-key`, `x-goog-api-key`, `content-type`).
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    pub body: Bytes,
    pub stream: bool,
}

/// Why a request cannot be prepared or an answer cannot be understood.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    /// The client's body is not valid for the endpoint it called
    /// (maps to 400 `invalid_request`). The message is safe to show.
    #[error("{message}")]
    InvalidRequest { message: String, param: Option<String> },
    /// The route asks for a combination we do not translate (e.g. embeddings
    /// to an Anthropic target). Maps to 400 `invalid_request`.
    #[error("{0}")]
    Unsupported(String),
    /// The upstream answered something that is not its documented format
    /// (maps to 502 `upstream_error`).
    #[error("upstream answered malformed data: {0}")]
    MalformedUpstream(String),
}

pub use openai::path_segment;

/// The client's body after the gateway changes it (the model name; usage
/// in streams) and translated into the target's wire format.
pub fn prepare(
    format: ApiFormat,
    target: &Target<'_>,
    body: &[u8],
    info: &RequestInfo,
) -> Result<(PreparedRequest, ResponseTranslator), AdapterError> {
    use ApiFormat as F;
    use ProviderKind as K;
    let (request, mode) = match (format, target.kind) {
        (F::OpenAiChat, K::OpenAi | K::OpenAiCompatible | K::AzureOpenAi) => {
            (openai::prepare(format, target, body, info)?, Mode::OpenAiChat)
        }
        (F::OpenAiEmbeddings, K::OpenAi | K::OpenAiCompatible | K::AzureOpenAi) => {
            (openai::prepare(format, target, body, info)?, Mode::OpenAiEmbeddings)
        }
        (F::OpenAiResponses, K::OpenAi | K::OpenAiCompatible | K::AzureOpenAi) => {
            (openai::prepare(format, target, body, info)?, Mode::OpenAiResponses)
        }
        (F::AnthropicMessages, K::Anthropic) => (anthropic::prepare_native(target, body, info)?, Mode::AnthropicNative),
        (F::OpenAiChat, K::Anthropic) => (anthropic::prepare_from_chat(target, body, info)?, Mode::AnthropicToChat),
        (F::OpenAiChat, K::Gemini) => (gemini::prepare_from_chat(target, body, info)?, Mode::GeminiToChat),
        (F::OpenAiChat, K::Bedrock) => (bedrock::prepare_from_chat(target, body, info)?, Mode::BedrockToChat),
        (F::AnthropicMessages, K::Bedrock) => {
            (bedrock::prepare_from_messages(target, body, info)?, Mode::BedrockToMessages)
        }
        (F::OpenAiChat, K::Vertex) if vertex::is_claude(target.model) => {
            (vertex::prepare_claude_from_chat(target, body, info)?, Mode::AnthropicToChat)
        }
        (F::OpenAiChat, K::Vertex) => (vertex::prepare_gemini_from_chat(target, body, info)?, Mode::GeminiToChat),
        (F::AnthropicMessages, K::Vertex) if vertex::is_claude(target.model) => {
            (vertex::prepare_claude_native(target, body, info)?, Mode::AnthropicNative)
        }
        (F::GeminiNative, K::Gemini) => (gemini::prepare_native(target, body, info)?, Mode::GeminiNative),
        (F::GeminiNative, K::Vertex) if !vertex::is_claude(target.model) => {
            (vertex::gemini_request(target, Bytes::copy_from_slice(body), info.stream), Mode::GeminiNative)
        }
        (F::Media(m), K::OpenAi | K::OpenAiCompatible | K::AzureOpenAi) => {
            (openai::prepare(format, target, body, info)?, Mode::Media(m))
        }
        (
            F::OpenAiEmbeddings | F::OpenAiResponses | F::AnthropicMessages | F::Media(_) | F::GeminiNative,
            K::OpenAi | K::OpenAiCompatible | K::AzureOpenAi | K::Anthropic | K::Gemini | K::Bedrock | K::Vertex,
        ) => {
            return Err(AdapterError::Unsupported(format!(
                "{} cannot be routed to a provider of kind `{}`",
                format.endpoint(),
                target.kind.name()
            )))
        }
    };
    let translator = ResponseTranslator {
        mode,
        client_wants_stream_usage: info.client_wants_stream_usage,
        model: target.model.to_owned(),
        created: 0,
    };
    Ok((request, translator))
}

/// Parse the few fields the gateway needs from a client body.
pub fn inspect(format: ApiFormat, body: &[u8]) -> Result<RequestInfo, AdapterError> {
    match format {
        ApiFormat::GeminiNative => gemini::inspect_native(body),
        ApiFormat::Media(m) if m.multipart() => Err(AdapterError::InvalidRequest {
            message: format!("`{}` takes a multipart/form-data body", m.path()),
            param: None,
        }),
        ApiFormat::Media(m) => media::inspect_json(m, body),
        _ => inspect::inspect(format, body),
    }
}

impl ApiFormat {
    /// The client-facing endpoint, for messages.
    pub fn endpoint(self) -> &'static str {
        match self {
            ApiFormat::OpenAiChat => "/v1/chat/completions",
            ApiFormat::OpenAiEmbeddings => "/v1/embeddings",
            ApiFormat::OpenAiResponses => "/v1/responses",
            ApiFormat::AnthropicMessages => "/v1/messages",
            ApiFormat::Media(MediaEndpoint::ImageGenerations) => "/v1/images/generations",
            ApiFormat::Media(MediaEndpoint::ImageEdits) => "/v1/images/edits",
            ApiFormat::Media(MediaEndpoint::Transcriptions) => "/v1/audio/transcriptions",
            ApiFormat::Media(MediaEndpoint::Translations) => "/v1/audio/translations",
            ApiFormat::Media(MediaEndpoint::Speech) => "/v1/audio/speech",
            ApiFormat::GeminiNative => "/v1beta/models/{model}:generateContent",
        }
    }

    /// The media endpoint, for images and audio requests.
    pub fn media(self) -> Option<MediaEndpoint> {
        match self {
            ApiFormat::Media(m) => Some(m),
            _ => None,
        }
    }
}

impl ProviderKind {
    /// The config spelling (`kind = "…"`).
    pub fn name(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::OpenAiCompatible => "openai_compatible",
            ProviderKind::AzureOpenAi => "azure_openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Gemini => "gemini",
            ProviderKind::Bedrock => "bedrock",
            ProviderKind::Vertex => "vertex",
        }
    }
}

/// The usage (and model) of one whole answer body in a provider's own
/// format, e.g. a line of a batch result file: OpenAI chat / embeddings /
/// responses bodies, or an Anthropic message.
pub fn usage_of(format: ApiFormat, body: &[u8]) -> Result<TranslatedBody, AdapterError> {
    match format {
        ApiFormat::OpenAiChat => openai::translate_body(Mode::OpenAiChat, body),
        ApiFormat::OpenAiEmbeddings => openai::translate_body(Mode::OpenAiEmbeddings, body),
        ApiFormat::OpenAiResponses => openai::translate_body(Mode::OpenAiResponses, body),
        ApiFormat::AnthropicMessages => anthropic::translate_native_body(body),
        ApiFormat::Media(m) => media_body(m, body),
        ApiFormat::GeminiNative => gemini::translate_native_body(body),
    }
}

fn media_body(m: MediaEndpoint, body: &[u8]) -> Result<TranslatedBody, AdapterError> {
    match m {
        MediaEndpoint::ImageGenerations | MediaEndpoint::ImageEdits => media::translate_images(body),
        MediaEndpoint::Transcriptions | MediaEndpoint::Translations => media::translate_audio(body),
        // Audio out: no usage in the answer (the request's characters are the bill).
        MediaEndpoint::Speech => Ok(TranslatedBody {
            body: Bytes::copy_from_slice(body),
            usage: None,
            model: None,
            service_tier: None,
            output_text: String::new(),
            provider_cost: None,
        }),
    }
}

/// Which upstream format comes back, and which client format goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    OpenAiChat,
    OpenAiEmbeddings,
    OpenAiResponses,
    AnthropicNative,
    AnthropicToChat,
    GeminiToChat,
    /// OpenAI's media answers, relayed as they are.
    Media(MediaEndpoint),
    /// Bedrock Converse → OpenAI chat.
    BedrockToChat,
    /// Bedrock Converse → Anthropic Messages.
    BedrockToMessages,
    /// Gemini's native API, relayed as it is.
    GeminiNative,
}

/// Turns one upstream answer back into the client's format. Created by
/// [`prepare`], so it knows both formats and whether the client asked for
/// the usage chunk.
#[derive(Debug, Clone)]
pub struct ResponseTranslator {
    mode: Mode,
    client_wants_stream_usage: bool,
    /// The model sent upstream: the fallback name when a translated answer
    /// does not carry one.
    model: String,
    created: u64,
}

/// A whole (non-streaming) answer in the client's format.
#[derive(Debug, Clone)]
pub struct TranslatedBody {
    pub body: Bytes,
    /// `None` when the provider reported no usage (the gateway then estimates).
    pub usage: Option<Usage>,
    /// The served model as the provider named it, if it did.
    pub model: Option<String>,
    /// The service tier the provider says it served (`priority`, `flex`, `default`…).
    pub service_tier: Option<String>,
    /// Generated text, filled only when `usage` is `None` (for estimation).
    pub output_text: String,
    /// The cost the provider itself reported (OpenRouter's `usage.cost`), if any.
    pub provider_cost: Option<tollgate_units::Money>,
}

impl ResponseTranslator {
    /// The `created` (Unix seconds) written into OpenAI-shaped answers that
    /// are translated from a provider that does not send one (Anthropic,
    /// Gemini). This crate reads no clock, so the gateway passes it; 0 otherwise.
    pub fn with_created(mut self, unix_secs: u64) -> Self {
        self.created = unix_secs;
        self
    }

    /// A 2xx upstream body → client body + usage.
    pub fn translate_body(&self, body: &[u8]) -> Result<TranslatedBody, AdapterError> {
        match self.mode {
            Mode::OpenAiChat | Mode::OpenAiEmbeddings | Mode::OpenAiResponses => {
                openai::translate_body(self.mode, body)
            }
            Mode::AnthropicNative => anthropic::translate_native_body(body),
            Mode::AnthropicToChat => anthropic::translate_to_chat_body(self, body),
            Mode::GeminiToChat => gemini::translate_to_chat_body(self, body),
            Mode::Media(m) => media_body(m, body),
            Mode::BedrockToChat => bedrock::translate_to_chat_body(self, body),
            Mode::BedrockToMessages => bedrock::translate_to_messages_body(self, body),
            Mode::GeminiNative => gemini::translate_native_body(body),
        }
    }

    /// An upstream error body (status ≥ 400) → the provider's own message,
    /// if one can be read, for the gateway's error.
    pub fn error_message(&self, body: &[u8]) -> Option<String> {
        error_message(body)
    }

    /// Start metering a 2xx upstream event stream.
    pub fn stream(&self) -> StreamTranslator {
        let state = match self.mode {
            // Media requests are never streams (inspect refuses `stream`).
            Mode::OpenAiChat | Mode::OpenAiEmbeddings | Mode::Media(_) => {
                State::OpenAiChat(openai::ChatStream::new(!self.client_wants_stream_usage))
            }
            Mode::OpenAiResponses => State::OpenAiResponses(openai::ResponsesStream::default()),
            Mode::AnthropicNative => State::AnthropicNative(anthropic::NativeStream::default()),
            Mode::AnthropicToChat => State::AnthropicToChat(anthropic::ChatStream::new(self)),
            Mode::GeminiToChat => State::GeminiToChat(gemini::ChatStream::new(self)),
            Mode::BedrockToChat => State::BedrockToChat(bedrock::ChatStream::new(self)),
            Mode::BedrockToMessages => State::BedrockToMessages(bedrock::MessagesStream::new(self)),
            Mode::GeminiNative => State::GeminiNative(gemini::NativeStream),
        };
        // Bedrock streams in AWS's binary event-stream framing, the others in SSE.
        let frames = matches!(self.mode, Mode::BedrockToChat | Mode::BedrockToMessages).then(eventstream::Decoder::new);
        StreamTranslator {
            parser: sse::Parser::new(),
            events: Vec::new(),
            frames,
            messages: Vec::new(),
            meter: Meter::default(),
            state,
        }
    }
}

/// Reads `{"error":{"message"}}` (OpenAI, Anthropic's `{"type":"error",…}`,
/// Gemini's `{"error":{"message","status"}}`, also Gemini's array form), or a
/// bare string `error` / top-level `message`.
pub fn error_message(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum ErrorField {
        Text(String),
        Object { message: Option<String> },
    }
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        error: Option<ErrorField>,
        message: Option<String>,
    }
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Shape {
        One(ErrorBody),
        Many(Vec<ErrorBody>),
    }
    let shape: Shape = serde_json::from_slice(body).ok()?;
    let one = match shape {
        Shape::One(b) => b,
        Shape::Many(v) => v.into_iter().next()?,
    };
    match one.error {
        Some(ErrorField::Text(s)) => Some(s),
        Some(ErrorField::Object { message: Some(m) }) => Some(m),
        _ => one.message,
    }
    .filter(|m| !m.is_empty())
}

/// Sees every upstream stream chunk exactly once, emits client-format SSE
/// bytes as soon as a whole event is available, and keeps the usage.
#[derive(Debug)]
pub struct StreamTranslator {
    parser: sse::Parser,
    events: Vec<sse::Event>,
    frames: Option<eventstream::Decoder>,
    messages: Vec<eventstream::Message>,
    meter: Meter,
    state: State,
}

#[derive(Debug)]
enum State {
    OpenAiChat(openai::ChatStream),
    OpenAiResponses(openai::ResponsesStream),
    AnthropicNative(anthropic::NativeStream),
    AnthropicToChat(anthropic::ChatStream),
    GeminiToChat(gemini::ChatStream),
    BedrockToChat(bedrock::ChatStream),
    BedrockToMessages(bedrock::MessagesStream),
    GeminiNative(gemini::NativeStream),
}

/// What every stream translator tracks, whatever the format.
#[derive(Debug, Default)]
pub(crate) struct Meter {
    pub usage: Option<Usage>,
    pub model: Option<String>,
    /// The service tier the provider says it served (`priority`, `flex`, `default`…).
    pub service_tier: Option<String>,
    /// The documented terminal event was seen.
    pub completed: bool,
    /// The upstream reported an error inside the stream.
    pub failed: bool,
    pub terminator: Vec<u8>,
    pub output_text: String,
    /// The cost the provider reported (last value wins).
    pub provider_cost: Option<tollgate_units::Money>,
}

/// What is left when the upstream stream has ended (or was cut).
#[derive(Debug, Clone, Default)]
pub struct StreamEnd {
    /// The usage the provider reported (last value wins), or `None`.
    pub usage: Option<Usage>,
    pub model: Option<String>,
    /// The service tier the provider says it served, when it says so.
    pub service_tier: Option<String>,
    /// The stream reached its documented terminal event (`[DONE]`,
    /// `message_stop`, `response.completed`, Gemini's final `finishReason`).
    pub completed: bool,
    /// The client-format terminator (e.g. `data: [DONE]\n\n`), held back by
    /// [`StreamTranslator::push`] so the gateway can send its cost comment
    /// line just before it. Empty when the stream did not complete.
    pub terminator: Bytes,
    /// Generated text seen so far, kept only while no usage has been seen.
    pub output_text: String,
    /// The cost the provider itself reported (OpenRouter's `usage.cost`), if any.
    pub provider_cost: Option<tollgate_units::Money>,
}

impl StreamTranslator {
    /// Feed one upstream chunk (any split, even mid-line or mid-UTF-8);
    /// append client-format bytes to `out` (possibly none).
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<Bytes>) -> Result<(), AdapterError> {
        if let Some(frames) = self.frames.as_mut() {
            // A corrupt frame is an upstream error, never a silent truncation.
            let decoded = frames.push(chunk, &mut self.messages);
            let mut result = decoded.map_err(|e| AdapterError::MalformedUpstream(format!("event stream: {e}")));
            for msg in self.messages.drain(..) {
                let r = match &mut self.state {
                    State::BedrockToChat(s) => s.on_message(&msg, &mut self.meter, out),
                    State::BedrockToMessages(s) => s.on_message(&msg, &mut self.meter, out),
                    _ => Ok(()),
                };
                if result.is_ok() {
                    result = r;
                }
            }
            return result;
        }
        self.parser.push(chunk, &mut self.events);
        self.dispatch(out)
    }

    fn dispatch(&mut self, out: &mut Vec<Bytes>) -> Result<(), AdapterError> {
        let mut result = Ok(());
        for ev in self.events.drain(..) {
            let r = match &mut self.state {
                State::OpenAiChat(s) => s.on_event(ev, &mut self.meter, out),
                State::OpenAiResponses(s) => s.on_event(ev, &mut self.meter, out),
                State::AnthropicNative(s) => s.on_event(ev, &mut self.meter, out),
                State::AnthropicToChat(s) => s.on_event(ev, &mut self.meter, out),
                State::GeminiToChat(s) => s.on_event(ev, &mut self.meter, out),
                State::GeminiNative(s) => s.on_event(ev, &mut self.meter, out),
                // Fed by frames in `push`, never by SSE events.
                State::BedrockToChat(_) | State::BedrockToMessages(_) => Ok(()),
            };
            if result.is_ok() {
                result = r;
            }
        }
        result
    }

    /// The upstream ended (or was cut); flush and report.
    pub fn finish(&mut self, out: &mut Vec<Bytes>) -> StreamEnd {
        self.parser.finish(&mut self.events);
        // The only events `finish` yields are a block the upstream cut off
        // before its blank line: keep it only if it is whole, never relay half
        // a JSON object.
        self.events.retain(|e| {
            !e.has_data || e.data.trim() == "[DONE]" || serde_json::from_str::<serde::de::IgnoredAny>(&e.data).is_ok()
        });
        // A malformed trailing fragment changes nothing about what was metered.
        let _ = self.dispatch(out);
        match &mut self.state {
            State::OpenAiChat(s) => s.finish(&mut self.meter),
            State::OpenAiResponses(s) => s.finish(&mut self.meter),
            State::AnthropicNative(s) => s.finish(&mut self.meter),
            State::AnthropicToChat(s) => s.finish(&mut self.meter, out),
            State::GeminiToChat(s) => s.finish(&mut self.meter, out),
            State::BedrockToChat(s) => s.finish(&mut self.meter, out),
            State::BedrockToMessages(s) => s.finish(&mut self.meter, out),
            State::GeminiNative(_) => {}
        }
        let m = &mut self.meter;
        let terminator = std::mem::take(&mut m.terminator);
        let completed = m.completed && !m.failed;
        let terminator = if completed {
            Bytes::from(terminator)
        } else {
            // After an in-stream error the client still gets the upstream's
            // own end marker, if it sent one, so its SDK stops reading.
            if !terminator.is_empty() {
                out.push(Bytes::from(terminator));
            }
            Bytes::new()
        };
        StreamEnd {
            usage: m.usage,
            model: m.model.clone(),
            service_tier: m.service_tier.clone(),
            completed,
            terminator,
            output_text: if m.usage.is_none() { std::mem::take(&mut m.output_text) } else { String::new() },
            provider_cost: m.provider_cost,
        }
    }

    /// Usage seen so far (for a client that disconnects mid-stream).
    pub fn usage_so_far(&self) -> Option<Usage> {
        self.meter.usage
    }
}

#[cfg(test)]
mod path_tests {
    #[test]
    fn names_cannot_leave_their_path_segment() {
        assert_eq!(super::path_segment("gemini-1.5-pro"), "gemini-1.5-pro");
        assert_eq!(super::path_segment("../../../admin/secret?x="), "..%2F..%2F..%2Fadmin%2Fsecret%3Fx%3D");
        assert_eq!(super::path_segment(".."), "%2E%2E");
        assert_eq!(super::path_segment("a b#c\0"), "a%20b%23c%00");
    }

    #[test]
    fn bodies_nested_too_deep_are_refused_and_brackets_in_strings_do_not_count() {
        use crate::inspect::{nesting_within, MAX_JSON_DEPTH};
        let deep = format!(r#"{{"model":"m","x":{}{}}}"#, "[".repeat(20_000), "]".repeat(20_000));
        assert!(!nesting_within(deep.as_bytes(), MAX_JSON_DEPTH));
        let e = super::inspect(super::ApiFormat::OpenAiChat, deep.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("deeper than 64 levels"), "{e}");
        let quoted = format!(r#"{{"model":"m","messages":[{{"role":"user","content":"{}"}}]}}"#, "[{".repeat(500));
        assert!(nesting_within(quoted.as_bytes(), MAX_JSON_DEPTH), "brackets inside strings are text");
        let escaped = format!(r#"{{"a":"\"[[[","b":{}{}}}"#, "[".repeat(60), "]".repeat(60));
        assert!(nesting_within(escaped.as_bytes(), MAX_JSON_DEPTH));
        let many_flat = format!(r#"{{"messages":[{}]}}"#, vec![r#"{"role":"user","content":"hi"}"#; 500].join(","));
        assert!(nesting_within(many_flat.as_bytes(), MAX_JSON_DEPTH), "many brackets, shallow");
    }
}
