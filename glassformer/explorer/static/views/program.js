// Program: a compiled model's RASP source beside it; click an s-op to see the interpreter's value at every
// position next to the model's residual stream at the dimensions labelled for it (tokens=a, indices=3, ...).
// A trained model shows its decompiled program when the decompiler is installed.
import { el, clear, signedColour, fmt } from "../draw.js";
import { api, showError } from "../app.js";

export const id = "program", title = "Program";
export const needs = [];  // the parts of /api/run this tab draws
export const available = (info) => info.model.kind === "compiled" || info.model.kind === "trained";

let view = null, chosen = null;

export async function render(panel, state) {
  if (!view) {
    try { view = await api("program"); } catch (e) { clear(panel, el("p", { class: "note" }, e.message)); return; }
  }
  if (view.kind === "decompiled") {
    const run = el("button", { id: "decompile", class: "plain", onclick: async () => {
      run.disabled = true;
      run.textContent = "decompiling…";
      try { view = await api("decompile", {}); } catch (e) { showError(e.message); }
      render(panel, state);
    } }, "Decompile");
    clear(panel, el("div", { class: "card" }, el("h3", {}, "Decompiled program"),
      view.note ? el("p", { class: "note" }, view.note) : null,
      view.code ? el("pre", { class: "code" }, view.code) : null,
      view.code && view.match_sequence !== null ? el("p", { class: "note" },
        `Agrees with the model on ${(100 * view.match_sequence).toFixed(1)}% of fresh inputs (${(100 * view.match_position).toFixed(1)}% of positions).`) : null,
      view.available && !view.code ? run : null));
    return;
  }
  const nodes = el("div", { class: "sops", role: "group", "aria-label": "s-ops" }, view.nodes.map((n) => el("button", {
    class: `chip${chosen === n.name ? " on" : ""}`, "aria-pressed": String(chosen === n.name), "data-sop": n.name,
    title: `${n.type}${n.written_by.length ? ", written by " + n.written_by.join(", ") : ""}`,
    onclick: () => { chosen = n.name; render(panel, state); } }, n.name)));
  const detail = el("div", { class: "card sop-detail", "aria-live": "polite" });
  clear(panel, el("div", { class: "program" },
    el("div", { class: "card" }, el("h3", {}, `RASP program: ${view.name}`),
      view.code ? el("pre", { class: "code" }, view.code) : el("p", { class: "note" }, view.note),
      el("h3", {}, "s-ops and selectors"), nodes,
      el("details", {}, el("summary", {}, "the compiled model, layer by layer"), el("pre", { class: "code" }, view.describe))),
    detail));
  if (chosen) {
    try { clear(detail, sopView(await api("sop", { text: state.text, name: chosen }))); }
    catch (e) { showError(e.message); }
  } else {
    clear(detail, el("p", { class: "note" }, "Click an s-op to see its value at every position and the residual dimensions that carry it."));
  }
}

function sopView(s) {
  if (s.kind === "selector") {
    return el("div", {}, el("h3", {}, `Selector ${s.name}`), el("p", { class: "note" }, "selected[query][key] from the RASP interpreter."),
      el("table", { class: "selector" }, el("thead", {}, el("tr", {}, el("th", {}, "q \\ k"), s.positions.map((p) => el("th", {}, p)))),
        el("tbody", {}, s.matrix.map((row, q) => el("tr", {}, el("th", {}, s.positions[q]), row.map((v) => el("td", { class: v ? "yes" : "" }, v ? "●" : "")))))));
  }
  const scale = Math.max(1e-9, ...s.model.flat().map(Math.abs));
  return el("div", {}, el("h3", {}, `${s.name} (${s.encoding})`),
    el("p", { class: "note" }, s.note || "Left: the RASP interpreter's value. Right: the model's residual stream after the last block at the dimensions labelled for this s-op."),
    el("div", { class: "scroll" }, el("table", { class: "sop" },
      el("thead", {}, el("tr", {}, el("th", {}, "position"), el("th", {}, "RASP value"), s.dims.map((d) => el("th", { title: `residual dimension ${d.index}` }, d.label)))),
      el("tbody", {}, s.positions.map((p, i) => el("tr", {}, el("th", {}, `${i} ${p}`), el("td", { class: "rasp" }, s.rasp[i] === null ? "–" : String(s.rasp[i])),
        s.model[i].map((v) => el("td", { style: { background: signedColour(v, scale) } }, fmt(v)))))))));
}
