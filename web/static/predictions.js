// Predictions as every panel shows them: label, score and a confidence bar, best first.

export function formatScore(score) {
  const percent = score * 100;
  return `${percent.toFixed(percent < 10 ? 1 : 0)}%`;
}

export function humanLabel(label) {
  return String(label).replaceAll("_", " ");
}

// Fills `list` (an <ol> or <ul>) with one row per prediction; hides it when there are none.
export function renderPredictions(list, predictions) {
  list.classList.add("predictions");
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
