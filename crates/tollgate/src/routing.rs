//! Route selection: which provider and upstream model serve a client's model name.
//!
//! Pure: it reads the configuration and the requested name, nothing else.
//! Explicit `[[models]]` entries win; otherwise, when implicit routes are on,
//! `provider/model` names and the well-known model families (`gpt-*`,
//! `claude-*`, `gemini-*`, …) go to the first provider that serves them.

use crate::config::{Config, ImplicitRoutes, RouteTarget, Strategy};
use tollgate_providers::ProviderKind;

/// One upstream to try, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub provider: usize,
    pub model: String,
    /// The client-facing name this attempt serves (differs for fallbacks).
    pub route: String,
}

/// The ordered attempts for `model`: its own targets, then each fallback's.
/// Empty when nothing serves the name. `known(provider, model)` says whether
/// the price catalog knows a name (used by `implicit_routes = "known_models"`).
pub fn plan(config: &Config, model: &str, known: &dyn Fn(usize, &str) -> bool) -> Vec<Attempt> {
    let mut out = Vec::new();
    push_route(config, model, known, &mut out);
    if out.is_empty() {
        return out;
    }
    if let Some(route) = config.routes.get(model) {
        for f in &route.fallbacks {
            push_route(config, f, known, &mut out);
        }
    }
    out.dedup();
    out
}

fn push_route(config: &Config, name: &str, known: &dyn Fn(usize, &str) -> bool, out: &mut Vec<Attempt>) {
    if let Some(route) = config.routes.get(name) {
        for RouteTarget { provider, model, .. } in &route.targets {
            out.push(Attempt { provider: *provider, model: model.clone(), route: name.into() });
        }
        return;
    }
    let only_known = match config.server.implicit_routes {
        ImplicitRoutes::Off => return,
        ImplicitRoutes::Prefix => false,
        ImplicitRoutes::KnownModels => true,
    };
    let admit = |idx: usize, model: &str| !only_known || known(idx, model);
    if let Some((prefix, rest)) = name.split_once('/') {
        if let Some((idx, _)) = config.provider(prefix) {
            if !rest.is_empty() {
                if admit(idx, rest) {
                    out.push(Attempt { provider: idx, model: rest.into(), route: name.into() });
                }
                return;
            }
        }
    }
    if let Some(idx) = implicit_provider(config, name).filter(|idx| admit(*idx, name)) {
        out.push(Attempt { provider: idx, model: name.into(), route: name.into() });
    }
}

/// What a routing rule looks at.
#[derive(Debug, Clone, Copy)]
pub struct RequestShape<'a> {
    pub model: &'a str,
    pub prompt_bytes: u64,
    pub has_tools: bool,
    pub complex: bool,
}

/// `high` when the prompt is long, uses tools, or matches a configured pattern.
pub fn is_complex(c: &crate::config::Complexity, prompt_text: &str, has_tools: bool) -> bool {
    has_tools || prompt_text.len() as u64 > c.long_prompt_bytes || c.patterns.iter().any(|p| p.is_match(prompt_text))
}

/// The first cost-aware rule that matches, if any: (rule name, model to serve).
pub fn rule_for<'c>(
    rules: &'c [crate::config::RoutingRule],
    shape: &RequestShape<'_>,
    facts: &crate::budget::Facts<'_>,
) -> Option<&'c crate::config::RoutingRule> {
    rules.iter().find(|r| {
        (r.models.is_empty() || r.models.iter().any(|m| crate::pattern::glob_match(m, shape.model)))
            && r.scope.as_ref().is_none_or(|s| s.matches(facts))
            && r.max_prompt_bytes.is_none_or(|m| shape.prompt_bytes <= m)
            && r.has_tools.is_none_or(|t| t == shape.has_tools)
            && r.complex.is_none_or(|c| c == shape.complex)
            && r.route_to != shape.model
    })
}

/// What the router knows about a target at request time (from `upstream::Health`
/// and the price catalog), so ordering stays a pure function.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TargetView {
    /// Smoothed recent latency; `None` before the first answer.
    pub latency_ms: Option<u64>,
    /// Price of a reference request (1k input, 1k output tokens) in nano-dollars.
    pub unit_cost: Option<i64>,
    /// The circuit breaker has ejected it for now.
    pub ejected: bool,
}

/// Orders the primary route's attempts by its strategy (fallback routes stay
/// after it, in order), then moves ejected targets behind healthy ones.
/// `draw` is a uniform number in `0..u32::MAX` for the weighted choice.
pub fn order(config: &Config, model: &str, attempts: &mut [Attempt], view: impl Fn(&Attempt) -> TargetView, draw: u32) {
    let primary = attempts.iter().take_while(|a| a.route == model).count();
    let strategy = config.routes.get(model).map_or(Strategy::Ordered, |r| r.strategy);
    let head = &mut attempts[..primary];
    match strategy {
        Strategy::Ordered => {}
        Strategy::Weighted => {
            let weights: Vec<u64> = head
                .iter()
                .map(|a| {
                    config
                        .routes
                        .get(model)
                        .and_then(|r| r.targets.iter().find(|t| t.provider == a.provider && t.model == a.model))
                        .map_or(1, |t| u64::from(t.weight))
                })
                .collect();
            let total: u64 = weights.iter().sum();
            if total > 0 {
                let mut pick = u64::from(draw) * total / u64::from(u32::MAX).max(1);
                let mut chosen = 0;
                for (i, w) in weights.iter().enumerate() {
                    if pick < *w {
                        chosen = i;
                        break;
                    }
                    pick -= w;
                    chosen = i;
                }
                head[..=chosen].rotate_right(1);
            }
        }
        Strategy::LeastLatency => head.sort_by_key(|a| view(a).latency_ms.unwrap_or(0)),
        Strategy::LeastCost => head.sort_by_key(|a| view(a).unit_cost.unwrap_or(i64::MAX)),
    }
    // Healthy targets first; the relative order is otherwise kept (stable sort).
    attempts.sort_by_key(|a| view(a).ejected);
}

/// The family a bare model name belongs to, by its well-known prefix.
fn implicit_provider(config: &Config, name: &str) -> Option<usize> {
    let by_kind = |kind: ProviderKind| config.providers.iter().position(|p| p.kind == kind);
    let by_name = |n: &str| config.providers.iter().position(|p| p.name == n);
    let openai = [
        "gpt-",
        "chatgpt-",
        "text-embedding-",
        "omni-moderation",
        "davinci",
        "babbage",
        "codex-",
        "dall-e-",
        "whisper-",
        "tts-",
    ];
    if openai.iter().any(|p| name.starts_with(p)) || is_o_series(name) {
        return by_kind(ProviderKind::OpenAi).or_else(|| by_kind(ProviderKind::AzureOpenAi));
    }
    if name.starts_with("claude-") {
        return by_kind(ProviderKind::Anthropic);
    }
    if is_bedrock_id(name) {
        return by_kind(ProviderKind::Bedrock);
    }
    if name.starts_with("gemini-") || name.starts_with("gemma-") {
        return by_kind(ProviderKind::Gemini).or_else(|| by_kind(ProviderKind::Vertex));
    }
    let mistral = ["mistral-", "open-mistral", "codestral", "ministral-", "pixtral-", "magistral-", "devstral-"];
    if mistral.iter().any(|p| name.starts_with(p)) {
        return by_name("mistral");
    }
    if name.starts_with("deepseek-") {
        return by_name("deepseek");
    }
    None
}

/// A Bedrock model id (`anthropic.claude-…-v1:0`, `amazon.nova-pro-v1:0`),
/// bare or under a cross-region inference profile (`us.`, `eu.`, `apac.`, `global.`…).
fn is_bedrock_id(name: &str) -> bool {
    let vendors =
        ["anthropic.", "amazon.", "meta.", "mistral.", "cohere.", "ai21.", "deepseek.", "writer.", "qwen.", "openai."];
    let profiles = ["us.", "eu.", "apac.", "global.", "us-gov.", "jp.", "au.", "ca."];
    let bare = profiles.iter().find_map(|p| name.strip_prefix(p)).unwrap_or(name);
    vendors.iter().any(|v| bare.starts_with(v))
}

/// `o1`, `o3-mini`, `o4-mini-2025-04-16`, …
fn is_o_series(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 2 && b[0] == b'o' && b[1].is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config() -> Config {
        let text = r#"
[[providers]]
name = "openai"
kind = "openai"
base_url = "http://127.0.0.1:1/v1"
[[providers]]
name = "anthropic"
kind = "anthropic"
base_url = "http://127.0.0.1:1"
[[providers]]
name = "ollama"
kind = "openai_compatible"
base_url = "http://127.0.0.1:11434/v1"
[[models]]
name = "smart"
targets = [{ provider = "openai", model = "gpt-4o" }, { provider = "anthropic", model = "claude-sonnet-4-5" }]
fallbacks = ["cheap"]
[[models]]
name = "cheap"
targets = [{ provider = "ollama", model = "llama3.1" }]
"#;
        Config::from_toml(text, "t", &HashMap::<String, String>::new()).unwrap()
    }

    fn a(provider: usize, model: &str, route: &str) -> Attempt {
        Attempt { provider, model: model.into(), route: route.into() }
    }

    #[test]
    fn table() {
        let c = config();
        let cases: Vec<(&str, Vec<Attempt>)> = vec![
            ("smart", vec![a(0, "gpt-4o", "smart"), a(1, "claude-sonnet-4-5", "smart"), a(2, "llama3.1", "cheap")]),
            ("cheap", vec![a(2, "llama3.1", "cheap")]),
            ("gpt-4o-mini", vec![a(0, "gpt-4o-mini", "gpt-4o-mini")]),
            ("o3-mini", vec![a(0, "o3-mini", "o3-mini")]),
            ("text-embedding-3-small", vec![a(0, "text-embedding-3-small", "text-embedding-3-small")]),
            ("claude-haiku-4-5", vec![a(1, "claude-haiku-4-5", "claude-haiku-4-5")]),
            ("ollama/qwen2.5:7b", vec![a(2, "qwen2.5:7b", "ollama/qwen2.5:7b")]),
            ("gemini-2.5-flash", vec![]),
            ("unknown-model", vec![]),
            ("ollama/", vec![]),
            ("omega", vec![]),
        ];
        for (name, want) in cases {
            assert_eq!(plan(&c, name, &|_, _| true), want, "{name}");
        }
    }

    #[test]
    fn strategies_order_targets() {
        let text = r#"
[[providers]]
name = "a"
kind = "openai"
base_url = "http://127.0.0.1:1/v1"
[[providers]]
name = "b"
kind = "openai"
base_url = "http://127.0.0.1:2/v1"
[[models]]
name = "w"
strategy = "weighted"
targets = [{ provider = "a", model = "m", weight = 1 }, { provider = "b", model = "m", weight = 3 }]
[[models]]
name = "fast"
strategy = "least_latency"
targets = [{ provider = "a", model = "m" }, { provider = "b", model = "m" }]
fallbacks = ["w"]
[[models]]
name = "cheap"
strategy = "least_cost"
targets = [{ provider = "a", model = "m" }, { provider = "b", model = "m" }]
"#;
        let c = Config::from_toml(text, "t", &HashMap::<String, String>::new()).unwrap();
        let first = |name: &str, draw: u32, view: &dyn Fn(&Attempt) -> TargetView| {
            let mut p = plan(&c, name, &|_, _| true);
            order(&c, name, &mut p, view, draw);
            p.iter().map(|a| a.provider).collect::<Vec<_>>()
        };
        let none = |_: &Attempt| TargetView::default();
        // Weight 1:3 → draws in the first quarter pick a, the rest b.
        assert_eq!(first("w", 0, &none), vec![0, 1]);
        assert_eq!(first("w", u32::MAX / 4 + 10, &none), vec![1, 0]);
        assert_eq!(first("w", u32::MAX, &none), vec![1, 0]);
        let lat =
            |a: &Attempt| TargetView { latency_ms: Some(if a.provider == 0 { 90 } else { 10 }), ..Default::default() };
        assert_eq!(first("fast", 0, &lat)[..2], [1, 0], "fastest first; fallbacks after");
        let cost =
            |a: &Attempt| TargetView { unit_cost: Some(if a.provider == 0 { 500 } else { 100 }), ..Default::default() };
        assert_eq!(first("cheap", 0, &cost), vec![1, 0]);
        let ejected = |a: &Attempt| TargetView { ejected: a.provider == 0, ..Default::default() };
        assert_eq!(first("cheap", 0, &ejected), vec![1, 0], "an ejected target goes last");
        let bad = text.replace("least_cost", "random");
        assert!(Config::from_toml(&bad, "t", &HashMap::<String, String>::new())
            .unwrap_err()
            .to_string()
            .contains("strategy \"random\""));
    }

    #[test]
    fn implicit_routes_can_be_turned_off() {
        let mut c = config();
        c.server.implicit_routes = ImplicitRoutes::Off;
        assert!(plan(&c, "gpt-4o-mini", &|_, _| true).is_empty());
        assert_eq!(plan(&c, "cheap", &|_, _| true).len(), 1);
    }

    #[test]
    fn known_models_routes_only_names_the_catalog_knows() {
        let mut c = config();
        c.server.implicit_routes = ImplicitRoutes::KnownModels;
        let known = |_: usize, m: &str| m == "gpt-4o-mini" || m == "llama3.1";
        assert_eq!(plan(&c, "gpt-4o-mini", &known).len(), 1);
        assert!(plan(&c, "gpt-made-up-9", &known).is_empty(), "an unknown name under a known prefix");
        assert!(plan(&c, "openai/gpt-made-up-9", &known).is_empty());
        assert_eq!(plan(&c, "ollama/llama3.1", &known).len(), 1);
        assert_eq!(plan(&c, "cheap", &known).len(), 1, "[[models]] entries are served whatever the catalog says");
        c.server.implicit_routes = ImplicitRoutes::Prefix;
        assert_eq!(plan(&c, "gpt-made-up-9", &known).len(), 1, "prefix routing forwards any name");
    }
}
