//! The request path, top to bottom:
//!
//! ```text
//! auth → body → attribution → policy → routing → upstream (retries, fallbacks)
//!      → response or stream metering → pricing → ledger (acknowledged) → client
//! ```
//!
//! [`proxy`] is the only entry. After auth, the rest runs on a tracked task
//! so that a client hanging up cannot cancel it, and it owns a [`Pending`]
//! ledger row that is written exactly once on every exit: success, error,
//! disconnect, or panic (the row's `Drop` writes it). The row is committed
//! before the response's last byte leaves, so an acknowledged request is in
//! the ledger even if the process is killed right after.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::BodyExt;
use tokio::sync::mpsc;
use tollgate_providers::{inspect, ApiFormat, MediaEndpoint, RequestInfo, StreamEnd};
use tollgate_units::{Money, Usage};

use crate::attribution::{attribute, KeyTags};
use crate::auth::Principal;
use crate::budget::{Action, Facts};
use crate::config::Provider;
use crate::error::{ApiError, ErrorShape};
use crate::govern::estimate;
use crate::govern::{Refusal, Reservation};
use crate::ledger::{CacheOutcome, Endpoint, LedgerRow, LedgerWriter, UsageSource};
use crate::state::{AppState, Live};
use crate::upstream::{self, Answer};
use crate::{metering, policy, routing};

pub const HEADER_REQUEST_ID: &str = "x-tollgate-request-id";
pub const HEADER_COST: &str = "x-tollgate-cost-usd";
pub const HEADER_PRICED: &str = "x-tollgate-priced";
pub const HEADER_USAGE: &str = "x-tollgate-usage";
pub const HEADER_CACHE: &str = "x-tollgate-cache";
pub const HEADER_SIMILARITY: &str = "x-tollgate-cache-similarity";
pub const HEADER_ROUTED_BY: &str = "x-tollgate-routed-by";
pub const HEADER_MODEL: &str = "x-tollgate-model";
pub const HEADER_BUDGET_REMAINING: &str = "x-tollgate-budget-remaining-usd";
pub const HEADER_DOWNGRADED: &str = "x-tollgate-downgraded-to";
pub const HEADER_CLAMPED: &str = "x-tollgate-clamped-max-tokens";
pub const HEADER_MAX_TOKENS_CAPPED: &str = "x-tollgate-max-tokens-capped";

/// Largest upstream (non-streaming) answer the gateway will hold in memory.
const MAX_UPSTREAM_BODY: usize = 64 * 1024 * 1024;
/// Client headers passed on to the provider (protocol options, never credentials).
const FORWARDED_HEADERS: &[&str] =
    &["anthropic-version", "anthropic-beta", "openai-organization", "openai-project", "openai-beta"];

pub use crate::time::now_ms;

fn shape_of(format: ApiFormat) -> ErrorShape {
    match format {
        ApiFormat::AnthropicMessages => ErrorShape::Anthropic,
        ApiFormat::GeminiNative => ErrorShape::Google,
        _ => ErrorShape::OpenAi,
    }
}

fn endpoint_of(format: ApiFormat) -> Endpoint {
    match format {
        ApiFormat::OpenAiChat => Endpoint::ChatCompletions,
        ApiFormat::OpenAiEmbeddings => Endpoint::Embeddings,
        ApiFormat::OpenAiResponses => Endpoint::Responses,
        ApiFormat::AnthropicMessages => Endpoint::Messages,
        ApiFormat::Media(m) => match m {
            MediaEndpoint::ImageGenerations => Endpoint::ImagesGenerations,
            MediaEndpoint::ImageEdits => Endpoint::ImagesEdits,
            MediaEndpoint::Transcriptions => Endpoint::AudioTranscriptions,
            MediaEndpoint::Translations => Endpoint::AudioTranslations,
            MediaEndpoint::Speech => Endpoint::AudioSpeech,
        },
        ApiFormat::GeminiNative => Endpoint::GenerateContent,
    }
}

/// The model and method of a native Gemini call, from its URL
/// (`/v1beta/models/{model}:generateContent` or `:streamGenerateContent`).
fn gemini_call(uri: &http::Uri) -> Result<(String, bool), ApiError> {
    let path = uri.path();
    let rest = path.strip_prefix("/v1beta/models/").or_else(|| path.strip_prefix("/v1/models/")).unwrap_or("");
    let (model, method) = rest.rsplit_once(':').unwrap_or((rest, ""));
    match method {
        "generateContent" => Ok((model.to_owned(), false)),
        "streamGenerateContent" => Ok((model.to_owned(), true)),
        _ => Err(ApiError::invalid(format!(
            "{path}: the native Gemini API serves `models/{{model}}:generateContent` and `:streamGenerateContent`"
        ))),
    }
}

/// Google's SDKs may send their key as `?key=`: it becomes the
/// `x-goog-api-key` header, so auth reads it like any other key.
fn key_from_query(uri: &http::Uri, headers: &mut HeaderMap) {
    if headers.contains_key("x-goog-api-key") {
        return;
    }
    let key = uri.query().into_iter().flat_map(|q| q.split('&')).find_map(|kv| kv.strip_prefix("key="));
    if let Some(v) = key.and_then(|k| HeaderValue::from_str(k).ok()) {
        headers.insert(HeaderName::from_static("x-goog-api-key"), v);
    }
}

fn header(v: &str) -> HeaderValue {
    HeaderValue::from_str(v).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// An error answer carrying the request id.
pub fn error_response(e: ApiError, shape: ErrorShape, request_id: &str) -> Response {
    let mut r = e.into_response_for(shape);
    r.headers_mut().insert(HEADER_REQUEST_ID, header(request_id));
    r
}

/// The one entry point for every proxied request.
pub async fn proxy(state: Arc<AppState>, format: ApiFormat, req: Request<Body>) -> Response {
    let started = Instant::now();
    let time_ms = now_ms();
    let request_id = uuid::Uuid::now_v7().to_string();
    let shape = shape_of(format);
    let (mut parts, body) = req.into_parts();
    let gemini = if format == ApiFormat::GeminiNative {
        key_from_query(&parts.uri, &mut parts.headers);
        Some(gemini_call(&parts.uri))
    } else {
        None
    };
    let connection = parts.extensions.get::<crate::listener::Connection>().map(|c| c.0.clone());

    // auth: a refused request reaches no provider and leaves no ledger row.
    let principal = match state.auth.authenticate(&parts.headers, time_ms).await {
        Ok(p) => p,
        Err(e) => {
            state.observer.auth_refused();
            return error_response(e, shape, &request_id);
        }
    };

    // From here on, exactly one ledger row, whatever happens.
    let pending = Pending::new(
        state.live(),
        state.cut.clone(),
        state.ledger.clone(),
        state.observer.clone(),
        &request_id,
        time_ms,
        principal.id(),
        format,
        started,
    );
    let mut pending = pending;
    pending.connection = connection;
    match gemini {
        Some(Ok(call)) => pending.gemini_call = Some(call),
        Some(Err(e)) => {
            let never = AtomicBool::new(false);
            return Box::pin(pending.fail(e, &never)).await;
        }
        None => {}
    }
    pending.passthrough_key = match &principal {
        Principal::Passthrough { provider_key, .. } => Some(provider_key.clone()),
        Principal::Key(_) => None,
    };
    let hang_up = HangUp::default();
    let flag = hang_up.flag.clone();
    // Boxed: the request future is large, and moving it by value costs more than one allocation.
    let cut = state.cut.clone();
    let handled = Box::pin(handle(state.clone(), pending, principal, parts.headers, body, flag));
    let task = state.tasks.spawn(async move {
        tokio::select! {
            r = handled => r,
            // The shutdown deadline passed: dropping the request writes its row (`Pending::drop`).
            _ = cut.cancelled() => ApiError::Overloaded { message: "the gateway is shutting down".into() }
                .into_response_for(shape),
        }
    });
    let response = match task.await {
        Ok(r) => r,
        Err(e) => {
            // The task's `Pending` wrote the row while unwinding.
            tracing::error!(request_id = %request_id, error = %e, "request task failed");
            error_response(
                ApiError::Internal { message: "the request failed inside the gateway".into() },
                shape,
                &request_id,
            )
        }
    };
    hang_up.disarm();
    response
}

async fn handle(
    state: Arc<AppState>,
    mut p: Pending,
    principal: Principal,
    headers: HeaderMap,
    body: Body,
    hung_up: Arc<AtomicBool>,
) -> Response {
    // Each phase is boxed: the task then holds one small state instead of the
    // union of every phase's (14.7 KB, copied when the task was spawned).
    let answer = match Box::pin(until_upstream(&state, &mut p, &principal, &headers, body)).await {
        Ok(Upstream::Answer(a)) => a,
        Ok(Upstream::CacheHit(entry)) => return Box::pin(serve_hit(p, entry, &hung_up)).await,
        Err(e) => return Box::pin(p.fail(e, &hung_up)).await,
    };
    if p.format == ApiFormat::Media(MediaEndpoint::Speech) {
        // Audio out: relayed as it comes, metered by the request's characters.
        return relay_audio(state, p, answer);
    }
    if p.info.stream {
        // Headers wait for the first event: a stream that fails before it
        // gets the error's own status, like a non-streaming call.
        match open_stream(&p, answer) {
            Ok(open) => relay_stream(state, p, open),
            Err(e) => Box::pin(p.fail(e, &hung_up)).await,
        }
    } else {
        Box::pin(whole_body(&state, p, answer, &hung_up)).await
    }
}

/// Where the answer comes from.
enum Upstream {
    Answer(Answer),
    CacheHit(Arc<crate::cache::Entry>),
}

/// The request's way to an answer, one phase per line: each phase reads the
/// request context (`Pending`) and writes what it decides into it (the ledger
/// row, headers to send back), so the row is complete whatever phase fails.
async fn until_upstream(
    state: &AppState,
    p: &mut Pending,
    principal: &Principal,
    headers: &HeaderMap,
    body: Body,
) -> Result<Upstream, ApiError> {
    let live = p.live.clone();
    let key_tags = key_tags(state, principal);
    refuse_when_ledger_backed_up(state, p, headers, key_tags)?;
    let body = read_and_attribute(p, headers, body, key_tags).await?;
    let model = check_policy(state, p, principal)?;
    let model = reroute(p, principal, &body, model);
    if let Some(hit) = cache_lookup(state, p, principal, headers, &body, &model).await? {
        return Ok(Upstream::CacheHit(hit));
    }
    let mut plan = plan_route(state, &live, &model)?;
    // Budgets and rate limits: reserve the most this request can cost before any spend.
    let body = govern(state, p, principal, &model, &mut plan, body).await?;
    // Write-ahead: if the gateway dies while the provider works, this becomes the row.
    intend(state, p, &plan).await;
    send(state, p, principal, headers, &plan, &body).await.map(Upstream::Answer)
}

/// The tags a caller's key brings (none for a passthrough caller).
fn key_tags<'a>(state: &'a AppState, principal: &'a Principal) -> KeyTags<'a> {
    let (defaults, enforced) = match principal {
        Principal::Key(k) => (&k.policy.default_tags, &k.policy.enforced_tags),
        Principal::Passthrough { .. } => (&state.empty_tags, &state.empty_tags),
    };
    KeyTags { defaults, enforced }
}

/// Back-pressure: with the ledger's spool full under `on_full = "reject"`, refuse before any spend.
fn refuse_when_ledger_backed_up(
    state: &AppState,
    p: &mut Pending,
    headers: &HeaderMap,
    key_tags: KeyTags<'_>,
) -> Result<(), ApiError> {
    if !state.ledger.refusing() {
        return Ok(());
    }
    p.row_mut().attribution = attribute(headers, None, &[], key_tags).unwrap_or_default();
    Err(ApiError::RateLimited {
        message: "the gateway's ledger is backed up (database slow or down); retry shortly".into(),
        retry_after_secs: 1,
    })
}

/// Reads the body (size and time bounded), parses what tollgate needs of it,
/// checks the model name, and attributes the request.
async fn read_and_attribute(
    p: &mut Pending,
    headers: &HeaderMap,
    body: Body,
    key_tags: KeyTags<'_>,
) -> Result<Bytes, ApiError> {
    let live = p.live.clone();
    let limits = &live.config.server.limits;
    let timed_out = || ApiError::RequestTimeout {
        message: format!("the request body did not arrive within {} ms", limits.body_read_timeout.as_millis()),
    };
    if let Some(m) = p.format.media().filter(|m| m.multipart()) {
        // An upload: its fields are read now, its file streamed when it is sent.
        let ct = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        let declared =
            headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        let head = crate::upload::read_head(m, ct, declared, body, live.config.server.max_upload_bytes);
        let read = tokio::time::timeout(limits.body_read_timeout, head).await.unwrap_or_else(|_| Err(timed_out()));
        let (info, upload) = match read {
            Ok(r) => r,
            Err(e) => {
                p.row_mut().attribution = attribute(headers, None, &[], key_tags).unwrap_or_default();
                return Err(e);
            }
        };
        p.upload = Some(upload);
        p.info = info;
        return attribute_and_check(p, headers, key_tags, Bytes::new());
    }
    let body = match tokio::time::timeout(
        limits.body_read_timeout,
        read_body(body, headers, live.config.server.max_body_bytes),
    )
    .await
    {
        Ok(b) => b,
        Err(_) => Err(timed_out()),
    };
    let info = body.as_ref().map_err(Clone::clone).and_then(|b| inspect(p.format, b).map_err(upstream::adapter_error));
    let info = match info {
        Ok(mut i) => {
            if let Some((model, stream)) = p.gemini_call.take() {
                // The native Gemini API names the model and the streaming in the URL.
                i.model = Some(model);
                i.stream = stream;
            }
            i
        }
        Err(e) => {
            // Keep what attribution the headers alone give, for the row.
            p.row_mut().attribution = attribute(headers, None, &[], key_tags).unwrap_or_default();
            return Err(e);
        }
    };
    let body = body?;
    p.row_mut().prefix_hash = crate::cache::prefix_hash(p.format, &body);
    p.info = info;
    attribute_and_check(p, headers, key_tags, body)
}

/// Attributes the request from its headers and body, and checks its model name.
fn attribute_and_check(
    p: &mut Pending,
    headers: &HeaderMap,
    key_tags: KeyTags<'_>,
    body: Bytes,
) -> Result<Bytes, ApiError> {
    p.row_mut().requested_model = p.info.model.clone();
    let attribution = attribute(headers, p.info.user.as_deref(), &p.info.metadata, key_tags);
    p.row_mut().attribution = attribution?;
    let model = p
        .info
        .model
        .as_deref()
        .ok_or_else(|| ApiError::invalid_param("you must provide a model parameter", "model"))?;
    if let Err(why) = policy::check_model_name(model) {
        // Never store or forward what the client sent as a name.
        p.row_mut().requested_model = None;
        return Err(ApiError::invalid_param(why, "model"));
    }

    Ok(body)
}

/// May this caller send this request: the key's models, required tags,
/// `[[access]]`, prompt guardrails, and agent-run caps. Returns the model.
fn check_policy(state: &AppState, p: &mut Pending, principal: &Principal) -> Result<String, ApiError> {
    let live = p.live.clone();
    let model = p.info.model.clone().unwrap_or_default();
    if let Principal::Key(k) = principal {
        if !policy::model_allowed(&k.policy.models, &model) {
            return Err(ApiError::ModelNotAllowed { message: format!("this key may not use model {model:?}") });
        }
    }
    let guard = &live.config.guardrails;
    policy::require_tags(guard, &mut p.row_mut().attribution.tags)
        .map_err(|message| ApiError::GuardrailViolation { message })?;
    {
        let a = &p.row().attribution;
        let facts = Facts { key_id: principal.id(), model: &model, provider: None, attribution: a };
        policy::access_allows(&live.config.access, &facts, &model)
            .map_err(|message| ApiError::ModelNotAllowed { message })?;
    }
    policy::check_prompt(guard, &model, &p.info).map_err(|message| ApiError::GuardrailViolation { message })?;
    let caps = crate::govern::RunCaps {
        max_calls_per_trace: guard.max_calls_per_trace,
        max_usd_per_trace: guard.max_usd_per_trace,
        max_calls_per_session: guard.max_calls_per_session,
        max_usd_per_session: guard.max_usd_per_session,
    };
    {
        let a = &p.row().attribution;
        state
            .governor
            .admit_run(a.trace_id.as_deref(), a.session.as_deref(), &caps, now_ms())
            .map_err(|message| ApiError::GuardrailViolation { message })?;
    }
    Ok(model)
}

/// Cost-aware routing: a matching rule sends the request to a cheaper model.
fn reroute(p: &mut Pending, principal: &Principal, body: &Bytes, model: String) -> String {
    let live = p.live.clone();
    let mut model = model;
    if !live.config.routing_rules.is_empty() {
        let has_tools = crate::govern::estimate::mentions(body, b"\"tools\"");
        let shape = routing::RequestShape {
            model: &model,
            prompt_bytes: p.info.prompt_text.len() as u64,
            has_tools,
            complex: routing::is_complex(&live.config.complexity, &p.info.prompt_text, has_tools),
        };
        let a = p.row().attribution.clone();
        let facts = Facts { key_id: principal.id(), model: &model, provider: None, attribution: &a };
        if let Some(rule) = routing::rule_for(&live.config.routing_rules, &shape, &facts) {
            p.extra_headers.push((HEADER_ROUTED_BY, rule.name.clone()));
            model = rule.route_to.clone();
        }
    }

    model
}

/// The exact cache, then the semantic one: an earlier answer for this
/// tenant and model costs nothing. On a miss, remembers where to file the answer.
async fn cache_lookup(
    state: &AppState,
    p: &mut Pending,
    principal: &Principal,
    headers: &HeaderMap,
    body: &Bytes,
    model: &str,
) -> Result<Option<Arc<crate::cache::Entry>>, ApiError> {
    let live = p.live.clone();
    if p.format.media().is_some() || p.format == ApiFormat::GeminiNative {
        // Images and audio are not kept in the response cache, nor native
        // Gemini answers (whether they stream is in the URL, not the body the key is made of).
        return Ok(None);
    }
    let mode = match headers.get("x-tollgate-cache") {
        None => live.config.cache.mode,
        Some(v) => v.to_str().ok().and_then(crate::cache::Mode::parse).ok_or_else(|| {
            ApiError::invalid_param("x-tollgate-cache must be on, off, read or write", "x-tollgate-cache")
        })?,
    };
    if mode == crate::cache::Mode::Off {
        return Ok(None);
    }
    let tenant = match (live.config.cache.per_team, p.row().attribution.tag("team")) {
        (true, Some(team)) => format!("team:{team}"),
        _ => format!("key:{}", principal.id()),
    };
    // The model actually routed to is part of the answer's identity.
    let tenant = format!("{tenant}\0{model}");
    let Some(key) = crate::cache::key(&tenant, p.format, body, live.config.cache.non_deterministic) else {
        return Ok(None);
    };
    if mode.reads() {
        if let Some(hit) = state.cache.get(&key, now_ms()).await {
            return Ok(Some(hit));
        }
    }
    if let Some(hit) = semantic_lookup(state, p, headers, body, model, &tenant, mode).await {
        return Ok(Some(hit));
    }
    p.row_mut().cache = CacheOutcome::Miss;
    if mode.writes() {
        p.cache_key = Some(key);
    }
    Ok(None)
}

/// The semantic cache: a close-enough question already answered for this
/// tenant and model. On a miss, remembers the question's embedding to file the answer under.
async fn semantic_lookup(
    state: &AppState,
    p: &mut Pending,
    headers: &HeaderMap,
    body: &Bytes,
    model: &str,
    tenant: &str,
    mode: crate::cache::Mode,
) -> Option<Arc<crate::cache::Entry>> {
    let (sem, addr) = (state.semantic.as_ref()?, state.self_addr.get()?);
    let tools = estimate::mentions(body, b"\"tools\"");
    if p.format == ApiFormat::OpenAiEmbeddings || tools || sem.excluded(model) {
        return None;
    }
    let v =
        crate::semantic::embed(&state.http, *addr, headers, &sem.config.embeddings_model, &p.info.prompt_text).await?;
    if mode.reads() {
        if let Some((hit, similarity)) = sem.lookup(tenant, p.format, p.info.stream, model, &v, now_ms()) {
            p.extra_headers.push((HEADER_SIMILARITY, format!("{similarity:.4}")));
            return Some(hit);
        }
    }
    if mode.writes() {
        p.semantic = Some((tenant.to_string(), model.to_string(), v));
    }
    None
}

/// The price catalog knows `model` at `provider` (`implicit_routes = "known_models"`).
fn known_model(state: &AppState, live: &Live, provider: usize, model: &str) -> bool {
    live.config.providers.get(provider).is_some_and(|p| state.pricing.load().knows(p, model, now_ms()))
}

/// The targets to try, in order (strategy, circuit health).
fn plan_route(state: &AppState, live: &Live, model: &str) -> Result<Vec<routing::Attempt>, ApiError> {
    let mut plan = routing::plan(&live.config, model, &|p, m| known_model(state, live, p, m));
    if plan.is_empty() {
        return Err(ApiError::ModelNotFound { message: format!("no route for model {model:?}") });
    }
    order_plan(state, live, model, &mut plan);
    Ok(plan)
}

/// Sends to the first target that answers (retries, fallbacks); records every attempt.
async fn send(
    state: &AppState,
    p: &mut Pending,
    principal: &Principal,
    headers: &HeaderMap,
    plan: &[routing::Attempt],
    body: &Bytes,
) -> Result<Answer, ApiError> {
    let live = p.live.clone();
    let forwarded: Vec<(HeaderName, HeaderValue)> = FORWARDED_HEADERS
        .iter()
        .filter_map(|h| headers.get(*h).map(|v| (HeaderName::from_static(h), v.clone())))
        .collect();
    let passthrough_key = match principal {
        Principal::Passthrough { provider_key, .. } => Some(provider_key.expose()),
        Principal::Key(_) => None,
    };
    let too_large = p.upload.as_ref().map(crate::upload::Upload::too_large);
    let mut upload = p.upload.take().map(|u| Box::new(u) as Box<dyn upstream::Upload>);
    let mut sent = upstream::send(
        &state.upstream,
        &live.config,
        &state.health,
        &live.tokens,
        plan,
        p.format,
        body,
        &mut upload,
        &p.info,
        passthrough_key,
        &forwarded,
    )
    .await;
    if sent.result.is_err() && too_large.is_some_and(|f| f.load(Ordering::Acquire)) {
        // The upload went past its limit while it was relayed: the provider got an incomplete request.
        let limit = live.config.server.max_upload_bytes;
        sent.result = Err(ApiError::RequestTooLarge { message: format!("the upload is larger than {limit} bytes") });
    }
    let row = p.row_mut();
    row.attempts = sent.attempts;
    row.attempt_log = sent.log;
    if let Some((idx, m)) = &sent.last {
        row.provider = Some(live.config.providers[*idx].name.clone());
        row.model = Some(m.clone());
        p.provider = Some(*idx);
        if sent.result.is_err() && sent.answered_then_failed {
            // A stream answered 200 and then failed before its first event:
            // the provider may still bill the prompt, so it is counted.
            p.estimate_spend(state, &live.config.providers[*idx], m, "");
            p.row_mut().streamed = true;
        }
    }
    sent.result
}

fn remember_semantic(state: &AppState, p: &mut Pending, stream: bool, entry: &crate::cache::Entry) {
    if let (Some(sem), Some((tenant, model, v))) = (&state.semantic, p.semantic.take()) {
        sem.insert(&tenant, p.format, stream, &model, v, Arc::new(entry.clone()));
    }
}

/// A cached answer: $0 now, the original cost recorded as avoided.
async fn serve_hit(mut p: Pending, e: Arc<crate::cache::Entry>, hung_up: &AtomicBool) -> Response {
    let stream = p.info.stream;
    let elapsed_ms = p.started.elapsed().as_millis() as u64;
    let row = p.row_mut();
    row.status = 200;
    row.cache = CacheOutcome::Hit;
    row.model = Some(e.model.clone());
    row.provider = Some(e.provider.clone());
    row.usage = Usage::default();
    row.cost = Some(Money::ZERO);
    row.response_cache_savings = e.cost.unwrap_or(Money::ZERO);
    row.streamed = stream;
    if stream {
        row.ttft_ms = Some(elapsed_ms);
    }
    let request_id = p.request_id().to_string();
    let extra = std::mem::take(&mut p.extra_headers);
    p.commit(hung_up).await;
    let zero = Money::ZERO.to_string();
    let mut resp = if stream {
        let mut parts: Vec<Bytes> = e.events.clone();
        parts.push(Bytes::from(format!(": {HEADER_COST}={zero}\n\n")));
        parts.push(e.terminator.clone());
        let mut r = Response::new(Body::from_stream(futures_util::stream::iter(
            parts.into_iter().map(Ok::<Bytes, std::convert::Infallible>),
        )));
        r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        r.headers_mut().insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        r
    } else {
        let mut r = Response::new(Body::from(e.body.clone().unwrap_or_default()));
        r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        r.headers_mut().insert(HEADER_COST, header(&zero));
        r
    };
    let h = resp.headers_mut();
    h.insert(HEADER_REQUEST_ID, header(&request_id));
    h.insert(HEADER_CACHE, HeaderValue::from_static("hit"));
    h.insert(HEADER_PRICED, HeaderValue::from_static("true"));
    h.insert(HEADER_MODEL, header(&e.model));
    for (k, v) in extra {
        h.insert(k, header(&v));
    }
    resp
}

async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = || ApiError::RequestTooLarge { message: format!("request body is larger than {limit} bytes") };
    let declared =
        headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(too_large()),
        Err(e) => Err(ApiError::invalid(format!("could not read the request body: {e}"))),
    }
}

/// Orders the route's targets by its strategy and the targets' health.
fn order_plan(state: &AppState, live: &Live, model: &str, plan: &mut [routing::Attempt]) {
    if plan.len() < 2 {
        return;
    }
    let now = now_ms();
    let by_cost = live.config.routes.get(model).is_some_and(|r| r.strategy == crate::config::Strategy::LeastCost);
    let view = |a: &routing::Attempt| {
        let (latency_ms, ejected) = state.health.view(a, now);
        let unit_cost = if by_cost {
            let u = Usage { input: 1000, output: 1000, ..Usage::default() };
            state.pricing.load().price(&live.config.providers[a.provider], &a.model, &u, now).cost.map(Money::nanos)
        } else {
            None
        };
        routing::TargetView { latency_ms, unit_cost, ejected }
    };
    routing::order(&live.config, model, plan, view, rand::random::<u32>());
}

/// Reserves the request's maximum cost and tokens against every budget and
/// limit that covers it; applies a refusing budget's action (downgrade,
/// clamp) and returns the body to send (it changes when max tokens are set).
async fn govern(
    state: &AppState,
    p: &mut Pending,
    principal: &Principal,
    model: &str,
    plan: &mut Vec<routing::Attempt>,
    mut body: Bytes,
) -> Result<Bytes, ApiError> {
    let live = p.live.clone();
    let now = now_ms();
    let pricing = state.pricing.load();
    let default_out = live.config.governance.default_max_output_tokens;
    let mut downgraded = false;
    let mut clamped = false;
    let mut capped = false;
    loop {
        let provider_name = live.config.providers[plan[0].provider].name.clone();
        // Also the write-ahead intent's cost, so computed with no budget in force too.
        let ask = estimate::max_cost(&live.config, &pricing, plan, &p.info, &body, default_out);
        let attribution = p.row().attribution.clone();
        let facts = Facts { key_id: principal.id(), model, provider: Some(&provider_name), attribution: &attribution };
        // What block does before refusing an uncapped request (below):
        // shadow budgets weigh the same way.
        let can_cap = !capped
            && p.info.max_output_tokens.is_none()
            && p.format != ApiFormat::OpenAiEmbeddings
            && p.info.media.is_none();
        let fits = |room: Money| {
            estimate::output_tokens_within(&live.config, &pricing, plan, &p.info, &body, room)
                >= estimate::MIN_CLAMPED_OUTPUT
        };
        let fits: Option<&(dyn Fn(Money) -> bool + Sync)> = if can_cap { Some(&fits) } else { None };
        match state.governor.reserve_with(&facts, ask, now, fits).await {
            Ok(r) => {
                // Under a budget, a request that neither it nor its model's
                // catalog entry bounds is capped at the default reserved for
                // it, so it cannot outspend the reservation. One bounded by
                // its model's maximum output is sent as it came.
                let bound = estimate::output_bound(&live.config, &pricing, plan, &p.info, default_out);
                if r.remaining().is_some()
                    && matches!(bound, estimate::OutputBound::Default(_))
                    && ask.cost.is_some()
                    && p.info.media.is_none()
                {
                    let first = live.config.providers[plan[0].provider].kind;
                    body = estimate::set_max_tokens(p.format, &mut p.info, first, &body, default_out)?;
                    p.extra_headers.push((HEADER_MAX_TOKENS_CAPPED, default_out.to_string()));
                }
                if let Some(rem) = r.remaining() {
                    p.extra_headers.push((HEADER_BUDGET_REMAINING, rem.max(Money::ZERO).to_string()));
                }
                // Shadow budgets that would have refused it: kept in the row.
                if !r.shadow_refused.is_empty() {
                    let ids = r.shadow_refused.join(",");
                    p.row_mut().attribution.tags.insert(crate::attribution::SHADOW_TAG.to_owned(), ids);
                }
                p.reservation = Some(r);
                p.upper_bound = ask.cost;
                return Ok(body);
            }
            Err(refusal) => {
                let (action, remaining) = match &refusal {
                    Refusal::Budget { action, remaining, unpriced: false, .. } => (action.clone(), *remaining),
                    // Rate limits, unpriced models and unreachable counters admit no alternative.
                    _ => return Err(refusal.into_error("cannot cover this request")),
                };
                let refuse = |why: &str| refusal.clone().into_error(why);
                // No cap in the request, and its model's maximum output does
                // not fit: cap it at what does (once), before any action.
                if !capped
                    && p.info.max_output_tokens.is_none()
                    && p.format != ApiFormat::OpenAiEmbeddings
                    && p.info.media.is_none()
                {
                    capped = true;
                    let cap = estimate::output_tokens_within(&live.config, &pricing, plan, &p.info, &body, remaining);
                    if cap >= estimate::MIN_CLAMPED_OUTPUT {
                        let first = live.config.providers[plan[0].provider].kind;
                        body = estimate::set_max_tokens(p.format, &mut p.info, first, &body, cap)?;
                        p.extra_headers.push((HEADER_MAX_TOKENS_CAPPED, cap.to_string()));
                        continue;
                    }
                }
                match action {
                    Action::Downgrade(to) if !downgraded => {
                        let new_plan = routing::plan(&live.config, &to, &|p, m| known_model(state, &live, p, m));
                        if new_plan.is_empty() {
                            return Err(refuse(&format!(
                                "cannot cover this request and its downgrade model {to:?} has no route"
                            )));
                        }
                        *plan = new_plan;
                        downgraded = true;
                        p.extra_headers.push((HEADER_DOWNGRADED, to.clone()));
                    }
                    Action::Clamp if !clamped && p.info.media.is_none() => {
                        let fits =
                            estimate::output_tokens_within(&live.config, &pricing, plan, &p.info, &body, remaining);
                        if fits < estimate::MIN_CLAMPED_OUTPUT {
                            return Err(refuse("cannot cover even a short answer"));
                        }
                        let first = live.config.providers[plan[0].provider].kind;
                        body = estimate::set_max_tokens(p.format, &mut p.info, first, &body, fits)?;
                        clamped = true;
                        p.extra_headers.push((HEADER_CLAMPED, fits.to_string()));
                    }
                    _ => return Err(refuse("cannot cover this request")),
                }
            }
        }
    }
}

/// Puts the request's intent in the spool before it is sent (see `ledger`).
async fn intend(state: &AppState, p: &Pending, plan: &[routing::Attempt]) {
    let live = p.live.clone();
    let row = p.row();
    let first = plan.first();
    state
        .ledger
        .intend(crate::ledger::Intent {
            request_id: row.request_id.clone(),
            time_ms: row.time_ms,
            key_id: row.key_id.clone(),
            endpoint: row.endpoint,
            requested_model: row.requested_model.clone(),
            provider: first.map(|a| live.config.providers[a.provider].name.clone()),
            model: first.map(|a| a.model.clone()),
            streamed: p.info.stream,
            upper_bound: p.upper_bound,
            attribution: row.attribution.clone(),
        })
        .await;
}

/// Non-streaming: read the whole answer, meter, price, ledger, respond.
async fn whole_body(state: &AppState, mut p: Pending, answer: Answer, hung_up: &AtomicBool) -> Response {
    let live = p.live.clone();
    let provider = &live.config.providers[answer.provider];
    let upstream::Reply::Whole(response) = answer.reply else {
        let e = ApiError::Internal { message: "a non-streaming request got a stream".into() };
        return Box::pin(p.fail(e, hung_up)).await;
    };
    // Transcriptions in text formats answer text/plain: the client gets the provider's own type.
    let content_type =
        if p.info.media.is_some() { response.headers().get(http::header::CONTENT_TYPE).cloned() } else { None };
    let read = tokio::time::timeout(provider.timeout, read_limited(response, MAX_UPSTREAM_BODY)).await;
    let bytes = match read {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            p.estimate_spend(state, provider, &answer.model, "");
            return p.fail(e, hung_up).await;
        }
        Err(_) => {
            p.estimate_spend(state, provider, &answer.model, "");
            let e = ApiError::UpstreamTimeout {
                message: format!("provider {} did not finish its answer in time", provider.name),
            };
            return p.fail(e, hung_up).await;
        }
    };
    let translated = match answer.translator.translate_body(&bytes) {
        Ok(t) => t,
        Err(e) => {
            p.estimate_spend(state, provider, &answer.model, "");
            return p.fail(upstream::adapter_error(e), hung_up).await;
        }
    };
    let served = translated.model.clone().unwrap_or_else(|| answer.model.clone());
    p.row_mut().model = Some(served.clone());
    let (usage, source) = if p.info.media.is_some() {
        metering::of_media(&served, &p.info, translated.usage, &translated.output_text, false)
    } else {
        metering::of_answer(&served, &p.info.prompt_text, translated.usage, &translated.output_text)
    };
    p.set_usage(state, provider, &served, usage, source, translated.service_tier.as_deref());
    p.note_provider_cost(provider, translated.provider_cost);
    p.row_mut().status = 200;
    if let Some(key) = p.cache_key.take() {
        if p.row().usage_source == UsageSource::Provider {
            let entry = crate::cache::Entry {
                body: Some(translated.body.clone()),
                events: Vec::new(),
                terminator: Bytes::new(),
                usage: p.row().usage,
                model: served.clone(),
                provider: provider.name.clone(),
                cost: p.row().cost,
                created_ms: now_ms(),
            };
            remember_semantic(state, &mut p, false, &entry);
            state.cache.put(key, entry);
        }
    }
    let cache_state = p.row().cache;
    let (request_id, cost, source) = (p.request_id().to_string(), p.row().cost, p.row().usage_source);
    let extra = std::mem::take(&mut p.extra_headers);
    p.commit(hung_up).await;

    let mut resp = Response::new(Body::from(translated.body));
    let h = resp.headers_mut();
    h.insert(http::header::CONTENT_TYPE, content_type.unwrap_or_else(|| HeaderValue::from_static("application/json")));
    h.insert(HEADER_REQUEST_ID, header(&request_id));
    cost_headers(h, cost, source);
    h.insert(HEADER_MODEL, header(&served));
    if cache_state == "miss" {
        h.insert(HEADER_CACHE, HeaderValue::from_static("miss"));
    }
    for (k, v) in extra {
        h.insert(k, header(&v));
    }
    resp
}

fn cost_headers(h: &mut HeaderMap, cost: Option<Money>, source: UsageSource) {
    match cost {
        Some(c) => {
            h.insert(HEADER_COST, header(&c.to_string()));
            h.insert(HEADER_PRICED, HeaderValue::from_static("true"));
        }
        None => {
            h.insert(HEADER_PRICED, HeaderValue::from_static("false"));
        }
    }
    h.insert(HEADER_USAGE, HeaderValue::from_static(source.as_str()));
}

async fn read_limited(resp: upstream::Response, cap: usize) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt;
    let mut body = resp.into_body();
    let mut buf = Vec::new();
    loop {
        match body.frame().await {
            Some(Ok(frame)) => {
                let Ok(c) = frame.into_data() else { continue };
                if buf.len() + c.len() > cap {
                    return Err(ApiError::UpstreamError {
                        message: format!("upstream answer is larger than {cap} bytes"),
                    });
                }
                if buf.is_empty() && http_body::Body::is_end_stream(&body) {
                    // The whole answer in one frame: no copy.
                    return Ok(c);
                }
                buf.extend_from_slice(&c);
            }
            None => return Ok(Bytes::from(buf)),
            Some(Err(e)) => {
                return Err(ApiError::UpstreamError { message: format!("upstream answer broke off: {e}") });
            }
        }
    }
}

/// Streaming: relay chunk by chunk on a tracked task that meters every chunk
/// and finalises exactly once, even if the client hangs up.
/// A provider stream that has produced its first client event.
struct OpenStream {
    provider: usize,
    model: String,
    meter: tollgate_providers::StreamTranslator,
    upstream: http_body_util::BodyDataStream<upstream::Body>,
    /// The client events produced so far (at least one).
    first: Vec<Bytes>,
    first_byte: Duration,
}

/// The primed stream of a streaming answer (`upstream::send` waited for its
/// first event, so the response can start).
fn open_stream(p: &Pending, answer: Answer) -> Result<OpenStream, ApiError> {
    match answer.reply {
        upstream::Reply::Stream(primed) => {
            let primed = *primed;
            Ok(OpenStream {
                provider: answer.provider,
                model: answer.model,
                meter: primed.meter,
                upstream: primed.upstream,
                first: primed.first,
                first_byte: p.started.elapsed(),
            })
        }
        upstream::Reply::Whole(_) => {
            Err(ApiError::Internal { message: "a streaming request got an answer that was not primed".into() })
        }
    }
}

/// Client events joined into one body chunk at most this large (bigger
/// bursts leave in several).
const COALESCE_BYTES: usize = 64 * 1024;

/// The events as one body chunk (no copy for a single event).
fn joined(out: &mut Vec<Bytes>) -> Bytes {
    if out.len() == 1 {
        return out.pop().unwrap_or_default();
    }
    let mut b = bytes::BytesMut::with_capacity(out.iter().map(Bytes::len).sum());
    for e in out.drain(..) {
        b.extend_from_slice(&e);
    }
    b.freeze()
}

fn relay_stream(state: Arc<AppState>, p: Pending, answer: OpenStream) -> Response {
    let (tx, mut rx) = mpsc::channel::<Bytes>(32);
    let request_id = p.request_id().to_string();
    let extra = p.extra_headers.clone();
    let cache_miss = p.row().cache == CacheOutcome::Miss;
    let tasks = state.tasks.clone();
    tasks.spawn(Box::pin(relay(state, p, answer, tx)));
    let body = Body::from_stream(futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|o| o.map(Ok::<Bytes, std::convert::Infallible>))
    }));
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(HEADER_REQUEST_ID, header(&request_id));
    if cache_miss {
        h.insert(HEADER_CACHE, HeaderValue::from_static("miss"));
    }
    for (k, v) in extra {
        h.insert(k, header(&v));
    }
    resp
}

enum StreamStop {
    Ended,
    ClientGone,
    Timeout,
    Broken(String),
    /// The shutdown deadline passed.
    Shutdown,
}

async fn relay(state: Arc<AppState>, mut p: Pending, answer: OpenStream, tx: mpsc::Sender<Bytes>) {
    let live = p.live.clone();
    let provider = &live.config.providers[answer.provider];
    let idle = provider.timeout;
    let OpenStream { mut meter, mut upstream, first, first_byte, model: answer_model, .. } = answer;
    // The events already read are the first to send.
    let mut out: Vec<Bytes> = first;
    let first_byte: Option<Duration> = Some(first_byte);
    // The events as the client saw them, kept for the response cache.
    let mut kept: Option<(Vec<Bytes>, usize)> = p.cache_key.map(|_| (Vec::new(), 0));
    let cap = state.cache.max_entry_bytes();
    let cut = p.cut.clone();
    // The idle timeout is one timer for the whole stream, moved on only when
    // it fires early (a chunk came since it was set): a timer per chunk was
    // a registration and a cancellation in the timer wheel on every chunk.
    let quiet = tokio::time::sleep(idle);
    tokio::pin!(quiet);
    let mut last_chunk = tokio::time::Instant::now();
    // An end or a break found while draining chunks that had already arrived:
    // acted on once the events before it are sent.
    let mut deferred: Option<StreamStop> = None;
    let stop = 'relay: loop {
        if !out.is_empty() {
            if let Some((events, size)) = kept.as_mut() {
                *size += out.iter().map(Bytes::len).sum::<usize>();
                if *size > cap {
                    kept = None;
                } else {
                    events.extend(out.iter().cloned());
                }
            }
            // The events of every chunk that had arrived leave as one body
            // chunk: one channel hand-off and one write for a burst.
            let b = joined(&mut out);
            // A client that stops reading is cut by the listener's write timeout,
            // which closes this channel.
            tokio::select! {
                sent = tx.send(b) => if sent.is_err() { break 'relay StreamStop::ClientGone },
                _ = cut.cancelled() => break 'relay StreamStop::Shutdown,
            }
        }
        if let Some(stop) = deferred.take() {
            break stop;
        }
        let next = tokio::select! {
            biased;
            _ = tx.closed() => break 'relay StreamStop::ClientGone,
            _ = cut.cancelled() => break 'relay StreamStop::Shutdown,
            n = upstream.next() => n,
            () = &mut quiet => {
                let until = last_chunk + idle;
                if tokio::time::Instant::now() >= until {
                    break 'relay StreamStop::Timeout;
                }
                quiet.as_mut().reset(until);
                continue 'relay;
            }
        };
        last_chunk = tokio::time::Instant::now();
        let chunk = match next {
            None => break StreamStop::Ended,
            Some(Err(e)) => break StreamStop::Broken(format!("upstream stream broke off: {e}")),
            Some(Ok(c)) => c,
        };
        if let Err(e) = meter.push(&chunk, &mut out) {
            break StreamStop::Broken(e.to_string());
        }
        // Take the chunks already read from the connection too, without waiting.
        let mut queued: usize = out.iter().map(Bytes::len).sum();
        while queued < COALESCE_BYTES {
            match futures_util::FutureExt::now_or_never(upstream.next()) {
                None => break,
                Some(None) => deferred = Some(StreamStop::Ended),
                Some(Some(Err(e))) => {
                    deferred = Some(StreamStop::Broken(format!("upstream stream broke off: {e}")));
                }
                Some(Some(Ok(c))) => {
                    let before = out.len();
                    if let Err(e) = meter.push(&c, &mut out) {
                        deferred = Some(StreamStop::Broken(e.to_string()));
                    }
                    queued += out[before..].iter().map(Bytes::len).sum::<usize>();
                }
            }
            if deferred.is_some() {
                break;
            }
        }
    };
    let end: StreamEnd = meter.finish(&mut out);
    let client_gone = matches!(stop, StreamStop::ClientGone);
    if !client_gone {
        for b in out.drain(..) {
            if let Some((events, _)) = kept.as_mut() {
                events.push(b.clone());
            }
            if tx.send(b).await.is_err() {
                break;
            }
        }
    }

    let served = end.model.clone().unwrap_or_else(|| answer_model.clone());
    let row = p.row_mut();
    row.model = Some(served.clone());
    row.streamed = true;
    row.ttft_ms = first_byte.map(|d| d.as_millis() as u64);
    row.client_disconnected = client_gone;
    let (usage, source) = metering::of_stream(&served, &p.info.prompt_text, &end);
    p.set_usage(&state, provider, &served, usage, source, end.service_tier.as_deref());
    p.note_provider_cost(provider, end.provider_cost);
    let error = match (&stop, end.completed) {
        (StreamStop::ClientGone, _) => None,
        (StreamStop::Shutdown, _) => Some(ApiError::Overloaded { message: "the gateway is shutting down".into() }),
        (_, true) => None,
        (StreamStop::Timeout, false) => Some(ApiError::UpstreamTimeout {
            message: format!("provider {} stopped sending for {} ms", provider.name, idle.as_millis()),
        }),
        (StreamStop::Broken(m), false) => Some(ApiError::UpstreamError { message: m.clone() }),
        (StreamStop::Ended, false) => {
            Some(ApiError::UpstreamError { message: "upstream stream ended before its final event".into() })
        }
    };
    let stalled = p.connection.as_ref().is_some_and(|c| c.stalled());
    let row = p.row_mut();
    row.status = 200;
    if let Some(e) = &error {
        row.error_code = Some(e.code().to_string());
    }
    if client_gone {
        // A client that stopped reading was cut by the write timeout; one that left, hung up.
        row.error_code = Some(if stalled { "client_stalled" } else { "client_disconnected" }.into());
    }
    if matches!(stop, StreamStop::Shutdown) {
        row.error_code = Some("shutdown".into());
    }
    let cost = row.cost;
    if let (Some(key), Some((events, _)), true, true) =
        (p.cache_key.take(), kept, end.completed, error.is_none() && !client_gone)
    {
        if source == UsageSource::Provider {
            let entry = crate::cache::Entry {
                body: None,
                events,
                terminator: end.terminator.clone(),
                usage,
                model: served.clone(),
                provider: provider.name.clone(),
                cost,
                created_ms: now_ms(),
            };
            remember_semantic(&state, &mut p, true, &entry);
            state.cache.put(key, entry);
        }
    }
    let shape = shape_of(p.format);
    let (p_redactor, p_passthrough) = (p.redactor.clone(), p.passthrough_key.clone());
    let never = AtomicBool::new(false);
    p.commit(&never).await;

    if client_gone {
        return;
    }
    if let Some(e) = error {
        // Tell the client in-band: the SDKs raise on an error event.
        let e = p_redactor.error(e, p_passthrough.as_ref().map(|k| k.expose()));
        let _ =
            tokio::time::timeout(live.config.server.limits.write_timeout, tx.send(stream_error_event(&e, shape))).await;
        return;
    }
    // Google's SDKs read every SSE block as JSON: a native Gemini stream gets no cost comment.
    if shape != ErrorShape::Google {
        let comment = match cost {
            Some(c) => format!(": {HEADER_COST}={c}\n\n"),
            None => format!(": {HEADER_PRICED}=false\n\n"),
        };
        let _ = tx.send(Bytes::from(comment)).await;
    }
    if !end.terminator.is_empty() {
        let _ = tx.send(end.terminator).await;
    }
}

/// Speech: the provider's audio relayed as it arrives (never held whole),
/// on a tracked task; the row is written before the last chunk leaves.
fn relay_audio(state: Arc<AppState>, p: Pending, answer: Answer) -> Response {
    let upstream::Reply::Whole(response) = answer.reply else {
        let e = ApiError::Internal { message: "a speech request got an event stream it did not ask for".into() };
        let request_id = p.request_id().to_string();
        let shape = shape_of(p.format);
        state.tasks.spawn(async move {
            let _ = p.fail(e.clone(), &AtomicBool::new(false)).await;
        });
        return error_response(
            ApiError::Internal { message: "a speech request got an event stream it did not ask for".into() },
            shape,
            &request_id,
        );
    };
    let content_type = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("application/octet-stream"));
    let (tx, mut rx) = mpsc::channel::<Bytes>(16);
    let request_id = p.request_id().to_string();
    let extra = p.extra_headers.clone();
    let tasks = state.tasks.clone();
    tasks.spawn(Box::pin(relay_audio_body(state, p, answer.provider, answer.model, response, tx)));
    let body = Body::from_stream(futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|o| o.map(Ok::<Bytes, std::convert::Infallible>))
    }));
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(http::header::CONTENT_TYPE, content_type);
    h.insert(HEADER_REQUEST_ID, header(&request_id));
    for (k, v) in extra {
        h.insert(k, header(&v));
    }
    resp
}

async fn relay_audio_body(
    state: Arc<AppState>,
    mut p: Pending,
    provider: usize,
    model: String,
    response: upstream::Response,
    tx: mpsc::Sender<Bytes>,
) {
    let live = p.live.clone();
    let provider = &live.config.providers[provider];
    let idle = provider.timeout;
    let mut events =
        p.info.media.as_ref().is_some_and(|m| m.speech_events).then(tollgate_providers::media::SpeechEvents::default);
    let mut upstream = http_body_util::BodyDataStream::new(response.into_body());
    // One chunk behind: the last one leaves after the row is written.
    let mut held: Option<Bytes> = None;
    let cut = p.cut.clone();
    let stop = loop {
        let next = tokio::select! {
            biased;
            _ = tx.closed() => break StreamStop::ClientGone,
            _ = cut.cancelled() => break StreamStop::Shutdown,
            n = tokio::time::timeout(idle, upstream.next()) => n,
        };
        match next {
            Err(_) => break StreamStop::Timeout,
            Ok(None) => break StreamStop::Ended,
            Ok(Some(Err(e))) => break StreamStop::Broken(format!("upstream audio broke off: {e}")),
            Ok(Some(Ok(c))) => {
                if let Some(ev) = events.as_mut() {
                    ev.push(&c);
                }
                if let Some(prev) = held.replace(c) {
                    if tx.send(prev).await.is_err() {
                        break StreamStop::ClientGone;
                    }
                }
            }
        }
    };
    let reported = events.and_then(|e| e.usage);
    let bills_characters = state.pricing.load().bills_characters(provider, &model, p.row().time_ms);
    let (usage, source) = metering::of_media(&model, &p.info, reported, "", bills_characters);
    p.set_usage(&state, provider, &model, usage, source, None);
    let stalled = p.connection.as_ref().is_some_and(|c| c.stalled());
    let row = p.row_mut();
    row.model = Some(model.clone());
    row.status = 200;
    row.error_code = match &stop {
        StreamStop::Ended => None,
        StreamStop::ClientGone => Some(if stalled { "client_stalled" } else { "client_disconnected" }.into()),
        StreamStop::Shutdown => Some("shutdown".into()),
        StreamStop::Timeout => Some("upstream_timeout".into()),
        StreamStop::Broken(m) => {
            tracing::warn!(provider = %provider.name, error = %m, "speech audio broke off");
            Some("upstream_error".into())
        }
    };
    row.client_disconnected = matches!(stop, StreamStop::ClientGone);
    let never = AtomicBool::new(false);
    let ended = matches!(stop, StreamStop::Ended);
    p.commit(&never).await;
    if ended {
        if let Some(last) = held {
            let _ = tx.send(last).await;
        }
    }
}

fn stream_error_event(e: &ApiError, shape: ErrorShape) -> Bytes {
    let body = e.body(shape);
    Bytes::from(match shape {
        ErrorShape::OpenAi => format!("data: {body}\n\n"),
        ErrorShape::Anthropic => format!("event: error\ndata: {body}\n\n"),
        ErrorShape::Google => format!("data: {body}\n\n"),
    })
}

/// Set when the client's side of a non-streaming request is dropped first.
#[derive(Default)]
struct HangUp {
    flag: Arc<AtomicBool>,
    disarmed: bool,
}

impl HangUp {
    fn disarm(mut self) {
        self.disarmed = true;
    }
}

impl Drop for HangUp {
    fn drop(&mut self) {
        if !self.disarmed {
            self.flag.store(true, Ordering::Release);
        }
    }
}

/// The request's ledger row, written exactly once: by `commit`/`fail`, or by
/// `Drop` if the task unwinds before either.
pub struct Pending {
    row: Option<LedgerRow>,
    /// The configuration this request runs under, from its start to its end.
    live: Arc<Live>,
    writer: LedgerWriter,
    observer: Arc<crate::observe::Observer>,
    format: ApiFormat,
    started: Instant,
    info: RequestInfo,
    provider: Option<usize>,
    reservation: Option<Reservation>,
    /// The most this request can cost on its route (`None`: unpriced).
    upper_bound: Option<Money>,
    /// Where to keep this request's answer in the response cache.
    cache_key: Option<[u8; 32]>,
    /// A multipart upload's parts still to relay (sent with the request).
    upload: Option<crate::upload::Upload>,
    /// A native Gemini call's model and whether it streams (from its URL).
    gemini_call: Option<(String, bool)>,
    /// (tenant, model, embedding) to file the answer under in the semantic cache.
    semantic: Option<(String, String, Vec<f32>)>,
    /// Response headers decided along the way (budget remaining, downgrade, clamp).
    extra_headers: Vec<(&'static str, String)>,
    /// The client connection (to tell a stalled reader from one that hung up).
    connection: Option<Arc<crate::listener::ConnState>>,
    /// A passthrough caller's own provider key, masked in error text.
    passthrough_key: Option<crate::config::Secret>,
    /// Fires when the shutdown deadline passes.
    cut: tokio_util::sync::CancellationToken,
    redactor: crate::redact::Redactor,
}

impl Pending {
    #[allow(clippy::too_many_arguments)]
    fn new(
        live: Arc<Live>,
        cut: tokio_util::sync::CancellationToken,
        writer: LedgerWriter,
        observer: Arc<crate::observe::Observer>,
        request_id: &str,
        time_ms: i64,
        key_id: &str,
        format: ApiFormat,
        started: Instant,
    ) -> Pending {
        let row = LedgerRow::new(request_id, time_ms, key_id, endpoint_of(format));
        let redactor = live.redactor.clone();
        Pending {
            row: Some(row),
            live,
            writer,
            observer,
            format,
            started,
            info: RequestInfo::default(),
            provider: None,
            reservation: None,
            upper_bound: Some(Money::ZERO),
            cache_key: None,
            upload: None,
            gemini_call: None,
            semantic: None,
            extra_headers: Vec::new(),
            connection: None,
            passthrough_key: None,
            cut,
            redactor,
        }
    }

    fn row_mut(&mut self) -> &mut LedgerRow {
        self.row.get_or_insert_with(|| unreachable!("the row is only taken when it is written"))
    }

    fn row(&self) -> &LedgerRow {
        self.row.as_ref().unwrap_or_else(|| unreachable!("the row is only taken when it is written"))
    }

    fn request_id(&self) -> &str {
        &self.row().request_id
    }

    #[allow(clippy::too_many_arguments)]
    fn set_usage(
        &mut self,
        state: &AppState,
        provider: &Provider,
        model: &str,
        usage: Usage,
        source: UsageSource,
        served_tier: Option<&str>,
    ) {
        let tier = crate::pricing::tier(served_tier, self.info.service_tier.as_deref());
        let priced = state.pricing.load().price_request(
            provider,
            model,
            &usage,
            self.row().time_ms,
            tier,
            self.info.media.as_ref(),
        );
        let row = self.row_mut();
        row.usage = usage;
        row.usage_source = source;
        row.cost = priced.cost;
        row.cache_savings = priced.cache_savings;
        row.tool_cost = priced.tool_cost;
    }

    /// Keeps the cost the provider reported beside ours (the metrics count
    /// disagreements beyond the tolerance: a catalog entry that has drifted).
    fn note_provider_cost(&mut self, provider: &Provider, reported: Option<Money>) {
        let row = self.row_mut();
        row.provider_cost = reported;
        if let (Some(theirs), Some(ours)) = (reported, row.cost) {
            if crate::pricing::disagrees(ours, theirs) {
                tracing::debug!(provider = %provider.name, %ours, %theirs, "the provider's reported cost differs from ours");
            }
        }
    }

    /// The provider was called but its answer is unusable: it may still bill
    /// for the prompt, so count the prompt locally.
    fn estimate_spend(&mut self, state: &AppState, provider: &Provider, model: &str, output: &str) {
        let (u, source) = if self.info.media.is_some() {
            metering::of_media(model, &self.info, None, output, false)
        } else {
            metering::unusable_answer(model, &self.info.prompt_text, output)
        };
        self.set_usage(state, provider, model, u, source, None);
    }

    async fn commit(mut self, hung_up: &AtomicBool) {
        // Settle while the row is still held: if settling panics, `Drop`
        // writes the row (the provider may have been paid by then).
        if let Some(r) = self.reservation.take() {
            let row = self.row();
            r.governor().charge_run(
                row.attribution.trace_id.as_deref(),
                row.attribution.session.as_deref(),
                row.cost.unwrap_or(Money::ZERO),
            );
            let (cost, tokens) = (row.cost, row.usage.total_tokens());
            r.settle(cost, tokens, now_ms()).await;
        }
        let mut row = self.row.take().unwrap_or_else(|| unreachable!("committed twice"));
        row.latency_ms = self.started.elapsed().as_millis() as u64;
        if hung_up.load(Ordering::Acquire) {
            row.client_disconnected = true;
        }
        self.observer.record(&row);
        self.writer.write(row).await;
    }

    async fn fail(mut self, e: ApiError, hung_up: &AtomicBool) -> Response {
        let e = self.redactor.error(e, self.passthrough_key.as_ref().map(|k| k.expose()));
        let request_id = self.request_id().to_string();
        let row = self.row_mut();
        row.status = e.status().as_u16();
        row.error_code = Some(e.code().to_string());
        if self.provider.is_none() {
            // Nothing was sent upstream: nothing was spent.
            let row = self.row_mut();
            row.usage = Usage::default();
            row.cost = Some(Money::ZERO);
        }
        let shape = shape_of(self.format);
        self.commit(hung_up).await;
        error_response(e, shape, &request_id)
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(mut row) = self.row.take() {
            // Only reached when the task unwound (panic) before writing, or was
            // cut at the shutdown deadline.
            if self.cut.is_cancelled() {
                row.status = StatusCode::SERVICE_UNAVAILABLE.as_u16();
                row.error_code = Some("shutdown".into());
            } else {
                row.status = StatusCode::INTERNAL_SERVER_ERROR.as_u16();
                row.error_code = Some("internal_error".into());
            }
            row.latency_ms = self.started.elapsed().as_millis() as u64;
            self.observer.record(&row);
            self.writer.write_detached(row);
        }
    }
}
