/**
 * <lt-root>: what the page shows for the session — nothing while asking the server, the
 * sign-in screen, or the chat of the signed-in user (a new <lt-app> for every chat, so
 * nothing of one session's page stays in the next).
 */
import { html, type TemplateResult } from "lit";
import type { DirectiveResult } from "lit/directive.js";
import { keyed } from "lit/directives/keyed.js";
import { t } from "../i18n";
import type { SessionController, SessionState } from "../state/session";
import "./app";
import { LightElement } from "./base";
import "./sign-in";

export class Root extends LightElement {
  static override properties = {
    sessionState: { state: true },
  };

  declare session: SessionController;
  declare sessionState: SessionState;
  #unsubscribe: (() => void) | null = null;

  override connectedCallback(): void {
    super.connectedCallback();
    this.sessionState = this.session.state;
    this.#unsubscribe = this.session.store.subscribe((state) => (this.sessionState = state));
  }

  override disconnectedCallback(): void {
    super.disconnectedCallback();
    this.#unsubscribe?.();
  }

  protected override render(): TemplateResult | DirectiveResult {
    const state = this.sessionState;
    if (state.phase === "sign-in") {
      return html`<lt-sign-in
        .session=${this.session}
        .user=${state.lastUser}
        ?signedOut=${state.signedOut}
        ?busy=${state.signingIn}
        .error=${state.error}
        .signup=${state.signup}
      ></lt-sign-in>`;
    }
    if (state.phase === "chat" && state.chat !== null) {
      return keyed(
        state.chat,
        html`<lt-app .controller=${state.chat} .user=${state.user} .role=${state.role} @sign-out=${() => void this.session.signOut()}></lt-app>`,
      );
    }
    return html`<div class="boot" aria-busy="true"></div>`;
  }

  protected override updated(): void {
    if (this.sessionState.phase === "sign-in") document.title = `${t("signIn.title")} · liaotian 聊天`;
  }
}

customElements.define("lt-root", Root);

declare global {
  interface HTMLElementTagNameMap {
    "lt-root": Root;
    "lt-sign-in": import("./sign-in").SignIn;
  }
}
