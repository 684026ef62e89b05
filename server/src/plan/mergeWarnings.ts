/**
 * Merges that average experts the calibration data relies on. A merged expert is the weighted mean of
 * its sources' weights, with no retraining, so two experts that each carry a large share of the task's
 * routing rarely survive being averaged into one: on the demo model, UNCURL on arithmetic merges
 * exactly the two or three experts arithmetic uses and ends worse than random pruning (demo/README.md).
 * This finds such rows so the user hears about it when the plan is made, not after evaluating it.
 */
import type { PlanLayer } from './planFile';

/** An expert counts as heavily used when its share of the layer's routed slots is at least this many times the uniform share 1/E. */
export const HEAVY_USE_FACTOR = 2;
/** Below this merge coefficient an expert's weights barely enter the row (EEP's small perturbations). */
export const MIN_MERGE_COEFFICIENT = 0.1;

export interface HeavyMerge {
  layer: number;
  /** The row of the layer's mergeMatrix (position in keptExperts). */
  row: number;
  /** The heavily used experts the row averages, with their share of the layer's routed slots (0..1). */
  experts: { id: number; share: number }[];
}

/**
 * Merge rows that combine two or more heavily used experts. `shares(layer)` gives each expert's share
 * of the layer's routed slots on the calibration data (undefined: the layer is skipped).
 */
export function heavyMerges(layers: PlanLayer[], shares: (layer: number) => number[] | undefined): HeavyMerge[] {
  const found: HeavyMerge[] = [];
  for (const layer of layers) {
    const share = shares(layer.layer);
    if (!layer.mergeMatrix || !share) continue;
    const heavy = HEAVY_USE_FACTOR / share.length;
    layer.mergeMatrix.forEach((coefficients, row) => {
      const experts = coefficients.flatMap((coefficient, id) => (coefficient >= MIN_MERGE_COEFFICIENT && share[id] >= heavy ? [{ id, share: share[id] }] : []));
      if (experts.length >= 2) found.push({ layer: layer.layer, row, experts });
    });
  }
  return found;
}

/** Each expert's share of the routed slots, from token counts. */
export function sharesFromCounts(tokenCount: number[]): number[] {
  const total = tokenCount.reduce((a, b) => a + b, 0);
  return tokenCount.map((count) => (total > 0 ? count / total : 0));
}

const ADVICE = 'Averaging a task\'s main experts into one usually costs quality: evaluate the plan, and compare a pruning method or UNCURL on centred logits ("similarity": "correlation"), which keeps such experts apart.';

function expertList(merge: HeavyMerge): string {
  return merge.experts.map((e) => `${e.id} (${(100 * e.share).toFixed(0)}%)`).join(', ');
}

/** One paragraph for a notification or the CLI; undefined when there is nothing to say. */
export function describeHeavyMerges(merges: HeavyMerge[]): string | undefined {
  if (merges.length === 0) return undefined;
  const rows = merges.map((m) => `layer ${m.layer} merges experts ${expertList(m)}`);
  return `This plan averages experts that the calibration data relies on (${rows.join('; ')}; % of the layer's routed tokens). ${ADVICE}`;
}

/** The same for one row, as an editor diagnostic on it. */
export function describeHeavyMerge(merge: HeavyMerge, source: string): string {
  return `This row averages experts ${expertList(merge)} of layer ${merge.layer}'s routed tokens in ${source}. ${ADVICE}`;
}
