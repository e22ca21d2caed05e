// Limits: the tenant's flow-control limits with their buckets and breakers now, the breaker
// incidents (openings and closings), and the quota.

import { api } from '../api.js';
import { h, fill, section, table, errorBox, num, jsonBlock } from '../dom.js';
import { badge } from '../states.js';
import { timeEl, duration } from '../time.js';
import { link } from '../router.js';
import { every } from '../poll.js';

export default async function limits(ctx) {
  ctx.title('Limits');
  const limitsSlot = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const breakersSlot = h('div', {});
  const incidentsSlot = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const quotaSlot = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  fill(ctx.main,
    h('div', { class: 'page-head' }, h('h1', {}, 'Limits'),
      h('p', { class: 'muted small' }, 'Change limits with ', h('code', {}, 'leasehold limits set'), ' (docs/flow-control.md).')),
    section('Limits', limitsSlot),
    section('Circuit breakers', breakersSlot),
    section('Breaker incidents', incidentsSlot),
    section('Quota', quotaSlot));

  const load = async () => {
    const { signal } = ctx;
    await Promise.all([
      api('/v1/limits', { signal }).then((r) => {
        fill(limitsSlot, limitsView(r.limits));
        fill(breakersSlot, breakersView(r.limits));
      }).catch((err) => err.name !== 'AbortError' && fill(limitsSlot, errorBox(err))),
      incidents(signal).then((list) => fill(incidentsSlot, incidentsView(list)))
        .catch((err) => err.name !== 'AbortError' && fill(incidentsSlot, errorBox(err))),
      api('/v1/quota', { signal }).then((q) => fill(quotaSlot, quotaView(q)))
        .catch((err) => err.name !== 'AbortError' && fill(quotaSlot, errorBox(err))),
    ]);
  };
  await load();
  every(10000, ctx.signal, load);
}

// The last week's incidents, newest first (the API pages oldest first).
async function incidents(signal) {
  const from = new Date(Date.now() - 7 * 86400000).toISOString();
  let after = null;
  const all = [];
  for (let page = 0; page < 10; page += 1) {
    const r = await api('/v1/incidents', { signal, query: { from, limit: 500, after } });
    all.push(...r.events);
    if (r.next_after === null || r.next_after === undefined || !r.events.length) break;
    after = r.next_after;
  }
  return all.reverse();
}

function limitsView(list) {
  return table([
    { label: 'Key', cell: (l) => h('code', {}, l.key) },
    { label: 'Rate', class: 'num', cell: (l) => (l.rate !== null && l.rate !== undefined ? `${l.rate}/s${l.adaptive ? ' (adaptive)' : ''}` : '–') },
    { label: 'Burst', class: 'num', cell: (l) => (l.burst ? num(l.burst) : '–') },
    { label: 'Concurrency', class: 'num', cell: (l) => (l.concurrency ? num(l.concurrency) : '–') },
    { label: 'Breaker', cell: (l) => (l.breaker ? `${l.breaker.failures} failures → open ${duration(l.breaker.cooldown_ms)}${l.breaker.classes && l.breaker.classes.length ? ` (${l.breaker.classes.join(', ')})` : ''}` : '–') },
    { label: 'Blackout', cell: (l) => (l.blackout_until ? h('span', {}, badge('paused'), ' until ', timeEl(l.blackout_until)) : (l.blackouts && l.blackouts.length ? `${l.blackouts.length} windows` : '–')) },
    {
      label: 'Buckets now',
      class: 'wrap',
      cell: (l) => (l.buckets.length ? h('ul', { class: 'plain' }, l.buckets.map((b) => h('li', {},
        h('code', {}, b.bucket), ': ',
        [
          b.tokens !== null && b.tokens !== undefined ? `${b.tokens.toFixed(1)} tokens` : null,
          b.effective_rate !== null && b.effective_rate !== undefined ? `rate now ${b.effective_rate.toFixed(2)}/s` : null,
          b.leased !== null && b.leased !== undefined ? `${b.leased}${l.concurrency ? `/${l.concurrency}` : ''} leased` : null,
        ].filter(Boolean).join(', '),
        b.breaker ? [' ', badge(b.breaker.state)] : null))) : h('span', { class: 'muted' }, 'idle')),
    },
    { label: 'Updated', cell: (l) => timeEl(l.updated_at) },
  ], list, { caption: 'Limits of this tenant', empty: 'No limits: leases flow as fast as workers claim.' });
}

function breakersView(list) {
  const rows = [];
  for (const l of list) {
    if (!l.breaker) continue;
    for (const b of l.buckets) {
      rows.push({ limit: l.key, bucket: b.bucket, state: b.breaker ? b.breaker.state : 'closed', failures: b.breaker ? b.breaker.failures : 0, opened_at: b.breaker && b.breaker.opened_at, spec: l.breaker });
    }
    if (!l.buckets.length) rows.push({ limit: l.key, bucket: l.key, state: 'closed', failures: 0, opened_at: null, spec: l.breaker });
  }
  return table([
    { label: 'Bucket', cell: (r) => h('code', {}, r.bucket) },
    { label: 'State', cell: (r) => badge(r.state) },
    { label: 'Failures in a row', class: 'num', cell: (r) => `${r.failures} of ${r.spec.failures}` },
    { label: 'Opened', cell: (r) => timeEl(r.opened_at, { relative: true }) },
    { label: 'Limit', cell: (r) => h('code', {}, r.limit) },
  ], rows, { caption: 'Breakers per bucket (a bucket never failed is closed)', empty: 'No limit has a circuit breaker.' });
}

function incidentsView(list) {
  return table([
    { label: 'When', cell: (e) => timeEl(e.at, { relative: true }) },
    { label: 'State', cell: (e) => badge((e.data && e.data.state) || 'open') },
    { label: 'Limit', cell: (e) => h('code', {}, (e.data && e.data.limit) || '') },
    { label: 'Bucket', cell: (e) => h('code', {}, (e.data && e.data.bucket) || '') },
    { label: 'Failures', class: 'num', cell: (e) => String((e.data && e.data.failures) ?? '') },
    { label: 'Job', cell: (e) => (e.data && e.data.job_id ? h('a', { href: link(`/jobs/${e.data.job_id}`), class: 'mono' }, `…${e.data.job_id.slice(-12)}`) : '') },
    { label: 'Event', class: 'num', cell: (e) => String(e.id) },
  ], list, { caption: 'Breaker openings and closings in the last 7 days, newest first', empty: 'No breaker opened in the last 7 days.' });
}

function quotaView(q) {
  const u = q.usage;
  const quota = q.quota;
  const line = (label, used, max) => h('p', {}, h('strong', {}, label), `: ${num(used)} `,
    max !== null && max !== undefined ? h('span', {}, `of ${num(max)} `, h('progress', { max: String(max), value: String(Math.min(used, max)), 'aria-label': label })) : h('span', { class: 'muted' }, '(no limit)'));
  return [
    h('p', { class: 'muted small' }, `Tenant ${q.tenant}.`, quota ? [' Quota set ', timeEl(quota.updated_at), '.'] : ' No quota: no limit.'),
    line('Waiting (queued + blocked)', u.queued + u.blocked, quota && quota.max_queued),
    line('Leased', u.leased, quota && quota.max_leased),
    quota ? jsonBlock(quota, 'Quota') : null,
  ];
}
