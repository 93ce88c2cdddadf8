// Small drawing helpers shared by the views: elements, colour scales, heat maps, bar charts.
// Colours: one sequential blue ramp for probabilities and a blue/orange diverging pair for signed values
// (Okabe & Ito's palette: distinguishable with every common colour-vision deficiency). Nothing here
// computes model maths: every number comes from the API.

export const BLUE = [0, 114, 178];     // #0072B2
export const ORANGE = [230, 159, 0];   // #E69F00
export const VERMILLION = "#D55E00";

/** el("div", {class: "x", onclick: f}, child, "text", ...) */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "style" && typeof v === "object") Object.assign(node.style, v);
    else if (k === "html") node.innerHTML = v;
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

export function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) node.setAttribute(k, String(v));
  for (const c of children.flat()) if (c) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

/** A probability in [0, 1] as a background: white -> blue. */
export function probColour(p) {
  const a = Math.max(0, Math.min(1, p));
  const mix = (c) => Math.round(255 + (c - 255) * a);
  return `rgb(${mix(BLUE[0])}, ${mix(BLUE[1])}, ${mix(BLUE[2])})`;
}

/** Text colour readable on probColour(p). */
export function inkOn(p) { return p > 0.55 ? "#fff" : "#1b1f2a"; }

/** A signed value scaled by `scale` as a background: blue (negative) / white / orange (positive). */
export function signedColour(v, scale) {
  if (!Number.isFinite(v) || !scale) return "transparent";
  const a = Math.min(1, Math.abs(v) / scale) * 0.75;
  const c = v >= 0 ? ORANGE : BLUE;
  return `rgba(${c[0]}, ${c[1]}, ${c[2]}, ${a.toFixed(3)})`;
}

export function fmt(v, digits = 3) {
  if (v === null || v === undefined) return "";
  if (typeof v === "string") return v === "-inf" ? "−∞" : v;
  if (v === 0) return "0";
  const a = Math.abs(v);
  return a >= 1000 || a < 0.001 ? v.toExponential(2) : v.toFixed(digits).replace(/\.?0+$/, "") || "0";
}

export function pct(p) { return `${(100 * p).toFixed(p >= 0.995 || p < 0.001 ? 0 : 1)}%`; }

/** A [rows][cols] matrix of probabilities drawn on a canvas, `cell` px per entry. */
export function heatCanvas(matrix, cell, label) {
  const rows = matrix.length, cols = rows ? matrix[0].length : 0;
  const canvas = el("canvas", { width: cols * cell, height: rows * cell, role: "img", "aria-label": label });
  const ctx = canvas.getContext("2d");
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      ctx.fillStyle = probColour(matrix[i][j]);
      ctx.fillRect(j * cell, i * cell, cell, cell);
    }
  }
  return canvas;
}

/** Horizontal bars for signed values: [{label, value}] -> an SVG, positive to the right. */
export function signedBars(items, { width = 520, row = 20, labelWidth = 120, highlight = null } = {}) {
  const scale = Math.max(1e-9, ...items.map((d) => Math.abs(d.value)));
  const mid = labelWidth + (width - labelWidth - 60) / 2;
  const half = (width - labelWidth - 60) / 2;
  const root = svg("svg", { width, height: items.length * row + 8, role: "img", class: "bars",
                            "aria-label": items.map((d) => `${d.label} ${fmt(d.value)}`).join(", ") });
  root.append(svg("line", { x1: mid, x2: mid, y1: 0, y2: items.length * row + 4, stroke: "#8a93a6" }));
  items.forEach((d, i) => {
    const w = (Math.abs(d.value) / scale) * half;
    const y = i * row + 4;
    const colour = d.value >= 0 ? `rgb(${ORANGE})` : `rgb(${BLUE})`;
    const g = svg("g", { class: highlight === d.label ? "hl" : "" });
    g.append(svg("text", { x: labelWidth - 8, y: y + row * 0.65, "text-anchor": "end", class: "bar-label" }, d.label));
    g.append(svg("rect", { x: d.value >= 0 ? mid : mid - w, y: y + 2, width: Math.max(w, 1), height: row - 6, fill: colour }));
    g.append(svg("text", { x: d.value >= 0 ? mid + w + 4 : mid - w - 4, y: y + row * 0.65,
                           "text-anchor": d.value >= 0 ? "start" : "end", class: "bar-value" }, fmt(d.value)));
    root.append(g);
  });
  return root;
}

/** Probability bars: [{text, p}] -> rows with a filled bar each. */
export function probBars(items, { marked = null } = {}) {
  return el("ol", { class: "probs" }, items.map((d) => el("li", { class: marked === d.id ? "marked" : "" },
    el("span", { class: "tok" }, d.text),
    el("span", { class: "bar" }, el("span", { style: { width: pct(d.p) } })),
    el("span", { class: "p" }, pct(d.p)),
  )));
}

export function clear(node, ...children) { node.replaceChildren(...children.flat().filter(Boolean)); return node; }
