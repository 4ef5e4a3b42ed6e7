// This browser's history: predictions and feedback from the server (or, with the log off, from localStorage),
// thumbnails from IndexedDB keyed by prediction id.

import * as api from "./api.js";
import { el, showBlob } from "./results.js";

const LOCAL_KEY = "fish.history";
const LOCAL_MAX = 100;
let database;

function store(mode) {
  database ||= new Promise((resolve, reject) => {
    const request = indexedDB.open("fish", 1);
    request.onupgradeneeded = () => request.result.createObjectStore("thumbnails");
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  return database.then((db) => db.transaction("thumbnails", mode).objectStore("thumbnails"));
}

export async function saveThumbnail(predictionId, blob) {
  if (!blob) return;
  const thumbnails = await store("readwrite");
  await new Promise((resolve, reject) => {
    const request = thumbnails.put(blob, predictionId);
    request.onsuccess = resolve;
    request.onerror = () => reject(request.error);
  });
}

async function loadThumbnail(predictionId) {
  try {
    const thumbnails = await store("readonly");
    return await new Promise((resolve) => {
      const request = thumbnails.get(predictionId);
      request.onsuccess = () => resolve(request.result || null);
      request.onerror = () => resolve(null);
    });
  } catch {
    return null;
  }
}

/** Whether this browser lets the page keep anything: blocked site data throws on access, a full store on write. */
export function storageWorks() {
  try {
    localStorage.setItem("fish.probe", "1");
    localStorage.removeItem("fish.probe");
    return true;
  } catch {
    return false;
  }
}

const isEntry = (entry) => typeof entry?.prediction_id === "string" && typeof entry.class === "string"
  && Number.isFinite(entry.confidence) && !Number.isNaN(Date.parse(entry.created_at));

/** Every answer is kept in this browser too: the whole history with the log off, and with it on, the answers
 * whose rows the server has not written yet (it writes off the request path). An entry that is not one (another
 * version's, or edited by hand) is dropped, not left to break the list at each visit. */
function keptLocally() {
  let kept;
  try {
    kept = JSON.parse(localStorage.getItem(LOCAL_KEY) || "[]");
  } catch {
    kept = null;
  }
  const entries = Array.isArray(kept) ? kept.filter(isEntry) : [];
  if (entries.length !== kept?.length) localStorage.setItem(LOCAL_KEY, JSON.stringify(entries));
  return entries;
}

export function keepLocally(answer) {
  const kept = keptLocally();
  kept.unshift({ ...answer, created_at: new Date().toISOString(), feedback: null });
  localStorage.setItem(LOCAL_KEY, JSON.stringify(kept.slice(0, LOCAL_MAX)));
}

function describeFeedback(feedback) {
  if (!feedback) return "No feedback yet";
  return feedback.correct ? "You said: right" : `You said: wrong, it is a ${feedback.true_class}`;
}

async function item(entry) {
  const li = el("li", "list-group-item d-flex gap-3 align-items-center");
  li.tabIndex = -1;
  li.dataset.predictionId = entry.prediction_id;
  const blob = await loadThumbnail(entry.prediction_id);
  if (blob) {
    const img = el("img", "thumb rounded");
    showBlob(img, blob);
    img.alt = `Photo classified as ${entry.class}`;
    li.append(img);
  } else {
    const missing = el("div", "thumb thumb-missing rounded");
    missing.setAttribute("aria-hidden", "true");
    li.append(missing);
  }
  const text = el("div", "flex-grow-1");
  text.append(el("div", "fw-semibold species", `${entry.class} · ${(entry.confidence * 100).toFixed(1)}%`));
  const when = new Date(entry.created_at).toLocaleString();
  text.append(el("div", "small text-body-secondary", `${when} · model version ${entry.model_version}`
    + (entry.revision ? `, revision ${entry.revision}` : "")));
  text.append(el("div", "small feedback-given", describeFeedback(entry.feedback)));
  li.append(text);
  return li;
}

/** This browser's answers newer than the newest the server lists: those before the first one it knows (the
 * browser's own order, not its clock, which may disagree with the server's). */
function notYetListed(listed) {
  const known = new Set(listed.map((entry) => entry.prediction_id));
  const kept = keptLocally();
  const firstKnown = kept.findIndex((entry) => known.has(entry.prediction_id));
  return kept.slice(0, firstKnown === -1 ? kept.length : firstKnown);
}

export const STORAGE_OFF = "This browser does not let this page keep anything (site data is blocked): photos are "
  + "classified, but history is off.";

export class History {
  constructor(list, status, more, note) {
    Object.assign(this, { list, status, more, note, logOn: true, keeps: storageWorks(), next: null, loads: 0 });
    more.addEventListener("click", () => this.load(this.next));
    this.setLog(true);
  }

  setLog(on) {
    this.logOn = on;
    const note = on ? "" : "The prediction log is off on this server: your history is kept in this browser only.";
    this.note.textContent = this.keeps ? note : STORAGE_OFF;
  }

  /** The newest page (`cursor` null) or the next older one; a load started later wins over an earlier one. */
  async load(cursor = null) {
    if (!this.keeps) {
      this.status.textContent = "No history in this browser.";
      return;
    }
    const turn = ++this.loads;
    this.more.disabled = true;
    this.status.textContent = "Loading…";
    let entries;
    let next = null;
    try {
      if (this.logOn) {
        const page = await api.predictions(cursor);
        entries = page.predictions;
        next = page.next_before ? { next_before: page.next_before, next_before_id: page.next_before_id } : null;
        if (!cursor) entries = [...notYetListed(entries), ...entries];
      } else {
        entries = keptLocally();
      }
      entries = await Promise.all(entries.map(item));
    } catch (error) {
      if (turn === this.loads) this.status.textContent = `The history could not be loaded: ${error.message}`;
      return;
    } finally {
      if (turn === this.loads) this.more.disabled = false;
    }
    if (turn !== this.loads) return;
    if (!cursor) this.list.replaceChildren();
    this.list.append(...entries);
    this.next = next;
    this.more.classList.toggle("d-none", !next);
    if (cursor && entries.length) entries[0].focus(); // the button may have gone: keyboard focus stays in the list
    this.status.textContent = this.list.children.length ? "" : "No photos classified in this browser yet.";
  }
}
