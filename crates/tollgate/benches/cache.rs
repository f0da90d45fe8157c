//! Response cache: key computation, lookup latency, and the whole hit path
//! through the gateway (auth, attribution, lookup, ledger spool write,
//! response) with no upstream call.
//!
//! `cargo bench -p tollgate --bench cache`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use tollgate::cache::{key, Entry, MemoryCache};
use tollgate_providers::ApiFormat;
use tower::ServiceExt;

fn body() -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "model": "gpt-4o-mini", "temperature": 0,
        "messages": [
            {"role": "system", "content": "You are a careful assistant. ".repeat(20)},
            {"role": "user", "content": "Summarise the attached paragraph in two sentences. ".repeat(10)}
        ]
    }))
    .unwrap()
}

fn lookups(c: &mut Criterion) {
    let b = body();
    c.bench_function("cache_key (1.5 KB chat body)", |x| {
        x.iter(|| key(black_box("key:k1"), ApiFormat::OpenAiChat, black_box(&b), false))
    });
    let cache = MemoryCache::new(64 * 1024 * 1024, 3_600_000);
    for i in 0..10_000u32 {
        let mut k = [0u8; 32];
        k[..4].copy_from_slice(&i.to_le_bytes());
        cache.put(
            k,
            Entry {
                body: Some(Bytes::from(vec![b'x'; 1500])),
                events: vec![],
                terminator: Bytes::new(),
                usage: Default::default(),
                model: "m".into(),
                provider: "p".into(),
                cost: None,
                created_ms: 0,
            },
        );
    }
    let mut probe = [0u8; 32];
    probe[..4].copy_from_slice(&777u32.to_le_bytes());
    c.bench_function("memory cache get (hit, 10k entries)", |x| x.iter(|| cache.get(black_box(&probe), 1)));
    let miss = [9u8; 32];
    c.bench_function("memory cache get (miss)", |x| x.iter(|| cache.get(black_box(&miss), 1)));
}

fn hit_path(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (router, secret) = rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mock = l.local_addr().unwrap();
        tokio::spawn(tollgate_mock::serve(l, tollgate_mock::MockConfig::default()));
        let text = format!(
            "[[providers]]\nname = \"openai\"\nkind = \"openai\"\nbase_url = \"http://{mock}/v1\"\n[storage]\nurl = \"sqlite://{}\"\n",
            dir.path().join("b.db").display()
        );
        let config =
            tollgate::config::Config::from_toml(&text, "bench", &std::collections::HashMap::<String, String>::new()).unwrap();
        let store = Arc::new(tollgate::store::sqlite::SqliteStore::open(&config.storage.url).unwrap());
        let stores = tollgate::store::Stores::sqlite(store);
        let hasher = tollgate::server::key_hasher(&config, stores.keys.as_ref()).await.unwrap();
        let spec = tollgate::keys::KeySpec { name: "bench".into(), team: Some("t".into()), ..Default::default() };
        let secret =
            tollgate::keys::create(stores.keys.as_ref(), &hasher, spec, tollgate::pipeline::now_ms()).await.unwrap().secret;
        let gw = tollgate::server::Gateway::build(config, stores).await.unwrap();
        let router = gw.router();
        std::mem::forget(gw);
        (router, secret)
    });
    let req = |secret: &str| {
        http::Request::post("/v1/chat/completions")
            .header("authorization", format!("Bearer {secret}"))
            .header("content-type", "application/json")
            .header("x-tollgate-tags", "feature=bench,env=prod,user=u1")
            .body(axum::body::Body::from(body()))
            .unwrap()
    };
    // Prime the cache with one real answer from the mock.
    rt.block_on(async {
        let r = router.clone().oneshot(req(&secret)).await.unwrap();
        let _ = http_body_util::BodyExt::collect(r.into_body()).await.unwrap();
    });
    c.bench_function("gateway hit path (auth + tags + lookup + ledger + response)", |x| {
        x.iter(|| {
            rt.block_on(async {
                let r = router.clone().oneshot(req(&secret)).await.unwrap();
                assert_eq!(r.headers()["x-tollgate-cache"], "hit");
                let _ = http_body_util::BodyExt::collect(r.into_body()).await.unwrap();
            })
        })
    });
}

criterion_group!(benches, lookups, hit_path);
criterion_main!(benches);
