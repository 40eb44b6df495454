/**
 * The liaotian mark: a speech bubble with three dots, drawn in SVG (the page used to show the
 * character 聊, an empty box where no CJK font is installed). It takes the text colour of its
 * container (white on the accent gradient of `.logo`, `.empty-logo` and `.avatar`); the same
 * drawing on that gradient is `assets/favicon.svg`.
 */
import { svg, type SVGTemplateResult } from "lit";

export function logo(size = 18): SVGTemplateResult {
  return svg`<svg class="logo-mark" width=${size} height=${size} viewBox="0 0 24 24" aria-hidden="true" focusable="false">
    <path fill="currentColor" fill-rule="evenodd" d="M3.5 7a3.5 3.5 0 0 1 3.5-3.5h10a3.5 3.5 0 0 1 3.5 3.5v7a3.5 3.5 0 0 1-3.5 3.5h-5l-4.5 3.8v-3.8h-.5a3.5 3.5 0 0 1-3.5-3.5zM7.25 10.5a1.25 1.25 0 1 0 2.5 0a1.25 1.25 0 1 0-2.5 0zM10.75 10.5a1.25 1.25 0 1 0 2.5 0a1.25 1.25 0 1 0-2.5 0zM14.25 10.5a1.25 1.25 0 1 0 2.5 0a1.25 1.25 0 1 0-2.5 0z"/>
  </svg>`;
}
