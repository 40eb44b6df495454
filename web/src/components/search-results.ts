/**
 * <lt-search-results>: the sidebar's full-text search results, best first: each
 * conversation's title, the date of its matching message and a snippet around the match.
 * Snippets and titles are the user's text: only text nodes, the matches in <mark> (never
 * HTML from the server). Opening one goes to its message (on its branch), highlighted.
 */
import { html, nothing, type TemplateResult } from "lit";
import { repeat } from "lit/directives/repeat.js";
import { describeProblem, formatDate, t } from "../i18n";
import type { SearchResult } from "../protocol/types";
import type { ChatController } from "../state/chat";
import type { SearchState } from "../state/types";
import { LightElement } from "./base";

export class SearchResults extends LightElement {
  static override properties = {
    controller: { attribute: false },
    search: { attribute: false },
  };

  declare controller: ChatController;
  declare search: SearchState;

  protected override render(): TemplateResult {
    const search = this.search;
    const results = search.results;
    const problem = search.problem ? describeProblem(search.problem) : null;
    if (problem !== null) {
      return html`<p class="sidebar-empty" role="alert" data-code=${search.problem?.code ?? ""}>${problem.text} ${problem.hint}</p>`;
    }
    if (results === null) return html`<p class="sidebar-empty"><span class="spinner" aria-hidden="true"></span></p>`;
    if (results.length === 0) {
      return html`<p class="sidebar-empty" role="status">${search.loading ? html`<span class="spinner" aria-hidden="true"></span>` : t("search.none", { query: search.query })}</p>`;
    }
    return html`<section class="conv-group search-results" aria-busy=${search.loading ? "true" : "false"}>
      <h2 class="conv-group-title" role="status">${t("search.count", { count: results.length })}</h2>
      <ul role="list" @keydown=${this.#resultKeys}>
        ${repeat(results, (result) => `${result.conversation.id}:${result.message_id ?? ""}`, (result) => this.#item(result))}
      </ul>
    </section>`;
  }

  /** One result: its title, date and snippet. The snippet is the user's text: text nodes
   * only, the matches in <mark>. */
  #item(result: SearchResult): TemplateResult {
    const conversation = result.conversation;
    const at = result.created_at ?? conversation.updated_at;
    const marked = html`${result.snippet.map((piece) => (piece.match ? html`<mark>${piece.text}</mark>` : piece.text))}`;
    // Only the title matched: the snippet is the title, marked.
    const titleOnly = result.message_id === null && result.snippet.length > 0;
    return html`<li class="search-result" data-conversation-id=${conversation.id} data-message-id=${result.message_id ?? ""}>
      <a class="search-link" href="/c/${conversation.id}" @click=${(event: MouseEvent) => this.#openResult(event, result)}>
        <span class="search-head">
          <span class="conv-title">${titleOnly ? marked : conversation.title}</span>
          <time class="search-date" datetime=${new Date(at * 1000).toISOString()}>${formatDate(at)}</time>
        </span>
        ${!titleOnly && result.snippet.length > 0 ? html`<span class="search-snippet">${marked}</span>` : nothing}
        ${conversation.archived ? html`<span class="chip">${t("sidebar.archivedChip")}</span>` : nothing}
      </a>
    </li>`;
  }

  /** ↑ and ↓ move between results (↑ from the first goes back to the search box). */
  #resultKeys = (event: KeyboardEvent): void => {
    if (event.key !== "ArrowDown" && event.key !== "ArrowUp") return;
    const links = [...this.querySelectorAll<HTMLElement>(".search-link")];
    const index = links.indexOf(event.target as HTMLElement);
    if (index < 0) return;
    event.preventDefault();
    const next = event.key === "ArrowDown" ? links[index + 1] : index === 0 ? document.querySelector<HTMLElement>("lt-sidebar .search input") : links[index - 1];
    next?.focus();
  };

  #openResult(event: MouseEvent, result: SearchResult): void {
    if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    void this.controller.openSearchResult(result);
    this.dispatchEvent(new CustomEvent("navigated", { bubbles: true }));
  }
}

customElements.define("lt-search-results", SearchResults);
