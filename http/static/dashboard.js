// The dashboard: polls /status, renders figures, jobs, two small SVG charts and the latest errors.
// No build step and no external library: everything is served by the service itself.
(function () {
  "use strict";

  const body = document.body;
  const REFRESH_MS = Number(body.dataset.refreshMs) || 2000;
  const KEY_REQUIRED = body.dataset.apiKeyRequired === "true";
  const HISTORY = 150; // samples kept for the lag chart: 5 minutes at one sample every 2 s
  const history = [];

  const byRole = (s, role) => (s.queues.streams.find((x) => x.role === role) || { group: {} }).group;
  const FIGURES = {
    "listings.indexed": (s) => s.listings.indexed,
    "listings.total": (s) => s.listings.total,
    "listings.pending": (s) => s.listings.pending,
    "listings.coverage_pct": (s) => Math.round(s.listings.coverage * 1000) / 10,
    "listings.freshness_seconds": (s) => Math.round(s.listings.freshness_seconds),
    "throughput.listings_per_minute": (s) => s.throughput.listings_per_minute,
    "queues.legacy_list_length": (s) => s.queues.legacy_list_length,
    "queues.dead_letter_length": (s) => s.queues.dead_letter_length,
    "jobs.lag": (s) => byRole(s, "jobs").lag,
    "jobs.pending": (s) => byRole(s, "jobs").pending,
    "jobs.consumers_alive": (s) => byRole(s, "jobs").consumers_alive,
    "batches.lag": (s) => byRole(s, "batches").lag,
    "batches.pending": (s) => byRole(s, "batches").pending,
    "batches.consumers_alive": (s) => byRole(s, "batches").consumers_alive,
    "batches.oldest_pending_age_seconds": (s) => Math.round(byRole(s, "batches").oldest_pending_age_seconds),
    "embedding.used_pct": (s) => (s.embedding_budget ? Math.round(s.embedding_budget.used_last_minute * 1000) / 10 : "–"),
    "embedding.tokens_last_minute": (s) => (s.embedding_budget ? s.embedding_budget.tokens_last_minute : "–"),
    "embedding.tokens_per_minute_limit": (s) => (s.embedding_budget ? s.embedding_budget.tokens_per_minute_limit : "–"),
    "embedding.pace_pct": (s) => (s.embedding_budget ? Math.round(s.embedding_budget.pace * 100) : "–"),
    "reindex.done": (s) => (s.reindex ? s.reindex.done : "–"),
    "reindex.total": (s) => (s.reindex ? s.reindex.total : "–"),
    "reindex.generation": (s) => (s.reindex ? s.reindex.generation : "–"),
    "reindex.serving": (s) => (s.reindex && s.reindex.serving ? s.reindex.serving : "–"),
    "reindex.rate": (s) => (s.reindex ? s.reindex.listings_per_second : "–"),
    "reindex.eta": (s) => (s.reindex && s.reindex.eta_seconds !== null ? duration(s.reindex.eta_seconds) : "–"),
    "failures_open": (s) => s.failures_open,
    "failures_last_hour": (s) => s.failures_last_hour,
  };

  const fmt = (v) => (typeof v === "number" ? v.toLocaleString("en-US") : String(v));
  // Durations read as "3 d 4 h", "12 m 5 s", "40 s": the raw seconds stay in data-value.
  const duration = (sec) => {
    const units = [["d", 86400], ["h", 3600], ["m", 60], ["s", 1]];
    const parts = [];
    let rest = Math.max(0, Math.round(sec));
    for (const [name, size] of units) {
      const n = Math.floor(rest / size);
      if (n || (name === "s" && !parts.length)) parts.push(`${n.toLocaleString("en-US")} ${name}`);
      rest -= n * size;
      if (parts.length === 2) break;
    }
    return parts.join(" ");
  };
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };

  function renderFigures(s) {
    document.querySelectorAll("[data-figure]").forEach((node) => {
      const get = FIGURES[node.dataset.figure];
      if (!get) return;
      const value = get(s);
      node.dataset.value = String(value);
      node.textContent = node.dataset.figure.endsWith("_seconds") ? duration(value) : fmt(value);
    });
    document.getElementById("coverage-bar").style.width = (s.listings.coverage * 100).toFixed(1) + "%";
    const reindex = document.getElementById("reindex-card");
    reindex.hidden = !s.reindex;
    if (s.reindex) {
      const share = s.reindex.total ? s.reindex.done / s.reindex.total : 0;
      document.getElementById("reindex-bar").style.width = (share * 100).toFixed(1) + "%";
    }
    document.querySelector(".alert-able").classList.toggle("alarm", s.failures_open > 0);
  }

  function renderJobs(jobs) {
    const box = document.getElementById("jobs");
    box.replaceChildren();
    if (!jobs.length) {
      box.append(el("p", "muted", "no jobs in the last minutes"));
      return;
    }
    for (const j of jobs) {
      const p = j.progress;
      const row = el("div", "job");
      row.dataset.jobId = j.job_id;
      const left = el("div");
      left.append(el("span", "badge " + j.status, j.status), el("span", "id", j.job_id));
      const bar = el("div", "bar");
      const fill = el("div");
      fill.style.width = p.percent + "%";
      bar.append(fill);
      const c = j.cost;
      const right = el("div", "muted",
        `${p.percent}% · ${fmt(p.done)} indexed · ${fmt(p.skipped)} skipped · ${fmt(p.failed)} failed / ${fmt(p.total)}`);
      const spent = el("span", "cost", ` · ${fmt(c.tokens)} tokens · $${c.usd.toFixed(c.usd < 1 ? 4 : 2)}`);
      spent.title = `${fmt(c.requests)} embedding requests` + (c.model ? ` · ${c.model}` : "");
      right.append(spent);
      row.append(left, bar, right);
      box.append(row);
    }
  }

  function polyline(svg, values, max, color, w, h) {
    if (values.length < 2) return;
    const step = w / (values.length - 1); // the samples so far span the whole width
    const pts = values.map((v, i) => `${(i * step).toFixed(1)},${(h - 8 - (v / max) * (h - 24)).toFixed(1)}`);
    const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    line.setAttribute("points", pts.join(" "));
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", color);
    line.setAttribute("stroke-width", "2");
    svg.append(line);
  }

  function label(svg, text, y) {
    const t = document.createElementNS("http://www.w3.org/2000/svg", "text");
    t.setAttribute("x", "6");
    t.setAttribute("y", String(y));
    t.setAttribute("fill", "#8b98a5");
    t.setAttribute("font-size", "11");
    t.textContent = text;
    svg.append(t);
  }

  function renderLagChart() {
    const svg = document.getElementById("lag-chart");
    svg.replaceChildren();
    const series = ["batches", "jobs", "legacy", "pending"];
    const colors = ["#4fb3ff", "#f5a524", "#a78bfa", "#34d399"];
    const max = Math.max(1, ...history.flatMap((h) => series.map((k) => h[k])));
    label(svg, "max " + fmt(max), 14);
    series.forEach((k, i) => polyline(svg, history.map((h) => h[k]), max, colors[i], 600, 180));
  }

  function renderRateChart(minutes) {
    const svg = document.getElementById("rate-chart");
    svg.replaceChildren();
    const max = Math.max(1, ...minutes.map((m) => m.listings + m.failed));
    const w = 600 / minutes.length;
    minutes.forEach((m, i) => {
      const total = ((m.listings + m.failed) / max) * 150;
      const failed = (m.failed / max) * 150;
      for (const [height, color, y] of [[total, "#4fb3ff", 172 - total], [failed, "#f87171", 172 - failed]]) {
        const r = document.createElementNS("http://www.w3.org/2000/svg", "rect");
        r.setAttribute("x", (i * w + 3).toFixed(1));
        r.setAttribute("y", y.toFixed(1));
        r.setAttribute("width", (w - 6).toFixed(1));
        r.setAttribute("height", Math.max(0, height).toFixed(1));
        r.setAttribute("fill", color);
        svg.append(r);
      }
    });
    label(svg, "max " + fmt(max) + "/min", 14);
  }

  function renderErrors(errors) {
    const tbody = document.getElementById("errors");
    tbody.replaceChildren();
    if (!errors.length) {
      const tr = el("tr");
      const td = el("td", "muted", "no failures");
      td.colSpan = 6;
      tr.append(td);
      tbody.append(tr);
      return;
    }
    for (const e of errors) {
      const tr = el("tr");
      const time = new Date(e.created_at).toLocaleTimeString();
      tr.append(el("td", "", String(e.id)), el("td", "", time), el("td", "", e.operation_type),
        listingCell(e.product_id), el("td", "", e.reason), el("td", "msg", e.error_message));
      tbody.append(tr);
    }
  }

  // A listing id links to GET /listings/{id}: both sides of the listing, its verdict, failures, jobs.
  function listingCell(productId) {
    const td = el("td");
    if (productId === null) {
      td.textContent = "–";
      return td;
    }
    const a = document.createElement("a");
    a.href = "/listings/" + encodeURIComponent(String(productId));
    a.className = "listing";
    a.textContent = String(productId);
    td.append(a);
    return td;
  }

  async function refresh() {
    const dot = document.getElementById("conn");
    try {
      const res = await fetch("/status", { cache: "no-store" });
      if (!res.ok) throw new Error("HTTP " + res.status);
      const s = await res.json();
      history.push({
        batches: byRole(s, "batches").lag || 0,
        jobs: byRole(s, "jobs").lag || 0,
        legacy: s.queues.legacy_list_length,
        pending: byRole(s, "batches").pending || 0,
      });
      if (history.length > HISTORY) history.shift();
      renderFigures(s);
      renderJobs(s.jobs);
      renderLagChart();
      renderRateChart(s.throughput.per_minute);
      renderErrors(s.recent_errors);
      dot.className = "dot ok";
      document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
      body.dataset.rendered = s.generated_at;
    } catch (err) {
      dot.className = "dot err";
      document.getElementById("updated").textContent = "status unavailable: " + err.message;
    }
  }

  async function retry() {
    const out = document.getElementById("retry-result");
    const headers = { "Content-Type": "application/json" };
    if (KEY_REQUIRED) {
      let key = sessionStorage.getItem("finally-indexer-api-key");
      if (!key) {
        key = window.prompt("API key (X-API-Key)");
        if (!key) return;
        sessionStorage.setItem("finally-indexer-api-key", key);
      }
      headers["X-API-Key"] = key;
    }
    const button = document.getElementById("retry");
    button.disabled = true;
    try {
      const res = await fetch("/retry", { method: "POST", headers, body: JSON.stringify({ all: true }) });
      const answer = await res.json();
      if (res.status === 401) sessionStorage.removeItem("finally-indexer-api-key");
      out.textContent = res.ok ? `requeued ${answer.requeued} · jobs ${answer.job_ids.length}` : answer.detail;
    } catch (err) {
      out.textContent = "retry failed: " + err.message;
    } finally {
      button.disabled = false;
      refresh();
    }
  }

  document.getElementById("retry").addEventListener("click", retry);
  refresh();
  setInterval(refresh, REFRESH_MS);
})();
