/**
 * Opening an image in the lightbox (`<lt-lightbox>`, placed once by app.ts). Only this stays
 * in the first load: the element itself is fetched the first time an image is opened.
 */
export const OPEN_EVENT = "lt-open-image";

export interface Shown {
  src: string;
  alt: string;
}

/** Show `src` enlarged. */
export async function openImage(src: string, alt: string): Promise<void> {
  await import("./lightbox-view");
  await customElements.whenDefined("lt-lightbox");
  document.dispatchEvent(new CustomEvent<Shown>(OPEN_EVENT, { detail: { src, alt } }));
}
