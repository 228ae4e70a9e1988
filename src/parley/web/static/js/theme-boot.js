// Before the first paint: the theme chosen in this browser ("parley.theme": light or dark), else
// the system's, so that a dark page never flashes light. theme.js does the rest, and the toggle.
{
  let chosen = null;
  try {
    chosen = localStorage.getItem("parley.theme");
  } catch {
    // storage refused: the system's theme
  }
  const dark = chosen === "dark" || (chosen !== "light" && matchMedia("(prefers-color-scheme: dark)").matches);
  document.documentElement.dataset.theme = dark ? "dark" : "light";
}
