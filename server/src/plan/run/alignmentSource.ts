/** Neuron alignment's view of a checkpoint: its experts' weights, read when a merge needs them. */
import type { DType, ModelSpec, WeightSource } from '../../checkpoint/modelSpec';
import { layerWeights, resolveWeight } from '../../runtime/layerWeights';
import { neuronOrderRefusal } from '../../runtime/neuronOrder';
import type { AlignmentSource } from '../methods/neuronAlignment';

export function checkpointAlignmentSource(spec: ModelSpec, weights: WeightSource, dtype: DType | 'F8_E4M3'): AlignmentSource {
  const moe = (layer: number) => {
    const layerSpec = spec.layers[layer];
    if (layerSpec?.kind !== 'moe') throw new Error(`layer ${layer} is not an MoE layer`);
    return layerSpec;
  };
  return {
    hidden: spec.hiddenSize,
    intermediate: (layer) => moe(layer).moe.expert.intermediateSize,
    // FP8 experts: a merged expert is refused at export (exportLayout.ts), so neither a merge nor its alignment could be written.
    refusal: (layer) => (dtype === 'F8_E4M3' ? 'the experts are stored in FP8; neuron orders apply only to F32, F16 and BF16 experts' : neuronOrderRefusal(spec, layer)),
    expert: async (layer, id) => {
      const expert = layerWeights(spec, weights, moe(layer)).experts![id];
      return { gate: await resolveWeight(expert.gate), up: await resolveWeight(expert.up), down: await resolveWeight(expert.down) };
    },
    router: async (layer) => {
      const router = layerWeights(spec, weights, moe(layer)).router;
      if (!router) throw new Error(`layer ${layer} has no router weight`);
      return resolveWeight(router);
    },
  };
}
