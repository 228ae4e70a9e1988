// Shared by the scenario scripts: load one AI SDK version, build a transport and a chat.
// Usage of every script: node <script>.mjs <ai5|ai6> <parley URL> <token>
// Lines on stdout are JSON: {"step": ...} while running, {"result": ...} last.

export function args() {
  const [version, url, token] = process.argv.slice(2);
  if (!version || !url || !token) {
    console.error("usage: node script.mjs <ai5|ai6> <url> <token>");
    process.exit(2);
  }
  return { version, url, token };
}

export async function load(version) {
  return await import(version);
}

export function say(value) {
  process.stdout.write(JSON.stringify(value) + "\n");
}

/** The version hint parley reads (X-Parley-AI-SDK) for the aliased package. */
export function hint(version) {
  return version === "ai6" ? { "X-Parley-AI-SDK": "6" } : {};
}

export function transport(ai, { version, url, token, api = "/api/chat", fetch }) {
  return new ai.DefaultChatTransport({
    api: url + api,
    headers: { Authorization: `Bearer ${token}`, ...hint(version) },
    ...(fetch ? { fetch } : {}),
  });
}

/** What useChat keeps in React state, kept in memory. */
export class MemoryState {
  constructor(messages = []) {
    this.messages = messages;
    this.status = "ready";
    this.error = undefined;
  }
  pushMessage = (message) => {
    this.messages = this.messages.concat(message);
  };
  popMessage = () => {
    this.messages = this.messages.slice(0, -1);
  };
  replaceMessage = (index, message) => {
    this.messages = [...this.messages.slice(0, index), message, ...this.messages.slice(index + 1)];
  };
  snapshot = (value) => structuredClone(value);
}

export function chat(ai, options, extra = {}) {
  class Chat extends ai.AbstractChat {}
  const errors = [];
  const instance = new Chat({
    id: options.chatId ?? "compat-chat",
    transport: transport(ai, options),
    state: new MemoryState(options.messages ?? []),
    onError: (error) => errors.push(String(error?.message ?? error)),
    ...extra,
  });
  instance.errors = errors;
  return instance;
}

export function summary(c) {
  return { status: c.status, error: c.error ? String(c.error.message) : null, errors: c.errors, messages: c.messages };
}

export async function until(predicate, what, ms = 5000) {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
