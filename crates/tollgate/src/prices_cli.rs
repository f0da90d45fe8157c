//! `tollgate prices list|show|import|check|generate|update`: the price catalog from the command line.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Subcommand;
use tollgate_pricing::{import, Catalog, PriceEntry};

use crate::store::Stores;

#[derive(Debug, Subcommand)]
pub enum PricesCommand {
    /// List the catalog (built-in, plus [[prices]] from the config).
    List {
        /// Only this provider (openai, anthropic, gemini, bedrock, …).
        #[arg(long)]
        provider: Option<String>,
    },
    /// Show the prices in force for a model, and its history.
    Show {
        model: String,
        #[arg(long)]
        provider: Option<String>,
        /// `text` (default) or `json`.
        #[arg(long, value_enum, default_value_t = ShowFormat::Text)]
        format: ShowFormat,
    },
    /// Apply a newer catalog (tollgate TOML, genai-prices or LiteLLM JSON, a
    /// file or an http(s) URL) to the gateways, without a restart: new models
    /// are priced at once, changed prices from today (UTC), earlier requests
    /// keep their cost. With --url, through that gateway's admin API.
    Update {
        /// A file, or an http(s) URL to fetch.
        #[arg(long)]
        from: String,
        /// Detected from the content when absent.
        #[arg(long, value_enum)]
        format: Option<crate::price_update::Format>,
        /// Show what would change; apply nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the diff as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Convert an outside catalog (genai-prices data.json or LiteLLM's price map) into ours.
    Import {
        file: PathBuf,
        #[arg(long, value_enum)]
        format: ImportFormat,
        /// Write the converted catalog here (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Models seen in the ledger without a price, and discrepancies with an outside catalog.
    Check {
        /// An outside catalog to compare with.
        #[arg(long)]
        against: Option<PathBuf>,
        #[arg(long, value_enum, requires = "against")]
        format: Option<ImportFormat>,
    },
    /// Regenerate the built-in catalog's generated part (`generated.toml`) and
    /// its report (`GENERATED.md`) from the two reference catalogs.
    Generate {
        /// genai-prices `data.json` (v2).
        #[arg(long)]
        genai: PathBuf,
        /// LiteLLM's `model_prices_and_context_window.json`.
        #[arg(long)]
        litellm: PathBuf,
        /// Folder to write to.
        #[arg(long, default_value = CATALOG_DIR)]
        out_dir: PathBuf,
    },
}

/// Where `prices generate` writes by default (run from the repository root).
const CATALOG_DIR: &str = "crates/tollgate-pricing/catalog";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ShowFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ImportFormat {
    GenaiPrices,
    Litellm,
}

fn rate(d: Option<rust_decimal::Decimal>) -> String {
    d.map(|d| format!("${}", d.normalize())).unwrap_or_else(|| "-".into())
}

fn entry_line(e: &PriceEntry) -> String {
    let r = &e.rates;
    format!(
        "{:<14} {:<44} {:<11} in {:<9} cached {:<9} write5m {:<9} out {:<9}{}",
        e.provider,
        e.model,
        e.effective_from.map(|d| d.to_string()).unwrap_or_else(|| "-".into()),
        rate(Some(r.input)),
        rate(r.cache_read),
        rate(r.cache_write_5m),
        rate(Some(r.output)),
        if e.long_context.is_empty() { "" } else { "  (long-context tier)" }
    )
}

/// One entry as JSON: rates as decimal strings, USD per million tokens.
fn entry_json(e: &PriceEntry) -> serde_json::Value {
    let d = |d: Option<rust_decimal::Decimal>| d.map(|d| d.normalize().to_string());
    let rates = |r: &tollgate_pricing::Rates| {
        serde_json::json!({
            "input": d(Some(r.input)), "cache_read": d(r.cache_read), "cache_write_5m": d(r.cache_write_5m),
            "cache_write_1h": d(r.cache_write_1h), "output": d(Some(r.output)), "reasoning": d(r.reasoning),
            "input_audio": d(r.input_audio), "output_audio": d(r.output_audio), "output_image": d(r.output_image),
            "input_image": d(r.input_image),
        })
    };
    let tier = |t: tollgate_pricing::ServiceTier| {
        e.service_tier(t).map(|_| {
            let r = e.rates_for(0, t);
            serde_json::json!({ "input": d(Some(r.input)), "output": d(Some(r.output)) })
        })
    };
    serde_json::json!({
        "provider": e.provider,
        "model": e.model,
        "aliases": e.aliases,
        "effective_from": e.effective_from.map(|d| d.to_string()),
        "source": e.source,
        "notes": e.notes,
        "unit": "USD per million tokens",
        "rates": rates(&e.rates),
        "long_context": e.long_context.iter().map(|t| serde_json::json!({
            "above_input_tokens": t.above_input_tokens, "rates": rates(&t.rates)
        })).collect::<Vec<_>>(),
        "batch": tier(tollgate_pricing::ServiceTier::Batch),
        "flex": tier(tollgate_pricing::ServiceTier::Flex),
        "priority": tier(tollgate_pricing::ServiceTier::Priority),
        "request_fee_usd": d(e.request_fee),
        "web_search_per_1k_usd": d(e.web_search_per_1k),
        "per_image_usd": d(e.per_image),
        "per_audio_second_usd": d(e.per_audio_second),
        "per_character_usd": d(e.per_character),
        "context_window": e.context_window,
        "max_output_tokens": e.max_output_tokens,
    })
}

fn read_outside(file: &PathBuf, format: ImportFormat) -> anyhow::Result<(Catalog, import::ImportReport)> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let r = match format {
        ImportFormat::GenaiPrices => import::genai_prices_with_report(&text),
        ImportFormat::Litellm => import::litellm_with_report(&text),
    };
    r.map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))
}

pub async fn run(
    cmd: &PricesCommand,
    catalog: &Catalog,
    store: impl std::future::Future<Output = anyhow::Result<Stores>>,
) -> anyhow::Result<()> {
    match cmd {
        PricesCommand::List { provider } => {
            println!("USD per million tokens");
            let mut n = 0;
            for e in catalog.entries() {
                if provider.as_deref().is_some_and(|p| p != e.provider) {
                    continue;
                }
                println!("{}", entry_line(e));
                n += 1;
            }
            println!("{n} entries");
            Ok(())
        }
        PricesCommand::Show { model, provider, format } => {
            let now = chrono::Utc::now();
            let Some(e) = catalog.lookup(provider.as_deref(), model, now) else {
                bail!("no price for {model:?}: requests to it are recorded as unpriced (add a [[prices]] entry to price it)");
            };
            if *format == ShowFormat::Json {
                let history: Vec<serde_json::Value> =
                    catalog.history(&e.provider, &e.model).into_iter().map(entry_json).collect();
                let v = serde_json::json!({ "requested": model, "in_force": entry_json(e), "history": history });
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            println!("{model} is priced as {} (source: {})", e.label(), e.source.as_deref().unwrap_or("-"));
            println!("USD per million tokens:");
            let r = &e.rates;
            for (name, v) in [
                ("input", Some(r.input)),
                ("cache_read", r.cache_read),
                ("cache_write_5m", r.cache_write_5m),
                ("cache_write_1h", r.cache_write_1h),
                ("output", Some(r.output)),
                ("reasoning", r.reasoning),
                ("input_audio", r.input_audio),
                ("output_audio", r.output_audio),
                ("output_image", r.output_image),
                ("input_image", r.input_image),
            ] {
                println!("  {name:<15} {}", rate(v));
            }
            for (unit, v) in
                [("an image", e.per_image), ("a second of audio", e.per_audio_second), ("a character", e.per_character)]
            {
                if let Some(v) = v {
                    println!("USD {} {unit}", v.normalize());
                }
            }
            for t in &e.long_context {
                println!(
                    "  above {} input tokens: input {} output {}",
                    t.above_input_tokens,
                    rate(Some(t.rates.input)),
                    rate(Some(t.rates.output))
                );
            }
            let limit = |n: Option<u64>| n.map_or_else(|| "unknown".to_owned(), |n| format!("{n} tokens"));
            println!("context window: {}; max output: {}", limit(e.context_window), limit(e.max_output_tokens));
            let history = catalog.history(&e.provider, &e.model);
            if history.len() > 1 {
                println!("history:");
                for h in history {
                    println!("  {}", entry_line(h));
                }
            }
            Ok(())
        }
        PricesCommand::Import { file, format, out } => {
            let (cat, report) = read_outside(file, *format)?;
            let text = cat.to_toml_string();
            match out {
                Some(p) => std::fs::write(p, &text).with_context(|| format!("cannot write {}", p.display()))?,
                None => print!("{text}"),
            }
            eprintln!(
                "imported {} entries from {} models; skipped {} models, {} conditional prices, {} duplicates; fields without a bucket: {:?}",
                report.entries_imported,
                report.models_read,
                report.skipped_models.len(),
                report.skipped_conditions,
                report.duplicates,
                report.skipped_fields
            );
            Ok(())
        }
        PricesCommand::Generate { genai, litellm, out_dir } => {
            let (g, gr) = read_outside(genai, ImportFormat::GenaiPrices)?;
            let (l, lr) = read_outside(litellm, ImportFormat::Litellm)?;
            let generated = import::reference::generate(&g, &l);
            let hand = Catalog::from_toml_str(Catalog::builtin_toml()).context("the hand-written catalog")?;
            let overrides: Vec<String> = import::discrepancies_at(&hand, &generated.catalog, chrono::Utc::now())
                .iter()
                .map(|d| format!("{d} (the hand-written entry is kept; its `notes` say why)"))
                .collect();
            let label = |p: &PathBuf, r: &import::ImportReport| {
                let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                format!("`{name}`, {} models read, {} entries", r.models_read, r.entries_imported)
            };
            let header = "# tollgate price catalog, generated part: written by `tollgate prices generate`\n\
                # from the genai-prices and LiteLLM reference catalogs (see GENERATED.md for\n\
                # what came from where and every conflict). Do not edit: entries in\n\
                # prices.toml replace the generated ones of the same model.\n";
            let toml = format!("{header}{}", generated.catalog.to_toml_string());
            let report =
                import::reference::report_markdown(&generated, &label(genai, &gr), &label(litellm, &lr), &overrides);
            std::fs::create_dir_all(out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
            for (name, text) in [("generated.toml", &toml), ("GENERATED.md", &report)] {
                let path = out_dir.join(name);
                std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
            }
            println!(
                "{} entries ({} models from genai-prices, {} from LiteLLM alone), {} conflicts, {} hand-written overrides differ; wrote {}",
                generated.catalog.len(),
                generated.from_genai,
                generated.from_litellm,
                generated.conflicts.len(),
                overrides.len(),
                out_dir.display()
            );
            Ok(())
        }
        PricesCommand::Update { from, format, dry_run, json } => {
            let text = crate::price_update::fetch(from).await?;
            let new = crate::price_update::read(&text, *format).map_err(|e| anyhow::anyhow!("{from}: {e}"))?;
            let store = store.await?;
            let now = crate::time::now_ms();
            let (id, diff) = if *dry_run {
                (None, crate::price_update::preview(&store, &new, now).await?)
            } else {
                crate::price_update::apply(&store, None, &new, from, "cli", now).await?
            };
            let mut v = crate::price_update::diff_json(&diff);
            if let Some(id) = id {
                crate::audit_cli::price_updated(&store, id, from, &v, now).await;
            }
            v["applied"] = serde_json::json!(id.is_some());
            v["id"] = serde_json::json!(id);
            print_update(&v, *json, *dry_run)
        }
        PricesCommand::Check { against, format } => {
            let store = store.await?;
            let unpriced = store.reports.unpriced_models().await?;
            if unpriced.is_empty() {
                println!("every model in the ledger has a price");
            } else {
                println!("models in the ledger without a price (their requests are `unpriced`, never counted as $0):");
                println!(
                    "  {:<14} {:<44} {:>9} {:>14} {:>14}  at today's catalog",
                    "provider", "model", "requests", "input tokens", "output tokens"
                );
                for (p, m, n) in &unpriced {
                    let risk = spend_at_risk(&store, catalog, p, m).await?;
                    let priced_now = match risk.repriced {
                        Some(usd) => format!("would cost ${usd} (the catalog prices it now)"),
                        None => "no price yet: add one ([[prices]] or `prices update`)".to_owned(),
                    };
                    println!(
                        "  {p:<14} {m:<44} {n:>9} {:>14} {:>14}  {priced_now}{}",
                        risk.input_tokens,
                        risk.output_tokens,
                        if risk.complete { "" } else { " (first 100,000 requests)" }
                    );
                }
            }
            provider_costs(&store).await?;
            if let (Some(file), Some(fmt)) = (against, format) {
                let (theirs, _) = read_outside(file, *fmt)?;
                let diffs = import::discrepancies(catalog, &theirs);
                println!("{} discrepancies with {}:", diffs.len(), file.display());
                for d in diffs {
                    println!(
                        "  {:<12} {:<40} {:<28} ours {:<10} theirs {}",
                        d.provider,
                        d.model,
                        d.what,
                        rate(d.ours),
                        rate(d.theirs)
                    );
                }
            }
            Ok(())
        }
    }
}

fn print_update(v: &serde_json::Value, json: bool, dry_run: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(v)?);
        return Ok(());
    }
    print!("{}", crate::price_update::diff_text(v));
    match v["id"].as_i64() {
        Some(id) => println!("applied as price update #{id}: running gateways take it within 2 s"),
        None if dry_run => println!("dry run: nothing applied"),
        None => println!("nothing changes: nothing applied"),
    }
    Ok(())
}

/// `prices update` through a running gateway's admin API (`--url`).
pub async fn remote_update(url: &str, token: Option<&str>, cmd: &PricesCommand) -> anyhow::Result<()> {
    let PricesCommand::Update { from, format, dry_run, json } = cmd else {
        bail!("only `prices update` goes through --url");
    };
    let text = crate::price_update::fetch(from).await?;
    let body = serde_json::json!({ "catalog": text, "format": format, "source": from, "dry_run": dry_run });
    let mut req = reqwest::Client::new().post(format!("{}/admin/v1/prices", url.trim_end_matches('/'))).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.context("cannot reach the gateway")?;
    let status = r.status();
    let v: serde_json::Value = r.json().await.context("the gateway answered non-JSON")?;
    if !status.is_success() {
        bail!("the gateway answered {status}: {}", v["error"]["message"].as_str().unwrap_or(""));
    }
    print_update(&v, *json, *dry_run)
}

/// What the unpriced requests of one model consumed, and what they would
/// cost at the catalog's prices of their day if it knows the model now.
struct AtRisk {
    input_tokens: u64,
    output_tokens: u64,
    repriced: Option<tollgate_units::Money>,
    /// Every unpriced request was read (at most 100,000 are).
    complete: bool,
}

async fn spend_at_risk(store: &Stores, catalog: &Catalog, provider: &str, model: &str) -> anyhow::Result<AtRisk> {
    const MAX_ROWS: usize = 100_000;
    let mut risk = AtRisk { input_tokens: 0, output_tokens: 0, repriced: None, complete: true };
    let mut filters = vec![("model".to_owned(), model.to_owned())];
    if !provider.is_empty() {
        filters.push(("provider".to_owned(), provider.to_owned()));
    }
    let (mut cursor, mut seen) = (None, 0usize);
    loop {
        let page = store
            .requests
            .requests(crate::query::RequestQuery { filters: filters.clone(), limit: 1_000, cursor })
            .await?;
        for r in page.rows.iter().filter(|r| r.cost.is_none()) {
            risk.input_tokens += r.usage.input_tokens();
            risk.output_tokens += r.usage.output_tokens();
            let at = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(r.time_ms).unwrap_or_else(chrono::Utc::now);
            let entry = catalog.lookup((!provider.is_empty()).then_some(provider), model, at);
            if let Some(e) = entry {
                let c = tollgate_pricing::cost(e, &r.usage, tollgate_pricing::ServiceTier::Standard).total;
                risk.repriced = Some(risk.repriced.unwrap_or(tollgate_units::Money::ZERO).saturating_add(c));
            }
        }
        seen += page.rows.len();
        match page.next_cursor {
            Some(c) if seen < MAX_ROWS => cursor = Some(c),
            Some(_) => {
                risk.complete = false;
                break;
            }
            None => break,
        }
    }
    Ok(risk)
}

/// Requests whose provider reported its own cost, compared with ours, per
/// provider and model (the newest 100,000 requests): a catalog entry that
/// has drifted shows as disagreements.
async fn provider_costs(store: &Stores) -> anyhow::Result<()> {
    use std::collections::BTreeMap;
    const MAX_ROWS: usize = 100_000;
    // (provider, model) → (reported, disagreeing, our sum, their sum)
    type Tally = (u64, u64, tollgate_units::Money, tollgate_units::Money);
    let mut by: BTreeMap<(String, String), Tally> = BTreeMap::new();
    let (mut cursor, mut seen) = (None, 0usize);
    loop {
        let page =
            store.requests.requests(crate::query::RequestQuery { filters: vec![], limit: 1_000, cursor }).await?;
        for r in &page.rows {
            let (Some(theirs), Some(ours)) = (r.provider_cost, r.cost) else { continue };
            let t = by
                .entry((r.provider.clone().unwrap_or_default(), r.model.clone().unwrap_or_default()))
                .or_insert((0, 0, tollgate_units::Money::ZERO, tollgate_units::Money::ZERO));
            t.0 += 1;
            t.1 += u64::from(crate::pricing::disagrees(ours, theirs));
            t.2 = t.2.saturating_add(ours);
            t.3 = t.3.saturating_add(theirs);
        }
        seen += page.rows.len();
        match page.next_cursor {
            Some(c) if seen < MAX_ROWS => cursor = Some(c),
            _ => break,
        }
    }
    if by.is_empty() {
        println!("no provider reported its own cost (OpenRouter's usage.cost and the like) in the newest requests");
        return Ok(());
    }
    println!("requests whose provider reported its own cost (newest {MAX_ROWS} at most); a disagreement is over 1 % and $0.000001:");
    println!(
        "  {:<14} {:<44} {:>9} {:>13} {:>16} {:>16}",
        "provider", "model", "reported", "disagreeing", "ours", "theirs"
    );
    for ((p, m), (n, d, ours, theirs)) in &by {
        println!("  {p:<14} {m:<44} {n:>9} {d:>13} {:>16} {:>16}", format!("${ours}"), format!("${theirs}"));
    }
    Ok(())
}
