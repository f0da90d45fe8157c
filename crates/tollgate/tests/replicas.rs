//! Several replicas, one truth: three `tollgate serve` processes sharing one
//! PostgreSQL database and one Redis, behind round-robin. Budgets and rate
//! limits hold across them exactly, every replica reports the same spend to
//! the nano-dollar, and a replica killed mid-flight loses nothing.
//!
//! Needs `TOLLGATE_TEST_POSTGRES_URL` and `TOLLGATE_TEST_REDIS_URL` (set by
//! `.ci/run`); without them each test says SKIPPED and returns, except in CI.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/services.rs"]
mod services;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tollgate_units::Money;

const ADMIN: &str = "replica-test-admin-token";

/// One shared deployment: the mock provider, the database, the Redis prefix,
/// and a config file per replica (each with its own spool).
struct Cluster {
    /// What replicas connect to (through a relay when the test cuts it).
    db_url: String,
    redis_url: String,
    dir: tempfile::TempDir,
    mock: SocketAddr,
    db: services::PgDatabase,
    prefix: String,
    redis: String,
    extra: String,
    http: reqwest::Client,
}

struct Replica {
    child: Child,
    base: String,
}

impl Cluster {
    async fn start(extra: &str) -> Option<Cluster> {
        let (redis, prefix) = services::redis_url_and_prefix()?;
        let db = services::PgDatabase::create().await?;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mock = l.local_addr().unwrap();
        tokio::spawn(tollgate_mock::serve(l, tollgate_mock::MockConfig::default()));
        Some(Cluster {
            db_url: db.url.clone(),
            redis_url: redis.clone(),
            dir: tempfile::tempdir().unwrap(),
            mock,
            db,
            prefix,
            redis,
            extra: extra.to_string(),
            http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap(),
        })
    }

    /// Replica `n`'s config file (written once).
    fn config(&self, n: usize) -> PathBuf {
        let path = self.dir.path().join(format!("replica-{n}.toml"));
        if !path.exists() {
            let spool = self.dir.path().join(format!("spool-{n}"));
            let text = format!(
                r#"
[server]
listen = "127.0.0.1:0"

[storage]
url = "{db}"
counters_url = "{redis}"
counters_prefix = "{prefix}"

[ledger]
spool_dir = "{spool}"

[[providers]]
name = "openai"
kind = "openai"
base_url = "http://{mock}/v1"
max_retries = 0
timeout_ms = 60000

{extra}
"#,
                db = self.db_url,
                redis = self.redis_url,
                prefix = self.prefix,
                spool = spool.display(),
                mock = self.mock,
                extra = self.extra,
            );
            std::fs::write(&path, text).unwrap();
        }
        path
    }

    fn spool(&self, n: usize) -> PathBuf {
        self.dir.path().join(format!("spool-{n}"))
    }

    /// `tollgate --config <replica 0> ARGS` to completion; its stdout.
    async fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .arg("--config")
            .arg(self.config(0))
            .args(args)
            .env("TOLLGATE_ADMIN_TOKEN", ADMIN)
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "tollgate {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// A key created in the shared database; its secret.
    async fn key(&self, args: &[&str]) -> String {
        let mut all = vec!["keys", "create", "--json"];
        all.extend_from_slice(args);
        let v: Value = serde_json::from_str(&self.cli(&all).await).unwrap();
        v["key"].as_str().unwrap().to_string()
    }

    async fn replica(&self, n: usize) -> Replica {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .arg("--config")
            .arg(self.config(n))
            .arg("serve")
            .env("TOLLGATE_ADMIN_TOKEN", ADMIN)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let base = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(addr) = line.strip_prefix("tollgate listening on ") {
                    return addr.trim().to_string();
                }
                eprintln!("replica {n}: {line}");
            }
            panic!("replica {n} exited before listening");
        })
        .await
        .expect("replica started");
        // Keep reading its log so the pipe never fills.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("replica {n}: {line}");
            }
        });
        Replica { child, base }
    }

    async fn admin(&self, r: &Replica, path: &str) -> Value {
        let resp = self.http.get(format!("{}{path}", r.base)).bearer_auth(ADMIN).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        resp.json().await.unwrap()
    }

    async fn mock_chats(&self) -> u64 {
        let v: Value =
            self.http.get(format!("http://{}/mock/stats", self.mock)).send().await.unwrap().json().await.unwrap();
        v["paths"]["/v1/chat/completions"].as_u64().unwrap_or(0)
    }

    /// Waits until every replica's spend report counts `n` requests.
    async fn until_ledgered(&self, replicas: &[&Replica], n: u64) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let mut reports = Vec::new();
            for r in replicas {
                reports.push(self.admin(r, "/api/v1/spend?group_by=team").await);
            }
            if reports.iter().all(|v| v["total_requests"].as_u64() == Some(n)) {
                return reports;
            }
            assert!(tokio::time::Instant::now() < deadline, "ledger never reached {n} rows: {reports:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn body() -> Value {
    json!({
        "model": "gpt-4o-mini",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "the same question asked by every request"}],
    })
}

/// Fires `n` concurrent requests round-robin over the replicas: each one's status.
async fn fire(http: &reqwest::Client, replicas: &[&Replica], key: &str, n: usize) -> Vec<u16> {
    let mut tasks = Vec::new();
    for i in 0..n {
        let req = http
            .post(format!("{}/v1/chat/completions", replicas[i % replicas.len()].base))
            .bearer_auth(key)
            .json(&body());
        tasks.push(tokio::spawn(async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let _ = r.bytes().await;
            status
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

fn usd(v: &Value) -> Money {
    v.as_str().unwrap().parse().unwrap()
}

/// 300 concurrent requests over three replicas against one small blocking
/// budget: the provider's bill stays within it, no refused request reaches
/// the provider, and every replica's spend equals the bill to the nano-dollar.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_never_overspend_one_budget() {
    let (hook, alerts) = services::webhook().await;
    let budget = format!(
        "[[budgets]]\nid = \"shared\"\nscope = {{ team = \"growth\" }}\nlimit_usd = \"0.002\"\nperiod = \"day\"\naction = \"block\"\nalert_at = [0.1, 0.25]\n\n[[alerts]]\nurl = \"{hook}\"\n"
    );
    let Some(c) = Cluster::start(&budget).await else { return };
    let key = c.key(&["--name", "replicas", "--team", "growth"]).await;
    let replicas = [c.replica(0).await, c.replica(1).await, c.replica(2).await];
    let rs: Vec<&Replica> = replicas.iter().collect();

    let statuses = fire(&c.http, &rs, &key, 300).await;
    let served = statuses.iter().filter(|s| **s == 200).count() as u64;
    let refused = statuses.iter().filter(|s| **s == 402).count() as u64;
    assert_eq!(served + refused, 300, "only 200 and 402: {statuses:?}");
    assert!(served > 0 && refused > 0, "the budget covers only some: {served} served, {refused} refused");
    assert_eq!(c.mock_chats().await, served, "no request refused with 402 reached the provider");

    let reports = c.until_ledgered(&rs, 300).await;
    // Every request was the same: the bill is calls at the mock × one call's cost.
    let page = c.admin(&replicas[0], "/api/v1/requests?limit=1000").await;
    let rows = page["rows"].as_array().unwrap().clone();
    let costs: std::collections::BTreeSet<String> =
        rows.iter().filter(|r| r["status"] == 200).map(|r| r["cost_usd"].as_str().unwrap().to_string()).collect();
    assert_eq!(costs.len(), 1, "identical requests cost the same: {costs:?}");
    let one: Money = costs.iter().next().unwrap().parse().unwrap();
    let bill = Money::from_nanos(one.nanos() * served as i64);
    let limit: Money = "0.002".parse().unwrap();
    eprintln!("three replicas: {served} served, {refused} refused, bill ${bill} of ${limit}");
    assert!(bill <= limit, "overspent: ${bill} > ${limit}");
    for (i, report) in reports.iter().enumerate() {
        assert_eq!(usd(&report["total_cost_usd"]), bill, "replica {i}'s spend equals the bill");
        let b = c.admin(&replicas[i], "/api/v1/budgets").await;
        let shared = b["budgets"].as_array().unwrap().iter().find(|b| b["id"] == "shared").unwrap().clone();
        assert_eq!(usd(&shared["spent_usd"]), bill, "replica {i}'s budget counter equals the ledger");
        assert_eq!(usd(&shared["reserved_usd"]), Money::ZERO, "replica {i}: nothing left reserved");
    }
    // Both thresholds were crossed: each alerted once, not once per replica.
    assert!(bill.nanos() * 4 >= limit.nanos(), "the test needs the 25 % threshold crossed: ${bill}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got: Vec<String> =
        alerts.lock().unwrap().iter().map(|a| a["threshold"].as_str().unwrap().to_string()).collect();
    assert_eq!(got.iter().filter(|t| *t == "0.100").count(), 1, "{got:?}");
    assert_eq!(got.iter().filter(|t| *t == "0.250").count(), 1, "{got:?}");
}

/// A key limited to 30 requests a minute, asked 90 times over three replicas
/// within a few seconds: at most 30 (plus what refills meanwhile) are admitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_holds_across_replicas() {
    let Some(c) = Cluster::start("").await else { return };
    let key = c.key(&["--name", "rpm", "--team", "ops", "--rpm", "30"]).await;
    let replicas = [c.replica(0).await, c.replica(1).await, c.replica(2).await];
    let rs: Vec<&Replica> = replicas.iter().collect();
    let started = std::time::Instant::now();
    let statuses = fire(&c.http, &rs, &key, 90).await;
    let elapsed = started.elapsed();
    let admitted = statuses.iter().filter(|s| **s == 200).count() as u64;
    let limited = statuses.iter().filter(|s| **s == 429).count() as u64;
    assert_eq!(admitted + limited, 90, "{statuses:?}");
    // A token bucket of 30 a minute refills one every 2 s.
    let refill = elapsed.as_millis() as u64 / 2_000;
    eprintln!("rate limit across replicas: {admitted} admitted, {limited} limited in {elapsed:?}");
    assert!(admitted <= 30 + refill, "{admitted} admitted > 30 + {refill}");
    assert!(admitted >= 30, "the limit admits its 30: {admitted}");
    assert_eq!(c.mock_chats().await, admitted);
}

/// Revoking a key through one replica, and changing a budget through the CLI,
/// reach the other replicas within 5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_and_budget_changes_reach_every_replica() {
    let Some(c) = Cluster::start("").await else { return };
    let out = c.cli(&["keys", "create", "--json", "--name", "leaked", "--team", "growth"]).await;
    let created: Value = serde_json::from_str(&out).unwrap();
    let (secret, id) = (created["key"].as_str().unwrap(), created["id"].as_str().unwrap());
    let (a, b) = (c.replica(0).await, c.replica(1).await);
    let call = |r: &Replica| c.http.post(format!("{}/v1/chat/completions", r.base)).bearer_auth(secret).json(&body());
    assert_eq!(call(&b).send().await.unwrap().status(), 200, "b knows the key (and caches it)");
    let revoked = c.http.post(format!("{}/admin/v1/keys/{id}/revoke", a.base)).bearer_auth(ADMIN).send().await.unwrap();
    assert!(revoked.status().is_success(), "{}", revoked.status());
    c.cli(&["budgets", "set", "--id", "late", "--scope", "team=growth", "--limit", "1", "--period", "day"]).await;
    let at = std::time::Instant::now();
    let reached = loop {
        let s = call(&b).send().await.unwrap().status();
        if s == 401 {
            break at.elapsed();
        }
        assert!(at.elapsed() < Duration::from_secs(8), "revocation never reached replica b (last status {s})");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    eprintln!("revocation reached the other replica in {reached:?}");
    assert!(reached <= Duration::from_secs(5), "took {reached:?}");
    let v = c.admin(&b, "/api/v1/budgets").await;
    assert!(v["budgets"].as_array().unwrap().iter().any(|x| x["id"] == "late"), "b sees the new budget: {v}");
}

/// A replica killed with requests in flight: the reservations it held are
/// released by their lease for the others, and its spool, replayed when it
/// restarts, reaches PostgreSQL with no row twice. The requests that were at
/// the provider come back as `interrupted` rows, booked into the shared
/// (already seeded) Redis budget counter: the budget equals the ledger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_flight_releases_by_lease_and_replays_its_spool() {
    let extra = "[governance]\nlease_ms = 4000\n\n[[budgets]]\nid = \"team\"\nscope = { team = \"growth\" }\nlimit_usd = \"5\"\nperiod = \"day\"\naction = \"block\"\n";
    let Some(c) = Cluster::start(extra).await else { return };
    let key = c.key(&["--name", "kill", "--team", "growth"]).await;
    let witness = c.replica(0).await;
    let mut victim = c.replica(1).await;
    let statuses = fire(&c.http, &[&victim], &key, 60).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    // Requests held at the provider for 20 s, each holding a reservation.
    for _ in 0..5 {
        let req = c.http.post(format!("{}/v1/chat/completions", victim.base)).bearer_auth(&key).json(&json!({
            "model": "gpt-4o-mini",
            "max_tokens": 16,
            "messages": [{"role": "user", "content": "slow [mock latency_ms=20000]"}],
        }));
        tokio::spawn(async move {
            let _ = req.send().await;
        });
    }
    let reserved = || async {
        let v = c.admin(&witness, "/api/v1/budgets").await;
        let b = v["budgets"].as_array().unwrap().iter().find(|b| b["id"] == "team").unwrap().clone();
        usd(&b["reserved_usd"])
    };
    // All five at the provider (so each has its intent in the spool) and reserved.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while c.mock_chats().await < 65 || reserved().await == Money::ZERO {
        assert!(std::time::Instant::now() < deadline, "the in-flight requests never reached the provider");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    victim.child.start_kill().unwrap();
    victim.child.wait().await.unwrap();
    let killed = std::time::Instant::now();
    while reserved().await != Money::ZERO {
        assert!(killed.elapsed() < Duration::from_secs(10), "the dead replica's reservations were never released");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let released = killed.elapsed();
    eprintln!("a killed replica's reservations released {released:?} after the kill (lease 4 s, sweep every 1 s)");
    assert!(released >= Duration::from_millis(2_500), "released before the lease could end: {released:?}");
    assert!(released <= Duration::from_millis(6_000), "{released:?}");

    let left = spooled_rows(&c.spool(1));
    eprintln!("rows still in the killed replica's spool: {left}");
    let restarted = c.replica(1).await;
    let reports = c.until_ledgered(&[&restarted, &witness], 65).await;
    assert_eq!(reports[1]["total_requests"], 65, "every acknowledged row once, and the 5 cut at the provider");
    assert_eq!(c.mock_chats().await, 65, "one row per upstream call");
    let (client, conn) = tokio_postgres::connect(&c.db.url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let row = client.query_one("SELECT COUNT(*), COUNT(DISTINCT request_id) FROM ledger", &[]).await.unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (65, 65));
    let cut = client
        .query_one(
            "SELECT COUNT(*), CAST(SUM(cost_nanos) AS BIGINT) FROM ledger \
             WHERE error_code = 'interrupted' AND usage_source = 'estimated' AND status = 500",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(cut.get::<_, i64>(0), 5, "the requests held at the provider are interrupted rows");
    let hourly: i64 =
        client.query_one("SELECT CAST(SUM(requests) AS BIGINT) FROM ledger_hourly", &[]).await.unwrap().get(0);
    assert_eq!(hourly, 65, "the rollup counts each row once too");
    let total: i64 = client.query_one("SELECT CAST(SUM(cost_nanos) AS BIGINT) FROM ledger", &[]).await.unwrap().get(0);
    let v = c.admin(&witness, "/api/v1/budgets").await;
    let b = v["budgets"].as_array().unwrap().iter().find(|b| b["id"] == "team").unwrap().clone();
    eprintln!("interrupted rows: {} costing {} nanos; budget spent {}", 5, cut.get::<_, i64>(1), b["spent_usd"]);
    assert_eq!(usd(&b["spent_usd"]), Money::from_nanos(total), "the shared counter books the interrupted rows once");
}

/// Rows in a spool directory not yet loaded (lines of its segments).
fn spooled_rows(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().filter_map(|e| std::fs::read_to_string(e.path()).ok()).map(|t| t.lines().count()).sum())
        .unwrap_or(0)
}

/// Redis and PostgreSQL cut and restored under load (through relays, so the
/// machine's services stay up for other tests): Redis out → governed requests
/// refused with 503 `governance_unavailable` and nothing sent; Redis back
/// without its data → budget counters seeded again from the ledger;
/// PostgreSQL out → known keys keep working, rows wait in the spool and load
/// when it returns. Every request leaves its row; no overspend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outages_of_redis_and_postgres_lose_nothing_and_never_spend_unchecked() {
    let budget = "[[budgets]]\nid = \"team\"\nscope = { team = \"growth\" }\nlimit_usd = \"1\"\nperiod = \"day\"\naction = \"block\"\n";
    let Some(mut c) = Cluster::start(budget).await else { return };
    let redis_relay = services::Relay::start(services::url_addr(&c.redis)).await;
    let pg_relay = services::Relay::start(services::url_addr(&c.db.url)).await;
    c.redis_url = services::url_via(&c.redis, redis_relay.addr);
    c.db_url = services::url_via(&c.db.url, pg_relay.addr);
    let key = c.key(&["--name", "outage", "--team", "growth"]).await;
    eprintln!("outage test: key created");
    let r = c.replica(0).await;
    eprintln!("outage test: replica up");
    let ready = || async { c.http.get(format!("{}/readyz", r.base)).send().await.unwrap() };
    let mut answered = 0u64;
    let one_replica = [&r];
    let send = |n: usize| fire(&c.http, &one_replica, &key, n);

    let s = send(20).await;
    answered += s.len() as u64;
    assert!(s.iter().all(|s| *s == 200), "{s:?}");
    assert_eq!(ready().await.status(), 200);

    eprintln!("outage test: Redis unreachable");
    // Redis unreachable: fail closed, nothing reaches the provider.
    redis_relay.cut();
    let before = c.mock_chats().await;
    let s = send(10).await;
    answered += s.len() as u64;
    assert!(s.iter().all(|s| *s == 503), "{s:?}");
    let one =
        c.http.post(format!("{}/v1/chat/completions", r.base)).bearer_auth(&key).json(&body()).send().await.unwrap();
    answered += 1;
    assert_eq!(one.status(), 503);
    assert_eq!(one.headers()["retry-after"], "1");
    let v: Value = one.json().await.unwrap();
    assert_eq!(v["error"]["code"], "governance_unavailable");
    assert_eq!(c.mock_chats().await, before, "no request went out unchecked");
    let not_ready = ready().await;
    assert_eq!(not_ready.status(), 503);
    assert!(not_ready.text().await.unwrap().contains("counters unreachable"));

    eprintln!("outage test: Redis back, but empty");
    // Redis back, but empty (restarted without persistence): counters are seeded from the ledger.
    c.until_ledgered(&[&r], answered).await;
    let spent_before = usd(&c.admin(&r, "/api/v1/spend").await["total_cost_usd"]);
    flush_prefix(&c.redis, &c.prefix).await;
    redis_relay.restore();
    let s = send(10).await;
    answered += s.len() as u64;
    assert!(s.iter().all(|s| *s == 200), "{s:?}");
    c.until_ledgered(&[&r], answered).await;
    let spent = usd(&c.admin(&r, "/api/v1/spend").await["total_cost_usd"]);
    let budgets = c.admin(&r, "/api/v1/budgets").await;
    let team = budgets["budgets"].as_array().unwrap().iter().find(|b| b["id"] == "team").unwrap().clone();
    assert!(spent > spent_before);
    assert_eq!(usd(&team["spent_usd"]), spent, "the reseeded counter holds everything spent, before the loss too");

    eprintln!("outage test: PostgreSQL unreachable");
    // PostgreSQL unreachable: the known key keeps working, rows wait in the spool.
    pg_relay.cut();
    let s = send(15).await;
    answered += s.len() as u64;
    assert!(s.iter().all(|s| *s == 200), "{s:?}");
    let degraded = ready().await;
    assert_eq!(degraded.status(), 200);
    assert!(degraded.text().await.unwrap().contains("degraded: database unreachable"));
    tokio::time::sleep(Duration::from_secs(5)).await; // past the key cache: served as last read
    let s = send(5).await;
    answered += s.len() as u64;
    assert!(s.iter().all(|s| *s == 200), "{s:?}");
    pg_relay.restore();
    let reports = c.until_ledgered(&[&r], answered).await;
    assert_eq!(reports[0]["total_requests"], answered, "every request answered has its row");
    assert!(usd(&reports[0]["total_cost_usd"]) <= "1".parse().unwrap());
}

/// Deletes a test's Redis keys, as a Redis restarted without persistence would have lost them.
async fn flush_prefix(url: &str, prefix: &str) {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}*")).query_async(&mut conn).await.unwrap();
    assert!(!keys.is_empty(), "the test's counters were in Redis");
    let _: () = redis::cmd("DEL").arg(keys).query_async(&mut conn).await.unwrap();
}

/// `on_counters_down = "local"`: with Redis unreachable, a replica admits on
/// its own share (50 %) of the room each budget had when last seen, refuses
/// past it (402), and books what it spent on the shared counters when Redis
/// returns. The bill never passes the budget, and the counter equals the
/// ledger after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_share_keeps_serving_through_a_redis_outage_without_overspending() {
    let budget = "[[budgets]]\nid = \"team\"\nscope = { team = \"growth\" }\nlimit_usd = \"0.0006\"\nperiod = \"day\"\naction = \"block\"\n";
    let Some(mut c) = Cluster::start(budget).await else { return };
    let redis_relay = services::Relay::start(services::url_addr(&c.redis)).await;
    c.redis_url = services::url_via(&c.redis, redis_relay.addr);
    let config = c.config(0);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("[ledger]", "on_counters_down = \"local\"\nlocal_share_percent = 50\n\n[ledger]");
    std::fs::write(&config, text).unwrap();
    let key = c.key(&["--name", "local", "--team", "growth"]).await;
    let r = c.replica(0).await;
    let one = [&r];
    let (http, key) = (&c.http, key.as_str());
    let serial = |n: usize| {
        let one = &one;
        async move {
            let mut out = Vec::new();
            for _ in 0..n {
                out.extend(fire(http, one, key, 1).await);
            }
            out
        }
    };
    let before_outage = serial(5).await;
    assert!(before_outage.iter().all(|s| *s == 200), "{before_outage:?}");
    let limit: Money = "0.0006".parse().unwrap();
    c.until_ledgered(&[&r], 5).await;
    let spent_before = usd(&c.admin(&r, "/api/v1/spend").await["total_cost_usd"]);

    redis_relay.cut();
    let during = serial(40).await;
    let admitted = during.iter().filter(|s| **s == 200).count();
    let refused = during.iter().filter(|s| **s == 402).count();
    eprintln!("local share during the outage: {admitted} admitted, {refused} refused");
    assert_eq!(admitted + refused, 40, "{during:?}");
    assert!(admitted > 0, "the local share admits while Redis is out");
    assert!(refused > 0, "and refuses past it");
    let ready = c.http.get(format!("{}/readyz", r.base)).send().await.unwrap();
    assert_eq!(ready.status(), 200, "a replica on its local share stays in the load balancer");
    assert!(ready.text().await.unwrap().contains("admitting on this replica's local share"));

    redis_relay.restore();
    c.until_ledgered(&[&r], 45).await;
    let spent = usd(&c.admin(&r, "/api/v1/spend").await["total_cost_usd"]);
    eprintln!("spent ${spent_before} before the outage, ${spent} after, of ${limit}");
    assert!(spent <= limit, "overspent: ${spent} > ${limit}");
    // Within half of what was left when Redis went away (reservations are upper bounds).
    assert!((spent.nanos() - spent_before.nanos()) * 2 <= limit.nanos() - spent_before.nanos());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let b = c.admin(&r, "/api/v1/budgets").await;
        let team = b["budgets"].as_array().unwrap().iter().find(|b| b["id"] == "team").unwrap().clone();
        if usd(&team["spent_usd"]) == spent && usd(&team["reserved_usd"]) == Money::ZERO {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the local spend never reached the shared counter: {team}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let after = serial(3).await;
    assert!(after.iter().all(|s| *s == 200 || *s == 402), "{after:?}");
}
