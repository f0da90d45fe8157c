//! The ledger's record of one request: [`LedgerRow`] and its parts. Values
//! only (no I/O): the writer lives in `ledger`, the tables in `store`.

use serde::{Deserialize, Deserializer, Serialize};
use tollgate_units::{Money, Usage};

use crate::attribution::Attribution;

/// Where a row's token counts came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UsageSource {
    /// The provider's own usage fields.
    Provider,
    /// Counted locally with the model's tokenizer (provider reported none).
    Estimated,
}

impl UsageSource {
    pub fn as_str(self) -> &'static str {
        match self {
            UsageSource::Provider => "provider",
            UsageSource::Estimated => "estimated",
        }
    }
}

/// Which API a row's request called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    ChatCompletions,
    Embeddings,
    Responses,
    Messages,
    /// Managing files and batches (no spend of its own).
    BatchApi,
    /// One result line of a batch, priced at batch rates.
    BatchChatCompletions,
    BatchEmbeddings,
    BatchResponses,
    BatchMessages,
    ImagesGenerations,
    ImagesEdits,
    AudioTranscriptions,
    AudioTranslations,
    AudioSpeech,
    /// Google's native Gemini API (`generateContent`, `streamGenerateContent`).
    GenerateContent,
}

impl Endpoint {
    pub const ALL: [Endpoint; 15] = [
        Endpoint::ChatCompletions,
        Endpoint::Embeddings,
        Endpoint::Responses,
        Endpoint::Messages,
        Endpoint::BatchApi,
        Endpoint::BatchChatCompletions,
        Endpoint::BatchEmbeddings,
        Endpoint::BatchResponses,
        Endpoint::BatchMessages,
        Endpoint::ImagesGenerations,
        Endpoint::ImagesEdits,
        Endpoint::AudioTranscriptions,
        Endpoint::AudioTranslations,
        Endpoint::AudioSpeech,
        Endpoint::GenerateContent,
    ];

    /// The name in the ledger, the API and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat.completions",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Responses => "responses",
            Endpoint::Messages => "messages",
            Endpoint::BatchApi => "batch_api",
            Endpoint::BatchChatCompletions => "batch.chat.completions",
            Endpoint::BatchEmbeddings => "batch.embeddings",
            Endpoint::BatchResponses => "batch.responses",
            Endpoint::BatchMessages => "batch.messages",
            Endpoint::ImagesGenerations => "images.generations",
            Endpoint::ImagesEdits => "images.edits",
            Endpoint::AudioTranscriptions => "audio.transcriptions",
            Endpoint::AudioTranslations => "audio.translations",
            Endpoint::AudioSpeech => "audio.speech",
            Endpoint::GenerateContent => "generate_content",
        }
    }

    pub fn parse(s: &str) -> Option<Endpoint> {
        Endpoint::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

/// What the response cache did for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheOutcome {
    /// Not looked up (off, or not cacheable).
    Off,
    /// Answered from the cache: $0.
    Hit,
    /// Looked up, not found.
    Miss,
}

impl CacheOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheOutcome::Off => "off",
            CacheOutcome::Hit => "hit",
            CacheOutcome::Miss => "miss",
        }
    }

    pub fn parse(s: &str) -> Option<CacheOutcome> {
        [CacheOutcome::Off, CacheOutcome::Hit, CacheOutcome::Miss].into_iter().find(|c| c.as_str() == s)
    }
}

macro_rules! named {
    ($t:ty, $what:literal) => {
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                <$t>::parse(&s).ok_or_else(|| serde::de::Error::custom(format!(concat!("unknown ", $what, " {:?}"), s)))
            }
        }
    };
}
named!(Endpoint, "endpoint");
named!(CacheOutcome, "cache outcome");

/// One request's entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerRow {
    pub request_id: String,
    /// Unix milliseconds when the request arrived.
    pub time_ms: i64,
    pub key_id: Option<String>,
    /// `chat.completions`, `embeddings`, `responses`, `messages`.
    pub endpoint: Endpoint,
    pub requested_model: Option<String>,
    /// The model that served it (as the provider named it when it did).
    pub model: Option<String>,
    pub provider: Option<String>,
    /// HTTP status sent to the client.
    pub status: u16,
    pub error_code: Option<String>,
    pub usage: Usage,
    pub usage_source: UsageSource,
    /// `None`: no price known for the model (the row is `unpriced`).
    pub cost: Option<Money>,
    /// What provider-side cache reads saved against the uncached input rate.
    pub cache_savings: Money,
    /// A response-cache hit: what the original answer cost (avoided this time).
    #[serde(default)]
    pub response_cache_savings: Money,
    /// The part of `cost` for server-side tool calls (web search) and
    /// per-request fees; included in `cost`.
    #[serde(default)]
    pub tool_cost: Money,
    /// What the provider itself said the request cost (OpenRouter's
    /// `usage.cost`, and hosts that add the same field), beside our own price.
    #[serde(default)]
    pub provider_cost: Option<Money>,
    pub streamed: bool,
    pub client_disconnected: bool,
    /// `hit`, `miss` or `off`.
    pub cache: CacheOutcome,
    pub latency_ms: u64,
    pub ttft_ms: Option<u64>,
    /// Upstream attempts made (retries and fallbacks included).
    pub attempts: u32,
    /// Hash of the stable prompt prefix (system prompt, tools), for prompt-cache insight.
    #[serde(default)]
    pub prefix_hash: Option<String>,
    /// Each attempt: provider, model, status, error code, latency.
    #[serde(default)]
    pub attempt_log: Vec<AttemptRecord>,
    pub attribution: Attribution,
}

impl LedgerRow {
    /// A row for a request that has just passed auth: nothing spent yet,
    /// every outcome field to be filled in as the request goes on.
    pub fn new(request_id: &str, time_ms: i64, key_id: &str, endpoint: Endpoint) -> LedgerRow {
        LedgerRow {
            request_id: request_id.to_string(),
            time_ms,
            key_id: Some(key_id.to_string()),
            endpoint,
            requested_model: None,
            model: None,
            provider: None,
            status: 0,
            error_code: None,
            usage: Usage::default(),
            usage_source: UsageSource::Provider,
            cost: Some(Money::ZERO),
            cache_savings: Money::ZERO,
            response_cache_savings: Money::ZERO,
            tool_cost: Money::ZERO,
            provider_cost: None,
            streamed: false,
            client_disconnected: false,
            cache: CacheOutcome::Off,
            latency_ms: 0,
            ttft_ms: None,
            attempts: 0,
            prefix_hash: None,
            attempt_log: Vec::new(),
            attribution: Attribution::default(),
        }
    }
}

/// One upstream attempt, as the ledger keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AttemptRecord {
    pub provider: String,
    pub model: String,
    /// The upstream's HTTP status, when it answered.
    pub status: Option<u16>,
    /// The public error code this attempt ended with (`None`: it succeeded).
    pub error: Option<String>,
    pub latency_ms: u64,
}

/// The error code of a row made from an [`Intent`] that never got its own
/// row: the gateway stopped (crash, `kill -9`, power loss) while the request
/// was at the provider.
pub const INTERRUPTED: &str = "interrupted";

/// A request about to be sent upstream, written to the spool before it is
/// sent (write-ahead). Its own row resolves it; an intent still unresolved
/// when the gateway starts again becomes an `interrupted` row, costed at
/// `upper_bound`, so spend the provider may bill is never invisible.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Intent {
    pub request_id: String,
    pub time_ms: i64,
    pub key_id: Option<String>,
    pub endpoint: Endpoint,
    pub requested_model: Option<String>,
    /// The first target of the route: the provider and the model sent.
    pub provider: Option<String>,
    pub model: Option<String>,
    pub streamed: bool,
    /// The most the request can cost on its route (what its reservation
    /// holds); `None`: no price known.
    pub upper_bound: Option<Money>,
    pub attribution: Attribution,
}

impl Intent {
    /// The row of a request whose outcome died with the gateway: status 500,
    /// error `interrupted`, usage and cost estimated at the upper bound.
    pub fn interrupted(self) -> LedgerRow {
        let mut row = LedgerRow::new(&self.request_id, self.time_ms, "", self.endpoint);
        row.key_id = self.key_id;
        row.requested_model = self.requested_model;
        row.provider = self.provider;
        row.model = self.model;
        row.streamed = self.streamed;
        row.status = 500;
        row.error_code = Some(INTERRUPTED.to_string());
        row.usage_source = UsageSource::Estimated;
        row.cost = self.upper_bound;
        row.attempts = 1;
        row.attribution = self.attribution;
        row
    }
}
