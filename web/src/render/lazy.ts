/**
 * A module fetched on first use (its own chunk), for renderers that must answer at once:
 * `get()` gives the module or null, and null callers show a plain fallback and wait on
 * `pending` to render again.
 */
export class Lazy<T> {
  #load: () => Promise<T>;
  #value: T | null = null;
  #loading: Promise<void> | null = null;
  #failed = false;

  constructor(load: () => Promise<T>) {
    this.#load = load;
  }

  /** The module once loaded; otherwise null, and the first call starts loading it. */
  get(): T | null {
    if (this.#value === null && this.#loading === null) {
      this.#loading = this.#load().then(
        (value) => {
          this.#value = value;
        },
        () => {
          // A chunk that failed to load (a tab older than a deploy, a lost network) stays
          // failed until the page is reloaded: the fallback is shown and nobody waits.
          this.#failed = true;
        },
      );
    }
    return this.#value;
  }

  /** Settles when the load under way ends; null when loaded, failed or never asked for. */
  get pending(): Promise<void> | null {
    return this.#value === null && !this.#failed ? this.#loading : null;
  }
}
