// The portal's session: one user's multi-step analysis (POST /v1/sessions). Its id is in the page's
// URL (?session=…), so a reload or a link reopens it: the shell lists its earlier jobs, and every job
// a panel submits while it is open joins it. The list follows the session's event stream, and shows
// a thumbnail of each image this browser sent (kept in localStorage: the server keeps no image once
// a job has ended).

const THUMB_PX = 56;
const THUMB_KEY = (jobId) => `asyncinfer-thumb:${jobId}`;
const $ = (selector) => document.querySelector(selector);

function percent(score) {
  return `${(score * 100).toFixed(score >= 0.1 ? 0 : 1)} %`;
}

async function thumbnailOf(file) {
  const bitmap = await createImageBitmap(file);
  const scale = THUMB_PX / Math.max(bitmap.width, bitmap.height);
  const canvas = document.createElement("canvas");
  canvas.width = Math.max(1, Math.round(bitmap.width * scale));
  canvas.height = Math.max(1, Math.round(bitmap.height * scale));
  canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  bitmap.close();
  return canvas.toDataURL("image/jpeg", 0.7);
}

export function createSession({ apiKey, announce }) {
  const view = {
    section: $("#session"),
    state: $("#session-state"),
    start: $("#session-start"),
    leave: $("#session-leave"),
    exports: [$("#session-export-json"), $("#session-export-csv")],
    history: $("#session-history"),
  };
  let id = new URL(window.location.href).searchParams.get("session");
  let source = null;
  let refreshing = null;
  let stale = false;

  const headers = () => (apiKey() ? { "X-API-Key": apiKey() } : {});
  const path = () => `/v1/sessions/${encodeURIComponent(id)}`;

  function setUrl() {
    const url = new URL(window.location.href);
    if (id) url.searchParams.set("session", id);
    else url.searchParams.delete("session");
    window.history.replaceState(null, "", url);
  }

  function entryNode(entry) {
    const item = document.createElement("li");
    item.className = "session-entry";
    item.dataset.jobId = entry.job_id;
    item.dataset.status = entry.status;
    const thumb = localStorage.getItem(THUMB_KEY(entry.job_id));
    const picture = document.createElement(thumb ? "img" : "span");
    picture.className = "session-thumb";
    if (thumb) {
      picture.src = thumb;
      picture.alt = "";
    } else {
      picture.setAttribute("aria-hidden", "true");
    }
    const text = document.createElement("div");
    const name = document.createElement("p");
    name.className = "session-file";
    name.textContent = entry.input.filename || `${entry.input.content_type} image`;
    const result = document.createElement("p");
    result.className = "session-result";
    const best = entry.top_prediction;
    result.textContent = entry.status === "succeeded" && best
      ? `${best.label} · ${percent(best.score)}`
      : entry.error_code ? `${entry.status} (${entry.error_code})` : entry.status;
    const model = document.createElement("p");
    model.className = "session-model";
    model.textContent = `${entry.model.name}@${entry.model.version}`;
    text.append(name, result, model);
    item.append(picture, text);
    return item;
  }

  function render(session) {
    const open = Boolean(id);
    view.start.hidden = open;
    view.leave.hidden = !open;
    view.exports.forEach((button) => { button.hidden = !open; });
    view.history.hidden = !open || !session?.history.length;
    view.section.dataset.session = open ? id : "";
    if (!open) {
      view.state.textContent = "Not in a session: start one to keep this analysis together and come back to it.";
      view.history.replaceChildren();
      return;
    }
    if (!session) return;
    const jobs = session.history.length === 1 ? "1 image" : `${session.history.length} images`;
    view.state.textContent = `Session ${id.slice(0, 8)} · ${jobs} · until ${new Date(session.expires_at).toLocaleString()}. `
      + "Its address reopens it.";
    view.history.replaceChildren(...session.history.map(entryNode));
  }

  // One read at a time; a change heard during a read gets one more read after it, never none.
  async function refresh() {
    if (!id) return;
    if (refreshing) {
      stale = true;
      return refreshing;
    }
    refreshing = (async () => {
      try {
        do {
          stale = false;
          const response = await fetch(path(), { headers: headers() });
          if (response.status === 404) {
            announce("This session has ended or is not yours; starting without one.");
            leave();
            return;
          }
          if (response.ok) render(await response.json());
        } while (stale && id);
      } finally {
        refreshing = null;
      }
    })();
    return refreshing;
  }

  async function follow() {
    source?.close();
    if (!id) return;
    let url = `${path()}/events`;
    if (apiKey()) {
      const issued = await fetch(`${path()}/stream-token`, { method: "POST", headers: headers() });
      if (!issued.ok) return;
      url += `?token=${encodeURIComponent((await issued.json()).token)}`;
    }
    source = new EventSource(url);
    source.addEventListener("session", () => refresh()); // the counts after each change
    source.addEventListener("session-ended", () => leave());
  }

  async function start() {
    const response = await fetch("/v1/sessions", { method: "POST", headers: headers() });
    if (!response.ok) {
      announce(`Could not start a session (error ${response.status}).`);
      return;
    }
    const session = await response.json();
    id = session.id;
    setUrl();
    render(session);
    announce("Session started: the images you send now are kept together in it.");
    await follow();
  }

  function leave() {
    source?.close();
    source = null;
    id = null;
    setUrl();
    render(null);
  }

  async function download(format) {
    const response = await fetch(`${path()}?export=${format}`, { headers: headers() });
    if (!response.ok) {
      announce(`Could not export the session (error ${response.status}).`);
      return;
    }
    const link = document.createElement("a");
    link.href = URL.createObjectURL(await response.blob());
    link.download = `session-${id}.${format}`;
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
  }

  view.start.addEventListener("click", start);
  view.leave.addEventListener("click", leave);
  view.exports[0].addEventListener("click", () => download("json"));
  view.exports[1].addEventListener("click", () => download("csv"));

  return Object.freeze({
    id: () => id,
    // Reopen what the URL names (and again after the API key changed).
    async open() {
      render(null);
      await refresh();
      await follow();
    },
    // A panel's accepted upload: keep each image's thumbnail for the session's list.
    async noteAccepted(files, body) {
      if (!id || !body) return;
      const jobIds = body.jobs ? body.jobs.map((job) => job.id) : [body.id];
      await Promise.all(files.map(async (file, index) => {
        try {
          localStorage.setItem(THUMB_KEY(jobIds[index]), await thumbnailOf(file));
        } catch {
          // no thumbnail for an image the browser cannot draw, or a full localStorage: the list shows a placeholder
        }
      }));
      await refresh();
    },
  });
}
