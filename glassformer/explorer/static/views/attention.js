// Attention: an overview of every head (layers x heads, coloured by a head detector's score), the heads of
// one layer as small maps, and one head in full: hover (or focus) a token to see where it looks and who
// looks at it. Only the chosen layer's patterns travel (a 12 x 12 model stays one request, one screen).
import { el, clear, heatCanvas, probColour, inkOn, pct } from "../draw.js";
import { refresh } from "../app.js";

export const id = "attention", title = "Attention";
export const needs = ["attention", "detectors"];  // the parts of /api/run this tab draws
export const available = () => true;

const DETECTORS = { previous_token: "previous token", first_token: "first token", duplicate_token: "duplicate token", induction: "induction" };

export function render(panel, state) {
  const run = state.run, info = state.info.model;
  if (state.head >= info.n_heads) state.head = 0;
  clear(panel,
    el("div", { class: "attn-top" }, overview(state, run, info), layerMaps(state, run, info)),
    headDetail(state, run));
}

function overview(state, run, info) {
  const scores = run.detectors[state.detector];
  const select = el("select", { id: "detector", "aria-label": "head detector", onchange: (e) => { state.detector = e.target.value; render(state.tabPanel, state); } },
    Object.entries(DETECTORS).map(([k, v]) => el("option", { value: k, selected: k === state.detector }, v)));
  const rows = scores.map((row, l) => el("tr", {}, el("th", { scope: "row" }, `L${l}`), row.map((s, h) => {
    const on = l === state.layer && h === state.head;
    return el("td", {}, el("button", {
      class: `cell${on ? " on" : ""}`, style: { background: s === null ? "#eee" : probColour(s), color: inkOn(s ?? 0) },
      "aria-label": `layer ${l} head ${h}: ${DETECTORS[state.detector]} score ${s === null ? "undefined" : s.toFixed(2)}`,
      "aria-pressed": String(on), onclick: () => pick(state, l, h),
    }, s === null ? "–" : s.toFixed(2)));
  })));
  return el("div", { class: "card" },
    el("h3", {}, "Every head ", el("label", { for: "detector", class: "sr" }, "detector"), select),
    el("p", { class: "note" }, "Score of each head's pattern on this input against the detector's reference (1 = all attention where the reference says). Click a head."),
    el("table", { class: "heads-grid" }, el("thead", {}, el("tr", {}, el("th", {}), Array.from({ length: info.n_heads }, (_, h) => el("th", { scope: "col" }, `H${h}`)))), el("tbody", {}, rows)));
}

function pick(state, layer, head) {
  const reload = layer !== state.layer;
  state.layer = layer;
  state.head = head;
  if (reload) refresh(true); else render(state.tabPanel, state);
}

function layerMaps(state, run, info) {
  const heads = run.attention.heads, n = run.tokens.length;
  const side = heads.length > 6 ? 60 : 96;  // px per map: 12 heads still fit in two rows
  const cell = Math.max(2, Math.min(10, Math.floor(side / Math.max(n, 1))));
  const layerSelect = el("select", { id: "layer", "aria-label": "layer", onchange: (e) => pick(state, Number(e.target.value), state.head) },
    Array.from({ length: info.n_layers }, (_, l) => el("option", { value: l, selected: l === state.layer }, `layer ${l}`)));
  return el("div", { class: "card" },
    el("h3", {}, "Heads of ", layerSelect),
    el("div", { class: "minimaps" }, heads.map((m, h) => el("button", {
      class: `minimap${h === state.head ? " on" : ""}`, "aria-label": `layer ${state.layer} head ${h}`, "aria-pressed": String(h === state.head),
      onclick: () => pick(state, state.layer, h),
    }, heatCanvas(m, cell, `attention pattern of layer ${state.layer} head ${h}`), el("span", {}, `H${h}`)))));
}

function headDetail(state, run) {
  const pattern = run.attention.heads[state.head], tokens = run.tokens;
  const box = el("div", { class: "card head-detail" });
  const strips = el("div", { class: "strips" });
  const short = tokens.every((t) => t.text.length <= 3);
  const grid = el("table", { class: short ? "pattern short" : "pattern", "aria-label": `attention of layer ${state.layer} head ${state.head}: rows are queries, columns keys` });
  const header = el("tr", {}, el("th", { class: "corner" }, "query ↓ key →"), tokens.map((t, k) => el("th", { scope: "col", class: "k", "data-k": k }, el("span", {}, t.text))));
  const body = pattern.map((row, q) => el("tr", { "data-q": q },
    el("th", { scope: "row", class: "q" }, el("button", { class: "qtok", onmouseenter: () => focusToken(q), onfocus: () => focusToken(q), "aria-label": `token ${q} ${tokens[q].text}` }, `${q} ${tokens[q].text}`)),
    row.map((p, k) => el("td", { style: { background: probColour(p), color: inkOn(p) }, title: `${tokens[q].text} (${q}) → ${tokens[k].text} (${k}): ${pct(p)}`,
      onmouseenter: () => focusToken(q, k) }, p >= 0.005 ? Math.round(p * 100) : ""))));
  grid.append(el("thead", {}, header), el("tbody", {}, body));

  function focusToken(q, k = null) {
    grid.querySelectorAll(".hl").forEach((x) => x.classList.remove("hl"));
    grid.querySelector(`tr[data-q="${q}"]`).classList.add("hl");
    if (k !== null) grid.querySelectorAll(`th[data-k="${k}"]`).forEach((x) => x.classList.add("hl"));
    const looks = pattern[q];
    const lookedAt = pattern.map((row) => row[q]);
    clear(strips,
      strip(`${tokens[q].text} (${q}) looks at`, tokens, looks),
      strip(`who looks at ${tokens[q].text} (${q})`, tokens, lookedAt));
  }
  box.append(el("h3", {}, `Layer ${state.layer}, head ${state.head}`),
    el("p", { class: "note" }, "Rows are queries, columns keys; numbers are percent of the query's attention. Hover or focus a query token."),
    el("div", { class: "scroll" }, grid), strips);
  focusToken(Math.min(tokens.length - 1, Math.max(0, state.pos ?? tokens.length - 1)));
  return box;
}

function strip(label, tokens, weights) {
  return el("div", { class: "strip" }, el("span", { class: "strip-label" }, label),
    tokens.map((t, i) => el("span", { class: "stok", style: { background: probColour(weights[i]), color: inkOn(weights[i]) }, title: pct(weights[i]) }, t.text)));
}
