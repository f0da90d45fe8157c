//! Each attack an outside probe ran against the gateway, reproduced against a
//! real gateway on loopback, and now refused. Loops are bounded in count and time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{chat, Harness};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tollgate::config::Secret;

fn addr(h: &Harness) -> String {
    h.base.trim_start_matches("http://").to_string()
}

/// Sends `request` as raw bytes (paths exactly as written: no client-side
/// `..` normalisation) and returns the status and body of the answer.
async fn raw(h: &Harness, request: String) -> (u16, String) {
    let mut s = TcpStream::connect(addr(h)).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

fn get_req(h: &Harness, path: &str, key: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {key}\r\nconnection: close\r\n\r\n", addr(h))
}

fn post_req(h: &Harness, path: &str, key: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        addr(h),
        body.len()
    )
}

fn multipart(lines: &[Value]) -> (String, Vec<u8>) {
    let boundary = "securityboundary7";
    let jsonl: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b.jsonl\"\r\nContent-Type: application/jsonl\r\n\r\n{jsonl}\r\n--{boundary}--\r\n"
    );
    (format!("multipart/form-data; boundary={boundary}"), body.into_bytes())
}

fn batch_lines(model: &str, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({"custom_id": format!("r{i}"), "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": model, "max_tokens": 50, "messages": [{"role": "user", "content": format!("question {i}")}]}})
        })
        .collect()
}

async fn upload(h: &Harness, key: &str, lines: &[Value]) -> String {
    let (ct, body) = multipart(lines);
    let r = h
        .http
        .post(format!("{}/v1/files", h.base))
        .bearer_auth(key)
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string()
}

async fn create_batch(h: &Harness, key: &str, file: &str) -> reqwest::Response {
    h.http
        .post(format!("{}/v1/batches", h.base))
        .bearer_auth(key)
        .json(&json!({"input_file_id": file, "endpoint": "/v1/chat/completions", "completion_window": "24h"}))
        .send()
        .await
        .unwrap()
}

fn budget_extra(scope: &str, usd: &str) -> String {
    format!("[[budgets]]\nid = \"b\"\nscope = {{ {scope} }}\nlimit_usd = \"{usd}\"\nperiod = \"month\"\naction = \"block\"\n")
}

// ---------------------------------------------------------------- finding 1

#[tokio::test]
async fn batch_path_traversal_reaches_neither_the_chat_api_nor_upstream_internals() {
    let h = Harness::start_with(&budget_extra("team = \"growth\"", "0.000001"), |c| c).await;
    // A key allowed no model at all, under a budget of a millionth of a dollar.
    let (key, _) = restricted_key(&h).await;
    let body = chat("gpt-4o", "spend the operator's money", false).to_string();
    let before = h.mock_total().await;
    for path in [
        "/v1/batches/../chat/completions",
        "/v1/batches/%2e%2e/chat/completions",
        "/v1/batches/..%2fchat%2fcompletions",
        "/v1/messages/batches/../../messages",
    ] {
        let (status, text) = raw(&h, post_req(&h, path, &key, &body)).await;
        assert!(status == 404 || status == 400, "{path}: {status} {text}");
        assert!(!text.contains("chat.completion"), "{path} reached the chat API: {text}");
    }
    for path in ["/v1/batches/../../mock/stats", "/v1/files/..%2F..%2Fmock%2Fstats/content"] {
        let (status, text) = raw(&h, get_req(&h, path, &key)).await;
        assert_eq!(status, 404, "{path}: {text}");
        assert!(!text.contains("\"total\""), "{path} reached the upstream's internal page: {text}");
    }
    assert_eq!(h.mock_total().await, before, "nothing reached the provider");
    h.stop().await;
}

async fn restricted_key(h: &Harness) -> (String, String) {
    let hasher = tollgate::auth::KeyHasher::new(&h.stores.keys.key_hash_secret().await.unwrap());
    let spec = tollgate::keys::KeySpec {
        name: "restricted".into(),
        team: Some("growth".into()),
        models: vec!["no-such-model".into()],
        ..Default::default()
    };
    let k = tollgate::keys::create(h.stores.keys.as_ref(), &hasher, spec, tollgate::pipeline::now_ms()).await.unwrap();
    (k.secret, k.record.id)
}

#[tokio::test]
async fn another_teams_batches_and_files_are_invisible() {
    let h = Harness::start().await;
    let other = h.add_key("other team", Some("search")).await;
    let teammate = h.add_key("teammate", Some("growth")).await;
    let file = upload(&h, &h.key, &batch_lines("gpt-4o-mini", 2)).await;
    // Another team may not build a batch on this team's file.
    let r = create_batch(&h, &other, &file).await;
    assert_eq!(r.status(), 404, "{}", r.text().await.unwrap());
    let r = create_batch(&h, &h.key, &file).await;
    assert_eq!(r.status(), 200);
    let batch = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    let get = |key: String, path: String| {
        let (http, base) = (h.http.clone(), h.base.clone());
        async move { http.get(format!("{base}{path}")).bearer_auth(key).send().await.unwrap() }
    };
    let status: Value = get(h.key.clone(), format!("/v1/batches/{batch}")).await.json().await.unwrap();
    let out = status["output_file_id"].as_str().unwrap().to_string();
    for path in
        [format!("/v1/batches/{batch}"), format!("/v1/files/{out}/content"), format!("/v1/files/{file}/content")]
    {
        let r = get(other.clone(), path.clone()).await;
        assert_eq!(r.status(), 404, "{path}");
        let body = r.text().await.unwrap();
        assert!(!body.contains("mock batch reply") && !body.contains("question"), "{path} leaked: {body}");
        // A key of the same team shares the team's batches.
        assert_eq!(get(teammate.clone(), path.clone()).await.status(), 200, "{path}");
    }
    h.stop().await;
}

#[tokio::test]
async fn creating_a_batch_is_governed_like_its_requests() {
    let h = Harness::start_with(&budget_extra("team = \"growth\"", "0.0001"), |c| c).await;
    // Model allow-list: a key limited to another model.
    let (restricted, _) = restricted_key(&h).await;
    let file = upload(&h, &restricted, &batch_lines("gpt-4o-mini", 1)).await;
    let r = create_batch(&h, &restricted, &file).await;
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "model_not_allowed");
    // Budget: 200 lines of an expensive model cannot fit in $0.0001.
    let file = upload(&h, &h.key, &batch_lines("gpt-4o", 200)).await;
    let r = create_batch(&h, &h.key, &file).await;
    assert_eq!(r.status(), 402);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "budget_exceeded");
    h.stop().await;

    // A batch that fits holds its reservation until its results are priced.
    let h = Harness::start_with(&budget_extra("team = \"growth\"", "10"), |c| c).await;
    let file = upload(&h, &h.key, &batch_lines("gpt-4o-mini", 3)).await;
    let r = create_batch(&h, &h.key, &file).await;
    assert_eq!(r.status(), 200);
    let batch = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    let budget = |h: &Harness| {
        let (http, base) = (h.http.clone(), h.base.clone());
        async move {
            let v: Value = http.get(format!("{base}/api/v1/budgets")).send().await.unwrap().json().await.unwrap();
            v["budgets"][0].clone()
        }
    };
    let held = budget(&h).await;
    assert_ne!(held["reserved_usd"], "0.000000000", "the batch's most possible cost is reserved: {held}");
    let status: Value = h
        .http
        .get(format!("{}/v1/batches/{batch}", h.base))
        .bearer_auth(&h.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let out = status["output_file_id"].as_str().unwrap();
    let r = h.http.get(format!("{}/v1/files/{out}/content", h.base)).bearer_auth(&h.key).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let settled = budget(&h).await;
    assert_eq!(settled["reserved_usd"], "0.000000000", "{settled}");
    let priced: i64 =
        h.rows().iter().filter(|r| r.endpoint == "batch.chat.completions").map(|r| r.cost.unwrap().nanos()).sum();
    assert!(priced > 0);
    let spent: tollgate_units::Money = settled["spent_usd"].as_str().unwrap().parse().unwrap();
    assert_eq!(spent.nanos(), priced, "the reservation settled to what the results cost");
    h.stop().await;
}

// ---------------------------------------------------------------- finding 2

#[tokio::test]
async fn a_request_cannot_move_its_key_to_another_team() {
    let extra = budget_extra("team = \"growth\"", "0.000001")
        + "[[access]]\nscope = { team = \"growth\" }\ndeny = [\"gpt-4o\"]\n";
    let h = Harness::start_with(&extra, |c| c).await;
    let over = |model: &str, how: &str| {
        let mut b = h.post("/v1/chat/completions").json(&chat(model, "hello there", false));
        b = match how {
            "header" => b.header("x-tollgate-tags", "team=other"),
            "metadata" => b.header("x-tollgate-metadata", r#"{"team":"other"}"#),
            _ => b.header("helicone-property-team", "other"),
        };
        b.send()
    };
    for how in ["header", "metadata", "helicone"] {
        let r = over("gpt-4o-mini", how).await.unwrap();
        assert_eq!(r.status(), 402, "{how}: the team's budget still applies");
        let r = over("gpt-4o", how).await.unwrap();
        assert_eq!(r.status(), 403, "{how}: the team's access rule still applies");
    }
    assert!(h.rows().iter().all(|r| r.attribution.tag("team") == Some("growth")), "every row charged to growth");
    h.stop().await;
}

// ---------------------------------------------------------------- finding 3

#[tokio::test]
async fn passthrough_never_sends_the_operators_key_for_a_bogus_bearer() {
    let mock = tollgate_mock::MockConfig { require_api_key: Some("sk-operator-key-0001".into()), ..Default::default() };
    let h = Harness::start_with_mock(mock, "[server]\nauth = \"passthrough\"\n", |mut c| {
        for p in &mut c.providers {
            p.api_key = Some(Secret::new("sk-operator-key-0001".into()));
        }
        c
    })
    .await;
    let r = h
        .http
        .post(format!("{}/v1/chat/completions", h.base))
        .bearer_auth("x")
        .json(&chat("gpt-4o-mini", "hi", false))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_ne!(status, 200, "a bogus bearer got a completion on the operator's key: {text}");
    assert!(!text.contains("sk-operator"), "{text}");
    // A virtual key still uses the configured key.
    let r = h.post("/v1/chat/completions").json(&chat("gpt-4o-mini", "hi", false)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    h.stop().await;

    // And the configuration that mixes both is refused unless said explicitly.
    let env: std::collections::HashMap<String, String> =
        [("OPENAI_API_KEY".to_string(), "sk-x-123456".to_string())].into();
    let text = "[server]\nauth = \"passthrough\"\n[[providers]]\nname = \"openai\"\nkind = \"openai\"\napi_key_env = \"OPENAI_API_KEY\"\n";
    let e = tollgate::config::Config::from_toml(text, "t.toml", &env).unwrap_err().to_string();
    assert!(e.contains("allow_key_with_passthrough"), "{e}");
    let ok = format!("{text}allow_key_with_passthrough = true\n");
    assert!(tollgate::config::Config::from_toml(&ok, "t.toml", &env).is_ok());
}

// ---------------------------------------------------------------- finding 4

/// A `tollgate serve` process of its own, so its memory can be measured alone.
struct Served {
    child: std::process::Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Served {
    async fn start(server: &str, env: &[(&str, &str)]) -> Served {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = format!("127.0.0.1:{port}");
        let config = dir.path().join("tollgate.toml");
        std::fs::write(&config, format!("[server]\nlisten = \"{addr}\"\n{server}")).unwrap();
        let db = format!("sqlite://{}", dir.path().join("t.db").display());
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"));
        c.args(["serve", "--config", config.to_str().unwrap(), "--db", &db])
            .env("TOLLGATE_LOG", "error")
            .env_remove("OPENAI_API_KEY")
            .env_remove("ANTHROPIC_API_KEY")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        for (k, v) in env {
            c.env(k, v);
        }
        let child = c.spawn().unwrap();
        let s = Served { child, addr, _dir: dir };
        for _ in 0..200 {
            if reqwest::get(format!("http://{}/healthz", s.addr)).await.is_ok_and(|r| r.status() == 200) {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("tollgate serve did not start");
    }

    fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap()
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn slow_and_idle_connections_are_capped_and_cut_while_others_are_served() {
    let g = Served::start("max_connections = 64\nheader_read_timeout_ms = 1000\nidle_timeout_ms = 1500\n", &[]).await;
    let rss_before = g.rss_kib();
    let started = Instant::now();
    // 500 clients trickling a request head one byte every 100 ms (bounded: 4 s).
    let mut slow = Vec::new();
    for _ in 0..500 {
        let a = g.addr.clone();
        slow.push(tokio::spawn(async move {
            let Ok(mut s) = TcpStream::connect(&a).await else { return Duration::ZERO };
            let t = Instant::now();
            let head = b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: ";
            let mut buf = [0u8; 512];
            for i in 0..40 {
                if s.write_all(&head[i % head.len()..i % head.len() + 1]).await.is_err() {
                    return t.elapsed();
                }
                // The server closing (or answering 503 and closing) ends the trickle.
                if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
                    return t.elapsed();
                }
            }
            Duration::from_secs(999)
        }));
    }
    // 20 idle connections that never send a byte.
    let mut idle = Vec::new();
    for _ in 0..20 {
        let a = g.addr.clone();
        idle.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(&a).await.unwrap();
            let t = Instant::now();
            let mut b = [0u8; 64];
            let _ = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b)).await;
            t.elapsed()
        }));
    }
    // Meanwhile an ordinary client keeps asking: it must be served during the attack.
    let http = reqwest::Client::new();
    let mut served_at = None;
    while started.elapsed() < Duration::from_secs(4) {
        if let Ok(Ok(r)) =
            tokio::time::timeout(Duration::from_secs(1), http.get(format!("http://{}/healthz", g.addr)).send()).await
        {
            if r.status() == 200 {
                served_at = Some(started.elapsed());
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let served_at = served_at.expect("an ordinary client was never served during the attack");
    let peak = g.rss_kib();
    for t in slow {
        let cut = t.await.unwrap();
        assert!(cut < Duration::from_millis(3000), "a trickling connection held on for {cut:?}");
    }
    for t in idle {
        let cut = t.await.unwrap();
        assert!(cut < Duration::from_millis(4000), "an idle connection held on for {cut:?}");
    }
    let grown = peak.max(g.rss_kib()).saturating_sub(rss_before);
    assert!(grown < 32 * 1024, "the gateway grew by {grown} KiB under 520 slow connections");
    eprintln!("served after {served_at:?}; RSS {rss_before} KiB, grew {grown} KiB");
}

#[tokio::test]
async fn unauthenticated_admin_posts_are_refused_before_their_body_is_read() {
    let g = Served::start("", &[("TOLLGATE_ADMIN_TOKEN", "root-token-123")]).await;
    let rss_before = g.rss_kib();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let a = g.addr.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(&a).await.unwrap();
            // Announce 100 MB and send 1 MB of it: an answer proves the rest was never awaited.
            let path = if i % 2 == 0 { "/admin/v1/keys" } else { "/admin/v1/budgets" };
            let head = format!(
                "POST {path} HTTP/1.1\r\nhost: {a}\r\ncontent-type: application/json\r\ncontent-length: 100000000\r\n\r\n"
            );
            s.write_all(head.as_bytes()).await.unwrap();
            let _ = tokio::time::timeout(Duration::from_millis(500), s.write_all(&vec![b' '; 1 << 20])).await;
            let mut buf = vec![0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await.expect("no answer").unwrap_or(0);
            String::from_utf8_lossy(&buf[..n]).to_string()
        }));
    }
    for t in tasks {
        let answer = t.await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
        assert!(answer.contains("invalid_api_key"), "{answer}");
    }
    let grown = g.rss_kib().saturating_sub(rss_before);
    assert!(grown < 32 * 1024, "the gateway grew by {grown} KiB under 200 unauthenticated 100 MB posts");
}

/// An upstream that streams chat chunks without end (bounded: 60 s or 80 MB).
async fn firehose() -> String {
    use axum::routing::post;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        post(|| async {
            let text = "x".repeat(4000);
            let chunk = format!(
                "data: {}\n\n",
                json!({"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini",
                    "choices":[{"index":0,"delta":{"content": text},"finish_reason":null}]})
            );
            let started = Instant::now();
            let s = futures_util::stream::unfold(0usize, move |n| {
                let chunk = chunk.clone();
                async move {
                    if n > 20_000 || started.elapsed() > Duration::from_secs(60) {
                        return None;
                    }
                    Some((Ok::<_, std::convert::Infallible>(chunk), n + 1))
                }
            });
            ([("content-type", "text/event-stream")], axum::body::Body::from_stream(s))
        }),
    );
    tokio::spawn(async move { axum::serve(l, app).await });
    format!("http://{a}/v1")
}

#[tokio::test]
async fn a_client_that_stops_reading_a_stream_is_cut_and_its_reservation_settled() {
    let upstream = firehose().await;
    let extra = budget_extra("team = \"growth\"", "100") + "[server]\nwrite_timeout_ms = 1000\n";
    let h = Harness::start_with(&extra, move |mut c| {
        c.providers[0].base_url = upstream;
        c
    })
    .await;
    let mut s = TcpStream::connect(addr(&h)).await.unwrap();
    let body = chat("gpt-4o-mini", "tell me everything", true).to_string();
    s.write_all(post_req(&h, "/v1/chat/completions", &h.key, &body).replace("connection: close\r\n", "").as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 16 * 1024];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Stop reading, keep the socket open: the reservation must not be held for as long as it stays.
    let started = Instant::now();
    let row = loop {
        assert!(started.elapsed() < Duration::from_secs(20), "the stalled stream was never cut");
        if let Some(r) = h.rows().into_iter().find(|r| r.streamed) {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(row.error_code.as_deref(), Some("client_stalled"));
    assert!(row.client_disconnected);
    assert!(row.usage.output_tokens() > 0, "what was delivered is counted");
    let v: Value = h.http.get(format!("{}/api/v1/budgets", h.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["budgets"][0]["reserved_usd"], "0.000000000", "{v}");
    assert_ne!(v["budgets"][0]["spent_usd"], "0.000000000", "settled to what was delivered: {v}");
    drop(s);
    h.stop().await;
}

#[tokio::test]
async fn requests_over_the_in_flight_cap_are_shed_and_shutdown_has_a_deadline() {
    let extra = "[server]\nmax_in_flight = 2\nshutdown_timeout_ms = 500\n";
    let h = Harness::start_with(extra, |c| c).await;
    let slow = |i: usize| {
        h.post("/v1/chat/completions")
            .json(&chat("gpt-4o-mini", &format!("[mock latency_ms=20000] slow {i}"), false))
            .send()
    };
    let ready = |h: &Harness| h.http.get(format!("{}/readyz", h.base)).send();
    assert_eq!(ready(&h).await.unwrap().status(), 200);
    let (a, b) = (tokio::spawn(slow(1)), tokio::spawn(slow(2)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = ready(&h).await.unwrap();
    assert_eq!(r.status(), 503, "saturated: a load balancer should send traffic elsewhere");
    assert!(r.text().await.unwrap().contains("2 of 2 requests in flight"));
    let r = slow(3).await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "overloaded");
    assert_eq!(h.http.get(format!("{}/healthz", h.base)).send().await.unwrap().status(), 200, "health is exempt");
    // Shut down with two requests 20 s from done: they are cut at the deadline and ledgered.
    let store = h.store.clone();
    let started = Instant::now();
    h.stop().await;
    assert!(started.elapsed() < Duration::from_secs(8), "shutdown waited {:?}", started.elapsed());
    let _ = (a.await, b.await);
    let rows =
        store.requests(&tollgate::store::RequestQuery { filters: vec![], limit: 100, cursor: None }).unwrap().rows;
    assert_eq!(rows.iter().filter(|r| r.error_code.as_deref() == Some("shutdown")).count(), 2, "{rows:?}");
}

// ---------------------------------------------------------------- finding 5

#[tokio::test]
async fn a_team_admin_cannot_reach_another_teams_budgets_or_requests() {
    let extra = budget_extra("team = \"growth\"", "50");
    let h = Harness::start_with(&extra, |mut c| {
        c.server.admin_token = Some(Secret::new("root-token-123".into()));
        c.admin_tokens.push(tollgate::config::AdminToken {
            name: "growth-admin".into(),
            token: Secret::new("growth-admin-token".into()),
            role: tollgate::config::Role::TeamAdmin("growth".into()),
        });
        c
    })
    .await;
    let admin = |token: &'static str, m: reqwest::Method, path: String| {
        h.http.request(m, format!("{}{path}", h.base)).bearer_auth(token)
    };
    let r = admin("root-token-123", reqwest::Method::POST, "/admin/v1/budgets".into())
        .json(&json!({"id": "search-monthly", "scope": "team=search", "limit_usd": "100", "period": "month"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Overwrite another team's budget by reusing its id, with its own team in scope.
    let r = admin("growth-admin-token", reqwest::Method::POST, "/admin/v1/budgets".into())
        .json(&json!({"id": "search-monthly", "scope": "team=growth", "limit_usd": "0.01", "period": "month"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // Delete (or overwrite) a budget that comes from the config file, even as its own team or as root.
    for token in ["growth-admin-token", "root-token-123"] {
        let r = admin(token, reqwest::Method::DELETE, "/admin/v1/budgets/b".into()).send().await.unwrap();
        assert_eq!(r.status(), 403, "{token}");
        let r = admin(token, reqwest::Method::POST, "/admin/v1/budgets".into())
            .json(&json!({"id": "b", "scope": "team=growth", "limit_usd": "1000", "period": "month"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{token}");
    }
    let v: Value = admin("root-token-123", reqwest::Method::GET, "/api/v1/budgets".into())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let limits: Vec<(String, String)> = v["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["id"].as_str().unwrap().to_string(), b["limit_usd"].as_str().unwrap().to_string()))
        .collect();
    assert!(limits.contains(&("b".into(), "50.000000000".into())), "{limits:?}");
    assert!(limits.contains(&("search-monthly".into(), "100.000000000".into())), "{limits:?}");
    // Read another team's request through the dashboard's detail route.
    let search = h.add_key("search", Some("search")).await;
    let r = h
        .http
        .post(format!("{}/v1/chat/completions", h.base))
        .bearer_auth(&search)
        .json(&chat("gpt-4o-mini", "search team secret question", false))
        .send()
        .await
        .unwrap();
    let theirs = r.headers()["x-tollgate-request-id"].to_str().unwrap().to_string();
    let r = h.post("/v1/chat/completions").json(&chat("gpt-4o-mini", "mine", false)).send().await.unwrap();
    let mine = r.headers()["x-tollgate-request-id"].to_str().unwrap().to_string();
    h.wait_rows(2).await;
    let detail =
        |id: &str, token: &'static str| admin(token, reqwest::Method::GET, format!("/ui/api/requests/{id}")).send();
    assert_eq!(detail(&theirs, "growth-admin-token").await.unwrap().status(), 404);
    assert_eq!(detail(&mine, "growth-admin-token").await.unwrap().status(), 200);
    assert_eq!(detail(&theirs, "root-token-123").await.unwrap().status(), 200);
    h.stop().await;
}

// ---------------------------------------------------------------- finding 6

/// An upstream that answers 400 with every request header it received in its message.
async fn echo_upstream() -> String {
    use axum::http::HeaderMap;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    let echo = |headers: HeaderMap| async move {
        let dump: Vec<String> = headers.iter().map(|(k, v)| format!("{k}: {}", v.to_str().unwrap_or(""))).collect();
        let message = format!("bad request; you sent {}; see http://10.1.2.3:9000/internal/debug", dump.join(", "));
        (
            axum::http::StatusCode::BAD_REQUEST,
            axum::Json(
                json!({"type": "error", "error": {"type": "invalid_request_error", "message": message, "code": 400}}),
            ),
        )
    };
    let app = axum::Router::new().fallback(echo);
    tokio::spawn(async move { axum::serve(l, app).await });
    format!("http://{a}")
}

#[tokio::test]
async fn upstream_error_text_never_carries_the_provider_key_or_internal_urls() {
    let upstream = echo_upstream().await;
    let h = Harness::start_with("", move |mut c| {
        for (i, p) in c.providers.iter_mut().enumerate() {
            p.base_url = if i == 0 { format!("{upstream}/v1") } else { upstream.clone() };
            p.api_key = Some(Secret::new(format!("sk-provider-secret-{i}-abcdef")));
        }
        c
    })
    .await;
    for (path, model) in [
        ("/v1/chat/completions", "gpt-4o-mini"),
        ("/v1/messages", "claude-haiku-4-5"),
        ("/v1/chat/completions", "gemini-2.0-flash"),
    ] {
        let mut body = chat(model, "hi", false);
        body["max_tokens"] = json!(10);
        let r = h.post(path).header("anthropic-version", "2023-06-01").json(&body).send().await.unwrap();
        assert!(r.status().is_client_error() || r.status().is_server_error());
        let text = r.text().await.unwrap();
        assert!(text.contains("bad request"), "the useful part stays: {text}");
        assert!(!text.contains("sk-provider-secret"), "{path} {model}: {text}");
        assert!(!text.contains("10.1.2.3"), "{path} {model}: {text}");
        assert!(!text.to_ascii_lowercase().contains("bearer sk"), "{text}");
    }
    h.stop().await;
}

// ---------------------------------------------------------------- finding 7

#[tokio::test]
async fn model_names_cannot_inject_into_provider_urls_or_the_ledger() {
    let h = Harness::start().await;
    let before = h.mock_total().await;
    for model in [
        "gemini/../../../admin/secret?x=",
        "gemini-2.0-flash/../../x",
        "gpt-4o\u{0}mini",
        "gpt\u{1b}[31m",
        "x\"; DROP TABLE ledger; --",
        "http://evil.example/v1",
    ] {
        let r = h.post("/v1/chat/completions").json(&chat(model, "hi", false)).send().await.unwrap();
        assert_eq!(r.status(), 400, "{model:?}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["param"], "model");
    }
    assert_eq!(h.mock_total().await, before, "no name reached a provider");
    let rows = h.wait_rows(6).await;
    assert!(rows.iter().all(|r| r.requested_model.is_none()), "refused names are not stored");
    h.stop().await;
}

// ---------------------------------------------------------------- finding 8

#[tokio::test]
async fn without_an_admin_token_only_same_origin_loopback_calls_pass() {
    let h = Harness::start().await;
    let a = addr(&h);
    let create = |extra_headers: &str, host: &str| {
        let body = r#"{"name":"csrf"}"#;
        format!(
            "POST /admin/v1/keys HTTP/1.1\r\nhost: {host}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n{extra_headers}\r\n{body}",
            body.len()
        )
    };
    // A cross-site form post from a page the operator visits.
    let (s, body) = raw(&h, create("origin: http://evil.example\r\nsec-fetch-site: cross-site\r\n", &a)).await;
    assert_eq!(s, 403, "{body}");
    assert!(!body.contains("tg_"), "{body}");
    // DNS rebinding: the page's own origin, but a foreign Host name.
    let (s, body) = raw(&h, create("origin: http://rebind.example:8080\r\n", "rebind.example:8080")).await;
    assert_eq!(s, 403, "{body}");
    // The CLI or curl on the machine itself still works.
    let (s, body) = raw(&h, create("", &a)).await;
    assert_eq!(s, 201, "{body}");
    h.stop().await;
}

#[tokio::test]
async fn metrics_need_their_token_when_one_is_configured() {
    let h = Harness::start_with("", |mut c| {
        c.server.metrics_token = Some(Secret::new("metrics-token-1".into()));
        c
    })
    .await;
    let url = format!("{}/metrics", h.base);
    assert_eq!(h.http.get(&url).send().await.unwrap().status(), 401);
    let r = h.http.get(&url).bearer_auth("metrics-token-1").send().await.unwrap();
    assert_eq!(r.status(), 200);
    h.stop().await;
}

#[tokio::test]
async fn report_csv_cells_cannot_run_as_formulas_and_tables_print_no_escapes() {
    let h = Harness::start().await;
    let shared = h.add_key("shared", None).await;
    let r = h
        .http
        .post(format!("{}/v1/chat/completions", h.base))
        .bearer_auth(&shared)
        .header("x-tollgate-metadata", r#"{"feature":"=HYPERLINK(\"http://evil\",\"x\")","env":"-2+3"}"#)
        .json(&chat("gpt-4o-mini", "hi", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    h.wait_rows(1).await;
    let db = h._dir.path().join("t.db");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["--db", db.to_str().unwrap(), "report", "--by", "feature,env", "--since", "1d", "--format", "csv"])
        .env("TOLLGATE_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let csv = String::from_utf8(out.stdout).unwrap();
    for line in csv.lines().skip(1) {
        for cell in line.split(',') {
            let c = cell.trim_start_matches('"');
            assert!(!c.starts_with(['=', '+', '-', '@']), "formula cell {cell:?} in {csv}");
        }
    }
    assert!(csv.contains("'=HYPERLINK") && csv.contains("'-2+3"), "{csv}");
    h.stop().await;
}

#[cfg(unix)]
#[tokio::test]
async fn the_database_wal_and_spool_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let h = Harness::start().await;
    let r = h.post("/v1/chat/completions").json(&chat("gpt-4o-mini", "hi", false)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    h.wait_rows(1).await;
    let dir = h._dir.path().to_path_buf();
    let mut checked = 0;
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let mode = e.metadata().unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{} is mode {:o}", e.path().display(), mode & 0o777);
            checked += 1;
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
        }
    }
    assert!(checked >= 3, "database, WAL and spool checked ({checked})");
    // The stored key prefix gives away at most 2 of the 40 secret characters.
    let keys = h.stores.keys.list_keys().await.unwrap();
    assert!(keys.iter().all(|k| k.prefix.len() <= 5), "{:?}", keys.iter().map(|k| &k.prefix).collect::<Vec<_>>());
    h.stop().await;
}

#[tokio::test]
async fn only_the_listed_public_routes_answer_without_a_credential() {
    let h = Harness::start_with("", |mut c| {
        c.server.admin_token = Some(Secret::new("root-token-123".into()));
        c
    })
    .await;
    let concrete = |r: &str| r.replace("{*path}", "style.css");
    for route in tollgate::server::PUBLIC_ROUTES {
        let r = h.http.get(format!("{}{}", h.base, concrete(route))).send().await.unwrap();
        assert_eq!(r.status(), 200, "{route} is public");
    }
    let admin = [
        ("GET", "/api/v1/requests"),
        ("GET", "/api/v1/spend"),
        ("GET", "/api/v1/budgets"),
        ("GET", "/api/v1/prompt-cache"),
        ("GET", "/api/v1/anomalies"),
        ("GET", "/api/v1/outcomes"),
        ("POST", "/api/v1/outcomes"),
        ("GET", "/api/v1/outcomes/cost"),
        ("GET", "/admin/v1/keys"),
        ("POST", "/admin/v1/keys"),
        ("POST", "/admin/v1/keys/key_x/revoke"),
        ("POST", "/admin/v1/keys/key_x/rotate"),
        ("GET", "/admin/v1/sessions"),
        ("POST", "/admin/v1/sessions/abc/revoke"),
        ("GET", "/api/v1/alerts"),
        ("GET", "/admin/v1/budgets"),
        ("POST", "/admin/v1/budgets"),
        ("DELETE", "/admin/v1/budgets/b"),
        ("GET", "/ui/api/requests/r1"),
    ];
    for (m, path) in admin {
        let r = h.http.request(m.parse().unwrap(), format!("{}{path}", h.base)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{m} {path} needs a credential");
    }
    for path in ["/v1/chat/completions", "/v1/embeddings", "/v1/responses", "/v1/messages", "/v1/batches"] {
        let r = h.http.post(format!("{}{path}", h.base)).body("{}").send().await.unwrap();
        assert_eq!(r.status(), 401, "POST {path} needs a virtual key");
    }
    h.stop().await;
}
