import type { ModelSummary } from '../../../common/protocol';
import type { LoadedCheckpoint, ModelSpec } from './modelSpec';

/** The router's rule as the architecture's modeling file applies it, for `moe-studio info`. */
export function describeRouting(spec: ModelSpec): string {
  const first = spec.layers.find((layer) => layer.kind === 'moe');
  if (!first || first.kind !== 'moe') return 'no MoE layers';
  const { numExperts, topK, normTopKProb, sharedExpert, routing, sparsemixer, routerBias } = first.moe;
  if (routing) {
    const groups = routing.groups && routing.groups.count > 1 ? `, top-${routing.groups.selected} of ${routing.groups.count} groups (by ${routing.groups.score === 'topTwoSum' ? 'the sum of their best two' : 'their best expert'})` : '';
    const choice = `${routing.scoring} over ${numExperts} experts${routing.correctionBias ? ', correction bias for the choice' : ''}${groups ?? ''}`;
    return `${choice}, top-${topK}${normTopKProb ? ', renormalised' : ''}${routing.scalingFactor !== 1 ? `, times ${routing.scalingFactor}` : ''}${sharedExpert ? ', plus an always-on shared expert' : ''}`;
  }
  const rule = sparsemixer
    ? `sparsemixer over ${numExperts} experts: top-${topK} one at a time, each weighted by a softmax over the logits within ${2 * sparsemixer.jitterEps} (relative) of it`
    : spec.architecture === 'GraniteMoeForCausalLM' || spec.architecture === 'GptOssForCausalLM'
      ? `top-${topK} of ${numExperts} router logits${routerBias ? ' (with bias)' : ''}, softmax over those ${topK}`
      : `softmax over ${numExperts} experts, top-${topK}${normTopKProb ? ', renormalised' : ''}`;
  return `${rule}${sharedExpert ? ', plus a sigmoid-gated shared expert' : ''}`;
}

/** What a user wants to know about a model folder before running it: shape, experts, size. */
export function describeCheckpoint({ folder, spec, weights, uncomputableTensors = [] }: LoadedCheckpoint & { uncomputableTensors?: { name: string; dtype: string; shape: number[] }[] }): ModelSummary {
  const dtypes: Record<string, number> = {};
  let parameters = 0;
  let bytes = 0;
  for (const name of weights.names()) {
    const info = weights.info(name);
    dtypes[info.dtype] = (dtypes[info.dtype] ?? 0) + 1;
    parameters += info.shape.reduce((a, b) => a * b, 1);
    bytes += info.byteLength;
  }
  // GPT-OSS's MXFP4 experts: each U8 of `_blocks` holds two weights, `_scales` are one byte per 32 of them.
  for (const tensor of uncomputableTensors) {
    const elements = tensor.shape.reduce((a, b) => a * b, 1);
    dtypes[tensor.dtype] = (dtypes[tensor.dtype] ?? 0) + 1;
    if (tensor.dtype === 'U8') {
      bytes += elements;
      if (tensor.name.endsWith('_blocks')) parameters += 2 * elements;
    }
  }
  let expertParameters = 0;
  let inactiveParameters = 0;
  for (const layer of spec.layers) {
    if (layer.kind !== 'moe') continue;
    const perExpert = 3 * spec.hiddenSize * layer.moe.expert.intermediateSize;
    expertParameters += perExpert * layer.moe.numExperts;
    inactiveParameters += perExpert * (layer.moe.numExperts - layer.moe.topK);
  }
  const moeLayers = spec.layers.filter((layer) => layer.kind === 'moe');
  const first = moeLayers[0]?.kind === 'moe' ? moeLayers[0].moe : undefined;
  return {
    folder,
    architecture: spec.architecture,
    routing: describeRouting(spec),
    layers: spec.layers.length,
    moeLayers: moeLayers.map((layer) => layer.index),
    numExperts: first?.numExperts ?? 0,
    topK: first?.topK ?? 0,
    hiddenSize: spec.hiddenSize,
    vocabSize: spec.vocabSize,
    dtypes,
    parameters,
    expertParameters,
    activeParametersPerToken: parameters - inactiveParameters,
    bytes,
  };
}
