//! Cost per outcome: outcomes recorded against a request, a trace and a
//! session, and the report's numbers checked against the ledger's costs.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns (and `common`) unwrap too

mod common;

use common::{chat, Harness};
use serde_json::{json, Value};
use tollgate_units::Money;

async fn send(h: &Harness, model: &str, headers: &[(&str, &str)]) -> String {
    let mut req = h.post("/v1/chat/completions").json(&chat(model, "do the thing", false));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.headers()["x-tollgate-request-id"].to_str().unwrap().to_string()
}

async fn outcome(h: &Harness, body: Value) -> reqwest::Response {
    h.http.post(format!("{}/api/v1/outcomes", h.base)).json(&body).send().await.unwrap()
}

async fn report(h: &Harness, by: &str) -> Value {
    let r = h.http.get(format!("{}/api/v1/outcomes/cost?by={by}", h.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

fn row_for<'a>(report: &'a Value, dim: &str, value: &str) -> &'a Value {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r[dim] == value)
        .unwrap_or_else(|| panic!("no {dim}={value} in {report}"))
}

/// cost / n to the nearest nano-dollar, computed independently of the gateway.
fn per(cost: Money, n: i64) -> String {
    let c = i128::from(cost.nanos());
    let q = (2 * c + i128::from(n)) / (2 * i128::from(n));
    Money::from_nanos(q as i64).to_string()
}

#[tokio::test]
async fn cost_per_successful_outcome_by_feature_prompt_and_model() {
    let h = Harness::start().await;
    let a = send(
        &h,
        "gpt-4o-mini",
        &[("x-tollgate-tags", "feature=summarize"), ("x-tollgate-trace-id", "run-1"), ("x-tollgate-prompt", "sum@v1")],
    )
    .await;
    let b = send(
        &h,
        "gpt-4o",
        &[("x-tollgate-tags", "feature=summarize"), ("x-tollgate-trace-id", "run-1"), ("x-tollgate-prompt", "sum@v1")],
    )
    .await;
    let c = send(
        &h,
        "gpt-4o-mini",
        &[("x-tollgate-tags", "feature=triage"), ("x-tollgate-session-id", "sess-9"), ("x-tollgate-prompt", "tri@v2")],
    )
    .await;
    let d = send(
        &h,
        "gpt-4o-mini",
        &[("x-tollgate-tags", "feature=triage"), ("x-tollgate-session-id", "sess-9"), ("x-tollgate-prompt", "tri@v2")],
    )
    .await;
    let f = send(&h, "gpt-4o-mini", &[("x-tollgate-tags", "feature=triage"), ("x-tollgate-prompt", "tri@v2")]).await;
    // Not covered by any outcome: excluded from every number.
    let _e = send(&h, "gpt-4o-mini", &[("x-tollgate-tags", "feature=summarize")]).await;

    let r = outcome(&h, json!({"trace_id": "run-1", "name": "summary_accepted", "success": true})).await;
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    assert!(created["id"].as_str().unwrap().starts_with("out_"));
    assert_eq!(created["trace_id"], "run-1");
    assert_eq!(
        outcome(&h, json!({"session_id": "sess-9", "name": "ticket_closed", "value": 12.5, "success": true}))
            .await
            .status(),
        201
    );
    assert_eq!(outcome(&h, json!({"request_id": f, "name": "ticket_closed", "success": false})).await.status(), 201);
    // A second outcome on a row already covered: the row's cost counts once.
    assert_eq!(
        outcome(&h, json!({"request_id": a, "name": "summary_accepted", "value": 1, "success": true})).await.status(),
        201
    );

    // Refusals.
    let bad = outcome(&h, json!({"request_id": a, "trace_id": "run-1", "name": "x", "success": true})).await;
    assert_eq!(bad.status(), 400);
    assert_eq!(outcome(&h, json!({"request_id": a, "name": "x"})).await.status(), 400);
    let r = h.http.get(format!("{}/api/v1/outcomes/cost", h.base)).send().await.unwrap();
    assert_eq!(r.status(), 400);

    let rows = h.wait_rows(6).await;
    let cost = |id: &str| rows.iter().find(|r| r.request_id == id).unwrap().cost.unwrap();
    let model = |id: &str| rows.iter().find(|r| r.request_id == id).unwrap().model.clone().unwrap();

    let by_feature = report(&h, "feature").await;
    let s = row_for(&by_feature, "feature", "summarize");
    let s_cost = cost(&a) + cost(&b);
    assert_eq!(s["cost_usd"], s_cost.to_string());
    assert_eq!((s["outcomes"].as_u64(), s["successes"].as_u64(), s["requests"].as_u64()), (Some(2), Some(2), Some(2)));
    assert_eq!(s["cost_per_success_usd"], per(s_cost, 2));
    let t = row_for(&by_feature, "feature", "triage");
    let t_cost = cost(&c) + cost(&d) + cost(&f);
    assert_eq!(t["cost_usd"], t_cost.to_string());
    assert_eq!((t["outcomes"].as_u64(), t["successes"].as_u64(), t["failures"].as_u64()), (Some(2), Some(1), Some(1)));
    assert_eq!(t["cost_per_success_usd"], t_cost.to_string(), "the failed attempt is paid by the one success");
    let total = &by_feature["total"];
    assert_eq!(total["cost_usd"], (s_cost + t_cost).to_string());
    assert_eq!(
        (total["outcomes"].as_u64(), total["successes"].as_u64(), total["requests"].as_u64()),
        (Some(4), Some(3), Some(5))
    );
    assert_eq!(total["cost_per_success_usd"], per(s_cost + t_cost, 3));

    let by_prompt = report(&h, "prompt").await;
    assert_eq!(row_for(&by_prompt, "prompt", "sum@v1")["cost_per_success_usd"], per(s_cost, 2));
    assert_eq!(row_for(&by_prompt, "prompt", "tri@v2")["cost_per_success_usd"], t_cost.to_string());

    // By model: run-1 used two models; each carries its own spend against the same success.
    let by_model = report(&h, "model").await;
    assert_ne!(model(&a), model(&b));
    let big = row_for(&by_model, "model", &model(&b));
    assert_eq!(big["cost_usd"], cost(&b).to_string());
    assert_eq!(big["successes"].as_u64(), Some(1));
    let mini = row_for(&by_model, "model", &model(&a));
    assert_eq!(mini["cost_usd"], (cost(&a) + t_cost).to_string());
    assert_eq!((mini["outcomes"].as_u64(), mini["successes"].as_u64()), (Some(4), Some(3)));

    // Filter by outcome name.
    let r: Value = h
        .http
        .get(format!("{}/api/v1/outcomes/cost?by=feature&name=ticket_closed", h.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["rows"].as_array().unwrap().len(), 1);
    assert_eq!(r["rows"][0]["feature"], "triage");

    let list: Value = h.http.get(format!("{}/api/v1/outcomes", h.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["outcomes"].as_array().unwrap().len(), 4);
    assert!(list["outcomes"].as_array().unwrap().iter().any(|o| o["value"] == json!(12.5)));
    h.stop().await;
}

#[tokio::test]
async fn applications_report_outcomes_with_their_key_and_reports_need_the_admin() {
    use tollgate::config::{AdminToken, Role, Secret};
    let h = Harness::start_with("", |mut c| {
        c.server.admin_token = Some(Secret::new("admin-secret".into()));
        for (name, role) in [("viewer", Role::Viewer), ("other-team", Role::TeamAdmin("search".into()))] {
            c.admin_tokens.push(AdminToken { name: name.into(), token: Secret::new(format!("{name}-secret")), role });
        }
        c
    })
    .await;
    let id = send(&h, "gpt-4o-mini", &[]).await;
    let r = h
        .post("/api/v1/outcomes")
        .json(&json!({"request_id": id, "name": "done", "success": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let o: Value = r.json().await.unwrap();
    assert_eq!(o["reported_by"], h.key_id.as_str());
    assert_eq!(outcome(&h, json!({"request_id": id, "name": "done", "success": true})).await.status(), 401);

    // Wait for the row to leave the spool before reading reports that join on it.
    let cost = h.row(&id).cost.unwrap();
    let url = format!("{}/api/v1/outcomes/cost?by=model", h.base);
    assert_eq!(h.http.get(&url).bearer_auth(&h.key).send().await.unwrap().status(), 401);
    let r = h.http.get(&url).bearer_auth("admin-secret").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["total"]["cost_per_success_usd"], cost.to_string());

    // A viewer reads but cannot report; another team's admin sees none of this team's spend.
    assert_eq!(h.http.get(&url).bearer_auth("viewer-secret").send().await.unwrap().status(), 200);
    let r = h.http.post(format!("{}/api/v1/outcomes", h.base)).bearer_auth("viewer-secret");
    assert_eq!(r.json(&json!({"request_id": id, "name": "x", "success": true})).send().await.unwrap().status(), 403);
    let v: Value = h.http.get(&url).bearer_auth("other-team-secret").send().await.unwrap().json().await.unwrap();
    assert_eq!(v["total"]["requests"], 0);
    assert_eq!(v["rows"].as_array().unwrap().len(), 0);
    h.stop().await;
}
