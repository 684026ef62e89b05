/**
 * The `*.moeplan.json` file: the plan a person reads, edits, diffs and commits. This module owns its
 * types, the one parser (tolerant, with source ranges for every problem so the language server can put
 * a diagnostic on the exact token) and the formatter (one matrix row per line, so diffs stay readable).
 * docs/plan-format.md describes the format; schemas/moeplan.schema.json is its JSON Schema.
 */
import { jsonNestingDepth, MAX_JSON_DEPTH } from '../boundedJson';
import { type Node, type ParseError, findNodeAtLocation, parseTree, printParseErrorCode } from 'jsonc-parser';
import type { ModelSpec } from '../checkpoint/modelSpec';
import { analyseHfExactness } from './hfExactness';
import { type NeuronOrder, neuronOrderRefusal, permutationProblem } from '../runtime/neuronOrder';

export const PLAN_SCHEMA = 'moe-studio.plan';
export const PLAN_VERSION = 1;

export const METHOD_NAMES = ['manual', 'random', 'frequency', 'softCount', 'reap', 'naee', 'uncurl', 'eep', 'adaptiveGating'] as const;
export type MethodName = (typeof METHOD_NAMES)[number];

export interface PlanModel {
  /** The checkpoint folder, relative to the workspace folder. */
  folder: string;
  architecture: string;
  /** Routed experts per MoE layer in the original model (E). */
  numExperts: number;
  /** Decoder layers in the original model. */
  numLayers: number;
  /** Experts per token in the original model. */
  topK?: number;
  /** Identifies the exact weights the plan was made for (e.g. a hash of the safetensors headers). */
  fingerprint?: string;
}

export interface PlanLayer {
  /** Decoder layer index; must be an MoE layer. */
  layer: number;
  /** Original expert ids of the E' experts this layer keeps; row i of the matrices belongs to keptExperts[i]. */
  keptExperts: number[];
  /** W_EM (E' × E): kept expert i's weights = Σ_j mergeMatrix[i][j] · original expert j's weights. */
  mergeMatrix?: number[][];
  /** W_RM (E' × E): kept expert i's router logit = Σ_j routerMap[i][j] · original logit j. */
  routerMap?: number[][];
  /**
   * Per kept expert (row i for keptExperts[i]): its output, i.e. its down projection, times this factor
   * (output compensation). Exact in a Hugging Face export: the exported down_proj is scaled.
   */
  outputScale?: number[];
  /**
   * Per original expert id (the object's keys): the order of its intermediate neurons where a mergeMatrix
   * row combines it with other experts, position k holding its original neuron neuronOrder[j][k]
   * (UNCURL's alignment; runtime/neuronOrder.ts). Renumbering leaves an expert's function unchanged.
   */
  neuronOrder?: NeuronOrder;
  /** Experts per token in this layer; the model's top-k when absent. */
  topK?: number;
  /** Adaptive gating: a token keeps the experts after its first only when p1 - p2 <= adaptiveThreshold. */
  adaptiveThreshold?: number;
}

export interface SavingsPair {
  before: number;
  after: number;
}

export interface PredictedSavings {
  /** Data type the byte counts are computed in (the checkpoint's). */
  dtype: string;
  parameters: SavingsPair;
  bytes: SavingsPair;
  /** All parameters except the routed experts a token does not use (the convention of Mixtral's "12.9B active"). */
  activeParametersPerToken: SavingsPair;
}

export interface PlanEvaluation {
  dataset: string;
  metric: string;
  value: number;
  /** The same metric for the unpruned model. */
  baseline?: number;
  samples?: number;
  /** ISO 8601 date of the evaluation. */
  date?: string;
}

export interface HfExactness {
  exact: boolean;
  /** Why a stock Hugging Face config cannot express the plan; empty when it can. */
  reasons: string[];
  /** Present when layers keep different expert counts: the export is exact, but only MoE Studio's loader opens it. */
  stockLoaders?: string;
  /** Present when the model's router breaks an assumption some methods make (DeepSeek V3's sigmoid scores). */
  routingNote?: string;
}

export interface MoePlan {
  schema: typeof PLAN_SCHEMA;
  version: typeof PLAN_VERSION;
  model: PlanModel;
  calibration: { datasets: string[]; profile?: string };
  method: { name: string; parameters: Record<string, unknown>; seed: number };
  /** Every MoE layer keeps the same number of experts. */
  uniformExpertCount: boolean;
  exactInHuggingFace: HfExactness;
  layers: PlanLayer[];
  predictedSavings?: PredictedSavings;
  evaluations: PlanEvaluation[];
}

/** A span of the plan's text, in UTF-16 offsets (what `TextDocument.positionAt` takes). */
export interface TextRange {
  offset: number;
  length: number;
}

export interface TextEdit extends TextRange {
  newText: string;
}

export type PlanProblemCode =
  | 'syntax'
  | 'schema'
  | 'unknownExpert'
  | 'duplicateExpert'
  | 'matrixShape'
  | 'modelMismatch'
  | 'emptyLayer'
  | 'notMoeLayer'
  | 'duplicateLayer'
  | 'topK'
  | 'pruningFactor'
  | 'claimMismatch'
  | 'neuronOrder';

export interface PlanProblem {
  severity: 'error' | 'warning' | 'information';
  code: PlanProblemCode;
  message: string;
  range: TextRange;
  /** A quick fix, where the fix is obvious: edits to apply together. */
  fix?: { title: string; edits: TextEdit[] };
}

export interface ParsedPlan {
  /** Best effort: present whenever the text is a JSON object, even with problems (for hovers and lenses). */
  plan?: MoePlan;
  problems: PlanProblem[];
  /** No error-severity problem: the plan can be converted and run. */
  valid: boolean;
  /** Where each layer entry sits, for code lenses and hovers. */
  layerRanges: { layer: number; range: TextRange }[];
}

/**
 * UNCURL (Sarkar et al., 2024, "Revisiting SMoE Language Models by Evaluating Inefficiencies with Task
 * Specific Expert Pruning") finds quality collapses once E/E' passes about 4 for 8- and 32-expert
 * models and about 2 for 64 or more experts. Counts in between take the smaller-model bound.
 */
export function pruningFactorThreshold(numExperts: number): number {
  return numExperts >= 64 ? 2 : 4;
}

/** Parses a plan and reports every problem at its token; `spec` adds the checks against the model. */
export function parsePlan(text: string, spec?: ModelSpec): ParsedPlan {
  const problems: PlanProblem[] = [];
  // jsonc-parser builds the tree recursively: a 20,000-deep value would overflow the stack.
  if (jsonNestingDepth(text, MAX_JSON_DEPTH) > MAX_JSON_DEPTH) {
    problems.push({ severity: 'error', code: 'syntax', message: `JSON: values are nested more than ${MAX_JSON_DEPTH} levels deep`, range: { offset: 0, length: 0 } });
    return { problems, valid: false, layerRanges: [] };
  }
  const errors: ParseError[] = [];
  const root = parseTree(text, errors, { allowTrailingComma: false, disallowComments: true });
  for (const error of errors) {
    problems.push({ severity: 'error', code: 'syntax', message: `JSON: ${printParseErrorCode(error.error)}`, range: { offset: error.offset, length: error.length } });
  }
  if (!root || root.type !== 'object') {
    if (root) problems.push(schemaProblem(root, 'a plan is a JSON object'));
    return { problems, valid: false, layerRanges: [] };
  }
  const reader = new PlanReader(problems);
  const plan = reader.plan(root);
  const layerRanges = checkPlan(plan, root, problems, spec);
  return { plan, problems, valid: !problems.some((p) => p.severity === 'error'), layerRanges };
}

function rangeOf(node: Node): TextRange {
  return { offset: node.offset, length: node.length };
}

function schemaProblem(node: Node, message: string): PlanProblem {
  return { severity: 'error', code: 'schema', message, range: rangeOf(node) };
}

function property(object: Node, key: string): Node | undefined {
  return findNodeAtLocation(object, [key]);
}

/** Reads the tree into typed values, reporting wrong types and missing keys where they are. */
class PlanReader {
  constructor(private readonly problems: PlanProblem[]) {}

  plan(root: Node): MoePlan {
    const schema = this.required(root, 'schema', (n) => this.string(n));
    if (schema !== undefined && schema !== PLAN_SCHEMA) {
      const node = property(root, 'schema')!;
      this.problems.push({
        ...schemaProblem(node, `schema must be "${PLAN_SCHEMA}"`),
        fix: { title: `Set schema to "${PLAN_SCHEMA}"`, edits: [{ ...rangeOf(node), newText: JSON.stringify(PLAN_SCHEMA) }] },
      });
    }
    const version = this.required(root, 'version', (n) => this.number(n));
    if (version !== undefined && version !== PLAN_VERSION) {
      this.problems.push(schemaProblem(property(root, 'version')!, `version ${version} is not supported (this MoE Studio reads version ${PLAN_VERSION})`));
    }
    const model = this.required(root, 'model', (n) => this.object(n, (o) => ({
      folder: this.required(o, 'folder', (v) => this.string(v)) ?? '',
      architecture: this.required(o, 'architecture', (v) => this.string(v)) ?? '',
      numExperts: this.required(o, 'numExperts', (v) => this.integer(v, 1)) ?? 0,
      numLayers: this.required(o, 'numLayers', (v) => this.integer(v, 1)) ?? 0,
      topK: this.optional(o, 'topK', (v) => this.integer(v, 1)),
      fingerprint: this.optional(o, 'fingerprint', (v) => this.string(v)),
    })));
    const calibration = this.required(root, 'calibration', (n) => this.object(n, (o) => ({
      datasets: this.required(o, 'datasets', (v) => this.array(v, (d) => this.string(d))) ?? [],
      profile: this.optional(o, 'profile', (v) => this.string(v)),
    })));
    const method = this.required(root, 'method', (n) => this.object(n, (o) => ({
      name: this.required(o, 'name', (v) => this.string(v)) ?? '',
      parameters: this.required(o, 'parameters', (v) => this.object(v, nodeValue)) ?? {},
      seed: this.required(o, 'seed', (v) => this.integer(v, 0)) ?? 0,
    })));
    const exactness = this.required(root, 'exactInHuggingFace', (n) => this.object(n, (o) => ({
      exact: this.required(o, 'exact', (v) => this.boolean(v)) ?? false,
      reasons: this.optional(o, 'reasons', (v) => this.array(v, (r) => this.string(r))) ?? [],
      stockLoaders: this.optional(o, 'stockLoaders', (v) => this.string(v)),
      routingNote: this.optional(o, 'routingNote', (v) => this.string(v)),
    })));
    return {
      schema: PLAN_SCHEMA,
      version: PLAN_VERSION,
      model: model ?? { folder: '', architecture: '', numExperts: 0, numLayers: 0 },
      calibration: calibration ?? { datasets: [] },
      method: method ?? { name: '', parameters: {}, seed: 0 },
      uniformExpertCount: this.required(root, 'uniformExpertCount', (n) => this.boolean(n)) ?? false,
      exactInHuggingFace: exactness ?? { exact: false, reasons: [] },
      layers: this.required(root, 'layers', (n) => this.array(n, (l) => this.layer(l))) ?? [],
      predictedSavings: this.optional(root, 'predictedSavings', (n) => this.object(n, (o) => {
        const pair = (key: string) => this.required(o, key, (v) => this.object(v, (p) => ({
          before: this.required(p, 'before', (x) => this.number(x)) ?? 0,
          after: this.required(p, 'after', (x) => this.number(x)) ?? 0,
        }))) ?? { before: 0, after: 0 };
        return {
          dtype: this.required(o, 'dtype', (v) => this.string(v)) ?? '',
          parameters: pair('parameters'),
          bytes: pair('bytes'),
          activeParametersPerToken: pair('activeParametersPerToken'),
        };
      })),
      evaluations: this.optional(root, 'evaluations', (n) => this.array(n, (e) => this.object(e, (o) => ({
        dataset: this.required(o, 'dataset', (v) => this.string(v)) ?? '',
        metric: this.required(o, 'metric', (v) => this.string(v)) ?? '',
        value: this.required(o, 'value', (v) => this.number(v)) ?? NaN,
        baseline: this.optional(o, 'baseline', (v) => this.number(v)),
        samples: this.optional(o, 'samples', (v) => this.integer(v, 0)),
        date: this.optional(o, 'date', (v) => this.string(v)),
      })))) ?? [],
    };
  }

  private layer(node: Node): PlanLayer | undefined {
    return this.object(node, (o) => {
      const matrix = (v: Node) => this.array(v, (row) => this.array(row, (x) => this.number(x)));
      return {
        layer: this.required(o, 'layer', (v) => this.integer(v, 0)) ?? -1,
        keptExperts: this.required(o, 'keptExperts', (v) => this.array(v, (x) => this.integer(x, 0))) ?? [],
        mergeMatrix: this.optional(o, 'mergeMatrix', matrix),
        routerMap: this.optional(o, 'routerMap', matrix),
        outputScale: this.optional(o, 'outputScale', (v) => this.array(v, (x) => this.number(x))),
        neuronOrder: this.optional(o, 'neuronOrder', (v) => this.object(v, (orders) => Object.fromEntries((orders.children ?? []).flatMap((p) => {
          const order = p.children?.[1] && this.array(p.children[1], (x) => this.integer(x, 0));
          return order ? [[p.children![0].value as string, order]] : [];
        })))),
        topK: this.optional(o, 'topK', (v) => this.integer(v, 1)),
        adaptiveThreshold: this.optional(o, 'adaptiveThreshold', (v) => this.number(v)),
      };
    });
  }

  private required<T>(object: Node, key: string, read: (node: Node) => T | undefined): T | undefined {
    const node = property(object, key);
    if (!node) {
      this.problems.push(schemaProblem(object.parent?.type === 'property' ? object.parent.children![0] : object, `missing required property "${key}"`));
      return undefined;
    }
    return read(node);
  }

  private optional<T>(object: Node, key: string, read: (node: Node) => T | undefined): T | undefined {
    const node = property(object, key);
    return node && read(node);
  }

  private object<T>(node: Node, read: (node: Node) => T): T | undefined {
    if (node.type !== 'object') return this.wrongType(node, 'an object');
    return read(node);
  }

  private array<T>(node: Node, read: (node: Node) => T | undefined): T[] | undefined {
    if (node.type !== 'array') return this.wrongType(node, 'an array');
    return (node.children ?? []).map(read).filter((x): x is T => x !== undefined);
  }

  private string(node: Node): string | undefined {
    return node.type === 'string' ? (node.value as string) : this.wrongType(node, 'a string');
  }

  private boolean(node: Node): boolean | undefined {
    return node.type === 'boolean' ? (node.value as boolean) : this.wrongType(node, 'true or false');
  }

  private number(node: Node): number | undefined {
    return node.type === 'number' ? (node.value as number) : this.wrongType(node, 'a number');
  }

  private integer(node: Node, minimum: number): number | undefined {
    const value = node.value;
    if (node.type !== 'number' || !Number.isInteger(value) || value < minimum) return this.wrongType(node, `an integer ≥ ${minimum}`);
    return value as number;
  }

  private wrongType(node: Node, expected: string): undefined {
    this.problems.push(schemaProblem(node, `expected ${expected}`));
    return undefined;
  }
}

function nodeValue(node: Node): Record<string, unknown> {
  const value = (n: Node): unknown => {
    switch (n.type) {
      case 'object':
        return Object.fromEntries((n.children ?? []).map((p) => [p.children![0].value as string, p.children![1] ? value(p.children![1]) : null]));
      case 'array':
        return (n.children ?? []).map(value);
      default:
        return n.value;
    }
  };
  return value(node) as Record<string, unknown>;
}

/** The checks beyond types: expert ids, matrix shapes, the model, and claims the plan makes about itself. */
function checkPlan(plan: MoePlan, root: Node, problems: PlanProblem[], spec?: ModelSpec): { layer: number; range: TextRange }[] {
  const report = (severity: PlanProblem['severity'], code: PlanProblemCode, node: Node, message: string, fix?: PlanProblem['fix']) =>
    problems.push({ severity, code, message, range: rangeOf(node), ...(fix ? { fix } : {}) });
  const modelNode = property(root, 'model');
  if (spec && modelNode?.type === 'object') {
    const moeLayers = spec.layers.flatMap((l) => (l.kind === 'moe' ? [l] : []));
    const expected: [string, unknown][] = [
      ['architecture', spec.architecture],
      ['numLayers', spec.layers.length],
      ['numExperts', moeLayers[0]?.moe.numExperts],
      ['topK', moeLayers[0]?.moe.topK],
    ];
    for (const [key, value] of expected) {
      const node = property(modelNode, key);
      if (node && value !== undefined && node.value !== value) {
        report('error', 'modelMismatch', node, `the model has ${key} ${JSON.stringify(value)}, the plan says ${JSON.stringify(node.value)}`, {
          title: `Set ${key} to ${JSON.stringify(value)}`,
          edits: [{ ...rangeOf(node), newText: JSON.stringify(value) }],
        });
      }
    }
  }
  const layersNode = property(root, 'layers');
  const layerNodes = layersNode?.type === 'array' ? (layersNode.children ?? []).filter((n) => n.type === 'object') : [];
  const layerRanges: { layer: number; range: TextRange }[] = [];
  const seenLayers = new Set<number>();
  for (const [index, node] of layerNodes.entries()) {
    const layer = plan.layers[index];
    if (!layer || layer.layer < 0) continue;
    layerRanges.push({ layer: layer.layer, range: rangeOf(node) });
    const layerIndexNode = property(node, 'layer')!;
    if (seenLayers.has(layer.layer)) report('error', 'duplicateLayer', layerIndexNode, `layer ${layer.layer} has more than one entry`);
    seenLayers.add(layer.layer);
    const layerSpec = spec?.layers[layer.layer];
    let numExperts = plan.model.numExperts;
    let modelTopK = plan.model.topK;
    if (spec) {
      if (!layerSpec) report('error', 'notMoeLayer', layerIndexNode, `the model has no layer ${layer.layer} (it has ${spec.layers.length})`);
      else if (layerSpec.kind !== 'moe') report('error', 'notMoeLayer', layerIndexNode, `layer ${layer.layer} is a dense layer, not an MoE layer`);
      else ({ numExperts, topK: modelTopK } = layerSpec.moe);
    } else if (plan.model.numLayers > 0 && layer.layer >= plan.model.numLayers) {
      report('error', 'notMoeLayer', layerIndexNode, `the model has no layer ${layer.layer} (it has ${plan.model.numLayers})`);
    }
    checkLayer(layer, node, numExperts, modelTopK, report);
    checkNeuronOrder(layer, node, numExperts, layerSpec?.kind === 'moe' ? layerSpec.moe.expert.intermediateSize : undefined, report, spec);
  }
  checkClaims(plan, root, report, spec);
  return layerRanges;
}

type Report = (severity: PlanProblem['severity'], code: PlanProblemCode, node: Node, message: string, fix?: PlanProblem['fix']) => void;

/**
 * Problems of one kind reported per element of one array, at most: past it one problem on the array
 * says how many more there are. A plan listing expert 1 288,000 times made 288,000 diagnostics, each
 * with a quick fix (2.3 s to analyse, and an editor that has to draw them all).
 */
export const MAX_ELEMENT_PROBLEMS = 50;

/** A report whose quick fix is built only when the problem is reported: building it for every suppressed one was 40% of the cost. */
type CappedReport = (severity: PlanProblem['severity'], code: PlanProblemCode, node: Node, message: string, fix?: () => PlanProblem['fix']) => void;

/** `report` for the elements of `arrayNode`, capped per problem code; `finish` adds the summaries. */
function cappedReport(report: Report, arrayNode: Node, describe: (more: number, code: PlanProblemCode) => string): { report: CappedReport; finish: () => void } {
  const counts = new Map<PlanProblemCode, { severity: PlanProblem['severity']; count: number }>();
  return {
    report: (severity, code, node, message, fix) => {
      const seen = counts.get(code) ?? { severity, count: 0 };
      seen.count++;
      counts.set(code, seen);
      if (seen.count <= MAX_ELEMENT_PROBLEMS) report(severity, code, node, message, fix?.());
    },
    finish: () => {
      for (const [code, { severity, count }] of counts) {
        if (count > MAX_ELEMENT_PROBLEMS) report(severity, code, arrayNode, describe(count - MAX_ELEMENT_PROBLEMS, code));
      }
    },
  };
}

function checkLayer(layer: PlanLayer, node: Node, numExperts: number, modelTopK: number | undefined, report: Report): void {
  const keptNode = property(node, 'keptExperts');
  const keptCount = layer.keptExperts.length;
  if (keptNode?.type === 'array') {
    const elements = keptNode.children ?? [];
    if (elements.length === 0) report('error', 'emptyLayer', keptNode, `layer ${layer.layer} keeps no expert; keep at least one (or remove the layer entry to leave it unchanged)`);
    const seen = new Set<number>();
    const perElement = cappedReport(report, keptNode, (more, code) =>
      `${more.toLocaleString('en-US')} more ${code === 'duplicateExpert' ? 'experts listed twice' : 'experts that do not exist'} in layer ${layer.layer}'s keptExperts`);
    for (const [i, element] of elements.entries()) {
      const id = element.value;
      if (typeof id !== 'number' || !Number.isInteger(id)) continue;
      if (numExperts > 0 && id >= numExperts) perElement.report('error', 'unknownExpert', element, `expert ${id} does not exist: layer ${layer.layer} has experts 0..${numExperts - 1}`);
      if (seen.has(id)) {
        perElement.report('error', 'duplicateExpert', element, `expert ${id} is listed twice`, () => ({
          title: `Remove the duplicate expert ${id}`,
          // Rows follow the listed elements (a row per element as written), not the parsed ids:
          // with an id the parser dropped (-1), `keptCount` is shorter and row i may not exist.
          edits: [removeArrayElement(elements, i), ...matrixRowRemovals(node, i, elements.length)],
        }));
      }
      seen.add(id);
    }
    perElement.finish();
    if (numExperts > 0 && keptCount > 0) {
      const factor = numExperts / keptCount;
      const threshold = pruningFactorThreshold(numExperts);
      if (factor > threshold) {
        report('warning', 'pruningFactor', keptNode, `keeping ${keptCount} of ${numExperts} experts prunes ${factor.toFixed(1)}×, past UNCURL's ${threshold}× threshold for ${numExperts}-expert models: expect a sharp drop in quality`);
      }
    }
  }
  for (const key of ['mergeMatrix', 'routerMap'] as const) {
    const matrixNode = property(node, key);
    if (matrixNode?.type !== 'array') continue;
    const rows = matrixNode.children ?? [];
    if (rows.length !== keptCount) report('error', 'matrixShape', matrixNode, `${key} has ${rows.length} rows; it needs one per kept expert (${keptCount})`);
    const perRow = cappedReport(report, matrixNode, (more) => `${more.toLocaleString('en-US')} more rows of ${key} in layer ${layer.layer} have the wrong number of columns`);
    for (const row of rows) {
      const columns = row.children?.length ?? 0;
      if (row.type === 'array' && numExperts > 0 && columns !== numExperts) {
        perRow.report('error', 'matrixShape', row, `${key} row has ${columns} columns; it needs one per original expert (${numExperts})`);
      }
    }
    perRow.finish();
  }
  const scaleNode = property(node, 'outputScale');
  if (scaleNode?.type === 'array' && (scaleNode.children?.length ?? 0) !== keptCount) {
    report('error', 'matrixShape', scaleNode, `outputScale has ${scaleNode.children?.length ?? 0} entries; it needs one per kept expert (${keptCount})`);
  }
  const topK = layer.topK ?? modelTopK;
  if (topK !== undefined && keptCount > 0 && topK > keptCount) {
    const topKNode = property(node, 'topK') ?? keptNode!;
    report('error', 'topK', topKNode, `${layer.topK === undefined ? 'the model\'s ' : ''}top-k ${topK} exceeds the ${keptCount} kept experts of layer ${layer.layer}`, layer.topK === undefined ? undefined : {
      title: `Set topK to ${keptCount}`,
      edits: [{ ...rangeOf(topKNode), newText: String(keptCount) }],
    });
  }
}

/**
 * `neuronOrder`: keys are expert ids of the layer, each value a permutation of the expert's intermediate
 * neurons (their count from the model when it is at hand, else the first order's length), only beside
 * a mergeMatrix, and never for a layer whose experts cannot be renumbered (fused or MXFP4 experts).
 */
function checkNeuronOrder(layer: PlanLayer, node: Node, numExperts: number, intermediate: number | undefined, report: Report, spec?: ModelSpec): void {
  const orderNode = property(node, 'neuronOrder');
  if (orderNode?.type !== 'object' || !layer.neuronOrder) return;
  if (!layer.mergeMatrix) report('error', 'neuronOrder', orderNode, 'neuronOrder renumbers experts that are merged; it needs a mergeMatrix');
  const refusal = spec?.layers[layer.layer]?.kind === 'moe' ? neuronOrderRefusal(spec, layer.layer) : undefined;
  if (refusal) report('error', 'neuronOrder', orderNode, `neuronOrder cannot apply to layer ${layer.layer}: ${refusal}`);
  const size = intermediate ?? Object.values(layer.neuronOrder)[0]?.length ?? 0;
  for (const entry of orderNode.children ?? []) {
    const [keyNode, valueNode] = entry.children ?? [];
    if (!keyNode) continue;
    const key = keyNode.value as string;
    if (!/^\d+$/.test(key) || (numExperts > 0 && Number(key) >= numExperts)) {
      report('error', 'unknownExpert', keyNode, `neuronOrder names expert "${key}": layer ${layer.layer} has experts 0..${numExperts - 1}`);
      continue;
    }
    const order = layer.neuronOrder[Number(key)];
    const problem = valueNode?.type === 'array' && order ? permutationProblem(order, size) : undefined;
    if (problem) report('error', 'neuronOrder', valueNode!, `neuronOrder of expert ${key} ${problem}`);
  }
}

/** The claims a generated plan makes about itself (uniform counts, HF exactness) must stay true after edits. */
function checkClaims(plan: MoePlan, root: Node, report: Report, spec?: ModelSpec): void {
  const uniformNode = property(root, 'uniformExpertCount');
  if (uniformNode?.type === 'boolean') {
    const actual = isUniformExpertCount(plan.layers, plan.model.numExperts, spec ? moeLayerCount(spec) : plan.model.numLayers);
    if (actual !== uniformNode.value) {
      report('warning', 'claimMismatch', uniformNode, actual ? 'every MoE layer keeps the same number of experts' : 'MoE layers keep different numbers of experts', {
        title: `Set uniformExpertCount to ${actual}`,
        edits: [{ ...rangeOf(uniformNode), newText: String(actual) }],
      });
    }
  }
  const exactNode = findNodeAtLocation(root, ['exactInHuggingFace', 'exact']);
  if (spec && exactNode?.type === 'boolean') {
    const analysis = analyseHfExactness(plan.layers, spec);
    if (analysis.exact !== exactNode.value) {
      const claimNode = property(root, 'exactInHuggingFace')!;
      report('warning', 'claimMismatch', exactNode, analysis.exact ? 'a stock Hugging Face config expresses this plan exactly' : `not exact in Hugging Face: ${analysis.reasons.join('; ')}`, {
        title: `Set exactInHuggingFace to ${analysis.exact}`,
        edits: [{ ...rangeOf(claimNode), newText: JSON.stringify(analysis) }],
      });
    }
  }
}

/**
 * Whether every MoE layer ends up with the same expert count. Layers the plan does not list keep all
 * `numExperts`; without the model at hand, every decoder layer is taken to be an MoE layer.
 */
export function isUniformExpertCount(layers: PlanLayer[], numExperts: number, moeLayers: number): boolean {
  const counts = new Set(layers.map((l) => l.keptExperts.length));
  if (new Set(layers.map((l) => l.layer)).size < moeLayers) counts.add(numExperts);
  return counts.size <= 1;
}

export function moeLayerCount(spec: ModelSpec): number {
  return spec.layers.filter((l) => l.kind === 'moe').length;
}

/** Deletes element i of an array together with the comma before it (i ≥ 1) or after it. */
function removeArrayElement(elements: Node[], i: number): TextEdit {
  const element = elements[i];
  if (i > 0) {
    const previousEnd = elements[i - 1].offset + elements[i - 1].length;
    return { offset: previousEnd, length: element.offset + element.length - previousEnd, newText: '' };
  }
  const next = elements[1];
  return { offset: element.offset, length: next ? next.offset - element.offset : element.length, newText: '' };
}

/** A removed kept expert (element i of `listed`) takes its matrix rows with it, when the matrices are that height. */
function matrixRowRemovals(layerNode: Node, i: number, listed: number): TextEdit[] {
  return (['mergeMatrix', 'routerMap'] as const).flatMap((key) => {
    const rows = property(layerNode, key)?.children;
    return rows && rows.length === listed ? [removeArrayElement(rows, i)] : [];
  }).concat((() => {
    const scales = property(layerNode, 'outputScale')?.children;
    return scales && scales.length === listed ? [removeArrayElement(scales, i)] : [];
  })());
}

/** The plan as text: two-space JSON with each number array on one line, so a diff shows rows that changed. */
export function formatPlan(plan: MoePlan): string {
  const format = (value: unknown, indent: string): string => {
    if (Array.isArray(value)) {
      if (value.length === 0) return '[]';
      if (value.every((x) => typeof x === 'number')) return `[${value.map((x) => JSON.stringify(x)).join(', ')}]`;
      const inner = indent + '  ';
      return `[\n${value.map((x) => inner + format(x, inner)).join(',\n')}\n${indent}]`;
    }
    if (value && typeof value === 'object') {
      const entries = Object.entries(value).filter(([, v]) => v !== undefined);
      if (entries.length === 0) return '{}';
      const inner = indent + '  ';
      return `{\n${entries.map(([k, v]) => `${inner}${JSON.stringify(k)}: ${format(v, inner)}`).join(',\n')}\n${indent}}`;
    }
    return JSON.stringify(value);
  };
  return format(plan, '') + '\n';
}
