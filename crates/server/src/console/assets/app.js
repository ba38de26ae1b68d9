// The ferry console: a single page over ferry serve's own API (/api/v1), no framework, no
// build step. Pages are hash routes; each page polls or listens for what it shows and stops
// when left. Everything the user typed is put in the page as text nodes, never as HTML.
"use strict";

const STATES = ["created", "prechecking", "precheck_failed", "ready", "full_sync", "incremental",
  "paused", "retrying", "failed", "stopped", "finished"];
const RUNNING = ["full_sync", "incremental", "paused", "retrying"];
const POLL_MS = 2000;

let csrf = null;
// What the current page started (timers, event streams): stopped when the page is left.
let cleanups = [];

// ---------- small helpers ----------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const SVG = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

function badge(state) {
  return h("span", { class: "badge s-" + state }, state.replace("_", " "));
}

function when(ms) {
  if (!ms) return "–";
  const d = new Date(ms);
  const ago = Math.max(0, (Date.now() - ms) / 1000);
  const rel = ago < 60 ? Math.round(ago) + " s ago" : ago < 3600 ? Math.round(ago / 60) + " min ago"
    : ago < 86400 ? Math.round(ago / 3600) + " h ago" : d.toLocaleDateString();
  return rel;
}

function clock(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : Math.round(n)) + " " + units[i];
}

function num(n, digits) {
  if (n === null || n === undefined || Number.isNaN(n)) return "–";
  return Number(n).toLocaleString(undefined, { maximumFractionDigits: digits === undefined ? 1 : digits });
}

function duration(secs) {
  if (!Number.isFinite(secs)) return "–";
  if (secs < 90) return Math.round(secs) + " s";
  if (secs < 5400) return Math.round(secs / 60) + " min";
  return (secs / 3600).toFixed(1) + " h";
}

function flash(text, bad) {
  const el = document.getElementById("flash");
  el.textContent = text;
  el.className = bad ? "bad" : "";
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => { el.textContent = ""; }, bad ? 8000 : 3000);
}

// Runs fn now and every ms after it ends, until the page is left. Its cleanup resolves once a
// run under way has ended, so that what follows (a delete, a sign-out) cannot race a poll.
function every(ms, fn) {
  let stopped = false;
  let timer = null;
  let current = Promise.resolve();
  const run = () => {
    if (stopped) return;
    current = (async () => {
      try { await fn(); } catch (e) { if (e.status !== 401) console.warn(e.message); }
      if (!stopped) timer = setTimeout(run, ms);
    })();
  };
  run();
  cleanups.push(() => { stopped = true; clearTimeout(timer); return current; });
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || ("HTTP " + status));
    this.status = status;
    this.body = body;
  }
}

async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && csrf) headers["X-CSRF-Token"] = csrf;
  const res = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json = null;
  if (text) { try { json = JSON.parse(text); } catch (_) { json = { message: text }; } }
  if (res.status === 401) { csrf = null; showLogin("Your session ended: sign in again."); }
  if (!res.ok) throw new ApiError(res.status, json);
  return json;
}

const enc = encodeURIComponent;

// ---------- sign in / out ----------

function showLogin(message) {
  stopPage();
  document.getElementById("top").hidden = true;
  const main = document.getElementById("main");
  const err = h("p", { class: "error", id: "login-error", role: "alert" }, message || "");
  const token = h("input", { id: "token", type: "password", autocomplete: "current-password", required: true,
    "aria-describedby": "token-hint login-error" });
  const form = h("form", { class: "card login", onsubmit: async (e) => {
    e.preventDefault();
    err.textContent = "";
    try {
      const res = await fetch("/console/session", { method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json" }, body: JSON.stringify({ token: token.value }) });
      const body = await res.json().catch(() => ({}));
      if (!res.ok) { err.textContent = body.message || "Sign-in failed"; token.setAttribute("aria-invalid", "true"); token.focus(); return; }
      csrf = body.csrf;
      token.value = "";
      if (!location.hash || location.hash === "#/login") location.hash = "#/tasks";
      else route();
    } catch (e) { err.textContent = "The server did not answer: " + e.message; }
  } },
    h("h1", {}, h("img", { src: "/console/assets/icon.svg", alt: "", width: 28, height: 28 }), "Sign in to ferry"),
    h("label", { for: "token" }, "API token"),
    token,
    h("p", { class: "hint", id: "token-hint" }, "The token is in the server's data dir, in the file api-token (cat DATA_DIR/api-token)."),
    err,
    h("div", { class: "buttons" }, h("button", { class: "primary", id: "signin", type: "submit" }, "Sign in")));
  main.replaceChildren(form);
  token.focus();
}

async function signOut() {
  await stopPage();
  try { await api("DELETE", "/console/session"); } catch (_) { /* signed out either way */ }
  csrf = null;
  showLogin("Signed out.");
  history.replaceState(null, "", "#/login");
}

// ---------- routing ----------

function stopPage() {
  const ending = cleanups.map((c) => c());
  cleanups = [];
  const dlg = document.getElementById("confirm");
  if (dlg.open) dlg.close();
  return Promise.all(ending);
}

function route() {
  if (!csrf) return showLogin();
  stopPage();
  document.getElementById("top").hidden = false;
  const parts = (location.hash.replace(/^#\/?/, "") || "tasks").split("/").map(decodeURIComponent);
  const main = document.getElementById("main");
  main.replaceChildren();
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (a.dataset.nav === parts[0] || (parts[0] === "task" && a.dataset.nav === "tasks")) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  if (parts[0] === "new") return newTask(main);
  if (parts[0] === "alerts") return alertsPage(main);
  if (parts[0] === "task" && parts[1] && parts[2] === "precheck") return precheckPage(main, parts[1], parts[3] === "run");
  if (parts[0] === "task" && parts[1]) return taskPage(main, parts[1]);
  return taskList(main);
}

// ---------- task list ----------

const listView = { filter: "all", sort: "created", desc: false };

function sourceOf(t) {
  const spec = t.spec || {};
  const side = (x) => x ? (x.connection ? "@" + x.connection : (x.url || "?")) : "?";
  const targets = [spec.target].concat(spec.more_targets || []).map(side);
  return side(spec.source) + " → " + targets.join(", ");
}

function copyPercent(t) {
  const st = t.status;
  if (!st) return t.state === "finished" ? "100%" : "–";
  if (st.phase === "incremental" || t.state === "incremental") return "100%";
  if (st.source_keys > 0) return Math.min(100, (100 * st.keys_written) / st.source_keys).toFixed(0) + "%";
  if (st.snapshot_size > 0) return Math.min(100, (100 * st.bytes_read) / st.snapshot_size).toFixed(0) + "%";
  return "–";
}

function p99(t) {
  const l = t.status && t.status.latency_ms;
  return l ? num(l.p99, 1) + " ms" : "–";
}

function taskList(main) {
  const filter = h("select", { id: "state-filter", onchange: () => { listView.filter = filter.value; draw(); } },
    h("option", { value: "all" }, "all states"),
    h("option", { value: "running" }, "running"),
    STATES.map((s) => h("option", { value: s }, s.replace("_", " "))));
  filter.value = listView.filter;
  const body = h("tbody", { id: "task-rows" });
  const sorters = [["name", "Name"], ["route", "Source → targets"], ["state", "State"], ["copy", "Full copy"],
    ["lag", "Lag"], ["p99", "Latency p99"], ["error", "Last error"], ["since", "Since"]];
  const head = h("tr", {}, sorters.map(([key, label]) => h("th", { scope: "col", "data-key": key,
    class: ["route", "error"].includes(key) ? "hide-narrow" : null },
    ["route", "error", "copy"].includes(key) ? label :
      h("button", { type: "button", onclick: () => {
        listView.desc = listView.sort === key ? !listView.desc : false;
        listView.sort = key; draw();
      } }, label))));
  const count = h("span", { class: "muted small", id: "task-count" });
  main.append(
    h("h1", {}, "Tasks"),
    h("div", { class: "toolbar" },
      h("label", { for: "state-filter" }, "Show"), filter, count,
      h("a", { class: "button primary", href: "#/new" }, "New task")),
    h("div", { class: "scroll" }, h("table", { id: "tasks" }, h("thead", {}, head), body)));
  let tasks = [];
  const key = {
    name: (t) => t.name.toLowerCase(), state: (t) => STATES.indexOf(t.state), since: (t) => t.since,
    created: (t) => t.created, lag: (t) => (t.status && t.status.lag_s) || 0,
    p99: (t) => (t.status && t.status.latency_ms && t.status.latency_ms.p99) || 0,
  };
  function draw() {
    for (const th of head.children) {
      th.setAttribute("aria-sort", th.dataset.key === listView.sort ? (listView.desc ? "descending" : "ascending") : "none");
    }
    const shown = tasks.filter((t) => listView.filter === "all" || t.state === listView.filter
      || (listView.filter === "running" && RUNNING.includes(t.state)));
    const k = key[listView.sort] || key.created;
    shown.sort((a, b) => (k(a) < k(b) ? -1 : k(a) > k(b) ? 1 : 0) * (listView.desc ? -1 : 1));
    count.textContent = shown.length + " of " + tasks.length + " tasks";
    body.replaceChildren(...shown.map((t) => {
      const st = t.status || {};
      return h("tr", { class: "row", "data-id": t.id, "data-state": t.state },
        h("td", {}, h("a", { href: "#/task/" + enc(t.id) }, t.name), t.name !== t.id ? h("div", { class: "muted small" }, t.id) : null,
          Object.entries(t.labels || {}).length ? h("div", { class: "muted small" }, Object.entries(t.labels).map(([k, v]) => k + "=" + v).join(" ")) : null),
        h("td", { class: "hide-narrow small" }, sourceOf(t)),
        h("td", { class: "state" }, badge(t.state)),
        h("td", { class: "num" }, copyPercent(t)),
        h("td", { class: "num" }, st.lag_s !== undefined && st.lag_s !== null ? num(st.lag_s, 1) + " s" : "–",
          t.status ? h("div", { class: "muted small" }, bytes(st.lag_bytes)) : null),
        h("td", { class: "num" }, p99(t)),
        h("td", { class: "err hide-narrow" }, t.last_error || (st.last_error || "")),
        h("td", { class: "small", title: new Date(t.since).toLocaleString() }, when(t.since)));
    }));
    if (!tasks.length) body.append(h("tr", {}, h("td", { colspan: 8, class: "muted" }, "No tasks yet. ", h("a", { href: "#/new" }, "Create one"), ".")));
  }
  every(POLL_MS, async () => { tasks = await api("GET", "/api/v1/tasks"); draw(); });
}

// ---------- TOML (the subset task specs use) ----------

function parseToml(text) {
  const root = {};
  let table = root;
  const place = (obj, path) => {
    for (const p of path) {
      if (obj[p] === undefined) obj[p] = {};
      obj = obj[p];
      if (Array.isArray(obj)) obj = obj[obj.length - 1];
    }
    return obj;
  };
  const keyPath = (k) => k.split(".").map((x) => x.trim().replace(/^"(.*)"$/, "$1"));
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.replace(/^\s+|\s+$/g, "");
    if (!line || line.startsWith("#")) return;
    let m;
    if ((m = line.match(/^\[\[([^\]]+)\]\]$/))) {
      const path = keyPath(m[1]);
      const parent = place(root, path.slice(0, -1));
      const last = path[path.length - 1];
      if (!Array.isArray(parent[last])) parent[last] = [];
      parent[last].push({});
      table = parent[last][parent[last].length - 1];
      return;
    }
    if ((m = line.match(/^\[([^\]]+)\]$/))) { table = place(root, keyPath(m[1])); return; }
    if ((m = line.match(/^([A-Za-z0-9_."-]+)\s*=\s*(.+)$/))) {
      const path = keyPath(m[1]);
      const obj = place(table, path.slice(0, -1));
      obj[path[path.length - 1]] = tomlValue(m[2].replace(/\s+#[^"']*$/, ""), i + 1);
      return;
    }
    throw new Error("line " + (i + 1) + ": expected [section] or key = value");
  });
  return root;
}

function tomlValue(v, line) {
  v = v.trim();
  if (v.startsWith("'") && v.endsWith("'")) return v.slice(1, -1);
  if (v === "true" || v === "false") return v === "true";
  if (v.startsWith("{")) {
    const out = {};
    for (const part of v.slice(1, -1).split(",")) {
      if (!part.trim()) continue;
      const [k, val] = part.split("=");
      out[k.trim().replace(/^"(.*)"$/, "$1")] = tomlValue(val, line);
    }
    return out;
  }
  try { return JSON.parse(v.replace(/'([^']*)'/g, "\"$1\"")); } catch (_) {
    throw new Error("line " + line + ": cannot read the value " + v);
  }
}

function toToml(obj) {
  const out = [];
  const scalar = (v) => (typeof v === "object" && v !== null && !Array.isArray(v)) ||
    (Array.isArray(v) && v.some((x) => typeof x === "object" && x !== null));
  const key = (k) => (/^[A-Za-z0-9_-]+$/.test(k) ? k : JSON.stringify(k));
  const emit = (o, path, header) => {
    const flat = Object.entries(o).filter(([, v]) => !scalar(v));
    if (header && (flat.length || !Object.keys(o).length)) out.push("", header);
    for (const [k, v] of flat) out.push(key(k) + " = " + JSON.stringify(v));
    for (const [k, v] of Object.entries(o).filter(([, v]) => scalar(v))) {
      const p = path.concat(key(k));
      if (Array.isArray(v)) for (const item of v) emit(item, p, "[[" + p.join(".") + "]]");
      else emit(v, p, "[" + p.join(".") + "]");
    }
  };
  emit(obj, [], null);
  return out.join("\n").trim() + "\n";
}

function deepMerge(into, from) {
  for (const [k, v] of Object.entries(from)) {
    if (v && typeof v === "object" && !Array.isArray(v) && into[k] && typeof into[k] === "object" && !Array.isArray(into[k])) deepMerge(into[k], v);
    else into[k] = v;
  }
  return into;
}

// ---------- new task ----------

function field(id, label, input, hint) {
  input.id = id;
  input.setAttribute("aria-describedby", id + "-err" + (hint ? " " + id + "-hint" : ""));
  return h("div", { class: "field" }, h("label", { for: id }, label), input,
    hint ? h("p", { class: "hint", id: id + "-hint" }, hint) : null,
    h("p", { class: "fielderr", id: id + "-err", role: "alert" }));
}

function serverBox(side, connections) {
  const pick = h("select", { name: side + "-connection" }, h("option", { value: "" }, "— give a URL below —"),
    connections.map((c) => h("option", { value: c.name }, c.name + " (" + c.url + ")")));
  return h("fieldset", { id: "fs-" + side },
    h("legend", {}, side === "source" ? "Source" : "Target"),
    h("div", { class: "grid" },
      field("f-" + side + "-connection", "Saved connection", pick),
      field("f-" + side + "-url", "URL", h("input", { name: side + "-url", placeholder: side === "source" ? "redis://127.0.0.1:6379" : "redis://127.0.0.1:6380", autocomplete: "off", spellcheck: "false" }),
        "redis://host:port[/db], rediss:// for TLS" + (side === "source" ? "; or the path of an RDB file" : "")),
      field("f-" + side + "-user", "User", h("input", { name: side + "-user", autocomplete: "off" }), "ACL user (optional)"),
      field("f-" + side + "-password", "Password", h("input", { name: side + "-password", type: "password", autocomplete: "new-password" }), "Kept apart by the server, never shown again"),
      field("f-" + side + "-ca", "TLS CA file", h("input", { name: side + "-ca", placeholder: "/etc/ferry/ca.pem" })),
      field("f-" + side + "-cert", "TLS client certificate", h("input", { name: side + "-cert" })),
      field("f-" + side + "-key", "TLS client key", h("input", { name: side + "-key" }))));
}

function newConnectionBox(onAdded) {
  const box = h("details", { class: "card", id: "new-connection" }, h("summary", {}, "Save a connection for later tasks"));
  const grid = h("div", { class: "grid" },
    field("c-name", "Name", h("input", { placeholder: "prod-cache" })),
    field("c-url", "URL", h("input", { placeholder: "redis://127.0.0.1:6379" })),
    field("c-user", "User", h("input", { autocomplete: "off" })),
    field("c-password", "Password", h("input", { type: "password", autocomplete: "new-password" })));
  const err = h("p", { class: "error", role: "alert" });
  box.append(grid, err, h("div", { class: "buttons" }, h("button", { type: "button", id: "c-save", onclick: async () => {
    err.textContent = "";
    const v = (id) => document.getElementById(id).value.trim();
    try {
      await api("POST", "/api/v1/connections", { name: v("c-name"), url: withLogin(v("c-url"), v("c-user"), v("c-password")) });
      flash("Connection " + v("c-name") + " saved");
      onAdded(v("c-name"));
    } catch (e) { err.textContent = e.message; }
  } }, "Save connection")));
  return box;
}

function withLogin(url, user, password) {
  if (!url || (!user && !password)) return url;
  const m = url.match(/^([a-z]+:\/\/)(?:[^@/]*@)?(.*)$/i);
  if (!m) return url;
  return m[1] + enc(user) + (password ? ":" + enc(password) : "") + "@" + m[2];
}

function list(text) {
  return text.split(/[\n,]/).map((x) => x.trim()).filter(Boolean);
}

async function newTask(main) {
  let connections = [];
  try { connections = await api("GET", "/api/v1/connections"); } catch (_) { /* shown as none */ }
  const form = h("form", { class: "task", id: "task-form", novalidate: true });
  const preview = h("pre", { id: "preview", hidden: true, tabindex: 0 });
  const formErr = h("p", { class: "error", id: "form-error", role: "alert" });
  const onConflict = h("select", { name: "on-conflict" },
    h("option", { value: "" }, "fail (default): refuse to start"),
    h("option", { value: "overwrite" }, "overwrite: copy over the keys of the same name"),
    h("option", { value: "flush" }, "flush: empty the target's dbs first"));
  form.append(
    h("fieldset", {}, h("legend", {}, "Task"), h("div", { class: "grid" },
      field("f-name", "Name", h("input", { name: "name", placeholder: "cache-to-dr", autocomplete: "off" }), "Also names its checkpoint in the target"),
      field("f-labels", "Labels", h("input", { name: "labels", placeholder: "env=prod, team=cache" }), "key=value, comma separated"))),
    serverBox("source", connections),
    serverBox("target", connections),
    h("fieldset", {}, h("legend", {}, "What to copy"), h("div", { class: "grid" },
      field("f-dbs", "Databases", h("input", { name: "dbs", placeholder: "0, 1" }), "Only these dbs (empty: all)"),
      field("f-dbmap", "Database map", h("input", { name: "dbmap", placeholder: "1=5" }), "source=target, comma separated"),
      field("f-prefix", "Key prefixes", h("input", { name: "prefix", placeholder: "user:, session:" }), "Only keys starting with these"),
      field("f-block-prefix", "Leave out prefixes", h("input", { name: "block-prefix" })),
      field("f-regex", "Key regexes", h("textarea", { name: "regex", rows: 2, placeholder: "^order:[0-9]+$" }), "One per line"),
      field("f-ttl", "TTL extension (s)", h("input", { name: "ttl", inputmode: "numeric" }), "Seconds added to every expiry"))),
    h("fieldset", {}, h("legend", {}, "How"), h("div", { class: "grid" },
      field("f-on-conflict", "If the target already holds keys", onConflict),
      h("div", { class: "field" }, h("label", { class: "check" }, h("input", { type: "checkbox", id: "f-confirm-flush" }), "I confirm flush empties the target"),
        h("label", { class: "check" }, h("input", { type: "checkbox", id: "f-full-only" }), "Full copy only (no write stream)")),
      field("f-full-keys", "Full copy: keys/s", h("input", { name: "full-keys", inputmode: "decimal" })),
      field("f-full-mb", "Full copy: MB/s", h("input", { name: "full-mb", inputmode: "decimal" })),
      field("f-inc-ops", "Stream: ops/s", h("input", { name: "inc-ops", inputmode: "decimal" })),
      field("f-inc-mb", "Stream: MB/s", h("input", { name: "inc-mb", inputmode: "decimal" })))),
    h("fieldset", {}, h("legend", {}, "Anything else (TOML or JSON)"),
      field("f-extra", "More settings, merged over the form", h("textarea", { name: "extra", rows: 5, spellcheck: "false",
        placeholder: "[advanced]\nmax_in_flight = 64\n\n[retry]\nconnection = 600" }),
      "The sections of ferry sync --config: [filter], [advanced], [retry], [spool], [verify], [check], more_targets…")),
    formErr,
    h("div", { class: "buttons" },
      h("button", { type: "button", id: "show-api", onclick: () => show("api") }, "Show as API request"),
      h("button", { type: "button", id: "show-toml", onclick: () => show("toml") }, "Show as TOML"),
      h("button", { type: "submit", class: "primary", id: "create" }, "Create and precheck")),
    preview);
  main.append(h("h1", {}, "New task"), newConnectionBox(async (name) => {
    connections = await api("GET", "/api/v1/connections");
    for (const side of ["source", "target"]) {
      const sel = document.getElementById("f-" + side + "-connection");
      const keep = sel.value;
      sel.replaceChildren(h("option", { value: "" }, "— give a URL below —"), ...connections.map((c) => h("option", { value: c.name }, c.name + " (" + c.url + ")")));
      sel.value = keep;
    }
    flash("Connection " + name + " can now be picked as source or target");
  }), form);

  const val = (id) => document.getElementById(id).value.trim();
  function setErr(id, text) {
    const el = document.getElementById(id + "-err");
    const input = document.getElementById(id);
    if (el) el.textContent = text || "";
    if (input) { if (text) input.setAttribute("aria-invalid", "true"); else input.removeAttribute("aria-invalid"); }
  }
  // The spec the form describes, and the errors found in it (field id -> message).
  function collect(hidePasswords) {
    const errors = {};
    const spec = { sync: {}, filter: {}, limit: {} };
    if (val("f-name")) spec.sync.name = val("f-name");
    for (const side of ["source", "target"]) {
      const conn = val("f-" + side + "-connection");
      const url = val("f-" + side + "-url");
      const section = {};
      if (conn && url) errors["f-" + side + "-url"] = "Give either a saved connection or a URL, not both";
      else if (conn) section.connection = conn;
      else if (!url) errors["f-" + side + "-url"] = "The " + side + " is needed: its redis:// URL" + (side === "source" ? " or an RDB file" : "");
      else if (!/^rediss?:\/\/[^\s/]+/i.test(url) && !(side === "source" && url.startsWith("/"))) errors["f-" + side + "-url"] = "Write it as redis://host:port or rediss://host:port";
      else {
        const pw = val("f-" + side + "-password");
        section.url = withLogin(url, val("f-" + side + "-user"), hidePasswords && pw ? "********" : pw);
      }
      const tls = {};
      if (val("f-" + side + "-ca")) tls.ca_file = val("f-" + side + "-ca");
      if (val("f-" + side + "-cert")) tls.cert_file = val("f-" + side + "-cert");
      if (val("f-" + side + "-key")) tls.key_file = val("f-" + side + "-key");
      if (!!tls.cert_file !== !!tls.key_file) errors["f-" + side + (tls.cert_file ? "-key" : "-cert") + ""] = "A client certificate needs its key, and the key its certificate";
      if (Object.keys(tls).length) section.tls = tls;
      spec[side] = section;
    }
    if (val("f-dbs")) {
      const dbs = list(val("f-dbs")).map(Number);
      if (dbs.some((d) => !Number.isInteger(d) || d < 0)) errors["f-dbs"] = "Numbers of dbs, e.g. 0, 1";
      else spec.filter.allow_db = dbs;
    }
    if (val("f-dbmap")) {
      const map = {};
      for (const pair of list(val("f-dbmap"))) {
        const m = pair.match(/^(\d+)\s*=\s*(\d+)$/);
        if (!m) { errors["f-dbmap"] = "Write source=target pairs, e.g. 1=5"; break; }
        map[m[1]] = Number(m[2]);
      }
      spec.filter.db_map = map;
    }
    if (val("f-prefix")) spec.filter.allow_key_prefix = list(val("f-prefix"));
    if (val("f-block-prefix")) spec.filter.block_key_prefix = list(val("f-block-prefix"));
    if (val("f-regex")) {
      const res = val("f-regex").split("\n").map((x) => x.trim()).filter(Boolean);
      for (const r of res) { try { new RegExp(r); } catch (e) { errors["f-regex"] = "Not a regex: " + r; } }
      spec.filter.allow_key_regex = res;
    }
    if (val("f-ttl")) {
      const n = Number(val("f-ttl"));
      if (!Number.isInteger(n) || n < 0) errors["f-ttl"] = "A whole number of seconds";
      else spec.filter.ttl_extend = n;
    }
    const oc = val("f-on-conflict");
    if (oc) spec.sync.on_conflict = oc;
    if (oc === "flush") {
      if (document.getElementById("f-confirm-flush").checked) spec.sync.confirm_flush = true;
      else errors["f-on-conflict"] = "flush deletes the target's data: tick the confirmation below";
    }
    if (document.getElementById("f-full-only").checked) spec.sync.full_only = true;
    for (const [id, key] of [["f-full-keys", "full_keys_per_sec"], ["f-full-mb", "full_mb_per_sec"], ["f-inc-ops", "incremental_ops_per_sec"], ["f-inc-mb", "incremental_mb_per_sec"]]) {
      if (!val(id)) continue;
      const n = Number(val(id));
      if (!(n > 0)) errors[id] = "A number above 0 (empty: no limit)";
      else spec.limit[key] = n;
    }
    for (const k of ["sync", "filter", "limit"]) if (!Object.keys(spec[k]).length) delete spec[k];
    if (val("f-extra")) {
      try {
        const text = val("f-extra");
        const extra = text.startsWith("{") ? JSON.parse(text) : parseToml(text);
        deepMerge(spec, extra);
      } catch (e) { errors["f-extra"] = "Cannot read it: " + e.message; }
    }
    let labels = null;
    if (val("f-labels")) {
      labels = {};
      for (const pair of list(val("f-labels"))) {
        const i = pair.indexOf("=");
        if (i < 1) { errors["f-labels"] = "Write key=value pairs, e.g. env=prod"; break; }
        labels[pair.slice(0, i).trim()] = pair.slice(i + 1).trim();
      }
    }
    return { spec, labels, errors };
  }
  function check(hidePasswords) {
    for (const el of form.querySelectorAll("p.fielderr")) setErr(el.id.replace(/-err$/, ""), "");
    formErr.textContent = "";
    const got = collect(hidePasswords);
    for (const [id, text] of Object.entries(got.errors)) setErr(id, text);
    const first = Object.keys(got.errors)[0];
    if (first) { document.getElementById(first).focus(); formErr.textContent = "Fix the fields marked in red."; }
    return first ? null : got;
  }
  function show(kind) {
    const got = check(true);
    if (!got) return;
    const body = Object.assign({}, got.spec, got.labels ? { labels: got.labels } : {});
    preview.textContent = kind === "api"
      ? "POST /api/v1/tasks\nAuthorization: Bearer <token>\nContent-Type: application/json\n\n" + JSON.stringify(body, null, 2)
      : (got.labels ? "# labels (API only): " + Object.entries(got.labels).map(([k, v]) => k + "=" + v).join(", ") + "\n" : "") + toToml(got.spec);
    preview.hidden = false;
    preview.focus();
  }
  // Where a server error belongs, from what it names.
  function place(message) {
    const m = message.toLowerCase();
    const rules = [[/more_targets/, "f-extra"], [/\bsource\b/, "f-source-url"], [/\btarget\b/, "f-target-url"], [/db_map/, "f-dbmap"],
      [/regex/, "f-regex"], [/prefix/, "f-prefix"], [/on_conflict|confirm_flush/, "f-on-conflict"], [/full_keys/, "f-full-keys"],
      [/full_mb/, "f-full-mb"], [/incremental_ops/, "f-inc-ops"], [/incremental_mb/, "f-inc-mb"], [/label/, "f-labels"], [/name/, "f-name"]];
    for (const [re, id] of rules) if (re.test(m)) return id;
    return null;
  }
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const got = check(false);
    if (!got) return;
    const body = Object.assign({}, got.spec, got.labels ? { labels: got.labels } : {});
    const button = document.getElementById("create");
    button.disabled = true;
    try {
      const created = await api("POST", "/api/v1/tasks", body);
      location.hash = "#/task/" + enc(created.task.id) + "/precheck/run";
    } catch (err) {
      const id = place(err.message);
      if (id) { setErr(id, err.message); document.getElementById(id).focus(); }
      formErr.textContent = "The server refused the task: " + err.message;
    } finally { button.disabled = false; }
  });
}

// ---------- precheck ----------

async function precheckPage(main, id, run) {
  const title = h("h1", {}, "Precheck");
  const status = h("p", { class: "muted", id: "precheck-status", role: "status" });
  const rows = h("tbody", {});
  const table = h("table", { id: "findings" }, h("thead", {}, h("tr", {},
    ["Item", "Result", "Found", "How to fix", ""].map((x) => h("th", { scope: "col" }, x)))), rows);
  const actions = h("div", { class: "buttons" });
  main.append(title, status, actions, h("div", { class: "scroll" }, table));
  let task = null;
  let leaving = false;
  cleanups.push(() => { leaving = true; });

  async function rerun() {
    status.textContent = "Running the precheck…";
    actions.querySelectorAll("button").forEach((b) => { b.disabled = true; });
    try {
      const r = await api("POST", "/api/v1/tasks/" + enc(id) + "/precheck");
      if (leaving) return;
      task = r.task;
      draw(r.report, r.failed);
    } catch (e) {
      if (leaving) return;
      status.textContent = "";
      status.append(h("span", { class: "error" }, "The precheck could not run: " + e.message));
      task = await api("GET", "/api/v1/tasks/" + enc(id));
      draw([], true);
    }
  }
  function draw(findings, failed) {
    const ignored = ((task.spec || {}).check || {}).ignore || [];
    title.replaceChildren("Precheck: ", h("a", { href: "#/task/" + enc(id) }, task.name), badge(task.state));
    const blocking = findings.filter((f) => f.result === "fail" && !ignored.includes(f.item));
    if (findings.length) status.textContent = blocking.length
      ? blocking.length + " item(s) fail: fix them (or ignore them by name) and run the precheck again."
      : "Nothing fails" + (failed ? " that is not ignored" : "") + ": the task can start.";
    const rank = { fail: 0, warn: 1, pass: 2 };
    const sorted = findings.slice().sort((a, b) => (rank[a.result] ?? 3) - (rank[b.result] ?? 3));
    rows.replaceChildren(...sorted.map((f) => h("tr", { "data-item": f.item, "data-result": f.result },
      h("th", { scope: "row" }, f.item),
      h("td", {}, h("span", { class: "badge r-" + f.result }, f.result), ignored.includes(f.item) ? h("div", { class: "muted small" }, "ignored") : null),
      h("td", {}, f.found || ""),
      h("td", {}, f.fix || ""),
      h("td", {}, f.result !== "pass" && !ignored.includes(f.item) && !["reachable", "authenticated"].includes(f.item)
        ? h("button", { type: "button", class: "ignore", "data-item": f.item, onclick: () => ignore(f.item) }, "Ignore " + f.item) : null))));
    actions.replaceChildren();
    const keys = blocking.find((f) => f.item === "target_keys");
    if (keys && !((task.spec.sync || {}).on_conflict)) {
      actions.append(h("button", { type: "button", id: "overwrite", onclick: () => patch({ sync: { on_conflict: "overwrite" } }, "on_conflict = overwrite: keys of the same name in the target will be replaced") },
        "Copy over the target's keys (on_conflict = overwrite)"));
    }
    actions.append(
      h("button", { type: "button", id: "rerun", onclick: rerun }, "Run the precheck again"),
      h("button", { type: "button", id: "start", class: "primary", disabled: blocking.length > 0 || RUNNING.includes(task.state), onclick: start }, "Start the task"),
      h("a", { class: "button", href: "#/task/" + enc(id) }, "Task page"));
  }
  async function patch(body, note) {
    try { await api("PATCH", "/api/v1/tasks/" + enc(id), body); flash(note); await rerun(); } catch (e) { flash(e.message, true); }
  }
  function ignore(item) {
    const ignored = (((task.spec || {}).check || {}).ignore || []).concat([item]);
    return patch({ check: { ignore: ignored } }, item + " is ignored from now on");
  }
  async function start() {
    try {
      await api("POST", "/api/v1/tasks/" + enc(id) + "/start");
      flash("Started");
      location.hash = "#/task/" + enc(id);
    } catch (e) { flash(e.message, true); }
  }
  if (run) { history.replaceState(null, "", "#/task/" + enc(id) + "/precheck"); return rerun(); }
  task = await api("GET", "/api/v1/tasks/" + enc(id));
  if (task.last_precheck) {
    const kept = await api("GET", "/api/v1/tasks/" + enc(id) + "/reports/precheck");
    status.textContent = "Last run " + when(kept.at) + ".";
    draw(kept.report, kept.failed);
  } else { await rerun(); }
}

// ---------- task page ----------

function chart(cls, label, unit, samples, pick) {
  const W = 600, H = 180, L = 46, R = 10, T = 12, B = 26;
  const pts = samples.map((x) => [x.at_ms, pick(x)]).filter(([, v]) => v !== null && v !== undefined);
  const svg = s("svg", { class: "chart " + cls, viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label + ": " + pts.length + " samples" });
  svg.append(s("title", {}, label));
  const now = Date.now();
  const t0 = Math.max(now - 3600 * 1000, Math.min(...samples.map((x) => x.at_ms), now - 60 * 1000));
  // At least one unit high: a lag of a millisecond is drawn as the near-zero it is.
  const max = Math.max(1, Math.max(...pts.map(([, v]) => v), 0) * 1.15);
  const x = (t) => L + ((t - t0) / (now - t0)) * (W - L - R);
  const y = (v) => H - B - (v / max) * (H - T - B);
  svg.append(s("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }), s("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }));
  svg.append(s("text", { x: L - 4, y: T + 8, "text-anchor": "end" }, max < 10 ? Number(max.toPrecision(2)) : Math.round(max)), s("text", { x: L - 4, y: H - B, "text-anchor": "end" }, "0"),
    s("text", { x: L, y: H - 8 }, clock(t0)), s("text", { x: W - R, y: H - 8, "text-anchor": "end" }, "now"),
    s("text", { x: L + 6, y: T + 8 }, unit));
  if (pts.length) {
    svg.append(s("polyline", { class: "line", points: pts.map(([t, v]) => x(t).toFixed(1) + "," + y(v).toFixed(1)).join(" ") }));
    for (const [t, v] of pts) {
      const c = s("circle", { class: "pt", cx: x(t).toFixed(1), cy: y(v).toFixed(1), r: 2.2 });
      c.append(s("title", {}, clock(t) + ": " + num(v, 2) + " " + unit));
      svg.append(c);
    }
  } else {
    svg.append(s("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "no samples yet"));
  }
  return svg;
}

function confirmDialog(title, text, extra, okLabel) {
  const dlg = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-extra").replaceChildren(...(extra ? [extra] : []));
  document.getElementById("confirm-ok").textContent = okLabel || "Confirm";
  dlg.returnValue = "";
  dlg.showModal();
  document.getElementById("confirm-cancel").focus();
  return new Promise((resolve) => dlg.addEventListener("close", () => resolve(dlg.returnValue === "ok"), { once: true }));
}

function stat(label, value, id) {
  return h("div", { class: "stat", id }, h("b", {}, value), h("span", {}, label));
}

function partsTable(title, parts) {
  if (!parts || !parts.length) return null;
  return h("div", {}, h("h2", {}, title), h("div", { class: "scroll" }, h("table", {},
    h("thead", {}, h("tr", {}, ["Name", "Phase", "Keys", "Ops", "Lag", "Lag bytes", "p99", "Last error"].map((x) => h("th", { scope: "col" }, x)))),
    h("tbody", {}, parts.map((p) => h("tr", {},
      h("th", { scope: "row" }, p.name), h("td", {}, p.status.phase), h("td", { class: "num" }, num(p.status.keys_written, 0)),
      h("td", { class: "num" }, num(p.status.ops_applied, 0)), h("td", { class: "num" }, p.status.lag_s === null || p.status.lag_s === undefined ? "–" : num(p.status.lag_s, 1) + " s"),
      h("td", { class: "num" }, bytes(p.status.lag_bytes)), h("td", { class: "num" }, p.status.latency_ms ? num(p.status.latency_ms.p99, 1) + " ms" : "–"),
      h("td", { class: "err" }, p.status.last_error || "")))))));
}

function eventText(e) {
  const rest = Object.assign({}, e);
  for (const k of ["seq", "at_ms", "task", "type"]) delete rest[k];
  if (e.to !== undefined && (e.type === "state" || e.type === "phase")) return (e.from || "–") + " → " + e.to + (e.note ? " (" + e.note + ")" : "");
  if (rest.message) return rest.message;
  return Object.keys(rest).length ? JSON.stringify(rest) : "";
}

function verifyReport(box, kept, id) {
  const lines = (kept.report || []).flatMap((t) => (t.examples && t.examples.length ? t.examples.map((x) => Object.assign({ target: t.target }, x)) : [t]));
  const blob = new Blob([lines.map((l) => JSON.stringify(l)).join("\n") + "\n"], { type: "application/x-ndjson" });
  const url = URL.createObjectURL(blob);
  cleanups.push(() => URL.revokeObjectURL(url));
  box.replaceChildren(...[
    h("p", {}, h("span", { class: "badge " + (kept.failed ? "r-fail" : "r-pass") }, kept.failed ? "differences" : "identical"),
      " Verified " + when(kept.at) + ". ", h("a", { id: "download", href: url, download: id + "-verify.jsonl" }, "Download the JSON lines")),
    h("div", { class: "scroll" }, h("table", { id: "verify-table" },
      h("thead", {}, h("tr", {}, ["Target", "Source keys", "Target keys", "Left out by filters", "Rounds", "Differences"].map((x) => h("th", { scope: "col" }, x)))),
      h("tbody", {}, (kept.report || []).map((t) => h("tr", {}, h("th", { scope: "row" }, t.target), h("td", { class: "num" }, num(t.source_keys, 0)),
        h("td", { class: "num" }, num(t.target_keys, 0)), h("td", { class: "num" }, num(t.filtered, 0)), h("td", { class: "num" }, num(t.rounds, 0)),
        h("td", { class: "num" }, num(t.differences, 0))))))),
    (kept.report || []).some((t) => t.examples && t.examples.length) ? h("div", {}, h("h2", {}, "First differing keys"),
      h("ul", { class: "events" }, (kept.report || []).flatMap((t) => (t.examples || []).map((x) => h("li", {}, h("code", {}, JSON.stringify(x))))))) : null,
  ].filter(Boolean));
}

async function taskPage(main, id) {
  const title = h("h1", {});
  const actions = h("div", { class: "buttons", id: "actions" });
  const errorBox = h("p", { class: "error", id: "task-error", role: "alert" });
  const timeline = h("ol", { class: "timeline", id: "timeline", "aria-label": "State timeline" });
  const progress = h("div", { id: "progress" });
  const charts = h("div", { class: "charts" });
  const parts = h("div", { id: "parts" });
  const events = h("ul", { class: "events", id: "events" });
  const verifyBox = h("div", { id: "verify-report" }, h("p", { class: "muted" }, "No verification yet."));
  const specBox = h("pre", { id: "spec" });
  main.append(title, errorBox, actions,
    h("div", { class: "card" }, h("h2", {}, "State timeline"), timeline),
    h("div", { class: "card" }, h("h2", {}, "Progress"), progress),
    h("div", { class: "card" }, h("h2", {}, "Lag and latency, last hour"), charts),
    parts,
    h("div", { class: "split" },
      h("div", { class: "card" }, h("h2", {}, "Events"), events),
      h("div", { class: "card" }, h("h2", {}, "Verification"), verifyBox)),
    h("details", { class: "card" }, h("summary", {}, "Settings (as TOML, passwords left out)"), specBox));
  let task = null;
  let samples = [];
  let seen = [];
  let lastSeq = 0;
  let busy = false;

  async function act(what, body) {
    busy = true;
    drawActions();
    try {
      const r = await api("POST", "/api/v1/tasks/" + enc(id) + "/" + what, body);
      if (what === "pause" && r.pause && r.pause.note) flash("Paused: " + r.pause.note);
      else flash({ resume: "Resumed", stop: "Stopped" }[what] || "Done");
      task = r.task || r;
    } catch (e) { flash(e.message, true); }
    busy = false;
    await refresh();
  }
  async function pause() {
    if (await confirmDialog("Pause " + task.name + "?", "Nothing more is written to the target: it stays as it is now and falls behind. The source link is kept and its writes wait in the local spool; resume writes them in order.", null, "Pause"))
      act("pause");
  }
  async function stop() {
    if (await confirmDialog("Stop " + task.name + "?", "The writes in flight are finished with their checkpoint, then the task ends. The target keeps everything copied so far and gets nothing more; a later start continues from the checkpoint (if the source still has that part of its backlog, else it copies again as full_resync says).", null, "Stop"))
      act("stop");
  }
  async function remove() {
    const cleanup = h("label", { class: "check" }, h("input", { type: "checkbox", id: "delete-cleanup" }), "Also remove ferry's own keys (checkpoint, lease, fences in the target; heartbeat in the source)");
    if (!(await confirmDialog("Delete " + task.name + "?", "The task, its history and reports are removed from this server. The data copied to the target stays there, untouched; without the box below, ferry's checkpoint keys stay too.", cleanup, "Delete"))) return;
    const clean = document.getElementById("delete-cleanup").checked;
    // No poll of the task may be under way when it is gone.
    await stopPage();
    try {
      await api("DELETE", "/api/v1/tasks/" + enc(id) + (clean ? "?cleanup=true" : ""));
      flash("Deleted " + task.name);
      location.hash = "#/tasks";
    } catch (e) { flash(e.message, true); route(); }
  }
  async function verify() {
    busy = true;
    drawActions();
    verifyBox.replaceChildren(h("p", { class: "muted" }, "Comparing the target with the source, key by key…"));
    try {
      const r = await api("POST", "/api/v1/tasks/" + enc(id) + "/verify");
      verifyReport(verifyBox, { at: Date.now(), failed: r.failed, report: r.report }, id);
    } catch (e) { verifyBox.replaceChildren(h("p", { class: "error" }, "The verification could not run: " + e.message)); }
    busy = false;
    drawActions();
  }
  function drawActions() {
    if (!task) return;
    const running = RUNNING.includes(task.state);
    const b = (label, idn, fn, show, cls) => show ? h("button", { type: "button", id: idn, onclick: fn, disabled: busy, class: cls }, label) : null;
    actions.replaceChildren(...[
      b("Pause", "pause", pause, running && task.state !== "paused"),
      b("Resume", "resume", () => act("resume"), task.state === "paused", "primary"),
      b("Stop", "stop", stop, running),
      !running && task.state !== "prechecking" ? h("a", { class: "button primary", href: "#/task/" + enc(id) + "/precheck", id: "to-precheck" }, "Precheck and start") : null,
      b("Verify", "verify", verify, true),
      b("Delete", "delete", remove, !running && task.state !== "prechecking", "danger"),
    ].filter(Boolean));
  }
  function drawProgress() {
    const st = task.status;
    const last = samples[samples.length - 1];
    const prev = samples.length > 5 ? samples[samples.length - 6] : samples[0];
    const secs = last && prev && last.at_ms > prev.at_ms ? (last.at_ms - prev.at_ms) / 1000 : 0;
    const rate = (k) => (secs ? (last[k] - prev[k]) / secs : null);
    if (!st) { progress.replaceChildren(h("p", { class: "muted" }, "Not running: no live figures.")); return; }
    // Keys applied out of the source's key count when the engine knows it; else the bytes.
    const total = st.source_keys > 0 ? st.source_keys : 0;
    const pct = st.phase === "incremental" ? 100
      : total ? Math.min(100, (100 * st.keys_written) / total)
      : st.snapshot_size > 0 ? Math.min(100, (100 * st.bytes_read) / st.snapshot_size) : 0;
    const byteRate = st.phase === "full" ? rate("bytes_read") : null;
    const keyRate = st.phase === "full" ? rate("keys_written") : null;
    const eta = st.phase !== "full" ? NaN
      : total && keyRate > 0 ? Math.max(0, total - st.keys_written) / keyRate
      : byteRate > 0 && st.snapshot_size ? (st.snapshot_size - st.bytes_read) / byteRate : NaN;
    progress.replaceChildren(
      h("label", { for: "copy-progress", class: "small" }, st.phase === "full"
        ? "Full copy: " + (total ? pct.toFixed(0) + "% of the keys (" + num(st.keys_written, 0) + " of " + num(total, 0) + "), " + bytes(st.bytes_read) + " read"
          : st.snapshot_size ? pct.toFixed(0) + "% of the snapshot (" + bytes(st.bytes_read) + " of " + bytes(st.snapshot_size) + ")" : bytes(st.bytes_read) + " of the snapshot read (its size is not known: the source streams it)")
        : "Full copy: " + (st.phase === "incremental" ? "done, " + num(st.keys_written, 0) + " keys" + (st.source_mode === "scan" ? " read by SCAN; following keyspace notifications" : " from a " + bytes(st.bytes_read) + " snapshot; following the write stream") : "not under way")),
      h("progress", { id: "copy-progress", max: 100, value: pct.toFixed(1) }),
      h("div", { class: "stats" },
        stat("phase", st.phase, "stat-phase"),
        stat("source read by", !st.source_mode ? "–" : st.source_mode === "scan"
          ? "scan + notifications (converges)" : "replication (exactly once)", "stat-mode"),
        stat("target written as", !st.target_mode ? "–" : st.target_mode === "replica"
          ? "ferry's replica (its offset is the checkpoint)" : "commands (checkpoint key)", "stat-target-mode"),
        stat("keys copied", num(st.keys_written, 0) + (total ? " of " + num(total, 0) : ""), "stat-keys"),
        stat("copy rate", byteRate === null ? "–" : bytes(byteRate) + "/s", "stat-rate"),
        stat("keys/s", st.phase !== "full" || rate("keys_written") === null ? "–" : num(rate("keys_written"), 0)),
        stat("ETA", st.phase === "full" ? duration(eta) : (st.phase === "incremental" ? "copied" : "–"), "stat-eta"),
        stat("stream ops applied", st.target_mode === "replica" ? "– (relayed as bytes)" : num(st.ops_applied, 0)),
        stat("lag", st.lag_s === null || st.lag_s === undefined ? "–" : num(st.lag_s, 2) + " s", "stat-lag"),
        stat("lag bytes", bytes(st.lag_bytes)),
        stat("latency p50 / p99", st.latency_ms ? num(st.latency_ms.p50, 1) + " / " + num(st.latency_ms.p99, 1) + " ms" : "–", "stat-p99"),
        stat("spool", bytes(st.spool_bytes) + (st.spool_limit ? " of " + bytes(st.spool_limit) : ""))));
  }
  function drawCharts() {
    charts.replaceChildren(
      h("figure", {}, chart("lag", "Lag (seconds behind the source)", "s", samples, (x) => x.lag_s), h("figcaption", { class: "small muted" }, "Lag, seconds")),
      h("figure", {}, chart("latency", "Latency p99 (source write to target)", "ms", samples, (x) => x.latency_p99_ms), h("figcaption", { class: "small muted" }, "Latency p99, ms")));
    charts.querySelector("svg.lag").id = "lag-chart";
    charts.querySelector("svg.latency").id = "latency-chart";
  }
  function drawTimeline() {
    const states = seen.filter((e) => e.type === "state");
    timeline.replaceChildren(...states.slice(-14).map((e) => h("li", {}, badge(e.to), clock(e.at_ms))));
  }
  function drawEvents() {
    events.replaceChildren(...seen.slice(-100).reverse().map((e) => h("li", { "data-type": e.type },
      h("span", { class: "muted" }, clock(e.at_ms) + " "), h("b", {}, e.type), " ", h("code", {}, eventText(e)))));
  }
  async function refresh() {
    task = await api("GET", "/api/v1/tasks/" + enc(id));
    title.replaceChildren(task.name, badge(task.state), h("span", { class: "muted small" }, task.id + " · " + sourceOf(task) + " · since " + when(task.since)));
    title.querySelector(".badge").id = "state";
    errorBox.textContent = task.last_error || (task.status && task.status.last_error) || "";
    if (!busy) drawActions();
    drawProgress();
    parts.replaceChildren(...[partsTable("Shards", task.status && task.status.shards), partsTable("Targets", task.status && task.status.targets)].filter(Boolean));
    if (!specBox.textContent) specBox.textContent = toToml(task.spec || {});
  }
  async function more() {
    for (;;) {
      const page = await api("GET", "/api/v1/tasks/" + enc(id) + "/events?after=" + lastSeq + "&limit=500");
      seen = seen.concat(page.events);
      if (page.events.length) lastSeq = page.events[page.events.length - 1].seq;
      if (!page.next_after) break;
    }
    if (seen.length > 1000) seen = seen.slice(-1000);
    drawTimeline();
    drawEvents();
  }
  try { await refresh(); } catch (e) {
    if (e.status === 404) { main.replaceChildren(h("h1", {}, "No such task"), h("p", {}, e.message), h("a", { href: "#/tasks" }, "All tasks")); return; }
    throw e;
  }
  if (task.last_verify) {
    try { verifyReport(verifyBox, await api("GET", "/api/v1/tasks/" + enc(id) + "/reports/verify"), id); } catch (_) { /* shown as none */ }
  }
  every(POLL_MS, async () => {
    const hist = await api("GET", "/api/v1/tasks/" + enc(id) + "/history");
    samples = hist.samples;
    await refresh();
    drawCharts();
    await more();
  });
}

// ---------- alerts ----------

function alertsPage(main) {
  const body = h("div", { id: "alerts" });
  main.append(h("h1", {}, "Alerts"),
    h("p", { class: "muted" }, "Rules are made through the API (POST /api/v1/alerts) or ferry task; each is checked once a second and delivered as a signed webhook."),
    body);
  every(5000, async () => {
    const rules = await api("GET", "/api/v1/alerts");
    const deliveries = await Promise.all(rules.map((r) => api("GET", "/api/v1/alerts/" + enc(r.id) + "/deliveries?limit=5").catch(() => [])));
    if (!rules.length) { body.replaceChildren(h("p", {}, "No alert rules.")); return; }
    body.replaceChildren(...rules.map((r, i) => {
      const ds = Array.isArray(deliveries[i]) ? deliveries[i] : (deliveries[i].deliveries || []);
      const state = r.firing.length ? "firing" : ds.length ? "resolved" : "never";
      return h("div", { class: "card", "data-rule": r.id },
        h("h2", {}, r.kind + (r.threshold !== null && r.threshold !== undefined ? " > " + r.threshold : ""), " ",
          h("span", { class: "badge " + (state === "firing" ? "r-fail" : state === "resolved" ? "r-pass" : "") }, state)),
        h("p", { class: "small muted" }, "Rule " + r.id + " · " + (r.task ? "task " + r.task : "every task") + " · for " + r.for_seconds + " s · webhook " + r.webhook_url),
        r.firing.length ? h("p", {}, "Firing for: ", r.firing.map((f) => f.task + " since " + when(f.since)).join(", ")) : null,
        ds.length ? h("div", { class: "scroll" }, h("table", {}, h("thead", {}, h("tr", {}, ["When", "Task", "What", "Attempts", "HTTP", "Delivered / error"].map((x) => h("th", { scope: "col" }, x)))),
          h("tbody", {}, ds.slice().reverse().map((d) => h("tr", {}, h("td", {}, when(d.at)), h("td", {}, d.task), h("td", {}, d.state), h("td", { class: "num" }, d.attempts),
            h("td", { class: "num" }, d.http_status || "–"), h("td", { class: d.last_error ? "err" : "" }, d.delivered ? "delivered " + when(d.delivered) : (d.last_error || "pending"))))))) :
          h("p", { class: "muted small" }, "No deliveries yet."));
    }));
  });
}

// ---------- start ----------

window.addEventListener("hashchange", route);
document.getElementById("signout").addEventListener("click", signOut);
(async () => {
  try {
    const res = await fetch("/console/session", { credentials: "same-origin" });
    const body = await res.json();
    csrf = body.csrf || null;
  } catch (_) { csrf = null; }
  route();
})();
