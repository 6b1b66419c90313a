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

  // While a card is being dragged, live frames wait: replacing the dragged
  // card under SortableJS would leave the old element to be dropped beside
  // its replacement. They are applied, in order, once the card is dropped.
  let dragging = false;
  const heldFrames = [];

  // Boards: a card dropped in another column sends a move request.
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
        // A card the user may not move carries data-locked.
        draggable: ".card:not([data-locked])",
        animation: 120,
        delay: 120,
        delayOnTouchOnly: true,
        // Mouse and touch events instead of native drag and drop behave the
        // same on phones, desktops and in automated browsers.
        forceFallback: true,
        onStart: function () { dragging = true; },
        onEnd: function (event) {
          dragging = false;
          // Sortable finishes moving its elements after this callback.
          setTimeout(applyHeldFrames, 0);
          if (event.from === event.to) return;
          const card = event.item;
          card.origin = { column: event.from, index: event.oldIndex };
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

  // A move into a stage whose required fields are empty returns a dialog
  // that requests them (templates/deals/_entry_form.html). Saving sends the
  // move again with the fields. Cancelling puts the card back where it was
  // on this page, and because nothing was saved, other pages get no update.
  function entryDialog() {
    return document.querySelector("#stage-entry dialog[data-stage-entry]");
  }

  function closeEntry() {
    const slot = document.getElementById("stage-entry");
    if (slot) slot.replaceChildren();
  }

  function restoreCard(dealId) {
    const card = document.getElementById("deal-" + dealId);
    if (!card) return;
    const home = document.getElementById("stage-" + card.dataset.stage + "-cards");
    if (home && card.origin && card.origin.column === home) {
      home.insertBefore(card, home.children[card.origin.index] || null);
    } else if (home && card.parentElement !== home) {
      // A live update replaced the card meanwhile, so it goes back on top.
      home.insertBefore(card, home.firstElementChild);
    }
    delete card.origin;
    const select = card.querySelector("select.move");
    const stored = select ? select.querySelector("option[selected]") : null;
    if (stored) select.value = stored.value;
  }

  function cancelEntry() {
    const dialog = entryDialog();
    if (!dialog) return;
    restoreCard(dialog.dataset.dealId);
    closeEntry();
  }

  document.addEventListener("click", function (event) {
    if (event.target.closest && event.target.closest("[data-stage-entry-cancel]")) {
      cancelEntry();
    }
  });
  // Escape closes a modal dialog with a "cancel" event, which does not bubble.
  document.addEventListener("cancel", function (event) {
    if (event.target.matches && event.target.matches("dialog[data-stage-entry]")) {
      event.preventDefault();
      cancelEntry();
    }
  }, true);
  document.addEventListener("htmx:afterRequest", function (event) {
    const dialog = entryDialog();
    if (!dialog || !dialog.contains(event.detail.elt)) return;
    if (event.detail.elt.tagName !== "FORM" || event.detail.xhr.status !== 204) return;
    // Saved: the live update that follows moves the card on every page.
    const card = document.getElementById("deal-" + dialog.dataset.dealId);
    if (card) delete card.origin;
    closeEntry();
  });

  function toast(message) {
    const item = document.createElement("div");
    item.className = "toast toast-error";
    item.setAttribute("role", "alert");
    item.textContent = message;
    document.getElementById("toasts").appendChild(item);
    setTimeout(function () { item.remove(); }, 6000);
  }

  // A request that never reached the server saved nothing, so show a toast
  // and put a dragged card back where it was.
  document.addEventListener("htmx:sendError", function (event) {
    const card = event.target.closest ? event.target.closest(".card") : null;
    if (card && card.origin) {
      const column = card.origin.column;
      column.insertBefore(card, column.children[card.origin.index] || null);
      delete card.origin;
    }
    const select = event.target.matches && event.target.matches("select.move") ? event.target : null;
    if (select) select.value = select.querySelector("option[selected]").value;
    toast("Could not reach the server, so nothing was saved. Try again in a moment.");
  });

  // A card moved by a live update is a new element; keep the keyboard focus
  // on it when the user was using its stage or status select.
  let focusedCard = null;
  document.addEventListener("htmx:wsBeforeMessage", function () {
    const active = document.activeElement;
    focusedCard = active && active.closest ? active.closest(".card") : null;
    focusedCard = focusedCard ? focusedCard.id : null;
  });
  document.addEventListener("htmx:wsAfterMessage", function () {
    if (!focusedCard || document.activeElement !== document.body) return;
    const select = document.querySelector("#" + focusedCard + " select.move");
    if (select) select.focus();
  });

  // The top bar's search box: Escape and a click elsewhere close its
  // dropdown of first hits, and the arrow keys move through the hits.
  document.addEventListener("keydown", function (event) {
    const box = event.target.closest ? event.target.closest(".top-search") : null;
    if (!box) return;
    const hits = box.querySelector(".top-search-hits");
    const input = box.querySelector("input[name=q]");
    if (event.key === "Escape" && hits.firstElementChild) {
      event.preventDefault();
      hits.replaceChildren();
      input.focus();
      return;
    }
    if (event.key !== "ArrowDown" && event.key !== "ArrowUp") return;
    const links = Array.from(hits.querySelectorAll("a"));
    if (!links.length) return;
    event.preventDefault();
    const step = event.key === "ArrowDown" ? 1 : -1;
    const next = links.indexOf(document.activeElement) + step;
    if (next < 0) input.focus();
    else links[Math.min(next, links.length - 1)].focus();
  });
  document.addEventListener("click", function (event) {
    document.querySelectorAll(".top-search").forEach(function (box) {
      if (!box.contains(event.target)) box.querySelector(".top-search-hits").replaceChildren();
    });
  });

  // The top bar's menus are <details>, which open and close without this
  // script. It closes an open one on a click elsewhere or on Escape, as
  // other menus do, so that one menu at most is open.
  document.addEventListener("click", function (event) {
    document.querySelectorAll(".top-menu[open]").forEach(function (menu) {
      if (!menu.contains(event.target)) menu.open = false;
    });
  });
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape" || !event.target.closest) return;
    const menu = event.target.closest(".top-menu[open]");
    if (!menu) return;
    menu.open = false;
    menu.querySelector("summary").focus();
  });

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
    const dialogs = scope.matches && scope.matches("dialog[data-stage-entry]")
      ? [scope] : Array.from(scope.querySelectorAll("dialog[data-stage-entry]"));
    dialogs.forEach(function (dialog) {
      if (!dialog.open) dialog.showModal();
    });
    scope.querySelectorAll(".toast").forEach(function (toast) {
      setTimeout(function () { toast.remove(); }, 6000);
    });
  });

  // The live socket. Every frame starts with a header line naming its
  // stream and sequence number; this page keeps the last number it applied
  // of each stream, drops repeats, asks for the range it missed when it
  // sees a jump, and sends its numbers on every (re)connect so that the
  // server replays what happened meanwhile.
  // The ws extension reconnects only after close codes 1006, 1012 and 1013
  // (htmx-ext-ws 2.0.4).
  // A page must come back after any close but a sign-out or a refused
  // subscription (proxies closing idle sockets use other codes), so other
  // codes reach the extension as 1006.
  const SIGNED_OUT = 4401;
  // The user's roles or teams changed: the page reloads with the new rights.
  const ACCESS_CHANGED = 4403;
  const CLOSE_OFFLINE = 4000;
  const FINAL_CODES = [SIGNED_OUT, ACCESS_CHANGED, 1008];
  const RECONNECT_CODES = [1006, 1012, 1013];
  const positions = {};
  const replaying = {};
  let liveSocket = null;

  document.querySelectorAll('meta[name="live-stream"]').forEach(function (meta) {
    positions[meta.content] = Number(meta.dataset.seq);
  });

  function send(message) {
    if (liveSocket) liveSocket.send(JSON.stringify(message));
  }

  function showBanner(visible) {
    const banner = document.getElementById("live-status");
    if (banner) banner.hidden = !visible;
  }

  let htmxApi = null;
  let socketElement = null;

  // The same steps as htmx-ext-ws takes for a frame: swap each top-level
  // element out of band, then settle.
  function applyHeldFrames() {
    while (heldFrames.length && !dragging) {
      const body = heldFrames.shift();
      const settleInfo = htmxApi.makeSettleInfo(socketElement);
      const fragment = htmxApi.makeFragment(body);
      Array.from(fragment.children).forEach(function (child) {
        htmxApi.oobSwap(htmxApi.getAttributeValue(child, "hx-swap-oob") || "true", child, settleInfo);
      });
      htmxApi.settleImmediately(settleInfo.tasks);
      hideSelf();
    }
  }

  function applyOrHold(body, element) {
    // Frames that arrive while earlier ones wait go behind them.
    if (!body || (!dragging && !heldFrames.length)) return body;
    socketElement = element;
    heldFrames.push(body);
    if (!dragging) setTimeout(applyHeldFrames, 0);
    return "";
  }

  htmx.defineExtension("live", {
    init: function (api) { htmxApi = api; },
    transformResponse: function (text, xhr, element) {
      // Only socket frames come without a request.
      if (xhr) return text;
      // Offline, the page applies nothing; it resumes from where it stopped.
      if (!navigator.onLine) return "";
      if (text.charAt(0) !== "#") return text;
      const newline = text.indexOf("\n");
      const header = text.slice(1, newline < 0 ? text.length : newline).split(" ");
      const body = newline < 0 ? "" : text.slice(newline + 1);
      const kind = header[0];

      if (kind === "ready") {
        showBanner(false);
        document.body.dataset.live = "open";
        return "";
      }
      const stream = header[1];
      const seq = Number(header[2]);
      if (kind === "snap") {
        positions[stream] = seq;
        delete replaying[stream];
        return applyOrHold(body, element);
      }

      // A stream the page rendered no position for, such as its user's
      // notifications, starts at the first event that arrives.
      if (!(stream in positions)) positions[stream] = seq - 1;
      const last = positions[stream] || 0;
      if (seq <= last) return "";
      if (seq > last + 1) {
        if (!replaying[stream]) {
          replaying[stream] = true;
          send({ type: "replay", stream: stream, after: last });
        }
        return "";
      }
      positions[stream] = seq;
      delete replaying[stream];
      return applyOrHold(body, element);
    },
  });

  document.addEventListener("htmx:wsOpen", function (event) {
    liveSocket = event.detail.socketWrapper;
    if (!navigator.onLine) return;
    Object.keys(replaying).forEach(function (stream) { delete replaying[stream]; });
    send({ type: "resume", streams: positions });
    if (presence.editing || presence.typing) send(presenceMessage());
  });

  // Presence: tell the others which field this user is editing and whether
  // they are typing a comment. Blur and focus of the next field come close
  // together, so a change is sent a moment later, once.
  const presence = { editing: null, typing: false };
  let presenceTimer = null;
  let typingTimer = null;

  function presenceMessage() {
    return { type: "presence", editing: presence.editing, typing: presence.typing };
  }

  function announce() {
    clearTimeout(presenceTimer);
    presenceTimer = setTimeout(function () { send(presenceMessage()); }, 150);
  }

  document.addEventListener("focusin", function (event) {
    const field = event.target;
    // A picker's search box announces the field it picks for.
    const name = (field.dataset && field.dataset.presenceField) || field.name;
    if (name && field.form && field.form.hasAttribute("data-presence")) {
      presence.editing = name;
      announce();
    }
  });
  document.addEventListener("focusout", function (event) {
    if (event.target.form && event.target.form.hasAttribute("data-presence")) {
      presence.editing = null;
      announce();
    }
  });
  document.addEventListener("input", function (event) {
    if (!event.target.closest(".comment-form")) return;
    if (!presence.typing) {
      presence.typing = true;
      announce();
    }
    clearTimeout(typingTimer);
    typingTimer = setTimeout(function () {
      presence.typing = false;
      announce();
    }, 3000);
  });

  // The same presence fragment goes to everyone; each page hides its own user.
  const me = document.querySelector('meta[name="user-id"]');
  function hideSelf() {
    if (!me) return;
    document.querySelectorAll('[data-user-id="' + me.content + '"]').forEach(function (element) {
      element.hidden = true;
    });
  }
  document.addEventListener("htmx:wsAfterMessage", hideSelf);
  document.addEventListener("htmx:wsClose", function (event) {
    document.body.dataset.live = "closed";
    liveSocket = null;
    const code = event.detail.event ? event.detail.event.code : 0;
    if (code === SIGNED_OUT) {
      window.location.assign("/login");
      return;
    }
    if (code === ACCESS_CHANGED) {
      window.location.reload();
      return;
    }
    showBanner(true);
  });

  // A socket refused at its handshake closes like a lost network. When the
  // session is what ended (signed out while this tab was offline, or timed
  // out), go to the sign-in page instead of retrying forever.
  function checkSession() {
    fetch("/live/status", { headers: { accept: "application/json" }, cache: "no-store" })
      .then(function (response) {
        if (response.status === 401) {
          const here = window.location.pathname + window.location.search;
          window.location.assign("/login?next=" + encodeURIComponent(here));
        }
      })
      .catch(function () {});
  }

  let rawSocket = null;
  htmx.createWebSocket = function (url) {
    const socket = new WebSocket(url, []);
    let opened = false;
    socket.addEventListener("open", function () { opened = true; });
    rawSocket = socket;
    socket.binaryType = htmx.config.wsBinaryType;
    if (!navigator.onLine) {
      socket.addEventListener("open", function () { socket.close(CLOSE_OFFLINE, "offline"); });
    }
    let onclose = null;
    Object.defineProperty(socket, "onclose", {
      get: function () { return onclose; },
      set: function (handler) { onclose = handler; },
    });
    socket.addEventListener("close", function (event) {
      if (!opened && navigator.onLine) checkSession();
      if (!onclose) return;
      const keep = FINAL_CODES.includes(event.code) || RECONNECT_CODES.includes(event.code);
      onclose(keep ? event : new CloseEvent("close", { code: 1006, reason: event.reason }));
    });
    return socket;
  };

  // While the browser is offline the page retries every second, so that it
  // is back soon after the network. Otherwise it waits a random time below
  // a ceiling that doubles from half a second to four seconds, so pages
  // spread their reconnects after a restart yet are all back within about
  // four seconds of the server.
  htmx.config.wsReconnectDelay = function (retryCount) {
    if (!navigator.onLine) return 1000;
    return Math.random() * Math.min(4000, 500 * Math.pow(2, retryCount));
  };
  window.addEventListener("offline", function () {
    showBanner(true);
    if (rawSocket) rawSocket.close(CLOSE_OFFLINE, "offline");
  });
})();
