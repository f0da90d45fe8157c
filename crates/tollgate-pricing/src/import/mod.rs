//! Readers for outside price catalogs, and comparison between catalogs.

use crate::Catalog;

/// An outside catalog that could not be read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    #[error("not valid JSON: {0}")]
    Json(String),
}

pub fn genai_prices(_json: &str) -> Result<Catalog, ImportError> {
    Err(ImportError::Json("todo".into()))
}

pub fn litellm(_json: &str) -> Result<Catalog, ImportError> {
    Err(ImportError::Json("todo".into()))
}
