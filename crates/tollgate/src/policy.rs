//! Policy decisions before any spend: may this caller use this model?
//! Pure functions of plain values.

/// `*` matches any run of characters; everything else is literal.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// An empty allow-list allows every model.
pub fn model_allowed(allowed: &[String], model: &str) -> bool {
    allowed.is_empty() || allowed.iter().any(|p| glob_match(p, model))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(!model_allowed(&["gpt-*".into()], "claude-3"));
    }
}
