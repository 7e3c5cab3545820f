// The atlas page: draws GET /v1/atlas with plotly and answers clicks with the registry's read API.
// Every call goes to an endpoint the API already offers, with the key the user typed (if any).
"use strict";

const KEY_STORE = "locus.atlas.key";
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
  "#bcbd22", "#17becf", "#393b79", "#ad494a", "#637939", "#8c6d31", "#7b4173", "#3182bd"];

const state = {
  key: sessionStorage.getItem(KEY_STORE) || "",
  points: [],
  maxParams: 1,
  byId: new Map(),
  byName: new Map(),
  selected: null,      // id of the model whose card is open
  neighbours: [],      // ids joined to the selected model on the map
  portfolio: null,     // PortfolioRead
  duplicates: null,    // DuplicatesRead
  drifted: null,       // Page[DriftedModelRead] from GET /v1/drift
};
window.atlasState = state;  // for tests and the benchmark

const $ = (id) => document.getElementById(id);

// plotly is loaded async (see atlas.html) so the map's data is fetched while its 4.8 MB are parsed;
// everything that draws waits for it here.
const plotlyReady = window.Plotly ? Promise.resolve(window.Plotly) : new Promise((resolve, reject) => {
  const tag = document.getElementById("plotly-js");
  tag.addEventListener("load", () => resolve(window.Plotly));
  tag.addEventListener("error", () => reject(new Error("could not load /atlas/static/plotly.min.js")));
});

function esc(text) {
  return String(text ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
}

function fmt(value, digits = 2) {
  if (value === null || value === undefined) return "—";
  if (typeof value === "number") return Number.isInteger(value) ? value.toLocaleString() : value.toFixed(digits);
  return esc(value);
}

async function api(path, options = {}) {
  const headers = {"Accept": "application/json"};
  if (state.key) headers["Authorization"] = "Bearer " + state.key;
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method: options.method || "GET",
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      message = `${response.status} ${body.error}: ${body.detail}`;
    } catch (e) { /* not JSON */ }
    throw new Error(message);
  }
  return response.json();
}

function showError(err) {
  const box = $("error");
  if (!err) { box.hidden = true; box.textContent = ""; return; }
  box.hidden = false;
  box.textContent = String(err.message || err);
}

// ------------------------------------------------------------------ the map

function markerSize(params) {
  if (params === null || params === undefined) return 7;
  return 6 + 26 * Math.sqrt(Math.max(0, params) / state.maxParams);
}

function groupOf(p, by) {
  return p[by] || (by === "cluster" ? "?" : "unknown");
}

function segments(pairs) {
  // One line trace for many segments: coordinates separated by nulls.
  const x = [], y = [];
  for (const [a, b] of pairs) {
    const pa = state.byId.get(a), pb = state.byId.get(b);
    if (!pa || !pb) continue;
    x.push(pa.x, pb.x, null);
    y.push(pa.y, pb.y, null);
  }
  return {x, y};
}

function traces() {
  const by = $("color-by").value;
  const groups = new Map();
  for (const p of state.points) {
    const g = groupOf(p, by);
    if (!groups.has(g)) groups.set(g, []);
    groups.get(g).push(p);
  }
  const names = [...groups.keys()].sort((a, b) => String(a).localeCompare(String(b), undefined, {numeric: true}));
  const out = [];
  if (state.duplicates) {
    const s = segments(state.duplicates.pairs.map((d) => [d.a.id, d.b.id]));
    out.push({type: "scatter", mode: "lines", name: "same model", x: s.x, y: s.y, hoverinfo: "skip",
      line: {color: "#d62728", width: 3, dash: "dot"}});
  }
  if (state.portfolio) {
    const s = segments(state.portfolio.left_out.map((c) => [c.model.id, c.representative.id]));
    out.push({type: "scatter", mode: "lines", name: "left out → stand-in", x: s.x, y: s.y, hoverinfo: "skip",
      line: {color: "rgba(90, 90, 90, 0.45)", width: 1}});
  }
  if (state.selected && state.neighbours.length) {
    const s = segments(state.neighbours.map((n) => [state.selected, n]));
    out.push({type: "scatter", mode: "lines", name: "neighbours", x: s.x, y: s.y, hoverinfo: "skip",
      line: {color: "#111", width: 1.5}});
  }
  names.forEach((g, i) => {
    const pts = groups.get(g);
    out.push({
      type: "scatter", mode: "markers", name: String(g),
      x: pts.map((p) => p.x), y: pts.map((p) => p.y),
      text: pts.map((p) => p.name), customdata: pts.map((p) => p.id),
      hovertemplate: "<b>%{text}</b><br>" + by + ": " + esc(g) + "<extra></extra>",
      marker: {size: pts.map((p) => markerSize(p.params_b)), color: PALETTE[i % PALETTE.length],
        opacity: 0.85, line: {width: 0.5, color: "#fff"}},
      meta: "models",
    });
  });
  if (state.portfolio) {
    const chosen = state.portfolio.chosen.map((c) => state.byId.get(c.id)).filter(Boolean);
    out.push({type: "scatter", mode: "markers", name: "portfolio", x: chosen.map((p) => p.x), y: chosen.map((p) => p.y),
      text: chosen.map((p) => p.name), customdata: chosen.map((p) => p.id), hovertemplate: "<b>%{text}</b> (kept)<extra></extra>",
      marker: {symbol: "diamond-open", size: chosen.map((p) => markerSize(p.params_b) + 10), color: "#111", line: {width: 2.5}}});
  }
  if (state.drifted) {
    const flagged = state.drifted.items.map((d) => state.byId.get(d.model.id)).filter(Boolean);
    out.push({type: "scatter", mode: "markers", name: "drifted", x: flagged.map((p) => p.x), y: flagged.map((p) => p.y),
      text: flagged.map((p) => p.name), customdata: flagged.map((p) => p.id),
      hovertemplate: "<b>%{text}</b> (drifted: a re-probe no longer behaves like it)<extra></extra>",
      marker: {symbol: "x-thin-open", size: flagged.map((p) => markerSize(p.params_b) + 12), color: "#d62728", line: {width: 3}}});
  }
  if (state.selected && state.byId.has(state.selected)) {
    const p = state.byId.get(state.selected);
    out.push({type: "scatter", mode: "markers+text", name: "selected", x: [p.x], y: [p.y], text: [p.name],
      textposition: "top center", customdata: [p.id], hoverinfo: "skip", showlegend: false,
      marker: {symbol: "circle-open", size: markerSize(p.params_b) + 14, color: "#111", line: {width: 3}}});
  }
  return out;
}

async function draw() {
  const Plotly = await plotlyReady;
  const layout = {
    margin: {l: 10, r: 10, t: 10, b: 10}, hovermode: "closest", dragmode: "pan",
    xaxis: {visible: false}, yaxis: {visible: false, scaleanchor: "x"},
    legend: {orientation: "h", y: -0.02}, uirevision: "atlas",
  };
  return Plotly.react("map", traces(), layout, {responsive: true, displaylogo: false, scrollZoom: true}).then((el) => {
    if (!el.dataset.clicks) {
      el.dataset.clicks = "on";
      el.on("plotly_click", (ev) => {
        const id = ev.points && ev.points[0] && ev.points[0].customdata;
        if (id) select(id);
      });
    }
  });
}

async function load() {
  showError(null);
  $("status").textContent = "loading…";
  const started = performance.now();
  try {
    const atlas = await api("/v1/atlas?method=" + encodeURIComponent($("method").value));
    const fetched = performance.now();
    state.points = atlas.points;
    state.maxParams = Math.max(1, ...atlas.points.map((p) => p.params_b || 0));
    state.byId = new Map(atlas.points.map((p) => [p.id, p]));
    state.byName = new Map(atlas.points.map((p) => [p.name.toLowerCase(), p]));
    $("names").innerHTML = atlas.points.map((p) => `<option value="${esc(p.name)}">`).join("");
    await draw();
    const ms = Math.round(performance.now() - started);
    // Where the time went, for the benchmark: API answer, drawing, and since navigation began.
    window.atlasTiming = {fetch_ms: fetched - started, draw_ms: performance.now() - fetched, since_navigation_ms: performance.now()};
    const how = atlas.cached ? "cached map" : `map computed in ${Math.round(atlas.compute_ms)} ms`;
    const missing = atlas.models_without_embedding ? ` · ${atlas.models_without_embedding} without embedding` : "";
    $("status").textContent = `${atlas.points.length} models · encoder ${atlas.fingerprint} · ${how} · ${ms} ms${missing}`;
    document.body.dataset.models = String(atlas.points.length);
    document.body.dataset.ready = "true";
  } catch (err) {
    $("status").textContent = "not loaded";
    showError(err);
  }
}

// ------------------------------------------------------------------ the card

function modelLink(m, extra = "") {
  return `<a class="model" data-id="${esc(m.id)}">${esc(m.name)}</a>${extra}`;
}

async function select(id) {
  state.selected = id;
  state.neighbours = [];
  const card = $("card");
  card.innerHTML = "<p class='hint'>loading…</p>";
  showError(null);
  try {
    const [model, similar, fallbacks] = await Promise.all([
      api(`/v1/models/${id}`),
      api(`/v1/models/${id}/similar?k=8`),
      api(`/v1/models/${id}/fallbacks?k=5`).catch((err) => ({error: err.message, items: []})),
    ]);
    state.neighbours = similar.items.map((s) => s.model.id);
    const nearest = similar.items[0];
    const compare = nearest ? await api(`/v1/compare?a=${id}&b=${nearest.model.id}`).catch(() => null) : null;
    await renderCard(model, similar, fallbacks, nearest, compare);
    await draw();
  } catch (err) {
    card.innerHTML = "";
    showError(err);
  }
}

async function renderCard(model, similar, fallbacks, nearest, compare) {
  const rows = [
    ["provider", model.provider], ["family", model.family], ["base model", model.base_model],
    ["parameters (B)", model.params_b], ["context window", model.context_window],
    ["price in / out (USD / 1M)", model.input_price === null && model.output_price === null ? null : `${fmt(model.input_price)} / ${fmt(model.output_price)}`],
    ["licence", model.license], ["tags", (model.tags || []).join(", ") || null],
    ["evaluations", model.embedding ? model.embedding.n_evaluations : 0],
  ];
  const html = [];
  html.push(`<h2 id="card-name">${esc(model.name)} <span class="badge ${esc(model.status)}">${esc(model.status)}</span></h2>`);
  html.push("<table>" + rows.map(([k, v]) => `<tr><th>${esc(k)}</th><td>${fmt(v)}</td></tr>`).join("") + "</table>");
  if (compare && compare.categories.length) {
    html.push(`<h3>Predicted accuracy per category (vs nearest, ${esc(nearest.model.name)})</h3><div id="cats"></div>`);
  }
  html.push(`<h3>Nearest neighbours${similar.ranked_by ? ` <span class="hint">(ranked by ${esc(similar.ranked_by)}; d = embedding distance)</span>` : ""}</h3>`);
  html.push(similar.items.length
    ? "<ol id='neighbours'>" + similar.items.map((s) => `<li>${modelLink(s.model, ` <span class="hint">d=${s.distance.toFixed(3)}</span>`)}</li>`).join("") + "</ol>"
    : "<p class='hint'>no other embedded model</p>");
  html.push("<h3>Fallbacks (active, meeting constraints)</h3>");
  if (fallbacks.error) html.push(`<p class="hint">${esc(fallbacks.error)}</p>`);
  else html.push(fallbacks.items.length
    ? "<ol id='fallbacks'>" + fallbacks.items.map((f) => `<li>${modelLink(f.model, ` <span class="hint">d=${f.distance.toFixed(3)}${f.predicted_agreement === null ? "" : `, agrees ${(100 * f.predicted_agreement).toFixed(0)}%`}</span>`)}</li>`).join("") + "</ol>"
    : "<p class='hint'>no active model qualifies</p>");
  $("card").innerHTML = html.join("");
  if (compare && compare.categories.length) {
    const cats = compare.categories;
    const Plotly = await plotlyReady;
    Plotly.newPlot("cats", [
      {type: "bar", name: model.name, x: cats.map((c) => c.category), y: cats.map((c) => c.predicted_accuracy_a), marker: {color: "#1f5fbf"}},
      {type: "bar", name: nearest.model.name, x: cats.map((c) => c.category), y: cats.map((c) => c.predicted_accuracy_b), marker: {color: "#b0b7c3"}},
    ], {barmode: "group", margin: {l: 36, r: 6, t: 6, b: 40}, yaxis: {range: [0, 1], tickformat: ".0%"},
      legend: {orientation: "h", y: 1.15}}, {displayModeBar: false, responsive: true});
  }
}

// ------------------------------------------------------------------ overlays

async function overlayPortfolio(event) {
  event.preventDefault();
  const mode = $("pf-mode").value;
  const value = Number($("pf-value").value);
  const body = {method: $("pf-method").value, [mode]: mode === "k" ? Math.max(1, Math.round(value)) : value};
  showError(null);
  try {
    state.portfolio = await api("/v1/portfolios", {method: "POST", body});
    const p = state.portfolio;
    const html = [`<p>Keeps <b>${p.chosen.length}</b> of ${p.pool_size} active models · coverage radius ${p.coverage_radius.toFixed(3)}` +
      (p.predicted_accuracy === null ? "" : ` · predicted routing accuracy ${(100 * p.predicted_accuracy).toFixed(1)}% (full pool ${(100 * p.predicted_accuracy_full_pool).toFixed(1)}%)`) + "</p>"];
    html.push("<h3>Kept</h3><ul id='kept'>" + p.chosen.map((m) => `<li>${modelLink(m)}</li>`).join("") + "</ul>");
    html.push("<h3>Left out → stands in</h3><table id='left-out'>" + p.left_out.map((c) =>
      `<tr><td>${modelLink(c.model)}</td><td>→ ${modelLink(c.representative)}</td><td class="hint">d=${c.distance.toFixed(3)}</td></tr>`).join("") + "</table>");
    $("portfolio").innerHTML = html.join("");
    await draw();
  } catch (err) {
    showError(err);
  }
}

async function showDuplicates() {
  showError(null);
  try {
    state.duplicates = await api("/v1/duplicates");
    const d = state.duplicates;
    $("duplicates").innerHTML = d.pairs.length
      ? "<ul id='dup-pairs'>" + d.pairs.map((p) => `<li>${modelLink(p.a)} = ${modelLink(p.b)} <span class="hint">${p.verdict_basis}, d=${(p.matched_distance ?? p.distance).toFixed(3)}</span></li>`).join("") + "</ul>"
      : `<p class="hint">no pair judged the same model (${d.pairs_compared} compared)</p>`;
    await draw();
  } catch (err) {
    showError(err);
  }
}

async function showDrift() {
  showError(null);
  try {
    state.drifted = await api("/v1/drift?limit=1000");
    const d = state.drifted;
    $("drift").innerHTML = d.items.length
      ? "<ul id='drifted'>" + d.items.map((m) => {
          const c = m.latest;
          const why = c ? `${c.kind}: disagreement ${fmt(c.evidence.rate, 3)} on ${c.evidence.shared_questions} shared questions` : "";
          return `<li>${modelLink(m.model)} <span class="hint">since ${esc(m.drifted_at.slice(0, 10))}${why ? " · " + esc(why) : ""}</span></li>`;
        }).join("") + "</ul>"
      : `<p class="hint">no model is flagged as drifted</p>`;
    await draw();
  } catch (err) {
    showError(err);
  }
}

function search() {
  const text = $("search").value.trim().toLowerCase();
  if (!text) return;
  const hit = state.byName.get(text) || state.points.find((p) => p.name.toLowerCase().includes(text));
  if (hit) select(hit.id);
  else showError(new Error(`no model named like "${$("search").value}" on the map`));
}

// ------------------------------------------------------------------ wiring

function init() {
  $("key").value = state.key;
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    state.key = $("key").value.trim();
    sessionStorage.setItem(KEY_STORE, state.key);
    load();
  });
  $("color-by").addEventListener("change", draw);
  $("method").addEventListener("change", load);
  $("search").addEventListener("change", search);
  $("search").addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); search(); } });
  $("portfolio-form").addEventListener("submit", overlayPortfolio);
  $("pf-clear").addEventListener("click", () => { state.portfolio = null; $("portfolio").innerHTML = ""; draw(); });
  $("dup-show").addEventListener("click", showDuplicates);
  $("drift-show").addEventListener("click", showDrift);
  document.body.addEventListener("click", (e) => {
    const link = e.target.closest("a.model");
    if (link) select(link.dataset.id);
  });
  load();
}

document.addEventListener("DOMContentLoaded", init);
