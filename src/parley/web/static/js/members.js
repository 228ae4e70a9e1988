// A project's members dialog (GET /api/projects/{id}): who is in it, with which role. An admin adds
// a member by user id, changes a role, takes a member out (PUT and DELETE …/members/{user_id}),
// renames the project or deletes it with its chats; everyone else sees the list only. What the
// API refuses (a 403 after the caller lost their role, the 409 of a project's last admin) is said
// in the dialog.

import { enc } from "./api.js";
import { openDialog } from "./dialog.js";
import { h, toast } from "./util.js";

export const ROLES = ["read", "write", "deploy", "admin"];
const MAY = {
  read: "reads its chats",
  write: "also sends",
  deploy: "as write",
  admin: "also manages members and the project",
};

function roleSelect(label, value) {
  const select = h("select", { class: "picker-input member-role", "aria-label": label }, ROLES.map((r) => h("option", { value: r, title: MAY[r] }, r)));
  select.value = value;
  return select;
}

/**
 * Open the dialog of project `id`; `ctx.changed()` runs after a change the project list may show
 * (a name, the caller's own role), `ctx.deleted()` after the project is deleted.
 */
export async function showMembers(api, id, ctx) {
  let project;
  try {
    project = await api.get(`/api/projects/${enc(id)}`);
  } catch (error) {
    if (error.status !== 401) toast(`Could not open the project: ${error.message}`, "error");
    return;
  }
  new MembersDialog(api, project, ctx).open();
}

class MembersDialog {
  constructor(api, project, ctx) {
    this.api = api;
    this.project = project;
    this.ctx = ctx;
    this.admin = project.role === "admin";
    this.path = `/api/projects/${enc(project.id)}`;
    this.list = h("ul", { class: "rules members" });
    this.message = h("p", { class: "error-text", role: "alert", hidden: true });
    this.dialog = null;
  }

  open() {
    const intro = this.admin
      ? "Members reach every chat of the project: read reads, write also sends, admin also manages members."
      : `You have the ${this.project.role} role here: only an admin of the project changes its members.`;
    const body = h(
      "div",
      { class: "dialog-body" },
      this.admin ? this.nameForm() : null,
      h("p", { class: "muted small" }, intro),
      this.list,
      this.admin ? this.addForm() : null,
      this.message,
      this.admin ? this.deleteRow() : null,
    );
    this.dialog = openDialog({ id: "members-dialog", title: this.title(), body });
    this.renderList();
  }

  title() {
    return `${this.project.name} · members`;
  }

  say(text) {
    this.message.textContent = text;
    this.message.hidden = !text;
  }

  /** Run an API call; on failure say why in the dialog and give false. */
  async call(request, what) {
    this.say("");
    try {
      return (await request()) ?? true;
    } catch (error) {
      if (error.status !== 401) this.say(`Could not ${what}: ${error.message}`);
      return false;
    }
  }

  renderList() {
    this.list.replaceChildren(...this.project.members.map((m) => this.row(m)));
  }

  row(member) {
    const who = h(
      "div",
      { class: "rule-what" },
      h("span", { class: "rule-name member-id" }, member.user_id),
      h("span", { class: "muted small" }, MAY[member.role] || ""),
    );
    const item = h("li", { class: "rule member", dataset: { user: member.user_id } }, who);
    if (!this.admin) {
      item.append(h("span", { class: "badge member-role" }, member.role));
      return item;
    }
    const select = roleSelect(`Role of ${member.user_id}`, member.role);
    select.addEventListener("change", () => this.setRole(member, select));
    const remove = h("button", { type: "button", class: "btn btn-sm", "aria-label": `Remove ${member.user_id}` }, "Remove");
    remove.addEventListener("click", () => this.remove(member, remove));
    item.append(select, remove);
    return item;
  }

  async setRole(member, select) {
    select.disabled = true;
    const path = `${this.path}/members/${enc(member.user_id)}`;
    const saved = await this.call(() => this.api.put(path, { role: select.value }), `change the role of ${member.user_id}`);
    select.disabled = false;
    if (!saved) {
      select.value = member.role;
      return;
    }
    member.role = saved.role;
    this.renderList();
    this.ctx.changed();
  }

  async remove(member, button) {
    button.disabled = true;
    const path = `${this.path}/members/${enc(member.user_id)}`;
    if (!(await this.call(() => this.api.delete(path), `remove ${member.user_id}`))) {
      button.disabled = false;
      return;
    }
    this.project.members = this.project.members.filter((m) => m.user_id !== member.user_id);
    this.renderList();
    this.ctx.changed();
  }

  addForm() {
    const user = h("input", { name: "user_id", required: true, maxlength: 255, placeholder: "User id (their sign-in name)", "aria-label": "User id", spellcheck: "false", autocapitalize: "off" });
    const role = roleSelect("Role of the new member", "write");
    const add = h("button", { type: "submit", class: "btn btn-sm btn-primary" }, "Add");
    const form = h("form", { class: "member-add" }, user, role, add);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const id = user.value.trim();
      if (!id) return;
      add.disabled = true;
      const path = `${this.path}/members/${enc(id)}`;
      const saved = await this.call(() => this.api.put(path, { role: role.value }), `add ${id}`);
      add.disabled = false;
      if (!saved) return;
      this.project.members = [...this.project.members.filter((m) => m.user_id !== id), saved];
      this.renderList();
      user.value = "";
      this.ctx.changed();
    });
    return form;
  }

  nameForm() {
    const name = h("input", { name: "name", required: true, maxlength: 200, "aria-label": "Project name" });
    name.value = this.project.name;
    const save = h("button", { type: "submit", class: "btn btn-sm" }, "Rename");
    const form = h("form", { class: "member-add" }, name, save);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const value = name.value.trim();
      if (!value || value === this.project.name) return;
      save.disabled = true;
      const saved = await this.call(() => this.api.patch(this.path, { name: value }), "rename the project");
      save.disabled = false;
      if (!saved) return;
      this.project.name = saved.name;
      this.dialog.node.querySelector(".dialog-title").textContent = this.title();
      this.ctx.changed();
    });
    return form;
  }

  deleteRow() {
    const box = h("div", { class: "dialog-actions" });
    const ask = () => {
      const start = h("button", { type: "button", class: "btn btn-sm btn-danger" }, "Delete project");
      start.addEventListener("click", confirm);
      box.replaceChildren(h("span", { class: "muted small" }, "Deleting the project deletes all its chats."), start);
    };
    const confirm = () => {
      const yes = h("button", { type: "button", class: "btn btn-sm btn-danger" }, "Delete");
      const no = h("button", { type: "button", class: "btn btn-sm" }, "Cancel");
      no.addEventListener("click", ask);
      yes.addEventListener("click", async () => {
        yes.disabled = true;
        if (!(await this.call(() => this.api.delete(this.path), "delete the project"))) return ask();
        this.dialog.close();
        toast(`${this.project.name} and its chats were deleted.`, "info");
        this.ctx.deleted();
      });
      box.replaceChildren(h("span", { class: "conv-confirm" }, `Delete ${this.project.name} and all its chats?`), no, yes);
      no.focus();
    };
    ask();
    return box;
  }
}
