/** A conversation as a file: Markdown to read, JSON to keep in liaotian's export format (its
 * active path, which the server's import takes back). Pure functions, no DOM. */
import type { Conversation, Message } from "./types";

export interface ExportLabels {
  you: string;
  assistant: string;
  status: (status: Message["status"]) => string;
  thinking: string;
  sources: string;
  images: string;
}

export function toMarkdown(conversation: Conversation, messages: Message[], labels: ExportLabels): string {
  const lines = [`# ${conversation.title}`, ""];
  if (conversation.system_prompt) {
    lines.push("> " + conversation.system_prompt.split("\n").join("\n> "), "");
  }
  for (const message of messages) {
    const who = message.role === "user" ? labels.you : labels.assistant;
    const model = message.role === "assistant" && message.model ? ` · ${message.model}` : "";
    const status =
      message.role === "assistant" && message.status !== "completed" ? ` · ${labels.status(message.status)}` : "";
    lines.push(`## ${who}${model}${status}`, "");
    if (message.attachments.length > 0) {
      lines.push(`*${labels.images}: ${message.attachments.map((image) => image.name).join(", ")}*`, "");
    }
    if (message.reasoning !== "") {
      lines.push(`*${labels.thinking}*`, "", "> " + message.reasoning.trim().split("\n").join("\n> "), "");
    }
    lines.push(message.content, "");
    if (message.sources.length > 0) {
      lines.push(`**${labels.sources}**`, "");
      for (const source of message.sources) {
        const title = (source.title || source.url).replace(/\s+/g, " ").replace(/[[\]]/g, "\\$&");
        lines.push(`${source.index}. [${title}](<${source.url.replace(/[<>\s]/g, encodeURIComponent)}>)`);
      }
      lines.push("");
    }
  }
  return lines.join("\n");
}

export function toJson(conversation: Conversation, messages: Message[]): string {
  const document = {
    format: "liaotian.conversation",
    version: 1,
    // Seconds since the epoch, as in the server's exports (docs/protocol.md).
    exported_at: Date.now() / 1000,
    conversation: {
      id: conversation.id,
      title: conversation.title,
      system_prompt: conversation.system_prompt,
      model: conversation.model,
      created_at: conversation.created_at,
      updated_at: conversation.updated_at,
      pinned: conversation.pinned ?? false,
      archived: conversation.archived ?? false,
      active_message_id: messages.at(-1)?.id ?? null,
    },
    // The active path: each message follows the one before it.
    messages: messages.map((message, index) => ({
      id: message.id,
      parent_id: message.parentId ?? messages[index - 1]?.id ?? null,
      role: message.role,
      content: message.content,
      status: message.status,
      model: message.model,
      finish_reason: message.finishReason,
      usage: message.usage,
      ttft_ms: message.ttftMs,
      duration_ms: message.durationMs,
      error: message.error,
      created_at: message.createdAt,
      reasoning: message.reasoning === "" ? null : message.reasoning,
      sources: message.sources,
      attachments: message.attachments,
      thinking_ms: message.thinkingMs,
    })),
  };
  return JSON.stringify(document, null, 2) + "\n";
}

/** A file name from the title: letters and digits of any script, the rest as dashes. */
export function fileName(conversation: Conversation, extension: string): string {
  const stem = conversation.title
    .normalize("NFKC")
    .replace(/[^\p{L}\p{N}]+/gu, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 60);
  return `${stem || "conversation"}.${extension}`;
}
