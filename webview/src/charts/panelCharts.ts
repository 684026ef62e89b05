/** The charts of the panels around a profile: a dataset's rows by size, a plan sweep's quality against experts kept, and an EEP search's course. */
import type { DatasetSummary, SweepResult } from '../../../common/protocol';
import type { EepSearchRecord } from '../../../server/src/plan/methods/eep';
import { formatBytes } from '../../../common/format';
import type { ChartsTheme } from './colors';
import { axis, baseOptions, Chart } from './common';

/** Histogram of row sizes in bytes, one bar per bin the server computed. */
export function rowSizeHistogram(canvas: HTMLCanvasElement, summary: DatasetSummary, theme: ChartsTheme): Chart<'bar'> {
  const { edges, counts } = summary.rowBytesHistogram;
  return new Chart(canvas, {
    type: 'bar',
    data: {
      labels: counts.map((_, i) => `${formatBytes(edges[i])}–${formatBytes(edges[i + 1])}`),
      datasets: [{ label: 'rows', data: counts, backgroundColor: theme.accent }],
    },
    options: {
      ...baseOptions(theme),
      scales: {
        x: axis(theme, 'row size') as never,
        y: axis(theme, 'rows', { beginAtZero: true }),
      },
      plugins: { legend: { display: false } },
    },
  });
}

const SERIES_COLORS = ['--vscode-charts-blue', '--vscode-charts-orange', '--vscode-charts-green', '--vscode-charts-purple', '--vscode-charts-red', '--vscode-charts-yellow'];
const SERIES_FALLBACKS = ['#3794ff', '#d18616', '#388a34', '#652d90', '#e51400', '#bf8803'];

/** The i-th series colour: the theme's chart colours, or fixed ones where the theme has none. */
function seriesColors(): (i: number) => string {
  const style = getComputedStyle(document.documentElement);
  return (i) => style.getPropertyValue(SERIES_COLORS[i % SERIES_COLORS.length]).trim() || SERIES_FALLBACKS[i % SERIES_FALLBACKS.length];
}

/** One line per method over the kept-expert counts, and the full model as a dashed reference. */
export function sweepChart(canvas: HTMLCanvasElement, sweep: SweepResult, theme: ChartsTheme): Chart<'line'> {
  const color = seriesColors();
  return new Chart(canvas, {
    type: 'line',
    data: {
      labels: sweep.counts.map(String),
      datasets: [
        ...sweep.series.map((series, i) => ({ label: series.method, data: series.values, borderColor: color(i), backgroundColor: color(i), tension: 0.2 })),
        { label: 'full model', data: sweep.counts.map(() => sweep.baseline), borderColor: theme.foreground, borderDash: [6, 4], pointRadius: 0, backgroundColor: 'transparent' },
      ],
    },
    options: {
      ...baseOptions(theme),
      scales: {
        x: axis(theme, 'experts kept per layer') as never,
        y: axis(theme, sweep.metric),
      },
      plugins: { legend: { labels: { color: theme.foreground } } },
    },
  });
}

/**
 * EEP's fitness per generation, the prune phase then the merge phase on one axis: the plan the search
 * would return (solid) and its best candidate (dashed), which runs above the plan where a lead was
 * within the calibration noise and so not taken.
 */
export function eepSearchChart(canvas: HTMLCanvasElement, search: EepSearchRecord, theme: ChartsTheme): Chart<'line'> {
  const phases = (['prune', 'merge'] as const).flatMap((phase) => (search[phase] ? [{ phase, ...search[phase]! }] : []));
  const labels = phases.flatMap(({ phase, plan }) => plan.map((_, generation) => `${phase} ${generation}`));
  const color = seriesColors();
  // Each phase's values sit over its own labels; the other phase's positions stay empty.
  let offset = 0;
  const datasets = phases.flatMap(({ phase, plan, candidate }, i) => {
    const pad = (values: number[]) => [...new Array(offset).fill(null), ...values, ...new Array(labels.length - offset - values.length).fill(null)];
    const lines = [
      { label: `${phase}: plan`, data: pad(plan), borderColor: color(i), backgroundColor: color(i), stepped: true as const },
      { label: `${phase}: best candidate`, data: pad(candidate), borderColor: color(i), backgroundColor: 'transparent', borderDash: [4, 4], pointRadius: 0 },
    ];
    offset += plan.length;
    return lines;
  });
  return new Chart(canvas, {
    type: 'line',
    data: { labels, datasets },
    options: {
      ...baseOptions(theme),
      scales: {
        x: axis(theme, 'phase and generation') as never,
        y: axis(theme, 'fitness (higher is better)'),
      },
      plugins: { legend: { labels: { color: theme.foreground } } },
    },
  });
}
