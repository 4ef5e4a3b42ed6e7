// The stats tab: per model version and revision, from GET /stats, as a table and three Chart.js charts.

import * as api from "./api.js";
import { el } from "./results.js";

const PALETTE = ["#0d6efd", "#fd7e14", "#198754", "#d63384", "#6f42c1", "#20c997", "#ffc107", "#dc3545", "#6c757d"];

const toInput = (date) => new Date(date.getTime() - date.getTimezoneOffset() * 60000).toISOString().slice(0, 16);

export class Stats {
  /** `canvases`: { classes, quality, latency }, each with a data-title. */
  constructor(form, since, until, table, canvases, status) {
    Object.assign(this, { form, since, until, table, canvases, status, charts: {} });
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
    const percent = (x) => (x === null ? null : +(x * 100).toFixed(1));
    this.charts.classes = drawn(this.charts.classes, this.canvases.classes, labels, classes.map((name) => ({
      label: name, data: versions.map((v) => v.class_counts[name] || 0) })), true);
    this.charts.quality = drawn(this.charts.quality, this.canvases.quality, labels, [
      { label: "Accuracy on feedback (%)", data: versions.map((v) => percent(v.accuracy)) },
      { label: "Mean confidence (%)", data: versions.map((v) => percent(v.mean_confidence)) }]);
    this.charts.latency = drawn(this.charts.latency, this.canvases.latency, labels, [
      { label: "Latency p50 (ms)", data: versions.map((v) => v.latency_p50_ms) },
      { label: "Latency p95 (ms)", data: versions.map((v) => v.latency_p95_ms) }]);
    const describe = (chart) => chart.data.datasets.map((d) => `${d.label}: ${labels.map((l, i) =>
      `${l} ${d.data[i] ?? "none"}`).join(", ")}`).join("; ");
    for (const [name, chart] of Object.entries(this.charts)) {
      this.canvases[name].setAttribute("aria-label", `${this.canvases[name].dataset.title}. ${describe(chart)}`);
    }
  }
}

const themeColor = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

const colours = () => ({ text: themeColor("--bs-body-color"), grid: themeColor("--bs-border-color") });

/** A chart whose options are made from Bootstrap's colours (`options(colours)`), and made again when the colour
 * mode changes (theme.js follows the system's light or dark setting). Setting Chart.js's global defaults would
 * not do: a chart keeps the colours it resolved from them when it was made. */
function themedChart(canvas, type, data, options) {
  const chart = new window.Chart(canvas, { type, data, options: options(colours()) });
  chart.$themedOptions = options;
  return chart;
}

new MutationObserver(() => {
  const now = colours();
  for (const chart of Object.values(window.Chart.instances)) {
    if (chart.$themedOptions) {
      chart.options = chart.$themedOptions(now);
      chart.update();
    }
  }
}).observe(document.documentElement, { attributes: true, attributeFilter: ["data-bs-theme"] });

/** A bar chart over the versions, made once and updated after; `stacked` for counts that add up. */
function drawn(chart, canvas, labels, datasets, stacked = false) {
  datasets.forEach((d, i) => { d.backgroundColor = PALETTE[i % PALETTE.length]; });
  if (chart) {
    chart.data.labels = labels;
    chart.data.datasets = datasets;
    chart.update();
    return chart;
  }
  return themedChart(canvas, "bar", { labels, datasets }, (c) => ({
    maintainAspectRatio: false, animation: false,
    plugins: { legend: { labels: { color: c.text } }, title: { display: true, text: canvas.dataset.title, color: c.text } },
    scales: { x: { stacked, ticks: { color: c.text }, grid: { color: c.grid } },
      y: { stacked, beginAtZero: true, ticks: { color: c.text }, grid: { color: c.grid } } },
  }));
}
