/**
 * Which plans a stock Hugging Face config can express exactly after export, i.e. the exported
 * checkpoint computes what the runtime computed when it evaluated the plan.
 *
 * - Pruning is exact for every supported architecture, whatever `norm_topk_prob`. The runtime removes an
 *   expert by adding -inf to its router logit *before* the softmax (runtimePlan.ts `expertBias`), so the
 *   softmax denominator already runs over the kept experts only; export slices the router rows, and the
 *   softmax over the E' remaining logits is the same distribution. A runtime that zeroed probabilities
 *   *after* the softmax would keep the removed experts in the denominator and then differ from export
 *   whenever weights are not renormalised over the top-k (Qwen/OLMoE with norm_topk_prob=false); ours
 *   does not, so that case does not arise.
 * - Merging is exact: the plan maps router *logits* (W_RM · W_r is a new router weight, a linear map of
 *   logits) and expert *weights* (W_EM combines gate, up and down tensors), both plain new tensors. Mixing
 *   softmax *outputs* would not be expressible; the format never does that.
 * - Not expressible: adaptive gating (no config key), different top-k per layer (`num_experts_per_tok`
 *   is one number; a uniform change of top-k is fine).
 * - MXFP4 experts (GPT-OSS) prune exactly (blocks and scales sliced byte for byte); a merged or rescaled expert
 *   is re-encoded to MXFP4 by export, and the runtime evaluates the same re-encoded weights (layerWeights.ts
 *   mergeExperts), so that is exact too.
 * - Phi-MoE's sparsemixer is top-2 by construction: any other top-k is not expressible.
 * - Different expert counts per layer (a global expert budget) export exactly, with the per-layer counts
 *   in the documented config extension `moe_studio.num_experts_per_layer`, which MoE Studio's loader
 *   reads; stock loaders refuse such a model (one `num_local_experts` / `num_experts` for every layer),
 *   loudly rather than computing something else, so it is said in `stockLoaders`, not as a reason.
 */
import type { ModelSpec } from '../checkpoint/modelSpec';
import { planLayerGroupReason } from './groupLimit';
import type { HfExactness, PlanLayer } from './planFile';

export function analyseHfExactness(layers: PlanLayer[], spec: ModelSpec): HfExactness {
  const planned = new Map(layers.map((l) => [l.layer, l]));
  const expertCounts = new Set<number>();
  const topKs = new Set<number>();
  const adaptive: number[] = [];
  const groupReasons: string[] = [];
  for (const layerSpec of spec.layers) {
    if (layerSpec.kind !== 'moe') continue;
    const plan = planned.get(layerSpec.index);
    // DeepSeek's group limit (groupLimit.ts).
    const groupReason = plan && planLayerGroupReason(plan, layerSpec.moe);
    if (groupReason) groupReasons.push(groupReason);
    const kept = plan?.keptExperts.length ?? layerSpec.moe.numExperts;
    expertCounts.add(kept);
    topKs.add(Math.min(plan?.topK ?? layerSpec.moe.topK, kept));
    if (plan?.adaptiveThreshold !== undefined && Number.isFinite(plan.adaptiveThreshold)) adaptive.push(layerSpec.index);
  }
  const reasons: string[] = [...groupReasons];
  // Phi-MoE: PhimoeSparseMoeBlock calls sparsemixer with its fixed top_k=2, whatever num_experts_per_tok says.
  const sparsemixer = spec.layers.some((l) => l.kind === 'moe' && l.moe.sparsemixer);
  if (sparsemixer && [...topKs].some((k) => k !== 2)) reasons.push(`Phi-MoE's sparsemixer always routes 2 experts in transformers (top-k ${[...topKs].join(', ')} cannot be configured)`);
  if (adaptive.length) reasons.push(`adaptive gating (layers ${adaptive.join(', ')}) has no Hugging Face config key`);
  if (topKs.size > 1) reasons.push(`layers use different top-k (${[...topKs].sort((a, b) => a - b).join(', ')}); num_experts_per_tok is one number for every layer`);
  const counts = [...expertCounts].sort((a, b) => a - b).join(', ');
  return {
    exact: reasons.length === 0,
    reasons,
    ...(sigmoidRouting(spec) && { routingNote: SIGMOID_ROUTING_NOTE }),
    ...(expertCounts.size > 1 && { stockLoaders: `layers keep different expert counts (${counts}): the export records them in config.json under moe_studio.num_experts_per_layer, which MoE Studio loads; stock loaders need the same count in every layer and refuse it` }),
  };
}

/**
 * DeepSeek V3's router (and GLM-4.5's) scores experts by sigmoid, chooses with a correction bias and weighs
 * the chosen by renormalised sigmoid scores: no softmax over the experts exists. The plan says which
 * methods read one anyway, so a user can weigh their results.
 */
export const SIGMOID_ROUTING_NOTE =
  'this router scores experts by sigmoid and chooses with e_score_correction_bias, not by a softmax: the profile\'s full soft counts and router entropy, and router refit, read a softmax over the router logits that it never computes, so they only approximate; frequency, soft count (its gate weights), REAP, NAEE, merging and every evaluation use the experts it really selects (after the bias and the group limit), and ranking methods keep equal groups. Adaptive gating reads the gap between its first two sigmoid weights.';

function sigmoidRouting(spec: ModelSpec): boolean {
  return spec.layers.some((layer) => layer.kind === 'moe' && layer.moe.routing?.scoring === 'sigmoid');
}
