//! Test harness: a mock provider and a gateway on real loopback sockets (port 0).

#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tollgate::config::Config;
use tollgate::keys::{self, KeySpec};
use tollgate::server::{key_hasher, Gateway};
use tollgate::store::sqlite::SqliteStore;
use tollgate::store::RequestQuery;

pub struct Harness {
    pub base: String,
    pub mock: String,
    pub key: String,
    pub key_id: String,
    pub store: Arc<SqliteStore>,
    /// The same database as every storage capability (what the gateway uses).
    pub stores: tollgate::store::Stores,
    pub http: reqwest::Client,
    pub _dir: tempfile::TempDir,
    pub backlog: tollgate::ledger::BacklogProbe,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

pub async fn start_mock() -> SocketAddr {
    start_mock_with(tollgate_mock::MockConfig::default()).await
}

pub async fn start_mock_with(config: tollgate_mock::MockConfig) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(tollgate_mock::serve(l, config));
    addr
}

pub fn config_text(mock: SocketAddr, extra: &str) -> String {
    format!(
        r#"
[[providers]]
name = "openai"
kind = "openai"
base_url = "http://{mock}/v1"
max_retries = 2
timeout_ms = 3000

[[providers]]
name = "anthropic"
kind = "anthropic"
base_url = "http://{mock}"
max_retries = 0

[[providers]]
name = "gemini"
kind = "gemini"
base_url = "http://{mock}"
max_retries = 0

{extra}
"#
    )
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::start_with("", |c| c).await
    }

    pub async fn start_with(extra: &str, tweak: impl FnOnce(Config) -> Config) -> Harness {
        Harness::start_with_mock(tollgate_mock::MockConfig::default(), extra, tweak).await
    }

    pub async fn start_with_mock(
        mock: tollgate_mock::MockConfig,
        extra: &str,
        tweak: impl FnOnce(Config) -> Config,
    ) -> Harness {
        Harness::start_full(mock, extra, tweak, |s| s).await
    }

    /// A harness whose storage capabilities are changed before the gateway
    /// is built (e.g. another counter store).
    pub async fn start_with_stores(
        extra: &str,
        stores: impl FnOnce(tollgate::store::Stores) -> tollgate::store::Stores,
    ) -> Harness {
        Harness::start_full(tollgate_mock::MockConfig::default(), extra, |c| c, stores).await
    }

    async fn start_full(
        mock: tollgate_mock::MockConfig,
        extra: &str,
        tweak: impl FnOnce(Config) -> Config,
        tweak_stores: impl FnOnce(tollgate::store::Stores) -> tollgate::store::Stores,
    ) -> Harness {
        let mock = start_mock_with(mock).await;
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("t.db").display());
        let text = config_text(mock, extra) + &format!("\n[storage]\nurl = \"{db}\"\n");
        let config =
            tweak(Config::from_toml(&text, "test.toml", &std::collections::HashMap::<String, String>::new()).unwrap());
        let store = Arc::new(SqliteStore::open(&config.storage.url).unwrap());
        let stores = tweak_stores(tollgate::store::Stores::sqlite(store.clone()));
        let hasher = key_hasher(&config, stores.keys.as_ref()).await.unwrap();
        let spec = KeySpec {
            name: "test".into(),
            team: Some("growth".into()),
            tags: vec![("env".into(), "test".into())],
            ..KeySpec::default()
        };
        let created = keys::create(stores.keys.as_ref(), &hasher, spec, tollgate::pipeline::now_ms()).await.unwrap();
        let gateway = Gateway::build(config, stores.clone()).await.unwrap();
        let backlog = gateway.state.ledger.backlog_probe();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            gateway
                .serve(listener, async move {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Harness {
            base: format!("http://{addr}"),
            mock: format!("http://{mock}"),
            key: created.secret,
            key_id: created.record.id,
            store,
            stores,
            http: reqwest::Client::new(),
            _dir: dir,
            backlog,
            shutdown: Some(tx),
            server: Some(server),
        }
    }

    /// Another key on the same gateway (its secret): `team` enforced when given.
    pub async fn add_key(&self, name: &str, team: Option<&str>) -> String {
        let hasher = tollgate::auth::KeyHasher::new(&self.stores.keys.key_hash_secret().await.unwrap());
        let spec = KeySpec { name: name.into(), team: team.map(String::from), ..KeySpec::default() };
        keys::create(self.stores.keys.as_ref(), &hasher, spec, tollgate::pipeline::now_ms()).await.unwrap().secret
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(format!("{}{}", self.base, path)).bearer_auth(&self.key)
    }

    pub async fn mock_total(&self) -> u64 {
        let v: Value = self.http.get(format!("{}/mock/stats", self.mock)).send().await.unwrap().json().await.unwrap();
        v["total"].as_u64().unwrap()
    }

    /// All ledger rows, newest first, once every acknowledged row has moved
    /// from the spool into the database.
    pub fn rows(&self) -> Vec<tollgate::ledger::LedgerRow> {
        for _ in 0..500 {
            if self.backlog.bytes() == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.store.requests(&RequestQuery { filters: vec![], limit: 1000, cursor: None }).unwrap().rows
    }

    /// Waits until the ledger holds `n` rows (rows are committed before the
    /// last byte, but a disconnected client's row may land just after).
    pub async fn wait_rows(&self, n: usize) -> Vec<tollgate::ledger::LedgerRow> {
        for _ in 0..200 {
            let rows = self.rows();
            if rows.len() >= n {
                return rows;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.rows()
    }

    /// The gateway's database (`sqlite://…`), for a CLI run against it.
    #[allow(dead_code)]
    pub fn db_url(&self) -> String {
        format!("sqlite://{}", self._dir.path().join("t.db").display())
    }

    pub fn row(&self, request_id: &str) -> tollgate::ledger::LedgerRow {
        self.rows().into_iter().find(|r| r.request_id == request_id).unwrap_or_else(|| panic!("no row {request_id}"))
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(s) = self.server.take() {
            s.await.unwrap();
        }
    }
}

/// Starts `tollgate --config CONFIG serve` on a free port with `env` set (and
/// no proxy from the environment); returns the process and its base URL
/// once it listens. Its stderr keeps being drained.
pub fn spawn_serve(config: &std::path::Path, env: &[(&str, &str)]) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"));
    cmd.args(["--config", config.to_str().unwrap(), "serve", "--listen", "127.0.0.1:0"])
        .env("TOLLGATE_LOG", "warn")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null());
    for v in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"] {
        cmd.env_remove(v);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let base = loop {
        let line = lines.next().expect("gateway exited before listening").unwrap();
        if let Some(addr) = line.strip_prefix("tollgate listening on ") {
            break addr.trim().to_string();
        }
    };
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.by_ref() {});
    (child, base)
}

pub fn chat(model: &str, text: &str, stream: bool) -> Value {
    serde_json::json!({
        "model": model,
        "stream": stream,
        "messages": [{"role": "user", "content": text}],
    })
}

/// A response header's value as text ("" when absent).
#[allow(dead_code)]
pub fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
}

/// `n` nano-dollars (under $1) as the API prints money, written out here
/// rather than by `Money`'s `Display`: "0." and the nine-digit nano count.
#[allow(dead_code)]
pub fn sub_dollar_usd(n: i64) -> String {
    assert!((0..1_000_000_000).contains(&n), "{n} nanos is not under $1");
    format!("0.{n:09}")
}

/// Waits for the row of `id` (a streamed or disconnected request's row may
/// land just after its response ends).
#[allow(dead_code)]
pub async fn row_of(h: &Harness, id: &str) -> tollgate::ledger::LedgerRow {
    for _ in 0..250 {
        if let Some(r) = h.rows().into_iter().find(|r| r.request_id == id) {
            return r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("no row {id}")
}
