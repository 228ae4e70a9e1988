// parley's chat page: sign-in, the conversation list, the thread, and runs streamed as they happen.

import { enc } from "./api.js";
import { Attachments } from "./attachments.js";
import { hideConnection, showConnection } from "./connection.js";
import { showConnections } from "./connections.js";
import { PAGE, Thread } from "./messages.js";
import { applyEvent, elicitationPart, whySendingWaits } from "./parts.js";
import { Projects } from "./projects.js";
import { showRules } from "./rules.js";
import { RunStream } from "./runstream.js";
import { ChatSettings, toApi } from "./settings.js";
import { Sidebar } from "./sidebar.js";
import { Signin } from "./signin.js";
import { setupTheme } from "./theme.js";
import { copyText, hydrateIcons, sleep, toast, tokensLabel } from "./util.js";

const $ = (id) => document.getElementById(id);

const state = {
  convo: null,
  run: null,
  pending: new Map(),
  tmp: 0,
};

const signin = new Signin({
  opened: () => showApp(),
  closed: () => {
    detachRun();
    state.convo = null;
    thread.reset([], false);
  },
});
const api = signin.api;

// ---- the thread ---------------------------------------------------------------------------------

const thread = new Thread($("scroller"), $("thread"), {
  copy: (text) => copyText(text),
  isBusy: () => state.run !== null,
  canAnswer: (part) => part.state === "approval-requested" && Boolean(runIdFor(part)),
  serverOf: (part) => part.server || state.pending.get(part.toolCallId)?.server || null,
  answerApproval,
  answerElicitation,
  regenerate: (m) => regenerate(m),
  edit: (m, text) => editMessage(m, text),
  fork: (m) => fork(m),
  switchBranch: (m, id) => switchBranch(id),
  loadOlder: (before) => loadOlder(before),
  afterRender: () => thread.follow(),
  onWindow: () => showEmpty(),
  onStick: (stuck) => ($("jump").hidden = stuck || !thread.messages.length),
});

function showEmpty() {
  $("empty").hidden = thread.messages.length > 0;
}

async function loadOlder(before) {
  const convoId = state.convo?.id;
  if (!convoId) return null;
  try {
    const page = await api.get(`/api/conversations/${enc(convoId)}/messages?before=${enc(before)}&limit=${PAGE}`);
    return state.convo?.id === convoId ? page : null;
  } catch (error) {
    toast(`Could not load older messages: ${error.message}`, "error");
    return null;
  }
}

function setConvo(convo) {
  state.convo = convo;
  $("title").textContent = convo?.title || "New chat";
  document.title = convo?.title ? `${convo.title} · parley` : "parley";
  const usage = $("convo-usage");
  const total = convo?.usage?.total_tokens || 0;
  usage.hidden = !total;
  usage.textContent = `Σ ${tokensLabel(convo?.usage)}`;
  sidebar.setActive(convo?.id || null);
  settings.show();
  projects.show(convo);
}

function notePending(items, messages) {
  state.pending.clear();
  const last = [...messages].reverse().find((m) => m.role === "assistant");
  for (const p of items || []) {
    if (p.kind === "approval") state.pending.set(p.tool_call_id, p);
    else if (last && !last.parts.some((x) => x.type === "x-elicitation" && x.id === p.elicitation_id)) {
      last.parts.push(elicitationPart(p, p.run_id));
    }
  }
}

function runIdFor(part) {
  return state.pending.get(part.toolCallId)?.run_id || state.run?.runId || null;
}

// ---- opening conversations ------------------------------------------------------------------------

async function openConversation(id) {
  if (state.convo?.id === id && thread.messages.length) return;
  detachRun();
  let convo;
  try {
    convo = await api.get(`/api/conversations/${enc(id)}?limit=${PAGE}`);
  } catch (error) {
    toast(error.status === 404 ? "That conversation does not exist (any more)." : error.message, "error");
    return newChat();
  }
  show(convo);
  if (convo.active_run_id) attachRun(convo.active_run_id);
}

function show(convo) {
  notePending(convo.pending, convo.messages);
  setConvo(convo);
  thread.reset(convo.messages, convo.has_more);
  showEmpty();
  closeSidebar();
}

function newChat() {
  detachRun();
  settings.startNew();
  setConvo(null);
  state.pending.clear();
  thread.reset([], false);
  showEmpty();
  closeSidebar();
  projects.settleHash();
  $("input").focus();
}

function route() {
  const match = location.hash.match(/^#\/c\/([^/?#]+)/);
  if (match) openConversation(decodeURIComponent(match[1]));
  else if (projects.route(location.hash) || state.convo) newChat();
}

function go(id) {
  if (location.hash !== `#/c/${enc(id)}`) history.pushState(null, "", `#/c/${enc(id)}`);
}

// ---- runs -------------------------------------------------------------------------------------------

function newRun(message, extra = {}) {
  const run = { runId: null, message, convoId: state.convo.id, stream: null, ...extra };
  run.stream = new RunStream(api, {
    onEvent: (type, data) => onRunEvent(run, type, data),
    onState: (s, detail) => onConnState(run, s, detail),
  });
  state.run = run;
  hideConnection();
  setBusy(true);
  return run;
}

function onRunEvent(run, type, data) {
  if (state.run !== run) return;
  const message = run.message;
  if (type === "start") {
    run.runId = data.run_id;
    if (run.user && data.user_message_id) thread.rename(run.user.id, data.user_message_id);
    if (run.attached) {
      message.parts = [];
      message.status = "streaming";
      thread.replace(message);
    }
    thread.rename(message.id, data.message_id);
    message.model = data.model || message.model;
    if (data.side_effects?.length) {
      const names = data.side_effects.map((e) => e.tool_name).join(", ");
      toast(`Note: tool calls after this point already had effects (${names}); they are not undone.`, "warn", 7000);
    }
    return;
  }
  const change = applyEvent(message, type, data, run.runId);
  if (type === "done" || type === "error") finish(run);
  if (!change) return;
  if (change.part != null) thread.updatePart(message, change.part);
  if (change.footer) thread.updateFooter(message);
}

async function follow(run, response) {
  run.runId = run.runId || response?.headers.get("X-Run-Id") || null;
  await run.stream.follow(response);
  finish(run);
}

/** The run ended (its last event, or its stream): free the composer, then hear the server's word. */
function finish(run) {
  if (state.run !== run) return;
  state.run = null;
  setBusy(false);
  sync(run.convoId);
}

/** Start a turn: optimistic messages, then the stream. */
async function startTurn({ method, path, body, userText = null, userFiles = [], replaceFrom = null }) {
  if (state.run) return;
  if (replaceFrom) thread.truncateFrom(replaceFrom);
  const user = userText == null ? null : message("user", [...userFiles, { type: "text", text: userText }], "complete");
  const assistant = message("assistant", [], "streaming");
  if (user) thread.push(user);
  thread.push(assistant);
  showEmpty();
  const run = newRun(assistant, { user });
  let response;
  try {
    response = await api.stream(method, path, body, { signal: run.stream.signal() });
  } catch (error) {
    state.run = null;
    setBusy(false);
    toast(error.message || "The message was not sent.", "error");
    await sync(run.convoId, true);
    return false;
  }
  follow(run, response);
  return true;
}

function message(role, parts, status) {
  return { id: `tmp-${++state.tmp}`, role, parts, status, usage: null, siblings: [], model: null };
}

async function attachRun(runId) {
  let info;
  try {
    info = await api.get(`/api/runs/${enc(runId)}`);
  } catch {
    return;
  }
  const target = thread.find(info.message_id);
  if (!target || state.run || state.convo?.id !== info.conversation_id) return;
  const run = newRun(target, { attached: true, runId });
  run.stream.runId = runId;
  follow(run, null);
}

function detachRun() {
  if (!state.run) return;
  state.run.stream.close();
  state.run = null;
  setBusy(false);
  hideConnection();
}

/** After a run: the server's word on the last messages (siblings, usage, final parts, title). */
async function sync(convoId, full = false) {
  if (state.convo?.id !== convoId) return;
  let convo;
  try {
    convo = await api.get(`/api/conversations/${enc(convoId)}?limit=${full ? PAGE : 6}`);
  } catch {
    return;
  }
  if (state.convo?.id !== convoId || state.run) return;
  if (full) {
    show(convo);
  } else {
    notePending(convo.pending, convo.messages);
    for (const m of convo.messages) thread.replace(m);
    setConvo(convo);
  }
  sidebar.upsert(convo);
  if (convo.active_run_id) attachRun(convo.active_run_id);
  else if (!full && !convo.has_more && convo.messages.length <= 2) awaitTitle(convoId, convo.title);
}

/** After a first reply the model names the conversation in the background: ask again a few
 * times, more slowly each time, and show the new title when it is there. */
async function awaitTitle(convoId, title) {
  for (const wait of [1000, 2000, 4000, 8000]) {
    await sleep(wait);
    if (state.convo?.id !== convoId) return;
    let convo;
    try {
      convo = await api.get(`/api/conversations/${enc(convoId)}?limit=1`);
    } catch {
      return;
    }
    if (convo.title === title) continue;
    if (state.convo?.id === convoId) setConvo({ ...state.convo, title: convo.title });
    sidebar.upsert({ ...convo, messages: undefined });
    return;
  }
}

async function stop() {
  const run = state.run;
  if (!run?.runId) return;
  $("stop").disabled = true;
  try {
    await api.post(`/api/runs/${enc(run.runId)}/cancel`);
  } catch (error) {
    toast(`Could not stop: ${error.message}`, "error");
  } finally {
    $("stop").disabled = false;
  }
}

// ---- approvals and questions ----------------------------------------------------------------------

async function answerApproval(msg, part, approved, remember) {
  const runId = runIdFor(part);
  if (!runId) return false;
  try {
    await api.post(`/api/runs/${enc(runId)}/approvals/${enc(part.toolCallId)}`, {
      approved,
      ...(remember ? { remember } : {}),
    });
  } catch (error) {
    if (error.status === 409) {
      toast("This tool call was already answered.", "warn");
      return true;
    }
    toast(`Could not answer: ${error.message}`, "error");
    return false;
  }
  state.pending.delete(part.toolCallId);
  if (remember) {
    toast(`${part.toolName} will run without asking from now on (the shield at the bottom left lists and revokes these).`, "info", 6000);
  }
  if (!state.run && state.convo) attachRun(runId);
  return true;
}

async function answerElicitation(part, action, content) {
  try {
    await api.post(`/api/runs/${enc(part.runId)}/elicitations/${enc(part.id)}`, {
      action,
      ...(action === "accept" ? { content } : {}),
    });
  } catch (error) {
    toast(`Could not answer: ${error.message}`, "error");
    return error.status === 409;
  }
  part.state = action;
  const owner = thread.messages.find((m) => m.parts.includes(part));
  if (owner) thread.updatePart(owner, owner.parts.indexOf(part));
  return true;
}

// ---- actions ----------------------------------------------------------------------------------------

function options(extra = {}) {
  const body = { ...extra };
  if (settings.model) body.model = settings.model;
  return body;
}

async function send() {
  const input = $("input");
  const text = input.value.trim();
  if (!text && !attachments.count) return;
  if (state.run) {
    toast(whySendingWaits(state.run.message.parts), "warn");
    return;
  }
  input.value = "";
  autosize();
  const files = attachments.take();
  if (!state.convo) {
    try {
      const convo = await api.post("/api/conversations", { ...toApi(settings.current()), ...projects.newChatFields() });
      setConvo(convo);
      sidebar.upsert(convo);
      go(convo.id);
    } catch (error) {
      input.value = text;
      attachments.restore(files.attachments);
      toast(`Could not start a conversation: ${error.message}`, "error");
      return;
    }
  }
  if (!state.convo.title && text) {
    const title = text.split("\n")[0].slice(0, 80);
    setConvo({ ...state.convo, title });
    sidebar.upsert(state.convo);
  }
  const body = options({ content: text });
  if (files.attachments.length) body.attachments = files.attachments;
  if (settings.profile) body.profile = settings.profile;
  const path = `/api/conversations/${enc(state.convo.id)}/messages`;
  const ok = await startTurn({ method: "POST", path, body, userText: text, userFiles: files.parts });
  if (!ok && !input.value) input.value = text;
  if (!ok) attachments.restore(files.attachments);
}

function regenerate(msg) {
  if (!state.convo) return;
  startTurn({
    method: "POST",
    path: `/api/conversations/${enc(state.convo.id)}/messages/${enc(msg.id)}/regenerate`,
    body: options(),
    replaceFrom: msg.id,
  });
}

function editMessage(msg, text) {
  if (!state.convo) return;
  startTurn({
    method: "PUT",
    path: `/api/conversations/${enc(state.convo.id)}/messages/${enc(msg.id)}`,
    body: options({ content: text }),
    userText: text,
    replaceFrom: msg.id,
  });
}

async function fork(msg) {
  if (!state.convo || state.run) return;
  try {
    const convo = await api.post(`/api/conversations/${enc(state.convo.id)}/fork`, { message_id: msg.id });
    sidebar.upsert(convo);
    show(convo);
    go(convo.id);
    toast("Forked into a new conversation.", "info");
    if (convo.side_effects?.length) {
      const names = convo.side_effects.map((e) => e.tool_name).join(", ");
      toast(`Tool calls left out of the fork had effects that stay: ${names}.`, "warn", 7000);
    }
  } catch (error) {
    toast(`Could not fork: ${error.message}`, "error");
  }
}

async function switchBranch(messageId) {
  if (!state.convo || state.run || !messageId) return;
  try {
    const convo = await api.post(`/api/conversations/${enc(state.convo.id)}/branch`, { message_id: messageId });
    show(convo);
    thread.views.get(messageId)?.node.scrollIntoView({ block: "center" });
    if (convo.active_run_id) attachRun(convo.active_run_id);
  } catch (error) {
    toast(`Could not switch branch: ${error.message}`, "error");
  }
}

// ---- connection state -------------------------------------------------------------------------------

function onConnState(run, s, detail = {}) {
  if (state.run === run) showConnection(s, detail, () => run.stream.drop());
}

function setBusy(busy) {
  document.body.classList.toggle("busy", busy);
  $("send").hidden = busy;
  $("stop").hidden = !busy;
  thread.redrawFooters();
}

// ---- sidebar, composer, keys --------------------------------------------------------------------------

const sidebar = new Sidebar(api, {
  deleted: (id) => {
    if (state.convo?.id === id) newChat();
  },
  renamed: (convo) => {
    if (state.convo?.id === convo.id) setConvo({ ...state.convo, title: convo.title });
  },
});

const projects = new Projects(api, sidebar);

const settings = new ChatSettings(api, {
  conversation: () => state.convo,
  saved: (convo) => {
    if (state.convo?.id === convo.id) setConvo({ ...state.convo, ...convo });
  },
});

const attachments = new Attachments(api, {
  tray: $("attachments"),
  picker: $("attach-input"),
  button: $("attach"),
  zone: $("composer"),
});

function openSidebar() {
  document.body.classList.add("sidebar-open");
  $("backdrop").hidden = false;
}

function closeSidebar() {
  document.body.classList.remove("sidebar-open");
  $("backdrop").hidden = true;
}

function autosize() {
  const input = $("input");
  input.style.height = "auto";
  input.style.height = `${Math.min(input.scrollHeight, 240)}px`;
}

function wire() {
  hydrateIcons();
  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    send();
  });
  $("input").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send();
    }
  });
  $("input").addEventListener("input", autosize);
  $("stop").addEventListener("click", stop);
  $("new-chat").addEventListener("click", () => {
    projects.settleHash(true);
    newChat();
  });
  $("jump").addEventListener("click", () => {
    thread.stick = true;
    thread.showLatest();
  });
  $("sidebar-open").addEventListener("click", openSidebar);
  $("sidebar-close").addEventListener("click", closeSidebar);
  $("backdrop").addEventListener("click", closeSidebar);
  $("settings").addEventListener("click", () => settings.open());
  $("rules").addEventListener("click", () => showRules(api));
  $("connections").addEventListener("click", () => showConnections(api));
  $("conversations").addEventListener("click", (e) => {
    if (e.target.closest(".conv-open")) closeSidebar();
  });
  document.addEventListener("keydown", (e) => {
    if (e.key !== "Escape" || e.defaultPrevented) return;
    if (state.run) {
      e.preventDefault();
      stop();
    } else if (document.body.classList.contains("sidebar-open")) closeSidebar();
  });
  window.addEventListener("hashchange", route);
  window.addEventListener("popstate", route);
  signin.wire();
}

async function showApp() {
  const who = signin.who;
  $("me").textContent = who;
  $("me-avatar").textContent = who.slice(0, 1).toUpperCase();
  showEmpty();
  await settings.load();
  attachments.loadLimits();
  // what the search box holds: a person may type while the page is still signing in
  await Promise.all([sidebar.load(sidebar.search.value.trim()), projects.load()]);
  route();
  if (!state.convo) $("input").focus();
}

setupTheme($("theme"));
wire();
signin.start();

// A small handle for tests and for the curious.
window.parley = {
  dropStream: () => state.run?.stream.drop(),
  domCount: () => thread.domCount,
  loaded: () => thread.messages.length,
  get runId() {
    return state.run?.runId || null;
  },
};
