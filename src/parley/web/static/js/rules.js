// The tools that run without asking: the "Always allow" answers remembered on the server
// (GET /api/approval-rules), each with a button that revokes it (DELETE), after which the tool
// asks again.

import { enc } from "./api.js";
import { openDialog } from "./dialog.js";
import { h, toast } from "./util.js";

const SCOPES = { tool: "this tool", server: "every tool of this server" };

function when(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? "" : `since ${date.toLocaleDateString()}`;
}

function emptyNote() {
  return h(
    "p",
    { class: "rules-empty muted" },
    "No tool runs without asking. “Always allow” on a tool's approval adds it here.",
  );
}

/** The list, fetched when it opens. */
export async function showRules(api) {
  let items;
  try {
    items = (await api.get("/api/approval-rules")).items || [];
  } catch (error) {
    toast(`Could not list the tools that run without asking: ${error.message}`, "error");
    return;
  }
  const list = h("ul", { class: "rules" });
  const refresh = () => {
    if (!list.children.length) list.replaceWith(emptyNote());
  };
  for (const rule of items) list.append(row(api, rule, refresh));
  const intro = h("p", { class: "muted small" }, "These run without asking you first. Revoke one and it asks again.");
  const body = h("div", { class: "dialog-body" }, intro, items.length ? list : emptyNote());
  openDialog({ id: "rules-dialog", title: "Tools that run without asking", body });
}

function row(api, rule, refresh) {
  const revoke = h("button", { type: "button", class: "btn btn-sm", "aria-label": `Revoke ${rule.name}` }, "Revoke");
  const item = h(
    "li",
    { class: "rule", dataset: { id: rule.id } },
    h("div", { class: "rule-what" }, h("code", { class: "rule-name" }, rule.name), h("span", { class: "muted small" }, `${SCOPES[rule.scope] || rule.scope} · ${when(rule.created_at)}`)),
    revoke,
  );
  revoke.addEventListener("click", async () => {
    revoke.disabled = true;
    try {
      await api.delete(`/api/approval-rules/${enc(rule.id)}`);
    } catch (error) {
      if (error.status !== 404) {
        revoke.disabled = false;
        toast(`Could not revoke: ${error.message}`, "error");
        return;
      }
    }
    item.remove();
    refresh();
    toast(`${rule.name} asks for your approval again.`, "info");
  });
  return item;
}
