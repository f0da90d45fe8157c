//! The command line as a user runs it: keys, demo, config errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

fn tollgate(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tollgate"));
    c.args(args).env("TOLLGATE_LOG", "warn").env_remove("TOLLGATE_KEY_SECRET");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

#[test]
fn keys_create_list_revoke_and_the_secret_is_never_stored() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("k.db").display());
    let out = tollgate(
        &[
            "--db",
            &db,
            "keys",
            "create",
            "--name",
            "checkout",
            "--team",
            "growth",
            "--tag",
            "env=prod",
            "--enforce-tag",
            "org=acme",
            "--models",
            "gpt-4o-mini,claude-*",
            "--expires",
            "30d",
            "--json",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let secret = v["key"].as_str().unwrap().to_string();
    let id = v["id"].as_str().unwrap().to_string();
    assert!(secret.starts_with("tg_"));
    // A key's team is enforced: no request can move it to another team.
    assert_eq!(v["enforced_tags"]["team"], "growth");
    assert!(v["tags"].get("team").is_none());
    assert_eq!(v["tags"]["env"], "prod");
    assert_eq!(v["enforced_tags"]["org"], "acme");
    assert_eq!(v["models"], serde_json::json!(["gpt-4o-mini", "claude-*"]));
    assert!(v["expires_at"].is_string());

    let out = tollgate(&["--db", &db, "keys", "list", "--json"], &[]);
    let list = String::from_utf8(out.stdout).unwrap();
    assert!(list.contains(&id) && !list.contains(&secret), "list never shows the secret");

    // Nothing in the database files holds the secret in clear.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            let bytes = std::fs::read(&p).unwrap();
            assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "secret found in {}", p.display());
        }
    }

    let out = tollgate(&["--db", &db, "keys", "revoke", &id], &[]);
    assert!(out.status.success());
    let out = tollgate(&["--db", &db, "keys", "list", "--json"], &[]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v[0]["revoked_at"].is_string());
    let out = tollgate(&["--db", &db, "keys", "revoke", "key_nope"], &[]);
    assert!(!out.status.success());
}

#[test]
fn key_budget_and_limits_and_budgets_cli() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("k.db").display());
    let out = tollgate(
        &[
            "--db", &db, "keys", "create", "--name", "x", "--budget", "5/month", "--rpm", "10", "--tpm", "1000",
            "--json",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let id = serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["id"].as_str().unwrap().to_string();
    let store = tollgate::store::sqlite::SqliteStore::open(&db).unwrap();
    let budgets = store.list_budgets().unwrap();
    assert_eq!(budgets.len(), 1);
    assert_eq!(budgets[0].scope.to_string(), format!("key={id}"));
    assert_eq!(budgets[0].limit.to_string(), "5.000000000");
    assert_eq!(store.list_limits().unwrap().len(), 2);
    let bad = tollgate(&["--db", &db, "keys", "create", "--name", "y", "--budget", "5"], &[]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("USD/PERIOD"));

    let out = tollgate(
        &[
            "--db",
            &db,
            "budgets",
            "set",
            "--scope",
            "team=growth,env=prod",
            "--limit",
            "500",
            "--period",
            "month",
            "--action",
            "downgrade:gpt-4o-mini",
            "--alert-at",
            "0.5,0.9",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = tollgate(&["--db", &db, "budgets", "list"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("env=prod,team=growth/month") && text.contains("downgrade:gpt-4o-mini"), "{text}");
    let out = tollgate(&["--db", &db, "budgets", "status"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("spent $0.000000000 of $500.000000000"), "{text}");
    let out = tollgate(&["--db", &db, "budgets", "set", "--scope", "team", "--limit", "5", "--period", "month"], &[]);
    assert!(!out.status.success());
    let out = tollgate(&["--db", &db, "budgets", "delete", "env=prod,team=growth/month"], &[]);
    assert!(out.status.success());
}

#[test]
fn config_errors_name_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[server]\nlisten = \"127.0.0.1:0\"\nlisen = 1\n").unwrap();
    let out = tollgate(&["--config", cfg.to_str().unwrap(), "serve"], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml") && err.contains("line 3") && err.contains("lisen"), "{err}");

    std::fs::write(&cfg, "[[providers]]\nname = \"openai\"\nkind = \"openai\"\napi_key = \"sk-live-123\"\n").unwrap();
    let out = tollgate(&["--config", cfg.to_str().unwrap(), "serve"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("literal api_key is refused") && !err.contains("sk-live-123"), "{err}");
}

#[test]
fn refuses_an_open_admin_api_on_a_public_address() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("k.db").display());
    let out = tollgate(&["--db", &db, "serve", "--listen", "0.0.0.0:0"], &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unauthenticated admin API"));
}

#[test]
fn demo_runs_and_fills_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let out =
        tollgate(&["demo", "--listen", "127.0.0.1:0", "--demo-db", db.to_str().unwrap(), "--duration-secs", "4"], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("curl -s http://127.0.0.1:") && text.contains("OpenAI(base_url="), "{text}");
    assert!(text.contains("/ui"), "prints the dashboard URL: {text}");
    let store = tollgate::store::sqlite::SqliteStore::open(db.to_str().unwrap()).unwrap();
    let rows =
        store.requests(&tollgate::store::RequestQuery { filters: vec![], limit: 1000, cursor: None }).unwrap().rows;
    assert!(rows.len() > 20, "demo traffic reached the ledger: {}", rows.len());
    let teams: std::collections::BTreeSet<_> =
        rows.iter().filter_map(|r| r.attribution.tag("team").map(String::from)).collect();
    assert!(teams.len() >= 4, "{teams:?}");
    // Live traffic through the gateway succeeds; the seeded history has failures on purpose.
    let live: Vec<_> =
        rows.iter().filter(|r| r.attribution.session.as_deref().is_some_and(|s| s.starts_with("sess-live-"))).collect();
    assert!(!live.is_empty(), "live traffic reached the ledger");
    assert!(live.iter().all(|r| r.status == 200), "live demo traffic succeeds");
    let storm = store
        .requests(&tollgate::store::RequestQuery {
            filters: vec![("status".into(), "429".into())],
            limit: 1000,
            cursor: None,
        })
        .unwrap()
        .rows;
    assert!(storm.len() > 50 && storm.iter().all(|r| r.attempts > 1), "the seeded retry storm: {}", storm.len());
}

#[test]
fn prices_list_show_import_and_check() {
    let out = tollgate(&["prices", "show", "gpt-4o-mini-2024-07-18"], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("openai/gpt-4o-mini") && text.contains("$0.15") && text.contains("$0.6"), "{text}");
    let out = tollgate(&["prices", "show", "no-such-model-xyz"], &[]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("unpriced"));
    let out = tollgate(&["prices", "list", "--provider", "anthropic"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("claude") && !text.contains("gpt-4o"), "{text}");

    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../tollgate-pricing/tests/fixtures");
    let dir = tempfile::tempdir().unwrap();
    for (fmt, sub) in [("litellm", "litellm"), ("genai-prices", "genai-prices")] {
        let file = std::fs::read_dir(format!("{fixtures}/{sub}")).unwrap().next().unwrap().unwrap().path();
        let out_file = dir.path().join(format!("{sub}.toml"));
        let out = tollgate(
            &["prices", "import", file.to_str().unwrap(), "--format", fmt, "--out", out_file.to_str().unwrap()],
            &[],
        );
        assert!(out.status.success(), "{fmt}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stderr).contains("imported"));
        let toml = std::fs::read_to_string(&out_file).unwrap();
        assert!(tollgate_pricing::Catalog::from_toml_str(&toml).is_ok(), "{fmt}: the imported catalog loads back");
    }

    // check: a model seen in the ledger without a price is listed.
    let db = format!("sqlite://{}", dir.path().join("p.db").display());
    let store = tollgate::store::sqlite::SqliteStore::open(&db).unwrap();
    let row: tollgate::ledger::LedgerRow = serde_json::from_value(serde_json::json!({
        "request_id": "r1", "time_ms": 1, "key_id": null, "endpoint": "chat.completions", "requested_model": "house-llm",
        "model": "house-llm", "provider": "local", "status": 200, "error_code": null, "usage": {}, "usage_source": "provider",
        "cost": null, "cache_savings": "0", "streamed": false, "client_disconnected": false, "cache": "off",
        "latency_ms": 1, "ttft_ms": null, "attempts": 1, "attribution": {}
    }))
    .unwrap();
    store.append(&[&row]).unwrap();
    let out = tollgate(&["--db", &db, "prices", "check"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.contains("house-llm")).unwrap_or_else(|| panic!("{text}"));
    let cols: Vec<&str> = line.split_whitespace().collect();
    // provider, model, requests, input tokens, output tokens, then what it would cost now.
    assert_eq!(&cols[..5], &["local", "house-llm", "1", "0", "0"], "{line}");
    assert!(line.contains("no price yet"), "{line}");
}
