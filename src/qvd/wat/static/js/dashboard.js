// The dashboard's live blocks. Every [data-dash-query] element is followed over
// /api/ws (live.js's follow: reconnects with backoff, data-live="open"|"closed"):
// - the counters ([data-dash-stats]: qvd_objects_statistics) show the pushed
//   statistics in their [data-stat="name" or "name.key"] outputs;
// - a panel ([data-dash-panel="name"]) is fetched again from the WAT
//   (GET /dashboard/panels/<name>) when the rows its socket watches change, and its
//   [data-dash-body] replaced (server-rendered, the same template as the page).
import { follow } from "/static/js/live.js";

function statOf(stats, path) {
  let value = stats;
  for (const part of path.split(".")) {
    value = value !== null && typeof value === "object" ? value[part] : undefined;
  }
  return typeof value === "number" ? value : undefined;
}

function showStats(element, body) {
  if (body.status !== 0) return;
  // QVD's shape: the statistics at the top of the body (and in rows[0])
  const first = Array.isArray(body.rows) ? body.rows[0] : undefined;
  const stats = first !== null && typeof first === "object" ? first : body;
  for (const output of element.querySelectorAll("[data-stat]")) {
    const value = statOf(stats, output.dataset.stat);
    if (value === undefined) continue;
    const text = String(value);
    if (output.textContent !== text) {
      output.textContent = text;
      element.dataset.dashChanged = String(performance.now());
    }
  }
}

const pending = new Map(); // panel name -> {running, again}

async function refreshPanel(element) {
  const name = element.dataset.dashPanel;
  const state = pending.get(name) || { running: false, again: false };
  pending.set(name, state);
  if (state.running) { state.again = true; return; }
  state.running = true;
  try {
    do {
      state.again = false;
      const response = await fetch(`/dashboard/panels/${encodeURIComponent(name)}`, {
        credentials: "same-origin",
        headers: { Accept: "text/html" },
      });
      if (response.redirected || !response.ok) {
        if (response.redirected) window.location.assign(response.url); // session gone
        return;
      }
      const html = await response.text();
      const target = element.querySelector("[data-dash-body]");
      if (target && element.isConnected) {
        target.innerHTML = html;
        element.dataset.dashChanged = String(performance.now());
      }
    } while (state.again);
  } catch {
    // the API is unreachable: the socket's reconnection brings the panel back
  } finally {
    state.running = false;
  }
}

function wire(root) {
  for (const element of root.querySelectorAll("[data-dash-query]")) {
    if (element.dataset.dashWired) continue;
    element.dataset.dashWired = "1";
    const query = element.dataset.dashQuery;
    if (element.dataset.dashPanel) {
      follow(element, query, (body, { first, reconnected }) => {
        // the page was rendered just before the first push: only a reconnection may
        // have missed changes
        if (body.status === 0 && (!first || reconnected)) refreshPanel(element);
      });
    } else if (element.dataset.dashStats !== undefined) {
      follow(element, query, (body) => showStats(element, body));
    }
  }
}

if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", () => wire(document));
} else {
  wire(document);
}
