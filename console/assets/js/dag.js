// A run's DAG as SVG: layered left to right by dependency depth (a job sits one column right of
// its deepest parent), each column ordered by its parents' positions to keep edges short. Each
// node is a link to its job (focusable, Enter opens it), coloured by state with the state
// written inside. `update(jobs)` recolours in place, so focus and scroll survive live updates.

import { s } from './dom.js';

const NODE_W = 168;
const NODE_H = 46;
const GAP_X = 64;
const GAP_Y = 18;
const PAD = 16;

export function layout(jobs) {
  const byKey = new Map(jobs.map((j) => [j.key, j]));
  const depth = new Map();
  const depthOf = (key, seen = new Set()) => {
    if (depth.has(key)) return depth.get(key);
    if (seen.has(key)) return 0; // a cycle cannot be submitted; never loop on one anyway
    seen.add(key);
    const job = byKey.get(key);
    const parents = (job ? job.depends_on : []).filter((p) => byKey.has(p));
    const d = parents.length ? 1 + Math.max(...parents.map((p) => depthOf(p, seen))) : 0;
    depth.set(key, d);
    return d;
  };
  const layers = [];
  for (const j of jobs) {
    const d = depthOf(j.key);
    (layers[d] = layers[d] || []).push(j);
  }
  // Order each layer by the mean row of its parents (one sweep from the left).
  const row = new Map();
  layers.forEach((layer, d) => {
    if (d > 0) {
      const score = (j) => {
        const rows = j.depends_on.filter((p) => row.has(p)).map((p) => row.get(p));
        return rows.length ? rows.reduce((a, b) => a + b, 0) / rows.length : 0;
      };
      layer.sort((a, b) => score(a) - score(b));
    }
    layer.forEach((j, i) => row.set(j.key, i));
  });
  const tallest = Math.max(1, ...layers.map((l) => l.length));
  const height = PAD * 2 + tallest * NODE_H + (tallest - 1) * GAP_Y;
  const width = PAD * 2 + layers.length * NODE_W + Math.max(0, layers.length - 1) * GAP_X;
  const pos = new Map();
  layers.forEach((layer, d) => {
    const span = layer.length * NODE_H + (layer.length - 1) * GAP_Y;
    const top = (height - span) / 2;
    layer.forEach((j, i) => pos.set(j.key, { x: PAD + d * (NODE_W + GAP_X), y: top + i * (NODE_H + GAP_Y) }));
  });
  return { width, height, pos, layers: layers.length };
}

// Draws the graph; answers {svg, update(jobs)}. `href(job)` is each node's link.
export function dagView(jobs, { href, label }) {
  const { width, height, pos } = layout(jobs);
  const svg = s('svg', {
    class: 'dag', width, height, viewBox: `0 0 ${width} ${height}`, role: 'group', 'aria-label': label,
  });
  svg.appendChild(s('defs', {}, s('marker', {
    id: 'arrow', viewBox: '0 0 10 10', refX: '9', refY: '5', markerWidth: '7', markerHeight: '7', orient: 'auto-start-reverse',
  }, s('path', { d: 'M0,0 L10,5 L0,10 z', class: 'arrow' }))));
  const edges = s('g', { class: 'edges', 'aria-hidden': 'true' });
  const nodes = s('g', { class: 'nodes' });
  svg.append(edges, nodes);
  const edgeEls = [];
  for (const j of jobs) {
    const to = pos.get(j.key);
    for (const p of j.depends_on) {
      const from = pos.get(p);
      if (!from) continue;
      const x1 = from.x + NODE_W;
      const y1 = from.y + NODE_H / 2;
      const x2 = to.x - 2;
      const y2 = to.y + NODE_H / 2;
      const dx = Math.max(24, (x2 - x1) / 2);
      const path = s('path', {
        d: `M${x1},${y1} C${x1 + dx},${y1} ${x2 - dx},${y2} ${x2},${y2}`, class: 'edge', 'marker-end': 'url(#arrow)',
      });
      edgeEls.push({ path, parent: p });
      edges.appendChild(path);
    }
  }
  const nodeEls = new Map();
  for (const j of jobs) {
    const { x, y } = pos.get(j.key);
    const title = s('title', {});
    const sub = s('text', { x: x + 10, y: y + 36, class: 'sub' });
    const g = s('g', { class: 'node', 'data-key': j.key },
      title,
      s('rect', { x, y, width: NODE_W, height: NODE_H, rx: 6 }),
      s('text', { x: x + 10, y: y + 18, class: 'key' }, clip(j.key, 22)),
      sub);
    const a = s('a', { href: href(j) }, g);
    nodes.appendChild(a);
    nodeEls.set(j.key, { a, g, sub, title });
  }
  const update = (list) => {
    const state = new Map(list.map((j) => [j.key, j]));
    for (const [key, el] of nodeEls) {
      const j = state.get(key);
      if (!j) continue;
      el.g.setAttribute('class', `node st-${j.state}`);
      el.g.setAttribute('data-state', j.state);
      const attempt = j.attempt > 1 ? ` · try ${j.attempt}` : '';
      el.sub.textContent = `${symbol(j.state)} ${j.state}${attempt}`;
      const words = `${j.key}: ${j.state}${j.attempt ? `, attempt ${j.attempt}` : ''} (${j.kind}, queue ${j.queue})` +
        (j.depends_on.length ? `, after ${j.depends_on.join(', ')}` : '') + (j.cancel_reason ? `, ${j.cancel_reason}` : '');
      el.title.textContent = words;
      el.a.setAttribute('aria-label', words);
    }
    for (const e of edgeEls) {
      const p = state.get(e.parent);
      e.path.setAttribute('class', p && p.state === 'succeeded' ? 'edge done' : 'edge');
    }
  };
  update(jobs);
  return { svg, update };
}

function symbol(state) {
  return { blocked: '◇', queued: '○', leased: '◐', succeeded: '✓', dead: '✕', cancelled: '⊘' }[state] || '•';
}

function clip(text, n) {
  return text.length > n ? `${text.slice(0, n - 1)}…` : text;
}
