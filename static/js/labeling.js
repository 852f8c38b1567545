// Keyboard-first labeling. No framework, no build step: plain DOM plus htmx (autosave) events.
(function () {
  "use strict";
  const form = document.querySelector("form[data-labeling]");
  const pairwise = document.querySelector("form[data-pairwise]");
  const help = document.getElementById("keys-help");
  let pending = 0; // autosaves in flight; submitting waits for them so it sends the newest row versions
  let focusedKey = null;

  // A stale edit answers 409 with the fieldset showing the saved value: swap it in instead of dropping it.
  document.body.addEventListener("htmx:beforeSwap", (event) => {
    const status = event.detail.xhr.status;
    if (status === 409 || status === 400) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
  document.body.addEventListener("htmx:beforeRequest", () => { pending += 1; });
  document.body.addEventListener("htmx:afterRequest", () => { pending = Math.max(0, pending - 1); });
  document.body.addEventListener("htmx:afterSwap", () => { if (focusedKey) focus(focusedKey); });

  function criteria() { return form ? Array.from(form.querySelectorAll("fieldset.criterion")) : []; }

  function focus(key) {
    focusedKey = key;
    for (const fieldset of criteria()) {
      const on = fieldset.dataset.key === key;
      fieldset.classList.toggle("focused", on);
      fieldset.setAttribute("aria-current", on ? "true" : "false");
      if (on) fieldset.scrollIntoView({ block: "nearest" });
    }
  }

  function move(step) {
    const list = criteria();
    if (!list.length) return;
    const index = list.findIndex((f) => f.dataset.key === focusedKey);
    const next = Math.min(list.length - 1, Math.max(0, (index < 0 ? 0 : index + step)));
    focus(list[next].dataset.key);
  }

  function pick(digit) {
    const fieldset = criteria().find((f) => f.dataset.key === focusedKey);
    if (!fieldset) return;
    const radios = fieldset.querySelectorAll("input[type=radio]");
    const number = fieldset.querySelector("input[type=number]");
    if (number) { number.focus(); return; }
    const radio = radios[digit - 1];
    if (!radio) return;
    radio.checked = true;
    radio.dispatchEvent(new Event("change", { bubbles: true }));
    move(1); // the model the help states: a pick answers the focused criterion and focuses the next one
  }

  function submitWhenSaved(target) {
    const started = Date.now();
    (function wait() {
      if (pending > 0 && Date.now() - started < 5000) { setTimeout(wait, 25); return; }
      target.requestSubmit();
    })();
  }

  function typing(element) {
    return element && (element.tagName === "TEXTAREA" || element.tagName === "SELECT" ||
      (element.tagName === "INPUT" && !["radio", "checkbox", "submit", "button"].includes(element.type)));
  }

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (typing(event.target)) {
      if (event.key === "Escape") event.target.blur();
      return;
    }
    if (help && help.open && event.key !== "?" && event.key !== "Escape") return;
    const key = event.key;
    if (key === "?") { event.preventDefault(); if (help) { help.open ? help.close() : help.showModal(); } return; }
    if (key === "p") {
      // Back to the item labeled before this one (the page's "Previous item" link), to change an answer.
      const previous = document.getElementById("previous-item");
      if (previous) { event.preventDefault(); window.location.assign(previous.href); }
      return;
    }
    if (pairwise) {
      const button = pairwise.querySelector(`button[data-key="${key}"]`);
      if (button) { event.preventDefault(); pairwise.requestSubmit(button); }
      else if (key === "s") { const skip = document.getElementById("skip-form"); if (skip) { event.preventDefault(); skip.requestSubmit(); } }
      else if (key === "c") { const comment = document.getElementById("id_comment"); if (comment) { event.preventDefault(); comment.focus(); } }
      return;
    }
    if (!form) return;
    if (/^[1-9]$/.test(key)) { event.preventDefault(); pick(Number(key)); }
    else if (key === "j" || key === "ArrowDown") { event.preventDefault(); move(1); }
    else if (key === "k" || key === "ArrowUp") { event.preventDefault(); move(-1); }
    else if (key === "n" || key === "Enter") { event.preventDefault(); submitWhenSaved(form); }
    else if (key === "s") { const skip = document.getElementById("skip-form"); if (skip) { event.preventDefault(); skip.requestSubmit(); } }
    else if (key === "h") { const flag = document.getElementById("id_reward_hacking"); if (flag) { event.preventDefault(); flag.checked = !flag.checked; flag.dispatchEvent(new Event("change", { bubbles: true })); } }
    else if (key === "c") { const comment = document.getElementById("id_comment"); if (comment) { event.preventDefault(); comment.focus(); } }
  });

  document.querySelectorAll("[data-keys-toggle]").forEach((button) => {
    button.addEventListener("click", () => { if (help) help.showModal(); });
  });
  if (form) {
    form.addEventListener("click", (event) => {
      const fieldset = event.target.closest("fieldset.criterion");
      if (fieldset) focus(fieldset.dataset.key);
    });
    const list = criteria();
    const firstOpen = list.find((f) => !f.querySelector("input:checked") && !(f.querySelector("input[type=number]") || {}).value);
    if (list.length) focus((firstOpen || list[0]).dataset.key);
  }
})();
