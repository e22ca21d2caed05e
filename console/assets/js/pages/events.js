// The live event feed with filters (in the URL), pause and resume. Reading resumes from the
// last id seen (Last-Event-ID), after a pause or a dropped connection alike: no gap, no
// duplicate. It starts with the last TAIL matching events unless the URL says `after=<id>`.

import { h, fill, errorBox } from '../dom.js';
import { timeEl } from '../time.js';
import { link, setQuery } from '../router.js';
import { subscribe } from '../sse.js';

const FILTERS = ['queue', 'type', 'job_id', 'run_id'];
const KEEP = 500;
const TAIL = 50;
const TYPES = ['enqueued', 'leased', 'lease_expired', 'checkpoint', 'succeeded', 'retry_scheduled', 'dead',
  'cancel_requested', 'cancelled', 'released', 'retried', 'unblocked', 'reblocked', 'run_created', 'run_status', 'audit', 'breaker'];

export default async function events(ctx) {
  ctx.title('Events');
  const filter = Object.fromEntries(FILTERS.map((k) => [k, ctx.query.get(k) || '']));
  const rows = h('tbody', {});
  const status = h('span', { class: 'feed-state' }, h('span', { class: 'dot' }), 'connecting');
  const lastId = h('span', { 'data-last-id': '' }, 'Last id: –');
  const count = h('span', {}, '0 shown');
  const pauseBtn = h('button', { type: 'button', 'aria-pressed': 'false' }, 'Pause');
  const errors = h('div', {});
  const announcer = h('p', { class: 'sr-only', 'aria-live': 'polite' });
  fill(ctx.main,
    h('div', { class: 'page-head' }, h('h1', {}, 'Events'),
      h('div', { class: 'actions' }, pauseBtn, h('button', { type: 'button', onclick: () => { rows.replaceChildren(); shown = 0; count.textContent = '0 shown'; } }, 'Clear list'))),
    h('section', { class: 'panel', 'aria-label': 'Filter' }, form(filter)),
    h('section', { class: 'panel', 'aria-label': 'Feed' },
      h('p', { class: 'feed-status', role: 'status' }, status, lastId, count),
      errors, announcer,
      h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': 'Events, newest first' },
        h('table', { class: 'events' },
          h('caption', {}, 'Newest first; the list keeps the last 500.'),
          h('thead', {}, h('tr', {}, ['Id', 'Type', 'At', 'Queue', 'Job', 'Run', 'Worker', 'Change'].map((c) => h('th', { scope: 'col' }, c)))),
          rows))));

  let shown = 0;
  let feed = null;
  let paused = false;
  let newSince = 0;
  let quiet = null;

  const add = (e) => {
    const tr = h('tr', { class: 'fresh', 'data-id': String(e.id) },
      h('th', { scope: 'row', class: 'num' }, String(e.id)),
      h('td', {}, h('code', {}, e.type)),
      h('td', {}, timeEl(e.at)),
      h('td', {}, e.queue ? h('a', { href: link('/events', { ...filter, queue: e.queue }) }, e.queue) : ''),
      h('td', {}, e.job_id ? h('a', { href: link(`/jobs/${e.job_id}`), class: 'mono', title: e.job_id }, `…${e.job_id.slice(-12)}`) : ''),
      h('td', {}, e.run_id ? h('a', { href: link(`/runs/${e.run_id}`), class: 'mono', title: e.run_id }, `…${e.run_id.slice(-12)}`) : ''),
      h('td', {}, e.worker_id || ''),
      h('td', {}, e.data && e.data.to ? `${e.data.from || '–'} → ${e.data.to}` : ''));
    rows.prepend(tr);
    shown += 1;
    while (rows.childElementCount > KEEP) rows.lastElementChild.remove();
    count.textContent = `${Math.min(shown, KEEP)} shown`;
    lastId.textContent = `Last id: ${e.id}`;
    newSince += 1;
    // Tell screen readers in batches, not per event.
    clearTimeout(quiet);
    quiet = setTimeout(() => { announcer.textContent = `${newSince} new events`; newSince = 0; }, 2000);
  };

  const setStatus = (state, info) => {
    const words = {
      connecting: 'connecting…', open: 'live', reconnecting: `reconnecting from id ${info.lastId ?? 0}…`,
      retrying: `retrying: ${info.error ? info.error.message : ''}`, resync: 'caught up from the ledger', closed: paused ? 'paused' : 'closed',
      error: 'stopped',
    }[state] || state;
    fill(status, h('span', { class: `dot ${state}`, 'aria-hidden': 'true' }), words);
    if (state === 'error') fill(errors, errorBox(info.error));
  };

  // With no id to resume from, start with the last events (`tail`); a reconnect's
  // Last-Event-ID wins over it on the coordinator.
  const connect = (after) => {
    const query = after === null ? { ...filter, tail: TAIL } : filter;
    feed = subscribe('/v1/events', query, { after, onEvent: add, onStatus: setStatus });
  };

  pauseBtn.addEventListener('click', () => {
    if (!paused) {
      paused = true;
      feed.close();
      pauseBtn.textContent = 'Resume';
      pauseBtn.setAttribute('aria-pressed', 'true');
    } else {
      paused = false;
      pauseBtn.textContent = 'Pause';
      pauseBtn.setAttribute('aria-pressed', 'false');
      connect(feed.lastId);
    }
  });
  ctx.onCleanup(() => { if (feed) feed.close(); clearTimeout(quiet); });

  const explicit = ctx.query.get('after');
  connect(explicit !== null && explicit !== '' ? Number(explicit) : null);
}

function form(filter) {
  const inputs = {
    queue: h('input', { type: 'text', autocomplete: 'off', placeholder: 'any queue' }),
    type: h('input', { type: 'text', autocomplete: 'off', placeholder: 'e.g. dead,retry_scheduled', list: 'event-types' }),
    job_id: h('input', { type: 'text', class: 'wide', autocomplete: 'off', placeholder: 'job id' }),
    run_id: h('input', { type: 'text', class: 'wide', autocomplete: 'off', placeholder: 'run id' }),
  };
  const labels = { queue: 'Queue', type: 'Types (comma-separated)', job_id: 'Job id', run_id: 'Run id' };
  const fields = Object.entries(inputs).map(([k, el]) => {
    el.id = `f-${k}`;
    el.value = filter[k] || '';
    return h('div', { class: 'field' }, h('label', { for: el.id }, labels[k]), el);
  });
  const el = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter events' }, fields,
    h('datalist', { id: 'event-types' }, TYPES.map((t) => h('option', { value: t }))),
    h('div', { class: 'actions' },
      h('button', { type: 'submit', class: 'primary' }, 'Apply'),
      h('a', { class: 'button', href: link('/events') }, 'Clear')));
  el.addEventListener('submit', (e) => {
    e.preventDefault();
    const q = {};
    for (const [k, input] of Object.entries(inputs)) if (input.value.trim()) q[k] = input.value.trim();
    setQuery(q);
  });
  return el;
}
