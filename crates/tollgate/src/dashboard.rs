//! The web dashboard at `/ui`: static assets embedded in the binary at build
//! time (plain HTML, CSS and JavaScript modules under `crates/tollgate/ui/`,
//! with Chart.js vendored), reading the JSON analytics API from the browser.
//!
//! One JSON route of its own, `GET /ui/api/requests/{id}`: a single ledger
//! row with its cost split by token bucket, for the request detail view.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde_json::json;
use tollgate_providers::ProviderKind;

use crate::api::Caller;
use crate::error::ApiError;
use crate::ledger::LedgerRow;
use crate::state::AppState;

struct Asset {
    path: &'static str,
    mime: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $mime:literal) => {
        Asset { path: $path, mime: $mime, body: include_bytes!(concat!("../ui/", $path)) }
    };
}

static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("app.mjs", "text/javascript; charset=utf-8"),
    asset!("api.mjs", "text/javascript; charset=utf-8"),
    asset!("charts.mjs", "text/javascript; charset=utf-8"),
    asset!("dom.mjs", "text/javascript; charset=utf-8"),
    asset!("finops.mjs", "text/javascript; charset=utf-8"),
    asset!("manage.mjs", "text/javascript; charset=utf-8"),
    asset!("money.mjs", "text/javascript; charset=utf-8"),
    asset!("nav.mjs", "text/javascript; charset=utf-8"),
    asset!("routes.mjs", "text/javascript; charset=utf-8"),
    asset!("session.mjs", "text/javascript; charset=utf-8"),
    asset!("views.mjs", "text/javascript; charset=utf-8"),
    asset!("vendor/chart.umd.min.js", "text/javascript; charset=utf-8"),
    asset!("vendor/chart.js-LICENSE.md", "text/plain; charset=utf-8"),
];

/// Scripts only from the binary itself, data only from this origin.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The dashboard's data routes (behind the admin gate).
pub fn api_routes() -> Router<Arc<AppState>> {
    Router::new().route("/ui/api/requests/{id}", get(request_detail))
}

pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/ui", get(index)).route("/ui/", get(index)).route("/ui/{*path}", get(asset))
}

fn serve(a: &Asset) -> Response {
    let mut r = a.body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(a.mime));
    // Assets change with the binary and carry no version in their names.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    r
}

fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

async fn index() -> Response {
    match find("index.html") {
        Some(a) => serve(a),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn asset(Path(path): Path<String>) -> Response {
    match find(&path) {
        Some(a) => serve(a),
        None => {
            (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "no such dashboard file\n")
                .into_response()
        }
    }
}

/// The row's cost split by token bucket, recomputed from the catalog; only
/// given when it adds up to exactly the cost the ledger recorded.
fn cost_parts(state: &AppState, row: &LedgerRow) -> Option<(tollgate_pricing::CostParts, String)> {
    let recorded = row.cost?;
    let config = state.config();
    let provider = config.providers.iter().find(|p| Some(&p.name) == row.provider.as_ref())?;
    let hint = match provider.kind {
        ProviderKind::OpenAiCompatible => provider.name.as_str(),
        kind => crate::config::kind_name(kind),
    };
    let at = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(row.time_ms)?;
    let pricing = state.pricing.load();
    let entry = pricing.catalog().lookup(Some(hint), row.model.as_deref()?, at)?;
    let c = tollgate_pricing::cost(entry, &row.usage, tollgate_pricing::ServiceTier::Standard);
    if c.total != recorded {
        return None;
    }
    let mut source = format!("the {} price of {}", entry.provider, entry.model);
    if let Some(d) = entry.effective_from {
        source.push_str(&format!(" in force since {d}"));
    }
    Some((c.parts, source))
}

async fn request_detail(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let role = match caller.role() {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let found = state.stores.requests.request(id).await.map(|r| r.map(|r| (cost_parts(&state, &r), r)));
    // A team admin sees its own team's requests only; another team's is "not found".
    let found = match (found, crate::api::team_of(&role)) {
        (Ok(Some((_, row))), Some(team)) if row.attribution.tag("team") != Some(team) => Ok(None),
        (f, _) => f,
    };
    match found {
        Ok(Some((parts, row))) => Json(json!({
            "request": crate::api::row_json(&row),
            "cost_parts": parts.as_ref().map(|p| &p.0),
            "price_source": parts.as_ref().map(|p| &p.1),
        }))
        .into_response(),
        Ok(None) => ApiError::NotFound { message: "no such request".into() }.into_response(),
        Err(e) => ApiError::Internal { message: e.to_string() }.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_the_page_loads_is_embedded() {
        let index = std::str::from_utf8(find("index.html").unwrap().body).unwrap();
        for src in ["/ui/style.css", "/ui/app.mjs", "/ui/vendor/chart.umd.min.js"] {
            assert!(index.contains(src), "{src}");
            assert!(find(src.trim_start_matches("/ui/")).is_some(), "{src}");
        }
        // Every module another module imports is served too.
        for a in ASSETS.iter().filter(|a| a.path.ends_with(".mjs")) {
            let text = std::str::from_utf8(a.body).unwrap();
            for line in text.lines().filter(|l| l.starts_with("import ")) {
                let target = line.rsplit("from '").next().unwrap().trim_end_matches("';").trim_start_matches("./");
                assert!(find(target).is_some(), "{} imports {target}", a.path);
            }
        }
    }
}
