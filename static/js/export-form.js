// Show only the export filters that the chosen kind reads (the server ignores the others anyway).
// A filter for some kinds carries them: <select data-export-kinds="sft preferences">.
(function () {
  "use strict";

  function update(form) {
    var kind = form.querySelector("[name=kind]");
    if (!kind) return;
    form.querySelectorAll("[data-export-kinds]").forEach(function (field) {
      var applies = field.dataset.exportKinds.split(" ").indexOf(kind.value) !== -1;
      var row = field.closest("p") || field;
      row.hidden = !applies;
      field.disabled = !applies;
    });
  }

  function all() {
    document.querySelectorAll("#export-form").forEach(update);
  }

  document.addEventListener("change", function (event) {
    var form = event.target.closest && event.target.closest("#export-form");
    if (form && event.target.name === "kind") update(form);
  });
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", all);
  } else {
    all();
  }
})();
