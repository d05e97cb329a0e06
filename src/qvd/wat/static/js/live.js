// Live elements. An element <table|div id=… data-live-action="vm_get_list"
// data-live-fields="state,..."> keeps the elements [data-field] inside its [data-id]
// children current (a list's <tr data-id><td data-field>, a detail page's
// <dl data-id><dd data-field>). It opens the API's WebSocket (/api/ws, authenticated
// by the session cookie) with the list action over the ids on screen; the API re-runs
// it on every database notification and pushes {status, rows, total} when it changed
// (QVD's shape: booleans as 0/1), and says "AKN" now and then.
//
// follow(element, query, onBody) is the socket underneath, also used by the
// dashboard: one socket per element, marked data-live="open"|"closed" on it; when
// the server closes it (API restart, network) it reconnects with backoff, but not
// when the page goes away, the element left the document, or the API refused for
// good (no session: 4401; forbidden or malformed: 4403/4400). Following an element
// again (after an htmx swap) closes its old socket first.
const followers = new Map(); // key (element id, else the element) -> Follower
const FINAL_CODES = new Set([4400, 4401, 4403]);
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 15000;
let leaving = false;

window.addEventListener("pagehide", () => {
  leaving = true;
  for (const follower of followers.values()) follower.stop();
});
window.addEventListener("pageshow", (event) => {
  if (!event.persisted) return;
  // back from the browser's page cache: the same document, its sockets closed on the
  // way out; open them again (missed changes: the first push counts as a reconnection)
  leaving = false;
  for (const [key, follower] of followers) {
    if (follower.element.isConnected) follower.resume();
    else followers.delete(key);
  }
});

function closeQuietly(socket) {
  // closing a socket that is still connecting makes the browser warn: wait for it
  if (socket.readyState === WebSocket.CONNECTING) {
    socket.addEventListener("open", () => socket.close(1000));
  } else if (socket.readyState === WebSocket.OPEN) {
    socket.close(1000);
  }
}

class Follower {
  constructor(element, query, onBody) {
    this.element = element;
    this.query = query;
    this.onBody = onBody;
    this.socket = null;
    this.timer = null;
    this.attempt = 0;
    this.pushes = 0; // bodies received on the current socket
    this.reconnects = 0; // sockets opened after the first
    this.stopped = false;
  }

  connect() {
    if (this.stopped || leaving) return;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(`${scheme}//${location.host}/api/ws?${this.query}`);
    this.socket = socket;
    this.pushes = 0;
    socket.addEventListener("open", () => {
      if (socket !== this.socket) return;
      this.element.dataset.live = "open";
    });
    socket.addEventListener("message", (event) => {
      if (socket !== this.socket || typeof event.data !== "string") return;
      if (event.data === "AKN") return; // the server's keep-alive
      let body;
      try { body = JSON.parse(event.data); } catch { return; }
      if (!body || typeof body !== "object") return;
      this.attempt = 0;
      const first = this.pushes === 0;
      this.pushes += 1;
      this.onBody(body, { first, reconnected: this.reconnects > 0 });
    });
    socket.addEventListener("close", (event) => {
      if (socket !== this.socket) return;
      this.element.dataset.live = "closed";
      if (this.stopped || leaving || FINAL_CODES.has(event.code)) return;
      if (!this.element.isConnected) { this.stop(); return; }
      this.schedule();
    });
  }

  schedule() {
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.attempt);
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    this.attempt += 1;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.reconnects += 1;
      this.element.dataset.liveReconnects = String(this.reconnects);
      this.connect();
    }, delay);
  }

  resume() {
    this.stopped = false;
    this.attempt = 0;
    this.reconnects += 1;
    this.element.dataset.liveReconnects = String(this.reconnects);
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = null;
    if (this.socket) closeQuietly(this.socket);
    this.element.dataset.live = "closed";
  }
}

// Follow `element` with the /api/ws query string `query`; onBody(body, {first,
// reconnected}) gets every pushed body. Returns the follower (stop() ends it).
export function follow(element, query, onBody) {
  const key = element.id || element;
  const old = followers.get(key);
  // wired twice (page load, then htmx's first htmx:load): the socket stays
  if (old && old.element === element && old.query === query && !old.stopped) return old;
  if (old) old.stop();
  const follower = new Follower(element, query, onBody);
  followers.set(key, follower);
  follower.connect();
  return follower;
}

// Stop following elements that left the document (an htmx swap replaced them).
export function sweep() {
  for (const [key, follower] of followers) {
    if (!follower.element.isConnected) {
      follower.stop();
      followers.delete(key);
    }
  }
}

function render(cell, value) {
  const text = value === null || value === undefined ? "" : String(value);
  const link = cell.querySelector("a");
  const target = link || cell;
  if (cell.dataset.state !== undefined) cell.dataset.state = text;
  if (target.textContent !== text) target.textContent = text;
}

function apply(table, fields, rows) {
  for (const row of rows) {
    const tr = table.querySelector(`[data-id="${Number(row.id)}"]`);
    if (!tr) continue;
    for (const field of fields) {
      const cell = tr.querySelector(`[data-field="${field}"]`);
      if (cell && field in row) {
        let value = row[field];
        // /api/ws answers in QVD's shape: booleans as 0/1
        if (typeof value === "boolean" || cell.dataset.kind === "bool") value = value ? "✔" : "";
        render(cell, value);
      }
    }
  }
  table.dataset.liveUpdated = String(Date.now());
}

export function startLive(root) {
  sweep();
  const tables = root.matches && root.matches("[data-live-action]")
    ? [root] : root.querySelectorAll("[data-live-action]");
  for (const table of tables) {
    const ids = [...table.querySelectorAll("[data-id]")]
      .map((el) => Number(el.dataset.id))
      .filter((id) => Number.isInteger(id));
    const key = table.id || table;
    if (ids.length === 0) {
      const old = followers.get(key);
      if (old) { old.stop(); followers.delete(key); }
      continue;
    }
    const fields = (table.dataset.liveFields || "").split(",").filter(Boolean);
    const query = new URLSearchParams({
      action: table.dataset.liveAction,
      filters: JSON.stringify({ id: ids }),
      fields: JSON.stringify(["id", ...fields]),
    });
    follow(table, query.toString(), (body) => {
      if (body.status === 0 && Array.isArray(body.rows)) apply(table, fields, body.rows);
    });
  }
}
