// The ACL editor: an <input data-acl-filter="<select id>"> narrows that select's
// options (and hides optgroups left empty) as the administrator types.
function wireFilter(input) {
  const select = document.getElementById(input.dataset.aclFilter);
  if (!select || input.dataset.wired) return;
  input.dataset.wired = "1";
  input.addEventListener("input", () => {
    const words = input.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
    for (const group of select.querySelectorAll("optgroup")) {
      let shown = 0;
      for (const option of group.querySelectorAll("option")) {
        const text = option.value.toLowerCase();
        const match = words.every((w) => text.includes(w));
        option.hidden = !match;
        if (match) shown += 1;
      }
      group.hidden = shown === 0;
    }
    const selected = select.selectedOptions[0];
    if (selected && selected.hidden) select.value = "";
  });
}

function wire(root) {
  for (const input of root.querySelectorAll("input[data-acl-filter]")) wireFilter(input);
}

document.addEventListener("DOMContentLoaded", () => wire(document));
document.addEventListener("htmx:load", (event) => wire(event.detail.elt));
