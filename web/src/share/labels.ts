/** The shared page's own words, in the chat page's languages (the locale is the page's). */
import type { Locale } from "../i18n";

export interface ShareLabels {
  shared: string;
  readOnly: string;
  continueLink: string;
  thought: string;
  sources: string;
  image: string;
  untitled: string;
  notFound: string;
  notFoundHint: string;
  failed: string;
}

const LABELS: Record<Locale, ShareLabels> = {
  en: {
    shared: "Shared conversation",
    readOnly: "A read-only snapshot",
    continueLink: "Continue this conversation",
    thought: "Thought process",
    sources: "Sources",
    image: "Image",
    untitled: "Untitled conversation",
    notFound: "This shared conversation does not exist, or it was revoked or has expired.",
    notFoundHint: "Ask whoever sent you the link for a new one.",
    failed: "The shared conversation could not be loaded. Reload to try again.",
  },
  "zh-CN": {
    shared: "共享的对话",
    readOnly: "只读快照",
    continueLink: "继续这个对话",
    thought: "思考过程",
    sources: "来源",
    image: "图片",
    untitled: "未命名对话",
    notFound: "此共享对话不存在，或已被撤销、已过期。",
    notFoundHint: "请向发送链接的人索取新的链接。",
    failed: "无法加载共享的对话。请刷新重试。",
  },
};

export function shareLabels(locale: Locale): ShareLabels {
  return LABELS[locale];
}
