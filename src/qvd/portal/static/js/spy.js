// The spy page (templates/spy.html): #screen carries the single-use ticket, the
// WebSocket path and whether the view is view-only; the ticket is the socket's first
// message, and a dropped socket is not opened again (the ticket is spent).
import { openViewer } from "/static/js/viewer.js";

const screen = document.getElementById("screen");
const statusLine = document.getElementById("status");

openViewer({
    screen,
    wsUrl: screen.dataset.ws,
    firstMessage: screen.dataset.ticket,
    viewOnly: screen.dataset.viewOnly !== "0" && screen.dataset.viewOnly !== "false",
    reconnect: false,
    onProgress: (text) => {
        if (statusLine) {
            statusLine.textContent = text;
        }
    },
    onStatus: (state, text) => {
        if (statusLine) {
            statusLine.dataset.state = state;
            statusLine.textContent = text;
        }
    },
});
// The ticket is spent once sent: keep it out of the page from now on.
delete screen.dataset.ticket;
