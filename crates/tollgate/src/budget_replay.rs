//! `tollgate budgets simulate`: a budget replayed over the ledger's history.
//! Rows are fed oldest first; each row the budget's scope covers is admitted
//! when what the budget has let through in its period, plus the row's cost,
//! stays within the limit, and refused otherwise. A refused row adds nothing
//! (as `block` books nothing for a refused request), so later, smaller
//! requests can still fit, exactly as the live budget behaves.
//!
//! The live budget decides on each request's reserved upper bound (the
//! largest answer it may cost) before it is sent; the replay only has the
//! actual cost, so it is the budget's decision with perfect foresight: the
//! live one refuses the same requests or, near the limit, a few earlier.

use std::collections::{BTreeMap, VecDeque};

use chrono_tz::Tz;
use tollgate_units::Money;

use crate::budget::{BudgetSpec, Facts, Period};
use crate::record::LedgerRow;

/// One period of the replay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeriodReplay {
    pub start_ms: i64,
    pub end_ms: i64,
    /// What the budget let through.
    pub admitted: Money,
    pub admitted_requests: u64,
    pub refused: Money,
    pub refused_requests: u64,
    /// When the first request was refused (the budget "triggered").
    pub first_refusal_ms: Option<i64>,
    /// When admitted spend first crossed each alert threshold (per mille).
    pub alerts: Vec<(u32, i64)>,
}

/// The whole replay, period by period (rolling budgets: one line per UTC day).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BudgetReplay {
    pub periods: Vec<PeriodReplay>,
    /// Rows read, and those the scope covered.
    pub rows_seen: u64,
    pub rows_covered: u64,
}

impl BudgetReplay {
    pub fn refused_requests(&self) -> u64 {
        self.periods.iter().map(|p| p.refused_requests).sum()
    }

    pub fn refused(&self) -> Money {
        self.periods.iter().map(|p| p.refused).sum()
    }
}

pub struct Replayer {
    spec: BudgetSpec,
    tz: Tz,
    periods: BTreeMap<i64, PeriodReplay>,
    /// Rolling budgets: what was admitted in the sliding window.
    window: VecDeque<(i64, i64)>,
    window_sum: i64,
    rows_seen: u64,
    rows_covered: u64,
}

const DAY_MS: i64 = 86_400_000;

impl Replayer {
    pub fn new(spec: BudgetSpec, tz: Tz) -> Replayer {
        Replayer {
            spec,
            tz,
            periods: BTreeMap::new(),
            window: VecDeque::new(),
            window_sum: 0,
            rows_seen: 0,
            rows_covered: 0,
        }
    }

    /// One row, in time order.
    pub fn feed(&mut self, row: &LedgerRow) {
        self.rows_seen += 1;
        let model = row.requested_model.as_deref().or(row.model.as_deref()).unwrap_or("");
        let facts = Facts {
            key_id: row.key_id.as_deref().unwrap_or(""),
            model,
            provider: row.provider.as_deref(),
            attribution: &row.attribution,
        };
        if !self.spec.scope.matches(&facts) {
            return;
        }
        self.rows_covered += 1;
        let cost = row.cost.map_or(0, |c| c.nanos().max(0));
        let t = row.time_ms;
        let (start, end, spent_before) = match self.spec.period {
            Period::Rolling(len) => {
                while let Some(&(at, c)) = self.window.front() {
                    if at > t - len {
                        break;
                    }
                    self.window_sum -= c;
                    self.window.pop_front();
                }
                let day = t.div_euclid(DAY_MS) * DAY_MS;
                (day, day + DAY_MS, self.window_sum)
            }
            _ => {
                let (s, e) = self.spec.period.window(t, self.tz);
                let spent = self.periods.get(&s).map_or(0, |p| p.admitted.nanos());
                (s, e, spent)
            }
        };
        let limit = self.spec.limit.nanos();
        let p = self.periods.entry(start).or_insert_with(|| PeriodReplay {
            start_ms: start,
            end_ms: end,
            ..Default::default()
        });
        if spent_before.saturating_add(cost) > limit {
            p.refused += Money::from_nanos(cost);
            p.refused_requests += 1;
            p.first_refusal_ms.get_or_insert(t);
            return;
        }
        p.admitted += Money::from_nanos(cost);
        p.admitted_requests += 1;
        let after = spent_before + cost;
        for &th in &self.spec.alert_at {
            let at = i128::from(limit) * i128::from(th) / 1000;
            if i128::from(after) >= at && i128::from(spent_before) < at && !p.alerts.iter().any(|(x, _)| *x == th) {
                p.alerts.push((th, t));
            }
        }
        if matches!(self.spec.period, Period::Rolling(_)) {
            self.window.push_back((t, cost));
            self.window_sum += cost;
        }
    }

    pub fn finish(self) -> BudgetReplay {
        BudgetReplay {
            periods: self.periods.into_values().collect(),
            rows_seen: self.rows_seen,
            rows_covered: self.rows_covered,
        }
    }
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

pub fn replay_json(spec: &BudgetSpec, r: &BudgetReplay) -> serde_json::Value {
    serde_json::json!({
        "scope": spec.scope.to_string(),
        "limit_usd": spec.limit.to_string(),
        "period": spec.period.to_string(),
        "rows_seen": r.rows_seen,
        "rows_covered": r.rows_covered,
        "refused_requests": r.refused_requests(),
        "refused_usd": r.refused().to_string(),
        "periods": r.periods.iter().map(|p| serde_json::json!({
            "start": rfc3339(p.start_ms),
            "end": rfc3339(p.end_ms),
            "admitted_usd": p.admitted.to_string(),
            "admitted_requests": p.admitted_requests,
            "refused_usd": p.refused.to_string(),
            "refused_requests": p.refused_requests,
            "first_refusal": p.first_refusal_ms.map(rfc3339),
            "alerts": p.alerts.iter().map(|(th, t)| serde_json::json!({
                "threshold": format!("{}.{:03}", th / 1000, th % 1000), "at": rfc3339(*t)})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

pub fn replay_table(spec: &BudgetSpec, r: &BudgetReplay) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "budget {} · limit ${} per {}", spec.scope, spec.limit, spec.period);
    let _ = writeln!(
        out,
        "{:<20}  {:>16}  {:>8}  {:>16}  {:>8}  first refusal",
        "period start", "admitted_usd", "admitted", "refused_usd", "refused"
    );
    for p in &r.periods {
        let _ = writeln!(
            out,
            "{:<20}  {:>16}  {:>8}  {:>16}  {:>8}  {}",
            rfc3339(p.start_ms),
            p.admitted.to_string(),
            p.admitted_requests,
            p.refused.to_string(),
            p.refused_requests,
            p.first_refusal_ms.map(rfc3339).unwrap_or_else(|| "-".into())
        );
    }
    let _ = writeln!(
        out,
        "\n{} of {} rows under the scope; would have refused {} requests (${})",
        r.rows_covered,
        r.rows_seen,
        r.refused_requests(),
        r.refused()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::{Action, Scope};
    use crate::record::Endpoint;

    fn row(id: &str, t: i64, team: &str, nanos: i64) -> LedgerRow {
        let mut r = LedgerRow::new(id, t, "k1", Endpoint::ChatCompletions);
        r.requested_model = Some("gpt-4o".into());
        r.cost = Some(Money::from_nanos(nanos));
        r.attribution.tags.insert("team".into(), team.into());
        r
    }

    fn spec(period: &str) -> BudgetSpec {
        BudgetSpec {
            id: "b".into(),
            scope: Scope::parse("team=growth").unwrap(),
            limit: Money::from_nanos(1_000),
            period: Period::parse(period).unwrap(),
            action: Action::Block,
            alert_at: vec![500, 1000],
            block_unpriced: false,
        }
    }

    #[test]
    fn a_refused_row_books_nothing_so_a_smaller_one_still_fits() {
        // Limit 1,000 nanos a day. 600 admitted (600), 500 refused (1,100 >
        // 1,000), 400 admitted (1,000), 1 refused; another team is not covered;
        // the next day starts again at 0.
        let day = 1_764_547_200_000i64;
        let mut r = Replayer::new(spec("day"), chrono_tz::UTC);
        for (i, (t, team, c)) in [
            (day + 1, "growth", 600),
            (day + 2, "growth", 500),
            (day + 3, "search", 900),
            (day + 4, "growth", 400),
            (day + 5, "growth", 1),
            (day + DAY_MS + 1, "growth", 700),
        ]
        .into_iter()
        .enumerate()
        {
            r.feed(&row(&format!("r{i}"), t, team, c));
        }
        let out = r.finish();
        assert_eq!((out.rows_seen, out.rows_covered), (6, 5));
        assert_eq!(out.periods.len(), 2);
        let d1 = &out.periods[0];
        assert_eq!((d1.admitted.nanos(), d1.admitted_requests), (1_000, 2));
        assert_eq!((d1.refused.nanos(), d1.refused_requests), (501, 2));
        assert_eq!(d1.first_refusal_ms, Some(day + 2));
        // 50 % crossed by the first row (600 ≥ 500), 100 % by the 400 (1,000).
        assert_eq!(d1.alerts, vec![(500, day + 1), (1000, day + 4)]);
        assert_eq!((out.periods[1].admitted.nanos(), out.periods[1].refused_requests), (700, 0));
        assert_eq!((out.refused_requests(), out.refused().nanos()), (2, 501));
    }

    #[test]
    fn a_rolling_budget_frees_what_slides_out_of_its_window() {
        // rolling:1h, limit 1,000: 800 at 0:00, 300 at 0:30 refused (1,100),
        // 300 at 1:00:00.001 admitted (the 800 slid out: 300).
        let t0 = 1_764_547_200_000i64;
        let mut r = Replayer::new(spec("rolling:1h"), chrono_tz::UTC);
        r.feed(&row("a", t0, "growth", 800));
        r.feed(&row("b", t0 + 1_800_000, "growth", 300));
        r.feed(&row("c", t0 + 3_600_001, "growth", 300));
        let out = r.finish();
        assert_eq!(out.refused_requests(), 1);
        assert_eq!(out.periods[0].admitted.nanos(), 1_100);
    }
}
