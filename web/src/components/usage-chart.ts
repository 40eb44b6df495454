/**
 * <lt-usage-chart>: a bar/line chart of values by day (uPlot on a canvas). One series per
 * name (tokens of one user, of one model, or the total). The canvas is hidden from assistive
 * technology: every view that shows a chart shows its numbers in a table too.
 *
 * Only the account and administration pages import this module (lazily), so uPlot never
 * weighs on the chat's first load.
 */
import { html, type TemplateResult } from "lit";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { formatNumber } from "../i18n";
import { LightElement } from "./base";

export interface ChartSeries {
  label: string;
  /** One value per day of `days` (null: nothing that day). */
  values: (number | null)[];
}

/** Distinct colours that read on both themes. */
const PALETTE = ["#6366f1", "#10b981", "#f59e0b", "#ef4444", "#06b6d4", "#a855f7", "#84cc16", "#ec4899"];
const HEIGHT = 180;

/** A UTC day ("2026-12-04") as uPlot's x value (seconds since the epoch). */
export function dayToSeconds(day: string): number {
  return Date.parse(`${day}T00:00:00Z`) / 1000;
}

export class UsageChart extends LightElement {
  static override properties = {
    days: { attribute: false },
    series: { attribute: false },
    label: { attribute: false },
  };

  /** UTC days, oldest first. */
  declare days: string[];
  declare series: ChartSeries[];
  /** What the chart shows, for its accessible name. */
  declare label: string;
  #plot: uPlot | null = null;
  #resize: ResizeObserver | null = null;

  constructor() {
    super();
    this.days = [];
    this.series = [];
    this.label = "";
  }

  override connectedCallback(): void {
    super.connectedCallback();
    this.#resize = new ResizeObserver(() => this.#plot?.setSize({ width: this.#width(), height: HEIGHT }));
    this.#resize.observe(this);
  }

  override disconnectedCallback(): void {
    super.disconnectedCallback();
    this.#resize?.disconnect();
    this.#plot?.destroy();
    this.#plot = null;
  }

  protected override render(): TemplateResult {
    return html`<figure class="usage-chart" role="img" aria-label=${this.label}><div class="usage-chart-canvas"></div></figure>`;
  }

  /** Drawn again on every change (data, language, theme): a few dozen points cost nothing. */
  protected override updated(): void {
    const target = this.querySelector<HTMLElement>(".usage-chart-canvas");
    if (target === null) return;
    this.#plot?.destroy();
    const style = getComputedStyle(this);
    const text = style.getPropertyValue("--text-muted").trim() || "#6b6f76";
    const grid = style.getPropertyValue("--border").trim() || "#e3e4e8";
    const axis = { stroke: text, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
    const bars = uPlot.paths.bars?.({ size: [0.7, 40] });
    const single = this.series.length === 1;
    const options: uPlot.Options = {
      width: this.#width(),
      height: HEIGHT,
      legend: { show: this.series.length > 1, live: false },
      cursor: { drag: { x: false, y: false } },
      // Half a day either side, so the first and last days' bars show whole.
      scales: { x: { time: true, range: (_plot, min, max) => [min - 43_200, max + 43_200] } },
      axes: [
        { ...axis },
        { ...axis, size: 56, values: (_plot, ticks) => ticks.map((tick) => formatNumber(tick, { notation: "compact" })) },
      ],
      series: [
        {},
        ...this.series.map((item, index) => {
          const color = PALETTE[index % PALETTE.length];
          return {
            label: item.label,
            stroke: color,
            width: single ? 0 : 2,
            fill: single ? color : undefined,
            points: { show: !single },
            ...(single && bars ? { paths: bars } : {}),
            value: (_plot: uPlot, value: number | null) => (value === null ? "–" : formatNumber(value)),
          };
        }),
      ],
    };
    const data: uPlot.AlignedData = [this.days.map(dayToSeconds), ...this.series.map((item) => item.values)];
    this.#plot = new uPlot(options, data, target);
  }

  #width(): number {
    return Math.max(200, Math.floor(this.getBoundingClientRect().width) || 600);
  }
}

customElements.define("lt-usage-chart", UsageChart);

declare global {
  interface HTMLElementTagNameMap {
    "lt-usage-chart": UsageChart;
  }
}
