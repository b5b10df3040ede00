// Switchyard's operator console. Every call is an ordinary authenticated
// API or WebSocket call with the admin key the operator gave; the page
// itself holds no secret and no build step makes it. Live figures arrive
// over one WebSocket subscription (the `dashboard`, `status` and `config`
// topics); there is no polling loop. Text from the host is only ever set
// with textContent, never parsed as HTML.
"use strict";

const KEY_ITEM = "switchyard.dashboard.key";
const TAIL_MAX = 500;        // rows kept in the tail
const TIMELINE_MAX = 300;    // entries kept on the timeline
const CHART_POINTS = 120;    // a minute at two snapshots a second

const state = {
  key: null,
  socket: null,
  retry: 0,
  paused: false,
  tail: [],
  cards: new Map(),    // plugin name -> its card
  charts: new Map(),   // "name@hash" -> {node, calls, latency}: one version's pane
  pending: null,       // live timeline events while the backfill is on its way
  traffic: null,       // {chart, data}
  detail: null,        // plugin shown in the deploy detail
  plugins: [],
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name.startsWith("data-")) node.setAttribute(name, String(value));
    else node[name] = value;
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function num(value, digits) {
  if (value === null || value === undefined) return "–";
  return digits === undefined ? String(value) : Number(value).toFixed(digits);
}

function short(hash) {
  return hash ? String(hash).slice(0, 12) : "";
}

// ---------------------------------------------------------------- the API

async function api(method, path, body, contentType) {
  const headers = { Authorization: "Bearer " + state.key };
  if (body !== undefined && body !== null) headers["Content-Type"] = contentType || "application/json";
  const payload = body === undefined || body === null || body instanceof Blob || typeof body === "string" ? body : JSON.stringify(body);
  const response = await fetch(path, { method, headers, body: payload, cache: "no-store" });
  let data = null;
  const text = await response.text();
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = { text }; }
  if (!response.ok) {
    const error = (data && (data.error || (data.data && data.data))) || {};
    const code = error.code || (data && data.code) || String(response.status);
    const message = error.message || (data && data.message) || text || response.statusText;
    const failure = new Error(code + ": " + message);
    failure.status = response.status;
    failure.code = code;
    throw failure;
  }
  return data;
}

// A safe-deploys route on a host without them answers 404 NOT_FOUND "no such route".
function explain(error) {
  if (error.status === 404 && /no such route/i.test(error.message)) {
    return "this host does not offer safe deploys (rollback, canary, shadow) yet";
  }
  return error.message;
}

// ---------------------------------------------------------------- log in

function keyFromFragment() {
  const match = /(?:^#|&)key=([^&]*)/.exec(location.hash);
  if (!match) return null;
  // Out of the address bar (and the history) at once.
  history.replaceState(null, "", location.pathname + location.search);
  try { return decodeURIComponent(match[1]); } catch (_) { return null; }
}

async function logIn(key) {
  state.key = key;
  $("login-error").textContent = "";
  try {
    // An admin-only route: a wrong key gets 401, a non-admin key 403.
    await api("GET", "/api/config");
  } catch (error) {
    state.key = null;
    sessionStorage.removeItem(KEY_ITEM);
    $("login-error").textContent =
      error.status === 401 ? "Refused: this key is not valid (" + error.message + ")."
      : error.status === 403 ? "Refused: this key is not an admin key (" + error.message + ")."
      : "Cannot log in: " + error.message;
    showLogin();
    return false;
  }
  sessionStorage.setItem(KEY_ITEM, key);
  $("login").hidden = true;
  $("nav").hidden = false;
  $("logout").hidden = false;
  show("plugins");
  await Promise.allSettled([loadPlugins(), loadConfig(), loadSnapshot()]);
  connect();
  return true;
}

function showLogin() {
  $("login").hidden = false;
  $("nav").hidden = true;
  $("logout").hidden = true;
  for (const view of document.querySelectorAll(".view")) view.hidden = true;
  $("key").focus();
}

function logOut() {
  sessionStorage.removeItem(KEY_ITEM);
  state.key = null;
  if (state.socket) state.socket.close(1000);
  state.socket = null;
  setLive(false);
  showLogin();
}

function show(view) {
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== "view-" + view;
  for (const button of document.querySelectorAll("nav button")) button.classList.toggle("active", button.dataset.view === view);
  document.body.dataset.view = view;
  if (view === "traffic" && state.traffic) state.traffic.chart.setSize(chartSize($("traffic-chart"), 180));
  if (view === "plugins") resizeCharts();
}

// ---------------------------------------------------------------- live feed

function setLive(on) {
  $("live").textContent = on ? "live" : "offline";
  $("live").className = "state " + (on ? "on" : "off");
}

async function feedEndpoint() {
  try {
    const status = await api("GET", "/api/status");
    const envelopes = (status.endpoints || []).filter((e) => e.format === "envelope").map((e) => e.path);
    if (envelopes.includes("/ws")) return "/ws";
    if (envelopes.length) return envelopes[0];
  } catch (_) { /* the default below */ }
  return "/ws";
}

async function connect() {
  if (!state.key) return;
  const path = await feedEndpoint();
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const url = scheme + "//" + location.host + path + "?access_token=" + encodeURIComponent(state.key);
  const socket = new WebSocket(url);
  state.socket = socket;
  socket.onopen = () => {
    state.retry = 0;
    socket.send(JSON.stringify({ type: "subscribe", id: "dashboard-feed", data: { events: ["dashboard", "status", "config"] } }));
  };
  socket.onmessage = (message) => {
    let frame;
    try { frame = JSON.parse(message.data); } catch (_) { return; }
    const topic = frame.meta && frame.meta.topic;
    if (topic === "dashboard") { setLive(true); onSnapshot(frame.data); }
    else if (topic === "status") onStatus(frame.data);
    else if (topic === "config") onConfig(frame.data);
    else if (frame.id === "dashboard-feed" && frame.type !== "error") backfillTimeline();
    else if (frame.type === "error") note("Live feed refused: " + ((frame.data && frame.data.message) || "error"));
  };
  socket.onclose = () => {
    setLive(false);
    if (state.socket !== socket || !state.key) return;
    // Back off and come back; the tail and charts keep what they have.
    state.retry = Math.min(state.retry + 1, 6);
    setTimeout(connect, 500 * 2 ** state.retry);
  };
}

function note(text) {
  $("tail-note").textContent = text;
}

// ---------------------------------------------------------------- plugins

async function loadPlugins() {
  const list = await api("GET", "/api/plugins");
  state.plugins = list.plugins || [];
  renderDeployRows();
}

async function loadSnapshot() {
  onSnapshot(await api("GET", "/api/dashboard"));
}

function chartSize(container, height) {
  return { width: Math.max(240, container.clientWidth || 320), height };
}

function makeChart(container, title, series, height) {
  const opts = {
    title,
    ...chartSize(container, height),
    legend: { show: true },
    scales: { x: { time: true } },
    axes: [{}, { size: 40 }],
    series: [{}, ...series.map(([label, stroke]) => ({ label, stroke, width: 1.5, spanGaps: true }))],
  };
  const data = [[], ...series.map(() => [])];
  return { chart: new uPlot(opts, data, container), data };
}

function pushPoint(chart, values) {
  const data = chart.data;
  data[0].push(Date.now() / 1000);
  values.forEach((v, i) => data[i + 1].push(v === null || v === undefined ? null : v));
  if (data[0].length > CHART_POINTS) for (const column of data) column.shift();
  chart.chart.setData(data);
}

function resizeCharts() {
  for (const pane of state.charts.values()) {
    pane.calls.chart.setSize(chartSize(pane.node.querySelector(".calls"), 120));
    pane.latency.chart.setSize(chartSize(pane.node.querySelector(".latency"), 120));
  }
}

function roleLabel(v) {
  return v.role + (v.role === "canary" && v.weight ? " · " + v.weight + "%" : "");
}

// One card per plugin. Its serving version, and a running canary's (or a
// shadow's) candidate beside it, each with its figures and charts; the
// retained versions listed below them.
function renderPlugins(plugins) {
  const container = $("plugins");
  const liveCards = new Set();
  const livePanes = new Set();
  let layout = false;  // panes came or went: the charts take their new widths
  for (const p of plugins) {
    liveCards.add(p.name);
    let card = state.cards.get(p.name);
    if (!card) {
      card = el("div", { class: "card plugin", "data-plugin": p.name },
        el("h3", {}, p.name + " ", el("span", { class: "version" })),
        el("div", { class: "meta claims" }),
        el("div", { class: "panes" }),
        el("div", { class: "meta retained" }));
      container.append(card);
      state.cards.set(p.name, card);
    }
    card.dataset.version = p.version;
    card.querySelector("h3 .version").textContent = p.version;
    card.querySelector(".claims").textContent = "claims " + (p.claims || []).join(", ");
    const versions = p.versions || [p];
    const live = versions.filter((v) => v.role !== "retained");
    if (card.classList.contains("split") !== live.length > 1) layout = true;
    card.classList.toggle("split", live.length > 1);
    const panes = card.querySelector(".panes");
    for (const v of live) {
      const id = p.name + "@" + v.hash;
      livePanes.add(id);
      let pane = state.charts.get(id);
      if (!pane) {
        const node = el("div", { class: "version-pane" },
          el("h4", {}, el("span", { class: "version" }, v.version), " ", el("small", { class: "role" })),
          el("div", { class: "meta" }, "hash " + short(v.hash) + " · loaded " + v.loaded_at),
          el("div", { class: "figures" }),
          el("div", { class: "chart calls" }),
          el("div", { class: "chart latency" }));
        panes.append(node);
        pane = {
          node,
          calls: makeChart(node.querySelector(".calls"), "calls/s, errors/s", [["calls/s", "#2457c5"], ["errors/s", "#b3261e"]], 120),
          latency: makeChart(node.querySelector(".latency"), "latency ms", [["p50", "#1b7f3b"], ["p99", "#c77700"]], 120),
        };
        state.charts.set(id, pane);
        layout = true;
      }
      panes.append(pane.node); // serving first, in the host's order
      pane.node.dataset.version = v.version;
      pane.node.dataset.hash = v.hash;
      pane.node.dataset.role = v.role;
      pane.node.querySelector(".role").textContent = roleLabel(v);
      const codes = Object.entries(v.errors_by_code_total || v.errors_by_code || {}).map(([code, n]) => code + " " + n).join(", ") || "none";
      pane.node.querySelector(".figures").replaceChildren(
        el("span", {}, "calls/s ", el("b", { class: "calls-per-s" }, num(v.calls_per_s))),
        el("span", {}, "calls ", el("b", { class: "calls" }, num(v.calls))),
        el("span", {}, "errors ", el("b", { class: "errors" }, num(v.errors))),
        el("span", {}, "p50/p99 ", el("b", { class: "latency" }, num(v.p50_ms, 2) + " / " + num(v.p99_ms, 2) + " ms")),
        el("span", {}, "breaker ", el("b", {}, v.breaker || "–")),
        el("span", {}, "errors by code ", el("b", { class: "codes" }, codes)));
      pushPoint(pane.calls, [v.calls_per_s, v.errors_per_s]);
      pushPoint(pane.latency, [v.p50_ms, v.p99_ms]);
    }
    const retained = versions.filter((v) => v.role === "retained");
    card.querySelector(".retained").replaceChildren(...(retained.length ? ["retained: "] : []),
      ...retained.flatMap((v, i) => [i ? ", " : "", el("span", { class: "held", "data-version": v.version, "data-hash": v.hash, "data-role": v.role },
        v.version + " (" + short(v.hash) + ", " + num(v.calls) + " calls)")]));
  }
  for (const [id, pane] of state.charts) {
    if (!livePanes.has(id)) {
      pane.calls.chart.destroy();
      pane.latency.chart.destroy();
      pane.node.remove();
      state.charts.delete(id);
      layout = true;
    }
  }
  for (const [name, card] of state.cards) {
    if (!liveCards.has(name)) {
      card.remove();
      state.cards.delete(name);
    }
  }
  if (layout && !$("view-plugins").hidden) resizeCharts();
}

// ---------------------------------------------------------------- snapshot

function onSnapshot(snapshot) {
  if (!snapshot) return;
  renderPlugins(snapshot.plugins || []);
  renderTraffic(snapshot);
  if (snapshot.tail) addTail(snapshot.tail);
}

function renderTraffic(s) {
  const messages = s.messages || {};
  if (!state.traffic) state.traffic = makeChart($("traffic-chart"), "messages/s", [["messages/s", "#2457c5"]], 180);
  pushPoint(state.traffic, [messages.per_s || 0]);
  fill($("endpoints"), ((s.connections || {}).by_endpoint || []).map((e) =>
    el("tr", { "data-endpoint": e.endpoint }, el("td", {}, e.endpoint), el("td", { class: "num" }, e.connections))));
  fill($("types"), (messages.by_type || []).map((t) =>
    el("tr", { class: "type-row", "data-type": t.type, "data-outcome": t.outcome },
      el("td", {}, t.type), el("td", { class: t.outcome === "OK" ? "" : "outcome-bad" }, t.outcome),
      el("td", { class: "num" }, num(t.per_s)), el("td", { class: "num total" }, t.total))));
  fill($("rooms"), (s.rooms || []).map((r) =>
    el("li", { "data-room": r.name }, el("b", {}, r.name), " (" + r.size + "): ",
      (r.members || []).map((m) => m.device_id || m.connection_id.slice(0, 8)).join(", "))));
  fill($("topics"), (s.topics || []).map((t) => el("tr", {}, el("td", {}, t.pattern), el("td", { class: "num" }, t.subscribers))));
  fill($("workers"), (s.workers || []).map((w) =>
    el("tr", {}, el("td", {}, w.id), el("td", {}, (w.types || []).join(", ")), el("td", { class: "num" }, w.in_flight + "/" + w.concurrency),
      el("td", { class: "num" }, w.served), el("td", { class: "num" }, num(w.latency_ms, 1)))));
  const routes = (s.proxy && s.proxy.routes) || [];
  fill($("proxy"), routes.flatMap((r) => (r.upstreams || []).map((u) =>
    el("tr", {}, el("td", {}, r.path), el("td", {}, u.url), el("td", { class: u.healthy ? "" : "outcome-bad" },
      (u.healthy ? "healthy" : "down") + (typeof u.health === "string" ? " (" + u.health + ")" : ""))))));
}

// ---------------------------------------------------------------- tail

function filters() {
  const value = (id) => $(id).value.trim();
  return { type: value("filter-type"), room: value("filter-room"), device: value("filter-device"), outcome: value("filter-outcome") };
}

function passes(entry, f) {
  return (!f.type || entry.type === f.type || (f.type.endsWith("*") && entry.type.startsWith(f.type.slice(0, -1))))
    && (!f.room || entry.room === f.room)
    && (!f.device || entry.device_id === f.device)
    && (!f.outcome || entry.outcome === f.outcome);
}

function addTail(tail) {
  const skipped = tail.not_in_tail || 0;
  note(skipped ? "High traffic: the last update described " + (tail.entries || []).length + " messages and counted " + skipped + " more (see Traffic)." : "");
  if (state.paused) return;
  for (const entry of tail.entries || []) state.tail.push(entry);
  if (state.tail.length > TAIL_MAX) state.tail.splice(0, state.tail.length - TAIL_MAX);
  renderTail();
}

function renderTail() {
  const f = filters();
  const rows = [];
  for (let i = state.tail.length - 1; i >= 0; i--) {
    const e = state.tail[i];
    if (!passes(e, f)) continue;
    rows.push(el("tr", { class: "tail-row", "data-type": e.type, "data-outcome": e.outcome, "data-room": e.room, "data-device": e.device_id },
      el("td", {}, new Date(e.at).toLocaleTimeString()),
      el("td", {}, e.type),
      el("td", { class: e.outcome === "OK" ? "" : "outcome-bad" }, e.outcome),
      el("td", {}, e.plugin ? e.plugin + "@" + e.version : "–"),
      el("td", { class: "num" }, e.latency_us),
      el("td", {}, e.client_id || e.connection_id.slice(0, 8)),
      el("td", {}, e.device_id || ""),
      el("td", {}, e.room || ""),
      el("td", { class: "payload", title: e.payload || "" }, e.payload === null || e.payload === undefined ? "(not kept)" : e.payload)));
  }
  fill($("tail"), rows);
}

// ---------------------------------------------------------------- timeline

// An entry for a `status` or `config` event; `at` is when the host
// published it (ms), or now for a live one.
function timelineEntry(topic, d, at) {
  let kind, text, attrs, bad;
  if (topic === "config") {
    const changed = Object.keys(d.new || {}).filter((k) => JSON.stringify((d.old || {})[k]) !== JSON.stringify(d.new[k]));
    kind = "config";
    text = "config changed" + (d.by ? " by " + d.by : "") + ": " + (changed.map((k) => k + " " + JSON.stringify(d.old[k]) + " → " + JSON.stringify(d.new[k])).join(", ") || "no difference");
    attrs = { event: "config_changed" };
    bad = false;
  } else {
    const who = d.plugin ? d.plugin + (d.version ? " " + d.version : "") : (d.file || "");
    text = d.event.replaceAll("_", " ") + ": " + who;
    if (d.previous_version) text += " (was " + d.previous_version + ")";
    if (d.from && d.to) text += " (" + (d.from.version || short(d.from.hash)) + " → " + (d.to.version || short(d.to.hash)) + ")";
    if (d.stable && d.candidate && d.stable.version) text += " (" + d.stable.version + " → " + d.candidate.version + (d.weight ? ", " + d.weight + "%" : "") + ")";
    if (d.reason) text += " — " + d.reason;
    if (d.error) text += " — " + (d.error.code || "") + " " + (d.error.message || "");
    const version = d.version || (d.to && d.to.version) || (d.candidate && d.candidate.version);
    kind = "status";
    attrs = { event: d.event, "data-plugin": d.plugin, "data-version": version };
    bad = /failed|opened|rolled_back/.test(d.event);
  }
  const item = el("li", Object.assign({ class: "timeline-entry " + (bad ? "bad " : "") + kind, "data-event": attrs.event }, attrs),
    el("time", {}, new Date(at).toLocaleTimeString()), text);
  item.dataset.key = topic + " " + JSON.stringify(d);
  return item;
}

function timeline(topic, d) {
  if (state.pending) { state.pending.push([topic, d, Date.now()]); return; }
  const list = $("timeline");
  list.prepend(timelineEntry(topic, d, Date.now()));
  while (list.children.length > TIMELINE_MAX) list.lastElementChild.remove();
}

// What happened before the page subscribed (the host keeps the last
// events): asked for once the subscription holds, then the live events
// that came meanwhile and are not among them.
async function backfillTimeline() {
  state.pending = [];
  try {
    const recent = await api("GET", "/api/dashboard/timeline");
    const entries = (recent.events || []).map((e) => timelineEntry(e.topic, e.data, e.at));
    const known = new Set(entries.map((item) => item.dataset.key));
    for (const [topic, d, at] of state.pending) {
      const item = timelineEntry(topic, d, at);
      if (!known.has(item.dataset.key)) entries.push(item);
    }
    entries.reverse();
    $("timeline").replaceChildren(...entries.slice(0, TIMELINE_MAX));
  } catch (_) {
    // Without the backfill the live events still come.
    for (const [topic, d, at] of state.pending) $("timeline").prepend(timelineEntry(topic, d, at));
  }
  state.pending = null;
}

function onStatus(d) {
  if (!d || !d.event) return;
  timeline("status", d);
  if (/plugin_|canary_|shadow_/.test(d.event)) {
    loadPlugins().catch(() => {});
    if (state.detail && d.plugin === state.detail) showDetail(state.detail);
  }
}

function onConfig(d) {
  if (!d) return;
  timeline("config", d);
  renderLimits(d.new || {});
}

// ---------------------------------------------------------------- deploys

function result(id, text, good) {
  $(id).textContent = text;
  $(id).className = "result " + (good ? "good" : "bad");
}

async function upload(file) {
  if (!file) return;
  result("deploy-result", "uploading " + file.name + "…", true);
  try {
    const answer = await api("POST", "/api/plugins", file, "application/wasm");
    const p = answer.plugin || {};
    result("deploy-result", answer.event.replaceAll("_", " ") + ": " + (p.name || "") + " " + (p.version || ""), true);
    await loadPlugins();
  } catch (error) {
    result("deploy-result", "upload refused: " + error.message, false);
  }
}

function renderDeployRows() {
  fill($("deploy-rows"), state.plugins.map((p) => {
    const unload = el("button", { class: "danger unload", "data-plugin": p.name }, "Unload");
    unload.addEventListener("click", () => {
      // Two clicks, not a modal dialog: "Sure?" then the call.
      if (unload.dataset.armed) { run("DELETE", "/api/plugins/" + encodeURIComponent(p.name)); }
      else { unload.dataset.armed = "1"; unload.textContent = "Sure? Unload"; }
    });
    return el("tr", { class: "deploy-row", "data-plugin": p.name, "data-version": p.version },
      el("td", {}, p.name), el("td", { class: "version" }, p.version), el("td", {}, short(p.hash)),
      el("td", {},
        el("button", { class: "reload", onclick: () => run("POST", "/api/plugins/" + encodeURIComponent(p.name) + "/reload") }, "Reload"), " ",
        el("button", { class: "rollback", "data-plugin": p.name, onclick: () => rollback(p.name, "") }, "Roll back"), " ",
        unload, " ",
        el("button", { class: "details", onclick: () => showDetail(p.name) }, "Versions, canary, shadow")));
  }));
}

async function run(method, path, body, contentType, target) {
  try {
    const answer = await api(method, path, body, contentType);
    const event = (answer && answer.event) || "done";
    const p = answer && answer.plugin;
    const who = typeof p === "string" ? p : p ? p.name + " " + (p.version || "") : "";
    result(target || "deploy-result", event.replaceAll("_", " ") + (who ? ": " + who : "") + (answer && answer.to ? " → " + (answer.to.version || short(answer.to.hash)) : ""), true);
    await loadPlugins();
    return answer;
  } catch (error) {
    result(target || "deploy-result", explain(error), false);
    return null;
  }
}

function rollback(name, to) {
  return run("POST", "/api/plugins/" + encodeURIComponent(name) + "/rollback", to ? { to } : null);
}

function figures(v) {
  if (!v) return el("p", { class: "hint" }, "none");
  const codes = Object.entries(v.errors_by_code || {}).map(([c, n]) => c + " " + n).join(", ") || "none";
  return el("div", { class: "card" }, el("b", {}, (v.version || "") + " " + short(v.hash)),
    el("div", {}, "calls " + num(v.calls) + " · errors " + num(v.errors) + " (" + codes + ")"),
    el("div", {}, "p50/p99 " + num(v.p50_ms, 2) + " / " + num(v.p99_ms, 2) + " ms"));
}

async function showDetail(name) {
  state.detail = name;
  $("deploy-detail").hidden = false;
  $("detail-name").textContent = name;
  const base = "/api/plugins/" + encodeURIComponent(name);
  const [versions, canary, shadow] = await Promise.allSettled([api("GET", base + "/versions"), api("GET", base + "/canary"), api("GET", base + "/shadow")]);
  if (versions.status === "fulfilled") {
    const list = versions.value.versions || [];
    fill($("versions"), list.map((v) => el("tr", { "data-version": v.version, "data-role": v.role },
      el("td", {}, v.version), el("td", {}, short(v.hash)), el("td", {}, v.role), el("td", {}, v.loaded_at),
      el("td", { class: "num" }, v.calls), el("td", { class: "num" }, v.errors), el("td", {}, num(v.p50_ms, 2) + " / " + num(v.p99_ms, 2)))));
    const select = $("rollback-to");
    select.replaceChildren(el("option", { value: "" }, "the previous version"),
      ...list.filter((v) => v.role === "retained").map((v) => el("option", { value: v.hash }, v.version + " (" + short(v.hash) + ")")));
  } else {
    fill($("versions"), [el("tr", {}, el("td", { colSpan: 7 }, explain(versions.reason)))]);
  }
  if (canary.status === "fulfilled") {
    const c = canary.value;
    $("canary").replaceChildren(
      el("div", {}, el("h4", {}, "stable"), figures(c.stable)),
      el("div", {}, el("h4", {}, "candidate · " + c.weight + "% · " + c.state + (c.sticky ? " · sticky " + c.sticky : "")), figures(c.candidate)));
  } else {
    $("canary").replaceChildren(el("p", { class: "hint" }, canary.reason.status === 404 && !/no such route/i.test(canary.reason.message) ? "no canary running" : explain(canary.reason)));
  }
  if (shadow.status === "fulfilled") {
    const s = shadow.value;
    $("shadow").replaceChildren(
      el("p", {}, "compared " + s.compared + " · matched " + s.matched + " · match rate " + num(s.match_rate, 3) + " · dropped " + s.dropped
        + (s.latency ? " · p50/p99 serving " + num(s.latency.serving.p50_ms, 2) + "/" + num(s.latency.serving.p99_ms, 2)
          + " ms, candidate " + num(s.latency.candidate.p50_ms, 2) + "/" + num(s.latency.candidate.p99_ms, 2) + " ms" : "")),
      el("table", { class: "grid" }, el("thead", {}, el("tr", {}, el("th", {}, "type"), el("th", {}, "differing paths"), el("th", {}, "serving"), el("th", {}, "candidate"))),
        el("tbody", {}, ...(s.samples || []).map((d) => el("tr", {}, el("td", {}, d.type), el("td", {}, (d.differing_paths || []).join(", ")),
          el("td", { class: "payload" }, JSON.stringify(d.serving)), el("td", { class: "payload" }, JSON.stringify(d.candidate)))))));
  } else {
    $("shadow").replaceChildren(el("p", { class: "hint" }, shadow.reason.status === 404 && !/no such route/i.test(shadow.reason.message) ? "no shadow running" : explain(shadow.reason)));
  }
}

async function startCanary() {
  const name = state.detail;
  const weight = Number($("canary-weight").value) || 5;
  const sticky = $("canary-sticky").value;
  const file = $("canary-file").files[0];
  const base = "/api/plugins/" + encodeURIComponent(name) + "/canary";
  if (file) {
    await run("POST", base + "?weight=" + weight + (sticky ? "&sticky=" + sticky : ""), file, "application/wasm");
  } else {
    const version = $("canary-version").value.trim();
    if (!version) return result("deploy-result", "choose a component file or a retained version for the canary", false);
    await run("POST", base, { version, weight, ...(sticky ? { sticky } : {}) });
  }
  showDetail(name);
}

async function startShadow() {
  const name = state.detail;
  const ignore = $("shadow-ignore").value.split(",").map((s) => s.trim()).filter(Boolean);
  const file = $("shadow-file").files[0];
  const base = "/api/plugins/" + encodeURIComponent(name) + "/shadow";
  if (file) {
    await run("POST", base + (ignore.length ? "?ignore=" + encodeURIComponent(ignore.join(",")) : ""), file, "application/wasm");
  } else {
    const version = $("shadow-version").value.trim();
    if (!version) return result("deploy-result", "choose a component file or a retained version for the shadow", false);
    await run("POST", base, { version, ignore });
  }
  showDetail(name);
}

// ---------------------------------------------------------------- config

let limits = {};

async function loadConfig() {
  const config = await api("GET", "/api/config");
  renderLimits(config.limits || {});
}

function renderLimits(values) {
  limits = values;
  const rows = Object.entries(values).sort(([a], [b]) => a.localeCompare(b)).map(([name, value]) => {
    const input = typeof value === "boolean"
      ? el("input", { type: "checkbox", checked: value, name })
      : el("input", { type: typeof value === "number" ? "number" : "text", value: value === null ? "" : String(value), name });
    input.dataset.limit = name;
    return el("label", {}, el("span", {}, name), input);
  });
  $("limits").replaceChildren(...rows);
}

async function saveConfig(event) {
  event.preventDefault();
  const patch = {};
  for (const input of $("limits").querySelectorAll("input")) {
    const name = input.dataset.limit;
    const old = limits[name];
    let value = input.type === "checkbox" ? input.checked : input.type === "number" ? Number(input.value) : input.value;
    if (old === null && value === "") value = null;
    if (JSON.stringify(value) !== JSON.stringify(old)) patch[name] = value;
  }
  if (!Object.keys(patch).length) return result("config-result", "nothing changed", true);
  try {
    const answer = await api("PUT", "/api/config", patch);
    renderLimits(answer.new || {});
    result("config-result", "saved: " + Object.keys(patch).join(", "), true);
  } catch (error) {
    result("config-result", "refused: " + error.message, false);
  }
}

// ---------------------------------------------------------------- start

function start() {
  for (const button of document.querySelectorAll("nav button")) button.addEventListener("click", () => show(button.dataset.view));
  $("login-form").addEventListener("submit", (event) => { event.preventDefault(); logIn($("key").value.trim()); $("key").value = ""; });
  $("logout").addEventListener("click", logOut);
  $("upload-file").addEventListener("change", (event) => { upload(event.target.files[0]); event.target.value = ""; });
  const zone = $("dropzone");
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => { event.preventDefault(); zone.classList.remove("over"); upload(event.dataTransfer.files[0]); });
  $("rollback").addEventListener("click", () => rollback(state.detail, $("rollback-to").value));
  $("canary-start").addEventListener("click", startCanary);
  $("canary-promote").addEventListener("click", () => run("POST", "/api/plugins/" + encodeURIComponent(state.detail) + "/canary/promote").then(() => showDetail(state.detail)));
  $("canary-rollback").addEventListener("click", () => run("POST", "/api/plugins/" + encodeURIComponent(state.detail) + "/canary/rollback").then(() => showDetail(state.detail)));
  $("shadow-start").addEventListener("click", startShadow);
  $("shadow-stop").addEventListener("click", () => run("DELETE", "/api/plugins/" + encodeURIComponent(state.detail) + "/shadow").then(() => showDetail(state.detail)));
  $("tail-pause").addEventListener("click", () => {
    state.paused = !state.paused;
    $("tail-pause").textContent = state.paused ? "Resume" : "Pause";
  });
  $("tail-clear").addEventListener("click", () => { state.tail = []; renderTail(); });
  for (const id of ["filter-type", "filter-room", "filter-device", "filter-outcome"]) {
    $(id).addEventListener("input", renderTail);
    $(id).addEventListener("change", renderTail);
  }
  $("config-form").addEventListener("submit", saveConfig);
  let resizing = null;
  window.addEventListener("resize", () => { clearTimeout(resizing); resizing = setTimeout(() => show(document.body.dataset.view || "plugins"), 150); });

  const key = keyFromFragment() || sessionStorage.getItem(KEY_ITEM);
  if (key) logIn(key); else showLogin();
}

start();
