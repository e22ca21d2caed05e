// Path routing under /console with the History API: every view has its own URL, its filters in
// the query string. Pages load on demand; each runs with an AbortSignal that fires when the
// operator leaves it, so its fetches, polls and streams stop.

import { h, fill, errorBox } from './dom.js';

export const BASE = '/console';

const ROUTES = [
  { pattern: /^\/?$/, nav: 'overview', load: () => import('./pages/overview.js') },
  { pattern: /^\/queues\/?$/, nav: 'queues', load: () => import('./pages/queues.js') },
  { pattern: /^\/jobs\/?$/, nav: 'jobs', load: () => import('./pages/jobs.js') },
  { pattern: /^\/jobs\/([^/]+)\/?$/, nav: 'jobs', load: () => import('./pages/job.js') },
  { pattern: /^\/runs\/?$/, nav: 'runs', load: () => import('./pages/runs.js') },
  { pattern: /^\/runs\/([^/]+)\/?$/, nav: 'runs', load: () => import('./pages/run.js') },
  { pattern: /^\/events\/?$/, nav: 'events', load: () => import('./pages/events.js') },
  { pattern: /^\/limits\/?$/, nav: 'limits', load: () => import('./pages/limits.js') },
];

let current = null;

// The URL of a view: link('/jobs', {state: 'dead'}).
export function link(path, query) {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== '') params.set(k, String(v));
  }
  const qs = params.toString();
  const full = `${BASE}${path === '/' ? '' : path}`;
  return qs ? `${full}?${qs}` : full;
}

// Goes to `url` (a console URL) without reloading; `replace` rewrites the current entry.
export function navigate(url, { replace = false } = {}) {
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  render({ focus: !replace });
}

// Changes the query string of the current view (filters) and renders it again.
export function setQuery(query, opts) {
  navigate(link(currentPath(), query), opts);
}

function currentPath() {
  const p = location.pathname;
  return p.startsWith(BASE) ? p.slice(BASE.length) || '/' : '/';
}

export function start() {
  document.addEventListener('click', onClick);
  window.addEventListener('popstate', () => render({ focus: true }));
  render({ focus: false });
}

function onClick(event) {
  if (event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const a = event.target.closest && event.target.closest('a');
  if (!a || a.hasAttribute('download') || (a.target && a.target !== '_self')) return;
  const href = a.getAttribute('href') || (a.href && a.href.baseVal) || a.getAttribute('xlink:href');
  if (!href) return;
  const url = new URL(href, location.href);
  if (url.origin !== location.origin || !(url.pathname === BASE || url.pathname.startsWith(`${BASE}/`))) return;
  if (url.pathname.startsWith(`${BASE}/assets/`)) return;
  event.preventDefault();
  if (url.pathname + url.search === location.pathname + location.search) return;
  navigate(url.pathname + url.search);
}

async function render({ focus }) {
  const path = currentPath();
  const query = new URLSearchParams(location.search);
  // Same view, other filters: the page may keep its state (the events feed keeps its stream).
  if (current) {
    current.controller.abort();
    for (const fn of current.cleanups) {
      try { fn(); } catch { /* a page's cleanup must not stop the next page */ }
    }
  }
  const main = document.getElementById('main');
  const route = ROUTES.find((r) => r.pattern.test(path));
  const controller = new AbortController();
  const ctx = {
    main,
    path,
    query,
    params: route ? path.match(route.pattern).slice(1).map(decodeURIComponent) : [],
    signal: controller.signal,
    cleanups: [],
    onCleanup(fn) { this.cleanups.push(fn); },
    title(text) { document.title = `${text} · Leasehold`; },
  };
  current = { controller, cleanups: ctx.cleanups };
  for (const a of document.querySelectorAll('nav a[data-nav]')) {
    if (route && a.dataset.nav === route.nav) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (!route) {
    ctx.title('Not found');
    fill(main, h('h1', {}, 'Not found'), h('p', {}, 'The console has no page at this address. ',
      h('a', { href: BASE }, 'Go to the overview'), '.'));
    return;
  }
  try {
    const mod = await route.load();
    if (controller.signal.aborted) return;
    await mod.default(ctx);
  } catch (err) {
    if (controller.signal.aborted || err.name === 'AbortError') return;
    fill(main, h('h1', {}, 'Something went wrong'), errorBox(err));
  }
  if (focus && !controller.signal.aborted) {
    const heading = main.querySelector('h1');
    if (heading) {
      heading.setAttribute('tabindex', '-1');
      heading.focus({ preventScroll: false });
    }
  }
}
