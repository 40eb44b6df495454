/**
 * Markdown → a sanitized DocumentFragment, for model answers.
 *
 * Layers, each from a maintained library: markdown-it with raw HTML off (HTML in the text is
 * shown as text), highlight.js for code and KaTeX for TeX math (`math.ts`), then DOMPurify
 * over the result with an allow-list of the tags markdown-it and KaTeX's MathML produce.
 * Nothing here is a hand-written parser or sanitizer; the post-processing only adds our own
 * elements (code block toolbars) with DOM calls, never HTML strings.
 *
 * Highlighting languages and KaTeX are fetched when first needed: until then the code or the
 * formula shows as plain text, and the result's `ready` says when to render again.
 *
 * An answer that cites web sources writes `[n]`; after sanitizing, each such marker in the
 * text (never in code, links or math) whose n is a source becomes a link to it, made with
 * DOM calls (an http(s) URL only).
 */
import DOMPurify from "dompurify";
import MarkdownIt from "markdown-it";
import type { WireSource } from "../protocol/types";
import { highlight } from "./highlight";
import { mathPlugin, type MathEnv } from "./math";

export interface MarkdownLabels {
  copyCode: string;
  copy: string;
  /** The text of a link that stands in for an image. */
  image: (alt: string) => string;
  /** The accessible name of a citation link. */
  cite?: (index: number, title: string) => string;
}

/** A URL a link may open: http(s) only (no javascript:, data:, or relative paths). */
export function isWebUrl(url: string): boolean {
  try {
    const parsed = new URL(url);
    return parsed.protocol === "https:" || parsed.protocol === "http:";
  } catch {
    return false;
  }
}

const md = new MarkdownIt({
  html: false,
  linkify: true,
  breaks: false,
  typographer: false,
  highlight: (code, language) => highlight(code, language, wait) ?? "",
});
mathPlugin(md);

/** The loads the render under way waits on (markdown-it's highlight hook gets no env). */
let waiting: Promise<void>[] = [];
const wait = (loaded: Promise<void>): void => {
  waiting.push(loaded);
};

// Images from a model could load any origin (a tracking pixel, a leak of the conversation in
// the URL). The CSP blocks them anyway; we show them as plain links the user can choose to open.
let imageLabel: (alt: string) => string = (alt) => alt;
md.renderer.rules.image = (tokens, index, options, env, self) => {
  const token = tokens[index]!;
  const alt = self.renderInlineAsText(token.children ?? [], options, env);
  const src = String(token.attrGet("src") ?? "");
  const text = md.utils.escapeHtml(imageLabel(alt || src));
  return `<a href="${md.utils.escapeHtml(src)}" class="md-image-link">${text}</a>`;
};

// markdown-it aligns table cells with style="text-align:…", which a CSP without
// 'unsafe-inline' styles refuses; use classes instead.
md.core.ruler.push("align_with_classes", (state) => {
  for (const token of state.tokens) {
    const style = token.attrGet("style");
    if (typeof style !== "string") continue;
    const match = /text-align:\s*(left|right|center)/.exec(style);
    token.attrs = (token.attrs ?? []).filter(([name]) => name !== "style");
    if (match) token.attrJoin("class", `align-${match[1]}`);
  }
});

const purify = DOMPurify(window);

const ALLOWED_TAGS = [
  "a", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "li",
  "ol", "p", "pre", "s", "span", "strong", "sub", "sup", "table", "tbody", "td", "th", "thead",
  "tr", "ul",
  // The MathML KaTeX writes. `annotation` holds the TeX source as text (never
  // `annotation-xml`, which could carry HTML); `mglyph` (an image) is left out.
  "math", "semantics", "annotation", "menclose", "mfrac", "mi", "mn", "mo", "mover", "mpadded",
  "mphantom", "mroot", "mrow", "ms", "mspace", "msqrt", "mstyle", "msub", "msubsup", "msup",
  "mtable", "mtd", "mtext", "mtr", "munder", "munderover",
];
// MathML presentation attributes (no href, src or style).
const MATHML_ATTR = [
  "accent", "accentunder", "columnalign", "columnlines", "columnspacing", "depth", "display",
  "displaystyle", "encoding", "fence", "height", "largeop", "linethickness", "lspace",
  "mathbackground", "mathcolor", "mathsize", "mathvariant", "maxsize", "minsize",
  "movablelimits", "notation", "rowlines", "rowspacing", "rspace", "scriptlevel", "separator",
  "stretchy", "symmetric", "voffset", "width", "xmlns",
];
const ALLOWED_ATTR = ["href", "title", "class", "start", ...MATHML_ATTR];
// Attributes whose values are never URLs, so ALLOWED_URI_REGEXP (which only `href` needs)
// must not drop values such as display="block" or start="3".
const URI_SAFE_ATTR = ["start", ...MATHML_ATTR];

purify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    if (node.hasAttribute("href")) {
      node.setAttribute("target", "_blank");
      node.setAttribute("rel", "noopener noreferrer nofollow");
    }
  }
});

export interface Rendered {
  fragment: DocumentFragment;
  /** Settles when something this render had to show plainly (a highlighting language, the
   * math renderer) has loaded: render again then. Null when nothing is loading. */
  ready: Promise<void> | null;
}

/** Sanitized DOM for `text` in markdown; safe to insert whatever the text contains. */
export function renderMarkdown(text: string, labels: MarkdownLabels, sources: readonly WireSource[] = []): Rendered {
  imageLabel = labels.image;
  waiting = [];
  const env: MathEnv = { wait };
  const html = md.render(text, env);
  const ready = waiting.length === 0 ? null : Promise.all(waiting).then(() => undefined);
  waiting = [];
  const fragment = purify.sanitize(html, {
    ALLOWED_TAGS,
    ALLOWED_ATTR,
    ADD_URI_SAFE_ATTR: URI_SAFE_ATTR,
    ALLOWED_URI_REGEXP: /^(?:https?:|mailto:|#)/i,
    RETURN_DOM_FRAGMENT: true,
  });
  decorate(fragment, labels);
  if (sources.length > 0) linkCitations(fragment, sources, labels);
  return { fragment, ready };
}

const CITATION = /\[(\d{1,3})\]/g;
/** Where a `[n]` is text to show as it is: code, an existing link, math. */
const NO_CITATIONS = "pre, code, a, math";

/** Each `[n]` in the text whose n is a source becomes a superscript link to that source. */
function linkCitations(fragment: DocumentFragment, sources: readonly WireSource[], labels: MarkdownLabels): void {
  const byIndex = new Map(sources.filter((source) => isWebUrl(source.url)).map((source) => [source.index, source]));
  if (byIndex.size === 0) return;
  const walker = document.createTreeWalker(fragment, NodeFilter.SHOW_TEXT, {
    acceptNode: (node) =>
      node.parentElement?.closest(NO_CITATIONS) ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT,
  });
  const found: Text[] = [];
  for (let node = walker.nextNode(); node !== null; node = walker.nextNode()) {
    if (/\[\d{1,3}\]/.test(node.nodeValue ?? "")) found.push(node as Text);
  }
  for (const node of found) {
    const text = node.nodeValue ?? "";
    const parts: Node[] = [];
    let last = 0;
    for (const match of text.matchAll(CITATION)) {
      const source = byIndex.get(Number(match[1]));
      if (source === undefined) continue;
      parts.push(document.createTextNode(text.slice(last, match.index)));
      parts.push(citation(source, labels));
      last = match.index + match[0].length;
    }
    if (parts.length === 0) continue;
    parts.push(document.createTextNode(text.slice(last)));
    node.replaceWith(...parts);
  }
}

function citation(source: WireSource, labels: MarkdownLabels): HTMLElement {
  const sup = document.createElement("sup");
  sup.className = "cite";
  const link = document.createElement("a");
  link.href = source.url;
  link.target = "_blank";
  link.rel = "noopener noreferrer";
  link.dataset.source = String(source.index);
  link.title = source.title || source.url;
  link.setAttribute("aria-label", labels.cite?.(source.index, source.title || source.url) ?? String(source.index));
  link.textContent = String(source.index);
  sup.append(link);
  return sup;
}

/** Code blocks get a language label and a copy button; tables scroll on narrow screens. */
function decorate(fragment: DocumentFragment, labels: MarkdownLabels): void {
  for (const pre of fragment.querySelectorAll("pre")) {
    const code = pre.querySelector("code");
    const language = /(?:^|\s)language-([\w+#.-]+)/.exec(code?.className ?? "")?.[1] ?? "";
    code?.classList.add("hljs");
    const block = document.createElement("div");
    block.className = "code-block";
    const head = document.createElement("div");
    head.className = "code-head";
    const name = document.createElement("span");
    name.className = "code-lang";
    name.textContent = language;
    const copy = document.createElement("button");
    copy.type = "button";
    copy.className = "code-copy";
    copy.dataset.action = "copy-code";
    copy.setAttribute("aria-label", labels.copyCode);
    copy.textContent = labels.copy;
    head.append(name, copy);
    pre.replaceWith(block);
    block.append(head, pre);
  }
  for (const table of fragment.querySelectorAll("table")) {
    const wrap = document.createElement("div");
    wrap.className = "table-wrap";
    table.replaceWith(wrap);
    wrap.append(table);
  }
}
