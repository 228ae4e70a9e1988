// The native API over fetch: a bearer token or the session cookie, JSON bodies, parley's error shape.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function errorOf(response) {
  let code = response.headers.get("X-Error-Code") || `HTTP_${response.status}`;
  let message = response.statusText || "request failed";
  try {
    const body = await response.json();
    const error = body?.error;
    if (error && typeof error === "object") {
      code = error.code || code;
      message = error.message || message;
    } else if (typeof body?.detail === "string") {
      message = body.detail;
    }
  } catch {
    // not JSON: keep the status text
  }
  return new ApiError(response.status, code, message);
}

export class Api {
  /** @param {() => string|null} getToken @param {(e: ApiError) => void} onUnauthorized */
  constructor(getToken, onUnauthorized) {
    this.getToken = getToken;
    this.onUnauthorized = onUnauthorized;
  }

  headers(extra = {}, json = false) {
    // the session cookie authorises a state-changing request only with this header (CSRF)
    const headers = { "X-Requested-With": "parley", ...extra };
    const token = this.getToken();
    if (token) headers.Authorization = `Bearer ${token}`;
    if (json) headers["Content-Type"] = "application/json";
    return headers;
  }

  /** The raw Response of a request; throws ApiError for any non-2xx status. */
  async fetch(method, path, { body, headers, signal } = {}) {
    const hasBody = body !== undefined;
    const response = await fetch(path, {
      method,
      headers: this.headers(headers, hasBody),
      body: hasBody ? JSON.stringify(body) : undefined,
      signal,
      cache: "no-store",
    });
    if (!response.ok) {
      const error = await errorOf(response);
      if (response.status === 401) this.onUnauthorized(error);
      throw error;
    }
    return response;
  }

  async json(method, path, body) {
    const response = await this.fetch(method, path, { body });
    return response.status === 204 ? null : response.json();
  }

  get(path) {
    return this.json("GET", path);
  }
  post(path, body = {}) {
    return this.json("POST", path, body);
  }
  patch(path, body) {
    return this.json("PATCH", path, body);
  }
  put(path, body) {
    return this.json("PUT", path, body);
  }
  delete(path) {
    return this.json("DELETE", path);
  }

  /** A streaming request: the Response, whose body is native SSE. */
  stream(method, path, body, { headers = {}, signal } = {}) {
    return this.fetch(method, path, {
      body,
      signal,
      headers: { Accept: "text/event-stream", ...headers },
    });
  }
}

export const enc = encodeURIComponent;
