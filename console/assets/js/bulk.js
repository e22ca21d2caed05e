// Bulk actions by filter, dry run first: replay dead (or cancelled) jobs (POST /v1/replays) and
// cancel jobs (POST /v1/cancellations). Step one asks why (reason, ticket: both audited) and
// counts; step two names the count and asks to confirm.

import { api } from './api.js';
import { h, num, toast, announce } from './dom.js';
import { confirmDialog } from './dialog.js';
import { link } from './router.js';

const WHY = [
  { name: 'reason', label: 'Reason (recorded in the audit trail)', required: true, maxlength: 1000, multiline: true },
  { name: 'ticket', label: 'Change ticket', required: true, maxlength: 200, placeholder: 'OPS-1234' },
];

export async function bulkReplay(filter, done) {
  const state = filter.state === 'cancelled' ? 'cancelled' : 'dead';
  // Only the filters that are set: an older coordinator refuses a field it does not know (422
  // naming it), which is clearer than a filter silently left out.
  const body = { state };
  for (const k of ['queue', 'kind', 'run_id', 'correlation_id', 'since', 'until']) {
    if (filter[k]) body[k] = filter[k];
  }
  const note = filter.state && filter.state !== state
    ? h('p', { class: 'notice' }, `Only dead or cancelled jobs are replayed: the state filter ${filter.state} is replaced by dead.`)
    : null;
  return bulk({
    note,
    what: `${state} jobs`,
    path: '/v1/replays',
    body,
    verb: 'Replay',
    counted: (r) => r.replayed,
    describe: describeFilter(body),
    done,
  });
}

export async function bulkCancel(filter, done) {
  const body = {};
  for (const k of ['queue', 'kind', 'state', 'run_id', 'correlation_id', 'since', 'until']) {
    if (filter[k]) body[k] = filter[k];
  }
  return bulk({
    what: 'jobs',
    path: '/v1/cancellations',
    body,
    verb: 'Cancel',
    counted: (r) => r.cancelled,
    describe: describeFilter(body),
    danger: true,
    done,
  });
}

async function bulk({ what, path, body, verb, counted, describe, danger, done, note = null }) {
  let why = null;
  const dry = await confirmDialog({
    title: `${verb} ${what} matching this filter`,
    body: [h('p', {}, 'Filter: ', describe), note, h('p', { class: 'muted small' }, 'First a dry run counts the jobs; nothing changes until you confirm.')],
    fields: WHY,
    confirm: 'Count matching jobs',
    action: async (values) => {
      why = values;
      return api(path, { method: 'POST', body: { ...body, ...values, dry_run: true } });
    },
  });
  if (!dry) return;
  if (!dry.matched) {
    await confirmDialog({ title: `No ${what} match`, body: h('p', {}, 'Nothing to do: no job matches ', describe, '.'), confirm: 'Close' });
    return;
  }
  const ids = dry.job_ids || [];
  const result = await confirmDialog({
    title: `${verb} ${num(dry.matched)} ${what}?`,
    body: [
      h('p', {}, h('strong', {}, num(dry.matched)), ` ${what} match `, describe, '.'),
      h('details', {}, h('summary', {}, 'Matching job ids'),
        h('ul', { class: 'small' }, ids.slice(0, 50).map((id) => h('li', {}, h('a', { href: link(`/jobs/${id}`) }, h('code', {}, id))))),
        ids.length > 50 ? h('p', { class: 'muted small' }, `and ${num(ids.length - 50)} more`) : null),
      h('p', {}, 'Reason: ', why.reason, h('br'), 'Ticket: ', why.ticket),
    ],
    confirm: `${verb} ${num(dry.matched)} jobs`,
    danger,
    action: () => api(path, { method: 'POST', body: { ...body, ...why, dry_run: false } }),
  });
  if (!result) return;
  const n = counted(result);
  const words = `${verb === 'Replay' ? 'Replayed' : 'Cancelled'} ${num(n)} of ${num(result.matched)} jobs` +
    (result.audit_event_id ? ` (audit event ${result.audit_event_id}).` : '.');
  toast(words, 'ok');
  announce(words);
  if (done) await done(result);
}

function describeFilter(body) {
  const parts = Object.entries(body).filter(([, v]) => v).map(([k, v]) => h('code', {}, `${k}=${v}`));
  if (!parts.length) return h('em', {}, 'every job');
  return parts.flatMap((p, i) => (i ? [', ', p] : [p]));
}
