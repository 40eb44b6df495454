/**
 * The shared page (/s/ID): a read-only snapshot of a conversation, fetched from
 * /api/shares/ID and shown with the chat page's markdown renderer and sanitiser
 * (<lt-markdown>: markdown-it without raw HTML, DOMPurify, KaTeX, highlight.js).
 *
 * Everything is built with DOM calls and textContent: the only HTML that reaches the page is
 * the sanitiser's output. Nothing is loaded from another origin (source icons are left out);
 * links open in a new tab without a referrer. "Continue this conversation" opens the chat page
 * with ?copy=ID, which makes the snapshot a conversation of the signed-in viewer's own.
 */
import "highlight.js/styles/github.css";
import "highlight.js/styles/github-dark.css";
import "../styles/tokens.css";
import "../styles/base.css";
import "../styles/thread.css";
import "../styles/markdown.css";
import "./share.css";
import "../components/markdown-view";
import { detectLocale, setLocale } from "../i18n";
import { isWebUrl } from "../render/markdown";
import { initTheme } from "../theme";
import { shareLabels } from "./labels";
import type { SharedMessage, SharedSnapshot } from "./types";

initTheme();
const locale = detectLocale();
setLocale(locale);
document.documentElement.lang = locale;
const labels = shareLabels(locale);

/** The share's id: the last part of /s/ID. */
function shareId(): string {
  return decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() ?? "");
}

function element<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className = "",
  text: string | null = null,
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== null) node.textContent = text;
  return node;
}

function markdown(text: string, className: string, message?: SharedMessage): HTMLElement {
  const view = document.createElement("lt-markdown");
  view.className = className;
  if (message?.sources) view.sources = message.sources;
  view.text = text;
  return view;
}

function images(id: string, message: SharedMessage): HTMLElement | null {
  const shown = (message.attachments ?? []).filter((image) => /^[A-Za-z0-9_-]{1,64}$/.test(image.id));
  if (shown.length === 0) return null;
  const list = element("ul", "msg-images share-images");
  for (const image of shown) {
    const img = element("img", "msg-image");
    img.src = `/api/shares/${encodeURIComponent(id)}/attachments/${encodeURIComponent(image.id)}`;
    img.alt = labels.image;
    img.loading = "lazy";
    img.referrerPolicy = "no-referrer";
    if (image.width && image.height) {
      img.width = image.width;
      img.height = image.height;
    }
    const item = element("li");
    item.append(img);
    list.append(item);
  }
  return list;
}

function sources(message: SharedMessage): HTMLElement | null {
  const found = (message.sources ?? []).filter((source) => isWebUrl(source.url));
  if (found.length === 0) return null;
  const section = element("section", "sources");
  section.append(element("h3", "sources-title", labels.sources));
  const list = element("ol", "sources-list");
  for (const source of found) {
    const item = element("li");
    item.value = source.index;
    item.dataset.index = String(source.index);
    const link = element("a", "", source.title || source.url);
    link.href = source.url;
    link.target = "_blank";
    link.rel = "noopener noreferrer nofollow";
    item.append(link);
    const site = source.site || new URL(source.url).hostname;
    if (site) item.append(element("span", "source-site", site));
    list.append(item);
  }
  section.append(list);
  return section;
}

function messageView(id: string, message: SharedMessage): HTMLElement {
  if (message.role === "user") {
    const article = element("article", "msg msg-user");
    article.dataset.role = "user";
    const body = element("div", "share-user");
    const pictures = images(id, message);
    if (pictures) body.append(pictures);
    if (message.content) body.append(element("div", "bubble", message.content));
    article.append(body);
    return article;
  }
  const article = element("article", "msg msg-assistant");
  article.dataset.role = "assistant";
  const body = element("div", "msg-body");
  if (message.reasoning) {
    const thinking = element("details", "share-thinking");
    thinking.append(element("summary", "", labels.thought));
    thinking.append(markdown(message.reasoning, "markdown reasoning"));
    body.append(thinking);
  }
  body.append(markdown(message.content, "markdown", message));
  const cited = sources(message);
  if (cited) body.append(cited);
  article.append(body);
  return article;
}

function show(id: string, snapshot: SharedSnapshot): HTMLElement {
  const title = snapshot.title || labels.untitled;
  document.title = `${title} · liaotian`;
  const page = element("div", "share-page");
  const head = element("header", "share-head");
  head.append(element("p", "share-kicker", `${labels.shared} · ${labels.readOnly}`));
  head.append(element("h1", "share-title", title));
  const when = element("time", "share-date", new Date(snapshot.created_at * 1000).toLocaleString(locale));
  when.dateTime = new Date(snapshot.created_at * 1000).toISOString();
  head.append(when);
  page.append(head);
  const column = element("main", "column share-column");
  for (const message of snapshot.messages) column.append(messageView(id, message));
  page.append(column);
  const foot = element("footer", "share-foot");
  const go = element("a", "btn btn-primary share-continue", labels.continueLink);
  go.href = `/?copy=${encodeURIComponent(id)}`;
  foot.append(go);
  page.append(foot);
  return page;
}

function problem(text: string, hint = ""): HTMLElement {
  const box = element("main", "share-problem");
  box.setAttribute("role", "alert");
  box.append(element("p", "", text));
  if (hint) box.append(element("p", "share-hint", hint));
  return box;
}

async function start(): Promise<void> {
  const root = document.getElementById("root");
  if (!root) return;
  const id = shareId();
  try {
    const response = await fetch(`/api/shares/${encodeURIComponent(id)}`, {
      credentials: "omit",
      cache: "no-store",
      referrerPolicy: "no-referrer",
    });
    if (response.status === 404) {
      root.replaceChildren(problem(labels.notFound, labels.notFoundHint));
      return;
    }
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    root.replaceChildren(show(id, (await response.json()) as SharedSnapshot));
  } catch {
    root.replaceChildren(problem(labels.failed));
  }
}

void start();
