/** The page's entry point: theme and language first, then the connection, then the UI. */
// highlight.js's light and dark themes, each scoped to its data-theme by vite.config.ts.
import "highlight.js/styles/github.css";
import "highlight.js/styles/github-dark.css";
import "./styles/index.css";
import { App } from "./components/app";
import { detectLocale, setLocale } from "./i18n";
import { ProtocolClient } from "./protocol/client";
import { ChatController } from "./state/chat";
import { clientId } from "./state/preferences";
import { initTheme } from "./theme";

initTheme();
setLocale(detectLocale());

const scheme = location.protocol === "https:" ? "wss" : "ws";
const client = new ProtocolClient({
  url: `${scheme}://${location.host}/ws?client_id=${encodeURIComponent(clientId())}`,
});
const controller = new ChatController(client);

// Don't wait for the backoff when the network or the tab comes back.
window.addEventListener("online", () => client.reconnectNow());
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") client.reconnectNow();
});

const app = document.createElement("lt-app") as App;
app.controller = controller;
document.getElementById("root")?.replaceChildren(app);
controller.start();

declare global {
  interface HTMLElementTagNameMap {
    "lt-app": App;
  }
}
