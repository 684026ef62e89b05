import type { LayerSpec, ModelSpec, TensorNames } from '../../../server/src/checkpoint/modelSpec';

/**
 * A Mixtral-shaped spec small enough to count by hand: vocab 10, hidden 4, 2 query heads and 1 KV head
 * of size 2, `numLayers` MoE layers of `numExperts` experts (intermediate 3) with top-2.
 */
export function tinySpec(options: { numExperts?: number; numLayers?: number; normTopKProb?: boolean; denseLayers?: number[]; fusedExperts?: boolean } = {}): ModelSpec {
  const numExperts = options.numExperts ?? 8;
  const layers: LayerSpec[] = Array.from({ length: options.numLayers ?? 2 }, (_, index) =>
    options.denseLayers?.includes(index)
      ? { index, kind: 'dense', mlp: { intermediateSize: 3 } }
      : { index, kind: 'moe', moe: { numExperts, topK: 2, normTopKProb: options.normTopKProb ?? true, expert: { intermediateSize: 3 } } });
  return {
    architecture: 'MixtralForCausalLM',
    vocabSize: 10,
    hiddenSize: 4,
    rmsNormEps: 1e-5,
    tieWordEmbeddings: false,
    attention: { numHeads: 2, numKvHeads: 1, headDim: 2, qkvBias: false, qkNorm: 'none', ropeTheta: 10000 },
    layers,
    // Only what plan checks read: whether a layer's experts are fused (Granite-style), which neuron orders refuse.
    tensors: { layer: () => (options.fusedExperts ? { fusedExperts: { gateUp: 'input_linear', down: 'output_linear' } } : {}) } as unknown as TensorNames,
  };
}
