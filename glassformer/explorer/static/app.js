// The page: one input, live. Every keystroke (debounced) asks POST /api/run for all views of the new input;
// the tabs draw what came back. Errors from the API are shown under the input, never thrown away.
import { el, clear, probBars, pct } from "./draw.js";
import * as forward from "./views/forward.js";
import * as attention from "./views/attention.js";
import * as residual from "./views/residual.js";
import * as intervene from "./views/intervene.js";
import * as generate from "./views/generate.js";
import * as program from "./views/program.js";
import * as compare from "./views/compare.js";

const VIEWS = [forward, attention, residual, intervene, generate, program, compare];
const DEBOUNCE_MS = 90;

export const state = {
  info: null, text: "", src: "", pos: null, layer: 0, head: 0, detector: "previous_token",
  ablate: [], mode: "zero", patchText: "", dlaToken: null, dlaPerHead: true, run: null, tab: null,
  stream: Math.random().toString(36).slice(2, 12),
};

/** POST (or GET without a body) to the API; resolves to the JSON, or throws an Error carrying the API's message. */
export async function api(path, body, signal) {
  const init = body === undefined ? { signal } : { method: "POST", body: JSON.stringify(body), signal,
                                                  headers: { "Content-Type": "application/json" } };
  const response = await fetch(`/api/${path}`, init);
  const data = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw Object.assign(new Error(data.error || `HTTP ${response.status}`), { status: response.status });
  return data;
}

export function inputBody() {
  const body = { text: state.text };
  if (state.info.model.needs_src) body.src = state.src;
  return body;
}

export function showError(message) {
  const box = document.getElementById("error");
  box.hidden = !message;
  box.textContent = message ? `⚠ ${message}` : "";
  document.getElementById("input").setAttribute("aria-invalid", message ? "true" : "false");
  document.body.classList.toggle("stale", !!message);  // the views still show the last good input, dimmed
}

let pending = null, timer = null, generation = 0;

/** Ask for every view of the current input (after a short pause in typing). */
export function refresh(now = false) {
  clearTimeout(timer);
  timer = setTimeout(runNow, now ? 0 : DEBOUNCE_MS);
}

async function runNow() {
  if (pending) pending.abort();
  pending = new AbortController();
  const mine = ++generation;
  const body = {
    ...inputBody(), layer: state.layer, top_k: 5, dla_pos: state.pos ?? -1, dla_per_head: state.dlaPerHead,
    ablate: state.ablate.map((a) => ({ ...a, mode: state.mode })), compare: !!state.info.compare,
    views: state.tab ? state.tab.needs : [],  // only what the open tab draws (the logit lens of a 50k vocabulary costs)
  };
  if (state.dlaToken !== null) body.dla_token = state.dlaToken;
  if (state.mode === "patch" && state.ablate.length) body.patch_text = state.patchText;
  const started = performance.now();
  document.body.classList.add("busy");
  try {
    const run = await api("run", body, pending.signal);
    if (mine !== generation) return;
    state.run = run;
    showError("");
    document.getElementById("status").textContent = `answered in ${Math.round(performance.now() - started)} ms`;
    render();
  } catch (e) {
    if (e.name === "AbortError" || mine !== generation) return;
    showError(e.message);
    if (state.tab && state.tab.onError) state.tab.onError(e);
  } finally {
    if (mine === generation) document.body.classList.remove("busy");
  }
}

export function selectedPos() {
  const n = state.run ? state.run.tokens.length : 0;
  return state.pos === null || state.pos >= n ? n - 1 : state.pos;
}

function renderTokens() {
  const box = document.getElementById("tokens");
  const run = state.run, pos = selectedPos();
  const changed = run.baseline ? run.baseline.changed : [];
  clear(box, run.tokens.map((t, i) => el("button", {
    class: `token${i === pos ? " selected" : ""}${changed[i] ? " changed" : ""}`, "aria-pressed": i === pos ? "true" : "false",
    title: `position ${i}, token id ${t.id}${changed[i] ? " (prediction changed by the intervention)" : ""}`,
    onclick: () => { state.pos = i; state.dlaToken = null; refresh(true); },
  }, el("span", { class: "pos" }, i), t.text)));
}

function renderPredictions() {
  const run = state.run, pos = selectedPos(), m = state.info.model;
  const what = m.causal ? "next token after" : "token at";
  document.getElementById("pred-title").textContent = `Prediction: ${what} position ${pos} (${run.tokens[pos].text})`;
  const parts = [probBars(run.predictions[pos])];
  if (run.baseline) {
    const before = run.baseline.predictions[pos];
    parts.unshift(el("p", { class: "note" }, `With ${run.interventions.join(", ")}. `,
      run.baseline.changed[pos] ? el("strong", { class: "changed-text" }, "▲ top prediction changed. ") : "top prediction unchanged. ",
      `p(${before[0].text}): ${pct(before[0].p)} → ${pct(before[0].p + run.baseline.delta[pos])}`));
    parts.push(el("h3", {}, "Without the intervention"), probBars(before));
  }
  clear(document.getElementById("predictions"), parts);
  const out = document.getElementById("output");
  clear(out);
  if (run.output) {
    const shown = run.output.map((v) => (v === null ? "∅" : String(v)));
    out.append(el("h3", {}, "Program output (decoded from the model)"), el("p", { class: "program-output" }, shown.join(" ")));
    if (run.baseline && run.baseline.output) {
      out.append(el("p", { class: "note" }, "without the intervention: ", run.baseline.output.map((v) => (v === null ? "∅" : String(v))).join(" ")));
    }
  }
}

export function render() {
  if (!state.run) return;
  renderTokens();
  renderPredictions();
  if (state.tab && hasViews(state.tab)) state.tab.render(state.tabPanel, state);
}

function hasViews(view) { return !!state.run && view.needs.every((k) => k in state.run); }

function setupTabs() {
  const list = document.getElementById("tabs"), panels = document.getElementById("panels");
  const views = VIEWS.filter((v) => v.available(state.info));
  const buttons = views.map((v, i) => el("button", {
    role: "tab", id: `tab-${v.id}`, "aria-controls": `panel-${v.id}`, "aria-selected": "false", tabindex: "-1",
    onclick: () => activate(v), onkeydown: (e) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[e.key];
      if (step) { const next = views[(i + step + views.length) % views.length]; activate(next); document.getElementById(`tab-${next.id}`).focus(); }
    },
  }, v.title));
  clear(list, buttons);
  const panelOf = new Map(views.map((v) => [v, el("div", { role: "tabpanel", id: `panel-${v.id}`, "aria-labelledby": `tab-${v.id}`, hidden: true, class: "panel" })]));
  clear(panels, [...panelOf.values()]);
  function activate(v) {
    for (const w of views) {
      const b = document.getElementById(`tab-${w.id}`);
      b.setAttribute("aria-selected", String(w === v));
      b.tabIndex = w === v ? 0 : -1;
      panelOf.get(w).hidden = w !== v;
    }
    state.tab = v;
    state.tabPanel = panelOf.get(v);
    history.replaceState(null, "", `#${v.id}`);
    if (hasViews(v)) v.render(state.tabPanel, state);
    else if (state.run) { clear(state.tabPanel, el("p", { class: "note" }, "…")); refresh(true); }
  }
  const wanted = views.find((v) => `#${v.id}` === location.hash) || views[0];
  activate(wanted);
}

async function main() {
  state.info = await api("info");
  const m = state.info.model;
  document.getElementById("model-line").textContent =
    `${m.name} · ${m.kind} ${m.arch} · ${m.n_layers} layers × ${m.n_heads} heads · d_model ${m.d_model} · ` +
    `${m.params.toLocaleString()} parameters` + (state.info.compare ? ` · compared with ${state.info.compare.name}` : "");
  document.getElementById("input-hint").textContent = m.input_hint;
  document.getElementById("src-field").hidden = !m.needs_src;
  const input = document.getElementById("input");
  const initial = new URLSearchParams(location.search).get("input");
  state.text = input.value = initial ?? m.example ?? "";
  input.addEventListener("input", () => { state.text = input.value; state.pos = null; state.dlaToken = null; refresh(); });
  document.getElementById("src").addEventListener("input", (e) => { state.src = e.target.value; refresh(); });
  setupTabs();
  if (state.text) refresh(true); else showError("type an input to start");
  input.focus();
}

main().catch((e) => showError(`could not start: ${e.message}`));
