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
  const CLOSE_OFFLINE = 4000;
  const FINAL_CODES = [SIGNED_OUT, 1008];
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

  htmx.defineExtension("live", {
    transformResponse: function (text, xhr) {
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
        return body;
      }

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
      return body;
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
    if (field.name && field.form && field.form.hasAttribute("data-presence")) {
      presence.editing = field.name;
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
    showBanner(true);
  });

  let rawSocket = null;
  htmx.createWebSocket = function (url) {
    const socket = new WebSocket(url, []);
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
