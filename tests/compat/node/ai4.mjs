// ai@4 (4.3.19) against a live parley: callChatApi, what ai@4's useChat calls, sends the body
// useChat builds; processDataStream, ai@4's own parser, reads the same bytes part by part.
// Usage: node ai4.mjs <parley URL> <token> <scenario JSON>
// scenario: {"api": "/mcp/chat-v2", "id": chat id, "messages": [ai@4 Message], "body"?: {...},
//            "resume"?: true, "reload"?: true, "maxSteps"?: n, "toolResults"?: {toolName: result}}
//   resume: experimental_resume's GET {api}?chatId={id}; reload: useChat's reload() (the messages
//   without a last assistant message); maxSteps: useChat's re-posts while its
//   shouldResubmitMessages says so; toolResults: what onToolCall answers (client-side tools).
// The last line on stdout is JSON: {"result": {responses, parts, parseError, message, data,
// finished, error}}.
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import { say } from "./lib.mjs";

const [url, token, raw] = process.argv.slice(2);
if (!url || !token || !raw) {
  console.error("usage: node ai4.mjs <url> <token> <scenario JSON>");
  process.exit(2);
}
const scenario = JSON.parse(raw);

// @ai-sdk/ui-utils as ai@4 itself resolves it (ai re-exports processDataStream, not callChatApi)
const fromAi = createRequire(createRequire(import.meta.url).resolve("ai4"));
const uiUtilsDir = fromAi.resolve("@ai-sdk/ui-utils/package.json").replace(/package\.json$/, "");
const ui = await import(pathToFileURL(uiUtilsDir + "dist/index.mjs").href);
const { processDataStream } = await import("ai4");

/** The messages as @ai-sdk/react 1.2.12 (ai@4.3.19's useChat) puts them in the body. */
function requestMessages(messages) {
  return messages.map(
    ({ role, content, experimental_attachments, data, annotations, toolInvocations, parts }) => ({
      role,
      content,
      ...(experimental_attachments !== undefined && { experimental_attachments }),
      ...(data !== undefined && { data }),
      ...(annotations !== undefined && { annotations }),
      ...(toolInvocations !== undefined && { toolInvocations }),
      ...(parts !== undefined && { parts }),
    }),
  );
}

const PARTS = {
  onTextPart: "text",
  onReasoningPart: "reasoning",
  onReasoningSignaturePart: "reasoning_signature",
  onRedactedReasoningPart: "redacted_reasoning",
  onSourcePart: "source",
  onFilePart: "file",
  onDataPart: "data",
  onErrorPart: "error",
  onToolCallStreamingStartPart: "tool_call_streaming_start",
  onToolCallDeltaPart: "tool_call_delta",
  onToolCallPart: "tool_call",
  onToolResultPart: "tool_result",
  onMessageAnnotationsPart: "message_annotations",
  onFinishMessagePart: "finish_message",
  onFinishStepPart: "finish_step",
  onStartStepPart: "start_step",
};
const HEADERS = ["content-type", "x-vercel-ai-data-stream", "x-chat-session-id", "x-error-code"];

const responses = [];
const parts = [];
let parseError = null;
let reading = Promise.resolve();

/** fetch, with a copy of each response body read by processDataStream. */
async function teeFetch(input, init) {
  const response = await fetch(input, init);
  const headers = Object.fromEntries(HEADERS.map((name) => [name, response.headers.get(name)]));
  responses.push({ status: response.status, headers });
  if (!response.ok || !response.body) return response;
  const [mine, theirs] = response.body.tee();
  const callbacks = Object.fromEntries(
    Object.entries(PARTS).map(([callback, type]) => [callback, (value) => parts.push([type, value])]),
  );
  reading = processDataStream({ stream: mine, ...callbacks }).catch((error) => {
    parseError = String(error?.message ?? error);
  });
  return new Response(theirs, { status: response.status, headers: response.headers });
}

let messages = ui.fillMessageParts(scenario.messages ?? []);
if (scenario.reload && messages.at(-1)?.role === "assistant") messages = messages.slice(0, -1);
const maxSteps = scenario.maxSteps ?? 1;
let last = null;
let finished = null;
let error = null;
try {
  await chatLoop();
} catch (caught) {
  error = String(caught?.message ?? caught);
}
await reading;
say({ result: { responses, parts, parseError, message: last?.message ?? null, data: last?.data ?? [], finished, error } });

/** useChat's triggerRequest: one request, then another while shouldResubmitMessages says so. */
async function chatLoop() {
  let requestType = scenario.resume ? "resume" : "generate";
  while (true) {
    const count = messages.length;
    const maxStep = ui.extractMaxToolInvocationStep(messages.at(-1)?.toolInvocations);
    last = null;
    await callChatApi(requestType);
    await reading;
    if (last !== null) {
      const kept = last.replaceLastMessage ? messages.slice(0, -1) : messages;
      messages = [...kept, last.message];
    }
    const again = ui.shouldResubmitMessages({
      originalMaxToolInvocationStep: maxStep,
      originalMessageCount: count,
      maxSteps,
      messages,
    });
    if (!again) return;
    requestType = "generate";
  }
}

async function callChatApi(requestType) {
  await ui.callChatApi({
    api: url + (scenario.api ?? "/mcp/chat-v2"),
    body: { id: scenario.id, messages: requestMessages(messages), ...scenario.body },
    streamProtocol: "data",
    headers: { Authorization: `Bearer ${token}` },
    abortController: () => null,
    restoreMessagesOnFailure() {},
    onUpdate(update) {
      last = update;
    },
    onToolCall({ toolCall }) {
      return scenario.toolResults?.[toolCall.toolName];
    },
    onFinish(message, { usage, finishReason }) {
      finished = { message, usage, finishReason };
    },
    fetch: teeFetch,
    lastMessage: messages.at(-1),
    requestType,
  });
}
