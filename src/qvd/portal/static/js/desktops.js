// The desktops page: rows follow the database (polled every second), buttons act
// through the JSON API with the page's anti-CSRF token. No inline script or style.
const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? "";
const table = document.getElementById("desktops");
const body = table.querySelector("tbody");
const notice = document.getElementById("notice");
const empty = document.getElementById("empty");
const POLL_MS = 1000;
let busy = new Set();

function say(text, bad = false) {
  notice.textContent = text;
  notice.classList.toggle("error", bad);
}

function cell(row, field) {
  let td = row.querySelector(`td[data-field="${field}"]`);
  if (!td) {
    td = document.createElement("td");
    td.dataset.field = field;
    row.appendChild(td);
  }
  return td;
}

// Connect is a link to the session page (it works before this script runs); a blocked
// desktop's has no target.
function connectLink(vmId) {
  const a = document.createElement("a");
  a.className = "button";
  a.dataset.op = "connect";
  a.href = `/desktops/${vmId}`;
  a.textContent = "Connect";
  return a;
}

function setConnectable(link, vmId, connectable) {
  if (connectable) {
    link.href = `/desktops/${vmId}`;
    link.removeAttribute("aria-disabled");
    link.removeAttribute("role");
  } else {
    link.removeAttribute("href");
    link.setAttribute("aria-disabled", "true");
    link.setAttribute("role", "link");
  }
}

function button(op, label) {
  const b = document.createElement("button");
  b.type = "button";
  b.dataset.op = op;
  b.textContent = label;
  return b;
}

function rowFor(desktop) {
  let row = body.querySelector(`tr[data-vm-id="${desktop.id}"]`);
  if (!row) {
    row = document.createElement("tr");
    row.dataset.vmId = String(desktop.id);
    cell(row, "name");
    cell(row, "state");
    cell(row, "user_state");
    const actions = document.createElement("td");
    actions.className = "actions";
    actions.append(connectLink(desktop.id), button("start", "Start"),
                   button("stop", "Stop"), button("restart", "Restart"));
    row.appendChild(actions);
    body.appendChild(row);
  }
  return row;
}

function show(desktops) {
  const seen = new Set();
  for (const d of desktops) {
    const row = rowFor(d);
    seen.add(String(d.id));
    cell(row, "name").textContent = d.name;
    cell(row, "state").textContent = d.blocked ? `${d.state} (blocked)` : d.state;
    cell(row, "user_state").textContent = d.user_state;
    const pending = busy.has(String(d.id));
    const stopped = d.state === "stopped";
    const running = d.state === "running";
    setConnectable(row.querySelector('[data-op="connect"]'), d.id, !d.blocked);
    row.querySelector('[data-op="start"]').disabled = pending || d.blocked || !stopped;
    row.querySelector('[data-op="stop"]').disabled = pending || !(running || d.state === "starting");
    row.querySelector('[data-op="restart"]').disabled = pending || d.blocked || !running;
  }
  for (const row of [...body.querySelectorAll("tr[data-vm-id]")]) {
    if (!seen.has(row.dataset.vmId)) row.remove();
  }
  empty.hidden = desktops.length > 0;
}

async function refresh() {
  try {
    const response = await fetch("/api/desktops", {credentials: "same-origin", cache: "no-store"});
    if (response.status === 401) {
      window.location.assign("/");
      return;
    }
    if (response.ok) show(await response.json());
  } catch (e) {
    say("The portal cannot be reached; retrying…", true);
  }
}

async function operate(vmId, op) {
  busy.add(vmId);
  say(`${op[0].toUpperCase()}${op.slice(1)}ing desktop…`);
  try {
    const response = await fetch(`/api/desktops/${vmId}/${op}`, {
      method: "POST",
      credentials: "same-origin",
      headers: {"X-CSRF-Token": csrf},
    });
    const answer = await response.json().catch(() => ({}));
    if (response.ok) say(answer.message ?? "Done");
    else say(answer.error ?? `Refused (${response.status})`, true);
  } finally {
    busy.delete(vmId);
    refresh();
  }
}

table.addEventListener("click", (event) => {
  const b = event.target.closest("button[data-op]");  // Connect is a link: no script
  if (!b || b.disabled) return;
  operate(b.closest("tr[data-vm-id]").dataset.vmId, b.dataset.op);
});

refresh();
setInterval(refresh, POLL_MS);
