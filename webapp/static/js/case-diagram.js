// The case page's diagram: the case and each called process instance with its own states
// (see diagram-nav.js), opened on the case's own process.
(function () {
  const data = JSON.parse(document.getElementById("case-diagram-data").textContent);
  const box = document.getElementById("diagram");
  const nav = window.zerorunDiagram({
    data: data, container: box, trail: document.getElementById("diagram-trail"),
    select: document.getElementById("diagram-process"),
    tools: box.closest("section") || document,
  });
  nav.ready.catch((err) => {
    box.textContent = box.dataset.error + " " + err.message;
  });
})();
