//! Criterion microbenchmarks of pricing: catalog lookup (name matching, dated entries) and the exact cost function, alone and together as the gateway calls them once or twice per request.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use chrono::{TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use tollgate_pricing::{cost, Catalog, ServiceTier};
use tollgate_units::Usage;

fn bench_pricing(c: &mut Criterion) {
    let catalog = Catalog::builtin();
    let at = Utc.with_ymd_and_hms(2025, 9, 1, 12, 0, 0).unwrap();
    let usage = Usage { input: 1_200, cache_read: 800, output: 350, reasoning: 120, ..Usage::default() };

    let mut g = c.benchmark_group("pricing");
    g.bench_function("catalog_builtin_get", |b| b.iter(|| black_box(Catalog::builtin()).len()));
    for (name, provider, model) in [
        ("lookup_exact", Some("openai"), "gpt-4o-mini"),
        ("lookup_dated_alias", Some("openai"), "gpt-4o-mini-2024-07-18"),
        ("lookup_prefixed_no_hint", None, "openai/gpt-4o-mini"),
        ("lookup_miss", Some("openai"), "no-such-model-7b"),
    ] {
        g.bench_function(name, |b| b.iter(|| catalog.lookup(black_box(provider), black_box(model), at)));
    }
    let entry = catalog.lookup(Some("openai"), "gpt-4o-mini", at).expect("gpt-4o-mini is in the builtin catalog");
    g.bench_function("cost_only", |b| b.iter(|| cost(black_box(entry), black_box(&usage), ServiceTier::Standard)));
    g.bench_function("lookup_and_cost", |b| {
        b.iter(|| {
            let e = catalog.lookup(Some("openai"), black_box("gpt-4o-mini-2024-07-18"), at).unwrap();
            cost(e, black_box(&usage), ServiceTier::Standard).total
        })
    });
    if let Some(claude) = catalog.lookup(Some("anthropic"), "claude-sonnet-4-5", at) {
        let u = Usage { input: 3_000, cache_read: 20_000, cache_write_5m: 1_000, output: 700, ..Usage::default() };
        g.bench_function("cost_only_anthropic_cache", |b| {
            b.iter(|| cost(black_box(claude), black_box(&u), ServiceTier::Standard))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_pricing);
criterion_main!(benches);
