/**
 * One entry from a method and its inputs to the plan file object, with the method, its parameters and
 * its seed recorded so the plan says how it was made and can be made again.
 */
import type { DType, ModelSpec } from '../checkpoint/modelSpec';
import { UserError } from '../errors';
import { analyseHfExactness } from './hfExactness';
import { adaptiveGatingForShare, adaptiveGatingWithinQuality } from './methods/adaptiveGating';
import { DEFAULT_EEP_PARAMETERS, type EepParameters, type EepProgress, type FitnessFunction, type FitnessManyFunction, eepSearch, searchRecord } from './methods/eep';
import { type LayerErrorFunction, naeePruning } from './methods/naee';
import { type Repair, type RepairSource, applyRepairs } from './methods/repairs';
import { frequencyPruning, randomPruning, reapPruning, softCountPruning } from './methods/ranking';
import { type AlignmentSource, alignMerges } from './methods/neuronAlignment';
import { UNCURL_DEFAULTS, type UncurlSimilarity, uncurlMerging } from './methods/uncurl';
import { type MoePlan, PLAN_SCHEMA, PLAN_VERSION, type PlanLayer, isUniformExpertCount, moeLayerCount } from './planFile';
import { predictSavings } from './savings';
import type { ExpertTarget, LayerStatistics, MoeLayerShape } from './statistics';

export type PlanMethod =
  | { name: 'random' }
  | { name: 'frequency' }
  | { name: 'softCount' }
  | { name: 'reap' }
  | { name: 'naee'; exhaustiveLimit?: number }
  | { name: 'uncurl'; restarts?: number; similarity?: UncurlSimilarity; neuronAlignment?: boolean }
  | ({ name: 'eep' } & Partial<Omit<EepParameters, 'seed'>>)
  /**
   * Adaptive gating alone: every expert stays. Thresholds reach `singleExpertShare` (a plan option),
   * or with `maxLossIncrease` are the smallest per layer whose calibration loss stays within it.
   */
  | { name: 'adaptiveGating'; maxLossIncrease?: number };

export interface PlanInputs {
  statistics?: LayerStatistics[];
  /** NAEE: the layer's reconstruction error with only `keptExperts` routable. */
  layerError?: LayerErrorFunction;
  /** EEP: the task metric of a candidate (higher is better). */
  fitness?: FitnessFunction;
  /** EEP: the same for a whole generation in one pass. */
  fitnessMany?: FitnessManyFunction;
  /** EEP: plans the search starts from (the pruning heuristics' answers); it never returns worse. */
  initial?: PlanLayer[][];
  /**
   * Adaptive gating within a quality bound: the calibration quality (higher is better) of the full
   * model and of the model with one layer gated at T, and the thresholds to choose from.
   */
  gatingQuality?: { baseline: number; candidates: readonly number[]; at: (layer: number, threshold: number) => Promise<number> };
  /** The repairs' calibration data (router logits, expert outputs, the full layer's output). */
  repair?: RepairSource;
  /** UNCURL's and EEP's neuron alignment: the experts' weights. */
  alignment?: AlignmentSource;
}

export interface PlanOptions {
  spec: ModelSpec;
  model: { folder: string; fingerprint?: string };
  calibration: { datasets: string[]; profile?: string };
  /** The checkpoint's dtype, for the byte savings. */
  dtype: DType | 'F8_E4M3';
  /** Experts kept per layer; every method but adaptiveGating needs it. */
  targetExperts?: ExpertTarget;
  seed?: number;
  /** Adaptive gating on top of the method: thresholds that reach this share of single-expert tokens. */
  singleExpertShare?: number;
  /** Closed-form repairs of the method's plan (router refit, output compensation), recorded in the plan. */
  repairs?: Repair[];
  signal?: AbortSignal;
  onGeneration?: (progress: EepProgress) => void;
}

/** DeepSeek's group count for the layer's statistics, so ranking methods keep equal groups (ranking.ts). */
function withExpertGroups(statistics: LayerStatistics, spec: ModelSpec): LayerStatistics {
  const layer = spec.layers[statistics.layer];
  const groups = layer?.kind === 'moe' ? layer.moe.routing?.groups?.count : undefined;
  return groups && groups > 1 ? { ...statistics, expertGroups: groups } : statistics;
}

export function moeLayerShapes(spec: ModelSpec): MoeLayerShape[] {
  return spec.layers.flatMap((l) => (l.kind === 'moe' ? [{ layer: l.index, numExperts: l.moe.numExperts }] : []));
}

export async function generatePlan(method: PlanMethod, inputs: PlanInputs, options: PlanOptions): Promise<MoePlan> {
  const { spec } = options;
  const seed = options.seed ?? 0;
  const shapes = moeLayerShapes(spec);
  if (shapes.length === 0) throw new Error('the model has no MoE layer');
  const firstMoe = spec.layers.find((l) => l.kind === 'moe')!;
  const { numExperts, topK } = firstMoe.kind === 'moe' ? firstMoe.moe : { numExperts: 0, topK: 0 };
  const target = (): ExpertTarget => {
    if (options.targetExperts === undefined) throw new UserError(`${method.name} needs the number of experts to keep per layer (targetExperts).`);
    return options.targetExperts;
  };
  const statistics = (): LayerStatistics[] => {
    if (!inputs.statistics) throw new Error(`${method.name} needs profiling statistics`);
    return inputs.statistics.map((s) => withExpertGroups(s, spec));
  };
  const { name, ...methodParameters } = method;
  let parameters: Record<string, unknown> = methodParameters;
  let layers: PlanLayer[];
  switch (method.name) {
    case 'random':
      layers = randomPruning(shapes, target(), seed);
      break;
    case 'frequency':
      layers = frequencyPruning(statistics(), target());
      break;
    case 'softCount':
      layers = softCountPruning(statistics(), target());
      break;
    case 'reap':
      layers = reapPruning(statistics(), target());
      break;
    case 'uncurl':
      layers = uncurlMerging(statistics(), target(), { seed, restarts: method.restarts, similarity: method.similarity });
      if (method.neuronAlignment ?? UNCURL_DEFAULTS.neuronAlignment) {
        if (!inputs.alignment) throw new Error('UNCURL\'s neuron alignment needs the experts\' weights');
        const aligned = await alignMerges(layers, inputs.alignment, options.signal);
        layers = aligned.layers;
        parameters = { ...parameters, neuronAlignment: true, ...aligned.record };
      }
      break;
    case 'naee':
      if (!inputs.layerError) throw new Error('naee needs a layerError callback');
      layers = await naeePruning({ layers: shapes, target: target(), layerError: inputs.layerError, exhaustiveLimit: method.exhaustiveLimit, signal: options.signal });
      break;
    case 'eep': {
      if (!inputs.fitness) throw new Error('eep needs a fitness callback');
      const merges = (method.phases ?? DEFAULT_EEP_PARAMETERS.phases).includes('merge');
      if (merges && (method.neuronAlignment ?? DEFAULT_EEP_PARAMETERS.neuronAlignment) && !inputs.alignment) throw new Error('EEP\'s neuron alignment needs the experts\' weights');
      const result = await eepSearch({ ...methodParameters, layers: shapes, target: target(), fitness: inputs.fitness, fitnessMany: inputs.fitnessMany, initial: inputs.initial, alignment: inputs.alignment, seed, signal: options.signal, onGeneration: options.onGeneration });
      const { seed: _recordedSeparately, ...searched } = result.parameters;
      const skipped = result.neuronAlignmentSkipped ? { neuronAlignmentSkipped: result.neuronAlignmentSkipped } : {};
      parameters = { ...searched, ...skipped, bestFitness: result.fitness, evaluations: result.evaluations, search: searchRecord(result.history) };
      layers = result.layers;
      break;
    }
    case 'adaptiveGating':
      layers = shapes.map((s) => ({ layer: s.layer, keptExperts: Array.from({ length: s.numExperts }, (_, j) => j) }));
      break;
  }
  if (options.repairs?.length) {
    if (!inputs.repair) throw new Error('repairs need the calibration\'s layer reconstruction');
    const repaired = await applyRepairs(layers, options.repairs, inputs.repair, { signal: options.signal });
    layers = repaired.layers;
    parameters = { ...parameters, ...repaired.record };
  }
  const singleExpertShare = options.singleExpertShare;
  let chosen: { layer: number; adaptiveThreshold?: number }[] = [];
  if (singleExpertShare !== undefined) {
    chosen = adaptiveGatingForShare(statistics(), singleExpertShare);
  } else if (method.name === 'adaptiveGating' && method.maxLossIncrease !== undefined) {
    if (!inputs.gatingQuality) throw new Error('adaptiveGating with maxLossIncrease needs a gatingQuality callback');
    const { baseline, candidates, at } = inputs.gatingQuality;
    // The bound is shared out equally: each layer may cost its share, so the layers together stay near
    // the bound when their costs add up (Evaluate measures the combined change).
    const perLayer = method.maxLossIncrease / Math.max(1, shapes.length);
    chosen = await adaptiveGatingWithinQuality({ layers: shapes.map((s) => s.layer), candidates: [...candidates], quality: at, minimumQuality: baseline - perLayer, signal: options.signal });
  } else if (method.name === 'adaptiveGating') {
    throw new Error('adaptiveGating needs singleExpertShare or maxLossIncrease');
  }
  const thresholds = new Map(chosen.flatMap((t) => (t.adaptiveThreshold !== undefined ? [[t.layer, t.adaptiveThreshold] as const] : [])));
  layers = layers.map((l) => (thresholds.has(l.layer) ? { ...l, adaptiveThreshold: thresholds.get(l.layer) } : l));
  return {
    schema: PLAN_SCHEMA,
    version: PLAN_VERSION,
    model: { folder: options.model.folder, architecture: spec.architecture, numExperts, numLayers: spec.layers.length, topK, ...(options.model.fingerprint ? { fingerprint: options.model.fingerprint } : {}) },
    calibration: options.calibration,
    method: {
      name,
      parameters: { ...parameters, ...(options.targetExperts !== undefined ? { targetExperts: options.targetExperts } : {}), ...(singleExpertShare !== undefined ? { singleExpertShare } : {}) },
      seed,
    },
    uniformExpertCount: isUniformExpertCount(layers, numExperts, moeLayerCount(spec)),
    exactInHuggingFace: analyseHfExactness(layers, spec),
    layers,
    predictedSavings: predictSavings(spec, layers, options.dtype),
    evaluations: [],
  };
}
