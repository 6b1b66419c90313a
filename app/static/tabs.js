// Tabs: a [role=tab] button shows the [role=tabpanel] its aria-controls
// names and hides the other panels of its tablist. Arrow keys move between
// tabs. A tab that loads its panel does so through its own hx-get.
(function () {
  "use strict";

  function select(tab) {
    const list = tab.closest('[role="tablist"]');
    list.querySelectorAll('[role="tab"]').forEach(function (other) {
      const chosen = other === tab;
      other.setAttribute("aria-selected", chosen ? "true" : "false");
      other.tabIndex = chosen ? 0 : -1;
      const panel = document.getElementById(other.getAttribute("aria-controls"));
      if (panel) panel.hidden = !chosen;
    });
  }

  document.addEventListener("click", function (event) {
    const tab = event.target.closest('[role="tab"]');
    if (tab) select(tab);
  });

  document.addEventListener("keydown", function (event) {
    const tab = event.target.closest('[role="tab"]');
    if (!tab || (event.key !== "ArrowRight" && event.key !== "ArrowLeft")) return;
    const tabs = Array.from(
      tab.closest('[role="tablist"]').querySelectorAll('[role="tab"]')
    );
    const step = event.key === "ArrowRight" ? 1 : -1;
    const next = tabs[(tabs.indexOf(tab) + step + tabs.length) % tabs.length];
    next.focus();
    next.click();
  });
})();
