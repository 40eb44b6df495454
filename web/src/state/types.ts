/** The page's state: what is shown, independent of how it is drawn. */
import type { ConnectionState } from "../protocol/client";
import type { QuotaState } from "../protocol/types";
import type {
  ReplyError,
  ReplyStatus,
  SearchResult,
  Usage,
  WireAttachment,
  WireConversation,
  WireModel,
  WireSource,
} from "../protocol/types";
import type { FeatureChoices, ReplySettings } from "./preferences";

export type Role = "user" | "assistant";

export interface Message {
  /** The server's id; a local id (see `isLocalId`) until the server has stored it. */
  id: string;
  role: Role;
  content: string;
  status: ReplyStatus;
  model: string | null;
  finishReason: string | null;
  usage: Usage | null;
  ttftMs: number | null;
  durationMs: number | null;
  error: ReplyError | null;
  createdAt: number;
  /** The model's thinking (never part of the answer); "" without. */
  reasoning: string;
  /** Web search results the answer cites as `[index]`. */
  sources: WireSource[];
  /** A user message's images. */
  attachments: WireAttachment[];
  /** How long the model thought: the server's figure, or measured here until it comes. */
  thinkingMs: number | null;
  /** When this page saw the first thinking (Date.now()), to measure `thinkingMs` live. */
  thinkingSince: number | null;
  /** This page saw the reply start (not a replay after a reload): its thinking can be timed. */
  seenFromStart: boolean;
  /** The message this one follows (null for the first, or not known yet). */
  parentId: string | null;
  /** Its alternatives, itself included, oldest first (branches: `‹ 2/3 ›`). */
  siblings: string[];
}

/** The messages of one conversation that the page has loaded. */
export interface Thread {
  messages: Message[];
  /** Older messages exist on the server (history is paged). */
  hasMore: boolean;
  loadingEarlier: boolean;
  /** A request that will start a reply is on its way (between send and reply.started). */
  sending: boolean;
  /** Events may have been missed while disconnected: reload the history before showing it. */
  stale: boolean;
}

export type Conversation = WireConversation;
export type Model = WireModel;

/** Something went wrong that the user should read: a code to translate, the server's words. */
export interface Problem {
  code: string;
  message: string;
  model?: string;
  /** Seconds the server asked to wait before trying again. */
  retryAfter?: number;
  /** With `unsupported_capability`: what the model cannot do. */
  capability?: string;
  /** Values the words need (a size limit, a count). */
  details?: Record<string, string | number>;
  /** With `quota_exceeded`: the quota that refused the message. */
  quota?: QuotaState;
}

export interface Toast {
  id: number;
  problem: Problem;
  /** "info": news rather than a problem (an import's outcome). */
  tone?: "problem" | "info";
}

/** The sidebar's full-text search: what was asked and what came back. */
export interface SearchState {
  query: string;
  /** null while the first answer for `query` is awaited. */
  results: SearchResult[] | null;
  loading: boolean;
  /** Why the last search got no answer (shown in place of the results, not as a toast). */
  problem?: Problem | null;
}

/** A message to scroll to and highlight once its conversation is shown (a search result). */
export interface Focus {
  conversationId: string;
  messageId: string;
}

/** Where the page is: the open conversation, a new chat, or a link to one that is gone. */
export type View =
  | { kind: "new" }
  | { kind: "conversation"; id: string; loading: boolean }
  | { kind: "missing"; id: string };

export interface ReplyProgress {
  conversationId: string;
  /** The last seq applied to the message's text; -1 before reply.started. */
  lastSeq: number;
}

export interface AppState {
  connection: ConnectionState;
  defaultModel: string | null;
  models: Model[] | null;
  conversations: Conversation[];
  /** The open conversation as its history last described it (it may be past the list's pages). */
  opened: Conversation | null;
  conversationsHasMore: boolean;
  conversationsLoading: boolean;
  query: string;
  view: View;
  /** Loaded conversations by id; the draft of a new chat is under DRAFT. */
  threads: Record<string, Thread>;
  /** Replies this page follows (streaming or resuming), by message id. */
  replies: Record<string, ReplyProgress>;
  /** The model the next message goes to; null until the server's default is known. */
  selectedModel: string | null;
  settings: ReplySettings;
  /** Think / search the web, as last chosen for each model (absent: the model's default). */
  features: FeatureChoices;
  /** System prompts typed but not sent yet, by conversation id (or DRAFT). */
  systemPrompts: Record<string, string>;
  /** A problem to show above the composer (a refused send, an unavailable model). */
  composerProblem: Problem | null;
  toasts: Toast[];
  /** The sidebar's search; null when the search box is empty. */
  search: SearchState | null;
  /** Archived conversations, once the Archived view asked for them (null: not loaded). */
  archived: Conversation[] | null;
  focus: Focus | null;
}

export const DRAFT = "__draft__";

export const LOCAL_PREFIX = "local:";

export function isLocalId(id: string): boolean {
  return id.startsWith(LOCAL_PREFIX);
}

export function emptyThread(): Thread {
  return { messages: [], hasMore: false, loadingEarlier: false, sending: false, stale: false };
}

/** A message with no parts yet (the fields every constructor would otherwise repeat). */
export function blankMessage(id: string, role: Role, createdAt: number): Message {
  return {
    id,
    role,
    content: "",
    status: "streaming",
    model: null,
    finishReason: null,
    usage: null,
    ttftMs: null,
    durationMs: null,
    error: null,
    createdAt,
    reasoning: "",
    sources: [],
    attachments: [],
    thinkingMs: null,
    thinkingSince: null,
    seenFromStart: false,
    parentId: null,
    siblings: [id],
  };
}
