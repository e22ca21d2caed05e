// Times: shown in the browser's time zone, the UTC instant in the title, inside <time>.

import { h } from './dom.js';

const sameDay = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const otherDay = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit',
});
const clock = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });

// The local wording of an instant: the time of day when it is today, else date and time.
export function local(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const now = new Date();
  return d.toDateString() === now.toDateString() ? sameDay.format(d) : otherDay.format(d);
}

// HH:MM, for chart axes.
export function hhmm(value) {
  return clock.format(new Date(value));
}

export function utc(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : `${d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z')} UTC`;
}

// <time datetime="…" title="… UTC">local</time>, or a dash for none. `relative` adds "(3 min ago)".
export function timeEl(iso, { relative = false } = {}) {
  if (!iso) return h('span', { class: 'muted' }, '–');
  const text = relative ? `${local(iso)} (${ago(iso)})` : local(iso);
  return h('time', { datetime: iso, title: utc(iso) }, text);
}

// "12 s ago", "3 min ago", "in 2 h".
export function ago(iso, now = Date.now()) {
  const ms = now - new Date(iso).getTime();
  if (Number.isNaN(ms)) return '';
  const words = duration(Math.abs(ms));
  if (Math.abs(ms) < 1000) return 'just now';
  return ms >= 0 ? `${words} ago` : `in ${words}`;
}

// A span of milliseconds in the biggest sensible unit.
export function duration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '–';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.round(s)} s`;
  const m = s / 60;
  if (m < 60) return `${Math.floor(m)} min ${Math.round(s % 60)} s`;
  const hr = m / 60;
  if (hr < 48) return `${Math.floor(hr)} h ${Math.round(m % 60)} min`;
  return `${Math.round(hr / 24)} d`;
}

// "1h", "30m", "2d", "90s" → milliseconds; null when it is not such a duration.
export function parseDuration(text) {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d)\s*$/i.exec(text || '');
  if (!m) return null;
  const unit = { ms: 1, s: 1000, m: 60000, min: 60000, h: 3600000, d: 86400000 }[m[2].toLowerCase()];
  return Number(m[1]) * unit;
}
