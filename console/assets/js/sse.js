// The event feed read with fetch() and a stream reader, so the key travels in the
// Authorization header (EventSource cannot send one). Reconnects on its own with
// `Last-Event-ID` set to the last id it handed out: no gap, and an id at or below it is never
// handed out twice.

import { send, withQuery, ApiError } from './api.js';

const IDLE_MS = 40000; // the coordinator sends a keep-alive every 15 s
const MAX_BACKOFF_MS = 15000;

// subscribe('/v1/events', {queue: 'q'}, {after, onEvent(event, id, type), onStatus(state, info)})
// → {close(), lastId}. States: connecting, open, reconnecting, closed, error (not retried: a
// 4xx such as a bad filter).
export function subscribe(path, query, { after = null, onEvent, onStatus = () => {} }) {
  let lastId = after;
  let closed = false;
  let controller = null;
  let backoff = 500;

  const run = async () => {
    while (!closed) {
      controller = new AbortController();
      let idle = null;
      const touch = () => {
        clearTimeout(idle);
        idle = setTimeout(() => controller.abort(), IDLE_MS);
      };
      try {
        onStatus(lastId === null ? 'connecting' : 'reconnecting', { lastId });
        const headers = { accept: 'text/event-stream' };
        if (lastId !== null) headers['last-event-id'] = String(lastId);
        touch();
        const res = await send(withQuery(path, query), { headers, signal: controller.signal });
        if (!res.ok) {
          const body = await res.json().catch(() => null);
          const err = new ApiError(res.status, body, res.statusText);
          if (res.status >= 400 && res.status < 500 && res.status !== 429) {
            clearTimeout(idle);
            onStatus('error', { error: err });
            closed = true;
            return;
          }
          throw err;
        }
        onStatus('open', { lastId });
        backoff = 500;
        await read(res.body, touch, (frame) => {
          if (frame.id !== null) {
            const id = Number(frame.id);
            if (lastId !== null && id <= lastId) return; // already handed out
            lastId = id;
          }
          if (frame.event === 'resync') {
            onStatus('resync', { lastId });
            return;
          }
          let data = null;
          try { data = JSON.parse(frame.data); } catch { data = frame.data; }
          onEvent(data, lastId, frame.event);
        });
      } catch (err) {
        if (closed) break;
        if (err instanceof ApiError) onStatus('retrying', { error: err, lastId });
      } finally {
        clearTimeout(idle);
      }
      if (closed) break;
      onStatus('reconnecting', { lastId });
      await new Promise((r) => setTimeout(r, backoff));
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
    }
    onStatus('closed', { lastId });
  };
  run();

  return {
    close() {
      closed = true;
      if (controller) controller.abort();
    },
    get lastId() { return lastId; },
  };
}

// Parses `text/event-stream` (the subset the coordinator writes: id, event, data, comments).
async function read(body, touch, dispatch) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let frame = { id: null, event: 'message', data: [] };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    touch();
    buffer += decoder.decode(value, { stream: true });
    let nl;
    while ((nl = buffer.search(/\r\n|\n|\r/)) >= 0) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + (buffer.startsWith('\r\n', nl) ? 2 : 1));
      if (line === '') {
        if (frame.data.length || frame.id !== null) {
          dispatch({ id: frame.id, event: frame.event, data: frame.data.join('\n') });
        }
        frame = { id: null, event: 'message', data: [] };
        continue;
      }
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let val = colon < 0 ? '' : line.slice(colon + 1);
      if (val.startsWith(' ')) val = val.slice(1);
      if (field === 'id') frame.id = val;
      else if (field === 'event') frame.event = val;
      else if (field === 'data') frame.data.push(val);
    }
  }
}
