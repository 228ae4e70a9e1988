// A server-sent events parser for fetch() bodies (EventSource cannot POST).
//
// It follows the WHATWG event-stream rules: lines end in CRLF, LF or CR (a CR at the end of a chunk
// waits for the next one, in case an LF follows); a blank line dispatches; ":" starts a comment;
// "data" lines join with "\n"; one leading space after the colon is dropped. Bytes are decoded in
// stream mode, so a UTF-8 character split across two chunks comes out whole.

export class SSEParser {
  constructor() {
    this.decoder = new TextDecoder("utf-8");
    this.buffer = "";
    this.reset();
  }

  reset() {
    this.data = [];
    this.event = "";
    this.id = null;
    this.retry = null;
  }

  /** Feed bytes (Uint8Array) or text; returns the events completed by them. */
  feed(chunk) {
    this.buffer += typeof chunk === "string" ? chunk : this.decoder.decode(chunk, { stream: true });
    return this.drain(false);
  }

  /** The end of the stream: a last unterminated event is dropped, as the spec says. */
  end() {
    this.buffer += this.decoder.decode();
    const events = this.drain(true);
    this.reset();
    return events;
  }

  drain(final) {
    const events = [];
    const buf = this.buffer;
    let start = 0;
    for (let i = 0; i < buf.length; i++) {
      const c = buf.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      if (c === 13 && i === buf.length - 1 && !final) break;
      const event = this.line(buf.slice(start, i));
      if (event) events.push(event);
      if (c === 13 && buf.charCodeAt(i + 1) === 10) i++;
      start = i + 1;
    }
    this.buffer = buf.slice(start);
    return events;
  }

  line(text) {
    if (text === "") return this.dispatch();
    if (text.startsWith(":")) return null;
    const colon = text.indexOf(":");
    const field = colon === -1 ? text : text.slice(0, colon);
    let value = colon === -1 ? "" : text.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.event = value;
    else if (field === "id" && !value.includes("\0")) this.id = value;
    else if (field === "retry" && /^\d+$/.test(value)) this.retry = Number(value);
    return null;
  }

  dispatch() {
    const hasData = this.data.length > 0;
    const event = { id: this.id, event: this.event || "message", data: this.data.join("\n") };
    this.data = [];
    this.event = "";
    this.id = null;
    return hasData ? event : null;
  }
}

/** Events of a ReadableStream<Uint8Array>, as an async iterator. */
export async function* readSSE(body) {
  const reader = body.getReader();
  const parser = new SSEParser();
  let finished = false;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      yield* parser.feed(value);
    }
    finished = true;
    yield* parser.end();
  } finally {
    if (finished) reader.releaseLock();
    else reader.cancel().catch(() => {});
  }
}
