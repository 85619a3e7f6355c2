// The interface the shell hands each panel: one frozen object per panel, bound to its model.
// Version 1.x: later 1.x shells only add to it, so a panel written for 1.0 works unchanged in them;
// a panel that needs more declares `export const apiVersion = "1"` and reads `api.version`.

import { renderPredictions } from "./predictions.js";

export const PANEL_API_VERSION = "1.0";

// Browsers open at most 6 HTTP/1.1 connections per host, and every open event stream (or long
// poll) holds one: leave room for uploads so that a large drop never stalls behind its own streams.
// Shared by all panels, since the limit is the page's.
const MAX_UPLOADS = 2;
const MAX_STREAMS = 4;
// Consecutive stream errors before falling back to long polling (the browser reconnects by
// itself in between, sending Last-Event-ID so nothing is missed).
const STREAM_ERRORS_BEFORE_POLLING = 3;

const PROBLEMS = {
  0: "Could not reach the server. Check your connection, then try again.",
  400: "The server could not read this upload.",
  401: "This server needs an API key. Enter it above, then try again.",
  404: "This job is no longer known to the server.",
  409: "This image was already sent with different settings.",
  413: "This image is too large. Try a smaller or more compressed copy (up to 10 MB).",
  415: "This file isn't an image we can read. Use a JPEG, PNG, WebP, BMP or GIF file.",
  422: "This image can't be opened: it may be damaged, incomplete or too small.",
  429: "The server is busy with other images right now. Try again in a minute.",
  503: "The service is temporarily unavailable. Try again in a minute.",
};

class Limiter {
  constructor(size) {
    this.free = size;
    this.waiting = [];
  }

  async run(task) {
    if (this.free > 0) this.free -= 1;
    else await new Promise((resolve) => this.waiting.push(resolve));
    try {
      return await task();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.free += 1;
    }
  }
}

const uploads = new Limiter(MAX_UPLOADS);
const streams = new Limiter(MAX_STREAMS);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function deepFreeze(value) {
  if (value && typeof value === "object") {
    Object.values(value).forEach(deepFreeze);
    Object.freeze(value);
  }
  return value;
}

function problemText(status) {
  return PROBLEMS[status] || (status >= 500 ? PROBLEMS[503] : `The server could not take this (error ${status}).`);
}

function retryAfterSeconds(response) {
  const value = Number.parseInt(response.headers.get("Retry-After") || "", 10);
  return Number.isInteger(value) && value >= 0 ? Math.min(value, 60) : 5;
}

// An answer as panels see it: never a thrown error, always a plain-language `text` when not ok.
async function answerOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const ok = response.ok;
  return {
    ok,
    status: response.status,
    body: ok ? body : null,
    text: ok ? "" : problemText(response.status),
    detail: !ok && typeof body?.detail === "string" ? body.detail : "",
    retryAfterS: ok ? 0 : retryAfterSeconds(response),
  };
}

const unreachable = () => ({ ok: false, status: 0, body: null, text: PROBLEMS[0], detail: "", retryAfterS: 5 });

export function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID(); // only in secure contexts (https, localhost)
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}${Math.random().toString(36).slice(2)}`;
}

/**
 * The api object for one panel. `shell` gives what the shell owns: `apiKey()` (the key field),
 * `terminal` (a Set of terminal statuses), `announce(text)`, `reportError(error)` (the panel's
 * error card), `guard(callback)` (the same callback, its throws reported as the panel's error), and
 * the open session: `sessionId()` (null: none), `noteAccepted(files, body)` (an upload it accepted).
 */
export function createPanelApi(model, shell) {
  const headers = () => (shell.apiKey() ? { "X-API-Key": shell.apiKey() } : {});
  const jobPath = (jobId) => `/v1/jobs/${encodeURIComponent(jobId)}`;

  // EventSource cannot send headers, and a key in a URL would end up in logs and history: with a
  // key, a stream opens with a short-lived token for that one job (POST …/stream-token).
  async function streamUrl(jobId) {
    if (!shell.apiKey()) return `${jobPath(jobId)}/events`;
    const response = await fetch(`${jobPath(jobId)}/stream-token`, { method: "POST", headers: headers() });
    if (!response.ok) throw new Error(`stream token: ${response.status}`);
    const { token } = await response.json();
    return `${jobPath(jobId)}/events?token=${encodeURIComponent(token)}`;
  }

  async function submit(fileOrFiles, options = {}) {
    const batch = Array.isArray(fileOrFiles) || fileOrFiles instanceof FileList;
    const query = new URLSearchParams({ model: options.version ? `${model.name}@${options.version}` : model.name });
    if (options.topK) query.set("top_k", String(options.topK));
    const sessionId = shell.sessionId?.();
    if (sessionId) query.set("session_id", sessionId); // the shell's open session: every panel's jobs join it
    const body = new FormData();
    for (const file of batch ? Array.from(fileOrFiles) : [fileOrFiles]) body.append(batch ? "files" : "file", file, file.name);
    const sent = { ...headers(), "Idempotency-Key": options.idempotencyKey || newKey() };
    return uploads.run(async () => {
      let answer;
      try {
        answer = await answerOf(await fetch(`/v1/${batch ? "batches" : "jobs"}?${query}`, { method: "POST", body, headers: sent }));
      } catch {
        return unreachable();
      }
      if (answer.ok && sessionId) shell.noteAccepted?.(batch ? Array.from(fileOrFiles) : [fileOrFiles], answer.body);
      return answer;
    });
  }

  async function poll(jobId, emit) {
    for (let failures = 0; failures <= 5; ) {
      let response;
      try {
        response = await fetch(`${jobPath(jobId)}?wait=30`, { headers: headers() });
      } catch {
        failures += 1;
        await sleep(Math.min(30, 2 ** failures) * 1000);
        continue;
      }
      if (response.ok) {
        failures = 0;
        const doc = await response.json();
        emit("status", doc);
        if (shell.terminal.has(doc.status)) return;
        continue;
      }
      if ([429, 502, 503, 504].includes(response.status)) {
        failures += 1;
        await sleep(retryAfterSeconds(response) * 1000);
        continue;
      }
      const answer = await answerOf(response);
      emit("problem", { status: answer.status, text: answer.text, detail: answer.detail, retryable: answer.status === 401 });
      return;
    }
    emit("problem", {
      status: 0,
      text: "Lost touch with the server while waiting for the result. The image is still being processed; try again to fetch it.",
      detail: "",
      retryable: true,
    });
  }

  // The job's events until it ends: `status` (its document, or the fields that changed), `position`
  // (its place in line while queued) and `problem` (following gave up; `retryable` says whether
  // following again may help). Resolves when following ends.
  function follow(jobId, onEvent) {
    const emit = shell.guard((type, data) => onEvent(type, data));
    return streams.run(async () => {
      let url;
      try {
        url = await streamUrl(jobId);
      } catch {
        await poll(jobId, emit); // no token, no stream: long polling sends the key in a header
        return;
      }
      const gaveUp = await new Promise((resolve) => {
        const source = new EventSource(url);
        let errors = 0;
        let result = null;
        source.addEventListener("position", (event) => emit("position", JSON.parse(event.data)));
        source.addEventListener("status", (event) => {
          errors = 0;
          const doc = JSON.parse(event.data);
          result = doc.result || result;
          emit("status", doc);
          if (shell.terminal.has(doc.status)) {
            source.close(); // the server ends the stream here; without close() EventSource would reconnect
            resolve(doc.status === "succeeded" && !result);
          }
        });
        source.addEventListener("error", () => {
          errors += 1;
          if (source.readyState === EventSource.CLOSED || errors >= STREAM_ERRORS_BEFORE_POLLING) {
            source.close();
            resolve(true);
          }
        });
      });
      if (gaveUp) await poll(jobId, emit);
    });
  }

  async function cancel(jobId) {
    try {
      const answer = await answerOf(await fetch(jobPath(jobId), { method: "DELETE", headers: headers() }));
      if (answer.status === 409) answer.text = "This job has already started or ended: it can no longer be cancelled.";
      return answer;
    } catch {
      return unreachable();
    }
  }

  return Object.freeze({
    version: PANEL_API_VERSION,
    model: deepFreeze(structuredClone(model)),
    submit,
    follow,
    cancel,
    renderPredictions,
    reportError: (error) => shell.reportError(error),
    announce: (text) => shell.announce(String(text)),
    isTerminal: (status) => shell.terminal.has(status),
    problemText,
    newKey,
  });
}
