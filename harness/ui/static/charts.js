// Charts drawn by the page itself as SVG: step curves (one line per run) and param-vs-metric scatters.
// No library and nothing from the network. Every text goes in as a text node; nothing here parses markup.
// The palette and tick rule are the ones `harness plot` writes (harness/ui/svgchart.py).
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const PALETTE = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
    "#1f3b5a", "#a14f00", "#8c1d2a", "#2f6f6a", "#2b5e22", "#8a7200", "#5e3a58", "#c2185b", "#4e342e", "#616161",
  ];
  const W = 640, H = 300, M = { left: 64, right: 16, top: 16, bottom: 40 };

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v !== null && v !== undefined) node.setAttribute(k, String(v));
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }
  const titled = (node, text) => { node.append(svg("title", {}, String(text))); return node; };

  // Round ticks 1, 2, 2.5 or 5 times a power of ten apart covering [lo, hi] (svgchart.nice_ticks).
  function niceTicks(lo, hi, count) {
    count = count || 6;
    if (!Number.isFinite(lo) || !Number.isFinite(hi)) return [0, 1];
    if (hi < lo) [lo, hi] = [hi, lo];
    if (hi === lo) { const pad = Math.abs(lo) * 0.1 || 1; lo -= pad; hi += pad; }
    const raw = (hi - lo) / Math.max(1, count - 1);
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => raw <= s);
    const first = Math.floor(lo / step + 1e-9) * step, last = Math.ceil(hi / step - 1e-9) * step;
    const digits = Math.max(0, -Math.floor(Math.log10(step)) + 2);
    const out = [];
    for (let i = 0; i <= Math.round((last - first) / step); i++) out.push(+(first + i * step).toFixed(digits));
    return out;
  }

  function logTicks(lo, hi) {
    const out = [];
    for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) out.push(Math.pow(10, e));
    return out;
  }

  function tickText(v) {
    if (v === 0) return "0";
    if (Math.abs(v) >= 1e6 || Math.abs(v) < 1e-4) return v.toPrecision(3).replace(/\.?0+e/, "e");
    return String(+v.toPrecision(10));
  }

  // An axis: a scale from value to pixel, and its ticks. log: powers of ten; categories: evenly spaced bands.
  function axis(values, from, to, opts) {
    opts = opts || {};
    if (opts.categories) {
      const n = opts.categories.length, band = (to - from) / Math.max(1, n);
      return { scale: (i) => from + band * (i + 0.5), ticks: opts.categories.map((_, i) => i), text: (i) => opts.categories[i], band };
    }
    const lo = Math.min(...values), hi = Math.max(...values);
    if (opts.log) {
      const ticks = logTicks(lo, hi), a = Math.log10(ticks[0]), b = Math.log10(ticks[ticks.length - 1]);
      return { scale: (v) => from + ((Math.log10(v) - a) / (b - a || 1)) * (to - from), ticks, text: tickText };
    }
    const ticks = niceTicks(values.length ? lo : 0, values.length ? hi : 1);
    const a = ticks[0], b = ticks[ticks.length - 1];
    return { scale: (v) => from + ((v - a) / (b - a)) * (to - from), ticks, text: tickText };
  }

  function frame(xAxis, yAxis, xLabel, yLabel) {
    const g = svg("g", { class: "axes" });
    const bottom = H - M.bottom, right = W - M.right;
    for (const t of yAxis.ticks) {
      const y = yAxis.scale(t).toFixed(1);
      g.append(svg("line", { x1: M.left, x2: right, y1: y, y2: y, stroke: "#e3e7ec" }));
      g.append(svg("text", { x: M.left - 6, y: +y + 4, "text-anchor": "end", fill: "#68717d" }, yAxis.text(t)));
    }
    for (const t of xAxis.ticks) {
      const x = xAxis.scale(t).toFixed(1);
      g.append(svg("line", { x1: x, x2: x, y1: M.top, y2: bottom, stroke: "#eef1f4" }));
      g.append(svg("text", { x, y: bottom + 16, "text-anchor": "middle", fill: "#68717d" }, xAxis.text(t)));
    }
    g.append(svg("rect", { x: M.left, y: M.top, width: right - M.left, height: bottom - M.top, fill: "none", stroke: "#b8c0ca" }));
    if (xLabel) g.append(svg("text", { x: (M.left + right) / 2, y: H - 6, "text-anchor": "middle", fill: "#1d232b" }, xLabel));
    if (yLabel) {
      g.append(svg("text", { x: 12, y: (M.top + bottom) / 2, "text-anchor": "middle", fill: "#1d232b",
        transform: `rotate(-90 12 ${(M.top + bottom) / 2})` }, yLabel));
    }
    return g;
  }

  function legend(entries) {
    const list = document.createElement("ul");
    list.className = "legend";
    for (const e of entries) {
      const item = document.createElement("li");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = e.color;
      item.append(swatch, document.createTextNode(e.label));
      if (e.run) item.dataset.run = e.run;
      list.append(item);
    }
    return list;
  }

  function figure(title, chart, legendEntries, attrs) {
    const fig = document.createElement("figure");
    fig.className = "chart";
    for (const [k, v] of Object.entries(attrs || {})) fig.dataset[k] = v;
    const caption = document.createElement("figcaption");
    caption.textContent = title;
    fig.append(caption, chart);
    if (legendEntries && legendEntries.length) fig.append(legend(legendEntries));
    return fig;
  }

  // Step curves: series [{label, color, run, x: [...], y: [...]}], one polyline each.
  function lineChart(opts) {
    const xs = opts.series.flatMap((s) => s.x), ys = opts.series.flatMap((s) => s.y);
    const xAxis = axis(xs, M.left, W - M.right), yAxis = axis(ys, H - M.bottom, M.top);
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "font-size": 11 });
    root.append(titled(svg("rect", { width: W, height: H, fill: "#ffffff" }), opts.title));
    root.append(frame(xAxis, yAxis, opts.xLabel || "step", null));
    for (const s of opts.series) {
      const points = s.x.map((x, i) => `${xAxis.scale(x).toFixed(1)},${yAxis.scale(s.y[i]).toFixed(1)}`).join(" ");
      const line = svg("polyline", { class: "series", points, fill: "none", stroke: s.color, "stroke-width": 2,
        "stroke-linejoin": "round", "stroke-linecap": "round", "data-run": s.run || "" });
      root.append(titled(line, s.label));
      if (s.x.length === 1) root.append(svg("circle", { cx: xAxis.scale(s.x[0]), cy: yAxis.scale(s.y[0]), r: 3, fill: s.color }));
    }
    return figure(opts.title, root, opts.legend === false ? null : opts.series, { metric: opts.metric || opts.title });
  }

  // Param against metric: points [{x, y, label, run, color}]. A numeric x gets a linear axis, or a log one when
  // it is positive and spans two decades or more; any other x is categorical: one band per value, its points
  // spread across the band and its mean drawn as a bar.
  function scatterChart(opts) {
    const pts = opts.points;
    const numeric = pts.every((p) => typeof p.x === "number");
    const xs = pts.map((p) => p.x), ys = pts.map((p) => p.y);
    let xAxis, xOf, categories = null;
    if (numeric) {
      const lo = Math.min(...xs), hi = Math.max(...xs);
      const log = lo > 0 && hi / lo >= 100;
      xAxis = axis(xs, M.left + 12, W - M.right - 12, { log }); // a point on the frame would be cut in half
      xOf = (p) => xAxis.scale(p.x);
    } else {
      const key = (v) => (typeof v === "string" ? v : JSON.stringify(v));
      categories = [...new Set(xs.map(key))].sort();
      xAxis = axis([], M.left + 8, W - M.right - 8, { categories });
      const seen = {};
      const counts = {};
      for (const p of pts) counts[key(p.x)] = (counts[key(p.x)] || 0) + 1;
      xOf = (p) => {
        const k = key(p.x), i = categories.indexOf(k), n = counts[k], j = (seen[k] = (seen[k] || 0) + 1) - 1;
        const spread = Math.min(xAxis.band * 0.6, 6 * n);
        return xAxis.scale(i) + (n > 1 ? (j / (n - 1) - 0.5) * spread : 0);
      };
    }
    const yAxis = axis(ys, H - M.bottom - 10, M.top + 10);
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "font-size": 11 });
    root.append(titled(svg("rect", { width: W, height: H, fill: "#ffffff" }), opts.title));
    root.append(frame(xAxis, yAxis, opts.xLabel, opts.yLabel));
    if (categories) {
      for (const [i, c] of categories.entries()) {
        const group = pts.filter((p) => (typeof p.x === "string" ? p.x : JSON.stringify(p.x)) === c).map((p) => p.y);
        const mean = group.reduce((a, b) => a + b, 0) / group.length, cx = xAxis.scale(i), y = yAxis.scale(mean);
        root.append(titled(svg("line", { class: "group-mean", x1: cx - xAxis.band * 0.35, x2: cx + xAxis.band * 0.35,
          y1: y, y2: y, stroke: "#1d232b", "stroke-width": 2 }), `${c}: mean ${tickText(mean)} over ${group.length}`));
      }
    }
    for (const p of pts) {
      root.append(titled(svg("circle", { class: "point", cx: xOf(p).toFixed(1), cy: yAxis.scale(p.y).toFixed(1), r: 4.5,
        fill: p.color || PALETTE[0], stroke: "#ffffff", "data-run": p.run || "" }), p.label));
    }
    return figure(opts.title, root, null, { kind: "scatter" });
  }

  window.HarnessCharts = { PALETTE, lineChart, scatterChart, niceTicks, tickText };
})();
