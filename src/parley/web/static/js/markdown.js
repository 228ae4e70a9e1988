// Model text → Markdown → sanitised HTML. Nothing a model writes runs in the page: every render
// goes through DOMPurify, whatever marked and highlight.js made of it. Math is typeset after that
// (math.js).

import DOMPurify from "../vendor/purify.es.js";
import hljs from "../vendor/highlight.min.js";
import { Marked } from "../vendor/marked.esm.js";
import { mathExtension, renderMath } from "./math.js";
import { escapeHtml } from "./util.js";

/** Highlighted HTML of a code block. A block that names no language is coloured by a guess, but
 * the guess is not shown as its label (it is often wrong): the label is the language given. */
function highlight(code, lang) {
  const language = (lang || "").trim().split(/\s+/)[0].toLowerCase();
  try {
    if (language && hljs.getLanguage(language)) {
      return hljs.highlight(code, { language, ignoreIllegals: true }).value;
    }
    if (!language && code.length < 20_000) {
      const auto = hljs.highlightAuto(code);
      if (auto.relevance >= 5) return auto.value;
    }
  } catch {
    // fall through to plain text
  }
  return escapeHtml(code);
}

const marked = new Marked({
  gfm: true,
  breaks: false,
  renderer: {
    code({ text, lang }) {
      const html = highlight(text, lang);
      const label = escapeHtml((lang || "").trim().split(/\s+/)[0]);
      return (
        `<div class="code"><div class="code-head"><span class="code-lang">${label}</span></div>` +
        `<pre><code class="hljs">${html}</code></pre></div>`
      );
    },
  },
});
marked.use(mathExtension);

const PURIFY = {
  FORBID_TAGS: ["style", "form", "input", "textarea", "select", "button", "iframe", "object", "embed"],
  FORBID_ATTR: ["style"],
  ADD_ATTR: ["target"],
  ALLOW_DATA_ATTR: false,
};

let hooked = false;
function hookLinks() {
  if (hooked) return;
  hooked = true;
  DOMPurify.addHook("afterSanitizeAttributes", (node) => {
    if (node.tagName === "A" && node.getAttribute("href")) {
      node.setAttribute("target", "_blank");
      node.setAttribute("rel", "noopener noreferrer nofollow");
    }
  });
}

/** Sanitised HTML for `text` (Markdown). The copy buttons of code blocks are ours, added after. */
export function renderMarkdown(text) {
  hookLinks();
  let html;
  try {
    html = marked.parse(text || "", { async: false });
  } catch {
    html = `<p>${escapeHtml(text || "")}</p>`;
  }
  return DOMPurify.sanitize(html, PURIFY);
}

/** A link to an image instead of the image, opened only by a click. */
function linkInstead(img) {
  const link = document.createElement("a");
  link.href = img.src;
  link.target = "_blank";
  link.rel = "noopener noreferrer nofollow";
  link.className = "image-link";
  link.textContent = img.alt ? `Image: ${img.alt}` : `Image: ${img.getAttribute("src")}`;
  img.replaceWith(link);
}

// An image from a host that is not in PARLEY_IMAGE_HOSTS is blocked by the page's CSP before any
// request leaves (so a reply cannot leak data through an image URL); it, and a broken image, is
// shown as a link.
function guardImages(node) {
  for (const img of node.querySelectorAll("img")) {
    img.addEventListener("error", () => linkInstead(img), { once: true });
  }
}

/** Render into `node`, typeset its math, then give each code block a working copy button. */
export function renderInto(node, text, onCopy) {
  node.innerHTML = renderMarkdown(text);
  guardImages(node);
  renderMath(node);
  for (const block of node.querySelectorAll("div.code")) {
    const head = block.querySelector(".code-head");
    if (!head) continue;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "code-copy";
    button.textContent = "Copy";
    button.addEventListener("click", () => onCopy(block.querySelector("code")?.textContent || ""));
    head.append(button);
  }
}
