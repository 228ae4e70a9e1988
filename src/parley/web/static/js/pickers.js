// Model and profile pickers in the composer. They show the open conversation's model and profile
// (a change is saved to the conversation), or on a new chat the ones it will start with, which
// this browser remembers. A list from the server when it offers one (GET /v1/models, GET
// /api/profiles, each profile's description its option's title), free text otherwise.

import { h } from "./util.js";

const KNOWN_PROFILES = ["generalist", "todo"];

export function remembered(key) {
  return localStorage.getItem(`parley.${key}`) || "";
}

export function remember(key, value) {
  if (value) localStorage.setItem(`parley.${key}`, value);
  else localStorage.removeItem(`parley.${key}`);
}

/** GET /v1/models: the provider models (`profile/NAME` ones are for the OpenAI door), or null. */
async function modelsFrom(api) {
  try {
    const body = await api.get("/v1/models");
    const names = (body?.data || []).map((m) => m?.id).filter((n) => typeof n === "string" && n && !n.startsWith("profile/"));
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

/** What the server offers to choose from: `{models, profiles}`, each null when it says nothing. */
export async function loadChoices(api) {
  const [models, profiles] = await Promise.all([modelsFrom(api), profilesFrom(api)]);
  return { models, profiles };
}

/** A select of `names` (and "Default KEY"), or a text box when there is no list. */
export function choiceInput(key, label, names, titles = {}) {
  if (!names) {
    const suggestions = key === "profile" ? KNOWN_PROFILES : [];
    const listId = `choice-${key}-${Math.random().toString(36).slice(2, 8)}`;
    const input = h("input", {
      type: "text",
      "aria-label": label,
      class: `picker-input picker-${key}`,
      placeholder: `Default ${key}`,
      list: suggestions.length ? listId : null,
      spellcheck: "false",
      autocomplete: "off",
    });
    return { input, nodes: [input, h("datalist", { id: listId }, suggestions.map((s) => h("option", { value: s })))] };
  }
  const input = h(
    "select",
    { "aria-label": label, class: `picker-input picker-${key}` },
    h("option", { value: "" }, `Default ${key}`),
    names.map((n) => h("option", { value: n, title: titles[n] || null }, n)),
  );
  return { input, nodes: [input] };
}

/** Show `value` in a choice (a select gets an option for a value it does not list). */
export function setChoice(input, value) {
  value ||= "";
  if (input.tagName === "SELECT" && ![...input.options].some((o) => o.value === value)) {
    input.append(h("option", { value }, value));
  }
  input.value = value;
}

function mount(slotId, key, { input, nodes }, onChange) {
  document.getElementById(slotId).replaceChildren(...nodes);
  input.addEventListener("change", () => onChange(key, input.value.trim()));
  return input;
}

export class Pickers {
  /** @param {{models: string[]|null, profiles: object|null}} choices
   *  @param {(key: string, value: string) => void} onChange */
  constructor(choices, onChange) {
    this.choices = choices;
    const profileNames = choices.profiles ? Object.keys(choices.profiles) : null;
    this.inputs = {
      model: mount("model-picker", "model", choiceInput("model", "Model", choices.models), onChange),
      profile: mount("profile-picker", "profile", choiceInput("profile", "Profile", profileNames, choices.profiles || {}), onChange),
    };
  }

  get model() {
    return this.inputs.model.value.trim();
  }

  get profile() {
    return this.inputs.profile.value.trim();
  }

  /** Show a conversation's (or a new chat's) `{model, profile}`. */
  show(settings) {
    setChoice(this.inputs.model, settings.model);
    setChoice(this.inputs.profile, settings.profile);
  }
}
