// skier dashboard: lists the store's runs and draws their curves as SVG, polling every second.
// No libraries; every string from the store goes in through textContent (never innerHTML).
"use strict";

const POLL_MS = 1000;
const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const PREFERRED = ["val_loss", "loss", "val_error", "error", "val_accuracy", "accuracy"];
const SVG_NS = "http://www.w3.org/2000/svg";

const state = {
  runs: [],             // newest first, as /api/runs gives them
  selected: [],         // run ids, in the order they were ticked
  autoSelected: true,   // nothing ticked by hand yet: follow the newest run
  series: new Map(),    // run id -> {epochs: [], metrics: {key: []}, run: {...}}
  metric: null,
  busy: false,
};

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function fmt(value) {
  if (value === null || value === undefined) return "–";
  if (typeof value !== "number") return String(value);
  if (value !== 0 && (Math.abs(value) >= 1e4 || Math.abs(value) < 1e-3)) {
    return value.toExponential(2);
  }
  return Number(value.toPrecision(4)).toString();
}

async function getJSON(url) {
  const response = await fetch(url, {cache: "no-store"});
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  return response.json();
}

function showError(message) {
  const box = document.getElementById("error");
  box.hidden = !message;
  box.textContent = message || "";
}

// --- the runs table ------------------------------------------------------------------------
// Rows are kept per run and updated in place, so a click never lands on a row being replaced.
const rows = new Map();

function setText(node, text) {
  const value = String(text);
  if (node.textContent !== value) node.textContent = value;
}

function buildRow(run) {
  const row = el("tr");
  row.dataset.run = run.id;
  const tick = el("td");
  const box = document.createElement("input");
  box.type = "checkbox";
  box.className = "pick";
  box.setAttribute("aria-label", "select run " + run.id);
  box.addEventListener("click", (event) => { event.stopPropagation(); toggle(run.id); });
  tick.append(box);
  const name = el("td", null, "name");
  name.title = run.id;
  const status = el("td");
  status.append(el("span", null, "status"));
  row.append(tick, name, el("td"), status, el("td"), el("td"), el("td"), el("td"));
  row.addEventListener("click", () => toggle(run.id));
  return row;
}

function fillRow(row, run) {
  const [tick, name, kind, status, epochs, best, test, report] = row.children;
  const picked = state.selected.includes(run.id);
  row.classList.toggle("selected", picked);
  tick.firstChild.checked = picked;
  setText(name, run.name);
  setText(kind, run.kind);
  const badge = status.firstChild;
  badge.className = "status status-" + run.status;
  setText(badge, run.status);
  setText(epochs, run.epochs_done ?? 0);
  setText(best, run.best_value === null ? "–" : `${run.monitor} ${fmt(run.best_value)}`);
  const tests = Object.entries(run.test_metrics || {});
  const shown = tests.find(([k]) => !/loss|error/.test(k)) || tests[0];  // accuracy first
  setText(test, shown ? `${shown[0].replace(/^test_/, "")} ${fmt(shown[1])}` : "–");
  if (run.status !== "running" && !report.firstChild) {
    const link = el("a", "report");
    link.href = "/runs/" + encodeURIComponent(run.id) + "/report";
    link.target = "_blank";
    link.rel = "noopener";
    link.addEventListener("click", (event) => event.stopPropagation());
    report.append(link);
  }
}

function renderRuns() {
  const body = document.querySelector("#runs tbody");
  document.getElementById("empty").hidden = state.runs.length > 0;
  const present = new Set(state.runs.map((r) => r.id));
  for (const [id, row] of rows) {
    if (!present.has(id)) { row.remove(); rows.delete(id); }
  }
  state.runs.forEach((run, i) => {
    let row = rows.get(run.id);
    if (!row) { row = buildRow(run); rows.set(run.id, row); }
    fillRow(row, run);
    if (body.children[i] !== row) body.insertBefore(row, body.children[i] || null);
  });
}

function toggle(runId) {
  state.autoSelected = false;  // from now on the ticks are the user's (the shown run stays)
  const at = state.selected.indexOf(runId);
  if (at >= 0) state.selected.splice(at, 1); else state.selected.push(runId);
  renderRuns();
  refreshCurves().catch((e) => showError(String(e)));
}

// --- data ----------------------------------------------------------------------------------
async function refreshRuns() {
  const params = new URLSearchParams({limit: "200"});
  const status = document.getElementById("status-filter").value;
  const kind = document.getElementById("kind-filter").value.trim();
  if (status) params.set("status", status);
  if (kind) params.set("kind", kind);
  const data = await getJSON("/api/runs?" + params);
  state.runs = data.runs;
  if (state.autoSelected) {
    const newest = state.runs.find((r) => r.kind === "train" || r.kind === "trial") || state.runs[0];
    state.selected = newest ? [newest.id] : [];
  }
  renderRuns();
}

async function refreshSeries(runId) {
  let entry = state.series.get(runId);
  const after = entry && entry.epochs.length ? entry.epochs[entry.epochs.length - 1] : 0;
  const data = await getJSON(`/api/runs/${encodeURIComponent(runId)}/metrics?after=${after}`);
  if (!entry) { entry = {epochs: [], metrics: {}, run: data.run}; state.series.set(runId, entry); }
  entry.run = data.run;
  const known = entry.epochs.length;
  for (const key of Object.keys(data.metrics)) {
    if (!entry.metrics[key]) entry.metrics[key] = new Array(known).fill(null);
  }
  data.epochs.forEach((epoch, i) => {
    entry.epochs.push(epoch);
    for (const key of Object.keys(entry.metrics)) {
      const column = data.metrics[key];
      entry.metrics[key].push(column ? column[i] : null);
    }
  });
}

async function refreshCurves() {
  await Promise.all(state.selected.map(refreshSeries));
  renderMetricChoice();
  drawChart();
}

async function tick() {
  if (state.busy) return;
  state.busy = true;
  try {
    await refreshRuns();
    await refreshCurves();
    showError("");
    document.getElementById("updated").textContent =
      "updated " + new Date().toLocaleTimeString();
  } catch (e) {
    showError("cannot reach the store: " + e.message);
  } finally {
    state.busy = false;
  }
}

// --- the chart -----------------------------------------------------------------------------
function availableMetrics() {
  const keys = new Set();
  for (const id of state.selected) {
    const entry = state.series.get(id);
    if (!entry) continue;
    for (const [key, values] of Object.entries(entry.metrics)) {
      if (values.some((v) => v !== null) && key !== "epoch_time") keys.add(key);
    }
  }
  const ordered = PREFERRED.filter((k) => keys.has(k));
  return ordered.concat([...keys].filter((k) => !ordered.includes(k)).sort());
}

function renderMetricChoice() {
  const select = document.getElementById("metric");
  const keys = availableMetrics();
  if (!keys.includes(state.metric)) state.metric = keys[0] || null;
  const current = [...select.options].map((o) => o.value).join(",");
  if (current !== keys.join(",")) {
    select.replaceChildren(...keys.map((k) => { const o = el("option", k); o.value = k; return o; }));
  }
  if (state.metric) select.value = state.metric;
}

function niceTicks(low, high, count) {
  if (!(high > low)) { high = low + 1; }
  const raw = (high - low) / count;
  const power = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) || raw;
  const ticks = [];
  for (let v = Math.ceil(low / step) * step; v <= high + step * 1e-9; v += step) ticks.push(v);
  return ticks;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function drawChart() {
  const chart = document.getElementById("chart");
  const legend = document.getElementById("legend");
  chart.replaceChildren();
  legend.replaceChildren();
  const metric = state.metric;
  const log = document.getElementById("logy").checked;
  const W = 760, H = 420, L = 64, R = 16, T = 18, B = 40;
  const lines = [];
  state.selected.forEach((id, i) => {
    const entry = state.series.get(id);
    if (!entry || !metric || !entry.metrics[metric]) return;
    const points = [];
    entry.epochs.forEach((epoch, j) => {
      const v = entry.metrics[metric][j];
      if (v !== null && Number.isFinite(v) && (!log || v > 0)) points.push([epoch, log ? Math.log10(v) : v]);
    });
    lines.push({id, name: entry.run.name, status: entry.run.status, points,
                color: COLORS[i % COLORS.length]});
  });
  document.getElementById("selection").textContent =
    `${state.selected.length} run(s) selected` + (metric ? ` · ${metric}` : "");
  const all = lines.flatMap((l) => l.points);
  if (!all.length) {
    chart.append(svg("text", {x: W / 2, y: H / 2, "text-anchor": "middle"},
                     state.selected.length ? "no epochs recorded yet" : "select a run"));
    return;
  }
  let [x0, x1] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
  let [y0, y1] = [Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
  if (x1 === x0) { x0 -= 1; x1 += 1; }
  if (y1 === y0) { const pad = Math.abs(y0) * 0.05 || 1; y0 -= pad; y1 += pad; }
  const pad = (y1 - y0) * 0.05; y0 -= pad; y1 += pad;
  const sx = (x) => L + (x - x0) / (x1 - x0) * (W - L - R);
  const sy = (y) => H - B - (y - y0) / (y1 - y0) * (H - T - B);
  for (const t of niceTicks(y0, y1, 6)) {
    chart.append(svg("line", {x1: L, x2: W - R, y1: sy(t), y2: sy(t), class: "grid"}));
    chart.append(svg("text", {x: L - 6, y: sy(t) + 4, "text-anchor": "end"},
                     log ? fmt(Math.pow(10, t)) : fmt(t)));
  }
  for (const t of niceTicks(x0, x1, 8).filter((t) => Number.isInteger(t))) {
    chart.append(svg("line", {x1: sx(t), x2: sx(t), y1: T, y2: H - B, class: "grid"}));
    chart.append(svg("text", {x: sx(t), y: H - B + 16, "text-anchor": "middle"}, t));
  }
  chart.append(svg("line", {x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis"}));
  chart.append(svg("line", {x1: L, x2: L, y1: T, y2: H - B, class: "axis"}));
  chart.append(svg("text", {x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle"}, "epoch"));
  chart.append(svg("text", {x: 14, y: (T + H - B) / 2, "text-anchor": "middle",
                            transform: `rotate(-90 14 ${(T + H - B) / 2})`},
                   metric + (log ? " (log)" : "")));
  for (const line of lines) {
    const coords = line.points.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`);
    const poly = svg("polyline", {points: coords.join(" "), stroke: line.color,
                                  "data-run": line.id, "data-points": line.points.length});
    chart.append(poly);
    if (line.points.length <= 60) {  // markers while they can still be told apart
      for (const [x, y] of line.points) {
        chart.append(svg("circle", {cx: sx(x), cy: sy(y), r: 2.5, fill: line.color}));
      }
    }
    const item = el("li", `${line.name} (${line.id}, ${line.status}, ${line.points.length} epochs)`);
    item.style.setProperty("--swatch", line.color);
    legend.append(item);
  }
}

// --- start ---------------------------------------------------------------------------------
function start() {
  document.getElementById("metric").addEventListener("change", (e) => {
    state.metric = e.target.value; drawChart();
  });
  document.getElementById("logy").addEventListener("change", drawChart);
  document.getElementById("status-filter").addEventListener("change", tick);
  document.getElementById("kind-filter").addEventListener("change", tick);
  tick();
  setInterval(tick, POLL_MS);
}

document.addEventListener("DOMContentLoaded", start);
