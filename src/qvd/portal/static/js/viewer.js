// The in-browser desktop viewer of the QVD user portal: one WebSocket to the portal,
// JSON text frames while the connect flow runs ({"progress"}, then {"ready": true} or
// {"error"}), then the RFB stream handed to noVNC.
//
//   openViewer({screen, wsUrl, firstMessage, viewOnly, reconnect, onProgress, onStatus,
//               onClipboard})
//     -> {disconnect(), sendClipboard(text), setKeyboard(layout)}
//
// A dropped socket is opened again with exponential backoff (0.5 s doubling to 8 s),
// except after close codes 4403/4404/4409, an {"error"} frame, disconnect() or when
// `reconnect` is false (a spy ticket serves once).
// noVNC (~50 ES modules) is fetched from the start but not waited for: the socket opens
// at once and the connect flow runs while the modules load; RFB is needed only at
// {"ready": true}. RFB frames that come before it is there are kept and replayed.
const novnc = import("/vendor/novnc/core/rfb.js");

// Close codes after which opening the socket again cannot help.
export const FINAL_CLOSE_CODES = new Map([
    [4403, "forbidden"],
    [4404, "not-found"],
    [4409, "taken-over"],
]);

export const STATUS_TEXT = {
    connecting: "Connecting…",
    connected: "Connected",
    "taken-over": "Taken over by another session",
    reconnecting: "Connection lost: reconnecting…",
    disconnected: "Disconnected",
    forbidden: "Forbidden",
    "not-found": "Desktop not found",
    error: "Error",
};

const FIRST_DELAY_MS = 500;
const LAST_DELAY_MS = 8000;

// An absolute ws(s):// URL for `url` (absolute or relative to this page).
export function socketUrl(url) {
    const absolute = new URL(url, window.location.href);
    if (absolute.protocol === "https:") {
        absolute.protocol = "wss:";
    } else if (absolute.protocol === "http:") {
        absolute.protocol = "ws:";
    }
    return absolute;
}

export function openViewer({
    screen,
    wsUrl,
    firstMessage = null,
    viewOnly = false,
    reconnect = true,
    onProgress = () => {},
    onStatus = () => {},
    onClipboard = () => {},
}) {
    const url = socketUrl(wsUrl);
    let socket = null;
    let rfb = null;
    let stopped = false; // no more sockets: the user left, or the server said why
    let delay = FIRST_DELAY_MS;
    let retryTimer = null;

    // `state` is a key of STATUS_TEXT; `detail` the server's words, when it gave some.
    function status(state, detail = "") {
        screen.dataset.state = state;
        onStatus(state, detail ? `${STATUS_TEXT[state]}: ${detail}` : STATUS_TEXT[state]);
    }

    function open() {
        retryTimer = null;
        status("connecting");
        const ws = new WebSocket(url.href);
        ws.binaryType = "arraybuffer";
        socket = ws;
        let failure = ""; // the text of an {"error"} frame
        ws.addEventListener("open", () => {
            if (firstMessage !== null) {
                ws.send(firstMessage);
            }
        });
        // Before {"ready": true} every frame is JSON text; after it noVNC reads the
        // binary RFB frames, and a text frame can only be the server's last word
        // ({"error"} before it closes the socket).
        let ready = false;
        let early = []; // RFB frames that came before noVNC was loaded, in order
        ws.addEventListener("message", (event) => {
            if (typeof event.data !== "string") {
                if (early !== null && ready) {
                    early.push(event.data);
                }
                return;
            }
            let frame;
            try {
                frame = JSON.parse(event.data);
            } catch {
                return;
            }
            if (typeof frame.error === "string") {
                failure = frame.error;
            } else if (ready) {
                return;
            } else if (typeof frame.progress === "string") {
                onProgress(frame.progress);
            } else if (frame.ready === true) {
                ready = true;
                novnc.then(({ default: RFB }) => {
                    if (ws !== socket || ws.readyState !== WebSocket.OPEN) {
                        return; // given up (disconnect, new keyboard) or closed meanwhile
                    }
                    attach(RFB, ws);
                    const kept = early;
                    early = null; // from now on noVNC reads the socket itself
                    for (const data of kept) {
                        ws.dispatchEvent(new MessageEvent("message", { data }));
                    }
                });
            }
        });
        ws.addEventListener("close", (event) => closed(ws, event.code, failure || event.reason));
    }

    function attach(RFB, ws) {
        rfb = new RFB(screen, ws, { shared: true });
        rfb.viewOnly = viewOnly;
        rfb.scaleViewport = true;
        rfb.resizeSession = false;
        rfb.focusOnClick = true;
        rfb.addEventListener("connect", () => {
            delay = FIRST_DELAY_MS;
            status("connected");
            if (!viewOnly) {
                rfb.focus({ preventScroll: true });
            }
        });
        rfb.addEventListener("clipboard", (event) => onClipboard(event.detail.text));
    }

    function closed(ws, code, failure) {
        if (ws !== socket) {
            return; // a socket this viewer already gave up (setKeyboard)
        }
        socket = null;
        rfb = null; // noVNC removes its canvas itself on the socket's close
        if (stopped) {
            status("disconnected");
            return;
        }
        const final = FINAL_CLOSE_CODES.get(code);
        if (final) {
            stopped = true;
            status(final, failure);
        } else if (failure) {
            stopped = true;
            status("error", failure);
        } else if (!reconnect) {
            stopped = true;
            status("disconnected");
        } else {
            status("reconnecting");
            retryTimer = window.setTimeout(open, delay);
            delay = Math.min(delay * 2, LAST_DELAY_MS);
        }
    }

    // Close the current socket (and its RFB) without reporting it as a drop.
    function drop() {
        const ws = socket;
        const old = rfb;
        socket = null;
        rfb = null;
        if (retryTimer !== null) {
            window.clearTimeout(retryTimer);
            retryTimer = null;
        }
        if (old) {
            old.disconnect();
        } else if (ws) {
            ws.close(1000);
        }
    }

    open();

    return {
        disconnect() {
            stopped = true;
            drop();
            status("disconnected");
        },
        sendClipboard(text) {
            if (rfb) {
                rfb.clipboardPasteFrom(text);
            }
        },
        // The layout takes effect when the session starts: open the socket again with it.
        setKeyboard(layout) {
            url.searchParams.set("keyboard", layout);
            if (stopped) {
                return;
            }
            drop();
            delay = FIRST_DELAY_MS;
            open();
        },
    };
}
