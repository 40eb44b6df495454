/**
 * The account's own routes (/account) and the administration routes
 * (/admin) over HTTP, typed as docs/administration.md describes them. No DOM. The session is
 * the HttpOnly cookie the browser sends by itself (and its Origin header on every other method
 * than GET, which the server checks).
 *
 * Contract: every function resolves with the answer's JSON, or rejects with an `ApiError`
 * (protocol/http.ts). Sign-up is in protocol/auth.ts (the sign-in screen needs only it).
 */

import { call } from "./http";

export { ApiError } from "./http";

export const LIMIT_NAMES = ["tokens_per_day", "messages_per_day", "cost_per_month", "concurrent_replies"] as const;
export type LimitName = (typeof LIMIT_NAMES)[number];

export interface LimitState {
  allowed: number | null;
  used: number;
  remaining: number | null;
  resets_at: string | null;
}

export interface UsageTotals {
  input_tokens: number;
  output_tokens: number;
  reasoning_tokens: number;
  cached_tokens: number;
  replies: number;
  cost: number | null;
  estimated: boolean;
}

export interface AccountUsage {
  user: string;
  role: string;
  currency: string;
  limits: Partial<Record<LimitName, LimitState>>;
  days: (UsageTotals & { day: string })[];
  models: (UsageTotals & { model: string })[];
}

export interface OwnToken {
  id: number | string;
  name: string;
  created_at: string | number;
  revoked: boolean;
}

export interface AdminToken extends OwnToken {
  user: string;
}

/** Own limits: a number, or null (lifted); a name left out follows the role. */
export type Limits = Partial<Record<LimitName, number | null>>;

export interface AdminUser {
  name: string;
  role: "admin" | "user";
  status: "active" | "disabled" | "pending";
  created_at: string | number;
  limits: Limits;
  /** After the role's (absent from a server without the ledger). */
  effective?: Limits;
  today?: { tokens: number; replies: number; cost: number | null };
}

export type UsageBy = "day" | "user" | "model";

export interface UsageRow {
  day: string;
  user?: string;
  model?: string;
  tokens: number;
  input_tokens: number;
  output_tokens: number;
  replies: number;
  cost: number | null;
}

export interface ProviderHealth {
  name: string;
  breaker: "closed" | "open" | "half-open";
  requests: number;
  errors: number;
  error_rate: number;
  latency_ms: { p50: number | null; p95: number | null; p99: number | null };
}

export interface LiveReply {
  message_id: string;
  conversation_id: string;
  user: string | null;
  model: string;
  started_at: string | number;
}

export interface AuditEntry {
  id: number;
  at: string | number;
  actor: string;
  action: string;
  target: string | null;
  details: unknown;
}

const name = encodeURIComponent;

export const accountApi = {
  usage: (days = 30) => call<AccountUsage>("GET", `/account/usage?days=${days}`),
  tokens: async () => (await call<{ tokens: OwnToken[] }>("GET", "/account/tokens")).tokens,
  createToken: (tokenName: string) => call<{ id: string; name: string; token: string }>("POST", "/account/tokens", { name: tokenName }),
  revokeToken: (id: number | string) => call<unknown>("DELETE", `/account/tokens/${name(id)}`),
  changePassword: (current: string, next: string) => call<unknown>("POST", "/account/password", { current, new: next }),
};

export const adminApi = {
  users: async () => (await call<{ users: AdminUser[] }>("GET", "/admin/users")).users,
  createUser: (user: { name: string; password: string; role?: string; limits?: Limits }) => call<unknown>("POST", "/admin/users", user),
  updateUser: (user: string, change: { role?: string; status?: string; limits?: Limits }) =>
    call<unknown>("PATCH", `/admin/users/${name(user)}`, change),
  resetPassword: (user: string, password: string) => call<unknown>("POST", `/admin/users/${name(user)}/password`, { password }),
  tokens: async () => (await call<{ tokens: AdminToken[] }>("GET", "/admin/tokens")).tokens,
  revokeToken: (id: number | string) => call<unknown>("DELETE", `/admin/tokens/${name(id)}`),
  usage: (by: UsageBy, days = 30) => call<{ currency: string; by: UsageBy; rows: UsageRow[] }>("GET", `/admin/usage?days=${days}&by=${by}`),
  providers: async () => (await call<{ providers: ProviderHealth[] }>("GET", "/admin/providers")).providers,
  replies: async () => (await call<{ replies: LiveReply[] }>("GET", "/admin/replies")).replies,
  cancelReply: (id: string) => call<unknown>("POST", `/admin/replies/${name(id)}/cancel`),
  audit: (before?: number, limit = 50) =>
    call<{ entries: AuditEntry[] }>("GET", `/admin/audit?limit=${limit}${before === undefined ? "" : `&before=${before}`}`),
};
