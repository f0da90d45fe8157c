//! Cost per outcome: the values are in [`crate::outcome`], the table in `store`.

pub use crate::outcome::*;
