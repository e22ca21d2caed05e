// A job's attempts read from its events: each `leased` starts one, the next outcome of the
// lease ends it. Used by the job page (a table) and the run page (the Gantt chart).

const ENDS = {
  succeeded: 'succeeded',
  retry_scheduled: 'failed',
  dead: 'dead',
  cancelled: 'cancelled',
  lease_expired: 'expired',
  released: 'released',
};

// events: one job's events, any order → {queuedAt, attempts: [{n, worker, start, end, outcome, error}]}
export function attemptsOf(events) {
  const sorted = [...events].sort((a, b) => a.id - b.id);
  const attempts = [];
  let open = null;
  let queuedAt = null;
  for (const e of sorted) {
    const to = e.data && e.data.to;
    if (queuedAt === null && (e.type === 'enqueued' || e.type === 'unblocked') && to === 'queued') queuedAt = e.at;
    if (e.type === 'leased') {
      if (open) { open.end = e.at; open.outcome = 'expired'; }
      open = {
        n: (e.data && e.data.attempt) || attempts.length + 1,
        worker: e.worker_id,
        start: e.at,
        end: null,
        outcome: 'running',
        error: null,
      };
      attempts.push(open);
    } else if (open && ENDS[e.type] && (e.data ? e.data.from === 'leased' || e.data.from === undefined : true)) {
      open.end = e.at;
      open.outcome = ENDS[e.type];
      open.error = (e.data && e.data.error) || null;
      open = null;
    }
  }
  return { queuedAt, attempts };
}
