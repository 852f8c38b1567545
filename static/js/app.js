// Behaviour shared by every page, as a file: the Content-Security-Policy allows no inline script or handler.
(function () {
  "use strict";

  // <form data-confirm="Delete …?">: ask before submitting.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  }, true);

  document.addEventListener("click", function (event) {
    var target = event.target instanceof Element ? event.target : null;
    if (!target) return;
    // <a data-back href="/">: the previous page when there is one, the link's own address otherwise.
    var back = target.closest("a[data-back]");
    if (back && window.history.length > 1) {
      event.preventDefault();
      window.history.back();
      return;
    }
    // <tr data-edit-on-click hx-trigger="edit-row">: a click on the row, not on a control inside it, opens its editor.
    var row = target.closest("[data-edit-on-click]");
    if (row && !target.closest("a,button,select,input,textarea,form") && window.htmx) {
      window.htmx.trigger(row, "edit-row");
    }
  });
})();
