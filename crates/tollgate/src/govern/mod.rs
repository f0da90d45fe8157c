//! Spend governance, before the spend: `estimate` bounds what a request can
//! cost; the `governor` reserves that bound on every budget and rate limit
//! that covers the request (all or nothing) and settles it to the actual
//! cost; `alerts` delivers the thresholds crossed. Budget and limit values
//! themselves are in `crate::budget`.

pub mod alerts;
pub mod estimate;
mod governor;

pub use governor::*;
