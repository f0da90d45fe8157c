//! Queries over the ledger and their answers: the request log's pages, spend
//! grouped by dimensions, prompt-cache insight. Values only; every store
//! answers them the same way (the conformance suite holds them to it).

use serde::Serialize;
use tollgate_units::Money;

use crate::error::ApiError;
use crate::record::LedgerRow;

pub const MAX_GROUP_BY: usize = 6;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Hour,
    Day,
}

impl Bucket {
    pub fn parse(s: &str) -> Result<Bucket, ApiError> {
        match s {
            "hour" => Ok(Bucket::Hour),
            "day" => Ok(Bucket::Day),
            _ => Err(ApiError::invalid_param(format!("bucket {s:?} must be hour or day"), "bucket")),
        }
    }

    pub fn millis(self) -> i64 {
        match self {
            Bucket::Hour => 3_600_000,
            Bucket::Day => 86_400_000,
        }
    }
}

/// What to add up, and how to slice it.
#[derive(Debug, Clone, Default)]
pub struct SpendQuery {
    pub group_by: Vec<String>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub bucket: Option<Bucket>,
    pub filters: Vec<(String, String)>,
}

/// One group's totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpendRow {
    /// The grouped dimensions' values, in `group_by` order (`None`: not set).
    pub dims: Vec<Option<String>>,
    /// Bucket start, Unix ms.
    pub bucket_ms: Option<i64>,
    pub requests: u64,
    pub input_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    pub output_tokens: u64,
    pub reasoning_tokens: u64,
    pub cost: Money,
    pub cache_savings: Money,
    pub estimated_requests: u64,
    pub unpriced_requests: u64,
    pub error_requests: u64,
    /// Upstream attempts (retries and fallbacks included): above `requests` in a retry storm.
    pub attempts: u64,
    /// What response-cache hits avoided paying.
    pub response_cache_savings: Money,
    /// The part of `cost` for server-side tool calls and per-request fees.
    pub tool_cost: Money,
    /// Server-side web searches (billed per call).
    pub web_search_requests: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendReport {
    pub group_by: Vec<String>,
    pub rows: Vec<SpendRow>,
    pub total_cost: Money,
    pub total_requests: u64,
    pub unpriced_requests: u64,
}

impl SpendReport {
    /// What response-cache hits avoided, in total.
    pub fn response_cache_savings(&self) -> Money {
        self.rows.iter().map(|r| r.response_cache_savings).sum()
    }

    /// The part of the total cost for tool calls and per-request fees.
    pub fn tool_cost(&self) -> Money {
        self.rows.iter().map(|r| r.tool_cost).sum()
    }

    /// Server-side web searches, in total.
    pub fn web_search_requests(&self) -> u64 {
        self.rows.iter().map(|r| r.web_search_requests).sum()
    }
}

/// Provider-side prompt caching, per model / key / prompt version: how much
/// of the cacheable input was read from cache, what that saved, cache writes
/// that were never read back, and prefixes that keep changing (which defeats
/// the provider's cache).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptCacheRow {
    pub value: Option<String>,
    pub requests: u64,
    pub input_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    pub saved: Money,
    /// Cache-write tokens of prefixes that no request in the window read back.
    pub writes_never_read: u64,
    /// Requests that carried a stable prefix, and how many distinct prefixes they had.
    pub prefixed_requests: u64,
    pub distinct_prefixes: u64,
}

impl PromptCacheRow {
    /// Cached reads ÷ all input, in basis points (exact integer arithmetic).
    pub fn hit_ratio_bp(&self) -> u64 {
        self.cache_read_tokens.saturating_mul(10_000).checked_div(self.input_tokens).unwrap_or(0)
    }

    /// The prefix changes so often that the provider's cache cannot help:
    /// more than one distinct prefix per five requests, over at least five.
    pub fn unstable_prefix(&self) -> bool {
        self.prefixed_requests >= 5 && self.distinct_prefixes > 1 && self.distinct_prefixes * 5 > self.prefixed_requests
    }
}

/// A page query on the request log.
#[derive(Debug, Clone, Default)]
pub struct RequestQuery {
    /// `(dimension, value)` pairs, all of which must match.
    pub filters: Vec<(String, String)>,
    pub limit: usize,
    pub cursor: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RequestPage {
    pub rows: Vec<LedgerRow>,
    pub next_cursor: Option<String>,
}
