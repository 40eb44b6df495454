/**
 * <lt-thread>: the open conversation's messages, in a scroller that stays pinned to the
 * bottom while an answer grows, unless the user scrolls up (then a "jump to latest" button
 * appears). Every new reply (send, regenerate, edit) pins it again, and so does scrolling
 * back to the bottom. Older pages load when the top comes into view.
 */
import { html, nothing, type PropertyValues, type TemplateResult } from "lit";
import { repeat } from "lit/directives/repeat.js";
import { t } from "../i18n";
import { type ChatController, isBusy } from "../state/chat";
import type { Focus, Thread } from "../state/types";
import { LightElement } from "./base";
import { icons } from "./icons";
import { logo } from "./logo";
import type { MessageView } from "./message";
import "./message";

/** Closer to the bottom than this (px) counts as "at the bottom". */
const PIN_SLACK = 48;

/** A scroll within this long (ms) of the user's wheel, touch or key counts as theirs. */
const USER_SCROLL_MS = 1000;
/** Keys that scroll the view up. */
const UP_KEYS = new Set(["ArrowUp", "PageUp", "Home", " "]);
/** How long a found message stays highlighted (ms; the CSS animation lasts as long). */
const HIGHLIGHT_MS = 2400;

/** The reply being written in `thread`, if any: a new one is followed from its start. */
function streamingId(thread: Thread | undefined): string | undefined {
  return thread?.messages.findLast((m) => m.role === "assistant" && m.status === "streaming")?.id;
}

export class ThreadView extends LightElement {
  static override properties = {
    thread: { attribute: false },
    conversationId: { attribute: false },
    controller: { attribute: false },
    target: { attribute: false },
    pinned: { state: true },
  };

  declare thread: Thread;
  declare conversationId: string;
  declare controller: ChatController;
  /** A message to scroll to and highlight (a search result), once it is shown. */
  declare target: Focus | null;
  declare pinned: boolean;

  #scroller: HTMLElement | null = null;
  #resize = new ResizeObserver(() => this.#stick());
  #topSentinel = new IntersectionObserver((entries) => {
    if (entries.some((entry) => entry.isIntersecting)) void this.#loadEarlier();
  });
  /** scrollTop at the last scroll event, or after our own scrolling. */
  #lastTop = 0;
  /** When the user last touched, turned the wheel or pressed a key (performance.now()). */
  #userAt = Number.NEGATIVE_INFINITY;
  /** The user holds the scrollbar (a press on the scroller itself). */
  #dragging = false;
  /** The focus being revealed (once each). */
  #revealing: Focus | null = null;
  /** Before older messages are put above: the first message and the distance to the bottom. */
  #restore: { firstId: string | undefined; fromBottom: number } | null = null;

  constructor() {
    super();
    this.pinned = true;
    this.target = null;
  }

  override connectedCallback(): void {
    super.connectedCallback();
    window.addEventListener("pointerup", this.#onPointerUp);
  }

  override disconnectedCallback(): void {
    super.disconnectedCallback();
    window.removeEventListener("pointerup", this.#onPointerUp);
    this.#resize.disconnect();
    this.#topSentinel.disconnect();
  }

  protected override willUpdate(changed: PropertyValues<this>): void {
    if (changed.has("conversationId")) this.pinned = true;
    if (changed.has("thread")) {
      const old = changed.get("thread") as Thread | undefined;
      const sent = this.thread.sending && !old?.sending;
      const reply = streamingId(this.thread);
      if (sent || (reply !== undefined && reply !== streamingId(old))) this.pinned = true;
    }
  }

  protected override render(): TemplateResult {
    const thread = this.thread;
    const busy = isBusy(thread);
    const lastAnswer = thread.messages.findLast((m) => m.role === "assistant");
    const waiting = thread.sending && !thread.messages.some((m) => m.status === "streaming");
    return html`<div
        class="scroller"
        @scroll=${this.#onScroll}
        @wheel=${this.#onWheel}
        @touchmove=${this.#onUserInput}
        @keydown=${this.#onKey}
        @pointerdown=${this.#onPointerDown}
      >
        <div class="column" role="log" aria-live="polite" aria-label=${t("thread.label")}>
          ${thread.hasMore
            ? html`<div class="load-earlier">
                <span class="sentinel"></span>
                <button type="button" class="btn btn-ghost btn-small" ?disabled=${thread.loadingEarlier} @click=${this.#loadEarlier}>
                  ${t("thread.loadEarlier")}
                </button>
              </div>`
            : nothing}
          ${repeat(
            thread.messages,
            (message) => message.id,
            (message) => html`<lt-message
              .message=${message}
              .controller=${this.controller}
              ?last=${message === lastAnswer}
              ?busy=${busy}
            ></lt-message>`,
          )}
          ${waiting
            ? html`<article class="msg msg-assistant" data-role="assistant" data-status="sending" aria-busy="true">
                <div class="avatar" aria-hidden="true">${logo(18)}</div>
                <div class="msg-body"><div class="typing" aria-label=${t("thread.sending")}><span></span><span></span><span></span></div></div>
              </article>`
            : nothing}
        </div>
      </div>
      ${this.pinned
        ? nothing
        : html`<button type="button" class="jump" aria-label=${t("thread.jumpToLatest")} title=${t("thread.jumpToLatest")} @click=${this.#jump}>
            ${icons.arrowDown()}
          </button>`}`;
  }

  protected override firstUpdated(): void {
    this.#scroller = this.querySelector(".scroller");
    const column = this.querySelector(".column");
    if (column) this.#resize.observe(column);
    this.#scrollToBottom();
  }

  protected override updated(): void {
    const sentinel = this.querySelector(".sentinel");
    this.#topSentinel.disconnect();
    if (sentinel) this.#topSentinel.observe(sentinel);
    const scroller = this.#scroller;
    const restore = this.#restore;
    if (this.target !== null) void this.#reveal(this.target);
    if (scroller && restore !== null && restore.firstId !== this.thread.messages[0]?.id) {
      // Keep the message the user was reading where it was.
      scroller.scrollTop = scroller.scrollHeight - restore.fromBottom;
      this.#restore = null;
    } else {
      this.#stick();
    }
  }

  /**
   * Scroll to the focused message and highlight it, once it is in the thread. Its
   * <lt-message> renders after this element's update, so this waits for it first.
   */
  async #reveal(focus: Focus): Promise<void> {
    if (focus.conversationId !== this.conversationId || this.#revealing === focus) return;
    const view = [...this.querySelectorAll<MessageView>("lt-message")].find((item) => item.message.id === focus.messageId);
    if (view === undefined) return;
    this.#revealing = focus;
    await view.updateComplete;
    const element = view.querySelector<HTMLElement>("article");
    if (this.target !== focus || element === null) return;
    this.pinned = false;
    this.#restore = null;
    element.scrollIntoView({ block: "center" });
    this.#lastTop = this.#scroller?.scrollTop ?? 0;
    element.classList.add("found");
    setTimeout(() => element.classList.remove("found"), HIGHLIGHT_MS);
    this.controller.clearFocus();
  }

  /** Follow the growing answer while pinned. */
  #stick(): void {
    if (this.pinned) this.#scrollToBottom();
  }

  #scrollToBottom(): void {
    const scroller = this.#scroller;
    if (!scroller) return;
    scroller.scrollTop = scroller.scrollHeight;
    this.#lastTop = scroller.scrollTop;
  }

  #onScroll = (): void => {
    const scroller = this.#scroller;
    if (!scroller) return;
    // Only the user leaves the bottom: content that shrinks or grows around our own
    // scrolling (the view clamped, an answer rendered before this event) does not.
    const top = scroller.scrollTop;
    const fromBottom = scroller.scrollHeight - top - scroller.clientHeight;
    const byUser = this.#dragging || performance.now() - this.#userAt < USER_SCROLL_MS;
    if (fromBottom <= PIN_SLACK) {
      if (!this.pinned) this.pinned = true;
    } else if (byUser && top < this.#lastTop - 1 && this.pinned) {
      this.pinned = false;
    }
    this.#lastTop = top;
  };

  /** A wheel turn upwards is the user taking over, even before the scroll position moves. */
  #onWheel = (event: WheelEvent): void => {
    this.#onUserInput();
    if (event.deltaY < 0 && this.pinned && (this.#scroller?.scrollTop ?? 0) > 0) this.pinned = false;
  };

  #onUserInput = (): void => {
    this.#userAt = performance.now();
  };

  #onKey = (event: KeyboardEvent): void => {
    if (UP_KEYS.has(event.key)) this.#onUserInput();
  };

  /** A press on the scroller itself (not on a message) is on its scrollbar. */
  #onPointerDown = (event: PointerEvent): void => {
    if (event.target === this.#scroller) this.#dragging = true;
  };

  #onPointerUp = (): void => {
    if (!this.#dragging) return;
    this.#dragging = false;
    this.#onUserInput();
  };

  #jump = (): void => {
    this.pinned = true;
    this.#scroller?.scrollTo({ top: this.#scroller.scrollHeight, behavior: "smooth" });
  };

  #loadEarlier = async (): Promise<void> => {
    const scroller = this.#scroller;
    if (!this.thread.hasMore || this.thread.loadingEarlier || !scroller) return;
    this.#restore = { firstId: this.thread.messages[0]?.id, fromBottom: scroller.scrollHeight - scroller.scrollTop };
    await this.controller.loadEarlier();
    const first = this.controller.state.threads[this.conversationId]?.messages[0]?.id;
    if (this.#restore?.firstId === first) this.#restore = null; // nothing came: forget it
  };
}

customElements.define("lt-thread", ThreadView);
