// Disk images: the upload with a progress bar and Cancel, the staging import, and the
// tag board's drag and drop. The upload and the import go straight to the API's REST
// routes: the session cookie authenticates them, X-CSRF-Token proves they come from
// this page (no inline script: wired by ids and data- attributes).
import { csrfToken } from "/static/js/wat.js";

function apiMessage(text, fallback) {
  try {
    const body = JSON.parse(text);
    if (body && body.message) return body.message;
    if (body && Array.isArray(body.detail)) {
      return body.detail.map((d) => d.msg || String(d)).join("; ");
    }
  } catch (e) {
    // not JSON: fall through
  }
  return fallback;
}

function diArguments(form) {
  const args = { osf_id: Number(form.elements.osf_id.value) };
  const version = form.elements.version.value.trim();
  if (version) args.version = version;
  if (form.elements.make_default && form.elements.make_default.checked) args.tags = ["default"];
  return args;
}

function wireUpload(form) {
  const progress = document.getElementById("upload-progress");
  const percent = document.getElementById("upload-percent");
  const message = document.getElementById("upload-message");
  const submit = document.getElementById("upload-submit");
  const cancel = document.getElementById("upload-cancel");
  let xhr = null;

  const show = (value) => {
    const rounded = Math.floor(value);
    progress.value = rounded;
    progress.textContent = `${rounded}%`;
    percent.textContent = `${rounded}%`;
  };
  const done = () => {
    xhr = null;
    submit.disabled = false;
    cancel.hidden = true;
  };

  submit.disabled = false;
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const file = form.elements.file.files[0];
    if (!file || xhr) return;
    const body = new FormData();
    body.append("arguments", JSON.stringify(diArguments(form)));  // before the file part
    body.append("file", file, file.name);
    xhr = new XMLHttpRequest();
    const request = xhr;
    request.open("POST", form.dataset.uploadUrl);
    request.setRequestHeader("X-CSRF-Token", csrfToken());
    request.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable) show((e.loaded / e.total) * 100);
    });
    request.upload.addEventListener("load", () => {
      show(100);
      message.textContent = message.dataset.textChecking;
    });
    request.addEventListener("load", () => {
      done();
      if (request.status === 201) {
        const id = Number(JSON.parse(request.responseText).id);
        window.location.assign(`/dis/${id}`);
        return;
      }
      show(0);
      message.textContent = `${message.dataset.textFailed}: ${apiMessage(request.responseText, String(request.status))}`;
      message.classList.add("error");
    });
    request.addEventListener("error", () => {
      done();
      message.textContent = message.dataset.textNetwork;
      message.classList.add("error");
    });
    request.addEventListener("abort", () => {
      done();
      show(0);
      message.textContent = message.dataset.textCancelled;
    });
    message.textContent = "";
    message.classList.remove("error");
    show(0);
    submit.disabled = true;
    cancel.hidden = false;
    request.send(body);
  });
  cancel.addEventListener("click", () => {
    if (xhr) xhr.abort();
  });
}

function wireStaging(form) {
  const result = document.getElementById("staging-result");
  const submit = document.getElementById("staging-submit");
  submit.disabled = false;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const args = { ...diArguments(form), disk_image: form.elements.disk_image.value };
    submit.disabled = true;
    result.classList.remove("error");
    result.textContent = result.dataset.textWorking;
    try {
      const response = await fetch(form.dataset.stagingUrl, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrfToken() },
        body: JSON.stringify(args),
      });
      const text = await response.text();
      if (response.status === 201) {
        const id = Number(JSON.parse(text).id);
        result.textContent = `${result.dataset.textDone} `;
        const link = document.createElement("a");
        link.href = `/dis/${id}`;
        link.id = "staging-new-di";
        link.textContent = String(id);
        result.append(link);
      } else {
        result.textContent = `${result.dataset.textFailed}: ${apiMessage(text, String(response.status))}`;
        result.classList.add("error");
      }
    } finally {
      submit.disabled = false;
    }
  });
}

function choose(select, value) {
  if (![...select.options].some((o) => o.value === value)) return false;
  select.value = value;
  return true;
}

function wireBoard(board) {
  const form = document.getElementById("tag-move");
  if (!form) return;
  board.addEventListener("dragstart", (event) => {
    const chip = event.target.closest && event.target.closest("[data-tag][draggable=true]");
    if (!chip) return;
    event.dataTransfer.setData("text/plain", chip.dataset.tag);
    event.dataTransfer.effectAllowed = "move";
    board.classList.add("dragging");
  });
  board.addEventListener("dragend", () => board.classList.remove("dragging"));
  board.addEventListener("dragover", (event) => {
    if (event.target.closest(".di-card")) event.preventDefault();
  });
  board.addEventListener("drop", (event) => {
    const card = event.target.closest(".di-card");
    if (!card) return;
    event.preventDefault();
    board.classList.remove("dragging");
    const tag = event.dataTransfer.getData("text/plain");
    if (!choose(form.elements.tag, tag) || !choose(form.elements.di_id, card.dataset.diId)) return;
    for (const other of board.querySelectorAll(".di-card.target")) other.classList.remove("target");
    card.classList.add("target");
    // the form's change asks htmx for the preview; the move waits for the admin's confirmation
    form.elements.di_id.dispatchEvent(new Event("change", { bubbles: true }));
    document.getElementById("tag-move-submit").focus();
  });
}

const upload = document.getElementById("create");
if (upload && upload.dataset.uploadUrl) wireUpload(upload);
const staging = document.getElementById("staging-import");
if (staging) wireStaging(staging);
const board = document.getElementById("di-board");
if (board) wireBoard(board);
