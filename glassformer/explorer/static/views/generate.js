// Generate: sample the next token with temperature, top-k and top-p, one step at a time; the server keeps
// this tab's KV cache, so each step feeds only the new token.
import { el, clear, probBars } from "../draw.js";
import { api, refresh, showError } from "../app.js";

export const id = "generate", title = "Generate";
export const needs = [];  // the parts of /api/run this tab draws
export const available = (info) => info.model.can_generate;

const opts = { temperature: 1, top_k: 0, top_p: 1, seed: 0 };
let last = null;

function slider(name, label, min, max, step) {
  const out = el("output", { for: `s-${name}` }, String(opts[name]));
  const input = el("input", { id: `s-${name}`, type: "range", min, max, step, value: opts[name],
    oninput: (e) => { opts[name] = Number(e.target.value); out.textContent = describe(name); } });
  out.textContent = describe(name);
  return el("div", { class: "slider" }, el("label", { for: `s-${name}` }, label), input, out);
}

function describe(name) {
  const v = opts[name];
  if (name === "top_k") return v === 0 ? "off" : String(v);
  if (name === "top_p") return v >= 1 ? "off" : v.toFixed(2);
  if (name === "temperature") return v === 0 ? "0 (greedy)" : v.toFixed(2);
  return String(v);
}

async function step(panel, state, times) {
  for (let i = 0; i < times; i++) {
    try {
      last = await api("generate", { text: state.text, stream: state.stream, temperature: opts.temperature,
        top_k: opts.top_k || null, top_p: opts.top_p >= 1 ? null : opts.top_p, seed: opts.seed });
    } catch (e) { showError(e.message); return; }
    state.text = last.text;
    document.getElementById("input").value = last.text;
    state.pos = null;
  }
  refresh(true);
  render(panel, state);
}

export function render(panel, state) {
  const vocab = state.info.model.d_vocab_out;
  const controls = el("div", { class: "card controls" },
    el("h3", {}, "Sampling"),
    slider("temperature", "temperature", 0, 2, 0.05),
    slider("top_k", "top-k", 0, Math.min(vocab, 100), 1),
    slider("top_p", "top-p", 0.05, 1, 0.05),
    slider("seed", "seed", 0, 20, 1),
    el("div", { class: "buttons" },
      el("button", { id: "step-one", onclick: () => step(panel, state, 1) }, "Sample one token"),
      el("button", { id: "step-ten", onclick: () => step(panel, state, 10) }, "Sample ten")));
  const result = last ? el("div", { class: "card" },
    el("h3", {}, `Sampled ${last.token.text} (p = ${(100 * last.token.p).toFixed(1)}% after filtering)`),
    el("p", { class: "note" }, `KV cache: reused ${last.cache.reused} positions, fed ${last.cache.fed} new; ${last.kept} tokens left after top-k / top-p.`),
    probBars(last.candidates, { marked: last.token.id })) : el("div", { class: "card" }, el("p", { class: "note" },
      "Each step draws one token from p = softmax(filter(logits / T)) and appends it to the input; the views follow."));
  clear(panel, el("div", { class: "gen" }, controls, result));
}
