// Two messages through AbstractChat (what useChat wraps): the replies stream in as text parts.
import { args, chat, load, say, summary } from "./lib.mjs";

const options = args();
const ai = await load(options.version);
const c = chat(ai, options);
await c.sendMessage({ text: "Hi" });
await c.sendMessage({ text: "And again" });
say({ result: summary(c) });
