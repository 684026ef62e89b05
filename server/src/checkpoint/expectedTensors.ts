/**
 * Every tensor a ModelSpec needs, with its shape in HF layout (a Linear's weight is [out, in]).
 * Load-time validation checks checkpoints against this list; test fixtures generate from it.
 */

import type { FusedExpertNames, MlaSpec, MlaTensorNames, MlpTensorNames, ModelSpec } from './modelSpec';
import { mxfp4BlocksName, mxfp4ScalesName, mxfp4Shapes } from './mxfp4';

export interface ExpectedTensor {
  name: string;
  shape: number[];
  /** Stored as this non-float dtype (MXFP4 blocks and scales are U8); absent: F32, F16 or BF16. */
  dtype?: 'U8';
}

function mlpTensors(names: MlpTensorNames, hidden: number, intermediate: number): ExpectedTensor[] {
  return [
    { name: names.gate, shape: [intermediate, hidden] },
    { name: names.up, shape: [intermediate, hidden] },
    { name: names.down, shape: [hidden, intermediate] },
  ];
}

/** DeepseekV3Attention's projections (o_proj aside): q (direct or through the q LoRA) and the compressed kv. */
function mlaTensors(names: MlaTensorNames, mla: MlaSpec, heads: number, hidden: number): ExpectedTensor[] {
  const qkHeadDim = mla.nopeHeadDim + mla.ropeHeadDim;
  const query: ExpectedTensor[] = names.q
    ? [{ name: names.q, shape: [heads * qkHeadDim, hidden] }]
    : [
        { name: names.qA!, shape: [mla.qLoraRank!, hidden] },
        { name: names.qANorm!, shape: [mla.qLoraRank!] },
        { name: names.qB!, shape: [heads * qkHeadDim, mla.qLoraRank!] },
      ];
  return [
    ...query,
    { name: names.kvA, shape: [mla.kvLoraRank + mla.ropeHeadDim, hidden] },
    { name: names.kvANorm, shape: [mla.kvLoraRank] },
    { name: names.kvB, shape: [heads * (mla.nopeHeadDim + mla.vHeadDim), mla.kvLoraRank] },
  ];
}

/** In checkpoint order: embeddings, then each layer, then the final norm and lm_head. */
export function listExpectedTensors(spec: ModelSpec): ExpectedTensor[] {
  const hidden = spec.hiddenSize;
  const { numHeads, numKvHeads, headDim, qkNorm } = spec.attention;
  const qSize = numHeads * headDim;
  const kvSize = numKvHeads * headDim;
  const expected: ExpectedTensor[] = [{ name: spec.tensors.embedTokens, shape: [spec.vocabSize, hidden] }];

  for (const layer of spec.layers) {
    const names = spec.tensors.layer(layer.index);
    if (names.mla && spec.attention.mla) {
      expected.push({ name: names.inputNorm, shape: [hidden] }, ...mlaTensors(names.mla, spec.attention.mla, numHeads, hidden), { name: names.o, shape: [hidden, numHeads * spec.attention.mla.vHeadDim] });
    } else expected.push(
      { name: names.inputNorm, shape: [hidden] },
      { name: names.q, shape: [qSize, hidden] },
      { name: names.k, shape: [kvSize, hidden] },
      { name: names.v, shape: [kvSize, hidden] },
      { name: names.o, shape: [hidden, qSize] },
    );
    if (names.qBias && names.kBias && names.vBias) {
      expected.push({ name: names.qBias, shape: [qSize] }, { name: names.kBias, shape: [kvSize] }, { name: names.vBias, shape: [kvSize] });
    }
    if (names.oBias) expected.push({ name: names.oBias, shape: [hidden] });
    if (names.sinks) expected.push({ name: names.sinks, shape: [numHeads] });
    if (names.inputNormBias) expected.push({ name: names.inputNormBias, shape: [hidden] });
    if (names.qNorm && names.kNorm) {
      // Qwen3-MoE normalises each head with one shared weight; OLMoE normalises the whole projection.
      const perHead = qkNorm === 'perHead';
      expected.push(
        { name: names.qNorm, shape: [perHead ? headDim : qSize] },
        { name: names.kNorm, shape: [perHead ? headDim : kvSize] },
      );
    }
    expected.push({ name: names.postAttentionNorm, shape: [hidden] });
    if (names.postAttentionNormBias) expected.push({ name: names.postAttentionNormBias, shape: [hidden] });

    if (layer.kind === 'dense') {
      if (names.mlp) expected.push(...mlpTensors(names.mlp, hidden, layer.mlp.intermediateSize));
      continue;
    }
    const { moe } = layer;
    if (names.router) expected.push({ name: names.router, shape: [moe.numExperts, hidden] });
    if (names.routerBias) expected.push({ name: names.routerBias, shape: [moe.numExperts] });
    if (names.correctionBias) expected.push({ name: names.correctionBias, shape: [moe.numExperts] });
    if (names.fusedExperts?.layout === 'interleavedInOut') expected.push(...gptOssExperts(names.fusedExperts, moe.numExperts, hidden, moe.expert.intermediateSize));
    else if (names.fusedExperts) {
      const I = moe.expert.intermediateSize;
      expected.push({ name: names.fusedExperts.gateUp, shape: [moe.numExperts, 2 * I, hidden] }, { name: names.fusedExperts.down, shape: [moe.numExperts, hidden, I] });
    }
    for (let j = 0; j < moe.numExperts && names.expert; j++) {
      expected.push(...mlpTensors(names.expert(j), hidden, moe.expert.intermediateSize));
    }
    if (moe.sharedExpert && names.sharedExpert) {
      expected.push(...mlpTensors(names.sharedExpert, hidden, moe.sharedExpert.intermediateSize));
    }
    if (names.sharedExpertGate) expected.push({ name: names.sharedExpertGate, shape: [1, hidden] });
  }

  expected.push({ name: spec.tensors.finalNorm, shape: [hidden] });
  if (spec.tensors.finalNormBias) expected.push({ name: spec.tensors.finalNormBias, shape: [hidden] });
  if (spec.tensors.lmHead) expected.push({ name: spec.tensors.lmHead, shape: [spec.vocabSize, hidden] });
  if (spec.tensors.lmHeadBias) expected.push({ name: spec.tensors.lmHeadBias, shape: [spec.vocabSize] });
  return expected;
}

/**
 * GptOssExperts: gate_up_proj [E, H, 2I] and down_proj [E, I, H] as parameters ([in, out]), or, in MXFP4,
 * their [out, in] transposes as blocks and scales; the biases [E, 2I] and [E, H] are never quantized.
 */
function gptOssExperts(names: FusedExpertNames, E: number, H: number, I: number): ExpectedTensor[] {
  const biases = [
    { name: names.gateUpBias!, shape: [E, 2 * I] },
    { name: names.downBias!, shape: [E, H] },
  ];
  if (!names.mxfp4) return [{ name: names.gateUp, shape: [E, H, 2 * I] }, { name: names.down, shape: [E, I, H] }, ...biases];
  const quantized = (weight: string, out: number, inputs: number): ExpectedTensor[] => {
    const { blocks, scales } = mxfp4Shapes(E, out, inputs);
    return [
      { name: mxfp4BlocksName(weight), shape: blocks, dtype: 'U8' },
      { name: mxfp4ScalesName(weight), shape: scales, dtype: 'U8' },
    ];
  };
  return [...quantized(names.gateUp, 2 * I, H), ...biases.slice(0, 1), ...quantized(names.down, H, I), ...biases.slice(1)];
}
