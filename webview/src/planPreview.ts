/**
 * The plan preview: what each layer keeps, merges and drops, what it saves, how quality moves,
 * and a sweep of quality against experts kept for several methods side by side.
 */
import type { PreviewPlanResult, SweepResult } from '../../common/protocol';
import { chartCard } from './chartCard';
import type { EepSearchRecord } from '../../server/src/plan/methods/eep';
import { chartsTheme, eepSearchChart, sweepChart } from './charts';
import { formatBytes, isLargeQualityDrop, metricLabel } from '../../common/format';
import { button, element } from './dom';
import { startPage, type Rendered, type Update } from './page';
import { vscode } from './vscodeApi';

interface State {
  preview?: PreviewPlanResult;
  sweep?: SweepResult;
  sweepRunning?: boolean;
  error?: string;
}

startPage<State>(render, (message, update) => {
  if (message.type === 'planPreview') update({ preview: message.payload, error: undefined });
  else if (message.type === 'sweep') update({ sweep: message.payload, sweepRunning: false });
  else if (message.type === 'sweepCancelled') update({ sweepRunning: false });
  else if (message.type === 'error') update({ error: message.payload.message, sweepRunning: false });
});

function render(state: State, update: Update<State>): Rendered {
  const { preview } = state;
  if (!preview) {
    return { nodes: [state.error ? element('div', { className: 'error', role: 'alert' }, state.error) : element('p', { className: 'loading' }, 'Loading…')], charts: [] };
  }
  const { plan } = preview;
  const sweep = chartCard('sweep-chart', 'Quality against experts kept', 'sweep.png', { tall: true, label: 'Quality of each method for each number of experts kept' });
  const search = plan.method.name === 'eep' ? eepSearch(plan.method.parameters.search) : undefined;
  const searchCard = search && chartCard('eep-search-chart', 'EEP search: fitness per generation', 'eep-search.png', { label: 'Fitness of the plan and of the best candidate in each generation of the EEP search' });
  const nodes = [
    ...(state.error ? [element('div', { className: 'error', role: 'alert' }, state.error)] : []),
    element('h1', { id: 'plan-title' }, `${plan.method.name} plan · ${plan.model.architecture}`),
    element('p', { className: 'facts' },
      `${plan.model.folder} · calibrated on ${plan.calibration.datasets.join(', ') || '—'} · seed ${plan.method.seed ?? '—'} · ` +
        (preview.notExactReasons.length ? `not exact in Hugging Face: ${preview.notExactReasons.join(' ')}` : 'exact in Hugging Face')),
    element('div', { className: 'toolbar' },
      button('Evaluate', () => vscode.postMessage({ type: 'evaluatePlan', payload: {} })),
      button('config.json diff', () => vscode.postMessage({ type: 'openConfigDiff', payload: {} })),
      button('Export…', () => vscode.postMessage({ type: 'exportPlan', payload: {} }))),
    savingsTable(preview),
    element('h2', { className: 'section-title' }, 'Experts per layer'),
    legend(),
    layersGrid(preview),
    element('h2', { className: 'section-title' }, 'Quality'),
    evaluationsTable(preview),
    ...(searchCard ? [searchCard.card] : []),
    element('div', { className: 'toolbar' },
      button(state.sweepRunning ? 'Sweeping…' : state.sweep ? 'Run the sweep again' : 'Run sweep (8 → 1 experts, several methods)', () => {
        if (state.sweepRunning) return;
        update({ sweepRunning: true });
        vscode.postMessage({ type: 'runSweep', payload: {} });
      })),
    ...(state.sweep ? [sweep.card] : []),
  ];
  const charts: Rendered['charts'] = [];
  if (search && searchCard) charts.push(() => eepSearchChart(searchCard.canvas, search, chartsTheme()));
  const sweepResult = state.sweep;
  if (sweepResult) charts.push(() => sweepChart(sweep.canvas, sweepResult, chartsTheme()));
  return { nodes, charts };
}

/** The search record of an EEP plan, if the file has a well-formed one (plans are hand-editable). */
function eepSearch(value: unknown): EepSearchRecord | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const record: EepSearchRecord = {};
  for (const phase of ['prune', 'merge'] as const) {
    const entry = (value as Record<string, unknown>)[phase] as { plan?: unknown; candidate?: unknown } | undefined;
    const numbers = (x: unknown): x is number[] => Array.isArray(x) && x.length > 0 && x.every((v) => typeof v === 'number' && Number.isFinite(v));
    if (entry && numbers(entry.plan) && numbers(entry.candidate) && entry.plan.length === entry.candidate.length) record[phase] = { plan: entry.plan, candidate: entry.candidate };
  }
  return record.prune || record.merge ? record : undefined;
}

function savingsTable({ plan }: PreviewPlanResult): HTMLElement {
  const savings = plan.predictedSavings;
  if (!savings) return element('p', { className: 'facts' }, 'No predicted savings in the plan.');
  const row = (label: string, pair: { before: number; after: number }, format: (n: number) => string) =>
    element('tr', {}, element('th', {}, label), element('td', {}, format(pair.before)), element('td', {}, format(pair.after)),
      element('td', { className: 'delta' }, pair.after === pair.before ? 'unchanged' : `${pair.after < pair.before ? '−' : '+'}${Math.abs(100 * (1 - pair.after / pair.before)).toFixed(1)}%`));
  const millions = (n: number) => `${(n / 1e6).toFixed(2)} M`;
  return element('table', { className: 'numbers', id: 'savings' },
    element('thead', {}, element('tr', {}, element('th', {}, ''), element('th', {}, 'before'), element('th', {}, 'after'), element('th', {}, 'change'))),
    element('tbody', {},
      row('parameters', savings.parameters, millions),
      row('memory', savings.bytes, formatBytes),
      row('active parameters per token', savings.activeParametersPerToken, millions)));
}

function legend(): HTMLElement {
  return element('p', { className: 'legend' },
    element('span', { className: 'cell kept' }, 'kept'), ' ',
    element('span', { className: 'cell merged' }, 'merged into →'), ' ',
    element('span', { className: 'cell dropped' }, 'dropped'));
}

function layersGrid({ layers }: PreviewPlanResult): HTMLElement {
  const rows = layers.map((layer) => {
    const target = new Map<number, number>();
    for (const [kept, sources] of Object.entries(layer.mergedInto)) for (const source of sources) target.set(source, Number(kept));
    const kept = new Set(layer.kept);
    const cells = Array.from({ length: layer.numExperts }, (_, expert) => {
      if (kept.has(expert)) return element('span', { className: 'cell kept', title: `expert ${expert}: kept` }, String(expert));
      const into = target.get(expert);
      if (into !== undefined) return element('span', { className: 'cell merged', title: `expert ${expert}: merged into ${into}` }, `${expert}→${into}`);
      return element('span', { className: 'cell dropped', title: `expert ${expert}: dropped` }, String(expert));
    });
    const extras = [layer.topK !== undefined ? `top-${layer.topK}` : '', layer.adaptiveThreshold !== undefined ? `T = ${layer.adaptiveThreshold}` : ''].filter(Boolean).join(' · ');
    return element('div', { className: 'layer-row' },
      element('span', { className: 'layer-label' }, `layer ${layer.layer}`),
      element('span', { className: 'cells' }, ...cells),
      element('span', { className: 'layer-extra' }, `${layer.kept.length}/${layer.numExperts}${extras ? ` · ${extras}` : ''}`));
  });
  return element('div', { className: 'layers', id: 'layers-grid' }, ...rows);
}

function evaluationsTable({ plan }: PreviewPlanResult): HTMLElement {
  if (plan.evaluations.length === 0) return element('p', { className: 'facts' }, 'Not evaluated yet: press Evaluate to measure it against the full model on held-out data.');
  return element('table', { className: 'numbers', id: 'evaluations' },
    element('thead', {}, element('tr', {}, ...['dataset', 'metric', 'full model', 'plan', 'change'].map((h) => element('th', {}, h)))),
    element('tbody', {}, ...plan.evaluations.map((e) => element('tr', isLargeQualityDrop(e.metric, e.value, e.baseline) ? { className: 'quality-drop', title: 'A large quality drop from the full model' } : {},
      element('td', {}, e.dataset), element('td', {}, metricLabel(e.metric)),
      element('td', {}, e.baseline === undefined ? '—' : e.baseline.toFixed(4)),
      element('td', {}, e.value.toFixed(4)),
      element('td', { className: 'delta' }, e.baseline === undefined ? '' : `${e.value - e.baseline >= 0 ? '+' : ''}${(e.value - e.baseline).toFixed(4)}`)))));
}
