/**
 * Every tensor of a layer whose first axis is the expert axis, with the side of the expert it belongs to
 * ('down' slabs carry output compensation's scale). Granite MoE: input_linear and output_linear. GPT-OSS:
 * gate_up_proj and down_proj (or, in MXFP4, their `_blocks` and `_scales`) and both expert biases.
 */

import type { FusedExpertNames } from '../checkpoint/modelSpec';
import { mxfp4BlocksName, mxfp4ScalesName } from '../checkpoint/mxfp4';

export type FusedRole = 'gateUp' | 'down';

export function fusedExpertTensors(names: FusedExpertNames): { name: string; role: FusedRole }[] {
  const weights = (weight: string, role: FusedRole) => (names.mxfp4 ? [mxfp4BlocksName(weight), mxfp4ScalesName(weight)] : [weight]).map((name) => ({ name, role }));
  return [
    ...weights(names.gateUp, 'gateUp'),
    ...weights(names.down, 'down'),
    ...(names.gateUpBias ? [{ name: names.gateUpBias, role: 'gateUp' as const }] : []),
    ...(names.downBias ? [{ name: names.downBias, role: 'down' as const }] : []),
  ];
}
