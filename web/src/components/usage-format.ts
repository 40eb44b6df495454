/** How the account and administration pages word things: costs, limits, times, failures. */
import { formatNumber, getLocale, type MessageKey, t } from "../i18n";
import { ApiError, type LimitName } from "../protocol/accounts-api";

/**
 * A cost in the server's currency ("US$0.42"); "–" when unknown (a model without a price); the
 * bare number while the currency is not known yet.
 */
export function formatCost(value: number | null | undefined, currency: string | null): string {
  if (value === null || value === undefined) return "–";
  if (currency === null) return formatNumber(value, { maximumFractionDigits: 4 });
  try {
    return formatNumber(value, { style: "currency", currency, maximumFractionDigits: 4 });
  } catch {
    // Not an ISO 4217 code: the number, then what the server calls its currency.
    return `${formatNumber(value, { maximumFractionDigits: 4 })} ${currency}`;
  }
}

/** A time the server sent (ISO 8601, or seconds since the epoch), in UTC, in the reader's locale. */
export function formatWhen(value: string | number | null | undefined): string {
  if (value === null || value === undefined || value === "") return "–";
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  // In UTC, as the quotas count days (dateStyle cannot be combined with timeZoneName).
  return new Intl.DateTimeFormat(getLocale(), {
    year: "numeric",
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    hourCycle: "h23",
    timeZone: "UTC",
    timeZoneName: "short",
  }).format(date);
}

/** A limit's name in words. */
export function limitLabel(name: LimitName): string {
  return t(`limit.${name}` as MessageKey);
}

/** A limit's amount in its unit (a cost in the currency, else a count). */
export function limitAmount(name: LimitName, value: number | null | undefined, currency: string | null): string {
  if (value === null || value === undefined) return "–";
  return name === "cost_per_month" ? formatCost(value, currency) : formatNumber(value);
}

/** Today's UTC day, as the ledger names days ("2026-12-04"). */
export function todayUtc(): string {
  return new Date().toISOString().slice(0, 10);
}

/** The last `count` UTC days, oldest first, today last ("2026-11-05" … "2026-12-04"). */
export function periodDays(count: number, today = todayUtc()): string[] {
  const end = Date.parse(`${today}T00:00:00Z`);
  return Array.from({ length: count }, (_, index) => new Date(end - (count - 1 - index) * 86_400_000).toISOString().slice(0, 10));
}

/** An outcome to show next to a form: done, or the server's error code. */
export interface Outcome {
  ok: boolean;
  code: string;
}

/** An error's code for the words: the server's, or `connection`. */
export function codeOf(error: unknown): string {
  return error instanceof ApiError ? error.code : "connection";
}

/** A failed request in words. */
export function failure(code: string): string {
  return t("page.error", { code });
}
