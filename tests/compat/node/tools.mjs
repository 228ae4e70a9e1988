// A server-run tool, read with readUIMessageStream straight from the transport.
import { args, load, say, transport } from "./lib.mjs";

const options = args();
const ai = await load(options.version);
const stream = await transport(ai, options).sendMessages({
  chatId: "compat-tools",
  messages: [{ id: "u1", role: "user", parts: [{ type: "text", text: "Weather in Paris?" }] }],
  trigger: "submit-message",
  messageId: undefined,
  abortSignal: undefined,
});
let last = null;
for await (const message of ai.readUIMessageStream({ stream })) {
  last = message;
}
say({ result: { message: last } });
