// gankit serve: the page's logic. Plain ES module, no dependencies; talks only to /api/*.
// Curves are drawn as inline SVG (one <polyline> per series, its data in data-* attributes).

const $ = (id) => document.getElementById(id);
// followLatest: the checkpoint picker moves to the newest checkpoint on refresh (until the
// user picks an older one); strips: the interpolation requests and answers on screen.
const state = { info: null, lastGrid: null, followLatest: true, strips: {} };
const PALETTE = ["#4f46e5", "#e11d48", "#059669", "#d97706", "#0891b2", "#7c3aed", "#65a30d",
  "#db2777", "#475569", "#ea580c"];
const SVG_NS = "http://www.w3.org/2000/svg";
const MAX_PLOT = 1e300; // chart values beyond ±MAX_PLOT are drawn at it (spans stay finite)
const SERVER_DOWN = `cannot reach the gankit serve server at ${location.origin}; ` +
  "restart it and press Refresh";

// ---- API ----------------------------------------------------------------------------------

// The answer of `path` (a POST of `body` as JSON, if given); an Error with the server's message
// unless it is 2xx. No answer at all marks the server down (see showError) until one comes;
// a 404 about the checkpoint (pruned since the page read the listing) re-reads the listing.
async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  let res;
  try {
    res = await fetch(path, init);
  } catch (_) {
    document.body.dataset.server = "down";
    throw new Error(SERVER_DOWN);
  }
  if (document.body.dataset.server === "down") {
    delete document.body.dataset.server;
    clearError("server");
  }
  if (!res.ok) {
    let message = `${res.status} ${res.statusText}`;
    try { message = (await res.json()).error || message; } catch (_) { /* not JSON */ }
    const err = new Error(message);
    err.status = res.status;
    if (prunedCheckpoint(err)) relist();
    throw err;
  }
  return res;
}

// The banner shows the latest failure of one part of the page (`source`: "page", "grid",
// "interp", "download"); that part's next success, or 8 s, hides it. While the server is down it says so
// instead, until a request gets an answer.
let errorTimer = null;
function showError(err, source = "page") {
  const box = $("error");
  const down = document.body.dataset.server === "down";
  box.textContent = down ? SERVER_DOWN : String(err.message || err);
  box.dataset.source = down ? "server" : source;
  box.hidden = false;
  clearTimeout(errorTimer);
  if (!down) errorTimer = setTimeout(() => { box.hidden = true; }, 8000);
}

function clearError(source) {
  const box = $("error");
  if (!box.hidden && box.dataset.source === source) {
    box.hidden = true;
    clearTimeout(errorTimer);
  }
}

// The integer typed in field `id` (digits only: "4.0000000000000001" or "1e3" would round to
// another number); an Error naming `label` unless it is one in lo..hi (0 <= lo), so a bad value
// is refused rather than silently replaced. The field stays marked invalid until it is read fine.
function intField(id, label, lo, hi) {
  const field = $(id);
  const text = field.value.trim();
  const v = Number(text);
  const ok = /^\d+$/.test(text) && v >= lo && v <= hi && Number.isSafeInteger(v);
  field.setAttribute("aria-invalid", String(!ok));
  if (!ok) {
    // a number field hands over "" for text that is not a number (it still shows that text)
    const got = field.validity.badInput ? "text that is not a number" : text || "nothing";
    throw new Error(`${label}: expected an integer in ${lo}..${hi}, got ${got}`);
  }
  return v;
}

const tauText = (t) => (t === 0 ? "off" : t.toFixed(1));
const stepText = (data) => (data.step === null ? data.checkpoint : `step ${data.step}`);

// ---- run info, checkpoints and class pickers ----------------------------------------------

function className(i) {
  const names = state.info ? state.info.class_names : [];
  return names[i] !== undefined ? names[i] : String(i);
}

function fillClassSelect(select, withAll) {
  const keep = select.value;
  select.replaceChildren();
  if (withAll) select.append(new Option("All classes", "all"));
  for (let i = 0; i < state.info.n_classes; i++) select.append(new Option(className(i), String(i)));
  if ([...select.options].some((o) => o.value === keep)) select.value = keep;
}

function renderInfo() {
  const info = state.info;
  document.title = `gankit · ${info.run}`;
  $("interp-steps").max = String(info.limits.steps);
  $("run-name").textContent = info.run;
  const select = $("checkpoint");
  const keep = state.followLatest ? info.latest : select.value || info.latest;
  select.replaceChildren(...info.checkpoints.map((c) =>
    new Option(c.step === null ? c.name : `step ${c.step}${c.name === info.latest ? " (latest)" : ""}`, c.name)));
  select.value = info.checkpoints.some((c) => c.name === keep) ? keep : info.latest;
  state.followLatest = select.value === info.latest; // also once a picked one is gone
  select.disabled = info.checkpoints.length < 2;
  $("run-facts").textContent = `${info.arch} · ${info.resolution}×${info.resolution}×${info.channels}` +
    ` · ${info.n_classes} class${info.n_classes === 1 ? "" : "es"} · dim_z ${info.dim_z} · ${info.device}`;
  fillClassSelect($("class"), info.n_classes > 1);
  fillClassSelect($("interp-class-a"), false);
  fillClassSelect($("interp-class-b"), false);
  for (const el of document.querySelectorAll(".conditional")) el.hidden = info.n_classes === 1;
}

async function loadInfo() {
  state.info = await (await api("/api/info")).json();
  renderInfo();
  if (state.info.class_names_pending) setTimeout(refreshNames, 1000);
}

async function refreshNames() {
  try {
    const info = await (await api("/api/info")).json();
    if (info.class_names_pending) { setTimeout(refreshNames, 1000); return; }
    state.info = info;
    renderInfo();
    renderGridColumns();
    renderStripTitles();
  } catch (err) { showError(err, "page"); }
}

// Re-read the run after a request named a checkpoint that is gone; at most one at a time, so
// that the requests of this refresh cannot start another one (a caller gets the running one).
let relisting = null;
function relist() {
  if (!relisting) relisting = refresh().finally(() => { relisting = null; });
  return relisting;
}
// An API error naming a checkpoint that is not in the run's listing (pruned since it was read).
const prunedCheckpoint = (err) => err.status === 404 && err.message.startsWith("checkpoint:");

// ---- sample grid ---------------------------------------------------------------------------

function gridRequest() {
  const info = state.info;
  const rows = Number($("grid-size").value);
  const cls = $("class").value;
  const truncation = Number($("truncation").value);
  const seed = intField("seed", "seed", 0, info.limits.seed);
  const base = { truncation, seed, checkpoint: $("checkpoint").value };
  if (cls === "all" && info.n_classes <= 16) {
    return { ...base, n: Math.min(info.limits.n, rows * info.n_classes), classes: null };
  }
  const classes = cls === "all" ? null : [Number(cls)];
  return { ...base, n: rows * rows, classes, ncol: rows };
}

// Latest-wins: while a request runs, further changes only mark the grid dirty.
let gridTimer = null, gridBusy = false, gridDirty = false;
function scheduleGrid() {
  clearTimeout(gridTimer);
  gridTimer = setTimeout(runGrid, 120);
}

async function runGrid() {
  if (gridBusy) { gridDirty = true; return; }
  gridBusy = true;
  document.body.dataset.state = "loading";
  try {
    do {
      gridDirty = false;
      const request = gridRequest();
      const data = await (await api("/api/generate", request)).json();
      if (!gridDirty) showGrid(request, data);
    } while (gridDirty);
    clearError("grid");
  } catch (err) {
    showError(err, "grid");
  } finally {
    gridBusy = false;
    document.body.dataset.state = "ready";
  }
}

function showGrid(request, data) {
  const img = $("grid");
  img.src = data.image;
  img.dataset.params = JSON.stringify(request);
  state.lastGrid = { request, data };
  const link = $("download-png");
  link.href = data.image;
  link.download = `${state.info.run}-${data.checkpoint}-seed${data.seed}.png`;
  $("grid-caption").textContent = [`${data.n} samples`, gridClasses(request, data),
    `τ ${tauText(data.truncation)}`, `seed ${data.seed}`, stepText(data)].filter(Boolean).join(" · ");
  renderGridColumns();
}

// The classes of a grid, for its caption: labels cycle through the classes in order, so a grid
// of fewer samples than classes holds the first ones only. Nothing for an unconditional model.
function gridClasses(request, data) {
  const n = state.info.n_classes;
  if (n === 1) return "";
  if (request.classes) return `class ${className(request.classes[0])}`;
  return data.n >= n ? "all classes" : `first ${data.n} of ${n} classes`;
}

function renderGridColumns() {
  const box = $("grid-columns");
  const last = state.lastGrid;
  box.replaceChildren();
  if (!last || last.request.classes || state.info.n_classes > 16) return;
  box.style.setProperty("--ncol", last.data.ncol);
  for (let c = 0; c < last.data.ncol; c++) {
    const span = document.createElement("span");
    span.textContent = className(last.data.labels[c]);
    box.append(span);
  }
}

// The grid's samples as a download; a checkpoint pruned since the listing is retried once on
// the re-read listing, and a failure stays on the banner as the download's own.
async function downloadNpz(retry = true) {
  try {
    const request = gridRequest();
    const blob = await (await api("/api/generate", { ...request, format: "npz" })).blob();
    const url = URL.createObjectURL(blob);
    const a = Object.assign(document.createElement("a"), {
      href: url, download: `${state.info.run}-${request.checkpoint}-seed${request.seed}.npz`,
    });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (err) {
    if (retry && prunedCheckpoint(err)) {
      await relist();
      await downloadNpz(false);
    } else {
      showError(err, "download");
    }
  }
}

// ---- interpolation -------------------------------------------------------------------------

// Titles from the requests the strips on screen were made from (not the fields' current text).
function renderStripTitles() {
  const z = state.strips["strip-z"], c = state.strips["strip-class"];
  const tail = (s) => ` · τ ${tauText(s.data.truncation)} · ${stepText(s.data)}`;
  if (z) {
    const [za, zb] = z.request.seeds;
    const cls = state.info.n_classes > 1 ? ` (class ${className(z.request.classes[0])})` : "";
    $("strip-z-title").textContent = `Between seeds ${za} → ${zb}${cls}${tail(z)}`;
  }
  if (c) {
    const [ca, cb] = c.request.classes.map(className);
    $("strip-class-title").textContent = `Between classes ${ca} → ${cb} (seed ${c.request.seeds[0]})${tail(c)}`;
  }
}

// The seed strip, and the class strip unless the model is unconditional.
function interpolationRequests() {
  const { seed: maxSeed, steps: maxSteps } = state.info.limits;
  const [sa, sb] = [intField("interp-seed-a", "seed A", 0, maxSeed), intField("interp-seed-b", "seed B", 0, maxSeed)];
  const [ca, cb] = [Number($("interp-class-a").value), Number($("interp-class-b").value)];
  const base = {
    steps: intField("interp-steps", "steps", 2, maxSteps), truncation: Number($("truncation").value),
    checkpoint: $("checkpoint").value,
  };
  const requests = [["strip-z", { ...base, seeds: [sa, sb], classes: [ca, ca] }]];
  if (state.info.n_classes > 1) requests.push(["strip-class", { ...base, seeds: [sa, sa], classes: [ca, cb] }]);
  return requests;
}

// Latest-wins like the grid: the strips always come from the newest settings.
let interpBusy = false, interpDirty = false;
async function runInterpolation() {
  if (interpBusy) { interpDirty = true; return; }
  interpBusy = true;
  document.body.dataset.interp = "loading";
  try {
    do {
      interpDirty = false;
      const done = [];
      for (const [id, request] of interpolationRequests()) {
        done.push([id, request, await (await api("/api/interpolate", request)).json()]);
        if (interpDirty) break;
      }
      if (interpDirty) continue;
      for (const [id, request, data] of done) {
        $(id).src = data.image;
        $(id).dataset.params = JSON.stringify(request);
        state.strips[id] = { request, data };
      }
      renderStripTitles();
    } while (interpDirty);
    clearError("interp");
  } catch (err) {
    showError(err, "interp");
  } finally {
    interpBusy = false;
    document.body.dataset.interp = "ready";
  }
}

// ---- training curves (inline SVG) ----------------------------------------------------------

function fmt(v) {
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e5 || a < 1e-3)) return v.toExponential(1);
  return String(Number(v.toPrecision(3)));
}

// About `count` round ticks in [lo, hi]: multiples of 1, 2, 2.5 or 5 times a power of ten.
function niceTicks(lo, hi, count = 5) {
  const span = hi - lo;
  const mag = 10 ** Math.floor(Math.log10(span / Math.max(1, count - 1)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => span / s <= count) || 10 * mag;
  const digits = Math.max(0, -Math.floor(Math.log10(step) + 1e-9) + (step / mag === 2.5 ? 1 : 0));
  const ticks = [];
  for (let k = Math.ceil(lo / step - 1e-9); k * step <= hi + step * 1e-9; k++) {
    ticks.push({ value: Number((k * step).toFixed(digits)), label: (k * step).toFixed(digits) });
  }
  return ticks;
}

// Y tick labels that fit the chart's left margin: past 7 characters, exponent notation with
// the fewest digits that keep the labels apart.
function tickLabels(ticks) {
  if (ticks.every((t) => t.label.length <= 7)) return ticks.map((t) => t.label);
  const exp = (t, digits) => (t.value === 0 ? "0" : t.value.toExponential(digits));
  for (let digits = 0; digits < 4; digits++) {
    const labels = ticks.map((t) => exp(t, digits));
    if (new Set(labels).size === labels.length) return labels;
  }
  return ticks.map((t) => exp(t, 4));
}

function svgEl(name, attrs, parent) {
  const el = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (parent) parent.append(el);
  return el;
}

// series: [{name, points: [[step, value], ...]}]; log: log10 y axis (all values > 0).
function lineChart(id, title, series, { log = false } = {}) {
  const W = 520, H = 230, m = { l: 54, r: 14, t: 12, b: 30 };
  const box = { x: m.l, y: m.t, w: W - m.l - m.r, h: H - m.t - m.b };
  const tf = log ? Math.log10 : (v) => Math.min(Math.max(v, -MAX_PLOT), MAX_PLOT);
  const pts = series.flatMap((s) => s.points);
  let [x0, x1] = [Math.min(...pts.map((p) => p[0])), Math.max(...pts.map((p) => p[0]))];
  let [y0, y1] = [Math.min(...pts.map((p) => tf(p[1]))), Math.max(...pts.map((p) => tf(p[1])))];
  if (x0 === x1) { x0 -= 1; x1 += 1; }
  const pad = y1 > y0 ? (y1 - y0) * 0.06 : Math.max(Math.abs(y0) * 0.1, 0.01);
  y0 -= pad; y1 += pad;
  const sx = (x) => box.x + ((x - x0) / (x1 - x0)) * box.w;
  const sy = (v) => box.y + ((y1 - tf(v)) / (y1 - y0)) * box.h;

  const fig = document.createElement("figure");
  fig.className = "chart";
  fig.id = id;
  const cap = document.createElement("figcaption");
  cap.textContent = title + (log ? " (log scale)" : "");
  fig.append(cap);
  const svg = svgEl("svg", {
    viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title,
    "data-x0": x0, "data-x1": x1, "data-y0": y0, "data-y1": y1, "data-log": log,
    "data-box": [box.x, box.y, box.w, box.h].join(","),
  }, fig);
  const axes = svgEl("g", { class: "axes" }, svg);
  const yTicks = log && y1 - y0 >= 2
    ? niceTicks(Math.ceil(y0), Math.floor(y1)).filter((t) => Number.isInteger(t.value))
      .map((t) => ({ value: 10 ** t.value, label: fmt(10 ** t.value) }))
    : niceTicks(log ? 10 ** y0 : y0, log ? 10 ** y1 : y1).filter((t) => !log || t.value > 0);
  const shown = yTicks.filter((t) => Math.abs(sy(t.value) - (box.y + box.h / 2)) <= box.h / 2 + 0.5);
  tickLabels(shown).forEach((label, i) => {
    const y = sy(shown[i].value);
    svgEl("line", { x1: box.x, x2: box.x + box.w, y1: y, y2: y, class: "grid" }, axes);
    svgEl("text", { x: box.x - 6, y: y + 4, "text-anchor": "end", class: "y-tick" }, axes)
      .textContent = label;
  });
  for (const t of niceTicks(x0, x1, 6).filter((t) => Number.isInteger(t.value))) {
    const x = sx(t.value);
    svgEl("line", { x1: x, x2: x, y1: box.y + box.h, y2: box.y + box.h + 4, class: "tick" }, axes);
    svgEl("text", { x, y: H - 10, "text-anchor": "middle" }, axes).textContent = String(t.value);
  }
  svgEl("text", { x: 4, y: H - 10, class: "axis-title" }, axes).textContent = "step";
  svgEl("rect", { x: box.x, y: box.y, width: box.w, height: box.h, class: "plot" }, axes);

  const legend = document.createElement("div");
  legend.className = "legend";
  series.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length];
    svgEl("polyline", {
      points: s.points.map((p) => `${sx(p[0]).toFixed(2)},${sy(p[1]).toFixed(2)}`).join(" "),
      stroke: color, "data-series": s.name,
      "data-steps": JSON.stringify(s.points.map((p) => p[0])),
      "data-values": JSON.stringify(s.points.map((p) => p[1])),
    }, svg);
    if (s.points.length < 40) {
      for (const p of s.points) svgEl("circle", { cx: sx(p[0]), cy: sy(p[1]), r: 2.5, fill: color }, svg);
    }
    const item = document.createElement("span");
    item.innerHTML = `<i style="background:${color}"></i>`;
    item.append(s.name);
    legend.append(item);
  });
  addHover(svg, box, series, sx, sy, fig);
  fig.append(legend);
  return fig;
}

function addHover(svg, box, series, sx, sy, fig) {
  const cursor = svgEl("line", { y1: box.y, y2: box.y + box.h, class: "cursor", visibility: "hidden" }, svg);
  const tip = document.createElement("div");
  tip.className = "tip";
  tip.hidden = true;
  fig.append(tip);
  const steps = [...new Set(series.flatMap((s) => s.points.map((p) => p[0])))].sort((a, b) => a - b);
  svg.addEventListener("mousemove", (ev) => {
    const r = svg.getBoundingClientRect();
    const x = ((ev.clientX - r.left) / r.width) * svg.viewBox.baseVal.width;
    const step = steps.reduce((best, s) => (Math.abs(sx(s) - x) < Math.abs(sx(best) - x) ? s : best));
    cursor.setAttribute("x1", sx(step));
    cursor.setAttribute("x2", sx(step));
    cursor.setAttribute("visibility", "visible");
    const lines = series.map((s) => {
      const p = s.points.find((q) => q[0] === step);
      return p ? `${s.name}: ${fmt(p[1])}` : null;
    }).filter(Boolean);
    tip.textContent = `step ${step}\n${lines.join("\n")}`;
    tip.hidden = false;
    tip.style.left = `${((sx(step) / svg.viewBox.baseVal.width) * 100).toFixed(1)}%`;
  });
  svg.addEventListener("mouseleave", () => { cursor.setAttribute("visibility", "hidden"); tip.hidden = true; });
}

async function loadCurves() {
  const curves = await (await api("/api/metrics")).json();
  const charts = [];
  const named = (obj) => Object.entries(obj).map(([name, points]) => ({ name, points }));
  const losses = named(curves.losses);
  if (losses.length) charts.push(lineChart("chart-losses", "Losses and mean D outputs", losses));
  for (const net of ["G", "D"]) {
    const s = named(curves.sigma0[net]);
    const positive = s.every((x) => x.points.every((p) => p[1] > 0));
    const vals = s.flatMap((x) => x.points.map((p) => p[1]));
    const log = positive && vals.length > 0 && Math.max(...vals) / Math.min(...vals) >= 10;
    if (s.length) charts.push(lineChart(`chart-sigma0-${net}`, `σ0 of ${net}'s weights`, s, { log }));
  }
  for (const [name, points] of Object.entries(curves.eval)) {
    charts.push(lineChart(`chart-eval-${name}`, `eval: ${name}`, [{ name, points }]));
  }
  if (!charts.length) {
    const p = document.createElement("p");
    p.className = "caption";
    p.textContent = "No training log in metrics.jsonl yet.";
    charts.push(p);
  }
  $("charts").replaceChildren(...charts);
  $("warnings").replaceChildren(...curves.warnings.map((w) => {
    const li = document.createElement("li");
    li.textContent = `step ${w.step}: ${w.warning}`;
    return li;
  }));
}

// ---- config --------------------------------------------------------------------------------

async function loadConfig() {
  const cfg = await (await api("/api/config")).json();
  const tables = Object.entries(cfg).filter(([, v]) => v && typeof v === "object").map(([section, values]) => {
    const table = document.createElement("table");
    const head = table.createTHead().insertRow();
    const th = document.createElement("th");
    th.colSpan = 2;
    th.textContent = `[${section}]`;
    head.append(th);
    const body = table.createTBody();
    for (const [k, v] of Object.entries(values)) {
      const row = body.insertRow();
      row.insertCell().textContent = k;
      row.insertCell().textContent = JSON.stringify(v);
    }
    return table;
  });
  $("config-tables").replaceChildren(...tables);
}

// ---- wiring --------------------------------------------------------------------------------

function showTruncation() {
  const v = Number($("truncation").value);
  $("truncation-value").textContent = v === 0 ? "off" : v.toFixed(1);
}

// (Re)load the run: checkpoints, then the grid, strips, curves and config. `first`: the page's
// first load, which also sets class B to the second class.
async function refresh(first = false) {
  try {
    await loadInfo();
  } catch (err) {
    showError(err, "page");
    document.body.dataset.state = "error";
    return;
  }
  clearError("page");
  if (first && $("interp-class-b").options.length > 1) $("interp-class-b").selectedIndex = 1;
  const other = (load) => load().catch((err) => showError(err, "page"));
  await Promise.all([runGrid(), runInterpolation(), other(loadCurves), other(loadConfig)]);
}

function init() {
  for (const id of ["class", "grid-size", "seed", "checkpoint"]) $(id).addEventListener("change", scheduleGrid);
  $("seed").addEventListener("input", scheduleGrid);
  $("truncation").addEventListener("input", () => { showTruncation(); scheduleGrid(); });
  $("truncation").addEventListener("change", runInterpolation);
  $("seed-random").addEventListener("click", () => {
    $("seed").value = Math.floor(Math.random() * 1e6);
    scheduleGrid();
  });
  $("download-npz").addEventListener("click", downloadNpz);
  $("interp-form").addEventListener("submit", (ev) => { ev.preventDefault(); runInterpolation(); });
  $("checkpoint").addEventListener("change", () => {
    state.followLatest = $("checkpoint").value === state.info.latest;
    runInterpolation();
  });
  $("refresh").addEventListener("click", () => refresh());
  showTruncation();
  refresh(true);
}

init();
