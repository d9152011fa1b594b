// Renders a case's diagrams with bpmn-js and marks completed, active and waiting elements.
(function () {
  const data = JSON.parse(document.getElementById("case-diagram-data").textContent);
  const select = document.getElementById("diagram-process");
  const viewer = new BpmnJS({ container: "#diagram" });

  async function show(processId) {
    await viewer.importXML(data.diagrams[processId]);
    const canvas = viewer.get("canvas");
    const registry = viewer.get("elementRegistry");
    const states = data.states[processId] || {};
    for (const [state, ids] of Object.entries(states)) {
      for (const id of ids) {
        if (registry.get(id)) canvas.addMarker(id, "state-" + state);
      }
    }
    canvas.zoom("fit-viewport");
    document.getElementById("diagram").dataset.ready = processId;
  }

  select.addEventListener("change", () => show(select.value));
  show(select.value).catch((err) => {
    const box = document.getElementById("diagram");
    box.textContent = box.dataset.error + " " + err.message;
  });
})();
