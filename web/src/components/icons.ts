/** Inline SVG icons (stroke icons in the style of Lucide, drawn for this page). */
import { svg, type SVGTemplateResult } from "lit";

function icon(body: SVGTemplateResult, size = 18): SVGTemplateResult {
  return svg`<svg class="icon" width=${size} height=${size} viewBox="0 0 24 24" fill="none" stroke="currentColor"
    stroke-width="2" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true" focusable="false">${body}</svg>`;
}

export const icons = {
  plus: () => icon(svg`<path d="M12 5v14M5 12h14"/>`),
  search: () => icon(svg`<circle cx="11" cy="11" r="7"/><path d="m20 20-3.5-3.5"/>`, 16),
  x: () => icon(svg`<path d="M18 6 6 18M6 6l12 12"/>`, 16),
  menu: () => icon(svg`<path d="M4 6h16M4 12h16M4 18h16"/>`),
  sidebar: () => icon(svg`<rect x="3" y="4" width="18" height="16" rx="2"/><path d="M9 4v16"/>`),
  more: () => icon(svg`<circle cx="5" cy="12" r="1.5"/><circle cx="12" cy="12" r="1.5"/><circle cx="19" cy="12" r="1.5"/>`, 16),
  send: () => icon(svg`<path d="M12 19V5M5 12l7-7 7 7"/>`),
  stop: () => svg`<svg class="icon" width="14" height="14" viewBox="0 0 24 24" aria-hidden="true" focusable="false"><rect x="4" y="4" width="16" height="16" rx="3" fill="currentColor"/></svg>`,
  copy: () => icon(svg`<rect x="9" y="9" width="12" height="12" rx="2"/><path d="M5 15H4a1 1 0 0 1-1-1V4a1 1 0 0 1 1-1h10a1 1 0 0 1 1 1v1"/>`, 16),
  check: () => icon(svg`<path d="M20 6 9 17l-5-5"/>`, 16),
  edit: () => icon(svg`<path d="M12 20h9"/><path d="M16.5 3.5a2.1 2.1 0 0 1 3 3L7 19l-4 1 1-4Z"/>`, 16),
  regenerate: () => icon(svg`<path d="M21 12a9 9 0 1 1-3-6.7L21 8"/><path d="M21 3v5h-5"/>`, 16),
  settings: () => icon(svg`<path d="M4 21v-7M4 10V3M12 21v-9M12 8V3M20 21v-5M20 12V3M1 14h6M9 8h6M17 16h6"/>`),
  download: () => icon(svg`<path d="M12 3v12M7 10l5 5 5-5M5 21h14"/>`),
  trash: () => icon(svg`<path d="M3 6h18M8 6V4h8v2M19 6l-1 14H6L5 6"/>`, 16),
  rename: () => icon(svg`<path d="M4 20h4L19 9l-4-4L4 16z"/>`, 16),
  alert: () => icon(svg`<path d="M12 9v4M12 17h.01"/><path d="M10.3 3.9 1.8 18a2 2 0 0 0 1.7 3h17a2 2 0 0 0 1.7-3L13.7 3.9a2 2 0 0 0-3.4 0Z"/>`),
  arrowDown: () => icon(svg`<path d="M12 5v14M19 12l-7 7-7-7"/>`),
  sun: () => icon(svg`<circle cx="12" cy="12" r="4"/><path d="M12 2v2M12 20v2M4.9 4.9l1.4 1.4M17.7 17.7l1.4 1.4M2 12h2M20 12h2M4.9 19.1l1.4-1.4M17.7 6.3l1.4-1.4"/>`, 16),
  moon: () => icon(svg`<path d="M21 12.8A9 9 0 1 1 11.2 3a7 7 0 0 0 9.8 9.8Z"/>`, 16),
  monitor: () => icon(svg`<rect x="2" y="3" width="20" height="14" rx="2"/><path d="M8 21h8M12 17v4"/>`, 16),
  globe: () => icon(svg`<circle cx="12" cy="12" r="10"/><path d="M2 12h20M12 2a15 15 0 0 1 0 20M12 2a15 15 0 0 0 0 20"/>`, 16),
  signOut: () => icon(svg`<path d="M9 21H5a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2h4M16 17l5-5-5-5M21 12H9"/>`, 16),
  image: () => icon(svg`<rect x="3" y="3" width="18" height="18" rx="2"/><circle cx="9" cy="9" r="2"/><path d="m21 15-5-5L5 21"/>`),
  bulb: () => icon(svg`<path d="M9 18h6M10 22h4"/><path d="M12 2a7 7 0 0 0-4 12.7c.6.5 1 1.3 1 2.1V17h6v-.2c0-.8.4-1.6 1-2.1A7 7 0 0 0 12 2Z"/>`, 16),
  chevron: () => icon(svg`<path d="m9 6 6 6-6 6"/>`, 14),
  chevronLeft: () => icon(svg`<path d="m15 6-6 6 6 6"/>`, 14),
  pin: () => icon(svg`<path d="M12 17v5M9 10.8V4h6v6.8l3 3.2v2H6v-2z"/>`, 16),
  archive: () => icon(svg`<rect x="3" y="4" width="18" height="4" rx="1"/><path d="M5 8v11a1 1 0 0 0 1 1h12a1 1 0 0 0 1-1V8M10 12h4"/>`, 16),
  restore: () => icon(svg`<path d="M3 12a9 9 0 1 0 3-6.7L3 8"/><path d="M3 3v5h5"/>`, 16),
  share: () => icon(svg`<circle cx="18" cy="5" r="3"/><circle cx="6" cy="12" r="3"/><circle cx="18" cy="19" r="3"/><path d="m8.6 13.5 6.8 4M15.4 6.5l-6.8 4"/>`, 16),
  upload: () => icon(svg`<path d="M12 21V9M7 14l5-5 5 5M5 3h14"/>`, 16),
  select: () => icon(svg`<rect x="3" y="3" width="18" height="18" rx="2"/><path d="m8 12 3 3 5-6"/>`, 16),
  link: () => icon(svg`<path d="M10 13a5 5 0 0 0 7.5.5l3-3a5 5 0 0 0-7-7l-1.7 1.7"/><path d="M14 11a5 5 0 0 0-7.5-.5l-3 3a5 5 0 0 0 7 7l1.7-1.7"/>`, 16),
  user: () => icon(svg`<circle cx="12" cy="8" r="4"/><path d="M4 21a8 8 0 0 1 16 0"/>`, 16),
  shield: () => icon(svg`<path d="M12 22s8-4 8-10V5l-8-3-8 3v7c0 6 8 10 8 10Z"/>`, 16),
  chat: () => icon(svg`<path d="M21 15a2 2 0 0 1-2 2H7l-4 4V5a2 2 0 0 1 2-2h14a2 2 0 0 1 2 2z"/>`, 16),
};
