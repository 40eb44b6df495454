/**
 * Syntax highlighting with highlight.js core; each language is its own chunk, fetched the
 * first time a code block in it is shown, so the first load carries none of them.
 *
 * `highlight()` answers at once: highlighted HTML when the language is loaded, or null (the
 * block shows as plain text) while it loads, handing out the promise to render again on.
 * Add a language to LOADERS (and its aliases to ALIASES) to highlight it.
 */
import hljs from "highlight.js/lib/core";
import type { LanguageFn } from "highlight.js";
import { Lazy } from "./lazy";

type Loader = () => Promise<{ default: LanguageFn }>;

// Literal import() calls, so Vite makes one chunk per language.
const LOADERS: Record<string, Loader> = {
  bash: () => import("highlight.js/lib/languages/bash"),
  c: () => import("highlight.js/lib/languages/c"),
  cpp: () => import("highlight.js/lib/languages/cpp"),
  csharp: () => import("highlight.js/lib/languages/csharp"),
  css: () => import("highlight.js/lib/languages/css"),
  diff: () => import("highlight.js/lib/languages/diff"),
  dockerfile: () => import("highlight.js/lib/languages/dockerfile"),
  go: () => import("highlight.js/lib/languages/go"),
  ini: () => import("highlight.js/lib/languages/ini"),
  java: () => import("highlight.js/lib/languages/java"),
  javascript: () => import("highlight.js/lib/languages/javascript"),
  json: () => import("highlight.js/lib/languages/json"),
  kotlin: () => import("highlight.js/lib/languages/kotlin"),
  markdown: () => import("highlight.js/lib/languages/markdown"),
  php: () => import("highlight.js/lib/languages/php"),
  python: () => import("highlight.js/lib/languages/python"),
  ruby: () => import("highlight.js/lib/languages/ruby"),
  rust: () => import("highlight.js/lib/languages/rust"),
  shell: () => import("highlight.js/lib/languages/shell"),
  sql: () => import("highlight.js/lib/languages/sql"),
  swift: () => import("highlight.js/lib/languages/swift"),
  typescript: () => import("highlight.js/lib/languages/typescript"),
  xml: () => import("highlight.js/lib/languages/xml"),
  yaml: () => import("highlight.js/lib/languages/yaml"),
};

/**
 * The aliases each language registers (highlight.js only knows them once it is loaded), so
 * ```py finds python before python.js has been fetched.
 */
const ALIASES: Record<string, readonly string[]> = {
  bash: ["sh", "zsh"],
  c: ["h"],
  cpp: ["cc", "c++", "h++", "hpp", "hh", "hxx", "cxx"],
  csharp: ["cs", "c#"],
  diff: ["patch"],
  dockerfile: ["docker"],
  go: ["golang"],
  ini: ["toml"],
  java: ["jsp"],
  javascript: ["js", "jsx", "mjs", "cjs"],
  json: ["jsonc", "json5"],
  kotlin: ["kt", "kts", "ktm", "ktx"],
  markdown: ["md", "mkdown", "mkd"],
  python: ["py", "gyp", "ipython"],
  ruby: ["rb", "gemspec", "podspec", "thor", "irb"],
  rust: ["rs"],
  shell: ["console", "shellsession"],
  typescript: ["ts", "tsx", "mts", "cts"],
  xml: ["html", "xhtml", "rss", "atom", "xjb", "xsd", "xsl", "plist", "wsf", "svg"],
  yaml: ["yml"],
};

const CANONICAL = new Map<string, string>();
for (const name of Object.keys(LOADERS)) CANONICAL.set(name, name);
for (const [name, aliases] of Object.entries(ALIASES)) {
  for (const alias of aliases) CANONICAL.set(alias, name);
}

const registered = new Map<string, Lazy<LanguageFn>>();
for (const [name, loader] of Object.entries(LOADERS)) {
  registered.set(name, new Lazy(() => loader().then((module) => module.default)));
}

/** The language `name` (or alias) stands for, if we can highlight it; null otherwise. */
export function languageOf(name: string): string | null {
  return CANONICAL.get(name.trim().toLowerCase()) ?? null;
}

/**
 * Highlighted HTML for `code` (escaped by highlight.js), or null when the language is unknown
 * or not loaded yet; then loading starts and `wait` gets the promise to render again on.
 */
export function highlight(
  code: string,
  language: string,
  wait: (loaded: Promise<void>) => void,
): string | null {
  const name = languageOf(language);
  const lazy = name === null ? undefined : registered.get(name);
  if (name === null || lazy === undefined) return null;
  if (hljs.getLanguage(name) === undefined) {
    const definition = lazy.get();
    if (definition === null) {
      if (lazy.pending) wait(lazy.pending);
      return null;
    }
    hljs.registerLanguage(name, definition);
  }
  return hljs.highlight(code, { language: name, ignoreIllegals: true }).value;
}
