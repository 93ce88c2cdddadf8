// The forward pass as a path: embedding -> each block (norms, heads, MLP, residual additions) -> output.
// Each step is a button; opening it asks POST /api/step for its equations (MathML from the server), shapes
// and the model's own numbers, which follow the input as it changes.
import { el, clear, fmt, probColour, inkOn, signedColour } from "../draw.js";
import { api, inputBody, showError } from "../app.js";

export const id = "forward", title = "Forward pass";
export const needs = [];  // the parts of /api/run this tab draws
export const available = () => true;

let outline = null, outlineKey = "", open = null;
const headOf = new Map();  // section -> the head whose steps are shown

export function render(panel, state) {
  const key = JSON.stringify(inputBody());
  if (key !== outlineKey) {
    outlineKey = key;
    api("path", inputBody()).then((o) => { outline = o; draw(panel, state); }, (e) => {
      clear(panel, el("p", { class: "note" }, `The equation-by-equation view is not available: ${e.message}`));
    });
    if (!outline) clear(panel, el("p", { class: "note" }, "tracing the forward pass…"));
    return;
  }
  if (outline) draw(panel, state);
}

function draw(panel, state) {
  const detail = el("div", { class: "step-detail", id: "step-detail", "aria-live": "polite" });
  const path = el("ol", { class: "path", "aria-label": "The forward pass, step by step" });
  outline.sections.forEach((section, si) => {
    const heads = [...new Set(section.steps.map((s) => s.head).filter((h) => h !== null))];
    const chosen = headOf.get(si) ?? 0;
    const items = [];
    let headsDrawn = false;
    section.steps.forEach((step, j) => {
      if (step.head !== null) {
        if (!headsDrawn && heads.length > 1) {
          items.push(el("li", { class: "head-picker" }, el("span", {}, "head"),
            heads.map((h) => el("button", { class: h === chosen ? "chip on" : "chip", "aria-pressed": String(h === chosen),
              "aria-label": `show the steps of head ${h}`, onclick: () => { headOf.set(si, h); draw(panel, state); } }, h))));
        }
        headsDrawn = true;
        if (step.head !== chosen) return;
      }
      const isOpen = open && open.section === si && open.step === j;
      items.push(el("li", {}, el("button", {
        class: `step kind-${step.kind}${isOpen ? " open" : ""}`, "aria-expanded": String(!!isOpen),
        "aria-controls": "step-detail", onclick: () => { open = { section: si, step: j }; draw(panel, state); },
      }, step.title)));
    });
    path.append(el("li", { class: `section kind-${section.kind}` },
      el("h3", {}, section.title), section.intro ? el("p", { class: "intro" }, section.intro) : null, el("ol", { class: "steps" }, items)));
  });
  clear(panel, el("p", { class: "note" }, outline.title, ". Click a step to expand it into its equation with this input's numbers."),
        el("div", { class: "forward" }, path, detail));
  if (open) loadStep(detail, open);
}

async function loadStep(box, where) {
  clear(box, el("p", { class: "note" }, "…"));
  try {
    const s = await api("step", { ...inputBody(), section: where.section, step: where.step });
    clear(box, stepView(s));
  } catch (e) {
    if (e.status === 400 && /does not exist/.test(e.message)) { open = null; clear(box); return; }
    showError(e.message);
  }
}

function stepView(s) {
  const eqs = s.equations.map((m, i) => el("div", { class: "eq", html: m, "data-latex": s.latex[i] }));
  return el("article", { class: "step-view" },
    el("h3", {}, `${s.section}: ${s.title}`), eqs,
    s.shapes.map((x) => el("p", { class: "shape" }, "shapes: ", el("code", {}, x))),
    s.text ? el("p", {}, s.text) : null,
    el("div", { class: "tensors" }, s.tensors.map(tensorTable)),
    s.lines.length ? el("ul", { class: "lines" }, s.lines.map((l) => el("li", {}, l))) : null);
}

function tensorTable(t) {
  const head = el("tr", {}, el("th", {}), t.col_labels.map((c) => el("th", { scope: "col" }, c === null ? "⋯" : c)));
  const body = t.rows.map((r) => r === null
    ? el("tr", {}, el("th", {}, "⋮"), t.col_labels.map(() => el("td", { class: "gap" }, "⋮")))
    : el("tr", {}, el("th", { scope: "row" }, r.label), r.values.map((v) => {
      if (v === null) return el("td", { class: "gap" }, "⋯");
      if (typeof v === "string") return el("td", { class: "masked" }, fmt(v));
      const style = t.heat ? { background: probColour(v), color: inkOn(v) } : { background: signedColour(v, t.scale) };
      return el("td", { style }, fmt(v, 4));
    })));
  return el("figure", { class: "tensor" },
    el("figcaption", {}, el("b", {}, t.caption), " ", el("code", {}, t.name), el("span", { class: "src" }, ` ${t.source} · [${t.shape.join(", ")}]`)),
    el("table", {}, el("thead", {}, head), el("tbody", {}, body)));
}
