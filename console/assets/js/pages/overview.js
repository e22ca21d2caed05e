// Overview: depth per queue and state, throughput and failures over the last hour, failure
// classes, SLO burn per queue, and the workers with their leases. Refreshes every 5 s.

import { api } from '../api.js';
import { h, fill, section, table, errorBox, num } from '../dom.js';
import { JOB_STATES, badge } from '../states.js';
import { lineChart, stackedBar } from '../charts.js';
import { timeEl, ago } from '../time.js';
import { link } from '../router.js';
import { every } from '../poll.js';

export default async function overview(ctx) {
  ctx.title('Overview');
  const slots = {
    queues: h('div', { class: 'slot' }, h('p', { class: 'muted' }, 'Loading…')),
    stats: h('div', { class: 'slot' }, h('p', { class: 'muted' }, 'Loading…')),
    failures: h('div', { class: 'slot' }, h('p', { class: 'muted' }, 'Loading…')),
    slo: h('div', { class: 'slot' }, h('p', { class: 'muted' }, 'Loading…')),
    workers: h('div', { class: 'slot' }, h('p', { class: 'muted' }, 'Loading…')),
  };
  const updated = h('p', { class: 'muted small', 'aria-live': 'off' });
  fill(ctx.main,
    h('div', { class: 'page-head' }, h('h1', {}, 'Overview'), updated),
    h('div', { class: 'grid' },
      wide(section('Queues', slots.queues)),
      section('Throughput, last hour', slots.stats),
      section('Failure classes, last 24 hours', slots.failures),
      section('SLO burn', slots.slo),
      section('Workers', slots.workers)));

  const { signal } = ctx;
  const load = async () => {
    await Promise.all([
      panel(slots.queues, () => api('/v1/queues', { signal }).then(queuesView)),
      panel(slots.stats, () => api('/v1/stats', { signal, query: { since: '1h' } }).then(statsView)),
      panel(slots.failures, () => api('/v1/failures', { signal, query: { since: '24h' } }).then(failuresView)),
      panel(slots.slo, () => api('/v1/slo', { signal }).then(sloView)),
      panel(slots.workers, () => api('/v1/workers', { signal }).then(workersView)),
    ]);
    updated.replaceChildren('Updated ', timeEl(new Date().toISOString()), ' · refreshes every 5 s');
  };
  await load();
  every(5000, signal, load);
}

function wide(el) {
  el.classList.add('wide');
  return el;
}

// Renders what `fetch()` builds into `slot`; an error stays in the slot until the next refresh.
async function panel(slot, fetchView) {
  try {
    const view = await fetchView();
    fill(slot, view);
  } catch (err) {
    if (err.name === 'AbortError') return;
    fill(slot, errorBox(err));
  }
}

function queuesView({ queues }) {
  const totals = Object.fromEntries(JOB_STATES.map((st) => [st, 0]));
  for (const q of queues) for (const st of JOB_STATES) totals[st] += q.depth[st] || 0;
  const summary = h('ul', { class: 'totals' }, JOB_STATES.map((st) => h('li', {},
    h('a', { href: link('/jobs', { state: st }) }, badge(st)), ' ', h('strong', {}, num(totals[st])))));
  const cols = [
    { label: 'Queue', cell: (q) => h('a', { href: link('/jobs', { queue: q.name }) }, q.name) },
    { label: 'Status', cell: (q) => badge(q.paused ? 'paused' : 'active') },
    ...JOB_STATES.map((st) => ({
      label: st,
      class: 'num',
      cell: (q) => (q.depth[st] ? h('a', { href: link('/jobs', { queue: q.name, state: st }) }, num(q.depth[st])) : '0'),
    })),
    { label: 'Mix', cell: (q) => stackedBar(q.depth, JOB_STATES) },
  ];
  return [summary, table(cols, queues, { caption: 'Jobs per queue and state', empty: 'No queues yet: nothing has been enqueued.' })];
}

function statsView(stats) {
  const bucket = (stats.bucket_secs || 60) * 1000;
  const from = Math.floor(new Date(stats.since).getTime() / bucket) * bucket;
  const to = new Date(stats.until).getTime();
  const times = [];
  for (let t = from; t <= to; t += bucket) times.push(t);
  const keys = ['leased', 'succeeded', 'failed', 'dead'];
  const sums = Object.fromEntries(keys.map((k) => [k, times.map(() => 0)]));
  for (const p of stats.points || []) {
    const i = Math.round((new Date(p.at).getTime() - from) / bucket);
    if (i < 0 || i >= times.length) continue;
    for (const k of keys) sums[k][i] += p[k] || 0;
  }
  const names = { leased: 'Leased', succeeded: 'Succeeded', failed: 'Failed attempts', dead: 'Dead' };
  return lineChart({
    times,
    series: keys.map((k) => ({ key: k, name: names[k], values: sums[k] })),
    label: `Jobs per minute over the last hour, every queue: ${keys.map((k) => `${names[k]} ${sums[k].reduce((a, b) => a + b, 0)}`).join(', ')}`,
  });
}

function failuresView({ classes }) {
  const rows = [...(classes || [])].sort((a, b) => b.count - a.count);
  return table([
    { label: 'Class', cell: (c) => h('code', {}, c.class) },
    { label: 'Queue', cell: (c) => h('a', { href: link('/jobs', { queue: c.queue, state: 'dead' }) }, c.queue) },
    { label: 'Count', class: 'num', cell: (c) => num(c.count) },
    { label: 'Last', cell: (c) => timeEl(c.last_at, { relative: true }) },
  ], rows, { caption: 'Failed attempts by class', empty: 'No failures in the last 24 hours.' });
}

function sloView(slo) {
  const pct = (x) => (x === null || x === undefined ? '–' : `${(x * 100).toFixed(2)} %`);
  const burn = (b) => {
    if (b === null || b === undefined) return h('span', { class: 'muted' }, '–');
    const level = b >= 10 ? 'critical' : b >= 1 ? 'warning' : 'ok';
    const word = { critical: 'fast burn', warning: 'burning', ok: 'within budget' }[level];
    return h('span', { class: `burn burn-${level}` }, `${b.toFixed(2)}× `, h('small', {}, word));
  };
  return [
    h('p', { class: 'muted small' }, `Window: ${Math.round((slo.window_secs || 3600) / 60)} min. Burn rate 1× spends the error budget exactly over the window.`),
    table([
      { label: 'Queue', cell: (q) => q.queue },
      { label: 'Success', cell: (q) => `${pct(q.success.ratio)} of ${num(q.success.total)} (objective ${pct(q.objective.success_ratio)})` },
      { label: 'Success burn', cell: (q) => burn(q.success.burn_rate) },
      { label: 'Pickup', cell: (q) => `${pct(q.pickup.ratio)} within ${num(q.objective.pickup_ms)} ms (objective ${pct(q.objective.pickup_ratio)})` },
      { label: 'Pickup burn', cell: (q) => burn(q.pickup.burn_rate) },
    ], slo.queues || [], { caption: 'Service level objectives per queue', empty: 'No queue has an objective.' }),
  ];
}

function workersView({ workers }) {
  const connected = workers.filter((w) => w.connected).length;
  const leases = workers.reduce((a, w) => a + (w.leases || 0), 0);
  return [
    h('p', {}, h('strong', {}, num(connected)), ' connected · ', h('strong', {}, num(leases)), ' leases in flight'),
    table([
      { label: 'Worker', cell: (w) => h('code', {}, w.worker_id) },
      { label: 'Connected', cell: (w) => badge(w.connected ? 'connected' : 'disconnected') },
      { label: 'Leases', class: 'num', cell: (w) => num(w.leases) },
      { label: 'Queues', cell: (w) => w.queues.join(', ') || '–' },
      { label: 'Transport', cell: (w) => w.transport },
      { label: 'Version', cell: (w) => w.version || '–' },
      { label: 'Last seen', cell: (w) => h('span', { title: ago(w.last_seen_at) }, timeEl(w.last_seen_at, { relative: true })) },
    ], workers, { caption: 'Workers seen in the last hour', empty: 'No worker seen in the last hour.' }),
  ];
}
