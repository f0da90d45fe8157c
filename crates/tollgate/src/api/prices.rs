//! `/admin/v1/prices`: the price updates applied so far, and a new one
//! applied to every gateway without a restart (see `price_update`).

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json, Router};
use serde_json::{json, Value};

use super::{internal, Actor, Caller};
use crate::config::Role;
use crate::error::ApiError;
use crate::price_update::{self, Format};
use crate::state::AppState;
use crate::time::now_ms;

/// A whole reference catalog is several MiB (LiteLLM's map: ~3 MiB).
pub const MAX_BODY: usize = 32 * 1024 * 1024;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/admin/v1/prices", axum::routing::get(list).post(apply))
}

fn admin_only(caller: &Caller) -> Result<(), ApiError> {
    match caller.role()? {
        Role::Admin => Ok(()),
        _ => Err(ApiError::Forbidden { message: "price updates need an admin token with the admin role".into() }),
    }
}

async fn list(State(state): State<Arc<AppState>>, Extension(caller): Extension<Caller>) -> Response {
    let run = async {
        caller.role()?;
        let updates = state.stores.governance.price_updates().await.map_err(internal)?;
        let list: Vec<Value> = updates
            .iter()
            .map(|u| {
                json!({
                    "id": u.id,
                    "applied_at": chrono::DateTime::<chrono::Utc>::from_timestamp_millis(u.applied_ms),
                    "source": u.source,
                    "applied_by": u.applied_by,
                    "entries": tollgate_pricing::Catalog::from_toml_str(&u.catalog).map(|c| c.len()).ok(),
                })
            })
            .collect();
        Ok::<_, ApiError>(Json(json!({
            "in_force": state.pricing.version(),
            "entries": state.pricing.load().catalog().len(),
            "updates": list,
        })))
    };
    match run.await {
        Ok(r) => r.into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    /// The catalog's text.
    catalog: String,
    /// Detected from the text when absent.
    format: Option<Format>,
    /// Where it came from (shown in the history).
    source: Option<String>,
    #[serde(default)]
    dry_run: bool,
}

async fn apply(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Extension(actor): Extension<Actor>,
    body: axum::body::Bytes,
) -> Response {
    let run = async {
        admin_only(&caller)?;
        let b: UpdateBody =
            serde_json::from_slice(&body).map_err(|e| ApiError::invalid(format!("invalid price update: {e}")))?;
        let catalog = price_update::read(&b.catalog, b.format)
            .map_err(|e| ApiError::invalid(format!("invalid price catalog: {e}")))?;
        let now = now_ms();
        let source = b.source.unwrap_or_else(|| "admin API".into());
        let (id, diff) = if b.dry_run {
            let diff = price_update::preview(&state.stores, &catalog, now)
                .await
                .map_err(|e| ApiError::Internal { message: e.to_string() })?;
            (None, diff)
        } else {
            price_update::apply(&state.stores, Some(&state.pricing), &catalog, &source, "admin API", now)
                .await
                .map_err(|e| ApiError::Internal { message: e.to_string() })?
        };
        let mut v = price_update::diff_json(&diff);
        if let Some(id) = id {
            let (before, after) = crate::audit::price_update_states(id, &source, &v);
            let entry = actor.entry(now, crate::audit::PRICE_UPDATE, format!("price_update:{id}"));
            state.stores.record_audit(entry.with_before(Some(before)).with_after(Some(after))).await;
        }
        v["applied"] = json!(id.is_some());
        v["id"] = json!(id);
        Ok::<_, ApiError>(Json(v))
    };
    match run.await {
        Ok(r) => r.into_response(),
        Err(e) => e.into_response(),
    }
}
