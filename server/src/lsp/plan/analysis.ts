/**
 * One plan document as every editor feature sees it: the parse (problems, ranges, the best-effort
 * plan), the model spec when the model folder could be read, and the syntax tree for positions.
 * Diagnostics, quick fixes, hovers, completions and lenses all read this, so they always agree.
 */
import { jsonNestingDepth, MAX_JSON_DEPTH } from '../../boundedJson';
import { type Node, findNodeAtLocation, getNodeValue, parseTree } from 'jsonc-parser';
import { DiagnosticSeverity, type Diagnostic, type Range } from 'vscode-languageserver/node';
import type { TextDocument } from 'vscode-languageserver-textdocument';
import type { ModelSpec } from '../../checkpoint';
import { errorMessage } from '../../errors';
import { type ParsedPlan, type PlanProblem, type TextRange, parsePlan } from '../../plan';

export const PLAN_FILE_SUFFIX = '.moeplan.json';

export function isPlanUri(uri: string): boolean {
  return uri.endsWith(PLAN_FILE_SUFFIX);
}

/** A plan problem, or one the server adds (the model cannot be loaded, the checker failed, a merge the profile warns of). */
export type EditorProblem = Omit<PlanProblem, 'code'> & { code: PlanProblem['code'] | 'modelUnavailable' | 'internal' | 'heavyMerge' };

export interface PlanAnalysis {
  /** The document version this describes. */
  version: number;
  parsed: ParsedPlan;
  /** Undefined when the plan names no model folder or the folder could not be loaded. */
  spec?: ModelSpec;
  /** The plan's own problems plus the server's. */
  problems: EditorProblem[];
  /** The JSON tree (tolerant of errors); undefined only for an empty document. */
  tree?: Node;
}

/** Parses the plan; a checker bug becomes one problem at the start of the file, never an exception. */
export function analysePlanText(text: string, version: number, spec: ModelSpec | undefined, extraProblems: EditorProblem[] = []): PlanAnalysis {
  const tree = planTree(text);
  let parsed: ParsedPlan;
  try {
    parsed = parsePlan(text, spec);
  } catch (error) {
    const problem: EditorProblem = {
      severity: 'error',
      code: 'internal',
      message: `MoE Studio could not check this plan (${errorMessage(error)}); the server log has the details.`,
      range: { offset: 0, length: 0 },
    };
    return { version, parsed: { problems: [], valid: false, layerRanges: [] }, spec, problems: [problem, ...extraProblems], tree };
  }
  return { version, parsed, spec, problems: [...parsed.problems, ...extraProblems], tree };
}

/**
 * The JSON tree of a plan, tolerant of errors; undefined for an empty document, and for one nested
 * too deep to build a tree of (jsonc-parser recurses; parsePlan reports the nesting as a problem).
 */
export function planTree(text: string): Node | undefined {
  if (jsonNestingDepth(text, MAX_JSON_DEPTH) > MAX_JSON_DEPTH) return undefined;
  return parseTree(text, [], { allowTrailingComma: false, disallowComments: true });
}

export function modelFolderNode(tree: Node | undefined): Node | undefined {
  const node = tree && findNodeAtLocation(tree, ['model', 'folder']);
  return node?.type === 'string' ? node : undefined;
}

export function toRange(document: TextDocument, range: TextRange): Range {
  return { start: document.positionAt(range.offset), end: document.positionAt(range.offset + range.length) };
}

const SEVERITY: Record<PlanProblem['severity'], DiagnosticSeverity> = {
  error: DiagnosticSeverity.Error,
  warning: DiagnosticSeverity.Warning,
  information: DiagnosticSeverity.Information,
};

/** Quick fixes build the same diagnostic to link to, so this is the one conversion. */
export function toDiagnostic(document: TextDocument, problem: EditorProblem): Diagnostic {
  return {
    range: toRange(document, problem.range),
    severity: SEVERITY[problem.severity],
    source: 'MoE Studio',
    code: problem.code,
    message: problem.message,
  };
}

/** E for a decoder layer: the checkpoint's when loaded, else what the plan says; 0 when unknown. */
export function expertsInLayer(analysis: PlanAnalysis, layer: number): number {
  const layerSpec = analysis.spec?.layers[layer];
  if (layerSpec?.kind === 'moe') return layerSpec.moe.numExperts;
  const planned = analysis.parsed.plan?.model.numExperts;
  if (planned) return planned;
  const node = analysis.tree && findNodeAtLocation(analysis.tree, ['model', 'numExperts']);
  return typeof node?.value === 'number' && Number.isInteger(node.value) && node.value > 0 ? node.value : 0;
}

/** A layer entry's fields as written, read defensively (the entry may be half-typed). */
export interface LayerEntry {
  layer?: number;
  keptExperts: number[];
  mergeMatrix?: number[][];
  routerMap?: number[][];
  /** Experts with a `neuronOrder` (renumbered before they are merged). */
  alignedExperts?: number[];
  topK?: number;
  adaptiveThreshold?: number;
}

export function readLayerEntry(node: Node): LayerEntry {
  const value = (key: string): unknown => {
    const child = findNodeAtLocation(node, [key]);
    return child ? getNodeValue(child) : undefined;
  };
  const integer = (x: unknown) => (typeof x === 'number' && Number.isInteger(x) ? x : undefined);
  const numbers = (x: unknown) => (Array.isArray(x) ? x.filter((v): v is number => typeof v === 'number') : []);
  const matrix = (x: unknown) => (Array.isArray(x) ? x.map(numbers) : undefined);
  const threshold = value('adaptiveThreshold');
  const orders = value('neuronOrder');
  return {
    layer: integer(value('layer')),
    keptExperts: numbers(value('keptExperts')),
    mergeMatrix: matrix(value('mergeMatrix')),
    routerMap: matrix(value('routerMap')),
    ...(orders && typeof orders === 'object' && !Array.isArray(orders) ? { alignedExperts: Object.keys(orders).filter((key) => /^\d+$/.test(key)).map(Number) } : {}),
    topK: integer(value('topK')),
    adaptiveThreshold: typeof threshold === 'number' ? threshold : undefined,
  };
}
