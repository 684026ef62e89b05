/**
 * NAEE-style expert pruning (Lu et al., 2024, "Not All Experts are Equal: Efficient Expert Pruning and
 * Skipping for Mixture-of-Experts Large Language Models"): per layer, keep the subset of experts that
 * minimises the layer's output reconstruction error on calibration tokens, with the dropped experts'
 * logits at -inf so tokens re-route to the kept ones. The error comes from a callback (the runtime runs
 * the layer), so the search is testable with a synthetic error.
 *
 * Exhaustive over all C(E, r) subsets when that is at most `exhaustiveLimit`; otherwise greedy backward
 * elimination: from all experts, repeatedly drop the expert whose removal raises the error least.
 */
import type { PlanLayer } from '../planFile';
import { type ExpertTarget, type MoeLayerShape, targetFor, throwIfAborted } from '../statistics';

export type LayerErrorFunction = (layer: number, keptExperts: number[]) => Promise<number>;

export interface NaeeOptions {
  layers: MoeLayerShape[];
  target: ExpertTarget;
  layerError: LayerErrorFunction;
  /** Largest number of subsets searched exhaustively; greedy beyond it. */
  exhaustiveLimit?: number;
  signal?: AbortSignal;
  onProgress?: (progress: { layer: number; evaluations: number; search: 'exhaustive' | 'greedy' }) => void;
}

export const DEFAULT_EXHAUSTIVE_LIMIT = 5000;

export function binomial(n: number, k: number): number {
  let result = 1;
  for (let i = 1; i <= k; i++) result = (result * (n - k + i)) / i;
  return Math.round(result);
}

/** All r-subsets of 0..n-1 in lexicographic order. */
function* subsets(n: number, r: number): Generator<number[]> {
  const current = Array.from({ length: r }, (_, i) => i);
  while (true) {
    yield current.slice();
    let i = r - 1;
    while (i >= 0 && current[i] === n - r + i) i--;
    if (i < 0) return;
    current[i]++;
    for (let j = i + 1; j < r; j++) current[j] = current[j - 1] + 1;
  }
}

export async function naeePruning(options: NaeeOptions): Promise<PlanLayer[]> {
  const limit = options.exhaustiveLimit ?? DEFAULT_EXHAUSTIVE_LIMIT;
  const result: PlanLayer[] = [];
  for (const { layer, numExperts } of options.layers) {
    const count = targetFor(options.target, layer, numExperts);
    const search = binomial(numExperts, count) <= limit ? 'exhaustive' : 'greedy';
    let evaluations = 0;
    const error = async (kept: number[]) => {
      throwIfAborted(options.signal);
      evaluations++;
      return options.layerError(layer, kept);
    };
    const keptExperts = search === 'exhaustive' ? await exhaustive(numExperts, count, error) : await greedy(numExperts, count, error);
    options.onProgress?.({ layer, evaluations, search });
    result.push({ layer, keptExperts });
  }
  return result;
}

async function exhaustive(numExperts: number, count: number, error: (kept: number[]) => Promise<number>): Promise<number[]> {
  let best: { kept: number[]; error: number } | undefined;
  for (const kept of subsets(numExperts, count)) {
    const value = await error(kept);
    if (!best || value < best.error) best = { kept, error: value };
  }
  return best!.kept;
}

async function greedy(numExperts: number, count: number, error: (kept: number[]) => Promise<number>): Promise<number[]> {
  let kept = Array.from({ length: numExperts }, (_, i) => i);
  while (kept.length > count) {
    let best: { kept: number[]; error: number } | undefined;
    for (const drop of kept) {
      const candidate = kept.filter((id) => id !== drop);
      const value = await error(candidate);
      if (!best || value < best.error) best = { kept: candidate, error: value };
    }
    kept = best!.kept;
  }
  return kept;
}
