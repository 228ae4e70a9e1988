// Tool calls (live state, arguments, result or error, collapsible), approval buttons, and the form
// for a tool's question (an elicitation's requested_schema).

import { h, icon, prettyJson } from "./util.js";

const STATES = {
  "input-streaming": ["running", "Preparing…"],
  "input-available": ["running", "Running…"],
  "approval-requested": ["approval", "Needs your approval"],
  "approval-responded": ["running", "Approved · running…"],
  "output-available": ["done", "Done"],
  "output-error": ["error", "Failed"],
  "output-denied": ["denied", "Denied"],
};
const STALE = ["denied", "Not run · stopped before an answer"];
const FOLD_CHARS = 160;
const FOLD_LINES = 6;

function section(label, body, cls = "") {
  return h("div", { class: `tool-section ${cls}` }, h("div", { class: "tool-label" }, label), body);
}

function progressOf(part) {
  const p = part.progress;
  if (!p) return null;
  const bar =
    p.total && p.progress != null
      ? h("div", { class: "progress" }, h("div", { style: `width:${Math.min(100, (100 * p.progress) / p.total)}%` }))
      : null;
  return h("div", { class: "tool-progress" }, h("span", { class: "spinner" }), h("span", {}, p.message || "Working…"), bar);
}

/** One argument: its JSON, folded behind its start when it is long (a long string then unfolds
 * as its text, lines and all). */
function argumentNode(name, value) {
  let text;
  try {
    text = JSON.stringify(value, null, 2) ?? String(value);
  } catch {
    text = String(value);
  }
  const key = name == null ? null : h("code", { class: "arg-key" }, name);
  if (text.length <= FOLD_CHARS && text.split("\n").length <= FOLD_LINES) {
    return h("div", { class: "arg" }, key, h("pre", { class: "json arg-value" }, text));
  }
  const preview = text.replace(/\s+/g, " ").slice(0, 80);
  return h(
    "details",
    { class: "arg arg-fold" },
    h("summary", {}, key, h("span", { class: "arg-preview" }, `${preview}…`), h("span", { class: "muted small" }, `${text.length} characters`)),
    h("pre", { class: "json arg-value" }, typeof value === "string" ? value : text),
  );
}

/** The arguments of a call awaiting approval, one by one. */
function argumentList(input) {
  const entries = input && typeof input === "object" && !Array.isArray(input) ? Object.entries(input) : null;
  if (entries && !entries.length) return h("div", { class: "approval-args muted small" }, "No arguments.");
  const nodes = entries ? entries.map(([name, value]) => argumentNode(name, value)) : [argumentNode(null, input)];
  return h("div", { class: "approval-args" }, nodes);
}

/**
 * A tool call card. `answer(approved, remember)` answers an open approval; `canAnswer` tells
 * whether the approval is still open in this run; `stale` that its run ended without an answer
 * (stopped): the card says so instead of asking. `server` is the MCP server the tool is from.
 */
export function toolCard(part, { open = false, canAnswer = false, stale = false, server = null, answer } = {}) {
  const asking = part.state === "approval-requested" && !stale;
  const [kind, label] = part.state === "approval-requested" && stale ? STALE : STATES[part.state] || ["running", part.state];
  const details = h(
    "details",
    { class: "tool-details" },
    h(
      "summary",
      {},
      icon("tool", "tool-icon"),
      h("span", { class: "tool-name" }, part.toolName || "tool"),
      server ? h("span", { class: "tool-server", title: "MCP server" }, server) : null,
      h("span", { class: "tool-state" }, kind === "running" ? h("span", { class: "spinner" }) : null, label),
      icon("down", "chev"),
    ),
    h(
      "div",
      { class: "tool-body" },
      section("Arguments", h("pre", { class: "json" }, prettyJson(part.input ?? {}))),
      part.state === "output-available" ? section("Result", h("pre", { class: "json" }, prettyJson(part.output))) : null,
      part.errorText ? section(kind === "denied" ? "Denied" : "Error", h("pre", { class: "json error-text" }, part.errorText)) : null,
      part.approval?.reason ? section("Reason", h("div", {}, part.approval.reason)) : null,
    ),
  );
  details.open = open;
  const card = h("div", { class: `tool tool-${kind}`, dataset: { toolCallId: part.toolCallId, state: part.state } }, details);
  const progress = progressOf(part);
  if (progress && kind === "running") card.append(progress);
  if (asking) card.append(approvalBar(part, server, canAnswer, answer));
  return card;
}

function approvalBar(part, server, canAnswer, answer) {
  const buttons = [
    h("button", { type: "button", class: "btn btn-primary btn-sm", "data-action": "approve" }, icon("check"), "Approve"),
    h("button", { type: "button", class: "btn btn-sm", "data-action": "deny" }, icon("x"), "Deny"),
    h("button", { type: "button", class: "btn btn-ghost btn-sm", "data-action": "always", title: `Approve, and always allow ${part.toolName}` }, "Always allow"),
  ];
  const from = server ? [" from ", h("code", { class: "approval-server" }, server)] : [];
  const bar = h(
    "div",
    { class: "approval" },
    h("div", { class: "approval-text" }, icon("shield"), h("span", {}, "Run ", h("code", {}, part.toolName), ...from, " with these arguments?")),
    argumentList(part.input ?? {}),
    h("div", { class: "approval-actions" }, buttons),
  );
  if (!canAnswer) {
    for (const b of buttons) b.disabled = true;
    return bar;
  }
  bar.addEventListener("click", async (event) => {
    const action = event.target.closest("button")?.dataset.action;
    if (!action) return;
    for (const b of buttons) b.disabled = true;
    const ok = await answer(action !== "deny", action === "always" ? "tool" : null);
    if (!ok) for (const b of buttons) b.disabled = false;
  });
  return bar;
}

// ---- elicitation ------------------------------------------------------------------------------

function choicesOf(schema) {
  if (Array.isArray(schema.enum)) {
    const names = schema.enumNames || [];
    return schema.enum.map((value, i) => ({ value, title: names[i] ?? String(value) }));
  }
  const list = schema.oneOf || schema.anyOf;
  if (Array.isArray(list) && list.every((o) => "const" in o)) {
    return list.map((o) => ({ value: o.const, title: o.title ?? String(o.const) }));
  }
  return null;
}

function inputFor(name, schema, required) {
  const id = `f-${name}-${Math.random().toString(36).slice(2, 8)}`;
  const common = { id, name, required: required || null };
  const choices = choicesOf(schema);
  let control;
  if (schema.type === "boolean") {
    control = h("input", { ...common, type: "checkbox", required: null });
    control.checked = Boolean(schema.default);
  } else if (choices) {
    control = h(
      "select",
      common,
      required ? null : h("option", { value: "" }, "—"),
      choices.map((c, i) => h("option", { value: String(i), selected: c.value === schema.default || null }, c.title)),
    );
    control._choices = choices;
  } else if (schema.type === "number" || schema.type === "integer") {
    control = h("input", {
      ...common,
      type: "number",
      step: schema.type === "integer" ? "1" : "any",
      min: schema.minimum,
      max: schema.maximum,
      value: schema.default,
    });
  } else {
    const type = { email: "email", uri: "url", date: "date", "date-time": "datetime-local" }[schema.format] || "text";
    const long = (schema.maxLength ?? 0) > 200;
    control = h(long ? "textarea" : "input", {
      ...common,
      type: long ? null : type,
      minlength: schema.minLength,
      maxlength: schema.maxLength,
      value: long ? null : schema.default,
      rows: long ? 3 : null,
    });
    if (long && schema.default) control.value = schema.default;
  }
  control.dataset.kind = schema.type || "string";
  const label = h("label", { for: id }, schema.title || name, required ? h("span", { class: "req" }, " *") : null);
  const help = schema.description ? h("div", { class: "help" }, schema.description) : null;
  const cls = schema.type === "boolean" ? "form-field form-check" : "form-field";
  return { control, node: schema.type === "boolean" ? h("div", { class: cls }, control, label, help) : h("div", { class: cls }, label, control, help) };
}

function valueOf(control) {
  if (control.type === "checkbox") return control.checked;
  if (control._choices) return control.value === "" ? undefined : control._choices[Number(control.value)].value;
  if (control.value === "") return undefined;
  if (control.dataset.kind === "integer") return Number.parseInt(control.value, 10);
  if (control.dataset.kind === "number") return Number(control.value);
  return control.value;
}

/** A form built from `part.schema`; `respond(action, content)` resolves to true when accepted. */
export function elicitationCard(part, { respond }) {
  const schema = part.schema || {};
  const required = new Set(schema.required || []);
  const fields = Object.entries(schema.properties || {}).map(([name, prop]) => ({ name, ...inputFor(name, prop || {}, required.has(name)) }));
  const answered = part.state !== "pending";
  const form = h(
    "form",
    { class: "elicit-form", novalidate: null },
    fields.map((f) => f.node),
    h(
      "div",
      { class: "elicit-actions" },
      h("button", { type: "submit", class: "btn btn-primary btn-sm" }, "Submit"),
      h("button", { type: "button", class: "btn btn-sm", "data-action": "decline" }, "Decline"),
      h("button", { type: "button", class: "btn btn-ghost btn-sm", "data-action": "cancel" }, "Cancel"),
    ),
  );
  const status = { accept: "Answered", decline: "Declined", cancel: "Cancelled" }[part.state];
  const card = h(
    "div",
    { class: `elicit ${answered ? "elicit-done" : ""}`, dataset: { elicitationId: part.id } },
    h("div", { class: "elicit-head" }, icon("question"), h("span", {}, "A tool is asking"), status ? h("span", { class: "badge" }, status) : null),
    h("p", { class: "elicit-message" }, part.message || ""),
    answered ? null : form,
  );
  const buttons = () => form.querySelectorAll("button");
  const send = async (action, content) => {
    for (const b of buttons()) b.disabled = true;
    const ok = await respond(action, content);
    if (!ok) for (const b of buttons()) b.disabled = false;
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!form.reportValidity()) return;
    const content = {};
    for (const f of fields) {
      const value = valueOf(f.control);
      if (value !== undefined && !Number.isNaN(value)) content[f.name] = value;
    }
    send("accept", content);
  });
  form.addEventListener("click", (event) => {
    const action = event.target.closest("button[data-action]")?.dataset.action;
    if (action) send(action, null);
  });
  return card;
}
