/**
 * <lt-share-dialog>: share a conversation's active path (or up to one message) as a
 * read-only link: choose how long it lives, create it, copy it; below, the conversation's
 * live links (expired ones say so) with Revoke. A native modal <dialog> (focus trap and Esc for free).
 */
import { html, nothing, type TemplateResult } from "lit";
import { describeProblem, formatDateTime, type MessageKey, t } from "../i18n";
import type { WireShare } from "../protocol/types";
import { type ChatController, problemOf } from "../state/chat";
import type { Problem } from "../state/types";
import { LightElement } from "./base";
import { copyText } from "./dom";
import { icons } from "./icons";

const EXPIRIES: readonly { seconds: number | null; label: MessageKey }[] = [
  { seconds: null, label: "share.expiresNever" },
  { seconds: 86_400, label: "share.expires1d" },
  { seconds: 7 * 86_400, label: "share.expires7d" },
  { seconds: 30 * 86_400, label: "share.expires30d" },
];

/** What is being shared: a conversation, up to `messageId` (null: its active path's end). */
export interface ShareTarget {
  conversationId: string;
  messageId: string | null;
  title: string;
}

/** The link anyone can open: this page's origin and the share's path. */
export function shareLink(share: WireShare): string {
  return new URL(share.url, location.origin).href;
}

export class ShareDialog extends LightElement {
  static override properties = {
    controller: { attribute: false },
    target: { state: true },
    expiresIn: { state: true },
    created: { state: true },
    shares: { state: true },
    problem: { state: true },
    working: { state: true },
    copied: { state: true },
  };

  declare controller: ChatController;
  declare target: ShareTarget | null;
  declare expiresIn: number | null;
  declare created: WireShare | null;
  /** The conversation's links, newest first; null while loading. */
  declare shares: WireShare[] | null;
  declare problem: Problem | null;
  declare working: boolean;
  declare copied: boolean;

  constructor() {
    super();
    this.target = null;
    this.expiresIn = null;
    this.created = null;
    this.shares = null;
    this.problem = null;
    this.working = false;
    this.copied = false;
  }

  async open(target: ShareTarget): Promise<void> {
    this.target = target;
    this.created = null;
    this.shares = null;
    this.problem = null;
    this.copied = false;
    await this.updateComplete;
    const dialog = this.querySelector("dialog");
    if (dialog && !dialog.open) dialog.showModal();
    dialog?.querySelector<HTMLElement>("select")?.focus();
    void this.#loadShares();
  }

  protected override render(): TemplateResult {
    const target = this.target;
    return html`<dialog class="share-dialog" aria-labelledby="share-title" @close=${() => (this.target = null)}>
      <div class="panel-head">
        <h2 id="share-title">${target?.messageId ? t("share.titleUpTo") : t("share.title")}</h2>
        <form method="dialog"><button class="icon-btn" aria-label=${t("common.close")} title=${t("common.close")}>${icons.x()}</button></form>
      </div>
      ${target === null ? nothing : this.#body(target)}
    </dialog>`;
  }

  #body(target: ShareTarget): TemplateResult {
    const disabled = this.problem?.code === "share_links_disabled";
    return html`<p class="share-intro">${t("share.intro", { title: target.title })}</p>
      ${this.problem ? this.#problem(this.problem) : nothing}
      ${disabled
        ? nothing
        : html`<form class="share-create" @submit=${this.#create}>
            <label class="field">
              <span>${t("share.expires")}</span>
              <select data-control="share-expiry" @change=${this.#onExpiry}>
                ${EXPIRIES.map(
                  (choice) => html`<option value=${choice.seconds ?? ""} ?selected=${choice.seconds === this.expiresIn}>${t(choice.label)}</option>`,
                )}
              </select>
            </label>
            <button type="submit" class="btn btn-primary" data-action="create-share" ?disabled=${this.working}>
              ${icons.link()}<span>${t("share.create")}</span>
            </button>
          </form>`}
      ${this.created ? this.#createdLink(this.created) : nothing}
      ${disabled ? nothing : this.#list()}`;
  }

  #problem(problem: Problem): TemplateResult {
    const { text, hint } = describeProblem(problem);
    return html`<div class="problem-card" role="alert" data-code=${problem.code}>
      ${icons.alert()}
      <div><p class="problem-text">${text}</p><p class="problem-hint">${hint}</p></div>
    </div>`;
  }

  #createdLink(share: WireShare): TemplateResult {
    const link = shareLink(share);
    return html`<div class="share-link">
      <input class="share-url" readonly aria-label=${t("share.link")} .value=${link} @focus=${(event: Event) => (event.target as HTMLInputElement).select()} />
      <button type="button" class="btn" data-action="copy-share" @click=${() => void this.#copy(link)}>
        ${this.copied ? icons.check() : icons.copy()}<span>${this.copied ? t("message.copied") : t("share.copy")}</span>
      </button>
    </div>`;
  }

  #list(): TemplateResult {
    const shares = this.shares;
    return html`<section class="share-list" aria-labelledby="share-list-title">
      <h3 id="share-list-title">${t("share.yours")}</h3>
      ${shares === null
        ? html`<p class="field-hint"><span class="spinner" aria-hidden="true"></span></p>`
        : shares.length === 0
          ? html`<p class="field-hint">${t("share.none")}</p>`
          : html`<ul role="list">
              ${shares.map((share) => this.#item(share))}
            </ul>`}
    </section>`;
  }

  #item(share: WireShare): TemplateResult {
    const expired = share.expires_at !== null && share.expires_at * 1000 <= Date.now();
    const state = share.revoked
      ? t("share.revoked")
      : expired
        ? t("share.expired")
        : share.expires_at === null
          ? t("share.neverExpires")
          : t("share.expiresAt", { date: formatDateTime(share.expires_at) });
    const live = !share.revoked && !expired;
    return html`<li class="share-item ${live ? "" : "dead"}" data-share-id=${share.id}>
      <div class="share-item-text">
        ${live
          ? html`<a href=${shareLink(share)} target="_blank" rel="noopener noreferrer">${share.title}</a>`
          : html`<span>${share.title}</span>`}
        <span class="field-hint">${formatDateTime(share.created_at)} · ${state}</span>
      </div>
      ${live
        ? html`<span class="share-item-actions">
            <button type="button" class="icon-btn" data-action="copy-share-link" aria-label=${t("share.copy")} title=${t("share.copy")}
              @click=${() => void copyText(shareLink(share))}>${icons.copy()}</button>
            <button type="button" class="btn btn-ghost btn-small danger" data-action="revoke-share" @click=${() => void this.#revoke(share)}>
              ${t("share.revoke")}
            </button>
          </span>`
        : nothing}
    </li>`;
  }

  #onExpiry = (event: Event): void => {
    const value = (event.target as HTMLSelectElement).value;
    this.expiresIn = value === "" ? null : Number(value);
  };

  #create = async (event: SubmitEvent): Promise<void> => {
    event.preventDefault();
    const target = this.target;
    if (target === null || this.working) return;
    this.working = true;
    this.problem = null;
    try {
      const share = await this.controller.createShare(target.conversationId, target.messageId, this.expiresIn);
      this.created = share;
      this.copied = false;
      this.shares = [share, ...(this.shares ?? []).filter((item) => item.id !== share.id)];
      await this.updateComplete;
      this.querySelector<HTMLInputElement>(".share-url")?.select();
    } catch (error) {
      this.problem = problemOf(error);
    } finally {
      this.working = false;
    }
  };

  async #copy(link: string): Promise<void> {
    if (await copyText(link)) {
      this.copied = true;
      setTimeout(() => (this.copied = false), 1500);
    }
  }

  async #revoke(share: WireShare): Promise<void> {
    try {
      await this.controller.revokeShare(share.id);
      // The server lists live links only: a revoked one is gone for good.
      this.shares = (this.shares ?? []).filter((item) => item.id !== share.id);
      if (this.created?.id === share.id) this.created = null;
    } catch (error) {
      this.problem = problemOf(error);
    }
  }

  async #loadShares(): Promise<void> {
    const target = this.target;
    if (target === null) return;
    try {
      const shares = await this.controller.listShares(target.conversationId);
      if (this.target === target) this.shares = shares;
    } catch (error) {
      if (this.target !== target) return;
      this.shares = [];
      this.problem = problemOf(error);
    }
  }
}

customElements.define("lt-share-dialog", ShareDialog);
