//! The providers' organization usage and cost reports, fed from what the mock served.
//!
//! # What the real APIs look like (checked against their documentation)
//!
//! **OpenAI** (admin key as `Authorization: Bearer`):
//! - `GET /v1/organization/costs`
//!   (<https://platform.openai.com/docs/api-reference/usage/costs>; parameters as
//!   the OpenAPI spec lists them, mirrored at
//!   <https://metacpan.org/source/OVID/OpenAPI-Client-OpenAI-0.21/lib/OpenAPI/Client/OpenAI/Path/organization-costs.pod>):
//!   `start_time` (Unix seconds, inclusive, required), `end_time` (exclusive),
//!   `bucket_width` (only `1d`), `project_ids`, `group_by` (`project_id`,
//!   `line_item`, any combination), `limit` (buckets, 1–180, default 7),
//!   `page` (the previous answer's `next_page`). Answer:
//!   `{"object":"page","data":[{"object":"bucket","start_time","end_time","results":[{"object":"organization.costs.result","amount":{"value":<number>,"currency":"usd"},"line_item","project_id"}]}],"has_more","next_page"}`;
//!   `line_item` / `project_id` are null unless grouped by. `value` is a JSON
//!   number of USD (the spec says "the numeric value of the cost"; real answers
//!   carry many decimals, e.g. `0.8958740000000000`). Days without spend are
//!   still buckets, with `results: []`.
//! - `line_item` strings are not documented; answers of the real API (as
//!   captured in public client code) read `"gpt-4o-mini-2024-07-18, cached input"`,
//!   `"gpt-5.5-2026-04-23, input"`, `"gpt-4.1-2025-04-14, output"`, and
//!   `"web search tool calls"` for the web search tool: the model, `", "`, the kind.
//! - `GET /v1/organization/usage/completions`
//!   (<https://platform.openai.com/docs/api-reference/usage/completions>):
//!   `start_time`, `end_time`, `bucket_width`, `project_ids`, `user_ids`,
//!   `api_key_ids`, `models`, `batch`, `group_by` (`project_id`, `user_id`,
//!   `api_key_id`, `model`, `batch`; newer answers also `service_tier`),
//!   `limit` (1d buckets: default 7, at most 31), `page`. Results are
//!   `organization.usage.completions.result` objects: `input_tokens` (cached
//!   included), `output_tokens`, `input_cached_tokens`, `input_audio_tokens`,
//!   `output_audio_tokens`, `num_model_requests`, and the grouping fields
//!   `project_id`, `user_id`, `api_key_id`, `model`, `batch` (null unless grouped by).
//!   `GET /v1/organization/usage/embeddings` is the same with
//!   `organization.usage.embeddings.result` (`input_tokens`, `num_model_requests`).
//!
//! **Anthropic** Admin API (`x-api-key: <admin key>`, `anthropic-version`):
//! - `GET /v1/organizations/cost_report`
//!   (<https://platform.claude.com/docs/en/api/admin/cost_report>):
//!   `starting_at` (RFC 3339, required), `ending_at`, `bucket_width` (`1d`),
//!   `group_by[]` (`workspace_id`, `description`), `limit` (1–31, default 7),
//!   `page`. Answer `{"data":[{"starting_at","ending_at","results":[…]}],"has_more","next_page"}`,
//!   each result `{"amount","currency":"USD","workspace_id","description","cost_type","context_window","model","service_tier","token_type"}`.
//!   Confirmed: `amount` is "Cost amount in lowest currency units (e.g. cents)
//!   as a decimal string. For example, `"123.45"` in `"USD"` represents
//!   `$1.23`." `cost_type` is `tokens` / `web_search` / `code_execution`;
//!   `token_type` one of `uncached_input_tokens`, `output_tokens`,
//!   `cache_read_input_tokens`, `cache_creation.ephemeral_1h_input_tokens`,
//!   `cache_creation.ephemeral_5m_input_tokens`; `service_tier` `standard` or
//!   `batch`; `context_window` `0-200k` or `200k-1M`; the description fields
//!   are null unless grouped by `description`. Priority Tier costs are not in
//!   this report (<https://platform.claude.com/docs/en/manage-claude/usage-cost-api>).
//! - `GET /v1/organizations/usage_report/messages`
//!   (<https://platform.claude.com/docs/en/api/admin/usage_report/retrieve_messages>):
//!   `starting_at`, `ending_at`, `bucket_width` (`1d` default 7 / at most 31
//!   buckets), `group_by[]` (`api_key_id`, `workspace_id`, `model`,
//!   `service_tier`, `context_window`), filters `api_key_ids[]`,
//!   `workspace_ids[]`, `models[]`, `service_tiers[]`, `context_window[]`,
//!   `limit`, `page`. Each result: `uncached_input_tokens`,
//!   `cache_creation{ephemeral_1h_input_tokens, ephemeral_5m_input_tokens}`,
//!   `cache_read_input_tokens`, `output_tokens`,
//!   `server_tool_use{web_search_requests}`, and the grouping fields
//!   `api_key_id`, `workspace_id`, `model`, `service_tier`, `context_window`
//!   (null unless grouped by). Page tokens look like
//!   `page_MjAyNS0wNS0xNFQwMDowMDowMFo=` (base64 of `2025-05-14T00:00:00Z`).
//!   Buckets are "snapped to the start of the … day in UTC"; `ending_at`
//!   keeps "time buckets that end before" it.
//!
//! # What the mock serves
//!
//! The five report routes above (`1d` buckets only; another `bucket_width` is
//! a 400), in those shapes, with these choices:
//! - Days: bucket starts are UTC midnights. The first bucket is the day of
//!   `start_time` / `starting_at`. OpenAI returns every day whose start is
//!   before `end_time`; Anthropic every day that ends at or before
//!   `ending_at`. Without an end, up to and including today. Days without
//!   usage are buckets with `results: []` (OpenAI does this; assumed for
//!   Anthropic too).
//! - Paging: `limit` buckets a page; `next_page` (null on the last page) is
//!   the next bucket's start: OpenAI base64 of its Unix seconds as 8
//!   big-endian bytes, Anthropic `page_` + base64 of its RFC 3339 text (a bare
//!   RFC 3339 time is accepted too). A request with `page` must repeat the
//!   other parameters, as with the real APIs.
//! - Results are sorted by their grouping fields (null first, then by text).
//! - Auth: with [`crate::MockConfig::admin_api_key`] set, another key gets the
//!   provider's 401; unset, any key (or none) is accepted. Anthropic's routes
//!   need an `anthropic-version` header (else a 400, as Anthropic answers).
//!   These requests are not counted in `/mock/stats`.
//!
//! # The billing book
//!
//! Every answered (2xx, i.e. past the status faults) call of
//! `POST /v1/chat/completions`, `/v1/responses`, `/v1/embeddings` (the
//! OpenAI family; Azure's `/openai/…` routes are Azure's bills, not
//! OpenAI's, and are not recorded) and `POST /v1/messages` (Anthropic; not
//! the Vertex AI routes), streamed or not, is recorded with the usage the
//! answer reports (also when a body fault bent or dropped it: the provider
//! generated and bills those tokens). Key: family, UTC day of the call,
//! project (OpenAI: [`crate::MockConfig::billing_project`], default
//! `proj_tollgate`) or workspace (Anthropic:
//! [`crate::MockConfig::billing_workspace`], default `wrkspc_tollgate`),
//! `api_key_id`, model (as the request named it), service tier (OpenAI chat:
//! the requested `service_tier`, `default` / `flex` / `priority`; others
//! standard) and endpoint (OpenAI completions or embeddings).
//! `api_key_id` is [`api_key_id`]: `key_` + the low 48 bits of the 64-bit
//! FNV-1a hash of the key the call carried, as 12 hex digits, or `key_none`.
//!
//! Tokens map to `tollgate_units::Usage` as the gateway reads the answers:
//! OpenAI `input` = prompt − cached, `cache_read` = cached, `output` =
//! completion − reasoning, `reasoning`, web searches (Responses);
//! embeddings `input` = prompt; Anthropic `input_tokens`, cache read, cache
//! writes by TTL, `output_tokens`, web searches.
//!
//! **Cost**: each call is priced by the built-in catalog
//! (`tollgate_pricing::Catalog::builtin()`, looked up for provider `openai` /
//! `anthropic`, the model and the day) with `tollgate_pricing::cost` under its
//! tier, in integer nano-dollars. A model the catalog does not price costs 0
//! (its tokens still show; `GET /mock/billing` marks the row `priced: false`).
//! The cost is split into lines from `Cost::parts` (each already a whole
//! number of nano-dollars, so the lines add up to the call's total exactly):
//! - OpenAI `line_item`: `"<model>, cached input"` = cache reads,
//!   `"<model>, output"` = output + reasoning (+ audio and image output),
//!   `"web search tool calls"` = web searches (no model, as OpenAI bills
//!   them), `"<model>, input"` = the rest of the total (uncached input and
//!   anything else). A line shows when it has tokens (or searches).
//! - Anthropic `token_type`: `cache_read_input_tokens`,
//!   `cache_creation.ephemeral_5m_input_tokens`,
//!   `cache_creation.ephemeral_1h_input_tokens`, `output_tokens` (+ reasoning),
//!   `uncached_input_tokens` = the rest of the tokens' cost; `cost_type`
//!   `web_search` for searches (model, token type, tier and context window
//!   null). `description` is the mock's own wording, `"<model> Usage - Input
//!   Tokens"`, `"… - Output Tokens"`, `"… - Cache Read Input Tokens"`,
//!   `"… - Cache Write Input Tokens (5m)"` / `"(1h)"`, `"Web Search Usage"`.
//!   `context_window` is `200k-1M` for a call with more than 200,000 input
//!   tokens (cache included), else `0-200k`. Priority-tier rows are left out.
//! - Amounts: OpenAI `value` is the line's nano-dollars written as a decimal
//!   JSON number of USD (`nanos / 10^9`, at most 9 decimals, trailing zeros
//!   dropped, at least one decimal: `0.00122835`, `4.5`, `0.0`), built as text
//!   from the integer (never through a float). Anthropic `amount` is the same
//!   nanos in cents, `nanos / 10^7`, as a decimal string (at most 7
//!   decimals, trailing zeros and a bare point dropped: `"0.53549"`, `"450"`).
//!
//! # Test knobs: `POST /mock/billing`, `GET /mock/billing`
//!
//! `POST /mock/billing` takes a JSON object (all keys optional; the whole
//! body is checked before anything changes; a bad one is a 400
//! `{"error": …}`):
//!
//! ```json
//! {"clear": false,
//!  "price_adjustments": [{"family": "openai", "day": "2026-12-06", "model": "gpt-4o-mini", "percent": "125"}],
//!  "extra": [{"family": "openai", "day": "2026-12-05", "project_id": "proj_outside",
//!             "api_key_id": "key_outside", "model": "gpt-4o", "input_tokens": 1000000,
//!             "output_tokens": 200000, "cached_input_tokens": 0, "requests": 10}]}
//! ```
//!
//! - `clear: true` empties the book (served calls, extras, adjustments) first.
//! - `price_adjustments`: on `day` (UTC, `YYYY-MM-DD`), `family`'s `model`
//!   (exact name) is billed at `percent`/100 of the catalog cost. `percent`
//!   is a non-negative decimal (string or JSON number, at most 9 decimals).
//!   Applied when a report is made, so to calls recorded before and after;
//!   each line of each book row (as `GET /mock/billing` lists them) becomes
//!   `round(nanos × percent / 100)`, half away from zero, in integers. A later
//!   adjustment of the same family, day and model replaces the earlier.
//! - `extra`: usage that did not go through the mock (e.g. another client
//!   of the same organization), priced by the catalog like served calls: as
//!   `requests` equal calls when every count divides evenly by `requests`,
//!   else as one call of the whole usage. Keys: `family` (`openai` | `anthropic`), `day`,
//!   `model` (required); `project_id` (OpenAI) or `workspace_id` (Anthropic)
//!   (default the configured one); `api_key_id` (default `key_none`);
//!   `requests` (default 1); token counts, disjoint, default 0:
//!   `input_tokens` (uncached input), `cached_input_tokens` (cache reads),
//!   `cache_creation_5m_input_tokens`, `cache_creation_1h_input_tokens`,
//!   `output_tokens` (reasoning included), `web_search_requests`;
//!   `service_tier` (`standard` (= OpenAI's `default`), `batch`, `flex`,
//!   `priority`; default standard); `endpoint` (OpenAI: `completions`
//!   (default) or `embeddings`). Unknown keys are refused.
//!
//! The answer is `{"extra": n, "price_adjustments": m}` (what the book holds
//! now). `GET /mock/billing` answers the book: `{"rows": [{"family", "day",
//! "project_id", "api_key_id", "model", "service_tier", "endpoint",
//! "source": "served"|"extra", "requests", "usage": {…Usage buckets},
//! "context_window", "priced", "percent", "catalog_nanos": {lines…, "total"},
//! "billed_nanos": {…}}], "price_adjustments": […]}`. `POST /mock/reset`
//! empties the book too.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, NaiveDate};
use http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use serde_json::{json, Map, Value};
use tollgate_pricing::{Catalog, Cost, ServiceTier};
use tollgate_providers::Usage;

use crate::errors::{error_response, invalid_value, missing_param, openai_param_error, Family};
use crate::exchange::App;
use crate::usage::MockUsage;
use crate::MockConfig;

const SECS_PER_DAY: i64 = 86_400;
const NANOS_PER_USD: i64 = 1_000_000_000;
const NANOS_PER_CENT: i64 = 10_000_000;
/// Above this many input tokens (cache included) a call is Anthropic's `200k-1M` context window.
const LONG_CONTEXT_TOKENS: u64 = 200_000;
/// Report routes' default number of buckets per page.
const DEFAULT_LIMIT: u64 = 7;
/// OpenAI costs' largest page; the usage routes and Anthropic's take at most 31 daily buckets.
const OPENAI_COSTS_MAX_LIMIT: u64 = 180;
const DAILY_MAX_LIMIT: u64 = 31;

/// The `api_key_id` a call carrying `key` is billed under: `key_` and 12 hex
/// digits (the low 48 bits of the key's 64-bit FNV-1a hash), or `key_none`
/// for a call without a key. The key itself is never kept.
pub fn api_key_id(key: Option<&str>) -> String {
    key_id_text(key.map(key_hash))
}

fn key_hash(key: &str) -> u64 {
    crate::usage::fnv1a(key.as_bytes()) & 0xffff_ffff_ffff
}

fn key_id_text(hash: Option<u64>) -> String {
    match hash {
        Some(h) => format!("key_{h:012x}"),
        None => "key_none".to_owned(),
    }
}

/// Whose organization a row bills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Fam {
    OpenAi,
    Anthropic,
}

impl Fam {
    fn name(self) -> &'static str {
        match self {
            Fam::OpenAi => "openai",
            Fam::Anthropic => "anthropic",
        }
    }

    fn parse(s: &str) -> Option<Fam> {
        match s {
            "openai" => Some(Fam::OpenAi),
            "anthropic" => Some(Fam::Anthropic),
            _ => None,
        }
    }
}

/// Which usage report a row shows in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Endpoint {
    /// OpenAI chat completions and Responses.
    Completions,
    /// OpenAI embeddings.
    Embeddings,
    /// Anthropic Messages.
    Messages,
}

impl Endpoint {
    fn name(self) -> &'static str {
        match self {
            Endpoint::Completions => "completions",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Messages => "messages",
        }
    }
}

/// The tier's name in a report: OpenAI calls the standard tier `default`.
fn tier_name(family: Fam, tier: ServiceTier) -> &'static str {
    match (family, tier) {
        (Fam::OpenAi, ServiceTier::Standard) => "default",
        (_, t) => t.as_str(),
    }
}

/// A served call's key in the book; the model is the next level (so a
/// known entry is found without allocating).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ServedKey {
    family: Fam,
    endpoint: Endpoint,
    day: i64,
    /// The low 48 bits of the call's key's FNV-1a hash; `None` without a key.
    key: Option<u64>,
    tier: ServiceTier,
}

/// Usage injected with `POST /mock/billing`.
#[derive(Debug, Clone)]
struct Extra {
    family: Fam,
    endpoint: Endpoint,
    day: i64,
    project: Option<String>,
    api_key_id: String,
    model: String,
    tier: ServiceTier,
    usage: Usage,
    requests: u64,
}

/// A price adjustment: `num / den` percent.
#[derive(Debug, Clone)]
struct Adjustment {
    family: Fam,
    day: i64,
    model: String,
    num: i128,
    den: i128,
    text: String,
}

#[derive(Debug, Default)]
struct Ledger {
    /// key → model → distinct per-call usage → calls.
    served: HashMap<ServedKey, HashMap<String, HashMap<Usage, u64>>>,
    extras: Vec<Extra>,
    adjustments: Vec<Adjustment>,
}

/// The mock's billing book: what it served, plus injected usage and prices.
#[derive(Debug, Default)]
pub(crate) struct Book(Mutex<Ledger>);

impl Book {
    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Forgets everything (`POST /mock/reset`).
    pub(crate) fn clear(&self) {
        *self.ledger() = Ledger::default();
    }

    fn record(&self, family: Fam, endpoint: Endpoint, key: Option<&str>, model: &str, tier: ServiceTier, usage: Usage) {
        let day = today();
        let key = ServedKey { family, endpoint, day, key: key.map(key_hash), tier };
        let mut ledger = self.ledger();
        let models = ledger.served.entry(key).or_default();
        if !models.contains_key(model) {
            models.insert(model.to_owned(), HashMap::new());
        }
        if let Some(usages) = models.get_mut(model) {
            *usages.entry(usage).or_insert(0) += 1;
        }
    }

    /// The book's rows, priced, sorted.
    fn rows(&self, config: &MockConfig) -> Vec<Row> {
        let (served, extras, adjustments) = {
            let ledger = self.ledger();
            let served: Vec<(ServedKey, String, Usage, u64)> = ledger
                .served
                .iter()
                .flat_map(|(key, models)| {
                    models.iter().flat_map(move |(model, usages)| {
                        usages.iter().map(move |(usage, n)| (*key, model.clone(), *usage, *n))
                    })
                })
                .collect();
            (served, ledger.extras.clone(), ledger.adjustments.clone())
        };
        let project_of = |family: Fam| match family {
            Fam::OpenAi => config.billing_project.clone(),
            Fam::Anthropic => config.billing_workspace.clone(),
        };
        let mut rows: Vec<Row> = served
            .into_iter()
            .map(|(key, model, per_call, calls)| {
                let catalog = price(key.family, &model, key.day, key.tier, &per_call);
                Row {
                    family: key.family,
                    endpoint: key.endpoint,
                    day: key.day,
                    project: project_of(key.family),
                    api_key_id: key_id_text(key.key),
                    tier: key.tier,
                    extra: false,
                    requests: calls,
                    usage: scaled(&per_call, calls),
                    long_context: per_call.input_tokens() > LONG_CONTEXT_TOKENS,
                    priced: catalog.is_some(),
                    catalog: catalog.unwrap_or_default().times(calls),
                    billed: Lines::default(),
                    percent: None,
                    model,
                }
            })
            .chain(extras.into_iter().map(|e| {
                let catalog = price_extra(&e);
                Row {
                    family: e.family,
                    endpoint: e.endpoint,
                    day: e.day,
                    project: e.project.unwrap_or_else(|| project_of(e.family)),
                    api_key_id: e.api_key_id,
                    tier: e.tier,
                    extra: true,
                    requests: e.requests,
                    long_context: e.usage.input_tokens() > LONG_CONTEXT_TOKENS.saturating_mul(e.requests.max(1)),
                    usage: e.usage,
                    priced: catalog.is_some(),
                    catalog: catalog.unwrap_or_default(),
                    billed: Lines::default(),
                    percent: None,
                    model: e.model,
                }
            }))
            .collect();
        for row in &mut rows {
            let adjustment =
                adjustments.iter().rev().find(|a| a.family == row.family && a.day == row.day && a.model == row.model);
            row.billed = match adjustment {
                Some(a) => {
                    row.percent = Some(a.text.clone());
                    row.catalog.map(|n| scale_percent(n, a.num, a.den))
                }
                None => row.catalog,
            };
        }
        rows.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        rows
    }
}

fn today() -> i64 {
    i64::try_from(crate::exchange::unix_now()).unwrap_or(i64::MAX).div_euclid(SECS_PER_DAY)
}

fn scaled(u: &Usage, n: u64) -> Usage {
    let m = |x: u64| x.saturating_mul(n);
    Usage {
        input: m(u.input),
        input_image: m(u.input_image),
        input_audio: m(u.input_audio),
        cache_read: m(u.cache_read),
        cache_write_5m: m(u.cache_write_5m),
        cache_write_1h: m(u.cache_write_1h),
        output: m(u.output),
        output_audio: m(u.output_audio),
        output_image: m(u.output_image),
        reasoning: m(u.reasoning),
        web_search_requests: m(u.web_search_requests),
        images: m(u.images),
        audio_ms: m(u.audio_ms),
        characters: m(u.characters),
    }
}

/// One call's (or one extra row's) cost lines at the catalog's prices, or
/// `None` when the catalog does not price the model.
fn price(family: Fam, model: &str, day: i64, tier: ServiceTier, usage: &Usage) -> Option<Lines> {
    let at = DateTime::from_timestamp(day.checked_mul(SECS_PER_DAY)?, 0)?;
    let entry = Catalog::builtin().lookup(Some(family.name()), model, at)?;
    Some(Lines::from_cost(&tollgate_pricing::cost(entry, usage, tier)))
}

/// An extra row's cost: as `requests` equal calls when every count divides
/// evenly by `requests` (so per-call tiers such as long context apply as
/// they would), else as one call of the whole usage.
fn price_extra(e: &Extra) -> Option<Lines> {
    let n = e.requests.max(1);
    let u = &e.usage;
    let counts = [u.input, u.cache_read, u.cache_write_5m, u.cache_write_1h, u.output, u.web_search_requests];
    if n > 1 && counts.iter().all(|c| c % n == 0) {
        let per_call = Usage {
            input: u.input / n,
            cache_read: u.cache_read / n,
            cache_write_5m: u.cache_write_5m / n,
            cache_write_1h: u.cache_write_1h / n,
            output: u.output / n,
            web_search_requests: u.web_search_requests / n,
            ..Usage::default()
        };
        return price(e.family, &e.model, e.day, e.tier, &per_call).map(|l| l.times(n));
    }
    price(e.family, &e.model, e.day, e.tier, u)
}

/// `round(nanos × num / (100 × den))`, half away from zero, in integers.
fn scale_percent(nanos: i64, num: i128, den: i128) -> i64 {
    let x = i128::from(nanos) * num;
    let d = 100 * den;
    let (q, r) = (x / d, x % d);
    let q = if 2 * r.abs() >= d { q + x.signum() } else { q };
    i64::try_from(q).unwrap_or(if q < 0 { i64::MIN } else { i64::MAX })
}

/// A cost split into report lines, in nano-dollars.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Lines {
    /// Uncached input and everything not in another line.
    input: i64,
    cache_read: i64,
    cache_write_5m: i64,
    cache_write_1h: i64,
    /// Output, reasoning, audio and image output.
    output: i64,
    web_search: i64,
}

impl Lines {
    fn from_cost(cost: &Cost) -> Lines {
        let p = &cost.parts;
        let output = [p.output, p.reasoning, p.output_audio, p.output_image].iter().map(|m| m.nanos()).sum::<i64>();
        let mut lines = Lines {
            input: 0,
            cache_read: p.cache_read.nanos(),
            cache_write_5m: p.cache_write_5m.nanos(),
            cache_write_1h: p.cache_write_1h.nanos(),
            output,
            web_search: p.web_search.nanos(),
        };
        // The rest of the total, so the lines add up to it exactly.
        lines.input = cost.total.nanos().saturating_sub(lines.total());
        lines
    }

    fn total(&self) -> i64 {
        [self.input, self.cache_read, self.cache_write_5m, self.cache_write_1h, self.output, self.web_search]
            .iter()
            .fold(0i64, |a, b| a.saturating_add(*b))
    }

    fn map(self, f: impl Fn(i64) -> i64) -> Lines {
        Lines {
            input: f(self.input),
            cache_read: f(self.cache_read),
            cache_write_5m: f(self.cache_write_5m),
            cache_write_1h: f(self.cache_write_1h),
            output: f(self.output),
            web_search: f(self.web_search),
        }
    }

    fn times(self, n: u64) -> Lines {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        self.map(|x| x.saturating_mul(n))
    }

    fn to_json(self) -> Value {
        json!({
            "input": self.input,
            "cache_read": self.cache_read,
            "cache_write_5m": self.cache_write_5m,
            "cache_write_1h": self.cache_write_1h,
            "output": self.output,
            "web_search": self.web_search,
            "total": self.total(),
        })
    }
}

/// One row of the book: a served key × model × distinct per-call usage, or one extra.
#[derive(Debug, Clone)]
struct Row {
    family: Fam,
    endpoint: Endpoint,
    day: i64,
    project: String,
    api_key_id: String,
    model: String,
    tier: ServiceTier,
    extra: bool,
    requests: u64,
    /// All the row's calls together.
    usage: Usage,
    /// Anthropic's `200k-1M` context window (per call).
    long_context: bool,
    priced: bool,
    /// At catalog prices.
    catalog: Lines,
    /// After the day's price adjustment, if any.
    billed: Lines,
    percent: Option<String>,
}

type RowSortKey<'a> = (Fam, i64, &'a str, &'a str, &'a str, &'static str, Endpoint, bool, [u64; 8]);

impl Row {
    fn sort_key(&self) -> RowSortKey<'_> {
        let u = &self.usage;
        (
            self.family,
            self.day,
            &self.project,
            &self.api_key_id,
            &self.model,
            self.tier.as_str(),
            self.endpoint,
            self.extra,
            [
                u.input,
                u.cache_read,
                u.cache_write_5m,
                u.cache_write_1h,
                u.output,
                u.reasoning,
                u.web_search_requests,
                self.requests,
            ],
        )
    }

    fn context_window(&self) -> &'static str {
        if self.long_context {
            "200k-1M"
        } else {
            "0-200k"
        }
    }

    fn output_tokens(&self) -> u64 {
        self.usage.output_tokens()
    }

    fn to_json(&self) -> Value {
        json!({
            "family": self.family.name(),
            "day": day_text(self.day),
            "project_id": self.project,
            "api_key_id": self.api_key_id,
            "model": self.model,
            "service_tier": tier_name(self.family, self.tier),
            "endpoint": self.endpoint.name(),
            "source": if self.extra { "extra" } else { "served" },
            "requests": self.requests,
            "usage": serde_json::to_value(self.usage).unwrap_or(Value::Null),
            "context_window": self.context_window(),
            "priced": self.priced,
            "percent": self.percent,
            "catalog_nanos": self.catalog.to_json(),
            "billed_nanos": self.billed.to_json(),
        })
    }

    /// OpenAI cost lines: `(line_item, nanos)`, each line that has tokens.
    fn openai_lines(&self) -> Vec<(String, i64)> {
        let u = &self.usage;
        let b = &self.billed;
        let mut lines = Vec::with_capacity(4);
        let uncached =
            u.input.saturating_add(u.input_audio).saturating_add(u.input_image).saturating_add(u.cache_write_tokens());
        if uncached > 0 || b.input != 0 || b.cache_write_5m != 0 || b.cache_write_1h != 0 {
            let nanos = b.input.saturating_add(b.cache_write_5m).saturating_add(b.cache_write_1h);
            lines.push((format!("{}, input", self.model), nanos));
        }
        if u.cache_read > 0 || b.cache_read != 0 {
            lines.push((format!("{}, cached input", self.model), b.cache_read));
        }
        if self.output_tokens() > 0 || b.output != 0 {
            lines.push((format!("{}, output", self.model), b.output));
        }
        if u.web_search_requests > 0 || b.web_search != 0 {
            lines.push(("web search tool calls".to_owned(), b.web_search));
        }
        lines
    }

    /// Anthropic cost lines: `(description, cost_type, token_type, nanos)`.
    fn anthropic_lines(&self) -> Vec<(String, &'static str, Option<&'static str>, i64)> {
        let u = &self.usage;
        let b = &self.billed;
        let m = &self.model;
        let mut lines = Vec::with_capacity(6);
        let uncached = u.input.saturating_add(u.input_audio).saturating_add(u.input_image);
        if uncached > 0 || b.input != 0 {
            lines.push((format!("{m} Usage - Input Tokens"), "tokens", Some("uncached_input_tokens"), b.input));
        }
        if self.output_tokens() > 0 || b.output != 0 {
            lines.push((format!("{m} Usage - Output Tokens"), "tokens", Some("output_tokens"), b.output));
        }
        if u.cache_read > 0 || b.cache_read != 0 {
            lines.push((
                format!("{m} Usage - Cache Read Input Tokens"),
                "tokens",
                Some("cache_read_input_tokens"),
                b.cache_read,
            ));
        }
        if u.cache_write_5m > 0 || b.cache_write_5m != 0 {
            lines.push((
                format!("{m} Usage - Cache Write Input Tokens (5m)"),
                "tokens",
                Some("cache_creation.ephemeral_5m_input_tokens"),
                b.cache_write_5m,
            ));
        }
        if u.cache_write_1h > 0 || b.cache_write_1h != 0 {
            lines.push((
                format!("{m} Usage - Cache Write Input Tokens (1h)"),
                "tokens",
                Some("cache_creation.ephemeral_1h_input_tokens"),
                b.cache_write_1h,
            ));
        }
        if u.web_search_requests > 0 || b.web_search != 0 {
            lines.push(("Web Search Usage".to_owned(), "web_search", None, b.web_search));
        }
        lines
    }
}

// ───────────────────────────── recording hooks ─────────────────────────────

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "))
}

fn x_api_key(headers: &HeaderMap) -> Option<&str> {
    headers.get("x-api-key").and_then(|v| v.to_str().ok())
}

/// An answered OpenAI chat completion or Responses call. `tier` is the
/// answer's `service_tier` (`default`, `flex`, `priority`). Azure's routes
/// (`/openai/…`) are not OpenAI's bills and are skipped.
pub(crate) fn served_completion(
    app: &App,
    uri: &Uri,
    headers: &HeaderMap,
    model: &str,
    tier: &str,
    u: &MockUsage,
    web_searches: u64,
) {
    if uri.path().starts_with("/openai/") {
        return;
    }
    let tier = match tier {
        "flex" => ServiceTier::Flex,
        "priority" => ServiceTier::Priority,
        _ => ServiceTier::Standard,
    };
    let usage = Usage {
        input: u.prompt_tokens - u.cache_read_tokens,
        cache_read: u.cache_read_tokens,
        output: u.output_tokens - u.reasoning_tokens,
        reasoning: u.reasoning_tokens,
        web_search_requests: web_searches,
        ..Usage::default()
    };
    app.billing().record(Fam::OpenAi, Endpoint::Completions, bearer(headers), model, tier, usage);
}

/// An answered OpenAI embeddings call (not Azure's).
pub(crate) fn served_embedding(app: &App, uri: &Uri, headers: &HeaderMap, model: &str, prompt_tokens: u64) {
    if uri.path().starts_with("/openai/") {
        return;
    }
    let usage = Usage { input: prompt_tokens, ..Usage::default() };
    app.billing().record(Fam::OpenAi, Endpoint::Embeddings, bearer(headers), model, ServiceTier::Standard, usage);
}

/// An answered Anthropic Messages call (`POST /v1/messages`).
pub(crate) fn served_message(app: &App, headers: &HeaderMap, model: &str, u: &MockUsage, web_searches: u64) {
    let usage = Usage {
        input: u.anthropic_input_tokens(),
        cache_read: u.cache_read_tokens,
        cache_write_5m: u.cache_write_5m_tokens,
        cache_write_1h: u.cache_write_1h_tokens,
        output: u.output_tokens,
        web_search_requests: web_searches,
        ..Usage::default()
    };
    app.billing().record(Fam::Anthropic, Endpoint::Messages, x_api_key(headers), model, ServiceTier::Standard, usage);
}

// ───────────────────────────── query parameters ─────────────────────────────

/// The query's `(name, value)` pairs, percent-decoded (`+` is a space).
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(uri: &Uri) -> Query {
        let pairs = uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect();
        Query(pairs)
    }

    /// Every value of `name` or `name[]`, in order.
    fn values(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name || k.strip_suffix("[]") == Some(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn one(&self, name: &str) -> Option<&str> {
        self.values(name).into_iter().next()
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn day_text(day: i64) -> String {
    day.checked_mul(SECS_PER_DAY)
        .and_then(|s| DateTime::from_timestamp(s, 0))
        .map_or_else(|| day.to_string(), |d| d.format("%Y-%m-%d").to_string())
}

fn rfc3339(day: i64) -> String {
    day.checked_mul(SECS_PER_DAY)
        .and_then(|s| DateTime::from_timestamp(s, 0))
        .map_or_else(|| day.to_string(), |d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
}

fn parse_day(s: &str) -> Option<i64> {
    let date = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    Some(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp().div_euclid(SECS_PER_DAY))
}

fn parse_rfc3339_secs(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s).ok().map(|d| d.timestamp())
}

/// The days a request covers: `first..end` (end exclusive), and its page.
#[derive(Debug, Clone, Copy)]
struct Window {
    first: i64,
    end: i64,
}

impl Window {
    /// The page starting at `cursor` (or the first day): its days and the next page's first day.
    fn page(self, cursor: Option<i64>, limit: u64) -> (Vec<i64>, Option<i64>) {
        let from = cursor.map_or(self.first, |c| c.max(self.first));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let to = from.saturating_add(limit).min(self.end);
        let days: Vec<i64> = (from..to.max(from)).collect();
        let next = (to < self.end && from < self.end).then_some(to);
        (days, next)
    }
}

// ───────────────────────────── admin auth ─────────────────────────────

#[allow(clippy::result_large_err)]
fn openai_admin(app: &App, headers: &HeaderMap) -> Result<(), Response> {
    match &app.config().admin_api_key {
        Some(expected) if bearer(headers) != Some(expected.as_str()) => {
            Err(error_response(Family::OpenAi, 401, "Incorrect API key provided.", None))
        }
        _ => Ok(()),
    }
}

#[allow(clippy::result_large_err)]
fn anthropic_admin(app: &App, headers: &HeaderMap) -> Result<(), Response> {
    if let Some(expected) = &app.config().admin_api_key {
        if x_api_key(headers) != Some(expected.as_str()) {
            return Err(error_response(Family::Anthropic, 401, "invalid x-api-key", None));
        }
    }
    if !headers.contains_key("anthropic-version") {
        return Err(anthropic_400("anthropic-version: header is required"));
    }
    Ok(())
}

fn anthropic_400(message: &str) -> Response {
    error_response(Family::Anthropic, 400, message, None)
}

// ───────────────────────────── OpenAI routes ─────────────────────────────

/// `limit`, `bucket_width`, the window and the page of an OpenAI report request.
#[allow(clippy::result_large_err)]
fn openai_paging(q: &Query, max_limit: u64) -> Result<(Window, Option<i64>, u64), Response> {
    if let Some(width) = q.one("bucket_width") {
        if width != "1d" {
            return Err(invalid_value("bucket_width", width, "The mock supports only '1d'."));
        }
    }
    let start = match q.one("start_time") {
        None | Some("") => return Err(missing_param("start_time")),
        Some(s) => s.parse::<i64>().map_err(|_| {
            openai_param_error(
                &format!("Invalid type for 'start_time': expected an integer, got '{s}'."),
                "start_time",
                "invalid_type",
            )
        })?,
    };
    let end = match q.one("end_time") {
        None | Some("") => today() + 1,
        Some(s) => {
            let secs = s.parse::<i64>().map_err(|_| {
                openai_param_error(
                    &format!("Invalid type for 'end_time': expected an integer, got '{s}'."),
                    "end_time",
                    "invalid_type",
                )
            })?;
            // Every day that starts before end_time.
            secs.saturating_add(SECS_PER_DAY - 1).div_euclid(SECS_PER_DAY)
        }
    };
    let limit = parse_limit(q, max_limit, |message, code| openai_param_error(message, "limit", code))?;
    let cursor = match q.one("page") {
        None | Some("") => None,
        Some(p) => Some(decode_openai_page(p).ok_or_else(|| invalid_value("page", p, "Invalid page cursor."))?),
    };
    Ok((Window { first: start.div_euclid(SECS_PER_DAY), end }, cursor, limit))
}

#[allow(clippy::result_large_err)]
fn parse_limit(q: &Query, max: u64, err: impl Fn(&str, &str) -> Response) -> Result<u64, Response> {
    let Some(text) = q.one("limit").filter(|t| !t.is_empty()) else { return Ok(DEFAULT_LIMIT) };
    let n: i64 = text
        .parse()
        .map_err(|_| err(&format!("Invalid type for 'limit': expected an integer, got '{text}'."), "invalid_type"))?;
    if n < 1 {
        return Err(err(
            &format!("Invalid 'limit': integer below minimum value. Expected a value >= 1, but got {n} instead."),
            "integer_below_min_value",
        ));
    }
    let n = n.unsigned_abs();
    if n > max {
        return Err(err(
            &format!("Invalid 'limit': integer above maximum value. Expected a value <= {max}, but got {n} instead."),
            "integer_above_max_value",
        ));
    }
    Ok(n)
}

fn encode_openai_page(day: i64) -> String {
    base64::engine::general_purpose::STANDARD.encode(day.saturating_mul(SECS_PER_DAY).to_be_bytes())
}

fn decode_openai_page(page: &str) -> Option<i64> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(page).ok()?;
    let secs = i64::from_be_bytes(<[u8; 8]>::try_from(bytes.as_slice()).ok()?);
    Some(secs.div_euclid(SECS_PER_DAY))
}

#[allow(clippy::result_large_err)]
fn check_group_by<'q>(q: &'q Query, allowed: &[&str], family: Family) -> Result<Vec<&'q str>, Response> {
    let groups = q.values("group_by");
    for g in &groups {
        if !allowed.contains(g) {
            let allowed_text = allowed.iter().map(|a| format!("'{a}'")).collect::<Vec<_>>().join(", ");
            return Err(match family {
                Family::Anthropic => anthropic_400(&format!("group_by: Input should be {allowed_text}")),
                _ => invalid_value("group_by", g, &format!("Supported values are: {allowed_text}.")),
            });
        }
    }
    Ok(groups)
}

fn json_response(text: String) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], text).into_response()
}

fn json_opt(s: Option<&str>) -> String {
    s.map_or_else(|| "null".to_owned(), |s| Value::from(s).to_string())
}

/// `nanos` nano-dollars as a JSON number of USD, written from the integer:
/// at most 9 decimals, trailing zeros dropped, at least one decimal.
pub(crate) fn usd_number(nanos: i64) -> String {
    decimal_text(nanos, NANOS_PER_USD, 9, true)
}

/// `nanos` nano-dollars as a decimal string of cents (Anthropic's `amount`).
pub(crate) fn cents_text(nanos: i64) -> String {
    decimal_text(nanos, NANOS_PER_CENT, 7, false)
}

fn decimal_text(nanos: i64, per_unit: i64, digits: usize, keep_point: bool) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let abs = nanos.unsigned_abs();
    let per = per_unit.unsigned_abs();
    let frac = format!("{:0digits$}", abs % per);
    let frac = frac.trim_end_matches('0');
    match (frac.is_empty(), keep_point) {
        (true, true) => format!("{sign}{}.0", abs / per),
        (true, false) => format!("{sign}{}", abs / per),
        (false, _) => format!("{sign}{}.{frac}", abs / per),
    }
}

/// `GET /v1/organization/costs`.
pub(crate) async fn openai_costs(State(app): State<App>, uri: Uri, headers: HeaderMap) -> Response {
    if let Err(r) = openai_admin(&app, &headers) {
        return r;
    }
    let q = Query::parse(&uri);
    let (window, cursor, limit) = match openai_paging(&q, OPENAI_COSTS_MAX_LIMIT) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let groups = match check_group_by(&q, &["project_id", "line_item"], Family::OpenAi) {
        Ok(g) => g,
        Err(r) => return r,
    };
    let (by_project, by_line) = (groups.contains(&"project_id"), groups.contains(&"line_item"));
    let projects = q.values("project_ids");
    let (days, next) = window.page(cursor, limit);
    let rows = app.billing().rows(app.config());

    let mut out = String::from("{\"object\":\"page\",\"data\":[");
    for (i, day) in days.iter().enumerate() {
        let mut results: BTreeMap<(Option<&str>, Option<String>), i64> = BTreeMap::new();
        for row in rows.iter().filter(|r| r.family == Fam::OpenAi && r.day == *day) {
            if !projects.is_empty() && !projects.contains(&row.project.as_str()) {
                continue;
            }
            for (line, nanos) in row.openai_lines() {
                let key = (by_project.then_some(row.project.as_str()), by_line.then_some(line));
                let sum = results.entry(key).or_insert(0);
                *sum = sum.saturating_add(nanos);
            }
        }
        if i > 0 {
            out.push(',');
        }
        let start = day.saturating_mul(SECS_PER_DAY);
        out.push_str(&format!(
            "{{\"object\":\"bucket\",\"start_time\":{start},\"end_time\":{},\"results\":[",
            start.saturating_add(SECS_PER_DAY)
        ));
        for (j, ((project, line), nanos)) in results.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            out.push_str(&format!(
                "{{\"object\":\"organization.costs.result\",\"amount\":{{\"value\":{},\"currency\":\"usd\"}},\"line_item\":{},\"project_id\":{}}}",
                usd_number(*nanos),
                json_opt(line.as_deref()),
                json_opt(*project),
            ));
        }
        out.push_str("]}");
    }
    out.push_str(&format!(
        "],\"has_more\":{},\"next_page\":{}}}",
        next.is_some(),
        json_opt(next.map(encode_openai_page).as_deref())
    ));
    json_response(out)
}

/// Token sums of one usage result.
#[derive(Debug, Default, Clone, Copy)]
struct Sums {
    input: u64,
    cached: u64,
    cache_write_5m: u64,
    cache_write_1h: u64,
    output: u64,
    web_searches: u64,
    requests: u64,
}

impl Sums {
    fn add(&mut self, row: &Row) {
        let u = &row.usage;
        self.input = self.input.saturating_add(u.input.saturating_add(u.input_audio).saturating_add(u.input_image));
        self.cached = self.cached.saturating_add(u.cache_read);
        self.cache_write_5m = self.cache_write_5m.saturating_add(u.cache_write_5m);
        self.cache_write_1h = self.cache_write_1h.saturating_add(u.cache_write_1h);
        self.output = self.output.saturating_add(row.output_tokens());
        self.web_searches = self.web_searches.saturating_add(u.web_search_requests);
        self.requests = self.requests.saturating_add(row.requests);
    }
}

/// A usage result's grouping fields, `None` when not grouped by (or null).
type GroupKey = Vec<Option<String>>;

/// `GET /v1/organization/usage/completions`.
pub(crate) async fn openai_usage_completions(State(app): State<App>, uri: Uri, headers: HeaderMap) -> Response {
    openai_usage(&app, &uri, &headers, Endpoint::Completions)
}

/// `GET /v1/organization/usage/embeddings`.
pub(crate) async fn openai_usage_embeddings(State(app): State<App>, uri: Uri, headers: HeaderMap) -> Response {
    openai_usage(&app, &uri, &headers, Endpoint::Embeddings)
}

fn openai_usage(app: &App, uri: &Uri, headers: &HeaderMap, endpoint: Endpoint) -> Response {
    if let Err(r) = openai_admin(app, headers) {
        return r;
    }
    let q = Query::parse(uri);
    let (window, cursor, limit) = match openai_paging(&q, DAILY_MAX_LIMIT) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let fields: &[&str] = match endpoint {
        Endpoint::Completions => &["project_id", "user_id", "api_key_id", "model", "batch", "service_tier"],
        _ => &["project_id", "user_id", "api_key_id", "model"],
    };
    let groups = match check_group_by(&q, fields, Family::OpenAi) {
        Ok(g) => g,
        Err(r) => return r,
    };
    let batch_filter = match q.one("batch") {
        None | Some("") => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(other) => return invalid_value("batch", other, "Expected a boolean."),
    };
    let (projects, users, keys, models) =
        (q.values("project_ids"), q.values("user_ids"), q.values("api_key_ids"), q.values("models"));
    let (days, next) = window.page(cursor, limit);
    let rows = app.billing().rows(app.config());
    let object = match endpoint {
        Endpoint::Embeddings => "organization.usage.embeddings.result",
        _ => "organization.usage.completions.result",
    };

    let data: Vec<Value> = days
        .iter()
        .map(|day| {
            let mut results: BTreeMap<GroupKey, Sums> = BTreeMap::new();
            for row in rows.iter().filter(|r| r.family == Fam::OpenAi && r.endpoint == endpoint && r.day == *day) {
                let batch = row.tier == ServiceTier::Batch;
                // The mock has no users: a user filter matches nothing.
                if (!projects.is_empty() && !projects.contains(&row.project.as_str()))
                    || !users.is_empty()
                    || (!keys.is_empty() && !keys.contains(&row.api_key_id.as_str()))
                    || (!models.is_empty() && !models.contains(&row.model.as_str()))
                    || batch_filter.is_some_and(|b| b != batch)
                {
                    continue;
                }
                let key: GroupKey = fields
                    .iter()
                    .map(|f| {
                        if !groups.contains(f) {
                            return None;
                        }
                        match *f {
                            "project_id" => Some(row.project.clone()),
                            "api_key_id" => Some(row.api_key_id.clone()),
                            "model" => Some(row.model.clone()),
                            "batch" => Some(batch.to_string()),
                            "service_tier" => Some(tier_name(Fam::OpenAi, row.tier).to_owned()),
                            _ => None,
                        }
                    })
                    .collect();
                results.entry(key).or_default().add(row);
            }
            let results: Vec<Value> = results
                .into_iter()
                .map(|(key, s)| {
                    let mut r = Map::new();
                    r.insert("object".into(), json!(object));
                    r.insert("input_tokens".into(), json!(s.input.saturating_add(s.cached)));
                    if endpoint == Endpoint::Completions {
                        r.insert("output_tokens".into(), json!(s.output));
                        r.insert("input_cached_tokens".into(), json!(s.cached));
                        r.insert("input_audio_tokens".into(), json!(0));
                        r.insert("output_audio_tokens".into(), json!(0));
                    }
                    r.insert("num_model_requests".into(), json!(s.requests));
                    for (f, v) in fields.iter().zip(key) {
                        let value = match (*f, v) {
                            ("batch", Some(b)) => json!(b == "true"),
                            (_, v) => json!(v),
                        };
                        r.insert((*f).into(), value);
                    }
                    Value::Object(r)
                })
                .collect();
            let start = day.saturating_mul(SECS_PER_DAY);
            json!({"object": "bucket", "start_time": start, "end_time": start.saturating_add(SECS_PER_DAY), "results": results})
        })
        .collect();
    let body = json!({
        "object": "page",
        "data": data,
        "has_more": next.is_some(),
        "next_page": next.map(encode_openai_page),
    });
    json_response(body.to_string())
}

// ───────────────────────────── Anthropic routes ─────────────────────────────

fn encode_anthropic_page(day: i64) -> String {
    format!("page_{}", base64::engine::general_purpose::STANDARD.encode(rfc3339(day)))
}

fn decode_anthropic_page(page: &str) -> Option<i64> {
    let text = match page.strip_prefix("page_") {
        Some(b64) => String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).ok()?).ok()?,
        None => page.to_owned(),
    };
    parse_rfc3339_secs(&text).map(|s| s.div_euclid(SECS_PER_DAY))
}

/// `limit`, `bucket_width`, the window and the page of an Anthropic report request.
#[allow(clippy::result_large_err)]
fn anthropic_paging(q: &Query) -> Result<(Window, Option<i64>, u64), Response> {
    if let Some(width) = q.one("bucket_width") {
        if width != "1d" {
            return Err(anthropic_400(&format!("bucket_width: the mock supports only '1d', not '{width}'")));
        }
    }
    let start = match q.one("starting_at") {
        None | Some("") => return Err(anthropic_400("starting_at: Field required")),
        Some(s) => parse_rfc3339_secs(s)
            .ok_or_else(|| anthropic_400(&format!("starting_at: Input should be a valid datetime, got '{s}'")))?,
    };
    let end = match q.one("ending_at") {
        None | Some("") => today() + 1,
        // Every day that ends at or before ending_at.
        Some(s) => parse_rfc3339_secs(s)
            .ok_or_else(|| anthropic_400(&format!("ending_at: Input should be a valid datetime, got '{s}'")))?
            .div_euclid(SECS_PER_DAY),
    };
    let limit = parse_limit(q, DAILY_MAX_LIMIT, |message, _| anthropic_400(message))?;
    let cursor = match q.one("page") {
        None | Some("") => None,
        Some(p) => {
            Some(decode_anthropic_page(p).ok_or_else(|| anthropic_400(&format!("page: invalid page token '{p}'")))?)
        }
    };
    Ok((Window { first: start.div_euclid(SECS_PER_DAY), end }, cursor, limit))
}

fn anthropic_page(days: &[i64], next: Option<i64>, mut results_of: impl FnMut(i64) -> Vec<Value>) -> Response {
    let data: Vec<Value> = days
        .iter()
        .map(|day| json!({"starting_at": rfc3339(*day), "ending_at": rfc3339(day + 1), "results": results_of(*day)}))
        .collect();
    let body = json!({"data": data, "has_more": next.is_some(), "next_page": next.map(encode_anthropic_page)});
    json_response(body.to_string())
}

/// `GET /v1/organizations/cost_report`.
pub(crate) async fn anthropic_cost_report(State(app): State<App>, uri: Uri, headers: HeaderMap) -> Response {
    if let Err(r) = anthropic_admin(&app, &headers) {
        return r;
    }
    let q = Query::parse(&uri);
    let (window, cursor, limit) = match anthropic_paging(&q) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let groups = match check_group_by(&q, &["workspace_id", "description"], Family::Anthropic) {
        Ok(g) => g,
        Err(r) => return r,
    };
    let (by_workspace, by_description) = (groups.contains(&"workspace_id"), groups.contains(&"description"));
    let (days, next) = window.page(cursor, limit);
    let rows = app.billing().rows(app.config());
    anthropic_page(&days, next, |day| {
        // (workspace, description, cost_type, token_type, model, tier, context window) → nanos
        type Key<'a> = (
            Option<&'a str>,
            Option<String>,
            Option<&'static str>,
            Option<&'static str>,
            Option<&'a str>,
            Option<&'static str>,
            Option<&'static str>,
        );
        let mut results: BTreeMap<Key<'_>, i64> = BTreeMap::new();
        // Priority Tier costs are not in Anthropic's cost report.
        for row in rows.iter().filter(|r| r.family == Fam::Anthropic && r.day == day && r.tier != ServiceTier::Priority)
        {
            for (description, cost_type, token_type, nanos) in row.anthropic_lines() {
                let tokens = token_type.is_some();
                let key = (
                    by_workspace.then_some(row.project.as_str()),
                    by_description.then_some(description),
                    by_description.then_some(cost_type),
                    token_type.filter(|_| by_description),
                    (by_description && tokens).then_some(row.model.as_str()),
                    (by_description && tokens).then_some(tier_name(Fam::Anthropic, row.tier)),
                    (by_description && tokens).then_some(row.context_window()),
                );
                let sum = results.entry(key).or_insert(0);
                *sum = sum.saturating_add(nanos);
            }
        }
        results
            .into_iter()
            .map(|((workspace, description, cost_type, token_type, model, tier, window), nanos)| {
                json!({
                    "currency": "USD",
                    "amount": cents_text(nanos),
                    "workspace_id": workspace,
                    "description": description,
                    "cost_type": cost_type,
                    "context_window": window,
                    "model": model,
                    "service_tier": tier,
                    "token_type": token_type,
                })
            })
            .collect()
    })
}

/// `GET /v1/organizations/usage_report/messages`.
pub(crate) async fn anthropic_usage_messages(State(app): State<App>, uri: Uri, headers: HeaderMap) -> Response {
    if let Err(r) = anthropic_admin(&app, &headers) {
        return r;
    }
    let q = Query::parse(&uri);
    let (window, cursor, limit) = match anthropic_paging(&q) {
        Ok(p) => p,
        Err(r) => return r,
    };
    const FIELDS: [&str; 5] = ["api_key_id", "workspace_id", "model", "service_tier", "context_window"];
    let groups = match check_group_by(&q, &FIELDS, Family::Anthropic) {
        Ok(g) => g,
        Err(r) => return r,
    };
    let (keys, workspaces, models, tiers, windows) = (
        q.values("api_key_ids"),
        q.values("workspace_ids"),
        q.values("models"),
        q.values("service_tiers"),
        q.values("context_window"),
    );
    let (days, next) = window.page(cursor, limit);
    let rows = app.billing().rows(app.config());
    anthropic_page(&days, next, |day| {
        let mut results: BTreeMap<GroupKey, Sums> = BTreeMap::new();
        for row in rows.iter().filter(|r| r.family == Fam::Anthropic && r.day == day) {
            let tier = tier_name(Fam::Anthropic, row.tier);
            let excluded = |filter: &Vec<&str>, value: &str| !filter.is_empty() && !filter.contains(&value);
            if excluded(&keys, &row.api_key_id)
                || excluded(&workspaces, &row.project)
                || excluded(&models, &row.model)
                || excluded(&tiers, tier)
                || excluded(&windows, row.context_window())
            {
                continue;
            }
            let key: GroupKey = FIELDS
                .iter()
                .map(|f| {
                    groups.contains(f).then(|| match *f {
                        "api_key_id" => row.api_key_id.clone(),
                        "workspace_id" => row.project.clone(),
                        "model" => row.model.clone(),
                        "service_tier" => tier.to_owned(),
                        _ => row.context_window().to_owned(),
                    })
                })
                .collect();
            results.entry(key).or_default().add(row);
        }
        results
            .into_iter()
            .map(|(key, s)| {
                let mut r = Map::new();
                for (f, v) in FIELDS.iter().zip(key) {
                    r.insert((*f).into(), json!(v));
                }
                r.insert("uncached_input_tokens".into(), json!(s.input));
                r.insert(
                    "cache_creation".into(),
                    json!({"ephemeral_1h_input_tokens": s.cache_write_1h, "ephemeral_5m_input_tokens": s.cache_write_5m}),
                );
                r.insert("cache_read_input_tokens".into(), json!(s.cached));
                r.insert("output_tokens".into(), json!(s.output));
                r.insert("server_tool_use".into(), json!({"web_search_requests": s.web_searches}));
                Value::Object(r)
            })
            .collect()
    })
}

// ───────────────────────────── test knobs ─────────────────────────────

/// `GET /mock/billing`: the book, priced.
pub(crate) async fn show(State(app): State<App>) -> Response {
    let rows: Vec<Value> = app.billing().rows(app.config()).iter().map(Row::to_json).collect();
    let adjustments: Vec<Value> = app
        .billing()
        .ledger()
        .adjustments
        .iter()
        .map(|a| json!({"family": a.family.name(), "day": day_text(a.day), "model": a.model, "percent": a.text}))
        .collect();
    axum::Json(json!({"rows": rows, "price_adjustments": adjustments})).into_response()
}

/// `POST /mock/billing`: injects extra usage and price adjustments.
pub(crate) async fn inject(State(app): State<App>, body: Bytes) -> Response {
    let parsed = serde_json::from_slice::<Value>(&body).map_err(|e| e.to_string()).and_then(|v| parse_injection(&v));
    let (clear, adjustments, extras) = match parsed {
        Ok(p) => p,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": format!("mock billing: {e}")})))
                .into_response()
        }
    };
    let mut ledger = app.billing().ledger();
    if clear {
        *ledger = Ledger::default();
    }
    ledger.adjustments.extend(adjustments);
    ledger.extras.extend(extras);
    let counts = json!({"extra": ledger.extras.len(), "price_adjustments": ledger.adjustments.len()});
    drop(ledger);
    axum::Json(counts).into_response()
}

type Injection = (bool, Vec<Adjustment>, Vec<Extra>);

fn parse_injection(v: &Value) -> Result<Injection, String> {
    let obj = v.as_object().ok_or("the body must be a JSON object")?;
    for k in obj.keys() {
        if !["clear", "price_adjustments", "extra"].contains(&k.as_str()) {
            return Err(format!("unknown key {k:?}"));
        }
    }
    let clear = match obj.get("clear") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("clear must be true or false".into()),
    };
    let list = |key: &str| -> Result<Vec<Value>, String> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => Ok(items.clone()),
            Some(_) => Err(format!("{key} must be an array")),
        }
    };
    let adjustments = list("price_adjustments")?
        .iter()
        .enumerate()
        .map(|(i, a)| parse_adjustment(a).map_err(|e| format!("price_adjustments[{i}]: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let extras = list("extra")?
        .iter()
        .enumerate()
        .map(|(i, e)| parse_extra(e).map_err(|e| format!("extra[{i}]: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((clear, adjustments, extras))
}

fn object<'a>(v: &'a Value, allowed: &[&str]) -> Result<&'a Map<String, Value>, String> {
    let obj = v.as_object().ok_or("must be a JSON object")?;
    for k in obj.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(format!("unknown key {k:?} (allowed: {})", allowed.join(", ")));
        }
    }
    Ok(obj)
}

fn text<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("{key} must be a string")),
    }
}

fn required<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<&'a str, String> {
    text(obj, key)?.filter(|s| !s.is_empty()).ok_or_else(|| format!("{key} is required"))
}

fn count(obj: &Map<String, Value>, key: &str) -> Result<Option<u64>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| format!("{key} must be a whole number ≥ 0")),
    }
}

fn family_and_day(obj: &Map<String, Value>) -> Result<(Fam, i64), String> {
    let family = required(obj, "family")?;
    let family = Fam::parse(family).ok_or_else(|| format!("family must be openai or anthropic, not {family:?}"))?;
    let day = required(obj, "day")?;
    let day = parse_day(day).ok_or_else(|| format!("day must be YYYY-MM-DD, not {day:?}"))?;
    Ok((family, day))
}

fn parse_adjustment(v: &Value) -> Result<Adjustment, String> {
    let obj = object(v, &["family", "day", "model", "percent"])?;
    let (family, day) = family_and_day(obj)?;
    let model = required(obj, "model")?.to_owned();
    let text = match obj.get("percent") {
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err("percent is required (a decimal string or number)".into()),
    };
    let (num, den) = parse_percent(&text).ok_or_else(|| format!("percent must be a decimal ≥ 0, not {text:?}"))?;
    Ok(Adjustment { family, day, model, num, den, text })
}

/// A non-negative decimal (at most 9 decimals) as `num / den`, `den` a power of ten.
fn parse_percent(s: &str) -> Option<(i128, i128)> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if (int.is_empty() && frac.is_empty())
        || frac.len() > 9
        || int.len() > 18
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let digits = format!("{int}{frac}");
    let num: i128 = digits.parse().ok()?;
    Some((num, 10i128.pow(u32::try_from(frac.len()).ok()?)))
}

fn parse_extra(v: &Value) -> Result<Extra, String> {
    let obj = object(
        v,
        &[
            "family",
            "day",
            "project_id",
            "workspace_id",
            "api_key_id",
            "model",
            "input_tokens",
            "cached_input_tokens",
            "cache_creation_5m_input_tokens",
            "cache_creation_1h_input_tokens",
            "output_tokens",
            "web_search_requests",
            "requests",
            "service_tier",
            "endpoint",
        ],
    )?;
    let (family, day) = family_and_day(obj)?;
    let project = match (text(obj, "project_id")?, text(obj, "workspace_id")?) {
        (Some(_), Some(_)) => return Err("give project_id or workspace_id, not both".into()),
        (p, w) => p.or(w).map(str::to_owned),
    };
    let tier = match text(obj, "service_tier")? {
        None | Some("standard") | Some("default") => ServiceTier::Standard,
        Some("batch") => ServiceTier::Batch,
        Some("flex") => ServiceTier::Flex,
        Some("priority") => ServiceTier::Priority,
        Some(other) => return Err(format!("service_tier must be standard, batch, flex or priority, not {other:?}")),
    };
    let endpoint = match (family, text(obj, "endpoint")?) {
        (Fam::OpenAi, None | Some("completions")) => Endpoint::Completions,
        (Fam::OpenAi, Some("embeddings")) => Endpoint::Embeddings,
        (Fam::Anthropic, None | Some("messages")) => Endpoint::Messages,
        (_, Some(other)) => return Err(format!("endpoint {other:?} is not one of {}'s", family.name())),
    };
    let n = |key: &str| count(obj, key).map(Option::unwrap_or_default);
    let usage = Usage {
        input: n("input_tokens")?,
        cache_read: n("cached_input_tokens")?,
        cache_write_5m: n("cache_creation_5m_input_tokens")?,
        cache_write_1h: n("cache_creation_1h_input_tokens")?,
        output: n("output_tokens")?,
        web_search_requests: n("web_search_requests")?,
        ..Usage::default()
    };
    Ok(Extra {
        family,
        endpoint,
        day,
        project,
        api_key_id: text(obj, "api_key_id")?.unwrap_or("key_none").to_owned(),
        model: required(obj, "model")?.to_owned(),
        tier,
        usage,
        requests: count(obj, "requests")?.unwrap_or(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_written_from_integers() {
        for (nanos, usd, cents) in [
            (0, "0.0", "0"),
            (1, "0.000000001", "0.0000001"),
            (1_228_350, "0.00122835", "0.122835"),
            (4_500_000_000, "4.5", "450"),
            (5_354_900, "0.0053549", "0.53549"),
            (10_000_000, "0.01", "1"),
            (-15, "-0.000000015", "-0.0000015"),
        ] {
            assert_eq!(usd_number(nanos), usd, "{nanos}");
            assert_eq!(cents_text(nanos), cents, "{nanos}");
        }
    }

    #[test]
    fn percent_scaling_rounds_half_away_from_zero() {
        let (num, den) = parse_percent("125").unwrap_or((0, 1));
        assert_eq!(scale_percent(2_500_000_000, num, den), 3_125_000_000);
        assert_eq!(scale_percent(3, num, den), 4); // 3.75
        assert_eq!(scale_percent(2, num, den), 3); // 2.5
        let (num, den) = parse_percent("87.5").unwrap_or((0, 1));
        assert_eq!((num, den), (875, 10));
        assert_eq!(scale_percent(1_000, num, den), 875);
        assert_eq!(parse_percent("-5"), None);
        assert_eq!(parse_percent("1e3"), None);
    }

    #[test]
    fn windows_page_by_limit() {
        let w = Window { first: 10, end: 13 };
        assert_eq!(w.page(None, 1), (vec![10], Some(11)));
        assert_eq!(w.page(Some(12), 1), (vec![12], None));
        assert_eq!(w.page(None, 7), (vec![10, 11, 12], None));
        assert_eq!(Window { first: 5, end: 5 }.page(None, 7), (vec![], None));
        assert_eq!(decode_openai_page(&encode_openai_page(20_000)), Some(20_000));
        assert_eq!(decode_anthropic_page(&encode_anthropic_page(20_000)), Some(20_000));
        assert_eq!(decode_anthropic_page("page_MjAyNS0wNS0xNFQwMDowMDowMFo="), parse_day("2025-05-14"));
    }

    #[test]
    fn query_values_are_percent_decoded() {
        let uri: Uri = "/x?group_by%5B%5D=model&group_by=line_item&starting_at=2026-12-05T00%3A00%3A00Z&a=b+c%"
            .parse()
            .unwrap_or_default();
        let q = Query::parse(&uri);
        assert_eq!(q.values("group_by"), ["model", "line_item"]);
        assert_eq!(q.one("starting_at"), Some("2026-12-05T00:00:00Z"));
        assert_eq!(q.one("a"), Some("b c%"));
    }

    #[test]
    fn key_ids_never_show_the_key() {
        let id = api_key_id(Some("sk-secret"));
        assert!(id.starts_with("key_") && id.len() == 16 && !id.contains("secret"), "{id}");
        assert_eq!(id, api_key_id(Some("sk-secret")));
        assert_ne!(id, api_key_id(Some("sk-other")));
        assert_eq!(api_key_id(None), "key_none");
    }
}
