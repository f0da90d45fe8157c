//! The FinOps commands: `tollgate reconcile` (the ledger against a
//! provider's own cost and usage reports) and `tollgate export` (FOCUS
//! chargeback CSV).

use anyhow::Context;
use clap::Args;

use crate::config::Config;
use crate::store::Stores;

/// What a FinOps command gets from the global options: the configuration
/// (with `--db` applied), and `--url` / `--admin-token` for a running gateway.
pub struct Target<'a> {
    pub config: Config,
    pub url: Option<&'a str>,
    pub admin_token: Option<&'a str>,
}

/// `--since` (a duration back from now, a date or an RFC 3339 time) and
/// `--until` (default now), as Unix ms.
fn window(since: &str, until: Option<&str>) -> anyhow::Result<(i64, i64)> {
    let err = |e: crate::error::ApiError| anyhow::anyhow!("{e}");
    let now = crate::time::now_ms();
    let from = crate::analytics::parse_day_or_time(since, now, "since").map_err(err)?;
    let to = match until {
        Some(u) => crate::analytics::parse_day_or_time(u, now, "until").map_err(err)?,
        None => now,
    };
    Ok((from, to))
}

async fn open_store(config: &Config) -> anyhow::Result<Stores> {
    Stores::open_config(&config.storage)
        .await
        .with_context(|| format!("cannot open the database {}", config.storage.url_shown()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReconcileFormat {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// The `[[providers]]` name (kind openai or anthropic, with `admin_key_env`).
    #[arg(long)]
    pub provider: String,
    /// Start: a duration back from now (30d) or an RFC 3339 time; whole UTC days.
    #[arg(long, default_value = "30d")]
    pub since: String,
    /// End (RFC 3339; default now); whole UTC days.
    #[arg(long)]
    pub until: Option<String>,
    /// Read the provider's side from this CSV file instead of its API
    /// (columns named as the API's fields; see docs/finops.md).
    #[arg(long, value_name = "FILE")]
    pub from_csv: Option<std::path::PathBuf>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: ReconcileFormat,
}

/// `tollgate reconcile`: on the database (the configuration's providers and
/// admin keys), or with `--url` on a running gateway (JSON only).
pub async fn reconcile(cli: Target<'_>, args: &ReconcileArgs) -> anyhow::Result<()> {
    let err = |e: crate::error::ApiError| anyhow::anyhow!("{e}");
    let now = crate::time::now_ms();
    let since = crate::analytics::parse_since(&args.since, now).map_err(err)?;
    let until = match &args.until {
        Some(u) => crate::analytics::parse_time(u, "until").map_err(err)?,
        None => now,
    };
    if let (Some(_), Some(_)) = (cli.url, &args.from_csv) {
        anyhow::bail!("--from-csv reads a file here: run it on the database, without --url");
    }
    if let Some(url) = cli.url {
        if args.format != ReconcileFormat::Json {
            anyhow::bail!("--url supports --format json only; run on the database for the table");
        }
        let mut params = vec![("provider", args.provider.clone()), ("since", args.since.clone())];
        if let Some(u) = &args.until {
            params.push(("until", u.clone()));
        }
        let mut req = reqwest::Client::new()
            .post(format!("{}/admin/v1/reconciliation/run", url.trim_end_matches('/')))
            .query(&params);
        if let Some(t) = cli.admin_token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.with_context(|| format!("cannot reach the gateway at {url}"))?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            anyhow::bail!("the gateway answered {status}: {text}");
        }
        println!("{text}");
        return Ok(());
    }
    let config = cli.config;
    let provider = config
        .providers
        .iter()
        .find(|p| p.name == args.provider)
        .ok_or_else(|| anyhow::anyhow!("provider {:?} is not in [[providers]]", args.provider))?;
    let store = open_store(&config).await?;
    let prices = crate::pricing::Prices::new(config.prices.clone());
    prices.install(&store.governance.price_updates().await?).map_err(|e| anyhow::anyhow!("{e}"))?;
    let pricing = prices.load();
    let lines = match &args.from_csv {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            let report = crate::reconcile::report_from_csv(&text, provider.kind)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            crate::reconcile::reconcile_from_report(&store, &pricing, provider, report, since, until, now).await?
        }
        None => {
            let http = reqwest::Client::new();
            crate::reconcile::run_and_save(&http, &store, &pricing, provider, since, until, None, now).await?
        }
    };
    match args.format {
        ReconcileFormat::Table => print!("{}", crate::reconciliation::report_table(&lines)),
        ReconcileFormat::Json => {
            println!("{}", serde_json::to_string_pretty(&crate::reconciliation::report_json(&lines))?)
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// The FinOps Open Cost and Usage Specification's columns (CSV).
    Focus,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[arg(long, value_enum, default_value = "focus")]
    pub format: ExportFormat,
    /// Start: a date (2026-11-01, UTC), an RFC 3339 time or a duration back from now.
    #[arg(long)]
    pub since: String,
    /// End, exclusive (a date or RFC 3339 time; default now).
    #[arg(long)]
    pub until: Option<String>,
    /// One row per day × provider × model × this dimension (team, feature, customer…).
    #[arg(long)]
    pub by: Option<String>,
    /// Write here instead of standard output.
    #[arg(long, short)]
    pub output: Option<std::path::PathBuf>,
}

/// `tollgate export --format focus`: chargeback/showback CSV, rate cards applied.
pub async fn export(cli: Target<'_>, args: &ExportArgs) -> anyhow::Result<()> {
    let err = |e: crate::error::ApiError| anyhow::anyhow!("{e}");
    let (from, to) = window(&args.since, args.until.as_deref())?;
    anyhow::ensure!(from < to, "--since must be before --until");
    let config = cli.config;
    let store = open_store(&config).await?;
    let rows = crate::analytics::focus_export(
        store.reports.as_ref(),
        &config.rate_cards,
        args.by.as_deref(),
        from,
        to,
        Vec::new(),
    )
    .await
    .map_err(err)?;
    let mut out: Box<dyn std::io::Write> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    crate::chargeback::write_focus_csv(&rows, &mut out)?;
    out.flush()?;
    let (list, effective, billed) = crate::chargeback::totals(&rows);
    eprintln!("{} rows · list ${list} · effective ${effective} · billed ${billed}", rows.len());
    Ok(())
}

#[derive(Debug, Args)]
pub struct WhatIfArgs {
    /// Start: a duration back from now (30d), a date or an RFC 3339 time.
    #[arg(long, default_value = "30d")]
    pub since: String,
    /// End, exclusive (default now).
    #[arg(long)]
    pub until: Option<String>,
    /// Serve FROM's traffic with TO instead (repeatable; `*` globs on FROM).
    #[arg(long = "map", value_name = "FROM=TO")]
    pub maps: Vec<String>,
    /// Price the traffic of DIM=VALUE (team=growth, env=batch…) at batch rates (repeatable).
    #[arg(long = "batch", value_name = "DIM=VALUE")]
    pub batches: Vec<String>,
    /// Assume an exact response cache with this TTL (30m, 1h, none).
    #[arg(long)]
    pub cache: Option<String>,
    /// A configuration file whose `[[routing_rules]]` (and the providers and
    /// models they route to) are the candidate rules.
    #[arg(long)]
    pub rules: Option<std::path::PathBuf>,
    /// Group by these dimensions.
    #[arg(long, value_delimiter = ',', default_value = "team,feature,model")]
    pub by: Vec<String>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: ReconcileFormat,
}

/// `tollgate whatif`: replays the ledger's history under a scenario.
pub async fn whatif(cli: Target<'_>, args: &WhatIfArgs) -> anyhow::Result<()> {
    let err = |e: crate::error::ApiError| anyhow::anyhow!("{e}");
    let (from, to) = window(&args.since, args.until.as_deref())?;
    for d in &args.by {
        crate::analytics::check_dimension(d).map_err(err)?;
    }
    let rules = match &args.rules {
        Some(path) => Some(crate::config::Config::load(Some(path), &crate::config::ProcessEnv)?),
        None => None,
    };
    let scenario = crate::whatif::scenario_from(&args.maps, &args.batches, args.cache.as_deref(), rules.as_ref())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let config = cli.config;
    let store = open_store(&config).await?;
    let prices = crate::pricing::Prices::new(config.prices.clone());
    prices.install(&store.governance.price_updates().await?).map_err(|e| anyhow::anyhow!("{e}"))?;
    let pricing = prices.load();
    let replay = crate::whatif::Replay::new(&pricing, &scenario, &args.by).with_providers(&config.providers);
    let report = crate::whatif::replay_window(store.requests.as_ref(), replay, from, to).await?;
    match args.format {
        ReconcileFormat::Table => print!("{}", crate::whatif::report_table(&report, &args.by)),
        ReconcileFormat::Json => {
            println!("{}", serde_json::to_string_pretty(&crate::whatif::report_json(&report, &args.by))?)
        }
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// k=v[,k=v]: key=`<key id>`, team, user, org, model, provider or any tag.
    #[arg(long)]
    pub scope: String,
    /// USD, e.g. 500 or 12.50.
    #[arg(long)]
    pub limit: String,
    /// day | week | month | rolling:DURATION.
    #[arg(long)]
    pub period: String,
    /// Alert thresholds to report, e.g. 0.5,0.8,1.0.
    #[arg(long)]
    pub alert_at: Option<String>,
    /// Start: a duration back from now (90d), a date or an RFC 3339 time.
    #[arg(long, default_value = "90d")]
    pub since: String,
    /// End, exclusive (default now).
    #[arg(long)]
    pub until: Option<String>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: ReconcileFormat,
}

/// `tollgate budgets simulate`: a budget replayed over the ledger's history.
pub async fn simulate(cli: Target<'_>, args: &SimulateArgs) -> anyhow::Result<()> {
    let err = |e: crate::error::ApiError| anyhow::anyhow!("{e}");
    let (from, to) = window(&args.since, args.until.as_deref())?;
    anyhow::ensure!(from < to, "--since must be before --until");
    let spec = crate::api::budget_spec(crate::api::BudgetBody {
        id: Some("simulated".into()),
        scope: serde_json::Value::String(args.scope.clone()),
        limit_usd: args.limit.clone(),
        period: args.period.clone(),
        action: Some("block".into()),
        alert_at: args
            .alert_at
            .as_ref()
            .map(|a| a.split(',').map(|x| serde_json::Value::String(x.trim().to_owned())).collect()),
        block_unpriced: false,
    })
    .map_err(err)?;
    let config = cli.config;
    let store = open_store(&config).await?;
    let mut replayer = crate::budget_replay::Replayer::new(spec.clone(), config.governance.tz);
    let mut after: Option<(i64, String)> = None;
    loop {
        let page = store.requests.rows_between(from, to, after.clone(), crate::whatif::REPLAY_PAGE).await?;
        for row in &page {
            replayer.feed(row);
        }
        match page.last() {
            Some(last) if page.len() == crate::whatif::REPLAY_PAGE => {
                after = Some((last.time_ms, last.request_id.clone()))
            }
            _ => break,
        }
    }
    let replay = replayer.finish();
    match args.format {
        ReconcileFormat::Table => print!("{}", crate::budget_replay::replay_table(&spec, &replay)),
        ReconcileFormat::Json => {
            println!("{}", serde_json::to_string_pretty(&crate::budget_replay::replay_json(&spec, &replay))?)
        }
    }
    Ok(())
}
