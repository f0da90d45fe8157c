// The dashboard's money formatting (crates/tollgate/ui/money.mjs) against
// strings written out by hand. No browser, no gateway, no dependencies:
//
//   node --test tests/ui/money.test.mjs
//
// The API sends money as USD strings with 9 decimals (1 USD = 1_000_000_000
// nanos). `fmtUsd` shows 2 decimals from $1 up (thousands grouped), 4 below
// $1, 5 below $0.001, 6 below $0.00001, rounding half away from zero.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { fmtUsd, nanos, sumUsd, usdString } from '../../crates/tollgate/ui/money.mjs';

test('nanos reads the API strings exactly', () => {
  for (const [usd, want] of [
    ['0.000000000', 0n],
    ['0.000000001', 1n],
    ['12.345678900', 12_345_678_900n],
    ['0.5', 500_000_000n],
    ['.25', 250_000_000n],
    ['-0.000000001', -1n],
    ['1000000.000000000', 1_000_000_000_000_000n],
    ['9223372036.854775807', 9_223_372_036_854_775_807n],
    ['-9223372036.854775808', -9_223_372_036_854_775_808n],
    [null, 0n],
    [undefined, 0n],
    ['', 0n],
  ]) {
    assert.equal(nanos(usd), want, String(usd));
  }
  for (const bad of ['1.0000000001', '1e5', '$3', 'abc']) {
    assert.throws(() => nanos(bad), /not a USD amount/, bad);
  }
});

test('usdString writes the API form: 9 decimals, no grouping, no rounding', () => {
  for (const [n, want] of [
    [0n, '0.000000000'],
    [1n, '0.000000001'],
    [-1n, '-0.000000001'],
    [9_999_999n, '0.009999999'],
    [10_000_000n, '0.010000000'],
    [999_999_999n, '0.999999999'],
    [1_000_000_000n, '1.000000000'],
    [-1_234_500n, '-0.001234500'],
    [1_000_000_000_000_000n, '1000000.000000000'],
    [9_223_372_036_854_775_807n, '9223372036.854775807'],
    // Sums past i64 stay exact (BigInt).
    [100_000_000_000_000_000_000n, '100000000000.000000000'],
  ]) {
    assert.equal(usdString(n), want, String(n));
  }
});

test('sumUsd adds exactly', () => {
  // 1 + 999_999_999 + 1_000_000_000_000_000 = 1_000_001_000_000_000 nanos
  const t = sumUsd(['0.000000001', '0.999999999', '1000000.000000000']);
  assert.equal(t, 1_000_001_000_000_000n);
  assert.equal(usdString(t), '1000001.000000000');
  // 0.1 + 0.2 in nanos: 100_000_000 + 200_000_000 = 300_000_000 (no float error)
  assert.equal(usdString(sumUsd(['0.1', '0.2'])), '0.300000000');
  assert.equal(sumUsd([]), 0n);
});

test('fmtUsd: zero, nano and sub-cent amounts', () => {
  for (const [v, want] of [
    ['0.000000000', '$0.00'],
    [0n, '$0.00'],
    // < $0.00001 (10_000 nanos): 6 decimals, steps of 1_000 nanos
    ['0.000000001', '$0.000000'], // 1 nano: (1 + 500) / 1_000 = 0
    [499n, '$0.000000'], // (499 + 500) / 1_000 = 0
    [500n, '$0.000001'], // (500 + 500) / 1_000 = 1: half rounds up
    [9_499n, '$0.000009'], // (9_499 + 500) / 1_000 = 9
    [9_999n, '$0.000010'], // (9_999 + 500) / 1_000 = 10
    // < $0.001 (1_000_000 nanos): 5 decimals, steps of 10_000 nanos
    [10_000n, '$0.00001'],
    [123_456n, '$0.00012'], // (123_456 + 5_000) / 10_000 = 12
    [125_000n, '$0.00013'], // 12.5 steps: half away from zero
    [999_999n, '$0.00100'], // (999_999 + 5_000) / 10_000 = 100
    // < $1: 4 decimals, steps of 100_000 nanos
    [1_000_000n, '$0.0010'],
    ['0.004200000', '$0.0042'],
    ['0.009999999', '$0.0100'], // just under a cent: (9_999_999 + 50_000) / 100_000 = 100
    ['0.010000000', '$0.0100'],
    ['0.000015750', '$0.00002'], // a gpt-4o-mini request: 15_750 nanos → (15_750 + 5_000) / 10_000 = 2
    ['0.999949999', '$0.9999'], // (999_949_999 + 50_000) / 100_000 = 9_999
    ['0.999950000', '$1.0000'], // (999_950_000 + 50_000) / 100_000 = 10_000: rounds up to a dollar
  ]) {
    assert.equal(fmtUsd(v), want, String(v));
  }
});

test('fmtUsd: dollars, rounding boundaries and amounts over $1M', () => {
  for (const [v, want] of [
    // ≥ $1: 2 decimals, steps of 10_000_000 nanos
    ['1.000000000', '$1.00'],
    ['1.234999999', '$1.23'], // (1_234_999_999 + 5_000_000) / 10_000_000 = 123
    ['1.235000000', '$1.24'], // 123.5 cents: half away from zero
    ['1.994999999', '$1.99'],
    ['1.995000000', '$2.00'],
    ['999.995000000', '$1,000.00'],
    ['1234.5', '$1,234.50'],
    ['1000000.000000000', '$1,000,000.00'],
    ['1234567.890000000', '$1,234,567.89'],
    ['1234567.894999999', '$1,234,567.89'],
    ['1234567.895000000', '$1,234,567.90'],
    // the largest i64 of nanos: (9_223_372_036_854_775_807 + 5_000_000) / 10_000_000 = 922_337_203_685
    ['9223372036.854775807', '$9,223,372,036.85'],
    [100_000_000_000_000_000_000n, '$100,000,000,000.00'],
  ]) {
    assert.equal(fmtUsd(v), want, String(v));
  }
});

test('fmtUsd: negative amounts', () => {
  for (const [v, want] of [
    ['-0.004200000', '-$0.0042'],
    ['-0.005000000', '-$0.0050'],
    ['-0.000000500', '-$0.000001'], // half away from zero: -0.5 µ$ → -1 µ$
    ['-0.000000001', '$0.000000'], // rounds to zero: no sign
    ['-1.235000000', '-$1.24'],
    ['-1234.5', '-$1,234.50'],
    ['-1000000.000000000', '-$1,000,000.00'],
    ['-9223372036.854775808', '-$9,223,372,036.85'],
  ]) {
    assert.equal(fmtUsd(v), want, String(v));
  }
});
