// Projects (GET /api/projects): the sidebar's "Projects" section with the caller's role in each,
// the chosen project whose conversations the list shows (address #/p/{id}; a new chat made
// there starts in it), the way back to "My chats" (the caller's own conversations outside any
// project), and the composer of a member who may only read, closed with a note saying why.
// The members dialog is members.js.

import { enc } from "./api.js";
import { openDialog } from "./dialog.js";
import { showMembers } from "./members.js";
import { h, icon, toast } from "./util.js";

const PROJECT_HASH = /^#\/p\/([^/?#]+)/;

/** The address of a project's new chat, or of "My chats". */
const homeOf = (project) => (project ? `#/p/${enc(project.id)}` : "#/");

export class Projects {
  /** @param {import("./api.js").Api} api @param {import("./sidebar.js").Sidebar} sidebar */
  constructor(api, sidebar) {
    this.api = api;
    this.sidebar = sidebar;
    this.items = [];
    this.chosen = null; // the project whose conversations the list shows; null: "My chats"
    this.convo = null; // the open conversation (null: a new chat)
    this.box = document.getElementById("projects");
    this.chip = document.getElementById("project");
    this.note = document.getElementById("composer-note");
    this.chip.addEventListener("click", () => this.chosen && this.members(this.chosen.id));
  }

  /** The caller's projects, with their role in each (again after a change to one). */
  async load() {
    try {
      this.items = (await this.api.get("/api/projects")).items;
    } catch (error) {
      if (error.status !== 401) toast(`Could not list projects: ${error.message}`, "error");
      return;
    }
    const chosen = this.chosen && this.items.find((p) => p.id === this.chosen.id);
    if (chosen) this.chosen = chosen;
    else this.choose(null); // one the caller no longer reaches (or another user's, signed out)
    this.render();
  }

  /** Follow the address (one that names no conversation): `#/p/{id}` chooses that project,
   * any other "My chats". True when the page should show a new chat. */
  route(hash) {
    const id = hash.match(PROJECT_HASH)?.[1];
    const project = id ? this.items.find((p) => p.id === decodeURIComponent(id)) : null;
    if (id && !project) toast("That project is not among yours (any more).", "warn");
    return this.choose(project || null) || Boolean(id && !project);
  }

  /** Show `project`'s conversations in the list (null: "My chats"); true when that changed. */
  choose(project) {
    if ((project?.id || null) === (this.chosen?.id || null)) return false;
    this.chosen = project;
    this.sidebar.scope(project);
    this.render();
    return true;
  }

  /** Put the address of the current new chat (the chosen project's, or "My chats"). */
  settleHash(push = false) {
    const home = homeOf(this.chosen);
    if ((location.hash || "#/") === home) return;
    if (push) history.pushState(null, "", home);
    else history.replaceState(null, "", home);
  }

  /** What POST /api/conversations gets besides the settings: the chosen project. */
  newChatFields() {
    return this.chosen ? { project_id: this.chosen.id } : {};
  }

  /** The open conversation (null: a new chat) decides which list shows (a project's
   * conversation opened by its address shows its project's) and whether the composer sends. */
  show(convo) {
    this.convo = convo;
    const id = convo ? convo.project_id || null : this.chosen?.id || null;
    if (id !== (this.chosen?.id || null)) {
      const known = this.items.find((p) => p.id === id);
      this.choose(id ? known || { id, name: "Project", role: convo.role } : null);
      if (id && !known) this.load().then(() => this.show(this.convo)); // shared since the list loaded
    }
    if (convo?.role && this.chosen && convo.role !== this.chosen.role) {
      this.chosen.role = convo.role; // the server's word on opening it, newer than the list's
      this.render();
    }
    this.chip.hidden = !this.chosen;
    this.chip.querySelector(".project-name").textContent = this.chosen?.name || "";
    this.lock(this.chosen?.role === "read");
  }

  /** A member with the read role may read the project's chats but not send (the API says 403). */
  lock(locked) {
    document.body.classList.toggle("read-only", locked);
    const controls = ["#input", "#send", "#attach", "#composer .picker-input"];
    for (const node of document.querySelectorAll(controls.join(","))) node.disabled = locked;
    this.note.hidden = !locked;
    this.note.textContent = locked
      ? `You have the read role in ${this.chosen?.name || "this project"}: you can read its chats, not send. An admin of the project can give you the write role.`
      : "";
  }

  render() {
    const add = h("button", { type: "button", class: "icon-btn", id: "new-project", title: "New project", "aria-label": "New project" }, icon("plus"));
    add.addEventListener("click", () => this.create());
    const rows = this.items.map((project) => this.row(project));
    if (!rows.length) rows.push(h("div", { class: "conv-empty muted" }, "No projects yet. A project shares its chats with the people you add."));
    const scope = this.chosen
      ? h("div", { class: "proj-scope" }, h("a", { href: "#/", id: "my-chats", class: "proj-back" }, icon("left"), "My chats"), h("span", { class: "proj-scope-name" }, this.chosen.name))
      : h("div", { class: "proj-scope" }, h("span", { class: "proj-scope-name" }, "My chats"));
    this.box.replaceChildren(h("div", { class: "proj-head" }, h("span", {}, "Projects"), add), h("div", { class: "proj-list" }, rows), scope);
  }

  row(project) {
    const open = h(
      "a",
      { class: "conv-open proj-open", href: homeOf(project), title: project.name },
      h("span", { class: "proj-name" }, icon("folder"), h("span", { class: "conv-title" }, project.name)),
      h("span", { class: "badge proj-role" }, project.role),
    );
    const label = `Members of ${project.name}`;
    const members = h("button", { type: "button", class: "act", title: label, "aria-label": label }, icon("users"));
    members.addEventListener("click", () => this.members(project.id));
    const active = project.id === this.chosen?.id;
    return h("div", { class: `conv proj${active ? " active" : ""}`, dataset: { id: project.id } }, open, h("span", { class: "conv-acts" }, members));
  }

  members(id) {
    showMembers(this.api, id, { changed: () => this.refresh(), deleted: () => this.refresh() });
  }

  /** After a change in the dialog: the list again; a project the caller no longer reaches
   * (deleted, or they took themselves out) leaves for "My chats". */
  async refresh() {
    const before = this.chosen;
    await this.load();
    if (before && !this.chosen) {
      this.convo = null; // its conversation went with it: a new chat of "My chats"
      location.hash = "#/";
    }
    this.show(this.convo);
  }

  /** The "New project" dialog: a name and the instructions each of its chats gets. */
  create() {
    const name = h("input", { name: "name", required: true, maxlength: 200, placeholder: "Project name" });
    const instructions = h("textarea", { name: "instructions", rows: 4, placeholder: "None" });
    const message = h("p", { class: "error-text", role: "alert", hidden: true });
    const save = h("button", { type: "submit", class: "btn btn-primary" }, "Create");
    const form = h(
      "form",
      { class: "dialog-body" },
      h("label", { class: "field" }, h("span", {}, "Name"), name),
      h("label", { class: "field" }, h("span", {}, "Instructions"), instructions, h("span", { class: "help muted small" }, "Every chat of the project gets these first.")),
      message,
      h("div", { class: "dialog-actions" }, h("span", { class: "muted small" }, "You will be its admin."), save),
    );
    const dialog = openDialog({ id: "project-dialog", title: "New project", body: form });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      save.disabled = true;
      try {
        const body = { name: name.value.trim(), ...(instructions.value.trim() ? { instructions: instructions.value } : {}) };
        const project = await this.api.post("/api/projects", body);
        this.items.unshift(project);
        dialog.close();
        location.hash = homeOf(project);
      } catch (error) {
        message.textContent = `Could not create the project: ${error.message}`;
        message.hidden = false;
        save.disabled = false;
      }
    });
    queueMicrotask(() => name.focus());
  }
}
