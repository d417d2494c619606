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

  // "Rows from: a spreadsheet | documents": show the parts of the form that apply.
  function showSource(form) {
    var checked = form.querySelector("[data-rows-source]:checked");
    var source = checked ? checked.value : "spreadsheet";
    form.querySelectorAll("[data-source-panel]").forEach(function (panel) {
      panel.hidden = panel.getAttribute("data-source-panel") !== source;
    });
  }
  document.addEventListener("change", function (event) {
    if (event.target.matches("[data-rows-source]")) { showSource(event.target.form); }
  });
  document.querySelectorAll("form").forEach(function (form) {
    if (form.querySelector("[data-rows-source]")) { showSource(form); }
  });

  // Files dropped on a drop zone join the files already chosen in its input.
  document.addEventListener("dragover", function (event) {
    var zone = event.target.closest("[data-drop-zone]");
    if (zone) { event.preventDefault(); zone.classList.add("is-dragging"); }
  });
  document.addEventListener("dragleave", function (event) {
    var zone = event.target.closest("[data-drop-zone]");
    if (zone) { zone.classList.remove("is-dragging"); }
  });
  document.addEventListener("drop", function (event) {
    var zone = event.target.closest("[data-drop-zone]");
    if (!zone) { return; }
    event.preventDefault();
    zone.classList.remove("is-dragging");
    var input = zone.querySelector("input[type=file]");
    var all = new DataTransfer();
    Array.prototype.forEach.call(input.files, function (f) { all.items.add(f); });
    Array.prototype.forEach.call(event.dataTransfer.files, function (f) { all.items.add(f); });
    input.files = all.files;
    input.dispatchEvent(new Event("change", { bubbles: true }));
  });

  document.addEventListener("submit", function (event) {
    var message = event.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) {
      event.preventDefault();
    }
  });
})();
