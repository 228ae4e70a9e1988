// @ag-ui/client's HttpAgent (1.0.0) against a live parley's POST /ag-ui.
// Usage: node ag_ui.mjs <parley URL> <token> <scenario JSON>
// scenario: {"threadId": id, "runs": [run]}; each run, in order, on the same agent:
//   {"runId": id, "user"?: text, "tools"?: [AG-UI Tool],
//    "toolResults"?: {toolName: content}   (a tool message for each unanswered call of that tool),
//    "approve"?: true|false                (resume every pending interrupt with that answer)}
// The last line on stdout is JSON: {"result": {"runs": [{events, error, outcome, interrupts}],
// "messages": the agent's messages at the end}}.
import { randomUUID } from "node:crypto";
import { HttpAgent } from "@ag-ui/client";
import { say } from "./lib.mjs";

const [url, token, raw] = process.argv.slice(2);
if (!url || !token || !raw) {
  console.error("usage: node ag_ui.mjs <url> <token> <scenario JSON>");
  process.exit(2);
}
const scenario = JSON.parse(raw);

const agent = new HttpAgent({
  url: url + "/ag-ui",
  headers: { Authorization: `Bearer ${token}` },
  threadId: scenario.threadId,
});

/** Tool messages answering the calls of ``name`` that no tool message answers yet. */
function toolMessages(results) {
  const answered = new Set(agent.messages.filter((m) => m.role === "tool").map((m) => m.toolCallId));
  const out = [];
  for (const message of agent.messages) {
    for (const call of message.toolCalls ?? []) {
      if (!answered.has(call.id) && call.function.name in results) {
        out.push({ id: randomUUID(), role: "tool", toolCallId: call.id, content: results[call.function.name] });
      }
    }
  }
  return out;
}

const runs = [];
for (const step of scenario.runs) {
  if (step.user !== undefined) {
    agent.addMessage({ id: randomUUID(), role: "user", content: step.user });
  }
  if (step.toolResults !== undefined) {
    agent.addMessages(toolMessages(step.toolResults));
  }
  const resume =
    step.approve === undefined
      ? undefined
      : agent.pendingInterrupts.map((i) => ({
          interruptId: i.id,
          status: "resolved",
          payload: { approved: step.approve },
        }));
  const seen = { events: [], error: null, outcome: null, interrupts: [] };
  const subscriber = {
    onEvent: ({ event }) => {
      seen.events.push(event);
    },
    onRunFinishedEvent: (params) => {
      seen.outcome = params.outcome;
      seen.interrupts = params.interrupts ?? [];
    },
    onRunFailed: ({ error }) => {
      seen.error = String(error?.message ?? error);
      return { stopPropagation: true };
    },
  };
  try {
    await agent.runAgent({ runId: step.runId, tools: step.tools ?? [], resume }, subscriber);
  } catch (error) {
    seen.error = String(error?.message ?? error);
  }
  runs.push(seen);
}
say({ result: { runs, messages: agent.messages } });
