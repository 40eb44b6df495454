/**
 * <lt-composer>: the message box. Enter sends, Shift+Enter adds a line (and Enter while an
 * input method is composing Chinese text does neither); the box grows with its text. While
 * an answer streams, the send button becomes Stop.
 */
import { html, nothing, type TemplateResult } from "lit";
import { describeProblem, t } from "../i18n";
import type { ChatController } from "../state/chat";
import type { Problem } from "../state/types";
import { LightElement } from "./base";
import { autosize } from "./dom";
import { icons } from "./icons";

const MAX_HEIGHT_PX = 280;

export class Composer extends LightElement {
  static override properties = {
    controller: { attribute: false },
    busy: { type: Boolean },
    connected: { type: Boolean },
    problem: { attribute: false },
    reason: { attribute: false },
    dismissible: { type: Boolean },
    empty: { state: true },
  };

  declare controller: ChatController;
  declare busy: boolean;
  declare connected: boolean;
  declare problem: Problem | null;
  /** Why the problem's model is unavailable, from the model list. */
  declare reason: string | null;
  /** A refused send can be dismissed; an unavailable model stays until another is chosen. */
  declare dismissible: boolean;
  declare empty: boolean;

  constructor() {
    super();
    this.busy = false;
    this.connected = false;
    this.problem = null;
    this.reason = null;
    this.dismissible = true;
    this.empty = true;
  }

  get input(): HTMLTextAreaElement | null {
    return this.querySelector("textarea");
  }

  /** Put text in the box (an example prompt, a refused message given back). */
  fill(text: string): void {
    const input = this.input;
    if (!input) return;
    input.value = text;
    this.empty = text.trim() === "";
    autosize(input, MAX_HEIGHT_PX);
    input.focus();
  }

  override focus(): void {
    this.input?.focus();
  }

  protected override render(): TemplateResult {
    return html`${this.#problem()}
      <form class="composer" @submit=${this.#submit}>
        <label class="visually-hidden" for="composer-input">${t("composer.label")}</label>
        <textarea
          id="composer-input"
          rows="1"
          placeholder=${t("composer.placeholder")}
          enterkeyhint="send"
          @input=${this.#onInput}
          @keydown=${this.#onKeydown}
        ></textarea>
        ${this.busy
          ? html`<button type="button" class="send-btn stop" data-action="stop" aria-label=${t("composer.stop")} title=${t("composer.stop")} @click=${() => this.controller.stop()}>
              ${icons.stop()}
            </button>`
          : html`<button type="submit" class="send-btn" data-action="send" aria-label=${t("composer.send")} title=${t("composer.send")} ?disabled=${this.empty || !this.connected}>
              ${icons.send()}
            </button>`}
      </form>
      <p class="composer-hint">${t("composer.hint")}</p>`;
  }

  #problem(): TemplateResult | typeof nothing {
    const problem = this.problem;
    if (problem === null) return nothing;
    const { text, hint } = describeProblem(problem, this.reason);
    const aboutModel = problem.code === "provider_not_configured" || problem.code === "model_not_found";
    return html`<div class="composer-problem" role="alert" data-code=${problem.code}>
      ${icons.alert()}
      <div class="composer-problem-text">
        <p class="problem-text">${text}</p>
        <p class="problem-hint">${hint}</p>
      </div>
      <div class="composer-problem-actions">
        ${aboutModel
          ? html`<button type="button" class="btn btn-small" @click=${this.#chooseModel}>${t("composer.chooseModel")}</button>`
          : nothing}
        ${this.dismissible
          ? html`<button type="button" class="icon-btn" aria-label=${t("common.dismiss")} title=${t("common.dismiss")} @click=${() => this.controller.dismissProblem()}>
              ${icons.x()}
            </button>`
          : nothing}
      </div>
    </div>`;
  }

  #chooseModel = (): void => {
    this.dispatchEvent(new CustomEvent("choose-model", { bubbles: true }));
  };

  #onInput = (event: Event): void => {
    const input = event.target as HTMLTextAreaElement;
    this.empty = input.value.trim() === "";
    autosize(input, MAX_HEIGHT_PX);
  };

  #onKeydown = (event: KeyboardEvent): void => {
    // keyCode 229: some browsers report the IME's Enter this way instead of isComposing.
    if (event.key !== "Enter" || event.shiftKey || event.isComposing || event.keyCode === 229) return;
    event.preventDefault();
    // While an answer is being written (maybe by another tab), say so instead of nothing.
    if (this.busy) this.controller.explainBusy();
    else (event.target as HTMLTextAreaElement).form?.requestSubmit();
  };

  #submit = async (event: SubmitEvent): Promise<void> => {
    event.preventDefault();
    const input = this.input;
    if (!input || this.busy) return;
    const text = input.value;
    if (text.trim() === "") return;
    input.value = "";
    this.empty = true;
    autosize(input, MAX_HEIGHT_PX);
    const sent = await this.controller.send(text);
    // A refused message comes back to the box, unless the user already typed something new.
    if (!sent && input.value === "") this.fill(text);
  };
}

customElements.define("lt-composer", Composer);
