/**
 * A minimal observable store: one immutable state object, replaced on every change.
 * Components compare parts of it by identity, so updates must never mutate in place.
 */
export class Store<S extends object> {
  #state: S;
  #listeners = new Set<(state: S) => void>();

  constructor(initial: S) {
    this.#state = initial;
  }

  get state(): S {
    return this.#state;
  }

  /** Replace the state with `change(state)`'s result, merged over the old one. */
  update(change: (state: S) => Partial<S>): void {
    const patch = change(this.#state);
    if (Object.keys(patch).length === 0) return;
    this.#state = { ...this.#state, ...patch };
    for (const listener of this.#listeners) listener(this.#state);
  }

  subscribe(listener: (state: S) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}
