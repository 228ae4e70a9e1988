// Model and profile pickers. A list from the server when it offers one (GET /v1/models,
// GET /api/profiles, each profile's description its option's title), free text otherwise; the
// choice is remembered in this browser.

import { h } from "./util.js";

const KNOWN_PROFILES = ["generalist", "todo"];

function remembered(key) {
  return localStorage.getItem(`parley.${key}`) || "";
}

function remember(key, value) {
  if (value) localStorage.setItem(`parley.${key}`, value);
  else localStorage.removeItem(`parley.${key}`);
}

async function listFrom(api, path, pick) {
  try {
    const body = await api.get(path);
    const names = pick(body).filter((n) => typeof n === "string" && n);
    return names.length ? [...new Set(names)] : null;
  } catch {
    return null;
  }
}

/** GET /api/profiles: `{name: description}` of each profile, or null when it is not there. */
async function profilesFrom(api) {
  try {
    const body = await api.get("/api/profiles");
    const items = (body?.items || []).filter((p) => typeof p?.name === "string" && p.name);
    return items.length ? Object.fromEntries(items.map((p) => [p.name, p.description || ""])) : null;
  } catch {
    return null;
  }
}

function select(key, label, names, titles = {}) {
  const current = remembered(key);
  const node = h(
    "select",
    { "aria-label": label, class: `picker-input picker-${key}` },
    h("option", { value: "" }, `Default ${key}`),
    names.map((n) => h("option", { value: n, title: titles[n] || null }, n)),
  );
  if (current && !names.includes(current)) node.append(h("option", { value: current }, current));
  node.value = current;
  node.addEventListener("change", () => remember(key, node.value));
  return node;
}

function freeText(key, label, suggestions) {
  const listId = `picker-${key}-list`;
  const node = h("input", {
    type: "text",
    "aria-label": label,
    class: `picker-input picker-${key}`,
    placeholder: `Default ${key}`,
    list: suggestions.length ? listId : null,
    spellcheck: "false",
    autocomplete: "off",
  });
  node.value = remembered(key);
  node.addEventListener("change", () => remember(key, node.value.trim()));
  const datalist = h("datalist", { id: listId }, suggestions.map((s) => h("option", { value: s })));
  return [node, datalist];
}

function mount(slot, nodes) {
  slot.replaceChildren(...[nodes].flat());
  return slot.querySelector(".picker-input");
}

/** Fill the two picker slots; returns getters for the chosen model and profile ("" = default). */
export async function setupPickers(api) {
  const [models, profiles] = await Promise.all([
    listFrom(api, "/v1/models", (b) => (b?.data || []).map((m) => m.id)),
    profilesFrom(api),
  ]);
  const modelSlot = document.getElementById("model-picker");
  const profileSlot = document.getElementById("profile-picker");
  const model = mount(modelSlot, models ? select("model", "Model", models) : freeText("model", "Model", []));
  const profile = mount(
    profileSlot,
    profiles
      ? select("profile", "Profile", Object.keys(profiles), profiles)
      : freeText("profile", "Profile", KNOWN_PROFILES),
  );
  return {
    get model() {
      return model.value.trim();
    },
    get profile() {
      return profile.value.trim();
    },
  };
}
