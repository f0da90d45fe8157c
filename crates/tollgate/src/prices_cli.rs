//! `tollgate prices list|show|import|check|generate`: the price catalog from the command line.

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
        PricesCommand::Show { model, provider } => {
            let now = chrono::Utc::now();
            let Some(e) = catalog.lookup(provider.as_deref(), model, now) else {
                bail!("no price for {model:?}: requests to it are recorded as unpriced (add a [[prices]] entry to price it)");
            };
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
            ] {
                println!("  {name:<15} {}", rate(v));
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
        PricesCommand::Check { against, format } => {
            let store = store.await?;
            let unpriced = store.reports.unpriced_models().await?;
            if unpriced.is_empty() {
                println!("every model in the ledger has a price");
            } else {
                println!("models in the ledger without a price (their requests are `unpriced`):");
                for (p, m, n) in &unpriced {
                    println!("  {p:<14} {m:<44} {n} requests");
                }
            }
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
