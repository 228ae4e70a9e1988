// The conversation list: newest first, searched by the server (a result shows where it matched),
// paged with next_cursor; rename in place, archive (archived ones under a collapsible "Archived",
// loaded when it is opened), delete with an inline confirmation. It lists the caller's own
// conversations ("My chats", outside any project) or, once scoped, a project's (for its admins
// with the row actions, which need that role).

import { enc } from "./api.js";
import { debounce, h, icon, relativeDay, toast } from "./util.js";

export class Sidebar {
  /**
   * @param {import("./api.js").Api} api
   * @param {{open: (id: string) => void, deleted: (id: string) => void, renamed: (c: object) => void}} ctx
   */
  constructor(api, ctx) {
    this.api = api;
    this.ctx = ctx;
    this.nav = document.getElementById("conversations");
    this.search = document.getElementById("search");
    this.items = [];
    this.cursor = null;
    this.query = "";
    this.activeId = null;
    this.project = null; // {id, role} of the project listed; null: the caller's own
    this.loading = false;
    this.generation = 0;
    this.archived = { items: [], cursor: null, loaded: false, loading: false };
    this.archivedList = h("div", { class: "conv-archived-list" });
    this.archivedMore = h("button", { type: "button", class: "btn btn-sm conv-more", hidden: true }, "Show more");
    this.archivedBox = h(
      "details",
      { class: "conv-archived", id: "archived" },
      h("summary", { class: "conv-group" }, icon("right", "chev"), "Archived"),
      this.archivedList,
      this.archivedMore,
    );
    this.archivedBox.addEventListener("toggle", () => {
      if (this.archivedBox.open && !this.archived.loaded) this.fetchArchived();
    });
    this.archivedMore.addEventListener("click", () => this.fetchArchived());
    this.search.addEventListener(
      "input",
      debounce(() => this.load(this.search.value.trim()), 250),
    );
    this.nav.addEventListener("scroll", () => {
      const n = this.nav;
      if (n.scrollHeight - n.scrollTop - n.clientHeight < 200) this.more();
    });
  }

  /** List `project`'s conversations (null: the caller's own), searched as before. */
  scope(project) {
    this.project = project;
    this.archived = { items: [], cursor: null, loaded: false, loading: false };
    this.archivedBox.open = false;
    this.load();
  }

  /** The query of a page of `status` (of the listed project's, when scoped). */
  params(status, cursor) {
    const params = new URLSearchParams({ status, limit: "30" });
    if (cursor) params.set("cursor", cursor);
    if (this.project) params.set("project_id", this.project.id);
    return params;
  }

  async load(query = this.query) {
    this.query = query;
    this.cursor = null;
    this.items = [];
    const generation = ++this.generation;
    await this.fetchPage(generation);
  }

  async more() {
    if (!this.cursor || this.loading) return;
    await this.fetchPage(this.generation);
  }

  async fetchPage(generation) {
    this.loading = true;
    try {
      const params = this.params("active", this.cursor);
      if (this.query) params.set("q", this.query);
      const page = await this.api.get(`/api/conversations?${params}`);
      if (generation !== this.generation) return;
      this.items.push(...page.items);
      this.cursor = page.next_cursor;
      this.render();
    } catch (error) {
      if (error.status !== 401) toast(`Could not list conversations: ${error.message}`, "error");
    } finally {
      this.loading = false;
    }
  }

  setActive(id) {
    this.activeId = id;
    for (const node of this.nav.querySelectorAll(".conv")) {
      node.classList.toggle("active", node.dataset.id === id);
      node.querySelector(".conv-open")?.toggleAttribute("aria-current", node.dataset.id === id);
    }
  }

  /** The next page of archived conversations (the first when the section is opened). */
  async fetchArchived() {
    const archived = this.archived;
    if (archived.loading || (archived.loaded && !archived.cursor)) return;
    archived.loading = true;
    try {
      const params = this.params("archived", archived.cursor);
      const page = await this.api.get(`/api/conversations?${params}`);
      const known = new Set(archived.items.map((c) => c.id));
      archived.items.push(...page.items.filter((c) => !known.has(c.id)));
      archived.cursor = page.next_cursor;
      archived.loaded = true;
      this.renderArchived();
    } catch (error) {
      if (error.status !== 401) toast(`Could not list archived conversations: ${error.message}`, "error");
    } finally {
      archived.loading = false;
    }
  }

  /** A conversation was created or changed: put it first in its list (unless a search hides it). */
  upsert(convo) {
    if ((convo.project_id || null) !== (this.project?.id || null)) return; // another list's
    this.items = this.items.filter((c) => c.id !== convo.id);
    this.archived.items = this.archived.items.filter((c) => c.id !== convo.id);
    if (convo.status === "archived") {
      if (this.archived.loaded) this.archived.items.unshift(convo);
    } else if (!this.query) {
      this.items.unshift(convo);
    }
    this.render();
  }

  render() {
    const groups = new Map();
    for (const convo of this.items) {
      const label = this.query ? "Results" : relativeDay(convo.updated_at);
      if (!groups.has(label)) groups.set(label, []);
      groups.get(label).push(convo);
    }
    const nodes = [];
    for (const [label, convos] of groups) {
      nodes.push(h("div", { class: "conv-group" }, label));
      for (const convo of convos) nodes.push(this.item(convo));
    }
    if (!this.items.length) {
      const none = this.project ? "No chats in this project yet." : "No conversations yet.";
      nodes.push(h("div", { class: "conv-empty muted" }, this.query ? "Nothing matches." : none));
    }
    if (!this.query) nodes.push(this.archivedBox);
    this.nav.replaceChildren(...nodes);
    this.renderArchived();
  }

  renderArchived() {
    const rows = this.archived.items.map((convo) => this.item(convo));
    if (this.archived.loaded && !rows.length) rows.push(h("div", { class: "conv-empty muted" }, "Nothing archived."));
    this.archivedList.replaceChildren(...rows);
    this.archivedMore.hidden = !this.archived.cursor;
    this.setActive(this.activeId);
  }

  item(convo) {
    const title = convo.title || "New chat";
    const snippet = this.query && convo.match?.snippet ? snippetNode(convo.match, this.query) : null;
    const open = h("a", { class: "conv-open", href: `#/c/${enc(convo.id)}`, title }, h("span", { class: "conv-title" }, title), snippet);
    const rename = h("button", { type: "button", class: "act", title: "Rename", "aria-label": `Rename ${title}` }, icon("edit"));
    const archived = convo.status === "archived";
    const verb = archived ? "Unarchive" : "Archive";
    const archive = h("button", { type: "button", class: "act", title: verb, "aria-label": `${verb} ${title}` }, icon(verb.toLowerCase()));
    const remove = h("button", { type: "button", class: "act", title: "Delete", "aria-label": `Delete ${title}` }, icon("trash"));
    const manage = !this.project || this.project.role === "admin"; // a project's chats are its admins' to change
    const acts = manage ? h("span", { class: "conv-acts" }, rename, archive, remove) : null;
    const row = h("div", { class: "conv", dataset: { id: convo.id } }, open, acts);
    rename.addEventListener("click", () => this.startRename(row, convo));
    archive.addEventListener("click", () => this.setStatus(convo, archived ? "active" : "archived", archive));
    remove.addEventListener("click", () => this.confirmDelete(row, convo));
    return row;
  }

  /** Archive (status "archived") or restore (status "active") a conversation. */
  async setStatus(convo, status, button) {
    button.disabled = true;
    try {
      this.upsert(await this.api.patch(`/api/conversations/${enc(convo.id)}`, { status }));
    } catch (error) {
      button.disabled = false;
      toast(`Could not ${status === "archived" ? "archive" : "unarchive"}: ${error.message}`, "error");
    }
  }

  startRename(row, convo) {
    const input = h("input", { class: "conv-rename", type: "text", "aria-label": "New title", maxlength: 500 });
    input.value = convo.title || "";
    let done = false;
    const finish = async (save) => {
      if (done) return;
      done = true;
      const title = input.value.trim();
      if (save && title && title !== convo.title) await this.rename(convo, title);
      this.render();
    };
    input.addEventListener("keydown", (e) => {
      if (e.key === "Enter") finish(true);
      if (e.key === "Escape") {
        e.stopPropagation();
        finish(false);
      }
    });
    input.addEventListener("blur", () => finish(true));
    row.replaceChildren(input);
    input.focus();
    input.select();
  }

  async rename(convo, title) {
    try {
      const updated = await this.api.patch(`/api/conversations/${enc(convo.id)}`, { title });
      Object.assign(convo, updated);
      this.ctx.renamed(updated);
    } catch (error) {
      toast(`Could not rename: ${error.message}`, "error");
    }
  }

  confirmDelete(row, convo) {
    const yes = h("button", { type: "button", class: "btn btn-danger btn-sm" }, "Delete");
    const no = h("button", { type: "button", class: "btn btn-sm" }, "Cancel");
    row.replaceChildren(h("span", { class: "conv-confirm" }, "Delete this chat?"), yes, no);
    row.classList.add("confirming");
    no.addEventListener("click", () => this.render());
    yes.addEventListener("click", async () => {
      yes.disabled = true;
      try {
        await this.api.delete(`/api/conversations/${enc(convo.id)}`);
        this.items = this.items.filter((c) => c.id !== convo.id);
        this.archived.items = this.archived.items.filter((c) => c.id !== convo.id);
        this.render();
        this.ctx.deleted(convo.id);
      } catch (error) {
        toast(`Could not delete: ${error.message}`, "error");
        this.render();
      }
    });
    no.focus();
  }
}

/** Where a search matched (GET /api/conversations?q= gives each result's `match`), the words
 * searched for marked. */
function snippetNode(match, query) {
  const text = match.snippet;
  const node = h("span", { class: "conv-snippet" });
  if (match.role === "assistant") node.append(h("span", { class: "conv-snippet-who" }, "Reply: "));
  const lower = text.toLowerCase();
  const needle = query.toLowerCase();
  let at = 0;
  for (let found = lower.indexOf(needle); needle && found !== -1; found = lower.indexOf(needle, at)) {
    node.append(text.slice(at, found), h("mark", {}, text.slice(found, found + needle.length)));
    at = found + needle.length;
  }
  node.append(text.slice(at));
  return node;
}
