// The what-if run page: polls the run's progress while the worker replays, then reloads
// the page once it has finished (the outcomes are rendered by the server).
(function () {
  "use strict";
  var bar = document.getElementById("whatif-progress");
  if (!bar || bar.dataset.finished === "true") { return; }
  var label = document.getElementById("whatif-progress-label");
  function poll() {
    fetch(bar.dataset.url, {headers: {"Accept": "application/json"}, credentials: "same-origin"})
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (progress) {
        if (progress) {
          bar.max = progress.total || 1;
          bar.value = progress.done;
          if (label) { label.textContent = progress.done + " / " + progress.total; }
          if (progress.finished) { window.location.reload(); return; }
        }
        window.setTimeout(poll, 1500);
      })
      .catch(function () { window.setTimeout(poll, 5000); });
  }
  window.setTimeout(poll, 1000);
})();
