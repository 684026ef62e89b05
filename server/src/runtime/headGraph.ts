import type { ModelSpec, WeightSource } from '../checkpoint/modelSpec';
import { GraphBuilder, WeightData } from './graphBuilder';
import { layerNormOp, linearOp, rmsNormOp } from './layerGraph';
import type { Precision } from './memoryBudget';

export const HeadIO = {
  hidden: 'hidden', // [rows, hidden]: only the rows whose logits or loss are wanted
  targets: 'targets', // [rows] int32: the next token of each row (any valid id when only logits are fetched)
  logits: 'logits', // [rows, vocab]
  nll: 'nll', // [rows]: -log p(target), computed here so the vocab-wide logits need not leave the session
} as const;

/** The head's bias readers where the model has them (Phi-MoE). */
export function headBiases(spec: ModelSpec, weights: WeightSource): { finalNorm?: WeightData; lmHead?: WeightData } {
  const reader = (name: string | undefined) => name && (() => weights.readFloat32(name));
  return { finalNorm: reader(spec.tensors.finalNormBias) || undefined, lmHead: reader(spec.tensors.lmHeadBias) || undefined };
}

/**
 * Final norm, lm_head (or the tied embedding) and the next-token cross-entropy. In int8 the lm_head product
 * is int8 like the layers' projections (per vocabulary row, quantizedLinear.ts): with the layers at int8
 * speed the fp32 head was a third to a half of a loss forward on the OLMoE-1B-7B cut, and it holds a quarter
 * of the bytes (Qwen3-30B-A3B's 151,936 x 2048: 0.31 GB against 1.24 GB). The norm and softmax stay fp32.
 */
export function buildHeadGraph(spec: ModelSpec, finalNorm: WeightData, lmHead: WeightData, biases: { finalNorm?: WeightData; lmHead?: WeightData } = {}, precision: Precision = 'fp32'): GraphBuilder {
  const g = new GraphBuilder('head');
  const H = spec.hiddenSize;
  const hidden = g.input(HeadIO.hidden, 'float', ['rows', H]);
  const targets = g.input(HeadIO.targets, 'int32', ['rows']);
  // Phi-MoE: a LayerNorm with bias, and lm_head's bias (Gemm's C).
  const normed = spec.layerNorm
    ? layerNormOp(g, hidden, g.weight('final_norm', finalNorm, [H]), g.weight('final_norm_bias', biases.finalNorm!, [H]), spec.rmsNormEps)
    : rmsNormOp(g, hidden, g.weight('final_norm', finalNorm, [H]), spec.rmsNormEps);
  // linearOp reads lm_head in its stored [vocab, hidden] layout, so a tied embedding needs no transpose.
  // Granite MoE divides the logits by `logits_scaling`: the product's scale (Gemm's alpha in fp32).
  const logitsScaling = spec.scaling?.logitsScaling ?? 1;
  const lmHeadBias = biases.lmHead && g.weight('lm_head_bias', biases.lmHead, [spec.vocabSize]);
  const logits = linearOp(g, normed, 'lm_head', lmHead, spec.vocabSize, H, lmHeadBias, precision, 1 / logitsScaling);
  const logProbs = g.op('LogSoftmax', [logits], { axis: -1 });
  const picked = g.op('GatherElements', [logProbs, g.op('Unsqueeze', [targets, g.constInt64([1])])], { axis: 1 });
  g.output(logits, HeadIO.logits, 'float', ['rows', spec.vocabSize]);
  g.output(g.op('Neg', [g.op('Reshape', [picked, g.constInt64([-1])])]), HeadIO.nll, 'float', ['rows']);
  return g;
}
