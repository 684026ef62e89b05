/**
 * Whether a plan keeps DeepSeek's group limit (`n_group`, `topk_group`) expressible after export.
 *
 * transformers splits a layer's E' experts into n_group equal groups of consecutive experts
 * (`view(-1, n_group, E' / n_group)`), and V3 scores a group by the sum of its best two. The exported
 * config keeps n_group and topk_group, so the export routes exactly as the evaluation did when:
 * - a prune-only layer (which the runtime evaluates as a mask over the original groups) keeps the same
 *   number c of experts from every original group, c >= 2 for V3 (1 for V2's best-one score), listed group
 *   by group: then the exported groups are the original groups minus the removed experts;
 * - a layer with matrices (merges, router maps; the runtime evaluates its E' rows in their own consecutive
 *   groups, as transformers will) has E' divisible by n_group with c as above.
 * Otherwise the group limit can no longer be honoured and the plan is not exact (export refuses it).
 */
import type { MoeSpec } from '../checkpoint/modelSpec';

export function groupLimitReason(layer: number, moe: MoeSpec, plan: { keptExperts: number[]; matrices: boolean }): string | undefined {
  const groups = moe.routing?.groups;
  if (!groups || groups.count === 1) return undefined;
  const kept = plan.keptExperts;
  const minimum = groups.score === 'topTwoSum' ? 2 : 1;
  const perGroup = kept.length / groups.count;
  const limit = `the group limit (n_group ${groups.count}, topk_group ${groups.selected}) can no longer be honoured`;
  if (!Number.isInteger(perGroup) || perGroup < minimum) {
    return `layer ${layer} keeps ${kept.length} experts, which ${groups.count} groups cannot share equally with at least ${minimum} each: ${limit}`;
  }
  if (plan.matrices) return undefined;
  const originalPerGroup = moe.numExperts / groups.count;
  const groupOf = (id: number) => Math.floor(id / originalPerGroup);
  const counts = new Array<number>(groups.count).fill(0);
  for (const id of kept) counts[groupOf(id)]++;
  const chunksStayInGroups = kept.every((id, i) => groupOf(id) === groupOf(kept[i - (i % perGroup)]));
  const equal = counts.every((count) => count === perGroup);
  if (!equal || !chunksStayInGroups) {
    return `layer ${layer} keeps ${counts.join(', ')} experts of its ${groups.count} groups${equal ? ' (not listed group by group)' : ''}; the exported equal groups of ${perGroup} would regroup them, so ${limit}`;
  }
  return undefined;
}

/** A plan layer's group-limit reason, with the runtime's rule for which layers run as masks (runtimeConversion.ts). */
export function planLayerGroupReason(layer: { layer: number; keptExperts: number[]; mergeMatrix?: unknown; routerMap?: unknown; outputScale?: unknown }, moe: MoeSpec): string | undefined {
  return groupLimitReason(layer.layer, moe, { keptExperts: layer.keptExperts, matrices: Boolean(layer.mergeMatrix || layer.routerMap || layer.outputScale) });
}
