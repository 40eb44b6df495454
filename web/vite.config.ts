// Builds the page into the Python package (src/liaotian/web/dist), which the server serves.
import { defineConfig } from "vite";

// Relative to this folder (Vite's root); the Python package serves it.
const outDir = "../src/liaotian/web/dist";

/**
 * highlight.js ships one stylesheet per theme, each written for the whole page. We bundle a
 * light and a dark one and scope each to its theme, so switching themes is a class change and
 * no stylesheet is ever injected at run time (the CSP has no 'unsafe-inline' for styles).
 */
const scopedHighlightThemes = {
  postcssPlugin: "liaotian-scope-highlight-themes",
  Once(root: { source?: { input: { file?: string } }; walkRules(cb: (rule: { selectors: string[] }) => void): void }) {
    const file = root.source?.input.file ?? "";
    const scope = file.endsWith("/highlight.js/styles/github-dark.css")
      ? ':root[data-theme="dark"]'
      : file.endsWith("/highlight.js/styles/github.css")
        ? ':root:not([data-theme="dark"])'
        : null;
    if (scope === null) return;
    root.walkRules((rule) => {
      rule.selectors = rule.selectors.map((selector) => `${scope} ${selector}`);
    });
  },
};

export default defineConfig({
  base: "/",
  css: { postcss: { plugins: [scopedHighlightThemes] } },
  // `npm run dev` serves the page with hot reload; the protocol and the account endpoints go
  // to a running liaotian.
  server: {
    proxy: {
      "/ws": { target: "ws://127.0.0.1:8011", ws: true },
      "/auth": { target: "http://127.0.0.1:8011" },
      "/api": { target: "http://127.0.0.1:8011" },
      "/account": { target: "http://127.0.0.1:8011" },
      "/admin": { target: "http://127.0.0.1:8011" },
    },
  },
  build: {
    outDir,
    emptyOutDir: true,
    assetsDir: "assets",
    // Never turn assets into data: URLs: the CSP allows data: for images only.
    assetsInlineLimit: 0,
    sourcemap: false,
    chunkSizeWarningLimit: 800,
    // Two pages: the chat (index.html) and the shared conversation (share.html, /s/ID).
    rollupOptions: { input: { main: "index.html", share: "share.html" } },
  },
});
