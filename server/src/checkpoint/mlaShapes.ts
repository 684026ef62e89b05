import type { AttentionSpec } from './modelSpec';

/**
 * Multi-head latent attention's matrices [rows, cols] (q LoRA or q_proj, kv_a_proj_with_mqa, kv_b_proj,
 * o_proj) and its norm parameters, for the memory estimate and the plan's parameter counts; undefined for
 * other attention, whose q/k/v/o shapes follow from heads and headDim.
 */
export function mlaShapes(attention: AttentionSpec, hidden: number): { matrices: [number, number][]; normParameters: number } | undefined {
  const mla = attention.mla;
  if (!mla) return undefined;
  const heads = attention.numHeads;
  const qk = mla.nopeHeadDim + mla.ropeHeadDim;
  const query: [number, number][] = mla.qLoraRank ? [[mla.qLoraRank, hidden], [heads * qk, mla.qLoraRank]] : [[heads * qk, hidden]];
  return {
    matrices: [...query, [mla.kvLoraRank + mla.ropeHeadDim, hidden], [heads * (mla.nopeHeadDim + mla.vHeadDim), mla.kvLoraRank], [hidden, heads * mla.vHeadDim]],
    normParameters: (mla.qLoraRank ?? 0) + mla.kvLoraRank,
  };
}
