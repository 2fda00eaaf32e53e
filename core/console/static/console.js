// hookline console: live updates over Server-Sent Events, forms sent without a page reload, the
// provider switch of "Add number" and the pairing QR code. The pages work without it; this only
// spares reloads. Fragments come from the server, rendered by the same templates as the pages.
"use strict";

(function () {
  const body = document.body;
  const live = body.dataset.live;
  const status = document.getElementById("live-status");

  // ---------------------------------------------------------------- fragments

  const pending = new Map();
  function refresh(element, delay) {
    if (!element || pending.has(element)) return;
    pending.set(element, setTimeout(async () => {
      pending.delete(element);
      const answer = await fetch(element.dataset.fragment, {credentials: "same-origin"});
      if (answer.redirected || answer.status === 401) { window.location.reload(); return; }
      if (!answer.ok) return;
      const atBottom = element.id === "thread" && nearBottom();
      element.innerHTML = await answer.text();
      if (element.id === "thread" && atBottom) scrollThread();
    }, delay || 150));
  }

  function nearBottom() {
    return window.innerHeight + window.scrollY >= document.body.scrollHeight - 120 ||
      (thread() && thread().scrollHeight - thread().scrollTop - thread().clientHeight < 120);
  }
  function thread() { return document.getElementById("messages"); }
  function scrollThread() {
    const list = thread();
    if (!list) return;
    list.scrollTop = list.scrollHeight; // side by side: the list scrolls
    // One column (phones): the page scrolls; its end shows the newest message just above the
    // composer (scrolling the message into view would leave it under the sticky composer).
    const page = document.scrollingElement;
    if (page.scrollHeight > window.innerHeight) window.scrollTo(0, page.scrollHeight);
  }

  // ---------------------------------------------------------------- live events

  function listen() {
    if (!live || !window.EventSource) return;
    const events = new EventSource("/api/events");
    const threadBox = document.getElementById("thread");
    const current = threadBox ? Number(threadBox.dataset.conversationId) : null;
    const about = (data) => data.conversation_id || (data.message && data.message.conversation_id) ||
      (data.conversation && data.conversation.id);
    const onConversation = (event) => {
      const data = JSON.parse(event.data);
      refresh(document.getElementById("conversation-list"), 300);
      if (current !== null && about(data) === current) refresh(threadBox);
    };
    ["message.created", "message.status", "conversation.updated"].forEach((kind) => events.addEventListener(kind, onConversation));
    events.addEventListener("number.state", (event) => {
      refresh(document.getElementById("numbers-table"));
      const data = JSON.parse(event.data);
      const facts = document.getElementById("number-facts");
      if (facts && facts.dataset.numberId === data.number_id) numberState(data.state);
    });
    events.onopen = () => { status.textContent = body.dataset.connected; body.classList.remove("offline"); };
    events.onerror = () => { status.textContent = body.dataset.lost; body.classList.add("offline"); };
  }

  // ---------------------------------------------------------------- forms without reloads

  // Delegated: forms inside fragments are replaced by refreshes.
  document.addEventListener("submit", async (event) => {
    const form = event.target;
    if (!form.matches("form[data-enhance]")) return;
    event.preventDefault();
    const error = form.querySelector(".form-error");
    const button = form.querySelector("button[type=submit]");
    if (error) { error.hidden = true; error.textContent = ""; }
    if (button) button.disabled = true;
    try {
      const answer = await fetch(form.action, {method: "POST", body: new FormData(form),
        headers: {"X-Requested-With": "fetch"}, credentials: "same-origin"});
      if (answer.ok) {
        form.reset();
        refresh(document.getElementById("thread"), 1);
      } else if (error) {
        let message = answer.statusText;
        try { message = (await answer.json()).error.message; } catch (ignored) { /* not JSON */ }
        error.textContent = message; error.hidden = false;
      }
    } finally {
      if (button) button.disabled = false;
    }
  });
  const composerText = document.getElementById("composer-text");
  if (composerText) composerText.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); composerText.form.requestSubmit(); }
  });
  document.querySelectorAll("select[data-autosubmit]").forEach((select) =>
    select.addEventListener("change", () => select.form.requestSubmit()));

  // ---------------------------------------------------------------- "Add number": the provider's fields

  const providerSelect = document.querySelector("select[data-switches]");
  if (providerSelect) {
    const show = () => document.querySelectorAll("fieldset." + providerSelect.dataset.switches).forEach((set) => {
      const mine = set.dataset.provider === providerSelect.value;
      set.hidden = !mine; set.disabled = !mine;
    });
    providerSelect.addEventListener("change", show);
    show();
  }

  // ---------------------------------------------------------------- pairing QR code

  const pairing = document.querySelector("section.pairing");
  let pairingTimer = null;
  function numberState(state) {
    const box = document.getElementById("number-state");
    if (box && state) box.dataset.state = state;
    if (pairing && state === "CONNECTED") stopPairing();
  }
  function stopPairing() {
    clearTimeout(pairingTimer); pairingTimer = null;
    const img = document.getElementById("qr"); const note = document.getElementById("qr-status");
    img.hidden = true; note.textContent = note.dataset.connected;
  }
  async function pollQr() {
    const img = document.getElementById("qr"); const note = document.getElementById("qr-status");
    try {
      const answer = await fetch(pairing.dataset.qrUrl, {credentials: "same-origin", cache: "no-store"});
      if (answer.ok) {
        const old = img.src;
        img.src = URL.createObjectURL(await answer.blob());
        if (old.startsWith("blob:")) URL.revokeObjectURL(old);
        img.hidden = false; note.textContent = note.dataset.waiting;
      } else {
        img.hidden = true;
        try { note.textContent = (await answer.json()).error.message; } catch (ignored) { note.textContent = answer.statusText; }
        if (document.getElementById("number-state").dataset.state === "CONNECTED") { stopPairing(); return; }
      }
    } catch (ignored) { /* the server is away: try again */ }
    pairingTimer = setTimeout(pollQr, 4000);
  }
  if (pairing) {
    if (document.getElementById("number-state").dataset.state === "CONNECTED") stopPairing(); else pollQr();
  }

  scrollThread();
  listen();
})();
