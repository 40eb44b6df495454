// Minimal protocol-v1 page: streams answers as plain text (never HTML).
const $ = (id) => document.getElementById(id);
let clientId = localStorage.getItem("liaotian.client_id");
if (!clientId) {
  clientId = "web_" + crypto.randomUUID().replaceAll("-", "");
  localStorage.setItem("liaotian.client_id", clientId);
}
let conversationId = new URL(location.href).searchParams.get("c");
let streaming = null;
const bubbles = new Map();
let ws;
let backoff = 500;

function bubble(role, text) {
  const div = document.createElement("div");
  div.className = "message " + role;
  div.textContent = text;
  $("messages").appendChild(div);
  $("messages").scrollTop = $("messages").scrollHeight;
  return div;
}

function setStatus(text) { $("status").textContent = text; }

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  ws = new WebSocket(`${scheme}://${location.host}/ws?client_id=${encodeURIComponent(clientId)}`);
  ws.onopen = () => {
    backoff = 500;
    setStatus("connected");
    ws.send(JSON.stringify({ type: "models.list" }));
    if (conversationId) ws.send(JSON.stringify({ type: "conversation.history", conversation_id: conversationId }));
  };
  ws.onclose = () => {
    setStatus("reconnecting…");
    setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, 10000);
  };
  ws.onmessage = (event) => handle(JSON.parse(event.data));
}

function handle(frame) {
  switch (frame.type) {
    case "models": {
      const select = $("model");
      select.replaceChildren();
      for (const model of frame.models) {
        const option = new Option(model.available ? model.id : `${model.id} (needs ${model.reason})`, model.id);
        option.disabled = !model.available;
        option.selected = model.id === frame.default;
        select.appendChild(option);
      }
      break;
    }
    case "conversation.history":
      $("messages").replaceChildren();
      for (const message of frame.messages) {
        const div = bubble(message.role, message.content);
        if (message.role === "assistant" && message.status === "streaming") {
          ws.send(JSON.stringify({ type: "chat.subscribe", message_id: message.id }));
        }
        bubbles.set(message.id, div);
      }
      break;
    case "reply.started":
      if (conversationId && frame.conversation_id !== conversationId) break;
      conversationId = frame.conversation_id;
      history.replaceState(null, "", `?c=${conversationId}`);
      if (!bubbles.has(frame.message_id)) bubbles.set(frame.message_id, bubble("assistant", ""));
      bubbles.get(frame.message_id).textContent = "";
      streaming = frame.message_id;
      $("stop").hidden = false;
      break;
    case "reply.delta": {
      const div = bubbles.get(frame.message_id);
      if (div) { div.textContent += frame.text; $("messages").scrollTop = $("messages").scrollHeight; }
      break;
    }
    case "reply.done": {
      const div = bubbles.get(frame.message_id);
      if (div) {
        const meta = document.createElement("div");
        meta.className = "meta";
        meta.textContent = frame.status + (frame.error ? ": " + frame.error.message : "");
        div.appendChild(meta);
        if (frame.status === "error") div.classList.add("error");
      }
      if (streaming === frame.message_id) { streaming = null; $("stop").hidden = true; }
      break;
    }
    case "error":
      bubble("error", frame.message);
      break;
  }
}

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("input").value;
  if (!text.trim() || ws.readyState !== WebSocket.OPEN) return;
  bubble("user", text);
  const frame = { type: "chat.send", message: text, model: $("model").value || undefined };
  if (conversationId) frame.conversation_id = conversationId;
  ws.send(JSON.stringify(frame));
  $("input").value = "";
});
$("input").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); $("composer").requestSubmit(); }
});
$("stop").addEventListener("click", () => {
  if (streaming) ws.send(JSON.stringify({ type: "chat.cancel", message_id: streaming }));
});
$("new-chat").addEventListener("click", () => {
  conversationId = null;
  history.replaceState(null, "", location.pathname);
  $("messages").replaceChildren();
});
connect();
