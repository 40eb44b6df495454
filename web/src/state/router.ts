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

/** `/?copy=SHARE_ID` (a shared page's "Continue this conversation"): the id, taken out of the
 * URL so a reload does not copy it again. */
export function takeCopyFromUrl(): string | null {
  const params = new URLSearchParams(location.search);
  const id = params.get("copy");
  if (id === null) return null;
  params.delete("copy");
  const rest = params.toString();
  history.replaceState(history.state, "", `${location.pathname}${rest === "" ? "" : `?${rest}`}${location.hash}`);
  return /^[A-Za-z0-9_-]{1,64}$/.test(id) ? id : null;
}
