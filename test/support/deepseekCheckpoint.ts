/**
 * config.json of small random DeepSeek V2 / V3 checkpoints, keyed as deepseek-ai/DeepSeek-V3 and
 * DeepSeek-V2-Lite publish them (V3: q LoRA, sigmoid router with groups, FP8 block scales; V2-Lite: q_proj,
 * softmax greedy router), shrunk to test sizes.
 */

import type { ArchitectureName } from '../../server/src/checkpoint/modelSpec';

export interface DeepseekOptions {
  /** null writes `q_lora_rank: null` (V2-Lite's q_proj); default 48 (V3) / null (V2). */
  qLoraRank?: number | null;
  kvLoraRank?: number;
  nopeHeadDim?: number;
  ropeHeadDim?: number;
  vHeadDim?: number;
  nGroup?: number;
  topkGroup?: number;
  /** V2 only: "greedy" (default) or "group_limited_greedy". */
  topkMethod?: string;
  firstKDenseReplace?: number;
  nSharedExperts?: number;
  routedScalingFactor?: number;
  ropeInterleave?: boolean;
  /** As DeepSeek-V3's config: YaRN with mscale and mscale_all_dim. */
  yarn?: { factor: number; originalMaxPositionEmbeddings: number; mscale?: number; mscaleAllDim?: number };
  /** GLM-4.5: per-head q/k RMSNorm (`use_qk_norm`, default false) and `partial_rotary_factor` (default 0.5). */
  useQkNorm?: boolean;
  partialRotaryFactor?: number;
  /** GLM-4.5: q/k/v biases (`attention_bias`, published true). */
  attentionBias?: boolean;
  /** FP8 e4m3 weights with block scales (`weight_scale_inv`) as DeepSeek-V3 ships them; other tensors BF16. */
  fp8?: { blockSize: [number, number]; scaleDtype: 'F32' | 'BF16' };
}

/** The Linear weights DeepSeek-V3 stores in FP8: every projection in the decoder layers (not the router). */
export function fp8Eligible(name: string): boolean {
  return /^model\.layers\.\d+\..*_proj(_with_mqa)?\.weight$/.test(name);
}

export function deepseekConfig(
  common: Record<string, unknown>,
  architecture: Extract<ArchitectureName, 'DeepseekV3ForCausalLM' | 'DeepseekV2ForCausalLM'>,
  sizes: { numExperts: number; expertIntermediate: number; denseIntermediate: number; ropeTheta?: number; normTopKProb?: boolean },
  o: DeepseekOptions,
): Record<string, unknown> {
  const v3 = architecture === 'DeepseekV3ForCausalLM';
  const config: Record<string, unknown> = {
    ...common,
    num_key_value_heads: common.num_attention_heads,
    model_type: v3 ? 'deepseek_v3' : 'deepseek_v2',
    n_routed_experts: sizes.numExperts,
    n_shared_experts: o.nSharedExperts ?? (v3 ? 1 : 2),
    moe_intermediate_size: sizes.expertIntermediate,
    intermediate_size: sizes.denseIntermediate,
    first_k_dense_replace: o.firstKDenseReplace ?? 1,
    moe_layer_freq: 1,
    q_lora_rank: o.qLoraRank === undefined ? (v3 ? 48 : null) : o.qLoraRank,
    kv_lora_rank: o.kvLoraRank ?? 32,
    qk_nope_head_dim: o.nopeHeadDim ?? 16,
    qk_rope_head_dim: o.ropeHeadDim ?? 8,
    v_head_dim: o.vHeadDim ?? 12,
    routed_scaling_factor: o.routedScalingFactor ?? (v3 ? 2.5 : 1.0),
    norm_topk_prob: sizes.normTopKProb ?? v3,
    rms_norm_eps: 1e-6,
    rope_theta: sizes.ropeTheta ?? 10000,
    rope_scaling: o.yarn
      ? { type: 'yarn', factor: o.yarn.factor, original_max_position_embeddings: o.yarn.originalMaxPositionEmbeddings, beta_fast: 32, beta_slow: 1, mscale: o.yarn.mscale ?? 1.0, mscale_all_dim: o.yarn.mscaleAllDim ?? 1.0 }
      : null,
    attention_bias: false,
    aux_loss_alpha: 0.001,
    seq_aux: true,
    ...(v3
      ? { n_group: o.nGroup ?? 4, topk_group: o.topkGroup ?? 2, topk_method: 'noaux_tc', scoring_func: 'sigmoid', ep_size: 1, num_nextn_predict_layers: 1, rope_interleave: o.ropeInterleave ?? true }
      : { n_group: o.nGroup ?? null, topk_group: o.topkGroup ?? null, topk_method: o.topkMethod ?? 'greedy', scoring_func: 'softmax' }),
    ...(o.fp8 && { quantization_config: { activation_scheme: 'dynamic', fmt: 'e4m3', quant_method: 'fp8', weight_block_size: o.fp8.blockSize } }),
  };
  if (o.fp8) config.torch_dtype = 'bfloat16';
  return config;
}

/** config.json of a small GLM-4.5 (zai-org/GLM-4.5's keys): head_dim apart from hidden / heads, partial rotary, V3 routing. */
export function glmConfig(
  common: Record<string, unknown>,
  sizes: { numExperts: number; expertIntermediate: number; denseIntermediate: number; ropeTheta?: number; normTopKProb?: boolean },
  o: DeepseekOptions,
): Record<string, unknown> {
  return {
    ...common,
    model_type: 'glm4_moe',
    head_dim: common.head_dim ?? 24,
    n_routed_experts: sizes.numExperts,
    n_shared_experts: o.nSharedExperts ?? 1,
    moe_intermediate_size: sizes.expertIntermediate,
    intermediate_size: sizes.denseIntermediate,
    first_k_dense_replace: o.firstKDenseReplace ?? 1,
    n_group: o.nGroup ?? 1,
    topk_group: o.topkGroup ?? 1,
    routed_scaling_factor: o.routedScalingFactor ?? 2.5,
    norm_topk_prob: sizes.normTopKProb ?? true,
    use_qk_norm: o.useQkNorm ?? false,
    partial_rotary_factor: o.partialRotaryFactor ?? 0.5,
    attention_bias: o.attentionBias ?? true,
    rms_norm_eps: 1e-5,
    rope_theta: sizes.ropeTheta ?? 1000000,
    rope_scaling: null,
    num_nextn_predict_layers: 1,
    pad_token_id: 0,
  };
}
