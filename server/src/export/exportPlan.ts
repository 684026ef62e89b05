/**
 * What the export stage consumes: per MoE layer, which original experts survive (and in which order,
 * which becomes their new ids), how they are merged and how the router is rebuilt. The plan stage's
 * document is adapted to this shape; everything else in it travels as opaque JSON into config.json.
 */

import type { ModelSpec, MoeSpec } from '../checkpoint/modelSpec';
import type { PlanLayer } from '../plan/planFile';
import { planLayerGroupReason } from '../plan/groupLimit';
import { ExportError } from './exportErrors';
import { type NeuronOrder, neuronOrderProblem, neuronOrderRefusal } from '../runtime/neuronOrder';

/**
 * One layer as the plan file has it (server/src/plan/planFile.ts), keyed by layer index instead of
 * carrying it. Export reads it as: position i of keptExperts is new expert i; without a mergeMatrix
 * expert keptExperts[i] is copied, without a routerMap its router row is; with a mergeMatrix,
 * keptExperts records which ids each new expert stands for. topK must be the same in every layer,
 * since config.json has one; adaptiveThreshold has no Hugging Face key (only the ONNX export bakes it in).
 */
export type ExportLayerPlan = Omit<PlanLayer, 'layer'>;

export interface ExportPlan {
  /** Keyed by decoder layer index; MoE layers only. An absent layer is exported unchanged. */
  layers: Record<number, ExportLayerPlan>;
  /**
   * Whether a stock transformers loader computes what the plan computed in MoE Studio. Adaptive gating,
   * expert masks without removal and similar runtime-only tricks are not; the plan stage says why.
   */
  huggingFace: { exact: boolean; reasons?: string[] };
  /** Recorded verbatim under `moe_studio.plan` in config.json. */
  planRecord?: unknown;
  /** Recorded verbatim under `moe_studio.evaluation`; the model card renders `{dataset?, metrics?: [{name, before, after}]}`. */
  evaluation?: unknown;
  /** For the model card: how the plan was made (e.g. "REAP pruning") and on which data. */
  method?: string;
  calibrationData?: string;
}

/** A MoE layer after the plan: every layer of the model has one, unplanned layers as identity. */
export interface ResolvedMoeLayer {
  index: number;
  moe: MoeSpec;
  planned: boolean;
  /** New expert count E'. */
  numExperts: number;
  keptExperts: number[];
  /** Row i: coefficients over original experts for new expert i (one-hot for pure pruning). */
  expertRows: number[][];
  /** Row i: coefficients over original router rows for new router row i. */
  routerRows: number[][];
  merged: boolean;
  topK: number;
  /** Row i: new expert i's down projection times this (output compensation); absent: all 1. */
  outputScale?: number[];
  /** Neuron orders of merged experts (runtime/neuronOrder.ts); absent: none renumbered. */
  neuronOrder?: NeuronOrder;
}

export interface ResolvedExportPlan {
  layers: ResolvedMoeLayer[];
  /** Shared by every layer (config.json has one `num_experts_per_tok`). */
  topK: number;
  uniformExperts: boolean;
  maxExperts: number;
  /** Why a stock loader would not compute what the plan computes; empty when it would. */
  notExactReasons: string[];
}

function oneHot(length: number, at: number): number[] {
  const row = new Array<number>(length).fill(0);
  row[at] = 1;
  return row;
}

/** The index j when the row is exactly 1 at j and 0 elsewhere: that new tensor is a bit-exact copy. */
export function oneHotIndex(row: readonly number[]): number | undefined {
  let found: number | undefined;
  for (let j = 0; j < row.length; j++) {
    if (row[j] === 0) continue;
    if (row[j] !== 1 || found !== undefined) return undefined;
    found = j;
  }
  return found;
}

/** Checks the plan against the model; an invalid plan throws, one HF cannot express exactly says why in `notExactReasons`. */
export function resolveExportPlan(spec: ModelSpec, plan: ExportPlan): ResolvedExportPlan {
  const problems: string[] = [];
  const layers: ResolvedMoeLayer[] = [];
  const layerKeys = Object.keys(plan.layers ?? {});
  for (const key of layerKeys) {
    const index = Number(key);
    const layer = spec.layers[index];
    if (!Number.isInteger(index) || !layer) problems.push(`layer ${key} does not exist (the model has ${spec.layers.length} layers)`);
    else if (layer.kind !== 'moe') problems.push(`layer ${key} is a dense layer; only MoE layers can be pruned or merged`);
  }
  for (const layer of spec.layers) {
    if (layer.kind !== 'moe') continue;
    const layerPlan = plan.layers?.[layer.index];
    const E = layer.moe.numExperts;
    if (!layerPlan) {
      const identity = Array.from({ length: E }, (_, j) => j);
      const rows = identity.map((j) => oneHot(E, j));
      layers.push({ index: layer.index, moe: layer.moe, planned: false, numExperts: E, keptExperts: identity, expertRows: rows, routerRows: rows, merged: false, topK: layer.moe.topK });
      continue;
    }
    const fail = (message: string) => problems.push(`layer ${layer.index}: ${message}`);
    const kept = layerPlan.keptExperts;
    if (!Array.isArray(kept) || kept.length === 0) {
      fail('keptExperts must list at least one expert');
      continue;
    }
    const bad = kept.filter((j) => !Number.isInteger(j) || j < 0 || j >= E);
    if (bad.length) fail(`keptExperts has ${bad.join(', ')}, outside 0..${E - 1}`);
    if (new Set(kept).size !== kept.length) fail('keptExperts lists an expert twice');
    const checkMatrix = (name: string, matrix: number[][] | undefined) => {
      if (matrix === undefined) return;
      if (!Array.isArray(matrix) || matrix.length !== kept.length) return fail(`${name} must have ${kept.length} rows (one per kept expert)`);
      matrix.forEach((row, i) => {
        if (!Array.isArray(row) || row.length !== E) fail(`${name} row ${i} must have ${E} columns`);
        else if (!row.every(Number.isFinite)) fail(`${name} row ${i} has a value that is not a finite number`);
      });
    };
    checkMatrix('mergeMatrix', layerPlan.mergeMatrix);
    checkMatrix('routerMap', layerPlan.routerMap);
    const scale = layerPlan.outputScale;
    if (scale !== undefined && (!Array.isArray(scale) || scale.length !== kept.length || !scale.every(Number.isFinite))) {
      fail(`outputScale must have ${kept.length} finite numbers (one per kept expert)`);
    }
    const neuronOrder = layerPlan.neuronOrder;
    if (neuronOrder !== undefined) {
      const problem = layerPlan.mergeMatrix ? neuronOrderRefusal(spec, layer.index) ?? neuronOrderProblem(neuronOrder, E, layer.moe.expert.intermediateSize) : 'neuronOrder needs a mergeMatrix';
      if (problem) fail(problem);
    }
    const topK = layerPlan.topK ?? layer.moe.topK;
    if (!Number.isInteger(topK) || topK < 1 || topK > kept.length) fail(`topK ${topK} is not in 1..${kept.length}`);
    if (problems.length) continue;
    const defaultRows = kept.map((j) => oneHot(E, j));
    const expertRows = layerPlan.mergeMatrix ?? defaultRows;
    layers.push({
      index: layer.index,
      moe: layer.moe,
      planned: true,
      numExperts: kept.length,
      keptExperts: [...kept],
      expertRows,
      routerRows: layerPlan.routerMap ?? defaultRows,
      merged: expertRows.some((row) => oneHotIndex(row) === undefined),
      topK,
      ...(scale && scale.some((s) => s !== 1) ? { outputScale: [...scale] } : {}),
      ...(neuronOrder && Object.keys(neuronOrder).length ? { neuronOrder } : {}),
    });
  }
  if (problems.length) throw new ExportError('invalidPlan', `The export plan is invalid:\n${problems.map((p) => `  - ${p}`).join('\n')}`);

  const notExactReasons = plan.huggingFace?.exact === false ? [...(plan.huggingFace.reasons ?? [])] : [];
  if (plan.huggingFace?.exact === false && notExactReasons.length === 0) notExactReasons.push('the plan says so, without a reason');
  const topKs = [...new Set(layers.map((layer) => layer.topK))];
  if (topKs.length > 1) {
    notExactReasons.push(`layers use different top-k (${topKs.join(', ')}); config.json has a single num_experts_per_tok`);
  }
  for (const layer of layers) {
    const reason = layer.planned && planLayerGroupReason({ layer: layer.index, ...plan.layers![layer.index] }, layer.moe);
    if (reason && !notExactReasons.includes(reason)) notExactReasons.push(reason);
  }
  const counts = layers.map((layer) => layer.numExperts);
  return {
    layers,
    topK: topKs[0] ?? 0,
    uniformExperts: new Set(counts).size <= 1,
    maxExperts: Math.max(0, ...counts),
    notExactReasons,
  };
}

/** Export refuses what a stock loader would compute differently; preview only reports it. */
export function assertExactInHuggingFace(resolved: ResolvedExportPlan): void {
  const reasons = resolved.notExactReasons;
  if (reasons.length === 0) return;
  throw new ExportError(
    'notExact',
    `This plan cannot be exported to Hugging Face format exactly, so it was not exported:\n${reasons.map((r) => `  - ${r}`).join('\n')}`,
    reasons,
  );
}
