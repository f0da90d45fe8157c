//! Batch API passthrough: OpenAI `/v1/files` and `/v1/batches`, Anthropic
//! `/v1/messages/batches`.
//!
//! Every call is authenticated and ledgered like any request (one row, $0:
//! managing a batch costs nothing). Only the documented path shapes pass,
//! with ids of `[A-Za-z0-9_-]` (no `..`, no encoded characters): the upstream
//! URL is built from the parsed operation, never from the client's path.
//! Every object (uploaded file, batch, output file) is owned by the key that
//! created it; another key sees it only when both keys carry the same team,
//! and lists are filtered to what the caller owns.
//!
//! Creating a batch is governed like a request, for all of its lines at
//! once: each line's model must pass the key's allow-list and `[[access]]`,
//! and the batch's most possible cost (batch rates; prompt bytes as input
//! tokens, each line's max tokens or the default as output) is reserved on
//! every covering budget and limit. The reservation is held until the
//! results are downloaded, then settled to what they cost. Each result line
//! becomes a ledger row priced at the provider's batch rates and attributed
//! to the batch's owner. Result rows have deterministic ids
//! (`batch:<batch>:<custom_id>`), so downloading results twice never counts
//! them twice.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::Value;
use tollgate_providers::{ApiFormat, ProviderKind};
use tollgate_units::Money;

use crate::attribution::{attribute, Attribution, KeyTags};
use crate::auth::Principal;
use crate::budget::Facts;
use crate::config::Provider;
use crate::error::{ApiError, ErrorShape};
use crate::govern::{Ask, Reservation};
use crate::ledger::{Endpoint, LedgerRow};
use crate::pipeline::{error_response, HEADER_REQUEST_ID};
use crate::state::AppState;
use crate::store::BatchOwner;
use crate::time::now_ms;

const MAX_BODY: usize = 256 * 1024 * 1024;
const MAX_ID: usize = 128;
/// Query parameters a list call may pass on.
const LIST_PARAMS: &[&str] = &["limit", "after", "before", "after_id", "before_id", "order", "purpose"];
/// What a batch line may call.
const BATCH_ENDPOINTS: &[(&str, ApiFormat)] = &[
    ("/v1/chat/completions", ApiFormat::OpenAiChat),
    ("/v1/embeddings", ApiFormat::OpenAiEmbeddings),
    ("/v1/responses", ApiFormat::OpenAiResponses),
];

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/files", post(openai).get(openai))
        .route("/v1/files/{*rest}", get(openai).delete(openai))
        .route("/v1/batches", post(openai).get(openai))
        .route("/v1/batches/{*rest}", get(openai).post(openai))
        .route("/v1/messages/batches", post(anthropic).get(anthropic))
        .route("/v1/messages/batches/{*rest}", get(anthropic).post(anthropic).delete(anthropic))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    OpenAi,
    Anthropic,
}

/// The batch-API operations tollgate passes on; nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    UploadFile,
    ListFiles,
    File(String),
    DeleteFile(String),
    FileContent(String),
    CreateBatch,
    ListBatches,
    Batch(String),
    CancelBatch(String),
    DeleteBatch(String),
    Results(String),
}

impl Op {
    /// The object the operation touches, which the caller must own.
    fn object(&self) -> Option<&str> {
        match self {
            Op::File(id) | Op::DeleteFile(id) | Op::FileContent(id) => Some(id),
            Op::Batch(id) | Op::CancelBatch(id) | Op::DeleteBatch(id) | Op::Results(id) => Some(id),
            _ => None,
        }
    }

    fn is_list(&self) -> bool {
        matches!(self, Op::ListFiles | Op::ListBatches)
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The operation for a method and raw (undecoded) path, or `None`.
fn parse_op(family: Family, method: &Method, path: &str) -> Option<Op> {
    let segs: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
    let id = |s: &str| valid_id(s).then(|| s.to_string());
    let m = method.as_str();
    Some(match (family, m, segs.as_slice()) {
        (Family::OpenAi, "POST", ["v1", "files"]) => Op::UploadFile,
        (Family::OpenAi, "GET", ["v1", "files"]) => Op::ListFiles,
        (Family::OpenAi, "GET", ["v1", "files", f]) => Op::File(id(f)?),
        (Family::OpenAi, "DELETE", ["v1", "files", f]) => Op::DeleteFile(id(f)?),
        (Family::OpenAi, "GET", ["v1", "files", f, "content"]) => Op::FileContent(id(f)?),
        (Family::OpenAi, "POST", ["v1", "batches"]) => Op::CreateBatch,
        (Family::OpenAi, "GET", ["v1", "batches"]) => Op::ListBatches,
        (Family::OpenAi, "GET", ["v1", "batches", b]) => Op::Batch(id(b)?),
        (Family::OpenAi, "POST", ["v1", "batches", b, "cancel"]) => Op::CancelBatch(id(b)?),
        (Family::Anthropic, "POST", ["v1", "messages", "batches"]) => Op::CreateBatch,
        (Family::Anthropic, "GET", ["v1", "messages", "batches"]) => Op::ListBatches,
        (Family::Anthropic, "GET", ["v1", "messages", "batches", b]) => Op::Batch(id(b)?),
        (Family::Anthropic, "DELETE", ["v1", "messages", "batches", b]) => Op::DeleteBatch(id(b)?),
        (Family::Anthropic, "GET", ["v1", "messages", "batches", b, "results"]) => Op::Results(id(b)?),
        (Family::Anthropic, "POST", ["v1", "messages", "batches", b, "cancel"]) => Op::CancelBatch(id(b)?),
        _ => return None,
    })
}

/// The upstream URL for an operation, from the provider's base URL and the parsed parts only.
fn upstream_url(provider: &Provider, family: Family, op: &Op, query: Option<&str>) -> Result<String, ApiError> {
    // OpenAI-style base URLs end in /v1; Anthropic's do not.
    let path = match (family, op) {
        (Family::OpenAi, Op::UploadFile | Op::ListFiles) => "/files".to_string(),
        (Family::OpenAi, Op::File(f) | Op::DeleteFile(f)) => format!("/files/{f}"),
        (Family::OpenAi, Op::FileContent(f)) => format!("/files/{f}/content"),
        (Family::OpenAi, Op::CreateBatch | Op::ListBatches) => "/batches".to_string(),
        (Family::OpenAi, Op::Batch(b)) => format!("/batches/{b}"),
        (Family::OpenAi, Op::CancelBatch(b)) => format!("/batches/{b}/cancel"),
        (Family::Anthropic, Op::CreateBatch | Op::ListBatches) => "/v1/messages/batches".to_string(),
        (Family::Anthropic, Op::Batch(b) | Op::DeleteBatch(b)) => format!("/v1/messages/batches/{b}"),
        (Family::Anthropic, Op::Results(b)) => format!("/v1/messages/batches/{b}/results"),
        (Family::Anthropic, Op::CancelBatch(b)) => format!("/v1/messages/batches/{b}/cancel"),
        _ => return Err(ApiError::NotFound { message: "no such batch API endpoint".into() }),
    };
    let mut url = reqwest::Url::parse(&format!("{}{path}", provider.base_url))
        .map_err(|e| ApiError::Internal { message: format!("batch URL: {e}") })?;
    if op.is_list() {
        if let Some(q) = query {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in reqwest::Url::parse(&format!("http://q/?{q}"))
                .map(|u| u.query_pairs().into_owned().collect::<Vec<_>>())
                .unwrap_or_default()
            {
                if !LIST_PARAMS.contains(&k.as_str()) {
                    return Err(ApiError::invalid_param(format!("unknown query parameter {k:?}"), k));
                }
                pairs.append_pair(&k, &v);
            }
        }
    }
    Ok(url.into())
}

async fn openai(
    State(s): State<Arc<AppState>>,
    method: Method,
    uri: axum::http::Uri,
    q: RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    pass(s, Family::OpenAi, method, uri.path().to_string(), q.0, headers, body).await
}
async fn anthropic(
    State(s): State<Arc<AppState>>,
    method: Method,
    uri: axum::http::Uri,
    q: RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    pass(s, Family::Anthropic, method, uri.path().to_string(), q.0, headers, body).await
}

fn row(request_id: &str, key_id: &str, endpoint: Endpoint, attribution: Attribution) -> LedgerRow {
    LedgerRow { attribution, ..LedgerRow::new(request_id, now_ms(), key_id, endpoint) }
}

/// The caller as an owner of batch objects.
fn owner_of(principal: &Principal, attribution: &Attribution) -> BatchOwner {
    let team = match principal {
        // The key's team is enforced, so the attribution's team is the key's.
        Principal::Key(_) => attribution.tag("team").map(String::from),
        Principal::Passthrough { .. } => None,
    };
    BatchOwner { key_id: principal.id().to_string(), team }
}

#[allow(clippy::too_many_arguments)]
async fn pass(
    state: Arc<AppState>,
    family: Family,
    method: Method,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = std::time::Instant::now();
    let request_id = uuid::Uuid::now_v7().to_string();
    let shape = if family == Family::Anthropic { ErrorShape::Anthropic } else { ErrorShape::OpenAi };
    let principal = match state.auth.authenticate(&headers, now_ms()).await {
        Ok(p) => p,
        Err(e) => {
            state.observer.auth_refused();
            return error_response(e, shape, &request_id);
        }
    };
    let (defaults, enforced) = match &principal {
        Principal::Key(k) => (&k.policy.default_tags, &k.policy.enforced_tags),
        Principal::Passthrough { .. } => (&state.empty_tags, &state.empty_tags),
    };
    let key_tags = KeyTags { defaults, enforced };
    let attribution = attribute(&headers, None, &[], key_tags);
    let mut r = row(&request_id, principal.id(), Endpoint::BatchApi, attribution.clone().unwrap_or_default());
    let outcome = match attribution {
        Ok(attribution) => {
            let call =
                Call { state: &state, family, principal: &principal, attribution: &attribution, headers: &headers };
            call.run(&method, &path, query.as_deref(), body, &mut r).await
        }
        Err(e) => Err(e),
    };
    r.latency_ms = started.elapsed().as_millis() as u64;
    let passthrough = match &principal {
        Principal::Passthrough { provider_key, .. } => Some(provider_key.expose()),
        Principal::Key(_) => None,
    };
    let response = match outcome {
        Ok((status, content_type, bytes)) => {
            r.status = status.as_u16();
            let bytes = if status.is_success() {
                bytes
            } else {
                r.error_code = Some("upstream_error".into());
                // Upstream error text can echo what it was sent.
                Bytes::from(state.live().redactor.scrub(&String::from_utf8_lossy(&bytes), passthrough))
            };
            let mut resp = Response::new(Body::from(bytes));
            *resp.status_mut() = status;
            if let Some(ct) = content_type {
                resp.headers_mut().insert(http::header::CONTENT_TYPE, ct);
            }
            resp
        }
        Err(e) => {
            let e = state.live().redactor.error(e, passthrough);
            r.status = e.status().as_u16();
            r.error_code = Some(e.code().to_string());
            e.into_response_for(shape)
        }
    };
    state.observer.record(&r);
    state.ledger.write(r).await;
    let mut response = response;
    if let Ok(v) = http::HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(HEADER_REQUEST_ID, v);
    }
    response
}

fn provider_for(state: &AppState, family: Family) -> Result<Provider, ApiError> {
    let kind = if family == Family::Anthropic { ProviderKind::Anthropic } else { ProviderKind::OpenAi };
    state.config().providers.iter().find(|p| p.kind == kind).cloned().ok_or_else(|| ApiError::ModelNotFound {
        message: format!("no {} provider is configured for batch APIs", crate::config::kind_name(kind)),
    })
}

fn internal(e: crate::store::StoreError) -> ApiError {
    tracing::error!(error = %e, "batch bookkeeping failed");
    ApiError::Internal { message: format!("storage error: {e}") }
}

type Answer = (StatusCode, Option<http::HeaderValue>, Bytes);

/// One batch-API call by one caller.
struct Call<'a> {
    state: &'a Arc<AppState>,
    family: Family,
    principal: &'a Principal,
    attribution: &'a Attribution,
    headers: &'a HeaderMap,
}

impl Call<'_> {
    fn owner(&self) -> BatchOwner {
        owner_of(self.principal, self.attribution)
    }

    /// The object must have been created through this gateway by the caller (or its team).
    async fn check_owner(&self, id: &str) -> Result<(), ApiError> {
        let owner = self.state.stores.batches.batch_object_owner(id.to_string()).await.map_err(internal)?;
        match owner {
            Some(o) if o.admits(&self.owner()) => Ok(()),
            // Someone else's, or unknown here: the same answer, so ids cannot be probed.
            _ => Err(ApiError::NotFound { message: format!("no batch object {id:?} for this key") }),
        }
    }

    async fn run(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        body: Body,
        r: &mut LedgerRow,
    ) -> Result<Answer, ApiError> {
        let op = parse_op(self.family, method, path)
            .ok_or_else(|| ApiError::NotFound { message: format!("no such batch API endpoint: {method} {path}") })?;
        let provider = provider_for(self.state, self.family)?;
        r.provider = Some(provider.name.clone());
        if let Some(id) = op.object() {
            self.check_owner(id).await?;
        }
        let limits = &self.state.config().server.limits;
        let body =
            tokio::time::timeout(limits.body_read_timeout, http_body_util::Limited::new(body, MAX_BODY).collect())
                .await
                .map_err(|_| ApiError::RequestTimeout { message: "the request body did not arrive in time".into() })?
                .map_err(|_| ApiError::RequestTooLarge {
                    message: format!("batch uploads are limited to {MAX_BODY} bytes"),
                })?
                .to_bytes();
        let mut held = Vec::new();
        if op == Op::CreateBatch {
            held = self.govern_create(&provider, &body).await?;
        }
        let url = upstream_url(&provider, self.family, &op, query)?;
        r.attempts = 1;
        let (status, ct, bytes) = self.send(&provider, method.clone(), &url, body).await?;
        if status.is_success() {
            let bytes = self.after(&provider, &op, bytes, held).await?;
            return Ok((status, ct, bytes));
        }
        Ok((status, ct, bytes))
    }

    async fn send(&self, provider: &Provider, method: Method, url: &str, body: Bytes) -> Result<Answer, ApiError> {
        // A passthrough caller's own credential, never the operator's key.
        let key = match (self.principal, &provider.api_key) {
            (Principal::Passthrough { provider_key, .. }, _) => Some(provider_key.expose().to_string()),
            (Principal::Key(_), k) => k.as_ref().map(|k| k.expose().to_string()),
        };
        let mut b = self.state.http.request(method, url).body(body);
        if let Some(ct) = self.headers.get(http::header::CONTENT_TYPE) {
            b = b.header(http::header::CONTENT_TYPE, ct);
        }
        match self.family {
            Family::OpenAi => {
                if let Some(k) = key {
                    b = b.bearer_auth(k);
                }
            }
            Family::Anthropic => {
                if let Some(k) = key {
                    b = b.header("x-api-key", k);
                }
                let version = self
                    .headers
                    .get("anthropic-version")
                    .cloned()
                    .unwrap_or(http::HeaderValue::from_static("2023-06-01"));
                b = b.header("anthropic-version", version);
                if let Some(beta) = self.headers.get("anthropic-beta") {
                    b = b.header("anthropic-beta", beta);
                }
            }
        }
        let resp = tokio::time::timeout(provider.timeout, b.send())
            .await
            .map_err(|_| ApiError::UpstreamTimeout {
                message: format!("provider {} did not answer in time", provider.name),
            })?
            .map_err(|e| ApiError::UpstreamError {
                message: format!("cannot reach provider {}: {e}", provider.name),
            })?;
        let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let ct = resp.headers().get(http::header::CONTENT_TYPE).cloned();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ApiError::UpstreamError { message: format!("upstream answer broke off: {e}") })?;
        Ok((status, ct, bytes))
    }

    /// A new batch, governed as all of its requests: every model allowed, its
    /// most possible cost reserved (one reservation per model, all or nothing).
    async fn govern_create(&self, provider: &Provider, body: &Bytes) -> Result<Vec<(String, Reservation)>, ApiError> {
        let v: Value = serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("invalid batch: {e}")))?;
        let lines: Vec<(ApiFormat, Value)> = match self.family {
            Family::Anthropic => v["requests"]
                .as_array()
                .ok_or_else(|| ApiError::invalid_param("requests must be an array", "requests"))?
                .iter()
                .map(|r| (ApiFormat::AnthropicMessages, r["params"].clone()))
                .collect(),
            Family::OpenAi => {
                let file = v["input_file_id"]
                    .as_str()
                    .ok_or_else(|| ApiError::invalid_param("input_file_id is required", "input_file_id"))?;
                if !valid_id(file) {
                    return Err(ApiError::invalid_param("input_file_id is not a file id", "input_file_id"));
                }
                self.check_owner(file).await?;
                let endpoint = v["endpoint"].as_str().unwrap_or("");
                let format =
                    BATCH_ENDPOINTS.iter().find(|(e, _)| *e == endpoint).map(|(_, f)| *f).ok_or_else(|| {
                        ApiError::invalid_param(
                            format!("endpoint {endpoint:?} cannot be batched through tollgate"),
                            "endpoint",
                        )
                    })?;
                let url = upstream_url(provider, Family::OpenAi, &Op::FileContent(file.to_string()), None)?;
                let (status, _, content) = self.send(provider, Method::GET, &url, Bytes::new()).await?;
                if !status.is_success() {
                    return Err(ApiError::UpstreamError {
                        message: format!(
                            "cannot read the batch's input file from provider {} ({status})",
                            provider.name
                        ),
                    });
                }
                let mut lines = Vec::new();
                for (n, line) in
                    String::from_utf8_lossy(&content).lines().enumerate().filter(|(_, l)| !l.trim().is_empty())
                {
                    let l: Value = serde_json::from_str(line).map_err(|e| {
                        ApiError::invalid_param(format!("input file line {}: not JSON: {e}", n + 1), "input_file_id")
                    })?;
                    if l["url"].as_str() != Some(endpoint) {
                        return Err(ApiError::invalid_param(
                            format!("input file line {}: url must be the batch's endpoint {endpoint}", n + 1),
                            "input_file_id",
                        ));
                    }
                    lines.push((format, l["body"].clone()));
                }
                lines
            }
        };
        if lines.is_empty() {
            return Err(ApiError::invalid("a batch needs at least one request"));
        }
        // Per model: the most its lines can cost at batch rates, and their tokens.
        let default_out = self.state.config().governance.default_max_output_tokens;
        let now = now_ms();
        let mut per_model: BTreeMap<String, (Option<Money>, u64)> = BTreeMap::new();
        for (format, params) in &lines {
            let raw = serde_json::to_vec(params).unwrap_or_default();
            let info = tollgate_providers::inspect(*format, &raw).map_err(crate::upstream::adapter_error)?;
            let model = info
                .model
                .clone()
                .ok_or_else(|| ApiError::invalid_param("every batch request needs a model", "model"))?;
            crate::policy::check_model_name(&model).map_err(|why| ApiError::invalid_param(why, "model"))?;
            let input = crate::govern::estimate::input_upper_bound(&info.prompt_text, &raw);
            let output = info.max_output_tokens.unwrap_or(default_out);
            let u = tollgate_units::Usage { input, output, ..Default::default() };
            let cost = self
                .state
                .pricing
                .load()
                .price_tier(provider, &model, &u, now, tollgate_pricing::ServiceTier::Batch)
                .cost;
            let e = per_model.entry(model).or_insert((Some(Money::ZERO), 0));
            e.0 = match (e.0, cost) {
                (Some(a), Some(b)) => Some(Money::from_nanos(a.nanos().saturating_add(b.nanos()))),
                _ => None,
            };
            e.1 = e.1.saturating_add(input + output);
        }
        let mut held = Vec::new();
        for (model, (cost, tokens)) in per_model {
            if let Principal::Key(k) = self.principal {
                if !crate::policy::model_allowed(&k.policy.models, &model) {
                    return Err(ApiError::ModelNotAllowed { message: format!("this key may not use model {model:?}") });
                }
            }
            let facts = Facts {
                key_id: self.principal.id(),
                model: &model,
                provider: Some(&provider.name),
                attribution: self.attribution,
            };
            crate::policy::access_allows(&self.state.config().access, &facts, &model)
                .map_err(|message| ApiError::ModelNotAllowed { message })?;
            // Earlier models' reservations are released (dropped) if this one is refused.
            match self.state.governor.reserve(&facts, Ask { cost, tokens }, now).await {
                Ok(res) => held.push((model, res)),
                Err(refusal) => return Err(refusal.into_error("cannot cover this batch")),
            }
        }
        Ok(held)
    }

    /// Bookkeeping after a successful call: owners of new objects, output
    /// files, priced results; lists filtered to the caller's objects.
    async fn after(
        &self,
        provider: &Provider,
        op: &Op,
        bytes: Bytes,
        held: Vec<(String, Reservation)>,
    ) -> Result<Bytes, ApiError> {
        let store = self.state.stores.batches.clone();
        let owner = self.owner();
        let now = now_ms();
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        match op {
            Op::UploadFile => {
                if let Some(id) = v["id"].as_str().filter(|id| valid_id(id)).map(String::from) {
                    store.record_batch_object(id, "file", owner, now).await.map_err(internal)?;
                }
            }
            Op::CreateBatch => {
                let Some(id) = v["id"].as_str().filter(|id| valid_id(id)).map(String::from) else {
                    return Ok(bytes);
                };
                let (provider_name, key) = (provider.name.clone(), self.principal.id().to_string());
                let attr = serde_json::to_string(self.attribution).unwrap_or_default();
                store.record_batch(id.clone(), provider_name, key, attr, now).await.map_err(internal)?;
                store.record_batch_object(id.clone(), "batch", owner, now).await.map_err(internal)?;
                self.state.batch_holds.put(id, held);
            }
            Op::Batch(id) if self.family == Family::OpenAi => {
                // Its output and error files belong to the batch's owner.
                let files: Vec<String> = ["output_file_id", "error_file_id"]
                    .iter()
                    .filter_map(|f| v[*f].as_str().filter(|id| valid_id(id)).map(String::from))
                    .collect();
                let id = id.clone();
                let output = v["output_file_id"].as_str().map(String::from);
                let batch_owner = store.batch_object_owner(id.clone()).await.map_err(internal)?.unwrap_or(owner);
                for f in files {
                    store.record_batch_object(f, "file", batch_owner.clone(), now).await.map_err(internal)?;
                }
                if let Some(out) = output {
                    store.record_batch_file(out, id).await.map_err(internal)?;
                }
            }
            Op::FileContent(file) => {
                if let Some(batch) = store.batch_of_file(file.clone()).await.map_err(internal)? {
                    self.price(&batch, &bytes).await?;
                }
            }
            Op::Results(batch) => self.price(batch, &bytes).await?,
            Op::ListFiles | Op::ListBatches => return self.filter_list(v, bytes).await,
            _ => {}
        }
        Ok(bytes)
    }

    /// A list answer with only the caller's objects.
    async fn filter_list(&self, mut v: Value, bytes: Bytes) -> Result<Bytes, ApiError> {
        let Some(items) = v["data"].as_array().cloned() else { return Ok(bytes) };
        let ids: Vec<String> = items.iter().filter_map(|i| i["id"].as_str().map(String::from)).collect();
        let mut owners = Vec::with_capacity(ids.len());
        for id in ids {
            owners.push(self.state.stores.batches.batch_object_owner(id).await.map_err(internal)?);
        }
        let me = self.owner();
        let mut owners = owners.into_iter();
        let kept: Vec<Value> = items
            .into_iter()
            .filter(|i| i["id"].as_str().is_none() || owners.next().flatten().is_some_and(|o| o.admits(&me)))
            .collect();
        if let Some(o) = v.as_object_mut() {
            o.insert("first_id".into(), kept.first().map(|i| i["id"].clone()).unwrap_or(Value::Null));
            o.insert("last_id".into(), kept.last().map(|i| i["id"].clone()).unwrap_or(Value::Null));
            o.insert("data".into(), Value::Array(kept));
        }
        Ok(Bytes::from(serde_json::to_vec(&v).unwrap_or_default()))
    }

    async fn price(&self, batch: &str, bytes: &Bytes) -> Result<(), ApiError> {
        price_results(self.state, self.family, batch, bytes)
            .await
            .map_err(|e| ApiError::Internal { message: e.to_string() })
    }
}

/// One priced ledger row per result line, at batch rates, for the batch's owner.
async fn price_results(
    state: &Arc<AppState>,
    family: Family,
    batch: &str,
    bytes: &Bytes,
) -> Result<(), crate::store::StoreError> {
    let owner = state.stores.batches.batch(batch.to_string()).await?;
    let Some((provider_name, key_id, attr)) = owner else {
        tracing::warn!(batch, "results of a batch not created through this gateway: not priced");
        return Ok(());
    };
    let attribution: Attribution = serde_json::from_str(&attr).unwrap_or_default();
    let config = state.config();
    let Some(provider) = config.providers.iter().find(|p| p.name == provider_name) else { return Ok(()) };
    let now = now_ms();
    // What the results cost, per model, to settle the batch's reservations with.
    let mut actual: BTreeMap<String, (Option<Money>, u64)> = BTreeMap::new();
    for line in String::from_utf8_lossy(bytes).lines().filter(|l| !l.trim().is_empty()) {
        let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
        let custom = v["custom_id"].as_str().unwrap_or("").to_string();
        let (status, answer, format) = match family {
            Family::OpenAi => {
                let body = &v["response"]["body"];
                let format = match body["object"].as_str() {
                    Some("response") => ApiFormat::OpenAiResponses,
                    Some("list") => ApiFormat::OpenAiEmbeddings,
                    _ => ApiFormat::OpenAiChat,
                };
                (v["response"]["status_code"].as_u64().unwrap_or(0) as u16, body.clone(), format)
            }
            Family::Anthropic => {
                let ok = v["result"]["type"] == "succeeded";
                (if ok { 200 } else { 500 }, v["result"]["message"].clone(), ApiFormat::AnthropicMessages)
            }
        };
        let endpoint = match format {
            ApiFormat::OpenAiChat => Endpoint::BatchChatCompletions,
            ApiFormat::OpenAiEmbeddings => Endpoint::BatchEmbeddings,
            ApiFormat::OpenAiResponses => Endpoint::BatchResponses,
            ApiFormat::AnthropicMessages => Endpoint::BatchMessages,
            // A batch result line is chat, embeddings, responses or messages (read above).
            ApiFormat::Media(_) | ApiFormat::GeminiNative => Endpoint::BatchChatCompletions,
        };
        let mut r = row(&format!("batch:{batch}:{custom}"), &key_id, endpoint, attribution.clone());
        r.provider = Some(provider.name.clone());
        r.status = status;
        r.attempts = 1;
        let raw = serde_json::to_vec(&answer).unwrap_or_default();
        match tollgate_providers::usage_of(format, &raw) {
            Ok(t) if status < 400 => {
                let model = t.model.unwrap_or_default();
                r.model = Some(model.clone());
                r.requested_model = Some(model.clone());
                if let Some(u) = t.usage {
                    r.usage = u;
                    let p = state.pricing.load().price_tier(
                        provider,
                        &model,
                        &u,
                        now,
                        tollgate_pricing::ServiceTier::Batch,
                    );
                    r.cost = p.cost;
                    r.cache_savings = p.cache_savings;
                    let e = actual.entry(model.clone()).or_insert((Some(Money::ZERO), 0));
                    e.0 = match (e.0, p.cost) {
                        (Some(a), Some(b)) => Some(Money::from_nanos(a.nanos().saturating_add(b.nanos()))),
                        _ => None,
                    };
                    e.1 = e.1.saturating_add(u.total_tokens());
                }
            }
            _ => r.error_code = Some("upstream_error".into()),
        }
        state.observer.record(&r);
        state.ledger.write(r).await;
    }
    // The first download settles what creation reserved; later ones find nothing held.
    if let Some(held) = state.batch_holds.take(batch) {
        for (model, reservation) in held {
            let (cost, tokens) = actual.get(&model).copied().unwrap_or((Some(Money::ZERO), 0));
            reservation.settle(cost, tokens, now).await;
        }
    }
    Ok(())
}
