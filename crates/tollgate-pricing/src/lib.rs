//! tollgate's price catalog and the pure cost function: usage × exact rates → nano-dollars.
//!
//! Layout, in the order a request meets it:
//! - [`catalog`]: the price data. The built-in catalog is the data file
//!   `catalog/prices.toml` (embedded at compile time, parsed once), and
//!   [`Catalog::lookup`] finds the entry for a provider, a model name as the
//!   client or the upstream spelled it, and the request's time.
//! - [`cost()`]: one [`PriceEntry`], one [`tollgate_units::Usage`], one
//!   [`ServiceTier`] → [`Cost`]. No I/O, no clock.
//! - [`update`]: a newer catalog applied over the one in force, keeping
//!   history ([`Catalog::with_update`]).
//! - [`import`]: readers for outside catalogs (pydantic genai-prices,
//!   LiteLLM) and [`import::discrepancies`] to compare catalogs.
//!
//! Rates are USD per million tokens held as exact decimals; money is integer
//! nano-dollars. Floats never take part in a price computation.

pub mod catalog;
mod cost;
pub mod import;
mod names;
mod raw;
pub mod update;

pub use catalog::{
    Bucket, Catalog, CatalogError, GpuHour, LongContextTier, PriceEntry, Rates, ServiceTier, ServiceTierPricing,
};
pub use cost::{cost, Cost, CostParts};
pub use raw::RawPriceEntry;

/// A `HashMap` with foldhash (seeded per process): the hot maps are looked up
/// several times per request, where std's SipHash was ~4 % of the CPU.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
