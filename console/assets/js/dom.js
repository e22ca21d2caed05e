// Tiny DOM helpers: build elements without innerHTML (so nothing the API says is ever parsed
// as markup), and a few shared bits of page furniture.

const SVG_NS = 'http://www.w3.org/2000/svg';

// h('a', {href: '/x', class: 'y'}, 'text', child, [more]): attributes starting with "on" are
// listeners; `null`/`false` attributes and children are skipped.
export function h(tag, attrs = {}, ...children) {
  return build(document.createElement(tag), attrs, children);
}

// The same for SVG elements.
export function s(tag, attrs = {}, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

function build(el, attrs, children) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2), value);
    } else if (value === true) {
      el.setAttribute(name, '');
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

// Replaces an element's children.
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// Says something to screen readers (the page's polite live region).
export function announce(text) {
  const region = document.getElementById('announce');
  if (!region) return;
  region.textContent = '';
  // A new text node after a tick, so the same words twice are read twice.
  setTimeout(() => { region.textContent = text; }, 30);
}

// A short message in the corner that goes away on its own.
export function toast(text, kind = 'info') {
  const box = document.getElementById('toasts');
  if (!box) return;
  const item = h('div', { class: `toast ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, text);
  box.appendChild(item);
  setTimeout(() => item.remove(), kind === 'error' ? 9000 : 5000);
}

// A table inside a horizontally scrolling box: columns is [{label, cell(row) => node|string,
// class?}], the first column's cells are row headers.
export function table(columns, rows, { caption, empty = 'Nothing here.', rowClass } = {}) {
  if (!rows.length) return h('p', { class: 'empty' }, empty);
  const head = h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: c.class }, c.label)));
  const body = rows.map((row) => h('tr', { class: rowClass ? rowClass(row) : null },
    columns.map((c, i) => h(i === 0 ? 'th' : 'td', { scope: i === 0 ? 'row' : null, class: c.class },
      c.cell(row)))));
  return h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': caption || 'table' },
    h('table', {}, caption ? h('caption', {}, caption) : null, h('thead', {}, head), h('tbody', {}, body)));
}

// A section with a heading.
export function section(title, ...children) {
  const id = `s-${title.toLowerCase().replace(/[^a-z0-9]+/g, '-')}`;
  return h('section', { class: 'panel', 'aria-labelledby': id }, h('h2', { id }, title), children);
}

// The standard "this failed" box, with the API's own message.
export function errorBox(err) {
  const lines = [h('strong', {}, err.status ? `Error ${err.status}: ` : 'Error: '), err.message];
  if (err.requestId) lines.push(h('span', { class: 'muted' }, ` (request ${err.requestId})`));
  return h('p', { class: 'error', role: 'alert' }, lines);
}

// A number with thousands separators.
export function num(n) {
  return n === null || n === undefined ? '–' : Number(n).toLocaleString();
}

// Short id: the last 12 characters of a UUID (v7 ids share their prefix within a second).
export function shortId(id) {
  return id ? `…${String(id).slice(-12)}` : '–';
}

// A JSON value, pretty-printed in a <pre>.
export function jsonBlock(value, label) {
  return h('pre', { class: 'json', tabindex: '0', 'aria-label': label || 'JSON' },
    JSON.stringify(value, null, 2));
}
