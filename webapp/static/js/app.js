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
