//! Policy decisions before any spend: may this caller use this model?
//! Pure functions of plain values.

pub use crate::pattern::glob_match;

/// Access rules: every rule whose scope covers the request must allow the
/// model (its deny list wins over its allow list; an empty allow list allows all).
pub fn access_allows(
    rules: &[crate::config::AccessRule],
    facts: &crate::budget::Facts<'_>,
    model: &str,
) -> Result<(), String> {
    for r in rules.iter().filter(|r| r.scope.matches(facts)) {
        if r.deny.iter().any(|p| glob_match(p, model)) {
            return Err(format!("model {model:?} is denied for {}", r.scope));
        }
        if !r.allow.is_empty() && !r.allow.iter().any(|p| glob_match(p, model)) {
            return Err(format!("model {model:?} is not among the models allowed for {}", r.scope));
        }
    }
    Ok(())
}

/// Required tags: refuse a request missing one, or file it under `unattributed`.
pub fn require_tags(
    g: &crate::config::Guardrails,
    tags: &mut std::collections::BTreeMap<String, String>,
) -> Result<(), String> {
    for t in &g.required_tags {
        if !tags.contains_key(t) {
            if g.untagged_as_unattributed {
                tags.insert(t.clone(), "unattributed".into());
            } else {
                return Err(format!(
                    "missing required tag {t:?}: send it in x-tollgate-tags (e.g. {t}=…) or set it on the key"
                ));
            }
        }
    }
    Ok(())
}

/// Prompt-level guardrails: sizes and deny-listed patterns.
pub fn check_prompt(
    g: &crate::config::Guardrails,
    model: &str,
    info: &tollgate_providers::RequestInfo,
) -> Result<(), String> {
    if let (Some(max), Some(asked)) = (g.max_output_tokens, info.max_output_tokens) {
        if asked > max {
            return Err(format!("max tokens {asked} is above the allowed {max}"));
        }
    }
    if let Some(max) = g.max_input_tokens {
        // Bytes bound tokens from above: count with the tokenizer only when that bound is too big.
        if info.prompt_text.len() as u64 > max {
            let n = crate::metering::count_tokens(model, &info.prompt_text);
            if n > max {
                return Err(format!("the prompt has about {n} input tokens, above the allowed {max}"));
            }
        }
    }
    for re in &g.deny_patterns {
        if re.is_match(&info.prompt_text) {
            return Err(format!("the prompt matches a denied pattern ({})", re.as_str()));
        }
    }
    Ok(())
}

/// An empty allow-list allows every model.
pub fn model_allowed(allowed: &[String], model: &str) -> bool {
    allowed.is_empty() || allowed.iter().any(|p| glob_match(p, model))
}

/// Longest model name accepted from a client.
pub const MAX_MODEL_NAME: usize = 256;

/// A model name as a client may send it: 1 to 256 characters of letters,
/// digits and `. _ - : / @ +`, with no empty or `..` path segment. Names
/// reach provider URLs and the ledger, so anything else is refused at the edge.
pub fn check_model_name(model: &str) -> Result<(), String> {
    if model.is_empty() || model.len() > MAX_MODEL_NAME {
        return Err(format!("model names are 1 to {MAX_MODEL_NAME} characters"));
    }
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'/' | b'@' | b'+');
    if !model.bytes().all(allowed) {
        let c = model.chars().find(|c| !(c.is_ascii() && allowed(*c as u8))).unwrap_or('?');
        return Err(format!(
            "model name contains {:?}; model names use letters, digits and . _ - : / @ +",
            c.escape_default().to_string()
        ));
    }
    let bad_segment = |seg: &str| seg.is_empty() || seg == "." || seg == "..";
    // Most names have no '/': one segment, checked without splitting.
    let bad = if model.as_bytes().contains(&b'/') { model.split('/').any(bad_segment) } else { bad_segment(model) };
    if bad {
        return Err("model name has an empty, '.' or '..' path segment".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_that_could_reach_a_url_or_a_terminal_are_refused() {
        for ok in [
            "gpt-4o-mini",
            "anthropic/claude-3-5-haiku-latest",
            "ft:gpt-4o-mini:org:x:1",
            "llama3.1:8b",
            "accounts/fireworks/models/llama-v3p1-70b-instruct",
            "anthropic.claude-3-5-sonnet-20241022-v2:0",
        ] {
            assert_eq!(check_model_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "gemini/../../../admin/secret?x=",
            "a\0b",
            "gpt\u{1b}[31m",
            "x\"y",
            "http://evil/x",
            "a b",
            "models//x",
            "./x",
            "x%2e%2e",
            "a#b",
        ] {
            assert!(check_model_name(bad).is_err(), "{bad}");
        }
        assert!(check_model_name(&"a".repeat(257)).is_err());
    }

    #[test]
    fn globs() {
        let cases = [
            ("claude-opus-*", "claude-opus-4-1", true),
            ("claude-opus-*", "claude-sonnet-4", false),
            ("gpt-4o", "gpt-4o", true),
            ("gpt-4o", "gpt-4o-mini", false),
            ("*-mini", "gpt-4o-mini", true),
            ("gpt-*-mini", "gpt-4.1-mini", true),
            ("gpt-*-mini", "gpt-mini", false),
            ("*", "anything", true),
            ("a*b*c", "a-x-b-y-c", true),
            ("a*b*c", "a-x-c-y-b", false),
        ];
        for (p, n, want) in cases {
            assert_eq!(glob_match(p, n), want, "{p} {n}");
        }
        assert!(model_allowed(&[], "x"));
        let rules = vec![crate::config::AccessRule {
            scope: crate::budget::Scope::parse("team=growth").unwrap(),
            allow: vec!["gpt-4o-mini".into(), "claude-*".into()],
            deny: vec!["claude-opus-*".into()],
        }];
        let mut a = crate::attribution::Attribution::default();
        a.tags.insert("team".into(), "growth".into());
        let f = crate::budget::Facts { key_id: "k", model: "m", provider: None, attribution: &a };
        assert!(access_allows(&rules, &f, "claude-haiku-4-5").is_ok());
        assert!(access_allows(&rules, &f, "claude-opus-4-1").unwrap_err().contains("denied"));
        assert!(access_allows(&rules, &f, "gpt-4o").unwrap_err().contains("not among"));
        let other = crate::attribution::Attribution::default();
        let f = crate::budget::Facts { key_id: "k", model: "m", provider: None, attribution: &other };
        assert!(access_allows(&rules, &f, "gpt-4o").is_ok(), "rules apply only to their scope");
        assert!(!model_allowed(&["gpt-*".into()], "claude-3"));
    }
}
