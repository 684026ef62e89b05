/**
 * Phi-MoE's router at inference (modeling_phimoe.py `sparsemixer`, training=False) as graph nodes. The first
 * expert is the arg-max of the scores; its weight is a softmax over the scores that are within 2·jitter_eps of
 * the max, relatively (|max - s| / max(|s|, max) <= 2·eps), taken at the max. The second expert is the arg-max
 * once the first is set to -inf, weighted the same way against the second max (the relative distance still
 * divides by max(|s|, second max) of the unmasked scores). The weights are not renormalised.
 *
 * `scores` already carry the plan's mask (-inf for removed experts), so a removed expert is never picked and
 * never in a softmax. The plan's top-k keeps 1 or 2 slots, and adaptive gating drops the second slot when the
 * softmax gap passed in exceeds the threshold, as for the other architectures.
 */

import type { GraphBuilder } from './graphBuilder';

export function sparsemixerRouting(g: GraphBuilder, scores: string, jitterEps: number, topK: string, gap: string, threshold: string): { selected: string; gateWeights: string } {
  const minusInf = g.constFloat([-Infinity]);
  const absolute = g.op('Abs', [scores]);
  const pick = (candidates: string) => {
    const max = g.op('ReduceMax', [candidates], { axes: [-1], keepdims: 1 });
    const index = g.op('ArgMax', [candidates], { axis: -1, keepdims: 1 });
    const factor = g.op('Max', [absolute, max]);
    const outside = g.op('Greater', [g.op('Div', [g.op('Sub', [max, scores]), factor]), g.constFloat([2 * jitterEps])]);
    const weights = g.op('Softmax', [g.op('Where', [outside, minusInf, candidates])], { axis: -1 });
    return { index, weight: g.op('GatherElements', [weights, index], { axis: 1 }) };
  };
  const first = pick(scores);
  const experts = g.op('Range', [g.scalarInt64(0), g.op('Squeeze', [g.op('Slice', [g.op('Shape', [scores]), g.constInt64([1]), g.constInt64([2])]), g.constInt64([0])]), g.scalarInt64(1)]);
  const withoutFirst = g.op('Where', [g.op('Equal', [experts, first.index]), minusInf, scores]);
  const second = pick(withoutFirst);

  const indices = g.op('Concat', [first.index, second.index], { axis: -1 });
  const weights = g.op('Concat', [first.weight, second.weight], { axis: -1 });
  // Slot 2 runs when k is 2, the adaptive gap allows it, and it has a real weight (a lone kept expert leaves
  // nothing to pick: its softmax is NaN, and NaN > 0 is false).
  const slots = g.op('Range', [g.scalarInt64(0), g.scalarInt64(2), g.scalarInt64(1)]);
  const secondAllowed = g.op('And', [g.op('Less', [slots, g.op('Squeeze', [topK, g.constInt64([0])])]), g.op('Or', [g.op('Equal', [slots, g.scalarInt64(0)]), g.op('LessOrEqual', [gap, threshold])])]);
  const keep = g.op('And', [secondAllowed, g.op('Greater', [weights, g.constFloat([0])])]);
  const kept = (values: string, dropped: string) => g.op('Slice', [g.op('Where', [keep, values, dropped]), g.constInt64([0]), topK, g.constInt64([1])]);
  return { selected: kept(indices, g.constInt64([-1])), gateWeights: kept(weights, g.constFloat([0])) };
}
