// Follows one run's native SSE stream; when the connection drops before the run ends, it resumes
// with GET /api/runs/{run_id}/events and the Last-Event-ID of the last event it saw.

import { enc } from "./api.js";
import { readSSE } from "./sse.js";
import { sleep } from "./util.js";

const TERMINAL = new Set(["done", "error"]);
const MAX_ATTEMPTS = 30;

export class RunStream {
  /**
   * @param {import("./api.js").Api} api
   * @param {{onEvent: (type: string, data: object, id: string|null) => void,
   *          onState: (state: string, detail?: object) => void}} handlers
   */
  constructor(api, { onEvent, onState }) {
    this.api = api;
    this.onEvent = onEvent;
    this.onState = onState;
    this.runId = null;
    this.lastEventId = null;
    this.ended = false;
    this.closed = false;
    this.connection = null;
    this.retryNow = null;
  }

  /** Read `response` (the first connection), then reconnect until the run ends. */
  async follow(response) {
    this.runId = this.runId || response?.headers.get("X-Run-Id") || null;
    if (!response && this.runId) response = await this.connect(false);
    let attempt = 0;
    while (!this.closed) {
      if (response) {
        const sawEvents = await this.consume(response);
        if (sawEvents) attempt = 0;
      }
      if (this.ended || this.closed) break;
      if (!this.runId) {
        this.onState("lost", { reason: "the stream ended before the run started" });
        return;
      }
      attempt += 1;
      if (attempt > MAX_ATTEMPTS) {
        this.onState("lost", { reason: "could not reconnect" });
        await new Promise((resolve) => (this.retryNow = resolve));
        attempt = 1;
      }
      this.onState("reconnecting", { attempt });
      await Promise.race([sleep(Math.min(400 * 2 ** (attempt - 1), 5000)), new Promise((r) => (this.retryNow = r))]);
      response = await this.connect(true);
    }
    this.onState("idle");
  }

  /** A fresh AbortSignal for the next connection (the first one is made by the caller). */
  signal() {
    this.connection = new AbortController();
    return this.connection.signal;
  }

  /** GET the run's events after the last one seen; `resumed` reports it as a reconnection. */
  async connect(resumed) {
    const headers = this.lastEventId ? { "Last-Event-ID": this.lastEventId } : {};
    try {
      const response = await this.api.stream("GET", `/api/runs/${enc(this.runId)}/events`, undefined, {
        headers,
        signal: this.signal(),
      });
      if (resumed) this.onState("resumed", { lastEventId: this.lastEventId });
      return response;
    } catch (error) {
      if (error?.status === 404 || error?.status === 401 || error?.status === 403) {
        this.ended = true;
        this.onState("lost", { reason: error.message });
      }
      return null;
    }
  }

  /** Read one connection. Returns whether it carried any event. */
  async consume(response) {
    let saw = false;
    try {
      for await (const sse of readSSE(response.body)) {
        if (this.closed) return saw;
        if (sse.data === "[DONE]") {
          this.ended = true;
          return saw;
        }
        saw = true;
        if (sse.id) this.lastEventId = sse.id;
        let data;
        try {
          data = JSON.parse(sse.data);
        } catch {
          continue;
        }
        const type = sse.event !== "message" ? sse.event : data.type;
        if (type === "start" && data.run_id) this.runId = data.run_id;
        this.onEvent(type, data, sse.id);
        if (TERMINAL.has(type)) this.ended = true;
      }
    } catch {
      // A dropped connection (or one we aborted to simulate that): reconnect unless closed.
    }
    return saw;
  }

  /** Simulate a network drop (tests, and the "reconnect" button). */
  drop() {
    this.connection?.abort();
    this.retryNow?.();
  }

  /** Stop listening (the run goes on on the server). */
  close() {
    this.closed = true;
    this.connection?.abort();
    this.retryNow?.();
  }
}
