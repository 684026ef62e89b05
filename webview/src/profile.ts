/**
 * The profile dashboard of one dataset: the dataset summary at the top (rows by size), then, once
 * profiling is done, the expert-usage charts; compare mode adds a difference heatmap against
 * another saved profile.
 */
import type { DatasetSummary, ToWebviewMessages } from '../../common/protocol';
import type { ProfileComparison } from '../../server/src/profile/types';
import { chartCard } from './chartCard';
import { adaptiveGatingChart, chartsTheme, coActivationHeatmap, differenceHeatmap, entropyChart, expertUsageBars, rowSizeHistogram, usageHeatmap } from './charts';
import { formatBytes, formatExpertCounts } from '../../common/format';
import { button, element } from './dom';
import { startPage, type Rendered, type Update } from './page';
import { vscode } from './vscodeApi';

type ProfileMessage = ToWebviewMessages['profile'];
interface State {
  summary?: DatasetSummary;
  profile?: ProfileMessage;
  comparison?: ProfileComparison;
  layerIndex?: number;
  error?: string;
}

startPage<State>(render, (message, update) => {
  switch (message.type) {
    case 'datasetSummary':
      update({ summary: message.payload, error: undefined });
      return;
    case 'profile':
      update({ profile: message.payload, comparison: undefined, error: undefined });
      return;
    case 'comparison':
      update({ comparison: message.payload });
      return;
    case 'error':
      update({ error: message.payload.message });
      return;
  }
});

function render(state: State, update: Update<State>): Rendered {
  const rendered: Rendered = { nodes: [], charts: [] };
  if (state.error) rendered.nodes.push(element('div', { className: 'error', role: 'alert' }, state.error));
  if (state.summary) summarySection(state.summary, rendered);
  if (state.profile) profileSections(state, update, rendered);
  else if (state.summary && !state.error) rendered.nodes.push(element('p', { className: 'loading' }, 'Profiling experts…'));
  if (rendered.nodes.length === 0) rendered.nodes.push(element('p', { className: 'loading' }, 'Loading…'));
  return rendered;
}

function summarySection(summary: DatasetSummary, rendered: Rendered): void {
  const { card, canvas } = chartCard('summary-chart', 'Rows by size', `${summary.fileName}.rows-by-size.png`, { label: 'Histogram of row sizes in bytes' });
  rendered.charts.push(() => rowSizeHistogram(canvas, summary, chartsTheme()));
  rendered.nodes.push(
    element('h1', { id: 'summary-title' }, summary.fileName),
    element('p', { className: 'facts' },
      `${summary.format.toUpperCase()} · ${summary.rows.toLocaleString()} rows · ${formatBytes(summary.bytes)}` +
        (summary.malformedRows > 0 ? ` · ${summary.malformedRows} malformed (first at line ${summary.firstMalformedLines.join(', ')})` : '')),
    card,
  );
}

function profileSections(state: State, update: Update<State>, rendered: Rendered): void {
  const { profile, profilePath, notes } = state.profile as ProfileMessage;
  const theme = chartsTheme();
  const { layers } = profile;
  const layerIndex = Math.min(state.layerIndex ?? 0, layers.length - 1);
  const picked = layers[layerIndex];
  const stem = profile.dataset.file.split(/[\\/]/).pop() ?? 'profile';

  const layerPicker = element('select', { id: 'layer-picker', title: 'MoE layer' },
    ...layers.map((layer, i) => element('option', { value: String(i), selected: i === layerIndex }, `layer ${layer.layer}`)));
  layerPicker.addEventListener('change', () => update({ layerIndex: Number(layerPicker.value) }));

  const usage = chartCard('usage-heatmap', 'Expert usage (layer × expert)', `${stem}.usage-heatmap.png`, { tall: true });
  const bars = chartCard('usage-bars', 'Expert usage in one layer', `${stem}.usage-layer-${picked.layer}.png`, { controls: [layerPicker] });
  const coActivation = chartCard('co-activation', `Co-activation, layer ${picked.layer}`, `${stem}.co-activation-${picked.layer}.png`, {
    tall: true,
    note: 'Colour: tokens that chose both experts among their top-k. The grey diagonal is each expert with itself (its own token count, in the hover), left out of the colour scale so it does not flatten it.',
  });
  const entropy = chartCard('entropy', 'Routing entropy per layer (÷ ln E)', `${stem}.entropy.png`, {
    note: 'Mean routing entropy divided by ln E, as the CLI prints it: 1 is uniform routing over all experts, 0 one expert always.',
  });
  const gating = chartCard('adaptive-gating', 'Adaptive gating: tokens that need one expert', `${stem}.adaptive-gating.png`);
  rendered.charts.push(
    () => usageHeatmap(usage.canvas, layers, theme),
    () => expertUsageBars(bars.canvas, picked, theme),
    () => coActivationHeatmap(coActivation.canvas, picked, theme),
    () => entropyChart(entropy.canvas, layers, theme),
    () => adaptiveGatingChart(gating.canvas, layers, profile.gatingThresholds, theme),
  );

  rendered.nodes.push(
    element('h2', { className: 'section-title' }, 'Experts on this data'),
    element('p', { className: 'facts', id: 'profile-facts' },
      `${profile.model.architecture} · ${layers.length} MoE layers × ${formatExpertCounts(layers.map((layer) => layer.numExperts))}, top-${profile.model.topK} · ` +
        `${profile.dataset.rows.toLocaleString()} rows · ${profile.dataset.tokens.toLocaleString()} tokens · saved to ${profilePath}`),
    ...notes.map((note) => element('p', { className: 'note' }, note)),
    element('div', { className: 'toolbar' }, button('Compare with another profile…', () => vscode.postMessage({ type: 'compare', payload: {} }))),
    element('div', { className: 'grid' }, usage.card, bars.card, coActivation.card, entropy.card, gating.card),
  );
  if (state.comparison) comparisonSection(state.comparison, stem, rendered);
}

function comparisonSection(comparison: ProfileComparison, stem: string, rendered: Rendered): void {
  const theme = chartsTheme();
  const difference = chartCard('difference-heatmap', `Usage difference: ${comparison.label} − ${comparison.otherLabel}`, `${stem}.difference.png`, { tall: true });
  rendered.charts.push(() => differenceHeatmap(difference.canvas, comparison, theme));
  const divergence = comparison.layers.map((layer) => `layer ${layer.layer}: ${layer.jensenShannon.toFixed(3)}`).join(' · ');
  rendered.nodes.push(
    element('h2', { className: 'section-title' }, 'Compare'),
    element('p', { className: 'facts' }, `Jensen–Shannon divergence of expert usage (bits): ${divergence}`),
    ...comparison.skipped.map((skip) => element('p', { className: 'note' }, `Layer ${skip.layer} not compared: ${skip.reason}`)),
    element('div', { className: 'grid' }, difference.card),
  );
}
