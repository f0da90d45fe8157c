//! Property tests of the cost function over every built-in entry: monotone
//! in every bucket and every unit billed apart from tokens, parts add up to
//! the total, long-context boundary exact.

// Test helpers outside #[test] fns unwrap too: a test may panic.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use tollgate_pricing::{cost, Bucket, Catalog, PriceEntry, Rates, ServiceTier};
use tollgate_units::Usage;

fn entries() -> Vec<&'static PriceEntry> {
    Catalog::builtin().entries().collect()
}

/// Token buckets in [`Bucket::ALL`] order, then images, audio ms, characters.
fn usage_from(v: [u64; 10], units: [u64; 3]) -> Usage {
    Usage {
        input: v[0],
        input_image: v[1],
        input_audio: v[2],
        cache_read: v[3],
        cache_write_5m: v[4],
        cache_write_1h: v[5],
        output: v[6],
        output_audio: v[7],
        output_image: v[8],
        reasoning: v[9],
        web_search_requests: 0,
        images: units[0],
        audio_ms: units[1],
        characters: units[2],
    }
}

/// One of the units billed apart from tokens.
fn add_unit(u: Usage, unit: usize, n: u64) -> Usage {
    let mut u = u;
    match unit {
        0 => u.images += n,
        1 => u.audio_ms += n,
        _ => u.characters += n,
    }
    u
}

/// Entries priced per unit (dall-e, whisper, tts…), so the unit properties
/// are not only tried on entries that ignore the units.
fn per_unit_entries() -> Vec<&'static PriceEntry> {
    Catalog::builtin().entries().filter(|e| e.per_unit_priced()).collect()
}

fn add(u: Usage, b: Bucket, n: u64) -> Usage {
    let mut u = u;
    let slot = match b {
        Bucket::Input => &mut u.input,
        Bucket::InputImage => &mut u.input_image,
        Bucket::InputAudio => &mut u.input_audio,
        Bucket::CacheRead => &mut u.cache_read,
        Bucket::CacheWrite5m => &mut u.cache_write_5m,
        Bucket::CacheWrite1h => &mut u.cache_write_1h,
        Bucket::Output => &mut u.output,
        Bucket::OutputAudio => &mut u.output_audio,
        Bucket::OutputImage => &mut u.output_image,
        Bucket::Reasoning => &mut u.reasoning,
    };
    *slot += n;
    u
}

fn tier() -> impl Strategy<Value = ServiceTier> {
    prop_oneof![
        Just(ServiceTier::Standard),
        Just(ServiceTier::Batch),
        Just(ServiceTier::Flex),
        Just(ServiceTier::Priority)
    ]
}

/// Independent re-computation: Σ round_half_away(tokens × rate × 1000).
fn expected_nanos(rates: &Rates, u: &Usage) -> i64 {
    Bucket::ALL
        .iter()
        .map(|&b| {
            (Decimal::from(b.tokens(u)) * rates.rate(b) * Decimal::from(1000))
                .round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero)
                .to_i64()
                .unwrap()
        })
        .sum()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn monotone_in_every_bucket(
        idx in 0usize..10_000,
        counts in prop::array::uniform10(0u64..3_000_000),
        units in prop::array::uniform3(0u64..100_000),
        bucket in 0usize..10,
        delta in 1u64..500_000,
        t in tier(),
    ) {
        let all = entries();
        let e = all[idx % all.len()];
        let u = usage_from(counts, units);
        let b = Bucket::ALL[bucket];
        let before = cost(e, &u, t);
        let after = cost(e, &add(u, b, delta), t);
        prop_assert!(after.total >= before.total, "{} {:?} {:?}: {} < {}", e.label(), t, b, after.total, before.total);
    }

    #[test]
    fn parts_sum_to_total(
        idx in 0usize..10_000,
        counts in prop::array::uniform10(0u64..50_000_000),
        units in prop::array::uniform3(0u64..10_000_000),
        per_unit in any::<bool>(),
        t in tier(),
    ) {
        let all = if per_unit { per_unit_entries() } else { entries() };
        let e = all[idx % all.len()];
        let c = cost(e, &usage_from(counts, units), t);
        prop_assert_eq!(c.parts.sum(), c.total);
        prop_assert!(c.total.nanos() >= 0);
        prop_assert!(c.cache_savings.nanos() >= 0);
    }

    #[test]
    fn monotone_in_every_unit_and_not_scaled_by_tier(
        idx in 0usize..10_000,
        counts in prop::array::uniform10(0u64..3_000_000),
        units in prop::array::uniform3(0u64..1_000_000),
        unit in 0usize..3,
        delta in 1u64..100_000,
        t in tier(),
    ) {
        let all = per_unit_entries();
        prop_assume!(!all.is_empty());
        let e = all[idx % all.len()];
        let u = usage_from(counts, units);
        let before = cost(e, &u, t);
        let after = cost(e, &add_unit(u, unit, delta), t);
        prop_assert!(after.total >= before.total, "{} {:?} unit {}: {} < {}", e.label(), t, unit, after.total, before.total);
        // Per-unit parts are the same under every service tier.
        let standard = cost(e, &u, ServiceTier::Standard);
        prop_assert_eq!(
            (before.parts.images, before.parts.audio, before.parts.characters),
            (standard.parts.images, standard.parts.audio, standard.parts.characters)
        );
        // And each is its units × price, rounded once.
        let exact = |n: u64, price: Option<Decimal>, scale: u64| {
            price.map_or(0, |p| (Decimal::from(n) * p * Decimal::from(scale))
                .round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero)
                .to_i64()
                .unwrap())
        };
        prop_assert_eq!(before.parts.images.nanos(), exact(u.images, e.per_image, 1_000_000_000));
        prop_assert_eq!(before.parts.audio.nanos(), exact(u.audio_ms, e.per_audio_second, 1_000_000));
        prop_assert_eq!(before.parts.characters.nanos(), exact(u.characters, e.per_character, 1_000_000_000));
    }

    #[test]
    fn long_context_boundary_is_exact(
        idx in 0usize..10_000,
        split in prop::array::uniform4(0u64..1000),
        output in 0u64..100_000,
        reasoning in 0u64..100_000,
    ) {
        let with_tiers: Vec<&PriceEntry> = entries().into_iter().filter(|e| !e.long_context.is_empty()).collect();
        prop_assume!(!with_tiers.is_empty());
        let e = with_tiers[idx % with_tiers.len()];
        let tier = &e.long_context[idx % e.long_context.len()];
        let n = tier.above_input_tokens;
        // Spread exactly n input tokens over the input-side buckets.
        let total_w: u64 = split.iter().sum::<u64>() + 1;
        let part = |w: u64| n * w / total_w;
        let cache_read = part(split[0]);
        let cw5 = part(split[1]);
        let cw1 = part(split[2]);
        let audio = part(split[3]);
        let input = n - cache_read - cw5 - cw1 - audio;
        let at = Usage {
            input, input_audio: audio, cache_read, cache_write_5m: cw5, cache_write_1h: cw1,
            output, reasoning, ..Usage::default()
        };
        prop_assert_eq!(at.input_tokens(), n);
        // Rates below this tier (a lower tier or the base) at exactly n …
        let below = e.long_context.iter().filter(|t| t.above_input_tokens < n).max_by_key(|t| t.above_input_tokens)
            .map_or(&e.rates, |t| &t.rates);
        prop_assert_eq!(cost(e, &at, ServiceTier::Standard).total.nanos(), expected_nanos(below, &at));
        // … and this tier's rates for the whole request at n + 1.
        let over = Usage { input: input + 1, ..at };
        prop_assert_eq!(cost(e, &over, ServiceTier::Standard).total.nanos(), expected_nanos(&tier.rates, &over));
    }
}
