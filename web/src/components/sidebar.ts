/**
 * <lt-sidebar>: the owner's conversations (pinned first, then newest first, grouped by day),
 * full-text search of titles and messages, each conversation's menu (pin, rename, share,
 * archive, delete), the Archived view, a select mode for bulk actions, import, and the page's
 * own controls (connection, language, theme) at the bottom.
 */
import { html, nothing, type TemplateResult } from "lit";
import { repeat } from "lit/directives/repeat.js";
import { getLocale, type Locale, LOCALES, type MessageKey, setLocale, t } from "../i18n";
import type { ConnectionState } from "../protocol/client";
import type { ChatController } from "../state/chat";
import type { ThemeChoice } from "../state/preferences";
import type { Conversation, SearchState } from "../state/types";
import { getTheme, setTheme } from "../theme";
import { LightElement } from "./base";
import { icons } from "./icons";
import { logo } from "./logo";
import "./search-results";

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
    role: { attribute: false },
    search: { attribute: false },
    archived: { attribute: false },
    renaming: { state: true },
    now: { state: true },
    showArchived: { state: true },
    selecting: { state: true },
    selected: { state: true },
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
  /** The signed-in account's role: an admin gets the administration page's entry. */
  declare role: string | null;
  declare renaming: string | null;
  /** A clock for the reconnect countdown. */
  declare now: number;
  declare search: SearchState | null;
  declare archived: Conversation[] | null;
  /** The Archived view instead of the list. */
  declare showArchived: boolean;
  /** Select mode: checkboxes and the bulk actions. */
  declare selecting: boolean;
  declare selected: ReadonlySet<string>;

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
    this.role = null;
    this.now = Date.now();
    this.search = null;
    this.archived = null;
    this.showArchived = false;
    this.selecting = false;
    this.selected = new Set();
  }

  /** Put the keyboard in the search box (Ctrl/⌘+K). */
  focusSearch(): void {
    const input = this.querySelector<HTMLInputElement>(".search input");
    input?.focus();
    input?.select();
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
      <div class="search" role="search">
        ${icons.search()}
        <input
          type="search"
          aria-label=${t("sidebar.search")}
          placeholder=${t("sidebar.search")}
          aria-keyshortcuts="Control+K Meta+K"
          @input=${this.#onSearch}
          @keydown=${this.#searchKeys}
        />
        ${this.search
          ? html`<button type="button" class="icon-btn" aria-label=${t("sidebar.clearSearch")} @click=${this.#clearSearch}>${icons.x()}</button>`
          : nothing}
      </div>
      ${this.search ? nothing : this.#tools()}
      <div class="conversations">${this.search
        ? html`<lt-search-results .controller=${this.controller} .search=${this.search}></lt-search-results>`
        : this.showArchived ? this.#archivedList() : this.#list()}</div>
      ${this.#footer()}
    </nav>`;
  }

  /** Select, Archived and Import; in select mode, the bulk actions instead. */
  #tools(): TemplateResult {
    if (this.selecting) {
      const count = this.selected.size;
      const none = count === 0;
      return html`<div class="sidebar-tools bulk-bar" role="toolbar" aria-label=${t("bulk.label")}>
        <span class="bulk-count" aria-live="polite">${t("bulk.count", { count })}</span>
        <button type="button" class="icon-btn" data-action="bulk-archive" aria-label=${t("bulk.archive")} title=${t("bulk.archive")}
          ?disabled=${none} @click=${() => void this.#bulk("archive")}>${icons.archive()}</button>
        <button type="button" class="icon-btn" data-action="bulk-export" aria-label=${t("bulk.export")} title=${t("bulk.export")}
          ?disabled=${none} @click=${this.#bulkExport}>${icons.download()}</button>
        <button type="button" class="icon-btn danger" data-action="bulk-delete" aria-label=${t("bulk.delete")} title=${t("bulk.delete")}
          ?disabled=${none} @click=${this.#bulkDelete}>${icons.trash()}</button>
        <button type="button" class="btn btn-ghost btn-small" data-action="bulk-done" @click=${this.#stopSelecting}>${t("bulk.done")}</button>
      </div>`;
    }
    return html`<div class="sidebar-tools" role="toolbar" aria-label=${t("sidebar.tools")}>
      ${this.showArchived
        ? html`<button type="button" class="btn btn-ghost btn-small" data-action="archived-back" @click=${() => (this.showArchived = false)}>
            ${icons.chevronLeft()}<span>${t("sidebar.backToList")}</span>
          </button>`
        : html`<button type="button" class="btn btn-ghost btn-small" data-action="select" aria-pressed="false"
              ?disabled=${this.conversations.length === 0} @click=${() => (this.selecting = true)}>
              ${icons.select()}<span>${t("sidebar.select")}</span>
            </button>
            <button type="button" class="btn btn-ghost btn-small" data-action="show-archived" @click=${this.#showArchived}>
              ${icons.archive()}<span>${t("sidebar.archived")}</span>
            </button>`}
      <button type="button" class="btn btn-ghost btn-small" data-action="import" title=${t("import.hint")} @click=${this.#pickImport}>
        ${icons.upload()}<span>${t("import.button")}</span>
      </button>
      <input type="file" class="visually-hidden import-file" accept=".json,application/json" tabindex="-1" aria-hidden="true" @change=${this.#import} />
    </div>`;
  }

  #archivedList(): TemplateResult {
    const archived = this.archived;
    if (archived === null) return html`<p class="sidebar-empty"><span class="spinner" aria-hidden="true"></span></p>`;
    return html`<section class="conv-group archived-list">
      <h2 class="conv-group-title">${t("sidebar.archived")}</h2>
      ${archived.length === 0
        ? html`<p class="sidebar-empty">${t("sidebar.archivedEmpty")}</p>`
        : html`<ul role="list">
            ${repeat(
              archived,
              (item) => item.id,
              (item) => html`<li class="conv-item archived ${item.id === this.activeId ? "active" : ""}" data-conversation-id=${item.id}>
                <a class="conv-link" href="/c/${item.id}" title=${item.title} @click=${(event: MouseEvent) => this.#open(event, item.id)}>
                  <span class="conv-title">${item.title}</span>
                </a>
                <button type="button" class="icon-btn" data-action="restore" aria-label=${t("sidebar.restoreTitle", { title: item.title })}
                  title=${t("sidebar.restore")} @click=${() => void this.controller.updateConversation(item.id, { archived: false })}>
                  ${icons.restore()}
                </button>
                <button type="button" class="icon-btn danger" data-action="delete" aria-label=${t("sidebar.deleteTitle", { title: item.title })}
                  title=${t("sidebar.delete")} @click=${(event: Event) => this.#delete(event, item)}>
                  ${icons.trash()}
                </button>
              </li>`,
            )}
          </ul>`}
    </section>`;
  }

  #list(): TemplateResult {
    if (this.conversations.length === 0) {
      if (this.loading) return html`<p class="sidebar-empty"><span class="spinner" aria-hidden="true"></span></p>`;
      return html`<p class="sidebar-empty">${this.query ? t("sidebar.noMatches", { query: this.query }) : t("sidebar.empty")}</p>`;
    }
    const now = new Date();
    const groups: { key: MessageKey; items: Conversation[] }[] = [];
    for (const conversation of this.conversations) {
      const key: MessageKey = conversation.pinned ? "sidebar.pinned" : groupOf(conversation.updated_at, now);
      const group = groups.at(-1);
      if (group?.key === key) group.items.push(conversation);
      else groups.push({ key, items: [conversation] });
    }
    return html`${groups.map(
        (group) => html`<section class="conv-group ${group.key === "sidebar.pinned" ? "pinned" : ""}">
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
    if (this.selecting) {
      const checked = this.selected.has(conversation.id);
      return html`<li class="conv-item selectable ${checked ? "selected" : ""}" data-conversation-id=${conversation.id}>
        <label class="conv-link conv-check">
          <input type="checkbox" .checked=${checked} @change=${() => this.#toggleSelected(conversation.id)} />
          <span class="conv-title">${conversation.title}</span>
        </label>
      </li>`;
    }
    const pinned = conversation.pinned ?? false;
    const classes = ["conv-item", ...(active ? ["active"] : []), ...(pinned ? ["pinned"] : [])].join(" ");
    return html`<li class=${classes} data-conversation-id=${conversation.id}>
      <a
        class="conv-link"
        href="/c/${conversation.id}"
        aria-current=${active ? "page" : "false"}
        title=${conversation.title}
        @click=${(event: MouseEvent) => this.#open(event, conversation.id)}
      >
        ${pinned ? html`<span class="pin-mark" aria-label=${t("sidebar.pinnedMark")}>${icons.pin()}</span>` : nothing}
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
          <button type="button" role="menuitem" data-action=${pinned ? "unpin" : "pin"}
            @click=${(event: Event) => this.#menu(event, () => this.controller.updateConversation(conversation.id, { pinned: !pinned }))}>
            ${icons.pin()}<span>${pinned ? t("sidebar.unpin") : t("sidebar.pin")}</span>
          </button>
          <button type="button" role="menuitem" data-action="rename" @click=${(event: Event) => this.#startRename(event, conversation.id)}>
            ${icons.rename()}<span>${t("sidebar.rename")}</span>
          </button>
          <button type="button" role="menuitem" data-action="share"
            @click=${(event: Event) => this.#menu(event, () => this.#share(conversation))}>
            ${icons.share()}<span>${t("sidebar.share")}</span>
          </button>
          <button type="button" role="menuitem" data-action="archive"
            @click=${(event: Event) => this.#menu(event, () => this.controller.updateConversation(conversation.id, { archived: true }))}>
            ${icons.archive()}<span>${t("sidebar.archive")}</span>
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
      <button type="button" class="account-open" data-action="account-settings" title=${t("account.settings")}
        @click=${() => this.dispatchEvent(new CustomEvent("open-page", { bubbles: true, detail: "account" }))}>
        <span class="avatar" aria-hidden="true">${user.slice(0, 1).toUpperCase()}</span>
        <span class="account-name">
          <span class="visually-hidden">${t("account.signedInAs")} </span>${user}
        </span>
        <span class="visually-hidden"> — ${t("account.settings")}</span>
      </button>
      ${this.role === "admin"
        ? html`<button type="button" class="icon-btn" data-action="administration" aria-label=${t("account.admin")} title=${t("account.admin")}
            @click=${() => this.dispatchEvent(new CustomEvent("open-page", { bubbles: true, detail: "admin" }))}>
            ${icons.shield()}
          </button>`
        : nothing}
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
    if (query.trim() === "") {
      void this.controller.searchMessages("");
      return;
    }
    this.#searchTimer = setTimeout(() => void this.controller.searchMessages(query), SEARCH_DELAY_MS);
  };

  /** Esc clears the search; ↓ goes to the first result. */
  #searchKeys = (event: KeyboardEvent): void => {
    if (event.key === "Escape" && this.search !== null) {
      event.preventDefault();
      this.#clearSearch();
    } else if (event.key === "ArrowDown") {
      const first = this.querySelector<HTMLElement>(".search-link");
      if (first) {
        event.preventDefault();
        first.focus();
      }
    }
  };

  #clearSearch = (): void => {
    const input = this.querySelector<HTMLInputElement>(".search input");
    if (input) input.value = "";
    if (this.#searchTimer !== null) clearTimeout(this.#searchTimer);
    void this.controller.searchMessages("");
    input?.focus();
  };

  #showArchived = (): void => {
    this.showArchived = true;
    void this.controller.loadArchived();
  };

  #toggleSelected(id: string): void {
    const next = new Set(this.selected);
    if (next.has(id)) next.delete(id);
    else next.add(id);
    this.selected = next;
  }

  #stopSelecting = (): void => {
    this.selecting = false;
    this.selected = new Set();
  };

  /** The selected ids still in the list. */
  #selectedIds(): string[] {
    return this.conversations.filter((c) => this.selected.has(c.id)).map((c) => c.id);
  }

  async #bulk(action: "archive"): Promise<void> {
    if (await this.controller.bulk(action, this.#selectedIds())) this.#stopSelecting();
  }

  #bulkDelete = (): void => {
    const ids = this.#selectedIds();
    this.dispatchEvent(
      new CustomEvent("confirm-bulk-delete", {
        bubbles: true,
        detail: { ids, done: () => this.#stopSelecting() },
      }),
    );
  };

  #bulkExport = (): void => {
    this.dispatchEvent(new CustomEvent("export-many", { bubbles: true, detail: { ids: this.#selectedIds() } }));
  };

  #pickImport = (): void => {
    this.querySelector<HTMLInputElement>(".import-file")?.click();
  };

  #import = async (event: Event): Promise<void> => {
    const input = event.target as HTMLInputElement;
    const file = input.files?.[0];
    input.value = "";
    if (file) await this.controller.importFile(file);
  };

  #share(conversation: Conversation): void {
    this.dispatchEvent(
      new CustomEvent("share", { bubbles: true, detail: { conversationId: conversation.id, messageId: null, title: conversation.title } }),
    );
  }

  /** Close the menu, then do what its item says. */
  #menu(event: Event, action: () => unknown): void {
    (event.target as Element).closest("details")?.removeAttribute("open");
    void action();
  }

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
