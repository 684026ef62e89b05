/** What every profile chart shares: registration, axes in theme colours, and the colour-bar legend of heatmaps. */
import {
  BarController, BarElement, CategoryScale, Chart, Legend, LinearScale, LineController, LineElement, PointElement, Tooltip,
  type Plugin, type ScaleOptions,
} from 'chart.js';
import { MatrixController, MatrixElement } from 'chartjs-chart-matrix';
import type { ChartsTheme } from './colors';

Chart.register(MatrixController, MatrixElement, BarController, BarElement, LineController, LineElement, PointElement, CategoryScale, LinearScale, Tooltip, Legend);

export { Chart };

export function axis(theme: ChartsTheme, title: string, extra: Partial<ScaleOptions<'linear'>> = {}): ScaleOptions<'linear'> {
  return {
    ...extra,
    ticks: { color: theme.foreground, font: { family: theme.font }, ...extra.ticks },
    grid: { color: theme.grid, ...extra.grid },
    border: { color: theme.grid },
    title: { display: true, text: title, color: theme.foreground, font: { family: theme.font } },
  } as ScaleOptions<'linear'>;
}

export function baseOptions(theme: ChartsTheme) {
  return {
    animation: false as const,
    maintainAspectRatio: false,
    color: theme.foreground,
    font: { family: theme.font },
  };
}

/** Room on the right of a heatmap for its colour bar. */
export const COLOR_BAR_ROOM = 76;

/**
 * A vertical colour bar right of the chart area, labelled with its two ends (and the middle),
 * because a heatmap without a legend cannot be read.
 */
export function colorBar(stops: readonly string[], labels: [string, string, string], theme: ChartsTheme): Plugin {
  return {
    id: 'moeColorBar',
    afterDraw(chart) {
      const { ctx, chartArea } = chart;
      const left = chartArea.right + 12;
      const width = 12;
      const gradient = ctx.createLinearGradient(0, chartArea.bottom, 0, chartArea.top);
      stops.forEach((stop, i) => gradient.addColorStop(i / (stops.length - 1), stop));
      ctx.save();
      ctx.fillStyle = gradient;
      ctx.fillRect(left, chartArea.top, width, chartArea.height);
      ctx.strokeStyle = theme.grid;
      ctx.strokeRect(left, chartArea.top, width, chartArea.height);
      ctx.fillStyle = theme.foreground;
      ctx.font = `11px ${theme.font}`;
      ctx.textBaseline = 'middle';
      const [low, middle, high] = labels;
      ctx.fillText(high, left + width + 4, chartArea.top + 5);
      ctx.fillText(middle, left + width + 4, (chartArea.top + chartArea.bottom) / 2);
      ctx.fillText(low, left + width + 4, chartArea.bottom - 5);
      ctx.restore();
    },
  };
}

export function percent(value: number, digits = 1): string {
  return `${(value * 100).toFixed(digits)}%`;
}
