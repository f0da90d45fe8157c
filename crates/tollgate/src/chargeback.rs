//! Chargeback and showback: rate cards (a markup or discount per team,
//! customer, model…) and the FinOps FOCUS cost-and-usage export. Values only,
//! no I/O: spend rows in, FOCUS rows and CSV bytes out.
//!
//! # Rate cards
//!
//! ```toml
//! [[rate_cards]]
//! name = "growth markup"
//! when = { team = "growth" }   # dimension = value, all must match; omitted or {} = everything
//! markup_percent = "15"        # decimal string, at most 4 decimals, above -100 ("-10" = 10 % discount)
//! ```
//!
//! [`RawRateCard`] is that table as written; [`RateCard::from_raw`] (or
//! [`rate_cards_from_raw`] for the whole list) checks it. For a spend row,
//! [`rate_card_for`] picks the matching card naming the most dimensions (a
//! tie goes to the first in file order), and [`RateCard::billed`] turns the
//! ledger cost into what is charged back: `cost × (1 + percent ÷ 100)`,
//! exact integer arithmetic on nano-dollars, rounded to the nearest
//! nano-dollar with halves rounded away from zero (1.5 → 2, −1.5 → −2).
//!
//! # FOCUS export
//!
//! The caller asks the store for spend grouped by [`export_group_by`] (that
//! is `provider`, `model`, the output dimension `by` if any, then every
//! dimension a card names: [`dims_needed`]) in daily buckets, and hands the
//! rows to [`focus_rows`]. Each fine row gets its own rate card, then the
//! rows are added up to one FOCUS row per day × provider × model × `by`
//! value, so a card on a dimension that is not in the output (a team card in
//! a per-feature export) still prices its share. [`write_focus_csv`] writes
//! them as RFC 4180 CSV.
//!
//! Money columns, in USD with exactly 9 decimals (`Money`'s `Display`):
//! - `EffectiveCost` = `ContractedCost` = the ledger cost (what was paid,
//!   after provider prompt-cache discounts). They add up, to the nano-dollar,
//!   to the `cost` of the input rows.
//! - `ListCost` = cost + prompt-cache savings + response-cache savings: what
//!   the same traffic would have cost without either cache.
//! - `BilledCost` = the rate card's billed amount of the cost (the cost
//!   itself where no card matches): the basis of the internal invoice.
//!
//! ## The specification
//!
//! FinOps Open Cost and Usage Specification (FOCUS) **version 1.1**,
//! <https://focus.finops.org/focus-specification/v1-1/> (v1.0:
//! <https://focus.finops.org/focus-specification/v1-0/>). Column rules were
//! read from the specification's Markdown sources (`specification/columns/*.md`
//! of the FOCUS_Spec repository, as mirrored in microsoft/finops-toolkit),
//! whose "Feature level" marks these 21 columns **Mandatory**:
//!
//! `BilledCost`, `BillingAccountId`, `BillingAccountName`, `BillingCurrency`,
//! `BillingPeriodEnd`, `BillingPeriodStart`, `ChargeCategory`, `ChargeClass`,
//! `ChargeDescription`, `ChargePeriodEnd`, `ChargePeriodStart`,
//! `ContractedCost`, `EffectiveCost`, `InvoiceIssuerName`, `ListCost`,
//! `PricingQuantity`, `PricingUnit`, `ProviderName`, `PublisherName`,
//! `ServiceCategory`, `ServiceName`.
//!
//! Also written: the Recommended `ChargeFrequency` ("Usage-Based") and
//! `ServiceSubcategory` ("Generative AI", new in 1.1), and the Conditional
//! columns that apply: `ConsumedQuantity`/`ConsumedUnit` (tokens),
//! `RegionId`/`RegionName` (always null: the ledger does not know the
//! provider's region), `SkuId` (`provider/model`), `SubAccountId` and
//! `SubAccountName` (the `by` value), `Tags` (a JSON object of the `by`
//! dimension). Left out: unit prices (`ListUnitPrice`, `ContractedUnitPrice`,
//! `SkuPriceId`: a row adds up several token classes with different
//! prices), commitment discounts, capacity reservations, resources.
//!
//! How values are written, per the spec's attributes: date/times as
//! `YYYY-MM-DDTHH:mm:ssZ` in UTC, `ChargePeriodEnd` and `BillingPeriodEnd`
//! exclusive, the billing period the calendar month holding the charge
//! period; numbers as plain decimal text; null as an empty cell. The
//! gateway's own columns follow the FOCUS columns and are prefixed `x_`.
//! Where a non-null column has no value (a row with no provider), it holds
//! [`UNKNOWN`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;

use serde::{Deserialize, Serialize};
use tollgate_units::Money;

use crate::query::SpendRow;

/// The FOCUS version the export follows.
pub const FOCUS_VERSION: &str = "1.1";

/// `BillingAccountId`, `BillingAccountName` and `InvoiceIssuerName`: the
/// chargeback invoice is issued by whoever runs the gateway.
pub const BILLING_ACCOUNT: &str = "tollgate";

/// The value of a non-nullable text column when the ledger has none.
pub const UNKNOWN: &str = "unknown";

/// The mandatory columns of FOCUS 1.1, in the order they are written.
pub const MANDATORY_COLUMNS: &[&str] = &[
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "ContractedCost",
    "EffectiveCost",
    "InvoiceIssuerName",
    "ListCost",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "ServiceCategory",
    "ServiceName",
];

/// Every FOCUS column written, alphabetical (the spec allows it), before the `x_` ones.
pub const FOCUS_COLUMNS: &[&str] = &[
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedCost",
    "EffectiveCost",
    "InvoiceIssuerName",
    "ListCost",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "RegionId",
    "RegionName",
    "ServiceCategory",
    "ServiceName",
    "ServiceSubcategory",
    "SkuId",
    "SubAccountId",
    "SubAccountName",
    "Tags",
];

/// The gateway's own columns, after the FOCUS ones; the `by` dimension's
/// column ([`by_column`]) goes right after `x_Model`.
const X_COLUMNS: &[&str] = &[
    "x_Model",
    "x_Requests",
    "x_InputTokens",
    "x_CacheReadTokens",
    "x_CacheWriteTokens",
    "x_OutputTokens",
    "x_ReasoningTokens",
    "x_CacheSavings",
    "x_ResponseCacheSavings",
    "x_UnpricedRequests",
    "x_RateCard",
];

const DAY_MS: i64 = 86_400_000;

/// `markup_percent` is held as an integer count of 1/10 000ths of a percent.
const PERCENT_SCALE: i64 = 10_000;

/// The largest markup accepted, in percent (a 10 001× price).
const MAX_MARKUP_PERCENT: i64 = 1_000_000;

// ---------------------------------------------------------------------------
// Rate cards
// ---------------------------------------------------------------------------

/// One `[[rate_cards]]` table as written in `tollgate.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateCard {
    pub name: String,
    /// Dimension = value pairs that must all match (`team`, `user`, `org`,
    /// `feature`, `env`, `model`, `provider`, `key`, or any tag name).
    /// Omitted or empty: the card applies to every row.
    #[serde(default)]
    pub when: BTreeMap<String, String>,
    /// A decimal string: `"15"`, `"-10"`, `"2.5"`.
    pub markup_percent: String,
}

/// What a card does to the cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adjustment {
    /// `billed = cost × (1 + percent ÷ 100)`; `percent_e4` is the percent
    /// × 10 000 (`"15"` → 150 000, `"-2.5"` → −25 000), always above −1 000 000.
    Markup { percent_e4: i64 },
}

/// A checked rate card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateCard {
    pub name: String,
    /// `(dimension, value)` pairs, all of which must match; sorted by
    /// dimension, dimension names lower-case. Empty: matches everything.
    pub when: Vec<(String, String)>,
    pub adjustment: Adjustment,
}

impl Adjustment {
    /// A markup from its decimal string: an optional sign, digits, at most 4
    /// decimals, above −100 and at most 1 000 000.
    pub fn parse_markup_percent(s: &str) -> Result<Adjustment, String> {
        let bad = |why: &str| format!("markup_percent {s:?} {why}");
        let t = s.trim();
        let (neg, body) = match t.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, t.strip_prefix('+').unwrap_or(t)),
        };
        let (int, frac) = body.split_once('.').unwrap_or((body, ""));
        if (int.is_empty() && frac.is_empty())
            || !int.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(bad("is not a decimal number of percent (like \"15\", \"-10\" or \"2.5\")"));
        }
        if frac.len() > 4 {
            return Err(bad("has more than 4 decimal places"));
        }
        if int.trim_start_matches('0').len() > 7 {
            return Err(bad(&format!("is too large (at most {MAX_MARKUP_PERCENT})")));
        }
        let whole: i64 = if int.is_empty() { 0 } else { int.parse().map_err(|_| bad("is not a number"))? };
        let mut fraction: i64 = 0;
        let mut unit = PERCENT_SCALE;
        for b in frac.bytes() {
            unit /= 10;
            fraction += i64::from(b - b'0') * unit;
        }
        let magnitude = whole * PERCENT_SCALE + fraction;
        let percent_e4 = if neg { -magnitude } else { magnitude };
        if percent_e4 <= -100 * PERCENT_SCALE {
            return Err(bad("must be above -100 (a discount of 100 % or more would bill nothing or less)"));
        }
        if percent_e4 > MAX_MARKUP_PERCENT * PERCENT_SCALE {
            return Err(bad(&format!("is too large (at most {MAX_MARKUP_PERCENT})")));
        }
        Ok(Adjustment::Markup { percent_e4 })
    }

    /// The adjusted amount, exact: `cost × (10⁶ + percent_e4) ÷ 10⁶` in i128
    /// on nano-dollars, rounded to the nearest nano-dollar, halves away from
    /// zero. Saturates at the ends of `Money`'s range.
    pub fn apply(self, cost: Money) -> Money {
        match self {
            Adjustment::Markup { percent_e4 } => {
                let denominator = 100 * i128::from(PERCENT_SCALE);
                let numerator = i128::from(cost.nanos()) * (denominator + i128::from(percent_e4));
                let nanos = div_round_half_away(numerator, denominator);
                let clamped = i64::try_from(nanos).unwrap_or(if nanos < 0 { i64::MIN } else { i64::MAX });
                Money::from_nanos(clamped)
            }
        }
    }
}

/// `n ÷ d` to the nearest integer, halves away from zero (`d > 0`).
fn div_round_half_away(n: i128, d: i128) -> i128 {
    let (q, r) = (n / d, n % d);
    if r.abs() * 2 >= d {
        q + n.signum()
    } else {
        q
    }
}

impl fmt::Display for Adjustment {
    /// `markup +15%`, `markup -2.5%`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Adjustment::Markup { percent_e4 } => {
                let sign = if *percent_e4 < 0 { "-" } else { "+" };
                let abs = percent_e4.unsigned_abs();
                let scale = PERCENT_SCALE.unsigned_abs();
                let (whole, frac) = (abs / scale, abs % scale);
                if frac == 0 {
                    write!(f, "markup {sign}{whole}%")
                } else {
                    let digits = format!("{frac:04}");
                    write!(f, "markup {sign}{whole}.{}%", digits.trim_end_matches('0'))
                }
            }
        }
    }
}

/// A dimension name as `group_by` accepts it.
fn valid_dimension(d: &str) -> bool {
    !d.is_empty() && d.len() <= 64 && d.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b))
}

impl RateCard {
    /// Checks one card: a name, valid `when` dimensions (lower-cased, like
    /// tag names) with non-empty values, and a valid `markup_percent`.
    pub fn from_raw(raw: RawRateCard) -> Result<RateCard, String> {
        let name = raw.name.trim().to_string();
        if name.is_empty() {
            return Err("a rate card needs a non-empty name".into());
        }
        let mut when: Vec<(String, String)> = Vec::with_capacity(raw.when.len());
        for (k, v) in raw.when {
            let (dim, value) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
            if !valid_dimension(&dim) {
                return Err(format!(
                    "rate card {name:?}: {k:?} in `when` is not a dimension or tag name \
                     (letters, digits, `_-.:`; like team, model or customer)"
                ));
            }
            if value.is_empty() {
                return Err(format!("rate card {name:?}: `when` {dim} needs a non-empty value"));
            }
            if when.iter().any(|(d, _)| *d == dim) {
                return Err(format!("rate card {name:?}: `when` names {dim} twice"));
            }
            when.push((dim, value));
        }
        when.sort();
        let adjustment =
            Adjustment::parse_markup_percent(&raw.markup_percent).map_err(|e| format!("rate card {name:?}: {e}"))?;
        Ok(RateCard { name, when, adjustment })
    }

    /// True when every `when` pair matches the row's dimension values
    /// (`dims(name)`: `None` when the row has no value for it).
    pub fn matches<'d>(&self, dims: impl Fn(&str) -> Option<&'d str>) -> bool {
        self.when.iter().all(|(d, v)| dims(d.as_str()) == Some(v.as_str()))
    }

    /// What is charged back for `cost` (see [`Adjustment::apply`]).
    pub fn billed(&self, cost: Money) -> Money {
        self.adjustment.apply(cost)
    }
}

/// Checks every `[[rate_cards]]` table, in file order; names must be unique.
pub fn rate_cards_from_raw(raw: Vec<RawRateCard>) -> Result<Vec<RateCard>, String> {
    let mut cards: Vec<RateCard> = Vec::with_capacity(raw.len());
    for r in raw {
        let card = RateCard::from_raw(r)?;
        if cards.iter().any(|c| c.name == card.name) {
            return Err(format!("two rate cards are named {:?}", card.name));
        }
        cards.push(card);
    }
    Ok(cards)
}

/// The card for a row: of the matching cards, the one with the most `when`
/// entries; a tie goes to the first in file order. `dims(name)` is the row's
/// value of a dimension (`None`: not set, or not grouped).
pub fn rate_card_for<'a, 'd>(cards: &'a [RateCard], dims: impl Fn(&str) -> Option<&'d str>) -> Option<&'a RateCard> {
    let mut best: Option<&'a RateCard> = None;
    for card in cards {
        if !card.matches(&dims) {
            continue;
        }
        let better = match best {
            Some(b) => card.when.len() > b.when.len(),
            None => true,
        };
        if better {
            best = Some(card);
        }
    }
    best
}

/// Every dimension any card names, sorted and deduplicated: the spend query
/// must group by them for [`rate_card_for`] to see them.
pub fn dims_needed(cards: &[RateCard]) -> Vec<String> {
    let set: BTreeSet<&str> = cards.iter().flat_map(|c| c.when.iter().map(|(d, _)| d.as_str())).collect();
    set.into_iter().map(str::to_owned).collect()
}

/// The `group_by` of the spend query behind a FOCUS export: `provider`,
/// `model`, `by` (if any), then [`dims_needed`], without repeats. (The store
/// takes at most `MAX_GROUP_BY` dimensions: the caller checks the length.)
pub fn export_group_by(by: Option<&str>, cards: &[RateCard]) -> Vec<String> {
    let mut out = vec!["provider".to_string(), "model".to_string()];
    for d in by.map(str::to_owned).into_iter().chain(dims_needed(cards)) {
        if !out.contains(&d) {
            out.push(d);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// FOCUS rows
// ---------------------------------------------------------------------------

/// What [`focus_rows`] works from.
#[derive(Debug, Clone, Copy)]
pub struct ExportInput<'a> {
    /// The dimensions of each row's `dims`, in order (see [`export_group_by`]).
    pub group_by: &'a [String],
    /// Spend rows in daily buckets: `bucket_ms` is the UTC day start (any
    /// other time is floored to its day; a row without a bucket counts as
    /// 1970-01-01).
    pub rows: &'a [SpendRow],
    /// The output dimension (`"team"`, `"customer"`…), which must be in
    /// `group_by` (if it is not, every row's value is unset). `None`: one
    /// row per day × provider × model.
    pub by: Option<&'a str>,
    pub cards: &'a [RateCard],
}

/// One FOCUS row: a day's usage of one model of one provider by one value of
/// the `by` dimension. Money in nano-dollars; see the module docs for what
/// each cost means.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FocusRow {
    /// `ChargePeriodStart`, Unix ms (a UTC midnight); the period is that day.
    pub day_ms: i64,
    pub provider: Option<String>,
    pub model: Option<String>,
    /// The export's output dimension (the same in every row of an export).
    pub by: Option<String>,
    /// This row's value of `by` (`None`: not set).
    pub by_value: Option<String>,
    pub list_cost: Money,
    pub effective_cost: Money,
    pub billed_cost: Money,
    /// Provider prompt-cache savings.
    pub cache_savings: Money,
    /// What the gateway's response cache avoided paying.
    pub response_cache_savings: Money,
    pub requests: u64,
    /// All input tokens, cache reads and writes included.
    pub input_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    /// All output tokens, reasoning included.
    pub output_tokens: u64,
    pub reasoning_tokens: u64,
    pub unpriced_requests: u64,
    /// The names of the rate cards applied to any part of the row, sorted.
    pub rate_cards: Vec<String>,
}

impl FocusRow {
    /// `ConsumedQuantity` and `PricingQuantity`: input plus output tokens.
    pub fn tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }
}

/// A row's value of a dimension by name.
fn dim_value<'r>(group_by: &[String], dims: &'r [Option<String>], d: &str) -> Option<&'r str> {
    group_by.iter().position(|g| g.as_str() == d).and_then(|i| dims.get(i)).and_then(|v| v.as_deref())
}

#[derive(Default)]
struct Totals {
    list: Money,
    effective: Money,
    billed: Money,
    cache_savings: Money,
    response_cache_savings: Money,
    requests: u64,
    input_tokens: u64,
    cache_read_tokens: u64,
    cache_write_tokens: u64,
    output_tokens: u64,
    reasoning_tokens: u64,
    unpriced_requests: u64,
    cards: BTreeSet<String>,
}

/// Day (ms), provider, model, `by` value: one output row.
type GroupKey = (i64, Option<String>, Option<String>, Option<String>);

/// Prices each fine row with its own rate card, then adds them up to one
/// row per day × provider × model × `by` value, sorted by day, provider,
/// model and `by` value (unset values first).
pub fn focus_rows(input: ExportInput<'_>) -> Vec<FocusRow> {
    let by_at = input.by.and_then(|b| input.group_by.iter().position(|g| g.as_str() == b));
    let mut groups: BTreeMap<GroupKey, Totals> = BTreeMap::new();
    for row in input.rows {
        let card = rate_card_for(input.cards, |d| dim_value(input.group_by, &row.dims, d));
        let day = row.bucket_ms.unwrap_or(0).div_euclid(DAY_MS) * DAY_MS;
        let key = (
            day,
            dim_value(input.group_by, &row.dims, "provider").map(str::to_owned),
            dim_value(input.group_by, &row.dims, "model").map(str::to_owned),
            by_at.and_then(|i| row.dims.get(i)).and_then(Clone::clone),
        );
        let t = groups.entry(key).or_default();
        t.effective += row.cost;
        t.list += row.cost + row.cache_savings + row.response_cache_savings;
        t.billed += match card {
            Some(c) => c.billed(row.cost),
            None => row.cost,
        };
        t.cache_savings += row.cache_savings;
        t.response_cache_savings += row.response_cache_savings;
        t.requests = t.requests.saturating_add(row.requests);
        t.input_tokens = t.input_tokens.saturating_add(row.input_tokens);
        t.cache_read_tokens = t.cache_read_tokens.saturating_add(row.cache_read_tokens);
        t.cache_write_tokens = t.cache_write_tokens.saturating_add(row.cache_write_tokens);
        t.output_tokens = t.output_tokens.saturating_add(row.output_tokens);
        t.reasoning_tokens = t.reasoning_tokens.saturating_add(row.reasoning_tokens);
        t.unpriced_requests = t.unpriced_requests.saturating_add(row.unpriced_requests);
        if let Some(c) = card {
            t.cards.insert(c.name.clone());
        }
    }
    groups
        .into_iter()
        .map(|((day_ms, provider, model, by_value), t)| FocusRow {
            day_ms,
            provider,
            model,
            by: input.by.map(str::to_owned),
            by_value,
            list_cost: t.list,
            effective_cost: t.effective,
            billed_cost: t.billed,
            cache_savings: t.cache_savings,
            response_cache_savings: t.response_cache_savings,
            requests: t.requests,
            input_tokens: t.input_tokens,
            cache_read_tokens: t.cache_read_tokens,
            cache_write_tokens: t.cache_write_tokens,
            output_tokens: t.output_tokens,
            reasoning_tokens: t.reasoning_tokens,
            unpriced_requests: t.unpriced_requests,
            rate_cards: t.cards.into_iter().collect(),
        })
        .collect()
}

/// `(ListCost, EffectiveCost, BilledCost)` over all rows.
pub fn totals(rows: &[FocusRow]) -> (Money, Money, Money) {
    (
        rows.iter().map(|r| r.list_cost).sum(),
        rows.iter().map(|r| r.effective_cost).sum(),
        rows.iter().map(|r| r.billed_cost).sum(),
    )
}

// ---------------------------------------------------------------------------
// CSV
// ---------------------------------------------------------------------------

/// `cost_center` → `CostCenter`: ASCII letters and digits only.
fn pascal(d: &str) -> String {
    let mut out = String::new();
    for part in d.split(|c: char| !c.is_ascii_alphanumeric()) {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            out.push(first.to_ascii_uppercase());
            out.extend(chars);
        }
    }
    out
}

/// The column of the `by` dimension: `x_` and its name in Pascal case
/// (`team` → `x_Team`), or `x_By…` where that would clash with another `x_`
/// column (`model` → `x_ByModel`).
pub fn by_column(by: &str) -> String {
    let p = pascal(by);
    let clash =
        p.is_empty() || X_COLUMNS.iter().any(|c| c.strip_prefix("x_").is_some_and(|n| n.eq_ignore_ascii_case(&p)));
    if clash {
        format!("x_By{p}")
    } else {
        format!("x_{p}")
    }
}

/// The header of an export by `by`.
pub fn focus_header(by: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = FOCUS_COLUMNS.iter().map(|c| c.to_string()).collect();
    for c in X_COLUMNS {
        out.push(c.to_string());
        if *c == "x_Model" {
            if let Some(b) = by {
                out.push(by_column(b));
            }
        }
    }
    out
}

/// One field, RFC 4180: quoted when it holds a comma, a quote, CR or LF,
/// with its quotes doubled.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// A text field from the ledger or the configuration: a leading `=`, `+`,
/// `-`, `@`, tab or CR is what spreadsheets run as a formula, so such a
/// value gets a leading `'` (as the spend report's CSV does), then
/// [`csv_field`].
fn text(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        csv_field(&format!("'{s}"))
    } else {
        csv_field(s)
    }
}

/// `YYYY-MM-DDTHH:mm:ssZ` (UTC).
fn iso_utc(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// The calendar month holding `ms`: its first instant and the next month's.
fn billing_period(ms: i64) -> (String, String) {
    use chrono::Datelike;
    let d = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms).unwrap_or_default().date_naive();
    let (y, m) = (d.year(), d.month());
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    (format!("{y:04}-{m:02}-01T00:00:00Z"), format!("{ny:04}-{nm:02}-01T00:00:00Z"))
}

/// A row's fields, escaped, in [`focus_header`] order.
fn row_fields(r: &FocusRow) -> Vec<String> {
    let provider = r.provider.as_deref().unwrap_or(UNKNOWN);
    let model = r.model.as_deref().unwrap_or(UNKNOWN);
    let by_value = r.by_value.as_deref().map(text).unwrap_or_default();
    let tags = match (&r.by, &r.by_value) {
        (Some(b), Some(v)) => {
            let mut m = serde_json::Map::new();
            m.insert(b.clone(), serde_json::Value::String(v.clone()));
            text(&serde_json::Value::Object(m).to_string())
        }
        _ => String::new(),
    };
    let (period_start, period_end) = billing_period(r.day_ms);
    let tokens = r.tokens().to_string();
    let effective = r.effective_cost.to_string();
    let mut out = vec![
        r.billed_cost.to_string(),                       // BilledCost
        text(BILLING_ACCOUNT),                           // BillingAccountId
        text(BILLING_ACCOUNT),                           // BillingAccountName
        "USD".to_string(),                               // BillingCurrency
        period_end,                                      // BillingPeriodEnd
        period_start,                                    // BillingPeriodStart
        "Usage".to_string(),                             // ChargeCategory
        String::new(),                                   // ChargeClass: null, not a correction
        text(&format!("{model} tokens via {provider}")), // ChargeDescription
        "Usage-Based".to_string(),                       // ChargeFrequency
        iso_utc(r.day_ms.saturating_add(DAY_MS)),        // ChargePeriodEnd
        iso_utc(r.day_ms),                               // ChargePeriodStart
        tokens.clone(),                                  // ConsumedQuantity
        "Tokens".to_string(),                            // ConsumedUnit
        effective.clone(),                               // ContractedCost
        effective,                                       // EffectiveCost
        text(BILLING_ACCOUNT),                           // InvoiceIssuerName
        r.list_cost.to_string(),                         // ListCost
        tokens,                                          // PricingQuantity
        "Tokens".to_string(),                            // PricingUnit
        text(provider),                                  // ProviderName
        text(provider),                                  // PublisherName
        String::new(),                                   // RegionId: null
        String::new(),                                   // RegionName: null
        "AI and Machine Learning".to_string(),           // ServiceCategory
        text(provider),                                  // ServiceName
        "Generative AI".to_string(),                     // ServiceSubcategory
        text(&format!("{provider}/{model}")),            // SkuId
        by_value.clone(),                                // SubAccountId
        by_value.clone(),                                // SubAccountName
        tags,                                            // Tags
    ];
    out.push(r.model.as_deref().map(text).unwrap_or_default()); // x_Model
    if r.by.is_some() {
        out.push(by_value); // x_<By>
    }
    out.extend([
        r.requests.to_string(),
        r.input_tokens.to_string(),
        r.cache_read_tokens.to_string(),
        r.cache_write_tokens.to_string(),
        r.output_tokens.to_string(),
        r.reasoning_tokens.to_string(),
        r.cache_savings.to_string(),
        r.response_cache_savings.to_string(),
        r.unpriced_requests.to_string(),
        text(&r.rate_cards.join("; ")),
    ]);
    out
}

fn write_line(out: &mut impl io::Write, fields: &[String]) -> io::Result<()> {
    out.write_all(fields.join(",").as_bytes())?;
    out.write_all(b"\r\n")
}

/// The rows as CSV (RFC 4180, CRLF line ends): the [`focus_header`] line,
/// then one line per row. The rows must come from one [`focus_rows`] call
/// (one `by` dimension), or this fails with `InvalidInput`; with no rows,
/// the header has no `by` column.
pub fn write_focus_csv(rows: &[FocusRow], out: &mut impl io::Write) -> io::Result<()> {
    let by = rows.first().and_then(|r| r.by.as_deref());
    if rows.iter().any(|r| r.by.as_deref() != by) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "FOCUS rows of different exports (their `by` differ)"));
    }
    let header: Vec<String> = focus_header(by).iter().map(|h| csv_field(h)).collect();
    write_line(&mut *out, &header)?;
    for r in rows {
        write_line(&mut *out, &row_fields(r))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(name: &str, when: &[(&str, &str)], percent: &str) -> RateCard {
        RateCard::from_raw(RawRateCard {
            name: name.into(),
            when: when.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            markup_percent: percent.into(),
        })
        .unwrap()
    }

    fn markup(percent: &str) -> Adjustment {
        Adjustment::parse_markup_percent(percent).unwrap()
    }

    #[test]
    fn the_config_form_parses_and_unknown_keys_are_errors() {
        #[derive(Deserialize)]
        struct File {
            rate_cards: Vec<RawRateCard>,
        }
        let f: File = toml::from_str(
            r#"
            [[rate_cards]]
            name = "growth markup"
            when = { team = "growth" }
            markup_percent = "15"

            [[rate_cards]]
            name = "acme discount"
            when = { customer = "acme", model = "gpt-4o" }
            markup_percent = "-10"

            [[rate_cards]]
            name = "platform fee"
            markup_percent = "2.5"
            "#,
        )
        .unwrap();
        let cards = rate_cards_from_raw(f.rate_cards).unwrap();
        assert_eq!(cards[0].name, "growth markup");
        assert_eq!(cards[0].when, vec![("team".to_string(), "growth".to_string())]);
        assert_eq!(cards[0].adjustment, Adjustment::Markup { percent_e4: 150_000 });
        assert_eq!(
            cards[1].when,
            vec![("customer".to_string(), "acme".to_string()), ("model".to_string(), "gpt-4o".to_string())]
        );
        assert_eq!(cards[1].adjustment, Adjustment::Markup { percent_e4: -100_000 });
        assert!(cards[2].when.is_empty());
        assert_eq!(cards[2].adjustment.to_string(), "markup +2.5%");

        let unknown = toml::from_str::<File>("[[rate_cards]]\nname = \"x\"\nmarkup = \"15\"\n");
        assert!(unknown.is_err());
        let number = toml::from_str::<File>("[[rate_cards]]\nname = \"x\"\nmarkup_percent = 15\n");
        assert!(number.is_err(), "the percent is a decimal string, never a float");
    }

    #[test]
    fn percents_parse_exactly_and_bad_ones_say_why() {
        // percent × 10 000, written out by hand
        for (s, e4) in [
            ("15", 150_000),
            ("-10", -100_000),
            ("+2.5", 25_000),
            (".5", 5_000),
            ("0", 0),
            (" 7.25 ", 72_500),
            ("0.0001", 1),
            ("-99.9999", -999_999),
            ("1000000", 10_000_000_000),
        ] {
            assert_eq!(markup(s), Adjustment::Markup { percent_e4: e4 }, "{s}");
        }
        for (s, why) in [
            ("", "not a decimal number"),
            ("abc", "not a decimal number"),
            ("1e2", "not a decimal number"),
            ("15%", "not a decimal number"),
            ("--5", "not a decimal number"),
            ("1.2.3", "not a decimal number"),
            ("1.00001", "more than 4 decimal places"),
            ("-100", "above -100"),
            ("-150", "above -100"),
            ("1000000.0001", "too large"),
            ("99999999999", "too large"),
        ] {
            let e = Adjustment::parse_markup_percent(s).unwrap_err();
            assert!(e.contains(why), "{s:?}: {e}");
        }
    }

    #[test]
    fn bad_cards_are_rejected_with_their_name() {
        let raw = |name: &str, when: &[(&str, &str)], p: &str| RawRateCard {
            name: name.into(),
            when: when.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            markup_percent: p.into(),
        };
        assert!(RateCard::from_raw(raw(" ", &[], "1")).unwrap_err().contains("name"));
        let e = RateCard::from_raw(raw("c", &[("te am", "x")], "1")).unwrap_err();
        assert!(e.contains("\"c\"") && e.contains("not a dimension"), "{e}");
        let e = RateCard::from_raw(raw("c", &[("team", " ")], "1")).unwrap_err();
        assert!(e.contains("non-empty value"), "{e}");
        let e = RateCard::from_raw(raw("c", &[("team", "a"), ("Team", "b")], "1")).unwrap_err();
        assert!(e.contains("twice"), "{e}");
        let e = RateCard::from_raw(raw("c", &[], "x")).unwrap_err();
        assert!(e.contains("rate card \"c\": markup_percent \"x\""), "{e}");
        let e = rate_cards_from_raw(vec![raw("c", &[], "1"), raw("c", &[("team", "a")], "2")]).unwrap_err();
        assert!(e.contains("two rate cards"), "{e}");
        // Dimension names are lower-cased like tag names.
        let c = RateCard::from_raw(raw("c", &[("Customer", " acme ")], "1")).unwrap();
        assert_eq!(c.when, vec![("customer".to_string(), "acme".to_string())]);
    }

    #[test]
    fn the_most_specific_matching_card_wins_and_ties_go_to_the_first() {
        let cards = vec![
            card("everyone", &[], "1"),
            card("growth", &[("team", "growth")], "15"),
            card("gpt-4o", &[("model", "gpt-4o")], "20"),
            card("growth on gpt-4o", &[("team", "growth"), ("model", "gpt-4o")], "30"),
        ];
        let name = |dims: &[(&'static str, &'static str)]| {
            rate_card_for(&cards, |d| dims.iter().find(|(k, _)| *k == d).map(|(_, v)| *v)).map(|c| c.name.clone())
        };
        // Two entries beat one, one beats none.
        assert_eq!(name(&[("team", "growth"), ("model", "gpt-4o")]).as_deref(), Some("growth on gpt-4o"));
        assert_eq!(name(&[("team", "growth"), ("model", "o3")]).as_deref(), Some("growth"));
        assert_eq!(name(&[("team", "search"), ("model", "gpt-4o")]).as_deref(), Some("gpt-4o"));
        assert_eq!(name(&[("team", "search")]).as_deref(), Some("everyone"));
        // A dimension the row does not have never matches.
        assert_eq!(name(&[("model", "o3")]).as_deref(), Some("everyone"));
        // Ties (one entry each: growth and gpt-4o both match): the first in file order.
        let tied = vec![card("gpt-4o", &[("model", "gpt-4o")], "20"), card("growth", &[("team", "growth")], "15")];
        let got = rate_card_for(&tied, |d| match d {
            "team" => Some("growth"),
            "model" => Some("gpt-4o"),
            _ => None,
        });
        assert_eq!(got.map(|c| c.name.as_str()), Some("gpt-4o"));
        // No card at all.
        assert!(rate_card_for(&tied, |_| None).is_none());
        assert!(rate_card_for(&[], |_| Some("x")).is_none());
    }

    #[test]
    fn billed_is_exact_and_halves_round_away_from_zero() {
        let plus_50 = markup("50");
        // 1 × 1.5 = 1.5 → 2; 3 × 1.5 = 4.5 → 5; −3 × 1.5 = −4.5 → −5; 2 × 1.5 = 3 exactly
        assert_eq!(plus_50.apply(Money::from_nanos(1)).nanos(), 2);
        assert_eq!(plus_50.apply(Money::from_nanos(3)).nanos(), 5);
        assert_eq!(plus_50.apply(Money::from_nanos(-3)).nanos(), -5);
        assert_eq!(plus_50.apply(Money::from_nanos(2)).nanos(), 3);
        // +15 %: 123 456 789 × 1.15 = 141 975 307.35 → 141 975 307 (down)
        assert_eq!(markup("15").apply(Money::from_nanos(123_456_789)).nanos(), 141_975_307);
        // +15 %: 1 000 000 010 × 1.15 = 1 150 000 011.5 → 1 150 000 012 (the half goes up)
        assert_eq!(markup("15").apply(Money::from_nanos(1_000_000_010)).nanos(), 1_150_000_012);
        // +15 %: 10 × 1.15 = 11.5 → 12; 30 × 1.15 = 34.5 → 35
        assert_eq!(markup("15").apply(Money::from_nanos(10)).nanos(), 12);
        assert_eq!(markup("15").apply(Money::from_nanos(30)).nanos(), 35);
        // A 0.0001 % markup on $10: 10 000 000 000 × 0.000001 = 10 000 more nanos.
        assert_eq!(markup("0.0001").apply(Money::from_usd(10)).nanos(), 10_000_010_000);
        assert_eq!(markup("0").apply(Money::from_nanos(777)).nanos(), 777);
        // Saturates instead of overflowing.
        assert_eq!(markup("100").apply(Money::from_nanos(i64::MAX)).nanos(), i64::MAX);
    }

    #[test]
    fn a_negative_percent_is_a_discount() {
        let minus_10 = markup("-10");
        // $1 × 0.9 = $0.90
        assert_eq!(minus_10.apply(Money::from_usd(1)).to_string(), "0.900000000");
        // 5 × 0.9 = 4.5 → 5; 15 × 0.9 = 13.5 → 14; 11 × 0.9 = 9.9 → 10
        assert_eq!(minus_10.apply(Money::from_nanos(5)).nanos(), 5);
        assert_eq!(minus_10.apply(Money::from_nanos(15)).nanos(), 14);
        assert_eq!(minus_10.apply(Money::from_nanos(11)).nanos(), 10);
        // −99.9999 % leaves a millionth: 1 000 000 × 0.000001 = 1
        assert_eq!(markup("-99.9999").apply(Money::from_nanos(1_000_000)).nanos(), 1);
        assert_eq!(minus_10.to_string(), "markup -10%");
        let c = card("acme", &[("customer", "acme")], "-12.5");
        // $2 × 0.875 = $1.75
        assert_eq!(c.billed(Money::from_usd(2)).to_string(), "1.750000000");
    }

    #[test]
    fn dims_needed_lists_every_named_dimension_once_sorted() {
        let cards = vec![
            card("a", &[("team", "growth")], "1"),
            card("b", &[("model", "gpt-4o"), ("customer", "acme")], "1"),
            card("c", &[("team", "search"), ("customer", "beta")], "1"),
            card("d", &[], "1"),
        ];
        assert_eq!(dims_needed(&cards), vec!["customer", "model", "team"]);
        assert!(dims_needed(&[]).is_empty());
        assert_eq!(export_group_by(Some("team"), &cards), vec!["provider", "model", "team", "customer"]);
        assert_eq!(export_group_by(None, &[]), vec!["provider", "model"]);
    }

    const DAY_A: i64 = 1_795_996_800_000; // 2026-11-30T00:00:00Z
    const DAY_B: i64 = 1_796_083_200_000; // 2026-12-01T00:00:00Z

    /// group_by: provider, model, feature (the output), team (the card's).
    fn fine(day: i64, dims: [Option<&str>; 4], cost: i64) -> SpendRow {
        SpendRow {
            dims: dims.iter().map(|d| d.map(String::from)).collect(),
            bucket_ms: Some(day),
            requests: 1,
            input_tokens: 0,
            cache_read_tokens: 0,
            cache_write_tokens: 0,
            output_tokens: 0,
            reasoning_tokens: 0,
            cost: Money::from_nanos(cost),
            cache_savings: Money::ZERO,
            estimated_requests: 0,
            unpriced_requests: 0,
            error_requests: 0,
            attempts: 1,
            response_cache_savings: Money::ZERO,
            tool_cost: Money::ZERO,
            web_search_requests: 0,
        }
    }

    fn group_by() -> Vec<String> {
        ["provider", "model", "feature", "team"].map(String::from).to_vec()
    }

    /// Five fine rows over two days, two models, two teams (plus one without).
    fn spend() -> Vec<SpendRow> {
        let (o, g, a, c) = (Some("openai"), Some("gpt-4o"), Some("anthropic"), Some("claude-sonnet-4"));
        vec![
            // Day B first: the output is sorted whatever the input order.
            SpendRow { requests: 10, ..fine(DAY_B, [o, g, None, Some("growth")], 2_000_000_000) },
            fine(DAY_B, [o, g, None, None], 7),
            SpendRow {
                requests: 3,
                input_tokens: 1_000,
                output_tokens: 200,
                cache_savings: Money::from_nanos(10_000_000),
                ..fine(DAY_A, [o, g, Some("chat"), Some("growth")], 123_456_789)
            },
            SpendRow {
                requests: 2,
                input_tokens: 500,
                output_tokens: 100,
                response_cache_savings: Money::from_nanos(50_000_000),
                ..fine(DAY_A, [o, g, Some("chat"), Some("platform")], 200_000_001)
            },
            SpendRow {
                requests: 4,
                input_tokens: 4_000,
                cache_read_tokens: 3_000,
                output_tokens: 400,
                cache_savings: Money::from_nanos(999_999_990),
                ..fine(DAY_A, [a, c, Some("search"), Some("growth")], 1_000_000_010)
            },
        ]
    }

    #[test]
    fn focus_rows_price_each_fine_row_then_add_up_per_day_model_and_feature() {
        let cards = vec![card("growth markup", &[("team", "growth")], "15")];
        let (gb, rows) = (group_by(), spend());
        let out = focus_rows(ExportInput { group_by: &gb, rows: &rows, by: Some("feature"), cards: &cards });
        assert_eq!(out.len(), 3);

        // 1. Day A, anthropic, claude-sonnet-4, search: one growth row.
        //    effective = 1.000000010
        //    list      = 1 000 000 010 + 999 999 990 = 2 000 000 000 → 2.000000000
        //    billed    = 1 000 000 010 × 1.15 = 1 150 000 011.5 → 1 150 000 012 → 1.150000012
        let r = &out[0];
        assert_eq!(
            (r.day_ms, r.provider.as_deref(), r.model.as_deref()),
            (DAY_A, Some("anthropic"), Some("claude-sonnet-4"))
        );
        assert_eq!((r.by.as_deref(), r.by_value.as_deref()), (Some("feature"), Some("search")));
        assert_eq!(r.effective_cost.to_string(), "1.000000010");
        assert_eq!(r.list_cost.to_string(), "2.000000000");
        assert_eq!(r.billed_cost.to_string(), "1.150000012");
        assert_eq!(r.rate_cards, vec!["growth markup"]);

        // 2. Day A, openai, gpt-4o, chat: a growth row and a platform row.
        //    effective = 123 456 789 + 200 000 001 = 323 456 790 → 0.323456790
        //    list      = (123 456 789 + 10 000 000) + (200 000 001 + 50 000 000) = 383 456 790 → 0.383456790
        //    billed    = 141 975 307 (123 456 789 × 1.15 = 141 975 307.35) + 200 000 001 (no card)
        //              = 341 975 308 → 0.341975308
        let r = &out[1];
        assert_eq!((r.day_ms, r.provider.as_deref(), r.model.as_deref()), (DAY_A, Some("openai"), Some("gpt-4o")));
        assert_eq!(r.by_value.as_deref(), Some("chat"));
        assert_eq!(r.effective_cost.to_string(), "0.323456790");
        assert_eq!(r.list_cost.to_string(), "0.383456790");
        assert_eq!(r.billed_cost.to_string(), "0.341975308");
        assert_eq!((r.requests, r.input_tokens, r.output_tokens, r.tokens()), (5, 1_500, 300, 1_800));

        // 3. Day B, openai, gpt-4o, no feature: a growth row and a row with no team.
        //    effective = 2 000 000 000 + 7 = 2 000 000 007 → 2.000000007 (= list: no cache savings)
        //    billed    = 2 300 000 000 (× 1.15) + 7 = 2 300 000 007 → 2.300000007
        let r = &out[2];
        assert_eq!((r.day_ms, r.provider.as_deref(), r.model.as_deref()), (DAY_B, Some("openai"), Some("gpt-4o")));
        assert_eq!(r.by_value, None);
        assert_eq!(r.effective_cost.to_string(), "2.000000007");
        assert_eq!(r.list_cost.to_string(), "2.000000007");
        assert_eq!(r.billed_cost.to_string(), "2.300000007");
        assert_eq!(r.requests, 11);

        // Totals: effective 1 000 000 010 + 323 456 790 + 2 000 000 007 = 3 323 456 807, which is the
        // input rows' cost (123 456 789 + 200 000 001 + 1 000 000 010 + 2 000 000 000 + 7);
        // list 2 000 000 000 + 383 456 790 + 2 000 000 007 = 4 383 456 797;
        // billed 1 150 000 012 + 341 975 308 + 2 300 000 007 = 3 791 975 327.
        let (list, effective, billed) = totals(&out);
        assert_eq!(list.to_string(), "4.383456797");
        assert_eq!(effective.to_string(), "3.323456807");
        assert_eq!(billed.to_string(), "3.791975327");
        assert_eq!(effective, rows.iter().map(|r| r.cost).sum::<Money>());
    }

    #[test]
    fn without_cards_or_by_billed_is_the_cost_and_rows_are_per_day_and_model() {
        let (gb, rows) = (group_by(), spend());
        let out = focus_rows(ExportInput { group_by: &gb, rows: &rows, by: None, cards: &[] });
        // Day A: anthropic/claude-sonnet-4, openai/gpt-4o; day B: openai/gpt-4o.
        assert_eq!(out.len(), 3);
        for r in &out {
            assert_eq!(r.billed_cost, r.effective_cost);
            assert!(r.by.is_none() && r.by_value.is_none() && r.rate_cards.is_empty());
        }
        // 123 456 789 + 200 000 001 = 323 456 790
        assert_eq!(out[1].effective_cost.nanos(), 323_456_790);
    }

    #[test]
    fn the_csv_has_every_mandatory_column_and_the_hand_written_rows() {
        let cards = vec![card("growth markup", &[("team", "growth")], "15")];
        let (gb, rows) = (group_by(), spend());
        let out = focus_rows(ExportInput { group_by: &gb, rows: &rows, by: Some("feature"), cards: &cards });
        let mut buf = Vec::new();
        write_focus_csv(&out, &mut buf).unwrap();
        let csv = String::from_utf8(buf).unwrap();
        let lines: Vec<&str> = csv.split("\r\n").collect();
        assert_eq!(lines.len(), 5, "header, 3 rows, and the empty string after the last CRLF");
        assert_eq!(lines[4], "");

        let header: Vec<&str> = lines[0].split(',').collect();
        // FOCUS 1.1's mandatory columns, written out by hand.
        for col in [
            "BilledCost",
            "BillingAccountId",
            "BillingAccountName",
            "BillingCurrency",
            "BillingPeriodEnd",
            "BillingPeriodStart",
            "ChargeCategory",
            "ChargeClass",
            "ChargeDescription",
            "ChargePeriodEnd",
            "ChargePeriodStart",
            "ContractedCost",
            "EffectiveCost",
            "InvoiceIssuerName",
            "ListCost",
            "PricingQuantity",
            "PricingUnit",
            "ProviderName",
            "PublisherName",
            "ServiceCategory",
            "ServiceName",
        ] {
            assert!(header.contains(&col), "no {col} in {}", lines[0]);
        }
        // Every column not defined by FOCUS is prefixed x_, after the FOCUS ones.
        let first_x = header.iter().position(|h| h.starts_with("x_")).unwrap();
        assert!(header[first_x..].iter().all(|h| h.starts_with("x_")));
        assert!(header[..first_x].iter().all(|h| FOCUS_COLUMNS.contains(h)));
        assert!(header.contains(&"x_Feature") && header.contains(&"x_RateCard"));

        assert_eq!(
            lines[1],
            "1.150000012,tollgate,tollgate,USD,2026-12-01T00:00:00Z,2026-11-01T00:00:00Z,Usage,,\
             claude-sonnet-4 tokens via anthropic,Usage-Based,2026-12-01T00:00:00Z,2026-11-30T00:00:00Z,\
             4400,Tokens,1.000000010,1.000000010,tollgate,2.000000000,4400,Tokens,anthropic,anthropic,,,\
             AI and Machine Learning,anthropic,Generative AI,anthropic/claude-sonnet-4,search,search,\
             \"{\"\"feature\"\":\"\"search\"\"}\",\
             claude-sonnet-4,search,4,4000,3000,0,400,0,0.999999990,0.000000000,0,growth markup"
        );
        // Day B is in December: the billing period runs to 2027-01-01; the unset feature is empty.
        assert_eq!(
            lines[3],
            "2.300000007,tollgate,tollgate,USD,2027-01-01T00:00:00Z,2026-12-01T00:00:00Z,Usage,,\
             gpt-4o tokens via openai,Usage-Based,2026-12-02T00:00:00Z,2026-12-01T00:00:00Z,\
             0,Tokens,2.000000007,2.000000007,tollgate,2.000000007,0,Tokens,openai,openai,,,\
             AI and Machine Learning,openai,Generative AI,openai/gpt-4o,,,,\
             gpt-4o,,11,0,0,0,0,0,0.000000000,0.000000000,0,growth markup"
        );
        for line in &lines[1..4] {
            // No field here holds a comma, so the commas count the fields.
            assert_eq!(line.split(',').count(), header.len(), "{line}");
        }
    }

    #[test]
    fn csv_fields_are_quoted_per_rfc_4180() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("Acme, \"West\""), "\"Acme, \"\"West\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_field("cr\r"), "\"cr\r\"");
        assert_eq!(csv_field(""), "");
        // Text from the ledger cannot start a spreadsheet formula.
        assert_eq!(text("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(text("-ops"), "'-ops");

        let gb: Vec<String> = ["provider", "model", "customer"].map(String::from).to_vec();
        let rows = vec![fine(DAY_A, [Some("openai"), Some("gpt-4o"), Some("Acme, \"West\""), None], 5)];
        let out = focus_rows(ExportInput { group_by: &gb, rows: &rows, by: Some("customer"), cards: &[] });
        let mut buf = Vec::new();
        write_focus_csv(&out, &mut buf).unwrap();
        let csv = String::from_utf8(buf).unwrap();
        // SubAccountId, SubAccountName, then Tags: {"customer":"Acme, \"West\""} with its quotes doubled.
        assert!(
            csv.contains(
                ",\"Acme, \"\"West\"\"\",\"Acme, \"\"West\"\"\",\"{\"\"customer\"\":\"\"Acme, \\\"\"West\\\"\"\"\"}\","
            ),
            "{csv}"
        );
        assert!(csv.contains(",x_Customer,"));
    }

    #[test]
    fn by_columns_are_pascal_case_and_never_clash() {
        assert_eq!(by_column("team"), "x_Team");
        assert_eq!(by_column("cost_center"), "x_CostCenter");
        assert_eq!(by_column("k8s.namespace"), "x_K8sNamespace");
        assert_eq!(by_column("model"), "x_ByModel");
        assert_eq!(by_column("requests"), "x_ByRequests");
        assert_eq!(by_column("--"), "x_By");
        assert_eq!(focus_header(None).len(), FOCUS_COLUMNS.len() + X_COLUMNS.len());
        assert_eq!(focus_header(Some("team")).len(), FOCUS_COLUMNS.len() + X_COLUMNS.len() + 1);
        assert!(MANDATORY_COLUMNS.iter().all(|c| FOCUS_COLUMNS.contains(c)));
    }

    #[test]
    fn rows_of_different_exports_are_not_written_together() {
        let gb = group_by();
        let rows = spend();
        let mut mixed = focus_rows(ExportInput { group_by: &gb, rows: &rows, by: Some("feature"), cards: &[] });
        mixed.extend(focus_rows(ExportInput { group_by: &gb, rows: &rows, by: Some("team"), cards: &[] }));
        let err = write_focus_csv(&mixed, &mut Vec::<u8>::new()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        // No rows: just the header.
        let mut buf = Vec::new();
        write_focus_csv(&[], &mut buf).unwrap();
        assert_eq!(String::from_utf8(buf).unwrap().matches("\r\n").count(), 1);
    }
}
