// SVG charts drawn by hand: a line chart of counts per time bucket, and a stacked bar of
// counts per state. Colours come from classes (style.css); the words are always there too.

import { h, s } from './dom.js';
import { hhmm, utc } from './time.js';

// lineChart({times: [ms…], series: [{name, key, values: [n…]}], label}) → <figure>.
export function lineChart({ times, series, label, height = 200 }) {
  const W = 720;
  const H = height;
  const pad = { l: 44, r: 12, t: 12, b: 26 };
  const iw = W - pad.l - pad.r;
  const ih = H - pad.t - pad.b;
  const max = Math.max(1, ...series.flatMap((se) => se.values));
  const top = niceCeil(max);
  const n = times.length;
  const x = (i) => pad.l + (n <= 1 ? iw / 2 : (i * iw) / (n - 1));
  const y = (v) => pad.t + ih - (v / top) * ih;

  const svg = s('svg', {
    viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': label,
  });
  svg.appendChild(s('title', {}, label));
  // Grid and y axis: four steps.
  for (let k = 0; k <= 4; k += 1) {
    const v = (top * k) / 4;
    svg.appendChild(s('line', { x1: pad.l, x2: W - pad.r, y1: y(v), y2: y(v), class: 'grid' }));
    svg.appendChild(s('text', { x: pad.l - 6, y: y(v) + 4, class: 'axis', 'text-anchor': 'end' }, fmt(v)));
  }
  // X axis: about six labels.
  const every = Math.max(1, Math.ceil(n / 6));
  for (let i = 0; i < n; i += every) {
    svg.appendChild(s('text', { x: x(i), y: H - 8, class: 'axis', 'text-anchor': 'middle' }, hhmm(times[i])));
  }
  for (const se of series) {
    if (!n) break;
    const d = se.values.map((v, i) => `${i ? 'L' : 'M'}${x(i).toFixed(1)},${y(v).toFixed(1)}`).join('');
    svg.appendChild(s('path', { d, class: `line series-${se.key}` }));
  }
  // One hover target per bucket with its figures.
  const step = n > 1 ? iw / (n - 1) : iw;
  times.forEach((t, i) => {
    const words = series.map((se) => `${se.name} ${se.values[i]}`).join(', ');
    svg.appendChild(s('rect', {
      x: x(i) - step / 2, y: pad.t, width: step, height: ih, class: 'hover',
    }, s('title', {}, `${hhmm(t)} (${utc(new Date(t).toISOString())}): ${words}`)));
  });
  const legend = h('ul', { class: 'legend' }, series.map((se) => h('li', {},
    h('span', { class: `swatch series-${se.key}`, 'aria-hidden': 'true' }),
    `${se.name}: ${se.values.reduce((a, b) => a + b, 0).toLocaleString()}`)));
  return h('figure', { class: 'chart-figure' }, h('div', { class: 'chart-box' }, svg), legend);
}

// A bar split by state: counts {state: n} in `order`; each part is labelled in its title and
// the numbers are in the text next to it.
export function stackedBar(counts, order) {
  const total = order.reduce((a, k) => a + (counts[k] || 0), 0);
  const bar = h('span', { class: 'stack', 'aria-hidden': 'true' });
  for (const k of order) {
    const v = counts[k] || 0;
    if (!v) continue;
    const part = h('span', { class: `part state-bg-${k}`, title: `${k}: ${v}` });
    part.style.width = `${(v / total) * 100}%`;
    bar.appendChild(part);
  }
  return bar;
}

function niceCeil(v) {
  if (v <= 5) return Math.max(1, Math.ceil(v));
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function fmt(v) {
  return Number.isInteger(v) ? v.toLocaleString() : v.toFixed(1);
}
