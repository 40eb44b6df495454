/**
 * Light and dark themes: the user's choice, or the system's. The resolved theme is set as
 * <html data-theme="light|dark">, which the stylesheets (ours and highlight.js's) key on.
 */
import { loadTheme, saveTheme, type ThemeChoice } from "./state/preferences";

const systemDark = window.matchMedia("(prefers-color-scheme: dark)");
let choice: ThemeChoice = loadTheme();
const listeners = new Set<() => void>();

function apply(): void {
  const dark = choice === "dark" || (choice === "system" && systemDark.matches);
  document.documentElement.dataset.theme = dark ? "dark" : "light";
  document.querySelector('meta[name="theme-color"]')?.setAttribute("content", dark ? "#16171b" : "#ffffff");
  for (const listener of listeners) listener();
}

export function initTheme(): void {
  systemDark.addEventListener("change", () => {
    if (choice === "system") apply();
  });
  apply();
}

export function getTheme(): ThemeChoice {
  return choice;
}

export function setTheme(next: ThemeChoice): void {
  choice = next;
  saveTheme(next);
  apply();
}

export function onThemeChange(listener: () => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}
