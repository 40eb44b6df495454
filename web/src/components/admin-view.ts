/**
 * <lt-admin-view>: the administration page (admins only; the server refuses every /admin route
 * to anyone else anyway). Tabs: users (create, approve, disable/enable, role, own limits,
 * password reset), every account's API tokens, usage by day/user/model, provider health, the
 * replies streaming now (cancel one), and the audit log. Usage, providers and live replies
 * refresh every few seconds while their tab is shown and the page is visible.
 */
import { html, nothing, type TemplateResult } from "lit";
import { formatNumber, hasKey, type MessageKey, t } from "../i18n";
import {
  type AdminToken,
  type AdminUser,
  adminApi,
  type AuditEntry,
  LIMIT_NAMES,
  type LimitName,
  type Limits,
  type LiveReply,
  type ProviderHealth,
  type UsageBy,
  type UsageRow,
} from "../protocol/accounts-api";
import "../i18n/pages";
import { LightElement } from "./base";
import type { ConfirmDialog } from "./confirm-dialog";
import { icons } from "./icons";
import type { ChartSeries } from "./usage-chart";
import { codeOf, failure, formatCost, formatWhen, limitAmount, limitLabel, type Outcome, periodDays, todayUtc } from "./usage-format";
import "./usage-chart";
import "../styles/admin.css";

const TABS = ["users", "tokens", "usage", "providers", "replies", "audit"] as const;
type Tab = (typeof TABS)[number];
/** Tabs whose numbers change by themselves, refreshed while shown. */
const LIVE: readonly Tab[] = ["usage", "providers", "replies"];
const REFRESH_MS = 3000;
const AUDIT_PAGE = 50;
const USAGE_DAYS = 30;

/** What the dialog edits: one account's own limits, or its password. */
type Editing = { kind: "limits"; user: AdminUser } | { kind: "password"; user: AdminUser } | null;

export class AdminView extends LightElement {
  static override properties = {
    user: { attribute: false },
    tab: { state: true },
    users: { state: true },
    tokens: { state: true },
    usage: { state: true },
    usageBy: { state: true },
    providers: { state: true },
    replies: { state: true },
    audit: { state: true },
    auditMore: { state: true },
    problem: { state: true },
    outcome: { state: true },
    editing: { state: true },
    currency: { state: true },
  };

  /** The signed-in admin (who cannot demote or disable itself). */
  declare user: string | null;
  declare tab: Tab;
  declare users: AdminUser[] | null;
  declare tokens: AdminToken[] | null;
  declare usage: { currency: string; rows: UsageRow[] } | null;
  declare usageBy: UsageBy;
  declare providers: ProviderHealth[] | null;
  declare replies: LiveReply[] | null;
  declare audit: AuditEntry[] | null;
  declare auditMore: boolean;
  /** Why the shown tab's data could not be loaded. */
  declare problem: string | null;
  /** The last action's outcome (created, saved, or why not). */
  declare outcome: (Outcome & { text?: string }) | null;
  declare editing: Editing;
  /** The server's currency (from the usage route), for costs in the users' table. */
  declare currency: string | null;
  #timer: number | undefined;

  constructor() {
    super();
    this.user = null;
    this.tab = "users";
    this.users = null;
    this.tokens = null;
    this.usage = null;
    this.usageBy = "day";
    this.providers = null;
    this.replies = null;
    this.audit = null;
    this.auditMore = false;
    this.problem = null;
    this.outcome = null;
    this.editing = null;
    this.currency = null;
  }

  override connectedCallback(): void {
    super.connectedCallback();
    void this.load();
    void adminApi.usage("day", 1).then(
      (answer) => (this.currency = answer.currency),
      () => undefined,
    );
    this.#timer = window.setInterval(() => {
      if (LIVE.includes(this.tab) && document.visibilityState === "visible") void this.load();
    }, REFRESH_MS);
    document.addEventListener("visibilitychange", this.#onVisible);
  }

  override disconnectedCallback(): void {
    super.disconnectedCallback();
    window.clearInterval(this.#timer);
    document.removeEventListener("visibilitychange", this.#onVisible);
  }

  override firstUpdated(): void {
    this.querySelector<HTMLElement>("h2")?.focus();
  }

  /** Load the shown tab's data again. */
  async load(): Promise<void> {
    const tab = this.tab;
    try {
      if (tab === "users") this.users = await adminApi.users();
      else if (tab === "tokens") this.tokens = await adminApi.tokens();
      else if (tab === "usage") {
        const by = this.usageBy;
        const answer = await adminApi.usage(by, USAGE_DAYS);
        if (by === this.usageBy) this.usage = answer;
        this.currency = answer.currency;
      } else if (tab === "providers") this.providers = await adminApi.providers();
      else if (tab === "replies") this.replies = await adminApi.replies();
      else if (tab === "audit") {
        const entries = (await adminApi.audit(undefined, AUDIT_PAGE)).entries;
        this.audit = entries;
        this.auditMore = entries.length === AUDIT_PAGE;
      }
      if (tab === this.tab) this.problem = null;
    } catch (error) {
      if (tab === this.tab) this.problem = codeOf(error);
    }
  }

  protected override render(): TemplateResult {
    return html`<section class="page admin-page" aria-labelledby="admin-title">
      <div class="page-head">
        <h2 id="admin-title" tabindex="-1">${t("admin.title")}</h2>
        <button type="button" class="icon-btn" data-action="close-page" aria-label=${t("page.back")} title=${t("page.back")}
          @click=${() => this.dispatchEvent(new CustomEvent("close-page", { bubbles: true }))}>${icons.x()}</button>
      </div>
      <div class="tabs" role="tablist" aria-label=${t("admin.title")} @keydown=${this.#tabKeys}>
        ${TABS.map(
          (tab) => html`<button type="button" role="tab" id=${`admin-tab-${tab}`} data-tab=${tab}
            aria-selected=${tab === this.tab ? "true" : "false"} aria-controls="admin-panel" tabindex=${tab === this.tab ? "0" : "-1"}
            @click=${() => this.#show(tab)}>${t(`admin.tab.${tab}` as MessageKey)}</button>`,
        )}
      </div>
      <div class="tab-panel" id="admin-panel" role="tabpanel" aria-labelledby=${`admin-tab-${this.tab}`} data-panel=${this.tab}>
        ${this.problem !== null ? html`<p class="page-problem" role="alert">${failure(this.problem)}</p>` : nothing}
        ${this.outcome !== null
          ? html`<p class=${this.outcome.ok ? "page-done" : "page-problem"} role=${this.outcome.ok ? "status" : "alert"}>
              ${this.outcome.ok ? (this.outcome.text ?? t("admin.saved")) : failure(this.outcome.code)}
            </p>`
          : nothing}
        ${this.#panel()}
      </div>
      ${this.#dialog()}
      <lt-confirm-dialog></lt-confirm-dialog>
    </section>`;
  }

  #panel(): TemplateResult {
    switch (this.tab) {
      case "users":
        return this.#usersPanel();
      case "tokens":
        return this.#tokensPanel();
      case "usage":
        return this.#usagePanel();
      case "providers":
        return this.#providersPanel();
      case "replies":
        return this.#repliesPanel();
      case "audit":
        return this.#auditPanel();
    }
  }

  // Users

  #usersPanel(): TemplateResult {
    const users = this.users;
    return html`<form class="stack-form create-user" aria-labelledby="create-user-title" @submit=${this.#createUser}>
        <h3 id="create-user-title">${t("admin.createUser")}</h3>
        <div class="form-row">
          <div class="field">
            <label for="new-user-name">${t("signIn.user")}</label>
            <input id="new-user-name" type="text" maxlength="64" required autocomplete="off" autocapitalize="none" spellcheck="false" />
          </div>
          <div class="field">
            <label for="new-user-password">${t("signIn.password")}</label>
            <input id="new-user-password" type="password" maxlength="1024" required autocomplete="new-password" />
          </div>
          <div class="field">
            <label for="new-user-role">${t("admin.role")}</label>
            <select id="new-user-role">
              <option value="user" selected>${t("admin.role.user")}</option>
              <option value="admin">${t("admin.role.admin")}</option>
            </select>
          </div>
        </div>
        <details class="advanced">
          <summary>${t("admin.ownLimits")}</summary>
          ${limitFields("new-user", {})}
        </details>
        <div><button type="submit" class="btn btn-primary" data-action="create-user">${t("admin.create")}</button></div>
      </form>
      ${users === null
        ? html`<span class="spinner" aria-hidden="true"></span>`
        : html`<div class="table-scroll"><table class="data-table user-list">
            <caption class="visually-hidden">${t("admin.tab.users")}</caption>
            <thead>
              <tr>
                <th scope="col">${t("signIn.user")}</th>
                <th scope="col">${t("admin.role")}</th>
                <th scope="col">${t("admin.status")}</th>
                <th scope="col" class="num">${t("admin.todayTokens")}</th>
                <th scope="col" class="num">${t("admin.todayReplies")}</th>
                <th scope="col" class="num">${t("admin.todayCost")}</th>
                <th scope="col">${t("admin.limits")}</th>
                <th scope="col"><span class="visually-hidden">${t("tokens.actions")}</span></th>
              </tr>
            </thead>
            <tbody>
              ${users.map((user) => this.#userRow(user))}
            </tbody>
          </table></div>`}`;
  }

  #userRow(user: AdminUser): TemplateResult {
    const self = user.name === this.user;
    return html`<tr data-user=${user.name} data-status=${user.status} data-role=${user.role}>
      <th scope="row">${user.name}</th>
      <td>
        <select aria-label=${t("admin.roleOf", { name: user.name })} data-control="role" ?disabled=${self}
          @change=${(event: Event) => void this.#update(user, { role: (event.target as HTMLSelectElement).value })}>
          <option value="user" ?selected=${user.role === "user"}>${t("admin.role.user")}</option>
          <option value="admin" ?selected=${user.role === "admin"}>${t("admin.role.admin")}</option>
        </select>
      </td>
      <td><span class="badge" data-status=${user.status}>${t(`admin.status.${user.status}` as MessageKey)}</span></td>
      <td class="num" data-cell="today-tokens">${formatNumber(user.today?.tokens ?? 0)}</td>
      <td class="num" data-cell="today-replies">${formatNumber(user.today?.replies ?? 0)}</td>
      <td class="num">${formatCost(user.today?.cost ?? 0, this.currency)}</td>
      <td class="limit-summary" data-cell="limits">${limitSummary(user, this.currency)}</td>
      <td class="actions-cell"><div class="row-actions">
        ${user.status === "pending"
          ? html`<button type="button" class="btn btn-small btn-primary" data-action="approve" @click=${() => void this.#update(user, { status: "active" }, t("admin.approved", { name: user.name }))}>${t("admin.approve")}</button>`
          : user.status === "active"
            ? html`<button type="button" class="btn btn-small btn-ghost danger" data-action="disable" ?disabled=${self} @click=${() => void this.#disable(user)}>${t("admin.disable")}</button>`
            : html`<button type="button" class="btn btn-small" data-action="enable" @click=${() => void this.#update(user, { status: "active" })}>${t("admin.enable")}</button>`}
        <button type="button" class="btn btn-small btn-ghost" data-action="edit-limits" aria-label=${t("admin.editLimitsOf", { name: user.name })}
          @click=${() => void this.#edit({ kind: "limits", user })}>${t("admin.editLimits")}</button>
        <button type="button" class="btn btn-small btn-ghost" data-action="reset-password" aria-label=${t("admin.resetPasswordOf", { name: user.name })}
          @click=${() => void this.#edit({ kind: "password", user })}>${t("admin.resetPassword")}</button>
      </div></td>
    </tr>`;
  }

  #createUser = async (event: SubmitEvent): Promise<void> => {
    event.preventDefault();
    const form = event.target as HTMLFormElement;
    const name = form.querySelector<HTMLInputElement>("#new-user-name")?.value.trim() ?? "";
    const password = form.querySelector<HTMLInputElement>("#new-user-password")?.value ?? "";
    const role = form.querySelector<HTMLSelectElement>("#new-user-role")?.value ?? "user";
    const limits = readLimits(form, "new-user");
    if (limits === null) {
      this.outcome = { ok: false, code: "invalid_limit" };
      return;
    }
    try {
      await adminApi.createUser({ name, password, role, ...(Object.keys(limits).length > 0 ? { limits } : {}) });
      this.outcome = { ok: true, code: "", text: t("admin.created", { name }) };
      form.reset();
    } catch (error) {
      this.outcome = { ok: false, code: codeOf(error) };
    }
    await this.load();
  };

  async #update(user: AdminUser, change: { role?: string; status?: string; limits?: Limits }, done?: string): Promise<boolean> {
    try {
      await adminApi.updateUser(user.name, change);
      this.outcome = { ok: true, code: "", text: done ?? t("admin.savedFor", { name: user.name }) };
      return true;
    } catch (error) {
      this.outcome = { ok: false, code: codeOf(error) };
      return false;
    } finally {
      await this.load();
    }
  }

  async #disable(user: AdminUser): Promise<void> {
    const yes = await this.#confirm(t("admin.disableTitle", { name: user.name }), t("admin.disableBody"), t("admin.disable"));
    if (yes) await this.#update(user, { status: "disabled" });
  }

  // The dialog: own limits, or a new password

  async #edit(editing: Editing): Promise<void> {
    this.editing = editing;
    await this.updateComplete;
    const dialog = this.querySelector<HTMLDialogElement>("dialog.admin-dialog");
    if (dialog && !dialog.open) dialog.showModal();
    dialog?.querySelector<HTMLElement>("select, input")?.focus();
  }

  #dialog(): TemplateResult {
    const editing = this.editing;
    const title =
      editing === null ? "" : editing.kind === "limits" ? t("admin.limitsTitle", { name: editing.user.name }) : t("admin.passwordTitle", { name: editing.user.name });
    return html`<dialog class="confirm admin-dialog" aria-labelledby="admin-dialog-title" @close=${() => (this.editing = null)}>
      <form method="dialog" class="stack-form" @submit=${this.#saveDialog}>
        <h2 id="admin-dialog-title">${title}</h2>
        ${editing?.kind === "limits"
          ? html`<p class="field-hint">${t("admin.limitsHint")}</p>${limitFields("edit", editing.user.limits ?? {})}`
          : editing?.kind === "password"
            ? html`<div class="field">
                <label for="reset-password">${t("password.new")}</label>
                <input id="reset-password" type="password" autocomplete="new-password" maxlength="1024" required />
              </div>
              <p class="field-hint">${t("admin.resetPasswordHint")}</p>`
            : nothing}
        <div class="dialog-actions">
          <button type="button" class="btn btn-ghost" @click=${() => this.querySelector<HTMLDialogElement>("dialog.admin-dialog")?.close()}>${t("common.cancel")}</button>
          <button type="submit" class="btn btn-primary" data-action="save">${t("common.save")}</button>
        </div>
      </form>
    </dialog>`;
  }

  #saveDialog = async (event: SubmitEvent): Promise<void> => {
    event.preventDefault();
    const editing = this.editing;
    const form = event.target as HTMLFormElement;
    const dialog = form.closest("dialog");
    if (editing === null) return;
    if (editing.kind === "limits") {
      const limits = readLimits(form, "edit");
      if (limits === null) {
        this.outcome = { ok: false, code: "invalid_limit" };
        return;
      }
      dialog?.close();
      await this.#update(editing.user, { limits });
      return;
    }
    const password = form.querySelector<HTMLInputElement>("#reset-password")?.value ?? "";
    if (password === "") return;
    dialog?.close();
    try {
      await adminApi.resetPassword(editing.user.name, password);
      this.outcome = { ok: true, code: "", text: t("admin.passwordReset", { name: editing.user.name }) };
    } catch (error) {
      this.outcome = { ok: false, code: codeOf(error) };
    }
  };

  // Tokens

  #tokensPanel(): TemplateResult {
    const tokens = this.tokens;
    if (tokens === null) return html`<span class="spinner" aria-hidden="true"></span>`;
    if (tokens.length === 0) return html`<p class="page-empty">${t("tokens.none")}</p>`;
    return html`<div class="table-scroll"><table class="data-table admin-token-list">
      <caption class="visually-hidden">${t("admin.tab.tokens")}</caption>
      <thead><tr><th scope="col">${t("signIn.user")}</th><th scope="col">${t("tokens.name")}</th><th scope="col">${t("tokens.created")}</th><th scope="col">${t("tokens.state")}</th><th scope="col"><span class="visually-hidden">${t("tokens.actions")}</span></th></tr></thead>
      <tbody>
        ${tokens.map(
          (token) => html`<tr data-token=${String(token.id)} data-user=${token.user} data-revoked=${token.revoked ? "true" : "false"}>
            <td>${token.user}</td>
            <th scope="row">${token.name}</th>
            <td class="when">${formatWhen(token.created_at)}</td>
            <td>${token.revoked ? t("tokens.revoked") : t("tokens.active")}</td>
            <td>
              ${token.revoked
                ? nothing
                : html`<button type="button" class="btn btn-small btn-ghost danger" data-action="revoke-token"
                    aria-label=${t("admin.revokeTokenOf", { name: token.name, user: token.user })} @click=${() => void this.#revokeToken(token)}>${t("tokens.revoke")}</button>`}
            </td>
          </tr>`,
        )}
      </tbody>
    </table></div>`;
  }

  async #revokeToken(token: AdminToken): Promise<void> {
    const yes = await this.#confirm(t("tokens.revokeTitle"), t("admin.revokeTokenBody", { name: token.name, user: token.user }), t("tokens.revoke"));
    if (!yes) return;
    try {
      await adminApi.revokeToken(token.id);
      this.outcome = { ok: true, code: "", text: t("admin.tokenRevoked", { name: token.name }) };
    } catch (error) {
      this.outcome = { ok: false, code: codeOf(error) };
    }
    await this.load();
  }

  // Usage

  #usagePanel(): TemplateResult {
    const usage = this.usage;
    const bys: UsageBy[] = ["day", "user", "model"];
    return html`<div class="segmented usage-by" role="radiogroup" aria-label=${t("admin.usageBy")} data-control="usage-by">
        ${bys.map(
          (by) => html`<button type="button" role="radio" data-by=${by} aria-checked=${by === this.usageBy ? "true" : "false"}
            @click=${() => void this.#showUsageBy(by)}>${t(`admin.usageBy.${by}` as MessageKey)}</button>`,
        )}
      </div>
      <p class="field-hint">${t("admin.usageLive", { days: USAGE_DAYS })}</p>
      ${usage === null ? html`<span class="spinner" aria-hidden="true"></span>` : this.#usageBody(usage.rows, usage.currency)}`;
  }

  #usageBody(rows: UsageRow[], currency: string): TemplateResult {
    if (rows.length === 0) return html`<p class="page-empty">${t("usage.none")}</p>`;
    const by = this.usageBy;
    const days = periodDays(USAGE_DAYS);
    const keyOf = (row: UsageRow): string => (by === "user" ? (row.user ?? "") : by === "model" ? (row.model ?? "") : t("usage.tokens"));
    const names = [...new Set(rows.map(keyOf))].sort();
    const series: ChartSeries[] = names.map((name) => ({
      label: name,
      values: days.map((day) => rows.filter((row) => row.day === day && keyOf(row) === name).reduce((sum, row) => sum + row.tokens, 0)),
    }));
    const newest = [...rows].sort((a, b) => (a.day < b.day ? 1 : a.day > b.day ? -1 : keyOf(a).localeCompare(keyOf(b))));
    const today = todayUtc();
    return html`<lt-usage-chart .days=${days} .series=${series} .label=${t(`admin.usageChart.${by}` as MessageKey)}></lt-usage-chart>
      <div class="table-scroll"><table class="data-table usage-table" data-by=${by}>
        <caption class="visually-hidden">${t(`admin.usageChart.${by}` as MessageKey)}</caption>
        <thead>
          <tr>
            <th scope="col">${t("admin.day")}</th>
            ${by === "day" ? nothing : html`<th scope="col">${by === "user" ? t("signIn.user") : t("usage.model")}</th>`}
            <th scope="col" class="num">${t("usage.tokens")}</th>
            <th scope="col" class="num">${t("admin.inputTokens")}</th>
            <th scope="col" class="num">${t("admin.outputTokens")}</th>
            <th scope="col" class="num">${t("usage.replies")}</th>
            <th scope="col" class="num">${t("usage.cost")}</th>
          </tr>
        </thead>
        <tbody>
          ${newest.map(
            (row) => html`<tr data-day=${row.day} data-today=${row.day === today ? "true" : "false"} data-key=${by === "day" ? row.day : keyOf(row)}>
              <td class="nowrap">${row.day}</td>
              ${by === "day" ? nothing : html`<th scope="row">${keyOf(row)}</th>`}
              <td class="num" data-cell="tokens">${formatNumber(row.tokens)}</td>
              <td class="num">${formatNumber(row.input_tokens)}</td>
              <td class="num">${formatNumber(row.output_tokens)}</td>
              <td class="num" data-cell="replies">${formatNumber(row.replies)}</td>
              <td class="num">${formatCost(row.cost, currency)}</td>
            </tr>`,
          )}
        </tbody>
      </table></div>`;
  }

  async #showUsageBy(by: UsageBy): Promise<void> {
    if (by === this.usageBy) return;
    this.usageBy = by;
    this.usage = null;
    await this.load();
  }

  // Providers

  #providersPanel(): TemplateResult {
    const providers = this.providers;
    if (providers === null) return html`<span class="spinner" aria-hidden="true"></span>`;
    if (providers.length === 0) return html`<p class="page-empty">${t("admin.noProviders")}</p>`;
    const ms = (value: number | null) => (value === null ? "–" : `${formatNumber(Math.round(value))} ms`);
    return html`<p class="field-hint">${t("admin.providersHint")}</p>
      <div class="table-scroll"><table class="data-table provider-list">
        <caption class="visually-hidden">${t("admin.tab.providers")}</caption>
        <thead><tr>
          <th scope="col">${t("admin.provider")}</th><th scope="col">${t("admin.breaker")}</th><th scope="col" class="num">${t("admin.requests")}</th>
          <th scope="col" class="num">${t("admin.errors")}</th><th scope="col" class="num">${t("admin.errorRate")}</th>
          <th scope="col" class="num">p50</th><th scope="col" class="num">p95</th><th scope="col" class="num">p99</th>
        </tr></thead>
        <tbody>
          ${providers.map(
            (provider) => html`<tr data-provider=${provider.name} data-breaker=${provider.breaker}>
              <th scope="row">${provider.name}</th>
              <td><span class="badge" data-breaker=${provider.breaker}>${t(`admin.breaker.${provider.breaker}` as MessageKey)}</span></td>
              <td class="num">${formatNumber(provider.requests)}</td>
              <td class="num">${formatNumber(provider.errors)}</td>
              <td class="num">${formatNumber(provider.error_rate, { style: "percent", maximumFractionDigits: 1 })}</td>
              <td class="num">${ms(provider.latency_ms.p50)}</td>
              <td class="num">${ms(provider.latency_ms.p95)}</td>
              <td class="num">${ms(provider.latency_ms.p99)}</td>
            </tr>`,
          )}
        </tbody>
      </table></div>`;
  }

  // Live replies

  #repliesPanel(): TemplateResult {
    const replies = this.replies;
    if (replies === null) return html`<span class="spinner" aria-hidden="true"></span>`;
    if (replies.length === 0) return html`<p class="page-empty">${t("admin.noReplies")}</p>`;
    return html`<div class="table-scroll"><table class="data-table reply-list">
      <caption class="visually-hidden">${t("admin.tab.replies")}</caption>
      <thead><tr>
        <th scope="col">${t("signIn.user")}</th><th scope="col">${t("usage.model")}</th><th scope="col">${t("admin.started")}</th>
        <th scope="col">${t("admin.message")}</th><th scope="col"><span class="visually-hidden">${t("tokens.actions")}</span></th>
      </tr></thead>
      <tbody>
        ${replies.map(
          (reply) => html`<tr data-message=${reply.message_id}>
            <td>${reply.user ?? "–"}</td>
            <td>${reply.model}</td>
            <td class="when">${formatWhen(reply.started_at)}</td>
            <td><code>${reply.message_id}</code></td>
            <td><button type="button" class="btn btn-small btn-ghost danger" data-action="cancel-reply" @click=${() => void this.#cancel(reply)}>${t("admin.cancelReply")}</button></td>
          </tr>`,
        )}
      </tbody>
    </table></div>`;
  }

  async #cancel(reply: LiveReply): Promise<void> {
    const yes = await this.#confirm(t("admin.cancelTitle"), t("admin.cancelBody", { user: reply.user ?? "–", model: reply.model }), t("admin.cancelReply"));
    if (!yes) return;
    try {
      await adminApi.cancelReply(reply.message_id);
      this.outcome = { ok: true, code: "", text: t("admin.cancelled") };
    } catch (error) {
      this.outcome = { ok: false, code: codeOf(error) };
    }
    await this.load();
  }

  // Audit log

  #auditPanel(): TemplateResult {
    const entries = this.audit;
    if (entries === null) return html`<span class="spinner" aria-hidden="true"></span>`;
    if (entries.length === 0) return html`<p class="page-empty">${t("admin.noAudit")}</p>`;
    return html`<div class="table-scroll"><table class="data-table audit-list">
        <caption class="visually-hidden">${t("admin.tab.audit")}</caption>
        <thead><tr><th scope="col">${t("admin.at")}</th><th scope="col">${t("admin.actor")}</th><th scope="col">${t("admin.action")}</th><th scope="col">${t("admin.target")}</th><th scope="col">${t("admin.details")}</th></tr></thead>
        <tbody>
          ${entries.map(
            (entry) => html`<tr data-entry=${String(entry.id)} data-action=${entry.action}>
              <td class="when">${formatWhen(entry.at)}</td>
              <td>${entry.actor}</td>
              <td>${auditAction(entry.action)}</td>
              <td>${entry.target ?? "–"}</td>
              <td><code class="audit-details">${entry.details === null || entry.details === undefined ? "" : JSON.stringify(entry.details)}</code></td>
            </tr>`,
          )}
        </tbody>
      </table></div>
      ${this.auditMore ? html`<button type="button" class="btn" data-action="older" @click=${this.#older}>${t("admin.older")}</button>` : nothing}`;
  }

  #older = async (): Promise<void> => {
    const entries = this.audit ?? [];
    const last = entries.at(-1);
    if (last === undefined) return;
    try {
      const older = (await adminApi.audit(last.id, AUDIT_PAGE)).entries;
      this.audit = [...entries, ...older];
      this.auditMore = older.length === AUDIT_PAGE;
    } catch (error) {
      this.problem = codeOf(error);
    }
  };

  // Tabs

  async #show(tab: Tab): Promise<void> {
    if (tab === this.tab) return;
    this.tab = tab;
    this.problem = null;
    this.outcome = null;
    await this.load();
  }

  /** Arrow keys, Home and End move between tabs (the WAI-ARIA tabs pattern). */
  #tabKeys = async (event: KeyboardEvent): Promise<void> => {
    const index = TABS.indexOf(this.tab);
    const next = { ArrowRight: index + 1, ArrowLeft: index - 1, Home: 0, End: TABS.length - 1 }[event.key];
    if (next === undefined) return;
    event.preventDefault();
    const tab = TABS[(next + TABS.length) % TABS.length] ?? this.tab;
    const shown = this.#show(tab);
    await this.updateComplete;
    this.querySelector<HTMLElement>(`#admin-tab-${tab}`)?.focus();
    await shown;
  };

  #onVisible = (): void => {
    if (document.visibilityState === "visible" && LIVE.includes(this.tab)) void this.load();
  };

  #confirm(title: string, body: string, confirm: string): Promise<boolean> {
    return this.querySelector<ConfirmDialog>("lt-confirm-dialog")?.ask({ title, body, confirm }) ?? Promise.resolve(false);
  }
}

/**
 * The own-limit editor: per limit, "role default" (left out), "no limit" (null: lifted) or
 * an amount. Field ids start with `prefix`.
 */
function limitFields(prefix: string, limits: Limits): TemplateResult {
  return html`<div class="limit-fields">
    ${LIMIT_NAMES.map((name) => {
      const own = name in limits;
      const value = limits[name];
      const mode = !own ? "role" : value === null ? "none" : "amount";
      return html`<fieldset class="limit-field" data-limit=${name}>
        <legend>${limitLabel(name)}</legend>
        <select id=${`${prefix}-${name}-mode`} aria-label=${t("admin.limitModeOf", { limit: limitLabel(name) })} data-control="limit-mode"
          @change=${(event: Event) => {
            const select = event.target as HTMLSelectElement;
            const amount = select.parentElement?.querySelector<HTMLInputElement>("input");
            if (amount) {
              amount.disabled = select.value !== "amount";
              if (select.value === "amount") amount.focus();
            }
          }}>
          <option value="role" ?selected=${mode === "role"}>${t("admin.limit.role")}</option>
          <option value="none" ?selected=${mode === "none"}>${t("quota.noLimit")}</option>
          <option value="amount" ?selected=${mode === "amount"}>${t("admin.limit.amount")}</option>
        </select>
        <input id=${`${prefix}-${name}-amount`} type="number" min="0" step=${name === "cost_per_month" ? "0.01" : "1"} inputmode="decimal"
          aria-label=${t("admin.limitAmountOf", { limit: limitLabel(name) })} data-control="limit-amount"
          .value=${mode === "amount" && typeof value === "number" ? String(value) : ""} ?disabled=${mode !== "amount"} />
      </fieldset>`;
    })}
  </div>`;
}

/** The limits the editor says (names on "role default" left out); null when an amount is not a number ≥ 0. */
function readLimits(form: HTMLElement, prefix: string): Limits | null {
  const limits: Limits = {};
  for (const name of LIMIT_NAMES) {
    const mode = form.querySelector<HTMLSelectElement>(`#${prefix}-${name}-mode`)?.value ?? "role";
    if (mode === "none") limits[name] = null;
    else if (mode === "amount") {
      const raw = form.querySelector<HTMLInputElement>(`#${prefix}-${name}-amount`)?.value ?? "";
      const amount = Number(raw);
      if (raw.trim() === "" || !Number.isFinite(amount) || amount < 0) return null;
      limits[name] = name === "cost_per_month" ? amount : Math.floor(amount);
    }
  }
  return limits;
}

/** An audit entry's action in words, with its code ("token.revoke") beside it; the bare code
 * for an action these pages do not know. */
function auditAction(action: string): TemplateResult {
  const key = `audit.${action}`;
  return hasKey(key) ? html`${t(key)} <code class="audit-code">${action}</code>` : html`<code class="audit-code">${action}</code>`;
}

/** An account's limits in short: each effective one, marked when it is the account's own. */
function limitSummary(user: AdminUser, currency: string | null): TemplateResult {
  const effective = user.effective ?? {};
  const ownLimits = user.limits ?? {};
  // The account's own limits, and the role's that limit something: a role's "no limit" goes
  // without saying (the cell then reads "No limit").
  const names = LIMIT_NAMES.filter((name) => name in ownLimits || (effective[name] !== null && effective[name] !== undefined));
  if (names.length === 0) return html`<span class="muted">${t("quota.noLimit")}</span>`;
  return html`<ul class="limit-chips">
    ${names.map((name: LimitName) => {
      const own = name in ownLimits;
      const value = own ? ownLimits[name] : effective[name];
      return html`<li data-limit=${name} data-own=${own ? "true" : "false"}>
        <span>${t("admin.limitLabel", { label: limitLabel(name) })}</span> <strong>${value === null || value === undefined ? t("quota.noLimit") : limitAmount(name, value, currency)}</strong>${own
          ? html` <span class="muted">${t("admin.ownMark", { own: t("admin.own") })}</span>`
          : nothing}
      </li>`;
    })}
  </ul>`;
}

customElements.define("lt-admin-view", AdminView);

declare global {
  interface HTMLElementTagNameMap {
    "lt-admin-view": AdminView;
  }
}
