// A stream cut after its first text, then resumeStream() (GET {api}/{id}/stream) once idle
// (204) and once while the run is still going. Prints {"step": "resumed"} when the resume
// request is answered, so that the test lets the run finish only then.
import { args, chat, load, say, summary, transport } from "./lib.mjs";

const options = args();
const ai = await load(options.version);
const idle = chat(ai, { ...options, chatId: "compat-resume" });
await idle.resumeStream();
say({ step: "idle", status: idle.status, messages: idle.messages.length });

const user = { id: "u1", role: "user", parts: [{ type: "text", text: "Tell me" }] };
const abort = new AbortController();
const stream = await transport(ai, options).sendMessages({
  chatId: "compat-resume",
  messages: [user],
  trigger: "submit-message",
  messageId: undefined,
  abortSignal: abort.signal,
});
const reader = stream.getReader();
const seen = [];
while (true) {
  const { value, done } = await reader.read();
  if (done) break;
  seen.push(value.type);
  if (value.type === "text-delta") break;
}
abort.abort();
say({ step: "partial", seen });

const fetchAndTell = async (input, init) => {
  const response = await fetch(input, init);
  if ((init?.method ?? "GET") === "GET") say({ step: "resumed", status: response.status });
  return response;
};
const c = chat(ai, { ...options, chatId: "compat-resume", messages: [user], fetch: fetchAndTell });
await c.resumeStream();
say({ result: { idleStatus: idle.status, ...summary(c) } });
