//! Budget alerts: each threshold crossing is recorded once per period (in the
//! database, so a restart does not repeat it), logged, counted, and posted to
//! every configured webhook (generic JSON or Slack-compatible), retried with
//! backoff.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use crate::config::Webhook;
use crate::govern::AlertEvent;
use crate::observe::Incident;
use crate::store::GovernanceStore;

const ATTEMPTS: u32 = 6;

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

pub fn message(e: &AlertEvent) -> String {
    format!(
        "tollgate: budget {} ({}) reached {}% of its limit: ${} spent of ${} this period (ends {})",
        e.budget_id,
        e.scope,
        e.threshold_permille / 10,
        e.spent,
        e.limit,
        rfc3339(e.period_end_ms)
    )
}

pub fn body(e: &AlertEvent, slack: bool) -> serde_json::Value {
    if slack {
        return json!({ "text": message(e) });
    }
    json!({
        "type": "budget_alert",
        "budget_id": e.budget_id,
        "scope": e.scope,
        "threshold": format!("{}.{:03}", e.threshold_permille / 1000, e.threshold_permille % 1000),
        "spent_usd": e.spent.to_string(),
        "limit_usd": e.limit.to_string(),
        "period_start": rfc3339(e.period_start_ms),
        "period_end": rfc3339(e.period_end_ms),
        "message": message(e),
    })
}

pub(crate) async fn post_with_retries(http: reqwest::Client, hook: Webhook, payload: serde_json::Value) {
    let mut delay = Duration::from_millis(200);
    for attempt in 1..=ATTEMPTS {
        match http.post(hook.url.expose()).json(&payload).timeout(Duration::from_secs(10)).send().await {
            Ok(r) if r.status().is_success() => return,
            Ok(r) => tracing::warn!(status = r.status().as_u16(), attempt, "alert webhook refused the alert"),
            // The URL may hold a secret (Slack): log the error kind only.
            Err(e) => {
                tracing::warn!(attempt, timeout = e.is_timeout(), connect = e.is_connect(), "alert webhook unreachable")
            }
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    }
    tracing::error!("alert webhook failed after {ATTEMPTS} attempts; the alert is in the log only");
}

/// Runs until the governor is dropped.
pub async fn dispatch(
    mut rx: mpsc::UnboundedReceiver<AlertEvent>,
    store: Arc<dyn GovernanceStore>,
    webhooks: Vec<Webhook>,
    http: reqwest::Client,
    fired_total: Arc<std::sync::atomic::AtomicU64>,
) {
    while let Some(e) = rx.recv().await {
        let (id, start, t) = (e.budget_id.clone(), e.period_start_ms, e.threshold_permille);
        // Recorded once per budget, period and threshold: a failure to record still alerts.
        let first = store.record_alert(id, start, t, crate::time::now_ms()).await.unwrap_or(true);
        if !first {
            continue;
        }
        fired_total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(budget = %e.budget_id, scope = %e.scope, threshold_permille = e.threshold_permille, spent = %e.spent, limit = %e.limit, "budget alert");
        for hook in &webhooks {
            tokio::spawn(post_with_retries(http.clone(), hook.clone(), body(&e, hook.slack)));
        }
    }
}

/// How long a new incident waits before it is posted: the other series of
/// a burst (its team, its model) usually cross their thresholds a few
/// requests after the first, and belong in the same message.
pub const INCIDENT_SETTLE: Duration = Duration::from_secs(30);

/// Incidents remembered as posted, so a finding joining one later does not
/// post it again.
const POSTED_KEPT: usize = 4096;

/// An incident as posted to a webhook: Slack gets `{"text": …}`; JSON keeps
/// the anomaly notice's `type`, `id`, `kind`, `dimension`, `value`,
/// `message`, `filter` and `detected_at` (of the incident: its id, first
/// kind, cause, and first finding) and adds the incident's fields.
pub fn incident_body(i: &Incident, slack: bool) -> serde_json::Value {
    if slack {
        return json!({ "text": format!("tollgate anomaly: {}. {}", i.summary(), i.message) });
    }
    json!({
        "type": "anomaly",
        "id": i.id,
        "kind": i.kinds.first().map(|k| format!("{k:?}")),
        "kinds": i.kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
        "dimension": i.dimension,
        "value": i.value,
        "name": i.name,
        "dimensions": i.dimensions.iter().map(|(d, v)| json!({"dimension": d, "value": v})).collect::<Vec<_>>(),
        "team": i.team,
        "excess_usd": i.excess.map(|m| m.to_string()),
        "summary": i.summary(),
        "message": i.message,
        "filter": i.filter,
        "requests": i.requests.len(),
        "request_ids": i.requests,
        "detected_at": rfc3339(i.first_seen_ms),
        "first_seen": rfc3339(i.first_seen_ms),
        "last_seen": rfc3339(i.last_seen_ms),
    })
}

/// Anomalies (spend spikes, loops, retry spirals) go to the same webhooks as
/// budget alerts, once per incident: [`INCIDENT_SETTLE`] after it opens, as
/// it then stands (the findings that joined it meanwhile included). Logging
/// is the observer's (once per incident).
pub async fn forward_anomalies(
    mut rx: tokio::sync::broadcast::Receiver<Incident>,
    webhooks: Vec<Webhook>,
    http: reqwest::Client,
) {
    if webhooks.is_empty() {
        return;
    }
    // Incidents waiting to be posted: when, and the latest snapshot.
    let mut pending: Vec<(tokio::time::Instant, Incident)> = Vec::new();
    let mut posted: VecDeque<String> = VecDeque::new();
    let mut open = true;
    while open || !pending.is_empty() {
        let next = pending.iter().map(|(at, _)| *at).min();
        let got = match (open, next) {
            (true, Some(at)) => tokio::select! {
                r = rx.recv() => Some(r),
                () = tokio::time::sleep_until(at) => None,
            },
            (true, None) => Some(rx.recv().await),
            (false, _) => None,
        };
        match got {
            Some(Ok(i)) => {
                if posted.contains(&i.id) {
                    tracing::debug!(incident = %i.id, "incident already posted; not posting it again");
                } else if let Some(p) = pending.iter_mut().find(|(_, p)| p.id == i.id) {
                    p.1 = i;
                } else {
                    pending.push((tokio::time::Instant::now() + INCIDENT_SETTLE, i));
                }
            }
            Some(Err(RecvError::Lagged(n))) => {
                tracing::warn!(missed = n, "anomaly alerts fell behind; some were not sent");
            }
            Some(Err(RecvError::Closed)) => open = false,
            None => {}
        }
        // What is due; everything once no more can come.
        let now = tokio::time::Instant::now();
        let (due, waiting): (Vec<_>, Vec<_>) = pending.into_iter().partition(|(at, _)| !open || *at <= now);
        pending = waiting;
        for (_, i) in due {
            tracing::debug!(incident = %i.id, name = %i.name, "posting the incident to the alert webhooks");
            for hook in &webhooks {
                tokio::spawn(post_with_retries(http.clone(), hook.clone(), incident_body(&i, hook.slack)));
            }
            if posted.len() >= POSTED_KEPT {
                posted.pop_front();
            }
            posted.push_back(i.id);
        }
    }
}
