// One job: its state (live, from the event feed), attempts, every event, checkpoint and
// progress, result or error, artifacts with downloads; cancel and retry.

import { api, download } from '../api.js';
import { h, fill, section, table, errorBox, jsonBlock, num, toast, announce } from '../dom.js';
import { badge, isTerminal } from '../states.js';
import { timeEl, duration } from '../time.js';
import { link } from '../router.js';
import { subscribe } from '../sse.js';
import { confirmDialog } from '../dialog.js';
import { debounce } from '../poll.js';
import { attemptsOf } from '../attempts.js';

export default async function jobPage(ctx) {
  const [id] = ctx.params;
  ctx.title(`Job ${id}`);
  const head = h('div', { class: 'page-head' }, h('h1', {}, 'Job ', h('span', { class: 'mono' }, id)));
  const summary = h('div', { 'aria-live': 'polite' }, h('p', { class: 'muted' }, 'Loading…'));
  const attemptsSlot = h('div', {});
  const eventsSlot = h('div', {}, h('p', { class: 'muted' }, 'Loading events…'));
  const feedState = h('span', { class: 'muted small' });
  fill(ctx.main, head, summary,
    section('Attempts', attemptsSlot),
    section('Events', h('p', { class: 'feed-status' }, feedState), eventsSlot));

  const events = [];
  let job = null;

  const load = async () => {
    try {
      job = await api(`/v1/jobs/${encodeURIComponent(id)}`, { signal: ctx.signal });
      fill(summary, jobView(job, load));
      renderAttempts();
    } catch (err) {
      if (err.name === 'AbortError') return;
      fill(summary, err.status === 404
        ? h('div', {}, h('p', { class: 'error', role: 'alert' }, 'No such job: ', err.message), h('p', {}, h('a', { href: link('/jobs') }, 'Back to the jobs')))
        : errorBox(err));
    }
  };
  const reload = debounce(load, 150);

  const renderAttempts = () => {
    const { attempts } = attemptsOf(events);
    fill(attemptsSlot, table([
      { label: '#', cell: (a) => String(a.n) },
      { label: 'Outcome', cell: (a) => badge(a.outcome === 'running' ? 'leased' : a.outcome === 'failed' ? 'dead' : a.outcome, a.outcome === 'failed' ? 'failed, retried' : null) },
      { label: 'Worker', cell: (a) => (a.worker ? h('code', {}, a.worker) : '–') },
      { label: 'Started', cell: (a) => timeEl(a.start) },
      { label: 'Ended', cell: (a) => timeEl(a.end) },
      { label: 'Took', class: 'num', cell: (a) => (a.end ? duration(new Date(a.end) - new Date(a.start)) : 'running') },
      { label: 'Error', class: 'wrap', cell: (a) => (a.error ? `${a.error.class || 'error'}: ${a.error.message || ''}` : '') },
    ], attempts, { caption: 'Attempts, read from the job\'s events', empty: job && job.attempt ? 'Loading…' : 'Not claimed yet.' }));
  };

  const renderEvents = () => {
    fill(eventsSlot, table([
      { label: 'Id', class: 'num', cell: (e) => String(e.id) },
      { label: 'Type', cell: (e) => h('code', {}, e.type) },
      { label: 'At', cell: (e) => timeEl(e.at) },
      { label: 'Change', cell: (e) => (e.data && e.data.to ? `${e.data.from || '–'} → ${e.data.to}` : '') },
      { label: 'Worker', cell: (e) => e.worker_id || '' },
      { label: 'Detail', class: 'wrap', cell: (e) => detail(e) },
    ], [...events].reverse(), { caption: 'Every event of this job, newest first (live)', empty: 'No events yet.' }));
  };

  const paint = debounce(() => { renderEvents(); renderAttempts(); }, 60);
  await load();
  const feed = subscribe('/v1/events', { job_id: id }, {
    after: 0,
    onEvent: (e) => {
      events.push(e);
      paint();
      reload();
    },
    onStatus: (state, info) => {
      feedState.textContent = state === 'open' ? 'Live: new events appear as they happen.'
        : state === 'error' ? `Event feed unavailable: ${info.error.message}`
          : state === 'closed' ? '' : `Event feed ${state}…`;
      if (state === 'open' && !events.length) renderEvents();
    },
  });
  ctx.onCleanup(() => feed.close());
}

function detail(e) {
  const d = { ...(e.data || {}) };
  delete d.from;
  delete d.to;
  if (d.error) return `${d.error.class || 'error'}: ${d.error.message || ''}${d.error.retryable === false ? ' (not retryable)' : ''}`;
  const keys = Object.keys(d);
  return keys.length ? keys.map((k) => `${k}=${typeof d[k] === 'object' ? JSON.stringify(d[k]) : d[k]}`).join(' ') : '';
}

function jobView(job, reload) {
  const actions = h('div', { class: 'actions' });
  if (!isTerminal(job.state)) {
    actions.appendChild(h('button', { type: 'button', class: 'danger', disabled: job.cancel_requested, onclick: () => cancel(job, reload) },
      job.cancel_requested ? 'Cancel requested' : 'Cancel job'));
  }
  if (job.state === 'dead' || job.state === 'cancelled') {
    actions.appendChild(h('button', { type: 'button', class: 'primary', onclick: () => retry(job, reload) }, 'Retry (replay)'));
  }
  const state = h('p', { class: 'job-state' }, 'State: ', h('span', { 'data-job-state': job.state }, badge(job.state,
    job.cancel_requested && job.state === 'leased' ? 'cancel requested' : null)),
  job.cancel_reason ? h('span', { class: 'muted' }, ` reason: ${job.cancel_reason}`) : null);

  const facts = [
    ['Queue', h('a', { href: link('/jobs', { queue: job.queue }) }, job.queue)],
    ['Kind', h('code', {}, job.kind)],
    ['Attempt', `${job.attempt} of ${job.max_attempts}`],
    ['Priority', String(job.priority)],
    ['Created', timeEl(job.created_at, { relative: true })],
    ['Run at', timeEl(job.run_at)],
    ['Started', timeEl(job.started_at)],
    ['Finished', timeEl(job.finished_at)],
    job.state === 'leased' ? ['Lease expires', timeEl(job.lease_expires_at, { relative: true })] : null,
    job.deadline_at ? ['Deadline', timeEl(job.deadline_at)] : null,
    ['Worker', job.worker_id ? h('code', {}, job.worker_id) : '–'],
    job.worker_version ? ['Worker version', job.worker_version] : null,
    job.run_id ? ['Run', h('a', { href: link(`/runs/${job.run_id}`), class: 'mono' }, job.run_id)] : null,
    job.correlation_id ? ['Correlation id', h('a', { href: link('/jobs', { correlation_id: job.correlation_id }) }, job.correlation_id)] : null,
    job.project ? ['Project', job.project] : null,
    job.idempotency_key ? ['Idempotency key', h('code', {}, job.idempotency_key)] : null,
    job.timeout_ms ? ['Timeout', duration(job.timeout_ms)] : null,
    job.limit_keys && job.limit_keys.length ? ['Limit keys', job.limit_keys.join(', ')] : null,
    ['Inputs hash', h('code', {}, job.inputs_hash)],
  ].filter(Boolean);

  const parts = [
    h('div', { class: 'page-head' }, state, actions),
    h('div', { class: 'grid' },
      section('Details', h('dl', { class: 'facts' }, facts.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]))),
      section('Payload', jsonBlock(job.payload, 'Payload'))),
  ];
  const work = [];
  if (job.progress) work.push(h('h3', {}, 'Progress'), progressView(job.progress));
  if (job.checkpoint) work.push(h('h3', {}, 'Checkpoint'), jsonBlock(job.checkpoint, 'Checkpoint'));
  if (job.result) work.push(h('h3', {}, 'Result'), jsonBlock(job.result, 'Result'));
  if (job.last_error) {
    work.push(h('h3', {}, job.state === 'succeeded' ? 'Last error (an earlier attempt)' : 'Error'),
      h('p', { class: job.state === 'dead' ? 'error' : '' }, h('strong', {}, job.last_error.class || 'error'), ': ', job.last_error.message || ''),
      jsonBlock(job.last_error, 'Error'));
  }
  if (work.length) parts.push(section('Progress, checkpoint and outcome', work));
  parts.push(section('Artifacts', table([
    { label: 'Name', cell: (a) => a.name },
    { label: 'Size', class: 'num', cell: (a) => `${num(a.size)} B` },
    { label: 'Type', cell: (a) => a.media_type },
    { label: 'Digest', cell: (a) => h('code', { title: a.digest }, `${a.digest.slice(0, 19)}…`) },
    {
      label: 'Download',
      cell: (a) => h('button', {
        type: 'button',
        'aria-label': `Download ${a.name}`,
        onclick: () => download(`/v1/artifacts/${encodeURIComponent(a.digest)}`, a.name.split('/').pop())
          .catch((err) => toast(`Download failed: ${err.message}`, 'error')),
      }, 'Download'),
    },
  ], job.artifacts || [], { caption: 'Artifacts of the successful attempt', empty: 'No artifacts.' })));
  return parts;
}

function progressView(progress) {
  const done = Number(progress.done ?? progress.current ?? progress.completed);
  const total = Number(progress.total);
  const bar = Number.isFinite(done) && Number.isFinite(total) && total > 0
    ? h('p', {}, h('progress', { class: 'progress', max: String(total), value: String(done), 'aria-label': 'Progress' }),
      ` ${num(done)} of ${num(total)} (${Math.round((done / total) * 100)} %)`)
    : null;
  return [bar, jsonBlock(progress, 'Progress')];
}

async function cancel(job, reload) {
  const result = await confirmDialog({
    title: 'Cancel this job?',
    body: job.state === 'leased'
      ? h('p', {}, 'It is running: its worker is asked to stop at its next heartbeat, and the job ends cancelled when the worker reports.')
      : h('p', {}, `It is ${job.state}: it ends cancelled at once.`),
    fields: [{ name: 'reason', label: 'Reason (optional, recorded on the job)', maxlength: 1000 }],
    confirm: 'Cancel job',
    danger: true,
    action: (v) => api(`/v1/jobs/${job.id}/cancel`, { method: 'POST', body: v.reason ? { reason: v.reason } : {} }),
  });
  if (!result) return;
  const words = result.state === 'cancelled' ? 'Job cancelled.' : 'Cancel requested: waiting for the worker.';
  toast(words, 'ok');
  announce(words);
  await reload();
}

async function retry(job, reload) {
  const result = await confirmDialog({
    title: 'Retry this job?',
    body: h('p', {}, `It goes back to queued (or blocked, behind unfinished parents in its run) with a fresh budget of ${job.max_attempts} attempts.`),
    confirm: 'Retry job',
    action: () => api(`/v1/jobs/${job.id}/retry`, { method: 'POST' }),
  });
  if (!result) return;
  const words = `Job sent back: now ${result.state}.`;
  toast(words, 'ok');
  announce(words);
  await reload();
}
