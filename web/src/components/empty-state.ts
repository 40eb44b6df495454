/** <lt-empty-state>: a new chat's welcome, with example prompts to start from. */
import { html, type TemplateResult } from "lit";
import { type MessageKey, t } from "../i18n";
import { LightElement } from "./base";
import { logo } from "./logo";

const EXAMPLES = [1, 2, 3, 4] as const;

export class EmptyState extends LightElement {
  static override properties = { model: { attribute: false } };

  declare model: string | null;

  constructor() {
    super();
    this.model = null;
  }

  protected override render(): TemplateResult {
    return html`<div class="empty-state">
      <div class="empty-logo" aria-hidden="true">${logo(34)}</div>
      <h2 class="empty-title">${t("empty.title")}</h2>
      <p class="empty-subtitle">
        ${this.model ? t("empty.subtitle", { model: this.model }) : t("empty.subtitleNoModel")}
      </p>
      <div class="examples">
        ${EXAMPLES.map((n) => {
          const prompt = t(`empty.example${n}.prompt` as MessageKey);
          return html`<button type="button" class="example" data-example=${n}
            @click=${() => this.dispatchEvent(new CustomEvent("example", { bubbles: true, detail: prompt }))}>
            <span class="example-title">${t(`empty.example${n}.title` as MessageKey)}</span>
            <span class="example-prompt">${prompt}</span>
          </button>`;
        })}
      </div>
    </div>`;
  }
}

customElements.define("lt-empty-state", EmptyState);
