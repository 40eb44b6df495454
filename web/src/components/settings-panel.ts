/**
 * <lt-settings-panel>: the conversation's system prompt, streaming on/off, and (under
 * Advanced) temperature, max tokens and the thinking budget. Changes apply from the next
 * message.
 */
import { html, type TemplateResult } from "lit";
import { formatNumber, t } from "../i18n";
import type { ChatController } from "../state/chat";
import type { ReplySettings } from "../state/preferences";
import { LightElement } from "./base";
import { autosize } from "./dom";
import { icons } from "./icons";

export class SettingsPanel extends LightElement {
  static override properties = {
    controller: { attribute: false },
    settings: { attribute: false },
    systemPrompt: { attribute: false },
  };

  declare controller: ChatController;
  declare settings: ReplySettings;
  declare systemPrompt: string;

  constructor() {
    super();
    this.systemPrompt = "";
  }

  protected override render(): TemplateResult {
    const settings = this.settings;
    const temperature = settings.temperature;
    return html`<section class="settings-panel" id="settings-panel" role="dialog" aria-modal="false" aria-labelledby="settings-title"
      @keydown=${(event: KeyboardEvent) => event.key === "Escape" && this.#close()}>
      <div class="panel-head">
        <h2 id="settings-title">${t("settings.title")}</h2>
        <button type="button" class="icon-btn" aria-label=${t("common.close")} title=${t("common.close")} @click=${this.#close}>${icons.x()}</button>
      </div>
      <div class="field">
        <label for="system-prompt">${t("settings.systemPrompt")}</label>
        <textarea
          id="system-prompt"
          rows="4"
          placeholder=${t("settings.systemPromptPlaceholder")}
          .value=${this.systemPrompt}
          @input=${(event: Event) => {
            const area = event.target as HTMLTextAreaElement;
            autosize(area, 320);
            this.controller.setSystemPrompt(area.value);
          }}
        ></textarea>
        <p class="field-hint">${t("settings.systemPromptHint")}</p>
      </div>
      <div class="field switch-field">
        <label class="switch">
          <input
            type="checkbox"
            role="switch"
            data-control="stream"
            .checked=${settings.stream}
            @change=${(event: Event) => this.controller.updateSettings({ stream: (event.target as HTMLInputElement).checked })}
          />
          <span class="switch-track" aria-hidden="true"></span>
          <span>${t("settings.stream")}</span>
        </label>
        <p class="field-hint">${t("settings.streamHint")}</p>
      </div>
      <details class="advanced">
        <summary>${t("settings.advanced")}</summary>
        <div class="field">
          <div class="field-row">
            <label for="temperature">${t("settings.temperature")}</label>
            <output for="temperature">${temperature === null ? t("settings.modelDefault") : formatNumber(temperature, { minimumFractionDigits: 1 })}</output>
          </div>
          <input
            id="temperature"
            type="range"
            min="0"
            max="2"
            step="0.1"
            .value=${String(temperature ?? 1)}
            ?disabled=${temperature === null}
            @input=${(event: Event) => this.controller.updateSettings({ temperature: Number((event.target as HTMLInputElement).value) })}
          />
          <label class="checkbox">
            <input
              type="checkbox"
              .checked=${temperature === null}
              @change=${(event: Event) =>
                this.controller.updateSettings({ temperature: (event.target as HTMLInputElement).checked ? null : 0.7 })}
            />
            <span>${t("settings.modelDefault")}</span>
          </label>
          <p class="field-hint">${t("settings.temperatureHint")}</p>
        </div>
        <div class="field">
          <label for="max-tokens">${t("settings.maxTokens")}</label>
          <input
            id="max-tokens"
            type="number"
            min="1"
            max="1000000"
            step="1"
            inputmode="numeric"
            placeholder=${t("settings.modelDefault")}
            .value=${settings.maxTokens === null ? "" : String(settings.maxTokens)}
            @change=${(event: Event) => {
              const value = Math.floor(Number((event.target as HTMLInputElement).value));
              this.controller.updateSettings({ maxTokens: Number.isFinite(value) && value >= 1 ? value : null });
            }}
          />
          <p class="field-hint">${t("settings.maxTokensHint")}</p>
        </div>
        <div class="field">
          <label for="thinking-budget">${t("settings.thinkingBudget")}</label>
          <input
            id="thinking-budget"
            type="number"
            min="1"
            max="1000000"
            step="1"
            inputmode="numeric"
            placeholder=${t("settings.modelDefault")}
            .value=${settings.thinkingBudget === null ? "" : String(settings.thinkingBudget)}
            @change=${(event: Event) => {
              const value = Math.floor(Number((event.target as HTMLInputElement).value));
              this.controller.updateSettings({ thinkingBudget: Number.isFinite(value) && value >= 1 ? value : null });
            }}
          />
          <p class="field-hint">${t("settings.thinkingBudgetHint")}</p>
        </div>
      </details>
    </section>`;
  }

  #close = (): void => {
    this.dispatchEvent(new CustomEvent("toggle-settings", { bubbles: true }));
  };
}

customElements.define("lt-settings-panel", SettingsPanel);
