// The workflow rule builder: adds and removes condition, group and action rows.
// New rows come from the server as HTML. Conditions and groups share one
// numbering, actions have their own, and a new row is numbered after the
// highest number in use so that rows keep their order when the form is read.
// An action row shows only the fields of its kind, listed in the
// data-action-fields attribute of the actions container.
(function () {
  "use strict";

  const NUMBERED = /^(condition|group|action)\.(\d+)\./;

  function nextIndex(container) {
    let highest = -1;
    container.querySelectorAll("[name]").forEach(function (field) {
      const match = NUMBERED.exec(field.name);
      if (match && Number(match[2]) > highest) highest = Number(match[2]);
    });
    return highest + 1;
  }

  document.addEventListener("click", function (event) {
    const add = event.target.closest("[data-add-row]");
    // Without this script the add and remove buttons submit the form, which
    // comes back with the row added or removed.
    if (add) {
      event.preventDefault();
      const kind = add.dataset.addRow;
      const scope = document.querySelector(
        '[data-rows="' + (kind === "action" ? "action" : "condition") + '"]'
      );
      const group = add.dataset.group;
      const target = group
        ? scope.querySelector('[data-group-items="' + group + '"]')
        : scope;
      let url = add.dataset.url + "&index=" + nextIndex(scope);
      if (group) url += "&group=" + encodeURIComponent(group);
      htmx.ajax("GET", url, { target: target, swap: "beforeend" });
      return;
    }
    const remove = event.target.closest("[data-remove-row]");
    if (remove) {
      event.preventDefault();
      remove.closest("[data-row]").remove();
    }
  });

  document.addEventListener("change", function (event) {
    const select = event.target;
    if (!select.name || !/^action\.\d+\.kind$/.test(select.name)) return;
    const container = select.closest("[data-action-fields]");
    const row = select.closest("[data-action-row]");
    if (!container || !row) return;
    const kindFields =
      JSON.parse(container.dataset.actionFields)[select.value] || [];
    row.querySelectorAll("[data-action-field]").forEach(function (label) {
      label.hidden = kindFields.indexOf(label.dataset.actionField) === -1;
      // A hidden control must not block the submit with its own validation.
      label.querySelectorAll("input, select, textarea").forEach(function (control) {
        control.disabled = label.hidden;
      });
    });
  });
})();
