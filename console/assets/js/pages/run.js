// One run: its DAG (live: nodes change state as jobs move), a Gantt timeline of its jobs and
// their attempts, the jobs table; cancel the run.

import { api } from '../api.js';
import { h, fill, section, table, errorBox, toast, announce } from '../dom.js';
import { badge } from '../states.js';
import { timeEl, duration } from '../time.js';
import { link } from '../router.js';
import { subscribe } from '../sse.js';
import { confirmDialog } from '../dialog.js';
import { debounce } from '../poll.js';
import { dagView } from '../dag.js';
import { ganttView } from '../gantt.js';

export default async function runPage(ctx) {
  const [id] = ctx.params;
  ctx.title(`Run ${id}`);
  const title = h('h1', {}, 'Run ', h('span', { class: 'mono' }, id));
  const actions = h('div', { class: 'actions' });
  const facts = h('div', { 'aria-live': 'polite' }, h('p', { class: 'muted' }, 'Loading…'));
  const dagSlot = h('div', { class: 'graph-wrap' });
  const ganttSlot = h('div', {});
  const jobsSlot = h('div', {});
  const feedState = h('p', { class: 'muted small' });
  fill(ctx.main, h('div', { class: 'page-head' }, title, actions), facts,
    section('Graph', feedState, dagSlot,
      h('p', { class: 'muted small' }, 'Each box is a job: Tab moves between them, Enter opens one. Arrows point from a job to those that wait for it.')),
    section('Timeline', ganttSlot),
    section('Jobs', jobsSlot));

  const eventsByJob = new Map();
  let run = null;
  let dag = null;

  const render = () => {
    if (!run) return;
    ctx.title(`Run ${run.name || id}`);
    fill(title, 'Run ', run.name ? run.name : h('span', { class: 'mono' }, id));
    fill(actions);
    if (run.status === 'pending' || run.status === 'running') {
      actions.appendChild(h('button', { type: 'button', class: 'danger', onclick: () => cancelRun(run, load) }, 'Cancel run'));
    }
    const counts = {};
    for (const j of run.jobs) counts[j.state] = (counts[j.state] || 0) + 1;
    fill(facts, h('div', { class: 'panel' }, h('dl', { class: 'facts' }, [
      ['Status', h('span', { 'data-run-status': run.status }, badge(run.status))],
      ['Id', h('code', {}, run.id)],
      ['Jobs', Object.entries(counts).map(([st, n]) => `${n} ${st}`).join(', ')],
      ['Submitted', timeEl(run.created_at, { relative: true })],
      ['Started', timeEl(run.started_at)],
      ['Finished', timeEl(run.finished_at)],
      run.duration_seconds !== null && run.duration_seconds !== undefined ? ['Duration', duration(run.duration_seconds * 1000)] : null,
      run.cancelled_at ? ['Cancelled', timeEl(run.cancelled_at)] : null,
      run.project ? ['Project', run.project] : null,
      run.correlation_id ? ['Correlation id', h('a', { href: link('/jobs', { correlation_id: run.correlation_id }) }, run.correlation_id)] : null,
    ].filter(Boolean).flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]))));
    if (!dag) {
      dag = dagView(run.jobs, {
        href: (j) => link(`/jobs/${j.job_id}`),
        label: `Dependency graph of run ${run.name || run.id}: ${run.jobs.length} jobs`,
      });
      fill(dagSlot, dag.svg);
    } else {
      dag.update(run.jobs);
    }
    fill(ganttSlot, ganttView(run.jobs, eventsByJob, {
      t0: run.created_at,
      t1: run.finished_at || run.cancelled_at,
      label: `Timeline of run ${run.name || run.id}`,
    }));
    fill(jobsSlot, table([
      { label: 'Key', cell: (j) => h('a', { href: link(`/jobs/${j.job_id}`) }, j.key) },
      { label: 'State', cell: (j) => badge(j.state, j.cancel_reason || null) },
      { label: 'Kind', cell: (j) => h('code', {}, j.kind) },
      { label: 'Queue', cell: (j) => j.queue },
      { label: 'Attempt', class: 'num', cell: (j) => String(j.attempt) },
      { label: 'After', cell: (j) => j.depends_on.join(', ') || '–' },
      { label: 'Started', cell: (j) => timeEl(j.started_at) },
      { label: 'Finished', cell: (j) => timeEl(j.finished_at) },
    ], run.jobs, { caption: 'Jobs in dependency order' }));
  };

  const load = async () => {
    try {
      const before = run ? run.status : null;
      run = await api(`/v1/runs/${encodeURIComponent(id)}`, { signal: ctx.signal });
      render();
      if (before && before !== run.status) announce(`Run is now ${run.status}.`);
    } catch (err) {
      if (err.name === 'AbortError') return;
      fill(facts, err.status === 404
        ? h('p', { class: 'error', role: 'alert' }, 'No such run: ', err.message)
        : errorBox(err));
    }
  };
  const reload = debounce(load, 150);
  await load();
  if (!run) return;

  const feed = subscribe('/v1/events', { run_id: id }, {
    after: 0,
    onEvent: (e) => {
      if (e.job_id) {
        if (!eventsByJob.has(e.job_id)) eventsByJob.set(e.job_id, []);
        eventsByJob.get(e.job_id).push(e);
      }
      reload();
    },
    onStatus: (state, info) => {
      feedState.textContent = state === 'open' ? 'Live: the graph follows the run as its jobs move.'
        : state === 'error' ? `Live updates unavailable: ${info.error.message}` : state === 'closed' ? '' : `Live updates ${state}…`;
    },
  });
  ctx.onCleanup(() => feed.close());
}

async function cancelRun(run, reload) {
  const result = await confirmDialog({
    title: `Cancel run ${run.name || run.id}?`,
    body: h('p', {}, 'Its waiting jobs end cancelled at once; running ones are asked to stop at their next heartbeat.'),
    confirm: 'Cancel run',
    danger: true,
    action: () => api(`/v1/runs/${run.id}/cancel`, { method: 'POST' }),
  });
  if (!result) return;
  toast(`Run ${result.status}.`, 'ok');
  announce(`Run is now ${result.status}.`);
  await reload();
}
