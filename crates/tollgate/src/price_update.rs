//! Price updates: a newer catalog read, compared with the prices in force,
//! and applied to every gateway without a restart.
//!
//! An update is kept in the store (`price_updates`, oldest first); every
//! gateway rebuilds its prices from the built-in catalog and all updates in
//! order (`pricing::Prices::install`), so replicas and a later re-price agree.
//! What an update adds and changes is decided by
//! `tollgate_pricing::Catalog::with_update`: new models are priced at once,
//! changed prices from the update's UTC day, earlier rows keep their cost.

use serde_json::{json, Value};
use tollgate_pricing::update::CatalogDiff;
use tollgate_pricing::{import, Catalog};

use crate::pricing::Prices;
use crate::store::Stores;

/// The formats an update can come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// tollgate's catalog TOML (`prices.toml`, `generated.toml`, `prices import` output).
    Tollgate,
    /// pydantic genai-prices `data.json` (v2).
    GenaiPrices,
    /// LiteLLM's model price map.
    Litellm,
}

impl Format {
    /// Told apart by the first character: `[` genai-prices, `{` LiteLLM, else TOML.
    pub fn detect(text: &str) -> Format {
        match text.trim_start().chars().next() {
            Some('[') => Format::GenaiPrices,
            Some('{') => Format::Litellm,
            _ => Format::Tollgate,
        }
    }
}

/// Reads an update. A reference catalog keeps its first-party models only
/// (the providers the built-in catalog is generated for).
pub fn read(text: &str, format: Option<Format>) -> Result<Catalog, String> {
    let first_party = |c: Catalog| {
        c.filtered(|e| {
            import::reference::FIRST_PARTY.contains(&e.provider.as_str()) && !import::reference::routing_only(&e.model)
        })
    };
    let catalog = match format.unwrap_or_else(|| Format::detect(text)) {
        Format::Tollgate => Catalog::from_toml_str(text).map_err(|e| e.to_string())?,
        Format::GenaiPrices => first_party(import::genai_prices(text).map_err(|e| e.to_string())?),
        Format::Litellm => first_party(import::litellm(text).map_err(|e| e.to_string())?),
    };
    if catalog.is_empty() {
        return Err("the catalog has no prices".into());
    }
    Ok(catalog)
}

/// What applying `new` now would add and change.
pub async fn preview(stores: &Stores, new: &Catalog, now_ms: i64) -> anyhow::Result<CatalogDiff> {
    let updates = stores.governance.price_updates().await?;
    let base = Prices::base_with(&updates)?;
    Ok(base.with_update(new, crate::pricing::day_of(now_ms)).1)
}

/// Applies `new`: stores it (every gateway picks it up within seconds) and,
/// when given this gateway's prices, installs it here at once. Returns the
/// update's id and what it changed; an update that changes nothing is not stored.
pub async fn apply(
    stores: &Stores,
    here: Option<&Prices>,
    new: &Catalog,
    source: &str,
    applied_by: &str,
    now_ms: i64,
) -> anyhow::Result<(Option<i64>, CatalogDiff)> {
    let diff = preview(stores, new, now_ms).await?;
    if diff.is_empty() {
        return Ok((None, diff));
    }
    let id = stores
        .governance
        .insert_price_update(source.to_owned(), applied_by.to_owned(), new.to_toml_string(), now_ms)
        .await?;
    if let Some(prices) = here {
        prices.install(&stores.governance.price_updates().await?)?;
    }
    Ok((Some(id), diff))
}

/// The diff for the API (rates as decimal strings, USD per million tokens).
pub fn diff_json(diff: &CatalogDiff) -> Value {
    let rate = |d: Option<rust_decimal::Decimal>| d.map(|d| d.normalize().to_string());
    json!({
        "added": diff.added.iter().map(|e| json!({
            "provider": e.provider, "model": e.model,
            "input": rate(Some(e.rates.input)), "output": rate(Some(e.rates.output)),
        })).collect::<Vec<_>>(),
        "changed": diff.changed.iter().map(|c| json!({
            "provider": c.provider, "model": c.model,
            "effective_from": c.effective_from.to_string(),
            "rates": c.rates.iter().map(|r| json!({"what": r.what, "old": rate(r.old), "new": rate(r.new)})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "unchanged": diff.unchanged,
        "not_in_update": diff.not_in_update.len(),
    })
}

/// The diff (as [`diff_json`] writes it, and `POST /admin/v1/prices` answers) for a terminal.
pub fn diff_text(v: &Value) -> String {
    let mut s = String::new();
    let text = |v: &Value| v.as_str().map_or_else(|| "-".to_owned(), |d| format!("${d}"));
    for e in v["added"].as_array().into_iter().flatten() {
        s.push_str(&format!(
            "+ {:<14} {:<44} in {} out {}\n",
            e["provider"].as_str().unwrap_or(""),
            e["model"].as_str().unwrap_or(""),
            text(&e["input"]),
            text(&e["output"])
        ));
    }
    for c in v["changed"].as_array().into_iter().flatten() {
        let rates: Vec<String> = c["rates"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| format!("{} {} -> {}", r["what"].as_str().unwrap_or(""), text(&r["old"]), text(&r["new"])))
            .collect();
        s.push_str(&format!(
            "~ {:<14} {:<44} from {}: {}\n",
            c["provider"].as_str().unwrap_or(""),
            c["model"].as_str().unwrap_or(""),
            c["effective_from"].as_str().unwrap_or(""),
            rates.join(", ")
        ));
    }
    s.push_str(&format!(
        "{} added, {} changed, {} unchanged; {} models of these providers not in the update (kept)\n",
        v["added"].as_array().map_or(0, Vec::len),
        v["changed"].as_array().map_or(0, Vec::len),
        v["unchanged"].as_u64().unwrap_or(0),
        v["not_in_update"].as_u64().unwrap_or(0)
    ));
    s
}

/// Reads an update's text from a file, or fetches it from an `http(s)://` URL.
pub async fn fetch(from: &str) -> anyhow::Result<String> {
    use anyhow::Context;
    if from.starts_with("https://") || from.starts_with("http://") {
        let http = crate::upstream::http_client()?;
        let r = http
            .get(from)
            .timeout(std::time::Duration::from_secs(120))
            .send()
            .await
            .with_context(|| format!("cannot fetch {from}"))?;
        anyhow::ensure!(r.status().is_success(), "{from} answered {}", r.status());
        Ok(r.text().await?)
    } else {
        std::fs::read_to_string(from).with_context(|| format!("cannot read {from}"))
    }
}
