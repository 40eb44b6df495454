/**
 * <lt-sidebar>: the owner's conversations, newest first and grouped by day, with search,
 * rename, delete, and the page's own controls (connection, language, theme) at the bottom.
 */
import { html, nothing, type TemplateResult } from "lit";
import { repeat } from "lit/directives/repeat.js";
import { getLocale, type Locale, LOCALES, type MessageKey, setLocale, t } from "../i18n";
import type { ConnectionState } from "../protocol/client";
import type { ChatController } from "../state/chat";
import type { ThemeChoice } from "../state/preferences";
import type { Conversation } from "../state/types";
import { getTheme, setTheme } from "../theme";
import { LightElement } from "./base";
import { icons } from "./icons";
import { logo } from "./logo";

const SEARCH_DELAY_MS = 250;
const DAY_MS = 86_400_000;

function groupOf(updatedAt: number, now: Date): MessageKey {
  const startOfToday = new Date(now.getFullYear(), now.getMonth(), now.getDate()).getTime();
  const at = updatedAt * 1000;
  if (at >= startOfToday) return "sidebar.today";
  if (at >= startOfToday - DAY_MS) return "sidebar.yesterday";
  if (at >= startOfToday - 7 * DAY_MS) return "sidebar.week";
  if (at >= startOfToday - 30 * DAY_MS) return "sidebar.month";
  return "sidebar.older";
}

export class Sidebar extends LightElement {
  static override properties = {
    controller: { attribute: false },
    conversations: { attribute: false },
    activeId: { attribute: false },
    query: { attribute: false },
    hasMore: { type: Boolean },
    loading: { type: Boolean },
    connection: { attribute: false },
    user: { attribute: false },
    renaming: { state: true },
    now: { state: true },
  };

  declare controller: ChatController;
  declare conversations: Conversation[];
  declare activeId: string | null;
  declare query: string;
  declare hasMore: boolean;
  declare loading: boolean;
  declare connection: ConnectionState;
  /** The signed-in user, shown with "Sign out"; null in open mode. */
  declare user: string | null;
  declare renaming: string | null;
  /** A clock for the reconnect countdown. */
  declare now: number;

  #searchTimer: ReturnType<typeof setTimeout> | null = null;
  #clock: ReturnType<typeof setInterval> | null = null;

  constructor() {
    super();
    this.conversations = [];
    this.activeId = null;
    this.query = "";
    this.hasMore = false;
    this.loading = false;
    this.renaming = null;
    this.user = null;
    this.now = Date.now();
  }

  protected override updated(): void {
    // Tick once a second only while a countdown is shown.
    const counting = this.connection?.status === "waiting";
    if (counting && this.#clock === null) this.#clock = setInterval(() => (this.now = Date.now()), 1000);
    if (!counting && this.#clock !== null) {
      clearInterval(this.#clock);
      this.#clock = null;
    }
  }

  override disconnectedCallback(): void {
    super.disconnectedCallback();
    if (this.#clock !== null) clearInterval(this.#clock);
    this.#clock = null;
  }

  protected override render(): TemplateResult {
    return html`<nav class="sidebar-inner" aria-label=${t("sidebar.label")}>
      <div class="sidebar-head">
        <a class="brand" href="/" @click=${this.#newChat}>
          <span class="logo" aria-hidden="true">${logo(18)}</span>
          <span class="brand-name">liaotian <span lang="zh-CN">聊天</span></span>
        </a>
        <button type="button" class="icon-btn" data-action="close-sidebar" aria-label=${t("sidebar.close")} title=${t("sidebar.close")}
          @click=${() => this.dispatchEvent(new CustomEvent("toggle-sidebar", { bubbles: true }))}>
          ${icons.sidebar()}
        </button>
      </div>
      <button type="button" class="btn new-chat" data-action="new-chat" @click=${this.#newChat}>
        ${icons.plus()}<span>${t("sidebar.newChat")}</span>
      </button>
      <div class="search">
        ${icons.search()}
        <input
          type="search"
          aria-label=${t("sidebar.search")}
          placeholder=${t("sidebar.search")}
          .value=${this.query}
          @input=${this.#onSearch}
          @keydown=${(event: KeyboardEvent) => event.key === "Escape" && this.#clearSearch()}
        />
        ${this.query
          ? html`<button type="button" class="icon-btn" aria-label=${t("sidebar.clearSearch")} @click=${this.#clearSearch}>${icons.x()}</button>`
          : nothing}
      </div>
      <div class="conversations">${this.#list()}</div>
      ${this.#footer()}
    </nav>`;
  }

  #list(): TemplateResult {
    if (this.conversations.length === 0) {
      if (this.loading) return html`<p class="sidebar-empty"><span class="spinner" aria-hidden="true"></span></p>`;
      return html`<p class="sidebar-empty">${this.query ? t("sidebar.noMatches", { query: this.query }) : t("sidebar.empty")}</p>`;
    }
    const now = new Date();
    const groups: { key: MessageKey; items: Conversation[] }[] = [];
    for (const conversation of this.conversations) {
      const key = groupOf(conversation.updated_at, now);
      const group = groups.at(-1);
      if (group?.key === key) group.items.push(conversation);
      else groups.push({ key, items: [conversation] });
    }
    return html`${groups.map(
        (group) => html`<section class="conv-group">
          <h2 class="conv-group-title">${t(group.key)}</h2>
          <ul role="list">
            ${repeat(group.items, (item) => item.id, (item) => this.#item(item))}
          </ul>
        </section>`,
      )}
      ${this.hasMore
        ? html`<button type="button" class="btn btn-ghost btn-small load-more" ?disabled=${this.loading}
            @click=${() => void this.controller.loadMoreConversations()}>${t("sidebar.loadMore")}</button>`
        : nothing}`;
  }

  #item(conversation: Conversation): TemplateResult {
    const active = conversation.id === this.activeId;
    if (this.renaming === conversation.id) {
      return html`<li class="conv-item renaming">
        <form class="rename-form" @submit=${(event: SubmitEvent) => this.#rename(event, conversation.id)}>
          <input
            class="rename-input"
            aria-label=${t("sidebar.renameLabel")}
            maxlength="200"
            .value=${conversation.title}
            @keydown=${(event: KeyboardEvent) => event.key === "Escape" && (this.renaming = null)}
            @blur=${(event: FocusEvent) => (event.target as HTMLInputElement).form?.requestSubmit()}
          />
        </form>
      </li>`;
    }
    return html`<li class="conv-item ${active ? "active" : ""}" data-conversation-id=${conversation.id}>
      <a
        class="conv-link"
        href="/c/${conversation.id}"
        aria-current=${active ? "page" : "false"}
        title=${conversation.title}
        @click=${(event: MouseEvent) => this.#open(event, conversation.id)}
      >
        <span class="conv-title">${conversation.title}</span>
        ${conversation.streaming_message_id
          ? html`<span class="live-dot" title=${t("sidebar.answering")} aria-label=${t("sidebar.answering")}></span>`
          : nothing}
      </a>
      <details class="menu conv-menu" @toggle=${this.#onMenuToggle}>
        <summary class="icon-btn" aria-label=${t("sidebar.actions", { title: conversation.title })} title=${t("sidebar.actions", { title: conversation.title })}>
          ${icons.more()}
        </summary>
        <div class="menu-items" role="menu">
          <button type="button" role="menuitem" data-action="rename" @click=${(event: Event) => this.#startRename(event, conversation.id)}>
            ${icons.rename()}<span>${t("sidebar.rename")}</span>
          </button>
          <button type="button" role="menuitem" class="danger" data-action="delete" @click=${(event: Event) => this.#delete(event, conversation)}>
            ${icons.trash()}<span>${t("sidebar.delete")}</span>
          </button>
        </div>
      </details>
    </li>`;
  }

  #footer(): TemplateResult {
    const connection = this.connection;
    const status = connection?.status ?? "connecting";
    const seconds = connection?.retryAt ? Math.max(0, Math.ceil((connection.retryAt - this.now) / 1000)) : 0;
    const label =
      status === "open"
        ? t("connection.open")
        : status === "waiting"
          ? t("connection.waiting", { seconds })
          : t("connection.connecting");
    const theme = getTheme();
    const themes: { id: ThemeChoice; label: MessageKey; icon: () => TemplateResult }[] = [
      { id: "system", label: "prefs.themeSystem", icon: () => html`${icons.monitor()}` },
      { id: "light", label: "prefs.themeLight", icon: () => html`${icons.sun()}` },
      { id: "dark", label: "prefs.themeDark", icon: () => html`${icons.moon()}` },
    ];
    return html`<div class="sidebar-foot">
      ${this.user === null ? nothing : this.#account(this.user)}
      <div class="connection" data-status=${status} role="status" aria-live="polite">
        <span class="connection-dot" aria-hidden="true"></span>
        <span class="connection-label">${label}</span>
        ${status === "waiting"
          ? html`<button type="button" class="link-btn" @click=${() => this.controller.reconnectNow()}>${t("connection.retry")}</button>`
          : nothing}
      </div>
      <div class="prefs">
        <label class="select-wrap language">
          ${icons.globe()}
          <span class="visually-hidden">${t("prefs.language")}</span>
          <select aria-label=${t("prefs.language")} data-control="language"
            @change=${(event: Event) => setLocale((event.target as HTMLSelectElement).value as Locale, true)}>
            ${LOCALES.map((locale) => html`<option value=${locale.id} ?selected=${locale.id === getLocale()}>${locale.name}</option>`)}
          </select>
        </label>
        <div class="segmented" role="radiogroup" aria-label=${t("prefs.theme")} data-control="theme">
          ${themes.map(
            (item) => html`<button
              type="button"
              role="radio"
              aria-checked=${item.id === theme ? "true" : "false"}
              aria-label=${t(item.label)}
              title=${t(item.label)}
              data-theme-choice=${item.id}
              @click=${() => setTheme(item.id)}
            >
              ${item.icon()}
            </button>`,
          )}
        </div>
      </div>
    </div>`;
  }

  #account(user: string): TemplateResult {
    return html`<div class="account">
      <span class="avatar" aria-hidden="true">${user.slice(0, 1).toUpperCase()}</span>
      <span class="account-name" title=${`${t("account.signedInAs")} ${user}`}>
        <span class="visually-hidden">${t("account.signedInAs")} </span>${user}
      </span>
      <button type="button" class="btn btn-ghost btn-small" data-action="sign-out"
        @click=${() => this.dispatchEvent(new CustomEvent("sign-out", { bubbles: true }))}>
        ${icons.signOut()}<span>${t("account.signOut")}</span>
      </button>
    </div>`;
  }

  #newChat = (event: Event): void => {
    event.preventDefault();
    this.controller.newChat();
    this.dispatchEvent(new CustomEvent("navigated", { bubbles: true }));
  };

  #open(event: MouseEvent, id: string): void {
    // Let the browser open new tabs and windows itself.
    if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    this.controller.openConversation(id);
    this.dispatchEvent(new CustomEvent("navigated", { bubbles: true }));
  }

  #onSearch = (event: Event): void => {
    const query = (event.target as HTMLInputElement).value;
    if (this.#searchTimer !== null) clearTimeout(this.#searchTimer);
    this.#searchTimer = setTimeout(() => void this.controller.search(query.trim()), SEARCH_DELAY_MS);
  };

  #clearSearch = (): void => {
    const input = this.querySelector<HTMLInputElement>(".search input");
    if (input) input.value = "";
    if (this.#searchTimer !== null) clearTimeout(this.#searchTimer);
    void this.controller.search("");
  };

  /** One open menu at a time. */
  #onMenuToggle = (event: Event): void => {
    const opened = event.target as HTMLDetailsElement;
    if (!opened.open) return;
    for (const menu of this.querySelectorAll<HTMLDetailsElement>("details.menu[open]")) {
      if (menu !== opened) menu.open = false;
    }
  };

  async #startRename(event: Event, id: string): Promise<void> {
    (event.target as Element).closest("details")?.removeAttribute("open");
    this.renaming = id;
    await this.updateComplete;
    const input = this.querySelector<HTMLInputElement>(".rename-input");
    input?.focus();
    input?.select();
  }

  #rename(event: SubmitEvent, id: string): void {
    event.preventDefault();
    if (this.renaming !== id) return;
    const input = (event.target as HTMLFormElement).querySelector("input");
    const title = input?.value.trim() ?? "";
    const current = this.conversations.find((c) => c.id === id)?.title;
    this.renaming = null;
    if (title !== "" && title !== current) void this.controller.rename(id, title);
  }

  #delete(event: Event, conversation: Conversation): void {
    (event.target as Element).closest("details")?.removeAttribute("open");
    this.dispatchEvent(
      new CustomEvent("confirm-delete", { bubbles: true, detail: { id: conversation.id, title: conversation.title } }),
    );
  }
}

customElements.define("lt-sidebar", Sidebar);
