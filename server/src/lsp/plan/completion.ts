/**
 * The model-aware part of completion in a plan (the JSON schema contributes the rest): method names,
 * the parameters of the chosen method, and the expert ids a `keptExperts` array does not hold yet,
 * most used first when the plan's profile is at hand.
 */
import { type Node, findNodeAtLocation, getLocation } from 'jsonc-parser';
import { type CompletionItem, CompletionItemKind, MarkupKind, type Range } from 'vscode-languageserver/node';
import type { TextDocument } from 'vscode-languageserver-textdocument';
import { METHOD_NAMES } from '../../plan';
import { type PlanAnalysis, expertsInLayer, toRange } from './analysis';
import { METHODS, methodInfo } from './methods';
import { profileStatsForHover } from './profileStats';

export function planCompletions(document: TextDocument, analysis: PlanAnalysis, offset: number, profileJson?: unknown): CompletionItem[] {
  const text = document.getText();
  const location = getLocation(text, offset);
  const path = location.path;
  // The token being typed, replaced as a whole so a completion never leaves half a string behind.
  const typed = location.previousNode && offset >= location.previousNode.offset && offset <= location.previousNode.offset + location.previousNode.length
    ? location.previousNode
    : undefined;
  const replace = typed && toRange(document, { offset: typed.offset, length: typed.length });
  if (path[0] === 'method' && path[1] === 'name' && path.length === 2 && !location.isAtPropertyKey) {
    return methodNameItems(replace);
  }
  if (path[0] === 'method' && path[1] === 'parameters' && path.length === 3 && location.isAtPropertyKey) {
    return parameterItems(analysis, replace, typed !== undefined);
  }
  if (path[0] === 'layers' && typeof path[1] === 'number' && path[2] === 'keptExperts' && path.length === 4 && !location.isAtPropertyKey) {
    return expertIdItems(analysis, path[1], typed, replace, profileJson);
  }
  return [];
}

function withText(item: CompletionItem, newText: string, replace: Range | undefined): CompletionItem {
  return replace ? { ...item, textEdit: { range: replace, newText } } : { ...item, insertText: newText };
}

function methodNameItems(replace: Range | undefined): CompletionItem[] {
  return METHOD_NAMES.map((name, i) => withText({
    label: name,
    kind: CompletionItemKind.EnumMember,
    detail: 'plan method',
    documentation: { kind: MarkupKind.Markdown, value: METHODS[name].summary },
    sortText: String(i).padStart(2, '0'),
  }, JSON.stringify(name), replace));
}

function parameterItems(analysis: PlanAnalysis, replace: Range | undefined, editingKey: boolean): CompletionItem[] {
  const plan = analysis.parsed.plan;
  const info = methodInfo(plan?.method.name);
  if (!info) return [];
  const present = new Set(Object.keys(plan?.method.parameters ?? {}));
  const numExperts = expertsInLayer(analysis, firstMoeLayer(analysis));
  // A global budget replaces the per-layer count: once one is there, the other is not offered.
  const exclusive: Record<string, string> = { keepShare: 'targetExperts', targetExperts: 'keepShare' };
  return info.parameters
    .filter((p) => !present.has(p.name) && !present.has(exclusive[p.name] ?? ''))
    .map((p) => {
      const value = JSON.stringify(p.defaultValue(numExperts));
      // A key already being typed may have its value after it; only a fresh key brings a default.
      return withText({
        label: p.name,
        kind: CompletionItemKind.Property,
        detail: `${plan!.method.name} parameter, default ${value}`,
        documentation: { kind: MarkupKind.Markdown, value: p.description },
      }, editingKey ? JSON.stringify(p.name) : `${JSON.stringify(p.name)}: ${value}`, replace);
    });
}

function firstMoeLayer(analysis: PlanAnalysis): number {
  return analysis.spec?.layers.find((l) => l.kind === 'moe')?.index ?? analysis.parsed.plan?.layers[0]?.layer ?? 0;
}

function expertIdItems(analysis: PlanAnalysis, layerPosition: number, typed: Node | undefined, replace: Range | undefined, profileJson: unknown): CompletionItem[] {
  if (!analysis.tree) return [];
  const layerValue = findNodeAtLocation(analysis.tree, ['layers', layerPosition, 'layer'])?.value;
  if (typeof layerValue !== 'number') return [];
  const numExperts = expertsInLayer(analysis, layerValue);
  const elements = findNodeAtLocation(analysis.tree, ['layers', layerPosition, 'keptExperts'])?.children ?? [];
  const used = new Set(elements.filter((e) => e !== typed).map((e) => e.value));
  const items = Array.from({ length: numExperts }, (_, id) => id)
    .filter((id) => !used.has(id))
    .map((id) => ({ id, stats: profileJson === undefined ? undefined : profileStatsForHover(profileJson, layerValue, id) }));
  const share = (x: (typeof items)[number]) => x.stats?.tokenShare ?? -1;
  items.sort((a, b) => share(b) - share(a) || a.id - b.id);
  return items.map(({ id, stats }, rank) => withText({
    label: String(id),
    kind: CompletionItemKind.Value,
    detail: stats?.tokenShare !== undefined ? `expert ${id}, ${(100 * stats.tokenShare).toFixed(1)}% of tokens` : `expert ${id} of layer ${layerValue}`,
    sortText: String(rank).padStart(5, '0'),
  }, String(id), typed?.type === 'number' ? replace : undefined));
}
