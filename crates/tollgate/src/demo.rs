//! `tollgate demo`: the gateway in front of built-in mock providers, with a
//! week of seeded history and live synthetic traffic, so every dashboard
//! view and report is full of data the moment it starts.
//!
//! The history is written straight into the ledger (backdated rows priced
//! with the real catalog and the mock's usage formulas), then live traffic
//! flows through the real gateway. The history tells stories a newcomer can
//! find: a prompt change that doubled tokens, a retry storm, a runaway
//! agent loop, a team that blew through its budget, unpriced and estimated
//! traffic.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::json;
use tollgate_units::{Money, Usage};

use crate::attribution::Attribution;
use crate::config::{Config, Provider};
use crate::keys::{self, KeySpec};
use crate::ledger::{LedgerRow, UsageSource};
use crate::pricing::Pricing;
use crate::server::{key_hasher, Gateway};
use crate::store::Stores;

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
    /// Live traffic at this many times the seeded history's pace (1: the
    /// same rate for each kind of request and hour of the day, so the anomaly
    /// detector sees an ordinary day but for the one deliberate incident;
    /// more makes every series spike).
    #[arg(long, default_value_t = 1)]
    pub rate: u32,
    /// Days of history to seed before live traffic starts (0: none).
    #[arg(long, default_value_t = 7)]
    pub history_days: u32,
}

/// Teams with live traffic and their features. `research` only appears in
/// the history (its big batch week is what crossed its budget).
const TEAMS: &[(&str, &[&str])] = &[
    ("growth", &["onboarding-email", "summarize"]),
    ("search", &["query-rewrite", "rerank"]),
    ("support", &["ticket-triage", "reply-draft"]),
    ("platform", &["code-review", "eval"]),
];
const HISTORY_ONLY_TEAMS: &[&str] = &["research"];
/// A self-hosted model the price catalog does not know: its rows are unpriced.
const UNPRICED_MODEL: &str = "acme-internal-13b";

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
admin_key_env = "TOLLGATE_DEMO_ADMIN_KEY"
billing_accounts = ["{MOCK_PROJECT}"]

[[providers]]
name = "anthropic"
kind = "anthropic"
base_url = "http://{mock}"
admin_key_env = "TOLLGATE_DEMO_ADMIN_KEY"
billing_accounts = ["{MOCK_WORKSPACE}"]

[[providers]]
name = "gemini"
kind = "gemini"
base_url = "http://{mock}"

[[providers]]
name = "local-vllm"
kind = "openai_compatible"
base_url = "http://{mock}/v1"

[[models]]
name = "smart"
targets = [{{ provider = "openai", model = "gpt-4o" }}]
fallbacks = ["claude-sonnet-4-5"]

[[models]]
name = "{UNPRICED_MODEL}"
targets = [{{ provider = "local-vllm", model = "{UNPRICED_MODEL}" }}]

# Chargeback: research is billed its cost plus 12.5 % (shown as "Billed"
# beside the spend, and in `tollgate export --format focus`).
[[rate_cards]]
name = "research chargeback"
when = {{ team = "research" }}
markup_percent = "12.5"

# The providers' own cost reports, read again every hour (also at start).
[reconcile]
every = "1h"
since = "7d"

# research's batch week blew through this one (it has no live traffic to block).
[[budgets]]
scope = {{ team = "research" }}
limit_usd = "40"
period = "rolling:7d"
action = "block"
alert_at = [0.5, 0.8, 1.0]

[[budgets]]
scope = {{ team = "support" }}
limit_usd = "150"
period = "rolling:30d"
action = "alert"
alert_at = [0.5, 0.8, 1.0]

[[budgets]]
scope = {{ team = "search", env = "prod" }}
limit_usd = "60"
period = "rolling:30d"
action = "alert"
alert_at = [0.5, 0.8, 1.0]

[[budgets]]
scope = {{ team = "growth" }}
limit_usd = "6"
period = "month"
action = "downgrade:gpt-4o-mini"
alert_at = [0.5, 0.8, 1.0]
"#
    );
    let mut config = Config::from_toml(&text, "demo config", &std::collections::HashMap::<String, String>::new())?;
    // The mock accepts any admin key for its cost and usage reports.
    for p in config.providers.iter_mut().filter(|p| p.admin_key_env.is_some()) {
        p.admin_key = Some(crate::config::Secret::new("demo-admin-key".into()));
    }
    Ok(config)
}

/// The mock's default project and workspace: where the calls it serves are billed.
const MOCK_PROJECT: &str = "proj_tollgate";
const MOCK_WORKSPACE: &str = "wrkspc_tollgate";

/// Family, day, model, endpoint, tier, and one call's disjoint usage buckets.
type BillingKey<'a> = (&'a str, String, String, &'a str, &'a str, [u64; 6]);

/// Fills the mock's billing book with the seeded history (the mock bills what
/// it serves; the history never went through it), then a few things a
/// finance team should see: a day where the provider billed gpt-4o above the
/// catalog, and spend on a project and a workspace that are not the
/// gateway's. Then reconciles both providers over the history, so the
/// dashboard's reconciliation view is filled at once.
async fn seed_reconciliation(
    gateway: &Gateway,
    mock: SocketAddr,
    history: &[LedgerRow],
    days: u32,
    now: i64,
) -> anyhow::Result<Vec<crate::reconciliation::ReconLine>> {
    // Identical calls are one entry of `requests` calls (priced per call, as
    // the ledger prices each row).
    let mut groups: BTreeMap<BillingKey<'_>, u64> = BTreeMap::new();
    for r in history {
        let family = match r.provider.as_deref() {
            Some("openai") => "openai",
            Some("anthropic") => "anthropic",
            _ => continue,
        };
        if r.status >= 400 || r.cache == crate::record::CacheOutcome::Hit || r.cost.is_none() {
            continue;
        }
        let Some(model) = r.model.clone() else { continue };
        let endpoint = match r.endpoint {
            crate::record::Endpoint::Embeddings | crate::record::Endpoint::BatchEmbeddings => "embeddings",
            _ => "completions",
        };
        let tier = if r.endpoint.as_str().starts_with("batch.") { "batch" } else { "standard" };
        let u = &r.usage;
        let usage =
            [u.input, u.cache_read, u.cache_write_5m, u.cache_write_1h, u.output + u.reasoning, u.web_search_requests];
        *groups.entry((family, day_text(r.time_ms), model, endpoint, tier, usage)).or_default() += 1;
    }
    let mut extra: Vec<serde_json::Value> = groups
        .into_iter()
        .map(|((family, day, model, endpoint, tier, u), n)| {
            let account = if family == "openai" { "project_id" } else { "workspace_id" };
            let mut e = json!({
                "family": family, "day": day, account: if family == "openai" { MOCK_PROJECT } else { MOCK_WORKSPACE },
                "api_key_id": "key_tollgate", "model": model, "requests": n, "service_tier": tier,
                "input_tokens": u[0] * n, "cached_input_tokens": u[1] * n,
                "cache_creation_5m_input_tokens": u[2] * n, "cache_creation_1h_input_tokens": u[3] * n,
                "output_tokens": u[4] * n, "web_search_requests": u[5] * n,
            });
            if family == "openai" {
                e["endpoint"] = json!(endpoint);
            }
            e
        })
        .collect();
    // Outside the gateway: a data-science notebook on its own OpenAI project,
    // and a sandbox workspace at Anthropic.
    extra.push(json!({"family": "openai", "day": day_text(now - 2 * DAY), "project_id": "proj_data-science",
        "api_key_id": "key_notebook", "model": "gpt-4o", "requests": 40, "input_tokens": 2_000_000, "output_tokens": 300_000}));
    extra.push(json!({"family": "anthropic", "day": day_text(now - DAY), "workspace_id": "wrkspc_sandbox",
        "api_key_id": "key_sandbox", "model": "claude-sonnet-4-5", "requests": 25, "input_tokens": 800_000, "output_tokens": 100_000}));
    let body = json!({
        "extra": extra,
        // Three days ago the provider billed gpt-4o 10 % above the catalog.
        "price_adjustments": [{"family": "openai", "day": day_text(now - 3 * DAY), "model": "gpt-4o", "percent": "110"}],
    });
    let http = reqwest::Client::new();
    let r = http.post(format!("http://{mock}/mock/billing")).json(&body).send().await?;
    anyhow::ensure!(
        r.status().is_success(),
        "the mock refused the billing seed: {}",
        r.text().await.unwrap_or_default()
    );
    let state = &gateway.state;
    let config = state.config();
    let pricing = state.pricing.load();
    let mut lines = Vec::new();
    for name in ["openai", "anthropic"] {
        let Some(provider) = config.providers.iter().find(|p| p.name == name) else { continue };
        let since = now - i64::from(days) * DAY;
        lines.extend(
            crate::reconcile::run_and_save(&state.http, &state.stores, &pricing, provider, since, now, None, now)
                .await?,
        );
    }
    Ok(lines)
}

fn day_text(ms: i64) -> String {
    crate::reconcile::day_text(ms)
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let mock_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let mock_addr = mock_listener.local_addr()?;
    let mock = tollgate_mock::MockConfig { latency_ms: 15, chunk_delay_ms: 2, ..Default::default() };
    tokio::spawn(tollgate_mock::serve(mock_listener, mock));

    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", args.demo_db));
    }
    let _ = std::fs::remove_dir_all(format!("{}.spool", args.demo_db));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (try --listen 127.0.0.1:0)", args.listen))?;
    let addr = listener.local_addr()?;
    let config = demo_config(mock_addr, addr, &args.demo_db)?;
    let store = Stores::open(&config.storage.url).await?;
    let hasher = key_hasher(&config, store.keys.as_ref()).await?;
    let now = crate::time::now_ms();
    let mut team_keys = Vec::new();
    let mut key_ids = BTreeMap::new();
    for team in TEAMS.iter().map(|(t, _)| *t).chain(HISTORY_ONLY_TEAMS.iter().copied()) {
        let spec = KeySpec { name: format!("{team}-service"), team: Some(team.into()), ..KeySpec::default() };
        let k = keys::create(store.keys.as_ref(), &hasher, spec, now).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        key_ids.insert(team.to_string(), k.record.id.clone());
        if !HISTORY_ONLY_TEAMS.contains(&team) {
            team_keys.push((team.to_string(), k.secret));
        }
    }

    let history = if args.history_days > 0 {
        let history = History::new(&config.providers, key_ids, now, args.history_days).generate();
        let sink = store.ledger.clone();
        let history = std::sync::Arc::new(history);
        let rows = history.clone();
        tokio::task::spawn_blocking(move || -> Result<(), crate::store::StoreError> {
            for chunk in rows.chunks(2000) {
                let refs: Vec<&LedgerRow> = chunk.iter().collect();
                sink.append(&refs)?;
            }
            Ok(())
        })
        .await??;
        history
    } else {
        std::sync::Arc::new(Vec::new())
    };
    let seeded = history.len();
    let gateway = Gateway::build(config, store).await?;
    let reconciled = if seeded > 0 {
        match seed_reconciliation(&gateway, mock_addr, &history, args.history_days, now).await {
            Ok(lines) => Some(crate::reconciliation::totals(&lines)),
            Err(e) => {
                eprintln!("tollgate demo: the reconciliation seed failed ({e}); the reconciliation view stays empty");
                None
            }
        }
    } else {
        None
    };
    drop(history);

    let base = format!("http://{addr}");
    let example_key = team_keys[0].1.clone();
    println!("tollgate demo: gateway on {base} in front of mock OpenAI, Anthropic and Gemini providers");
    println!("database: {} (recreated at each start)", args.demo_db);
    if seeded > 0 {
        println!("seeded {seeded} requests of history over the last {} days", args.history_days);
    }
    if let Some(t) = reconciled {
        println!(
            "reconciled with the mock providers' cost reports: drift ${} on {} line(s), ${} outside the gateway ({base}/ui#/reconciliation)",
            t.drift, t.drifting_lines, t.outside
        );
    }
    println!("\ndashboard: {base}/ui\n");
    println!("try it:\n");
    println!("  curl -s {base}/v1/chat/completions -H 'authorization: Bearer {example_key}' \\");
    println!("    -H 'x-tollgate-tags: feature=readme,env=dev' -H 'content-type: application/json' \\");
    println!("    -d '{{\"model\":\"gpt-4o-mini\",\"messages\":[{{\"role\":\"user\",\"content\":\"hello\"}}]}}' -i\n");
    println!("  # pip install openai");
    println!("  from openai import OpenAI");
    println!("  client = OpenAI(base_url=\"{base}/v1\", api_key=\"{example_key}\")");
    println!("  r = client.chat.completions.create(model=\"gpt-4o-mini\", messages=[{{\"role\": \"user\", \"content\": \"hi\"}}],");
    println!("                                     extra_headers={{\"x-tollgate-tags\": \"feature=readme,env=dev\"}})");
    println!("  print(r.usage)\n");
    println!("  python3 -c \"from openai import OpenAI; c = OpenAI(base_url='{base}/v1', api_key='{example_key}'); \\");
    println!("    print(c.chat.completions.create(model='gpt-4o-mini', messages=[{{'role':'user','content':'hi'}}]).usage)\"\n");
    println!("  curl -s '{base}/api/v1/requests?limit=5'                  # the request log");
    println!("  curl -s '{base}/api/v1/spend?group_by=team&from=7d'       # spend by team");
    println!(
        "\nlive traffic is flowing ({} teams, {} kinds of request, at the history's hourly pace); Ctrl-C to stop",
        TEAMS.len(),
        LIVE.len()
    );
    println!(
        "in {} s support's reply-draft job runs away for {} s: watch it become one incident at {base}/ui#/anomalies",
        RUNAWAY_AFTER.as_secs(),
        RUNAWAY_CALLS * RUNAWAY_EVERY.as_secs()
    );

    let traffic = tokio::spawn(traffic(base.clone(), team_keys, args.rate.max(1)));
    let stop = async move {
        match args.duration_secs {
            Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
            None => crate::server::shutdown_signal().await,
        }
    };
    let served = gateway.serve(listener, stop).await;
    traffic.abort();
    served?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Seeded history
// ---------------------------------------------------------------------------

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

/// One call to put in the ledger.
#[derive(Debug, Clone)]
struct Call {
    at_ms: i64,
    team: &'static str,
    feature: &'static str,
    env: &'static str,
    user: String,
    provider: &'static str,
    model: &'static str,
    prompt_bytes: u64,
    output_tokens: u64,
    stream: bool,
    trace: Option<String>,
    parent: Option<String>,
    agent: Option<&'static str>,
    prompt: Option<String>,
    session: Option<String>,
    step: Option<String>,
}

/// How a call ended.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    Ok {
        attempts: u32,
    },
    /// Served by a fallback after the first target failed.
    Fallback {
        provider: &'static str,
        model: &'static str,
        attempts: u32,
    },
    Failed {
        status: u16,
        code: &'static str,
        attempts: u32,
    },
}

struct History<'a> {
    rng: StdRng,
    pricing: Pricing,
    providers: &'a [Provider],
    key_ids: BTreeMap<String, String>,
    now_ms: i64,
    start_ms: i64,
    rows: Vec<LedgerRow>,
}

fn provider_of(model: &str) -> &'static str {
    if model.starts_with("claude") {
        "anthropic"
    } else if model.starts_with("gemini") {
        "gemini"
    } else if model == UNPRICED_MODEL {
        "local-vllm"
    } else {
        "openai"
    }
}

/// Typical time to first token and per-output-token time, in ms.
fn speed(model: &str) -> (u64, u64) {
    match model {
        "gpt-4o-mini" | "gpt-4.1-mini" => (350, 8),
        "gpt-4o" => (700, 14),
        "o4-mini" | "o3" => (2200, 9),
        "claude-haiku-4-5" => (450, 7),
        "claude-sonnet-4-5" => (1100, 16),
        "claude-opus-4-1" => (2100, 28),
        "gemini-2.5-flash" => (300, 5),
        "gemini-2.5-pro" => (1500, 12),
        _ => (600, 10),
    }
}

/// Requests arrive mostly in (UTC) working hours and less at weekends.
fn activity(at_ms: i64) -> f64 {
    let hour = (at_ms.rem_euclid(DAY) / HOUR) as usize;
    // 1970-01-01 was a Thursday: day 2 and 3 of the week (mod 7) are Sat, Sun.
    let weekday = (at_ms.div_euclid(DAY) + 4).rem_euclid(7);
    const BY_HOUR: [f64; 24] = [
        0.15, 0.1, 0.08, 0.08, 0.1, 0.15, 0.25, 0.4, 0.65, 0.85, 0.95, 1.0, 0.9, 0.95, 1.0, 0.95, 0.9, 0.8, 0.6, 0.45,
        0.35, 0.3, 0.25, 0.2,
    ];
    let weekend = if weekday == 0 || weekday == 6 { 0.35 } else { 1.0 };
    BY_HOUR[hour] * weekend
}

const USERS: &[(&str, &[&str])] = &[
    ("growth", &["maya", "leo", "priya"]),
    ("search", &["sam", "ines", "kofi", "yuki"]),
    ("support", &["olga", "ravi", "tom"]),
    ("platform", &["ada", "lin", "jonas"]),
    ("research", &["noor", "felix"]),
];

impl<'a> History<'a> {
    fn new(providers: &'a [Provider], key_ids: BTreeMap<String, String>, now_ms: i64, days: u32) -> History<'a> {
        History {
            rng: StdRng::seed_from_u64(0x7011_6a7e),
            pricing: Pricing::builtin(),
            providers,
            key_ids,
            now_ms,
            // History stops a minute before the live traffic starts.
            start_ms: (now_ms - i64::from(days) * DAY) / HOUR * HOUR,
            rows: Vec::new(),
        }
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.rng.random_range(0..items.len())]
    }

    fn env(&mut self) -> &'static str {
        match self.rng.random_range(0..100) {
            0..=74 => "prod",
            75..=91 => "staging",
            _ => "dev",
        }
    }

    fn user(&mut self, team: &str) -> String {
        let users = USERS.iter().find(|(t, _)| *t == team).map(|(_, u)| *u).unwrap_or(&["someone"]);
        self.pick(users).to_string()
    }

    fn call(&mut self, at_ms: i64, team: &'static str, feature: &'static str, model: &'static str) -> Call {
        let env = self.env();
        let user = self.user(team);
        Call {
            at_ms,
            team,
            feature,
            env,
            user,
            provider: provider_of(model),
            model,
            prompt_bytes: 2000,
            output_tokens: 200,
            stream: self.rng.random_bool(0.35),
            trace: None,
            parent: None,
            agent: None,
            prompt: None,
            session: None,
            step: None,
        }
    }

    fn usage(provider: &str, model: &str, prompt_bytes: u64, output_tokens: u64) -> Usage {
        let m = tollgate_mock::usage_for(prompt_bytes, model, None, Some(output_tokens));
        // The same disjoint buckets the provider adapters produce from each wire format.
        match provider {
            "anthropic" => Usage {
                input: m.anthropic_input_tokens(),
                cache_read: m.cache_read_tokens,
                cache_write_5m: m.cache_write_5m_tokens,
                cache_write_1h: m.cache_write_1h_tokens,
                output: m.visible_output_tokens(),
                reasoning: m.reasoning_tokens,
                ..Usage::default()
            },
            _ => Usage {
                input: m.prompt_tokens - m.cache_read_tokens,
                cache_read: m.cache_read_tokens,
                output: m.visible_output_tokens(),
                reasoning: m.reasoning_tokens,
                ..Usage::default()
            },
        }
    }

    /// Writes one row; returns its request id and when it finished.
    fn push(&mut self, c: &Call, outcome: Outcome) -> (String, i64) {
        let (provider, model, status, error_code, attempts) = match outcome {
            Outcome::Ok { attempts } => (c.provider, c.model, 200, None, attempts),
            Outcome::Fallback { provider, model, attempts } => (provider, model, 200, None, attempts),
            Outcome::Failed { status, code, attempts } => (c.provider, c.model, status, Some(code), attempts),
        };
        let (first_ms, per_token) = speed(model);
        let jitter = self.rng.random_range(0.75..1.4);
        let ok = status < 400;
        // A few streams lose their client before the end: usage is counted locally.
        let disconnected = ok && c.stream && self.rng.random_bool(0.03);
        let mut usage =
            if ok { Self::usage(provider, model, c.prompt_bytes, c.output_tokens) } else { Usage::default() };
        if disconnected {
            usage.output = usage.output * 2 / 5;
            usage.reasoning = 0;
        }
        let ttft = (first_ms as f64 * jitter) as u64 + 200 * u64::from(attempts - 1);
        let latency = if ok {
            ttft + usage.output_tokens() * per_token
        } else {
            // Failed attempts wait on backoff and Retry-After.
            800 * u64::from(attempts) + self.rng.random_range(0..1500)
        };
        let (cost, cache_savings) = if !ok {
            (Some(Money::ZERO), Money::ZERO)
        } else {
            match self.providers.iter().find(|p| p.name == provider) {
                Some(p) => {
                    let priced = self.pricing.price(p, model, &usage, c.at_ms);
                    (priced.cost, priced.cache_savings)
                }
                None => (None, Money::ZERO),
            }
        };
        let mut tags = BTreeMap::new();
        for (k, v) in [("team", c.team), ("feature", c.feature), ("env", c.env), ("user", c.user.as_str())] {
            tags.insert(k.to_string(), v.to_string());
        }
        if let Some(s) = &c.step {
            tags.insert("step".into(), s.clone());
        }
        let secs = u64::try_from(c.at_ms / 1000).unwrap_or(0);
        let nanos = u32::try_from((c.at_ms % 1000) * 1_000_000).unwrap_or(0);
        let request_id = uuid::Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, secs, nanos)).to_string();
        let endpoint = if provider == "anthropic" && c.feature == "reply-draft" {
            crate::record::Endpoint::Messages
        } else {
            crate::record::Endpoint::ChatCompletions
        };
        self.rows.push(LedgerRow {
            request_id: request_id.clone(),
            time_ms: c.at_ms,
            key_id: self.key_ids.get(c.team).cloned(),
            endpoint,
            requested_model: Some(c.model.to_string()),
            model: Some(model.to_string()),
            provider: Some(provider.to_string()),
            status,
            error_code: error_code.map(String::from),
            usage,
            usage_source: if disconnected { UsageSource::Estimated } else { UsageSource::Provider },
            cost,
            cache_savings,
            response_cache_savings: Money::ZERO,
            tool_cost: Money::ZERO,
            provider_cost: None,
            streamed: c.stream,
            client_disconnected: disconnected,
            cache: crate::record::CacheOutcome::Off,
            latency_ms: latency,
            ttft_ms: if c.stream && ok { Some(ttft) } else { None },
            attempts,
            prefix_hash: None,
            attempt_log: Vec::new(),
            attribution: Attribution {
                tags,
                trace_id: c.trace.clone(),
                parent_id: c.parent.clone(),
                session: c.session.clone(),
                agent: c.agent.map(String::from),
                prompt: c.prompt.clone(),
            },
        });
        (request_id, c.at_ms + i64::try_from(latency).unwrap_or(0))
    }

    /// Spreads `per_peak_hour` calls over every hour, shaped by [`activity`].
    fn each_hour(&mut self, per_peak_hour: f64, mut f: impl FnMut(&mut Self, i64)) {
        let end = self.now_ms - 60_000;
        let mut hour = self.start_ms;
        while hour < end {
            let expected = per_peak_hour * activity(hour) * self.rng.random_range(0.7..1.3);
            let n = expected.floor() as u32 + u32::from(self.rng.random_bool(expected.fract()));
            for _ in 0..n {
                let at = hour + self.rng.random_range(0..HOUR);
                if at < end {
                    f(self, at);
                }
            }
            hour += HOUR;
        }
    }

    /// The moment prompts changed: 10:00 UTC, two to three days ago.
    fn prompt_change_ms(&self) -> i64 {
        (self.now_ms - 3 * DAY) / DAY * DAY + 10 * HOUR
    }

    fn generate(mut self) -> Vec<LedgerRow> {
        let change = self.prompt_change_ms();
        // growth: onboarding emails and the summarize prompt whose v3 doubled its size.
        self.each_hour(9.0, |h, at| {
            let mut c = h.call(at, "growth", "onboarding-email", "gpt-4o-mini");
            c.prompt_bytes = 6_000 + h.rng.random_range(0..1_500);
            c.output_tokens = 300 + h.rng.random_range(0..120);
            c.prompt = Some("onboarding-email@v1".into());
            h.push(&c, Outcome::Ok { attempts: 1 });
        });
        self.each_hour(14.0, move |h, at| {
            let model = if h.rng.random_bool(0.7) { "gpt-4o-mini" } else { "claude-haiku-4-5" };
            let mut c = h.call(at, "growth", "summarize", model);
            let v3 = at >= change;
            c.prompt_bytes = if v3 { 36_000 } else { 18_000 } + h.rng.random_range(0..2_000);
            c.output_tokens = 220 + h.rng.random_range(0..80);
            c.prompt = Some(if v3 { "summarize@v3" } else { "summarize@v2" }.into());
            h.push(&c, Outcome::Ok { attempts: 1 });
        });
        // search: cheap query rewriting at volume, and a gpt-4o reranker.
        self.each_hour(28.0, |h, at| {
            let mut c = h.call(at, "search", "query-rewrite", "gemini-2.5-flash");
            c.prompt_bytes = 1_500 + h.rng.random_range(0..600);
            c.output_tokens = 40 + h.rng.random_range(0..40);
            c.prompt = Some("query-rewrite@v4".into());
            c.stream = false;
            h.push(&c, Outcome::Ok { attempts: 1 });
        });
        self.each_hour(14.0, |h, at| {
            let mut c = h.call(at, "search", "rerank", "gpt-4o");
            c.prompt_bytes = 24_000 + h.rng.random_range(0..6_000);
            c.output_tokens = 30 + h.rng.random_range(0..30);
            c.prompt = Some("rerank@v1".into());
            c.stream = false;
            let outcome = if h.rng.random_bool(0.01) {
                Outcome::Failed { status: 502, code: "upstream_error", attempts: 3 }
            } else {
                Outcome::Ok { attempts: 1 }
            };
            h.push(&c, outcome);
        });
        // support: triage, reply drafting (v2 grew the prompt a little), and the support agent.
        self.each_hour(8.0, |h, at| {
            let mut c = h.call(at, "support", "ticket-triage", "claude-haiku-4-5");
            c.prompt_bytes = 9_000 + h.rng.random_range(0..3_000);
            c.output_tokens = 90 + h.rng.random_range(0..60);
            c.prompt = Some("ticket-triage@v2".into());
            h.push(&c, Outcome::Ok { attempts: 1 });
        });
        let reply_change = change - 2 * DAY;
        self.each_hour(7.0, move |h, at| {
            let mut c = h.call(at, "support", "reply-draft", "claude-sonnet-4-5");
            let v2 = at >= reply_change;
            c.prompt_bytes = if v2 { 17_000 } else { 15_000 } + h.rng.random_range(0..3_000);
            c.output_tokens = 380 + h.rng.random_range(0..150);
            c.prompt = Some(if v2 { "reply-draft@v2" } else { "reply-draft@v1" }.into());
            h.push(&c, Outcome::Ok { attempts: 1 });
        });
        self.each_hour(2.5, |h, at| {
            h.agent_run(
                at,
                "support",
                "ticket-triage",
                "support-agent",
                "claude-sonnet-4-5",
                "claude-haiku-4-5",
                &["search_kb", "fetch_ticket", "lookup_order"],
                12_000,
                2..7,
            );
        });
        // platform: the code reviewer agent, and evals on an unpriced self-hosted model.
        self.each_hour(1.5, |h, at| {
            h.agent_run(
                at,
                "platform",
                "code-review",
                "reviewer",
                "o4-mini",
                "gpt-4o-mini",
                &["read_file", "run_tests", "grep"],
                20_000,
                3..9,
            );
        });
        self.each_hour(6.0, |h, at| {
            let model = if h.rng.random_bool(0.6) { UNPRICED_MODEL } else { "gpt-4.1-mini" };
            let mut c = h.call(at, "platform", "eval", model);
            c.env = if h.rng.random_bool(0.5) { "staging" } else { "dev" };
            c.prompt_bytes = 4_000 + h.rng.random_range(0..2_000);
            c.output_tokens = 150 + h.rng.random_range(0..100);
            h.push(&c, Outcome::Ok { attempts: 1 });
        });
        // research: expensive deep-research runs on the biggest models…
        self.each_hour(0.8, |h, at| {
            h.agent_run(
                at,
                "research",
                "deep-research",
                "researcher",
                "claude-opus-4-1",
                "claude-sonnet-4-5",
                &["web_search", "read_page", "take_notes"],
                24_000,
                4..9,
            );
        });
        // …a batch labelling job that pushed the team over budget…
        self.batch_labeling();
        // …and one night the researcher looped on the same search for two hours.
        self.runaway_loop();
        // The search team's reranker hit OpenAI's rate limits one afternoon.
        self.retry_storm();

        self.rows.sort_by_key(|r| r.time_ms);
        self.rows
    }

    /// A multi-step run: plan, a loop of tool calls whose context grows each
    /// turn, then an answer. Every step carries the run's trace id; tool
    /// steps and the answer point at the plan as their parent.
    #[allow(clippy::too_many_arguments)]
    fn agent_run(
        &mut self,
        at: i64,
        team: &'static str,
        feature: &'static str,
        agent: &'static str,
        big: &'static str,
        small: &'static str,
        tools: &[&str],
        context_bytes: u64,
        steps: std::ops::Range<u32>,
    ) {
        let trace = format!("run-{agent}-{:08x}", self.rng.random::<u32>());
        let session = format!("sess-{:05}", self.rng.random_range(0..100_000));
        let mut c = self.call(at, team, feature, big);
        c.trace = Some(trace);
        c.agent = Some(agent);
        c.session = Some(session);
        c.prompt = Some(format!("{agent}-plan@v1"));
        c.prompt_bytes = context_bytes;
        c.output_tokens = 250 + self.rng.random_range(0..150);
        c.step = Some("plan".into());
        let (root, mut t) = self.push(&c, Outcome::Ok { attempts: 1 });
        let n = self.rng.random_range(steps);
        let mut context = context_bytes;
        for _ in 0..n {
            let tool = self.pick(tools);
            context += 1_200 + self.rng.random_range(0..1_500);
            let mut s = c.clone();
            s.at_ms = t + self.rng.random_range(200..2_500);
            s.model = small;
            s.provider = provider_of(small);
            s.prompt = Some(format!("{agent}-tool@v1"));
            s.prompt_bytes = context;
            s.output_tokens = 60 + self.rng.random_range(0..100);
            s.parent = Some(root.clone());
            s.step = Some(format!("tool:{tool}"));
            s.stream = false;
            t = self.push(&s, Outcome::Ok { attempts: 1 }).1;
        }
        let mut a = c.clone();
        a.at_ms = t + self.rng.random_range(200..1_500);
        a.prompt = Some(format!("{agent}-answer@v1"));
        a.prompt_bytes = context;
        a.output_tokens = 500 + self.rng.random_range(0..400);
        a.parent = Some(root);
        a.step = Some("answer".into());
        self.push(&a, Outcome::Ok { attempts: 1 });
    }

    fn batch_labeling(&mut self) {
        let start = (self.now_ms - DAY) / DAY * DAY + 9 * HOUR;
        if start < self.start_ms || start > self.now_ms - HOUR {
            return;
        }
        for i in 0..900 {
            let at = start + i * 8_000 + self.rng.random_range(0..4_000);
            let mut c = self.call(at, "research", "batch-labeling", "gpt-4o");
            c.env = "prod";
            c.user = "felix".into();
            c.prompt_bytes = 30_000 + self.rng.random_range(0..6_000);
            c.output_tokens = 900 + self.rng.random_range(0..300);
            c.prompt = Some("label-docs@v1".into());
            c.stream = false;
            self.push(&c, Outcome::Ok { attempts: 1 });
        }
    }

    fn runaway_loop(&mut self) {
        let start = (self.now_ms - 2 * DAY) / DAY * DAY + 2 * HOUR;
        if start < self.start_ms {
            return;
        }
        let mut c = self.call(start, "research", "deep-research", "claude-sonnet-4-5");
        c.env = "prod";
        c.user = "noor".into();
        c.trace = Some("run-researcher-runaway-0001".into());
        c.agent = Some("researcher");
        c.session = Some("sess-night-batch".into());
        c.prompt = Some("researcher-tool@v1".into());
        c.step = Some("plan".into());
        c.prompt_bytes = 16_000;
        let (root, mut t) = self.push(&c, Outcome::Ok { attempts: 1 });
        for i in 0..420u64 {
            let mut s = c.clone();
            s.at_ms = t + self.rng.random_range(1_000..4_000);
            // The same search again and again, with the transcript growing each turn.
            s.prompt_bytes = 16_000 + i * 180;
            s.output_tokens = 280 + self.rng.random_range(0..20);
            s.parent = Some(root.clone());
            s.step = Some("tool:web_search".into());
            s.stream = false;
            t = self.push(&s, Outcome::Ok { attempts: 1 }).1;
        }
    }

    fn retry_storm(&mut self) {
        let start = (self.now_ms - 3 * DAY) / DAY * DAY + 14 * HOUR;
        if start < self.start_ms {
            return;
        }
        for i in 0..240 {
            let at = start + i * 6_000 + self.rng.random_range(0..3_000);
            let mut c = self.call(at, "search", "rerank", "gpt-4o");
            c.prompt_bytes = 24_000 + self.rng.random_range(0..6_000);
            c.output_tokens = 30 + self.rng.random_range(0..30);
            c.prompt = Some("rerank@v1".into());
            c.stream = false;
            let outcome = match self.rng.random_range(0..100) {
                0..=54 => Outcome::Failed { status: 429, code: "upstream_rate_limited", attempts: 3 },
                55..=64 => Outcome::Failed { status: 504, code: "upstream_timeout", attempts: 3 },
                65..=84 => Outcome::Ok { attempts: self.rng.random_range(2..4) },
                _ => Outcome::Fallback { provider: "anthropic", model: "claude-sonnet-4-5", attempts: 3 },
            };
            self.push(&c, outcome);
        }
    }
}

/// Days of history the generator covers (for tests).
#[cfg(test)]
fn days_covered(rows: &[LedgerRow]) -> i64 {
    match (rows.first(), rows.last()) {
        (Some(a), Some(b)) => (b.time_ms - a.time_ms) / DAY,
        _ => 0,
    }
}

// ---------------------------------------------------------------------------
// Live traffic
// ---------------------------------------------------------------------------

/// One kind of live request: what today's traffic looks like after the
/// history (the latest prompt versions, the same sizes and models).
struct LiveKind {
    team: &'static str,
    feature: &'static str,
    model: &'static str,
    prompt: Option<&'static str>,
    prompt_bytes: usize,
    output_tokens: u64,
    /// Agent runs: the agent, and the model its tool steps use.
    agent: Option<(&'static str, &'static str)>,
    /// Requests (or agent runs) an hour at the busiest hour: the rate
    /// [`History::generate`] seeds this kind with, so a live hour looks like
    /// the seeded ones for the same hour of the day.
    per_peak_hour: f64,
}

const LIVE: &[LiveKind] = &[
    LiveKind {
        team: "search",
        feature: "query-rewrite",
        model: "gemini-2.5-flash",
        prompt: Some("query-rewrite@v4"),
        prompt_bytes: 1_500,
        output_tokens: 60,
        agent: None,
        // Half of the history's 28 (the kind is listed twice).
        per_peak_hour: 14.0,
    },
    LiveKind {
        team: "growth",
        feature: "summarize",
        model: "gpt-4o-mini",
        prompt: Some("summarize@v3"),
        prompt_bytes: 36_000,
        output_tokens: 240,
        agent: None,
        per_peak_hour: 14.0,
    },
    LiveKind {
        team: "support",
        feature: "ticket-triage",
        model: "claude-haiku-4-5",
        prompt: Some("ticket-triage@v2"),
        prompt_bytes: 9_000,
        output_tokens: 110,
        agent: None,
        per_peak_hour: 8.0,
    },
    LiveKind {
        team: "search",
        feature: "rerank",
        model: "gpt-4o",
        prompt: Some("rerank@v1"),
        prompt_bytes: 24_000,
        output_tokens: 45,
        agent: None,
        per_peak_hour: 14.0,
    },
    LiveKind {
        team: "growth",
        feature: "onboarding-email",
        model: "gpt-4o-mini",
        prompt: Some("onboarding-email@v1"),
        prompt_bytes: 6_000,
        output_tokens: 350,
        agent: None,
        per_peak_hour: 9.0,
    },
    LiveKind {
        team: "search",
        feature: "query-rewrite",
        model: "gemini-2.5-flash",
        prompt: Some("query-rewrite@v4"),
        prompt_bytes: 1_500,
        output_tokens: 60,
        agent: None,
        per_peak_hour: 14.0,
    },
    LiveKind {
        team: "support",
        feature: "reply-draft",
        model: "claude-sonnet-4-5",
        prompt: Some("reply-draft@v2"),
        prompt_bytes: 17_000,
        output_tokens: 450,
        agent: None,
        per_peak_hour: 7.0,
    },
    LiveKind {
        team: "platform",
        feature: "eval",
        model: UNPRICED_MODEL,
        prompt: None,
        prompt_bytes: 5_000,
        output_tokens: 200,
        agent: None,
        per_peak_hour: 6.0,
    },
    LiveKind {
        team: "support",
        feature: "ticket-triage",
        model: "claude-sonnet-4-5",
        prompt: Some("support-agent-plan@v1"),
        prompt_bytes: 12_000,
        output_tokens: 300,
        agent: Some(("support-agent", "claude-haiku-4-5")),
        per_peak_hour: 2.5,
    },
    LiveKind {
        team: "platform",
        feature: "code-review",
        model: "o4-mini",
        prompt: Some("reviewer-plan@v1"),
        prompt_bytes: 20_000,
        output_tokens: 300,
        agent: Some(("reviewer", "gpt-4o-mini")),
        per_peak_hour: 1.5,
    },
];

/// Filler prompt text of about `bytes` bytes, with the mock's output-size knob.
fn prompt_text(n: u64, bytes: usize, output_tokens: u64) -> String {
    const LINE: &str = "The customer wrote in about their invoice and the attached usage report. ";
    let mut s = format!("[mock output_tokens={output_tokens}] request {n}: ");
    while s.len() < bytes {
        s.push_str(LINE);
    }
    s
}

/// Live requests (or agent runs) an hour at `at_ms`: every kind's
/// `per_peak_hour` shaped by [`activity`], the history's own pattern, times `rate`.
fn live_per_hour(at_ms: i64, rate: u32) -> f64 {
    LIVE.iter().map(|k| k.per_peak_hour).sum::<f64>() * activity(at_ms) * f64::from(rate)
}

/// A kind of live request, each as likely as its share of the traffic.
fn pick_kind(rng: &mut StdRng) -> &'static LiveKind {
    let total: f64 = LIVE.iter().map(|k| k.per_peak_hour).sum();
    let mut x = rng.random_range(0.0..total);
    for kind in LIVE {
        if x < kind.per_peak_hour {
            return kind;
        }
        x -= kind.per_peak_hour;
    }
    &LIVE[LIVE.len() - 1]
}

/// Plays today's traffic through the real gateway at the seeded history's
/// pace (times `rate`): the same rate for each kind of request and hour of
/// the day, arriving at random as the history's do, so the anomaly detector
/// sees an ordinary hour. One request of each kind goes at once, so live
/// rows appear in the first seconds. Meanwhile [`runaway`] plays the one
/// deliberate incident.
async fn traffic(base: String, team_keys: Vec<(String, String)>, rate: u32) {
    let http = reqwest::Client::new();
    let paced = async {
        let mut rng = StdRng::seed_from_u64(0x11fe_7a1c);
        let mut n: u64 = 0;
        for kind in LIVE {
            n += 1;
            send_live(&http, &base, &team_keys, kind, n).await;
        }
        loop {
            // Exponential gaps: a Poisson process at the current hour's rate.
            let per_hour = live_per_hour(crate::time::now_ms(), rate).max(0.1);
            let u: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
            let gap_secs = (-u.ln() * 3_600.0 / per_hour).min(3_600.0);
            tokio::time::sleep(Duration::from_secs_f64(gap_secs)).await;
            n += 1;
            let kind = pick_kind(&mut rng);
            send_live(&http, &base, &team_keys, kind, n).await;
        }
    };
    tokio::join!(paced, runaway(&http, &base, &team_keys));
}

/// One live request, or one agent run: a plan step, tool steps and an
/// answer sharing one trace id.
async fn send_live(http: &reqwest::Client, base: &str, team_keys: &[(String, String)], kind: &LiveKind, n: u64) {
    let Some((_, key)) = team_keys.iter().find(|(t, _)| t == kind.team) else { return };
    let env = ["prod", "prod", "prod", "staging", "dev"][(n as usize / LIVE.len()) % 5];
    let user = USERS.iter().find(|(t, _)| *t == kind.team).map_or("someone", |(_, u)| u[(n as usize) % u.len()]);
    let trace = kind.agent.map(|(agent, _)| format!("live-{agent}-{n:06}"));
    let steps: u64 = if kind.agent.is_some() { 2 + n % 3 } else { 0 };
    let mut parent: Option<String> = None;
    for step in 0..=steps {
        let (model, step_name, prompt, bytes, out) = match (step, kind.agent) {
            (0, _) => (kind.model, "plan", kind.prompt.map(String::from), kind.prompt_bytes, kind.output_tokens),
            (s, Some((agent, small))) if s < steps => {
                (small, "tool:search", Some(format!("{agent}-tool@v1")), kind.prompt_bytes + s as usize * 1_500, 90)
            }
            (_, Some((agent, _))) => (
                kind.model,
                "answer",
                Some(format!("{agent}-answer@v1")),
                kind.prompt_bytes + steps as usize * 1_500,
                600,
            ),
            (_, None) => break,
        };
        let stream = (n + step).is_multiple_of(3);
        let body = json!({
            "model": model,
            "stream": stream,
            "messages": [
                {"role": "system", "content": "You are a helpful assistant for the demo."},
                {"role": "user", "content": prompt_text(n, bytes, out)}
            ]
        });
        let mut tags = format!("feature={},env={env},user={user}", kind.feature);
        if kind.agent.is_some() {
            tags.push_str(&format!(",step={step_name}"));
        }
        let mut req = http
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth(key)
            .header("x-tollgate-tags", tags)
            .header("x-tollgate-session-id", format!("sess-live-{}", n % 17))
            .json(&body);
        if let Some(p) = &prompt {
            req = req.header("x-tollgate-prompt", p);
        }
        if let (Some(t), Some((agent, _))) = (&trace, kind.agent) {
            req = req.header("x-tollgate-trace-id", t).header("x-tollgate-agent", agent);
        }
        if let Some(p) = &parent {
            req = req.header("x-tollgate-parent-id", p);
        }
        if let Ok(r) = req.send().await {
            let id = r.headers().get("x-tollgate-request-id").and_then(|v| v.to_str().ok()).map(String::from);
            if parent.is_none() {
                parent = id;
            }
            let _ = r.bytes().await;
        }
    }
}

/// The demo's live requests, `count` of them, in the order its generator
/// picks them (the same seed), sent one after another without its pacing:
/// a repeatable sample of the demo's traffic, to feed two gateways the same
/// traffic (the shadow-budget test). `team_keys`: a virtual key per demo
/// team (`growth`, `search`, `support`, `platform`). Returns the number of
/// HTTP requests sent (agent runs send several).
#[doc(hidden)]
pub async fn send_demo_sample(base: &str, team_keys: &[(String, String)], count: u64) -> u64 {
    let http = reqwest::Client::new();
    let mut rng = StdRng::seed_from_u64(0x11fe_7a1c);
    let mut sent = 0;
    for n in 0..count {
        let kind = pick_kind(&mut rng);
        if team_keys.iter().any(|(t, _)| t == kind.team) {
            sent += 1 + if kind.agent.is_some() { 2 + n % 3 } else { 0 };
        }
        send_live(&http, base, team_keys, kind, n).await;
    }
    sent
}

/// The deliberate incident starts this long after live traffic.
const RUNAWAY_AFTER: Duration = Duration::from_secs(90);
/// Its requests, one every [`RUNAWAY_EVERY`].
const RUNAWAY_CALLS: u64 = 80;
const RUNAWAY_EVERY: Duration = Duration::from_secs(1);

/// The deliberate incident: support's reply-draft job re-drafts its whole
/// ticket backlog with each ticket's history attached. [`RUNAWAY_CALLS`]
/// requests of about 60 kB (some 15,000 input tokens, 800 output) to
/// claude-sonnet-4-5, about $0.05 each with the mock's usage: some $4 in 80
/// seconds, where the support key usually spends well under $1 in an hour.
/// Its key, team, feature and model cross their thresholds on the same
/// requests, so the anomaly view shows one incident, named after the
/// support key, ranked first by its excess.
async fn runaway(http: &reqwest::Client, base: &str, team_keys: &[(String, String)]) {
    let Some((_, key)) = team_keys.iter().find(|(t, _)| t == "support") else { return };
    tokio::time::sleep(RUNAWAY_AFTER).await;
    for i in 0..RUNAWAY_CALLS {
        let body = json!({
            "model": "claude-sonnet-4-5",
            "messages": [
                {"role": "system", "content": "You are a helpful assistant for the demo."},
                {"role": "user", "content": prompt_text(i, 60_000, 800)}
            ]
        });
        let req = http
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth(key)
            .header("x-tollgate-tags", "feature=reply-draft,env=prod,user=ravi")
            .header("x-tollgate-prompt", "reply-draft@v2")
            .header("x-tollgate-session-id", "sess-live-backlog")
            .json(&body);
        if let Ok(r) = req.send().await {
            let _ = r.bytes().await;
        }
        tokio::time::sleep(RUNAWAY_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn providers() -> Vec<Provider> {
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        demo_config(addr, addr, "/tmp/unused.db").unwrap().providers
    }

    #[test]
    fn history_tells_the_stories_the_dashboard_shows() {
        let providers = providers();
        let now = 1_760_000_000_000;
        let keys: BTreeMap<String, String> =
            [("growth", "k1"), ("research", "k5")].map(|(a, b)| (a.into(), b.into())).into();
        let rows = History::new(&providers, keys, now, 7).generate();
        assert!(rows.len() > 3_000, "{}", rows.len());
        assert!(days_covered(&rows) >= 6);
        assert!(rows.iter().all(|r| r.time_ms < now));
        let teams: std::collections::BTreeSet<_> = rows.iter().filter_map(|r| r.attribution.tag("team")).collect();
        let features: std::collections::BTreeSet<_> =
            rows.iter().filter_map(|r| r.attribution.tag("feature")).collect();
        let envs: std::collections::BTreeSet<_> = rows.iter().filter_map(|r| r.attribution.tag("env")).collect();
        assert!(teams.len() >= 4 && features.len() >= 6 && envs.len() == 3, "{teams:?} {features:?} {envs:?}");
        // Request ids sort like times, as the request log (newest first) expects.
        let mut by_id: Vec<&LedgerRow> = rows.iter().collect();
        by_id.sort_by(|a, b| a.request_id.cmp(&b.request_id));
        assert!(by_id.windows(2).all(|w| w[0].time_ms / 1000 <= w[1].time_ms / 1000));

        // The summarize prompt's v3 sends about twice the tokens of v2.
        let avg = |p: &str| {
            let v: Vec<u64> = rows
                .iter()
                .filter(|r| r.attribution.prompt.as_deref() == Some(p))
                .map(|r| r.usage.input_tokens())
                .collect();
            v.iter().sum::<u64>() / v.len().max(1) as u64
        };
        let (v2, v3) = (avg("summarize@v2"), avg("summarize@v3"));
        assert!(v2 > 0 && v3 > v2 * 18 / 10, "v2 {v2} v3 {v3}");

        // A retry storm: failed rows after several attempts.
        let storm = rows.iter().filter(|r| r.status == 429 && r.attempts > 1).count();
        assert!(storm > 50, "{storm}");
        assert!(rows.iter().any(|r| r.status == 200 && r.attempts > 1 && r.model != r.requested_model));
        // A runaway loop: one trace with hundreds of near-identical steps.
        let runaway =
            rows.iter().filter(|r| r.attribution.trace_id.as_deref() == Some("run-researcher-runaway-0001")).count();
        assert!(runaway > 400);
        // Multi-step agent runs point at their plan step.
        let run = rows
            .iter()
            .find(|r| r.attribution.agent.as_deref() == Some("support-agent") && r.attribution.parent_id.is_some())
            .unwrap();
        let parent = run.attribution.parent_id.as_deref().unwrap();
        assert!(rows.iter().any(|r| r.request_id == parent && r.attribution.trace_id == run.attribution.trace_id));
        // Priced with the real catalog, with unpriced and estimated traffic present.
        assert!(rows
            .iter()
            .filter(|r| r.status == 200 && r.model.as_deref() != Some(UNPRICED_MODEL))
            .all(|r| r.cost.is_some_and(|c| c > Money::ZERO)));
        assert!(rows.iter().any(|r| r.cost.is_none()));
        assert!(rows.iter().any(|r| r.usage_source == UsageSource::Estimated));
        assert!(rows.iter().any(|r| r.cache_savings > Money::ZERO));
        // research spends the most.
        let spend = |t: &str| -> Money {
            rows.iter().filter(|r| r.attribution.tag("team") == Some(t)).filter_map(|r| r.cost).sum()
        };
        for t in ["growth", "search", "support", "platform"] {
            assert!(spend("research") > spend(t), "research {} vs {t} {}", spend("research"), spend(t));
        }
    }

    #[test]
    fn live_traffic_keeps_the_seeded_pace() {
        // A weekday at 11:00 UTC (activity 1.0): every kind at its peak rate,
        // the history's 9 + 14 + 28 + 14 + 8 + 7 + 2.5 + 1.5 + 6 = 90 an hour.
        // At weekends (activity × 0.35), `--rate 2` doubles it.
        let thursday_11h = 1_759_968_000_000 + 11 * HOUR; // 2025-10-09 00:00 UTC + 11 h
        assert_eq!(live_per_hour(thursday_11h, 1), 90.0);
        assert_eq!(live_per_hour(thursday_11h + 2 * DAY, 2), 90.0 * 0.35 * 2.0);
    }

    /// Ten minutes of live traffic after the seeded week, through the
    /// detector as the demo runs it (the history replayed, then live rows):
    /// the ordinary traffic raises nothing, and the deliberate runaway is one
    /// incident named after the support key, its excess about what it cost.
    #[test]
    fn ten_minutes_of_live_traffic_raise_one_incident_the_runaway() {
        use crate::observe::anomaly::{Detector, DetectorConfig, Incident, IncidentBook};
        let providers = providers();
        // 2025-10-09 08:53:20 UTC, a Thursday: the runaway (08:54:50 to 08:56:10) is in one hour.
        let now = 1_760_000_000_000;
        let keys: BTreeMap<String, String> =
            [("growth", "k1"), ("search", "k2"), ("support", "k3"), ("platform", "k4"), ("research", "k5")]
                .map(|(a, b)| (a.into(), b.into()))
                .into();
        let history = History::new(&providers, keys.clone(), now, 7).generate();

        // The live rows, priced as the seeded ones are.
        let mut live = History::new(&providers, keys, now, 7);
        let mut rng = StdRng::seed_from_u64(7);
        let mut at = now + 1_000;
        while at < now + 10 * 60_000 {
            let kind = pick_kind(&mut rng);
            match kind.agent {
                Some((agent, small)) => live.agent_run(
                    at,
                    kind.team,
                    kind.feature,
                    agent,
                    kind.model,
                    small,
                    &["search"],
                    kind.prompt_bytes as u64,
                    1..4,
                ),
                None => {
                    let mut c = live.call(at, kind.team, kind.feature, kind.model);
                    c.prompt_bytes = kind.prompt_bytes as u64;
                    c.output_tokens = kind.output_tokens;
                    c.prompt = kind.prompt.map(String::from);
                    live.push(&c, Outcome::Ok { attempts: 1 });
                }
            }
            let u: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
            at += (-u.ln() * 3_600_000.0 / live_per_hour(at, 1)) as i64;
        }
        let start = now + i64::try_from(RUNAWAY_AFTER.as_millis()).unwrap();
        let every = i64::try_from(RUNAWAY_EVERY.as_millis()).unwrap();
        for i in 0..RUNAWAY_CALLS {
            let mut c = live.call(start + i as i64 * every, "support", "reply-draft", "claude-sonnet-4-5");
            c.env = "prod";
            c.prompt_bytes = 60_000;
            c.output_tokens = 800;
            c.prompt = Some("reply-draft@v2".into());
            c.session = Some("sess-live-backlog".into());
            c.stream = false;
            live.push(&c, Outcome::Ok { attempts: 1 });
        }
        let mut live = live.rows;
        live.sort_by_key(|r| r.time_ms);
        let runaway_cost: Money = live
            .iter()
            .filter(|r| r.attribution.session.as_deref() == Some("sess-live-backlog"))
            .filter_map(|r| r.cost)
            .sum();
        assert!(runaway_cost > Money::from_usd(3), "{runaway_cost}");

        let mut detector = Detector::new(DetectorConfig::default());
        let mut book = IncidentBook::default();
        for r in history.iter().chain(&live) {
            book.apply(&detector.findings(r));
        }
        let all = book.ranked();
        let summaries: Vec<String> = all.iter().map(Incident::summary).collect();
        assert!(all.len() <= 8, "a handful of incidents, not {}: {summaries:#?}", all.len());
        let new: Vec<&Incident> = all.iter().filter(|i| i.first_seen_ms >= now).collect();
        assert_eq!(new.len(), 1, "{summaries:#?}");
        let runaway = new[0];
        assert_eq!(runaway.name, "key k3", "{summaries:#?}");
        for (dim, value) in [("team", "support"), ("feature", "reply-draft"), ("model", "claude-sonnet-4-5")] {
            assert!(runaway.dimensions.iter().any(|(d, v)| *d == dim && v == value), "{}", runaway.summary());
        }
        // The excess is what the runaway cost, give or take the hour's ordinary spend.
        let excess = runaway.excess.unwrap_or(Money::ZERO);
        let slack = Money::from_usd(1);
        assert!(
            excess > runaway_cost.saturating_sub(slack) && excess < runaway_cost + slack,
            "{excess} vs {runaway_cost}"
        );
    }
}
