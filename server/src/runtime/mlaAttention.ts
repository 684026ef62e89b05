import type { MlaSpec } from '../checkpoint/modelSpec';
import type { GraphBuilder, WeightData } from './graphBuilder';
import type { LayerWeights } from './layerWeights';

/** What the layer graph lends the attention block: its graph, the packed-grid inputs and its projections. */
export interface AttentionContext {
  g: GraphBuilder;
  /** [tokens, hidden], already input-normalised. */
  x: string;
  hidden: number;
  numHeads: number;
  gridRows: string;
  tokenSlots: string;
  /** [batch, seq] of the padded grid, int64. */
  batchAndSeq: string;
  cos: string;
  sin: string;
  /** [batch, 1, 1, seq, seq]. */
  attentionBias: string;
  scale: number;
  linear: (x: string, name: string, weight: WeightData, outDim: number, inDim: number) => string;
  rmsNorm: (x: string, name: string, weight: WeightData, size: number, eps: number) => string;
}

/**
 * Multi-head latent attention as DeepseekV3Attention computes it, on the packed rows and the padded grid
 * like the GQA block of layerGraph.ts. Returns the heads' context [tokens, numHeads · vHeadDim], for o_proj.
 *
 * q·k over [nope | rope] is computed as q_nope·k_nope + q_rope·k_rope, two batched MatMuls, so the one
 * rotary key shared by all heads broadcasts instead of being copied per head (HF expands it; the sum is the
 * same dot product). Interleaved rotary columns are de-interleaved ((x0, x1, x2, …) -> (x0, x2, …, x1, x3, …))
 * before rotate_half, as apply_rotary_pos_emb_interleave does; V2's complex rotation of the same pairs gives
 * the same products.
 */
export function mlaAttentionContext(c: AttentionContext, mla: MlaSpec, weights: NonNullable<LayerWeights['mla']>): string {
  const { g, numHeads: heads } = c;
  const qkHeadDim = mla.nopeHeadDim + mla.ropeHeadDim;
  const q = mla.qLoraRank
    ? c.linear(c.rmsNorm(c.linear(c.x, 'q_a_proj', weights.qA!, mla.qLoraRank, c.hidden), 'q_a_layernorm', weights.qANorm!, mla.qLoraRank, mla.latentNormEps), 'q_b_proj', weights.qB!, heads * qkHeadDim, mla.qLoraRank)
    : c.linear(c.x, 'q_proj', weights.q!, heads * qkHeadDim, c.hidden);
  const compressed = c.linear(c.x, 'kv_a_proj_with_mqa', weights.kvA, mla.kvLoraRank + mla.ropeHeadDim, c.hidden);
  const [latent, kRotRows] = g.node('Split', [compressed, g.constInt64([mla.kvLoraRank, mla.ropeHeadDim])], { axis: -1 }, 2);
  const kv = c.linear(c.rmsNorm(latent, 'kv_a_layernorm', weights.kvANorm, mla.kvLoraRank, mla.latentNormEps), 'kv_b_proj', weights.kvB, heads * (mla.nopeHeadDim + mla.vHeadDim), mla.kvLoraRank);

  // Rows -> [batch, heads, seq, d] on the padded grid.
  const toHeads = (t: string, n: number, d: number) =>
    g.op('Transpose', [g.op('Reshape', [g.op('Gather', [t, c.gridRows], { axis: 0 }), g.op('Concat', [c.batchAndSeq, g.constInt64([n, d])], { axis: 0 })])], { perm: [0, 2, 1, 3] });
  const [qNope, qRot] = g.node('Split', [toHeads(q, heads, qkHeadDim), g.constInt64([mla.nopeHeadDim, mla.ropeHeadDim])], { axis: -1 }, 2);
  const [kNope, value] = g.node('Split', [toHeads(kv, heads, mla.nopeHeadDim + mla.vHeadDim), g.constInt64([mla.nopeHeadDim, mla.vHeadDim])], { axis: -1 }, 2);
  const kRot = toHeads(kRotRows, 1, mla.ropeHeadDim);

  const half = mla.ropeHeadDim / 2;
  const rope = (t: string) => {
    const x = mla.interleaved
      ? g.op('Reshape', [g.op('Transpose', [g.op('Reshape', [t, g.constInt64([0, 0, 0, half, 2])])], { perm: [0, 1, 2, 4, 3] }), g.constInt64([0, 0, 0, mla.ropeHeadDim])])
      : t;
    const [x1, x2] = g.node('Split', [x, g.constInt64([half, half])], { axis: -1 }, 2);
    const rotated = g.op('Concat', [g.op('Neg', [x2]), x1], { axis: -1 });
    return g.op('Add', [g.op('Mul', [x, c.cos]), g.op('Mul', [rotated, c.sin])]);
  };
  const transposed = (t: string) => g.op('Transpose', [t], { perm: [0, 1, 3, 2] });
  const dots = g.op('Add', [g.op('MatMul', [qNope, transposed(kNope)]), g.op('MatMul', [rope(qRot), transposed(rope(kRot))])]);
  // [batch, 1, 1, seq, seq] -> [batch, 1, seq, seq]: one bias for every head.
  const bias = g.op('Squeeze', [c.attentionBias, g.constInt64([2])]);
  const probs = g.op('Softmax', [g.op('Add', [g.op('Mul', [dots, g.constFloat([c.scale])]), bias])], { axis: -1 });
  const context = g.op('MatMul', [probs, value]);
  const grid = g.op('Reshape', [g.op('Transpose', [context], { perm: [0, 2, 1, 3] }), g.constInt64([-1, heads * mla.vHeadDim])]);
  return g.op('Gather', [grid, c.tokenSlots], { axis: 0 });
}
