import type { RoutingSpec } from '../checkpoint/modelSpec';
import type { GraphBuilder, WeightData } from './graphBuilder';
import { OnnxDType } from './onnxSchema';

export interface RoutedSlots {
  /** [tokens, k] the experts chosen, best choice first. */
  topIndices: string;
  /** [tokens, k] their weights before renormalisation and scaling (V3: sigmoid scores; V2: softmax scores, 0 outside the chosen groups). */
  topScores: string;
  /** [tokens, k] bool: false where the slot holds an expert the plan removed (fewer kept experts than k). */
  valid: string;
}

/**
 * DeepSeek's router on the routed logits [tokens, E'] (after the plan's router map), as DeepseekV3TopkRouter
 * and DeepseekV2Moe compute it: scores, the choice (V3 adds the correction bias, mapped like the router rows),
 * the group limit (groups of E'/n_group consecutive experts, the best `selected` kept, the other experts'
 * choices set to 0 as masked_fill does), then top-k of the choice. A removed expert's choice is -inf
 * everywhere (it does not exist in the export), also inside the group scores.
 *
 * The group limit applies only when E' splits into n_group groups (of at least two for V3's best-two sum);
 * a plan that breaks that is marked inexact by the plan (hfExactness.ts), and runs here without the limit.
 */
export function deepseekTopK(
  g: GraphBuilder,
  routing: RoutingSpec,
  io: { logits: string; expertBias: string; topK: string; routerMap: string; routerBias?: WeightData; numExperts: number; routedExperts: number },
): RoutedSlots {
  const { logits, expertBias, topK, routedExperts } = io;
  const scores = routing.scoring === 'sigmoid' ? g.op('Sigmoid', [logits]) : g.op('Softmax', [g.op('Add', [logits, expertBias])], { axis: -1 });
  let choice = scores;
  if (routing.correctionBias) {
    const bias = g.op('MatMul', [g.weight('router_correction_bias', io.routerBias!, [1, io.numExperts]), io.routerMap]);
    choice = g.op('Add', [choice, bias]);
  }
  const groups = routing.groups;
  if (groups && groupLimitApplies(routing, routedExperts)) {
    const perGroup = routedExperts / groups.count;
    const grouped = g.op('Reshape', [g.op('Add', [choice, expertBias]), g.constInt64([-1, groups.count, perGroup])]);
    const groupScores =
      groups.score === 'topTwoSum'
        ? g.op('ReduceSum', [g.node('TopK', [grouped, g.constInt64([2])], { axis: -1, largest: 1, sorted: 1 }, 2)[0], g.constInt64([-1])], { keepdims: 0 })
        : g.op('ReduceMax', [grouped], { axes: [-1], keepdims: 0 });
    const [, groupIndices] = g.node('TopK', [groupScores, g.constInt64([groups.selected])], { axis: -1, largest: 1, sorted: 1 }, 2);
    // [tokens, selected, 1] == [count] -> any over the selected: the chosen groups as a [tokens, count] mask.
    const hits = g.op('Equal', [g.op('Unsqueeze', [groupIndices, g.constInt64([-1])]), g.op('Range', [g.scalarInt64(0), g.scalarInt64(groups.count), g.scalarInt64(1)])]);
    const groupMask = g.op('ReduceMax', [g.op('Cast', [hits], { to: OnnxDType.float })], { axes: [1], keepdims: 0 });
    const expertMask = g.op('Reshape', [g.op('Mul', [g.op('Unsqueeze', [groupMask, g.constInt64([-1])]), g.constFloat(new Array(perGroup).fill(1))]), g.constInt64([-1, routedExperts])]);
    choice = g.op('Where', [g.op('Cast', [expertMask], { to: OnnxDType.bool }), choice, g.constFloat([0])]);
  }
  const weightSource = routing.scoring === 'sigmoid' ? scores : choice;
  const [topChoice, topIndices] = g.node('TopK', [g.op('Add', [choice, expertBias]), topK], { axis: -1, largest: 1, sorted: 1 }, 2);
  return {
    topIndices,
    topScores: g.op('GatherElements', [weightSource, topIndices], { axis: 1 }),
    valid: g.op('Greater', [topChoice, g.constFloat([-Infinity])]),
  };
}

/** Whether E' routed experts can keep the group limit: equal groups, two or more each for the best-two sum. */
export function groupLimitApplies(routing: RoutingSpec, routedExperts: number): boolean {
  const groups = routing.groups;
  if (!groups) return false;
  const perGroup = routedExperts / groups.count;
  return Number.isInteger(perGroup) && perGroup >= (groups.score === 'topTwoSum' ? 2 : 1);
}
