// Queues: depth per state, pause and resume (with a confirmation), refreshed every 5 s.

import { api } from '../api.js';
import { h, fill, table, errorBox, num, toast, announce } from '../dom.js';
import { JOB_STATES, badge } from '../states.js';
import { stackedBar } from '../charts.js';
import { confirmDialog } from '../dialog.js';
import { link } from '../router.js';
import { every } from '../poll.js';
import { duration } from '../time.js';

export default async function queues(ctx) {
  ctx.title('Queues');
  const body = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  fill(ctx.main,
    h('div', { class: 'page-head' }, h('h1', {}, 'Queues'),
      h('p', { class: 'muted small' }, 'A paused queue grants no new leases; leases already held run on.')),
    h('section', { class: 'panel', 'aria-label': 'Queues' }, body));

  const load = async () => {
    try {
      const { queues: list } = await api('/v1/queues', { signal: ctx.signal });
      fill(body, view(list, load));
    } catch (err) {
      if (err.name !== 'AbortError') fill(body, errorBox(err));
    }
  };
  await load();
  every(5000, ctx.signal, load);
}

function view(list, reload) {
  return table([
    { label: 'Queue', cell: (q) => h('a', { href: link('/jobs', { queue: q.name }) }, q.name) },
    { label: 'Status', cell: (q) => h('span', { 'data-queue-status': q.name }, badge(q.paused ? 'paused' : 'active')) },
    ...JOB_STATES.map((st) => ({
      label: st, class: 'num',
      cell: (q) => (q.depth[st] ? h('a', { href: link('/jobs', { queue: q.name, state: st }) }, num(q.depth[st])) : '0'),
    })),
    { label: 'Mix', cell: (q) => stackedBar(q.depth, JOB_STATES) },
    { label: 'Default timeout', cell: (q) => (q.default_timeout_ms ? duration(q.default_timeout_ms) : h('span', { class: 'muted' }, 'none')) },
    {
      label: 'Action',
      cell: (q) => h('button', {
        type: 'button',
        class: q.paused ? 'primary' : null,
        'aria-label': `${q.paused ? 'Resume' : 'Pause'} queue ${q.name}`,
        onclick: () => toggle(q, reload),
      }, q.paused ? 'Resume' : 'Pause'),
    },
  ], list, { caption: 'Every queue with jobs or paused', empty: 'No queues yet: nothing has been enqueued.' });
}

async function toggle(q, reload) {
  const verb = q.paused ? 'resume' : 'pause';
  const result = await confirmDialog({
    title: `${q.paused ? 'Resume' : 'Pause'} queue ${q.name}?`,
    body: q.paused
      ? h('p', {}, `Workers will be granted leases from ${q.name} again (${num(q.depth.queued)} jobs queued).`)
      : h('p', {}, `No new leases will be granted from ${q.name}. `, num(q.depth.leased),
        ' jobs already leased run on; ', num(q.depth.queued), ' queued jobs wait.'),
    confirm: q.paused ? 'Resume queue' : 'Pause queue',
    danger: !q.paused,
    action: () => api(`/v1/queues/${encodeURIComponent(q.name)}/${verb}`, { method: 'POST' }),
  });
  if (!result) return;
  const words = `Queue ${result.name} is now ${result.paused ? 'paused' : 'active'}.`;
  toast(words, 'ok');
  announce(words);
  await reload();
}
