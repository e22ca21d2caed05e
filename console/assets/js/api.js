// The API client: every call carries the operator's key (sessionStorage), a 401 asks for the
// key once (whoever is waiting shares the one prompt) and retries, and an error answer becomes
// an ApiError with the coordinator's own message.

const STORAGE = 'leasehold.key';
// On a keyless coordinator the `Leasehold-Tenant` header picks the tenant; with a key, the key
// decides and no header is sent.
const TENANT = 'leasehold.tenant';

export class ApiError extends Error {
  constructor(status, body, fallback) {
    const err = body && body.error ? body.error : {};
    super(err.message || fallback || `HTTP ${status}`);
    this.status = status;
    this.code = err.code || null;
    this.details = err.details || null;
    this.requestId = err.request_id || null;
  }
}

let prompt = null;
let pending = null;
const listeners = new Set();

export function getKey() {
  try { return sessionStorage.getItem(STORAGE) || ''; } catch { return ''; }
}

export function setKey(key) {
  try {
    if (key) sessionStorage.setItem(STORAGE, key);
    else sessionStorage.removeItem(STORAGE);
  } catch { /* storage off: the key lives as long as the page */ }
  for (const fn of listeners) fn(key);
}

export function getTenant() {
  try { return sessionStorage.getItem(TENANT) || ''; } catch { return ''; }
}

export function setTenant(tenant) {
  try {
    if (tenant) sessionStorage.setItem(TENANT, tenant);
    else sessionStorage.removeItem(TENANT);
  } catch { /* storage off: the default tenant */ }
}

// Called with the new key (or '') whenever it changes.
export function onKeyChange(fn) {
  listeners.add(fn);
}

// `fn(reason)` resolves to a key, or null when the operator gave up.
export function setKeyPrompt(fn) {
  prompt = fn;
}

function askForKey(reason) {
  if (!pending) {
    pending = Promise.resolve(prompt ? prompt(reason) : null).finally(() => { pending = null; });
  }
  return pending;
}

function headersFor(extra) {
  const headers = new Headers(extra || {});
  const key = getKey();
  if (key) headers.set('authorization', `Bearer ${key}`);
  else if (getTenant() && !headers.has('leasehold-tenant')) headers.set('leasehold-tenant', getTenant());
  return headers;
}

// A fetch with the key that prompts on 401; answers the Response (ok or not).
export async function send(path, init = {}) {
  for (let attempt = 0; ; attempt += 1) {
    const used = getKey();
    const res = await fetch(path, { ...init, headers: headersFor(init.headers) });
    if (res.status !== 401 || attempt >= 3 || !prompt) return res;
    // Sent before the operator entered a key (the prompt another call opened): try that key
    // rather than asking again.
    if (getKey() && getKey() !== used) continue;
    const body = await res.json().catch(() => null);
    const reason = body && body.error ? body.error.message : 'This coordinator needs an API key.';
    const key = await askForKey(reason);
    if (!key) return res;
  }
}

// JSON in, JSON out: `api('/v1/jobs', {query: {state: 'dead'}})`, `api(path, {method, body})`.
export async function api(path, { method = 'GET', body, query, signal, headers } = {}) {
  const url = query ? withQuery(path, query) : path;
  const init = { method, signal, headers: { accept: 'application/json', ...(headers || {}) } };
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await send(url, init);
  if (!res.ok) {
    const data = await res.json().catch(() => null);
    throw new ApiError(res.status, data, res.statusText);
  }
  if (res.status === 204) return null;
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

// `path?k=v&…`, leaving out empty values.
export function withQuery(path, query) {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== '') params.set(k, String(v));
  }
  const qs = params.toString();
  return qs ? `${path}?${qs}` : path;
}

// Downloads an artifact: the key must travel in a header, so fetch it and hand the browser a
// blob URL instead of linking the API.
export async function download(path, filename) {
  const res = await send(path, { headers: { accept: 'application/octet-stream' } });
  if (!res.ok) {
    const data = await res.json().catch(() => null);
    throw new ApiError(res.status, data, res.statusText);
  }
  const blob = await res.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = filename || 'artifact';
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
