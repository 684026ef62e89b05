/**
 * DeepSeek V2/V3 parts of the float64 reference, written from modeling_deepseek_v3.py / modeling_deepseek_v2.py
 * one token and one head at a time: multi-head latent attention with interleaved (complex-pair) RoPE and the
 * YaRN attention factor, and the router (sigmoid or softmax scores, correction bias, group limit).
 */

import type { MlaSpec, ModelSpec, RoutingSpec } from '../../server/src/checkpoint/modelSpec';
import { linear, rmsNorm, type Matrix } from './referenceMath';

type Read = (name: string) => Promise<Float64Array>;

/** Rotates the pairs (v[2i], v[2i+1]) of a rotary slice by position · invFreq[i] (DeepSeek's complex RoPE), times the YaRN factor. */
function rotatePairs(v: Float64Array, position: number, invFreq: number[], factor: number): Float64Array {
  const out = new Float64Array(v.length);
  for (let i = 0; i < v.length / 2; i++) {
    const angle = position * invFreq[i];
    const [re, im] = [v[2 * i], v[2 * i + 1]];
    out[2 * i] = factor * (re * Math.cos(angle) - im * Math.sin(angle));
    out[2 * i + 1] = factor * (im * Math.cos(angle) + re * Math.sin(angle));
  }
  return out;
}

/** Same, for non-interleaved rotary columns (rotate_half: the two halves pair up). */
function rotateHalves(v: Float64Array, position: number, invFreq: number[], factor: number): Float64Array {
  const half = v.length / 2;
  const out = new Float64Array(v.length);
  for (let i = 0; i < half; i++) {
    const angle = position * invFreq[i];
    out[i] = factor * (v[i] * Math.cos(angle) - v[half + i] * Math.sin(angle));
    out[half + i] = factor * (v[half + i] * Math.cos(angle) + v[i] * Math.sin(angle));
  }
  return out;
}

export function inverseFrequencies(spec: ModelSpec, dim: number): number[] {
  const scaling = spec.attention.ropeScaling;
  return (scaling?.type === 'table' ? scaling.inverseFrequencies : undefined) ?? Array.from({ length: dim / 2 }, (_, i) => 1 / Math.pow(spec.attention.ropeTheta, (2 * i) / dim));
}

/** DeepseekV3Attention (eager, causal, one sequence): returns o_proj's input [T, heads · v_head_dim] projected by o_proj. */
export async function mlaAttention(spec: ModelSpec, layerIndex: number, x: Matrix, read: Read): Promise<Matrix> {
  const mla = spec.attention.mla as MlaSpec;
  const names = spec.tensors.layer(layerIndex).mla!;
  const heads = spec.attention.numHeads;
  const T = x.rows;
  const qk = mla.nopeHeadDim + mla.ropeHeadDim;
  const q = names.q ? linear(x, await read(names.q), heads * qk) : linear(rmsNorm(linear(x, await read(names.qA!), mla.qLoraRank!), await read(names.qANorm!), mla.latentNormEps), await read(names.qB!), heads * qk);
  const compressed = linear(x, await read(names.kvA), mla.kvLoraRank + mla.ropeHeadDim);
  const latent: Matrix = { data: new Float64Array(T * mla.kvLoraRank), rows: T, cols: mla.kvLoraRank };
  for (let t = 0; t < T; t++) latent.data.set(compressed.data.subarray(t * compressed.cols, t * compressed.cols + mla.kvLoraRank), t * mla.kvLoraRank);
  const kv = linear(rmsNorm(latent, await read(names.kvANorm), mla.latentNormEps), await read(names.kvB), heads * (mla.nopeHeadDim + mla.vHeadDim));
  const invFreq = inverseFrequencies(spec, mla.ropeHeadDim);
  const scaling = spec.attention.ropeScaling;
  const factor = scaling?.type === 'table' ? scaling.attentionFactor : 1;
  const rotate = mla.interleaved ? rotatePairs : rotateHalves;
  const scale = spec.attention.scale ?? 1 / Math.sqrt(qk);

  const kRot = Array.from({ length: T }, (_, t) => rotate(compressed.data.slice(t * compressed.cols + mla.kvLoraRank, (t + 1) * compressed.cols), t, invFreq, factor));
  const context: Matrix = { data: new Float64Array(T * heads * mla.vHeadDim), rows: T, cols: heads * mla.vHeadDim };
  const kvWidth = mla.nopeHeadDim + mla.vHeadDim;
  for (let h = 0; h < heads; h++) {
    const qNope = (t: number) => q.data.subarray(t * q.cols + h * qk, t * q.cols + h * qk + mla.nopeHeadDim);
    const qRot = (t: number) => rotate(q.data.slice(t * q.cols + h * qk + mla.nopeHeadDim, t * q.cols + (h + 1) * qk), t, invFreq, factor);
    const kNope = (t: number) => kv.data.subarray(t * kv.cols + h * kvWidth, t * kv.cols + h * kvWidth + mla.nopeHeadDim);
    const value = (t: number) => kv.data.subarray(t * kv.cols + h * kvWidth + mla.nopeHeadDim, t * kv.cols + (h + 1) * kvWidth);
    for (let i = 0; i < T; i++) {
      const [qn, qr] = [qNope(i), qRot(i)];
      const scores: number[] = [];
      for (let j = 0; j <= i; j++) {
        let dot = 0;
        const kn = kNope(j);
        for (let d = 0; d < mla.nopeHeadDim; d++) dot += qn[d] * kn[d];
        for (let d = 0; d < mla.ropeHeadDim; d++) dot += qr[d] * kRot[j][d];
        scores.push(dot * scale);
      }
      const max = Math.max(...scores);
      const exps = scores.map((s) => Math.exp(s - max));
      const sum = exps.reduce((a, b) => a + b, 0);
      for (let j = 0; j <= i; j++) {
        const v = value(j);
        for (let d = 0; d < mla.vHeadDim; d++) context.data[i * context.cols + h * mla.vHeadDim + d] += (exps[j] / sum) * v[d];
      }
    }
  }
  return linear(context, await read(spec.tensors.layer(layerIndex).o), spec.hiddenSize);
}

export interface ChosenExpert {
  e: number;
  /** The slot's weight before renormalisation and scaling. */
  p: number;
  /** False for an expert the plan removed (it can only fill a slot when fewer than k remain). */
  valid: boolean;
}

/**
 * One token through DeepseekV3TopkRouter.get_topk_indices (or DeepseekV2Moe's greedy / group_limited_greedy),
 * best choice first; `kept` false marks experts a plan removed, which exist nowhere (choice -inf).
 */
export function deepseekChoose(routing: RoutingSpec, logits: number[], bias: ArrayLike<number> | undefined, kept: boolean[] | undefined, k: number): ChosenExpert[] {
  const E = logits.length;
  const removed = (e: number) => kept !== undefined && !kept[e];
  let scores: number[];
  if (routing.scoring === 'sigmoid') scores = logits.map((v) => 1 / (1 + Math.exp(-v)));
  else {
    const masked = logits.map((v, e) => (removed(e) ? -Infinity : v));
    const max = Math.max(...masked);
    const exps = masked.map((v) => Math.exp(v - max));
    const sum = exps.reduce((a, b) => a + b, 0);
    scores = exps.map((v) => v / sum);
  }
  const choice = scores.map((s, e) => (removed(e) ? -Infinity : s + (routing.correctionBias ? bias![e] : 0)));
  const groups = routing.groups;
  const perGroup = groups ? E / groups.count : 0;
  if (groups && Number.isInteger(perGroup) && perGroup >= (groups.score === 'topTwoSum' ? 2 : 1)) {
    const groupScores = Array.from({ length: groups.count }, (_, gi) => {
      const members = choice.slice(gi * perGroup, (gi + 1) * perGroup).sort((a, b) => b - a);
      return groups.score === 'topTwoSum' ? members[0] + members[1] : members[0];
    });
    const chosenGroups = new Set(groupScores.map((s, gi) => ({ s, gi })).sort((a, b) => b.s - a.s || a.gi - b.gi).slice(0, groups.selected).map((x) => x.gi));
    for (let e = 0; e < E; e++) if (!chosenGroups.has(Math.floor(e / perGroup)) && !removed(e)) choice[e] = 0;
  }
  const order = choice.map((c, e) => ({ c, e })).sort((a, b) => b.c - a.c || a.e - b.e).slice(0, k);
  // V3 weighs by the sigmoid scores; V2 by its masked scores (0 outside the chosen groups).
  return order.map(({ c, e }) => ({ e, p: routing.scoring === 'sigmoid' ? scores[e] : Number.isFinite(c) ? c : 0, valid: c > -Infinity }));
}
