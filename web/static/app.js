// The asyncinfer page: upload images, follow each job on its event stream, show the results.
// One job per image rather than one batch: a batch is all-or-nothing, and each image's
// problem has to show next to that image.

// Browsers open at most 6 HTTP/1.1 connections per host, and every open event stream (or long
// poll) holds one: leave room for uploads so that a large drop never stalls behind its own streams.
const MAX_UPLOADS = 2;
const MAX_STREAMS = 4;
// A 429 or 503 is retried this many times, after the server's Retry-After, before asking the user.
const AUTO_RETRIES = 3;
// Consecutive stream errors before falling back to long polling (the browser reconnects by
// itself in between, sending Last-Event-ID so nothing is missed).
const STREAM_ERRORS_BEFORE_POLLING = 3;
// The gateway writes the terminal statuses into the page (api/routes/web.py), from shared/jobs.py.
const TERMINAL = new Set(document.body.dataset.terminalStatuses.split(" "));
// A card is finished once its job is, or once the server refused the file ("rejected").
const FINISHED = new Set([...TERMINAL, "rejected"]);

const STATE_LABELS = {
  uploading: "Uploading",
  queued: "Queued",
  running: "Running",
  waiting: "Waiting to retry",
  succeeded: "Done",
  failed: "Failed",
  cancelled: "Cancelled",
  rejected: "Failed",
};

const UPLOAD_PROBLEMS = {
  400: "The server could not read this upload.",
  401: "This server needs an API key. Enter it above, then try again.",
  409: "This image was already sent with different settings.",
  413: "This image is too large. Try a smaller or more compressed copy (up to 10 MB).",
  415: "This file isn't an image we can read. Use a JPEG, PNG, WebP, BMP or GIF file.",
  422: "This image can't be opened: it may be damaged, incomplete or too small.",
  429: "The server is busy with other images right now. Try again in a minute.",
  503: "The service is temporarily unavailable. Try again in a minute.",
};

const JOB_PROBLEMS = {
  decode_error: "The image could not be decoded.",
  timeout: "Processing this image took too long and was stopped.",
  worker_lost: "The worker processing this image stopped, and retries ran out.",
  internal: "Something went wrong while processing this image.",
};

const $ = (selector) => document.querySelector(selector);
const page = {
  dropZone: $("#drop-zone"),
  fileInput: $("#file-input"),
  topK: $("#top-k"),
  apiKey: $("#api-key"),
  cards: $("#cards"),
  empty: $("#empty"),
  summary: $("#summary"),
  clear: $("#clear"),
  announcer: $("#announcer"),
  template: $("#card-template"),
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
const items = [];

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID(); // only in secure contexts (https, localhost)
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}${Math.random().toString(36).slice(2)}`;
}

function formatBytes(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

function formatScore(score) {
  const percent = score * 100;
  return `${percent.toFixed(percent < 10 ? 1 : 0)}%`;
}

function humanLabel(label) {
  return String(label).replaceAll("_", " ");
}

// --- API key: a header for fetch. EventSource cannot send headers, and a key in a URL would end up in
// logs and history: its stream opens with a short-lived token for that one job instead (POST …/stream-token).

function apiKey() {
  return page.apiKey.value.trim();
}

function authHeaders() {
  return apiKey() ? { "X-API-Key": apiKey() } : {};
}

async function streamUrl(jobId) {
  const events = `/v1/jobs/${encodeURIComponent(jobId)}/events`;
  if (!apiKey()) return events;
  const response = await fetch(`/v1/jobs/${encodeURIComponent(jobId)}/stream-token`, {
    method: "POST",
    headers: authHeaders(),
  });
  if (!response.ok) throw new Error(`stream token: ${response.status}`);
  const { token } = await response.json();
  return `${events}?token=${encodeURIComponent(token)}`;
}

function currentTopK() {
  const value = Number.parseInt(page.topK.value, 10);
  return Number.isInteger(value) ? Math.min(20, Math.max(1, value)) : 5;
}

function retryAfterSeconds(response) {
  const value = Number.parseInt(response.headers.get("Retry-After") || "", 10);
  return Number.isInteger(value) && value >= 0 ? Math.min(value, 60) : 5;
}

async function readProblem(response) {
  try {
    const body = await response.json();
    return typeof body.detail === "string" ? body.detail : "";
  } catch {
    return "";
  }
}

// --- Announcements for screen readers (one polite live region for the whole page).

function announce(message) {
  const line = document.createElement("p");
  line.textContent = message;
  page.announcer.append(line);
  while (page.announcer.childElementCount > 3) page.announcer.firstElementChild.remove();
}

// --- Cards

function part(item, selector) {
  return item.node.querySelector(selector);
}

function createItem(file) {
  const node = page.template.content.firstElementChild.cloneNode(true);
  const item = { file, node, topK: currentTopK(), idempotencyKey: newKey(), jobId: null, doc: {}, state: null };
  part(item, ".file-name").textContent = file.name;
  part(item, ".file-name").title = file.name;
  part(item, ".meta").textContent = formatBytes(file.size);
  part(item, ".predictions").setAttribute("aria-label", `Top predictions for ${file.name}`);
  showThumbnail(item);
  part(item, ".retry").addEventListener("click", () => item.retry?.());
  items.push(item);
  page.cards.append(node);
  return item;
}

function showThumbnail(item) {
  const placeholder = part(item, ".thumb-placeholder");
  const extension = item.file.name.includes(".") ? item.file.name.split(".").pop().slice(0, 4) : "?";
  placeholder.textContent = extension.toUpperCase();
  if (!item.file.type.startsWith("image/")) return;
  const image = new Image();
  image.alt = "";
  image.decoding = "async";
  image.addEventListener("load", () => placeholder.replaceWith(image), { once: true });
  image.addEventListener("error", () => URL.revokeObjectURL(image.src), { once: true });
  image.src = URL.createObjectURL(item.file);
  item.thumbnailUrl = image.src;
}

function setState(item, state, message) {
  if (item.state === state) return;
  item.state = state;
  item.node.dataset.state = state;
  part(item, ".badge").textContent = STATE_LABELS[state] || state;
  announce(message || `${item.file.name}: ${(STATE_LABELS[state] || state).toLowerCase()}.`);
  updateSummary();
}

function showProblem(item, { text, detail = "", retry = null }) {
  part(item, ".problem").hidden = false;
  part(item, ".problem-text").textContent = text;
  part(item, ".problem-detail").textContent = detail ? `Server said: ${detail}` : "";
  part(item, ".problem-detail").hidden = !detail;
  item.retry = retry;
  part(item, ".retry").hidden = !retry;
}

function hideProblem(item) {
  part(item, ".problem").hidden = true;
  item.retry = null;
}

function renderPredictions(item, predictions) {
  const list = part(item, ".predictions");
  list.replaceChildren(
    ...predictions.map((prediction) => {
      const row = document.createElement("li");
      const label = document.createElement("span");
      label.className = "prediction-label";
      label.textContent = humanLabel(prediction.label);
      const score = document.createElement("span");
      score.className = "prediction-score";
      score.textContent = formatScore(prediction.score);
      const bar = document.createElement("span");
      bar.className = "prediction-bar";
      bar.setAttribute("aria-hidden", "true");
      const fill = document.createElement("span");
      fill.style.width = `${Math.max(0, Math.min(1, prediction.score)) * 100}%`;
      bar.append(fill);
      row.append(label, score, bar);
      return row;
    }),
  );
  list.hidden = predictions.length === 0;
}

// A queued job's place in line (`position` events, or `position` in a polled document).
function showPosition(item, position) {
  const line = part(item, ".in-line");
  if (!position || item.doc?.status !== "queued") {
    line.hidden = true;
    return;
  }
  const ahead = position.ahead === 0 ? "Next in line" : `${position.ahead} ${position.ahead === 1 ? "job" : "jobs"} ahead`;
  let starts = "";
  if (position.estimated_start_at && position.ahead > 0) {
    const seconds = Math.max(1, Math.round((Date.parse(position.estimated_start_at) - Date.now()) / 1000));
    starts = seconds < 90 ? ` · starts in about ${seconds} s` : ` · starts in about ${Math.round(seconds / 60)} min`;
  }
  line.textContent = ahead + starts;
  line.hidden = false;
}

function applyDoc(item, doc) {
  item.doc = { ...item.doc, ...doc }; // replayed events may carry only the changed fields
  const { status, input, result, error } = item.doc;
  if (status !== "queued" || doc.position) showPosition(item, doc.position);
  if (input && input.width) {
    part(item, ".meta").textContent = `${formatBytes(item.file.size)} · ${input.width}×${input.height}`;
  }
  if (status === "succeeded" && result) {
    renderPredictions(item, result.predictions || []);
    const top = (result.predictions || [])[0];
    setState(item, status, `${item.file.name}: done.${top ? ` Top prediction ${humanLabel(top.label)}, ${formatScore(top.score)}.` : ""}`);
  } else if (status === "failed") {
    setState(item, status);
    showProblem(item, { text: JOB_PROBLEMS[error?.code] || JOB_PROBLEMS.internal, detail: error?.message || "" });
  } else if (status === "cancelled") {
    setState(item, status);
    showProblem(item, { text: "This job was cancelled before it started." });
  } else if (status && !TERMINAL.has(status)) {
    setState(item, status);
  }
}

// --- Upload, then follow

async function upload(item) {
  hideProblem(item);
  setState(item, "uploading");
  await uploads.run(async () => {
    for (let attempt = 0; ; attempt += 1) {
      let response;
      try {
        const body = new FormData();
        body.append("file", item.file, item.file.name);
        response = await fetch(`/v1/jobs?top_k=${item.topK}`, {
          method: "POST",
          body,
          headers: { ...authHeaders(), "Idempotency-Key": item.idempotencyKey },
        });
      } catch {
        setState(item, "rejected");
        showProblem(item, { text: "Could not reach the server. Check your connection, then try again.", retry: () => upload(item) });
        return;
      }
      if (response.status === 202) {
        const doc = await response.json();
        item.jobId = doc.id;
        applyDoc(item, doc);
        if (!TERMINAL.has(doc.status) || (doc.status === "succeeded" && !doc.result)) follow(item);
        return;
      }
      const detail = await readProblem(response);
      const text = UPLOAD_PROBLEMS[response.status] || `The server could not take this image (error ${response.status}).`;
      if ((response.status === 429 || response.status === 503) && attempt < AUTO_RETRIES) {
        const waitS = retryAfterSeconds(response);
        setState(item, "waiting");
        showProblem(item, { text: `${text.split(". ")[0]}. Trying again in ${waitS} s…`, detail });
        await sleep(waitS * 1000);
        hideProblem(item);
        setState(item, "uploading");
        continue;
      }
      const retryable = [401, 429, 503].includes(response.status) || response.status >= 500;
      setState(item, "rejected", `${item.file.name}: failed. ${text}`);
      showProblem(item, { text, detail, retry: retryable ? () => upload(item) : null });
      return;
    }
  });
}

function follow(item) {
  hideProblem(item);
  return streams.run(async () => {
    let url;
    try {
      url = await streamUrl(item.jobId);
    } catch {
      await poll(item); // no token, no stream: long polling sends the key in a header
      return;
    }
    const gaveUp = await new Promise((resolve) => {
      const source = new EventSource(url);
      let errors = 0;
      source.addEventListener("position", (event) => showPosition(item, JSON.parse(event.data)));
      source.addEventListener("status", (event) => {
        errors = 0;
        const doc = JSON.parse(event.data);
        applyDoc(item, doc);
        if (TERMINAL.has(doc.status)) {
          source.close(); // the server ends the stream here; without close() EventSource would reconnect
          resolve(doc.status === "succeeded" && !item.doc.result);
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
    if (gaveUp) await poll(item);
  });
}

async function poll(item) {
  for (let failures = 0; failures <= 5; ) {
    let response;
    try {
      response = await fetch(`/v1/jobs/${encodeURIComponent(item.jobId)}?wait=30`, { headers: authHeaders() });
    } catch {
      failures += 1;
      await sleep(Math.min(30, 2 ** failures) * 1000);
      continue;
    }
    if (response.ok) {
      failures = 0;
      const doc = await response.json();
      applyDoc(item, doc);
      if (TERMINAL.has(doc.status)) return;
      continue;
    }
    if ([429, 502, 503, 504].includes(response.status)) {
      failures += 1;
      await sleep(retryAfterSeconds(response) * 1000);
      continue;
    }
    const detail = await readProblem(response);
    showProblem(item, {
      text: response.status === 404 ? "This job is no longer known to the server." : UPLOAD_PROBLEMS[response.status] || "Could not fetch the result.",
      detail,
      retry: response.status === 401 ? () => follow(item) : null,
    });
    return;
  }
  showProblem(item, {
    text: "Lost touch with the server while waiting for the result. The image is still being processed; try again to fetch it.",
    retry: () => follow(item),
  });
}

// --- Page wiring

function addFiles(fileList) {
  const files = Array.from(fileList || []);
  if (files.length === 0) return;
  for (const file of files) upload(createItem(file));
  updateSummary();
}

function updateSummary() {
  const count = (predicate) => items.filter(predicate).length;
  const done = count((item) => item.state === "succeeded");
  const failed = count((item) => FINISHED.has(item.state) && item.state !== "succeeded");
  const active = items.length - done - failed;
  const parts = [`${items.length} ${items.length === 1 ? "image" : "images"}`, `${done} done`];
  if (failed) parts.push(`${failed} failed`);
  if (active) parts.push(`${active} in progress`);
  page.summary.textContent = items.length ? parts.join(" · ") : "";
  page.clear.hidden = done + failed === 0;
  page.empty.hidden = items.length > 0;
}

function clearFinished() {
  for (const item of [...items]) {
    if (!FINISHED.has(item.state)) continue;
    if (item.thumbnailUrl) URL.revokeObjectURL(item.thumbnailUrl);
    item.node.remove();
    items.splice(items.indexOf(item), 1);
  }
  updateSummary();
  page.dropZone.focus();
}

page.dropZone.addEventListener("click", () => page.fileInput.click());
page.fileInput.addEventListener("change", () => {
  addFiles(page.fileInput.files);
  page.fileInput.value = ""; // picking the same file again is a new upload
});
page.clear.addEventListener("click", clearFinished);
$("#options").addEventListener("submit", (event) => event.preventDefault()); // Enter in a field must not reload

// Files dropped anywhere on the page count; outside the page's handlers the browser would
// navigate away to show the file.
let dragDepth = 0;
window.addEventListener("dragenter", (event) => {
  event.preventDefault();
  dragDepth += 1;
  page.dropZone.classList.add("dragging");
});
window.addEventListener("dragleave", () => {
  dragDepth = Math.max(0, dragDepth - 1);
  if (dragDepth === 0) page.dropZone.classList.remove("dragging");
});
window.addEventListener("dragover", (event) => event.preventDefault());
window.addEventListener("drop", (event) => {
  event.preventDefault();
  dragDepth = 0;
  page.dropZone.classList.remove("dragging");
  addFiles(event.dataTransfer?.files);
});

page.apiKey.value = sessionStorage.getItem("asyncinfer-api-key") || "";
page.apiKey.addEventListener("change", () => sessionStorage.setItem("asyncinfer-api-key", apiKey()));
document.documentElement.dataset.ready = "true"; // lets tests wait for the script
