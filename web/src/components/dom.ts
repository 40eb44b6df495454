/** Small browser helpers the components share. */

/** Copy text; falls back to a hidden textarea where the async clipboard is unavailable. */
export async function copyText(text: string): Promise<boolean> {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "visually-hidden";
    document.body.append(area);
    area.select();
    const ok = document.execCommand("copy");
    area.remove();
    return ok;
  }
}

/** Save `text` as a file. */
export function download(name: string, type: string, text: string): void {
  const url = URL.createObjectURL(new Blob([text], { type: `${type};charset=utf-8` }));
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** Size a textarea to its text, up to `maxPx` (CSSOM writes are allowed by the CSP). */
export function autosize(area: HTMLTextAreaElement, maxPx: number): void {
  area.style.height = "auto";
  area.style.height = `${Math.min(area.scrollHeight + 2, maxPx)}px`;
  area.style.overflowY = area.scrollHeight + 2 > maxPx ? "auto" : "hidden";
}
