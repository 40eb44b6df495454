/**
 * <lt-app>: the page's layout. It reads the store and hands each component its part of the
 * state and the controller; components report user intent back as events or controller calls.
 */
import { html, nothing, type TemplateResult } from "lit";
import { t } from "../i18n";
import { type ChatController, isBusy } from "../state/chat";
import { loadSidebarOpen, saveSidebarOpen } from "../state/preferences";
import { type AppState, DRAFT } from "../state/types";
import { LightElement } from "./base";
import type { Composer } from "./composer";
import type { ConfirmDialog } from "./confirm-dialog";
import { download } from "./dom";
import type { Header } from "./header";
import type { MessageView } from "./message";
import type { ShareDialog } from "./share-dialog";
import type { ShortcutsDialog } from "./shortcuts-dialog";
import type { Sidebar } from "./sidebar";
import "./composer";
import "./confirm-dialog";
import "./empty-state";
import "./header";
import "./settings-panel";
import "./share-dialog";
import "./shortcuts-dialog";
import "./sidebar";
import "./thread";
import "./toasts";

const NARROW = window.matchMedia("(max-width: 820px)");
/** Whether the lazily loaded page modules have been imported (they define their elements). */
let accountLoaded = false;
let adminLoaded = false;

export class App extends LightElement {
  static override properties = {
    appState: { state: true },
    sidebarOpen: { state: true },
    settingsOpen: { state: true },
    page: { state: true },
  };

  declare controller: ChatController;
  /** The signed-in user; null in open mode. */
  declare user: string | null;
  /** The signed-in account's role (`admin`: the administration page is offered). */
  declare role: string | null;
  /** What the main area shows: the chat, the account's settings, or the administration. */
  declare page: "chat" | "account" | "admin";
  declare appState: AppState;
  declare sidebarOpen: boolean;
  declare settingsOpen: boolean;
  #unsubscribe: (() => void) | null = null;

  constructor() {
    super();
    this.sidebarOpen = !NARROW.matches && loadSidebarOpen();
    this.settingsOpen = false;
    this.user = null;
    this.role = null;
    this.page = "chat";
  }

  override connectedCallback(): void {
    super.connectedCallback();
    this.appState = this.controller.state;
    this.#unsubscribe = this.controller.store.subscribe((state) => (this.appState = state));
    document.addEventListener("keydown", this.#onKeydown);
  }

  override disconnectedCallback(): void {
    super.disconnectedCallback();
    this.#unsubscribe?.();
    document.removeEventListener("keydown", this.#onKeydown);
  }

  protected override render(): TemplateResult {
    const state = this.appState;
    const controller = this.controller;
    const view = state.view;
    const key = controller.threadKey;
    const thread = state.threads[key];
    const conversation = controller.activeConversation;
    const busy = isBusy(thread);
    const title = view.kind === "conversation" ? (conversation?.title ?? "") : t("header.newChat");
    const model = controller.model;
    const problem = state.composerProblem ?? controller.modelProblem;
    const reason = problem?.model ? (controller.modelInfo(problem.model)?.reason ?? null) : null;
    return html`<div
      class="app ${this.sidebarOpen ? "sidebar-open" : "sidebar-closed"}"
      @toggle-sidebar=${this.#toggleSidebar}
      @navigated=${this.#afterNavigate}
      @toggle-settings=${() => (this.settingsOpen = !this.settingsOpen)}
      @confirm-delete=${this.#confirmDelete}
      @confirm-bulk-delete=${this.#confirmBulkDelete}
      @export=${this.#export}
      @export-many=${this.#exportMany}
      @share=${this.#share}
      @example=${this.#example}
      @choose-model=${() => this.querySelector<Header>("lt-header")?.openModelPicker()}
      @open-page=${this.#openPage}
      @close-page=${this.#closePage}
    >
      <a class="skip-link" href="#composer-input">${t("app.skipToComposer")}</a>
      <aside class="sidebar">
        <lt-sidebar
          .controller=${controller}
          .conversations=${state.conversations}
          .activeId=${view.kind === "conversation" ? view.id : null}
          .query=${state.query}
          ?hasMore=${state.conversationsHasMore}
          ?loading=${state.conversationsLoading}
          .connection=${state.connection}
          .user=${this.user}
          .role=${this.role}
          .search=${state.search}
          .archived=${state.archived}
        ></lt-sidebar>
      </aside>
      <div class="scrim" @click=${this.#toggleSidebar}></div>
      ${this.page !== "chat" ? this.#page() : nothing}
      <main class="main" ?hidden=${this.page !== "chat"}>
        <lt-header
          .controller=${controller}
          .title=${title}
          .models=${state.models}
          .model=${model}
          .defaultModel=${state.defaultModel}
          ?canExport=${view.kind === "conversation" && conversation !== undefined}
          ?settingsOpen=${this.settingsOpen}
        ></lt-header>
        ${state.connection.status === "waiting"
          ? html`<div class="banner" role="alert">${t("connection.banner")}</div>`
          : nothing}
        <div class="content">${this.#content(state, key)}</div>
        <div class="composer-wrap">
          <lt-composer
            .controller=${controller}
            ?busy=${busy}
            ?connected=${state.connection.status === "open"}
            .problem=${problem}
            .reason=${reason}
            ?dismissible=${state.composerProblem !== null}
            .features=${controller.features}
            .model=${model}
          ></lt-composer>
        </div>
      </main>
      ${this.settingsOpen
        ? html`<lt-settings-panel
            .controller=${controller}
            .settings=${state.settings}
            .systemPrompt=${controller.systemPrompt()}
          ></lt-settings-panel>`
        : nothing}
      <lt-toasts .toasts=${state.toasts} .controller=${controller}></lt-toasts>
      <lt-confirm-dialog></lt-confirm-dialog>
      <lt-share-dialog .controller=${controller}></lt-share-dialog>
      <lt-shortcuts-dialog></lt-shortcuts-dialog>
      <lt-lightbox></lt-lightbox>
    </div>`;
  }

  /**
   * The account's settings or the administration: their modules (and the chart library) load
   * only when first opened, so the chat's first load does not carry them.
   */
  #page(): TemplateResult {
    const page = this.page;
    const loaded = page === "admin" ? adminLoaded : accountLoaded;
    if (!loaded) {
      void (page === "admin" ? import("./admin-view") : import("./account-view")).then(() => {
        if (page === "admin") adminLoaded = true;
        else accountLoaded = true;
        this.requestUpdate();
      }, (error: unknown) => this.controller.showProblem({ code: "internal_error", message: String(error) }));
      return html`<main class="main page-view"><div class="loading" role="status"><span class="spinner" aria-hidden="true"></span>${t("thread.loading")}</div></main>`;
    }
    return page === "admin"
      ? html`<main class="main page-view"><lt-admin-view .user=${this.user}></lt-admin-view></main>`
      : html`<main class="main page-view"><lt-account-view .user=${this.user}></lt-account-view></main>`;
  }

  #openPage = (event: CustomEvent<"account" | "admin">): void => {
    this.page = event.detail;
    if (NARROW.matches) this.sidebarOpen = false;
  };

  #closePage = async (): Promise<void> => {
    this.page = "chat";
    await this.updateComplete;
    this.querySelector<Composer>("lt-composer")?.focus();
  };

  #content(state: AppState, key: string): TemplateResult {
    const view = state.view;
    const thread = state.threads[key];
    if (view.kind === "missing") {
      return html`<div class="empty-state missing">
        <h2 class="empty-title">${t("missing.title")}</h2>
        <p class="empty-subtitle">${t("missing.body")}</p>
        <button type="button" class="btn btn-primary" @click=${() => this.controller.newChat()}>${t("missing.action")}</button>
      </div>`;
    }
    if (view.kind === "conversation" && (view.loading || thread === undefined)) {
      return html`<div class="loading" role="status"><span class="spinner" aria-hidden="true"></span>${t("thread.loading")}</div>`;
    }
    if (thread === undefined || (key === DRAFT && thread.messages.length === 0)) {
      const model = this.controller.modelProblem === null ? this.controller.model : null;
      return html`<lt-empty-state .model=${model} .info=${this.controller.modelInfo(model)}></lt-empty-state>`;
    }
    return html`<lt-thread .thread=${thread} .conversationId=${key} .controller=${this.controller} .target=${state.focus}></lt-thread>`;
  }

  protected override updated(): void {
    const view = this.appState.view;
    const title = view.kind === "conversation" ? this.controller.activeConversation?.title : undefined;
    document.title = title ? `${title} · liaotian` : "liaotian 聊天";
  }

  #newChat = (): void => {
    this.controller.newChat();
    this.#afterNavigate();
  };

  #focusComposer = (): void => {
    this.querySelector<Composer>("lt-composer")?.focus();
  };

  #focusSearch = async (): Promise<void> => {
    if (!this.sidebarOpen) this.#toggleSidebar();
    await this.updateComplete;
    this.querySelector<Sidebar>("lt-sidebar")?.focusSearch();
  };

  /** The last answer with text, as its copy button copies it (the button shows it did). */
  #copyLastAnswer = async (): Promise<void> => {
    const views = [...this.querySelectorAll<MessageView>("lt-message")];
    await views.findLast((view) => view.message.role === "assistant" && view.message.content !== "")?.copy();
  };

  #showShortcuts = (): void => {
    this.querySelector<ShortcutsDialog>("lt-shortcuts-dialog")?.open();
  };

  #toggleSidebar = (): void => {
    this.sidebarOpen = !this.sidebarOpen;
    if (!NARROW.matches) saveSidebarOpen(this.sidebarOpen);
  };

  #afterNavigate = (): void => {
    if (NARROW.matches) this.sidebarOpen = false;
    this.querySelector<Composer>("lt-composer")?.focus();
  };

  #confirmDelete = async (event: CustomEvent<{ id: string; title: string }>): Promise<void> => {
    const dialog = this.querySelector<ConfirmDialog>("lt-confirm-dialog");
    if (!dialog) return;
    const yes = await dialog.ask({
      title: t("delete.title"),
      body: t("delete.body", { title: event.detail.title }),
      confirm: t("delete.confirm"),
    });
    if (yes) await this.controller.delete(event.detail.id);
  };

  #confirmBulkDelete = async (event: CustomEvent<{ ids: string[]; done: () => void }>): Promise<void> => {
    const dialog = this.querySelector<ConfirmDialog>("lt-confirm-dialog");
    const ids = event.detail.ids;
    if (!dialog || ids.length === 0) return;
    const yes = await dialog.ask({
      title: t("bulk.deleteTitle", { count: ids.length }),
      body: t("bulk.deleteBody"),
      confirm: t("delete.confirm"),
    });
    if (yes && (await this.controller.bulk("delete", ids))) event.detail.done();
  };

  /** The selected conversations (their active paths) as one JSON file in liaotian's format. */
  #exportMany = async (event: CustomEvent<{ ids: string[] }>): Promise<void> => {
    const exports = await this.controller.exportConversations(event.detail.ids);
    if (exports === null || exports.length === 0) return;
    const day = new Date().toISOString().slice(0, 10);
    const body = exports.length === 1 ? exports[0] : exports;
    download(`liaotian-${exports.length}-conversations-${day}.json`, "application/json", JSON.stringify(body, null, 2) + "\n");
  };

  #share = (event: CustomEvent<{ conversationId?: string; messageId?: string | null; title?: string }>): void => {
    const view = this.appState.view;
    const conversationId = event.detail.conversationId ?? (view.kind === "conversation" ? view.id : null);
    if (conversationId === null) return;
    const title =
      event.detail.title ?? this.appState.conversations.find((c) => c.id === conversationId)?.title ?? this.controller.activeConversation?.title ?? "";
    void this.querySelector<ShareDialog>("lt-share-dialog")?.open({ conversationId, messageId: event.detail.messageId ?? null, title });
  };

  #export = async (event: CustomEvent<"markdown" | "json">): Promise<void> => {
    const file = await this.controller.export(event.detail, {
      you: t("message.you"),
      assistant: t("message.assistant"),
      status: (status) => t(`message.status.${status}`),
      thinking: t("export.thinking"),
      sources: t("sources.title"),
      images: t("message.images"),
    });
    if (file) download(file.name, file.type, file.text);
  };

  #example = async (event: CustomEvent<string>): Promise<void> => {
    const sent = await this.controller.send(event.detail);
    if (!sent) this.querySelector<Composer>("lt-composer")?.fill(event.detail);
  };

  /**
   * The keyboard shortcuts (listed in shortcuts-dialog.ts): Ctrl/⌘+Shift+O new chat, Ctrl/⌘+K
   * search, Shift+Esc the message box, Ctrl/⌘+Shift+C copy the last answer, ? (outside a
   * field) or Ctrl/⌘+/ this list, and Esc, which closes a menu or the settings, else stops the
   * answer being written. None of them while a dialog is open (it has the keyboard).
   */
  #onKeydown = (event: KeyboardEvent): void => {
    if (event.defaultPrevented || event.isComposing || event.altKey) return;
    if (document.querySelector("dialog[open]")) return;
    const mod = event.ctrlKey || event.metaKey;
    const action = mod
      ? event.shiftKey
        ? { KeyO: this.#newChat, KeyC: this.#copyLastAnswer }[event.code]
        : event.code === "KeyK"
          ? this.#focusSearch
          : event.key === "/" || event.code === "Slash"
            ? this.#showShortcuts
            : undefined
      : event.key === "?" && !isTyping(event.target)
        ? this.#showShortcuts
        : event.key === "Escape" && event.shiftKey
          ? this.#focusComposer
          : undefined;
    if (action !== undefined) {
      event.preventDefault();
      void action();
      return;
    }
    if (event.key !== "Escape" || mod) return;
    const menu = document.querySelector<HTMLDetailsElement>("details.menu[open]");
    if (menu) {
      menu.open = false;
      return;
    }
    if (this.settingsOpen) {
      this.settingsOpen = false;
      return;
    }
    if (this.page !== "chat") {
      void this.#closePage();
      return;
    }
    if (isBusy(this.controller.activeThread)) {
      event.preventDefault();
      this.controller.stop();
    }
  };
}

/** Whether keys pressed in `target` are text being typed. */
function isTyping(target: EventTarget | null): boolean {
  if (!(target instanceof HTMLElement)) return false;
  if (target instanceof HTMLInputElement) return !["button", "checkbox", "radio", "range", "submit"].includes(target.type);
  return target instanceof HTMLTextAreaElement || target instanceof HTMLSelectElement || target.isContentEditable;
}

customElements.define("lt-app", App);
