/**
 * What a plan saves, computed from the ModelSpec alone (no weights are read): parameters, bytes in the
 * checkpoint's dtype, and parameters active per token. "Active" counts every parameter except the routed
 * experts a token does not run (embeddings and lm_head included), the convention behind Mixtral's
 * "12.9B active". Adaptive gating lowers the expected active count further, by an amount only the
 * calibration data knows; the figure here is the top-k bound.
 */
import { mlaShapes } from '../checkpoint/mlaShapes';
import type { DType, MlpSpec, ModelSpec } from '../checkpoint/modelSpec';
import type { PlanLayer, PredictedSavings } from './planFile';

/** FP8 block-scaled weights (DeepSeek-V3) are one byte each; their scales add 4 bytes per 128 x 128 block, ignored here. */
const BYTES_PER_ELEMENT: Record<DType | 'F8_E4M3', number> = { F32: 4, F16: 2, BF16: 2, F8_E4M3: 1 };

function mlpParameters(hidden: number, mlp: MlpSpec): number {
  return 3 * hidden * mlp.intermediateSize;
}

interface ParameterCount {
  total: number;
  active: number;
  /** The routed experts' part of `total`. */
  experts: number;
}

/** MXFP4 (GPT-OSS): 16 bytes of E2M1 codes and one E8M0 scale byte per 32 weights. */
const MXFP4_BYTES_PER_WEIGHT = 17 / 32;

function countParameters(spec: ModelSpec, planned: Map<number, PlanLayer>): ParameterCount {
  const h = spec.hiddenSize;
  const { numHeads, numKvHeads, headDim, qkvBias, qkNorm } = spec.attention;
  const mla = mlaShapes(spec.attention, h);
  const attention = mla
    ? mla.matrices.reduce((sum, [rows, cols]) => sum + rows * cols, 0) + mla.normParameters
    : h * numHeads * headDim * 2 + h * numKvHeads * headDim * 2 +
    (qkvBias ? numHeads * headDim + 2 * numKvHeads * headDim : 0) +
    (qkNorm === 'perHead' ? 2 * headDim : qkNorm === 'full' ? (numHeads + numKvHeads) * headDim : 0);
  const embeddings = spec.vocabSize * h * (spec.tieWordEmbeddings ? 1 : 2);
  let total = embeddings + h; // + final norm
  let active = total;
  let routed = 0;
  for (const layer of spec.layers) {
    const shared = attention + 2 * h; // + input and post-attention norms
    total += shared;
    active += shared;
    if (layer.kind === 'dense') {
      total += mlpParameters(h, layer.mlp);
      active += mlpParameters(h, layer.mlp);
      continue;
    }
    const plan = planned.get(layer.index);
    const experts = plan?.keptExperts.length ?? layer.moe.numExperts;
    const topK = Math.min(plan?.topK ?? layer.moe.topK, experts);
    const expert = mlpParameters(h, layer.moe.expert);
    const sharedExpert = layer.moe.sharedExpert ? mlpParameters(h, layer.moe.sharedExpert) + (layer.moe.sharedExpert.gated ? h : 0) : 0;
    const router = experts * h;
    total += router + experts * expert + sharedExpert;
    routed += experts * expert;
    active += router + topK * expert + sharedExpert;
  }
  return { total, active, experts: routed };
}

export function predictSavings(spec: ModelSpec, layers: PlanLayer[], dtype: DType | 'F8_E4M3'): PredictedSavings {
  const before = countParameters(spec, new Map());
  const after = countParameters(spec, new Map(layers.map((l) => [l.layer, l])));
  const bytes = BYTES_PER_ELEMENT[dtype];
  const expertBytes = spec.expertEncoding === 'mxfp4' ? MXFP4_BYTES_PER_WEIGHT : bytes;
  const stored = (count: ParameterCount) => (count.total - count.experts) * bytes + count.experts * expertBytes;
  return {
    dtype: spec.expertEncoding === 'mxfp4' ? `${dtype} (experts MXFP4)` : dtype,
    parameters: { before: before.total, after: after.total },
    bytes: { before: stored(before), after: stored(after) },
    activeParametersPerToken: { before: before.active, after: after.active },
  };
}
