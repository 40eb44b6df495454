/**
 * <lt-markdown>: shows markdown text as sanitized HTML.
 *
 * While an answer streams, its text changes with every delta; parsing it each time would
 * waste work the screen never shows. Renders are batched to animation frames, and spaced out
 * further when one render is slow (a long answer), so typing stays smooth. When a render had
 * to show code or math plainly because its highlighter or KaTeX was still loading, it renders
 * again once they are loaded.
 */
import { onLocaleChange, t } from "../i18n";
import type { WireSource } from "../protocol/types";
import { renderMarkdown } from "../render/markdown";
import { copyText } from "./dom";

export class MarkdownView extends HTMLElement {
  #text = "";
  #sources: readonly WireSource[] = [];
  #rendered: string | null = null;
  #frame: number | null = null;
  #lastRenderAt = 0;
  #lastCostMs = 0;
  #offLocale: (() => void) | null = null;

  get text(): string {
    return this.#text;
  }

  set text(value: string) {
    if (value === this.#text && this.#rendered !== null) return;
    this.#text = value;
    if (this.isConnected) this.#schedule();
  }

  /** The sources the text's `[n]` markers link to. */
  get sources(): readonly WireSource[] {
    return this.#sources;
  }

  set sources(value: readonly WireSource[]) {
    if (value === this.#sources) return;
    this.#sources = value;
    if (this.isConnected && this.#rendered !== null) this.#schedule();
  }

  connectedCallback(): void {
    this.addEventListener("click", this.#onClick);
    this.#offLocale = onLocaleChange(() => this.#render());
    this.#render();
  }

  disconnectedCallback(): void {
    this.removeEventListener("click", this.#onClick);
    this.#offLocale?.();
    if (this.#frame !== null) cancelAnimationFrame(this.#frame);
    this.#frame = null;
  }

  #schedule(): void {
    if (this.#frame !== null) return;
    // The first text of an answer shows at once; later ones wait for the next frame.
    if (this.#rendered === null || this.#rendered === "") {
      this.#render();
      return;
    }
    this.#frame = requestAnimationFrame(() => this.#tick());
  }

  #tick(): void {
    this.#frame = null;
    const wait = Math.min(250, this.#lastCostMs * 4);
    if (performance.now() - this.#lastRenderAt < wait) {
      this.#frame = requestAnimationFrame(() => this.#tick());
      return;
    }
    this.#render();
  }

  #render(): void {
    if (this.#frame !== null) cancelAnimationFrame(this.#frame);
    this.#frame = null;
    const started = performance.now();
    const { fragment, ready } = renderMarkdown(this.#text, {
      copy: t("message.copy"),
      copyCode: t("message.copyCode"),
      image: (alt) => t("message.image", { alt }),
      cite: (index, title) => t("sources.cite", { index, title }),
    }, this.#sources);
    this.replaceChildren(fragment);
    this.#rendered = this.#text;
    this.#lastRenderAt = performance.now();
    this.#lastCostMs = this.#lastRenderAt - started;
    if (ready) {
      const rendered = this.#rendered;
      void ready.then(() => {
        // Unless a newer render has happened (and asked again) in the meantime.
        if (this.isConnected && this.#rendered === rendered) this.#schedule();
      });
    }
  }

  #onClick = (event: Event): void => {
    const button = (event.target as Element | null)?.closest<HTMLButtonElement>('[data-action="copy-code"]');
    const code = button?.closest(".code-block")?.querySelector("pre");
    if (!button || !code) return;
    void copyText(code.textContent ?? "").then((ok) => {
      if (!ok) return;
      button.textContent = t("message.copied");
      button.classList.add("done");
      setTimeout(() => {
        button.textContent = t("message.copy");
        button.classList.remove("done");
      }, 1500);
    });
  };
}

customElements.define("lt-markdown", MarkdownView);

declare global {
  interface HTMLElementTagNameMap {
    "lt-markdown": MarkdownView;
  }
}
