/**
 * The frames of liaotian's protocol v1 (docs/protocol.md is the specification).
 * Types only: no behaviour lives here.
 */

export type RequestId = number | string;

export type ReplyStatus = "streaming" | "completed" | "cancelled" | "error" | "interrupted";

export interface Usage {
  input_tokens?: number | null;
  output_tokens?: number | null;
  /** Of the output, the tokens spent thinking. */
  reasoning_tokens?: number | null;
  /** Of the input, the tokens served from the provider's cache. */
  cached_tokens?: number | null;
}

/** An image the owner uploaded with `POST /attachments`, as messages list it. */
export interface WireAttachment {
  id: string;
  media_type: string;
  name: string;
  width: number | null;
  height: number | null;
  bytes: number;
}

/** A web search result an answer may cite as `[index]`. */
export interface WireSource {
  index: number;
  url: string;
  title: string;
  site: string;
  icon: string;
}

/** What a model can do (`models`); absent from servers before reply parts. */
export interface Capabilities {
  vision: boolean;
  thinking: boolean;
  thinking_default: boolean;
  thinking_fixed: boolean;
  search: boolean;
}

export interface ReplyError {
  code: string;
  message: string;
}

export interface WireConversation {
  id: string;
  title: string;
  system_prompt: string | null;
  model: string | null;
  created_at: number;
  updated_at: number;
  streaming_message_id?: string | null;
  /** The last message of the active path (the branch every tab shows). */
  active_message_id?: string | null;
  pinned?: boolean;
  archived?: boolean;
  /** Where the title came from: the first message, the title model, or the user. */
  title_source?: "message" | "generated" | "user";
}

export interface WireMessage {
  id: string;
  role: "user" | "assistant" | "system";
  content: string;
  status: ReplyStatus;
  model: string | null;
  finish_reason: string | null;
  usage: Usage | null;
  ttft_ms: number | null;
  duration_ms: number | null;
  error: ReplyError | null;
  created_at: number;
  reasoning?: string | null;
  sources?: WireSource[];
  attachments?: WireAttachment[];
  thinking_ms?: number | null;
  /** The message this one follows; null for the first. */
  parent_id?: string | null;
  /** Messages with the same parent, oldest first, itself included. */
  siblings?: string[];
}

export interface WireModel {
  id: string;
  provider: string;
  available: boolean;
  reason: string | null;
  capabilities?: Capabilities;
}

// -- server frames ------------------------------------------------------------------------

export interface HelloFrame {
  type: "hello";
  protocol: number;
  server: string;
  owner: string;
  default_model: string;
}

interface ReplyFrameBase {
  id?: RequestId;
  conversation_id: string;
  message_id: string;
  seq: number;
}

export interface ReplyStartedFrame extends ReplyFrameBase {
  type: "reply.started";
  user_message_id: string;
  user_message?: string;
  user_attachments?: WireAttachment[];
  replaces?: string[];
  /** Whether the model was asked to think; null for a model that cannot. */
  thinking?: boolean | null;
  search?: boolean;
  model: string;
  title: string;
  created_at: number;
  client_message_id?: string;
  /** The parent of the user message, and the siblings of it and of the reply (branches). */
  user_parent_id?: string | null;
  user_siblings?: string[];
  reply_siblings?: string[];
}

export interface ReplyDeltaFrame extends ReplyFrameBase {
  type: "reply.delta";
  text: string;
}

export interface ReplyReasoningFrame extends ReplyFrameBase {
  type: "reply.reasoning";
  text: string;
}

export interface ReplySourcesFrame extends ReplyFrameBase {
  type: "reply.sources";
  sources: WireSource[];
}

export interface ReplyDoneFrame extends ReplyFrameBase {
  type: "reply.done";
  status: Exclude<ReplyStatus, "streaming">;
  finish_reason: string | null;
  usage: Usage | null;
  ttft_ms: number | null;
  duration_ms: number | null;
  /** How long the model thought before the answer began; null when it did not think. */
  thinking_ms?: number | null;
  error: ReplyError | null;
}

export interface ConversationsFrame {
  type: "conversations";
  id?: RequestId;
  has_more: boolean;
  conversations: WireConversation[];
}

export interface HistoryFrame {
  type: "conversation.history";
  id?: RequestId;
  has_more: boolean;
  conversation: WireConversation;
  messages: WireMessage[];
}

export interface ConversationUpdatedFrame {
  type: "conversation.updated";
  id?: RequestId;
  conversation: WireConversation;
}

export interface ConversationDeletedFrame {
  type: "conversation.deleted";
  id?: RequestId;
  conversation_id: string;
}

export interface ModelsFrame {
  type: "models";
  id?: RequestId;
  default: string;
  models: WireModel[];
}

export interface AckFrame {
  type: "ack";
  id?: RequestId;
  request: string;
  message_id?: string;
  message_ids?: string[];
  last_seq?: number;
}

export interface PongFrame {
  type: "pong";
  id?: RequestId;
}

export interface ErrorFrame {
  type: "error";
  id?: RequestId;
  code: string;
  message: string;
  retryable: boolean;
  /** Seconds to wait before retrying, when a limit was reached. */
  retry_after?: number;
  /** With `unsupported_capability`: what the model cannot do (`vision`, `thinking`, `search`). */
  capability?: string;
  /** With `quota_exceeded`: which quota, and how much of it is used (docs/administration.md). */
  quota?: QuotaState;
}

/** A quota that refused a message: its limit's name, the amounts, and when it resets. */
export interface QuotaState {
  limit: string;
  allowed: number | null;
  used: number;
  remaining: number | null;
  resets_at: string | null;
}

export interface BulkFrame {
  type: "conversations.bulk";
  id?: RequestId;
  action: BulkAction;
  conversation_ids: string[];
  not_found: string[];
}

/** liaotian's export format (docs/protocol.md, "Export and import format"). */
export interface ConversationExport {
  format: "liaotian.conversation";
  version: number;
  exported_at: number;
  conversation: Record<string, unknown>;
  messages: Record<string, unknown>[];
}

export interface ExportFrame {
  type: "conversation.export";
  id?: RequestId;
  export: ConversationExport;
}

/** A piece of a search result's snippet: plain text, `match` where the query matched. */
export interface SnippetPiece {
  text: string;
  match?: boolean;
}

export interface SearchResult {
  conversation: WireConversation;
  /** null (and `role`, `created_at`) when only the title matched; the snippet is then the title. */
  message_id: string | null;
  role?: "user" | "assistant" | null;
  created_at: number | null;
  on_active_path: boolean;
  snippet: SnippetPiece[];
}

export interface SearchResultsFrame {
  type: "search.results";
  id?: RequestId;
  query: string;
  results: SearchResult[];
}

export interface WireShare {
  id: string;
  /** The path of the shared page, from the site's root ("/s/…"). */
  url: string;
  conversation_id: string;
  message_id: string;
  title: string;
  created_at: number;
  expires_at: number | null;
  revoked: boolean;
}

export interface ShareFrame {
  type: "share";
  id?: RequestId;
  share: WireShare;
}

export interface SharesFrame {
  type: "shares";
  id?: RequestId;
  shares: WireShare[];
}

export type ReplyFrame =
  | ReplyStartedFrame
  | ReplyDeltaFrame
  | ReplyReasoningFrame
  | ReplySourcesFrame
  | ReplyDoneFrame;

export type ServerFrame =
  | HelloFrame
  | ReplyFrame
  | ConversationsFrame
  | HistoryFrame
  | ConversationUpdatedFrame
  | ConversationDeletedFrame
  | ModelsFrame
  | AckFrame
  | PongFrame
  | BulkFrame
  | ExportFrame
  | SearchResultsFrame
  | ShareFrame
  | SharesFrame
  | ErrorFrame;

export type BulkAction = "delete" | "archive" | "unarchive" | "pin" | "unpin";

// -- client frames ------------------------------------------------------------------------

export interface ReplyOptions {
  model?: string;
  stream?: boolean;
  system_prompt?: string;
  temperature?: number;
  max_tokens?: number;
  /** Absent: the model's default (`capabilities.thinking_default`). */
  thinking?: boolean;
  thinking_budget?: number;
  search?: boolean;
}

export type ClientFrame =
  | ({
      type: "chat.send";
      message: string;
      conversation_id?: string;
      client_message_id?: string;
      attachments?: string[];
    } & ReplyOptions)
  | ({ type: "chat.regenerate"; conversation_id: string; message_id?: string } & ReplyOptions)
  | ({ type: "chat.edit"; conversation_id: string; message_id: string; message: string; attachments?: string[] } & ReplyOptions)
  | { type: "chat.cancel"; message_id?: string; conversation_id?: string }
  | { type: "chat.subscribe"; message_id: string; after_seq?: number }
  | { type: "conversations.list"; limit?: number; before?: string; query?: string; archived?: boolean }
  | { type: "conversation.history"; conversation_id: string; limit?: number; before?: string }
  | { type: "conversation.rename"; conversation_id: string; title: string }
  | { type: "conversation.delete"; conversation_id: string }
  | { type: "conversation.switch"; conversation_id: string; message_id: string }
  | { type: "conversation.update"; conversation_id: string; pinned?: boolean; archived?: boolean }
  | { type: "conversations.bulk"; action: BulkAction; conversation_ids: string[] }
  | { type: "conversation.export"; conversation_id: string; tree?: boolean }
  | { type: "search"; query: string; limit?: number }
  | { type: "share.create"; conversation_id: string; message_id?: string; expires_in?: number }
  | { type: "shares.list"; conversation_id?: string }
  | { type: "share.revoke"; share_id: string }
  | { type: "share.copy"; share_id: string }
  | { type: "models.list" }
  | { type: "ping" };

/** The frame that answers each request type (the first frame carrying the request's id). */
export interface ResponseOf {
  "chat.send": ReplyStartedFrame;
  "chat.regenerate": ReplyStartedFrame;
  "chat.edit": ReplyStartedFrame;
  "chat.cancel": AckFrame;
  "chat.subscribe": ReplyFrame | AckFrame;
  "conversations.list": ConversationsFrame;
  "conversation.history": HistoryFrame;
  "conversation.rename": ConversationUpdatedFrame;
  "conversation.delete": ConversationDeletedFrame;
  "conversation.switch": ConversationUpdatedFrame;
  "conversation.update": ConversationUpdatedFrame;
  "conversations.bulk": BulkFrame;
  "conversation.export": ExportFrame;
  search: SearchResultsFrame;
  "share.create": ShareFrame;
  "shares.list": SharesFrame;
  "share.revoke": ShareFrame;
  "share.copy": ConversationUpdatedFrame;
  "models.list": ModelsFrame;
  ping: PongFrame;
}
