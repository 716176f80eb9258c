// The dashboard page: reads /dashboard/api/* and draws the charts (uPlot), the regression
// panel, the compatibility matrix and the serve aggregates. Filters redraw the charts.
"use strict";

// Chart groups: which figures each chart holds (by name) and its unit.
const CHARTS = [
  { title: "Throughput (tok/s)", match: (n) => n.endsWith("_tok_s") },
  { title: "Time to first token (ms)", match: (n) => n.startsWith("ttft_ms") || n.startsWith("prefix_ttft_ms") },
  { title: "Inter-token latency, p95 (ms)", match: (n) => n.includes("_itl_ms_") },
  { title: "Memory (MiB)", match: (n) => n === "memory_mib" },
  { title: "In-run ratios (regression checks)", match: (n) => n.includes("_vs_") },
];
const FILTERS = ["model", "backend", "host", "quant"];
const COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"];

let runs = [];
const historyPlots = [];

async function get(path) {
  const response = await fetch("api/" + path);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function element(tag, attributes = {}, ...children) {
  const e = document.createElement(tag);
  Object.assign(e, attributes);
  for (const c of children) e.append(c);
  return e;
}

function table(headers, rows) {
  const t = element("table", { className: "data" });
  t.append(element("tr", {}, ...headers.map((h) => element("th", {}, h))));
  for (const r of rows) t.append(r);
  return t;
}

function fillFilters() {
  for (const key of FILTERS) {
    const select = document.getElementById("f-" + key);
    const values = [...new Set(runs.map((r) => r[key]))].sort();
    select.replaceChildren(element("option", { value: "", textContent: "all" }), ...values.map((v) => element("option", { value: v, textContent: v })));
    select.onchange = drawCharts;
  }
}

function selectedRuns() {
  const chosen = Object.fromEntries(FILTERS.map((k) => [k, document.getElementById("f-" + k).value]));
  return runs.filter((r) => FILTERS.every((k) => !chosen[k] || r[k] === chosen[k]));
}

// One series per (figure, backend, host, model, quant): runs of different kinds never share a line.
function seriesKey(run, figure) {
  return `${figure} · ${run.backend}/${run.host} · ${run.model} ${run.quant}`;
}

function drawCharts() {
  for (const p of historyPlots.splice(0)) p.destroy();
  const container = document.getElementById("charts");
  container.replaceChildren();
  const shown = selectedRuns();
  document.getElementById("run-count").textContent = `${shown.length} of ${runs.length} runs`;
  for (const chart of CHARTS) {
    const series = new Map(); // key -> Map(time -> value)
    for (const run of shown) {
      for (const [name, value] of Object.entries(run.figures)) {
        if (!chart.match(name)) continue;
        const key = seriesKey(run, name);
        if (!series.has(key)) series.set(key, new Map());
        series.get(key).set(run.time, value);
      }
    }
    if (series.size === 0) continue;
    const times = [...new Set([...series.values()].flatMap((s) => [...s.keys()]))].sort((a, b) => a - b);
    const keys = [...series.keys()].sort();
    const data = [times, ...keys.map((k) => times.map((t) => series.get(k).get(t) ?? null))];
    const box = element("div", { className: "chart" }, element("h3", { textContent: chart.title }));
    box.dataset.points = String(keys.reduce((n, k) => n + series.get(k).size, 0));
    container.append(box);
    historyPlots.push(new uPlot({
      width: 560,
      height: 260,
      cursor: { drag: { x: true, y: false } },
      series: [{ label: "time" }, ...keys.map((k, i) => ({
        label: k,
        stroke: COLOURS[i % COLOURS.length],
        width: 1.5,
        points: { show: true, size: 6 },
        spanGaps: true,
        value: (u, v) => (v == null ? "–" : v.toPrecision(4)),
      }))],
      axes: [{}, { size: 60 }],
    }, data, box));
  }
  if (!container.children.length) container.append(element("p", { className: "empty", textContent: "No benchmark runs recorded yet: run `rill bench --record`." }));
}

function drawRegressions(verdicts) {
  const box = document.getElementById("regressions");
  if (!verdicts.length) {
    box.replaceChildren(element("p", { className: "empty", textContent: "No history yet: record a second run of a kind (`rill bench --record`) to see its change." }));
    return;
  }
  const pct = (x) => (x * 100).toFixed(1) + "%";
  const rows = verdicts.map((v) => element("tr", { className: v.regression ? "regression" : "" },
    element("td", { textContent: new Date(v.time * 1000).toISOString().slice(0, 16).replace("T", " ") }),
    element("td", { textContent: `${v.backend}/${v.host} · ${v.model} ${v.quant} (${v.kind})` }),
    element("td", { textContent: v.figure }),
    element("td", { textContent: v.value.toPrecision(4) }),
    element("td", { textContent: `${v.baseline.median.toPrecision(4)} ± ${v.baseline.mad.toPrecision(2)} (${v.baseline.runs} runs)` }),
    element("td", { textContent: (v.change >= 0 ? "+" : "") + pct(v.change) }),
    element("td", { textContent: v.judged ? pct(v.confidence) : "–" }),
    element("td", { textContent: v.regression ? "REGRESSION" : v.judged ? "ok" : `not judged: ${v.baseline.runs} earlier run(s), 3 needed` })));
  box.replaceChildren(table(["time", "run", "figure", "value", "baseline (median ± MAD)", "change", "confidence", ""], rows));
}

function drawMatrix(results) {
  const box = document.getElementById("matrix");
  if (!results.length) {
    box.replaceChildren(element("p", { className: "empty", textContent: "No checks recorded yet: run `rill compat`." }));
    return;
  }
  const note = element("p", { className: "empty", textContent: "Checks of the hosts found here; `rill compat` runs them all again (hover a cell for what it saw)." });
  const hosts = [...new Set(results.map((r) => r.host))].sort();
  // Features in the order a deployment meets them; any new one after.
  const order = ["load", "stream", "SSE", "WebSocket", "simd128", "relaxed-simd", "WebGPU", "baked worker"];
  const rank = (f) => (order.includes(f) ? order.indexOf(f) : order.length);
  const features = [...new Set(results.map((r) => r.feature))].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  const rows = hosts.map((h) => element("tr", {}, element("th", { textContent: h }), ...features.map((f) => {
    const r = results.find((x) => x.host === h && x.feature === f);
    if (!r) return element("td", { textContent: "–", title: "not checked" });
    return element("td", { className: r.passed ? "pass" : "fail", textContent: r.passed ? "✓" : "✗", title: r.detail });
  })));
  box.replaceChildren(table(["host", ...features], rows), note);
}

function drawServe(minutes) {
  const box = document.getElementById("serve");
  if (!minutes.length) {
    box.replaceChildren(element("p", { className: "empty", textContent: "No serve telemetry yet: `rill serve` records it each minute." }));
    return;
  }
  const times = minutes.map((m) => m.minute);
  const chart = element("div", { className: "chart" }, element("h3", { textContent: "requests per minute and time to first token" }));
  chart.dataset.points = String(minutes.length);
  box.replaceChildren(chart);
  new uPlot({
    width: 560, height: 260,
    series: [{}, { label: "requests", stroke: COLOURS[0], scale: "n" }, { label: "TTFT p50 ms", stroke: COLOURS[1], scale: "ms" }, { label: "TTFT p95 ms", stroke: COLOURS[3], scale: "ms" }],
    axes: [{}, { scale: "n" }, { scale: "ms", side: 1 }],
  }, [times, minutes.map((m) => m.requests), minutes.map((m) => m.ttft_ms_p50), minutes.map((m) => m.ttft_ms_p95)], chart);
}

async function main() {
  try {
    const [r, verdicts, matrix, minutes] = await Promise.all([get("runs"), get("regressions"), get("matrix"), get("serve")]);
    runs = r;
    fillFilters();
    drawCharts();
    drawRegressions(verdicts);
    drawMatrix(matrix);
    drawServe(minutes);
    document.body.dataset.ready = "true";
  } catch (e) {
    document.getElementById("error").textContent = "Could not load the store: " + e.message;
    document.body.dataset.ready = "error";
  }
}

main();
