// The colour theme: the system's (the default), light or dark. A button cycles through them; the
// choice is remembered in this browser ("parley.theme"), and "system" follows the system live.

import { icon } from "./util.js";

const KEY = "parley.theme";
const MODES = ["system", "light", "dark"];
const LABELS = { system: "Theme: as the system", light: "Theme: light", dark: "Theme: dark" };
const ICONS = { system: "monitor", light: "sun", dark: "moon" };
const systemDark = matchMedia("(prefers-color-scheme: dark)");

function chosen() {
  const mode = localStorage.getItem(KEY);
  return MODES.includes(mode) ? mode : "system";
}

/** Colours by `data-theme` on <html>; the code colours and the browser's bar by `data-scheme`. */
function apply(mode) {
  const scheme = mode === "system" ? (systemDark.matches ? "dark" : "light") : mode;
  document.documentElement.dataset.theme = scheme;
  for (const node of document.querySelectorAll("[data-scheme]")) {
    node.media = node.dataset.scheme === scheme ? "all" : "not all";
  }
}

export function setupTheme(button) {
  const show = () => {
    const mode = chosen();
    const next = MODES[(MODES.indexOf(mode) + 1) % MODES.length];
    apply(mode);
    button.replaceChildren(icon(ICONS[mode]));
    button.dataset.mode = mode;
    button.title = `${LABELS[mode]} (click for ${next})`;
    button.setAttribute("aria-label", button.title);
  };
  button.addEventListener("click", () => {
    const next = MODES[(MODES.indexOf(chosen()) + 1) % MODES.length];
    if (next === "system") localStorage.removeItem(KEY);
    else localStorage.setItem(KEY, next);
    show();
  });
  systemDark.addEventListener("change", show);
  window.addEventListener("storage", (e) => e.key === KEY && show()); // another tab chose
  show();
}
