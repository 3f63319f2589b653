/* Classroom lab: the live-coding half of a live session, on the chat's own WebSocket.
 *
 * live.js owns the connection (joining, resuming, back-off) and hands every frame to the
 * hooks of window.classroomLive; this file draws the lab from them (#lab, data-lab-role):
 * - "instructor": steps editor (Markdown, .md or Notion .zip upload split by the server with
 *   steps/preview, edit, reorder, send as steps/all), sharing on/off, exercise, files to
 *   ignore, the grid (students x steps, signal, online; HELP counted in the page title) and
 *   one student's code and steps with accept/reject;
 * - "student": the steps (HTML rendered by the server), a status per step, help/done signal,
 *   alerts and feedback, and an editor per file whose changes go out as sharing/code_update
 *   (debounced) while sharing is on;
 * - "stats": the grid alone (the projector view of /rooms/{id}/stats).
 *
 * Invariants:
 * - the join answer's `state` is the truth at its room.last_seq; stored events at or below it
 *   (history replayed for the chat) are not applied again, later ones are applied in order;
 * - user text reaches the page through textContent; the only HTML inserted is the server's
 *   rendering of step and exercise Markdown (raw HTML escaped, http(s) links only) and
 *   highlight.js's output, which escapes the code it colours;
 * - a student's code leaves the page only while sharing is on.
 */
(function () {
  "use strict";

  // Every code update is stored whole (the server keeps at most 16 MiB per person per room):
  // typing goes out after a pause, not at every key.
  const DEBOUNCE = 1500;
  const MAX_ALERTS = 6;
  const MAX_UPLOAD = 700 * 1024;
  const STUDENT_STATUSES = [["NONE", "not started"], ["IN_PROGRESS", "in progress"],
    ["HELP", "help"], ["DONE", "done"]];
  const LABELS = { NONE: "—", IN_PROGRESS: "in progress", HELP: "help", DONE: "done",
    ACCEPTED: "accepted", REJECTED: "rejected" };
  const LANGUAGES = { py: "python", js: "javascript", mjs: "javascript", ts: "typescript",
    java: "java", c: "c", h: "c", cpp: "cpp", cc: "cpp", hpp: "cpp", cs: "csharp", go: "go",
    rs: "rust", rb: "ruby", php: "php", sh: "bash", bash: "bash", html: "xml", xml: "xml",
    css: "css", json: "json", yml: "yaml", yaml: "yaml", md: "markdown", sql: "sql",
    kt: "kotlin", swift: "swift", lua: "lua", r: "r", toml: "ini", ini: "ini" };

  const lab = document.getElementById("lab");
  const root = document.getElementById("live");
  const live = window.classroomLive;
  if (!lab || !root || !live) return;
  const $ = (id) => document.getElementById(id);
  const role = lab.dataset.labRole;
  const roomId = Number(root.dataset.roomId);
  const meId = Number(root.dataset.userId);
  const baseTitle = document.title;

  const state = {
    connected: false,
    seenSeq: 0, // stored events up to here are in `state` already
    steps: [],
    settings: { files_to_ignore: "" },
    sharing: false,
    exercise: null,
    me: { statuses: [], signal: "NONE", feedback: null },
    grid: new Map(), // user id -> row {user_id, name, online, statuses, signal, feedback, files}
  };
  const answers = new Map(); // ref -> function(frame) for the answer or error to that request

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function button(text, className, onClick) {
    const b = el("button", "button small " + (className || ""), text);
    b.type = "button";
    b.addEventListener("click", onClick);
    return b;
  }

  function pill(status) {
    const value = LABELS[status] ? status : "NONE";
    return el("span", "pill st-" + value, LABELS[value]);
  }

  function request(event, data, onAnswer) {
    const ref = live.send(event, Object.assign({ room_id: roomId }, data));
    if (ref !== null && onAnswer) answers.set(ref, onAnswer);
    return ref;
  }

  function say(id, text, isError) {
    const node = $(id);
    if (!node) return;
    node.textContent = text;
    node.classList.toggle("lab-error", Boolean(isError));
  }

  function setEnabled(ids, enabled) {
    ids.forEach((id) => { const node = $(id); if (node) node.disabled = !enabled; });
  }

  // -- alerts ------------------------------------------------------------------------------

  function showAlert(data) {
    const list = $("lab-alerts");
    const item = el("li", "lab-alert alert-" + String(data.status || "INFORMATION").toLowerCase());
    item.append(el("span", "", String(data.message || "")));
    if (role === "instructor" && data.user_id && state.grid.has(data.user_id)) {
      item.append(" ", button("Open", "ghost", () => openStudent(data.user_id)));
    }
    list.prepend(item);
    while (list.children.length > MAX_ALERTS) list.lastElementChild.remove();
  }

  // -- shared parts: sharing flag, exercise ---------------------------------------------------

  function renderSharing() {
    const flag = $("lab-sharing");
    flag.textContent = state.sharing ? "sharing on" : "sharing off";
    flag.className = "pill " + (state.sharing ? "sharing-on" : "sharing-off");
    const toggle = $("lab-share-toggle");
    if (toggle) toggle.textContent = state.sharing ? "End sharing" : "Start sharing";
    const note = $("lab-share-note");
    if (note) {
      note.textContent = state.sharing
        ? "Sharing is on: the instructor sees these files as you type."
        : "Sharing is off: nothing you write here leaves this page until the instructor starts it.";
    }
  }

  function renderExercise() {
    const box = $("lab-exercise");
    if (!box) return;
    box.hidden = !state.exercise;
    if (state.exercise) {
      // Rendered by the server (classroom/steps_import.py): raw HTML escaped, http(s) links.
      $("lab-exercise-text").innerHTML = String(state.exercise.html || "");
    }
    const feedback = $("lab-feedback");
    if (feedback && role === "student") {
      const value = state.me.feedback;
      feedback.hidden = value === null || value === undefined;
      feedback.textContent = value ? "accepted" : "rejected";
      feedback.className = "pill st-" + (value ? "ACCEPTED" : "REJECTED");
    }
  }

  // -- the student's steps, signal and code --------------------------------------------------

  function renderMySteps() {
    const list = $("lab-steps");
    $("lab-no-steps").hidden = state.steps.length > 0;
    list.replaceChildren(...state.steps.map((step, index) => {
      const item = el("li", "lab-step");
      item.dataset.step = String(index);
      const head = el("div", "lab-step-head");
      head.append(el("h4", "", (index + 1) + ". " + String(step.name)));
      const status = state.me.statuses[index] || "NONE";
      head.append(pill(status));
      const select = el("select", "lab-step-status");
      select.setAttribute("aria-label", "Status of step " + (index + 1));
      for (const [value, label] of STUDENT_STATUSES) {
        const option = el("option", "", label);
        option.value = value;
        select.append(option);
      }
      select.value = STUDENT_STATUSES.some(([v]) => v === status) ? status : "DONE";
      select.disabled = !state.connected;
      select.addEventListener("change", () => request("steps/status/to_mentor",
        { step: index, status: select.value }, (answer) => {
          if (answer.event === "error") showAlert({ status: "ERROR", message: answer.data.message });
        }));
      head.append(select);
      const body = el("div", "markdown");
      if (step.html !== undefined) body.innerHTML = String(step.html); // server-rendered, safe
      else body.textContent = String(step.content || "");
      item.append(head, body);
      return item;
    }));
  }

  function renderMySignal() {
    const signal = $("lab-my-signal");
    signal.className = "pill st-" + (LABELS[state.me.signal] ? state.me.signal : "NONE");
    signal.textContent = state.me.signal === "NONE" ? "none" : LABELS[state.me.signal];
  }

  const editor = {
    files: new Map(), // name -> content, as on this page
    sent: new Map(), // name -> content, as the instructor has it
    selected: null,
    timer: null,
    blocked: null, // why the server takes no more code from us (quota), or null
  };

  function tree(names, fileItem) {
    // Paths as a tree: each folder once, above its files, everything indented by depth.
    const items = [];
    const shown = new Set();
    for (const name of names) {
      const parts = name.split("/");
      for (let depth = 1; depth < parts.length; depth += 1) {
        const folder = parts.slice(0, depth).join("/");
        if (shown.has(folder)) continue;
        shown.add(folder);
        const item = el("li", "lab-dir", parts[depth - 1] + "/");
        item.dataset.depth = String(depth - 1);
        items.push(item);
      }
      const item = fileItem(name, parts[parts.length - 1]);
      item.dataset.depth = String(parts.length - 1);
      items.push(item);
    }
    return items;
  }

  function renderMyFiles() {
    const list = $("lab-my-files");
    const names = Array.from(editor.files.keys()).sort();
    list.replaceChildren(...tree(names, (name, base) => {
      const item = el("li", name === editor.selected ? "selected" : "");
      const pick = el("button", "link-button", base);
      pick.title = name;
      pick.type = "button";
      pick.addEventListener("click", () => selectFile(name));
      item.append(pick);
      if (!editor.sent.has(name)) item.append(el("span", "badge file-new", "new"));
      else if (editor.sent.get(name) !== editor.files.get(name)) item.append(el("span", "badge file-changed", "changed"));
      return item;
    }));
    const code = $("lab-code");
    $("lab-file-tools").hidden = editor.selected === null;
    code.disabled = editor.selected === null;
    if (editor.selected !== null && code.value !== editor.files.get(editor.selected)) {
      code.value = editor.files.get(editor.selected);
    }
    if (editor.selected === null) code.value = "";
  }

  function selectFile(name) {
    editor.selected = name;
    $("lab-rename").value = name;
    renderMyFiles();
    $("lab-code").focus();
  }

  function cleanName(raw) {
    const name = String(raw || "").trim().replace(/\\/g, "/");
    if (!name || name.length > 255 || name.startsWith("/") || name.split("/").includes("..")) {
      return null;
    }
    return name;
  }

  function codeError(text) {
    const box = $("lab-code-error");
    box.textContent = text || "";
    box.hidden = !text;
  }

  function changed() {
    clearTimeout(editor.timer);
    editor.timer = setTimeout(flush, DEBOUNCE);
    renderMyFiles();
  }

  function flush() {
    editor.timer = null;
    if (!state.sharing || !state.connected || editor.blocked !== null) return;
    const files = [];
    editor.files.forEach((content, name) => {
      if (!editor.sent.has(name)) files.push({ filename: name, status: "new", content: content });
      else if (editor.sent.get(name) !== content) files.push({ filename: name, status: "changed", content: content });
    });
    editor.sent.forEach((_, name) => {
      if (!editor.files.has(name)) files.push({ filename: name, status: "deleted", content: "" });
    });
    if (!files.length) return;
    sendFiles("sharing/code_update", files);
  }

  function sendAll() {
    if (!state.sharing || !state.connected || !editor.files.size || editor.blocked !== null) return;
    const files = Array.from(editor.files, ([name, content]) => ({ filename: name, status: "new", content: content }));
    sendFiles("sharing/code_send", files);
  }

  function sendFiles(event, files) {
    const snapshot = new Map(editor.files);
    const ref = request(event, { files: files }, (answer) => {
      if (answer.event === "error") {
        const data = answer.data || {};
        codeError(String(data.message || "not shared"));
        if (data.code === "rate_limited") {
          // Try again once the server lets us: the changes are still unsent.
          clearTimeout(editor.timer);
          editor.timer = setTimeout(flush, 1000 * Math.max(1, Number(data.retry_after) || 1));
        } else if (data.code === "quota_exceeded") {
          editor.blocked = String(data.message || "");
        }
      } else {
        editor.sent = snapshot;
        codeError("");
        renderMyFiles();
      }
    });
    if (ref === null) codeError("Not connected: your changes go out when the page reconnects.");
  }

  function studentPage() {
    $("lab-help").addEventListener("click", () => request("signal", { value: "HELP" }));
    $("lab-done").addEventListener("click", () => request("signal", { value: "DONE" }));
    $("lab-clear").addEventListener("click", () => request("signal", { value: "NONE" }));
    $("lab-add-file").addEventListener("submit", (e) => {
      e.preventDefault();
      const name = cleanName($("lab-new-name").value);
      if (name === null) return codeError("A file name is a relative path, without '..'.");
      if (!editor.files.has(name)) editor.files.set(name, "");
      $("lab-new-name").value = "";
      codeError("");
      selectFile(name);
      changed();
    });
    $("lab-code").addEventListener("input", () => {
      if (editor.selected === null) return;
      editor.files.set(editor.selected, $("lab-code").value);
      changed();
    });
    $("lab-rename-button").addEventListener("click", () => {
      const name = cleanName($("lab-rename").value);
      if (name === null || editor.selected === null) return codeError("A file name is a relative path, without '..'.");
      if (name === editor.selected) return;
      if (editor.files.has(name)) return codeError(name + " exists already.");
      editor.files.set(name, editor.files.get(editor.selected));
      editor.files.delete(editor.selected);
      editor.selected = name;
      codeError("");
      changed();
    });
    $("lab-delete-button").addEventListener("click", () => {
      if (editor.selected === null) return;
      editor.files.delete(editor.selected);
      editor.selected = null;
      changed();
    });
  }

  // -- the grid --------------------------------------------------------------------------------

  function needsHelp(row) {
    return row.signal === "HELP" || row.statuses.some((s) => s === "HELP");
  }

  let drawPending = false;
  function drawGrid() {
    if (drawPending || !$("lab-grid")) return;
    drawPending = true;
    requestAnimationFrame(() => {
      drawPending = false;
      renderGrid();
    });
  }

  function renderGrid() {
    const table = $("lab-grid");
    const head = el("tr");
    const cols = ["Student", "Signal", ...state.steps.map((s, i) => (i + 1) + ". " + String(s.name)), "Exercise", "Files"];
    cols.forEach((name) => {
      const th = el("th", "", name);
      th.scope = "col";
      head.append(th);
    });
    const rows = Array.from(state.grid.values()).sort((a, b) => a.name.localeCompare(b.name));
    let helping = 0;
    const body = rows.map((row) => {
      const help = needsHelp(row);
      if (help) helping += 1;
      const tr = el("tr", (row.online ? "online" : "offline") + (help ? " needs-help" : ""));
      tr.dataset.userId = String(row.user_id);
      const who = el("th", "student-cell");
      who.scope = "row";
      const dot = el("span", "dot");
      dot.title = row.online ? "online" : "offline";
      if (role === "instructor") {
        const open = el("button", "link-button lab-open", row.name);
        open.type = "button";
        open.addEventListener("click", () => openStudent(row.user_id));
        who.append(dot, open);
      } else {
        who.append(dot, el("span", "", row.name));
      }
      who.append(el("span", "visually-hidden", row.online ? " online" : " offline"));
      const signal = el("td", "signal-cell");
      signal.append(pill(row.signal));
      tr.append(who, signal);
      state.steps.forEach((_, index) => {
        const td = el("td", "step-cell");
        td.dataset.step = String(index);
        td.append(pill(row.statuses[index] || "NONE"));
        tr.append(td);
      });
      const feedback = el("td", "feedback-cell");
      if (row.feedback !== null && row.feedback !== undefined) {
        feedback.append(pill(row.feedback ? "ACCEPTED" : "REJECTED"));
      }
      const files = el("td", "files-cell", row.files.length ? String(row.files.length) : "");
      tr.append(feedback, files);
      return tr;
    });
    if (!rows.length) {
      const td = el("td", "muted", "No students in this class yet.");
      td.colSpan = cols.length;
      const tr = el("tr");
      tr.append(td);
      body.push(tr);
    }
    const thead = el("thead");
    thead.append(head);
    const tbody = el("tbody");
    tbody.append(...body);
    const caption = table.querySelector("caption");
    table.replaceChildren(...(caption ? [caption] : []), thead, tbody);
    document.title = helping ? "(" + helping + " need help) " + baseTitle : baseTitle;
    if (selected.userId !== null) renderStudentSteps();
  }

  function gridRow(userId) {
    return state.grid.get(userId) || null;
  }

  let tableAsked = false;
  function askTable() {
    // Someone not in the grid (joined the class after this page loaded): read it again, once.
    if (tableAsked) return;
    tableAsked = true;
    setTimeout(() => {
      tableAsked = false;
      request("steps/table", {});
    }, 200);
  }

  function setGrid(students) {
    state.grid = new Map((students || []).map((s) => [s.user_id, {
      user_id: s.user_id, name: String(s.name), online: Boolean(s.online),
      statuses: Array.isArray(s.statuses) ? s.statuses.slice() : [], signal: s.signal || "NONE",
      feedback: s.feedback === undefined ? null : s.feedback,
      files: Array.isArray(s.files) ? s.files : [],
    }]));
  }

  // -- the instructor: one student's code and steps ---------------------------------------------

  const selected = { userId: null, files: [], file: null };

  function openStudent(userId) {
    const row = gridRow(userId);
    if (!row) return;
    selected.userId = userId;
    $("lab-student").hidden = false;
    $("lab-student-name").textContent = row.name;
    renderStudentSteps();
    loadCode();
    $("lab-student").scrollIntoView({ block: "nearest" });
  }

  function loadCode() {
    if (selected.userId === null) return;
    const userId = selected.userId;
    request("sharing/code", { user_id: userId }, (answer) => {
      if (answer.event !== "sharing/code" || selected.userId !== userId) return;
      selected.files = answer.data.files || [];
      renderTree();
    });
  }

  function renderStudentSteps() {
    const row = gridRow(selected.userId);
    if (!row) return;
    const list = $("lab-student-steps");
    list.replaceChildren(...state.steps.map((step, index) => {
      const item = el("li", "lab-student-step");
      item.dataset.step = String(index);
      item.append(el("span", "", (index + 1) + ". " + String(step.name)), " ", pill(row.statuses[index] || "NONE"), " ");
      item.append(button("Accept", "lab-accept", () => request("steps/status/to_client",
        { user_id: row.user_id, step: index, status: "ACCEPTED" })));
      item.append(button("Reject", "danger lab-reject", () => request("steps/status/to_client",
        { user_id: row.user_id, step: index, status: "REJECTED" })));
      return item;
    }));
  }

  function renderTree() {
    const list = $("lab-tree");
    $("lab-no-files").hidden = selected.files.length > 0;
    const names = selected.files.map((f) => f.filename);
    if (!names.includes(selected.file)) selected.file = names.length ? names[0] : null;
    const byName = new Map(selected.files.map((f) => [f.filename, f]));
    list.replaceChildren(...tree(names.slice().sort(), (name, base) => {
      const file = byName.get(name);
      const item = el("li", file.filename === selected.file ? "selected" : "");
      const pick = el("button", "link-button", base);
      pick.title = file.filename;
      pick.type = "button";
      pick.addEventListener("click", () => {
        selected.file = file.filename;
        renderTree();
      });
      item.append(pick);
      if (file.status === "new" || file.status === "changed") {
        item.append(el("span", "badge file-" + file.status, file.status));
      }
      return item;
    }));
    const file = selected.files.find((f) => f.filename === selected.file);
    showCode(file || null);
  }

  function showCode(file) {
    const view = $("lab-view");
    const gutter = view.querySelector(".lab-gutter");
    const code = view.querySelector("code");
    $("lab-file-name").textContent = file ? file.filename : "";
    view.hidden = !file;
    if (!file) return;
    const text = String(file.content);
    const ext = file.filename.includes(".") ? file.filename.split(".").pop().toLowerCase() : "";
    const language = LANGUAGES[ext];
    code.className = "hljs";
    if (window.hljs && language && window.hljs.getLanguage(language)) {
      // highlight.js escapes the code; its output is spans with classes only.
      code.innerHTML = window.hljs.highlight(text, { language: language, ignoreIllegals: true }).value;
      code.classList.add("language-" + language);
    } else {
      code.textContent = text;
    }
    const lines = text.split("\n").length;
    gutter.textContent = Array.from({ length: lines }, (_, i) => String(i + 1)).join("\n");
  }

  // -- the instructor: steps editor, sharing, exercise, settings ---------------------------------

  let draft = [];

  function renderDraft() {
    const list = $("lab-draft");
    list.replaceChildren(...draft.map((step, index) => {
      const item = el("li", "lab-draft-step");
      const row = el("div", "lab-row");
      const name = el("input", "lab-step-name");
      name.value = step.name;
      name.maxLength = 200;
      name.setAttribute("aria-label", "Name of step " + (index + 1));
      name.addEventListener("input", () => { step.name = name.value; });
      const kind = el("select", "lab-step-type");
      kind.setAttribute("aria-label", "Kind of step " + (index + 1));
      for (const value of ["theory", "exercise"]) {
        const option = el("option", "", value);
        option.value = value;
        kind.append(option);
      }
      kind.value = step.type === "exercise" ? "exercise" : "theory";
      kind.addEventListener("change", () => { step.type = kind.value; });
      row.append(el("span", "lab-step-number", (index + 1) + "."), name, kind,
        button("↑", "ghost", () => move(index, -1)), button("↓", "ghost", () => move(index, 1)),
        button("Remove", "ghost", () => { draft.splice(index, 1); renderDraft(); }));
      const content = el("textarea", "lab-step-content");
      content.rows = 4;
      content.value = step.content;
      content.setAttribute("aria-label", "Content of step " + (index + 1));
      content.addEventListener("input", () => { step.content = content.value; });
      item.append(row, content);
      return item;
    }));
    setEnabled(["lab-send-steps"], state.connected && draft.length > 0);
  }

  function move(index, by) {
    const to = index + by;
    if (to < 0 || to >= draft.length) return;
    const [step] = draft.splice(index, 1);
    draft.splice(to, 0, step);
    renderDraft();
  }

  function editable(steps) {
    return (steps || []).map((s) => ({ name: String(s.name || ""), content: String(s.content || ""),
      language: String(s.language || ""), type: s.type === "exercise" ? "exercise" : "theory" }));
  }

  function previewed(answer, statusId) {
    if (answer.event === "error") {
      say(statusId, String(answer.data.message || "refused"), true);
      return;
    }
    draft = editable(answer.data.steps);
    say(statusId, draft.length + " steps: check them, then send.", false);
    renderDraft();
  }

  function toBase64(buffer) {
    const bytes = new Uint8Array(buffer);
    let binary = "";
    for (let i = 0; i < bytes.length; i += 0x8000) {
      binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    return btoa(binary);
  }

  function instructorPage() {
    $("lab-share-toggle").addEventListener("click", () => request(state.sharing ? "sharing/end" : "sharing/start", {}));
    $("lab-reset").addEventListener("click", () => request("exercise/reset", {}));
    $("lab-split").addEventListener("click", () => {
      const markdown = $("lab-markdown").value;
      if (!markdown.trim()) return say("lab-upload-status", "Write or paste the lesson first.", true);
      request("steps/preview", { markdown: markdown }, (answer) => previewed(answer, "lab-upload-status"));
    });
    $("lab-upload").addEventListener("change", () => {
      const file = $("lab-upload").files[0];
      $("lab-upload").value = "";
      if (!file) return;
      if (file.size > MAX_UPLOAD) {
        say("lab-upload-status", file.name + " is larger than " + (MAX_UPLOAD / 1024) + " KiB.", true);
        return;
      }
      say("lab-upload-status", "Reading " + file.name + "…", false);
      file.arrayBuffer().then((buffer) => {
        const ref = request("steps/preview", { filename: file.name, content_base64: toBase64(buffer) },
          (answer) => previewed(answer, "lab-upload-status"));
        if (ref === null) say("lab-upload-status", "Not connected: try again.", true);
      });
    });
    $("lab-add-step").addEventListener("click", () => {
      draft.push({ name: "Step " + (draft.length + 1), content: "", language: "", type: "theory" });
      renderDraft();
    });
    $("lab-send-steps").addEventListener("click", () => {
      request("steps/all", { steps: draft }, (answer) => {
        if (answer.event === "error") say("lab-steps-status", String(answer.data.message), true);
        else say("lab-steps-status", "Sent " + draft.length + " steps.", false);
      });
    });
    $("lab-send-exercise").addEventListener("click", () => {
      request("exercise", { content: $("lab-exercise-input").value }, (answer) => {
        if (answer.event === "error") showAlert({ status: "ERROR", message: answer.data.message });
      });
    });
    $("lab-save-ignore").addEventListener("click", () => {
      request("settings", { files_to_ignore: $("lab-ignore").value });
    });
    $("lab-accept-exercise").addEventListener("click", () => request("exercise/feedback",
      { user_id: selected.userId, accepted: true }));
    $("lab-reject-exercise").addEventListener("click", () => request("exercise/feedback",
      { user_id: selected.userId, accepted: false }));
    $("lab-student-close").addEventListener("click", () => {
      selected.userId = null;
      $("lab-student").hidden = true;
    });
  }

  // -- frames ------------------------------------------------------------------------------------

  const CONTROLS = ["lab-share-toggle", "lab-reset", "lab-split", "lab-send-exercise",
    "lab-save-ignore", "lab-help", "lab-done", "lab-clear"];

  function joined(data) {
    const given = data.state || {};
    state.connected = true;
    state.seenSeq = Number((data.room || {}).last_seq || 0);
    state.steps = Array.isArray(given.steps) ? given.steps : [];
    state.settings = given.settings || { files_to_ignore: "" };
    state.sharing = Boolean(given.sharing);
    state.exercise = given.exercise || null;
    setEnabled(CONTROLS, (data.room || {}).open !== false);
    if (role === "student") {
      const me = given.me || {};
      state.me = { statuses: me.statuses || [], signal: me.signal || "NONE",
        feedback: me.feedback === undefined ? null : me.feedback };
      if (!editor.files.size && Array.isArray(me.files)) {
        // What the server kept of this student's code: the editor starts from it.
        for (const file of me.files) editor.files.set(file.filename, String(file.content));
        editor.sent = new Map(editor.files);
        if (editor.files.size) editor.selected = Array.from(editor.files.keys()).sort()[0];
      }
      renderMySteps();
      renderMySignal();
      renderMyFiles();
      sendAll();
      flush();
    } else {
      setGrid(given.grid);
      drawGrid();
      if (role === "instructor") {
        if (!draft.length) {
          draft = editable(state.steps);
          renderDraft();
        }
        $("lab-ignore").value = String(state.settings.files_to_ignore || "");
        if (state.exercise && !$("lab-exercise-input").value) {
          $("lab-exercise-input").value = String(state.exercise.content || "");
        }
        renderDraft();
        if (selected.userId !== null) loadCode();
      }
    }
    renderSharing();
    renderExercise();
  }

  function applyStored(event, data) {
    const from = (data.from || {}).id;
    switch (event) {
      case "steps/all":
        state.steps = data.steps || [];
        if (role === "student") renderMySteps();
        drawGrid();
        return;
      case "settings":
        state.settings = data;
        return;
      case "sharing/start":
      case "sharing/end":
        state.sharing = event === "sharing/start";
        renderSharing();
        if (role === "student" && state.sharing) {
          editor.sent = new Map();
          sendAll();
        }
        return;
      case "exercise":
        state.exercise = data;
        renderExercise();
        return;
      case "exercise/reset":
        state.me.feedback = null;
        state.grid.forEach((row) => { row.feedback = null; });
        renderExercise();
        drawGrid();
        return;
      case "exercise/feedback":
        if (role === "student" && data.user_id === meId) {
          state.me.feedback = Boolean(data.accepted);
          renderExercise();
        }
        updateRow(data.user_id, (row) => { row.feedback = Boolean(data.accepted); });
        return;
      case "steps/status/to_mentor":
      case "steps/status/to_client": {
        const who = event === "steps/status/to_mentor" ? from : data.user_id;
        if (role === "student" && who === meId) {
          state.me.statuses[data.step] = data.status;
          renderMySteps();
        }
        updateRow(who, (row) => { row.statuses[data.step] = data.status; });
        return;
      }
      case "signal":
        if (role === "student" && from === meId) {
          state.me.signal = data.value;
          renderMySignal();
        }
        updateRow(from, (row) => { row.signal = data.value; });
        return;
      case "sharing/code_send":
      case "sharing/code_update":
        updateRow(from, (row) => {
          const files = new Map(event === "sharing/code_send" ? [] : row.files.map((f) => [f.filename, f]));
          for (const f of data.files || []) {
            if (f.status === "deleted") files.delete(f.filename);
            else files.set(f.filename, { filename: f.filename, status: f.status });
          }
          row.files = Array.from(files.values());
        });
        if (role === "instructor" && from === selected.userId) loadCode();
        return;
      default:
    }
  }

  function updateRow(userId, change) {
    if (role === "student") return;
    const row = gridRow(userId);
    if (!row) {
      askTable();
      return;
    }
    change(row);
    drawGrid();
  }

  live.listen((frame) => {
    const data = frame.data || {};
    if (frame.ref !== undefined && answers.has(frame.ref) && frame.event !== "room/join") {
      const answer = answers.get(frame.ref);
      answers.delete(frame.ref);
      answer(frame);
      if (frame.event === "ack" || frame.event === "error") return;
    }
    switch (frame.event) {
      case "room/join":
        if (data.room && data.room.id === roomId) joined(data);
        return;
      case "connection/closed":
        state.connected = false;
        answers.clear();
        setEnabled(CONTROLS, false);
        setEnabled(["lab-send-steps"], false);
        if (role === "student") renderMySteps();
        return;
      case "alerts":
        if (data.room_id === roomId) showAlert(data);
        return;
      case "presence":
        if (data.room_id === roomId && Array.isArray(data.changes) && role !== "student") {
          // A batch of changes: the grid is drawn once (or asked for again once).
          let missing = false;
          for (const change of data.changes) {
            if (change.user_id === meId) continue;
            const row = gridRow(change.user_id);
            if (row) row.online = Boolean(change.online);
            else missing = true;
          }
          if (missing) askTable();
          else drawGrid();
        }
        return;
      case "steps/table":
        if (data.room_id === roomId) {
          setGrid(data.students);
          drawGrid();
        }
        return;
      case "room/closed":
      case "room/kill":
        setEnabled(CONTROLS, false);
        return;
      default:
        if (typeof frame.seq === "number" && data.room_id === roomId && frame.seq > state.seenSeq) {
          state.seenSeq = frame.seq;
          applyStored(frame.event, data);
        }
    }
  });

  if (role === "student") studentPage();
  else if (role === "instructor") instructorPage();
})();
