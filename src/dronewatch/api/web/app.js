// dronewatch web page: one card per ground station with its verdict, the timeline of bytes
// leaving per category, the alerts (filters kept in the URL, a drawer with the evidence), and a
// map of where the data went. Plain DOM, no framework, nothing fetched but this service's own API
// and assets. Every value from the API is inserted as text (textContent), never as markup, and
// styles are set through classes or CSSOM only (the service's CSP forbids inline styles).
/* global DronewatchTimeline */

const POLL_MS = 2000;
const SSE_RETRY_MS = 30000;
const OVERVIEW_MS = 10000;
const MAX_ALERTS = 1000;
const KEY_STORE = "dronewatch.key";
const FILTERS = ["device", "category", "severity", "status", "start", "end"];
const CATEGORIES = Object.keys(DronewatchTimeline.COLOURS);
const VERDICTS = {
  violation: ["Violation", "Data left while local-data mode was on"],
  clean: ["Nothing left", "Nothing left the device while local-data mode was on"],
  incomplete: ["Incomplete", "Nothing seen leaving, but the capture did not see everything"],
  not_applicable: ["LDM off", "Local-data mode was off: nothing to judge"],
};

const state = {
  key: sessionStorage.getItem(KEY_STORE), alerts: new Map(), lastSeq: 0, filters: {},
  devices: [], selected: null, world: null, chart: null, running: false, live: null,
  abort: null, timers: [], renderPending: false, overviewPending: null, opener: null,
  evidenceCursor: null,
};

const $ = (id) => document.getElementById(id);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const fmtBytes = DronewatchTimeline.fmtBytes;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("aria-") || k.startsWith("data-") || ["role", "tabindex", "type", "for", "title"].includes(k)) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const child of children) {
    if (child == null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

class ApiError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

function authHeaders(extra = {}) {
  const headers = { ...extra };
  if (state.key) headers.Authorization = `Bearer ${state.key}`;
  return headers;
}

async function api(path, options = {}) {
  const headers = authHeaders(options.headers || {});
  if (options.body) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, { ...options, headers });
  if (resp.status === 304) return { notModified: true };
  let body = null;
  const text = await resp.text();
  if (text) { try { body = JSON.parse(text); } catch { body = { detail: text }; } }
  if (!resp.ok) {
    const detail = body && typeof body.detail === "string" ? body.detail : `HTTP ${resp.status}`;
    throw new ApiError(resp.status, detail);
  }
  return { body, etag: resp.headers.get("ETag"), headers: resp.headers };
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : "";
}

function fmtTime(ts) {
  if (ts == null) return "-";
  if (ts === 0) return "the start";
  return new Date(ts * 1000).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
}

function showError(message) {
  const banner = $("error");
  banner.textContent = message || "";
  banner.hidden = !message;
}

function setStatus(text) { $("status").textContent = text; }

function deviceLabel(d) { return d.name || d.hostname || d.ip || d.mac || `device ${d.id}`; }

// --- filters, kept in the URL ----------------------------------------------------------------

function pad(n) { return String(n).padStart(2, "0"); }

function toLocalInput(ts) {
  if (ts == null || !Number.isFinite(ts)) return "";
  const d = new Date(ts * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function fromLocalInput(value) {
  if (!value) return null;
  const t = new Date(value).getTime();
  return Number.isFinite(t) ? t / 1000 : null;
}

function filtersFromUrl() {
  const q = new URLSearchParams(location.search);
  const f = {};
  for (const k of FILTERS) {
    const v = q.get(k);
    if (!v) continue;
    if (k === "start" || k === "end") {
      const n = Number(v);
      if (Number.isFinite(n) && n >= 0) f[k] = n;
    } else f[k] = v;
  }
  return f;
}

function filtersToUrl(f, push) {
  const q = new URLSearchParams(location.search);
  for (const k of FILTERS) {
    if (f[k] != null && f[k] !== "") q.set(k, k === "start" || k === "end" ? String(Math.round(f[k] * 1000) / 1000) : f[k]);
    else q.delete(k);
  }
  const s = q.toString();
  const url = `${location.pathname}${s ? `?${s}` : ""}`;
  if (url !== `${location.pathname}${location.search}`) history[push ? "pushState" : "replaceState"](null, "", url);
}

function fillFilterForm() {
  const f = state.filters;
  const dev = $("f-device");
  if (f.device && ![...dev.options].some((o) => o.value === f.device)) {
    dev.append(el("option", { value: f.device }, f.device));
  }
  dev.value = f.device || "";
  $("f-category").value = f.category || "";
  $("f-severity").value = f.severity || "";
  $("f-status").value = f.status || "";
  $("f-start").value = toLocalInput(f.start);
  $("f-end").value = toLocalInput(f.end);
  $("zoom-reset").hidden = f.start == null && f.end == null;
}

function filtersFromForm() {
  const f = {};
  for (const k of ["device", "category", "severity", "status"]) {
    const v = $(`f-${k}`).value;
    if (v) f[k] = v;
  }
  const start = fromLocalInput($("f-start").value);
  const end = fromLocalInput($("f-end").value);
  if (start != null) f.start = start;
  if (end != null) f.end = end;
  return f;
}

function setFilters(f, push = true) {
  state.filters = f;
  filtersToUrl(f, push);
  fillFilterForm();
  reloadView();
}

function matches(a, f = state.filters) {
  if (f.device && a.device_ip !== f.device && (a.device_mac || "") !== f.device.toLowerCase()) return false;
  if (f.category && a.category !== f.category) return false;
  if (f.severity && a.severity !== f.severity) return false;
  if (f.status && a.status !== f.status) return false;
  if (f.start != null && a.last_seen < f.start) return false;
  if (f.end != null && a.first_seen >= f.end) return false;
  return true;
}

// --- device cards ------------------------------------------------------------------------------

function ldmText(card) {
  const d = card.device;
  const since = card.ldm_since == null ? "" : (card.ldm_since === 0 ? " from the start" : ` since ${fmtTime(card.ldm_since)}`);
  const by = card.ldm_by ? ` (set by ${card.ldm_by})` : "";
  return `${d.ldm ? "On" : "Off"}${since}${by}`;
}

function toggleButton(d) {
  const label = deviceLabel(d);
  const button = el("button", { class: "toggle", type: "button", "aria-pressed": String(d.ldm),
    "aria-label": `Local-data mode of ${label}` }, d.ldm ? "LDM on" : "LDM off");
  button.addEventListener("click", async () => {
    $("devices-error").textContent = "";
    button.disabled = true;
    try {
      await api(`/api/v1/devices/${d.id}/ldm`, { method: "PUT", body: JSON.stringify({ on: !d.ldm }) });
      await loadOverview();
      loadTimeline();
    } catch (e) {
      $("devices-error").textContent = e.status === 403
        ? `Not allowed: ${e.message}. An admin key can change local-data mode.` : e.message;
      button.disabled = false;
    }
  });
  return button;
}

function deviceCard(card) {
  const d = card.device;
  const v = card.verdict;
  const [badge, meaning] = VERDICTS[v.verdict] || [v.verdict, ""];
  const label = deviceLabel(d);
  const ident = [d.ip, d.mac, d.hostname].filter((x) => x && x !== label).join(" · ");
  const dests = v.destinations || [];
  const destText = dests.length
    ? `${dests.length}: ${dests.slice(0, 3).map((x) => `${x.destination} (${x.category})`).join(", ")}${dests.length > 3 ? `, +${dests.length - 3} more` : ""}`
    : "none";
  const cov = v.coverage;
  const covText = `${cov.packets.toLocaleString()} packets in ${cov.captures} capture${cov.captures === 1 ? "" : "s"}`;
  const open = card.alerts.open || 0;
  const total = Object.values(card.alerts).reduce((a, b) => a + b, 0);
  const focus = el("button", { type: "button", class: "link" }, total ? `Show its ${total} alert${total === 1 ? "" : "s"} and timeline` : "Show its timeline");
  focus.addEventListener("click", () => {
    setFilters({ ...state.filters, device: d.ip || d.mac });
    $("timeline-title").scrollIntoView({ block: "start" });
  });
  const caveats = card.caveats.length
    ? el("ul", { class: "caveats", "aria-label": "What limits this verdict" }, ...card.caveats.map((c) => el("li", {}, c)))
    : null;
  return el("li", { class: `card verdict-${v.verdict}`, "data-device-id": String(d.id), "data-verdict": v.verdict },
    el("div", { class: "card-head" },
      el("h3", {}, label),
      el("span", { class: `badge badge-${v.verdict}`, title: meaning }, badge)),
    ident ? el("p", { class: "ident" }, ident, d.discovered ? " (discovered)" : "") : null,
    el("p", { class: "verdict-msg" }, v.msg),
    el("dl", { class: "facts" },
      el("dt", {}, "Local-data mode"), el("dd", { class: "ldm-row" }, el("span", {}, ldmText(card)), toggleButton(d)),
      el("dt", {}, "Off the device"), el("dd", {}, `${fmtBytes(card.bytes_off)}`, card.bytes_ldm_on ? el("strong", {}, ` (${fmtBytes(card.bytes_ldm_on)} while LDM on)`) : ""),
      el("dt", {}, "Destinations"), el("dd", { class: "wrap" }, destText),
      el("dt", {}, "Coverage"), el("dd", {}, covText, caveats),
      el("dt", {}, "Last activity"), el("dd", {}, fmtTime(card.last_seen)),
      el("dt", {}, "Alerts"), el("dd", {}, total ? `${open} open of ${total}` : "none")),
    el("div", { class: "card-actions" }, focus));
}

function renderAnswer(cards) {
  const on = cards.filter((c) => c.verdict.ldm);
  const bad = on.filter((c) => c.verdict.verdict === "violation");
  const unsure = on.filter((c) => c.verdict.verdict === "incomplete");
  const answer = $("answer");
  answer.className = `answer ${bad.length ? "answer-bad" : unsure.length ? "answer-unsure" : "answer-good"}`;
  if (!cards.length) answer.textContent = "No ground station yet: replay a capture or run an agent.";
  else if (!on.length) answer.textContent = "No ground station has local-data mode on: nothing to judge.";
  else if (bad.length) answer.textContent = `Yes: ${bad.length} of ${on.length} ground stations with local-data mode on sent data off the device (${bad.map((c) => deviceLabel(c.device)).join(", ")}).`;
  else if (unsure.length) answer.textContent = `Nothing seen leaving, but coverage is incomplete for ${unsure.length} of ${on.length} ground stations.`;
  else answer.textContent = `No: nothing left any of the ${on.length} ground stations with local-data mode on.`;
}

function renderDeviceOptions() {
  const dev = $("f-device");
  const current = state.filters.device || "";
  const opts = [el("option", { value: "" }, "All devices"),
    ...state.devices.map((d) => el("option", { value: d.ip || d.mac }, d.ip && deviceLabel(d) !== d.ip ? `${deviceLabel(d)} (${d.ip})` : deviceLabel(d)))];
  dev.replaceChildren(...opts);
  if (current && ![...dev.options].some((o) => o.value === current)) dev.append(el("option", { value: current }, current));
  dev.value = current;
}

async function loadOverview() {
  const f = state.filters;
  const res = await api(`/api/v1/overview${query({ start: f.start, end: f.end })}`);
  const cards = res.body.devices;
  state.devices = cards.map((c) => c.device);
  renderDeviceOptions();
  renderAnswer(cards);
  $("devices").replaceChildren(...(cards.length ? cards.map(deviceCard) : [el("li", { class: "card" }, "No devices yet.")]));
}

function scheduleOverview() {
  if (state.overviewPending) return;
  state.overviewPending = setTimeout(() => {
    state.overviewPending = null;
    loadOverview().catch(() => {});
  }, 1000);
}

// --- timeline --------------------------------------------------------------------------------

async function loadTimeline() {
  const f = state.filters;
  const dev = f.device ? state.devices.find((d) => d.ip === f.device || d.mac === f.device) : null;
  const chart = $("chart");
  const buckets = Math.max(30, Math.min(240, Math.round((chart.clientWidth || 600) / 8)));
  $("timeline-scope").textContent = f.device ? `: ${dev ? deviceLabel(dev) : f.device}` : ": all devices";
  if (f.device && !dev) {
    DronewatchTimeline.destroy(state.chart);
    state.chart = null;
    chart.replaceChildren(el("p", { class: "muted" }, "No device with this address."));
    return;
  }
  const res = await api(`/api/v1/overview/timeline${query({ device: dev ? dev.id : null, start: f.start, end: f.end, buckets })}`);
  renderPeriods(res.body.activity || []);
  DronewatchTimeline.destroy(state.chart);
  state.chart = DronewatchTimeline.draw(chart, res.body, {
    onZoom: (from, to) => setFilters({ ...state.filters, start: Math.floor(from), end: Math.ceil(to) }),
  });
}

function fmtDuration(s) {
  if (s < 60) return `${Math.max(1, Math.round(s))} s`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  if (s < 86400) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(1)} days`;
}

// Captures made years apart leave the range mostly empty: offer each stretch of traffic.
function renderPeriods(periods) {
  const box = $("periods");
  if (periods.length < 2) { box.hidden = true; return; }
  box.replaceChildren(el("span", { class: "muted" }, "Zoom to the traffic of:"), ...periods.map(([a, b]) => {
    const button = el("button", { type: "button" }, `${fmtTime(a)} (${fmtDuration(b - a)})`);
    button.addEventListener("click", () => {
      const margin = Math.max(1, (b - a) * 0.05);
      setFilters({ ...state.filters, start: Math.floor(a - margin), end: Math.ceil(b + margin) });
    });
    return button;
  }));
  box.hidden = false;
}

// --- alerts ------------------------------------------------------------------------------------

function where(a) {
  return [a.dest_country, a.dest_as_org || (a.dest_asn ? `AS${a.dest_asn}` : null)].filter(Boolean).join(" / ") || "-";
}

function destination(a) {
  const name = a.dest_name || a.dest_ip || "?";
  if (a.note === "ldm.vendor_dns_lookup") return `DNS lookup of ${name}`;
  return a.dest_port ? `${name}:${a.dest_port}` : name;
}

function cell(label, cls, ...children) {
  return el("td", { class: cls, "data-label": label }, ...children);
}

function alertRow(a) {
  const who = [a.vendor, a.app].filter((x) => x && x !== "unknown" && x !== "any").join(" / ");
  const row = el("tr", { tabindex: "0", "aria-label": `${a.severity} alert: ${a.msg}`, "data-id": a.id },
    cell("Severity", "c-sev", el("span", { class: `sev sev-${a.severity}` }, a.severity)),
    cell("Device", "c-dev", a.device_name ? `${a.device_name} (${a.device_ip})` : a.device_ip),
    cell("Destination", "c-dest", el("span", { class: "dest" }, destination(a)), who ? el("span", { class: "sub" }, who) : null),
    cell("Category", "c-cat", el("span", { class: "cat" }, el("span", { class: "swatch", "data-category": a.category }), a.category)),
    cell("Where", "c-where", where(a)),
    cell("Bytes out", "c-num", fmtBytes(a.bytes_out)),
    cell("Last seen", "c-time", fmtTime(a.last_seen)),
    cell("Status", `c-status status-${a.status}`, a.status),
  );
  const open = () => openDetail(a.id, row);
  row.addEventListener("click", open);
  row.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); open(); } });
  return row;
}

function paintSwatches(root) {
  for (const s of root.querySelectorAll(".swatch[data-category]")) s.style.background = DronewatchTimeline.colour(s.dataset.category);
}

function renderAlerts() {
  state.renderPending = false;
  const rows = [...state.alerts.values()].filter((a) => matches(a)).sort((a, b) => b.seq - a.seq);
  const body = $("alerts").tBodies[0];
  // A redraw must not take the keyboard focus away from the row a user is on.
  const focused = document.activeElement;
  const focusedId = focused && body.contains(focused) ? focused.closest("tr")?.dataset.id : null;
  body.replaceChildren(...rows.map(alertRow));
  if (focusedId) {
    const again = body.querySelector(`tr[data-id="${CSS.escape(focusedId)}"]`);
    if (again) again.focus();
  }
  paintSwatches(body);
  $("alert-count").textContent = `(${rows.length})`;
  $("no-alerts").hidden = rows.length > 0;
  $("alerts").hidden = rows.length === 0;
  renderMap(rows);
  if (state.selected && state.alerts.has(state.selected)) fillDetail(state.alerts.get(state.selected));
}

function scheduleRender() {
  if (state.renderPending) return;
  state.renderPending = true;
  requestAnimationFrame(renderAlerts);
}

function takeAlert(a) {
  if (a.seq > state.lastSeq) state.lastSeq = a.seq;
  if (matches(a) || a.id === state.selected) state.alerts.set(a.id, a);
  else state.alerts.delete(a.id);
}

async function reloadAlerts() {
  const f = state.filters;
  // The newest change first: live updates start after it, and the filtered list holds every
  // matching alert up to it, so nothing is missed or shown twice.
  const newest = await api("/api/v1/alerts?limit=1");
  const start = newest.body.items.length ? newest.body.items[0].seq : 0;
  const alerts = new Map();
  let cursor = null;
  let more = false;
  do {
    const res = await api(`/api/v1/alerts${query({ ...f, cursor, limit: 500 })}`);
    for (const a of res.body.items) alerts.set(a.id, a);
    cursor = res.body.next_cursor;
    more = Boolean(cursor);
  } while (cursor && alerts.size < MAX_ALERTS);
  state.alerts = alerts;
  state.lastSeq = start;
  $("alerts-more").hidden = !more;
  $("alerts-more").textContent = more ? `Showing the ${alerts.size} most recently changed alerts: narrow the filters to see others.` : "";
  renderAlerts();
}

// Live updates: server-sent events read from a fetch stream (it carries the key in a header, as
// EventSource cannot), and polling with `since` while the stream is unavailable.
async function streamAlerts() {
  const ctrl = new AbortController();
  state.abort = ctrl;
  const resp = await fetch(`/api/v1/alerts/stream?since=${state.lastSeq}`, { headers: authHeaders(), signal: ctrl.signal });
  if (!resp.ok || !resp.body) throw new ApiError(resp.status, `stream: HTTP ${resp.status}`);
  setLive("sse");
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value.replace(/\r\n/g, "\n");
    let cut;
    while ((cut = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (event === "alert" && data.length) {
        takeAlert(JSON.parse(data.join("\n")));
        scheduleRender();
        scheduleOverview();
      }
    }
  }
}

async function pollOnce() {
  let changed = false;
  for (;;) {
    const res = await api(`/api/v1/alerts?since=${state.lastSeq}&limit=500`);
    for (const a of res.body.items) { takeAlert(a); changed = true; }
    if (!res.body.has_more) break;
  }
  if (changed) { scheduleRender(); scheduleOverview(); }
}

function setLive(mode) {
  state.live = mode;
  setStatus(mode === "sse" ? "Live (server-sent events)" : `Live (polling every ${POLL_MS / 1000} s)`);
}

async function liveLoop() {
  const forcePoll = new URLSearchParams(location.search).get("live") === "poll";
  while (state.running) {
    if (!forcePoll && typeof TextDecoderStream !== "undefined") {
      try {
        await streamAlerts();
      } catch (e) {
        if (!state.running) return;
        if (e.status === 401) { askForKey("The key was refused (unknown or revoked)."); return; }
      }
    }
    if (!state.running) return;
    setLive("poll");
    const until = Date.now() + SSE_RETRY_MS;
    while (state.running && (forcePoll || Date.now() < until)) {
      try {
        await pollOnce();
        showError("");
      } catch (e) {
        if (e.status === 401) { askForKey("The key was refused (unknown or revoked)."); return; }
        showError(`Could not update the alerts: ${e.message}. Retrying every ${POLL_MS / 1000} s.`);
      }
      await sleep(POLL_MS);
    }
  }
}

// --- the alert drawer ------------------------------------------------------------------------

function openDetail(id, opener) {
  state.selected = id;
  state.opener = opener || document.activeElement;
  const drawer = $("detail");
  drawer.hidden = false;
  document.body.classList.add("drawer-open");
  $("detail-error").textContent = "";
  $("detail-comment").value = "";
  fillDetail(state.alerts.get(id));
  $("detail-flows").replaceChildren(el("p", { class: "muted" }, "Loading…"));
  $("detail-packets").replaceChildren();
  drawer.focus();
  loadDetail(id);
}

function closeDetail() {
  const id = state.selected;
  state.selected = null;
  $("detail").hidden = true;
  document.body.classList.remove("drawer-open");
  // The row that opened the drawer may have been redrawn meanwhile: focus its successor.
  const back = state.opener && document.contains(state.opener) ? state.opener
    : document.querySelector(`#alerts tr[data-id="${CSS.escape(String(id || ""))}"]`);
  if (back) back.focus();
  state.opener = null;
}

function statusHistory(a) {
  const parts = [];
  if (a.acked_by) parts.push(`acknowledged by ${a.acked_by} at ${fmtTime(a.acked_at)}`);
  if (a.resolved_by) parts.push(`resolved by ${a.resolved_by} at ${fmtTime(a.resolved_at)}`);
  if (a.status_comment) parts.push(`last comment: ${a.status_comment}`);
  return parts.length ? parts.join("; ") : "no one has acted on it yet";
}

function fillDetail(a) {
  if (!a) return;
  $("detail-title").textContent = `${a.severity} alert: ${a.category}`;
  $("detail-msg").textContent = a.msg;
  $("ack").disabled = a.status === "acknowledged";
  $("resolve").disabled = a.status === "resolved";
  $("reopen").disabled = a.status === "open";
  const fields = [
    ["Status", a.status],
    ["Who and when", statusHistory(a)],
    ["Device", `${a.device_name ? a.device_name + " " : ""}${a.device_ip}${a.device_mac ? " / " + a.device_mac : ""}`],
    ["Destination", `${a.dest_name || "-"} (${a.dest_ip || "-"}:${a.dest_port ?? "-"}, ${a.proto || "-"})`],
    ["Country / AS", `${a.dest_country || "-"} / ${a.dest_asn ? "AS" + a.dest_asn : "-"} ${a.dest_as_org || ""}`],
    ["Vendor / app", [a.vendor, a.app].filter(Boolean).join(" / ") || "-"],
    ["Rule", `${a.rule_id || "-"} (evidence ${a.evidence_tag || "-"}, confidence ${a.confidence ?? "-"})`],
    ["Traffic", `${fmtBytes(a.bytes_out)} out, ${fmtBytes(a.bytes_in)} in, ${a.pkts_out} / ${a.pkts_in} packets, ${a.flows} flows`],
    ["First seen", fmtTime(a.first_seen)],
    ["Last seen", fmtTime(a.last_seen)],
    ...Object.entries(a.evidence || {}).map(([k, v]) => [`Evidence: ${k}`, v]),
  ];
  $("detail-fields").replaceChildren(...fields.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, String(v))]));
}

function flowList(flows) {
  if (!flows.length) return el("p", { class: "muted" }, "No flow record stored for this alert.");
  return el("ul", { class: "flows" }, ...flows.map((f) => el("li", {},
    el("code", {}, `${f.proto} ${f.orig_h}:${f.orig_p} → ${f.resp_h}:${f.resp_p}`),
    ` ${f.service || ""} ${f.server_name || ""} · ${fmtBytes(f.orig_bytes)} out / ${fmtBytes(f.resp_bytes)} in · ${f.conn_state || ""} · ${fmtTime(f.ts)} · uid ${f.uid}`)));
}

function frameItem(frame) {
  const layers = Object.keys(frame.layers || {});
  const summary = el("summary", {}, `#${frame.frame} ${fmtTime(frame.ts)} · ${frame.wirelen} bytes · ${layers.join(" / ")}`);
  const tables = layers.map((name) => {
    const rows = Object.entries(frame.layers[name]).filter(([k]) => !k.startsWith("_ws_"));
    return el("div", { class: "layer" }, el("h4", {}, name),
      el("dl", { class: "layer-fields" }, ...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, typeof v === "string" ? v : JSON.stringify(v))])));
  });
  return el("details", { class: "frame" }, summary, ...tables);
}

async function loadPackets(id, append) {
  const target = $("detail-packets");
  try {
    const res = await api(`/api/v1/alerts/${encodeURIComponent(id)}/evidence${query({ cursor: append ? state.evidenceCursor : null, limit: 20 })}`);
    if (state.selected !== id) return;
    state.evidenceCursor = res.headers.get("X-Next-Cursor");
    const nodes = [];
    for (const flow of res.body) {
      nodes.push(el("p", { class: "muted" }, `Flow ${flow.uid || "-"}, dissected by ${flow.dissector}${flow.frames_dropped ? `; ${flow.frames_dropped} frames not kept` : ""}`));
      nodes.push(...flow.frames.map(frameItem));
    }
    if (!append) target.replaceChildren();
    target.querySelector(".more")?.remove();
    if (!nodes.length && !append) nodes.push(el("p", { class: "muted" }, "No frames were kept for this alert (replays and agents keep the first frames of each flow)."));
    target.append(...nodes);
    if (state.evidenceCursor) {
      const more = el("button", { type: "button", class: "more" }, "More packets");
      more.addEventListener("click", () => loadPackets(id, true));
      target.append(more);
    }
  } catch (e) {
    target.replaceChildren(el("p", { class: "error" }, `Packets: ${e.message}`));
  }
}

async function loadDetail(id) {
  try {
    const res = await api(`/api/v1/alerts/${encodeURIComponent(id)}`);
    if (state.selected !== id) return;
    state.alerts.set(id, res.body);
    fillDetail(res.body);
    $("detail-flows").replaceChildren(flowList(res.body.evidence_flows || []));
  } catch (e) {
    $("detail-flows").replaceChildren(el("p", { class: "error" }, e.message));
  }
  state.evidenceCursor = null;
  loadPackets(id, false);
}

async function setAlertStatus(action) {
  const id = state.selected;
  const comment = $("detail-comment").value.trim();
  $("detail-error").textContent = "";
  try {
    const res = await api(`/api/v1/alerts/${encodeURIComponent(id)}/${action}`, { method: "POST", body: JSON.stringify(comment ? { comment } : {}) });
    takeAlert(res.body);
    state.alerts.set(id, res.body);
    fillDetail(res.body);
    scheduleRender();
    scheduleOverview();
  } catch (e) {
    $("detail-error").textContent = e.status === 403 ? `Not allowed: ${e.message}. An admin key can change an alert's status.` : e.message;
  }
}

async function downloadPcap() {
  const id = state.selected;
  $("pcap-note").textContent = "";
  try {
    const resp = await fetch(`/api/v1/alerts/${encodeURIComponent(id)}/evidence.pcap`, { headers: authHeaders() });
    if (!resp.ok) {
      let detail = `HTTP ${resp.status}`;
      try { detail = (await resp.json()).detail || detail; } catch { /* not JSON */ }
      throw new ApiError(resp.status, detail);
    }
    const url = URL.createObjectURL(await resp.blob());
    const a = el("a", { href: url, download: `alert-${id}.pcap` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    $("pcap-note").textContent = ` alert-${id}.pcap saved`;
  } catch (e) {
    $("pcap-note").textContent = ` ${e.message}`;
  }
}

// --- map -------------------------------------------------------------------------------------

async function loadWorld() {
  const resp = await fetch("/static/vendor/world.json");
  state.world = await resp.json();
  const map = $("map");
  map.setAttribute("viewBox", state.world.viewBox);
  const land = svg("g");
  for (const c of state.world.countries) {
    const p = svg("path", { d: c.d, class: "land" });
    const title = svg("title");
    title.textContent = c.name;
    p.append(title);
    land.append(p);
  }
  map.replaceChildren(land, svg("g", { id: "dots" }));
  $("legend").replaceChildren(...CATEGORIES.map((name) => el("li", { "data-category": name }, el("span", { class: "swatch", "data-category": name }), name)));
  paintSwatches($("legend"));
}

function renderMap(alerts) {
  if (!state.world) return;
  const countries = new Map(state.world.countries.map((c) => [c.iso2, c]));
  const groups = new Map();
  for (const a of alerts) {
    if (!a.dest_country || !countries.has(a.dest_country)) continue;
    const key = `${a.dest_country}|${a.category}`;
    const g = groups.get(key) || { country: a.dest_country, category: a.category, bytes: 0, n: 0 };
    g.bytes += a.bytes_out || 0;
    g.n += 1;
    groups.set(key, g);
  }
  const list = [...groups.values()].sort((a, b) => b.bytes - a.bytes);
  const dots = list.map((g, i) => {
    const c = countries.get(g.country);
    const angle = i * 2.4;  // spread the categories of one country around its centroid
    const spread = list.filter((x) => x.country === g.country).length > 1 ? 2.2 : 0;
    const r = Math.max(1.2, Math.min(5, Math.sqrt(g.bytes / 8192)));
    const dot = svg("circle", { cx: (c.cx + spread * Math.cos(angle)).toFixed(1),
      cy: (c.cy + spread * Math.sin(angle)).toFixed(1), r: r.toFixed(1),
      fill: DronewatchTimeline.colour(g.category), "data-category": g.category, "data-country": g.country });
    const title = svg("title");
    title.textContent = `${c.name}: ${g.category}, ${g.n} alerts, ${fmtBytes(g.bytes)} out`;
    dot.append(title);
    return dot;
  });
  $("dots").replaceChildren(...dots);
}

// --- start -----------------------------------------------------------------------------------

async function reloadView() {
  try {
    await Promise.all([reloadAlerts(), loadOverview().then(loadTimeline)]);
    showError("");
  } catch (e) {
    if (e.status === 401) { askForKey("The key was refused (unknown or revoked)."); return; }
    showError(`Could not load the view: ${e.message}`);
  }
}

function stop() {
  state.running = false;
  state.timers.forEach(clearInterval);
  state.timers = [];
  if (state.abort) state.abort.abort();
}

async function start() {
  stop();
  try {
    await api("/api/v1/devices");
  } catch (e) {
    if (e.status === 401) {
      askForKey(state.key ? "The key was refused (unknown or revoked)." : "");
      return;
    }
    showError(`The service did not answer: ${e.message}`);
  }
  $("login").hidden = true;
  $("app").hidden = false;
  $("signout").hidden = !state.key;
  state.filters = filtersFromUrl();
  fillFilterForm();
  if (!state.world) await loadWorld();
  await reloadView();
  state.running = true;
  liveLoop();
  state.timers.push(setInterval(() => {
    loadOverview().catch(() => {});
    if (state.filters.start == null && state.filters.end == null) loadTimeline().catch(() => {});
  }, OVERVIEW_MS));
}

function askForKey(message) {
  stop();
  sessionStorage.removeItem(KEY_STORE);
  state.key = null;
  $("app").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  setStatus("Not signed in");
  $("key").focus();
}

function init() {
  const cat = $("f-category");
  cat.append(...CATEGORIES.map((c) => el("option", { value: c }, c)));
  $("login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    state.key = $("key").value.trim();
    sessionStorage.setItem(KEY_STORE, state.key);
    $("key").value = "";
    start();
  });
  $("signout").addEventListener("click", () => askForKey(""));
  $("filters").addEventListener("change", () => setFilters(filtersFromForm()));
  $("filters").addEventListener("submit", (e) => e.preventDefault());
  $("f-clear").addEventListener("click", () => setFilters({}));
  $("zoom-reset").addEventListener("click", () => {
    const { start: _s, end: _e, ...rest } = state.filters;
    setFilters(rest);
  });
  window.addEventListener("popstate", () => {
    state.filters = filtersFromUrl();
    fillFilterForm();
    reloadView();
  });
  $("ack").addEventListener("click", () => setAlertStatus("ack"));
  $("resolve").addEventListener("click", () => setAlertStatus("resolve"));
  $("reopen").addEventListener("click", () => setAlertStatus("reopen"));
  $("pcap").addEventListener("click", downloadPcap);
  $("close-detail").addEventListener("click", closeDetail);
  document.addEventListener("keydown", (e) => { if (e.key === "Escape" && !$("detail").hidden) closeDetail(); });
  window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => loadTimeline().catch(() => {}));
  start();
}

init();
