/**
 * Adaptive gating (Li et al., 2023, "Adaptive Gating in Mixture-of-Experts based Language Models"): a
 * token runs only its first expert when the router is confident, p1 - p2 > T, and its full top-k
 * otherwise (the runtime's `adaptiveThreshold`). Smaller T skips more: T = ∞ is the unchanged model.
 */
import { type GatingCurve, type LayerStatistics, throwIfAborted } from '../statistics';

/**
 * The largest T whose single-expert share still reaches `targetShare`, linearly interpolated between
 * the curve's points (the share is non-increasing in T). Clamped to the curve: a share the curve never
 * reaches gives its smallest threshold, a share it always reaches its largest.
 */
export function thresholdForSingleExpertShare(curve: GatingCurve, targetShare: number): number {
  const { threshold: t, singleExpertShare: share } = curve;
  if (t.length === 0 || t.length !== share.length) throw new Error('a gating curve needs as many shares as thresholds, at least one');
  if (share[t.length - 1] >= targetShare) return t[t.length - 1];
  for (let i = t.length - 2; i >= 0; i--) {
    if (share[i] >= targetShare) {
      const fraction = (share[i] - targetShare) / (share[i] - share[i + 1]);
      return t[i] + fraction * (t[i + 1] - t[i]);
    }
  }
  return t[0];
}

/** Per layer, the threshold that reaches `targetShare` single-expert tokens on the calibration curve. */
export function adaptiveGatingForShare(statistics: LayerStatistics[], targetShare: number): { layer: number; adaptiveThreshold: number }[] {
  return statistics.map((s) => {
    if (!s.gatingCurve) throw new Error(`layer ${s.layer}: adaptive gating needs a gatingCurve`);
    return { layer: s.layer, adaptiveThreshold: thresholdForSingleExpertShare(s.gatingCurve, targetShare) };
  });
}

export interface QualityBoundOptions {
  layers: number[];
  /** Thresholds to consider, e.g. the gating curve's. */
  candidates: number[];
  /** The quality with this layer gated at T (higher is better; assumed non-decreasing in T). */
  quality: (layer: number, threshold: number) => Promise<number>;
  minimumQuality: number;
  signal?: AbortSignal;
}

/**
 * Per layer, the most aggressive (smallest) candidate T whose quality stays at or above the bound, by
 * binary search over the sorted candidates. A layer no candidate satisfies gets no adaptive gating.
 * (Quality only grows with T, so "the largest T within the bound" would always be the unchanged model;
 * the useful answer is the smallest.)
 */
export async function adaptiveGatingWithinQuality(options: QualityBoundOptions): Promise<{ layer: number; adaptiveThreshold?: number }[]> {
  const candidates = [...new Set(options.candidates)].sort((a, b) => a - b);
  const result: { layer: number; adaptiveThreshold?: number }[] = [];
  for (const layer of options.layers) {
    let low = 0;
    let high = candidates.length; // the answer is candidates[high], or none when high === length
    while (low < high) {
      throwIfAborted(options.signal);
      const middle = (low + high) >> 1;
      if ((await options.quality(layer, candidates[middle])) >= options.minimumQuality) high = middle;
      else low = middle + 1;
    }
    result.push(high < candidates.length ? { layer, adaptiveThreshold: candidates[high] } : { layer });
  }
  return result;
}
