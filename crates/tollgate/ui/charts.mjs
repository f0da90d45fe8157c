// Thin helpers over Chart.js (vendor/chart.umd.min.js, loaded as a global):
// one palette, one look, and every chart destroyed when its view goes away.

const Chart = globalThis.Chart;

export const PALETTE = [
  '#4f6bed', '#f08c2e', '#2fb380', '#d9487a', '#8c62d9', '#e3c02b', '#37a6c9', '#a3693b',
  '#6c7a89', '#9acd5a', '#ef6f5e', '#5c5fa8',
];
export const OTHER = '#c4c9d2';

const live = new Set();

if (Chart) {
  Chart.defaults.font.family = getComputedStyle(document.documentElement).getPropertyValue('--font') || 'system-ui';
  Chart.defaults.font.size = 12;
  Chart.defaults.color = '#4a5160';
  Chart.defaults.animation = false;
  Chart.defaults.maintainAspectRatio = false;
  Chart.defaults.plugins.legend.labels.boxWidth = 12;
}

export function destroyAll() {
  for (const c of live) c.destroy();
  live.clear();
}

export function color(i, label) {
  if (label === 'other') return OTHER;
  return PALETTE[i % PALETTE.length];
}

/** Creates a chart on a new canvas inside `host` (an element with a fixed height). */
export function chart(host, config) {
  const canvas = document.createElement('canvas');
  host.replaceChildren(canvas);
  const c = new Chart(canvas, config);
  live.add(c);
  return c;
}

export function usdTick(v) {
  const a = Math.abs(v);
  if (a >= 1000) return '$' + (v / 1000).toFixed(1) + 'k';
  if (a >= 1) return '$' + v.toFixed(0);
  if (a >= 0.01) return '$' + v.toFixed(2);
  if (a === 0) return '$0';
  return '$' + v.toPrecision(1);
}

export function tokenTick(v) {
  const a = Math.abs(v);
  if (a >= 1e6) return (v / 1e6).toFixed(1) + 'M';
  if (a >= 1e3) return (v / 1e3).toFixed(0) + 'k';
  return String(v);
}

export function usdLabel(ctx) {
  const v = ctx.parsed.y ?? ctx.parsed.x ?? ctx.parsed;
  return `${ctx.dataset.label || ctx.label}: $${Number(v).toFixed(4)}`;
}
