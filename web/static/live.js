/* Classroom live pages: the chat of a live session or discussion, a coding room's results
 * table, and the "no session yet" page that reloads when the chat server says one started.
 *
 * No framework and no inline script (CSP script-src 'self'): the page hands its settings over
 * in data-* attributes of #live (mode, chat-url, room-id, user-id, role, ...). The browser sends
 * the session cookie with the WebSocket handshake itself; the chat server checks the Origin.
 *
 * Invariants:
 * - user data reaches the page through textContent only, never innerHTML;
 * - a stored event (one with a seq) is shown at most once: `lastSeq` only grows, a resume asks
 *   for what came after it, and anything at or below it is dropped;
 * - after `room/kill` or `room/closed` the page stops reconnecting; otherwise it reconnects
 *   with exponential back-off and jitter between MIN_DELAY and MAX_DELAY;
 * - the feed keeps at most MAX_MESSAGES entries (the oldest go first).
 *
 * Modes (data-mode): "chat" (a room's chat), "stats" (a coding room's results: lab.js draws
 * the grid, this page only keeps the room joined) and
 * "wait" (no live session yet: reload when the chat server pushes `class/live` with one).
 */
(function () {
  "use strict";

  const MIN_DELAY = 500;
  const MAX_DELAY = 10000;
  const MAX_MESSAGES = 1000;
  const CHAT_EVENTS = ["message", "message/to_mentor", "message/to_client"];

  const root = document.getElementById("live");
  if (!root) return;
  const $ = (id) => document.getElementById(id);
  const settings = root.dataset;
  const me = {
    id: Number(settings.userId),
    name: settings.userName || "",
    role: settings.role,
  };
  const isInstructor = me.role === "instructor";
  const roomId = Number(settings.roomId || 0);
  const classroomId = Number(settings.classroomId);
  const instructorId = Number(settings.instructorId);
  const roomWord = settings.kind === "discussion" ? "discussion" : "session";

  // -- small helpers ----------------------------------------------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function sentence(text) {
    const value = String(text || "");
    return value.charAt(0).toUpperCase() + value.slice(1);
  }

  function chatUrl(raw) {
    // A chat server listening on every address names itself 0.0.0.0: use this page's host.
    try {
      const url = new URL(raw, location.href);
      if (url.hostname === "0.0.0.0" || url.hostname === "[::]") url.hostname = location.hostname;
      return url.href;
    } catch (e) {
      return raw;
    }
  }

  function setStatus(state, text) {
    const status = $("status");
    if (!status) return;
    status.className = "status status-" + state;
    status.textContent = text;
  }

  function showBanner(text, link) {
    const banner = $("banner");
    if (!banner) return;
    banner.replaceChildren(document.createTextNode(text));
    if (link) {
      const a = el("a", "", link.text);
      a.href = link.href;
      banner.append(" ", a);
    }
    banner.hidden = false;
  }

  function clock(iso) {
    // The reader's own time zone: "14:05" in the feed, the full date and zone as a tooltip.
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return { short: "", full: "" };
    return {
      short: date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }),
      full: date.toLocaleString([], {
        year: "numeric", month: "short", day: "numeric", hour: "numeric", minute: "2-digit",
        timeZoneName: "short",
      }),
    };
  }

  // http(s) links in a message become anchors; everything else stays text (textContent).
  // The scan is one pass of a regex without nested repetition, so it runs in linear time.
  const LINK = /\bhttps?:\/\/[^\s<>"'`]+/gi;
  const TRAILING = /[.,;:!?)\]}'"]+$/;

  function linkified(text) {
    const fragment = document.createDocumentFragment();
    let last = 0;
    for (const match of text.matchAll(LINK)) {
      let raw = match[0];
      const trail = raw.match(TRAILING);
      if (trail) raw = raw.slice(0, raw.length - trail[0].length);
      let url = null;
      try {
        url = new URL(raw);
      } catch (e) {
        url = null;
      }
      if (!raw || !url || (url.protocol !== "http:" && url.protocol !== "https:")) continue;
      fragment.append(document.createTextNode(text.slice(last, match.index)));
      const a = el("a", "", raw);
      a.href = url.href;
      a.rel = "noopener nofollow ugc";
      fragment.append(a);
      last = match.index + raw.length;
    }
    fragment.append(document.createTextNode(text.slice(last)));
    return fragment;
  }

  // -- the connection: one WebSocket at a time, re-opened until stopped --------------------

  const conn = {
    ws: null,
    attempt: 0,
    stopped: false,
    timer: null,
    countdown: null,
    nextRef: 0,
    handlers: null,
  };

  function open() {
    conn.timer = null;
    if (conn.stopped) return;
    setStatus("wait", conn.attempt ? "reconnecting…" : "connecting…");
    let ws;
    try {
      ws = new WebSocket(chatUrl(settings.chatUrl));
    } catch (e) {
      retryLater();
      return;
    }
    conn.ws = ws;
    ws.onopen = () => conn.handlers.opened();
    ws.onmessage = (message) => {
      let frame;
      try {
        frame = JSON.parse(message.data);
      } catch (e) {
        return;
      }
      if (frame && typeof frame.event === "string") {
        conn.handlers.frame(frame);
        hooks.forEach((hook) => hook(frame));
      }
    };
    ws.onclose = (event) => {
      if (conn.ws !== ws) return;
      conn.ws = null;
      conn.handlers.closed();
      hooks.forEach((hook) => hook({ event: "connection/closed", data: {} }));
      // 4401: this sign-in ended (logout, expiry, a password change): retrying cannot help.
      if (event.code === 4401) {
        stop((event.reason || "signed out") + ": sign in again");
        return;
      }
      retryLater();
    };
  }

  // The lab panel (static/lab.js) rides on this connection: it hears every frame after the
  // page has, and sends through `send` (null when not connected).
  const hooks = [];
  window.classroomLive = { listen: (hook) => hooks.push(hook), send: (event, data) => send(event, data) };

  function retryLater() {
    if (conn.stopped) return;
    const ceiling = Math.min(MAX_DELAY, MIN_DELAY * 2 ** conn.attempt);
    const delay = Math.max(MIN_DELAY, ceiling / 2 + Math.random() * (ceiling / 2));
    conn.attempt += 1;
    const due = Date.now() + delay;
    const tick = () => {
      const left = Math.max(1, Math.ceil((due - Date.now()) / 1000));
      setStatus("wait", "reconnecting in " + left + " s");
    };
    tick();
    clearInterval(conn.countdown);
    conn.countdown = setInterval(tick, 1000);
    conn.timer = setTimeout(() => {
      clearInterval(conn.countdown);
      open();
    }, delay);
  }

  function connected() {
    conn.attempt = 0;
    setStatus("ok", "connected");
  }

  // An event's own id: the server stores an event once per id, so a message sent again
  // after a dropped connection (its ack lost) is never doubled.
  const idPrefix = Array.from(crypto.getRandomValues(new Uint8Array(8)),
    (b) => b.toString(16).padStart(2, "0")).join("");
  let idCount = 0;

  function newId() {
    idCount += 1;
    return idPrefix + "-" + idCount;
  }

  function send(event, data, id) {
    if (!conn.ws || conn.ws.readyState !== WebSocket.OPEN) return null;
    conn.nextRef += 1;
    const frame = { event: event, data: data, ref: conn.nextRef };
    if (id) frame.id = id;
    conn.ws.send(JSON.stringify(frame));
    return conn.nextRef;
  }

  function reconnect() {
    // Drop this connection and come back through the back-off (the server asked us to wait).
    if (conn.ws) conn.ws.close(1000);
  }

  function stop(statusText) {
    conn.stopped = true;
    clearTimeout(conn.timer);
    clearInterval(conn.countdown);
    if (conn.ws) {
      const ws = conn.ws;
      conn.ws = null;
      ws.close(1000);
    }
    setStatus("off", statusText || "disconnected");
  }

  window.addEventListener("online", () => {
    // The network is back: do not sit out the rest of the back-off.
    if (conn.timer !== null && !conn.stopped) {
      clearTimeout(conn.timer);
      clearInterval(conn.countdown);
      open();
    }
  });

  function start(handlers) {
    conn.handlers = handlers;
    open();
  }

  // -- a room: joining, resuming, members ------------------------------------------------

  const room = {
    joined: false,
    lastSeq: Number(settings.after || 0),
    joinRef: null,
    members: new Map(),
    // Who is online, as the server counts it (join answer, presence): in a big room a
    // student's list holds only the first names, so counting the list would be wrong.
    onlineCount: null,
    ended: false,
    locked: null, // why nobody can write here any more (ended, removed, refused), or null
    onLocked: null,
  };

  function joinRoom() {
    const data = { room_id: roomId, after: room.lastSeq };
    let event = "room/join";
    if (room.joined) event = isInstructor ? "room/rehost" : "room/rejoin";
    room.joinRef = send(event, data);
  }

  function nameOf(userId) {
    const member = room.members.get(userId);
    return member ? member.display_name : "a member";
  }

  function roomEnded(byInstructor) {
    if (room.ended) return;
    room.ended = true;
    const text = byInstructor
      ? "The instructor ended this " + roomWord + "."
      : "This " + roomWord + " has ended; it is read-only.";
    const link = isInstructor && settings.kind === "live"
      ? { href: "/classrooms/" + classroomId + "/sessions", text: "See attendance" }
      : null;
    showBanner(text, link);
    lock("This " + roomWord + " has ended.");
  }

  function lock(reason) {
    if (room.locked === null) room.locked = reason;
    if (room.onLocked) room.onLocked();
  }

  // What every room page does with the connection; `mode` is the page's own part.
  function roomHandlers(mode) {
    return {
      opened: joinRoom,
      closed: mode.closed || (() => {}),
      frame: (frame) => {
        const data = frame.data || {};
        switch (frame.event) {
          case "room/join":
            room.joined = true;
            connected();
            mode.joined(data);
            if (data.room && data.room.open === false) {
              roomEnded(false);
              conn.stopped = true; // history still arrives on this connection; no resume
            }
            return;
          case "presence":
            if (data.room_id === roomId) mode.presence(data);
            return;
          case "room/kill":
            if (data.room_id === roomId) {
              // The server says why: removed from the room, or no longer in the class.
              const why = typeof data.message === "string" && data.message
                ? data.message.charAt(0).toUpperCase() + data.message.slice(1) + "."
                : "The instructor removed you from this room.";
              showBanner(why);
              stop("removed");
              lock(why);
            }
            return;
          case "error":
            if (frame.ref !== undefined && frame.ref === room.joinRef) {
              if (data.code === "unavailable") {
                reconnect();
              } else {
                const reason = sentence(data.message || "you cannot join this room");
                showBanner(reason);
                stop();
                lock(reason);
              }
              return;
            }
            mode.error(frame, data);
            return;
          default:
            if (typeof frame.seq === "number") {
              if (data.room_id !== undefined && data.room_id !== roomId) return;
              if (frame.seq <= room.lastSeq) return; // seen already
              room.lastSeq = frame.seq;
              if (frame.event === "room/closed") {
                mode.stored(frame, data);
                roomEnded(true);
                stop("ended");
                return;
              }
              mode.stored(frame, data);
            } else if (mode.other) {
              mode.other(frame, data);
            }
        }
      },
    };
  }

  // -- the chat ----------------------------------------------------------------------------

  function chatPage() {
    const feed = $("messages");
    const empty = $("messages-empty");
    const form = $("composer");
    const input = $("message-input");
    const sendButton = $("send-button");
    const sendError = $("send-error");
    const target = $("private-target");
    const toggle = $("private-toggle");
    const memberList = $("members");
    const onlineCount = $("online-count");
    const endButton = $("end-button");
    const endConfirm = $("end-confirm");
    const sendTo = $("send-to");
    const pending = new Map(); // ref -> {text, to, ask, event, data, id}, until acked or refused
    let unconfirmed = []; // sent before the connection dropped, unanswered: sent again once back

    function showSendError(text) {
      sendError.textContent = text;
      sendError.hidden = false;
    }

    function clearSendError() {
      sendError.hidden = true;
      sendError.textContent = "";
    }

    function setReady(ready) {
      const writable = ready && room.locked === null;
      sendButton.disabled = !writable;
      if (endButton) endButton.disabled = !writable;
      if (room.locked !== null) {
        input.disabled = true;
        input.placeholder = room.locked;
        if (target) target.disabled = true;
        if (toggle) toggle.disabled = true;
        if (endConfirm) endConfirm.hidden = true;
      }
    }

    // Members ---------------------------------------------------------------------------

    function renderMembers() {
      const members = Array.from(room.members.values()).sort((a, b) =>
        (b.role === "instructor") - (a.role === "instructor") ||
        a.display_name.localeCompare(b.display_name));
      memberList.replaceChildren(...members.map(memberItem));
      updateOnlineCount();
      if (target) renderTargets(members);
    }

    function memberItem(member) {
      const li = el("li", "member" + (member.online ? " online" : ""));
      li.dataset.userId = String(member.id);
      li.append(el("span", "dot"));
      const label = member.display_name + (member.id === me.id ? " (you)" : "");
      if (isInstructor && member.role === "student") {
        const pick = el("button", "member-name member-pick", label);
        pick.type = "button";
        pick.title = "Message " + member.display_name + " privately";
        pick.addEventListener("click", () => pickTarget(member.id));
        li.append(pick);
      } else {
        li.append(el("span", "member-name", label));
      }
      if (member.role === "instructor") li.append(el("span", "badge badge-instructor", "instructor"));
      li.append(el("span", "visually-hidden member-state", member.online ? "online" : "offline"));
      return li;
    }

    function setStale(stale) {
      // Disconnected: who is online is unknown until the next join answer says again.
      memberList.classList.toggle("stale", stale);
      onlineCount.parentElement.hidden = stale;
    }

    function updateOnlineCount() {
      let online = 0;
      room.members.forEach((m) => { if (m.online) online += 1; });
      onlineCount.textContent = String(room.onlineCount === null ? online : room.onlineCount);
    }

    function renderTargets(members) {
      const chosen = target.value;
      const options = [el("option", "", "Everyone")];
      options[0].value = "";
      for (const member of members) {
        if (member.role !== "student") continue;
        const option = el("option", "", member.display_name + " (private)");
        option.value = String(member.id);
        options.push(option);
      }
      target.replaceChildren(...options);
      target.value = room.members.has(Number(chosen)) ? chosen : "";
      markTarget();
    }

    function pickTarget(userId) {
      if (!target) return;
      target.value = String(userId);
      markTarget();
      input.focus();
    }

    function markTarget() {
      const privately = (target && target.value) || (toggle && toggle.checked);
      form.classList.toggle("private", Boolean(privately));
      if (sendTo) {
        sendTo.textContent = target && target.value
          ? "Private message to " + nameOf(Number(target.value)) + " only"
          : toggle && toggle.checked
            ? "Private question to the instructor only"
            : "To everyone in the " + roomWord;
      }
      input.placeholder = target && target.value
        ? "Private message to " + nameOf(Number(target.value)) + ". Enter sends."
        : toggle && toggle.checked
          ? "Private question to the instructor. Enter sends."
          : "Write a message. Enter sends, Shift+Enter starts a new line.";
    }

    // The feed --------------------------------------------------------------------------

    function append(item) {
      const atBottom = feed.scrollHeight - feed.scrollTop - feed.clientHeight < 60;
      feed.append(item);
      while (feed.children.length > MAX_MESSAGES) feed.firstElementChild.remove();
      if (empty) empty.hidden = true;
      if (atBottom) feed.scrollTop = feed.scrollHeight;
    }

    function privateLabel(event, data) {
      if (event === "message/to_mentor") {
        return isInstructor ? "to you" : "to " + nameOf(instructorId);
      }
      return data.user_id === me.id ? "to you" : "to " + nameOf(data.user_id);
    }

    function showMessage(frame, data) {
      const priv = frame.event !== "message";
      const from = data.from || {};
      const item = el("li", "message" + (priv ? " private" : "") + (from.id === me.id ? " mine" : ""));
      item.dataset.seq = String(frame.seq);
      const head = el("div", "message-head");
      head.append(el("strong", "author", String(from.name || "?")));
      if (priv) head.append(el("span", "badge badge-private", "private · " + privateLabel(frame.event, data)));
      const at = clock(data.at);
      const time = el("time", "", at.short);
      time.dateTime = String(data.at || "");
      time.title = at.full;
      head.append(time);
      if (priv && isInstructor && frame.event === "message/to_mentor" && from.id !== me.id) {
        const reply = el("button", "link-button", "Reply privately");
        reply.type = "button";
        reply.addEventListener("click", () => pickTarget(from.id));
        head.append(reply);
      }
      const body = el("div", "message-text");
      body.append(linkified(String(data.text)));
      item.append(head, body);
      append(item);
    }

    function note(text, seq) {
      const item = el("li", "note", text);
      if (seq !== undefined) item.dataset.seq = String(seq);
      append(item);
    }

    // Sending ---------------------------------------------------------------------------

    function sendMessage() {
      const text = input.value;
      if (room.locked !== null) return;
      if (!text.trim()) {
        showSendError("Write something first: empty messages are not sent.");
        input.focus();
        return;
      }
      const data = { room_id: roomId, text: text };
      let event = "message";
      if (target && target.value) {
        event = "message/to_client";
        data.user_id = Number(target.value);
      } else if (toggle && toggle.checked) {
        event = "message/to_mentor";
      }
      const id = newId();
      const ref = send(event, data, id);
      if (ref === null) {
        showSendError("Not connected: your message was not sent. It is still in the box.");
        return;
      }
      pending.set(ref, {
        text: text, to: target ? target.value : "", ask: Boolean(toggle && toggle.checked),
        event: event, data: data, id: id,
      });
      input.value = "";
      clearSendError();
      // A private reply is one message: the next one goes to everyone again unless chosen.
      if (target && target.value) target.value = "";
      if (toggle && toggle.checked) toggle.checked = false;
      markTarget();
    }

    form.addEventListener("submit", (e) => {
      e.preventDefault();
      sendMessage();
    });
    input.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        sendMessage();
      }
    });
    if (target) target.addEventListener("change", markTarget);
    if (toggle) toggle.addEventListener("change", markTarget);
    markTarget();

    if (endButton) {
      endButton.addEventListener("click", () => {
        endConfirm.hidden = false;
        $("end-yes").focus();
      });
      $("end-no").addEventListener("click", () => {
        endConfirm.hidden = true;
        endButton.focus();
      });
      $("end-yes").addEventListener("click", () => {
        endConfirm.hidden = true;
        if (send("room/close", { room_id: roomId }) === null) {
          showSendError("Not connected: the " + roomWord + " was not ended. Try again.");
        }
      });
    }

    room.onLocked = () => {
      setStale(true);
      setReady(false);
    };

    start(roomHandlers({
      joined: (data) => {
        room.members = new Map((data.members || []).map((m) => [m.id, m]));
        room.onlineCount = typeof data.online_count === "number" ? data.online_count : null;
        renderMembers();
        setStale(false);
        setReady(true);
        // Messages whose ack the dropped connection lost go again, under their first ids:
        // stored once whether or not the first try arrived.
        const again = unconfirmed;
        unconfirmed = [];
        for (const message of again) {
          const ref = send(message.event, message.data, message.id);
          if (ref !== null) pending.set(ref, message);
        }
        if (again.length) clearSendError();
      },
      presence: (data) => {
        // One batch per interval: every change since this page's last snapshot or batch.
        let added = false;
        if (typeof data.online_count === "number") room.onlineCount = data.online_count;
        for (const change of Array.isArray(data.changes) ? data.changes : []) {
          const online = Boolean(change.online);
          const member = room.members.get(change.user_id);
          // Leaving, and never listed (a big room's answer lists only the first names).
          if (!member && !online) continue;
          if (!member) {
            // Someone who joined the class after this page loaded.
            room.members.set(change.user_id, {
              id: change.user_id, display_name: String(change.name || "?"),
              role: change.user_id === instructorId ? "instructor" : "student", online,
            });
            added = true;
            continue;
          }
          member.online = online;
          if (added) continue; // redrawn below
          const item = memberList.querySelector('li[data-user-id="' + change.user_id + '"]');
          if (item) {
            item.classList.toggle("online", online);
            item.querySelector(".member-state").textContent = online ? "online" : "offline";
          }
        }
        if (added) renderMembers();
        else updateOnlineCount();
      },
      stored: (frame, data) => {
        if (CHAT_EVENTS.includes(frame.event)) showMessage(frame, data);
        else if (frame.event === "room/closed") note("The instructor ended this " + roomWord + ".", frame.seq);
      },
      error: (frame, data) => {
        const text = sentence(data.message || "the server refused that");
        if (frame.ref !== undefined && pending.has(frame.ref)) {
          // Refused: the text comes back into the box with the audience it was meant for.
          const refused = pending.get(frame.ref);
          if (!input.value) {
            input.value = refused.text;
            if (target && room.members.has(Number(refused.to))) target.value = refused.to;
            if (toggle) toggle.checked = refused.ask;
            markTarget();
          }
          pending.delete(frame.ref);
          showSendError(text);
        } else if (frame.ref === undefined) {
          showSendError(text);
        } // else: an answer to the lab panel (lab.js), which shows it itself
      },
      other: (frame, data) => {
        if (frame.event === "ack") pending.delete(frame.ref);
        else if (frame.event === "alerts" && data.message) note(String(data.message));
      },
      closed: () => {
        setStale(true);
        setReady(false);
        if (pending.size) {
          showSendError("The connection dropped before the server confirmed your last " +
            "message. It is sent again (once) when the page reconnects.");
          unconfirmed = unconfirmed.concat(Array.from(pending.values()));
          pending.clear();
        }
      },
    }));
  }

  // -- the results page of a coding room: lab.js draws the grid; this only keeps the room joined

  function statsPage() {
    start(roomHandlers({
      joined: () => {},
      presence: () => {},
      stored: () => {},
      error: (frame, data) => showBanner(sentence(data.message || "the server refused that")),
    }));
  }

  // -- no session yet: wait for one -------------------------------------------------------

  function waitPage() {
    // The chat server tells this page when the class's session starts (`class/watch`, then
    // `class/live` pushed to it), whether it was started here, from the API or elsewhere.
    let watchRef = null;
    start({
      opened: () => {
        watchRef = send("class/watch", { classroom_id: classroomId });
      },
      closed: () => {},
      frame: (frame) => {
        const data = frame.data || {};
        if (frame.event === "class/live" && data.classroom_id === classroomId) {
          connected();
          setStatus("ok", "waiting for the session to start");
          if (data.room && data.room.open) {
            stop("starting");
            location.reload();
          }
        } else if (frame.event === "error" && frame.ref === watchRef) {
          if (data.code === "unavailable") reconnect();
          else stop(sentence(data.message || "cannot wait for this class"));
        }
      },
    });
  }

  if (settings.mode === "chat") chatPage();
  else if (settings.mode === "stats") statsPage();
  else if (settings.mode === "wait") waitPage();
})();
