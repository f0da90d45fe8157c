//! The command line (docs/cli.md). `main.rs` only parses and calls [`run`].

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};

use crate::config::{Config, ProcessEnv};
use crate::keys::{self, KeySpec};
use crate::server::{key_hasher, Gateway};
use crate::store::Stores;

#[derive(Debug, Parser)]
#[command(
    name = "tollgate",
    version,
    about = "An LLM gateway that meters, prices, attributes and governs every request"
)]
pub struct Cli {
    /// Config file (default: ./tollgate.toml if present, else built-in defaults).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Database URL (overrides `[storage] url`), e.g. sqlite://tollgate.db.
    #[arg(long, global = true)]
    pub db: Option<String>,
    /// Run admin commands against a running gateway instead of the database.
    #[arg(long, global = true)]
    pub url: Option<String>,
    /// Admin token for --url (default: $TOLLGATE_ADMIN_TOKEN).
    #[arg(long, global = true, env = "TOLLGATE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve {
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Start the gateway with mock providers and synthetic traffic.
    Demo(crate::demo::DemoArgs),
    /// Run a fake OpenAI/Anthropic/Gemini upstream for tests and benchmarks.
    MockProvider {
        #[arg(long, default_value = "127.0.0.1:9999")]
        listen: SocketAddr,
        /// Delay before the first byte of every answer.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
        /// Delay between stream chunks.
        #[arg(long, default_value_t = 0)]
        chunk_delay_ms: u64,
    },
    /// Manage virtual keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Spend, tokens and requests grouped by any attribution dimension.
    Report(ReportArgs),
    /// Budgets on any scope: set, list, status.
    #[command(subcommand)]
    Budgets(BudgetsCommand),
    /// The price catalog: list, show, import, check.
    #[command(subcommand)]
    Prices(crate::prices_cli::PricesCommand),
    /// The audit log: who changed keys, budgets, limits, prices and the configuration.
    #[command(subcommand)]
    Audit(crate::audit_cli::AuditCommand),
    /// Compare the ledger with a provider's own cost and usage reports
    /// (OpenAI's organization costs and usage, Anthropic's cost and usage
    /// reports), per UTC day and model; saves the result.
    Reconcile(crate::finops_cli::ReconcileArgs),
    /// Chargeback and showback: spend per day × model × a dimension as a
    /// FOCUS CSV, with `[[rate_cards]]` applied (billed cost).
    Export(crate::finops_cli::ExportArgs),
    /// Re-price the ledger's history under another model mapping, candidate
    /// routing rules, batch prices or an exact cache: cost before and after.
    Whatif(crate::finops_cli::WhatIfArgs),
    /// Make the running gateway re-read its configuration file (as SIGHUP
    /// does): providers, routes, routing rules, guardrails, access rules and
    /// prices are swapped at once; a bad file changes nothing and says why.
    /// Talks to --url (default: the configuration's listen address).
    Reload,
}

#[derive(Debug, Subcommand)]
pub enum BudgetsCommand {
    /// Create or replace a budget.
    Set {
        /// k=v[,k=v]: key=`<key id>`, team, user, org, model, provider or any tag.
        #[arg(long)]
        scope: String,
        /// USD, e.g. 500 or 12.50.
        #[arg(long)]
        limit: String,
        /// day | week | month | rolling:DURATION (e.g. rolling:1h).
        #[arg(long)]
        period: String,
        /// block | alert | clamp | downgrade:MODEL
        #[arg(long, default_value = "block")]
        action: String,
        /// Alert thresholds, e.g. 0.5,0.8,1.0
        #[arg(long)]
        alert_at: Option<String>,
        /// Refuse requests to models without a known price.
        #[arg(long)]
        block_unpriced: bool,
        /// Budget id (default: SCOPE/PERIOD).
        #[arg(long)]
        id: Option<String>,
    },
    /// List budgets as configured.
    List,
    /// Spent, reserved and remaining of each budget this period.
    Status,
    /// Delete a budget by id.
    Delete { id: String },
    /// Replay the ledger's history against a budget: when it would have
    /// triggered and what it would have refused (nothing is changed).
    Simulate(crate::finops_cli::SimulateArgs),
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Dimensions to group by, comma separated (team, model, feature, any tag…).
    #[arg(long, value_delimiter = ',')]
    pub by: Vec<String>,
    /// Start: a duration back from now (7d, 24h) or an RFC 3339 time.
    #[arg(long, default_value = "7d")]
    pub since: String,
    /// Only rows where dimension=value (repeatable).
    #[arg(long = "filter", value_parser = parse_kv)]
    pub filters: Vec<(String, String)>,
    /// Add a time bucket column: hour or day.
    #[arg(long)]
    pub bucket: Option<String>,
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Table,
    Csv,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key; its secret is printed once.
    Create(Box<CreateKey>),
    /// List keys (never their secrets).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by id.
    Revoke { id: String },
}

#[derive(Debug, Args)]
pub struct CreateKey {
    #[arg(long)]
    pub name: String,
    #[arg(long)]
    pub team: Option<String>,
    #[arg(long)]
    pub user: Option<String>,
    /// Default tag the request may override (repeatable): --tag env=prod
    #[arg(long = "tag", value_parser = parse_kv)]
    pub tags: Vec<(String, String)>,
    /// Tag the request cannot override (repeatable).
    #[arg(long = "enforce-tag", value_parser = parse_kv)]
    pub enforce_tags: Vec<(String, String)>,
    /// Allowed models, comma separated; `*` wildcards (default: all).
    #[arg(long, value_delimiter = ',')]
    pub models: Vec<String>,
    /// Expiry: RFC 3339 time or a duration like 30d, 12h.
    #[arg(long)]
    pub expires: Option<String>,
    /// A blocking budget on this key: USD/PERIOD, e.g. 50/month or 5/rolling:1h.
    #[arg(long)]
    pub budget: Option<String>,
    #[arg(long)]
    pub rpm: Option<u64>,
    #[arg(long)]
    pub tpm: Option<u64>,
    #[arg(long)]
    pub json: bool,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .ok_or_else(|| format!("{s:?} is not key=value"))
}
pub use crate::time::parse_duration;

/// `SIGHUP` re-reads the configuration file (see `server::reload`).
/// Holds the state weakly: the ledger drains at shutdown only once every
/// holder of the state is gone.
fn reload_on_sighup(state: std::sync::Arc<crate::state::AppState>) {
    let state = std::sync::Arc::downgrade(&state);
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP: reload with `tollgate reload` instead");
            return;
        };
        while hangups.recv().await.is_some() {
            let Some(state) = state.upgrade() else { return };
            let who = crate::audit::AuditEntry::new(
                crate::time::now_ms(),
                "signal:SIGHUP",
                "admin",
                crate::audit::CONFIG_RELOAD,
                "",
            )
            .with_source(Some("signal"));
            match crate::server::reload(&state, who).await {
                Ok(done) => eprintln!("tollgate: {done}"),
                Err(e) => eprintln!("tollgate: the configuration was not reloaded (nothing changed): {e}"),
            }
        }
    });
}

/// `tollgate reload`: asks the running gateway (`--url`, else the
/// configuration's listen address) to re-read its configuration file.
async fn reload_command(cli: &Cli) -> anyhow::Result<()> {
    let url = match &cli.url {
        Some(u) => u.trim_end_matches('/').to_owned(),
        None => format!("http://{}", load_config(cli)?.server.listen),
    };
    let mut req = reqwest::Client::new().post(format!("{url}/admin/v1/reload"));
    if let Some(t) = cli.admin_token.as_deref() {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.with_context(|| format!("cannot reach the gateway at {url}"))?;
    let status = r.status();
    let v: serde_json::Value = r.json().await.context("the gateway answered non-JSON")?;
    if !status.is_success() {
        anyhow::bail!("{}", v["error"]["message"].as_str().unwrap_or("the gateway refused the reload"));
    }
    println!("{}", v["message"].as_str().unwrap_or("reloaded"));
    Ok(())
}

fn finops_target(cli: &Cli) -> anyhow::Result<crate::finops_cli::Target<'_>> {
    Ok(crate::finops_cli::Target {
        config: load_config(cli)?,
        url: cli.url.as_deref(),
        admin_token: cli.admin_token.as_deref(),
    })
}

fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    let mut config = Config::load(cli.config.as_deref(), &ProcessEnv)?;
    if let Some(db) = &cli.db {
        config.storage.url = db.clone();
    }
    Ok(config)
}

async fn open_store(config: &Config) -> anyhow::Result<Stores> {
    Stores::open_config(&config.storage)
        .await
        .with_context(|| format!("cannot open the database {}", config.storage.url_shown()))
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Serve { listen } => {
            let mut config = load_config(&cli)?;
            if let Some(l) = listen {
                config.server.listen = *l;
            }
            let store = open_store(&config).await?;
            let listen = config.server.listen;
            tracing::info!(config = %config.source, providers = config.providers.len(), db = %config.storage.url_shown(), "starting");
            let gateway = Gateway::build(config, store).await?;
            let listener =
                tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
            eprintln!("tollgate listening on http://{}", listener.local_addr()?);
            reload_on_sighup(gateway.state.clone());
            gateway.serve(listener, shutdown_signal()).await?;
            eprintln!("tollgate stopped; ledger drained");
            Ok(())
        }
        Command::Demo(args) => crate::demo::run(args.clone()).await,
        Command::MockProvider { listen, latency_ms, chunk_delay_ms } => {
            let listener =
                tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
            eprintln!("mock provider listening on http://{}", listener.local_addr()?);
            let cfg = tollgate_mock::MockConfig {
                latency_ms: *latency_ms,
                chunk_delay_ms: *chunk_delay_ms,
                ..Default::default()
            };
            tokio::select! {
                r = tollgate_mock::serve(listener, cfg) => r?,
                _ = shutdown_signal() => {}
            }
            Ok(())
        }
        Command::Reload => reload_command(&cli).await,
        Command::Reconcile(args) => crate::finops_cli::reconcile(finops_target(&cli)?, args).await,
        Command::Export(args) => crate::finops_cli::export(finops_target(&cli)?, args).await,
        Command::Whatif(args) => crate::finops_cli::whatif(finops_target(&cli)?, args).await,
        Command::Audit(cmd) => crate::audit_cli::run(&load_config(&cli)?, cli.url.as_deref(), cmd).await,
        Command::Keys(cmd) => keys_command(&cli, cmd).await,
        Command::Report(args) => report(&cli, args).await,
        Command::Budgets(cmd) => budgets_command(&cli, cmd).await,
        Command::Prices(cmd) => {
            if let (Some(url), crate::prices_cli::PricesCommand::Update { .. }) = (&cli.url, cmd) {
                return crate::prices_cli::remote_update(url, cli.admin_token.as_deref(), cmd).await;
            }
            let config = load_config(&cli)?;
            // The prices the gateway would use: built-in, the price updates in
            // the database (when there is one already: never created for this),
            // then [[prices]].
            let sqlite_file = config.storage.url.strip_prefix("sqlite://");
            let has_db = sqlite_file.is_none_or(|f| f != ":memory:" && std::path::Path::new(f).exists());
            let mut base = tollgate_pricing::Catalog::builtin().clone();
            if has_db && !matches!(cmd, crate::prices_cli::PricesCommand::Generate { .. }) {
                let updates = open_store(&config).await?.governance.price_updates().await?;
                base = crate::pricing::Prices::base_with(&updates)?;
            }
            let catalog = match &config.prices {
                Some(extra) => base.merged(extra),
                None => base,
            };
            crate::prices_cli::run(cmd, &catalog, open_store(&config)).await
        }
    }
}

async fn keys_command(cli: &Cli, cmd: &KeysCommand) -> anyhow::Result<()> {
    if let Some(url) = &cli.url {
        return remote_keys(url, cli.admin_token.as_deref(), cmd).await;
    }
    let config = load_config(cli)?;
    let store = open_store(&config).await?;
    let now = crate::time::now_ms();
    match cmd {
        KeysCommand::Create(c) => {
            let spec = key_spec(c, now)?;
            let hasher = key_hasher(&config, store.keys.as_ref()).await?;
            let created =
                keys::create_with_limits(&store, &hasher, spec, now).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            crate::audit_cli::key_created(&store, &created, now).await;
            print_created(&keys::created_json(&created), c.json)
        }
        KeysCommand::List { json } => {
            let list = store.keys.list_keys().await?;
            let v: Vec<_> = list.iter().map(keys::record_json).collect();
            print_list(&v, *json)
        }
        KeysCommand::Revoke { id } => {
            if !crate::audit_cli::revoke_key(&store, id, now).await? {
                bail!("no key with id {id:?}");
            }
            println!("revoked {id}");
            Ok(())
        }
    }
}

fn key_spec(c: &CreateKey, now_ms: i64) -> anyhow::Result<KeySpec> {
    let expires_ms = match &c.expires {
        None => None,
        Some(s) => Some(match parse_duration(s) {
            Some(d) => now_ms + d.num_milliseconds(),
            None => chrono::DateTime::parse_from_rfc3339(s)
                .with_context(|| format!("--expires {s:?} is neither a duration (30d) nor an RFC 3339 time"))?
                .timestamp_millis(),
        }),
    };
    Ok(KeySpec {
        name: c.name.clone(),
        team: c.team.clone(),
        user: c.user.clone(),
        tags: c.tags.clone(),
        enforce_tags: c.enforce_tags.clone(),
        models: c.models.clone(),
        expires_ms,
        budget: c.budget.clone(),
        rpm: c.rpm.map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
        tpm: c.tpm.map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
    })
}

fn print_created(v: &serde_json::Value, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(v)?);
    } else {
        println!("created key {} ({})", v["id"].as_str().unwrap_or(""), v["name"].as_str().unwrap_or(""));
        println!("secret (shown once, store it now): {}", v["key"].as_str().unwrap_or(""));
    }
    Ok(())
}

fn print_list(v: &[serde_json::Value], json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(v)?);
        return Ok(());
    }
    println!("{:<18} {:<20} {:<9} {:<10} TAGS", "ID", "NAME", "PREFIX", "STATUS");
    for k in v {
        let status = if !k["revoked_at"].is_null() { "revoked" } else { "active" };
        println!(
            "{:<18} {:<20} {:<9} {:<10} {}",
            k["id"].as_str().unwrap_or(""),
            k["name"].as_str().unwrap_or(""),
            k["prefix"].as_str().unwrap_or(""),
            status,
            k["tags"]
        );
    }
    Ok(())
}

async fn remote_keys(url: &str, token: Option<&str>, cmd: &KeysCommand) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let base = url.trim_end_matches('/');
    let auth = |b: reqwest::RequestBuilder| match token {
        Some(t) => b.bearer_auth(t),
        None => b,
    };
    let check = |r: reqwest::Response| async move {
        let status = r.status();
        let v: serde_json::Value = r.json().await.context("the gateway answered non-JSON")?;
        if !status.is_success() {
            bail!("the gateway answered {status}: {}", v["error"]["message"].as_str().unwrap_or(""));
        }
        Ok(v)
    };
    match cmd {
        KeysCommand::Create(c) => {
            let spec = key_spec(c, crate::time::now_ms())?;
            let body = serde_json::json!({
                "name": spec.name, "team": spec.team, "user": spec.user,
                "tags": spec.tags.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
                "enforce_tags": spec.enforce_tags.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
                "models": spec.models,
                "expires_at": spec.expires_ms.and_then(chrono::DateTime::<chrono::Utc>::from_timestamp_millis),
                "budget": spec.budget, "rpm": spec.rpm, "tpm": spec.tpm,
            });
            let v = check(auth(http.post(format!("{base}/admin/v1/keys"))).json(&body).send().await?).await?;
            print_created(&v, c.json)
        }
        KeysCommand::List { json } => {
            let v = check(auth(http.get(format!("{base}/admin/v1/keys"))).send().await?).await?;
            print_list(v["keys"].as_array().map(Vec::as_slice).unwrap_or(&[]), *json)
        }
        KeysCommand::Revoke { id } => {
            check(auth(http.post(format!("{base}/admin/v1/keys/{id}/revoke"))).send().await?).await?;
            println!("revoked {id}");
            Ok(())
        }
    }
}

pub use crate::server::shutdown_signal;

async fn report(cli: &Cli, args: &ReportArgs) -> anyhow::Result<()> {
    use crate::analytics::{self, Bucket, SpendQuery};
    let err = |e: crate::error::ApiError| anyhow::anyhow!("{e}");
    let now = crate::time::now_ms();
    let mut q = SpendQuery {
        group_by: args.by.iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
        from_ms: Some(analytics::parse_since(&args.since, now).map_err(err)?),
        to_ms: None,
        bucket: args.bucket.as_deref().map(Bucket::parse).transpose().map_err(err)?,
        filters: args.filters.clone(),
    };
    for d in q.group_by.iter().chain(q.filters.iter().map(|(d, _)| d)) {
        analytics::check_dimension(d).map_err(err)?;
    }
    let (report, billed) = if let Some(url) = &cli.url {
        // Remote: the same query through the API, re-rendered here.
        let mut params: Vec<(String, String)> = vec![("from".into(), args.since.clone())];
        if !q.group_by.is_empty() {
            params.push(("group_by".into(), q.group_by.join(",")));
        }
        if let Some(b) = &args.bucket {
            params.push(("bucket".into(), b.clone()));
        }
        for (k, v) in &q.filters {
            params.push(("filter".into(), format!("{k}:{v}")));
        }
        let mut req = reqwest::Client::new().get(format!("{}/api/v1/spend", url.trim_end_matches('/'))).query(&params);
        if let Some(t) = &cli.admin_token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            bail!("the gateway answered {status}: {text}");
        }
        if args.format == ReportFormat::Json {
            println!("{text}");
            return Ok(());
        }
        bail!("--url supports --format json only; run the report on the database for table/csv");
    } else {
        let config = load_config(cli)?;
        let store = open_store(&config).await?;
        q.to_ms = None;
        let report = store.reports.spend(q.clone()).await?;
        // With [[rate_cards]], what each row bills beside its cost.
        let billed = analytics::billed_per_row(store.reports.as_ref(), &q, &report, &config.rate_cards).await?;
        (report, billed)
    };
    let billed = billed.as_deref();
    match args.format {
        ReportFormat::Table => print!("{}", analytics::report_table(&report, billed)),
        ReportFormat::Csv => print!("{}", analytics::report_csv(&report, billed)),
        ReportFormat::Json => {
            println!("{}", serde_json::to_string_pretty(&analytics::report_json_billed(&report, billed))?)
        }
    }
    Ok(())
}

async fn budgets_command(cli: &Cli, cmd: &BudgetsCommand) -> anyhow::Result<()> {
    if let BudgetsCommand::Simulate(args) = cmd {
        return crate::finops_cli::simulate(finops_target(cli)?, args).await;
    }
    let now = crate::time::now_ms();
    if let Some(url) = &cli.url {
        let http = reqwest::Client::new();
        let base = url.trim_end_matches('/');
        let auth = |b: reqwest::RequestBuilder| match &cli.admin_token {
            Some(t) => b.bearer_auth(t),
            None => b,
        };
        let req = match cmd {
            BudgetsCommand::Set { scope, limit, period, action, alert_at, block_unpriced, id } => {
                auth(http.post(format!("{base}/admin/v1/budgets"))).json(&serde_json::json!({
                    "id": id, "scope": scope, "limit_usd": limit, "period": period, "action": action,
                    "alert_at": alert_at.as_ref().map(|a| a.split(',').map(str::trim).collect::<Vec<_>>()),
                    "block_unpriced": block_unpriced,
                }))
            }
            BudgetsCommand::List | BudgetsCommand::Status => auth(http.get(format!("{base}/api/v1/budgets"))),
            BudgetsCommand::Delete { id } => auth(http.delete(format!("{base}/admin/v1/budgets/{id}"))),
            BudgetsCommand::Simulate(_) => unreachable!("answered above"),
        };
        let r = req.send().await?;
        let status = r.status();
        let text = r.text().await?;
        if !status.is_success() {
            bail!("the gateway answered {status}: {text}");
        }
        println!("{text}");
        return Ok(());
    }
    let config = load_config(cli)?;
    let store = open_store(&config).await?;
    match cmd {
        BudgetsCommand::Set { scope, limit, period, action, alert_at, block_unpriced, id } => {
            let body = crate::api::BudgetBody {
                id: id.clone(),
                scope: serde_json::Value::String(scope.clone()),
                limit_usd: limit.clone(),
                period: period.clone(),
                action: Some(action.clone()),
                alert_at: alert_at
                    .as_ref()
                    .map(|a| a.split(',').map(|s| serde_json::Value::String(s.trim().into())).collect()),
                block_unpriced: *block_unpriced,
            };
            let spec = crate::api::budget_spec(body).map_err(|e| anyhow::anyhow!("{e}"))?;
            crate::audit_cli::set_budget(&store, &spec, now).await?;
            println!("budget {} set: {} ${} per {} ({})", spec.id, spec.scope, spec.limit, spec.period, spec.action);
            Ok(())
        }
        BudgetsCommand::List => {
            for b in config.governance.budgets.iter().cloned().chain(store.governance.list_budgets().await?) {
                println!(
                    "{:<36} {:<28} ${:<16} {:<14} {}",
                    b.id,
                    b.scope.to_string(),
                    b.limit.to_string(),
                    b.period.to_string(),
                    b.action
                );
            }
            Ok(())
        }
        BudgetsCommand::Status => {
            // The ledger's view: settled spend this period (a running gateway also knows its reservations).
            let (governor, _rx) = crate::govern::Governor::new(config.governance.tz);
            for b in config.governance.budgets.iter().cloned().chain(store.governance.list_budgets().await?) {
                crate::govern::install_budget(&store, &governor, b, now).await?;
            }
            for s in governor.status(now).await {
                let v = crate::api::budget_json(&s, now);
                println!(
                    "{:<36} spent ${} of ${} ({}), remaining ${}, period ends {}, forecast run-out {}",
                    s.spec.id,
                    v["spent_usd"].as_str().unwrap_or(""),
                    v["limit_usd"].as_str().unwrap_or(""),
                    s.spec.period,
                    v["remaining_usd"].as_str().unwrap_or(""),
                    v["period_end"].as_str().unwrap_or("-"),
                    v["forecast_exhaustion"].as_str().unwrap_or("none"),
                );
            }
            Ok(())
        }
        BudgetsCommand::Delete { id } => {
            if !crate::audit_cli::delete_budget(&store, id, now).await? {
                bail!("no budget {id:?} in the database (budgets from the config file are changed there)");
            }
            println!("deleted {id}");
            Ok(())
        }
        BudgetsCommand::Simulate(_) => unreachable!("answered above"),
    }
}
