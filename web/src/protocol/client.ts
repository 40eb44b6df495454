/**
 * The protocol v1 client: one WebSocket, reconnected with exponential backoff, with
 * request/response matching by `id`. It knows nothing of the page (no DOM): the state layer
 * listens to its frames and to its connection state.
 *
 * Contracts:
 * - `request()` resolves with the first frame that carries the request's id, or rejects with
 *   `RequestError` (an `error` frame), `ConnectionLost` (the socket closed first, or it was not
 *   open) or `RequestTimeout`. A rejected request may still have reached the server.
 * - Every frame, answers included, also goes to the `onFrame` listeners, before the request's
 *   promise settles, so shared state is updated once, in one place.
 * - The client never gives up reconnecting until `stop()`. Every close goes to the `onClose`
 *   listeners first (code, reason, and whether the server had said hello), so they can
 *   `stop()` it before it retries: a sign-out closes with 1008, and a refused handshake
 *   (HTTP 403: no credential) looks like any failed connection to a browser.
 */
import type { ClientFrame, ErrorFrame, HelloFrame, RequestId, ResponseOf, ServerFrame } from "./types";

export type ConnectionStatus = "connecting" | "open" | "waiting";

export interface ConnectionState {
  status: ConnectionStatus;
  /** Failed attempts since the last successful connection. */
  attempt: number;
  /** When the next attempt starts (epoch ms), while `waiting`. */
  retryAt: number | null;
  hello: HelloFrame | null;
}

export class RequestError extends Error {
  readonly code: string;
  readonly retryable: boolean;
  constructor(readonly frame: ErrorFrame) {
    super(frame.message);
    this.name = "RequestError";
    this.code = frame.code;
    this.retryable = frame.retryable;
  }
}

export class ConnectionLost extends Error {
  constructor() {
    super("the connection to the server was lost");
    this.name = "ConnectionLost";
  }
}

export class RequestTimeout extends Error {
  constructor(type: string) {
    super(`no answer to ${type} in time`);
    this.name = "RequestTimeout";
  }
}

export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
}

export interface ClientOptions {
  /** The full ws:// URL, client id included. */
  url: string;
  backoff?: BackoffOptions;
  /** How often to ping an idle connection; a missing pong means a dead socket. */
  heartbeatMs?: number;
  requestTimeoutMs?: number;
  /** For tests and other runtimes. */
  WebSocketImpl?: typeof WebSocket;
}

/** How a socket closed. */
export interface CloseInfo {
  code: number;
  reason: string;
  /** The server had said hello on this socket; false for a refused or failed handshake. */
  opened: boolean;
}

/** The close code and reason the server uses when a sign-out or revocation ends a socket. */
export const SIGNED_OUT_CODE = 1008;
export const SIGNED_OUT_REASON = "signed out";

export function isSignedOut(close: CloseInfo): boolean {
  return close.code === SIGNED_OUT_CODE && close.reason === SIGNED_OUT_REASON;
}

type FrameListener = (frame: ServerFrame) => void;
type StateListener = (state: ConnectionState) => void;
type CloseListener = (close: CloseInfo) => void;

interface Pending {
  type: string;
  resolve: (frame: ServerFrame) => void;
  reject: (error: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

/** Exponential backoff with ±25% jitter, so many tabs do not reconnect in lockstep. */
export function backoffDelay(attempt: number, { initialMs, maxMs }: BackoffOptions): number {
  const base = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 16));
  return Math.round(base * (0.75 + Math.random() * 0.5));
}

export class ProtocolClient {
  readonly #url: string;
  readonly #backoff: BackoffOptions;
  readonly #heartbeatMs: number;
  readonly #requestTimeoutMs: number;
  readonly #WebSocket: typeof WebSocket;

  #socket: WebSocket | null = null;
  #nextId = 1;
  #pending = new Map<RequestId, Pending>();
  #frameListeners = new Set<FrameListener>();
  #stateListeners = new Set<StateListener>();
  #closeListeners = new Set<CloseListener>();
  #state: ConnectionState = { status: "connecting", attempt: 0, retryAt: null, hello: null };
  #retryTimer: ReturnType<typeof setTimeout> | null = null;
  #heartbeatTimer: ReturnType<typeof setInterval> | null = null;
  #helloTimer: ReturnType<typeof setTimeout> | null = null;
  #stopped = true;

  constructor(options: ClientOptions) {
    this.#url = options.url;
    this.#backoff = options.backoff ?? { initialMs: 500, maxMs: 15_000 };
    this.#heartbeatMs = options.heartbeatMs ?? 25_000;
    this.#requestTimeoutMs = options.requestTimeoutMs ?? 20_000;
    this.#WebSocket = options.WebSocketImpl ?? WebSocket;
  }

  get state(): ConnectionState {
    return this.#state;
  }

  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#connect();
  }

  stop(): void {
    this.#stopped = true;
    this.#clearTimers();
    this.#socket?.close(1000, "bye");
    this.#socket = null;
    this.#failPending();
  }

  /** Skip the backoff wait (the browser came back online, the user clicked "retry"). */
  reconnectNow(): void {
    if (this.#stopped || this.#state.status !== "waiting") return;
    this.#connect();
  }

  onFrame(listener: FrameListener): () => void {
    this.#frameListeners.add(listener);
    return () => this.#frameListeners.delete(listener);
  }

  onState(listener: StateListener): () => void {
    this.#stateListeners.add(listener);
    return () => this.#stateListeners.delete(listener);
  }

  /** Every close of a socket, before the client schedules its next attempt. */
  onClose(listener: CloseListener): () => void {
    this.#closeListeners.add(listener);
    return () => this.#closeListeners.delete(listener);
  }

  /** Resolves once the connection is open (at once if it is). */
  whenOpen(): Promise<void> {
    if (this.#state.status === "open") return Promise.resolve();
    return new Promise((resolve) => {
      const off = this.onState((state) => {
        if (state.status === "open") {
          off();
          resolve();
        }
      });
    });
  }

  request<T extends ClientFrame["type"]>(
    frame: Extract<ClientFrame, { type: T }>,
    options: { timeoutMs?: number } = {},
  ): Promise<ResponseOf[T]> {
    const socket = this.#socket;
    if (socket === null || this.#state.status !== "open") {
      return Promise.reject(new ConnectionLost());
    }
    const id = this.#nextId++;
    return new Promise<ResponseOf[T]>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new RequestTimeout(frame.type));
      }, options.timeoutMs ?? this.#requestTimeoutMs);
      this.#pending.set(id, {
        type: frame.type,
        resolve: resolve as (frame: ServerFrame) => void,
        reject,
        timer,
      });
      socket.send(JSON.stringify({ ...frame, id }));
    });
  }

  #connect(): void {
    this.#clearTimers();
    this.#setState({ status: "connecting", retryAt: null });
    let socket: WebSocket;
    try {
      socket = new this.#WebSocket(this.#url);
    } catch {
      this.#scheduleRetry();
      return;
    }
    this.#socket = socket;
    // A server that accepts but never says hello is as good as down.
    this.#helloTimer = setTimeout(() => socket.close(4000, "no hello"), 10_000);
    socket.onmessage = (event: MessageEvent) => {
      if (socket !== this.#socket || typeof event.data !== "string") return;
      this.#receive(event.data);
    };
    socket.onclose = (event: CloseEvent) => {
      if (socket !== this.#socket) return;
      this.#socket = null;
      this.#failPending();
      // Still "open" here only if this socket got its hello (#connect resets the status).
      const close: CloseInfo = { code: event.code, reason: event.reason, opened: this.#state.status === "open" };
      for (const listener of this.#closeListeners) listener(close);
      if (!this.#stopped) this.#scheduleRetry();
    };
  }

  #receive(data: string): void {
    let frame: ServerFrame;
    try {
      frame = JSON.parse(data) as ServerFrame;
    } catch {
      return; // the server only sends JSON; ignore anything else rather than crash
    }
    if (frame.type === "hello") {
      if (this.#helloTimer !== null) clearTimeout(this.#helloTimer);
      this.#helloTimer = null;
      this.#startHeartbeat();
      this.#setState({ status: "open", attempt: 0, retryAt: null, hello: frame });
    }
    for (const listener of this.#frameListeners) listener(frame);
    const id = "id" in frame ? frame.id : undefined;
    if (id === undefined) return;
    const pending = this.#pending.get(id);
    if (pending === undefined) return;
    this.#pending.delete(id);
    clearTimeout(pending.timer);
    if (frame.type === "error") pending.reject(new RequestError(frame));
    else pending.resolve(frame);
  }

  #startHeartbeat(): void {
    if (this.#heartbeatTimer !== null) clearInterval(this.#heartbeatTimer);
    this.#heartbeatTimer = setInterval(() => {
      const socket = this.#socket;
      this.request({ type: "ping" }, { timeoutMs: 10_000 }).catch((error: unknown) => {
        // A pong that never comes means a half-open socket the browser has not noticed.
        if (error instanceof RequestTimeout && socket === this.#socket) socket?.close(4001, "no pong");
      });
    }, this.#heartbeatMs);
  }

  #scheduleRetry(): void {
    this.#clearTimers();
    const attempt = this.#state.attempt;
    const delay = backoffDelay(attempt, this.#backoff);
    this.#setState({ status: "waiting", attempt: attempt + 1, retryAt: Date.now() + delay });
    this.#retryTimer = setTimeout(() => this.#connect(), delay);
  }

  #failPending(): void {
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const request of pending) {
      clearTimeout(request.timer);
      request.reject(new ConnectionLost());
    }
  }

  #clearTimers(): void {
    if (this.#retryTimer !== null) clearTimeout(this.#retryTimer);
    if (this.#heartbeatTimer !== null) clearInterval(this.#heartbeatTimer);
    if (this.#helloTimer !== null) clearTimeout(this.#helloTimer);
    this.#retryTimer = this.#heartbeatTimer = this.#helloTimer = null;
  }

  #setState(change: Partial<ConnectionState>): void {
    this.#state = { ...this.#state, ...change };
    for (const listener of this.#stateListeners) listener(this.#state);
  }
}
