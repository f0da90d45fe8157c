//! The web dashboard at `/ui`: static assets embedded in the binary.

use std::sync::Arc;

use axum::Router;

use crate::server::AppState;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
}
