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

  // Live checks and form requests (save, add, remove, the kind select's refresh) must not overlap: a form request
  // replaces the form, and a check's answer names error lists of the form it was sent from (htmx logs
  // "oobErrorNoTarget" for those the new form lacks). So no check starts while a form request is in flight (its
  // answer re-renders the form; the next edit checks again), and the answer of a check sent before a form request
  // is dropped. Aborting the check instead would log an error too.
  const formRequests = new Set();
  const checkSentAt = new WeakMap(); // check xhr -> generation when it was sent
  let generation = 0;
  function isCheck(elt) { return elt instanceof Element && elt.hasAttribute("data-rubric-check"); }
  function inEditor(elt) { return elt instanceof Element && elt.closest("form[data-rubric-editor]") !== null; }
  document.addEventListener("htmx:confirm", function (event) {
    if (isCheck(event.detail.elt) && formRequests.size > 0) event.preventDefault();
  });
  document.addEventListener("htmx:beforeRequest", function (event) {
    const elt = event.detail.elt;
    const xhr = event.detail.xhr;
    if (isCheck(elt)) {
      checkSentAt.set(xhr, generation);
      // On the element itself: once the form was replaced, the old check element is detached and its events no
      // longer bubble to the document.
      elt.addEventListener("htmx:beforeSwap", function drop(swap) {
        if (swap.detail.xhr !== xhr) return;
        elt.removeEventListener("htmx:beforeSwap", drop);
        if (checkSentAt.get(xhr) !== generation) swap.detail.shouldSwap = false;
      });
      return;
    }
    if (!inEditor(elt)) return;
    generation += 1;
    formRequests.add(xhr);
    xhr.addEventListener("loadend", function () { formRequests.delete(xhr); });
  });

  document.addEventListener("input", function (event) {
    const form = event.target.closest && event.target.closest("form[data-rubric-editor]");
    if (form && event.target.matches("input[data-weight]")) updateShares(form);
  });
})();
