/**
 * <lt-empty-state>: a new chat's welcome, with example prompts to start from. When the model
 * is the embedded demo model (provider "local", SmolLM2-135M), it says so, how to configure a
 * real one, and offers prompts a model that small can handle.
 */
import { html, type TemplateResult } from "lit";
import { type MessageKey, t } from "../i18n";
import type { Model } from "../state/types";
import { LightElement } from "./base";
import { logo } from "./logo";

const EXAMPLES = [1, 2, 3, 4] as const;

/** The embedded model's id (LOCAL_MODEL_ID in src/liaotian/settings.py). */
export const EMBEDDED_MODEL_ID = "smollm2-135m-instruct";

/** Whether `model` is the small model shipped with liaotian (not a GGUF file of one's own). */
export function isEmbeddedDemo(model: Model | undefined): boolean {
  return model?.provider === "local" && model.id === EMBEDDED_MODEL_ID;
}

export class EmptyState extends LightElement {
  static override properties = { model: { attribute: false }, info: { attribute: false } };

  /** The model the next message goes to, if it can answer. */
  declare model: string | null;
  /** What the model list says about it. */
  declare info: Model | undefined;

  constructor() {
    super();
    this.model = null;
    this.info = undefined;
  }

  protected override render(): TemplateResult {
    const demo = this.model !== null && isEmbeddedDemo(this.info);
    const prefix = demo ? "empty.demo" : "empty.example";
    return html`<div class="empty-state" data-kind=${demo ? "demo" : "default"}>
      <div class="empty-logo" aria-hidden="true">${logo(34)}</div>
      <h2 class="empty-title">${demo ? t("empty.demo.title") : t("empty.title")}</h2>
      ${demo
        ? html`<p class="empty-subtitle">${t("empty.demo.subtitle", { model: this.model ?? "" })}</p>
            <p class="empty-note" data-note="configure">${t("empty.demo.configure")}</p>`
        : html`<p class="empty-subtitle">
            ${this.model ? t("empty.subtitle", { model: this.model }) : t("empty.subtitleNoModel")}
          </p>`}
      <div class="examples">
        ${EXAMPLES.map((n) => {
          const prompt = t(`${prefix}${n}.prompt` as MessageKey);
          return html`<button type="button" class="example" data-example=${n}
            @click=${() => this.dispatchEvent(new CustomEvent("example", { bubbles: true, detail: prompt }))}>
            <span class="example-title">${t(`${prefix}${n}.title` as MessageKey)}</span>
            <span class="example-prompt">${prompt}</span>
          </button>`;
        })}
      </div>
    </div>`;
  }
}

customElements.define("lt-empty-state", EmptyState);
