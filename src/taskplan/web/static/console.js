// taskplan console: live regions (server-sent events), action buttons, log tails.
// No framework: server-rendered HTML is fetched again and swapped in; text from the server
// is set with textContent, never parsed as markup by this script.
"use strict";
(function () {
  // Without --token-file each console process draws its own CSRF token: after a restart the
  // page's is stale. Every page fetched again brings the current one.
  let csrf = document.querySelector('meta[name="csrf-token"]').content;
  function tokenOf(doc) {
    const meta = doc.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : null;
  }
  async function freshToken() {
    try {
      const resp = await fetch(location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } });
      return tokenOf(new DOMParser().parseFromString(await resp.text(), "text/html"));
    } catch (e) {
      return null;
    }
  }

  function flash(message, bad) {
    const box = document.getElementById("flash");
    const div = document.createElement("div");
    div.textContent = message;
    if (bad) div.className = "bad";
    box.appendChild(div);
    setTimeout(() => div.remove(), bad ? 10000 : 5000);
  }

  // With --token-file a session can end under an open page (Log out in another tab, the
  // console restarted with another token): its refetches then land on the login page and its
  // buttons are refused. Say so, once, with the way back, rather than go quietly stale.
  let loggedOut = null;
  function sessionGone() {
    if (loggedOut) return;
    loggedOut = document.createElement("div");
    loggedOut.className = "bad";
    loggedOut.append("You are logged out: this page no longer changes and its buttons are refused. ");
    const link = document.createElement("a");
    link.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
    link.textContent = "Log in again";
    loggedOut.append(link);
    document.getElementById("flash").appendChild(loggedOut);
  }
  function sessionBack() {
    if (loggedOut) { loggedOut.remove(); loggedOut = null; }
  }

  // -- live regions: refetch this page and swap each [data-live] element ------------------
  let busy = false, again = false, lastSwap = 0, lastFetch = Date.now(), retry = null;
  // An answer that may be better later (a proxy's 502 while the console restarts, a 503
  // while the store is away, no answer at all) is asked again: the change that caused the
  // refetch is not announced twice, so dropping it left the page stale until reloaded.
  const passing = (status) => status >= 500 || status === 429;
  function later(fn, ms) {
    if (!retry) retry = setTimeout(() => { retry = null; fn(); }, ms);
  }
  // Swapping a region drops the element the keyboard focus was on, and the focus with it
  // (back to the page's start): put it back on the same link, else on what stands in the
  // button's or field's place (Disable turned into Enable).
  const FOCUSABLE = "a[href], button, input, select, textarea";
  function focusIn(region) {
    const was = document.activeElement;
    if (!was || was === document.body || !region.contains(was)) return null;
    const index = Array.from(region.querySelectorAll(FOCUSABLE)).indexOf(was);
    const href = was.getAttribute("href"), tag = was.tagName;
    return () => {
      const now = Array.from(region.querySelectorAll(FOCUSABLE));
      let to = href === null ? null : now.find((n) => n.getAttribute("href") === href);
      if (!to && href === null) {
        for (let i = Math.min(index, now.length - 1); i >= 0 && !to; i--) {
          if (now[i].tagName === tag) to = now[i];
        }
      }
      if (to) to.focus({ preventScroll: true });
    };
  }
  async function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    let failed = false;
    try {
      const wait = 500 - (Date.now() - lastSwap);  // at most two swaps a second
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      lastFetch = Date.now();
      const resp = await fetch(location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } });
      if (resp.redirected && new URL(resp.url).pathname === "/login") {
        sessionGone();
      } else if (resp.ok) {
        sessionBack();
        const doc = new DOMParser().parseFromString(await resp.text(), "text/html");
        csrf = tokenOf(doc) || csrf;
        const fresh = doc.querySelectorAll("[data-live]");
        document.querySelectorAll("[data-live]").forEach((el, i) => {
          const f = fresh[i];
          if (!f) return;
          // A region with a key (a task's output) is swapped only when its key changed.
          if (el.dataset.liveKey !== undefined && el.dataset.liveKey === f.dataset.liveKey) return;
          const focus = focusIn(el);
          const tail = el.querySelector("pre[data-tail]");
          const followed = tail && atEnd(tail);
          el.replaceChildren(...Array.from(f.childNodes).map((n) => document.importNode(n, true)));
          const box = followed && el.querySelector("pre");
          if (box) box.scrollTop = box.scrollHeight;
          if (f.dataset.liveKey !== undefined) el.dataset.liveKey = f.dataset.liveKey;
          if (f.dataset.every !== undefined) el.dataset.every = f.dataset.every;
          else delete el.dataset.every;
          if (focus) focus();
        });
        lastSwap = Date.now();
        bindActions(document);
        startTails();
      } else {
        failed = passing(resp.status);
      }
    } catch (e) {
      failed = true;
    } finally {
      busy = false;
      if (again) { again = false; refresh(); } else if (failed) later(refresh, 3000);
    }
  }
  const live = document.querySelector("[data-live][data-watch]");
  if (live && window.EventSource) {
    // A stream holds a connection open, and a browser opens at most 6 to one server over
    // HTTP/1.1: six live tabs left no room for a seventh page. Only a tab shown keeps its
    // stream; one put in the background closes it and catches up when shown again.
    let source = null, timer = null;
    const watch = () => {
      timer = null;
      if (source || document.hidden) return;
      const s = source = new EventSource(live.dataset.watch);
      s.addEventListener("change", refresh);
      // The browser reopens a dropped stream by itself, but gives up for good on an answer
      // that is no stream (a 503 while the store is unreachable): open it again later. It
      // starts from the page's own event id, so what changed meanwhile is announced.
      s.addEventListener("error", () => {
        if (s.readyState === EventSource.CLOSED && source === s) {
          source = null;
          timer = setTimeout(watch, 5000);
        }
      });
    };
    const unwatch = () => {
      if (source) { source.close(); source = null; }
      if (timer) { clearTimeout(timer); timer = null; }
    };
    document.addEventListener("visibilitychange", () => {
      if (document.hidden) { unwatch(); return; }
      watch();
      refresh();
    });
    watch();
    window.addEventListener("beforeunload", unwatch);
  }
  // What changes with time alone (an agent's heartbeat age, a lease running out, an agent
  // starting) makes no event: such a page is also fetched again every few seconds.
  // A run page says so only while its run goes on (each refetch brings the page's say).
  if (live) {
    setInterval(() => {
      const every = parseFloat(live.dataset.every || "0");
      if (every && !document.hidden && !busy && Date.now() - lastFetch >= 1000 * every) refresh();
    }, 1000);
  }

  // -- actions: POST with the CSRF token, show the outcome --------------------------------
  // Only the fields changed are sent: an untouched form starts the run `taskplan run JOB`
  // starts, each param its job's default with its own type. A text default takes text as
  // typed (as --param k=v); any other default is shown as JSON, and what is typed there is
  // read back as JSON.
  function paramsOf(form) {
    // No prototype: a param named __proto__ is then a key like any other (on a plain
    // object, assigning it set the prototype and the value was never sent).
    const params = Object.create(null);
    form.querySelectorAll("[data-param]").forEach((input) => {
      if (input.value === input.defaultValue) return;
      if (!input.hasAttribute("data-json")) { params[input.name] = input.value; return; }
      try {
        params[input.name] = JSON.parse(input.value);
      } catch (e) {
        throw new Error("param " + input.name + " expects JSON, as its default " +
                        input.defaultValue + " is, got " + input.value);
      }
    });
    return params;
  }
  async function submit(event) {
    const form = event.currentTarget;
    event.preventDefault();
    // Not button.disabled: that takes the keyboard focus off the button for good. A form
    // being sent ignores another press instead.
    if (form.classList.contains("busy")) return;
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) return;
    let body = null;
    if (form.hasAttribute("data-params")) {
      try { body = JSON.stringify({ params: paramsOf(form) }); } catch (e) { flash(e.message, true); return; }
    }
    form.classList.add("busy");
    let leaving = false;  // a second press while the new run's page loads would start another
    try {
      const send = () => fetch(form.action, {
        method: "POST", credentials: "same-origin", body,
        headers: { "X-CSRF-Token": csrf, "Content-Type": "application/json", "Accept": "application/json" },
      });
      let resp = await send();
      if (resp.status === 403) {  // refused before anything was done: a stale token?
        const token = await freshToken();
        if (token && token !== csrf) { csrf = token; resp = await send(); }
      }
      let data = {};
      try { data = await resp.json(); } catch (e) { data = { error: resp.statusText }; }
      if (resp.status === 401) { sessionGone(); return; }
      if (!resp.ok) { flash(data.error || ("HTTP " + resp.status), true); return; }
      if (form.hasAttribute("data-goto-run") && data.run_id) {
        leaving = true;
        location.href = "/runs/" + data.run_id;
        return;
      }
      const parts = [];
      if (data.run_id) parts.push("run " + data.run_id);
      if (data.job) parts.push(data.job);
      if (data.reset !== undefined) parts.push(data.reset + " task run(s) reset");
      if (data.state) parts.push(data.state);
      if (data.paused !== undefined) parts.push(data.paused ? "paused" : "resumed");
      flash(parts.join(": ") || "done", false);
      refresh();
    } catch (e) {
      flash(String(e), true);
    } finally {
      if (!leaving) form.classList.remove("busy");
    }
  }
  function bindActions(root) {
    root.querySelectorAll("form.action").forEach((form) => {
      if (!form.dataset.bound) { form.dataset.bound = "1"; form.addEventListener("submit", submit); }
    });
  }
  bindActions(document);
  // Back to a page kept in the browser's cache: the Run now form left busy must take a press.
  window.addEventListener("pageshow", (e) => {
    if (e.persisted) document.querySelectorAll("form.busy").forEach((f) => f.classList.remove("busy"));
  });

  // -- log tails: poll the logs API from an offset while the attempt runs -------------------
  const ESC = /\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/g;
  const UNFINISHED = /\x1b(\[[0-9;?]*|\][^\x07\x1b]*\x1b?)?$/;
  const atEnd = (box) => box.scrollHeight - box.scrollTop - box.clientHeight < 4;
  function startTails() {
    document.querySelectorAll("pre[data-tail]").forEach((pre) => {
      if (pre.dataset.tailing) return;
      pre.dataset.tailing = "1";
      let offset = parseInt(pre.dataset.offset || "0", 10);
      let held = "";  // an escape sequence cut by the end of a read: the next read ends it
      // The box scrolls: a tail opens at its end and follows it (as logs --follow), unless
      // scrolled up to read, where it stays.
      pre.scrollTop = pre.scrollHeight;
      async function poll() {
        try {
          const resp = await fetch(pre.dataset.tail + "&offset=" + offset, { credentials: "same-origin" });
          if (!resp.ok) { if (passing(resp.status)) setTimeout(poll, 3000); return; }
          const data = await resp.json();
          let text = held + (data.data || "");
          const cut = data.done ? -1 : text.search(UNFINISHED);
          held = cut < 0 ? "" : text.slice(cut);
          if (cut >= 0) text = text.slice(0, cut);
          if (text) {
            const follow = atEnd(pre);
            pre.appendChild(document.createTextNode(text.replace(ESC, "")));
            if (follow) pre.scrollTop = pre.scrollHeight;
          }
          offset = data.next_offset;
          if (!data.done) setTimeout(poll, 1000);
        } catch (e) { setTimeout(poll, 3000); }
      }
      setTimeout(poll, 1000);
    });
  }
  startTails();
})();
