import { findNodeAtOffset, type Node } from 'jsonc-parser';
import { type CodeAction, CodeActionKind, type Range, type TextEdit } from 'vscode-languageserver/node';
import type { TextDocument } from 'vscode-languageserver-textdocument';
import { type EditorProblem, type PlanAnalysis, expertsInLayer, toDiagnostic, toRange } from './analysis';

/** How many replacement ids an unknown expert is offered (the lowest ids the layer does not keep yet). */
const REPLACEMENTS_OFFERED = 3;

/** The parser's fixes for the problems that touch `range`, each linked to its diagnostic, and the editor's own for unknown experts. */
export function planCodeActions(document: TextDocument, analysis: PlanAnalysis, range: Range): CodeAction[] {
  const start = document.offsetAt(range.start);
  const end = document.offsetAt(range.end);
  return analysis.problems.flatMap((problem): CodeAction[] => {
    if (problem.range.offset > end || problem.range.offset + problem.range.length < start) return [];
    const diagnostics = [toDiagnostic(document, problem)];
    const action = (title: string, edits: TextEdit[], isPreferred: boolean): CodeAction => ({ title, kind: CodeActionKind.QuickFix, diagnostics, isPreferred, edit: { changes: { [document.uri]: edits } } });
    const { fix } = problem;
    if (fix) return [action(fix.title, fix.edits.map((edit) => ({ range: toRange(document, edit), newText: edit.newText })), true)];
    if (problem.code === 'unknownExpert') return unknownExpertFixes(document, analysis, problem).map(({ title, edits, preferred }) => action(title, edits, preferred));
    return [];
  });
}

/**
 * "expert 9 does not exist": replace it with an expert the layer has and does not keep yet, or
 * remove it (with its rows of the layer's mergeMatrix and routerMap, which follow keptExperts).
 */
function unknownExpertFixes(document: TextDocument, analysis: PlanAnalysis, problem: EditorProblem): { title: string; edits: TextEdit[]; preferred: boolean }[] {
  const element = analysis.tree && findNodeAtOffset(analysis.tree, problem.range.offset);
  const kept = element?.parent;
  const layerNode = kept?.parent?.parent;
  if (!element || typeof element.value !== 'number' || kept?.type !== 'array' || layerNode?.type !== 'object') return [];
  const elements = kept.children ?? [];
  const index = elements.indexOf(element);
  const layerValue = propertyValue(layerNode, 'layer');
  const numExperts = typeof layerValue === 'number' ? expertsInLayer(analysis, layerValue) : 0;
  const keptIds = new Set(elements.map((e) => e.value));
  const unused = Array.from({ length: numExperts }, (_, id) => id).filter((id) => !keptIds.has(id)).slice(0, REPLACEMENTS_OFFERED);
  const replace = unused.map((id) => ({
    title: `Replace expert ${element.value} with expert ${id}`,
    edits: [{ range: toRange(document, element), newText: String(id) }],
    preferred: false,
  }));
  const matrixRows = (['mergeMatrix', 'routerMap'] as const).flatMap((key) => {
    const rows = propertyNode(layerNode, key)?.children;
    return rows && rows.length === elements.length ? [removeElement(document, rows, index)] : [];
  });
  const remove = elements.length > 1 ? [{ title: `Remove expert ${element.value}`, edits: [removeElement(document, elements, index), ...matrixRows], preferred: true }] : [];
  return [...remove, ...replace];
}

function propertyNode(object: Node, key: string): Node | undefined {
  return object.children?.find((p) => p.children?.[0]?.value === key)?.children?.[1];
}

function propertyValue(object: Node, key: string): unknown {
  return propertyNode(object, key)?.value;
}

/** Deletes element i of a JSON array with the comma before it (i ≥ 1) or after it. */
function removeElement(document: TextDocument, elements: Node[], i: number): TextEdit {
  const element = elements[i];
  if (i > 0) {
    const previousEnd = elements[i - 1].offset + elements[i - 1].length;
    return { range: toRange(document, { offset: previousEnd, length: element.offset + element.length - previousEnd }), newText: '' };
  }
  const next = elements[1];
  return { range: toRange(document, { offset: element.offset, length: next ? next.offset - element.offset : element.length }), newText: '' };
}
