// Files to send with the next message: a button, drag and drop on the composer, or an image
// pasted into it. Each is read as a data: URL and checked against the server's limits
// (GET /api/limits) before it is added, so a file over them is refused here, saying which.

import { h, icon, toast } from "./util.js";

const DEFAULTS = { attachments: 10, attachment_bytes: 5_000_000 };

export function sizeLabel(bytes) {
  if (bytes < 1000) return `${bytes} B`;
  if (bytes < 1_000_000) return `${Math.round(bytes / 1000)} kB`;
  return `${(bytes / 1_000_000).toFixed(bytes < 10_000_000 ? 1 : 0).replace(/\.0$/, "")} MB`;
}

function read(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result));
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

export class Attachments {
  /** @param {import("./api.js").Api} api */
  constructor(api, { tray, picker, button, zone }) {
    this.api = api;
    this.tray = tray;
    this.picker = picker;
    this.button = button;
    this.zone = zone;
    this.files = [];
    this.limits = DEFAULTS;
    button.addEventListener("click", () => picker.click());
    picker.addEventListener("change", () => {
      this.add([...picker.files]);
      picker.value = "";
    });
    zone.addEventListener("dragover", (e) => {
      if (![...(e.dataTransfer?.types || [])].includes("Files")) return;
      e.preventDefault();
      zone.classList.add("dropping");
    });
    zone.addEventListener("dragleave", () => zone.classList.remove("dropping"));
    zone.addEventListener("drop", (e) => {
      zone.classList.remove("dropping");
      const files = [...(e.dataTransfer?.files || [])];
      if (!files.length) return;
      e.preventDefault();
      this.add(files);
    });
    zone.addEventListener("paste", (e) => {
      const files = [...(e.clipboardData?.files || [])].filter((f) => f.type.startsWith("image/"));
      if (!files.length) return;
      e.preventDefault();
      this.add(files);
    });
    this.render();
  }

  async loadLimits() {
    try {
      this.limits = { ...DEFAULTS, ...(await this.api.get("/api/limits")) };
    } catch {
      // an older server: the defaults, and the server's own 400 if they are wrong
    }
    this.render();
  }

  get rule() {
    const { attachments, attachment_bytes } = this.limits;
    return `up to ${attachments} files, ${sizeLabel(attachment_bytes)} each`;
  }

  async add(files) {
    for (const file of files) {
      if (this.files.length >= this.limits.attachments) {
        toast(`At most ${this.limits.attachments} files in one message.`, "error");
        break;
      }
      if (file.size > this.limits.attachment_bytes) {
        const name = file.name || "the file";
        toast(`${name} is ${sizeLabel(file.size)}: the limit is ${sizeLabel(this.limits.attachment_bytes)}.`, "error");
        continue;
      }
      let url;
      try {
        url = await read(file);
      } catch (error) {
        toast(`Could not read ${file.name}: ${error?.message || error}`, "error");
        continue;
      }
      const name = file.name || `pasted-${this.files.length + 1}.${(file.type.split("/")[1] || "bin").split("+")[0]}`;
      this.files.push({ name, type: file.type || "application/octet-stream", size: file.size, url });
      this.render();
    }
  }

  /** The files for the request body, and as the parts of the message shown at once; then none. */
  take() {
    const files = this.files;
    this.files = [];
    this.render();
    return {
      attachments: files.map((f) => ({ name: f.name, media_type: f.type, url: f.url })),
      parts: files.map((f) => ({ type: "file", mediaType: f.type, url: f.url, filename: f.name })),
    };
  }

  /** Put files back (the message was not sent). */
  restore(attachments) {
    if (this.files.length) return;
    this.files = attachments.map((a) => ({ name: a.name, type: a.media_type, size: 0, url: a.url }));
    this.render();
  }

  get count() {
    return this.files.length;
  }

  render() {
    this.button.title = `Attach files (${this.rule}; or drop them here, or paste an image)`;
    this.button.setAttribute("aria-label", `Attach files: ${this.rule}`);
    const chips = this.files.map((f, i) => {
      const preview = f.type.startsWith("image/") ? h("img", { class: "chip-thumb", src: f.url, alt: "" }) : icon("paperclip");
      const remove = h("button", { type: "button", class: "act", title: `Remove ${f.name}`, "aria-label": `Remove ${f.name}` }, icon("x"));
      remove.addEventListener("click", () => {
        this.files.splice(i, 1);
        this.render();
      });
      const size = f.size ? h("span", { class: "muted small" }, sizeLabel(f.size)) : null;
      return h("span", { class: "chip", dataset: { name: f.name } }, preview, h("span", { class: "chip-name" }, f.name), size, remove);
    });
    const rule = h("span", { class: "muted small tray-rule" }, `${this.files.length} of ${this.limits.attachments} · ${sizeLabel(this.limits.attachment_bytes)} each`);
    this.tray.replaceChildren(...(chips.length ? [...chips, rule] : []));
    this.tray.hidden = !chips.length;
  }
}
