//! tollgate: an LLM gateway that meters, prices, attributes and governs
//! every request.
//!
//! Modules in request order (see `ARCHITECTURE.md`):
//!
//! - [`server`]: HTTP server, shared state, graceful shutdown.
//! - [`pipeline`]: the request path, top to bottom, in one place.
//! - [`auth`]: virtual keys, stored as keyed hashes.
//! - [`attribution`]: tags, trace, session, agent, prompt from headers/body/key.
//! - [`policy`]: model access decisions.
//! - [`budget`], [`governor`]: budgets and rate limits, reserve → settle.
//! - [`cache`], [`semantic`]: the exact and the semantic response caches.
//! - [`routing`]: which provider and model serve a requested name.
//! - [`upstream`]: send with retries and fallbacks.
//! - [`metering`]: local token counting when the provider reports none.
//! - [`pricing`]: usage → money via the price catalog.
//! - [`ledger`]: one row per authenticated request, spooled then loaded.
//! - [`observe`]: metrics (and traces, anomaly signals) per finished request.
//! - [`store`]: storage traits and the embedded SQLite store.
//! - [`analytics`]: spend grouped by any dimension (CLI, API, dashboard).
//! - [`api`], [`keys`]: analytics and admin API, key management.
//! - [`config`], [`error`]: configuration and the public error codes.
//! - [`dashboard`]: the web UI at `/ui`.
//! - [`cli`], [`demo`]: the command line and the one-minute demo.

pub mod analytics;
pub(crate) mod api;
pub mod attribution;
pub mod auth;
pub(crate) mod batch;
pub mod budget;
pub mod cache;
pub mod cli;
pub mod config;
pub(crate) mod dashboard;
pub(crate) mod demo;
pub(crate) mod error;
pub mod govern;
pub mod keys;
pub mod ledger;
pub(crate) mod listener;
pub mod metering;
pub mod observe;
pub mod outcome;
pub(crate) mod pattern;
pub mod pipeline;
pub(crate) mod policy;
pub(crate) mod prices_cli;
pub(crate) mod pricing;
pub mod query;
pub mod record;
pub(crate) mod redact;
pub mod routing;
pub(crate) mod semantic;
pub mod server;
pub(crate) mod state;
pub mod store;
pub(crate) mod time;
pub(crate) mod upstream;

/// A `HashMap` with foldhash (seeded per process): the hot maps are looked up
/// several times per request, where std's SipHash was ~4 % of the CPU.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
