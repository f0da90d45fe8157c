//! Sending a prepared request upstream: retries with backoff on retryable
//! answers, then the route's fallbacks in order, each attempt counted.
//!
//! It returns the first 2xx response (headers received; the body is read by
//! the caller) or the error that the last attempt ended with, already mapped
//! to its public code. A streamed answer counts as answered only once its
//! first event has arrived and parsed ([`Primed`]): garbage, a break, the end
//! or silence before it fails the attempt like a 5xx (retried, then the
//! fallbacks), so the client never gets a 200 for a call that failed before
//! its first byte.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use tollgate_providers::{
    prepare, AdapterError, ApiFormat, PreparedRequest, RequestInfo, ResponseTranslator, StreamTranslator, Target,
};

use crate::config::{Config, Provider};
use crate::error::ApiError;
use crate::routing::Attempt;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// An upstream answer's body, whichever client fetched it.
pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;
pub type Response = http::Response<Body>;

/// The client for provider calls.
#[derive(Clone)]
pub enum Client {
    /// hyper's pooled keep-alive client (HTTP/1.1, or HTTP/2 when the
    /// provider offers it by ALPN) over rustls with the webpki roots. It sends
    /// the prepared request as is: reqwest's per-request layers (URL parsed
    /// three times, redirect and retry wrappers) were ~10 % of the gateway's
    /// CPU per request (bench/PROFILE.md).
    Direct(Box<hyper_util::client::legacy::Client<hyper_rustls::HttpsConnector<HttpConnector>, Outgoing>>),
    /// An HTTP(S) proxy is set in the environment (`HTTPS_PROXY`, `ALL_PROXY`…):
    /// reqwest, which speaks it (and honours `NO_PROXY`).
    Proxied(reqwest::Client),
}

/// A request body relayed as it arrives (a multipart upload, `crate::upload`):
/// it can be sent once only, so an attempt that fails is not retried.
pub trait Upload: Send {
    /// The `content-type` to send (with the multipart boundary).
    fn content_type(&self) -> String;
    /// The body, with `model` (the routed model) where the request names its model.
    fn into_body(self: Box<Self>, model: &str) -> Body;
}

/// A request body: whole (JSON, the common case, no allocation) or a
/// multipart upload relayed as it arrives (sent once, never retried).
pub type Outgoing = Either<Full<Bytes>, Body>;

const PROXY_VARS: [&str; 6] = ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"];
/// The `user-agent` of every call the gateway makes (provider calls, webhooks).
pub(crate) const USER_AGENT: &str = concat!("tollgate/", env!("CARGO_PKG_VERSION"));

impl Client {
    pub fn new() -> Result<Client, std::io::Error> {
        if PROXY_VARS.iter().any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty())) {
            tracing::info!("an HTTP proxy is set in the environment: provider calls go through it");
            return http_client().map(Client::Proxied).map_err(std::io::Error::other);
        }
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        http.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .map_err(std::io::Error::other)?
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .build(https);
        Ok(Client::Direct(Box::new(client)))
    }
}

/// The access-token sources of the providers that need one (Vertex: a
/// service account's tokens), by provider index.
#[derive(Debug, Default)]
pub struct ProviderTokens {
    google: Vec<Option<std::sync::Arc<crate::google_auth::TokenSource>>>,
}

impl ProviderTokens {
    /// One token source per Vertex provider. With `previous` (a reload), a
    /// provider of the same name and key file keeps its source, and so its
    /// cached token.
    pub fn new(
        providers: &[Provider],
        http: &reqwest::Client,
        previous: Option<(&ProviderTokens, &[Provider])>,
    ) -> Result<ProviderTokens, String> {
        let mut google = Vec::with_capacity(providers.len());
        for p in providers {
            google.push(match &p.vertex {
                Some(v) => {
                    let kept = previous.and_then(|(tokens, old)| {
                        let i = old.iter().position(|o| {
                            o.name == p.name
                                && o.vertex.as_ref().is_some_and(|ov| {
                                    ov.service_account_json.expose() == v.service_account_json.expose()
                                })
                        })?;
                        tokens.google.get(i).cloned().flatten()
                    });
                    match kept {
                        Some(source) => Some(source),
                        None => {
                            let account =
                                crate::google_auth::ServiceAccount::from_json(v.service_account_json.expose())
                                    .map_err(|e| format!("provider {:?}: the service account key: {e}", p.name))?;
                            Some(crate::google_auth::TokenSource::new(account, http.clone()))
                        }
                    }
                }
                None => None,
            });
        }
        Ok(ProviderTokens { google })
    }

    fn google(&self, provider: usize) -> Option<&crate::google_auth::TokenSource> {
        self.google.get(provider).and_then(|t| t.as_deref())
    }
}

/// The upstream answered 2xx: here is its response and how to read it.
pub struct Answer {
    pub reply: Reply,
    pub translator: ResponseTranslator,
    pub provider: usize,
    pub model: String,
}

/// A 2xx answer: whole (the body still to read) or a stream already primed.
pub enum Reply {
    Whole(Response),
    /// Boxed: the stream's state is large, and the whole answer is the common case.
    Stream(Box<Primed>),
}

/// A provider stream that has produced its first client event.
pub struct Primed {
    pub meter: StreamTranslator,
    pub upstream: http_body_util::BodyDataStream<Body>,
    /// The client events produced so far (at least one).
    pub first: Vec<Bytes>,
}

/// Reads a provider's stream up to its first client event, within the
/// provider's timeout per read.
async fn prime(resp: Response, translator: &ResponseTranslator, provider: &Provider) -> Result<Primed, ApiError> {
    use futures_util::StreamExt;
    let mut meter = translator.stream();
    let mut upstream = http_body_util::BodyDataStream::new(resp.into_body());
    let mut first: Vec<Bytes> = Vec::with_capacity(4);
    loop {
        let chunk = match tokio::time::timeout(provider.timeout, upstream.next()).await {
            Err(_) => {
                return Err(ApiError::UpstreamTimeout {
                    message: format!(
                        "provider {} sent no stream event within {} ms",
                        provider.name,
                        provider.timeout.as_millis()
                    ),
                })
            }
            Ok(None) => {
                return Err(ApiError::UpstreamError { message: "upstream stream ended before its first event".into() })
            }
            Ok(Some(Err(e))) => {
                return Err(ApiError::UpstreamError { message: format!("upstream stream broke off: {e}") })
            }
            Ok(Some(Ok(c))) => c,
        };
        meter.push(&chunk, &mut first).map_err(adapter_error)?;
        if let Some(bad) = first.iter().find(|e| !event_is_json(e)) {
            tracing::debug!(bytes = bad.len(), "malformed first stream event");
            return Err(ApiError::UpstreamError {
                message: "upstream answered malformed data before its first event".into(),
            });
        }
        if !first.is_empty() {
            return Ok(Primed { meter, upstream, first });
        }
    }
}

/// Whether an SSE event's data is JSON (or `[DONE]`): checked on the first
/// events only, where passthrough streams are otherwise relayed unparsed.
fn event_is_json(event: &[u8]) -> bool {
    let text = String::from_utf8_lossy(event);
    let data: Vec<&str> =
        text.lines().filter_map(|l| l.strip_prefix("data:")).map(|d| d.strip_prefix(' ').unwrap_or(d)).collect();
    if data.is_empty() {
        return true;
    }
    let payload = data.join("\n");
    payload.trim() == "[DONE]" || serde_json::from_str::<serde::de::IgnoredAny>(&payload).is_ok()
}

/// How many attempts a request made, and how it ended.
pub struct Sent {
    pub result: Result<Answer, ApiError>,
    /// A provider answered 2xx to an attempt whose stream then failed before
    /// its first event: it may bill the prompt.
    pub answered_then_failed: bool,
    pub attempts: u32,
    /// The provider and model of the last attempt (for the ledger on failure).
    pub last: Option<(usize, String)>,
    /// Every attempt made, in order.
    pub log: Vec<AttemptRecord>,
}

const MAX_ERROR_BODY: usize = 64 * 1024;

fn retryable(status: u16) -> bool {
    matches!(status, 408 | 409 | 429 | 500 | 502 | 503 | 504 | 529)
}

fn backoff(retry: u32, retry_after: Option<&str>) -> Duration {
    let base = Duration::from_millis(50u64.saturating_mul(1 << retry.min(6))).min(Duration::from_secs(2));
    match retry_after.and_then(|v| v.trim().parse::<u64>().ok()) {
        // Honour a short Retry-After; a long one is passed on to the client instead.
        Some(secs) if secs <= 2 => Duration::from_secs(secs).max(base),
        _ => base,
    }
}

pub fn adapter_error(e: AdapterError) -> ApiError {
    match e {
        AdapterError::InvalidRequest { message, param } => ApiError::InvalidRequest { message, param },
        AdapterError::Unsupported(message) => ApiError::invalid(message),
        AdapterError::MalformedUpstream(m) => {
            ApiError::UpstreamError { message: format!("upstream answered malformed data: {m}") }
        }
    }
}

/// Maps a non-2xx upstream answer to the public error.
fn status_error(provider: &Provider, status: u16, message: Option<String>, retry_after: Option<String>) -> ApiError {
    let detail = message.map(|m| format!(": {m}")).unwrap_or_default();
    let name = &provider.name;
    match status {
        429 => ApiError::UpstreamRateLimited {
            message: format!("provider {name} is rate limiting requests (429){detail}"),
            retry_after,
        },
        401 | 403 => {
            ApiError::UpstreamError { message: format!("provider {name} refused the gateway's credentials ({status})") }
        }
        413 => ApiError::RequestTooLarge { message: format!("provider {name} says the request is too large{detail}") },
        // The provider does not know the model (or deployment): the contract's 404 on every API family.
        404 => ApiError::ModelNotFound { message: format!("provider {name} does not serve this model (404){detail}") },
        400..=499 => ApiError::invalid(format!("provider {name} rejected the request ({status}){detail}")),
        _ => ApiError::UpstreamError { message: format!("provider {name} failed ({status}){detail}") },
    }
}

fn send_error(provider: &Provider, e: &(dyn std::error::Error + 'static)) -> ApiError {
    // The errors' Display can include the URL; never headers (the key).
    ApiError::UpstreamError { message: format!("cannot reach provider {}: {}", provider.name, error_chain(e)) }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

async fn send_once(
    client: &Client,
    req: &PreparedRequest,
    upload: Option<Body>,
    extra_headers: &[(http::HeaderName, http::HeaderValue)],
    timeout: Duration,
) -> Result<Response, SendFailure> {
    let send = async {
        match client {
            Client::Direct(c) => {
                let uri = parsed_uri(&req.url)
                    .ok_or_else(|| SendFailure::Transport(format!("invalid upstream URL {:?}", req.url).into()))?;
                let body = match upload {
                    Some(b) => Either::Right(b),
                    None => Either::Left(Full::new(req.body.clone())),
                };
                let mut r = http::Request::new(body);
                *r.method_mut() = http::Method::POST;
                *r.uri_mut() = uri;
                let h = r.headers_mut();
                h.insert(http::header::USER_AGENT, http::HeaderValue::from_static(USER_AGENT));
                for (k, v) in req.headers.iter().chain(extra_headers) {
                    h.append(k.clone(), v.clone());
                }
                let resp = c.request(r).await.map_err(|e| SendFailure::Transport(Box::new(e)))?;
                Ok(resp.map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed_unsync()))
            }
            Client::Proxied(c) => {
                let body = match upload {
                    Some(b) => reqwest::Body::wrap_stream(b.into_data_stream()),
                    None => reqwest::Body::from(req.body.clone()),
                };
                let mut b = c.post(&req.url).body(body);
                for (k, v) in req.headers.iter().chain(extra_headers) {
                    b = b.header(k, v);
                }
                match b.send().await {
                    Ok(resp) => {
                        Ok(http::Response::from(resp).map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed_unsync()))
                    }
                    Err(e) if e.is_timeout() => Err(SendFailure::Timeout),
                    Err(e) => Err(SendFailure::Transport(Box::new(e))),
                }
            }
        }
    };
    match tokio::time::timeout(timeout, send).await {
        Err(_) => Err(SendFailure::Timeout),
        Ok(r) => r,
    }
}

/// Upstream URLs come from the config and the model name, so a gateway sends
/// to a handful of them: each is parsed once, not on every request.
fn parsed_uri(url: &str) -> Option<http::Uri> {
    use std::sync::{LazyLock, RwLock};
    const MAX_URLS: usize = 1024;
    static PARSED: LazyLock<RwLock<HashMap<String, http::Uri>>> = LazyLock::new(Default::default);
    if let Some(u) = PARSED.read().unwrap_or_else(|p| p.into_inner()).get(url) {
        return Some(u.clone());
    }
    let parsed: http::Uri = url.parse().ok()?;
    // Only absolute http(s) URLs are sendable.
    if !matches!(parsed.scheme_str(), Some("http" | "https")) || parsed.host().is_none() {
        return None;
    }
    let mut map = PARSED.write().unwrap_or_else(|p| p.into_inner());
    if map.len() >= MAX_URLS {
        map.clear();
    }
    map.insert(url.to_string(), parsed.clone());
    Some(parsed)
}

enum SendFailure {
    Timeout,
    Transport(BoxError),
}

/// Per-target health: a circuit breaker and smoothed latency.
///
/// After `failures` consecutive failures (5xx, 429, timeouts, transport
/// errors) a target is ejected for `cooldown`; then one request probes it
/// (half-open): success closes the circuit, failure ejects it again.
pub struct Health {
    targets: Mutex<HashMap<(usize, String), TargetHealth>>,
    failures: u32,
    cooldown_ms: i64,
}

#[derive(Debug, Default, Clone)]
struct TargetHealth {
    consecutive_failures: u32,
    ejected_until_ms: Option<i64>,
    probing: bool,
    latency_ms: Option<u64>,
}

impl Health {
    /// Forgets every target's health (a reload may renumber the providers).
    pub fn reset(&self) {
        self.lock().clear();
    }

    pub fn new(failures: u32, cooldown: Duration) -> Health {
        Health {
            targets: Mutex::new(HashMap::new()),
            failures: failures.max(1),
            cooldown_ms: cooldown.as_millis() as i64,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(usize, String), TargetHealth>> {
        self.targets.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Smoothed latency and ejection, for ordering.
    pub fn view(&self, a: &Attempt, now_ms: i64) -> (Option<u64>, bool) {
        let t = self.lock();
        match t.get(&(a.provider, a.model.clone())) {
            Some(h) => (h.latency_ms, h.ejected_until_ms.is_some_and(|u| u > now_ms)),
            None => (None, false),
        }
    }

    /// May this target be tried now? (An ejected one gets one probe after its cooldown.)
    fn allow(&self, a: &Attempt, now_ms: i64) -> bool {
        let mut t = self.lock();
        let Some(h) = t.get_mut(&(a.provider, a.model.clone())) else { return true };
        match h.ejected_until_ms {
            None => true,
            Some(u) if u > now_ms => false,
            Some(_) if h.probing => false,
            Some(_) => {
                h.probing = true;
                true
            }
        }
    }

    fn success(&self, a: &Attempt, latency_ms: u64) {
        let mut t = self.lock();
        let h = t.entry((a.provider, a.model.clone())).or_default();
        h.consecutive_failures = 0;
        h.ejected_until_ms = None;
        h.probing = false;
        h.latency_ms = Some(match h.latency_ms {
            Some(old) => (old * 7 + latency_ms * 3) / 10,
            None => latency_ms,
        });
    }

    fn failure(&self, a: &Attempt, now_ms: i64) {
        let mut t = self.lock();
        let h = t.entry((a.provider, a.model.clone())).or_default();
        h.consecutive_failures += 1;
        if h.probing || h.consecutive_failures >= self.failures {
            if h.ejected_until_ms.is_none_or(|u| u <= now_ms) {
                tracing::warn!(provider = a.provider, model = %a.model, failures = h.consecutive_failures, "circuit open: target ejected");
            }
            h.ejected_until_ms = Some(now_ms + self.cooldown_ms);
            h.probing = false;
        }
    }
}

pub use crate::record::AttemptRecord;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Tries each attempt of the plan (with its provider's retries) until one
/// answers 2xx, skipping targets whose circuit is open (unless all are).
#[allow(clippy::too_many_arguments)]
pub async fn send(
    http: &Client,
    config: &Config,
    health: &Health,
    tokens: &ProviderTokens,
    plan: &[Attempt],
    format: ApiFormat,
    body: &Bytes,
    upload: &mut Option<Box<dyn Upload>>,
    info: &RequestInfo,
    passthrough_key: Option<&str>,
    extra_headers: &[(http::HeaderName, http::HeaderValue)],
) -> Sent {
    let mut attempts = 0u32;
    let mut log: Vec<AttemptRecord> = Vec::new();
    let mut last: Option<(usize, String)> = None;
    let mut last_err: Option<ApiError> = None;
    let mut answered_then_failed = false;
    let allowed: Vec<&Attempt> = plan.iter().filter(|a| health.allow(a, now_ms())).collect();
    // Every target ejected: try them all rather than fail without asking anyone.
    let order: Vec<&Attempt> = if allowed.is_empty() { plan.iter().collect() } else { allowed };
    for attempt in order {
        let provider = &config.providers[attempt.provider];
        // A passthrough caller's own credential, never the operator's key.
        let api_key = match passthrough_key {
            Some(pk) => Some(pk),
            None => provider.api_key.as_ref().map(|k| k.expose()),
        };
        let target = Target {
            kind: provider.kind,
            base_url: &provider.base_url,
            api_key,
            model: &attempt.model,
            api_version: provider.api_version.as_deref(),
        };
        let (mut prepared, translator) = match prepare(format, &target, body, info) {
            Ok((p, t)) => (p, t.with_created(chrono::Utc::now().timestamp().max(0) as u64)),
            Err(e) => {
                // This target cannot take this endpoint; a fallback may.
                last_err.get_or_insert(adapter_error(e));
                continue;
            }
        };
        last = Some((attempt.provider, attempt.model.clone()));
        // The provider's bound on requests in flight: when full, the next
        // target, or 503 at once (never a queue that grows without end).
        let permit = match &provider.slots {
            None => None,
            Some(slots) => match slots.clone().try_acquire_owned() {
                Ok(p) => Some(std::sync::Arc::new(p)),
                Err(_) => {
                    tracing::warn!(provider = %provider.name, "provider at its max_connections");
                    let err = ApiError::Overloaded {
                        message: format!(
                            "provider {} is at its limit of requests in flight (max_connections); retry shortly",
                            provider.name
                        ),
                    };
                    log.push(AttemptRecord {
                        provider: provider.name.clone(),
                        model: attempt.model.clone(),
                        status: None,
                        error: Some(err.code().to_string()),
                        latency_ms: 0,
                    });
                    last_err = Some(err);
                    continue;
                }
            },
        };
        if let Some(aws) = &provider.aws {
            // Bedrock: AWS Signature V4 over the exact request, at this moment.
            let creds = tollgate_providers::sigv4::Credentials {
                access_key_id: aws.access_key_id.expose(),
                secret_access_key: aws.secret_access_key.expose(),
                session_token: aws.session_token.as_ref().map(|t| t.expose()),
            };
            let now = chrono::Utc::now().timestamp().max(0) as u64;
            match tollgate_providers::sigv4::sign(
                "POST",
                &prepared.url,
                &prepared.headers,
                &prepared.body,
                &creds,
                &aws.region,
                "bedrock",
                now,
            ) {
                Ok(signed) => prepared.headers.extend(signed.into_iter().map(|(k, mut v)| {
                    v.set_sensitive(true);
                    (k, v)
                })),
                Err(e) => {
                    last_err.get_or_insert(ApiError::Internal {
                        message: format!("cannot sign the request to provider {}: {e}", provider.name),
                    });
                    continue;
                }
            }
        }
        if let Some(source) = tokens.google(attempt.provider) {
            // Vertex: the service account's access token (cached, refreshed ahead of expiry).
            match source.token().await {
                Ok(token) => match http::HeaderValue::from_str(&format!("Bearer {token}")) {
                    Ok(mut v) => {
                        v.set_sensitive(true);
                        prepared.headers.push((http::header::AUTHORIZATION, v));
                    }
                    Err(_) => {
                        last_err = Some(ApiError::UpstreamError {
                            message: format!("provider {}: the access token is not a valid header", provider.name),
                        });
                        continue;
                    }
                },
                Err(e) => {
                    tracing::warn!(provider = %provider.name, error = %e, "no access token for the provider");
                    let err = ApiError::UpstreamError {
                        message: format!("cannot get an access token for provider {}: {e}", provider.name),
                    };
                    log.push(AttemptRecord {
                        provider: provider.name.clone(),
                        model: attempt.model.clone(),
                        status: None,
                        error: Some(err.code().to_string()),
                        latency_ms: 0,
                    });
                    last_err = Some(err);
                    continue;
                }
            }
        }
        let uploading = format.media().is_some_and(|m| m.multipart());
        if uploading {
            if let Some(u) = upload.as_ref() {
                if let Ok(v) = http::HeaderValue::from_str(&u.content_type()) {
                    prepared.headers.push((http::header::CONTENT_TYPE, v));
                }
            }
        }
        for retry in 0..=provider.max_retries {
            // An upload streams the client's body as it arrives: it can be sent once only.
            let streamed = if uploading {
                match upload.take() {
                    Some(u) => Some(u.into_body(&attempt.model)),
                    None => {
                        let err = last_err.take().unwrap_or_else(|| ApiError::UpstreamError {
                            message: "the upload could not be sent".into(),
                        });
                        return Sent { result: Err(err), answered_then_failed, attempts, last, log };
                    }
                }
            } else {
                None
            };
            attempts += 1;
            let started = std::time::Instant::now();
            let result = send_once(http, &prepared, streamed, extra_headers, provider.timeout).await;
            let latency_ms = started.elapsed().as_millis() as u64;
            let mut record = AttemptRecord {
                provider: provider.name.clone(),
                model: attempt.model.clone(),
                status: None,
                error: None,
                latency_ms,
            };
            match result {
                Ok(resp) if resp.status().is_success() => {
                    record.status = Some(resp.status().as_u16());
                    // The provider's slot is held until the body is read to its end or dropped.
                    let resp = match permit.clone() {
                        Some(p) => resp.map(|b| Held { inner: b, _permit: p }.boxed_unsync()),
                        None => resp,
                    };
                    let reply = if prepared.stream {
                        match prime(resp, &translator, provider).await {
                            Ok(primed) => Reply::Stream(Box::new(primed)),
                            Err(err) => {
                                // The 200 was never passed on: this attempt failed like a 5xx.
                                tracing::warn!(provider = %provider.name, retry, error = %err, "upstream stream failed before its first event");
                                health.failure(attempt, now_ms());
                                answered_then_failed = true;
                                record.latency_ms = started.elapsed().as_millis() as u64;
                                record.error = Some(err.code().to_string());
                                log.push(record);
                                let timed_out = matches!(err, ApiError::UpstreamTimeout { .. });
                                last_err = Some(err);
                                if timed_out {
                                    // Already waited the whole budget: the next target.
                                    break;
                                }
                                if retry < provider.max_retries {
                                    tokio::time::sleep(backoff(retry, None)).await;
                                }
                                continue;
                            }
                        }
                    } else {
                        Reply::Whole(resp)
                    };
                    health.success(attempt, latency_ms);
                    log.push(record);
                    return Sent {
                        result: Ok(Answer {
                            reply,
                            translator,
                            provider: attempt.provider,
                            model: attempt.model.clone(),
                        }),
                        answered_then_failed,
                        attempts,
                        last,
                        log,
                    };
                }
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let retry_after =
                        resp.headers().get(http::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).map(String::from);
                    let body = read_capped(resp, MAX_ERROR_BODY).await;
                    let message = translator.error_message(&body);
                    tracing::warn!(provider = %provider.name, status, retry, "upstream answered an error");
                    let err = status_error(provider, status, message, retry_after.clone());
                    record.status = Some(status);
                    record.error = Some(err.code().to_string());
                    log.push(record);
                    if matches!(status, 401 | 403) {
                        // This provider refuses our credentials: another target may not.
                        health.failure(attempt, now_ms());
                        last_err = Some(err);
                        break;
                    }
                    if !retryable(status) {
                        // The request itself is at fault: no other target will like it better.
                        return Sent { result: Err(err), answered_then_failed, attempts, last, log };
                    }
                    health.failure(attempt, now_ms());
                    last_err = Some(err);
                    if retry < provider.max_retries {
                        tokio::time::sleep(backoff(retry, retry_after.as_deref())).await;
                    }
                }
                Err(SendFailure::Timeout) => {
                    tracing::warn!(provider = %provider.name, retry, "upstream timed out");
                    health.failure(attempt, now_ms());
                    let err = ApiError::UpstreamTimeout {
                        message: format!(
                            "provider {} did not answer within {} ms",
                            provider.name,
                            provider.timeout.as_millis()
                        ),
                    };
                    record.error = Some(err.code().to_string());
                    log.push(record);
                    last_err = Some(err);
                    // A timeout already waited the whole budget: go straight to the next target.
                    break;
                }
                Err(SendFailure::Transport(e)) => {
                    tracing::warn!(provider = %provider.name, retry, error = %error_chain(e.as_ref()), "upstream request failed");
                    health.failure(attempt, now_ms());
                    let err = send_error(provider, e.as_ref());
                    record.error = Some(err.code().to_string());
                    log.push(record);
                    last_err = Some(err);
                    if retry < provider.max_retries {
                        tokio::time::sleep(backoff(retry, None)).await;
                    }
                }
            }
        }
    }
    let err = last_err.unwrap_or_else(|| ApiError::ModelNotFound { message: "no route serves this model".into() });
    Sent { result: Err(err), answered_then_failed, attempts, last, log }
}

/// A response body that keeps its provider's `max_connections` slot.
struct Held {
    inner: Body,
    _permit: std::sync::Arc<tokio::sync::OwnedSemaphorePermit>,
}

impl http_body::Body for Held {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Reads at most `cap` bytes of a body (error bodies are only for messages).
pub async fn read_capped(resp: Response, cap: usize) -> Bytes {
    let mut body = resp.into_body();
    let mut buf = Vec::new();
    while let Some(Ok(frame)) = body.frame().await {
        let Ok(chunk) = frame.into_data() else { continue };
        let room = cap.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if buf.len() >= cap {
            break;
        }
    }
    Bytes::from(buf)
}

/// The reqwest client for calls other than the proxied request (webhooks,
/// embeddings for the semantic cache, batch passthrough).
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_idle_timeout(std::time::Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .connect_timeout(std::time::Duration::from_secs(10))
        // Upstream URLs come only from the config: never follow a redirect elsewhere.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(crate::upstream::USER_AGENT)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsed_urls_are_the_same_url_each_time() {
        let s = "http://127.0.0.1:9/v1/chat/completions?api-version=2024-10-21";
        let first = parsed_uri(s).expect("valid");
        let again = parsed_uri(s).expect("valid, now from the memo");
        assert_eq!(first, again);
        assert_eq!(again.to_string(), s);
        assert_eq!(again.port_u16(), Some(9));
        assert!(parsed_uri("not a url").is_none());
        assert!(parsed_uri("/v1/relative").is_none());
        assert!(parsed_uri("ftp://example.com/x").is_none());
    }

    /// The circuit breaker on an explicit clock: ejected after `failures`
    /// consecutive failures, closed to requests until the cooldown ends, then
    /// exactly one probe; a failed probe ejects again at once, a good one closes.
    #[test]
    fn the_circuit_opens_cools_down_and_lets_one_probe_through() {
        let h = Health::new(2, Duration::from_millis(400));
        let a = Attempt { provider: 0, model: "m".into(), route: "m".into() };
        let other = Attempt { provider: 1, model: "m".into(), route: "m".into() };
        assert!(h.allow(&a, 0));
        h.failure(&a, 10);
        assert!(h.allow(&a, 11), "one failure of two: still closed");
        h.failure(&a, 20);
        assert!(!h.allow(&a, 21), "ejected");
        assert!(!h.allow(&a, 419), "until 20 + 400");
        assert!(h.allow(&other, 21), "other targets are not affected");
        assert!(h.allow(&a, 420), "the probe, at the end of the cooldown");
        assert!(!h.allow(&a, 421), "one probe at a time");
        h.failure(&a, 430);
        assert!(!h.allow(&a, 431) && !h.allow(&a, 829), "a failed probe ejects again for a whole cooldown");
        assert!(h.allow(&a, 830));
        h.success(&a, 5);
        assert!(h.allow(&a, 831) && h.allow(&a, 832), "a good probe closes the circuit");
        h.failure(&a, 840);
        assert!(h.allow(&a, 841), "the count starts again from zero");
    }
}
