/**
 * TeX math in answers: `$…$` and `\(…\)` inline, `$$…$$` and `\[…\]` as blocks.
 *
 * @mdit/plugin-tex finds the formulas (code spans and blocks stay literal; `$5 and $10` is
 * no formula: no space inside the dollars, no digit after the closing one). KaTeX, fetched
 * on the first formula as its own chunk, renders them as MathML only: Chromium draws MathML
 * itself, so no inline style is needed (KaTeX's HTML output is full of `style="…"`, which
 * the CSP refuses). The source is shown as text (`.math-source`) until KaTeX is there, for a
 * display formula not closed yet (an answer still streaming), and for TeX KaTeX cannot parse
 * (then also `.math-error`, titled with the reason: never thrown).
 */
import { tex } from "@mdit/plugin-tex";
import type { Env, MarkdownIt, StateBlock } from "markdown-it";
import type { KatexOptions } from "katex";
import { Lazy } from "./lazy";

const katex = new Lazy(() => import("katex").then((module) => module.default));

const KATEX_OPTIONS: KatexOptions = {
  output: "mathml",
  throwOnError: true, // caught below: the source is shown instead
  trust: false, // no \href, \url, \htmlClass…
  strict: "ignore",
  maxSize: 50,
  maxExpand: 500,
};

/** Where renders wanting KaTeX leave the promise to render again on. */
export interface MathEnv extends Env {
  wait?: (loaded: Promise<void>) => void;
}

/** Adds the math syntax to `md`. */
export function mathPlugin(md: MarkdownIt): void {
  md.use(tex, { delimiters: "all", render: () => "" });
  const escape = md.utils.escapeHtml;

  /** The formula's TeX source as text, with its delimiters; `error` marks invalid TeX. */
  const source = (content: string, markup: string, display: boolean, error?: string): string => {
    const text = `${markup}${display ? "\n" : ""}${content}${CLOSING[markup] ?? markup}`;
    const attrs = error === undefined ? 'class="math-source"' : `class="math-source math-error" title="${escape(error)}"`;
    return display ? `<p ${attrs}>${escape(text)}</p>\n` : `<span ${attrs}>${escape(text)}</span>`;
  };
  const render = (content: string, markup: string, display: boolean, env: MathEnv): string => {
    const engine = katex.get();
    if (engine === null) {
      if (katex.pending) env.wait?.(katex.pending);
      return source(content, markup, display);
    }
    try {
      // KaTeX's MathML still has a few `style` attributes (\fcolorbox's border): drop them
      // before the HTML is parsed, which the CSP would report even though DOMPurify removes
      // them. KaTeX escapes attribute values, so no `"` can occur inside one.
      const html = engine
        .renderToString(content, { ...KATEX_OPTIONS, displayMode: display })
        .replace(/ style="[^"]*"/g, "");
      return display ? `<p class="math-block">${html}</p>\n` : html;
    } catch (error) {
      return source(content, markup, display, error instanceof Error ? error.message : String(error));
    }
  };
  md.renderer.rules.math_inline = (tokens, index, _options, env) => {
    const token = tokens[index]!;
    return render(token.content, token.markup, false, env as MathEnv);
  };
  md.renderer.rules.math_block = (tokens, index, _options, env) => {
    const token = tokens[index]!;
    return render(token.content, token.markup, true, env as MathEnv);
  };

  // A display formula not closed (yet): its source as text, not a formula cut short.
  md.block.ruler.after("blockquote", "math_unclosed", unclosedBlock, {
    alt: ["paragraph", "reference", "blockquote", "list"],
  });
  md.renderer.rules.math_unclosed = (tokens, index) =>
    `<p class="math-source">${escape(tokens[index]!.content.replace(/\n$/, ""))}</p>\n`;

  // An inline `\(` not closed (yet): keep its backslash rather than let escaping eat it.
  md.inline.ruler.before("escape", "math_inline_unclosed", (state, silent) => {
    if (!state.src.startsWith("\\(", state.pos)) return false;
    if (!silent) state.pending += "\\(";
    state.pos += 2;
    return true;
  });
}

const CLOSING: Record<string, string> = { "\\(": "\\)", "\\[": "\\]" };

/**
 * Claims a `$$` or `\[` block whose closing delimiter never comes (before the end of its
 * container), the case @mdit/plugin-tex would render as a formula cut short (`$$`) or as
 * text with its backslash eaten (`\[`). Closed blocks are left to the plugin.
 */
function unclosedBlock(state: StateBlock, startLine: number, endLine: number, silent: boolean): boolean {
  const begin = state.bMarks[startLine]! + state.tShift[startLine]!;
  const opening = state.src.slice(begin, begin + 2);
  const closing = opening === "$$" ? "$$" : opening === "\\[" ? "\\]" : null;
  if (closing === null) return false;
  const lineText = (line: number): string =>
    state.src.slice(state.bMarks[line]! + state.tShift[line]!, state.eMarks[line]!).trimEnd();
  const first = lineText(startLine).slice(2);
  if (first.length >= 2 && first.endsWith(closing)) return false;
  let line = startLine + 1;
  for (; line < endLine; line++) {
    const start = state.bMarks[line]! + state.tShift[line]!;
    if (start < state.eMarks[line]! && state.tShift[line]! < state.blkIndent) break;
    if (lineText(line).endsWith(closing)) return false;
  }
  if (silent) return true;
  const token = state.push("math_unclosed", "", 0);
  token.block = true;
  token.content = state.getLines(startLine, line, state.tShift[startLine]!, true);
  token.map = [startLine, line];
  state.line = line;
  return true;
}
