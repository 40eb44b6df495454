/**
 * Markdown → a sanitized DocumentFragment, for model answers.
 *
 * Three layers, each from a maintained library: markdown-it with raw HTML off (HTML in the
 * text is shown as text), highlight.js for code, then DOMPurify over the result with an
 * allow-list of the tags markdown-it produces. Nothing here is a hand-written parser or
 * sanitizer; the post-processing only adds our own elements (code block toolbars) with DOM
 * calls, never HTML strings.
 */
import DOMPurify from "dompurify";
import MarkdownIt from "markdown-it";
import { highlight } from "./highlight";

export interface MarkdownLabels {
  copyCode: string;
  copy: string;
  /** The text of a link that stands in for an image. */
  image: (alt: string) => string;
}

const md = new MarkdownIt({
  html: false,
  linkify: true,
  breaks: false,
  typographer: false,
  highlight: (code, language) => highlight(code, language) ?? "",
});

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
];
const ALLOWED_ATTR = ["href", "title", "class", "start"];

purify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    if (node.hasAttribute("href")) {
      node.setAttribute("target", "_blank");
      node.setAttribute("rel", "noopener noreferrer nofollow");
    }
  }
});

/** Sanitized DOM for `text` in markdown; safe to insert whatever the text contains. */
export function renderMarkdown(text: string, labels: MarkdownLabels): DocumentFragment {
  imageLabel = labels.image;
  const html = md.render(text);
  const fragment = purify.sanitize(html, {
    ALLOWED_TAGS,
    ALLOWED_ATTR,
    ALLOWED_URI_REGEXP: /^(?:https?:|mailto:|#)/i,
    RETURN_DOM_FRAGMENT: true,
  });
  decorate(fragment, labels);
  return fragment;
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
