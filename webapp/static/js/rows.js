// Lists of entries in forms: add a row from the list's template, remove a row.
// Inputs are named <list>-<index>-<column>; a new row takes the next free index.
(function () {
  document.querySelectorAll("[data-rows]").forEach(function (list) {
    const body = list.querySelector("tbody");
    const template = list.querySelector("template");
    let next = body.rows.length;
    const add = list.querySelector("[data-add-row]");
    if (add) {
      add.addEventListener("click", function () {
        const row = document.createElement("tr");
        row.innerHTML = template.innerHTML.split("__index__").join(String(next));
        next += 1;
        body.appendChild(row);
        const first = row.querySelector("input, select, textarea");
        if (first) first.focus();
      });
    }
    list.addEventListener("click", function (event) {
      const button = event.target.closest("[data-remove-row]");
      if (button) button.closest("tr").remove();
    });
  });
})();
