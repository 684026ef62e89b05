/**
 * The float64 reference's pieces for GPT-OSS and Phi-MoE, written from modeling_gpt_oss.py,
 * integrations/mxfp4.py, modeling_phimoe.py and modeling_rope_utils.py directly (nothing of the runtime's code):
 * MXFP4 decoding, GptOssExperts' two layouts and clamped SwiGLU, sparsemixer in eval mode, YaRN and LongRoPE.
 */

import type { LayerSpec, ModelSpec, RopeScaling } from '../../server/src/checkpoint/modelSpec';

export type ReferenceExpert = { gate: Float64Array; up: Float64Array; down: Float64Array; gateBias?: Float64Array; upBias?: Float64Array; downBias?: Float64Array };

const FP4 = [0, 0.5, 1, 1.5, 2, 3, 4, 6, -0, -0.5, -1, -1.5, -2, -3, -4, -6];

/** convert_moe_packed_tensors: [..., G, 16] bytes and [..., G] scales -> [..., G·32], low nibble first, ldexp(v, s - 127). */
export function decodeMxfp4(blocks: Uint8Array, scales: Uint8Array): Float64Array {
  const out = new Float64Array(blocks.length * 2);
  for (let b = 0; b < blocks.length; b++) {
    const exponent = scales[Math.floor(b / 16)] - 127;
    out[2 * b] = FP4[blocks[b] & 15] * 2 ** exponent;
    out[2 * b + 1] = FP4[blocks[b] >> 4] * 2 ** exponent;
  }
  return out;
}

/**
 * GptOssExperts' parameters for every expert as [out, in] matrices: gate_up_proj [E, H, 2I] (x @ W, gate at even
 * columns), down_proj [E, I, H]; from MXFP4 the dequantized [E, 2I, H] / [E, H, I] are already [out, in].
 */
export async function readGptOssExperts(
  spec: ModelSpec,
  layer: Extract<LayerSpec, { kind: 'moe' }>,
  read: (name: string) => Promise<Float64Array>,
  readRaw: (name: string) => Promise<Uint8Array>,
): Promise<ReferenceExpert[]> {
  const names = spec.tensors.layer(layer.index).fusedExperts!;
  const E = layer.moe.numExperts;
  const H = spec.hiddenSize;
  const I = layer.moe.expert.intermediateSize;
  let gateUpOutIn: Float64Array; // [E, 2I, H]
  let downOutIn: Float64Array; // [E, H, I]
  if (names.mxfp4) {
    gateUpOutIn = decodeMxfp4(await readRaw(`${names.gateUp}_blocks`), await readRaw(`${names.gateUp}_scales`));
    downOutIn = decodeMxfp4(await readRaw(`${names.down}_blocks`), await readRaw(`${names.down}_scales`));
  } else {
    const gateUp = await read(names.gateUp);
    const down = await read(names.down);
    gateUpOutIn = new Float64Array(E * 2 * I * H);
    downOutIn = new Float64Array(E * H * I);
    for (let e = 0; e < E; e++) {
      for (let h = 0; h < H; h++) for (let c = 0; c < 2 * I; c++) gateUpOutIn[(e * 2 * I + c) * H + h] = gateUp[(e * H + h) * 2 * I + c];
      for (let i = 0; i < I; i++) for (let h = 0; h < H; h++) downOutIn[(e * H + h) * I + i] = down[(e * I + i) * H + h];
    }
  }
  const gateUpBias = await read(names.gateUpBias!);
  const downBias = await read(names.downBias!);
  return Array.from({ length: E }, (_, e) => {
    const rows = (parity: number) => {
      const m = new Float64Array(I * H);
      for (let i = 0; i < I; i++) m.set(gateUpOutIn.subarray((e * 2 * I + 2 * i + parity) * H, (e * 2 * I + 2 * i + parity + 1) * H), i * H);
      return m;
    };
    const bias = (parity: number) => Float64Array.from({ length: I }, (_, i) => gateUpBias[e * 2 * I + 2 * i + parity]);
    return { gate: rows(0), up: rows(1), down: downOutIn.slice(e * H * I, (e + 1) * H * I), gateBias: bias(0), upBias: bias(1), downBias: downBias.slice(e * H, (e + 1) * H) };
  });
}

/** GptOssExperts on one token: gate/up with biases, gate <= limit, up in [-limit, limit], (up + 1) · gate · sigmoid(alpha · gate). */
export function clampedSwigluExpert(x: ArrayLike<number>, w: ReferenceExpert, I: number, H: number, alpha: number, limit: number): Float64Array {
  const act = new Float64Array(I);
  for (let i = 0; i < I; i++) {
    let gate = w.gateBias?.[i] ?? 0;
    let up = w.upBias?.[i] ?? 0;
    for (let h = 0; h < H; h++) {
      gate += x[h] * w.gate[i * H + h];
      up += x[h] * w.up[i * H + h];
    }
    gate = Math.min(gate, limit);
    up = Math.min(Math.max(up, -limit), limit);
    act[i] = (up + 1) * gate * (1 / (1 + Math.exp(-alpha * gate)));
  }
  const out = new Float64Array(H);
  for (let h = 0; h < H; h++) {
    let sum = w.downBias?.[h] ?? 0;
    for (let i = 0; i < I; i++) sum += act[i] * w.down[h * I + i];
    out[h] = sum;
  }
  return out;
}

/** sparsemixer(scores, jitter_eps, training=False): [expert, multiplier] for the top-1 and top-2 picks. */
export function sparsemixer(scores: number[], jitterEps: number): { expert: number; weight: number }[] {
  const pickFrom = (candidates: number[]) => {
    let best = 0;
    for (let e = 1; e < candidates.length; e++) if (candidates[e] > candidates[best]) best = e;
    const max = candidates[best];
    const masked = candidates.map((c, e) => ((max - scores[e]) / Math.max(Math.abs(scores[e]), max) > 2 * jitterEps ? -Infinity : c));
    const top = Math.max(...masked);
    const total = masked.reduce((s, v) => s + Math.exp(v - top), 0);
    return { expert: best, weight: Math.exp(masked[best] - top) / total };
  };
  const first = pickFrom(scores);
  const second = pickFrom(scores.map((s, e) => (e === first.expert ? -Infinity : s)));
  return [first, second];
}

/** modeling_rope_utils.py's inverse frequencies and cos/sin factor, in float64. */
export function referenceRope(headDim: number, theta: number, seqLen: number, scaling?: RopeScaling): { invFreq: number[]; factor: number } {
  const half = headDim / 2;
  const plain = Array.from({ length: half }, (_, i) => 1 / theta ** ((2 * i) / headDim));
  if (!scaling) return { invFreq: plain, factor: 1 };
  if (scaling.type === 'table') return { invFreq: scaling.inverseFrequencies, factor: scaling.attentionFactor };
  if (scaling.type === 'longrope') {
    const long = seqLen > scaling.originalMaxPositions;
    const ext = long ? scaling.longFactor : scaling.shortFactor;
    return { invFreq: plain.map((f, i) => f / ext[i]), factor: long ? scaling.longMscale : scaling.shortMscale };
  }
  const dimOf = (rotations: number) => (headDim * Math.log(scaling.originalMaxPositions / (rotations * 2 * Math.PI))) / (2 * Math.log(theta));
  let [low, high] = [dimOf(scaling.betaFast), dimOf(scaling.betaSlow)];
  if (scaling.truncate) [low, high] = [Math.floor(low), Math.ceil(high)];
  [low, high] = [Math.max(low, 0), Math.min(high, headDim - 1)];
  if (low === high) high += 0.001;
  return {
    invFreq: plain.map((f, i) => {
      const ramp = Math.min(1, Math.max(0, (i - low) / (high - low)));
      // inv_freq_interpolation · (1 - extrapolation_factor) + inv_freq_extrapolation · extrapolation_factor, extrapolation_factor = 1 - ramp.
      return (f / scaling.factor) * ramp + f * (1 - ramp);
    }),
    factor: scaling.attentionFactor,
  };
}

/** nn.LayerNorm over rows of width `cols`. */
export function layerNormRows(x: Float64Array, cols: number, weight: ArrayLike<number>, bias: ArrayLike<number>, eps: number): Float64Array {
  const y = new Float64Array(x.length);
  for (let r = 0; r < x.length / cols; r++) {
    let mean = 0;
    for (let c = 0; c < cols; c++) mean += x[r * cols + c];
    mean /= cols;
    let variance = 0;
    for (let c = 0; c < cols; c++) variance += (x[r * cols + c] - mean) ** 2;
    variance /= cols;
    const scale = 1 / Math.sqrt(variance + eps);
    for (let c = 0; c < cols; c++) y[r * cols + c] = (x[r * cols + c] - mean) * scale * weight[c] + bias[c];
  }
  return y;
}
