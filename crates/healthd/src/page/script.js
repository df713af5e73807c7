"use strict";
// Keeps the server-rendered page live: each `status` event from /api/v1/events patches
// its card's figures; a status change (or a new monitor) re-fetches the page, at most
// once per second (slower when the page is slow to fetch), and swaps its main part.
// Relative times ("3 min ago") tick every 5 s. Without EventSource: a re-fetch every 30 s.
(() => {
  document.documentElement.classList.add("js");
  const byId = (id) => document.getElementById(id);
  let cards = new Map();
  const index = () => {
    cards = new Map();
    for (const card of document.querySelectorAll("article.card")) cards.set(card.dataset.name, card);
  };
  const ago = (s) => s < 5 ? "just now" : s < 60 ? `${s} s ago` : s < 3600 ? `${Math.floor(s / 60)} min ago`
    : s < 86400 ? `${Math.floor(s / 3600)} h ago` : `${Math.floor(s / 86400)} d ago`;
  const tick = (root = document) => {
    const now = Math.floor(Date.now() / 1000);
    for (const el of root.querySelectorAll("[data-t]")) el.textContent = ago(now - Number(el.dataset.t));
  };
  const pct = (u) => u == null ? "—" : u >= 1 ? "100%" : (Math.floor(Math.max(u, 0) * 1000 + 1e-6) / 10).toFixed(1) + "%";
  const field = (card, name) => card.querySelector(`[data-f="${name}"]`);
  const set = (card, name, text) => { const el = field(card, name); if (el) el.textContent = text; };
  const when = (card, name, t) => {
    const dd = field(card, name);
    if (!dd || !t) return;
    const iso = new Date(t * 1000).toISOString().replace(/\.\d+Z$/, "Z");
    dd.replaceChildren(Object.assign(document.createElement("span"), { className: "ago" }), " ",
      Object.assign(document.createElement("time"), { dateTime: iso, textContent: iso.replace("T", " ").replace("Z", " UTC") }));
    dd.firstChild.dataset.t = t;
  };
  const patch = (m) => {
    const card = cards.get(m.name);
    // A new status moves the card, changes the summary and the bars: fetch the page.
    if (!card || card.dataset.status !== m.status) return reload();
    when(card, "lastCheck", m.lastCheck);
    set(card, "latency", m.lastCheck ? (m.latency < 1 ? "<1 ms" : `${m.latency} ms`) : "—");
    set(card, "uptime24h", pct(m.uptime24h));
    set(card, "uptime30d", pct(m.uptime30d));
    set(card, "detail", m.detail);
    tick(card);
  };
  let timer = 0, busy = false, again = false, last = 0, cost = 0;
  const reload = () => {
    if (busy) { again = true; return; }
    if (!timer) timer = setTimeout(refetch, Math.max(0, last + Math.max(1000, 4 * cost) - Date.now()));
  };
  const refetch = async () => {
    timer = 0; busy = true; again = false;
    const started = performance.now();
    try {
      const res = await fetch(location.href, { cache: "no-store" });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const page = new DOMParser().parseFromString(await res.text(), "text/html");
      for (const id of ["summary", "asof", "monitors", "icon"]) {
        const fresh = page.getElementById(id);
        if (fresh) byId(id).replaceWith(document.adoptNode(fresh));
      }
      document.title = page.title;
      index();
      tick();
    } catch (err) {
      live(false, `cannot reload: ${err.message}`);
    } finally {
      busy = false; last = Date.now(); cost = performance.now() - started;
      if (again) reload();
    }
  };
  const live = (on, why) => {
    const el = byId("live");
    el.hidden = false;
    el.className = on ? "live" : "live off";
    el.textContent = on ? "live" : "offline";
    el.title = on ? "updates as monitors change" : why;
  };
  index();
  tick();
  setInterval(() => tick(), 5000);
  if (!("EventSource" in window)) { setInterval(reload, 30000); return; }
  let opened = false;
  const events = new EventSource(new URL("api/v1/events", location.href));
  events.addEventListener("status", (e) => { try { patch(JSON.parse(e.data)); } catch { reload(); } });
  events.onopen = () => {
    live(true);
    // After a reconnect, catch up on what was missed.
    if (opened) reload();
    opened = true;
  };
  events.onerror = () => live(false, "reconnecting to the server");
})();
