/**
 * Scaled RoPE frequencies as transformers' modeling_rope_utils.py computes them (fp32 results).
 *
 * YaRN (`_compute_yarn_parameters`, GPT-OSS): the dimensions between the correction bounds of beta_fast and
 * beta_slow rotations blend interpolated (inv_freq / factor) and extrapolated (inv_freq) frequencies along a
 * linear ramp; cos and sin are multiplied by the attention factor (0.1 ln(factor) + 1 unless the config sets it).
 *
 * LongRoPE (`_compute_longrope_parameters` with PhimoeRotaryEmbedding's mscale): inv_freq / ext_factor with the
 * long factors when the sequence is longer than original_max_position_embeddings, else the short ones; cos and
 * sin are multiplied by long_mscale or short_mscale alike.
 */

import type { RopeScaling } from '../checkpoint/modelSpec';

export function scaledRopeFrequencies(headDim: number, theta: number, seqLen: number, scaling: RopeScaling): { invFreq: Float32Array; factor: number } {
  const half = headDim / 2;
  // DeepSeek's YaRN (yarnRope.ts) comes as its table of frequencies already.
  if (scaling.type === 'table') return { invFreq: Float32Array.from(scaling.inverseFrequencies), factor: scaling.attentionFactor };
  const base = Array.from({ length: half }, (_, i) => Math.pow(theta, (2 * i) / headDim));
  if (scaling.type === 'longrope') {
    const long = seqLen > scaling.originalMaxPositions;
    const ext = long ? scaling.longFactor : scaling.shortFactor;
    return { invFreq: Float32Array.from(base, (b, i) => 1 / (ext[i] * b)), factor: long ? scaling.longMscale : scaling.shortMscale };
  }
  const { factor, originalMaxPositions, betaFast, betaSlow, truncate, attentionFactor } = scaling;
  const correctionDim = (rotations: number) => (headDim * Math.log(originalMaxPositions / (rotations * 2 * Math.PI))) / (2 * Math.log(theta));
  let low = correctionDim(betaFast);
  let high = correctionDim(betaSlow);
  if (truncate) {
    low = Math.floor(low);
    high = Math.ceil(high);
  }
  low = Math.max(low, 0);
  high = Math.min(high, headDim - 1);
  if (low === high) high += 0.001;
  const invFreq = Float32Array.from(base, (b, i) => {
    const extrapolation = 1 - Math.min(1, Math.max(0, (i - low) / (high - low)));
    return (1 / (factor * b)) * (1 - extrapolation) + (1 / b) * extrapolation;
  });
  return { invFreq, factor: attentionFactor };
}
