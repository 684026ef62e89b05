/**
 * Heatmaps of a profile (chartjs-chart-matrix): expert usage over layers × experts, co-activation
 * of one layer's experts, and the difference of usage between two profiles.
 */
import type { ChartConfiguration, TooltipItem } from 'chart.js';
import type { LayerStatistics, ProfileComparison } from '../../../server/src/profile/types';
import { divergingColor, divergingStops, sequentialColor, SEQUENTIAL_STOPS, type ChartsTheme } from './colors';
import { axis, baseOptions, Chart, COLOR_BAR_ROOM, colorBar, percent } from './common';

/** One cell: x = expert, y = row (layer position or expert), v = what the colour shows. */
interface Cell {
  x: number;
  y: number;
  v: number;
  /** Tooltip lines. */
  lines: string[];
  title: string;
}

interface HeatmapSpec {
  cells: Cell[];
  columns: number;
  rows: number;
  xTitle: string;
  yTitle: string;
  rowLabel: (row: number) => string;
  color: (cell: Cell) => string;
  legend: { stops: readonly string[]; labels: [string, string, string] };
  label: string;
}

/** Layers (rows, first layer on top) × experts (columns); colour = usage share relative to the busiest cell. */
export function usageHeatmap(canvas: HTMLCanvasElement, layers: readonly LayerStatistics[], theme: ChartsTheme): Chart<'matrix', Cell[]> {
  const maxShare = Math.max(1e-12, ...layers.flatMap((layer) => layer.usageShare));
  const cells = layers.flatMap((layer, row) =>
    layer.usageShare.map((share, expert) => ({
      x: expert,
      y: row,
      v: share,
      title: `layer ${layer.layer} · expert ${expert}`,
      lines: [
        `tokens: ${layer.tokenCounts[expert].toLocaleString()}`,
        `share: ${percent(share)} (uniform ${percent(1 / layer.numExperts)})`,
        `REAP: ${layer.reap[expert].toPrecision(4)}`,
      ],
    })),
  );
  return heatmap(canvas, theme, {
    cells,
    ...layerByExpertGrid(layers),
    color: (cell) => sequentialColor(cell.v / maxShare),
    legend: { stops: SEQUENTIAL_STOPS, labels: ['0%', percent(maxShare / 2), percent(maxShare)] },
    label: 'usage share',
  });
}

/**
 * E × E co-activation of one layer: how many tokens had both experts in their top-k. Off-diagonal
 * cells are coloured relative to the largest off-diagonal count; the diagonal (each expert's own
 * token count, much larger) is drawn in the grid colour so it does not flatten the scale.
 */
export function coActivationHeatmap(canvas: HTMLCanvasElement, layer: LayerStatistics, theme: ChartsTheme): Chart<'matrix', Cell[]> {
  const E = layer.numExperts;
  const offDiagonal = layer.coActivation.flatMap((row, i) => row.filter((_, j) => j !== i));
  const max = Math.max(1, ...offDiagonal);
  const cells = layer.coActivation.flatMap((row, i) =>
    row.map((count, j) => ({
      x: j,
      y: i,
      v: i === j ? Number.NaN : count,
      title: i === j ? `expert ${i}` : `experts ${i} & ${j}`,
      lines: i === j
        ? [`tokens: ${count.toLocaleString()}`]
        : [`together: ${count.toLocaleString()} tokens`, `${percent(layer.tokenCounts[i] > 0 ? count / layer.tokenCounts[i] : 0)} of expert ${i}'s tokens`],
    })),
  );
  return heatmap(canvas, theme, {
    cells,
    columns: E,
    rows: E,
    xTitle: 'expert',
    yTitle: 'expert',
    rowLabel: (row) => String(row),
    color: (cell) => (Number.isNaN(cell.v) ? theme.grid : sequentialColor(cell.v / max)),
    // The bar's middle names the unit: its text room is too narrow for "12,345 tokens".
    legend: { stops: SEQUENTIAL_STOPS, labels: ['0', 'tokens', String(max)] },
    label: `co-activation, layer ${layer.layer}`,
  });
}

/** "This profile minus the other" per layer × expert: diverging colours centred at 0, symmetric. */
export function differenceHeatmap(canvas: HTMLCanvasElement, comparison: ProfileComparison, theme: ChartsTheme): Chart<'matrix', Cell[]> {
  const layers = comparison.layers;
  const extent = Math.max(1e-12, ...layers.flatMap((layer) => layer.shareDifference.map(Math.abs)));
  const signed = (value: number) => `${value > 0 ? '+' : value < 0 ? '−' : '±'}${percent(Math.abs(value))}`;
  const cells = layers.flatMap((layer, row) =>
    layer.shareDifference.map((difference, expert) => ({
      x: expert,
      y: row,
      v: difference,
      title: `layer ${layer.layer} · expert ${expert}`,
      lines: [`${comparison.label} − ${comparison.otherLabel}: ${signed(difference)} share`, `layer JS divergence: ${layer.jensenShannon.toFixed(4)}`],
    })),
  );
  return heatmap(canvas, theme, {
    cells,
    ...layerByExpertGrid(layers),
    color: (cell) => divergingColor(cell.v / extent, theme),
    legend: { stops: divergingStops(theme), labels: [signed(-extent), '0', signed(extent)] },
    label: `${comparison.label} − ${comparison.otherLabel}`,
  });
}

function heatmap(canvas: HTMLCanvasElement, theme: ChartsTheme, spec: HeatmapSpec): Chart<'matrix', Cell[]> {
  const gap = spec.columns > 48 || spec.rows > 48 ? 0 : 1;
  const config: ChartConfiguration<'matrix', Cell[]> = {
    type: 'matrix',
    data: {
      datasets: [{
        label: spec.label,
        data: spec.cells,
        backgroundColor: (context) => spec.color(context.raw as Cell),
        borderWidth: 0,
        width: ({ chart }) => Math.max(1, (chart.chartArea?.width ?? 0) / Math.max(1, spec.columns) - gap),
        height: ({ chart }) => Math.max(1, (chart.chartArea?.height ?? 0) / Math.max(1, spec.rows) - gap),
      }],
    },
    options: {
      ...baseOptions(theme),
      layout: { padding: { right: COLOR_BAR_ROOM } },
      scales: {
        x: axis(theme, spec.xTitle, {
          type: 'linear', min: -0.5, max: spec.columns - 0.5, offset: false,
          afterBuildTicks: (scale) => (scale.ticks = cellTicks(spec.columns)),
          ticks: { autoSkip: true, callback: (value) => String(value) },
          grid: { display: false },
        }),
        y: axis(theme, spec.yTitle, {
          type: 'linear', min: -0.5, max: spec.rows - 0.5, reverse: true, offset: false,
          afterBuildTicks: (scale) => (scale.ticks = cellTicks(spec.rows)),
          ticks: { autoSkip: true, callback: (value) => spec.rowLabel(Number(value)) },
          grid: { display: false },
        }),
      },
      plugins: {
        legend: { display: false },
        tooltip: {
          callbacks: {
            title: (items: TooltipItem<'matrix'>[]) => (items[0]?.raw as Cell | undefined)?.title ?? '',
            label: (item: TooltipItem<'matrix'>) => (item.raw as Cell).lines,
          },
        },
      },
    },
    plugins: [colorBar(spec.legend.stops, spec.legend.labels, theme)],
  };
  return new Chart(canvas, config);
}

/** One tick at the centre of each cell (a linear scale from -0.5 would put them on the edges). */
function cellTicks(count: number): { value: number }[] {
  return Array.from({ length: count }, (_, value) => ({ value }));
}

/** Rows are MoE layers, columns experts (as many as the widest layer has). */
function layerByExpertGrid(layers: readonly { layer: number; numExperts: number }[]) {
  return {
    columns: Math.max(0, ...layers.map((layer) => layer.numExperts)),
    rows: layers.length,
    xTitle: 'expert',
    yTitle: 'layer',
    rowLabel: (row: number) => String(layers[row]?.layer ?? ''),
  };
}
