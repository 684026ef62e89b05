/**
 * The contract between the checkpoint loader and everything downstream (runtime, profile, plan, export).
 *
 * A `ModelSpec` is the normalised, architecture-independent description of a decoder-only SMoE model:
 * every option the forward pass needs, resolved from config.json once, so the runtime never reads
 * config.json itself and never branches on the architecture name.
 */

export const SUPPORTED_ARCHITECTURES = [
  'MixtralForCausalLM',
  'Qwen2MoeForCausalLM',
  'Qwen3MoeForCausalLM',
  'OlmoeForCausalLM',
  'GraniteMoeForCausalLM',
  'DeepseekV3ForCausalLM',
  'DeepseekV2ForCausalLM',
  'Glm4MoeForCausalLM',
  'GptOssForCausalLM',
  'PhimoeForCausalLM',
] as const;
export type ArchitectureName = (typeof SUPPORTED_ARCHITECTURES)[number];

/** Where q/k RMSNorm sits, if anywhere: Qwen3-MoE normalises each head, OLMoE the whole projection. */
export type QkNorm = 'none' | 'perHead' | 'full';

export interface AttentionSpec {
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  /** Qwen2-MoE has biases on q, k and v projections. */
  qkvBias: boolean;
  qkNorm: QkNorm;
  ropeTheta: number;
  /** Softmax scale of q·k; absent means 1/sqrt(headDim). Granite MoE sets it (`attention_multiplier`). */
  scale?: number;
  /** DeepSeek's multi-head latent attention (then `headDim` is the rotary part, as HF's config sets it). */
  mla?: MlaSpec;
  /** Partial rotary (GLM-4.5 `partial_rotary_factor`): only the first `rotaryDim` of each head rotate. Absent: headDim. */
  rotaryDim?: number;
  /** o_proj has a bias too (GPT-OSS, Phi-MoE: `attention_bias` biases all four projections). */
  oBias?: boolean;
  /** GPT-OSS: one learned logit per head (`self_attn.sinks`) joins each softmax row, then is dropped. */
  sinks?: boolean;
  /** Layers whose queries see only the last `size` keys, themselves included (GPT-OSS `layer_types`, `sliding_window`). */
  slidingWindow?: { size: number; layers: number[] };
  /** Scaled RoPE (absent: plain RoPE at `ropeTheta`); see ropeScaling.ts. */
  ropeScaling?: RopeScaling;
}

/**
 * Multi-head latent attention (modeling_deepseek_v3.py): q = q_b(norm(q_a(x))) (or q_proj(x) when
 * `qLoraRank` is absent), [k_nope, v] = kv_b(norm(c)) per head from the compressed c of kv_a_proj_with_mqa,
 * whose last `ropeHeadDim` columns are one rotary key shared by every head.
 */
export interface MlaSpec {
  qLoraRank?: number;
  kvLoraRank: number;
  nopeHeadDim: number;
  ropeHeadDim: number;
  vHeadDim: number;
  /** `rope_interleave`: the rotary columns are (re, im) pairs, de-interleaved before rotate_half. */
  interleaved: boolean;
  /** q_a_layernorm and kv_a_layernorm are built without the config's eps: RMSNorm's default, 1e-6. */
  latentNormEps: number;
}

/** DeepSeek's YaRN (yarnRope.ts) as its table: inverse frequencies and the factor cos and sin are multiplied by. */
export type RopeScalingSpec = Extract<RopeScaling, { type: 'table' }>;

/**
 * RoPE scaling as transformers' modeling_rope_utils.py computes it. YaRN (GPT-OSS): frequencies blended between
 * interpolated and extrapolated by a ramp over [low, high] dimensions, cos/sin times `attentionFactor`. LongRoPE
 * (Phi-MoE): frequencies divided by the short or long factors, picked by sequence length, cos/sin times that mscale.
 */
export type RopeScaling =
  | { type: 'yarn'; factor: number; originalMaxPositions: number; betaFast: number; betaSlow: number; truncate: boolean; attentionFactor: number }
  | { type: 'longrope'; shortFactor: number[]; longFactor: number[]; shortMscale: number; longMscale: number; originalMaxPositions: number }
  | { type: 'table'; inverseFrequencies: number[]; attentionFactor: number };

/** GPT-OSS's expert activation: (clamp(up, ±limit) + 1) · g · sigmoid(alpha · g) with g = min(gate, limit). */
export interface ClampedSwiglu {
  alpha: number;
  limit: number;
}

/**
 * Granite MoE's multipliers (modeling_granitemoe.py): embeddings times `embedding`, each sublayer's output
 * times `residual` before its residual add, logits divided by `logitsScaling`. Absent: all 1.
 */
export interface ScalingSpec {
  embedding: number;
  residual: number;
  logitsScaling: number;
}

/** A SwiGLU MLP: down(silu(gate(x)) * up(x)). */
export interface MlpSpec {
  intermediateSize: number;
}

export interface MoeSpec {
  numExperts: number;
  topK: number;
  /** Renormalise the top-k softmax weights to sum to 1 (Mixtral: always true). */
  normTopKProb: boolean;
  expert: MlpSpec;
  /** Qwen2-MoE: an always-on expert whose output is scaled by sigmoid(shared_expert_gate(x)). */
  sharedExpert?: MlpSpec & { gated: boolean };
  /** GPT-OSS: the router has a bias, and each expert's three projections do. */
  routerBias?: boolean;
  expertBias?: boolean;
  /** GPT-OSS's clamped SwiGLU in place of silu(gate) · up. */
  clampedSwiglu?: ClampedSwiglu;
  /** Phi-MoE's sparsemixer (eval mode): top-2 picked one at a time, each weighted by a softmax over the logits within 2·jitterEps of it (relative). */
  sparsemixer?: { jitterEps: number };
  /** DeepSeek-style routing; absent: softmax over the experts, top-k (the rule of the first four architectures). */
  routing?: RoutingSpec;
}

/**
 * DeepSeek V2/V3's router (modeling_deepseek_v3.py DeepseekV3TopkRouter, modeling_deepseek_v2.py):
 * scores are the sigmoid (V3) or softmax (V2) of the logits; the choice adds `e_score_correction_bias`
 * (V3, selection only); a group limit keeps the `selected` best of `count` equal groups of consecutive
 * experts (a group's score: the sum of its best two (V3) or its best one (V2)), the others' choices set to 0;
 * the top-k weights are the scores, renormalised (`normTopKProb`) and times `scalingFactor`.
 */
export interface RoutingSpec {
  scoring: 'sigmoid' | 'softmax';
  correctionBias: boolean;
  groups?: { count: number; selected: number; score: 'topTwoSum' | 'max' };
  scalingFactor: number;
}

export type LayerSpec =
  | { index: number; kind: 'moe'; moe: MoeSpec }
  | { index: number; kind: 'dense'; mlp: MlpSpec };

export interface ModelSpec {
  architecture: ArchitectureName;
  vocabSize: number;
  hiddenSize: number;
  rmsNormEps: number;
  tieWordEmbeddings: boolean;
  attention: AttentionSpec;
  scaling?: ScalingSpec;
  /** Phi-MoE normalises with LayerNorm (weight and bias, eps = rmsNormEps) where the others use RMSNorm. */
  layerNorm?: boolean;
  /** Phi-MoE's lm_head has a bias (`lm_head_bias`). */
  lmHeadBias?: boolean;
  /** How the routed experts are stored when not as F32/F16/BF16 (GPT-OSS `quantization_config.quant_method`). */
  expertEncoding?: 'mxfp4';
  layers: LayerSpec[];
  /** The tensor names this checkpoint must contain, resolved from the architecture table. */
  tensors: TensorNames;
}

/** Exact tensor names, per layer and expert, as published checkpoints spell them. */
export interface TensorNames {
  embedTokens: string;
  finalNorm: string;
  /** Absent when embeddings are tied. */
  lmHead?: string;
  lmHeadBias?: string;
  /** LayerNorm models only. */
  finalNormBias?: string;
  layer(i: number): LayerTensorNames;
}

export interface LayerTensorNames {
  inputNorm: string;
  postAttentionNorm: string;
  q: string;
  k: string;
  v: string;
  o: string;
  qBias?: string;
  kBias?: string;
  vBias?: string;
  qNorm?: string;
  kNorm?: string;
  /** Multi-head latent attention's tensors (q, k, v, qBias… are then unused). */
  mla?: MlaTensorNames;
  oBias?: string;
  sinks?: string;
  /** LayerNorm models only (Phi-MoE). */
  inputNormBias?: string;
  postAttentionNormBias?: string;
  /** MoE layers only. */
  router?: string;
  /** GPT-OSS: `mlp.router.bias` [E], added to the logits. */
  routerBias?: string;
  /** DeepSeek V3: `mlp.gate.e_score_correction_bias` [E], added for the choice only. */
  correctionBias?: string;
  /** One tensor set per expert (Mixtral, Qwen, OLMoE); absent when the experts are fused. */
  expert?(j: number): MlpTensorNames;
  /** All experts in two tensors, expert-major (Granite MoE); see FusedExpertNames. */
  fusedExperts?: FusedExpertNames;
  sharedExpert?: MlpTensorNames;
  sharedExpertGate?: string;
  /** Dense layers only (Qwen2-MoE `mlp_only_layers`, `decoder_sparse_step`). */
  mlp?: MlpTensorNames;
}

export interface MlaTensorNames {
  /** `q_proj` when q_lora_rank is null (V2-Lite); otherwise q_a_proj, q_a_layernorm and q_b_proj. */
  q?: string;
  qA?: string;
  qANorm?: string;
  qB?: string;
  kvA: string;
  kvANorm: string;
  kvB: string;
}

/** HF weight layout: gate/up are [intermediate, hidden], down is [hidden, intermediate] (y = x W^T). */
export interface MlpTensorNames {
  gate: string;
  up: string;
  down: string;
}

/**
 * Granite MoE's `input_linear.weight` [E, 2I, H] (rows 0..I-1 of each expert the gate, I..2I-1 the up
 * projection: transformers chunks the output in two) and `output_linear.weight` [E, H, I] (the down projection).
 */
export interface FusedExpertNames {
  gateUp: string;
  down: string;
  /**
   * GPT-OSS: `gate_up_proj` [E, H, 2I] with gate and up interleaved along the last axis (gate at even columns),
   * `down_proj` [E, I, H] (both [in, out], x W), biases [E, 2I] (interleaved alike) and [E, H]. With `mxfp4`,
   * the two weights are stored as `<name>_blocks` / `<name>_scales` in their transposed [out, in] layout (mxfp4.ts).
   */
  layout?: 'interleavedInOut';
  gateUpBias?: string;
  downBias?: string;
  mxfp4?: boolean;
}

export type DType = 'F32' | 'F16' | 'BF16';

export interface TensorInfo {
  name: string;
  /** F8_E4M3 only for block-scaled FP8 weights (fp8Weights.ts), which read as fp32 like the rest. */
  dtype: DType | 'F8_E4M3';
  shape: number[];
  file: string;
  byteLength: number;
}

/**
 * Lazy access to a checkpoint's tensors. Nothing is read until asked for, so a model larger than
 * memory can be streamed tensor by tensor (export) or loaded layer by layer (runtime).
 */
export interface WeightSource {
  has(name: string): boolean;
  info(name: string): TensorInfo;
  names(): string[];
  /** Decoded to fp32 (bf16 and fp16 are widened). */
  readFloat32(name: string): Promise<Float32Array>;
  /** `elements` values from element `offset` of the tensor, decoded to fp32 (one expert of a fused tensor). */
  readFloat32Range(name: string, offset: number, elements: number): Promise<Float32Array>;
  /** The tensor's bytes exactly as stored, for bit-exact copies. */
  readRaw(name: string): Promise<Uint8Array>;
  /** `byteLength` stored bytes from `byteOffset` of the tensor, any dtype (one expert of MXFP4 blocks). */
  readRawRange(name: string, byteOffset: number, byteLength: number): Promise<Uint8Array>;
  close(): Promise<void>;
}

/** A loaded model folder: spec, weights and tokenizer. */
export interface LoadedCheckpoint {
  folder: string;
  /** config.json exactly as read, for export and diffs. */
  config: Record<string, unknown>;
  spec: ModelSpec;
  weights: WeightSource;
  tokenizer: TextTokenizer;
}

export interface TextTokenizer {
  encode(text: string): number[];
  decode(ids: number[]): string;
  /** Token strings with character offsets into the text, for token-level views. */
  encodeWithOffsets(text: string): { ids: number[]; offsets: [number, number][] };
  readonly bosTokenId?: number;
  readonly eosTokenId?: number;
}
