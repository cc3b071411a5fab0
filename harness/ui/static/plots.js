// A run's step charts and outputs (images inline, text to open, the rest listed), and several runs at once: their
// step curves overlaid (one colour per run) and a param against a metric. Drawn with charts.js; app.js hands in
// its helpers and state. Record text goes in as text nodes only.
"use strict";

window.HarnessPlots = function ({ el, getJSON, state, loaded }) {
  const Charts = window.HarnessCharts;
  const MAX_OVERLAY = Charts.PALETTE.length; // one colour per run
  const MAX_CHARTS = 60; // step metrics drawn on a run's page
  const OUTPUT_PAGE = 200; // output files asked for at a time: a run may have 100,000
  const $ = (sel) => document.querySelector(sel);

  // The step charts and the outputs (images inline, text to open, the rest listed) come after the record.
  const fileUrl = (id, path) => `/api/runs/${encodeURIComponent(id)}/files/${path.split("/").map(encodeURIComponent).join("/")}`;
  const outputsUrl = (id, offset) => `/api/runs/${encodeURIComponent(id)}/outputs?offset=${offset}&limit=${OUTPUT_PAGE}`;
  const count = (n) => n.toLocaleString("en-US");

  function size(bytes) {
    if (bytes === null || bytes === undefined) return "not in the store";
    const units = ["B", "kB", "MB", "GB", "TB"];
    let i = 0, v = bytes;
    while (v >= 1000 && i < units.length - 1) { v /= 1000; i++; }
    return i ? `${v.toPrecision(3)} ${units[i]}` : `${bytes} B`;
  }

  const fill = (node, ...children) => node.replaceChildren(...children.filter((c) => c !== null && c !== undefined && c !== ""));

  async function renderRunExtras(r) {
    const view = $("#view-run");
    const stepsBox = view.querySelector('[data-section="steps"]'), outBox = view.querySelector('[data-section="outputs"]');
    const [steps, outputs] = await Promise.all([
      getJSON(`/api/runs/${encodeURIComponent(r.id)}/steps`).catch((err) => ({ error: String(err.message || err) })),
      getJSON(outputsUrl(r.id, 0)).catch((err) => ({ error: String(err.message || err) })),
    ]);
    if (!view.contains(stepsBox)) return; // the page moved on meanwhile
    const names = Object.keys(steps.series || {});
    const charts = el("div", { class: "charts" });
    for (const name of names.slice(0, MAX_CHARTS)) {
      const s = steps.series[name];
      charts.append(Charts.lineChart({ title: name, metric: name, legend: false,
        series: [{ label: `${r.name || ""} ${r.id}`, color: Charts.PALETTE[0], run: r.id, x: s.x, y: s.y }] }));
    }
    fill(stepsBox, el("h2", {}, "Steps"),
      steps.error ? el("p", { class: "error" }, steps.error) : null,
      names.length ? charts : el("p", { class: "muted" }, steps.error ? "" : "no step metrics (metrics.jsonl)"),
      names.length > MAX_CHARTS ? el("p", { class: "muted" }, `the first ${MAX_CHARTS} of ${names.length} step metrics`) : null,
      (steps.errors || []).length ? el("p", { class: "warning" }, steps.errors.join("; ")) : null);
    stepsBox.dataset.state = "ready";

    if (outputs.error) {
      outBox.append(el("p", { class: "error" }, outputs.error));
    } else if (outputs.files.length) {
      // A page of files at a time (the server looks only at those); "more" asks for the next and appends it.
      const table = el("table", { class: "kv outputs" }, el("thead", {}, el("tr", {}, ["path", "sha256", "size", ""].map((h) => el("th", {}, h)))));
      const body = el("tbody");
      table.append(body);
      // An image is shown with <img>: an SVG's scripts never run there (and the server's CSP stops them anyway).
      const gallery = el("div", { class: "images" });
      const shown = el("p", { class: "muted", id: "outputs-shown" });
      const more = el("button", { type: "button", class: "quiet", id: "outputs-more" });
      const failed = el("p", { class: "error", hidden: true });
      let loaded = 0;
      const add = (page) => {
        for (const f of page.files) {
          const url = fileUrl(r.id, f.path);
          const link = f.size === null ? "" : f.kind === "file"
            ? el("a", { href: url, download: f.path.split("/").pop() }, "download")
            : el("a", { href: url, target: "_blank", rel: "noopener" }, "open");
          body.append(el("tr", { "data-path": f.path, "data-kind": f.kind }, el("td", { class: "key" }, f.path),
            el("td", { class: "mono" }, f.sha256), el("td", { class: "num" }, size(f.size)), el("td", {}, link)));
          if (f.kind === "image" && f.size !== null) {
            gallery.append(el("figure", { class: "image" },
              el("img", { src: url, alt: f.path, loading: "lazy", "data-path": f.path }), el("figcaption", {}, f.path)));
          }
        }
        loaded += page.files.length;
        gallery.hidden = !gallery.childElementCount;
        shown.textContent = `showing ${count(loaded)} of ${count(page.total)} files`;
        more.textContent = `show ${count(Math.min(OUTPUT_PAGE, page.total - loaded))} more`;
        more.hidden = loaded >= page.total || !page.files.length;
      };
      more.addEventListener("click", async () => {
        more.disabled = true;
        try {
          add(await getJSON(outputsUrl(r.id, loaded)));
          failed.hidden = true;
        } catch (err) {
          failed.textContent = String(err.message || err);
          failed.hidden = false;
        } finally {
          more.disabled = false;
        }
      });
      add(outputs);
      fill(outBox, el("h2", {}, "Outputs"), gallery, table, shown, more, failed);
    }
    outBox.dataset.state = "ready";
  }

  // -- several runs: step curves overlaid, and a param against a metric ------------------------------------
  const valueText = (v) => (typeof v === "string" ? v : JSON.stringify(v));

  function differingParams(runs) {
    const names = [...new Set(runs.flatMap((r) => Object.keys(r._params)))].sort();
    return names.filter((k) => new Set(runs.map((r) => JSON.stringify(r._params[k] ?? null))).size > 1);
  }

  function runLabel(r, params) {
    const shown = params.filter((k) => k in r._params).map((k) => `${k}=${valueText(r._params[k])}`).join(", ");
    return `${r.name || ""} ${r.id}`.trim() + (shown ? ` (${shown})` : "");
  }

  async function renderPlot(ids) {
    await loaded();
    const view = $("#view-plot");
    const runs = ids.map((id) => state.byId.get(id)).filter(Boolean);
    const missing = ids.filter((id) => !state.byId.has(id));
    const differing = differingParams(runs);
    const overlaid = runs.slice(0, MAX_OVERLAY);
    const colour = new Map(overlaid.map((r, i) => [r.id, Charts.PALETTE[i]]));
    const steps = await Promise.all(overlaid.map((r) => getJSON(`/api/runs/${encodeURIComponent(r.id)}/steps`)
      .catch((err) => ({ series: {}, errors: [`${r.id}: ${err.message || err}`] }))));
    const metrics = [...new Set(steps.flatMap((s) => Object.keys(s.series || {})))].sort();
    const charts = el("div", { class: "charts" });
    for (const name of metrics) {
      const series = [];
      overlaid.forEach((r, i) => {
        const s = (steps[i].series || {})[name];
        if (s) series.push({ label: runLabel(r, differing), color: colour.get(r.id), run: r.id, x: s.x, y: s.y });
      });
      charts.append(Charts.lineChart({ title: name, metric: name, series }));
    }
    const notes = [
      missing.length ? `not found: ${missing.join(", ")}` : null,
      runs.length > MAX_OVERLAY ? `step curves of the first ${MAX_OVERLAY} of ${runs.length} selected runs (one colour each); the chart below has all` : null,
      ...steps.flatMap((s) => s.errors || []),
    ].filter(Boolean);

    // param vs metric: the differing params first (the question is usually about those), then the rest
    const allParams = [...new Set(runs.flatMap((r) => Object.keys(r._params)))].sort();
    const paramNames = [...differing, ...allParams.filter((k) => !differing.includes(k))];
    const metricNames = [...new Set(runs.flatMap((r) => Object.keys(r._metrics)))].sort()
      .filter((k) => runs.some((r) => typeof r._metrics[k] === "number"));
    const paramPick = el("select", { id: "scatter-param" }, paramNames.map((k) => el("option", { value: k }, k)));
    const metricPick = el("select", { id: "scatter-metric" }, metricNames.map((k) => el("option", { value: k }, k)));
    const scatterBox = el("div", { class: "scatter" });
    const drawScatter = () => {
      const param = paramPick.value, metric = metricPick.value;
      const points = runs.filter((r) => param in r._params && typeof r._metrics[metric] === "number").map((r) => ({
        x: r._params[param], y: r._metrics[metric], run: r.id, color: colour.get(r.id) || "#8a94a0",
        label: `${r.name || ""} ${r.id}: ${param}=${valueText(r._params[param])}, ${metric}=${r._metrics[metric]}`,
      }));
      if (!param || !metric || !points.length) {
        scatterBox.replaceChildren(el("p", { class: "muted" }, "no run has both a value for this param and this metric"));
        return;
      }
      const by = (f) => points.reduce((a, b) => (f(b.y, a.y) ? b : a));
      const low = by((a, b) => a < b), high = by((a, b) => a > b);
      const text = (p) => `${p.y} at ${param}=${valueText(p.x)} (run ${p.run})`;
      scatterBox.replaceChildren(
        Charts.scatterChart({ title: `${metric} by ${param}`, xLabel: param, yLabel: metric, points }),
        el("p", { class: "best" }, `lowest ${metric}: ${text(low)} · highest: ${text(high)}`,
          points.length < runs.length ? ` · ${runs.length - points.length} run(s) without both` : ""));
    };
    paramPick.addEventListener("change", drawScatter);
    metricPick.addEventListener("change", drawScatter);

    view.replaceChildren(
      el("p", {}, el("a", { href: "#/" }, "← all runs")),
      el("h1", {}, `${runs.length} run${runs.length === 1 ? "" : "s"}`),
      el("section", { class: "card", "data-section": "overlay" }, el("h2", {}, "Step curves"),
        metrics.length ? charts : el("p", { class: "muted" }, "none of these runs wrote step metrics (metrics.jsonl)"),
        notes.length ? el("p", { class: "muted" }, notes.join("; ")) : null),
      el("section", { class: "card", "data-section": "scatter" }, el("h2", {}, "Param against metric"),
        el("div", { class: "scatter-controls" }, el("label", { class: "check" }, "param ", paramPick),
          el("label", { class: "check" }, "metric ", metricPick)),
        scatterBox),
    );
    drawScatter();
    view.dataset.state = "ready";
  }

  return { renderRunExtras, renderPlot };
};
