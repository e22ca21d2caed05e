// Runs: newest first, filtered by status and name, with cursor pages; each with its jobs
// counted by state.

import { api } from '../api.js';
import { h, fill, table, errorBox, num, shortId } from '../dom.js';
import { JOB_STATES, RUN_STATUSES, badge } from '../states.js';
import { stackedBar } from '../charts.js';
import { timeEl } from '../time.js';
import { link, setQuery } from '../router.js';
import { every } from '../poll.js';

const FILTERS = ['status', 'name', 'correlation_id', 'since', 'until'];

export default async function runs(ctx) {
  ctx.title('Runs');
  const filter = Object.fromEntries([...FILTERS, 'cursor'].map((k) => [k, ctx.query.get(k) || '']));
  const results = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  fill(ctx.main,
    h('div', { class: 'page-head' }, h('h1', {}, 'Runs')),
    h('section', { class: 'panel', 'aria-label': 'Filter' }, form(filter)),
    h('section', { class: 'panel', 'aria-label': 'Runs' }, results));
  const load = async () => {
    try {
      const query = {};
      for (const k of [...FILTERS, 'cursor']) if (filter[k]) query[k] = filter[k];
      const page = await api('/v1/runs', { signal: ctx.signal, query });
      fill(results, view(page, filter));
    } catch (err) {
      if (err.name !== 'AbortError') fill(results, errorBox(err));
    }
  };
  await load();
  every(10000, ctx.signal, load);
}

function form(filter) {
  const status = h('select', { id: 'f-status' }, h('option', { value: '' }, 'any status'),
    RUN_STATUSES.map((st) => h('option', { value: st }, st)));
  status.value = filter.status;
  const name = h('input', { id: 'f-name', type: 'text', autocomplete: 'off', placeholder: 'any name' });
  name.value = filter.name;
  const since = h('input', { id: 'f-since', type: 'text', autocomplete: 'off', placeholder: '2025-01-31T00:00:00Z' });
  since.value = filter.since;
  const el = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter runs' },
    h('div', { class: 'field' }, h('label', { for: 'f-status' }, 'Status'), status),
    h('div', { class: 'field' }, h('label', { for: 'f-name' }, 'Name'), name),
    h('div', { class: 'field' }, h('label', { for: 'f-since' }, 'Submitted since (RFC 3339)'), since),
    h('div', { class: 'actions' },
      h('button', { type: 'submit', class: 'primary' }, 'Apply'),
      h('a', { class: 'button', href: link('/runs') }, 'Clear')));
  el.addEventListener('submit', (e) => {
    e.preventDefault();
    setQuery({ status: status.value, name: name.value.trim(), since: since.value.trim() });
  });
  return el;
}

function view(page, filter) {
  const rows = page.runs || [];
  const total = (r) => Object.values(r.jobs || {}).reduce((a, b) => a + b, 0);
  return [
    table([
      { label: 'Run', cell: (r) => h('a', { href: link(`/runs/${r.id}`), title: r.id }, r.name || shortId(r.id)) },
      { label: 'Status', cell: (r) => badge(r.status) },
      { label: 'Jobs', class: 'num', cell: (r) => num(total(r)) },
      { label: 'By state', cell: (r) => h('span', {}, stackedBar(r.jobs || {}, JOB_STATES), ' ',
        h('span', { class: 'small' }, JOB_STATES.filter((st) => r.jobs && r.jobs[st]).map((st) => `${r.jobs[st]} ${st}`).join(', '))) },
      { label: 'Submitted', cell: (r) => timeEl(r.created_at, { relative: true }) },
      { label: 'Updated', cell: (r) => timeEl(r.updated_at) },
      { label: 'Project', cell: (r) => r.project || '–' },
    ], rows, { caption: 'Runs, newest first', empty: 'No run matches this filter.' }),
    h('nav', { class: 'pager', 'aria-label': 'Pages' },
      filter.cursor ? h('a', { href: link('/runs', { ...filter, cursor: '' }) }, '← First page') : null,
      page.next_cursor ? h('a', { href: link('/runs', { ...filter, cursor: page.next_cursor }), rel: 'next' }, 'Next page →') : null,
      h('span', { class: 'muted small' }, `${rows.length} shown`)),
  ];
}
