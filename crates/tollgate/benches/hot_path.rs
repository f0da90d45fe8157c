//! Criterion microbenchmarks of the gateway's per-request stages: auth (keyed hash + key cache), tag parsing, response-cache key and prompt-prefix hash, the reservation's input-token estimate, routing, pricing, reserve + settle, and the ledger (SQLite batch append and the writer's acknowledged round trip).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use http::{HeaderMap, HeaderValue};
use tollgate::attribution::{attribute, Attribution, KeyTags};
use tollgate::auth::KeyHasher;
use tollgate::budget::{Action, BudgetSpec, Facts, LimitKind, Period, RateLimitSpec, Scope};
use tollgate::config::{Config, ProcessEnv};
use tollgate::govern::{Ask, Governor};
use tollgate::ledger::{LedgerRow, LedgerWriter, SpoolConfig, UsageSource};
use tollgate::server::Gateway;
use tollgate::store::sqlite::SqliteStore;
use tollgate::{govern::estimate as governance, keys, metering, routing};
use tollgate_providers::{inspect, ApiFormat};
use tollgate_units::{Money, Usage};

const NOW_MS: i64 = 1_756_728_000_000;

/// The request the load benchmark sends (bench/compare.sh).
const SMALL_CHAT: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello in one short sentence."}],"max_tokens":64}"#;

fn long_chat(turns: usize) -> String {
    let msgs: Vec<_> = (0..turns)
        .map(|i| {
            let role = if i % 2 == 0 { "user" } else { "assistant" };
            serde_json::json!({"role": role, "content": format!("Turn {i}: {}", "the quick brown fox jumps over the lazy dog, ".repeat(8))})
        })
        .collect();
    serde_json::json!({"model": "gpt-4o-mini", "messages": msgs, "max_tokens": 256}).to_string()
}

fn bench_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("authorization", HeaderValue::from_static("Bearer tg_0123456789abcdefghijklmnopqrstuvwxyzABCD"));
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert("user-agent", HeaderValue::from_static("oha/1.x"));
    h.insert("x-tollgate-tags", HeaderValue::from_static("feature=summarize,env=prod,customer=acme-corp"));
    h
}

fn bench_attribution(c: &mut Criterion) {
    let mut g = c.benchmark_group("attribution");
    let mut defaults = BTreeMap::new();
    defaults.insert("team".to_string(), "t".to_string());
    let enforced = BTreeMap::new();
    let key = KeyTags { defaults: &defaults, enforced: &enforced };
    let none = HeaderMap::new();
    g.bench_function("no_tags", |b| b.iter(|| attribute(black_box(&none), None, &[], key).unwrap()));
    let h = bench_headers();
    g.bench_function("three_tags_header", |b| b.iter(|| attribute(black_box(&h), None, &[], key).unwrap()));
    let mut rich = bench_headers();
    rich.insert("x-tollgate-trace-id", HeaderValue::from_static("4bf92f3577b34da6a3ce929d0e0e4736"));
    rich.insert("x-tollgate-session", HeaderValue::from_static("sess-1"));
    let meta = vec![("feature".to_string(), "chat".to_string()), ("tenant".to_string(), "t-9".to_string())];
    g.bench_function("tags_trace_session_body_metadata", |b| {
        b.iter(|| attribute(black_box(&rich), Some("u-42"), black_box(&meta), key).unwrap())
    });
    g.finish();
}

fn bench_cache_key(c: &mut Criterion) {
    let mut g = c.benchmark_group("cache");
    let det_small = SMALL_CHAT.replace("\"max_tokens\":64", "\"max_tokens\":64,\"temperature\":0");
    for (name, body) in [
        ("small", det_small),
        ("16k", long_chat(40).replace("\"max_tokens\":256", "\"max_tokens\":256,\"temperature\":0")),
    ] {
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(BenchmarkId::new("response_cache_key", name), |b| {
            b.iter(|| {
                tollgate::cache::key(black_box("team:t"), ApiFormat::OpenAiChat, black_box(body.as_bytes()), false)
            })
        });
        g.bench_function(BenchmarkId::new("prompt_prefix_hash", name), |b| {
            b.iter(|| tollgate::cache::prefix_hash(ApiFormat::OpenAiChat, black_box(body.as_bytes())))
        });
    }
    g.finish();
}

fn bench_token_estimate(c: &mut Criterion) {
    // What the reservation uses (byte length: an upper bound) against a real tokenizer count.
    metering::warm_up();
    let mut g = c.benchmark_group("input_token_estimate");
    for (name, body) in [("small", SMALL_CHAT.to_string()), ("16k", long_chat(40))] {
        let info = inspect(ApiFormat::OpenAiChat, body.as_bytes()).unwrap();
        g.throughput(Throughput::Bytes(info.prompt_text.len() as u64));
        g.bench_function(BenchmarkId::new("byte_length_bound", name), |b| {
            b.iter(|| black_box(&info.prompt_text).len() as u64 + 64)
        });
        g.bench_function(BenchmarkId::new("tiktoken_o200k", name), |b| {
            b.iter(|| metering::count_tokens("gpt-4o-mini", black_box(&info.prompt_text)))
        });
    }
    g.finish();
}

struct World {
    rt: tokio::runtime::Runtime,
    gateway: Option<Gateway>,
    _dir: tempfile::TempDir,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("bench.db").display());
    let toml = format!(
        "[storage]\nurl = \"{db}\"\n\n[[providers]]\nname = \"openai\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\n\
         [[models]]\nname = \"gpt-4o-mini\"\ntargets = [{{ provider = \"openai\", model = \"gpt-4o-mini\" }}]\n"
    );
    let config = Config::from_toml(&toml, "bench.toml", &ProcessEnv).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let store = Arc::new(SqliteStore::open(&db).unwrap());
    let gateway = rt.block_on(async { Gateway::build(config, tollgate::store::Stores::sqlite(store)).await.unwrap() });
    World { rt, gateway: Some(gateway), _dir: dir }
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(g) = self.gateway.take() {
            self.rt.block_on(g.shutdown());
        }
    }
}

fn bench_gateway_pieces(c: &mut Criterion) {
    let w = world();
    let state = w.gateway.as_ref().unwrap().state.clone();

    let mut g = c.benchmark_group("reservation");
    let config = state.config();
    for (name, body) in [("small", SMALL_CHAT.to_string()), ("16k", long_chat(40))] {
        let info = inspect(ApiFormat::OpenAiChat, body.as_bytes()).unwrap();
        let plan = routing::plan(&config, "gpt-4o-mini", &|_, _| true);
        g.bench_function(BenchmarkId::new("max_cost", name), |b| {
            b.iter(|| {
                governance::max_cost(
                    &config,
                    &state.pricing.load(),
                    black_box(&plan),
                    &info,
                    black_box(body.as_bytes()),
                    4096,
                )
            })
        });
    }
    g.bench_function("routing_plan", |b| b.iter(|| routing::plan(&config, black_box("gpt-4o-mini"), &|_, _| true)));
    let provider = &config.providers[0];
    let usage = Usage { input: 1_200, cache_read: 800, output: 350, ..Usage::default() };
    g.bench_function("pricing_price", |b| {
        b.iter(|| state.pricing.load().price(provider, black_box("gpt-4o-mini-2024-07-18"), &usage, NOW_MS))
    });
    g.finish();

    let mut g = c.benchmark_group("auth");
    let spec = keys::KeySpec {
        name: "bench".into(),
        team: Some("t".into()),
        user: None,
        tags: vec![],
        enforce_tags: vec![],
        models: vec![],
        expires_ms: None,
        budget: None,
        rpm: None,
        tpm: None,
    };
    let created = w
        .rt
        .block_on(keys::create(state.stores.keys.as_ref(), state.auth.hasher(), spec, tollgate::pipeline::now_ms()))
        .unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("authorization", HeaderValue::from_str(&format!("Bearer {}", created.secret)).unwrap());
    g.bench_function("keyed_hash", |b| b.iter(|| state.auth.hasher().hash(black_box(&created.secret))));
    let standalone = KeyHasher::new(b"0123456789abcdef0123456789abcdef");
    g.bench_function("keyed_hash_fresh_hasher", |b| b.iter(|| standalone.hash(black_box(&created.secret))));
    // First call fills the 5 s cache; the measured calls are cache hits, as on the hot path.
    let now = tollgate::pipeline::now_ms();
    w.rt.block_on(state.auth.authenticate(&headers, now)).unwrap();
    g.bench_function("authenticate_cached", |b| {
        b.iter(|| w.rt.block_on(state.auth.authenticate(black_box(&headers), now)).unwrap())
    });
    g.finish();
}

fn governor_with(rt: &tokio::runtime::Runtime, budgets: usize, limits: usize) -> Arc<Governor> {
    let (gov, rx) = Governor::new(chrono_tz::UTC);
    // Alerts are not exercised: the budgets are far from their thresholds.
    std::mem::forget(rx);
    let gov = Arc::new(gov);
    for i in 0..budgets {
        let scope = if i == 0 { "key=key_bench".to_string() } else { format!("team=other{i}") };
        let installed = gov.set_budget(
            BudgetSpec {
                id: format!("b{i}"),
                scope: Scope::parse(&scope).unwrap(),
                limit: "1000000".parse().unwrap(),
                period: Period::Month,
                action: Action::Block,
                alert_at: vec![500, 800, 1000],
                block_unpriced: false,
            },
            vec![],
            BTreeSet::new(),
            NOW_MS,
        );
        rt.block_on(installed).unwrap();
    }
    for i in 0..limits {
        let scope = if i == 0 { "key=key_bench".to_string() } else { format!("team=other{i}") };
        gov.set_limit(
            RateLimitSpec {
                id: format!("l{i}"),
                scope: Scope::parse(&scope).unwrap(),
                kind: LimitKind::Requests,
                amount: 100_000_000,
                window_ms: 60_000,
            },
            NOW_MS,
        );
    }
    gov
}

fn bench_governor(c: &mut Criterion) {
    let mut g = c.benchmark_group("governor");
    let mut attribution = Attribution::default();
    for (k, v) in [("team", "t"), ("feature", "summarize"), ("env", "prod"), ("customer", "acme-corp")] {
        attribution.tags.insert(k.into(), v.into());
    }
    let facts =
        Facts { key_id: "key_bench", model: "gpt-4o-mini", provider: Some("openai"), attribution: &attribution };
    let ask = Ask { cost: Some(Money::from_nanos(150_000)), tokens: 4_300 };
    // The in-process counters answer at once: a current-thread runtime only drives the futures.
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    for (budgets, limits) in [(0, 0), (1, 1), (20, 20)] {
        let gov = governor_with(&rt, budgets, limits);
        g.bench_function(BenchmarkId::new("reserve_settle", format!("{budgets}b_{limits}l")), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let r = gov.reserve(black_box(&facts), ask, NOW_MS).await.unwrap();
                    r.settle(Some(Money::from_nanos(90_000)), 900, NOW_MS).await;
                })
            })
        });
    }
    g.finish();
}

static SEQ: AtomicU64 = AtomicU64::new(0);

fn row() -> LedgerRow {
    let mut attribution = Attribution::default();
    for (k, v) in [("team", "t"), ("feature", "summarize"), ("env", "prod"), ("customer", "acme-corp")] {
        attribution.tags.insert(k.into(), v.into());
    }
    LedgerRow {
        request_id: format!("bench-{:016}", SEQ.fetch_add(1, Ordering::Relaxed)),
        time_ms: NOW_MS,
        key_id: Some("key_bench".into()),
        endpoint: tollgate::record::Endpoint::ChatCompletions,
        requested_model: Some("gpt-4o-mini".into()),
        model: Some("gpt-4o-mini-2024-07-18".into()),
        provider: Some("openai".into()),
        status: 200,
        error_code: None,
        usage: Usage { input: 26, output: 12, ..Usage::default() },
        usage_source: UsageSource::Provider,
        cost: Some(Money::from_nanos(11_100)),
        cache_savings: Money::ZERO,
        response_cache_savings: Money::ZERO,
        tool_cost: Money::ZERO,
        provider_cost: None,
        streamed: false,
        client_disconnected: false,
        cache: tollgate::record::CacheOutcome::Off,
        latency_ms: 1,
        ttft_ms: None,
        attempts: 1,
        prefix_hash: Some("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into()),
        attempt_log: Vec::new(),
        attribution,
    }
}

fn bench_ledger(c: &mut Criterion) {
    let mut g = c.benchmark_group("ledger");
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&format!("sqlite://{}", dir.path().join("l.db").display())).unwrap());
    let one = row();
    g.bench_function("row_to_spool_json", |b| b.iter(|| serde_json::to_vec(black_box(&one)).unwrap()));
    for n in [1usize, 64, 1024] {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(BenchmarkId::new("sqlite_append_batch", n), |b| {
            b.iter_batched(
                || (0..n).map(|_| row()).collect::<Vec<_>>(),
                |rows| {
                    let refs: Vec<&LedgerRow> = rows.iter().collect();
                    store.append(&refs).unwrap();
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.throughput(Throughput::Elements(1));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let spool = SpoolConfig::beside(&dir.path().join("w.db"));
    let wstore = Arc::new(SqliteStore::open(&format!("sqlite://{}", dir.path().join("w.db").display())).unwrap());
    let (writer, drain, _) = LedgerWriter::start(wstore, spool).unwrap();
    g.bench_function("writer_round_trip_one", |b| {
        b.iter_batched(row, |r| rt.block_on(writer.write(r)), BatchSize::SmallInput)
    });
    // What write-ahead adds: the request's intent durable before the send, then its row.
    g.bench_function("writer_intent_then_row_one", |b| {
        b.iter_batched(
            row,
            |r| {
                rt.block_on(async {
                    writer.intend(intent(&r)).await;
                    writer.write(r).await;
                })
            },
            BatchSize::SmallInput,
        )
    });
    // 64 concurrent requests acknowledging together: the group commit's per-row cost.
    g.throughput(Throughput::Elements(64));
    g.bench_function("writer_round_trip_64_concurrent", |b| {
        b.iter_batched(
            || (0..64).map(|_| row()).collect::<Vec<_>>(),
            |rows| {
                rt.block_on(async {
                    let w = &writer;
                    futures_util::future::join_all(rows.into_iter().map(|r| w.write(r))).await;
                })
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("writer_intent_then_row_64_concurrent", |b| {
        b.iter_batched(
            || (0..64).map(|_| row()).collect::<Vec<_>>(),
            |rows| {
                rt.block_on(async {
                    let w = &writer;
                    futures_util::future::join_all(rows.into_iter().map(|r| async move {
                        w.intend(intent(&r)).await;
                        w.write(r).await;
                    }))
                    .await;
                })
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
    drop(writer);
    drain.wait();
}

/// The intent a request writes before its send (the fields a real one carries).
fn intent(r: &LedgerRow) -> tollgate::ledger::Intent {
    tollgate::ledger::Intent {
        request_id: r.request_id.clone(),
        time_ms: r.time_ms,
        key_id: r.key_id.clone(),
        endpoint: r.endpoint,
        requested_model: r.requested_model.clone(),
        provider: r.provider.clone(),
        model: r.model.clone(),
        streamed: r.streamed,
        upper_bound: r.cost,
        attribution: r.attribution.clone(),
    }
}

criterion_group!(
    benches,
    bench_attribution,
    bench_cache_key,
    bench_token_estimate,
    bench_gateway_pieces,
    bench_governor,
    bench_ledger
);
criterion_main!(benches);
