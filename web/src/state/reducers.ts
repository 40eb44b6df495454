/**
 * How server frames change the state. Pure functions: (state, frame) → the changed parts.
 * The rules for reply events come from docs/protocol.md ("Following and resuming a reply"):
 * a `reply.started` always resets the message's parts (text, reasoning, sources); parts and
 * the done event at or below the last seq seen are repeats and are dropped, so a resumed
 * reply never doubles its text or its thinking.
 */
import type {
  ConversationsFrame,
  HistoryFrame,
  ReplyDeltaFrame,
  ReplyDoneFrame,
  ReplyReasoningFrame,
  ReplySourcesFrame,
  ReplyStartedFrame,
  WireConversation,
  WireMessage,
} from "../protocol/types";
import {
  type AppState,
  blankMessage,
  type Conversation,
  DRAFT,
  emptyThread,
  LOCAL_PREFIX,
  type Message,
  type ReplyProgress,
  type Thread,
  type View,
} from "./types";

type Patch = Partial<AppState>;

export function messageFromWire(message: WireMessage): Message {
  return {
    id: message.id,
    role: message.role === "user" ? "user" : "assistant",
    content: message.content,
    status: message.status,
    model: message.model,
    finishReason: message.finish_reason,
    usage: message.usage,
    ttftMs: message.ttft_ms,
    durationMs: message.duration_ms,
    error: message.error,
    createdAt: message.created_at,
    reasoning: message.reasoning ?? "",
    sources: message.sources ?? [],
    attachments: message.attachments ?? [],
    thinkingMs: message.thinking_ms ?? null,
    thinkingSince: null,
    seenFromStart: false,
    parentId: message.parent_id ?? null,
    siblings: message.siblings && message.siblings.length > 0 ? message.siblings : [message.id],
  };
}

function nowSeconds(): number {
  return Date.now() / 1000;
}

function matchesQuery(title: string, query: string): boolean {
  return query === "" || title.toLowerCase().includes(query.toLowerCase());
}

/** The list's order, as the server gives it: pinned first, then newest first. */
export function inListOrder(list: Conversation[]): Conversation[] {
  return list
    .map((item, index) => ({ item, index }))
    .sort(
      (a, b) =>
        Number(b.item.pinned ?? false) - Number(a.item.pinned ?? false) ||
        b.item.updated_at - a.item.updated_at ||
        a.index - b.index,
    )
    .map(({ item }) => item);
}

/** Put `conversation` in its place (it just changed), or leave the list alone if a search
 * hides it; an archived conversation leaves the list. */
function upsertFirst(list: Conversation[], conversation: Conversation, query: string): Conversation[] {
  const rest = list.filter((item) => item.id !== conversation.id);
  if (conversation.archived || !matchesQuery(conversation.title, query)) return rest.length === list.length ? list : rest;
  return inListOrder([conversation, ...rest]);
}

/**
 * The open conversation as last seen in any list: kept in `opened`, so a search that hides
 * it from the sidebar leaves its title and actions in the header.
 */
function openedFrom(state: AppState, ...lists: Conversation[][]): Conversation | null {
  const view = state.view;
  if (view.kind !== "conversation") return state.opened;
  for (const list of lists) {
    const found = list.find((item) => item.id === view.id);
    if (found !== undefined) return found;
  }
  return state.opened?.id === view.id ? state.opened : null;
}

function patchConversation(
  list: Conversation[],
  id: string,
  change: (conversation: Conversation) => Conversation,
): Conversation[] {
  return list.map((item) => (item.id === id ? change(item) : item));
}

function withThread(state: AppState, id: string, change: (thread: Thread) => Thread): Patch {
  const thread = state.threads[id];
  if (thread === undefined) return {};
  return { threads: { ...state.threads, [id]: change(thread) } };
}

function replaceMessage(thread: Thread, id: string, change: (message: Message) => Message): Thread {
  const index = thread.messages.findIndex((message) => message.id === id);
  if (index < 0) return thread;
  const messages = thread.messages.slice();
  messages[index] = change(messages[index]!);
  return { ...thread, messages };
}

export function replyStarted(state: AppState, frame: ReplyStartedFrame): Patch {
  const conversationId = frame.conversation_id;
  const localId = frame.client_message_id ? LOCAL_PREFIX + frame.client_message_id : null;
  const threads = { ...state.threads };
  let view: View = state.view;
  let thread = threads[conversationId];
  const draft = threads[DRAFT];
  // The first message of a new chat: the draft becomes the conversation.
  if (thread === undefined && localId !== null && draft?.messages.some((m) => m.id === localId)) {
    thread = draft;
    delete threads[DRAFT];
    if (view.kind === "new") view = { kind: "conversation", id: conversationId, loading: false };
  }
  if (thread !== undefined) {
    const replaced = new Set(frame.replaces ?? []);
    let messages = thread.messages.filter((message) => !replaced.has(message.id));
    const assistantIndex = messages.findIndex((message) => message.id === frame.message_id);
    const localIndex = localId === null ? -1 : messages.findIndex((message) => message.id === localId);
    // Where the user message sits in the tree (absent from servers before branches).
    const userBranch: Partial<Message> = {
      ...(frame.user_parent_id !== undefined ? { parentId: frame.user_parent_id } : {}),
      ...(frame.user_siblings && frame.user_siblings.length > 0 ? { siblings: frame.user_siblings } : {}),
    };
    const userIndex = messages.findIndex((message) => message.id === frame.user_message_id);
    if (localIndex >= 0) {
      const local = messages[localIndex]!;
      messages[localIndex] = {
        ...local,
        ...userBranch,
        id: frame.user_message_id,
        status: "completed",
        attachments: frame.user_attachments ?? local.attachments,
        siblings: frame.user_siblings && frame.user_siblings.length > 0 ? frame.user_siblings : [frame.user_message_id],
      };
    } else if (userIndex >= 0) {
      messages[userIndex] = { ...messages[userIndex]!, ...userBranch };
    } else if (assistantIndex < 0) {
      messages.push({
        ...blankMessage(frame.user_message_id, "user", frame.created_at),
        ...userBranch,
        content: frame.user_message ?? "",
        attachments: frame.user_attachments ?? [],
        status: "completed",
      });
    }
    // A reply.started for a message already shown replays it (a resume): its events come in
    // a burst, so their timing says nothing of how long the model thought.
    const fresh: Message = {
      ...blankMessage(frame.message_id, "assistant", frame.created_at),
      model: frame.model,
      seenFromStart: assistantIndex < 0,
      parentId: frame.user_message_id,
      siblings: frame.reply_siblings && frame.reply_siblings.length > 0 ? frame.reply_siblings : [frame.message_id],
    };
    if (assistantIndex >= 0) {
      messages = messages.slice();
      messages[assistantIndex] = fresh;
    } else {
      messages.push(fresh);
    }
    threads[conversationId] = { ...thread, messages, sending: false };
  }
  const known = state.conversations.find((item) => item.id === conversationId);
  const summary: WireConversation = {
    ...(known ?? { id: conversationId, system_prompt: null, created_at: frame.created_at }),
    title: frame.title,
    model: frame.model,
    updated_at: nowSeconds(),
    streaming_message_id: frame.message_id,
    active_message_id: frame.message_id,
  };
  const progress: ReplyProgress = { conversationId, lastSeq: frame.seq };
  const conversations = upsertFirst(state.conversations, summary, state.query);
  return {
    threads,
    view,
    replies: { ...state.replies, [frame.message_id]: progress },
    conversations,
    opened: openedFrom({ ...state, view }, [summary], conversations),
  };
}

/** A part of a followed reply, applied once: at or below the last seq seen it is a repeat. */
function replyPart(
  state: AppState,
  frame: ReplyDeltaFrame | ReplyReasoningFrame | ReplySourcesFrame,
  change: (message: Message) => Message,
): Patch {
  const progress = state.replies[frame.message_id];
  if (progress === undefined || frame.seq <= progress.lastSeq) return {};
  return {
    ...withThread(state, progress.conversationId, (thread) => replaceMessage(thread, frame.message_id, change)),
    replies: { ...state.replies, [frame.message_id]: { ...progress, lastSeq: frame.seq } },
  };
}

export function replyDelta(state: AppState, frame: ReplyDeltaFrame, now = Date.now()): Patch {
  return replyPart(state, frame, (message) => ({
    ...message,
    content: message.content + frame.text,
    // The answer began: the thinking before it is over (the done event has the server's figure).
    thinkingMs:
      message.thinkingMs ?? (message.thinkingSince !== null && message.content === "" ? now - message.thinkingSince : null),
  }));
}

export function replyReasoning(state: AppState, frame: ReplyReasoningFrame, now = Date.now()): Patch {
  return replyPart(state, frame, (message) => ({
    ...message,
    reasoning: message.reasoning + frame.text,
    thinkingSince: message.thinkingSince ?? (message.seenFromStart ? now : null),
  }));
}

export function replySources(state: AppState, frame: ReplySourcesFrame): Patch {
  // Sources are whole lists: a second one (a second search) adds to, or replaces, by index.
  return replyPart(state, frame, (message) => {
    const byIndex = new Map(message.sources.map((source) => [source.index, source]));
    for (const source of frame.sources) byIndex.set(source.index, source);
    return { ...message, sources: [...byIndex.values()].sort((a, b) => a.index - b.index) };
  });
}

export function replyDone(state: AppState, frame: ReplyDoneFrame): Patch {
  const progress = state.replies[frame.message_id];
  if (progress !== undefined && frame.seq <= progress.lastSeq) return {};
  const replies = { ...state.replies };
  delete replies[frame.message_id];
  return {
    ...withThread(state, frame.conversation_id, (thread) =>
      replaceMessage(thread, frame.message_id, (message) => ({
        ...message,
        status: frame.status,
        finishReason: frame.finish_reason,
        usage: frame.usage,
        ttftMs: frame.ttft_ms,
        durationMs: frame.duration_ms,
        error: frame.error,
        thinkingMs: frame.thinking_ms ?? message.thinkingMs,
      })),
    ),
    replies,
    conversations: patchConversation(state.conversations, frame.conversation_id, (item) =>
      item.streaming_message_id === frame.message_id ? { ...item, streaming_message_id: null } : item,
    ),
  };
}

/**
 * A page of history. `earlier` pages go before what is loaded. Otherwise the page is the
 * newest one: it replaces the thread, except for replies this page is following live (their
 * text is newer than the database's checkpoint) and messages still being sent.
 * Returns the ids of streaming replies to subscribe to from the start.
 */
export function historyLoaded(
  state: AppState,
  frame: HistoryFrame,
  earlier: boolean,
): { patch: Patch; subscribe: string[] } {
  const id = frame.conversation.id;
  const incoming = frame.messages.filter((m) => m.role !== "system").map(messageFromWire);
  const old = state.threads[id] ?? emptyThread();
  const replies = { ...state.replies };
  const subscribe: string[] = [];
  let thread: Thread;
  if (earlier) {
    const have = new Set(old.messages.map((message) => message.id));
    thread = {
      ...old,
      messages: [...incoming.filter((message) => !have.has(message.id)), ...old.messages],
      hasMore: frame.has_more,
      loadingEarlier: false,
    };
  } else {
    const live = new Map(old.messages.map((message) => [message.id, message]));
    const merged = incoming.map((message) => {
      const following = replies[message.id];
      const local = live.get(message.id);
      if (following !== undefined && following.lastSeq >= 0 && local !== undefined) return local;
      if (message.status === "streaming" && following === undefined) {
        replies[message.id] = { conversationId: id, lastSeq: -1 };
        subscribe.push(message.id);
      }
      return message;
    });
    // Keep older pages already loaded when this page continues them.
    const firstId = merged[0]?.id;
    const overlap = firstId === undefined ? -1 : old.messages.findIndex((message) => message.id === firstId);
    const older = overlap > 0 ? old.messages.slice(0, overlap) : [];
    const unsent = old.sending ? old.messages.filter((message) => message.id.startsWith(LOCAL_PREFIX)) : [];
    thread = {
      ...old,
      messages: [...older, ...merged, ...unsent],
      hasMore: overlap > 0 ? old.hasMore : frame.has_more,
      stale: false,
    };
  }
  const view: View =
    state.view.kind === "conversation" && state.view.id === id ? { ...state.view, loading: false } : state.view;
  return {
    patch: {
      threads: { ...state.threads, [id]: thread },
      replies,
      view,
      opened: frame.conversation,
      conversations: patchConversation(state.conversations, id, (item) => ({
        ...item,
        ...frame.conversation,
        streaming_message_id: item.streaming_message_id,
      })),
    },
    subscribe,
  };
}

export function conversationsLoaded(state: AppState, frame: ConversationsFrame, append: boolean): Patch {
  const list = append ? [...state.conversations] : [];
  const have = new Set(list.map((item) => item.id));
  for (const item of frame.conversations) if (!have.has(item.id)) list.push(item);
  return {
    conversations: list,
    conversationsHasMore: frame.has_more,
    conversationsLoading: false,
    opened: openedFrom(state, list, state.conversations),
  };
}

/**
 * A conversation changed (renamed, titled, pinned, archived, switched to another branch):
 * every list that shows it follows. Archiving moves it from the list to the Archived view,
 * restoring moves it back.
 */
export function conversationUpdated(state: AppState, conversation: WireConversation): Patch {
  const opened = state.opened?.id === conversation.id ? { ...state.opened, ...conversation } : state.opened;
  const known = state.conversations.find((item) => item.id === conversation.id);
  const merged: Conversation = {
    ...known,
    ...conversation,
    streaming_message_id: known?.streaming_message_id ?? conversation.streaming_message_id ?? null,
  };
  let conversations = state.conversations;
  if (conversation.archived) {
    conversations = conversations.filter((item) => item.id !== conversation.id);
  } else if (known !== undefined) {
    const moved = known.pinned !== merged.pinned;
    conversations = patchConversation(conversations, conversation.id, () => merged);
    if (moved) conversations = inListOrder(conversations);
  } else {
    // New to this page (a copy of a share, an import, another tab's) or restored from the
    // archive: into the list, in its place, when it falls within the pages loaded.
    const last = conversations.at(-1);
    const restored = state.archived?.some((item) => item.id === conversation.id) ?? false;
    if (restored || !state.conversationsHasMore || last === undefined || merged.updated_at >= last.updated_at) {
      conversations = upsertFirst(conversations, merged, state.query);
    }
  }
  let archived = state.archived;
  if (archived !== null) {
    const rest = archived.filter((item) => item.id !== conversation.id);
    archived = conversation.archived ? [merged, ...rest].sort((a, b) => b.updated_at - a.updated_at) : rest;
  }
  const search = state.search?.results
    ? {
        ...state.search,
        results: state.search.results.map((result) =>
          result.conversation.id === conversation.id ? { ...result, conversation: { ...result.conversation, ...conversation } } : result,
        ),
      }
    : state.search;
  return { opened, conversations, archived, search };
}

export function conversationDeleted(state: AppState, id: string): Patch {
  const threads = { ...state.threads };
  delete threads[id];
  const replies: Record<string, ReplyProgress> = {};
  for (const [messageId, progress] of Object.entries(state.replies)) {
    if (progress.conversationId !== id) replies[messageId] = progress;
  }
  const view: View = state.view.kind === "conversation" && state.view.id === id ? { kind: "missing", id } : state.view;
  return {
    conversations: state.conversations.filter((item) => item.id !== id),
    archived: state.archived === null ? null : state.archived.filter((item) => item.id !== id),
    search: state.search?.results
      ? { ...state.search, results: state.search.results.filter((result) => result.conversation.id !== id) }
      : state.search,
    threads,
    replies,
    view,
  };
}
