// Jobs: a filter form (its values live in the URL), newest first with cursor pages, and bulk
// replay / cancel of what the filter matches.

import { api } from '../api.js';
import { h, fill, table, errorBox, shortId } from '../dom.js';
import { JOB_STATES, badge } from '../states.js';
import { timeEl } from '../time.js';
import { link, setQuery } from '../router.js';
import { bulkReplay, bulkCancel } from '../bulk.js';

const BASIC = ['queue', 'state', 'kind'];
const MORE = ['run_id', 'correlation_id', 'since', 'until', 'limit'];

export default async function jobs(ctx) {
  ctx.title('Jobs');
  const filter = Object.fromEntries([...BASIC, ...MORE, 'cursor'].map((k) => [k, ctx.query.get(k) || '']));
  const results = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const queueList = h('datalist', { id: 'queue-names' });
  fill(ctx.main,
    h('div', { class: 'page-head' }, h('h1', {}, 'Jobs'),
      h('div', { class: 'actions' },
        h('button', { type: 'button', onclick: () => reload() }, 'Refresh'),
        h('button', { type: 'button', onclick: () => bulkReplay(filter, () => reload()) }, 'Replay dead jobs…'),
        h('button', { type: 'button', onclick: () => bulkCancel(filter, () => reload()) }, 'Cancel matching jobs…'))),
    h('section', { class: 'panel', 'aria-label': 'Filter' }, filterForm(filter, queueList), queueList),
    h('section', { class: 'panel', 'aria-label': 'Jobs', 'aria-live': 'polite', 'aria-busy': 'false' }, results));

  api('/v1/queues', { signal: ctx.signal })
    .then(({ queues }) => fill(queueList, queues.map((q) => h('option', { value: q.name }))))
    .catch(() => {});

  const reload = async () => {
    try {
      const query = {};
      for (const k of [...BASIC, ...MORE, 'cursor']) if (filter[k]) query[k] = filter[k];
      const page = await api('/v1/jobs', { signal: ctx.signal, query });
      fill(results, listView(page, filter));
    } catch (err) {
      if (err.name !== 'AbortError') fill(results, errorBox(err));
    }
  };
  await reload();
}

function field(name, label, input) {
  input.id = `f-${name}`;
  input.name = name;
  return h('div', { class: 'field' }, h('label', { for: input.id }, label), input);
}

function filterForm(filter, queueList) {
  const inputs = {
    queue: h('input', { type: 'text', list: queueList.id, autocomplete: 'off', placeholder: 'any queue' }),
    state: h('select', {}, h('option', { value: '' }, 'any state'), JOB_STATES.map((st) => h('option', { value: st }, st))),
    kind: h('input', { type: 'text', autocomplete: 'off', placeholder: 'any kind' }),
    run_id: h('input', { type: 'text', class: 'wide', autocomplete: 'off', placeholder: 'run id' }),
    correlation_id: h('input', { type: 'text', autocomplete: 'off' }),
    since: h('input', { type: 'text', autocomplete: 'off', placeholder: '1h or 2025-01-31T12:00:00Z' }),
    until: h('input', { type: 'text', autocomplete: 'off', placeholder: 'RFC 3339 or duration' }),
    limit: h('input', { type: 'number', min: '1', max: '500', placeholder: '50' }),
  };
  for (const [k, el] of Object.entries(inputs)) el.value = filter[k] || '';
  const more = MORE.some((k) => filter[k]);
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter jobs' },
    field('queue', 'Queue', inputs.queue),
    field('state', 'State', inputs.state),
    field('kind', 'Kind', inputs.kind),
    h('div', { class: 'actions' },
      h('button', { type: 'submit', class: 'primary' }, 'Apply'),
      h('a', { class: 'button', href: link('/jobs') }, 'Clear')),
    h('details', { open: more },
      h('summary', {}, 'More filters'),
      h('div', { class: 'more' },
        field('run_id', 'Run id', inputs.run_id),
        field('correlation_id', 'Correlation id', inputs.correlation_id),
        field('since', 'Since', inputs.since),
        field('until', 'Until', inputs.until),
        field('limit', 'Page size', inputs.limit))));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const q = {};
    for (const [k, el] of Object.entries(inputs)) if (el.value.trim()) q[k] = el.value.trim();
    setQuery(q);
  });
  return form;
}

function listView(page, filter) {
  const rows = page.jobs || [];
  const tbl = table([
    { label: 'Job', cell: (j) => h('a', { href: link(`/jobs/${j.id}`), title: j.id, class: 'mono' }, shortId(j.id)) },
    { label: 'State', cell: (j) => badge(j.state, j.cancel_requested && j.state === 'leased' ? 'cancel requested' : null) },
    { label: 'Queue', cell: (j) => j.queue },
    { label: 'Kind', cell: (j) => h('code', {}, j.kind) },
    { label: 'Attempt', class: 'num', cell: (j) => `${j.attempt}/${j.max_attempts}` },
    { label: 'Created', cell: (j) => timeEl(j.created_at) },
    { label: 'Updated', cell: (j) => timeEl(j.updated_at) },
    { label: 'Run', cell: (j) => (j.run_id ? h('a', { href: link(`/runs/${j.run_id}`), title: j.run_id, class: 'mono' }, shortId(j.run_id)) : '–') },
    { label: 'Last error', class: 'wrap', cell: (j) => (j.last_error ? `${j.last_error.class || 'error'}: ${j.last_error.message || ''}` : '') },
  ], rows, { caption: 'Jobs, newest first', empty: 'No job matches this filter.' });
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages' },
    filter.cursor ? h('a', { href: link('/jobs', { ...filter, cursor: '' }) }, '← First page') : null,
    page.next_cursor ? h('a', { href: link('/jobs', { ...filter, cursor: page.next_cursor }), rel: 'next' }, 'Next page →') : null,
    h('span', { class: 'muted small' }, `${rows.length} shown`));
  return [tbl, pager];
}
