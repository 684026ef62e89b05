/**
 * The profiling statistics the plan methods read, per MoE layer. A minimal contract of our own so the
 * methods stay pure and testable; the profile stage produces (or is adapted to) these shapes.
 */

/** Adaptive gating's trade-off for one layer: at threshold T, this share of tokens runs one expert. */
export interface GatingCurve {
  /** Ascending thresholds on p1 - p2. */
  threshold: number[];
  /** Share of tokens (0..1) with p1 - p2 > T, which therefore use only their first expert; non-increasing in T. */
  singleExpertShare: number[];
}

export interface LayerStatistics {
  /** Decoder layer index (an MoE layer). */
  layer: number;
  /**
   * DeepSeek's group limit: n_group equal groups of consecutive experts (absent or 1: none). Ranking methods
   * then keep the same number from every group, so the limit survives the export (groupLimit.ts).
   */
  expertGroups?: number;
  /** Per expert: calibration tokens whose top-k contains the expert. */
  tokenCount: number[];
  /** Per expert: the sum over calibration tokens of the expert's gate weight. */
  softCount: number[];
  /** Per expert, REAP saliency: the mean over its routed tokens of gate weight × ‖expert output‖₂. */
  reapScore?: number[];
  /** E × E cosine similarity between experts' router-logit columns over the calibration tokens. */
  routerLogitSimilarity?: number[][];
  /** E × E Pearson correlation of the same columns (each centred on its mean). */
  routerLogitCorrelation?: number[][];
  gatingCurve?: GatingCurve;
}

/** One MoE layer as the methods see it when they need no statistics (random, NAEE, EEP). */
export interface MoeLayerShape {
  layer: number;
  numExperts: number;
}

/** How many experts each layer keeps: one count for every layer, or a count per layer index. */
export type ExpertTarget = number | Record<number, number>;

export function targetFor(target: ExpertTarget, layer: number, numExperts: number): number {
  const count = typeof target === 'number' ? target : target[layer];
  if (count === undefined) throw new Error(`no target expert count for layer ${layer}`);
  if (!Number.isInteger(count) || count < 1 || count > numExperts) {
    throw new Error(`target ${count} experts for layer ${layer} is not in 1..${numExperts}`);
  }
  return count;
}

export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw signal.reason ?? new Error('aborted');
}
