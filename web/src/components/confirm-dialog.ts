/** <lt-confirm-dialog>: a modal yes/no question (a native <dialog>: focus trap and Esc for free). */
import { html, type TemplateResult } from "lit";
import { t } from "../i18n";
import { LightElement } from "./base";

export interface Question {
  title: string;
  body: string;
  confirm: string;
}

export class ConfirmDialog extends LightElement {
  static override properties = { question: { state: true } };

  declare question: Question | null;
  #resolve: ((answer: boolean) => void) | null = null;

  constructor() {
    super();
    this.question = null;
  }

  async ask(question: Question): Promise<boolean> {
    this.#resolve?.(false);
    this.question = question;
    await this.updateComplete;
    const dialog = this.querySelector("dialog");
    dialog?.showModal();
    dialog?.querySelector<HTMLButtonElement>(".btn-cancel")?.focus();
    return new Promise((resolve) => (this.#resolve = resolve));
  }

  protected override render(): TemplateResult {
    const question = this.question;
    return html`<dialog class="confirm" aria-labelledby="confirm-title" @close=${this.#onClose}>
      <form method="dialog">
        <h2 id="confirm-title">${question?.title ?? ""}</h2>
        <p>${question?.body ?? ""}</p>
        <div class="dialog-actions">
          <button type="submit" value="cancel" class="btn btn-ghost btn-cancel">${t("common.cancel")}</button>
          <button type="submit" value="confirm" class="btn btn-danger" data-action="confirm">${question?.confirm ?? ""}</button>
        </div>
      </form>
    </dialog>`;
  }

  #onClose = (event: Event): void => {
    const answer = (event.target as HTMLDialogElement).returnValue === "confirm";
    (event.target as HTMLDialogElement).returnValue = "";
    this.#resolve?.(answer);
    this.#resolve = null;
  };
}

customElements.define("lt-confirm-dialog", ConfirmDialog);
