/**
 * <lt-header>: the open conversation's title, the model picker (unavailable models are
 * listed, disabled, with what they need), chat settings, share and export.
 */
import { html, nothing, type TemplateResult } from "lit";
import { t } from "../i18n";
import type { ChatController } from "../state/chat";
import type { Model } from "../state/types";
import { LightElement } from "./base";
import { icons } from "./icons";

export class Header extends LightElement {
  static override properties = {
    controller: { attribute: false },
    title: { attribute: false },
    models: { attribute: false },
    model: { attribute: false },
    defaultModel: { attribute: false },
    canExport: { type: Boolean },
    settingsOpen: { type: Boolean },
  };

  declare controller: ChatController;
  declare title: string;
  declare models: Model[] | null;
  declare model: string | null;
  declare defaultModel: string | null;
  declare canExport: boolean;
  declare settingsOpen: boolean;

  constructor() {
    super();
    this.title = "";
    this.models = null;
    this.model = null;
    this.defaultModel = null;
    this.canExport = false;
    this.settingsOpen = false;
  }

  /** Open the model picker (from "choose another model"). */
  openModelPicker(): void {
    const select = this.querySelector<HTMLSelectElement>("select.model-select");
    select?.focus();
    select?.showPicker?.();
  }

  protected override render(): TemplateResult {
    return html`<header class="topbar">
      <button type="button" class="icon-btn sidebar-toggle" data-action="open-sidebar" aria-label=${t("sidebar.open")} title=${t("sidebar.open")}
        @click=${() => this.dispatchEvent(new CustomEvent("toggle-sidebar", { bubbles: true }))}>
        ${icons.menu()}
      </button>
      <h1 class="topbar-title" title=${this.title}>${this.title}</h1>
      <div class="topbar-actions">
        ${this.#modelPicker()}
        <button
          type="button"
          class="icon-btn"
          data-action="settings"
          aria-label=${t("header.settings")}
          title=${t("header.settings")}
          aria-expanded=${this.settingsOpen ? "true" : "false"}
          aria-controls="settings-panel"
          @click=${() => this.dispatchEvent(new CustomEvent("toggle-settings", { bubbles: true }))}
        >
          ${icons.settings()}
        </button>
        ${this.canExport
          ? html`<button type="button" class="icon-btn" data-action="share" aria-label=${t("header.share")} title=${t("header.share")}
              @click=${() => this.dispatchEvent(new CustomEvent("share", { bubbles: true, detail: {} }))}>${icons.share()}</button>`
          : nothing}
        ${this.canExport ? this.#exportMenu() : nothing}
      </div>
    </header>`;
  }

  #modelPicker(): TemplateResult {
    const models = this.models;
    if (models === null) {
      return html`<span class="model-loading">${t("header.modelsLoading")}</span>`;
    }
    const providers = [...new Set(models.map((model) => model.provider))];
    const selected = this.model;
    const known = models.some((model) => model.id === selected);
    const current = models.find((model) => model.id === selected);
    return html`<label class="select-wrap model-picker ${current && !current.available ? "unavailable" : ""}">
      <span class="visually-hidden">${t("header.model")}</span>
      <select
        class="model-select"
        aria-label=${t("header.model")}
        @change=${(event: Event) => this.controller.selectModel((event.target as HTMLSelectElement).value)}
      >
        ${!known && selected ? html`<option value=${selected} selected>${selected}</option>` : nothing}
        ${providers.map(
          (provider) => html`<optgroup label=${provider}>
            ${models
              .filter((model) => model.provider === provider)
              .map((model) => {
                const suffix = model.available
                  ? model.id === this.defaultModel
                    ? ` (${t("header.default")})`
                    : ""
                  : ` — ${t("header.unavailable")}: ${t("header.needs", { reason: model.reason ?? "?" })}`;
                return html`<option
                  value=${model.id}
                  ?selected=${model.id === selected}
                  ?disabled=${!model.available && model.id !== selected}
                  title=${model.available ? model.id : t("header.needs", { reason: model.reason ?? "?" })}
                >
                  ${model.id}${suffix}
                </option>`;
              })}
          </optgroup>`,
        )}
      </select>
    </label>`;
  }

  #exportMenu(): TemplateResult {
    return html`<details class="menu export-menu">
      <summary class="icon-btn" aria-label=${t("header.export")} title=${t("header.export")}>${icons.download()}</summary>
      <div class="menu-items menu-right" role="menu">
        <button type="button" role="menuitem" data-action="export-markdown" @click=${(event: Event) => this.#export(event, "markdown")}>
          ${t("header.exportMarkdown")}
        </button>
        <button type="button" role="menuitem" data-action="export-json" @click=${(event: Event) => this.#export(event, "json")}>
          ${t("header.exportJson")}
        </button>
      </div>
    </details>`;
  }

  #export(event: Event, format: "markdown" | "json"): void {
    (event.target as Element).closest("details")?.removeAttribute("open");
    this.dispatchEvent(new CustomEvent("export", { bubbles: true, detail: format }));
  }
}

customElements.define("lt-header", Header);
