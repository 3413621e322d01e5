// Security keys in the browser: registration on the security settings page, assertion at the
// two-factor challenge and in sudo mode. Buttons carry data-webauthn="register|authenticate"
// and data-options / data-verify URLs; the CSRF token travels as X-CSRF-Token.
(function () {
  "use strict";

  function b64urlToBytes(value) {
    const padded = value.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((value.length + 3) % 4);
    const binary = atob(padded);
    return Uint8Array.from(binary, (c) => c.charCodeAt(0));
  }

  function bytesToB64url(buffer) {
    const bytes = new Uint8Array(buffer);
    let binary = "";
    bytes.forEach((b) => { binary += String.fromCharCode(b); });
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function csrfToken() {
    const field = document.querySelector('input[name="csrf_token"]');
    return field ? field.value : "";
  }

  async function post(url, body) {
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrfToken() },
      body: JSON.stringify(body || {}),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.message || "The request failed.");
    return data;
  }

  function showError(button, message) {
    const target = document.getElementById(button.dataset.error || "webauthn-error");
    if (target) { target.textContent = message; target.hidden = false; }
  }

  async function register(button) {
    const nameField = document.getElementById(button.dataset.nameField || "key-name");
    const name = nameField ? nameField.value.trim() : "";
    if (!name) { showError(button, "Give the key a name."); return; }
    const options = await post(button.dataset.options);
    options.challenge = b64urlToBytes(options.challenge);
    options.user.id = b64urlToBytes(options.user.id);
    (options.excludeCredentials || []).forEach((c) => { c.id = b64urlToBytes(c.id); });
    const credential = await navigator.credentials.create({ publicKey: options });
    const result = await post(button.dataset.verify, {
      name: name,
      credential: {
        id: credential.id,
        rawId: bytesToB64url(credential.rawId),
        type: credential.type,
        response: {
          clientDataJSON: bytesToB64url(credential.response.clientDataJSON),
          attestationObject: bytesToB64url(credential.response.attestationObject),
          transports: credential.response.getTransports ? credential.response.getTransports() : [],
        },
        clientExtensionResults: credential.getClientExtensionResults(),
      },
    });
    if (result.recovery_codes && result.recovery_codes.length) {
      const list = document.getElementById("new-recovery-codes");
      if (list) {
        list.textContent = result.recovery_codes.join("\n");
        list.hidden = false;
        return;
      }
    }
    window.location.reload();
  }

  async function authenticate(button) {
    const options = await post(button.dataset.options);
    options.challenge = b64urlToBytes(options.challenge);
    (options.allowCredentials || []).forEach((c) => { c.id = b64urlToBytes(c.id); });
    const assertion = await navigator.credentials.get({ publicKey: options });
    const result = await post(button.dataset.verify, {
      id: assertion.id,
      rawId: bytesToB64url(assertion.rawId),
      type: assertion.type,
      response: {
        clientDataJSON: bytesToB64url(assertion.response.clientDataJSON),
        authenticatorData: bytesToB64url(assertion.response.authenticatorData),
        signature: bytesToB64url(assertion.response.signature),
        userHandle: assertion.response.userHandle ? bytesToB64url(assertion.response.userHandle) : null,
      },
      clientExtensionResults: assertion.getClientExtensionResults(),
    });
    window.location.assign(result.location || button.dataset.next || "/");
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-webauthn]");
    if (!button) return;
    event.preventDefault();
    if (!window.PublicKeyCredential) { showError(button, "This browser does not support security keys."); return; }
    const action = button.dataset.webauthn === "register" ? register : authenticate;
    action(button).catch((error) => showError(button, error.message || String(error)));
  });
})();
