// Renders a case's diagrams with bpmn-js (the navigated viewer: drag to pan, Ctrl + wheel to
// zoom), marks completed, active and waiting elements, centres the current step at a
// readable size, and opens a called process when its call activity is clicked, with a trail
// back to the caller.
(function () {
  const data = JSON.parse(document.getElementById("case-diagram-data").textContent);
  const select = document.getElementById("diagram-process");
  const box = document.getElementById("diagram");
  const trail = document.getElementById("diagram-trail");
  const viewer = new BpmnJS({ container: "#diagram" });
  const names = {};
  select.querySelectorAll("option").forEach((o) => { names[o.value] = o.textContent; });
  let path = [select.value];

  function current() {
    const registry = viewer.get("elementRegistry");
    const states = data.states[path[path.length - 1]] || {};
    const ids = (states.active || []).concat(states.waiting || []);
    return ids.map((id) => registry.get(id)).filter(Boolean)[0];
  }

  function centre() {
    const canvas = viewer.get("canvas");
    const element = current();
    if (!element) { canvas.zoom("fit-viewport"); return; }
    canvas.zoom(1);
    const box = canvas.viewbox();
    canvas.viewbox({ x: element.x + element.width / 2 - box.width / 2,
                     y: element.y + element.height / 2 - box.height / 2,
                     width: box.width, height: box.height });
  }

  function drawTrail() {
    trail.textContent = "";
    if (path.length < 2) { return; }
    path.forEach((pid, index) => {
      const label = names[pid] || pid;
      if (index === path.length - 1) {
        const here = document.createElement("span");
        here.textContent = label;
        here.setAttribute("aria-current", "page");
        trail.appendChild(here);
      } else {
        const link = document.createElement("a");
        link.href = "#diagram";
        link.textContent = label;
        link.addEventListener("click", (event) => {
          event.preventDefault();
          path = path.slice(0, index + 1);
          show();
        });
        trail.appendChild(link);
        trail.appendChild(document.createTextNode(" › "));
      }
    });
  }

  async function show() {
    const processId = path[path.length - 1];
    await viewer.importXML(data.diagrams[processId]);
    const canvas = viewer.get("canvas");
    const registry = viewer.get("elementRegistry");
    const states = data.states[processId] || {};
    for (const [state, ids] of Object.entries(states)) {
      for (const id of ids) {
        if (registry.get(id)) canvas.addMarker(id, "state-" + state);
      }
    }
    registry.filter((e) => e.type === "bpmn:CallActivity").forEach((e) => {
      const called = e.businessObject.calledElement;
      if (called && data.diagrams[called]) {
        canvas.addMarker(e.id, "call-activity-link");
      }
    });
    select.value = processId;
    drawTrail();
    centre();
    box.dataset.ready = processId;
  }

  viewer.on("element.click", (event) => {
    const element = event.element;
    if (element.type !== "bpmn:CallActivity") { return; }
    const called = element.businessObject.calledElement;
    if (called && data.diagrams[called]) {
      path.push(called);
      show();
    }
  });

  document.querySelectorAll("[data-diagram]").forEach((button) => {
    button.addEventListener("click", () => {
      const canvas = viewer.get("canvas");
      const action = button.dataset.diagram;
      if (action === "fit") { canvas.zoom("fit-viewport", "auto"); }
      if (action === "current") { centre(); }
      if (action === "zoom-in") { canvas.zoom(canvas.zoom() * 1.25); }
      if (action === "zoom-out") { canvas.zoom(canvas.zoom() / 1.25); }
    });
  });

  select.addEventListener("change", () => { path = [select.value]; show(); });
  show().catch((err) => {
    box.textContent = box.dataset.error + " " + err.message;
  });
})();
