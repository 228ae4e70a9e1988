// Folds native SSE events into a message's parts, in the shapes the server stores (Vercel UIMessage
// parts), so that a live message and a reloaded one render with the same code.
//
// Returns what changed: {part: index} for one part, {footer: true} for status and usage.

function openText(message, kind) {
  const last = message.parts[message.parts.length - 1];
  if (last && last.type === kind) return message.parts.length - 1;
  message.parts.push({ type: kind, text: "" });
  return message.parts.length - 1;
}

function toolPart(message, toolCallId, toolName) {
  let index = message.parts.findIndex((p) => p.type === "dynamic-tool" && p.toolCallId === toolCallId);
  if (index === -1) {
    message.parts.push({ type: "dynamic-tool", toolCallId, toolName, state: "input-streaming", input: null });
    index = message.parts.length - 1;
  }
  return index;
}

const HANDLERS = {
  content(message, data) {
    const index = openText(message, "text");
    message.parts[index].text += data.content;
    if (!message.waiting) return { part: index };
    message.waiting = "";
    return { part: index, footer: true };
  },
  reasoning(message, data) {
    const index = openText(message, "reasoning");
    message.parts[index].text += data.content;
    return { part: index };
  },
  tool_call_start(message, data) {
    const index = toolPart(message, data.tool_call_id, data.tool_name);
    Object.assign(message.parts[index], { state: "input-available", input: data.args });
    return { part: index };
  },
  tool_approval_required(message, data) {
    const index = toolPart(message, data.tool_call_id, data.tool_name);
    const part = message.parts[index];
    part.input = part.input ?? data.args;
    part.state = "approval-requested";
    part.server = data.server ?? part.server;
    part.approval = { id: data.approval_id, expires_at: data.expires_at };
    return { part: index };
  },
  tool_approval_resolved(message, data) {
    const index = toolPart(message, data.tool_call_id, data.tool_name);
    const part = message.parts[index];
    part.approval = { ...(part.approval || {}), approved: data.approved, reason: data.reason, by: data.by };
    part.state = data.approved ? "approval-responded" : "output-denied";
    return { part: index };
  },
  tool_progress(message, data) {
    if (!data.tool_call_id) {
      // no tool's: the model's own queue ("waiting for the model: position 2 in the queue")
      message.waiting = data.message;
      return { footer: true };
    }
    const index = toolPart(message, data.tool_call_id, data.tool_name);
    message.parts[index].progress = { message: data.message, progress: data.progress, total: data.total };
    return { part: index };
  },
  tool_result(message, data) {
    const index = toolPart(message, data.tool_call_id, data.tool_name);
    Object.assign(message.parts[index], { state: "output-available", output: data.result, progress: null });
    return { part: index };
  },
  tool_error(message, data) {
    const index = toolPart(message, data.tool_call_id, data.tool_name);
    const part = message.parts[index];
    part.state = part.state === "output-denied" ? "output-denied" : "output-error";
    part.errorText = data.error;
    part.progress = null;
    return { part: index };
  },
  elicitation(message, data, runId) {
    const existing = message.parts.findIndex((p) => p.type === "x-elicitation" && p.id === data.elicitation_id);
    if (existing !== -1) return { part: existing };
    message.parts.push(elicitationPart(data, runId));
    return { part: message.parts.length - 1 };
  },
  elicitation_resolved(message, data) {
    const index = message.parts.findIndex((p) => p.type === "x-elicitation" && p.id === data.elicitation_id);
    if (index === -1) return null;
    message.parts[index].state = data.action;
    return { part: index };
  },
  awaiting_input(message) {
    message.status = "awaiting";
    return { footer: true };
  },
  error(message, data) {
    message.status = "error";
    message.error = data.error;
    return { footer: true };
  },
  notice(message, data) {
    message.notice = data.message;
    return { footer: true };
  },
  done(message, data) {
    message.status = data.finish_reason === "cancelled" ? "cancelled" : "complete";
    const used = data.tokensUsed || {};
    message.usage = {
      prompt_tokens: used.prompt || 0,
      completion_tokens: used.completion || 0,
      total_tokens: used.total || 0,
    };
    return { footer: true };
  },
};

/** A client-only part for a question a tool asked (elicitation); answered ones drop out on reload. */
export function elicitationPart(data, runId) {
  return {
    type: "x-elicitation",
    id: data.elicitation_id,
    runId: data.run_id || runId,
    message: data.message,
    schema: data.requested_schema || { type: "object", properties: {} },
    state: "pending",
  };
}

/** Apply one event to `message` (mutating it); null when the event changes nothing visible. */
export function applyEvent(message, type, data, runId) {
  const handler = HANDLERS[type];
  if (!handler) return null;
  if (message.status !== "streaming" && !["done", "error", "awaiting_input"].includes(type)) {
    message.status = "streaming";
  }
  return handler(message, data, runId);
}

export function textOf(message) {
  return (message.parts || [])
    .filter((p) => p.type === "text")
    .map((p) => p.text)
    .join("");
}

/** Why a message cannot be sent while a run is on (its reply has these `parts`), said rather
 * than ignored. */
export function whySendingWaits(parts) {
  if (parts.some((p) => p.state === "approval-requested")) {
    return "A tool is waiting for your approval above: approve or deny it (or stop the reply with Esc), then send.";
  }
  if (parts.some((p) => p.type === "x-elicitation" && p.state === "pending")) {
    return "A tool is asking you something above: answer it (or stop the reply with Esc), then send.";
  }
  return "The reply is still coming: wait for it, or stop it (Esc), then send.";
}
