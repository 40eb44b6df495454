/**
 * <lt-sign-in>: the sign-in screen, shown when the server requires accounts and this browser
 * has no live session. The password goes to POST /auth/login and nowhere else; the session
 * comes back as an HttpOnly cookie the page never sees.
 */
import { html, nothing, type TemplateResult } from "lit";
import { getLocale, type Locale, LOCALES, type MessageKey, setLocale, t } from "../i18n";
import type { SessionController, SignInProblem } from "../state/session";
import { LightElement } from "./base";
import { icons } from "./icons";
import { logo } from "./logo";

const ERRORS: Record<SignInProblem["kind"], MessageKey> = {
  invalid_credentials: "signIn.error.invalid_credentials",
  rate_limited: "signIn.error.rate_limited",
  connection: "signIn.error.connection",
  other: "signIn.error.other",
};

export class SignIn extends LightElement {
  static override properties = {
    session: { attribute: false },
    user: { attribute: false },
    signedOut: { type: Boolean },
    busy: { type: Boolean },
    error: { attribute: false },
  };

  declare session: SessionController;
  /** The name to fill in: who was signed in before. */
  declare user: string | null;
  declare signedOut: boolean;
  declare busy: boolean;
  declare error: SignInProblem | null;

  constructor() {
    super();
    this.user = null;
    this.signedOut = false;
    this.busy = false;
    this.error = null;
  }

  override firstUpdated(): void {
    const field = this.user === null ? "#sign-in-user" : "#sign-in-password";
    this.querySelector<HTMLInputElement>(field)?.focus();
  }

  protected override updated(changed: Map<string, unknown>): void {
    // After a failure, back to the password; a wrong one is selected, so typing replaces it.
    if (!changed.has("error") || this.error === null) return;
    const password = this.querySelector<HTMLInputElement>("#sign-in-password");
    password?.focus();
    if (this.error.kind === "invalid_credentials") password?.select();
  }

  protected override render(): TemplateResult {
    const error = this.error;
    return html`<main class="sign-in">
      <div class="sign-in-card">
        <div class="sign-in-brand">
          <span class="logo" aria-hidden="true">${logo(18)}</span>
          <span class="brand-name">liaotian <span lang="zh-CN">聊天</span></span>
        </div>
        <h1 id="sign-in-title">${t("signIn.title")}</h1>
        <p class="sign-in-subtitle">${t("signIn.subtitle")}</p>
        ${this.signedOut ? html`<p class="sign-in-notice" role="status">${t("signIn.signedOut")}</p>` : nothing}
        <form class="sign-in-form" aria-labelledby="sign-in-title" @submit=${this.#submit}>
          <div class="field">
            <label for="sign-in-user">${t("signIn.user")}</label>
            <input id="sign-in-user" name="username" type="text" autocomplete="username" autocapitalize="none"
              spellcheck="false" maxlength="64" required ?disabled=${this.busy} .value=${this.user ?? ""} />
          </div>
          <div class="field">
            <label for="sign-in-password">${t("signIn.password")}</label>
            <input id="sign-in-password" name="password" type="password" autocomplete="current-password"
              maxlength="1024" required ?disabled=${this.busy} aria-invalid=${error?.kind === "invalid_credentials" ? "true" : "false"} />
          </div>
          ${error
            ? html`<div class="sign-in-error" role="alert" data-code=${error.code}>
                ${icons.alert()}<span>${t(ERRORS[error.kind], { code: error.code })}</span>
              </div>`
            : nothing}
          <button type="submit" class="btn btn-primary sign-in-submit" ?disabled=${this.busy}>
            ${this.busy ? html`<span class="spinner" aria-hidden="true"></span>` : nothing}
            <span>${this.busy ? t("signIn.submitting") : t("signIn.submit")}</span>
          </button>
        </form>
      </div>
      <label class="select-wrap language sign-in-language">
        ${icons.globe()}
        <span class="visually-hidden">${t("prefs.language")}</span>
        <select aria-label=${t("prefs.language")} data-control="language"
          @change=${(event: Event) => setLocale((event.target as HTMLSelectElement).value as Locale, true)}>
          ${LOCALES.map((locale) => html`<option value=${locale.id} ?selected=${locale.id === getLocale()}>${locale.name}</option>`)}
        </select>
      </label>
    </main>`;
  }

  #submit = async (event: SubmitEvent): Promise<void> => {
    event.preventDefault();
    const form = event.target as HTMLFormElement;
    const user = form.querySelector<HTMLInputElement>("#sign-in-user")?.value.trim() ?? "";
    const password = form.querySelector<HTMLInputElement>("#sign-in-password")?.value ?? "";
    if (user === "" || password === "") return;
    await this.session.signIn(user, password);
  };
}

customElements.define("lt-sign-in", SignIn);
