// The page: photos in, a card each, classified at once; history and stats tabs.

import * as api from "./api.js";
import { History, keepLocally, saveThumbnail } from "./history.js";
import { listen, prepare, thumbnail } from "./photos.js";
import { Card } from "./results.js";
import { Stats } from "./stats.js";

const $ = (id) => document.getElementById(id);
const history = new History($("history-list"), $("history-status"), $("history-more"), $("history-note"));
const stats = new Stats($("stats-form"), $("stats-since"), $("stats-until"), $("stats-table").tBodies[0],
  $("stats-chart"), $("stats-status"));
let logOn = true;

const info = api.whileWarming(api.modelInfo, (seconds) => {
  $("model-line").textContent = `Model: warming up, asking again in ${seconds} s…`;
}, 40).then((model) => {
  logOn = model.prediction_log;
  history.setLog(logOn);
  $("stats-tab-item").classList.toggle("d-none", !logOn);
  $("model-line").textContent = `Model: ${model.name} version ${model.version}`
    + (model.revision ? `, revision ${model.revision}` : "");
  return model;
}).catch((error) => {
  $("model-line").textContent = `Model: unknown (${error.message})`;
  return null;
});

function message(error) {
  if (error instanceof api.NetworkError) return "Network failure: the server could not be reached.";
  if (error instanceof api.ProblemError && error.status === 503) {
    return `The model is still warming up (${error.message}).`;
  }
  return error.message;
}

async function classify(card, file) {
  card.sending();
  try {
    const upload = await prepare(file);
    const answer = await api.whileWarming(() => api.predict(upload.blob, upload.name), (s) => card.warming(s));
    card.result(answer);
    saveThumbnail(answer.prediction_id, await thumbnail(file)).catch(() => {});
    const model = await info;
    keepLocally(answer);
    if (logOn && model) {
      card.feedback(model.classes, answer.class,
        (correct, trueClass) => api.giveFeedback(answer.prediction_id, correct, trueClass));
    }
  } catch (error) {
    const retryable = error instanceof api.NetworkError || error.status === 503 || error.status >= 500;
    card.error(message(error), retryable ? () => classify(card, file) : null);
  }
}

function add(files) {
  $("empty-results").classList.add("d-none");
  for (const file of files) {
    const card = new Card($("card-template"), file, URL.createObjectURL(file));
    $("results").prepend(card.root);
    classify(card, file);
  }
}

listen($("drop-zone"), [$("file-input"), $("camera-input")], add);
$("tab-history").addEventListener("shown.bs.tab", () => history.load());
$("tab-stats").addEventListener("shown.bs.tab", () => stats.load());
