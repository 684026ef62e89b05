/** Bar and line charts of a profile: one layer's expert usage, entropy per layer, adaptive-gating curves. */
import type { TooltipItem } from 'chart.js';
import type { LayerStatistics } from '../../../server/src/profile/types';
import { isDark, sequentialColor, type ChartsTheme } from './colors';
import { axis, baseOptions, Chart, percent } from './common';

/** Usage share of each expert of one layer, with the uniform share (k/E of tokens, 1/E of slots) as a reference line. */
export function expertUsageBars(canvas: HTMLCanvasElement, layer: LayerStatistics, theme: ChartsTheme): Chart<'bar' | 'line'> {
  const experts = layer.usageShare.map((_, e) => String(e));
  return new Chart<'bar' | 'line'>(canvas, {
    type: 'bar',
    data: {
      labels: experts,
      datasets: [
        { type: 'bar', label: 'usage share', data: layer.usageShare, backgroundColor: theme.accent },
        {
          type: 'line', label: 'uniform', data: experts.map(() => 1 / layer.numExperts),
          borderColor: theme.foreground, borderDash: [4, 4], borderWidth: 1, pointRadius: 0,
        },
      ],
    },
    options: {
      ...baseOptions(theme),
      scales: {
        x: axis(theme, `expert (layer ${layer.layer})`, { grid: { display: false } }) as never,
        y: axis(theme, 'share of routed tokens', { beginAtZero: true, ticks: { callback: (value) => percent(Number(value), 0) } }),
      },
      plugins: {
        legend: { labels: { color: theme.foreground, font: { family: theme.font } } },
        tooltip: {
          callbacks: {
            label: (item: TooltipItem<'bar' | 'line'>) => {
              if (item.datasetIndex === 1) return `uniform: ${percent(1 / layer.numExperts)}`;
              const e = item.dataIndex;
              return [
                `share: ${percent(layer.usageShare[e])}`,
                `tokens: ${layer.tokenCounts[e].toLocaleString()}`,
                `mean gate: ${layer.meanGate[e].toFixed(3)}`,
                `REAP: ${layer.reap[e].toPrecision(4)}`,
              ];
            },
          },
        },
      },
    },
  });
}

/**
 * Mean routing entropy per layer, normalised by ln E so layers (and models) compare: 1 means the
 * router spreads tokens evenly, 0 means it is certain.
 */
export function entropyChart(canvas: HTMLCanvasElement, layers: readonly LayerStatistics[], theme: ChartsTheme): Chart<'bar'> {
  const normalised = layers.map((layer) => (layer.numExperts > 1 ? layer.meanEntropy / Math.log(layer.numExperts) : 0));
  return new Chart(canvas, {
    type: 'bar',
    data: {
      labels: layers.map((layer) => String(layer.layer)),
      datasets: [{ label: 'routing entropy', data: normalised, backgroundColor: theme.accent }],
    },
    options: {
      ...baseOptions(theme),
      scales: {
        x: axis(theme, 'layer', { grid: { display: false } }) as never,
        y: axis(theme, 'entropy / ln E', { min: 0, max: 1 }),
      },
      plugins: {
        legend: { display: false },
        tooltip: {
          callbacks: {
            label: (item: TooltipItem<'bar'>) => {
              const layer = layers[item.dataIndex];
              return [`${layer.meanEntropy.toFixed(3)} nats of ${Math.log(layer.numExperts).toFixed(3)}`, `normalised: ${normalised[item.dataIndex].toFixed(3)}`];
            },
          },
        },
      },
    },
  });
}

/**
 * Adaptive gating: for each threshold T, the share of tokens whose top-1 probability beats the
 * top-2 by more than T (they would use one expert). One line per layer, coloured by depth.
 */
export function adaptiveGatingChart(canvas: HTMLCanvasElement, layers: readonly LayerStatistics[], thresholds: readonly number[], theme: ChartsTheme): Chart<'line'> {
  // Lines use the part of the scale that contrasts with the background: no violet on dark, no yellow on light.
  const [from, to] = isDark(theme) ? [0.25, 1] : [0, 0.8];
  const depth = (i: number) => from + (to - from) * (layers.length > 1 ? i / (layers.length - 1) : 0.5);
  return new Chart(canvas, {
    type: 'line',
    data: {
      datasets: layers.map((layer, i) => ({
        label: `layer ${layer.layer}`,
        data: thresholds.map((threshold, t) => ({ x: threshold, y: layer.singleExpertShare[t] })),
        borderColor: sequentialColor(depth(i)),
        backgroundColor: sequentialColor(depth(i)),
        borderWidth: 1.5,
        pointRadius: 0,
        pointHoverRadius: 3,
      })),
    },
    options: {
      ...baseOptions(theme),
      interaction: { mode: 'nearest', intersect: false },
      scales: {
        x: axis(theme, 'threshold T on p1 − p2', { type: 'linear', min: thresholds[0] ?? 0, max: thresholds[thresholds.length - 1] ?? 1 }),
        y: axis(theme, 'tokens using one expert', { min: 0, max: 1, ticks: { callback: (value) => percent(Number(value), 0) } }),
      },
      plugins: {
        // Past a dozen layers a legend is a wall of text; the tooltip names the layer instead.
        legend: { display: layers.length <= 12, position: 'right', labels: { color: theme.foreground, font: { family: theme.font }, boxWidth: 12 } },
        tooltip: {
          callbacks: {
            label: (item: TooltipItem<'line'>) => `${item.dataset.label}: ${percent(item.parsed.y ?? 0)} at T = ${(item.parsed.x ?? 0).toFixed(3)}`,
          },
        },
      },
    },
  });
}
