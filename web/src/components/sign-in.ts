/**
 * <lt-sign-in>: the sign-in screen, shown when the server requires accounts and this browser
 * has no live session. The password goes to POST /auth/login and nowhere else; the session
 * comes back as an HttpOnly cookie the page never sees.
 */
import { html, nothing, type TemplateResult } from "lit";
import { signUp } from "../protocol/auth";
import { ApiError } from "../protocol/http";
import { getLocale, hasKey, type Locale, LOCALES, type MessageKey, setLocale, t } from "../i18n";
import type { SessionController, SignInProblem } from "../state/session";
import { LightElement } from "./base";
import { icons } from "./icons";
import { logo } from "./logo";

const ERRORS: Record<SignInProblem["kind"], MessageKey> = {
  invalid_credentials: "signIn.error.invalid_credentials",
  rate_limited: "signIn.error.rate_limited",
  connection: "signIn.error.connection",
  account_pending: "signIn.error.account_pending",
  account_disabled: "signIn.error.account_disabled",
  other: "signIn.error.other",
};

export class SignIn extends LightElement {
  static override properties = {
    session: { attribute: false },
    user: { attribute: false },
    signedOut: { type: Boolean },
    busy: { type: Boolean },
    error: { attribute: false },
    signup: { attribute: false },
    mode: { state: true },
    signUpResult: { state: true },
  };

  declare session: SessionController;
  /** The name to fill in: who was signed in before. */
  declare user: string | null;
  declare signedOut: boolean;
  declare busy: boolean;
  declare error: SignInProblem | null;
  /** `approval`: the screen offers "create an account" (an admin approves it). */
  declare signup: "off" | "approval";
  declare mode: "sign-in" | "sign-up";
  /** After a sign-up: done (`pending`), or why not (a message key's code). */
  declare signUpResult: { ok: boolean; code: string } | null;

  constructor() {
    super();
    this.signup = "off";
    this.mode = "sign-in";
    this.signUpResult = null;
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
    if (this.mode === "sign-up") return this.#signUpScreen();
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
        ${this.signUpResult?.ok ? html`<p class="sign-in-notice" role="status" data-state="pending">${t("signUp.pending")}</p>` : nothing}
        ${this.signup === "approval"
          ? html`<p class="sign-in-switch">
              <button type="button" class="link-btn" data-action="sign-up" @click=${() => this.#switch("sign-up")}>${t("signUp.offer")}</button>
            </p>`
          : nothing}
      </div>
      ${this.#language()}
    </main>`;
  }

  #language(): TemplateResult {
    return html`<label class="select-wrap language sign-in-language">
        ${icons.globe()}
        <span class="visually-hidden">${t("prefs.language")}</span>
        <select aria-label=${t("prefs.language")} data-control="language"
          @change=${(event: Event) => setLocale((event.target as HTMLSelectElement).value as Locale, true)}>
          ${LOCALES.map((locale) => html`<option value=${locale.id} ?selected=${locale.id === getLocale()}>${locale.name}</option>`)}
        </select>
      </label>`;
  }

  /** "Create an account": the account waits for an admin's approval before it can sign in. */
  #signUpScreen(): TemplateResult {
    const result = this.signUpResult;
    const problem = result !== null && !result.ok ? result.code : null;
    return html`<main class="sign-in">
      <div class="sign-in-card">
        <div class="sign-in-brand">
          <span class="logo" aria-hidden="true">${logo(18)}</span>
          <span class="brand-name">liaotian <span lang="zh-CN">聊天</span></span>
        </div>
        <h1 id="sign-up-title">${t("signUp.title")}</h1>
        <p class="sign-in-subtitle">${t("signUp.subtitle")}</p>
        <form class="sign-in-form sign-up-form" aria-labelledby="sign-up-title" @submit=${this.#signUp}>
          <div class="field">
            <label for="sign-up-user">${t("signIn.user")}</label>
            <input id="sign-up-user" name="username" type="text" autocomplete="username" autocapitalize="none"
              spellcheck="false" maxlength="64" required ?disabled=${this.busy} />
          </div>
          <div class="field">
            <label for="sign-up-password">${t("signIn.password")}</label>
            <input id="sign-up-password" name="new-password" type="password" autocomplete="new-password"
              maxlength="1024" required ?disabled=${this.busy} />
          </div>
          <div class="field">
            <label for="sign-up-repeat">${t("signUp.repeat")}</label>
            <input id="sign-up-repeat" name="repeat-password" type="password" autocomplete="new-password"
              maxlength="1024" required ?disabled=${this.busy} />
          </div>
          ${problem !== null
            ? html`<div class="sign-in-error" role="alert" data-code=${problem}>
                ${icons.alert()}<span>${signUpProblem(problem)}</span>
              </div>`
            : nothing}
          <button type="submit" class="btn btn-primary sign-in-submit" ?disabled=${this.busy}>
            <span>${t("signUp.submit")}</span>
          </button>
        </form>
        <p class="sign-in-switch">
          <button type="button" class="link-btn" data-action="back-to-sign-in" @click=${() => this.#switch("sign-in")}>${t("signUp.back")}</button>
        </p>
      </div>
      ${this.#language()}
    </main>`;
  }

  async #switch(mode: "sign-in" | "sign-up"): Promise<void> {
    this.mode = mode;
    if (mode === "sign-up") this.signUpResult = null;
    await this.updateComplete;
    this.querySelector<HTMLInputElement>(mode === "sign-up" ? "#sign-up-user" : "#sign-in-user")?.focus();
  }

  #signUp = async (event: SubmitEvent): Promise<void> => {
    event.preventDefault();
    const form = event.target as HTMLFormElement;
    const user = form.querySelector<HTMLInputElement>("#sign-up-user")?.value.trim() ?? "";
    const password = form.querySelector<HTMLInputElement>("#sign-up-password")?.value ?? "";
    const repeat = form.querySelector<HTMLInputElement>("#sign-up-repeat")?.value ?? "";
    if (user === "" || password === "") return;
    if (password !== repeat) {
      this.signUpResult = { ok: false, code: "passwords_differ" };
      return;
    }
    try {
      await signUp(user, password);
    } catch (error) {
      this.signUpResult = { ok: false, code: error instanceof ApiError ? error.code : "connection" };
      return;
    }
    this.signUpResult = { ok: true, code: "pending" };
    this.user = user;
    this.mode = "sign-in";
  };

  #submit = async (event: SubmitEvent): Promise<void> => {
    event.preventDefault();
    const form = event.target as HTMLFormElement;
    const user = form.querySelector<HTMLInputElement>("#sign-in-user")?.value.trim() ?? "";
    const password = form.querySelector<HTMLInputElement>("#sign-in-password")?.value ?? "";
    if (user === "" || password === "") return;
    await this.session.signIn(user, password);
  };
}

/** Why a sign-up failed, in words. */
function signUpProblem(code: string): string {
  const key = `signUp.error.${code}`;
  return hasKey(key) ? t(key) : t("signUp.error.other", { code });
}

customElements.define("lt-sign-in", SignIn);
