// Talking to the function: same origin, this browser's client id on every request, problems as errors.

const CLIENT_KEY = "fish.clientId";

// getRandomValues, not randomUUID: the latter exists only in secure contexts, and a Knative URL is often http
const newId = () => [...crypto.getRandomValues(new Uint8Array(16))]
  .map((b) => b.toString(16).padStart(2, "0")).join("");
let pageId = null;

/** This browser's id, kept in localStorage; where the browser blocks site storage (reading `localStorage` then
 * throws), an id for this page alone, so /predict still works and only the history is lost. */
export function clientId() {
  try {
    let id = localStorage.getItem(CLIENT_KEY);
    if (!id) {
      id = newId();
      localStorage.setItem(CLIENT_KEY, id);
    }
    return id;
  } catch {
    pageId ||= newId();
    return pageId;
  }
}

/** The server answered with a problem (RFC 9457): `detail` is meant for people. */
export class ProblemError extends Error {
  constructor(status, problem, retryAfter) {
    super(problem.detail || problem.title || `the server answered ${status}`);
    this.status = status;
    this.problem = problem;
    this.retryAfter = retryAfter;
  }
}

/** The request never got an answer (offline, server gone). */
export class NetworkError extends Error {}

async function call(path, options = {}) {
  const headers = { "X-Client-Id": clientId(), ...(options.headers || {}) };
  let response;
  try {
    response = await fetch(path, { ...options, headers });
  } catch (error) {
    throw new NetworkError(`the server could not be reached (${error.message})`);
  }
  if (response.ok) return response.status === 204 ? null : response.json();
  let problem = {};
  try { problem = await response.json(); } catch { /* not a problem document */ }
  throw new ProblemError(response.status, problem, Number(response.headers.get("Retry-After")) || 0);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Run `request` again while the server answers 503 (the model loading, or the instance at capacity), waiting
 * longer each time; `onWait(seconds, error)` is told, the error saying which. Other errors are thrown at once.
 */
export async function whileUnavailable(request, onWait, tries = 12) {
  let delay = 1000;
  for (let attempt = 1; ; attempt++) {
    try {
      return await request();
    } catch (error) {
      if (!(error instanceof ProblemError) || error.status !== 503 || attempt >= tries) throw error;
      // jitter: the cards of photos given together do not come back in step
      const wait = Math.max(delay, error.retryAfter * 1000) * (1 + Math.random() * 0.25);
      onWait(Math.round(wait / 1000), error);
      await sleep(wait);
      delay = Math.min(delay * 1.6, 15000);
    }
  }
}

export function predict(blob, filename) {
  const form = new FormData();
  form.append("file", blob, filename);
  return call("predict", { method: "POST", body: form });
}

export const modelInfo = () => call("model_info");

/** The newest page, or the one after `cursor`: the last page's { next_before, next_before_id }. */
export function predictions(cursor = null) {
  const query = new URLSearchParams({ limit: "20" });
  if (cursor) {
    query.set("before", cursor.next_before);
    query.set("before_id", cursor.next_before_id);
  }
  return call(`predictions?${query}`);
}

export function giveFeedback(predictionId, correct, trueClass) {
  return call(`predictions/${encodeURIComponent(predictionId)}/feedback`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ correct, true_class: trueClass }),
  });
}

export function stats(since, until) {
  const query = new URLSearchParams();
  if (since) query.set("since", since);
  if (until) query.set("until", until);
  return call(`stats?${query}`);
}
