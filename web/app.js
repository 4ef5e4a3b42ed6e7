// The page: photos in, a card each, classified at once; history and stats tabs.

import * as api from "./api.js";
import { History, keepLocally, saveThumbnail } from "./history.js";
import { listen, prepare, thumbnail } from "./photos.js";
import { Card } from "./results.js";
import { Stats } from "./stats.js";

const $ = (id) => document.getElementById(id);
const history = new History($("history-list"), $("history-status"), $("history-more"), $("history-note"));
const stats = new Stats($("stats-form"), $("stats-since"), $("stats-until"), $("stats-table").tBodies[0],
  { classes: $("stats-chart"), quality: $("stats-quality-chart"), latency: $("stats-latency-chart") },
  $("stats-status"));
let logOn = true;
let info = null;

/** The model's description from /model_info, asked again after a failure (a server that was down comes back). */
function model() {
  info ||= api.whileWarming(api.modelInfo, (seconds) => {
    $("model-line").textContent = `Model: warming up, asking again in ${seconds} s…`;
  }, 40).then((described) => {
    logOn = described.prediction_log;
    history.setLog(logOn);
    $("stats-tab-item").classList.toggle("d-none", !logOn);
    $("model-line").textContent = `Model: ${described.name} version ${described.version}`
      + (described.revision ? `, revision ${described.revision}` : "");
    return described;
  }).catch((error) => {
    $("model-line").textContent = `Model: unknown (${error.message})`;
    info = null;
    return null;
  });
  return info;
}
model();

function message(error) {
  if (error instanceof api.NetworkError) return "Network failure: the server could not be reached.";
  if (error instanceof api.ProblemError && error.status === 503) {
    return `The model is not ready: ${error.message}.`; // still loading after every retry, or failed to load
  }
  return error.message;
}

async function classify(card, file) {
  card.sending();
  let answer;
  const small = thumbnail(file); // made while the photo is on its way
  try {
    const upload = await prepare(file);
    answer = await api.whileWarming(() => api.predict(upload.blob, upload.name), (s) => card.warming(s));
  } catch (error) {
    const retryable = error instanceof api.NetworkError || error.status >= 500;
    card.error(message(error), retryable ? () => classify(card, file) : null);
    return;
  }
  // Kept before it is shown, so a reload right after the answer still finds it; a full or blocked storage
  // costs the history its copy, never the answer.
  try {
    keepLocally(answer);
    await saveThumbnail(answer.prediction_id, await small);
  } catch { /* the server's log still has it */ }
  card.result(answer);
  const described = await model();
  if (logOn && described) {
    card.feedback(described.classes, answer.class,
      (correct, trueClass) => api.giveFeedback(answer.prediction_id, correct, trueClass));
  }
}

function add(files) {
  $("empty-results").classList.add("d-none");
  for (const file of files) {
    const card = new Card($("card-template"), file);
    $("results").prepend(card.root);
    classify(card, file);
  }
}

listen($("drop-zone"), [$("file-input"), $("camera-input")], add);
$("tab-history").addEventListener("shown.bs.tab", async () => {
  await model(); // whether the log is on decides where the history comes from
  history.load();
});
$("tab-stats").addEventListener("shown.bs.tab", () => stats.load());
