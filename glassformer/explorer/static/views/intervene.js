// Intervene: click heads and MLPs to ablate them (zero, or their mean over random inputs) or to patch them
// from a second input; the predictions (right) and the changed positions (marked ▲) update.
import { el, clear, pct } from "../draw.js";
import { refresh } from "../app.js";

export const id = "intervene", title = "Intervene";
export const needs = [];  // the parts of /api/run this tab draws
export const available = () => true;

const MODES = { zero: "zero-ablate", mean: "mean-ablate", patch: "patch from a second input" };

export function render(panel, state) {
  const info = state.info.model, run = state.run;
  const isOn = (l, h) => state.ablate.some((a) => a.layer === l && (h === null ? a.mlp : a.head === h));
  const toggle = (l, h) => {
    const i = state.ablate.findIndex((a) => a.layer === l && (h === null ? a.mlp : a.head === h));
    if (i >= 0) state.ablate.splice(i, 1); else state.ablate.push(h === null ? { layer: l, mlp: true } : { layer: l, head: h });
    refresh(true);
  };
  const mode = el("select", { id: "mode", "aria-label": "intervention", onchange: (e) => { state.mode = e.target.value; render(panel, state); if (state.ablate.length) refresh(true); } },
    Object.entries(MODES).map(([k, v]) => el("option", { value: k, selected: k === state.mode }, v)));
  const patch = state.mode === "patch" ? el("div", { class: "field" }, el("label", { for: "patch-input" }, "Patch from"),
    el("input", { id: "patch-input", type: "text", value: state.patchText, spellcheck: "false",
      oninput: (e) => { state.patchText = e.target.value; if (state.ablate.length) refresh(); } }),
    el("span", { class: "hint" }, "same length as the input: each chosen activation is copied from this run")) : null;
  const rows = Array.from({ length: info.n_layers }, (_, l) => el("tr", {}, el("th", { scope: "row" }, `layer ${l}`),
    Array.from({ length: info.n_heads }, (_, h) => el("td", {}, el("button", {
      class: `comp${isOn(l, h) ? " on" : ""}`, "aria-pressed": String(isOn(l, h)), "aria-label": `${MODES[state.mode]} layer ${l} head ${h}`,
      "data-layer": l, "data-head": h, onclick: () => toggle(l, h) }, `H${h}`))),
    info.has_mlp ? el("td", {}, el("button", { class: `comp mlp${isOn(l, null) ? " on" : ""}`, "aria-pressed": String(isOn(l, null)),
      "aria-label": `${MODES[state.mode]} the MLP of layer ${l}`, "data-layer": l, "data-mlp": "1", onclick: () => toggle(l, null) }, "MLP")) : null));
  clear(panel,
    el("div", { class: "card" }, el("h3", {}, "Intervention ", mode, " ",
      el("button", { class: "plain", onclick: () => { state.ablate = []; refresh(true); }, disabled: !state.ablate.length }, "clear all")),
      patch,
      el("p", { class: "note" }, "Zero sets the component's output to 0; mean replaces it with its average over 16 random inputs of the same length; patch copies it from the run on the second input."),
      el("div", { class: "scroll" }, el("table", { class: "components" }, el("tbody", {}, rows)))),
    effects(run));
}

function effects(run) {
  if (!run.baseline) return el("div", { class: "card" }, el("p", { class: "note" }, "Nothing is ablated: click a head or an MLP above."));
  const rows = run.tokens.map((t, i) => {
    const before = run.baseline.predictions[i][0], after = run.predictions[i][0];
    const changed = run.baseline.changed[i];
    return el("tr", { class: changed ? "changed" : "" }, el("td", {}, `${i} ${t.text}`), el("td", {}, `${before.text} ${pct(before.p)}`),
      el("td", {}, `${after.text} ${pct(after.p)}`), el("td", {}, `${run.baseline.delta[i] >= 0 ? "+" : ""}${(100 * run.baseline.delta[i]).toFixed(1)} pts`),
      el("td", {}, changed ? "▲ changed" : ""));
  });
  return el("div", { class: "card" }, el("h3", {}, `Effect of ${run.interventions.join(", ")}`),
    el("table", { class: "effects" }, el("thead", {}, el("tr", {}, ["position", "top before", "top after", "Δ p(top before)", ""].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, rows)));
}
