// Two small SVG charts, drawn without a library: horizontal bars (live figures) and a DET plot
// (false rejects against false accepts, both on log scales). Each chart also carries its numbers
// as text in a <desc>, which screen readers read.

const SVG = "http://www.w3.org/2000/svg";
const W = 420;

function node(tag, attrs = {}, text = null) {
  const n = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) {
    n.setAttribute(name, String(value));
  }
  if (text !== null) {
    n.textContent = text;
  }
  return n;
}

/** Bars: items [{label, value, text?}]. */
export function barChart(svg, items, unit = "") {
  const row = 26;
  const left = 130;
  const height = Math.max(row * items.length + 10, 40);
  svg.replaceChildren();
  svg.setAttribute("viewBox", `0 0 ${W} ${height}`);
  svg.append(node("desc", {}, items.map((i) => `${i.label}: ${i.text ?? i.value}${unit}`).join("; ") || "no data yet"));
  const max = Math.max(1, ...items.map((i) => i.value));
  items.forEach((item, index) => {
    const y = 5 + index * row;
    const width = ((W - left - 70) * item.value) / max;
    svg.append(node("text", { x: left - 6, y: y + 16, "text-anchor": "end", class: "label" }, item.label));
    svg.append(node("rect", { x: left, y: y + 3, width: Math.max(width, 1), height: row - 8, class: "bar" }));
    svg.append(node("text", { x: left + width + 6, y: y + 16, class: "label" }, `${item.text ?? item.value}${unit}`));
  });
  if (!items.length) {
    svg.append(node("text", { x: 10, y: 25, class: "label" }, "no data yet"));
  }
}

/** DET: points [{far, frr}] (rates 0..1), log-log, FAR on x and FRR on y. */
export function detChart(svg, points) {
  const H = 300;
  const pad = { l: 60, r: 16, t: 12, b: 44 };
  svg.replaceChildren();
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const usable = points.filter((p) => p.far > 0 && p.frr > 0);
  svg.append(node("desc", {}, points.map((p) => `FAR ${p.far}: FRR ${(100 * p.frr).toFixed(2)} %`).join("; ")));
  if (!usable.length) {
    svg.append(node("text", { x: 10, y: 25, class: "label" }, "the model card lists no operating points"));
    return;
  }
  const lx = usable.map((p) => Math.log10(p.far));
  const ly = usable.map((p) => Math.log10(p.frr));
  const x0 = Math.floor(Math.min(...lx));
  const x1 = Math.max(Math.ceil(Math.max(...lx)), x0 + 1);
  const y0 = Math.floor(Math.min(...ly));
  const y1 = Math.max(Math.ceil(Math.max(...ly)), y0 + 1);
  const sx = (v) => pad.l + ((v - x0) / (x1 - x0)) * (W - pad.l - pad.r);
  const sy = (v) => H - pad.b - ((v - y0) / (y1 - y0)) * (H - pad.t - pad.b);
  for (let e = x0; e <= x1; e += 1) {
    svg.append(node("line", { x1: sx(e), x2: sx(e), y1: pad.t, y2: H - pad.b, class: "grid" }));
    svg.append(node("text", { x: sx(e), y: H - pad.b + 16, "text-anchor": "middle", class: "label" }, `1e${e}`));
  }
  for (let e = y0; e <= y1; e += 1) {
    svg.append(node("line", { x1: pad.l, x2: W - pad.r, y1: sy(e), y2: sy(e), class: "grid" }));
    svg.append(node("text", { x: pad.l - 6, y: sy(e) + 4, "text-anchor": "end", class: "label" }, `${Number((100 * 10 ** e).toPrecision(2))}%`));
  }
  svg.append(node("text", { x: (W + pad.l) / 2, y: H - 6, "text-anchor": "middle", class: "label" }, "false accepts (FAR)"));
  svg.append(node("text", { x: 14, y: (H - pad.b) / 2, "text-anchor": "middle", class: "label", transform: `rotate(-90 14 ${(H - pad.b) / 2})` }, "false rejects (FRR)"));
  const order = usable.map((p, i) => [lx[i], ly[i]]).sort((a, b) => a[0] - b[0]);
  svg.append(node("polyline", { points: order.map(([x, y]) => `${sx(x)},${sy(y)}`).join(" "), class: "curve" }));
  for (const [x, y] of order) {
    svg.append(node("circle", { cx: sx(x), cy: sy(y), r: 4, class: "point" }));
  }
}
