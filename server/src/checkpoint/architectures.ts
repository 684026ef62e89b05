/**
 * The four supported architectures as data, in the manner of llama.cpp's `llama-arch.cpp`: tensor-name
 * templates (`{i}` = layer, `{j}` = expert) and the config keys and defaults that differ between them.
 * Adding an architecture is adding a row here, never a branch in the runtime.
 *
 * Defaults are transformers' own (configuration_mixtral.py, configuration_qwen2_moe.py,
 * configuration_qwen3_moe.py, configuration_olmoe.py), used only when config.json omits a key.
 */

import type { ArchitectureName, FusedExpertNames, LayerTensorNames, MlaTensorNames, MlpTensorNames, QkNorm, TensorNames } from './modelSpec';

interface MlpNameTemplates {
  gate: string;
  up: string;
  down: string;
}

export interface ArchitectureTable {
  architecture: ArchitectureName;
  /** config.json `model_type`, used when `architectures` is absent. */
  modelType: string;
  names: {
    embedTokens: string;
    finalNorm: string;
    lmHead: string;
    inputNorm: string;
    postAttentionNorm: string;
    q: string;
    k: string;
    v: string;
    o: string;
    qNorm?: string;
    kNorm?: string;
    /** GPT-OSS: `self_attn.sinks` [heads]. */
    sinks?: string;
    /** Phi-MoE's LayerNorms have biases beside their weights (`biasOf` the weight names). */
    normBiases?: boolean;
    router: string;
    /** GPT-OSS: `mlp.router.bias` [E]. */
    routerBias?: string;
    /** Exactly one of `expert` (a tensor set per expert) and `fusedExperts` (all experts in two tensors). */
    expert?: MlpNameTemplates;
    fusedExperts?: FusedExpertNames;
    sharedExpert?: MlpNameTemplates;
    sharedExpertGate?: string;
    /** Layers without experts (Qwen `mlp_only_layers` / `decoder_sparse_step`). */
    denseMlp?: MlpNameTemplates;
    /** Multi-head latent attention (DeepSeek), in place of q/k/v. */
    mla?: MlaTensorNames;
    /** DeepSeek V3's `e_score_correction_bias`, next to the router weight: it steers the choice only. */
    correctionBias?: string;
  };
  /** An architecture whose config needs more than this table: 'deepseek' (deepseekConfig.ts). */
  family?: 'deepseek' | 'glm';
  /** RoPE scaling types config.ts leaves to the family's reader instead of refusing them. */
  scaledRope?: string[];
  config: {
    numExperts: 'num_local_experts' | 'num_experts' | 'n_routed_experts';
    /** Granite MoE's four multipliers (see config.ts `graniteScaling`). */
    graniteScaling?: boolean;
    /** Config keys beyond the common ones, read by familyConfig.ts. */
    family?: 'gptOss' | 'phimoe';
    expertIntermediateSize: 'intermediate_size' | 'moe_intermediate_size';
    /** Present when the model has an always-on shared expert. */
    sharedExpertIntermediateSize?: 'shared_expert_intermediate_size';
    /** Whether `decoder_sparse_step` and `mlp_only_layers` can make layers dense. */
    hasDenseLayers: boolean;
  };
  /**
   * 'always': q/k/v carry biases whatever the config says (Qwen2-MoE hard-codes `bias=True`).
   * 'attentionBias': transformers reads `attention_bias`, which would also bias o_proj; every
   * published checkpoint has it false, and true is refused rather than half-supported.
   * 'attentionBiasAll': `attention_bias` biases q, k, v and o (GPT-OSS, Phi-MoE), default `defaults.attentionBias`.
   */
  qkvBias: 'always' | 'never' | 'attentionBias' | 'attentionBiasAll';
  qkNorm: QkNorm;
  /** Mixtral always renormalises the top-k weights; the others read `norm_topk_prob`. */
  normTopKProb: 'always' | { configDefault: boolean };
  defaults: {
    ropeTheta: number;
    rmsNormEps: number;
    /** undefined: defaults to num_attention_heads. */
    numKvHeads?: number;
    attentionBias?: boolean;
  };
}

const LAYER = 'model.layers.{i}';
const ATTENTION = `${LAYER}.self_attn`;

const COMMON_NAMES = {
  embedTokens: 'model.embed_tokens.weight',
  finalNorm: 'model.norm.weight',
  lmHead: 'lm_head.weight',
  inputNorm: `${LAYER}.input_layernorm.weight`,
  postAttentionNorm: `${LAYER}.post_attention_layernorm.weight`,
  q: `${ATTENTION}.q_proj.weight`,
  k: `${ATTENTION}.k_proj.weight`,
  v: `${ATTENTION}.v_proj.weight`,
  o: `${ATTENTION}.o_proj.weight`,
};

function swiglu(prefix: string): MlpNameTemplates {
  return { gate: `${prefix}.gate_proj.weight`, up: `${prefix}.up_proj.weight`, down: `${prefix}.down_proj.weight` };
}

const QWEN_MOE_NAMES = {
  ...COMMON_NAMES,
  router: `${LAYER}.mlp.gate.weight`,
  expert: swiglu(`${LAYER}.mlp.experts.{j}`),
  denseMlp: swiglu(`${LAYER}.mlp`),
};

/** DeepSeek V2/V3 (modeling_deepseek_v3.py, modeling_deepseek_v2.py); dense layers before `first_k_dense_replace`. */
const DEEPSEEK_NAMES = {
  ...COMMON_NAMES,
  router: `${LAYER}.mlp.gate.weight`,
  expert: swiglu(`${LAYER}.mlp.experts.{j}`),
  sharedExpert: swiglu(`${LAYER}.mlp.shared_experts`),
  denseMlp: swiglu(`${LAYER}.mlp`),
  mla: {
    q: `${ATTENTION}.q_proj.weight`,
    qA: `${ATTENTION}.q_a_proj.weight`,
    qANorm: `${ATTENTION}.q_a_layernorm.weight`,
    qB: `${ATTENTION}.q_b_proj.weight`,
    kvA: `${ATTENTION}.kv_a_proj_with_mqa.weight`,
    kvANorm: `${ATTENTION}.kv_a_layernorm.weight`,
    kvB: `${ATTENTION}.kv_b_proj.weight`,
  },
};

export const ARCHITECTURES: Record<ArchitectureName, ArchitectureTable> = {
  MixtralForCausalLM: {
    architecture: 'MixtralForCausalLM',
    modelType: 'mixtral',
    names: {
      ...COMMON_NAMES,
      router: `${LAYER}.block_sparse_moe.gate.weight`,
      // Mixtral's w1 is the gate projection, w3 the up projection and w2 the down projection.
      expert: {
        gate: `${LAYER}.block_sparse_moe.experts.{j}.w1.weight`,
        up: `${LAYER}.block_sparse_moe.experts.{j}.w3.weight`,
        down: `${LAYER}.block_sparse_moe.experts.{j}.w2.weight`,
      },
    },
    config: { numExperts: 'num_local_experts', expertIntermediateSize: 'intermediate_size', hasDenseLayers: false },
    qkvBias: 'never',
    qkNorm: 'none',
    normTopKProb: 'always',
    defaults: { ropeTheta: 1e6, rmsNormEps: 1e-5, numKvHeads: 8 },
  },
  Qwen2MoeForCausalLM: {
    architecture: 'Qwen2MoeForCausalLM',
    modelType: 'qwen2_moe',
    names: {
      ...QWEN_MOE_NAMES,
      sharedExpert: swiglu(`${LAYER}.mlp.shared_expert`),
      sharedExpertGate: `${LAYER}.mlp.shared_expert_gate.weight`,
    },
    config: {
      numExperts: 'num_experts',
      expertIntermediateSize: 'moe_intermediate_size',
      sharedExpertIntermediateSize: 'shared_expert_intermediate_size',
      hasDenseLayers: true,
    },
    qkvBias: 'always',
    qkNorm: 'none',
    normTopKProb: { configDefault: false },
    defaults: { ropeTheta: 10000, rmsNormEps: 1e-6, numKvHeads: 16 },
  },
  Qwen3MoeForCausalLM: {
    architecture: 'Qwen3MoeForCausalLM',
    modelType: 'qwen3_moe',
    names: { ...QWEN_MOE_NAMES, qNorm: `${ATTENTION}.q_norm.weight`, kNorm: `${ATTENTION}.k_norm.weight` },
    config: { numExperts: 'num_experts', expertIntermediateSize: 'moe_intermediate_size', hasDenseLayers: true },
    qkvBias: 'attentionBias',
    qkNorm: 'perHead',
    normTopKProb: { configDefault: false },
    defaults: { ropeTheta: 10000, rmsNormEps: 1e-6, numKvHeads: 4 },
  },
  OlmoeForCausalLM: {
    architecture: 'OlmoeForCausalLM',
    modelType: 'olmoe',
    names: {
      ...COMMON_NAMES,
      qNorm: `${ATTENTION}.q_norm.weight`,
      kNorm: `${ATTENTION}.k_norm.weight`,
      router: `${LAYER}.mlp.gate.weight`,
      expert: swiglu(`${LAYER}.mlp.experts.{j}`),
    },
    config: { numExperts: 'num_experts', expertIntermediateSize: 'intermediate_size', hasDenseLayers: false },
    qkvBias: 'attentionBias',
    qkNorm: 'full',
    normTopKProb: { configDefault: false },
    defaults: { ropeTheta: 10000, rmsNormEps: 1e-5 },
  },
  GraniteMoeForCausalLM: {
    architecture: 'GraniteMoeForCausalLM',
    modelType: 'granitemoe',
    names: {
      ...COMMON_NAMES,
      router: `${LAYER}.block_sparse_moe.router.layer.weight`,
      fusedExperts: { gateUp: `${LAYER}.block_sparse_moe.input_linear.weight`, down: `${LAYER}.block_sparse_moe.output_linear.weight` },
    },
    config: { numExperts: 'num_local_experts', expertIntermediateSize: 'intermediate_size', hasDenseLayers: false, graniteScaling: true },
    qkvBias: 'attentionBias',
    qkNorm: 'none',
    // GraniteMoeMoE: top-k of the logits, then a softmax over those k, which is the full softmax renormalised over the k.
    normTopKProb: 'always',
    defaults: { ropeTheta: 10000, rmsNormEps: 1e-6 },
  },
  // Kimi-K2 and Moonlight declare this architecture too (n_group 1).
  DeepseekV3ForCausalLM: {
    architecture: 'DeepseekV3ForCausalLM',
    modelType: 'deepseek_v3',
    names: { ...DEEPSEEK_NAMES, correctionBias: `${LAYER}.mlp.gate.e_score_correction_bias` },
    family: 'deepseek',
    scaledRope: ['yarn'],
    config: { numExperts: 'n_routed_experts', expertIntermediateSize: 'moe_intermediate_size', hasDenseLayers: false },
    qkvBias: 'attentionBias',
    qkNorm: 'none',
    normTopKProb: { configDefault: true },
    defaults: { ropeTheta: 10000, rmsNormEps: 1e-6 },
  },
  DeepseekV2ForCausalLM: {
    architecture: 'DeepseekV2ForCausalLM',
    modelType: 'deepseek_v2',
    names: DEEPSEEK_NAMES,
    family: 'deepseek',
    scaledRope: ['yarn'],
    config: { numExperts: 'n_routed_experts', expertIntermediateSize: 'moe_intermediate_size', hasDenseLayers: false },
    qkvBias: 'attentionBias',
    qkNorm: 'none',
    // DeepseekV2Moe never renormalises (it reads no norm_topk_prob); deepseekConfig.ts says so.
    normTopKProb: { configDefault: false },
    defaults: { ropeTheta: 10000, rmsNormEps: 1e-6 },
  },
  // GLM-4.5 / 4.6 (modeling_glm4_moe.py): grouped-query attention with DeepSeek V3's router and shared experts.
  Glm4MoeForCausalLM: {
    architecture: 'Glm4MoeForCausalLM',
    modelType: 'glm4_moe',
    names: {
      ...COMMON_NAMES,
      qNorm: `${ATTENTION}.q_norm.weight`,
      kNorm: `${ATTENTION}.k_norm.weight`,
      router: `${LAYER}.mlp.gate.weight`,
      correctionBias: `${LAYER}.mlp.gate.e_score_correction_bias`,
      expert: swiglu(`${LAYER}.mlp.experts.{j}`),
      sharedExpert: swiglu(`${LAYER}.mlp.shared_experts`),
      denseMlp: swiglu(`${LAYER}.mlp`),
    },
    family: 'glm',
    config: { numExperts: 'n_routed_experts', expertIntermediateSize: 'moe_intermediate_size', hasDenseLayers: false },
    // q/k/v biases follow `attention_bias` (o_proj has none); glmConfig.ts reads it, and use_qk_norm.
    qkvBias: 'never',
    qkNorm: 'perHead',
    normTopKProb: { configDefault: true },
    defaults: { ropeTheta: 10000, rmsNormEps: 1e-5 },
  },
  GptOssForCausalLM: {
    architecture: 'GptOssForCausalLM',
    modelType: 'gpt_oss',
    names: {
      ...COMMON_NAMES,
      sinks: `${ATTENTION}.sinks`,
      router: `${LAYER}.mlp.router.weight`,
      routerBias: `${LAYER}.mlp.router.bias`,
      // GptOssExperts; with quant_method mxfp4 the weights are `gate_up_proj_blocks` / `_scales` etc. (mxfp4.ts).
      fusedExperts: {
        gateUp: `${LAYER}.mlp.experts.gate_up_proj`,
        down: `${LAYER}.mlp.experts.down_proj`,
        gateUpBias: `${LAYER}.mlp.experts.gate_up_proj_bias`,
        downBias: `${LAYER}.mlp.experts.down_proj_bias`,
        layout: 'interleavedInOut',
      },
    },
    config: { numExperts: 'num_local_experts', expertIntermediateSize: 'intermediate_size', hasDenseLayers: false, family: 'gptOss' },
    qkvBias: 'attentionBiasAll',
    qkNorm: 'none',
    // GptOssTopKRouter: top-k of the (biased) logits, softmax over those k = the full softmax renormalised over the k.
    normTopKProb: 'always',
    defaults: { ropeTheta: 150000, rmsNormEps: 1e-5, numKvHeads: 8, attentionBias: true },
  },
  PhimoeForCausalLM: {
    architecture: 'PhimoeForCausalLM',
    modelType: 'phimoe',
    names: {
      ...COMMON_NAMES,
      normBiases: true,
      router: `${LAYER}.block_sparse_moe.gate.weight`,
      // Mixtral's names: w1 gate, w3 up, w2 down.
      expert: {
        gate: `${LAYER}.block_sparse_moe.experts.{j}.w1.weight`,
        up: `${LAYER}.block_sparse_moe.experts.{j}.w3.weight`,
        down: `${LAYER}.block_sparse_moe.experts.{j}.w2.weight`,
      },
    },
    config: { numExperts: 'num_local_experts', expertIntermediateSize: 'intermediate_size', hasDenseLayers: false, family: 'phimoe' },
    qkvBias: 'attentionBiasAll',
    qkNorm: 'none',
    // sparsemixer's weights are not a renormalised softmax; MoeSpec.sparsemixer says how they are made.
    normTopKProb: { configDefault: false },
    defaults: { ropeTheta: 1e6, rmsNormEps: 1e-5, numKvHeads: 8, attentionBias: false },
  },
};

function fill(template: string, layer: number, expert?: number): string {
  return template.replace('{i}', String(layer)).replace('{j}', String(expert ?? '{j}'));
}

function fillMlp(templates: MlpNameTemplates, layer: number, expert?: number): MlpTensorNames {
  return {
    gate: fill(templates.gate, layer, expert),
    up: fill(templates.up, layer, expert),
    down: fill(templates.down, layer, expert),
  };
}

/** MLA's query is one projection (`q_proj`) without a q LoRA rank, or the q_a / norm / q_b chain with one. */
function fillMla(names: MlaTensorNames, layer: number, qLora: boolean): MlaTensorNames {
  const kv = { kvA: fill(names.kvA, layer), kvANorm: fill(names.kvANorm, layer), kvB: fill(names.kvB, layer) };
  return qLora ? { qA: fill(names.qA!, layer), qANorm: fill(names.qANorm!, layer), qB: fill(names.qB!, layer), ...kv } : { q: fill(names.q!, layer), ...kv };
}

function fillFused(templates: FusedExpertNames, layer: number, mxfp4?: boolean): FusedExpertNames {
  return {
    ...templates,
    gateUp: fill(templates.gateUp, layer),
    down: fill(templates.down, layer),
    ...(templates.gateUpBias && { gateUpBias: fill(templates.gateUpBias, layer) }),
    ...(templates.downBias && { downBias: fill(templates.downBias, layer) }),
    ...(mxfp4 && { mxfp4: true }),
  };
}

function biasOf(weightName: string): string {
  return weightName.replace(/\.weight$/, '.bias');
}

/** Resolves the templates for a model whose layer kinds are known. */
export function resolveTensorNames(
  table: ArchitectureTable,
  options: { tieWordEmbeddings: boolean; qkvBias: boolean; oBias?: boolean; lmHeadBias?: boolean; mxfp4?: boolean; isMoeLayer: (layer: number) => boolean; qLora?: boolean; qkNorm?: boolean },
): TensorNames {
  const { names } = table;
  return {
    embedTokens: names.embedTokens,
    finalNorm: names.finalNorm,
    lmHead: options.tieWordEmbeddings ? undefined : names.lmHead,
    ...(options.lmHeadBias && { lmHeadBias: biasOf(names.lmHead) }),
    ...(names.normBiases && { finalNormBias: biasOf(names.finalNorm) }),
    layer(i: number): LayerTensorNames {
      const attention = {
        inputNorm: fill(names.inputNorm, i),
        postAttentionNorm: fill(names.postAttentionNorm, i),
        q: fill(names.q, i),
        k: fill(names.k, i),
        v: fill(names.v, i),
        o: fill(names.o, i),
        ...(options.qkvBias && {
          qBias: biasOf(fill(names.q, i)),
          kBias: biasOf(fill(names.k, i)),
          vBias: biasOf(fill(names.v, i)),
        }),
        ...(names.qNorm && names.kNorm && options.qkNorm !== false && { qNorm: fill(names.qNorm, i), kNorm: fill(names.kNorm, i) }),
        ...(names.mla && { mla: fillMla(names.mla, i, options.qLora ?? true) }),
        ...(options.oBias && { oBias: biasOf(fill(names.o, i)) }),
        ...(names.sinks && { sinks: fill(names.sinks, i) }),
        ...(names.normBiases && { inputNormBias: biasOf(fill(names.inputNorm, i)), postAttentionNormBias: biasOf(fill(names.postAttentionNorm, i)) }),
      };
      if (!options.isMoeLayer(i)) {
        if (!names.denseMlp) throw new Error(`${table.architecture} has no dense layers; layer ${i} must be MoE.`);
        return { ...attention, mlp: fillMlp(names.denseMlp, i) };
      }
      return {
        ...attention,
        router: fill(names.router, i),
        ...(names.routerBias && { routerBias: fill(names.routerBias, i) }),
        ...(names.correctionBias && { correctionBias: fill(names.correctionBias, i) }),
        ...(names.expert && { expert: (j: number) => fillMlp(names.expert!, i, j) }),
        ...(names.fusedExperts && { fusedExperts: fillFused(names.fusedExperts, i, options.mxfp4) }),
        ...(names.sharedExpert && { sharedExpert: fillMlp(names.sharedExpert, i) }),
        ...(names.sharedExpertGate && { sharedExpertGate: fill(names.sharedExpertGate, i) }),
      };
    },
  };
}
