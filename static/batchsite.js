// Batchsite's few behaviours beyond htmx: insert a column into the prompt, confirm risky actions.
(function () {
  "use strict";

  function insertAtCursor(textarea, text) {
    var start = textarea.selectionStart, end = textarea.selectionEnd;
    if (typeof start !== "number") { start = end = textarea.value.length; }
    textarea.focus();
    textarea.setRangeText(text, start, end, "end");
    // Let htmx refresh the preview as if the text had been typed.
    textarea.dispatchEvent(new Event("input", { bubbles: true }));
  }

  document.addEventListener("click", function (event) {
    var chip = event.target.closest("[data-insert-column]");
    if (!chip) { return; }
    var prompt = document.getElementById("id_prompt");
    if (prompt) {
      event.preventDefault();
      insertAtCursor(prompt, "{{" + chip.getAttribute("data-insert-column") + "}}");
    }
  });

  // A poll after the session expired lands on the login page: show it whole, not in a card.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var url = event.detail.xhr && event.detail.xhr.responseURL;
    if (url && new URL(url).pathname === "/login/") {
      event.detail.shouldSwap = false;
      window.location.href = url;
    }
  });

  document.addEventListener("submit", function (event) {
    var message = event.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) {
      event.preventDefault();
    }
  });
})();
