// SLA countdowns: the server renders each running clock's due time and warning
// time as data attributes, and this ticks them every second without asking
// the server. A pushed card or summary replaces the element, which corrects
// the times when a reply, a pause or a priority change moved them.
(function () {
  "use strict";

  const LABELS = {
    first_response: "First response",
    next_response: "Next response",
    resolution: "Resolution",
  };

  function span(seconds) {
    const total = Math.floor(Math.abs(seconds));
    const days = Math.floor(total / 86400);
    const hours = Math.floor((total % 86400) / 3600);
    const minutes = Math.floor((total % 3600) / 60);
    const rest = total % 60;
    const two = function (n) { return String(n).padStart(2, "0"); };
    if (days) return days + "d " + hours + "h " + two(minutes) + "m";
    if (hours) return hours + "h " + two(minutes) + "m " + two(rest) + "s";
    return minutes + "m " + two(rest) + "s";
  }

  function tick(element, now) {
    const label = LABELS[element.dataset.slaMetric] || "SLA";
    if (element.hasAttribute("data-sla-paused")) {
      element.dataset.slaState = "paused";
      element.textContent = label + " paused";
      return;
    }
    const due = Date.parse(element.dataset.slaDue);
    const warn = Date.parse(element.dataset.slaWarn);
    const left = (due - now) / 1000;
    let state = "ok";
    if (left <= 0 || element.hasAttribute("data-sla-breached")) state = "breached";
    else if (now >= warn) state = "warning";
    element.dataset.slaState = state;
    element.textContent = state === "breached"
      ? label + " overdue " + span(left)
      : label + " in " + span(left);
  }

  function tickAll() {
    const now = Date.now();
    document.querySelectorAll("[data-sla-due]").forEach(function (element) {
      tick(element, now);
    });
  }

  tickAll();
  setInterval(tickAll, 1000);
  // Fragments swapped in by htmx show the right text at once, not a second later.
  document.addEventListener("htmx:afterSettle", tickAll);
  document.addEventListener("htmx:wsAfterMessage", tickAll);
})();
