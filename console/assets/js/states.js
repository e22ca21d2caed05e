// Job and run states: a badge says the state in words and shows it in colour (never colour only).

import { h } from './dom.js';

export const JOB_STATES = ['blocked', 'queued', 'leased', 'succeeded', 'dead', 'cancelled'];
export const RUN_STATUSES = ['pending', 'running', 'succeeded', 'failed', 'cancelled'];

const SYMBOL = {
  blocked: '◇', queued: '○', leased: '◐', succeeded: '✓', dead: '✕', cancelled: '⊘',
  pending: '○', running: '◐', failed: '✕', paused: '❚❚', active: '▶', open: '✕', half_open: '◐', closed: '✓', connected: '●', disconnected: '○',
};

// <span class="badge state-dead">✕ dead</span>; the symbol is decoration, the word is the state.
export function badge(state, extra) {
  const label = String(state || 'unknown').replace(/_/g, ' ');
  return h('span', { class: `badge state-${state}` },
    h('span', { 'aria-hidden': 'true' }, SYMBOL[state] || '•'), ` ${label}`, extra ? ` · ${extra}` : null);
}

// Whether a job in this state will still change on its own.
export function isTerminal(state) {
  return state === 'succeeded' || state === 'dead' || state === 'cancelled';
}
