// The stats tab: per model version and revision, from GET /stats, as a table and three Chart.js charts.

import * as api from "./api.js";
import { el } from "./results.js";

const PALETTE = ["#0d6efd", "#fd7e14", "#198754", "#d63384", "#6f42c1", "#20c997", "#ffc107", "#dc3545", "#6c757d"];

const toInput = (date) => new Date(date.getTime() - date.getTimezoneOffset() * 60000).toISOString().slice(0, 16);

export class Stats {
  /** `canvases`: { classes, quality, latency }, each with a data-title. */
  constructor(form, since, until, table, canvases, status, quality) {
    Object.assign(this, { form, since, until, table, canvases, status, quality, charts: {} });
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
    this.quality.replaceChildren(...(answer.shadow || []).map(shadowItem), ...(answer.revisions || []).map(revisionItem),
      ...(answer.drift || []).map(driftItem));
    if (!this.quality.children.length) {
      this.quality.append(el("li", "text-body-secondary", "No shadow model in this period, and no drift to measure."));
    }
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

const pct = (x) => `${(x * 100).toFixed(1)}%`;
const interval = (a) => (a ? `${pct(a.value)} (95%: ${pct(a.low)}–${pct(a.high)})` : "no feedback yet");

/** What a comparison concludes, in words; set apart when the sample is too small to conclude. */
const verdict = (c) => el("div", `verdict ${c.conclusive ? "fw-semibold" : "text-warning-emphasis"}`,
  `${c.summary[0].toUpperCase()}${c.summary.slice(1)}.`);

/** The served version against its shadow: agreement, accuracies, and in words whether the sample concludes. */
function shadowItem(s) {
  const item = el("li", "shadow-comparison card card-body mb-2");
  item.append(
    el("strong", "", `Version ${s.served_version} (served) against version ${s.shadow_version} (shadow)`),
    el("div", "", `${s.predictions} images seen by both; they agree on ${s.agreement === null ? "–" : pct(s.agreement)}.`),
    el("div", "", `Accuracy on ${s.labelled} labelled: served ${interval(s.served_accuracy)}, shadow ${interval(s.shadow_accuracy)}.`),
    verdict(s),
  );
  if (s.disagreements.length) {
    item.append(el("div", "text-body-secondary", `Most frequent disagreements: ${s.disagreements
      .map((d) => `${d.served_class} → ${d.shadow_class} (${d.count})`).join(", ")}.`));
  }
  return item;
}

/** Two revisions of an A/B split, each on its own images. */
function revisionItem(r) {
  const item = el("li", "revision-comparison card card-body mb-2");
  item.append(
    el("strong", "", `Revision ${r.stable_revision} (v${r.stable_version}) against ${r.candidate_revision} (v${r.candidate_version})`),
    el("div", "", `Accuracy: ${interval(r.stable_accuracy)} on ${r.stable_predictions} predictions against ${interval(r.candidate_accuracy)} on ${r.candidate_predictions}.`),
    verdict(r),
  );
  return item;
}

/** A version's drift, flagged when its predictions have moved since its reference window. */
function driftItem(d) {
  const who = `Version ${d.model_version}${d.revision ? ` (${d.revision})` : ""}`;
  if (d.level === null) return el("li", "drift text-body-secondary", `${who}: no drift measure yet, ${d.note}.`);
  const badge = { stable: "text-bg-success", watch: "text-bg-warning", act: "text-bg-danger" }[d.level];
  const item = el("li", "drift mb-1");
  item.append(el("span", `badge ${badge} me-2`, `drift: ${d.level}`), `${who}: class mix PSI ${d.class_mix_psi.toFixed(3)}, `
    + `confidence PSI ${d.confidence_psi.toFixed(3)} (0.1 watch, 0.25 act), ${d.recent_predictions} recent predictions `
    + `against ${d.reference_predictions} in the reference window.`);
  return item;
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
