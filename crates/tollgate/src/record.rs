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

/// Names from a closed set, kept as `&'static str` on the hot path.
pub fn endpoint_static(s: &str) -> &'static str {
    match s {
        "chat.completions" => "chat.completions",
        "embeddings" => "embeddings",
        "responses" => "responses",
        "messages" => "messages",
        "batch_api" => "batch_api",
        "batch.chat.completions" => "batch.chat.completions",
        "batch.embeddings" => "batch.embeddings",
        "batch.responses" => "batch.responses",
        "batch.messages" => "batch.messages",
        _ => "other",
    }
}

pub fn cache_static(s: &str) -> &'static str {
    match s {
        "hit" => "hit",
        "miss" => "miss",
        _ => "off",
    }
}

fn de_endpoint<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    Ok(endpoint_static(&String::deserialize(d)?))
}

fn de_cache<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    Ok(cache_static(&String::deserialize(d)?))
}

/// A name from a closed set (an alias, so serde does not try to borrow it
/// from the input: `de_endpoint` / `de_cache` map it to its static string).
pub type StaticName = &'static str;

/// One request's entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerRow {
    pub request_id: String,
    /// Unix milliseconds when the request arrived.
    pub time_ms: i64,
    pub key_id: Option<String>,
    /// `chat.completions`, `embeddings`, `responses`, `messages`.
    #[serde(deserialize_with = "de_endpoint")]
    pub endpoint: StaticName,
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
    pub streamed: bool,
    pub client_disconnected: bool,
    /// `hit`, `miss` or `off`.
    #[serde(deserialize_with = "de_cache")]
    pub cache: StaticName,
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
    pub fn new(request_id: &str, time_ms: i64, key_id: &str, endpoint: &'static str) -> LedgerRow {
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
            streamed: false,
            client_disconnected: false,
            cache: "off",
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
