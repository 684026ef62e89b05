/**
 * Pruning by a per-expert importance score: each layer keeps its `target` highest-scoring experts.
 * Ties go to the lower expert id so the result never depends on sort stability.
 */
import type { PlanLayer } from '../planFile';
import { SeededRandom } from '../prng';
import { type ExpertTarget, type LayerStatistics, type MoeLayerShape, targetFor } from '../statistics';

export function keepHighest(layer: number, scores: number[], target: ExpertTarget, groups = 1): PlanLayer {
  const count = targetFor(target, layer, scores.length);
  const ranked = scores.map((score, id) => ({ score, id })).sort((a, b) => b.score - a.score || a.id - b.id);
  // With a group limit, the best count / groups of each group when that divides evenly (else the plain ranking,
  // and the plan says the limit cannot be honoured). Ascending ids list the kept experts group by group.
  const perGroup = count / groups;
  const groupSize = scores.length / groups;
  if (groups > 1 && Number.isInteger(perGroup) && Number.isInteger(groupSize)) {
    const taken = new Array<number>(groups).fill(0);
    const kept = ranked.filter(({ id }) => taken[Math.floor(id / groupSize)]++ < perGroup);
    return { layer, keptExperts: kept.map((r) => r.id).sort((a, b) => a - b) };
  }
  return { layer, keptExperts: ranked.slice(0, count).map((r) => r.id).sort((a, b) => a - b) };
}

/** The baseline every method must beat: a uniform random subset per layer, reproducible from the seed. */
export function randomPruning(layers: MoeLayerShape[], target: ExpertTarget, seed: number): PlanLayer[] {
  const random = new SeededRandom(seed);
  return layers.map(({ layer, numExperts }) => ({
    layer,
    keptExperts: random.sample(numExperts, targetFor(target, layer, numExperts)).sort((a, b) => a - b),
  }));
}

/**
 * Frequency pruning: keep the experts most tokens are routed to (the "hard count" baseline of
 * Muzio et al., 2024, "SEER-MoE", and of Lu et al., 2024, NAEE's comparisons).
 */
export function frequencyPruning(statistics: LayerStatistics[], target: ExpertTarget): PlanLayer[] {
  return statistics.map((s) => keepHighest(s.layer, s.tokenCount, target, s.expertGroups));
}

/**
 * Soft-count pruning: keep the experts with the largest summed gate weight, which also credits an
 * expert's share of each token (SEER-MoE's "soft counting", Muzio et al., 2024).
 */
export function softCountPruning(statistics: LayerStatistics[], target: ExpertTarget): PlanLayer[] {
  return statistics.map((s) => keepHighest(s.layer, s.softCount, target, s.expertGroups));
}

/**
 * REAP, Router-weighted Expert Activation Pruning (Lasby et al., 2025, "REAP the Experts: Why Pruning
 * Prevails for One-Shot MoE compression"): drop the experts with the lowest mean gate × ‖expert output‖
 * over the tokens routed to them; an expert never routed to scores 0.
 */
export function reapPruning(statistics: LayerStatistics[], target: ExpertTarget): PlanLayer[] {
  return statistics.map((s) => {
    if (!s.reapScore) throw new Error(`layer ${s.layer}: REAP needs reapScore statistics`);
    return keepHighest(s.layer, s.reapScore, target, s.expertGroups);
  });
}
