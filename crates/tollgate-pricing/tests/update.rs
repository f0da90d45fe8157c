//! A newer catalog applied over the one in force: what it adds and changes,
//! and that earlier days keep their prices.

#![allow(clippy::unwrap_used)]

use chrono::{NaiveDate, TimeZone, Utc};
use tollgate_pricing::{cost, Catalog, ServiceTier};
use tollgate_units::Usage;

const CURRENT: &str = r#"
format = 1
[[model]]
provider = "openai"
model = "gpt-4o-mini"
source = "https://example.test/a"
input = "0.15"
output = "0.60"
max_output_tokens = 16384

[[model]]
provider = "openai"
model = "gpt-4o"
source = "https://example.test/a"
input = "2.50"
output = "10"

[[model]]
provider = "anthropic"
model = "claude-haiku-4-5"
source = "https://example.test/a"
input = "1"
output = "5"
"#;

const NEWER: &str = r#"
format = 1
[[model]]
provider = "openai"
model = "gpt-4o-mini-2024-07-18"
aliases = ["gpt-4o-mini"]
source = "https://example.test/b"
input = "0.10"
output = "0.60"

[[model]]
provider = "openai"
model = "gpt-4o"
source = "https://example.test/b"
input = "2.50"
output = "10.00"

[[model]]
provider = "openai"
model = "gpt-9"
source = "https://example.test/b"
input = "7"
output = "21"
"#;

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

#[test]
fn an_update_adds_and_changes_from_its_day_and_keeps_the_past() {
    let current = Catalog::from_toml_str(CURRENT).unwrap();
    let newer = Catalog::from_toml_str(NEWER).unwrap();
    let (updated, diff) = current.with_update(&newer, day(2026, 12, 6));

    // gpt-9 is new; gpt-4o-mini's input drops from 0.15 to 0.10; gpt-4o is the same
    // (10 and 10.00 are one price); claude-haiku-4-5 is another provider's, not listed.
    assert_eq!(diff.added.iter().map(|e| e.model.as_str()).collect::<Vec<_>>(), vec!["gpt-9"]);
    assert_eq!(diff.changed.len(), 1);
    let c = &diff.changed[0];
    assert_eq!((c.provider.as_str(), c.model.as_str(), c.effective_from), ("openai", "gpt-4o-mini", day(2026, 12, 6)));
    let what: Vec<(&str, String, String)> = c
        .rates
        .iter()
        .map(|r| (r.what.as_str(), r.old.unwrap().normalize().to_string(), r.new.unwrap().normalize().to_string()))
        .collect();
    // input and the buckets that fall back to it (cache read/write, audio input), and the batch tier's input.
    assert!(what.contains(&("input", "0.15".into(), "0.1".into())), "{what:?}");
    assert!(what.iter().all(|(w, _, _)| !w.contains("output")), "{what:?}");
    assert_eq!(diff.unchanged, 1);
    assert!(diff.not_in_update.is_empty(), "{:?}", diff.not_in_update);

    // 1,000 input + 1,000 output tokens of gpt-4o-mini, by hand:
    //   on 2026-12-05: 1,000 × 150 + 1,000 × 600 = 750,000 nanos (the old price);
    //   on 2026-12-06: 1,000 × 100 + 1,000 × 600 = 700,000 nanos (the new one).
    let u = Usage { input: 1_000, output: 1_000, ..Usage::default() };
    let at = |d: u32| Utc.with_ymd_and_hms(2026, 12, d, 12, 0, 0).single().unwrap();
    let before = updated.lookup(Some("openai"), "gpt-4o-mini", at(5)).unwrap();
    let after = updated.lookup(Some("openai"), "gpt-4o-mini", at(6)).unwrap();
    assert_eq!(cost(before, &u, ServiceTier::Standard).total.nanos(), 750_000);
    assert_eq!(cost(after, &u, ServiceTier::Standard).total.nanos(), 700_000);
    // The new price joined the model's history under its current name, with the
    // update's spelling as an alias and the limit it did not restate.
    assert_eq!(after.model, "gpt-4o-mini");
    assert_eq!(updated.history("openai", "gpt-4o-mini").len(), 2);
    assert_eq!(after.max_output_tokens, Some(16_384));
    assert_eq!(
        updated.lookup(Some("openai"), "gpt-4o-mini-2024-07-18", at(6)).map(|e| e.model.as_str()),
        Some("gpt-4o-mini")
    );
    // An added model is priced for earlier requests too (they went unpriced): 1,000 × 7,000 + 1,000 × 21,000.
    let gpt9 = updated.lookup(Some("openai"), "gpt-9", at(1)).unwrap();
    assert_eq!(cost(gpt9, &u, ServiceTier::Standard).total.nanos(), 28_000_000);
    // Nothing else moved.
    assert_eq!(updated.len(), current.len() + 2);

    // Applying the same update again changes nothing.
    let (again, diff) = updated.with_update(&newer, day(2026, 12, 7));
    assert!(diff.is_empty(), "{diff:?}");
    assert_eq!(again.len(), updated.len());
}

#[test]
fn models_the_update_does_not_list_are_kept_and_reported() {
    let current = Catalog::from_toml_str(CURRENT).unwrap();
    let only_4o = Catalog::from_toml_str(
        "format = 1\n[[model]]\nprovider = \"openai\"\nmodel = \"gpt-4o\"\nsource = \"x\"\ninput = \"3\"\noutput = \"12\"\n",
    )
    .unwrap();
    let (updated, diff) = current.with_update(&only_4o, day(2026, 12, 6));
    assert_eq!(diff.not_in_update, vec![("openai".to_string(), "gpt-4o-mini".to_string())]);
    assert!(updated.lookup(Some("openai"), "gpt-4o-mini", Utc::now()).is_some());
}

#[test]
fn per_unit_prices_change_from_the_update_and_are_kept_when_unstated() {
    let current = Catalog::from_toml_str(
        "[[model]]\nprovider = \"openai\"\nmodel = \"whisper-1\"\nsource = \"x\"\nper_audio_second = \"0.0001\"\n\n\
         [[model]]\nprovider = \"openai\"\nmodel = \"tts-1\"\nsource = \"x\"\nper_character = \"0.000015\"\n",
    )
    .unwrap();
    // whisper-1 gets dearer per second; tts-1 is restated with token rates only (silent on its per-character price).
    let newer = Catalog::from_toml_str(
        "[[model]]\nprovider = \"openai\"\nmodel = \"whisper-1\"\nsource = \"y\"\nper_audio_second = \"0.00012\"\n\n\
         [[model]]\nprovider = \"openai\"\nmodel = \"tts-1\"\nsource = \"y\"\ninput = \"0\"\noutput = \"0\"\n",
    )
    .unwrap();
    let (updated, diff) = current.with_update(&newer, day(2026, 12, 6));
    assert_eq!(diff.changed.len(), 1, "{diff:?}");
    let c = &diff.changed[0];
    assert_eq!(c.model, "whisper-1");
    let what: Vec<(&str, String, String)> = c
        .rates
        .iter()
        .map(|r| (r.what.as_str(), r.old.unwrap().normalize().to_string(), r.new.unwrap().normalize().to_string()))
        .collect();
    assert_eq!(what, vec![("per_audio_second", "0.0001".to_owned(), "0.00012".to_owned())]);
    assert_eq!(diff.unchanged, 1);
    // 10,000 ms of audio: before the update 10,000 × 0.0001 × 1e6 = 1,000,000 nd; from it 1,200,000 nd.
    let u = Usage { audio_ms: 10_000, characters: 1_000, ..Usage::default() };
    let at = |d: u32| Utc.with_ymd_and_hms(2026, 12, d, 12, 0, 0).single().unwrap();
    let w = |d| cost(updated.lookup(Some("openai"), "whisper-1", at(d)).unwrap(), &u, ServiceTier::Standard);
    assert_eq!((w(5).total.nanos(), w(6).total.nanos()), (1_000_000, 1_200_000));
    // tts-1 keeps $0.000015 per character: 1,000 × 0.000015 × 1e9 = 15,000,000 nd.
    let t = updated.lookup(Some("openai"), "tts-1", at(6)).unwrap();
    assert_eq!(cost(t, &u, ServiceTier::Standard).total.nanos(), 15_000_000);
}
