// Your connections to the MCP servers that act as you (GET /api/mcp/servers): a server set up
// `credentials = "per_user"` takes a token you paste (PUT …/credentials), one set up "oauth"
// sends you to its sign-in page (POST …/oauth/start, in a new tab; this list follows until it
// is connected). Disconnect forgets what parley kept (DELETE). Shared servers are listed too.

import { enc } from "./api.js";
import { openDialog } from "./dialog.js";
import { h, sleep, toast } from "./util.js";

const FOLLOW_FOR_MS = 10 * 60 * 1000; // the flow's own lifetime on the server
const FOLLOW_EVERY_MS = 2000;

export async function showConnections(api) {
  let servers;
  try {
    servers = (await api.get("/api/mcp/servers")).items || [];
  } catch (error) {
    toast(`Could not list the tool servers: ${error.message}`, "error");
    return;
  }
  const list = h("ul", { class: "rules connections" });
  const dialog = { open: true };
  for (const server of servers) list.append(row(api, server, dialog));
  const intro = h("p", { class: "muted small" }, "Tools of these servers run with the credential shown: yours where the server acts as you.");
  const none = h("p", { class: "rules-empty muted" }, "No MCP servers are configured ([[mcp_servers]] in parley.toml).");
  const body = h("div", { class: "dialog-body" }, intro, servers.length ? list : none);
  openDialog({ id: "connections-dialog", title: "Tool servers", body, onClose: () => (dialog.open = false) });
}

function row(api, server, dialog) {
  const item = h("li", { class: "rule", dataset: { server: server.name } });
  const draw = (s) => {
    const what = h(
      "div",
      { class: "rule-what" },
      h("code", { class: "rule-name" }, s.name),
      h("span", { class: "muted small connection-state" }, describe(s)),
    );
    item.replaceChildren(what, ...actions(api, s, dialog, draw));
  };
  draw(server);
  return item;
}

function describe(s) {
  const tools = `${s.tools} tool${s.tools === 1 ? "" : "s"}`;
  if (s.credentials === "shared") return `shared by everyone · ${tools}`;
  const how = s.credentials === "oauth" ? "signs you in" : "takes your token";
  return `${s.connected ? "connected as you" : "not connected"} · ${how} · ${tools}`;
}

function actions(api, s, dialog, draw) {
  if (s.credentials === "shared") return [];
  if (s.connected) return [button(`Disconnect ${s.name}`, "Disconnect", () => disconnect(api, s, draw))];
  if (s.credentials === "oauth") return [button(`Connect ${s.name}`, "Connect", (b) => signIn(api, s, dialog, draw, b))];
  const token = h("input", { type: "password", class: "picker-input", placeholder: "token", "aria-label": `Token for ${s.name}`, autocomplete: "off" });
  const form = h("form", { class: "connection-token" }, token, h("button", { type: "submit", class: "btn btn-sm" }, "Connect"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!token.value.trim()) return;
    try {
      await api.put(`/api/mcp/servers/${enc(s.name)}/credentials`, { bearer: token.value.trim() });
    } catch (error) {
      toast(`Could not connect ${s.name}: ${error.message}`, "error");
      return;
    }
    draw({ ...s, connected: true });
  });
  return [form];
}

function button(label, text, onClick) {
  const b = h("button", { type: "button", class: "btn btn-sm", "aria-label": label }, text);
  b.addEventListener("click", () => onClick(b));
  return b;
}

async function disconnect(api, s, draw) {
  try {
    await api.delete(`/api/mcp/servers/${enc(s.name)}/credentials`);
  } catch (error) {
    if (error.status !== 404) {
      toast(`Could not disconnect ${s.name}: ${error.message}`, "error");
      return;
    }
  }
  draw({ ...s, connected: false });
}

/** The server's sign-in page in a new tab; the row follows the list until it says connected. */
async function signIn(api, s, dialog, draw, b) {
  b.disabled = true;
  const tab = window.open("", "_blank"); // opened on the click, before the await: not a pop-up
  let start;
  try {
    start = await api.post(`/api/mcp/servers/${enc(s.name)}/oauth/start`, {});
  } catch (error) {
    tab?.close();
    b.disabled = false;
    toast(`Could not start signing in to ${s.name}: ${error.message}`, "error");
    return;
  }
  if (tab) tab.location = start.authorization_url;
  else window.location.assign(start.authorization_url);
  b.textContent = "Waiting for the sign-in…";
  const deadline = Date.now() + FOLLOW_FOR_MS;
  while (dialog.open && Date.now() < deadline) {
    await sleep(FOLLOW_EVERY_MS);
    const now = await api.get("/api/mcp/servers").catch(() => null);
    const found = now?.items?.find((x) => x.name === s.name);
    if (found?.connected) {
      draw(found);
      toast(`${s.name} is connected: its tools act as you.`, "info");
      return;
    }
  }
  if (dialog.open) draw(s);
}
