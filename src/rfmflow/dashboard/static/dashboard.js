// rfmflow dashboard: the little interaction the pages need (no library, nothing fetched).
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  // Ask before a form button that changes a lot (applying a scheme re-scores everyone).
  document.querySelectorAll("button[data-confirm]").forEach(function (button) {
    button.addEventListener("click", function (event) {
      if (!window.confirm(button.getAttribute("data-confirm"))) { event.preventDefault(); }
    });
  });
  // A scheme problem's "line N" selects that line in the editor.
  var editor = document.getElementById("yaml");
  function goTo(line) {
    if (!editor) { return; }
    var lines = editor.value.split("\n");
    var start = 0;
    for (var i = 0; i < line - 1 && i < lines.length; i++) { start += lines[i].length + 1; }
    var end = start + (lines[line - 1] || "").length;
    editor.focus();
    editor.setSelectionRange(start, end);
    var height = editor.scrollHeight / Math.max(lines.length, 1);
    editor.scrollTop = Math.max(0, (line - 3) * height);
  }
  document.querySelectorAll("a.goto").forEach(function (link) {
    link.addEventListener("click", function (event) {
      event.preventDefault();
      goTo(parseInt(link.getAttribute("data-line"), 10));
    });
  });
  var firstProblem = document.querySelector("#problems a.goto");
  if (firstProblem) { goTo(parseInt(firstProblem.getAttribute("data-line"), 10)); }
});
