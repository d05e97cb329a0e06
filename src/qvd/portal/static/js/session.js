// The session page (templates/session.html): opens the viewer on #screen with the
// geometry of #screen and the chosen keyboard layout, and wires the toolbar.
import { openViewer } from "/static/js/viewer.js";

const screen = document.getElementById("screen");
const statusLine = document.getElementById("status");
const clipboard = document.getElementById("clipboard");
const keyboard = document.getElementById("keyboard");

// The layout chosen last time, in this browser.
const KEYBOARD_KEY = "qvd-keyboard";
const remembered = window.localStorage.getItem(KEYBOARD_KEY);
if (remembered && [...keyboard.options].some((option) => option.value === remembered)) {
    keyboard.value = remembered;
}

function wsUrl() {
    const url = new URL(screen.dataset.ws, window.location.href);
    const box = screen.getBoundingClientRect();
    url.searchParams.set("geometry", `${Math.round(box.width)}x${Math.round(box.height)}`);
    url.searchParams.set("keyboard", keyboard.value);
    return url.href;
}

const viewer = openViewer({
    screen,
    wsUrl: wsUrl(),
    onProgress: (text) => {
        statusLine.textContent = text;
    },
    onStatus: (state, text) => {
        statusLine.dataset.state = state;
        statusLine.textContent = text;
    },
    onClipboard: (text) => {
        clipboard.value = text;
    },
});

document.getElementById("clipboard-send").addEventListener("click", () => {
    viewer.sendClipboard(clipboard.value);
});
keyboard.addEventListener("change", () => {
    window.localStorage.setItem(KEYBOARD_KEY, keyboard.value);
    viewer.setKeyboard(keyboard.value);
});
document.getElementById("disconnect").addEventListener("click", () => {
    viewer.disconnect();
    window.location.assign("/");
});
