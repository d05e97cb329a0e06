// Live lists: an element <table|div id=… data-live-action="vm_get_list"
// data-live-fields="state,..."> keeps the elements [data-field] inside its [data-id]
// children current (a list's <tr data-id><td data-field>, a detail page's
// <dl data-id><dd data-field>). It opens the API's
// WebSocket (/api/ws, authenticated by the session cookie) with the list action over
// the ids on screen; the API re-runs it on every database notification and pushes the
// rows when they changed.
const sockets = new Map();

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
  const tables = root.matches && root.matches("[data-live-action]")
    ? [root] : root.querySelectorAll("[data-live-action]");
  for (const table of tables) {
    const ids = [...table.querySelectorAll("[data-id]")].map((el) => Number(el.dataset.id));
    const old = sockets.get(table.id);
    if (old) {
      sockets.delete(table.id);
      if (old.readyState === WebSocket.CONNECTING) {
        old.addEventListener("open", () => old.close());
      } else {
        old.close();
      }
    }
    if (ids.length === 0) continue;
    const fields = table.dataset.liveFields.split(",");
    const query = new URLSearchParams({
      action: table.dataset.liveAction,
      filters: JSON.stringify({ id: ids }),
      fields: JSON.stringify(["id", ...fields]),
    });
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(`${scheme}//${location.host}/api/ws?${query}`);
    sockets.set(table.id, socket);
    socket.addEventListener("message", (event) => {
      if (event.data === "AKN") return;
      let body;
      try { body = JSON.parse(event.data); } catch { return; }
      if (body.status === 0 && Array.isArray(body.rows)) apply(table, fields, body.rows);
    });
    socket.addEventListener("open", () => { table.dataset.live = "open"; });
    socket.addEventListener("close", () => { table.dataset.live = "closed"; });
  }
}
