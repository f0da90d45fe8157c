// Money and number formatting for the dashboard. Amounts arrive as USD strings
// with 9 decimals ("12.345678900"); they are added up exactly as BigInt
// nano-dollars and only turned into floats to draw charts.

const NANOS = 1_000_000_000n;

/** "12.345678900" -> 12345678900n (nano-dollars). Null/undefined/"" -> 0n. */
export function nanos(usd) {
  if (usd === null || usd === undefined || usd === '') return 0n;
  const s = String(usd).trim();
  const neg = s.startsWith('-');
  const body = neg ? s.slice(1) : s;
  const [whole, frac = ''] = body.split('.');
  if (!/^\d*$/.test(whole) || !/^\d*$/.test(frac) || frac.length > 9) {
    throw new Error(`not a USD amount: ${usd}`);
  }
  const n = BigInt(whole || '0') * NANOS + BigInt((frac + '000000000').slice(0, 9));
  return neg ? -n : n;
}

/** 12345678900n -> "12.345678900" (the API's own form). */
export function usdString(n) {
  const neg = n < 0n;
  const a = neg ? -n : n;
  return `${neg ? '-' : ''}${a / NANOS}.${(a % NANOS).toString().padStart(9, '0')}`;
}

/** Sum of USD strings, exactly. */
export function sumUsd(values) {
  let t = 0n;
  for (const v of values) t += nanos(v);
  return t;
}

function roundTo(n, decimals) {
  // Round half away from zero to `decimals` places; returns [whole, fracString].
  const step = 10n ** BigInt(9 - decimals);
  const neg = n < 0n;
  let a = neg ? -n : n;
  a = (a + step / 2n) / step;
  const scale = 10n ** BigInt(decimals);
  const whole = a / scale;
  const frac = decimals > 0 ? (a % scale).toString().padStart(decimals, '0') : '';
  return [neg && a !== 0n ? '-' : '', whole, frac];
}

function groupThousands(whole) {
  return whole.toString().replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

/**
 * Nano-dollars (BigInt) or a USD string -> "$1,234.57". Amounts under a dollar
 * keep enough decimals to stay readable ("$0.0042"), so per-request costs
 * never show as "$0.00".
 */
export function fmtUsd(v) {
  const n = typeof v === 'bigint' ? v : nanos(v);
  const a = n < 0n ? -n : n;
  let decimals = 2;
  if (a === 0n) decimals = 2;
  else if (a < 10_000n) decimals = 6; // < $0.00001
  else if (a < 1_000_000n) decimals = 5; // < $0.001
  else if (a < NANOS) decimals = 4; // < $1
  const [sign, whole, frac] = roundTo(n, decimals);
  return `${sign}$${groupThousands(whole)}${frac ? '.' + frac : ''}`;
}

/** Nano-dollars -> float dollars, for charts only. */
export function toFloat(v) {
  const n = typeof v === 'bigint' ? v : nanos(v);
  return Number(n) / 1e9;
}

/** Exact average: total nano-dollars / count, as nano-dollars. */
export function avgNanos(total, count) {
  if (!count) return 0n;
  return total / BigInt(count);
}

/** 1234567 -> "1.23M"; small integers as is. */
export function fmtCount(n) {
  const x = Number(n);
  if (!Number.isFinite(x)) return '–';
  const a = Math.abs(x);
  if (a >= 1e9) return (x / 1e9).toFixed(2) + 'B';
  if (a >= 1e6) return (x / 1e6).toFixed(2) + 'M';
  if (a >= 1e4) return (x / 1e3).toFixed(1) + 'k';
  return Math.round(x).toLocaleString('en-US');
}

/** Share as "12.3%". */
export function fmtPct(part, whole) {
  if (!whole) return '–';
  return ((Number(part) / Number(whole)) * 100).toFixed(1) + '%';
}

export function fmtMs(ms) {
  if (ms === null || ms === undefined) return '–';
  if (ms >= 7_200_000) return (ms / 3_600_000).toFixed(1) + ' h';
  if (ms >= 120_000) return (ms / 60_000).toFixed(1) + ' min';
  if (ms >= 10_000) return (ms / 1000).toFixed(1) + ' s';
  if (ms >= 1000) return (ms / 1000).toFixed(2) + ' s';
  return ms + ' ms';
}
