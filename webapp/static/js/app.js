// Behaviour every page may use, kept out of the templates (the pages allow no inline script).
(function () {
  "use strict";
  // A form with data-confirm asks before it is sent (terminating a case, for instance).
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form && form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
    }
  }, true);
  // On a phone a data table reads as cards: each cell is labelled with its column's header
  // (templates may label cells themselves). Tables of inputs, sheets and diffs stay tables.
  document.addEventListener("DOMContentLoaded", function () {
    var tables = document.querySelectorAll("table.grid:not(.rows-table):not(.diff):not(.dmn):not(.no-stack)");
    Array.prototype.forEach.call(tables, function (table) {
      if (table.closest(".sheet") || table.closest(".editor-layout")) { return; }
      var heads = table.querySelectorAll("thead th");
      if (!heads.length) { return; }
      var names = Array.prototype.map.call(heads, function (th) { return th.textContent.trim(); });
      Array.prototype.forEach.call(table.querySelectorAll("tbody tr"), function (tr) {
        var column = 0;
        Array.prototype.forEach.call(tr.children, function (cell) {
          if (!cell.hasAttribute("data-label") && cell.tagName === "TD") {
            cell.setAttribute("data-label", names[column] || "");
          }
          column += cell.colSpan || 1;
        });
      });
      table.classList.add("stack");
    });
  });
  // In a wide sheet (the list import preview) bring the first flagged cell into view.
  document.addEventListener("DOMContentLoaded", function () {
    var bad = document.querySelector(".sheet td.bad");
    if (bad && bad.scrollIntoView) {
      bad.scrollIntoView({block: "nearest", inline: "center"});
      var input = bad.querySelector("input");
      if (input) { input.focus({preventScroll: true}); }
    }
  });
})();
