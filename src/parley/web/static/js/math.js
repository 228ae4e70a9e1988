// Math in replies: $…$ and \(…\) inline, $$…$$ and \[…\] displayed, typeset by KaTeX
// (vendor/katex, loaded the first time a reply has math).
//
// marked finds the math: code spans and code blocks are its own tokens, so math inside them stays
// code. What it leaves in the HTML is a placeholder holding the TeX as text, so the sanitiser of
// the reply sees no math markup at all; KaTeX's own output (trust off) is sanitised on its own,
// with its inline styles, which it needs and a model's HTML never keeps.

import DOMPurify from "../vendor/purify.es.js";
import { escapeHtml } from "./util.js";

const KATEX_SRC = "/static/vendor/katex/katex.min.js";
const OPTIONS = { throwOnError: false, trust: false, strict: "ignore", maxSize: 20, maxExpand: 500, output: "htmlAndMathml" };
const PURIFY = {
  FORBID_TAGS: ["style", "form", "input", "textarea", "select", "button", "iframe", "object", "embed", "a", "img"],
  ALLOW_DATA_ATTR: false,
};
const CACHE_LIMIT = 500;

// Displayed TeX: anything up to a code fence, as little as will do, and not more than a long
// formula (so text full of unclosed $$ costs a bounded look-ahead at each).
const ANY = "((?:(?!```)[\\s\\S]){1,4000}?)";
// At the start of the inline source: [pattern, display]. A lone $ opens only before a non-space
// and closes only after one, not before a digit ("$5 and $10" stays text), on one line, with no
// backtick in between.
const INLINE = [
  [new RegExp(`^\\$\\$(?!\\$)${ANY}\\$\\$`), true],
  [new RegExp(`^\\\\\\[${ANY}\\\\\\]`), true],
  [/^\\\(([^\n]{1,1000}?)\\\)/, false],
  [/^\$(?![\s$])((?:\\.|[^\\$`\n])*?[^\\\s$`])\$(?!\d)/, false],
];
const BLOCK = [
  new RegExp(`^ {0,3}\\$\\$${ANY}\\$\\$[ \\t]*(?:\\n+|$)`),
  new RegExp(`^ {0,3}\\\\\\[${ANY}\\\\\\][ \\t]*(?:\\n+|$)`),
];

function placeholder(token) {
  return `<span class="math-${token.display ? "display" : "inline"}">${escapeHtml(token.text)}</span>`;
}

/** marked's extensions for math: one for lines of their own, one inside text. */
export const mathExtension = {
  extensions: [
    {
      name: "mathBlock",
      level: "block",
      tokenizer(src) {
        for (const pattern of BLOCK) {
          const match = pattern.exec(src);
          if (match) return { type: "mathBlock", raw: match[0], text: match[1].trim(), display: true };
        }
        return undefined;
      },
      renderer: placeholder,
    },
    {
      name: "mathInline",
      level: "inline",
      start(src) {
        return src.match(/(?<!\\)\$|\\[([]/)?.index;
      },
      tokenizer(src) {
        for (const [pattern, display] of INLINE) {
          const match = pattern.exec(src);
          if (match) return { type: "mathInline", raw: match[0], text: match[1].trim(), display };
        }
        return undefined;
      },
      renderer: placeholder,
    },
  ],
};

let katex = null;
let loading = null;
const cache = new Map();

/** KaTeX, loaded once (a classic script: its build sets `window.katex`). */
function loadKatex() {
  loading ||= new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = KATEX_SRC;
    script.onload = () => (window.katex ? resolve(window.katex) : reject(new Error("KaTeX did not load")));
    script.onerror = () => reject(new Error("KaTeX could not be loaded"));
    document.head.append(script);
  }).then((loaded) => (katex = loaded));
  return loading;
}

function typeset(tex, display) {
  const key = `${display ? "D" : "I"}${tex}`;
  let html = cache.get(key);
  if (html === undefined) {
    if (cache.size >= CACHE_LIMIT) cache.clear();
    html = DOMPurify.sanitize(katex.renderToString(tex, { ...OPTIONS, displayMode: display }), PURIFY);
    cache.set(key, html);
  }
  return html;
}

/** Typeset the math placeholders in `node` (at once when KaTeX is there, else once it is). */
export function renderMath(node) {
  const pending = node.querySelectorAll(".math-inline:not(.math-done), .math-display:not(.math-done)");
  if (!pending.length) return;
  if (!katex) {
    loadKatex().then(
      () => renderMath(node),
      () => {}, // the TeX stays readable as text
    );
    return;
  }
  for (const slot of pending) {
    slot.innerHTML = typeset(slot.textContent, slot.classList.contains("math-display"));
    slot.classList.add("math-done");
  }
}
