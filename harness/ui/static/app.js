// The runs table (a page of rows at a time), a run's page with its step charts and outputs, a two-run comparison
// and a plot of several runs, over /api/runs and /api/runs/<id>[/steps|/outputs|/files/<path>].
// Record text is always escaped (esc() for the table's HTML string, textContent everywhere else).
"use strict";

(function () {
  const $ = (sel) => document.querySelector(sel);
  const state = {
    runs: [], byId: new Map(), columns: [], shown: [], sort: { key: "time", dir: -1 }, selected: new Set(),
    predicate: () => true, page: 0, pageSize: 100,
  };
  let runsLoaded = null;

  // -- helpers ------------------------------------------------------------------------------------------------
  const ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ESC[c]);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  // {"a": {"b": 1}} -> {"a.b": 1}; an empty mapping below the top stays a value ({}), the top one adds nothing.
  function flatten(value, prefix, out) {
    out = out || {};
    if (value && typeof value === "object" && !Array.isArray(value) && (Object.keys(value).length || !prefix)) {
      for (const [k, v] of Object.entries(value)) flatten(v, prefix ? `${prefix}.${k}` : k, out);
    } else {
      out[prefix] = value;
    }
    return out;
  }

  function fmt(value) {
    if (value === null || value === undefined) return "";
    if (typeof value === "number") return Number.isInteger(value) ? String(value) : String(+value.toPrecision(5));
    if (typeof value === "string") return value;
    return JSON.stringify(value);
  }

  // The run page and the comparison show numbers exactly; the table rounds them (the full value in a tooltip).
  const exact = (value) => (typeof value === "number" ? String(value) : fmt(value));
  const short = (digest, n) => (digest ? String(digest).split(":").pop().slice(0, n) : "");
  const time = (iso) => (iso ? String(iso).slice(0, 19).replace("T", " ") : "");
  const isFailed = (r) => r.status === "failed" || r.status === "interrupted";
  const count = (n) => n.toLocaleString("en-US");
  // A record lists its first 1,000 output files by path and counts them all in file_count (older records list
  // every file and have no count); the rest are in its outputs manifest (harness/runs/outputlist.py).
  function outputsListed(record) {
    const outputs = record.outputs || {};
    const listed = Object.keys(outputs.files || {}).length;
    const total = Number.isInteger(outputs.file_count) ? outputs.file_count : listed;
    return { listed, total, cut: total > listed, manifest: outputs.manifest };
  }
  const statusText = (r) => r.status + (r.status === "failed" && r.exit_code !== null && r.exit_code !== undefined ? ` (${r.exit_code})` : "");

  async function getJSON(url) {
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    const body = await response.json();
    if (!response.ok) throw new Error(body.message || response.statusText);
    return body;
  }

  function showError(message) {
    const box = $("#load-error");
    box.textContent = message;
    box.hidden = !message;
  }

  // -- the table ----------------------------------------------------------------------------------------------
  function buildColumns(runs) {
    const params = new Set(), metrics = new Set();
    for (const r of runs) {
      for (const k of Object.keys(r._params)) params.add(k);
      for (const k of Object.keys(r._metrics)) metrics.add(k);
    }
    const cols = [
      { key: "time", label: "time", group: "Meta", get: (r) => r.started_at, show: time },
      { key: "id", label: "id", group: "Meta", get: (r) => r.id },
      { key: "name", label: "name", group: "Meta", get: (r) => r.name },
      { key: "status", label: "status", group: "Meta", get: (r) => r.status },
      { key: "commit", label: "commit", group: "Provenance", get: (r) => r.code.commit, show: (v) => short(v, 8) },
      { key: "dirty", label: "dirty", group: "Provenance", get: (r) => Boolean(r.code.dirty) },
      { key: "data", label: "data", group: "Provenance", get: (r) => r.data.snapshot, show: (v) => short(v, 8) },
      { key: "image", label: "image", group: "Provenance", get: (r) => r.environment.image_id, show: (v) => short(v, 8) },
    ];
    for (const k of [...params].sort()) cols.push({ key: `params.${k}`, label: k, group: "Params", get: (r) => r._params[k] });
    for (const k of [...metrics].sort()) cols.push({ key: `metrics.${k}`, label: k, group: "Metrics", get: (r) => r._metrics[k] });
    return cols;
  }

  function cell(col, run) {
    const value = col.get(run);
    if (col.key === "id") return `<td class="mono"><a href="#/run/${encodeURIComponent(run.id)}">${esc(run.id)}</a></td>`;
    if (col.key === "name") {
      const name = esc(run.name || "");
      return `<td class="name" title="${name}"><a href="#/run/${encodeURIComponent(run.id)}">${name}</a></td>`;
    }
    if (col.key === "status") return `<td><span class="badge status-${esc(run.status)}">${esc(statusText(run))}</span></td>`;
    if (col.key === "dirty") return value ? '<td><span class="badge dirty">DIRTY</span></td>' : "<td></td>";
    const text = col.show ? col.show(value) : fmt(value);
    const cls = typeof value === "number" ? "num" : col.group === "Provenance" ? "mono" : "";
    const title = text !== exact(value) ? ` title="${esc(exact(value))}"` : "";
    return `<td class="${cls}"${title}>${esc(text)}</td>`;
  }

  function sortValue(col, run) {
    const v = col.get(run);
    return v === undefined ? null : v;
  }

  function compareValues(a, b) {
    // nulls last whatever the direction is handled by the caller; numbers before strings; numbers numerically
    const ta = typeof a === "number" ? 0 : 1, tb = typeof b === "number" ? 0 : 1;
    if (ta !== tb) return ta - tb;
    if (ta === 0) return a - b;
    const sa = typeof a === "string" ? a : JSON.stringify(a), sb = typeof b === "string" ? b : JSON.stringify(b);
    return sa < sb ? -1 : sa > sb ? 1 : 0;
  }

  function visibleColumns() {
    if (!$("#varying").checked || state.shown.length < 2) return state.columns;
    return state.columns.filter((c) => {
      if (c.group === "Meta") return true;
      const first = JSON.stringify(c.get(state.shown[0]) ?? null);
      return state.shown.some((r) => JSON.stringify(c.get(r) ?? null) !== first);
    });
  }

  function render() {
    const col = state.columns.find((c) => c.key === state.sort.key) || state.columns[0];
    const dir = state.sort.dir;
    const rows = state.runs.filter(state.predicate);
    const keyed = rows.map((r) => [sortValue(col, r), r]);
    keyed.sort((x, y) => {
      const a = x[0], b = y[0];
      if (a === null || b === null) return a === b ? 0 : a === null ? 1 : -1;
      return dir * compareValues(a, b);
    });
    state.shown = keyed.map((x) => x[1]);
    const cols = visibleColumns();

    const groups = [];
    for (const c of cols) {
      const last = groups[groups.length - 1];
      if (last && last.name === c.group) last.span++;
      else groups.push({ name: c.group, span: 1 });
    }
    const pages = Math.max(1, Math.ceil(state.shown.length / state.pageSize));
    state.page = Math.min(Math.max(0, state.page), pages - 1);
    const first = state.page * state.pageSize;
    const pageRows = state.shown.slice(first, first + state.pageSize);
    const allPicked = state.shown.length > 0 && state.shown.every((r) => state.selected.has(r.id));
    let head = '<tr class="groups"><th></th>';
    head += groups.map((g) => `<th colspan="${g.span}" class="group g-${g.name.toLowerCase()}">${g.name}</th>`).join("");
    head += "</tr>";
    const pickAll = `<th class="pick-all"><input type="checkbox" id="pick-all" title="select all ${state.shown.length} shown"`
      + ` aria-label="select all shown"${allPicked ? " checked" : ""}></th>`;
    head += `<tr class="cols">${pickAll}` + cols.map((c) => {
      const arrow = c.key === col.key ? (dir > 0 ? " ▲" : " ▼") : "";
      const sorted = c.key === col.key ? ` aria-sort="${dir > 0 ? "ascending" : "descending"}"` : "";
      const attrs = `data-key="${esc(c.key)}" class="sortable g-${c.group.toLowerCase()}"${sorted} title="sort by ${esc(c.key)}"`;
      return `<th ${attrs}>${esc(c.label)}${arrow}</th>`;
    }).join("") + "</tr>";
    $("#runs thead").innerHTML = head;

    const body = [];
    for (const r of pageRows) {
      const cls = ["run", r.code.dirty ? "is-dirty" : "", isFailed(r) ? "is-failed" : ""].join(" ").trim();
      const checked = state.selected.has(r.id) ? " checked" : "";
      const pick = `<td class="pick-cell"><input type="checkbox" class="pick" aria-label="select ${esc(r.id)}"${checked}></td>`;
      body.push(`<tr class="${cls}" data-id="${esc(r.id)}">${pick}${cols.map((c) => cell(c, r)).join("")}</tr>`);
    }
    $("#runs tbody").innerHTML = body.join("");
    $("#count").textContent = rows.length === state.runs.length ? `${rows.length} runs` : `${rows.length} of ${state.runs.length} runs`;
    $("#empty").hidden = state.runs.length > 0;
    $("#page-info").textContent = state.shown.length
      ? `${first + 1}–${first + pageRows.length} of ${state.shown.length}` : "";
    $("#prev").disabled = state.page === 0;
    $("#next").disabled = state.page >= pages - 1;
    updateCompareButton();
  }

  function updateCompareButton() {
    const button = $("#compare"), n = state.selected.size;
    button.disabled = n !== 2;
    button.textContent = n === 2 ? "Compare selected" : `Compare selected (${n}/2)`;
    $("#plot").disabled = n === 0;
    $("#plot").textContent = n ? `Plot selected (${n})` : "Plot selected";
  }

  // The server evaluates the expression (harness.query, the language of `harness ls --where`); the page keeps its
  // rows, columns, order and selection and shows the runs whose ids come back. Only the latest request counts.
  let filterSeq = 0;
  async function applyFilter() {
    const text = $("#where").value.trim();
    const seq = ++filterSeq;
    const box = $("#where-error"), note = $("#where-warning"), input = $("#where");
    if (!text) {
      state.predicate = () => true;
    } else {
      const response = await fetch(`/api/runs?where=${encodeURIComponent(text)}`, { headers: { Accept: "application/json" } });
      const body = await response.json();
      if (seq !== filterSeq) return;
      if (!response.ok) {
        box.textContent = body.message + (body.hint ? `\n${body.hint}` : "");
        box.hidden = false;
        input.classList.add("invalid");
        document.body.dataset.filtered = text;
        return;
      }
      const ids = new Set(body.runs.map((r) => r.id));
      state.predicate = (r) => ids.has(r.id);
      note.textContent = (body.warnings || []).join("; ");
      note.hidden = !note.textContent;
    }
    if (!text) note.hidden = true;
    box.hidden = true;
    input.classList.remove("invalid");
    state.page = 0;
    render();
    document.body.dataset.filtered = text;
  }

  async function loadRuns() {
    const body = await getJSON("/api/runs");
    for (const r of body.runs) {
      r.code = r.code || {};
      r.data = r.data || {};
      r.environment = r.environment || {};
      r._params = flatten(r.params || {}, "");
      r._metrics = flatten(r.metrics || {}, "");
    }
    state.runs = body.runs;
    state.byId = new Map(body.runs.map((r) => [r.id, r]));
    state.columns = buildColumns(body.runs);
    render();
  }

  // -- a run's page ------------------------------------------------------------------------------------------
  function kvTable(rows, headers) {
    const table = el("table", { class: "kv" });
    if (headers) table.append(el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))));
    const body = el("tbody");
    for (const row of rows) {
      body.append(el("tr", {}, row.map((v, i) => el("td", { class: i === 0 ? "key" : "mono" }, exact(v)))));
    }
    table.append(body);
    return table;
  }

  function section(title, ...content) {
    return el("section", { class: "card", "data-section": title.toLowerCase() }, el("h2", {}, title), ...content);
  }

  function badges(r) {
    return [
      el("span", { class: `badge status-${r.status}` }, statusText(r)),
      r.code && r.code.dirty ? el("span", { class: "badge dirty" }, "DIRTY: ran uncommitted changes") : null,
    ];
  }

  function renderRun(r) {
    const code = r.code || {}, env = r.environment || {}, data = r.data || {}, outputs = r.outputs || {};
    const params = flatten(r.params || {}, ""), sources = r.params_sources || {};
    const metrics = flatten(r.metrics || {}, "");
    const packages = env.packages || [];
    const files = Object.entries(outputs.files || {}).sort();
    const listed = outputsListed(r);
    const view = $("#view-run");
    view.replaceChildren(
      el("p", {}, el("a", { href: "#/" }, "← all runs")),
      el("h1", {}, el("span", { class: "mono" }, r.id), " ", el("span", { class: "run-name" }, r.name || ""), " ", badges(r)),
      section("Run", kvTable([
        ["started", time(r.started_at)], ["finished", time(r.finished_at)], ["duration (s)", r.duration_s],
        ["command", (r.command || []).join(" ")], ["exit code", r.exit_code], ["configs", (r.configs || []).join(", ")],
        ["rebuild of", r.rebuild_of], ...(r.error ? [["error", r.error.message]] : []),
      ])),
      section("Params", Object.keys(params).length
        ? kvTable(Object.entries(params).map(([k, v]) => [k, exact(v), sources[k] || ""]), ["param", "value", "source"])
        : el("p", { class: "muted" }, "no params")),
      section("Metrics", Object.keys(metrics).length
        ? kvTable(Object.entries(metrics).map(([k, v]) => [k, exact(v)]), ["metric", "value"])
        : el("p", { class: "muted" }, r.metrics_error || "no metrics")),
      section("Steps", el("p", { class: "muted" }, r.metrics_steps ? "loading…" : "no step metrics (metrics.jsonl)")),
      section("Outputs", listed.cut ? el("p", { class: "warning", id: "outputs-cut" },
        `the record lists the first ${count(listed.listed)} of ${count(listed.total)} files (by path); `,
        listed.manifest ? ["all of them: ", el("code", {}, `harness data show ${listed.manifest}`)]
          : "it names no outputs manifest for the rest") : null,
      files.length ? kvTable(files, ["path", "sha256"]) : el("p", { class: "muted" }, "no outputs")),
      section("Code", kvTable([
        ["commit", code.commit], ["subject", code.subject], ["tree", code.tree], ["branch", code.branch],
        ["remote", code.remote], ["dirty", code.dirty ? "yes: uncommitted changes were run" : "no"],
        ...(code.dirty ? [["changes", (code.changes || []).map((c) => `${c.status} ${c.path}`).join(", ")], ["diff object", code.diff]] : []),
      ])),
      section("Data", kvTable([["snapshot", data.snapshot], ["files", data.files], ["bytes", data.bytes], ["mount", data.mount]])),
      section("Environment", kvTable([
        ["image id", env.image_id], ["manifest digest", env.manifest_digest], ["key", env.key], ["python", env.python],
        ["lock digest", env.lock_digest], ["recipe", env.recipe],
      ]), packages.length ? kvTable(packages.map((p) => [p.name, p.version, p.sha256]), ["package", "version", "sha256"]) : null),
      section("Host", kvTable(Object.entries(flatten(r.host || {}, "")))),
      el("details", { class: "card" }, el("summary", {}, "Full record (JSON)"), el("pre", {}, JSON.stringify(r, null, 2))),
    );
  }

  // A run's step charts and outputs, and the several-runs view: plots.js, given what it needs from here.
  const Plots = window.HarnessPlots({ el, getJSON, state, loaded: () => runsLoaded });

  // -- comparison --------------------------------------------------------------------------------------------
  function comparable(record) {
    // Packages by name and outputs by path, so a package added in one run lines up with nothing in the other.
    const r = JSON.parse(JSON.stringify(record));
    const env = r.environment || {};
    if (Array.isArray(env.packages)) {
      env.packages = Object.fromEntries(env.packages.map((p) => [p.name, `${p.version} ${p.sha256 || ""}`.trim()]));
    }
    const out = flatten(r, "");
    for (const [k, v] of Object.entries(out)) {
      if (Array.isArray(v)) out[k] = v.every((x) => x === null || typeof x !== "object") ? v.join(" ") : JSON.stringify(v);
    }
    return out;
  }

  // What a comparison is usually about comes first; the rest alphabetically.
  const COMPARE_ORDER = ["name", "status", "exit_code", "params", "metrics", "code", "data", "environment", "outputs"];
  const MAX_COMPARE_FILES = 200; // rows of outputs.files.<path>: two records may list 1,000 files each

  function renderCompare(a, b) {
    const fa = comparable(a), fb = comparable(b);
    const rank = (k) => {
      const i = COMPARE_ORDER.indexOf(k.split(".")[0]);
      return i < 0 ? COMPARE_ORDER.length : i;
    };
    const keys = [...new Set([...Object.keys(fa), ...Object.keys(fb)])].filter((k) => k !== "id")
      .sort((x, y) => rank(x) - rank(y) || (x < y ? -1 : x > y ? 1 : 0));
    const onlyDiff = el("input", { type: "checkbox", id: "only-diff" });
    const same = new Set(keys.filter((k) => exact(fa[k]) === exact(fb[k])));
    const differing = keys.length - same.size;
    // At most MAX_COMPARE_FILES per-file rows, those that differ first; the count above still covers them all.
    const fileKeys = keys.filter((k) => k.startsWith("outputs.files."));
    const keptFiles = new Set([...fileKeys.filter((k) => !same.has(k)), ...fileKeys.filter((k) => same.has(k))]
      .slice(0, MAX_COMPARE_FILES));
    const leftOut = fileKeys.filter((k) => !keptFiles.has(k));
    const rows = keys.filter((k) => !k.startsWith("outputs.files.") || keptFiles.has(k)).map((k) => {
      const va = exact(fa[k]), vb = exact(fb[k]);
      return el("tr", { class: same.has(k) ? "same" : "diff", "data-key": k },
        el("td", { class: "key" }, k), el("td", { class: "mono" }, va), el("td", { class: "mono" }, vb));
    });
    // What the per-file rows cannot show: files a record does not list, and rows left out here.
    const cut = [a, b].map((r) => [r, outputsListed(r)]).filter(([, l]) => l.cut);
    const notes = [
      ...cut.map(([r, l]) => `the record of ${r.id} lists the first ${count(l.listed)} of ${count(l.total)} output files`),
      leftOut.length ? `${count(leftOut.length)} of ${count(fileKeys.length)} outputs.files rows left out`
        + ` (${count(leftOut.filter((k) => !same.has(k)).length)} of them differ)` : null,
    ].filter(Boolean);
    const filesNote = notes.length ? el("p", { class: "warning", id: "compare-files-note" }, `${notes.join("; ")}; `,
      el("code", {}, `harness diff ${a.id} ${b.id}`), " compares every output file and names each one that differs") : null;
    const table = el("table", { class: "kv compare" },
      el("thead", {}, el("tr", {}, el("th", {}, "field"),
        el("th", {}, el("a", { href: `#/run/${encodeURIComponent(a.id)}` }, a.id), " ", a.name || "", " ", badges(a)),
        el("th", {}, el("a", { href: `#/run/${encodeURIComponent(b.id)}` }, b.id), " ", b.name || "", " ", badges(b)))),
      el("tbody", {}, rows));
    onlyDiff.addEventListener("change", () => table.classList.toggle("only-diff", onlyDiff.checked));
    $("#view-compare").replaceChildren(
      el("p", {}, el("a", { href: "#/" }, "← all runs")),
      el("h1", {}, "Compare ", el("span", { class: "mono" }, a.id), " and ", el("span", { class: "mono" }, b.id)),
      el("p", {}, el("span", { id: "diff-count" }, `${differing} of ${keys.length} fields differ`), " ",
        el("label", { class: "check" }, onlyDiff, " only differences")),
      filesNote,
      table,
    );
  }

  // -- routing -----------------------------------------------------------------------------------------------
  function show(view) {
    for (const name of ["table", "run", "compare", "plot"]) $(`#view-${name}`).hidden = name !== view;
  }

  async function route() {
    showError("");
    const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
    try {
      if (parts[0] === "run" && parts[1]) {
        show("run");
        $("#view-run").replaceChildren(el("p", { class: "muted" }, "loading…"));
        const record = await getJSON(`/api/runs/${encodeURIComponent(parts[1])}`);
        renderRun(record);
        Plots.renderRunExtras(record).catch((err) => showError(String(err.message || err)));
      } else if (parts[0] === "compare" && parts[2]) {
        show("compare");
        $("#view-compare").replaceChildren(el("p", { class: "muted" }, "loading…"));
        const [a, b] = await Promise.all(parts.slice(1, 3).map((id) => getJSON(`/api/runs/${encodeURIComponent(id)}`)));
        renderCompare(a, b);
      } else if (parts[0] === "plot" && parts[1]) {
        show("plot");
        $("#view-plot").dataset.state = "loading";
        $("#view-plot").replaceChildren(el("p", { class: "muted" }, "loading…"));
        await Plots.renderPlot(parts[1].split(",").filter(Boolean));
      } else {
        show("table");
      }
      window.scrollTo(0, 0);
    } catch (err) {
      showError(String(err.message || err));
    }
  }

  // -- wiring ------------------------------------------------------------------------------------------------
  function init() {
    $("#runs thead").addEventListener("click", (event) => {
      const th = event.target.closest("th[data-key]");
      if (!th) return;
      const key = th.dataset.key;
      // A first click sorts ascending (lowest error first), except time, which starts newest first.
      state.sort = state.sort.key === key ? { key, dir: -state.sort.dir } : { key, dir: key === "time" ? -1 : 1 };
      state.page = 0;
      render();
    });
    $("#runs thead").addEventListener("change", (event) => {
      if (event.target.id !== "pick-all") return;
      for (const r of state.shown) {
        if (event.target.checked) state.selected.add(r.id);
        else state.selected.delete(r.id);
      }
      render();
    });
    $("#prev").addEventListener("click", () => { state.page--; render(); });
    $("#next").addEventListener("click", () => { state.page++; render(); });
    $("#page-size").addEventListener("change", (event) => {
      state.pageSize = Number(event.target.value);
      state.page = 0;
      render();
    });
    $("#plot").addEventListener("click", () => {
      // in the table's order (then any selected run the filter hides), so the colours follow what the user sees
      const order = new Set([...state.shown.map((r) => r.id), ...state.runs.map((r) => r.id)]);
      const ids = [...order].filter((id) => state.selected.has(id)).map(encodeURIComponent);
      location.hash = `#/plot/${ids.join(",")}`;
    });
    $("#runs tbody").addEventListener("change", (event) => {
      const box = event.target.closest("input.pick");
      if (!box) return;
      const id = box.closest("tr").dataset.id;
      if (box.checked) state.selected.add(id);
      else state.selected.delete(id);
      updateCompareButton();
    });
    $("#compare").addEventListener("click", () => {
      const [a, b] = [...state.selected];
      location.hash = `#/compare/${encodeURIComponent(a)}/${encodeURIComponent(b)}`;
    });
    let timer = null;
    $("#where").addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => applyFilter().catch((err) => showError(String(err.message || err))), 150);
    });
    $("#where").addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        clearTimeout(timer);
        applyFilter().catch((err) => showError(String(err.message || err)));
      }
    });
    $("#varying").addEventListener("change", render);
    window.addEventListener("hashchange", route);
    runsLoaded = loadRuns().then(() => {
      document.body.dataset.ready = "true";
      performance.mark("harness:table-rendered");
      // the frame after the one that lays the rows out: when the first page of rows has been painted
      requestAnimationFrame(() => requestAnimationFrame(() => performance.mark("harness:table-painted")));
    }, (err) => showError(`could not load runs: ${err.message || err}`));
    route();
  }

  document.addEventListener("DOMContentLoaded", init);
})();
