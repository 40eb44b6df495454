/**
 * <lt-thread>: the open conversation's messages, in a scroller that stays pinned to the
 * bottom while an answer grows, unless the user scrolls up (then a "jump to latest" button
 * appears). Older pages load when the top comes into view.
 */
import { html, nothing, type PropertyValues, type TemplateResult } from "lit";
import { repeat } from "lit/directives/repeat.js";
import { t } from "../i18n";
import { type ChatController, isBusy } from "../state/chat";
import type { Thread } from "../state/types";
import { LightElement } from "./base";
import { icons } from "./icons";
import "./message";

/** Closer to the bottom than this (px) counts as "at the bottom". */
const PIN_SLACK = 48;

export class ThreadView extends LightElement {
  static override properties = {
    thread: { attribute: false },
    conversationId: { attribute: false },
    controller: { attribute: false },
    pinned: { state: true },
  };

  declare thread: Thread;
  declare conversationId: string;
  declare controller: ChatController;
  declare pinned: boolean;

  #scroller: HTMLElement | null = null;
  #resize = new ResizeObserver(() => this.#stick());
  #topSentinel = new IntersectionObserver((entries) => {
    if (entries.some((entry) => entry.isIntersecting)) void this.#loadEarlier();
  });
  /** Before older messages are put above: the first message and the distance to the bottom. */
  #restore: { firstId: string | undefined; fromBottom: number } | null = null;

  constructor() {
    super();
    this.pinned = true;
  }

  override disconnectedCallback(): void {
    super.disconnectedCallback();
    this.#resize.disconnect();
    this.#topSentinel.disconnect();
  }

  protected override willUpdate(changed: PropertyValues<this>): void {
    if (changed.has("conversationId")) this.pinned = true;
  }

  protected override render(): TemplateResult {
    const thread = this.thread;
    const busy = isBusy(thread);
    const lastAnswer = thread.messages.findLast((m) => m.role === "assistant");
    const waiting = thread.sending && !thread.messages.some((m) => m.status === "streaming");
    return html`<div class="scroller" @scroll=${this.#onScroll} @wheel=${this.#onWheel}>
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
                <div class="avatar" aria-hidden="true">聊</div>
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
    if (scroller && restore !== null && restore.firstId !== this.thread.messages[0]?.id) {
      // Keep the message the user was reading where it was.
      scroller.scrollTop = scroller.scrollHeight - restore.fromBottom;
      this.#restore = null;
    } else {
      this.#stick();
    }
  }

  /** Follow the growing answer while pinned. */
  #stick(): void {
    if (this.pinned) this.#scrollToBottom();
  }

  #scrollToBottom(): void {
    const scroller = this.#scroller;
    if (scroller) scroller.scrollTop = scroller.scrollHeight;
  }

  #onScroll = (): void => {
    const scroller = this.#scroller;
    if (!scroller) return;
    const fromBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight;
    const pinned = fromBottom <= PIN_SLACK;
    if (pinned !== this.pinned) this.pinned = pinned;
  };

  /** A wheel turn upwards is the user taking over, even before the scroll position moves. */
  #onWheel = (event: WheelEvent): void => {
    if (event.deltaY < 0 && this.pinned && (this.#scroller?.scrollTop ?? 0) > 0) this.pinned = false;
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
