//! tollgate: an LLM gateway that meters, prices, attributes and governs
//! every request.
//!
//! Modules are layered (values, storage, stages, request path, edges; see
//! `ARCHITECTURE.md`), and each imports only its own layer or lower ones
//! (`tests/layers.rs`). The request path reads top to bottom in
//! [`pipeline`]; storage and counters are traits in [`store`].

pub mod analytics;
pub(crate) mod api;
pub mod attribution;
pub mod audit;
pub(crate) mod audit_cli;
pub mod auth;
pub(crate) mod batch;
pub mod budget;
pub mod budget_replay;
pub mod cache;
pub mod chargeback;
pub mod cli;
pub mod config;
pub(crate) mod dashboard;
pub mod demo;
pub(crate) mod error;
pub(crate) mod finops_cli;
pub(crate) mod google_auth;
pub mod govern;
pub mod keys;
pub mod ledger;
pub(crate) mod listener;
pub mod metering;
pub mod observe;
pub(crate) mod oidc;
pub mod outcome;
pub(crate) mod pattern;
pub mod pipeline;
pub(crate) mod policy;
pub(crate) mod price_update;
pub(crate) mod prices_cli;
pub mod pricing;
pub mod query;
pub mod reconcile;
pub mod reconciliation;
pub mod record;
pub(crate) mod redact;
pub mod routing;
pub(crate) mod semantic;
pub mod server;
pub mod session;
pub(crate) mod state;
pub mod store;
pub(crate) mod time;
pub(crate) mod upload;
pub(crate) mod upstream;
pub mod usage_events;
pub mod whatif;

/// A `HashMap` with foldhash (seeded per process): the hot maps are looked up
/// several times per request, where std's SipHash was ~4 % of the CPU.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
