// A small client of the coordinator's API for the suite: enqueue, claim, heartbeat and report
// outcomes as a worker would, create keys and runs.

export class Client {
  constructor(base, key) {
    this.base = base;
    this.key = key;
  }

  async call(method, path, body, { ok = true } = {}) {
    const headers = { accept: 'application/json' };
    if (this.key) headers.authorization = `Bearer ${this.key}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(this.base + path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    const data = text ? JSON.parse(text) : null;
    if (ok && !res.ok) {
      throw new Error(`${method} ${path}: ${res.status} ${text}`);
    }
    return ok ? data : { status: res.status, data };
  }

  get(path) { return this.call('GET', path); }
  post(path, body) { return this.call('POST', path, body); }

  enqueue(job) { return this.post('/v1/jobs', job); }

  // Claims up to `max` jobs of `queues` as `worker`; answers the leases.
  async claim(worker, queues, max = 1, ttl = 60000) {
    const answer = await this.post('/v1/leases', {
      worker_id: worker, queues, max_jobs: max, lease_ttl_ms: ttl, worker_version: 'console-suite/1',
    });
    return answer.leases;
  }

  // Claims until the job with `id` is leased (other jobs of the queue are leased too).
  async claimJob(worker, queue, id) {
    for (let i = 0; i < 50; i += 1) {
      const leases = await this.claim(worker, [queue], 10);
      const mine = leases.find((l) => l.job.id === id);
      if (mine) return mine;
      if (!leases.length) await sleep(100);
    }
    throw new Error(`job ${id} was never leased`);
  }

  // Claims until every job of `ids` is leased; answers their leases by id.
  async claimAll(worker, queue, ids) {
    const want = new Set(ids);
    const got = {};
    for (let i = 0; i < 50 && Object.keys(got).length < want.size; i += 1) {
      const leases = await this.claim(worker, [queue], want.size);
      for (const l of leases) if (want.has(l.job.id)) got[l.job.id] = l;
      if (!leases.length) await sleep(100);
    }
    if (Object.keys(got).length < want.size) throw new Error(`not every job of ${queue} was leased`);
    return got;
  }

  complete(lease, result = { ok: true }, artifacts) {
    return this.post(`/v1/jobs/${lease.job.id}/complete`, { fencing_token: lease.fencing_token, result, artifacts });
  }

  fail(lease, error) {
    return this.post(`/v1/jobs/${lease.job.id}/fail`, { fencing_token: lease.fencing_token, error });
  }

  heartbeat(worker, leases, extra = {}) {
    return this.post('/v1/leases/heartbeat', {
      worker_id: worker,
      leases: leases.map((l) => ({ job_id: l.job.id, fencing_token: l.fencing_token, ...extra })),
    });
  }

  async putArtifact(bytes) {
    const { createHash } = await import('node:crypto');
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    const res = await fetch(`${this.base}/v1/artifacts/${digest}`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${this.key}`, 'content-type': 'application/octet-stream' },
      body: bytes,
    });
    if (!res.ok) throw new Error(`PUT artifact: ${res.status} ${await res.text()}`);
    return digest;
  }
}

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}
