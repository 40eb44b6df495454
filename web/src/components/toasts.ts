/** <lt-toasts>: problems that are not about the message being sent (rename, export, load),
 * and news (an import's outcome). */
import { html, type TemplateResult } from "lit";
import { repeat } from "lit/directives/repeat.js";
import { describeProblem, t } from "../i18n";
import type { ChatController } from "../state/chat";
import type { Toast } from "../state/types";
import { LightElement } from "./base";
import { icons } from "./icons";

export class Toasts extends LightElement {
  static override properties = {
    toasts: { attribute: false },
    controller: { attribute: false },
  };

  declare toasts: Toast[];
  declare controller: ChatController;

  constructor() {
    super();
    this.toasts = [];
  }

  protected override render(): TemplateResult {
    return html`<div class="toasts" role="status" aria-live="polite">
      ${repeat(
        this.toasts,
        (toast) => toast.id,
        (toast) => {
          const { text, hint } = describeProblem(toast.problem);
          const info = toast.tone === "info";
          return html`<div class="toast" data-code=${toast.problem.code} data-tone=${info ? "info" : "problem"}>
            ${info ? icons.check() : icons.alert()}
            <div><p class="problem-text">${text}</p><p class="problem-hint">${hint}</p></div>
            <button type="button" class="icon-btn" aria-label=${t("common.dismiss")} @click=${() => this.controller.dismissToast(toast.id)}>${icons.x()}</button>
          </div>`;
        },
      )}
    </div>`;
  }
}

customElements.define("lt-toasts", Toasts);
