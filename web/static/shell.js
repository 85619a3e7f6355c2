// The portal shell: reads /v1/models and gives each model a section of its own, into which it
// imports the model's panel (an ES module, `export function mount(host, api)`) at run time. A panel
// that fails to load, to mount, or later in a callback shows an error card in its own section; the
// shell and the other panels go on. The shell's state lives in this module, out of panels' reach.

import { createPanelApi, PANEL_API_VERSION } from "./panel-api.js";
import { createSession } from "./session.js";

const GENERIC_PANEL = "/static/panels/generic.js";
// A panel that has not loaded, or mounted, by then is shown as failed (a team's origin may hang).
const LOAD_TIMEOUT_MS = 15_000;
const TERMINAL = Object.freeze(new Set(document.body.dataset.terminalStatuses.split(" ")));

const $ = (selector) => document.querySelector(selector);

function withinTime(promise, what) {
  const late = new Promise((_, reject) => {
    setTimeout(() => reject(new Error(`it did not ${what} within ${LOAD_TIMEOUT_MS / 1000} s`)), LOAD_TIMEOUT_MS);
  });
  return Promise.race([promise, late]);
}
const shell = {
  apiKey: $("#api-key"),
  panels: $("#panels"),
  nav: $("#model-nav"),
  announcer: $("#announcer"),
  problem: $("#shell-problem"),
};

// One polite live region for the whole page, shared by the panels.
function announce(message) {
  const line = document.createElement("p");
  line.textContent = message;
  shell.announcer.append(line);
  while (shell.announcer.childElementCount > 3) shell.announcer.firstElementChild.remove();
}

const apiKey = () => shell.apiKey.value.trim();
const session = createSession({ apiKey, announce });

function describe(error) {
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  return String(error);
}

function statusLine(model) {
  const workers = model.live_workers === 1 ? "1 worker" : `${model.live_workers} workers`;
  const waiting = model.backlog ? ` · ${model.backlog} waiting` : "";
  return model.status === "serving" ? `${workers}${waiting}` : `no worker yet: jobs wait queued${waiting}`;
}

function section(model) {
  const node = $("#panel-template").content.firstElementChild.cloneNode(true);
  node.id = `model-${model.name}`;
  node.dataset.model = model.name;
  node.setAttribute("aria-labelledby", `model-${model.name}-heading`);
  node.querySelector(".panel-title").id = `model-${model.name}-heading`;
  node.querySelector(".panel-title").textContent = model.name;
  node.querySelector(".panel-description").textContent = model.description;
  node.querySelector(".panel-status").textContent = statusLine(model);
  node.querySelector(".panel-status").dataset.status = model.status;
  return node;
}

function navLink(model) {
  const item = document.createElement("li");
  const link = document.createElement("a");
  link.href = `#model-${model.name}`;
  link.textContent = model.name;
  item.append(link);
  return item;
}

// One panel's life: load, mount, and from then on any reported error replaces it with its card.
// Each mount gets an api of its own: once it failed or was replaced, its callbacks are ignored.
class PanelSlot {
  constructor(model, node) {
    this.model = model;
    this.node = node;
    this.host = node.querySelector(".panel-body");
    this.failed = false;
    this.generation = 0;
    this.source = model.panel?.url || GENERIC_PANEL;
    this.node.dataset.panelSource = this.source;
  }

  apiFor(generation) {
    const current = () => generation === this.generation && !this.failed;
    return createPanelApi(this.model, {
      apiKey,
      terminal: TERMINAL,
      announce,
      sessionId: session.id,
      noteAccepted: session.noteAccepted,
      reportError: (error) => current() && this.fail(error),
      guard: (callback) => (...args) => {
        if (!current()) return undefined;
        try {
          return callback(...args);
        } catch (error) {
          this.fail(error);
          return undefined;
        }
      },
    });
  }

  async load() {
    const generation = ++this.generation;
    this.failed = false;
    this.node.dataset.state = "loading";
    try {
      if (this.source === this.model.panel?.url && this.model.panel.problem) throw new Error(this.model.panel.problem);
      const module = await withinTime(import(new URL(this.source, document.baseURI).href), "load");
      const major = String(module.apiVersion || "1").split(".")[0];
      if (major !== PANEL_API_VERSION.split(".")[0]) {
        throw new Error(`it needs panel interface ${module.apiVersion}; this portal offers ${PANEL_API_VERSION}`);
      }
      if (typeof module.mount !== "function") throw new Error("it exports no mount(host, api) function");
      this.host.replaceChildren();
      await withinTime(Promise.resolve(module.mount(this.host, this.apiFor(generation))), "mount");
      if (!this.failed) this.node.dataset.state = "ready";
    } catch (error) {
      this.fail(error);
    }
  }

  fail(error) {
    if (this.failed) return;
    this.failed = true;
    console.error(`panel of ${this.model.name} (${this.source}) failed:`, error);
    const card = $("#panel-error-template").content.firstElementChild.cloneNode(true);
    card.querySelector(".panel-error-detail").textContent = describe(error);
    card.querySelector(".panel-error-source").textContent = this.source;
    const fallback = card.querySelector(".use-generic");
    if (this.source === GENERIC_PANEL) fallback.remove();
    else fallback.addEventListener("click", () => this.useGeneric());
    this.host.replaceChildren(card);
    this.node.dataset.state = "failed";
    announce(`The panel of ${this.model.name} could not be shown.`);
  }

  useGeneric() {
    this.source = GENERIC_PANEL;
    this.node.dataset.panelSource = this.source;
    this.load().then(() => this.host.querySelector("button, input, a")?.focus());
  }
}

// A throw in a panel's own event handler reaches the window: it is that panel's, by its script's address.
function ownerOf(slots, scriptUrl) {
  if (!scriptUrl) return null;
  return slots.find((slot) => {
    if (slot.failed || slot.source === GENERIC_PANEL) return false;
    const base = new URL(".", new URL(slot.source, document.baseURI)).href;
    return scriptUrl.startsWith(base);
  }) || null;
}

async function readModels() {
  const response = await fetch("/v1/models", { headers: apiKey() ? { "X-API-Key": apiKey() } : {} });
  if (response.status === 401) throw new Error("This server needs an API key. Enter it above to see its models.");
  if (!response.ok) throw new Error(`Could not read the models this server serves (error ${response.status}).`);
  const { default_model: first, models } = await response.json();
  return [...models.filter((model) => model.name === first), ...models.filter((model) => model.name !== first)];
}

async function start() {
  let models;
  try {
    models = await readModels();
  } catch (error) {
    shell.problem.textContent = error instanceof TypeError ? "Could not reach the server. Reload to try again." : error.message;
    shell.problem.hidden = false;
    shell.apiKey.addEventListener("change", start, { once: true });
    return;
  }
  shell.problem.hidden = true;
  session.open(); // the session the URL names, if any: its history beside the panels
  const slots = models.map((model) => new PanelSlot(model, section(model)));
  shell.panels.replaceChildren(...slots.map((slot) => slot.node));
  shell.nav.replaceChildren(...models.map(navLink));
  window.addEventListener("error", (event) => ownerOf(slots, event.filename)?.fail(event.error || event.message));
  await Promise.all(slots.map((slot) => slot.load()));
}

shell.apiKey.value = sessionStorage.getItem("asyncinfer-api-key") || "";
shell.apiKey.addEventListener("change", () => sessionStorage.setItem("asyncinfer-api-key", apiKey()));
$("#key-form").addEventListener("submit", (event) => {
  event.preventDefault(); // Enter in the field must not reload, and counts as a change of key
  shell.apiKey.dispatchEvent(new Event("change"));
});
// A file dropped outside every panel must not make the browser navigate away to show it.
window.addEventListener("dragover", (event) => event.preventDefault());
window.addEventListener("drop", (event) => event.preventDefault());
start().finally(() => {
  document.documentElement.dataset.ready = "true"; // lets tests wait for every panel to settle
});
