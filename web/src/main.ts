/** The page's entry point: theme and language first, then the session (sign-in or chat). */
// highlight.js's light and dark themes, each scoped to its data-theme by vite.config.ts.
import "highlight.js/styles/github.css";
import "highlight.js/styles/github-dark.css";
import "./styles/index.css";
import type { App } from "./components/app";
import "./components/root";
import { detectLocale, setLocale } from "./i18n";
import type { Me } from "./protocol/auth";
import { setAttachmentOwner } from "./protocol/attachments";
import { ProtocolClient } from "./protocol/client";
import { ChatController } from "./state/chat";
import { clientId } from "./state/preferences";
import { SessionController } from "./state/session";
import { initTheme } from "./theme";

initTheme();
setLocale(detectLocale());

const scheme = location.protocol === "https:" ? "wss" : "ws";

/** Signed in, the session cookie says who we are; in open mode, the browser's client id. */
function socketUrl(me: Me): string {
  const url = `${scheme}://${location.host}/ws`;
  // Images are fetched and uploaded as the same owner as the socket.
  setAttachmentOwner(me.required ? null : clientId());
  return me.required ? url : `${url}?client_id=${encodeURIComponent(clientId())}`;
}

const session = new SessionController((me) => new ChatController(new ProtocolClient({ url: socketUrl(me) })));

// Don't wait for the backoff when the network or the tab comes back.
window.addEventListener("online", () => session.reconnectNow());
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") session.reconnectNow();
});

const root = document.createElement("lt-root");
root.session = session;
document.getElementById("root")?.replaceChildren(root);
void session.start();

declare global {
  interface HTMLElementTagNameMap {
    "lt-app": App;
  }
}
