import type { MoeSpec } from '../checkpoint/modelSpec';
import { type NeuronOrder, neuronOrderProblem } from './neuronOrder';

/**
 * How one MoE layer is changed at run time. Every field is optional; an absent layer runs unchanged.
 * Matrices are row-major nested arrays so a plan stays plain JSON (it crosses the worker boundary).
 */
export interface LayerPlan {
  /** W_RM (E' x E): new router row i = Σ_j routerMap[i][j] · original router row j. */
  routerMap?: number[][];
  /** W_EM (E' x E): new expert i's gate, up and down = Σ_j mergeMatrix[i][j] · expert j's. Needs `routerMap`. */
  mergeMatrix?: number[][];
  /**
   * Per routed expert (E' entries): its output (down projection) times this factor, e.g. output
   * compensation's least-squares scales. Needs `mergeMatrix` (the scaled weights are a merged layer's own).
   */
  outputScale?: number[];
  /**
   * Per original expert id: its intermediate neurons' order where a merge row combines it with others
   * (neuronOrder.ts; UNCURL's alignment). Needs `mergeMatrix`.
   */
  neuronOrder?: NeuronOrder;
  /** Over the E' routed experts: false takes an expert out of routing (its logit becomes -inf). */
  keptExperts?: boolean[];
  /** Overrides the number of experts each token uses. */
  topK?: number;
  /** Adaptive gating: a token keeps the experts after its first only when p1 - p2 <= T. */
  adaptiveThreshold?: number;
}

/** Layer plans keyed by decoder layer index (MoE layers only). */
export interface RuntimePlan {
  layers: Record<number, LayerPlan>;
}

/** A layer plan checked against the layer and turned into what the layer graph consumes. */
export interface ResolvedLayerPlan {
  routedExperts: number;
  /** W_RM^T as [E, E'], since the graph applies it to router logits: (x W_r^T) W_RM^T = x (W_RM W_r)^T. */
  routerMapTransposed: Float32Array;
  expertBias: Float32Array;
  topK: number;
  adaptiveThreshold: number;
  mergeMatrix?: number[][];
  outputScale?: number[];
  neuronOrder?: NeuronOrder;
}

export function resolveLayerPlan(layerIndex: number, moe: MoeSpec, plan: LayerPlan = {}): ResolvedLayerPlan {
  const E = moe.numExperts;
  const fail = (message: string): never => {
    throw new Error(`plan for layer ${layerIndex}: ${message}`);
  };
  const checkMatrix = (name: string, matrix: number[][], rows: number) => {
    if (matrix.length !== rows) fail(`${name} has ${matrix.length} rows, expected ${rows}`);
    matrix.forEach((row, i) => row.length !== E && fail(`${name} row ${i} has ${row.length} columns, expected ${E}`));
  };
  if (plan.mergeMatrix && !plan.routerMap) fail('mergeMatrix needs a routerMap for the merged experts');
  const routedExperts = plan.mergeMatrix?.length ?? E;
  if (plan.mergeMatrix) checkMatrix('mergeMatrix', plan.mergeMatrix, routedExperts);
  if (plan.routerMap) checkMatrix('routerMap', plan.routerMap, routedExperts);
  if (plan.outputScale) {
    if (!plan.mergeMatrix) fail('outputScale needs a mergeMatrix (one-hot rows for kept experts)');
    if (plan.outputScale.length !== routedExperts) fail(`outputScale has ${plan.outputScale.length} entries, expected ${routedExperts}`);
    if (!plan.outputScale.every(Number.isFinite)) fail('outputScale has a value that is not a finite number');
  }
  if (plan.neuronOrder) {
    if (!plan.mergeMatrix) fail('neuronOrder needs a mergeMatrix (it renumbers experts that are merged)');
    const problem = neuronOrderProblem(plan.neuronOrder, E, moe.expert.intermediateSize);
    if (problem) fail(problem);
  }
  const routerMapTransposed = new Float32Array(E * routedExperts);
  for (let i = 0; i < routedExperts; i++) {
    for (let j = 0; j < E; j++) routerMapTransposed[j * routedExperts + i] = plan.routerMap ? plan.routerMap[i][j] : i === j ? 1 : 0;
  }
  const kept = plan.keptExperts ?? new Array<boolean>(routedExperts).fill(true);
  if (kept.length !== routedExperts) fail(`keptExperts has ${kept.length} entries, expected ${routedExperts}`);
  if (!kept.some(Boolean)) fail('keptExperts removes every expert');
  // The model's own top-k cannot exceed the experts a plan leaves; an explicit plan top-k must fit.
  const topK = plan.topK ?? Math.min(moe.topK, routedExperts);
  if (!Number.isInteger(topK) || topK < 1 || topK > routedExperts) fail(`topK ${topK} is not in 1..${routedExperts}`);
  if (moe.sparsemixer && topK > 2) fail(`topK ${topK}: Phi-MoE's sparsemixer routes at most 2 experts per token`);
  const adaptiveThreshold = plan.adaptiveThreshold ?? Infinity;
  if (Number.isNaN(adaptiveThreshold)) fail('adaptiveThreshold is NaN');
  return {
    routedExperts,
    routerMapTransposed,
    expertBias: Float32Array.from(kept, (k) => (k ? 0 : -Infinity)),
    topK,
    adaptiveThreshold,
    mergeMatrix: plan.mergeMatrix,
    ...(plan.outputScale ? { outputScale: plan.outputScale } : {}),
    ...(plan.neuronOrder ? { neuronOrder: plan.neuronOrder } : {}),
  };
}

/** The first layer a plan changes; layers before it compute exactly what the unchanged model computes. */
export function firstChangedLayer(plan: RuntimePlan | undefined, numLayers: number): number {
  const changed = Object.keys(plan?.layers ?? {}).map(Number);
  return changed.length ? Math.min(...changed) : numLayers;
}
