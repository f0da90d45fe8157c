//! The machine's PostgreSQL, Redis and ClickHouse for tests: a fresh database
//! (or key prefix) per test, from `TOLLGATE_TEST_POSTGRES_URL` /
//! `TOLLGATE_TEST_REDIS_URL` / `TOLLGATE_TEST_CLICKHOUSE_URL`.
//! Unset, a test skips and says so, except in CI (`CI` set), where `.ci/run`
//! starts the services and a missing one is a failure.

#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(dead_code)]

/// The URL of a service from `var`, or `None` (a loud skip) outside CI.
pub fn service_url(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) => Some(url),
        Err(_) => {
            assert!(std::env::var_os("CI").is_none(), "{var} is not set in CI: .ci/run must start {what}");
            skipped(&format!("a test that needs {what} (set {var})"));
            None
        }
    }
}

/// Says a test skipped, on stderr and in `$TOLLGATE_SKIP_LOG`, which
/// `scripts/test.sh` prints at the end (cargo hides a passing test's stderr).
pub fn skipped(what: &str) {
    eprintln!("SKIPPED: {what}");
    if let Some(log) = std::env::var_os("TOLLGATE_SKIP_LOG") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(log) {
            let _ = writeln!(f, "{what}");
        }
    }
}

/// A database of its own for one test, dropped when this is.
pub struct PgDatabase {
    admin_url: String,
    pub name: String,
    pub url: String,
}

impl PgDatabase {
    /// Creates `tg_test_<uuid>` through the server that `TOLLGATE_TEST_POSTGRES_URL` names.
    pub async fn create() -> Option<PgDatabase> {
        let admin_url = service_url("TOLLGATE_TEST_POSTGRES_URL", "PostgreSQL")?;
        let name = format!("tg_test_{}", uuid::Uuid::now_v7().simple());
        let (client, conn) = tokio_postgres::connect(&admin_url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
        let url = match admin_url.rsplit_once('/') {
            Some((server, _db)) => format!("{server}/{name}"),
            None => panic!("TOLLGATE_TEST_POSTGRES_URL must end in /DATABASE"),
        };
        Some(PgDatabase { admin_url, name, url })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs inside or outside a runtime: do the async work on a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                if let Ok((client, conn)) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await {
                    tokio::spawn(conn);
                    let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
                }
            });
        })
        .join();
    }
}

/// A ClickHouse database of its own for one test, dropped when this is.
pub struct ChDatabase {
    /// `http://HOST:PORT` (the server's HTTP interface).
    pub http: String,
    pub name: String,
    /// `clickhouse://HOST:PORT/NAME`, as `[storage] analytics_url` takes it.
    pub url: String,
}

impl ChDatabase {
    /// Creates `tg_test_<uuid>` on the server that `TOLLGATE_TEST_CLICKHOUSE_URL`
    /// (`http://HOST:PORT`) names.
    pub async fn create() -> Option<ChDatabase> {
        let http = service_url("TOLLGATE_TEST_CLICKHOUSE_URL", "ClickHouse")?.trim_end_matches('/').to_string();
        let hostport = http.strip_prefix("http://").expect("TOLLGATE_TEST_CLICKHOUSE_URL is http://HOST:PORT");
        let name = format!("tg_test_{}", uuid::Uuid::now_v7().simple());
        ch_execute(&http, &format!("CREATE DATABASE {name}")).await;
        let url = format!("clickhouse://{hostport}/{name}");
        Some(ChDatabase { http, name, url })
    }
}

fn ch_client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// Runs one statement on the server: its answer (TSV); panics with the server's answer if it fails.
pub async fn ch_execute(http: &str, sql: &str) -> String {
    let resp = ch_client().post(format!("{http}/")).body(sql.to_string()).send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    assert!(status.is_success(), "{sql}: HTTP {status}: {text}");
    text
}

impl Drop for ChDatabase {
    fn drop(&mut self) {
        let (http, name) = (self.http.clone(), self.name.clone());
        // Drop runs inside or outside a runtime: do the async work on a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let drop = format!("DROP DATABASE IF EXISTS {name}");
                let _ = ch_client().post(format!("{http}/")).body(drop).send().await;
            });
        })
        .join();
    }
}

/// A Redis key prefix of its own for one test (keys expire with Redis's own
/// life: this machine's Redis keeps nothing on disk).
pub fn redis_url_and_prefix() -> Option<(String, String)> {
    let url = service_url("TOLLGATE_TEST_REDIS_URL", "Redis")?;
    Some((url, format!("tg-test:{}:", uuid::Uuid::now_v7().simple())))
}

/// A TCP relay in front of a service that a test can cut and restore: cut,
/// it drops every open connection and refuses new ones, as an unreachable
/// server does, without touching the machine's own service.
pub struct Relay {
    pub addr: std::net::SocketAddr,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
    open: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Relay {
    pub async fn start(upstream: std::net::SocketAddr) -> Relay {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let open: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>> = Default::default();
        let (d, o) = (down.clone(), open.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else { return };
                if d.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                o.lock().unwrap().push(task.abort_handle());
            }
        });
        Relay { addr, down, open }
    }

    pub fn cut(&self) {
        self.down.store(true, std::sync::atomic::Ordering::SeqCst);
        for t in self.open.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    pub fn restore(&self) {
        self.down.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// `host:port` of a `scheme://[user@]host:port/…` URL.
pub fn url_addr(url: &str) -> std::net::SocketAddr {
    let rest = url.split_once("://").unwrap().1;
    let hostport = rest.split('/').next().unwrap();
    let hostport = hostport.rsplit_once('@').map_or(hostport, |(_, h)| h);
    hostport.parse().unwrap_or_else(|_| panic!("{hostport} is not host:port (use an IP address in the test URL)"))
}

/// The same URL with its `host:port` replaced by `addr`.
pub fn url_via(url: &str, addr: std::net::SocketAddr) -> String {
    let old = url_addr(url).to_string();
    url.replacen(&old, &addr.to_string(), 1)
}

/// A webhook receiver: its URL and what it received.
pub async fn webhook() -> (String, std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>) {
    let got: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>> = Default::default();
    let g = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::Json<serde_json::Value>| {
            let g = g.clone();
            async move {
                g.lock().unwrap().push(body.0);
                "ok"
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (format!("http://{addr}/hook"), got)
}
