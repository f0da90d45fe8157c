//! The one place where failures become HTTP answers with stable public codes.
//!
//! Every module reports its own typed error; the edge turns it into an
//! [`ApiError`], and [`ApiError::into_response_for`] renders it in the shape
//! of the API family the client called (OpenAI or Anthropic), so each SDK can
//! parse it. The table of codes is in docs/http-api.md; changing a code is a breaking
//! change.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Which error body shape the client's SDK expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorShape {
    OpenAi,
    Anthropic,
    /// Google's (the native Gemini API): `{"error": {"code", "message", "status", "details"}}`.
    Google,
}

/// A failure the client sees. Each variant is one stable public code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    InvalidRequest { message: String, param: Option<String> },
    #[error("{message}")]
    GuardrailViolation { message: String },
    #[error("{message}")]
    InvalidApiKey { message: String },
    #[error("{message}")]
    BudgetExceeded { message: String },
    #[error("{message}")]
    ModelNotAllowed { message: String },
    #[error("{message}")]
    ModelNotFound { message: String },
    /// An admin-API caller whose role does not allow the operation.
    #[error("{message}")]
    Forbidden { message: String },
    #[error("{message}")]
    RequestTooLarge { message: String },
    #[error("{message}")]
    RateLimited { message: String, retry_after_secs: u64 },
    #[error("{message}")]
    UpstreamRateLimited { message: String, retry_after: Option<String> },
    #[error("{message}")]
    UpstreamError { message: String },
    #[error("{message}")]
    UpstreamTimeout { message: String },
    /// A bug or an unexpected failure inside the gateway (never a panic to the client).
    #[error("{message}")]
    Internal { message: String },
    /// An object (batch, file, request, budget) that does not exist or is not the caller's.
    #[error("{message}")]
    NotFound { message: String },
    /// The client did not send its request body in time.
    #[error("{message}")]
    RequestTimeout { message: String },
    /// The gateway is at its connection or in-flight limit.
    #[error("{message}")]
    Overloaded { message: String },
    /// The route exists, but not with this HTTP method.
    #[error("{message}")]
    MethodNotAllowed { message: String },
    /// Budgets and rate limits cannot be checked (the counter store is
    /// unreachable), so nothing is sent: never spend without a check.
    #[error("{message}")]
    GovernanceUnavailable { message: String },
    /// The shared database cannot be reached and the key is not among those
    /// this process already knows, so it cannot be checked.
    #[error("{message}")]
    StorageUnavailable { message: String },
    /// A signed-in browser's state-changing call without its session's CSRF
    /// token, or from another site.
    #[error("{message}")]
    CsrfFailed { message: String },
}

impl ApiError {
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::InvalidRequest { message: message.into(), param: None }
    }

    pub fn invalid_param(message: impl Into<String>, param: impl Into<String>) -> ApiError {
        ApiError::InvalidRequest { message: message.into(), param: Some(param.into()) }
    }

    /// Status, stable code, OpenAI error `type`, Anthropic error `type`.
    /// One exhaustive match: adding a variant without a code does not compile.
    pub fn parts(&self) -> (StatusCode, &'static str, &'static str, &'static str) {
        match self {
            ApiError::InvalidRequest { .. } => {
                (StatusCode::BAD_REQUEST, "invalid_request", "invalid_request_error", "invalid_request_error")
            }
            ApiError::GuardrailViolation { .. } => {
                (StatusCode::BAD_REQUEST, "guardrail_violation", "invalid_request_error", "invalid_request_error")
            }
            ApiError::InvalidApiKey { .. } => {
                (StatusCode::UNAUTHORIZED, "invalid_api_key", "authentication_error", "authentication_error")
            }
            ApiError::BudgetExceeded { .. } => {
                (StatusCode::PAYMENT_REQUIRED, "budget_exceeded", "insufficient_quota", "billing_error")
            }
            ApiError::ModelNotAllowed { .. } => {
                (StatusCode::FORBIDDEN, "model_not_allowed", "permission_error", "permission_error")
            }
            ApiError::ModelNotFound { .. } => {
                (StatusCode::NOT_FOUND, "model_not_found", "not_found_error", "not_found_error")
            }
            ApiError::Forbidden { .. } => (StatusCode::FORBIDDEN, "forbidden", "permission_error", "permission_error"),
            ApiError::CsrfFailed { .. } => {
                (StatusCode::FORBIDDEN, "csrf_failed", "permission_error", "permission_error")
            }
            ApiError::RequestTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "request_too_large", "invalid_request_error", "request_too_large")
            }
            ApiError::RateLimited { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "rate_limited", "rate_limit_error", "rate_limit_error")
            }
            ApiError::UpstreamRateLimited { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "upstream_rate_limited", "rate_limit_error", "rate_limit_error")
            }
            ApiError::UpstreamError { .. } => (StatusCode::BAD_GATEWAY, "upstream_error", "api_error", "api_error"),
            ApiError::UpstreamTimeout { .. } => {
                (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout", "timeout_error", "timeout_error")
            }
            ApiError::Internal { .. } => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "api_error", "api_error")
            }
            ApiError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found", "not_found_error", "not_found_error"),
            ApiError::RequestTimeout { .. } => {
                (StatusCode::REQUEST_TIMEOUT, "request_timeout", "invalid_request_error", "timeout_error")
            }
            ApiError::Overloaded { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "overloaded", "api_error", "overloaded_error")
            }
            ApiError::MethodNotAllowed { .. } => {
                (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "invalid_request_error", "invalid_request_error")
            }
            ApiError::GovernanceUnavailable { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "governance_unavailable", "api_error", "api_error")
            }
            ApiError::StorageUnavailable { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable", "api_error", "api_error")
            }
        }
    }

    pub fn status(&self) -> StatusCode {
        self.parts().0
    }

    pub fn code(&self) -> &'static str {
        self.parts().1
    }

    fn param(&self) -> Option<&str> {
        match self {
            ApiError::InvalidRequest { param, .. } => param.as_deref(),
            _ => None,
        }
    }

    /// The JSON body in the given shape.
    pub fn body(&self, shape: ErrorShape) -> serde_json::Value {
        let (_, code, openai_type, anthropic_type) = self.parts();
        let message = self.to_string();
        match shape {
            ErrorShape::OpenAi => json!({
                "error": { "message": message, "type": openai_type, "code": code, "param": self.param() }
            }),
            ErrorShape::Anthropic => json!({
                "type": "error",
                "error": { "type": anthropic_type, "message": message, "code": code }
            }),
            // Google's canonical status names; tollgate's own code is the ErrorInfo reason.
            ErrorShape::Google => json!({
                "error": {
                    "code": self.status().as_u16(),
                    "message": message,
                    "status": google_status(self.status()),
                    "details": [{
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": code,
                        "domain": "tollgate",
                    }],
                }
            }),
        }
    }

    pub fn into_response_for(self, shape: ErrorShape) -> Response {
        let status = self.status();
        let body = self.body(shape);
        let mut resp = (status, axum::Json(body)).into_response();
        let retry = match &self {
            ApiError::RateLimited { retry_after_secs, .. } => Some(retry_after_secs.to_string()),
            ApiError::GovernanceUnavailable { .. }
            | ApiError::Overloaded { .. }
            | ApiError::StorageUnavailable { .. } => Some("1".to_string()),
            ApiError::UpstreamRateLimited { retry_after, .. } => retry_after.clone(),
            _ => None,
        };
        if let Some(v) = retry.and_then(|r| HeaderValue::from_str(&r).ok()) {
            resp.headers_mut().insert(http::header::RETRY_AFTER, v);
        }
        resp
    }
}

/// The `google.rpc.Code` name Google's APIs give an HTTP status.
fn google_status(s: StatusCode) -> &'static str {
    match s.as_u16() {
        400 | 405 | 413 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        402 | 429 => "RESOURCE_EXHAUSTED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        408 | 504 => "DEADLINE_EXCEEDED",
        409 => "ABORTED",
        501 => "UNIMPLEMENTED",
        503 | 502 => "UNAVAILABLE",
        _ => "INTERNAL",
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.into_response_for(ErrorShape::OpenAi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<ApiError> {
        let m = || "m".to_string();
        vec![
            ApiError::InvalidRequest { message: m(), param: Some("model".into()) },
            ApiError::GuardrailViolation { message: m() },
            ApiError::InvalidApiKey { message: m() },
            ApiError::BudgetExceeded { message: m() },
            ApiError::ModelNotAllowed { message: m() },
            ApiError::ModelNotFound { message: m() },
            ApiError::Forbidden { message: m() },
            ApiError::RequestTooLarge { message: m() },
            ApiError::RateLimited { message: m(), retry_after_secs: 3 },
            ApiError::UpstreamRateLimited { message: m(), retry_after: Some("7".into()) },
            ApiError::UpstreamError { message: m() },
            ApiError::UpstreamTimeout { message: m() },
            ApiError::Internal { message: m() },
            ApiError::NotFound { message: m() },
            ApiError::RequestTimeout { message: m() },
            ApiError::Overloaded { message: m() },
            ApiError::MethodNotAllowed { message: m() },
            ApiError::GovernanceUnavailable { message: m() },
            ApiError::StorageUnavailable { message: m() },
            ApiError::CsrfFailed { message: m() },
        ]
    }

    /// Snapshot of every code's status and both body shapes: the public contract.
    #[test]
    fn every_code_body_snapshot() {
        let got: Vec<String> = all()
            .iter()
            .map(|e| {
                format!("{} {} {}", e.status().as_u16(), e.body(ErrorShape::OpenAi), e.body(ErrorShape::Anthropic))
            })
            .collect();
        let want = [
            r#"400 {"error":{"code":"invalid_request","message":"m","param":"model","type":"invalid_request_error"}} {"error":{"code":"invalid_request","message":"m","type":"invalid_request_error"},"type":"error"}"#,
            r#"400 {"error":{"code":"guardrail_violation","message":"m","param":null,"type":"invalid_request_error"}} {"error":{"code":"guardrail_violation","message":"m","type":"invalid_request_error"},"type":"error"}"#,
            r#"401 {"error":{"code":"invalid_api_key","message":"m","param":null,"type":"authentication_error"}} {"error":{"code":"invalid_api_key","message":"m","type":"authentication_error"},"type":"error"}"#,
            r#"402 {"error":{"code":"budget_exceeded","message":"m","param":null,"type":"insufficient_quota"}} {"error":{"code":"budget_exceeded","message":"m","type":"billing_error"},"type":"error"}"#,
            r#"403 {"error":{"code":"model_not_allowed","message":"m","param":null,"type":"permission_error"}} {"error":{"code":"model_not_allowed","message":"m","type":"permission_error"},"type":"error"}"#,
            r#"404 {"error":{"code":"model_not_found","message":"m","param":null,"type":"not_found_error"}} {"error":{"code":"model_not_found","message":"m","type":"not_found_error"},"type":"error"}"#,
            r#"403 {"error":{"code":"forbidden","message":"m","param":null,"type":"permission_error"}} {"error":{"code":"forbidden","message":"m","type":"permission_error"},"type":"error"}"#,
            r#"413 {"error":{"code":"request_too_large","message":"m","param":null,"type":"invalid_request_error"}} {"error":{"code":"request_too_large","message":"m","type":"request_too_large"},"type":"error"}"#,
            r#"429 {"error":{"code":"rate_limited","message":"m","param":null,"type":"rate_limit_error"}} {"error":{"code":"rate_limited","message":"m","type":"rate_limit_error"},"type":"error"}"#,
            r#"429 {"error":{"code":"upstream_rate_limited","message":"m","param":null,"type":"rate_limit_error"}} {"error":{"code":"upstream_rate_limited","message":"m","type":"rate_limit_error"},"type":"error"}"#,
            r#"502 {"error":{"code":"upstream_error","message":"m","param":null,"type":"api_error"}} {"error":{"code":"upstream_error","message":"m","type":"api_error"},"type":"error"}"#,
            r#"504 {"error":{"code":"upstream_timeout","message":"m","param":null,"type":"timeout_error"}} {"error":{"code":"upstream_timeout","message":"m","type":"timeout_error"},"type":"error"}"#,
            r#"500 {"error":{"code":"internal_error","message":"m","param":null,"type":"api_error"}} {"error":{"code":"internal_error","message":"m","type":"api_error"},"type":"error"}"#,
            r#"404 {"error":{"code":"not_found","message":"m","param":null,"type":"not_found_error"}} {"error":{"code":"not_found","message":"m","type":"not_found_error"},"type":"error"}"#,
            r#"408 {"error":{"code":"request_timeout","message":"m","param":null,"type":"invalid_request_error"}} {"error":{"code":"request_timeout","message":"m","type":"timeout_error"},"type":"error"}"#,
            r#"503 {"error":{"code":"overloaded","message":"m","param":null,"type":"api_error"}} {"error":{"code":"overloaded","message":"m","type":"overloaded_error"},"type":"error"}"#,
            r#"405 {"error":{"code":"method_not_allowed","message":"m","param":null,"type":"invalid_request_error"}} {"error":{"code":"method_not_allowed","message":"m","type":"invalid_request_error"},"type":"error"}"#,
            r#"503 {"error":{"code":"governance_unavailable","message":"m","param":null,"type":"api_error"}} {"error":{"code":"governance_unavailable","message":"m","type":"api_error"},"type":"error"}"#,
            r#"503 {"error":{"code":"storage_unavailable","message":"m","param":null,"type":"api_error"}} {"error":{"code":"storage_unavailable","message":"m","type":"api_error"},"type":"error"}"#,
            r#"403 {"error":{"code":"csrf_failed","message":"m","param":null,"type":"permission_error"}} {"error":{"code":"csrf_failed","message":"m","type":"permission_error"},"type":"error"}"#,
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn retry_after_is_set() {
        let r = ApiError::RateLimited { message: "slow down".into(), retry_after_secs: 3 }
            .into_response_for(ErrorShape::OpenAi);
        assert_eq!(r.headers()["retry-after"], "3");
        let r = ApiError::UpstreamRateLimited { message: "x".into(), retry_after: Some("12".into()) }
            .into_response_for(ErrorShape::Anthropic);
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "12");
    }
}
