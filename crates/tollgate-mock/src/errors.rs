//! Error bodies in each provider's real shape, for HTTP errors and in-stream error events.

use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};
use serde_json::{json, Value};

/// Which provider's wire conventions an endpoint follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    OpenAi,
    Anthropic,
    Gemini,
    /// Amazon Bedrock Runtime (`{"message"}` bodies, the error's name in `x-amzn-ErrorType`).
    Bedrock,
}

/// The provider's JSON error body for `status`.
pub(crate) fn error_body(family: Family, status: u16, message: &str) -> Value {
    match family {
        Family::OpenAi => {
            let (kind, code) = openai_kind(status);
            json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
        }
        Family::Anthropic => json!({
            "type": "error",
            "error": {"type": anthropic_kind(status), "message": message},
            "request_id": "req_mock_error",
        }),
        Family::Gemini => json!({
            "error": {"code": status, "message": message, "status": gemini_status(status)}
        }),
        Family::Bedrock => json!({"message": message}),
    }
}

/// An error response; `retry_after` becomes a `Retry-After` header.
pub(crate) fn error_response(family: Family, status: u16, message: &str, retry_after: Option<u64>) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = error_body(family, status, message).to_string();
    let mut response =
        (code, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response();
    if family == Family::Bedrock {
        response.headers_mut().insert(ERROR_TYPE, HeaderValue::from_static(bedrock_error_type(status)));
    }
    if let Some(seconds) = retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// The header naming a Bedrock (AWS REST-JSON) error: `x-amzn-ErrorType`.
const ERROR_TYPE: &str = "x-amzn-errortype";

/// A Bedrock error answer with an explicit error name: `status`,
/// `x-amzn-ErrorType: <error_type>` and `{"message": message}`. The name may
/// carry AWS's `:<namespace>` suffix (clients take the part before the colon).
pub(crate) fn bedrock_error(status: u16, error_type: &str, message: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = error_body(Family::Bedrock, status, message).to_string();
    let mut response =
        (code, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response();
    if let Ok(value) = HeaderValue::from_str(error_type) {
        response.headers_mut().insert(ERROR_TYPE, value);
    }
    response
}

pub(crate) fn invalid_request(family: Family, message: &str) -> Response {
    error_response(family, 400, message, None)
}

/// OpenAI's 400 for a request parameter: `{"error": {"message", "type":
/// "invalid_request_error", "param": param, "code": code}}`.
pub(crate) fn openai_param_error(message: &str, param: &str, code: &str) -> Response {
    let body = json!({"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}});
    (StatusCode::BAD_REQUEST, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body.to_string())
        .into_response()
}

/// OpenAI's 400 for a required parameter left out (or empty).
pub(crate) fn missing_param(param: &str) -> Response {
    openai_param_error(&format!("Missing required parameter: '{param}'."), param, "missing_required_parameter")
}

/// OpenAI's 400 for a parameter whose value is not allowed; `allowed` says what is.
pub(crate) fn invalid_value(param: &str, value: &str, allowed: &str) -> Response {
    openai_param_error(&format!("Invalid value: '{value}'. {allowed}"), param, "invalid_value")
}

/// What a fault status says, worded like the provider would.
pub(crate) fn fault_message(status: u16) -> String {
    match status {
        429 => "Rate limit reached for requests (mock fault).".to_owned(),
        500 => "The server had an error while processing your request (mock fault).".to_owned(),
        503 | 529 => "The service is overloaded, please try again later (mock fault).".to_owned(),
        other => format!("mock fault: upstream answered {other}"),
    }
}

fn openai_kind(status: u16) -> (&'static str, Value) {
    match status {
        401 => ("invalid_request_error", json!("invalid_api_key")),
        403 => ("permission_error", Value::Null),
        404 => ("invalid_request_error", json!("model_not_found")),
        408 | 504 => ("timeout", Value::Null),
        429 => ("requests", json!("rate_limit_exceeded")),
        400..=499 => ("invalid_request_error", Value::Null),
        _ => ("server_error", Value::Null),
    }
}

fn anthropic_kind(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

/// Bedrock Runtime's exception for a status (the Converse operation's errors).
fn bedrock_error_type(status: u16) -> &'static str {
    match status {
        403 => "AccessDeniedException",
        404 => "ResourceNotFoundException",
        408 => "ModelTimeoutException",
        424 => "ModelErrorException",
        429 => "ThrottlingException",
        503 => "ServiceUnavailableException",
        400..=499 => "ValidationException",
        _ => "InternalServerException",
    }
}

fn gemini_status(status: u16) -> &'static str {
    match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        s if s < 500 => "FAILED_PRECONDITION",
        _ => "INTERNAL",
    }
}
