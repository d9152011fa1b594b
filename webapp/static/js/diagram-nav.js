// A case's diagrams by process instance, shared by the case page and the auditor's replay.
// The server hands every instance of the case (the case itself, each called process it
// started: the item_approval of one item, the stage_handling of that item...) with its own
// element states. The viewer opens the case's own diagram, marks that instance's states,
// centres its current elements, zooms (buttons, Ctrl + wheel), pans (drag) and fits on
// demand; a click on a call activity opens the instance it started (a choice when it started
// several, e.g. one per item), and a trail leads back up the chain.
(function () {
  "use strict";

  window.zerorunDiagram = function (options) {
    const data = options.data;
    const instances = data.instances || {};
    const labels = data.labels || {};
    const box = options.container;
    const trail = options.trail;
    const select = options.select;
    const viewer = new BpmnJS({ container: box });
    const names = Object.assign({}, data.names || {});
    if (select) {
      select.querySelectorAll("option").forEach((o) => { names[o.value] = o.textContent; });
    }
    const choices = document.createElement("div");
    choices.className = "diagram-choices";
    choices.hidden = true;
    box.parentNode.insertBefore(choices, box);
    let path = [];
    let focusElement = null;

    function entry(key) {
      const i = instances[key];
      return { key: key, process: i.process, label: i.label };
    }

    function chain(key) {
      const out = [];
      while (key && instances[key]) { out.unshift(entry(key)); key = instances[key].parent; }
      return out;
    }

    function here() { return path[path.length - 1]; }

    function states() {
      const e = here();
      return e.key && instances[e.key] ? instances[e.key].states : {};
    }

    function title(e) {
      const name = names[e.process] || e.process;
      return e.label ? name + "（" + e.label + "）" : name;
    }

    function currentElements() {
      const registry = viewer.get("elementRegistry");
      const s = states();
      let ids = (s.active || []).concat(s.waiting || []);
      if (focusElement) { ids = [focusElement].concat(s.active || []); }
      const found = ids.map((id) => registry.get(id)).filter(Boolean);
      // Boundary events that wait (a termination, a deadline) watch the work; they are not it.
      const work = found.filter((e) => e.type !== "bpmn:BoundaryEvent");
      return work.length ? work : found;
    }

    // The current elements in the middle of the view, at full size when they fit.
    function centre() {
      const canvas = viewer.get("canvas");
      const elements = currentElements();
      if (!elements.length) { canvas.zoom("fit-viewport", "auto"); return; }
      const x1 = Math.min(...elements.map((e) => e.x));
      const y1 = Math.min(...elements.map((e) => e.y));
      const x2 = Math.max(...elements.map((e) => e.x + e.width));
      const y2 = Math.max(...elements.map((e) => e.y + e.height));
      canvas.zoom(1);
      const size = canvas.viewbox().outer;
      const scale = Math.max(Math.min(1, (size.width - 60) / (x2 - x1),
                                      (size.height - 60) / (y2 - y1)), 0.4);
      const width = size.width / scale;
      const height = size.height / scale;
      canvas.viewbox({ x: (x1 + x2) / 2 - width / 2, y: (y1 + y2) / 2 - height / 2,
                       width: width, height: height });
    }

    function drawTrail() {
      trail.textContent = "";
      if (path.length < 2) { return; }
      path.forEach((e, index) => {
        if (index === path.length - 1) {
          const span = document.createElement("span");
          span.textContent = title(e);
          span.setAttribute("aria-current", "page");
          trail.appendChild(span);
          return;
        }
        const link = document.createElement("a");
        link.href = "#" + box.id;
        link.textContent = title(e);
        link.addEventListener("click", (event) => {
          event.preventDefault();
          path = path.slice(0, index + 1);
          focusElement = null;
          show();
        });
        trail.appendChild(link);
        trail.appendChild(document.createTextNode(" › "));
      });
    }

    function hideChoices() { choices.hidden = true; choices.textContent = ""; }

    async function show() {
      hideChoices();
      const e = here();
      await viewer.importXML(data.diagrams[e.process]);
      const canvas = viewer.get("canvas");
      const registry = viewer.get("elementRegistry");
      let marked = 0;
      for (const [state, ids] of Object.entries(states())) {
        for (const id of ids) {
          if (registry.get(id)) { canvas.addMarker(id, "state-" + state); marked += 1; }
        }
      }
      registry.filter((el) => el.type === "bpmn:CallActivity").forEach((el) => {
        if (called(el).length || data.diagrams[el.businessObject.calledElement]) {
          canvas.addMarker(el.id, "call-activity-link");
        }
      });
      if (select) { select.value = e.process; }
      drawTrail();
      centre();
      box.dataset.process = e.process;
      box.dataset.instance = e.key || "";
      box.dataset.marked = String(marked);
      box.dataset.ready = e.process;
    }

    function called(element) {
      const e = here();
      const calls = e.key && instances[e.key] ? instances[e.key].calls || {} : {};
      return calls[element.id] || [];
    }

    function open(next) {
      path.push(next);
      focusElement = null;
      return show();
    }

    function offer(keys) {
      choices.textContent = "";
      const heading = document.createElement("p");
      heading.textContent = labels.choose || "";
      choices.appendChild(heading);
      const seen = {};
      keys.forEach((key) => {
        const e = entry(key);
        const button = document.createElement("button");
        button.type = "button";
        button.className = "secondary small";
        button.dataset.instance = key;
        let text = e.label || names[e.process] || e.process;
        seen[text] = (seen[text] || 0) + 1;
        if (seen[text] > 1) { text += " (" + seen[text] + ")"; }
        const s = instances[key].states || {};
        if ((s.active || []).length) { text += " · " + (labels.active || ""); }
        else if ((s.waiting || []).length) { text += " · " + (labels.waiting || ""); }
        button.textContent = text;
        button.addEventListener("click", () => open(e));
        choices.appendChild(button);
      });
      const close = document.createElement("button");
      close.type = "button";
      close.className = "secondary small";
      close.textContent = labels.close || "×";
      close.addEventListener("click", hideChoices);
      choices.appendChild(close);
      choices.hidden = false;
      const first = choices.querySelector("button");
      if (first) { first.focus(); }
    }

    viewer.on("element.click", (event) => {
      const element = event.element;
      if (element.type !== "bpmn:CallActivity") { return; }
      const keys = called(element);
      if (keys.length === 1) { open(entry(keys[0])); return; }
      if (keys.length > 1) { offer(keys); return; }
      const process = element.businessObject.calledElement;
      if (process && data.diagrams[process]) { open({ key: null, process: process, label: null }); }
    });

    (options.tools || document).querySelectorAll("[data-diagram]").forEach((button) => {
      button.addEventListener("click", () => {
        const canvas = viewer.get("canvas");
        const action = button.dataset.diagram;
        if (action === "fit") { canvas.zoom("fit-viewport", "auto"); }
        if (action === "current") { centre(); }
        if (action === "zoom-in") { canvas.zoom(canvas.zoom() * 1.25); }
        if (action === "zoom-out") { canvas.zoom(canvas.zoom() / 1.25); }
      });
    });

    // Choosing a process opens its first instance in the case (or its bare diagram).
    function start(process) {
      const key = Object.keys(instances).find((k) => instances[k].process === process);
      path = key ? chain(key) : [{ key: null, process: process, label: null }];
      focusElement = null;
      return show();
    }

    if (select) { select.addEventListener("change", () => { start(select.value); }); }

    const focus = data.focus || {};
    const root = data.root && instances[data.root] ? data.root : null;
    if (focus.instance && instances[focus.instance]) {
      path = chain(focus.instance);
    } else if (root) {
      path = chain(root);
    } else {
      path = [{ key: null, process: select ? select.value : Object.keys(data.diagrams)[0],
                label: null }];
    }
    if (focus.process && here().process !== focus.process) {
      return { viewer: viewer, ready: start(focus.process).then(() => viewer) };
    }
    focusElement = focus.element || null;
    return { viewer: viewer, ready: show().then(() => viewer) };
  };
})();
