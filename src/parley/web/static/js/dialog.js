// A modal dialog (the browser's own <dialog>): a title, a body, a close button; Escape and a click
// beside it close it. Escape is taken here, so it does not also stop a running reply.

import { h, icon } from "./util.js";

/**
 * Open a dialog; `body` is a node (a form, a list). Returns `{node, close}`; `onClose` runs once
 * when it closes, however it closes. The dialog is removed from the page then.
 */
export function openDialog({ id, title, body, onClose = () => {} }) {
  const close = h("button", { type: "button", class: "icon-btn", title: "Close", "aria-label": "Close" }, icon("x"));
  const heading = h("h2", { class: "dialog-title", id: `${id}-title` }, title);
  const node = h(
    "dialog",
    { class: "dialog", id, "aria-labelledby": heading.id },
    h("div", { class: "dialog-head" }, heading, close),
    body,
  );
  const done = () => node.close();
  close.addEventListener("click", done);
  node.addEventListener("keydown", (e) => {
    if (e.key !== "Escape") return;
    e.preventDefault();
    e.stopPropagation();
    done();
  });
  node.addEventListener("click", (e) => {
    if (e.target === node) done(); // the backdrop: the dialog's own box, outside its content
  });
  node.addEventListener("close", () => {
    node.remove();
    onClose();
  });
  document.body.append(node);
  node.showModal();
  return { node, close: done };
}
