// The status page's refresh and buttons. Everything from the server (queue names, bodies, errors)
// goes into the page through textContent or setAttribute, never as HTML.
"use strict";

(function () {
  const body = document.body;
  const REFRESH = Number(body.dataset.refresh) || 2000;
  const AUTH = body.dataset.auth === "required";
  const KEY = "mqlite-token";
  const STATES = ["ready", "delayed", "claimed", "failed"];
  const HISTORY = 40; // samples kept for each sparkline
  const FAILED_QUEUES = 20;
  const FAILED_PER_QUEUE = 20;
  const history = new Map(); // queue -> [depth, …]
  const svgNS = "http://www.w3.org/2000/svg";

  const $ = (sel, root) => (root || document).querySelector(sel);
  const q = (name) => "/q/" + encodeURIComponent(name);

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(svgNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    return node;
  }

  function age(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60]]) {
      if (seconds >= size) return (seconds / size).toFixed(1) + unit;
    }
    return seconds.toFixed(1) + "s";
  }

  function say(text, bad) {
    const status = $("#status");
    status.textContent = text;
    status.className = bad ? "bad" : "";
  }

  // -- the token: asked once, kept for this tab ---------------------------------------------

  function token() {
    return sessionStorage.getItem(KEY);
  }

  function askToken(why) {
    const form = $("#token-form");
    form.hidden = false;
    if (why) say(why, true);
    $("#token").focus();
  }

  $("#token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, $("#token").value);
    $("#token").value = "";
    $("#token-form").hidden = true;
    say("token set");
  });

  async function write(url) {
    const headers = {};
    if (token()) headers["Authorization"] = "Bearer " + token();
    const response = await fetch(url, { method: "POST", headers: headers, credentials: "same-origin" });
    let data = {};
    try { data = await response.json(); } catch (e) { /* empty body */ }
    if (response.status === 401) {
      sessionStorage.removeItem(KEY);
      askToken("token refused: enter it again");
      throw new Error("unauthorized");
    }
    if (!response.ok) {
      say((data && data.message) || ("HTTP " + response.status), true);
      throw new Error(String(response.status));
    }
    return data;
  }

  // -- drawing ----------------------------------------------------------------------------------

  function bar(stats, biggest) {
    const node = svg("svg", { class: "bar", width: 120, height: 12, viewBox: "0 0 120 12", role: "img" });
    node.setAttribute("aria-label", STATES.map((s) => stats[s] + " " + s).join(", "));
    let x = 0;
    for (const state of STATES) {
      const w = Math.round((1200 * stats[state]) / biggest) / 10;
      node.appendChild(svg("rect", { class: state, x: x, y: 0, width: w, height: 12 }));
      x += w;
    }
    return node;
  }

  function spark(samples) {
    const node = svg("svg", { class: "spark", width: 72, height: 16, viewBox: "0 0 72 16", "aria-hidden": "true" });
    const top = Math.max(1, ...samples);
    const step = 72 / Math.max(1, samples.length - 1); // stretched over the width until HISTORY samples
    const points = samples.map((v, i) => (i * step).toFixed(1) + "," + (15 - (14 * v) / top).toFixed(1));
    node.appendChild(svg("polyline", { points: points.join(" ") }));
    return node;
  }

  function button(action, label, attrs) {
    const b = el("button", Object.assign({ type: "button", "data-action": action }, attrs || {}), label);
    return b;
  }

  const FIELDS = ["ready", "delayed", "claimed", "failed", "processed", "failed_total"];

  function setText(node, text) {
    text = String(text);
    if (node.textContent !== text) node.textContent = text;
  }

  function newRow(name) {
    const row = el("tr", { "data-queue": name });
    row.appendChild(el("td", { class: "name" }, name));
    row.appendChild(el("td", { class: "state" }));
    for (const field of FIELDS) row.appendChild(el("td", { class: "n " + field }));
    row.appendChild(el("td", { class: "n oldest" }));
    row.appendChild(el("td", { class: "depth" }));
    const actions = row.appendChild(el("td", { class: "actions" }));
    actions.appendChild(button("pause", "Pause"));
    actions.appendChild(button("retry-all", "Retry failed"));
    actions.appendChild(button("purge-all", "Purge failed"));
    return row;
  }

  // Rows are updated in place (not rebuilt), so a button is the same element from one refresh to
  // the next and a click never lands on a row being replaced.
  function updateRow(row, name, s, biggest) {
    const state = row.querySelector("td.state");
    setText(state, s.paused ? "paused" : "running");
    state.className = "state" + (s.paused ? " paused" : "");
    for (const field of FIELDS) setText(row.querySelector("td." + field), s[field]);
    if (s.cancelling) setText(row.querySelector("td.claimed"), s.claimed + " (" + s.cancelling + " cancelling)");
    setText(row.querySelector("td.oldest"), age(s.oldest_age));
    row.querySelector("td.depth").replaceChildren(bar(s, biggest), spark(history.get(name) || []));
    const [toggle, retry, purge] = row.querySelectorAll("td.actions button");
    const action = s.paused ? "resume" : "pause";
    if (toggle.dataset.action !== action) {
      toggle.dataset.action = action;
      toggle.textContent = s.paused ? "Resume" : "Pause";
    }
    for (const b of [retry, purge]) {
      if (!b.dataset.busy) b.disabled = !s.failed;
    }
  }

  function drawQueues(queues) {
    const tbody = $("#queues tbody");
    const names = Object.keys(queues);
    const biggest = Math.max(1, ...names.map((n) => STATES.reduce((sum, s) => sum + queues[n][s], 0)));
    const existing = new Map();
    for (const row of tbody.querySelectorAll("tr[data-queue]")) existing.set(row.dataset.queue, row);
    const rows = names.map((name) => {
      const s = queues[name];
      const samples = history.get(name) || [];
      samples.push(s.ready + s.delayed + s.claimed);
      if (samples.length > HISTORY) samples.shift();
      history.set(name, samples);
      const row = existing.get(name) || newRow(name);
      updateRow(row, name, s, biggest);
      return row;
    });
    if (!rows.length) {
      const row = el("tr", { class: "none" });
      row.appendChild(el("td", { colspan: 11 }, "No queues yet: push a message (POST /q/NAME)."));
      rows.push(row);
    }
    const current = Array.from(tbody.children);
    if (current.length !== rows.length || current.some((node, i) => node !== rows[i])) tbody.replaceChildren(...rows);
  }

  function failedTable(name, messages) {
    const table = el("table", { class: "failed", "data-queue": name });
    const head = el("tr");
    for (const [label, cls] of [["id", "n"], ["priority", "n"], ["attempts", "n"], ["failed at", ""], ["last error", ""], ["body", ""], ["", ""]]) {
      head.appendChild(el("th", cls ? { class: cls } : {}, label));
    }
    table.appendChild(el("thead")).appendChild(head);
    const tbody = table.appendChild(el("tbody"));
    for (const m of messages) {
      const row = el("tr", { "data-id": m.id });
      row.appendChild(el("td", { class: "n" }, m.id));
      row.appendChild(el("td", { class: "n" }, m.priority));
      row.appendChild(el("td", { class: "n" }, m.attempts));
      row.appendChild(el("td", {}, (m.failed_at || "").slice(0, 19)));
      row.appendChild(el("td")).appendChild(el("pre", { class: "error" }, m.last_error || ""));
      row.appendChild(el("td")).appendChild(el("pre", { class: "body" }, m.body_preview + (m.truncated ? "…" : "")));
      const actions = row.appendChild(el("td"));
      actions.appendChild(button("retry-one", "Retry", { "data-id": m.id }));
      actions.appendChild(button("cancel-one", "Cancel", { "data-id": m.id }));
      tbody.appendChild(row);
    }
    return table;
  }

  let drawnFailed = null; // the JSON last drawn: the list is rebuilt only when it changed

  async function drawFailed(queues) {
    const names = Object.keys(queues).filter((n) => queues[n].failed > 0).slice(0, FAILED_QUEUES);
    const lists = await Promise.all(
      names.map((n) => fetch(q(n) + "/failed?limit=" + FAILED_PER_QUEUE).then((r) => (r.ok ? r.json() : { messages: [] })))
    );
    const key = JSON.stringify([names, lists]);
    if (key === drawnFailed) return;
    drawnFailed = key;
    const nodes = [];
    names.forEach((name, i) => {
      if (!lists[i].messages.length) return;
      nodes.push(el("h3", { "data-queue": name }, name));
      nodes.push(failedTable(name, lists[i].messages));
    });
    if (!nodes.length) nodes.push(el("p", { class: "none" }, "No failed messages."));
    $("#failed").replaceChildren(...nodes);
  }

  let busy = false;
  let again = false; // a refresh asked for while one was running: run once more after it
  async function refresh() {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    try {
      const response = await fetch("/stats");
      if (!response.ok) throw new Error("stats: HTTP " + response.status);
      const data = await response.json();
      drawQueues(data.queues);
      await drawFailed(data.queues);
      $("#updated").textContent = "as of " + new Date().toLocaleTimeString();
      if ($("#status").className === "bad" && $("#status").textContent.startsWith("stats")) say("");
    } catch (e) {
      say(String(e.message || e), true);
    } finally {
      busy = false;
      if (again) {
        again = false;
        refresh();
      }
    }
  }

  // -- buttons ----------------------------------------------------------------------------------

  document.addEventListener("click", async (event) => {
    const b = event.target.closest("button[data-action]");
    if (!b) return;
    const row = b.closest("[data-queue]");
    const name = row ? row.dataset.queue : b.closest("table").dataset.queue;
    const action = b.dataset.action;
    let url;
    if (action === "pause" || action === "resume") url = "/control/" + encodeURIComponent(name) + "/" + action;
    else if (action === "retry-all") url = q(name) + "/failed/retry";
    else if (action === "retry-one") url = q(name) + "/failed/retry?id=" + encodeURIComponent(b.dataset.id);
    else if (action === "cancel-one") url = cancelUrl(name, b.dataset.id);
    else if (action === "purge-all") {
      if (!window.confirm("Delete every failed message of " + name + "?")) return;
      url = q(name) + "/failed/purge";
    } else return;
    if (AUTH && !token()) {
      askToken("enter the token first");
      return;
    }
    b.disabled = true;
    b.dataset.busy = "1";
    try {
      const data = await write(url);
      if ("result" in data) say("message " + data.id + " of " + name + ": " + data.result);
      else if ("retried" in data) say("retried " + data.retried + " message(s) of " + name);
      else if ("purged" in data) say("purged " + data.purged + " message(s) of " + name);
      else say(name + (data.paused ? " paused" : " resumed"));
    } catch (e) {
      /* said already */
    } finally {
      delete b.dataset.busy;
      b.disabled = false;
      refresh();
    }
  });

  function cancelUrl(name, id) {
    return "/messages/" + encodeURIComponent(id) + "/cancel?queue=" + encodeURIComponent(name);
  }

  // Cancel any message by queue and id: removed if it waits, marked cancelling if it runs.
  $("#cancel-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    if (AUTH && !token()) {
      askToken("enter the token first");
      return;
    }
    const name = $("#cancel-queue").value;
    try {
      const data = await write(cancelUrl(name, $("#cancel-id").value));
      say("message " + data.id + " of " + name + ": " + data.result);
    } catch (e) {
      /* said already */
    }
    refresh();
  });

  if (AUTH && !token()) askToken();
  refresh();
  setInterval(refresh, REFRESH);
})();
