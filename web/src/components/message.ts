/**
 * <lt-message>: one message. A user's message is plain text (never HTML) and its images, with
 * copy and edit; an answer is its thinking (a panel, open while the model thinks and closed
 * once the answer begins), markdown whose `[n]` cite its sources, the sources, then its
 * status, timings, usage and actions.
 */
import { html, nothing, type TemplateResult } from "lit";
import { attachmentUrl } from "../protocol/attachments";
import { isWebUrl } from "../render/markdown";
import type { WireSource } from "../protocol/types";
import { describeProblem, formatDateTime, formatDuration, formatNumber, type MessageKey, t } from "../i18n";
import type { ChatController } from "../state/chat";
import { isLocalId, type Message } from "../state/types";
import { LightElement } from "./base";
import { autosize, copyText } from "./dom";
import { icons } from "./icons";
import { openImage } from "./lightbox";
import { logo } from "./logo";
import "./markdown-view";

export class MessageView extends LightElement {
  static override properties = {
    message: { attribute: false },
    controller: { attribute: false },
    last: { type: Boolean },
    busy: { type: Boolean },
    editing: { state: true },
    copied: { state: true },
    thinkingExpanded: { state: true },
  };

  declare message: Message;
  declare controller: ChatController;
  /** The conversation's last answer (Regenerate asks for the default one). */
  declare last: boolean;
  /** The conversation is answering: no regenerate or edit meanwhile. */
  declare busy: boolean;
  declare editing: boolean;
  declare copied: boolean;
  /** The thinking panel as the user set it; null: open while thinking, closed after. */
  declare thinkingExpanded: boolean | null;

  constructor() {
    super();
    this.last = false;
    this.busy = false;
    this.editing = false;
    this.copied = false;
    this.thinkingExpanded = null;
  }

  protected override render(): TemplateResult {
    return this.message.role === "user" ? this.#user() : this.#assistant();
  }

  #user(): TemplateResult {
    const message = this.message;
    if (this.editing) {
      return html`<article class="msg msg-user editing" data-role="user" data-message-id=${message.id}>
        <form class="edit-form" @submit=${this.#submitEdit}>
          <textarea
            class="edit-input"
            aria-label=${t("message.editLabel")}
            .value=${message.content}
            @input=${(event: Event) => autosize(event.target as HTMLTextAreaElement, 320)}
            @keydown=${this.#editKeys}
          ></textarea>
          <div class="edit-actions">
            <button type="button" class="btn btn-ghost" @click=${() => (this.editing = false)}>${t("common.cancel")}</button>
            <button type="submit" class="btn btn-primary">${t("message.editSend")}</button>
          </div>
        </form>
      </article>`;
    }
    const pending = isLocalId(message.id);
    return html`<article
      class="msg msg-user ${pending ? "pending" : ""}"
      data-role="user"
      data-message-id=${message.id}
      aria-label=${t("message.you")}
    >
      ${this.#images()}
      ${message.content !== "" || message.attachments.length === 0
        ? html`<div class="bubble" title=${formatDateTime(message.createdAt)}>${message.content}</div>`
        : nothing}
      <div class="msg-actions">
        ${this.#branches()}
        ${this.#copyButton(t("message.copyMessage"))}
        ${pending
          ? nothing
          : html`<button
              type="button"
              class="icon-btn"
              data-action="edit"
              title=${t("message.edit")}
              aria-label=${t("message.edit")}
              ?disabled=${this.busy}
              @click=${this.#startEdit}
            >
              ${icons.edit()}
            </button>`}
      </div>
    </article>`;
  }

  #assistant(): TemplateResult {
    const message = this.message;
    const streaming = message.status === "streaming";
    return html`<article
      class="msg msg-assistant"
      data-role="assistant"
      data-status=${message.status}
      data-message-id=${message.id}
      aria-label=${t("message.assistant")}
      aria-busy=${streaming ? "true" : "false"}
    >
      <div class="avatar" aria-hidden="true">${logo(18)}</div>
      <div class="msg-body">
        ${this.#thinking()}
        ${message.content === "" && streaming
          ? message.reasoning === ""
            ? html`<div class="typing" aria-label=${t("message.status.streaming")}><span></span><span></span><span></span></div>`
            : nothing
          : html`<lt-markdown class="markdown ${streaming ? "streaming" : ""}" .text=${message.content} .sources=${message.sources}></lt-markdown>`}
        ${this.#sources()}
        ${this.#problem()}
        ${message.finishReason === "length" ? html`<p class="note">${t("message.lengthLimit")}</p>` : nothing}
        ${streaming ? nothing : this.#footer()}
      </div>
    </article>`;
  }

  #images(): TemplateResult | typeof nothing {
    const images = this.message.attachments;
    if (images.length === 0) return nothing;
    return html`<ul class="msg-images" aria-label=${t("message.images")}>
      ${images.map((image) => {
        const src = attachmentUrl(image.id);
        return html`<li>
          <button
            type="button"
            class="msg-image"
            data-action="open-image"
            aria-label=${t("image.open", { name: image.name })}
            title=${image.name}
            @click=${() => void openImage(src, image.name)}
          >
            <img src=${src} alt=${image.name} width=${image.width ?? nothing} height=${image.height ?? nothing} loading="lazy" decoding="async" />
          </button>
        </li>`;
      })}
    </ul>`;
  }

  /** The model's thinking: live while it thinks, then one line that opens it again. */
  #thinking(): TemplateResult | typeof nothing {
    const message = this.message;
    if (message.reasoning === "") return nothing;
    const thinkingNow = message.status === "streaming" && message.content === "";
    const expanded = this.thinkingExpanded ?? thinkingNow;
    const ms = message.thinkingMs;
    const label = thinkingNow
      ? t("thinking.live")
      : ms === null
        ? t("thinking.stopped")
        : ms < 1000
          ? t("thinking.doneShort")
          : t("thinking.done", { seconds: formatNumber(Math.round(ms / 1000)) });
    const bodyId = `thinking-${message.id}`;
    return html`<div class="thinking ${thinkingNow ? "live" : ""}" data-state=${thinkingNow ? "thinking" : "done"}>
      <button
        type="button"
        class="thinking-toggle"
        data-action="toggle-thinking"
        aria-expanded=${expanded ? "true" : "false"}
        aria-controls=${bodyId}
        @click=${() => (this.thinkingExpanded = !expanded)}
      >
        ${icons.chevron()}<span class="thinking-label">${label}</span>
      </button>
      <div class="thinking-body" id=${bodyId} ?hidden=${!expanded}>
        ${expanded
          ? html`<lt-markdown class="markdown reasoning" .text=${message.reasoning}></lt-markdown>`
          : nothing /* rendered only when opened: a long history has many folded thoughts */}
      </div>
    </div>`;
  }

  #sources(): TemplateResult | typeof nothing {
    const message = this.message;
    if (message.sources.length === 0) return nothing;
    const titleId = `sources-${message.id}`;
    return html`<section class="sources" aria-labelledby=${titleId}>
      <h3 class="sources-title" id=${titleId}>${t("sources.title")}</h3>
      <ol class="sources-list">
        ${message.sources.map((source) => this.#source(source))}
      </ol>
    </section>`;
  }

  #source(source: WireSource): TemplateResult {
    const web = isWebUrl(source.url);
    const title = source.title || source.url;
    const site = source.site || (web ? new URL(source.url).hostname : "");
    // Only http(s) links: a source URL is the provider's (the web's) text, never trusted.
    return html`<li value=${source.index} data-index=${source.index}>
      ${web
        ? html`<a href=${source.url} target="_blank" rel="noopener noreferrer">${title}</a>`
        : html`<span class="source-title">${title}</span>`}
      ${site ? html`<span class="source-site">${site}</span>` : nothing}
    </li>`;
  }

  #problem(): TemplateResult | typeof nothing {
    const message = this.message;
    if (message.status !== "error" && message.status !== "interrupted") return nothing;
    const problem =
      message.status === "interrupted"
        ? { code: "interrupted", message: "" }
        : { code: message.error?.code ?? "provider_error", message: message.error?.message ?? "" };
    const { text, hint } = describeProblem(problem);
    return html`<div class="problem-card ${message.status}" role="note">
      ${icons.alert()}
      <div>
        <p class="problem-text">${text}</p>
        <p class="problem-hint">${hint}</p>
        ${problem.message
          ? html`<details class="problem-details"><summary>${t("message.details")}</summary><code>${problem.message}</code></details>`
          : nothing}
      </div>
    </div>`;
  }

  #footer(): TemplateResult {
    const message = this.message;
    const parts: string[] = [];
    if (message.model) parts.push(message.model);
    if (message.ttftMs !== null) parts.push(t("message.ttft", { value: formatDuration(message.ttftMs) }));
    if (message.durationMs !== null) parts.push(t("message.duration", { value: formatDuration(message.durationMs) }));
    const usage = message.usage;
    if (usage?.output_tokens != null && usage.input_tokens != null) {
      parts.push(t("message.tokens", { input: formatNumber(usage.input_tokens), output: formatNumber(usage.output_tokens) }));
    } else if (usage?.output_tokens != null) {
      parts.push(t("message.outputTokens", { output: formatNumber(usage.output_tokens) }));
    }
    if (usage?.reasoning_tokens) parts.push(t("message.reasoningTokens", { value: formatNumber(usage.reasoning_tokens) }));
    if (usage?.cached_tokens) parts.push(t("message.cachedTokens", { value: formatNumber(usage.cached_tokens) }));
    return html`<footer class="msg-meta">
      <span class="meta-parts"
        ><span class="meta-list"
          ><span class="chip status-${message.status}" data-status=${message.status}>${t(`message.status.${message.status}` as MessageKey)}</span
          >${parts.map((part) => html`<span class="meta-part">${part}</span>`)}</span
        ></span
      >
      <span class="msg-actions">
        ${this.#branches()}
        ${message.content ? this.#copyButton(t("message.copyAnswer")) : nothing}
        <button
          type="button"
          class="icon-btn"
          data-action="regenerate"
          title=${t("message.regenerate")}
          aria-label=${t("message.regenerate")}
          ?disabled=${this.busy}
          @click=${() => void this.controller.regenerate(this.last ? undefined : message.id)}
        >
          ${icons.regenerate()}
        </button>
        <button
          type="button"
          class="icon-btn"
          data-action="share-message"
          title=${t("share.upToHere")}
          aria-label=${t("share.upToHere")}
          @click=${() => this.dispatchEvent(new CustomEvent("share", { bubbles: true, detail: { messageId: message.id } }))}
        >
          ${icons.share()}
        </button>
      </span>
    </footer>`;
  }

  /** `‹ 2/3 ›` between a message's alternatives (Regenerate and Edit add them): a flip
   * shows the other branch here and on every device. */
  #branches(): TemplateResult | typeof nothing {
    const { id, siblings } = this.message;
    const index = siblings.indexOf(id);
    if (siblings.length < 2 || index < 0) return nothing;
    const go = (to: number): void => {
      const target = siblings[to];
      if (target !== undefined) void this.controller.switchBranch(target);
    };
    const position = t("branch.position", { index: index + 1, count: siblings.length });
    return html`<span class="branch-nav" role="group" aria-label=${t("branch.label")} data-branch=${`${index + 1}/${siblings.length}`}>
      <button type="button" class="icon-btn" data-action="branch-previous" aria-label=${t("branch.previous")} title=${t("branch.previous")}
        ?disabled=${this.busy || index === 0} @click=${() => go(index - 1)}>${icons.chevronLeft()}</button>
      <span class="branch-count" title=${position}><span aria-hidden="true">${index + 1}/${siblings.length}</span><span class="visually-hidden">${position}</span></span>
      <button type="button" class="icon-btn" data-action="branch-next" aria-label=${t("branch.next")} title=${t("branch.next")}
        ?disabled=${this.busy || index === siblings.length - 1} @click=${() => go(index + 1)}>${icons.chevron()}</button>
    </span>`;
  }

  #copyButton(label: string): TemplateResult {
    return html`<button
      type="button"
      class="icon-btn ${this.copied ? "done" : ""}"
      data-action="copy"
      title=${this.copied ? t("message.copied") : label}
      aria-label=${label}
      @click=${() => void this.copy()}
    >
      ${this.copied ? icons.check() : icons.copy()}
    </button>`;
  }

  /** Copy the message's text (its markdown source, for an answer) and show it was copied. */
  async copy(): Promise<void> {
    if (await copyText(this.message.content)) {
      this.copied = true;
      setTimeout(() => (this.copied = false), 1500);
    }
  }

  #startEdit = async (): Promise<void> => {
    this.editing = true;
    await this.updateComplete;
    const area = this.querySelector<HTMLTextAreaElement>(".edit-input");
    if (area) {
      autosize(area, 320);
      area.focus();
      area.setSelectionRange(area.value.length, area.value.length);
    }
  };

  #editKeys = (event: KeyboardEvent): void => {
    if (event.key === "Escape") {
      event.stopPropagation();
      this.editing = false;
    } else if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      (event.target as HTMLTextAreaElement).form?.requestSubmit();
    }
  };

  #submitEdit = async (event: SubmitEvent): Promise<void> => {
    event.preventDefault();
    const area = this.querySelector<HTMLTextAreaElement>(".edit-input");
    const text = area?.value ?? "";
    if (text.trim() === "") return;
    // Stay in the editor until the server takes the edit: the reply that follows replaces
    // this message (and this element) anyway, and a refused edit keeps the text.
    if (await this.controller.edit(this.message.id, text)) this.editing = false;
  };
}

customElements.define("lt-message", MessageView);
