//! The quantities tollgate counts: token [`Usage`] in disjoint buckets and
//! [`Money`] as an integer number of nano-dollars.
//!
//! Both are shared by the provider adapters (which produce usage), the price
//! engine (which turns usage into money) and the gateway (which stores both).

mod money;
mod usage;

pub use money::{Money, MoneyParseError};
pub use usage::Usage;
