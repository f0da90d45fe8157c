//! The pure cost function: one price entry × one request's usage → money.
//!
//! Each bucket's part is `tokens × USD-per-million / 1e6`, and each per-unit
//! part `units × USD-per-unit` (images, seconds of audio, characters),
//! computed exactly in decimal and rounded once to whole nano-dollars (half
//! away from zero).
//! The total is the sum of the rounded parts, so the parts always add up to
//! the total exactly — a ledger row's breakdown never disagrees with its sum.

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::Serialize;
use tollgate_units::{Money, Usage};

use crate::catalog::{Bucket, PriceEntry, ServiceTier};

/// The price of one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Cost {
    /// Sum of `parts`.
    pub total: Money,
    pub parts: CostParts,
    /// What the cache reads saved against paying the (same tier's) uncached
    /// input rate for them. Never negative.
    pub cache_savings: Money,
}

/// The cost of each token bucket, of each unit billed apart from tokens,
/// plus the per-request fee.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CostParts {
    pub input: Money,
    pub input_image: Money,
    pub input_audio: Money,
    pub cache_read: Money,
    pub cache_write_5m: Money,
    pub cache_write_1h: Money,
    pub output: Money,
    pub output_audio: Money,
    pub output_image: Money,
    pub reasoning: Money,
    pub request_fee: Money,
    /// Server-side web searches, at the entry's price per 1,000.
    pub web_search: Money,
    /// Images generated, at the entry's `per_image`.
    pub images: Money,
    /// Seconds of input audio, at the entry's `per_audio_second`.
    pub audio: Money,
    /// Input characters, at the entry's `per_character`.
    pub characters: Money,
}

impl CostParts {
    /// The part for tool calls and per-request fees (the ledger's `tool_cost`).
    pub fn tools(&self) -> Money {
        self.request_fee.saturating_add(self.web_search)
    }

    pub fn sum(&self) -> Money {
        [
            self.input,
            self.input_image,
            self.input_audio,
            self.cache_read,
            self.cache_write_5m,
            self.cache_write_1h,
            self.output,
            self.output_audio,
            self.output_image,
            self.reasoning,
            self.request_fee,
            self.web_search,
            self.images,
            self.audio,
            self.characters,
        ]
        .into_iter()
        .sum()
    }

    fn slot(&mut self, b: Bucket) -> &mut Money {
        match b {
            Bucket::Input => &mut self.input,
            Bucket::InputImage => &mut self.input_image,
            Bucket::InputAudio => &mut self.input_audio,
            Bucket::CacheRead => &mut self.cache_read,
            Bucket::CacheWrite5m => &mut self.cache_write_5m,
            Bucket::CacheWrite1h => &mut self.cache_write_1h,
            Bucket::Output => &mut self.output,
            Bucket::OutputAudio => &mut self.output_audio,
            Bucket::OutputImage => &mut self.output_image,
            Bucket::Reasoning => &mut self.reasoning,
        }
    }
}

/// Prices `usage` with `entry` under `tier`.
///
/// - Long context: when `usage.input_tokens()` (all input, cache reads and
///   writes included) is above a tier's threshold, every bucket uses that
///   tier's rates.
/// - Service tier: a multiplier or explicit rates from the entry; a tier the
///   entry does not price is billed at standard rates.
/// - Buckets without their own rate fall back as [`crate::Rates::rate`] says.
/// - The entry's `request_fee` is charged once per call (not scaled by the
///   service tier); web searches at `web_search_per_1k` per 1,000 calls.
/// - Units billed apart from tokens, each its own part: `usage.images` ×
///   `per_image`, `usage.audio_ms` / 1000 × `per_audio_second`,
///   `usage.characters` × `per_character`. Like the request fee they are
///   **not** scaled by the service tier (nor by a long-context tier). A unit
///   the entry has no price for costs nothing here: whether an entry covers
///   the units a request used is for the caller to check (see
///   [`PriceEntry::per_unit_priced`]).
pub fn cost(entry: &PriceEntry, usage: &Usage, tier: ServiceTier) -> Cost {
    let rates = entry.rates_for(usage.input_tokens(), tier);
    let mut parts = CostParts::default();
    for b in Bucket::ALL {
        *parts.slot(b) = token_cost(b.tokens(usage), rates.rate(b));
    }
    parts.request_fee = entry.request_fee.map_or(Money::ZERO, usd_to_money);
    // Web searches are billed per call, whatever the service tier.
    parts.web_search = match (usage.web_search_requests, entry.web_search_per_1k) {
        (0, _) | (_, None) => Money::ZERO,
        (n, Some(per_1k)) => {
            to_money(Decimal::from(n).checked_mul(per_1k).and_then(|d| d.checked_mul(Decimal::from(1_000_000u32))))
        }
    };
    parts.images = unit_cost(usage.images, entry.per_image, Decimal::from(1_000_000_000u64));
    // Milliseconds × USD per second × 1e9 nd / 1000 ms.
    parts.audio = unit_cost(usage.audio_ms, entry.per_audio_second, Decimal::from(1_000_000u64));
    parts.characters = unit_cost(usage.characters, entry.per_character, Decimal::from(1_000_000_000u64));
    let uncached = token_cost(usage.cache_read, rates.input);
    let cache_savings = Money::from_nanos(uncached.nanos().saturating_sub(parts.cache_read.nanos()).max(0));
    Cost { total: parts.sum(), parts, cache_savings }
}

/// `tokens × rate_per_million / 1e6` USD in nano-dollars: tokens × rate × 1000.
fn token_cost(tokens: u64, rate_per_million: Decimal) -> Money {
    if tokens == 0 || rate_per_million.is_zero() {
        return Money::ZERO;
    }
    let nanos = Decimal::from(tokens).checked_mul(rate_per_million).and_then(|d| d.checked_mul(Decimal::from(1000u32)));
    to_money(nanos)
}

/// `units × price × nanos_per_unit_price` nano-dollars, exact until the one
/// rounding; nothing when there are no units or no price.
fn unit_cost(units: u64, price: Option<Decimal>, nanos_per_unit_price: Decimal) -> Money {
    match (units, price) {
        (0, _) | (_, None) => Money::ZERO,
        (n, Some(p)) => to_money(Decimal::from(n).checked_mul(p).and_then(|d| d.checked_mul(nanos_per_unit_price))),
    }
}

fn usd_to_money(usd: Decimal) -> Money {
    to_money(usd.checked_mul(Decimal::from(1_000_000_000u64)))
}

/// Rounds exact nano-dollars to an integer; a value beyond `i64` (only for
/// absurd inputs) saturates instead of wrapping.
fn to_money(nanos: Option<Decimal>) -> Money {
    match nanos {
        Some(d) => Money::from_nanos(
            d.round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero)
                .to_i64()
                .unwrap_or(if d.is_sign_negative() { i64::MIN } else { i64::MAX }),
        ),
        None => Money::from_nanos(i64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_half_away_from_zero_per_part() {
        // 1 token at $0.0005/M = 0.5 nd → 1 nd; at $0.0004/M = 0.4 nd → 0.
        assert_eq!(token_cost(1, Decimal::new(5, 4)).nanos(), 1);
        assert_eq!(token_cost(1, Decimal::new(4, 4)).nanos(), 0);
        // 2 tokens at $0.00875/M = 17.5 nd → 18; 7 tokens = 61.25 nd → 61.
        assert_eq!(token_cost(2, Decimal::new(875, 5)).nanos(), 18);
        assert_eq!(token_cost(7, Decimal::new(875, 5)).nanos(), 61);
        // 3 tokens at $0.075/M = 225 nd exactly.
        assert_eq!(token_cost(3, Decimal::new(75, 3)).nanos(), 225);
        assert_eq!(token_cost(u64::MAX, Decimal::from(1_000_000_000u64)).nanos(), i64::MAX);
    }

    #[test]
    fn units_are_rounded_once() {
        let per_ms = Decimal::from(1_000_000u64);
        // 1 ms at $0.0001/s = 0.0000001 USD = 100 nd exactly.
        assert_eq!(unit_cost(1, Some(Decimal::new(1, 4)), per_ms).nanos(), 100);
        // 3 ms at $0.0000005/s = 1.5 nd → 2 (half away from zero).
        assert_eq!(unit_cost(3, Some(Decimal::new(5, 7)), per_ms).nanos(), 2);
        // 1 ms at $0.0000004/s = 0.4 nd → 0.
        assert_eq!(unit_cost(1, Some(Decimal::new(4, 7)), per_ms).nanos(), 0);
        assert_eq!(unit_cost(5, None, per_ms).nanos(), 0);
        assert_eq!(unit_cost(0, Some(Decimal::ONE), per_ms).nanos(), 0);
        assert_eq!(unit_cost(u64::MAX, Some(Decimal::MAX), per_ms).nanos(), i64::MAX);
    }
}
