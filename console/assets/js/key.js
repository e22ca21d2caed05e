// The key prompt: a 401 opens it, the key goes to sessionStorage; "Forget key" drops it. The
// header shows the tenant the key acts for (as GET /v1/whoami says).

import { api, getKey, setKey, setKeyPrompt, onKeyChange } from './api.js';

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

// Shows the tenant and the forget control once a call with the key worked.
export async function showSession() {
  const forget = document.getElementById('forget-key');
  const tenant = document.getElementById('tenant');
  forget.hidden = !getKey();
  try {
    const me = await api('/v1/whoami');
    if (me && me.tenant) {
      tenantShown = me.tenant;
      tenant.textContent = `Tenant: ${me.tenant}`;
      tenant.title = me.principal === 'key' ? `key ${me.key_id}: ${me.scopes.join(', ')}` : `${me.principal}: every scope`;
      tenant.hidden = false;
    }
  } catch {
    tenant.hidden = true;
  }
  return tenantShown;
}
