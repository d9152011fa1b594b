// The diff page: both versions side by side, the changes marked.
(function () {
  var data = JSON.parse(document.getElementById('diff-data').textContent);
  function show(container, xml, kinds) {
    var viewer = new BpmnJS({ container: container });
    return viewer.importXML(xml).then(function () {
      var canvas = viewer.get('canvas'), registry = viewer.get('elementRegistry');
      canvas.zoom('fit-viewport');
      data.changes.forEach(function (c) {
        if (kinds.indexOf(c.kind) >= 0 && registry.get(c.element)) { canvas.addMarker(c.element, 'zr-' + c.kind); }
      });
      return viewer;
    });
  }
  window.zerorunDiff = Promise.all([show('#diagram-new', data['new'], ['added', 'changed']),
                                    show('#diagram-old', data.old, ['removed', 'changed'])]);
}());
