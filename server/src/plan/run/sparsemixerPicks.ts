/**
 * Phi-MoE's sparsemixer at inference (modeling_phimoe.py, training=False) on one token's router logits, for the
 * plan methods that mix captured expert outputs themselves (layer error, output compensation, router refit):
 * the arg-max, weighted by a softmax over the logits within 2·jitterEps (relative) of it, then the same for the
 * arg-max of the rest. Experts not `routable` are -inf, as the runtime's mask makes them. The runtime's graph
 * (runtime/sparsemixerGraph.ts) computes the same; both follow HF, and the tests hold both to the reference.
 */
export function sparsemixerPicks(logits: ArrayLike<number>, count: number, routable: (e: number) => boolean, k: number, jitterEps: number): { experts: number[]; gates: number[] } {
  const scores = Array.from({ length: count }, (_, e) => (routable(e) ? logits[e] : -Infinity));
  const experts: number[] = [];
  const gates: number[] = [];
  for (let slot = 0; slot < Math.min(k, 2); slot++) {
    const candidates = scores.map((s, e) => (experts.includes(e) ? -Infinity : s));
    let best = 0;
    for (let e = 1; e < count; e++) if (candidates[e] > candidates[best]) best = e;
    const max = candidates[best];
    if (max === -Infinity) break;
    let total = 0;
    for (let e = 0; e < count; e++) if (!((max - scores[e]) / Math.max(Math.abs(scores[e]), max) > 2 * jitterEps)) total += Math.exp(candidates[e] - max);
    experts.push(best);
    gates.push(1 / total);
  }
  return { experts, gates };
}
