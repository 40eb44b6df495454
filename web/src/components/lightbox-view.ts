/**
 * <lt-lightbox>: an image enlarged in a native modal <dialog> (focus trap, Esc closes). Its
 * own chunk, loaded by the first `openImage()` (lightbox.ts); one lightbox serves the page.
 */
import { html, type TemplateResult } from "lit";
import { t } from "../i18n";
import { LightElement } from "./base";
import { icons } from "./icons";

import { OPEN_EVENT, type Shown } from "./lightbox";

export class Lightbox extends LightElement {
  static override properties = { shown: { state: true } };

  declare shown: Shown | null;
  /** The element that had focus, given it back on close. */
  #opener: HTMLElement | null = null;

  constructor() {
    super();
    this.shown = null;
  }

  override connectedCallback(): void {
    super.connectedCallback();
    document.addEventListener(OPEN_EVENT, this.#onOpen);
  }

  override disconnectedCallback(): void {
    super.disconnectedCallback();
    document.removeEventListener(OPEN_EVENT, this.#onOpen);
  }

  protected override render(): TemplateResult {
    const shown = this.shown;
    return html`<dialog class="lightbox" aria-label=${shown?.alt || t("image.dialog")} @close=${this.#onClose} @click=${this.#onClick}>
      ${shown ? html`<img src=${shown.src} alt=${shown.alt} />` : null}
      <button type="button" class="icon-btn lightbox-close" data-action="close-image" aria-label=${t("common.close")} title=${t("common.close")} @click=${() => this.#dialog?.close()}>
        ${icons.x()}
      </button>
    </dialog>`;
  }

  get #dialog(): HTMLDialogElement | null {
    return this.querySelector("dialog");
  }

  #onOpen = async (event: Event): Promise<void> => {
    this.#opener = document.activeElement instanceof HTMLElement ? document.activeElement : null;
    this.shown = (event as CustomEvent<Shown>).detail;
    await this.updateComplete;
    const dialog = this.#dialog;
    if (dialog && !dialog.open) dialog.showModal();
  };

  /** A click on the backdrop (the dialog itself, not its image or button) closes it. */
  #onClick = (event: MouseEvent): void => {
    if (event.target === event.currentTarget) this.#dialog?.close();
  };

  #onClose = (): void => {
    this.shown = null;
    this.#opener?.focus();
    this.#opener = null;
  };
}

customElements.define("lt-lightbox", Lightbox);
