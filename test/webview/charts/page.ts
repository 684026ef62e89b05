// The test page: renders every profile chart into a grid of canvases and exposes the Chart
// instances on `window.charts` for the test to inspect.
import type { Chart } from 'chart.js';
import type { LayerStatistics, ProfileComparison } from '../../../server/src/profile/types';
import { adaptiveGatingChart, chartsTheme, coActivationHeatmap, differenceHeatmap, entropyChart, expertUsageBars, usageHeatmap } from '../../../webview/src/charts';

export interface ChartsFixture {
  layers: LayerStatistics[];
  thresholds: number[];
  comparison: ProfileComparison;
}

declare global {
  interface Window {
    charts: Record<string, Chart>;
    renderCharts: (fixture: ChartsFixture) => void;
  }
}

window.renderCharts = (fixture) => {
  for (const chart of Object.values(window.charts ?? {})) chart.destroy();
  const grid = document.getElementById('grid')!;
  grid.replaceChildren();
  const canvas = (id: string, title: string) => {
    const card = document.createElement('section');
    const heading = document.createElement('h2');
    heading.textContent = title;
    const box = document.createElement('div');
    box.className = 'box';
    const node = document.createElement('canvas');
    node.id = id;
    box.append(node);
    card.append(heading, box);
    grid.append(card);
    return node;
  };
  const theme = chartsTheme();
  const busiest = fixture.layers[1];
  window.charts = {
    usage: usageHeatmap(canvas('usage', 'Expert usage (layer × expert)'), fixture.layers, theme),
    bars: expertUsageBars(canvas('bars', `Expert usage, layer ${busiest.layer}`), busiest, theme),
    coActivation: coActivationHeatmap(canvas('coActivation', `Co-activation, layer ${busiest.layer}`), busiest, theme),
    entropy: entropyChart(canvas('entropy', 'Routing entropy per layer'), fixture.layers, theme),
    gating: adaptiveGatingChart(canvas('gating', 'Adaptive gating'), fixture.layers, fixture.thresholds, theme),
    difference: differenceHeatmap(canvas('difference', `Usage difference: ${fixture.comparison.label} − ${fixture.comparison.otherLabel}`), fixture.comparison, theme),
  };
};
