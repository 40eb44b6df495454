/**
 * The account endpoints over HTTP: who am I, sign in, sign out. No DOM, and no secret ever
 * passes through here: the session is an HttpOnly cookie the browser sends by itself.
 *
 * Contracts:
 * - `fetchMe()` resolves with `{ user, owner, required }` (`user` null with `required` true means
 *   "sign in first"), or rejects when the server could not be asked
 *   (network down, or a server without accounts).
 * - `signIn()` never rejects: it resolves with the user, or with why not (`code` is the
 *   server's error code, or `connection` when the request did not get an answer).
 * - `signOut()` rejects only when the server could not be asked.
 * - `signUp()` resolves with the new (pending) account, or rejects with an `ApiError`.
 */
import { call } from "./http";

export interface Me {
  /** The signed-in user; null when nobody is (open mode, or sign-in missing). */
  user: string | null;
  /** The owner id the WebSocket's `hello` names for that user; null when nobody is signed in. */
  owner: string | null;
  /** Whether the server requires signing in. */
  required: boolean;
  /** The signed-in account's role (`admin` or `user`); null when nobody is signed in. */
  role?: string | null;
  /** Whether the sign-in screen may offer "create an account" (`approval`) or not (`off`). */
  signup?: "off" | "approval";
}

export type SignInResult =
  | { ok: true; user: string; owner: string | null }
  | { ok: false; code: string; status: number };

export class AuthUnavailable extends Error {
  constructor(readonly status: number) {
    super(status === 0 ? "the server could not be reached" : `the server answered ${status}`);
    this.name = "AuthUnavailable";
  }
}

const JSON_HEADERS = { "Content-Type": "application/json", Accept: "application/json" };

async function body(response: Response): Promise<unknown> {
  try {
    return await response.json();
  } catch {
    return null;
  }
}

function field(value: unknown, name: string): unknown {
  return typeof value === "object" && value !== null ? (value as Record<string, unknown>)[name] : undefined;
}

export async function fetchMe(base = ""): Promise<Me> {
  let response: Response;
  try {
    response = await fetch(`${base}/auth/me`, { headers: { Accept: "application/json" }, cache: "no-store" });
  } catch {
    throw new AuthUnavailable(0);
  }
  if (response.status === 401) return { user: null, owner: null, required: true, role: null, signup: "off" };
  if (!response.ok) throw new AuthUnavailable(response.status);
  const answer = await body(response);
  const user = field(answer, "user");
  const owner = field(answer, "owner");
  return {
    user: typeof user === "string" ? user : null,
    owner: typeof owner === "string" ? owner : null,
    required: field(answer, "required") === true,
    role: typeof field(answer, "role") === "string" ? (field(answer, "role") as string) : null,
    signup: field(answer, "signup") === "approval" ? "approval" : "off",
  };
}

export async function signIn(user: string, password: string, base = ""): Promise<SignInResult> {
  let response: Response;
  try {
    response = await fetch(`${base}/auth/login`, {
      method: "POST",
      headers: JSON_HEADERS,
      body: JSON.stringify({ user, password }),
      cache: "no-store",
    });
  } catch {
    return { ok: false, code: "connection", status: 0 };
  }
  const answer = await body(response);
  if (response.ok) {
    const name = field(answer, "user");
    const owner = field(answer, "owner");
    return { ok: true, user: typeof name === "string" ? name : user, owner: typeof owner === "string" ? owner : null };
  }
  const code = field(field(answer, "error"), "code");
  return { ok: false, code: typeof code === "string" ? code : `http_${response.status}`, status: response.status };
}

export async function signOut(base = ""): Promise<void> {
  let response: Response;
  try {
    response = await fetch(`${base}/auth/logout`, { method: "POST", headers: JSON_HEADERS, cache: "no-store" });
  } catch {
    throw new AuthUnavailable(0);
  }
  if (!response.ok) throw new AuthUnavailable(response.status);
}

/** Ask for an account (self sign-up with approval): it is `pending` until an admin approves it. */
export function signUp(user: string, password: string): Promise<{ user: string; status: string }> {
  return call("POST", "/auth/signup", { user, password });
}
