//! `tollgate demo`: the gateway in front of built-in mock providers, with a
//! traffic generator playing several teams, features, environments and
//! agent runs, so the request log and reports fill at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde_json::json;

use crate::config::Config;
use crate::keys::{self, KeySpec};
use crate::server::{key_hasher, Gateway};
use crate::store::sqlite::SqliteStore;

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Demo database (recreated at each start).
    #[arg(long = "demo-db", default_value = "tollgate-demo.db")]
    pub demo_db: String,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub duration_secs: Option<u64>,
    /// Synthetic requests per second after the opening burst.
    #[arg(long, default_value_t = 4)]
    pub rate: u32,
}

const TEAMS: &[(&str, &[&str])] = &[
    ("growth", &["onboarding-email", "summarize"]),
    ("search", &["query-rewrite", "rerank"]),
    ("support", &["ticket-triage", "reply-draft"]),
    ("platform", &["code-review", "eval"]),
];
const MODELS: &[&str] = &["gpt-4o-mini", "gpt-4o", "o4-mini", "claude-haiku-4-5", "claude-sonnet-4-5", "gemini-2.5-flash"];
const ENVS: &[&str] = &["prod", "staging", "dev"];

fn demo_config(mock: SocketAddr, listen: SocketAddr, db: &str) -> anyhow::Result<Config> {
    let text = format!(
        r#"
[server]
listen = "{listen}"

[storage]
url = "sqlite://{db}"

[[providers]]
name = "openai"
kind = "openai"
base_url = "http://{mock}/v1"

[[providers]]
name = "anthropic"
kind = "anthropic"
base_url = "http://{mock}"

[[providers]]
name = "gemini"
kind = "gemini"
base_url = "http://{mock}"

[[models]]
name = "smart"
targets = [{{ provider = "openai", model = "gpt-4o" }}]
fallbacks = ["claude-sonnet-4-5"]
"#
    );
    Ok(Config::from_toml(&text, "demo config", &std::collections::HashMap::<String, String>::new())?)
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let mock_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let mock_addr = mock_listener.local_addr()?;
    tokio::spawn(tollgate_mock::serve(mock_listener, tollgate_mock::MockConfig::default()));

    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", args.demo_db));
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (try --listen 127.0.0.1:0)", args.listen))?;
    let addr = listener.local_addr()?;
    let config = demo_config(mock_addr, addr, &args.demo_db)?;
    let store = Arc::new(SqliteStore::open(&config.storage.url)?);
    let hasher = key_hasher(&config, store.as_ref())?;
    let now = crate::pipeline::now_ms();
    let mut team_keys = Vec::new();
    for (team, _) in TEAMS {
        let spec = KeySpec { name: format!("{team}-service"), team: Some((*team).into()), ..KeySpec::default() };
        let k = keys::create(store.as_ref(), &hasher, spec, now).map_err(|e| anyhow::anyhow!("{e}"))?;
        team_keys.push(((*team).to_string(), k.secret));
    }
    let gateway = Gateway::build(config, store)?;

    let base = format!("http://{addr}");
    let example_key = team_keys[0].1.clone();
    println!("tollgate demo: gateway on {base} in front of mock OpenAI, Anthropic and Gemini providers");
    println!("database: {} (recreated at each start)\n", args.demo_db);
    println!("try it:\n");
    println!("  curl -s {base}/v1/chat/completions -H 'authorization: Bearer {example_key}' \\");
    println!("    -H 'x-tollgate-tags: feature=readme,env=dev' -H 'content-type: application/json' \\");
    println!("    -d '{{\"model\":\"gpt-4o-mini\",\"messages\":[{{\"role\":\"user\",\"content\":\"hello\"}}]}}' -i\n");
    println!("  python3 -c \"from openai import OpenAI; c = OpenAI(base_url='{base}/v1', api_key='{example_key}'); \\");
    println!("    print(c.chat.completions.create(model='gpt-4o-mini', messages=[{{'role':'user','content':'hi'}}]).usage)\"\n");
    println!("  curl -s '{base}/api/v1/requests?limit=5'        # the request log");
    println!("\nsynthetic traffic is flowing ({} teams, {} models); Ctrl-C to stop", TEAMS.len(), MODELS.len());

    let traffic = tokio::spawn(traffic(base.clone(), team_keys, args.rate.max(1)));
    let stop = async move {
        match args.duration_secs {
            Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
            None => crate::cli::shutdown_signal().await,
        }
    };
    let served = gateway.serve(listener, stop).await;
    traffic.abort();
    served?;
    Ok(())
}

/// Plays requests across teams, features, models, environments and agent runs.
async fn traffic(base: String, team_keys: Vec<(String, String)>, rate: u32) {
    let http = reqwest::Client::new();
    let mut n: u64 = 0;
    let burst = 120;
    loop {
        n += 1;
        let (team, key) = &team_keys[(n as usize) % team_keys.len()];
        let features = TEAMS.iter().find(|(t, _)| t == team).map(|(_, f)| *f).unwrap_or(&["misc"]);
        let feature = features[(n as usize / team_keys.len()) % features.len()];
        let model = MODELS[(n as usize * 7 + 3) % MODELS.len()];
        let env = ENVS[(n as usize / 3) % ENVS.len()];
        let stream = n % 3 == 0;
        let run = n / 5;
        let body = json!({
            "model": model,
            "stream": stream,
            "max_tokens": 40 + (n % 5) * 20,
            "messages": [
                {"role": "system", "content": "You are a helpful assistant for the demo."},
                {"role": "user", "content": format!("request {n}: {}", "please summarise this paragraph. ".repeat(1 + (n % 7) as usize))}
            ]
        });
        let req = http
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth(key)
            .header("x-tollgate-tags", format!("feature={feature},env={env}"))
            .header("x-tollgate-agent", if feature == "code-review" { "reviewer" } else { "assistant" })
            .header("x-tollgate-trace-id", format!("run-{team}-{run}"))
            .header("x-tollgate-session-id", format!("session-{}", n % 17))
            .header("x-tollgate-prompt", format!("{feature}@v{}", 1 + (n / 200) % 3))
            .json(&body);
        if let Ok(r) = req.send().await {
            let _ = r.bytes().await;
        }
        if n > burst {
            tokio::time::sleep(Duration::from_millis(1000 / u64::from(rate))).await;
        }
    }
}
