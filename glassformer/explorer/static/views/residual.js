// The residual stream: the logit lens (what the stream would predict if it were read out after each block)
// at every position, and the direct logit attribution of one output token to every component.
import { el, clear, probColour, inkOn, pct, signedBars, fmt } from "../draw.js";
import { refresh, selectedPos } from "../app.js";

export const id = "residual", title = "Residual stream";
export const needs = ["lens", "dla"];  // the parts of /api/run this tab draws
export const available = () => true;

let lensMode = "top";

export function render(panel, state) {
  clear(panel, lens(state), attribution(state));
}

function lens(state) {
  const run = state.run, L = run.lens, pos = selectedPos();
  const mode = el("select", { id: "lens-mode", "aria-label": "what each cell shows", onchange: (e) => { lensMode = e.target.value; render(state.tabPanel, state); } },
    el("option", { value: "top", selected: lensMode === "top" }, "top token after each block"),
    el("option", { value: "final", selected: lensMode === "final" }, "probability of the final prediction"));
  const rows = L.labels.map((label, l) => el("tr", {}, el("th", { scope: "row" }, label), run.tokens.map((_, i) => {
    const top = L.top[l][i], p = lensMode === "top" ? top.p : L.p_final[l][i];
    const text = lensMode === "top" ? top.text : pct(p);
    return el("td", { class: i === pos ? "sel" : "", style: { background: probColour(p), color: inkOn(p) },
      title: `after ${label}, position ${i}: top ${top.text} ${pct(top.p)}; final prediction ${pct(L.p_final[l][i])}` }, text);
  })));
  return el("div", { class: "card" },
    el("h3", {}, "Logit lens ", mode),
    el("p", { class: "note" }, "Each row reads the residual stream before a block (and after the last) through the final norm and the unembedding: softmax(Norm(resid) W_U + b_U). Shade = probability."),
    el("div", { class: "scroll" }, el("table", { class: "lens" },
      el("thead", {}, el("tr", {}, el("th", {}, "stream"), run.tokens.map((t, i) => el("th", { scope: "col", class: i === pos ? "sel" : "" }, `${i} ${t.text}`)))),
      el("tbody", {}, rows))));
}

function attribution(state) {
  const d = state.run.dla, preds = state.run.predictions[d.pos];
  const tokenSelect = el("select", { id: "dla-token", "aria-label": "token to attribute", onchange: (e) => { state.dlaToken = Number(e.target.value); refresh(true); } },
    preds.map((p) => el("option", { value: p.id, selected: p.id === d.token.id }, `${p.text} (${pct(p.p)})`)),
    preds.some((p) => p.id === d.token.id) ? null : el("option", { value: d.token.id, selected: true }, d.token.text));
  const perHead = el("label", { class: "check" }, el("input", { type: "checkbox", checked: state.dlaPerHead, onchange: (e) => { state.dlaPerHead = e.target.checked; refresh(true); } }), " one bar per head");
  const parts = [el("h3", {}, `Direct logit attribution at position ${d.pos}: `, tokenSelect, " ", perHead)];
  if (d.error) {
    parts.push(el("p", { class: "note" }, d.error));
  } else {
    parts.push(el("p", { class: "note" }, `The logit of ${d.token.text} (${fmt(d.total)}) split over everything that writes into the residual stream, each term read through the final norm (its scale frozen) and W_U. Orange raises the logit, blue lowers it; the ${d.items.length} largest are shown.`),
      signedBars(d.items, { width: 560 }));
  }
  return el("div", { class: "card" }, parts);
}
