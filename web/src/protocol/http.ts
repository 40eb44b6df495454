/**
 * JSON over HTTP to liaotian's routes: `call()` resolves with the answer's JSON, or rejects
 * with an `ApiError` carrying the server's error code (`connection` when no answer came,
 * `http_<status>` when the answer had no code). The session is the HttpOnly cookie the
 * browser sends by itself (with its Origin header on every method but GET).
 */
export class ApiError extends Error {
  constructor(
    readonly code: string,
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

export async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  let response: Response;
  try {
    response = await fetch(path, {
      method,
      headers: { Accept: "application/json", ...(body === undefined ? {} : { "Content-Type": "application/json" }) },
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch (error) {
    throw new ApiError("connection", 0, String(error));
  }
  let answer: unknown = null;
  try {
    answer = response.status === 204 ? null : await response.json();
  } catch {
    answer = null;
  }
  if (!response.ok) {
    const error = (answer as { error?: { code?: unknown; message?: unknown } } | null)?.error;
    const code = typeof error?.code === "string" ? error.code : `http_${response.status}`;
    throw new ApiError(code, response.status, typeof error?.message === "string" ? error.message : code);
  }
  return answer as T;
}

