// A tiny DOM builder: every value goes in as text, never as HTML, because tag
// values and model names come from API callers.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'style') el.setAttribute('style', v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

/**
 * A table. `columns`: [{ label, cell: row => node|string, num: bool, title }].
 * `onRow` makes rows clickable; `rowClass` gives a row's extra class;
 * `detail` (row => node|null) adds a full-width row under it (class `detail`).
 */
export function table(columns, rows, { onRow, rowClass, detail, testid, empty = 'Nothing here for this time range and filters.' } = {}) {
  if (!rows.length) return h('p', { class: 'empty', 'data-testid': testid ? `${testid}-empty` : undefined }, empty);
  return h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      { 'data-testid': testid },
      h('thead', {}, h('tr', {}, columns.map((c) => h('th', { class: c.num ? 'num' : '', title: c.title }, c.label)))),
      h(
        'tbody',
        {},
        rows.map((r) => {
          const extra = rowClass ? rowClass(r) : '';
          const row = h(
            'tr',
            {
              class: [onRow ? 'clickable' : '', extra].filter(Boolean).join(' '),
              onclick: onRow
                ? (e) => {
                    if (e.target.closest('a')) return;
                    onRow(r);
                  }
                : undefined,
            },
            columns.map((c) => h('td', { class: c.num ? 'num' : '' }, c.cell(r))),
          );
          const more = detail ? detail(r) : null;
          return more ? [row, h('tr', { class: ['detail', extra].filter(Boolean).join(' ') }, h('td', { colspan: String(columns.length) }, more))] : row;
        }),
      ),
    ),
  );
}

export function card(title, ...body) {
  return h('section', { class: 'card' }, title ? h('h3', {}, title) : null, ...body);
}

export function note(text) {
  return h('p', { class: 'note' }, text);
}

export function chartBox(height = 300) {
  return h('div', { class: 'chart', style: `height:${height}px` });
}
