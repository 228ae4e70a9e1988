// A conversation's settings: model, profile, temperature and system prompt (PATCH
// /api/conversations/{id}); on a new chat, the ones it will be created with. The next reply uses
// them. The composer's pickers show the model and profile; a dialog shows them all.
//
// Here a setting is a string ("" = the default) or, for the temperature, a number or null; a model
// is `provider/model` as GET /v1/models names it.

import { enc } from "./api.js";
import { openDialog } from "./dialog.js";
import { choiceInput, loadChoices, Pickers, remember, remembered, setChoice } from "./pickers.js";
import { h, toast } from "./util.js";

/** The settings of a conversation as the API returns it. */
export function settingsOf(convo) {
  const model = convo.model ? (convo.provider ? `${convo.provider}/${convo.model}` : convo.model) : "";
  return { model, profile: convo.profile || "", temperature: convo.temperature ?? null, system: convo.system || "" };
}

/** A body for POST or PATCH /api/conversations of the `settings` given (null: back to the
 * default; a model without its provider would keep the old provider). */
export function toApi(settings) {
  const body = {};
  if ("model" in settings) Object.assign(body, settings.model ? { model: settings.model } : { model: null, provider: null });
  if ("profile" in settings) body.profile = settings.profile || null;
  if ("temperature" in settings) body.temperature = settings.temperature ?? null;
  if ("system" in settings) body.system = settings.system || null;
  return body;
}

function field(label, control, help = null) {
  return h("label", { class: "field" }, h("span", {}, label), control, help);
}

/**
 * Open the settings dialog showing `current` (a new chat's when `isNew`), with the model and
 * profile `choices` of loadChoices(); `save(settings)` resolves to true once they are kept, and
 * the dialog closes then.
 */
export function showSettings({ choices, current, isNew, save }) {
  const profiles = choices.profiles || {};
  const model = choiceInput("model", "Model", choices.models);
  const profile = choiceInput("profile", "Profile", choices.profiles ? Object.keys(profiles) : null, profiles);
  setChoice(model.input, current.model);
  setChoice(profile.input, current.profile);
  const about = h("span", { class: "help" });
  const describe = () => (about.textContent = profiles[profile.input.value] || "");
  profile.input.addEventListener("change", describe);
  describe();
  const temperature = h("input", {
    type: "number",
    name: "temperature",
    min: 0,
    max: 2,
    step: "any",
    placeholder: "Default",
    inputmode: "decimal",
  });
  temperature.value = current.temperature ?? "";
  const system = h("textarea", { name: "system", rows: 6, placeholder: "None: the profile's prompt, if it has one" });
  system.value = current.system || "";
  const saveButton = h("button", { type: "submit", class: "btn btn-primary" }, "Save");
  const cancel = h("button", { type: "button", class: "btn" }, "Cancel");
  const form = h(
    "form",
    { class: "dialog-body settings-form" },
    field("Model", model.nodes),
    field("Profile", profile.nodes, about),
    field("Temperature", temperature, h("span", { class: "help" }, "0 to 2; empty for the model's default.")),
    field("System prompt", system),
    h(
      "div",
      { class: "dialog-actions" },
      h("span", { class: "muted small" }, isNew ? "The new chat starts with these." : "The next reply uses these."),
      cancel,
      saveButton,
    ),
  );
  const dialog = openDialog({ id: "settings-dialog", title: isNew ? "New chat settings" : "Chat settings", body: form });
  cancel.addEventListener("click", dialog.close);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!form.reportValidity()) return;
    saveButton.disabled = true;
    const ok = await save({
      model: model.input.value.trim(),
      profile: profile.input.value.trim(),
      temperature: temperature.value === "" ? null : Number(temperature.value),
      system: system.value.trim() ? system.value : "",
    });
    saveButton.disabled = false;
    if (ok) dialog.close();
  });
  queueMicrotask(() => model.input.focus());
}

export class ChatSettings {
  /**
   * @param {import("./api.js").Api} api
   * @param {{conversation: () => object|null, saved: (convo: object) => void}} ctx `conversation`
   *   is the open one (null on a new chat); `saved` gets it back as the server keeps it.
   */
  constructor(api, ctx) {
    this.api = api;
    this.ctx = ctx;
    this.choices = { models: null, profiles: null };
    this.pickers = null;
    this.draft = null;
  }

  /** Ask the server what there is to choose from, and fill the composer's pickers. */
  async load() {
    this.choices = await loadChoices(this.api);
    this.pickers = new Pickers(this.choices, (key, value) => this.save({ [key]: value }));
    this.show();
  }

  /** The open conversation's settings, or the new chat's (the remembered model and profile). */
  current() {
    const convo = this.ctx.conversation();
    if (convo) return settingsOf(convo);
    this.draft ||= { model: remembered("model"), profile: remembered("profile"), temperature: null, system: "" };
    return this.draft;
  }

  /** The pickers show the current settings (after the conversation changed). */
  show() {
    this.pickers?.show(this.current());
  }

  /** A new chat: its settings start again from the remembered ones. */
  startNew() {
    this.draft = null;
  }

  /** What the composer sends with a message: the picked model and profile. */
  get model() {
    return this.pickers?.model || "";
  }

  get profile() {
    return this.pickers?.profile || "";
  }

  /** Keep changed settings: the open conversation's on the server, a new chat's until it starts
   * (its model and profile are remembered for the next new chat too). */
  async save(changed) {
    const convo = this.ctx.conversation();
    if (!convo) {
      Object.assign(this.current(), changed);
      for (const key of ["model", "profile"]) if (key in changed) remember(key, changed[key]);
      this.show();
      return true;
    }
    try {
      this.ctx.saved(await this.api.patch(`/api/conversations/${enc(convo.id)}`, toApi(changed)));
      return true;
    } catch (error) {
      toast(`Could not save the settings: ${error.message}`, "error");
      this.show();
      return false;
    }
  }

  open() {
    const isNew = !this.ctx.conversation();
    showSettings({ choices: this.choices, current: this.current(), isNew, save: (changed) => this.save(changed) });
  }
}
