// Seeds a coordinator through its API with what every page of the console has to show:
// succeeded, dead, retried and leased jobs in a few queues, an artifact, a checkpoint and
// progress, a run with a DAG part done, a paused queue, a limit with a breaker.

import { sleep } from './client.mjs';

export async function seed(api) {
  const out = {};
  // email: 6 jobs, 3 succeed (one with an artifact), 2 die, 1 stays leased with progress.
  const email = [];
  for (let i = 0; i < 6; i += 1) {
    email.push(await api.enqueue({
      queue: 'email', kind: i % 2 ? 'send_digest' : 'send_welcome', payload: { to: `user${i}@example.com` },
      max_attempts: 1, correlation_id: `signup-${i}`,
    }));
  }
  const byId = await api.claimAll('worker-a', 'email', email.map((j) => j.id));
  const digest = await api.putArtifact(Buffer.from('hello from the console suite\n'));
  await api.complete(byId[email[0].id], { sent: true, message_id: 'm-1' }, [
    { name: 'receipt.txt', digest, size: 29, media_type: 'text/plain' },
  ]);
  await api.complete(byId[email[1].id], { sent: true });
  await api.complete(byId[email[2].id], { sent: true });
  await api.fail(byId[email[3].id], { class: 'timeout', message: 'SMTP server did not answer in 30 s', retryable: true });
  await api.fail(byId[email[4].id], { class: 'invalid_address', message: 'mailbox does not exist', retryable: false });
  await api.heartbeat('worker-a', [byId[email[5].id]], {
    progress: { done: 40, total: 100, note: 'rendering template' },
    checkpoint: { step: 'render', offset: 40 },
  });
  out.emailJobs = email;
  out.deadJob = email[4];
  out.leasedJob = email[5];
  out.artifactJob = email[0];

  // reports: a queue we pause, with waiting work.
  for (let i = 0; i < 3; i += 1) {
    await api.enqueue({ queue: 'reports', kind: 'build_report', payload: { month: i + 1 } });
  }
  await api.post('/v1/queues/reports/pause', {});

  // billing: one job failing once, retried and succeeding (two attempts).
  const bill = await api.enqueue({ queue: 'billing', kind: 'charge', payload: { invoice: 42 }, max_attempts: 3 });
  let lease = await api.claimJob('worker-b', 'billing', bill.id);
  await api.post(`/v1/jobs/${bill.id}/fail`, {
    fencing_token: lease.fencing_token, error: { class: 'http_503', message: 'payment gateway unavailable' },
    retry_at: new Date(Date.now() + 200).toISOString(),
  });
  await sleep(300);
  lease = await api.claimJob('worker-b', 'billing', bill.id);
  await api.complete(lease, { charged: true });

  // A run with a DAG: extract → (clean, enrich) → load → report; extract done, the rest waits.
  const run = await api.post('/v1/runs', {
    name: 'nightly-etl',
    jobs: [
      { key: 'extract', kind: 'etl.extract', queue: 'etl' },
      { key: 'clean', kind: 'etl.clean', queue: 'etl', depends_on: ['extract'] },
      { key: 'enrich', kind: 'etl.enrich', queue: 'etl', depends_on: ['extract'] },
      { key: 'load', kind: 'etl.load', queue: 'etl', depends_on: ['clean', 'enrich'] },
      { key: 'report', kind: 'etl.report', queue: 'etl', depends_on: ['load'] },
      { key: 'notify', kind: 'etl.notify', queue: 'etl', depends_on: ['enrich'] },
    ],
  });
  const extract = run.jobs.find((j) => j.key === 'extract');
  lease = await api.claimJob('worker-etl', 'etl', extract.job_id);
  await api.complete(lease, { rows: 1200 });
  out.run = run;

  // A second, finished run so the runs list has more than one status.
  const small = await api.post('/v1/runs', {
    name: 'cache-warm', jobs: [{ key: 'warm', kind: 'cache.warm', queue: 'cache' }],
  });
  lease = await api.claimJob('worker-c', 'cache', small.jobs[0].job_id);
  await api.complete(lease, { warmed: 3 });
  out.finishedRun = small;

  // A limit with a breaker, so the limits page has something to show.
  await api.call('PUT', '/v1/limits/queue:email', {
    rate: 20, burst: 40, concurrency: 10, breaker: { failures: 5, cooldown_ms: 30000 },
    reason: 'protect the SMTP relay', ticket: 'OPS-101',
  }, { ok: false });
  return out;
}
