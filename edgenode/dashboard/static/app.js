// The edgenode dashboard page: one snapshot, then deltas over server-sent events.
// Plain script, no build step; the only library is the vendored uPlot.  Read-only: it sends
// nothing but GET requests to the server it came from.
"use strict";

(function () {
  const token = new URLSearchParams(location.search).get("token");
  const q = token ? "?token=" + encodeURIComponent(token) : "";
  const $ = (id) => document.getElementById(id);
  const MAX_ROWS = 100;

  // What the page holds; the same code for a simulation and a fleet.
  const S = {
    meta: {}, nodes: new Map(), links: [], tasks: [], hist: { edges_ms: [], counts: [] }, bins: [],
    counters: {}, ledger: {}, fl: { rounds: [] }, security: { refusals: {}, offences: [], banned: [] }, faults: [],
  };
  // Read by the browser tests and the benchmark: update lag per task row (receipt -> row on the page).
  const stats = { snapshots: 0, deltas: 0, rows: 0, lags: [], connected: false, errors: 0 };
  window.dashStats = stats;

  const short = (id) => (id && id.length > 14 ? id.slice(0, 6) + "\u2026" + id.slice(-6) : id || "");
  const el = (tag, attrs, text) => {
    const e = document.createElement(tag);
    if (attrs) for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  };
  const svg = (tag, attrs) => {
    const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    return e;
  };
  const fmt = (x, d) => (x === null || x === undefined ? "\u2013" : Number(x).toFixed(d === undefined ? 1 : d));
  const td = (text, cls) => el("td", cls ? { class: cls } : null, text);

  // -- charts --------------------------------------------------------------------------------
  // Faults shaded on the time axes, as in the report's plots.
  const faultColours = { partition: "rgba(209,69,59,0.13)", kill: "rgba(60,60,60,0.12)",
                         degrade: "rgba(213,138,24,0.15)", byzantine: "rgba(128,60,190,0.13)" };
  function shadeFaults(u) {
    const ctx = u.ctx;
    const { left, top, width, height } = u.bbox;
    ctx.save();
    for (const f of S.faults) {
      const end = f.end_s === null ? S.meta.now_s || f.start_s : f.end_s;
      let x0 = u.valToPos(f.start_s, "x", true);
      let x1 = u.valToPos(Math.max(end, f.start_s + 0.2), "x", true);
      x0 = Math.max(left, x0); x1 = Math.min(left + width, x1);
      if (x1 <= x0) continue;
      ctx.fillStyle = faultColours[f.kind] || "rgba(120,120,120,0.12)";
      ctx.fillRect(x0, top, x1 - x0, height);
    }
    ctx.restore();
  }
  function chart(target, series, axes, scales, shade) {
    const box = $(target);
    const width = Math.max(280, box.clientWidth || 340);
    const data = [[], ...series.slice(1).map(() => [])];
    return new uPlot({
      width, height: 190, series, axes, scales: scales || { x: { time: false } },
      hooks: shade ? { drawClear: [shadeFaults] } : {}, legend: { show: true }, cursor: { drag: { x: false, y: false } },
    }, data, box);
  }
  const secsAxis = { label: "s", size: 30, values: (u, v) => v.map((x) => x.toFixed(0)) };
  let thru = null, flc = null;
  function initCharts() {
    if (typeof uPlot === "undefined") return;
    thru = chart("throughput", [{}, { label: "done/s", stroke: "#2f6fd6", width: 1.5 },
                                { label: "ok/s", stroke: "#2e9d5b", width: 1 }], [secsAxis, { size: 36 }], null, true);
    flc = chart("flchart", [{ label: "round" },
      { label: "accuracy", stroke: "#2e9d5b", width: 1.5, points: { show: true }, scale: "y" },
      { label: "centralized", stroke: "#6b7383", dash: [5, 4], width: 1, scale: "y" },
      { label: "loss", stroke: "#d58a18", width: 1, points: { show: true }, scale: "loss" }],
      [{ label: "round", size: 30 }, { scale: "y", size: 36 }, { scale: "loss", side: 1, size: 36 }],
      { x: { time: false }, y: { range: [0, 1] }, loss: {} }, false);
  }

  // -- render ----------------------------------------------------------------------------------
  let graphDirty = true, nodesDirty = true;
  function renderMeta() {
    const m = S.meta;
    $("title").textContent = m.title || "edgenode swarm";
    document.title = m.title || "edgenode swarm";
    $("phase").textContent = m.phase || "";
    $("clock").textContent = m.now_s !== undefined ? fmt(m.now_s, 1) + " s" : "";
    const c = S.counters;
    const up = [...S.nodes.values()].filter((n) => n.state === "up").length;
    $("summary").textContent = `${up}/${S.nodes.size} nodes up \u00b7 ${c.finished || 0} tasks done (${c.ok || 0} ok)` +
      (c.in_flight !== undefined ? ` \u00b7 ${c.in_flight} in flight` : "") +
      (c.submitted !== undefined ? ` \u00b7 ${c.submitted} submitted` : "");
  }

  function renderGraph() {
    const g = $("graph");
    const nodes = [...S.nodes.values()].sort((a, b) => (a.self === b.self ? (a.id < b.id ? -1 : 1) : a.self ? -1 : 1));
    const pos = new Map();
    const ring = nodes.filter((n) => !n.self);
    const r = ring.length > 1 ? 165 : 0;
    ring.forEach((n, i) => {
      const a = (2 * Math.PI * i) / Math.max(1, ring.length) - Math.PI / 2;
      pos.set(n.id, [200 + r * Math.cos(a), 200 + r * Math.sin(a)]);
    });
    nodes.filter((n) => n.self).forEach((n) => pos.set(n.id, [200, 200]));
    const frag = document.createDocumentFragment();
    const lines = svg("g", { class: "links" });
    for (const [a, b, kind] of S.links) {
      const pa = pos.get(a), pb = pos.get(b);
      if (!pa || !pb) continue;
      lines.appendChild(svg("line", { x1: pa[0], y1: pa[1], x2: pb[0], y2: pb[1], class: kind }));
    }
    frag.appendChild(lines);
    const rad = nodes.length > 60 ? 4 : nodes.length > 25 ? 6 : 9;
    for (const n of nodes) {
      const [x, y] = pos.get(n.id);
      const adv = n.advert;
      const busy = adv && adv.slots > 0 && adv.free_slots === 0;
      const cls = ["node", n.self ? "self" : n.state, busy ? "busy" : ""].join(" ").trim();
      const grp = svg("g", { class: cls, "data-peer": n.id, "data-state": n.state });
      const c = svg("circle", { cx: x, cy: y, r: n.self ? rad + 2 : rad });
      const t = svg("title", {});
      t.textContent = `${n.id}\n${n.state}${n.member === true ? ", member" : ""}` +
        (adv ? `\n${adv.slots - adv.free_slots}/${adv.slots} running, ${adv.queue_len} queued` : "");
      c.appendChild(t);
      grp.appendChild(c);
      if (nodes.length <= 40) {
        const lbl = svg("text", { x: x + rad + 2, y: y + 3 });
        lbl.textContent = n.id.slice(-4);
        grp.appendChild(lbl);
      }
      frag.appendChild(grp);
    }
    g.replaceChildren(frag);
    $("peer-count").textContent = `${nodes.length} nodes, ${S.links.length} links`;
  }

  function renderNodes() {
    const body = $("nodes").tBodies[0];
    const rows = [];
    const nodes = [...S.nodes.values()].sort((a, b) => (a.id < b.id ? -1 : 1));
    for (const n of nodes) {
      const a = n.advert, l = n.ledger, f = n.fl;
      const tr = el("tr", { "data-peer": n.id });
      tr.appendChild(td(short(n.id) + (n.self ? " (this)" : ""), "mono"));
      tr.appendChild(td(n.state, n.state === "up" ? "ok" : n.state === "banned" ? "bad" : "meh"));
      tr.appendChild(td(n.member === null || n.member === undefined ? "\u2013" : n.member ? "yes" : "no"));
      tr.appendChild(td(a ? a.capabilities.join(" ") : "\u2013"));
      tr.appendChild(td(a ? a.models.map((m) => m.slice(0, 8)).join(" ") || "\u2013" : "\u2013", "mono"));
      tr.appendChild(td(a ? `${a.slots - a.free_slots}/${a.slots}` : "\u2013"));
      tr.appendChild(td(a ? `${a.queue_len}/${a.queue_cap}` : "\u2013"));
      tr.appendChild(td(a ? a.cost_class : "\u2013"));
      tr.appendChild(td(a ? a.reach : "\u2013"));
      tr.appendChild(td(l ? String(l.height) : "\u2013"));
      tr.appendChild(td(f ? `r${f.round} ${fmt(f.accuracy, 3)}` : "\u2013"));
      tr.appendChild(td(String(n.tasks || 0)));
      rows.push(tr);
    }
    body.replaceChildren(...rows);
    renderLedgers(nodes);
  }

  function renderLedgers(nodes) {
    const body = $("ledgers").tBodies[0];
    const rows = [];
    let verified = 0, failed = 0, chains = 0;
    for (const n of nodes) {
      const l = n.ledger;
      if (!l) continue;
      chains += 1;
      if (l.verified === true) verified += 1;
      if (l.verified === false) failed += 1;
      const tr = el("tr", { "data-chain": n.id });
      tr.appendChild(td(short(n.id), "mono"));
      tr.appendChild(td(String(l.height)));
      tr.appendChild(td(l.held === null || l.held === undefined ? "\u2013" : String(l.held)));
      const v = l.verified === null || l.verified === undefined ? "not checked" : l.verified ? "yes" : "NO " + (l.detail || "");
      tr.appendChild(td(v, l.verified === false ? "bad" : l.verified ? "ok" : "meh"));
      rows.push(tr);
    }
    body.replaceChildren(...rows);
    $("ledger-summary").textContent =
      `${chains} chains, ${verified} verify, ${failed} fail, ${S.ledger.fork_proofs || 0} fork proofs`;
  }

  function addTaskRows(rows, live) {
    const body = $("tasks").tBodies[0];
    const now = Date.now();
    for (const t of rows) {
      const tr = el("tr", { "data-task": t.id, "data-status": t.status, class: live ? "fresh" : "" });
      tr.appendChild(td(short(t.id), "mono"));
      tr.appendChild(td(t.kind));
      tr.appendChild(td(short(t.executor), "mono"));
      tr.appendChild(td(t.status, t.status === "ok" ? "ok" : "bad"));
      tr.appendChild(td(t.latency_ms === null ? "\u2013" : fmt(t.latency_ms, 1) + " ms"));
      tr.appendChild(td(fmt(t.t_s, 1) + " s"));
      body.insertBefore(tr, body.firstChild);
      stats.rows += 1;
      if (live && t.at_ms) stats.lags.push(now - t.at_ms);
    }
    while (body.rows.length > MAX_ROWS) body.deleteRow(body.rows.length - 1);
    if (live) setTimeout(() => { for (const r of body.querySelectorAll("tr.fresh")) r.className = ""; }, 1500);
  }

  function renderHist() {
    const box = $("hist");
    const { edges_ms: edges, counts } = S.hist;
    const max = Math.max(1, ...counts);
    const bars = counts.map((n, i) => {
      const b = el("div", { class: "bar", title: `${n} tasks` });
      b.appendChild(el("div", { class: "n" }, n || ""));
      const f = el("div", { class: "fill" });
      f.style.height = ((100 * n) / max).toFixed(1) + "%";
      b.appendChild(f);
      const lo = i === 0 ? 0 : edges[i - 1];
      b.appendChild(el("div", { class: "lbl" }, i < edges.length ? "\u2264" + edges[i] : ">" + lo));
      return b;
    });
    box.replaceChildren(...bars);
  }

  function renderThroughput() {
    if (!thru) return;
    const xs = S.bins.map((b) => b[0]), done = S.bins.map((b) => b[1]), ok = S.bins.map((b) => b[2]);
    thru.setData([xs, done, ok]);
  }

  function renderFL() {
    const fl = S.fl;
    const rs = fl.rounds || [];
    const last = rs.length ? rs[rs.length - 1] : null;
    $("fl-summary").textContent = last
      ? `round ${last.round}${fl.rounds_planned ? "/" + fl.rounds_planned : ""}, accuracy ${fmt(last.accuracy, 3)}, ${fmt(last.updates, 1)} updates/node`
      : "no rounds yet";
    $("fl-model").textContent = fl.model ? "model in serving: " + fl.model : "";
    if (flc) {
      const xs = rs.map((r) => r.round);
      flc.setData([xs, rs.map((r) => r.accuracy), rs.map(() => fl.baseline), rs.map((r) => r.loss)]);
    }
  }

  function renderSecurity() {
    const sec = S.security;
    const body = $("refusals").tBodies[0];
    const rows = Object.entries(sec.refusals || {}).sort((a, b) => b[1] - a[1]).map(([k, v]) => {
      const tr = el("tr");
      tr.appendChild(td(k));
      tr.appendChild(td(String(v)));
      return tr;
    });
    if (!rows.length) { const tr = el("tr"); tr.appendChild(td("none")); tr.appendChild(td("0")); rows.push(tr); }
    body.replaceChildren(...rows);
    const ul = $("offences");
    ul.replaceChildren(...S.security.offences.slice(-50).reverse().map((o) => {
      const li = el("li");
      li.appendChild(el("span", { class: "t" }, fmt(o.t_s, 1) + " s"));
      li.appendChild(document.createTextNode(` ${short(o.peer)} ${o.offence}${o.banned ? " (banned)" : ""}`));
      return li;
    }));
    $("banned").textContent = (sec.banned || []).length ? `${sec.banned.length} banned` : "";
  }

  function renderFaults() {
    const ul = $("faults");
    const items = S.faults.filter((f) => f.start_s <= (S.meta.now_s || 0) + 0.001);
    ul.replaceChildren(...items.map((f) => {
      const li = el("li");
      li.appendChild(el("span", { class: "t" }, fmt(f.start_s, 1) + " s"));
      const until = f.end_s === null ? "ongoing" : "until " + fmt(f.end_s, 1) + " s";
      li.appendChild(document.createTextNode(` ${f.label} (${f.nodes.length} nodes, ${until})`));
      return li;
    }));
    if (!items.length) ul.replaceChildren(el("li", null, "none"));
  }

  // -- apply --------------------------------------------------------------------------------------
  function apply(d, full) {
    if (d.meta) S.meta = d.meta;
    if (full) {
      S.nodes = new Map();
      S.tasks = [];
      $("tasks").tBodies[0].replaceChildren();
    }
    if (d.nodes) { for (const n of d.nodes) S.nodes.set(n.id, n); graphDirty = nodesDirty = true; }
    if (d.gone) { for (const id of d.gone) S.nodes.delete(id); graphDirty = nodesDirty = true; }
    if (d.links) { S.links = d.links; graphDirty = true; }
    if (d.counters) S.counters = d.counters;
    if (d.ledger) { S.ledger = d.ledger; nodesDirty = true; }
    if (d.tasks) addTaskRows(d.tasks, !full);
    if (d.hist) { S.hist = d.hist; renderHist(); }
    if (d.bins) {
      if (full) S.bins = d.bins;
      else {
        const from = d.bins.length ? d.bins[0][0] : Infinity;
        S.bins = S.bins.filter((b) => b[0] < from).concat(d.bins);
        if (S.bins.length > 900) S.bins = S.bins.slice(-900);
      }
    }
    if (d.fl) {
      const rounds = full ? d.fl.rounds : mergeRounds(S.fl.rounds || [], d.fl.rounds);
      S.fl = { ...d.fl, rounds };
      renderFL();
    }
    if (d.security) {
      const offences = full ? d.security.offences : S.security.offences.concat(d.security.offences).slice(-100);
      S.security = { ...d.security, offences };
      renderSecurity();
    }
    if (d.faults) S.faults = d.faults;
    if (d.bins || d.faults || d.meta) renderThroughput();
    if (d.faults || d.meta) renderFaults();
    if (graphDirty) { renderGraph(); graphDirty = false; }
    if (nodesDirty) { renderNodes(); nodesDirty = false; }
    renderMeta();
    $("task-counts").textContent = `${S.counters.finished || 0} finished, ${S.counters.ok || 0} ok`;
  }
  function mergeRounds(old, fresh) {
    const byRound = new Map(old.map((r) => [r.round, r]));
    for (const r of fresh) byRound.set(r.round, r);
    return [...byRound.values()].sort((a, b) => a.round - b.round);
  }

  // -- connect --------------------------------------------------------------------------------------
  function connect() {
    const es = new EventSource("api/events" + q);
    const conn = $("conn");
    es.addEventListener("snapshot", (ev) => {
      stats.snapshots += 1;
      stats.connected = true;
      conn.textContent = "live"; conn.className = "conn on";
      try { apply(JSON.parse(ev.data), true); } catch (e) { stats.errors += 1; console.error(e); }
    });
    es.addEventListener("delta", (ev) => {
      stats.deltas += 1;
      try { apply(JSON.parse(ev.data), false); } catch (e) { stats.errors += 1; console.error(e); }
    });
    es.onerror = () => { stats.connected = false; conn.textContent = "reconnecting"; conn.className = "conn off"; };
  }
  $("snapshot-link").setAttribute("href", "api/snapshot" + q);
  initCharts();
  renderHist();
  renderFL();
  renderSecurity();
  renderFaults();
  connect();
})();
