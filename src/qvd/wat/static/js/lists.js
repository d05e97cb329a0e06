// Lists: "select all on this page" and the count of selected rows of form#mass, wired
// on load and after every htmx swap of the list region (no inline script: CSP).
function rowBoxes(form) {
  return [...form.querySelectorAll("input[data-select-row]")];
}

function update(form) {
  const boxes = rowBoxes(form);
  const ticked = boxes.filter((box) => box.checked).length;
  const all = form.querySelector("input[data-select-all]");
  if (all) {
    all.checked = boxes.length > 0 && ticked === boxes.length;
    all.indeterminate = ticked > 0 && ticked < boxes.length;
  }
  const count = form.querySelector("[data-selected-count]");
  if (count) count.textContent = ticked ? `(${ticked})` : "";
}

function wire(root) {
  const forms = root.matches && root.matches("form#mass") ? [root] : root.querySelectorAll("form#mass");
  for (const form of forms) {
    if (form.dataset.wired) continue;
    form.dataset.wired = "1";
    form.addEventListener("change", (event) => {
      const target = event.target;
      if (target.matches("input[data-select-all]")) {
        for (const box of rowBoxes(form)) box.checked = target.checked;
      }
      update(form);
    });
    update(form);
  }
}

document.addEventListener("DOMContentLoaded", () => wire(document));
document.addEventListener("htmx:load", (event) => wire(event.detail.elt));
