// Page behaviour that HTML attributes cannot express: CSRF headers, drag and
// drop between board columns, the reconnect banner and small conveniences.
(function () {
  "use strict";

  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  document.addEventListener("htmx:configRequest", function (event) {
    event.detail.headers["x-csrftoken"] = csrfToken();
  });

  // Boards: a card dropped in another column asks the server to move it.
  // The server answers 204 and pushes the move to every page, this one
  // included; a refused move comes back as fragments that restore the card.
  function initBoard(board) {
    const moveUrl = board.dataset.moveUrl;
    const field = board.dataset.moveField;
    board.querySelectorAll(".cards").forEach(function (column) {
      if (column.dataset.sortable) return;
      column.dataset.sortable = "1";
      Sortable.create(column, {
        group: board.dataset.board,
        draggable: ".card",
        animation: 120,
        delay: 120,
        delayOnTouchOnly: true,
        // Mouse and touch events instead of native drag and drop behave the
        // same on phones, desktops and in automated browsers.
        forceFallback: true,
        onEnd: function (event) {
          if (event.from === event.to) return;
          const card = event.item;
          const values = {};
          values[field] = event.to.dataset.value;
          values["from_" + field] = event.from.dataset.value;
          htmx.ajax("POST", moveUrl.replace("{id}", card.dataset.id), {
            values: values,
            swap: "none",
            source: card,
          });
        },
      });
    });
  }

  htmx.onLoad(function (root) {
    const scope = root.querySelectorAll ? root : document;
    if (scope.matches && scope.matches("[data-board]")) initBoard(scope);
    scope.querySelectorAll("[data-board]").forEach(initBoard);

    scope.querySelectorAll("select[data-navigate]").forEach(function (select) {
      select.addEventListener("change", function () {
        window.location.assign(select.value);
      });
    });
    scope.querySelectorAll("form.auto-submit select[name]").forEach(function (select) {
      select.addEventListener("change", function () {
        select.form.requestSubmit();
      });
    });
    scope.querySelectorAll(".toast").forEach(function (toast) {
      setTimeout(function () { toast.remove(); }, 6000);
    });
  });

  // The live socket: a banner while it is down, and a refresh of what the
  // page shows once it is back, since events sent meanwhile were missed.
  let wasOpen = false;
  document.addEventListener("htmx:wsOpen", function () {
    document.getElementById("live-status").hidden = true;
    document.body.dataset.live = "open";
    if (wasOpen) {
      document.querySelectorAll("[data-live-refresh]").forEach(function (element) {
        htmx.trigger(element, "live:refresh");
      });
    }
    wasOpen = true;
  });
  document.addEventListener("htmx:wsClose", function () {
    document.body.dataset.live = "closed";
    if (wasOpen) document.getElementById("live-status").hidden = false;
  });
})();
