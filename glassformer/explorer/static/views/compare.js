// Compare: the same input through a second model (--compare B): predictions side by side with the
// positions whose top prediction differs marked, and how much each head's pattern differs.
import { el, clear, pct, probColour, inkOn } from "../draw.js";

export const id = "compare", title = "Compare";
export const needs = ["attention"];  // the parts of /api/run this tab draws
export const available = (info) => !!info.compare;

export function render(panel, state) {
  const a = state.run, b = a.compare, names = [state.info.model.name, state.info.compare.name];
  if (!b) return clear(panel, el("p", { class: "note" }, "…"));
  if (b.error) return clear(panel, el("p", { class: "note" }, b.error));
  const differs = b.diff.top1_differs || [];
  const rows = a.tokens.map((t, i) => el("tr", { class: differs[i] ? "changed" : "" }, el("td", {}, `${i} ${t.text}`),
    el("td", {}, `${a.predictions[i][0].text} ${pct(a.predictions[i][0].p)}`),
    el("td", {}, b.predictions[i] ? `${b.predictions[i][0].text} ${pct(b.predictions[i][0].p)}` : "–"),
    el("td", {}, differs[i] ? "▲ differs" : "")));
  const parts = [el("div", { class: "card" }, el("h3", {}, "Top prediction at every position"),
    b.diff.same_tokens ? null : el("p", { class: "note" }, "The two models read this input as different tokens."),
    el("table", { class: "effects" }, el("thead", {}, el("tr", {}, ["position", names[0], names[1], ""].map((h) => el("th", { scope: "col" }, h)))), el("tbody", {}, rows)))];
  if (b.diff.attention_diff) {
    parts.push(el("div", { class: "card" }, el("h3", {}, `Layer ${a.attention.layer}: how differently each head attends`),
      el("p", { class: "note" }, "Per head: the largest total-variation distance between the two models' attention rows (0 = identical, 1 = disjoint)."),
      el("div", { class: "diffs" }, b.diff.attention_diff.map((d, h) => el("span", { class: "stok", style: { background: probColour(d), color: inkOn(d) } }, `H${h} ${d.toFixed(2)}`)))));
  }
  clear(panel, parts);
}
