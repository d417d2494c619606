// Batchsite's few behaviours beyond htmx: insert a column into the prompt, confirm risky actions,
// tell the progress poll which rows the page shows, and say when an in-place action failed.
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

  // A grounding tool's switch shows only for the models that take it (data-tool-models); a
  // hidden switch is also turned off, so it is not sent for a model without the tool.
  function showTools() {
    var model = document.getElementById("id_model");
    if (!model) { return; }
    document.querySelectorAll("[data-tool-models]").forEach(function (box) {
      var ok = box.getAttribute("data-tool-models").split(" ").indexOf(model.value) !== -1;
      var wrapper = box.closest("[data-tool]") || box;
      wrapper.hidden = !ok;
      if (!ok) { box.checked = false; }
    });
  }
  document.addEventListener("change", function (event) {
    if (event.target && event.target.id === "id_model") { showTools(); }
  });
  document.addEventListener("DOMContentLoaded", showTools);

  document.addEventListener("click", function (event) {
    var chip = event.target.closest("[data-insert-column]");
    if (!chip) { return; }
    var prompt = document.getElementById("id_prompt");
    if (prompt) {
      event.preventDefault();
      insertAtCursor(prompt, "{{" + chip.getAttribute("data-insert-column") + "}}");
    }
  });

  // The progress poll sends the rows on screen with their status; the answer carries the rows
  // that moved on, and the filter counts, with the counters (one poll, one truth). The view's
  // status and search go too, so the chips and downloads it re-renders keep them.
  document.addEventListener("htmx:configRequest", function (event) {
    var elt = event.detail.elt;
    if (!elt || elt.id !== "batch-progress") { return; }
    var results = document.getElementById("batch-results");
    if (!results) { return; }
    var seen = [];
    results.querySelectorAll("tr[data-status]").forEach(function (tr) {
      seen.push(tr.id.slice(4) + ":" + tr.getAttribute("data-status"));
    });
    event.detail.parameters.seen = seen.join(",");
    event.detail.parameters.view_status = results.getAttribute("data-status") || "all";
    event.detail.parameters.view_q = results.getAttribute("data-query") || "";
    event.detail.parameters.view_path = results.getAttribute("data-path") || "";
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

  // An in-place action the server refused (e.g. retrying a row that is no longer failed).
  document.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail.xhr, box = document.getElementById("live-message");
    if (!box || !xhr || xhr.status !== 409) { return; }
    box.textContent = xhr.responseText;
    box.hidden = false;
  });

  // The Output section: Text or Columns, the field editor's rows, the Advanced schema box.
  function changed(element) {
    element.dispatchEvent(new Event("change", { bubbles: true }));
  }

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target.matches("[data-output-mode]")) {
      var columns = document.getElementById("output-columns");
      if (columns) { columns.hidden = target.value !== "columns"; }
    } else if (target.matches("[data-output-advanced]")) {
      var editor = document.getElementById("field-editor");
      var box = document.getElementById("output-schema-box");
      if (editor) { editor.hidden = target.checked; }
      if (box) { box.hidden = !target.checked; }
    }
  });

  document.addEventListener("click", function (event) {
    var add = event.target.closest("[data-add-field]");
    var remove = event.target.closest("[data-remove-field]");
    var rows = document.getElementById("field-rows");
    if (add && rows) {
      var template = document.getElementById("field-row-template");
      rows.appendChild(template.content.cloneNode(true));
      var inputs = rows.querySelectorAll("input[name=field_name]");
      inputs[inputs.length - 1].focus();
    } else if (remove && rows) {
      var row = remove.closest("tr");
      if (rows.rows.length > 1) {
        row.remove();
      } else {
        row.querySelectorAll("input").forEach(function (input) { input.value = ""; });
      }
      changed(rows);
    }
  });

  document.addEventListener("submit", function (event) {
    var message = event.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) {
      event.preventDefault();
    }
  });
})();
