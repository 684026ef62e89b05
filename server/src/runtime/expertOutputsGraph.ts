import type { LayerSpec, ModelSpec } from '../checkpoint/modelSpec';
import { GraphBuilder } from './graphBuilder';
import type { MlpWeights } from './layerWeights';
import { swigluOp } from './layerGraph';

/** Names of the expert-outputs graph's input and outputs. */
export const ExpertOutputsIO = {
  inputs: 'moe_input', // [tokens, hidden]: what the layer's router and experts see
  output: (expert: number) => `expert_${expert}`, // [tokens, hidden]: down(silu(x gate^T) * (x up^T)), before any gate
} as const;

/**
 * Every expert of one MoE layer applied to every token: what NAEE's layer reconstruction needs (each
 * expert's output on the calibration tokens, whatever the routing). In fp32 whatever the runtime's
 * precision: the reconstruction measures the checkpoint's experts. In JavaScript this is tokens x E x
 * 6HI flops at about 1 GFLOP/s (OLMoE-1B-7B, 1024 tokens: about 400 GFLOP a layer, minutes); as
 * onnxruntime Gemms it runs at the MatMul rate.
 */
export function buildExpertOutputsGraph(spec: ModelSpec, layer: LayerSpec, experts: MlpWeights[]): GraphBuilder {
  if (layer.kind !== 'moe') throw new Error(`layer ${layer.index} is not a MoE layer`);
  const g = new GraphBuilder(`experts${layer.index}`);
  const H = spec.hiddenSize;
  const I = layer.moe.expert.intermediateSize;
  const x = g.input(ExpertOutputsIO.inputs, 'float', ['tokens', H]);
  experts.forEach((expert, e) => {
    // The layer graph's own SwiGLU (GPT-OSS: its biases and clamped activation), in fp32.
    g.output(swigluOp(g, x, `e${e}`, expert, I, H, undefined, 'fp32', layer.moe.clampedSwiglu), ExpertOutputsIO.output(e), 'float', ['tokens', H]);
  });
  return g;
}
