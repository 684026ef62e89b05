/**
 * Lenses above a plan's `layers`: the three things to do with a plan, and a one-line summary of what it
 * does. The client registers the commands; the plan's URI is their argument.
 */
import { findNodeAtLocation } from 'jsonc-parser';
import type { CodeLens, Range } from 'vscode-languageserver/node';
import type { TextDocument } from 'vscode-languageserver-textdocument';
import { PlanCommands } from '../../../../common/protocol';
import { withCurrentFigures } from '../../plan';
import { type PlanAnalysis, expertsInLayer, toRange } from './analysis';

export function planCodeLenses(document: TextDocument, analysis: PlanAnalysis): CodeLens[] {
  const layersKey = analysis.tree && findNodeAtLocation(analysis.tree, ['layers'])?.parent?.children?.[0];
  const range: Range = layersKey ? toRange(document, { offset: layersKey.offset, length: layersKey.length }) : { start: { line: 0, character: 0 }, end: { line: 0, character: 0 } };
  const lenses: CodeLens[] = [
    { range, command: { title: 'Evaluate', command: PlanCommands.evaluate, arguments: [document.uri] } },
    { range, command: { title: 'Preview', command: PlanCommands.preview, arguments: [document.uri] } },
    { range, command: { title: 'Export', command: PlanCommands.export, arguments: [document.uri] } },
  ];
  const summary = planSummary(analysis);
  // An empty command id makes the lens plain text: it informs, it does nothing when clicked.
  if (summary) lenses.push({ range, command: { title: summary, command: '' } });
  return lenses;
}

/**
 * "4/8 experts kept · 46% fewer parameters · adaptive gating in 2 layers (T 0.10–0.20) · exact in HF":
 * from the layers as they are now when the model is loaded (the same figures the diagnostics check),
 * else from what the plan records about itself.
 */
export function planSummary(analysis: PlanAnalysis): string | undefined {
  const written = analysis.parsed.plan;
  if (!written) return undefined;
  const plan = analysis.spec ? withCurrentFigures(written, analysis.spec) : written;
  const parts: string[] = [];
  const counts = plan.layers.map((l) => l.keptExperts.length);
  if (counts.length > 0) {
    const fewest = Math.min(...counts);
    const most = Math.max(...counts);
    const numExperts = expertsInLayer(analysis, plan.layers[0].layer);
    const kept = fewest === most ? String(fewest) : `${fewest}–${most}`;
    parts.push(`${kept}${numExperts > 0 ? `/${numExperts}` : ''} experts kept`);
  }
  const parameters = plan.predictedSavings?.parameters;
  if (parameters && parameters.before > 0 && parameters.after < parameters.before) {
    parts.push(`${Math.round(100 * (1 - parameters.after / parameters.before))}% fewer parameters`);
  }
  // Adaptive gating saves active parameters per token, by how often the data lets a token skip its
  // second expert: Evaluate measures it, so the lens only says where it applies.
  const gated = plan.layers.flatMap((l) => (l.adaptiveThreshold !== undefined ? [l.adaptiveThreshold] : []));
  if (gated.length > 0) {
    const low = Math.min(...gated);
    const high = Math.max(...gated);
    const range = low === high ? low.toFixed(2) : `${low.toFixed(2)}–${high.toFixed(2)}`;
    parts.push(`adaptive gating in ${gated.length} layer${gated.length === 1 ? '' : 's'} (T ${range})`);
  }
  const recorded = analysis.tree && findNodeAtLocation(analysis.tree, ['exactInHuggingFace', 'exact']);
  const exact = analysis.spec ? plan.exactInHuggingFace.exact : recorded?.type === 'boolean' ? (recorded.value as boolean) : undefined;
  if (exact !== undefined) parts.push(exact ? 'exact in HF' : 'not exact in HF');
  return parts.length > 0 ? parts.join(' · ') : undefined;
}
