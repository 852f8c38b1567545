// Refuse an example file above the import limit before uploading it (the server checks again).
// The file input carries the limit: <input type="file" data-max-bytes="..." data-error-target="id">.
(function () {
  "use strict";

  function tooLarge(input) {
    var file = input.files && input.files[0];
    var max = Number(input.dataset.maxBytes);
    if (!file || !max || file.size <= max) return "";
    var mb = function (bytes) { return Math.round(bytes / 1048576); };
    return "The file is " + mb(file.size) + " MB; imports are limited to " + mb(max) +
      " MB. Split it into smaller files and import them one after another.";
  }

  function show(input, message) {
    var target = document.getElementById(input.dataset.errorTarget);
    if (!target) return;
    target.textContent = message;
    target.hidden = !message;
  }

  document.addEventListener("change", function (event) {
    var input = event.target;
    if (input instanceof HTMLInputElement && input.type === "file" && input.dataset.maxBytes) {
      show(input, tooLarge(input));
    }
  });

  document.addEventListener("submit", function (event) {
    var inputs = event.target.querySelectorAll("input[type=file][data-max-bytes]");
    for (var i = 0; i < inputs.length; i++) {
      var message = tooLarge(inputs[i]);
      if (message) {
        event.preventDefault();
        show(inputs[i], message);
        return;
      }
    }
  });
})();
