/**
 * Plan file → RuntimePlan. The plan names original expert ids; the runtime wants matrices over E' rows
 * or a mask. Two representations compute the same thing for a prune-only layer:
 *
 * - a `keptExperts` mask over the E original experts: removed experts get a -inf logit, so the softmax
 *   assigns them exactly 0 and the kept experts the same probabilities as a softmax over their logits
 *   alone; top-k never picks a 0 ahead of a kept expert, and ties keep ascending-id order;
 * - one-hot `routerMap` = `mergeMatrix` rows (row i selects keptExperts[i]): the layer runs E' experts.
 *
 * The mask is the cheaper one (no merged weight copies, no re-upload of expert tensors, the same graph
 * as the unchanged model), so prune-only layers become masks. Layers with any matrix, or with output
 * scales (which need the layer's own scaled weights), become matrices; a missing one of the pair is the
 * one-hot selection of `keptExperts` (each kept expert keeps its own router row, or its own weights).
 */
import type { LayerPlan, RuntimePlan } from '../runtime/runtimePlan';
import type { PlanLayer } from './planFile';

export function oneHotRows(keptExperts: number[], numExperts: number): number[][] {
  return keptExperts.map((id) => Array.from({ length: numExperts }, (_, j) => (j === id ? 1 : 0)));
}

export function toLayerPlan(layer: PlanLayer, numExperts: number): LayerPlan | undefined {
  const gating: LayerPlan = {
    ...(layer.topK !== undefined ? { topK: layer.topK } : {}),
    ...(layer.adaptiveThreshold !== undefined ? { adaptiveThreshold: layer.adaptiveThreshold } : {}),
  };
  if (layer.routerMap || layer.mergeMatrix || layer.outputScale) {
    return {
      routerMap: layer.routerMap ?? oneHotRows(layer.keptExperts, numExperts),
      mergeMatrix: layer.mergeMatrix ?? oneHotRows(layer.keptExperts, numExperts),
      ...(layer.outputScale ? { outputScale: layer.outputScale } : {}),
      ...(layer.neuronOrder ? { neuronOrder: layer.neuronOrder } : {}),
      ...gating,
    };
  }
  const kept = new Set(layer.keptExperts);
  for (const id of kept) {
    if (!Number.isInteger(id) || id < 0 || id >= numExperts) throw new Error(`layer ${layer.layer}: expert ${id} is not in 0..${numExperts - 1}`);
  }
  const plan: LayerPlan = kept.size < numExperts ? { keptExperts: Array.from({ length: numExperts }, (_, j) => kept.has(j)), ...gating } : gating;
  return Object.keys(plan).length ? plan : undefined;
}

/** `numExperts` per layer index (from the ModelSpec), or one number for every layer (the plan's `model.numExperts`). */
export function toRuntimePlan(layers: PlanLayer[], numExperts: number | ((layer: number) => number)): RuntimePlan {
  const runtime: RuntimePlan = { layers: {} };
  for (const layer of layers) {
    const layerPlan = toLayerPlan(layer, typeof numExperts === 'number' ? numExperts : numExperts(layer.layer));
    if (layerPlan) runtime.layers[layer.layer] = layerPlan;
  }
  return runtime;
}
