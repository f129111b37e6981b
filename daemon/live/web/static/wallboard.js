// Hotline wallboard: Server-Sent Events from /live/stream, no polling, nothing fetched elsewhere.
// A view arrives whenever something changed (and every 5 s anyway); without one for
// STALE_MS, or while the stream is down, every number is marked stale, never shown as live.
"use strict";
(function () {
  const STALE_MS = 12000;
  const board = document.getElementById("board");
  const status = document.getElementById("status");
  let last = null, receivedAt = 0, liveSince = 0;
  // per view: when it arrived and was drawn, and the switch times of the changes it carries
  // (bench/web_latency.py reads this; the newest 2,000 are kept)
  const timings = window.hotlineViews = [];
  const meta = (name) => (document.querySelector(`meta[name="${name}"]`) || {}).content;
  const canControl = meta("hotline-control") === "yes";
  const result = document.getElementById("action-result");

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else e.setAttribute(k, v);
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }
  function secs(ms) {
    if (ms === null || ms === undefined) return "-";
    const s = Math.max(0, Math.round(ms / 1000));
    return s < 60 ? s + " s" : Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
  }
  function pct(v) { return v === null || v === undefined ? "-" : v.toFixed(1) + " %"; }
  function num(v) { return v === null || v === undefined ? "-" : v; }
  function waitClass(ms, thresholdS) {
    if (ms === null || ms === undefined) return "ok";
    const s = ms / 1000;
    return s >= thresholdS ? "bad" : s >= 0.75 * thresholdS ? "warn" : "ok";
  }
  function chips(counts) {
    const d = el("div", { class: "chips" });
    for (const [k, n] of Object.entries(counts)) d.append(el("span", {}, k + " " + n));
    return d;
  }
  function elapsed() { return Date.now() - receivedAt; }

  function queueCard(q) {
    const tick = q.longest_wait_ms === null ? null : q.longest_wait_ms + elapsed();
    const t = q.today || {};
    const callers = el("ol", { class: "callers" });
    for (const w of q.waiting) {
      callers.append(el("li", { class: "caller" }, w.caller || "(anonymous)", " · ",
        el("span", { class: "wait " + waitClass(w.wait_ms + elapsed(), q.sl_threshold_s) },
          secs(w.wait_ms + elapsed()))));
    }
    return el("section", { class: "queue", "data-queue": q.id },
      el("h3", {}, q.name),
      el("div", { class: "big" },
        el("div", {}, el("span", { class: "num waiting-count" }, q.count), "waiting"),
        el("div", {}, el("span", { class: "num wait " + waitClass(tick, q.sl_threshold_s) }, secs(tick)),
          "longest (SL " + q.sl_threshold_s + " s)")),
      callers,
      chips(q.agents_by_status), chips(q.agents_by_state),
      el("div", { class: "today", title: "today so far, same figures as hotline report --from today" },
        el("div", {}, "offered ", el("span", { class: "num today-offered" }, num(t.offered))),
        el("div", {}, "answered ", el("span", { class: "num today-answered" }, num(t.answered))),
        el("div", {}, "abandoned ", el("span", { class: "num today-abandoned" }, num(t.abandoned)),
          " (short ", el("span", { class: "num" }, num(t.short_abandoned)), ")"),
        el("div", {}, "SL ", el("span", { class: "num " + (t.service_level === null || t.service_level === undefined ? "" :
          t.service_level >= q.sl_target_pct ? "ok" : "bad") }, pct(t.service_level))),
        el("div", {}, "ASA ", el("span", { class: "num" }, t.asa === null || t.asa === undefined ? "-" : t.asa.toFixed(1) + " s"))));
  }

  // a supervisor's agent actions: the CLI's code on the server, audited there
  async function act(agent, action) {
    const form = new URLSearchParams({ csrf: meta("hotline-csrf") || "" });
    if (action === "break") {
      const reason = window.prompt("Break reason for " + agent + " (empty: none)", "");
      if (reason === null) return;
      if (reason) form.set("reason", reason);
    }
    result.textContent = agent + ": " + action + "…";
    try {
      const resp = await fetch("/agents/" + encodeURIComponent(agent) + "/" + action,
        { method: "POST", body: form, credentials: "same-origin" });
      const data = await resp.json();
      result.textContent = resp.ok ? data.agent + ": " + data.previous_status + " → " + data.status
        : agent + ": " + data.error;
    } catch (e) { result.textContent = agent + ": " + action + " failed (" + e + ")"; }
  }
  function actions(a) {
    const td = el("td", { class: "actions" });
    const offered = a.status === "Logged Out" || !a.status ? ["login"]
      : a.status === "On Break" ? ["ready", "logout"] : ["break", "logout"];
    for (const action of offered) {
      const b = el("button", { type: "button", "data-action": action }, action);
      b.addEventListener("click", () => act(a.id, action));
      td.append(b);
    }
    return td;
  }

  function agentTable(agents) {
    const body = el("tbody");
    for (const a of agents) {
      body.append(el("tr", { "data-agent": a.id },
        el("td", {}, a.name), el("td", {}, (a.status || "-") + (a.reason ? " (" + a.reason + ")" : "")),
        el("td", {}, a.state || "-"),
        el("td", { class: "wait" }, a.since_ms ? secs(Date.now() - receivedAt + (last.at_ms - a.since_ms)) : "-"),
        el("td", {}, a.caller || (a.call_id ? "(call)" : "-")), el("td", {}, a.queue || "-"),
        el("td", { class: "num" }, num(a.handled_today)), canControl ? actions(a) : null));
    }
    const heads = ["agent", "status", "state", "in state", "caller", "queue", "handled today"]
      .concat(canControl ? ["actions"] : []);
    return el("table", { class: "grid agents" },
      el("thead", {}, el("tr", {}, ...heads.map(h => el("th", {}, h)))), body);
  }

  function render() {
    if (!last) return;
    const frag = document.createDocumentFragment();
    for (const t of last.tenants) {
      frag.append(el("div", { class: "tenant", "data-tenant": t.id },
        el("h2", {}, t.name, el("small", {}, " · " + t.day + " (" + t.timezone + ")")),
        el("div", { class: "queues" }, ...t.queues.map(queueCard)),
        agentTable(t.agents)));
    }
    if (last.today_error) frag.append(el("p", { class: "note" }, last.today_error));
    board.replaceChildren(frag);
  }

  function setStatus() {
    const down = Object.entries((last && last.links) || {}).filter(([, up]) => !up).map(([n]) => n);
    const stale = !last || elapsed() > STALE_MS || !liveSince;
    board.classList.toggle("stale", stale);
    status.className = "status " + (stale || down.length ? "stale" : "live");
    status.textContent = stale
      ? (last ? "STALE: no update for " + secs(elapsed()) + "; reconnecting…" : "connecting…")
      : down.length ? "switch link down: " + down.join(", ") + " (live figures may be behind)"
      : "live · updated " + new Date(Date.now() - elapsed()).toLocaleTimeString();
  }

  function connect() {
    const es = new EventSource("/live/stream");
    es.addEventListener("board", (e) => {
      last = JSON.parse(e.data); receivedAt = Date.now(); liveSince = liveSince || receivedAt;
      render(); setStatus();
      const changes = last.changes_ms, got = receivedAt, built = last.built_ms;
      if (changes) {
        requestAnimationFrame(() => {  // the next frame shows the new view
          timings.push([got, Date.now(), changes[0], changes[1], built]);
          if (timings.length > 2000) timings.shift();
        });
      }
    });
    es.onopen = () => { liveSince = Date.now(); };
    es.onerror = () => {
      liveSince = 0; setStatus();
      if (es.readyState === EventSource.CLOSED) { setTimeout(connect, 3000); }  // e.g. a 503
    };
  }
  connect();
  setInterval(() => { render(); setStatus(); }, 1000);  // wait times tick between views
})();
