/**
 * GPT-OSS's two additions to attention (modeling_gpt_oss.py), as graph pieces the layer graph splices in:
 * the sliding-window mask of its `sliding_attention` layers and the attention sinks.
 */

import type { GraphBuilder } from './graphBuilder';

/**
 * [seq, seq] additive bias, -inf where a key is `size` or more places before its query (transformers'
 * sliding_window_overlay keeps kv_idx > q_idx - size). Grid columns are positions (sequences start at column 0
 * and pad on the right), so the distance is the column difference; it broadcasts onto the causal bias.
 */
export function slidingWindowBias(g: GraphBuilder, biasShape: string, size: number): string {
  const seq = g.op('Squeeze', [g.op('Slice', [biasShape, g.constInt64([3]), g.constInt64([4])]), g.constInt64([0])]);
  const positions = g.op('Range', [g.scalarInt64(0), seq, g.scalarInt64(1)]);
  const distance = g.op('Sub', [g.op('Unsqueeze', [positions, g.constInt64([1])]), g.op('Unsqueeze', [positions, g.constInt64([0])])]);
  return g.op('Where', [g.op('GreaterOrEqual', [distance, g.scalarInt64(size)]), g.constFloat([-Infinity]), g.constFloat([0])]);
}

/**
 * Softmax over each row of `scores` [batch, kv, group, seq, seq] with the head's sink logit appended as one
 * more column, which is then dropped (eager_attention_forward: cat, softmax, probs[..., :-1]). `sinks` is
 * [1, kv, group, 1, 1]: head h = kv · group + g, the order the query heads are stacked in.
 */
export function attentionSinksSoftmax(g: GraphBuilder, scores: string, sinks: string, biasShape: string): string {
  const shape = g.op('Shape', [scores]);
  const sinkColumn = g.op('Expand', [sinks, g.op('Concat', [g.op('Slice', [shape, g.constInt64([0]), g.constInt64([4])]), g.constInt64([1])], { axis: 0 })]);
  const probs = g.op('Softmax', [g.op('Concat', [scores, sinkColumn], { axis: -1 })], { axis: -1 });
  const keys = g.op('Slice', [biasShape, g.constInt64([4]), g.constInt64([5])]);
  return g.op('Slice', [probs, g.constInt64([0]), keys, g.constInt64([-1])]);
}
