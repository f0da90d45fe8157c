//! The audit log as an operator reads it: every change made through the
//! admin API (keys, budgets, prices) once, with who made it, before and after
//! (never a key's secret or hash), when and from where; `GET /api/v1/audit`
//! filters and pages; a viewer reads it, a team admin sees its own team's
//! entries; changes made by the CLI on the database are there too, as the OS
//! user; and `tollgate audit export` prints the same entries as JSON lines.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Harness;
use serde_json::{json, Value};
use tokio::process::Command;
use tollgate::config::{AdminToken, Role, Secret};

const ROOT: &str = "root-token-123";
const VIEWER: &str = "viewer-token-123";
const GROWTH: &str = "growth-admin-token";

/// gpt-4o-mini at a lower input and cached-input price, and a new model.
const NEWER: &str = r#"
format = 1

[[model]]
provider = "openai"
model = "gpt-4o-mini"
input = "0.10"
cache_read = "0.05"
output = "0.60"

[[model]]
provider = "openai"
model = "gpt-tollgate-audit"
input = "1"
output = "2"
"#;

async fn start() -> Harness {
    Harness::start_with("", |mut c| {
        c.server.admin_token = Some(Secret::new(ROOT.into()));
        c.admin_tokens.push(AdminToken {
            name: "auditor".into(),
            token: Secret::new(VIEWER.into()),
            role: Role::Viewer,
        });
        c.admin_tokens.push(AdminToken {
            name: "growth-admin".into(),
            token: Secret::new(GROWTH.into()),
            role: Role::TeamAdmin("growth".into()),
        });
        c
    })
    .await
}

async fn call(h: &Harness, token: &str, m: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut r = h.http.request(m, format!("{}{path}", h.base)).bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn post(h: &Harness, token: &str, path: &str, body: Value) -> Value {
    let (status, v) = call(h, token, reqwest::Method::POST, path, Some(body)).await;
    assert!(status == 200 || status == 201, "{path}: {status} {v}");
    v
}

/// `GET /api/v1/audit?query` as `token`: status and body.
async fn audit(h: &Harness, token: &str, query: &str) -> (u16, Value) {
    call(h, token, reqwest::Method::GET, &format!("/api/v1/audit{query}"), None).await
}

/// Every entry `token` may read, newest first, read a page at a time.
async fn all_entries(h: &Harness, token: &str, query: &str, limit: usize) -> (Vec<Value>, usize) {
    let mut out = Vec::new();
    let mut pages = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut q = format!("?limit={limit}{query}");
        if let Some(c) = &cursor {
            q.push_str(&format!("&cursor={c}"));
        }
        let (status, v) = audit(h, token, &q).await;
        assert_eq!(status, 200, "{v}");
        pages += 1;
        out.extend(v["entries"].as_array().unwrap().iter().cloned());
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return (out, pages),
        }
    }
}

fn actions(entries: &[Value]) -> Vec<&str> {
    entries.iter().map(|e| e["action"].as_str().unwrap()).collect()
}

/// True when any object in `v`, at any depth, has a field named `name`.
fn has_field(v: &Value, name: &str) -> bool {
    match v {
        Value::Object(m) => m.contains_key(name) || m.values().any(|v| has_field(v, name)),
        Value::Array(a) => a.iter().any(|v| has_field(v, name)),
        _ => false,
    }
}

/// Runs the CLI without blocking the runtime the gateway under test runs on.
async fn tollgate(args: &[&str], user: &str) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(args)
        .env("TOLLGATE_LOG", "warn")
        .env("USER", user)
        .env_remove("TOLLGATE_ADMIN_TOKEN")
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn admin_changes_are_audited_once_with_who_before_after_and_where() {
    let h = start().await;
    // A key with a budget and a rate limit, then revoked.
    let created = post(
        &h,
        ROOT,
        "/admin/v1/keys",
        json!({"name": "ci-bot", "team": "growth", "tags": {"env": "prod"}, "budget": "50/month", "rpm": 30}),
    )
    .await;
    let (secret, key_id) = (created["key"].as_str().unwrap().to_owned(), created["id"].as_str().unwrap().to_owned());
    post(&h, ROOT, &format!("/admin/v1/keys/{key_id}/revoke"), json!({})).await;
    // A budget set, replaced, set again unchanged (no entry), deleted.
    let budget =
        |usd: &str| json!({"id": "growth-monthly", "scope": "team=growth", "limit_usd": usd, "period": "month"});
    post(&h, ROOT, "/admin/v1/budgets", budget("100")).await;
    post(&h, ROOT, "/admin/v1/budgets", budget("250")).await;
    post(&h, ROOT, "/admin/v1/budgets", budget("250")).await;
    let (status, _) = call(&h, ROOT, reqwest::Method::DELETE, "/admin/v1/budgets/growth-monthly", None).await;
    assert_eq!(status, 200);
    // A price update, then the same again (nothing changes: no entry).
    let applied = post(&h, ROOT, "/admin/v1/prices", json!({"catalog": NEWER, "source": "newer.toml"})).await;
    assert_eq!(applied["applied"], true, "{applied}");
    let again = post(&h, ROOT, "/admin/v1/prices", json!({"catalog": NEWER})).await;
    assert_eq!(again["applied"], false);
    // Refused changes leave nothing: a viewer writing, a team admin on another team.
    let (status, _) = call(&h, VIEWER, reqwest::Method::POST, "/admin/v1/budgets", Some(budget("1"))).await;
    assert_eq!(status, 403);
    let other = json!({"id": "search-monthly", "scope": "team=search", "limit_usd": "5", "period": "month"});
    let (status, _) = call(&h, GROWTH, reqwest::Method::POST, "/admin/v1/budgets", Some(other)).await;
    assert_eq!(status, 403);

    // A viewer reads the log; without a token nobody does.
    let (status, v) = audit(&h, VIEWER, "").await;
    assert_eq!(status, 200, "{v}");
    assert!(v["next_cursor"].is_null());
    let entries = v["entries"].as_array().unwrap().clone();
    assert_eq!(
        actions(&entries),
        ["price.update", "budget.delete", "budget.set", "budget.set", "key.revoke", "key.create"],
        "each change once, newest first: {v}"
    );
    let (status, _) = call(&h, "", reqwest::Method::GET, "/api/v1/audit", None).await;
    assert_eq!(status, 401);

    for e in &entries {
        assert_eq!(e["actor"], "admin-token:main", "{e}");
        assert_eq!(e["actor_role"], "admin", "{e}");
        assert_eq!(e["source"], "127.0.0.1", "{e}");
        assert!(e["id"].is_i64() && e["time_ms"].is_i64(), "{e}");
        assert!(e["time"].as_str().unwrap().ends_with('Z'), "{e}");
    }
    let [price, deleted, replaced, set, revoked, key] = &entries[..] else { unreachable!() };

    // The key: its id, name, tags, budget and limit; never its secret or hash.
    assert_eq!(key["target"], key_id.as_str());
    assert_eq!(key["team"], "growth");
    assert!(key["before"].is_null());
    assert_eq!(key["after"]["id"], key_id.as_str());
    assert_eq!(key["after"]["name"], "ci-bot");
    assert_eq!(key["after"]["tags"]["env"], "prod");
    assert_eq!(key["after"]["enforced_tags"]["team"], "growth");
    assert_eq!(key["after"]["budget"]["limit_usd"], "50.000000000");
    assert_eq!(key["after"]["budget"]["period"], "month");
    assert_eq!(key["after"]["budget"]["scope"], format!("key={key_id}"));
    assert_eq!(key["after"]["limits"][0]["scope"], format!("key={key_id}"));
    assert_eq!(key["after"]["limits"][0]["kind"], "requests");
    assert_eq!(key["after"]["limits"][0]["amount"], 30);
    assert!(key["after"]["revoked_at"].is_null());
    assert_eq!(revoked["target"], key_id.as_str());
    assert_eq!(revoked["team"], "growth");
    assert!(revoked["before"]["revoked_at"].is_null(), "{revoked}");
    assert!(revoked["after"]["revoked_at"].is_string(), "{revoked}");
    let text = serde_json::to_string(&v).unwrap();
    assert!(!text.contains(&secret), "the key's secret is in the audit log");
    let hasher = tollgate::auth::KeyHasher::new(&h.stores.keys.key_hash_secret().await.unwrap());
    let hash = hasher.hash(&secret);
    assert!(!text.contains(&hex::encode(hash)), "the key's hash is in the audit log");
    for name in ["key", "hash", "secret", "token"] {
        assert!(!has_field(&v, name), "a field {name:?} in {v}");
    }

    // The budget: its old and new limit.
    assert_eq!(set["target"], "growth-monthly");
    assert_eq!(set["team"], "growth");
    assert!(set["before"].is_null());
    assert_eq!(set["after"]["limit_usd"], "100.000000000");
    assert_eq!(set["after"]["scope"], "team=growth");
    assert_eq!(replaced["before"]["limit_usd"], "100.000000000");
    assert_eq!(replaced["after"]["limit_usd"], "250.000000000");
    assert_eq!(deleted["target"], "growth-monthly");
    assert_eq!(deleted["before"]["limit_usd"], "250.000000000");
    assert!(deleted["after"].is_null());

    // The price update: the old and new rates of what it changed, what it added.
    assert_eq!(price["target"], format!("price_update:{}", applied["id"]));
    assert!(price["team"].is_null());
    assert_eq!(price["after"]["source"], "newer.toml");
    assert_eq!(price["after"]["added_count"], 1);
    assert_eq!(price["after"]["added"][0]["model"], "gpt-tollgate-audit");
    let mini = |side: &str| {
        price[side]["changed"].as_array().unwrap().iter().find(|c| c["model"] == "gpt-4o-mini").cloned().unwrap()
    };
    assert_eq!(mini("before")["rates"]["input"], "0.15", "{price}");
    assert_eq!(mini("after")["rates"]["input"], "0.1", "{price}");

    // Filters.
    let (_, v) = audit(&h, ROOT, "?action=budget.*").await;
    assert_eq!(actions(v["entries"].as_array().unwrap()), ["budget.delete", "budget.set", "budget.set"]);
    let (_, v) = audit(&h, ROOT, "?action=key.create").await;
    assert_eq!(v["entries"][0], *key);
    assert_eq!(v["entries"].as_array().unwrap().len(), 1);
    let (_, v) = audit(&h, ROOT, "?actor=admin-token:main").await;
    assert_eq!(v["entries"].as_array().unwrap().len(), 6);
    let (_, v) = audit(&h, ROOT, "?actor=admin-token:auditor").await;
    assert!(v["entries"].as_array().unwrap().is_empty(), "the viewer changed nothing");
    let t = replaced["time_ms"].as_i64().unwrap();
    let (_, v) = audit(&h, ROOT, &format!("?since={t}")).await;
    let want: Vec<&Value> = entries.iter().filter(|e| e["time_ms"].as_i64().unwrap() >= t).collect();
    assert_eq!(v["entries"].as_array().unwrap().iter().collect::<Vec<_>>(), want, "since is inclusive");
    let (_, v) = audit(&h, ROOT, &format!("?until={t}")).await;
    let want: Vec<&Value> = entries.iter().filter(|e| e["time_ms"].as_i64().unwrap() < t).collect();
    assert_eq!(v["entries"].as_array().unwrap().iter().collect::<Vec<_>>(), want, "until is exclusive");
    let (_, v) = audit(&h, ROOT, "?since=2999-01-01T00:00:00Z").await;
    assert!(v["entries"].as_array().unwrap().is_empty());
    let (_, v) = audit(&h, ROOT, "?until=2000-01-01T00:00:00Z").await;
    assert!(v["entries"].as_array().unwrap().is_empty());
    let (_, v) = audit(&h, ROOT, "?since=1h&until=2999-01-01T00:00:00Z").await;
    assert_eq!(v["entries"].as_array().unwrap().len(), 6, "a duration back from now");
    for bad in ["?limit=0", "?limit=x", "?cursor=abc", "?since=yesterday", "?until=soon", "?surprise=1"] {
        let (status, v) = audit(&h, ROOT, bad).await;
        assert_eq!(status, 400, "{bad}: {v}");
        assert_eq!(v["error"]["code"], "invalid_request", "{bad}: {v}");
    }

    // Paging: every entry once, in order.
    let (paged, pages) = all_entries(&h, VIEWER, "", 4).await;
    assert_eq!((paged.clone(), pages), (entries.clone(), 2));
    let (paged, pages) = all_entries(&h, VIEWER, "", 1).await;
    assert_eq!((paged, pages), (entries.clone(), 6));
    let (paged, _) = all_entries(&h, VIEWER, "&action=budget.*", 2).await;
    assert_eq!(paged, entries[1..4].to_vec());

    // A team admin's changes carry its name and role; it sees its own team's
    // entries only (no other team's budget, no price update).
    post(
        &h,
        ROOT,
        "/admin/v1/budgets",
        json!({"id": "search-monthly", "scope": "team=search", "limit_usd": "5", "period": "month"}),
    )
    .await;
    let mine = post(&h, GROWTH, "/admin/v1/keys", json!({"name": "growth-bot"})).await;
    let (status, v) = audit(&h, GROWTH, "").await;
    assert_eq!(status, 200, "{v}");
    let seen = v["entries"].as_array().unwrap();
    assert_eq!(actions(seen), ["key.create", "budget.delete", "budget.set", "budget.set", "key.revoke", "key.create"]);
    assert!(seen.iter().all(|e| e["team"] == "growth"), "{v}");
    assert_eq!(seen[0]["target"], mine["id"]);
    assert_eq!(seen[0]["actor"], "admin-token:growth-admin");
    assert_eq!(seen[0]["actor_role"], "team_admin:growth");
    let (_, v) = audit(&h, ROOT, "").await;
    assert_eq!(v["entries"].as_array().unwrap().len(), 8, "an admin sees every team's");

    // The CLI exports the same entries, oldest first, one JSON object a line.
    let (ok, out, err) = tollgate(&["--db", &h.db_url(), "audit", "export"], "exporter").await;
    assert!(ok, "{err}");
    let lines: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let mut oldest_first = v["entries"].as_array().unwrap().clone();
    oldest_first.reverse();
    assert_eq!(lines, oldest_first);
    let since = entries[2]["time"].as_str().unwrap();
    let (ok, out, err) = tollgate(&["--db", &h.db_url(), "audit", "export", "--since", since], "exporter").await;
    assert!(ok, "{err}");
    let lines: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let t = entries[2]["time_ms"].as_i64().unwrap();
    assert_eq!(lines, oldest_first.iter().filter(|e| e["time_ms"].as_i64().unwrap() >= t).cloned().collect::<Vec<_>>());
    assert!(!out.contains(&secret));
    h.stop().await;
}

#[tokio::test]
async fn cli_changes_on_the_database_are_audited_as_the_os_user() {
    let h = start().await;
    let db = h.db_url();
    let (ok, out, err) = tollgate(
        &["--db", &db, "keys", "create", "--name", "nightly", "--team", "ops", "--budget", "5/day", "--json"],
        "alice",
    )
    .await;
    assert!(ok, "{err}");
    let created: Value = serde_json::from_str(&out).unwrap();
    let (secret, id) = (created["key"].as_str().unwrap(), created["id"].as_str().unwrap());
    let (ok, _, err) = tollgate(&["--db", &db, "keys", "revoke", id], "alice").await;
    assert!(ok, "{err}");
    for usd in ["7", "9.5"] {
        let set = [
            "--db",
            db.as_str(),
            "budgets",
            "set",
            "--scope",
            "team=ops",
            "--period",
            "day",
            "--id",
            "ops-daily",
            "--limit",
            usd,
        ];
        let (ok, _, err) = tollgate(&set, "bob").await;
        assert!(ok, "{err}");
    }
    let (ok, _, err) = tollgate(&["--db", &db, "budgets", "delete", "ops-daily"], "bob").await;
    assert!(ok, "{err}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("newer.toml");
    std::fs::write(&file, NEWER).unwrap();
    let (ok, out, err) = tollgate(&["--db", &db, "prices", "update", "--from", file.to_str().unwrap()], "carol").await;
    assert!(ok, "{err}{out}");

    let (status, v) = audit(&h, VIEWER, "").await;
    assert_eq!(status, 200, "{v}");
    let entries = v["entries"].as_array().unwrap();
    assert_eq!(
        actions(entries),
        ["price.update", "budget.delete", "budget.set", "budget.set", "key.revoke", "key.create"],
        "{v}"
    );
    let actors: Vec<&str> = entries.iter().map(|e| e["actor"].as_str().unwrap()).collect();
    assert_eq!(actors, ["cli:carol", "cli:bob", "cli:bob", "cli:bob", "cli:alice", "cli:alice"]);
    for e in entries {
        assert_eq!(e["source"], "cli", "{e}");
        assert_eq!(e["actor_role"], "cli", "{e}");
    }
    assert_eq!(entries[5]["after"]["budget"]["limit_usd"], "5.000000000");
    assert_eq!(entries[5]["team"], "ops");
    assert!(entries[4]["after"]["revoked_at"].is_string());
    assert_eq!(entries[3]["after"]["limit_usd"], "7.000000000");
    assert_eq!(entries[2]["before"]["limit_usd"], "7.000000000");
    assert_eq!(entries[2]["after"]["limit_usd"], "9.500000000");
    assert_eq!(entries[1]["before"]["limit_usd"], "9.500000000");
    assert_eq!(entries[0]["after"]["source"], file.to_str().unwrap());
    assert!(!serde_json::to_string(&v).unwrap().contains(secret));
    // Revoking a revoked key again changes nothing, and records nothing.
    let (ok, _, err) = tollgate(&["--db", &db, "keys", "revoke", id], "alice").await;
    assert!(ok, "{err}");
    let (_, v) = audit(&h, VIEWER, "?action=key.revoke").await;
    assert_eq!(v["entries"].as_array().unwrap().len(), 1);
    h.stop().await;
}
