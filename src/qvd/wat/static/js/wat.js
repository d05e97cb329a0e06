// The WAT's shared behaviour: no inline script anywhere (CSP), so pages say what they
// need with data- attributes and this module wires them up, on load and after every
// htmx swap.
import { startLive } from "/static/js/live.js";

function wire(root) {
  // a <select data-autosubmit> submits its form when changed
  for (const select of root.querySelectorAll("select[data-autosubmit]")) {
    if (select.dataset.wired) continue;
    select.dataset.wired = "1";
    select.addEventListener("change", () => select.form.requestSubmit());
  }
  // <form data-confirm="text"> asks before it submits
  for (const form of root.querySelectorAll("form[data-confirm]")) {
    if (form.dataset.wired) continue;
    form.dataset.wired = "1";
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
  // <form data-autosubmit-form> submits itself once, as soon as it is shown
  for (const form of root.querySelectorAll("form[data-autosubmit-form]")) {
    if (form.dataset.wired) continue;
    form.dataset.wired = "1";
    form.requestSubmit();
  }
  startLive(root);
}

export function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

document.addEventListener("DOMContentLoaded", () => wire(document));
document.addEventListener("htmx:load", (event) => wire(event.detail.elt));
