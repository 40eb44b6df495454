/**
 * The chat controller: every user action (send, stop, regenerate, open a conversation…) and
 * every server frame goes through here, into the store. It talks to the server only through
 * the protocol client and never touches the DOM; components read the store and call these
 * methods.
 */
import { ConnectionLost, type ProtocolClient, RequestError, RequestTimeout } from "../protocol/client";
import type {
  BulkAction,
  Capabilities,
  ClientFrame,
  ConversationExport,
  ReplyOptions,
  ReplyStartedFrame,
  SearchResult,
  ServerFrame,
  WireAttachment,
  WireConversation,
  WireShare,
} from "../protocol/types";
import { UploadError } from "../protocol/attachments";
import { importConversations, type ImportOutcome } from "../protocol/imports";
import { fileName, toJson, toMarkdown, type ExportLabels } from "./export";
import {
  type FeatureChoice,
  loadFeatures,
  loadReplySettings,
  saveFeatures,
  saveReplySettings,
  type ReplySettings,
} from "./preferences";
import {
  conversationDeleted,
  conversationsLoaded,
  conversationUpdated,
  historyLoaded,
  messageFromWire,
  replyDelta,
  replyDone,
  replyReasoning,
  replySources,
  inListOrder as inListOrderOf,
  replyStarted,
} from "./reducers";
import { conversationInUrl, onUrlChange, showInUrl, takeCopyFromUrl } from "./router";
import { Store } from "./store";
import {
  type AppState,
  blankMessage,
  type Conversation,
  DRAFT,
  emptyThread,
  LOCAL_PREFIX,
  type Message,
  type Model,
  type Problem,
  type Thread,
} from "./types";

const HISTORY_PAGE = 100;
const CONVERSATION_PAGE = 50;
const SEND_ATTEMPTS = 5;
const SEARCH_LIMIT = 20;
/** Earlier pages loaded at most to reach a search result's message. */
const FOCUS_PAGES = 20;
const TOAST_MS = 7000;
/** Problems that only say an answer is being written. */
const BUSY_CODES = new Set(["conversation_busy", "busy_elsewhere"]);

export function problemOf(error: unknown, model?: string | null): Problem {
  const withModel = model ? { model } : {};
  if (error instanceof RequestError) {
    const wait = error.frame.retry_after;
    const capability = error.frame.capability;
    const quota = error.frame.quota;
    return {
      code: error.code,
      message: error.message,
      ...withModel,
      ...(wait ? { retryAfter: wait } : {}),
      ...(capability ? { capability } : {}),
      ...(quota ? { quota } : {}),
    };
  }
  if (error instanceof ConnectionLost) return { code: "connection", message: error.message };
  if (error instanceof RequestTimeout) return { code: "timeout", message: error.message };
  return { code: "internal_error", message: String(error) };
}

/** What a model can do; a server that does not say (or a model not listed) can do nothing extra. */
export const NO_CAPABILITIES: Capabilities = {
  vision: false,
  thinking: false,
  thinking_default: false,
  thinking_fixed: false,
  search: false,
};

/** The composer's Think and Search switches for a model: shown, on, and whether they can change. */
export interface Features {
  thinking: { shown: boolean; on: boolean; fixed: boolean };
  search: { shown: boolean; on: boolean };
  vision: boolean;
}

export function featuresOf(capabilities: Capabilities, choice: FeatureChoice | undefined): Features {
  return {
    thinking: {
      shown: capabilities.thinking,
      on: capabilities.thinking && (capabilities.thinking_fixed ? capabilities.thinking_default : (choice?.thinking ?? capabilities.thinking_default)),
      fixed: capabilities.thinking_fixed,
    },
    search: { shown: capabilities.search, on: capabilities.search && (choice?.search ?? false) },
    vision: capabilities.vision,
  };
}

export function isBusy(thread: Thread | undefined): boolean {
  return thread !== undefined && (thread.sending || thread.messages.some((m) => m.status === "streaming"));
}

export class ChatController {
  readonly store: Store<AppState>;
  #searchToken = 0;
  #messageSearchToken = 0;
  /** The earlier page being loaded, if any. */
  #earlier: Promise<void> | null = null;
  /** A `?copy=SHARE_ID` the page was opened with, copied once connected. */
  #copyShare: string | null = takeCopyFromUrl();
  #nextToast = 1;
  #stopListening: (() => void)[] = [];
  /** Replies this page started (send, regenerate, edit): any other is another tab's. */
  #mine = new Set<string>();

  constructor(readonly client: ProtocolClient) {
    const id = conversationInUrl();
    this.store = new Store<AppState>({
      connection: client.state,
      defaultModel: null,
      models: null,
      conversations: [],
      opened: null,
      conversationsHasMore: false,
      conversationsLoading: true,
      query: "",
      view: id === null ? { kind: "new" } : { kind: "conversation", id, loading: true },
      threads: { [DRAFT]: emptyThread() },
      replies: {},
      selectedModel: null,
      settings: loadReplySettings(),
      features: loadFeatures(),
      systemPrompts: {},
      composerProblem: null,
      toasts: [],
      search: null,
      archived: null,
      focus: null,
    });
  }

  get state(): AppState {
    return this.store.state;
  }

  start(): void {
    this.#stopListening.push(
      this.client.onFrame((frame) => this.#onFrame(frame)),
      this.client.onState((connection) => {
        this.store.update(() => ({ connection }));
        if (connection.status === "open") void this.#onOpen();
      }),
      onUrlChange((id) => (id === null ? this.newChat(false) : this.openConversation(id, false))),
    );
    this.client.start();
  }

  /** Close the connection for good and stop following the URL (a sign-out ends this chat). */
  close(): void {
    for (const stopListening of this.#stopListening.splice(0)) stopListening();
    this.client.stop();
  }

  // -- what the page shows ------------------------------------------------------------------

  /** The key of the shown thread in `threads`. */
  get threadKey(): string {
    const view = this.state.view;
    return view.kind === "conversation" ? view.id : DRAFT;
  }

  get activeThread(): Thread | undefined {
    return this.state.threads[this.threadKey];
  }

  get activeConversation(): Conversation | undefined {
    const { view, conversations, opened } = this.state;
    if (view.kind !== "conversation") return undefined;
    return conversations.find((c) => c.id === view.id) ?? (opened?.id === view.id ? opened : undefined);
  }

  /** The model the next message goes to. */
  get model(): string | null {
    return this.state.selectedModel ?? this.state.defaultModel;
  }

  modelInfo(id: string | null): Model | undefined {
    return id === null ? undefined : this.state.models?.find((model) => model.id === id);
  }

  /** What the chosen model can do, and what the user chose of it. */
  get features(): Features {
    const model = this.model;
    const capabilities = this.modelInfo(model)?.capabilities ?? NO_CAPABILITIES;
    return featuresOf(capabilities, model === null ? undefined : this.state.features[model]);
  }

  /** Switch thinking or web search for the chosen model (remembered per model). */
  setFeature(name: "thinking" | "search", on: boolean): void {
    const model = this.model;
    if (model === null) return;
    this.store.update((state) => ({
      features: { ...state.features, [model]: { ...state.features[model], [name]: on } },
    }));
    saveFeatures(this.state.features);
  }

  /** Why images cannot go to the chosen model, or null when they can. */
  get visionProblem(): Problem | null {
    if (this.features.vision) return null;
    const model = this.model;
    return { code: "unsupported_capability", capability: "vision", message: "vision", ...(model ? { model } : {}) };
  }

  /** Why the chosen model cannot answer, if the server said so. */
  get modelProblem(): Problem | null {
    const info = this.modelInfo(this.model);
    if (info === undefined || info.available) return null;
    return {
      code: "provider_not_configured",
      message: `${info.id} needs ${info.reason ?? "configuration"}`,
      model: info.id,
    };
  }

  /** The system prompt shown in the settings: the one being typed, else the conversation's. */
  systemPrompt(): string {
    const key = this.threadKey;
    const draft = this.state.systemPrompts[key];
    if (draft !== undefined) return draft;
    return key === DRAFT ? "" : (this.activeConversation?.system_prompt ?? "");
  }

  // -- navigation -----------------------------------------------------------------------------

  openConversation(id: string, push = true): void {
    showInUrl(id, push ? "push" : "replace");
    const thread = this.state.threads[id];
    const loading = thread === undefined || thread.stale;
    const summary = this.state.conversations.find((c) => c.id === id);
    this.store.update((state) => ({
      view: { kind: "conversation", id, loading },
      composerProblem: null,
      selectedModel: summary?.model && this.modelInfo(summary.model) ? summary.model : state.selectedModel,
    }));
    if (loading && this.client.state.status === "open") void this.#loadHistory(id);
    else if (!loading) void this.#reachFocus(id);
  }

  newChat(push = true): void {
    showInUrl(null, push ? "push" : "replace");
    this.store.update((state) => {
      const draft = state.threads[DRAFT];
      return {
        view: { kind: "new" },
        composerProblem: null,
        selectedModel: this.#preferredModel(state),
        threads: draft?.sending ? state.threads : { ...state.threads, [DRAFT]: emptyThread() },
      };
    });
  }

  // -- messages -------------------------------------------------------------------------------

  /** Send `text` (and images already uploaded) in the shown conversation (or start one).
   * False if it was not sent. */
  async send(text: string, attachments: WireAttachment[] = []): Promise<boolean> {
    if (text.trim() === "" && attachments.length === 0) return false;
    if (this.state.view.kind === "missing") this.newChat(false);
    const key = this.threadKey;
    if (isBusy(this.state.threads[key])) {
      this.explainBusy();
      return false;
    }
    const modelProblem = this.modelProblem;
    if (modelProblem !== null) {
      this.#setProblem(modelProblem);
      return false;
    }
    // Never send images to a model that cannot read them: say why instead.
    const visionProblem = attachments.length > 0 ? this.visionProblem : null;
    if (visionProblem !== null) {
      this.#setProblem(visionProblem);
      return false;
    }
    const clientMessageId = crypto.randomUUID().replaceAll("-", "");
    const localId = LOCAL_PREFIX + clientMessageId;
    const options = this.#replyOptions(key);
    this.store.update((state) => {
      const thread = state.threads[key] ?? emptyThread();
      const message: Message = {
        ...blankMessage(localId, "user", Date.now() / 1000),
        content: text,
        status: "completed",
        attachments,
      };
      return {
        threads: { ...state.threads, [key]: { ...thread, messages: [...thread.messages, message], sending: true } },
        composerProblem: null,
      };
    });
    const frame: ClientFrame = {
      type: "chat.send",
      message: text,
      client_message_id: clientMessageId,
      ...(attachments.length > 0 ? { attachments: attachments.map((item) => item.id) } : {}),
      ...(key === DRAFT ? {} : { conversation_id: key }),
      ...options,
    };
    try {
      const started = await this.#sendWithRetries(frame);
      this.#afterStart(key, started, options);
      return true;
    } catch (error) {
      this.store.update((state) => {
        // The reply may have started after all (a retry that raced a late answer).
        const thread = state.threads[key];
        if (thread === undefined) return {};
        return {
          threads: {
            ...state.threads,
            [key]: { ...thread, sending: false, messages: thread.messages.filter((m) => m.id !== localId) },
          },
        };
      });
      this.#setProblem(problemOf(error, options.model ?? this.model));
      return false;
    }
  }

  /**
   * Say why nothing can be sent now: an answer is being written in the shown conversation,
   * by this page or by another tab of the same owner (whose Enter would otherwise do nothing).
   */
  explainBusy(): void {
    const streaming = this.activeThread?.messages.findLast((m) => m.role === "assistant" && m.status === "streaming");
    const elsewhere = streaming !== undefined && !this.#mine.has(streaming.id);
    this.#setProblem({ code: elsewhere ? "busy_elsewhere" : "conversation_busy", message: "busy" });
  }

  /** Stop the answer being written in the shown conversation. */
  stop(): void {
    const view = this.state.view;
    if (view.kind !== "conversation") return;
    const streaming = this.activeThread?.messages.find((m) => m.role === "assistant" && m.status === "streaming");
    const frame: ClientFrame = streaming
      ? { type: "chat.cancel", message_id: streaming.id }
      : { type: "chat.cancel", conversation_id: view.id };
    this.client.request(frame).catch(() => {
      // not_found: it ended meanwhile; disconnected: nothing to stop from here. Either way
      // the reply's own done event (or the history after reconnecting) tells the outcome.
    });
  }

  /** Answer again (`messageId`: that answer; default the last): the old answer stays as a
   * sibling, one ‹ › away. */
  async regenerate(messageId?: string): Promise<void> {
    const view = this.state.view;
    if (view.kind !== "conversation" || isBusy(this.activeThread)) return;
    const options = this.#replyOptions(view.id);
    await this.#startReply(
      view.id,
      { type: "chat.regenerate", conversation_id: view.id, ...(messageId === undefined ? {} : { message_id: messageId }), ...options },
      options,
    );
  }

  /** Show the branch through `messageId` (a sibling of a shown message) here and on every
   * device: the server stores the choice and tells every tab. */
  async switchBranch(messageId: string): Promise<void> {
    const view = this.state.view;
    if (view.kind !== "conversation" || isBusy(this.activeThread)) return;
    try {
      // The answer (conversation.updated) goes through #onFrame, which reloads the history.
      await this.client.request({ type: "conversation.switch", conversation_id: view.id, message_id: messageId });
    } catch (error) {
      this.#toast(problemOf(error));
    }
  }

  /** Replace a sent message with `text` and answer it again; its images stay. False if it
   * was not sent. */
  async edit(messageId: string, text: string): Promise<boolean> {
    const view = this.state.view;
    if (view.kind !== "conversation" || isBusy(this.activeThread)) return false;
    const images = this.activeThread?.messages.find((m) => m.id === messageId)?.attachments ?? [];
    if (text.trim() === "" && images.length === 0) return false;
    const options = this.#replyOptions(view.id);
    return this.#startReply(
      view.id,
      {
        type: "chat.edit",
        conversation_id: view.id,
        message_id: messageId,
        message: text,
        // An edit keeps no image it does not list again.
        ...(images.length > 0 ? { attachments: images.map((item) => item.id) } : {}),
        ...options,
      },
      options,
    );
  }

  /** Load the page before the first shown message; while one loads, its promise. */
  loadEarlier(): Promise<void> {
    this.#earlier ??= this.#loadEarlierPage().finally(() => (this.#earlier = null));
    return this.#earlier;
  }

  async #loadEarlierPage(): Promise<void> {
    const view = this.state.view;
    if (view.kind !== "conversation") return;
    const thread = this.state.threads[view.id];
    const first = thread?.messages.find((m) => !m.id.startsWith(LOCAL_PREFIX));
    if (thread === undefined || !thread.hasMore || thread.loadingEarlier || first === undefined) return;
    this.#patchThread(view.id, { loadingEarlier: true });
    try {
      const frame = await this.client.request({
        type: "conversation.history",
        conversation_id: view.id,
        limit: HISTORY_PAGE,
        before: first.id,
      });
      this.store.update((state) => historyLoaded(state, frame, true).patch);
    } catch (error) {
      this.#patchThread(view.id, { loadingEarlier: false });
      this.#toast(problemOf(error));
    }
  }

  // -- conversations --------------------------------------------------------------------------

  /** Full-text search of titles and messages (the sidebar's search box); "" clears it. */
  async searchMessages(query: string): Promise<void> {
    const token = ++this.#messageSearchToken;
    const clean = query.trim().slice(0, 200);
    if (clean === "") {
      this.store.update(() => ({ search: null }));
      return;
    }
    this.store.update((state) => ({
      search: { query: clean, results: state.search?.results ?? null, loading: true },
    }));
    let results: SearchResult[];
    try {
      const frame = await this.client.request({ type: "search", query: clean, limit: SEARCH_LIMIT });
      results = frame.results;
    } catch (error) {
      if (token !== this.#messageSearchToken) return;
      if (error instanceof RequestError && (error.code === "internal_error" || error.code === "unknown_type")) {
        // A server without full-text search: its titles, at least.
        results = await this.#titleResults(clean).catch(() => []);
      } else {
        const problem = problemOf(error);
        // Typing fast can meet the server's search limit: said in the results, in search's words.
        if (problem.code === "rate_limited") problem.code = "search_rate_limited";
        this.store.update((state) => ({
          search: state.search && { ...state.search, results: state.search.results ?? [], loading: false, problem },
        }));
        return;
      }
    }
    if (token === this.#messageSearchToken) this.store.update(() => ({ search: { query: clean, results, loading: false } }));
  }

  async #titleResults(query: string): Promise<SearchResult[]> {
    const frame = await this.client.request({ type: "conversations.list", limit: SEARCH_LIMIT, query });
    return frame.conversations.map((conversation) => ({
      conversation,
      message_id: null,
      created_at: conversation.updated_at,
      on_active_path: true,
      snippet: [],
    }));
  }

  /**
   * Open a search result: its branch first when the message is on another one, then the
   * conversation, scrolled to the message, which is highlighted for a moment.
   */
  async openSearchResult(result: SearchResult): Promise<void> {
    const id = result.conversation.id;
    const messageId = result.message_id;
    if (messageId !== null && !result.on_active_path) {
      try {
        // Its answer marks the loaded thread stale (#onFrame), so opening reloads it.
        await this.client.request({ type: "conversation.switch", conversation_id: id, message_id: messageId });
      } catch (error) {
        this.#toast(problemOf(error));
      }
    }
    this.store.update((state) => ({
      focus: messageId === null ? null : { conversationId: id, messageId },
      // Archived or past the loaded pages: the header still needs its title.
      opened: state.conversations.some((c) => c.id === id) ? state.opened : result.conversation,
    }));
    this.openConversation(id);
  }

  /** The highlight was shown (or its message cannot be found). */
  clearFocus(): void {
    if (this.state.focus !== null) this.store.update(() => ({ focus: null }));
  }

  /** Load earlier pages until the focused message is in the thread (or there are none). */
  async #reachFocus(id: string): Promise<void> {
    for (let page = 0; page < FOCUS_PAGES; page++) {
      const focus = this.state.focus;
      const thread = this.state.threads[id];
      if (focus?.conversationId !== id || thread === undefined) return;
      if (thread.messages.some((m) => m.id === focus.messageId)) return;
      if (!thread.hasMore) {
        this.clearFocus();
        return;
      }
      await this.loadEarlier();
    }
  }

  /**
   * A conversation's active path may have changed (a switch here or on another device): a
   * loaded thread that does not end where the path ends is reloaded (shown) or marked stale.
   */
  #followActivePath(conversation: WireConversation): void {
    const active = conversation.active_message_id;
    const thread = this.state.threads[conversation.id];
    if (!active || thread === undefined || isBusy(thread)) return;
    const shownLast = thread.messages.findLast((m) => !m.id.startsWith(LOCAL_PREFIX))?.id;
    if (shownLast === active) return;
    const view = this.state.view;
    if (view.kind === "conversation" && view.id === conversation.id && this.client.state.status === "open") {
      void this.#loadHistory(conversation.id);
    } else {
      this.#patchThread(conversation.id, { stale: true });
    }
  }

  async search(query: string): Promise<void> {
    const token = ++this.#searchToken;
    this.store.update(() => ({ query, conversationsLoading: true }));
    try {
      const frame = await this.client.request({
        type: "conversations.list",
        limit: CONVERSATION_PAGE,
        ...(query === "" ? {} : { query }),
      });
      if (token === this.#searchToken) this.store.update((state) => conversationsLoaded(state, frame, false));
    } catch (error) {
      if (token !== this.#searchToken) return;
      this.store.update(() => ({ conversationsLoading: false }));
      if (!(error instanceof ConnectionLost)) this.#toast(problemOf(error));
    }
  }

  async loadMoreConversations(): Promise<void> {
    const { conversations, conversationsHasMore, conversationsLoading, query } = this.state;
    const last = conversations.at(-1);
    if (!conversationsHasMore || conversationsLoading || last === undefined) return;
    const token = this.#searchToken;
    this.store.update(() => ({ conversationsLoading: true }));
    try {
      const frame = await this.client.request({
        type: "conversations.list",
        limit: CONVERSATION_PAGE,
        before: last.id,
        ...(query === "" ? {} : { query }),
      });
      if (token === this.#searchToken) this.store.update((state) => conversationsLoaded(state, frame, true));
    } catch (error) {
      this.store.update(() => ({ conversationsLoading: false }));
      this.#toast(problemOf(error));
    }
  }

  async rename(id: string, title: string): Promise<void> {
    const clean = title.trim();
    if (clean === "") return;
    try {
      await this.client.request({ type: "conversation.rename", conversation_id: id, title: clean.slice(0, 200) });
    } catch (error) {
      this.#toast(problemOf(error));
    }
  }

  async delete(id: string): Promise<void> {
    try {
      await this.client.request({ type: "conversation.delete", conversation_id: id });
      const view = this.state.view;
      if ((view.kind === "conversation" || view.kind === "missing") && view.id === id) this.newChat(false);
    } catch (error) {
      this.#toast(problemOf(error));
    }
  }

  /** Pin or unpin, archive or restore one conversation. */
  async updateConversation(id: string, change: { pinned?: boolean; archived?: boolean }): Promise<void> {
    try {
      await this.client.request({ type: "conversation.update", conversation_id: id, ...change });
    } catch (error) {
      this.#toast(problemOf(error));
    }
  }

  /** The Archived view's list (the newest 200). */
  async loadArchived(): Promise<void> {
    try {
      const frame = await this.client.request({ type: "conversations.list", archived: true, limit: 200 });
      this.store.update(() => ({ archived: frame.conversations }));
    } catch (error) {
      this.store.update((state) => ({ archived: state.archived ?? [] }));
      this.#toast(problemOf(error));
    }
  }

  /** One action on several conversations at once. The asking tab gets one answer for all,
   * so it applies the change itself (other tabs get one notice per conversation). */
  async bulk(action: BulkAction, ids: string[]): Promise<boolean> {
    if (ids.length === 0) return false;
    try {
      const frame = await this.client.request({ type: "conversations.bulk", action, conversation_ids: ids.slice(0, 200) });
      for (const id of frame.conversation_ids) {
        if (action === "delete") {
          this.store.update((state) => conversationDeleted(state, id));
          continue;
        }
        const known =
          this.state.conversations.find((c) => c.id === id) ??
          this.state.archived?.find((c) => c.id === id) ??
          (this.state.opened?.id === id ? this.state.opened : undefined);
        if (known === undefined) continue;
        const change =
          action === "archive" ? { archived: true } : action === "unarchive" ? { archived: false } : { pinned: action === "pin" };
        this.store.update((state) => conversationUpdated(state, { ...known, ...change }));
      }
      const view = this.state.view;
      if (action === "delete" && view.kind === "missing" && frame.conversation_ids.includes(view.id)) this.newChat(false);
      return true;
    } catch (error) {
      this.#toast(problemOf(error));
      return false;
    }
  }

  /** Conversations in liaotian's export format (their active paths), for one JSON file. */
  async exportConversations(ids: string[]): Promise<ConversationExport[] | null> {
    try {
      const exports: ConversationExport[] = [];
      for (const id of ids) {
        exports.push((await this.client.request({ type: "conversation.export", conversation_id: id })).export);
      }
      return exports;
    } catch (error) {
      this.#toast(problemOf(error));
      return null;
    }
  }

  /** Import a file (liaotian's export or ChatGPT's conversations.json), then say how it went. */
  async importFile(file: File): Promise<ImportOutcome | null> {
    try {
      const outcome = await importConversations(file);
      this.#toast(
        { code: "imported", message: "", details: { imported: outcome.imported, skipped: outcome.skipped } },
        "info",
      );
      await this.search("");
      return outcome;
    } catch (error) {
      if (error instanceof UploadError && error.code !== "connection") {
        // The server's own words say what is wrong with the file.
        const code = error.status === 413 ? "import_too_large" : "import_failed";
        this.#toast({ code, message: error.message, details: { reason: error.message || error.code } });
      } else {
        this.#toast({ code: "connection", message: "" });
      }
      return null;
    }
  }

  // -- share links ----------------------------------------------------------------------------

  /** Rejects with the server's error (`share_links_disabled`, …): the share dialog says it. */
  async createShare(conversationId: string, messageId: string | null, expiresIn: number | null): Promise<WireShare> {
    const frame = await this.client.request({
      type: "share.create",
      conversation_id: conversationId,
      ...(messageId === null ? {} : { message_id: messageId }),
      ...(expiresIn === null ? {} : { expires_in: expiresIn }),
    });
    return frame.share;
  }

  async listShares(conversationId: string): Promise<WireShare[]> {
    return (await this.client.request({ type: "shares.list", conversation_id: conversationId })).shares;
  }

  async revokeShare(shareId: string): Promise<WireShare> {
    return (await this.client.request({ type: "share.revoke", share_id: shareId })).share;
  }

  /** `/?copy=SHARE_ID`: continue a shared conversation as one of the user's own. */
  async #copySharedConversation(shareId: string): Promise<void> {
    try {
      const frame = await this.client.request({ type: "share.copy", share_id: shareId });
      this.store.update((state) => ({
        conversations: [frame.conversation, ...state.conversations.filter((c) => c.id !== frame.conversation.id)],
      }));
      this.store.update((state) => ({ conversations: inListOrderOf(state.conversations) }));
      this.openConversation(frame.conversation.id, false);
    } catch (error) {
      this.#toast(problemOf(error));
    }
  }

  /** The whole conversation as a file (every page of its history is fetched). */
  async export(format: "markdown" | "json", labels: ExportLabels): Promise<{ name: string; type: string; text: string } | null> {
    const conversation = this.activeConversation;
    if (conversation === undefined) return null;
    try {
      const messages = await this.#allMessages(conversation.id);
      return format === "markdown"
        ? { name: fileName(conversation, "md"), type: "text/markdown", text: toMarkdown(conversation, messages, labels) }
        : { name: fileName(conversation, "json"), type: "application/json", text: toJson(conversation, messages) };
    } catch (error) {
      this.#toast(problemOf(error));
      return null;
    }
  }

  // -- settings -------------------------------------------------------------------------------

  selectModel(id: string): void {
    this.updateSettings({ model: id });
    this.store.update((state) => ({
      selectedModel: id,
      composerProblem: state.composerProblem?.code === "provider_not_configured" ? null : state.composerProblem,
    }));
  }

  updateSettings(change: Partial<ReplySettings>): void {
    this.store.update((state) => ({ settings: { ...state.settings, ...change } }));
    saveReplySettings(this.state.settings);
  }

  setSystemPrompt(text: string): void {
    const key = this.threadKey;
    this.store.update((state) => ({ systemPrompts: { ...state.systemPrompts, [key]: text } }));
  }

  /** Show a problem above the composer (an image refused before it is sent, say). */
  showProblem(problem: Problem): void {
    this.#setProblem(problem);
  }

  dismissProblem(): void {
    this.store.update(() => ({ composerProblem: null }));
  }

  dismissToast(id: number): void {
    this.store.update((state) => ({ toasts: state.toasts.filter((toast) => toast.id !== id) }));
  }

  reconnectNow(): void {
    this.client.reconnectNow();
  }

  /** Show a problem that is not about the message being sent, for a few seconds. */
  notify(problem: Problem): void {
    this.#toast(problem);
  }

  // -- the server's side ----------------------------------------------------------------------

  #onFrame(frame: ServerFrame): void {
    switch (frame.type) {
      case "reply.started":
        this.store.update((state) => replyStarted(state, frame));
        break;
      case "reply.delta":
        this.store.update((state) => replyDelta(state, frame));
        break;
      case "reply.reasoning":
        this.store.update((state) => replyReasoning(state, frame));
        break;
      case "reply.sources":
        this.store.update((state) => replySources(state, frame));
        break;
      case "reply.done":
        this.#mine.delete(frame.message_id);
        this.store.update((state) => replyDone(state, frame));
        // "An answer is being written" is over once it is.
        if (BUSY_CODES.has(this.state.composerProblem?.code ?? "") && !isBusy(this.activeThread)) this.dismissProblem();
        break;
      case "conversation.updated":
        this.store.update((state) => conversationUpdated(state, frame.conversation));
        this.#followActivePath(frame.conversation);
        break;
      case "conversation.deleted":
        this.store.update((state) => conversationDeleted(state, frame.conversation_id));
        break;
      case "hello":
        this.store.update((state) => ({
          defaultModel: frame.default_model,
          selectedModel: state.selectedModel ?? this.#preferredModel({ ...state, defaultModel: frame.default_model }),
        }));
        break;
      case "error":
        // An error without a request id is the server speaking up on its own (a refused
        // connection, say); errors of requests are handled where they were asked.
        if (frame.id === undefined && !this.state.toasts.some((toast) => toast.problem.code === frame.code)) {
          this.#toast({ code: frame.code, message: frame.message });
        }
        break;
      default:
        // Answers to requests (lists, history, models, acks) are handled where they were asked.
        break;
    }
  }

  /** After every (re)connection: refresh what may have changed, resume what was streaming. */
  async #onOpen(): Promise<void> {
    const view = this.state.view;
    const activeId = view.kind === "conversation" ? view.id : null;
    this.store.update((state) => {
      const threads: Record<string, Thread> = {};
      for (const [id, thread] of Object.entries(state.threads)) {
        threads[id] = id === DRAFT || id === activeId ? thread : { ...thread, stale: true };
      }
      return { threads };
    });
    for (const [messageId, progress] of Object.entries(this.state.replies)) {
      this.#subscribe(messageId, progress.lastSeq, progress.conversationId);
    }
    const tasks: Promise<unknown>[] = [this.#loadModels(), this.search(this.state.query)];
    if (activeId !== null) tasks.push(this.#loadHistory(activeId));
    if (this.state.archived !== null) tasks.push(this.loadArchived());
    const copy = this.#copyShare;
    this.#copyShare = null;
    if (copy !== null) tasks.push(this.#copySharedConversation(copy));
    await Promise.allSettled(tasks);
  }

  async #loadModels(): Promise<void> {
    try {
      const frame = await this.client.request({ type: "models.list" });
      this.store.update((state) => {
        const next = { ...state, models: frame.models, defaultModel: frame.default };
        const known = state.selectedModel !== null && frame.models.some((m) => m.id === state.selectedModel);
        return { models: frame.models, defaultModel: frame.default, selectedModel: known ? state.selectedModel : this.#preferredModel(next) };
      });
    } catch {
      // Retried on the next connection; the picker says it is loading meanwhile.
    }
  }

  async #loadHistory(id: string): Promise<void> {
    try {
      const frame = await this.client.request({ type: "conversation.history", conversation_id: id, limit: HISTORY_PAGE });
      const { patch, subscribe } = historyLoaded(this.state, frame, false);
      this.store.update(() => patch);
      for (const messageId of subscribe) this.#subscribe(messageId, -1, id);
      void this.#reachFocus(id);
      const view = this.state.view;
      if (view.kind === "conversation" && view.id === id && frame.conversation.model && this.modelInfo(frame.conversation.model)) {
        this.store.update(() => ({ selectedModel: frame.conversation.model }));
      }
    } catch (error) {
      if (error instanceof RequestError && error.code === "not_found") {
        this.store.update((state) => {
          const threads = { ...state.threads };
          delete threads[id];
          const view = state.view;
          return { threads, view: view.kind === "conversation" && view.id === id ? { kind: "missing", id } : view };
        });
      } else if (!(error instanceof ConnectionLost)) {
        this.#toast(problemOf(error));
      }
    }
  }

  #subscribe(messageId: string, afterSeq: number, conversationId: string): void {
    this.client.request({ type: "chat.subscribe", message_id: messageId, after_seq: afterSeq }).then(
      (frame) => {
        if (frame.type === "ack") this.#forget(messageId, conversationId);
      },
      (error: unknown) => {
        if (error instanceof RequestError) this.#forget(messageId, conversationId);
        // ConnectionLost: the next connection subscribes again from the last seq seen.
      },
    );
  }

  /** Stop following a reply the server has no more events for; the history has its outcome. */
  #forget(messageId: string, conversationId: string): void {
    this.store.update((state) => {
      const replies = { ...state.replies };
      delete replies[messageId];
      return { replies };
    });
    if (this.state.threads[conversationId] !== undefined) void this.#loadHistory(conversationId);
  }

  async #sendWithRetries(frame: Extract<ClientFrame, { type: "chat.send" }>): Promise<ReplyStartedFrame> {
    // client_message_id makes a repeated send return the first reply, so a send whose answer
    // was lost with the connection is simply sent again once the page reconnects.
    for (let attempt = 1; ; attempt++) {
      await this.client.whenOpen();
      try {
        return await this.client.request(frame);
      } catch (error) {
        const transient = error instanceof ConnectionLost || error instanceof RequestTimeout;
        if (!transient || attempt >= SEND_ATTEMPTS) throw error;
      }
    }
  }

  async #startReply(
    id: string,
    frame: Extract<ClientFrame, { type: "chat.regenerate" | "chat.edit" }>,
    options: ReplyOptions,
  ): Promise<boolean> {
    this.#patchThread(id, { sending: true });
    this.store.update(() => ({ composerProblem: null }));
    try {
      const started = await this.client.request(frame);
      this.#afterStart(id, started, options);
      return true;
    } catch (error) {
      this.#patchThread(id, { sending: false });
      this.#setProblem(problemOf(error, options.model ?? this.model));
      return false;
    }
  }

  /** The reply started: the conversation now has the system prompt that was sent with it. */
  #afterStart(key: string, started: ReplyStartedFrame, options: ReplyOptions): void {
    this.#mine.add(started.message_id);
    this.store.update((state) => {
      const systemPrompts = { ...state.systemPrompts };
      delete systemPrompts[key];
      if (options.system_prompt === undefined) return { systemPrompts };
      const prompt = options.system_prompt;
      const withPrompt = (c: Conversation): Conversation =>
        c.id === started.conversation_id ? { ...c, system_prompt: prompt } : c;
      return {
        systemPrompts,
        conversations: state.conversations.map(withPrompt),
        opened: state.opened === null ? null : withPrompt(state.opened),
      };
    });
    const view = this.state.view;
    if (view.kind === "conversation" && view.id === started.conversation_id) showInUrl(view.id, key === DRAFT ? "push" : "replace");
  }

  #replyOptions(key: string): ReplyOptions {
    const { settings } = this.state;
    const options: ReplyOptions = { stream: settings.stream };
    const model = this.model;
    if (model !== null) options.model = model;
    if (settings.temperature !== null) options.temperature = settings.temperature;
    if (settings.maxTokens !== null) options.max_tokens = settings.maxTokens;
    // Thinking is sent whenever it can be switched (so the choice shown is the one used);
    // a model whose thinking is fixed refuses any choice.
    const features = this.features;
    if (features.thinking.shown && !features.thinking.fixed) options.thinking = features.thinking.on;
    if (features.thinking.on && settings.thinkingBudget !== null) options.thinking_budget = settings.thinkingBudget;
    if (features.search.on) options.search = true;
    const draft = this.state.systemPrompts[key];
    const current = key === DRAFT ? "" : (this.activeConversation?.system_prompt ?? "");
    if (draft !== undefined && draft !== current) options.system_prompt = draft;
    return options;
  }

  #preferredModel(state: AppState): string | null {
    const saved = state.settings.model;
    if (saved !== null && (state.models === null || state.models.some((m) => m.id === saved && m.available))) {
      return saved;
    }
    return state.defaultModel;
  }

  async #allMessages(id: string): Promise<Message[]> {
    const thread = this.state.threads[id];
    if (thread !== undefined && !thread.hasMore && !thread.stale) {
      return thread.messages.filter((m) => !m.id.startsWith(LOCAL_PREFIX));
    }
    const pages: Message[][] = [];
    let before: string | undefined;
    for (;;) {
      const frame = await this.client.request({
        type: "conversation.history",
        conversation_id: id,
        limit: 500,
        ...(before === undefined ? {} : { before }),
      });
      const page = frame.messages.filter((m) => m.role !== "system").map(messageFromWire);
      pages.unshift(page);
      before = page[0]?.id;
      if (!frame.has_more || before === undefined) break;
    }
    return pages.flat();
  }

  #patchThread(id: string, change: Partial<Thread>): void {
    this.store.update((state) => {
      const thread = state.threads[id];
      return thread === undefined ? {} : { threads: { ...state.threads, [id]: { ...thread, ...change } } };
    });
  }

  #setProblem(problem: Problem): void {
    this.store.update(() => ({ composerProblem: problem }));
  }

  #toast(problem: Problem, tone: "problem" | "info" = "problem"): void {
    const id = this.#nextToast++;
    this.store.update((state) => ({ toasts: [...state.toasts, { id, problem, tone }] }));
    setTimeout(() => this.dismissToast(id), TOAST_MS);
  }
}
