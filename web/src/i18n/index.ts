/**
 * Translation: `t(key, params)` in the current locale, chosen from the saved choice or the
 * browser's languages. Components re-render on `onLocaleChange`.
 */
import { loadLocale, saveLocale } from "../state/preferences";
import type { Problem } from "../state/types";
import { en, type MessageKey as MainKey, type Messages } from "./en";
import type { PageKey } from "./pages-en";
import { zhCN } from "./zh-CN";

export type Locale = "en" | "zh-CN";
/** A string's key: the chat's (always loaded), or the account and administration pages'. */
export type MessageKey = MainKey | PageKey;

export const LOCALES: readonly { id: Locale; name: string }[] = [
  { id: "en", name: "English" },
  { id: "zh-CN", name: "简体中文" },
];

const CATALOGS: Record<Locale, Messages> = { en, "zh-CN": zhCN };

function isLocale(value: string | null): value is Locale {
  return value === "en" || value === "zh-CN";
}

/** The saved choice, else the first browser language we speak, else English. */
export function detectLocale(languages: readonly string[] = navigator.languages): Locale {
  const saved = loadLocale();
  if (isLocale(saved)) return saved;
  for (const language of languages) {
    const lower = language.toLowerCase();
    if (lower.startsWith("zh")) return "zh-CN";
    if (lower.startsWith("en")) return "en";
  }
  return "en";
}

let current: Locale = "en";
const listeners = new Set<() => void>();

export function getLocale(): Locale {
  return current;
}

export function setLocale(locale: Locale, remember = false): void {
  if (remember) saveLocale(locale);
  current = locale;
  document.documentElement.lang = locale;
  for (const listener of listeners) listener();
}

export function onLocaleChange(listener: () => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/** Strings loaded later (the account and administration pages'), by locale. */
const LATER: Record<Locale, Partial<Record<string, string>>> = { en: {}, "zh-CN": {} };

export function addMessages(locale: Locale, messages: Readonly<Record<string, string>>): void {
  Object.assign(LATER[locale], messages);
}

export function t(key: MessageKey, params: Record<string, string | number> = {}): string {
  const template = (CATALOGS[current] as Partial<Record<string, string>>)[key] ?? LATER[current][key] ?? LATER.en[key] ?? key;
  return template.replace(/\{(\w+)\}/g, (whole, name: string) =>
    name in params ? String(params[name]) : whole,
  );
}

export function hasKey(key: string): key is MessageKey {
  return key in en || key in LATER[current] || key in LATER.en;
}

/** A problem in plain words: what happened and what to do. */
export function describeProblem(problem: Problem, reason?: string | null): { text: string; hint: string } {
  if (problem.code === "provider_not_configured" && problem.model && reason) {
    return {
      text: t("problem.provider_not_configured", { model: problem.model, reason }),
      hint: t("problem.provider_not_configured.hint"),
    };
  }
  if (problem.code === "provider_not_configured") {
    // The server's own sentence ("qwen3-max needs DASHSCOPE_API_KEY on the server") is the
    // most precise we have when the model list does not say why.
    return { text: problem.message, hint: t("problem.provider_not_configured.hint") };
  }
  if (problem.code === "quota_exceeded") return describeQuota(problem);
  // unsupported_capability is worded per capability (vision, thinking, search).
  const key = problem.capability ? `problem.${problem.code}.${problem.capability}` : `problem.${problem.code}`;
  if (hasKey(key) && hasKey(`${key}.hint`)) {
    const wait = problem.retryAfter ? t("problem.retryAfter", { seconds: Math.ceil(problem.retryAfter) }) : null;
    const params = { model: problem.model ?? "", code: problem.code, ...problem.details };
    return {
      text: t(key, params),
      hint: wait ?? t(`${key}.hint` as MessageKey, params),
    };
  }
  return { text: t("problem.generic", { code: problem.code }), hint: t("problem.generic.hint") };
}

/**
 * A quota's refusal, worded per limit ("daily token quota reached, resets at 00:00 UTC"); a
 * limit this page does not know keeps the server's words.
 */
function describeQuota(problem: Problem): { text: string; hint: string } {
  const quota = problem.quota;
  const key = `problem.quota_exceeded.${quota?.limit ?? ""}`;
  const hint = t("problem.quota_exceeded.hint");
  if (quota === undefined || !hasKey(key)) return { text: problem.message || t("problem.quota_exceeded"), hint };
  return { text: t(key, { allowed: quota.allowed === null ? "?" : formatNumber(quota.allowed) }), hint };
}

/** The same number in the current locale's format. */
export function formatNumber(value: number, options?: Intl.NumberFormatOptions): string {
  return new Intl.NumberFormat(current, options).format(value);
}

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${formatNumber(Math.round(ms))} ms`;
  return `${formatNumber(ms / 1000, { maximumFractionDigits: ms < 10_000 ? 1 : 0 })} s`;
}

export function formatDateTime(epochSeconds: number): string {
  return new Intl.DateTimeFormat(current, { dateStyle: "medium", timeStyle: "short" }).format(
    new Date(epochSeconds * 1000),
  );
}

/** A day: this year's without the year. */
export function formatDate(epochSeconds: number): string {
  const date = new Date(epochSeconds * 1000);
  const thisYear = date.getFullYear() === new Date().getFullYear();
  return new Intl.DateTimeFormat(current, thisYear ? { month: "short", day: "numeric" } : { dateStyle: "medium" }).format(date);
}

/** A size in bytes in binary units ("10 MiB"), for limits and files. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${formatNumber(bytes)} B`;
  if (bytes < 1024 * 1024) return `${formatNumber(bytes / 1024, { maximumFractionDigits: 0 })} KiB`;
  return `${formatNumber(bytes / (1024 * 1024), { maximumFractionDigits: 1 })} MiB`;
}
