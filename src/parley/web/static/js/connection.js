// The banner over the thread that says how a run's stream is doing: reconnecting, resumed (it
// hides itself), or lost with a button to try again.

import { h, icon } from "./util.js";

const box = () => document.getElementById("conn");
let timer = 0;

export function showConnection(state, detail, retry) {
  const banner = box();
  clearTimeout(timer);
  if (state === "reconnecting") {
    banner.className = "conn conn-warn";
    banner.replaceChildren(h("span", { class: "spinner" }), `Connection lost · reconnecting (attempt ${detail.attempt})…`);
    banner.hidden = false;
  } else if (state === "resumed") {
    banner.className = "conn conn-ok";
    const from = detail.lastEventId ? ` from event ${detail.lastEventId}` : "";
    banner.replaceChildren(icon("check"), `Reconnected · resumed${from}`);
    banner.hidden = false;
    timer = setTimeout(hideConnection, 2500);
  } else if (state === "lost") {
    banner.className = "conn conn-error";
    const button = h("button", { type: "button", class: "btn btn-sm", onclick: retry }, "Retry");
    banner.replaceChildren(icon("alert"), `Connection lost: ${detail.reason || ""}`, button);
    banner.hidden = false;
  } else if (banner.classList.contains("conn-warn")) {
    hideConnection();
  }
}

export function hideConnection() {
  box().hidden = true;
}
