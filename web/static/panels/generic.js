// The generic panel, for a model that ships none: upload images, follow each job live, show the
// results, cancel a queued one. One job per image rather than one batch: a batch is all-or-nothing,
// and each image's problem has to show next to that image. Written against the panel API only.

import { formatScore, humanLabel } from "../predictions.js";

export const apiVersion = "1";

// A 429 or 503 is retried this many times, after the server's Retry-After, before asking the user.
const AUTO_RETRIES = 3;

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

const JOB_PROBLEMS = {
  decode_error: "The image could not be decoded.",
  timeout: "Processing this image took too long and was stopped.",
  worker_lost: "The worker processing this image stopped, and retries ran out.",
  internal: "Something went wrong while processing this image.",
};

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function formatBytes(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

function markup(id, model) {
  const version = model.versions.find((v) => v.version === model.default_version) || model.versions.at(-1);
  return `
    <div class="uploader">
      <button type="button" class="drop-zone" aria-describedby="${id}-hint">
        <svg class="drop-icon" aria-hidden="true" viewBox="0 0 24 24" width="40" height="40">
          <path d="M12 16V4m0 0-4.5 4.5M12 4l4.5 4.5M4 15v3a2 2 0 0 0 2 2h12a2 2 0 0 0 2-2v-3"
                fill="none" stroke="currentColor" stroke-width="1.8" stroke-linecap="round" stroke-linejoin="round"/>
        </svg>
        <span class="drop-title">Drop images here or <span class="drop-link">choose files</span></span>
        <span id="${id}-hint" class="drop-hint">JPEG, PNG, WebP, BMP or GIF, up to 10 MB each.
          Press Enter or Space to open the file picker.</span>
      </button>
      <label for="${id}-files" class="visually-hidden">Choose images for ${model.name}</label>
      <input id="${id}-files" type="file" accept="image/*" multiple class="visually-hidden file-input" tabindex="-1">
      <form class="options" autocomplete="off">
        <div class="field">
          <label for="${id}-top-k">Predictions per image</label>
          <input id="${id}-top-k" class="top-k" type="number" min="1" max="${version.max_top_k}"
                 value="${version.default_top_k}" inputmode="numeric">
        </div>
      </form>
    </div>
    <div class="results">
      <div class="results-bar">
        <h3 class="results-heading">Results</h3>
        <p class="summary"></p>
        <button type="button" class="button-quiet clear" hidden>Clear finished</button>
      </div>
      <p class="empty">No images yet. Results appear here as soon as you add some.</p>
      <ul class="cards"></ul>
    </div>`;
}

const CARD = `
  <li class="card" data-state="uploading">
    <div class="thumb"><span class="thumb-placeholder" aria-hidden="true"></span></div>
    <div class="card-body">
      <div class="card-head">
        <h4 class="file-name"></h4>
        <span class="badge"></span>
      </div>
      <p class="meta"></p>
      <p class="in-line" hidden></p>
      <ol class="predictions" hidden></ol>
      <button type="button" class="cancel button-quiet" hidden>Cancel</button>
    </div>
    <div class="problem" hidden>
      <p class="problem-text"></p>
      <p class="problem-detail"></p>
      <button type="button" class="retry button-quiet" hidden>Try again</button>
    </div>
  </li>`;

export function mount(host, api) {
  host.innerHTML = markup(`generic-${api.model.name}`, api.model);
  const $ = (selector) => host.querySelector(selector);
  const view = {
    dropZone: $(".drop-zone"),
    fileInput: $(".file-input"),
    topK: $(".top-k"),
    cards: $(".cards"),
    empty: $(".empty"),
    summary: $(".summary"),
    clear: $(".clear"),
  };
  const maxTopK = Number(view.topK.max);
  const defaultTopK = Number(view.topK.value);
  const finished = (state) => api.isTerminal(state) || state === "rejected";
  const items = [];

  function currentTopK() {
    const value = Number.parseInt(view.topK.value, 10);
    return Number.isInteger(value) ? Math.min(maxTopK, Math.max(1, value)) : defaultTopK;
  }

  const part = (item, selector) => item.node.querySelector(selector);

  function createItem(file) {
    const template = document.createElement("template");
    template.innerHTML = CARD.trim();
    const node = template.content.firstElementChild;
    const item = { file, node, topK: currentTopK(), idempotencyKey: api.newKey(),
                   jobId: null, doc: {}, state: null };
    part(item, ".file-name").textContent = file.name;
    part(item, ".file-name").title = file.name;
    part(item, ".meta").textContent = formatBytes(file.size);
    part(item, ".predictions").setAttribute("aria-label", `Top predictions for ${file.name}`);
    part(item, ".cancel").setAttribute("aria-label", `Cancel ${file.name}`);
    showThumbnail(item);
    part(item, ".retry").addEventListener("click", () => item.retry?.());
    part(item, ".cancel").addEventListener("click", () => cancel(item));
    items.push(item);
    view.cards.append(node);
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
    part(item, ".cancel").hidden = state !== "queued";
    api.announce(message || `${item.file.name}: ${(STATE_LABELS[state] || state).toLowerCase()}.`);
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
      api.renderPredictions(part(item, ".predictions"), result.predictions || []);
      const top = (result.predictions || [])[0];
      setState(item, status, `${item.file.name}: done.${top ? ` Top prediction ${humanLabel(top.label)}, ${formatScore(top.score)}.` : ""}`);
    } else if (status === "failed") {
      setState(item, status);
      showProblem(item, { text: JOB_PROBLEMS[error?.code] || JOB_PROBLEMS.internal, detail: error?.message || "" });
    } else if (status === "cancelled") {
      setState(item, status);
      showProblem(item, { text: "This job was cancelled before it started." });
    } else if (status && !api.isTerminal(status)) {
      setState(item, status);
    }
  }

  async function upload(item) {
    hideProblem(item);
    setState(item, "uploading");
    for (let attempt = 0; ; attempt += 1) {
      const answer = await api.submit(item.file, { topK: item.topK, idempotencyKey: item.idempotencyKey });
      if (answer.ok) {
        item.jobId = answer.body.id;
        applyDoc(item, answer.body);
        if (!api.isTerminal(answer.body.status) || (answer.body.status === "succeeded" && !answer.body.result)) follow(item);
        return;
      }
      if (answer.status === 0) {
        setState(item, "rejected");
        showProblem(item, { text: answer.text, retry: () => upload(item) });
        return;
      }
      if ((answer.status === 429 || answer.status === 503) && attempt < AUTO_RETRIES) {
        setState(item, "waiting");
        showProblem(item, { text: `${answer.text.split(". ")[0]}. Trying again in ${answer.retryAfterS} s…`, detail: answer.detail });
        await sleep(answer.retryAfterS * 1000);
        hideProblem(item);
        setState(item, "uploading");
        continue;
      }
      const retryable = [401, 429, 503].includes(answer.status) || answer.status >= 500;
      setState(item, "rejected", `${item.file.name}: failed. ${answer.text}`);
      showProblem(item, { text: answer.text, detail: answer.detail, retry: retryable ? () => upload(item) : null });
      return;
    }
  }

  function follow(item) {
    hideProblem(item);
    return api.follow(item.jobId, (type, data) => {
      if (type === "position") showPosition(item, data);
      else if (type === "status") applyDoc(item, data);
      else showProblem(item, { text: data.text, detail: data.detail, retry: data.retryable ? () => follow(item) : null });
    });
  }

  async function cancel(item) {
    part(item, ".cancel").disabled = true;
    const answer = await api.cancel(item.jobId);
    part(item, ".cancel").disabled = false;
    if (answer.ok) applyDoc(item, answer.body);
    else showProblem(item, { text: answer.text, detail: answer.detail });
  }

  function addFiles(fileList) {
    const files = Array.from(fileList || []);
    if (files.length === 0) return;
    for (const file of files) upload(createItem(file));
    updateSummary();
  }

  function updateSummary() {
    const count = (predicate) => items.filter(predicate).length;
    const done = count((item) => item.state === "succeeded");
    const failed = count((item) => finished(item.state) && item.state !== "succeeded");
    const active = items.length - done - failed;
    const parts = [`${items.length} ${items.length === 1 ? "image" : "images"}`, `${done} done`];
    if (failed) parts.push(`${failed} failed`);
    if (active) parts.push(`${active} in progress`);
    view.summary.textContent = items.length ? parts.join(" · ") : "";
    view.clear.hidden = done + failed === 0;
    view.empty.hidden = items.length > 0;
  }

  function clearFinished() {
    for (const item of [...items]) {
      if (!finished(item.state)) continue;
      if (item.thumbnailUrl) URL.revokeObjectURL(item.thumbnailUrl);
      item.node.remove();
      items.splice(items.indexOf(item), 1);
    }
    updateSummary();
    view.dropZone.focus();
  }

  view.dropZone.addEventListener("click", () => view.fileInput.click());
  view.fileInput.addEventListener("change", () => {
    addFiles(view.fileInput.files);
    view.fileInput.value = ""; // picking the same file again is a new upload
  });
  view.clear.addEventListener("click", clearFinished);
  host.querySelector(".options").addEventListener("submit", (event) => event.preventDefault()); // Enter must not reload

  // Files dropped anywhere on this panel are its own (the shell keeps drops elsewhere from navigating away).
  let dragDepth = 0;
  host.addEventListener("dragenter", (event) => {
    event.preventDefault();
    dragDepth += 1;
    view.dropZone.classList.add("dragging");
  });
  host.addEventListener("dragleave", () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (dragDepth === 0) view.dropZone.classList.remove("dragging");
  });
  host.addEventListener("dragover", (event) => event.preventDefault());
  host.addEventListener("drop", (event) => {
    event.preventDefault();
    event.stopPropagation();
    dragDepth = 0;
    view.dropZone.classList.remove("dragging");
    addFiles(event.dataTransfer?.files);
  });
}
