/**
 * YaRN-scaled RoPE as transformers computes it (modeling_rope_utils.py `_compute_yarn_parameters`), in
 * fp32 where torch computes in fp32: the inverse frequencies blend interpolated (1 / (factor · θ^(2i/d)))
 * and original frequencies along a linear ramp between the correction dimensions of `beta_fast` and
 * `beta_slow`, and cos/sin are multiplied by the attention factor.
 */

import type { RopeScalingSpec } from './modelSpec';

export interface YarnParameters {
  factor: number;
  originalMaxPositionEmbeddings: number;
  betaFast?: number;
  betaSlow?: number;
  mscale?: number;
  mscaleAllDim?: number;
  attentionFactor?: number;
  /** transformers' default is true (floor/ceil the correction range). */
  truncate?: boolean;
}

/** transformers' get_mscale / DeepSeek's yarn_get_mscale. */
export function yarnMscale(scale: number, mscale = 1): number {
  return scale <= 1 ? 1 : 0.1 * mscale * Math.log(scale) + 1;
}

export function yarnRope(dim: number, base: number, p: YarnParameters): RopeScalingSpec {
  const attentionFactor =
    p.attentionFactor ?? (p.mscale && p.mscaleAllDim ? yarnMscale(p.factor, p.mscale) / yarnMscale(p.factor, p.mscaleAllDim) : yarnMscale(p.factor));
  const betaFast = p.betaFast || 32;
  const betaSlow = p.betaSlow || 1;
  const correctionDim = (rotations: number) => (dim * Math.log(p.originalMaxPositionEmbeddings / (rotations * 2 * Math.PI))) / (2 * Math.log(base));
  let low = correctionDim(betaFast);
  let high = correctionDim(betaSlow);
  if (p.truncate ?? true) {
    low = Math.floor(low);
    high = Math.ceil(high);
  }
  low = Math.max(low, 0);
  high = Math.min(high, dim - 1);
  if (low === high) high += 0.001;
  const f = Math.fround;
  const inverseFrequencies = Array.from({ length: dim / 2 }, (_, i) => {
    const posFreq = f(Math.pow(base, f(f(2 * i) / dim)));
    const extrapolation = f(1 / posFreq);
    const interpolation = f(1 / f(p.factor * posFreq));
    const ramp = Math.min(Math.max(f(f(i - low) / f(high - low)), 0), 1);
    const extrapolationFactor = f(1 - ramp);
    return f(f(interpolation * f(1 - extrapolationFactor)) + f(extrapolation * extrapolationFactor));
  });
  return { type: 'table', inverseFrequencies, attentionFactor };
}
