// Audit diagrams: a case's elements marked as they were at one step (per process instance,
// through diagram-nav.js), or a process heatmap.
// Every `.audit-diagram` block holds its data as JSON; window.auditDiagramsReady is set
// once all of them are drawn (the PDF printer waits for it).
(function () {
  function heatColour(ratio) {
    // pale yellow (few cases) to deep red (all cases)
    const hue = 55 - 55 * ratio;
    const light = 88 - 38 * ratio;
    return "hsl(" + hue + ", 90%, " + light + "%)";
  }

  function label(text) {
    const div = document.createElement("div");
    div.className = "heat-label";
    div.textContent = text;
    return div;
  }

  async function draw(block) {
    const data = JSON.parse(block.querySelector(".diagram-data").textContent);
    const select = block.querySelector(".diagram-process");
    const container = block.querySelector(".diagram");
    if (data.instances && window.zerorunDiagram) {
      // The replay: each process instance as it was at the step, zoomable, with drill-down.
      try {
        await window.zerorunDiagram({ data: data, container: container, select: select,
                                      trail: block.querySelector(".diagram-trail"),
                                      tools: block }).ready;
      } catch (err) {
        container.textContent = (data.labels && data.labels.error || "") + err.message;
      }
      return;
    }
    const viewer = new BpmnJS({ container: container });

    async function show(processId) {
      await viewer.importXML(data.diagrams[processId]);
      const canvas = viewer.get("canvas");
      const registry = viewer.get("elementRegistry");
      const marked = [];
      for (const [state, ids] of Object.entries((data.states || {})[processId] || {})) {
        for (const id of ids) {
          if (registry.get(id)) { canvas.addMarker(id, "state-" + state); marked.push(id); }
        }
      }
      const heat = (data.heat || {})[processId] || {};
      const overlays = viewer.get("overlays");
      for (const [id, h] of Object.entries(heat)) {
        const element = registry.get(id);
        if (!element || !h.cases) continue;
        const shape = registry.getGraphics(id).querySelector(".djs-visual > :first-child");
        if (shape) shape.style.fill = heatColour(Math.min(h.cases / Math.max(data.total, 1), 1));
        canvas.addMarker(id, "heat");
        let text = data.labels.cases.replace("%s", h.cases);
        if (h.median !== null) text += " · " + data.labels.median.replace("%s", h.median);
        overlays.add(id, { position: { bottom: 14, left: 0 }, html: label(text) });
        marked.push(id);
      }
      container.dataset.process = processId;
      container.dataset.marked = marked.length;
      canvas.zoom("fit-viewport");
    }

    if (select) select.addEventListener("change", () => show(select.value));
    try {
      await show(select ? select.value : block.dataset.process);
    } catch (err) {
      container.textContent = (data.labels && data.labels.error || "") + err.message;
    }
  }

  Promise.all(Array.from(document.querySelectorAll(".audit-diagram")).map(draw))
    .then(() => { window.auditDiagramsReady = true; });

  // The replay slider moves to the chosen step (each step has its own, citable URL).
  const slider = document.getElementById("step-slider");
  if (slider) {
    const output = document.getElementById("step-value");
    slider.addEventListener("input", () => { output.textContent = slider.value; });
    slider.addEventListener("change", () => {
      const url = new URL(window.location.href);
      url.searchParams.set("step", slider.value);
      url.searchParams.delete("verify");
      url.hash = "step";
      window.location.href = url.toString();
    });
  }
})();
