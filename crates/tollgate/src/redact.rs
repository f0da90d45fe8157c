//! Scrubbing of text that leaves the gateway after it came from a provider.
//!
//! An upstream's error text is useful to the caller ("model not found",
//! "context too long"), but an upstream can echo what it was sent: the
//! provider key in `authorization`, internal URLs, other headers. Every such
//! message is passed through [`Redactor::scrub`] before it reaches a client:
//! every configured secret is replaced, credential-looking headers and
//! tokens are masked, and URLs are replaced by `<upstream>`.

use std::sync::LazyLock;

use regex::Regex;

use crate::config::Config;
use crate::error::ApiError;

const MASK: &str = "***";

/// `authorization: …`, `"x-api-key": "…"`, `api-key=…` and the like.
static CREDENTIAL_FIELD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)((?:proxy-)?authorization|x-api-key|api-key|x-goog-api-key|cookie|set-cookie|x-tollgate-admin-token)((?:\\?["'])?\s*[:=]\s*(?:\\?["'])?)(?:bearer\s+|basic\s+)?[^"',\s}\]\\]+"#,
    )
    .unwrap_or_else(|e| unreachable!("static regex: {e}"))
});
/// Bearer tokens and key shapes of the providers and of tollgate itself.
static TOKEN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+|\b(?:sk-[A-Za-z0-9_-]{8,}|sk-ant-[A-Za-z0-9_-]{8,}|tg_[A-Za-z0-9]{8,}|AIza[0-9A-Za-z_-]{20,})")
        .unwrap_or_else(|e| unreachable!("static regex: {e}"))
});
static URL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"(?i)\b(?:https?|wss?)://[^\s"'<>\\]+"#).unwrap_or_else(|e| unreachable!("{e}")));

/// The secrets of one gateway, to be removed from anything a client is shown.
#[derive(Clone, Default)]
pub struct Redactor {
    /// Shared: every request's row holder keeps a (cheap) clone.
    secrets: std::sync::Arc<Vec<String>>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

impl Redactor {
    pub fn new(config: &Config) -> Redactor {
        let mut secrets: Vec<String> = config
            .providers
            .iter()
            .filter_map(|p| p.api_key.as_ref())
            .chain(config.server.admin_token.iter())
            .chain(config.server.key_secret.iter())
            .chain(config.server.metrics_token.iter())
            .chain(config.admin_tokens.iter().map(|t| &t.token))
            .map(|s| s.expose().to_string())
            // A very short "secret" would mask ordinary words; such keys are not real keys.
            .filter(|s| s.len() >= 6)
            .collect();
        // Longest first, so a key that contains another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor { secrets: std::sync::Arc::new(secrets) }
    }

    /// `text` without secrets, credentials or URLs. `extra` is a secret of this
    /// request only (a passthrough caller's own key).
    pub fn scrub(&self, text: &str, extra: Option<&str>) -> String {
        let mut out = text.to_string();
        for s in extra.into_iter().filter(|s| s.len() >= 6).chain(self.secrets.iter().map(String::as_str)) {
            if out.contains(s) {
                out = out.replace(s, MASK);
            }
        }
        let out = CREDENTIAL_FIELD.replace_all(&out, |c: &regex::Captures<'_>| format!("{}{}{MASK}", &c[1], &c[2]));
        let out = TOKEN.replace_all(&out, MASK);
        URL.replace_all(&out, "<upstream>").into_owned()
    }

    /// The same error with its message scrubbed (messages can carry upstream text).
    pub fn error(&self, e: ApiError, extra: Option<&str>) -> ApiError {
        let s = |m: String| self.scrub(&m, extra);
        match e {
            ApiError::InvalidRequest { message, param } => ApiError::InvalidRequest { message: s(message), param },
            ApiError::RequestTooLarge { message } => ApiError::RequestTooLarge { message: s(message) },
            ApiError::UpstreamRateLimited { message, retry_after } => {
                ApiError::UpstreamRateLimited { message: s(message), retry_after }
            }
            ApiError::UpstreamError { message } => ApiError::UpstreamError { message: s(message) },
            ApiError::UpstreamTimeout { message } => ApiError::UpstreamTimeout { message: s(message) },
            ApiError::Internal { message } => ApiError::Internal { message: s(message) },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redactor(secrets: &[&str]) -> Redactor {
        Redactor { secrets: std::sync::Arc::new(secrets.iter().map(|s| s.to_string()).collect()) }
    }

    #[test]
    fn configured_secrets_headers_tokens_and_urls_are_masked() {
        let r = redactor(&["prov-key-123456"]);
        let echoed = r#"{"error":{"message":"bad request; headers: {\"authorization\": \"Bearer prov-key-123456\", \"x-api-key\": \"other-secret-value\", \"host\": \"10.0.0.7:9000\"} at http://10.0.0.7:9000/internal/admin?token=abc"}}"#;
        let out = r.scrub(echoed, None);
        assert!(!out.contains("prov-key-123456"), "{out}");
        assert!(!out.contains("other-secret-value"), "{out}");
        assert!(!out.contains("http://10.0.0.7"), "{out}");
        assert!(!out.contains("token=abc"), "{out}");
        assert!(out.contains("bad request"), "the useful part stays: {out}");
        let out = r.scrub("authorization: Bearer sk-live-abcdefghijkl and key AIzaSyA1234567890abcdefghij", None);
        assert!(!out.contains("sk-live") && !out.contains("AIzaSy"), "{out}");
        assert_eq!(r.scrub("model gpt-4o-mini does not exist", None), "model gpt-4o-mini does not exist");
        assert!(!r.scrub("echo caller-own-key-999", Some("caller-own-key-999")).contains("caller-own-key-999"));
    }
}
