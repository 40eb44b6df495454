/**
 * <lt-account-view>: the signed-in account's own settings page — its usage (today and the
 * last 30 days, a chart by day), what is left of each quota and when it resets, its API
 * tokens (a new token's secret is shown once) and its password. Everything comes from the
 * /account routes (docs/administration.md); the page holds no secret but the one just created.
 */
import { html, nothing, type TemplateResult } from "lit";
import { formatNumber, t } from "../i18n";
import { type AccountUsage, accountApi, LIMIT_NAMES, type LimitName, type OwnToken } from "../protocol/accounts-api";
import "../i18n/pages";
import { LightElement } from "./base";
import type { ConfirmDialog } from "./confirm-dialog";
import { icons } from "./icons";
import { type ChartSeries } from "./usage-chart";
import { codeOf, failure, formatCost, formatWhen, limitAmount, limitLabel, type Outcome, periodDays, todayUtc } from "./usage-format";
import "./usage-chart";
import "../styles/admin.css";

const DAYS = 30;

export class AccountView extends LightElement {
  static override properties = {
    user: { attribute: false },
    usage: { state: true },
    tokens: { state: true },
    problem: { state: true },
    secret: { state: true },
    tokenOutcome: { state: true },
    passwordOutcome: { state: true },
    copied: { state: true },
  };

  declare user: string | null;
  declare usage: AccountUsage | null;
  declare tokens: OwnToken[] | null;
  /** Why the usage or tokens could not be loaded. */
  declare problem: string | null;
  /** A token just created: its secret, shown once. */
  declare secret: { name: string; token: string } | null;
  declare tokenOutcome: Outcome | null;
  declare passwordOutcome: Outcome | null;
  declare copied: boolean;

  constructor() {
    super();
    this.user = null;
    this.usage = null;
    this.tokens = null;
    this.problem = null;
    this.secret = null;
    this.tokenOutcome = null;
    this.passwordOutcome = null;
    this.copied = false;
  }

  override connectedCallback(): void {
    super.connectedCallback();
    void this.refresh();
  }

  override firstUpdated(): void {
    this.querySelector<HTMLElement>("h2")?.focus();
  }

  /** Load the usage and the tokens again. */
  async refresh(): Promise<void> {
    try {
      const [usage, tokens] = await Promise.all([accountApi.usage(DAYS), accountApi.tokens()]);
      this.usage = usage;
      this.tokens = tokens;
      this.problem = null;
    } catch (error) {
      this.problem = codeOf(error);
    }
  }

  protected override render(): TemplateResult {
    return html`<section class="page account-page" aria-labelledby="account-title">
      <div class="page-head">
        <h2 id="account-title" tabindex="-1">${t("accountPage.title")}</h2>
        <span class="page-who">${this.user ?? ""}</span>
        <button type="button" class="icon-btn" data-action="close-page" aria-label=${t("page.back")} title=${t("page.back")}
          @click=${() => this.dispatchEvent(new CustomEvent("close-page", { bubbles: true }))}>${icons.x()}</button>
      </div>
      ${this.problem !== null ? html`<p class="page-problem" role="alert">${failure(this.problem)}</p>` : nothing}
      ${this.#usage()} ${this.#limits()} ${this.#tokens()} ${this.#password()}
      <lt-confirm-dialog></lt-confirm-dialog>
    </section>`;
  }

  #usage(): TemplateResult {
    const usage = this.usage;
    if (usage === null) return html`<section class="page-section" aria-busy="true"><h3>${t("usage.title")}</h3><span class="spinner" aria-hidden="true"></span></section>`;
    const today = usage.days.find((day) => day.day === todayUtc());
    const sum = (pick: (day: AccountUsage["days"][number]) => number) => usage.days.reduce((total, day) => total + pick(day), 0);
    const costs = usage.days.map((day) => day.cost).filter((cost): cost is number => cost !== null);
    const periodCost = costs.length === 0 ? null : costs.reduce((a, b) => a + b, 0);
    const estimated = usage.days.some((day) => day.estimated);
    const period = periodDays(DAYS);
    const byDay = new Map(usage.days.map((day) => [day.day, day.input_tokens + day.output_tokens]));
    const series: ChartSeries[] = [{ label: t("usage.tokens"), values: period.map((day) => byDay.get(day) ?? 0) }];
    return html`<section class="page-section usage-section" aria-labelledby="usage-title">
      <h3 id="usage-title">${t("usage.title")}</h3>
      <dl class="stat-grid">
        ${stat("today-tokens", t("usage.todayTokens"), formatNumber(today ? today.input_tokens + today.output_tokens : 0))}
        ${stat("today-replies", t("usage.todayReplies"), formatNumber(today?.replies ?? 0))}
        ${stat("today-cost", t("usage.todayCost"), formatCost(today ? today.cost : 0, usage.currency))}
        ${stat("period-tokens", t("usage.periodTokens", { days: DAYS }), formatNumber(sum((day) => day.input_tokens + day.output_tokens)))}
        ${stat("period-replies", t("usage.periodReplies", { days: DAYS }), formatNumber(sum((day) => day.replies)))}
        ${stat("period-cost", t("usage.periodCost", { days: DAYS }), formatCost(periodCost ?? (usage.days.length === 0 ? 0 : null), usage.currency))}
      </dl>
      ${estimated ? html`<p class="field-hint">${t("usage.estimated")}</p>` : nothing}
      ${usage.days.length === 0
        ? html`<p class="page-empty">${t("usage.none")}</p>`
        : html`<lt-usage-chart .days=${period} .series=${series} .label=${t("usage.chartByDay")}></lt-usage-chart>`}
      ${usage.models.length > 0
        ? html`<div class="table-scroll"><table class="data-table usage-models">
            <caption>${t("usage.byModel")}</caption>
            <thead><tr><th scope="col">${t("usage.model")}</th><th scope="col" class="num">${t("usage.tokens")}</th><th scope="col" class="num">${t("usage.replies")}</th><th scope="col" class="num">${t("usage.cost")}</th></tr></thead>
            <tbody>
              ${usage.models.map(
                (model) => html`<tr>
                  <th scope="row">${model.model}</th>
                  <td class="num">${formatNumber(model.input_tokens + model.output_tokens)}</td>
                  <td class="num">${formatNumber(model.replies)}</td>
                  <td class="num">${formatCost(model.cost, usage.currency)}</td>
                </tr>`,
              )}
            </tbody>
          </table></div>`
        : nothing}
    </section>`;
  }

  #limits(): TemplateResult | typeof nothing {
    const usage = this.usage;
    if (usage === null) return nothing;
    const names = LIMIT_NAMES.filter((name) => usage.limits[name] !== undefined);
    return html`<section class="page-section" aria-labelledby="quota-title">
      <h3 id="quota-title">${t("quota.title")}</h3>
      <ul class="quota-list">
        ${names.map((name) => quotaItem(name, usage))}
      </ul>
    </section>`;
  }

  #tokens(): TemplateResult {
    const tokens = this.tokens;
    const outcome = this.tokenOutcome;
    return html`<section class="page-section" aria-labelledby="tokens-title">
      <h3 id="tokens-title">${t("tokens.title")}</h3>
      <p class="field-hint">${t("tokens.hint")}</p>
      <form class="inline-form token-create" @submit=${this.#createToken}>
        <label for="token-name">${t("tokens.name")}</label>
        <input id="token-name" name="token-name" type="text" maxlength="100" required autocomplete="off" />
        <button type="submit" class="btn btn-primary" data-action="create-token">${t("tokens.create")}</button>
      </form>
      ${outcome !== null && !outcome.ok ? html`<p class="page-problem" role="alert">${failure(outcome.code)}</p>` : nothing}
      ${this.secret !== null
        ? html`<div class="token-secret" role="status">
            <p>${t("tokens.secretOnce", { name: this.secret.name })}</p>
            <div class="token-secret-row">
              <code class="token-secret-value" data-testid="token-secret">${this.secret.token}</code>
              <button type="button" class="btn btn-small" data-action="copy-token" @click=${this.#copySecret}>
                ${this.copied ? icons.check() : icons.copy()}<span>${this.copied ? t("tokens.copied") : t("tokens.copy")}</span>
              </button>
              <button type="button" class="btn btn-ghost btn-small" @click=${() => (this.secret = null)}>${t("common.dismiss")}</button>
            </div>
          </div>`
        : nothing}
      ${tokens === null
        ? nothing
        : tokens.length === 0
          ? html`<p class="page-empty">${t("tokens.none")}</p>`
          : html`<div class="table-scroll"><table class="data-table token-list">
              <thead><tr><th scope="col">${t("tokens.name")}</th><th scope="col">${t("tokens.created")}</th><th scope="col">${t("tokens.state")}</th><th scope="col"><span class="visually-hidden">${t("tokens.actions")}</span></th></tr></thead>
              <tbody>
                ${tokens.map(
                  (token) => html`<tr data-token=${String(token.id)} data-revoked=${token.revoked ? "true" : "false"}>
                    <th scope="row">${token.name}</th>
                    <td class="when">${formatWhen(token.created_at)}</td>
                    <td>${token.revoked ? t("tokens.revoked") : t("tokens.active")}</td>
                    <td>
                      ${token.revoked
                        ? nothing
                        : html`<button type="button" class="btn btn-small btn-ghost danger" data-action="revoke-token"
                            aria-label=${t("tokens.revokeNamed", { name: token.name })} @click=${() => void this.#revoke(token)}>${t("tokens.revoke")}</button>`}
                    </td>
                  </tr>`,
                )}
              </tbody>
            </table></div>`}
    </section>`;
  }

  #password(): TemplateResult {
    const outcome = this.passwordOutcome;
    return html`<section class="page-section" aria-labelledby="password-title">
      <h3 id="password-title">${t("password.title")}</h3>
      <form class="stack-form password-form" @submit=${this.#changePassword}>
        <input type="text" name="username" autocomplete="username" .value=${this.user ?? ""} hidden />
        <div class="field">
          <label for="password-current">${t("password.current")}</label>
          <input id="password-current" type="password" autocomplete="current-password" maxlength="1024" required />
        </div>
        <div class="field">
          <label for="password-new">${t("password.new")}</label>
          <input id="password-new" type="password" autocomplete="new-password" maxlength="1024" required />
        </div>
        <div class="field">
          <label for="password-repeat">${t("password.repeat")}</label>
          <input id="password-repeat" type="password" autocomplete="new-password" maxlength="1024" required />
        </div>
        ${outcome !== null
          ? html`<p class=${outcome.ok ? "page-done" : "page-problem"} role=${outcome.ok ? "status" : "alert"}>
              ${outcome.ok ? t("password.changed") : passwordProblem(outcome.code)}
            </p>`
          : nothing}
        <div><button type="submit" class="btn btn-primary" data-action="change-password">${t("password.change")}</button></div>
      </form>
    </section>`;
  }

  #createToken = async (event: SubmitEvent): Promise<void> => {
    event.preventDefault();
    const input = this.querySelector<HTMLInputElement>("#token-name");
    const name = input?.value.trim() ?? "";
    if (name === "") return;
    try {
      const created = await accountApi.createToken(name);
      this.secret = { name: created.name, token: created.token };
      this.copied = false;
      this.tokenOutcome = { ok: true, code: "" };
      if (input) input.value = "";
    } catch (error) {
      this.tokenOutcome = { ok: false, code: codeOf(error) };
      return;
    }
    await this.refresh();
  };

  #copySecret = async (): Promise<void> => {
    if (this.secret === null) return;
    try {
      await navigator.clipboard.writeText(this.secret.token);
      this.copied = true;
    } catch {
      // No clipboard (an insecure origin): select the secret so Ctrl+C copies it.
      const code = this.querySelector(".token-secret-value");
      if (code) window.getSelection()?.selectAllChildren(code);
    }
  };

  async #revoke(token: OwnToken): Promise<void> {
    const dialog = this.querySelector<ConfirmDialog>("lt-confirm-dialog");
    const yes = await dialog?.ask({
      title: t("tokens.revokeTitle"),
      body: t("tokens.revokeBody", { name: token.name }),
      confirm: t("tokens.revoke"),
    });
    if (!yes) return;
    try {
      await accountApi.revokeToken(token.id);
      this.tokenOutcome = null;
    } catch (error) {
      this.tokenOutcome = { ok: false, code: codeOf(error) };
    }
    await this.refresh();
  }

  #changePassword = async (event: SubmitEvent): Promise<void> => {
    event.preventDefault();
    const form = event.target as HTMLFormElement;
    const value = (id: string) => form.querySelector<HTMLInputElement>(`#${id}`)?.value ?? "";
    const current = value("password-current");
    const next = value("password-new");
    if (next !== value("password-repeat")) {
      this.passwordOutcome = { ok: false, code: "passwords_differ" };
      return;
    }
    try {
      await accountApi.changePassword(current, next);
      this.passwordOutcome = { ok: true, code: "" };
      form.reset();
    } catch (error) {
      this.passwordOutcome = { ok: false, code: codeOf(error) };
    }
  };
}

function stat(id: string, label: string, value: string): TemplateResult {
  return html`<div class="stat" data-stat=${id}><dt>${label}</dt><dd>${value}</dd></div>`;
}

/** One quota: used of allowed, a meter, what is left and when it resets ("no limit" when none). */
function quotaItem(name: LimitName, usage: AccountUsage): TemplateResult {
  const limit = usage.limits[name]!;
  const currency = usage.currency;
  if (limit.allowed === null) {
    return html`<li class="quota" data-limit=${name}>
      <span class="quota-name">${limitLabel(name)}</span>
      <span class="quota-value">${t("quota.noLimit")}</span>
      <span class="quota-detail">${t("quota.used", { used: limitAmount(name, limit.used, currency) })}</span>
    </li>`;
  }
  const fraction = limit.allowed > 0 ? Math.min(1, limit.used / limit.allowed) : 1;
  const left = limit.remaining ?? Math.max(0, limit.allowed - limit.used);
  return html`<li class="quota" data-limit=${name} data-exhausted=${left <= 0 ? "true" : "false"}>
    <span class="quota-name" id=${`quota-${name}`}>${limitLabel(name)}</span>
    <span class="quota-value">${t("quota.usedOf", { used: limitAmount(name, limit.used, currency), allowed: limitAmount(name, limit.allowed, currency) })}</span>
    <meter min="0" max="1" low="0.75" high="0.9" optimum="0" .value=${fraction} aria-labelledby=${`quota-${name}`}></meter>
    <span class="quota-detail">
      <span class="quota-remaining">${t("quota.remaining", { remaining: limitAmount(name, left, currency) })}</span>
      ${limit.resets_at ? html`<span class="quota-resets">${t("quota.resetsAt", { when: formatWhen(limit.resets_at) })}</span>` : nothing}
    </span>
  </li>`;
}

function passwordProblem(code: string): string {
  if (code === "passwords_differ") return t("password.differ");
  if (code === "invalid_credentials") return t("password.wrongCurrent");
  return failure(code);
}

customElements.define("lt-account-view", AccountView);

declare global {
  interface HTMLElementTagNameMap {
    "lt-account-view": AccountView;
  }
}
