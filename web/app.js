// strata's built-in page: a series browser, charts that read across resolutions, a live view
// and a status panel. Plain JavaScript over strata's own read APIs; charts by uPlot.
"use strict";

const PAGE_SIZE = 50;      // series per page of the browser
const CHART_POINTS = 800;  // points asked for per chart: `step=auto` picks the step
const GROUP_LIMIT = 10;    // lines of a group chart
const LIVE_EVERY_MS = 1000;
const STATUS_EVERY_MS = 2000;
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"];

const $ = (id) => document.getElementById(id);

// Everything the page shows, readable from outside (window.strata) for tests and debugging.
const state = {
  token: localStorage.getItem("strata.token") || "",
  archives: [],
  pages: [null],       // the `after` cursor of each page seen
  page: 0,
  listed: [],          // the series on the current page
  listings: 0,         // how many times the list was rendered
  chart: null,         // {title, query, from, to, xs, lines: [{label, values}], parts}
  live: null,          // {series: {label: count}}
  status: null,        // {rates: {protocol: events/s}, total}
  lastHealth: null,
  timers: {},
};
window.strata = state;

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path) {
  const headers = state.token ? { Authorization: "Bearer " + state.token } : {};
  const response = await fetch(path, { headers });
  if (response.status === 401) {
    $("token-box").hidden = false;
    throw new ApiError(401, "this strata needs a read token: enter it above");
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    throw new ApiError(response.status, (body && body.error) || response.statusText);
  }
  return body;
}

/// Runs `task`, showing its failure in `where` instead of throwing.
async function guarded(where, task) {
  try {
    await task();
  } catch (e) {
    where.textContent = e instanceof ApiError ? e.message : "error: " + e;
  }
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function fmt(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  if (Math.abs(v) >= 1e6 || (Math.abs(v) < 1e-3 && v !== 0)) return v.toExponential(3);
  return Number(v.toFixed(3)).toString();
}

/// A duration in seconds as its two largest units: `20s`, `10m`, `10h57m`, `2d`.
function seconds(s) {
  const units = [[86400, "d"], [3600, "h"], [60, "m"], [1, "s"]];
  const parts = [];
  for (const [n, u] of units) {
    if (s >= n && parts.length < 2) {
      parts.push(Math.floor(s / n) + u);
      s %= n;
    } else if (parts.length) break;
  }
  return parts.join("") || "0s";
}

/// Archive names in configuration order (finest first as usually configured).
function byArchiveOrder(names) {
  const order = state.archives.map((a) => a.name);
  return [...names].sort((a, b) => order.indexOf(a) - order.indexOf(b));
}

// ---- tabs -------------------------------------------------------------------------------

function show(view) {
  for (const tab of document.querySelectorAll(".tab")) tab.classList.toggle("active", tab.dataset.view === view);
  for (const v of document.querySelectorAll(".view")) v.hidden = v.id !== "view-" + view;
  clearInterval(state.timers.live);
  if (view === "live") {
    refreshLive();
    state.timers.live = setInterval(refreshLive, LIVE_EVERY_MS);
  }
  if (view === "status") renderStatus();
}

// ---- series browser ---------------------------------------------------------------------

function range() {
  const to = Date.now();
  return { from: to - Number($("range").value) * 1000, to };
}

/// The selector of the search form as query parameters: a word is searched anywhere in the
/// name, a glob as written.
function selector(params) {
  const q = $("q").value.trim();
  if (q && q !== "*") params.set("match", /[*?]/.test(q) ? q : "*" + q + "*");
  const host = $("host").value.trim();
  if (host) params.set("host", host);
  const tag = $("tag").value.trim();
  const eq = tag.indexOf("=");
  if (eq > 0) params.set("tag." + tag.slice(0, eq), tag.slice(eq + 1));
  return params;
}

async function loadSeries() {
  const { from, to } = range();
  const params = selector(new URLSearchParams({ from, to, limit: PAGE_SIZE }));
  const after = state.pages[state.page];
  if (after) params.set("after", after);
  const info = $("page-info");
  await guarded(info, async () => {
    const list = await api("/v1/series?" + params);
    state.listed = list;
    state.listings += 1;
    const body = $("series-list").tBodies[0];
    body.replaceChildren(...list.map((item) => el("tr", { dataset: { series: item.series } },
      el("td", {}, el("a", { href: "#", onclick: (e) => { e.preventDefault(); chartSeries(item, range()); } }, item.series)),
      el("td", {}, byArchiveOrder(item.archives).join(", ")))));
    if (list.length === PAGE_SIZE) state.pages[state.page + 1] = list[list.length - 1].series;
    $("prev").disabled = state.page === 0;
    $("next").disabled = list.length < PAGE_SIZE;
    const first = state.page * PAGE_SIZE;
    info.textContent = list.length
      ? `series ${first + 1}–${first + list.length}${list.length === PAGE_SIZE ? " (more on the next page)" : ""}`
      : "no series with data in this range";
  });
}

// ---- charts -----------------------------------------------------------------------------

/// Runs of consecutive points read from one archive: the resolution of each part of a chart.
function parts(points) {
  const out = [];
  for (const p of points) {
    const last = out[out.length - 1];
    if (last && last.archive === p.archive && last.step === p.step) last.to = p.timestamp + p.step * 1000;
    else out.push({ archive: p.archive, step: p.step, from: p.timestamp, to: p.timestamp + p.step * 1000 });
  }
  return out;
}

/// Shades each part of the chart by its resolution, under the lines.
function resolutionShading(chart) {
  return {
    hooks: {
      drawClear: (u) => {
        const ctx = u.ctx;
        const names = [...new Set(chart.parts.map((p) => p.archive))];
        ctx.save();
        for (const part of chart.parts) {
          const left = u.valToPos(part.from / 1000, "x", true);
          const right = u.valToPos(part.to / 1000, "x", true);
          const shade = names.indexOf(part.archive) % 2 === 0 ? "rgba(0,0,0,0.035)" : "rgba(0,90,200,0.06)";
          ctx.fillStyle = shade;
          ctx.fillRect(left, u.bbox.top, right - left, u.bbox.height);
        }
        ctx.restore();
      },
    },
  };
}

function draw(chart) {
  state.chart = chart;
  $("chart-title").textContent = chart.title;
  const box = $("chart");
  if (state.plot) state.plot.destroy();
  box.replaceChildren();
  $("resolutions").textContent = chart.parts.length
    ? "read from: " + chart.parts.map((p) => `archive ${p.archive}, one point per ${seconds(p.step)}, from ${new Date(p.from).toISOString().slice(0, 16).replace("T", " ")} UTC`).join("; ")
    : "no stored data in this range";
  const series = [{}];
  chart.lines.forEach((line, i) => {
    const color = line.color || COLORS[i % COLORS.length];
    series.push({ label: line.label, stroke: color, width: line.width || 2, value: (u, v) => fmt(v), points: { show: false } });
  });
  const opts = {
    width: Math.max(320, box.clientWidth || 800),
    height: 360,
    series,
    bands: chart.band ? [{ series: [3, 2], fill: "rgba(31,119,180,0.15)" }] : [],
    cursor: { drag: { x: true, y: false, setScale: false } },
    scales: { x: { time: true, min: chart.from / 1000, max: chart.to / 1000 } },
    axes: [{}, { values: (u, ticks) => ticks.map(fmt), size: 70 }],
    plugins: [resolutionShading(chart)],
    hooks: {
      setSelect: [(u) => {
        if (u.select.width < 5) return;
        const from = Math.round(u.posToVal(u.select.left, "x") * 1000);
        const to = Math.round(u.posToVal(u.select.left + u.select.width, "x") * 1000);
        u.setSelect({ left: 0, width: 0 }, false);
        chart.redraw({ from, to });
      }],
    },
  };
  state.plot = new uPlot(opts, [chart.xs, ...chart.lines.map((l) => l.values)], box);
  box.ondblclick = () => chart.redraw(chart.home);
}

/// One series: its avg with the min–max band.
async function chartSeries(item, span, home) {
  const params = new URLSearchParams({ name: item.name, from: span.from, to: span.to, step: "auto", points: CHART_POINTS, stat: "avg,min,max" });
  if (item.host) params.set("host", item.host);
  for (const [k, v] of Object.entries(item.tags || {})) params.set("tag." + k, v);
  await guarded($("resolutions"), async () => {
    const body = await api("/v1/metrics?" + params);
    const stat = (name) => body.points.map((p) => p.values[name]);
    draw({
      title: item.series,
      query: "/v1/metrics?" + params,
      from: span.from,
      to: span.to,
      home: home || span,
      band: true,
      xs: body.points.map((p) => p.timestamp / 1000),
      lines: [
        { label: "avg", values: stat("avg"), color: COLORS[0] },
        { label: "min", values: stat("min"), color: "rgba(31,119,180,0.45)", width: 1 },
        { label: "max", values: stat("max"), color: "rgba(31,119,180,0.45)", width: 1 },
      ],
      parts: parts(body.points),
      redraw: (s) => chartSeries(item, s, home || span),
    });
  });
}

/// The series matching the search, one line per group.
async function chartGroup(span, home) {
  const groupBy = $("group-by").value;
  const params = selector(new URLSearchParams({ from: span.from, to: span.to, step: "auto", points: CHART_POINTS, stat: "avg", group_by: groupBy, limit: GROUP_LIMIT }));
  if (!params.has("match")) params.set("match", "*");
  await guarded($("resolutions"), async () => {
    const body = await api("/v1/metrics?" + params);
    const first = body.series[0] ? body.series[0].points : [];
    draw({
      title: `${body.name} by ${body.group_by}${body.truncated ? ` (the ${GROUP_LIMIT} with the most data)` : ""}`,
      query: "/v1/metrics?" + params,
      from: span.from,
      to: span.to,
      home: home || span,
      band: false,
      xs: first.map((p) => p.timestamp / 1000),
      lines: body.series.map((s) => ({ label: s.key, values: s.points.map((p) => p.value) })),
      parts: parts(first),
      redraw: (s) => chartGroup(s, home || span),
    });
  });
}

// ---- live -------------------------------------------------------------------------------

function finestArchive() {
  let best = null;
  for (const a of state.archives) if (!best || a.step_seconds < best.step_seconds) best = a;
  return best && best.name;
}

function lastMinute(m) {
  if (!m) return "–";
  if (m.rate !== undefined) return `${fmt(m.rate)}/s`;
  if (m.adds !== undefined) return `${m.adds} adds`;
  const parts = [];
  if (m.last !== undefined) parts.push("last " + fmt(m.last));
  parts.push("avg " + fmt(m.avg), "min " + fmt(m.min), "max " + fmt(m.max));
  return parts.join(", ") + ` over ${Math.round(m.window_seconds)} s`;
}

async function refreshLive() {
  await guarded($("live-info"), async () => {
    const body = await api("/v1/live");
    const finest = finestArchive();
    const counts = {};
    const rows = body.series.map((s) => {
      const count = s.open.filter((b) => b.archive === finest).reduce((n, b) => n + b.count, 0);
      counts[s.series] = count;
      return el("tr", { dataset: { series: s.series, count: String(count) } },
        el("td", {}, s.series), el("td", {}, s.type || ""), el("td", { class: "num" }, count), el("td", {}, lastMinute(s.last_60s)));
    });
    $("live-list").tBodies[0].replaceChildren(...rows);
    state.live = { at: body.now, series: counts };
    $("live-info").textContent = `${body.series.length} series open at ${body.now} (archive ${finest})`;
  });
}

// ---- status -----------------------------------------------------------------------------

function rows(table, pairs) {
  table.tBodies[0].replaceChildren(...pairs.map(([k, v, data]) => el("tr", { dataset: data || {} }, el("td", {}, k), el("td", { class: "num" }, v))));
}

async function pollHealth() {
  let body;
  try {
    const response = await fetch("/health");
    body = await response.json();
  } catch (e) {
    body = { status: "error", reason: String(e) };
  }
  const now = performance.now();
  const pipeline = body.pipeline || {};
  const by = pipeline.events_by_protocol || {};
  const rates = {};
  const before = state.lastHealth;
  if (before) {
    const dt = (now - before.at) / 1000;
    for (const [protocol, n] of Object.entries(by)) rates[protocol] = Math.max(0, (n - (before.by[protocol] || 0)) / dt);
  }
  state.lastHealth = { at: now, by };
  const total = Object.values(rates).reduce((a, b) => a + b, 0);
  let alerts = null;
  try {
    alerts = (await api("/v1/alerts")).alerts;
  } catch (e) {
    alerts = { error: String(e.message || e) };
  }
  state.status = { rates, total: before ? total : null, health: body, alerts };
  if (!$("view-status").hidden) renderStatus();
}

function renderAlerts(alerts) {
  const tasks = (state.status.health.pipeline || {}).tasks || {};
  if (!Array.isArray(alerts)) {
    $("alerts").tBodies[0].replaceChildren();
    $("alerts-info").textContent = alerts ? alerts.error : "";
    return;
  }
  $("alerts").tBodies[0].replaceChildren(...alerts.map((a) => el("tr", { dataset: { alert: a.id, level: a.level } },
    el("td", {}, a.id), el("td", { class: "level-" + a.level }, a.level),
    el("td", { class: "num" }, a.value === null ? "–" : fmt(a.value)), el("td", {}, a.time))));
  $("alerts-info").textContent = `${alerts.length ? alerts.length + " not ok" : "all ok"} · ${tasks.alerts ?? 0} transitions since start · handler failures ${tasks.handler_failures ?? 0}`;
}

function renderStatus() {
  const s = state.status;
  if (!s) return;
  const p = s.health.pipeline || {};
  rows($("rates"), [
    ...Object.entries(s.rates).map(([k, v]) => [k, fmt(v), { protocol: k, rate: String(v) }]),
    ["total", s.total === null ? "measuring…" : fmt(s.total), { protocol: "total", rate: String(s.total || 0) }],
    ["accepted since start", p.events_accepted ?? "–"],
    ["merged into stored buckets", p.events_merged ?? "–"],
  ]);
  rows($("queues"), [
    ["ingest queue (batches)", p.ingest_queue_batches ?? "–"],
    ["writer queue (documents)", p.writer_queue_docs ?? "–"],
    ["backlog on disk (documents)", p.backlog_docs ?? "–"],
    ["open series", p.series_active ?? "–"],
    ["open buckets", p.buckets_open ?? "–"],
  ]);
  const m = p.maintenance;
  rows($("writer"), [
    ["strata", s.health.status + (s.health.reason ? ": " + s.health.reason : "")],
    ["node", s.health.node ? s.health.node.status : "–"],
    ["documents written", p.docs_written ?? "–"],
    ["retried / rejected / dropped", `${p.docs_retried ?? "–"} / ${p.docs_rejected ?? "–"} / ${p.docs_dropped ?? "–"}`],
    ["last write error", p.last_bulk_error || "none"],
    ["last maintenance pass", m ? m.at + (m.error ? " (failed: " + m.error + ")" : " (ok)") : "not yet"],
  ]);
  renderAlerts(s.alerts);
  const open = p.buckets_open_by_archive || {};
  $("archives").tBodies[0].replaceChildren(...state.archives.map((a) => el("tr", {},
    el("td", {}, a.name), el("td", {}, seconds(a.step_seconds)), el("td", {}, a.retention), el("td", {}, a.index_period), el("td", { class: "num" }, open[a.name] ?? 0))));
}

// ---- start ------------------------------------------------------------------------------

function start() {
  for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => show(tab.dataset.view));
  $("search").addEventListener("submit", (e) => {
    e.preventDefault();
    state.pages = [null];
    state.page = 0;
    loadSeries();
  });
  $("next").addEventListener("click", () => { state.page += 1; loadSeries(); });
  $("prev").addEventListener("click", () => { state.page = Math.max(0, state.page - 1); loadSeries(); });
  $("draw-group").addEventListener("click", () => chartGroup(range()));
  $("token").value = state.token;
  $("token-save").addEventListener("click", () => {
    state.token = $("token").value;
    localStorage.setItem("strata.token", state.token);
    $("token-box").hidden = true;
    loadSeries();
  });
  guarded($("page-info"), async () => {
    state.archives = await api("/v1/archives");
    await loadSeries();
  });
  pollHealth();
  state.timers.status = setInterval(pollHealth, STATUS_EVERY_MS);
}

start();
