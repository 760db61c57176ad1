// dronewatch web page: live alerts, devices with their local-data-mode toggle, and a map of where
// the data went. Plain DOM, no framework, nothing fetched but this service's own API and assets.
// Every value from the API is inserted as text (textContent), never as markup.

const POLL_MS = 2000;
const DEVICES_MS = 5000;
const KEY_STORE = "dronewatch.key";
const CATEGORIES = {
  // Okabe-Ito colour-blind-safe palette, extended with greys.
  flight_log: "#D55E00", media_sync: "#CC79A7", telemetry: "#E69F00", livestream: "#F0E442",
  firmware: "#56B4E9", geofence: "#009E73", maps: "#0072B2", account: "#8C564B",
  analytics: "#7F3C8D", crash_report: "#B2182B", ads: "#999933", local_link: "#6E7F80",
  other: "#404040",
};

const state = { key: sessionStorage.getItem(KEY_STORE), alerts: new Map(), lastSeq: 0,
  etag: null, selected: null, role: null, world: null, timers: [] };

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("aria-") || k === "role" || k === "tabindex" || k === "type") node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(child ?? ""));
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

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (state.key) headers.Authorization = `Bearer ${state.key}`;
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
  return { body, etag: resp.headers.get("ETag") };
}

function fmtTime(ts) {
  return ts ? new Date(ts * 1000).toLocaleString() : "";
}

function fmtBytes(n) {
  if (!n) return "0 B";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function showError(message) {
  const banner = $("error");
  banner.textContent = message || "";
  banner.hidden = !message;
}

function setStatus(text) { $("status").textContent = text; }

// --- alerts ----------------------------------------------------------------------------------

function alertRow(a) {
  const dest = `${a.dest_name || a.dest_ip || "?"}${a.dest_port && a.note !== "ldm.vendor_dns_lookup" ? ":" + a.dest_port : ""}`;
  const where = [a.dest_country, a.dest_as_org || (a.dest_asn ? `AS${a.dest_asn}` : null)]
    .filter(Boolean).join(" / ");
  const row = el("tr", { tabindex: "0", "aria-label": `${a.severity} alert: ${a.msg}` },
    el("td", {}, el("span", { class: `sev sev-${a.severity}` }, a.severity)),
    el("td", {}, a.device_name ? `${a.device_name} (${a.device_ip})` : a.device_ip),
    el("td", { class: "wrap" }, [a.vendor, a.app].filter((x) => x && x !== "unknown" && x !== "any").join(" / ") || "-"),
    el("td", {}, a.category),
    el("td", { class: "dest", title: dest }, a.note === "ldm.vendor_dns_lookup" ? `DNS lookup ${dest}` : dest),
    el("td", { class: "wrap" }, where || "-"),
    el("td", { class: "num" }, fmtBytes(a.bytes_out)),
    el("td", {}, fmtTime(a.first_seen)),
    el("td", {}, fmtTime(a.last_seen)),
    el("td", { class: `status-${a.status}` }, a.status),
  );
  row.dataset.id = a.id;
  const open = () => showDetail(a.id);
  row.addEventListener("click", open);
  row.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); open(); } });
  return row;
}

function renderAlerts() {
  const rows = [...state.alerts.values()].sort((a, b) => b.seq - a.seq);
  $("alerts").tBodies[0].replaceChildren(...rows.map(alertRow));
  $("alert-count").textContent = `(${rows.length})`;
  $("no-alerts").hidden = rows.length > 0;
  renderMap(rows);
  if (state.selected && state.alerts.has(state.selected)) fillDetail(state.alerts.get(state.selected));
}

async function pollAlerts() {
  let changed = false;
  for (;;) {
    const headers = state.etag ? { "If-None-Match": state.etag } : {};
    const res = await api(`/api/v1/alerts?since=${state.lastSeq}&limit=500`, { headers });
    if (res.notModified) break;
    state.etag = res.etag;
    for (const a of res.body.items) { state.alerts.set(a.id, a); changed = true; }
    state.lastSeq = res.body.last_seq;
    if (!res.body.has_more) break;
  }
  if (changed) renderAlerts();
}

function showDetail(id) {
  state.selected = id;
  $("detail").hidden = false;
  $("detail-error").textContent = "";
  fillDetail(state.alerts.get(id));
  $("detail").scrollIntoView({ block: "nearest" });
}

function fillDetail(a) {
  $("detail-title").textContent = `Alert ${a.id}`;
  $("detail-msg").textContent = a.msg;
  const fields = [
    ["Status", a.status + (a.acked_by ? `, acknowledged by ${a.acked_by}` : "") + (a.resolved_by ? `, resolved by ${a.resolved_by}` : "")],
    ["Device", `${a.device_ip}${a.device_mac ? " / " + a.device_mac : ""}`],
    ["Destination", `${a.dest_name || "-"} (${a.dest_ip || "-"}:${a.dest_port ?? "-"})`],
    ["Country / AS", `${a.dest_country || "-"} / ${a.dest_asn ? "AS" + a.dest_asn : "-"} ${a.dest_as_org || ""}`],
    ["Rule", `${a.rule_id || "-"} (evidence ${a.evidence_tag || "-"}, confidence ${a.confidence ?? "-"})`],
    ["Traffic", `${fmtBytes(a.bytes_out)} out, ${fmtBytes(a.bytes_in)} in, ${a.flows} flows`],
    ...Object.entries(a.evidence || {}).map(([k, v]) => [`Evidence: ${k}`, v]),
    ["Flow uids", (a.uids || []).join(", ")],
  ];
  $("detail-fields").replaceChildren(...fields.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, String(v))]));
}

async function setAlertStatus(action) {
  const id = state.selected;
  try {
    const res = await api(`/api/v1/alerts/${encodeURIComponent(id)}/${action}`, { method: "POST", body: "{}" });
    state.alerts.set(id, res.body);
    renderAlerts();
  } catch (e) {
    $("detail-error").textContent = e.status === 403 ? `Not allowed: ${e.message}` : e.message;
  }
}

// --- devices ---------------------------------------------------------------------------------

function deviceItem(d) {
  const label = d.name || d.hostname || d.ip || d.mac;
  const button = el("button", { class: "toggle", type: "button", "aria-pressed": String(d.ldm),
    "aria-label": `Local-data mode of ${label}` }, d.ldm ? "LDM on" : "LDM off");
  button.addEventListener("click", async () => {
    $("devices-error").textContent = "";
    button.disabled = true;
    try {
      await api(`/api/v1/devices/${d.id}/ldm`, { method: "PUT", body: JSON.stringify({ on: !d.ldm }) });
      await loadDevices();
    } catch (e) {
      $("devices-error").textContent = e.status === 403
        ? `Not allowed: ${e.message}. An admin key can change local-data mode.` : e.message;
      button.disabled = false;
    }
  });
  const ident = [d.ip !== label ? d.ip : null, d.mac !== label ? d.mac : null].filter(Boolean).join(" / ");
  return el("li", {}, el("span", {}, el("strong", {}, label), ident ? ` ${ident}` : "",
    d.discovered ? " (discovered)" : ""), button);
}

async function loadDevices() {
  const res = await api("/api/v1/devices");
  const items = res.body.map(deviceItem);
  $("devices").replaceChildren(...(items.length ? items : [el("li", {}, "No devices yet.")]));
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
    p.append(svg("title"));
    p.firstChild.textContent = c.name;
    land.append(p);
  }
  map.append(land, svg("g", { id: "dots" }));
  $("legend").replaceChildren(...Object.entries(CATEGORIES).map(([name, colour]) => {
    const swatch = el("span", { class: "swatch" });
    swatch.style.background = colour;
    return el("li", { "data-category": name }, swatch, name);
  }));
}

function renderMap(alerts) {
  if (!state.world) return;
  const where = new Map(state.world.countries.map((c) => [c.iso2, c]));
  const groups = new Map();
  for (const a of alerts) {
    if (!a.dest_country || !where.has(a.dest_country)) continue;
    const key = `${a.dest_country}|${a.category}`;
    const g = groups.get(key) || { country: a.dest_country, category: a.category, bytes: 0, n: 0 };
    g.bytes += a.bytes_out || 0;
    g.n += 1;
    groups.set(key, g);
  }
  const dots = [];
  const list = [...groups.values()].sort((a, b) => b.bytes - a.bytes);
  list.forEach((g, i) => {
    const c = where.get(g.country);
    const angle = i * 2.4;  // spread categories of one country around its centroid
    const spread = list.filter((x) => x.country === g.country).length > 1 ? 2.2 : 0;
    const r = Math.max(1.2, Math.min(5, Math.sqrt(g.bytes / 8192)));
    const dot = svg("circle", { cx: (c.cx + spread * Math.cos(angle)).toFixed(1),
      cy: (c.cy + spread * Math.sin(angle)).toFixed(1), r: r.toFixed(1),
      fill: CATEGORIES[g.category] || CATEGORIES.other, "data-category": g.category, "data-country": g.country });
    const title = svg("title");
    title.textContent = `${c.name}: ${g.category}, ${g.n} alerts, ${fmtBytes(g.bytes)} out`;
    dot.append(title);
    dots.push(dot);
  });
  $("dots").replaceChildren(...dots);
}

// --- start -----------------------------------------------------------------------------------

function stopTimers() { state.timers.forEach(clearInterval); state.timers = []; }

async function tick() {
  try {
    await pollAlerts();
    setStatus(`Updated ${new Date().toLocaleTimeString()}`);
    showError("");
  } catch (e) {
    if (e.status === 401) { askForKey("The key was refused (unknown or revoked)."); return; }
    showError(`Could not update the alerts: ${e.message}. Retrying every ${POLL_MS / 1000} s.`);
  }
}

async function start() {
  stopTimers();
  try {
    await loadDevices();
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
  if (!state.world) await loadWorld();
  await tick();
  state.timers.push(setInterval(tick, POLL_MS));
  state.timers.push(setInterval(() => loadDevices().catch(() => {}), DEVICES_MS));
}

function askForKey(message) {
  stopTimers();
  sessionStorage.removeItem(KEY_STORE);
  state.key = null;
  $("app").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  setStatus("Not signed in");
  $("key").focus();
}

$("login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  state.key = $("key").value.trim();
  sessionStorage.setItem(KEY_STORE, state.key);
  $("key").value = "";
  state.alerts.clear();
  state.lastSeq = 0;
  state.etag = null;
  start();
});
$("signout").addEventListener("click", () => askForKey(""));
$("ack").addEventListener("click", () => setAlertStatus("ack"));
$("resolve").addEventListener("click", () => setAlertStatus("resolve"));
$("close-detail").addEventListener("click", () => { state.selected = null; $("detail").hidden = true; });

start();
