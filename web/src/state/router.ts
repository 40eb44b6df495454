/** The open conversation lives in the URL as /c/<id>, so a reload or a shared link reopens it. */

const PATH = /^\/c\/([A-Za-z0-9_.:-]{1,128})\/?$/;

export function conversationInUrl(): string | null {
  return PATH.exec(location.pathname)?.[1] ?? null;
}

export function showInUrl(conversationId: string | null, mode: "push" | "replace"): void {
  const path = conversationId === null ? "/" : `/c/${conversationId}`;
  if (location.pathname === path) return;
  if (mode === "push") history.pushState(null, "", path);
  else history.replaceState(null, "", path);
}

/** Back and forward buttons; returns the function that stops listening. */
export function onUrlChange(listener: (conversationId: string | null) => void): () => void {
  const onPopState = (): void => listener(conversationInUrl());
  window.addEventListener("popstate", onPopState);
  return () => window.removeEventListener("popstate", onPopState);
}
