//! Request parameters of the media endpoints, read alike from a JSON body and
//! from a form's text fields (where every value is a string: `"n": "2"`).
//! A bad value is OpenAI's 400 naming the parameter.

use axum::response::Response;
use serde_json::Value;

use crate::errors::{invalid_value, missing_param, openai_param_error};

/// A string parameter; absent, `null` or empty is `None`.
#[allow(clippy::result_large_err)]
pub(crate) fn string<'a>(json: &'a Value, key: &str) -> Result<Option<&'a str>, Response> {
    match json.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(openai_param_error(
            &format!("Invalid type for '{key}': expected a string, but got {}.", kind(other)),
            key,
            "invalid_type",
        )),
    }
}

/// A required string parameter.
#[allow(clippy::result_large_err)]
pub(crate) fn required<'a>(json: &'a Value, key: &str) -> Result<&'a str, Response> {
    string(json, key)?.ok_or_else(|| missing_param(key))
}

/// A string parameter that must be one of `allowed` (`None` if absent).
#[allow(clippy::result_large_err)]
pub(crate) fn one_of<'a>(json: &'a Value, key: &str, allowed: &[&str]) -> Result<Option<&'a str>, Response> {
    match string(json, key)? {
        Some(value) if !allowed.contains(&value) => Err(invalid_value(key, value, &supported(allowed))),
        other => Ok(other),
    }
}

/// `Supported values are: 'a', 'b' and 'c'.`
pub(crate) fn supported(allowed: &[&str]) -> String {
    let quoted: Vec<String> = allowed.iter().map(|v| format!("'{v}'")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("Supported values are: {} and {last}.", rest.join(", ")),
        Some((only, _)) => format!("Supported values are: {only}."),
        None => String::new(),
    }
}

/// A whole-number parameter within `min..=max` (`None` if absent).
#[allow(clippy::result_large_err)]
pub(crate) fn integer(json: &Value, key: &str, min: i64, max: i64) -> Result<Option<i64>, Response> {
    let value = match json.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
        Some(_) => None,
    };
    let shown = || json.get(key).map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)).unwrap_or_default();
    match value {
        None => Err(openai_param_error(
            &format!("Invalid type for '{key}': expected an integer, but got '{}'.", shown()),
            key,
            "invalid_type",
        )),
        Some(v) if v < min => Err(openai_param_error(
            &format!("{v} is less than the minimum of {min} - '{key}'"),
            key,
            "integer_below_min_value",
        )),
        Some(v) if v > max => Err(openai_param_error(
            &format!("{v} is greater than the maximum of {max} - '{key}'"),
            key,
            "integer_above_max_value",
        )),
        Some(v) => Ok(Some(v)),
    }
}

/// A number parameter within `min..=max` (`None` if absent).
#[allow(clippy::result_large_err)]
pub(crate) fn number(json: &Value, key: &str, min: f64, max: f64) -> Result<Option<f64>, Response> {
    let value = match json.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        Some(_) => None,
    };
    match value {
        Some(v) if (min..=max).contains(&v) => Ok(Some(v)),
        Some(v) => Err(openai_param_error(
            &format!("Invalid value for '{key}': {v} is outside the range {min} to {max}."),
            key,
            "invalid_value",
        )),
        None => Err(openai_param_error(&format!("Invalid type for '{key}': expected a number."), key, "invalid_type")),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
