// A card per photo: its states (sending, warming up, result, error) and the result's bars, chart and feedback.

const percent = (p) => `${(p * 100).toFixed(1)}%`;

/** Shows a photo from a Blob; its object URL is let go once the image has it (a 12 MP file is megabytes). */
export function showBlob(img, blob) {
  const url = URL.createObjectURL(blob);
  const release = () => URL.revokeObjectURL(url);
  img.addEventListener("load", release, { once: true });
  img.addEventListener("error", release, { once: true });
  img.src = url;
}

export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Bootstrap progress bars with their values for assistive technology, highest first. */
export function bars(container, ranked) {
  container.replaceChildren();
  for (const [name, p] of Object.entries(ranked).sort((a, b) => b[1] - a[1])) {
    const row = el("div", "d-flex align-items-center gap-2 mb-1");
    const label = el("span", "small text-truncate flex-shrink-0 w-25", name);
    const progress = el("div", "progress flex-grow-1");
    progress.setAttribute("role", "progressbar");
    progress.setAttribute("aria-label", name);
    progress.setAttribute("aria-valuemin", "0");
    progress.setAttribute("aria-valuemax", "100");
    progress.setAttribute("aria-valuenow", (p * 100).toFixed(1));
    progress.setAttribute("aria-valuetext", `${name}: ${percent(p)}`);
    const fill = el("div", "progress-bar");
    fill.style.width = `${(p * 100).toFixed(1)}%`; // CSSOM, which the page's CSP allows
    progress.append(fill);
    row.append(label, progress, el("span", "small text-end flex-shrink-0 w-auto", percent(p)));
    container.append(row);
  }
}

const themeColor = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

const colours = () => ({ text: themeColor("--bs-body-color"), grid: themeColor("--bs-border-color"),
  bar: themeColor("--bs-primary") });

/** A chart whose options are made from Bootstrap's colours (`options(colours)`), and made again when the colour
 * mode changes (theme.js follows the system's light or dark setting). Setting Chart.js's global defaults would
 * not do: a chart keeps the colours it resolved from them when it was made. */
export function themedChart(canvas, type, data, options) {
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

/** A horizontal bar chart of the probabilities, made once and updated after. */
export function probabilityChart(canvas, ranked, existing) {
  const labels = Object.keys(ranked);
  const data = labels.map((name) => +(ranked[name] * 100).toFixed(2));
  canvas.setAttribute("aria-label", `Probabilities: ${labels.map((n, i) => `${n} ${data[i]}%`).join(", ")}`);
  if (existing) {
    existing.data.labels = labels;
    existing.data.datasets[0].data = data;
    existing.update();
    return existing;
  }
  return themedChart(canvas, "bar", { labels, datasets: [{ label: "Probability (%)", data }] }, (c) => ({
    indexAxis: "y", maintainAspectRatio: false, animation: false, elements: { bar: { backgroundColor: c.bar } },
    plugins: { legend: { display: false } },
    scales: { x: { min: 0, max: 100, ticks: { color: c.text }, grid: { color: c.grid } },
      y: { ticks: { color: c.text }, grid: { display: false } } },
  }));
}

export class Card {
  constructor(template, file) {
    this.root = template.content.firstElementChild.cloneNode(true);
    this.q = (selector) => this.root.querySelector(selector);
    showBlob(this.q(".preview"), file);
    this.q(".preview").alt = `Your photo ${file.name}`;
    this.q(".file-name").textContent = file.name;
    this.chart = null;
  }

  sending(text = "Sending…") {
    this.q(".species").textContent = "Classifying…";
    this.q(".state").replaceChildren(el("span", "spinner-border spinner-border-sm me-2"), el("span", "", text));
    this.q(".state").firstChild.setAttribute("aria-hidden", "true");
  }

  warming(seconds) {
    this.sending(`The model is warming up: trying again in ${seconds} s…`);
  }

  error(message, retry) {
    this.q(".species").textContent = "Not classified";
    const alert = el("div", "alert alert-danger py-2 mb-0", message);
    if (retry) {
      const button = el("button", "btn btn-sm btn-outline-danger ms-2", "Retry");
      button.type = "button";
      button.addEventListener("click", retry);
      alert.append(button);
    }
    this.q(".state").replaceChildren(alert);
  }

  result(answer) {
    this.root.dataset.predictionId = answer.prediction_id;
    this.q(".species").textContent = answer.class;
    this.q(".state").replaceChildren(el("span", "fs-5", `${answer.class}, ${percent(answer.confidence)} confident`));
    this.q(".details").classList.remove("d-none");
    bars(this.q(".bars"), answer.all_predictions);
    this.chart = probabilityChart(this.q("canvas"), answer.all_predictions, this.chart);
    const revision = answer.revision ? `, revision ${answer.revision}` : "";
    this.q(".meta").textContent =
      `${(answer.prediction_time * 1000).toFixed(0)} ms · model version ${answer.model_version}${revision}`;
  }

  /** "Right / wrong, it is a …": `send(correct, trueClass)` stores it; the latest word counts. */
  feedback(classes, predicted, send) {
    const form = this.q(".feedback");
    const select = this.q(".true-class");
    select.replaceChildren(...classes.map((name) => Object.assign(el("option", "", name), { value: name })));
    select.value = classes.find((name) => name !== predicted) || predicted;
    form.classList.remove("d-none");
    const state = this.q(".feedback-state");
    // One word at a time, in the order given: the server keeps the last to arrive, which is then the last said.
    let queue = Promise.resolve();
    let said = 0;
    const say = (correct, trueClass) => {
      const turn = ++said;
      state.textContent = "Saving…";
      queue = queue.then(() => send(correct, trueClass)).then(() => {
        if (turn === said) {
          state.textContent = correct ? "Thanks: marked right." : `Thanks: marked wrong, it is a ${trueClass}.`;
        }
      }, (error) => {
        if (turn === said) state.textContent = `Not saved: ${error.message}`;
      });
    };
    this.q(".right").addEventListener("click", () => say(true, predicted));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      say(false, select.value);
    });
  }
}
