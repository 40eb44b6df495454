/**
 * The session: whether the page must sign in first, who is signed in, and the chat of that
 * user. Each sign-in gets a fresh ChatController (and connection), so nothing one user saw
 * stays on the page for the next. No DOM: it asks the server through `protocol/auth.ts` and
 * watches the chat's connection.
 *
 * The chat ends and the sign-in screen comes back when:
 * - the user signs out here (POST /auth/logout; the server then closes the socket);
 * - the server closes the socket with 1008 "signed out" (a sign-out in another tab, a
 *   revoked or expired session), or a handshake is refused while /auth/me answers 401
 *   (the session ended while the page was away, or accounts became required). Both say
 *   "You were signed out".
 * The page never sees the credential: it is an HttpOnly cookie, and nothing about it is kept
 * in localStorage.
 */
import { fetchMe, type Me, signIn, signOut } from "../protocol/auth";
import { type CloseInfo, isSignedOut } from "../protocol/client";
import type { ChatController } from "./chat";
import { Store } from "./store";

/** Why signing in failed, in the categories the sign-in screen words differently. */
export type SignInFailure = "invalid_credentials" | "rate_limited" | "connection" | "account_pending" | "account_disabled" | "other";

export interface SignInProblem {
  kind: SignInFailure;
  /** The server's error code (or `http_<status>`), shown with "other". */
  code: string;
}

export interface SessionState {
  /** `checking`: asking /auth/me at start; `sign-in`: the sign-in screen; `chat`: the chat. */
  phase: "checking" | "sign-in" | "chat";
  /** The signed-in user; null in open mode (the owner is the browser's client id). */
  user: string | null;
  chat: ChatController | null;
  /** Who was signed in before the sign-in screen came back (kept in memory only). */
  lastUser: string | null;
  /** The sign-in screen shows because a session ended elsewhere, not by "Sign out" here. */
  signedOut: boolean;
  signingIn: boolean;
  error: SignInProblem | null;
  /** The signed-in account's role (`admin` sees the administration page); null in open mode. */
  role: string | null;
  /** Whether the sign-in screen offers "create an account". */
  signup: "off" | "approval";
}

/** Makes the chat for a session: its connection says who it is (cookie, or client id). */
export type ChatFactory = (me: Me) => ChatController;

export function failureOf(code: string, status: number): SignInFailure {
  if (code === "invalid_credentials" || status === 401) return "invalid_credentials";
  if (code === "account_pending" || code === "account_disabled") return code;
  if (code === "rate_limited" || status === 429) return "rate_limited";
  if (code === "connection" || status === 0) return "connection";
  return "other";
}

export class SessionController {
  readonly store = new Store<SessionState>({
    phase: "checking",
    user: null,
    chat: null,
    lastUser: null,
    signedOut: false,
    signingIn: false,
    error: null,
    role: null,
    signup: "off",
  });

  /** Who the running chat connects as. */
  #me: Me | null = null;
  #stopWatching: (() => void)[] = [];
  #signingOut = false;
  #rechecking = false;

  constructor(readonly makeChat: ChatFactory) {}

  get state(): SessionState {
    return this.store.state;
  }

  /** Ask the server whether to sign in first, then show the sign-in screen or the chat. */
  async start(): Promise<void> {
    let me: Me;
    try {
      me = await fetchMe();
    } catch {
      // The server is down, or has no accounts: connect as before. If the handshake is then
      // refused, /auth/me is asked again.
      me = { user: null, owner: null, required: false };
    }
    this.store.update(() => ({ signup: me.signup ?? "off" }));
    this.#show(me, false);
  }

  async signIn(user: string, password: string): Promise<boolean> {
    if (this.state.signingIn) return false;
    this.store.update(() => ({ signingIn: true, error: null }));
    const result = await signIn(user, password);
    if (!result.ok) {
      this.store.update(() => ({ signingIn: false, error: { kind: failureOf(result.code, result.status), code: result.code } }));
      return false;
    }
    // The role (and who the cookie says we are) comes from /auth/me; without an answer, the
    // page is a user's (the server checks every admin route anyway).
    const me = await fetchMe().catch(() => null);
    this.store.update(() => ({ signingIn: false }));
    this.#begin({ user: result.user, owner: result.owner, required: true, role: me?.user === result.user ? (me.role ?? null) : null });
    return true;
  }

  /** End the session on the server (which closes its sockets), then show the sign-in screen. */
  async signOut(): Promise<void> {
    const chat = this.state.chat;
    if (chat === null || this.#signingOut) return;
    this.#signingOut = true;
    try {
      await signOut();
    } catch (error) {
      chat.notify({ code: "sign_out_failed", message: String(error) });
      return;
    } finally {
      this.#signingOut = false;
    }
    this.#end(false);
  }

  reconnectNow(): void {
    this.state.chat?.reconnectNow();
  }

  #show(me: Me, signedOut: boolean): void {
    if (me.required && me.user === null) this.#end(signedOut);
    else this.#begin(me);
  }

  #begin(me: Me): void {
    this.#stopChat();
    const chat = this.makeChat(me);
    this.#me = me;
    this.#stopWatching.push(
      chat.client.onClose((close) => this.#onClose(chat, close)),
      chat.client.onState((connection) => {
        // Another tab signed in as someone else meanwhile: the cookie, hence the owner, changed.
        const owner = connection.hello?.owner;
        if (connection.status === "open" && me.owner !== null && owner !== me.owner) void this.#recheck(chat);
      }),
    );
    this.store.update(() => ({ phase: "chat", user: me.user, role: me.role ?? null, chat, signedOut: false, signingIn: false, error: null }));
    chat.start();
  }

  #end(signedOut: boolean): void {
    this.#stopChat();
    this.#me = null;
    this.store.update((state) => ({
      phase: "sign-in",
      user: null,
      role: null,
      chat: null,
      lastUser: state.user ?? state.lastUser,
      signedOut,
      signingIn: false,
      error: null,
    }));
  }

  #stopChat(): void {
    for (const stopWatching of this.#stopWatching.splice(0)) stopWatching();
    this.state.chat?.close();
  }

  #onClose(chat: ChatController, close: CloseInfo): void {
    if (chat !== this.state.chat) return;
    if (isSignedOut(close)) {
      // Stop before the client schedules a retry that could only be refused.
      this.#end(!this.#signingOut);
    } else if (!close.opened) {
      // A refused handshake looks like any failed connection: ask the server why.
      void this.#recheck(chat);
    }
  }

  /** Compare who the server says we are with who the chat connects as; follow the server. */
  async #recheck(chat: ChatController): Promise<void> {
    if (this.#rechecking) return;
    this.#rechecking = true;
    try {
      const me = await fetchMe();
      const current = this.#me;
      if (chat !== this.state.chat || current === null) return;
      if (me.user !== current.user || me.required !== current.required) this.#show(me, true);
    } catch {
      // The server is unreachable: the client keeps retrying, and asks again on the next failure.
    } finally {
      this.#rechecking = false;
    }
  }
}
