// The key prompt: a 401 opens it, the key goes to sessionStorage; "Forget key" drops it. The
// header shows the tenant the key acts for (as GET /v1/whoami says).

import { api, getKey, setKey, setTenant, setKeyPrompt, onKeyChange } from './api.js';
import { h, fill } from './dom.js';

export function installKeyPrompt() {
  const dialog = document.getElementById('key-dialog');
  const form = document.getElementById('key-form');
  const input = document.getElementById('key-input');
  const why = document.getElementById('key-why');
  const error = document.getElementById('key-error');
  const forget = document.getElementById('forget-key');

  setKeyPrompt((reason) => new Promise((resolve) => {
    const hadKey = Boolean(getKey());
    why.textContent = hadKey
      ? 'The coordinator refused the key this tab had. Enter a valid key.'
      : 'This coordinator needs an API key for its API.';
    error.hidden = !reason || !hadKey;
    error.textContent = reason || '';
    input.value = '';
    const onSubmit = (e) => {
      e.preventDefault();
      const key = input.value.trim();
      if (!key) return;
      done(key);
    };
    const onCancel = (e) => {
      e.preventDefault();
      done(null);
    };
    function done(key) {
      form.removeEventListener('submit', onSubmit);
      dialog.removeEventListener('cancel', onCancel);
      if (dialog.open) dialog.close();
      if (key) setKey(key);
      resolve(key);
    }
    form.addEventListener('submit', onSubmit);
    dialog.addEventListener('cancel', onCancel);
    dialog.showModal();
    input.focus();
  }));

  forget.addEventListener('click', () => {
    setKey('');
    location.reload();
  });
  onKeyChange(() => showSession());
  showSession();
}

let tenantShown = null;

// Shows the tenant and the forget control once a call with the key worked. Keyless, the
// tenant is a field: the header it fills picks the tenant of every call.
export async function showSession() {
  const forget = document.getElementById('forget-key');
  const tenant = document.getElementById('tenant');
  forget.hidden = !getKey();
  try {
    const me = await api('/v1/whoami');
    if (me && me.tenant) {
      tenantShown = me.tenant;
      if (me.principal === 'keyless') {
        fill(tenant, tenantPicker(me.tenant));
        tenant.removeAttribute('title');
      } else {
        fill(tenant, `Tenant: ${me.tenant}`);
        tenant.title = me.principal === 'key' ? `key ${me.key_id}: ${me.scopes.join(', ')}` : 'the coordinator\'s own key: every scope';
      }
      tenant.hidden = false;
    }
  } catch {
    tenant.hidden = true;
  }
  return tenantShown;
}

// A form naming the tenant; the coordinator checks the name before the console switches.
function tenantPicker(current) {
  const input = h('input', {
    id: 'tenant-input', name: 'tenant', value: current, size: '12', autocomplete: 'off', spellcheck: 'false',
    'aria-describedby': 'tenant-error',
  });
  const error = h('span', { id: 'tenant-error', class: 'error', role: 'alert', hidden: true });
  const form = h('form', { class: 'tenant-pick', 'aria-label': 'Tenant' },
    h('label', { for: 'tenant-input' }, 'Tenant'), input,
    h('button', { type: 'submit' }, 'Switch'), error);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const name = input.value.trim();
    try {
      await api('/v1/whoami', { headers: { 'leasehold-tenant': name } });
    } catch (err) {
      error.textContent = err.message;
      error.hidden = false;
      return;
    }
    setTenant(name === 'default' ? '' : name);
    location.reload();
  });
  return form;
}
