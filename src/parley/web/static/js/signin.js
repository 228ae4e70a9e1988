// Signing the page in and out: a bearer token kept in localStorage, a local account's session
// cookie, the one-time link `parley serve` prints, or no sign-in at all (`PARLEY_AUTH=none`).

import { Api } from "./api.js";
import { toast, tokenSubject } from "./util.js";

const TOKEN_KEY = "parley.token";
const $ = (id) => document.getElementById(id);

export class Signin {
  /** `opened()` shows the app once signed in; `closed()` forgets what the app showed. */
  constructor({ opened, closed }) {
    this.token = localStorage.getItem(TOKEN_KEY);
    this.user = null; // the signed-in name of a cookie session (a token's is its `sub`)
    this.opened = opened;
    this.closed = closed;
    this.api = new Api(
      () => this.token,
      () => {
        if (!$("app").hidden) this.signOut("Your session has expired: sign in again.");
      },
    );
  }

  /** Who the page is signed in as, for the header. */
  get who() {
    return this.token ? tokenSubject(this.token) || "signed in" : this.user || "local user";
  }

  wire() {
    $("signout").addEventListener("click", () => this.signOut());
    $("signin-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const token = $("signin-token").value.trim();
      if (token) this.withToken(token);
      else this.withPassword($("signin-user").value.trim(), $("signin-password").value);
    });
  }

  /** The first screen: the link's code when the address has one, else the kept token, else
   * whatever the session says. */
  start() {
    const code = new URLSearchParams(location.search).get("signin");
    if (code) this.withLink(code);
    else if (this.token) this.open();
    else this.withoutToken();
  }

  show(message = "") {
    $("app").hidden = true;
    $("signin").hidden = false;
    const error = $("signin-error");
    error.hidden = !message;
    error.textContent = message;
  }

  async open() {
    $("signin").hidden = true;
    $("app").hidden = false;
    await this.opened();
  }

  async withToken(token) {
    if (!token) return;
    const button = $("signin-submit");
    button.disabled = true;
    this.token = token;
    try {
      await this.api.get("/api/conversations?limit=1");
    } catch (error) {
      this.token = null;
      const text = error.status === 401 ? `This token was refused: ${error.message}` : error.message;
      $("signin-error").textContent = text;
      $("signin-error").hidden = false;
      return;
    } finally {
      button.disabled = false;
    }
    localStorage.setItem(TOKEN_KEY, token);
    $("signin-token").value = "";
    await this.open();
  }

  /** A local account's name and password (`parley user add NAME`) for a session cookie, which
   * the browser then sends with every call and stream (HttpOnly: this page never sees it). */
  async withPassword(user, password) {
    if (!user || !password) {
      this.show("Enter your user name and password.");
      return;
    }
    const button = $("signin-submit");
    button.disabled = true;
    try {
      const session = await new Api(() => null, () => {}).post("/api/auth/signin", { user, password });
      this.user = session.user;
    } catch (error) {
      this.show(error.status === 401 ? "Wrong user name or password." : error.message);
      $("signin-password").select();
      return;
    } finally {
      button.disabled = false;
    }
    $("signin-password").value = "";
    await this.open();
  }

  /** The sign-in link `parley serve` printed (`/?signin=CODE`): the code leaves the address at
   * once, and is exchanged, once, for a token. */
  async withLink(code) {
    const url = new URL(location.href);
    url.searchParams.delete("signin");
    history.replaceState(history.state, "", url);
    let message;
    try {
      const response = await fetch("/api/auth/signin-link", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ code }),
        cache: "no-store",
      });
      const body = await response.json().catch(() => null);
      if (response.ok) {
        this.show();
        await this.withToken(body.token);
        return;
      }
      message = body?.error?.message || "this sign-in link did not work";
    } catch (error) {
      message = error.message;
    }
    if (this.token) {
      await this.open();
      toast(message, "error");
    } else this.show(message);
  }

  /** Without a token the page may still be signed in: by its session cookie, or with
   * `PARLEY_AUTH=none` (one local user, no sign-out). Any other answer (a 401) asks to sign in. */
  async withoutToken() {
    let session;
    try {
      session = await this.api.get("/api/auth/session");
    } catch {
      this.show();
      return;
    }
    this.user = session.via === "none" ? null : session.user;
    $("signout").hidden = session.via === "none";
    await this.open();
  }

  signOut(message = "") {
    this.closed();
    if (!this.token && this.user) {
      // the session ends on the server: its cookie opens nothing any more
      this.api.fetch("POST", "/api/auth/signout").catch(() => {});
    }
    this.user = null;
    this.token = null;
    localStorage.removeItem(TOKEN_KEY);
    this.show(message);
  }
}
