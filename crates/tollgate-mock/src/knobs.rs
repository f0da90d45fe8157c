//! Per-request behaviour knobs: `x-mock-*` headers and `[mock k=v …]` body directives.
//!
//! Body directives exist because the gateway does not forward client headers,
//! while prompt text survives every format translation.

use http::HeaderMap;

use crate::MockConfig;

/// Streams never get more content deltas than this, whatever the knob says.
const MAX_CHUNKS: usize = 10_000;
/// The `web_searches` knob is capped here (Responses answers get one output
/// item per search).
const MAX_WEB_SEARCHES: u64 = 1_000;
/// Content deltas per stream unless a knob says otherwise.
pub(crate) const DEFAULT_CHUNKS: usize = 4;

/// A misbehaviour the mock performs on request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Answer with this HTTP status and the provider's error body.
    Status(u16),
    /// Wait an hour before answering (only this request's task sleeps).
    Timeout,
    /// Stream half the deltas, then go silent for an hour.
    Stall,
    /// Invalid JSON: the whole body, or one event mid-stream.
    Malformed,
    /// Stop half-way: no terminal event and no usage.
    Truncate,
    /// Leave usage out everywhere.
    NoUsage,
    /// Send the provider's in-stream error event half-way, then end.
    StreamError,
    /// A 200 whose body (or first stream event) is an HTML error page.
    Garbage,
    /// Close the connection before any byte of the answer.
    Reset,
    /// Send half the answer (half the deltas of a stream), then break the
    /// connection mid-body.
    ResetMid,
    /// In an AWS event stream (Bedrock's ConverseStream), flip a byte in the
    /// payload of the second message so its message CRC fails. Other
    /// answers ignore it.
    CorruptFrame,
}

impl Fault {
    fn parse(value: &str) -> Result<Self, KnobError> {
        Ok(match value {
            "timeout" => Self::Timeout,
            "stall" => Self::Stall,
            "malformed" => Self::Malformed,
            "truncate" => Self::Truncate,
            "no_usage" => Self::NoUsage,
            "stream_error" => Self::StreamError,
            "garbage" => Self::Garbage,
            "reset" => Self::Reset,
            "reset_mid" => Self::ResetMid,
            "corrupt_frame" => Self::CorruptFrame,
            code => match code.parse::<u16>() {
                Ok(status @ 400..=599) => Self::Status(status),
                _ => return Err(KnobError::UnknownFault(value.to_owned())),
            },
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum KnobError {
    #[error("mock: unknown fault `{0}` (use a 4xx/5xx status, timeout, stall, malformed, truncate, no_usage, stream_error, garbage, reset, reset_mid or corrupt_frame)")]
    UnknownFault(String),
    #[error("mock: unknown knob `{0}`")]
    UnknownKnob(String),
    #[error("mock: knob `{key}` needs a whole number, got `{value}`")]
    NotANumber { key: String, value: String },
    #[error("mock: knob `{key}` needs a JSON number such as 0.000123 or 1.5e-05, got `{value}`")]
    NotAJsonNumber { key: String, value: String },
    #[error("mock: knob `{key}` needs one of {allowed}, got `{value}`")]
    NotOneOf { key: String, value: String, allowed: String },
}

/// The knobs in force for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Knobs {
    pub latency_ms: u64,
    pub chunk_delay_ms: u64,
    pub chunks: usize,
    pub output_tokens: Option<u64>,
    pub fault: Option<Fault>,
    pub retry_after: u64,
    /// Server-side web searches to report (Anthropic's
    /// `usage.server_tool_use`, Responses `web_search_call` output items).
    pub web_searches: u64,
    /// The text of a JSON number of USD that OpenAI chat answers report as
    /// `usage.cost` (as OpenRouter does), written exactly as given.
    pub reported_cost: Option<String>,
    /// Bedrock answers report prompt-cache reads and writes even without a
    /// `cachePoint` block (the bare directive `[mock bedrock_cache]`).
    pub bedrock_cache: bool,
    /// The exception a Bedrock stream's `stream_error` sends (its
    /// `:exception-type`); `internalServerException` unless set.
    pub exception_type: &'static str,
}

/// The exceptions a ConverseStream may carry in its event stream.
pub(crate) const BEDROCK_STREAM_EXCEPTIONS: [&str; 5] = [
    "internalServerException",
    "modelStreamErrorException",
    "serviceUnavailableException",
    "throttlingException",
    "validationException",
];

const HEADER_KNOBS: [(&str, &str); 10] = [
    ("x-mock-latency-ms", "latency_ms"),
    ("x-mock-chunk-delay-ms", "chunk_delay_ms"),
    ("x-mock-chunks", "chunks"),
    ("x-mock-output-tokens", "output_tokens"),
    ("x-mock-fault", "fault"),
    ("x-mock-retry-after", "retry_after"),
    ("x-mock-web-searches", "web_searches"),
    ("x-mock-reported-cost", "reported_cost"),
    ("x-mock-bedrock-cache", "bedrock_cache"),
    ("x-mock-exception-type", "exception_type"),
];

impl Knobs {
    fn defaults(config: &MockConfig) -> Self {
        Self {
            latency_ms: config.latency_ms,
            chunk_delay_ms: config.chunk_delay_ms,
            chunks: DEFAULT_CHUNKS,
            output_tokens: None,
            fault: None,
            retry_after: 1,
            web_searches: 0,
            reported_cost: None,
            bedrock_cache: false,
            exception_type: BEDROCK_STREAM_EXCEPTIONS[0],
        }
    }

    /// Config defaults, then headers, then body directives (later wins).
    pub(crate) fn read(config: &MockConfig, headers: &HeaderMap, body: &[u8]) -> Result<Self, KnobError> {
        let mut knobs = Self::defaults(config);
        for (header, key) in HEADER_KNOBS {
            if let Some(value) = headers.get(header).and_then(|v| v.to_str().ok()) {
                knobs.set(key, value.trim())?;
            }
        }
        for (key, value) in directives(body) {
            knobs.set(key, value)?;
        }
        Ok(knobs)
    }

    fn set(&mut self, key: &str, value: &str) -> Result<(), KnobError> {
        let number =
            || value.parse::<u64>().map_err(|_| KnobError::NotANumber { key: key.to_owned(), value: value.to_owned() });
        match key {
            "latency_ms" => self.latency_ms = number()?,
            "chunk_delay_ms" => self.chunk_delay_ms = number()?,
            "chunks" => self.chunks = usize::try_from(number()?).unwrap_or(MAX_CHUNKS).clamp(1, MAX_CHUNKS),
            "output_tokens" => self.output_tokens = Some(number()?),
            "retry_after" => self.retry_after = number()?,
            "fault" => self.fault = Some(Fault::parse(value)?),
            "web_searches" => self.web_searches = number()?.min(MAX_WEB_SEARCHES),
            "reported_cost" => self.reported_cost = Some(json_number(key, value)?),
            "bedrock_cache" => self.bedrock_cache = flag(key, value)?,
            // `[mock corrupt_frame]`: shorthand for `fault=corrupt_frame`.
            "corrupt_frame" => {
                if flag(key, value)? {
                    self.fault = Some(Fault::CorruptFrame);
                }
            }
            "exception_type" => {
                self.exception_type =
                    BEDROCK_STREAM_EXCEPTIONS.iter().find(|e| **e == value).copied().ok_or_else(|| {
                        KnobError::NotOneOf {
                            key: key.to_owned(),
                            value: value.to_owned(),
                            allowed: BEDROCK_STREAM_EXCEPTIONS.join(", "),
                        }
                    })?;
            }
            other => return Err(KnobError::UnknownKnob(other.to_owned())),
        }
        Ok(())
    }

    /// A fault set with `POST /mock/fault` applies when the request names none.
    pub(crate) fn apply_standing_fault(&mut self, fault: &str) -> Result<(), KnobError> {
        if self.fault.is_none() {
            self.set("fault", fault)?;
        }
        Ok(())
    }

    pub(crate) fn has(&self, fault: Fault) -> bool {
        self.fault == Some(fault)
    }
}

/// The value a bare word in a directive (`[mock bedrock_cache]`) stands for.
const FLAG: &str = "true";

/// A yes/no knob: a bare word, or `=true` / `=false` (`=1` / `=0`).
fn flag(key: &str, value: &str) -> Result<bool, KnobError> {
    match value {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(KnobError::NotOneOf { key: key.to_owned(), value: value.to_owned(), allowed: "true, false".into() }),
    }
}

/// `value` if it is a JSON number (it is written into answers verbatim, so
/// anything else would break their JSON).
fn json_number(key: &str, value: &str) -> Result<String, KnobError> {
    match serde_json::from_str::<serde_json::Number>(value) {
        Ok(_) if !value.is_empty() && value.trim() == value => Ok(value.to_owned()),
        _ => Err(KnobError::NotAJsonNumber { key: key.to_owned(), value: value.to_owned() }),
    }
}

/// The `output_tokens` a body directive sets, for [`crate::usage_for_request`].
pub(crate) fn body_output_tokens(body: &[u8]) -> Option<u64> {
    directives(body).filter(|(k, _)| *k == "output_tokens").filter_map(|(_, v)| v.parse().ok()).last()
}

/// Every `key=value` pair of every `[mock …]` directive in the raw body; a
/// bare word (no `=`) is a flag, `(word, "true")`. Scanning raw bytes (not
/// parsed JSON) keeps this cheap and format-blind.
fn directives(body: &[u8]) -> impl Iterator<Item = (&str, &str)> {
    const OPEN: &[u8] = b"[mock";
    let mut rest = body;
    std::iter::from_fn(move || loop {
        let start = rest.iter().position(|&b| b == b'[')?;
        rest = &rest[start..];
        let after = &rest[OPEN.len().min(rest.len())..];
        if !rest.starts_with(OPEN) || !matches!(after.first(), Some(b' ' | b']')) {
            rest = &rest[1..];
            continue;
        }
        let end = after.iter().position(|&b| b == b']').unwrap_or(after.len());
        let inner = &after[..end];
        rest = &after[end..];
        return Some(inner);
    })
    .filter_map(|inner| std::str::from_utf8(inner).ok())
    .flat_map(str::split_whitespace)
    .map(|pair| pair.split_once('=').unwrap_or((pair, FLAG)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_directives_override_headers_and_config() {
        let config = MockConfig { latency_ms: 7, chunk_delay_ms: 3, require_api_key: None, ..MockConfig::default() };
        let mut headers = HeaderMap::new();
        headers.insert("x-mock-chunks", "9".parse().unwrap());
        headers.insert("x-mock-fault", "500".parse().unwrap());
        let body = br#"{"content":"hi [mock fault=truncate output_tokens=5] and [mocking] [mock chunks=2]"}"#;
        let knobs = Knobs::read(&config, &headers, body).unwrap();
        assert_eq!(knobs.latency_ms, 7);
        assert_eq!(knobs.chunk_delay_ms, 3);
        assert_eq!(knobs.chunks, 2);
        assert_eq!(knobs.output_tokens, Some(5));
        assert_eq!(knobs.fault, Some(Fault::Truncate));
        assert_eq!(body_output_tokens(body), Some(5));
    }

    #[test]
    fn bad_knobs_are_reported_not_ignored() {
        let config = MockConfig::default();
        let none = HeaderMap::new();
        assert!(matches!(Knobs::read(&config, &none, b"[mock fault=explode]"), Err(KnobError::UnknownFault(_))));
        assert!(matches!(Knobs::read(&config, &none, b"[mock fault=200]"), Err(KnobError::UnknownFault(_))));
        assert!(matches!(Knobs::read(&config, &none, b"[mock latncy=1]"), Err(KnobError::UnknownKnob(_))));
        assert!(matches!(Knobs::read(&config, &none, b"[mock chunks=x]"), Err(KnobError::NotANumber { .. })));
        let plain = Knobs::read(&config, &none, b"no directive [mock").unwrap();
        assert_eq!(plain, Knobs::defaults(&config));
        assert_eq!(Knobs::read(&config, &none, b"[mock chunks=0]").unwrap().chunks, 1);
        assert!(matches!(Knobs::read(&config, &none, b"[mock web_searches=-1]"), Err(KnobError::NotANumber { .. })));
        for bad in ["$0.01", ".5", "1.", "0x10", "NaN", "1e999", "\"1\""] {
            let body = format!("[mock reported_cost={bad}]");
            let got = Knobs::read(&config, &none, body.as_bytes());
            assert!(matches!(got, Err(KnobError::NotAJsonNumber { .. })), "{bad}: {got:?}");
        }
    }

    #[test]
    fn bare_words_are_flags() {
        let config = MockConfig::default();
        let none = HeaderMap::new();
        let knobs = Knobs::read(&config, &none, b"hi [mock bedrock_cache] [mock corrupt_frame chunks=3]").unwrap();
        assert!(knobs.bedrock_cache);
        assert_eq!((knobs.fault, knobs.chunks), (Some(Fault::CorruptFrame), 3));
        assert!(!Knobs::read(&config, &none, b"[mock bedrock_cache=false]").unwrap().bedrock_cache);
        assert_eq!(
            Knobs::read(&config, &none, b"[mock fault=corrupt_frame]").unwrap().fault,
            Some(Fault::CorruptFrame)
        );
        assert!(matches!(Knobs::read(&config, &none, b"[mock verbose]"), Err(KnobError::UnknownKnob(_))));
        assert!(matches!(Knobs::read(&config, &none, b"[mock bedrock_cache=yes]"), Err(KnobError::NotOneOf { .. })));
        let e = Knobs::read(&config, &none, b"[mock exception_type=throttlingException]").unwrap();
        assert_eq!(e.exception_type, "throttlingException");
        assert_eq!(Knobs::defaults(&config).exception_type, "internalServerException");
        assert!(matches!(Knobs::read(&config, &none, b"[mock exception_type=boom]"), Err(KnobError::NotOneOf { .. })));
    }

    #[test]
    fn tool_and_cost_knobs_keep_what_they_are_given() {
        let config = MockConfig::default();
        let mut headers = HeaderMap::new();
        headers.insert("x-mock-web-searches", "2".parse().unwrap());
        headers.insert("x-mock-reported-cost", "0.5".parse().unwrap());
        let from_headers = Knobs::read(&config, &headers, b"{}").unwrap();
        assert_eq!((from_headers.web_searches, from_headers.reported_cost.as_deref()), (2, Some("0.5")));
        let knobs = Knobs::read(&config, &headers, b"[mock web_searches=3 reported_cost=1.5e-05]").unwrap();
        assert_eq!((knobs.web_searches, knobs.reported_cost.as_deref()), (3, Some("1.5e-05")));
    }
}
