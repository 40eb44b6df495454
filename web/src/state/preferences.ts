/**
 * What the page remembers in localStorage: the owner's client id (open mode) and the user's
 * choices. Never a credential: a signed-in session is an HttpOnly cookie the page cannot read.
 * Reads never throw (storage can be disabled or full); a bad value falls back to the default.
 */

const PREFIX = "liaotian.";

function read(key: string): string | null {
  try {
    return localStorage.getItem(PREFIX + key);
  } catch {
    return null;
  }
}

function write(key: string, value: string | null): void {
  try {
    if (value === null) localStorage.removeItem(PREFIX + key);
    else localStorage.setItem(PREFIX + key, value);
  } catch {
    // Private mode or a full disk: the choice lasts for this page only.
  }
}

/** The owner id sent as `?client_id=` when the server runs open (no accounts); once per browser. */
export function clientId(): string {
  const existing = read("client_id");
  if (existing !== null && /^[A-Za-z0-9_.:-]{1,128}$/.test(existing)) return existing;
  const fresh = "web_" + crypto.randomUUID().replaceAll("-", "");
  write("client_id", fresh);
  return fresh;
}

export type ThemeChoice = "system" | "light" | "dark";

export interface ReplySettings {
  /** The model picked last; null means the server's default. */
  model: string | null;
  stream: boolean;
  /** null means the model's default. */
  temperature: number | null;
  maxTokens: number | null;
  /** Tokens a model may spend thinking (sent when it thinks); null: the model's default. */
  thinkingBudget: number | null;
}

function numberOrNull(text: string | null, min: number, max: number): number | null {
  if (text === null || text === "") return null;
  const value = Number(text);
  return Number.isFinite(value) && value >= min && value <= max ? value : null;
}

export function loadReplySettings(): ReplySettings {
  return {
    model: read("model"),
    stream: read("stream") !== "false",
    temperature: numberOrNull(read("temperature"), 0, 2),
    maxTokens: numberOrNull(read("max_tokens"), 1, 1_000_000),
    thinkingBudget: numberOrNull(read("thinking_budget"), 1, 1_000_000),
  };
}

export function saveReplySettings(settings: ReplySettings): void {
  write("model", settings.model);
  write("stream", String(settings.stream));
  write("temperature", settings.temperature === null ? null : String(settings.temperature));
  write("max_tokens", settings.maxTokens === null ? null : String(settings.maxTokens));
  write("thinking_budget", settings.thinkingBudget === null ? null : String(settings.thinkingBudget));
}

/** The page's own choices of thinking and web search, per model id. */
export interface FeatureChoice {
  thinking?: boolean;
  search?: boolean;
}
export type FeatureChoices = Record<string, FeatureChoice>;

export function loadFeatures(): FeatureChoices {
  try {
    const value: unknown = JSON.parse(read("features") ?? "{}");
    if (typeof value !== "object" || value === null || Array.isArray(value)) return {};
    const choices: FeatureChoices = {};
    for (const [model, raw] of Object.entries(value as Record<string, unknown>)) {
      if (typeof raw !== "object" || raw === null) continue;
      const { thinking, search } = raw as Record<string, unknown>;
      const choice: FeatureChoice = {};
      if (typeof thinking === "boolean") choice.thinking = thinking;
      if (typeof search === "boolean") choice.search = search;
      choices[model] = choice;
    }
    return choices;
  } catch {
    return {};
  }
}

export function saveFeatures(choices: FeatureChoices): void {
  write("features", JSON.stringify(choices));
}

export function loadTheme(): ThemeChoice {
  const value = read("theme");
  return value === "light" || value === "dark" ? value : "system";
}

export function saveTheme(theme: ThemeChoice): void {
  write("theme", theme === "system" ? null : theme);
}

export function loadLocale(): string | null {
  return read("locale");
}

export function saveLocale(locale: string): void {
  write("locale", locale);
}

export function loadSidebarOpen(): boolean {
  return read("sidebar") !== "closed";
}

export function saveSidebarOpen(open: boolean): void {
  write("sidebar", open ? null : "closed");
}
