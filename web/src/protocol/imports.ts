/**
 * Importing conversations: `POST /conversations/import` with the file itself as the body
 * (liaotian's export format or ChatGPT's `conversations.json`; see docs/protocol.md, "Export
 * and import format"). Like attachments, the body is raw JSON, not a form, and in open mode the
 * page names its owner with `client_id` as the socket does (see attachments.ts).
 */
import { ownerQuery, UploadError } from "./attachments";

export interface ImportOutcome {
  /** Conversations added. */
  imported: number;
  /** Conversations already there (imported before), or not conversations at all. */
  skipped: number;
}

function count(value: unknown): number {
  if (typeof value === "number" && Number.isFinite(value)) return value;
  if (Array.isArray(value)) return value.length;
  return 0;
}

/** Rejects with an UploadError: the server's error code and words, or `connection`. */
export async function importConversations(file: Blob): Promise<ImportOutcome> {
  let response: Response;
  try {
    response = await fetch(`/conversations/import${ownerQuery({})}`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: file,
      cache: "no-store",
    });
  } catch {
    throw new UploadError("connection", "network error", 0);
  }
  let body: unknown = null;
  try {
    body = await response.json();
  } catch {
    // an empty or non-JSON answer: described by its status below
  }
  const fields = (typeof body === "object" && body !== null ? body : {}) as Record<string, unknown>;
  if (response.ok) return { imported: count(fields.imported), skipped: count(fields.skipped) };
  const error = fields.error as { code?: unknown; message?: unknown } | undefined;
  const code = typeof error?.code === "string" ? error.code : `http_${response.status}`;
  const message = typeof error?.message === "string" ? error.message : response.statusText;
  throw new UploadError(code, message, response.status);
}
