// A minimal panel, as a team writes one: one image at a time, its place in line while it waits,
// a Cancel button while it is queued, and its top three predictions. It uses only `host` and the
// shell's `api` (web/static/panel-api.js) and the shell's styles; copy it to start your own.

export const apiVersion = "1";

export function mount(host, api) {
  host.innerHTML = `
    <div class="quick-look">
      <label class="button">Choose an image<input type="file" accept="image/*" class="visually-hidden"></label>
      <p class="quick-status" aria-live="polite"></p>
      <button type="button" class="button-quiet quick-cancel" hidden>Cancel</button>
      <ol class="predictions" hidden></ol>
    </div>`;
  const input = host.querySelector("input");
  const status = host.querySelector(".quick-status");
  const cancel = host.querySelector(".quick-cancel");
  const predictions = host.querySelector(".predictions");
  let jobId = null;

  function show(doc) {
    cancel.hidden = doc.status !== "queued";
    if (doc.status === "succeeded" && doc.result) {
      status.textContent = `Done: ${doc.result.predictions.length} predictions.`;
      api.renderPredictions(predictions, doc.result.predictions);
    } else if (doc.status === "failed") {
      status.textContent = `Failed: ${doc.error?.message || "the model could not classify this image"}.`;
    } else if (doc.status === "cancelled") {
      status.textContent = "Cancelled before it started.";
    } else if (doc.status) {
      status.textContent = doc.status === "queued" ? "Queued…" : "Running…";
    }
  }

  input.addEventListener("change", async () => {
    const file = input.files[0];
    input.value = "";
    if (!file) return;
    predictions.hidden = true;
    status.textContent = `Sending ${file.name}…`;
    const answer = await api.submit(file, { topK: 3 });
    if (!answer.ok) {
      status.textContent = answer.text;
      return;
    }
    jobId = answer.body.id;
    show(answer.body);
    api.follow(jobId, (type, data) => {
      if (type === "status") show(data);
      else if (type === "position") status.textContent = data.ahead === 0 ? "Next in line." : `Queued: ${data.ahead} ahead.`;
      else status.textContent = data.text;
    });
  });

  cancel.addEventListener("click", async () => {
    const answer = await api.cancel(jobId);
    if (answer.ok) show(answer.body);
    else status.textContent = answer.text;
  });
}
