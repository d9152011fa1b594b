// The process editor: bpmn-js modeler, a side panel for this project's settings, save with
// server-side validation (problems listed and marked on the canvas), download, open a file.
(function () {
  'use strict';

  var SPIFF = 'http://spiffworkflow.org/bpmn/schema/1.0/core';
  var data = JSON.parse(document.getElementById('editor-data').textContent);
  var T = JSON.parse(document.getElementById('editor-text').textContent);
  var csrf = document.getElementById('csrf').value;

  // bpmn-js 18 binds the keyboard to the canvas itself (keyboard.bindTo is no longer supported)
  var modeler = new BpmnJS({ container: '#canvas' });
  var moddle = modeler.get('moddle');
  var modeling = modeler.get('modeling');
  var registry = modeler.get('elementRegistry');
  var canvas = modeler.get('canvas');
  var editedForms = {};
  var marked = [];

  var api = { modeler: modeler, editedForms: editedForms, lastImportError: null };
  window.zerorunEditor = api;

  function $(id) { return document.getElementById(id); }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === 'text') { node.textContent = attrs[key]; } else { node.setAttribute(key, attrs[key]); }
    });
    (children || []).forEach(function (child) { node.appendChild(child); });
    return node;
  }

  function showStatus(message, isError) {
    var box = $('status');
    box.hidden = false;
    box.textContent = message;
    box.className = isError ? 'flash error' : 'flash';
  }

  // Opening ----------------------------------------------------------------------------

  // SpiffWorkflow names a multi-instance collection by a task-data variable, e.g.
  // <loopDataInputRef>phase_items</loopDataInputRef>, which is no element id; bpmn-moddle
  // would drop such a reference on export. Keep it as a bare id so it is written back.
  function keepUnresolvedReferences(warnings) {
    warnings.forEach(function (w) {
      if (!/^unresolved reference/.test(w.message || '') || !w.element || !w.property) { return; }
      var descriptor = w.element.$descriptor.propertiesByName[w.property];
      var ref = { id: w.value, $type: 'bpmn:ItemAwareElement' };
      if (descriptor && descriptor.isMany) {
        w.element.get(descriptor.name).push(ref);
      } else if (descriptor) {
        w.element.set(descriptor.name, ref);
      }
    });
  }

  // The palette floats over the canvas's left edge: fit the diagram into the room beside it.
  function fitBesidePalette() {
    canvas.zoom('fit-viewport');
    var palette = document.querySelector('#canvas .djs-palette');
    var box = canvas.viewbox();
    if (!palette || !box.inner.width || !box.inner.height) { return; }
    var gutter = palette.getBoundingClientRect().right - $('canvas').getBoundingClientRect().left + 24;
    var scale = Math.min(1, (box.outer.width - gutter - 24) / box.inner.width,
                         (box.outer.height - 48) / box.inner.height);
    canvas.viewbox({ x: box.inner.x - gutter / scale, y: box.inner.y - 24 / scale,
                     width: box.outer.width / scale, height: box.outer.height / scale });
  }
  api.fit = fitBesidePalette;

  function open(xml) {
    clearProblems();
    return modeler.importXML(xml).then(function (result) {
      keepUnresolvedReferences(result.warnings || []);
      api.lastImportError = null;
      api.importWarnings = (result.warnings || []).map(function (w) { return String(w.message); });
      fitBesidePalette();
      renderPanel(null);
      return result;
    }).catch(function (err) {
      api.lastImportError = String(err && err.message || err);
      showStatus(T.importError + api.lastImportError, true);
      throw err;
    });
  }
  api.open = open;
  api.ready = open(data.xml);

  $('open-file').addEventListener('change', function (event) {
    var file = event.target.files[0];
    if (!file) { return; }
    var reader = new FileReader();
    reader.onload = function () {
      $('file-name').value = file.name;
      open(String(reader.result)).then(function () { showStatus(T.opened + file.name, false); });
    };
    reader.readAsText(file);
  });

  // Extension properties (spiffworkflow:properties / property) -------------------------

  function isSpiff(node, local) {
    if (!node || !node.$type) { return false; }
    var uri = node.$descriptor && node.$descriptor.ns && node.$descriptor.ns.uri;
    var name = node.$type.split(':').pop();
    return name === local && (uri === SPIFF || node.$type.indexOf('spiffworkflow:') === 0);
  }

  function propsOf(bo, create) {
    var ext = bo.extensionElements;
    if (!ext) {
      if (!create) { return null; }
      ext = moddle.create('bpmn:ExtensionElements', { values: [] });
      ext.$parent = bo;
      bo.extensionElements = ext;
    }
    ext.values = ext.values || [];
    var props = ext.values.filter(function (v) { return isSpiff(v, 'properties'); })[0];
    if (!props) {
      if (!create) { return null; }
      props = moddle.createAny('spiffworkflow:properties', SPIFF, { $children: [] });
      ext.values.push(props);
    }
    props.$children = props.$children || [];
    return props;
  }

  function getProp(bo, name) {
    var props = propsOf(bo, false);
    if (!props) { return ''; }
    var found = props.$children.filter(function (c) { return c.name === name; })[0];
    return found ? (found.value || '') : '';
  }

  function setProp(element, name, value) {
    var bo = element.businessObject;
    var props = propsOf(bo, true);
    var index = props.$children.findIndex(function (c) { return c.name === name; });
    if (value) {
      if (index >= 0) { props.$children[index].value = value; } else {
        props.$children.push(moddle.createAny('spiffworkflow:property', SPIFF, { name: name, value: value }));
      }
    } else if (index >= 0) {
      props.$children.splice(index, 1);
    }
    modeling.updateProperties(element, { extensionElements: bo.extensionElements });
  }

  // Side panel -------------------------------------------------------------------------

  function field(label, input, help) {
    var wrap = el('label', { 'class': 'field' }, [document.createTextNode(label), input]);
    if (help) { wrap.appendChild(el('small', { text: help })); }
    return wrap;
  }

  function textInput(name, value, onChange, multiline) {
    var input = el(multiline ? 'textarea' : 'input', { name: name });
    if (!multiline) { input.type = 'text'; }
    input.value = value || '';
    input.addEventListener('change', function () { onChange(input.value.trim()); });
    return input;
  }

  function select(name, options, value, onChange) {
    var input = el('select', { name: name });
    options.forEach(function (opt) {
      var option = el('option', { value: opt[0], text: opt[1] });
      if (opt[0] === value) { option.selected = true; }
      input.appendChild(option);
    });
    input.addEventListener('change', function () { onChange(input.value); });
    return input;
  }

  function laneOf(bo) {
    var lanes = registry.filter(function (e) { return e.type === 'bpmn:Lane'; });
    for (var i = 0; i < lanes.length; i++) {
      var refs = lanes[i].businessObject.flowNodeRef || [];
      if (refs.indexOf(bo) >= 0) { return lanes[i].businessObject.name || lanes[i].id; }
    }
    return null;
  }

  function formsPanel(element, body) {
    var bo = element.businessObject;
    var current = getProp(bo, 'formJsonSchemaFilename');
    var names = Object.keys(data.forms).sort();
    if (current && names.indexOf(current) < 0) { names.push(current); }
    var options = [['', '—']].concat(names.map(function (n) { return [n, n]; }));
    options.push(['__new__', T.newForm]);
    var schema = textInput('formSchema', '', function () {}, true);
    schema.className = 'schema';
    var newName = textInput('newFormName', '', function (value) {
      if (!value) { return; }
      var text = schema.value.trim() || '{\n  "type": "object",\n  "properties": {}\n}';
      schema.value = text;
      data.forms[value] = text;
      editedForms[value] = text;
      setProp(element, 'formJsonSchemaFilename', value);
    });
    var newWrap = field(T.newFormName, newName);
    newWrap.hidden = true;
    function showSchema(name) {
      schema.value = name ? (editedForms[name] || data.forms[name] || '') : '';
      schema.disabled = !name;
    }
    var chooser = select('form', options, current, function (value) {
      newWrap.hidden = value !== '__new__';
      if (value === '__new__') { schema.value = '{\n  "type": "object",\n  "properties": {}\n}'; schema.disabled = false; return; }
      setProp(element, 'formJsonSchemaFilename', value);
      showSchema(value);
    });
    schema.addEventListener('change', function () {
      var name = chooser.value === '__new__' ? newName.value.trim() : chooser.value;
      if (!name) { return; }
      try { JSON.parse(schema.value); } catch (err) { showStatus(T.schemaInvalid + err.message, true); return; }
      editedForms[name] = schema.value;
      data.forms[name] = schema.value;
    });
    showSchema(current);
    body.appendChild(field(T.form, chooser));
    body.appendChild(newWrap);
    body.appendChild(field(T.schema, schema));

    var expression = textInput('departmentExpression', getProp(bo, 'departmentExpression'), function (value) {
      setProp(element, 'departmentExpression', value);
    });
    var deptOptions = [['', T.chooseDepartment]].concat(data.departments.map(function (d) { return [d[0], d[1] + ' (' + d[0] + ')']; }));
    var dept = select('department', deptOptions, '', function (value) {
      if (!value) { return; }
      expression.value = "'" + value + "'";
      setProp(element, 'departmentExpression', expression.value);
    });
    body.appendChild(field(T.department, dept));
    body.appendChild(field(T.departmentExpression, expression));
    var lane = laneOf(bo);
    body.appendChild(el('p', { 'class': 'muted lane', text: T.lane + '：' + (lane || T.noLane) }));
    body.appendChild(field(T.dueExpression, textInput('dueExpression', getProp(bo, 'dueExpression'), function (value) {
      setProp(element, 'dueExpression', value);
    })));
  }

  function timerPanel(element, def, body) {
    var kinds = ['timeDuration', 'timeDate', 'timeCycle'];
    var kind = kinds.filter(function (k) { return def[k]; })[0] || 'timeDuration';
    var value = textInput('timer', def[kind] ? def[kind].body : '', apply);
    var kindSelect = select('timerKind', kinds.map(function (k) { return [k, T[k]]; }), kind, function () { apply(value.value.trim()); });
    function apply(text) {
      var update = { timeDuration: undefined, timeDate: undefined, timeCycle: undefined };
      if (text) { update[kindSelect.value] = moddle.create('bpmn:FormalExpression', { body: text }); }
      modeling.updateModdleProperties(element, def, update);
    }
    body.appendChild(field(T.timerKind, kindSelect));
    body.appendChild(field(T.timerValue, value));
  }

  function renderPanel(element) {
    var body = $('panel-body');
    body.innerHTML = '';
    $('panel-empty').hidden = !!element;
    if (!element || element.type === 'label') { $('panel-empty').hidden = false; return; }
    var bo = element.businessObject;
    body.appendChild(el('p', { 'class': 'muted', text: bo.$type + ' · ' + T.id + ' ' + bo.id }));
    body.appendChild(field(T.name, textInput('name', bo.name, function (value) {
      modeling.updateLabel(element, value);
    })));
    if (bo.$type === 'bpmn:UserTask' || bo.$type === 'bpmn:ManualTask') {
      formsPanel(element, body);
    }
    var timer = (bo.eventDefinitions || []).filter(function (d) { return d.$type === 'bpmn:TimerEventDefinition'; })[0];
    if (timer) { timerPanel(element, timer, body); }
    if (bo.$type === 'bpmn:SequenceFlow') {
      var source = bo.sourceRef && bo.sourceRef.$type;
      if (/Gateway$/.test(source || '') || bo.conditionExpression) {
        body.appendChild(field(T.condition, textInput('condition', bo.conditionExpression ? bo.conditionExpression.body : '', function (value) {
          modeling.updateProperties(element, {
            conditionExpression: value ? moddle.create('bpmn:FormalExpression', { body: value }) : undefined
          });
        }, true)));
      }
    }
    if (bo.$type === 'bpmn:CallActivity') {
      var processes = data.processes.slice();
      if (bo.calledElement && processes.indexOf(bo.calledElement) < 0) { processes.push(bo.calledElement); }
      body.appendChild(field(T.calledElement, select('calledElement',
        [['', '—']].concat(processes.map(function (p) { return [p, p]; })), bo.calledElement || '',
        function (value) { modeling.updateProperties(element, { calledElement: value || undefined }); })));
    }
  }

  modeler.on('selection.changed', function (event) {
    renderPanel(event.newSelection.length === 1 ? event.newSelection[0] : null);
  });

  // Problems and saving ----------------------------------------------------------------

  function clearProblems() {
    marked.forEach(function (id) { if (registry.get(id)) { canvas.removeMarker(id, 'zr-problem'); } });
    marked = [];
    $('problems').hidden = true;
    $('problem-list').innerHTML = '';
  }

  function showProblems(body) {
    clearProblems();
    $('problems').hidden = false;
    $('problems-title').textContent = body.message || T.problemsTitle;
    (body.problems || []).forEach(function (p) {
      var where = [p.file, p.line].filter(function (x) { return x; }).join(':');
      var item = el('li', { 'data-element': p.element || '' });
      if (p.element) {
        var link = el('a', { text: p.element_name ? p.element_name + '（' + p.element + '）' : p.element });
        link.addEventListener('click', function () {
          var target = registry.get(p.element);
          if (target) { modeler.get('selection').select(target); canvas.scrollToElement(target); }
        });
        item.appendChild(link);
        item.appendChild(document.createTextNode(': '));
      }
      item.appendChild(document.createTextNode(p.message + (where ? ' [' + where + ']' : '')));
      $('problem-list').appendChild(item);
      if (p.element && registry.get(p.element) && marked.indexOf(p.element) < 0) {
        canvas.addMarker(p.element, 'zr-problem');
        marked.push(p.element);
      }
    });
    api.marked = marked.slice();
  }

  function addVersionRows(created) {
    var tbody = document.querySelector('#versions tbody');
    created.filter(function (c) { return c.process_id === data.process_id; }).forEach(function (c) {
      var row = el('tr', { 'data-version': String(c.number) }, [
        el('td', { text: T.versionLabel.replace('{n}', c.number) }), el('td', { text: T.draft }),
        el('td', { text: '' }), el('td', { text: $('comment').value })]);
      tbody.insertBefore(row, tbody.firstChild);
    });
  }

  function send(preview) {
    return modeler.saveXML({ format: true }).then(function (result) {
      return fetch(data.save_url, {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json', 'X-CSRFToken': csrf },
        body: JSON.stringify({ file: $('file-name').value.trim(), xml: result.xml, preview: preview,
                               comment: $('comment').value, forms: editedForms })
      });
    }).then(function (response) {
      return response.json().then(function (body) { return { status: response.status, body: body }; });
    });
  }

  function failed(err) { showStatus(T.networkError + (err && err.message || err), true); }

  function store() {
    hideCallers();
    showStatus(T.saving, false);
    return send(false).then(function (reply) {
      if (reply.status === 201 || reply.status === 200) {
        clearProblems();
        showStatus(reply.body.message, false);
        addVersionRows(reply.body.created || []);
      } else {
        showStatus(reply.body.message || T.problemsTitle, true);
        showProblems(reply.body);
      }
    }).catch(failed);
  }

  // Saving a process that others call gives each caller a new version too: say which first.
  function hideCallers() { $('callers').hidden = true; $('caller-list').innerHTML = ''; }

  function askCallers(body) {
    $('callers-title').textContent = body.message;
    $('caller-list').innerHTML = '';
    body.callers.forEach(function (c) {
      $('caller-list').appendChild(el('li', { 'data-process': c.process_id,
        text: c.name + ' · ' + T.versionLabel.replace('{n}', c.number) }));
    });
    $('callers').hidden = false;
    $('callers-confirm').focus();
  }

  $('save').addEventListener('click', function () {
    hideCallers();
    showStatus(T.saving, false);
    send(true).then(function (reply) {
      if (reply.status !== 200) {
        showStatus(reply.body.message || T.problemsTitle, true);
        showProblems(reply.body);
        return;
      }
      clearProblems();
      if ((reply.body.callers || []).length) {
        showStatus(T.confirmCallers, false);
        askCallers(reply.body);
        return;
      }
      return store();
    }).catch(failed);
  });
  $('callers-confirm').addEventListener('click', store);
  $('callers-cancel').addEventListener('click', function () {
    hideCallers();
    showStatus(T.cancelled, false);
  });

  $('download').addEventListener('click', function () {
    modeler.saveXML({ format: true }).then(function (result) {
      var link = el('a', { download: $('file-name').value.trim() || 'process.bpmn' });
      link.href = URL.createObjectURL(new Blob([result.xml], { type: 'application/xml' }));
      document.body.appendChild(link);
      link.click();
      link.remove();
    });
  });
}());
