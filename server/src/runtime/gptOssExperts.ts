/**
 * One GPT-OSS expert in the runtime's layout (HF Linear [out, in], separate gate and up), read from either
 * encoding of GptOssExperts: bf16/fp32 parameters gate_up_proj [E, H, 2I] / down_proj [E, I, H], or MXFP4
 * blocks and scales of their [out, in] transposes (mxfp4.ts). Either way one expert's bytes are read at a
 * time, so a layer's 32 experts are never in memory together. Gate and up are interleaved (gate_up[..., ::2]
 * is the gate), in the weights and in gate_up_proj_bias alike.
 */

import type { FusedExpertNames, WeightSource } from '../checkpoint/modelSpec';
import { dequantizeMxfp4Rows, MXFP4_BLOCK, MXFP4_BLOCK_BYTES, mxfp4BlocksName, mxfp4ScalesName } from '../checkpoint/mxfp4';
import type { WeightData } from './graphBuilder';
import type { MlpWeights } from './layerWeights';

export function gptOssExpert(source: WeightSource, names: FusedExpertNames, H: number, I: number, j: number): MlpWeights {
  const gateUpBias = (parity: 0 | 1): WeightData => async () => everyOther(await source.readFloat32Range(names.gateUpBias!, j * 2 * I, 2 * I), parity);
  const biases = { gateBias: gateUpBias(0), upBias: gateUpBias(1), downBias: () => source.readFloat32Range(names.downBias!, j * H, H) };
  if (names.mxfp4) {
    const rows = async (weight: string, out: number, inputs: number, first: number, step: number) => {
      const groups = inputs / MXFP4_BLOCK;
      const [blocks, scales] = await Promise.all([
        source.readRawRange(mxfp4BlocksName(weight), j * out * groups * MXFP4_BLOCK_BYTES, out * groups * MXFP4_BLOCK_BYTES),
        source.readRawRange(mxfp4ScalesName(weight), j * out * groups, out * groups),
      ]);
      return dequantizeMxfp4Rows(blocks, scales, groups, first, step);
    };
    return { gate: () => rows(names.gateUp, 2 * I, H, 0, 2), up: () => rows(names.gateUp, 2 * I, H, 1, 2), down: () => rows(names.down, H, I, 0, 1), ...biases };
  }
  // [in, out] slabs, transposed to [out, in]; the gate_up slab's columns alternate gate, up.
  const gateOrUp = (parity: 0 | 1): WeightData => async () => {
    const slab = await source.readFloat32Range(names.gateUp, j * H * 2 * I, H * 2 * I);
    const out = new Float32Array(I * H);
    for (let i = 0; i < I; i++) for (let h = 0; h < H; h++) out[i * H + h] = slab[h * 2 * I + 2 * i + parity];
    return out;
  };
  const down: WeightData = async () => {
    const slab = await source.readFloat32Range(names.down, j * I * H, I * H);
    const out = new Float32Array(H * I);
    for (let h = 0; h < H; h++) for (let i = 0; i < I; i++) out[h * I + i] = slab[i * H + h];
    return out;
  };
  return { gate: gateOrUp(0), up: gateOrUp(1), down, ...biases };
}

function everyOther(values: Float32Array, parity: 0 | 1): Float32Array {
  return Float32Array.from({ length: values.length / 2 }, (_, i) => values[2 * i + parity]);
}
