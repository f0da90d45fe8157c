//! Model-name and provider-name normalisation for catalog lookups.
//!
//! Every transformation removes a *recognised* decoration (a path prefix, a
//! Bedrock region/vendor/version, `-latest`, a date); the result must still
//! equal a catalog name exactly. Nothing here matches by prefix or
//! substring, which is what keeps `gpt-4o-mini` from being priced as `gpt-4o`.

/// The catalog's id for a provider kind or name as users write it.
pub(crate) fn canonical_provider(p: &str) -> String {
    let p = p.trim().to_ascii_lowercase();
    match p.as_str() {
        // Vertex AI is a separate price list (it differs from the Gemini API
        // for some models), so it is not folded in here.
        "google" | "google_ai" | "google-ai" | "googleai" | "gemini_api" => "gemini".to_owned(),
        "azure" | "azure-openai" | "azureopenai" => "azure_openai".to_owned(),
        "aws" | "aws_bedrock" | "aws-bedrock" | "amazon_bedrock" | "bedrock_converse" => "bedrock".to_owned(),
        "mistralai" | "mistral_ai" => "mistral".to_owned(),
        "claude" => "anthropic".to_owned(),
        "vertex" | "vertex-ai" | "vertexai" | "google_vertex" | "google-vertex" => "vertex_ai".to_owned(),
        "x-ai" | "x_ai" | "grok" => "xai".to_owned(),
        "together_ai" | "together-ai" | "togetherai" => "together".to_owned(),
        "fireworks_ai" | "fireworks-ai" | "fireworksai" => "fireworks".to_owned(),
        "cohere_chat" => "cohere".to_owned(),
        _ => p,
    }
}

/// Order in which providers are tried when the request's provider has no
/// entry: first-party price lists before resellers.
pub(crate) fn fallback_rank(p: &str) -> u8 {
    match p {
        "openai" => 0,
        "anthropic" => 1,
        "gemini" => 2,
        "mistral" => 3,
        "deepseek" => 4,
        "xai" => 5,
        "cohere" => 6,
        "bedrock" => 7,
        "azure_openai" => 8,
        "vertex_ai" => 9,
        _ => RESELLER_RANK,
    }
}

/// The rank of providers that host other vendors' (open-weights) models at
/// their own prices: a request to another provider is never priced by them.
pub(crate) const RESELLER_RANK: u8 = 10;

const BEDROCK_REGIONS: &[&str] = &["us.", "eu.", "apac.", "global.", "jp.", "au.", "ca.", "us-gov.", "regional."];

const BEDROCK_VENDORS: &[&str] =
    &["anthropic.", "amazon.", "meta.", "mistral.", "cohere.", "ai21.", "deepseek.", "openai.", "qwen.", "writer."];

/// The forms of `model` to try, most specific first, lowercased, no repeats.
pub(crate) fn candidates(model: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |s: &str| {
        if !s.is_empty() && !out.iter().any(|o| o == s) {
            out.push(s.to_owned());
        }
    };
    let mut cur = model.trim().to_ascii_lowercase();
    push(&cur);

    // `openai/gpt-4o`, `models/gemini-2.5-pro`, `accounts/x/models/y`.
    if let Some((_, last)) = cur.rsplit_once('/') {
        cur = last.to_owned();
        push(&cur);
    }

    // Bedrock: `[region.]vendor.name[-vN[:M]]`, e.g.
    // `us.anthropic.claude-sonnet-4-5-20250929-v1:0`. Each stage is also tried
    // without the version suffix.
    if let Some(rest) = BEDROCK_REGIONS.iter().find_map(|r| cur.strip_prefix(r)) {
        if BEDROCK_VENDORS.iter().any(|v| rest.starts_with(v)) {
            push(strip_bedrock_version(&cur));
            push(strip_date(strip_bedrock_version(&cur)));
            cur = rest.to_owned();
            push(&cur);
        }
    }
    if let Some(rest) = BEDROCK_VENDORS.iter().find_map(|v| cur.strip_prefix(v)) {
        push(strip_bedrock_version(&cur));
        push(strip_date(strip_bedrock_version(&cur)));
        cur = rest.to_owned();
        push(&cur);
        cur = strip_bedrock_version(&cur).to_owned();
        push(&cur);
    }

    // Vertex: `claude-sonnet-4-5@20250929`.
    if cur.contains('@') {
        cur = cur.replace('@', "-");
        push(&cur);
    }

    if let Some(rest) = cur.strip_suffix("-latest") {
        cur = rest.to_owned();
        push(&cur);
    }

    let undated = strip_date(&cur);
    if undated.len() != cur.len() {
        cur = undated.to_owned();
        push(&cur);
    }
    out
}

/// `claude-3-5-haiku-20241022-v1:0` → `claude-3-5-haiku-20241022`; also `-v2`.
fn strip_bedrock_version(s: &str) -> &str {
    let Some(idx) = s.rfind("-v") else { return s };
    let tail = &s[idx + 2..];
    let (major, minor) = match tail.split_once(':') {
        Some((a, b)) => (a, Some(b)),
        None => (tail, None),
    };
    let digits = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
    if digits(major) && minor.is_none_or(digits) {
        &s[..idx]
    } else {
        s
    }
}

/// Removes a trailing `-YYYY-MM-DD` or `-YYYYMMDD` snapshot date.
fn strip_date(s: &str) -> &str {
    let b = s.as_bytes();
    let is_digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let plausible = |y: &[u8]| y.starts_with(b"20");
    // -YYYY-MM-DD
    if b.len() > 11 {
        let n = b.len();
        let start = n - 11;
        if b[start] == b'-'
            && is_digits(start + 1..start + 5)
            && b[start + 5] == b'-'
            && is_digits(start + 6..start + 8)
            && b[start + 8] == b'-'
            && is_digits(start + 9..n)
            && plausible(&b[start + 1..start + 3])
        {
            return &s[..start];
        }
    }
    // -YYYYMMDD
    if b.len() > 9 {
        let n = b.len();
        let start = n - 9;
        if b[start] == b'-' && is_digits(start + 1..n) && plausible(&b[start + 1..start + 3]) {
            return &s[..start];
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_are_tried_most_specific_first() {
        assert_eq!(
            candidates("us.anthropic.claude-sonnet-4-5-20250929-v1:0"),
            vec![
                "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
                "us.anthropic.claude-sonnet-4-5-20250929",
                "us.anthropic.claude-sonnet-4-5",
                "anthropic.claude-sonnet-4-5-20250929-v1:0",
                "anthropic.claude-sonnet-4-5-20250929",
                "anthropic.claude-sonnet-4-5",
                "claude-sonnet-4-5-20250929-v1:0",
                "claude-sonnet-4-5-20250929",
                "claude-sonnet-4-5",
            ]
        );
        assert_eq!(
            candidates("openai/gpt-4o-2024-08-06"),
            vec!["openai/gpt-4o-2024-08-06", "gpt-4o-2024-08-06", "gpt-4o"]
        );
        assert_eq!(candidates("claude-3-5-haiku-latest"), vec!["claude-3-5-haiku-latest", "claude-3-5-haiku"]);
        assert_eq!(candidates("models/gemini-2.5-pro"), vec!["models/gemini-2.5-pro", "gemini-2.5-pro"]);
        assert_eq!(
            candidates("claude-sonnet-4-5@20250929"),
            vec!["claude-sonnet-4-5@20250929", "claude-sonnet-4-5-20250929", "claude-sonnet-4-5"]
        );
        // Nothing recognised: only the name itself.
        assert_eq!(candidates("gpt-4o-mini"), vec!["gpt-4o-mini"]);
        assert_eq!(candidates("mistral-large-2411"), vec!["mistral-large-2411"]);
        assert_eq!(candidates("GPT-4o"), vec!["gpt-4o"]);
    }

    #[test]
    fn provider_synonyms() {
        assert_eq!(canonical_provider("Google"), "gemini");
        assert_eq!(canonical_provider("aws"), "bedrock");
        assert_eq!(canonical_provider("azure"), "azure_openai");
        assert_eq!(canonical_provider("my-vllm"), "my-vllm");
    }
}
