/**
 * Hovers in a plan: on an expert id of `keptExperts`, on a row (or entry) of a matrix, and on the rest
 * of a layer entry. Ids are the original expert ids, so the profile's per-expert statistics apply as is.
 */
import { type Node, findNodeAtOffset, getNodePath } from 'jsonc-parser';
import type { Hover } from 'vscode-languageserver/node';
import type { TextDocument } from 'vscode-languageserver-textdocument';
import { pruningFactorThreshold } from '../../plan';
import { type LayerEntry, type PlanAnalysis, expertsInLayer, readLayerEntry, toRange } from './analysis';
import { type ExpertStatistics, profileStatsForHover } from './profileStats';

export interface HoverProfile {
  /** Parsed profile JSON, any shape. */
  json: unknown;
  /** How the plan names it, for the hover text. */
  label: string;
}

export function planHover(document: TextDocument, analysis: PlanAnalysis, offset: number, profile?: HoverProfile): Hover | null {
  const node = analysis.tree && findNodeAtOffset(analysis.tree, offset);
  if (!node) return null;
  const path = getNodePath(node);
  if (path[0] !== 'layers' || typeof path[1] !== 'number') return null;
  const layerNode = ancestorAtDepth(node, path, 2);
  if (!layerNode || layerNode.type !== 'object') return null;
  const entry = readLayerEntry(layerNode);
  if (entry.layer === undefined) return null;
  const numExperts = expertsInLayer(analysis, entry.layer);
  let markdown: string;
  let target: Node = node;
  if (path[2] === 'keptExperts' && typeof path[3] === 'number' && node.type === 'number') {
    markdown = keptExpertHover(entry, path[3], profile);
  } else if ((path[2] === 'mergeMatrix' || path[2] === 'routerMap') && typeof path[3] === 'number') {
    target = path.length > 4 && node.type === 'number' ? node : ancestorAtDepth(node, path, 4) ?? node;
    markdown = matrixHover(entry, path[2], path[3], typeof path[4] === 'number' && node.type === 'number' ? path[4] : undefined);
  } else {
    target = layerNode;
    markdown = layerHover(entry, numExperts);
  }
  return { contents: { kind: 'markdown', value: markdown }, range: toRange(document, { offset: target.offset, length: target.length }) };
}

/** The node whose path is `path.slice(0, depth)`: walks up from `node`, skipping property nodes. */
function ancestorAtDepth(node: Node, path: (string | number)[], depth: number): Node | undefined {
  let current: Node | undefined = node;
  for (let steps = path.length - depth; steps > 0 && current; steps--) {
    current = current.parent;
    if (current?.type === 'property') current = current.parent;
  }
  return current;
}

function keptExpertHover(entry: LayerEntry, row: number, profile: HoverProfile | undefined): string {
  const expert = entry.keptExperts[row];
  const lines = [`**Expert ${expert}** of layer ${entry.layer} (original id)`, '', `Row ${row} of this layer's matrices.`];
  const merged = entry.mergeMatrix?.[row];
  if (merged) lines.push('', `Weights: ${combination(merged)}`);
  if (profile) {
    const stats = profileStatsForHover(profile.json, entry.layer!, expert);
    lines.push('', stats ? statisticsTable(stats, profile.label) : `No statistics for this expert in \`${profile.label}\`.`);
  }
  return lines.join('\n');
}

function matrixHover(entry: LayerEntry, key: 'mergeMatrix' | 'routerMap', row: number, column: number | undefined): string {
  const expert = entry.keptExperts[row];
  const owner = expert === undefined ? `row ${row} (no kept expert at this position: the matrix has too many rows)` : `kept expert ${expert} (row ${row})`;
  const what = key === 'mergeMatrix' ? 'weights' : 'router logit';
  const lines = [`**${key}** of layer ${entry.layer}: ${owner}`];
  const values = entry[key]?.[row];
  if (values) lines.push('', `${what[0].toUpperCase()}${what.slice(1)} = ${combination(values)}`);
  if (column !== undefined) lines.push('', `Column ${column}: the coefficient of original expert ${column}.`);
  return lines.join('\n');
}

function layerHover(entry: LayerEntry, numExperts: number): string {
  const kept = entry.keptExperts.length;
  const lines = [`**Layer ${entry.layer}**`, ''];
  if (numExperts > 0) {
    const factor = kept > 0 ? numExperts / kept : Infinity;
    const threshold = pruningFactorThreshold(numExperts);
    lines.push(`Keeps ${kept} of ${numExperts} experts: pruning factor E/E′ = ${factor.toFixed(1)}× (UNCURL's threshold for ${numExperts} experts: ${threshold}×${factor > threshold ? ', exceeded' : ''}).`);
    const keptSet = new Set(entry.keptExperts);
    const removed = Array.from({ length: numExperts }, (_, j) => j).filter((j) => !keptSet.has(j));
    if (removed.length > 0) lines.push('', `Removed: ${removed.join(', ')}.`);
  } else {
    lines.push(`Keeps ${kept} experts.`);
  }
  const merges = (entry.mergeMatrix ?? []).flatMap((row, i) => {
    const expert = entry.keptExperts[i];
    const absorbed = row.flatMap((w, j) => (w !== 0 && j !== expert ? [`${j} (${format(w)}${entry.alignedExperts?.includes(j) ? ', neurons aligned' : ''})`] : []));
    return absorbed.length > 0 ? [`- expert ${expert} absorbs ${absorbed.join(', ')}`] : [];
  });
  lines.push('', merges.length > 0 ? ['Merged experts:', ...merges].join('\n') : entry.mergeMatrix ? 'No expert merges another.' : 'Pure pruning: no merge matrix.');
  const extras = [
    entry.topK !== undefined ? `top-k ${entry.topK}` : undefined,
    entry.adaptiveThreshold !== undefined ? `adaptive gating at p1 − p2 ≤ ${entry.adaptiveThreshold}` : undefined,
  ].filter((x) => x !== undefined);
  if (extras.length > 0) lines.push('', `${extras.join('; ')}.`);
  return lines.join('\n');
}

/** "0.75 · expert 1 + 0.25 · expert 4": the nonzero entries of a matrix row. */
function combination(row: number[]): string {
  const terms = row.flatMap((w, j) => (w !== 0 ? [`${format(w)} · expert ${j}`] : []));
  return terms.length > 0 ? terms.join(' + ') : '0 (every entry is zero)';
}

function format(value: number): string {
  return Number.isInteger(value) ? String(value) : value.toPrecision(3).replace(/\.?0+$/, '');
}

function statisticsTable(stats: ExpertStatistics, label: string): string {
  const cell = (value: number | undefined, text: (v: number) => string) => (value === undefined ? '–' : text(value));
  return [
    `From \`${label}\`:`,
    '',
    '| token share | tokens | soft count | REAP |',
    '|---:|---:|---:|---:|',
    `| ${cell(stats.tokenShare, (v) => `${(100 * v).toFixed(1)}%`)} | ${cell(stats.tokenCount, String)} | ${cell(stats.softCount, format)} | ${cell(stats.reap, format)} |`,
  ].join('\n');
}
