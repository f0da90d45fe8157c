//! What the gateway tells the outside about each finished request.
//!
//! - [`metrics`]: Prometheus counters and histograms at `GET /metrics`.
//! - [`otel`]: one OpenTelemetry span per request over OTLP/HTTP, when
//!   `TOLLGATE_OTLP_ENDPOINT` is set.
//! - [`anomaly`]: spend spikes against seasonal baselines, loops, token
//!   growth and retry spirals, grouped into incidents (the findings one
//!   burst causes on its key, team, feature, model and agent are one
//!   incident); `GET /api/v1/anomalies`, and broadcast channels
//!   ([`Observer::subscribe_anomalies`], [`Observer::subscribe_incidents`])
//!   for alert delivery. A new incident is logged once at `warn`; the
//!   findings that join it are logged at `debug`.
//! - [`outcomes`]: `POST /api/v1/outcomes` and cost per successful outcome.
//!
//! The pipeline calls [`Observer::record`] once per ledger row, just before
//! the row is handed to the ledger; nothing here may block or fail the
//! request: metrics and the detector take one short lock each, and the span
//! goes into a bounded queue drained by its own thread.
//!
//! In memory only (lost at restart): the metric counters, the recent
//! anomalies (the last [`MAX_RECENT`]) and incidents (the last
//! [`anomaly::MAX_INCIDENTS`]), and the detector's baselines — the
//! latter are rebuilt at start from the ledger's last days by
//! [`Observer::warm_up`]. Outcomes are stored in the database.

pub mod anomaly;
pub mod metrics;
pub mod otel;
pub mod outcomes;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tokio::sync::broadcast;

use crate::config::Config;
use crate::ledger::LedgerRow;
use crate::store::{RequestLog, RequestQuery, StoreError};

pub use anomaly::{Anomaly, Detector, DetectorConfig, Findings, Growth, Incident, IncidentBook, Kind};

/// Anomalies kept for `GET /api/v1/anomalies`.
pub const MAX_RECENT: usize = 1_000;
/// How far back [`Observer::warm_up`] reads the ledger, and how many rows at most.
pub const WARM_UP_MS: i64 = 8 * 24 * 3_600_000;
pub const WARM_UP_MAX_ROWS: usize = 200_000;

/// What the observer does beyond counting.
#[derive(Debug, Clone, Default)]
pub struct ObserveOptions {
    /// OTLP/HTTP endpoint (`http://127.0.0.1:4318`); `None`: no span export.
    pub otlp_endpoint: Option<String>,
    pub detector: DetectorConfig,
}

impl ObserveOptions {
    /// Options from the process environment (`TOLLGATE_OTLP_ENDPOINT`).
    pub fn from_env() -> ObserveOptions {
        ObserveOptions {
            otlp_endpoint: std::env::var(otel::ENDPOINT_ENV).ok().filter(|v| !v.trim().is_empty()),
            detector: DetectorConfig::default(),
        }
    }
}

/// The recent findings and the incidents they are filed under.
#[derive(Default)]
struct Recent {
    list: VecDeque<Anomaly>,
    book: IncidentBook,
}

struct Anomalies {
    detector: Mutex<Detector>,
    recent: Mutex<Recent>,
    counts: [AtomicU64; 4],
    tx: broadcast::Sender<Anomaly>,
    incidents: broadcast::Sender<Incident>,
}

pub struct Observer {
    metrics: metrics::Metrics,
    auth_refused: AtomicU64,
    anomalies: Anomalies,
    otel: Option<otel::Exporter>,
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer").field("otel", &self.otel.is_some()).finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Observer {
    /// The gateway's observer: configured model and provider names label the
    /// metrics; the detector's thresholds come from `[anomalies]`, the other
    /// options from the environment.
    pub fn new(config: &Config) -> Observer {
        let mut options = ObserveOptions::from_env();
        options.detector.min_days = config.anomalies.min_history_days;
        options.detector.min_excess = config.anomalies.min_excess;
        Observer::with_options(Some(config), options)
    }

    pub fn with_options(config: Option<&Config>, options: ObserveOptions) -> Observer {
        let otel = options.otlp_endpoint.as_deref().and_then(|e| match otel::Exporter::start(e) {
            Ok(x) => {
                tracing::info!(endpoint = e, "exporting a span per request over OTLP/HTTP");
                Some(x)
            }
            Err(error) => {
                tracing::error!(%error, "OpenTelemetry export is off");
                None
            }
        });
        let (tx, _) = broadcast::channel(256);
        let (incidents, _) = broadcast::channel(256);
        Observer {
            metrics: metrics::Metrics::new(config),
            auth_refused: AtomicU64::new(0),
            anomalies: Anomalies {
                detector: Mutex::new(Detector::new(options.detector)),
                recent: Mutex::new(Recent::default()),
                counts: Default::default(),
                tx,
                incidents,
            },
            otel,
        }
    }

    /// A request refused at authentication (it has no ledger row).
    pub fn auth_refused(&self) {
        self.auth_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// One finished request, success or not.
    pub fn record(&self, row: &LedgerRow) {
        self.metrics.record(row);
        let found = lock(&self.anomalies.detector).findings(row);
        if !found.is_empty() {
            self.publish(found, true);
        }
        if let Some(x) = &self.otel {
            x.export(row);
        }
    }

    /// Files one row's findings under their incidents; `live` (not a
    /// replay): logs and broadcasts them.
    fn publish(&self, found: Findings, live: bool) {
        for a in &found.anomalies {
            let kind_index = Kind::ALL.iter().position(|k| *k == a.kind).unwrap_or(0);
            self.anomalies.counts[kind_index].fetch_add(1, Ordering::Relaxed);
        }
        let filed = {
            let mut r = lock(&self.anomalies.recent);
            let filed = r.book.apply(&found);
            for a in &found.anomalies {
                if r.list.len() >= MAX_RECENT {
                    r.list.pop_front();
                }
                r.list.push_back(a.clone());
            }
            filed
        };
        if !live {
            return;
        }
        for (a, (opened, incident)) in found.anomalies.into_iter().zip(filed) {
            if opened {
                tracing::warn!(
                    incident = %incident.id, kind = a.kind.as_str(), dimension = a.dimension, value = %a.value,
                    "anomaly: {}", a.message
                );
            } else {
                tracing::debug!(
                    incident = %incident.id, kind = a.kind.as_str(), dimension = a.dimension, value = %a.value,
                    "anomaly, part of {}: {}", incident.name, a.message
                );
            }
            // No receiver is fine: alert delivery may not be configured.
            let _ = self.anomalies.tx.send(a);
            let _ = self.anomalies.incidents.send(incident);
        }
    }

    /// Anomalies as they are detected. Findings from [`Observer::warm_up`]'s
    /// replay of old rows are not sent.
    pub fn subscribe_anomalies(&self) -> broadcast::Receiver<Anomaly> {
        self.anomalies.tx.subscribe()
    }

    /// Incidents as they open and as findings join them (for alert delivery:
    /// webhooks, Slack…), each time as it then stands. Not sent for
    /// [`Observer::warm_up`]'s replay, nor when only its excess grows.
    pub fn subscribe_incidents(&self) -> broadcast::Receiver<Incident> {
        self.anomalies.incidents.subscribe()
    }

    /// Recent anomalies, newest first.
    pub fn anomalies(&self) -> Vec<Anomaly> {
        lock(&self.anomalies.recent).list.iter().rev().cloned().collect()
    }

    /// Recent incidents, newest first ([`anomaly::rank`] orders them by excess).
    pub fn incidents(&self) -> Vec<Incident> {
        lock(&self.anomalies.recent).book.recent()
    }

    /// The metric registry, e.g. for budget gauges ([`metrics::Metrics::set_budget`]).
    pub fn metrics(&self) -> &metrics::Metrics {
        &self.metrics
    }

    /// Span export counters, when export is on.
    pub fn otel_stats(&self) -> Option<otel::ExportStats> {
        self.otel.as_ref().map(otel::Exporter::stats)
    }

    /// Rebuilds the detector's baselines from the ledger's last
    /// [`WARM_UP_MS`] (at most [`WARM_UP_MAX_ROWS`] rows), oldest first.
    /// What the replay finds is listed but not broadcast. Returns the rows read.
    pub async fn warm_up(&self, store: &dyn RequestLog, now_ms: i64) -> Result<usize, StoreError> {
        let since = now_ms - WARM_UP_MS;
        let mut rows: Vec<LedgerRow> = Vec::new();
        let mut cursor = None;
        'pages: loop {
            let page = store.requests(RequestQuery { filters: vec![], limit: 1000, cursor }).await?;
            for r in page.rows {
                // Request ids are time-ordered (UUIDv7), so the pages go back in time.
                if r.time_ms < since || rows.len() >= WARM_UP_MAX_ROWS {
                    break 'pages;
                }
                rows.push(r);
            }
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        rows.sort_by_key(|r| r.time_ms);
        {
            // The detector, then the findings: the order `record` takes them in.
            let mut d = lock(&self.anomalies.detector);
            for r in &rows {
                let found = d.findings(r);
                if !found.is_empty() {
                    self.publish(found, false);
                }
            }
        }
        Ok(rows.len())
    }

    /// Prometheus text exposition.
    pub fn render(&self, spool_backlog_bytes: u64) -> String {
        let extra = metrics::Extra {
            auth_refused: self.auth_refused.load(Ordering::Relaxed),
            spool_backlog_bytes,
            anomalies: Kind::ALL
                .iter()
                .zip(&self.anomalies.counts)
                .map(|(k, n)| (k.as_str(), n.load(Ordering::Relaxed)))
                .collect(),
            otel: self.otel_stats(),
        };
        self.metrics.render(&extra)
    }
}
