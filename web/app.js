// The page: photos in, a card each, classified a few at a time; history and stats tabs.

import * as api from "./api.js";
import { History, STORAGE_OFF, keepLocally, saveThumbnail } from "./history.js";
import { listen, prepare } from "./photos.js";
import { Card } from "./results.js";
import { Stats } from "./stats.js";

const $ = (id) => document.getElementById(id);
const history = new History($("history-list"), $("history-status"), $("history-more"), $("history-note"));
const stats = new Stats($("stats-form"), $("stats-since"), $("stats-until"), $("stats-table").tBodies[0],
  { classes: $("stats-chart"), quality: $("stats-quality-chart"), latency: $("stats-latency-chart") },
  $("stats-status"), $("stats-quality-list"));
// A 12 MP photo is 48 MB decoded: ten given at once are decoded and sent two at a time, not all together.
const AT_ONCE = 2;
let logOn = true;
let info = null;

if (!history.keeps) {
  $("storage-note").textContent = STORAGE_OFF;
  $("storage-note").classList.remove("d-none");
}

/** The page's one live region: a short summary, where each card's own would have a screen reader read them all. */
const announce = (text) => { $("announcer").textContent = text; };

/** The model's description from /model_info, asked again after a failure (a server that was down comes back). */
function model() {
  info ||= api.whileUnavailable(api.modelInfo, (seconds) => {
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

// A 503's cause, told by the problem's title: while the page tries again, and once it has given up.
const UNAVAILABLE = {
  "Model not ready": { waiting: "The model is warming up", failed: "The model is not ready" },
  "At capacity": { waiting: "The server is busy (at capacity)", failed: "The server is busy (at capacity)" },
};
function unavailable(error) {
  const title = error.problem.title || "The server is unavailable";
  return UNAVAILABLE[title] || { waiting: title, failed: title };
}

function message(error) {
  if (error instanceof api.NetworkError) return "Network failure: the server could not be reached.";
  if (error instanceof api.ProblemError && error.status === 503) {
    return `${unavailable(error).failed}: ${error.message}.`; // after every retry
  }
  return error.message;
}

/** Runs each task given when fewer than `limit` are running, in the order given. */
function limited(limit) {
  let running = 0;
  const waiting = [];
  return async (task) => {
    if (running < limit) running++;
    else await new Promise((resolve) => waiting.push(resolve)); // its place is handed over, not taken
    try {
      return await task();
    } finally {
      const next = waiting.shift();
      if (next) next();
      else running--;
    }
  };
}
const inTurn = limited(AT_ONCE);

/** What the live region says of the photos given since it last fell quiet: how many, then how they went. */
const batch = { given: 0, done: 0, failed: 0, warned: false };

function given(count) {
  if (batch.done === batch.given) Object.assign(batch, { given: 0, done: 0, failed: 0, warned: false });
  batch.given += count;
  announce(`Classifying ${batch.given} ${batch.given === 1 ? "photo" : "photos"}…`);
}

function finished(summary, failed) {
  batch.done += 1;
  batch.failed += failed ? 1 : 0;
  if (batch.done < batch.given) return;
  const named = batch.done - batch.failed;
  announce(batch.given === 1 ? summary
    : `${batch.given} photos: ${named} classified${batch.failed ? `, ${batch.failed} not classified` : ""}.`);
}

function waiting(card, seconds, error) {
  card.sending(`${unavailable(error).waiting}: trying again in ${seconds} s…`);
  if (!batch.warned) announce(`${unavailable(error).waiting}: your photos are sent when it can take them.`);
  batch.warned = true;
}

/** `upload`: what `prepare` made of the file, when a retry sends it again. */
async function classify(card, file, upload = null) {
  let answer;
  try {
    answer = await inTurn(async () => {
      card.sending();
      if (!upload) {
        upload = await prepare(file); // one decode: the upload, the preview and the history's thumbnail
        card.preview(upload.blob);
      }
      return api.whileUnavailable(() => api.predict(upload.blob, upload.name), (s, e) => waiting(card, s, e));
    });
  } catch (error) {
    const retryable = error instanceof api.NetworkError || error.status >= 500;
    card.error(message(error), retryable ? () => retry(card, file, upload) : null);
    finished(`Not classified: ${message(error)}`, true);
    return;
  }
  // Kept before it is shown, so a reload right after the answer still finds it; a full or blocked storage
  // costs the history its copy, never the answer.
  if (history.keeps) {
    try {
      keepLocally(answer);
      await saveThumbnail(answer.prediction_id, upload.thumbnail);
    } catch { /* the server's log still has it */ }
  }
  card.result(answer);
  finished(`${answer.class}, ${(answer.confidence * 100).toFixed(1)}% confident.`, false);
  const described = await model();
  if (logOn && described) {
    card.feedback(described.classes, answer.class,
      (correct, trueClass) => api.giveFeedback(answer.prediction_id, correct, trueClass));
  }
}

function retry(card, file, upload) {
  given(1);
  card.queued();
  classify(card, file, upload);
}

function add(files) {
  $("empty-results").classList.add("d-none");
  given(files.length);
  for (const file of files) {
    const card = new Card($("card-template"), file, announce);
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
