//! One conformance suite for every storage implementation: each case runs
//! against a fresh `Stores` of each backend, through the capability traits
//! only. A backend joins by adding one line to `backends!` at the bottom.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use tollgate::attribution::Attribution;
use tollgate::audit::{AuditEntry, AuditQuery};
use tollgate::budget::{Action, BudgetSpec, LimitKind, Period, RateLimitSpec, Scope};
use tollgate::query::{Bucket, SpendQuery, SpendRow};
use tollgate::reconciliation::{LineKind, ReconLine};
use tollgate::record::{LedgerRow, UsageSource};
use tollgate::session::Session;
use tollgate::store::{
    BatchOwner, FiredAlert, KeyMatch, KeyRecord, NewKey, PreviousSecret, PriceUpdate, RequestQuery, Stores,
};
use tollgate_units::{Money, Usage};

#[path = "common/services.rs"]
mod services;

/// A deterministic spread of rows over teams, models, users, times and outcomes.
fn row(i: i64, t: i64) -> LedgerRow {
    let mut a = Attribution::default();
    a.tags.insert("team".into(), ["growth", "search", "ops"][(i % 3) as usize].into());
    a.tags.insert("env".into(), ["prod", "dev"][(i % 2) as usize].into());
    a.tags.insert("user".into(), format!("u{}", i % 5));
    if i % 4 != 0 {
        a.tags.insert("feature".into(), "summarize".into());
    }
    a.tags.insert("cost_center".into(), format!("cc{}", i % 3));
    // Some priced requests ran server-side web searches: 3 of them, at $0.01 each.
    let searched = i % 4 == 1 && i % 11 != 0;
    let tool_cost = Money::from_nanos(if searched { 30_000_000 } else { 0 });
    LedgerRow {
        request_id: format!("r{i:06}"),
        time_ms: t,
        key_id: Some(format!("key_{}", i % 2)),
        endpoint: tollgate::record::Endpoint::ChatCompletions,
        requested_model: Some("m".into()),
        model: Some(["gpt-4o", "claude-sonnet-4"][(i % 2) as usize].into()),
        provider: Some("p".into()),
        status: if i % 7 == 0 { 502 } else { 200 },
        error_code: if i % 7 == 0 { Some("upstream_error".into()) } else { None },
        usage: Usage {
            input: 10 + i as u64,
            cache_read: (i % 4) as u64,
            cache_write_5m: 1,
            output: 5 + (i % 9) as u64,
            reasoning: (i % 3) as u64,
            web_search_requests: if searched { 3 } else { 0 },
            // Image-editing, image-generation, transcription and speech requests.
            input_image: if i % 5 == 2 { 300 + i as u64 } else { 0 },
            images: if i % 6 == 3 { 2 } else { 0 },
            audio_ms: if i % 7 == 4 { 1_500 + i as u64 } else { 0 },
            characters: if i % 8 == 6 { 90 + i as u64 } else { 0 },
            ..Usage::default()
        },
        usage_source: if i % 5 == 0 { UsageSource::Estimated } else { UsageSource::Provider },
        cost: if i % 11 == 0 { None } else { Some(Money::from_nanos(1_000 + i * 37 + tool_cost.nanos())) },
        cache_savings: Money::from_nanos(7),
        response_cache_savings: Money::ZERO,
        tool_cost,
        provider_cost: match i % 3 {
            0 => None,
            1 => Some(Money::from_nanos(123_456_789)),
            _ => Some(Money::from_nanos(1_000 + i * 41)),
        },
        streamed: i % 2 == 0,
        client_disconnected: false,
        cache: tollgate::record::CacheOutcome::Off,
        latency_ms: 1,
        ttft_ms: None,
        attempts: 1 + (i % 2) as u32,
        prefix_hash: None,
        attempt_log: Vec::new(),
        attribution: a,
    }
}

const BASE: i64 = 1_750_000_123_456; // not aligned to an hour
const STEP: i64 = 997_331;

fn rows(n: i64) -> Vec<LedgerRow> {
    (0..n).map(|i| row(i, BASE + i * STEP)).collect()
}

fn dim(r: &LedgerRow, d: &str) -> Option<String> {
    match d {
        "model" => r.model.clone(),
        "key" => r.key_id.clone(),
        "provider" => r.provider.clone(),
        other => r.attribution.tag(other).map(String::from),
    }
}

/// What `spend` must answer, computed naively from the rows.
fn naive(rows: &[LedgerRow], q: &SpendQuery) -> BTreeMap<(Vec<Option<String>>, Option<i64>), SpendRow> {
    let mut out: BTreeMap<(Vec<Option<String>>, Option<i64>), SpendRow> = BTreeMap::new();
    for r in rows {
        if q.from_ms.is_some_and(|f| r.time_ms < f) || q.to_ms.is_some_and(|t| r.time_ms >= t) {
            continue;
        }
        if !q.filters.iter().all(|(d, v)| dim(r, d).as_deref() == Some(v.as_str())) {
            continue;
        }
        let dims: Vec<Option<String>> = q.group_by.iter().map(|d| dim(r, d)).collect();
        let bucket = q.bucket.map(|b| r.time_ms.div_euclid(b.millis()) * b.millis());
        let e = out.entry((dims.clone(), bucket)).or_insert_with(|| SpendRow {
            dims,
            bucket_ms: bucket,
            requests: 0,
            input_tokens: 0,
            cache_read_tokens: 0,
            cache_write_tokens: 0,
            output_tokens: 0,
            reasoning_tokens: 0,
            cost: Money::ZERO,
            cache_savings: Money::ZERO,
            estimated_requests: 0,
            unpriced_requests: 0,
            error_requests: 0,
            attempts: 0,
            response_cache_savings: Money::ZERO,
            tool_cost: Money::ZERO,
            web_search_requests: 0,
        });
        e.requests += 1;
        e.input_tokens += r.usage.input_tokens();
        e.cache_read_tokens += r.usage.cache_read;
        e.cache_write_tokens += r.usage.cache_write_tokens();
        e.output_tokens += r.usage.output_tokens();
        e.reasoning_tokens += r.usage.reasoning;
        e.cost += r.cost.unwrap_or(Money::ZERO);
        e.cache_savings += r.cache_savings;
        e.estimated_requests += u64::from(r.usage_source == UsageSource::Estimated);
        e.unpriced_requests += u64::from(r.cost.is_none());
        e.error_requests += u64::from(r.status >= 400);
        e.attempts += u64::from(r.attempts);
        e.response_cache_savings += r.response_cache_savings;
        e.tool_cost += r.tool_cost;
        e.web_search_requests += r.usage.web_search_requests;
    }
    out
}

/// The sink is blocking (the ledger loader's thread calls it): leave the runtime for it.
fn append(stores: &Stores, rows: &[LedgerRow]) {
    let refs: Vec<&LedgerRow> = rows.iter().collect();
    tokio::task::block_in_place(|| stores.ledger.append(&refs)).unwrap();
}

async fn all_requests(stores: &Stores) -> Vec<LedgerRow> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = stores.requests.requests(RequestQuery { filters: vec![], limit: 100, cursor }).await.unwrap();
        out.extend(page.rows);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

/// `rows_between` pages a window oldest first, by (time, request id), with
/// rows sharing a time split across pages: each row once, none outside.
pub async fn rows_between_pages_a_window_oldest_first(stores: Stores) {
    // 30 rows at 10 distinct times (3 per time, ids not in time order), and
    // one row on each side of the window.
    let mut rows: Vec<LedgerRow> = (0..30).map(|i| row(29 - i, 1_000 + (i % 10) * 7)).collect();
    rows.push(row(100, 999));
    rows.push(row(101, 1_000 + 9 * 7 + 1));
    append(&stores, &rows);
    let (from, to) = (1_000, 1_000 + 9 * 7 + 1);
    let mut seen: Vec<(i64, String)> = Vec::new();
    let mut after = None;
    loop {
        let page = stores.requests.rows_between(from, to, after.clone(), 4).await.unwrap();
        seen.extend(page.iter().map(|r| (r.time_ms, r.request_id.clone())));
        match page.last() {
            Some(last) if page.len() == 4 => after = Some((last.time_ms, last.request_id.clone())),
            _ => break,
        }
    }
    let mut expected: Vec<(i64, String)> = rows[..30].iter().map(|r| (r.time_ms, r.request_id.clone())).collect();
    expected.sort();
    assert_eq!(seen, expected, "every row of the window once, by time then id");
}

pub async fn ledger_insert_is_idempotent_by_request_id(stores: Stores) {
    let rows = rows(250);
    append(&stores, &rows);
    append(&stores, &rows[..80]); // a replayed spool
    append(&stores, &rows[200..]);
    let stored = all_requests(&stores).await;
    assert_eq!(stored.len(), 250, "every row once");
    let mut ids: Vec<&str> = stored.iter().map(|r| r.request_id.as_str()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 250);
    // Newest first, and a row reads back as it was written.
    assert!(stored.windows(2).all(|w| w[0].request_id >= w[1].request_id));
    let one = stores.requests.request(rows[42].request_id.clone()).await.unwrap().unwrap();
    assert_eq!(one, rows[42]);
    assert!(stores.requests.request("no-such-request".into()).await.unwrap().is_none());
    let total = stores.reports.spend(SpendQuery::default()).await.unwrap();
    assert_eq!(total.total_requests, 250, "replays are not counted twice in reports either");
    // Filters on the request log.
    let page = stores
        .requests
        .requests(RequestQuery { filters: vec![("team".into(), "ops".into())], limit: 1000, cursor: None })
        .await
        .unwrap();
    assert_eq!(page.rows.len(), rows.iter().filter(|r| r.attribution.tag("team") == Some("ops")).count());
}

pub async fn spend_grouping_equals_a_naive_sum(stores: Stores) {
    let rows = rows(600);
    append(&stores, &rows);
    let queries = vec![
        SpendQuery::default(),
        SpendQuery { group_by: vec!["team".into(), "model".into()], ..Default::default() },
        SpendQuery {
            group_by: vec!["team".into()],
            from_ms: Some(BASE + 12_345_678),
            to_ms: Some(BASE + 400_000_000),
            bucket: Some(Bucket::Hour),
            ..Default::default()
        },
        SpendQuery {
            group_by: vec!["feature".into(), "env".into()],
            from_ms: Some(BASE + 1),
            bucket: Some(Bucket::Day),
            filters: vec![("team".into(), "growth".into())],
            ..Default::default()
        },
        SpendQuery {
            group_by: vec!["key".into()],
            from_ms: Some(BASE + 100),
            to_ms: Some(BASE + 200),
            ..Default::default()
        },
        SpendQuery { group_by: vec!["user".into(), "cost_center".into()], ..Default::default() },
        SpendQuery { filters: vec![("model".into(), "gpt-4o".into())], ..Default::default() },
    ];
    for q in queries {
        let got = stores.reports.spend(q.clone()).await.unwrap();
        let want = naive(&rows, &q);
        let got_rows: BTreeMap<(Vec<Option<String>>, Option<i64>), SpendRow> =
            got.rows.iter().map(|r| ((r.dims.clone(), r.bucket_ms), r.clone())).collect();
        assert_eq!(got_rows, want, "{q:?}");
        let cost: Money = want.values().map(|r| r.cost).sum();
        assert_eq!(got.total_cost, cost, "{q:?}");
        assert_eq!(got.total_requests, want.values().map(|r| r.requests).sum::<u64>(), "{q:?}");
        assert_eq!(got.tool_cost(), want.values().map(|r| r.tool_cost).sum::<Money>(), "{q:?}");
        assert_eq!(got.web_search_requests(), want.values().map(|r| r.web_search_requests).sum::<u64>(), "{q:?}");
    }
    // The whole ledger: tool costs and web searches are in the totals (whole
    // hours from the rollup, the edges from raw rows).
    let all = stores.reports.spend(SpendQuery::default()).await.unwrap();
    assert_eq!(all.tool_cost().nanos(), rows.iter().map(|r| r.tool_cost.nanos()).sum::<i64>());
    assert_eq!(all.web_search_requests(), rows.iter().map(|r| r.usage.web_search_requests).sum::<u64>());
    assert!(all.tool_cost() > Money::ZERO && all.web_search_requests() > 0);
}

/// A request that ran web searches (and whose provider reported its cost)
/// and one whose provider reported none.
fn tool_rows() -> [LedgerRow; 2] {
    let mut searched = row(1, BASE + 5 * STEP);
    searched.request_id = "tools-searched".into();
    searched.usage.web_search_requests = 3;
    searched.tool_cost = Money::from_nanos(30_000_000);
    searched.cost = Some(Money::from_nanos(30_000_000 + 93_456_789));
    searched.provider_cost = Some(Money::from_nanos(123_456_789));
    let mut plain = row(2, BASE + 6 * STEP);
    plain.request_id = "tools-none".into();
    plain.usage.web_search_requests = 0;
    plain.tool_cost = Money::ZERO;
    plain.provider_cost = None;
    // Media units too (columns added after the tool costs).
    (plain.usage.input_image, plain.usage.images, plain.usage.audio_ms, plain.usage.characters) = (302, 1, 2_500, 77);
    [searched, plain]
}

pub async fn tool_costs_and_provider_costs_read_back(stores: Stores) {
    let rows = tool_rows();
    append(&stores, &rows);
    for r in &rows {
        let back = stores.requests.request(r.request_id.clone()).await.unwrap().unwrap();
        assert_eq!(back, *r, "{}", r.request_id);
    }
    let [searched, plain] = &rows;
    let back = stores.requests.request(searched.request_id.clone()).await.unwrap().unwrap();
    assert_eq!(
        (back.usage.web_search_requests, back.tool_cost.nanos(), back.provider_cost.map(Money::nanos)),
        (3, 30_000_000, Some(123_456_789))
    );
    let back = stores.requests.request(plain.request_id.clone()).await.unwrap().unwrap();
    assert_eq!(back.provider_cost, None);
    // The request log's pages read them the same way.
    let mut page = all_requests(&stores).await;
    page.sort_by(|a, b| a.request_id.cmp(&b.request_id));
    let mut want = rows.to_vec();
    want.sort_by(|a, b| a.request_id.cmp(&b.request_id));
    assert_eq!(page, want);
    let total = stores.reports.spend(SpendQuery::default()).await.unwrap();
    assert_eq!((total.tool_cost().nanos(), total.web_search_requests()), (30_000_000, 3));
    let by_model = stores.reports.spend(SpendQuery { group_by: vec!["model".into()], ..Default::default() }).await;
    let by_model = by_model.unwrap();
    let searched_model = by_model.rows.iter().find(|r| r.dims[0] == searched.model).unwrap();
    assert_eq!((searched_model.tool_cost.nanos(), searched_model.web_search_requests), (30_000_000, 3));
    let plain_model = by_model.rows.iter().find(|r| r.dims[0] == plain.model).unwrap();
    assert_eq!((plain_model.tool_cost, plain_model.web_search_requests), (Money::ZERO, 0));
}

/// A request of each kind billed in media units (and one with image input
/// tokens): every unit reads back as written, from the request and from the
/// request log, and image tokens count as input tokens in reports.
pub async fn media_units_read_back(stores: Stores) {
    let mut all = row(3, BASE + 7 * STEP);
    all.request_id = "media-all".into();
    all.usage.input_image = 1_234;
    all.usage.images = 3;
    all.usage.audio_ms = 61_500;
    all.usage.characters = 4_321;
    let mut none = row(4, BASE + 8 * STEP);
    none.request_id = "media-none".into();
    (none.usage.input_image, none.usage.images, none.usage.audio_ms, none.usage.characters) = (0, 0, 0, 0);
    let rows = [all, none];
    append(&stores, &rows);
    let back = stores.requests.request("media-all".into()).await.unwrap().unwrap();
    assert_eq!(
        (back.usage.input_image, back.usage.images, back.usage.audio_ms, back.usage.characters),
        (1_234, 3, 61_500, 4_321)
    );
    for r in &rows {
        assert_eq!(stores.requests.request(r.request_id.clone()).await.unwrap().as_ref(), Some(r), "{}", r.request_id);
    }
    let mut page = all_requests(&stores).await;
    page.sort_by(|a, b| a.request_id.cmp(&b.request_id));
    assert_eq!(page, rows.to_vec(), "the request log reads them the same way");
    let total = stores.reports.spend(SpendQuery::default()).await.unwrap();
    let input: u64 = total.rows.iter().map(|r| r.input_tokens).sum();
    assert_eq!(input, rows.iter().map(|r| r.usage.input_tokens()).sum::<u64>());
    assert!(input > rows.iter().map(|r| r.usage.input_tokens() - r.usage.input_image).sum::<u64>());
}

pub async fn retention_keeps_whole_hour_reports(stores: Stores) {
    let rows = rows(400);
    append(&stores, &rows);
    let cut = BASE + 200 * STEP;
    let q = SpendQuery {
        group_by: vec!["team".into()],
        to_ms: Some(cut.div_euclid(3_600_000) * 3_600_000),
        ..Default::default()
    };
    let before = stores.reports.spend(q.clone()).await.unwrap();
    let deleted = stores.retained.prune_raw(cut).await.unwrap();
    assert_eq!(deleted, rows.iter().filter(|r| r.time_ms < cut).count() as u64);
    assert_eq!(stores.reports.spend(q).await.unwrap(), before, "whole-hour reports survive retention");
    // The request log is the pruned store itself, or an analytics store that keeps its history.
    let pruned_log = std::ptr::addr_eq(Arc::as_ptr(&stores.requests), Arc::as_ptr(&stores.retained));
    let left = if pruned_log { rows.iter().filter(|r| r.time_ms >= cut).count() } else { rows.len() };
    assert_eq!(all_requests(&stores).await.len(), left);
}

fn key(id: &str, hash: u8) -> NewKey {
    NewKey {
        record: KeyRecord {
            id: id.into(),
            name: format!("{id} name"),
            prefix: "tg_Ab".into(),
            default_tags: [("env".to_string(), "prod".to_string())].into(),
            enforced_tags: [("team".to_string(), "growth".to_string())].into(),
            models: vec!["gpt-4o-mini".into(), "claude-*".into()],
            created_ms: 1_000,
            expires_ms: Some(9_000_000_000_000),
            revoked_ms: None,
            previous: None,
        },
        hash: [hash; 32],
    }
}

pub async fn keys_are_found_by_hash_listed_and_revoked(stores: Stores) {
    let k = &stores.keys;
    let secret = k.key_hash_secret().await.unwrap();
    assert!(secret.len() >= 32, "a real secret");
    assert_eq!(k.key_hash_secret().await.unwrap(), secret, "created once, then stable");
    k.insert_key(key("key_a", 1)).await.unwrap();
    k.insert_key(key("key_b", 2)).await.unwrap();
    let found = k.key_by_hash([1; 32]).await.unwrap().unwrap();
    assert_eq!(
        found,
        KeyMatch { record: key("key_a", 1).record, previous_secret: false },
        "a key reads back as written"
    );
    assert!(k.key_by_hash([9; 32]).await.unwrap().is_none());
    let mut ids: Vec<String> = k.list_keys().await.unwrap().into_iter().map(|r| r.id).collect();
    ids.sort();
    assert_eq!(ids, ["key_a", "key_b"]);
    assert!(k.revoke_key("key_a".into(), 5_000).await.unwrap());
    assert_eq!(k.key_by_hash([1; 32]).await.unwrap().unwrap().record.revoked_ms, Some(5_000));
    assert!(!k.revoke_key("key_nope".into(), 5_000).await.unwrap(), "no such key");
    assert!(k.insert_key(key("key_a", 3)).await.is_err(), "ids are unique");
}

pub async fn rotated_keys_answer_to_both_secrets(stores: Stores) {
    let k = &stores.keys;
    k.insert_key(key("key_r", 1)).await.unwrap();
    assert!(k.rotate_key("key_r".into(), [2; 32], "tg_Cd".into(), 7_000).await.unwrap());
    let new = k.key_by_hash([2; 32]).await.unwrap().unwrap();
    assert!(!new.previous_secret);
    assert_eq!(new.record.prefix, "tg_Cd");
    let prev = Some(PreviousSecret { prefix: "tg_Ab".into(), valid_until_ms: 7_000 });
    assert_eq!(new.record.previous, prev);
    let old = k.key_by_hash([1; 32]).await.unwrap().unwrap();
    assert!(old.previous_secret, "the old secret is found as the previous one");
    assert_eq!(old.record, new.record);
    // A second rotation forgets the first secret.
    assert!(k.rotate_key("key_r".into(), [3; 32], "tg_Ef".into(), 9_000).await.unwrap());
    assert!(k.key_by_hash([1; 32]).await.unwrap().is_none());
    assert!(k.key_by_hash([2; 32]).await.unwrap().unwrap().previous_secret);
    let listed = k.list_keys().await.unwrap();
    assert_eq!(listed[0].previous, Some(PreviousSecret { prefix: "tg_Cd".into(), valid_until_ms: 9_000 }));
    // No such key; a revoked key cannot be rotated.
    assert!(!k.rotate_key("key_nope".into(), [4; 32], "tg_Gh".into(), 1).await.unwrap());
    assert!(k.revoke_key("key_r".into(), 10_000).await.unwrap());
    assert!(!k.rotate_key("key_r".into(), [4; 32], "tg_Gh".into(), 1).await.unwrap());
    assert!(k.key_by_hash([4; 32]).await.unwrap().is_none());
}

fn session(handle: &str, n: u8, created_ms: i64, expires_ms: i64) -> Session {
    Session {
        handle: handle.into(),
        id_hash: [n; 32],
        subject: format!("user-{n}"),
        name: format!("User {n}"),
        email: n.is_multiple_of(2).then(|| format!("u{n}@example.com")),
        groups: vec!["platform-admins".into(), format!("g{n}")],
        created_ms,
        expires_ms,
        revoked_ms: None,
        source: Some("127.0.0.1".into()),
    }
}

pub async fn sessions_are_kept_listed_revoked_and_pruned(stores: Stores) {
    let s = &stores.sessions;
    s.insert_session(session("h1", 1, 1_000, 10_000)).await.unwrap();
    s.insert_session(session("h2", 2, 2_000, 20_000)).await.unwrap();
    s.insert_session(session("h3", 3, 3_000, 4_000)).await.unwrap();
    assert_eq!(s.session([2; 32]).await.unwrap(), Some(session("h2", 2, 2_000, 20_000)), "reads back as written");
    assert_eq!(s.session([9; 32]).await.unwrap(), None);
    let handles = |v: Vec<Session>| v.into_iter().map(|x| x.handle).collect::<Vec<_>>();
    assert_eq!(handles(s.active_sessions(5_000).await.unwrap()), ["h2", "h1"], "newest first, expired left out");
    assert!(s.revoke_session("h1".into(), 6_000).await.unwrap());
    assert!(!s.revoke_session("h1".into(), 7_000).await.unwrap(), "already revoked");
    assert!(!s.revoke_session("nope".into(), 7_000).await.unwrap());
    assert_eq!(s.session([1; 32]).await.unwrap().unwrap().revoked_ms, Some(6_000));
    assert_eq!(handles(s.active_sessions(5_000).await.unwrap()), ["h2"]);
    assert!(s.insert_session(session("h1", 1, 1, 2)).await.is_err(), "ids are unique");
    // h3 expired at 4 000 and h1 was revoked at 6 000: both go; h2 stays.
    assert_eq!(s.prune_sessions(6_500).await.unwrap(), 2);
    assert!(s.session([1; 32]).await.unwrap().is_none());
    assert!(s.session([2; 32]).await.unwrap().is_some());
}

fn recon_line(
    provider: &str,
    day: &str,
    model: &str,
    kind: LineKind,
    account: Option<&str>,
    g: i64,
    p: i64,
) -> ReconLine {
    ReconLine {
        provider: provider.into(),
        day: day.into(),
        model: model.into(),
        kind,
        account: account.map(String::from),
        gateway_cost: Money::from_nanos(g),
        provider_cost: Money::from_nanos(p),
        gateway_input_tokens: 1_000,
        gateway_output_tokens: 200,
        provider_input_tokens: 1_000,
        provider_output_tokens: 200,
        gateway_requests: 2,
        provider_requests: 2,
        cause: (g != p).then(|| "price: example".to_owned()),
        reconciled_ms: 0,
    }
}

pub async fn reconciliation_lines_are_replaced_per_provider_and_day(stores: Stores) {
    let r = &stores.reconciliation;
    let first = vec![
        recon_line("openai", "2026-12-01", "gpt-4o", LineKind::Matched, None, 100, 125),
        recon_line("openai", "2026-12-02", "gpt-4o", LineKind::Matched, None, 100, 100),
        recon_line("openai", "2026-12-02", "gpt-4o", LineKind::Outside, Some("proj_x"), 0, 450),
    ];
    r.save_reconciliation("openai".into(), "2026-12-01".into(), "2026-12-02".into(), first.clone(), 7).await.unwrap();
    let other = vec![recon_line("anthropic", "2026-12-02", "claude-haiku-4-5", LineKind::Matched, None, 9, 9)];
    r.save_reconciliation("anthropic".into(), "2026-12-02".into(), "2026-12-02".into(), other, 8).await.unwrap();
    let all = r.reconciliation(None, "2026-12-01".into(), "2026-12-31".into()).await.unwrap();
    let keys: Vec<_> = all.iter().map(|l| (l.day.as_str(), l.provider.as_str(), l.kind)).collect();
    assert_eq!(
        keys,
        [
            ("2026-12-01", "openai", LineKind::Matched),
            ("2026-12-02", "anthropic", LineKind::Matched),
            ("2026-12-02", "openai", LineKind::Matched),
            ("2026-12-02", "openai", LineKind::Outside)
        ],
        "sorted by day, provider, kind"
    );
    let mut expected = first[0].clone();
    expected.reconciled_ms = 7;
    assert_eq!(all[0], expected, "reads back as written, stamped");
    assert_eq!(all[3].account.as_deref(), Some("proj_x"));
    // A new run over 2026-12-02 replaces that day's lines of that provider only.
    let rerun = vec![recon_line("openai", "2026-12-02", "gpt-4o", LineKind::Matched, None, 100, 101)];
    r.save_reconciliation("openai".into(), "2026-12-02".into(), "2026-12-02".into(), rerun, 9).await.unwrap();
    let openai = r.reconciliation(Some("openai".into()), "2026-12-01".into(), "2026-12-31".into()).await.unwrap();
    assert_eq!(openai.len(), 2, "the outside line of the replaced day is gone");
    assert_eq!((openai[0].provider_cost.nanos(), openai[1].provider_cost.nanos()), (125, 101));
    assert_eq!(openai[1].reconciled_ms, 9);
    let one_day = r.reconciliation(None, "2026-12-02".into(), "2026-12-02".into()).await.unwrap();
    assert_eq!(one_day.len(), 2, "anthropic's line stays");
}

fn budget(id: &str, team: &str, usd: &str) -> BudgetSpec {
    BudgetSpec {
        id: id.into(),
        scope: Scope::parse(&format!("team={team}")).unwrap(),
        limit: usd.parse().unwrap(),
        period: Period::parse("month").unwrap(),
        action: Action::Block,
        alert_at: vec![500, 800, 1000],
        block_unpriced: false,
    }
}

pub async fn budgets_limits_and_alerts_are_kept(stores: Stores) {
    let g = &stores.governance;
    let v0 = g.governance_version().await.unwrap();
    g.upsert_budget(budget("b1", "growth", "10"), 1).await.unwrap();
    g.upsert_budget(budget("b2", "search", "20"), 1).await.unwrap();
    let v1 = g.governance_version().await.unwrap();
    assert_ne!(v0, v1, "a change is visible to other replicas");
    g.upsert_budget(budget("b1", "growth", "15"), 2).await.unwrap();
    let mut list = g.list_budgets().await.unwrap();
    list.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(list, vec![budget("b1", "growth", "15"), budget("b2", "search", "20")], "upsert replaces");
    assert_ne!(g.governance_version().await.unwrap(), v1);
    assert!(g.delete_budget("b2".into()).await.unwrap());
    assert!(!g.delete_budget("b2".into()).await.unwrap(), "already gone");
    assert_eq!(g.list_budgets().await.unwrap().len(), 1);
    let limit = RateLimitSpec {
        id: "key:k/rpm".into(),
        scope: Scope::parse("key=k").unwrap(),
        kind: LimitKind::Requests,
        amount: 30,
        window_ms: 60_000,
    };
    g.upsert_limit(limit.clone(), 3).await.unwrap();
    g.upsert_limit(RateLimitSpec { amount: 60, ..limit.clone() }, 4).await.unwrap();
    assert_eq!(g.list_limits().await.unwrap(), vec![RateLimitSpec { amount: 60, ..limit }]);
    // An alert fires once per budget, period and threshold.
    assert!(g.record_alert("b1".into(), 100, 800, 5).await.unwrap());
    assert!(!g.record_alert("b1".into(), 100, 800, 6).await.unwrap());
    assert!(g.record_alert("b1".into(), 200, 800, 7).await.unwrap(), "a new period alerts again");
    assert!(g.record_alert("b1".into(), 100, 1000, 8).await.unwrap());
    assert_eq!(g.fired_alerts("b1".into(), 100).await.unwrap(), [800, 1000].into());
    let recent = g.recent_alerts(2).await.unwrap();
    assert_eq!(
        recent,
        [
            FiredAlert { budget_id: "b1".into(), period_start_ms: 100, threshold: 1000, fired_ms: 8 },
            FiredAlert { budget_id: "b1".into(), period_start_ms: 200, threshold: 800, fired_ms: 7 },
        ],
        "newest first, as many as asked"
    );
    let mut since = g.alerts_fired_since(150).await.unwrap();
    since.sort_by_key(|a| a.fired_ms);
    assert_eq!(since, [FiredAlert { budget_id: "b1".into(), period_start_ms: 200, threshold: 800, fired_ms: 7 }]);
    assert_eq!(g.alerts_fired_since(0).await.unwrap().len(), 3);
    assert!(g.fired_alerts("b9".into(), 100).await.unwrap().is_empty());
}

/// A catalog as `tollgate prices update` stores it: quotes of both kinds,
/// backslashes, newlines and non-ASCII must come back byte for byte.
const CATALOG: &str = r#"# Preise für „Ostsee“ — 東京リージョン
[[model]]
provider = "openai"
model = "gpt-4o"
note = 'it''s "quoted" \ and \n kept'
input_per_mtok = "2.50"
"#;

pub async fn price_updates_are_kept_in_order(stores: Stores) {
    let g = &stores.governance;
    assert_eq!(g.price_update_version().await.unwrap(), 0, "no update yet");
    assert!(g.price_updates().await.unwrap().is_empty());
    let first = g.insert_price_update("prices.toml".into(), "cli".into(), CATALOG.into(), 1_000).await.unwrap();
    assert_eq!(g.price_update_version().await.unwrap(), first);
    let second_catalog = format!("{CATALOG}\n# zweite Fassung: ü ß 🚀\n");
    let second = g
        .insert_price_update(
            "https://example.com/prices.toml?v=2&x='y'".into(),
            "ops-token ☃".into(),
            second_catalog.clone(),
            2_000,
        )
        .await
        .unwrap();
    assert!(first > 0, "ids start above the empty store's version");
    assert!(second > first, "ids increase");
    assert_eq!(
        g.price_updates().await.unwrap(),
        vec![
            PriceUpdate {
                id: first,
                applied_ms: 1_000,
                source: "prices.toml".into(),
                applied_by: "cli".into(),
                catalog: CATALOG.into(),
            },
            PriceUpdate {
                id: second,
                applied_ms: 2_000,
                source: "https://example.com/prices.toml?v=2&x='y'".into(),
                applied_by: "ops-token ☃".into(),
                catalog: second_catalog,
            },
        ],
        "oldest first, every field as inserted"
    );
    assert_eq!(g.price_update_version().await.unwrap(), second, "the newest id");
}

pub async fn spend_per_second_feeds_rolling_budgets(stores: Stores) {
    let rows = rows(120);
    append(&stores, &rows);
    let from = BASE + 30 * STEP;
    let got = stores.reports.spend_per_second(vec![("team".into(), "growth".into())], from).await.unwrap();
    let total: i64 = got.iter().map(|(_, n)| n).sum();
    let want: i64 = rows
        .iter()
        .filter(|r| r.time_ms >= from && r.attribution.tag("team") == Some("growth"))
        .map(|r| r.cost.map_or(0, |c| c.nanos()))
        .sum();
    assert_eq!(total, want);
    // Many scopes in one trip (budgets seeded at start-up): each answer is
    // what the scope asked alone gets, in the order asked.
    let asks: Vec<(Vec<(String, String)>, i64)> = vec![
        (vec![("team".into(), "growth".into())], from),
        (vec![("team".into(), "nobody".into())], BASE),
        (vec![("team".into(), "growth".into())], BASE),
        (vec![], from),
    ];
    let many = stores.reports.spend_per_second_many(asks.clone()).await.unwrap();
    assert_eq!(many.len(), asks.len());
    assert_eq!(many[0], got);
    assert!(many[1].is_empty(), "a scope without rows has no spend");
    for (i, (filters, from_ms)) in asks.into_iter().enumerate() {
        assert_eq!(many[i], stores.reports.spend_per_second(filters, from_ms).await.unwrap(), "ask {i}");
    }
    let all_since: i64 = many[3].iter().map(|(_, n)| n).sum();
    let want_all: i64 = rows.iter().filter(|r| r.time_ms >= from).map(|r| r.cost.map_or(0, |c| c.nanos())).sum();
    assert_eq!(all_since, want_all);
    let unpriced = stores.reports.unpriced_models().await.unwrap();
    let n: i64 = unpriced.iter().map(|(_, _, n)| n).sum();
    assert_eq!(n, rows.iter().filter(|r| r.cost.is_none()).count() as i64);
}

pub async fn batch_objects_keep_their_first_owner(stores: Stores) {
    let b = &stores.batches;
    let growth = BatchOwner { key_id: "key_a".into(), team: Some("growth".into()) };
    let other = BatchOwner { key_id: "key_b".into(), team: Some("search".into()) };
    b.record_batch_object("file-1".into(), "file", growth.clone(), 1).await.unwrap();
    b.record_batch_object("file-1".into(), "file", other.clone(), 2).await.unwrap();
    assert_eq!(b.batch_object_owner("file-1".into()).await.unwrap(), Some(growth.clone()), "first owner wins");
    assert!(b.batch_object_owner("file-2".into()).await.unwrap().is_none());
    b.record_batch("batch_1".into(), "openai".into(), "key_a".into(), "{}".into(), 3).await.unwrap();
    assert_eq!(
        b.batch("batch_1".into()).await.unwrap(),
        Some(("openai".to_string(), "key_a".to_string(), "{}".to_string()))
    );
    b.record_batch_file("file-out".into(), "batch_1".into()).await.unwrap();
    assert_eq!(b.batch_of_file("file-out".into()).await.unwrap().as_deref(), Some("batch_1"));
    assert!(b.batch_of_file("file-nope".into()).await.unwrap().is_none());
}

pub async fn outcomes_are_stored_and_priced_per_success(stores: Stores) {
    let rows = rows(30);
    append(&stores, &rows);
    let o = |id: &str, request: &str, success: bool| {
        tollgate::outcome::Outcome::parse(
            format!(r#"{{"request_id":"{request}","name":"resolved","success":{success}}}"#).as_bytes(),
            id.into(),
            10,
            "admin".into(),
        )
        .unwrap()
    };
    stores.outcomes.insert_outcome(o("o1", "r000001", true)).await.unwrap();
    stores.outcomes.insert_outcome(o("o2", "r000002", false)).await.unwrap();
    stores.outcomes.insert_outcome(o("o3", "r000004", true)).await.unwrap();
    assert_eq!(stores.outcomes.list_outcomes(10).await.unwrap().len(), 3);
    let report = stores
        .outcomes
        .outcome_cost(tollgate::outcome::CostQuery { by: "team".into(), ..Default::default() })
        .await
        .unwrap();
    let paid: i64 = [1, 2, 4].iter().map(|i| rows[*i].cost.map_or(0, |c| c.nanos())).sum();
    assert_eq!(report.total.cost.nanos(), paid, "failed attempts were paid for too");
    assert_eq!(report.total.successes, 2);
    assert_eq!(report.total.cost_per_success, tollgate::outcome::per_success(Money::from_nanos(paid), 2));
}

/// Audit entries as the admin API and the CLI write them: states with
/// quotes, backslashes, newlines, non-ASCII and nesting; some without a
/// team, a before, an after or a source.
fn audit_entries() -> Vec<AuditEntry> {
    let e =
        |i: i64, actor: &str, action: &str, target: &str, team: Option<&str>| {
            AuditEntry::new(BASE + i * 1_000, actor, "admin", action, target)
                .with_team(team)
                .with_source(if i % 3 == 0 { None } else { Some(format!("10.0.0.{i}")) })
        };
    vec![
        e(0, "admin-token:ops", "key.create", "key_a", Some("growth")).with_after(Some(serde_json::json!({
            "id": "key_a", "name": "ci \"bot\" \\ ☃\nline", "tags": {"team": "growth"}, "models": ["gpt-*"],
        }))),
        e(1, "cli:alice", "budget.set", "team=growth/month", Some("growth"))
            .with_after(Some(serde_json::json!({"limit_usd": "10.000000000"}))),
        e(2, "admin-token:ops", "budget.set", "team=growth/month", Some("growth"))
            .with_before(Some(serde_json::json!({"limit_usd": "10.000000000"})))
            .with_after(Some(serde_json::json!({"limit_usd": "25.000000000"}))),
        e(3, "admin-token:growth-admin", "key.revoke", "key_b", Some("search"))
            .with_before(Some(serde_json::json!({"revoked_at": null})))
            .with_after(Some(serde_json::json!({"revoked_at": "2025-06-15T15:06:40Z"}))),
        e(4, "cli:alice", "price.update", "price_update:1", None)
            .with_after(Some(serde_json::json!({"id": 1, "changed": [{"rates": {"input": "2.5"}}]}))),
        e(5, "admin-token:ops", "budget.delete", "team=growth/month", Some("growth"))
            .with_before(Some(serde_json::json!({"limit_usd": "25.000000000"}))),
        AuditEntry::new(BASE + 6_000, "reload", "system", "config.reload", "tollgate.toml"),
    ]
}

async fn audit_pages(stores: &Stores, q: AuditQuery) -> Vec<Vec<AuditEntry>> {
    let mut pages = Vec::new();
    let mut q = q;
    loop {
        let page = stores.audit.list(q.clone()).await.unwrap();
        pages.push(page.entries);
        match page.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => return pages,
        }
    }
}

pub async fn audit_log_lists_newest_first_filters_and_pages(stores: Stores) {
    assert!(stores.audit.list(AuditQuery::default()).await.unwrap().entries.is_empty(), "empty at first");
    let mut written = Vec::new();
    for e in audit_entries() {
        let id = stores.audit.record(e.clone()).await.unwrap();
        written.push(AuditEntry { id: Some(id), ..e });
    }
    assert!(written.windows(2).all(|w| w[0].id < w[1].id), "ids increase");
    let newest_first: Vec<AuditEntry> = written.iter().rev().cloned().collect();
    let all = stores.audit.list(AuditQuery::default()).await.unwrap();
    assert_eq!(all.entries, newest_first, "newest first, every field as recorded");
    assert_eq!(all.next_cursor, None);
    let ids = |q: AuditQuery| {
        let stores = stores.clone();
        async move {
            let page = stores.audit.list(q).await.unwrap();
            page.entries.iter().map(|e| e.target.clone() + "@" + &e.action).collect::<Vec<_>>()
        }
    };
    // Time bounds: since inclusive, until exclusive.
    let q = AuditQuery { since_ms: Some(BASE + 2_000), until_ms: Some(BASE + 5_000), ..AuditQuery::default() };
    assert_eq!(
        stores.audit.list(q).await.unwrap().entries.iter().map(|e| e.time_ms - BASE).collect::<Vec<_>>(),
        vec![4_000, 3_000, 2_000]
    );
    let q = AuditQuery { actor: Some("cli:alice".into()), ..AuditQuery::default() };
    assert_eq!(ids(q).await, vec!["price_update:1@price.update", "team=growth/month@budget.set"]);
    let q = AuditQuery { action: Some("budget.set".into()), ..AuditQuery::default() };
    assert_eq!(ids(q).await.len(), 2, "an exact action");
    let q = AuditQuery { action: Some("budget.*".into()), ..AuditQuery::default() };
    assert_eq!(
        ids(q).await,
        vec!["team=growth/month@budget.delete", "team=growth/month@budget.set", "team=growth/month@budget.set"],
        "a family of actions"
    );
    let q = AuditQuery { action: Some("budget".into()), ..AuditQuery::default() };
    assert!(ids(q).await.is_empty(), "no partial match without the prefix form");
    let q = AuditQuery { action: Some("%".into()), ..AuditQuery::default() };
    assert!(ids(q).await.is_empty(), "no wildcard of the database's");
    let q = AuditQuery { team: Some("growth".into()), ..AuditQuery::default() };
    assert_eq!(ids(q).await.len(), 4, "a team's entries only");
    let q = AuditQuery {
        team: Some("growth".into()),
        actor: Some("admin-token:ops".into()),
        action: Some("budget.*".into()),
        ..AuditQuery::default()
    };
    assert_eq!(ids(q).await, vec!["team=growth/month@budget.delete", "team=growth/month@budget.set"], "filters add up");
    // Paging, both ways: every entry once, in order.
    let pages = audit_pages(&stores, AuditQuery { limit: 3, ..AuditQuery::default() }).await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), vec![3, 3, 1]);
    assert_eq!(pages.concat(), newest_first);
    let pages = audit_pages(&stores, AuditQuery { limit: 2, oldest_first: true, ..AuditQuery::default() }).await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 2, 2, 1]);
    assert_eq!(pages.concat(), written);
    let exact = audit_pages(&stores, AuditQuery { limit: 7, ..AuditQuery::default() }).await;
    assert_eq!(exact.len(), 1, "a full last page has no next cursor");
    let filtered = audit_pages(
        &stores,
        AuditQuery { limit: 1, team: Some("growth".into()), oldest_first: true, ..AuditQuery::default() },
    )
    .await;
    assert_eq!(filtered.concat().iter().map(|e| e.time_ms - BASE).collect::<Vec<_>>(), vec![0, 1_000, 2_000, 5_000]);
}

/// One case's test in a backend's module. A case that cannot hold on a
/// backend is listed here with the reason: it stays compiled and is run with
/// `cargo test -- --ignored`, unchanged.
macro_rules! case_test {
    (@test $name:ident $(, #[$attr:meta])*) => {
        $(#[$attr])*
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let Some((stores, _guard)) = fresh().await else { return };
            super::$name(stores).await;
        }
    };
    ($backend:ident, $name:ident) => {
        case_test!(@test $name);
    };
}

/// Runs every case against a fresh store of one backend.
macro_rules! backends {
    ($($backend:ident => $open:expr;)*) => {$(
        mod $backend {
            use super::*;

            async fn fresh() -> Option<(Stores, Box<dyn std::any::Any>)> {
                $open
            }

            case_test!($backend, ledger_insert_is_idempotent_by_request_id);
            case_test!($backend, spend_grouping_equals_a_naive_sum);
            case_test!($backend, tool_costs_and_provider_costs_read_back);
            case_test!($backend, media_units_read_back);
            case_test!($backend, retention_keeps_whole_hour_reports);
            case_test!($backend, keys_are_found_by_hash_listed_and_revoked);
            case_test!($backend, rotated_keys_answer_to_both_secrets);
            case_test!($backend, sessions_are_kept_listed_revoked_and_pruned);
            case_test!($backend, rows_between_pages_a_window_oldest_first);
            case_test!($backend, reconciliation_lines_are_replaced_per_provider_and_day);
            case_test!($backend, budgets_limits_and_alerts_are_kept);
            case_test!($backend, price_updates_are_kept_in_order);
            case_test!($backend, spend_per_second_feeds_rolling_budgets);
            case_test!($backend, batch_objects_keep_their_first_owner);
            case_test!($backend, outcomes_are_stored_and_priced_per_success);
            case_test!($backend, audit_log_lists_newest_first_filters_and_pages);
        }
    )*};
}

backends! {
    sqlite => {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("conformance.db").display());
        Some((Stores::open(&url).await.unwrap(), Box::new(dir)))
    };
    postgres => {
        let db = services::PgDatabase::create().await?;
        let stores = Stores::open(&db.url).await.unwrap();
        Some((stores, Box::new(db)))
    };
    clickhouse => {
        let (stores, ch, dir) = with_clickhouse().await?;
        Some((stores, Box::new((ch, dir))))
    };
}

// ------------------------------------------------------------------ ClickHouse, the analytics store

/// Stores as `[storage]` opens them with `analytics_url`: a fresh SQLite as
/// the primary (keys, governance, outcomes, batches and its own ledger), and
/// a fresh ClickHouse database that gets every ledger row too and serves the
/// request log and the reports.
async fn with_clickhouse() -> Option<(Stores, services::ChDatabase, tempfile::TempDir)> {
    let ch = services::ChDatabase::create().await?;
    let dir = tempfile::tempdir().unwrap();
    let stores = open_with_clickhouse(&ch, &dir).await;
    Some((stores, ch, dir))
}

/// Opens (again) the stores of [`with_clickhouse`].
async fn open_with_clickhouse(ch: &services::ChDatabase, dir: &tempfile::TempDir) -> Stores {
    let storage = tollgate::config::StorageConfig {
        url: format!("sqlite://{}", dir.path().join("primary.db").display()),
        counters_url: None,
        counters_prefix: "tg:".into(),
        on_counters_down: tollgate::config::CountersDown::FailClosed,
        analytics_url: Some(ch.url.clone()),
    };
    Stores::open_config(&storage).await.unwrap()
}

/// A small deterministic generator (the same rows on every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// Rows that vary everything a report reads: absent and empty tags, values
/// with quotes, backslashes, newlines and non-ASCII, unpriced and failed
/// requests, every token kind, cache hits, retries; ids as the gateway makes
/// them (UUIDv7 of the row's time) and batch result ids.
fn varied_rows(n: usize) -> Vec<LedgerRow> {
    let mut g = Lcg(42);
    let base = 1_750_000_000_000_i64 - 7 * 3_600_000 + 123_457; // not aligned to an hour
    let mut t = base;
    let teams = [None, Some("growth"), Some("search"), Some("o'brien \\ \"quoted\""), Some("платформа")];
    let models = [Some("gpt-4o"), Some("claude-sonnet-4"), Some("gemini-2.5-pro"), None];
    (0..n)
        .map(|i| {
            t += 1 + g.next(400_000) as i64; // ~200 s apart on average: about 4.6 days in all
            let mut a = Attribution::default();
            if let Some(team) = teams[g.next(teams.len() as u64) as usize] {
                a.tags.insert("team".into(), team.into());
            }
            match g.next(4) {
                0 => {}
                1 => {
                    a.tags.insert("cost_center".into(), String::new());
                }
                k => {
                    a.tags.insert("cost_center".into(), format!("cc-{k}\nline2"));
                }
            }
            if g.next(3) > 0 {
                a.tags.insert("feature".into(), ["chat", "summarize", "search"][g.next(3) as usize].into());
            }
            a.tags.insert("env".into(), ["prod", "dev"][g.next(2) as usize].into());
            if g.next(5) == 0 {
                a.tags.insert("user".into(), format!("u{}", g.next(7)));
            }
            if g.next(6) == 0 {
                a.tags.insert("note".into(), "x' OR '1'='1".into());
            }
            a.trace_id = (g.next(4) == 0).then(|| format!("trace-{}", g.next(50)));
            a.session = (g.next(5) == 0).then(|| format!("s{}", g.next(20)));
            a.agent = (g.next(6) == 0).then(|| "planner".to_string());
            a.prompt = (g.next(6) == 0).then(|| format!("support@{}", g.next(3)));
            let status = [200, 200, 200, 200, 429, 502, 400][g.next(7) as usize];
            let cache = [
                tollgate::record::CacheOutcome::Off,
                tollgate::record::CacheOutcome::Miss,
                tollgate::record::CacheOutcome::Hit,
            ][g.next(3) as usize];
            let request_id = if g.next(10) == 0 {
                format!("batch:b{}:row-{i}", g.next(5))
            } else {
                let ts =
                    uuid::Timestamp::from_unix(uuid::NoContext, (t / 1000) as u64, ((t % 1000) * 1_000_000) as u32);
                uuid::Uuid::new_v7(ts).to_string()
            };
            let searches = if g.next(5) == 0 { 1 + g.next(4) } else { 0 };
            let tool_cost = Money::from_nanos(searches as i64 * 10_000_000);
            LedgerRow {
                request_id,
                time_ms: t,
                key_id: (g.next(10) > 0).then(|| format!("key_{}", g.next(4))),
                endpoint: [
                    tollgate::record::Endpoint::ChatCompletions,
                    tollgate::record::Endpoint::Messages,
                    tollgate::record::Endpoint::Embeddings,
                ][g.next(3) as usize],
                requested_model: Some("alias".into()),
                model: models[g.next(models.len() as u64) as usize].map(String::from),
                provider: Some(["openai", "anthropic", "google"][g.next(3) as usize].into()),
                status,
                error_code: (status >= 400).then(|| "upstream_error".to_string()),
                usage: Usage {
                    input: g.next(5_000),
                    input_audio: if g.next(10) == 0 { g.next(300) } else { 0 },
                    cache_read: g.next(2_000),
                    cache_write_5m: g.next(500),
                    cache_write_1h: if g.next(4) == 0 { g.next(200) } else { 0 },
                    output: g.next(1_500),
                    output_audio: if g.next(12) == 0 { g.next(100) } else { 0 },
                    output_image: if g.next(15) == 0 { g.next(1_000) } else { 0 },
                    reasoning: g.next(700),
                    web_search_requests: searches,
                    input_image: if g.next(8) == 0 { g.next(1_200) } else { 0 },
                    images: if g.next(15) == 0 { 1 + g.next(4) } else { 0 },
                    audio_ms: if g.next(15) == 0 { g.next(600_000) } else { 0 },
                    characters: if g.next(15) == 0 { g.next(4_000) } else { 0 },
                },
                usage_source: if g.next(8) == 0 { UsageSource::Estimated } else { UsageSource::Provider },
                cost: if g.next(9) == 0 {
                    None
                } else {
                    Some(Money::from_nanos(g.next(50_000_000) as i64) + tool_cost)
                },
                cache_savings: Money::from_nanos(g.next(100_000) as i64),
                response_cache_savings: if cache == tollgate::record::CacheOutcome::Hit {
                    Money::from_nanos(g.next(3_000_000) as i64)
                } else {
                    Money::ZERO
                },
                tool_cost,
                provider_cost: (g.next(3) == 0).then(|| Money::from_nanos(g.next(60_000_000) as i64)),
                streamed: g.next(2) == 0,
                client_disconnected: g.next(20) == 0,
                cache,
                latency_ms: g.next(30_000),
                ttft_ms: (g.next(2) == 0).then(|| g.next(2_000)),
                attempts: 1 + g.next(3) as u32,
                prefix_hash: (g.next(3) == 0).then(|| format!("p{}", g.next(6))),
                attempt_log: Vec::new(),
                attribution: a,
            }
        })
        .collect()
}

fn append_in_batches(stores: &Stores, rows: &[LedgerRow], batch: usize) {
    for c in rows.chunks(batch) {
        append(stores, c);
    }
}

/// The same 2,000 rows in a SQLite-only store and in the ClickHouse-backed
/// one: every spend report is equal, value for value and in the same order
/// (SQLite answers whole hours from its rollup, ClickHouse from raw rows
/// under FINAL), and stays equal after the whole ledger is replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_reports_equal_sqlite_reports() {
    let Some((ch, db, _dir)) = with_clickhouse().await else { return };
    let lite_dir = tempfile::tempdir().unwrap();
    let lite = Stores::open(&format!("sqlite://{}", lite_dir.path().join("only.db").display())).await.unwrap();
    let rows = varied_rows(2_000);
    let (first, last) = (rows[0].time_ms, rows[rows.len() - 1].time_ms);
    let hour = 3_600_000;
    let queries = vec![
        SpendQuery::default(),
        SpendQuery { group_by: vec!["team".into(), "model".into()], ..Default::default() },
        SpendQuery { group_by: vec!["cost_center".into()], ..Default::default() },
        SpendQuery {
            group_by: vec!["team".into()],
            from_ms: Some(first + hour + 17 * 60_000 + 3),
            to_ms: Some(last - 2 * hour - 41 * 60_000 - 7),
            ..Default::default()
        },
        SpendQuery { group_by: vec!["model".into()], bucket: Some(Bucket::Day), ..Default::default() },
        SpendQuery {
            group_by: vec!["provider".into(), "feature".into()],
            from_ms: Some(first + 26 * hour + 1),
            to_ms: Some(first + 50 * hour + 59_999),
            bucket: Some(Bucket::Hour),
            ..Default::default()
        },
        SpendQuery {
            group_by: vec!["feature".into()],
            filters: vec![("team".into(), "growth".into()), ("env".into(), "prod".into())],
            ..Default::default()
        },
        SpendQuery {
            group_by: vec!["key".into(), "user".into()],
            filters: vec![("team".into(), "o'brien \\ \"quoted\"".into())],
            ..Default::default()
        },
        SpendQuery { group_by: vec!["status".into(), "cache".into()], ..Default::default() },
        SpendQuery {
            group_by: vec!["note".into()],
            filters: vec![("note".into(), "x' OR '1'='1".into())],
            ..Default::default()
        },
        // INJECTION
        SpendQuery { filters: vec![("team".into(), "nobody' OR '1'='1".into())], ..Default::default() },
        SpendQuery { group_by: vec!["agent".into(), "prompt".into(), "endpoint".into()], ..Default::default() },
    ];
    const INJECTION: usize = 10;
    assert!(format!("{:?}", queries[INJECTION]).contains("nobody"));
    let compare = |round: &'static str| {
        let (ch, lite, queries, rows) = (&ch, &lite, &queries, &rows);
        async move {
            let started = std::time::Instant::now();
            for (i, q) in queries.iter().enumerate() {
                let want = lite.reports.spend(q.clone()).await.unwrap();
                let got = ch.reports.spend(q.clone()).await.unwrap();
                assert_eq!(got, want, "{round}: {q:?}");
                // Every query finds rows, but the one whose filter is an injection attempt.
                assert_eq!(want.rows.is_empty(), i == INJECTION, "{round}: {q:?}");
            }
            let total = ch.reports.spend(SpendQuery::default()).await.unwrap();
            assert_eq!(total.total_requests, rows.len() as u64, "{round}");
            for by in ["model", "team", "prompt"] {
                let want = lite.reports.prompt_cache(by.into(), first + 5 * hour).await.unwrap();
                assert_eq!(ch.reports.prompt_cache(by.into(), first + 5 * hour).await.unwrap(), want, "{round}: {by}");
            }
            for filters in
                [vec![], vec![("team".to_string(), "growth".to_string())], vec![("model".into(), "g*-2.5-*".into())]]
            {
                let want = lite.reports.spend_per_second(filters.clone(), first + 30 * hour).await.unwrap();
                assert!(!want.is_empty());
                assert_eq!(
                    ch.reports.spend_per_second(filters.clone(), first + 30 * hour).await.unwrap(),
                    want,
                    "{round}"
                );
            }
            let mut want = lite.reports.unpriced_models().await.unwrap();
            let mut got = ch.reports.unpriced_models().await.unwrap();
            want.sort();
            got.sort();
            assert_eq!(got, want, "{round}");
            eprintln!(
                "{round}: {} spend queries and the other reports compared in {:?}",
                queries.len(),
                started.elapsed()
            );
        }
    };
    let started = std::time::Instant::now();
    append_in_batches(&lite, &rows, 250);
    let lite_append = started.elapsed();
    let started = std::time::Instant::now();
    append_in_batches(&ch, &rows, 250);
    eprintln!(
        "appended 2,000 rows in batches of 250: SQLite {lite_append:?}, Tee (SQLite + ClickHouse) {:?}",
        started.elapsed()
    );
    compare("first write").await;
    // Every hour rolled up (long closed by now): whole hours are answered from the rollup.
    let analytics = ch.analytics.clone().unwrap();
    let rolled = analytics.roll_up(tollgate::pipeline::now_ms(), usize::MAX).await.unwrap();
    assert!(rolled > 40, "{rolled} hours rolled up");
    assert_eq!(analytics.roll_up(tollgate::pipeline::now_ms(), usize::MAX).await.unwrap(), 0, "clean hours stay");
    compare("rolled up").await;
    // The whole ledger replayed (a spool sent again), in other batches: the
    // primary skips the rows, ClickHouse holds two copies until it merges
    // (merges stopped here, so the copies stay and FINAL must collapse them).
    services::ch_execute(&db.http, &format!("SYSTEM STOP MERGES {}.ledger", db.name)).await;
    let started = std::time::Instant::now();
    append_in_batches(&lite, &rows, 333);
    append_in_batches(&ch, &rows, 333);
    eprintln!("replayed into both in {:?}", started.elapsed());
    let stored = services::ch_execute(&db.http, &format!("SELECT count() FROM {}.ledger", db.name)).await;
    assert_eq!(stored.trim(), "4000", "both copies of every row are in the table");
    compare("replayed").await;
    // The replay marked its hours dirty: they were read raw above; rolled up again, they count each row once.
    assert_eq!(analytics.roll_up(tollgate::pipeline::now_ms(), usize::MAX).await.unwrap(), rolled);
    compare("replayed, rolled up again").await;
    // The request log reads the same rows back, newest id first.
    let (a, b) = (all_requests(&lite).await, all_requests(&ch).await);
    assert_eq!(a.len(), rows.len());
    assert_eq!(b, a);
    for r in rows.iter().step_by(97) {
        assert_eq!(ch.requests.request(r.request_id.clone()).await.unwrap().as_ref(), Some(r), "{}", r.request_id);
    }
    // Whole hours come from the rollup: with the raw rows of the first day
    // deleted, a report over whole hours is unchanged.
    services::ch_execute(&db.http, &format!("SYSTEM START MERGES {}.ledger", db.name)).await; // deletes run as merges
    let cut = (first / hour + 24) * hour;
    let q = SpendQuery { group_by: vec!["team".into(), "model".into()], to_ms: Some(cut), ..Default::default() };
    let before = ch.reports.spend(q.clone()).await.unwrap();
    assert!(before.total_requests > 100, "{}", before.total_requests);
    assert!(ch.requests.prune_raw(cut).await.unwrap() > 100);
    assert_eq!(ch.reports.spend(q).await.unwrap(), before, "answered from the rollup");
    // The primary behind the tee got every row too (outcome costs join it).
    let primary = Stores::open(&format!("sqlite://{}", _dir.path().join("primary.db").display())).await.unwrap();
    assert_eq!(
        primary.reports.spend(queries[1].clone()).await.unwrap(),
        lite.reports.spend(queries[1].clone()).await.unwrap()
    );
}

/// ClickHouse's own request log: a gateway id (UUIDv7) is found by its time
/// window, an unknown one is not, filters with quotes are values, and
/// retention deletes raw rows (counted before) — reports lose them, as
/// ClickHouse keeps no rollup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_request_log_and_retention() {
    let Some((ch, _db, _dir)) = with_clickhouse().await else { return };
    let rows = varied_rows(300);
    append(&ch, &rows);
    append(&ch, &rows[100..200]);
    let v7 = rows.iter().find(|r| !r.request_id.starts_with("batch:")).unwrap();
    assert_eq!(ch.requests.request(v7.request_id.clone()).await.unwrap().as_ref(), Some(v7));
    let batch = rows.iter().find(|r| r.request_id.starts_with("batch:")).unwrap();
    assert_eq!(ch.requests.request(batch.request_id.clone()).await.unwrap().as_ref(), Some(batch));
    assert!(ch.requests.request(uuid::Uuid::now_v7().to_string()).await.unwrap().is_none());
    assert!(ch.requests.request("x' OR '1'='1".into()).await.unwrap().is_none());
    let quoted = "o'brien \\ \"quoted\"";
    let page = ch
        .requests
        .requests(RequestQuery { filters: vec![("team".into(), quoted.into())], limit: 1000, cursor: None })
        .await
        .unwrap();
    assert_eq!(page.rows.len(), rows.iter().filter(|r| r.attribution.tag("team") == Some(quoted)).count());
    assert!(!page.rows.is_empty());
    // The server drops keep-alive connections idle for 3 s: both clients (the
    // loader's and the readers') carry on past that.
    tokio::time::sleep(std::time::Duration::from_millis(3_500)).await;
    append(&ch, &rows[..10]);
    assert_eq!(ch.reports.spend(SpendQuery::default()).await.unwrap().total_requests, 300);
    let cut = rows[120].time_ms;
    let deleted = ch.requests.prune_raw(cut).await.unwrap();
    assert_eq!(deleted, 120);
    assert_eq!(ch.requests.prune_raw(cut).await.unwrap(), 0, "nothing left to delete");
    let left = all_requests(&ch).await;
    assert_eq!(left.len(), 180);
    assert!(left.iter().all(|r| r.time_ms >= cut));
    assert_eq!(ch.reports.spend(SpendQuery::default()).await.unwrap().total_requests, 180);
}

/// A ClickHouse ledger and rollup created before the tool-cost and media-unit
/// columns (on 18.16 too: no `ADD COLUMN IF NOT EXISTS` there) get them when opened;
/// rollup computations from before still answer, and hours recomputed
/// have the new sums.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_tables_from_before_get_tool_cost_columns_on_open() {
    let Some((stores, db, dir)) = with_clickhouse().await else { return };
    let mut old_rows: Vec<LedgerRow> = rows(200).into_iter().map(without_tool_fields).collect();
    append(&stores, &old_rows);
    let analytics = stores.analytics.clone().unwrap();
    assert!(analytics.roll_up(tollgate::pipeline::now_ms(), usize::MAX).await.unwrap() > 40);
    let before = stores.reports.spend(SpendQuery::default()).await.unwrap();
    drop((stores, analytics));
    for (table, col) in [
        ("ledger", "web_search_requests"),
        ("ledger", "tool_cost_nanos"),
        ("ledger", "provider_cost_nanos"),
        ("ledger_hourly", "tool_cost_nanos"),
        ("ledger_hourly", "web_search_requests"),
        ("ledger", "input_image_tokens"),
        ("ledger", "images"),
        ("ledger", "audio_ms"),
        ("ledger", "characters"),
    ] {
        services::ch_execute(&db.http, &format!("ALTER TABLE {}.{table} DROP COLUMN {col}", db.name)).await;
    }
    let columns = |table: &'static str| {
        let db = &db;
        async move {
            let sql = format!(
                "SELECT name FROM system.columns WHERE database = '{}' AND table = '{table}' AND name IN ({}) \
                 ORDER BY name",
                db.name,
                added_list()
            );
            services::ch_execute(&db.http, &sql).await.lines().map(str::to_string).collect::<Vec<String>>()
        }
    };
    assert!(columns("ledger").await.is_empty(), "the columns are gone");
    let stores = open_with_clickhouse(&db, &dir).await;
    assert_eq!(columns("ledger").await, LEDGER_ADDED);
    assert_eq!(columns("ledger_hourly").await, ["tool_cost_nanos", "web_search_requests"]);
    // Opened once more (another replica): nothing to add, no error.
    drop(open_with_clickhouse(&db, &dir).await);
    old_rows.sort_by(|a, b| a.request_id.cmp(&b.request_id));
    old_ledger_takes_tool_costs(&stores, &old_rows, &before).await;
    // The hours of the new rows are computed again, with the new sums.
    let analytics = stores.analytics.clone().unwrap();
    assert_eq!(analytics.roll_up(tollgate::pipeline::now_ms(), usize::MAX).await.unwrap(), 1);
    let after = stores.reports.spend(SpendQuery::default()).await.unwrap();
    assert_eq!((after.tool_cost().nanos(), after.web_search_requests()), (30_000_000, 3));
    assert_eq!(after.total_requests, 202);
}

// ------------------------------------------------------------------ PostgreSQL, shared by replicas

/// Replicas that start together each run the migrations; every one opens,
/// and each schema version is applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_migrations_are_safe_when_replicas_start_at_once() {
    let Some(db) = services::PgDatabase::create().await else { return };
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let u = db.url.clone();
            tokio::spawn(async move { Stores::open(&u).await })
        })
        .collect();
    for o in opens {
        o.await.unwrap().unwrap();
    }
    let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let versions: Vec<i64> = client
        .query("SELECT version FROM schema_migrations ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, vec![1, 2, 3, 4, 5, 6, 7]);
    // Opening again changes nothing.
    Stores::open(&db.url).await.unwrap();
    assert_eq!(client.query("SELECT version FROM schema_migrations", &[]).await.unwrap().len(), 7);
}

/// A database left at migration 1 by the previous version gets the price
/// updates table when opened, and its other data stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_database_at_migration_1_gets_price_updates_on_open() {
    let Some(db) = services::PgDatabase::create().await else { return };
    let stores = Stores::open(&db.url).await.unwrap();
    stores.governance.upsert_budget(budget("b1", "growth", "10"), 1).await.unwrap();
    drop(stores);
    let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(&format!(
            "DROP TABLE price_updates; {UNDO_MIGRATION_5} {UNDO_MIGRATION_4} {UNDO_MIGRATION_3} \
             DELETE FROM schema_migrations WHERE version > 1"
        ))
        .await
        .unwrap();
    let stores = Stores::open(&db.url).await.unwrap();
    let versions: Vec<i64> = client
        .query("SELECT version FROM schema_migrations ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, vec![1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(stores.governance.list_budgets().await.unwrap(), vec![budget("b1", "growth", "10")]);
    assert_eq!(stores.governance.price_update_version().await.unwrap(), 0);
    let id = stores.governance.insert_price_update("p.toml".into(), "cli".into(), CATALOG.into(), 5).await.unwrap();
    assert_eq!(stores.governance.price_update_version().await.unwrap(), id);
}

/// Migration 3 undone: the ledger and rollup columns of a database from before it.
const UNDO_MIGRATION_3: &str = "ALTER TABLE ledger DROP COLUMN web_search_requests, DROP COLUMN tool_cost_nanos, \
    DROP COLUMN provider_cost_nanos; ALTER TABLE ledger_hourly DROP COLUMN tool_cost_nanos, \
    DROP COLUMN web_search_requests;";

/// Migration 5 undone: the audit log.
const UNDO_MIGRATION_5: &str = "DROP TABLE audit_log;";

/// Migration 4 undone: the ledger's media-unit columns.
const UNDO_MIGRATION_4: &str = "ALTER TABLE ledger DROP COLUMN input_image_tokens, DROP COLUMN images, \
    DROP COLUMN audio_ms, DROP COLUMN characters;";

/// The ledger's columns added since it was first created, as the stores'
/// catalogs list them (sorted by name).
const LEDGER_ADDED: [&str; 7] = [
    "audio_ms",
    "characters",
    "images",
    "input_image_tokens",
    "provider_cost_nanos",
    "tool_cost_nanos",
    "web_search_requests",
];

/// [`LEDGER_ADDED`] as an SQL list.
fn added_list() -> String {
    LEDGER_ADDED.map(|c| format!("'{c}'")).join(", ")
}

/// Rows as a version without tool costs (nor media units) wrote them: none
/// of the new fields.
fn without_tool_fields(mut r: LedgerRow) -> LedgerRow {
    r.usage.web_search_requests = 0;
    r.tool_cost = Money::ZERO;
    r.provider_cost = None;
    (r.usage.input_image, r.usage.images, r.usage.audio_ms, r.usage.characters) = (0, 0, 0, 0);
    r
}

/// Checks that `stores`, opened over a ledger written before the tool-cost
/// columns existed, reads the old rows back unchanged and keeps the new
/// fields of new rows, in the request log and in the spend report.
async fn old_ledger_takes_tool_costs(stores: &Stores, old_rows: &[LedgerRow], before: &tollgate::query::SpendReport) {
    let mut stored = all_requests(stores).await;
    stored.sort_by(|a, b| a.request_id.cmp(&b.request_id));
    assert_eq!(stored, old_rows, "old rows read back with no tool cost, searches or provider cost");
    assert_eq!(stores.reports.spend(SpendQuery::default()).await.unwrap(), *before);
    let new_rows = tool_rows();
    append(stores, &new_rows);
    for r in &new_rows {
        assert_eq!(stores.requests.request(r.request_id.clone()).await.unwrap().as_ref(), Some(r));
    }
    let after = stores.reports.spend(SpendQuery::default()).await.unwrap();
    assert_eq!((after.tool_cost().nanos(), after.web_search_requests()), (30_000_000, 3));
    assert_eq!(after.total_requests, before.total_requests + 2);
}

/// A database from before migration 3 (no tool-cost columns in the ledger
/// or the rollup, no media-unit columns of migration 4) gets them when
/// opened; its rows stay as they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_database_at_migration_2_gets_tool_cost_columns_on_open() {
    let Some(db) = services::PgDatabase::create().await else { return };
    let old_rows: Vec<LedgerRow> = rows(200).into_iter().map(without_tool_fields).collect();
    let before = {
        let stores = Stores::open(&db.url).await.unwrap();
        append(&stores, &old_rows);
        stores.reports.spend(SpendQuery::default()).await.unwrap()
    };
    let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(&format!(
            "{UNDO_MIGRATION_5} {UNDO_MIGRATION_4} {UNDO_MIGRATION_3} DELETE FROM schema_migrations WHERE version > 2"
        ))
        .await
        .unwrap();
    let columns = |table: &'static str| {
        let client = &client;
        async move {
            let rows = client
                .query(
                    &format!(
                        "SELECT column_name::text FROM information_schema.columns WHERE table_name = $1 \
                         AND column_name IN ({}) ORDER BY 1",
                        added_list()
                    ),
                    &[&table],
                )
                .await
                .unwrap();
            rows.iter().map(|r| r.get::<_, String>(0)).collect::<Vec<String>>()
        }
    };
    assert!(columns("ledger").await.is_empty(), "the columns are gone");
    let stores = Stores::open(&db.url).await.unwrap();
    let versions: Vec<i64> = client
        .query("SELECT version FROM schema_migrations ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, vec![1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(columns("ledger").await, LEDGER_ADDED);
    assert_eq!(columns("ledger_hourly").await, ["tool_cost_nanos", "web_search_requests"]);
    let mut sorted = old_rows.clone();
    sorted.sort_by(|a, b| a.request_id.cmp(&b.request_id));
    old_ledger_takes_tool_costs(&stores, &sorted, &before).await;
}

/// A SQLite file written before the tool-cost and media-unit columns: the
/// ledger and the hourly rollup get them when it is opened, and a rollup
/// rebuilt from the raw rows has their sums too (image tokens in its input).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_file_from_before_gets_tool_cost_columns_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let url = format!("sqlite://{}", path.display());
    let mut old_rows: Vec<LedgerRow> = rows(200).into_iter().map(without_tool_fields).collect();
    let before = {
        let old = tollgate::store::sqlite::SqliteStore::open(&url).unwrap();
        let refs: Vec<&LedgerRow> = old_rows.iter().collect();
        old.append(&refs).unwrap();
        let before = old.spend(&SpendQuery::default()).unwrap();
        old.with_reader(|c| {
            Ok(c.execute_batch(
                "ALTER TABLE ledger DROP COLUMN web_search_requests; ALTER TABLE ledger DROP COLUMN tool_cost_nanos; \
                 ALTER TABLE ledger DROP COLUMN provider_cost_nanos; \
                 ALTER TABLE ledger_hourly DROP COLUMN tool_cost_nanos; \
                 ALTER TABLE ledger_hourly DROP COLUMN web_search_requests; \
                 ALTER TABLE ledger DROP COLUMN input_image_tokens; ALTER TABLE ledger DROP COLUMN images; \
                 ALTER TABLE ledger DROP COLUMN audio_ms; ALTER TABLE ledger DROP COLUMN characters;",
            )?)
        })
        .unwrap();
        before
    };
    let columns = |table: &str| -> Vec<String> {
        let c = rusqlite::Connection::open(&path).unwrap();
        let mut stmt = c
            .prepare(&format!("SELECT name FROM pragma_table_info(?1) WHERE name IN ({}) ORDER BY 1", added_list()))
            .unwrap();
        let names = stmt.query_map([table], |r| r.get::<_, String>(0)).unwrap();
        names.collect::<Result<_, _>>().unwrap()
    };
    assert!(columns("ledger").is_empty() && columns("ledger_hourly").is_empty(), "the columns are gone");
    let stores = Stores::open(&url).await.unwrap();
    assert_eq!(columns("ledger"), LEDGER_ADDED);
    assert_eq!(columns("ledger_hourly"), ["tool_cost_nanos", "web_search_requests"]);
    old_rows.sort_by(|a, b| a.request_id.cmp(&b.request_id));
    old_ledger_takes_tool_costs(&stores, &old_rows, &before).await;
    let after = stores.reports.spend(SpendQuery { group_by: vec!["team".into()], ..Default::default() }).await.unwrap();
    drop(stores);
    // A file from before the rollup: it is built from the raw rows, new sums included.
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("DROP TABLE ledger_hourly; DELETE FROM meta WHERE name = 'rollup_v3'")
        .unwrap();
    let stores = Stores::open(&url).await.unwrap();
    assert_eq!(columns("ledger_hourly"), ["tool_cost_nanos", "web_search_requests"]);
    let rebuilt =
        stores.reports.spend(SpendQuery { group_by: vec!["team".into()], ..Default::default() }).await.unwrap();
    assert_eq!(rebuilt, after);
    assert_eq!((rebuilt.tool_cost().nanos(), rebuilt.web_search_requests()), (30_000_000, 3));
}

/// Replicas applying price updates at once: every update kept once, ids
/// distinct, and the version the newest id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replicas_append_price_updates_at_once() {
    let Some(db) = services::PgDatabase::create().await else { return };
    let a = Stores::open(&db.url).await.unwrap();
    let b = Stores::open(&db.url).await.unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                s.governance.insert_price_update(format!("src-{i}"), "cli".into(), CATALOG.into(), i).await.unwrap()
            })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 20);
    let stored: Vec<i64> = b.governance.price_updates().await.unwrap().iter().map(|u| u.id).collect();
    assert_eq!(stored, ids, "every update once, oldest first");
    assert_eq!(a.governance.price_update_version().await.unwrap(), *ids.last().unwrap());
}

/// A SQLite file written before the audit log gets it when opened, its other data kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_file_from_before_gets_the_audit_log_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("old.db").display());
    {
        let old = tollgate::store::sqlite::SqliteStore::open(&url).unwrap();
        old.upsert_budget(&budget("b1", "growth", "10"), 1).unwrap();
        old.with_reader(|c| Ok(c.execute_batch("DROP INDEX audit_log_ts; DROP TABLE audit_log")?)).unwrap();
    }
    let stores = Stores::open(&url).await.unwrap();
    assert_eq!(stores.governance.list_budgets().await.unwrap(), vec![budget("b1", "growth", "10")]);
    assert!(stores.audit.list(AuditQuery::default()).await.unwrap().entries.is_empty());
    let e = AuditEntry::new(5, "cli:alice", "cli", "budget.delete", "b1");
    let id = stores.audit.record(e.clone()).await.unwrap();
    assert_eq!(stores.audit.list(AuditQuery::default()).await.unwrap().entries, vec![AuditEntry { id: Some(id), ..e }]);
}

/// A PostgreSQL database left at migration 4 gets the audit log (migration 5) when opened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_database_at_migration_4_gets_the_audit_log_on_open() {
    let Some(db) = services::PgDatabase::create().await else { return };
    let stores = Stores::open(&db.url).await.unwrap();
    stores.governance.upsert_budget(budget("b1", "growth", "10"), 1).await.unwrap();
    drop(stores);
    let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client.batch_execute(&format!("{UNDO_MIGRATION_5} DELETE FROM schema_migrations WHERE version > 4")).await.unwrap();
    let stores = Stores::open(&db.url).await.unwrap();
    let versions: Vec<i64> = client
        .query("SELECT version FROM schema_migrations ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, vec![1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(stores.governance.list_budgets().await.unwrap(), vec![budget("b1", "growth", "10")]);
    let e = AuditEntry::new(5, "cli:alice", "cli", "budget.delete", "b1");
    let id = stores.audit.record(e.clone()).await.unwrap();
    assert_eq!(stores.audit.list(AuditQuery::default()).await.unwrap().entries, vec![AuditEntry { id: Some(id), ..e }]);
}

/// A SQLite file written by the previous version (no price updates table)
/// gets it when opened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_file_from_before_gets_price_updates_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("old.db").display());
    {
        let old = tollgate::store::sqlite::SqliteStore::open(&url).unwrap();
        old.upsert_budget(&budget("b1", "growth", "10"), 1).unwrap();
        old.with_reader(|c| Ok(c.execute_batch("DROP TABLE price_updates")?)).unwrap();
    }
    let stores = Stores::open(&url).await.unwrap();
    assert_eq!(stores.governance.list_budgets().await.unwrap(), vec![budget("b1", "growth", "10")]);
    assert_eq!(stores.governance.price_update_version().await.unwrap(), 0);
    let id = stores.governance.insert_price_update("p.toml".into(), "cli".into(), CATALOG.into(), 5).await.unwrap();
    assert_eq!(stores.governance.price_updates().await.unwrap().len(), 1);
    assert_eq!(stores.governance.price_update_version().await.unwrap(), id);
}

/// Two replicas' loaders replaying overlapping spools into one database at
/// once: every request once, and the rollup-answered totals exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_loaders_of_two_replicas_replay_without_duplicates() {
    let Some(db) = services::PgDatabase::create().await else { return };
    let a = Stores::open(&db.url).await.unwrap();
    let b = Stores::open(&db.url).await.unwrap();
    let rows = rows(600);
    let (ra, rb) = (rows[..400].to_vec(), rows[200..].to_vec());
    let (sa, sb) = (a.clone(), b.clone());
    let ta = std::thread::spawn(move || {
        for c in ra.chunks(37) {
            let refs: Vec<&LedgerRow> = c.iter().collect();
            sa.ledger.append(&refs).unwrap();
        }
    });
    let tb = std::thread::spawn(move || {
        for c in rb.chunks(41).rev() {
            let refs: Vec<&LedgerRow> = c.iter().collect();
            sb.ledger.append(&refs).unwrap();
        }
    });
    ta.join().unwrap();
    tb.join().unwrap();
    assert_eq!(all_requests(&a).await.len(), 600);
    let report = b.reports.spend(SpendQuery { group_by: vec!["team".into()], ..Default::default() }).await.unwrap();
    let want: i64 = rows.iter().map(|r| r.cost.map_or(0, |c| c.nanos())).sum();
    assert_eq!(report.total_requests, 600);
    assert_eq!(report.total_cost.nanos(), want);
}

/// The key-hashing secret is created once and read by every replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replicas_share_one_key_hash_secret() {
    let Some(db) = services::PgDatabase::create().await else { return };
    let a = Stores::open(&db.url).await.unwrap();
    let b = Stores::open(&db.url).await.unwrap();
    let (x, y) = tokio::join!(a.keys.key_hash_secret(), b.keys.key_hash_secret());
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(x.len(), 32);
    assert_eq!(x, y);
    assert_eq!(a.keys.key_hash_secret().await.unwrap(), x);
}

// ------------------------------------------------------------------ counters

use std::sync::Arc;

use tollgate::store::counters::{CounterAsk, CounterRefusal, CounterRule, CounterStore, CounterView, MemoryCounters};

fn window(limit: i64) -> CounterRule {
    CounterRule::Window { start_ms: 0, end_ms: 86_400_000, limit: Some(limit) }
}

fn ask(key: &str, rule: CounterRule, amount: i64) -> CounterAsk {
    CounterAsk { key: Arc::from(key), rule, amount }
}

pub async fn counters_reserve_settle_release_and_refuse(c: Arc<dyn CounterStore>) {
    let b = window(1000);
    seed(&c, "b", b).await;
    let g1 = c.reserve(&[ask("b", b, 600)], 60_000, 10).await.unwrap().unwrap();
    assert_eq!(g1.remaining, vec![Some(400)]);
    let refused = c.reserve(&[ask("b", b, 600)], 60_000, 10).await.unwrap().unwrap_err();
    assert_eq!(refused, CounterRefusal::Exhausted { index: 0, remaining: 400, resets_at_ms: 86_400_000 });
    let after = c.settle(g1.lease, &[ask("b", b, 600)], &[100], 20).await.unwrap();
    assert_eq!(after, vec![CounterView { spent: 100, reserved: 0 }]);
    let g2 = c.reserve(&[ask("b", b, 900)], 60_000, 30).await.unwrap().unwrap();
    assert_eq!(c.view("b", b, 30).await.unwrap(), CounterView { spent: 100, reserved: 900 });
    c.release(g2.lease, 40).await.unwrap();
    assert_eq!(c.view("b", b, 40).await.unwrap(), CounterView { spent: 100, reserved: 0 });
    // Counters without a limit never refuse, and still count.
    let alert = CounterRule::Window { start_ms: 0, end_ms: 86_400_000, limit: None };
    seed(&c, "a", alert).await;
    let g = c.reserve(&[ask("a", alert, 5_000_000)], 60_000, 50).await.unwrap().unwrap();
    assert_eq!(g.remaining, vec![None]);
    c.settle(g.lease, &[ask("a", alert, 5_000_000)], &[7], 60).await.unwrap();
    assert_eq!(c.view("a", alert, 60).await.unwrap().spent, 7);
}

pub async fn counters_are_all_or_nothing(c: Arc<dyn CounterStore>) {
    let (wide, narrow) = (window(1000), window(100));
    let rate = CounterRule::Rate { capacity: 10, window_ms: 60_000 };
    seed(&c, "wide", wide).await;
    seed(&c, "narrow", narrow).await;
    let refused = c
        .reserve(&[ask("wide", wide, 200), ask("rate", rate, 1), ask("narrow", narrow, 200)], 60_000, 0)
        .await
        .unwrap();
    assert!(matches!(refused, Err(CounterRefusal::Exhausted { index: 2, remaining: 100, .. })), "{refused:?}");
    assert_eq!(c.view("wide", wide, 0).await.unwrap(), CounterView::default(), "nothing taken from the others");
    assert_eq!(c.view("rate", rate, 0).await.unwrap(), CounterView::default());
}

pub async fn counters_release_a_dead_owners_reservation_when_its_lease_ends(c: Arc<dyn CounterStore>) {
    let b = window(1000);
    seed(&c, "b", b).await;
    let g = c.reserve(&[ask("b", b, 700)], 1_000, 0).await.unwrap().unwrap();
    assert_eq!(c.expire_leases(500).await.unwrap(), 0, "still leased");
    assert!(c.reserve(&[ask("b", b, 700)], 1_000, 600).await.unwrap().is_err(), "held while leased");
    assert_eq!(c.expire_leases(1_500).await.unwrap(), 1);
    assert_eq!(c.view("b", b, 1_500).await.unwrap(), CounterView { spent: 0, reserved: 0 });
    // Its owner settling late books the spend once, and gives back nothing twice.
    c.settle(g.lease, &[ask("b", b, 700)], &[300], 2_000).await.unwrap();
    assert_eq!(c.view("b", b, 2_000).await.unwrap(), CounterView { spent: 300, reserved: 0 });
    // A new reservation expires without anyone calling expire_leases: reserving past it does.
    let _lost = c.reserve(&[ask("b", b, 600)], 1_000, 3_000).await.unwrap().unwrap();
    assert!(c.reserve(&[ask("b", b, 600)], 1_000, 5_000).await.unwrap().is_ok(), "the lost lease ran out");
}

pub async fn counters_rate_limit_with_exact_retry_after(c: Arc<dyn CounterStore>) {
    let rpm = CounterRule::Rate { capacity: 2, window_ms: 60_000 };
    let g1 = c.reserve(&[ask("rpm", rpm, 1)], 60_000, 0).await.unwrap().unwrap();
    let _g2 = c.reserve(&[ask("rpm", rpm, 1)], 60_000, 0).await.unwrap().unwrap();
    assert_eq!(
        c.reserve(&[ask("rpm", rpm, 1)], 60_000, 0).await.unwrap(),
        Err(CounterRefusal::Wait { index: 0, retry_after_ms: 30_000 })
    );
    c.release(g1.lease, 0).await.unwrap();
    assert!(c.reserve(&[ask("rpm", rpm, 1)], 60_000, 0).await.unwrap().is_ok(), "a release gives the unit back");
    assert!(c.reserve(&[ask("rpm", rpm, 1)], 60_000, 30_000).await.unwrap().is_ok(), "refilled after 30 s");
}

pub async fn counters_follow_their_windows(c: Arc<dyn CounterStore>) {
    let day1 = CounterRule::Window { start_ms: 0, end_ms: 1_000, limit: Some(1000) };
    let day2 = CounterRule::Window { start_ms: 1_000, end_ms: 2_000, limit: Some(1000) };
    seed(&c, "d", day1).await;
    let g = c.reserve(&[ask("d", day1, 800)], 60_000, 10).await.unwrap().unwrap();
    c.settle(g.lease, &[ask("d", day1, 800)], &[800], 20).await.unwrap();
    assert!(c.reserve(&[ask("d", day1, 300)], 60_000, 30).await.unwrap().is_err());
    assert!(c.reserve(&[ask("d", day2, 300)], 60_000, 1_010).await.unwrap().is_ok(), "a new window starts at zero");
    let rolling = CounterRule::Rolling { len_ms: 60_000, limit: Some(1000) };
    seed(&c, "r", rolling).await;
    let g = c.reserve(&[ask("r", rolling, 800)], 60_000, 1_000).await.unwrap().unwrap();
    c.settle(g.lease, &[ask("r", rolling, 800)], &[800], 1_000).await.unwrap();
    assert!(c.reserve(&[ask("r", rolling, 300)], 60_000, 30_000).await.unwrap().is_err());
    assert!(c.reserve(&[ask("r", rolling, 300)], 60_000, 62_000).await.unwrap().is_ok(), "the spend slid out");
}

/// A sum counter is seeded from the ledger once before use. Unseeded (new,
/// or lost by a Redis restarted without data) it refuses to count from zero;
/// seeded, it is not set back by a later seed (a replica starting, a budget's
/// limit changing), since in use it is ahead of the ledger.
pub async fn counters_are_seeded_once_and_refuse_to_count_from_zero(c: Arc<dyn CounterStore>) {
    let s = window(1000);
    let rate = CounterRule::Rate { capacity: 10, window_ms: 60_000 };
    assert_eq!(
        c.reserve(&[ask("rate", rate, 1), ask("s", s, 100)], 60_000, 0).await.unwrap(),
        Err(CounterRefusal::Unseeded { index: 1 })
    );
    assert_eq!(c.view("rate", rate, 0).await.unwrap(), CounterView::default(), "nothing taken");
    c.seed("s", s, vec![(0, 250), (1, 50)], 0).await.unwrap();
    let held = c.reserve(&[ask("s", s, 100)], 60_000, 0).await.unwrap().unwrap();
    assert_eq!(held.remaining, vec![Some(600)]);
    c.seed("s", s, vec![(0, 5)], 0).await.unwrap();
    assert_eq!(c.view("s", s, 0).await.unwrap(), CounterView { spent: 300, reserved: 100 }, "seeded once");
    let rolling = CounterRule::Rolling { len_ms: 60_000, limit: Some(1000) };
    c.seed("r", rolling, vec![(0, 700)], 1_000).await.unwrap();
    assert!(c.reserve(&[ask("r", rolling, 400)], 60_000, 1_000).await.unwrap().is_err(), "700 already spent");
    assert!(c.reserve(&[ask("r", rolling, 400)], 60_000, 61_000).await.unwrap().is_ok(), "the seeded spend slid out");
}

async fn seed(c: &Arc<dyn CounterStore>, key: &str, rule: CounterRule) {
    c.seed(key, rule, Vec::new(), 0).await.unwrap();
}

pub async fn concurrent_reservations_never_overspend(c: Arc<dyn CounterStore>) {
    let b = window(1000);
    seed(&c, "shared", b).await;
    let rpm = CounterRule::Rate { capacity: 1_000, window_ms: 60_000 };
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let asks = [ask("shared", b, 30), ask("shared-rpm", rpm, 1)];
            match c.reserve(&asks, 60_000, 5).await.unwrap() {
                Ok(g) => {
                    tokio::task::yield_now().await;
                    let v = c.settle(g.lease, &asks, &[30, 1], 6).await;
                    v.unwrap();
                    true
                }
                Err(_) => false,
            }
        }));
    }
    let mut granted = 0;
    for t in tasks {
        granted += i64::from(t.await.unwrap());
    }
    assert_eq!(granted, 33, "exactly what fits: 33 × 30 ≤ 1000 < 34 × 30");
    assert_eq!(c.view("shared", b, 7).await.unwrap(), CounterView { spent: 990, reserved: 0 });
}

macro_rules! counter_backends {
    ($($backend:ident => $open:expr;)*) => {$(
        mod $backend {
            use super::*;

            macro_rules! case {
                ($name:ident) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        let Some(store): Option<Arc<dyn CounterStore>> = $open else { return };
                        super::$name(store).await;
                    }
                };
            }

            case!(counters_reserve_settle_release_and_refuse);
            case!(counters_are_all_or_nothing);
            case!(counters_release_a_dead_owners_reservation_when_its_lease_ends);
            case!(counters_rate_limit_with_exact_retry_after);
            case!(counters_follow_their_windows);
            case!(concurrent_reservations_never_overspend);
            case!(counters_are_seeded_once_and_refuse_to_count_from_zero);
        }
    )*};
}

/// Redis from `TOLLGATE_TEST_REDIS_URL`, under a key prefix of its own. Unset:
/// skipped, loudly, except in CI (`CI` set), where a missing service fails.
fn redis() -> Option<Arc<dyn CounterStore>> {
    let (url, prefix) = services::redis_url_and_prefix()?;
    Some(Arc::new(tollgate::store::counters::RedisCounters::new(&url, &prefix).unwrap()))
}

counter_backends! {
    memory_counters => Some(Arc::new(MemoryCounters::default()));
    redis_counters => redis();
}
