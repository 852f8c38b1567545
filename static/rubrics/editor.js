// Rubric editor: the normalized share of each criterion's weight, updated as the user types.
// share = weight / sum of the weights > 0; weight 0 is a logged metric, not reward (same rule and rounding as
// webapp/rubrics/specs.py weight_shares, which renders the initial values).
(function () {
  "use strict";

  function formatShare(share) {
    return Math.round(share * 1000) / 10 + "%";
  }

  function updateShares(form) {
    const inputs = Array.from(form.querySelectorAll("input[data-weight]"));
    const weights = inputs.map(function (input) {
      const text = input.value.trim();
      const w = Number(text);
      return text !== "" && Number.isFinite(w) && w >= 0 ? w : null;
    });
    const total = weights.reduce(function (sum, w) { return w !== null && w > 0 ? sum + w : sum; }, 0);
    inputs.forEach(function (input, i) {
      const out = form.querySelector('output[data-share-for="' + input.id + '"]');
      if (!out) return;
      const w = weights[i];
      out.textContent = w === null ? "—" : w === 0 ? "metric" : formatShare(w / total);
    });
  }

  document.addEventListener("input", function (event) {
    const form = event.target.closest && event.target.closest("form[data-rubric-editor]");
    if (form && event.target.matches("input[data-weight]")) updateShares(form);
  });
})();
