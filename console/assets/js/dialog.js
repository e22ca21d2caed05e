// Modal confirmations on <dialog> (focus is trapped and Escape cancels, natively).
//
// confirmDialog({title, body, fields, confirm, danger}) resolves to the fields' values (an
// object, {} when there are none) or null when cancelled. `fields` are
// [{name, label, required, placeholder, maxlength}]. `action(values)` may run on confirm: the
// dialog stays open while it runs and shows its error, so the operator can fix and try again.

import { h, errorBox } from './dom.js';

let seq = 0;

export function confirmDialog({ title, body, fields = [], confirm = 'Confirm', danger = false, action }) {
  seq += 1;
  const titleId = `dlg-title-${seq}`;
  const inputs = fields.map((f) => {
    const id = `dlg-${seq}-${f.name}`;
    const input = h(f.multiline ? 'textarea' : 'input', {
      id, name: f.name, type: f.multiline ? null : 'text', required: f.required,
      placeholder: f.placeholder, maxlength: f.maxlength, autocomplete: 'off', rows: f.multiline ? 3 : null,
    });
    if (f.value) input.value = f.value;
    return { f, input, row: h('div', { class: 'field' }, h('label', { for: id }, f.label), input) };
  });
  const status = h('div', { class: 'dialog-status', 'aria-live': 'polite' });
  const ok = h('button', { type: 'submit', class: danger ? 'danger' : 'primary' }, confirm);
  const cancel = h('button', { type: 'button' }, 'Cancel');
  const form = h('form', {},
    h('h2', { id: titleId }, title),
    h('div', { class: 'dialog-body' }, body),
    inputs.map((i) => i.row),
    status,
    h('div', { class: 'actions' }, cancel, ok));
  const dialog = h('dialog', { 'aria-labelledby': titleId, class: 'confirm' }, form);
  document.body.appendChild(dialog);

  return new Promise((resolve) => {
    let settled = false;
    const finish = (value) => {
      if (settled) return;
      settled = true;
      if (dialog.open) dialog.close();
      dialog.remove();
      resolve(value);
    };
    cancel.addEventListener('click', () => finish(null));
    dialog.addEventListener('cancel', (e) => { e.preventDefault(); finish(null); });
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const values = {};
      for (const { f, input } of inputs) values[f.name] = input.value.trim();
      if (!action) { finish(values); return; }
      ok.disabled = true;
      status.replaceChildren(h('p', { class: 'muted' }, 'Working…'));
      try {
        const result = await action(values);
        finish(result === undefined ? values : result);
      } catch (err) {
        status.replaceChildren(errorBox(err));
        ok.disabled = false;
      }
    });
    dialog.showModal();
    (inputs[0] ? inputs[0].input : ok).focus();
  });
}
