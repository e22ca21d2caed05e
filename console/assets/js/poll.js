// Polling that stops with the page (its AbortSignal) and idles while the tab is hidden.

export function every(ms, signal, fn) {
  let timer = null;
  let running = false;
  const tick = async () => {
    timer = null;
    if (signal.aborted) return;
    if (document.hidden) { schedule(); return; }
    if (running) return;
    running = true;
    try { await fn(); } catch { /* the page shows its own errors */ }
    running = false;
    schedule();
  };
  const schedule = () => {
    if (!signal.aborted && timer === null) timer = setTimeout(tick, ms);
  };
  signal.addEventListener('abort', () => { if (timer !== null) clearTimeout(timer); });
  schedule();
  return { now: () => { if (timer !== null) { clearTimeout(timer); timer = null; } tick(); } };
}

// Calls fn at most once per `ms`, with the last arguments (trailing edge).
export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    if (timer !== null) clearTimeout(timer);
    timer = setTimeout(() => { timer = null; fn(...args); }, ms);
  };
}
