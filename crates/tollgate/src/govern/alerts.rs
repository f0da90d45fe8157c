//! Budget alerts: each threshold crossing is recorded once per period (in the
//! database, so a restart does not repeat it), logged, counted, and posted to
//! every configured webhook (generic JSON or Slack-compatible), retried with
//! backoff.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;

use crate::config::Webhook;
use crate::govern::AlertEvent;
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

/// Anomalies (spend spikes, loops, retry spirals) go to the same webhooks as
/// budget alerts, once each as the detector reports them.
pub async fn forward_anomalies(
    mut rx: tokio::sync::broadcast::Receiver<crate::observe::anomaly::Anomaly>,
    webhooks: Vec<Webhook>,
    http: reqwest::Client,
) {
    loop {
        let a = match rx.recv().await {
            Ok(a) => a,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "anomaly alerts fell behind; some were not sent");
                continue;
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        tracing::warn!(kind = ?a.kind, dimension = a.dimension, value = %a.value, "anomaly: {}", a.message);
        for hook in &webhooks {
            let payload = if hook.slack {
                json!({ "text": format!("tollgate anomaly: {}", a.message) })
            } else {
                json!({
                    "type": "anomaly",
                    "id": a.id,
                    "kind": format!("{:?}", a.kind),
                    "dimension": a.dimension,
                    "value": a.value,
                    "observed": a.observed,
                    "expected": a.expected,
                    "unit": a.unit,
                    "message": a.message,
                    "filter": a.filter,
                    "detected_at": rfc3339(a.detected_at_ms),
                })
            };
            tokio::spawn(post_with_retries(http.clone(), hook.clone(), payload));
        }
    }
}
