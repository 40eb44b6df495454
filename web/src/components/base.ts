import { LitElement } from "lit";
import { onLocaleChange } from "../i18n";
import { onThemeChange } from "../theme";

/**
 * Our components render into the light DOM, so the one bundled stylesheet (and highlight.js's
 * theme) styles them, and re-render when the language or theme changes.
 */
export class LightElement extends LitElement {
  #unsubscribe: (() => void)[] = [];

  protected override createRenderRoot(): HTMLElement {
    return this;
  }

  override connectedCallback(): void {
    super.connectedCallback();
    this.#unsubscribe.push(
      onLocaleChange(() => this.requestUpdate()),
      onThemeChange(() => this.requestUpdate()),
    );
  }

  override disconnectedCallback(): void {
    super.disconnectedCallback();
    for (const unsubscribe of this.#unsubscribe.splice(0)) unsubscribe();
  }
}
