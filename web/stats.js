// The stats tab: per model version and revision, from GET /stats, as a table and a Chart.js chart.

import * as api from "./api.js";
import { el } from "./results.js";

const PALETTE = ["#0d6efd", "#fd7e14", "#198754", "#d63384", "#6f42c1", "#20c997", "#ffc107", "#dc3545", "#6c757d"];

const toInput = (date) => new Date(date.getTime() - date.getTimezoneOffset() * 60000).toISOString().slice(0, 16);

export class Stats {
  constructor(form, since, until, table, canvas, status) {
    Object.assign(this, { form, since, until, table, canvas, status, chart: null });
    const now = new Date();
    since.value = toInput(new Date(now.getTime() - 7 * 86400000));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.load();
    });
  }

  async load() {
    this.status.textContent = "Loading…";
    let answer;
    try {
      const iso = (input) => (input.value ? new Date(input.value).toISOString() : null);
      answer = await api.stats(iso(this.since), iso(this.until));
    } catch (error) {
      this.status.textContent = `The figures could not be loaded: ${error.message}`;
      return;
    }
    const versions = answer.versions;
    this.status.textContent = versions.length ? `${versions.reduce((n, v) => n + v.predictions, 0)} predictions`
      : "No predictions in this period.";
    this.table.replaceChildren(...versions.map((v) => {
      const row = el("tr");
      const cells = [v.model_version, v.revision ?? "–", v.predictions, `${(v.mean_confidence * 100).toFixed(1)}%`,
        `${v.latency_p50_ms.toFixed(1)} / ${v.latency_p95_ms.toFixed(1)} ms`,
        `${v.feedback_count} (${v.feedback_correct} right)`,
        v.accuracy === null ? "–" : `${(v.accuracy * 100).toFixed(1)}%`];
      row.append(...cells.map((text) => el("td", "", String(text))));
      return row;
    }));
    this.draw(versions);
  }

  draw(versions) {
    const labels = versions.map((v) => `v${v.model_version}${v.revision ? ` (${v.revision})` : ""}`);
    const classes = [...new Set(versions.flatMap((v) => Object.keys(v.class_counts)))].sort();
    const datasets = classes.map((name, i) => ({
      label: name, data: versions.map((v) => v.class_counts[name] || 0),
      backgroundColor: PALETTE[i % PALETTE.length],
    }));
    this.canvas.setAttribute("aria-label", `Class counts per model version: ${versions.map((v, i) =>
      `${labels[i]}: ${Object.entries(v.class_counts).map(([c, n]) => `${c} ${n}`).join(", ")}`).join("; ")}`);
    if (this.chart) {
      this.chart.data.labels = labels;
      this.chart.data.datasets = datasets;
      this.chart.update();
      return;
    }
    const text = getComputedStyle(document.documentElement).getPropertyValue("--bs-body-color").trim();
    this.chart = new window.Chart(this.canvas, {
      type: "bar",
      data: { labels, datasets },
      options: { maintainAspectRatio: false, animation: false,
        plugins: { legend: { labels: { color: text } } },
        scales: { x: { stacked: true, ticks: { color: text } }, y: { stacked: true, ticks: { color: text } } } },
    });
  }
}
