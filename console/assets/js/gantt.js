// A run's timeline as SVG: one row per job; a pale bar while it waited (blocked behind its
// parents, then queued), then one bar per attempt coloured by how it ended.

import { h, s } from './dom.js';
import { attemptsOf } from './attempts.js';
import { duration, utc } from './time.js';

const LABEL_W = 150;
const ROW_H = 24;
const W = 900;

// jobs: the run's jobs; eventsByJob: Map(job_id → events); t0: run submission (ISO).
export function ganttView(jobs, eventsByJob, { t0, t1, label }) {
  const start = new Date(t0).getTime();
  const end = Math.max(start + 1000, t1 ? new Date(t1).getTime() : Date.now());
  const span = end - start;
  const plotW = W - LABEL_W - 16;
  const x = (t) => LABEL_W + ((new Date(t).getTime() - start) / span) * plotW;
  const height = 28 + jobs.length * ROW_H + 8;
  const svg = s('svg', { class: 'gantt', viewBox: `0 0 ${W} ${height}`, width: '100%', role: 'img', 'aria-label': label });
  svg.appendChild(s('title', {}, label));
  for (let k = 0; k <= 5; k += 1) {
    const t = start + (span * k) / 5;
    const gx = LABEL_W + (plotW * k) / 5;
    svg.appendChild(s('line', { x1: gx, x2: gx, y1: 20, y2: height - 4, class: 'grid' }));
    svg.appendChild(s('text', { x: gx, y: 14, class: 'axis', 'text-anchor': k === 5 ? 'end' : 'middle' }, `+${duration(t - start)}`));
  }
  jobs.forEach((j, i) => {
    const y = 26 + i * ROW_H;
    svg.appendChild(s('text', { x: 4, y: y + 14, class: 'label' }, j.key.length > 20 ? `${j.key.slice(0, 19)}…` : j.key));
    const { queuedAt, attempts } = attemptsOf(eventsByJob.get(j.job_id) || []);
    const firstStart = attempts.length ? attempts[0].start : j.started_at;
    const finish = j.finished_at || (attempts.length ? attempts[attempts.length - 1].end : null);
    const waitFrom = queuedAt || t0;
    if (queuedAt && new Date(queuedAt) > new Date(t0)) {
      bar(svg, x(t0), x(queuedAt), y, 'blockedbar', `${j.key}: blocked behind its parents for ${duration(new Date(queuedAt) - new Date(t0))}`);
    }
    if (j.state === 'blocked') {
      bar(svg, x(t0), x(new Date(end).toISOString()), y, 'blockedbar', `${j.key}: blocked behind ${j.depends_on.join(', ')}`);
    } else {
      const waitTo = firstStart || finish || new Date(end).toISOString();
      bar(svg, x(waitFrom), x(waitTo), y, 'wait', `${j.key}: queued ${duration(new Date(waitTo) - new Date(waitFrom))}`);
    }
    if (attempts.length) {
      for (const a of attempts) {
        const aEnd = a.end || new Date(end).toISOString();
        bar(svg, x(a.start), x(aEnd), y, `att-${a.outcome}`,
          `${j.key}: attempt ${a.n} ${a.outcome} on ${a.worker || '?'}, ${duration(new Date(aEnd) - new Date(a.start))} from ${utc(a.start)}${a.error ? ` — ${a.error.class}: ${a.error.message}` : ''}`);
      }
    } else if (j.started_at) {
      const outcome = j.state === 'leased' ? 'running' : j.state === 'dead' ? 'dead' : j.state;
      bar(svg, x(j.started_at), x(j.finished_at || new Date(end).toISOString()), y, `att-${outcome}`, `${j.key}: ${j.state}`);
    }
  });
  if (!t1) svg.appendChild(s('line', { x1: x(end), x2: x(end), y1: 20, y2: height - 4, class: 'now' }));
  const legend = h('ul', { class: 'legend' }, [
    ['wait', 'waiting (blocked, then queued)'], ['att-running', 'running'], ['att-succeeded', 'succeeded'],
    ['att-failed', 'failed, retried'], ['att-dead', 'dead'], ['att-cancelled', 'cancelled'],
  ].map(([c, t]) => h('li', {}, h('span', { class: `box ${c}`, 'aria-hidden': 'true' }), t)));
  return h('figure', { class: 'chart-figure' }, h('div', { class: 'graph-wrap' }, svg), legend);
}

function bar(svg, x1, x2, y, cls, title) {
  const w = Math.max(2, x2 - x1);
  svg.appendChild(s('rect', { x: x1, y: y + 3, width: w, height: ROW_H - 8, rx: 2, class: cls }, s('title', {}, title)));
}
