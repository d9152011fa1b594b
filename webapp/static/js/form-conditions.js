// Forms that follow the answers: a field marked data-show-when='{"decision": ["reject"]}'
// is shown only while the named input has one of the values (null: any value), as the
// form's JSON Schema if/then and dependentSchemas say. A hidden field's inputs are disabled,
// so they are not sent, but keep what was typed for when the field comes back. The server
// checks the same rules.
(function () {
  "use strict";

  function valuesOf(form, name) {
    var found = [];
    form.querySelectorAll('[name="' + CSS.escape(name) + '"]').forEach(function (input) {
      if (input.disabled) { return; }
      if (input.type === "checkbox" || input.type === "radio") {
        if (input.type === "checkbox" && input.value === "on") {
          found.push(input.checked ? "true" : "false");
        } else if (input.checked) {
          found.push(input.value);
        }
      } else if (input.value !== "") {
        found.push(input.value);
      }
    });
    return found;
  }

  function holds(form, rule) {
    return Object.keys(rule).every(function (name) {
      var have = valuesOf(form, name);
      var wanted = rule[name];
      if (wanted === null) { return have.length > 0 && have.join("") !== "false"; }
      return have.some(function (value) { return wanted.indexOf(value) >= 0; });
    });
  }

  function apply(form) {
    // twice, so a field controlled by a field that just appeared follows too
    for (var pass = 0; pass < 2; pass += 1) {
      form.querySelectorAll("[data-show-when]").forEach(function (box) {
        var rule;
        try { rule = JSON.parse(box.getAttribute("data-show-when")); } catch (e) { return; }
        var show = holds(form, rule);
        box.hidden = !show;
        box.classList.toggle("conditional-hidden", !show);
        box.querySelectorAll("input, select, textarea, button").forEach(function (input) {
          if (input.closest("template")) { return; }
          if (!show) {
            if (!input.disabled) { input.dataset.hiddenByCondition = "1"; input.disabled = true; }
          } else if (input.dataset.hiddenByCondition) {
            delete input.dataset.hiddenByCondition;
            input.disabled = false;
          }
        });
      });
    }
  }

  function init() {
    document.querySelectorAll("form").forEach(function (form) {
      if (!form.querySelector("[data-show-when]")) { return; }
      apply(form);
      form.addEventListener("change", function () { apply(form); });
      form.addEventListener("input", function () { apply(form); });
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
}());
