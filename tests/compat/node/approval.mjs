// A tool that needs approval. v6: tool-approval-request, addToolApprovalResponse and the
// automatic resubmit. v5: the data-tool-approval part, answered in the next request's body.
import { args, chat, load, say, summary, until } from "./lib.mjs";

const options = args();
const ai = await load(options.version);
const v6 = options.version === "ai6";
const extra = v6
  ? { sendAutomaticallyWhen: ai.lastAssistantMessageIsCompleteWithApprovalResponses }
  : {};
const c = chat(ai, { ...options, chatId: "compat-approval" }, extra);
await c.sendMessage({ text: "Weather in Paris?" });
const asked = structuredClone(c.messages);
const parts = c.lastMessage.parts;
if (v6) {
  const part = parts.find((p) => p.state === "approval-requested");
  await c.addToolApprovalResponse({ id: part.approval.id, approved: true });
  await until(
    () => c.status === "ready" && c.lastMessage.parts.some((p) => p.state === "output-available"),
    "the continuation",
  );
  await until(() => c.status === "ready" && c.lastMessage.parts.some((p) => p.type === "text"), "the text");
} else {
  const part = parts.find((p) => p.type === "data-tool-approval");
  await c.sendMessage(undefined, { body: { toolApprovals: [{ id: part.id, approved: true }] } });
}
say({ result: { asked, ...summary(c) } });
