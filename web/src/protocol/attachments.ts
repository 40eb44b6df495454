/**
 * Images: uploaded with `POST /attachments` before the message that carries their ids, and
 * shown from `GET /attachments/{id}`. The upload's body is the file itself, with its
 * `Content-Type` and its name in `?name=` (not a form, which a cross-site page could post).
 * Signed in, the session cookie says whose they are; in open mode the page names itself with
 * `client_id`, as on the socket. No DOM beyond XMLHttpRequest (fetch cannot report upload
 * progress).
 */
import type { WireAttachment } from "./types";

/** The server's default `max_attachment_bytes`; its 413 says so when it is set lower. */
export const MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024;
/** Images one message may carry (protocol: `attachments`, at most 8). */
export const MAX_ATTACHMENTS = 8;

let owner: string | null = null;

/** Open mode: every attachment URL names the owner as the socket does; null when signed in. */
export function setAttachmentOwner(clientId: string | null): void {
  owner = clientId;
}

/** `?…` with `params` and, in open mode, the owner's `client_id` (uploads, imports). */
export function ownerQuery(params: Record<string, string>): string {
  const search = new URLSearchParams(params);
  if (owner !== null) search.set("client_id", owner);
  const text = search.toString();
  return text === "" ? "" : `?${text}`;
}

export function attachmentUrl(id: string): string {
  return `/attachments/${encodeURIComponent(id)}${ownerQuery({})}`;
}

/** An upload refused or failed: the server's error code (or `connection`) and its words. */
export class UploadError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status: number,
  ) {
    super(message);
    this.name = "UploadError";
  }
}

/** Upload one image; `onProgress` gets the fraction sent. Rejects with an UploadError. */
export function uploadAttachment(
  file: File,
  onProgress: (fraction: number) => void,
  signal?: AbortSignal,
): Promise<WireAttachment> {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("POST", `/attachments${ownerQuery({ name: file.name || "image" })}`);
    request.setRequestHeader("Content-Type", file.type || "application/octet-stream");
    request.responseType = "json";
    request.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable && event.total > 0) onProgress(event.loaded / event.total);
    });
    request.addEventListener("load", () => {
      const body: unknown = request.response;
      if (request.status === 201 && isAttachment(body)) {
        resolve(body);
        return;
      }
      const error = (body as { error?: { code?: unknown; message?: unknown } } | null)?.error;
      const code = typeof error?.code === "string" ? error.code : `http_${request.status}`;
      const message = typeof error?.message === "string" ? error.message : request.statusText;
      reject(new UploadError(code, message, request.status));
    });
    request.addEventListener("error", () => reject(new UploadError("connection", "network error", 0)));
    request.addEventListener("abort", () => reject(new UploadError("aborted", "aborted", 0)));
    signal?.addEventListener("abort", () => request.abort());
    request.send(file);
  });
}

function isAttachment(body: unknown): body is WireAttachment {
  const value = body as Partial<WireAttachment> | null;
  return typeof value?.id === "string" && typeof value.media_type === "string";
}
