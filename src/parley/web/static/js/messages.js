// One message on screen (MessageView) and the thread (Thread): a window of message views over the
// loaded history, so that a conversation of thousands of messages keeps a bounded DOM. Scrolling up
// renders older messages (fetching more when the loaded ones run out); nodes far below are dropped.

import { renderInto } from "./markdown.js";
import { textOf } from "./parts.js";
import { elicitationCard, toolCard } from "./tools.js";
import { h, icon, tokensLabel } from "./util.js";

export const PAGE = 40;
export const MAX_NODES = 160;
const EDGE = 800;

const STATUS_LABEL = {
  cancelled: "Stopped",
  error: "Error",
  interrupted: "Interrupted",
  awaiting: "Waiting for you",
};

// A reply in one of these states asks nothing any more: an approval it shows was never answered.
const ENDED = new Set(["complete", "cancelled", "error", "interrupted"]);

function actionButton(name, title, onclick) {
  return h("button", { type: "button", class: "act", title, "aria-label": title, "data-act": name, onclick }, icon(name));
}

function fileNode(part) {
  const url = String(part.url || "");
  const safe = /^(https?:|data:image\/|blob:)/i.test(url);
  if (safe && (part.mediaType || "").startsWith("image/")) {
    return h("img", { class: "attachment-img", src: url, alt: part.filename || "image", loading: "lazy" });
  }
  return h("span", { class: "attachment" }, icon("copy"), part.filename || part.mediaType || "file");
}

export class MessageView {
  constructor(message, ctx) {
    this.message = message;
    this.ctx = ctx;
    this.partNodes = [];
    this.dirty = new Set();
    this.frame = 0;
    this.editing = false;
    this.node = h("article", { class: `msg msg-${message.role}` });
    this.render();
  }

  get isUser() {
    return this.message.role === "user";
  }

  render() {
    const m = this.message;
    this.node.dataset.id = m.id;
    this.node.dataset.status = m.status || "complete";
    this.body = h("div", { class: "msg-body" });
    this.noteBox = h("div", { class: "msg-note", role: "status", hidden: true });
    this.errorBox = h("div", { class: "msg-error", role: "alert", hidden: true });
    this.foot = h("div", { class: "msg-foot" });
    const main = h("div", { class: "msg-main" }, this.body, this.noteBox, this.errorBox, this.foot);
    const avatar = this.isUser ? null : h("div", { class: "msg-avatar" }, h("span", { class: "logo" }));
    this.node.replaceChildren(...[avatar, main].filter(Boolean));
    this.partNodes = [];
    if (this.editing) this.renderEditor();
    else this.renderParts();
    this.renderFooter();
  }

  renderParts() {
    const parts = this.message.parts || [];
    if (this.isUser) {
      const files = parts.filter((p) => p.type === "file").map(fileNode);
      const text = textOf(this.message);
      this.body.replaceChildren(...files, ...(text || !files.length ? [h("div", { class: "bubble" }, text)] : []));
      return;
    }
    this.body.replaceChildren();
    parts.forEach((_, i) => this.body.append(this.partNode(i)));
  }

  partNode(index) {
    const part = this.message.parts[index];
    let node;
    if (part.type === "text") {
      node = h("div", { class: "md" });
      renderInto(node, part.text, this.ctx.copy);
    } else if (part.type === "reasoning") {
      node = h("details", { class: "reasoning" }, h("summary", {}, "Thinking"), h("div", { class: "reasoning-text" }, part.text));
      node.open = this.message.status === "streaming";
    } else if (part.type === "dynamic-tool" || part.type?.startsWith("tool-")) {
      const previous = this.partNodes[index];
      const open = previous ? previous.querySelector("details")?.open : false;
      node = toolCard(part, {
        open,
        canAnswer: this.ctx.canAnswer(part),
        stale: ENDED.has(this.message.status),
        server: this.ctx.serverOf(part),
        answer: (approved, remember) => this.ctx.answerApproval(this.message, part, approved, remember),
      });
    } else if (part.type === "x-elicitation") {
      node = elicitationCard(part, { respond: (action, content) => this.ctx.answerElicitation(part, action, content) });
      node.dataset.state = part.state;
    } else if (part.type === "file") {
      node = fileNode(part);
    } else {
      node = h("span", { hidden: true });
    }
    this.partNodes[index] = node;
    return node;
  }

  /** A part changed (live): text is re-rendered at most once a frame. */
  updatePart(index) {
    if (this.isUser) return this.render();
    const part = this.message.parts[index];
    if (!this.partNodes[index]) {
      for (let i = this.partNodes.length; i <= index; i++) this.body.append(this.partNode(i));
    } else if (part.type === "text" || part.type === "reasoning") {
      this.dirty.add(index);
      this.frame ||= requestAnimationFrame(() => this.flush());
    } else if (part.type !== "x-elicitation" || this.partNodes[index].dataset.state !== part.state) {
      const old = this.partNodes[index];
      old.replaceWith(this.partNode(index));
    }
    this.node.dataset.status = this.message.status || "complete";
  }

  flush() {
    this.frame = 0;
    for (const index of this.dirty) {
      const part = this.message.parts[index];
      const node = this.partNodes[index];
      if (!part || !node) continue;
      if (part.type === "text") renderInto(node, part.text, this.ctx.copy);
      else node.querySelector(".reasoning-text").textContent = part.text;
    }
    this.dirty.clear();
    this.ctx.afterRender();
  }

  renderFooter() {
    const m = this.message;
    this.node.dataset.status = m.status || "complete";
    const busy = this.ctx.isBusy();
    const temp = String(m.id).startsWith("tmp-");
    const items = [];
    const siblings = m.siblings || [];
    if (siblings.length > 1 && !temp) {
      const at = Math.max(0, siblings.indexOf(m.id));
      items.push(
        h(
          "span",
          { class: "branches", "aria-label": "Branches" },
          actionButton("left", "Previous branch", () => this.ctx.switchBranch(m, siblings[at - 1])),
          h("span", { class: "branch-pos" }, `${at + 1}/${siblings.length}`),
          actionButton("right", "Next branch", () => this.ctx.switchBranch(m, siblings[at + 1])),
        ),
      );
      const [prev, next] = items[0].querySelectorAll("button");
      prev.disabled = busy || at === 0;
      next.disabled = busy || at === siblings.length - 1;
    }
    const actions = h("span", { class: "actions" });
    actions.append(actionButton("copy", "Copy", () => this.ctx.copy(textOf(m))));
    if (this.isUser) actions.append(actionButton("edit", "Edit", () => this.startEdit()));
    else actions.append(actionButton("regenerate", "Regenerate", () => this.ctx.regenerate(m)));
    actions.append(actionButton("fork", "Fork from here", () => this.ctx.fork(m)));
    for (const b of actions.querySelectorAll("button")) {
      if (b.dataset.act !== "copy") b.disabled = busy || temp;
    }
    items.push(actions);
    const meta = h("span", { class: "meta" });
    if (STATUS_LABEL[m.status]) meta.append(h("span", { class: `badge badge-${m.status}` }, STATUS_LABEL[m.status]));
    if (!this.isUser && m.usage?.total_tokens) {
      const u = m.usage;
      meta.append(h("span", { class: "usage", title: `prompt ${u.prompt_tokens} · completion ${u.completion_tokens}` }, tokensLabel(u)));
    }
    if (!this.isUser && m.model) meta.append(h("span", { class: "model" }, m.model));
    items.push(meta);
    this.foot.replaceChildren(...items);
    const error = m.status === "error" ? m.error?.message || "The reply failed." : "";
    this.errorBox.hidden = !error;
    this.errorBox.replaceChildren(...(error ? [icon("alert"), h("span", {}, error)] : []));
    const notice = noticeOf(m);
    this.noteBox.hidden = !notice;
    this.noteBox.replaceChildren(...(notice ? [icon("alert"), h("span", {}, notice)] : []));
  }

  startEdit() {
    if (this.ctx.isBusy()) return;
    this.editing = true;
    this.render();
  }

  renderEditor() {
    const area = h("textarea", { class: "edit-area", rows: 3, "aria-label": "Edit message" });
    area.value = textOf(this.message);
    const cancel = () => {
      this.editing = false;
      this.render();
    };
    const save = () => {
      const text = area.value.trim();
      if (!text) return;
      this.editing = false;
      this.ctx.edit(this.message, text);
    };
    area.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        save();
      } else if (e.key === "Escape") {
        e.stopPropagation();
        cancel();
      }
    });
    const bar = h(
      "div",
      { class: "edit-bar" },
      h("button", { type: "button", class: "btn btn-sm", onclick: cancel }, "Cancel"),
      h("button", { type: "button", class: "btn btn-primary btn-sm", onclick: save }, "Send"),
    );
    this.body.replaceChildren(h("div", { class: "editor" }, area, bar));
    queueMicrotask(() => {
      area.focus();
      area.setSelectionRange(area.value.length, area.value.length);
    });
  }
}

export class Thread {
  constructor(scroller, container, ctx) {
    this.scroller = scroller;
    this.container = container;
    this.ctx = ctx;
    this.messages = [];
    this.views = new Map();
    this.hasMore = false;
    this.start = 0;
    this.end = 0;
    this.loading = false;
    this.stick = true;
    this.ticking = false;
    this.lastTop = 0;
    scroller.addEventListener("scroll", () => this.onScroll(), { passive: true });
    // A wheel turned up lets go of the bottom at once, before the scroll it causes is reported.
    scroller.addEventListener("wheel", (e) => e.deltaY < 0 && this.letGo(), { passive: true });
  }

  // ---- rendering the window -------------------------------------------------------------------

  viewFor(message) {
    let view = this.views.get(message.id);
    if (!view) {
      view = new MessageView(message, this.ctx);
      this.views.set(message.id, view);
    }
    return view;
  }

  drop(message) {
    const view = this.views.get(message.id);
    if (view) {
      view.node.remove();
      this.views.delete(message.id);
    }
  }

  /** Show `messages` (oldest first), scrolled to the newest. */
  reset(messages, hasMore) {
    this.views.clear();
    this.container.replaceChildren();
    this.messages = messages;
    this.hasMore = hasMore;
    this.end = messages.length;
    this.start = Math.max(0, this.end - PAGE);
    const nodes = this.messages.slice(this.start, this.end).map((m) => this.viewFor(m).node);
    this.container.append(...nodes);
    this.stick = true;
    this.toBottom();
    this.ctx.onStick(true); // a new window starts at its bottom, whether or not it scrolls
    this.ctx.onWindow();
  }

  showLatest() {
    if (this.end === this.messages.length) return this.toBottom();
    this.reset(this.messages, this.hasMore);
  }

  toBottom() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
    this.lastTop = this.scroller.scrollTop;
  }

  letGo() {
    const s = this.scroller;
    if (!this.stick || s.scrollHeight <= s.clientHeight + 2) return;
    this.stick = false;
    this.ctx.onStick(false);
  }

  /** Render older messages above the window (fetching a page when none are left in memory). */
  async older() {
    if (this.loading) return;
    if (this.start === 0) {
      if (!this.hasMore || !this.messages.length) return;
      this.loading = true;
      try {
        const page = await this.ctx.loadOlder(this.messages[0].id);
        if (!page) return;
        this.messages.unshift(...page.items);
        this.start += page.items.length;
        this.end += page.items.length;
        this.hasMore = page.has_more;
      } finally {
        this.loading = false;
      }
    }
    const from = Math.max(0, this.start - PAGE);
    const nodes = this.messages.slice(from, this.start).map((m) => this.viewFor(m).node);
    const height = this.scroller.scrollHeight;
    const top = this.scroller.scrollTop;
    this.container.prepend(...nodes);
    this.start = from;
    this.scroller.scrollTop = top + (this.scroller.scrollHeight - height);
    this.lastTop = this.scroller.scrollTop;
    while (this.end - this.start > MAX_NODES) this.drop(this.messages[--this.end]);
    this.ctx.onWindow();
  }

  /** Render newer messages below the window (after scrolling back down). */
  newer() {
    if (this.end >= this.messages.length) return;
    const to = Math.min(this.messages.length, this.end + PAGE);
    this.container.append(...this.messages.slice(this.end, to).map((m) => this.viewFor(m).node));
    this.end = to;
    this.trimTop();
    this.ctx.onWindow();
  }

  trimTop() {
    if (this.end - this.start <= MAX_NODES) return;
    const height = this.scroller.scrollHeight;
    const top = this.scroller.scrollTop;
    while (this.end - this.start > MAX_NODES) this.drop(this.messages[this.start++]);
    this.scroller.scrollTop = top - (height - this.scroller.scrollHeight);
    this.lastTop = this.scroller.scrollTop;
  }

  /** Follow the bottom only while the person is there: decided at once, in the scroll event, so
   * that a token's scroll to the bottom (in the next frame) never overrides a scroll up. */
  onScroll() {
    const s = this.scroller;
    const below = s.scrollHeight - s.scrollTop - s.clientHeight;
    const up = s.scrollTop < this.lastTop - 1;
    this.lastTop = s.scrollTop;
    const atEnd = this.end === this.messages.length;
    if (!atEnd || (up && below > 2)) this.stick = false;
    else if (below < 80) this.stick = true;
    if (this.ticking) return;
    this.ticking = true;
    requestAnimationFrame(() => {
      this.ticking = false;
      this.ctx.onStick(this.stick);
      const below = s.scrollHeight - s.scrollTop - s.clientHeight;
      if (s.scrollTop < EDGE && (this.start > 0 || this.hasMore)) {
        this.older().then(() => this.recheck());
      } else if (below < EDGE && this.end < this.messages.length) {
        this.newer();
        this.recheck();
      }
    });
  }

  recheck() {
    requestAnimationFrame(() => this.onScroll());
  }

  // ---- changes --------------------------------------------------------------------------------

  /** Add a message at the end; the window jumps to the end if it was elsewhere. */
  push(message) {
    const atEnd = this.end === this.messages.length;
    this.messages.push(message);
    if (!atEnd) return this.reset(this.messages, this.hasMore);
    this.container.append(this.viewFor(message).node);
    this.end = this.messages.length;
    this.trimTop();
    this.stick = true;
    this.toBottom();
  }

  /** Drop the messages from `id` on (a regenerate or an edit replaces them). */
  truncateFrom(id) {
    const index = this.messages.findIndex((m) => m.id === id);
    if (index === -1) return;
    for (const m of this.messages.slice(index)) this.drop(m);
    this.messages.length = index;
    this.end = Math.min(this.end, index);
    this.start = Math.min(this.start, this.end);
    if (this.end < this.messages.length || this.start === this.end) this.reset(this.messages, this.hasMore);
  }

  find(id) {
    return this.messages.find((m) => m.id === id) || null;
  }

  rename(oldId, newId) {
    const view = this.views.get(oldId);
    const message = this.find(oldId);
    if (message) message.id = newId;
    if (view) {
      this.views.delete(oldId);
      this.views.set(newId, view);
      view.node.dataset.id = newId;
    }
  }

  /** Replace a message's data (after the server's final word) and redraw it if shown. */
  replace(message) {
    const index = this.messages.findIndex((m) => m.id === message.id);
    if (index === -1) return;
    const view = this.views.get(message.id);
    this.messages[index] = message;
    if (view) {
      view.message = message;
      view.render();
      this.follow();
    }
  }

  updatePart(message, index) {
    this.views.get(message.id)?.updatePart(index);
    this.follow();
  }

  updateFooter(message) {
    this.views.get(message.id)?.renderFooter();
    this.follow();
  }

  redrawFooters() {
    for (const view of this.views.values()) if (!view.editing) view.renderFooter();
  }

  follow() {
    if (this.stick) requestAnimationFrame(() => this.stick && this.toBottom());
  }

  get domCount() {
    return this.container.childElementCount;
  }
}

/** Why a reply stopped early, e.g. at the step limit (a stored `data-notice` part, or one that
 * just streamed in), or what a streaming reply waits for: said beside it, not as an error. */
function noticeOf(message) {
  const part = (message.parts || []).findLast((p) => p.type === "data-notice");
  const waiting = message.status === "streaming" ? message.waiting : "";
  return message.notice || part?.data?.message || waiting || "";
}
