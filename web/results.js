// A card per photo: its states (waiting, sending, warming up, result, error), the result's meters and feedback.
// A card is no live region: the page's one (app.js) says what changed, so a screen reader is not read every card.

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

let meters = 0; // ids for the labels' `for`

/** A <meter> per class with its name and percentage, highest first. */
export function probabilities(container, ranked) {
  container.replaceChildren();
  for (const [name, p] of Object.entries(ranked).sort((a, b) => b[1] - a[1])) {
    const row = el("div", "d-flex align-items-center gap-2 mb-1");
    const label = el("label", "small text-truncate flex-shrink-0 w-25", name);
    const meter = el("meter", "probability flex-grow-1", percent(p));
    meter.id = label.htmlFor = `probability-${++meters}`;
    Object.assign(meter, { min: 0, max: 1, value: p });
    meter.setAttribute("aria-valuetext", percent(p)); // said as shown, not as 0.971 of 1
    const shown = el("span", "small text-end flex-shrink-0 share", percent(p));
    shown.setAttribute("aria-hidden", "true"); // the meter says it
    row.append(label, meter, shown);
    container.append(row);
  }
}

export class Card {
  /** `announce(text)`: the page's live region, for what a person did on this card. */
  constructor(template, file, announce) {
    this.root = template.content.firstElementChild.cloneNode(true);
    this.q = (selector) => this.root.querySelector(selector);
    this.q(".file-name").textContent = file.name;
    this.announce = announce;
    this.queued();
  }

  queued() {
    this.sending("Waiting: photos are sent a few at a time…");
  }

  /** The photo as sent (a 12 MP file would be decoded again at full size to be shown). */
  preview(blob) {
    const img = this.q(".preview");
    showBlob(img, blob);
    img.alt = `Your photo ${this.q(".file-name").textContent}`;
  }

  sending(text = "Sending…") {
    this.q(".species").textContent = "Classifying…";
    this.q(".state").replaceChildren(el("span", "spinner-border spinner-border-sm me-2"), el("span", "", text));
    this.q(".state").firstChild.setAttribute("aria-hidden", "true");
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
    probabilities(this.q(".probabilities"), answer.all_predictions);
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
    const tell = (text) => {
      state.textContent = text;
      this.announce(text);
    };
    // One word at a time, in the order given: the server keeps the last to arrive, which is then the last said.
    let queue = Promise.resolve();
    let said = 0;
    const say = (correct, trueClass) => {
      const turn = ++said;
      state.textContent = "Saving…";
      queue = queue.then(() => send(correct, trueClass)).then(() => {
        if (turn === said) {
          tell(correct ? "Thanks: marked right." : `Thanks: marked wrong, it is a ${trueClass}.`);
        }
      }, (error) => {
        if (turn === said) tell(`Not saved: ${error.message}`);
      });
    };
    this.q(".right").addEventListener("click", () => say(true, predicted));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      say(false, select.value);
    });
  }
}
